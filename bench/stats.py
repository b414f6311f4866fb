#!/usr/bin/env python3
"""Reads the pgbench --log files in a directory (per-transaction lines: client_id tx_no
latency_us script epoch us) and prints "p50_ms p99_ms count" over all of them."""
import os, sys

lat = []
for name in os.listdir(sys.argv[1]):
    with open(os.path.join(sys.argv[1], name)) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2].isdigit():
                lat.append(int(parts[2]))
lat.sort()
if not lat:
    print("nan nan 0")
else:
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000.0
    print(f"{pick(0.50):.3f} {pick(0.99):.3f} {len(lat)}")
