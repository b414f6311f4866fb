//! Client → backend: renames statements to `DOORMAN_<id>`, drops Parse/Close the backend does
//! not need, injects Parse where the backend lacks a statement, and queues the replies.

use super::caches::{ClientStatements, Expect, ServerPrepared, Synth};
use super::splice::{rename, splice};
use super::{PoolCache, ServerName, Statement, hash_body};
use crate::relay::{Attachment, Scan, check_client_frame};
use bytes::BytesMut;
use doorman_wire::WireError;
use std::sync::Arc;

/// Simple queries longer than this (bytes) are not inspected for DEALLOCATE / DISCARD ALL.
const SHORT_QUERY: usize = 256;

/// The Sync that replaces a DEALLOCATE answered by the pooler (its ReadyForQuery carries the
/// backend's real transaction status).
const SYNC: &[u8] = &[b'S', 0, 0, 0, 4];

/// Pool and client state the rewrite needs.
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

fn push(p: &mut ServerPrepared, e: Expect) {
    match e {
        // A Sync ends the backend's skip-till-Sync (protocol §55.2.3).
        Expect::Ready { skippable: false } => p.skipping = false,
        _ if p.skipping => return,
        _ => {}
    }
    p.expect.push_back(e);
}

fn cstr_len(b: &[u8], what: &'static str) -> Result<usize, WireError> {
    b.iter()
        .position(|&c| c == 0)
        .ok_or(WireError::Truncated(what))
}

/// Closes statements evicted during the previous client's batch, ahead of this client's first
/// message (nothing can still Bind them now).
pub fn inject_closes(buf: &mut BytesMut, sc: &mut Scan, p: &mut ServerPrepared) {
    if p.closing.is_empty() || sc.ready != 0 || sc.skip != 0 {
        return;
    }
    let mut out = std::mem::take(&mut p.scratch);
    out.clear();
    for id in p.closing.drain(..) {
        let name = ServerName::new(id);
        let n = name.with_nul();
        out.push(b'C');
        out.extend_from_slice(&((4 + 1 + n.len()) as u32).to_be_bytes());
        out.push(b'S');
        out.extend_from_slice(n);
        p.expect.push_back(Expect::Close { swallow: true });
    }
    splice(buf, 0, 0, &out);
    sc.ready += out.len();
    p.scratch = out;
}

/// [`crate::relay`]'s client scan with statement rewriting. Frames it must read are waited
/// for whole (`at.need_frame`); others stream through as in the plain scan.
pub fn scan_client(
    buf: &mut BytesMut,
    sc: &mut Scan,
    at: &mut Attachment,
    p: &mut ServerPrepared,
    mut prep: Option<&mut Prep<'_>>,
) -> Result<(), WireError> {
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
        if h.tag == b'X' {
            at.terminated = true;
            return Ok(());
        }
        if at.drop_till_sync && h.tag != b'S' {
            // After a made-up error the rest of the batch is dropped, as the backend would.
            if !whole {
                wait_whole(
                    at,
                    len,
                    prep.as_ref().map_or(usize::MAX, |pr| pr.max_memory),
                );
                return Ok(());
            }
            got_whole(at);
            splice(buf, pos, len, &[]);
            continue;
        }
        match h.tag {
            b'P' | b'B' | b'D' | b'C' => {
                let Some(prep) = prep.as_deref_mut() else {
                    // No rewriting: note the reply to expect and let the frame stream.
                    at.unsynced = true;
                    if h.tag == b'P' {
                        track_parse(at, buf, pos, len);
                    }
                    if h.tag == b'B' {
                        // Without rewriting, the statement is unknown here: RESETs seen in a
                        // Parse take effect when something runs.
                        at.resets |= at.parse_resets;
                    }
                    push(p, plain_expect(h.tag));
                    sc.pass(buf, len);
                    continue;
                };
                if h.tag == b'B'
                    && let Some(names) = bind_names(buf, pos, len)
                {
                    // Only the names are rewritten: the parameters stream through.
                    at.unsynced = true;
                    bind(buf, sc, at, p, prep, names);
                    continue;
                }
                if !whole {
                    wait_whole(at, len, prep.max_memory);
                    return Ok(());
                }
                got_whole(at);
                at.unsynced = true;
                let body = pos + 5..pos + len;
                match h.tag {
                    b'P' => parse(buf, sc, at, p, prep, body)?,
                    b'B' => return Err(WireError::Truncated("Bind")),
                    b'D' => describe(buf, sc, p, prep, body)?,
                    _ => close(buf, sc, p, prep, body)?,
                }
            }
            b'Q' => {
                if len <= SHORT_QUERY && !whole {
                    at.need_frame = true;
                    return Ok(());
                }
                at.unsynced = false;
                at.executed = false;
                at.track_query(buf, pos, len);
                if !p.skipping {
                    at.pending += 1;
                }
                if len <= SHORT_QUERY
                    && !p.skipping
                    && query(buf, sc, at, p, prep.as_deref_mut(), pos + 5..pos + len - 1)
                {
                    continue;
                }
                push(p, Expect::Ready { skippable: true });
                sc.pass(buf, len);
            }
            b'S' | b'H' if p.copy_in => {
                // The backend ignores Sync and Flush in copy-in mode (protocol §55.2.6).
                sc.pass(buf, len);
            }
            b'c' | b'f' => {
                if p.copy_in {
                    p.copy_in = false;
                } else {
                    p.expect.push_back(Expect::CopyEnd);
                }
                sc.pass(buf, len);
            }
            b'S' => {
                at.pending += 1;
                at.unsynced = false;
                at.executed = false;
                at.drop_till_sync = false;
                push(p, Expect::Ready { skippable: false });
                sc.pass(buf, len);
            }
            b'F' => {
                at.unsynced = false;
                at.executed = false;
                if !p.skipping {
                    at.pending += 1;
                }
                push(p, Expect::Ready { skippable: true });
                sc.pass(buf, len);
            }
            b'H' => {
                at.flushed = true;
                sc.pass(buf, len);
            }
            b'E' => {
                at.unsynced = true;
                at.executed = true;
                push(p, Expect::Execute);
                sc.pass(buf, len);
            }
            _ => sc.pass(buf, len),
        }
    }
}

/// The reply a frame gets when statements are not rewritten.
fn plain_expect(tag: u8) -> Expect {
    match tag {
        b'P' => Expect::Parse {
            id: 0,
            swallow: false,
        },
        b'B' => Expect::Bind,
        b'D' => Expect::Describe,
        _ => Expect::Close { swallow: false },
    }
}

/// Notes session state from the query text of a Parse at `pos`, as far as it is buffered.
fn track_parse(at: &mut Attachment, buf: &[u8], pos: usize, len: usize) {
    if !at.reads_statements() {
        return;
    }
    let body = &buf[pos + 5..(pos + len).min(buf.len())];
    if let Some(n) = body.iter().position(|&c| c == 0) {
        // A RESET in a Parse counts when it runs (the relay stops at the next ReadyForQuery).
        at.parse_resets |= at.track_text(&body[n + 1..]);
    }
}

/// Whether a statement may drop prepared statements on the backend behind the pooler's back.
fn drops_statements(query: &[u8]) -> bool {
    let q = query.trim_ascii_start();
    let starts = |w: &[u8]| q.len() >= w.len() && q[..w.len()].eq_ignore_ascii_case(w);
    starts(b"DEALLOCATE") || starts(b"DISCARD")
}

fn parse(
    buf: &mut BytesMut,
    sc: &mut Scan,
    at: &mut Attachment,
    p: &mut ServerPrepared,
    prep: &mut Prep<'_>,
    body: std::ops::Range<usize>,
) -> Result<(), WireError> {
    let pos = body.start - 5;
    let len = body.end - pos;
    let name_len = cstr_len(&buf[body.clone()], "Parse")?;
    let rest = body.start + name_len + 1..body.end;
    if drops_statements(&buf[rest.clone()]) {
        // Sent as is; the backend's statements are reset at checkin.
        p.must_reset = true;
        push(
            p,
            Expect::Parse {
                id: 0,
                swallow: false,
            },
        );
        sc.pass(buf, len);
        return Ok(());
    }
    let pool = prep.pool;
    let client = prep.client();
    if name_len > 0 && client.contains(&buf[body.start..body.start + name_len]) {
        let e = p.expect_duplicate(&buf[body.start..body.start + name_len]);
        splice(buf, pos, len, &[]);
        push(p, e);
        at.drop_till_sync = true;
        return Ok(());
    }
    if at.schema_changed {
        pool.new_epoch();
        at.schema_changed = false;
    }
    // The key covers the parse-time settings and the cache epoch: a statement parsed under
    // another TimeZone folds its literals differently, one parsed before DDL may be stale.
    let hash = hash_body(&buf[rest.clone()]) ^ pool.salt(at.parse_ctx);
    let st = match client.recent(hash, &buf[rest.clone()]) {
        Some(s) => s,
        None => {
            let s = pool.intern(hash, &buf[rest]);
            client.remember(&s);
            s
        }
    };
    let id = st.id;
    client.insert(&buf[body.start..body.start + name_len], Arc::clone(&st));
    if !p.skipping && p.has(&st) {
        p.hits += 1;
        splice(buf, pos, len, &[]);
        push(p, Expect::Synth(Synth::ParseComplete));
        return Ok(());
    }
    if !p.skipping {
        p.misses += 1;
        p.add(&st);
    }
    let name = ServerName::new(id);
    let new_len = rename(buf, pos, len, body.start, name_len + 1, name.with_nul());
    sc.ready += new_len;
    push(p, Expect::Parse { id, swallow: false });
    Ok(())
}

/// Rewrites the statement name at `name_at` (`name_len` bytes + NUL) of the frame at the scan
/// position to the backend's name, injecting a Parse first if the backend lacks it, and moves
/// the scan past both (the frame may be only partly buffered: the rest streams). Leaves the
/// frame untouched when the client has no such statement: the backend then answers as
/// PostgreSQL does (26000).
fn use_statement(
    buf: &mut BytesMut,
    sc: &mut Scan,
    p: &mut ServerPrepared,
    prep: &mut Prep<'_>,
    frame_len: usize,
    name_at: usize,
    name_len: usize,
) -> Option<Arc<Statement>> {
    let pos = sc.ready;
    let name = &buf[name_at..name_at + name_len];
    let Some(st) = prep.client.as_deref_mut().and_then(|c| c.get(name)) else {
        sc.pass(buf, frame_len);
        return None;
    };
    let st = Arc::clone(st);
    let id = st.id;
    let mut shift = 0;
    if !p.skipping && !p.has(&st) {
        shift = inject_parse(buf, pos, &st, p);
        p.misses += 1;
        p.add(&st);
        push(p, Expect::Parse { id, swallow: true });
    }
    let new = ServerName::new(id);
    let new_len = rename(
        buf,
        pos + shift,
        frame_len,
        name_at + shift,
        name_len + 1,
        new.with_nul(),
    );
    sc.ready += shift;
    sc.pass(buf, new_len);
    Some(st)
}

fn inject_parse(buf: &mut BytesMut, at: usize, st: &Statement, p: &mut ServerPrepared) -> usize {
    let name = ServerName::new(st.id);
    let n = name.with_nul();
    let mut out = std::mem::take(&mut p.scratch);
    out.clear();
    out.push(b'P');
    out.extend_from_slice(&((4 + n.len() + st.body.len()) as u32).to_be_bytes());
    out.extend_from_slice(n);
    out.extend_from_slice(&st.body);
    splice(buf, at, 0, &out);
    let len = out.len();
    p.scratch = out;
    len
}

/// Where a Bind's names are, if buffered: (start of body, portal length, statement-name
/// offset, statement-name length).
fn bind_names(buf: &[u8], pos: usize, len: usize) -> Option<(usize, usize, usize)> {
    let end = (pos + len).min(buf.len());
    let body = buf.get(pos + 5..end)?;
    let portal = body.iter().position(|&c| c == 0)?;
    let rest = &body[portal + 1..];
    let name = rest.iter().position(|&c| c == 0)?;
    Some((len, pos + 5 + portal + 1, name))
}

/// Bind: the statement name is rewritten (names come first, so only they need be buffered).
fn bind(
    buf: &mut BytesMut,
    sc: &mut Scan,
    at: &mut Attachment,
    p: &mut ServerPrepared,
    prep: &mut Prep<'_>,
    (len, name_at, name_len): (usize, usize, usize),
) {
    if let Some(st) = use_statement(buf, sc, p, prep, len, name_at, name_len) {
        // What a statement leaves on the session is read when it runs (Bind), not when it is
        // prepared: a cached statement may run in a later transaction, on another backend.
        at.track_statement(&st.body);
    }
    push(p, Expect::Bind);
}

fn describe(
    buf: &mut BytesMut,
    sc: &mut Scan,
    p: &mut ServerPrepared,
    prep: &mut Prep<'_>,
    body: std::ops::Range<usize>,
) -> Result<(), WireError> {
    let len = body.end - body.start + 5;
    let kind = buf
        .get(body.start)
        .copied()
        .ok_or(WireError::Truncated("Describe"))?;
    let name_len = cstr_len(&buf[body.start + 1..body.end], "Describe")?;
    if kind == b'S' {
        let _ = use_statement(buf, sc, p, prep, len, body.start + 1, name_len);
    } else {
        sc.pass(buf, len);
    }
    push(p, Expect::Describe);
    Ok(())
}

fn close(
    buf: &mut BytesMut,
    sc: &mut Scan,
    p: &mut ServerPrepared,
    prep: &mut Prep<'_>,
    body: std::ops::Range<usize>,
) -> Result<(), WireError> {
    let pos = sc.ready;
    let len = body.end - pos;
    let kind = buf
        .get(body.start)
        .copied()
        .ok_or(WireError::Truncated("Close"))?;
    if kind != b'S' {
        sc.pass(buf, len);
        push(p, Expect::Close { swallow: false });
        return Ok(());
    }
    let name_len = cstr_len(&buf[body.start + 1..body.end], "Close")?;
    if let Some(c) = prep.client.as_deref_mut() {
        c.remove(&buf[body.start + 1..body.start + 1 + name_len]);
    }
    // Backends keep the statement for other clients; closing an unknown name is not an error.
    splice(buf, pos, len, &[]);
    push(p, Expect::Synth(Synth::CloseComplete));
    Ok(())
}

/// What a short simple query means for statements.
#[derive(Debug, PartialEq, Eq)]
enum Statements<'a> {
    /// Nothing to do with them.
    Other,
    /// DISCARD ALL: drops everything, also session settings.
    DiscardAll,
    /// RESET ALL: session settings only.
    ResetAll,
    /// DEALLOCATE [PREPARE] ALL.
    DeallocateAll,
    /// DEALLOCATE [PREPARE] name (unquoted names folded to lower case by the caller).
    Deallocate(&'a [u8], bool),
}

fn classify(sql: &[u8]) -> Statements<'_> {
    if !crate::sql_kind::may_drop_statements(sql) {
        return Statements::Other;
    }
    let s = crate::sql_kind::bare(sql);
    let word = |s: &[u8]| -> usize {
        s.iter()
            .position(|c| c.is_ascii_whitespace())
            .unwrap_or(s.len())
    };
    let w = word(s);
    let (first, rest) = (&s[..w], s[w..].trim_ascii_start());
    if first.eq_ignore_ascii_case(b"DISCARD") && rest.eq_ignore_ascii_case(b"ALL") {
        return Statements::DiscardAll;
    }
    if first.eq_ignore_ascii_case(b"RESET") && rest.eq_ignore_ascii_case(b"ALL") {
        return Statements::ResetAll;
    }
    if !first.eq_ignore_ascii_case(b"DEALLOCATE") || rest.is_empty() {
        return Statements::Other;
    }
    let mut rest = rest;
    let w = word(rest);
    if rest[..w].eq_ignore_ascii_case(b"PREPARE") && w < rest.len() {
        rest = rest[w..].trim_ascii_start();
    }
    if rest.eq_ignore_ascii_case(b"ALL") {
        return Statements::DeallocateAll;
    }
    if rest.len() >= 2 && rest[0] == b'"' && rest[rest.len() - 1] == b'"' {
        let inner = &rest[1..rest.len() - 1];
        if !inner.contains(&b'"') {
            return Statements::Deallocate(inner, true);
        }
        return Statements::Other;
    }
    if rest.iter().any(|c| c.is_ascii_whitespace() || *c == b'"') {
        return Statements::Other;
    }
    Statements::Deallocate(rest, false)
}

/// The backend drops every statement it had (DISCARD ALL / DEALLOCATE ALL): forget them all,
/// and the client's names with them.
fn forget_all(p: &mut ServerPrepared, prep: Option<&mut Prep<'_>>) {
    if let Some(c) = prep.and_then(|pr| pr.client.as_deref_mut()) {
        c.clear();
    }
    p.clear();
    // If the command failed (say, DISCARD ALL inside a transaction block) the backend still has
    // them: make sure at checkin.
    p.must_reset = true;
}

/// Handles DEALLOCATE / DISCARD ALL / RESET ALL; returns true when the frame was consumed here
/// (scan position already moved).
fn query(
    buf: &mut BytesMut,
    sc: &mut Scan,
    at: &mut Attachment,
    p: &mut ServerPrepared,
    prep: Option<&mut Prep<'_>>,
    sql: std::ops::Range<usize>,
) -> bool {
    let pos = sc.ready;
    let len = sql.end + 1 - pos;
    match classify(&buf[sql]) {
        Statements::Other => false,
        Statements::ResetAll => {
            at.session_reset = true;
            false
        }
        Statements::DiscardAll => {
            at.session_reset = true;
            forget_all(p, prep);
            false
        }
        Statements::DeallocateAll => {
            forget_all(p, prep);
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
            splice(buf, pos, len, SYNC);
            sc.ready += SYNC.len();
            push(p, Expect::Synth(Synth::Deallocate));
            push(p, Expect::Ready { skippable: false });
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statement_commands() {
        assert_eq!(classify(b" discard all ;"), Statements::DiscardAll);
        assert_eq!(classify(b"RESET ALL"), Statements::ResetAll);
        assert_eq!(
            classify(b"DEALLOCATE PREPARE ALL"),
            Statements::DeallocateAll
        );
        assert_eq!(classify(b"deallocate all;;"), Statements::DeallocateAll);
        assert_eq!(
            classify(b"DEALLOCATE _pg3_0"),
            Statements::Deallocate(b"_pg3_0", false)
        );
        assert_eq!(
            classify(b"DEALLOCATE \"Mixed\""),
            Statements::Deallocate(b"Mixed", true)
        );
        assert_eq!(
            classify(b"DEALLOCATE PREPARE s1"),
            Statements::Deallocate(b"s1", false)
        );
        assert_eq!(classify(b"DEALLOCATE"), Statements::Other);
        assert_eq!(classify(b"SELECT 1"), Statements::Other);
        assert!(drops_statements(b"  deallocate all"));
        assert!(!drops_statements(b"SELECT 1"));
    }
}
