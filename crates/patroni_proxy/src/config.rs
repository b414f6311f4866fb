//! patroni_proxy's YAML config, in PgDoorman's format for it (its patroni_proxy tutorial), plus
//! the keys this one adds: `patroni_api_timeout`, `connect_timeout`, `role_change_grace`.
//!
//! ```yaml
//! cluster_update_interval: 3          # seconds between /cluster polls
//! listen_address: "127.0.0.1:8009"    # HTTP API: /, /update_clusters, /metrics
//! clusters:
//!   main:
//!     hosts: ["http://10.0.0.1:8008", "http://10.0.0.2:8008"]
//!     ports:
//!       master:   {listen: "0.0.0.0:6432", roles: [leader]}
//!       replicas: {listen: "0.0.0.0:6433", roles: [sync, async], max_lag_in_bytes: 16777216}
//! ```

use doorman_patroni::{ApiUrl, Member, Role};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_interval")]
    cluster_update_interval: f64,
    #[serde(default = "default_listen")]
    listen_address: String,
    #[serde(default)]
    patroni_api_timeout: Option<f64>,
    #[serde(default = "default_connect_timeout")]
    connect_timeout: f64,
    #[serde(default)]
    role_change_grace: f64,
    #[serde(default)]
    clusters: BTreeMap<String, RawCluster>,
}

fn default_interval() -> f64 {
    3.0
}
fn default_listen() -> String {
    "127.0.0.1:8009".into()
}
fn default_connect_timeout() -> f64 {
    5.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    hosts: Vec<String>,
    #[serde(default)]
    tls: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    ports: BTreeMap<String, RawPort>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    listen: String,
    roles: Vec<String>,
    #[serde(default)]
    host_port: Option<u16>,
    #[serde(default)]
    max_lag_in_bytes: Option<u64>,
}

/// The checked config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `cluster_update_interval` (default 3 s): time between `/cluster` polls.
    pub update_interval: Duration,
    /// `listen_address` (default 127.0.0.1:8009): the HTTP API.
    pub api_listen: SocketAddr,
    /// `patroni_api_timeout` (default: the update interval, at most 5 s): one poll's limit.
    pub api_timeout: Duration,
    /// `connect_timeout` (default 5 s): TCP connect to a member's PostgreSQL.
    pub connect_timeout: Duration,
    /// `role_change_grace` (default 0 s): how long connections to a member that no longer
    /// qualifies for a port (role changed, lag over the limit, gone, not running) stay open.
    pub role_change_grace: Duration,
    /// Clusters by name.
    pub clusters: BTreeMap<String, ClusterConfig>,
}

/// `clusters.<name>`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// `hosts`: Patroni REST endpoints, asked at once; the first answer wins.
    pub hosts: Vec<ApiUrl>,
    /// `ports` by name.
    pub ports: BTreeMap<String, PortConfig>,
}

/// `clusters.<name>.ports.<name>`.
#[derive(Debug, Clone, PartialEq)]
pub struct PortConfig {
    /// `listen`: where clients connect.
    pub listen: SocketAddr,
    /// `roles`: which members this port routes to.
    pub roles: Roles,
    /// `host_port`: PostgreSQL port on the members; None = the port `/cluster` lists.
    pub host_port: Option<u16>,
    /// `max_lag_in_bytes`: replicas lagging more (or of unknown lag) are not routed to.
    pub max_lag: Option<u64>,
}

/// The role set of a port (`leader`, `sync`, `async`, `any`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles {
    /// `leader` (also a standby cluster's `standby_leader`).
    pub leader: bool,
    /// `sync`: sync_standby / quorum_standby.
    pub sync: bool,
    /// `async`: replica.
    pub replica: bool,
}

impl Roles {
    /// The roles as configured, for logs (`leader,sync`).
    pub fn describe(&self) -> String {
        let mut v = Vec::new();
        if self.leader {
            v.push("leader");
        }
        if self.sync {
            v.push("sync");
        }
        if self.replica {
            v.push("async");
        }
        v.join(",")
    }
}

impl PortConfig {
    /// Whether `m` may take this port's connections now: running, of a listed role, not
    /// tagged noloadbalance when a replica, and within `max_lag_in_bytes` when a replica.
    pub fn admits(&self, m: &Member) -> bool {
        if !m.is_running() || m.host.is_empty() {
            return false;
        }
        let replica = match m.role {
            Role::Leader | Role::StandbyLeader => {
                return self.roles.leader;
            }
            Role::SyncStandby => self.roles.sync,
            Role::Replica => self.roles.replica,
            Role::Other(_) => false,
        };
        replica
            && !m.noloadbalance()
            && self
                .max_lag
                .is_none_or(|max| m.lag.is_some_and(|lag| lag <= max))
    }
}

fn seconds(key: &str, v: f64, zero_ok: bool) -> Result<Duration, String> {
    if !v.is_finite() || v < 0.0 || (!zero_ok && v == 0.0) || v > 86_400.0 {
        return Err(format!(
            "{key}: {v} is not a number of seconds in {}..=86400",
            if zero_ok { "0" } else { "(0" }
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

impl Config {
    /// Reads and checks `path`. Errors: every problem found, one per line.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Config::parse(&text)
    }

    /// Parses and checks YAML text.
    pub fn parse(text: &str) -> Result<Config, String> {
        let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        let mut problems = Vec::new();
        let mut check =
            |r: Result<Duration, String>| r.map_err(|e| problems.push(e)).unwrap_or_default();
        let update_interval = check(seconds(
            "cluster_update_interval",
            raw.cluster_update_interval,
            false,
        ));
        let api_timeout = match raw.patroni_api_timeout {
            Some(v) => check(seconds("patroni_api_timeout", v, false)),
            None => update_interval.min(Duration::from_secs(5)),
        };
        let connect_timeout = check(seconds("connect_timeout", raw.connect_timeout, false));
        let role_change_grace = check(seconds("role_change_grace", raw.role_change_grace, true));
        let api_listen = raw
            .listen_address
            .parse()
            .map_err(|e| problems.push(format!("listen_address {:?}: {e}", raw.listen_address)))
            .unwrap_or_else(|()| SocketAddr::from(([127, 0, 0, 1], 8009)));
        let mut clusters = BTreeMap::new();
        let mut listens: BTreeMap<SocketAddr, String> = BTreeMap::new();
        for (name, c) in raw.clusters {
            if c.tls.is_some() {
                problems.push(format!(
                    "clusters.{name}.tls: TLS to the Patroni API is not supported; use http:// hosts"
                ));
            }
            if c.hosts.is_empty() {
                problems.push(format!(
                    "clusters.{name}.hosts: at least one Patroni API URL"
                ));
            }
            let hosts = c
                .hosts
                .iter()
                .filter_map(|h| {
                    ApiUrl::parse(h)
                        .map_err(|e| problems.push(format!("clusters.{name}.hosts: {e}")))
                        .ok()
                })
                .collect();
            let mut ports = BTreeMap::new();
            for (pname, p) in c.ports {
                let at = format!("clusters.{name}.ports.{pname}");
                let listen: SocketAddr = match p.listen.parse() {
                    Ok(a) => a,
                    Err(e) => {
                        problems.push(format!("{at}.listen {:?}: {e}", p.listen));
                        continue;
                    }
                };
                if let Some(other) = listens.insert(listen, at.clone()) {
                    problems.push(format!("{at}.listen {listen} is also {other}'s"));
                }
                let mut roles = Roles::default();
                for r in &p.roles {
                    match r.as_str() {
                        "leader" | "master" | "primary" => roles.leader = true,
                        "sync" => roles.sync = true,
                        "async" | "replica" => roles.replica = true,
                        "any" => {
                            roles = Roles {
                                leader: true,
                                sync: true,
                                replica: true,
                            }
                        }
                        other => problems.push(format!(
                            "{at}.roles: {other:?} is not one of leader, sync, async, any"
                        )),
                    }
                }
                if p.roles.is_empty() {
                    problems.push(format!("{at}.roles: name at least one role"));
                }
                if p.host_port == Some(0) {
                    problems.push(format!("{at}.host_port: 0 is not a port"));
                }
                ports.insert(
                    pname,
                    PortConfig {
                        listen,
                        roles,
                        host_port: p.host_port,
                        max_lag: p.max_lag_in_bytes,
                    },
                );
            }
            if ports.is_empty() {
                problems.push(format!("clusters.{name}.ports: at least one port"));
            }
            clusters.insert(name, ClusterConfig { hosts, ports });
        }
        if clusters.is_empty() {
            problems.push("clusters: at least one cluster".into());
        }
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }
        Ok(Config {
            update_interval,
            api_listen,
            api_timeout,
            connect_timeout,
            role_change_grace,
            clusters,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const EXAMPLE: &str = r#"
cluster_update_interval: 3
listen_address: "127.0.0.1:8009"
clusters:
  my_cluster:
    hosts: ["http://192.168.1.1:8008", "http://192.168.1.2:8008"]
    ports:
      master: {listen: "0.0.0.0:6432", roles: ["leader"], host_port: 5432}
      replicas: {listen: "0.0.0.0:6433", roles: ["sync", "async"], host_port: 5432, max_lag_in_bytes: 16777216}
"#;

    fn member(role: &str, state: &str, lag: Option<u64>) -> Member {
        let lag = lag.map_or("\"unknown\"".to_string(), |l| l.to_string());
        let doc = format!(
            r#"{{"members":[{{"name":"m","role":"{role}","state":"{state}","host":"h","port":1,"lag":{lag}}}]}}"#
        );
        doorman_patroni::parse_cluster(doc.as_bytes())
            .unwrap()
            .remove(0)
    }

    #[test]
    fn the_original_example_loads() {
        let c = Config::parse(EXAMPLE).unwrap();
        assert_eq!(c.update_interval, Duration::from_secs(3));
        assert_eq!(c.api_timeout, Duration::from_secs(3));
        let ports = &c.clusters["my_cluster"].ports;
        assert!(ports["master"].roles.leader && !ports["master"].roles.replica);
        assert_eq!(ports["replicas"].max_lag, Some(16_777_216));
        assert_eq!(c.clusters["my_cluster"].hosts[1].host, "192.168.1.2");
    }

    #[test]
    fn roles_lag_and_state_decide_admission() {
        let c = Config::parse(EXAMPLE).unwrap();
        let (master, replicas) = (
            &c.clusters["my_cluster"].ports["master"],
            &c.clusters["my_cluster"].ports["replicas"],
        );
        assert!(master.admits(&member("leader", "running", None)));
        assert!(!master.admits(&member("replica", "streaming", Some(0))));
        assert!(replicas.admits(&member("replica", "streaming", Some(10))));
        assert!(replicas.admits(&member("sync_standby", "streaming", Some(10))));
        assert!(!replicas.admits(&member("replica", "streaming", Some(16_777_217))));
        assert!(!replicas.admits(&member("replica", "streaming", None)));
        assert!(!replicas.admits(&member("replica", "stopped", Some(0))));
        assert!(!replicas.admits(&member("leader", "running", None)));
    }

    #[test]
    fn mistakes_are_all_reported() {
        let bad = r#"
cluster_update_interval: 0
clusters:
  c:
    hosts: ["https://x:1"]
    tls: {ca_cert: /x}
    ports:
      a: {listen: "127.0.0.1:7000", roles: [leader, witness]}
      b: {listen: "127.0.0.1:7000", roles: []}
"#;
        let e = Config::parse(bad).unwrap_err();
        for needle in [
            "cluster_update_interval",
            "TLS to the Patroni API",
            "clusters.c.tls",
            "\"witness\"",
            "is also clusters.c.ports.a's",
            "name at least one role",
        ] {
            assert!(e.contains(needle), "{needle} missing from: {e}");
        }
        assert!(
            Config::parse("clusters: {}\nbogus: 1\n")
                .unwrap_err()
                .contains("bogus")
        );
    }
}
