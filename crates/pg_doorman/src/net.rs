//! Sockets: one [`Stream`] type over TCP, unix sockets and TLS sessions with readiness-based,
//! non-blocking I/O taking `&self`, so a relay can wait on both directions of two sockets at once
//! without splitting. Also applies the `tcp_*` socket options.

use bytes::BytesMut;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

thread_local! {
    /// Read buffers freed by this worker thread's idle clients, for the next client that reads.
    /// An idle client holds no buffer (that keeps thousands of them cheap), so every request
    /// would otherwise cost a malloc/free pair, and frees on another worker overflow the
    /// allocator's per-thread cache.
    static SPARE: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers kept per thread (of at most 4 × chunk bytes each).
const SPARE_MAX: usize = 64;

/// An empty read buffer of at least `chunk` bytes (a spare one when this thread has it).
pub fn take_buffer(chunk: usize) -> BytesMut {
    SPARE
        .with_borrow_mut(|v| v.pop())
        .filter(|b| b.capacity() >= chunk)
        .unwrap_or_else(|| BytesMut::with_capacity(chunk))
}

/// Gives back an idle client's read buffer (its contents are dropped). Buffers that grew past
/// 4 × `chunk` bytes, or that do not fit `chunk`, are freed instead.
pub fn give_buffer(mut b: BytesMut, chunk: usize) {
    b.clear();
    // Forwarded bytes were advanced past, which leaves the free space behind the cursor:
    // rewinding an empty buffer to its start needs no allocation.
    if !b.try_reclaim(chunk) || b.capacity() > 4 * chunk {
        return;
    }
    SPARE.with_borrow_mut(|v| {
        if v.len() < SPARE_MAX {
            v.push(b);
        }
    });
}

/// Where a client connected from: a TCP address, or the unix socket (PostgreSQL's `local`
/// connection type), written `[local]` as PostgreSQL writes it in its logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A TCP client at this address.
    Tcp(std::net::SocketAddr),
    /// A client on `unix_socket_dir`'s socket.
    Unix,
}

impl Peer {
    /// The spelling of a unix-socket peer.
    pub const LOCAL: &'static str = "[local]";

    /// The client's IP address; None over the unix socket.
    pub fn ip(self) -> Option<std::net::IpAddr> {
        match self {
            Peer::Tcp(a) => Some(a.ip()),
            Peer::Unix => None,
        }
    }

    /// Reads back what `Display` wrote (the upgrade hands clients over by it); None for
    /// anything else.
    pub fn parse(s: &str) -> Option<Peer> {
        if s == Self::LOCAL {
            return Some(Peer::Unix);
        }
        s.parse().ok().map(Peer::Tcp)
    }

    /// The host part alone (`10.0.0.1`, `[local]`), as PostgreSQL's pg_hba messages name it.
    pub fn host(self) -> String {
        match self {
            Peer::Tcp(a) => a.ip().to_string(),
            Peer::Unix => Self::LOCAL.to_string(),
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(a) => std::fmt::Display::fmt(&crate::logging::Addr(*a), f),
            Peer::Unix => f.write_str(Self::LOCAL),
        }
    }
}

/// A connected client or backend socket.
#[derive(Debug)]
pub enum Stream {
    /// TCP (IPv4 or IPv6).
    Tcp(TcpStream),
    /// Unix-domain socket.
    Unix(UnixStream),
    /// TLS over TCP (either side).
    Tls(Box<crate::tls::TlsConn>),
}

impl Stream {
    /// Polls read readiness without reading (no syscall).
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_read_ready(cx),
            Stream::Unix(s) => s.poll_read_ready(cx),
            Stream::Tls(s) => s.poll_read_ready(cx),
        }
    }

    /// True for a TLS session.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Sends TLS data accepted by [`Stream::try_write`] but still buffered; true when nothing is
    /// left (always for plain sockets).
    #[inline]
    pub fn flush_pending(&self) -> io::Result<bool> {
        match self {
            Stream::Tls(s) => s.flush_pending(),
            _ => Ok(true),
        }
    }

    /// Polls write readiness.
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_write_ready(cx),
            Stream::Unix(s) => s.poll_write_ready(cx),
            Stream::Tls(s) => s.poll_write_ready(cx),
        }
    }

    /// Reads into `buf`'s spare capacity (at least `chunk` / 2 bytes, else `chunk` bytes are
    /// reserved first). Unlike a `try_read`, a short read clears the cached readiness, so the next
    /// wait costs no EAGAIN syscall: that saves two syscalls per relayed transaction. `Ready(Ok(0))` is EOF.
    #[inline]
    pub fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        chunk: usize,
    ) -> Poll<io::Result<usize>> {
        if let Stream::Tls(s) = self {
            return s.poll_read_plain(cx, buf, chunk);
        }
        if buf.capacity() == 0 {
            // An idle client's given-back buffer: take one, not through the growth path.
            *buf = take_buffer(chunk);
        } else if buf.capacity() - buf.len() < (chunk / 2).max(1) {
            // Only when short of room: each reservation of a buffer the relay has advanced
            // through rewinds it (a call into `bytes`), and that happened twice per transaction.
            buf.reserve(chunk);
        }
        tokio_util::io::poll_read_buf(Pin::new(self), cx, buf)
    }

    /// One non-waiting read attempt with the same readiness handling as [`Stream::poll_read_buf`];
    /// `WouldBlock` when nothing is there.
    pub fn read_now(&mut self, buf: &mut BytesMut, chunk: usize) -> io::Result<usize> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.poll_read_buf(&mut cx, buf, chunk) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Waits until the socket may be readable (may be spurious: then a read says WouldBlock). Uses the socket's own waker slot, so the future is a few bytes: this is the
    /// state every idle client sits in.
    pub async fn readable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_read_ready(cx)).await
    }

    /// Waits until the socket may be writable.
    pub async fn writable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_write_ready(cx)).await
    }

    /// Reads what is available into `buf`. `Ok(0)` is end of stream; `WouldBlock` means nothing.
    #[inline]
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_read(buf),
            Stream::Unix(s) => s.try_read(buf),
            Stream::Tls(s) => {
                let mut b = BytesMut::new();
                let n = s.read_plain(&mut b, buf.len())?;
                buf[..n].copy_from_slice(&b[..n]);
                Ok(n)
            }
        }
    }

    /// Writes as much of `data` as the socket takes now.
    #[inline]
    pub fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_write(data),
            Stream::Unix(s) => s.try_write(data),
            Stream::Tls(s) => s.try_write(data),
        }
    }

    /// Reads at least one byte (or EOF) into `buf`, waiting as needed. Goes through
    /// [`Stream::poll_read_buf`], so a login exchange (reply sent, the peer's answer awaited)
    /// costs no EAGAIN probe: about three recv syscalls fewer per client connection.
    pub async fn read_some(&mut self, buf: &mut BytesMut, chunk: usize) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read_buf(cx, buf, chunk)).await
    }

    /// Reads one complete typed message of at most `max` bytes, consuming it from `buf`, and
    /// returns (tag, body). Used on login paths, where messages are read whole.
    ///
    /// Errors: [`ReadError::Io`] on I/O failure or end of stream (`UnexpectedEof`),
    /// [`ReadError::Wire`] for a bad length word.
    pub async fn read_message(
        &mut self,
        buf: &mut BytesMut,
        max: u32,
        chunk: usize,
    ) -> Result<(u8, BytesMut), ReadError> {
        loop {
            if let Some((h, _)) = doorman_wire::frame::complete_frame(buf, max)? {
                let mut body = buf.split_to(h.frame_len());
                bytes::Buf::advance(&mut body, doorman_wire::HEADER_LEN);
                return Ok((h.tag, body));
            }
            if self.read_some(buf, chunk).await? == 0 {
                return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Sends `e` as a FATAL ErrorResponse and, once it is written, half-closes the socket so
    /// the client can read it before the connection goes (a reset could destroy it unread).
    /// The caller closes the socket.
    pub async fn send_fatal(&self, mut e: doorman_wire::ErrorFields) {
        e.severity = doorman_wire::fields::Severity::Fatal;
        let mut out = BytesMut::with_capacity(128);
        e.write(&mut out);
        if self.write_all(&out).await.is_ok() {
            let _ = self.close_with_fin();
        }
    }

    /// Writes all of `data`, waiting as needed.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match self.try_write(data) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) => return Err(e),
            }
        }
        while !self.flush_pending()? {
            self.writable().await?;
        }
        Ok(())
    }

    /// Makes the coming close a FIN, not a reset: clears the SO_LINGER 0 that accepted
    /// sockets inherit from the listener (`tcp_so_linger`). Used where the peer waits for end
    /// of stream as the answer, such as a CancelRequest (libpq 17's PQcancelBlocking reports a
    /// reset as "server closed the connection unexpectedly", protocol §55.2.8), or must read
    /// the FATAL just written before the socket goes. Stops writing (TLS: after close_notify);
    /// errors when the socket is no longer connected.
    pub fn close_with_fin(&self) -> io::Result<()> {
        let tcp = match self {
            Stream::Tcp(s) => s,
            Stream::Tls(t) => {
                t.close();
                t.tcp()
            }
            Stream::Unix(s) => {
                return socket2::SockRef::from(s).shutdown(std::net::Shutdown::Write);
            }
        };
        let sock = socket2::SockRef::from(tcp);
        let _ = sock.set_linger(None);
        sock.shutdown(std::net::Shutdown::Write)
    }

    /// Ends a connection the pooler is closing on a peer that may still be sending: stops
    /// writing ([`Stream::close_with_fin`]) and reads and discards what arrives until end of
    /// stream, `max_bytes` or `max_wait`. Closing with unread input makes the kernel send a
    /// reset, which can destroy the FATAL just written before the peer reads it (a client in
    /// the middle of sending an oversized message).
    pub async fn linger(&self, max_wait: std::time::Duration, max_bytes: usize) {
        if self.close_with_fin().is_err() {
            return;
        }
        let drain = async {
            let mut scratch = [0u8; 8192];
            let mut left = max_bytes;
            while left > 0 {
                match self.try_read(&mut scratch) {
                    Ok(0) => return,
                    Ok(n) => left = left.saturating_sub(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if self.readable().await.is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        };
        let _ = tokio::time::timeout(max_wait, drain).await;
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => {
                let mut b = BytesMut::new();
                let n = std::task::ready!(s.poll_read_plain(cx, &mut b, buf.remaining()))?;
                buf.put_slice(&b[..n]);
                Poll::Ready(Ok(()))
            }
        }
    }
}

/// Why [`Stream::read_message`] returned no message.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The socket failed or the peer closed it.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The peer sent a malformed header.
    #[error(transparent)]
    Wire(#[from] doorman_wire::WireError),
}

/// TCP options from `general.tcp_*` (COMPAT.md §1.1).
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpOptions {
    /// TCP_NODELAY.
    pub no_delay: bool,
    /// Keepalive idle seconds (0 = leave keepalive off).
    pub keepalive_idle: u64,
    /// Keepalive interval seconds.
    pub keepalive_interval: u64,
    /// Keepalive probes.
    pub keepalive_count: u32,
    /// SO_LINGER seconds; negative leaves the default.
    pub linger: Option<u64>,
    /// TCP_USER_TIMEOUT milliseconds; 0 = off.
    pub user_timeout_ms: u64,
    /// SO_SNDBUF/SO_RCVBUF bytes; 0 = kernel autotuning.
    pub buffer_size: u64,
}

impl TcpOptions {
    /// Applies the options; failures are returned so the caller can log them (a socket option
    /// that does not apply is not a reason to drop a connection).
    pub fn apply<S: std::os::fd::AsFd>(&self, s: &S) -> io::Result<()> {
        use std::time::Duration;
        let sock = socket2::SockRef::from(s);
        sock.set_tcp_nodelay(self.no_delay)?;
        if self.keepalive_idle > 0 {
            let mut ka =
                socket2::TcpKeepalive::new().with_time(Duration::from_secs(self.keepalive_idle));
            if self.keepalive_interval > 0 {
                ka = ka.with_interval(Duration::from_secs(self.keepalive_interval));
            }
            if self.keepalive_count > 0 {
                ka = ka.with_retries(self.keepalive_count);
            }
            sock.set_tcp_keepalive(&ka)?;
        }
        if let Some(secs) = self.linger {
            sock.set_linger(Some(Duration::from_secs(secs)))?;
        }
        if self.user_timeout_ms > 0 {
            sock.set_tcp_user_timeout(Some(Duration::from_millis(self.user_timeout_ms)))?;
        }
        if self.buffer_size > 0 {
            sock.set_send_buffer_size(self.buffer_size as usize)?;
            sock.set_recv_buffer_size(self.buffer_size as usize)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod spare_tests {
    use super::*;

    #[test]
    fn idle_buffers_are_reused_on_the_same_thread_and_big_ones_freed() {
        use bytes::Buf;
        let mut b = take_buffer(1024);
        let at = b.as_ptr();
        b.extend_from_slice(b"Q\0\0\0\x0dSELECT 1\0");
        // Forwarded, as the relay does: the cursor moves past the bytes.
        b.advance(b.len());
        let spares = || SPARE.with_borrow(|v| v.len());
        let before = spares();
        give_buffer(b, 1024);
        assert_eq!(spares(), before + 1, "a consumed buffer is kept");
        let again = take_buffer(1024);
        assert!(again.is_empty());
        assert!(again.capacity() >= 1024);
        assert_eq!(again.as_ptr(), at, "the given-back buffer is reused");
        give_buffer(BytesMut::with_capacity(64 * 1024), 1024);
        let fresh = take_buffer(1024);
        assert!(fresh.capacity() < 64 * 1024, "a grown buffer is not kept");
    }
}
