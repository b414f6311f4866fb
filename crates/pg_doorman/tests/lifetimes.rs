//! Connection lifetimes: jittered server_lifetime, idle_timeout only for connections that served
//! a client, retain_connections_max, min_pool_size prewarm and replenish, and the idle probe
//! (server_idle_check_timeout / pooler_check_query).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::err_expect
)]

mod common;
use common::*;
use std::time::{Duration, Instant};

fn backends(pg: &TempCluster) -> usize {
    pg.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'")
        .trim()
        .parse()
        .unwrap()
}

/// Opens `n` backends at once (n clients in transactions), then releases them.
async fn open_backends(d: &Doorman, n: usize) {
    let mut clients = Vec::new();
    for _ in 0..n {
        let c = connect(&app_conn(d)).await.unwrap();
        c.batch_execute("BEGIN; SELECT 1").await.unwrap();
        clients.push(c);
    }
    for c in &clients {
        c.batch_execute("COMMIT").await.unwrap();
    }
}

#[tokio::test]
async fn lifetimes_are_jittered_and_closes_are_capped() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            pool_size: 6,
            general_extra: "  server_lifetime: 2s\n  idle_timeout: 0\n  retain_connections_time: 50ms\n  retain_connections_max: 0\n",
            ..Default::default()
        },
    );
    let start = Instant::now();
    open_backends(&d, 6).await;
    assert_eq!(backends(&pg), 6);
    // ±20 %: all alive before 1.6 s, all gone after 2.4 s, and not all at the same moment.
    let mut counts = Vec::new();
    while start.elapsed() < Duration::from_millis(3600) {
        counts.push((start.elapsed(), backends(&pg)));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let early: Vec<_> = counts
        .iter()
        .filter(|(t, _)| *t < Duration::from_millis(1550))
        .collect();
    assert!(early.iter().all(|(_, n)| *n == 6), "{counts:?}");
    assert_eq!(counts.last().unwrap().1, 0, "{counts:?}");
    let distinct: std::collections::BTreeSet<_> = counts.iter().map(|(_, n)| *n).collect();
    assert!(
        distinct.len() >= 3,
        "connections closed at different moments: {counts:?}"
    );
}

#[tokio::test]
async fn retain_connections_max_closes_a_few_per_cycle() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            pool_size: 5,
            general_extra: "  idle_timeout: 100ms\n  retain_connections_time: 300ms\n  retain_connections_max: 1\n",
            ..Default::default()
        },
    );
    open_backends(&d, 5).await;
    let mut seen = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) && seen.last() != Some(&0) {
        seen.push(backends(&pg));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    seen.dedup();
    assert_eq!(seen, vec![5, 4, 3, 2, 1, 0], "one close per cycle");
}

#[tokio::test]
async fn min_pool_size_is_prewarmed_kept_and_replenished() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            pool_size: 5,
            user_extra: "        min_pool_size: 2\n",
            general_extra: "  idle_timeout: 200ms\n  retain_connections_time: 100ms\n  admin_username: boss\n  admin_password: boss_pw\n",
            ..Default::default()
        },
    );
    // Prewarmed without any client.
    let start = Instant::now();
    while backends(&pg) < 2 && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(backends(&pg), 2);
    // Prewarmed connections never served a client: idle_timeout does not close them.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(backends(&pg), 2);
    // Served ones past idle_timeout close, but never below min_pool_size for long: RECONNECT
    // closes all idle ones and the retain cycle opens two again.
    open_backends(&d, 4).await;
    let (ok, _, err) = psql(&d, "boss", "boss_pw", "pgdoorman", &["-c", "RECONNECT"]);
    assert!(ok, "{err}");
    let start = Instant::now();
    let mut n = usize::MAX;
    while start.elapsed() < Duration::from_secs(5) {
        n = backends(&pg);
        if n == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(n, 2);
}

#[tokio::test]
async fn long_idle_connections_are_probed_before_use() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            pool_size: 1,
            general_extra: "  server_idle_check_timeout: 200ms\n  pooler_check_query: \"SELECT nextval('public.probe_seq')\"\n",
            ..Default::default()
        },
    );
    let c = connect(&app_conn(&d)).await.unwrap();
    c.batch_execute("CREATE SEQUENCE probe_seq").await.unwrap();
    let probes = "SELECT CASE WHEN is_called THEN last_value ELSE 0 END::text FROM probe_seq";
    // Quick reuse: no probe.
    assert_eq!(one(&c, probes).await, "0");
    // Idle past the timeout: the probe runs before the next request (this one).
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(one(&c, probes).await, "1");
    assert_eq!(one(&c, probes).await, "1");
}

#[tokio::test]
async fn a_failing_probe_replaces_the_connection() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            pool_size: 1,
            general_extra: "  server_idle_check_timeout: 100ms\n  pooler_check_query: \"SELECT 1/0\"\n",
            ..Default::default()
        },
    );
    let c = connect(&app_conn(&d)).await.unwrap();
    let pid = one(&c, "SELECT pg_backend_pid()").await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    // The probe fails: the client gets a fresh backend and no error.
    assert_ne!(one(&c, "SELECT pg_backend_pid()").await, pid);
    assert!(d.log_text().contains("failed its check query"));
}

/// Time for `n` clients to each get their own new backend at once.
async fn burst(d: &Doorman, n: usize) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..n {
        let conn = app_conn(d);
        tasks.push(tokio::spawn(async move {
            let c = connect(&conn).await.unwrap();
            c.batch_execute("BEGIN; SELECT pg_sleep(0.2)")
                .await
                .unwrap();
            c
        }));
    }
    let mut held = Vec::new();
    for t in tasks {
        held.push(t.await.unwrap());
    }
    start.elapsed()
}

#[tokio::test]
async fn backend_connects_in_flight_are_capped() {
    let pg = cluster(PgAuth::Scram);
    // Every backend login takes a second (a developer setting of PostgreSQL).
    pg.psql("ALTER SYSTEM SET post_auth_delay = 1");
    pg.psql("SELECT pg_reload_conf()");
    let spec = |parallel: usize| {
        format!(
            "  scaling_max_parallel_creates: {parallel}\n  max_concurrent_creates: 8\n  query_wait_timeout: 30s\n"
        )
    };
    let serial = spec(1);
    let d = doorman(
        &pg,
        &PoolSpec {
            pool_size: 4,
            general_extra: &serial,
            ..Default::default()
        },
    );
    // The first login learns the server's parameters with one connection; it stays idle.
    drop(connect(&app_conn(&d)).await.unwrap());
    let one_at_a_time = burst(&d, 4).await;
    assert!(
        one_at_a_time >= Duration::from_millis(2900),
        "{one_at_a_time:?}"
    );
    drop(d);
    let parallel = spec(4);
    let d = doorman(
        &pg,
        &PoolSpec {
            pool_size: 4,
            general_extra: &parallel,
            ..Default::default()
        },
    );
    drop(connect(&app_conn(&d)).await.unwrap());
    let together = burst(&d, 4).await;
    assert!(together < Duration::from_millis(2500), "{together:?}");
}
