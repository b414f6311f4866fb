//! What a client takes along when it moves to the new process of a binary upgrade: its
//! identity (process id and secret of its BackendKeyData), pool, session parameters, the bytes
//! it already sent, and its prepared statements with their texts, so that the new process
//! serves it exactly as before. The socket itself travels beside this record (SCM_RIGHTS).
//!
//! The encoding is private to two processes of this same build family: a version byte, then
//! fields in a fixed order, strings as u32 length + bytes, little-endian.

use bytes::{Buf, BufMut, BytesMut};

/// A client leaving for the new process of an upgrade: its state and a duplicate of its
/// socket (this process's copy closes without a FIN, as the socket lives on in the other).
pub struct Departure {
    /// What the new process needs.
    pub migrant: Migrant,
    /// The socket.
    pub fd: std::os::fd::OwnedFd,
}

/// Record layout version; a process refuses another's.
const VERSION: u8 = 1;

/// A client between transactions, as the old process knew it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Migrant {
    /// Process id given in BackendKeyData (the `#cN` id).
    pub id: u64,
    /// Secret key given in BackendKeyData.
    pub secret: i32,
    /// Pool user.
    pub user: String,
    /// Pool database.
    pub database: String,
    /// Peer address, `ip:port`.
    pub peer: String,
    /// Microseconds since it logged in.
    pub age_us: u64,
    /// Tracked parameters as login settled them (what RESET returns to).
    pub startup: Vec<(String, String)>,
    /// Untracked startup settings (what RESET ALL returns to).
    pub startup_extras: Vec<(String, String)>,
    /// Tracked parameters it wants now.
    pub wanted: Vec<(String, String)>,
    /// Untracked settings it wants now.
    pub extras: Vec<(String, String)>,
    /// A BEGIN answered without a backend, not yet run.
    pub deferred_begin: Option<String>,
    /// Bytes it sent that were not yet processed (less than one message header).
    pub pending: Vec<u8>,
    /// Its prepared statements: (client name, Parse body after the name); the unnamed one
    /// has an empty name.
    pub statements: Vec<(Vec<u8>, Vec<u8>)>,
    /// Transactions, queries and errors so far (SHOW CLIENTS).
    pub counters: [u32; 3],
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_u32_le(b.len() as u32);
    out.put_slice(b);
}

fn put_pairs(out: &mut BytesMut, pairs: &[(String, String)]) {
    out.put_u32_le(pairs.len() as u32);
    for (k, v) in pairs {
        put_bytes(out, k.as_bytes());
        put_bytes(out, v.as_bytes());
    }
}

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Ended before a field.
    #[error("migration record truncated")]
    Truncated,
    /// Another layout version.
    #[error("migration record version {0}, this build reads {VERSION}")]
    Version(u8),
    /// A text field that is not UTF-8.
    #[error("migration record has a non-UTF-8 text field")]
    Utf8,
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.0.remaining() < n {
            return Err(DecodeError::Truncated);
        }
        Ok(())
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.0.get_u8())
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.0.get_u32_le())
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.need(8)?;
        Ok(self.0.get_u64_le())
    }
    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.u32()? as usize;
        self.need(n)?;
        let v = self.0[..n].to_vec();
        self.0.advance(n);
        Ok(v)
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?).map_err(|_| DecodeError::Utf8)
    }
    fn pairs(&mut self) -> Result<Vec<(String, String)>, DecodeError> {
        let n = self.u32()? as usize;
        // Each pair takes at least 8 bytes: a count larger than the rest is a bad record, not
        // an allocation.
        self.need(n.saturating_mul(8))?;
        (0..n)
            .map(|_| Ok((self.string()?, self.string()?)))
            .collect()
    }
}

impl Migrant {
    /// The record's bytes.
    pub fn encode(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(256 + self.pending.len());
        out.put_u8(VERSION);
        out.put_u64_le(self.id);
        out.put_u32_le(self.secret as u32);
        put_bytes(&mut out, self.user.as_bytes());
        put_bytes(&mut out, self.database.as_bytes());
        put_bytes(&mut out, self.peer.as_bytes());
        out.put_u64_le(self.age_us);
        put_pairs(&mut out, &self.startup);
        put_pairs(&mut out, &self.startup_extras);
        put_pairs(&mut out, &self.wanted);
        put_pairs(&mut out, &self.extras);
        match &self.deferred_begin {
            Some(b) => {
                out.put_u8(1);
                put_bytes(&mut out, b.as_bytes());
            }
            None => out.put_u8(0),
        }
        put_bytes(&mut out, &self.pending);
        out.put_u32_le(self.statements.len() as u32);
        for (name, body) in &self.statements {
            put_bytes(&mut out, name);
            put_bytes(&mut out, body);
        }
        for c in self.counters {
            out.put_u32_le(c);
        }
        out
    }

    /// Reads a record made by [`Migrant::encode`]. Errors: truncated, another version,
    /// non-UTF-8 text.
    pub fn decode(b: &[u8]) -> Result<Migrant, DecodeError> {
        let mut r = Reader(b);
        let v = r.u8()?;
        if v != VERSION {
            return Err(DecodeError::Version(v));
        }
        let mut m = Migrant {
            id: r.u64()?,
            secret: r.u32()? as i32,
            user: r.string()?,
            database: r.string()?,
            peer: r.string()?,
            age_us: r.u64()?,
            startup: r.pairs()?,
            startup_extras: r.pairs()?,
            wanted: r.pairs()?,
            extras: r.pairs()?,
            ..Default::default()
        };
        if r.u8()? == 1 {
            m.deferred_begin = Some(r.string()?);
        }
        m.pending = r.bytes()?;
        let n = r.u32()? as usize;
        r.need(n.saturating_mul(8))?;
        m.statements = (0..n)
            .map(|_| Ok((r.bytes()?, r.bytes()?)))
            .collect::<Result<_, DecodeError>>()?;
        for c in &mut m.counters {
            *c = r.u32()?;
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Migrant {
        Migrant {
            id: 42,
            secret: -7,
            user: "app".into(),
            database: "db".into(),
            peer: "127.0.0.1:5000".into(),
            age_us: 1_000_000,
            startup: vec![("TimeZone".into(), "UTC".into())],
            startup_extras: vec![("search_path".into(), "s1".into())],
            wanted: vec![("TimeZone".into(), "Europe/Paris".into())],
            extras: vec![],
            deferred_begin: Some("BEGIN ISOLATION LEVEL SERIALIZABLE".into()),
            pending: vec![b'Q', 0, 0],
            statements: vec![
                (b"s1".to_vec(), b"SELECT $1\0\0\x01\0\0\0\x17".to_vec()),
                (vec![], b"SELECT 1\0\0\0".to_vec()),
            ],
            counters: [3, 4, 5],
        }
    }

    #[test]
    fn a_record_round_trips() {
        let m = sample();
        assert_eq!(Migrant::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let b = sample().encode();
        for n in 0..b.len() {
            assert!(Migrant::decode(&b[..n]).is_err(), "prefix of {n} bytes");
        }
    }

    #[test]
    fn another_version_is_refused() {
        let mut b = sample().encode();
        b[0] = 9;
        assert!(matches!(Migrant::decode(&b), Err(DecodeError::Version(9))));
    }

    #[test]
    fn a_huge_count_is_refused_without_allocating() {
        let mut b = BytesMut::new();
        b.put_u8(VERSION);
        b.put_u64_le(1);
        b.put_u32_le(1);
        for _ in 0..3 {
            put_bytes(&mut b, b"x");
        }
        b.put_u64_le(0);
        b.put_u32_le(u32::MAX);
        assert!(matches!(Migrant::decode(&b), Err(DecodeError::Truncated)));
    }
}
