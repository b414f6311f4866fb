//! Frontend (client → server) messages: which type bytes exist, writers for what the pooler
//! sends to a backend, and decoders for the authentication replies it receives from clients.

pub mod messages;

pub use messages::{
    Bind, BindNames, CopyFail, Execute, FunctionCall, Kind, Message, Parse, Query, Span, Target,
};

use crate::WireError;
use crate::frame::{Reader, begin, finish};
use bytes::{BufMut, BytesMut};

/// Frontend message type bytes (protocol §55.7).
pub mod tag {
    /// Bind.
    pub const BIND: u8 = b'B';
    /// Close.
    pub const CLOSE: u8 = b'C';
    /// CopyData.
    pub const COPY_DATA: u8 = b'd';
    /// CopyDone.
    pub const COPY_DONE: u8 = b'c';
    /// CopyFail.
    pub const COPY_FAIL: u8 = b'f';
    /// Describe.
    pub const DESCRIBE: u8 = b'D';
    /// Execute.
    pub const EXECUTE: u8 = b'E';
    /// Flush.
    pub const FLUSH: u8 = b'H';
    /// FunctionCall.
    pub const FUNCTION_CALL: u8 = b'F';
    /// Parse.
    pub const PARSE: u8 = b'P';
    /// PasswordMessage / SASLInitialResponse / SASLResponse.
    pub const PASSWORD: u8 = b'p';
    /// Query.
    pub const QUERY: u8 = b'Q';
    /// Sync.
    pub const SYNC: u8 = b'S';
    /// Terminate.
    pub const TERMINATE: u8 = b'X';
}

/// True for message types a client may send after authentication.
#[inline]
pub fn is_session_tag(t: u8) -> bool {
    use tag::*;
    matches!(
        t,
        BIND | CLOSE
            | COPY_DATA
            | COPY_DONE
            | COPY_FAIL
            | DESCRIBE
            | EXECUTE
            | FLUSH
            | FUNCTION_CALL
            | PARSE
            | QUERY
            | SYNC
            | TERMINATE
    )
}

/// Cap (bytes) for message types whose body the protocol bounds; PostgreSQL applies
/// `PQ_SMALL_MESSAGE_LIMIT` to them. Others may be up to [`crate::frame::MAX_MESSAGE_LEN`].
#[inline]
pub fn max_len(t: u8) -> u32 {
    use tag::*;
    match t {
        SYNC | FLUSH | TERMINATE | COPY_DONE | CLOSE | DESCRIBE | EXECUTE | COPY_FAIL => {
            crate::frame::SMALL_MESSAGE_LEN
        }
        _ => crate::frame::MAX_MESSAGE_LEN,
    }
}

/// Appends a Query.
pub fn write_query(buf: &mut BytesMut, sql: &str) {
    Query {
        sql: sql.as_bytes(),
    }
    .encode(buf);
}

/// Appends the extended-protocol round trip for a one-off query with text parameters
/// (protocol §55.2.3): Parse (unnamed statement, types left to the server), Bind (unnamed
/// portal, every parameter and result in text format; `None` is SQL NULL), Describe of the
/// portal (so RowDescription names the columns), Execute (all rows) and Sync.
pub fn write_one_off_query(buf: &mut BytesMut, sql: &str, params: &[Option<&str>]) {
    let at = begin(buf, tag::PARSE);
    buf.put_u8(0);
    buf.put_slice(sql.as_bytes());
    buf.put_u8(0);
    buf.put_i16(0);
    finish(buf, at);
    let at = begin(buf, tag::BIND);
    buf.put_slice(&[0, 0]);
    buf.put_i16(0);
    buf.put_i16(params.len() as i16);
    for p in params {
        match p {
            Some(v) => {
                buf.put_i32(v.len() as i32);
                buf.put_slice(v.as_bytes());
            }
            None => buf.put_i32(-1),
        }
    }
    buf.put_i16(0);
    finish(buf, at);
    Target {
        kind: Kind::Portal,
        name: b"",
    }
    .encode(buf, tag::DESCRIBE);
    Execute {
        portal: b"",
        max_rows: 0,
    }
    .encode(buf);
    buf.put_slice(&messages::SYNC_FRAME);
}

/// Appends Terminate.
pub fn write_terminate(buf: &mut BytesMut) {
    buf.put_slice(&messages::TERMINATE_FRAME);
}

/// Appends a PasswordMessage carrying a NUL-terminated password or MD5 response.
pub fn write_password(buf: &mut BytesMut, password: &[u8]) {
    let at = begin(buf, tag::PASSWORD);
    buf.put_slice(password);
    buf.put_u8(0);
    finish(buf, at);
}

/// Appends SASLInitialResponse for `mechanism` with client-first-message `data`.
pub fn write_sasl_initial_response(buf: &mut BytesMut, mechanism: &str, data: &[u8]) {
    let at = begin(buf, tag::PASSWORD);
    buf.put_slice(mechanism.as_bytes());
    buf.put_u8(0);
    buf.put_i32(data.len() as i32);
    buf.put_slice(data);
    finish(buf, at);
}

/// Appends SASLResponse with `data`.
pub fn write_sasl_response(buf: &mut BytesMut, data: &[u8]) {
    let at = begin(buf, tag::PASSWORD);
    buf.put_slice(data);
    finish(buf, at);
}

/// Decodes a PasswordMessage body: the NUL-terminated password (cleartext or `md5...`).
pub fn parse_password(body: &[u8]) -> Result<&str, WireError> {
    Reader::new(body, "PasswordMessage").cstr()
}

/// Decodes a SASLInitialResponse body into (mechanism, client-first-message).
pub fn parse_sasl_initial_response(body: &[u8]) -> Result<(&str, &[u8]), WireError> {
    let mut r = Reader::new(body, "SASLInitialResponse");
    let mech = r.cstr()?;
    let len = r.i32()?;
    if len < 0 {
        return Err(WireError::Invalid(
            "SASLInitialResponse: missing client-first-message",
        ));
    }
    let data = r.bytes(len as usize)?;
    Ok((mech, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_initial_round_trip() {
        let mut b = BytesMut::new();
        write_sasl_initial_response(&mut b, "SCRAM-SHA-256", b"n,,n=,r=abc");
        assert_eq!(
            parse_sasl_initial_response(&b[5..]).unwrap(),
            ("SCRAM-SHA-256", &b"n,,n=,r=abc"[..])
        );
        assert!(parse_sasl_initial_response(b"SCRAM\0\0\0\0\x09ab").is_err());
    }

    #[test]
    fn one_off_query_frames() {
        let mut b = BytesMut::new();
        write_one_off_query(&mut b, "SELECT $1", &[Some("bob"), None]);
        let mut rest = &b[..];
        let mut tags = Vec::new();
        while let Some((h, frame)) = crate::frame::complete_frame(rest, 1 << 20).unwrap() {
            tags.push(h.tag);
            if h.tag == tag::BIND {
                // portal "", statement "", 0 formats, 2 params: "bob" and NULL, 0 formats.
                let body = &frame[5..];
                assert_eq!(body, b"\0\0\0\0\0\x02\0\0\0\x03bob\xff\xff\xff\xff\0\0");
            }
            rest = &rest[h.frame_len()..];
        }
        assert!(rest.is_empty());
        assert_eq!(tags, b"PBDES");
    }

    #[test]
    fn password_round_trip() {
        let mut b = BytesMut::new();
        write_password(&mut b, b"secret");
        assert_eq!(parse_password(&b[5..]).unwrap(), "secret");
        assert!(parse_password(b"nonul").is_err());
    }

    #[test]
    fn tags_and_caps() {
        assert!(is_session_tag(b'Q'));
        assert!(!is_session_tag(b'p'));
        assert!(!is_session_tag(b'Z'));
        assert_eq!(max_len(b'S'), 10_000);
        assert_eq!(max_len(b'd'), crate::frame::MAX_MESSAGE_LEN);
    }
}
