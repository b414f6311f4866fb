//! What psycopg's own test suite showed a pooler gets wrong, each as a behaviour test against
//! real PostgreSQL: session settings that leak to the next client, parameter spellings,
//! cached statements that go stale after DDL or fold another client's settings, and session
//! state (WITH HOLD cursors, temporary tables) that transaction mode must not lose.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::err_expect
)]

mod common;
const ADMIN: &str = "  admin_username: boss\n  admin_password: boss_pw\n";

/// Transaction mode with `pool_size` backends and the admin console on.
fn with_admin(pg: &TempCluster, pool_size: usize) -> Doorman {
    doorman(
        pg,
        &PoolSpec {
            pool_size,
            general_extra: ADMIN,
            ..Default::default()
        },
    )
}

async fn admin(d: &Doorman) -> tokio_postgres::Client {
    connect(&d.conn_str("boss", "boss_pw", "pgdoorman"))
        .await
        .unwrap()
}

use common::raw::{Wire, bind, execute, login_with, parse, sync, tags};
use common::*;

/// A session-level `set_config()` is reported (default_transaction_read_only, PostgreSQL 14+):
/// it follows its client to other backends and does not reach the next client of this one.
#[tokio::test]
async fn a_session_set_config_stays_with_its_client() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::sized("transaction", 1));
    let a = connect(&app_conn(&d)).await.unwrap();
    a.batch_execute(
        "BEGIN; SELECT set_config('default_transaction_read_only', 'on', false); COMMIT",
    )
    .await
    .unwrap();
    let b = connect(&app_conn(&d)).await.unwrap();
    // pool_size 1: b gets the backend a changed.
    assert_eq!(one(&b, "SHOW default_transaction_read_only").await, "off");
    b.batch_execute("CREATE TABLE t_rw (v int)").await.unwrap();
    assert_eq!(one(&a, "SHOW default_transaction_read_only").await, "on");
    let e = a
        .batch_execute("CREATE TABLE t_ro (v int)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "25006");
}

/// PostgreSQL reports a startup parameter in its canonical spelling (client_encoding "utf8"
/// becomes "UTF8"), also when the value equals the server's and no change is reported.
#[test]
fn startup_parameters_are_reported_in_canonical_spelling() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::sized("session", 2));
    for (asked, reported) in [("utf8", "UTF8"), ("utf-8", "UTF8"), ("euc-jp", "EUC_JP")] {
        let mut s = raw(&d);
        let (_, params) = login_with(&mut s, &[("client_encoding", asked)]);
        let got = params
            .iter()
            .find(|(k, _)| k == "client_encoding")
            .map(|(_, v)| v.as_str());
        assert_eq!(got, Some(reported), "client_encoding={asked}");
    }
}

/// A date/time literal is folded into a constant at Parse, under the session's TimeZone: a
/// statement cached for a client in another zone must not be reused (psycopg's timetz tests).
#[tokio::test]
async fn cached_statements_are_not_shared_across_time_zones() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::sized("transaction", 1));
    let a = connect(&app_conn(&d)).await.unwrap();
    let b = connect(&app_conn(&d)).await.unwrap();
    a.batch_execute("SET timezone TO '12:00'").await.unwrap();
    b.batch_execute("SET timezone TO '-12:00'").await.unwrap();
    let sql = "SELECT '00:00'::timetz::text";
    for _ in 0..2 {
        let ra: String = a.query_one(sql, &[]).await.unwrap().get(0);
        let rb: String = b.query_one(sql, &[]).await.unwrap().get(0);
        assert_eq!(ra, "00:00:00-12");
        assert_eq!(rb, "00:00:00+12");
    }
}

/// Parse/Bind/Execute/Sync of `sql` (unnamed statement) with text `param`; returns the
/// message tags and the first DataRow or ErrorResponse text.
fn run_unnamed(w: &mut Wire, sql: &str, param: &str) -> (String, String) {
    w.send(&[
        parse("", sql),
        bind("", "", &[Some(param)]),
        execute(""),
        sync(),
    ]);
    let msgs = w.until_ready();
    let first = msgs
        .iter()
        .find(|m| m.tag == b'D' || m.tag == b'E')
        .map(|m| m.text())
        .unwrap_or_default();
    (tags(&msgs), first)
}

/// A type dropped and created again under the same name: a statement cached before must not be
/// reused (XX000 "cache lookup failed for type"), also when the DDL was rolled back.
#[test]
fn statements_are_prepared_afresh_after_ddl() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::sized("transaction", 1));
    let mut w = Wire::login(&d);
    for round in 0..3 {
        w.value("DROP TYPE IF EXISTS tt; CREATE TYPE tt AS (a text, b text)");
        let (t, v) = run_unnamed(&mut w, "SELECT ($1::tt).b", "(x,y)");
        assert_eq!((t.as_str(), v.as_str()), ("12DCZ", "y"), "round {round}");
    }
    // Created inside a transaction that rolls back: gone again for the next one.
    for round in 0..3 {
        w.value("BEGIN");
        w.value("CREATE TYPE te AS ENUM ('a', 'b'); CREATE TABLE t_enum (e te)");
        let (t, _) = run_unnamed(&mut w, "INSERT INTO t_enum (e) VALUES ($1)", "a");
        assert_eq!(t, "12CZ", "round {round}");
        w.value("ROLLBACK");
    }
}

/// DDL the pooler did not see (run on PostgreSQL directly) makes the backend answer 0A000
/// "cached plan must not change result type"; the driver's retry (a new Parse of the same
/// text, as asyncpg and psycopg do) must prepare afresh instead of getting the stale plan again.
#[test]
fn a_retry_after_a_stale_plan_error_prepares_afresh() {
    let pg = cluster(PgAuth::Scram);
    pg.psql_db(
        "appdb",
        "CREATE TABLE t_shape (a int); INSERT INTO t_shape VALUES (1)",
    );
    pg.psql_db("appdb", "GRANT ALL ON t_shape TO app");
    let d = doorman(&pg, &PoolSpec::sized("transaction", 1));
    let mut w = Wire::login(&d);
    let named = |w: &mut Wire, name: &str| {
        w.send(&[
            parse(name, "SELECT * FROM t_shape"),
            bind("", name, &[]),
            execute(""),
            sync(),
        ]);
        let msgs = w.until_ready();
        let bad = msgs.iter().find(|m| m.tag == b'E').map(|m| m.text());
        (tags(&msgs), bad)
    };
    assert_eq!(named(&mut w, "s1").0, "12DCZ");
    pg.psql_db("appdb", "ALTER TABLE t_shape ADD COLUMN b text");
    let (_, err) = named(&mut w, "s2");
    // The first use after the change may fail as it would on PostgreSQL with a named statement…
    if let Some(code) = err {
        assert_eq!(code, "0A000");
        // …but the retry under a new name works.
        let (t, err) = named(&mut w, "s3");
        assert_eq!((t.as_str(), err), ("12DCZ", None));
    }
}

/// A cursor declared WITH HOLD outlives its transaction: in transaction mode its client keeps
/// the backend (counted as cl_pinned) until it closes the cursor.
#[tokio::test]
async fn a_with_hold_cursor_pins_its_client_until_closed() {
    let pg = cluster(PgAuth::Scram);
    let d = with_admin(&pg, 2);
    let a = connect(&app_conn(&d)).await.unwrap();
    let b = connect(&app_conn(&d)).await.unwrap();
    a.batch_execute(
        "BEGIN; DECLARE \"Cur\" CURSOR WITH HOLD FOR SELECT generate_series(1, 5); COMMIT",
    )
    .await
    .unwrap();
    // Other traffic moves between backends meanwhile.
    for _ in 0..5 {
        assert_eq!(one(&b, "SELECT 1").await, "1");
    }
    assert_eq!(one(&a, "FETCH 1 FROM \"Cur\"").await, "1");
    assert_eq!(one(&a, "FETCH 1 FROM \"Cur\"").await, "2");
    let admin = admin(&d).await;
    assert_eq!(pinned(&admin).await, 1);
    a.batch_execute("CLOSE \"Cur\"").await.unwrap();
    assert_eq!(pinned(&admin).await, 0);
    // Released again: a and b can share one backend.
    assert_eq!(one(&a, "SELECT 3").await, "3");
}

/// A temporary table lives until the session ends: its client keeps the backend; ON COMMIT
/// DROP tables do not pin.
#[tokio::test]
async fn a_temporary_table_pins_its_client() {
    let pg = cluster(PgAuth::Scram);
    let d = with_admin(&pg, 2);
    let a = connect(&app_conn(&d)).await.unwrap();
    let b = connect(&app_conn(&d)).await.unwrap();
    a.batch_execute("CREATE TEMP TABLE t_tmp (v int)")
        .await
        .unwrap();
    for _ in 0..5 {
        assert_eq!(one(&b, "SELECT 1").await, "1");
    }
    a.execute("INSERT INTO t_tmp VALUES ($1)", &[&7i32])
        .await
        .unwrap();
    assert_eq!(one(&a, "SELECT sum(v) FROM t_tmp").await, "7");
    let admin = admin(&d).await;
    assert_eq!(pinned(&admin).await, 1);
    a.batch_execute("DISCARD TEMP").await.unwrap();
    assert_eq!(pinned(&admin).await, 0);
    a.batch_execute("BEGIN; CREATE TEMP TABLE t_gone (v int) ON COMMIT DROP; COMMIT")
        .await
        .unwrap();
    assert_eq!(pinned(&admin).await, 0);
}

/// SHOW POOLS cl_pinned of the only pool.
async fn pinned(admin: &tokio_postgres::Client) -> i64 {
    let rows = admin.simple_query("SHOW POOLS").await.unwrap();
    for m in rows {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            let i = (0..r.len())
                .find(|&i| r.columns()[i].name() == "cl_pinned")
                .expect("cl_pinned column");
            return r.get(i).unwrap().parse().unwrap();
        }
    }
    panic!("no pool row")
}

/// Session mode: the client owns one backend for its life, so it is given that backend's real
/// process id; pg_backend_pid(), NOTIFY's sender pid and cancel all agree, and the backend's
/// own FATAL after pg_terminate_backend is the last thing the client reads.
#[test]
fn session_mode_gives_the_real_backend_pid() {
    use std::io::Read;
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::sized("session", 2));
    let mut s = raw(&d);
    let ((pid, _), _) = login_with(&mut s, &[]);
    let mut w = Wire(s);
    assert_eq!(w.value("SELECT pg_backend_pid()"), pid.to_string());
    w.send(&[common::raw::query("LISTEN ch; NOTIFY ch, 'x'")]);
    let msgs = w.until_ready();
    let n = msgs
        .iter()
        .find(|m| m.tag == b'A')
        .expect("NotificationResponse");
    assert_eq!(i32::from_be_bytes(n.body[..4].try_into().unwrap()), pid);
    w.send(&[common::raw::query(&format!(
        "SELECT pg_terminate_backend({pid})"
    ))]);
    let e = loop {
        let m = w.msg();
        if m.tag == b'E' {
            break m;
        }
    };
    assert_eq!(e.text(), "57P01");
    // Then end of stream, no second error from the pooler.
    let mut rest = Vec::new();
    let _ = w.0.read_to_end(&mut rest);
    assert!(rest.is_empty(), "after the FATAL: {rest:?}");
    // With the switch off, ids are the pooler's own.
    let d = doorman(
        &pg,
        &PoolSpec {
            mode: "session",
            pool_extra: "    session_backend_pid: false\n",
            ..Default::default()
        },
    );
    let mut s = raw(&d);
    let ((pid, _), _) = login_with(&mut s, &[]);
    let mut w = Wire(s);
    assert_ne!(w.value("SELECT pg_backend_pid()"), pid.to_string());
}

/// PostgreSQL's session default of a parameter is what the client sent at startup: RESET and
/// RESET ALL return there, not to the pooled backend's own default (PostgreSQL's regression
/// tests for dates and times run with PGTZ and PGDATESTYLE and rely on it).
#[tokio::test]
async fn reset_returns_to_the_startup_value() {
    let pg = cluster(PgAuth::Scram);
    for mode in ["session", "transaction"] {
        let d = doorman(&pg, &PoolSpec::sized(mode, 2));
        let conn = format!(
            "{} options='-c TimeZone=Europe/Paris -c DateStyle=SQL,DMY'",
            app_conn(&d)
        );
        let c = connect(&conn).await.unwrap();
        assert_eq!(one(&c, "SHOW TimeZone").await, "Europe/Paris", "{mode}");
        c.batch_execute("SET TimeZone = 'Asia/Tokyo'")
            .await
            .unwrap();
        assert_eq!(one(&c, "SHOW TimeZone").await, "Asia/Tokyo", "{mode}");
        c.batch_execute("RESET TimeZone").await.unwrap();
        assert_eq!(one(&c, "SHOW TimeZone").await, "Europe/Paris", "{mode}");
        c.batch_execute("SET DateStyle = 'ISO'; SET TIME ZONE 'UTC'")
            .await
            .unwrap();
        c.batch_execute("RESET ALL").await.unwrap();
        assert_eq!(one(&c, "SHOW DateStyle").await, "SQL, DMY", "{mode}");
        assert_eq!(one(&c, "SHOW TimeZone").await, "Europe/Paris", "{mode}");
        // Through the extended protocol too (psycopg and JDBC send RESET that way).
        c.execute("SET TimeZone = 'Asia/Tokyo'", &[]).await.unwrap();
        c.execute("RESET TimeZone", &[]).await.unwrap();
        assert_eq!(one(&c, "SHOW TimeZone").await, "Europe/Paris", "{mode}");
    }
}

/// Transaction mode: a session-level SET of a setting the pooler does not track (psycopg's
/// `SET password_encryption`, then PQencryptPasswordConn's SHOW) stays the client's on every
/// backend it uses, and only its; RESET and RESET ALL undo it.
#[tokio::test]
async fn an_untracked_session_set_follows_its_client() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::sized("transaction", 2));
    let a = connect(&app_conn(&d)).await.unwrap();
    let b = connect(&app_conn(&d)).await.unwrap();
    let default = one(&b, "SHOW work_mem").await;
    a.batch_execute("SET work_mem = '77MB'").await.unwrap();
    a.execute("SET password_encryption TO 'md5'", &[])
        .await
        .unwrap();
    // b holds one backend inside a transaction, so a's next statements use the other.
    for round in 0..3 {
        b.batch_execute("BEGIN").await.unwrap();
        assert_eq!(one(&b, "SHOW work_mem").await, default, "round {round}");
        assert_eq!(one(&a, "SHOW work_mem").await, "77MB", "round {round}");
        assert_eq!(one(&a, "SHOW password_encryption").await, "md5");
        b.batch_execute("COMMIT").await.unwrap();
        assert_eq!(one(&a, "SHOW work_mem").await, "77MB", "round {round}");
        assert_eq!(one(&b, "SHOW work_mem").await, default, "round {round}");
    }
    a.batch_execute("RESET work_mem").await.unwrap();
    assert_eq!(one(&a, "SHOW work_mem").await, default);
    assert_eq!(one(&a, "SHOW password_encryption").await, "md5");
    a.batch_execute("RESET ALL").await.unwrap();
    assert_eq!(one(&a, "SHOW password_encryption").await, "scram-sha-256");
}

/// After a RESET puts a client's startup TimeZone back, its cached statements are keyed by
/// that zone again, not by the backend default the RESET reported on its way.
#[tokio::test]
async fn a_reset_time_zone_keys_cached_statements_by_the_startup_zone() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::sized("transaction", 1));
    let u = connect(&app_conn(&d)).await.unwrap();
    let conn = format!("{} options='-c TimeZone=Asia/Kolkata'", app_conn(&d));
    let c = connect(&conn).await.unwrap();
    c.batch_execute("SET TimeZone = 'Asia/Tokyo'")
        .await
        .unwrap();
    c.batch_execute("RESET TimeZone").await.unwrap();
    let sql = "SELECT '12:00'::timetz::text";
    let ru: String = u.query_one(sql, &[]).await.unwrap().get(0);
    assert_eq!(ru, "12:00:00+00");
    let rc: String = c.query_one(sql, &[]).await.unwrap().get(0);
    assert_eq!(rc, "12:00:00+05:30");
}
