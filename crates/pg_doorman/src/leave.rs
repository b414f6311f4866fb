//! A process's request to one client at its next idle point (drain, binary upgrade). Kept apart
//! from the client list so the relay can watch it without depending on the app.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// What a draining process asks of a client at its next idle point (between transactions,
/// holding no backend): [`Leave::STAY`], [`Leave::CLOSE`] or [`Leave::MIGRATE`]. Set by the
/// lifecycle task, which wakes the client's task; read by the client's task on every wait with
/// one atomic load. Its waker is registered once: it stays until a [`Leave::set`] takes it,
/// and a client's task never changes.
#[derive(Debug, Default)]
pub struct Leave {
    what: AtomicU8,
    waker: futures_util::task::AtomicWaker,
    /// The waker is registered (written by the client's task only).
    armed: AtomicBool,
}

impl Leave {
    /// Go on serving.
    pub const STAY: u8 = 0;
    /// Be told 58006 and closed (graceful shutdown).
    pub const CLOSE: u8 = 1;
    /// Move to the new process (binary upgrade).
    pub const MIGRATE: u8 = 2;

    /// The request in force.
    pub fn get(&self) -> u8 {
        self.what.load(Ordering::Acquire)
    }

    /// Asks `what` and wakes the client's task if it waits.
    pub fn set(&self, what: u8) {
        if self.what.swap(what, Ordering::AcqRel) != what {
            self.waker.wake();
        }
    }

    /// Ready with the request once one other than `ignored` is set; otherwise makes sure the
    /// task will be woken by [`Leave::set`]. Called by the client's own task only.
    pub fn poll(&self, cx: &mut std::task::Context<'_>, ignored: u8) -> std::task::Poll<u8> {
        let v = self.get();
        if v != Leave::STAY && v != ignored {
            return std::task::Poll::Ready(v);
        }
        // While the request is STAY no set has happened, so the waker registered before is
        // still there (the common case costs no read-modify-write). After a set (an ignored
        // MIGRATE) it was taken: register again.
        if v == Leave::STAY && self.armed.load(Ordering::Relaxed) {
            return std::task::Poll::Pending;
        }
        self.waker.register(cx.waker());
        self.armed.store(true, Ordering::Relaxed);
        // A set between the load and the registration found no waker: look again.
        match self.get() {
            v if v != Leave::STAY && v != ignored => std::task::Poll::Ready(v),
            _ => std::task::Poll::Pending,
        }
    }
}
