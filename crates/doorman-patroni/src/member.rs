//! One member of Patroni's `/cluster` reply.

use serde::{Deserialize, Deserializer};

/// A member's role as `/cluster` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// `leader`: the primary holding the leader lock.
    Leader,
    /// `standby_leader`: the leader of a standby cluster (itself a replica of another cluster).
    StandbyLeader,
    /// `sync_standby` or `quorum_standby`: a synchronous replica.
    SyncStandby,
    /// `replica`: an asynchronous replica.
    Replica,
    /// Any other role text (kept for logs).
    Other(String),
}

impl Role {
    /// The role as Patroni spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Role::Leader => "leader",
            Role::StandbyLeader => "standby_leader",
            Role::SyncStandby => "sync_standby",
            Role::Replica => "replica",
            Role::Other(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Role, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "leader" | "master" | "primary" => Role::Leader,
            "standby_leader" => Role::StandbyLeader,
            "sync_standby" | "quorum_standby" => Role::SyncStandby,
            "replica" => Role::Replica,
            _ => Role::Other(s),
        })
    }
}

/// `lag` is a number of bytes, or `"unknown"` (or absent) when Patroni cannot tell.
fn lag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Tags {
    #[serde(default)]
    noloadbalance: bool,
}

/// One cluster member (fields of `/cluster`'s `members[]`).
#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    /// Patroni's member name.
    pub name: String,
    /// Leader, sync or async replica.
    pub role: Role,
    /// `running`, `streaming` (a replica receiving WAL, Patroni ≥ 3), `starting`, `stopped`, …
    #[serde(default)]
    pub state: String,
    /// PostgreSQL host as the member advertises it (`postgresql.connect_address`).
    #[serde(default)]
    pub host: String,
    /// PostgreSQL port.
    #[serde(default)]
    pub port: u16,
    /// Replication lag behind the leader, bytes; None for the leader or when unknown.
    #[serde(default, deserialize_with = "lag")]
    pub lag: Option<u64>,
    #[serde(default)]
    tags: Tags,
}

impl Member {
    /// PostgreSQL is up and serving: `running` (leader, or replica before Patroni 3) or
    /// `streaming` (replica). `starting`, `stopped`, `crashed`, … are not.
    pub fn is_running(&self) -> bool {
        matches!(self.state.as_str(), "running" | "streaming")
    }

    /// The member carries the `noloadbalance` tag: replicas with it take no read traffic.
    pub fn noloadbalance(&self) -> bool {
        self.tags.noloadbalance
    }
}
