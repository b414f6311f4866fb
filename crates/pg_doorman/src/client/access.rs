//! The pg_hba decision for a login, taken before any authentication exchange, with
//! PostgreSQL's messages and SQLSTATE 28000.

use crate::app::context::AppContext;
use crate::hba::{Decision, Method};
use crate::net::{Peer, Stream};
use doorman_wire::{ErrorFields, sqlstate};

/// The pg_hba decision for this connection: its auth method, or the FATAL 28000 PostgreSQL
/// sends when no rule matches or the matching rule rejects. Without rules every client may try
/// (method md5: as its secret allows).
pub(super) fn access(
    ctx: &AppContext,
    stream: &Stream,
    user: &str,
    database: &str,
    peer: Peer,
) -> Result<Method, ErrorFields> {
    let guard = ctx.hba.load();
    let Some(rules) = guard.as_deref() else {
        return Ok(Method::Md5);
    };
    let tls = stream.is_tls();
    let what = |verb: &str| {
        let enc = if tls {
            "SSL encryption"
        } else {
            "no encryption"
        };
        let host = peer.host();
        format!("{verb} for host \"{host}\", user \"{user}\", database \"{database}\", {enc}")
    };
    match rules.decide(peer.ip(), tls, database, user) {
        Decision::Rule(Method::Reject, _) => Err(ErrorFields::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            what("pg_hba.conf rejects connection"),
        )),
        Decision::Rule(m, _) => Ok(m),
        Decision::NoEntry => Err(ErrorFields::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            what("no pg_hba.conf entry"),
        )),
    }
}
