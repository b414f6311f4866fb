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
    /// True when a value must be checked (and canonicalised) on a backend before login completes.
    pub needs_check: bool,
    /// The `wanted` copy `ctx` was computed from (compared by pointer).
    ctx_of: ParamSet,
    /// [`crate::params::parse_context`] of `wanted`, cached.
    ctx: u64,
}

impl ClientParams {
    /// The parse-context hash of the current wishes; recomputed only after they changed (a
    /// change makes a new copy, since `ctx_of` shares the old one).
    pub fn parse_ctx(&mut self) -> u64 {
        if !self.ctx_of.same_copy(&self.wanted) {
            self.ctx = crate::params::parse_context(&self.wanted);
            self.ctx_of = self.wanted.clone();
        }
        self.ctx
    }
}

/// Builds the wishes from `defaults` (a fresh backend's ParameterStatus) and the startup packet.
/// Errors: `replication` and unparsable `options` are refused (0A000 / 08P01).
pub fn from_startup(
    defaults: &ParamSet,
    msg: &StartupMessage,
) -> Result<ClientParams, ErrorFields> {
    let mut p = ClientParams::default();
    for name in TRACKED {
        if let Some(v) = defaults.get(name) {
            p.wanted.set(name, v);
        }
    }
    let apply = |k: &str, v: &str, p: &mut ClientParams| {
        if let Some(t) = tracked_name(k) {
            if p.wanted.get(t) != Some(v) {
                p.wanted.set(t, v);
                p.needs_check |= CANONICALISED.contains(&t);
            }
        } else {
            p.extras.set(k, v);
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
        assert_eq!(p.wanted.get("application_name"), Some("pgbench"));
        assert!(!p.needs_check);
        assert_eq!(p.wanted.get("server_version"), None);
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
        assert_eq!(p.wanted.get("DateStyle"), Some("ISO"));
        assert_eq!(p.extras.get("extra_float_digits"), Some("2"));
        assert_eq!(p.extras.get("search_path"), Some("x"));
        assert!(p.needs_check);
        assert!(from_startup(&defaults(), &msg(&[("replication", "true")])).is_err());
    }
}
