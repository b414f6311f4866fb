//! `pg_doorman generate`: a config written from a live PostgreSQL (PgDoorman's subcommand, same
//! flags; COMPAT.md §4). It lists the databases that accept connections and the login roles
//! with their stored secrets (pg_shadow, which needs a superuser), or placeholders when the role
//! may not read them, and writes a YAML or TOML config that `-t` accepts.

mod catalog;

use crate::config::emit::{Entry, Format, Node, render, s};
pub use catalog::{Catalog, Role};

/// The subcommand's flags (PgDoorman's names; libpq's environment variables as defaults).
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// PostgreSQL host name, IP address or unix socket directory.
    #[arg(long, env = "PGHOST", default_value = "localhost")]
    pub host: String,
    /// PostgreSQL port.
    #[arg(short = 'p', long, env = "PGPORT", default_value_t = 5432)]
    pub port: u16,
    /// Role to connect as (a superuser reads every secret).
    #[arg(short = 'u', long, env = "PGUSER", default_value = "postgres")]
    pub user: String,
    /// Its password (none for trust or peer authentication).
    #[arg(long, env = "PGPASSWORD")]
    pub password: Option<String>,
    /// Database to connect to.
    #[arg(short = 'd', long, env = "PGDATABASE", default_value = "postgres")]
    pub database: String,
    /// Connect with TLS (sslmode=require); PGSSLMODE is read when this flag is absent.
    #[arg(long)]
    pub ssl: bool,
    /// pool_size of every generated user.
    #[arg(long, default_value_t = 40)]
    pub pool_size: usize,
    /// Session pooling instead of transaction pooling.
    #[arg(short = 's', long)]
    pub session_pool_mode: bool,
    /// Write here instead of standard output (the format follows a .toml extension).
    #[arg(short = 'o', long)]
    pub output: Option<std::path::PathBuf>,
    /// server_host written into the pools (default: --host).
    #[arg(long)]
    pub server_host: Option<String>,
    /// Leave out the comments.
    #[arg(long, conflicts_with = "annotated")]
    pub no_comments: bool,
    /// A comment above every key (the default; the flag says it explicitly).
    #[arg(long)]
    pub annotated: bool,
    /// yaml or toml.
    #[arg(short = 'f', long, value_enum)]
    pub format: Option<Format>,
    /// Write the full reference config instead (every key, its default and its doc as a
    /// comment; one example pool); no PostgreSQL is asked.
    #[arg(long)]
    pub reference: bool,
}

/// `pg_doorman generate-docs`: the configuration reference (docs/configuration.md).
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateDocsArgs {
    /// Write here instead of standard output.
    #[arg(short = 'o', long)]
    pub output: Option<std::path::PathBuf>,
}

/// Writes the Markdown reference; errors name the file.
pub fn run_docs(args: &GenerateDocsArgs) -> anyhow::Result<()> {
    let text = crate::config::reference::markdown();
    write_out(args.output.as_deref(), &text)
}

fn write_out(path: Option<&std::path::Path>, text: &str) -> anyhow::Result<()> {
    match path {
        Some(p) => std::fs::write(p, text)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

impl GenerateArgs {
    /// The format asked for: `--format`, else the output file's extension, else YAML.
    pub fn format(&self) -> Format {
        self.format.unwrap_or_else(|| {
            let toml = self
                .output
                .as_ref()
                .and_then(|p| p.extension())
                .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
            if toml { Format::Toml } else { Format::Yaml }
        })
    }

    /// The backend TLS mode for the look-up: `--ssl` is require, else PGSSLMODE (libpq's
    /// names; verify-ca and verify-full map to ours), else prefer as libpq. A unix socket
    /// directory is never TLS (libpq ignores sslmode there too).
    pub fn tls_mode(&self) -> Result<&'static str, String> {
        if self.host.starts_with('/') {
            return Ok("disable");
        }
        if self.ssl {
            return Ok("require");
        }
        let mode = std::env::var("PGSSLMODE").unwrap_or_else(|_| "prefer".into());
        match mode.as_str() {
            "disable" => Ok("disable"),
            "allow" => Ok("allow"),
            "prefer" => Ok("prefer"),
            "require" => Ok("require"),
            "verify-ca" => Ok("verify-ca"),
            "verify-full" => Ok("verify-full"),
            other => Err(format!("PGSSLMODE={other:?} is not a libpq sslmode")),
        }
    }
}

/// Runs the subcommand: reads the catalog and writes the config. Errors say what failed
/// (connect, login, query, write).
pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    if args.reference {
        let text = crate::config::reference::reference_config(args.format());
        return write_out(args.output.as_deref(), &text);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let catalog = runtime.block_on(catalog::read(args))?;
    let text = config_text(args, &catalog);
    match &args.output {
        Some(path) => {
            std::fs::write(path, &text)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            eprintln!(
                "wrote {} ({} pools, {} roles{})",
                path.display(),
                catalog.databases.len(),
                catalog.roles.len(),
                if catalog.secrets_readable {
                    ""
                } else {
                    "; secrets not readable: placeholders written"
                }
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// The config text for `catalog` as `args` asks.
pub fn config_text(args: &GenerateArgs, catalog: &Catalog) -> String {
    let mode = if args.session_pool_mode {
        "session"
    } else {
        "transaction"
    };
    let server_host = args
        .server_host
        .clone()
        .unwrap_or_else(|| args.host.clone());
    let admin_password = random_password();
    let mut general = vec![
        Entry::new("host", s("0.0.0.0")).note("Address clients connect to (all interfaces)."),
        Entry::new("port", Node::Int(6432)).note("Port clients connect to."),
        Entry::new("admin_username", s("admin"))
            .note("Admin console: psql -d pgdoorman -U admin (SHOW POOLS, RELOAD, ...)."),
        Entry::new("admin_password", s(admin_password))
            .note("Generated at random; change it at will."),
    ];
    let tls = args.tls_mode().unwrap_or("allow");
    if matches!(tls, "require" | "verify-ca" | "verify-full") {
        general.push(
            Entry::new("server_tls_mode", s(tls))
                .note("How pg_doorman connects to PostgreSQL: the mode generate used."),
        );
    }
    let users: Vec<Node> = catalog
        .roles
        .iter()
        .map(|r| {
            let (password, note) = match &r.secret {
                Some(secret) => (
                    secret.clone(),
                    "The role's secret as PostgreSQL stores it (pg_shadow).",
                ),
                None => (
                    // Random per role, so the file loads and nobody logs in with it until an
                    // operator writes the real secret.
                    crate::config::unguessable_md5(),
                    "PLACEHOLDER: the role has no readable secret. Write its password here\n\
                     (clear text, md5... or SCRAM-SHA-256$...); nobody can log in with this one.",
                ),
            };
            Node::Map(vec![
                Entry::new("username", s(&r.name)).note("Name clients log in with."),
                Entry::new("password", s(password)).note(note),
                Entry::new("pool_size", Node::Int(to_i64(args.pool_size)))
                    .note("Most backend connections for this user in this pool."),
            ])
        })
        .collect();
    let pools: Vec<Entry> = catalog
        .databases
        .iter()
        .map(|db| {
            Entry::new(
                db,
                Node::Map(vec![
                    Entry::new("server_host", s(&server_host))
                        .note("PostgreSQL host, IP address or unix socket directory."),
                    Entry::new("server_port", Node::Int(i64::from(args.port))),
                    Entry::new("pool_mode", s(mode)).note(
                        "transaction: a backend per transaction; session: per client connection.",
                    ),
                    Entry::new("users", Node::List(users.clone())),
                ]),
            )
            .note(format!("Database {db:?} on the server."))
        })
        .collect();
    let root = vec![
        Entry::new("general", Node::Map(general)),
        Entry::new("pools", Node::Map(pools)),
    ];
    let header = vec![format!(
        "pg_doorman config generated from {}:{} (database {}, user {}).\nEvery key is described in docs/configuration.md; check it with pg_doorman -t <file>.",
        args.host, args.port, args.database, args.user
    )];
    render(&root, &header, args.format(), !args.no_comments)
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn random_password() -> String {
    let mut b = [0u8; 16];
    rand::fill(&mut b);
    doorman_wire::auth::md5::hex(&b)
}
