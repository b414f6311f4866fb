//! What a client's session parameters should be: the pool's defaults overlaid with what the
//! client asked for in its startup packet (tracked ones) plus other GUCs it set there (extras).

use crate::params::{CANONICALISED, ParamSet, TRACKED, parse_options, tracked_name};
use doorman_wire::startup::StartupMessage;
use doorman_wire::{ErrorFields, sqlstate};

/// A client's parameter wishes.
#[derive(Debug, Default)]
pub struct ClientParams {
    /// Tracked parameters, always all of TRACKED that the server reports.
    pub wanted: ParamSet,
    /// Other GUCs from the startup packet, SET on every backend the client uses.
    pub extras: ParamSet,
}

/// What [`from_startup`] found: the wishes, and whether a value must be checked (and
/// canonicalised) on a backend before login completes.
#[derive(Debug, Default)]
pub struct StartupParams {
    /// The wishes.
    pub params: ClientParams,
    /// A value needs the check.
    pub needs_check: bool,
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

/// Builds the wishes from `defaults` (a fresh backend's ParameterStatus) and the startup packet.
/// Errors: `replication` and unparsable `options` are refused (0A000 / 08P01).
pub fn from_startup(
    defaults: &ParamSet,
    msg: &StartupMessage,
) -> Result<StartupParams, ErrorFields> {
    let mut p = StartupParams::default();
    for name in TRACKED {
        if let Some(v) = defaults.get(name) {
            p.params.wanted.set(name, v);
        }
    }
    let apply = |k: &str, v: &str, p: &mut StartupParams| {
        if let Some(t) = tracked_name(k) {
            if p.params.wanted.get(t) != Some(v) {
                p.params.wanted.set(t, v);
                p.needs_check |= CANONICALISED.contains(&t);
            }
        } else {
            p.params.extras.set(k, v);
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
                    apply(&ok, &ov, &mut p);
                }
            }
            _ => apply(k, v, &mut p),
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

    #[test]
    fn application_name_needs_no_check() {
        let p = from_startup(
            &defaults(),
            &msg(&[
                ("user", "u"),
                ("application_name", "pgbench"),
                ("client_encoding", "UTF8"),
            ]),
        )
        .unwrap();
        assert_eq!(p.params.wanted.get("application_name"), Some("pgbench"));
        assert!(!p.needs_check);
        assert_eq!(p.params.wanted.get("server_version"), None);
    }

    #[test]
    fn other_values_are_checked() {
        let p = from_startup(
            &defaults(),
            &msg(&[
                ("datestyle", "ISO"),
                ("extra_float_digits", "2"),
                ("options", "-c search_path=x"),
            ]),
        )
        .unwrap();
        assert_eq!(p.params.wanted.get("DateStyle"), Some("ISO"));
        assert_eq!(p.params.extras.get("extra_float_digits"), Some("2"));
        assert_eq!(p.params.extras.get("search_path"), Some("x"));
        assert!(p.needs_check);
        assert!(from_startup(&defaults(), &msg(&[("replication", "true")])).is_err());
    }
}
