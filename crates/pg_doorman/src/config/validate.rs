//! Whole-config validation: every problem is reported with its key path, not just the first.

use super::model::{AuthQuery, Config, General, Pool, ServerTlsMode, TlsMode, User};
use std::collections::{BTreeMap, HashSet};

/// PgDoorman keys that later versions of pg_doorman implement; setting one is an error today
/// so that nobody believes it is in effect.
const NOT_YET_GENERAL: &[&str] = &[];
const NOT_YET_POOL: &[&str] = &[];
const NOT_YET_USER: &[&str] = &[];
const NOT_YET_TOP: &[&str] = &[];
const NOT_YET_WEB: &[&str] = &[
    "ui",
    "ui_anonymous",
    "log_tap_max_entries",
    "sso_enabled",
    "sso_proxy_url",
    "sso_public_key_file",
    "sso_audience",
    "sso_allowed_users",
    "trusted_proxies",
    "sso_groups_claim",
    "sso_admin_groups",
    "sso_require_https",
];

/// Keys PgDoorman removed, or that have no effect in pg_doorman, with the reason: accepted
/// with a warning naming them, so a config that loads in PgDoorman 3.10 loads here.
const ACCEPTED_GENERAL: &[(&str, &str)] = &[
    (
        "scaling_cooldown_sleep",
        "removed in PgDoorman 3.x (a checkout now waits for a returned connection instead of sleeping; tune scaling_fast_retries and scaling_max_parallel_creates); ignored",
    ),
    (
        "query_interner_gc_interval_seconds",
        "pg_doorman has no query-text interner to collect: statement texts live in the prepared-statement caches (prepared_statements_cache_size, client_anonymous_prepared_cache_size) and are freed on eviction; no effect",
    ),
    (
        "query_interner_anon_idle_ttl_seconds",
        "pg_doorman has no query-text interner to collect: anonymous statements are bounded by client_anonymous_prepared_cache_size; no effect",
    ),
];

fn accepted(key: &str) -> Option<&'static str> {
    ACCEPTED_GENERAL
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, why)| *why)
}

/// What loading accepted but an operator should hear about, one line per key.
pub fn warnings(c: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for key in c.general.unsupported.keys() {
        if let Some(why) = accepted(key) {
            out.push(format!("general.{key}: {why}"));
        }
    }
    let sync_note = "pg_doorman always restores a client's session parameters on every backend it uses in transaction mode (all it SETs, not only the five PgDoorman tracks), so false changes nothing";
    if c.general.sync_server_parameters == Some(false) {
        out.push(format!("general.sync_server_parameters: {sync_note}"));
    }
    for (name, p) in &c.pools {
        if p.auth_query
            .as_ref()
            .is_some_and(|a| a.unsupported.contains_key("default_pool_size"))
        {
            out.push(format!("pools.{name}.auth_query.default_pool_size: renamed to pool_size in PgDoorman 3.x (whose 3.10 ignores it as well); ignored, pool_size is in force"));
        }
        if p.sync_server_parameters == Some(false) {
            out.push(format!("pools.{name}.sync_server_parameters: {sync_note}"));
        }
    }
    out
}

fn extra_keys(
    path: &str,
    map: &BTreeMap<String, serde::de::IgnoredAny>,
    later: &[&str],
    out: &mut Vec<String>,
) {
    for key in map.keys() {
        if path == "general." && accepted(key).is_some() {
            continue;
        }
        if path.ends_with(".auth_query.") && key == "default_pool_size" {
            continue;
        }
        if path == "general." && key == "talos" {
            out.push("general.talos: the talos section goes at the top level of the file, beside general (as PgDoorman reads it)".into());
        } else if later.contains(&key.as_str()) {
            out.push(format!("{path}{key}: this PgDoorman setting is not implemented by this version of pg_doorman yet; remove it"));
        } else {
            out.push(format!("{path}{key}: unknown setting"));
        }
    }
}

/// Returns one message per problem; empty means valid.
pub fn check(c: &Config) -> Vec<String> {
    let mut out = Vec::new();
    extra_keys("", &c.unsupported, NOT_YET_TOP, &mut out);
    check_general(&c.general, &mut out);
    extra_keys("web.", &c.web.unsupported, NOT_YET_WEB, &mut out);
    if c.web.enabled && c.web.port == 0 {
        out.push("web.port: must be between 1 and 65535".into());
    }
    for (name, pool) in &c.pools {
        check_pool(name, pool, &c.general, &mut out);
    }
    if let Some(t) = &c.talos {
        check_talos(t, c, &mut out);
    }
    out
}

fn check_talos(t: &super::model::Talos, c: &Config, out: &mut Vec<String>) {
    extra_keys("talos.", &t.unsupported, &[], out);
    if let Err(e) = crate::talos::Talos::load(&t.keys, &t.databases) {
        out.push(format!("talos.keys: {e}"));
    }
    if !t.keys.is_empty() && t.databases.is_empty() {
        out.push("talos.databases: must name the pools Talos tokens may log in to".into());
    }
    if t.keys.is_empty() && !t.databases.is_empty() {
        out.push("talos.keys: must list at least one public key file".into());
    }
    for db in &t.databases {
        if !c.pools.contains_key(db) {
            out.push(format!(
                "talos.databases: {db:?} is not a pool in this config"
            ));
        }
    }
}

fn check_general(g: &General, out: &mut Vec<String>) {
    extra_keys("general.", &g.unsupported, NOT_YET_GENERAL, out);
    if g.port == 0 {
        out.push("general.port: must be between 1 and 65535".into());
    }
    if g.host.trim().is_empty() {
        out.push("general.host: must not be empty".into());
    }
    if g.worker_threads == 0 || g.worker_threads > 1024 {
        out.push("general.worker_threads: must be between 1 and 1024".into());
    }
    if g.worker_stack_size
        .is_some_and(|b| b.0 < 64 * 1024 || b.0 > 1 << 30)
    {
        out.push("general.worker_stack_size: must be between 64KB and 1GB".into());
    }
    if g.max_blocking_threads == Some(0) {
        out.push("general.max_blocking_threads: must be at least 1".into());
    }
    if g.tokio_global_queue_interval == Some(0) {
        out.push("general.tokio_global_queue_interval: must be at least 1".into());
    }
    if g.tokio_event_interval == Some(0) {
        out.push("general.tokio_event_interval: must be at least 1".into());
    }
    if g.max_connections == 0 {
        out.push("general.max_connections: must be at least 1".into());
    }
    if g.connect_timeout.is_zero() {
        out.push("general.connect_timeout: must be greater than 0".into());
    }
    if g.retain_connections_time.is_zero() {
        out.push("general.retain_connections_time: must be greater than 0".into());
    }
    if g.admin_username.is_empty() {
        out.push("general.admin_username: must not be empty".into());
    }
    check_client_tls(g, out);
    super::startup_params::check(&g.startup_parameters, "general.startup_parameters", out);
    if let Err(e) = g.unix_socket_mode() {
        out.push(e);
    }
    if let (Some(dir), Some(path)) = (g.unix_socket_dir(), g.unix_socket_path()) {
        if !dir.starts_with('/') {
            out.push(format!(
                "general.unix_socket_dir: {dir:?} must be an absolute path"
            ));
        } else if path.as_os_str().len() > 107 {
            // sun_path holds 108 bytes with its terminating NUL.
            out.push(format!("general.unix_socket_dir: {dir:?} is too long for a unix socket path (at most 107 bytes with \"/.s.PGSQL.<port>\")"));
        }
    }
    if let Err(e) = g.access_rules() {
        out.push(e);
    }
    if g.prepared_statements && g.prepared_statements_cache_size == 0 {
        out.push("general.prepared_statements_cache_size: must be greater than 0 while prepared_statements is on".into());
    }
    if g.scaling_warm_pool_ratio > 100 {
        out.push("general.scaling_warm_pool_ratio: a percentage, 0 to 100".into());
    }
    if g.max_concurrent_creates == 0 {
        out.push("general.max_concurrent_creates: must be at least 1".into());
    }
    if g.scaling_max_parallel_creates == 0 {
        out.push("general.scaling_max_parallel_creates: must be at least 1".into());
    }
    if g.max_memory_usage.0 < 1024 * 1024 {
        out.push("general.max_memory_usage: must be at least 1MB".into());
    }
    if g.message_size_to_be_stream.0 == 0 {
        out.push("general.message_size_to_be_stream: must be greater than 0".into());
    }
    if g.server_prepared_statements_cache_size == Some(0) {
        out.push("general.server_prepared_statements_cache_size: must be greater than 0".into());
    }
    if g.client_anonymous_prepared_cache_size.is_some()
        && g.client_prepared_statements_cache_size.is_some()
    {
        out.push("general.client_prepared_statements_cache_size: deprecated alias of client_anonymous_prepared_cache_size; set only one of them".into());
    }
}

fn check_client_tls(g: &General, out: &mut Vec<String>) {
    let certs = g.tls_certificate.is_some() && g.tls_private_key.is_some();
    if g.tls_certificate.is_some() != g.tls_private_key.is_some() {
        out.push("general.tls_certificate / tls_private_key: set both or neither".into());
    }
    if matches!(g.tls_mode, TlsMode::Require | TlsMode::VerifyFull) && !certs {
        out.push(format!(
            "general.tls_mode: {:?} needs tls_certificate and tls_private_key",
            g.tls_mode
        ));
    }
    if g.tls_mode == TlsMode::VerifyFull && g.tls_ca_cert.is_none() {
        out.push(
            "general.tls_mode: verify-full needs tls_ca_cert (the CA of client certificates)"
                .into(),
        );
    }
    if certs && let Err(e) = super::tls::client_tls(g) {
        out.push(format!("general.tls_*: {e}"));
    }
}

fn check_server_tls(path: &str, g: &General, p: Option<&Pool>, out: &mut Vec<String>) {
    let mode = p
        .and_then(|p| p.server_tls_mode)
        .unwrap_or(g.server_tls_mode);
    let ca = p
        .and_then(|p| p.server_tls_ca_cert.as_ref())
        .or(g.server_tls_ca_cert.as_ref());
    if matches!(mode, ServerTlsMode::VerifyCa | ServerTlsMode::VerifyFull) && ca.is_none() {
        out.push(format!(
            "{path}server_tls_mode: {mode:?} needs server_tls_ca_cert"
        ));
        return;
    }
    let cert = p
        .and_then(|p| p.server_tls_certificate.as_ref())
        .or(g.server_tls_certificate.as_ref());
    let key = p
        .and_then(|p| p.server_tls_private_key.as_ref())
        .or(g.server_tls_private_key.as_ref());
    if cert.is_some() != key.is_some() {
        out.push(format!(
            "{path}server_tls_certificate / server_tls_private_key: set both or neither"
        ));
        return;
    }
    let default_pool = Pool::default();
    if let Err(e) = super::tls::backend_tls(g, p.unwrap_or(&default_pool)) {
        out.push(format!("{path}server_tls_*: {e}"));
    }
}

/// Patroni-assisted fallback keys of a pool, with general's inherited: URLs that parse
/// (`http://` only), and nonzero timeouts when fallback is on.
fn check_fallback(path: &str, p: &Pool, g: &General, out: &mut Vec<String>) {
    let (urls, from) = match &p.patroni_api_urls {
        Some(u) => (u, path.to_string()),
        None => (&g.patroni_api_urls, "general.".to_string()),
    };
    for u in urls {
        if let Err(e) = doorman_patroni::ApiUrl::parse(u) {
            out.push(format!("{from}patroni_api_urls: {e}"));
        }
    }
    if urls.is_empty() {
        return;
    }
    for (key, pool, general) in [
        (
            "fallback_cooldown",
            p.fallback_cooldown,
            g.fallback_cooldown,
        ),
        (
            "patroni_api_timeout",
            p.patroni_api_timeout,
            g.patroni_api_timeout,
        ),
        (
            "fallback_connect_timeout",
            p.fallback_connect_timeout,
            g.fallback_connect_timeout,
        ),
    ] {
        if pool.unwrap_or(general).is_zero() {
            let at = if pool.is_some() { path } else { "general." };
            out.push(format!(
                "{at}{key}: must be greater than 0 while patroni_api_urls is set"
            ));
        }
    }
    if p.fallback_lifetime
        .or(g.fallback_lifetime)
        .is_some_and(|l| l.is_zero())
    {
        out.push(format!("{path}fallback_lifetime: must be greater than 0"));
    }
}

fn check_pool(name: &str, p: &Pool, g: &General, out: &mut Vec<String>) {
    let path = format!("pools.{name}.");
    extra_keys(&path, &p.unsupported, NOT_YET_POOL, out);
    let scope = format!("pools.{name}.startup_parameters");
    super::startup_params::check(&p.startup_parameters, &scope, out);
    let both = super::startup_params::merged(&g.startup_parameters, &p.startup_parameters);
    let n = super::startup_params::wire_bytes(both.iter().map(|(k, v)| (k, v)));
    if n > super::startup_params::BUDGET && p.startup_parameters.len() < both.len() {
        out.push(format!(
            "{scope}: with general.startup_parameters, {n} bytes in the StartupMessage, more than the {} allowed",
            super::startup_params::BUDGET
        ));
    }
    if name.is_empty() || name.contains('\0') {
        out.push(format!("pools.{name:?}: invalid pool name"));
    }
    if p.server_host.is_empty() {
        out.push(format!("{path}server_host: must not be empty"));
    }
    if p.server_port == 0 {
        out.push(format!("{path}server_port: must be between 1 and 65535"));
    }
    if p.connect_timeout.is_some_and(|t| t.is_zero()) {
        out.push(format!("{path}connect_timeout: must be greater than 0"));
    }
    check_fallback(&path, p, g, out);
    if p.prepared_statements_cache_size == Some(0) {
        out.push(format!(
            "{path}prepared_statements_cache_size: must be greater than 0"
        ));
    }
    if p.server_prepared_statements_cache_size == Some(0) {
        out.push(format!(
            "{path}server_prepared_statements_cache_size: must be greater than 0"
        ));
    }
    check_server_tls(&path, g, Some(p), out);
    if p.users.is_empty() && p.auth_query.is_none() {
        out.push(format!(
            "{path}users: a pool needs at least one user (or an auth_query)"
        ));
    }
    if let Some(a) = &p.auth_query {
        check_auth_query(&format!("{path}auth_query."), a, out);
    }
    let mut seen = HashSet::new();
    for (i, u) in p.users.iter().enumerate() {
        let upath = format!("{path}users[{i}].");
        if !seen.insert(u.username.as_str()) {
            out.push(format!(
                "{upath}username: duplicate user {:?} in pool {name:?}",
                u.username
            ));
        }
        check_user(&upath, u, out);
    }
}

fn check_auth_query(path: &str, a: &AuthQuery, out: &mut Vec<String>) {
    extra_keys(path, &a.unsupported, &[], out);
    if a.query.trim().is_empty() {
        out.push(format!("{path}query: must not be empty"));
    } else if !a.query.contains("$1") {
        out.push(format!(
            "{path}query: must take the login name as parameter $1"
        ));
    }
    if a.user.is_empty() {
        out.push(format!(
            "{path}user: the role that runs the query must be set"
        ));
    }
    if a.workers == 0 {
        out.push(format!("{path}workers: must be at least 1"));
    }
    if a.pool_size == 0 {
        out.push(format!("{path}pool_size: must be at least 1"));
    }
    if a.min_pool_size > a.pool_size {
        out.push(format!("{path}min_pool_size: must not exceed pool_size"));
    }
    if a.min_pool_size > 0 && a.server_user.is_some() {
        out.push(format!(
            "{path}min_pool_size: applies to passthrough mode only (server_user is set)"
        ));
    }
    if a.server_password.is_some() && a.server_user.is_none() {
        out.push(format!(
            "{path}server_password: needs server_user (dedicated mode)"
        ));
    }
    if a.cache_ttl.is_zero() {
        out.push(format!("{path}cache_ttl: must be greater than 0"));
    }
}

fn check_user(path: &str, u: &User, out: &mut Vec<String>) {
    extra_keys(path, &u.unsupported, NOT_YET_USER, out);
    if u.username.is_empty() {
        out.push(format!("{path}username: must not be empty"));
    }
    if u.pool_size == 0 {
        out.push(format!("{path}pool_size: must be at least 1"));
    }
    if u.min_pool_size.is_some_and(|m| m > u.pool_size) {
        out.push(format!("{path}min_pool_size: must not exceed pool_size"));
    }
    if let Some(key) = u.password.strip_prefix(crate::jwt::PREFIX)
        && let Err(e) = crate::jwt::JwtKey::load(key)
    {
        out.push(format!("{path}password: {e}"));
    }
    if u.auth_pam_service.as_deref() == Some("") {
        out.push(format!("{path}auth_pam_service: must not be empty"));
    }
    if u.auth_pam_service.is_some() {
        // PAM checks the password; `password` matters only as the backend's (unless
        // server_password is set).
    } else if u.password.is_empty() {
        out.push(format!("{path}password: must not be empty"));
    } else if u.password.starts_with("SCRAM-SHA-256$") {
        if doorman_wire::auth::scram::Verifier::parse(&u.password).is_err() {
            out.push(format!("{path}password: malformed SCRAM-SHA-256 verifier (expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)"));
        }
    } else if u.password.starts_with(crate::jwt::PREFIX) {
        // Checked above: the key file loads.
    } else if u.password.starts_with("md5")
        && u.password.len() == 35
        && !doorman_wire::auth::md5::is_secret(&u.password)
    {
        out.push(format!(
            "{path}password: malformed md5 hash (expected md5 followed by 32 lowercase hex digits)"
        ));
    }
    if u.server_password.is_some() && u.server_username.is_none() {
        // Allowed: log in to the backend as `username` with this password.
    }
    if u.server_lifetime
        .is_some_and(|t| t.0.as_secs() > 10 * 365 * 86400)
    {
        out.push(format!("{path}server_lifetime: unreasonably large"));
    }
}
