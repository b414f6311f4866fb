//! Talos logins (PgDoorman's `talos` section): a client logs in as user `talos` with a signed
//! token as its password (AuthenticationCleartextPassword). The token names its key in the
//! header (`kid` = a key file's name without extension), is signed RS256 or ES256, has an
//! `exp` in the future (and any `nbf` past), and grants roles per resource in
//! `resource_access`: `{"<service>:<database>": {"roles": ["read_only", ...]}}`. The client
//! gets the highest role granted for the database it asked for (owner > read_write >
//! read_only), and is served by the first pool user that exists of: the token's `clientId`,
//! `srv-<clientId>`, the role's name (PgDoorman's order). Its application_name becomes the
//! `clientId`.

use crate::jwt::{JwtError, JwtKey};
use std::collections::HashMap;

/// The login name that asks for a Talos login.
pub const USER: &str = "talos";

/// Roles a token can grant, lowest first (PgDoorman's `Role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// `read_only`.
    ReadOnly,
    /// `read_write`.
    ReadWrite,
    /// `owner`.
    Owner,
}

impl Role {
    /// The role's name in tokens, which is also the pool user it falls back to.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "read_only",
            Role::ReadWrite => "read_write",
            Role::Owner => "owner",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        [Role::ReadOnly, Role::ReadWrite, Role::Owner]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// What a valid token grants for one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The highest role granted.
    pub role: Role,
    /// The token's `clientId` ("" if absent).
    pub client_id: String,
}

/// Why a token was refused (logged; the client hears only "password authentication failed").
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TalosError {
    /// The token itself: malformed, bad signature, expired, other algorithm.
    #[error(transparent)]
    Token(#[from] JwtError),
    /// The `kid` names no loaded key.
    #[error("no talos key {0:?}")]
    UnknownKey(String),
    /// The database is not in `talos.databases`.
    #[error("database {0:?} is not in talos.databases")]
    Database(String),
    /// No role for this database in `resource_access`.
    #[error("the token grants no role for database {0:?}")]
    NoRole(String),
    /// `talos.audience` is set and the token's `aud` does not name it.
    #[error("the token's aud does not name {0:?}")]
    Audience(String),
    /// `talos.issuer` is set and the token's `iss` is another.
    #[error("the token's iss is not {0:?}")]
    Issuer(String),
    /// A role name other than owner, read_write, read_only.
    #[error("unsupported role {0:?} in the token")]
    BadRole(String),
}

/// The loaded `talos` section.
#[derive(Debug)]
pub struct Talos {
    keys: HashMap<String, JwtKey>,
    databases: Vec<String>,
    /// Required `aud` and `iss`, when configured.
    pub audience: Option<String>,
    /// See `audience`.
    pub issuer: Option<String>,
}

impl Talos {
    /// Loads the key files `paths` (the `talos.keys` list) for `databases`. Errors name the
    /// file; two files with the same name (the same `kid`) are an error.
    pub fn load(paths: &[String], databases: &[String]) -> Result<Talos, String> {
        let mut keys = HashMap::new();
        for path in paths {
            let kid =
                key_name(path).ok_or_else(|| format!("{path}: no file name to use as kid"))?;
            let key = JwtKey::load(path)?;
            if keys.insert(kid.clone(), key).is_some() {
                return Err(format!(
                    "{path}: another key file is named {kid:?} too (the name is the token's kid)"
                ));
            }
        }
        Ok(Talos {
            keys,
            databases: databases.to_vec(),
            audience: None,
            issuer: None,
        })
    }

    /// Checks `token` for a login to `database` at `now` (seconds since the epoch).
    pub fn verify(&self, token: &str, database: &str, now: u64) -> Result<Grant, TalosError> {
        let kid = crate::jwt::key_id(token)?;
        let key = self.keys.get(&kid).ok_or(TalosError::UnknownKey(kid))?;
        let claims = key.verify_claims(token, now)?;
        if let Some(want) = &self.audience {
            let aud = claims.get("aud");
            let named = match aud {
                Some(serde_json::Value::String(a)) => a == want,
                Some(serde_json::Value::Array(list)) => {
                    list.iter().any(|a| a.as_str() == Some(want))
                }
                _ => false,
            };
            if !named {
                return Err(TalosError::Audience(want.clone()));
            }
        }
        if let Some(want) = &self.issuer
            && claims.get("iss").and_then(|i| i.as_str()) != Some(want.as_str())
        {
            return Err(TalosError::Issuer(want.clone()));
        }
        if !self.databases.iter().any(|d| d == database) {
            return Err(TalosError::Database(database.to_string()));
        }
        let mut best = None;
        let access = claims.get("resource_access").and_then(|a| a.as_object());
        for (resource, grant) in access.into_iter().flatten() {
            // "postgres.stg:billing": the part after the first ':' is the database.
            if resource.split_once(':').map(|(_, db)| db) != Some(database) {
                continue;
            }
            let roles = grant.get("roles").and_then(|r| r.as_array());
            for name in roles.into_iter().flatten() {
                let name = name.as_str().unwrap_or_default();
                let role = Role::parse(name).ok_or_else(|| TalosError::BadRole(name.into()))?;
                best = best.max(Some(role));
            }
        }
        let role = best.ok_or_else(|| TalosError::NoRole(database.to_string()))?;
        let client_id = claims
            .get("clientId")
            .and_then(|c| c.as_str())
            .unwrap_or_default()
            .to_string();
        Ok(Grant { role, client_id })
    }
}

/// A key file's name without its extension: the `kid` tokens name it by.
fn key_name(path: &str) -> Option<String> {
    let stem = std::path::Path::new(path).file_stem()?.to_str()?;
    Some(stem.to_string())
}

/// The pool user serving `grant`: `clientId`, then `srv-<clientId>`, then the role's name, the
/// first for which `exists` holds (the role's name otherwise). A `clientId` with control
/// characters is not used as a name.
pub fn pool_user(grant: &Grant, exists: impl Fn(&str) -> bool) -> String {
    let id = &grant.client_id;
    let routable = !id.is_empty() && !id.chars().any(char::is_control);
    if routable {
        if exists(id) {
            return id.clone();
        }
        let service = format!("srv-{id}");
        if exists(&service) {
            return service;
        }
    }
    grant.role.as_str().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_order_and_names() {
        assert!(Role::Owner > Role::ReadWrite && Role::ReadWrite > Role::ReadOnly);
        assert_eq!(Role::parse("read_write"), Some(Role::ReadWrite));
        assert_eq!(Role::parse("admin"), None);
    }

    #[test]
    fn pool_user_prefers_the_client_then_its_service_then_the_role() {
        let g = |id: &str| Grant {
            role: Role::ReadWrite,
            client_id: id.into(),
        };
        assert_eq!(pool_user(&g("billing"), |u| u == "billing"), "billing");
        assert_eq!(
            pool_user(&g("billing"), |u| u == "srv-billing"),
            "srv-billing"
        );
        assert_eq!(pool_user(&g("billing"), |_| false), "read_write");
        assert_eq!(pool_user(&g("bad\nname"), |_| true), "read_write");
        assert_eq!(pool_user(&g(""), |_| true), "read_write");
    }

    #[test]
    fn key_names_are_file_stems() {
        assert_eq!(key_name("/etc/keys/abc-1.pem").as_deref(), Some("abc-1"));
        assert_eq!(key_name("k").as_deref(), Some("k"));
    }
}
