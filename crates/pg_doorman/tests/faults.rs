//! Faults under load against a real PostgreSQL: a restart, backends terminated in a loop, a
//! backend that stops answering (SIGSTOP), and SIGHUP reloads every second. Load is 12
//! tokio-postgres clients (transaction mode, pool of 4) each inserting numbered rows into a
//! ledger as fast as they can. Every test checks: affected clients get an ErrorResponse with a
//! SQLSTATE the fault explains, unaffected clients see nothing, no committed row is lost, no
//! row appears that nobody sent, the pool serves again within 1 s of PostgreSQL being back,
//! and afterwards SHOW POOLS shows no backend held and every backend answers.
//!
//! `--nocapture` prints one line per fault: clients affected, SQLSTATEs seen, recovery time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::ledger::{Report, audit, pool_is_clean};
use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const ADMIN: &str = "  admin_username: boss\n  admin_password: boss_pw\n  query_wait_timeout: 3s\n";
const WORKERS: i64 = 12;
const POOL: usize = 4;

async fn worker(conn: String, id: i64, stop: Arc<AtomicBool>) -> Report {
    let mut r = Report::default();
    let mut client = None;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let c = match &client {
            Some(c) => c,
            None => match connect(&conn).await {
                Ok(c) => client.insert(c),
                Err(e) => {
                    r.errors.push(sqlstate(&e));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        n += 1;
        let sql = format!("INSERT INTO ledger VALUES ({id}, {n})");
        match tokio::time::timeout(Duration::from_secs(20), c.simple_query(&sql)).await {
            Ok(Ok(_)) => {
                r.committed.insert(n);
                r.successes.push(Instant::now());
            }
            Ok(Err(e)) => {
                r.in_doubt.insert(n);
                r.errors.push(sqlstate(&e));
                // After a FATAL the session is over (libpq closes too): log in again.
                let fatal = e
                    .as_db_error()
                    .is_some_and(|d| matches!(d.severity(), "FATAL" | "PANIC"));
                if fatal || c.is_closed() {
                    client = None;
                }
            }
            Err(_) => panic!("client {id}: an INSERT hung for 20 s"),
        }
    }
    r
}

struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Report>>,
}

fn start_load(d: &Doorman) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = (0..WORKERS)
        .map(|id| tokio::spawn(worker(app_conn(d), id, stop.clone())))
        .collect();
    Load { stop, tasks }
}

impl Load {
    async fn finish(self) -> Vec<Report> {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        for t in self.tasks {
            out.push(t.await.unwrap());
        }
        out
    }
}

fn setup() -> (TempCluster, Doorman) {
    let pg = cluster(PgAuth::Scram);
    pg.psql_db(
        "appdb",
        "CREATE TABLE ledger (worker int, n int); ALTER TABLE ledger OWNER TO app",
    );
    let spec = PoolSpec {
        general_extra: ADMIN,
        ..PoolSpec::sized("transaction", POOL)
    };
    let d = doorman(&pg, &spec);
    (pg, d)
}

/// The longest time, over the clients, from `back` to their first success after it (ms).
fn recovery_ms(reports: &[Report], back: Instant) -> u128 {
    reports
        .iter()
        .map(|r| {
            r.successes
                .iter()
                .find(|t| **t >= back)
                .map_or(u128::MAX, |t| t.duration_since(back).as_millis())
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load() {
    let (pg, d) = setup();
    let load = start_load(&d);
    tokio::time::sleep(Duration::from_millis(800)).await;
    // pg_ctl stop -m fast: backends say 57P01 as they go; for half a second nothing listens
    // (new backends: 08001), then PostgreSQL starts again.
    pg.stop_fast();
    tokio::time::sleep(Duration::from_millis(500)).await;
    pg.restart();
    let back = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reports = load.finish().await;
    let (affected, codes) = audit(
        &pg,
        &reports,
        &["57P01", "57P02", "08006", "08001", "57P03"],
    );
    let rec = recovery_ms(&reports, back);
    eprintln!("fault=restart affected={affected}/{WORKERS} codes={codes:?} recovery_ms={rec}");
    assert!(rec <= 1000, "recovered after {rec} ms");
    pool_is_clean(&pg, &d, POOL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_terminated_in_a_loop() {
    let (pg, d) = setup();
    let load = start_load(&d);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut killed = 0;
    for _ in 0..10 {
        let out = pg.psql(
            "SELECT count(pg_terminate_backend(pid)) FROM (SELECT pid FROM pg_stat_activity \
             WHERE usename = 'app' ORDER BY random() LIMIT 1) s",
        );
        killed += out.trim().parse::<u32>().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let back = Instant::now();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let reports = load.finish().await;
    let (affected, codes) = audit(&pg, &reports, &["57P01", "08006"]);
    let rec = recovery_ms(&reports, back);
    eprintln!(
        "fault=pg_terminate_backend x{killed} affected={affected}/{WORKERS} codes={codes:?} recovery_ms={rec}"
    );
    assert!(killed >= 5);
    // Only a client whose query was on the killed backend hears of it.
    assert!(
        affected <= killed as usize,
        "{affected} affected by {killed} kills"
    );
    assert!(rec <= 1000, "recovered after {rec} ms");
    pool_is_clean(&pg, &d, POOL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_stopped_with_sigstop() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let (pg, d) = setup();
    let load = start_load(&d);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A client in a transaction on one backend, which stops answering in the middle of a
    // query.
    let victim = connect(&app_conn(&d)).await.unwrap();
    victim.batch_execute("BEGIN").await.unwrap();
    let pid: i32 = one(&victim, "SELECT pg_backend_pid()")
        .await
        .parse()
        .unwrap();
    let cancel = victim.cancel_token();
    let stuck = tokio::spawn(async move {
        let r = victim.simple_query("SELECT pg_sleep(3)").await;
        (r.map(|_| ()).map_err(|e| sqlstate(&e)), victim)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
    // The rest of the pool keeps serving the others meanwhile.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let during = Instant::now();
    // The client gives up and cancels; the backend handles it when it runs again.
    cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill(Pid::from_raw(pid), Signal::SIGCONT).unwrap();
    let back = Instant::now();
    let (r, victim) = tokio::time::timeout(Duration::from_secs(5), stuck)
        .await
        .expect("the stopped client hung after SIGCONT")
        .unwrap();
    assert_eq!(
        r,
        Err("57014".to_string()),
        "the cancelled query gets 57014"
    );
    // Its transaction is failed, as PostgreSQL says; it ends it and goes on.
    victim.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(one(&victim, "SELECT 2").await, "2");
    drop(victim);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reports = load.finish().await;
    let (affected, codes) = audit(&pg, &reports, &[]);
    let served_while_stopped = reports
        .iter()
        .filter(|r| r.successes.iter().any(|t| *t < during))
        .count();
    let rec = recovery_ms(&reports, back);
    eprintln!(
        "fault=SIGSTOP affected=1 (the stopped backend's client, 57014 after cancel) load_affected={affected}/{WORKERS} codes={codes:?} recovery_ms={rec}"
    );
    assert_eq!(affected, 0);
    assert_eq!(served_while_stopped, WORKERS as usize);
    pool_is_clean(&pg, &d, POOL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_every_second_under_load() {
    let (pg, d) = setup();
    let load = start_load(&d);
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(d.pid() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reports = load.finish().await;
    let (affected, codes) = audit(&pg, &reports, &[]);
    let total: usize = reports.iter().map(|r| r.committed.len()).sum();
    eprintln!("fault=SIGHUPx4 affected={affected}/{WORKERS} codes={codes:?} committed={total}");
    assert_eq!(affected, 0);
    assert!(d.log_text().contains("reload"), "{}", d.log_text());
    pool_is_clean(&pg, &d, POOL).await;
}
