//! A logged-in client: waits for a request while holding no backend, checks one out (session
//! mode keeps it for the whole session), brings the backend's parameters in line, relays, and
//! returns or discards the backend depending on how the relay ended.

use super::login_params::ClientParams;
use super::sync::{in_sync, sync_params};
use crate::app::clients::{ClientInfo, Leave, state};
use crate::app::handoff::{Departure, Migrant};
use crate::clock::Micros;
use crate::config::PoolMode;
use crate::error::PoolError;
use crate::pool::Pool;
use crate::prepared::{self, ClientStatements};
use crate::relay::{Attachment, CLIENT_CHUNK, ClientIo, Outcome, ParamSink, Prep, relay};
use crate::server::Server;
use crate::sql_kind::{self, TxControl, dirt};
use bytes::{Buf, BytesMut};
use doorman_wire::frame::{MAX_MESSAGE_LEN, peek_header};
use doorman_wire::frontend::is_session_tag;
use doorman_wire::{ErrorFields, backend, sqlstate};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Longest the post-session reset (DISCARD ALL) may take before the backend is dropped instead.
const RESET_TIMEOUT: Duration = Duration::from_secs(5);

/// What the client wants next while it holds no backend.
enum Next {
    Request,
    Terminate,
    Gone,
    Protocol(String),
    /// The process asks the client to leave ([`Leave`]'s CLOSE or MIGRATE).
    Leave(u8),
}

/// One client between login and disconnect.
pub struct Session {
    io: ClientIo,
    params: ClientParams,
    /// The client's prepared statements (transaction mode); allocated on first use.
    statements: Option<Box<ClientStatements>>,
    /// A BEGIN answered without a backend (transaction mode), run on the backend the next
    /// statement gets.
    deferred_begin: Option<Box<str>>,
    /// The backend taken at login (session mode with `session_backend_pid`), until the
    /// first request attaches it.
    held: Option<Box<Server>>,
    /// Shown by SHOW CLIENTS.
    pub(super) info: Arc<ClientInfo>,
    /// Asked to migrate but cannot: ignore that request.
    stay: bool,
}

/// Displays as `[user@pool #cN]`.
pub struct Label<'a> {
    pool: &'a Pool,
    id: u64,
}

impl std::fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Piece by piece: this is in two log lines of every connection.
        let s = &self.pool.settings;
        f.write_str("[")?;
        f.write_str(&s.user)?;
        f.write_str("@")?;
        f.write_str(&s.database)?;
        f.write_str(" #c")?;
        f.write_str(itoa::Buffer::new().format(self.id))?;
        f.write_str("]")
    }
}

impl Session {
    /// A session for a logged-in client.
    pub fn new(
        io: ClientIo,
        params: ClientParams,
        info: Arc<ClientInfo>,
        held: Option<Box<Server>>,
    ) -> Self {
        Session {
            io,
            params,
            statements: None,
            deferred_begin: None,
            held,
            info,
            stay: false,
        }
    }

    /// Time since login.
    pub fn age(&self) -> std::time::Duration {
        self.info.connected.elapsed()
    }

    /// The `[user@pool #cN]` tag of this client's log lines (made when logged, so idle
    /// clients keep no string for it).
    pub fn label(&self) -> Label<'_> {
        Label {
            pool: &self.info.pool,
            id: self.info.id,
        }
    }

    /// Serves the client until it leaves (borrowing, so the session is stored once in the
    /// task). A draining process asks it to leave through its [`Leave`] signal, which it
    /// reads only while it holds no backend: then it is told 58006 and closed (shutdown) or
    /// returns its [`Departure`] for the new process (upgrade).
    pub async fn run(&mut self) -> Option<Departure> {
        loop {
            let next = self.wait_for_request().await;
            if matches!(next, Next::Leave(Leave::MIGRATE)) {
                match self.depart() {
                    Ok(d) => return Some(d),
                    Err(e) => {
                        // The socket could not be duplicated (out of descriptors): the client
                        // stays here until shutdown_timeout.
                        tracing::warn!("{} cannot migrate: {e}", self.label());
                        self.stay = true;
                        continue;
                    }
                }
            }
            // Boxed so that an idle client's task holds only the small wait state above; what
            // a request needs (the checkout/relay state machine) exists only while it runs.
            if !Box::pin(self.serve(next)).await {
                break;
            }
        }
        if let Some(server) = self.held.take() {
            // Left before its first request: the backend goes back like any session's.
            Box::pin(self.release_held(server)).await;
        }
        None
    }

    /// True when this client can move to a new process: a plain socket (a TLS session's keys
    /// cannot be carried) and no backend held.
    fn can_migrate(&self) -> bool {
        !self.stay && !self.io.stream.is_tls() && self.held.is_none()
    }

    /// What the new process needs to serve this client as before, and a duplicate of its
    /// socket. Errors: the duplicate could not be made.
    fn depart(&mut self) -> std::io::Result<Departure> {
        // Close-on-exec: only the SCM_RIGHTS message carries it to the new process.
        let fd = match &self.io.stream {
            crate::net::Stream::Tcp(s) => std::os::fd::AsFd::as_fd(s).try_clone_to_owned()?,
            crate::net::Stream::Unix(s) => std::os::fd::AsFd::as_fd(s).try_clone_to_owned()?,
            crate::net::Stream::Tls(_) => return Err(std::io::ErrorKind::Unsupported.into()),
        };
        let pairs = |p: &crate::params::ParamSet| -> Vec<(String, String)> {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let i = &self.info;
        let r = Ordering::Relaxed;
        let migrant = Migrant {
            id: i.id,
            secret: i.secret,
            user: i.pool.settings.user.clone(),
            database: i.pool.settings.database.clone(),
            peer: i.addr().to_string(),
            age_us: i.connected.elapsed().as_micros() as u64,
            startup: pairs(&i.params),
            startup_extras: pairs(&i.extras),
            wanted: pairs(&self.params.wanted),
            extras: pairs(&self.params.extras),
            deferred_begin: self.deferred_begin.as_deref().map(str::to_string),
            pending: self.io.buf.to_vec(),
            statements: self
                .statements
                .as_ref()
                .map(|s| s.export())
                .unwrap_or_default(),
            counters: [i.xacts.load(r), i.queries.load(r), i.errors.load(r)],
        };
        Ok(Departure { migrant, fd })
    }

    /// A migrated client's BEGIN that was answered but not yet run.
    pub fn set_deferred_begin(&mut self, begin: Option<String>) {
        self.deferred_begin = begin.map(String::into_boxed_str);
    }

    /// A migrated client's prepared statements.
    pub fn set_statements(&mut self, s: Option<Box<ClientStatements>>) {
        self.statements = s;
    }

    /// Returns a backend taken at login and never used.
    async fn release_held(&mut self, server: Box<Server>) {
        let at = Attachment::default();
        self.release_after_exit(server, &at).await;
    }

    /// Serves what the client sent; false when the session ends.
    async fn serve(&mut self, next: Next) -> bool {
        match next {
            Next::Request => {
                if let Some(out) = self.answer_locally() {
                    // Whatever follows in the buffer is the next request.
                    return self.io.stream.write_all(&out).await.is_ok();
                }
            }
            Next::Terminate | Next::Gone => return false,
            Next::Leave(_) => {
                let e = ErrorFields::fatal(sqlstate::POOLER_SHUTDOWN, "pooler is shut down now");
                self.fatal(e).await;
                return false;
            }
            Next::Protocol(msg) => {
                let e = ErrorFields::fatal(sqlstate::PROTOCOL_VIOLATION, msg);
                self.fatal(e).await;
                return false;
            }
        }
        self.transaction().await
    }

    /// Answers without a backend what needs none (transaction mode): Parse/Close…Sync of
    /// statements the pool knows, and a standalone BEGIN, deferred until the next statement
    /// (with COMMIT/ROLLBACK right after it answered too).
    fn answer_locally(&mut self) -> Option<BytesMut> {
        if self.info.pool.settings.mode != PoolMode::Transaction
            || self.io.scan.ready > 0
            || self.io.scan.skip > 0
        {
            return None;
        }
        let status = if self.deferred_begin.is_some() {
            b'T'
        } else {
            b'I'
        };
        if let Some(pool) = self.info.pool.statements.as_ref()
            && let Some(out) = prepared::answer_without_backend(
                &mut self.io.buf,
                pool,
                &mut self.statements,
                self.info.pool.settings.client_prepared_cache,
                status,
                self.info.parse_ctx.load(Ordering::Relaxed),
            )
        {
            return Some(out);
        }
        let (sql, len) = super::local_reply::simple_query(&self.io.buf)?;
        let (tag, status) = match (sql_kind::tx_control(sql), &self.deferred_begin) {
            (TxControl::Begin, None) => {
                let tag = super::local_reply::begin_tag(sql);
                self.deferred_begin = Some(std::str::from_utf8(sql).ok()?.into());
                (tag, b'T')
            }
            (TxControl::Commit, Some(_)) => ("COMMIT", b'I'),
            (TxControl::Rollback, Some(_)) => ("ROLLBACK", b'I'),
            _ => return None,
        };
        if status == b'I' {
            self.deferred_begin = None;
        }
        self.io.buf.advance(len);
        Some(super::local_reply::command_complete(tag, status))
    }

    /// Runs one request (transaction mode) or the rest of the session (session mode) on a
    /// backend. Returns false when the client is done.
    async fn transaction(&mut self) -> bool {
        let release_on_idle = self.info.pool.settings.mode == PoolMode::Transaction;
        let (mut server, attached) = match self.acquire().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("{} {e}", self.label());
                return Box::pin(self.reject_request(e.to_client())).await;
            }
        };
        if let Some(begin) = self.deferred_begin.take()
            && let Err(e) = Box::pin(server.simple_query(&begin, |_, _| {})).await
        {
            tracing::warn!("{} {e}", self.label());
            self.info.pool.discard(server);
            return Box::pin(self.reject_request(PoolError::Server(e).to_client())).await;
        }
        self.info
            .cancel
            .store(server.cancel_key(), Ordering::Release);
        self.attach(&server, Some(attached));
        let mut at = Attachment::new(attached, self.info.pool.settings.cleanup);
        at.track_pins = release_on_idle;
        if self.info.pool.statements.is_some() {
            at.track_ddl = true;
            at.parse_ctx = self.info.parse_ctx.load(Ordering::Relaxed);
        }
        at.track_settings = true;
        let log = self.info.pool.settings.log_param_changes;
        let outcome = loop {
            let mut sink = ParamSink {
                wanted: &mut self.params.wanted,
                log,
                pinned: Some(&self.info.pinned),
                // Session mode only: there the client keeps its backend between
                // transactions, so the relay is where it idles.
                leave: (!release_on_idle).then_some(&self.info.leave),
                stall_limit: self.info.pool.settings.client_stall_timeout,
            };
            let mut prep = self.info.pool.statements.as_ref().map(|pool| Prep {
                pool,
                client: &mut self.statements,
                client_cap: self.info.pool.settings.client_prepared_cache,
                max_memory: self.info.pool.settings.max_memory,
            });
            let outcome = relay(
                &mut self.io,
                server.backend(),
                &mut at,
                release_on_idle,
                &mut sink,
                prep.as_mut(),
            )
            .await;
            if at.resets == 0 || !matches!(outcome, Outcome::Released) {
                break outcome;
            }
            // Boxed: rare (a RESET of a tracked parameter).
            let resets = at.resets;
            if !Box::pin(self.restore_startup(&mut server, resets, release_on_idle)).await {
                break Outcome::ServerGone(std::io::ErrorKind::BrokenPipe.into());
            }
            at.params_changed = true;
            if release_on_idle {
                break outcome;
            }
            at.parse_ctx = crate::params::parse_context(&self.params.wanted);
            at.resume();
        };
        // SeqCst: pairs with the cancel forward's re-check (client::cancel) so that either it
        // sees the backend given up or the checkin sees its cancel in flight.
        self.info.cancel.store(0, Ordering::SeqCst);
        self.attach(&server, None);
        if at.params_changed {
            // Derived from the wishes as they stand now (a RESET may have put startup values
            // back after the relay's last ParameterStatus).
            let ctx = crate::params::parse_context(&self.params.wanted);
            self.info.parse_ctx.store(ctx, Ordering::Relaxed);
        }
        if at.pins.any() {
            self.info.pinned.store(false, Ordering::Relaxed);
        }
        if at.schema_changed
            && let Some(cache) = self.info.pool.statements.as_ref()
        {
            cache.new_epoch();
        }
        let ended = at.last_end.unwrap_or_else(Micros::now);
        self.record(&server, &at.tally, ended.us_since(attached));
        let answered = (at.tally.queries as usize).min(at.query_us.len());
        for us in &at.query_us[..answered] {
            self.info.pool.stats.query_hist.record_us(u64::from(*us));
        }
        if at.reserved > 0 {
            crate::memory::release(at.reserved);
            at.reserved = 0;
        }
        if at.params_changed {
            server.synced = None;
        }
        if at.flushed {
            self.info.flushed.store(true, Ordering::Relaxed);
        }
        let mut linger = false;
        match outcome {
            Outcome::Released => {
                // Boxed: rare (a session-level SET or RESET ALL in transaction mode).
                if (!at.set_names.is_empty() || at.session_reset)
                    && !Box::pin(self.carry_settings(&mut server, &at)).await
                {
                    self.info.pool.discard(server);
                    return true;
                }
                if !needs_tidy(&server, &at) || Box::pin(tidy(&mut server, &at)).await {
                    self.info.pool.checkin_at(server, ended);
                } else {
                    self.info.pool.discard(server);
                }
                return true;
            }
            Outcome::Terminated | Outcome::ClientGone => {}
            // The client is closed and its backend, stopped mid-reply, is closed below (the
            // pool opens another): PgDoorman ends such a client the same way.
            Outcome::ClientStalled => {
                tracing::warn!(
                    "{} client took no data for proxy_copy_data_timeout; closing it",
                    self.label()
                );
                let _ = self.io.stream.close_with_fin();
            }
            // A drain, while the client was idle on the backend it keeps: the backend goes
            // back (session mode resets it), the client is told 58006.
            Outcome::Leave => {
                let e = ErrorFields::fatal(sqlstate::POOLER_SHUTDOWN, "pooler is shut down now");
                self.send_fatal(e).await;
                linger = true;
            }
            // The backend goes back first; the client is then given time to read its FATAL.
            Outcome::OverMemory => {
                tracing::warn!("{} message would pass max_memory_usage", self.label());
                let e = ErrorFields::fatal(
                    sqlstate::OUT_OF_MEMORY,
                    "out of memory: the message would pass max_memory_usage of the pooler",
                );
                self.send_fatal(e).await;
                linger = true;
            }
            Outcome::ClientProtocol(e) => {
                let e = ErrorFields::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string());
                self.send_fatal(e).await;
                linger = true;
            }
            Outcome::ServerGone(e) => {
                tracing::warn!("{} server connection lost: {e}", self.label());
                server.bad = true;
                self.info.pool.discard(server);
                if at.server_fatal {
                    // The client has the backend's own FATAL (57P01 and the like): end the
                    // connection as PostgreSQL does, without a second error.
                    let _ = self.io.stream.close_with_fin();
                    return false;
                }
                let e = ErrorFields::fatal(sqlstate::CONNECTION_FAILURE, "server connection lost");
                self.fatal(e).await;
                return false;
            }
        }
        // Boxed: the client is gone; this rare path must not enlarge every request's state.
        Box::pin(self.release_after_exit(server, &at)).await;
        if linger {
            Box::pin(self.linger()).await;
        }
        false
    }

    /// Transaction mode: settings the client changed at session level (untracked ones, by
    /// name) are read back from the backend and become part of the client's wishes, so they are
    /// SET on every backend it uses next, as if it had one session; RESET ALL / DISCARD ALL
    /// return to the startup packet's settings. False when the backend failed.
    async fn carry_settings(&mut self, server: &mut Server, at: &Attachment) -> bool {
        if at.session_reset {
            self.params.extras = self.info.extras.clone();
            server.clear_extras();
        }
        for name in &at.set_names {
            let sql = format!(
                "SELECT current_setting('{}', true)",
                name.replace('\'', "''")
            );
            let read = tokio::time::timeout(RESET_TIMEOUT, server.query_value(&sql)).await;
            let Ok(read) = read else {
                tracing::warn!("{} reading {name} back timed out", self.label());
                return false;
            };
            match read {
                Ok(Some(Some(v))) => {
                    server.extras.set(name, &v);
                    self.params.extras.set(name, &v);
                }
                Ok(_) => self.params.extras.remove(name),
                Err(e) => {
                    tracing::warn!("{} {e}", self.label());
                    return false;
                }
            }
        }
        server.synced = None;
        true
    }

    /// After a RESET of tracked parameters: PostgreSQL returns them to the session's startup
    /// values, a pooled backend to its own. Puts the client's startup values back in its
    /// wishes and tells the client (ParameterStatus after the ReadyForQuery it has, as
    /// PostgreSQL may send them at any time); in session mode (`released` false) the backend is
    /// brought in line at once, in transaction mode at the next checkout. False when the
    /// backend failed.
    async fn restore_startup(&mut self, server: &mut Server, resets: u16, released: bool) -> bool {
        let changed = self.params.restore(&self.info.params, resets);
        if changed.is_empty() {
            return true;
        }
        server.synced = None;
        if !released {
            let synced =
                tokio::time::timeout(RESET_TIMEOUT, sync_params(server, &mut self.params)).await;
            match synced {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!("{} {e}", self.label());
                    return false;
                }
                Err(_) => {
                    tracing::warn!("{} restoring startup parameters timed out", self.label());
                    return false;
                }
            }
        }
        let mut out = BytesMut::new();
        for (k, v) in &changed {
            backend::write_parameter_status(&mut out, k, v);
        }
        // A client that is gone shows up at its next read.
        let _ = self.io.stream.write_all(&out).await;
        true
    }

    /// Marks the client as holding `server` (or not) for SHOW CLIENTS / SERVERS / POOLS.
    /// `at` is the attachment time (`None` when detaching).
    fn attach(&self, server: &Server, at: Option<Micros>) {
        let r = Ordering::Relaxed;
        let on = at.is_some();
        let pid = match at {
            Some(t) => {
                self.info.set_state_at(state::ACTIVE, t);
                server.backend_pid
            }
            None => {
                self.info.set_state(state::IDLE);
                0
            }
        };
        self.info.server_pid.store(pid, r);
        if let Some(reg) = &server.reg {
            reg.info.active.store(on, r);
            reg.info
                .client
                .store(if on { self.info.id as i32 } else { 0 }, r);
        }
        self.info.pool.stats.set_active(on);
    }

    /// Adds what one attachment (held for `held_us` µs) did to the pool, backend and client
    /// totals.
    fn record(&self, server: &Server, t: &crate::pool::stats::Tally, held_us: u64) {
        let r = Ordering::Relaxed;
        let stats = &self.info.pool.stats;
        if self.info.pool.settings.mode == PoolMode::Transaction {
            stats.add(t, Some(held_us));
            stats.xact_hist.record_us(held_us);
        } else {
            stats.add(t, None);
        }
        if let Some(reg) = &server.reg {
            reg.add(t);
            let p = &server.conv.statements;
            // Only this attachment writes the backend's figures; the pool totals get the
            // difference, so they stay monotonic when backends close.
            let hits = reg.info.prepared_hits.load(r);
            if p.hits > hits {
                reg.info.prepared_hits.store(p.hits, r);
                stats.prepared_hits.fetch_add(p.hits - hits, r);
            }
            let misses = reg.info.prepared_misses.load(r);
            if p.misses > misses {
                reg.info.prepared_misses.store(p.misses, r);
                stats.prepared_misses.fetch_add(p.misses - misses, r);
            }
            reg.info.prepared_size.store(p.len(), r);
        }
        // The client's own figures have one writer, this task: load and store, no lock prefix.
        let i = &self.info;
        i.xacts.store(i.xacts.load(r).wrapping_add(t.xacts), r);
        i.queries
            .store(i.queries.load(r).wrapping_add(t.queries), r);
        let errors: u32 = t.errors.iter().sum();
        if errors > 0 {
            i.errors.store(i.errors.load(r).wrapping_add(errors), r);
        }
    }

    /// Sends `e` as FATAL and ends the connection so the client can read it.
    async fn fatal(&mut self, e: ErrorFields) {
        self.send_fatal(e).await;
        Box::pin(self.linger()).await;
    }

    async fn send_fatal(&mut self, e: ErrorFields) {
        // Boxed: a rare path whose write state must not enlarge every idle client's task.
        Box::pin(self.io.stream.send_fatal(e)).await;
    }

    /// Lets a client that may still be sending read the FATAL it was sent (see
    /// [`crate::net::Stream::linger`]): at most 1 s and 16 MiB of what it sends meanwhile.
    async fn linger(&self) {
        let wait = std::time::Duration::from_secs(1);
        self.io.stream.linger(wait, 16 << 20).await;
    }

    /// Checks out a backend in line with the client's parameters; returns it with the time it
    /// was attached (two clock readings per request: arrival and attachment).
    async fn acquire(&mut self) -> Result<(Box<Server>, Micros), PoolError> {
        if let Some(server) = self.held.take() {
            return Ok((server, Micros::now()));
        }
        let stats = &self.info.pool.stats;
        let started = Micros::now();
        self.info.set_state_at(state::WAITING, started);
        if stats.paused.load(Ordering::Relaxed) {
            Box::pin(self.info.pool.wait_resumed()).await;
        }
        let checked = self.info.pool.checkout_since(started).await;
        let attached = Micros::now();
        let waited = attached.us_since(started);
        stats.add_wait(waited);
        stats.wait_hist.record_us(waited);
        self.info.set_state(state::IDLE);
        let mut server = checked?;
        if in_sync(&server, &self.params) {
            return Ok((server, attached));
        }
        // Boxed: a SET round trip is rare (first use of a backend by a parameter set).
        match Box::pin(sync_params(&mut server, &mut self.params)).await {
            Ok(None) => Ok((server, attached)),
            Ok(Some(e)) => {
                // Values were validated at login; a failure now is logged and the backend used as is.
                tracing::warn!(
                    "{} could not apply session parameters: {}",
                    self.label(),
                    e.message
                );
                Ok((server, attached))
            }
            Err(e) => {
                self.info.pool.discard(server);
                Err(PoolError::Server(e))
            }
        }
    }

    /// Waits, holding no backend and (when idle) no read buffer, until a request, Terminate or EOF.
    async fn wait_for_request(&mut self) -> Next {
        loop {
            let io = &mut self.io;
            if io.scan.ready > 0 || io.scan.skip > 0 {
                return Next::Request;
            }
            match peek_header(&io.buf, MAX_MESSAGE_LEN) {
                Ok(Some(h)) if h.tag == b'X' => return Next::Terminate,
                Ok(Some(h)) if !is_session_tag(h.tag) => {
                    return Next::Protocol(format!("invalid frontend message type {}", h.tag));
                }
                Ok(Some(_)) => return Next::Request,
                Ok(None) => {}
                Err(e) => return Next::Protocol(e.to_string()),
            }
            if io.buf.is_empty() && io.buf.capacity() > 0 {
                // Idle clients keep no buffer: that is what makes thousands of them cheap.
                crate::net::give_buffer(std::mem::take(&mut io.buf), CLIENT_CHUNK);
            }
            // Waits for the socket or the process's leave request; a client that cannot
            // migrate ignores MIGRATE and waits on. (Only `this` is kept across the wait: every
            // idle client's task holds this state.)
            let this = &*self;
            let woke = std::future::poll_fn(|cx| {
                let ignored = if this.can_migrate() {
                    Leave::STAY
                } else {
                    Leave::MIGRATE
                };
                if let std::task::Poll::Ready(v) = this.info.leave.poll(cx, ignored) {
                    return std::task::Poll::Ready(Err(v));
                }
                this.io.stream.poll_read_ready(cx).map(Ok)
            })
            .await;
            match woke {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Next::Gone,
                Err(v) => return Next::Leave(v),
            }
            let io = &mut self.io;
            match io.stream.read_now(&mut io.buf, CLIENT_CHUNK) {
                Ok(0) => return Next::Gone,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Next::Gone,
            }
        }
    }

    /// Answers the buffered request with `e` instead of running it. If the request is complete
    /// (ends in Query/Sync/FunctionCall), its messages are dropped and ReadyForQuery follows, so
    /// the client stays usable; returns false when the session must end.
    async fn reject_request(&mut self, mut e: ErrorFields) -> bool {
        // The transaction the client believed open (deferred BEGIN) ends with the error.
        self.deferred_begin = None;
        let end = request_end(&self.io.buf);
        let mut out = BytesMut::with_capacity(128);
        if end.is_none() || e.severity == doorman_wire::fields::Severity::Fatal {
            e.severity = doorman_wire::fields::Severity::Fatal;
            e.write(&mut out);
            let _ = self.io.stream.write_all(&out).await;
            return false;
        }
        e.write(&mut out);
        backend::write_ready_for_query(&mut out, b'I');
        if let Some(end) = end {
            self.io.buf.advance(end);
        }
        self.io.stream.write_all(&out).await.is_ok()
    }

    /// Returns the backend after the client left: clean ones go back (session mode resets them
    /// with DISCARD ALL first); anything mid-transaction or mid-message is closed.
    async fn release_after_exit(&mut self, mut server: Box<Server>, at: &Attachment) {
        // Nobody is left to receive replies the pooler would have made up.
        server.conv.drop_synthetic();
        if !server.is_reusable() {
            let recovered = if server.conv.only_unsynced(&self.io.scan) {
                let tracked = self.info.pool.statements.is_some();
                let r = tokio::time::timeout(RESET_TIMEOUT, server.resync(tracked)).await;
                matches!(r, Ok(Ok(true)))
            } else if server.conv.only_in_transaction(&self.io.scan) {
                // A client that leaves inside a transaction: PostgreSQL would roll it back.
                let r =
                    tokio::time::timeout(RESET_TIMEOUT, server.simple_query("ROLLBACK", |_, _| {}))
                        .await;
                matches!(r, Ok(Ok(None))) && server.is_reusable()
            } else {
                false
            };
            if !recovered {
                server.bad = true;
                return self.info.pool.discard(server);
            }
        }
        if !tidy(&mut server, at).await {
            return self.info.pool.discard(server);
        }
        if self.info.pool.settings.mode == PoolMode::Session {
            let reset =
                tokio::time::timeout(RESET_TIMEOUT, server.simple_query("DISCARD ALL", |_, _| {}))
                    .await;
            match reset {
                Ok(Ok(None)) => server.clear_extras(),
                _ => server.bad = true,
            }
        }
        self.info.pool.checkin(server);
    }
}

/// True when [`tidy`] has something to undo (rare: most transactions leave nothing behind).
fn needs_tidy(server: &Server, at: &Attachment) -> bool {
    at.dirty != 0 || at.session_reset || server.conv.must_reset
}

/// Undoes what a client changed behind the pooler's back before the backend is reused: settings
/// the pooler applied are gone after DISCARD ALL / RESET ALL, and statements may be gone after a
/// DEALLOCATE/DISCARD the pooler could not follow. False when the backend must be closed.
async fn tidy(server: &mut Server, at: &Attachment) -> bool {
    if at.dirty != 0 {
        let sql = sql_kind::reset_sql(at.dirty);
        let reset = tokio::time::timeout(RESET_TIMEOUT, server.simple_query(&sql, |_, _| {})).await;
        if !matches!(reset, Ok(Ok(None))) {
            server.bad = true;
            return false;
        }
        if at.dirty & dirt::PREPARE != 0 {
            // DEALLOCATE ALL took the pooler's statements with it.
            server.conv.forget_statements();
        }
    }
    if at.session_reset || at.dirty & dirt::SET != 0 {
        server.clear_extras();
        server.synced = None;
    }
    if server.conv.must_reset {
        let reset = tokio::time::timeout(RESET_TIMEOUT, server.reset_statements()).await;
        if !matches!(reset, Ok(Ok(true))) {
            server.bad = true;
            return false;
        }
    }
    true
}

/// Offset just past the first Query/Sync/FunctionCall frame in `buf`, if complete.
fn request_end(buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    while let Ok(Some(h)) = peek_header(&buf[pos..], MAX_MESSAGE_LEN) {
        if buf.len() - pos < h.frame_len() {
            return None;
        }
        pos += h.frame_len();
        if matches!(h.tag, b'Q' | b'S' | b'F') {
            return Some(pos);
        }
    }
    None
}
