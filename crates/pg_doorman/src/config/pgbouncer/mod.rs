//! PgBouncer config import: a `pgbouncer.ini` (with its `auth_file` userlist.txt and
//! `auth_hba_file`) read as a pg_doorman config. The ini is translated into pg_doorman's YAML
//! (written with [`super::emit`], a comment per key saying where it came from), which then
//! loads like any config; `--print-config` shows that YAML. A setting without an equivalent
//! is named in a warning with the reason; one whose meaning cannot be kept (statement mode,
//! the `*` fallback database, cert/PAM/LDAP authentication) is an error.

mod ini;
mod pools;
pub mod settings;

use super::emit::{Entry, Format, Node, render, s};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What an import produced.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The config tree (`general`, `pools`).
    pub root: Vec<Entry>,
    /// Settings not carried over, one line each naming the setting, its place and the reason.
    pub notes: Vec<String>,
    /// The ini file.
    pub source: PathBuf,
}

impl Imported {
    /// The equivalent pg_doorman YAML, with a comment per key.
    pub fn yaml(&self) -> String {
        let mut header = vec![
            format!(
                "pg_doorman config converted from PgBouncer's {} by pg_doorman {}.",
                self.source.display(),
                env!("CARGO_PKG_VERSION")
            ),
            "Each comment names the PgBouncer setting a key came from.".to_string(),
        ];
        if !self.notes.is_empty() {
            header.push(String::new());
            header.push("Not carried over:".into());
            header.extend(self.notes.iter().map(|n| format!("  {n}")));
        }
        render(&self.root, &header, Format::Yaml, true)
    }
}

/// The state of one import: the ini's settings by section and what has been said about them.
pub struct Import {
    /// `[pgbouncer]` settings by key: (value, `file:line`); a later line wins, as in PgBouncer.
    pub pgbouncer: BTreeMap<String, (String, String)>,
    databases: Vec<ini::Setting>,
    users: BTreeMap<String, ini::Setting>,
    notes: Vec<String>,
    errors: Vec<String>,
    source: PathBuf,
}

impl Import {
    /// A `[pgbouncer]` setting: (value, where).
    pub fn setting(&self, key: &str) -> Option<(&str, &str)> {
        self.pgbouncer
            .get(key)
            .map(|(v, at)| (v.as_str(), at.as_str()))
    }

    /// A note: the setting is dropped, the reason given.
    pub fn note(&mut self, n: String) {
        self.notes.push(n);
    }

    /// An error: the file cannot be imported.
    pub fn error(&mut self, e: String) {
        self.errors.push(e);
    }

    /// A file named by a setting: absolute, or relative to the current directory (PgBouncer's
    /// rule), else to the ini's directory.
    pub fn file(&self, name: &str) -> PathBuf {
        ini::resolve(&self.source, name)
    }
}

/// True for a file name pg_doorman reads as PgBouncer's format.
pub fn is_pgbouncer_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("ini"))
}

/// Reads `path` (pgbouncer.ini) and what it names; errors are one line each.
pub fn import(path: &Path) -> Result<Imported, Vec<String>> {
    let settings = ini::read(path).map_err(|e| vec![e])?;
    let mut im = Import {
        pgbouncer: BTreeMap::new(),
        databases: Vec::new(),
        users: BTreeMap::new(),
        notes: Vec::new(),
        errors: Vec::new(),
        source: path.to_path_buf(),
    };
    for st in settings {
        match st.section.as_str() {
            "pgbouncer" => {
                im.pgbouncer
                    .insert(st.key.to_ascii_lowercase(), (st.value, st.at));
            }
            "databases" => {
                // A later line for the same name replaces the earlier one, as in PgBouncer.
                im.databases.retain(|d| d.key != st.key);
                im.databases.push(st);
            }
            "users" => {
                im.users.insert(st.key.clone(), st);
            }
            "peers" => im.note(format!(
                "[peers] {} ({}): not carried over: pg_doorman has no peering",
                st.key, st.at
            )),
            other => im.note(format!(
                "[{other}] {} ({}): not carried over: not a PgBouncer section",
                st.key, st.at
            )),
        }
    }
    let mut general = settings::general(&mut im);
    listeners(&mut im, &mut general);
    tls(&mut im, &mut general);
    misc(&mut im, &mut general);
    let auth = pools::auth(&mut im, &mut general);
    let pools = pools::pools(&mut im, &auth);
    if !im.errors.is_empty() {
        return Err(im.errors);
    }
    Ok(Imported {
        root: vec![
            Entry::new("general", Node::Map(general)),
            Entry::new("pools", Node::Map(pools)),
        ],
        notes: im.notes,
        source: im.source,
    })
}

fn listeners(im: &mut Import, general: &mut Vec<Entry>) {
    match im
        .setting("listen_addr")
        .map(|(v, at)| (v.to_string(), at.to_string()))
    {
        Some((v, at)) if !v.is_empty() => {
            let mut addrs = v.split(',').map(str::trim).filter(|a| !a.is_empty());
            let first = addrs.next().unwrap_or("*");
            let rest: Vec<&str> = addrs.collect();
            if !rest.is_empty() {
                im.note(format!("listen_addr ({at}): pg_doorman listens on one address; {first} is kept, {} dropped", rest.join(", ")));
            }
            let host = if first == "*" { "0.0.0.0" } else { first };
            general.insert(
                0,
                Entry::new("host", s(host)).note(format!("listen_addr = {v} ({at})")),
            );
        }
        _ => {
            im.note("listen_addr: unset, so PgBouncer listened on its unix socket only; pg_doorman always has a TCP listener, put on 127.0.0.1".into());
            general.insert(
                0,
                Entry::new("host", s("127.0.0.1"))
                    .note("listen_addr unset in PgBouncer: loopback only"),
            );
        }
    }
    match im.setting("unix_socket_dir") {
        Some(("", at)) => {
            let _ = at;
        }
        Some((v, at)) => general.push(
            Entry::new("unix_socket_dir", s(v)).note(format!("unix_socket_dir = {v} ({at})")),
        ),
        None => general.push(
            Entry::new("unix_socket_dir", s("/tmp"))
                .note("unix_socket_dir: PgBouncer's default /tmp"),
        ),
    }
}

/// PgBouncer's sslmode names → ours.
fn tls(im: &mut Import, general: &mut Vec<Entry>) {
    let client = im
        .setting("client_tls_sslmode")
        .map(|(v, at)| (v.to_string(), at.to_string()));
    let (value, comment) = client
        .clone()
        .map(|(v, at)| (v.clone(), format!("client_tls_sslmode = {v} ({at})")))
        .unwrap_or_else(|| {
            (
                "disable".into(),
                "client_tls_sslmode: PgBouncer's default disable".into(),
            )
        });
    let ours = match value.to_ascii_lowercase().as_str() {
        "disable" => Some("disable"),
        "allow" | "prefer" => Some("allow"),
        "require" => Some("require"),
        "verify-ca" | "verify-full" => Some("verify-full"),
        _ => None,
    };
    match ours {
        Some(m) => general.push(Entry::new("tls_mode", s(m)).note(comment)),
        None => im.error(format!("client_tls_sslmode = {value:?}: expected disable, allow, prefer, require, verify-ca or verify-full")),
    }
    let server = im
        .setting("server_tls_sslmode")
        .map(|(v, at)| (v.to_string(), at.to_string()));
    let (value, comment) = server
        .map(|(v, at)| (v.clone(), format!("server_tls_sslmode = {v} ({at})")))
        .unwrap_or_else(|| {
            (
                "prefer".into(),
                "server_tls_sslmode: PgBouncer's default prefer".into(),
            )
        });
    let v = value.to_ascii_lowercase();
    if [
        "disable",
        "allow",
        "prefer",
        "require",
        "verify-ca",
        "verify-full",
    ]
    .contains(&v.as_str())
    {
        general.push(Entry::new("server_tls_mode", s(v)).note(comment));
    } else {
        im.error(format!("server_tls_sslmode = {value:?}: expected disable, allow, prefer, require, verify-ca or verify-full"));
    }
    for (pgb, ours) in [
        ("client_tls_protocols", "tls_protocols"),
        ("server_tls_protocols", "server_tls_protocols"),
    ] {
        let Some((v, at)) = im
            .setting(pgb)
            .map(|(v, at)| (v.to_ascii_lowercase(), at.to_string()))
        else {
            continue;
        };
        let list: Vec<&str> = v.split(',').map(str::trim).collect();
        match list.as_slice() {
            ["secure"] | ["tlsv1.2", "tlsv1.3"] | ["tlsv1.3", "tlsv1.2"] => {}
            [one @ ("tlsv1.2" | "tlsv1.3")] => general.push(
                Entry::new(ours, s(*one)).note(format!("{pgb} = {v} ({at})")),
            ),
            _ => im.note(format!(
                "{pgb} ({at}): {v} not carried over: rustls speaks TLS 1.2 and 1.3 only, both are on"
            )),
        }
    }
}

fn misc(im: &mut Import, general: &mut Vec<Entry>) {
    if let Some((v, at)) = im
        .setting("syslog")
        .map(|(v, at)| (v.to_string(), at.to_string()))
        && settings::boolean(&v) == Some(true)
    {
        let ident = im
            .setting("syslog_ident")
            .map_or("pgbouncer", |x| x.0)
            .to_string();
        general.push(
            Entry::new("syslog_prog_name", s(&ident))
                .note(format!("syslog = {v} ({at}), syslog_ident {ident}")),
        );
    }
    match im
        .setting("max_prepared_statements")
        .map(|(v, at)| (v.to_string(), at.to_string()))
    {
        Some((v, at)) => match v.parse::<i64>() {
            Ok(0) => general.push(
                Entry::new("prepared_statements", Node::Bool(false))
                    .note(format!("max_prepared_statements = 0 ({at})")),
            ),
            Ok(n) if n > 0 => {
                general.push(Entry::new("prepared_statements", Node::Bool(true)).note(format!(
                    "max_prepared_statements = {n} ({at}): statements each backend keeps prepared"
                )));
                general.push(Entry::new(
                    "server_prepared_statements_cache_size",
                    Node::Int(n),
                ));
            }
            _ => im.error(format!("max_prepared_statements = {v:?}: expected a count")),
        },
        None => general.push(
            Entry::new("prepared_statements", Node::Bool(true))
                .note("max_prepared_statements: PgBouncer's default 200"),
        ),
    }
    if im.setting("max_prepared_statements").is_none() {
        general.push(Entry::new(
            "server_prepared_statements_cache_size",
            Node::Int(200),
        ));
    }
    match im
        .setting("server_check_query")
        .map(|(v, at)| (v.to_string(), at.to_string()))
    {
        Some((v, at)) if v.is_empty() => {
            general.retain(|e| e.key != "server_idle_check_timeout");
            general.push(
                Entry::new("server_idle_check_timeout", s("0ms"))
                    .note(format!("server_check_query empty ({at}): no probe")),
            );
        }
        Some((v, at)) => general.push(
            Entry::new("pooler_check_query", s(&v)).note(format!("server_check_query ({at})")),
        ),
        None => general.push(
            Entry::new("pooler_check_query", s("select 1"))
                .note("server_check_query: PgBouncer's default"),
        ),
    }
    if let Some((v, at)) = im
        .setting("tcp_keepalive")
        .map(|(v, at)| (v.to_string(), at.to_string()))
        && settings::boolean(&v) == Some(false)
    {
        im.note(format!("tcp_keepalive = {v} ({at}): not carried over: pg_doorman always turns keepalive on (tcp_keepalives_* tune it)"));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn admin_users_naming_nobody_is_as_unset() {
        let dir = tempfile::tempdir().unwrap();
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(&ini, "[databases]\n[pgbouncer]\nadmin_users = , \n").unwrap();
        let yaml = super::import(&ini).unwrap().yaml();
        assert!(yaml.contains("admin_username: \"admin\""), "{yaml}");
        assert!(!yaml.contains("admin_password: \"admin\""), "{yaml}");
    }
}
