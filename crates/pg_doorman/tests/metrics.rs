//! /metrics under load, parsed by a real exposition-format parser (Python prometheus_client's
//! OpenMetrics parser, from Debian's python3-prometheus-client).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::err_expect
)]

mod common;
use common::*;
use std::collections::HashMap;
use std::io::{Read, Write};

/// Parses an OpenMetrics text with prometheus_client; returns "name{k=v,...}" -> value.
fn parse(text: &str) -> HashMap<String, f64> {
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {s.value}")
"#;
    openmetrics(script, text)
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

#[tokio::test]
async fn metrics_parse_and_follow_load() {
    let pg = cluster(PgAuth::Scram);
    // The coordinator's families show only for a database that has one.
    let (d, port) = with_metrics(&pg, 2, "    max_db_connections: 5\n");
    let (head, body) = scrape(port);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    let before = parse(&body);
    let key = "pg_doorman_pools_transactions_total{database=appdb,user=app}";
    assert_eq!(before.get(key), Some(&0.0), "{before:?}");
    let c = connect(&app_conn(&d)).await.unwrap();
    for _ in 0..25 {
        one(&c, "SELECT 1").await;
    }
    c.simple_query("SELECT 1/0").await.unwrap_err();
    assert!(connect(&d.conn_str("app", "wrong", "appdb")).await.is_err());
    // A transaction is counted just after its last reply went out: allow a moment.
    let mut after = parse(&scrape(port).1);
    for _ in 0..50 {
        if after[key] == 26.0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        after = parse(&scrape(port).1);
    }
    assert_eq!(after[key], 26.0);
    for (k, v) in [
        ("pg_doorman_build_info{version=0.1.0}", 1.0),
        ("pg_doorman_pool_size{database=appdb,user=app}", 2.0),
        (
            "pg_doorman_pools_clients{database=appdb,status=idle,user=app}",
            1.0,
        ),
        (
            "pg_doorman_pools_servers{database=appdb,status=idle,user=app}",
            1.0,
        ),
        (
            "pg_doorman_pools_errors_total{database=appdb,sqlstate=other,user=app}",
            1.0,
        ),
        (
            "pg_doorman_pools_queries_total{database=appdb,user=app}",
            26.0,
        ),
        ("pg_doorman_connections_total{type=plain}", 1.0),
        (
            "pg_doorman_listener_rejections_total{reason=login_failed}",
            1.0,
        ),
        ("pg_doorman_pools_paused{database=appdb,user=app}", 0.0),
        (
            "pg_doorman_pools_query_duration_seconds_count{database=appdb,user=app}",
            26.0,
        ),
        (
            "pg_doorman_pools_transaction_duration_seconds_count{database=appdb,user=app}",
            26.0,
        ),
        (
            "pg_doorman_pools_wait_duration_seconds_count{database=appdb,user=app}",
            26.0,
        ),
        (
            "pg_doorman_pool_scaling_total{database=appdb,type=creates_started,user=app}",
            1.0,
        ),
        (
            "pg_doorman_pool_scaling{database=appdb,type=inflight_creates,user=app}",
            0.0,
        ),
        (
            "pg_doorman_pool_coordinator{database=appdb,type=connections}",
            1.0,
        ),
        (
            "pg_doorman_pool_coordinator{database=appdb,type=max_connections}",
            5.0,
        ),
        (
            "pg_doorman_pool_coordinator_total{database=appdb,type=exhaustions}",
            0.0,
        ),
        (
            "pg_doorman_clients_prepared_named_entries{database=appdb,user=app}",
            0.0,
        ),
        (
            "pg_doorman_async_clients_count{database=appdb,user=app}",
            0.0,
        ),
        (
            "pg_doorman_servers_prepared_misses_total{database=appdb,user=app}",
            0.0,
        ),
        (
            "pg_doorman_clients_prepared_anonymous_evictions_total{database=appdb,user=app}",
            0.0,
        ),
    ] {
        assert_eq!(after.get(k), Some(&v), "{k}: {after:?}");
    }
    assert!(after["pg_doorman_pools_bytes_total{database=appdb,direction=sent,user=app}"] > 0.0);
    assert!(
        after.contains_key("pg_doorman_server_tls_handshake_duration_seconds_count{pool=appdb}")
    );
    // Anything else is 404.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /nope HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
}

#[tokio::test]
async fn metrics_parse_under_pgbench_load() {
    let pg = cluster(PgAuth::Scram);
    let (d, port) = with_metrics(&pg, 4, "");
    let script = std::env::temp_dir().join(format!("metrics-load-{port}.sql"));
    std::fs::write(&script, "SELECT 1;\n").unwrap();
    let path = script.to_str().unwrap().to_string();
    let key = "pg_doorman_pools_transactions_total{database=appdb,user=app}";
    let (failed, out) = std::thread::scope(|s| {
        let bench = s.spawn(|| {
            let (failed, _, out) =
                pgbench(&d, &["-n", "-c", "8", "-j", "2", "-T", "3", "-f", &path]);
            (failed, out)
        });
        // Scrapes during the run: each parses, the count never goes back, and the pool never
        // shows more backends than pool_size.
        let mut seen = Vec::new();
        while !bench.is_finished() {
            let m = parse(&scrape(port).1);
            let servers: f64 = ["active", "idle"]
                .iter()
                .map(|st| {
                    m[&format!("pg_doorman_pools_servers{{database=appdb,status={st},user=app}}")]
                })
                .sum();
            assert!(servers <= 4.0, "{servers} backends");
            seen.push(m[key]);
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        assert!(
            seen.windows(2).filter(|w| w[0] < w[1]).count() >= 5,
            "transactions_total grows with load: {seen:?}"
        );
        bench.join().unwrap()
    });
    std::fs::remove_file(&script).ok();
    assert_eq!(failed, 0, "{out}");
    let processed: f64 = out
        .lines()
        .find(|l| l.starts_with("number of transactions actually processed"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().split('/').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    // Every transaction pgbench made is counted, once (allow the last ones a moment to land).
    let mut total = parse(&scrape(port).1)[key];
    for _ in 0..50 {
        if total == processed {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        total = parse(&scrape(port).1)[key];
    }
    assert_eq!(total, processed);
}
