//! Patroni-assisted fallback (PgDoorman 3.x, `patroni_api_urls`): when a pool's configured
//! backend refuses connections, ask Patroni's REST API (`/cluster`) which members exist and
//! connect to one of them instead, for `fallback_cooldown`, with connections that live only
//! `fallback_lifetime`, so the pool returns to the configured backend once it is back.
//!
//! Order of candidates (docs/patroni.md): the running leader first (where writes go), then
//! every sync standby (PgDoorman's first wave: the likeliest next leader), then the other
//! members; each wave races its members at once, each under `fallback_connect_timeout`, the
//! first login wins. A member that failed is skipped for `fallback_connect_timeout`, doubling
//! with each further failure up to 60 s. During the cooldown a winning leader is reused without
//! asking Patroni again (a standby winner is not: the next connection asks again); if it fails,
//! the cache is dropped and Patroni is asked once more.
//! One state per pool section, shared by its users' pools.

use super::settings::{PoolSettings, ServerAddress};
use crate::error::ServerError;
use crate::server::Server;
use doorman_patroni::{ApiUrl, Member, Role};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use parking_lot::Mutex;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Cap of a failed candidate's backoff (PgDoorman: 60 s).
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Reasons a candidate failed, as `pg_doorman_fallback_candidate_failures_total{reason}`.
pub const FAILURE_REASONS: [&str; 5] = [
    "connect_error",
    "startup_error",
    "server_unavailable",
    "timeout",
    "other",
];

/// The resolved `patroni_api_urls`, `fallback_*` and `patroni_api_timeout` of a pool section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackSettings {
    /// Patroni REST endpoints, asked at once.
    pub urls: Vec<ApiUrl>,
    /// How long the configured backend counts as down after it refused.
    pub cooldown: Duration,
    /// Limit of one `/cluster` request.
    pub api_timeout: Duration,
    /// Connect + login limit per candidate; base of a failed candidate's backoff.
    pub connect_timeout: Duration,
    /// server_lifetime of fallback connections.
    pub lifetime: Duration,
}

/// Figures of one pool section's fallback (PgDoorman's `pg_doorman_patroni_api_*` and
/// `pg_doorman_fallback_*` families, label `pool`).
#[derive(Debug)]
pub struct FallbackStats {
    /// `/cluster` discoveries made.
    pub api_requests: AtomicU64,
    /// Discoveries where no URL answered.
    pub api_errors: AtomicU64,
    /// Connections opened to a fallback member.
    pub connections: AtomicU64,
    /// Connections to the cached member made without asking Patroni.
    pub cache_hits: AtomicU64,
    /// Candidate failures by [`FAILURE_REASONS`] index.
    pub failures: [AtomicU64; 5],
    /// Seconds per discovery (all URLs raced).
    pub api_seconds: Histogram,
}

#[derive(Debug, Default)]
struct State {
    /// The configured backend is not tried before this.
    down_until: Option<Instant>,
    /// The leader connected to last, reused during the cooldown without asking Patroni.
    cached: Option<(String, u16)>,
    /// The member connected to last, leader or not (metrics, CancelRequest).
    last: Option<(String, u16)>,
    /// Members skipped until the instant, with their consecutive failures.
    backoff: HashMap<(String, u16), (Instant, u32)>,
}

/// One pool section's fallback state.
#[derive(Debug)]
pub struct Fallback {
    /// Pool (database) name, for logs and labels.
    pub pool: String,
    /// Settings.
    pub settings: FallbackSettings,
    /// Counters.
    pub stats: FallbackStats,
    state: Mutex<State>,
}

fn classify(e: &ServerError) -> usize {
    match e {
        ServerError::Io(_) => 0,
        ServerError::Refused(f) if f.code == "57P03" => 2,
        ServerError::Refused(_) | ServerError::Auth(_) => 1,
        ServerError::Timeout => 3,
        _ => 4,
    }
}

/// Whether `e` means the backend is not there (so fallback applies): it could not be reached,
/// did not answer in time, or said it cannot accept connections now (57P03: starting up,
/// shutting down, in recovery without hot standby). A refused login (bad password) is an
/// answer from a live server: no fallback, as in PgDoorman.
pub fn backend_is_down(e: &ServerError) -> bool {
    matches!(classify(e), 0 | 2 | 3)
}

impl Fallback {
    /// The fallback of pool section `pool`.
    pub fn new(pool: &str, settings: FallbackSettings) -> Fallback {
        Fallback {
            pool: pool.to_string(),
            settings,
            stats: FallbackStats {
                api_requests: AtomicU64::new(0),
                api_errors: AtomicU64::new(0),
                connections: AtomicU64::new(0),
                cache_hits: AtomicU64::new(0),
                failures: Default::default(),
                api_seconds: Histogram::new(
                    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 14),
                ),
            },
            state: Mutex::new(State::default()),
        }
    }

    /// The configured backend is in its cooldown: connect to a Patroni member instead.
    pub fn active(&self) -> bool {
        self.state
            .lock()
            .down_until
            .is_some_and(|t| Instant::now() < t)
    }

    /// The member new connections go to now (`pg_doorman_fallback_host`), while active.
    pub fn host(&self) -> Option<(String, u16)> {
        let st = self.state.lock();
        st.down_until
            .is_some_and(|t| Instant::now() < t)
            .then(|| st.last.clone())
            .flatten()
    }

    /// The last member used, active or not: a CancelRequest for a fallback connection is also
    /// sent there (a key PostgreSQL does not know is ignored).
    pub fn last_host(&self) -> Option<(String, u16)> {
        self.state.lock().last.clone()
    }

    /// The configured backend answered: the cooldown is over.
    pub fn local_up(&self) {
        let mut st = self.state.lock();
        if st.down_until.take().is_some() {
            tracing::info!(pool = %self.pool, "configured backend answers again: fallback off");
        }
    }

    /// The configured backend refused with `e`: fallback for `fallback_cooldown`.
    pub fn local_down(&self, e: &ServerError) {
        let mut st = self.state.lock();
        let was = st.down_until.is_some_and(|t| Instant::now() < t);
        st.down_until = Some(Instant::now() + self.settings.cooldown);
        if !was {
            tracing::warn!(pool = %self.pool, "configured backend is down ({e}): new connections go to a Patroni member for {:?}", self.settings.cooldown);
        }
    }

    fn failed(&self, key: (String, u16), e: &ServerError) {
        self.stats.failures[classify(e)].fetch_add(1, Ordering::Relaxed);
        let mut st = self.state.lock();
        let n = st.backoff.get(&key).map_or(0, |b| b.1) + 1;
        let wait = self
            .settings
            .connect_timeout
            .saturating_mul(1 << (n - 1).min(16))
            .min(MAX_BACKOFF);
        tracing::warn!(pool = %self.pool, "fallback candidate {}:{} rejected ({e}); skipped for {wait:?}", key.0, key.1);
        st.backoff.insert(key, (Instant::now() + wait, n));
    }

    /// Connects to a Patroni member for pool `s` (whose configured backend is down). Errors:
    /// the configured backend's error kind for the client when Patroni cannot be asked or
    /// every candidate failed (the log says why).
    pub async fn connect(
        &self,
        s: &PoolSettings,
        id: u64,
        client_key: Option<[u8; 32]>,
    ) -> Result<Server, ServerError> {
        let cached = self.state.lock().cached.clone();
        if let Some((host, port)) = cached {
            match self.try_one(s, id, client_key, &host, port).await {
                Ok(server) => {
                    self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                    self.stats.connections.fetch_add(1, Ordering::Relaxed);
                    return Ok(server);
                }
                Err(e) => {
                    self.failed((host, port), &e);
                    self.state.lock().cached = None;
                }
            }
        }
        self.stats.api_requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let found =
            doorman_patroni::fetch_any(&self.settings.urls, self.settings.api_timeout).await;
        self.stats
            .api_seconds
            .observe(started.elapsed().as_secs_f64());
        let members = match found {
            Ok((m, _)) => m,
            Err(e) => {
                self.stats.api_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(pool = %self.pool, "fallback: no Patroni API answered: {e}");
                return Err(ServerError::Io(std::io::Error::other(format!(
                    "configured backend down and no Patroni API answered: {e}"
                ))));
            }
        };
        let waves = self.waves(s, &members);
        let mut tally = [0u32; 5];
        for wave in waves {
            let mut race: FuturesUnordered<_> = wave
                .into_iter()
                .map(|m| async move {
                    let r = self.try_one(s, id, client_key, &m.host, m.port).await;
                    (m, r)
                })
                .collect();
            while let Some((m, r)) = race.next().await {
                match r {
                    Ok(server) => {
                        tracing::info!(pool = %self.pool, "fallback: connected to Patroni member {} ({}) at {}:{}", m.name, m.role.as_str(), m.host, m.port);
                        let mut st = self.state.lock();
                        st.backoff.remove(&(m.host.clone(), m.port));
                        // Only a leader is reused without asking: a standby reached while
                        // nobody leads is asked about again, so the pool moves to the leader
                        // as soon as Patroni names one.
                        st.cached =
                            matches!(m.role, Role::Leader).then(|| (m.host.clone(), m.port));
                        st.last = Some((m.host.clone(), m.port));
                        drop(st);
                        self.stats.connections.fetch_add(1, Ordering::Relaxed);
                        return Ok(server);
                    }
                    Err(e) => {
                        tally[classify(&e)] += 1;
                        self.failed((m.host.clone(), m.port), &e);
                    }
                }
            }
        }
        let breakdown: Vec<String> = tally
            .iter()
            .zip(FAILURE_REASONS)
            .filter(|(n, _)| **n > 0)
            .map(|(n, r)| format!("{n} {r}"))
            .collect();
        let text = if breakdown.is_empty() {
            "no Patroni member to try".to_string()
        } else {
            format!(
                "all fallback candidates rejected ({})",
                breakdown.join(", ")
            )
        };
        tracing::warn!(pool = %self.pool, "fallback: {text}");
        Err(ServerError::Io(std::io::Error::other(text)))
    }

    /// The candidates in waves: leader, sync standbys, the rest; members not running, in
    /// backoff, or at the configured address are left out.
    fn waves(&self, s: &PoolSettings, members: &[Member]) -> Vec<Vec<Member>> {
        let now = Instant::now();
        let mut st = self.state.lock();
        st.backoff.retain(|_, (until, _)| *until > now);
        let usable: Vec<&Member> = members
            .iter()
            .filter(|m| m.is_running() && !m.host.is_empty() && m.port != 0)
            .filter(|m| !st.backoff.contains_key(&(m.host.clone(), m.port)))
            .filter(|m| {
                !matches!(&s.address, ServerAddress::Tcp { host, port } if *host == m.host && *port == m.port)
            })
            .collect();
        let pick = |f: &dyn Fn(&Role) -> bool| -> Vec<Member> {
            usable
                .iter()
                .filter(|m| f(&m.role))
                .map(|m| (*m).clone())
                .collect()
        };
        let waves = vec![
            pick(&|r| matches!(r, Role::Leader)),
            pick(&|r| matches!(r, Role::SyncStandby)),
            pick(&|r| !matches!(r, Role::Leader | Role::SyncStandby)),
        ];
        waves.into_iter().filter(|w| !w.is_empty()).collect()
    }

    async fn try_one(
        &self,
        s: &PoolSettings,
        id: u64,
        client_key: Option<[u8; 32]>,
        host: &str,
        port: u16,
    ) -> Result<Server, ServerError> {
        let mut candidate = s.clone();
        candidate.address = ServerAddress::Tcp {
            host: host.to_string(),
            port,
        };
        candidate.connect_timeout = self.settings.connect_timeout;
        super::connect::connect(&candidate, id, client_key).await
    }
}
