//! Talos logins (top-level `talos` section): user `talos` with a signed token as password is
//! served by the pool user named by the token's clientId, then `srv-<clientId>`, then its
//! highest role for the database; application_name becomes the clientId. Expired tokens,
//! other signatures, unknown kids, tokens for another database, unknown roles and `alg: none`
//! get 28P01; a role the pool has no user for, or that pg_hba rejects, gets 28000. Reload
//! picks up a removed section.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::err_expect
)]

mod common;
use common::jws::{now, sign, unsigned};
use common::*;
use rcgen::KeyPair;

fn claims(client: &str, resource: &str, roles: &[&str], exp: u64) -> String {
    let roles: Vec<String> = roles.iter().map(|r| format!("\"{r}\"")).collect();
    format!(
        "{{\"clientId\":\"{client}\",\"exp\":{exp},\"nbf\":{},\"resource_access\":{{\"{resource}\":{{\"roles\":[{}]}},\"account\":{{\"roles\":[\"view\"]}}}}}}",
        now() - 10,
        roles.join(",")
    )
}

fn user(name: &str, backend: &str) -> String {
    format!(
        "      - username: {name}\n        password: \"{name}_pw\"\n        server_username: {backend}\n        server_password: {backend}_pw\n        pool_size: 2\n"
    )
}

async fn refused(d: &Doorman, token: &str) -> (String, String) {
    let e = connect(&d.conn_str("talos", token, "appdb"))
        .await
        .err()
        .expect("must be refused");
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    (sqlstate(&e), msg)
}

#[tokio::test]
async fn tokens_pick_the_pool_user_and_bad_ones_are_refused() {
    let pg = cluster(PgAuth::Scram);
    for u in ["reports", "rw", "ro"] {
        pg.create_user(u, &format!("{u}_pw"));
    }
    let dir = tempfile::tempdir().unwrap();
    let rsa = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let ec = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let other = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let (k1, k2) = (
        dir.path().join("kid-rsa.pem"),
        dir.path().join("kid-ec.pem"),
    );
    std::fs::write(&k1, rsa.public_key_pem()).unwrap();
    std::fs::write(&k2, ec.public_key_pem()).unwrap();
    let rules = "host all read_only 127.0.0.1/32 reject\nhost all all 127.0.0.1/32 md5\n";
    let extra = format!(
        "  pg_hba:\n    content: |\n{}",
        rules
            .lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>()
    );
    let users = [
        user("billing", "app"),
        user("srv-reports", "reports"),
        user("read_write", "rw"),
        user("read_only", "ro"),
    ]
    .concat();
    let spec = PoolSpec {
        general_extra: &extra,
        ..Default::default()
    };
    let base = format!("{}{users}", yaml(&pg, &spec));
    let talos = format!(
        "talos:\n  keys:\n    - {}\n    - {}\n  databases: [appdb]\n",
        k1.display(),
        k2.display()
    );
    let d = Doorman::start(binary(), &format!("{base}{talos}"));
    let later = now() + 300;
    let db = "postgres.stg:appdb";

    // clientId names a pool user: that one (current_user shows its backend role).
    let t = sign(
        &rsa,
        "RS256",
        Some("kid-rsa"),
        &claims("billing", db, &["read_only"], later),
    );
    let c = connect(&d.conn_str("talos", &t, "appdb")).await.unwrap();
    assert_eq!(one(&c, "SELECT current_user").await, "app");
    assert_eq!(one(&c, "SHOW application_name").await, "billing");
    // srv-<clientId>, over an ES256 key.
    let t = sign(
        &ec,
        "ES256",
        Some("kid-ec"),
        &claims("reports", db, &["read_only"], later),
    );
    let c = connect(&d.conn_str("talos", &t, "appdb")).await.unwrap();
    assert_eq!(one(&c, "SELECT current_user").await, "reports");
    // Neither: the highest role granted for this database.
    let roles = ["read_only", "read_write"];
    let t = sign(
        &rsa,
        "RS256",
        Some("kid-rsa"),
        &claims("someone", db, &roles, later),
    );
    let c = connect(&d.conn_str("talos", &t, "appdb")).await.unwrap();
    assert_eq!(one(&c, "SELECT current_user").await, "rw");
    assert_eq!(one(&c, "SHOW application_name").await, "someone");
    // The static user still logs in with its password.
    let c = connect(&d.conn_str("billing", "billing_pw", "appdb"))
        .await
        .unwrap();
    assert_eq!(one(&c, "SELECT 1").await, "1");

    let good = |cl: &str| sign(&rsa, "RS256", Some("kid-rsa"), cl);
    let ok_claims = claims("someone", db, &["read_write"], later);
    for (what, t) in [
        (
            "expired",
            good(&claims("someone", db, &["read_write"], now() - 5)),
        ),
        (
            "other key",
            sign(&other, "RS256", Some("kid-rsa"), &ok_claims),
        ),
        (
            "unknown kid",
            sign(&rsa, "RS256", Some("kid-x"), &ok_claims),
        ),
        ("no kid", sign(&rsa, "RS256", None, &ok_claims)),
        (
            "RS256 on the EC kid",
            sign(&rsa, "RS256", Some("kid-ec"), &ok_claims),
        ),
        (
            "other database",
            good(&claims(
                "someone",
                "postgres.stg:otherdb",
                &["owner"],
                later,
            )),
        ),
        (
            "unknown role",
            good(&claims("someone", db, &["superuser"], later)),
        ),
        ("alg none", unsigned(&ok_claims)),
        ("not a token", "talos_pw".into()),
    ] {
        let (code, msg) = refused(&d, &t).await;
        assert_eq!(code, "28P01", "{what}: {msg}");
        assert_eq!(
            msg, "password authentication failed for user \"talos\"",
            "{what}"
        );
    }
    // A role the pool has no user for.
    let (code, msg) = refused(&d, &good(&claims("someone", db, &["owner"], later))).await;
    assert_eq!(
        (code.as_str(), msg.as_str()),
        ("28000", "role \"owner\" does not exist")
    );
    // A pool user pg_hba rejects, though the token is valid.
    let (code, msg) = refused(&d, &good(&claims("someone", db, &["read_only"], later))).await;
    assert_eq!(code, "28000", "{msg}");
    assert!(msg.contains("user \"read_only\""), "{msg}");
    let log = d.log_text();
    assert!(log.contains("expired or without exp"), "{log}");
    assert!(log.contains("no talos key \"kid-x\""), "{log}");
    assert!(
        log.contains("grants no role for database \"appdb\""),
        "{log}"
    );
    assert!(log.contains("talos login client_id=\"billing\""), "{log}");

    // Without the section, `talos` is a user like any other (here: none).
    d.rewrite_config(&base);
    d.signal_and_expect_log("HUP", "pools reloaded");
    let t = sign(
        &rsa,
        "RS256",
        Some("kid-rsa"),
        &claims("billing", db, &["read_only"], later),
    );
    let (code, msg) = refused(&d, &t).await;
    assert_eq!(
        (code.as_str(), msg.as_str()),
        ("28000", "role \"talos\" does not exist")
    );

    // Back, with audience and issuer required (pg_doorman's own keys).
    let checked = format!("{talos}  audience: pg_doorman\n  issuer: https://idp.example\n");
    d.rewrite_config(&format!("{base}{checked}"));
    d.signal_and_expect_log("HUP", "pools reloaded");
    let with = |extra: &str| {
        let c = claims("billing", db, &["read_only"], later);
        good(&format!("{{{extra},{}", &c[1..]))
    };
    let t = with("\"aud\":[\"other\",\"pg_doorman\"],\"iss\":\"https://idp.example\"");
    let c = connect(&d.conn_str("talos", &t, "appdb")).await.unwrap();
    assert_eq!(one(&c, "SELECT current_user").await, "app");
    for (what, extra) in [
        ("no aud", "\"iss\":\"https://idp.example\""),
        (
            "other aud",
            "\"aud\":\"other\",\"iss\":\"https://idp.example\"",
        ),
        (
            "other iss",
            "\"aud\":\"pg_doorman\",\"iss\":\"https://evil.example\"",
        ),
    ] {
        let (code, msg) = refused(&d, &with(extra)).await;
        assert_eq!(code, "28P01", "{what}: {msg}");
    }
    let log = d.log_text();
    assert!(log.contains("aud does not name \"pg_doorman\""), "{log}");
    assert!(log.contains("iss is not \"https://idp.example\""), "{log}");
}

#[test]
fn the_section_is_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let (a, b) = (dir.path().join("a/k.pem"), dir.path().join("b/k.pem"));
    for p in [&a, &b] {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, key.public_key_pem()).unwrap();
    }
    let pools = "pools:\n  d:\n    users:\n      - username: u\n        password: p\n";
    let (ok, err) = check_config(
        "t.yaml",
        &format!(
            "general:\n  port: 6432\n{pools}talos:\n  keys: [/nonexistent/k.pem]\n  databases: [d]\n"
        ),
    );
    assert!(!ok);
    assert!(
        err.contains("talos.keys: cannot read /nonexistent/k.pem"),
        "{err}"
    );
    let (ok, err) = check_config(
        "t.yaml",
        &format!(
            "general:\n  port: 6432\n{pools}talos:\n  keys: [{}, {}]\n  databases: [d, nodb]\n  databses: x\n",
            a.display(),
            b.display()
        ),
    );
    assert!(!ok);
    assert!(err.contains("another key file is named \"k\" too"), "{err}");
    assert!(
        err.contains("talos.databases: \"nodb\" is not a pool"),
        "{err}"
    );
    assert!(err.contains("talos.databses: unknown setting"), "{err}");
    let (ok, err) = check_config(
        "t.yaml",
        &format!("general:\n  port: 6432\n  talos:\n    keys: []\n{pools}"),
    );
    assert!(!ok);
    assert!(
        err.contains("general.talos: the talos section goes at the top level"),
        "{err}"
    );
    let (ok, err) = check_config(
        "t.yaml",
        &format!(
            "general:\n  port: 6432\n{pools}talos:\n  keys: [{}]\n  databases: [d]\n",
            a.display()
        ),
    );
    assert!(ok, "{err}");
}
