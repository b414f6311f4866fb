//! A PgBouncer config run by pg_doorman unchanged: a pgbouncer.ini laid out as PgBouncer's
//! documentation examples (doc/config.md, etc/pgbouncer.ini: a plain entry, a redirected
//! dbname, a forced `user=`/`password=` entry, per-database pool_mode/pool_size), with an
//! auth_file holding an MD5 secret, a SCRAM verifier and a plaintext password, and an
//! auth_hba_file, served to pgbench and psql against a real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use std::process::Command;

const INI: &str = r#";; database name = connect string
[databases]
; session pool, pool_mode from [pgbouncer]
appdb = host=127.0.0.1 port={pg} dbname=appdb
; redirect app_tx to appdb, in transaction mode with its own pool size
app_tx = host=127.0.0.1 port={pg} dbname=appdb pool_mode=transaction pool_size=4
; access to destination database will go with single user
forcedb = host=127.0.0.1 port={pg} dbname=appdb user=carol password='carol pw' client_encoding=UTF8 datestyle=ISO connect_query='SELECT 1'

[users]
bob = pool_mode=transaction

[pgbouncer]
logfile = {dir}/pgbouncer.log
pidfile = {dir}/pgbouncer.pid
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = hba
auth_file = {dir}/userlist.txt
auth_hba_file = {dir}/hba.conf
admin_users = alice
stats_users = bob
pool_mode = session
server_reset_query = DISCARD ALL
ignore_startup_parameters = extra_float_digits
max_client_conn = 100
default_pool_size = 6
%include {dir}/timeouts.ini
"#;

const TIMEOUTS: &str =
    "[pgbouncer]\nserver_idle_timeout = 60\nquery_wait_timeout = 20\nserver_lifetime = 1800.5\n";

const HBA: &str = "# TYPE  DATABASE USER ADDRESS      METHOD\nhost    all      bob  127.0.0.1/32 scram-sha-256\nhost    all      all  127.0.0.1/32 md5\n";

/// PostgreSQL with alice (MD5 secret), bob (SCRAM), carol (the forced user), pgbench tables.
fn cluster() -> TempCluster {
    let pg = TempCluster::start(PgAuth::Md5);
    for (name, pw, enc) in [
        ("alice", "alice pw", "md5"),
        ("bob", "bob_pw", "scram-sha-256"),
        ("carol", "carol pw", "scram-sha-256"),
    ] {
        pg.psql(&format!(
            "SET password_encryption = '{enc}'; CREATE ROLE {name} LOGIN PASSWORD '{pw}'"
        ));
    }
    pg.psql("CREATE DATABASE appdb");
    let out = Command::new("pgbench")
        .args(["-i", "-q", "-s", "1", "-h"])
        .arg(pg.socket_dir())
        .arg("-p")
        .arg(pg.port.to_string())
        .args(["-U", "postgres", "appdb"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pg.psql_db(
        "appdb",
        "GRANT ALL ON ALL TABLES IN SCHEMA public TO alice, bob, carol",
    );
    pg
}

/// userlist.txt from pg_authid: alice's md5 secret, bob's SCRAM verifier, carol in clear.
fn userlist(pg: &TempCluster) -> String {
    let secret = |r: &str| {
        pg.psql(&format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname = '{r}'"
        ))
        .trim()
        .to_string()
    };
    let (a, b) = (secret("alice"), secret("bob"));
    assert!(
        a.starts_with("md5") && b.starts_with("SCRAM-SHA-256$"),
        "{a} {b}"
    );
    format!(";; PgBouncer auth_file\n\"alice\" \"{a}\"\n\"bob\" \"{b}\"\n\"carol\" \"carol pw\"\n")
}

fn files(pg: &TempCluster) -> Vec<(&'static str, String)> {
    vec![
        ("pgbouncer.ini", INI.replace("{pg}", &pg.port.to_string())),
        ("timeouts.ini", TIMEOUTS.to_string()),
        ("userlist.txt", userlist(pg)),
        ("hba.conf", HBA.to_string()),
    ]
}

fn start(pg: &TempCluster) -> Doorman {
    let f = files(pg);
    let refs: Vec<(&str, &str)> = f.iter().map(|(n, t)| (*n, t.as_str())).collect();
    Doorman::start_files(binary(), &refs, "pgbouncer.ini")
}

fn bench(d: &Doorman, user: &str, password: &str, db: &str, args: &[&str]) -> (u64, u64) {
    let out = Command::new("pgbench")
        .args([
            "-n",
            "-h",
            "127.0.0.1",
            "-p",
            &d.port.to_string(),
            "-U",
            user,
        ])
        .args(args)
        .arg(db)
        .env("PGPASSWORD", password)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "pgbench {user}@{db}: {text}\n{}",
        d.log_text()
    );
    let field = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.split('/').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} in {text}"))
    };
    (
        field("number of transactions actually processed"),
        field("number of failed transactions"),
    )
}

#[test]
fn pgbouncer_ini_and_userlist_serve_pgbench_unchanged() {
    let pg = cluster();
    let d = start(&pg);
    // Session pool, MD5 secret from the auth_file, the hba file's md5 line.
    let (done, failed) = bench(
        &d,
        "alice",
        "alice pw",
        "appdb",
        &["-S", "-c", "4", "-T", "2"],
    );
    assert!(done > 100 && failed == 0, "{done} {failed}");
    // Transaction pool (pool_mode=transaction, pool_size=4) with more clients than backends,
    // SCRAM verifier (passthrough to PostgreSQL), read-write script, extended protocol.
    let (done, failed) = bench(
        &d,
        "bob",
        "bob_pw",
        "app_tx",
        &["-c", "8", "-T", "2", "-M", "extended"],
    );
    assert!(done > 50 && failed == 0, "{done} {failed}");
    let (ok, out, err) = psql(
        &d,
        "alice",
        "alice pw",
        "appdb",
        &[
            "-c",
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'bob'",
        ],
    );
    assert!(ok, "{err}");
    // 8 pgbench clients shared app_tx's pool_size=4 backends.
    let bob_backends: usize = out.trim().parse().unwrap();
    assert!((1..=4).contains(&bob_backends), "{out}");

    // The forced user: every client is carol on the backend, with the entry's startup settings.
    let (ok, out, err) = psql(
        &d,
        "bob",
        "bob_pw",
        "forcedb",
        &["-c", "SELECT current_user, current_setting('DateStyle')"],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "carol|ISO, MDY");

    // hba: bob must use SCRAM; a wrong password is refused.
    let (ok, _, err) = psql(&d, "alice", "wrong", "appdb", &["-c", "SELECT 1"]);
    assert!(
        !ok && err.contains("password authentication failed"),
        "{err}"
    );
    let (ok, _, err) = psql(&d, "dave", "x", "appdb", &["-c", "SELECT 1"]);
    assert!(!ok, "{err}");

    // The admin console: admin_users' first name, its auth_file secret; the pool modes.
    let (ok, out, err) = psql(
        &d,
        "alice",
        "alice pw",
        "pgbouncer",
        &["-P", "tuples_only=off", "-c", "SHOW POOLS"],
    );
    assert!(ok, "{err}");
    let header: Vec<&str> = out.lines().next().unwrap().split('|').collect();
    let at = header.iter().position(|c| *c == "pool_mode").unwrap();
    let mode_of = |db: &str, user: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{db}|{user}|")))
            .unwrap_or_else(|| panic!("{db}/{user} in {out}"))
            .split('|')
            .nth(at)
            .unwrap()
            .to_string()
    };
    assert_eq!(mode_of("appdb", "alice"), "session");
    assert_eq!(mode_of("app_tx", "bob"), "transaction");
    // [users] bob = pool_mode=transaction overrides the session default.
    assert_eq!(mode_of("appdb", "bob"), "transaction");

    // What did not carry over is named when the file is checked.
    let t = Command::new(binary())
        .arg("-t")
        .arg(d.dir().join("pgbouncer.ini"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&t.stderr);
    assert!(t.status.success(), "{err}");
    for key in ["logfile", "stats_users", "connect_query"] {
        assert!(
            err.contains(&format!("warning: {key}")) || err.contains(&format!("{key}:")),
            "{key}: {err}"
        );
    }
    assert!(
        !err.contains("server_reset_query"),
        "DISCARD ALL is our behaviour: {err}"
    );
}

#[test]
fn print_config_shows_yaml_that_loads_and_fatal_settings_are_refused() {
    let pg = cluster();
    let dir = tempfile::tempdir().unwrap();
    let shown = dir.path().display().to_string();
    for (name, text) in files(&pg) {
        let text = text.replace("{dir}", &shown).replace("{port}", "6543");
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let ini = dir.path().join("pgbouncer.ini");
    let out = Command::new(binary())
        .arg("--from-pgbouncer")
        .arg(&ini)
        .arg("--print-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "# listen_port = 6543",
        "port: 6543",
        "idle_timeout: \"60s\"",
        "server_lifetime: \"1800500ms\"",
        "query_wait_timeout: \"20s\"",
        "server_username: \"carol\"",
        "server_database: \"appdb\"",
        "DateStyle: \"ISO\"",
    ] {
        assert!(yaml.contains(needle), "{needle}:\n{yaml}");
    }
    let path = dir.path().join("converted.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let t = Command::new(binary())
        .arg("-t")
        .arg(&path)
        .output()
        .unwrap();
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));

    // Settings whose meaning pg_doorman cannot keep stop the load, each named.
    std::fs::write(
        &ini,
        "[databases]\n* = host=127.0.0.1\nx = host=127.0.0.1 pool_mode=statement\n[pgbouncer]\nauth_type = cert\npool_mode = session\n",
    )
    .unwrap();
    let t = Command::new(binary()).arg("-t").arg(&ini).output().unwrap();
    let err = String::from_utf8_lossy(&t.stderr);
    assert!(!t.status.success(), "{err}");
    for needle in ["[databases] *", "pool_mode = statement", "auth_type = cert"] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
}
