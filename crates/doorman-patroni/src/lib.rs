//! Patroni's REST API as pg_doorman and patroni_proxy read it: `GET /cluster` on one or more
//! Patroni nodes, the members it lists with their role, state, address and replication lag.
//!
//! Only what both programs need: the member list ([`Member`]), a fetch from one URL
//! ([`fetch_cluster`]) and a race over several ([`fetch_any`]), each under a timeout. HTTP is
//! hyper's HTTP/1 client; `https://` URLs are refused by [`ApiUrl::parse`] (no TLS to Patroni).

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use serde::Deserialize;
use std::time::Duration;

mod member;
pub use member::{Member, Role};

/// Largest `/cluster` reply read (bytes): a cluster of hundreds of members is well under it.
pub const MAX_REPLY: usize = 4 << 20;

/// A Patroni REST endpoint, checked: `http://host:port[/prefix]`; the request goes to
/// `<prefix>/cluster` (a URL already ending in `/cluster` is taken as it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiUrl {
    /// The URL as configured (for logs).
    pub text: String,
    /// Host name or address.
    pub host: String,
    /// TCP port (8008 when the URL names none: Patroni's default).
    pub port: u16,
    /// Request path, e.g. `/cluster`.
    pub path: String,
}

impl ApiUrl {
    /// Parses a configured URL. Errors (as text for the config error): not a URL, a scheme
    /// other than `http`, no host.
    pub fn parse(text: &str) -> Result<ApiUrl, String> {
        let uri: hyper::Uri = text
            .parse()
            .map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "{text:?}: TLS to the Patroni API is not supported; use an http:// URL (a local Patroni, or a TLS-terminating sidecar)"
                ));
            }
            _ => return Err(format!("{text:?}: expected http://host:port")),
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{text:?}: no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let base = uri.path().trim_end_matches('/');
        let path = if base.ends_with("/cluster") {
            base.to_string()
        } else {
            format!("{base}/cluster")
        };
        Ok(ApiUrl {
            text: text.to_string(),
            host,
            port: uri.port_u16().unwrap_or(8008),
            path,
        })
    }
}

/// Why a `/cluster` request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// TCP connect or I/O failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// HTTP protocol error.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// Patroni answered with a status other than 200.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The reply was not the `/cluster` JSON document.
    #[error("reply is not Patroni's /cluster document: {0}")]
    Json(#[from] serde_json::Error),
    /// The reply was larger than [`MAX_REPLY`].
    #[error("reply larger than {MAX_REPLY} bytes")]
    TooLarge,
    /// No reply within the timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// Every URL failed (the race of [`fetch_any`]); one line per URL.
    #[error("{0}")]
    All(String),
}

#[derive(Deserialize)]
struct ClusterDoc {
    #[serde(default)]
    members: Vec<Member>,
}

/// Parses Patroni's `/cluster` JSON (`{"members": [...], "scope": ...}`).
pub fn parse_cluster(body: &[u8]) -> Result<Vec<Member>, ApiError> {
    Ok(serde_json::from_slice::<ClusterDoc>(body)?.members)
}

/// `GET <url>/cluster` within `timeout` (connect, request and whole reply).
pub async fn fetch_cluster(url: &ApiUrl, timeout: Duration) -> Result<Vec<Member>, ApiError> {
    match tokio::time::timeout(timeout, fetch_inner(url)).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::Timeout(timeout)),
    }
}

async fn fetch_inner(url: &ApiUrl) -> Result<Vec<Member>, ApiError> {
    let stream = tokio::net::TcpStream::connect((url.host.as_str(), url.port)).await?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    let authority = if url.host.contains(':') {
        format!("[{}]:{}", url.host, url.port)
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let request = hyper::Request::get(url.path.as_str())
        .header(hyper::header::HOST, authority)
        .header(hyper::header::ACCEPT, "application/json")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::Io(std::io::Error::other(e)))?;
    let exchange = async {
        let reply = sender.send_request(request).await?;
        if reply.status() != hyper::StatusCode::OK {
            return Err(ApiError::Status(reply.status().as_u16()));
        }
        let limited = http_body_util::Limited::new(reply.into_body(), MAX_REPLY);
        let body = limited.collect().await.map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::TooLarge
            } else {
                match e.downcast::<hyper::Error>() {
                    Ok(h) => ApiError::Http(*h),
                    Err(e) => ApiError::Io(std::io::Error::other(e)),
                }
            }
        })?;
        parse_cluster(&body.to_bytes())
    };
    // The connection task is driven here, not spawned: when the timeout drops this future the
    // socket goes with it.
    let mut exchange = std::pin::pin!(exchange);
    let mut conn = std::pin::pin!(conn);
    let mut conn_done = false;
    loop {
        tokio::select! {
            biased;
            r = &mut exchange => return r,
            c = &mut conn, if !conn_done => {
                conn_done = true;
                c?;
            }
        }
    }
}

/// Asks every URL at once and returns the first member list with the index of the URL that
/// gave it. Errors: [`ApiError::All`] naming each URL's failure.
pub async fn fetch_any(
    urls: &[ApiUrl],
    timeout: Duration,
) -> Result<(Vec<Member>, usize), ApiError> {
    let mut race: FuturesUnordered<_> = urls
        .iter()
        .enumerate()
        .map(|(i, u)| async move { (i, fetch_cluster(u, timeout).await) })
        .collect();
    let mut failures = Vec::new();
    while let Some((i, r)) = race.next().await {
        match r {
            Ok(members) => return Ok((members, i)),
            Err(e) => failures.push(format!("{}: {e}", urls[i].text)),
        }
    }
    if failures.is_empty() {
        failures.push("no Patroni API URL configured".into());
    }
    Err(ApiError::All(failures.join("; ")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_get_the_cluster_path_and_https_is_refused() {
        let u = ApiUrl::parse("http://10.0.0.1:8008").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("10.0.0.1", 8008, "/cluster")
        );
        assert_eq!(ApiUrl::parse("http://h/").unwrap().port, 8008);
        assert_eq!(ApiUrl::parse("http://h:1/p/").unwrap().path, "/p/cluster");
        assert_eq!(
            ApiUrl::parse("http://h:1/cluster").unwrap().path,
            "/cluster"
        );
        assert_eq!(ApiUrl::parse("http://[::1]:9/").unwrap().host, "::1");
        assert!(ApiUrl::parse("https://h:1").unwrap_err().contains("TLS"));
        assert!(ApiUrl::parse("h:1").is_err());
        assert!(ApiUrl::parse("not a url").is_err());
    }

    #[test]
    fn a_real_cluster_document_parses() {
        // Patroni 4.1.5's reply for a two-member cluster (leader running, replica streaming).
        let doc = br#"{"members": [{"name": "node0", "role": "leader", "state": "running", "api_url": "http://127.0.0.1:18000/patroni", "host": "127.0.0.1", "port": 15430, "timeline": 1}, {"name": "node1", "role": "replica", "state": "streaming", "api_url": "http://127.0.0.1:18001/patroni", "host": "127.0.0.1", "port": 15431, "timeline": 1, "receive_lag": 0, "lag": 42, "lsn": "0/3000000", "tags": {"noloadbalance": true}}, {"name": "node2", "role": "sync_standby", "state": "stopped", "host": "h2", "port": 5432, "lag": "unknown"}], "scope": "doorman"}"#;
        let m = parse_cluster(doc).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].role, Role::Leader);
        assert!(m[0].is_running() && m[0].lag.is_none());
        assert_eq!(m[1].role, Role::Replica);
        assert!(m[1].is_running() && m[1].noloadbalance());
        assert_eq!(m[1].lag, Some(42));
        assert_eq!(m[2].role, Role::SyncStandby);
        assert!(!m[2].is_running());
        assert_eq!(m[2].lag, None);
        assert!(parse_cluster(b"<html>").is_err());
    }

    #[tokio::test]
    async fn a_dead_url_loses_the_race_to_a_live_one() {
        // A live one-shot HTTP/1.0 server that closes after the reply, as Patroni's does.
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = live.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = live.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let body = r#"{"members":[{"name":"a","role":"leader","state":"running","host":"127.0.0.1","port":5432}]}"#;
            let _ = s
                .write_all(
                    format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{body}")
                        .as_bytes(),
                )
                .await;
        });
        let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_port = dead.local_addr().unwrap().port();
        drop(dead);
        let urls = [
            ApiUrl::parse(&format!("http://127.0.0.1:{dead_port}")).unwrap(),
            ApiUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        ];
        let (members, i) = fetch_any(&urls, Duration::from_secs(2)).await.unwrap();
        assert_eq!(i, 1);
        assert_eq!(members[0].name, "a");
        let err = fetch_any(&urls[..1], Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{dead_port}")),
            "{err}"
        );
    }
}
