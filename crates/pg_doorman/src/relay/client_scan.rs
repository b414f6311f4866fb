//! Client → backend: queues the reply each message gets, follows Sync, COPY and
//! skip-till-Sync, and (transaction mode's prepared statements) renames statements to
//! `DOORMAN_<id>`, drops Parse/Close the backend does not need and injects Parse where the
//! backend lacks a statement. Frames it must read are waited for whole (`at.need_frame`);
//! others stream through.

use super::attachment::Attachment;
use super::check_client_frame;
use super::conversation::{Conversation, Copy, Expect, NewName, Synth};
use super::deallocate::{Statements, classify, drops_statements};
use super::scan::Scan;
use crate::prepared::{ClientStatements, PoolCache, ServerName, Statement, hash_body};
use bytes::BytesMut;
use doorman_wire::frame::{HEADER_LEN, splice};
use doorman_wire::frontend::messages::{SYNC_FRAME, rename, write_close_statement, write_parse};
use doorman_wire::frontend::{BindNames, Kind, Parse, Span, Target, tag};
use doorman_wire::{FrameHeader, WireError};
use std::sync::Arc;

/// Simple queries longer than this (bytes) are not inspected for DEALLOCATE / DISCARD ALL.
const SHORT_QUERY: usize = 256;

/// Pool and client state the statement rewrite needs.
pub struct Prep<'a> {
    /// The pool's statement cache.
    pub pool: &'a PoolCache,
    /// The client's names, created on its first Parse/Bind/Describe/Close.
    pub client: &'a mut Option<Box<ClientStatements>>,
    /// `client_anonymous_prepared_cache_size` for a new client map (its anonymous LRU);
    /// 0 = unlimited.
    pub client_cap: usize,
    /// `max_memory_usage`: cap on bytes held for messages read whole, process-wide.
    pub max_memory: usize,
}

impl Prep<'_> {
    fn client(&mut self) -> &mut ClientStatements {
        let sums = &self.pool.clients;
        self.client
            .get_or_insert_with(|| Box::new(ClientStatements::new(self.client_cap, sums.clone())))
    }
}

/// Waits for the rest of a frame of `len` bytes that must be read whole, reserving its size
/// under `max_memory_usage` (sets `at.over_memory` when it does not fit).
fn wait_whole(at: &mut Attachment, len: usize, max: usize) {
    if at.reserved == 0 {
        if !crate::memory::try_reserve(len, max) {
            at.over_memory = true;
            return;
        }
        at.reserved = len;
    }
    at.need_frame = true;
}

/// A frame that was waited for is whole now: its reservation goes back.
fn got_whole(at: &mut Attachment) {
    if at.reserved > 0 {
        crate::memory::release(at.reserved);
        at.reserved = 0;
    }
}

/// Closes statements evicted during the previous client's batch, ahead of this client's first
/// message (nothing can still Bind them now).
pub fn inject_closes(buf: &mut BytesMut, sc: &mut Scan, conv: &mut Conversation) {
    if conv.statements.closing.is_empty() || sc.ready != 0 || sc.skip != 0 {
        return;
    }
    let mut out = std::mem::take(&mut conv.scratch);
    out.clear();
    for id in conv.statements.closing.drain(..) {
        write_close_statement(&mut out, ServerName::new(id).as_bytes());
        conv.expect.push_back(Expect::Close { swallow: true });
    }
    splice(buf, 0, 0, &out);
    sc.ready += out.len();
    conv.scratch = out;
}

/// Scans what the client sent in `buf` from `sc`: every message's reply is queued in `conv`;
/// with `prep`, statement names are rewritten as the module says.
///
/// # Errors
/// [`WireError`] for a message a client may not send, an oversized one, or a Parse, Describe
/// or Close whose body does not decode.
pub fn scan_client(
    buf: &mut BytesMut,
    sc: &mut Scan,
    at: &mut Attachment,
    conv: &mut Conversation,
    mut prep: Option<&mut Prep<'_>>,
) -> Result<(), WireError> {
    if !conv.undo_names.is_empty() {
        undo_names(conv, prep.as_deref_mut());
    }
    loop {
        if at.terminated {
            return Ok(());
        }
        let Some(h) = sc.next_header(buf)? else {
            return Ok(());
        };
        check_client_frame(&h)?;
        let len = h.frame_len();
        let pos = sc.ready;
        let whole = buf.len() - pos >= len;
        if h.tag == tag::TERMINATE {
            at.terminated = true;
            return Ok(());
        }
        if conv.drop_till_sync && h.tag != tag::SYNC {
            // After a made-up error the rest of the batch is dropped, as the backend would.
            if !whole {
                let max = prep.as_ref().map_or(usize::MAX, |pr| pr.max_memory);
                wait_whole(at, len, max);
                return Ok(());
            }
            got_whole(at);
            splice(buf, pos, len, &[]);
            continue;
        }
        match h.tag {
            tag::PARSE | tag::BIND | tag::DESCRIBE | tag::CLOSE => {
                conv.unsynced = true;
                let Some(prep) = prep.as_deref_mut() else {
                    plain(buf, sc, at, conv, h);
                    continue;
                };
                if h.tag == tag::BIND
                    && let Some(names) = BindNames::decode_prefix(body_prefix(buf, pos, len))
                {
                    // Only the names are rewritten: the parameters stream through.
                    let span = names.statement_span();
                    bind(buf, sc, at, conv, prep, len, span);
                    continue;
                }
                if !whole {
                    wait_whole(at, len, prep.max_memory);
                    return Ok(());
                }
                got_whole(at);
                match h.tag {
                    tag::PARSE => parse(buf, sc, at, conv, prep, len)?,
                    tag::BIND => return Err(WireError::Truncated("Bind")),
                    tag::DESCRIBE => describe(buf, sc, conv, prep, len)?,
                    _ => close(buf, sc, conv, prep, len)?,
                }
            }
            tag::QUERY => {
                if len <= SHORT_QUERY && !whole {
                    at.need_frame = true;
                    return Ok(());
                }
                conv.unsynced = false;
                conv.executed = false;
                let may_matter = at.track_query(buf, pos, len);
                if !conv.skipping {
                    conv.pending += 1;
                }
                if len <= SHORT_QUERY
                    && may_matter
                    && !conv.skipping
                    && query(buf, sc, at, conv, prep.as_deref_mut(), len)
                {
                    continue;
                }
                conv.push(Expect::Ready { skippable: true });
                sc.pass(buf, len);
            }
            tag::SYNC | tag::FLUSH if conv.copy == Copy::In => {
                // The backend ignores Sync and Flush in copy-in mode (protocol §55.2.6).
                sc.pass(buf, len);
            }
            tag::COPY_DONE | tag::COPY_FAIL => {
                if conv.copy == Copy::In {
                    conv.copy = Copy::None;
                } else {
                    conv.expect.push_back(Expect::CopyEnd);
                }
                sc.pass(buf, len);
            }
            tag::SYNC => {
                conv.pending += 1;
                conv.unsynced = false;
                conv.executed = false;
                conv.drop_till_sync = false;
                conv.push(Expect::Ready { skippable: false });
                sc.pass(buf, len);
            }
            tag::FUNCTION_CALL => {
                conv.unsynced = false;
                conv.executed = false;
                if !conv.skipping {
                    conv.pending += 1;
                }
                conv.push(Expect::Ready { skippable: true });
                sc.pass(buf, len);
            }
            tag::FLUSH => {
                at.flushed = true;
                sc.pass(buf, len);
            }
            tag::EXECUTE => {
                conv.unsynced = true;
                conv.executed = true;
                conv.push(Expect::Execute);
                sc.pass(buf, len);
            }
            _ => sc.pass(buf, len),
        }
    }
}

/// The body of the frame at `pos` (`len` bytes) as far as it is buffered.
fn body_prefix(buf: &[u8], pos: usize, len: usize) -> &[u8] {
    buf.get(pos + HEADER_LEN..(pos + len).min(buf.len()))
        .unwrap_or_default()
}

/// Parse/Bind/Describe/Close without statement rewriting: the reply is queued and the frame
/// streams.
fn plain(buf: &[u8], sc: &mut Scan, at: &mut Attachment, conv: &mut Conversation, h: FrameHeader) {
    let (pos, len) = (sc.ready, h.frame_len());
    let e = match h.tag {
        tag::PARSE => {
            if at.reads_statements()
                && let Some(text) = Parse::query_prefix(body_prefix(buf, pos, len))
            {
                // A RESET in a Parse counts when it runs (the relay stops at the next
                // ReadyForQuery).
                at.parse_resets |= at.track_text(text);
            }
            Expect::Parse {
                id: 0,
                swallow: false,
            }
        }
        tag::BIND => {
            // Without rewriting, the statement is unknown here: RESETs seen in a Parse take
            // effect when something runs.
            at.resets |= at.parse_resets;
            Expect::Bind
        }
        tag::DESCRIBE => Expect::Describe,
        _ => Expect::Close { swallow: false },
    };
    conv.push(e);
    sc.pass(buf, len);
}

/// The whole frame at the scan position (`len` bytes) and its body.
fn frame_body(buf: &[u8], pos: usize, len: usize) -> &[u8] {
    &buf[pos + HEADER_LEN..pos + len]
}

fn parse(
    buf: &mut BytesMut,
    sc: &mut Scan,
    at: &mut Attachment,
    conv: &mut Conversation,
    prep: &mut Prep<'_>,
    len: usize,
) -> Result<(), WireError> {
    let pos = sc.ready;
    let p = Parse::decode(frame_body(buf, pos, len))?;
    // Only the text's start is read: the statement bytes (text, NUL, types) do, unscanned.
    if drops_statements(p.statement) {
        // Sent as is; the backend's statements are reset at checkin.
        conv.must_reset = true;
        conv.push(Expect::Parse {
            id: 0,
            swallow: false,
        });
        sc.pass(buf, len);
        return Ok(());
    }
    let span = p.name_span();
    let pool = prep.pool;
    let client = prep.client();
    if !p.name.is_empty() && client.contains(p.name) {
        let e = conv.expect_duplicate(p.name);
        splice(buf, pos, len, &[]);
        conv.push(e);
        conv.drop_till_sync = true;
        return Ok(());
    }
    if at.schema_changed {
        pool.new_epoch();
        at.schema_changed = false;
    }
    // The key covers the parse-time settings and the cache epoch: a statement parsed under
    // another TimeZone folds its literals differently, one parsed before DDL may be stale.
    let hash = hash_body(p.statement) ^ pool.salt(at.parse_ctx);
    let st = match client.recent(hash, p.statement) {
        Some(s) => s,
        None => {
            let s = pool.intern(hash, p.statement);
            client.remember(&s);
            s
        }
    };
    let id = st.id;
    if conv.skipping {
        // The backend skips this Parse (an error earlier in the batch): the name is not
        // made, as PostgreSQL would not make it. It goes on renamed, to be ignored.
        let new_len = rename(buf, pos, len, span, ServerName::new(id).as_bytes());
        sc.ready += new_len;
        return Ok(());
    }
    let cached = conv.statements.has(&st);
    // The unnamed statement parsed again with the text it has (a driver's every query), on a
    // backend that has it: the made-up ParseComplete cannot fail, and a skip leaves the name
    // where it is, so there is nothing to take back. (Sent to the backend, the Parse can
    // fail, and a failed Parse leaves no unnamed statement: that is recorded below.)
    let unchanged = cached && p.name.is_empty() && client.get(p.name).is_some_and(|s| s.id == id);
    let new_name = (!unchanged).then(|| {
        let before = if p.name.is_empty() {
            client.get(p.name).cloned()
        } else {
            None
        };
        client.insert(p.name, Arc::clone(&st));
        NewName {
            name: p.name.into(),
            id,
            before,
        }
    });
    if cached {
        conv.statements.hits += 1;
        splice(buf, pos, len, &[]);
        conv.push(Expect::Synth(Synth::ParseComplete));
    } else {
        conv.statements.misses += 1;
        conv.statements.add(&st);
        let new_len = rename(buf, pos, len, span, ServerName::new(id).as_bytes());
        sc.ready += new_len;
        conv.push(Expect::Parse { id, swallow: false });
    }
    // Whether the name stands depends on the backend's answer (an error before it in the
    // batch makes the backend skip this Parse).
    if let Some(n) = new_name {
        conv.new_names.push_back(n);
        conv.push(Expect::NameAdded);
    }
    Ok(())
}

/// Takes back the names whose Parse the backend skipped or refused.
fn undo_names(conv: &mut Conversation, prep: Option<&mut Prep<'_>>) {
    let mut client = prep.and_then(|p| p.client.as_deref_mut());
    // Newest first: an unnamed statement parsed twice gets back the oldest one.
    for n in conv.undo_names.drain(..).rev() {
        if let Some(c) = client.as_deref_mut()
            && c.get(&n.name).is_some_and(|s| s.id == n.id)
        {
            match n.before {
                Some(st) => c.insert(&n.name, st),
                None => {
                    c.remove(&n.name);
                }
            }
        }
    }
}

/// Rewrites the statement name at `span` of the frame at the scan position to the backend's
/// name, injecting a Parse first if the backend lacks it, and moves the scan past both (the
/// frame may be only partly buffered: the rest streams). Leaves the frame untouched when the
/// client has no such statement: the backend then answers as PostgreSQL does (26000).
fn use_statement(
    buf: &mut BytesMut,
    sc: &mut Scan,
    conv: &mut Conversation,
    prep: &mut Prep<'_>,
    frame_len: usize,
    span: Span,
) -> Option<Arc<Statement>> {
    let pos = sc.ready;
    let name = &buf[pos + span.at..pos + span.at + span.len];
    let Some(st) = prep.client.as_deref_mut().and_then(|c| c.get(name)) else {
        sc.pass(buf, frame_len);
        return None;
    };
    let st = Arc::clone(st);
    let id = st.id;
    let mut shift = 0;
    if !conv.skipping && !conv.statements.has(&st) {
        shift = inject_parse(buf, pos, &st, conv);
        conv.statements.misses += 1;
        conv.statements.add(&st);
        conv.push(Expect::Parse { id, swallow: true });
    }
    let new_len = rename(
        buf,
        pos + shift,
        frame_len,
        span,
        ServerName::new(id).as_bytes(),
    );
    sc.ready += shift;
    sc.pass(buf, new_len);
    Some(st)
}

fn inject_parse(buf: &mut BytesMut, at: usize, st: &Statement, conv: &mut Conversation) -> usize {
    let mut out = std::mem::take(&mut conv.scratch);
    out.clear();
    write_parse(&mut out, ServerName::new(st.id).as_bytes(), &st.body);
    splice(buf, at, 0, &out);
    let len = out.len();
    conv.scratch = out;
    len
}

/// Bind: the statement name is rewritten (names come first, so only they need be buffered).
fn bind(
    buf: &mut BytesMut,
    sc: &mut Scan,
    at: &mut Attachment,
    conv: &mut Conversation,
    prep: &mut Prep<'_>,
    len: usize,
    span: Span,
) {
    if let Some(st) = use_statement(buf, sc, conv, prep, len, span) {
        // What a statement leaves on the session is read when it runs (Bind), not when it is
        // prepared: a cached statement may run in a later transaction, on another backend.
        at.track_statement(&st);
    }
    conv.push(Expect::Bind);
}

fn describe(
    buf: &mut BytesMut,
    sc: &mut Scan,
    conv: &mut Conversation,
    prep: &mut Prep<'_>,
    len: usize,
) -> Result<(), WireError> {
    let t = Target::decode(frame_body(buf, sc.ready, len), "Describe")?;
    if t.kind == Kind::Statement {
        let span = t.name_span();
        let _ = use_statement(buf, sc, conv, prep, len, span);
    } else {
        sc.pass(buf, len);
    }
    conv.push(Expect::Describe);
    Ok(())
}

fn close(
    buf: &mut BytesMut,
    sc: &mut Scan,
    conv: &mut Conversation,
    prep: &mut Prep<'_>,
    len: usize,
) -> Result<(), WireError> {
    let pos = sc.ready;
    let t = Target::decode(frame_body(buf, pos, len), "Close")?;
    if t.kind != Kind::Statement {
        sc.pass(buf, len);
        conv.push(Expect::Close { swallow: false });
        return Ok(());
    }
    if let Some(c) = prep.client.as_deref_mut() {
        c.remove(t.name);
    }
    // Backends keep the statement for other clients; closing an unknown name is not an error.
    splice(buf, pos, len, &[]);
    conv.push(Expect::Synth(Synth::CloseComplete));
    Ok(())
}

/// The backend drops every statement it had (DISCARD ALL / DEALLOCATE ALL): forget them all,
/// and the client's names with them.
fn forget_all(conv: &mut Conversation, prep: Option<&mut Prep<'_>>) {
    if let Some(c) = prep.and_then(|pr| pr.client.as_deref_mut()) {
        c.clear();
    }
    conv.statements.clear();
    // If the command failed (say, DISCARD ALL inside a transaction block) the backend still has
    // them: make sure at checkin.
    conv.must_reset = true;
}

/// Handles DEALLOCATE / DISCARD ALL / RESET ALL in the whole Query frame (`len` bytes) at the
/// scan position; returns true when the frame was consumed here (scan position already moved).
fn query(
    buf: &mut BytesMut,
    sc: &mut Scan,
    at: &mut Attachment,
    conv: &mut Conversation,
    prep: Option<&mut Prep<'_>>,
    len: usize,
) -> bool {
    let pos = sc.ready;
    let body = frame_body(buf, pos, len);
    // Most queries are none of these, and the leading keyword tells before the text is
    // decoded (the keyword reader stops at the NUL).
    if !crate::sql_kind::may_drop_statements(body) {
        return false;
    }
    let Ok(q) = doorman_wire::frontend::Query::decode(body) else {
        // Malformed: the backend answers it as PostgreSQL does.
        return false;
    };
    match classify(q.sql) {
        Statements::Other => false,
        Statements::ResetAll => {
            at.session_reset = true;
            false
        }
        Statements::DiscardAll => {
            at.session_reset = true;
            forget_all(conv, prep);
            false
        }
        Statements::DeallocateAll => {
            forget_all(conv, prep);
            false
        }
        Statements::Deallocate(name, quoted) => {
            let mut key = [0u8; 64];
            if name.len() > key.len() {
                return false;
            }
            let key = &mut key[..name.len()];
            key.copy_from_slice(name);
            if !quoted {
                key.make_ascii_lowercase();
            }
            let known = prep
                .and_then(|pr| pr.client.as_deref_mut())
                .is_some_and(|c| c.remove(key));
            if !known {
                return false;
            }
            // Answered here; the Sync keeps the backend's transaction status in the reply.
            splice(buf, pos, len, &SYNC_FRAME);
            sc.ready += SYNC_FRAME.len();
            conv.push(Expect::Synth(Synth::Deallocate));
            conv.push(Expect::Ready { skippable: false });
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::test_frames as frames;

    /// The client scan without statement rewriting.
    fn scan(buf: &[u8], sc: &mut Scan, conv: &mut Conversation) -> Result<(), WireError> {
        let mut b = BytesMut::from(buf);
        let mut at = Attachment::default();
        let r = scan_client(&mut b, sc, &mut at, conv, None);
        assert_eq!(at.terminated, buf.ends_with(&[b'X', 0, 0, 0, 4]));
        r
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
        let mut conv = Conversation::new(8);
        scan(&buf, &mut sc, &mut conv).unwrap();
        assert_eq!(conv.pending, 2);
        assert!(!conv.unsynced);
        assert_eq!(sc.ready, buf.len() - 5);
        assert_eq!(conv.expect.len(), 4);
    }

    #[test]
    fn client_scan_streams_partial_frames_and_rejects_bad_tags() {
        let mut buf = frames(&[(b'd', &[7u8; 100])]);
        buf.truncate(50);
        let mut sc = Scan::default();
        scan(&buf, &mut sc, &mut Conversation::new(8)).unwrap();
        assert_eq!((sc.ready, sc.skip), (50, 55));
        let bad = frames(&[(b'Z', b"I")]);
        assert!(scan(&bad, &mut Scan::default(), &mut Conversation::new(8)).is_err());
        let huge_sync = [b'S', 0, 1, 0, 0];
        assert!(scan(&huge_sync, &mut Scan::default(), &mut Conversation::new(8)).is_err());
    }

    #[test]
    fn rewrite_names_statements_and_answers_repeats_itself() {
        let pool = PoolCache::new(std::num::NonZeroUsize::new(8).unwrap());
        let mut names = None;
        let mut prep = Prep {
            pool: &pool,
            client: &mut names,
            client_cap: 0,
            max_memory: usize::MAX,
        };
        let batch = frames(&[
            (b'P', b"s1\0SELECT 1\0\0\0"),
            (b'B', b"\0s1\0\0\0\0\0\0\0"),
            (b'E', b"\0\0\0\0\0"),
            (b'S', b""),
        ]);
        let mut conv = Conversation::new(8);
        let mut at = Attachment::default();
        let mut b = BytesMut::from(&batch[..]);
        let mut sc = Scan::default();
        scan_client(&mut b, &mut sc, &mut at, &mut conv, Some(&mut prep)).unwrap();
        assert_eq!(sc.ready, b.len());
        let sent: Vec<u8> = b.to_vec();
        assert!(sent.windows(10).any(|w| w == b"DOORMAN_1\0"), "{sent:?}");
        assert!(!sent.windows(3).any(|w| w == b"s1\0"));
        assert_eq!(
            conv.expect.len(),
            5,
            "Parse, its new name, Bind, Execute, Sync"
        );
        // The same client parses a new name for the same text on this backend: answered here.
        conv.expect.clear();
        conv.pending = 0;
        let again = frames(&[(b'P', b"s2\0SELECT 1\0\0\0"), (b'S', b"")]);
        let mut b = BytesMut::from(&again[..]);
        let mut sc = Scan::default();
        scan_client(&mut b, &mut sc, &mut at, &mut conv, Some(&mut prep)).unwrap();
        assert_eq!(&b[..], &SYNC_FRAME);
        assert_eq!(conv.expect[0], Expect::Synth(Synth::ParseComplete));
        assert_eq!(conv.statements.hits, 1);
        // A malformed Parse is a protocol error, not a panic.
        let bad = frames(&[(b'P', b"s3\0SELECT 1\0\0\x05")]);
        let mut b = BytesMut::from(&bad[..]);
        let mut sc = Scan::default();
        assert!(scan_client(&mut b, &mut sc, &mut at, &mut conv, Some(&mut prep)).is_err());
    }
}
