//! The admin console through psql and tokio-postgres: every SHOW with its columns, figures under
//! load, SET log_level, PAUSE/RESUME/RECONNECT/RELOAD/SHUTDOWN, and the errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::err_expect
)]

mod common;
use common::*;
use std::time::Duration;
use tokio_postgres::SimpleQueryMessage;

const ADMIN: &str = "  admin_username: boss\n  admin_password: boss_pw\n";

fn admin_conn(d: &Doorman) -> String {
    d.conn_str("boss", "boss_pw", "pgdoorman")
}

/// Column names and rows (as text) of one console statement.
async fn show(c: &tokio_postgres::Client, sql: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut cols = Vec::new();
    let mut rows = Vec::new();
    for m in c.simple_query(sql).await.unwrap() {
        match m {
            SimpleQueryMessage::RowDescription(d) => {
                cols = d.iter().map(|c| c.name().to_string()).collect();
            }
            SimpleQueryMessage::Row(r) => {
                if cols.is_empty() {
                    cols = r.columns().iter().map(|c| c.name().to_string()).collect();
                }
                rows.push(
                    (0..r.len())
                        .map(|i| r.get(i).unwrap_or("").to_string())
                        .collect(),
                );
            }
            _ => {}
        }
    }
    (cols, rows)
}

/// Runs `sql` until column `name` reads `want` (statistics land just after a reply goes out),
/// at most one second; returns the last result.
async fn show_until(
    c: &tokio_postgres::Client,
    sql: &str,
    name: &str,
    want: &[&str],
) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = show(c, sql).await;
    for _ in 0..50 {
        if col(&r.0, &r.1, name) == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        r = show(c, sql).await;
    }
    r
}

fn col(cols: &[String], rows: &[Vec<String>], name: &str) -> Vec<String> {
    let i = cols.iter().position(|c| c == name).unwrap();
    rows.iter().map(|r| r[i].clone()).collect()
}

#[tokio::test]
async fn every_show_has_compat_columns() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            general_extra: ADMIN,
            ..Default::default()
        },
    );
    let app = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(one(&app, "SELECT 1").await, "1");
    let c = connect(&admin_conn(&d)).await.unwrap();
    let expect: &[(&str, &str)] = &[
        (
            "POOLS",
            "database,user,pool_mode,cl_idle,cl_active,cl_waiting,cl_cancel_req,sv_active,sv_idle,sv_used,sv_login,pool_size,maxwait,maxwait_us,avg_xact_time,paused,fallback_active,oldest_active_age_ms,cl_pinned",
        ),
        (
            "POOLS_EXTENDED",
            "database,user,cl_active,cl_waiting,sv_active,sv_idle,sv_used,sv_login,pool_size,maxwait,maxwait_us,pool_mode,bytes_recieved,bytes_sent,query_0.99,transaction_0.99,query_0.95,transaction_0.95,query_0.5,transaction_0.5",
        ),
        (
            "STATS",
            "database,user,total_xact_count,total_query_count,total_received,total_sent,total_xact_time,total_query_time,total_wait_time,total_errors,avg_xact_count,avg_query_count,avg_recv,avg_sent,avg_errors,avg_xact_time,avg_query_time,avg_wait_time",
        ),
        (
            "DATABASES",
            "name,host,port,database,force_user,pool_size,min_pool_size,reserve_pool,pool_mode,max_connections,current_connections",
        ),
        (
            "CLIENTS",
            "client_id,database,user,application_name,addr,tls,state,wait,transaction_count,query_count,error_count,age_seconds",
        ),
        (
            "SERVERS",
            "server_id,server_process_id,database_name,user,application_name,tls,state,wait,transaction_count,query_count,bytes_sent,bytes_received,age_seconds,prepare_cache_hit,prepare_cache_miss,prepare_cache_size",
        ),
        ("CONNECTIONS", "total,errors,tls,plain,cancel"),
        ("LISTS", "list,items"),
        ("USERS", "name,pool_mode"),
        ("VERSION", "version"),
        ("LOG_LEVEL", "log_level"),
        ("HELP", "item"),
        ("CONFIG", "key,value,default,changeable"),
        (
            "PREPARED_STATEMENTS",
            "pool,hash,name,query,count_used,kind",
        ),
        (
            "POOLS_MEMORY",
            "database,user,pool_prepared_count,pool_prepared_bytes,client_prepared_count,client_prepared_bytes,client_named_count,client_anonymous_count,client_anonymous_evictions_alive,async_clients",
        ),
        (
            "POOL_SCALING",
            "user,database,inflight,creates,gate_waits,gate_budget_ex,antic_notify,antic_timeout,create_fallback,replenish_def",
        ),
        (
            "POOL_COORDINATOR",
            "database,max_db_conn,current,reserve_size,reserve_used,evictions,reserve_acq,exhaustions",
        ),
    ];
    for (what, cols) in expect {
        // Keywords are case-insensitive and the trailing ';' optional.
        let sql = format!("show {};", what.to_lowercase());
        let (got, rows) = show(&c, &sql).await;
        assert_eq!(got.join(","), *cols, "SHOW {what}");
        // No statement was prepared and no pool has max_db_connections.
        if !matches!(*what, "PREPARED_STATEMENTS" | "POOL_COORDINATOR") {
            assert!(!rows.is_empty(), "SHOW {what} has rows");
        }
    }
    let (cols, rows) = show_until(&c, "SHOW CLIENTS", "query_count", &["1"]).await;
    assert_eq!(col(&cols, &rows, "user"), vec!["app"]);
    assert_eq!(col(&cols, &rows, "query_count"), vec!["1"]);
    assert!(col(&cols, &rows, "addr")[0].starts_with("127.0.0.1:"));
    // application_name as the client set it at login.
    let named = connect(&format!("{} application_name=reporting", app_conn(&d)))
        .await
        .unwrap();
    assert_eq!(one(&named, "SELECT 1").await, "1");
    let (cols, rows) = show(&c, "SHOW CLIENTS").await;
    let names = col(&cols, &rows, "application_name");
    assert!(names.contains(&"reporting".to_string()), "{names:?}");
    drop(named);
    let (cols, rows) = show(&c, "SHOW SERVERS").await;
    assert_eq!(col(&cols, &rows, "state"), vec!["idle"]);
    let (cols, rows) = show(&c, "SHOW VERSION").await;
    assert!(col(&cols, &rows, "version")[0].starts_with("pg_doorman "));
    // psql works too (its probes are answered), with the same columns.
    let (ok, out, err) = psql(&d, "boss", "boss_pw", "pgdoorman", &["-c", "SHOW USERS"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "app|transaction");
    // The pgbouncer alias.
    let b = connect(&d.conn_str("boss", "boss_pw", "pgbouncer"))
        .await
        .unwrap();
    assert_eq!(show(&b, "SHOW LISTS").await.1.len(), 8);
}

#[tokio::test]
async fn pools_and_stats_follow_load() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            general_extra: ADMIN,
            pool_size: 2,
            ..Default::default()
        },
    );
    let c = connect(&admin_conn(&d)).await.unwrap();
    // Six clients each hold a backend for a while on a pool of two: some must wait.
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let conn = app_conn(&d);
        tasks.push(tokio::spawn(async move {
            let a = connect(&conn).await.unwrap();
            a.simple_query("SELECT pg_sleep(1.5)").await.unwrap();
            a.simple_query("SELECT 1/0").await.unwrap_err();
        }));
    }
    // Wait until all six have logged in and asked.
    let mut seen = (String::new(), String::new());
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (cols, rows) = show(&c, "SHOW POOLS").await;
        seen = (
            col(&cols, &rows, "cl_active")[0].clone(),
            col(&cols, &rows, "cl_waiting")[0].clone(),
        );
        if seen == ("2".into(), "4".into()) {
            break;
        }
    }
    assert_eq!(seen, ("2".into(), "4".into()), "cl_active, cl_waiting");
    let (cols, rows) = show(&c, "SHOW POOLS").await;
    assert_eq!(col(&cols, &rows, "sv_active"), vec!["2"]);
    assert_eq!(col(&cols, &rows, "cl_waiting"), vec!["4"]);
    let (cols, rows) = show(&c, "SHOW CLIENTS").await;
    let states = col(&cols, &rows, "state");
    assert_eq!(
        states.iter().filter(|s| *s == "waiting").count(),
        4,
        "{states:?}"
    );
    for t in tasks {
        t.await.unwrap();
    }
    let (cols, rows) = show_until(&c, "SHOW STATS", "total_xact_count", &["12"]).await;
    assert_eq!(col(&cols, &rows, "total_xact_count"), vec!["12"]);
    assert_eq!(col(&cols, &rows, "total_errors"), vec!["6"]);
    let wait: u64 = col(&cols, &rows, "total_wait_time")[0].parse().unwrap();
    assert!(wait > 1_000_000, "clients waited for backends: {wait} us");
    let sent: u64 = col(&cols, &rows, "total_sent")[0].parse().unwrap();
    assert!(sent > 0);
    // Six transactions held a backend about 1.5 s, six failed at once (µs).
    let (cols, rows) = show(&c, "SHOW POOLS_EXTENDED").await;
    let p95: u64 = col(&cols, &rows, "transaction_0.95")[0].parse().unwrap();
    assert!(
        (1_000_000..=3_000_000).contains(&p95),
        "transaction_0.95 = {p95}"
    );
    let p50: u64 = col(&cols, &rows, "transaction_0.5")[0].parse().unwrap();
    assert!(p50 < 100_000, "transaction_0.5 = {p50}");
    let q99: u64 = col(&cols, &rows, "query_0.99")[0].parse().unwrap();
    assert!(q99 >= 1_000_000, "query_0.99 = {q99}");
}

#[tokio::test]
async fn pools_memory_and_scaling_follow_use() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            general_extra: ADMIN,
            pool_size: 10,
            ..Default::default()
        },
    );
    let c = connect(&admin_conn(&d)).await.unwrap();
    // Two named statements, pipelined with Flush (an "async" client).
    let mut w = raw::Wire::login(&d);
    w.send(&[
        raw::parse("s1", "SELECT 1"),
        raw::parse("s2", "SELECT 22"),
        raw::flush(),
    ]);
    assert_eq!(raw::tags(&w.take(2)), "11");
    w.send(&[raw::sync()]);
    assert_eq!(raw::tags(&w.until_ready()), "Z");
    let (cols, rows) = show_until(&c, "SHOW POOLS_MEMORY", "client_named_count", &["2"]).await;
    for (name, want) in [
        ("pool_prepared_count", "2"),
        ("client_named_count", "2"),
        ("async_clients", "1"),
        ("client_anonymous_evictions_alive", "0"),
    ] {
        assert_eq!(col(&cols, &rows, name), vec![want], "{name}");
    }
    let bytes: i64 = col(&cols, &rows, "client_prepared_bytes")[0]
        .parse()
        .unwrap();
    assert!(bytes >= (2 + 8) + (2 + 9), "client_prepared_bytes {bytes}");
    let pool_bytes: i64 = col(&cols, &rows, "pool_prepared_bytes")[0].parse().unwrap();
    assert!(pool_bytes >= 8 + 9, "pool_prepared_bytes {pool_bytes}");
    // The client's share leaves with it; the pool cache stays.
    drop(w);
    let (cols, rows) = show_until(&c, "SHOW POOL_MEMORY", "client_named_count", &["0"]).await;
    assert_eq!(col(&cols, &rows, "client_named_count"), vec!["0"]);
    assert_eq!(col(&cols, &rows, "client_prepared_bytes"), vec!["0"]);
    assert_eq!(col(&cols, &rows, "async_clients"), vec!["0"]);
    assert_eq!(col(&cols, &rows, "pool_prepared_count"), vec!["2"]);

    // Six clients at once on a pool of 10 with scaling_warm_pool_ratio 20 %: two connect at
    // once, the others first wait for a return (anticipation, ~100 ms with no history), see
    // none (each holds its backend 300 ms), and then connect.
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let conn = app_conn(&d);
        tasks.push(tokio::spawn(async move {
            let a = connect(&conn).await.unwrap();
            a.simple_query("SELECT pg_sleep(0.3)").await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (cols, rows) = show(&c, "SHOW POOL_SCALING").await;
    let n = |name: &str| -> u64 { col(&cols, &rows, name)[0].parse().unwrap() };
    // The raw client above opened the first backend; the burst needed more (up to five: a
    // client queued for a connect may instead get one that came back). Every connect made a
    // backend, and none closed.
    let creates = n("creates");
    assert!((3..=6).contains(&creates), "{rows:?}");
    let live: u64 = pg
        .psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(live, creates, "{rows:?}");
    assert_eq!(n("inflight"), 0);
    assert!(n("antic_timeout") >= 1, "{rows:?}");
    assert!(n("create_fallback") >= 1, "{rows:?}");
    assert_eq!(n("gate_budget_ex"), 0);
}

#[tokio::test]
async fn set_log_level_changes_what_is_logged() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            general_extra: ADMIN,
            ..Default::default()
        },
    );
    let c = connect(&admin_conn(&d)).await.unwrap();
    show(&c, "SET log_level = 'warn'").await;
    assert_eq!(show(&c, "SHOW LOG_LEVEL").await.1[0][0], "warn");
    let a = connect(&app_conn(&d)).await.unwrap();
    one(&a, "SELECT 1").await;
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let quiet = d.log_text().matches("client connected").count();
    show(&c, "SET log_level TO 'debug'").await;
    let a = connect(&app_conn(&d)).await.unwrap();
    one(&a, "SELECT 1").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        d.log_text().matches("client connected").count(),
        quiet + 1,
        "info lines are back at debug"
    );
    let e = c
        .simple_query("SET log_level = 'not==valid'")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42601");
    let e = c.simple_query("SET work_mem = '1MB'").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42601");
}

#[tokio::test]
async fn errors_and_access() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            general_extra: ADMIN,
            ..Default::default()
        },
    );
    let c = connect(&admin_conn(&d)).await.unwrap();
    let e = c.simple_query("BOGUS").await.unwrap_err();
    assert_eq!(sqlstate(&e), "58000");
    let e = c.simple_query("SHOW NOTHING").await.unwrap_err();
    assert_eq!(sqlstate(&e), "58000");
    let e = c.simple_query("PAUSE nodb").await.unwrap_err();
    assert_eq!(sqlstate(&e), "3D000");
    // The console stays usable after errors.
    assert_eq!(show(&c, "SHOW USERS").await.1.len(), 1);
    let e = connect(&d.conn_str("boss", "wrong", "pgdoorman"))
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&e), "28P01");
    let e = connect(&d.conn_str("app", "app_pw", "pgdoorman"))
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&e), "28000");
    // Extended protocol (a prepared query) is refused.
    let e = c.query("SHOW USERS", &[]).await.unwrap_err();
    assert!(sqlstate(&e) == "08P01" || e.is_closed(), "{e:?}");
}

#[tokio::test]
async fn pause_resume_reconnect_reload_shutdown() {
    let pg = cluster(PgAuth::Scram);
    let mut d = doorman(
        &pg,
        &PoolSpec {
            general_extra: ADMIN,
            ..Default::default()
        },
    );
    let c = connect(&admin_conn(&d)).await.unwrap();
    let a = connect(&app_conn(&d)).await.unwrap();
    let pid = one(&a, "SELECT pg_backend_pid()").await;
    show(&c, "PAUSE appdb").await;
    let (cols, rows) = show(&c, "SHOW POOLS").await;
    assert_eq!(col(&cols, &rows, "paused"), vec!["1"]);
    let held = tokio::spawn(async move {
        let v = one(&a, "SELECT 'after resume'").await;
        (a, v)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "a paused pool holds new requests");
    show(&c, "RESUME").await;
    let (a, v) = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v, "after resume");
    // PAUSE returns only once transactions in progress have finished.
    a.batch_execute("BEGIN").await.unwrap();
    one(&a, "SELECT 1").await;
    let admin = connect(&admin_conn(&d)).await.unwrap();
    let pause = tokio::spawn(async move {
        admin.simple_query("PAUSE appdb").await.unwrap();
        admin
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pause.is_finished(), "PAUSE waits for the open transaction");
    a.batch_execute("COMMIT").await.unwrap();
    let admin = tokio::time::timeout(Duration::from_secs(5), pause)
        .await
        .unwrap()
        .unwrap();
    admin.simple_query("RESUME appdb").await.unwrap();
    // RECONNECT: the idle backend is closed, the next request gets a new one.
    show(&c, "RECONNECT appdb").await;
    assert_ne!(one(&a, "SELECT pg_backend_pid()").await, pid);
    show(&c, "RELOAD").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(d.log_text().contains("SIGHUP: reloading pools"));
    let (cols, rows) = show(&c, "SHUTDOWN").await;
    assert_eq!(col(&cols, &rows, "success"), vec!["t"]);
    let status = d.wait_exit(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
