//! Layouts of the client messages the pooler reads or rewrites (protocol §55.7): borrowed views
//! that decode a body without copying, writers that append a whole frame, and the [`Span`]s of
//! the statement names the prepared-statement rewrite replaces in place. Nothing outside this
//! module knows where a field sits in a frame.
//!
//! Decoders are as strict as PostgreSQL's own (`pq_getmsg*` then `pq_getmsgend`): a body with
//! missing or trailing bytes is [`WireError`], never a panic.

use super::tag;
use crate::WireError;
use crate::frame::{HEADER_LEN, Reader, begin, finish, set_frame_len, splice};
use bytes::{BufMut, BytesMut};

/// Sync as a whole frame.
pub const SYNC_FRAME: [u8; 5] = [tag::SYNC, 0, 0, 0, 4];
/// Flush as a whole frame.
pub const FLUSH_FRAME: [u8; 5] = [tag::FLUSH, 0, 0, 0, 4];
/// Terminate as a whole frame.
pub const TERMINATE_FRAME: [u8; 5] = [tag::TERMINATE, 0, 0, 0, 4];
/// CopyDone as a whole frame.
pub const COPY_DONE_FRAME: [u8; 5] = [tag::COPY_DONE, 0, 0, 0, 4];

/// Where a NUL-terminated name sits in its frame: `at` bytes from the frame's tag, `len`
/// bytes long, its NUL not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Offset from the start of the frame (the tag byte), bytes.
    pub at: usize,
    /// Length without the NUL, bytes.
    pub len: usize,
}

/// Replaces the name at `span` of the frame at `frame_at` (`frame_len` bytes, tag included)
/// with `new` (no NUL: the frame's own stays) and fixes the frame's length word. Returns the
/// new frame length. The frame need not be all buffered, only up to the end of the name.
pub fn rename(
    buf: &mut BytesMut,
    frame_at: usize,
    frame_len: usize,
    span: Span,
    new: &[u8],
) -> usize {
    splice(buf, frame_at + span.at, span.len, new);
    let new_len = frame_len + new.len() - span.len;
    set_frame_len(buf, frame_at, new_len);
    new_len
}

/// Parse (`P`): statement name, then what PgDoorman calls the statement body (query text,
/// NUL, Int16 parameter-type count, that many Int32 type OIDs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parse<'a> {
    /// Statement name ("" = the unnamed statement), without NUL.
    pub name: &'a [u8],
    /// Query text, NUL, type count and type OIDs: the bytes that identify the statement.
    pub statement: &'a [u8],
}

impl<'a> Parse<'a> {
    /// Decodes a Parse body.
    ///
    /// # Errors
    /// [`WireError::Truncated`] or [`WireError::Invalid`] when a field is missing, the type
    /// count is negative or bytes trail.
    pub fn decode(body: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "Parse");
        let name = r.cbytes()?;
        let statement = r.rest();
        r.cbytes()?;
        let n = r.count()?;
        r.bytes(n * 4)?;
        r.end()?;
        Ok(Parse { name, statement })
    }

    /// The query text as far as `body` (a possibly partial Parse body) holds it: None until
    /// the statement name's NUL is buffered.
    pub fn query_prefix(body: &'a [u8]) -> Option<&'a [u8]> {
        let n = crate::frame::find_nul(body)?;
        let rest = &body[n + 1..];
        Some(match crate::frame::find_nul(rest) {
            Some(q) => &rest[..q],
            None => rest,
        })
    }

    /// The query text (without NUL).
    pub fn query(&self) -> &'a [u8] {
        let end = crate::frame::find_nul(self.statement).unwrap_or(self.statement.len());
        &self.statement[..end]
    }

    /// Where the statement name is in the frame.
    pub fn name_span(&self) -> Span {
        Span {
            at: HEADER_LEN,
            len: self.name.len(),
        }
    }

    /// Appends this Parse as a frame.
    pub fn encode(&self, buf: &mut BytesMut) {
        write_parse(buf, self.name, self.statement);
    }
}

/// Appends a Parse of `statement` (the body after the name, as [`Parse::statement`]) named
/// `name` (no NUL).
pub fn write_parse(buf: &mut BytesMut, name: &[u8], statement: &[u8]) {
    let at = begin(buf, tag::PARSE);
    buf.put_slice(name);
    buf.put_u8(0);
    buf.put_slice(statement);
    finish(buf, at);
}

/// The names at the front of a Bind (`B`), readable before its parameters arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindNames<'a> {
    /// Destination portal, without NUL.
    pub portal: &'a [u8],
    /// Source statement, without NUL.
    pub statement: &'a [u8],
}

impl<'a> BindNames<'a> {
    /// The names from the buffered front of a Bind body; None until both NULs are buffered.
    pub fn decode_prefix(body: &'a [u8]) -> Option<Self> {
        let p = crate::frame::find_nul(body)?;
        let rest = &body[p + 1..];
        let s = crate::frame::find_nul(rest)?;
        Some(BindNames {
            portal: &body[..p],
            statement: &rest[..s],
        })
    }

    /// Where the statement name is in the frame.
    pub fn statement_span(&self) -> Span {
        Span {
            at: HEADER_LEN + self.portal.len() + 1,
            len: self.statement.len(),
        }
    }
}

/// Bind (`B`), whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bind<'a> {
    /// Portal and statement names.
    pub names: BindNames<'a>,
    /// Parameter format codes: Int16 each, big-endian, as sent.
    pub param_formats: &'a [u8],
    /// Number of parameter values.
    pub param_count: usize,
    /// The parameter values as sent: per value an Int32 length (-1 = NULL) and its bytes.
    pub params: &'a [u8],
    /// Result-column format codes: Int16 each, as sent.
    pub result_formats: &'a [u8],
}

/// Reads `n` length-prefixed values (Int32 length, -1 = NULL, then the bytes) and returns the
/// bytes they span.
fn values<'a>(r: &mut Reader<'a>, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
    let start = r.rest();
    for _ in 0..n {
        let len = r.i32()?;
        if len >= 0 {
            r.bytes(len as usize)?;
        } else if len != -1 {
            return Err(WireError::Invalid(what));
        }
    }
    Ok(&start[..start.len() - r.rest().len()])
}

impl<'a> Bind<'a> {
    /// Decodes a Bind body.
    ///
    /// # Errors
    /// [`WireError`] when a field is missing or negative, a value length is below -1, or bytes
    /// trail.
    pub fn decode(body: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "Bind");
        let portal = r.cbytes()?;
        let statement = r.cbytes()?;
        let nf = r.count()?;
        let param_formats = r.bytes(nf * 2)?;
        let param_count = r.count()?;
        let params = values(&mut r, param_count, "Bind")?;
        let nr = r.count()?;
        let result_formats = r.bytes(nr * 2)?;
        r.end()?;
        Ok(Bind {
            names: BindNames { portal, statement },
            param_formats,
            param_count,
            params,
            result_formats,
        })
    }

    /// Appends this Bind as a frame.
    pub fn encode(&self, buf: &mut BytesMut) {
        let at = begin(buf, tag::BIND);
        buf.put_slice(self.names.portal);
        buf.put_u8(0);
        buf.put_slice(self.names.statement);
        buf.put_u8(0);
        buf.put_u16((self.param_formats.len() / 2) as u16);
        buf.put_slice(self.param_formats);
        buf.put_u16(self.param_count as u16);
        buf.put_slice(self.params);
        buf.put_u16((self.result_formats.len() / 2) as u16);
        buf.put_slice(self.result_formats);
        finish(buf, at);
    }
}

/// What a Describe or Close names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A prepared statement (`S`).
    Statement,
    /// A portal (`P`).
    Portal,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Statement => b'S',
            Kind::Portal => b'P',
        }
    }
}

/// Describe (`D`) or Close (`C`): a kind byte and a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// Statement or portal.
    pub kind: Kind,
    /// Its name, without NUL.
    pub name: &'a [u8],
}

impl<'a> Target<'a> {
    /// Decodes a Describe or Close body.
    ///
    /// # Errors
    /// [`WireError::Invalid`] for a kind other than `S`/`P` or trailing bytes;
    /// [`WireError::Truncated`] without the name's NUL.
    pub fn decode(body: &'a [u8], what: &'static str) -> Result<Self, WireError> {
        let mut r = Reader::new(body, what);
        let kind = match r.u8()? {
            b'S' => Kind::Statement,
            b'P' => Kind::Portal,
            _ => return Err(WireError::Invalid(what)),
        };
        let name = r.cbytes()?;
        r.end()?;
        Ok(Target { kind, name })
    }

    /// Where the name is in the frame.
    pub fn name_span(&self) -> Span {
        Span {
            at: HEADER_LEN + 1,
            len: self.name.len(),
        }
    }

    /// Appends this target as a frame of type `tag` ([`tag::DESCRIBE`] or [`tag::CLOSE`]).
    pub fn encode(&self, buf: &mut BytesMut, tag: u8) {
        let at = begin(buf, tag);
        buf.put_u8(self.kind.byte());
        buf.put_slice(self.name);
        buf.put_u8(0);
        finish(buf, at);
    }
}

/// Appends a Close of statement `name` (no NUL).
pub fn write_close_statement(buf: &mut BytesMut, name: &[u8]) {
    Target {
        kind: Kind::Statement,
        name,
    }
    .encode(buf, tag::CLOSE);
}

/// Execute (`E`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execute<'a> {
    /// Portal name, without NUL.
    pub portal: &'a [u8],
    /// Row limit (0 = all rows).
    pub max_rows: i32,
}

impl<'a> Execute<'a> {
    /// Decodes an Execute body.
    ///
    /// # Errors
    /// [`WireError`] when the portal's NUL or the row limit is missing, or bytes trail.
    pub fn decode(body: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "Execute");
        let portal = r.cbytes()?;
        let max_rows = r.i32()?;
        r.end()?;
        Ok(Execute { portal, max_rows })
    }

    /// Appends this Execute as a frame.
    pub fn encode(&self, buf: &mut BytesMut) {
        let at = begin(buf, tag::EXECUTE);
        buf.put_slice(self.portal);
        buf.put_u8(0);
        buf.put_i32(self.max_rows);
        finish(buf, at);
    }
}

/// Query (`Q`): one string of SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    /// The SQL text, without NUL.
    pub sql: &'a [u8],
}

impl<'a> Query<'a> {
    /// Decodes a Query body.
    ///
    /// # Errors
    /// [`WireError`] without the NUL or with bytes after it.
    pub fn decode(body: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "Query");
        let sql = r.cbytes()?;
        r.end()?;
        Ok(Query { sql })
    }

    /// The SQL text of a Query body as far as it is buffered (its NUL, if there, left off).
    pub fn sql_prefix(body: &'a [u8]) -> &'a [u8] {
        match crate::frame::find_nul(body) {
            Some(n) => &body[..n],
            None => body,
        }
    }

    /// Appends this Query as a frame.
    pub fn encode(&self, buf: &mut BytesMut) {
        let at = begin(buf, tag::QUERY);
        buf.put_slice(self.sql);
        buf.put_u8(0);
        finish(buf, at);
    }
}

/// CopyFail (`f`): the client's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyFail<'a> {
    /// Error message, without NUL.
    pub message: &'a [u8],
}

impl<'a> CopyFail<'a> {
    /// Decodes a CopyFail body.
    ///
    /// # Errors
    /// [`WireError`] without the NUL or with bytes after it.
    pub fn decode(body: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "CopyFail");
        let message = r.cbytes()?;
        r.end()?;
        Ok(CopyFail { message })
    }

    /// Appends this CopyFail as a frame.
    pub fn encode(&self, buf: &mut BytesMut) {
        let at = begin(buf, tag::COPY_FAIL);
        buf.put_slice(self.message);
        buf.put_u8(0);
        finish(buf, at);
    }
}

/// Appends a CopyData carrying `data`.
pub fn write_copy_data(buf: &mut BytesMut, data: &[u8]) {
    let at = begin(buf, tag::COPY_DATA);
    buf.put_slice(data);
    finish(buf, at);
}

/// FunctionCall (`F`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionCall<'a> {
    /// Object id of the function.
    pub oid: i32,
    /// Argument format codes: Int16 each, as sent.
    pub arg_formats: &'a [u8],
    /// Number of arguments.
    pub arg_count: usize,
    /// The arguments as sent: per value an Int32 length (-1 = NULL) and its bytes.
    pub args: &'a [u8],
    /// Result format code.
    pub result_format: i16,
}

impl<'a> FunctionCall<'a> {
    /// Decodes a FunctionCall body.
    ///
    /// # Errors
    /// [`WireError`] when a field is missing or negative, or bytes trail.
    pub fn decode(body: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "FunctionCall");
        let oid = r.i32()?;
        let nf = r.count()?;
        let arg_formats = r.bytes(nf * 2)?;
        let arg_count = r.count()?;
        let args = values(&mut r, arg_count, "FunctionCall")?;
        let result_format = r.i16()?;
        r.end()?;
        Ok(FunctionCall {
            oid,
            arg_formats,
            arg_count,
            args,
            result_format,
        })
    }

    /// Appends this FunctionCall as a frame.
    pub fn encode(&self, buf: &mut BytesMut) {
        let at = begin(buf, tag::FUNCTION_CALL);
        buf.put_i32(self.oid);
        buf.put_u16((self.arg_formats.len() / 2) as u16);
        buf.put_slice(self.arg_formats);
        buf.put_u16(self.arg_count as u16);
        buf.put_slice(self.args);
        buf.put_i16(self.result_format);
        finish(buf, at);
    }
}

/// Any client message of a session, decoded (for tests, fuzzing and logs; the relay decodes
/// only the types it acts on, with the views above).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// Parse.
    Parse(Parse<'a>),
    /// Bind.
    Bind(Bind<'a>),
    /// Describe.
    Describe(Target<'a>),
    /// Close.
    Close(Target<'a>),
    /// Execute.
    Execute(Execute<'a>),
    /// Query.
    Query(Query<'a>),
    /// CopyData, with its payload.
    CopyData(&'a [u8]),
    /// CopyDone.
    CopyDone,
    /// CopyFail.
    CopyFail(CopyFail<'a>),
    /// FunctionCall.
    FunctionCall(FunctionCall<'a>),
    /// Sync.
    Sync,
    /// Flush.
    Flush,
    /// Terminate.
    Terminate,
}

/// Fails unless a body that must be empty is.
fn empty(body: &[u8], what: &'static str) -> Result<(), WireError> {
    Reader::new(body, what).end()
}

impl<'a> Message<'a> {
    /// Decodes the body of a message of type `t`.
    ///
    /// # Errors
    /// [`WireError::UnknownTag`] for a type a client may not send in a session; the view's
    /// error otherwise.
    pub fn decode(t: u8, body: &'a [u8]) -> Result<Self, WireError> {
        Ok(match t {
            tag::PARSE => Message::Parse(Parse::decode(body)?),
            tag::BIND => Message::Bind(Bind::decode(body)?),
            tag::DESCRIBE => Message::Describe(Target::decode(body, "Describe")?),
            tag::CLOSE => Message::Close(Target::decode(body, "Close")?),
            tag::EXECUTE => Message::Execute(Execute::decode(body)?),
            tag::QUERY => Message::Query(Query::decode(body)?),
            tag::COPY_DATA => Message::CopyData(body),
            tag::COPY_DONE => empty(body, "CopyDone").map(|_| Message::CopyDone)?,
            tag::COPY_FAIL => Message::CopyFail(CopyFail::decode(body)?),
            tag::FUNCTION_CALL => Message::FunctionCall(FunctionCall::decode(body)?),
            tag::SYNC => empty(body, "Sync").map(|_| Message::Sync)?,
            tag::FLUSH => empty(body, "Flush").map(|_| Message::Flush)?,
            tag::TERMINATE => empty(body, "Terminate").map(|_| Message::Terminate)?,
            other => return Err(WireError::UnknownTag(other)),
        })
    }

    /// Appends the message as a frame.
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            Message::Parse(m) => m.encode(buf),
            Message::Bind(m) => m.encode(buf),
            Message::Describe(m) => m.encode(buf, tag::DESCRIBE),
            Message::Close(m) => m.encode(buf, tag::CLOSE),
            Message::Execute(m) => m.encode(buf),
            Message::Query(m) => m.encode(buf),
            Message::CopyData(d) => write_copy_data(buf, d),
            Message::CopyDone => buf.put_slice(&COPY_DONE_FRAME),
            Message::CopyFail(m) => m.encode(buf),
            Message::FunctionCall(m) => m.encode(buf),
            Message::Sync => buf.put_slice(&SYNC_FRAME),
            Message::Flush => buf.put_slice(&FLUSH_FRAME),
            Message::Terminate => buf.put_slice(&TERMINATE_FRAME),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frame: &[u8]) {
        let body = &frame[HEADER_LEN..];
        let m = Message::decode(frame[0], body).unwrap();
        let mut out = BytesMut::new();
        m.encode(&mut out);
        assert_eq!(&out[..], frame, "{m:?}");
    }

    fn frame(t: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![t];
        f.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn every_family_round_trips() {
        round_trip(&frame(b'P', b"s1\0SELECT $1\0\0\x01\0\0\0\x17"));
        round_trip(&frame(b'B', b"\0s1\0\0\x01\0\x01\0\x01\0\0\0\x011\0\0"));
        round_trip(&frame(b'B', b"p\0\0\0\0\0\x01\xff\xff\xff\xff\0\0"));
        round_trip(&frame(b'D', b"Ss1\0"));
        round_trip(&frame(b'C', b"P\0"));
        round_trip(&frame(b'E', b"\0\0\0\0\x05"));
        round_trip(&frame(b'Q', b"SELECT 1\0"));
        round_trip(&frame(b'd', b"1\t2"));
        round_trip(&frame(b'f', b"bad\0"));
        round_trip(&frame(b'F', b"\0\0\x04\xd2\0\0\0\x01\0\0\0\x0212\0\0"));
        round_trip(&COPY_DONE_FRAME);
        round_trip(&SYNC_FRAME);
        round_trip(&FLUSH_FRAME);
        round_trip(&TERMINATE_FRAME);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(Parse::decode(b"s1\0SELECT 1\0\0\x01").is_err(), "types cut");
        assert!(
            Parse::decode(b"s1\0SELECT 1\0\xff\xff").is_err(),
            "negative"
        );
        assert!(Parse::decode(b"s1\0SELECT 1\0\0\0x").is_err(), "trailing");
        assert!(Bind::decode(b"\0\0\0\0\0\x01\xff\xff\xff\xfe\0\0").is_err());
        assert!(Target::decode(b"Xs\0", "Describe").is_err());
        assert!(Target::decode(b"S", "Describe").is_err());
        assert!(Execute::decode(b"\0\0\0").is_err());
        assert!(Query::decode(b"SELECT 1").is_err());
        assert!(Message::decode(tag::SYNC, b"x").is_err());
        assert!(Message::decode(b'Z', b"").is_err());
    }

    #[test]
    fn prefixes_and_spans() {
        assert_eq!(Parse::query_prefix(b"s1\0SELE"), Some(&b"SELE"[..]));
        assert_eq!(Parse::query_prefix(b"s1"), None);
        let b = BindNames::decode_prefix(b"p\0stmt\0\0\x01").unwrap();
        assert_eq!((b.portal, b.statement), (&b"p"[..], &b"stmt"[..]));
        assert_eq!(b.statement_span(), Span { at: 7, len: 4 });
        assert_eq!(BindNames::decode_prefix(b"p\0stm"), None);
        assert_eq!(Query::sql_prefix(b"SEL"), b"SEL");
    }

    #[test]
    fn rename_fixes_the_length_word() {
        // Close 'S' "s1" then a Sync.
        let mut b = BytesMut::from(&b"C\0\0\0\x08Ss1\0S\0\0\0\x04"[..]);
        let span = Target::decode(&b[5..9], "Close").unwrap().name_span();
        let n = rename(&mut b, 0, 9, span, b"DOORMAN_7");
        assert_eq!(n, 16);
        assert_eq!(&b[..], b"C\0\0\0\x0fSDOORMAN_7\0S\0\0\0\x04");
    }
}
