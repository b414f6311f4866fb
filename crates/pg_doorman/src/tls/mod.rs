//! TLS on both sides (rustls): the client-facing acceptor (`tls_mode`), the backend connector
//! (`server_tls_mode`), handshake throttling, and SIGHUP reload of certificates on both sides
//! (new handshakes use the new files; established sessions keep theirs).

pub mod config;
mod modes;
mod stream;

pub use config::{Policy, TlsConfigError, Verify};
pub use modes::{ServerTlsMode, TlsMode};
pub use stream::TlsConn;

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Files that build a rustls configuration.
trait Build {
    type Config;
    fn build(&self) -> Result<Arc<Self::Config>, TlsConfigError>;
}

/// A configuration built from files and swapped whole (lock-free) on reload: new handshakes
/// take the current one, established sessions keep theirs.
struct Material<F: Build> {
    files: Option<F>,
    current: ArcSwapOption<F::Config>,
}

impl<F: Build> Material<F> {
    /// Builds once now (errors name the file).
    fn new(files: Option<F>) -> Result<Self, TlsConfigError> {
        let current = match &files {
            Some(f) => Some(f.build()?),
            None => None,
        };
        Ok(Material {
            files,
            current: ArcSwapOption::new(current),
        })
    }

    fn current(&self) -> Option<Arc<F::Config>> {
        self.current.load_full()
    }

    /// Re-reads the files; on error the old configuration stays. False when there are none.
    fn reload(&self) -> Result<bool, TlsConfigError> {
        match &self.files {
            Some(f) => {
                self.current.store(Some(f.build()?));
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Client-facing TLS: mode, the current server configuration (swapped on reload) and the
/// handshake throttle.
pub struct ClientTls {
    /// `tls_mode`.
    pub mode: TlsMode,
    material: Material<ClientFiles>,
    limiter: Option<Mutex<Bucket>>,
}

#[derive(Clone)]
/// The files and policy of client-side TLS.
pub struct ClientFiles {
    /// Certificate chain (PEM).
    pub cert: String,
    /// Private key (PEM).
    pub key: String,
    /// CA of client certificates (verify-full).
    pub ca: Option<String>,
    /// Protocol versions and cipher suites.
    pub policy: Policy,
}

impl Build for ClientFiles {
    type Config = rustls::ServerConfig;
    fn build(&self) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
        config::server_config(&self.cert, &self.key, self.ca.as_deref(), &self.policy)
    }
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("mode", &self.mode)
            .finish()
    }
}

impl ClientTls {
    /// Client-side TLS in `mode` with `files` (None: not offered) and at most
    /// `rate_per_second` handshakes a second (0 = unlimited); loads the files (errors name
    /// the file).
    pub fn new(
        mode: TlsMode,
        files: Option<ClientFiles>,
        rate_per_second: u32,
    ) -> Result<Self, TlsConfigError> {
        Ok(ClientTls {
            mode,
            material: Material::new(files)?,
            limiter: (rate_per_second > 0).then(|| Mutex::new(Bucket::new(rate_per_second))),
        })
    }

    /// The configuration for a new handshake; None when TLS is not offered.
    pub fn acceptor(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.material.current()
    }

    /// Re-reads the certificate files; on error the old configuration stays.
    pub fn reload(&self) -> Result<bool, TlsConfigError> {
        self.material.reload()
    }

    /// Waits for a handshake slot under `tls_rate_limit_per_second`.
    pub async fn throttle(&self) {
        let Some(l) = &self.limiter else { return };
        let wait = l.lock().take();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// A token bucket: `rate` handshakes per second, bursts up to `rate`.
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u32) -> Self {
        Bucket {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            at: Instant::now(),
        }
    }

    /// Takes a token; returns how long to wait before using it.
    fn take(&mut self) -> Duration {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.rate);
        self.at = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// Backend TLS of one pool: mode, verification and the client configuration (swapped on reload).
pub struct BackendTls {
    /// `server_tls_mode`.
    pub mode: ServerTlsMode,
    /// Failed handshakes (pg_doorman_server_tls_handshake_errors_total).
    pub handshake_errors: std::sync::atomic::AtomicU64,
    /// Handshake durations in seconds (pg_doorman_server_tls_handshake_duration_seconds).
    pub handshake_seconds: prometheus_client::metrics::histogram::Histogram,
    material: Material<BackendFiles>,
}

#[derive(Clone)]
/// The files and policy of backend TLS.
pub struct BackendFiles {
    /// How the server's certificate is checked.
    pub verify: Verify,
    /// Root certificates (PEM).
    pub ca: Option<String>,
    /// Client certificate and key (PEM), if the server asks for one.
    pub cert_key: Option<(String, String)>,
    /// Protocol versions and cipher suites.
    pub policy: Policy,
}

impl Build for BackendFiles {
    type Config = rustls::ClientConfig;
    fn build(&self) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
        let ck = self
            .cert_key
            .as_ref()
            .map(|(c, k)| (c.as_str(), k.as_str()));
        config::client_config(self.verify, self.ca.as_deref(), ck, &self.policy)
    }
}

impl std::fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTls")
            .field("mode", &self.mode)
            .finish()
    }
}

impl BackendTls {
    /// Backend TLS in `mode` with `files` (None: plain only); loads the files (errors name
    /// the file).
    pub fn new(mode: ServerTlsMode, files: Option<BackendFiles>) -> Result<Self, TlsConfigError> {
        Ok(BackendTls {
            mode,
            handshake_errors: Default::default(),
            handshake_seconds: handshake_histogram(),
            material: Material::new(files)?,
        })
    }

    /// Plain connections only.
    pub fn disabled() -> Self {
        BackendTls {
            mode: ServerTlsMode::Disable,
            handshake_errors: Default::default(),
            handshake_seconds: handshake_histogram(),
            material: Material {
                files: None,
                current: ArcSwapOption::empty(),
            },
        }
    }

    /// The configuration for a new handshake; None when TLS is off.
    pub fn connector(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.material.current()
    }

    /// Re-reads CA bundle and client certificate; on error the old configuration stays.
    pub fn reload(&self) -> Result<bool, TlsConfigError> {
        self.material.reload()
    }
}

/// Buckets from 1 ms to about 4 s.
fn handshake_histogram() -> prometheus_client::metrics::histogram::Histogram {
    prometheus_client::metrics::histogram::Histogram::new(
        prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 13),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_throttles_past_the_rate() {
        let mut b = Bucket::new(2);
        assert!(b.take().is_zero());
        assert!(b.take().is_zero());
        let wait = b.take();
        assert!(wait > Duration::from_millis(300) && wait <= Duration::from_millis(500));
    }
}
