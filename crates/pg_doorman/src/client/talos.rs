//! The login of a client named `talos` (src/talos.rs has the token rules): the token comes as
//! the password in clear text; a valid one picks the pool user, which pg_hba must admit too.

use super::auth::{AuthFailure, read_cleartext};
use crate::app::context::AppContext;
use crate::net::{Peer, Stream};
use crate::pool::Pool;
use crate::talos::Talos;
use bytes::BytesMut;
use doorman_wire::startup::StartupMessage;
use doorman_wire::{ErrorFields, sqlstate};
use std::sync::Arc;

/// Authenticates a Talos client and returns its pool and the startup packet as the pool user
/// would have sent it (user and database explicit, application_name the token's clientId).
///
/// A refused token gets 28P01 as a wrong password (PgDoorman answers 3D000, which drivers
/// take for a missing database and retry); a pool user that does not exist, or that pg_hba
/// refuses, gets 28000.
pub(super) async fn login(
    ctx: &AppContext,
    talos: &Talos,
    stream: &mut Stream,
    buf: &mut BytesMut,
    msg: &StartupMessage,
    peer: Peer,
) -> Result<(Arc<Pool>, StartupMessage), Option<ErrorFields>> {
    let database = msg.database();
    let refuse = |why: &str, e: ErrorFields| {
        tracing::warn!("client {peer}: talos login to database {database:?} refused: {why}");
        Some(e)
    };
    let token = match read_cleartext(stream, buf).await {
        Ok(t) => t,
        Err(AuthFailure::Gone) => return Err(None),
        Err(AuthFailure::Reject(e)) => return Err(Some(e)),
    };
    let grant = talos
        .verify(&token, database, crate::jwt::now())
        .map_err(|e| {
            let msg = format!(
                "password authentication failed for user \"{}\"",
                crate::talos::USER
            );
            refuse(
                &e.to_string(),
                ErrorFields::fatal(sqlstate::INVALID_PASSWORD, msg),
            )
        })?;
    let user = crate::talos::pool_user(&grant, |u| ctx.pools.get(database, u).is_ok());
    let no_role = || {
        ErrorFields::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            format!("role \"{user}\" does not exist"),
        )
    };
    let pool = ctx.pools.get(database, &user).map_err(|_| {
        let why = format!(
            "the token grants {}, the pool has no user {user:?}",
            grant.role.as_str()
        );
        refuse(&why, no_role())
    })?;
    // The token authenticated `talos`; a rule written for the user it maps to applies too.
    super::access::access(ctx, stream, &user, database, peer)
        .map_err(|e| refuse(&format!("pg_hba refuses user {user:?}"), e))?;
    tracing::info!(
        "client {peer}: talos login client_id={:?} database={database:?} role={} user={user:?}",
        grant.client_id,
        grant.role.as_str()
    );
    let mut as_user = msg.clone();
    set(&mut as_user, "database", database);
    set(&mut as_user, "user", &user);
    if !grant.client_id.is_empty() && !grant.client_id.chars().any(char::is_control) {
        set(&mut as_user, "application_name", &grant.client_id);
    }
    Ok((pool, as_user))
}

fn set(msg: &mut StartupMessage, key: &str, value: &str) {
    match msg.params.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => *v = value.to_string(),
        None => msg.params.push((key.to_string(), value.to_string())),
    }
}
