//! CancelRequest routing (protocol §55.2.8): clients get our own (pid, secret) in
//! BackendKeyData; a cancel for it is sent, on a fresh plain socket, to the backend the client
//! holds at that moment, with that backend's real key. The keys live in the client list
//! ([`crate::app::clients::ClientList`]).

use crate::app::clients::ClientList;
use crate::pool::connect::open_socket;
use bytes::BytesMut;

/// Calls [`crate::pool::Pool::cancel_done`] however the forward ends.
struct CancelDone<'a>(&'a crate::pool::Pool, i32);

impl Drop for CancelDone<'_> {
    fn drop(&mut self) {
        self.0.cancel_done(self.1);
    }
}

/// Forwards a cancel for client `pid` if `secret` matches and it holds a backend. Unknown
/// keys are ignored silently, as PostgreSQL does; false for them (the caller may know another
/// process that has the client: an upgrade's predecessor).
pub async fn forward(clients: &ClientList, pid: i32, secret: i32) -> bool {
    let target = clients.cancel_target(pid, secret);
    let Some((key, pool)) = target else {
        tracing::debug!("cancel request with unknown key");
        return false;
    };
    if key == 0 {
        return true;
    }
    let (bpid, bsecret) = ((key >> 32) as u32 as i32, key as u32 as i32);
    // The backend is not handed to another client until the cancel is delivered.
    pool.cancel_started(bpid);
    let _done = CancelDone(&pool, bpid);
    if clients.current_key(pid) != key {
        // The client gave the backend back before the mark above: it may serve another
        // client already, whose query must not be cancelled.
        tracing::debug!("cancel request: the client's query ended first");
        return true;
    }
    let mut msg = BytesMut::with_capacity(16);
    doorman_wire::startup::write_cancel(&mut msg, bpid, bsecret);
    // A fallback connection's backend is at the Patroni member last used: the cancel goes
    // there too (a key a server does not know is ignored, protocol §55.2.8).
    let mut targets = vec![pool.settings.address.clone()];
    if let Some((host, port)) = pool.settings.fallback.as_ref().and_then(|f| f.last_host()) {
        targets.push(crate::pool::settings::ServerAddress::Tcp { host, port });
    }
    for address in &targets {
        send(address, &pool.settings, &msg, bpid).await;
    }
    true
}

/// Delivers one CancelRequest to `address` and waits (≤ 5 s) for the server to close.
async fn send(
    address: &crate::pool::settings::ServerAddress,
    settings: &crate::pool::settings::PoolSettings,
    msg: &[u8],
    bpid: i32,
) {
    match open_socket(address, settings).await {
        Ok(mut s) => {
            if let Err(e) = s.write_all(msg).await {
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
