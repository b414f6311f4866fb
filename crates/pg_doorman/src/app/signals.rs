//! Signals: SIGTERM/SIGINT stop the process; SIGHUP re-reads TLS certificates, keys and CA
//! bundles on both sides (a general configuration reload is not supported by this version and
//! is logged as such).

use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The handled signals, registered (their default actions replaced) but not yet watched.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

/// Registers SIGTERM, SIGINT and SIGHUP handlers now (inside the runtime). Call it before the
/// listener opens: a SIGHUP that arrives before registration would end the process (its default
/// action), and a supervisor may send one as soon as the port answers.
pub fn install() -> std::io::Result<Signals> {
    Ok(Signals {
        term: signal(SignalKind::terminate())?,
        int: signal(SignalKind::interrupt())?,
        hangup: signal(SignalKind::hangup())?,
    })
}

/// Waits for SIGTERM or SIGINT, then cancels `shutdown`; each SIGHUP wakes `hup`. Returns the
/// stopping signal's name.
pub async fn watch(mut s: Signals, shutdown: CancellationToken, hup: Arc<Notify>) -> &'static str {
    let name = loop {
        tokio::select! {
            _ = s.term.recv() => break "SIGTERM",
            _ = s.int.recv() => break "SIGINT",
            _ = s.hangup.recv() => hup.notify_one(),
            _ = shutdown.cancelled() => break "shutdown",
        }
    };
    shutdown.cancel();
    name
}
