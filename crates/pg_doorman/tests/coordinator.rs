//! The pool coordinator: two user pools share max_db_connections; idle connections move to the
//! user that needs them, never below a user's min_guaranteed_pool_size; the reserve and the
//! final error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::err_expect
)]

mod common;
use common::*;
use std::time::Duration;

fn two_users(pg: &TempCluster, pool_extra: &str) -> Doorman {
    two_users_with(pg, pool_extra, "")
}

fn two_users_with(pg: &TempCluster, pool_extra: &str, general_extra: &str) -> Doorman {
    pg.create_user("bob", "bob_pw");
    let general_extra =
        format!("  admin_username: boss\n  admin_password: boss_pw\n{general_extra}");
    let spec = PoolSpec {
        pool_size: 4,
        pool_extra,
        general_extra: &general_extra,
        ..Default::default()
    };
    let yaml = format!(
        "{}      - username: bob\n        password: bob_pw\n        pool_size: 4\n",
        yaml(pg, &spec)
    );
    Doorman::start(binary(), &yaml)
}

/// `n` app clients, each inside a transaction that holds a backend.
async fn app_in_transactions(d: &Doorman, n: usize) -> Vec<tokio_postgres::Client> {
    let mut held = Vec::new();
    for _ in 0..n {
        let c = connect(&app_conn(d)).await.unwrap();
        c.batch_execute("BEGIN").await.unwrap();
        one(&c, "SELECT 1").await;
        held.push(c);
    }
    held
}

fn coordinator_row(d: &Doorman) -> Vec<String> {
    let (ok, out, err) = psql(
        d,
        "boss",
        "boss_pw",
        "pgdoorman",
        &["-c", "SHOW POOL_COORDINATOR"],
    );
    assert!(ok, "{err}");
    out.trim().split('|').map(str::to_string).collect()
}

#[tokio::test]
async fn a_burst_cannot_starve_the_other_user_below_its_guarantee() {
    let pg = cluster(PgAuth::Scram);
    let d = two_users(
        &pg,
        "    max_db_connections: 4\n    min_guaranteed_pool_size: 1\n    min_connection_lifetime: 0\n    reserve_pool_timeout: 500ms\n",
    );
    // app takes the whole cap, then lets the connections go idle.
    let mut held = Vec::new();
    for _ in 0..4 {
        let c = connect(&app_conn(&d)).await.unwrap();
        c.batch_execute("BEGIN; SELECT 1").await.unwrap();
        held.push(c);
    }
    for c in &held {
        c.batch_execute("COMMIT").await.unwrap();
    }
    assert_eq!(backends(&pg, "app"), 4);
    // bob needs one: an idle one of app's is closed for it.
    let bob = connect(&d.conn_str("bob", "bob_pw", "appdb"))
        .await
        .unwrap();
    assert_eq!(one(&bob, "SELECT current_user").await, "bob");
    assert_eq!(backends(&pg, "bob"), 1);
    assert!(backends(&pg, "app") + backends(&pg, "bob") <= 4);
    // A burst of app: three connections are all it can have; bob keeps its guaranteed one.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let conn = app_conn(&d);
        tasks.push(tokio::spawn(async move {
            let c = connect(&conn).await.unwrap();
            c.simple_query("BEGIN; SELECT pg_sleep(1.5); COMMIT")
                .await
                .map(|_| ())
        }));
    }
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        backends(&pg, "bob"),
        1,
        "bob keeps min_guaranteed_pool_size"
    );
    assert!(backends(&pg, "app") <= 3);
    let mut refused = 0;
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            assert_eq!(sqlstate(&e), "53300", "{e:?}");
            refused += 1;
        }
    }
    assert!(refused >= 1, "one of the four found no place");
    let row = coordinator_row(&d);
    assert_eq!(&row[..5], ["appdb", "4", "4", "0", "0"], "{row:?}");
    assert_eq!(row[5], "1", "one eviction: {row:?}");
    assert!(row[7].parse::<u64>().unwrap() >= 1, "exhaustions: {row:?}");
    drop(bob);
}

#[tokio::test]
async fn the_reserve_is_used_when_nothing_can_be_evicted() {
    let pg = cluster(PgAuth::Scram);
    let d = two_users(
        &pg,
        "    max_db_connections: 2\n    reserve_pool_size: 1\n    min_connection_lifetime: 1h\n    reserve_pool_timeout: 200ms\n",
    );
    let held = app_in_transactions(&d, 2).await;
    // Both places are busy and too young to evict: bob gets the reserve.
    let bob = connect(&d.conn_str("bob", "bob_pw", "appdb"))
        .await
        .unwrap();
    bob.batch_execute("BEGIN").await.unwrap();
    assert_eq!(one(&bob, "SELECT 'reserve'").await, "reserve");
    let row = coordinator_row(&d);
    assert_eq!(&row[..5], ["appdb", "2", "2", "1", "1"], "{row:?}");
    assert_eq!(row[6], "1", "reserve acquisitions: {row:?}");
    // And then nothing is left.
    let bob2 = connect(&d.conn_str("bob", "bob_pw", "appdb"))
        .await
        .unwrap();
    let e = bob2.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e), "53300");
    drop(held);
}

/// Polls SHOW POOL_COORDINATOR until `reserve_used` (column 5) reads `want`, at most 5 s.
fn reserve_used_becomes(d: &Doorman, want: &str) -> Vec<String> {
    let mut row = coordinator_row(d);
    for _ in 0..50 {
        if row[4] == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        row = coordinator_row(d);
    }
    row
}

#[tokio::test]
async fn the_retain_cycle_upgrades_or_closes_idle_reserve_connections() {
    let pg = cluster(PgAuth::Scram);
    let d = two_users_with(
        &pg,
        "    max_db_connections: 2\n    reserve_pool_size: 1\n    min_connection_lifetime: 1h\n    reserve_pool_timeout: 200ms\n",
        "  retain_connections_time: 300ms\n",
    );
    let held = app_in_transactions(&d, 2).await;
    let bob = connect(&d.conn_str("bob", "bob_pw", "appdb"))
        .await
        .unwrap();
    bob.batch_execute("BEGIN").await.unwrap();
    let bob_pid = one(&bob, "SELECT pg_backend_pid()").await;
    // bob's connection holds the reserve. One of app's backends goes away, freeing a place
    // under the cap; once bob's connection is idle the retain cycle moves it there (same
    // backend, reserve free again).
    assert_eq!(coordinator_row(&d)[4], "1");
    let app_pid = one(&held[0], "SELECT pg_backend_pid()").await;
    pg.psql(&format!("SELECT pg_terminate_backend({app_pid})"));
    let mut row = coordinator_row(&d);
    for _ in 0..50 {
        if row[2] == "1" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        row = coordinator_row(&d);
    }
    assert_eq!(
        row[2], "1",
        "the place of the dead backend is free: {row:?}"
    );
    bob.batch_execute("COMMIT").await.unwrap();
    let row = reserve_used_becomes(&d, "0");
    assert_eq!(
        &row[2..5],
        ["2", "1", "0"],
        "current, reserve_size, reserve_used: {row:?}"
    );
    assert_eq!(one(&bob, "SELECT pg_backend_pid()").await, bob_pid);
    // Two bob transactions at once: the second backend can only be a reserve one. Once both
    // are idle and the cap is still full, the retain cycle closes the reserve one.
    let bob2 = connect(&d.conn_str("bob", "bob_pw", "appdb"))
        .await
        .unwrap();
    bob.batch_execute("BEGIN").await.unwrap();
    one(&bob, "SELECT 1").await;
    bob2.batch_execute("BEGIN").await.unwrap();
    one(&bob2, "SELECT 1").await;
    assert_eq!(coordinator_row(&d)[4], "1");
    assert_eq!(backends(&pg, "bob"), 2);
    bob.batch_execute("COMMIT").await.unwrap();
    bob2.batch_execute("COMMIT").await.unwrap();
    let row = reserve_used_becomes(&d, "0");
    assert_eq!(row[4], "0", "{row:?}");
    let mut n = backends(&pg, "bob");
    for _ in 0..50 {
        if n == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        n = backends(&pg, "bob");
    }
    assert_eq!(n, 1, "the reserve backend closed");
    drop(held);
}

#[tokio::test]
async fn between_equal_surpluses_the_slower_pool_gives_up_a_connection() {
    let pg = cluster(PgAuth::Scram);
    pg.create_user("bob", "bob_pw");
    pg.create_user("carol", "carol_pw");
    let spec = PoolSpec {
        pool_size: 4,
        pool_extra: "    max_db_connections: 4\n    min_connection_lifetime: 0\n    reserve_pool_timeout: 200ms\n",
        // Connects at once: no anticipation wait inside app's (fast) transactions.
        general_extra: "  scaling_warm_pool_ratio: 100\n",
        ..Default::default()
    };
    let yaml = format!(
        "{}      - username: bob\n        password: bob_pw\n        pool_size: 4\n      - username: carol\n        password: carol_pw\n        pool_size: 4\n",
        yaml(&pg, &spec)
    );
    let d = Doorman::start(binary(), &yaml);
    // app and bob hold two backends each (the cap); bob's transactions are slow (~300 ms),
    // app's fast. (app is the first pool of the database: without the p95 ranking it would be
    // the one to give up a connection.)
    let mut clients = Vec::new();
    for (user, pw, sql) in [
        ("app", "app_pw", "SELECT 1"),
        ("bob", "bob_pw", "SELECT pg_sleep(0.3)"),
    ] {
        let a = connect(&d.conn_str(user, pw, "appdb")).await.unwrap();
        let b = connect(&d.conn_str(user, pw, "appdb")).await.unwrap();
        // Overlapping transactions, so each user needs two backends.
        for _ in 0..3 {
            for c in [&a, &b] {
                c.batch_execute("BEGIN").await.unwrap();
                c.simple_query(sql).await.unwrap();
            }
            for c in [&a, &b] {
                c.batch_execute("COMMIT").await.unwrap();
            }
        }
        clients.push((a, b));
    }
    assert_eq!((backends(&pg, "app"), backends(&pg, "bob")), (2, 2));
    // carol needs a place: both have the same surplus, the slower bob gives one up.
    let carol = connect(&d.conn_str("carol", "carol_pw", "appdb"))
        .await
        .unwrap();
    assert_eq!(one(&carol, "SELECT 'in'").await, "in");
    let mut seen = (backends(&pg, "app"), backends(&pg, "bob"));
    for _ in 0..50 {
        if seen == (2, 1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        seen = (backends(&pg, "app"), backends(&pg, "bob"));
    }
    assert_eq!(seen, (2, 1), "(app, bob) backends");
}
