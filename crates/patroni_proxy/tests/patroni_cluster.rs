//! patroni_proxy against a real two-member Patroni cluster (etcd + Patroni + PostgreSQL 15):
//! role routing, a switchover under write load, refusal when no member qualifies, SIGHUP
//! reload and /metrics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Proxy, whoami};
use doorman_testkit::free_port;
use doorman_testkit::patroni::{PatroniCluster, http_get};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn config(c: &PatroniCluster, ports: &str) -> String {
    let hosts: Vec<String> = c.api_urls().iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        "cluster_update_interval: 1\nlisten_address: \"127.0.0.1:{{api}}\"\nclusters:\n  main:\n    hosts: [{}]\n    ports:\n{ports}",
        hosts.join(", ")
    )
}

/// One write-load worker's record: transactions done, and when each failure happened.
#[derive(Default)]
struct Record {
    ok: u64,
    failures: Vec<Instant>,
    last_ok: Option<Instant>,
}

async fn writer(port: u16, stop: Arc<AtomicBool>) -> Record {
    let mut r = Record::default();
    let conn = format!(
        "host=127.0.0.1 port={port} user=postgres password=postgres dbname=postgres connect_timeout=2"
    );
    let mut client = None;
    while !stop.load(Ordering::Relaxed) {
        if client.is_none() {
            client = doorman_testkit::connect(&conn).await.ok();
        }
        let done = match &client {
            Some(c) => tokio::time::timeout(
                Duration::from_secs(3),
                c.execute("insert into load(at) values (now())", &[]),
            )
            .await
            .is_ok_and(|r| r.is_ok()),
            None => false,
        };
        if done {
            r.ok += 1;
            r.last_ok = Some(Instant::now());
        } else {
            r.failures.push(Instant::now());
            client = None;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    r
}

async fn any_conn(p: u16) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    doorman_testkit::connect(&format!(
        "host=127.0.0.1 port={p} user=postgres password=postgres dbname=postgres"
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_follow_roles_through_a_switchover() {
    let cluster = PatroniCluster::start(2);
    let (leader_port, replica_port, any_port) = (free_port(), free_port(), free_port());
    let proxy = Proxy::start(&config(
        &cluster,
        &format!(
            "      leader: {{listen: \"127.0.0.1:{leader_port}\", roles: [leader]}}\n      replicas: {{listen: \"127.0.0.1:{replica_port}\", roles: [sync, async], max_lag_in_bytes: 16777216}}\n      any: {{listen: \"127.0.0.1:{any_port}\", roles: [any]}}\n"
        ),
    ));
    let (n0, n1) = (cluster.node("node0").pg_port, cluster.node("node1").pg_port);
    // The first poll runs at start; give it its interval.
    let deadline = Instant::now() + Duration::from_secs(5);
    while whoami(leader_port).await.is_err() {
        assert!(Instant::now() < deadline, "{}", proxy.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(whoami(leader_port).await.unwrap(), (n0, false));
    assert_eq!(whoami(replica_port).await.unwrap(), (n1, true));
    // any: least connections spreads two held connections over both members.
    let (a1, a2) = (
        any_conn(any_port).await.unwrap(),
        any_conn(any_port).await.unwrap(),
    );
    let mut ports = Vec::new();
    for c in [&a1, &a2] {
        let row = c.query_one("select inet_server_port()", &[]).await.unwrap();
        ports.push(row.get::<_, i32>(0) as u16);
    }
    ports.sort();
    let mut both = vec![n0, n1];
    both.sort();
    assert_eq!(ports, both, "least connections should use both members");

    let setup = any_conn(leader_port).await.unwrap();
    setup
        .batch_execute("create table load(id bigserial primary key, at timestamptz)")
        .await
        .unwrap();
    let held = any_conn(leader_port).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(writer(leader_port, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let switch_started = Instant::now();
    let c2 = Arc::new(cluster);
    let c3 = c2.clone();
    tokio::task::spawn_blocking(move || c3.switchover("node1"))
        .await
        .unwrap();
    let c3 = c2.clone();
    tokio::task::spawn_blocking(move || {
        c3.wait_members(Duration::from_secs(30), "node1 to lead", |m| {
            m.iter()
                .any(|m| m.name == "node1" && m.role == "leader" && m.state == "running")
        })
    })
    .await
    .unwrap();
    let new_leader_seen = Instant::now();
    // New connections through the leader port reach node1 within the poll interval + 1 s.
    loop {
        if whoami(leader_port).await.ok() == Some((n1, false)) {
            break;
        }
        assert!(
            new_leader_seen.elapsed() < Duration::from_secs(2),
            "leader port still not on node1 {:?} after Patroni reported it: {}",
            new_leader_seen.elapsed(),
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let routed_after = new_leader_seen.elapsed();
    // The connection held on the old leader is closed.
    assert!(
        held.simple_query("select 1").await.is_err(),
        "a connection to the demoted leader stayed open"
    );
    // Load runs on for 2 s past the switch, then the record.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut records = Vec::new();
    for w in workers {
        records.push(w.await.unwrap());
    }
    let failed: usize = records.iter().map(|r| r.failures.len()).sum();
    let ok: u64 = records.iter().map(|r| r.ok).sum();
    let first = records
        .iter()
        .flat_map(|r| r.failures.first())
        .min()
        .copied();
    let last = records
        .iter()
        .flat_map(|r| r.failures.last())
        .max()
        .copied();
    let window = match (first, last) {
        (Some(f), Some(l)) => l.duration_since(f),
        _ => Duration::ZERO,
    };
    eprintln!(
        "switchover: patronictl + promotion {:?}; leader port on node1 {routed_after:?} after /cluster showed it; load: {ok} transactions ok, {failed} failed, failures over {window:?}",
        new_leader_seen.duration_since(switch_started)
    );
    for r in &records {
        assert!(
            r.last_ok.is_some_and(|t| t > new_leader_seen),
            "a writer did not recover after the switchover"
        );
    }
    assert!(
        window < Duration::from_secs(10),
        "failures lasted {window:?}"
    );
    let logged = proxy.log();
    assert!(logged.contains("member no longer qualifies"), "{logged}");

    // pgbench through the leader port: every transaction commits on the new leader.
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), "insert into load(at) values (now());\n").unwrap();
    let out = std::process::Command::new("pgbench")
        .args([
            "-n",
            "-c",
            "4",
            "-T",
            "3",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-p",
        ])
        .arg(leader_port.to_string())
        .arg("-f")
        .arg(script.path())
        .arg("postgres")
        .env("PGPASSWORD", "postgres")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("number of failed transactions: 0"), "{text}");
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps"))
        .unwrap_or_default();
    eprintln!("pgbench through the leader port after the switchover: {tps}");

    // node0 rejoins as a replica; the replica port routes to it.
    let c3 = c2.clone();
    tokio::task::spawn_blocking(move || {
        c3.wait_members(Duration::from_secs(60), "node0 to stream", |m| {
            m.iter()
                .any(|m| m.name == "node0" && m.role == "replica" && m.state == "streaming")
        })
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if whoami(replica_port).await.ok() == Some((n0, true)) {
            break;
        }
        assert!(Instant::now() < deadline, "{}", proxy.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop((a1, a2, setup));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_reload_and_metrics() {
    let cluster = PatroniCluster::start(2);
    let (leader_port, sync_port, added_port) = (free_port(), free_port(), free_port());
    let base = format!(
        "      leader: {{listen: \"127.0.0.1:{leader_port}\", roles: [leader]}}\n      sync: {{listen: \"127.0.0.1:{sync_port}\", roles: [sync]}}\n"
    );
    let proxy = Proxy::start(&config(&cluster, &base));
    let n0 = cluster.node("node0").pg_port;
    let deadline = Instant::now() + Duration::from_secs(5);
    while whoami(leader_port).await.is_err() {
        assert!(Instant::now() < deadline, "{}", proxy.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // No sync standby in an asynchronous cluster: the sync port refuses, and says why.
    assert!(whoami(sync_port).await.is_err());
    assert!(
        proxy.log().contains("no member qualifies for roles [sync]"),
        "{}",
        proxy.log()
    );
    let metrics = http_get(proxy.api_port, "/metrics").unwrap();
    for needle in [
        "patroni_proxy_member{cluster=\"main\",member=\"node0\",role=\"leader\",state=\"running\"} 1",
        "patroni_proxy_member{cluster=\"main\",member=\"node1\",role=\"replica\",state=\"streaming\"} 1",
        "patroni_proxy_refused_connections_total{cluster=\"main\",port=\"sync\"} 1",
        "patroni_proxy_backend_connections_opened_total{cluster=\"main\",port=\"leader\",member=\"node0\"}",
        "patroni_proxy_member_lag_bytes{cluster=\"main\",member=\"node1\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }
    let updated = http_get(proxy.api_port, "/update_clusters").unwrap();
    assert!(updated.contains("main: node0 leader running"), "{updated}");

    // A connection open across reloads stays open.
    let held = doorman_testkit::connect(&format!(
        "host=127.0.0.1 port={leader_port} user=postgres password=postgres dbname=postgres"
    ))
    .await
    .unwrap();
    // A bad config is refused and the running one stays.
    proxy.reload("clusters: {}\n", "reload of");
    assert_eq!(whoami(leader_port).await.unwrap(), (n0, false));
    // A port added by SIGHUP routes at once; a removed one stops listening.
    let grown = format!(
        "      leader: {{listen: \"127.0.0.1:{leader_port}\", roles: [leader]}}\n      added: {{listen: \"127.0.0.1:{added_port}\", roles: [any]}}\n"
    );
    proxy.reload(&config(&cluster, &grown), "configuration reloaded");
    assert!(whoami(added_port).await.is_ok(), "{}", proxy.log());
    assert!(std::net::TcpStream::connect(("127.0.0.1", sync_port)).is_err());
    held.simple_query("select 1").await.unwrap();
}
