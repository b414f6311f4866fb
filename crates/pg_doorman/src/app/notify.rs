//! systemd notifications (sd_notify, `Type=notify` units): READY=1 once the listener is up,
//! RELOADING=1 … READY=1 around a SIGHUP reload, MAINPID=<child> when an upgrade hands over,
//! STOPPING=1 when a drain begins. Without `NOTIFY_SOCKET` every call does nothing.

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("sd_notify failed: {e}");
    }
}

/// The listener is up and pools are built.
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// A configuration reload begins (systemd ≥ 253 wants the monotonic time with it).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// A graceful drain (shutdown) begins.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// The upgrade's new process `pid` serves now: systemd follows it as the main process.
pub fn main_pid(pid: u32) {
    send(&[NotifyState::MainPid(pid), NotifyState::Ready]);
}
