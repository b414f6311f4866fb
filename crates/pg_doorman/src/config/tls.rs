//! The TLS settings of `general` and a pool, turned into the TLS layer's configurations (the
//! TLS layer knows nothing of the config).

use super::model::{General, Pool, ServerTlsMode, TlsMode};
use crate::tls::{
    BackendFiles, BackendTls, ClientFiles, ClientTls, Policy, TlsConfigError, Verify,
};

/// Client-side TLS from `general`; loads the certificate files (errors name the file).
pub fn client_tls(g: &General) -> Result<ClientTls, TlsConfigError> {
    let files = match (&g.tls_certificate, &g.tls_private_key) {
        (Some(cert), Some(key)) if g.tls_mode != TlsMode::Disable => Some(ClientFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: (g.tls_mode == TlsMode::VerifyFull)
                .then(|| g.tls_ca_cert.clone())
                .flatten(),
            policy: Policy {
                protocols: g.tls_protocols.clone(),
                ciphers: g.tls_ciphers.clone(),
                tls13_ciphers: g.tls13_ciphers.clone(),
            },
        }),
        _ => None,
    };
    ClientTls::new(g.tls_mode, files, g.tls_rate_limit_per_second)
}

/// Backend TLS from `general` with the pool's overrides; loads the files.
pub fn backend_tls(g: &General, p: &Pool) -> Result<BackendTls, TlsConfigError> {
    let mode = p.server_tls_mode.unwrap_or(g.server_tls_mode);
    let ca = p
        .server_tls_ca_cert
        .clone()
        .or_else(|| g.server_tls_ca_cert.clone());
    let cert = p
        .server_tls_certificate
        .clone()
        .or_else(|| g.server_tls_certificate.clone());
    let key = p
        .server_tls_private_key
        .clone()
        .or_else(|| g.server_tls_private_key.clone());
    let verify = match mode {
        ServerTlsMode::VerifyFull => Verify::Full,
        // libpq: a root certificate turns require into verify-ca.
        ServerTlsMode::VerifyCa => Verify::Ca,
        ServerTlsMode::Require if ca.is_some() => Verify::Ca,
        _ => Verify::None,
    };
    let files = (mode != ServerTlsMode::Disable).then(|| BackendFiles {
        verify,
        ca,
        cert_key: cert.zip(key),
        policy: Policy {
            protocols: g.server_tls_protocols.clone(),
            ciphers: g.server_tls_ciphers.clone(),
            tls13_ciphers: g.server_tls13_ciphers.clone(),
        },
    });
    BackendTls::new(mode, files)
}
