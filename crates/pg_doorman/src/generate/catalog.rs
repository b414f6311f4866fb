//! What `generate` reads from PostgreSQL: the databases that accept connections and the login
//! roles with their secrets. The connection is the pooler's own backend login (TCP or unix
//! socket, TLS, SCRAM/MD5), made from a one-pool config.

use super::GenerateArgs;
use crate::config::emit::{Entry, Format, Node, render, s};
use anyhow::{Context, anyhow};

/// A login role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// rolname.
    pub name: String,
    /// Its stored secret (`md5...` or `SCRAM-SHA-256$...`); None when unreadable or unset.
    pub secret: Option<String>,
}

/// Databases and roles, sorted by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Databases with datallowconn, templates left out.
    pub databases: Vec<String>,
    /// Roles with rolcanlogin.
    pub roles: Vec<Role>,
    /// False when pg_shadow could not be read (not a superuser): secrets are None.
    pub secrets_readable: bool,
}

const DATABASES: &str =
    "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname";
/// pg_shadow lists exactly the login roles with their secrets (superusers only).
const SECRETS: &str = "SELECT usename, passwd FROM pg_shadow ORDER BY usename";
const ROLES: &str = "SELECT rolname, NULL::text FROM pg_roles WHERE rolcanlogin ORDER BY rolname";

/// The config the look-up connection is made from (parsed, not validated: an empty password
/// means none, for trust or peer authentication).
fn connection_config(args: &GenerateArgs) -> anyhow::Result<crate::config::Config> {
    let user = Node::Map(vec![
        Entry::new("username", s(&args.user)),
        Entry::new("password", s(args.password.clone().unwrap_or_default())),
    ]);
    let root = vec![
        Entry::new(
            "general",
            Node::Map(vec![
                Entry::new("connect_timeout", s("10s")),
                Entry::new(
                    "server_tls_mode",
                    s(args.tls_mode().map_err(|e| anyhow!(e))?),
                ),
            ]),
        ),
        Entry::new(
            "pools",
            Node::Map(vec![Entry::new(
                &args.database,
                Node::Map(vec![
                    Entry::new("server_host", s(&args.host)),
                    Entry::new("server_port", Node::Int(i64::from(args.port))),
                    Entry::new("pool_mode", s("session")),
                    Entry::new("users", Node::List(vec![user])),
                ]),
            )]),
        ),
    ];
    crate::config::parse_yaml(&render(&root, &[], Format::Yaml, false)).map_err(|e| anyhow!(e))
}

/// Connects as `args` say and reads the catalog. Errors: the connection or login failed (the
/// server's message), or a query failed.
pub async fn read(args: &GenerateArgs) -> anyhow::Result<Catalog> {
    let config = connection_config(args)?;
    let resolved = crate::pool::settings::Derived::default()
        .resolve(&config)
        .map_err(|e| anyhow!(e))?;
    let settings = resolved
        .pools
        .first()
        .ok_or_else(|| anyhow!("no connection settings"))?;
    let mut server = crate::pool::connect::connect(settings, 0, None)
        .await
        .with_context(|| {
            format!(
                "cannot connect to {}:{} as {} (database {})",
                args.host, args.port, args.user, args.database
            )
        })?;
    let databases = server
        .one_off_rows(DATABASES, &[])
        .await?
        .map_err(|e| anyhow!("listing databases: {} ({})", e.message, e.code))?
        .rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect();
    let (rows, secrets_readable) = match server.one_off_rows(SECRETS, &[]).await? {
        Ok(rows) => (rows, true),
        Err(e) if e.code == doorman_wire::sqlstate::INSUFFICIENT_PRIVILEGE => {
            eprintln!(
                "note: {} may not read pg_shadow ({}): passwords are written as placeholders",
                args.user, e.message
            );
            let rows = server
                .one_off_rows(ROLES, &[])
                .await?
                .map_err(|e| anyhow!("listing roles: {} ({})", e.message, e.code))?;
            (rows, false)
        }
        Err(e) => return Err(anyhow!("reading pg_shadow: {} ({})", e.message, e.code)),
    };
    let roles = rows
        .rows
        .into_iter()
        .filter_map(|r| {
            let mut it = r.into_iter();
            let name = it.next().flatten()?;
            let secret = it.next().flatten().filter(|p| !p.is_empty());
            Some(Role { name, secret })
        })
        .collect();
    server.close();
    Ok(Catalog {
        databases,
        roles,
        secrets_readable,
    })
}
