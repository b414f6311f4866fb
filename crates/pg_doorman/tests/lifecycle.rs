//! Stopping and supervising (issue 17, seed 002): SIGTERM drains (transactions finish, then
//! 58006, exit within shutdown_timeout), SIGINT stops at once on a terminal and drains
//! without one, systemd notifications (READY, RELOADING, MAINPID, STOPPING), `--daemon` and
//! its pid file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::err_expect
)]

mod common;
use common::live::{Live, alive};
use common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A pg_doorman child with the given stdin, config and environment; waits until it accepts.
struct Proc {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Proc {
    fn start(yaml: &str, stdin: Stdio, env: &[(&str, &str)]) -> Proc {
        let port = doorman_testkit::free_port();
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("pg_doorman.yaml");
        std::fs::write(&cfg, yaml.replace("{port}", &port.to_string())).unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new(binary())
            .arg(&cfg)
            .stdin(stdin)
            .stderr(log)
            .envs(env.iter().copied())
            .spawn()
            .unwrap();
        let p = Proc { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "not listening: {}", p.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Waits for exit; the time it took, or None at `limit`.
    fn exited_within(&mut self, limit: Duration) -> Option<Duration> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Some(t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn drain_yaml(pg: &TempCluster, timeout: &str) -> String {
    yaml(
        pg,
        &PoolSpec {
            general_extra: &format!("  shutdown_timeout: {timeout}\n"),
            ..Default::default()
        },
    )
}

/// psql through `port` running `cmds` (one -c each); (stdout, stderr).
fn psql_at(port: u16, cmds: &[&str]) -> std::thread::JoinHandle<(String, String)> {
    let mut args: Vec<String> = ["-X", "-At", "-h", "127.0.0.1", "-p", &port.to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["-U", "app", "-d", "appdb"].map(String::from));
    for c in cmds {
        args.push("-c".into());
        args.push(c.to_string());
    }
    std::thread::spawn(move || {
        let out = Command::new("psql")
            .args(&args)
            .env("PGPASSWORD", "app_pw")
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
}

/// Waits until PostgreSQL shows a backend of `app` running `pg_sleep`.
fn wait_sleeping(pg: &TempCluster) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pg
        .psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep%' AND usename = 'app'")
        .trim()
        == "0"
    {
        assert!(Instant::now() < deadline, "the sleep never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_lets_the_transaction_finish_then_says_58006_and_exits() {
    let pg = cluster(PgAuth::Scram);
    pg.psql_db("appdb", "CREATE TABLE t (v int); GRANT ALL ON t TO app");
    let mut d = Proc::start(&drain_yaml(&pg, "8s"), Stdio::null(), &[]);
    let busy = psql_at(
        d.port,
        &[
            "BEGIN",
            "SELECT pg_sleep(1.5)",
            "INSERT INTO t VALUES (1)",
            "COMMIT",
            "SELECT 'still here'",
        ],
    );
    // An idle client is closed at once.
    let idle = psql_at(
        d.port,
        &[
            "SELECT pg_sleep(0.2)",
            "SELECT pg_sleep(3)",
            "SELECT 'late'",
        ],
    );
    wait_sleeping(&pg);
    std::thread::sleep(Duration::from_millis(300));
    d.signal(nix::sys::signal::Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", d.port)).is_err(),
        "still accepting after SIGTERM"
    );
    let took = d
        .exited_within(Duration::from_secs(8))
        .expect("no exit within shutdown_timeout");
    let (out, err) = busy.join().unwrap();
    assert!(err.contains("pooler is shut down now"), "{out}\n{err}");
    assert!(!out.contains("still here"), "{out}");
    assert_eq!(
        pg.psql_db("appdb", "SELECT count(*) FROM t").trim(),
        "1",
        "the transaction was lost"
    );
    let (out, err) = idle.join().unwrap();
    assert!(!out.contains("late"), "{out}");
    assert!(
        err.contains("pooler is shut down now") || err.contains("closed"),
        "{err}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        d.log().contains("SIGTERM: graceful shutdown"),
        "{}",
        d.log()
    );
}

/// Session mode keeps the backend between transactions: a drain still lets the client finish
/// its transaction and then tells it 58006, and an idle one at once; the process does not wait
/// for shutdown_timeout.
#[test]
fn session_mode_clients_are_told_58006_between_transactions() {
    use common::raw::{Wire, login_on, query, read_msg, tags};
    let pg = cluster(PgAuth::Scram);
    let y = yaml(
        &pg,
        &PoolSpec {
            mode: "session",
            general_extra: "  shutdown_timeout: 30s\n",
            ..Default::default()
        },
    );
    let mut d = Proc::start(&y, Stdio::null(), &[]);
    let connect = || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", d.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        login_on(&mut s);
        Wire(s)
    };
    let mut idle = connect();
    assert_eq!(idle.value("SELECT 1"), "1");
    let mut busy = connect();
    busy.send(&[query("BEGIN")]);
    assert_eq!(tags(&busy.until_ready()), "CZ");
    let t = Instant::now();
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let e = read_msg(&mut idle.0);
    assert_eq!((e.tag, e.text()), (b'E', "58006".to_string()));
    assert_eq!(busy.value("SELECT 2"), "2", "the transaction goes on");
    busy.send(&[query("COMMIT")]);
    let after = busy.until_ready();
    assert_eq!(tags(&after), "CZ");
    let e = read_msg(&mut busy.0);
    assert_eq!((e.tag, e.text()), (b'E', "58006".to_string()));
    d.exited_within(Duration::from_secs(5)).expect("no exit");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn shutdown_timeout_bounds_the_wait_for_a_long_transaction() {
    let pg = cluster(PgAuth::Scram);
    let mut d = Proc::start(&drain_yaml(&pg, "1500ms"), Stdio::null(), &[]);
    let busy = psql_at(d.port, &["BEGIN", "SELECT pg_sleep(30)"]);
    wait_sleeping(&pg);
    let t = Instant::now();
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.exited_within(Duration::from_secs(6)).expect("no exit");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(4),
        "{took:?}"
    );
    let _ = busy.join();
    assert!(d.log().contains("shutdown_timeout reached"), "{}", d.log());
}

#[test]
fn a_second_sigterm_stops_at_once() {
    let pg = cluster(PgAuth::Scram);
    let mut d = Proc::start(&drain_yaml(&pg, "30s"), Stdio::null(), &[]);
    let busy = psql_at(d.port, &["BEGIN", "SELECT pg_sleep(30)"]);
    wait_sleeping(&pg);
    d.signal(nix::sys::signal::Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        alive(d.child.id()),
        "the first SIGTERM must wait for the transaction"
    );
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.exited_within(Duration::from_secs(3))
        .expect("no exit after the second SIGTERM");
    let _ = busy.join();
}

#[test]
fn sigint_drains_without_a_terminal_and_stops_at_once_on_one() {
    let pg = cluster(PgAuth::Scram);
    // No terminal: as SIGTERM.
    let mut d = Proc::start(&drain_yaml(&pg, "10s"), Stdio::null(), &[]);
    let busy = psql_at(d.port, &["BEGIN", "SELECT pg_sleep(1.5)", "COMMIT"]);
    wait_sleeping(&pg);
    d.signal(nix::sys::signal::Signal::SIGINT);
    std::thread::sleep(Duration::from_millis(400));
    assert!(alive(d.child.id()), "SIGINT without a terminal must drain");
    let took = d.exited_within(Duration::from_secs(6)).expect("no exit");
    assert!(took > Duration::from_millis(300), "{took:?}");
    let _ = busy.join();
    // On a terminal (stdin is a pty): at once, transaction or not.
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut d = Proc::start(&drain_yaml(&pg, "10s"), Stdio::from(pty.slave), &[]);
    let busy = psql_at(d.port, &["BEGIN", "SELECT pg_sleep(20)"]);
    wait_sleeping(&pg);
    d.signal(nix::sys::signal::Signal::SIGINT);
    let took = d
        .exited_within(Duration::from_secs(3))
        .expect("SIGINT on a terminal must stop at once");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(d.log().contains("SIGINT on a terminal"), "{}", d.log());
    drop(pty.master);
    let _ = busy.join();
}

/// Reads one datagram from the notify socket (10 s at most).
fn next_notice(sock: &std::os::unix::net::UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = sock
        .recv(&mut buf)
        .expect("no sd_notify message within 10 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn systemd_hears_ready_reloading_mainpid_and_stopping() {
    let pg = cluster(PgAuth::Scram);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let p = path.to_string_lossy().into_owned();
    let live = Live::start(&drain_yaml(&pg, "5s"), &[("NOTIFY_SOCKET", &p)]);
    assert_eq!(next_notice(&sock).trim(), "READY=1");
    live.signal(nix::sys::signal::Signal::SIGHUP);
    let reloading = next_notice(&sock);
    assert!(reloading.starts_with("RELOADING=1"), "{reloading}");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    assert_eq!(next_notice(&sock).trim(), "READY=1");
    let (_, new, _) = live.upgrade();
    let main = next_notice(&sock);
    assert!(main.contains(&format!("MAINPID={new}")), "{main}");
    assert!(main.contains("READY=1"), "{main}");
    live.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(next_notice(&sock).trim(), "STOPPING=1");
    assert!(Live::wait_gone(new, Duration::from_secs(8)));
}

#[test]
fn daemon_keeps_its_pid_file_and_removes_it_on_exit() {
    let pg = cluster(PgAuth::Scram);
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("d.pid");
    let port = doorman_testkit::free_port();
    let cfg = dir.path().join("pg_doorman.yaml");
    let y = drain_yaml(&pg, "5s").replace(
        "  shutdown_timeout: 5s\n",
        &format!(
            "  shutdown_timeout: 5s\n  daemon_pid_file: \"{}\"\n",
            pid_file.display()
        ),
    );
    std::fs::write(&cfg, y.replace("{port}", &port.to_string())).unwrap();
    let run = |log: &str| {
        Command::new(binary())
            .arg("--daemon")
            .arg(&cfg)
            .stderr(std::fs::File::create(dir.path().join(log)).unwrap())
            .status()
            .unwrap()
    };
    // A stale file (a process that is gone) is replaced.
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    std::fs::write(&pid_file, format!("{gone_pid}\n")).unwrap();
    let status = run("log1");
    assert!(
        status.success(),
        "{:?}",
        std::fs::read_to_string(dir.path().join("log1"))
    );
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    assert!(
        std::fs::read_to_string(dir.path().join("log1"))
            .unwrap()
            .contains("stale pid file")
    );
    let out = Command::new("psql")
        .args(["-X", "-At", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "app", "-d", "appdb", "-c", "select 5"])
        .env("PGPASSWORD", "app_pw")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "5");
    // A second daemon on the same pid file refuses to start: exit 1.
    let status = run("log2");
    assert_eq!(status.code(), Some(1));
    assert!(
        std::fs::read_to_string(dir.path().join("log2"))
            .unwrap()
            .contains("is running")
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(Live::wait_gone(pid, Duration::from_secs(8)));
    assert!(!pid_file.exists(), "pid file left behind");
}
