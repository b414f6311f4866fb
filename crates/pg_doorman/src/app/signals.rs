//! The only signal handler: turns SIGTERM/SIGINT into shutdown and acknowledges SIGHUP.
//! (Reload and binary upgrade arrive with the signals issue; SIGHUP must not kill us meanwhile.)

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Waits for SIGTERM or SIGINT, then cancels `shutdown`. Returns the signal's name.
pub async fn watch(shutdown: CancellationToken) -> std::io::Result<&'static str> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let name = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            _ = hup.recv() => tracing::warn!("SIGHUP received: configuration reload is not supported by this version; the running configuration is unchanged"),
            _ = shutdown.cancelled() => break "shutdown",
        }
    };
    shutdown.cancel();
    Ok(name)
}
