//! Test support: throwaway PostgreSQL clusters ([`TempCluster`]) on a free 127.0.0.1 port and
//! a pg_doorman process ([`Doorman`]) started from a generated config. Both stop on Drop, so a
//! test leaves no process behind. initdb/pg_ctl refuse to run as root, so as root they run as
//! the `postgres` user through `runuser`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod patroni;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian puts the PostgreSQL 15 server binaries (override with `PG_BIN`).
pub fn pg_bin() -> PathBuf {
    std::env::var_os("PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

fn is_root() -> bool {
    // SAFETY-free check: the effective uid is in /proc/self/status; avoid libc for the testkit.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// A free TCP port on 127.0.0.1 (bound and released; small race accepted in tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn pg_command(bin: &str) -> Command {
    let path = pg_bin().join(bin);
    if is_root() {
        let mut c = Command::new("runuser");
        c.arg("-u").arg("postgres").arg("--").arg(path);
        c
    } else {
        Command::new(path)
    }
}

/// `pg_ctl start`; the error carries pg_ctl's output and the server log.
fn try_pg_ctl_start(data: &Path, dir: &Path) -> Result<(), String> {
    let mut ctl = pg_command("pg_ctl");
    ctl.args(["-w", "-t", "30", "-D"])
        .arg(data)
        .arg("-l")
        .arg(dir.join("postgres.log"))
        .arg("start")
        .stdout(Stdio::null());
    let out = ctl.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
    }
    let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
    Err(format!("{}\n{log}", String::from_utf8_lossy(&out.stderr)))
}

fn run(mut c: Command, what: &str) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Authentication method PostgreSQL asks TCP clients for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgAuth {
    /// No password.
    Trust,
    /// MD5 challenge.
    Md5,
    /// SCRAM-SHA-256.
    Scram,
    /// Cleartext password.
    Password,
}

impl PgAuth {
    fn hba(self) -> &'static str {
        match self {
            PgAuth::Trust => "trust",
            PgAuth::Md5 => "md5",
            PgAuth::Scram => "scram-sha-256",
            PgAuth::Password => "password",
        }
    }
}

/// A running throwaway PostgreSQL cluster.
pub struct TempCluster {
    dir: tempfile::TempDir,
    /// TCP port on 127.0.0.1.
    pub port: u16,
}

impl TempCluster {
    /// initdb + start with `auth` for TCP clients; the unix socket (in the temp dir) is trust.
    pub fn start(auth: PgAuth) -> TempCluster {
        let dir = tempfile::Builder::new()
            .prefix("doorman-pg-")
            .tempdir_in("/tmp")
            .unwrap();
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.arg("postgres:postgres").arg(dir.path());
                    c
                },
                "chown",
            );
        }
        let data = dir.path().join("data");
        let mut initdb = pg_command("initdb");
        initdb
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
                "-D",
            ])
            .arg(&data)
            .stdout(Stdio::null());
        run(initdb, "initdb");
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 300\npassword_encryption = '{}'\nlog_min_messages = warning\n",
            dir.path().display(),
            if auth == PgAuth::Md5 {
                "md5"
            } else {
                "scram-sha-256"
            }
        );
        append(&data.join("postgresql.conf"), &conf);
        std::fs::write(
            data.join("pg_hba.conf"),
            format!(
                "local all all trust\nhost all all 127.0.0.1/32 {}\n",
                auth.hba()
            ),
        )
        .unwrap();
        // A port picked free can be taken by a parallel test before PostgreSQL binds it: retry
        // with another one (the last `port =` line of postgresql.conf wins).
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            append(&data.join("postgresql.conf"), &format!("port = {port}\n"));
            match try_pg_ctl_start(&data, dir.path()) {
                Ok(()) => return TempCluster { dir, port },
                Err(e) => last = e,
            }
        }
        panic!("pg_ctl start failed 5 times: {last}");
    }

    fn pg_ctl_start(&self) {
        if let Err(e) = try_pg_ctl_start(&self.data(), self.dir.path()) {
            panic!("pg_ctl start failed: {e}");
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Directory holding the unix socket `.s.PGSQL.<port>`.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs SQL as superuser `postgres` over the unix socket with psql; returns stdout (-At).
    pub fn psql(&self, sql: &str) -> String {
        self.psql_db("postgres", sql)
    }

    /// As [`TempCluster::psql`], in database `db`.
    pub fn psql_db(&self, db: &str, sql: &str) -> String {
        let mut c = Command::new("psql");
        c.args([
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-d",
            db,
            "-h",
        ])
        .arg(self.socket_dir())
        .arg("-p")
        .arg(self.port.to_string())
        .arg("-c")
        .arg(sql);
        run(c, &format!("psql {sql}"))
    }

    /// Creates a login role with a password (hashed per password_encryption) and a database it owns.
    pub fn create_user(&self, user: &str, password: &str) {
        self.psql(&format!(
            "CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}'"
        ));
    }

    /// Turns on TLS with the given PEM certificate and key (and CA for client certificates),
    /// replaces pg_hba.conf's TCP line with `hba_tcp` (e.g. `hostssl all all 127.0.0.1/32
    /// scram-sha-256`), and restarts.
    pub fn enable_ssl(&self, cert_pem: &str, key_pem: &str, ca_pem: Option<&str>, hba_tcp: &str) {
        use std::os::unix::fs::PermissionsExt;
        let data = self.data();
        std::fs::write(data.join("server.crt"), cert_pem).unwrap();
        std::fs::write(data.join("server.key"), key_pem).unwrap();
        let mut conf =
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n".to_string();
        if let Some(ca) = ca_pem {
            std::fs::write(data.join("ca.crt"), ca).unwrap();
            conf.push_str("ssl_ca_file = 'ca.crt'\n");
        }
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        if is_root() {
            let mut c = Command::new("chown");
            c.arg("-R").arg("postgres:postgres").arg(&data);
            run(c, "chown");
        }
        append(&data.join("postgresql.conf"), &conf);
        std::fs::write(
            data.join("pg_hba.conf"),
            format!("local all all trust\n{hba_tcp}\n"),
        )
        .unwrap();
        self.stop();
        self.pg_ctl_start();
    }

    /// Stops the server immediately (clients see their connections drop).
    pub fn stop(&self) {
        let mut ctl = pg_command("pg_ctl");
        ctl.args(["-w", "-m", "immediate", "-D"])
            .arg(self.data())
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = ctl.status();
    }

    /// Stops the server with a fast shutdown (`pg_ctl -m fast`): sessions are told 57P01 and
    /// a checkpoint writes every commit out (an immediate stop may lose commits when the
    /// cluster runs with `synchronous_commit = off`).
    pub fn stop_fast(&self) {
        let mut ctl = pg_command("pg_ctl");
        ctl.args(["-w", "-m", "fast", "-D"])
            .arg(self.data())
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = ctl.status();
    }

    /// Starts it again after [`TempCluster::stop`].
    pub fn restart(&self) {
        self.pg_ctl_start();
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// A temp directory for one pg_doorman's config files and log.
fn config_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("doorman-cfg-")
        .tempdir()
        .unwrap()
}

/// A pg_doorman process started with a config file written from `yaml`.
pub struct Doorman {
    child: Child,
    _dir: tempfile::TempDir,
    /// Port it listens on (127.0.0.1).
    pub port: u16,
    /// Path of its log file (stderr).
    pub log: PathBuf,
}

impl Doorman {
    /// Starts `binary` with a config whose `general` section gets host/port added; `yaml` holds
    /// the rest of the config with `{port}` replaced by the chosen port. Waits until it accepts.
    pub fn start(binary: &Path, yaml: &str) -> Doorman {
        Doorman::start_env(binary, yaml, &[])
    }

    /// As [`Doorman::start`] with extra environment variables for the process.
    pub fn start_env(binary: &Path, yaml: &str, env: &[(&str, &str)]) -> Doorman {
        let port = free_port();
        let dir = config_dir();
        let path = dir.path().join("pg_doorman.yaml");
        std::fs::write(&path, yaml.replace("{port}", &port.to_string())).unwrap();
        Doorman::launch(binary, dir, &path, port, env)
    }

    /// Starts `binary` on a set of files written into one temp directory (`{port}` replaced by
    /// the chosen port, `{dir}` by the directory), with `config` (one of their names) as the
    /// config file: for configs in another format, or that name other files.
    pub fn start_files(binary: &Path, files: &[(&str, &str)], config: &str) -> Doorman {
        let port = free_port();
        let dir = config_dir();
        let shown = dir.path().display().to_string();
        for (name, text) in files {
            let text = text
                .replace("{port}", &port.to_string())
                .replace("{dir}", &shown);
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let path = dir.path().join(config);
        Doorman::launch(binary, dir, &path, port, &[])
    }

    /// Runs `binary` on `config` (in `dir`, which also gets the log) and waits until it
    /// accepts on `port`.
    fn launch(
        binary: &Path,
        dir: tempfile::TempDir,
        config: &Path,
        port: u16,
        env: &[(&str, &str)],
    ) -> Doorman {
        let log = dir.path().join("pg_doorman.log");
        let child = Command::new(binary)
            .arg(config)
            .arg("-l")
            .arg("debug")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut d = Doorman {
            child,
            _dir: dir,
            port,
            log,
        };
        d.wait_ready();
        d
    }

    /// The directory holding its config file(s).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("pg_doorman exited with {status}: {}", self.log_text());
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("pg_doorman did not start listening: {}", self.log_text());
    }

    /// Replaces its config file with `yaml` (`{port}` as in [`Doorman::start`]); send HUP
    /// for it to be read.
    pub fn rewrite_config(&self, yaml: &str) {
        let path = self._dir.path().join("pg_doorman.yaml");
        std::fs::write(&path, yaml.replace("{port}", &self.port.to_string())).unwrap();
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. "HUP") with kill(1).
    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Sends `signal` (e.g. "TERM") and waits up to 10 s for exit; returns the status.
    pub fn signal_and_wait(&mut self, signal: &str) -> Option<std::process::ExitStatus> {
        self.signal(signal);
        self.wait_exit(Duration::from_secs(10))
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends `signal` (e.g. "HUP") and waits up to 10 s for one more log line containing
    /// `needle`; panics if none comes.
    pub fn signal_and_expect_log(&self, signal: &str, needle: &str) {
        let before = self.log_text().matches(needle).count();
        self.signal(signal);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.log_text().matches(needle).count() > before {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no log line {needle:?} after SIG{signal}:\n{}",
            self.log_text()
        );
    }

    /// A libpq-style connection string for `user`/`password`/`db` through this pg_doorman.
    pub fn conn_str(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={db} connect_timeout=10",
            self.port
        )
    }
}

impl Drop for Doorman {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects with tokio-postgres (no TLS) and drives the connection on a spawned task.
pub async fn connect(conn_str: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(conn_str, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}
