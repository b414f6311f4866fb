//! auth_query (PgDoorman 3.3+, COMPAT.md §1.4): a user who is not in a pool's `users` list is
//! looked up in PostgreSQL at login. The secret found is cached (`cache_ttl`; "no such user"
//! for `cache_failure_ttl`), one look-up per name is in flight at a time, and the user gets a
//! dynamic pool: its own, logged in as itself with its own secret (passthrough), or one shared
//! pool logged in as `server_user` (dedicated). Idle dynamic pools are collected.

mod cache;
mod fetch;

use crate::pool::Pool;
use crate::pool::settings::{AuthQuerySettings, ClientSecret, ServerSecret};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A secret fetched for one login name.
/// A startup parameter of an auth_query row that was left out: its key ("" for the whole
/// column) and the reason (`reserved`, `invalid_name`, `nul_byte`, `invalid_json`, `budget`).
pub type Dropped = (String, &'static str);

/// Reasons of [`Dropped`], in the order of [`AuthQuery::dropped_counts`].
pub const DROP_REASONS: [&str; 5] = [
    "reserved",
    "invalid_name",
    "nul_byte",
    "invalid_json",
    "budget",
];

/// A user's row as fetched.
#[derive(Debug)]
pub struct Fetched {
    /// What the client is checked against.
    pub client: ClientSecret,
    /// What a passthrough pool answers the backend with.
    pub server: ServerSecret,
    /// The user's `startup_parameters` column (passthrough pools), over the pool's.
    pub startup_parameters: Vec<(String, String)>,
    /// Keys of the column left out, with the reason.
    pub dropped: Vec<Dropped>,
    /// The stored value as fetched: a passthrough pool built from another value is replaced.
    pub stamp: String,
}

#[cfg(test)]
impl Fetched {
    fn for_tests(stored: &str) -> Fetched {
        Fetched {
            client: ClientSecret::Md5(stored.into()),
            server: ServerSecret::Md5(stored.into()),
            startup_parameters: Vec::new(),
            dropped: Vec::new(),
            stamp: stored.into(),
        }
    }
}

/// Counters of one auth_query (SHOW AUTH_QUERY, `pg_doorman_auth_query_*`), since it was built.
#[derive(Debug, Default)]
pub struct Stats {
    /// Logins answered from the cache (fresh entries, hits and "no such user" alike).
    pub cache_hits: AtomicU64,
    /// Logins that needed a look-up.
    pub cache_misses: AtomicU64,
    /// Cached secrets dropped after a failed password, so the next login looks again.
    pub cache_refetches: AtomicU64,
    /// Failed passwords within `min_interval` of the look-up: the secret is kept.
    pub cache_rate_limited: AtomicU64,
    /// Logins that passed.
    pub auth_success: AtomicU64,
    /// Logins refused (wrong password, no such user).
    pub auth_failure: AtomicU64,
    /// Queries run.
    pub executor_queries: AtomicU64,
    /// Queries that failed (no connection, SQL error, unusable result).
    pub executor_errors: AtomicU64,
    /// Dynamic pools built.
    pub dynamic_created: AtomicU64,
    /// Dynamic pools collected or replaced.
    pub dynamic_destroyed: AtomicU64,
    /// Startup parameters of rows left out when a pool was built, by [`DROP_REASONS`].
    pub params_dropped: [AtomicU64; 5],
}

/// The figures of SHOW AUTH_QUERY after `database`, in its order.
pub const FIGURES: [&str; 12] = [
    "cache_entries",
    "cache_hits",
    "cache_misses",
    "cache_refetches",
    "cache_rate_limited",
    "auth_success",
    "auth_failure",
    "executor_queries",
    "executor_errors",
    "dynamic_pools_current",
    "dynamic_pools_created",
    "dynamic_pools_destroyed",
];

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A look-up in flight: whoever takes the lock first runs the query and leaves the result for
/// the logins queued behind it.
type Flight = Arc<tokio::sync::Mutex<Option<Lookup>>>;

/// A dynamic pool and since when no client has held it.
#[derive(Debug)]
struct Dynamic {
    pool: Arc<Pool>,
    /// The secret it was built with (passthrough); empty in dedicated mode.
    stamp: String,
    idle_since: Option<Instant>,
}

/// The auth_query of one pool section.
#[derive(Debug)]
pub struct AuthQuery {
    /// Resolved settings.
    pub settings: AuthQuerySettings,
    /// Connections that run the query.
    executor: Arc<Pool>,
    cache: cache::Cache,
    /// One flight per name being looked up: its lock, then its result for those who waited.
    inflight: Mutex<HashMap<String, Flight>>,
    /// Dynamic pools by user (passthrough) or by `server_user` (dedicated).
    pools: Mutex<HashMap<String, Dynamic>>,
    /// Counters.
    pub stats: Stats,
}

/// How a look-up ended.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The user's secret; `at` identifies the cache entry (see [`AuthQuery::password_failed`]).
    Found(Arc<Fetched>, Instant),
    /// PostgreSQL has no such user, or none with a password.
    Nobody,
    /// The query could not be run or its result not used (logged).
    Failed,
}

impl AuthQuery {
    /// An auth_query with an empty cache and no dynamic pools; its executor connects lazily.
    pub fn new(settings: AuthQuerySettings) -> Arc<AuthQuery> {
        Arc::new(AuthQuery {
            executor: Pool::new(settings.executor.clone()),
            cache: cache::Cache::new(settings.cache_ttl, settings.cache_failure_ttl),
            inflight: Mutex::new(HashMap::new()),
            pools: Mutex::new(HashMap::new()),
            stats: Stats::default(),
            settings,
        })
    }

    /// Puts `f`'s startup parameters over the pool's in `s` (the row wins key by key), as far
    /// as PostgreSQL's packet budget allows (config/startup_params.rs); what is left out is
    /// counted by reason and kept in `s.row_parameters` for SHOW STARTUP_PARAMETERS.
    fn row_parameters(&self, s: &mut crate::pool::settings::PoolSettings, f: &Fetched) {
        use crate::config::startup_params::{BUDGET, wire_bytes};
        let mut row = crate::pool::settings::RowParameters::default();
        for (k, reason) in &f.dropped {
            self.count_dropped(reason);
            row.left_out.push((k.clone(), String::new(), reason));
        }
        for (k, v) in &f.startup_parameters {
            let mut with = s.startup_parameters.clone();
            with.retain(|(have, _)| have != k);
            with.push((k.clone(), v.clone()));
            if wire_bytes(with.iter().map(|(k, v)| (k, v))) > BUDGET {
                tracing::warn!(
                    "auth_query startup_parameters of user {:?}: {k} does not fit PostgreSQL's startup packet; left out",
                    s.server_user
                );
                self.count_dropped("budget");
                row.left_out.push((k.clone(), v.clone(), "budget"));
                continue;
            }
            s.startup_parameters = with;
            row.applied.push(k.clone());
        }
        s.row_parameters = row;
    }

    fn count_dropped(&self, reason: &str) {
        if let Some(i) = DROP_REASONS.iter().position(|r| *r == reason) {
            self.stats.params_dropped[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Startup parameters of rows left out so far, by [`DROP_REASONS`].
    pub fn dropped_counts(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.stats.params_dropped[i].load(Ordering::Relaxed))
    }

    /// The values of [`FIGURES`], in order.
    pub fn figures(&self) -> [u64; 12] {
        let s = &self.stats;
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            self.cache.len() as u64,
            r(&s.cache_hits),
            r(&s.cache_misses),
            r(&s.cache_refetches),
            r(&s.cache_rate_limited),
            r(&s.auth_success),
            r(&s.auth_failure),
            r(&s.executor_queries),
            r(&s.executor_errors),
            self.pools.lock().len() as u64,
            r(&s.dynamic_created),
            r(&s.dynamic_destroyed),
        ]
    }

    /// Dynamic pools now.
    pub fn dynamic_pools(&self) -> Vec<Arc<Pool>> {
        self.pools.lock().values().map(|d| d.pool.clone()).collect()
    }

    /// The cached secret of `user`, or the result of looking it up. Concurrent logins of one
    /// name share one query: the rest wait for it and read the cache. The query runs in its
    /// own task, so a login that gives up does not strand an executor connection.
    pub async fn lookup(self: &Arc<Self>, user: &str) -> Lookup {
        if let Some(hit) = self.cached(user) {
            return hit;
        }
        let lock = self
            .inflight
            .lock()
            .entry(user.to_string())
            .or_default()
            .clone();
        let mut turn = lock.lock().await;
        if let Some(shared) = turn.as_ref() {
            // Waited for another login's query: its answer, even a failure.
            bump(&self.stats.cache_hits);
            return shared.clone();
        }
        if let Some(hit) = self.cached(user) {
            // A flight ended between our first look and taking this lock.
            return hit;
        }
        bump(&self.stats.cache_misses);
        let me = self.clone();
        let name = user.to_string();
        let found = tokio::spawn(async move { me.fetch(&name).await })
            .await
            .unwrap_or(Lookup::Failed);
        *turn = Some(found.clone());
        // Later logins start from the cache (or a new flight if nothing was cached).
        let mut map = self.inflight.lock();
        if map.get(user).is_some_and(|f| Arc::ptr_eq(f, &lock)) {
            map.remove(user);
        }
        found
    }

    fn cached(&self, user: &str) -> Option<Lookup> {
        let e = self.cache.fresh(user, Instant::now())?;
        bump(&self.stats.cache_hits);
        Some(match e.value {
            Some(f) => Lookup::Found(f, e.at),
            None => Lookup::Nobody,
        })
    }

    /// Runs the query for `user` and caches what it says (errors are not cached).
    async fn fetch(&self, user: &str) -> Lookup {
        bump(&self.stats.executor_queries);
        let failed = |e: String| {
            bump(&self.stats.executor_errors);
            tracing::warn!(
                "auth_query for user {user:?} in pool {:?} failed: {e}",
                self.settings.database
            );
            Lookup::Failed
        };
        let mut server = match self.executor.checkout().await {
            Ok(s) => s,
            Err(e) => return failed(e.to_string()),
        };
        let budget = self
            .settings
            .executor
            .connect_timeout
            .max(Duration::from_secs(5));
        let ran = tokio::time::timeout(
            budget,
            server.one_off_rows(&self.settings.query, &[Some(user)]),
        )
        .await;
        let rows = match ran {
            Ok(Ok(Ok(rows))) => {
                self.executor.checkin(server);
                rows
            }
            Ok(Ok(Err(pg))) => {
                self.executor.checkin(server);
                return failed(format!("{} ({})", pg.message, pg.code));
            }
            Ok(Err(e)) => {
                self.executor.discard(server);
                return failed(e.to_string());
            }
            Err(_) => {
                server.bad = true;
                self.executor.discard(server);
                return failed(format!("no answer within {budget:?}"));
            }
        };
        let name = user.to_string();
        // A plaintext value costs a PBKDF2 derivation: off the async workers.
        let parsed = tokio::task::spawn_blocking(move || fetch::parse(&name, rows))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        let at = Instant::now();
        match parsed {
            Ok(fetch::Found::Secret(f)) => {
                let value = Some(f.clone());
                self.cache.put(user, cache::Entry { value, at });
                Lookup::Found(f, at)
            }
            Ok(fetch::Found::Nobody) => {
                self.cache.put(user, cache::Entry { value: None, at });
                Lookup::Nobody
            }
            Err(e) => failed(e),
        }
    }

    /// A login as `user` with the secret cached at `at` gave a wrong password: the secret is
    /// dropped so the next login looks again (the password may have changed), unless it was
    /// fetched less than `min_interval` ago.
    pub fn password_failed(&self, user: &str, at: Instant) {
        bump(&self.stats.auth_failure);
        if at.elapsed() < self.settings.min_interval {
            bump(&self.stats.cache_rate_limited);
        } else if self.cache.forget(user, at) {
            bump(&self.stats.cache_refetches);
        }
    }

    /// Counts a refused login that needed no secret (no such user, failed look-up).
    pub fn refused(&self) {
        bump(&self.stats.auth_failure);
    }

    /// The pool a logged-in dynamic `user` with secret `f` runs on, built on first use.
    /// A passthrough pool built from another stored secret (a changed password) is replaced
    /// by one that logs in with the new one; the old one is retired.
    pub fn pool_for(&self, user: &str, f: &Fetched) -> Arc<Pool> {
        bump(&self.stats.auth_success);
        let t = &self.settings.template;
        let (key, stamp) = if self.settings.dedicated {
            (t.server_user.as_str(), "")
        } else {
            (user, f.stamp.as_str())
        };
        let mut pools = self.pools.lock();
        if let Some(d) = pools.get_mut(key)
            && d.stamp == stamp
        {
            d.idle_since = None;
            return d.pool.clone();
        }
        let mut s = t.clone();
        s.user = key.to_string();
        if !self.settings.dedicated {
            s.server_user = user.to_string();
            s.server_secret = f.server.clone();
            s.client_secret = f.client.clone();
            self.row_parameters(&mut s, f);
        }
        let pool = Pool::new(s);
        let fresh = Dynamic {
            pool: pool.clone(),
            stamp: stamp.to_string(),
            idle_since: None,
        };
        if let Some(old) = pools.insert(key.to_string(), fresh) {
            pool.stats.carry_over(&old.pool.stats);
            old.pool.retire();
            bump(&self.stats.dynamic_destroyed);
        }
        bump(&self.stats.dynamic_created);
        drop(pools);
        if pool.settings.min_pool_size > 0 {
            let warm = pool.clone();
            tokio::spawn(async move {
                warm.replenish().await;
            });
        }
        pool
    }

    /// The pool for a client that migrated from the process being upgraded, where it logged in
    /// as `user` (its dynamic pool's user: the login name, or `server_user` in dedicated mode).
    /// It authenticated there, so only the secret is looked up (for the backend login).
    pub async fn pool_for_migrant(self: &Arc<Self>, user: &str) -> Option<Arc<Pool>> {
        if self.settings.dedicated && user == self.settings.template.server_user {
            if let Some(d) = self.pools.lock().get(user) {
                return Some(d.pool.clone());
            }
            // Dedicated pools do not use the fetched secret.
            let none = Fetched {
                client: ClientSecret::unguessable(),
                server: ServerSecret::None,
                startup_parameters: Vec::new(),
                dropped: Vec::new(),
                stamp: String::new(),
            };
            return Some(self.pool_for(user, &none));
        }
        match self.lookup(user).await {
            Lookup::Found(f, _) => Some(self.pool_for(user, &f)),
            Lookup::Nobody | Lookup::Failed => None,
        }
    }

    /// Removes dynamic pools no client has used for their server_lifetime (PgDoorman's rule;
    /// idle_timeout, else 5 min, when that is 0), except those with `min_pool_size`.
    /// Returns how many went.
    pub fn collect_idle(&self, now: Instant) -> usize {
        let mut gone = 0;
        self.pools.lock().retain(|_, d| {
            // No logged-in client on it. (A login that just got it from `pool_for` reset
            // idle_since, so it is not taken away before the client registers.)
            let in_use =
                d.pool.stats.clients.load(Ordering::Relaxed) > 0 || d.pool.counts().cl_waiting > 0;
            if in_use || d.pool.settings.min_pool_size > 0 {
                d.idle_since = None;
                return true;
            }
            let since = *d.idle_since.get_or_insert(now);
            let idle = d
                .pool
                .settings
                .server_lifetime
                .or(d.pool.settings.idle_timeout)
                .unwrap_or(Duration::from_secs(300));
            if now.duration_since(since) < idle {
                return true;
            }
            d.pool.retire();
            gone += 1;
            false
        });
        for _ in 0..gone {
            bump(&self.stats.dynamic_destroyed);
        }
        gone
    }

    /// A reload dropped or changed this auth_query: its pools take no new logins and close
    /// their connections as they come back.
    pub fn retire(&self) {
        self.executor.retire();
        for d in self.pools.lock().values() {
            d.pool.retire();
        }
    }
}
