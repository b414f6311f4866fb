//! Accepting clients on `general.host:port` and on the unix socket `.s.PGSQL.<port>` in
//! `general.unix_socket_dir`: binds with the configured backlog, sets the TCP options once on
//! the listening socket (Linux copies them to every accepted socket, which saves ~7 setsockopt
//! calls per connection), spawns one task per client, and backs off briefly when accept fails
//! (EMFILE).

use crate::app::context::AppContext;
use crate::net::{Peer, Stream, TcpOptions};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};
use tokio_util::task::TaskTracker;

/// A listening socket clients connect to.
#[derive(Debug)]
pub enum Listener {
    /// `general.host:port`.
    Tcp(TcpListener),
    /// The unix socket; accepted sockets get SO_SNDBUF/SO_RCVBUF of this many bytes (0 = the
    /// kernel's default), as `unix_socket_buffer_size` says.
    Unix(UnixListener, u64),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<(Stream, Peer)> {
        match self {
            Listener::Tcp(l) => l
                .accept()
                .await
                .map(|(s, a)| (Stream::Tcp(s), Peer::Tcp(a))),
            Listener::Unix(l, buffers) => {
                let (s, _) = l.accept().await?;
                unix_buffers(&s, *buffers);
                Ok((Stream::Unix(s), Peer::Unix))
            }
        }
    }
}

/// Sets SO_SNDBUF and SO_RCVBUF of a unix-socket client to `bytes` (0: leaves them); a failure
/// is logged, not fatal (the connection works with the default).
pub fn unix_buffers<S: std::os::fd::AsFd>(s: &S, bytes: u64) {
    if bytes == 0 {
        return;
    }
    let sock = socket2::SockRef::from(s);
    let n = bytes.min(i32::MAX as u64) as usize;
    if let Err(e) = sock
        .set_send_buffer_size(n)
        .and(sock.set_recv_buffer_size(n))
    {
        tracing::debug!("unix socket buffers: {e}");
    }
}

/// Binds the unix socket at `path` with file mode `mode` (e.g. 0o600) and `backlog`. A file
/// left there by a process that is gone is replaced; one that a live process answers on is an
/// error (AddrInUse), as PostgreSQL refuses to start over a running server's socket.
pub fn bind_unix(path: &Path, mode: u32, backlog: u32) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{}: another process is listening on it", path.display()),
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    }
    let named =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    socket
        .bind(&socket2::SockAddr::unix(path)?)
        .map_err(named)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(named)?;
    socket
        .listen(backlog.clamp(1, i32::MAX as u32) as i32)
        .map_err(named)?;
    socket.set_nonblocking(true)?;
    UnixListener::from_std(socket.into())
}

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
pub async fn serve(listener: Listener, ctx: Arc<AppContext>, tracker: TaskTracker) {
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
            Ok((stream, peer)) => {
                let ctx = ctx.clone();
                let accepted = crate::client::startup::Accepted { stream, peer };
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
    async fn unix_socket_replaces_a_stale_file_but_not_a_live_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".s.PGSQL.6432");
        let first = bind_unix(&path, 0o640, 8).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        let e = bind_unix(&path, 0o600, 8).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
        // The listener is gone, its file stays: the next bind takes the path over.
        drop(first);
        assert!(path.exists());
        let again = bind_unix(&path, 0o600, 8).unwrap();
        let _c = tokio::net::UnixStream::connect(&path).await.unwrap();
        let (s, _) = again.accept().await.unwrap();
        unix_buffers(&s, 256 * 1024);
        let got = socket2::SockRef::from(&s).send_buffer_size().unwrap();
        // Linux doubles the value asked for (bookkeeping overhead).
        assert!(got >= 256 * 1024, "{got}");
    }

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
