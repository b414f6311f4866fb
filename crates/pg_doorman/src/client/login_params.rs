//! What a client's session parameters should be: the pool's defaults overlaid with what the
//! client asked for in its startup packet (tracked ones) plus other GUCs it set there (extras).

use crate::params::{CANONICALISED, ParamSet, TRACKED, parse_options, tracked_index};
use crate::pool::Pool;
use doorman_wire::startup::StartupMessage;
use doorman_wire::{ErrorFields, sqlstate};
use std::borrow::Cow;

/// A client's parameter wishes.
#[derive(Debug, Default)]
pub struct ClientParams {
    /// Tracked parameters, always all of TRACKED that the server reports.
    pub wanted: ParamSet,
    /// Other GUCs from the startup packet, SET on every backend the client uses.
    pub extras: ParamSet,
}

/// What [`from_startup`] found in a startup packet, before it becomes the pool's shared sets
/// ([`StartupParams::into_params`]): the tracked values the client chose (borrowed from the
/// packet where it can), other GUCs, and whether a value must be checked (and canonicalised)
/// on a backend before login completes.
#[derive(Debug, Default)]
pub struct StartupParams<'m> {
    /// The client's value of `TRACKED[i]`, where it sent one that differs from the default.
    pub tracked: [Option<Cow<'m, str>>; TRACKED.len()],
    /// Other GUCs from the startup packet, SET on every backend the client uses.
    pub extras: ParamSet,
    /// A value needs the check.
    pub needs_check: bool,
}

impl StartupParams<'_> {
    /// The value the client will have for `TRACKED[i]`: its own, or the default.
    fn value<'a>(&'a self, defaults: &'a ParamSet, i: usize) -> Option<&'a str> {
        self.tracked[i]
            .as_deref()
            .or_else(|| defaults.get(TRACKED[i]))
    }

    /// The (name, value) pairs of the client's tracked parameters, in TRACKED order.
    fn wanted<'a>(
        &'a self,
        defaults: &'a ParamSet,
    ) -> impl Iterator<Item = (&'static str, &'a str)> {
        (0..TRACKED.len()).filter_map(move |i| self.value(defaults, i).map(|v| (TRACKED[i], v)))
    }

    /// The wishes as sets shared with the pool's other clients that want the same: a login
    /// like the previous ones allocates nothing here (the shared set is found by comparing
    /// values, not by building a candidate first). For wishes that need no check: checked ones
    /// are canonicalised first ([`StartupParams::into_unshared`]), then interned.
    pub fn into_params(self, defaults: &ParamSet, pool: &Pool) -> ClientParams {
        let count = self.wanted(defaults).count();
        let wanted = pool.intern_with(
            |s| s.len() == count && self.wanted(defaults).all(|(k, v)| s.get(k) == Some(v)),
            || ParamSet::from_pairs(self.wanted(defaults)),
        );
        let extras = if self.extras.is_empty() {
            self.extras
        } else {
            pool.intern_params(self.extras)
        };
        ClientParams { wanted, extras }
    }

    /// The wishes as the client's own sets, not shared yet (a check on a backend may still
    /// respell them; the pool's shared list keeps only what clients end up with).
    pub fn into_unshared(self, defaults: &ParamSet) -> ClientParams {
        ClientParams {
            wanted: ParamSet::from_pairs(self.wanted(defaults)),
            extras: self.extras,
        }
    }
}

impl ClientParams {
    /// Puts the tracked parameters named by `resets` ([`crate::sql_kind::resets`] bits) back
    /// to their values in `startup` (the wishes as login settled them: PostgreSQL's session
    /// defaults are the startup packet's values); returns the (name, value) pairs that changed.
    pub fn restore(&mut self, startup: &ParamSet, resets: u16) -> Vec<(&'static str, String)> {
        let mut changed = Vec::new();
        for (i, name) in crate::params::TRACKED.iter().enumerate() {
            if resets & crate::sql_kind::RESET_ALL == 0 && resets & (1 << i) == 0 {
                continue;
            }
            if let Some(v) = startup.get(name)
                && self.wanted.get(name) != Some(v)
            {
                changed.push((*name, v.to_string()));
            }
        }
        for (name, v) in &changed {
            self.wanted.set(name, v);
        }
        changed
    }
}

/// Reads the wishes from the startup packet against `defaults` (a fresh backend's
/// ParameterStatus). Errors: `replication` and unparsable `options` are refused (0A000 / 08P01).
pub fn from_startup<'m>(
    defaults: &ParamSet,
    msg: &'m StartupMessage,
) -> Result<StartupParams<'m>, ErrorFields> {
    let mut p = StartupParams::default();
    let apply = |k: &str, v: Cow<'m, str>, p: &mut StartupParams<'m>| {
        if let Some(i) = tracked_index(k) {
            if p.value(defaults, i) != Some(&*v) {
                p.needs_check |= CANONICALISED.contains(&TRACKED[i]);
                p.tracked[i] = Some(v);
            }
        } else {
            p.extras.set(k, &v);
            p.needs_check = true;
        }
    };
    for (k, v) in &msg.params {
        match k.as_str() {
            "user" | "database" => {}
            "replication" => {
                return Err(ErrorFields::fatal(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "replication connections are not supported by pg_doorman",
                ));
            }
            "options" => {
                for (ok, ov) in parse_options(v).map_err(|e| {
                    ErrorFields::fatal(
                        sqlstate::PROTOCOL_VIOLATION,
                        format!("invalid startup options: {e}"),
                    )
                })? {
                    apply(&ok, Cow::Owned(ov), &mut p);
                }
            }
            _ => apply(k, Cow::Borrowed(v), &mut p),
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> ParamSet {
        let mut d = ParamSet::default();
        for (k, v) in [
            ("DateStyle", "ISO, MDY"),
            ("application_name", ""),
            ("client_encoding", "UTF8"),
            ("server_version", "15"),
        ] {
            d.set(k, v);
        }
        d
    }

    fn msg(params: &[(&str, &str)]) -> StartupMessage {
        StartupMessage {
            minor: 0,
            params: params
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            protocol_options: vec![],
        }
    }

    fn pool() -> std::sync::Arc<Pool> {
        let c = crate::config::Config::from_yaml(
            "general:\n  admin_password: md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\npools:\n  db:\n    users:\n      - {username: u, password: md5bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb}\n",
        )
        .unwrap();
        let mut settings = crate::pool::settings::Derived::default()
            .resolve(&c)
            .unwrap()
            .pools;
        Pool::new(settings.remove(0))
    }

    #[test]
    fn application_name_needs_no_check() {
        let (d, pool) = (defaults(), pool());
        let m = msg(&[
            ("user", "u"),
            ("application_name", "pgbench"),
            ("client_encoding", "UTF8"),
        ]);
        let p = from_startup(&d, &m).unwrap();
        assert!(!p.needs_check);
        // Only the value that differs from the default is the client's own.
        let set: Vec<_> = p.tracked.iter().flatten().map(|v| &**v).collect();
        assert_eq!(set, ["pgbench"]);
        let params = p.into_params(&d, &pool);
        assert_eq!(params.wanted.get("application_name"), Some("pgbench"));
        assert_eq!(params.wanted.get("client_encoding"), Some("UTF8"));
        assert_eq!(params.wanted.get("DateStyle"), Some("ISO, MDY"));
        assert_eq!(params.wanted.get("server_version"), None);
        assert_eq!(params.wanted.len(), 3);
        assert!(params.extras.is_empty());
    }

    #[test]
    fn logins_with_the_same_wishes_share_one_set() {
        let (d, pool) = (defaults(), pool());
        let login = |pairs: &[(&str, &str)]| {
            let m = msg(pairs);
            from_startup(&d, &m).unwrap().into_params(&d, &pool)
        };
        let a = login(&[("user", "u"), ("application_name", "pgbench")]);
        let b = login(&[("application_name", "pgbench"), ("user", "u")]);
        let c = login(&[("user", "u"), ("application_name", "psql")]);
        let plain = login(&[("user", "u")]);
        assert!(a.wanted.same_copy(&b.wanted));
        assert!(!a.wanted.same_copy(&c.wanted));
        assert_eq!(c.wanted.get("application_name"), Some("psql"));
        assert_eq!(plain.wanted.get("application_name"), Some(""));
        assert!(!plain.wanted.same_copy(&a.wanted));
        // A set built by a check (canonicalised values) is found again by value.
        let checked = pool.intern_params(a.wanted.clone());
        assert!(checked.same_copy(&a.wanted));
        // Empty extras are the one shared empty set.
        assert!(a.extras.same_copy(&ParamSet::default()));
    }

    #[test]
    fn other_values_are_checked() {
        let d = defaults();
        let m = msg(&[
            ("datestyle", "ISO"),
            ("extra_float_digits", "2"),
            ("options", "-c search_path=x -c DateStyle=German"),
            ("DateStyle", "SQL"),
        ]);
        let p = from_startup(&d, &m).unwrap();
        assert!(p.needs_check);
        // The last value sent wins, as in PostgreSQL.
        let i = crate::params::tracked_index("DateStyle").unwrap();
        assert_eq!(p.tracked[i].as_deref(), Some("SQL"));
        assert_eq!(p.extras.get("extra_float_digits"), Some("2"));
        assert_eq!(p.extras.get("search_path"), Some("x"));
        // Checked wishes are built for the check, with the defaults filled in.
        let unshared = p.into_unshared(&d);
        assert_eq!(unshared.wanted.get("DateStyle"), Some("SQL"));
        assert_eq!(unshared.wanted.get("client_encoding"), Some("UTF8"));
        assert_eq!(unshared.wanted.len(), 3);
        assert_eq!(unshared.extras.get("search_path"), Some("x"));
        let m = msg(&[("replication", "true")]);
        assert!(from_startup(&d, &m).is_err());
    }
}
