//! A patroni_proxy process for tests, with its config and log in a temp dir.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Proxy {
    child: Child,
    dir: tempfile::TempDir,
    pub api_port: u16,
}

impl Proxy {
    /// Starts patroni_proxy on `yaml` (`{api}` replaced by a free port) and waits for its API.
    pub fn start(yaml: &str) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let api_port = doorman_testkit::free_port();
        std::fs::write(
            dir.path().join("proxy.yaml"),
            yaml.replace("{api}", &api_port.to_string()),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_patroni_proxy"))
            .arg(dir.path().join("proxy.yaml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("proxy.log")).unwrap())
            .spawn()
            .unwrap();
        let mut p = Proxy {
            child,
            dir,
            api_port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while doorman_testkit::patroni::http_get(api_port, "/").is_none() {
            if let Ok(Some(s)) = p.child.try_wait() {
                panic!("patroni_proxy exited with {s}: {}", p.log());
            }
            assert!(Instant::now() < deadline, "no API: {}", p.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        p
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("proxy.yaml")
    }

    /// Rewrites the config and sends SIGHUP; waits for a log line with `needle`.
    pub fn reload(&self, yaml: &str, needle: &str) {
        let before = self.log().matches(needle).count();
        std::fs::write(
            self.config_path(),
            yaml.replace("{api}", &self.api_port.to_string()),
        )
        .unwrap();
        let _ = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.log().matches(needle).count() <= before {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} after SIGHUP: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(inet_server_port(), pg_is_in_recovery())` of a new connection through `port`.
pub async fn whoami(port: u16) -> Result<(u16, bool), String> {
    let c = doorman_testkit::connect(&format!(
        "host=127.0.0.1 port={port} user=postgres password=postgres dbname=postgres connect_timeout=3"
    ))
    .await
    .map_err(|e| e.to_string())?;
    let row = c
        .query_one("select inet_server_port(), pg_is_in_recovery()", &[])
        .await
        .map_err(|e| e.to_string())?;
    Ok((row.get::<_, i32>(0) as u16, row.get(1)))
}
