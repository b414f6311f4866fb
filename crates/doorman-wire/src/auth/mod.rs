//! Password authentication arithmetic: MD5 (protocol §55.3.2) and SCRAM-SHA-256 (RFC 5802/7677,
//! protocol §55.3.1). Pure functions: the pooler does the I/O.

pub mod md5;
pub mod scram;

/// Constant-time equality for secrets.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
