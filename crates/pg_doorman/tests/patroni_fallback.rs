//! Patroni-assisted fallback against a real two-member Patroni cluster: the pool's configured
//! host (the first leader) goes away, Patroni promotes the other member, and pg_doorman keeps
//! serving the pool through the member `/cluster` names, visible in SHOW POOLS, the log and
//! /metrics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{binary, scrape};
use doorman_testkit::patroni::PatroniCluster;
use doorman_testkit::{Doorman, connect, free_port};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_follows_the_leader_after_its_host_goes_away() {
    let cluster = PatroniCluster::start(2);
    let (n0, n1) = (cluster.node("node0").pg_port, cluster.node("node1").pg_port);
    let urls: Vec<String> = cluster
        .api_urls()
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect();
    let metrics = free_port();
    let yaml = format!(
        "general:\n  host: 127.0.0.1\n  port: {{port}}\n  worker_threads: 2\n  connect_timeout: 2s\n  admin_username: admin\n  admin_password: adminpw\n  patroni_api_urls: [{}]\n  fallback_cooldown: 90s\n  fallback_lifetime: 5s\n  fallback_connect_timeout: 2s\n  patroni_api_timeout: 2s\nprometheus:\n  enabled: true\n  host: 127.0.0.1\n  port: {metrics}\npools:\n  appdb:\n    server_host: 127.0.0.1\n    server_port: {n0}\n    server_database: postgres\n    pool_mode: transaction\n    users:\n      - username: app\n        password: app_pw\n        server_username: postgres\n        server_password: postgres\n        pool_size: 4\n",
        urls.join(", ")
    );
    let mut cluster = cluster;
    let d = Doorman::start(binary(), &yaml);
    let conn = d.conn_str("app", "app_pw", "appdb");
    let whoami = |c: tokio_postgres::Client| async move {
        let r = c
            .query_one("select inet_server_port(), pg_is_in_recovery()", &[])
            .await?;
        Ok::<_, tokio_postgres::Error>((r.get::<_, i32>(0) as u16, r.get::<_, bool>(1)))
    };
    assert_eq!(
        whoami(connect(&conn).await.unwrap()).await.unwrap(),
        (n0, false)
    );
    // A client that stays connected across the failover.
    let held = connect(&conn).await.unwrap();
    held.simple_query("select 1").await.unwrap();

    // The configured host goes away: node0's Patroni is terminated (runuser kills it before it
    // gives up the leader key, so the key expires after ttl) and its PostgreSQL stopped; node1
    // is promoted.
    let stopped = Instant::now();
    cluster.stop_node("node0");
    let stop_took = stopped.elapsed();
    // New clients, one every 200 ms from the moment node0 is gone, are served by node1 through
    // the same pool. Before node1 is promoted the fallback may reach it as a standby
    // (read-only; docs/patroni.md): allowed on the way, but the pool must end up on node1 as
    // the leader, and no attempt may hang.
    let mut promoted = None;
    let mut as_standby = None;
    let mut errors = std::collections::BTreeMap::<String, u32>::new();
    let served = loop {
        if promoted.is_none()
            && cluster
                .members()
                .iter()
                .any(|m| m.name == "node1" && m.role == "leader" && m.state == "running")
        {
            promoted = Some(stopped.elapsed());
        }
        let attempt = tokio::time::timeout(Duration::from_secs(15), async {
            whoami(connect(&conn).await?).await
        })
        .await;
        match attempt {
            Ok(Ok(r)) if r == (n1, true) => {
                as_standby.get_or_insert_with(|| stopped.elapsed());
            }
            Ok(Ok(r)) => break r,
            Ok(Err(e)) => {
                let kind = e
                    .as_db_error()
                    .map(|d| d.code().code().to_string())
                    .unwrap_or_else(|| "connection".into());
                *errors.entry(kind).or_default() += 1;
            }
            Err(_) => panic!("a login through the pool hung for 15 s:\n{}", d.log_text()),
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(60),
            "pool not served after the failover:\n{}\n{}",
            d.log_text(),
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let recovered = stopped.elapsed();
    assert_eq!(served, (n1, false));
    eprintln!(
        "fallback: Patroni on node0 took {stop_took:?} to stop; node1 seen leader at {promoted:?}, pool served by node1 as a standby at {as_standby:?}, as the leader at {recovered:?} after the stop began; failed attempts before: {errors:?}"
    );
    // The held client: its backend died with node0; in transaction mode its next queries get
    // a backend on node1 (the first may report the lost backend).
    let mut ok = false;
    for _ in 0..3 {
        if held
            .simple_query("create table if not exists written(x int)")
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
    }
    assert!(ok, "the held client could not write through the fallback");
    held.simple_query("insert into written values (1)")
        .await
        .unwrap();

    // pgbench through the pool while it runs on the fallback member: -i writes its tables on
    // the new leader, then a select-only run.
    let pgbench = |args: &[&str]| {
        std::process::Command::new("pgbench")
            .args(args)
            .args(["-h", "127.0.0.1", "-U", "app", "-p"])
            .arg(d.port.to_string())
            .arg("appdb")
            .env("PGPASSWORD", "app_pw")
            .output()
            .unwrap()
    };
    let init = pgbench(&["-i", "-s", "1", "-q"]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let run = pgbench(&["-n", "-S", "-c", "4", "-T", "2"]);
    let run_out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{run_out}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run_out.contains("number of failed transactions: 0"),
        "{run_out}"
    );
    eprintln!(
        "pgbench -S through the fallback: {}",
        run_out
            .lines()
            .find(|l| l.starts_with("tps"))
            .unwrap_or_default()
    );

    // Visible: the log, SHOW POOLS' fallback_active, /metrics.
    let log = d.log_text();
    assert!(log.contains("configured backend is down"), "{log}");
    assert!(
        log.contains("fallback: connected to Patroni member node1"),
        "{log}"
    );
    let admin = connect(&d.conn_str("admin", "adminpw", "pgdoorman"))
        .await
        .unwrap();
    let rows = admin.simple_query("SHOW POOLS").await.unwrap();
    let row = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) if r.get("database") == Some("appdb") => {
                Some(r.get("fallback_active").unwrap_or_default().to_string())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(row, "1");
    let (_, body) = scrape(metrics);
    for needle in [
        "pg_doorman_fallback_active{pool=\"appdb\"} 1".to_string(),
        format!("pg_doorman_fallback_host{{pool=\"appdb\",host=\"127.0.0.1\",port=\"{n1}\"}} 1"),
        "pg_doorman_patroni_api_requests_total{pool=\"appdb\"}".to_string(),
        "pg_doorman_fallback_cache_hits_total{pool=\"appdb\"}".to_string(),
        "pg_doorman_patroni_api_duration_seconds_count{pool=\"appdb\"}".to_string(),
    ] {
        assert!(body.contains(&needle), "{needle} missing:\n{body}");
    }
    let opened: u64 = body
        .lines()
        .find(|l| l.starts_with("pg_doorman_fallback_connections_total{pool=\"appdb\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(opened >= 1, "{body}");
}
