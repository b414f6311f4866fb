//! The hot path: moves frames between a client and its backend without decoding what the
//! pooler does not act on. Each direction keeps a scan position: bytes before it are whole or
//! streamed frames ready to forward; a frame larger than what is buffered is forwarded in
//! pieces (`skip` counts its remaining bytes), so big DataRow/CopyData never sit whole in memory.
//! Only ReadyForQuery, ParameterStatus and ErrorResponse bodies are read. No allocation per
//! message; one write per batch of frames.

use crate::net::Stream;
use crate::params::{ParamSet, tracked_name};
use crate::prepared::{self, Prep, Reply, ServerPrepared};
use crate::server::{READ_CHUNK, Server};
use bytes::{Buf, BytesMut};
use doorman_wire::WireError;
use doorman_wire::backend::{parse_parameter_status, tag};
use doorman_wire::frame::{MAX_MESSAGE_LEN, peek_header};
use doorman_wire::frontend::{is_session_tag, max_len};
use std::io;
use std::task::{Context, Poll};

/// Stop reading a side when this many bytes wait to be forwarded (backpressure), bytes.
const HIGH_WATER: usize = 256 * 1024;
/// First read size for client sockets, bytes: small enough for the allocator's per-thread
/// cache (glibc tcache ≤ 1032 bytes), since an idle client's buffer is freed and reallocated
/// per request. Larger requests grow the buffer geometrically.
pub const CLIENT_CHUNK: usize = 1024;

/// Scan position of one direction.
#[derive(Debug, Default, Clone, Copy)]
pub struct Scan {
    /// Bytes at the front of the buffer that may be forwarded.
    pub ready: usize,
    /// Bytes of the current frame still to come (streamed through unread).
    pub skip: usize,
}

impl Scan {
    /// Moves past bytes of a frame already being streamed, then reads the next header.
    /// `Ok(None)` means the buffer holds no further complete header.
    #[inline]
    pub(crate) fn next_header(
        &mut self,
        buf: &[u8],
    ) -> Result<Option<doorman_wire::FrameHeader>, WireError> {
        if !self.finish_skip(buf) {
            return Ok(None);
        }
        match buf.get(self.ready..) {
            Some(rest) => peek_header(rest, MAX_MESSAGE_LEN),
            None => Ok(None),
        }
    }

    /// Moves past buffered bytes of a frame being streamed; true when none remain to come.
    #[inline]
    pub(crate) fn finish_skip(&mut self, buf: &[u8]) -> bool {
        if self.skip > 0 {
            let n = self.skip.min(buf.len().saturating_sub(self.ready));
            self.ready += n;
            self.skip -= n;
        }
        self.skip == 0
    }

    /// Marks a frame of `len` bytes at the scan position for forwarding; what is not buffered
    /// yet will stream through as it arrives.
    #[inline]
    pub(crate) fn pass(&mut self, buf: &[u8], len: usize) {
        let avail = buf.len() - self.ready;
        self.ready += len.min(avail);
        self.skip = len.saturating_sub(avail);
    }
}

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

/// Per-attachment bookkeeping of one client on one backend.
#[derive(Debug, Default)]
pub struct Attachment {
    /// Query/Sync/FunctionCall forwarded whose ReadyForQuery has not come back.
    pub pending: u32,
    /// Extended-protocol messages forwarded since the last Sync.
    pub unsynced: bool,
    /// An Execute was forwarded since the last Sync (a Sync now could commit its work).
    pub executed: bool,
    /// The client sent Terminate.
    pub terminated: bool,
    /// Release point reached (transaction mode).
    released: bool,
    /// The backend reported a ParameterStatus during this attachment.
    pub params_changed: bool,
    /// The client ran DISCARD ALL / RESET ALL: settings the pooler applied are gone.
    pub session_reset: bool,
    /// A frame the scan must read whole is not all buffered: read past the high-water mark.
    pub need_frame: bool,
    /// The pooler answered an error itself: drop the client's messages until Sync.
    pub drop_till_sync: bool,
    /// Read statements for session state they leave behind (`cleanup_server_connections`).
    pub track_dirt: bool,
    /// Session state left on the backend ([`crate::sql_kind::dirt`] bits).
    pub dirty: u8,
    /// Read statements for DDL (prepared statements are cached: a new cache epoch follows).
    pub track_ddl: bool,
    /// DDL ran, or the backend said a cached statement went stale (0A000 "cached plan must
    /// not change result type", XX000 "cache lookup failed"): the pool's statement cache must
    /// start a new epoch.
    pub schema_changed: bool,
    /// Read statements for session state that pins the client to this backend (transaction
    /// mode).
    pub track_pins: bool,
    /// That state: while any exists the backend is not released at ReadyForQuery 'I'.
    pub pins: crate::sql_kind::Pins,
    /// `pins` changed since the relay last looked.
    pub pins_changed: bool,
    /// Read statements for RESETs of tracked parameters ([`crate::sql_kind::resets`]).
    pub track_settings: bool,
    /// Untracked settings the client SET or RESET at session level (transaction mode; read
    /// back at release so they follow the client, [`crate::sql_kind::session_sets`]).
    pub set_names: Vec<Box<str>>,
    /// RESETs seen in Parse messages (without statement rewriting), armed by the next Bind.
    pub parse_resets: u16,
    /// Tracked parameters the client RESET since the last release: the relay stops at the
    /// next ReadyForQuery 'I' (also in session mode) so that the session can put back the
    /// client's startup values.
    pub resets: u16,
    /// The backend sent a FATAL ErrorResponse (relayed to the client, as PostgreSQL's own last
    /// word before it closes, e.g. 57P01 after pg_terminate_backend).
    pub server_fatal: bool,
    /// Hash of the client's parse-time settings ([`crate::params::parse_context`]).
    pub parse_ctx: u64,
    /// What is ready for the client was all made up by the pooler (no backend bytes yet).
    synth_only: bool,
    /// Bytes reserved under `max_memory_usage` for the frame being waited for.
    pub reserved: usize,
    /// A frame that must be read whole does not fit under `max_memory_usage`.
    pub over_memory: bool,
    /// The client sent Flush outside COPY (an asynchronous pipeline; SHOW POOLS_MEMORY).
    pub flushed: bool,
    /// What this attachment did (statistics).
    pub tally: crate::pool::stats::Tally,
    /// When the client got the backend (set by the session before relaying).
    pub attached: Option<crate::clock::Micros>,
    /// When the last ReadyForQuery passed: the end of the attachment's transaction time, so
    /// the statistics and the checkin read no clock of their own.
    pub last_end: Option<crate::clock::Micros>,
    /// Durations of the first 8 queries (µs, from the attachment or the previous
    /// ReadyForQuery to this one), for the query histogram.
    pub query_us: [u32; 8],
    server_scan: Scan,
}

impl Attachment {
    /// An attachment that began at `attached`; `track_dirt` as the pool's
    /// `cleanup_server_connections`.
    pub fn new(attached: crate::clock::Micros, track_dirt: bool) -> Self {
        Attachment {
            attached: Some(attached),
            track_dirt,
            ..Default::default()
        }
    }

    /// Notes the session state a simple Query at `pos` (frame length `len`) leaves behind,
    /// from as much of its text as is buffered.
    #[inline]
    pub(crate) fn track_query(&mut self, buf: &[u8], pos: usize, len: usize) {
        if self.reads_statements() {
            let end = (pos + len).min(buf.len());
            if let Some(text) = buf.get(pos + 5..end) {
                self.resets |= self.track_text(text);
            }
        }
    }

    /// True when statement texts are read for anything (session state, DDL, pins, RESETs).
    #[inline]
    pub(crate) fn reads_statements(&self) -> bool {
        self.track_dirt || self.track_ddl || self.track_pins || self.track_settings
    }

    /// Notes what statement text `text` leaves behind (session state, DDL, pins, untracked
    /// SETs) and returns the tracked parameters it RESETs ([`crate::sql_kind::resets`] bits),
    /// for the caller to count now or when the statement runs.
    pub(crate) fn track_text(&mut self, text: &[u8]) -> u16 {
        use crate::sql_kind::dirt;
        if !crate::sql_kind::may_matter(text) {
            return 0;
        }
        let mut d = self.dirty;
        crate::sql_kind::track(text, &mut d);
        if d & dirt::DDL != 0 {
            self.schema_changed |= self.track_ddl;
            d &= !dirt::DDL;
        }
        if self.track_dirt {
            self.dirty = d;
        }
        if self.track_pins {
            self.pins_changed |= crate::sql_kind::track_pins(text, &mut self.pins);
            let names = &mut self.set_names;
            crate::sql_kind::session_sets(text, |n| {
                if !names.contains(&n) {
                    names.push(n);
                }
            });
        }
        if self.track_settings {
            crate::sql_kind::resets(text)
        } else {
            0
        }
    }

    /// Notes what a statement (a Parse body: text, NUL, parameter types) does when it runs.
    #[inline]
    pub(crate) fn track_statement(&mut self, body: &[u8]) {
        if self.reads_statements() {
            self.resets |= self.track_text(body);
        }
    }

    /// Relays on after a stop for [`Attachment::resets`] (session mode).
    pub fn resume(&mut self) {
        self.released = false;
        self.resets = 0;
    }

    /// True when the client holds a transaction open (or failed) and nothing is in flight: a
    /// ROLLBACK makes the backend reusable after the client left.
    pub fn only_in_transaction(&self, server: &Server, client: &Scan) -> bool {
        client.ready == 0
            && client.skip == 0
            && self.pending == 0
            && !self.unsynced
            && matches!(server.status, b'T' | b'E')
            && self.server_scan.skip == 0
            && server.prepared.expect.is_empty()
    }

    /// True when the client left in the middle of an extended-protocol batch that ran nothing
    /// (no Execute) outside a transaction block, with every byte it sent written out whole
    /// (`client` scan): a Sync makes the backend clean again.
    pub fn only_unsynced(&self, server: &Server, client: &Scan) -> bool {
        client.ready == 0
            && client.skip == 0
            && self.pending == 0
            && self.unsynced
            && !self.executed
            && server.status == b'I'
            && self.server_scan.skip == 0
    }

    /// True when the backend is between transactions with nothing outstanding.
    pub fn is_clean(&self, server: &Server) -> bool {
        self.pending == 0
            && !self.unsynced
            && server.status == b'I'
            && self.server_scan.skip == 0
            && server.prepared.expect.is_empty()
    }
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
    pub leave: Option<&'a crate::app::clients::Leave>,
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

fn scan_server(
    buf: &mut BytesMut,
    server_params: &mut ParamSet,
    status: &mut u8,
    at: &mut Attachment,
    release: bool,
    sink: &mut ParamSink<'_>,
    p: &mut ServerPrepared,
) -> Result<(), WireError> {
    loop {
        if at.released {
            return Ok(());
        }
        // Made-up replies go after a streamed frame, before the next one.
        if !at.server_scan.finish_skip(buf) {
            return Ok(());
        }
        if at.server_scan.ready == 0 {
            at.synth_only = true;
        }
        prepared::emit_front(buf, &mut at.server_scan, p);
        let sc = &mut at.server_scan;
        let Some(h) = sc.next_header(buf)? else {
            return Ok(());
        };
        let len = h.frame_len();
        let read = matches!(h.tag, tag::READY_FOR_QUERY | tag::PARAMETER_STATUS);
        // Frames that are read or may be dropped are taken whole (they are small), so each
        // frame is matched against the reply queue exactly once.
        if (read || matches!(h.tag, b'1' | b'3')) && buf.len() - sc.ready < len {
            return Ok(());
        }
        at.synth_only = false;
        if prepared::on_reply(h.tag, p, &mut at.pending) == Reply::Drop {
            prepared::splice(buf, sc.ready, len, &[]);
            continue;
        }
        if !read {
            if h.tag == tag::ERROR_RESPONSE {
                let flags = count_error(&buf[sc.ready..], len, &mut at.tally);
                at.schema_changed |= flags & ERROR_STALE != 0;
                at.server_fatal |= flags & ERROR_FATAL != 0;
            }
            sc.pass(buf, len);
            continue;
        }
        let pos = sc.ready;
        let body = &buf[pos + 5..pos + len];
        sc.ready += len;
        if h.tag == tag::READY_FOR_QUERY {
            *status = body
                .first()
                .copied()
                .ok_or(WireError::Truncated("ReadyForQuery"))?;
            at.pending = at.pending.saturating_sub(1);
            let now = crate::clock::Micros::now();
            if let Some(slot) = at.query_us.get_mut(at.tally.queries as usize)
                && let Some(prev) = at.last_end.or(at.attached)
            {
                let us = now.us_since(prev);
                *slot = u32::try_from(us).unwrap_or(u32::MAX);
            }
            at.last_end = Some(now);
            at.tally.queries += 1;
            if *status == b'I' {
                at.tally.xacts += 1;
            }
            if (release || at.resets != 0)
                && at.pending == 0
                && !at.unsynced
                && *status == b'I'
                && !at.pins.any()
            {
                at.released = true;
            }
        } else {
            let (k, v) = parse_parameter_status(body)?;
            server_params.set(k, v);
            at.params_changed = true;
            if let Some(t) = tracked_name(k)
                && sink.wanted.set(t, v)
            {
                if crate::params::PARSE_CONTEXT.contains(&t) {
                    at.parse_ctx = crate::params::parse_context(sink.wanted);
                }
                if sink.log {
                    tracing::info!("client parameter {t} changed to {v:?}");
                }
            }
        }
    }
}

/// [`count_error`]: the error is one a stale cached statement gets: 0A000 "cached plan must
/// not change result type" (told apart from other 0A000 errors by its routine field,
/// RevalidateCachedQuery, which is not translated) or XX000 "cache lookup failed for type"
/// (internal errors are rare, so any XX000 counts). Either starts a new cache epoch.
const ERROR_STALE: u8 = 1;
/// [`count_error`]: the backend ends the session (severity FATAL or PANIC).
const ERROR_FATAL: u8 = 2;

/// Counts an ErrorResponse by SQLSTATE class (when its code field is buffered) and tells what
/// it means for the pooler ([`ERROR_STALE`], [`ERROR_FATAL`] bits).
fn count_error(frame: &[u8], len: usize, tally: &mut crate::pool::stats::Tally) -> u8 {
    let body = &frame[5.min(frame.len())..len.min(frame.len())];
    let mut class = crate::pool::stats::ERROR_CLASSES.len() - 1;
    let mut rest = body;
    let mut flags = 0;
    let mut feature = false;
    while let Some((&t, tail)) = rest.split_first() {
        if t == 0 {
            break;
        }
        let end = tail.iter().position(|&c| c == 0).unwrap_or(tail.len());
        let value = &tail[..end];
        match t {
            b'V' if value == b"FATAL" || value == b"PANIC" => flags |= ERROR_FATAL,
            b'C' => {
                class = crate::pool::stats::error_class(value);
                match value {
                    b"XX000" => flags |= ERROR_STALE,
                    b"0A000" => feature = true,
                    // Fields after the code matter only for 0A000.
                    _ => break,
                }
            }
            b'R' if feature && value == b"RevalidateCachedQuery" => flags |= ERROR_STALE,
            _ => {}
        }
        rest = tail.get(end + 1..).unwrap_or_default();
    }
    tally.errors[class] += 1;
    flags
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
    server: &mut Server,
    at: &mut Attachment,
    release_on_idle: bool,
    sink: &mut ParamSink<'_>,
    mut prep: Option<&mut Prep<'_>>,
) -> Outcome {
    if prep.is_some() {
        prepared::inject_closes(&mut client.buf, &mut client.scan, &mut server.prepared);
    }
    loop {
        // Client → server.
        if !at.released {
            at.need_frame = false;
            let scanned = prepared::scan_client(
                &mut client.buf,
                &mut client.scan,
                at,
                &mut server.prepared,
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
        let to_server_blocked = match flush(&server.stream, &mut client.buf, &mut client.scan) {
            Ok(done) => !done,
            Err(e) => return Outcome::ServerGone(e),
        };
        at.tally.received += (before - client.scan.ready) as u64;
        if at.terminated && client.scan.ready == 0 {
            return Outcome::Terminated;
        }
        // Server → client.
        if let Err(e) = scan_server(
            &mut server.buf,
            &mut server.params,
            &mut server.status,
            at,
            release_on_idle,
            sink,
            &mut server.prepared,
        ) {
            return Outcome::ServerGone(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        // Made-up replies alone wait for the backend's next bytes while more are expected, so
        // a cached Parse costs no extra write to the client.
        let hold = at.synth_only && !server.prepared.expect.is_empty();
        let before = at.server_scan.ready;
        let to_client_blocked = if hold {
            false
        } else {
            match flush(&client.stream, &mut server.buf, &mut at.server_scan) {
                Ok(done) => !done,
                Err(_) => return Outcome::ClientGone,
            }
        };
        at.tally.sent += (before - at.server_scan.ready) as u64;
        if at.released && !to_client_blocked {
            return Outcome::Released;
        }
        let read_client =
            !at.released && !at.terminated && (client.buf.len() < HIGH_WATER || at.need_frame);
        let read_server = !at.released && server.buf.len() < HIGH_WATER;
        let want = Want {
            read_server,
            read_client,
            to_server_blocked,
            to_client_blocked,
        };
        // Only a client that keeps its backend between transactions (session mode), idle on
        // it, hears a drain here; the others hear it while they hold no backend.
        let leave = sink.leave.filter(|_| {
            !to_server_blocked && !to_client_blocked && client.buf.is_empty() && at.is_clean(server)
        });
        let wait = std::future::poll_fn(|cx| poll_event(cx, client, server, want, leave));
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
    server: &mut Server,
    want: Want,
    leave: Option<&crate::app::clients::Leave>,
) -> Poll<Event> {
    if want.read_server
        && let Poll::Ready(r) = server.stream.poll_read_buf(cx, &mut server.buf, READ_CHUNK)
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
        && let Poll::Ready(r) = server.stream.poll_write_ready(cx)
    {
        return Poll::Ready(Event::ServerWritable(r));
    }
    if want.to_client_blocked
        && let Poll::Ready(r) = client.stream.poll_write_ready(cx)
    {
        return Poll::Ready(Event::ClientWritable(r));
    }
    if let Some(l) = leave
        && l.poll(cx, crate::app::clients::Leave::MIGRATE).is_ready()
    {
        return Poll::Ready(Event::Leave);
    }
    Poll::Pending
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client scan without statement rewriting.
    fn scan_client(buf: &[u8], sc: &mut Scan, at: &mut Attachment) -> Result<(), WireError> {
        let mut b = BytesMut::from(buf);
        let mut p = ServerPrepared::new(8);
        prepared::scan_client(&mut b, sc, at, &mut p, None)
    }

    fn frames(parts: &[(u8, &[u8])]) -> Vec<u8> {
        let mut v = Vec::new();
        for (t, body) in parts {
            v.push(*t);
            v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
            v.extend_from_slice(body);
        }
        v
    }

    #[test]
    fn errors_that_mean_a_stale_statement_or_a_closing_backend_are_told_apart() {
        let flags = |body: &[u8]| {
            let f = frames(&[(b'E', body)]);
            let mut tally = crate::pool::stats::Tally::default();
            count_error(&f, f.len(), &mut tally)
        };
        let stale = b"SERROR\0VERROR\0C0A000\0Mcached plan must not change result type\0RRevalidateCachedQuery\0\0";
        assert_eq!(flags(stale), ERROR_STALE);
        let other = b"SERROR\0VERROR\0C0A000\0Mcannot do that\0Rsomewhere\0\0";
        assert_eq!(flags(other), 0);
        assert_eq!(
            flags(b"SERROR\0VERROR\0CXX000\0Mcache lookup failed for type 1\0\0"),
            ERROR_STALE
        );
        let fatal =
            b"SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0";
        assert_eq!(flags(fatal), ERROR_FATAL);
        assert_eq!(flags(b"SERROR\0VERROR\0C42P01\0\0"), 0);
    }

    #[test]
    fn client_scan_counts_syncs_and_stops_at_terminate() {
        let buf = frames(&[
            (b'P', b"\0SELECT 1\0\0\0"),
            (b'B', b"\0\0\0\0\0\0\0\0"),
            (b'S', b""),
            (b'Q', b"SELECT 1\0"),
            (b'X', b""),
        ]);
        let mut sc = Scan::default();
        let mut at = Attachment::default();
        scan_client(&buf, &mut sc, &mut at).unwrap();
        assert_eq!(at.pending, 2);
        assert!(!at.unsynced);
        assert!(at.terminated);
        assert_eq!(sc.ready, buf.len() - 5);
    }

    #[test]
    fn client_scan_streams_partial_frames_and_rejects_bad_tags() {
        let mut buf = frames(&[(b'd', &[7u8; 100])]);
        buf.truncate(50);
        let mut sc = Scan::default();
        let mut at = Attachment::default();
        scan_client(&buf, &mut sc, &mut at).unwrap();
        assert_eq!((sc.ready, sc.skip), (50, 55));
        let bad = frames(&[(b'Z', b"I")]);
        assert!(scan_client(&bad, &mut Scan::default(), &mut Attachment::default()).is_err());
        let huge_sync = [b'S', 0, 1, 0, 0];
        assert!(scan_client(&huge_sync, &mut Scan::default(), &mut Attachment::default()).is_err());
    }

    #[test]
    fn server_scan_releases_only_when_all_answered() {
        let buf = frames(&[
            (b'C', b"SELECT 1\0"),
            (b'Z', b"I"),
            (b'C', b"SELECT 1\0"),
            (b'S', b"TimeZone\0UTC\0"),
            (b'Z', b"I"),
            (b'N', b"x"),
        ]);
        let mut at = Attachment {
            pending: 2,
            ..Default::default()
        };
        let mut params = ParamSet::default();
        let mut wanted = ParamSet::default();
        let mut status = b'T';
        let mut sink = ParamSink {
            wanted: &mut wanted,
            log: false,
            pinned: None,
            leave: None,
            stall_limit: None,
        };
        let mut buf = BytesMut::from(&buf[..]);
        scan_server(
            &mut buf,
            &mut params,
            &mut status,
            &mut at,
            true,
            &mut sink,
            &mut ServerPrepared::new(8),
        )
        .unwrap();
        assert!(at.released);
        assert_eq!(at.pending, 0);
        assert_eq!(at.server_scan.ready, buf.len() - 6);
        assert_eq!(params.get("TimeZone"), Some("UTC"));
        assert_eq!(wanted.get("TimeZone"), Some("UTC"));
    }

    #[test]
    fn server_scan_holds_in_transaction() {
        let buf = frames(&[(b'Z', b"T")]);
        let mut at = Attachment {
            pending: 1,
            ..Default::default()
        };
        let (mut p, mut w, mut st) = (ParamSet::default(), ParamSet::default(), b'I');
        let mut sink = ParamSink {
            wanted: &mut w,
            log: false,
            pinned: None,
            leave: None,
            stall_limit: None,
        };
        let mut buf = BytesMut::from(&buf[..]);
        scan_server(
            &mut buf,
            &mut p,
            &mut st,
            &mut at,
            true,
            &mut sink,
            &mut ServerPrepared::new(8),
        )
        .unwrap();
        assert!(!at.released);
        assert_eq!(st, b'T');
    }
}
