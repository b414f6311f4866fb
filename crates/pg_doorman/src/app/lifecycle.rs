//! The process's life after start: running → draining (SIGTERM, admin SHUTDOWN, SIGINT
//! without a TTY) or upgrading (SIGUSR2, admin UPGRADE) → stopped. This is the state the
//! [`AppContext`](super::context::AppContext) holds and the commands others send;
//! [`super::control`] carries them out.

use super::handoff::Departure;
use parking_lot::Mutex;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU8, Ordering};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Phases ([`Lifecycle::phase`]).
pub mod phase {
    /// Serving.
    pub const RUNNING: u8 = 0;
    /// An upgrade's new process is being started.
    pub const STARTING_CHILD: u8 = 1;
    /// Handing clients to the new process.
    pub const MIGRATING: u8 = 2;
    /// Shutting down gracefully.
    pub const DRAINING: u8 = 3;
}

/// Duplicates of the listening sockets, kept for an upgrade's child (which inherits them:
/// `--inherit-fd`, `PG_DOORMAN_WEB_FD`, `PG_DOORMAN_UNIX_FD`).
#[derive(Debug, Default)]
pub struct ListenFds {
    /// `general.host:port`.
    pub main: Option<OwnedFd>,
    /// The /metrics listener.
    pub web: Option<OwnedFd>,
    /// The unix socket.
    pub unix: Option<OwnedFd>,
}

/// What the controller is asked to do.
pub enum Command {
    /// Binary upgrade; the result (validation or start failure) goes to the admin client.
    Upgrade(Option<oneshot::Sender<Result<(), String>>>),
    /// Graceful shutdown (SIGTERM, admin SHUTDOWN); a second one while draining ends at once.
    Drain,
    /// Stop now.
    Immediate,
}

/// The queue of departures and the task that sends them to the new process (it ends once
/// the queue is empty and closed).
pub type Handoff = (
    mpsc::UnboundedSender<Departure>,
    tokio::task::JoinHandle<()>,
);

/// Lifecycle handles shared through the [`AppContext`].
pub struct Lifecycle {
    /// Cancelled when the process stops accepting (drain, or the upgrade's child took over).
    pub stop_accepting: CancellationToken,
    phase: AtomicU8,
    commands: mpsc::UnboundedSender<Command>,
    inbox: Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
    /// Departures to the new process, while migrating.
    handoff: Mutex<Option<Handoff>>,
    /// Duplicates of the listening sockets, passed to an upgrade's child.
    pub listen_fds: Mutex<ListenFds>,
    /// Cancels for clients this process does not know, sent to the process we took over from
    /// (its clients inside a transaction are still there).
    pub predecessor: Mutex<Option<mpsc::UnboundedSender<(i32, i32)>>>,
    /// The executable to start on upgrade (resolved at start, before anyone replaces it).
    pub exe: Option<std::path::PathBuf>,
    /// The command line to give it (ours, without `--daemon` and `--inherit-fd`).
    pub args: Vec<std::ffi::OsString>,
    /// The pid file we keep (`--daemon`), for the child to take over.
    pub pid_file: Option<std::path::PathBuf>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle::new(None, Vec::new(), None, ListenFds::default())
    }
}

impl Lifecycle {
    /// A running process's lifecycle: what an upgrade starts (`exe` with `args`), the pid
    /// file it passes on, and duplicates of the listening sockets.
    pub fn new(
        exe: Option<std::path::PathBuf>,
        args: Vec<std::ffi::OsString>,
        pid_file: Option<std::path::PathBuf>,
        listen_fds: ListenFds,
    ) -> Self {
        let (commands, inbox) = mpsc::unbounded_channel();
        Lifecycle {
            stop_accepting: CancellationToken::new(),
            phase: AtomicU8::new(phase::RUNNING),
            commands,
            inbox: Mutex::new(Some(inbox)),
            handoff: Mutex::new(None),
            listen_fds: Mutex::new(listen_fds),
            predecessor: Mutex::new(None),
            exe,
            args,
            pid_file,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }

    /// Enters phase `p` (the controller only).
    pub(super) fn set_phase(&self, p: u8) {
        self.phase.store(p, Ordering::Release);
    }

    /// The command queue's receiving end, once (the controller takes it).
    pub(super) fn take_inbox(&self) -> Option<mpsc::UnboundedReceiver<Command>> {
        self.inbox.lock().take()
    }

    /// Installs the handoff of a started upgrade.
    pub(super) fn set_handoff(&self, h: Handoff) {
        *self.handoff.lock() = Some(h);
    }

    /// Takes the handoff back (the drain's end).
    pub(super) fn take_handoff(&self) -> Option<Handoff> {
        self.handoff.lock().take()
    }

    /// Queues a command for the controller.
    pub fn command(&self, c: Command) {
        let _ = self.commands.send(c);
    }

    /// Starts an upgrade and waits for its first half (validation, child ready). Errors: why
    /// nothing changed.
    pub async fn upgrade(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Upgrade(Some(tx)));
        rx.await
            .unwrap_or_else(|_| Err("the process is stopping".into()))
    }

    /// Hands a departing client to the sender (dropped, closing the client, when the
    /// handoff is gone).
    pub fn depart(&self, d: Departure) {
        match self.handoff.lock().as_ref() {
            Some((tx, _)) => {
                let _ = tx.send(d);
            }
            None => tracing::warn!(
                "client {} left for a new process that is gone",
                d.migrant.peer
            ),
        }
    }

    /// Sends a cancel for an unknown key to the process we took over from; false without one.
    pub fn cancel_to_predecessor(&self, pid: i32, secret: i32) -> bool {
        match self.predecessor.lock().as_ref() {
            Some(tx) => tx.send((pid, secret)).is_ok(),
            None => false,
        }
    }
}
