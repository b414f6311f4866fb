//! The TCP side: a port's accept loop and the byte relay of each connection to the member
//! its routing table picks (least connections). Bytes are relayed as they are; the proxy
//! does not read the PostgreSQL protocol.

use crate::routes::{Routes, lease};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Binds `addr` now (so a bad address is an error to report) and accepts until `stop`.
/// Errors: the bind failed.
pub fn listen(
    routes: Arc<Routes>,
    addr: SocketAddr,
    stop: CancellationToken,
    connect_timeout: Duration,
) -> std::io::Result<()> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    let listener = TcpListener::from_std(socket.into())?;
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.cancelled() => return,
            };
            match accepted {
                Ok((client, peer)) => {
                    tokio::spawn(serve(routes.clone(), client, peer, connect_timeout));
                }
                Err(e) => {
                    // EMFILE and the like: wait instead of spinning on the error.
                    tracing::warn!(cluster = %routes.cluster, port = %routes.name, "accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(())
}

async fn serve(routes: Arc<Routes>, mut client: TcpStream, peer: SocketAddr, timeout: Duration) {
    let candidates = routes.candidates();
    if candidates.is_empty() {
        routes.stats.refused.fetch_add(1, Ordering::Relaxed);
        let roles = routes.config.lock().roles.describe();
        tracing::warn!(cluster = %routes.cluster, port = %routes.name, "no member qualifies for roles [{roles}]: connection from {peer} refused");
        return;
    }
    let _ = client.set_nodelay(true);
    for b in candidates {
        let held = lease(&b);
        let connect = TcpStream::connect((b.host.as_str(), b.port));
        let mut server = match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                routes.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(cluster = %routes.cluster, port = %routes.name, member = %b.member, "connect to {}:{}: {e}", b.host, b.port);
                continue;
            }
            Err(_) => {
                routes.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(cluster = %routes.cluster, port = %routes.name, member = %b.member, "connect to {}:{}: no answer within {timeout:?}", b.host, b.port);
                continue;
            }
        };
        let _ = server.set_nodelay(true);
        tracing::debug!(cluster = %routes.cluster, port = %routes.name, member = %b.member, "{peer} connected");
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client, &mut server) => {
                if let Err(e) = r {
                    tracing::debug!(cluster = %routes.cluster, port = %routes.name, member = %b.member, "{peer}: {e}");
                }
            }
            _ = b.close.cancelled() => {
                tracing::info!(cluster = %routes.cluster, port = %routes.name, member = %b.member, "closing the connection from {peer}: the member no longer qualifies");
            }
        }
        drop(held);
        return;
    }
    tracing::warn!(cluster = %routes.cluster, port = %routes.name, "every qualifying member refused: connection from {peer} closed");
}
