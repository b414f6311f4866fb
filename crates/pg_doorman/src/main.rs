//! The `pg_doorman` binary: command line, logging, runtime; everything else is in the library.

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// PostgreSQL connection pooler (PgDoorman-compatible).
#[derive(Debug, Parser)]
#[command(name = "pg_doorman", version, about)]
struct Cli {
    /// Config file (.yaml, .yml or .toml; or PgBouncer's .ini, imported).
    #[arg(env = "CONFIG_FILE", default_value = "pg_doorman.toml")]
    config_file: PathBuf,
    /// Run from this PgBouncer config (pgbouncer.ini with its auth_file and auth_hba_file)
    /// instead of CONFIG_FILE; settings without an equivalent are named in warnings.
    #[arg(long, value_name = "PGBOUNCER_INI")]
    from_pgbouncer: Option<PathBuf>,
    /// Print the pg_doorman YAML a PgBouncer .ini is read as (a comment per key naming the
    /// PgBouncer setting it came from) and exit.
    #[arg(long)]
    print_config: bool,
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
    /// Fork into the background and write `general.daemon_pid_file`.
    #[arg(short = 'd', long, env = "DAEMON")]
    daemon: bool,
    /// Serve on this inherited listening socket instead of binding (binary upgrade).
    #[arg(long, env = "INHERIT_FD", value_name = "FD")]
    inherit_fd: Option<i32>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Write a config from a live PostgreSQL: its databases and login roles (with their
    /// secrets when the role may read pg_shadow).
    Generate(pg_doorman::generate::GenerateArgs),
    /// Write the configuration reference (docs/configuration.md) from the config structs'
    /// doc comments and defaults.
    GenerateDocs(pg_doorman::generate::GenerateDocsArgs),
}

/// Our command line without `--daemon` and `--inherit-fd` (with their values): what an
/// upgrade's child is started with.
fn upgrade_args() -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        let s = a.to_string_lossy();
        if s == "--inherit-fd" {
            args.next();
            continue;
        }
        if s.starts_with("--inherit-fd=") || s == "-d" || s == "--daemon" {
            continue;
        }
        out.push(a);
    }
    out
}

/// A descriptor number from the environment, taken over (set by an upgrading parent).
fn inherited_env(name: &str) -> anyhow::Result<Option<std::os::fd::OwnedFd>> {
    let Some(v) = std::env::var_os(name) else {
        return Ok(None);
    };
    let n: i32 = v
        .to_string_lossy()
        .parse()
        .with_context(|| format!("{name} is not a descriptor number"))?;
    let fd = pg_doorman::app::fds::take_inherited(n).with_context(|| format!("{name}={n}"))?;
    Ok(Some(fd))
}

/// The tokio runtime as `general` describes it (worker_threads, the advanced runtime knobs
/// and CPU pinning; COMPAT.md §1.1).
fn build_runtime(g: &pg_doorman::config::General) -> anyhow::Result<tokio::runtime::Runtime> {
    // One worker: the single-threaded scheduler does the same work without work-stealing
    // bookkeeping or cross-thread wake-ups.
    let single = g.worker_threads == 1;
    let mut b = if single {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(g.worker_threads);
        b
    };
    b.enable_all();
    if let Some(size) = g.worker_stack_size {
        b.thread_stack_size(usize::try_from(size.0).context("worker_stack_size")?);
    }
    if let Some(n) = g.max_blocking_threads {
        b.max_blocking_threads(n);
    }
    if let Some(n) = g.tokio_global_queue_interval {
        b.global_queue_interval(n);
    }
    if let Some(n) = g.tokio_event_interval {
        b.event_interval(n);
    }
    if g.worker_cpu_affinity_pinning {
        let (cpus, all) = pinning::allowed_cpus().context("cannot read the CPU affinity")?;
        // A thread inherits its creator's affinity, and blocking-pool threads are started by
        // pinned threads: they get the whole allowed set back, so PBKDF2 or a hostname lookup
        // does not compete with one worker.
        let workers = if single {
            // The single-threaded scheduler runs on this (the main) thread.
            pinning::pin(cpus[0]);
            0
        } else {
            // The workers are the first threads the runtime starts.
            g.worker_threads
        };
        let started = std::sync::atomic::AtomicUsize::new(0);
        b.on_thread_start(move || {
            let i = started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if i < workers {
                pinning::pin(cpus[i % cpus.len()]);
            } else {
                pinning::unpin(&all);
            }
        });
    }
    b.build().context("cannot start the runtime")
}

/// CPU pinning of runtime threads (`worker_cpu_affinity_pinning`).
mod pinning {
    use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
    use nix::unistd::Pid;

    /// The CPUs this process may run on, in order (never empty), and that set.
    pub fn allowed_cpus() -> nix::Result<(Vec<usize>, CpuSet)> {
        let set = sched_getaffinity(Pid::from_raw(0))?;
        let cpus: Vec<usize> = (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect();
        if cpus.is_empty() {
            return Err(nix::Error::EINVAL);
        }
        Ok((cpus, set))
    }

    /// Lets the calling thread run on any CPU of `all` again; a failure is logged.
    pub fn unpin(all: &CpuSet) {
        if let Err(e) = sched_setaffinity(Pid::from_raw(0), all) {
            tracing::warn!("cannot reset a thread's CPU affinity: {e}");
        }
    }

    /// Pins the calling thread to `cpu`; a failure is logged, not fatal (the thread then runs
    /// where the kernel puts it, as without pinning).
    pub fn pin(cpu: usize) {
        let mut set = CpuSet::new();
        let pinned = set
            .set(cpu)
            .and_then(|()| sched_setaffinity(Pid::from_raw(0), &set));
        match pinned {
            Ok(()) => tracing::debug!("worker thread pinned to CPU {cpu}"),
            Err(e) => tracing::warn!("cannot pin a worker thread to CPU {cpu}: {e}"),
        }
    }
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
            .event_format(pg_doorman::logging::text::TextFormat {
                ansi: false,
                time: false,
            })
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
                .event_format(pg_doorman::logging::text::TextFormat {
                    ansi: color,
                    time: true,
                })
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

/// `--print-config`: the imported YAML on stdout, what was not carried over on stderr.
fn print_config(path: &std::path::Path) -> anyhow::Result<std::process::ExitCode> {
    use pg_doorman::config::pgbouncer;
    if !pgbouncer::is_pgbouncer_file(path) {
        anyhow::bail!(
            "--print-config converts a PgBouncer .ini; {} is already pg_doorman's format",
            path.display()
        );
    }
    match pgbouncer::import(path) {
        Ok(imported) => {
            print!("{}", imported.yaml());
            for n in &imported.notes {
                eprintln!("warning: {n}");
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Err(problems) => {
            eprintln!("{} cannot be imported:", path.display());
            for p in problems {
                eprintln!("  {p}");
            }
            Ok(std::process::ExitCode::FAILURE)
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match &cli.command {
        Some(Command::Generate(args)) => {
            pg_doorman::generate::run(args)?;
            return Ok(std::process::ExitCode::SUCCESS);
        }
        Some(Command::GenerateDocs(args)) => {
            pg_doorman::generate::run_docs(args)?;
            return Ok(std::process::ExitCode::SUCCESS);
        }
        None => {}
    }
    let mut cli = cli;
    if let Some(ini) = cli.from_pgbouncer.take() {
        cli.config_file = ini;
    }
    if cli.print_config {
        return print_config(&cli.config_file);
    }
    let config = pg_doorman::config::load(&cli.config_file);
    if cli.test_config {
        return Ok(match config {
            Ok(c) => {
                for w in &c.warnings {
                    eprintln!("warning: {w}");
                }
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
    // Resolved now: once an operator renames a new binary over this path, /proc/self/exe
    // names a deleted file, but the path still leads to the executable to upgrade to.
    let exe = std::env::current_exe().ok().map(|p| {
        let s = p.to_string_lossy();
        match s.strip_suffix(" (deleted)") {
            Some(live) => std::path::PathBuf::from(live),
            None => p,
        }
    });
    let mut boot = pg_doorman::app::Boot {
        listener: cli
            .inherit_fd
            .map(pg_doorman::app::fds::take_inherited)
            .transpose()
            .context("--inherit-fd")?,
        web: inherited_env("PG_DOORMAN_WEB_FD")?,
        unix: inherited_env("PG_DOORMAN_UNIX_FD")?,
        upgrade: inherited_env("PG_DOORMAN_UPGRADE_FD")?,
        first_id: std::env::var("PG_DOORMAN_FIRST_ID")
            .ok()
            .and_then(|v| v.parse().ok()),
        exe,
        args: upgrade_args(),
        pid_file: std::env::var_os("PG_DOORMAN_PID_FILE").map(Into::into),
        ..Default::default()
    };
    if cli.daemon {
        let pid_file = std::path::Path::new(&config.general.daemon_pid_file);
        // Refused here, where the operator still reads stderr, not after the fork.
        pg_doorman::app::daemon::check(pid_file)?;
        // Before any thread exists (runtime, logging).
        boot.daemon = Some(pg_doorman::app::daemon::fork_into_background()?);
        boot.pid_file = Some(config.general.daemon_pid_file.clone().into());
    }
    init_logging(&cli, config.general.syslog_prog_name.as_deref())?;
    for w in &config.warnings {
        tracing::warn!("config: {w}");
    }
    if let Some(files) = config
        .include
        .as_ref()
        .map(|i| &i.files)
        .filter(|f| !f.is_empty())
    {
        tracing::info!("config: merged include files {}", files.join(", "));
    }
    let runtime = build_runtime(&config.general)?;
    // Registered before the listener opens, so an early SIGHUP cannot kill the process.
    let installed = {
        let _rt = runtime.enter();
        pg_doorman::app::signals::install().context("cannot install signal handlers")?
    };
    boot.signals = Some(installed);
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let hup = std::sync::Arc::new(tokio::sync::Notify::new());
        let result = pg_doorman::app::run(config, shutdown.clone(), hup, boot).await;
        shutdown.cancel();
        if result.is_ok() {
            tracing::info!("stopped");
        }
        result
    })?;
    // Sessions still running (in a transaction at the deadline) are not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(std::process::ExitCode::SUCCESS)
}
