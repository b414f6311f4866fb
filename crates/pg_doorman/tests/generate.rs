//! `pg_doorman generate` against a real PostgreSQL with 3 databases and 5 roles (MD5 and SCRAM
//! secrets): the written config (YAML and TOML) passes `-t`, and pg_doorman started with it
//! serves psql logins for every role with its real password in every database. A role that
//! may not read pg_shadow gets placeholders nobody can log in with.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

const ROLES: [(&str, &str, &str); 5] = [
    ("s_one", "s_one pw", "scram-sha-256"),
    ("s_two", "s'two\"pw", "scram-sha-256"),
    ("s_three", "three", "scram-sha-256"),
    ("m_one", "m_one_pw", "md5"),
    ("m_two", "m_two_pw", "md5"),
];
const DATABASES: [&str; 3] = ["db_a", "db_b", "db-c"];

fn cluster_with_roles() -> TempCluster {
    // md5 in pg_hba accepts both kinds of stored secret (SCRAM ones log in with SCRAM).
    let pg = TempCluster::start(PgAuth::Md5);
    pg.psql("SET password_encryption = 'md5'; ALTER ROLE postgres PASSWORD 'super_pw'");
    for (name, pw, enc) in ROLES {
        let pw = pw.replace('\'', "''");
        pg.psql(&format!(
            "SET password_encryption = '{enc}'; CREATE ROLE {name} LOGIN PASSWORD '{pw}'"
        ));
    }
    for db in DATABASES {
        pg.psql(&format!("CREATE DATABASE \"{db}\""));
    }
    pg
}

fn generate(args: &[&str], password: Option<&str>) -> std::process::Output {
    let mut c = Command::new(binary());
    c.arg("generate").args(args);
    c.env_remove("PGPASSWORD").env_remove("PGSSLMODE");
    if let Some(p) = password {
        c.env("PGPASSWORD", p);
    }
    c.output().unwrap()
}

fn check_config(path: &Path) {
    let out = Command::new(binary()).arg("-t").arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "-t refused {}: {}\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(path).unwrap()
    );
}

fn psql(d: &Doorman, user: &str, password: &str, db: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args(["-X", "-At", "-h", "127.0.0.1", "-p", &d.port.to_string()])
        .args(["-U", user, "-d", db, "-c"])
        .arg("SELECT current_user || '@' || current_database()")
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn generated_config_serves_every_role_in_every_database() {
    let pg = cluster_with_roles();
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("gen.yaml");
    let toml = dir.path().join("gen.toml");
    let port = pg.port.to_string();
    for (path, extra) in [(&yaml, &[][..]), (&toml, &["--no-comments"][..])] {
        let mut args = vec!["--host", "127.0.0.1", "-p", &port, "-u", "postgres"];
        args.extend_from_slice(&["-o", path.to_str().unwrap(), "--pool-size", "3"]);
        args.extend_from_slice(extra);
        let out = generate(&args, Some("super_pw"));
        assert!(
            out.status.success(),
            "generate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        check_config(path);
    }
    let text = std::fs::read_to_string(&yaml).unwrap();
    assert!(text.contains("# Name clients log in with."), "{text}");
    assert!(
        !std::fs::read_to_string(&toml).unwrap().contains('#'),
        "--no-comments"
    );
    // Secrets as PostgreSQL stores them, never a clear-text password.
    assert_eq!(text.matches("SCRAM-SHA-256$").count(), 3 * 4, "{text}");
    assert!(!text.contains("m_one_pw"), "{text}");

    // Serve it: the listen address and port are the test's.
    let served = text
        .replace("host: \"0.0.0.0\"", "host: \"127.0.0.1\"")
        .replace("port: 6432", "port: {port}");
    let d = Doorman::start(binary(), &served);
    for db in DATABASES {
        for (name, pw, _) in ROLES {
            assert_eq!(
                psql(&d, name, pw, db).unwrap_or_else(|e| panic!("{name}@{db}: {e}")),
                format!("{name}@{db}")
            );
        }
        let wrong = psql(&d, "m_one", "not it", db).unwrap_err();
        assert!(wrong.contains("password authentication failed"), "{wrong}");
    }
    assert_eq!(
        psql(&d, "postgres", "super_pw", "postgres").unwrap(),
        "postgres@postgres"
    );
}

#[test]
fn a_role_that_cannot_read_secrets_gets_placeholders() {
    let pg = cluster_with_roles();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gen.toml");
    let port = pg.port.to_string();
    let out = generate(
        &[
            "--host",
            "127.0.0.1",
            "-p",
            &port,
            "-u",
            "m_one",
            "-o",
            path.to_str().unwrap(),
            "-s",
        ],
        Some("m_one_pw"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("placeholders"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_config(&path);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with('#') && text.contains("[general]"),
        "{text}"
    );
    assert!(text.contains("pool_mode = \"session\""), "{text}");
    assert!(text.contains("PLACEHOLDER"), "{text}");
    assert!(!text.contains("\"SCRAM-SHA-256$"), "{text}");
    // Random per role: an MD5 login needs only the secret, so a shared one would be a key.
    let secrets: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("password = \"md5"))
        .collect();
    assert_eq!(secrets.len(), 6, "{text}");

    // A wrong password for the look-up role is the server's 28P01, reported.
    let out = generate(
        &["--host", "127.0.0.1", "-p", &port, "-u", "m_one"],
        Some("nope"),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect") && err.contains("28P01"),
        "{err}"
    );
}

#[test]
fn unix_socket_and_trust_need_no_password() {
    let pg = cluster_with_roles();
    let dir = pg.socket_dir().to_str().unwrap().to_string();
    let port = pg.port.to_string();
    let out = generate(&["--host", &dir, "-p", &port, "-f", "yaml"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for db in DATABASES.iter().chain(&["postgres"]) {
        assert!(
            text.contains(&format!("{db:?}:")) || text.contains(&format!("{db}:")),
            "{db}: {text}"
        );
    }
    assert!(text.contains(&format!("server_host: {dir:?}")), "{text}");
    assert!(!text.contains("template1"), "{text}");
}
