//! Backend → client: matches replies to the conversation's queue of expected ones, drops
//! replies to what the pooler injected, puts made-up replies where PostgreSQL would have sent
//! them, and reads the few messages the pooler acts on (ReadyForQuery, ParameterStatus,
//! ErrorResponse).

use super::ParamSink;
use super::attachment::Attachment;
use super::conversation::{Conversation, Copy, Expect, Synth, TxStatus};
use super::tally::{ERROR_CLASSES, Tally, error_class};
use crate::params::{ParamSet, tracked_name};
use bytes::BytesMut;
use doorman_wire::HEADER_LEN;
use doorman_wire::WireError;
use doorman_wire::backend::{parse_parameter_status, tag};
use doorman_wire::fields::{code, each_field};
use doorman_wire::frame::splice;

/// Scans the backend's output in `buf` for the client: matches each reply against the
/// conversation's queue, drops replies to what the pooler injected, puts made-up replies where
/// PostgreSQL would have sent them, reads ReadyForQuery and ParameterStatus, and stops at the
/// release point (`release`: transaction mode) with `at.released`.
///
/// # Errors
/// [`WireError`] when the backend breaks the protocol.
pub fn scan_server(
    buf: &mut BytesMut,
    server_params: &mut ParamSet,
    conv: &mut Conversation,
    at: &mut Attachment,
    release: bool,
    sink: &mut ParamSink<'_>,
) -> Result<(), WireError> {
    loop {
        if at.released {
            return Ok(());
        }
        // Made-up replies go after a streamed frame, before the next one.
        if !conv.scan.finish_skip(buf) {
            return Ok(());
        }
        if conv.scan.ready == 0 {
            conv.synth_only = true;
        }
        let front = emit_front(buf, conv);
        let sc = &mut conv.scan;
        let Some(h) = sc.next_header(buf)? else {
            return Ok(());
        };
        let len = h.frame_len();
        let read = matches!(h.tag, tag::READY_FOR_QUERY | tag::PARAMETER_STATUS);
        // Frames that are read or may be dropped are taken whole (they are small), so each
        // frame is matched against the reply queue exactly once.
        if (read || matches!(h.tag, tag::PARSE_COMPLETE | tag::CLOSE_COMPLETE))
            && buf.len() - sc.ready < len
        {
            return Ok(());
        }
        conv.synth_only = false;
        let at_frame = conv.scan.ready;
        if reply_to(h.tag, front, conv) == Reply::Drop {
            splice(buf, at_frame, len, &[]);
            continue;
        }
        let sc = &mut conv.scan;
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
        let body = &buf[pos + HEADER_LEN..pos + len];
        sc.ready += len;
        if h.tag == tag::READY_FOR_QUERY {
            let status = body
                .first()
                .copied()
                .and_then(TxStatus::from_byte)
                .ok_or(WireError::Invalid("ReadyForQuery status"))?;
            conv.status = status;
            conv.pending = conv.pending.saturating_sub(1);
            let now = crate::clock::Micros::now();
            if let Some(slot) = at.query_us.get_mut(at.tally.queries as usize)
                && let Some(prev) = at.last_end.or(at.attached)
            {
                let us = now.us_since(prev);
                *slot = u32::try_from(us).unwrap_or(u32::MAX);
            }
            at.last_end = Some(now);
            at.tally.queries += 1;
            if status == TxStatus::Idle {
                at.tally.xacts += 1;
            }
            if (release || at.resets != 0)
                && conv.pending == 0
                && !conv.unsynced
                && status == TxStatus::Idle
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
fn count_error(frame: &[u8], len: usize, tally: &mut Tally) -> u8 {
    let body = &frame[HEADER_LEN.min(frame.len())..len.min(frame.len())];
    let mut class = ERROR_CLASSES.len() - 1;
    let mut flags = 0;
    let mut feature = false;
    for (t, value) in each_field(body) {
        match t {
            code::SEVERITY_NONLOCALIZED if value == b"FATAL" || value == b"PANIC" => {
                flags |= ERROR_FATAL
            }
            code::SQLSTATE => {
                class = error_class(value);
                match value {
                    b"XX000" => flags |= ERROR_STALE,
                    b"0A000" => feature = true,
                    // Fields after the code matter only for 0A000.
                    _ => break,
                }
            }
            code::ROUTINE if feature && value == b"RevalidateCachedQuery" => flags |= ERROR_STALE,
            _ => {}
        }
    }
    tally.errors[class] += 1;
    flags
}

/// What to do with one backend message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Relay it.
    Pass,
    /// Drop it (reply to a message the client did not send).
    Drop,
}

/// Emits the made-up replies at the front of the queue at the scan position (only between
/// messages, once everything before them was relayed); returns the front left, a reply the
/// backend owes (read once per message: [`reply_to`] takes it).
pub(crate) fn emit_front(buf: &mut BytesMut, conv: &mut Conversation) -> Option<Expect> {
    if conv.scan.skip != 0 {
        return conv.expect.front().copied();
    }
    loop {
        let front = conv.expect.front().copied();
        match front {
            Some(Expect::Synth(s)) => {
                let made;
                let bytes = match s {
                    Synth::Duplicate(n) => {
                        made = conv.duplicate_error(n);
                        &made[..]
                    }
                    fixed => fixed.bytes().unwrap_or_default(),
                };
                splice(buf, conv.scan.ready, 0, bytes);
                conv.scan.ready += bytes.len();
            }
            // The end of a COPY whose command already finished (or failed): nothing to do.
            Some(Expect::CopyEnd) => {}
            Some(Expect::NameAdded) => conv.name_confirmed(),
            _ => return front,
        }
        conv.expect.pop_front();
    }
}

/// CopyInResponse: the backend now ignores Sync/Flush until the client's CopyDone/CopyFail,
/// so Syncs the client sent in between get no ReadyForQuery.
fn on_copy_in(p: &mut Conversation) {
    let mut i = 1;
    while i < p.expect.len() {
        match p.expect[i] {
            Expect::CopyEnd => {
                p.expect.remove(i);
                return;
            }
            Expect::Ready { skippable: false } => {
                p.expect.remove(i);
                p.pending = p.pending.saturating_sub(1);
            }
            _ => i += 1,
        }
    }
    p.copy = Copy::In;
}

/// Matches a backend message of type `t` against the queue; queries the backend skips after
/// an error are taken off the count of outstanding ReadyForQuery.
#[cfg(test)]
pub(crate) fn on_reply(t: u8, p: &mut Conversation) -> Reply {
    let front = p.expect.front().copied();
    reply_to(t, front, p)
}

/// [`on_reply`] with the queue's front already read (`front`, as [`emit_front`] left it).
fn reply_to(t: u8, front: Option<Expect>, p: &mut Conversation) -> Reply {
    let Some(front) = front else {
        copy_state(t, p);
        if t == tag::ERROR_RESPONSE {
            p.copy = Copy::None;
        }
        return Reply::Pass;
    };
    let done = match (t, front) {
        (tag::PARSE_COMPLETE, Expect::Parse { swallow, id }) => {
            p.expect.pop_front();
            p.statements.confirm(id);
            return if swallow { Reply::Drop } else { Reply::Pass };
        }
        (tag::CLOSE_COMPLETE, Expect::Close { swallow }) => {
            p.expect.pop_front();
            return if swallow { Reply::Drop } else { Reply::Pass };
        }
        (tag::BIND_COMPLETE, Expect::Bind) => true,
        (tag::ROW_DESCRIPTION | tag::NO_DATA, Expect::Describe) => true,
        (
            tag::COMMAND_COMPLETE | tag::EMPTY_QUERY_RESPONSE | tag::PORTAL_SUSPENDED,
            Expect::Execute,
        ) => true,
        (tag::READY_FOR_QUERY, _) => {
            copy_state(t, p);
            // Everything up to this Sync/Query is answered; what is left before it was skipped.
            while let Some(e) = p.expect.pop_front() {
                if matches!(e, Expect::Ready { .. }) {
                    break;
                }
                p.skipped(e);
            }
            // The end of a COPY that never started (its command failed) is owed by nobody.
            while p.expect.front() == Some(&Expect::CopyEnd) {
                p.expect.pop_front();
            }
            return Reply::Pass;
        }
        (tag::ERROR_RESPONSE, _) => {
            on_error(p);
            return Reply::Pass;
        }
        (tag::COPY_IN_RESPONSE, _) => {
            on_copy_in(p);
            return Reply::Pass;
        }
        (tag::COPY_OUT_RESPONSE | tag::COPY_DONE, _) => {
            copy_state(t, p);
            false
        }
        _ => false,
    };
    if done {
        p.expect.pop_front();
    }
    Reply::Pass
}

/// COPY out: CopyOutResponse starts it, the backend's CopyDone (or ReadyForQuery, or an error)
/// ends it. Called only for those message types, so other messages cost no test.
#[inline]
fn copy_state(t: u8, p: &mut Conversation) {
    if p.copy == Copy::Out {
        if matches!(t, tag::COPY_DONE | tag::READY_FOR_QUERY) {
            p.copy = Copy::None;
        }
    } else if t == tag::COPY_OUT_RESPONSE {
        p.copy = Copy::Out;
    }
}

/// An ErrorResponse for the message at the front. In a simple Query, a FunctionCall or at Sync
/// a ReadyForQuery follows; otherwise the backend skips everything until the next Sync, so
/// nothing else before it is answered (made-up replies included, as PostgreSQL sends none).
fn on_error(p: &mut Conversation) {
    // An error ends COPY; later Syncs count again (protocol §55.2.6).
    p.copy = Copy::None;
    if matches!(p.expect.front(), Some(Expect::Ready { .. })) {
        return;
    }
    // The error answers a client's Parse: PostgreSQL drops the unnamed statement as a Parse
    // begins, so the name the Parse set is gone, not taken back to what it was.
    if let Some(e @ Expect::Parse { swallow: false, .. }) = p.expect.front().copied() {
        p.expect.pop_front();
        p.skipped(e);
        if p.expect.front() == Some(&Expect::NameAdded) {
            p.expect.pop_front();
            p.name_failed();
        }
    }
    while let Some(e) = p.expect.front().copied() {
        match e {
            Expect::Ready { skippable: false } => return,
            Expect::Ready { skippable: true } => p.pending = p.pending.saturating_sub(1),
            other => p.skipped(other),
        }
        p.expect.pop_front();
    }
    // No Sync sent yet: what the client sends until then is ignored by the backend too.
    p.skipping = true;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::test_frames as frames;

    fn queue(items: &[Expect]) -> Conversation {
        let mut p = Conversation::new(8);
        p.expect.extend(items.iter().copied());
        p
    }

    fn sink(wanted: &mut ParamSet) -> ParamSink<'_> {
        ParamSink {
            wanted,
            log: false,
            pinned: None,
            leave: None,
            stall_limit: None,
        }
    }

    #[test]
    fn errors_that_mean_a_stale_statement_or_a_closing_backend_are_told_apart() {
        let flags = |body: &[u8]| {
            let f = frames(&[(tag::ERROR_RESPONSE, body)]);
            let mut tally = Tally::default();
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
    fn server_scan_releases_only_when_all_answered() {
        let buf = frames(&[
            (b'C', b"SELECT 1\0"),
            (b'Z', b"I"),
            (b'C', b"SELECT 1\0"),
            (b'S', b"TimeZone\0UTC\0"),
            (b'Z', b"I"),
            (b'N', b"x"),
        ]);
        let mut conv = Conversation::new(8);
        conv.pending = 2;
        conv.status = TxStatus::InBlock;
        let mut at = Attachment::default();
        let mut params = ParamSet::default();
        let mut wanted = ParamSet::default();
        let mut buf = BytesMut::from(&buf[..]);
        let mut s = sink(&mut wanted);
        scan_server(&mut buf, &mut params, &mut conv, &mut at, true, &mut s).unwrap();
        assert!(at.released);
        assert_eq!(conv.pending, 0);
        assert_eq!(conv.scan.ready, buf.len() - 6);
        assert!(conv.is_reusable());
        assert_eq!(params.get("TimeZone"), Some("UTC"));
        assert_eq!(wanted.get("TimeZone"), Some("UTC"));
    }

    #[test]
    fn server_scan_holds_in_transaction_and_refuses_a_bad_status() {
        let mut conv = Conversation::new(8);
        conv.pending = 1;
        let mut at = Attachment::default();
        let (mut p, mut w) = (ParamSet::default(), ParamSet::default());
        let mut buf = BytesMut::from(&frames(&[(b'Z', b"T")])[..]);
        scan_server(
            &mut buf,
            &mut p,
            &mut conv,
            &mut at,
            true,
            &mut sink(&mut w),
        )
        .unwrap();
        assert!(!at.released);
        assert_eq!(conv.status, TxStatus::InBlock);
        let mut bad = BytesMut::from(&frames(&[(b'Z', b"Q")])[..]);
        let mut conv = Conversation::new(8);
        let r = scan_server(
            &mut bad,
            &mut p,
            &mut conv,
            &mut at,
            true,
            &mut sink(&mut w),
        );
        assert!(r.is_err());
    }

    #[test]
    fn injected_parse_complete_is_dropped_and_bind_passes() {
        let mut p = queue(&[
            Expect::Parse {
                id: 3,
                swallow: true,
            },
            Expect::Bind,
            Expect::Execute,
            Expect::Ready { skippable: false },
        ]);
        p.pending = 1;
        assert_eq!(on_reply(b'1', &mut p), Reply::Drop);
        for t in [b'2', b'D', b'C', b'Z'] {
            assert_eq!(on_reply(t, &mut p), Reply::Pass);
        }
        assert!(p.expect.is_empty());
    }

    #[test]
    fn error_skips_to_sync_and_forgets_unparsed() {
        let mut p = queue(&[
            Expect::Bind,
            Expect::Execute,
            Expect::Synth(Synth::ParseComplete),
            Expect::Parse {
                id: 9,
                swallow: false,
            },
            Expect::Ready { skippable: true },
            Expect::Ready { skippable: false },
        ]);
        let st = std::sync::Arc::new(crate::prepared::Statement::new(9, 9, &[]));
        p.statements.add(&st);
        p.pending = 2;
        assert_eq!(on_reply(b'E', &mut p), Reply::Pass);
        assert_eq!(p.pending, 1, "the skipped Query sends no ReadyForQuery");
        assert!(!p.statements.has(&st));
        assert_eq!(p.expect.len(), 1);
        assert!(!p.skipping);
        // Without a Sync queued, later messages are skipped too.
        let mut q = queue(&[Expect::Describe]);
        on_reply(b'E', &mut q);
        assert!(q.skipping && q.expect.is_empty());
    }

    #[test]
    fn copy_out_holds_the_backend_until_it_ends() {
        let mut p = queue(&[Expect::Execute, Expect::Ready { skippable: false }]);
        p.pending = 1;
        on_reply(tag::COPY_OUT_RESPONSE, &mut p);
        assert_eq!(p.copy, Copy::Out);
        on_reply(tag::COPY_DATA, &mut p);
        on_reply(tag::COPY_DONE, &mut p);
        assert_eq!(p.copy, Copy::None);
        on_reply(tag::COMMAND_COMPLETE, &mut p);
        on_reply(tag::READY_FOR_QUERY, &mut p);
        assert!(p.expect.is_empty());
    }

    #[test]
    fn made_up_replies_go_out_between_messages() {
        let mut p = queue(&[
            Expect::Synth(Synth::ParseComplete),
            Expect::Bind,
            Expect::Synth(Synth::CloseComplete),
        ]);
        let mut buf = BytesMut::from(&b"2\0\0\0\x04"[..]);
        emit_front(&mut buf, &mut p);
        assert_eq!(&buf[..], b"1\0\0\0\x042\0\0\0\x04");
        assert_eq!(p.scan.ready, 5);
        on_reply(b'2', &mut p);
        p.scan.ready += 5;
        emit_front(&mut buf, &mut p);
        assert_eq!(&buf[..], b"1\0\0\0\x042\0\0\0\x043\0\0\0\x04");
    }
}
