//! Config structs mirroring PgDoorman's keys (COMPAT.md §1) with their defaults.
//!
//! Keys of PgDoorman that this version does not implement yet are collected in `unsupported`
//! maps and rejected at load with a clear message (see `validate.rs`), never silently ignored.

use super::units::{ByteSize, Millis};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole config file.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct Config {
    /// `general` section.
    pub general: General,
    /// `pools.<name>` sections, by pool (database) name.
    pub pools: BTreeMap<String, Pool>,
    /// `web` section (alias `prometheus`): the /metrics listener.
    #[serde(alias = "prometheus")]
    pub web: Web,
    /// `include.files`: more config files merged into this one (config/include.rs); an
    /// empty `include:` (PgDoorman's sample config has one) is no include.
    pub include: Option<Include>,
    /// `talos` section: logins as user `talos` with a signed token (src/talos.rs).
    pub talos: Option<Talos>,
    /// Unknown sections.
    #[serde(flatten, skip_serializing)]
    pub unsupported: BTreeMap<String, IgnoredAny>,
    /// The file this config was read from (SIGHUP re-reads it).
    #[serde(skip)]
    pub source: Option<std::path::PathBuf>,
    /// What loading it noticed but accepted (keys PgDoorman removed or that have no effect
    /// here), one line each naming the key; logged at start and reload, printed by `-t`.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// `include` section (COMPAT.md §1.6).
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Include {
    /// Files merged in order after the main one; a relative name is looked up in the main
    /// file's directory, then in the working directory.
    pub files: Vec<String>,
}

/// `talos` section (COMPAT.md §1.6; PgDoorman's config/talos.rs).
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct Talos {
    /// PEM public keys (RSA for RS256, P-256 for ES256); a key's file name without its
    /// extension is the `kid` a token names in its header.
    pub keys: Vec<String>,
    /// The pool (database) names Talos tokens may log in to.
    pub databases: Vec<String>,
    /// When set, a token's `aud` (a string or a list) must contain it (RFC 7519 §4.1.3).
    /// pg_doorman's own key: PgDoorman checks no audience.
    pub audience: Option<String>,
    /// When set, a token's `iss` must equal it (RFC 7519 §4.1.1); pg_doorman's own key.
    pub issuer: Option<String>,
    /// Unknown keys.
    #[serde(flatten, skip_serializing)]
    pub unsupported: BTreeMap<String, IgnoredAny>,
}

/// `web` / `prometheus` section (COMPAT.md §1.5): the HTTP listener serving /metrics.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Web {
    /// Serve `GET /metrics` (docs/admin.md).
    pub enabled: bool,
    /// Listen address.
    pub host: String,
    /// Listen port.
    pub port: u16,
    /// Keys of the web UI and SSO, not implemented yet, and unknown keys.
    #[serde(flatten, skip_serializing)]
    pub unsupported: BTreeMap<String, IgnoredAny>,
}

impl Default for Web {
    fn default() -> Self {
        Web {
            enabled: false,
            host: "0.0.0.0".into(),
            port: 9127,
            unsupported: BTreeMap::new(),
        }
    }
}

pub use crate::tls::{ServerTlsMode, TlsMode};

/// `general` section (COMPAT.md §1.1).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct General {
    /// Listen address (IPv4/IPv6 literal or hostname).
    pub host: String,
    /// Listen port.
    pub port: u16,
    /// listen(2) backlog; 0 = max_connections.
    pub backlog: u32,
    /// Tokio worker threads; 1 runs the single-threaded scheduler (least CPU per transaction, and per
    /// login: under connection churn 2 workers cost about 1.3× the CPU of 1 per connection,
    /// bench/results/churn.md).
    pub worker_threads: usize,
    /// Pin worker thread *i* to the *i*-th CPU the process may use (round-robin; with 1 worker, the
    /// main thread); blocking-pool threads (PBKDF2, hostname lookups) may run on any of them; a failed
    /// pin is logged and the thread runs unpinned.
    pub worker_cpu_affinity_pinning: bool,
    /// Stack of runtime threads, 64KB–1GB; unset = tokio's default (2 MiB).
    pub worker_stack_size: Option<ByteSize>,
    /// Most threads for blocking work (PBKDF2 of plaintext passwords at reload, hostname lookups);
    /// unset = tokio's default (512).
    pub max_blocking_threads: Option<usize>,
    /// Scheduler ticks between looks at the shared task queue; ≥ 1; unset = tokio's default.
    pub tokio_global_queue_interval: Option<u32>,
    /// Scheduler ticks between polls for socket and timer events while tasks keep a worker busy; ≥ 1;
    /// unset = tokio's default (61).
    pub tokio_event_interval: Option<u32>,
    /// A comment field of PgDoorman's generated configs; accepted and ignored.
    pub tokio_settings_note: Option<String>,
    /// Backend connect + login timeout.
    pub connect_timeout: Millis,
    /// Longest a client waits for a backend; then ERROR 53300, the client stays usable; 0 = forever.
    pub query_wait_timeout: Millis,
    /// A client that takes none of a reply waiting for it (its socket full while the backend's rows or
    /// COPY data wait) this long is closed and its backend freed (closed: it stopped mid-reply); 0 =
    /// wait forever. PgDoorman bounds the write of streamed data with it.
    pub proxy_copy_data_timeout: Millis,
    /// Close backend connections that served a client and stayed idle this long (±20 % per connection;
    /// checked every retain_connections_time); 0 = never.
    pub idle_timeout: Millis,
    /// Close backend connections older than this (±20 % per connection; at release, and when idle by
    /// the retain cycle); 0 = never.
    pub server_lifetime: Millis,
    /// How often idle connections are checked against idle_timeout / server_lifetime, and
    /// min_pool_size replenished.
    pub retain_connections_time: Millis,
    /// Most idle connections closed per retain cycle across pools (oldest first, pools in random
    /// order); 0 = no limit.
    pub retain_connections_max: usize,
    /// A connection idle longer than this answers pooler_check_query before a client gets it (replaced
    /// if it fails); 0 = never.
    pub server_idle_check_timeout: Millis,
    /// The probe query (`;`, an empty query, by default).
    pub pooler_check_query: String,
    /// Most backend connects in flight at once, across pools.
    pub max_concurrent_creates: usize,
    /// Most backend connects in flight at once per pool (a burst of clients does not become a storm of
    /// logins).
    pub scaling_max_parallel_creates: usize,
    /// Percent of pool_size opened at once on demand; above it a checkout first retries (per-pool
    /// override).
    pub scaling_warm_pool_ratio: usize,
    /// Yields to look for a returned connection before opening one above the warm ratio (per-pool
    /// override).
    pub scaling_fast_retries: u32,
    /// Longest a graceful shutdown (SIGTERM, SIGINT without a terminal, admin SHUTDOWN) or a binary
    /// upgrade waits for clients to finish their transactions; those still busy then are closed
    /// (docs/lifecycle.md).
    pub shutdown_timeout: Millis,
    /// Most clients; more get FATAL 53300 "sorry, too many clients already".
    pub max_connections: usize,
    /// Admin console user (database `pgdoorman` or `pgbouncer`; docs/admin.md).
    pub admin_username: String,
    /// Admin console password: plaintext, an `md5` secret or a SCRAM verifier.
    pub admin_password: String,
    /// TCP keepalive idle time (seconds); 0 = kernel default.
    pub tcp_keepalives_idle: u64,
    /// TCP keepalive probe interval (seconds).
    pub tcp_keepalives_interval: u64,
    /// TCP keepalive probe count.
    pub tcp_keepalives_count: u32,
    /// SO_LINGER seconds on sockets (0 = RST on close); negative = system default.
    pub tcp_so_linger: i64,
    /// TCP_NODELAY.
    pub tcp_no_delay: bool,
    /// TCP_USER_TIMEOUT (Linux) on client and backend sockets; 0 = off. **A bare number is seconds**,
    /// as in PgDoorman (unlike the other durations, where it is ms); `"500ms"` and the other units
    /// work too.
    #[serde(deserialize_with = "super::units::seconds_default")]
    pub tcp_user_timeout: Millis,
    /// SO_SNDBUF/SO_RCVBUF bytes; 0 = kernel autotuning.
    pub tcp_socket_buffer_size: ByteSize,
    /// Also listen on the unix socket `<dir>/.s.PGSQL.<port>` (what `psql -h <dir>` and libpq's
    /// `host=<dir>` connect to); an absolute path; unset or `""` = TCP only. A socket file left by a
    /// process that is gone is replaced; one a live process answers on stops the start. The file is
    /// removed at shutdown and handed over (not removed) on a binary upgrade, whose new process takes
    /// the socket and its clients over. pg_hba `local` lines apply to its clients; SHOW CLIENTS shows
    /// them as `[local]`.
    pub unix_socket_dir: Option<String>,
    /// File mode of the socket, octal string (`"0660"`: the group too, `"0777"`: everyone).
    pub unix_socket_mode: String,
    /// SO_SNDBUF/SO_RCVBUF of unix-socket clients; 0 = the kernel's default.
    pub unix_socket_buffer_size: ByteSize,
    /// PgDoorman: replay the client's client_encoding, DateStyle, TimeZone,
    /// standard_conforming_strings and application_name on each backend in transaction mode.
    /// pg_doorman always does (for every parameter a client SETs, not only those), so `true` is its
    /// behaviour and `false` is accepted with a warning that it changes nothing.
    pub sync_server_parameters: Option<bool>,
    /// Log each accepted client.
    pub log_client_connections: bool,
    /// Log each client that leaves.
    pub log_client_disconnections: bool,
    /// False: reuse the most recently used idle backend (LIFO); true: rotate.
    pub server_round_robin: bool,
    /// Client TLS: `disable`, `allow`, `require`, `verify-full` (docs/tls.md).
    pub tls_mode: TlsMode,
    /// Backend TLS: `disable`, `allow`, `prefer`, `require`, `verify-ca`, `verify-full`.
    pub server_tls_mode: ServerTlsMode,
    /// PEM certificate (chain) presented to clients.
    pub tls_certificate: Option<String>,
    /// PEM private key of tls_certificate.
    pub tls_private_key: Option<String>,
    /// PEM CA bundle client certificates must chain to (`verify-full`).
    pub tls_ca_cert: Option<String>,
    /// Most client TLS handshakes per second; excess ones wait; 0 = no limit.
    pub tls_rate_limit_per_second: u32,
    /// Client-side TLS versions: `tlsv1.2`, `tlsv1.3`, `secure` (both; default).
    pub tls_protocols: String,
    /// Client-side TLS 1.2 cipher suites (IANA names); empty = rustls defaults.
    pub tls_ciphers: String,
    /// Client-side TLS 1.3 cipher suites; empty = rustls defaults.
    pub tls13_ciphers: String,
    /// PEM CA bundle (several CAs allowed) for backend certificates.
    pub server_tls_ca_cert: Option<String>,
    /// PEM client certificate for mTLS to PostgreSQL.
    pub server_tls_certificate: Option<String>,
    /// PEM private key of server_tls_certificate.
    pub server_tls_private_key: Option<String>,
    /// Backend-side TLS versions (as tls_protocols).
    pub server_tls_protocols: String,
    /// Backend-side TLS 1.2 cipher suites.
    pub server_tls_ciphers: String,
    /// Backend-side TLS 1.3 cipher suites.
    pub server_tls13_ciphers: String,
    /// Log to syslog (`/dev/log`, facility daemon) under this name instead of stderr.
    pub syslog_prog_name: Option<String>,
    /// Where `--daemon` writes its pid once the listener is up; removed on exit; a file naming a
    /// process that is gone is replaced, one naming a running process stops the start
    /// (docs/lifecycle.md).
    pub daemon_pid_file: String,
    /// Process-wide cap on bytes held for client messages read whole (Parse); a Parse past it ends its
    /// client with FATAL 53200.
    pub max_memory_usage: ByteSize,
    /// DataRow/CopyData/FunctionCallResponse larger than this are streamed; pg_doorman streams every
    /// message larger than its read buffer (16 KiB), so the value is always honoured.
    pub message_size_to_be_stream: ByteSize,
    /// Transparent prepared statements in transaction mode (docs/pooling.md).
    pub prepared_statements: bool,
    /// Statements per pool cache (LRU); must be > 0 while prepared_statements is on.
    pub prepared_statements_cache_size: usize,
    /// Statements each backend keeps prepared (LRU); evicted ones are closed after the batch; unset =
    /// prepared_statements_cache_size.
    pub server_prepared_statements_cache_size: Option<usize>,
    /// Anonymous statements each client remembers by text (LRU, oldest dropped past it); 0 =
    /// unlimited; unset = prepared_statements_cache_size. Named statements are never evicted: they
    /// live until Close/DEALLOCATE, as in PgDoorman since 3.7.0 (before, an evicted name failed the
    /// next Bind with 26000).
    pub client_anonymous_prepared_cache_size: Option<usize>,
    /// Deprecated alias of client_anonymous_prepared_cache_size (warns on load).
    pub client_prepared_statements_cache_size: Option<usize>,
    /// Patroni REST endpoints (`["http://10.0.0.1:8008", "http://10.0.0.2:8008"]`, asked at once)
    /// for Patroni-assisted fallback in every pool: when a pool's backend refuses connections (refused,
    /// unreachable, timed out, 57P03), new connections go to a cluster member `/cluster` lists (the
    /// leader first, then sync standbys, then the rest) for fallback_cooldown; empty = off
    /// (docs/patroni.md). `http://` only.
    pub patroni_api_urls: Vec<String>,
    /// How long a pool's backend counts as down after it refused; new connections go to the fallback
    /// member meanwhile, then the backend is tried again.
    pub fallback_cooldown: Millis,
    /// Limit of one `/cluster` request (all URLs are asked at once, so also of a discovery).
    pub patroni_api_timeout: Millis,
    /// Connect + login limit per fallback candidate, and the first backoff of a candidate that failed
    /// (doubling per failure, at most 60 s).
    pub fallback_connect_timeout: Millis,
    /// server_lifetime of fallback connections, so the pool returns to its backend soon after it is
    /// back; unset = fallback_cooldown.
    pub fallback_lifetime: Option<Millis>,
    /// Client access rules in pg_hba.conf syntax: `{path: /etc/pg_doorman/pg_hba.conf}` or `{content:
    /// "host all all 10.0.0.0/8 scram-sha-256"}`; reloaded on SIGHUP (configuration-guide.md, "Client
    /// access").
    pub pg_hba: Option<PgHba>,
    /// Legacy allow-list of client networks (`["10.0.0.0/8"]`): others are refused (unix-socket
    /// clients are let in: the socket's mode guards it); not together with `pg_hba`.
    pub hba: Vec<String>,
    /// Settings put in every backend's StartupMessage (`{work_mem: 64MB, statement_timeout: 5000, jit:
    /// off}`): the session defaults PostgreSQL starts with and RESET returns to. Names as GUCs
    /// (`[A-Za-z_][A-Za-z0-9_.]*`); `user`, `database`, `replication`, `options` and `_pq_.*` refused;
    /// no NUL; at most 9 488 bytes on the wire (`key\0value\0` each: PostgreSQL's 10 000-byte
    /// StartupMessage cap less 512 for pg_doorman's own keys). A parameter PostgreSQL refuses fails
    /// logins with PostgreSQL's own error (e.g. 42704), counted in
    /// `pg_doorman_backend_startup_parameter_errors_total{pool,sqlstate}`. SHOW STARTUP_PARAMETERS
    /// lists them.
    #[serde(deserialize_with = "super::startup_params::deserialize")]
    pub startup_parameters: BTreeMap<String, String>,
    /// Keys we recognise but do not implement yet, and unknown keys.
    #[serde(flatten, skip_serializing)]
    pub unsupported: BTreeMap<String, IgnoredAny>,
}

impl Default for General {
    fn default() -> Self {
        General {
            host: "0.0.0.0".into(),
            port: 5432,
            backlog: 0,
            worker_threads: 4,
            worker_cpu_affinity_pinning: false,
            worker_stack_size: None,
            max_blocking_threads: None,
            tokio_global_queue_interval: None,
            tokio_event_interval: None,
            tokio_settings_note: None,
            connect_timeout: Millis::secs(3),
            query_wait_timeout: Millis::secs(5),
            patroni_api_urls: Vec::new(),
            fallback_cooldown: Millis::secs(30),
            patroni_api_timeout: Millis::secs(5),
            fallback_connect_timeout: Millis::secs(5),
            fallback_lifetime: None,
            proxy_copy_data_timeout: Millis::secs(15),
            idle_timeout: Millis::secs(600),
            server_lifetime: Millis::secs(1200),
            retain_connections_time: Millis::secs(30),
            retain_connections_max: 3,
            // PgDoorman's default (COMPAT.md); its 2.x changelog said 30 s.
            server_idle_check_timeout: Millis::secs(60),
            pooler_check_query: ";".into(),
            max_concurrent_creates: 4,
            scaling_max_parallel_creates: 2,
            scaling_warm_pool_ratio: 20,
            scaling_fast_retries: 10,
            shutdown_timeout: Millis::secs(10),
            max_connections: 8192,
            admin_username: "admin".into(),
            admin_password: "admin".into(),
            tcp_keepalives_idle: 5,
            tcp_keepalives_interval: 5,
            tcp_keepalives_count: 5,
            tcp_so_linger: 0,
            tcp_no_delay: true,
            tcp_user_timeout: Millis::secs(60),
            tcp_socket_buffer_size: ByteSize(0),
            unix_socket_dir: None,
            unix_socket_mode: "0600".into(),
            unix_socket_buffer_size: ByteSize(1024 * 1024),
            sync_server_parameters: None,
            log_client_connections: true,
            log_client_disconnections: true,
            server_round_robin: false,
            tls_mode: TlsMode::Allow,
            server_tls_mode: ServerTlsMode::Allow,
            tls_certificate: None,
            tls_private_key: None,
            tls_ca_cert: None,
            tls_rate_limit_per_second: 0,
            tls_protocols: String::new(),
            tls_ciphers: String::new(),
            tls13_ciphers: String::new(),
            server_tls_ca_cert: None,
            server_tls_certificate: None,
            server_tls_private_key: None,
            server_tls_protocols: String::new(),
            server_tls_ciphers: String::new(),
            server_tls13_ciphers: String::new(),
            syslog_prog_name: None,
            daemon_pid_file: "/tmp/pg_doorman.pid".into(),
            max_memory_usage: ByteSize(256 * 1024 * 1024),
            message_size_to_be_stream: ByteSize(1024 * 1024),
            prepared_statements: true,
            prepared_statements_cache_size: 8192,
            server_prepared_statements_cache_size: None,
            client_anonymous_prepared_cache_size: None,
            client_prepared_statements_cache_size: None,
            pg_hba: None,
            hba: Vec::new(),
            startup_parameters: BTreeMap::new(),
            unsupported: BTreeMap::new(),
        }
    }
}

/// Where the pg_hba rules come from: a file, or the text inline.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PgHba {
    /// A pg_hba.conf file (read at start and on SIGHUP).
    pub path: Option<String>,
    /// The rules themselves.
    pub content: Option<String>,
}

impl PgHba {
    /// The rules' text; errors name the file.
    pub fn text(&self) -> Result<String, String> {
        match (&self.path, &self.content) {
            (Some(p), None) => std::fs::read_to_string(p)
                .map_err(|e| format!("general.pg_hba.path: cannot read {p}: {e}")),
            (None, Some(c)) => Ok(c.clone()),
            _ => Err("general.pg_hba: set exactly one of path and content".into()),
        }
    }
}

impl General {
    /// `unix_socket_dir` when set to a directory (empty counts as unset, as in PgBouncer).
    pub fn unix_socket_dir(&self) -> Option<&str> {
        self.unix_socket_dir.as_deref().filter(|d| !d.is_empty())
    }

    /// The socket file PostgreSQL's clients look for (libpq `host=<dir>`):
    /// `<unix_socket_dir>/.s.PGSQL.<port>`; None without a unix_socket_dir.
    pub fn unix_socket_path(&self) -> Option<std::path::PathBuf> {
        let dir = self.unix_socket_dir()?;
        Some(std::path::Path::new(dir).join(format!(".s.PGSQL.{}", self.port)))
    }

    /// `unix_socket_mode` as mode bits; errors say what is wrong.
    pub fn unix_socket_mode(&self) -> Result<u32, String> {
        let m = self.unix_socket_mode.trim();
        let digits = m.strip_prefix("0o").unwrap_or(m);
        match u32::from_str_radix(digits, 8) {
            Ok(v) if v <= 0o777 && !digits.is_empty() => Ok(v),
            _ => Err(format!(
                "general.unix_socket_mode: {m:?} is not an octal file mode such as \"0600\" or \"0777\""
            )),
        }
    }

    /// The client access rules: pg_hba, else the legacy hba list, else None (everyone may
    /// try to log in). Errors say which key and line.
    pub fn access_rules(&self) -> Result<Option<crate::hba::Hba>, String> {
        match (&self.pg_hba, self.hba.is_empty()) {
            (Some(_), false) => {
                Err("general.hba and general.pg_hba cannot be used together".into())
            }
            (Some(h), true) => crate::hba::Hba::parse(&h.text()?)
                .map(Some)
                .map_err(|e| format!("general.pg_hba: {e}")),
            (None, false) => crate::hba::Hba::from_cidrs(&self.hba)
                .map(Some)
                .map_err(|e| format!("general.hba: {e}")),
            (None, true) => Ok(None),
        }
    }

    /// Per-client statement cap from either key name; 0 = unlimited.
    pub fn client_prepared_statements_cache_size(&self) -> usize {
        self.client_anonymous_prepared_cache_size
            .or(self.client_prepared_statements_cache_size)
            .unwrap_or(self.prepared_statements_cache_size)
    }
}

/// Pool mode (COMPAT.md §4.2). There is no statement mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// The backend returns to the pool at each ReadyForQuery 'I'.
    #[default]
    Transaction,
    /// The backend is held for the client's whole session.
    Session,
}

impl PoolMode {
    /// Lower-case name as shown by SHOW POOLS.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Transaction => "transaction",
            PoolMode::Session => "session",
        }
    }
}

/// `pools.<name>` section (COMPAT.md §1.2).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Pool {
    /// IP, hostname, or a unix-socket directory (starts with `/`; connects to
    /// `<dir>/.s.PGSQL.<server_port>`).
    pub server_host: String,
    /// Backend port.
    pub server_port: u16,
    /// Database on the server; unset = the pool name.
    pub server_database: Option<String>,
    /// Pool mode of users that do not set one: `transaction` or `session` (there is no statement
    /// mode).
    pub pool_mode: PoolMode,
    /// Overrides general.connect_timeout.
    pub connect_timeout: Option<Millis>,
    /// Overrides general.idle_timeout.
    pub idle_timeout: Option<Millis>,
    /// Overrides general.server_lifetime.
    pub server_lifetime: Option<Millis>,
    /// `application_name` in the backend StartupMessage (an `application_name` in startup_parameters
    /// wins).
    pub application_name: Option<String>,
    /// Log ParameterStatus changes of clients.
    pub log_client_parameter_status_changes: bool,
    /// As general.sync_server_parameters, for this pool.
    pub sync_server_parameters: Option<bool>,
    /// Backend TLS mode for this pool.
    pub server_tls_mode: Option<ServerTlsMode>,
    /// Overrides general.server_tls_ca_cert.
    pub server_tls_ca_cert: Option<String>,
    /// Overrides general.server_tls_certificate.
    pub server_tls_certificate: Option<String>,
    /// Overrides general.server_tls_private_key.
    pub server_tls_private_key: Option<String>,
    /// Transaction mode: reset what a client left (SET → RESET ALL, PREPARE → DEALLOCATE ALL, DECLARE
    /// → CLOSE ALL, LISTEN → UNLISTEN *, temp tables → DISCARD TEMP) at checkin, unless it cleaned up
    /// itself.
    pub cleanup_server_connections: bool,
    /// Session mode: take the backend at login and give the client its real process id in
    /// BackendKeyData (pg_doorman's own secret routes cancels); `false`: pg_doorman's ids, backend at
    /// the first request (docs/pooling.md).
    pub session_backend_pid: bool,
    /// Overrides general.scaling_warm_pool_ratio.
    pub scaling_warm_pool_ratio: Option<usize>,
    /// Overrides general.scaling_fast_retries.
    pub scaling_fast_retries: Option<u32>,
    /// Pool coordinator: cap on backend connections across this pool's users; 0 = off
    /// (docs/pooling.md).
    pub max_db_connections: usize,
    /// Connections younger than this are not evicted for another user.
    pub min_connection_lifetime: Millis,
    /// Connections allowed above max_db_connections when nothing can be evicted.
    pub reserve_pool_size: usize,
    /// How long a connect waits for a returned place before failing (53300).
    pub reserve_pool_timeout: Millis,
    /// Connections of each user never evicted for another user.
    pub min_guaranteed_pool_size: usize,
    /// Overrides general.prepared_statements_cache_size.
    pub prepared_statements_cache_size: Option<usize>,
    /// Overrides general.server_prepared_statements_cache_size.
    pub server_prepared_statements_cache_size: Option<usize>,
    /// Overrides general.patroni_api_urls (`[]` turns fallback off for this pool).
    pub patroni_api_urls: Option<Vec<String>>,
    /// Overrides general.fallback_cooldown.
    pub fallback_cooldown: Option<Millis>,
    /// Overrides general.patroni_api_timeout.
    pub patroni_api_timeout: Option<Millis>,
    /// Overrides general.fallback_connect_timeout.
    pub fallback_connect_timeout: Option<Millis>,
    /// Overrides general.fallback_lifetime.
    pub fallback_lifetime: Option<Millis>,
    /// Over general.startup_parameters, key by key (same rules).
    #[serde(deserialize_with = "super::startup_params::deserialize")]
    pub startup_parameters: BTreeMap<String, String>,
    /// List (YAML) or indexed tables (TOML `[pools.db.users.0]`); may be empty with an auth_query.
    #[serde(deserialize_with = "super::users::deserialize")]
    pub users: Vec<User>,
    /// Users not listed in `users` are looked up in PostgreSQL (configuration-guide.md, "Dynamic
    /// users").
    pub auth_query: Option<AuthQuery>,
    /// Keys we recognise but do not implement yet, and unknown keys.
    #[serde(flatten, skip_serializing)]
    pub unsupported: BTreeMap<String, IgnoredAny>,
}

/// `pools.<name>.auth_query` (COMPAT.md §1.4, PgDoorman 3.3+ with 3.10's names): the secret of
/// a user who is not in `users` is fetched from PostgreSQL at login, cached, and the user gets
/// a pool of its own (passthrough) or shares one backend role's pool (dedicated).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct AuthQuery {
    /// SQL with one parameter `$1` (the login name); returns a column `passwd` or `password`
    /// (or a single column) holding an MD5 secret or SCRAM verifier, and optionally a column
    /// `startup_parameters` (JSON object, passthrough mode).
    pub query: String,
    /// Role that runs the query.
    pub user: String,
    /// Its password (plaintext).
    pub password: String,
    /// Database the query runs in; defaults to the pool's server_database.
    pub database: Option<String>,
    /// Backend connections that run queries (PgDoorman's old `pool_size`).
    pub workers: usize,
    /// Set: dedicated mode, every dynamic user shares one pool logged in as this role.
    /// Unset: passthrough, each user gets its own pool logged in as itself.
    pub server_user: Option<String>,
    /// Password of `server_user` (plaintext).
    pub server_password: Option<String>,
    /// Backend connections per dynamic pool.
    pub pool_size: usize,
    /// Connections each passthrough pool keeps open (such pools are never collected).
    pub min_pool_size: usize,
    /// How long a fetched secret is trusted.
    pub cache_ttl: Millis,
    /// How long "no such user" is remembered.
    pub cache_failure_ttl: Millis,
    /// Least time between two look-ups of one name after a failed password.
    pub min_interval: Millis,
    /// Keys we recognise but do not implement yet, and unknown keys.
    #[serde(flatten, skip_serializing)]
    pub unsupported: BTreeMap<String, IgnoredAny>,
}

impl Default for AuthQuery {
    fn default() -> Self {
        AuthQuery {
            query: String::new(),
            user: String::new(),
            password: String::new(),
            database: None,
            workers: 2,
            server_user: None,
            server_password: None,
            pool_size: 40,
            min_pool_size: 0,
            cache_ttl: Millis::secs(3600),
            cache_failure_ttl: Millis::secs(30),
            min_interval: Millis::secs(1),
            unsupported: BTreeMap::new(),
        }
    }
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            server_host: "127.0.0.1".into(),
            server_port: 5432,
            server_database: None,
            pool_mode: PoolMode::Transaction,
            connect_timeout: None,
            idle_timeout: None,
            server_lifetime: None,
            application_name: None,
            log_client_parameter_status_changes: false,
            sync_server_parameters: None,
            server_tls_mode: None,
            server_tls_ca_cert: None,
            server_tls_certificate: None,
            server_tls_private_key: None,
            cleanup_server_connections: true,
            session_backend_pid: true,
            scaling_warm_pool_ratio: None,
            scaling_fast_retries: None,
            max_db_connections: 0,
            min_connection_lifetime: Millis::secs(30),
            reserve_pool_size: 0,
            reserve_pool_timeout: Millis::secs(3),
            min_guaranteed_pool_size: 0,
            prepared_statements_cache_size: None,
            server_prepared_statements_cache_size: None,
            patroni_api_urls: None,
            fallback_cooldown: None,
            patroni_api_timeout: None,
            fallback_connect_timeout: None,
            fallback_lifetime: None,
            startup_parameters: BTreeMap::new(),
            users: Vec::new(),
            auth_query: None,
            unsupported: BTreeMap::new(),
        }
    }
}

/// `pools.<name>.users[]` entry (COMPAT.md §1.3).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct User {
    /// Name clients log in with.
    pub username: String,
    /// Plaintext (a SCRAM verifier is derived at load), `md5<32 hex>`,
    /// `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` as in pg_authid, or `jwt-pkey-fpath:<PEM
    /// public key file>` (configuration-guide.md, "JWT logins").
    pub password: String,
    /// Most backend connections for this user in this pool.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Connections opened at start and kept (replenished by the retain cycle; failures logged once,
    /// then every 10 minutes); ≤ pool_size.
    #[serde(default)]
    pub min_pool_size: Option<usize>,
    /// Overrides the pool's pool_mode.
    #[serde(default)]
    pub pool_mode: Option<PoolMode>,
    /// Overrides the pool's server_lifetime.
    #[serde(default)]
    pub server_lifetime: Option<Millis>,
    /// Backend login name; unset = `username`.
    #[serde(default)]
    pub server_username: Option<String>,
    /// Backend password (plaintext). Unset (passthrough): a plaintext `password` is used; an `md5`
    /// secret answers MD5 challenges; a SCRAM verifier answers SCRAM with the ClientKey recovered from
    /// the user's own login (copy the verifier from `pg_authid`: salt and iterations must match the
    /// server's). Passthrough needs `server_username` unset or equal to `username`.
    #[serde(default)]
    pub server_password: Option<String>,
    /// Check the password (asked in clear text) with this PAM service (`/etc/pam.d/<service>`) instead
    /// of `password` (configuration-guide.md, "PAM logins").
    #[serde(default)]
    pub auth_pam_service: Option<String>,
    /// Keys we recognise but do not implement yet, and unknown keys.
    #[serde(flatten, skip_serializing)]
    pub unsupported: BTreeMap<String, IgnoredAny>,
}

fn default_pool_size() -> usize {
    40
}
