//! Many clients doing what breaks poolers, at once, against few backends (transaction mode,
//! prepared statements on): COPY aborted by a bad row, a client vanishing mid-pipeline,
//! cancel during a query, an error inside a pipeline, DDL followed by re-prepare, session
//! state that pins. Every operation must end within a bound (no hang), every answer must be the
//! asker's, and afterwards every backend must be idle and serve a clean session.
//! `STRESS_SECS` sets the duration (default 60 s; `STRESS_CLIENTS`, default 50).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::err_expect
)]

mod common;
use common::raw::{bind, execute, parse, query};
use common::*;
use futures_util::SinkExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Longest any single operation may take before it counts as a hang.
const BOUND: Duration = Duration::from_secs(20);
const POOL: usize = 5;

/// A small deterministic generator (xorshift64*), one per client.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[derive(Default)]
struct Counts {
    ops: AtomicU64,
    expected_errors: AtomicU64,
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One operation of client `id`; panics on a wrong answer.
async fn operation(conn: &str, port: u16, id: u64, rng: &mut Rng, counts: &Counts) {
    let c = connect(conn).await.unwrap();
    for _ in 0..(1 + rng.next() % 4) {
        // Answers must be the asker's own: a value only this call knows.
        let token = (rng.next() % 1_000_000) as i32;
        match rng.next() % 7 {
            0 => {
                // COPY aborted by a bad row.
                let sink = c.copy_in("COPY t_stress FROM STDIN").await.unwrap();
                let mut sink = std::pin::pin!(sink);
                let data = format!("{token}\t{id}\nnot-a-number\t1\n");
                let _ = sink.send(bytes::Bytes::from(data)).await;
                let e = sink.finish().await.unwrap_err();
                assert_eq!(sqlstate(&e), "22P02");
                counts.expected_errors.fetch_add(1, Ordering::Relaxed);
            }
            1 => {
                // Cancel during a query (it may finish first).
                let token_c = c.cancel_token();
                let (res, _) = tokio::join!(c.simple_query("SELECT pg_sleep(0.3)"), async {
                    tokio::time::sleep(Duration::from_millis(20 + rng.next() % 50)).await;
                    let _ = token_c.cancel_query(tokio_postgres::NoTls).await;
                });
                if let Err(e) = res {
                    assert_eq!(sqlstate(&e), "57014");
                    counts.expected_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            2 => {
                // An error inside a pipeline: the statements around it still answer.
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&token];
                let a = c.query_one("SELECT $1::int + 1", &params);
                let b = c.query_one("SELECT 1 / ($1::int - $1::int)", &params);
                let z = c.query_one("SELECT $1::int * 2", &params);
                let (a, b, z) = tokio::join!(a, b, z);
                assert_eq!(a.unwrap().get::<_, i32>(0), token + 1);
                assert_eq!(sqlstate(&b.unwrap_err()), "22012");
                assert_eq!(z.unwrap().get::<_, i32>(0), token * 2);
                counts.expected_errors.fetch_add(1, Ordering::Relaxed);
            }
            3 => {
                // DDL, then statements prepared again (the retry after a stale plan works).
                let t = format!("t_ddl_{}", id % 8);
                let ddl = format!(
                    "DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (a int); INSERT INTO {t} VALUES ({token})"
                );
                if c.batch_execute(&ddl).await.is_err() {
                    // Another client's DDL on the same table raced it (deadlock, duplicate).
                    counts.expected_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let sql = format!("SELECT count(*) FROM {t}");
                for _ in 0..2 {
                    match c.query_one(&sql, &[]).await {
                        Ok(_) => {}
                        Err(e) => {
                            let code = sqlstate(&e);
                            assert!(
                                ["42P01", "0A000", "XX000", "40P01"].contains(&code.as_str()),
                                "{sql}: {e}"
                            );
                            counts.expected_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            4 => {
                // A client that vanishes mid-pipeline (no Sync, reply unread).
                let _ = tokio::task::spawn_blocking(move || {
                    use std::io::Write;
                    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    common::raw::login_on(&mut s);
                    let v = token.to_string();
                    let mut out = parse("", "SELECT pg_sleep(0.05), $1::int");
                    out.extend(bind("", "", &[Some(&v)]));
                    out.extend(execute(""));
                    if token % 2 == 0 {
                        out.extend(query("SELECT 1"));
                    }
                    let _ = s.write_all(&out);
                })
                .await;
            }
            5 => {
                // Session state that pins, released again.
                c.batch_execute(
                    "BEGIN; DECLARE held CURSOR WITH HOLD FOR SELECT generate_series(1, 3); COMMIT",
                )
                .await
                .unwrap();
                assert_eq!(one(&c, "FETCH 1 FROM held").await, "1");
                c.batch_execute("CLOSE held").await.unwrap();
            }
            _ => {
                // Plain traffic in a transaction.
                let tx = c.query_one("SELECT $1::int", &[&token]).await.unwrap();
                assert_eq!(tx.get::<_, i32>(0), token);
                c.batch_execute(&format!(
                    "BEGIN; INSERT INTO t_stress VALUES ({token}, {id}); COMMIT"
                ))
                .await
                .unwrap();
            }
        }
        counts.ops.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_modes_at_once_leave_every_backend_clean() {
    let secs = env_num("STRESS_SECS", 60);
    let clients = env_num("STRESS_CLIENTS", 50);
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            pool_size: POOL,
            general_extra: "  query_wait_timeout: 30s\n  admin_username: boss\n  admin_password: boss_pw\n",
            ..Default::default()
        },
    );
    let setup = connect(&app_conn(&d)).await.unwrap();
    setup
        .batch_execute("CREATE TABLE t_stress (v int, c int)")
        .await
        .unwrap();
    drop(setup);
    let counts = Arc::new(Counts::default());
    let end = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for id in 0..clients {
        let (conn, port, counts) = (app_conn(&d), d.port, counts.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id + 1).wrapping_mul(0x1234_5678_9ABC));
            while Instant::now() < end {
                let op = operation(&conn, port, id, &mut rng, &counts);
                if tokio::time::timeout(BOUND, op).await.is_err() {
                    panic!("client {id}: an operation hung for {BOUND:?}");
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let ops = counts.ops.load(Ordering::Relaxed);
    let errors = counts.expected_errors.load(Ordering::Relaxed);
    println!("stress: {clients} clients, {secs} s, {ops} operations, {errors} expected errors");
    assert!(ops > clients, "too little got done: {ops}");

    // Every backend idle, none leaked, none left in a transaction.
    let settle = Instant::now() + Duration::from_secs(10);
    loop {
        let states = pg.psql(
            "SELECT coalesce(string_agg(state, ','), '') FROM pg_stat_activity WHERE usename = 'app'",
        );
        let states = states.trim().to_string();
        if states.split(',').all(|s| s.is_empty() || s == "idle") {
            assert!(states.split(',').count() <= POOL, "backends: {states}");
            break;
        }
        assert!(Instant::now() < settle, "backends not idle: {states}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let admin = connect(&d.conn_str("boss", "boss_pw", "pgdoorman"))
        .await
        .unwrap();
    let pools = admin.simple_query("SHOW POOLS").await.unwrap();
    let row = pools
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .unwrap();
    for col in ["cl_active", "cl_waiting", "sv_active", "cl_pinned"] {
        let i = (0..row.len())
            .find(|&i| row.columns()[i].name() == col)
            .unwrap();
        assert_eq!(row.get(i), Some("0"), "SHOW POOLS {col}");
    }
    // A correctness pass over every backend: 2 × pool_size clients hold them all at once,
    // each in a clean session (default settings, no cursor, no temp table, no open transaction).
    let mut held = Vec::new();
    for _ in 0..2 * POOL {
        held.push(connect(&app_conn(&d)).await.unwrap());
    }
    let checks = held.iter().enumerate().map(|(i, c)| async move {
        let row = tokio::time::timeout(
            BOUND,
            c.query_one(
                "SELECT $1::int, current_setting('default_transaction_read_only'), \
                 (SELECT count(*) FROM pg_cursors WHERE is_holdable), txid_current_if_assigned() IS NULL, \
                 pg_sleep(0.2)::text",
                &[&(i as i32)],
            ),
        )
        .await
        .expect("correctness pass hung")
        .unwrap();
        assert_eq!(row.get::<_, i32>(0), i as i32);
        assert_eq!(row.get::<_, &str>(1), "off");
        assert_eq!(row.get::<_, i64>(2), 0);
        assert!(row.get::<_, bool>(3));
    });
    futures_util::future::join_all(checks).await;
}
