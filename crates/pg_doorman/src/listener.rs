//! Accepting clients on `general.host:port`: binds with the configured backlog, sets the TCP
//! options once on the listening socket (Linux copies them to every accepted socket, which
//! saves ~7 setsockopt calls per connection), spawns one task per client, and backs off briefly
//! when accept fails (EMFILE).

use crate::app::context::AppContext;
use crate::net::{Stream, TcpOptions};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

/// Binds the listening socket with `tcp` options. Errors name the address.
pub async fn bind(
    host: &str,
    port: u16,
    backlog: u32,
    tcp: &TcpOptions,
) -> std::io::Result<TcpListener> {
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
        if let Err(e) = tcp.apply(&socket) {
            tracing::warn!("listening socket options: {e}");
        }
        match socket.bind(addr) {
            Ok(()) => return socket.listen(backlog.max(1)),
            // The caller names host:port; the address it resolved to is added only when the
            // name was not already that address.
            Err(e) if addr.ip().to_string() == host => last = e,
            Err(e) => last = std::io::Error::new(e.kind(), format!("{addr}: {e}")),
        }
    }
    Err(last)
}

/// Accepts until the process stops accepting (drain, upgrade) or shuts down.
pub async fn serve(listener: TcpListener, ctx: Arc<AppContext>, tracker: TaskTracker) {
    // Registered once, not per accepted connection (registering and dropping each take the
    // token's lock), and polled only when no connection is waiting (biased: accept first;
    // the flags are read after every accept, so a flood cannot keep the loop from stopping).
    let (stop_token, shutdown_token) = (ctx.lifecycle.stop_accepting.clone(), ctx.shutdown.clone());
    let mut stop = std::pin::pin!(stop_token.cancelled());
    let mut shutdown = std::pin::pin!(shutdown_token.cancelled());
    loop {
        if stop_token.is_cancelled() || shutdown_token.is_cancelled() {
            return;
        }
        let accepted = tokio::select! {
            biased;
            a = listener.accept() => a,
            _ = &mut stop => return,
            _ = &mut shutdown => return,
        };
        match accepted {
            Ok((sock, peer)) => {
                let ctx = ctx.clone();
                let accepted = crate::client::startup::Accepted {
                    stream: Stream::Tcp(sock),
                    peer,
                };
                tracker.spawn(crate::client::startup::handle(ctx, Box::new(accepted)));
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_inherit_listener_options() {
        let tcp = TcpOptions {
            no_delay: true,
            keepalive_idle: 7,
            keepalive_interval: 3,
            keepalive_count: 4,
            linger: Some(0),
            user_timeout_ms: 12_000,
            buffer_size: 0,
        };
        let listener = bind("127.0.0.1", 0, 16, &tcp).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let s = socket2::SockRef::from(&accepted);
        assert!(s.tcp_nodelay().unwrap());
        assert!(s.keepalive().unwrap());
        assert_eq!(s.tcp_keepalive_time().unwrap(), Duration::from_secs(7));
        assert_eq!(s.tcp_keepalive_interval().unwrap(), Duration::from_secs(3));
        assert_eq!(s.tcp_keepalive_retries().unwrap(), 4);
        assert_eq!(s.linger().unwrap(), Some(Duration::from_secs(0)));
        assert_eq!(
            s.tcp_user_timeout().unwrap(),
            Some(Duration::from_millis(12_000))
        );
    }
}
