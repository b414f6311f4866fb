//! Replies the pooler writes itself for requests that need no backend.

use bytes::{BufMut, BytesMut};
use doorman_wire::frame::{MAX_MESSAGE_LEN, peek_header};

/// Longest simple query read for transaction control, bytes.
const SHORT: usize = 128;

/// The text of a complete, short simple Query at the front of `buf` and the frame length.
pub fn simple_query(buf: &[u8]) -> Option<(&[u8], usize)> {
    if buf.first() != Some(&b'Q') {
        return None;
    }
    let h = peek_header(buf, MAX_MESSAGE_LEN).ok()??;
    let len = h.frame_len();
    if len > SHORT + 6 || buf.len() < len {
        return None;
    }
    let text = &buf[5..len];
    Some((text.strip_suffix(b"\0")?, len))
}

/// CommandComplete tag PostgreSQL sends for a BEGIN-class statement.
pub fn begin_tag(sql: &[u8]) -> &'static str {
    let s = sql.trim_ascii_start();
    if s.len() >= 5 && s[..5].eq_ignore_ascii_case(b"START") {
        "START TRANSACTION"
    } else {
        "BEGIN"
    }
}

/// CommandComplete `tag` then ReadyForQuery `status`.
pub fn command_complete(tag: &str, status: u8) -> BytesMut {
    let mut out = BytesMut::with_capacity(tag.len() + 12);
    out.put_u8(b'C');
    out.put_u32((tag.len() + 5) as u32);
    out.put_slice(tag.as_bytes());
    out.put_u8(0);
    doorman_wire::backend::write_ready_for_query(&mut out, status);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_queries_only() {
        let q = b"Q\0\0\0\x0aBEGIN\0rest";
        assert_eq!(simple_query(q), Some((&b"BEGIN"[..], 11)));
        assert_eq!(simple_query(b"Q\0\0\0\x0aBEG"), None, "incomplete");
        assert_eq!(simple_query(b"P\0\0\0\x04"), None);
        assert_eq!(begin_tag(b" start transaction"), "START TRANSACTION");
        assert_eq!(
            &command_complete("BEGIN", b'T')[..],
            b"C\0\0\0\x0aBEGIN\0Z\0\0\0\x05T"
        );
    }
}
