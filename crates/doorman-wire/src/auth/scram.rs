//! Server side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL runs it: the username in
//! client-first-message is ignored (the startup packet's `user` counts) and channel binding is
//! not offered, so the GS2 header must be `n,,` or `y,,`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Iteration count PostgreSQL uses by default (`scram_iterations`).
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Why an exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message did not follow RFC 5802 syntax.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for channel binding, which we do not offer.
    #[error("channel binding is not supported")]
    ChannelBinding,
    /// The proof did not match: wrong password.
    #[error("invalid SCRAM proof")]
    InvalidProof,
    /// A stored verifier string was not `SCRAM-SHA-256$iter:salt$StoredKey:ServerKey`.
    #[error("invalid SCRAM verifier")]
    BadVerifier,
}

/// A stored SCRAM-SHA-256 secret, as in pg_authid.rolpassword.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    /// PBKDF2 iteration count.
    pub iterations: u32,
    /// Salt (raw bytes).
    pub salt: Vec<u8>,
    /// SHA-256(ClientKey).
    pub stored_key: [u8; 32],
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: [u8; 32],
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length (longer ones are hashed), so this cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn key32(b64: &str) -> Result<[u8; 32], ScramError> {
    let v = B64.decode(b64).map_err(|_| ScramError::BadVerifier)?;
    v.try_into().map_err(|_| ScramError::BadVerifier)
}

impl Verifier {
    /// Parses `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64 fields).
    pub fn parse(s: &str) -> Result<Self, ScramError> {
        let rest = s
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or(ScramError::BadVerifier)?;
        let (iter_salt, keys) = rest.split_once('$').ok_or(ScramError::BadVerifier)?;
        let (iter, salt) = iter_salt.split_once(':').ok_or(ScramError::BadVerifier)?;
        let (stored, server) = keys.split_once(':').ok_or(ScramError::BadVerifier)?;
        let iterations: u32 = iter.parse().map_err(|_| ScramError::BadVerifier)?;
        if iterations == 0 {
            return Err(ScramError::BadVerifier);
        }
        Ok(Verifier {
            iterations,
            salt: B64.decode(salt).map_err(|_| ScramError::BadVerifier)?,
            stored_key: key32(stored)?,
            server_key: key32(server)?,
        })
    }

    /// Derives a verifier from a plaintext password (PBKDF2-HMAC-SHA-256; no SASLprep, so
    /// non-ASCII passwords must match byte for byte).
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = salted_password(password, salt, iterations);
        let client_key = hmac(&salted, &[b"Client Key"]);
        Verifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, &[b"Server Key"]),
        }
    }

    /// The pg_authid text form.
    pub fn to_text(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

/// PBKDF2-HMAC-SHA-256 of `password` (the SaltedPassword of RFC 5802).
pub fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
    out
}

impl Verifier {
    /// Checks a password given in clear text (one PBKDF2 run): its StoredKey and ServerKey
    /// must both match; returns its ClientKey (what a SCRAM proof carries, so a cleartext
    /// login can still log in to the backend by SCRAM passthrough). Constant-time compares.
    pub fn check_password(&self, password: &str) -> Option<[u8; 32]> {
        let salted = salted_password(password, &self.salt, self.iterations);
        let client_key = hmac(&salted, &[b"Client Key"]);
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        let server = hmac(&salted, &[b"Server Key"]);
        let ok = super::ct_eq(&stored, &self.stored_key) & super::ct_eq(&server, &self.server_key);
        ok.then_some(client_key)
    }
}

/// A random nonce: 18 random bytes, base64 (24 printable characters, as PostgreSQL does).
pub fn random_nonce() -> String {
    let mut raw = [0u8; 18];
    rand::fill(&mut raw);
    B64.encode(raw)
}

/// State after server-first-message was sent.
#[derive(Debug, Clone)]
pub struct Exchange {
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// Result of a successful proof check.
#[derive(Debug, Clone)]
pub struct Success {
    /// server-final-message (`v=...`), to send in AuthenticationSASLFinal.
    pub server_final: String,
    /// The ClientKey recovered from the proof (lets the pooler log in to a backend as this user).
    pub client_key: [u8; 32],
}

fn attr(part: &str, name: char) -> Option<&str> {
    let mut c = part.chars();
    (c.next() == Some(name) && c.next() == Some('=')).then(|| &part[2..])
}

impl Exchange {
    /// Reads client-first-message and builds server-first-message with a fresh nonce.
    /// Returns the exchange state and the bytes for AuthenticationSASLContinue.
    pub fn start(verifier: &Verifier, client_first: &[u8]) -> Result<(Self, String), ScramError> {
        Self::start_with_nonce(verifier, client_first, &random_nonce())
    }

    /// As [`Exchange::start`] with a given server nonce (tests use RFC 7677's).
    pub fn start_with_nonce(
        verifier: &Verifier,
        client_first: &[u8],
        server_nonce: &str,
    ) -> Result<(Self, String), ScramError> {
        let msg = std::str::from_utf8(client_first)
            .map_err(|_| ScramError::Malformed("client-first-message is not UTF-8"))?;
        let (cbind, rest) = msg
            .split_once(',')
            .ok_or(ScramError::Malformed("client-first-message"))?;
        match cbind {
            "n" | "y" => {}
            c if c.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("GS2 channel binding flag")),
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("client-first-message"))?;
        if !authzid.is_empty() && !authzid.starts_with("a=") {
            return Err(ScramError::Malformed("GS2 authzid"));
        }
        let mut parts = bare.split(',');
        let first = parts.next().unwrap_or("");
        if first.starts_with("m=") {
            return Err(ScramError::Malformed(
                "mandatory extensions are not supported",
            ));
        }
        attr(first, 'n').ok_or(ScramError::Malformed("username attribute"))?;
        let cnonce = parts
            .next()
            .and_then(|p| attr(p, 'r'))
            .ok_or(ScramError::Malformed("nonce attribute"))?;
        if cnonce.is_empty()
            || !cnonce
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
        {
            return Err(ScramError::Malformed("nonce"));
        }
        let nonce = format!("{cnonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&verifier.salt),
            verifier.iterations
        );
        let ex = Exchange {
            gs2_header: format!("{cbind},{authzid},"),
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok((ex, server_first))
    }

    /// Checks client-final-message against `verifier`.
    ///
    /// Errors: [`ScramError::Malformed`] for bad syntax or a nonce/binding mismatch,
    /// [`ScramError::InvalidProof`] for a wrong password.
    pub fn finish(&self, verifier: &Verifier, client_final: &[u8]) -> Result<Success, ScramError> {
        let msg = std::str::from_utf8(client_final)
            .map_err(|_| ScramError::Malformed("client-final-message is not UTF-8"))?;
        let (without_proof, proof_b64) = msg
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("proof attribute"))?;
        let mut parts = without_proof.split(',');
        let cbind = parts
            .next()
            .and_then(|p| attr(p, 'c'))
            .ok_or(ScramError::Malformed("channel binding attribute"))?;
        if cbind != B64.encode(&self.gs2_header) {
            return Err(ScramError::Malformed("channel binding does not match"));
        }
        let nonce = parts
            .next()
            .and_then(|p| attr(p, 'r'))
            .ok_or(ScramError::Malformed("nonce attribute"))?;
        if nonce != self.nonce {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let proof = B64
            .decode(proof_b64)
            .map_err(|_| ScramError::Malformed("proof encoding"))?;
        if proof.len() != 32 {
            return Err(ScramError::Malformed("proof length"));
        }
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let signature = hmac(&verifier.stored_key, &[auth_message.as_bytes()]);
        let mut client_key = [0u8; 32];
        for (i, k) in client_key.iter_mut().enumerate() {
            *k = proof[i] ^ signature[i];
        }
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        if !super::ct_eq(&stored, &verifier.stored_key) {
            return Err(ScramError::InvalidProof);
        }
        let server_signature = hmac(&verifier.server_key, &[auth_message.as_bytes()]);
        Ok(Success {
            server_final: format!("v={}", B64.encode(server_signature)),
            client_key,
        })
    }
}

/// Client side of SCRAM-SHA-256 that proves knowledge of a ClientKey instead of a password:
/// lets the pooler log in to PostgreSQL as a user whose secret it only holds as a verifier,
/// using the ClientKey recovered from that user's own successful login (PgDoorman's SCRAM
/// passthrough). The backend's verifier must be the configured one (same salt and iterations).
#[derive(Debug, Clone)]
pub struct KeyClient {
    client_key: [u8; 32],
    verifier: Verifier,
    nonce: String,
    auth_message: String,
}

impl KeyClient {
    /// Starts an exchange; returns the client and client-first-message.
    pub fn new(client_key: [u8; 32], verifier: Verifier) -> (Self, String) {
        let nonce = random_nonce();
        let first = format!("n,,n=,r={nonce}");
        (
            KeyClient {
                client_key,
                verifier,
                nonce,
                auth_message: String::new(),
            },
            first,
        )
    }

    /// Reads server-first-message and returns client-final-message.
    ///
    /// Errors: [`ScramError::Malformed`] for bad syntax or a nonce that does not extend ours;
    /// [`ScramError::BadVerifier`] when the server's salt or iteration count differ from the
    /// configured verifier (the ClientKey would not match).
    pub fn respond(&mut self, server_first: &[u8]) -> Result<String, ScramError> {
        let msg = std::str::from_utf8(server_first)
            .map_err(|_| ScramError::Malformed("server-first-message is not UTF-8"))?;
        let mut parts = msg.split(',');
        let nonce = parts
            .next()
            .and_then(|p| attr(p, 'r'))
            .ok_or(ScramError::Malformed("server nonce"))?;
        let salt = parts
            .next()
            .and_then(|p| attr(p, 's'))
            .ok_or(ScramError::Malformed("salt"))?;
        let iter = parts
            .next()
            .and_then(|p| attr(p, 'i'))
            .ok_or(ScramError::Malformed("iterations"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Malformed(
                "server nonce does not extend the client nonce",
            ));
        }
        let salt = B64
            .decode(salt)
            .map_err(|_| ScramError::Malformed("salt encoding"))?;
        if salt != self.verifier.salt || iter.parse::<u32>().ok() != Some(self.verifier.iterations)
        {
            return Err(ScramError::BadVerifier);
        }
        let without_proof = format!("c=biws,r={nonce}");
        self.auth_message = format!("n=,r={},{msg},{without_proof}", self.nonce);
        let signature = hmac(&self.verifier.stored_key, &[self.auth_message.as_bytes()]);
        let mut proof = [0u8; 32];
        for (i, p) in proof.iter_mut().enumerate() {
            *p = self.client_key[i] ^ signature[i];
        }
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks server-final-message (`v=...`) against the configured ServerKey.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let msg = std::str::from_utf8(server_final)
            .map_err(|_| ScramError::Malformed("server-final-message is not UTF-8"))?;
        let v = msg
            .split(',')
            .next()
            .and_then(|p| attr(p, 'v'))
            .ok_or(ScramError::Malformed("server signature"))?;
        let expected = hmac(&self.verifier.server_key, &[self.auth_message.as_bytes()]);
        let got = B64
            .decode(v)
            .map_err(|_| ScramError::Malformed("server signature encoding"))?;
        if super::ct_eq(&got, &expected) {
            Ok(())
        } else {
            Err(ScramError::InvalidProof)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677 §3 test vector.
    const SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SNONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";

    fn rfc_verifier() -> Verifier {
        Verifier::from_password("pencil", &B64.decode(SALT).unwrap(), 4096)
    }

    #[test]
    fn rfc7677_vector() {
        let v = rfc_verifier();
        let (ex, server_first) =
            Exchange::start_with_nonce(&v, CLIENT_FIRST.as_bytes(), SNONCE).unwrap();
        assert_eq!(
            server_first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let ok = ex.finish(&v, CLIENT_FINAL.as_bytes()).unwrap();
        assert_eq!(
            ok.server_final,
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn wrong_password_is_invalid_proof() {
        let v = Verifier::from_password("pencil2", &B64.decode(SALT).unwrap(), 4096);
        let (ex, _) = Exchange::start_with_nonce(&v, CLIENT_FIRST.as_bytes(), SNONCE).unwrap();
        assert_eq!(
            ex.finish(&v, CLIENT_FINAL.as_bytes()).unwrap_err(),
            ScramError::InvalidProof
        );
    }

    #[test]
    fn verifier_text_round_trip() {
        let v = rfc_verifier();
        assert_eq!(Verifier::parse(&v.to_text()).unwrap(), v);
        assert!(Verifier::parse("SCRAM-SHA-256$x:abc$def:ghi").is_err());
        assert!(Verifier::parse("md5abc").is_err());
    }

    #[test]
    fn malformed_messages_are_rejected() {
        let v = rfc_verifier();
        assert!(Exchange::start(&v, b"p=tls-server-end-point,,n=,r=abc").is_err());
        assert!(Exchange::start(&v, b"n,,r=abc").is_err());
        assert!(Exchange::start(&v, b"garbage").is_err());
        assert!(Exchange::start(&v, &[0xff, 0xfe]).is_err());
        let (ex, _) = Exchange::start_with_nonce(&v, CLIENT_FIRST.as_bytes(), SNONCE).unwrap();
        assert!(
            ex.finish(
                &v,
                b"c=biws,r=wrongnonce,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
            )
            .is_err()
        );
        assert!(ex.finish(&v, b"c=eSws,r=x").is_err());
    }

    #[test]
    fn key_client_logs_in_with_recovered_client_key() {
        let v = Verifier::from_password("secret", b"sixteen byte slt", 4096);
        // What a first login of the user recovers (see Success::client_key).
        let salted = salted_password("secret", b"sixteen byte slt", 4096);
        let client_key = hmac(&salted, &[b"Client Key"]);
        // The pooler then logs in elsewhere with it.
        let (mut kc, first) = KeyClient::new(client_key, v.clone());
        let (server, server_first) = Exchange::start(&v, first.as_bytes()).unwrap();
        let client_final = kc.respond(server_first.as_bytes()).unwrap();
        let ok = server.finish(&v, client_final.as_bytes()).unwrap();
        assert_eq!(ok.client_key, client_key);
        kc.verify(ok.server_final.as_bytes()).unwrap();
        assert!(kc.verify(b"v=AAAA").is_err());
        // A server with another salt cannot be answered.
        let other = Verifier::from_password("secret", b"another salt....", 4096);
        let (mut kc, first) = KeyClient::new(client_key, v.clone());
        let (_, server_first) = Exchange::start(&other, first.as_bytes()).unwrap();
        assert_eq!(
            kc.respond(server_first.as_bytes()).unwrap_err(),
            ScramError::BadVerifier
        );
    }

    #[test]
    fn cleartext_check_against_a_verifier() {
        let v = Verifier::from_password("s3cret", b"0123456789abcdef", 4096);
        let key = v.check_password("s3cret").unwrap();
        assert_eq!(<[u8; 32]>::from(Sha256::digest(key)), v.stored_key);
        assert!(v.check_password("s3cret ").is_none());
        assert!(v.check_password("").is_none());
    }
}
