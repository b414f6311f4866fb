//! Requests the pooler answers without a backend: Parse of statements a backend already
//! accepted and Close of statements, ending in Sync (libpq's PQprepare / PQclosePrepared, JDBC
//! and pgbench -M prepared send these). Besides saving a round trip, this keeps a client that
//! prepares while holding no backend from waiting for one: pgbench prepares synchronously
//! while its other clients hold every backend in a transaction, which would deadlock.

use super::caches::ClientStatements;
use super::{PoolCache, Statement, hash_body};
use bytes::{Buf, BytesMut};
use doorman_wire::frame::{HEADER_LEN, MAX_MESSAGE_LEN, peek_header};
use doorman_wire::frontend::{Kind, Parse, Target, tag};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Most messages in a request answered here.
const MAX_FRAMES: usize = 64;

/// One message of such a request.
enum Step<'a> {
    Parse(&'a [u8], Arc<Statement>),
    Close(&'a [u8]),
}

fn statement(
    pool: &PoolCache,
    client: &mut Option<Box<ClientStatements>>,
    body: &[u8],
    salt: u64,
) -> Option<Arc<Statement>> {
    let hash = hash_body(body) ^ salt;
    let st = match client.as_deref_mut().and_then(|c| c.recent(hash, body)) {
        Some(s) => s,
        None => pool.get(hash, body)?,
    };
    st.verified.load(Ordering::Relaxed).then_some(st)
}

/// True when `buf` starts with a complete run of Parse and Close messages ending in Sync (read
/// from the headers alone). Most requests fail this at their second message (Bind), before
/// any statement text is hashed or looked up.
fn only_parse_close(buf: &[u8]) -> bool {
    let mut pos = 0;
    for _ in 0..=MAX_FRAMES + 1 {
        let Ok(Some(h)) = peek_header(&buf[pos..], MAX_MESSAGE_LEN) else {
            return false;
        };
        match h.tag {
            tag::SYNC => return pos > 0,
            tag::PARSE | tag::CLOSE => pos += h.frame_len(),
            _ => return false,
        }
        if pos > buf.len() {
            return false;
        }
    }
    false
}

/// Splits `buf` into the steps of a Parse/Close…Sync request; None if it is anything else or
/// not complete yet. Returns the request's length too.
fn plan<'a>(
    buf: &'a [u8],
    pool: &PoolCache,
    client: &mut Option<Box<ClientStatements>>,
    salt: u64,
) -> Option<(Vec<Step<'a>>, usize)> {
    if !only_parse_close(buf) {
        return None;
    }
    let mut steps = Vec::new();
    let mut pos = 0;
    loop {
        let h = peek_header(&buf[pos..], MAX_MESSAGE_LEN).ok()??;
        let end = pos + h.frame_len();
        let body = buf.get(pos + HEADER_LEN..end)?;
        match h.tag {
            tag::SYNC => return (!steps.is_empty()).then_some((steps, end)),
            tag::PARSE => {
                // Malformed: the backend path answers it as PostgreSQL does.
                let p = Parse::decode(body).ok()?;
                if !p.name.is_empty() && client.as_deref().is_some_and(|c| c.contains(p.name)) {
                    return None; // 42P05 is the backend path's business
                }
                let st = statement(pool, client, p.statement, salt)?;
                steps.push(Step::Parse(p.name, st));
            }
            tag::CLOSE => match Target::decode(body, "Close").ok()? {
                t if t.kind == Kind::Statement => steps.push(Step::Close(t.name)),
                _ => return None,
            },
            _ => return None,
        }
        if steps.len() > MAX_FRAMES {
            return None;
        }
        pos = end;
    }
}

/// If the buffered request is only Parse (of verified statements) and Close-statement messages
/// ending in Sync, applies it to the client's names, consumes it from `buf` and returns the
/// reply (ParseComplete/CloseComplete each, then ReadyForQuery with `status`: 'I' for a client
/// without a backend, 'T' inside a deferred BEGIN).
pub fn answer_without_backend(
    buf: &mut BytesMut,
    pool: &PoolCache,
    client: &mut Option<Box<ClientStatements>>,
    client_cap: usize,
    status: u8,
    parse_ctx: u64,
) -> Option<BytesMut> {
    if !matches!(buf.first(), Some(&tag::PARSE | &tag::CLOSE)) {
        return None;
    }
    let (steps, len) = plan(buf, pool, client, pool.salt(parse_ctx))?;
    let mut out = BytesMut::with_capacity(steps.len() * 5 + 6);
    let names = client
        .get_or_insert_with(|| Box::new(ClientStatements::new(client_cap, pool.clients.clone())));
    for step in steps {
        match step {
            Step::Parse(name, st) => {
                names.remember(&st);
                names.insert(name, st);
                out.extend_from_slice(&[b'1', 0, 0, 0, 4]);
            }
            Step::Close(name) => {
                names.remove(name);
                out.extend_from_slice(&[b'3', 0, 0, 0, 4]);
            }
        }
    }
    out.extend_from_slice(&[
        doorman_wire::backend::tag::READY_FOR_QUERY,
        0,
        0,
        0,
        5,
        status,
    ]);
    buf.advance(len);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroUsize;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn header_prescan_accepts_only_parse_close_sync() {
        let p = frame(b'P', b"\0SELECT 1\0\0\0");
        let sync = frame(b'S', b"");
        let bind = frame(b'B', b"\0\0\0\0\0\0");
        let ok = [p.clone(), frame(b'C', b"Ss1\0"), sync.clone()].concat();
        assert!(only_parse_close(&ok));
        assert!(!only_parse_close(&[p.clone(), bind, sync.clone()].concat()));
        assert!(!only_parse_close(&sync), "a bare Sync");
        assert!(!only_parse_close(&p), "no Sync yet");
        assert!(!only_parse_close(&ok[..ok.len() - 1]), "Sync incomplete");
        let many: Vec<u8> = std::iter::repeat_n(p, MAX_FRAMES + 2).flatten().collect();
        assert!(!only_parse_close(&[many, sync].concat()), "too many frames");
    }

    #[test]
    fn answers_known_parse_and_close_only() {
        let pool = PoolCache::new(NonZeroUsize::new(8).unwrap());
        let body = b"SELECT 1\0\0\0";
        let mut client = None;
        let mut req = frame(b'P', b"s1\0SELECT 1\0\0\0");
        req.extend(frame(b'S', b""));
        // Unknown to the pool: needs a backend.
        let mut buf = BytesMut::from(&req[..]);
        assert!(answer_without_backend(&mut buf, &pool, &mut client, 0, b'I', 0).is_none());
        let st = pool.intern(hash_body(body), body);
        assert!(answer_without_backend(&mut buf, &pool, &mut client, 0, b'I', 0).is_none());
        st.verified.store(true, Ordering::Relaxed);
        let out = answer_without_backend(&mut buf, &pool, &mut client, 0, b'I', 0).unwrap();
        assert_eq!(&out[..], b"1\0\0\0\x04Z\0\0\0\x05I");
        assert!(buf.is_empty());
        assert_eq!(client.as_deref_mut().unwrap().get(b"s1").unwrap().id, st.id);
        // A second Parse of the same name is an error only a backend path reports.
        let mut buf = BytesMut::from(&req[..]);
        assert!(answer_without_backend(&mut buf, &pool, &mut client, 0, b'I', 0).is_none());
        let mut close = frame(b'C', b"Ss1\0");
        close.extend(frame(b'S', b""));
        close.extend(frame(b'Q', b"SELECT 1\0"));
        let mut buf = BytesMut::from(&close[..]);
        let out = answer_without_backend(&mut buf, &pool, &mut client, 0, b'I', 0).unwrap();
        assert_eq!(&out[..], b"3\0\0\0\x04Z\0\0\0\x05I");
        assert_eq!(buf[0], b'Q', "only the request itself is consumed");
        assert!(client.as_deref().unwrap().is_empty());
    }
}
