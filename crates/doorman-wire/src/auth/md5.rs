//! MD5 password hashing as PostgreSQL stores and exchanges it (pg_authid "md5" + hex; the
//! AuthenticationMD5Password reply is "md5" + hex(md5(hex(md5(password || user)) || salt))).

use md5::{Digest, Md5};

/// Lower-case hex of `bytes` (two characters per byte), as pg_authid writes MD5 secrets.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// The pg_authid form of an MD5 password: `md5` followed by 32 hex digits of md5(password || user).
pub fn secret(user: &str, password: &str) -> String {
    let mut h = Md5::new();
    h.update(password.as_bytes());
    h.update(user.as_bytes());
    format!("md5{}", hex(&h.finalize()))
}

/// True when `s` looks like a stored MD5 secret (`md5` + 32 lowercase hex digits).
pub fn is_secret(s: &str) -> bool {
    s.len() == 35
        && s.starts_with("md5")
        && s[3..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The reply to an MD5 challenge computed from a stored secret (`md5...`) and the 4-byte salt.
pub fn response_from_secret(secret: &str, salt: [u8; 4]) -> String {
    let inner = secret.strip_prefix("md5").unwrap_or(secret);
    let mut h = Md5::new();
    h.update(inner.as_bytes());
    h.update(salt);
    format!("md5{}", hex(&h.finalize()))
}

/// Checks a client's MD5 reply against a stored secret; constant time.
pub fn verify(secret: &str, salt: [u8; 4], client_reply: &str) -> bool {
    super::ct_eq(
        response_from_secret(secret, salt).as_bytes(),
        client_reply.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_postgres() {
        // PostgreSQL: SELECT 'md5' || md5('postgres' || 'postgres');
        let s = secret("postgres", "postgres");
        assert_eq!(s, "md53175bce1d3201d16594cebf9d7eb3f9d");
        assert!(is_secret(&s));
        assert!(!is_secret("md5xyz"));
    }

    #[test]
    fn verify_round_trip() {
        let s = secret("bob", "pw");
        let salt = [9, 8, 7, 6];
        let reply = response_from_secret(&s, salt);
        assert!(verify(&s, salt, &reply));
        assert!(!verify(&s, [0, 0, 0, 0], &reply));
        assert!(!verify(&secret("bob", "other"), salt, &reply));
    }
}
