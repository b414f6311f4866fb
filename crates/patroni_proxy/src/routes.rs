//! One listening port's routing table: the members it may send connections to, the
//! connections open to each, and the closing of connections to a member that stopped
//! qualifying (role changed, lag over the limit, not running, gone from `/cluster`).

use crate::config::PortConfig;
use doorman_patroni::Member;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// One member as a target of one port.
#[derive(Debug)]
pub struct Backend {
    /// Patroni member name.
    pub member: String,
    /// PostgreSQL host.
    pub host: String,
    /// PostgreSQL port (`host_port`, or the member's).
    pub port: u16,
    /// The member's role at the last update (`leader`, `replica`, …).
    pub role: Mutex<String>,
    /// Connections open now.
    pub active: AtomicU64,
    /// Connections made since this backend appeared.
    pub total: AtomicU64,
    /// Still routed to (false from the update that found it no longer qualifying).
    pub qualified: AtomicBool,
    /// Cancelled when its connections are to be closed.
    pub close: CancellationToken,
}

/// Counts an open connection for its backend's least-connections figure; decrements on drop.
pub struct Lease(pub Arc<Backend>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Figures of one port (PgBouncer-style monotonic counters, read by /metrics).
#[derive(Debug, Default)]
pub struct PortStats {
    /// Connections refused because no member qualified.
    pub refused: AtomicU64,
    /// Connects to a chosen member that failed (another member is tried if there is one).
    pub connect_errors: AtomicU64,
    /// Connections closed because their member stopped qualifying.
    pub closed_on_change: AtomicU64,
}

/// A port's routing table.
#[derive(Debug)]
pub struct Routes {
    /// Cluster name (for logs and labels).
    pub cluster: String,
    /// Port name.
    pub name: String,
    /// The port's rules; replaced on reload.
    pub config: Mutex<PortConfig>,
    backends: Mutex<Vec<Arc<Backend>>>,
    /// Counters.
    pub stats: PortStats,
    /// Rotates the start of the least-connections scan so ties spread.
    next: AtomicU64,
}

impl Routes {
    /// An empty table for `config` (nothing routed until the first update).
    pub fn new(cluster: &str, name: &str, config: PortConfig) -> Routes {
        Routes {
            cluster: cluster.to_string(),
            name: name.to_string(),
            config: Mutex::new(config),
            backends: Mutex::new(Vec::new()),
            stats: PortStats::default(),
            next: AtomicU64::new(0),
        }
    }

    /// Every backend known (qualified or draining), for /metrics.
    pub fn backends(&self) -> Vec<Arc<Backend>> {
        self.backends.lock().clone()
    }

    /// Applies a fresh member list. Members that qualify are routed to (their open
    /// connections untouched); one that no longer qualifies gets no new connections, and its
    /// open ones are closed after `grace` unless it qualifies again by then.
    pub fn update(self: &Arc<Self>, members: &[Member], grace: Duration) {
        let config = self.config.lock().clone();
        let mut backends = self.backends.lock();
        // Drop backends closed and emptied by an earlier update.
        backends.retain(|b| !(b.close.is_cancelled() && b.active.load(Ordering::Relaxed) == 0));
        for m in members.iter().filter(|m| config.admits(m)) {
            let port = config.host_port.unwrap_or(m.port);
            let found = backends.iter().find(|b| {
                b.member == m.name && b.host == m.host && b.port == port && !b.close.is_cancelled()
            });
            match found {
                Some(b) => {
                    if !b.qualified.swap(true, Ordering::AcqRel) {
                        tracing::info!(cluster = %self.cluster, port = %self.name, member = %m.name, "member qualifies again; its connections stay open");
                    }
                    *b.role.lock() = m.role.as_str().to_string();
                }
                None => {
                    tracing::info!(cluster = %self.cluster, port = %self.name, member = %m.name, role = m.role.as_str(), "routing to {}:{port}", m.host);
                    backends.push(Arc::new(Backend {
                        member: m.name.clone(),
                        host: m.host.clone(),
                        port,
                        role: Mutex::new(m.role.as_str().to_string()),
                        active: AtomicU64::new(0),
                        total: AtomicU64::new(0),
                        qualified: AtomicBool::new(true),
                        close: CancellationToken::new(),
                    }));
                }
            }
        }
        for b in backends.iter() {
            let still = members.iter().any(|m| {
                m.name == b.member
                    && m.host == b.host
                    && config.host_port.unwrap_or(m.port) == b.port
                    && config.admits(m)
            });
            if still || b.close.is_cancelled() {
                continue;
            }
            let why = match members.iter().find(|m| m.name == b.member) {
                None => "gone from /cluster".to_string(),
                Some(m) if !m.is_running() => format!("state {}", m.state),
                Some(m) => format!(
                    "role {}, lag {}",
                    m.role.as_str(),
                    m.lag.map_or("unknown".into(), |l| format!("{l} bytes"))
                ),
            };
            if b.qualified.swap(false, Ordering::AcqRel) {
                let open = b.active.load(Ordering::Relaxed);
                tracing::warn!(cluster = %self.cluster, port = %self.name, member = %b.member, "member no longer qualifies ({why}): no new connections; {open} open connections close in {grace:?}");
                let b = b.clone();
                let routes = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    if !b.qualified.load(Ordering::Acquire) {
                        let open = b.active.load(Ordering::Relaxed);
                        routes
                            .stats
                            .closed_on_change
                            .fetch_add(open, Ordering::Relaxed);
                        b.close.cancel();
                        if open > 0 {
                            tracing::warn!(cluster = %routes.cluster, port = %routes.name, member = %b.member, "closed {open} connections");
                        }
                    }
                });
            }
        }
    }

    /// The qualified backends, fewest open connections first (ties rotated), each taken with
    /// a [`Lease`] by the caller that connects.
    pub fn candidates(&self) -> Vec<Arc<Backend>> {
        let mut v: Vec<Arc<Backend>> = self
            .backends
            .lock()
            .iter()
            .filter(|b| b.qualified.load(Ordering::Acquire) && !b.close.is_cancelled())
            .cloned()
            .collect();
        if v.len() > 1 {
            let start = (self.next.fetch_add(1, Ordering::Relaxed) as usize) % v.len();
            v.rotate_left(start);
            // Stable: among equals the rotated order stays.
            v.sort_by_key(|b| b.active.load(Ordering::Relaxed));
        }
        v
    }
}

/// Takes a connection slot on `b` (least-connections figure up until the lease drops).
pub fn lease(b: &Arc<Backend>) -> Lease {
    b.active.fetch_add(1, Ordering::Relaxed);
    b.total.fetch_add(1, Ordering::Relaxed);
    Lease(b.clone())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::Config;

    fn members(doc: &str) -> Vec<Member> {
        doorman_patroni::parse_cluster(doc.as_bytes()).unwrap()
    }

    fn routes(roles: &str) -> Arc<Routes> {
        let c = Config::parse(&format!(
            "clusters:\n  c:\n    hosts: [\"http://h:1\"]\n    ports:\n      p: {{listen: \"127.0.0.1:1\", roles: [{roles}]}}\n"
        ))
        .unwrap();
        Arc::new(Routes::new("c", "p", c.clusters["c"].ports["p"].clone()))
    }

    const TWO: &str = r#"{"members":[{"name":"a","role":"leader","state":"running","host":"h","port":1},{"name":"b","role":"replica","state":"streaming","host":"h","port":2,"lag":0},{"name":"c","role":"replica","state":"streaming","host":"h","port":3,"lag":0}]}"#;

    #[tokio::test]
    async fn least_connections_and_role_loss() {
        let r = routes("async");
        r.update(&members(TWO), Duration::ZERO);
        let first = r.candidates();
        assert_eq!(first.len(), 2);
        let l1 = lease(&first[0]);
        // The other replica has fewer connections now: it comes first.
        assert_ne!(r.candidates()[0].member, l1.0.member);
        let l2 = lease(&r.candidates()[0]);
        assert_ne!(l1.0.member, l2.0.member);
        // b is promoted: it leaves the async port and its connection is told to close.
        let promoted = TWO
            .replace(
                r#""name":"a","role":"leader""#,
                r#""name":"a","role":"replica""#,
            )
            .replace(
                r#""name":"b","role":"replica""#,
                r#""name":"b","role":"leader""#,
            );
        r.update(&members(&promoted), Duration::ZERO);
        let b = r.backends().into_iter().find(|x| x.member == "b").unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(b.close.is_cancelled());
        let names: Vec<String> = r.candidates().iter().map(|x| x.member.clone()).collect();
        assert!(names.contains(&"a".to_string()) && !names.contains(&"b".to_string()));
        // c kept its backend (and its connection, if it had one).
        let c = r.backends().into_iter().find(|x| x.member == "c").unwrap();
        assert!(!c.close.is_cancelled());
        drop((l1, l2));
    }

    #[tokio::test]
    async fn a_member_back_within_the_grace_keeps_its_connections() {
        let r = routes("leader");
        r.update(&members(TWO), Duration::from_secs(60));
        let a = r.candidates().remove(0);
        let _l = lease(&a);
        r.update(&members(r#"{"members":[]}"#), Duration::from_millis(50));
        assert!(r.candidates().is_empty());
        r.update(&members(TWO), Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(!a.close.is_cancelled());
        assert_eq!(r.candidates()[0].member, "a");
    }
}
