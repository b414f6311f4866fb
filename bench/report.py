#!/usr/bin/env python3
"""Turns bench.sh's results.tsv into a Markdown report with ratios against PgBouncer."""
import sys

path, secs, workers = sys.argv[1], sys.argv[2], sys.argv[3]
runs, idle, cpu = {}, {}, {}
for line in open(path):
    f = line.rstrip("\n").split("\t")
    if f[0] == "idle":
        idle[f[1]] = f[2:]
    elif f[0] == "cpu":
        cpu.setdefault((f[2], int(f[3])), {}).setdefault(f[1], []).append((float(f[4]), float(f[5])))
    else:
        runs[(f[0], f[1], f[2])] = f[3:]

def num(x):
    try:
        return float(x)
    except ValueError:
        return None

print(f"### pg_doorman vs PgBouncer vs PostgreSQL ({secs} s per run, pool 40, transaction mode, pg_doorman worker_threads={workers})\n")
print("| protocol | clients | PG tps | PgBouncer tps | pg_doorman tps | doorman/bouncer | doorman/PG | failed (B/D) | p50 ms B / D | p99 ms B / D | p99/p50 B / D | CPU s/100k tx B / D |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
keys = sorted({(k[1], int(k[2])) for k in runs}, key=lambda k: (["simple", "extended", "prepared", "churn", "tls", "tls-churn", "unscraped", "scraped"].index(k[0]), k[1]))
for proto, c in keys:
    g = lambda t: runs.get((t, proto, str(c)), ["-", "?", "nan", "nan", "-"])
    pg, b, d = g("postgres"), g("pgbouncer"), g("pg_doorman")
    tb, td, tp = num(b[0]), num(d[0]), num(pg[0])
    ratio = lambda a, z: f"{a / z:.2f}" if a and z else "-"
    spread = lambda r: ratio(num(r[3]), num(r[2]))
    print(f"| {proto} | {c} | {pg[0]} | {b[0]} | {d[0]} | {ratio(td, tb)} | {ratio(td, tp)} | {b[1]} / {d[1]} | {b[2]} / {d[2]} | {b[3]} / {d[3]} | {spread(b)} / {spread(d)} | {b[4]} / {d[4]} |")
prep = [(c, runs.get(("pg_doorman", "prepared", str(c))), runs.get(("pg_doorman", "extended", str(c))),
         runs.get(("postgres", "prepared", str(c)))) for p, c in keys if p == "prepared"]
if prep:
    print("\n| clients | pg_doorman prepared tps | / its extended tps | / PostgreSQL prepared tps |")
    print("|---|---|---|---|")
    for c, d, e, pg in prep:
        dt, et, pt = (num(x[0]) if x else None for x in (d, e, pg))
        r = lambda a, z: f"{a / z:.2f}" if a and z else "-"
        print(f"| {c} | {dt} | {r(dt, et)} | {r(dt, pt)} |")
if idle:
    print("\n| idle clients | pooler | RSS before KiB | RSS after KiB | bytes per idle client |")
    print("|---|---|---|---|---|")
    for t, v in idle.items():
        print(f"| {v[0]} | {t} | {v[1]} | {v[2]} | {v[3]} |")
if cpu:
    n = max(len(v) for per in cpu.values() for v in per.values())
    print(f"\n#### Pooler CPU per 100k transactions, {n} alternating runs per row (median, range in brackets)\n")
    print("| protocol | clients | PgBouncer s/100k | pg_doorman s/100k | doorman/bouncer (medians) | PgBouncer tps | pg_doorman tps |")
    print("|---|---|---|---|---|---|---|")
    med = lambda xs: sorted(xs)[len(xs) // 2]
    for (proto, c), per in sorted(cpu.items(), key=lambda kv: (kv[0][0] != "simple", kv[0][1])):
        b, d = per.get("pgbouncer", []), per.get("pg_doorman", [])
        if not b or not d:
            continue
        bc, dc = [x[0] for x in b], [x[0] for x in d]
        cell = lambda xs: f"{med(xs):.2f} [{min(xs):.2f}–{max(xs):.2f}]"
        tps = lambda xs: f"{med([x[1] for x in xs]):.0f}"
        print(f"| {proto} | {c} | {cell(bc)} | {cell(dc)} | {med(dc) / med(bc):.2f} | {tps(b)} | {tps(d)} |")
