//! Bringing a backend's session settings in line with a client's wishes before it serves
//! the client: one simple query of SETs and RESETs, only for what differs.

use super::login_params::ClientParams;
use crate::error::ServerError;
use crate::params::{reset_statement, set_statement, tracked_name};
use crate::server::Server;
use doorman_wire::fields::ReceivedError;

/// Brings `server` in line with the client's wishes with one simple query, only when something
/// differs. Returns the backend's error if a SET failed. Allocates nothing when all match.
pub(super) async fn sync_params(
    server: &mut Server,
    params: &mut ClientParams,
) -> Result<Option<ReceivedError>, ServerError> {
    if in_sync(server, params) {
        return Ok(None);
    }
    let mut sql = String::new();
    for (k, v) in params.wanted.iter() {
        if server.params.get(k) != Some(v) {
            set_statement(&mut sql, k, v);
        }
    }
    for (k, v) in params.extras.iter() {
        if server.extras.get(k) != Some(v) {
            set_statement(&mut sql, k, v);
        }
    }
    for (k, _) in server.extras.iter() {
        if params.extras.get(k).is_none() {
            reset_statement(&mut sql, k);
        }
    }
    if !sql.is_empty() {
        let wanted = &mut params.wanted;
        let failed = server
            .simple_query(&sql, |k, v| {
                if let Some(t) = tracked_name(k) {
                    wanted.set(t, v);
                }
            })
            .await?;
        if failed.is_some() {
            return Ok(failed);
        }
        // A SET that leaves a value unchanged reports nothing, so "utf8" would stay the
        // client's spelling; the backend's own value is the canonical one ("UTF8").
        let canonical: Vec<(&str, &str)> = params
            .wanted
            .iter()
            .filter_map(|(k, v)| server.params.get(k).filter(|s| *s != v).map(|s| (k, s)))
            .collect();
        let mut wanted = params.wanted.clone();
        for (k, v) in canonical {
            wanted.set(k, v);
        }
        params.wanted = wanted;
    }
    server.extras = params.extras.clone();
    server.synced = Some(params.wanted.clone());
    Ok(None)
}

/// True when `server` was last brought in line with this very parameter set (pointer-equal
/// copies): the common case, checked without reading any value.
pub(super) fn in_sync(server: &Server, params: &ClientParams) -> bool {
    let extras_equal = server.extras.same_copy(&params.extras)
        || (server.extras.is_empty() && params.extras.is_empty());
    extras_equal
        && server
            .synced
            .as_ref()
            .is_some_and(|s| s.same_copy(&params.wanted))
}
