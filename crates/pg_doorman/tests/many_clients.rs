//! 10,000 clients at once against a real PostgreSQL through a pool of 20 (transaction mode):
//! all log in and stay connected together, one more is refused with FATAL 53300 (past
//! `max_connections`), then every client writes rows into the ledger at the same time. No
//! client may see an error, no committed row may be lost, and afterwards SHOW POOLS shows no
//! client and no backend held, and every backend answers.
//!
//! The test raises its own RLIMIT_NOFILE (pg_doorman inherits it). Clients log in with MD5 so
//! the figure is the pooler's, not PBKDF2's. Its own binary: no other test shares the two cores.
//! `--nocapture` prints the login and write times and pg_doorman's resident memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::ledger::{Report, audit, pool_is_clean, pools_row};
use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

const CLIENTS: usize = 10_000;
const POOL: usize = 20;
/// Rows each client writes, one transaction each.
const ROWS: i64 = 3;
/// Logins in flight at once: keeps the burst under the listen backlog (somaxconn).
const CONNECTING: usize = 500;

/// Raises the soft fd limit so 10,000 sockets fit on each side (and in the child pg_doorman).
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let need = (CLIENTS + 500) as u64;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        hard >= need,
        "RLIMIT_NOFILE hard limit is {hard}; this test needs {need} (raise it, e.g. ulimit -Hn)"
    );
    if soft < need {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }
}

/// pg_doorman's resident memory (VmRSS, kB).
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_clients_at_once() {
    raise_fd_limit();
    let pg = cluster(PgAuth::Scram);
    pg.psql_db(
        "appdb",
        "CREATE TABLE ledger (worker int, n int); ALTER TABLE ledger OWNER TO app",
    );
    // The MD5 secret of app/app_pw, as pg_authid would store it under md5.
    let md5 = pg.psql("SELECT 'md5' || md5('app_pw' || 'app')");
    // Room for the clients and the admin console's login (every connection counts, as in
    // PgBouncer).
    let general = format!(
        "  admin_username: boss\n  admin_password: boss_pw\n  max_connections: {}\n  query_wait_timeout: 60s\n",
        CLIENTS + 1
    );
    let spec = PoolSpec {
        password: md5.trim(),
        user_extra: "        server_password: app_pw\n",
        general_extra: &general,
        ..PoolSpec::sized("transaction", POOL)
    };
    let d = doorman(&pg, &spec);
    let conn = app_conn(&d);

    // All log in; each keeps its connection.
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(CONNECTING));
    let logins: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (conn, gate) = (conn.clone(), gate.clone());
            tokio::spawn(async move {
                let _turn = gate.acquire().await.unwrap();
                connect(&conn)
                    .await
                    .unwrap_or_else(|e| panic!("client {id}: login failed: {e}"))
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(CLIENTS);
    for l in logins {
        clients.push(l.await.unwrap());
    }
    let login_time = started.elapsed();

    let admin = connect(&d.conn_str("boss", "boss_pw", "pgdoorman"))
        .await
        .unwrap();
    let row = pools_row(&admin).await;
    assert_eq!(
        row["cl_idle"] + row["cl_active"] + row["cl_waiting"],
        CLIENTS as i64,
        "{row:?}"
    );
    // In transaction mode an idle client holds no backend.
    assert!(
        row["sv_active"] == 0 && row["sv_idle"] as usize <= POOL,
        "{row:?}"
    );
    let rss_connected = rss_kb(d.pid());

    // One more is past max_connections: FATAL 53300, as PostgreSQL says "too many clients".
    let Err(refused) = connect(&conn).await else {
        panic!("a client past max_connections got in");
    };
    assert_eq!(sqlstate(&refused), "53300", "{refused}");

    // Everyone writes at once: 20 backends serve 10,000 waiting clients.
    let started = Instant::now();
    let writers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(id, c)| {
            tokio::spawn(async move {
                let mut r = Report::default();
                for n in 1..=ROWS {
                    let sql = format!("INSERT INTO ledger VALUES ({id}, {n})");
                    match c.simple_query(&sql).await {
                        Ok(_) => {
                            r.committed.insert(n);
                        }
                        Err(e) => {
                            r.in_doubt.insert(n);
                            r.errors.push(sqlstate(&e));
                        }
                    }
                }
                (r, c)
            })
        })
        .collect();
    let mut reports = Vec::with_capacity(CLIENTS);
    let mut clients = Vec::with_capacity(CLIENTS);
    for w in writers {
        let (r, c) = tokio::time::timeout(Duration::from_secs(120), w)
            .await
            .expect("a writer hung for 120 s")
            .unwrap();
        reports.push(r);
        clients.push(c);
    }
    let write_time = started.elapsed();
    let rss_busy = rss_kb(d.pid());
    let (affected, codes) = audit(&pg, &reports, &[]);
    assert_eq!(affected, 0, "{codes:?}");
    let most = backends(&pg, "app");
    assert!(most <= POOL, "{most} backends for a pool of {POOL}");

    // They all leave; the pool forgets them and keeps its backends healthy.
    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row = pools_row(&admin).await;
        if row["cl_idle"] + row["cl_active"] + row["cl_waiting"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "clients still counted 10 s after they left: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "clients={CLIENTS} pool={POOL} login_s={:.2} write_s={:.2} ({} tx, {:.0} tx/s) \
         rss_connected_mb={} rss_busy_mb={} backends={most}",
        login_time.as_secs_f64(),
        write_time.as_secs_f64(),
        CLIENTS as i64 * ROWS,
        (CLIENTS as i64 * ROWS) as f64 / write_time.as_secs_f64(),
        rss_connected / 1024,
        rss_busy / 1024,
    );
    pool_is_clean(&pg, &d, POOL).await;
}
