//! Carries out the lifecycle commands ([`super::lifecycle::Command`]) and the signals in
//! order, one at a time: drains (graceful shutdown) and upgrades. A drain asks every client to
//! leave at its next idle point through its [`Leave`] signal and ends the process when none is
//! left or at `shutdown_timeout`.

use super::clients::Leave;
use super::context::AppContext;
use super::lifecycle::{Command, phase};
use std::sync::Arc;
use std::time::Duration;

/// How often a drain re-asks clients (new logins, clients back from a transaction) and closes
/// the idle backends it no longer needs (PgDoorman polls every 250 ms too).
const DRAIN_TICK: Duration = Duration::from_millis(250);
/// How often a drain looks whether any client is left.
const EMPTY_CHECK: Duration = Duration::from_millis(5);

/// Is standard input a terminal (SIGINT from Ctrl+C)?
fn on_tty() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stdin())
}

/// Watches the signals and runs the commands until the process stops. SIGINT on a TTY stops
/// at once (Ctrl+C in development); without one it drains like SIGTERM (issue 17; PgDoorman's
/// legacy "SIGINT upgrades" is not followed: use SIGUSR2).
pub async fn control(ctx: Arc<AppContext>, mut signals: super::signals::Signals) {
    let Some(mut inbox) = ctx.lifecycle.take_inbox() else {
        return;
    };
    loop {
        let cmd = tokio::select! {
            c = inbox.recv() => match c { Some(c) => c, None => return },
            s = signals.next() => match s {
                super::signals::Sig::Term => {
                    tracing::info!("SIGTERM: graceful shutdown");
                    Command::Drain
                }
                super::signals::Sig::Int if on_tty() => {
                    tracing::info!("SIGINT on a terminal: stopping now");
                    Command::Immediate
                }
                super::signals::Sig::Int => {
                    tracing::info!("SIGINT: graceful shutdown");
                    Command::Drain
                }
                super::signals::Sig::Usr2 => {
                    tracing::info!("SIGUSR2: binary upgrade");
                    Command::Upgrade(None)
                }
                super::signals::Sig::Hup => {
                    ctx.hup.notify_one();
                    continue;
                }
            },
            _ = ctx.shutdown.cancelled() => return,
        };
        let l = &ctx.lifecycle;
        match cmd {
            Command::Immediate => {
                super::notify::stopping();
                ctx.shutdown.cancel();
                return;
            }
            Command::Drain if l.phase() == phase::DRAINING || l.phase() == phase::MIGRATING => {
                tracing::info!("second stop request: stopping now");
                ctx.shutdown.cancel();
                return;
            }
            Command::Drain => {
                l.set_phase(phase::DRAINING);
                super::notify::stopping();
                tokio::spawn(drain(ctx.clone(), Leave::CLOSE));
            }
            Command::Upgrade(reply) => {
                let answer = if l.phase() != phase::RUNNING {
                    Err("an upgrade or shutdown is already in progress".to_string())
                } else {
                    l.set_phase(phase::STARTING_CHILD);
                    match super::upgrade::start(&ctx).await {
                        Ok(handoff) => {
                            l.set_handoff(handoff);
                            l.set_phase(phase::MIGRATING);
                            tokio::spawn(drain(ctx.clone(), Leave::MIGRATE));
                            Ok(())
                        }
                        Err(e) => {
                            l.set_phase(phase::RUNNING);
                            tracing::error!("upgrade aborted, this process keeps serving: {e}");
                            Err(e)
                        }
                    }
                };
                if let Some(r) = reply {
                    let _ = r.send(answer);
                }
            }
        }
    }
}

/// Stops accepting, asks every client to `what` at its next idle point, closes idle backends
/// as they come back, and ends the process when no client is left or at `shutdown_timeout`
/// (clients still here then are asked to close once more and given a moment).
async fn drain(ctx: Arc<AppContext>, what: u8) {
    ctx.lifecycle.stop_accepting.cancel();
    // Our copies of the listening sockets go too: a shutdown must refuse new connections (an
    // upgrade's child holds its own).
    *ctx.lifecycle.listen_fds.lock() = Default::default();
    let timeout = ctx.config.general.shutdown_timeout.0;
    let deadline = tokio::time::Instant::now() + timeout;
    let in_tx = ctx
        .client_list
        .snapshot()
        .iter()
        .filter(|c| c.server_pid.load(std::sync::atomic::Ordering::Relaxed) != 0)
        .count();
    tracing::info!(
        "draining: {} clients ({in_tx} in a transaction), shutdown_timeout {}",
        ctx.client_list.len(),
        crate::logging::human(timeout)
    );
    let mut next_round = tokio::time::Instant::now();
    loop {
        let now = tokio::time::Instant::now();
        if now >= next_round {
            for c in ctx.client_list.snapshot() {
                c.leave.set(what);
            }
            for p in &ctx.pools.all() {
                p.close_idle();
            }
            next_round = now + DRAIN_TICK;
        }
        if ctx.client_list.is_empty() || now >= deadline {
            break;
        }
        // The count is looked at more often than clients are asked: an upgrade of idle
        // clients ends as soon as the last one left, not at the next round.
        tokio::select! {
            _ = tokio::time::sleep(EMPTY_CHECK) => {}
            _ = ctx.shutdown.cancelled() => return,
        }
    }
    let left = ctx.client_list.len();
    if left > 0 {
        tracing::warn!("shutdown_timeout reached: closing {left} clients");
        for c in ctx.client_list.snapshot() {
            c.leave.set(Leave::CLOSE);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Lets the sender deliver every queued departure before the process ends.
    let sender = ctx.lifecycle.take_handoff();
    if let Some((tx, task)) = sender {
        drop(tx);
        // Bounded, in case the new process stopped reading.
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    tracing::info!("drained");
    ctx.shutdown.cancel();
}
