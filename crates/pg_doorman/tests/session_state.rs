//! What a client leaves on a backend in transaction mode, and what happens to it: SET,
//! PREPARE and LISTEN are reset at checkin (cleanup_server_connections; temporary tables pin
//! their client instead, see driver_semantics.rs), a
//! standalone BEGIN holds no backend, a client leaving mid-transaction is rolled back and its
//! backend reused, and COPY works in both pool modes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::err_expect
)]

mod common;
use common::raw::*;
use common::*;
use futures_util::{SinkExt, TryStreamExt};

fn one_backend(pg: &TempCluster, pool_extra: &str) -> Doorman {
    doorman(
        pg,
        &PoolSpec {
            pool_size: 1,
            pool_extra,
            general_extra: "  query_wait_timeout: 2s\n",
            ..Default::default()
        },
    )
}

#[test]
fn session_state_is_reset_at_checkin() {
    let pg = cluster(PgAuth::Scram);
    let d = one_backend(&pg, "");
    let mut a = Wire::login(&d);
    let mut b = Wire::login(&d);
    let pid = a.value("SELECT pg_backend_pid()");
    a.send(&[query(
        "SET work_mem = '77MB'; PREPARE p AS SELECT 1; LISTEN ch",
    )]);
    assert_eq!(a.until_ready().last().unwrap().body, b"I");
    // Same backend (pool of one), none of a's session state.
    assert_eq!(b.value("SELECT pg_backend_pid()"), pid);
    assert_eq!(b.value("SHOW work_mem"), "4MB");
    assert_eq!(
        b.value("SELECT count(*) FROM pg_prepared_statements WHERE name = 'p'"),
        "0"
    );
    assert_eq!(b.value("SELECT count(*) FROM pg_listening_channels()"), "0");
    // Tracked parameters are not reset: they follow each client (TimeZone stays a's).
    a.send(&[query("SET TimeZone = 'Asia/Tokyo'")]);
    a.until_ready();
    assert_eq!(b.value("SHOW TimeZone"), pg.psql("SHOW TimeZone").trim());
    assert_eq!(a.value("SHOW TimeZone"), "Asia/Tokyo");
    // Extended protocol too (JDBC sends SET through Parse/Bind/Execute).
    a.send(&[
        parse("", "SET work_mem = '55MB'"),
        bind("", "", &[]),
        execute(""),
        sync(),
    ]);
    a.until_ready();
    assert_eq!(b.value("SHOW work_mem"), "4MB");
}

#[test]
fn cleanup_can_be_turned_off() {
    let pg = cluster(PgAuth::Scram);
    let d = one_backend(&pg, "    cleanup_server_connections: false\n");
    let mut a = Wire::login(&d);
    a.send(&[query("SET work_mem = '77MB'; LISTEN ch")]);
    a.until_ready();
    let mut b = Wire::login(&d);
    assert_eq!(
        b.value("SELECT count(*) FROM pg_listening_channels()"),
        "1",
        "state leaks without cleanup"
    );
    // Session-level settings follow their client either way (read back after the
    // transaction and SET where it goes), so they do not leak.
    assert_eq!(b.value("SHOW work_mem"), "4MB");
    assert_eq!(a.value("SHOW work_mem"), "77MB");
}

#[test]
fn standalone_begin_holds_no_backend() {
    let pg = cluster(PgAuth::Scram);
    let d = one_backend(&pg, "");
    let mut setup = Wire::login(&d);
    setup.value("CREATE TABLE t(a int)");
    let mut a = Wire::login(&d);
    a.send(&[query("BEGIN")]);
    let r = a.until_ready();
    assert_eq!(tags(&r), "CZ");
    assert_eq!(
        (r[0].text(), r[1].body.clone()),
        ("BEGIN".into(), b"T".to_vec())
    );
    // The only backend is free while a sits in its (deferred) transaction.
    let mut b = Wire::login(&d);
    assert_eq!(b.value("SELECT 'free'"), "free");
    // The BEGIN really runs before a's next statement: the insert is rolled back.
    a.send(&[query("INSERT INTO t VALUES (1)")]);
    assert_eq!(a.until_ready().last().unwrap().body, b"T");
    a.send(&[query("ROLLBACK")]);
    assert_eq!(a.until_ready().last().unwrap().body, b"I");
    assert_eq!(b.value("SELECT count(*) FROM t"), "0");
    // BEGIN then COMMIT with nothing between never touches a backend.
    a.send(&[query("START TRANSACTION"), query("COMMIT")]);
    let r = a.until_ready();
    assert_eq!(r[0].text(), "START TRANSACTION");
    let r = a.until_ready();
    assert_eq!(
        (r[0].text(), r[1].body.clone()),
        ("COMMIT".into(), b"I".to_vec())
    );
    // BEGIN then Terminate: nothing to clean.
    let mut c = Wire::login(&d);
    c.send(&[query("BEGIN")]);
    c.until_ready();
    drop(c);
    assert_eq!(b.value("SELECT 'still fine'"), "still fine");
}

#[test]
fn client_leaving_mid_transaction_is_rolled_back_and_backend_reused() {
    let pg = cluster(PgAuth::Scram);
    for mode in ["transaction", "session"] {
        let d = doorman(&pg, &PoolSpec::sized(mode, 1));
        let mut setup = Wire::login(&d);
        setup.value("CREATE TABLE IF NOT EXISTS r(a int)");
        setup.value("TRUNCATE r");
        drop(setup);
        let mut a = Wire::login(&d);
        let pid = a.value("SELECT pg_backend_pid()");
        a.send(&[query("BEGIN; INSERT INTO r VALUES (1)")]);
        assert_eq!(a.until_ready().last().unwrap().body, b"T");
        drop(a);
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut b = Wire::login(&d);
        assert_eq!(
            b.value("SELECT pg_backend_pid()"),
            pid,
            "{mode}: backend reused"
        );
        assert_eq!(
            b.value("SELECT count(*) FROM r"),
            "0",
            "{mode}: rolled back"
        );
        // An SQL error (also inside a transaction) does not cost the backend either.
        b.send(&[query("BEGIN; SELECT 1/0")]);
        assert_eq!(b.until_ready().last().unwrap().body, b"E");
        drop(b);
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut c = Wire::login(&d);
        assert_eq!(
            c.value("SELECT pg_backend_pid()"),
            pid,
            "{mode}: after error"
        );
    }
}

#[tokio::test]
async fn copy_in_and_out_in_both_modes() {
    let pg = cluster(PgAuth::Scram);
    for mode in ["transaction", "session"] {
        let d = doorman(&pg, &PoolSpec::sized(mode, 2));
        let setup = connect(&app_conn(&d)).await.unwrap();
        setup
            .batch_execute("DROP TABLE IF EXISTS c; CREATE TABLE c(a int, b text)")
            .await
            .unwrap();
        drop(setup);
        let mut tasks = Vec::new();
        for t in 0..4 {
            let conn = app_conn(&d);
            tasks.push(tokio::spawn(async move {
                let c = connect(&conn).await.unwrap();
                // 20,000 rows of ~110 bytes: several MB, more than any buffer holds.
                let sink = c.copy_in("COPY c FROM STDIN").await.unwrap();
                let mut sink = std::pin::pin!(sink);
                let pad = "x".repeat(100);
                for chunk in 0..20 {
                    let mut data = String::new();
                    for i in 0..1000 {
                        data.push_str(&format!("{}\t{pad}\n", t * 100_000 + chunk * 1000 + i));
                    }
                    sink.send(bytes::Bytes::from(data)).await.unwrap();
                }
                assert_eq!(sink.finish().await.unwrap(), 20_000);
                let out = c
                    .copy_out(&format!(
                        "COPY (SELECT a FROM c WHERE a / 100000 = {t} ORDER BY a) TO STDOUT"
                    ))
                    .await
                    .unwrap();
                let chunks: Vec<bytes::Bytes> = out.try_collect().await.unwrap();
                let text: Vec<u8> = chunks.concat();
                assert_eq!(text.iter().filter(|&&b| b == b'\n').count(), 20_000);
                // The connection is in a clean state afterwards.
                assert_eq!(one(&c, "SELECT 'after copy'").await, "after copy");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // psql's \copy uses the simple protocol.
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "1\tone\n2\ttwo\n").unwrap();
        let cmd = format!("\\copy c FROM '{}'", file.path().display());
        let (ok, _, err) = psql(&d, "app", "app_pw", "appdb", &["-c", &cmd]);
        assert!(ok, "{mode}: {err}");
        let c = connect(&app_conn(&d)).await.unwrap();
        assert_eq!(one(&c, "SELECT count(*)::text FROM c").await, "80002");
        // Failing COPYs leave the connection usable: simple protocol, then extended with the
        // Sync sent before the data (tokio-postgres does that; the backend ignores it while
        // copying), and bad data.
        let mut w = Wire::login(&d);
        w.send(&[query("COPY no_such_table FROM STDIN")]);
        let r = w.until_ready();
        assert_eq!((tags(&r), r[0].text()), ("EZ".into(), "42P01".into()));
        w.send(&[
            parse("", "COPY c FROM STDIN"),
            bind("", "", &[]),
            execute(""),
            sync(),
        ]);
        assert_eq!(tags(&w.take(3)), "12G");
        w.send(&[frame(b'd', b"not a number\tx\n"), frame(b'c', b""), sync()]);
        let r = w.until_ready();
        assert_eq!((tags(&r), r[0].text()), ("EZ".into(), "22P02".into()));
        w.send(&[
            parse("", "COPY c FROM STDIN"),
            bind("", "", &[]),
            execute(""),
            sync(),
        ]);
        assert_eq!(tags(&w.take(3)), "12G");
        w.send(&[frame(b'd', b"-7\tseven\n"), frame(b'c', b""), sync()]);
        assert_eq!(tags(&w.until_ready()), "CZ");
        assert_eq!(w.value("SELECT count(*) FROM c WHERE a = -7"), "1");
        assert_eq!(one(&c, "SELECT 'ok'").await, "ok");
        assert_eq!(w.value("SELECT 'ok'"), "ok");
    }
}
