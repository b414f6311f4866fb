//! Protocol-level clients for tests that must control every message: login, frame builders
//! and a reader that collects replies up to ReadyForQuery.

use super::Doorman;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub fn raw(d: &Doorman) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

pub fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

pub fn startup(user: &str, db: &str) -> Vec<u8> {
    startup_with(&[("user", user), ("database", db)])
}

/// A StartupMessage with exactly these parameters.
pub fn startup_with(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196608i32.to_be_bytes());
    for &(k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut m = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    m.extend(body);
    m
}

pub fn sqlstate_in(bytes: &[u8]) -> String {
    let pos = bytes
        .windows(2)
        .position(|w| w[0] == 0 && w[1] == b'C')
        .expect("no SQLSTATE field");
    String::from_utf8_lossy(&bytes[pos + 2..pos + 7]).into_owned()
}

pub fn raw_login(d: &Doorman) -> TcpStream {
    let mut s = raw(d);
    login_on(&mut s);
    s
}

/// Startup and SCRAM login as app/app_pw to appdb over any stream (plain or TLS), up to the
/// first ReadyForQuery; returns the BackendKeyData (pid, secret).
pub fn login_on<S: Read + Write>(s: &mut S) -> (i32, i32) {
    login_with(s, &[]).0
}

/// As [`login_on`] with `extra` startup parameters; also returns the ParameterStatus pairs.
pub fn login_with<S: Read + Write>(
    s: &mut S,
    extra: &[(&str, &str)],
) -> ((i32, i32), Vec<(String, String)>) {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    let mut params = vec![("user", "app"), ("database", "appdb")];
    params.extend_from_slice(extra);
    s.write_all(&startup_with(&params)).unwrap();
    let mut reported = Vec::new();
    let mut scram = ScramSha256::new(b"app_pw", ChannelBinding::unsupported());
    let mut key = (0, 0);
    loop {
        let mut hdr = [0u8; 5];
        s.read_exact(&mut hdr).unwrap();
        let len = u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as usize - 4;
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
        let mut out = bytes::BytesMut::new();
        match (hdr[0], body.get(3).copied()) {
            (b'R', Some(10)) => doorman_wire::frontend::write_sasl_initial_response(
                &mut out,
                "SCRAM-SHA-256",
                scram.message(),
            ),
            (b'R', Some(11)) => {
                scram.update(&body[4..]).unwrap();
                doorman_wire::frontend::write_sasl_response(&mut out, scram.message());
            }
            (b'K', _) => {
                key = (
                    i32::from_be_bytes(body[0..4].try_into().unwrap()),
                    i32::from_be_bytes(body[4..8].try_into().unwrap()),
                );
            }
            (b'S', _) => {
                let mut parts = body.split(|&c| c == 0).map(|p| String::from_utf8_lossy(p));
                let k = parts.next().unwrap_or_default().into_owned();
                let v = parts.next().unwrap_or_default().into_owned();
                reported.push((k, v));
            }
            (b'E', _) => panic!("login failed: {}", String::from_utf8_lossy(&body)),
            (b'Z', _) => return (key, reported),
            _ => {}
        }
        if !out.is_empty() {
            s.write_all(&out).unwrap();
        }
    }
}

/// One frame: type byte, length, body.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn cstr(v: &mut Vec<u8>, s: &str) {
    v.extend_from_slice(s.as_bytes());
    v.push(0);
}

/// Parse with no parameter types.
pub fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, name);
    cstr(&mut b, sql);
    b.extend_from_slice(&0i16.to_be_bytes());
    frame(b'P', &b)
}

/// Bind with text parameters (None = NULL) and text results.
pub fn bind(portal: &str, stmt: &str, params: &[Option<&str>]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    cstr(&mut b, stmt);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        match p {
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v.as_bytes());
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    b.extend_from_slice(&0i16.to_be_bytes());
    frame(b'B', &b)
}

/// Describe of a statement (`S`) or portal (`P`).
pub fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    cstr(&mut b, name);
    frame(b'D', &b)
}

/// Close of a statement (`S`) or portal (`P`).
pub fn close(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    cstr(&mut b, name);
    frame(b'C', &b)
}

/// Execute of a portal, all rows.
pub fn execute(portal: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    b.extend_from_slice(&0i32.to_be_bytes());
    frame(b'E', &b)
}

/// Simple Query.
pub fn query(sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, sql);
    frame(b'Q', &b)
}

/// Sync.
pub fn sync() -> Vec<u8> {
    frame(b'S', b"")
}

/// Flush.
pub fn flush() -> Vec<u8> {
    frame(b'H', b"")
}

/// A logged-in protocol-level client.
pub struct Wire(pub TcpStream);

/// One backend message.
#[derive(Debug, Clone)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// First text column of a DataRow, or the tag of a CommandComplete, or an error's SQLSTATE.
    pub fn text(&self) -> String {
        match self.tag {
            b'D' => {
                let len = i32::from_be_bytes(self.body[2..6].try_into().unwrap());
                if len < 0 {
                    return "NULL".into();
                }
                String::from_utf8_lossy(&self.body[6..6 + len as usize]).into_owned()
            }
            b'E' => sqlstate_in(&self.body),
            _ => String::from_utf8_lossy(self.body.strip_suffix(b"\0").unwrap_or(&self.body))
                .into_owned(),
        }
    }
}

impl Wire {
    /// Logs in as app/app_pw to appdb.
    pub fn login(d: &Doorman) -> Wire {
        Wire(raw_login(d))
    }

    /// Sends the concatenation of `frames`.
    pub fn send(&mut self, frames: &[Vec<u8>]) {
        self.0.write_all(&frames.concat()).unwrap();
    }

    /// Reads one message.
    pub fn msg(&mut self) -> Msg {
        read_msg(&mut self.0)
    }

    /// Reads messages until ReadyForQuery (included).
    pub fn until_ready(&mut self) -> Vec<Msg> {
        read_until_ready(&mut self.0)
    }

    /// Reads the reply to a batch that fails: an ErrorResponse, then ReadyForQuery (asserted),
    /// and returns the error's SQLSTATE.
    pub fn error_code(&mut self) -> String {
        let r = self.until_ready();
        assert_eq!(tags(&r), "EZ");
        r[0].text()
    }

    /// Reads `n` messages.
    pub fn take(&mut self, n: usize) -> Vec<Msg> {
        (0..n).map(|_| self.msg()).collect()
    }

    /// Runs a simple query and returns the first column of the first row.
    pub fn value(&mut self, sql: &str) -> String {
        self.send(&[query(sql)]);
        let msgs = self.until_ready();
        let row = msgs.iter().find(|m| m.tag == b'D' || m.tag == b'E');
        row.map(|m| m.text()).unwrap_or_default()
    }
}

/// Reads one backend message from any stream (plain or TLS).
pub fn read_msg<S: Read>(s: &mut S) -> Msg {
    let mut hdr = [0u8; 5];
    s.read_exact(&mut hdr).unwrap();
    let len = u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as usize - 4;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    Msg { tag: hdr[0], body }
}

/// Reads messages until ReadyForQuery (included).
pub fn read_until_ready<S: Read>(s: &mut S) -> Vec<Msg> {
    let mut out = Vec::new();
    loop {
        let m = read_msg(s);
        let done = m.tag == b'Z';
        out.push(m);
        if done {
            return out;
        }
    }
}

/// The type bytes of `msgs`, as a string (`"12nCZ"`).
pub fn tags(msgs: &[Msg]) -> String {
    msgs.iter().map(|m| m.tag as char).collect()
}
