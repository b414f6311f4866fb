//! pgbench through pg_doorman: select-only and tpcb-like, simple, extended and prepared
//! protocol, with a pool smaller than the client count (transaction mode: 100 clients on 10
//! backends, so prepared statements really move between backends): no failures.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::err_expect
)]

mod common;
use common::*;
use std::sync::Mutex;

/// pgbench runs saturate the machine: run them one at a time so the numbers mean something.
static SERIAL: Mutex<()> = Mutex::new(());

fn run_matrix(mode: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let pg = cluster(PgAuth::Scram);
    // Session mode holds a backend per client: the pool must fit all 50.
    let (pool_size, clients) = if mode == "session" {
        (50, "50")
    } else {
        (10, "100")
    };
    let d = doorman(
        &pg,
        &PoolSpec {
            mode,
            pool_size,
            general_extra: "  query_wait_timeout: 30s\n",
            ..Default::default()
        },
    );
    pgbench(&d, &["-i", "-s", "1", "-q"]);
    for protocol in ["simple", "extended", "prepared"] {
        for script in ["-S", "-b tpcb-like"] {
            let mut args: Vec<&str> = script.split(' ').collect();
            args.extend(["-c", clients, "-j", "2", "-T", "3", "-M", protocol]);
            let (failed, tps, out) = pgbench(&d, &args);
            assert_eq!(failed, 0, "{mode} {protocol} {script}:\n{out}");
            assert!(tps > 50.0, "{mode} {protocol} {script}: tps {tps}\n{out}");
        }
    }
    if mode == "transaction" {
        let n: i64 = pg
            .psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'")
            .trim()
            .parse()
            .unwrap();
        assert!(n <= 10, "pool_size 10 caps backends, saw {n}");
    }
}

#[test]
fn pgbench_transaction_mode() {
    run_matrix("transaction");
}

#[test]
fn pgbench_session_mode() {
    run_matrix("session");
}

#[test]
fn pgbench_connection_churn_md5() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let pg = cluster(PgAuth::Md5);
    let secret = doorman_wire::auth::md5::secret("app", "app_pw");
    let d = doorman(
        &pg,
        &PoolSpec {
            password: &secret,
            pool_size: 5,
            ..Default::default()
        },
    );
    pgbench(&d, &["-i", "-s", "1", "-q"]);
    let (failed, tps, out) = pgbench(&d, &["-S", "--connect", "-c", "20", "-j", "2", "-T", "3"]);
    assert_eq!(failed, 0, "{out}");
    assert!(tps > 20.0, "{out}");
}
