//! The binary as an operator meets it: config check, TOML configs, unix-socket backends,
//! signals.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::err_expect
)]

mod common;
use common::*;
use std::process::Command;

#[test]
fn test_config_flag_validates() {
    let good = "general:\n  port: 6432\npools:\n  db:\n    users:\n      - username: u\n        password: p\n";
    let (ok, out) = check_config("good.yaml", good);
    assert!(ok, "{out}");
    let (ok, out) = check_config("bad.yaml", "general:\n  port: 6432\n  nonsense: 1\n");
    assert!(!ok);
    assert!(out.contains("general.nonsense: unknown setting"), "{out}");
    let (ok, out) = check_config("bad.yml", "general:\n  connect_timeout: soon\n");
    assert!(!ok);
    assert!(out.contains("duration"), "{out}");
    let (ok, out) = check_config(
        "good.toml",
        "[general]\nport = 6432\n[pools.db]\n[pools.db.users.0]\nusername = \"u\"\npassword = \"p\"\n",
    );
    assert!(ok, "{out}");
    let (ok, out) = check_config("x.conf", "");
    assert!(!ok);
    assert!(out.contains(".yaml") && out.contains(".ini"), "{out}");
    // An .ini is PgBouncer's format: a line outside any section is named with its place.
    let (ok, out) = check_config(
        "x.ini",
        "listen_port = 6432
",
    );
    assert!(!ok);
    assert!(
        out.contains("x.ini:1") && out.contains("outside any [section]"),
        "{out}"
    );
    let out = Command::new(binary())
        .arg("-t")
        .arg("/nonexistent/pg_doorman.yaml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
}

#[tokio::test]
async fn toml_config_and_unix_socket_backend() {
    let pg = cluster(PgAuth::Scram);
    let toml = format!(
        "[general]\nhost = \"127.0.0.1\"\nport = {{port}}\nworker_threads = 1\n\n[pools.appdb]\nserver_host = \"{}\"\nserver_port = {}\npool_mode = \"transaction\"\n\n[pools.appdb.users.0]\nusername = \"app\"\npassword = \"app_pw\"\npool_size = 2\n",
        pg.socket_dir().display(),
        pg.port
    );
    let dir = tempfile::tempdir().unwrap();
    let port = doorman_testkit::free_port();
    let path = dir.path().join("pg_doorman.toml");
    std::fs::write(&path, toml.replace("{port}", &port.to_string())).unwrap();
    let mut child = Command::new(binary())
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let conn = format!("host=127.0.0.1 port={port} user=app password=app_pw dbname=appdb");
    let mut client = None;
    for _ in 0..100 {
        if let Ok(c) = connect(&conn).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let c = client.expect("pg_doorman with TOML config accepts clients");
    // Over a unix socket the backend sees no client address.
    assert_eq!(
        one(&c, "SELECT coalesce(inet_client_addr()::text, 'unix')").await,
        "unix"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn sigterm_stops_cleanly() {
    let pg = cluster(PgAuth::Scram);
    let mut d = doorman(&pg, &PoolSpec::default());
    let c = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(one(&c, "SELECT 1").await, "1");
    let status = d
        .signal_and_wait("TERM")
        .expect("pg_doorman exits on SIGTERM");
    assert!(status.success(), "{status}");
    assert!(
        c.simple_query("SELECT 1").await.is_err(),
        "clients are disconnected"
    );
    let log = d.log_text();
    // The idle client was closed by the drain (58006), so none is left at the end.
    assert!(log.contains("draining: 1 clients"), "{log}");
    assert!(log.contains("shutting down: 0 clients connected"), "{log}");
    // Backends were closed politely: PostgreSQL sees no leftover pg_doorman connection.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let n: i64 = pg
        .psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn sighup_does_not_kill() {
    let pg = cluster(PgAuth::Scram);
    let d = doorman(&pg, &PoolSpec::default());
    let _ = Command::new("kill")
        .arg("-HUP")
        .arg(d.pid().to_string())
        .status();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let c = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(one(&c, "SELECT 1").await, "1");
    assert!(d.log_text().contains("SIGHUP: reloading pools"));
}

/// CPUs a thread may run on, from /proc (e.g. "0-1" or "1").
fn cpus_allowed(pid: u32, tid: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test]
async fn runtime_knobs_apply_and_pinned_workers_get_a_cpu_each() {
    let (ok, out) = check_config(
        "zero.yaml",
        "general:\n  tokio_event_interval: 0\n  max_blocking_threads: 0\n  worker_stack_size: 1KB\n",
    );
    assert!(!ok);
    for key in [
        "tokio_event_interval",
        "max_blocking_threads",
        "worker_stack_size",
    ] {
        assert!(out.contains(&format!("general.{key}: must")), "{out}");
    }
    let pg = cluster(PgAuth::Scram);
    let spec = PoolSpec {
        general_extra: "  worker_cpu_affinity_pinning: true\n  tokio_event_interval: 7\n  tokio_global_queue_interval: 11\n  worker_stack_size: 1MB\n  max_blocking_threads: 4\n  tokio_settings_note: \"defaults are fine\"\n  admin_username: boss\n  admin_password: boss_pw\n",
        ..PoolSpec::default()
    };
    let d = doorman(&pg, &spec);
    let c = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(one(&c, "SELECT 40 + 2").await, "42");
    let admin = connect(&d.conn_str("boss", "boss_pw", "pgdoorman"))
        .await
        .unwrap();
    let mut shown = std::collections::HashMap::new();
    for m in admin.simple_query("SHOW CONFIG").await.unwrap() {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            shown.insert(r.get(0).unwrap().to_string(), r.get(1).unwrap().to_string());
        }
    }
    assert_eq!(shown["tokio_event_interval"], "7");
    assert_eq!(shown["tokio_global_queue_interval"], "11");
    assert_eq!(shown["worker_cpu_affinity_pinning"], "true");
    assert_eq!(shown["worker_stack_size"], "1048576");
    assert_eq!(shown["max_blocking_threads"], "4");
    // The two workers (tokio names its threads "tokio-rt-worker") are pinned each to one
    // CPU, and to different ones when this machine lets the process use more than one.
    let pid = d.pid();
    let mine = cpus_allowed(std::process::id(), &std::process::id().to_string());
    let mut pinned = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let tid = t.unwrap().file_name().to_string_lossy().to_string();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap();
        let allowed = cpus_allowed(pid, &tid);
        if comm.starts_with("tokio-r") && allowed.parse::<usize>().is_ok() {
            pinned.push(allowed);
        }
    }
    assert_eq!(pinned.len(), 2, "pinned workers: {pinned:?}");
    if mine.contains('-') || mine.contains(',') {
        assert_ne!(pinned[0], pinned[1], "workers share a CPU: {pinned:?}");
    }
}

#[tokio::test]
async fn with_one_pinned_worker_only_the_scheduler_thread_is_pinned() {
    let mine = cpus_allowed(std::process::id(), &std::process::id().to_string());
    let pg = cluster(PgAuth::Scram);
    let spec = PoolSpec {
        general_extra: "  worker_threads: 1\n  worker_cpu_affinity_pinning: true\n",
        ..PoolSpec::default()
    };
    // One `worker_threads` key: drop the harness's default of 2.
    let yaml = yaml(&pg, &spec).replace("  worker_threads: 2\n", "");
    let d = Doorman::start(binary(), &yaml);
    let c = connect(&app_conn(&d)).await.unwrap();
    assert_eq!(one(&c, "SELECT 1").await, "1");
    let pid = d.pid();
    // The main thread runs the single-threaded scheduler: pinned to one CPU.
    let main = cpus_allowed(pid, &pid.to_string());
    assert!(main.parse::<usize>().is_ok(), "main thread: {main}");
    // The blocking-pool thread that derived the SCRAM verifier at startup was started by the
    // pinned main thread, and got the whole set back.
    let mut others = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let tid = t.unwrap().file_name().to_string_lossy().to_string();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap();
        if comm.starts_with("tokio-r") {
            others.push(cpus_allowed(pid, &tid));
        }
    }
    assert!(!others.is_empty(), "no blocking-pool thread");
    for o in others {
        assert_eq!(o, mine, "a blocking-pool thread kept the pinned mask");
    }
}

#[test]
fn a_taken_port_fails_start_with_one_clear_message() {
    // The port is held by this test's own listening socket.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("taken.yaml");
    let yaml = format!(
        "general:\n  host: 127.0.0.1\n  port: {port}\npools:\n  db:\n    users:\n      - username: u\n        password: p\n"
    );
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(binary()).arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("cannot listen"))
        .unwrap_or_else(|| panic!("no listen error in {err}"));
    assert!(
        line.contains(&format!("cannot listen on 127.0.0.1:{port}: ")),
        "{line}"
    );
    assert!(line.contains("in use"), "{line}");
    assert_eq!(line.matches("cannot listen").count(), 1, "{line}");
    assert_eq!(line.matches(&port.to_string()).count(), 1, "{line}");
}
