//! Accepting clients on `general.host:port`: binds with the configured backlog, applies TCP
//! options, spawns one task per client, and backs off briefly when accept fails (EMFILE).

use crate::app::context::AppContext;
use crate::net::{Stream, TcpOptions};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

/// Binds the listening socket. Errors name the address.
pub async fn bind(host: &str, port: u16, backlog: u32) -> std::io::Result<TcpListener> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    let mut last = std::io::Error::new(
        std::io::ErrorKind::AddrNotAvailable,
        format!("{host}:{port} resolves to no address"),
    );
    for addr in addrs {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr) {
            Ok(()) => return socket.listen(backlog.max(1)),
            Err(e) => last = std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")),
        }
    }
    Err(last)
}

/// Accepts until the context's shutdown token fires.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<AppContext>,
    tcp: TcpOptions,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = ctx.shutdown.cancelled() => return,
        };
        match accepted {
            Ok((sock, peer)) => {
                if let Err(e) = tcp.apply(&sock) {
                    tracing::debug!("client {peer}: socket options: {e}");
                }
                let ctx = ctx.clone();
                tracker.spawn(crate::client::startup::handle(
                    ctx,
                    Stream::Tcp(sock),
                    peer.to_string(),
                ));
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
