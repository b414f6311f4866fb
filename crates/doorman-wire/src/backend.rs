//! Backend (server → client) messages: writers for what the pooler says itself, and decoders
//! for the few messages it must understand (protocol §55.7).

use crate::WireError;
use crate::frame::{Reader, begin, finish};
use bytes::{BufMut, BytesMut};

/// Tags of backend messages the relay acts on.
pub mod tag {
    /// Authentication* family.
    pub const AUTHENTICATION: u8 = b'R';
    /// BackendKeyData.
    pub const BACKEND_KEY_DATA: u8 = b'K';
    /// ParameterStatus.
    pub const PARAMETER_STATUS: u8 = b'S';
    /// ReadyForQuery.
    pub const READY_FOR_QUERY: u8 = b'Z';
    /// DataRow (protocol §55.7).
    pub const DATA_ROW: u8 = b'D';
    /// ErrorResponse.
    pub const ERROR_RESPONSE: u8 = b'E';
    /// NoticeResponse.
    pub const NOTICE_RESPONSE: u8 = b'N';
    /// NotificationResponse.
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    /// NegotiateProtocolVersion.
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    /// CopyInResponse.
    pub const COPY_IN_RESPONSE: u8 = b'G';
    /// RowDescription.
    pub const ROW_DESCRIPTION: u8 = b'T';
    /// ParseComplete.
    pub const PARSE_COMPLETE: u8 = b'1';
    /// BindComplete.
    pub const BIND_COMPLETE: u8 = b'2';
    /// CloseComplete.
    pub const CLOSE_COMPLETE: u8 = b'3';
    /// NoData (Describe of something that returns no rows).
    pub const NO_DATA: u8 = b'n';
    /// ParameterDescription.
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    /// CommandComplete.
    pub const COMMAND_COMPLETE: u8 = b'C';
    /// EmptyQueryResponse.
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    /// PortalSuspended (Execute reached its row limit).
    pub const PORTAL_SUSPENDED: u8 = b's';
    /// CopyOutResponse.
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    /// CopyBothResponse (replication).
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    /// CopyData.
    pub const COPY_DATA: u8 = b'd';
    /// CopyDone.
    pub const COPY_DONE: u8 = b'c';
    /// FunctionCallResponse.
    pub const FUNCTION_CALL_RESPONSE: u8 = b'V';
}

/// ParseComplete as a whole frame.
pub const PARSE_COMPLETE_FRAME: [u8; 5] = [tag::PARSE_COMPLETE, 0, 0, 0, 4];
/// CloseComplete as a whole frame.
pub const CLOSE_COMPLETE_FRAME: [u8; 5] = [tag::CLOSE_COMPLETE, 0, 0, 0, 4];
/// CommandComplete `DEALLOCATE` as a whole frame.
pub const DEALLOCATE_COMPLETE_FRAME: &[u8] = b"C\0\0\0\x0fDEALLOCATE\0";

/// Appends a CommandComplete with command tag `tag_text` (e.g. `SELECT 1`).
pub fn write_command_complete(buf: &mut BytesMut, tag_text: &str) {
    let at = begin(buf, tag::COMMAND_COMPLETE);
    buf.put_slice(tag_text.as_bytes());
    buf.put_u8(0);
    finish(buf, at);
}

/// An Authentication* request from a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRequest<'a> {
    /// AuthenticationOk (code 0).
    Ok,
    /// AuthenticationCleartextPassword (3).
    Cleartext,
    /// AuthenticationMD5Password (5) with its 4-byte salt.
    Md5([u8; 4]),
    /// AuthenticationSASL (10) with the mechanism names offered.
    Sasl(Vec<&'a str>),
    /// AuthenticationSASLContinue (11) with server-first-message.
    SaslContinue(&'a [u8]),
    /// AuthenticationSASLFinal (12) with server-final-message.
    SaslFinal(&'a [u8]),
    /// Any other method (Kerberos, GSS, SSPI...), which the pooler does not speak.
    Unsupported(i32),
}

/// Decodes the body of an Authentication message.
pub fn parse_auth(body: &[u8]) -> Result<AuthRequest<'_>, WireError> {
    let mut r = Reader::new(body, "Authentication");
    Ok(match r.i32()? {
        0 => AuthRequest::Ok,
        3 => AuthRequest::Cleartext,
        5 => {
            let s = r.bytes(4)?;
            AuthRequest::Md5([s[0], s[1], s[2], s[3]])
        }
        10 => {
            let mut mechs = Vec::new();
            loop {
                let m = r.cstr()?;
                if m.is_empty() {
                    break;
                }
                mechs.push(m);
            }
            AuthRequest::Sasl(mechs)
        }
        11 => AuthRequest::SaslContinue(r.rest()),
        12 => AuthRequest::SaslFinal(r.rest()),
        other => AuthRequest::Unsupported(other),
    })
}

/// Decodes a ParameterStatus body into (name, value).
pub fn parse_parameter_status(body: &[u8]) -> Result<(&str, &str), WireError> {
    let mut r = Reader::new(body, "ParameterStatus");
    Ok((r.cstr()?, r.cstr()?))
}

/// The first column of a DataRow body (protocol §55.7: Int16 count, then Int32 length and bytes
/// per column): `None` for SQL NULL. Errors when the body is shorter than it says.
pub fn parse_data_row_first(body: &[u8]) -> Result<Option<&[u8]>, WireError> {
    let mut r = Reader::new(body, "DataRow");
    r.i16()?;
    let len = r.i32()?;
    match usize::try_from(len) {
        Ok(n) => Ok(Some(r.bytes(n)?)),
        Err(_) => Ok(None),
    }
}

/// Every column of a DataRow body, `None` for SQL NULL (protocol §55.7). Errors when the body
/// is shorter than it says.
pub fn parse_data_row(body: &[u8]) -> Result<Vec<Option<&[u8]>>, WireError> {
    let mut r = Reader::new(body, "DataRow");
    let n = r.i16()?;
    let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    for _ in 0..n {
        let len = r.i32()?;
        out.push(match usize::try_from(len) {
            Ok(n) => Some(r.bytes(n)?),
            Err(_) => None,
        });
    }
    Ok(out)
}

/// The column names of a RowDescription body (protocol §55.7: Int16 count, then per field a
/// name and 18 bytes of table oid, attribute number, type oid, size, modifier and format).
pub fn parse_row_description(body: &[u8]) -> Result<Vec<&str>, WireError> {
    let mut r = Reader::new(body, "RowDescription");
    let n = r.i16()?;
    let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    for _ in 0..n {
        out.push(r.cstr()?);
        r.bytes(18)?;
    }
    Ok(out)
}

/// Decodes a BackendKeyData body into (process id, secret key).
pub fn parse_backend_key_data(body: &[u8]) -> Result<(i32, i32), WireError> {
    let mut r = Reader::new(body, "BackendKeyData");
    Ok((r.i32()?, r.i32()?))
}

fn auth(buf: &mut BytesMut, code: i32, extra: &[u8]) {
    let at = begin(buf, tag::AUTHENTICATION);
    buf.put_i32(code);
    buf.put_slice(extra);
    finish(buf, at);
}

/// Appends AuthenticationOk.
pub fn write_auth_ok(buf: &mut BytesMut) {
    auth(buf, 0, &[]);
}

/// Appends AuthenticationCleartextPassword.
pub fn write_auth_cleartext(buf: &mut BytesMut) {
    auth(buf, 3, &[]);
}

/// Appends AuthenticationMD5Password with `salt`.
pub fn write_auth_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    auth(buf, 5, &salt);
}

/// Appends AuthenticationSASL offering SCRAM-SHA-256 (no channel binding: we advertise no -PLUS).
pub fn write_auth_sasl_scram(buf: &mut BytesMut) {
    auth(buf, 10, b"SCRAM-SHA-256\0\0");
}

/// Appends AuthenticationSASLContinue with server-first-message.
pub fn write_auth_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    auth(buf, 11, data);
}

/// Appends AuthenticationSASLFinal with server-final-message.
pub fn write_auth_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    auth(buf, 12, data);
}

/// Appends ParameterStatus `name` = `value`.
pub fn write_parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    let at = begin(buf, tag::PARAMETER_STATUS);
    buf.put_slice(name.as_bytes());
    buf.put_u8(0);
    buf.put_slice(value.as_bytes());
    buf.put_u8(0);
    finish(buf, at);
}

/// Appends BackendKeyData.
pub fn write_backend_key_data(buf: &mut BytesMut, pid: i32, secret: i32) {
    let at = begin(buf, tag::BACKEND_KEY_DATA);
    buf.put_i32(pid);
    buf.put_i32(secret);
    finish(buf, at);
}

/// Appends ReadyForQuery with transaction `status` (`I`, `T` or `E`).
pub fn write_ready_for_query(buf: &mut BytesMut, status: u8) {
    buf.put_slice(&[tag::READY_FOR_QUERY, 0, 0, 0, 5, status]);
}

/// Appends NegotiateProtocolVersion: newest minor version we support (0) and the options we
/// did not recognise (protocol §55.7 NegotiateProtocolVersion).
pub fn write_negotiate_protocol_version(buf: &mut BytesMut, options: &[String]) {
    let at = begin(buf, tag::NEGOTIATE_PROTOCOL_VERSION);
    buf.put_i32(0);
    buf.put_i32(options.len() as i32);
    for o in options {
        buf.put_slice(o.as_bytes());
        buf.put_u8(0);
    }
    finish(buf, at);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(b: &BytesMut) -> &[u8] {
        &b[5..]
    }

    #[test]
    fn data_row_first_column() {
        assert_eq!(
            parse_data_row_first(&[0, 1, 0, 0, 0, 2, b'o', b'n']).unwrap(),
            Some(&b"on"[..])
        );
        assert_eq!(
            parse_data_row_first(&[0, 1, 255, 255, 255, 255]).unwrap(),
            None
        );
        assert!(parse_data_row_first(&[0, 1, 0, 0, 0, 9, b'x']).is_err());
        assert!(parse_data_row_first(&[0]).is_err());
    }

    #[test]
    fn data_row_all_columns_and_row_description_names() {
        let row = [0, 2, 0, 0, 0, 1, b'a', 255, 255, 255, 255];
        assert_eq!(parse_data_row(&row).unwrap(), vec![Some(&b"a"[..]), None]);
        assert!(parse_data_row(&[0, 2, 0, 0, 0, 1, b'a']).is_err());
        let mut desc = vec![0, 2];
        for name in [&b"usename"[..], b"passwd"] {
            desc.extend_from_slice(name);
            desc.push(0);
            desc.extend_from_slice(&[0; 18]);
        }
        assert_eq!(parse_row_description(&desc).unwrap(), ["usename", "passwd"]);
        assert!(parse_row_description(&desc[..desc.len() - 1]).is_err());
    }

    #[test]
    fn auth_round_trips() {
        let mut b = BytesMut::new();
        write_auth_md5(&mut b, [1, 2, 3, 4]);
        assert_eq!(
            parse_auth(body(&b)).unwrap(),
            AuthRequest::Md5([1, 2, 3, 4])
        );
        let mut b = BytesMut::new();
        write_auth_sasl_scram(&mut b);
        assert_eq!(
            parse_auth(body(&b)).unwrap(),
            AuthRequest::Sasl(vec!["SCRAM-SHA-256"])
        );
        let mut b = BytesMut::new();
        write_auth_ok(&mut b);
        assert_eq!(parse_auth(body(&b)).unwrap(), AuthRequest::Ok);
        assert!(parse_auth(&[0, 0, 0, 5, 1]).is_err());
    }

    #[test]
    fn parameter_status_and_key_data() {
        let mut b = BytesMut::new();
        write_parameter_status(&mut b, "TimeZone", "UTC");
        assert_eq!(
            parse_parameter_status(body(&b)).unwrap(),
            ("TimeZone", "UTC")
        );
        let mut b = BytesMut::new();
        write_backend_key_data(&mut b, 42, -7);
        assert_eq!(parse_backend_key_data(body(&b)).unwrap(), (42, -7));
        let mut b = BytesMut::new();
        write_ready_for_query(&mut b, b'I');
        assert_eq!(&b[..], b"Z\0\0\0\x05I");
    }
}
