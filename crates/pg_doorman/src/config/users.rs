//! `users` is a YAML list in PgDoorman configs but TOML configs write indexed tables
//! (`[pools.db.users.0]`): accept both.

use super::model::User;
use serde::Deserializer;
use serde::de::{MapAccess, SeqAccess, Visitor};
use std::fmt;

struct UsersVisitor;

impl<'de> Visitor<'de> for UsersVisitor {
    type Value = Vec<User>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of users or a table of users keyed by index")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<User>, A::Error> {
        let mut out = Vec::new();
        while let Some(u) = seq.next_element()? {
            out.push(u);
        }
        Ok(out)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<User>, A::Error> {
        let mut out: Vec<(String, User)> = Vec::new();
        while let Some((k, u)) = map.next_entry::<String, User>()? {
            out.push((k, u));
        }
        // Indexed tables keep their numeric order ("10" after "9").
        out.sort_by_key(|(k, _)| (k.parse::<u64>().unwrap_or(u64::MAX), k.clone()));
        Ok(out.into_iter().map(|(_, u)| u).collect())
    }
}

/// Deserializes a list or an index-keyed table of users.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<User>, D::Error> {
    d.deserialize_any(UsersVisitor)
}

/// `md5` + 32 hex digits of 128 random bits: a well-formed MD5 secret that no password and no
/// crafted MD5 reply matches (an MD5 login needs only the secret, so it must not be fixed).
/// Placeholders of `generate` and the pgbouncer.ini import, and users without a secret.
pub fn unguessable_md5() -> String {
    let mut b = [0u8; 16];
    rand::fill(&mut b);
    format!("md5{}", doorman_wire::auth::md5::hex(&b))
}
