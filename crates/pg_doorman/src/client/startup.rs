//! A new client connection: TLS negotiation (SSLRequest, or a direct TLS ClientHello as in
//! PostgreSQL 17), GSSENCRequest (refused), CancelRequest, StartupMessage, pool lookup,
//! authentication and the login reply (AuthenticationOk, ParameterStatus, BackendKeyData,
//! ReadyForQuery); protocol §55.2.1 and §55.2.10.

use super::auth::{AuthFailure, authenticate};
use super::login_params::{ClientParams, from_startup};
use super::session::Session;
use crate::app::clients::ClientInfo;
use crate::app::context::{AppContext, ClientSlot};
use crate::config::TlsMode;
use crate::hba::Method;
use crate::net::{Peer, Stream};
use crate::pool::Pool;
use crate::pool::registry::Lookup;
use crate::relay::{ClientIo, Scan};
use crate::tls::TlsConn;
use bytes::{Buf, BytesMut};
use doorman_wire::startup::{self, StartupMessage, StartupPacket};
use doorman_wire::{ErrorFields, backend, sqlstate};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Time a client has to finish startup and authentication (PostgreSQL's authentication_timeout).
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// First byte of a TLS handshake record: a client starting TLS without SSLRequest.
const TLS_HANDSHAKE: u8 = 0x16;

/// What the client opened with.
enum Packet {
    /// A startup-phase packet.
    Startup(StartupPacket),
    /// A TLS ClientHello (direct TLS); its bytes are in the buffer.
    DirectTls,
}

async fn read_packet(
    stream: &mut Stream,
    buf: &mut BytesMut,
    tls_possible: bool,
) -> Result<Option<Packet>, doorman_wire::WireError> {
    loop {
        if tls_possible && buf.first() == Some(&TLS_HANDSHAKE) {
            return Ok(Some(Packet::DirectTls));
        }
        if let Some(len) = startup::packet_len(buf)?
            && buf.len() >= len
        {
            let packet = startup::decode(&buf[..len]);
            buf.advance(len);
            return packet.map(|p| Some(Packet::Startup(p)));
        }
        match stream.read_some(buf, 1024).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

/// A connection just accepted: its socket and the peer address (for logs and pg_hba).
pub struct Accepted {
    /// The socket.
    pub stream: Stream,
    /// The client's address, or the unix socket (formatted only when logged).
    pub peer: Peer,
}

/// A client that completed startup and authentication and was sent its welcome. Dropping it
/// takes the client off the list and gives back its max_connections slot (one guard instead of
/// two, so every idle client's task stays within a 384-byte tokio cell).
pub(super) struct LoggedIn<'a> {
    pub(super) session: Session,
    pub(super) ctx: &'a AppContext,
}

impl Drop for LoggedIn<'_> {
    fn drop(&mut self) {
        self.ctx.client_list.unregister(&self.session.info);
        self.ctx.release_client_slot();
    }
}

/// Negotiation, cancel handling, login and welcome; None when the connection is done with.
/// Takes the socket by value so that only the session it returns stays in the client's task.
async fn startup_phase(ctx: &AppContext, accepted: Box<Accepted>) -> Option<LoggedIn<'_>> {
    let Accepted { stream, peer } = *accepted;
    // Every connection counts against max_connections from the start, authenticated or not,
    // so a flood of half-open logins cannot exhaust file descriptors (as in PgBouncer).
    let slot = ctx.try_client_slot();
    ctx.conns.total.fetch_add(1, Ordering::Relaxed);
    let mut buf = BytesMut::new();
    let mut stream = Some(stream);
    let negotiated =
        tokio::time::timeout(LOGIN_TIMEOUT, negotiate(ctx, &mut stream, &mut buf, peer)).await;
    // None: the TLS handshake failed and took the socket with it.
    let Some(mut stream) = stream else {
        ctx.conns.reject(1);
        return None;
    };
    let msg = match negotiated {
        // Cancel requests are served even when full, as PostgreSQL does.
        Ok(Ok(Some(Negotiated::Startup(_)))) if slot.is_none() => {
            tracing::warn!("client {peer}: refused, max_connections reached");
            ctx.conns.reject(3);
            let e = ErrorFields::fatal(
                sqlstate::TOO_MANY_CONNECTIONS,
                "sorry, too many clients already",
            );
            stream.send_fatal(e).await;
            return None;
        }
        Ok(Ok(Some(Negotiated::Startup(m))))
            if ctx.tls.mode >= TlsMode::Require && !stream.is_tls() =>
        {
            tracing::warn!("client {peer}: refused, plain connection while tls_mode requires TLS");
            ctx.conns.reject(0);
            let user = m.user().to_string();
            let e = ErrorFields::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                format!(
                    "connection for user \"{user}\" requires TLS (pg_doorman tls_mode is {})",
                    ctx.tls.mode.as_str()
                ),
            );
            stream.send_fatal(e).await;
            return None;
        }
        Ok(Ok(Some(Negotiated::Startup(m)))) => m,
        Ok(Ok(Some(Negotiated::Cancel(pid, secret)))) => {
            ctx.conns.cancel.fetch_add(1, Ordering::Relaxed);
            if !super::cancel::forward(&ctx.client_list, pid, secret).await
                && ctx.lifecycle.cancel_to_predecessor(pid, secret)
            {
                tracing::debug!("cancel request sent to the process being upgraded from");
            }
            // The client reads until end of stream: that is the answer (as PostgreSQL).
            let _ = stream.close_with_fin();
            return None;
        }
        Ok(Ok(None)) => return None,
        Ok(Err(e)) => {
            tracing::warn!("client {peer}: invalid startup packet: {e}");
            ctx.conns.reject(2);
            let e = format!("invalid startup packet: {e}");
            stream
                .send_fatal(ErrorFields::fatal(sqlstate::PROTOCOL_VIOLATION, e))
                .await;
            return None;
        }
        Err(_) => {
            tracing::info!("client {peer}: startup timeout");
            return None;
        }
    };
    let method = match super::access::access(ctx, &stream, msg.user(), msg.database(), peer) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("client {peer}: {}", e.message);
            ctx.conns.reject(5);
            stream.send_fatal(e).await;
            return None;
        }
    };
    if crate::admin::wants_console(ctx, &msg) {
        // Rare: the console session runs inside this (boxed) startup future.
        crate::admin::serve(ctx, stream, buf, &msg, peer, method).await;
        return None;
    }
    let login = tokio::time::timeout(
        LOGIN_TIMEOUT,
        login(ctx, &mut stream, &mut buf, &msg, peer, method),
    )
    .await;
    let e = match login {
        Ok(Ok((pool, params))) => {
            let io = ClientIo {
                stream,
                buf,
                scan: Scan::default(),
            };
            let counter = if io.stream.is_tls() {
                &ctx.conns.tls
            } else {
                &ctx.conns.plain
            };
            counter.fetch_add(1, Ordering::Relaxed);
            return welcome(ctx, io, pool, params, slot?, peer).await;
        }
        Ok(Err(None)) => return None,
        Ok(Err(Some(e))) => e,
        Err(_) => ErrorFields::fatal(sqlstate::PROTOCOL_VIOLATION, "authentication timeout"),
    };
    ctx.conns.reject(4);
    stream.send_fatal(e).await;
    None
}

/// Registers the client (its cancel key with it), sends AuthenticationOk, ParameterStatus,
/// BackendKeyData and ReadyForQuery, and builds the session.
async fn welcome<'a>(
    ctx: &'a AppContext,
    io: ClientIo,
    pool: Arc<Pool>,
    params: ClientParams,
    _slot: ClientSlot<'a>,
    peer: Peer,
) -> Option<LoggedIn<'a>> {
    let mut params = params;
    let held = if pool.settings.backend_pid {
        match Box::pin(take_backend(&pool, &mut params)).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("client {peer}: {}: {}", pool.name(), e.message);
                io.stream.send_fatal(e).await;
                return None;
            }
        }
    } else {
        None
    };
    let wanted_pid = held.as_ref().map(|s| s.backend_pid);
    let (info, listed) = ctx.client_list.register(wanted_pid, |id, secret| {
        ClientInfo::new(
            (id, secret),
            pool.clone(),
            peer,
            io.stream.is_tls(),
            params.wanted.clone(),
            params.extras.clone(),
        )
    });
    let mut out = BytesMut::with_capacity(512);
    backend::write_auth_ok(&mut out);
    write_parameter_statuses(&mut out, &pool, &params);
    backend::write_backend_key_data(&mut out, info.id as i32, info.secret);
    backend::write_ready_for_query(&mut out, b'I');
    io.stream.write_all(&out).await.ok()?;
    let session = Session::new(io, params, info, held);
    if ctx.config.general.log_client_connections {
        tracing::info!("{} client connected from {peer}", session.label());
    }
    _slot.hand_over();
    listed.hand_over();
    Some(LoggedIn { session, ctx })
}

/// A backend brought in line with the client's parameters: the one a session-mode client keeps
/// for its whole life (taken at login so that its process id can go in BackendKeyData), or the
/// one [`check_params`] tries the startup values on. A value PostgreSQL refuses fails the login
/// with its SQLSTATE.
async fn take_backend(
    pool: &Pool,
    params: &mut ClientParams,
) -> Result<Box<crate::server::Server>, ErrorFields> {
    let mut server = pool.checkout().await.map_err(|e| e.to_client())?;
    let synced =
        tokio::time::timeout(LOGIN_TIMEOUT, super::sync::sync_params(&mut server, params)).await;
    match synced {
        Ok(Ok(None)) => Ok(server),
        Ok(Ok(Some(e))) => {
            pool.checkin(server);
            Err(ErrorFields::fatal(code_of(&e.code), e.message))
        }
        Ok(Err(e)) => {
            pool.discard(server);
            Err(e.to_client())
        }
        Err(_) => {
            server.bad = true;
            pool.discard(server);
            Err(ErrorFields::fatal(
                sqlstate::CONNECTION_FAILURE,
                "server did not answer while applying session parameters",
            ))
        }
    }
}

/// Serves one accepted connection until it closes.
pub async fn handle(ctx: Arc<AppContext>, accepted: Box<Accepted>) {
    // Boxed: the login state machine is large and must not stay in every idle client's task.
    // (The socket comes boxed too: an async fn keeps its arguments' slots for its whole life.)
    let Some(mut client) = Box::pin(startup_phase(&ctx, accepted)).await else {
        return;
    };
    let departure = client.session.run().await;
    finish(client, departure);
}

/// After a logged-in client's session: one that leaves for the new process of an upgrade is
/// handed to the lifecycle's sender; otherwise its disconnection is logged. (Not async: the
/// client's task future keeps one copy of the session, not two.)
pub(super) fn finish(client: LoggedIn<'_>, departure: Option<crate::app::handoff::Departure>) {
    let ctx = client.ctx;
    if let Some(d) = departure {
        if ctx.config.general.log_client_disconnections {
            tracing::info!(
                "{} client migrating to the new process",
                client.session.label()
            );
        }
        // Queued before the client is taken off the list (and its slot given back), so the
        // old process's count reaches 0 only after every departure is queued.
        ctx.lifecycle.depart(d);
        drop(client);
        return;
    }
    if ctx.config.general.log_client_disconnections {
        tracing::info!(
            "{} client disconnected after {}",
            client.session.label(),
            crate::logging::human(client.session.age())
        );
    }
}

enum Negotiated {
    Startup(StartupMessage),
    Cancel(i32, i32),
}

/// Reads packets until a StartupMessage or CancelRequest, answering SSLRequest (TLS per
/// `tls_mode`) and GSSENCRequest ('N'). A TLS handshake replaces `*stream` with the session;
/// when it fails, `*stream` becomes None.
async fn negotiate(
    ctx: &AppContext,
    stream: &mut Option<Stream>,
    buf: &mut BytesMut,
    peer: Peer,
) -> Result<Option<Negotiated>, doorman_wire::WireError> {
    let mut asked_tls = false;
    let mut refused_gss = false;
    loop {
        let Some(s) = stream.as_mut() else {
            return Ok(None);
        };
        let tls = (!s.is_tls() && matches!(s, Stream::Tcp(_)))
            .then(|| ctx.tls.acceptor())
            .flatten();
        let packet = read_packet(s, buf, tls.is_some() && !asked_tls).await?;
        let answer = match packet {
            None => return Ok(None),
            Some(Packet::DirectTls) => {
                // PostgreSQL 17 direct TLS: the ClientHello is already in `buf`.
                let early = buf.split();
                if !start_tls(ctx, stream, tls, &early, peer, true).await {
                    *stream = None;
                    return Ok(None);
                }
                asked_tls = true;
                continue;
            }
            Some(Packet::Startup(StartupPacket::SslRequest)) if !asked_tls => {
                asked_tls = true;
                if tls.is_some() { b"S" } else { b"N" }
            }
            Some(Packet::Startup(StartupPacket::GssEncRequest)) if !refused_gss => {
                refused_gss = true;
                b"N"
            }
            Some(Packet::Startup(StartupPacket::SslRequest | StartupPacket::GssEncRequest)) => {
                return Err(doorman_wire::WireError::Invalid(
                    "repeated negotiation request",
                ));
            }
            Some(Packet::Startup(StartupPacket::Cancel { pid, secret })) => {
                return Ok(Some(Negotiated::Cancel(pid, secret)));
            }
            Some(Packet::Startup(StartupPacket::Startup(m))) => {
                return Ok(Some(Negotiated::Startup(m)));
            }
        };
        if !buf.is_empty() {
            // Bytes sent before our answer would be processed unprotected (CVE-2021-23222 class).
            return Err(doorman_wire::WireError::Invalid(
                "data after negotiation request",
            ));
        }
        if s.write_all(answer).await.is_err() {
            return Ok(None);
        }
        if answer == b"S" && !start_tls(ctx, stream, tls, &[], peer, false).await {
            *stream = None;
            return Ok(None);
        }
    }
}

/// Runs the TLS handshake on the client's socket and puts the session in `*stream`. False when
/// it failed (logged; the socket is gone).
async fn start_tls(
    ctx: &AppContext,
    stream: &mut Option<Stream>,
    config: Option<Arc<rustls::ServerConfig>>,
    early: &[u8],
    peer: Peer,
    direct: bool,
) -> bool {
    let (Some(config), Some(Stream::Tcp(tcp))) = (config, stream.take()) else {
        return false;
    };
    ctx.tls.throttle().await;
    match TlsConn::accept(tcp, config, early).await {
        Ok(conn) => {
            // Direct TLS requires ALPN "postgresql" (PostgreSQL 17 refuses it otherwise).
            if direct && conn.alpn().as_deref() != Some(crate::tls::config::ALPN_POSTGRESQL) {
                tracing::warn!("client {peer}: direct TLS without ALPN \"postgresql\"; closing");
                conn.close();
                return false;
            }
            *stream = Some(Stream::Tls(Box::new(conn)));
            true
        }
        Err(e) => {
            tracing::warn!("client {peer}: TLS handshake failed: {e}");
            false
        }
    }
}

async fn login(
    ctx: &AppContext,
    stream: &mut Stream,
    buf: &mut BytesMut,
    msg: &StartupMessage,
    peer: Peer,
    method: Method,
) -> Result<(Arc<Pool>, ClientParams), Option<ErrorFields>> {
    let user = Some(msg.user()).filter(|u| !u.is_empty()).ok_or_else(|| {
        ErrorFields::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            "no PostgreSQL user name specified in startup packet",
        )
    })?;
    let database = msg.database();
    if msg.minor > 0 || !msg.protocol_options.is_empty() {
        let mut out = BytesMut::new();
        backend::write_negotiate_protocol_version(&mut out, &msg.protocol_options);
        stream.write_all(&out).await.map_err(|_| None)?;
    }
    if user == crate::talos::USER
        && let Some(talos) = ctx.talos.load_full()
    {
        // Talos first (PgDoorman's dispatch order): the token decides the pool user.
        let (pool, msg) = super::talos::login(ctx, &talos, stream, buf, msg, peer).await?;
        return login_params(pool, &msg, peer).await;
    }
    let pool = match ctx.pools.get(database, user) {
        Ok(pool) => {
            static_login(stream, buf, user, &pool, method, peer, database).await?;
            pool
        }
        // Users the file does not list are looked up when the pool section has an auth_query
        // (static users always win).
        Err(_) if let Some(aq) = ctx.pools.auth_query(database) => {
            dynamic_login(&aq, stream, buf, user, method, peer, database).await?
        }
        Err(l) => {
            let e = match l {
                Lookup::NoDatabase => ErrorFields::fatal(
                    sqlstate::INVALID_CATALOG_NAME,
                    format!("database \"{database}\" does not exist"),
                ),
                Lookup::NoUser => ErrorFields::fatal(
                    sqlstate::INVALID_AUTHORIZATION,
                    format!("role \"{user}\" does not exist"),
                ),
            };
            tracing::warn!(
                "client {peer}: {} (user {user:?}, database {database:?})",
                e.message
            );
            return Err(Some(e));
        }
    };
    login_params(pool, msg, peer).await
}

/// The session parameters of a client authenticated for `pool`, from its startup packet; a
/// value PostgreSQL refuses fails the login.
async fn login_params(
    pool: Arc<Pool>,
    msg: &StartupMessage,
    peer: Peer,
) -> Result<(Arc<Pool>, ClientParams), Option<ErrorFields>> {
    let defaults = pool.learn_default_params().await.map_err(|e| {
        tracing::warn!("client {peer}: {}: {e}", pool.name());
        Some(e.to_client())
    })?;
    let found = from_startup(&defaults, msg)?;
    if !found.needs_check {
        let params = found.into_params(&defaults, &pool);
        return Ok((pool, params));
    }
    // The check may canonicalise values: share the result, not the packet's spelling.
    let mut params = found.into_unshared(&defaults);
    check_params(&pool, &mut params).await?;
    params.wanted = pool.intern_params(params.wanted);
    params.extras = pool.intern_params(params.extras);
    Ok((pool, params))
}

/// Authenticates a user listed in the config against its configured secret.
async fn static_login(
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    pool: &Pool,
    method: Method,
    peer: Peer,
    database: &str,
) -> Result<(), Option<ErrorFields>> {
    match authenticate(stream, buf, user, &pool.settings.client_secret, method).await {
        Ok(client_key) => {
            if let Some(key) = client_key {
                pool.remember_client_key(key);
            }
            Ok(())
        }
        Err(AuthFailure::Gone) => Err(None),
        Err(AuthFailure::Reject(e)) => {
            tracing::warn!(
                "client {peer}: authentication failed for user {user:?} database {database:?}: {}",
                e.message
            );
            Err(Some(e))
        }
    }
}

/// Authenticates a user found by the pool section's auth_query and returns its dynamic pool.
/// A name PostgreSQL does not know gets the same exchange and the same 28P01 as a wrong
/// password (as PostgreSQL answers for a missing role), except under trust/peer, where there
/// is no password to fail: 28000 "role does not exist".
async fn dynamic_login(
    aq: &Arc<crate::auth_query::AuthQuery>,
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    method: Method,
    peer: Peer,
    database: &str,
) -> Result<Arc<Pool>, Option<ErrorFields>> {
    use crate::auth_query::Lookup as Found;
    let refuse = |e: ErrorFields| {
        tracing::warn!(
            "client {peer}: authentication failed for user {user:?} database {database:?}: {}",
            e.message
        );
        Some(e)
    };
    let (fetched, at) = match aq.lookup(user).await {
        Found::Found(f, at) => (f, at),
        Found::Failed => {
            aq.refused();
            return Err(refuse(ErrorFields::fatal(
                sqlstate::CONNECTION_FAILURE,
                format!("could not look up user \"{user}\": auth_query failed"),
            )));
        }
        Found::Nobody if matches!(method, Method::Trust | Method::Peer) => {
            aq.refused();
            return Err(refuse(ErrorFields::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                format!("role \"{user}\" does not exist"),
            )));
        }
        Found::Nobody => {
            aq.refused();
            let none = crate::pool::settings::ClientSecret::unguessable();
            return match authenticate(stream, buf, user, &none, method).await {
                Err(AuthFailure::Reject(e)) => Err(refuse(e)),
                Err(AuthFailure::Gone) | Ok(_) => Err(None),
            };
        }
    };
    match authenticate(stream, buf, user, &fetched.client, method).await {
        Ok(client_key) => {
            let pool = aq.pool_for(user, &fetched);
            if let Some(key) = client_key {
                pool.remember_client_key(key);
            }
            Ok(pool)
        }
        Err(AuthFailure::Gone) => Err(None),
        Err(AuthFailure::Reject(e)) => {
            if e.code == sqlstate::INVALID_PASSWORD {
                aq.password_failed(user, at);
            } else {
                aq.refused();
            }
            Err(refuse(e))
        }
    }
}

/// Applies the client's startup parameters on a backend once, so that invalid values fail the
/// login (as PostgreSQL would) and values come back in PostgreSQL's canonical spelling.
async fn check_params(pool: &Pool, params: &mut ClientParams) -> Result<(), ErrorFields> {
    // In session mode the backend checked here is idle and in line again when the client's own
    // is taken in `welcome`, so that costs no second SET.
    let server = take_backend(pool, params).await?;
    pool.checkin(server);
    Ok(())
}

/// A backend's SQLSTATE as a static code for our ErrorFields (unknown codes map to 22023).
fn code_of(code: &str) -> &'static str {
    ["22023", "42704", "55P02", "42501", "22P02", "0A000"]
        .into_iter()
        .find(|c| *c == code)
        .unwrap_or("22023")
}

fn write_parameter_statuses(out: &mut BytesMut, pool: &Pool, params: &ClientParams) {
    if let Some(defaults) = pool.default_params() {
        for (k, v) in defaults.iter() {
            let v = params.wanted.get(k).unwrap_or(v);
            backend::write_parameter_status(out, k, v);
        }
    }
}
