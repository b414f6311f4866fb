"""asyncpg through pg_doorman in transaction mode (connection settings from PG* variables).

asyncpg prepares every query as a named statement (its statement cache), pipelines
Parse/Describe with Flush, and uses Bind/Execute portals for cursors. More concurrent
connections than backends, plus an asyncpg pool whose release runs RESET ALL / CLOSE ALL.
Exits non-zero on the first failure.
"""
import asyncio
import sys

import asyncpg

CONNECTIONS = 8


async def worker(n):
    conn = await asyncpg.connect()
    try:
        for i in range(30):
            assert await conn.fetchval("SELECT $1::int + $2::int", n, i) == n + i
            rows = await conn.fetch("SELECT g FROM generate_series(1, $1::int) g", i % 5 + 1)
            assert len(rows) == i % 5 + 1
        stmt = await conn.prepare("SELECT $1::int * 3")
        for i in range(10):
            assert await stmt.fetchval(i) == i * 3
        await conn.executemany(
            "INSERT INTO t_asyncpg(v) VALUES ($1)", [(n * 100 + i,) for i in range(20)]
        )
        got = await conn.fetchval("SELECT count(*) FROM t_asyncpg WHERE v / 100 = $1", n)
        assert got == 20, got
        async with conn.transaction():
            total = 0
            async for r in conn.cursor("SELECT g FROM generate_series(1, 500) g", prefetch=50):
                total += r[0]
            assert total == 125250
        try:
            await conn.fetchval("SELECT 1 / $1::int", 0)
            raise AssertionError("no error")
        except asyncpg.DivisionByZeroError:
            pass
        assert await conn.fetchval("SELECT $1::int", 7) == 7
    finally:
        await conn.close()


async def pooled():
    pool = await asyncpg.create_pool(min_size=2, max_size=6)
    try:

        async def one(i):
            async with pool.acquire() as c:
                assert await c.fetchval("SELECT $1::int - 1", i) == i - 1

        await asyncio.gather(*(one(i) for i in range(200)))
    finally:
        await pool.close()


async def main():
    conn = await asyncpg.connect()
    await conn.execute("CREATE TABLE IF NOT EXISTS t_asyncpg(v int)")
    await conn.close()
    results = await asyncio.gather(
        *(worker(n) for n in range(CONNECTIONS)), pooled(), return_exceptions=True
    )
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print(f"asyncpg suite: {len(results)} passed, 0 failed")


asyncio.run(main())
