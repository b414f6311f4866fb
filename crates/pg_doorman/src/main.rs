//! The `pg_doorman` binary: command line, logging, runtime; everything else is in the library.

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// PostgreSQL connection pooler (PgDoorman-compatible).
#[derive(Debug, Parser)]
#[command(name = "pg_doorman", version, about)]
struct Cli {
    /// Config file (.yaml, .yml or .toml).
    #[arg(env = "CONFIG_FILE", default_value = "pg_doorman.toml")]
    config_file: PathBuf,
    /// Log level or filter (error, warn, info, debug, trace, or an env-filter string).
    #[arg(short = 'l', long, env = "LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Log format: text or structured (JSON lines).
    #[arg(short = 'F', long, env = "LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// Disable colours in text logs.
    #[arg(short = 'n', long)]
    no_color: bool,
    /// Validate the config file and exit (0 = valid, 1 = invalid).
    #[arg(short = 't', long)]
    test_config: bool,
    /// Fork into the background (not supported by this version: rejected).
    #[arg(short = 'd', long, env = "DAEMON")]
    daemon: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Structured,
}

fn init_logging(cli: &Cli, syslog: Option<&str>) -> anyhow::Result<()> {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .with_context(|| format!("invalid --log-level {:?}", cli.log_level))?;
    // A reloadable filter: the admin console's SET log_level takes effect at once.
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    if let Some(prog) = syslog {
        let writer = pg_doorman::logging::syslog::Syslog::connect(prog)
            .with_context(|| format!("cannot open syslog for syslog_prog_name {prog:?}"))?;
        let layer = tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(false)
            .without_time()
            .with_writer(writer);
        registry.with(layer).init();
        pg_doorman::logging::install(&cli.log_level, move |s| {
            let f = tracing_subscriber::EnvFilter::try_new(s).map_err(|e| e.to_string())?;
            handle.reload(f).map_err(|e| e.to_string())
        });
        return Ok(());
    }
    match cli.log_format {
        LogFormat::Text => {
            let color = !cli.no_color
                && std::env::var_os("NO_COLOR").is_none()
                && std::io::IsTerminal::is_terminal(&std::io::stderr());
            let layer = tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_ansi(color)
                .with_writer(std::io::stderr);
            registry.with(layer).init();
        }
        LogFormat::Structured => {
            let layer = tracing_subscriber::fmt::layer()
                .json()
                .with_target(false)
                .with_writer(std::io::stderr);
            registry.with(layer).init();
        }
    }
    pg_doorman::logging::install(&cli.log_level, move |s| {
        let f = tracing_subscriber::EnvFilter::try_new(s).map_err(|e| e.to_string())?;
        handle.reload(f).map_err(|e| e.to_string())
    });
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pg_doorman: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let config = pg_doorman::config::load(&cli.config_file);
    if cli.test_config {
        return Ok(match config {
            Ok(_) => {
                println!("config file {} is valid", cli.config_file.display());
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                std::process::ExitCode::FAILURE
            }
        });
    }
    let config = config?;
    if cli.daemon {
        anyhow::bail!(
            "--daemon is not supported by this version; run in the foreground (e.g. systemd Type=simple)"
        );
    }
    init_logging(&cli, config.general.syslog_prog_name.as_deref())?;
    // One worker: the single-threaded scheduler does the same work without work-stealing
    // bookkeeping or cross-thread wake-ups.
    let mut builder = if config.general.worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(config.general.worker_threads);
        b
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    // Registered before the listener opens, so an early SIGHUP cannot kill the process.
    let installed = {
        let _rt = runtime.enter();
        pg_doorman::app::signals::install().context("cannot install signal handlers")?
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let hup = std::sync::Arc::new(tokio::sync::Notify::new());
        let signals = tokio::spawn(pg_doorman::app::signals::watch(
            installed,
            shutdown.clone(),
            hup.clone(),
        ));
        let result = pg_doorman::app::run(config, shutdown.clone(), hup).await;
        shutdown.cancel();
        if let Ok(name) = signals.await {
            tracing::info!("stopped ({name})");
        }
        result
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}
