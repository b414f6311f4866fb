//! Per-pool settings resolved from the config once (inheritance general → pool → user, secrets
//! pre-hashed), so nothing on the hot path reads the config.

use crate::config::{Config, PoolMode, User};
use crate::net::TcpOptions;
use doorman_wire::auth::{md5, scram};
use std::time::Duration;

/// Where the backend listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddress {
    /// host:port (host may be a name, resolved at each connect).
    Tcp {
        /// Host name or IP literal.
        host: String,
        /// Port.
        port: u16,
    },
    /// Path of the unix socket file (`<dir>/.s.PGSQL.<port>`).
    Unix(String),
}

/// How the pooler proves a client's identity (pg_authid forms).
#[derive(Debug, Clone)]
pub enum ClientSecret {
    /// SCRAM-SHA-256 verifier (given, or derived from a plaintext password at load).
    Scram(scram::Verifier),
    /// MD5 secret `md5...` (given as such in the config).
    Md5(String),
    /// `jwt-pkey-fpath:<file>`: the password is a token signed with this key's private half.
    Jwt(std::sync::Arc<crate::jwt::JwtKey>),
    /// `auth_pam_service`: the password is checked by this PAM service.
    Pam(std::sync::Arc<str>),
}

impl ClientSecret {
    /// An MD5 secret of 128 random bits: no password and no crafted MD5 reply matches it
    /// (stands in where a user has no secret, so the exchange still runs and fails).
    pub fn unguessable() -> ClientSecret {
        ClientSecret::Md5(unguessable_md5())
    }
}

pub use crate::config::unguessable_md5;

/// What the pooler answers when a backend asks for a password.
#[derive(Debug, Clone)]
pub enum ServerSecret {
    /// A plaintext password: answers cleartext, MD5 and SCRAM.
    Plain(String),
    /// An MD5 secret for the backend login name: answers MD5 only.
    Md5(String),
    /// Only a SCRAM verifier is configured: answer SCRAM with the ClientKey recovered from a
    /// client's own login (PgDoorman's passthrough); the backend must store the same verifier.
    ScramPassthrough(scram::Verifier),
    /// Nothing usable: trust auth only.
    None,
}

/// The `startup_parameters` column of a dynamic pool's auth_query row.
#[derive(Debug, Clone, Default)]
pub struct RowParameters {
    /// Keys applied (they are in `startup_parameters`, over the pool's).
    pub applied: Vec<String>,
    /// Keys left out: key, value, reason (`budget`, `reserved`, `invalid_name`, `nul_byte`,
    /// `invalid_json`).
    pub left_out: Vec<(String, String, &'static str)>,
}

/// Everything a pool and its connections need, resolved.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// What this pool was built from (its pool section, all its users, and the general keys
    /// pools read), as text: a reload keeps a pool whose fingerprint did not change.
    pub fingerprint: String,
    /// Pool (database) name clients connect to.
    pub database: String,
    /// User name clients log in with.
    pub user: String,
    /// Session or transaction pooling.
    pub mode: PoolMode,
    /// Most backend connections.
    pub pool_size: usize,
    /// Connections kept open even when idle (prewarmed, replenished).
    pub min_pool_size: usize,
    /// Probe connections idle longer than this before handing them out; None = never.
    pub idle_check: Option<Duration>,
    /// The probe (`pooler_check_query`).
    pub check_query: String,
    /// `max_concurrent_creates`: one semaphore shared by every pool.
    pub global_creates: std::sync::Arc<tokio::sync::Semaphore>,
    /// `scaling_max_parallel_creates`.
    pub parallel_creates: usize,
    /// `scaling_warm_pool_ratio` (percent of pool_size created without hesitation).
    pub warm_ratio: usize,
    /// `scaling_fast_retries`: yields before creating above the warm ratio.
    pub fast_retries: u32,
    /// The database's coordinator when `max_db_connections` > 0.
    pub coordinator: Option<std::sync::Arc<super::coordinator::Coordinator>>,
    /// Patroni-assisted fallback of this pool section (`patroni_api_urls` set), shared by its
    /// users' pools.
    pub fallback: Option<std::sync::Arc<super::fallback::Fallback>>,
    /// `min_guaranteed_pool_size`.
    pub min_guaranteed_pool_size: usize,
    /// Backend connect + login timeout.
    pub connect_timeout: Duration,
    /// Longest client wait for a connection; None = forever.
    pub query_wait_timeout: Option<Duration>,
    /// `proxy_copy_data_timeout`: longest a client may leave the backend's reply untaken
    /// (its socket full) before it is disconnected and the backend freed; None = forever.
    pub client_stall_timeout: Option<Duration>,
    /// Close idle connections after this; None = never.
    pub idle_timeout: Option<Duration>,
    /// Close connections older than this when idle; None = never.
    pub server_lifetime: Option<Duration>,
    /// Rotate idle connections instead of LIFO reuse.
    pub round_robin: bool,
    /// Backend address.
    pub address: ServerAddress,
    /// Database name on the backend.
    pub server_database: String,
    /// Login name on the backend.
    pub server_user: String,
    /// Password material for the backend.
    pub server_secret: ServerSecret,
    /// Secret clients are checked against.
    pub client_secret: ClientSecret,
    /// application_name in the backend StartupMessage.
    pub application_name: Option<String>,
    /// `startup_parameters` (general's, then the pool's over them), in the backend
    /// StartupMessage after user, database and application_name; an `application_name` here
    /// replaces the pool's.
    pub startup_parameters: Vec<(String, String)>,
    /// Of a dynamic pool: what its user's auth_query row asked for (SHOW STARTUP_PARAMETERS).
    pub row_parameters: RowParameters,
    /// TCP options for backend sockets.
    pub tcp: TcpOptions,
    /// Log ParameterStatus changes of clients.
    pub log_param_changes: bool,
    /// Transparent prepared statements (transaction mode with `prepared_statements` on).
    pub prepared: bool,
    /// Mutation-tracked reset at checkin (transaction mode, `cleanup_server_connections`).
    pub cleanup: bool,
    /// Session mode with `session_backend_pid`: the backend is taken at login and its pid
    /// given to the client.
    pub backend_pid: bool,
    /// Pool-level statement cache entries (`prepared_statements_cache_size`).
    pub pool_prepared_cache: usize,
    /// Per-backend statements (`server_prepared_statements_cache_size`).
    pub server_prepared_cache: usize,
    /// Per-client anonymous statements remembered by text; 0 = unlimited
    /// (`client_anonymous_prepared_cache_size`). Named ones are never capped.
    pub client_prepared_cache: usize,
    /// `max_memory_usage` (bytes).
    pub max_memory: usize,
    /// Backend TLS (mode, verification, reloadable configuration); shared by the pool's
    /// connections.
    pub tls: std::sync::Arc<crate::tls::BackendTls>,
}

fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// TCP options from `general`.
pub fn tcp_options(c: &Config) -> TcpOptions {
    let g = &c.general;
    TcpOptions {
        no_delay: g.tcp_no_delay,
        keepalive_idle: g.tcp_keepalives_idle,
        keepalive_interval: g.tcp_keepalives_interval,
        keepalive_count: g.tcp_keepalives_count,
        linger: u64::try_from(g.tcp_so_linger).ok(),
        user_timeout_ms: g.tcp_user_timeout.0.as_millis() as u64,
        buffer_size: g.tcp_socket_buffer_size.0,
    }
}

/// How a configured password checks a client when it states the secret itself (a SCRAM
/// verifier or md5 secret); None for plaintext, whose SCRAM verifier [`Derived`] derives.
fn given_secret(password: &str) -> Option<ClientSecret> {
    if password.starts_with("SCRAM-SHA-256$")
        && let Ok(v) = scram::Verifier::parse(password)
    {
        return Some(ClientSecret::Scram(v));
    }
    md5::is_secret(password).then(|| ClientSecret::Md5(password.to_string()))
}

/// A SCRAM verifier for a plaintext password, with a fresh random salt.
fn derive(password: &str) -> scram::Verifier {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    scram::Verifier::from_password(password, &salt, scram::DEFAULT_ITERATIONS)
}

/// SCRAM verifiers derived from the plaintext passwords of the config last resolved, by
/// password. PBKDF2 costs milliseconds of CPU per password, so a reload derives only passwords
/// it has not seen; the ones the new config no longer has are forgotten.
#[derive(Debug, Default)]
pub struct Derived(parking_lot::Mutex<std::collections::HashMap<String, scram::Verifier>>);

/// What a config resolves to.
#[derive(Debug)]
pub struct Resolved {
    /// One per (pool, user) in the file.
    pub pools: Vec<PoolSettings>,
    /// The secret of `admin_password`.
    pub admin: ClientSecret,
    /// One per pool section with an `auth_query`.
    pub auth_queries: Vec<AuthQuerySettings>,
    /// The `talos` section with its keys loaded; None without keys.
    pub talos: Option<std::sync::Arc<crate::talos::Talos>>,
}

impl Derived {
    /// Resolves every (pool, user) of the validated config `c`, and its admin password, reusing
    /// verifiers derived for the same plaintext before. Blocking (PBKDF2): call it off the async workers. On error the
    /// verifiers known so far stay.
    pub fn resolve(&self, c: &Config) -> Result<Resolved, String> {
        let mut known = self.0.lock();
        let mut used = std::collections::HashMap::new();
        let mut secret = |password: &str| {
            given_secret(password).unwrap_or_else(|| {
                let v = match used.get(password).or_else(|| known.get(password)) {
                    Some(v) => scram::Verifier::clone(v),
                    None => derive(password),
                };
                used.insert(password.to_string(), v.clone());
                ClientSecret::Scram(v)
            })
        };
        let (pools, auth_queries) = resolve_with(c, &mut secret)?;
        let admin = secret(&c.general.admin_password);
        let talos = match &c.talos {
            Some(t) if !t.keys.is_empty() => {
                let mut loaded = crate::talos::Talos::load(&t.keys, &t.databases)
                    .map_err(|e| format!("talos.keys: {e}"))?;
                loaded.audience = t.audience.clone();
                loaded.issuer = t.issuer.clone();
                Some(std::sync::Arc::new(loaded))
            }
            _ => None,
        };
        *known = used;
        Ok(Resolved {
            pools,
            admin,
            auth_queries,
            talos,
        })
    }
}

fn server_secret(u: &User, server_user: &str) -> ServerSecret {
    if let Some(p) = &u.server_password {
        return ServerSecret::Plain(p.clone());
    }
    if u.password.starts_with(crate::jwt::PREFIX) || u.password.is_empty() {
        // A key file (or no password: a PAM user) is no password for PostgreSQL.
        return ServerSecret::None;
    }
    if u.password.starts_with("SCRAM-SHA-256$") {
        match scram::Verifier::parse(&u.password) {
            Ok(v) if server_user == u.username => ServerSecret::ScramPassthrough(v),
            _ => ServerSecret::None,
        }
    } else if md5::is_secret(&u.password) {
        // An md5 secret is md5(password || username): it only answers for that login name.
        if server_user == u.username {
            ServerSecret::Md5(u.password.clone())
        } else {
            ServerSecret::None
        }
    } else {
        ServerSecret::Plain(u.password.clone())
    }
}

/// The config a pool section's pools are built from, as text (see
/// [`PoolSettings::fingerprint`]). A key missing here would only make a reload keep a pool
/// it could have rebuilt; a key that does not matter only rebuilds pools needlessly.
fn fingerprint(g: &crate::config::General, p: &crate::config::Pool) -> String {
    format!(
        "{:?}",
        (
            (
                &g.server_idle_check_timeout,
                &g.pooler_check_query,
                g.scaling_max_parallel_creates,
                g.scaling_warm_pool_ratio,
                g.scaling_fast_retries,
                &g.connect_timeout,
                &g.query_wait_timeout,
                &g.proxy_copy_data_timeout,
                &g.idle_timeout,
                &g.server_lifetime,
                g.server_round_robin,
                &g.startup_parameters,
            ),
            (
                g.prepared_statements,
                g.prepared_statements_cache_size,
                g.server_prepared_statements_cache_size,
                g.client_prepared_statements_cache_size(),
                &g.max_memory_usage,
                g.max_concurrent_creates,
            ),
            (
                g.tcp_no_delay,
                g.tcp_keepalives_idle,
                g.tcp_keepalives_interval,
                g.tcp_keepalives_count,
                g.tcp_so_linger,
                &g.tcp_user_timeout,
                &g.tcp_socket_buffer_size,
            ),
            (
                &g.server_tls_mode,
                &g.server_tls_ca_cert,
                &g.server_tls_certificate,
                &g.server_tls_private_key,
                &g.server_tls_protocols,
                &g.server_tls_ciphers,
                &g.server_tls13_ciphers,
            ),
            (
                &g.patroni_api_urls,
                &g.fallback_cooldown,
                &g.patroni_api_timeout,
                &g.fallback_connect_timeout,
                &g.fallback_lifetime,
            ),
            p,
        )
    )
}

/// The section's fallback settings (pool keys over general's); None when no Patroni URL is
/// set. Errors: a URL that does not parse (validation reports it first).
fn fallback_settings(
    g: &crate::config::General,
    p: &crate::config::Pool,
) -> Result<Option<super::fallback::FallbackSettings>, String> {
    let urls = p.patroni_api_urls.as_ref().unwrap_or(&g.patroni_api_urls);
    if urls.is_empty() {
        return Ok(None);
    }
    let urls = urls
        .iter()
        .map(|u| doorman_patroni::ApiUrl::parse(u))
        .collect::<Result<Vec<_>, _>>()?;
    let cooldown = p.fallback_cooldown.unwrap_or(g.fallback_cooldown).0;
    Ok(Some(super::fallback::FallbackSettings {
        urls,
        cooldown,
        api_timeout: p.patroni_api_timeout.unwrap_or(g.patroni_api_timeout).0,
        connect_timeout: p
            .fallback_connect_timeout
            .unwrap_or(g.fallback_connect_timeout)
            .0,
        lifetime: p
            .fallback_lifetime
            .or(g.fallback_lifetime)
            .map_or(cooldown, |l| l.0),
    }))
}

/// What every pool of one `pools.<name>` section shares, resolved once per section.
struct Section<'a> {
    name: &'a str,
    g: &'a crate::config::General,
    p: &'a crate::config::Pool,
    address: ServerAddress,
    coordinator: Option<std::sync::Arc<super::coordinator::Coordinator>>,
    fallback: Option<std::sync::Arc<super::fallback::Fallback>>,
    tls: std::sync::Arc<crate::tls::BackendTls>,
    fingerprint: String,
    global_creates: std::sync::Arc<tokio::sync::Semaphore>,
    tcp: TcpOptions,
}

impl Section<'_> {
    /// The settings of user `u`'s pool in this section, checked against `client_secret`.
    fn user(&self, u: &User, client_secret: ClientSecret) -> PoolSettings {
        let (g, p) = (self.g, self.p);
        let server_user = u
            .server_username
            .clone()
            .unwrap_or_else(|| u.username.clone());
        let mode = u.pool_mode.unwrap_or(p.pool_mode);
        PoolSettings {
            fingerprint: self.fingerprint.clone(),
            database: self.name.to_string(),
            user: u.username.clone(),
            mode,
            pool_size: u.pool_size,
            min_pool_size: u.min_pool_size.unwrap_or(0),
            idle_check: nonzero(g.server_idle_check_timeout.0),
            check_query: g.pooler_check_query.clone(),
            global_creates: self.global_creates.clone(),
            parallel_creates: g.scaling_max_parallel_creates,
            warm_ratio: p
                .scaling_warm_pool_ratio
                .unwrap_or(g.scaling_warm_pool_ratio),
            fast_retries: p.scaling_fast_retries.unwrap_or(g.scaling_fast_retries),
            coordinator: self.coordinator.clone(),
            fallback: self.fallback.clone(),
            min_guaranteed_pool_size: p.min_guaranteed_pool_size,
            connect_timeout: p.connect_timeout.unwrap_or(g.connect_timeout).0,
            query_wait_timeout: nonzero(g.query_wait_timeout.0),
            client_stall_timeout: nonzero(g.proxy_copy_data_timeout.0),
            idle_timeout: nonzero(p.idle_timeout.unwrap_or(g.idle_timeout).0),
            server_lifetime: nonzero(
                u.server_lifetime
                    .or(p.server_lifetime)
                    .unwrap_or(g.server_lifetime)
                    .0,
            ),
            round_robin: g.server_round_robin,
            address: self.address.clone(),
            server_database: p
                .server_database
                .clone()
                .unwrap_or_else(|| self.name.to_string()),
            server_secret: server_secret(u, &server_user),
            server_user,
            client_secret,
            application_name: p.application_name.clone(),
            startup_parameters: crate::config::startup_params::merged(
                &g.startup_parameters,
                &p.startup_parameters,
            ),
            row_parameters: RowParameters::default(),
            tcp: self.tcp,
            log_param_changes: p.log_client_parameter_status_changes,
            cleanup: p.cleanup_server_connections && mode == PoolMode::Transaction,
            backend_pid: p.session_backend_pid && mode == PoolMode::Session,
            prepared: g.prepared_statements && mode == PoolMode::Transaction,
            pool_prepared_cache: p
                .prepared_statements_cache_size
                .unwrap_or(g.prepared_statements_cache_size),
            server_prepared_cache: p
                .server_prepared_statements_cache_size
                .or(g.server_prepared_statements_cache_size)
                .or(p.prepared_statements_cache_size)
                .unwrap_or(g.prepared_statements_cache_size),
            client_prepared_cache: g.client_prepared_statements_cache_size(),
            max_memory: usize::try_from(g.max_memory_usage.0).unwrap_or(usize::MAX),
            tls: self.tls.clone(),
        }
    }

    /// The auth_query of this section: its executor's settings (a session pool of `workers`
    /// connections logged in as `user` to `database`, outside max_db_connections) and the
    /// template every dynamic pool starts from.
    fn auth_query(&self, a: &crate::config::AuthQuery) -> AuthQuerySettings {
        let synthetic = |username: &str, pool_size, server_password: Option<String>| User {
            username: username.to_string(),
            password: String::new(),
            pool_size,
            min_pool_size: None,
            pool_mode: None,
            server_lifetime: None,
            server_username: None,
            server_password,
            auth_pam_service: None,
            unsupported: Default::default(),
        };
        // Placeholder: a dynamic pool gets the fetched secret.
        let none = ClientSecret::unguessable;
        let mut executor = self.user(
            &synthetic(&a.user, a.workers, Some(a.password.clone())),
            none(),
        );
        executor.mode = PoolMode::Session;
        executor.backend_pid = false;
        executor.prepared = false;
        executor.cleanup = false;
        executor.coordinator = None;
        executor.startup_parameters.clear();
        if let Some(db) = &a.database {
            executor.server_database = db.clone();
        }
        let server_user = a.server_user.clone().unwrap_or_default();
        let mut template = self.user(
            &synthetic(&server_user, a.pool_size, a.server_password.clone()),
            none(),
        );
        template.min_pool_size = a.min_pool_size;
        AuthQuerySettings {
            database: self.name.to_string(),
            fingerprint: self.fingerprint.clone(),
            query: a.query.clone(),
            executor,
            template,
            dedicated: a.server_user.is_some(),
            cache_ttl: a.cache_ttl.0,
            cache_failure_ttl: a.cache_failure_ttl.0,
            min_interval: a.min_interval.0,
        }
    }
}

/// One pool section's `auth_query`, resolved (COMPAT.md §1.4).
#[derive(Debug, Clone)]
pub struct AuthQuerySettings {
    /// The pool (database) name clients connect to.
    pub database: String,
    /// The section's fingerprint: a reload keeps the auth_query (cache, dynamic pools) while
    /// it is unchanged.
    pub fingerprint: String,
    /// The query, `$1` = login name.
    pub query: String,
    /// The pool that runs the query.
    pub executor: PoolSettings,
    /// What a dynamic pool is built from (user, secrets and startup parameters filled in).
    pub template: PoolSettings,
    /// Dedicated mode: one pool as `server_user` for every dynamic user.
    pub dedicated: bool,
    /// Trust a fetched secret this long.
    pub cache_ttl: Duration,
    /// Remember "no such user" this long.
    pub cache_failure_ttl: Duration,
    /// Least time between look-ups of one name after a failed password.
    pub min_interval: Duration,
}

/// Resolves every (pool, user) of a validated config, with `secret` turning each user's
/// configured password into its client secret, and every auth_query. Errors when a pool's TLS
/// files or JWT keys cannot be loaded (`pools.<name>: reason`).
fn resolve_with(
    c: &Config,
    secret: &mut dyn FnMut(&str) -> ClientSecret,
) -> Result<(Vec<PoolSettings>, Vec<AuthQuerySettings>), String> {
    let g = &c.general;
    let global_creates = std::sync::Arc::new(tokio::sync::Semaphore::new(g.max_concurrent_creates));
    let tcp = tcp_options(c);
    let mut out = Vec::new();
    let mut auth = Vec::new();
    for (name, p) in &c.pools {
        let address = if p.server_host.starts_with('/') {
            ServerAddress::Unix(format!(
                "{}/.s.PGSQL.{}",
                p.server_host.trim_end_matches('/'),
                p.server_port
            ))
        } else {
            ServerAddress::Tcp {
                host: p.server_host.clone(),
                port: p.server_port,
            }
        };
        let coordinator = (p.max_db_connections > 0).then(|| {
            std::sync::Arc::new(super::coordinator::Coordinator::new(
                name,
                super::coordinator::CoordinatorSettings {
                    max: p.max_db_connections,
                    reserve: p.reserve_pool_size,
                    reserve_timeout: p.reserve_pool_timeout.0,
                    min_lifetime: p.min_connection_lifetime.0,
                },
            ))
        });
        let tls = std::sync::Arc::new(
            crate::config::tls::backend_tls(g, p).map_err(|e| format!("pools.{name}: {e}"))?,
        );
        let fallback = fallback_settings(g, p)
            .map_err(|e| format!("pools.{name}: {e}"))?
            .map(|f| std::sync::Arc::new(super::fallback::Fallback::new(name, f)));
        let section = Section {
            name,
            g,
            p,
            address,
            coordinator,
            fallback,
            tls,
            fingerprint: fingerprint(g, p),
            global_creates: global_creates.clone(),
            tcp,
        };
        for u in &p.users {
            let client_secret = match u.password.strip_prefix(crate::jwt::PREFIX) {
                _ if u.auth_pam_service.is_some() => {
                    ClientSecret::Pam(u.auth_pam_service.as_deref().unwrap_or_default().into())
                }
                Some(path) => ClientSecret::Jwt(std::sync::Arc::new(
                    crate::jwt::JwtKey::load(path)
                        .map_err(|e| format!("pools.{name}: user {:?}: {e}", u.username))?,
                )),
                None => secret(&u.password),
            };
            out.push(section.user(u, client_secret));
        }
        if let Some(a) = &p.auth_query {
            auth.push(section.auth_query(a));
        }
    }
    Ok((out, auth))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(first: &str, second: &str) -> Config {
        Config::from_yaml(&format!(
            "general:\n  admin_password: adm\npools:\n  db:\n    users:\n      - {{username: a, password: \"{first}\"}}\n      - {{username: b, password: \"{second}\"}}\n"
        ))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn salt(s: &ClientSecret) -> Vec<u8> {
        match s {
            ClientSecret::Scram(v) => v.salt.clone(),
            ClientSecret::Md5(_) | ClientSecret::Jwt(_) | ClientSecret::Pam(_) => Vec::new(),
        }
    }

    #[test]
    fn a_reload_derives_only_new_plaintext_passwords_and_forgets_old_ones() {
        let d = Derived::default();
        let Resolved {
            pools: first,
            admin,
            ..
        } = d
            .resolve(&config("one", "two"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!salt(&admin).is_empty());
        assert_eq!(d.0.lock().len(), 3, "two users and the admin");
        // Same passwords: the very same verifiers (a fresh derivation has a fresh salt).
        let Resolved {
            pools: again,
            admin: admin_again,
            ..
        } = d
            .resolve(&config("one", "two"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(salt(&first[0].client_secret), salt(&again[0].client_secret));
        assert_eq!(salt(&first[1].client_secret), salt(&again[1].client_secret));
        assert_eq!(salt(&admin), salt(&admin_again));
        // One password changed: derived anew; the old one is no longer kept.
        let changed = d
            .resolve(&config("one", "three"))
            .unwrap_or_else(|e| panic!("{e}"))
            .pools;
        assert_eq!(
            salt(&first[0].client_secret),
            salt(&changed[0].client_secret)
        );
        assert_ne!(
            salt(&first[1].client_secret),
            salt(&changed[1].client_secret)
        );
        let known = d.0.lock();
        assert!(known.contains_key("three") && !known.contains_key("two"));
        assert_eq!(known.len(), 3);
    }

    #[test]
    fn given_secrets_are_used_as_they_are() {
        let md5 = "md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let d = Derived::default();
        let pools = d
            .resolve(&config(md5, "p"))
            .unwrap_or_else(|e| panic!("{e}"))
            .pools;
        assert!(matches!(&pools[0].client_secret, ClientSecret::Md5(s) if s == md5));
        assert!(!d.0.lock().contains_key(md5), "only plaintext is derived");
    }
}
