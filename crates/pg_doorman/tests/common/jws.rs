//! Compact JWS tokens signed with rcgen key pairs (RS256, ES256), for the JWT and Talos tests.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{KeyPair, SigningKey};

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// ECDSA DER signature → JWS fixed r||s (RFC 7518 §3.4).
fn fixed(der: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 2; // SEQUENCE tag and (short) length
    for _ in 0..2 {
        assert_eq!(der[i], 0x02);
        let len = der[i + 1] as usize;
        let int = &der[i + 2..i + 2 + len];
        let int = &int[int.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0, 32 - int.len()));
        out.extend_from_slice(int);
        i += 2 + len;
    }
    out
}

/// `claims` (JSON) signed by `key` with `alg` ("RS256" or "ES256"), `kid` in the header if
/// given.
pub fn sign(key: &KeyPair, alg: &str, kid: Option<&str>, claims: &str) -> String {
    let kid = kid.map(|k| format!(",\"kid\":\"{k}\"")).unwrap_or_default();
    let head = URL_SAFE_NO_PAD.encode(format!("{{\"alg\":\"{alg}\",\"typ\":\"JWT\"{kid}}}"));
    let body = URL_SAFE_NO_PAD.encode(claims);
    let input = format!("{head}.{body}");
    let mut sig = key.sign(input.as_bytes()).unwrap();
    if alg == "ES256" {
        sig = fixed(&sig);
    }
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// An unsigned token (`alg: none`) with `claims`.
pub fn unsigned(claims: &str) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode("{\"alg\":\"none\"}"),
        URL_SAFE_NO_PAD.encode(claims)
    )
}
