//! The untyped first packet of a connection (protocol §55.2.1 "Start-up", §55.7 StartupMessage,
//! SSLRequest, GSSENCRequest, CancelRequest).

use crate::WireError;
use crate::frame::{MAX_STARTUP_LEN, Reader};

/// Protocol version 3.0 as sent in StartupMessage.
pub const PROTOCOL_3_0: i32 = 196_608;
/// SSLRequest code (1234 << 16 | 5679).
pub const SSL_REQUEST_CODE: i32 = 80_877_103;
/// GSSENCRequest code (1234 << 16 | 5680).
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;
/// CancelRequest code (1234 << 16 | 5678).
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;

/// What the first packet asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// SSLRequest: answer `S` or `N`, then expect another startup packet.
    SslRequest,
    /// GSSENCRequest: answer `G` or `N`, then expect another startup packet.
    GssEncRequest,
    /// CancelRequest carrying the BackendKeyData the client was given.
    Cancel {
        /// Process ID from BackendKeyData.
        pid: i32,
        /// Secret key from BackendKeyData.
        secret: i32,
    },
    /// StartupMessage for protocol 3.x.
    Startup(StartupMessage),
}

/// A StartupMessage: parameter name/value pairs in the order sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StartupMessage {
    /// Requested minor protocol version (we speak 3.0; a higher minor gets NegotiateProtocolVersion).
    pub minor: u16,
    /// Parameters except protocol options; `user` is required by PostgreSQL.
    pub params: Vec<(String, String)>,
    /// Requested `_pq_.` protocol options, which we do not support.
    pub protocol_options: Vec<String>,
}

impl StartupMessage {
    /// Value of parameter `name`, if sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `user` parameter ("" if not sent).
    pub fn user(&self) -> &str {
        self.get("user").unwrap_or_default()
    }

    /// The `database` parameter, defaulting to the user name when absent or empty (protocol
    /// §55.7, StartupMessage).
    pub fn database(&self) -> &str {
        self.get("database")
            .filter(|d| !d.is_empty())
            .unwrap_or(self.user())
    }
}

/// Reads the length word of a startup packet and checks it against [`MAX_STARTUP_LEN`].
///
/// Returns the whole packet length (bytes, including the length word), or `Ok(None)` if fewer
/// than 4 bytes are present. PostgreSQL rejects packets shorter than 8 bytes.
pub fn packet_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if !(8..=MAX_STARTUP_LEN).contains(&len) {
        return Err(WireError::BadLength {
            tag: 0,
            len,
            max: MAX_STARTUP_LEN,
        });
    }
    Ok(Some(len as usize))
}

/// Decodes a complete startup packet (`buf` includes its length word).
///
/// Errors: [`WireError::UnsupportedProtocol`] for anything but 3.x, [`WireError::BadString`] /
/// [`WireError::Truncated`] for a malformed parameter list, [`WireError::Invalid`] when the list
/// lacks its final terminator or a cancel request has the wrong size.
pub fn decode(buf: &[u8]) -> Result<StartupPacket, WireError> {
    let mut r = Reader::new(buf, "startup packet");
    let len = r.i32()? as usize;
    if len != buf.len() {
        return Err(WireError::Invalid("startup packet length"));
    }
    let code = r.i32()?;
    match code {
        SSL_REQUEST_CODE if r.is_empty() => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST_CODE if r.is_empty() => Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST_CODE => {
            let pid = r.i32()?;
            let secret = r.i32()?;
            if !r.is_empty() {
                return Err(WireError::Invalid("cancel request length"));
            }
            Ok(StartupPacket::Cancel { pid, secret })
        }
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => {
            Err(WireError::Invalid("negotiation request length"))
        }
        _ => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            if major != 3 {
                return Err(WireError::UnsupportedProtocol { major, minor });
            }
            decode_params(r, minor).map(StartupPacket::Startup)
        }
    }
}

fn decode_params(mut r: Reader<'_>, minor: u16) -> Result<StartupMessage, WireError> {
    let mut msg = StartupMessage {
        minor,
        ..Default::default()
    };
    loop {
        if r.rest() == [0] {
            return Ok(msg);
        }
        if r.is_empty() {
            return Err(WireError::Invalid("startup packet: missing terminator"));
        }
        let name = r.cstr()?;
        let value = r.cstr()?;
        if name.is_empty() {
            return Err(WireError::Invalid("startup packet: empty parameter name"));
        }
        if let Some(opt) = name.strip_prefix("_pq_.") {
            msg.protocol_options.push(format!("_pq_.{opt}"));
        } else {
            msg.params.push((name.to_owned(), value.to_owned()));
        }
    }
}

/// Appends a StartupMessage for protocol 3.0 with `params`.
pub fn write_startup(buf: &mut bytes::BytesMut, params: &[(&str, &str)]) {
    use bytes::BufMut;
    let at = buf.len();
    buf.put_u32(0);
    buf.put_i32(PROTOCOL_3_0);
    for (k, v) in params {
        buf.put_slice(k.as_bytes());
        buf.put_u8(0);
        buf.put_slice(v.as_bytes());
        buf.put_u8(0);
    }
    buf.put_u8(0);
    crate::frame::finish(buf, at);
}

/// Appends a CancelRequest for a backend's `pid`/`secret`.
pub fn write_cancel(buf: &mut bytes::BytesMut, pid: i32, secret: i32) {
    use bytes::BufMut;
    buf.put_u32(16);
    buf.put_i32(CANCEL_REQUEST_CODE);
    buf.put_i32(pid);
    buf.put_i32(secret);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_round_trip() {
        let mut b = bytes::BytesMut::new();
        write_startup(&mut b, &[("user", "bob"), ("database", "db")]);
        assert_eq!(packet_len(&b).unwrap(), Some(b.len()));
        let StartupPacket::Startup(m) = decode(&b).unwrap() else {
            panic!("not startup")
        };
        assert_eq!(m.get("user"), Some("bob"));
        assert_eq!(m.get("database"), Some("db"));
        assert_eq!(m.minor, 0);
    }

    #[test]
    fn negotiation_and_cancel() {
        assert_eq!(
            decode(&[0, 0, 0, 8, 4, 210, 22, 47]).unwrap(),
            StartupPacket::SslRequest
        );
        assert_eq!(
            decode(&[0, 0, 0, 8, 4, 210, 22, 48]).unwrap(),
            StartupPacket::GssEncRequest
        );
        let mut b = bytes::BytesMut::new();
        write_cancel(&mut b, 7, -3);
        assert_eq!(
            decode(&b).unwrap(),
            StartupPacket::Cancel { pid: 7, secret: -3 }
        );
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert!(packet_len(&[0, 0, 0, 4]).is_err());
        assert!(packet_len(&[0, 1, 0, 0]).is_err());
        // protocol 2.0
        assert!(matches!(
            decode(&[0, 0, 0, 9, 0, 2, 0, 0, 0]),
            Err(WireError::UnsupportedProtocol { .. })
        ));
        // missing terminator
        assert!(decode(&[0, 0, 0, 12, 0, 3, 0, 0, b'u', 0, b'x', 0]).is_err());
        // unterminated string
        assert!(decode(&[0, 0, 0, 11, 0, 3, 0, 0, b'u', b's', b'r']).is_err());
        // length mismatch
        assert!(decode(&[0, 0, 0, 20, 0, 3, 0, 0, 0]).is_err());
    }

    #[test]
    fn protocol_options_are_split_off() {
        let mut b = bytes::BytesMut::new();
        write_startup(&mut b, &[("user", "u"), ("_pq_.foo", "1")]);
        let StartupPacket::Startup(m) = decode(&b).unwrap() else {
            panic!("not startup")
        };
        assert_eq!(m.protocol_options, vec!["_pq_.foo".to_string()]);
        assert_eq!(m.params.len(), 1);
    }
}
