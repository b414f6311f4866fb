//! The Grafana dashboard and the Prometheus alert rules in packaging/ use only metrics
//! pg_doorman emits: every `pg_doorman_*` name in their expressions is checked against the
//! families of a real scrape (under traffic, parsed by Python prometheus_client's OpenMetrics
//! parser), so a renamed metric breaks this test, not an operator's dashboard.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use std::collections::BTreeSet;

/// The (family name, type) pairs of an exposition, as the OpenMetrics parser reads them.
fn families(text: &str) -> BTreeSet<(String, String)> {
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    print(fam.name, fam.type)
"#;
    openmetrics(script, text)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

/// The sample names a family of `kind` exposes (OpenMetrics suffixes).
fn sample_names(name: &str, kind: &str) -> Vec<String> {
    match kind {
        "counter" => vec![format!("{name}_total"), format!("{name}_created")],
        "info" => vec![format!("{name}_info")],
        "histogram" => ["_bucket", "_sum", "_count", "_created"]
            .iter()
            .map(|s| format!("{name}{s}"))
            .collect(),
        _ => vec![name.to_string()],
    }
}

/// Every `pg_doorman_...` identifier in `text`.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("pg_doorman_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

fn repo_file(path: &str) -> String {
    let p = format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

#[test]
fn dashboard_and_alerts_use_only_emitted_metrics() {
    let pg = cluster(PgAuth::Scram);
    let (d, port) = with_metrics(&pg, 2, "");
    let (ok, _, err) = psql(
        &d,
        "app",
        "app_pw",
        "appdb",
        &["-c", "SELECT 1", "-c", "SELECT x"],
    );
    assert!(!ok, "{err}");
    let (_, body) = scrape(port);
    // The backend the first query opened, timed by phase.
    for phase in ["tcp_connect", "auth", "startup"] {
        let n = sample(
            &body,
            &format!("pg_doorman_backend_create_duration_seconds_count{{phase=\"{phase}\"}}"),
        );
        assert!(n >= 1.0, "{phase}: {body}");
    }
    let fams = families(&body);
    if std::env::var_os("PRINT_FAMILIES").is_some() {
        for (n, t) in &fams {
            eprintln!("{n} {t}");
        }
    }
    let emitted: BTreeSet<String> = fams.iter().flat_map(|(n, t)| sample_names(n, t)).collect();
    let dashboard = repo_file("packaging/grafana/pg_doorman.json");
    let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&json, &mut exprs);
    assert!(exprs.len() >= 10, "{} expressions", exprs.len());
    let alerts = repo_file("packaging/prometheus/pg_doorman-alerts.yml");
    let alert_exprs: Vec<&str> = alerts
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("expr:"))
        .collect();
    assert!(alert_exprs.len() >= 4, "{alerts}");
    for (source, list) in [
        (
            "packaging/grafana/pg_doorman.json",
            exprs.iter().map(String::as_str).collect::<Vec<_>>(),
        ),
        ("packaging/prometheus/pg_doorman-alerts.yml", alert_exprs),
    ] {
        for e in list {
            let used = names_in(e);
            assert!(!used.is_empty(), "{source}: {e} names no pg_doorman metric");
            for n in used {
                assert!(
                    emitted.contains(&n),
                    "{source}: {n} (in {e}) is not emitted; families: {fams:?}"
                );
            }
        }
    }
}

/// The value of the sample line starting with `prefix` (labels included) in an exposition.
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in {text}"))
}

#[test]
fn connect_failures_and_sockets_are_counted() {
    let pg = cluster(PgAuth::Scram);
    let (d, port) = with_metrics(&pg, 2, "");
    let (_, body) = scrape(port);
    let failures = "pg_doorman_server_connect_failures_total{user=\"app\",database=\"appdb\"}";
    assert_eq!(sample(&body, failures), 0.0, "{body}");
    // The listener, the metrics listener and this scrape's connection at least.
    assert!(
        sample(&body, "pg_doorman_sockets{type=\"tcp\"}") >= 2.0,
        "{body}"
    );
    pg.stop();
    let (ok, _, err) = psql(&d, "app", "app_pw", "appdb", &["-c", "SELECT 1"]);
    assert!(!ok, "{err}");
    let (_, body) = scrape(port);
    assert!(sample(&body, failures) >= 1.0, "{body}");
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                if k == "expr" {
                    if let Some(s) = v.as_str() {
                        out.push(s.to_string());
                    }
                } else {
                    collect_exprs(v, out);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_exprs(x, out)),
        _ => {}
    }
}
