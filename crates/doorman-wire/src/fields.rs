//! ErrorResponse / NoticeResponse fields (protocol §55.8 "Error and Notice Message Fields").
//!
//! The builder always carries a SQLSTATE: a client library keys its behaviour on it.

use crate::frame::{Reader, begin, finish};
use bytes::{BufMut, BytesMut};

/// Severity of an ErrorResponse as PostgreSQL spells it (field `S` and `V`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The current command failed; the session goes on.
    Error,
    /// The session ends after this message.
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// An error to send to a client: severity, SQLSTATE and message (client-safe text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFields {
    /// ERROR or FATAL.
    pub severity: Severity,
    /// Five-character SQLSTATE, see [`crate::sqlstate`].
    pub code: &'static str,
    /// Primary message (field `M`).
    pub message: String,
    /// Optional detail (field `D`).
    pub detail: Option<String>,
}

impl ErrorFields {
    /// An ERROR with `code` and `message`.
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        ErrorFields {
            severity: Severity::Error,
            code,
            message: message.into(),
            detail: None,
        }
    }

    /// A FATAL with `code` and `message`.
    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        ErrorFields {
            severity: Severity::Fatal,
            code,
            message: message.into(),
            detail: None,
        }
    }

    /// Adds a detail line.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Appends this as an ErrorResponse ('E') to `buf`.
    pub fn write(&self, buf: &mut BytesMut) {
        let at = begin(buf, b'E');
        for (field, value) in [
            (b'S', self.severity.as_str()),
            (b'V', self.severity.as_str()),
            (b'C', self.code),
        ] {
            put_field(buf, field, value);
        }
        put_field(buf, b'M', &self.message);
        if let Some(d) = &self.detail {
            put_field(buf, b'D', d);
        }
        buf.put_u8(0);
        finish(buf, at);
    }
}

fn put_field(buf: &mut BytesMut, field: u8, value: &str) {
    buf.put_u8(field);
    // A NUL inside a value would end the field early on the client: drop it.
    buf.extend(value.bytes().filter(|&b| b != 0));
    buf.put_u8(0);
}

/// ErrorResponse / NoticeResponse field type codes (protocol §55.8).
pub mod code {
    /// Severity, possibly localized.
    pub const SEVERITY: u8 = b'S';
    /// Severity, never localized (9.6+).
    pub const SEVERITY_NONLOCALIZED: u8 = b'V';
    /// SQLSTATE code.
    pub const SQLSTATE: u8 = b'C';
    /// Primary message.
    pub const MESSAGE: u8 = b'M';
    /// Detail.
    pub const DETAIL: u8 = b'D';
    /// Source-code routine that reported the error.
    pub const ROUTINE: u8 = b'R';
}

/// The (type code, value) fields of an ErrorResponse/NoticeResponse body, as far as `body`
/// holds them: stops at the terminator, or before a field whose NUL is not there (a body only
/// partly buffered). Never panics.
pub fn each_field(body: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut rest = body;
    std::iter::from_fn(move || {
        let (&t, tail) = rest.split_first()?;
        if t == 0 {
            return None;
        }
        let end = crate::frame::find_nul(tail)?;
        rest = &tail[end + 1..];
        Some((t, &tail[..end]))
    })
}

/// The fields of a received ErrorResponse/NoticeResponse that the pooler uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedError {
    /// Field `V` (or `S` from servers before 9.6).
    pub severity: String,
    /// Field `C`.
    pub code: String,
    /// Field `M`.
    pub message: String,
}

/// Decodes the body of an ErrorResponse/NoticeResponse (without the 5-byte header).
pub fn parse_error_body(body: &[u8]) -> Result<ReceivedError, crate::WireError> {
    let mut r = Reader::new(body, "ErrorResponse");
    let mut out = ReceivedError::default();
    loop {
        let field = r.u8()?;
        if field == 0 {
            return Ok(out);
        }
        let value = r.cstr()?;
        match field {
            b'V' => out.severity = value.to_owned(),
            b'S' if out.severity.is_empty() => out.severity = value.to_owned(),
            b'C' => out.code = value.to_owned(),
            b'M' => out.message = value.to_owned(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_round_trip() {
        let mut b = BytesMut::new();
        ErrorFields::fatal("28P01", "password authentication failed for user \"bob\"")
            .write(&mut b);
        assert_eq!(b[0], b'E');
        let (h, frame) = crate::frame::complete_frame(&b, 1000).unwrap().unwrap();
        assert_eq!(h.frame_len(), b.len());
        let e = parse_error_body(&frame[5..]).unwrap();
        assert_eq!(e.severity, "FATAL");
        assert_eq!(e.code, "28P01");
        assert!(e.message.contains("bob"));
    }

    #[test]
    fn nul_in_message_is_dropped() {
        let mut b = BytesMut::new();
        ErrorFields::error("XX000", "a\0b").write(&mut b);
        assert_eq!(parse_error_body(&b[5..]).unwrap().message, "ab");
    }

    #[test]
    fn truncated_error_body_is_an_error() {
        assert!(parse_error_body(b"Cabc").is_err());
    }
}
