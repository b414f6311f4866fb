//! JWT logins (`password: "jwt-pkey-fpath:<public key>"`): a token signed with the key's
//! private half, naming the user in `preferred_username` and not expired, logs in (RS256 and
//! ES256); an expired one, one signed by another key, one for another user, one with
//! `alg: none` and a plain password get 28P01. The backend login uses server_password.
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

fn token(key: &KeyPair, alg: &str, claims: &str) -> String {
    sign(key, alg, None, claims)
}

fn claims(user: &str, exp: u64) -> String {
    format!(
        "{{\"preferred_username\":\"{user}\",\"exp\":{exp},\"nbf\":{}}}",
        now() - 10
    )
}

#[tokio::test]
async fn signed_tokens_log_in_and_others_are_refused() {
    let pg = cluster(PgAuth::Scram);
    let dir = tempfile::tempdir().unwrap();
    let rsa = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let ec = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let other = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let rsa_pub = dir.path().join("rsa.pem");
    let ec_pub = dir.path().join("ec.pem");
    std::fs::write(&rsa_pub, rsa.public_key_pem()).unwrap();
    std::fs::write(&ec_pub, ec.public_key_pem()).unwrap();
    let users = format!(
        "      - username: svc\n        password: \"jwt-pkey-fpath:{}\"\n        server_username: app\n        server_password: app_pw\n        pool_size: 2\n      - username: edge\n        password: \"jwt-pkey-fpath:{}\"\n        server_username: app\n        server_password: app_pw\n        pool_size: 2\n",
        rsa_pub.display(),
        ec_pub.display()
    );
    let d = Doorman::start(
        binary(),
        &format!("{}{users}", yaml(&pg, &PoolSpec::default())),
    );
    let later = now() + 300;

    let t = token(&rsa, "RS256", &claims("svc", later));
    let c = connect(&d.conn_str("svc", &t, "appdb")).await.unwrap();
    assert_eq!(one(&c, "SELECT current_user").await, "app");
    let t = token(&ec, "ES256", &claims("edge", later));
    let c = connect(&d.conn_str("edge", &t, "appdb")).await.unwrap();
    assert_eq!(one(&c, "SELECT 1").await, "1");

    let none = unsigned(&claims("svc", later));
    for (what, user, t) in [
        (
            "expired",
            "svc",
            token(&rsa, "RS256", &claims("svc", now() - 5)),
        ),
        (
            "other key",
            "svc",
            token(&other, "RS256", &claims("svc", later)),
        ),
        (
            "other user",
            "svc",
            token(&rsa, "RS256", &claims("edge", later)),
        ),
        (
            "RS256 for an EC key",
            "edge",
            token(&rsa, "RS256", &claims("edge", later)),
        ),
        ("alg none", "svc", none),
        ("a password", "svc", "app_pw".to_string()),
    ] {
        let e = connect(&d.conn_str(user, &t, "appdb"))
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: must be refused"));
        assert_eq!(sqlstate(&e), "28P01", "{what}: {e}");
    }
    let log = d.log_text();
    assert!(log.contains("expired or without exp"), "{log}");
    assert!(log.contains("bad signature"), "{log}");
    assert!(log.contains("is not the login name"), "{log}");
}

#[test]
fn a_missing_key_file_is_refused_at_load() {
    let (ok, err) = check_config(
        "c.yaml",
        "general:\n  port: 6432\npools:\n  d:\n    users:\n      - username: u\n        password: \"jwt-pkey-fpath:/nonexistent/key.pem\"\n",
    );
    assert!(!ok);
    assert!(
        err.contains("pools.d.users[0].password: cannot read /nonexistent/key.pem"),
        "{err}"
    );
}
