//! Building rustls configurations from PEM files and the `tls_*` settings: protocol versions and
//! cipher suites come from rustls (aws-lc-rs), not from a system OpenSSL, so they mean the same on
//! every OS.

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme, SupportedProtocolVersion,
};
use std::sync::Arc;

/// ALPN protocol of PostgreSQL's direct TLS (PostgreSQL 17, protocol §55.2.10).
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// Why a TLS configuration could not be built; names the file or setting.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A PEM file could not be read or held nothing usable.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// A protocol or cipher name rustls does not know.
    #[error("{0}")]
    Setting(String),
    /// rustls refused the combination.
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

/// Protocol versions and cipher suites chosen by name.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `tls_protocols`: comma-separated `tlsv1.2`, `tlsv1.3`, `secure`/`all` (both); empty = both.
    pub protocols: String,
    /// `tls_ciphers`: TLS 1.2 suite names (IANA, e.g. TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384);
    /// empty = rustls defaults.
    pub ciphers: String,
    /// `tls13_ciphers`: TLS 1.3 suite names (e.g. TLS13_AES_256_GCM_SHA384); empty = defaults.
    pub tls13_ciphers: String,
}

fn names(list: &str) -> impl Iterator<Item = &str> {
    list.split([',', ':', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

impl Policy {
    /// Protocol versions to offer. Errors on an unknown name.
    pub fn versions(&self) -> Result<Vec<&'static SupportedProtocolVersion>, TlsConfigError> {
        let (mut v12, mut v13) = (false, false);
        for n in names(&self.protocols) {
            match n.to_ascii_lowercase().as_str() {
                "tlsv1.2" | "tls1.2" => v12 = true,
                "tlsv1.3" | "tls1.3" => v13 = true,
                "secure" | "all" | "default" => (v12, v13) = (true, true),
                other => {
                    return Err(TlsConfigError::Setting(format!(
                        "unknown TLS protocol {other:?} (use tlsv1.2, tlsv1.3 or secure; TLS below 1.2 is not offered)"
                    )));
                }
            }
        }
        if !v12 && !v13 {
            (v12, v13) = (true, true);
        }
        let mut out = Vec::new();
        if v13 {
            out.push(&rustls::version::TLS13);
        }
        if v12 {
            out.push(&rustls::version::TLS12);
        }
        Ok(out)
    }

    /// The aws-lc-rs provider restricted to the named suites. Errors on an unknown name or when
    /// no suite is left for an enabled protocol. (aws-lc-rs rather than ring: a TLS login is
    /// mostly one RSA signature, 262 µs for RSA-2048 with aws-lc-rs here, 495 µs with ring;
    /// OpenSSL, which PgBouncer uses, 250 µs.)
    pub fn provider(&self) -> Result<Arc<CryptoProvider>, TlsConfigError> {
        let mut p = rustls::crypto::aws_lc_rs::default_provider();
        let all = p.cipher_suites.clone();
        let pick = |list: &str, tls13: bool| -> Result<Vec<_>, TlsConfigError> {
            let mut out = Vec::new();
            for n in names(list) {
                let found = all.iter().find(|s| {
                    s.tls13().is_some() == tls13
                        && s.suite()
                            .as_str()
                            .is_some_and(|x| x.eq_ignore_ascii_case(n))
                });
                match found {
                    Some(s) => out.push(*s),
                    None => {
                        let known: Vec<&str> = all
                            .iter()
                            .filter(|s| s.tls13().is_some() == tls13)
                            .filter_map(|s| s.suite().as_str())
                            .collect();
                        return Err(TlsConfigError::Setting(format!(
                            "unknown TLS {} cipher suite {n:?}; known: {}",
                            if tls13 { "1.3" } else { "1.2" },
                            known.join(", ")
                        )));
                    }
                }
            }
            Ok(out)
        };
        let (v12, v13) = (
            pick(&self.ciphers, false)?,
            pick(&self.tls13_ciphers, true)?,
        );
        if !v12.is_empty() || !v13.is_empty() {
            let keep12 = if v12.is_empty() {
                all.iter()
                    .filter(|s| s.tls13().is_none())
                    .copied()
                    .collect()
            } else {
                v12
            };
            let keep13 = if v13.is_empty() {
                all.iter()
                    .filter(|s| s.tls13().is_some())
                    .copied()
                    .collect()
            } else {
                v13
            };
            p.cipher_suites = keep13.into_iter().chain(keep12).collect();
        }
        Ok(Arc::new(p))
    }
}

fn file_err(path: &str, reason: impl std::fmt::Display) -> TlsConfigError {
    TlsConfigError::File {
        path: path.into(),
        reason: reason.to_string(),
    }
}

/// All certificates in a PEM file (a chain or a CA bundle).
pub fn load_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no PEM certificate found"));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &str) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_err(path, e))
}

/// A root store from a PEM bundle (every certificate in it).
pub fn load_roots(path: &str) -> Result<Arc<RootCertStore>, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(path)? {
        roots.add(c).map_err(|e| file_err(path, e))?;
    }
    Ok(Arc::new(roots))
}

/// Client-facing TLS: certificate and key, and the CA that client certificates must chain to
/// when `verify_clients` (tls_mode verify-full). Offers ALPN `postgresql` for direct TLS.
pub fn server_config(
    cert: &str,
    key: &str,
    client_ca: Option<&str>,
    policy: &Policy,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let provider = policy.provider()?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&policy.versions()?)?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(load_roots(ca)?, provider)
                .build()
                .map_err(|e| file_err(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(load_certs(cert)?, load_key(key)?)?;
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    // No session resumption, as PostgreSQL's server (SSL_OP_NO_TICKET, SSL_SESS_CACHE_OFF):
    // libpq never resumes, so the two TLS 1.3 tickets rustls sends by default were two
    // encrypted records and a cache entry per login spent for nothing.
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// How a backend's certificate is checked (server_tls_mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Encryption only (allow / prefer / require without a CA), as libpq's sslmode=require.
    None,
    /// The chain must lead to the CA; the name is not checked.
    Ca,
    /// Chain and host name (or IP) must match.
    Full,
}

/// Backend-facing TLS: CA bundle, optional client certificate for mTLS to PostgreSQL.
pub fn client_config(
    verify: Verify,
    ca: Option<&str>,
    cert_key: Option<(&str, &str)>,
    policy: &Policy,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let provider = policy.provider()?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&policy.versions()?)?;
    let verifier: Arc<dyn ServerCertVerifier> = match (verify, ca) {
        (Verify::None, _) => Arc::new(NoVerify(provider)),
        (_, None) => {
            return Err(TlsConfigError::Setting(
                "server_tls_mode verify-ca/verify-full needs server_tls_ca_cert".into(),
            ));
        }
        (v, Some(ca)) => {
            let inner = WebPkiServerVerifier::builder_with_provider(load_roots(ca)?, provider)
                .build()
                .map_err(|e| file_err(ca, e))?;
            if v == Verify::Full {
                inner
            } else {
                Arc::new(CaOnly(inner))
            }
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match cert_key {
        Some((cert, key)) => builder.with_client_auth_cert(load_certs(cert)?, load_key(key)?)?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// verify-ca: every check of the WebPKI verifier except the name.
#[derive(Debug)]
struct CaOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for CaOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// require/prefer/allow without a CA: the certificate is not checked (libpq sslmode=require),
/// but the handshake signatures are, so the session keys are sound.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names() {
        let p = Policy {
            protocols: "tlsv1.3".into(),
            ..Default::default()
        };
        assert_eq!(p.versions().unwrap().len(), 1);
        assert_eq!(Policy::default().versions().unwrap().len(), 2);
        let bad = Policy {
            protocols: "sslv3".into(),
            ..Default::default()
        };
        assert!(bad.versions().is_err());
        let c = Policy {
            tls13_ciphers: "TLS13_AES_256_GCM_SHA384".into(),
            ..Default::default()
        };
        let prov = c.provider().unwrap();
        assert_eq!(
            prov.cipher_suites
                .iter()
                .filter(|s| s.tls13().is_some())
                .count(),
            1
        );
        assert!(prov.cipher_suites.iter().any(|s| s.tls13().is_none()));
        let unknown = Policy {
            ciphers: "RC4-MD5".into(),
            ..Default::default()
        };
        let e = unknown.provider().unwrap_err().to_string();
        assert!(e.contains("RC4-MD5") && e.contains("known:"), "{e}");
    }
}
