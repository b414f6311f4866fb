//! Backends with a CancelRequest in flight (PgBouncer 1.18+ does the same): such a backend goes
//! back to the pool only once the cancel was delivered, so a late cancel cannot hit the query
//! of the next client that gets it.

use crate::server::Server;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Cancels in flight by backend pid, and the backend itself once its client returned it.
#[derive(Debug, Default)]
pub struct Cancels {
    list: Mutex<Vec<(i32, Option<Box<Server>>)>>,
    /// Entries in `list`: a checkin looks there only when non-zero (one load per checkin).
    count: AtomicUsize,
}

impl Cancels {
    /// A cancel for backend `pid` is being forwarded; pair with [`Cancels::done`]. SeqCst with
    /// the checkin's load and the client's release of its cancel key (client::cancel).
    pub fn start(&self, pid: i32) {
        self.list.lock().push((pid, None));
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    /// Keeps `s` aside while a cancel for it is in flight (None); gives it back otherwise.
    pub fn park(&self, s: Box<Server>) -> Option<Box<Server>> {
        if self.count.load(Ordering::SeqCst) == 0 {
            return Some(s);
        }
        let mut list = self.list.lock();
        match list
            .iter_mut()
            .find(|(pid, slot)| *pid == s.backend_pid && slot.is_none())
        {
            Some((_, slot)) => {
                *slot = Some(s);
                None
            }
            None => Some(s),
        }
    }

    /// The cancel for `pid` was delivered (or failed): returns the backend parked meanwhile.
    pub fn done(&self, pid: i32) -> Option<Box<Server>> {
        let mut list = self.list.lock();
        let i = list.iter().position(|(p, _)| *p == pid)?;
        self.count.fetch_sub(1, Ordering::SeqCst);
        list.swap_remove(i).1
    }
}
