//! All pools of a config snapshot, looked up by (database, user) at client login.

use super::Pool;
use super::settings::PoolSettings;
use std::collections::HashMap;
use std::sync::Arc;

/// Pools by database, then user.
#[derive(Debug, Default)]
pub struct Pools {
    by_db: HashMap<String, HashMap<String, Arc<Pool>>>,
}

/// Why a login found no pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// No pool with that database name (3D000).
    NoDatabase,
    /// The database exists but has no such user (28000).
    NoUser,
}

impl Pools {
    /// Builds empty pools for every resolved setting.
    pub fn new(settings: Vec<PoolSettings>) -> Pools {
        let mut by_db: HashMap<String, HashMap<String, Arc<Pool>>> = HashMap::new();
        for s in settings {
            by_db
                .entry(s.database.clone())
                .or_default()
                .insert(s.user.clone(), Pool::new(s));
        }
        Pools { by_db }
    }

    /// The pool for `database` and `user`.
    pub fn get(&self, database: &str, user: &str) -> Result<Arc<Pool>, Lookup> {
        let users = self.by_db.get(database).ok_or(Lookup::NoDatabase)?;
        users.get(user).cloned().ok_or(Lookup::NoUser)
    }

    /// Every pool.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.by_db.values().flat_map(|u| u.values())
    }
}
