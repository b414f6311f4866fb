//! Backend → client: matches replies to the queue of expected ones, drops replies to what the
//! pooler injected, and puts made-up replies where PostgreSQL would have sent them.

use super::caches::{Expect, ServerPrepared, Synth};
use super::splice::splice;
use crate::relay::Scan;
use bytes::BytesMut;

/// What to do with one backend message.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Relay it.
    Pass,
    /// Drop it (reply to a message the client did not send).
    Drop,
}

/// Emits the made-up replies at the front of the queue at the scan position (only between
/// messages, once everything before them was relayed).
pub fn emit_front(buf: &mut BytesMut, sc: &mut Scan, p: &mut ServerPrepared) {
    if sc.skip != 0 {
        return;
    }
    loop {
        match p.expect.front().copied() {
            Some(Expect::Synth(s)) => {
                let made;
                let bytes = match s {
                    Synth::Duplicate(n) => {
                        made = p.duplicate_error(n);
                        &made[..]
                    }
                    fixed => fixed.bytes().unwrap_or_default(),
                };
                splice(buf, sc.ready, 0, bytes);
                sc.ready += bytes.len();
            }
            // The end of a COPY whose command already finished (or failed): nothing to do.
            Some(Expect::CopyEnd) => {}
            _ => return,
        }
        p.expect.pop_front();
    }
}

/// CopyInResponse: the backend now ignores Sync/Flush until the client's CopyDone/CopyFail,
/// so Syncs the client sent in between get no ReadyForQuery.
fn on_copy_in(p: &mut ServerPrepared, pending: &mut u32) {
    let mut i = 1;
    while i < p.expect.len() {
        match p.expect[i] {
            Expect::CopyEnd => {
                p.expect.remove(i);
                return;
            }
            Expect::Ready { skippable: false } => {
                p.expect.remove(i);
                *pending = pending.saturating_sub(1);
            }
            _ => i += 1,
        }
    }
    p.copy_in = true;
}

/// Matches a backend message of type `tag` against the queue. `pending` is the relay's count of
/// outstanding ReadyForQuery; queries the backend skips after an error are taken off it.
pub fn on_reply(tag: u8, p: &mut ServerPrepared, pending: &mut u32) -> Reply {
    let Some(front) = p.expect.front().copied() else {
        return Reply::Pass;
    };
    let done = match (tag, front) {
        (b'1', Expect::Parse { swallow, id }) => {
            p.expect.pop_front();
            p.confirm(id);
            return if swallow { Reply::Drop } else { Reply::Pass };
        }
        (b'3', Expect::Close { swallow }) => {
            p.expect.pop_front();
            return if swallow { Reply::Drop } else { Reply::Pass };
        }
        (b'2', Expect::Bind) => true,
        (b'T' | b'n', Expect::Describe) => true,
        (b'C' | b'I' | b's', Expect::Execute) => true,
        (b'Z', _) => {
            // Everything up to this Sync/Query is answered; what is left before it was skipped.
            while let Some(e) = p.expect.pop_front() {
                match e {
                    Expect::Ready { .. } => break,
                    Expect::Parse { id, .. } if id != 0 => p.forget(id),
                    _ => {}
                }
            }
            return Reply::Pass;
        }
        (b'E', _) => {
            on_error(p, pending);
            return Reply::Pass;
        }
        (b'G', _) => {
            on_copy_in(p, pending);
            return Reply::Pass;
        }
        _ => false,
    };
    if done {
        p.expect.pop_front();
    }
    Reply::Pass
}

/// An ErrorResponse for the message at the front. In a simple Query, a FunctionCall or at Sync
/// a ReadyForQuery follows; otherwise the backend skips everything until the next Sync, so
/// nothing else before it is answered (made-up replies included, as PostgreSQL sends none).
fn on_error(p: &mut ServerPrepared, pending: &mut u32) {
    // An error ends copy-in mode; later Syncs count again (protocol §55.2.6).
    p.copy_in = false;
    if matches!(p.expect.front(), Some(Expect::Ready { .. })) {
        return;
    }
    while let Some(e) = p.expect.front().copied() {
        match e {
            Expect::Ready { skippable: false } => return,
            Expect::Ready { skippable: true } => *pending = pending.saturating_sub(1),
            Expect::Parse { id, .. } if id != 0 => p.forget(id),
            _ => {}
        }
        p.expect.pop_front();
    }
    // No Sync sent yet: what the client sends until then is ignored by the backend too.
    p.skipping = true;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepared::caches::Synth;

    fn queue(items: &[Expect]) -> ServerPrepared {
        let mut p = ServerPrepared::new(8);
        p.expect.extend(items.iter().copied());
        p
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
        let mut pending = 1;
        assert_eq!(on_reply(b'1', &mut p, &mut pending), Reply::Drop);
        for t in [b'2', b'D', b'C', b'Z'] {
            assert_eq!(on_reply(t, &mut p, &mut pending), Reply::Pass);
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
        let st = std::sync::Arc::new(crate::prepared::Statement {
            id: 9,
            hash: 9,
            body: Box::new([]),
            verified: Default::default(),
        });
        p.add(&st);
        let mut pending = 2;
        assert_eq!(on_reply(b'E', &mut p, &mut pending), Reply::Pass);
        assert_eq!(pending, 1, "the skipped Query sends no ReadyForQuery");
        assert!(!p.has(&st));
        assert_eq!(p.expect.len(), 1);
        assert!(!p.skipping);
        // Without a Sync queued, later messages are skipped too.
        let mut q = queue(&[Expect::Describe]);
        on_reply(b'E', &mut q, &mut pending);
        assert!(q.skipping && q.expect.is_empty());
    }

    #[test]
    fn made_up_replies_go_out_between_messages() {
        let mut p = queue(&[
            Expect::Synth(Synth::ParseComplete),
            Expect::Bind,
            Expect::Synth(Synth::CloseComplete),
        ]);
        let mut buf = BytesMut::from(&b"2\0\0\0\x04"[..]);
        let mut sc = Scan::default();
        emit_front(&mut buf, &mut sc, &mut p);
        assert_eq!(&buf[..], b"1\0\0\0\x042\0\0\0\x04");
        assert_eq!(sc.ready, 5);
        let mut pending = 0;
        on_reply(b'2', &mut p, &mut pending);
        sc.ready += 5;
        emit_front(&mut buf, &mut sc, &mut p);
        assert_eq!(&buf[..], b"1\0\0\0\x042\0\0\0\x043\0\0\0\x04");
    }
}
