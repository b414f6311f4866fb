//! `--daemon`: fork into the background and keep `daemon_pid_file` (PgDoorman semantics; the
//! crate `daemonize` is unmaintained, DEPS.md). The parent waits until the daemon's listener
//! is up and exits 0, or 1 when the daemon could not start.
#![allow(unsafe_code)]

use anyhow::Context;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// The daemon's end of the start-up pipe: [`Ready::done`] tells the waiting parent.
pub struct Ready(Option<std::fs::File>);

impl Ready {
    /// Tells the parent the daemon serves (it then exits 0).
    pub fn done(&mut self) {
        if let Some(mut f) = self.0.take() {
            let _ = f.write_all(b"1");
        }
    }
}

/// Forks. In the parent, waits for the daemon's word and exits (0 ready, 1 failed); returns
/// only in the daemon, which is a new session leader with stdin on /dev/null. Must be called
/// before any thread is started (the runtime, logging).
pub fn fork_into_background() -> anyhow::Result<Ready> {
    let (read, write): (OwnedFd, OwnedFd) = nix::unistd::pipe().context("pipe")?;
    // SAFETY: called from main before the runtime or any other thread exists, so the child
    // is a copy of a single-threaded process and may run ordinary Rust code.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        nix::unistd::ForkResult::Parent { .. } => {
            drop(write);
            let mut word = [0u8; 1];
            let mut f = std::fs::File::from(read);
            let ok = matches!(f.read(&mut word), Ok(1));
            std::process::exit(if ok { 0 } else { 1 });
        }
        nix::unistd::ForkResult::Child => {
            drop(read);
            nix::unistd::setsid().context("setsid")?;
            let null = std::fs::File::open("/dev/null").context("/dev/null")?;
            nix::unistd::dup2_stdin(&null).context("stdin")?;
            Ok(Ready(Some(std::fs::File::from(write))))
        }
    }
}

/// A pid file this process wrote; removed on drop if it still holds our pid (an upgrade's new
/// process rewrites it with its own).
pub struct PidFile(PathBuf);

/// Errors when `path` names a running process other than us or our parent (an upgrade's
/// predecessor); Ok(Some(pid)) when it names one that is gone (a stale file).
pub fn check(path: &Path) -> anyhow::Result<Option<i32>> {
    let Ok(old) = std::fs::read_to_string(path) else {
        return Ok(None);
    };
    let Ok(pid) = old.trim().parse::<i32>() else {
        return Ok(None);
    };
    if pid <= 0 || pid as u32 == std::process::id() {
        return Ok(None);
    }
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    if alive && !is_predecessor(pid) {
        anyhow::bail!(
            "pid file {} names process {pid}, which is running: is pg_doorman already started?",
            path.display()
        );
    }
    Ok((!alive).then_some(pid))
}

impl PidFile {
    /// Writes our pid to `path`. A file left by a process that is gone is replaced (logged);
    /// one whose pid is alive and is not us (or our upgrade predecessor) is an error.
    pub fn write(path: &Path) -> anyhow::Result<PidFile> {
        let me = std::process::id();
        if let Some(pid) = check(path)? {
            tracing::warn!(
                "replacing stale pid file {} (process {pid} is gone)",
                path.display()
            );
        }
        std::fs::write(path, format!("{me}\n"))
            .with_context(|| format!("cannot write pid file {}", path.display()))?;
        Ok(PidFile(path.to_path_buf()))
    }
}

/// True when `pid` is the process that started us (an upgrade: it still runs while draining).
fn is_predecessor(pid: i32) -> bool {
    nix::unistd::getppid().as_raw() == pid
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let me = std::process::id().to_string();
        if std::fs::read_to_string(&self.0).is_ok_and(|s| s.trim() == me) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}
