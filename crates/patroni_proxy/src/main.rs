//! patroni_proxy: a TCP proxy for Patroni-managed PostgreSQL clusters. Each configured port
//! routes to the members of the roles it names (leader, sync, async, any), found by polling
//! Patroni's REST API (`/cluster`), choosing the member with the fewest open connections.
//! A topology change leaves connections to members that still qualify alone; connections to
//! a member that lost its role are closed (after `role_change_grace`).
//!
//! Usage: `patroni_proxy <config.yaml>`; `RUST_LOG` sets the log level (default info);
//! SIGHUP reloads the config; SIGTERM / SIGINT exit.

mod api;
mod config;
mod proxy;
mod routes;
mod state;

use clap::Parser;
use std::path::PathBuf;

/// Command line (COMPAT.md: `patroni_proxy <config.yaml>`).
#[derive(Parser, Debug)]
#[command(
    version,
    about = "TCP proxy routing to Patroni cluster members by role"
)]
struct Cli {
    /// The YAML config file.
    config: PathBuf,
    /// Check the config and exit (0 when it loads).
    #[arg(short = 't', long = "test-config")]
    test: bool,
    /// Log line format: text (as pg_doorman's) or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    let config = match config::Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("patroni_proxy: {}: {e}", cli.config.display());
            return std::process::ExitCode::FAILURE;
        }
    };
    if cli.test {
        println!("{}: ok", cli.config.display());
        return std::process::ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("patroni_proxy: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.config, config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("patroni_proxy: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.with_ansi(false).init();
    }
}

async fn run(path: PathBuf, config: config::Config) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::signal::unix::{SignalKind, signal};
    let api = tokio::net::TcpListener::bind(config.api_listen)
        .await
        .with_context(|| format!("listen_address {}", config.api_listen))?;
    let api_addr = config.api_listen;
    let proxy = state::Proxy::start(config).map_err(anyhow::Error::msg)?;
    api::serve(proxy.clone(), api);
    tracing::info!(
        "patroni_proxy {} started; HTTP API on {api_addr}",
        env!("CARGO_PKG_VERSION")
    );
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => match config::Config::load(&path) {
                Ok(new) => {
                    if new.api_listen != api_addr {
                        tracing::warn!("listen_address changed to {}: it applies at restart", new.api_listen);
                    }
                    let failed = proxy.apply(new);
                    if failed.is_empty() {
                        tracing::info!("configuration reloaded from {}", path.display());
                    } else {
                        for f in failed {
                            tracing::error!("reload: {f}");
                        }
                    }
                }
                Err(e) => tracing::error!("reload of {} refused, the running config stays: {e}", path.display()),
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("patroni_proxy stopping");
    Ok(())
}
