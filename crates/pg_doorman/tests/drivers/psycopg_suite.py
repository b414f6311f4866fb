"""psycopg 3 through pg_doorman in transaction mode (connection settings from PG* variables).

Server-side prepared statements from the first execution (prepare_threshold=0), pipeline mode
with an error in the middle, a named (server-side) cursor inside a transaction, and a small
client statement cache that makes psycopg DEALLOCATE. More threads than backends, so every
statement moves between server connections. Exits non-zero on the first failure.
"""
import sys
import threading

import psycopg
from psycopg import errors

THREADS = 8


def statements(n):
    with psycopg.connect(prepare_threshold=0, autocommit=True) as conn:
        conn.prepared_max = 3  # evictions: psycopg sends DEALLOCATE for the oldest
        for i in range(30):
            assert conn.execute("SELECT %s::int + %s::int", (n, i)).fetchone()[0] == n + i
            assert conn.execute("SELECT %s::text || 'x'", (str(i),)).fetchone()[0] == f"{i}x"
            k = i % 6
            q = f"SELECT {k} + %s::int"
            assert conn.execute(q, (n,)).fetchone()[0] == k + n
            with conn.transaction():
                v = n * 1000 + i
                conn.execute("INSERT INTO t_psycopg(v) VALUES (%s)", (v,))
                got = conn.execute("SELECT count(*) FROM t_psycopg WHERE v = %s", (v,))
                assert got.fetchone()[0] == 1


def pipeline():
    with psycopg.connect(prepare_threshold=0, autocommit=True) as conn:
        for _ in range(5):
            with conn.pipeline():
                c1 = conn.execute("SELECT %s::int", (1,))
                c2 = conn.execute("SELECT %s::int * 2", (21,))
                c3 = conn.execute("SELECT %s::text", ("p",))
            assert c1.fetchone()[0] == 1
            assert c2.fetchone()[0] == 42
            assert c3.fetchone()[0] == "p"
            try:
                with conn.pipeline():
                    conn.execute("SELECT %s::int", (1,))
                    conn.execute("SELECT 1 / %s::int", (0,))
                    conn.execute("SELECT %s::int", (3,))
            except errors.DivisionByZero:
                pass
            else:
                raise AssertionError("division by zero not reported in pipeline")
            assert conn.execute("SELECT %s::int", (5,)).fetchone()[0] == 5


def named_cursor():
    with psycopg.connect(prepare_threshold=0) as conn:
        for _ in range(3):
            with conn.cursor(name="big") as cur:
                cur.itersize = 100
                cur.execute("SELECT g FROM generate_series(1, 1000) g")
                assert sum(r[0] for r in cur) == 500500
            conn.commit()


def main():
    with psycopg.connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t_psycopg(v int)")
    failures = []

    def run(f, *args):
        try:
            f(*args)
        except Exception as e:  # noqa: BLE001 - report every failure
            failures.append(f"{f.__name__}{args}: {e!r}")

    threads = [threading.Thread(target=run, args=(statements, n)) for n in range(THREADS)]
    threads += [threading.Thread(target=run, args=(pipeline,)) for _ in range(2)]
    threads += [threading.Thread(target=run, args=(named_cursor,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print("psycopg suite: 12 passed, 0 failed")


main()
