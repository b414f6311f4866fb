//! Process assembly: builds pools from the config, binds the listener, runs the retain cycle
//! and waits for shutdown. Phases: starting (here) → running (accept loop) → stopped.

pub mod context;
pub mod limits;
pub mod signals;

use crate::config::Config;
use crate::pool::settings;
use context::AppContext;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why the process could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// host:port.
        addr: String,
        /// OS error.
        source: std::io::Error,
    },
}

/// Runs pg_doorman with `config` until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let config = Arc::new(config);
    let resolved = {
        let c = config.clone();
        // PBKDF2 for plaintext passwords: keep it off the async workers.
        tokio::task::spawn_blocking(move || settings::resolve(&c))
            .await
            .unwrap_or_default()
    };
    let g = &config.general;
    let backends: usize = resolved.iter().map(|p| p.pool_size).sum();
    limits::raise_nofile(g.max_connections, backends);
    let addr = format!("{}:{}", g.host, g.port);
    let backlog = if g.backlog == 0 {
        g.max_connections.min(u32::MAX as usize) as u32
    } else {
        g.backlog
    };
    let tcp = settings::tcp_options(&config);
    let listener = crate::listener::bind(&g.host, g.port, backlog, &tcp)
        .await
        .map_err(|source| StartError::Listen {
            addr: addr.clone(),
            source,
        })?;
    let ctx = Arc::new(AppContext::new(config.clone(), resolved, shutdown.clone()));
    tracing::info!(
        "pg_doorman {} listening on {addr} ({} pools)",
        env!("CARGO_PKG_VERSION"),
        ctx.pools.all().count()
    );
    let tracker = TaskTracker::new();
    tracker.spawn(retain_cycle(ctx.clone()));
    crate::listener::serve(listener, ctx.clone(), tracker.clone()).await;
    let in_use = ctx.clients.load(Ordering::Relaxed);
    tracing::info!("shutting down: {in_use} clients connected");
    for p in ctx.pools.all() {
        p.close_idle();
    }
    tracker.close();
    // Sessions see the token and end; give them a moment to write their goodbye.
    let _ = tokio::time::timeout(std::time::Duration::from_millis(500), tracker.wait()).await;
    Ok(())
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
        for p in ctx.pools.all() {
            let closed = p.retain();
            if closed > 0 {
                tracing::debug!(pool = %p.name(), closed, "retain: closed expired idle server connections");
            }
        }
    }
}
