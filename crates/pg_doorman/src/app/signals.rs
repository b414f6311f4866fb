//! Signals (seed 002, issue 17): SIGHUP reloads; SIGTERM drains gracefully; SIGINT stops at
//! once on a terminal and drains without one; SIGUSR2 upgrades the binary. What each does is
//! decided by [`super::lifecycle::control`].

use tokio::signal::unix::{SignalKind, signal};

/// The handled signals, registered (their default actions replaced).
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

/// A received signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// SIGTERM.
    Term,
    /// SIGINT.
    Int,
    /// SIGHUP.
    Hup,
    /// SIGUSR2.
    Usr2,
}

/// Registers the handlers now (inside the runtime). Call it before the listener opens: a
/// SIGHUP or SIGUSR2 that arrives before registration would end the process (the default
/// action), and a supervisor may send one as soon as the port answers.
pub fn install() -> std::io::Result<Signals> {
    Ok(Signals {
        term: signal(SignalKind::terminate())?,
        int: signal(SignalKind::interrupt())?,
        hangup: signal(SignalKind::hangup())?,
        usr2: signal(SignalKind::user_defined2())?,
    })
}

impl Signals {
    /// The next signal.
    pub async fn next(&mut self) -> Sig {
        tokio::select! {
            _ = self.term.recv() => Sig::Term,
            _ = self.int.recv() => Sig::Int,
            _ = self.hangup.recv() => Sig::Hup,
            _ = self.usr2.recv() => Sig::Usr2,
        }
    }
}
