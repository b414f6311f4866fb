//! Clients on the unix socket (`general.unix_socket_dir`): psql, pgbench and tokio-postgres
//! connect to `.s.PGSQL.<port>`, pg_hba `local` lines (md5, reject, peer) apply to them and
//! `host` lines do not, SHOW CLIENTS shows them as `[local]`, the file has
//! `unix_socket_mode`, and a shutdown removes it. Backends are reached over PostgreSQL's own
//! unix socket (server_host a directory).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use doorman_wire::auth::md5;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// psql on the unix socket in `dir`; returns (success, stdout, stderr).
fn psql_unix(
    dir: &str,
    port: u16,
    user: &str,
    password: &str,
    sql: &str,
) -> (bool, String, String) {
    let out = Command::new("psql")
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", dir, "-p"])
        .arg(port.to_string())
        .args(["-U", user, "-d", "appdb", "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn unix_socket_clients_follow_local_rules() {
    let pg = cluster(PgAuth::Md5);
    pg.create_user("bob", "bob_pw");
    let sock = tempfile::Builder::new()
        .prefix("doorman-sock-")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = sock.path().to_str().unwrap().to_string();
    let os_user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap()
        .name;
    let rules = format!(
        "local appdb {os_user} peer\n\
         local appdb carol peer\n\
         local all bob reject\n\
         local appdb app md5\n\
         host all all 127.0.0.1/32 md5\n\
         host pgdoorman admin 127.0.0.1/32 md5\n"
    );
    let hba: String = rules.lines().map(|l| format!("      {l}\n")).collect();
    let general = format!(
        "  unix_socket_dir: {dir}\n  unix_socket_mode: \"0660\"\n  pg_hba:\n    content: |\n{hba}"
    );
    // Backends through PostgreSQL's own unix socket: server_host is its directory.
    let pool = format!("    server_host: {}\n", pg.socket_dir().display());
    let users: String = [
        ("bob", md5::secret("bob", "bob_pw")),
        (os_user.as_str(), "unused_pw".to_string()),
        ("carol", "carol_pw".to_string()),
    ]
    .iter()
    .map(|(u, p)| {
        format!(
            "      - username: \"{u}\"\n        password: \"{p}\"\n        server_username: {su}\n        server_password: {sp}\n        pool_size: 2\n",
            su = if *u == "bob" { "bob" } else { "app" },
            sp = if *u == "bob" { "bob_pw" } else { "app_pw" },
        )
    })
    .collect();
    let mut yaml = yaml(
        &pg,
        &PoolSpec {
            general_extra: &general,
            ..Default::default()
        },
    );
    // Our server_host replaces the TCP one.
    yaml = yaml.replace("    server_host: 127.0.0.1\n", &pool);
    let mut d = Doorman::start(binary(), &format!("{yaml}{users}"));
    let path = sock.path().join(format!(".s.PGSQL.{}", d.port));
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660, "unix_socket_mode");

    // md5 on the socket; the backend connection is over PostgreSQL's socket.
    let (ok, out, err) = psql_unix(
        &dir,
        d.port,
        "app",
        "app_pw",
        "SELECT current_user || ' ' || coalesce(inet_client_addr()::text, 'local')",
    );
    assert!(ok, "{err}\n{}", d.log_text());
    assert_eq!(out, "app local");
    let (ok, _, err) = psql_unix(&dir, d.port, "app", "wrong", "SELECT 1");
    assert!(!ok);
    assert!(
        err.contains("password authentication failed for user \"app\""),
        "{err}"
    );
    // `local all bob reject` refuses bob on the socket; over TCP the host line lets him in.
    let (ok, _, err) = psql_unix(&dir, d.port, "bob", "bob_pw", "SELECT 1");
    assert!(!ok);
    assert!(
        err.contains("pg_hba.conf rejects connection for host \"[local]\", user \"bob\""),
        "{err}"
    );
    let (ok, out, err) = psql(&d, "bob", "bob_pw", "appdb", &["-c", "SELECT current_user"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "bob");
    // peer: this process's OS user logs in without a password; carol is not who we are.
    let (ok, out, err) = psql_unix(&dir, d.port, &os_user, "", "SELECT current_user");
    assert!(ok, "{err}\n{}", d.log_text());
    assert_eq!(out, "app");
    let (ok, _, err) = psql_unix(&dir, d.port, "carol", "carol_pw", "SELECT 1");
    assert!(!ok);
    assert!(
        err.contains("Peer authentication failed for user \"carol\""),
        "{err}"
    );
    // No `host` rule for app from 127.0.0.1 is missing: the local md5 rule does not leak to TCP,
    // and app's TCP login goes by `host all all`.
    let (ok, _, err) = psql(&d, "app", "app_pw", "appdb", &["-c", "SELECT 1"]);
    assert!(ok, "{err}");

    // A driver on the socket is listed as [local].
    let (c, conn) = tokio_postgres::connect(
        &format!(
            "host={dir} port={} user=app password=app_pw dbname=appdb",
            d.port
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    assert_eq!(one(&c, "SELECT 40 + 2").await, "42");
    let (ok, out, err) = psql(&d, "admin", "admin", "pgdoorman", &["-c", "SHOW CLIENTS"]);
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l.contains("|app|") && l.contains("|[local]|")),
        "{out}"
    );

    // pgbench over the socket: init, then select-only with the extended protocol.
    let bench = |args: &[&str]| {
        let out = Command::new("pgbench")
            .args(["-h", &dir, "-p", &d.port.to_string(), "-U", "app"])
            .args(args)
            .arg("appdb")
            .env("PGPASSWORD", "app_pw")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "pgbench {args:?}: {text}");
        text
    };
    bench(&["-i", "-s", "1", "-q"]);
    let text = bench(&["-n", "-S", "-c", "4", "-T", "3", "-M", "extended"]);
    assert!(text.contains("number of failed transactions: 0"), "{text}");
    drop(c);

    // A shutdown takes the socket file away.
    assert!(d.signal_and_wait("TERM").is_some());
    assert!(!path.exists(), "socket file left behind");
}

#[test]
fn bad_unix_socket_settings_are_refused_at_load() {
    for (extra, want) in [
        (
            "  unix_socket_dir: /tmp\n  unix_socket_mode: \"0999\"\n",
            "general.unix_socket_mode",
        ),
        (
            "  unix_socket_dir: relative/dir\n",
            "must be an absolute path",
        ),
    ] {
        let (ok, err) = check_config(
            "c.yaml",
            &format!(
                "general:\n  port: 6432\n{extra}pools:\n  d:\n    users:\n      - username: u\n        password: p\n"
            ),
        );
        assert!(!ok, "{extra}");
        assert!(err.contains(want), "{extra}: {err}");
    }
}
