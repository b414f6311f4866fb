//! JWT logins (PgDoorman's `password: "jwt-pkey-fpath:/path/key.pem"`): the client sends a
//! signed token as its password (AuthenticationCleartextPassword); it is accepted when its
//! signature checks against the public key in that file (RS256 for an RSA key, ES256 for a
//! P-256 key; RFC 7515/7518), it has an `exp` in the future, any `nbf` is past, and its
//! `preferred_username` is the name the client logs in as (RFC 7519 claims, PgDoorman's
//! rule). Verification uses aws-lc-rs, the crypto library rustls already links.

use aws_lc_rs::signature::{self, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The prefix of a user's `password` that names a public key file.
pub const PREFIX: &str = "jwt-pkey-fpath:";

/// A public key tokens are checked against.
#[derive(Debug, Clone)]
pub struct JwtKey {
    /// The file it came from (for logs).
    pub path: String,
    /// The key's DER (SubjectPublicKeyInfo, or PKCS#1 RSAPublicKey).
    der: Vec<u8>,
}

/// Why a token was refused (logged; the client hears only "password authentication failed").
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts with JSON header and claims.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `alg` other than RS256 and ES256 (`none` and HMAC are never accepted).
    #[error("algorithm {0:?} is not accepted (RS256 or ES256)")]
    Algorithm(String),
    /// The signature does not verify with the key.
    #[error("bad signature")]
    Signature,
    /// No `exp`, or it has passed.
    #[error("expired or without exp")]
    Expired,
    /// `nbf` is in the future.
    #[error("not valid yet (nbf)")]
    NotYet,
    /// `preferred_username` missing or another name.
    #[error("preferred_username {0:?} is not the login name")]
    User(Option<String>),
}

/// Decodes the first PEM block of `text` (any label) to DER.
fn pem_der(text: &str) -> Option<Vec<u8>> {
    let start = text.find("-----BEGIN ")?;
    let body = &text[start..];
    let after_header = body.find('\n')? + 1;
    let end = body.find("-----END ")?;
    let b64: String = body
        .get(after_header..end)?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

impl JwtKey {
    /// Reads a PEM public key (`PUBLIC KEY` or `RSA PUBLIC KEY`). Errors name the file.
    pub fn load(path: &str) -> Result<JwtKey, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let der = pem_der(&text).ok_or_else(|| format!("{path}: no PEM public key in it"))?;
        Ok(JwtKey {
            path: path.to_string(),
            der,
        })
    }

    /// Checks `token` for a login as `user` at `now` (seconds since the epoch): signature,
    /// time window, and `preferred_username` equal to `user`.
    pub fn verify(&self, token: &str, user: &str, now: u64) -> Result<(), JwtError> {
        let claims = self.verify_claims(token, now)?;
        let name = claims.get("preferred_username").and_then(|v| v.as_str());
        if name != Some(user) {
            return Err(JwtError::User(name.map(str::to_string)));
        }
        Ok(())
    }

    /// Checks `token`'s signature (RS256 or ES256) with this key and its time window at `now`
    /// (seconds since the epoch; `exp` required and in the future, `nbf` if present past);
    /// returns its claims (a JSON object).
    pub fn verify_claims(&self, token: &str, now: u64) -> Result<serde_json::Value, JwtError> {
        let token = token.trim();
        let (h, c, s) = split(token)?;
        let header = json_part(h)?;
        let alg = header.get("alg").and_then(|a| a.as_str()).unwrap_or("");
        let algorithm: &dyn signature::VerificationAlgorithm = match alg {
            "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
            "ES256" => &signature::ECDSA_P256_SHA256_FIXED,
            other => return Err(JwtError::Algorithm(other.to_string())),
        };
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| JwtError::Malformed("bad base64url"))?;
        // The signing input is the first two parts as sent (RFC 7515 §5.2).
        let signed = &token[..h.len() + 1 + c.len()];
        UnparsedPublicKey::new(algorithm, &self.der)
            .verify(signed.as_bytes(), &sig)
            .map_err(|_| JwtError::Signature)?;
        let claims = json_part(c)?;
        let time = |k: &str| claims.get(k).and_then(|v| v.as_f64());
        match time("exp") {
            Some(exp) if (now as f64) < exp => {}
            _ => return Err(JwtError::Expired),
        }
        if time("nbf").is_some_and(|nbf| (now as f64) < nbf) {
            return Err(JwtError::NotYet);
        }
        Ok(claims)
    }
}

/// The three dot-separated parts of a compact JWS (RFC 7515 §7.1).
fn split(token: &str) -> Result<(&str, &str, &str), JwtError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(c), Some(s), None) => Ok((h, c, s)),
        _ => Err(JwtError::Malformed("not three parts")),
    }
}

/// One base64url part decoded as JSON.
fn json_part(part: &str) -> Result<serde_json::Value, JwtError> {
    let raw = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed("bad base64url"))?;
    serde_json::from_slice(&raw).map_err(|_| JwtError::Malformed("bad JSON"))
}

/// The `kid` of `token`'s header (RFC 7515 §4.1.4), read before any key is chosen; the
/// signature is not checked here.
pub fn key_id(token: &str) -> Result<String, JwtError> {
    let (h, _, _) = split(token.trim())?;
    match json_part(h)?.get("kid").and_then(|k| k.as_str()) {
        Some(kid) if !kid.is_empty() => Ok(kid.to_string()),
        _ => Err(JwtError::Malformed("no kid in the header")),
    }
}

/// Seconds since the epoch now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_decode_to_der() {
        let pem = "junk\n-----BEGIN PUBLIC KEY-----\nAAEC\nAw==\n-----END PUBLIC KEY-----\n";
        assert_eq!(pem_der(pem), Some(vec![0, 1, 2, 3]));
        assert_eq!(pem_der("no pem"), None);
    }

    #[test]
    fn malformed_tokens_and_other_algorithms_are_refused_before_any_crypto() {
        let key = JwtKey {
            path: "k".into(),
            der: vec![1, 2, 3],
        };
        let b = |s: &str| URL_SAFE_NO_PAD.encode(s);
        assert_eq!(
            key.verify("a.b", "u", 0),
            Err(JwtError::Malformed("not three parts"))
        );
        for alg in ["none", "HS256", "RS512"] {
            let t = format!("{}.{}.", b(&format!("{{\"alg\":\"{alg}\"}}")), b("{}"));
            assert_eq!(key.verify(&t, "u", 0), Err(JwtError::Algorithm(alg.into())));
        }
        let t = format!("{}.{}.{}", b("{\"alg\":\"RS256\"}"), b("{}"), b("sig"));
        assert_eq!(key.verify(&t, "u", 0), Err(JwtError::Signature));
    }
}
