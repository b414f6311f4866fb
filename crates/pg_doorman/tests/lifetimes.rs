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
async fn lifetimes_are_jittered() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            pool_size: 6,
            general_extra: "  server_lifetime: 2s\n  idle_timeout: 0\n  retain_connections_time: 50ms\n  retain_connections_max: 0\n",
            ..Default::default()
        },
    );
    // pid → backend_start (seconds since the epoch): each lifetime is measured from its own
    // connect, so a slow machine opening the six one after another does not skew it.
    let backends = || -> std::collections::BTreeMap<String, f64> {
        pg.psql(
            "SELECT pid || ' ' || extract(epoch FROM backend_start) \
             FROM pg_stat_activity WHERE usename = 'app'",
        )
        .lines()
        .filter_map(|l| {
            let (pid, at) = l.split_once(' ')?;
            Some((pid.to_string(), at.parse().ok()?))
        })
        .collect()
    };
    let epoch = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    open_backends(&d, 6).await;
    let first = backends();
    assert_eq!(first.len(), 6);
    let last_start = first.values().cloned().fold(0.0, f64::max);
    // ±20 %: none gone before 1.6 s of age, all gone by 2.4 s (plus the 50 ms retain cycle and
    // this loop's polling), not all at one moment.
    let mut lived = std::collections::BTreeMap::new();
    while epoch() - last_start < 3.6 && lived.len() < 6 {
        let now = backends();
        let t = epoch();
        for (p, start) in first.iter().filter(|(p, _)| !now.contains_key(*p)) {
            lived.entry(p.clone()).or_insert(t - start);
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(lived.len(), 6, "{lived:?}");
    assert!(lived.values().all(|t| *t >= 1.55), "{lived:?}");
    assert!(lived.values().all(|t| *t <= 3.2), "{lived:?}");
    let moments: std::collections::BTreeSet<_> =
        lived.values().map(|t| (t * 1000.0) as u64 / 40).collect();
    assert!(moments.len() >= 3, "closed at different ages: {lived:?}");
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
        seen.push(backends(&pg, "app"));
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
    while backends(&pg, "app") < 2 && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(backends(&pg, "app"), 2);
    // Prewarmed connections never served a client: idle_timeout does not close them.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(backends(&pg, "app"), 2);
    // Served ones past idle_timeout close, but never below min_pool_size for long: RECONNECT
    // closes all idle ones and the retain cycle opens two again.
    open_backends(&d, 4).await;
    let (ok, _, err) = psql(&d, "boss", "boss_pw", "pgdoorman", &["-c", "RECONNECT"]);
    assert!(ok, "{err}");
    let start = Instant::now();
    let mut n = usize::MAX;
    while start.elapsed() < Duration::from_secs(5) {
        n = backends(&pg, "app");
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

#[tokio::test]
async fn a_client_queued_for_a_connect_takes_a_returned_connection() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            pool_size: 3,
            general_extra: "  scaling_max_parallel_creates: 1\n  scaling_warm_pool_ratio: 100\n  query_wait_timeout: 30s\n",
            ..Default::default()
        },
    );
    // A holds the one backend there is (opened before logins got slow).
    let a = connect(&app_conn(&d)).await.unwrap();
    a.batch_execute("BEGIN").await.unwrap();
    one(&a, "SELECT 1").await;
    pg.psql("ALTER SYSTEM SET post_auth_delay = 1");
    pg.psql("SELECT pg_reload_conf()");
    let timed = |conn: String| async move {
        let c = connect(&conn).await.unwrap();
        let start = Instant::now();
        c.simple_query("SELECT 1").await.unwrap();
        start.elapsed()
    };
    // B opens a second backend (a second's login); C queues at the one-connect gate behind it.
    let b = tokio::spawn(timed(app_conn(&d)));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let c = tokio::spawn(timed(app_conn(&d)));
    tokio::time::sleep(Duration::from_millis(150)).await;
    // A's backend comes back: C, waiting at the gate, takes it instead of waiting for B's
    // connect and then its own.
    a.batch_execute("COMMIT").await.unwrap();
    let (b, c) = (b.await.unwrap(), c.await.unwrap());
    assert!(b >= Duration::from_millis(900), "B {b:?}");
    assert!(c < Duration::from_millis(700), "C {c:?}");
}

#[tokio::test]
async fn connections_near_their_lifetime_are_replaced_ahead() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            pool_size: 2,
            general_extra: "  server_lifetime: 3s\n  idle_timeout: 0\n  retain_connections_time: 50ms\n",
            ..Default::default()
        },
    );
    let c = connect(&app_conn(&d)).await.unwrap();
    let first = one(&c, "SELECT pg_backend_pid()").await;
    let pids = || {
        pg.psql("SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE usename = 'app'")
            .trim()
            .to_string()
    };
    // Lifetime 2.4–3.6 s: by 4 s the first connection is gone, and a successor was opened
    // before it closed, so the pool never had none (no client asked for one meanwhile).
    let start = Instant::now();
    let mut saw = Vec::new();
    while start.elapsed() < Duration::from_secs(4) {
        saw.push(pids());
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(
        saw.iter().all(|p| !p.is_empty()),
        "never without a backend: {saw:?}"
    );
    let last = saw.last().unwrap();
    assert!(!last.split(',').any(|p| p == first), "{saw:?}");
    assert!(d.log_text().contains("near the end of their lifetime"));
}

/// Backends a pool of 8 ends up with after 4 clients run 60 short queries each.
async fn backends_after_quick_burst(extra: &str) -> usize {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            pool_size: 8,
            general_extra: extra,
            ..Default::default()
        },
    );
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(connect(&app_conn(&d)).await.unwrap());
    }
    let mut tasks = Vec::new();
    for c in clients {
        tasks.push(tokio::spawn(async move {
            for _ in 0..60 {
                one(&c, "SELECT 1").await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    backends(&pg, "app")
}

#[tokio::test]
async fn above_the_warm_ratio_a_burst_reuses_before_it_creates() {
    // Everything warm: every client that finds no idle connection opens one.
    let eager =
        backends_after_quick_burst("  scaling_warm_pool_ratio: 100\n  scaling_fast_retries: 0\n")
            .await;
    // Nothing warm and many retries: returning connections are found first.
    let patient =
        backends_after_quick_burst("  scaling_warm_pool_ratio: 0\n  scaling_fast_retries: 5000\n")
            .await;
    assert!(patient < eager, "patient {patient} vs eager {eager}");
}
