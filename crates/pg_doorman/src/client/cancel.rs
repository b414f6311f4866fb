//! CancelRequest routing (protocol §55.2.8): clients get our own (pid, secret) in
//! BackendKeyData; a cancel for it is sent, on a fresh plain socket, to the backend the client
//! holds at that moment, with that backend's real key.

use crate::pool::Pool;
use crate::server::connect::open_socket;
use bytes::BytesMut;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// The backend key a client currently holds: `(pid << 32) | secret`, 0 when it holds none.
pub type CancelSlot = AtomicU64;

struct Entry {
    secret: i32,
    slot: Arc<CancelSlot>,
    pool: Arc<Pool>,
}

/// Every logged-in client's cancel key. Touched at login, logout and cancel only.
#[derive(Default)]
pub struct CancelRegistry {
    map: Mutex<HashMap<i32, Entry>>,
    next_pid: AtomicI32,
}

/// Removes the client from the registry when dropped.
pub struct Registration<'a> {
    registry: &'a CancelRegistry,
    /// Process id given to the client.
    pub pid: i32,
    /// Secret key given to the client.
    pub secret: i32,
    /// Slot the session updates on checkout/checkin.
    pub slot: Arc<CancelSlot>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.registry.map.lock().remove(&self.pid);
    }
}

impl CancelRegistry {
    /// Registers a client of `pool`, returning its BackendKeyData values.
    pub fn register(&self, pool: Arc<Pool>) -> Registration<'_> {
        let slot = Arc::new(CancelSlot::new(0));
        let secret: i32 = rand::random();
        let mut map = self.map.lock();
        let pid = loop {
            // Positive ids like PostgreSQL's pids, skipping any still in use after wrap-around.
            let pid = self
                .next_pid
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_add(1)
                & 0x7fff_ffff;
            if pid != 0 && !map.contains_key(&pid) {
                break pid;
            }
        };
        map.insert(
            pid,
            Entry {
                secret,
                slot: slot.clone(),
                pool,
            },
        );
        Registration {
            registry: self,
            pid,
            secret,
            slot,
        }
    }

    /// Forwards a cancel for client `pid` if `secret` matches and it holds a backend.
    /// Unknown keys are ignored silently, as PostgreSQL does.
    pub async fn cancel(&self, pid: i32, secret: i32) {
        let target = {
            let map = self.map.lock();
            map.get(&pid)
                .filter(|e| {
                    doorman_wire::auth::ct_eq(&e.secret.to_be_bytes(), &secret.to_be_bytes())
                })
                .map(|e| (e.slot.load(Ordering::Acquire), e.pool.clone()))
        };
        let Some((key, pool)) = target else {
            tracing::debug!("cancel request with unknown key ignored");
            return;
        };
        if key == 0 {
            return;
        }
        let (bpid, bsecret) = ((key >> 32) as u32 as i32, key as u32 as i32);
        let mut msg = BytesMut::with_capacity(16);
        doorman_wire::startup::write_cancel(&mut msg, bpid, bsecret);
        match open_socket(&pool.settings.address, &pool.settings).await {
            Ok(s) => {
                if let Err(e) = s.write_all(&msg).await {
                    tracing::warn!("cancel request to backend failed: {e}");
                } else {
                    tracing::debug!(backend_pid = bpid, "cancel request forwarded");
                    // Wait for the backend to close so the cancel is processed before we return.
                    let mut sink = BytesMut::new();
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        s.read_some(&mut sink, 64),
                    )
                    .await;
                }
            }
            Err(e) => tracing::warn!("cancel request: cannot reach backend: {e}"),
        }
    }
}
