//! The process's life after start: running → draining (SIGTERM, admin SHUTDOWN, SIGINT
//! without a TTY) or upgrading (SIGUSR2, admin UPGRADE) → stopped. One controller task takes
//! the commands in order; a drain asks every client to leave at its next idle point through
//! its [`Leave`] signal and ends the process when none is left or at `shutdown_timeout`.

use super::clients::Leave;
use super::context::AppContext;
use crate::client::session::Departure;
use parking_lot::Mutex;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// How often a drain re-asks clients (new logins, clients back from a transaction) and closes
/// the idle backends it no longer needs (PgDoorman polls every 250 ms too).
const DRAIN_TICK: Duration = Duration::from_millis(250);
/// How often a drain looks whether any client is left.
const EMPTY_CHECK: Duration = Duration::from_millis(5);

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
    /// Duplicates of the listening sockets (main, then metrics), passed to an upgrade's child.
    pub listen_fds: Mutex<Vec<OwnedFd>>,
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
        Lifecycle::new(None, Vec::new(), None, Vec::new())
    }
}

impl Lifecycle {
    /// A running process's lifecycle: what an upgrade starts (`exe` with `args`), the pid
    /// file it passes on, and duplicates of the listening sockets (main first).
    pub fn new(
        exe: Option<std::path::PathBuf>,
        args: Vec<std::ffi::OsString>,
        pid_file: Option<std::path::PathBuf>,
        listen_fds: Vec<OwnedFd>,
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

/// Is standard input a terminal (SIGINT from Ctrl+C)?
fn on_tty() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stdin())
}

/// Watches the signals and runs the commands until the process stops. SIGINT on a TTY stops
/// at once (Ctrl+C in development); without one it drains like SIGTERM (issue 17; PgDoorman's
/// legacy "SIGINT upgrades" is not followed: use SIGUSR2).
pub async fn control(ctx: Arc<AppContext>, mut signals: super::signals::Signals) {
    let Some(mut inbox) = ctx.lifecycle.inbox.lock().take() else {
        return;
    };
    loop {
        let cmd = tokio::select! {
            c = inbox.recv() => match c { Some(c) => c, None => return },
            s = signals.next() => match s {
                super::signals::Sig::Term => {
                    tracing::info!("SIGTERM: graceful shutdown");
                    Command::Drain
                }
                super::signals::Sig::Int if on_tty() => {
                    tracing::info!("SIGINT on a terminal: stopping now");
                    Command::Immediate
                }
                super::signals::Sig::Int => {
                    tracing::info!("SIGINT: graceful shutdown");
                    Command::Drain
                }
                super::signals::Sig::Usr2 => {
                    tracing::info!("SIGUSR2: binary upgrade");
                    Command::Upgrade(None)
                }
                super::signals::Sig::Hup => {
                    ctx.hup.notify_one();
                    continue;
                }
            },
            _ = ctx.shutdown.cancelled() => return,
        };
        let l = &ctx.lifecycle;
        match cmd {
            Command::Immediate => {
                super::notify::stopping();
                ctx.shutdown.cancel();
                return;
            }
            Command::Drain if l.phase() == phase::DRAINING || l.phase() == phase::MIGRATING => {
                tracing::info!("second stop request: stopping now");
                ctx.shutdown.cancel();
                return;
            }
            Command::Drain => {
                l.phase.store(phase::DRAINING, Ordering::Release);
                super::notify::stopping();
                tokio::spawn(drain(ctx.clone(), Leave::CLOSE));
            }
            Command::Upgrade(reply) => {
                let answer = if l.phase() != phase::RUNNING {
                    Err("an upgrade or shutdown is already in progress".to_string())
                } else {
                    l.phase.store(phase::STARTING_CHILD, Ordering::Release);
                    match super::upgrade::start(&ctx).await {
                        Ok(handoff) => {
                            *l.handoff.lock() = Some(handoff);
                            l.phase.store(phase::MIGRATING, Ordering::Release);
                            tokio::spawn(drain(ctx.clone(), Leave::MIGRATE));
                            Ok(())
                        }
                        Err(e) => {
                            l.phase.store(phase::RUNNING, Ordering::Release);
                            tracing::error!("upgrade aborted, this process keeps serving: {e}");
                            Err(e)
                        }
                    }
                };
                if let Some(r) = reply {
                    let _ = r.send(answer);
                }
            }
        }
    }
}

/// Stops accepting, asks every client to `what` at its next idle point, closes idle backends
/// as they come back, and ends the process when no client is left or at `shutdown_timeout`
/// (clients still here then are asked to close once more and given a moment).
async fn drain(ctx: Arc<AppContext>, what: u8) {
    ctx.lifecycle.stop_accepting.cancel();
    // Our copies of the listening sockets go too: a shutdown must refuse new connections (an
    // upgrade's child holds its own).
    ctx.lifecycle.listen_fds.lock().clear();
    let timeout = ctx.config.general.shutdown_timeout.0;
    let deadline = tokio::time::Instant::now() + timeout;
    let in_tx = ctx
        .client_list
        .snapshot()
        .iter()
        .filter(|c| c.server_pid.load(Ordering::Relaxed) != 0)
        .count();
    tracing::info!(
        "draining: {} clients ({in_tx} in a transaction), shutdown_timeout {}",
        ctx.client_list.len(),
        crate::logging::human(timeout)
    );
    let mut next_round = tokio::time::Instant::now();
    loop {
        let now = tokio::time::Instant::now();
        if now >= next_round {
            for c in ctx.client_list.snapshot() {
                c.leave.set(what);
            }
            for p in &ctx.pools.all() {
                p.close_idle();
            }
            next_round = now + DRAIN_TICK;
        }
        if ctx.client_list.is_empty() || now >= deadline {
            break;
        }
        // The count is looked at more often than clients are asked: an upgrade of idle
        // clients ends as soon as the last one left, not at the next round.
        tokio::select! {
            _ = tokio::time::sleep(EMPTY_CHECK) => {}
            _ = ctx.shutdown.cancelled() => return,
        }
    }
    let left = ctx.client_list.len();
    if left > 0 {
        tracing::warn!("shutdown_timeout reached: closing {left} clients");
        for c in ctx.client_list.snapshot() {
            c.leave.set(Leave::CLOSE);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Lets the sender deliver every queued departure before the process ends.
    let sender = ctx.lifecycle.handoff.lock().take();
    if let Some((tx, task)) = sender {
        drop(tx);
        // Bounded, in case the new process stopped reading.
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    tracing::info!("drained");
    ctx.shutdown.cancel();
}
