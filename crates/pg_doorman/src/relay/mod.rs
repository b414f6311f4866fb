//! The hot path: moves frames between a client and its backend without decoding what the
//! pooler does not act on. Each direction keeps a scan position: bytes before it are whole or
//! streamed frames ready to forward; a frame larger than what is buffered is forwarded in
//! pieces (`skip` counts its remaining bytes), so big DataRow/CopyData never sit whole in memory.
//! Only ReadyForQuery, ParameterStatus and ErrorResponse bodies are read. No allocation per
//! message; one write per batch of frames.

//!
//! The protocol state of the backend is its [`Conversation`] (owned by the connection and
//! written only by the two scans here); what the pooler notes about the client meanwhile is the
//! [`Attachment`]. This module depends on no pool, server or client code: the caller lends it
//! the sockets and buffers ([`Backend`], [`ClientIo`]).

mod attachment;
pub mod client_scan;
mod conversation;
mod deallocate;
mod scan;
pub mod server_scan;
pub mod stream_check;
pub mod tally;

pub use attachment::Attachment;
pub use client_scan::{Prep, inject_closes, scan_client};
pub use conversation::{Conversation, Copy, Expect, Synth, TxStatus};
pub use scan::Scan;
pub use server_scan::scan_server;

use crate::leave::Leave;
use crate::net::Stream;
use crate::params::ParamSet;
use bytes::{Buf, BytesMut};
use doorman_wire::WireError;
use doorman_wire::frontend::{is_session_tag, max_len};
use std::io;
use std::task::{Context, Poll};

/// Initial read buffer of a backend connection (bytes). Large rows are streamed, not buffered.
pub const READ_CHUNK: usize = 16 * 1024;

/// Stop reading a side when this many bytes wait to be forwarded (backpressure), bytes.
const HIGH_WATER: usize = 256 * 1024;
/// First read size for client sockets, bytes: small enough for the allocator's per-thread
/// cache (glibc tcache ≤ 1032 bytes), since an idle client's buffer is freed and reallocated
/// per request. Larger requests grow the buffer geometrically.
pub const CLIENT_CHUNK: usize = 1024;

/// A client's socket and input buffer.
#[derive(Debug)]
pub struct ClientIo {
    /// The socket.
    pub stream: Stream,
    /// Bytes read from the client and not yet forwarded.
    pub buf: BytesMut,
    /// Scan state of `buf`; persists between transactions.
    pub scan: Scan,
}

/// A backend connection as the relay uses it, borrowed from its owner for one relay.
pub struct Backend<'a> {
    /// The socket.
    pub stream: &'a mut Stream,
    /// Bytes read from the backend and not yet relayed.
    pub buf: &'a mut BytesMut,
    /// Values the backend reported with ParameterStatus.
    pub params: &'a mut ParamSet,
    /// Its protocol state.
    pub conv: &'a mut Conversation,
}

/// How a relay ended.
#[derive(Debug)]
pub enum Outcome {
    /// ReadyForQuery 'I' with nothing outstanding: the backend may go back to the pool.
    Released,
    /// The client sent Terminate.
    Terminated,
    /// The client closed its socket or failed.
    ClientGone,
    /// The client took none of the reply for `proxy_copy_data_timeout`.
    ClientStalled,
    /// The client broke the protocol.
    ClientProtocol(WireError),
    /// A client message that must be read whole would pass `max_memory_usage`.
    OverMemory,
    /// The backend closed, failed, or broke the protocol.
    ServerGone(io::Error),
    /// Idle between transactions while keeping its backend, the client was asked to leave
    /// (a drain: it is told 58006).
    Leave,
}

/// Client-side parameter view updated from ParameterStatus.
pub struct ParamSink<'a> {
    /// The client's expected values of tracked parameters.
    pub wanted: &'a mut ParamSet,
    /// Log changes (pool option `log_client_parameter_status_changes`).
    pub log: bool,
    /// The client's "pinned" mark (SHOW POOLS cl_pinned), kept in line with `Attachment::pins`.
    pub pinned: Option<&'a std::sync::atomic::AtomicBool>,
    /// The client's leave request (a drain), given in session mode only (a client keeps its
    /// backend between transactions there): it is let go when it is idle on it.
    pub leave: Option<&'a Leave>,
    /// `proxy_copy_data_timeout`: how long a client that takes none of the reply waiting for
    /// it may stall the backend; None = forever.
    pub stall_limit: Option<std::time::Duration>,
}

/// Rejects message types a client may not send and lengths over the type's cap.
pub(crate) fn check_client_frame(h: &doorman_wire::FrameHeader) -> Result<(), WireError> {
    if !is_session_tag(h.tag) {
        return Err(WireError::UnknownTag(h.tag));
    }
    if h.len > max_len(h.tag) {
        return Err(WireError::BadLength {
            tag: h.tag,
            len: h.len,
            max: max_len(h.tag),
        });
    }
    Ok(())
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Writes the ready prefix of `buf`; returns Ok(true) when it all went.
#[inline]
fn flush(stream: &Stream, buf: &mut BytesMut, sc: &mut Scan) -> io::Result<bool> {
    while sc.ready > 0 {
        match stream.try_write(&buf[..sc.ready]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf.advance(n);
                sc.ready -= n;
            }
            Err(e) if would_block(&e) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    // TLS: ciphertext the socket did not take yet.
    stream.flush_pending()
}

/// Relays between `client` and `server` until the release point (when `release_on_idle`),
/// Terminate, or either side failing. Never panics on peer input.
pub async fn relay(
    client: &mut ClientIo,
    server: Backend<'_>,
    at: &mut Attachment,
    release_on_idle: bool,
    sink: &mut ParamSink<'_>,
    mut prep: Option<&mut Prep<'_>>,
) -> Outcome {
    let Backend {
        stream: server_stream,
        buf: server_buf,
        params: server_params,
        conv,
    } = server;
    if prep.is_some() {
        inject_closes(&mut client.buf, &mut client.scan, conv);
    }
    loop {
        // Client → server.
        if !at.released {
            at.need_frame = false;
            let scanned = scan_client(
                &mut client.buf,
                &mut client.scan,
                at,
                conv,
                prep.as_deref_mut(),
            );
            if let Err(e) = scanned {
                return Outcome::ClientProtocol(e);
            }
            if at.over_memory {
                return Outcome::OverMemory;
            }
            if at.pins_changed {
                at.pins_changed = false;
                if let Some(flag) = sink.pinned {
                    flag.store(at.pins.any(), std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        let before = client.scan.ready;
        let to_server_blocked = match flush(server_stream, &mut client.buf, &mut client.scan) {
            Ok(done) => !done,
            Err(e) => return Outcome::ServerGone(e),
        };
        at.tally.received += (before - client.scan.ready) as u64;
        if at.terminated && client.scan.ready == 0 {
            return Outcome::Terminated;
        }
        // Server → client.
        if let Err(e) = scan_server(server_buf, server_params, conv, at, release_on_idle, sink) {
            return Outcome::ServerGone(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        // Made-up replies alone wait for the backend's next bytes while more are expected, so
        // a cached Parse costs no extra write to the client.
        let hold = conv.synth_only && !conv.expect.is_empty();
        let before = conv.scan.ready;
        let to_client_blocked = if hold {
            false
        } else {
            match flush(&client.stream, server_buf, &mut conv.scan) {
                Ok(done) => !done,
                Err(_) => return Outcome::ClientGone,
            }
        };
        at.tally.sent += (before - conv.scan.ready) as u64;
        if at.released && !to_client_blocked {
            return Outcome::Released;
        }
        let read_client =
            !at.released && !at.terminated && (client.buf.len() < HIGH_WATER || at.need_frame);
        let read_server = !at.released && server_buf.len() < HIGH_WATER;
        let want = Want {
            read_server,
            read_client,
            to_server_blocked,
            to_client_blocked,
        };
        // Only a client that keeps its backend between transactions (session mode), idle on
        // it, hears a drain here; the others hear it while they hold no backend.
        let leave = sink.leave.filter(|_| {
            !to_server_blocked && !to_client_blocked && client.buf.is_empty() && conv.is_reusable()
        });
        let wait = std::future::poll_fn(|cx| {
            poll_event(
                cx,
                client,
                (&mut *server_stream, &mut *server_buf),
                want,
                leave,
            )
        });
        // The timer exists only while the client's socket is full (rare): the common wait
        // costs none.
        let event = match sink.stall_limit {
            Some(limit) if to_client_blocked => match tokio::time::timeout(limit, wait).await {
                Ok(e) => e,
                Err(_) => return Outcome::ClientStalled,
            },
            _ => wait.await,
        };
        match event {
            Event::Leave => return Outcome::Leave,
            Event::ServerRead(Ok(0)) => {
                return Outcome::ServerGone(io::ErrorKind::UnexpectedEof.into());
            }
            Event::ServerRead(Err(e)) | Event::ServerWritable(Err(e)) => {
                return Outcome::ServerGone(e);
            }
            Event::ClientRead(Ok(0) | Err(_)) | Event::ClientWritable(Err(_)) => {
                return Outcome::ClientGone;
            }
            _ => {}
        }
    }
}

/// What the relay waits for.
#[derive(Clone, Copy)]
struct Want {
    read_server: bool,
    read_client: bool,
    to_server_blocked: bool,
    to_client_blocked: bool,
}

/// What happened while waiting.
enum Event {
    Leave,
    ServerRead(io::Result<usize>),
    ClientRead(io::Result<usize>),
    ServerWritable(io::Result<()>),
    ClientWritable(io::Result<()>),
}

/// One poll over both sockets, server first (its replies end a transaction). Reads go through
/// `poll_read_buf`, whose short reads clear readiness: no EAGAIN syscalls per transaction.
/// `leave`: a drain's request to watch last (session mode, idle on the backend).
fn poll_event(
    cx: &mut Context<'_>,
    client: &mut ClientIo,
    (server_stream, server_buf): (&mut Stream, &mut BytesMut),
    want: Want,
    leave: Option<&Leave>,
) -> Poll<Event> {
    if want.read_server
        && let Poll::Ready(r) = server_stream.poll_read_buf(cx, server_buf, READ_CHUNK)
    {
        return Poll::Ready(Event::ServerRead(r));
    }
    if want.read_client
        && let Poll::Ready(r) = client
            .stream
            .poll_read_buf(cx, &mut client.buf, CLIENT_CHUNK)
    {
        return Poll::Ready(Event::ClientRead(r));
    }
    if want.to_server_blocked
        && let Poll::Ready(r) = server_stream.poll_write_ready(cx)
    {
        return Poll::Ready(Event::ServerWritable(r));
    }
    if want.to_client_blocked
        && let Poll::Ready(r) = client.stream.poll_write_ready(cx)
    {
        return Poll::Ready(Event::ClientWritable(r));
    }
    if let Some(l) = leave
        && l.poll(cx, Leave::MIGRATE).is_ready()
    {
        return Poll::Ready(Event::Leave);
    }
    Poll::Pending
}

/// Frames of the given types and bodies, back to back (the scans' unit tests).
#[cfg(test)]
pub(crate) fn test_frames(parts: &[(u8, &[u8])]) -> Vec<u8> {
    let mut v = Vec::new();
    for (t, body) in parts {
        v.push(*t);
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
    }
    v
}
