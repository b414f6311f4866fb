//! Failure handling: timeouts, a dead or restarted PostgreSQL, killed backends, and malformed
//! input. The client always gets an ErrorResponse with the right SQLSTATE and the pool heals.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::err_expect
)]

mod common;
use common::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

#[tokio::test]
async fn query_wait_timeout_gives_53300_and_client_stays_usable() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            pool_size: 1,
            general_extra: "  query_wait_timeout: 500ms\n",
            ..Default::default()
        },
    );
    let holder = connect(&app_conn(&d)).await.unwrap();
    let waiter = connect(&app_conn(&d)).await.unwrap();
    holder.batch_execute("BEGIN").await.unwrap();
    one(&holder, "SELECT 1").await;
    let started = Instant::now();
    let e = waiter.simple_query("SELECT 2").await.unwrap_err();
    assert_eq!(sqlstate(&e), "53300");
    assert!(started.elapsed() >= Duration::from_millis(450));
    // Extended protocol gets the same and stays in sync.
    let e = waiter.query_typed("SELECT 3", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "53300");
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(one(&waiter, "SELECT 4").await, "4");
    let rows = waiter.query_typed("SELECT 5", &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, i32>(0), 5);
}

#[tokio::test]
async fn waiters_get_returned_connections() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::sized("transaction", 2));
    let mut tasks = Vec::new();
    for i in 0..12 {
        let conn = app_conn(&d);
        tasks.push(tokio::spawn(async move {
            let c = connect(&conn).await.unwrap();
            for _ in 0..5 {
                assert_eq!(
                    one(&c, &format!("SELECT {i} FROM pg_sleep(0.01)")).await,
                    i.to_string()
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn postgres_down_then_back_without_restart() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::sized("transaction", 2));
    let c = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(one(&c, "SELECT 1").await, "1");
    pg.stop();
    // The pooled backend died and no new one can be made: the client is told 08001 and stays usable.
    let e = c.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e), "08001", "{e:?}");
    let e = c.query_typed("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "08001", "{e:?}");
    // A new client may log in (parameters are cached) but its queries fail the same way.
    let c3 = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(
        sqlstate(&c3.simple_query("SELECT 1").await.unwrap_err()),
        "08001"
    );
    pg.restart();
    let c2 = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(one(&c2, "SELECT 'back'").await, "back");
    assert_eq!(one(&c, "SELECT 'same client'").await, "same client");
    assert_eq!(one(&c3, "SELECT 3").await, "3");
}

#[tokio::test]
async fn idle_client_survives_postgres_restart_in_transaction_mode() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::sized("transaction", 2));
    let c = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(one(&c, "SELECT 1").await, "1");
    pg.stop();
    pg.restart();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The idle backend is found dead at checkout and replaced: the client sees no error.
    assert_eq!(one(&c, "SELECT 'fresh'").await, "fresh");
}

#[tokio::test]
async fn backend_killed_mid_transaction() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::sized("transaction", 1));
    let c = connect(&app_conn(&d)).await.unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    let pid = one(&c, "SELECT pg_backend_pid()").await;
    pg.psql(&format!("SELECT pg_terminate_backend({pid})"));
    let e = c.simple_query("SELECT 1").await.unwrap_err();
    let code = sqlstate(&e);
    assert!(
        code.is_empty() || code == "57P01" || code == "08006",
        "{e:?}"
    );
    // The pool heals: the slot is free and a new backend serves the next client.
    let c2 = connect(&app_conn(&d)).await.unwrap();
    let pid2 = one(&c2, "SELECT pg_backend_pid()").await;
    assert_ne!(pid, pid2);
    assert!(d.log_text().contains("server connection lost"));
}

#[test]
fn ssl_and_gssenc_requests_are_refused_then_startup_continues() {
    let pg = cluster(PgAuth::Trust);
    let d = doorman(&pg, &PoolSpec::default());
    let mut s = raw(&d);
    s.write_all(&[0, 0, 0, 8, 4, 210, 22, 48]).unwrap(); // GSSENCRequest
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"N");
    s.write_all(&[0, 0, 0, 8, 4, 210, 22, 47]).unwrap(); // SSLRequest
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"N");
    s.write_all(&startup("app", "appdb")).unwrap();
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"R", "authentication request follows");
    // psql with sslmode=prefer falls back to plain.
    let (ok, out, err) = psql(&d, "app", "app_pw", "appdb", &["-c", "SELECT 'plain'"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "plain");
}

#[test]
fn malformed_startup_packets_get_fatal_and_close() {
    let pg = cluster(PgAuth::Trust);
    let d = doorman(&pg, &PoolSpec::default());
    // Length far over the 10000-byte startup limit.
    let mut s = raw(&d);
    s.write_all(&[0, 1, 0, 0, 0, 3, 0, 0]).unwrap();
    let reply = read_all(&mut s);
    assert_eq!(reply.first(), Some(&b'E'));
    assert_eq!(sqlstate_in(&reply), "08P01");
    // Protocol 2.0.
    let mut s = raw(&d);
    s.write_all(&[0, 0, 0, 9, 0, 2, 0, 0, 0]).unwrap();
    let reply = read_all(&mut s);
    assert_eq!(sqlstate_in(&reply), "08P01");
    // Unterminated parameter list.
    let mut s = raw(&d);
    s.write_all(&[0, 0, 0, 12, 0, 3, 0, 0, b'u', b's', b'e', b'r'])
        .unwrap();
    assert_eq!(sqlstate_in(&read_all(&mut s)), "08P01");
    // Missing user.
    let mut s = raw(&d);
    s.write_all(&[0, 0, 0, 9, 0, 3, 0, 0, 0]).unwrap();
    assert_eq!(sqlstate_in(&read_all(&mut s)), "28000");
    // Garbage instead of a password message.
    let mut s = raw(&d);
    s.write_all(&startup("app", "appdb")).unwrap();
    let mut hdr = [0u8; 1];
    s.read_exact(&mut hdr).unwrap();
    s.write_all(b"Q\0\0\0\x09junk\0").unwrap();
    assert_eq!(sqlstate_in(&read_all(&mut s)), "08P01");
    // pg_doorman still serves.
    let (ok, _, err) = psql(&d, "app", "app_pw", "appdb", &["-c", "SELECT 1"]);
    assert!(ok, "{err}");
}

/// Logs in over a raw socket with SCRAM (postgres-protocol client) and returns the socket
/// positioned after the first ReadyForQuery.
#[test]
fn malformed_messages_after_login_get_08p01() {
    let pg = cluster(PgAuth::Trust);
    let d = doorman(&pg, &PoolSpec::default());
    // Unknown message type.
    let mut s = raw_login(&d);
    s.write_all(b"?\0\0\0\x04").unwrap();
    assert_eq!(sqlstate_in(&read_all(&mut s)), "08P01");
    // Sync with an absurd length.
    let mut s = raw_login(&d);
    s.write_all(b"S\0\x10\0\0").unwrap();
    assert_eq!(sqlstate_in(&read_all(&mut s)), "08P01");
    // Length word below 4.
    let mut s = raw_login(&d);
    s.write_all(b"Q\0\0\0\x02").unwrap();
    assert_eq!(sqlstate_in(&read_all(&mut s)), "08P01");
    // Oversized in the middle of a session: over 1 GiB announced.
    let mut s = raw_login(&d);
    s.write_all(b"Q\x7f\0\0\0").unwrap();
    assert_eq!(sqlstate_in(&read_all(&mut s)), "08P01");
    let (ok, _, err) = psql(&d, "app", "app_pw", "appdb", &["-c", "SELECT 1"]);
    assert!(ok, "{err}");
}

#[test]
fn too_many_clients_are_refused() {
    let pg = cluster(PgAuth::Trust);
    let d = doorman(
        &pg,
        &PoolSpec {
            general_extra: "  max_connections: 2\n",
            ..Default::default()
        },
    );
    let _a = raw_login(&d);
    let _b = raw_login(&d);
    let (ok, _, err) = psql(&d, "app", "app_pw", "appdb", &["-c", "SELECT 1"]);
    assert!(!ok);
    assert!(err.contains("too many clients"), "{err}");
    drop((_a, _b));
    // Wait until the server has seen both leave (on a loaded machine that takes a moment).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !psql(&d, "app", "app_pw", "appdb", &["-c", "SELECT 1"]).0 {
        assert!(std::time::Instant::now() < deadline, "slots never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Connections that never log in count too, so they cannot exhaust the process. A raw
    // connection accepted before the last psql's slot came back holds no slot, so open them
    // one at a time until a login is refused: with max_connections 2 that takes at most 2 plus
    // the slots still on their way back (a couple), never more.
    let mut idle = Vec::new();
    let err = loop {
        idle.push(raw(&d));
        std::thread::sleep(Duration::from_millis(100));
        let (ok, _, err) = psql(&d, "app", "app_pw", "appdb", &["-c", "SELECT 1"]);
        if !ok {
            break err;
        }
        assert!(
            idle.len() < 5,
            "never refused with {} idle connections",
            idle.len()
        );
    };
    assert!(err.contains("too many clients"), "{err}");
    drop(idle);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, out, err) = psql(&d, "app", "app_pw", "appdb", &["-c", "SELECT 'room again'"]);
        if ok {
            assert_eq!(out.trim(), "room again");
            break;
        }
        assert!(err.contains("too many clients"), "{err}");
        assert!(
            std::time::Instant::now() < deadline,
            "slots never freed: {err}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn login_with_postgres_down_and_nothing_cached_gets_08001() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::default());
    pg.stop();
    let e = connect(&app_conn(&d))
        .await
        .err()
        .expect("no backend to learn parameters from");
    assert_eq!(sqlstate(&e), "08001", "{e:?}");
    assert_eq!(e.as_db_error().unwrap().severity(), "FATAL");
    pg.restart();
    let c = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(one(&c, "SELECT 'up'").await, "up");
}

#[tokio::test]
async fn session_mode_backend_killed_and_wait_timeout() {
    let pg = cluster(PgAuth::Scram);
    let one_backend = |pool_extra| {
        doorman(
            &pg,
            &PoolSpec {
                mode: "session",
                pool_size: 1,
                general_extra: "  query_wait_timeout: 400ms\n",
                pool_extra,
                ..Default::default()
            },
        )
    };
    // With session_backend_pid (the default) the backend is taken at login: a client that
    // finds none within query_wait_timeout is refused at login with 53300.
    let d = one_backend("");
    let a = connect(&app_conn(&d)).await.unwrap();
    let refused = connect(&app_conn(&d))
        .await
        .err()
        .expect("no backend for b");
    assert_eq!(sqlstate(&refused), "53300");
    drop(a);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let b = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(one(&b, "SELECT 1").await, "1");
    // Switched off, backends are taken at the first query.
    let d = one_backend("    session_backend_pid: false\n");
    let a = connect(&app_conn(&d)).await.unwrap();
    let pid = one(&a, "SELECT pg_backend_pid()").await;
    // The only backend is held by `a` for its whole session: `b` times out and stays usable.
    let b = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(
        sqlstate(&b.simple_query("SELECT 1").await.unwrap_err()),
        "53300"
    );
    pg.psql(&format!("SELECT pg_terminate_backend({pid})"));
    assert!(
        a.simple_query("SELECT 1").await.is_err(),
        "a's backend is gone"
    );
    // The slot is free again: b gets a new backend.
    let pid_b = one(&b, "SELECT pg_backend_pid()").await;
    assert_ne!(pid, pid_b);
}
