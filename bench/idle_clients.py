#!/usr/bin/env python3
"""Opens N idle client connections to a PostgreSQL-protocol endpoint (startup + MD5 or
SCRAM-free trust/MD5 login), waits until all are ready for query, prints READY, and holds them
until stdin closes. Used by bench.sh to measure a pooler's memory per idle client."""
import asyncio, hashlib, struct, sys

HOST, PORT, USER, PASSWORD, DB, N = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])


async def login(sem):
    async with sem:
        r, w = await asyncio.open_connection(HOST, PORT)
        body = struct.pack("!i", 196608) + b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in (("user", USER), ("database", DB))) + b"\0"
        w.write(struct.pack("!i", len(body) + 4) + body)
        while True:
            tag = await r.readexactly(1)
            (length,) = struct.unpack("!i", await r.readexactly(4))
            payload = await r.readexactly(length - 4)
            if tag == b"R":
                (code,) = struct.unpack("!i", payload[:4])
                if code == 5:
                    inner = hashlib.md5((PASSWORD + USER).encode()).hexdigest()
                    reply = b"md5" + hashlib.md5(inner.encode() + payload[4:8]).hexdigest().encode() + b"\0"
                    w.write(b"p" + struct.pack("!i", len(reply) + 4) + reply)
                elif code != 0:
                    raise RuntimeError(f"unsupported auth code {code}")
            elif tag == b"E":
                raise RuntimeError(payload.decode(errors="replace"))
            elif tag == b"Z":
                return w


async def main():
    sem = asyncio.Semaphore(200)
    conns = await asyncio.gather(*(login(sem) for _ in range(N)))
    print("READY", len(conns), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for w in conns:
        w.close()


asyncio.run(main())
