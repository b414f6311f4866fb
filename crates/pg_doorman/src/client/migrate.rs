//! A client arriving from the old process of a binary upgrade: its socket (received over
//! SCM_RIGHTS) and [`Migrant`] record become a logged-in session here, with the same
//! BackendKeyData key, parameters and prepared statements, without a word to the client.

use super::login_params::ClientParams;
use super::session::Session;
use super::startup::{LoggedIn, finish};
use crate::app::clients::ClientInfo;
use crate::app::context::AppContext;
use crate::app::handoff::Migrant;
use crate::net::{Peer, Stream};
use crate::params::ParamSet;
use crate::prepared::{ClientStatements, hash_body};
use crate::relay::{ClientIo, Scan};
use bytes::BytesMut;
use doorman_wire::{ErrorFields, sqlstate};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

fn param_set(pairs: &[(String, String)]) -> ParamSet {
    let mut p = ParamSet::default();
    for (k, v) in pairs {
        p.set(k, v);
    }
    p
}

/// The handed-over socket as a stream of its kind, configured again (a changed
/// tcp_socket_buffer_size and the rest apply to it).
fn socket(ctx: &AppContext, peer: Peer, fd: OwnedFd) -> std::io::Result<Stream> {
    if peer == Peer::Unix {
        let s = std::os::unix::net::UnixStream::from(fd);
        s.set_nonblocking(true)?;
        crate::listener::unix_buffers(&s, ctx.config.general.unix_socket_buffer_size.0);
        return Ok(Stream::Unix(tokio::net::UnixStream::from_std(s)?));
    }
    let s = std::net::TcpStream::from(fd);
    s.set_nonblocking(true)?;
    if let Err(e) = crate::pool::settings::tcp_options(&ctx.config).apply(&s) {
        tracing::debug!("migrated client {peer}: socket options: {e}");
    }
    Ok(Stream::Tcp(tokio::net::TcpStream::from_std(s)?))
}

/// Serves a migrated client until it leaves. A client whose pool the new configuration no
/// longer has is told so (FATAL 3D000) and closed.
pub async fn arrive(ctx: Arc<AppContext>, m: Box<Migrant>, fd: OwnedFd) {
    let peer = Peer::parse(&m.peer).unwrap_or(Peer::Tcp(([0, 0, 0, 0], 0).into()));
    let stream = match socket(&ctx, peer, fd) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("migrated client {}: {e}", m.peer);
            return;
        }
    };
    let dynamic = match ctx.pools.auth_query(&m.database) {
        Some(aq) if ctx.pools.get(&m.database, &m.user).is_err() => {
            aq.pool_for_migrant(&m.user).await
        }
        _ => None,
    };
    let pool = match dynamic.map_or_else(|| ctx.pools.get(&m.database, &m.user), Ok) {
        Ok(p) => p,
        Err(_) => {
            tracing::warn!(
                "migrated client {}: no pool for user \"{}\" database \"{}\" in the new configuration",
                m.peer,
                m.user,
                m.database
            );
            let e = ErrorFields::fatal(
                sqlstate::INVALID_CATALOG_NAME,
                format!(
                    "database \"{}\" for user \"{}\" is no longer configured after the pooler's upgrade",
                    m.database, m.user
                ),
            );
            stream.send_fatal(e).await;
            return;
        }
    };
    let params = ClientParams {
        wanted: param_set(&m.wanted),
        extras: param_set(&m.extras),
    };
    let parse_ctx = crate::params::parse_context(&params.wanted);
    let now = crate::clock::Micros::now();
    let connected = crate::clock::Micros::from_u64(now.as_u64().saturating_sub(m.age_us));
    // A live client is never refused for max_connections: it was admitted already.
    ctx.force_client_slot();
    let wanted_id = i32::try_from(m.id).ok();
    let (info, listed) = ctx
        .client_list
        .register_keyed(wanted_id, m.secret, |id, secret| ClientInfo {
            // The figures it had, and the parse context of its current wishes (not of its
            // startup values, which a SET may have left behind).
            connected,
            xacts: m.counters[0].into(),
            queries: m.counters[1].into(),
            errors: m.counters[2].into(),
            parse_ctx: parse_ctx.into(),
            ..ClientInfo::new(
                (id, secret),
                pool.clone(),
                peer,
                false,
                param_set(&m.startup),
                param_set(&m.startup_extras),
            )
        });
    if Some(info.id as i32) != wanted_id {
        // Another client here holds its id: its cancel key changes (it cannot be told).
        tracing::warn!(
            "migrated client {}: id {} in use, given {}",
            m.peer,
            m.id,
            info.id
        );
    }
    let io = ClientIo {
        stream,
        buf: BytesMut::from(&m.pending[..]),
        scan: Scan::default(),
    };
    let mut session = Session::new(io, params, info.clone(), None);
    session.set_deferred_begin(m.deferred_begin.clone());
    if let Some(cache) = pool.statements.as_ref()
        && !m.statements.is_empty()
    {
        let mut s =
            ClientStatements::new(pool.settings.client_prepared_cache, cache.clients.clone());
        let salt = cache.salt(info.parse_ctx.load(Ordering::Relaxed));
        for (name, body) in &m.statements {
            // Interned as a Parse of it would be: the next Bind prepares it on whichever
            // backend it lands on.
            let st = cache.intern(hash_body(body) ^ salt, body);
            s.insert(name, st);
        }
        session.set_statements(Some(Box::new(s)));
    }
    tracing::debug!(
        "{} client migrated from the old process ({} statements)",
        session.label(),
        m.statements.len()
    );
    listed.hand_over();
    let mut client = LoggedIn { session, ctx: &ctx };
    let departure = client.session.run().await;
    finish(client, departure);
}
