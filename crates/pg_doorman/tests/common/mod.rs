//! Shared helpers for behaviour tests: a real PostgreSQL plus a real pg_doorman process.
#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod jws;
pub mod ledger;
pub mod live;
pub mod pki;
pub mod raw;

pub use doorman_testkit::{Doorman, PgAuth, TempCluster, connect};
pub use raw::{raw, raw_login, read_all, sqlstate_in, startup};
use std::path::Path;
use std::process::Command;

/// The pg_doorman binary cargo built for these tests.
pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_pg_doorman"))
}

/// A cluster with role `app` (password `app_pw`) owning database `appdb`.
/// Backend connections PostgreSQL has open for `user` (pg_stat_activity).
pub fn backends(pg: &TempCluster, user: &str) -> usize {
    pg.psql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = '{user}'"
    ))
    .trim()
    .parse()
    .unwrap()
}

pub fn cluster(auth: PgAuth) -> TempCluster {
    let pg = TempCluster::start(auth);
    pg.create_user("app", "app_pw");
    pg.psql("CREATE DATABASE appdb OWNER app");
    pg
}

/// Options for one pool named `appdb` with user `app`.
pub struct PoolSpec<'a> {
    pub mode: &'a str,
    pub pool_size: usize,
    /// Password line for the client side (plaintext, md5..., SCRAM-SHA-256$...).
    pub password: &'a str,
    /// Extra YAML lines for the user entry (each starting with 8 spaces).
    pub user_extra: &'a str,
    /// Extra YAML lines for the pool (each starting with 4 spaces).
    pub pool_extra: &'a str,
    /// Extra YAML lines for general (each starting with 2 spaces).
    pub general_extra: &'a str,
}

impl<'a> PoolSpec<'a> {
    /// A spec with `mode` and `pool_size`, the rest default.
    pub fn sized(mode: &'a str, pool_size: usize) -> Self {
        PoolSpec {
            mode,
            pool_size,
            ..Default::default()
        }
    }
}

impl Default for PoolSpec<'_> {
    fn default() -> Self {
        PoolSpec {
            mode: "transaction",
            pool_size: 4,
            password: "app_pw",
            user_extra: "",
            pool_extra: "",
            general_extra: "",
        }
    }
}

/// Config YAML for `spec` in front of `pg` (TCP).
pub fn yaml(pg: &TempCluster, spec: &PoolSpec) -> String {
    format!(
        "general:\n  host: 127.0.0.1\n  port: {{port}}\n  worker_threads: 2\n  connect_timeout: 10s\n{ge}pools:\n  appdb:\n    server_host: 127.0.0.1\n    server_port: {pgport}\n    pool_mode: {mode}\n{pe}    users:\n      - username: app\n        password: \"{pw}\"\n        pool_size: {size}\n{ue}",
        ge = spec.general_extra,
        pgport = pg.port,
        mode = spec.mode,
        pe = spec.pool_extra,
        pw = spec.password,
        size = spec.pool_size,
        ue = spec.user_extra,
    )
}

/// Starts pg_doorman for `spec` in front of `pg`.
pub fn doorman(pg: &TempCluster, spec: &PoolSpec) -> Doorman {
    Doorman::start(binary(), &yaml(pg, spec))
}

/// Connection string for `app` through `d`.
pub fn app_conn(d: &Doorman) -> String {
    d.conn_str("app", "app_pw", "appdb")
}

/// Runs psql through pg_doorman; returns (success, stdout, stderr).
pub fn psql(
    d: &Doorman,
    user: &str,
    password: &str,
    db: &str,
    args: &[&str],
) -> (bool, String, String) {
    let out = Command::new("psql")
        .args([
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &d.port.to_string(),
            "-U",
            user,
            "-d",
            db,
        ])
        .args(args)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs pgbench through pg_doorman; returns (number of failed transactions, tps, full output).
pub fn pgbench(d: &Doorman, args: &[&str]) -> (u64, f64, String) {
    let out = Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-p", &d.port.to_string(), "-U", "app"])
        .args(args)
        .arg("appdb")
        .env("PGPASSWORD", "app_pw")
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "pgbench {args:?} failed:\n{text}\n--- pg_doorman log ---\n{}",
        d.log_text()
    );
    let failed = text
        .lines()
        .find(|l| l.starts_with("number of failed transactions"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps ="))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    (failed, tps, text)
}

/// SQLSTATE of a tokio-postgres error ("" if it has none).
pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_default()
}

/// First column of the first row of a simple query, as text.
pub async fn one(c: &tokio_postgres::Client, sql: &str) -> String {
    for m in c.simple_query(sql).await.unwrap() {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            return r.get(0).unwrap_or("").to_string();
        }
    }
    panic!("{sql}: no rows")
}

/// Runs `pg_doorman -t` on `text` written to a temporary file named `name` (the extension
/// picks YAML or TOML); returns (valid, stdout and stderr).
pub fn check_config(name: &str, text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let out = Command::new(binary())
        .arg("-t")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// GET /metrics on `port`: the response head and body.
pub fn scrape(port: u16) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

/// Runs a Python `script` (with prometheus_client, from scripts/deps.sh) over an exposition
/// `text` on its stdin; asserts the script succeeds (the OpenMetrics parser raises on text it
/// cannot parse) and returns what it printed.
pub fn openmetrics(script: &str, text: &str) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with prometheus_client; run scripts/deps.sh");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the exposition does not parse: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// pg_doorman with /metrics on a free port; returns it and the port.
pub fn with_metrics(pg: &TempCluster, pool_size: usize, pool_extra: &str) -> (Doorman, u16) {
    let port = doorman_testkit::free_port();
    let extra = format!("prometheus:\n  enabled: true\n  host: 127.0.0.1\n  port: {port}\n");
    let d = doorman(
        pg,
        &PoolSpec {
            general_extra: &extra,
            pool_size,
            pool_extra,
            ..Default::default()
        },
    );
    (d, port)
}
