//! Real drivers through pg_doorman in transaction mode with fewer backends than client
//! connections: psycopg 3, asyncpg, node-postgres, pgjdbc. Each suite (tests/drivers/) asserts
//! its own results; here we run it and require success and no DOORMAN_ name leaking to a client.
//! scripts/deps.sh installs the drivers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::err_expect
)]

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn drivers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drivers")
}

/// Runs `cmd` with PG* variables pointing at pg_doorman (pool of 3) and checks the outcome.
fn run_suite(name: &str, mut cmd: Command) {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            pool_size: 3,
            general_extra: "  query_wait_timeout: 30s\n",
            ..Default::default()
        },
    );
    let out = cmd
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", d.port.to_string())
        .env("PGUSER", "app")
        .env("PGPASSWORD", "app_pw")
        .env("PGDATABASE", "appdb")
        .env("PGSSLMODE", "disable")
        .output()
        .unwrap_or_else(|e| panic!("{name}: cannot start ({e}); run scripts/deps.sh"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{name} failed:\n{text}");
    assert!(text.contains(", 0 failed"), "{name}:\n{text}");
    assert!(!text.contains("DOORMAN_"), "{name}:\n{text}");
    let n: i64 = pg
        .psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'")
        .trim()
        .parse()
        .unwrap();
    assert!(n <= 3, "{name}: pool_size 3 caps backends, saw {n}");
}

fn python(script: &str) -> Command {
    // Debian's interpreter, where python3-psycopg and python3-asyncpg are installed.
    let mut c = Command::new("/usr/bin/python3");
    c.arg(drivers_dir().join(script));
    c
}

#[test]
fn psycopg3() {
    run_suite("psycopg", python("psycopg_suite.py"));
}

#[test]
fn asyncpg() {
    run_suite("asyncpg", python("asyncpg_suite.py"));
}

#[test]
fn node_postgres() {
    let dir = drivers_dir().join("node");
    let mut c = Command::new("node");
    c.arg("suite.js").current_dir(&dir);
    run_suite("node-postgres", c);
}

#[test]
fn pgjdbc() {
    let classes = tempfile::tempdir().unwrap();
    let src = drivers_dir().join("DoormanJdbc.java");
    let st = Command::new("javac")
        .arg("-d")
        .arg(classes.path())
        .arg(&src)
        .status()
        .expect("javac; run scripts/deps.sh");
    assert!(st.success());
    let mut c = Command::new("java");
    c.arg("-cp")
        .arg(format!(
            "{}:/usr/share/java/postgresql.jar",
            classes.path().display()
        ))
        .arg("DoormanJdbc");
    run_suite("pgjdbc", c);
}
