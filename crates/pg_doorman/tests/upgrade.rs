//! Binary upgrade under load (issue 17): pgbench runs while SIGUSR2 replaces the process five
//! times; nothing fails, no connection attempt is refused, every process keeps to pool_size
//! backends, and migrated clients keep their prepared statements, parameters and cancel keys.
//! A rejected config leaves the old process serving. `UPGRADE_SECS` sets the pgbench run
//! (default 30 s, as the issue asks).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::err_expect
)]

mod common;
use common::live::{Live, alive, backends_by_process};
use common::*;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// The load runs saturate the machine: one at a time.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn secs() -> u64 {
    std::env::var("UPGRADE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

const POOL: usize = 10;

fn upgrade_yaml(pg: &TempCluster, extra: &str) -> String {
    yaml(
        pg,
        &PoolSpec {
            pool_size: POOL,
            general_extra: &format!(
                "  shutdown_timeout: 5s\n  log_client_connections: false\n  log_client_disconnections: false\n{extra}"
            ),
            ..Default::default()
        },
    )
}

/// A pgbench run in the background, with a per-transaction log in `dir`.
struct Bench {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

fn start_pgbench(port: u16, args: &[&str], env: &[(&str, &str)]) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("tx");
    let child = Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "app"])
        .args(args)
        .arg("-l")
        .arg(format!("--log-prefix={}", prefix.display()))
        .arg("appdb")
        .env("PGPASSWORD", "app_pw")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Bench { child, dir }
}

impl Bench {
    /// (exit ok, output, per-transaction (end time µs since the epoch, latency µs)).
    fn finish(self) -> (bool, String, Vec<(u64, u64)>) {
        let out = self.child.wait_with_output().unwrap();
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut tx = Vec::new();
        for e in std::fs::read_dir(self.dir.path()).unwrap() {
            let body = std::fs::read_to_string(e.unwrap().path()).unwrap();
            for line in body.lines() {
                // client_id transaction_no latency_us script_no epoch_s epoch_us
                let f: Vec<u64> = line
                    .split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect();
                if f.len() >= 6 {
                    tx.push((f[4] * 1_000_000 + f[5], f[2]));
                }
            }
        }
        (out.status.success(), text, tx)
    }
}

fn field(text: &str, prefix: &str) -> String {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .map(|l| l[prefix.len()..].trim().to_string())
        .unwrap_or_default()
}

fn p99(mut v: Vec<u64>) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

fn epoch_us(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Latency around each switch: (max within ±1 s, p99 in the second before, p99 in the second
/// after), over all switches.
fn around(tx: &[(u64, u64)], switches: &[SystemTime]) -> (u64, u64, u64) {
    let (mut max, mut before, mut after) = (0, Vec::new(), Vec::new());
    for s in switches {
        let t = epoch_us(*s);
        for &(end, lat) in tx {
            if end + 1_000_000 >= t && end < t {
                before.push(lat);
                max = max.max(lat);
            } else if end >= t && end < t + 1_000_000 {
                after.push(lat);
                max = max.max(lat);
            }
        }
    }
    (max, p99(before), p99(after))
}

/// psql `select 1` in a loop until `stop`; returns (attempts, failures, first failure).
fn psql_loop(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(usize, usize, String)> {
    std::thread::spawn(move || {
        let (mut n, mut failed, mut first) = (0, 0, String::new());
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let out = Command::new("psql")
                .args(["-X", "-At", "-h", "127.0.0.1", "-p", &port.to_string()])
                .args(["-U", "app", "-d", "appdb", "-c", "select 1"])
                .env("PGPASSWORD", "app_pw")
                .output()
                .unwrap();
            if !out.status.success() || String::from_utf8_lossy(&out.stdout).trim() != "1" {
                failed += 1;
                if first.is_empty() {
                    first = String::from_utf8_lossy(&out.stderr).into_owned();
                }
            }
        }
        (n, failed, first)
    })
}

/// Samples backends per process every 50 ms until `stop`; returns the most one process had.
fn backend_sampler(pg_port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut max = 0;
        while !stop.load(Ordering::Relaxed) {
            max = max.max(
                backends_by_process(pg_port)
                    .values()
                    .copied()
                    .max()
                    .unwrap_or(0),
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        max
    })
}

/// Runs pgbench `mode` with 50 clients for `secs()` and five upgrades; asserts the issue's
/// criteria and prints the figures.
fn five_upgrades_under(mode: &str) {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let pg = cluster(PgAuth::Scram);
    let live = Live::start(&upgrade_yaml(&pg, ""), &[]);
    let port = live.first.port;
    pgbench(&live.first, &["-i", "-s", "1", "-q"]);
    let stop = Arc::new(AtomicBool::new(false));
    let loop_ = psql_loop(port, stop.clone());
    let sampler = backend_sampler(pg.port, stop.clone());
    let total = secs();
    let t = total.to_string();
    let bench = start_pgbench(
        port,
        &["-S", "-M", mode, "-c", "50", "-j", "2", "-T", &t],
        &[],
    );
    let mut pids = vec![live.pid()];
    let mut switches = Vec::new();
    let step = Duration::from_millis(total * 1000 / 6);
    for _ in 0..5 {
        std::thread::sleep(step);
        switches.push(SystemTime::now());
        let (old, new, took) = live.upgrade();
        assert_ne!(old, new);
        assert!(
            Live::wait_gone(old, Duration::from_secs(8)),
            "old process {old} still running"
        );
        println!("{mode}: upgrade {old} -> {new}: new process serving after {took:?}");
        pids.push(new);
    }
    let (ok, text, tx) = bench.finish();
    stop.store(true, Ordering::Relaxed);
    let (attempts, refused, first) = loop_.join().unwrap();
    let max_backends = sampler.join().unwrap();
    let (max_lat, before, after) = around(&tx, &switches);
    println!(
        "{mode}: {} transactions, failed {}, {}; psql loop {attempts} attempts, {refused} failed; \
         most backends of one process {max_backends}; latency around a switch: max {} ms, \
         p99 1 s before {} ms, 1 s after {} ms",
        tx.len(),
        field(&text, "number of failed transactions:"),
        field(&text, "tps ="),
        max_lat as f64 / 1000.0,
        before as f64 / 1000.0,
        after as f64 / 1000.0,
    );
    assert!(ok, "pgbench failed:\n{text}");
    assert!(
        field(&text, "number of failed transactions:").starts_with("0 "),
        "{text}"
    );
    assert!(!text.contains("aborted"), "a client aborted:\n{text}");
    assert_eq!(refused, 0, "a psql connection failed: {first}");
    assert!(attempts > 10, "the psql loop hardly ran: {attempts}");
    assert!(
        max_backends <= POOL,
        "a process had {max_backends} backends"
    );
    let distinct: std::collections::HashSet<_> = pids.iter().collect();
    assert_eq!(distinct.len(), 6, "pids {pids:?}");
    assert!(alive(*pids.last().unwrap()));
}

#[test]
fn five_upgrades_under_pgbench_simple_lose_nothing() {
    five_upgrades_under("simple");
}

#[test]
fn five_upgrades_under_pgbench_prepared_lose_nothing() {
    five_upgrades_under("prepared");
}

/// 30 plain and 20 TLS clients: the plain ones migrate; the TLS ones cannot (their session
/// keys stay in the old process) and are served there until shutdown_timeout, then told
/// 58006 between transactions.
#[test]
fn tls_clients_stay_on_the_old_process_until_shutdown_timeout() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let pg = cluster(PgAuth::Scram);
    let pki = pki::Pki::new("upgrade-ca");
    let tls = format!(
        "  tls_mode: allow\n  tls_certificate: \"{}\"\n  tls_private_key: \"{}\"\n",
        pki.p("server.crt"),
        pki.p("server.key")
    );
    let live = Live::start(&upgrade_yaml(&pg, &tls), &[]);
    let port = live.first.port;
    pgbench(&live.first, &["-i", "-s", "1", "-q"]);
    let t = secs().to_string();
    let plain = start_pgbench(
        port,
        &["-S", "-c", "30", "-j", "1", "-T", &t],
        &[("PGSSLMODE", "disable")],
    );
    let tls_run = start_pgbench(
        port,
        &["-S", "-c", "20", "-j", "1", "-T", &t],
        &[("PGSSLMODE", "require")],
    );
    let step = Duration::from_millis(secs() * 1000 / 6);
    for _ in 0..5 {
        std::thread::sleep(step);
        live.upgrade();
    }
    let (ok, text, _) = plain.finish();
    let (_, tls_text, tls_tx) = tls_run.finish();
    let aborted = tls_text.matches("aborted in command").count();
    println!(
        "TLS clients: {} transactions, {aborted} of 20 aborted; first error: {}",
        tls_tx.len(),
        tls_text
            .lines()
            .find(|l| l.contains("FATAL") || l.contains("error"))
            .unwrap_or("none")
    );
    assert!(ok, "plain pgbench failed:\n{text}");
    assert!(!text.contains("aborted"), "a plain client aborted:\n{text}");
    assert!(
        field(&text, "number of failed transactions:").starts_with("0 "),
        "{text}"
    );
    // The TLS clients ran until their process's shutdown_timeout and then got 58006.
    assert!(tls_tx.len() > 1000, "TLS clients hardly ran:\n{tls_text}");
    assert!(
        aborted > 0,
        "TLS clients were expected to be closed:\n{tls_text}"
    );
    assert!(
        tls_text.contains("pooler is shut down now"),
        "TLS clients were not told 58006:\n{tls_text}"
    );
}

/// What a migrated client keeps: its prepared statement (bound after the upgrade without a
/// new Parse from the client), a session setting, a BEGIN not yet sent to a backend, and its
/// cancel key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrated_client_keeps_statements_settings_and_cancel_key() {
    let pg = cluster(PgAuth::Scram);
    let live = Live::start(&upgrade_yaml(&pg, ""), &[]);
    let c = connect(&app_conn(&live.first)).await.unwrap();
    let st = c.prepare("SELECT $1::int + 1").await.unwrap();
    c.batch_execute("SET TimeZone = 'Asia/Tokyo'; SET search_path = 'pg_catalog'")
        .await
        .unwrap();
    let (old, new, _) = tokio::task::block_in_place(|| live.upgrade());
    assert_ne!(old, new);
    assert!(Live::wait_gone(old, Duration::from_secs(8)));
    let row = c.query_one(&st, &[&41i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    assert_eq!(one(&c, "SHOW TimeZone").await, "Asia/Tokyo");
    assert_eq!(one(&c, "SHOW search_path").await, "pg_catalog");
    // The cancel key BackendKeyData gave before the upgrade still works.
    let token = c.cancel_token();
    let sleeper = tokio::spawn(async move { c.simple_query("SELECT pg_sleep(20)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), sleeper)
        .await
        .expect("the cancel did not arrive")
        .unwrap()
        .unwrap_err();
    assert_eq!(sqlstate(&e), "57014", "{e}");
}

/// A client that had sent part of a message (3 bytes of a Query) when the upgrade came: the
/// bytes travel with it and the message completes on the new process; a BEGIN answered but
/// not yet run on a backend (transaction mode defers it) is still open there.
#[test]
fn a_half_sent_message_and_a_deferred_begin_survive_the_move() {
    use common::raw::{Wire, query};
    use std::io::Write;
    let pg = cluster(PgAuth::Scram);
    let live = Live::start(&upgrade_yaml(&pg, ""), &[]);
    let mut w = Wire::login(&live.first);
    w.send(&[query("BEGIN")]);
    assert_eq!(common::raw::tags(&w.until_ready()), "CZ");
    let q = query("SELECT txid_current_if_assigned() IS NULL, 'moved'");
    w.0.write_all(&q[..3]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (old, _, _) = live.upgrade();
    assert!(Live::wait_gone(old, Duration::from_secs(8)));
    w.0.write_all(&q[3..]).unwrap();
    let msgs = w.until_ready();
    let row = msgs.iter().find(|m| m.tag == b'D').expect("no row");
    assert!(
        String::from_utf8_lossy(&row.body).contains("moved"),
        "{msgs:?}"
    );
    // ReadyForQuery says the transaction is open: the deferred BEGIN came along.
    assert_eq!(msgs.last().unwrap().body, b"T");
    assert_eq!(w.value("COMMIT"), "");
}

/// A config the new binary rejects: the upgrade is refused, logged and returned to the admin
/// client; the old process serves on. Fixed, UPGRADE from the console goes through.
#[test]
fn a_rejected_config_leaves_the_old_process_serving() {
    let pg = cluster(PgAuth::Scram);
    let admin = "  admin_username: admin\n  admin_password: admin_pw\n";
    let good = upgrade_yaml(&pg, admin);
    let live = Live::start(&good, &[]);
    let before = live.pid();
    live.first.rewrite_config(&good.replace(
        "shutdown_timeout: 5s",
        "shutdown_timeout: 5s\n  nonsense_key: 1",
    ));
    live.replace_binary();
    let (ok, _, err) = psql(
        &live.first,
        "admin",
        "admin_pw",
        "pgdoorman",
        &["-c", "UPGRADE"],
    );
    assert!(!ok);
    assert!(err.contains("nonsense_key"), "{err}");
    live.first
        .signal_and_expect_log("USR2", "upgrade aborted, this process keeps serving");
    assert!(
        live.first
            .log_text()
            .contains("general.nonsense_key: unknown setting")
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(live.pid(), before);
    let (ok, out, err) = psql(&live.first, "app", "app_pw", "appdb", &["-c", "select 7"]);
    assert!(ok && out.trim() == "7", "{err}");
    live.first.rewrite_config(&good);
    let (ok, out, err) = psql(
        &live.first,
        "admin",
        "admin_pw",
        "pgdoorman",
        &["-c", "UPGRADE"],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "t");
    let deadline = Instant::now() + Duration::from_secs(10);
    while live.pid() == before {
        assert!(Instant::now() < deadline, "no new process");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(Live::wait_gone(before, Duration::from_secs(8)));
    let (ok, out, _) = psql(&live.first, "app", "app_pw", "appdb", &["-c", "select 8"]);
    assert!(ok && out.trim() == "8");
}

/// 1,000 idle clients move in one upgrade; all of them answer afterwards. Prints how long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_clients_move_in_one_upgrade() {
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 8192, 8192);
    let pg = cluster(PgAuth::Scram);
    let live = Live::start(&upgrade_yaml(&pg, "  max_connections: 2000\n"), &[]);
    let conn = app_conn(&live.first);
    let mut clients = Vec::new();
    for _ in 0..1000 {
        clients.push(connect(&conn).await.unwrap());
    }
    let old = live.pid();
    let started = Instant::now();
    let (_, new, serving) = tokio::task::block_in_place(|| live.upgrade());
    let gone = tokio::task::block_in_place(|| Live::wait_gone(old, Duration::from_secs(20)));
    let moved = started.elapsed();
    assert!(gone, "old process still running");
    let answered = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in clients {
        let answered = answered.clone();
        tasks.push(tokio::spawn(async move {
            if one(&c, "SELECT 1").await == "1" {
                answered.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "1000 idle clients: new process {new} serving after {serving:?}, old one gone after {moved:?}"
    );
    assert_eq!(answered.load(Ordering::Relaxed), 1000);
}

/// The unix socket survives an upgrade: the new process inherits it (the file is not
/// removed by the old one), a client on it migrates with its session setting, and new
/// clients connect to the same path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_client_moves_and_the_socket_stays() {
    let pg = cluster(PgAuth::Scram);
    let sock = tempfile::Builder::new()
        .prefix("doorman-sock-")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = sock.path().to_str().unwrap().to_string();
    let live = Live::start(
        &upgrade_yaml(&pg, &format!("  unix_socket_dir: {dir}\n")),
        &[],
    );
    let port = live.first.port;
    let conn = format!("host={dir} port={port} user=app password=app_pw dbname=appdb");
    let (c, task) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(task);
    c.batch_execute("SET TimeZone = 'Asia/Tokyo'")
        .await
        .unwrap();
    let (old, new, _) = tokio::task::block_in_place(|| live.upgrade());
    assert_ne!(old, new);
    assert!(Live::wait_gone(old, Duration::from_secs(8)));
    let r = c.simple_query("SHOW TimeZone").await;
    assert!(r.is_ok(), "{r:?}\n{}", live.first.log_text());
    assert_eq!(one(&c, "SHOW TimeZone").await, "Asia/Tokyo");
    let (c2, task) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(task);
    assert_eq!(one(&c2, "SELECT 1").await, "1");
    assert!(sock.path().join(format!(".s.PGSQL.{port}")).exists());
}
