//! SIGHUP re-reads the config file: a user's new password, a new user, a resized pool, a
//! removed user and the admin password take effect for new logins; sessions already logged in go on; counters carry
//! over; a config that does not validate changes nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::err_expect
)]

mod common;
use common::*;

fn config(pg: &TempCluster, app_pw: &str, app_size: usize, with_bob: bool) -> String {
    let spec = PoolSpec {
        pool_size: app_size,
        password: app_pw,
        general_extra: "  admin_username: boss\n  admin_password: boss_pw\n",
        ..Default::default()
    };
    let bob = if with_bob {
        "      - username: bob\n        password: bob_pw\n        pool_size: 2\n"
    } else {
        ""
    };
    format!("{}{bob}", yaml(pg, &spec))
}

#[tokio::test]
async fn sighup_applies_users_passwords_and_pool_sizes() {
    let pg = cluster(PgAuth::Scram);
    pg.create_user("bob", "bob_pw");
    // The backend password of app stays app_pw: server_password is set below.
    let d = Doorman::start(binary(), &config(&pg, "app_pw", 1, true));
    let old = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(one(&old, "SELECT 'before'").await, "before");
    let bob = connect(&d.conn_str("bob", "bob_pw", "appdb"))
        .await
        .unwrap();
    assert_eq!(one(&bob, "SELECT 1").await, "1");

    // app: new client password (the backend login keeps app_pw), pool 1 -> 3; bob removed.
    let next = config(&pg, "new_pw", 3, false)
        .replace(
            "        pool_size: 3\n",
            "        pool_size: 3\n        server_username: app\n        server_password: app_pw\n",
        )
        .replace(
            "  admin_password: boss_pw\n",
            "  admin_password: boss_pw2\n  query_wait_timeout: 7s\n",
        );
    d.rewrite_config(&next);
    d.signal_and_expect_log(
        "HUP",
        "pools reloaded: 0 kept, 0 added, 1 changed, 1 removed",
    );
    // Logged-in sessions go on, on the pools they had.
    assert_eq!(one(&old, "SELECT 'still here'").await, "still here");
    assert_eq!(one(&bob, "SELECT 2").await, "2");
    // New logins see the new config.
    let e = connect(&app_conn(&d)).await.err().expect("old password");
    assert_eq!(sqlstate(&e), "28P01");
    let e = connect(&d.conn_str("bob", "bob_pw", "appdb"))
        .await
        .err()
        .expect("bob removed");
    assert_eq!(sqlstate(&e), "28000");
    let mut held = Vec::new();
    for _ in 0..3 {
        let c = connect(&d.conn_str("app", "new_pw", "appdb"))
            .await
            .unwrap();
        c.batch_execute("BEGIN").await.unwrap();
        one(&c, "SELECT 1").await;
        held.push(c);
    }
    // Three transactions at once on the resized pool (plus the old session's idle backend,
    // which closes when that session next returns it).
    assert!(backends(&pg, "app") >= 3);
    // The admin password is reloaded too.
    let e = connect(&d.conn_str("boss", "boss_pw", "pgdoorman"))
        .await
        .err()
        .expect("old admin password");
    assert_eq!(sqlstate(&e), "28P01");
    let admin = connect(&d.conn_str("boss", "boss_pw2", "pgdoorman"))
        .await
        .unwrap();
    let rows = admin.simple_query("SHOW STATS").await.unwrap();
    let xacts: u64 = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                r.get("total_xact_count").map(|v| v.parse().unwrap())
            }
            _ => None,
        })
        .unwrap();
    // The first session's transaction before the reload is still counted.
    assert!(xacts >= 1, "total_xact_count {xacts}");
    // SHOW CONFIG: what the reload applied, and what needs a restart.
    let rows = admin.simple_query("SHOW CONFIG").await.unwrap();
    let conf: Vec<(String, String, String)> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some((
                r.get("key")?.to_string(),
                r.get("value")?.to_string(),
                r.get("changeable")?.to_string(),
            )),
            _ => None,
        })
        .collect();
    let find = |k: &str| conf.iter().find(|c| c.0 == k).cloned().unwrap();
    assert_eq!(
        find("query_wait_timeout"),
        ("query_wait_timeout".into(), "7000".into(), "yes".into())
    );
    assert_eq!(find("port").2, "no");
    drop(held);

    // A config that does not validate changes nothing.
    d.rewrite_config("general:\n  port: {port}\n  bogus_key: 1\npools: {}\n");
    d.signal_and_expect_log("HUP", "reload failed, keeping the running configuration");
    let c = connect(&d.conn_str("app", "new_pw", "appdb"))
        .await
        .unwrap();
    assert_eq!(one(&c, "SELECT 'unchanged'").await, "unchanged");

    // The same config again keeps the pool and its connections.
    d.rewrite_config(&next);
    d.signal_and_expect_log(
        "HUP",
        "pools reloaded: 1 kept, 0 added, 0 changed, 0 removed",
    );
}
