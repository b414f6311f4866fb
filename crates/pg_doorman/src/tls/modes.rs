//! The TLS modes of both sides as the config spells them (`tls_mode`, `server_tls_mode`).

use serde::{Deserialize, Serialize};

/// Client-side TLS mode (`general.tls_mode`), ordered from least to most strict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// SSLRequest answered 'N'.
    Disable,
    /// Default: TLS offered when a certificate is configured, plain accepted.
    #[default]
    Allow,
    /// TLS only: a plain startup is refused with FATAL 28000 (cancel requests excepted).
    Require,
    /// TLS with a client certificate that chains to `tls_ca_cert` (mTLS).
    VerifyFull,
}

impl TlsMode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Allow => "allow",
            TlsMode::Require => "require",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

/// Backend TLS mode (`server_tls_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ServerTlsMode {
    /// Plain TCP.
    Disable,
    /// Default: plain first; if the server rejects the login, retry on a new socket with TLS
    /// (libpq sslmode=allow).
    #[default]
    Allow,
    /// SSLRequest first; plain if the server answers 'N'.
    Prefer,
    /// TLS or fail; the certificate is checked only if server_tls_ca_cert is set.
    Require,
    /// TLS, certificate chain checked against server_tls_ca_cert.
    VerifyCa,
    /// As verify-ca, and the host name (or IP) must match the certificate.
    VerifyFull,
}
