//! All pools, looked up by (database, user) at client login, and swapped whole by a reload
//! (SIGHUP, admin RELOAD): pools whose config did not change are kept as they are; changed
//! and removed ones are retired (no new logins; their clients finish on them, their
//! connections close as they come back).

use super::Pool;
use super::settings::{AuthQuerySettings, PoolSettings};
use crate::auth_query::AuthQuery;
use crate::keys::Map;
use arc_swap::ArcSwap;
use std::sync::Arc;

type ByDb = Map<String, Map<String, Arc<Pool>>>;

/// Pools by database, then user, and the auth_query of each pool section that has one.
#[derive(Debug, Default)]
pub struct Pools {
    by_db: ArcSwap<ByDb>,
    auth: ArcSwap<Map<String, Arc<AuthQuery>>>,
}

/// Why a login found no pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// No pool with that database name (3D000).
    NoDatabase,
    /// The database exists but has no such user (28000).
    NoUser,
}

/// What a reload did, in pools.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reloaded {
    /// Unchanged pools kept with their connections.
    pub kept: usize,
    /// New (database, user) pairs.
    pub added: usize,
    /// Pools rebuilt because their config changed (their totals carry over).
    pub changed: usize,
    /// Pools no longer in the config.
    pub removed: usize,
}

impl Pools {
    /// Builds empty pools for every resolved setting, and the auth_queries.
    pub fn new(settings: Vec<PoolSettings>, auth: Vec<AuthQuerySettings>) -> Pools {
        let mut by_db = ByDb::default();
        for s in settings {
            by_db
                .entry(s.database.clone())
                .or_default()
                .insert(s.user.clone(), Pool::new(s));
        }
        let auth = auth
            .into_iter()
            .map(|a| (a.database.clone(), AuthQuery::new(a)))
            .collect();
        Pools {
            by_db: ArcSwap::from_pointee(by_db),
            auth: ArcSwap::from_pointee(auth),
        }
    }

    /// The auth_query of pool section `database`, if it has one.
    pub fn auth_query(&self, database: &str) -> Option<Arc<AuthQuery>> {
        self.auth.load().get(database).cloned()
    }

    /// Every auth_query in force.
    pub fn auth_queries(&self) -> Vec<Arc<AuthQuery>> {
        self.auth.load().values().cloned().collect()
    }

    /// The pool for `database` and `user`.
    pub fn get(&self, database: &str, user: &str) -> Result<Arc<Pool>, Lookup> {
        let map = self.by_db.load();
        let users = map.get(database).ok_or(Lookup::NoDatabase)?;
        users.get(user).cloned().ok_or(Lookup::NoUser)
    }

    /// Every pool now in force: those of the config, then the dynamic ones of auth_query.
    pub fn all(&self) -> Vec<Arc<Pool>> {
        let map = self.by_db.load();
        let mut out: Vec<_> = map.values().flat_map(|u| u.values().cloned()).collect();
        for a in self.auth.load().values() {
            out.extend(a.dynamic_pools());
        }
        out
    }

    /// Replaces the pools with those of `settings`: a pool whose fingerprint is unchanged is
    /// kept (with its connections); others are built new, taking the old pool's totals; old
    /// pools not kept are retired.
    ///
    /// An auth_query whose section did not change is kept (its cache and dynamic pools with
    /// it); a changed one starts anew and the old one is retired.
    pub fn reload(&self, settings: Vec<PoolSettings>, auth: Vec<AuthQuerySettings>) -> Reloaded {
        let old = self.by_db.load_full();
        // One max_concurrent_creates gate for old and new pools alike.
        let global = old
            .values()
            .flat_map(|u| u.values())
            .next()
            .map(|p| p.settings.global_creates.clone());
        let mut r = Reloaded::default();
        let mut by_db = ByDb::default();
        for mut s in settings {
            let prev = old.get(&s.database).and_then(|u| u.get(&s.user));
            let pool = match prev {
                Some(p) if p.settings.fingerprint == s.fingerprint => {
                    r.kept += 1;
                    p.clone()
                }
                _ => {
                    if let Some(g) = &global {
                        s.global_creates = g.clone();
                    }
                    let fresh = Pool::new(s);
                    match prev {
                        Some(p) => {
                            fresh.stats.carry_over(&p.stats);
                            r.changed += 1;
                        }
                        None => r.added += 1,
                    }
                    fresh
                }
            };
            by_db
                .entry(pool.settings.database.clone())
                .or_default()
                .insert(pool.settings.user.clone(), pool);
        }
        for p in old.values().flat_map(|u| u.values()) {
            match by_db
                .get(&p.settings.database)
                .and_then(|u| u.get(&p.settings.user))
            {
                Some(n) if Arc::ptr_eq(n, p) => continue,
                Some(_) => {}
                None => r.removed += 1,
            }
            p.retire();
        }
        self.by_db.store(Arc::new(by_db));
        let old_auth = self.auth.load_full();
        let mut new_auth = Map::default();
        for mut a in auth {
            let kept = old_auth
                .get(&a.database)
                .filter(|o| o.settings.fingerprint == a.fingerprint)
                .cloned();
            let aq = kept.unwrap_or_else(|| {
                if let Some(g) = &global {
                    a.template.global_creates = g.clone();
                    a.executor.global_creates = g.clone();
                }
                AuthQuery::new(a)
            });
            new_auth.insert(aq.settings.database.clone(), aq);
        }
        for (db, o) in old_auth.iter() {
            if !new_auth.get(db).is_some_and(|n| Arc::ptr_eq(n, o)) {
                o.retire();
            }
        }
        self.auth.store(Arc::new(new_auth));
        r
    }
}
