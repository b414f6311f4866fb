//! A TLS session over a TCP socket, driven by socket readiness like the plain [`crate::net::Stream`]
//! variants: reads and writes never wait, so the relay keeps one code path. The rustls state sits
//! behind a per-connection mutex (never contended: one task owns the connection) because the
//! stream's write side takes `&self`.
//!
//! Plaintext accepted by [`TlsConn::try_write`] may still sit encrypted in rustls' buffer when
//! the socket is full; [`TlsConn::flush_pending`] pushes it out, and the relay and `write_all`
//! call it until it is gone.

use bytes::BytesMut;
use parking_lot::Mutex;
use std::io::{self, Read, Write};
use std::task::{Context, Poll};
use tokio::net::TcpStream;

/// Bytes of ciphertext rustls buffers for sending before `try_write` refuses more plaintext.
const SEND_LIMIT: usize = 256 * 1024;

struct State {
    conn: rustls::Connection,
    /// Decrypted bytes waiting in rustls.
    plain: usize,
    /// The peer closed (close_notify or EOF).
    eof: bool,
}

/// An established TLS session.
pub struct TlsConn {
    tcp: TcpStream,
    state: Mutex<State>,
}

impl std::fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConn").field("tcp", &self.tcp).finish()
    }
}

/// `io::Read`/`io::Write` over a tokio socket without waiting (WouldBlock when not ready).
struct TryIo<'a>(&'a TcpStream);

impl Read for TryIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for TryIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Runs a handshake to completion over `tcp`, feeding `early` (bytes already read from the
/// socket, e.g. a direct-TLS ClientHello) first.
async fn handshake(
    tcp: &TcpStream,
    conn: &mut rustls::Connection,
    mut early: &[u8],
) -> io::Result<()> {
    let bad = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
    while !early.is_empty() {
        conn.read_tls(&mut early)?;
        if let Err(e) = conn.process_new_packets() {
            let _ = conn.write_tls(&mut TryIo(tcp));
            return Err(bad(e));
        }
    }
    loop {
        while conn.wants_write() {
            match conn.write_tls(&mut TryIo(tcp)) {
                Ok(_) => {}
                Err(e) if would_block(&e) => tcp.writable().await?,
                Err(e) => return Err(e),
            }
        }
        if !conn.is_handshaking() {
            return Ok(());
        }
        match conn.read_tls(&mut TryIo(tcp)) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {
                if let Err(e) = conn.process_new_packets() {
                    let _ = conn.write_tls(&mut TryIo(tcp));
                    return Err(bad(e));
                }
            }
            Err(e) if would_block(&e) => tcp.readable().await?,
            Err(e) => return Err(e),
        }
    }
}

impl TlsConn {
    /// Server side: completes a handshake with a client (`early`: bytes of it already read).
    pub async fn accept(
        tcp: TcpStream,
        config: std::sync::Arc<rustls::ServerConfig>,
        early: &[u8],
    ) -> io::Result<TlsConn> {
        let conn = rustls::ServerConnection::new(config)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let mut conn = rustls::Connection::from(conn);
        handshake(&tcp, &mut conn, early).await?;
        TlsConn::new(tcp, conn)
    }

    /// Client side: completes a handshake with a backend named `name` (host name or IP, checked
    /// when the configuration verifies names).
    pub async fn connect(
        tcp: TcpStream,
        config: std::sync::Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<TlsConn> {
        let conn = rustls::ClientConnection::new(config, name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let mut conn = rustls::Connection::from(conn);
        handshake(&tcp, &mut conn, &[]).await?;
        TlsConn::new(tcp, conn)
    }

    /// Wraps a session whose handshake is complete (data that arrived with the handshake stays
    /// buffered in `conn`).
    pub fn new(tcp: TcpStream, conn: impl Into<rustls::Connection>) -> io::Result<Self> {
        let mut conn: rustls::Connection = conn.into();
        conn.set_buffer_limit(Some(SEND_LIMIT));
        let io = conn
            .process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(TlsConn {
            tcp,
            state: Mutex::new(State {
                plain: io.plaintext_bytes_to_read(),
                eof: io.peer_has_closed(),
                conn,
            }),
        })
    }

    /// The socket underneath (socket options, peer address).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The negotiated ALPN protocol.
    pub fn alpn(&self) -> Option<Vec<u8>> {
        self.state.lock().conn.alpn_protocol().map(<[u8]>::to_vec)
    }

    /// True when decrypted bytes are waiting (a read would not block).
    pub fn has_plaintext(&self) -> bool {
        let s = self.state.lock();
        s.plain > 0 || s.eof
    }

    /// Reads decrypted bytes into `buf` (at most `chunk`), pulling records from the socket as
    /// needed. `Ok(0)` is the end of the session; `WouldBlock` when nothing is there.
    pub fn read_plain(&self, buf: &mut BytesMut, chunk: usize) -> io::Result<usize> {
        let mut s = self.state.lock();
        loop {
            if s.plain > 0 {
                let want = s.plain.min(chunk.max(1));
                let start = buf.len();
                buf.resize(start + want, 0);
                let n = match s.conn.reader().read(&mut buf[start..]) {
                    Ok(n) => n,
                    Err(e) => {
                        buf.truncate(start);
                        return Err(e);
                    }
                };
                buf.truncate(start + n);
                s.plain -= n.min(s.plain);
                if n > 0 {
                    return Ok(n);
                }
                s.plain = 0;
            }
            if s.eof {
                return Ok(0);
            }
            match s.conn.read_tls(&mut TryIo(&self.tcp)) {
                Ok(0) => s.eof = true,
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            match s.conn.process_new_packets() {
                Ok(io) => {
                    s.plain = io.plaintext_bytes_to_read();
                    s.eof |= io.peer_has_closed();
                }
                Err(e) => {
                    // Tell the peer why (an alert), then fail.
                    let _ = s.conn.write_tls(&mut TryIo(&self.tcp));
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
            if s.conn.wants_write() {
                // Post-handshake messages (key updates, tickets): best effort now, the rest with
                // the next write.
                let _ = s.conn.write_tls(&mut TryIo(&self.tcp));
            }
        }
    }

    /// Like [`TlsConn::read_plain`], registering for wake-up when nothing is there.
    pub fn poll_read_plain(
        &self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        chunk: usize,
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.read_plain(buf, chunk) {
                Err(e) if would_block(&e) => {
                    std::task::ready!(self.tcp.poll_read_ready(cx))?;
                }
                other => return Poll::Ready(other),
            }
        }
    }

    /// Polls until decrypted bytes may be there (spurious readiness is possible).
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.has_plaintext() {
            return Poll::Ready(Ok(()));
        }
        self.tcp.poll_read_ready(cx)
    }

    /// Polls until the socket may take more ciphertext.
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_write_ready(cx)
    }

    /// Encrypts as much of `data` as rustls takes now and sends what the socket takes.
    /// `WouldBlock` when earlier ciphertext is still waiting for the socket.
    pub fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        let mut s = self.state.lock();
        if !Self::flush_locked(&self.tcp, &mut s)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = s.conn.writer().write(data)?;
        if n == 0 && !data.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Self::flush_locked(&self.tcp, &mut s)?;
        Ok(n)
    }

    fn flush_locked(tcp: &TcpStream, s: &mut State) -> io::Result<bool> {
        while s.conn.wants_write() {
            match s.conn.write_tls(&mut TryIo(tcp)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if would_block(&e) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Sends ciphertext that is still buffered; true when nothing is left.
    pub fn flush_pending(&self) -> io::Result<bool> {
        let mut s = self.state.lock();
        Self::flush_locked(&self.tcp, &mut s)
    }

    /// True when ciphertext waits for the socket.
    pub fn has_pending(&self) -> bool {
        self.state.lock().conn.wants_write()
    }

    /// Sends close_notify if the socket takes it now (never waits).
    pub fn close(&self) {
        let mut s = self.state.lock();
        s.conn.send_close_notify();
        let _ = Self::flush_locked(&self.tcp, &mut s);
    }
}
