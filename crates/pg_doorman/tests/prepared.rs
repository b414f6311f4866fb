//! Prepared statements in transaction mode, message by message: what a client sees must be
//! what PostgreSQL itself would send, while its statements move between backends.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::err_expect
)]

mod common;
use common::raw::*;
use common::*;
use tokio_postgres::types::ToSql;

/// A pool of one backend: every client shares it, so a statement one client prepared is on
/// the backend another client gets.
fn single(pg: &TempCluster) -> Doorman {
    doorman(pg, &PoolSpec::sized("transaction", 1))
}

#[test]
fn named_statement_survives_moving_between_backends() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::sized("transaction", 2));
    let mut a = Wire::login(&d);
    a.send(&[parse("s1", "SELECT $1::int + 1"), sync()]);
    assert_eq!(tags(&a.until_ready()), "1Z");
    // Hold one backend in a transaction so the next request runs on the other one.
    let mut holder = Wire::login(&d);
    holder.send(&[query("BEGIN")]);
    holder.until_ready();
    for i in 0..5 {
        a.send(&[bind("", "s1", &[Some(&i.to_string())]), execute(""), sync()]);
        let r = a.until_ready();
        assert_eq!(tags(&r), "2DCZ", "round {i}");
        assert_eq!(r[1].text(), (i + 1).to_string());
    }
    holder.send(&[query("COMMIT")]);
    holder.until_ready();
}

#[test]
fn parse_the_backend_has_gets_a_synthetic_parse_complete_in_describe_flow() {
    let pg = cluster(PgAuth::Scram);
    let d = single(&pg);
    let mut a = Wire::login(&d);
    a.send(&[parse("a", "SELECT 42 AS x"), describe(b'S', "a"), sync()]);
    assert_eq!(tags(&a.until_ready()), "1tTZ");
    // Client b parses the same text under its own name: the backend already has it.
    let mut b = Wire::login(&d);
    b.send(&[
        parse("b", "SELECT 42 AS x"),
        describe(b'S', "b"),
        bind("", "b", &[]),
        execute(""),
        sync(),
    ]);
    let r = b.until_ready();
    assert_eq!(tags(&r), "1tT2DCZ");
    assert_eq!(r[4].text(), "42");
    // Unnamed statements are cached too: ParseComplete still comes before BindComplete.
    for _ in 0..3 {
        b.send(&[
            parse("", "SELECT 42 AS x"),
            bind("", "", &[]),
            describe(b'P', ""),
            execute(""),
            sync(),
        ]);
        assert_eq!(tags(&b.until_ready()), "12TDCZ");
    }
}

#[test]
fn error_mid_batch_skips_synthetic_replies_like_postgres() {
    let pg = cluster(PgAuth::Scram);
    let d = single(&pg);
    let mut a = Wire::login(&d);
    a.send(&[parse("ok", "SELECT 1"), sync()]);
    a.until_ready();
    // Error first: PostgreSQL skips the rest of the batch, so no ParseComplete for "ok2".
    a.send(&[
        parse("bad", "SELECT * FROM no_such_table"),
        parse("ok2", "SELECT 1"),
        bind("", "ok2", &[]),
        execute(""),
        sync(),
    ]);
    assert_eq!(a.error_code(), "42P01");
    // Cached Parse first, then the error: the synthetic ParseComplete precedes the error.
    a.send(&[
        parse("ok3", "SELECT 1"),
        bind("", "missing", &[]),
        execute(""),
        sync(),
    ]);
    let r = a.until_ready();
    assert_eq!(tags(&r), "1EZ");
    assert_eq!(r[1].text(), "26000");
    // The statement whose Parse failed does not exist, for the client either: PostgreSQL's
    // 26000, and the name may be parsed again.
    a.send(&[bind("", "bad", &[]), execute(""), sync()]);
    assert_eq!(a.error_code(), "26000");
    // "ok2", skipped by the backend after the error, is free too.
    a.send(&[
        parse("ok2", "SELECT 2"),
        bind("", "ok2", &[]),
        execute(""),
        sync(),
    ]);
    assert_eq!(tags(&a.until_ready()), "12DCZ");
    a.send(&[bind("", "ok3", &[]), execute(""), sync()]);
    assert_eq!(tags(&a.until_ready()), "2DCZ");
}

#[test]
fn a_failed_unnamed_parse_leaves_no_unnamed_statement_and_a_skipped_one_keeps_it() {
    let pg = cluster(PgAuth::Scram);
    let d = single(&pg);
    let mut a = Wire::login(&d);
    a.send(&[parse("", "SELECT 1"), sync()]);
    assert_eq!(tags(&a.until_ready()), "1Z");
    // PostgreSQL drops the unnamed statement as the Parse begins: after it fails, a Bind of
    // the unnamed statement is 26000 (checked against PostgreSQL 15 directly).
    a.send(&[parse("", "SELECT * FROM no_such_table"), sync()]);
    assert_eq!(a.error_code(), "42P01");
    a.send(&[bind("", "", &[]), execute(""), sync()]);
    assert_eq!(a.error_code(), "26000");
    // A Parse the backend skips (an error earlier in the batch) leaves the old one in place.
    a.send(&[parse("", "SELECT 1"), sync()]);
    assert_eq!(tags(&a.until_ready()), "1Z");
    a.send(&[bind("", "missing", &[]), parse("", "SELECT 2"), sync()]);
    assert_eq!(a.error_code(), "26000");
    a.send(&[bind("", "", &[]), execute(""), sync()]);
    assert_eq!(tags(&a.until_ready()), "2DCZ");
}

#[test]
fn flush_pipeline_is_answered_without_sync() {
    let pg = cluster(PgAuth::Scram);
    let d = single(&pg);
    let mut a = Wire::login(&d);
    a.send(&[parse("f", "SELECT 7"), sync()]);
    a.until_ready();
    let mut b = Wire::login(&d);
    // asyncpg style: Parse + Describe + Flush, read the answers, then Bind/Execute/Sync.
    b.send(&[parse("g", "SELECT 7"), describe(b'S', "g"), flush()]);
    assert_eq!(tags(&b.take(3)), "1tT");
    b.send(&[bind("", "g", &[]), execute(""), flush()]);
    let r = b.take(3);
    assert_eq!(tags(&r), "2DC");
    assert_eq!(r[1].text(), "7");
    b.send(&[sync()]);
    assert_eq!(tags(&b.until_ready()), "Z");
    // A cached Parse alone with Flush is answered at once.
    b.send(&[parse("h", "SELECT 7"), flush()]);
    assert_eq!(tags(&b.take(1)), "1");
    b.send(&[sync()]);
    assert_eq!(tags(&b.until_ready()), "Z");
}

#[test]
fn duplicate_close_and_deallocate_behave_like_postgres() {
    let pg = cluster(PgAuth::Scram);
    let d = single(&pg);
    let mut a = Wire::login(&d);
    a.send(&[parse("d", "SELECT 5"), sync()]);
    assert_eq!(tags(&a.until_ready()), "1Z");
    // Same name again: 42P05, and the rest of the batch is skipped.
    a.send(&[
        parse("d", "SELECT 6"),
        bind("", "d", &[]),
        execute(""),
        sync(),
    ]);
    let r = a.until_ready();
    assert_eq!(tags(&r), "EZ");
    assert_eq!(r[0].text(), "42P05");
    // PostgreSQL's own text, with the name.
    let msg = String::from_utf8_lossy(&r[0].body).into_owned();
    assert!(
        msg.contains("prepared statement \"d\" already exists"),
        "{msg:?}"
    );
    // Close frees the name; closing an unknown one is fine too.
    a.send(&[close(b'S', "d"), close(b'S', "never"), sync()]);
    assert_eq!(tags(&a.until_ready()), "33Z");
    a.send(&[bind("", "d", &[]), execute(""), sync()]);
    assert_eq!(a.until_ready()[0].text(), "26000");
    a.send(&[
        parse("d", "SELECT 6"),
        bind("", "d", &[]),
        execute(""),
        sync(),
    ]);
    let r = a.until_ready();
    assert_eq!(tags(&r), "12DCZ");
    assert_eq!(r[2].text(), "6");
    // DEALLOCATE by SQL forgets the client's name and answers like PostgreSQL.
    a.send(&[query("DEALLOCATE d")]);
    let r = a.until_ready();
    assert_eq!(tags(&r), "CZ");
    assert_eq!(r[0].text(), "DEALLOCATE");
    a.send(&[bind("", "d", &[]), execute(""), sync()]);
    assert_eq!(a.until_ready()[0].text(), "26000");
    // DEALLOCATE ALL inside a transaction keeps the transaction status.
    a.send(&[parse("e", "SELECT 8"), sync()]);
    a.until_ready();
    a.send(&[query("BEGIN")]);
    a.until_ready();
    a.send(&[query("DEALLOCATE ALL")]);
    let r = a.until_ready();
    assert_eq!(tags(&r), "CZ");
    assert_eq!(r[1].body, b"T");
    a.send(&[query("COMMIT")]);
    a.until_ready();
    a.send(&[bind("", "e", &[]), execute(""), sync()]);
    assert_eq!(a.until_ready()[0].text(), "26000");
    // Other clients of the backend are unaffected: their statements are re-prepared.
    let mut b = Wire::login(&d);
    b.send(&[
        parse("x", "SELECT 9"),
        bind("", "x", &[]),
        execute(""),
        sync(),
    ]);
    let r = b.until_ready();
    assert_eq!(tags(&r), "12DCZ");
    assert_eq!(r[2].text(), "9");
}

#[test]
fn disconnect_mid_batch_leaves_a_consistent_backend() {
    let pg = cluster(PgAuth::Scram);
    let d = single(&pg);
    let mut w = Wire::login(&d);
    let pid = w.value("SELECT pg_backend_pid()");
    // Parse sent, no Sync: the client vanishes.
    w.send(&[parse("gone", "SELECT 11"), bind("", "gone", &[]), flush()]);
    let _ = w.take(2);
    drop(w);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut b = Wire::login(&d);
    assert_eq!(
        b.value("SELECT pg_backend_pid()"),
        pid,
        "backend kept, not closed"
    );
    b.send(&[
        parse("g2", "SELECT 11"),
        bind("", "g2", &[]),
        execute(""),
        sync(),
    ]);
    let r = b.until_ready();
    assert_eq!(tags(&r), "12DCZ", "the statement was re-prepared: {r:?}");
    assert_eq!(
        b.value("SELECT count(*) FROM pg_prepared_statements"),
        "1",
        "the backend holds only what the pooler believes"
    );
}

#[test]
fn backend_cache_evicts_after_the_batch() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            pool_size: 1,
            general_extra: "  server_prepared_statements_cache_size: 2\n",
            ..Default::default()
        },
    );
    let mut a = Wire::login(&d);
    // One batch parses and binds more statements than the backend may keep.
    let mut frames = Vec::new();
    for i in 0..5 {
        frames.push(parse(&format!("s{i}"), &format!("SELECT {i}")));
    }
    for i in 0..5 {
        frames.push(bind("", &format!("s{i}"), &[]));
        frames.push(execute(""));
    }
    frames.push(sync());
    a.send(&frames);
    let r = a.until_ready();
    assert_eq!(tags(&r), "111112DC2DC2DC2DC2DCZ");
    // Later batches use them in any order and the backend keeps at most the cap (plus the
    // ones being closed).
    for round in 0..3 {
        for i in (0..5).rev() {
            a.send(&[bind("", &format!("s{i}"), &[]), execute(""), sync()]);
            let r = a.until_ready();
            assert_eq!(tags(&r), "2DCZ", "round {round} s{i}");
            assert_eq!(r[1].text(), i.to_string());
        }
    }
    let n: i64 = a
        .value("SELECT count(*) FROM pg_prepared_statements")
        .parse()
        .unwrap();
    assert!(n <= 3, "backend holds {n} statements");
}

#[tokio::test]
async fn tokio_postgres_statements_and_pipelines_across_a_small_pool() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::sized("transaction", 2));
    let conn = app_conn(&d);
    let mut tasks = Vec::new();
    for t in 0..12i32 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let c = connect(&conn).await.unwrap();
            let add = c.prepare("SELECT $1::int + $2::int").await.unwrap();
            let txt = c.prepare("SELECT repeat('x', $1::int)").await.unwrap();
            for i in 0..40i32 {
                // Pipelined: three requests in flight on one connection.
                let (n, zero) = (i % 7, 0i32);
                let p_add: [&(dyn ToSql + Sync); 2] = [&t, &i];
                let p_txt: [&(dyn ToSql + Sync); 1] = [&n];
                let p_div: [&(dyn ToSql + Sync); 1] = [&zero];
                let (a, b, e) = tokio::join!(
                    c.query_one(&add, &p_add),
                    c.query_one(&txt, &p_txt),
                    c.query_one("SELECT 1 / $1::int", &p_div),
                );
                assert_eq!(a.unwrap().get::<_, i32>(0), t + i);
                assert_eq!(b.unwrap().get::<_, String>(0).len(), (i % 7) as usize);
                assert_eq!(sqlstate(&e.unwrap_err()), "22012");
                if i % 10 == 0 {
                    c.batch_execute("BEGIN").await.unwrap();
                    let v: i32 = c.query_one(&add, &[&1, &1]).await.unwrap().get(0);
                    assert_eq!(v, 2);
                    c.batch_execute("COMMIT").await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(!d.log_text().contains("DOORMAN_"), "{}", d.log_text());
}

/// client_anonymous_prepared_cache_size caps what a client remembers by text, never its named
/// statements: with a cap of 2, the first of 20 named statements still binds (PgDoorman
/// before 3.7.0 evicted it, and the client's next Bind failed with 26000).
#[tokio::test]
async fn the_anonymous_cap_never_evicts_a_named_statement() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            general_extra: "  client_anonymous_prepared_cache_size: 2\n",
            ..PoolSpec::sized("transaction", 2)
        },
    );
    let c = connect(&app_conn(&d)).await.unwrap();
    let mut named = Vec::new();
    for i in 0..20i32 {
        named.push(c.prepare(&format!("SELECT $1::int + {i}")).await.unwrap());
    }
    for (i, st) in named.iter().enumerate() {
        let v: i32 = c.query_one(st, &[&1i32]).await.unwrap().get(0);
        assert_eq!(v, 1 + i as i32);
    }
    // Anonymous statements past the cap are forgotten and parsed again: still correct.
    for i in 0..10i32 {
        let v: i32 = c
            .query_one(&format!("SELECT $1::int * {i}") as &str, &[&3i32])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v, 3 * i);
    }
}

#[test]
fn large_bind_streams_and_oversized_parse_is_refused() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            pool_size: 2,
            general_extra: "  max_memory_usage: 1MB\n",
            ..Default::default()
        },
    );
    let mut a = Wire::login(&d);
    a.send(&[parse("len", "SELECT length($1::text)"), sync()]);
    assert_eq!(tags(&a.until_ready()), "1Z");
    // A 3 MB parameter: far over max_memory_usage, but a Bind is streamed, never held whole.
    let big = "y".repeat(3 << 20);
    for _ in 0..3 {
        a.send(&[bind("", "len", &[Some(&big)]), execute(""), sync()]);
        let r = a.until_ready();
        assert_eq!(tags(&r), "2DCZ");
        assert_eq!(r[1].text(), (3 << 20).to_string());
    }
    // A Parse must be read whole: 2 MB of query text passes the cap and ends that client.
    let mut b = Wire::login(&d);
    let huge = format!("SELECT '{}'", "z".repeat(2 << 20));
    // pg_doorman stops at the cap but drains the rest before closing, so the write completes
    // and the FATAL is not lost to a connection reset.
    b.send(&[parse("huge", &huge), sync()]);
    let out = read_all(&mut b.0);
    assert_eq!(sqlstate_in(&out), "53200");
    // Nothing is left reserved: others go on, including large Parses under the cap.
    let mut c = Wire::login(&d);
    let ok = format!("SELECT length('{}')", "w".repeat(200_000));
    c.send(&[parse("ok", &ok), bind("", "ok", &[]), execute(""), sync()]);
    let r = c.until_ready();
    assert_eq!(tags(&r), "12DCZ");
    assert_eq!(r[2].text(), "200000");
}
