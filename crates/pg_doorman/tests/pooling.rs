//! Session and transaction pooling through pg_doorman against real PostgreSQL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::err_expect
)]

mod common;
use common::*;
use std::collections::HashSet;
use tokio_postgres::types::Type;

#[tokio::test]
async fn transaction_mode_shares_few_backends_among_many_clients() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::sized("transaction", 2));
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(connect(&app_conn(&d)).await.unwrap());
    }
    let mut pids = HashSet::new();
    for round in 0..3 {
        for c in &clients {
            pids.insert(one(c, "SELECT pg_backend_pid()").await);
            // extended protocol, unnamed statement, one round trip
            let rows = c
                .query_typed("SELECT $1::int + 1", &[(&round, Type::INT4)])
                .await
                .unwrap();
            assert_eq!(rows[0].get::<_, i32>(0), round + 1);
        }
    }
    assert!(
        pids.len() <= 2,
        "8 clients must share at most pool_size=2 backends, saw {pids:?}"
    );
    let n: i64 = pg
        .psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'")
        .trim()
        .parse()
        .unwrap();
    assert!(n <= 2, "backend connections: {n}");
}

#[tokio::test]
async fn transaction_mode_keeps_backend_for_whole_transaction() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::sized("transaction", 2));
    let a = connect(&app_conn(&d)).await.unwrap();
    let b = connect(&app_conn(&d)).await.unwrap();
    a.batch_execute("CREATE TABLE t (v int)").await.unwrap();
    a.batch_execute("BEGIN").await.unwrap();
    let pid1 = one(&a, "SELECT pg_backend_pid()").await;
    a.batch_execute("INSERT INTO t VALUES (1)").await.unwrap();
    // b runs while a's transaction is open: it must get the other backend.
    let pid_b = one(&b, "SELECT pg_backend_pid()").await;
    assert_ne!(pid1, pid_b);
    assert_eq!(one(&b, "SELECT count(*) FROM t").await, "0");
    assert_eq!(one(&a, "SELECT pg_backend_pid()").await, pid1);
    a.batch_execute("COMMIT").await.unwrap();
    assert_eq!(one(&b, "SELECT count(*) FROM t").await, "1");
}

#[tokio::test]
async fn transaction_mode_brings_session_parameters_in_line() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::sized("transaction", 1));
    let base = app_conn(&d);
    let a = connect(&format!(
        "{base} application_name=alpha options='-c TimeZone=Asia/Tokyo'"
    ))
    .await
    .unwrap();
    let b = connect(&format!("{base} application_name=beta"))
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(one(&a, "SHOW application_name").await, "alpha");
        assert_eq!(one(&a, "SHOW TimeZone").await, "Asia/Tokyo");
        assert_eq!(one(&b, "SHOW application_name").await, "beta");
        assert_ne!(one(&b, "SHOW TimeZone").await, "Asia/Tokyo");
    }
    // A SET of a reported parameter follows the client to the next backend checkout.
    a.batch_execute("SET DateStyle = 'German'").await.unwrap();
    assert_eq!(one(&b, "SHOW DateStyle").await, "ISO, MDY");
    assert_eq!(one(&a, "SHOW DateStyle").await, "German, DMY");
}

#[tokio::test]
async fn invalid_startup_parameter_fails_login() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::default());
    let e = connect(&format!(
        "{} options='-c TimeZone=Mars/Olympus'",
        app_conn(&d)
    ))
    .await
    .err()
    .expect("must fail");
    assert_eq!(sqlstate(&e), "22023", "{e:?}");
    // The pool is fine afterwards.
    let c = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(one(&c, "SELECT 1").await, "1");
}

#[tokio::test]
async fn session_mode_holds_backend_and_resets_it() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::sized("session", 1));
    let a = connect(&app_conn(&d)).await.unwrap();
    a.batch_execute("SET work_mem = '7MB'; CREATE TEMP TABLE tmp (x int); PREPARE p AS SELECT 1")
        .await
        .unwrap();
    let pid = one(&a, "SELECT pg_backend_pid()").await;
    assert_eq!(one(&a, "SHOW work_mem").await, "7MB");
    assert_eq!(one(&a, "EXECUTE p").await, "1");
    // Named prepared statements work in session mode.
    let stmt = a.prepare("SELECT $1::text").await.unwrap();
    let row = a.query_one(&stmt, &[&"named"]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "named");
    drop(stmt);
    drop(a);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let b = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(
        one(&b, "SELECT pg_backend_pid()").await,
        pid,
        "the one backend is reused"
    );
    assert_eq!(
        one(&b, "SHOW work_mem").await,
        "4MB",
        "DISCARD ALL reset the session"
    );
    assert_eq!(
        one(&b, "SELECT count(*) FROM pg_prepared_statements").await,
        "0"
    );
    assert!(
        b.simple_query("SELECT * FROM tmp").await.is_err(),
        "temp table is gone"
    );
}

#[tokio::test]
async fn session_mode_sql_error_keeps_session() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::sized("session", 1));
    let a = connect(&app_conn(&d)).await.unwrap();
    let pid = one(&a, "SELECT pg_backend_pid()").await;
    let e = a.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(sqlstate(&e), "22012");
    assert_eq!(one(&a, "SELECT pg_backend_pid()").await, pid);
}

#[tokio::test]
async fn large_rows_and_copy_stream_through() {
    let pg = cluster(PgAuth::Scram);
    for mode in ["transaction", "session"] {
        let d = doorman(&pg, &PoolSpec::sized(mode, 2));
        let c = connect(&app_conn(&d)).await.unwrap();
        let len = one(&c, "SELECT length(repeat('x', 5000000))").await;
        assert_eq!(len, "5000000");
        let rows = c
            .query_typed("SELECT repeat('y', 3000000)", &[])
            .await
            .unwrap();
        assert_eq!(rows[0].get::<_, String>(0).len(), 3_000_000);
        let table = format!("copy_{mode}");
        c.batch_execute(&format!("CREATE TABLE {table} (id int, v text)"))
            .await
            .unwrap();
        let input: String = (0..20000).map(|i| format!("{i}\tvalue {i}\n")).collect();
        let out = std::process::Command::new("psql")
            .args([
                "-X",
                "-h",
                "127.0.0.1",
                "-p",
                &d.port.to_string(),
                "-U",
                "app",
                "-d",
                "appdb",
                "-c",
                &format!("\\copy {table} FROM STDIN"),
            ])
            .env("PGPASSWORD", "app_pw")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut ch| {
                use std::io::Write;
                ch.stdin.take().unwrap().write_all(input.as_bytes())?;
                ch.wait_with_output()
            })
            .unwrap();
        assert!(out.status.success());
        assert_eq!(
            one(&c, &format!("SELECT count(*) FROM {table}")).await,
            "20000"
        );
        let (ok, text, err) = psql(
            &d,
            "app",
            "app_pw",
            "appdb",
            &[
                "-c",
                &format!("COPY (SELECT * FROM {table} ORDER BY id) TO STDOUT"),
            ],
        );
        assert!(ok, "{err}");
        assert_eq!(text.lines().count(), 20000);
        assert_eq!(text.lines().last(), Some("19999\tvalue 19999"));
    }
}

#[tokio::test]
async fn lifetime_and_idle_timeout_replace_backends() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            pool_size: 1,
            general_extra: "  server_lifetime: 300ms\n  idle_timeout: 200ms\n  retain_connections_time: 100ms\n",
            ..Default::default()
        },
    );
    let c = connect(&app_conn(&d)).await.unwrap();
    let first = one(&c, "SELECT pg_backend_pid()").await;
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let n: i64 = pg
        .psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(n, 0, "retain cycle closed the idle expired backend");
    let second = one(&c, "SELECT pg_backend_pid()").await;
    assert_ne!(first, second);
}

#[tokio::test]
async fn cancel_request_reaches_the_right_backend() {
    let pg = cluster(PgAuth::Scram);
    for mode in ["transaction", "session"] {
        let d = doorman(&pg, &PoolSpec::sized(mode, 2));
        let c = connect(&app_conn(&d)).await.unwrap();
        let other = connect(&app_conn(&d)).await.unwrap();
        let token = c.cancel_token();
        let started = std::time::Instant::now();
        let (res, _) = tokio::join!(c.simple_query("SELECT pg_sleep(20)"), async {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            token.cancel_query(tokio_postgres::NoTls).await.unwrap();
        });
        assert_eq!(sqlstate(&res.unwrap_err()), "57014");
        assert!(started.elapsed().as_secs() < 10);
        // Both clients remain usable.
        assert_eq!(one(&c, "SELECT 'after cancel'").await, "after cancel");
        assert_eq!(one(&other, "SELECT 2").await, "2");
    }
}

/// libpq 17's cancel connection (PQcancelBlocking, psql 17) negotiates like a login: with
/// sslmode=prefer it sends SSLRequest, reads 'N', then sends the CancelRequest and waits for
/// end of stream. A reset there (SO_LINGER 0 inherited from the listener) makes it report
/// "couldn't send cancellation: server closed the connection unexpectedly".
#[test]
fn cancel_after_ssl_request_ends_with_a_clean_close() {
    use std::io::{Read, Write};
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::sized("session", 2));
    let mut s = raw(&d);
    let (pid, secret) = common::raw::login_on(&mut s);
    s.write_all(&common::raw::query("SELECT pg_sleep(20)"))
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut c = raw(&d);
    let mut ssl = 8u32.to_be_bytes().to_vec();
    ssl.extend_from_slice(&80877103u32.to_be_bytes());
    c.write_all(&ssl).unwrap();
    let mut answer = [0u8; 1];
    c.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"N");
    let mut cancel = 16u32.to_be_bytes().to_vec();
    cancel.extend_from_slice(&80877102u32.to_be_bytes());
    cancel.extend_from_slice(&pid.to_be_bytes());
    cancel.extend_from_slice(&secret.to_be_bytes());
    c.write_all(&cancel).unwrap();
    assert_eq!(c.read(&mut answer).expect("end of stream, not a reset"), 0);
    let msgs = common::raw::read_until_ready(&mut s);
    let err = msgs.iter().find(|m| m.tag == b'E').expect("canceled");
    assert_eq!(err.text(), "57014");
}

#[tokio::test]
async fn pipelined_requests_stay_on_one_backend_until_all_answered() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::sized("transaction", 2));
    let a = connect(&app_conn(&d)).await.unwrap();
    let b = connect(&app_conn(&d)).await.unwrap();
    for round in 0..5 {
        // tokio-postgres pipelines concurrent requests on one connection: many Syncs in flight.
        let futs = (0..40).map(|i| {
            let a = &a;
            async move {
                if i % 7 == 3 {
                    // An error mid-pipeline must not desynchronise the rest.
                    let e = a.query_typed("SELECT 1/0", &[]).await.unwrap_err();
                    assert_eq!(sqlstate(&e), "22012");
                    -1
                } else {
                    let rows = a
                        .query_typed("SELECT $1::int * 2", &[(&i, Type::INT4)])
                        .await
                        .unwrap();
                    rows[0].get::<_, i32>(0)
                }
            }
        });
        let other_sql = format!("SELECT {round}");
        let (results, other) = tokio::join!(futures_join_all(futs), one(&b, &other_sql));
        for (i, r) in results.into_iter().enumerate() {
            let i = i as i32;
            assert_eq!(r, if i % 7 == 3 { -1 } else { i * 2 });
        }
        assert_eq!(other, round.to_string());
        // Simple-protocol pipeline: several statements in one Query message.
        let msgs = a
            .simple_query("SELECT 1; SELECT 2; SELECT 3")
            .await
            .unwrap();
        let rows = msgs
            .iter()
            .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
            .count();
        assert_eq!(rows, 3);
    }
}

/// Polls all futures concurrently (tiny join_all without a futures dependency).
async fn futures_join_all<F: std::future::Future<Output = i32>>(
    futs: impl Iterator<Item = F>,
) -> Vec<i32> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<i32>> = vec![None; set.len()];
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|v| v.unwrap()).collect()
}
