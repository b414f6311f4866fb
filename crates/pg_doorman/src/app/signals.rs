//! Signals: SIGTERM/SIGINT stop the process; SIGHUP re-reads TLS certificates, keys and CA
//! bundles on both sides (a general configuration reload is not supported by this version and
//! is logged as such).

use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Waits for SIGTERM or SIGINT, then cancels `shutdown`; each SIGHUP wakes `hup`. Returns the
/// stopping signal's name.
pub async fn watch(shutdown: CancellationToken, hup: Arc<Notify>) -> std::io::Result<&'static str> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let name = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            _ = hangup.recv() => hup.notify_one(),
            _ = shutdown.cancelled() => break "shutdown",
        }
    };
    shutdown.cancel();
    Ok(name)
}
