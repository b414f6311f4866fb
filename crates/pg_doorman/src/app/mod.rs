//! Process assembly: builds pools from the config, binds the listener, runs the retain cycle
//! and waits for shutdown. Phases: starting (here) → running (accept loop) → stopped.

pub mod clients;
pub mod context;
pub mod control;
pub mod daemon;
pub mod fds;
pub mod handoff;
pub mod lifecycle;
pub mod limits;
pub mod notify;
pub mod signals;
pub mod upgrade;

use crate::config::Config;
use crate::pool::settings;
use context::AppContext;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why the process could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A TLS certificate, key or CA file could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// The pg_hba rules could not be read.
    #[error("{0}")]
    Access(String),
    /// The listening socket could not be opened (the OS error is the source, which
    /// `{:#}` prints after the address).
    #[error("cannot listen on {addr}")]
    Listen {
        /// host:port.
        addr: String,
        /// OS error.
        source: std::io::Error,
    },
}

/// How this process came to be and what its lifecycle needs: the sockets an upgrading parent
/// passed (`--inherit-fd`, `PG_DOORMAN_WEB_FD`, `PG_DOORMAN_UNIX_FD`, `PG_DOORMAN_UPGRADE_FD`), the executable and
/// command line to start on upgrade, the daemon's pid file and start-up pipe.
#[derive(Default)]
pub struct Boot {
    /// The main listening socket, inherited.
    pub listener: Option<std::os::fd::OwnedFd>,
    /// The metrics listening socket, inherited.
    pub web: Option<std::os::fd::OwnedFd>,
    /// The unix listening socket, inherited.
    pub unix: Option<std::os::fd::OwnedFd>,
    /// The parent's end of the client handoff (we are an upgrade's child).
    pub upgrade: Option<std::os::fd::OwnedFd>,
    /// Client ids start above this (ids the parent's clients hold).
    pub first_id: Option<i32>,
    /// Executable to start on upgrade.
    pub exe: Option<std::path::PathBuf>,
    /// Its arguments.
    pub args: Vec<std::ffi::OsString>,
    /// Pid file to write once the listener is up (`--daemon`, or taken over from the parent).
    pub pid_file: Option<std::path::PathBuf>,
    /// The waiting parent of `--daemon`.
    pub daemon: Option<daemon::Ready>,
    /// Signal handlers, registered before the listener opens.
    pub signals: Option<signals::Signals>,
}

/// Turns an inherited listening socket into a tokio listener.
fn inherited_listener(fd: std::os::fd::OwnedFd) -> std::io::Result<tokio::net::TcpListener> {
    let l = std::net::TcpListener::from(fd);
    l.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(l)
}

/// The unix listening socket (`general.unix_socket_dir`) and its path: the one an upgrading
/// parent passed, else bound now; None without a unix_socket_dir.
fn unix_listener(
    g: &crate::config::General,
    inherited: Option<std::os::fd::OwnedFd>,
    backlog: u32,
) -> Result<Option<(tokio::net::UnixListener, std::path::PathBuf)>, StartError> {
    let Some(path) = g.unix_socket_path() else {
        return Ok(None);
    };
    let listen_err = |source| StartError::Listen {
        addr: path.display().to_string(),
        source,
    };
    let l = match inherited {
        Some(fd) => {
            let l = std::os::unix::net::UnixListener::from(fd);
            l.set_nonblocking(true).map_err(listen_err)?;
            tokio::net::UnixListener::from_std(l).map_err(listen_err)?
        }
        None => {
            let mode = g.unix_socket_mode().map_err(StartError::Access)?;
            crate::listener::bind_unix(&path, mode, backlog).map_err(listen_err)?
        }
    };
    Ok(Some((l, path)))
}

/// Runs pg_doorman with `config` until `shutdown` is cancelled (by the lifecycle controller:
/// a drain that ended, an upgrade that handed everything over, or an immediate stop).
/// `hup` is notified on SIGHUP: the config and TLS material are re-read then.
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    hup: Arc<tokio::sync::Notify>,
    mut boot: Boot,
) -> Result<(), StartError> {
    let config = Arc::new(config);
    let (resolved, derived) = {
        let c = config.clone();
        // PBKDF2 for plaintext passwords: keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            let derived = settings::Derived::default();
            derived.resolve(&c).map(|resolved| (resolved, derived))
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
        .map_err(StartError::Tls)?
    };
    let tls = crate::config::tls::client_tls(&config.general)
        .map_err(|e| StartError::Tls(format!("general: {e}")))?;
    let access = config.general.access_rules().map_err(StartError::Access)?;
    let g = &config.general;
    let backends: usize = resolved.pools.iter().map(|p| p.pool_size).sum();
    limits::raise_nofile(g.max_connections, backends);
    let addr = format!("{}:{}", g.host, g.port);
    let backlog = if g.backlog == 0 {
        g.max_connections.min(u32::MAX as usize) as u32
    } else {
        g.backlog
    };
    // Bound before the main listener, so a pg_doorman that accepts clients also serves /metrics.
    let metrics_listener = if config.web.enabled {
        let web = format!("{}:{}", config.web.host, config.web.port);
        let l = match boot.web.take() {
            Some(fd) => inherited_listener(fd),
            None => tokio::net::TcpListener::bind(&web).await,
        }
        .map_err(|source| StartError::Listen {
            addr: web.clone(),
            source,
        })?;
        Some((l, web))
    } else {
        None
    };
    let tcp = settings::tcp_options(&config);
    let inherited = boot.listener.is_some();
    let listener = match boot.listener.take() {
        Some(fd) => inherited_listener(fd),
        None => crate::listener::bind(&g.host, g.port, backlog, &tcp).await,
    }
    .map_err(|source| StartError::Listen {
        addr: addr.clone(),
        source,
    })?;
    if inherited
        && let Ok(a) = listener.local_addr()
        && a.port() != g.port
    {
        // The socket is handed over as it is (that is what keeps connections from being
        // refused); a new address needs a restart, as for a reload.
        tracing::warn!(
            "general.port is {} but the inherited listening socket is {a}: restart to move it",
            g.port
        );
    }
    let unix = unix_listener(g, boot.unix.take(), backlog)?;
    // Duplicates kept for a later upgrade's child (the accept loop owns the originals);
    // close-on-exec, so no process we start inherits them by accident.
    let fds = {
        use std::os::fd::AsFd;
        let dup = |fd: Option<std::os::fd::BorrowedFd<'_>>| {
            fd.map(|f| f.try_clone_to_owned()).transpose()
        };
        let kept = (|| {
            Ok::<_, std::io::Error>(lifecycle::ListenFds {
                main: dup(Some(listener.as_fd()))?,
                web: dup(metrics_listener.as_ref().map(|(l, _)| l.as_fd()))?,
                unix: dup(unix.as_ref().map(|(l, _)| l.as_fd()))?,
            })
        })();
        kept.unwrap_or_else(|e| {
            tracing::warn!("cannot keep the listening sockets for an upgrade: {e}");
            Default::default()
        })
    };
    let lifecycle = lifecycle::Lifecycle::new(
        boot.exe.take(),
        std::mem::take(&mut boot.args),
        boot.pid_file.clone(),
        fds,
    );
    let ctx = Arc::new(AppContext::new(
        config.clone(),
        resolved,
        derived,
        shutdown.clone(),
        tls,
        hup,
        lifecycle,
    ));
    if let Some(id) = boot.first_id {
        ctx.client_list.ids_from(id);
    }
    if let Some(rules) = access {
        tracing::info!("client access: {} pg_hba rules", rules.len());
        ctx.hba.store(Some(Arc::new(rules)));
    }
    tracing::info!(
        "pg_doorman {} listening on {addr} ({} pools)",
        env!("CARGO_PKG_VERSION"),
        ctx.pools.all().len()
    );
    let tracker = TaskTracker::new();
    if let Some((l, web)) = metrics_listener {
        tracing::info!("metrics on http://{web}/metrics");
        tracker.spawn(crate::metrics::serve(l, ctx.clone()));
    }
    tracker.spawn(retain_cycle(ctx.clone()));
    tracker.spawn(reload_on_hup(ctx.clone()));
    tracker.spawn(stats_log(ctx.clone()));
    // Prewarm min_pool_size in the background: serving starts at once.
    let warm = ctx.clone();
    tracker.spawn(async move {
        for p in &warm.pools.all() {
            let n = p.replenish().await;
            if n > 0 {
                tracing::info!(pool = %p.name(), "prewarmed {n} server connections (min_pool_size)");
            }
        }
    });
    // The accept loop runs on a worker, not on this thread (the one that called `block_on`,
    // outside the multi-threaded scheduler): there, every accept cost a wake-up of this thread
    // by the worker holding the I/O driver and a hand-off of the new client's task back to a
    // worker (about 4 futex calls and 3 context switches per connection).
    let unix_path = unix.as_ref().map(|(_, p)| p.clone());
    if let Some((l, path)) = unix {
        tracing::info!("listening on unix socket {}", path.display());
        let buffers = g.unix_socket_buffer_size.0;
        tokio::spawn(crate::listener::serve(
            crate::listener::Listener::Unix(l, buffers),
            ctx.clone(),
            tracker.clone(),
        ));
    }
    let accept = tokio::spawn(crate::listener::serve(
        crate::listener::Listener::Tcp(listener),
        ctx.clone(),
        tracker.clone(),
    ));
    if let Some(s) = boot.signals.take() {
        tokio::spawn(control::control(ctx.clone(), s));
    }
    // Listener up, pools built: tell whoever waits (the upgrading parent, systemd, the
    // daemon's parent) and take over the pid file.
    let _pid_file = match boot.pid_file.as_deref() {
        Some(p) => match daemon::PidFile::write(p) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::error!("{e:#}");
                None
            }
        },
        None => None,
    };
    match boot.upgrade.take() {
        Some(fd) => {
            tokio::spawn(upgrade::serve_predecessor(
                ctx.clone(),
                fd,
                crate::client::migrate::arrive,
            ));
        }
        None => notify::ready(),
    }
    if let Some(mut d) = boot.daemon.take() {
        d.done();
    }
    if let Err(e) = accept.await {
        tracing::error!("accept loop failed: {e}");
    }
    // Stopped accepting: a drain or an upgrade runs until it cancels `shutdown`.
    ctx.shutdown.cancelled().await;
    let in_use = ctx.client_list.len();
    tracing::info!("shutting down: {in_use} clients connected");
    // The new process of an upgrade listens on the same socket file: it stays.
    if let Some(p) = unix_path
        && ctx.lifecycle.phase() != lifecycle::phase::MIGRATING
        && let Err(e) = std::fs::remove_file(&p)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("cannot remove {}: {e}", p.display());
    }
    for p in &ctx.pools.all() {
        p.close_idle();
    }
    tracker.close();
    // Sessions see the token and end; give them a moment to write their goodbye.
    let _ = tokio::time::timeout(std::time::Duration::from_millis(500), tracker.wait()).await;
    Ok(())
}

/// SIGHUP: re-reads the config file (pools, users, passwords, pg_hba rules) and TLS
/// certificates, keys and CA bundles (client side and every pool's backend side). New
/// handshakes and logins use them; established sessions keep theirs. Anything that fails to
/// load leaves the previous configuration or material in use.
async fn reload_on_hup(ctx: Arc<AppContext>) {
    loop {
        tokio::select! {
            _ = ctx.hup.notified() => {}
            _ = ctx.shutdown.cancelled() => return,
        }
        tracing::info!("SIGHUP: reloading pools, pg_hba rules and TLS certificates");
        notify::reloading();
        reload_config(ctx.clone()).await;
        match ctx.tls.reload() {
            Ok(true) => tracing::info!("client TLS certificate reloaded"),
            Ok(false) => {}
            Err(e) => tracing::error!("client TLS reload failed, keeping the old certificate: {e}"),
        }
        let mut seen = std::collections::HashSet::new();
        for p in &ctx.pools.all() {
            let tls = &p.settings.tls;
            if !seen.insert(Arc::as_ptr(tls) as usize) {
                continue;
            }
            match tls.reload() {
                Ok(true) => tracing::info!("{}: server TLS material reloaded", p.settings.database),
                Ok(false) => {}
                Err(e) => tracing::error!(
                    "{}: server TLS reload failed, keeping the old material: {e}",
                    p.settings.database
                ),
            }
        }
        notify::ready();
    }
}

/// Re-reads the config file: pools (added, removed, changed; unchanged ones keep their
/// connections) and the pg_hba (or hba) rules. A file that does not load or validate changes
/// nothing. Listener, TLS-mode and other process-wide keys need a restart.
async fn reload_config(ctx: Arc<AppContext>) {
    let Some(path) = ctx.config.source.clone() else {
        return;
    };
    // PBKDF2 for new plaintext passwords: off the async workers.
    let c = ctx.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let config = crate::config::load(&path).map_err(|e| e.to_string())?;
        let access = config.general.access_rules()?;
        let resolved = c.derived.resolve(&config)?;
        Ok::<_, String>((access, resolved, config))
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    let (access, resolved, config) = match loaded {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("reload failed, keeping the running configuration: {e}");
            return;
        }
    };
    for w in &config.warnings {
        tracing::warn!("config: {w}");
    }
    match access {
        Some(r) => {
            tracing::info!("client access: {} pg_hba rules loaded", r.len());
            ctx.hba.store(Some(Arc::new(r)));
        }
        None => {
            if ctx.hba.swap(None).is_some() {
                tracing::info!("client access: pg_hba rules removed");
            }
        }
    }
    let r = ctx.pools.reload(resolved.pools, resolved.auth_queries);
    ctx.talos.store(resolved.talos);
    ctx.admin.store(Arc::new((
        config.general.admin_username.clone(),
        resolved.admin,
    )));
    ctx.reloaded.store(Some(Arc::new(config)));
    tracing::info!(
        "pools reloaded: {} kept, {} added, {} changed, {} removed",
        r.kept,
        r.added,
        r.changed,
        r.removed
    );
}

/// Period of the stats log line (PgBouncer's stats_period); `PG_DOORMAN_STATS_PERIOD_MS`
/// overrides it (tests).
fn stats_period() -> std::time::Duration {
    std::env::var("PG_DOORMAN_STATS_PERIOD_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(std::time::Duration::from_millis)
        .unwrap_or(std::time::Duration::from_secs(60))
}

/// Every stats period, one logfmt line per pool that did something: rates over the period and
/// averages, as PgBouncer's periodic stats line.
async fn stats_log(ctx: Arc<AppContext>) {
    use std::sync::atomic::Ordering::Relaxed;
    let period = stats_period();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut last: std::collections::HashMap<String, [u64; 6]> = Default::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = ctx.shutdown.cancelled() => return,
        }
        let secs = period.as_secs_f64().max(0.001);
        for p in &ctx.pools.all() {
            let s = &p.stats;
            let now = [
                s.xacts(),
                s.queries(),
                s.received(),
                s.sent(),
                s.xact_us(),
                s.wait_us(),
            ];
            let prev = last.insert(p.name(), now).unwrap_or_default();
            let d: Vec<u64> = now.iter().zip(prev).map(|(a, b)| a - b).collect();
            if d[1] == 0 {
                continue;
            }
            let c = p.counts();
            tracing::info!(
                "stats pool={} xact_per_s={:.0} query_per_s={:.0} in_bytes_per_s={:.0} out_bytes_per_s={:.0} avg_xact_us={} avg_wait_us={} clients={} servers={} idle_servers={} uptime={}",
                p.name(),
                d[0] as f64 / secs,
                d[1] as f64 / secs,
                d[2] as f64 / secs,
                d[3] as f64 / secs,
                d[4].checked_div(d[0]).unwrap_or(0),
                d[5].checked_div(d[1]).unwrap_or(0),
                s.clients.load(Relaxed),
                c.sv_total,
                c.sv_idle,
                crate::logging::human(ctx.started.elapsed()),
            );
        }
    }
}

async fn retain_cycle(ctx: Arc<AppContext>) {
    let every = ctx.config.general.retain_connections_time.0;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = ctx.shutdown.cancelled() => return,
        }
        // Before the pools are listed: the list's references would count as clients.
        for a in ctx.pools.auth_queries() {
            let gone = a.collect_idle(std::time::Instant::now());
            if gone > 0 {
                tracing::info!(
                    "auth_query {}: {gone} idle dynamic pool(s) removed",
                    a.settings.database
                );
            }
        }
        // retain_connections_max caps closes per cycle across pools; pools are visited in a
        // new random order each cycle so none is always last.
        let max = ctx.config.general.retain_connections_max;
        let mut quota = if max == 0 { usize::MAX } else { max };
        let mut pools: Vec<_> = ctx.pools.all();
        for i in (1..pools.len()).rev() {
            pools.swap(i, rand::random_range(0..=i));
        }
        for p in &pools {
            if quota == 0 {
                break;
            }
            let closed = p.retain(quota);
            quota -= closed;
            if closed > 0 {
                tracing::debug!(pool = %p.name(), closed, "retain: closed expired idle server connections");
            }
        }
        for p in &pools {
            let n = p.pre_replace().await;
            if n > 0 {
                tracing::debug!(pool = %p.name(), n, "retain: replaced connections near the end of their lifetime");
            }
            p.replenish().await;
        }
    }
}
