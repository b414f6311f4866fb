//! Logging: the periodic stats line (logfmt), durations as `4m30s`, syslog, and rate-limited
//! repeated connect failures.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::err_expect
)]

mod common;
use common::*;
use std::time::Duration;

#[tokio::test]
async fn periodic_stats_line_and_disconnect_duration() {
    let pg = cluster(PgAuth::Scram);
    let d = Doorman::start_env(
        binary(),
        &yaml(&pg, &PoolSpec::default()),
        &[("PG_DOORMAN_STATS_PERIOD_MS", "300")],
    );
    let c = connect(&app_conn(&d)).await.unwrap();
    for _ in 0..10 {
        one(&c, "SELECT 1").await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = d.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("stats pool=app@appdb"))
        .unwrap_or_else(|| panic!("no stats line:\n{log}"));
    for key in [
        "xact_per_s=",
        "query_per_s=",
        "avg_xact_us=",
        "avg_wait_us=",
        "clients=1",
        "uptime=",
    ] {
        assert!(line.contains(key), "{key} in {line}");
    }
    // logfmt: key=value pairs, values without spaces.
    let fields = line.split("stats ").nth(1).unwrap();
    assert!(
        fields.split(' ').all(|kv| kv
            .split_once('=')
            .is_some_and(|(k, v)| !k.is_empty() && !v.is_empty())),
        "{fields}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("client disconnected after ") && l.contains("[app@appdb #c")),
        "{log}"
    );
}

#[tokio::test]
async fn syslog_receives_lines() {
    let pg = cluster(PgAuth::Scram);
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("log.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let d = Doorman::start_env(
        binary(),
        &yaml(
            &pg,
            &PoolSpec {
                general_extra: "  syslog_prog_name: doorman-test\n",
                ..Default::default()
            },
        ),
        &[("PG_DOORMAN_SYSLOG_SOCKET", sock_path.to_str().unwrap())],
    );
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    while let Ok(n) = sock.recv(&mut buf) {
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = line.contains("listening on");
        got.push(line);
        if done {
            break;
        }
    }
    let line = got
        .iter()
        .find(|l| l.contains("listening on"))
        .unwrap_or_else(|| panic!("{got:?}"));
    // <daemon.info>prog[pid]: message
    assert!(line.starts_with("<30>doorman-test["), "{line}");
    assert!(line.contains(&format!("[{}]: ", d.pid())), "{line}");
}

#[tokio::test]
async fn repeated_connect_failures_are_rate_limited() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            user_extra: "        server_password: wrong\n",
            ..Default::default()
        },
    );
    for _ in 0..8 {
        let _ = connect(&app_conn(&d)).await;
    }
    let n = d.log_text().matches("server connection failed").count();
    assert_eq!(n, 1, "{}", d.log_text());
}
