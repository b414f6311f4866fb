//! pg_hba rules for clients: the cleartext `password` method, scram-sha-256 against an MD5
//! secret, reject, no matching entry, trust for the admin console, inline rules, and a rules
//! file reloaded on SIGHUP (a broken one keeps the old rules).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::err_expect
)]

mod common;
use common::*;
use doorman_wire::auth::md5;

/// (SQLSTATE, message) of a failed login.
async fn refused(d: &Doorman, user: &str, password: &str, db: &str) -> (String, String) {
    let e = connect(&d.conn_str(user, password, db))
        .await
        .err()
        .unwrap_or_else(|| panic!("{user} must be refused"));
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    (sqlstate(&e), msg)
}

fn four_users(pg: &TempCluster, general_extra: &str) -> Doorman {
    let spec = PoolSpec {
        general_extra,
        ..Default::default()
    };
    let users: String = [
        ("bob", md5::secret("bob", "bob_pw")),
        ("carol", "carol_pw".to_string()),
        ("dave", "dave_pw".to_string()),
    ]
    .iter()
    .map(|(u, p)| {
        format!("      - username: {u}\n        password: \"{p}\"\n        pool_size: 2\n")
    })
    .collect();
    Doorman::start(binary(), &format!("{}{users}", yaml(pg, &spec)))
}

#[tokio::test]
async fn rules_pick_the_method_or_refuse() {
    let pg = cluster(PgAuth::Scram);
    let rules = "# test rules\n\
                 host appdb app 127.0.0.1/32 password\n\
                 host appdb bob 127.0.0.1/32 scram-sha-256\n\
                 host appdb carol 127.0.0.1/32 reject\n\
                 host pgdoorman boss 127.0.0.1/32 trust\n";
    let extra = format!(
        "  admin_username: boss\n  admin_password: boss_pw\n  pg_hba:\n    content: |\n{}",
        rules
            .lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>()
    );
    let d = four_users(&pg, &extra);
    // `password`: the client sends its password in clear text; the login to PostgreSQL (SCRAM)
    // still works.
    let c = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(one(&c, "SELECT current_user").await, "app");
    assert_eq!(refused(&d, "app", "nope", "appdb").await.0, "28P01");
    // scram-sha-256 cannot use an MD5 secret: even the right password fails.
    let (code, msg) = refused(&d, "bob", "bob_pw", "appdb").await;
    assert_eq!(code, "28P01");
    assert_eq!(msg, "password authentication failed for user \"bob\"");
    let (code, msg) = refused(&d, "carol", "carol_pw", "appdb").await;
    assert_eq!(code, "28000");
    assert!(
        msg.starts_with("pg_hba.conf rejects connection for host \"127.0.0.1\", user \"carol\""),
        "{msg}"
    );
    let (code, msg) = refused(&d, "dave", "dave_pw", "appdb").await;
    assert_eq!(code, "28000");
    assert_eq!(
        msg,
        "no pg_hba.conf entry for host \"127.0.0.1\", user \"dave\", database \"appdb\", no encryption"
    );
    // trust for the admin console: any password.
    let admin = connect(&d.conn_str("boss", "not-the-password", "pgdoorman"))
        .await
        .unwrap();
    let rows = admin.simple_query("SHOW CONNECTIONS").await.unwrap();
    let errors = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get("errors").map(str::to_string),
            _ => None,
        })
        .unwrap();
    assert!(errors.parse::<u64>().unwrap() >= 4, "errors {errors}");
}

#[tokio::test]
async fn a_rules_file_is_reloaded_on_sighup() {
    let pg = cluster(PgAuth::Scram);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pg_hba.conf");
    std::fs::write(&file, "host all all 127.0.0.1/32 scram-sha-256\n").unwrap();
    let extra = format!("  pg_hba:\n    path: {}\n", file.display());
    let d = four_users(&pg, &extra);
    let c = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(one(&c, "SELECT 1").await, "1");
    std::fs::write(
        &file,
        "host all app 127.0.0.1/32 reject\nhost all all all md5\n",
    )
    .unwrap();
    d.signal_and_expect_log("HUP", "pg_hba rules loaded");
    assert_eq!(refused(&d, "app", "app_pw", "appdb").await.0, "28000");
    // The session that logged in before keeps working.
    assert_eq!(one(&c, "SELECT 2").await, "2");
    // A broken file keeps the rules in force.
    std::fs::write(&file, "host all all 10.0.0.0/99 md5\n").unwrap();
    d.signal_and_expect_log("HUP", "reload failed, keeping the running configuration");
    assert!(d.log_text().contains("line 1: invalid CIDR address"));
    assert_eq!(refused(&d, "app", "app_pw", "appdb").await.0, "28000");
}

#[test]
fn pg_hba_and_hba_together_are_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "general:\n  hba: [\"10.0.0.0/8\"]\n  pg_hba:\n    content: \"host all all all trust\"\npools:\n  db:\n    users:\n      - username: u\n        password: p\n        pool_size: 1\n",
    )
    .unwrap();
    let out = std::process::Command::new(binary())
        .args(["-t", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("general.hba and general.pg_hba cannot be used together"),
        "{text}"
    );
}
