//! The running proxy: clusters with their poll loop and ports, built from a [`Config`] and
//! rebuilt in place on reload (SIGHUP) without touching open connections.

use crate::config::{ClusterConfig, Config};
use crate::proxy;
use crate::routes::Routes;
use doorman_patroni::{ApiUrl, Member, fetch_any};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A listening port.
pub struct Port {
    /// Its routing table (shared with the accept loop and every connection).
    pub routes: Arc<Routes>,
    listen: SocketAddr,
    stop: CancellationToken,
}

/// One Patroni cluster.
pub struct Cluster {
    /// Name from the config.
    pub name: String,
    hosts: Mutex<Vec<ApiUrl>>,
    /// Members from the last successful `/cluster` poll.
    pub members: Mutex<Vec<Member>>,
    /// Ports by name.
    pub ports: Mutex<BTreeMap<String, Port>>,
    wake: Notify,
    stop: CancellationToken,
    /// Polls that succeeded / failed.
    pub updates_ok: AtomicU64,
    /// See `updates_ok`.
    pub updates_failed: AtomicU64,
    failing: std::sync::atomic::AtomicBool,
    /// One poll at a time (the timer's and /update_clusters').
    polling: tokio::sync::Mutex<()>,
}

/// The whole proxy.
pub struct Proxy {
    /// The config in force.
    pub config: Mutex<Config>,
    /// Clusters by name.
    pub clusters: Mutex<BTreeMap<String, Arc<Cluster>>>,
}

impl Proxy {
    /// Starts every cluster and port of `config`. Errors: a port cannot be bound.
    pub fn start(config: Config) -> Result<Arc<Proxy>, String> {
        let proxy = Arc::new(Proxy {
            config: Mutex::new(config.clone()),
            clusters: Mutex::new(BTreeMap::new()),
        });
        let failed = proxy.apply(config);
        if failed.is_empty() {
            Ok(proxy)
        } else {
            Err(failed.join("\n"))
        }
    }

    /// Makes the running proxy match `config`: new clusters and ports start, removed ones
    /// stop listening (their open connections stay), changed rules and hosts apply at the
    /// next poll, which runs at once. Returns the ports that could not be bound.
    pub fn apply(self: &Arc<Self>, config: Config) -> Vec<String> {
        *self.config.lock() = config.clone();
        let mut failed = Vec::new();
        let mut clusters = self.clusters.lock();
        clusters.retain(|name, c| {
            let keep = config.clusters.contains_key(name);
            if !keep {
                tracing::info!(cluster = %name, "cluster removed from the config: its ports stop listening");
                c.shutdown();
            }
            keep
        });
        for (name, cc) in &config.clusters {
            let cluster = clusters
                .entry(name.clone())
                .or_insert_with(|| {
                    let c = Arc::new(Cluster {
                        name: name.clone(),
                        hosts: Mutex::new(cc.hosts.clone()),
                        members: Mutex::new(Vec::new()),
                        ports: Mutex::new(BTreeMap::new()),
                        wake: Notify::new(),
                        stop: CancellationToken::new(),
                        updates_ok: AtomicU64::new(0),
                        updates_failed: AtomicU64::new(0),
                        failing: Default::default(),
                        polling: tokio::sync::Mutex::new(()),
                    });
                    tokio::spawn(poll_loop(self.clone(), c.clone()));
                    c
                })
                .clone();
            failed.extend(cluster.configure(cc, &config));
            cluster.wake.notify_one();
        }
        failed
    }

    /// Polls every cluster now (HTTP `/update_clusters`); one line per cluster.
    pub async fn update_all(self: &Arc<Self>) -> String {
        let clusters: Vec<Arc<Cluster>> = self.clusters.lock().values().cloned().collect();
        let mut out = String::new();
        for c in clusters {
            let r = c.poll(self).await;
            out.push_str(&format!(
                "{}: {}\n",
                c.name,
                r.unwrap_or_else(|e| format!("error: {e}"))
            ));
        }
        out
    }
}

impl Cluster {
    fn shutdown(&self) {
        self.stop.cancel();
        for p in self.ports.lock().values() {
            p.stop.cancel();
        }
    }

    /// Applies the cluster's section: hosts, and ports started / stopped / re-ruled.
    fn configure(self: &Arc<Self>, cc: &ClusterConfig, config: &Config) -> Vec<String> {
        *self.hosts.lock() = cc.hosts.clone();
        let mut failed = Vec::new();
        let mut ports = self.ports.lock();
        ports.retain(|name, p| {
            let keep = cc.ports.get(name).is_some_and(|pc| pc.listen == p.listen);
            if !keep {
                tracing::info!(cluster = %self.name, port = %name, "port {} stops listening; its open connections stay", p.listen);
                p.stop.cancel();
            }
            keep
        });
        for (name, pc) in &cc.ports {
            if let Some(p) = ports.get(name) {
                *p.routes.config.lock() = pc.clone();
                continue;
            }
            let routes = Arc::new(Routes::new(&self.name, name, pc.clone()));
            // Members already known are routed to at once (a port added by reload).
            routes.update(&self.members.lock(), config.role_change_grace);
            let stop = CancellationToken::new();
            match proxy::listen(
                routes.clone(),
                pc.listen,
                stop.clone(),
                config.connect_timeout,
            ) {
                Ok(()) => {
                    tracing::info!(cluster = %self.name, port = %name, roles = %pc.roles.describe(), "listening on {}", pc.listen);
                    ports.insert(
                        name.clone(),
                        Port {
                            routes,
                            listen: pc.listen,
                            stop,
                        },
                    );
                }
                Err(e) => failed.push(format!(
                    "clusters.{}.ports.{name}: cannot listen on {}: {e}",
                    self.name, pc.listen
                )),
            }
        }
        failed
    }

    /// One `/cluster` poll; on success every port is updated. Returns a one-line summary.
    async fn poll(&self, proxy: &Proxy) -> Result<String, String> {
        let _one = self.polling.lock().await;
        let (hosts, timeout, grace) = {
            let c = proxy.config.lock();
            (
                self.hosts.lock().clone(),
                c.api_timeout,
                c.role_change_grace,
            )
        };
        match fetch_any(&hosts, timeout).await {
            Ok((members, from)) => {
                let now = summary(&members);
                let before = summary(&self.members.lock());
                if now != before {
                    tracing::info!(cluster = %self.name, "members from {}: {now}", hosts[from].text);
                }
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(cluster = %self.name, "Patroni API answers again");
                }
                for p in self.ports.lock().values() {
                    p.routes.update(&members, grace);
                }
                *self.members.lock() = members;
                self.updates_ok.fetch_add(1, Ordering::Relaxed);
                Ok(now)
            }
            Err(e) => {
                let n = self.updates_failed.fetch_add(1, Ordering::Relaxed);
                self.failing.store(true, Ordering::Relaxed);
                // Routing keeps the last member list: a Patroni API outage does not stop traffic.
                if n.is_multiple_of(20) {
                    tracing::warn!(cluster = %self.name, "no Patroni API answered ({e}); routing stays as it was ({} failed polls)", n + 1);
                } else {
                    tracing::debug!(cluster = %self.name, "no Patroni API answered: {e}");
                }
                Err(e.to_string())
            }
        }
    }
}

fn summary(members: &[Member]) -> String {
    members
        .iter()
        .map(|m| {
            format!(
                "{} {} {} {}:{}",
                m.name,
                m.role.as_str(),
                m.state,
                m.host,
                m.port
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn poll_loop(proxy: Arc<Proxy>, cluster: Arc<Cluster>) {
    loop {
        let _ = cluster.poll(&proxy).await;
        let interval = proxy.config.lock().update_interval;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = cluster.wake.notified() => {}
            _ = cluster.stop.cancelled() => return,
        }
    }
}
