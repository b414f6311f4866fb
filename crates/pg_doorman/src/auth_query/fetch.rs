//! Turning the rows an auth_query returned into a [`Fetched`] secret (PgDoorman's rules: the
//! password column is `passwd`, else `password`, else the only column; an optional
//! `startup_parameters` column holds a JSON object).

use super::{Dropped, Fetched};
use crate::pool::settings::{ClientSecret, ServerSecret};
use crate::server::Rows;
use doorman_wire::auth::{md5, scram};
use std::collections::BTreeMap;

/// What the rows say about one login name.
#[derive(Debug)]
pub(super) enum Found {
    /// A usable secret.
    Secret(std::sync::Arc<Fetched>),
    /// No row, or a NULL or empty password: the user cannot log in.
    Nobody,
}

/// Reads the rows of a look-up for `user`. Errors (logged, counted as executor errors, not
/// cached) when the result has no column to take the password from.
pub(super) fn parse(user: &str, rows: Rows) -> Result<Found, String> {
    let col = |name: &str| rows.columns.iter().position(|c| c == name);
    let pw = col("passwd")
        .or_else(|| col("password"))
        .or_else(|| (rows.columns.len() == 1).then_some(0))
        .ok_or_else(|| {
            format!(
                "the query returns no passwd or password column (columns: {:?})",
                rows.columns
            )
        })?;
    let params_col = col("startup_parameters");
    if rows.rows.len() > 1 {
        tracing::warn!(
            "auth_query returned {} rows for user {user:?}; the first is used",
            rows.rows.len()
        );
    }
    let Some(row) = rows.rows.into_iter().next() else {
        return Ok(Found::Nobody);
    };
    let Some(stored) = row.get(pw).cloned().flatten().filter(|p| !p.is_empty()) else {
        return Ok(Found::Nobody);
    };
    let column = params_col.and_then(|i| row.get(i).cloned().flatten());
    let (startup_parameters, dropped) = column
        .as_deref()
        .map(|json| startup_parameters(user, json))
        .unwrap_or_default();
    let (client, server) = secrets(&stored);
    // A changed column changes the pool's backends: it is part of what makes the pool.
    let stamp = match column {
        Some(json) => format!("{stored}\n{json}"),
        None => stored,
    };
    Ok(Found::Secret(std::sync::Arc::new(Fetched {
        client,
        server,
        startup_parameters,
        dropped,
        stamp,
    })))
}

/// A stored SCRAM verifier or MD5 secret is used as it is: the client is checked against it
/// and the backend login answers with it (MD5) or with the ClientKey of the client's own SCRAM
/// proof (SCRAM passthrough). A plaintext value (a custom table) gets a SCRAM verifier.
fn secrets(stored: &str) -> (ClientSecret, ServerSecret) {
    if stored.starts_with("SCRAM-SHA-256$")
        && let Ok(v) = scram::Verifier::parse(stored)
    {
        return (
            ClientSecret::Scram(v.clone()),
            ServerSecret::ScramPassthrough(v),
        );
    }
    if md5::is_secret(stored) {
        return (
            ClientSecret::Md5(stored.to_string()),
            ServerSecret::Md5(stored.to_string()),
        );
    }
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let v = scram::Verifier::from_password(stored, &salt, scram::DEFAULT_ITERATIONS);
    (
        ClientSecret::Scram(v),
        ServerSecret::Plain(stored.to_string()),
    )
}

/// The user's own startup parameters (a JSON object of scalars), each key checked as the
/// config's are; a key that fails is logged and left out (with its reason), so the login
/// still works; a column that is not a JSON object is left out whole (`invalid_json`).
fn startup_parameters(user: &str, json: &str) -> (Vec<(String, String)>, Vec<Dropped>) {
    let parsed: Result<BTreeMap<String, serde_json::Value>, _> = serde_json::from_str(json);
    let Ok(map) = parsed else {
        tracing::warn!(
            "auth_query: startup_parameters of user {user:?} is not a JSON object; ignored"
        );
        return (Vec::new(), vec![(String::new(), "invalid_json")]);
    };
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for (k, v) in map {
        let v = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Bool(b) => if b { "on" } else { "off" }.to_string(),
            other => other.to_string(),
        };
        match crate::config::startup_params::key_problem(&k, &v) {
            Some((reason, msg)) => {
                tracing::warn!("auth_query startup_parameters of user {user:?}: {msg}; ignored");
                dropped.push((k, reason));
            }
            None => kept.push((k, v)),
        }
    }
    (kept, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(columns: &[&str], rows: Vec<Vec<Option<&str>>>) -> Rows {
        Rows {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: rows
                .into_iter()
                .map(|r| r.into_iter().map(|v| v.map(str::to_string)).collect())
                .collect(),
        }
    }

    const MD5: &str = "md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn the_password_column_is_passwd_then_password_then_the_only_one() {
        let r = rows(&["usename", "passwd"], vec![vec![Some("u"), Some(MD5)]]);
        assert!(matches!(parse("u", r), Ok(Found::Secret(f)) if f.stamp == MD5));
        let r = rows(&["password", "x"], vec![vec![Some(MD5), Some("y")]]);
        assert!(matches!(parse("u", r), Ok(Found::Secret(f)) if f.stamp == MD5));
        let r = rows(&["whatever"], vec![vec![Some(MD5)]]);
        assert!(matches!(parse("u", r), Ok(Found::Secret(f)) if f.stamp == MD5));
        let r = rows(&["a", "b"], vec![vec![Some(MD5), Some(MD5)]]);
        assert!(parse("u", r).is_err_and(|e| e.contains("no passwd or password")));
    }

    #[test]
    fn no_row_or_no_password_is_nobody() {
        assert!(matches!(
            parse("u", rows(&["passwd"], vec![])),
            Ok(Found::Nobody)
        ));
        let null = rows(&["passwd"], vec![vec![None]]);
        assert!(matches!(parse("u", null), Ok(Found::Nobody)));
        let empty = rows(&["passwd"], vec![vec![Some("")]]);
        assert!(matches!(parse("u", empty), Ok(Found::Nobody)));
    }

    #[test]
    fn secrets_by_form_and_startup_parameters_checked() {
        let r = rows(
            &["passwd", "startup_parameters"],
            vec![vec![
                Some(MD5),
                Some(r#"{"work_mem": "8MB", "jit": false}"#),
            ]],
        );
        let Ok(Found::Secret(f)) = parse("u", r) else {
            panic!("a secret")
        };
        assert!(matches!(f.server, ServerSecret::Md5(_)));
        assert_eq!(
            f.startup_parameters,
            vec![
                ("jit".into(), "off".into()),
                ("work_mem".into(), "8MB".into())
            ]
        );
        let r = rows(
            &["passwd", "startup_parameters"],
            vec![vec![
                Some("plain"),
                Some(r#"{"user": "root", "bad key": 1, "work_mem": "1MB"}"#),
            ]],
        );
        let Ok(Found::Secret(f)) = parse("u", r) else {
            panic!("a secret")
        };
        assert_eq!(
            f.startup_parameters,
            vec![("work_mem".into(), "1MB".into())]
        );
        assert_eq!(
            f.dropped,
            vec![
                ("bad key".into(), "invalid_name"),
                ("user".into(), "reserved")
            ]
        );
        assert!(
            f.stamp.starts_with("plain\n"),
            "the column is part of the stamp"
        );
        assert!(matches!(f.client, ClientSecret::Scram(_)));
        assert!(matches!(f.server, ServerSecret::Plain(ref p) if p == "plain"));
        let r = rows(
            &["passwd", "startup_parameters"],
            vec![vec![Some(MD5), Some("[1]")]],
        );
        let Ok(Found::Secret(f)) = parse("u", r) else {
            panic!("a secret")
        };
        assert_eq!(f.dropped, vec![(String::new(), "invalid_json")]);
    }
}
