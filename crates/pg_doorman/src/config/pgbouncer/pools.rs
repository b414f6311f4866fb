//! `[databases]`, `[users]` and authentication: every database entry becomes a pool whose
//! users are the auth_file's (PgBouncer lets every listed user into every database), with
//! the entry's forced `user=`/`password=` as their backend login, and `auth_user` as an
//! auth_query in passthrough mode.

use super::super::emit::{Entry, Node, s};
use super::Import;
use super::ini::{self, AuthEntry};
use super::settings::{Conv, convert};

/// PgBouncer's default auth_query before 1.21 (its later default reads pg_authid with columns
/// pg_doorman's auth_query does not pick by name).
const DEFAULT_AUTH_QUERY: &str = "SELECT usename, passwd FROM pg_shadow WHERE usename=$1";

/// What authentication settles for the pools.
pub struct Auth {
    /// auth_file entries.
    users: Vec<AuthEntry>,
}

impl Auth {
    fn secret(&self, user: &str) -> Option<&str> {
        self.users
            .iter()
            .find(|u| u.user == user)
            .map(|u| u.secret.as_str())
    }
}

fn is_plain(secret: &str) -> bool {
    !secret.starts_with("SCRAM-SHA-256$") && !doorman_wire::auth::md5::is_secret(secret)
}

/// Reads auth_file, maps auth_type (and auth_hba_file) to pg_hba rules, and sets the admin
/// console's user from admin_users.
pub fn auth(im: &mut Import, general: &mut Vec<Entry>) -> Auth {
    let mut users = Vec::new();
    if let Some((f, _)) = im
        .setting("auth_file")
        .map(|(v, at)| (v.to_string(), at.to_string()))
    {
        match ini::userlist(&im.file(&f)) {
            Ok(u) => users = u,
            Err(e) => im.error(e),
        }
    }
    let (kind, at) = im
        .setting("auth_type")
        .map(|(v, at)| (v.to_ascii_lowercase(), at.to_string()))
        .unwrap_or_else(|| ("md5".into(), "PgBouncer's default".into()));
    let hba_file = im
        .setting("auth_hba_file")
        .map(|(v, at)| (v.to_string(), at.to_string()));
    let rules = |method: &str| format!("local all all {method}\nhost all all all {method}\n");
    let hba = match kind.as_str() {
        // md5 in PgBouncer: the secret's kind decides (SCRAM for a SCRAM verifier), which is
        // pg_doorman's behaviour without rules.
        "md5" => None,
        "scram-sha-256" => Some(("content", rules("scram-sha-256"))),
        "plain" => Some(("content", rules("password"))),
        "trust" => Some(("content", rules("trust"))),
        "hba" => match &hba_file {
            Some((f, _)) => Some(("path", im.file(f).display().to_string())),
            None => {
                im.error(format!("auth_type = hba ({at}) needs auth_hba_file"));
                None
            }
        },
        "cert" | "pam" | "ldap" | "any" | "peer" => {
            im.error(format!("auth_type = {kind} ({at}): pg_doorman cannot take it over (it has md5, scram-sha-256, plain, trust and hba); PAM is per user in pg_doorman (users[].auth_pam_service)"));
            None
        }
        other => {
            im.error(format!(
                "auth_type = {other:?} ({at}): not a PgBouncer auth_type"
            ));
            None
        }
    };
    if kind != "hba"
        && let Some((_, hat)) = &hba_file
    {
        im.note(format!(
            "auth_hba_file ({hat}): not carried over: PgBouncer reads it only with auth_type = hba"
        ));
    }
    if let Some((key, value)) = hba {
        general.push(
            Entry::new("pg_hba", Node::Map(vec![Entry::new(key, s(value))]))
                .note(format!("auth_type = {kind} ({at})")),
        );
    }
    let admins = im
        .setting("admin_users")
        .map(|(v, at)| (v.to_string(), at.to_string()));
    let auth = Auth { users };
    // `admin_users = ,` names nobody: the same as unset.
    let names: Vec<&str> = admins.as_ref().map_or_else(Vec::new, |(list, _)| {
        list.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect()
    });
    match (&admins, names.split_first()) {
        (Some((list, at)), Some((&first, rest))) => {
            if !rest.is_empty() {
                im.note(format!("admin_users ({at}): pg_doorman has one admin user; {first} is kept, {} dropped", rest.join(", ")));
            }
            general.push(Entry::new("admin_username", s(first)).note(format!(
                "admin_users = {list} ({at}); log in to database pgbouncer or pgdoorman"
            )));
            match auth.secret(first) {
                Some(secret) => general
                    .push(Entry::new("admin_password", s(secret)).note("its auth_file secret")),
                None => {
                    im.note(format!("admin_users ({at}): {first} is not in auth_file, so the admin console gets an unguessable password; set general.admin_password"));
                    general.push(Entry::new(
                        "admin_password",
                        s(super::super::unguessable_md5()),
                    ));
                }
            }
        }
        _ => {
            im.note("admin_users: unset; the admin console (user admin) gets an unguessable password: set general.admin_password to use it".into());
            general.push(Entry::new("admin_username", s("admin")));
            general.push(Entry::new(
                "admin_password",
                s(super::super::unguessable_md5()),
            ));
        }
    }
    auth
}

/// The `pools` entries, one per `[databases]` line.
pub fn pools(im: &mut Import, auth: &Auth) -> Vec<Entry> {
    let global_mode = im
        .setting("pool_mode")
        .map(|(v, _)| v.to_ascii_lowercase())
        .unwrap_or_else(|| "session".into());
    if global_mode == "statement" {
        im.error(
            "pool_mode = statement: pg_doorman has session and transaction pooling only".into(),
        );
    }
    let num = |im: &Import, key: &str, default: i64| -> i64 {
        im.setting(key)
            .and_then(|(v, _)| v.parse().ok())
            .unwrap_or(default)
    };
    let default_pool_size = num(im, "default_pool_size", 20);
    let min_pool_size = num(im, "min_pool_size", 0);
    let reserve = num(im, "reserve_pool_size", 0);
    let reserve_timeout = im
        .setting("reserve_pool_timeout")
        .map_or_else(|| "5".to_string(), |(v, _)| v.to_string());
    let max_db = num(im, "max_db_connections", 0);
    let socket_dir = match im.setting("unix_socket_dir") {
        Some((v, _)) if !v.is_empty() => v.to_string(),
        _ => "/tmp".into(),
    };
    let databases = std::mem::take(&mut im.databases);
    let mut out = Vec::new();
    for db in &databases {
        if db.key == "*" {
            im.error(format!(
                "[databases] * ({}): pg_doorman has no fallback database; list each database",
                db.at
            ));
            continue;
        }
        if super::super::ADMIN_DATABASES.contains(&db.key.as_str()) {
            im.note(format!(
                "[databases] {} ({}): not carried over: that name is pg_doorman's admin console",
                db.key, db.at
            ));
            continue;
        }
        let pairs = match ini::connstr(&db.value) {
            Ok(p) => p,
            Err(e) => {
                im.error(format!("[databases] {} ({}): {e}", db.key, db.at));
                continue;
            }
        };
        let d = Db {
            im,
            name: &db.key,
            at: &db.at,
            pairs,
        };
        let entry = d.pool(
            PoolDefaults {
                mode: &global_mode,
                pool_size: default_pool_size,
                min_pool_size,
                reserve,
                reserve_timeout: &reserve_timeout,
                max_db,
                socket_dir: &socket_dir,
            },
            auth,
        );
        if let Some(e) = entry {
            out.push(e);
        }
    }
    im.databases = databases;
    out
}

struct PoolDefaults<'a> {
    mode: &'a str,
    pool_size: i64,
    min_pool_size: i64,
    reserve: i64,
    reserve_timeout: &'a str,
    max_db: i64,
    socket_dir: &'a str,
}

struct Db<'a> {
    im: &'a mut Import,
    name: &'a str,
    at: &'a str,
    pairs: Vec<(String, String)>,
}

impl Db<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn int(&mut self, key: &str, default: i64) -> i64 {
        match self.get(key).map(str::parse::<i64>) {
            None => default,
            Some(Ok(v)) => v,
            Some(Err(_)) => {
                let e = format!(
                    "[databases] {} ({}): {key} must be an integer",
                    self.name, self.at
                );
                self.im.error(e);
                default
            }
        }
    }

    fn pool(mut self, d: PoolDefaults<'_>, auth: &Auth) -> Option<Entry> {
        let (name, at) = (self.name.to_string(), self.at.to_string());
        let here = |k: &str| format!("[databases] {name} ({at}): {k}");
        let known = [
            "dbname",
            "host",
            "port",
            "user",
            "password",
            "auth_user",
            "auth_dbname",
            "pool_size",
            "min_pool_size",
            "reserve_pool",
            "reserve_pool_size",
            "max_db_connections",
            "pool_mode",
            "client_encoding",
            "datestyle",
            "timezone",
            "application_name",
            "server_lifetime",
            "connect_query",
            "max_db_client_connections",
        ];
        for (k, _) in &self.pairs {
            if !known.contains(&k.as_str()) {
                self.im.note(format!(
                    "{}: not carried over: not a PgBouncer database parameter pg_doorman knows",
                    here(k)
                ));
            }
        }
        if let Some(q) = self.get("connect_query") {
            let q = q.to_string();
            self.im.note(format!("{}: {q:?} not carried over: pg_doorman has no connect_query; put settings in startup_parameters instead", here("connect_query")));
        }
        if self.get("max_db_client_connections").is_some() {
            self.im.note(format!(
                "{}: not carried over: pg_doorman limits clients with general.max_connections only",
                here("max_db_client_connections")
            ));
        }
        let mut pool = Vec::new();
        let host = match self.get("host") {
            None | Some("") => {
                pool.push(
                    Entry::new("server_host", s(d.socket_dir))
                        .note("no host=: PgBouncer's unix socket directory"),
                );
                None
            }
            Some(h) => Some(h.to_string()),
        };
        if let Some(h) = host {
            let mut hosts = h.split(',').map(str::trim);
            let first = hosts.next().unwrap_or_default().to_string();
            let rest: Vec<&str> = hosts.collect();
            if !rest.is_empty() {
                self.im.note(format!(
                    "{}: pg_doorman connects to one host; {first} is kept, {} dropped",
                    here("host"),
                    rest.join(", ")
                ));
            }
            if first.starts_with('@') {
                self.im.error(format!(
                    "{}: abstract unix sockets are not supported",
                    here("host")
                ));
            }
            pool.push(Entry::new("server_host", s(&first)).note(format!("host={h}")));
        }
        let port = self.int("port", 5432);
        pool.push(Entry::new("server_port", Node::Int(port)));
        if let Some(db) = self.get("dbname").filter(|d| *d != name) {
            pool.push(Entry::new("server_database", s(db)));
        }
        let mode = self
            .get("pool_mode")
            .map_or(d.mode.to_string(), str::to_ascii_lowercase);
        match mode.as_str() {
            "session" | "transaction" => pool.push(Entry::new("pool_mode", s(&mode))),
            "statement" => self.im.error(format!(
                "{}: pg_doorman has session and transaction pooling only",
                here("pool_mode = statement")
            )),
            other => self.im.error(format!(
                "{}: {other:?} is not a pool mode",
                here("pool_mode")
            )),
        }
        if let Some(a) = self.get("application_name") {
            pool.push(Entry::new("application_name", s(a)));
        }
        if let Some(v) = self.get("server_lifetime").map(str::to_string) {
            match convert("server_lifetime", &v, Conv::Secs) {
                Ok(n) => pool.push(Entry::new("server_lifetime", n)),
                Err(e) => self.im.error(format!("[databases] {name} ({at}): {e}")),
            }
        }
        let startup: Vec<Entry> = [
            ("client_encoding", "client_encoding"),
            ("datestyle", "DateStyle"),
            ("timezone", "TimeZone"),
        ]
        .iter()
        .filter_map(|(k, param)| self.get(k).map(|v| Entry::new(*param, s(v))))
        .collect();
        if !startup.is_empty() {
            pool.push(Entry::new("startup_parameters", Node::Map(startup)));
        }
        let pool_size = self.int("pool_size", d.pool_size);
        let forced = self.get("user").map(str::to_string);
        let mut max_db = self.int("max_db_connections", d.max_db);
        if forced.is_some() && max_db == 0 {
            // PgBouncer has one pool for the forced user; pg_doorman one per client user, so
            // the forced user's total is capped here instead.
            max_db = pool_size;
        }
        if max_db > 0 {
            pool.push(Entry::new("max_db_connections", Node::Int(max_db)));
        }
        let reserve = {
            let r = self.int("reserve_pool", d.reserve);
            self.int("reserve_pool_size", r)
        };
        if reserve > 0 {
            if max_db == 0 {
                self.im.note(format!("{}: reserve_pool_size {reserve} applies in pg_doorman only above max_db_connections, which this database does not set", here("reserve_pool_size")));
            }
            pool.push(Entry::new("reserve_pool_size", Node::Int(reserve)));
            match convert("reserve_pool_timeout", d.reserve_timeout, Conv::Secs) {
                Ok(n) => pool.push(Entry::new("reserve_pool_timeout", n)),
                Err(e) => self.im.error(e),
            }
        }
        let min = self.int("min_pool_size", d.min_pool_size);
        let server_password = match &forced {
            None => None,
            Some(u) => match self.get("password").map(str::to_string) {
                Some(p) => Some(p),
                None => match auth.secret(u) {
                    Some(p) if is_plain(p) => Some(p.to_string()),
                    _ => {
                        self.im.error(format!("{}: the forced user {u} needs a plaintext password (password= here, or in auth_file)", here("user")));
                        None
                    }
                },
            },
        };
        let mut users = Vec::new();
        for u in &auth.users {
            let mut e = vec![
                Entry::new("username", s(&u.user)),
                Entry::new("password", s(&u.secret)),
                Entry::new("pool_size", Node::Int(pool_size)),
            ];
            if min > 0 {
                e.push(Entry::new("min_pool_size", Node::Int(min)));
            }
            if let Some(m) = self.user_mode(&u.user) {
                e.push(Entry::new("pool_mode", s(m)));
            }
            if let (Some(f), Some(p)) = (&forced, &server_password) {
                e.push(Entry::new("server_username", s(f)));
                e.push(Entry::new("server_password", s(p)));
            }
            users.push(Node::Map(e));
        }
        let auth_user = self
            .get("auth_user")
            .map(str::to_string)
            .or_else(|| self.im.setting("auth_user").map(|(v, _)| v.to_string()));
        if let Some(au) = auth_user {
            match auth.secret(&au) {
                Some(p) if is_plain(p) => {
                    let query = self.im.setting("auth_query").map_or(DEFAULT_AUTH_QUERY, |x| x.0).to_string();
                    let mut a = vec![
                        Entry::new("query", s(query)),
                        Entry::new("user", s(&au)),
                        Entry::new("password", s(p)),
                        Entry::new("pool_size", Node::Int(pool_size)),
                    ];
                    let dbname = self.get("auth_dbname").map(str::to_string).or_else(|| self.im.setting("auth_dbname").map(|(v, _)| v.to_string()));
                    if let Some(db) = dbname {
                        a.push(Entry::new("database", s(db)));
                    }
                    pool.push(Entry::new("auth_query", Node::Map(a)).note(format!("auth_user = {au}: users not in auth_file are looked up (passthrough)")));
                }
                _ => self.im.error(format!("{}: auth_user {au} needs a plaintext password in auth_file (pg_doorman logs it in with it)", here("auth_user"))),
            }
        } else if users.is_empty() {
            self.im.error(format!("[databases] {name} ({at}): no users: auth_file lists none and there is no auth_user"));
        }
        if !users.is_empty() {
            pool.push(Entry::new("users", Node::List(users)));
        }
        let note = format!("[databases] {name} ({at})");
        Some(Entry::new(name, Node::Map(pool)).note(note))
    }

    /// The `[users]` section's pool_mode for `user`.
    fn user_mode(&mut self, user: &str) -> Option<&'static str> {
        let st = self.im.users.get(user)?.clone();
        let pairs = match ini::connstr(&st.value) {
            Ok(p) => p,
            Err(e) => {
                self.im.error(format!("[users] {user} ({}): {e}", st.at));
                return None;
            }
        };
        let mut mode = None;
        for (k, v) in pairs {
            match (k.as_str(), v.to_ascii_lowercase().as_str()) {
                ("pool_mode", "session") => mode = Some("session"),
                ("pool_mode", "transaction") => mode = Some("transaction"),
                ("pool_mode", other) => self.im.error(format!("[users] {user} ({}): pool_mode {other:?}: pg_doorman has session and transaction pooling only", st.at)),
                _ => {}
            }
        }
        mode
    }
}
