//! Client and backend authentication through pg_doorman with real PostgreSQL and real clients.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::err_expect
)]

mod common;
use common::*;
use doorman_wire::auth::{md5, scram};

#[tokio::test]
async fn scram_client_with_plaintext_config_and_scram_backend() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::default());
    let c = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(one(&c, "SELECT current_user").await, "app");
    let (ok, out, err) = psql(&d, "app", "app_pw", "appdb", &["-c", "SELECT 40 + 2"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "42");
}

#[tokio::test]
async fn md5_client_secret_and_md5_backend_passthrough() {
    let pg = cluster(PgAuth::Md5);
    let secret = md5::secret("app", "app_pw");
    let d = doorman(
        &pg,
        &PoolSpec {
            password: &secret,
            ..Default::default()
        },
    );
    let c = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(one(&c, "SELECT 'md5 ok'").await, "md5 ok");
    let e = connect(&d.conn_str("app", "wrong", "appdb"))
        .await
        .err()
        .expect("wrong password must fail");
    assert_eq!(sqlstate(&e), "28P01");
}

#[tokio::test]
async fn scram_verifier_in_config_with_server_password_and_cleartext_backend() {
    let pg = cluster(PgAuth::Password);
    let v = scram::Verifier::from_password("client_pw", b"0123456789abcdef", 4096).to_text();
    let d = doorman(
        &pg,
        &PoolSpec {
            password: &v,
            user_extra: "        server_username: app\n        server_password: app_pw\n",
            ..Default::default()
        },
    );
    let c = connect(&d.conn_str("app", "client_pw", "appdb"))
        .await
        .unwrap();
    assert_eq!(one(&c, "SELECT session_user").await, "app");
    let e = connect(&d.conn_str("app", "app_pw", "appdb"))
        .await
        .err()
        .expect("backend password is not the client password");
    assert_eq!(sqlstate(&e), "28P01");
}

#[tokio::test]
async fn wrong_password_gets_postgres_message() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::default());
    let e = connect(&d.conn_str("app", "nope", "appdb"))
        .await
        .err()
        .expect("must fail");
    assert_eq!(sqlstate(&e), "28P01");
    let db = e.as_db_error().unwrap();
    assert_eq!(
        db.message(),
        "password authentication failed for user \"app\""
    );
    assert_eq!(db.severity(), "FATAL");
    let (ok, _, err) = psql(&d, "app", "nope", "appdb", &["-c", "SELECT 1"]);
    assert!(!ok);
    assert!(
        err.contains("password authentication failed for user \"app\""),
        "{err}"
    );
    assert!(
        d.log_text()
            .contains("authentication failed for user \"app\"")
    );
}

#[tokio::test]
async fn unknown_database_and_user() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::default());
    let e = connect(&d.conn_str("app", "app_pw", "nodb"))
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&e), "3D000");
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("\"nodb\" does not exist")
    );
    let e = connect(&d.conn_str("nobody", "x", "appdb"))
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&e), "28000");
}

#[tokio::test]
async fn backend_refusing_our_login_is_reported() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            user_extra: "        server_password: not_the_password\n",
            ..Default::default()
        },
    );
    let e = connect(&app_conn(&d))
        .await
        .err()
        .expect("backend login must fail");
    assert_eq!(sqlstate(&e), "28P01");
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("server login failed"),
        "{e:?}"
    );
}

#[tokio::test]
async fn trust_backend_with_md5_hash_only() {
    let pg = cluster(PgAuth::Trust);
    let secret = md5::secret("app", "app_pw");
    let d = doorman(
        &pg,
        &PoolSpec {
            password: &secret,
            ..Default::default()
        },
    );
    let c = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(one(&c, "SELECT 7").await, "7");
}

#[tokio::test]
async fn scram_passthrough_with_verifier_copied_from_pg_authid() {
    let pg = cluster(PgAuth::Scram);
    let verifier = pg
        .psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
        .trim()
        .to_string();
    assert!(verifier.starts_with("SCRAM-SHA-256$"), "{verifier}");
    let d = doorman(
        &pg,
        &PoolSpec {
            password: &verifier,
            pool_size: 2,
            ..Default::default()
        },
    );
    // No plaintext anywhere in the config: the backend login reuses the ClientKey of this login.
    let c = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(one(&c, "SELECT current_user").await, "app");
    let e = connect(&d.conn_str("app", "wrong", "appdb"))
        .await
        .err()
        .expect("wrong password");
    assert_eq!(sqlstate(&e), "28P01");
    // A second backend connection is made with the remembered key too.
    c.batch_execute("BEGIN").await.unwrap();
    let c2 = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(one(&c2, "SELECT 2").await, "2");
    c.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test]
async fn scram_passthrough_with_a_different_backend_verifier_is_refused_clearly() {
    let pg = cluster(PgAuth::Scram);
    // Same password, but another salt than PostgreSQL stores: the ClientKey cannot answer.
    let v = scram::Verifier::from_password("app_pw", b"not the pg salt!", 4096).to_text();
    let d = doorman(
        &pg,
        &PoolSpec {
            password: &v,
            ..Default::default()
        },
    );
    let e = connect(&app_conn(&d))
        .await
        .err()
        .expect("backend login must fail");
    assert_eq!(sqlstate(&e), "08001", "{e:?}");
    assert!(d.log_text().contains("SCRAM"), "{}", d.log_text());
}
