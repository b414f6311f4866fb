//! `startup_parameters`: general's and the pool's (the pool's win) reach PostgreSQL in the
//! backend StartupMessage, so they are the session defaults a client sees and RESET returns
//! to; SHOW STARTUP_PARAMETERS lists them with their source; a parameter PostgreSQL refuses
//! fails the login with PostgreSQL's own error; reserved keys are refused at load.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::err_expect
)]

mod common;
use common::*;

#[tokio::test]
async fn backends_start_with_the_configured_parameters() {
    let pg = cluster(PgAuth::Scram);
    let general =
        "  startup_parameters:\n    work_mem: 12MB\n    statement_timeout: 4000\n    jit: false\n";
    let pool = "    startup_parameters:\n      work_mem: 7MB\n";
    let base = yaml(
        &pg,
        &PoolSpec {
            pool_size: 1,
            general_extra: general,
            pool_extra: pool,
            ..Default::default()
        },
    );
    // A second pool whose parameter PostgreSQL does not know.
    let bad = format!(
        "  badpool:\n    server_host: 127.0.0.1\n    server_port: {}\n    server_database: appdb\n    startup_parameters:\n      no_such_setting: 1\n    users:\n      - username: app\n        password: app_pw\n        pool_size: 1\n",
        pg.port
    );
    let d = Doorman::start(binary(), &format!("{base}{bad}"));
    let c = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(one(&c, "SHOW work_mem").await, "7MB");
    assert_eq!(one(&c, "SHOW statement_timeout").await, "4s");
    assert_eq!(one(&c, "SHOW jit").await, "off");
    // A session-level SET is undone for the next client: back to the startup value.
    c.batch_execute("SET work_mem = '1MB'").await.unwrap();
    assert_eq!(one(&c, "SHOW work_mem").await, "1MB");
    drop(c);
    let c2 = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(one(&c2, "SHOW work_mem").await, "7MB");
    assert_eq!(one(&c2, "RESET ALL; SHOW work_mem").await, "7MB");

    let (ok, out, err) = psql(
        &d,
        "admin",
        "admin",
        "pgdoorman",
        &["-c", "SHOW STARTUP_PARAMETERS"],
    );
    assert!(ok, "{err}");
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("app|appdb|"))
        .collect();
    assert_eq!(
        rows,
        [
            "app|appdb|jit|off|general|applied",
            "app|appdb|statement_timeout|4000|general|applied",
            "app|appdb|work_mem|7MB|pool|applied",
        ],
        "{out}"
    );

    let e = connect(&d.conn_str("app", "app_pw", "badpool"))
        .await
        .err()
        .expect("a parameter PostgreSQL refuses must fail the login");
    let db = e.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code().code(), "42704", "{db:?}");
    assert!(db.message().contains("no_such_setting"), "{db:?}");
}

#[test]
fn reserved_keys_are_refused_at_load() {
    let (ok, err) = check_config(
        "c.yaml",
        "general:\n  port: 6432\n  startup_parameters:\n    user: x\npools:\n  d:\n    startup_parameters:\n      _pq_.x: y\n    users:\n      - username: u\n        password: p\n",
    );
    assert!(!ok);
    assert!(
        err.contains("general.startup_parameters.user: set by pg_doorman itself"),
        "{err}"
    );
    assert!(err.contains("pools.d.startup_parameters._pq_.x"), "{err}");
}
