//! A pg_doorman whose process changes: started from a copy of the binary (so a test can rename
//! a new one over it) with `PG_DOORMAN_PID_FILE`, which every process of an upgrade chain
//! rewrites with its own pid once it serves.

use super::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The chain's current process is read from the pid file; dropping kills it.
pub struct Live {
    /// The first process (its `Doorman` handle; it exits after the first upgrade).
    pub first: Doorman,
    /// The executable every process starts from.
    pub bin: PathBuf,
    /// The pid file.
    pub pid_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Live {
    /// Starts `yaml` from a copy of the test binary, with `env` added.
    pub fn start(yaml: &str, env: &[(&str, &str)]) -> Live {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("pg_doorman");
        copy_exe(&bin);
        let pid_file = dir.path().join("pg_doorman.pid");
        let pf = pid_file.to_string_lossy().into_owned();
        let mut all: Vec<(&str, &str)> = vec![("PG_DOORMAN_PID_FILE", &pf)];
        all.extend_from_slice(env);
        let first = Doorman::start_env(&bin, yaml, &all);
        let live = Live {
            first,
            bin,
            pid_file,
            _dir: dir,
        };
        live.wait_pid(|p| p != 0, Duration::from_secs(10));
        live
    }

    /// Pid in the pid file (0 when unreadable).
    pub fn pid(&self) -> u32 {
        std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn wait_pid(&self, ok: impl Fn(u32) -> bool, limit: Duration) -> u32 {
        let deadline = Instant::now() + limit;
        loop {
            let p = self.pid();
            if ok(p) {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "pid file stayed at {p}:\n{}",
                self.first.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Renames a fresh copy of the binary over the executable (a new inode, as a package
    /// upgrade does).
    pub fn replace_binary(&self) {
        let tmp = self.bin.with_extension("new");
        copy_exe(&tmp);
        std::fs::rename(&tmp, &self.bin).unwrap();
    }

    /// Sends `sig` to the current process.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    /// Replaces the binary, sends SIGUSR2 and waits until the new process serves; returns
    /// (old pid, new pid, time to the new process serving).
    pub fn upgrade(&self) -> (u32, u32, Duration) {
        self.replace_binary();
        let old = self.pid();
        let t = Instant::now();
        self.signal(nix::sys::signal::Signal::SIGUSR2);
        let new = self.wait_pid(|p| p != old && p != 0, Duration::from_secs(15));
        (old, new, t.elapsed())
    }

    /// Waits until process `pid` is gone; false at `limit`.
    pub fn wait_gone(pid: u32, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if !alive(pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

/// Copies the test binary to `to` with cp(1): a copy written by this (multi-threaded) test
/// process would leave its write descriptor in any child forked meanwhile until that child's
/// exec, and executing the copy then fails with ETXTBSY.
fn copy_exe(to: &std::path::Path) {
    let ok = std::process::Command::new("cp")
        .arg(binary())
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp to {}", to.display());
}

/// True while process `pid` exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let p = self.pid();
        if p != 0 && p != self.first.pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Backend connections to PostgreSQL on `pg_port` by the pid holding them (ss -tnp).
pub fn backends_by_process(pg_port: u16) -> std::collections::HashMap<u32, usize> {
    let out = std::process::Command::new("ss")
        .args(["-Htnp", "state", "established"])
        .arg(format!("( dport = :{pg_port} )"))
        .output()
        .unwrap();
    let mut by = std::collections::HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(i) = line.find("pid=") {
            let digits: String = line[i + 4..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            if let Ok(pid) = digits.parse::<u32>() {
                *by.entry(pid).or_insert(0) += 1;
            }
        }
    }
    by
}
