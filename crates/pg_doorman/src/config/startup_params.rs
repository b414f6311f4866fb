//! `startup_parameters` (general and per pool): settings put in every backend's
//! StartupMessage, so they are the session defaults PostgreSQL starts with (and RESET returns
//! to). The pool's map overrides general's key by key. Checked at load as PgDoorman checks
//! them: GUC-shaped names, no keys the pooler manages (`user`, `database`, `replication`,
//! `options`, `_pq_.*`), no NUL bytes, and a size that leaves room in PostgreSQL's 10 000-byte
//! StartupMessage cap (`MAX_STARTUP_PACKET_LENGTH`) for what pg_doorman adds.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// PostgreSQL's cap on a StartupMessage (bytes; src/include/libpq/pqcomm.h).
pub const MAX_STARTUP_PACKET: usize = 10_000;
/// Bytes kept for user, database and application_name (PgDoorman's figure).
pub const RESERVED_HEADROOM: usize = 512;
/// What the configured parameters may take on the wire, `key\0value\0` each (bytes).
pub const BUDGET: usize = MAX_STARTUP_PACKET - RESERVED_HEADROOM;

/// Keys the pooler sets itself or PostgreSQL treats specially in a StartupMessage.
const RESERVED: &[&str] = &["user", "database", "replication", "options"];

/// A parameter map with scalar values: YAML `statement_timeout: 5000` or `jit: off` reads as
/// the text PostgreSQL would be sent.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        I(i64),
        F(f64),
        B(bool),
    }
    let m = BTreeMap::<String, Scalar>::deserialize(d)?;
    Ok(m.into_iter()
        .map(|(k, v)| {
            let v = match v {
                Scalar::S(s) => s,
                Scalar::I(i) => i.to_string(),
                Scalar::F(f) => f.to_string(),
                Scalar::B(b) => if b { "on" } else { "off" }.to_string(),
            };
            (k, v)
        })
        .collect())
}

fn guc_name(k: &str) -> bool {
    let mut b = k.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
}

/// Bytes `map` takes in a StartupMessage.
pub fn wire_bytes<'a>(map: impl IntoIterator<Item = (&'a String, &'a String)>) -> usize {
    map.into_iter().map(|(k, v)| k.len() + v.len() + 2).sum()
}

/// Why `k = v` may not be a startup parameter: a reason label (the `reason` of
/// `pg_doorman_startup_parameters_dropped_total`) and a message; None when it may.
pub fn key_problem(k: &str, v: &str) -> Option<(&'static str, String)> {
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(k)) {
        Some((
            "reserved",
            format!("{k}: set by pg_doorman itself; not allowed here"),
        ))
    } else if k.starts_with("_pq_.") {
        Some((
            "reserved",
            format!("{k}: the \"_pq_.\" prefix is reserved for protocol options"),
        ))
    } else if !guc_name(k) {
        Some((
            "invalid_name",
            format!("{k:?}: not a setting name (letters, digits, _ and .)"),
        ))
    } else if v.contains('\0') {
        Some(("nul_byte", format!("{k}: the value contains a NUL byte")))
    } else {
        None
    }
}

/// Problems of one map, each naming `scope.key` (e.g. `pools.app.startup_parameters.user`).
pub fn check(map: &BTreeMap<String, String>, scope: &str, out: &mut Vec<String>) {
    for (k, v) in map {
        if let Some((_, msg)) = key_problem(k, v) {
            out.push(format!("{scope}.{msg}"));
        }
        // A bad name with a NUL byte too: both are reported.
        if v.contains('\0') && key_problem(k, "").is_some() {
            out.push(format!("{scope}.{k}: the value contains a NUL byte"));
        }
    }
    let n = wire_bytes(map);
    if n > BUDGET {
        out.push(format!(
            "{scope}: {n} bytes in the StartupMessage, more than the {BUDGET} PostgreSQL's {MAX_STARTUP_PACKET}-byte cap leaves for them"
        ));
    }
}

/// General's map with the pool's on top.
pub fn merged(
    general: &BTreeMap<String, String>,
    pool: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut m = general.clone();
    m.extend(pool.iter().map(|(k, v)| (k.clone(), v.clone())));
    m.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_reserved_keys_nul_and_size_are_checked() {
        let m = |p: &[(&str, &str)]| -> BTreeMap<String, String> {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let mut out = Vec::new();
        check(
            &m(&[
                ("work_mem", "64MB"),
                ("auto_explain.log_min_duration", "100ms"),
            ]),
            "general.startup_parameters",
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        check(
            &m(&[
                ("Database", "x"),
                ("_pq_.x", "1"),
                ("bad name", "1"),
                ("a", "b\0c"),
            ]),
            "s",
            &mut out,
        );
        assert_eq!(out.len(), 4, "{out:?}");
        // In key order: upper case, `_`, lower case.
        assert!(
            out[0].starts_with("s.Database: set by pg_doorman"),
            "{out:?}"
        );
        assert!(out[1].contains("\"_pq_.\""), "{out:?}");
        assert!(out[2].contains("NUL"), "{out:?}");
        assert!(out[3].contains("not a setting name"), "{out:?}");
        out.clear();
        let big: BTreeMap<String, String> = (0..10)
            .map(|i| (format!("k{i}"), "v".repeat(1000)))
            .collect();
        check(&big, "s", &mut out);
        assert!(out[0].contains("9488"), "{out:?}");
        let g = m(&[("work_mem", "1MB"), ("jit", "off")]);
        let p = m(&[("work_mem", "2MB")]);
        assert_eq!(
            merged(&g, &p),
            [
                ("jit".to_string(), "off".to_string()),
                ("work_mem".into(), "2MB".into())
            ]
        );
    }
}
