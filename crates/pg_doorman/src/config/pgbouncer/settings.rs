//! `[pgbouncer]` settings: which map to a `general` key (with PgBouncer's default where it
//! differs from ours, so the imported pooler behaves as the PgBouncer did), and why the others
//! have no equivalent. Defaults are PgBouncer 1.25's (doc/config.md).

use super::super::emit::{Entry, Node, s};
use super::Import;

/// How a PgBouncer value is converted.
#[derive(Debug, Clone, Copy)]
pub enum Conv {
    /// Copied as a string.
    Str,
    /// An integer.
    Int,
    /// PgBouncer's booleans (`0`/`1`, `yes`/`no`, `on`/`off`, `true`/`false`).
    Bool,
    /// Seconds, possibly fractional (`0.5`), written as a duration in ms.
    Secs,
    /// Milliseconds (tcp_user_timeout).
    Millis,
}

/// A `[pgbouncer]` key that becomes a `general` key: (PgBouncer key, our key, conversion,
/// PgBouncer's default when it differs from pg_doorman's).
pub const GENERAL: &[(&str, &str, Conv, Option<&str>)] = &[
    ("listen_port", "port", Conv::Int, Some("6432")),
    ("listen_backlog", "backlog", Conv::Int, None),
    ("max_client_conn", "max_connections", Conv::Int, Some("100")),
    (
        "server_lifetime",
        "server_lifetime",
        Conv::Secs,
        Some("3600"),
    ),
    ("server_idle_timeout", "idle_timeout", Conv::Secs, None),
    (
        "server_connect_timeout",
        "connect_timeout",
        Conv::Secs,
        Some("15"),
    ),
    (
        "query_wait_timeout",
        "query_wait_timeout",
        Conv::Secs,
        Some("120"),
    ),
    (
        "server_check_delay",
        "server_idle_check_timeout",
        Conv::Secs,
        Some("30"),
    ),
    ("server_round_robin", "server_round_robin", Conv::Bool, None),
    (
        "log_connections",
        "log_client_connections",
        Conv::Bool,
        None,
    ),
    (
        "log_disconnections",
        "log_client_disconnections",
        Conv::Bool,
        None,
    ),
    ("pidfile", "daemon_pid_file", Conv::Str, None),
    ("tcp_keepidle", "tcp_keepalives_idle", Conv::Int, Some("0")),
    (
        "tcp_keepintvl",
        "tcp_keepalives_interval",
        Conv::Int,
        Some("0"),
    ),
    ("tcp_keepcnt", "tcp_keepalives_count", Conv::Int, Some("0")),
    (
        "tcp_user_timeout",
        "tcp_user_timeout",
        Conv::Millis,
        Some("0"),
    ),
    (
        "tcp_socket_buffer",
        "tcp_socket_buffer_size",
        Conv::Int,
        None,
    ),
    (
        "unix_socket_mode",
        "unix_socket_mode",
        Conv::Str,
        Some("0777"),
    ),
    ("client_tls_key_file", "tls_private_key", Conv::Str, None),
    ("client_tls_cert_file", "tls_certificate", Conv::Str, None),
    ("client_tls_ca_file", "tls_ca_cert", Conv::Str, None),
    ("server_tls_ca_file", "server_tls_ca_cert", Conv::Str, None),
    (
        "server_tls_cert_file",
        "server_tls_certificate",
        Conv::Str,
        None,
    ),
    (
        "server_tls_key_file",
        "server_tls_private_key",
        Conv::Str,
        None,
    ),
];

/// Keys the importer reads itself (pools, authentication, listeners), with what they become.
pub const HANDLED: &[(&str, &str)] = &[
    (
        "listen_addr",
        "general.host (`*` is 0.0.0.0; of a list, the first address; unset: 127.0.0.1, as pg_doorman always listens on TCP)",
    ),
    (
        "unix_socket_dir",
        "general.unix_socket_dir (PgBouncer's default /tmp; empty: no socket), and server_host of a database without host=",
    ),
    (
        "pool_mode",
        "pools.<db>.pool_mode (PgBouncer's default session; statement is refused)",
    ),
    (
        "default_pool_size",
        "users[].pool_size of every database without pool_size= (default 20)",
    ),
    ("min_pool_size", "users[].min_pool_size"),
    (
        "reserve_pool_size",
        "pools.<db>.reserve_pool_size (in pg_doorman it applies above max_db_connections)",
    ),
    (
        "reserve_pool_timeout",
        "pools.<db>.reserve_pool_timeout (default 5 s)",
    ),
    ("max_db_connections", "pools.<db>.max_db_connections"),
    (
        "auth_type",
        "general.pg_hba: md5 needs no rules (the secret's kind decides, as in PgBouncer), scram-sha-256/plain/trust become `host`/`local` rules, hba reads auth_hba_file; cert, pam, ldap and any are refused",
    ),
    (
        "auth_file",
        "users[] of every database: each auth_file user with its secret (plaintext, md5 or SCRAM verifier)",
    ),
    (
        "auth_hba_file",
        "general.pg_hba.path (with auth_type = hba)",
    ),
    (
        "auth_user",
        "pools.<db>.auth_query.user (passthrough mode; its password must be plaintext in auth_file)",
    ),
    (
        "auth_query",
        "pools.<db>.auth_query.query (default: PgBouncer's pg_shadow query)",
    ),
    ("auth_dbname", "pools.<db>.auth_query.database"),
    (
        "admin_users",
        "general.admin_username (the first name) and admin_password (its auth_file secret)",
    ),
    (
        "client_tls_sslmode",
        "general.tls_mode (prefer is allow, verify-ca is verify-full; default disable)",
    ),
    (
        "server_tls_sslmode",
        "general.server_tls_mode (default prefer)",
    ),
    (
        "client_tls_protocols",
        "general.tls_protocols (TLS 1.2 and 1.3 only)",
    ),
    (
        "server_tls_protocols",
        "general.server_tls_protocols (TLS 1.2 and 1.3 only)",
    ),
    (
        "syslog",
        "general.syslog_prog_name (syslog_ident, default pgbouncer)",
    ),
    ("syslog_ident", "general.syslog_prog_name when syslog = 1"),
    (
        "max_prepared_statements",
        "general.prepared_statements (0 is off) and server_prepared_statements_cache_size (default 200)",
    ),
    (
        "server_check_query",
        "general.pooler_check_query (default `select 1`; empty turns the check off)",
    ),
    (
        "tcp_keepalive",
        "keepalive is always on in pg_doorman; 0 is reported",
    ),
];

const NO_TIMEOUT: &str = "pg_doorman has no such timeout; the setting is dropped";
const IO_KNOB: &str = "a knob of PgBouncer's own I/O loop; pg_doorman sizes its buffers itself";
const LOGS: &str = "pg_doorman logs to standard error (syslog with syslog_prog_name) and has its own statistics (SHOW STATS, /metrics)";
const DNS: &str = "pg_doorman resolves backend host names with the system resolver at each connect";
const CIPHERS: &str = "OpenSSL cipher strings do not carry over to rustls; set general.tls_ciphers / server_tls_ciphers with IANA names if you must";

/// Keys with no equivalent: (key, the value that needs no word because it is the behaviour
/// pg_doorman has anyway, why).
pub const DROPPED: &[(&str, Option<&str>, &str)] = &[
    ("logfile", None, LOGS),
    ("log_stats", None, LOGS),
    ("stats_period", None, LOGS),
    ("log_pooler_errors", None, LOGS),
    ("verbose", Some("0"), LOGS),
    ("syslog_facility", None, LOGS),
    (
        "user",
        None,
        "pg_doorman does not change its OS user; start it as the user it should run as (systemd User=)",
    ),
    (
        "stats_users",
        None,
        "pg_doorman has one admin console user (admin_username); SHOW commands need it",
    ),
    (
        "server_reset_query",
        Some("DISCARD ALL"),
        "pg_doorman resets the session state a client leaves itself (pools.<db>.cleanup_server_connections), with the statements the state needs",
    ),
    (
        "server_reset_query_always",
        Some("0"),
        "pg_doorman resets the session state a client leaves itself (pools.<db>.cleanup_server_connections)",
    ),
    ("query_timeout", Some("0"), NO_TIMEOUT),
    ("client_idle_timeout", Some("0"), NO_TIMEOUT),
    ("idle_transaction_timeout", Some("0"), NO_TIMEOUT),
    ("transaction_timeout", Some("0"), NO_TIMEOUT),
    ("client_login_timeout", Some("60"), NO_TIMEOUT),
    (
        "suspend_timeout",
        Some("10"),
        "pg_doorman has no SUSPEND; an online restart hands its listening socket over (SIGUSR2)",
    ),
    (
        "autodb_idle_timeout",
        Some("3600"),
        "pg_doorman has no automatic databases (the `*` entry)",
    ),
    (
        "server_login_retry",
        Some("15"),
        "pg_doorman tries a failed backend login again at the next checkout",
    ),
    (
        "server_fast_close",
        Some("0"),
        "pg_doorman has no RECONNECT/online-drain command of this kind",
    ),
    (
        "max_user_connections",
        Some("0"),
        "pg_doorman limits backend connections per user with each user's pool_size",
    ),
    (
        "max_db_client_connections",
        Some("0"),
        "pg_doorman limits client connections with general.max_connections only",
    ),
    (
        "max_user_client_connections",
        Some("0"),
        "pg_doorman limits client connections with general.max_connections only",
    ),
    ("pkt_buf", None, IO_KNOB),
    ("max_packet_size", None, IO_KNOB),
    ("sbuf_loopcnt", None, IO_KNOB),
    ("tcp_defer_accept", None, IO_KNOB),
    (
        "so_reuseport",
        Some("0"),
        "pg_doorman binds one listener; an online restart passes it on (SIGUSR2)",
    ),
    ("dns_max_ttl", None, DNS),
    ("dns_nxdomain_ttl", None, DNS),
    ("dns_zone_check_period", None, DNS),
    ("resolv_conf", None, DNS),
    (
        "application_name_add_host",
        Some("0"),
        "pg_doorman sends the client's application_name unchanged",
    ),
    (
        "disable_pqexec",
        Some("0"),
        "pg_doorman accepts simple-query messages with several statements, as PostgreSQL does",
    ),
    (
        "ignore_startup_parameters",
        None,
        "pg_doorman accepts every startup parameter a client sends and applies it on the backends the client uses, so none need ignoring",
    ),
    (
        "track_extra_parameters",
        None,
        "pg_doorman tracks every parameter a client SETs, not a configured list",
    ),
    (
        "unix_socket_group",
        None,
        "pg_doorman does not change the socket's group; set the directory's group instead",
    ),
    (
        "peer_id",
        Some("0"),
        "pg_doorman has no peering; cancel requests reach the right pooler only on one process",
    ),
    ("client_tls_ciphers", Some("default"), CIPHERS),
    ("server_tls_ciphers", Some("default"), CIPHERS),
    ("client_tls13_ciphers", None, CIPHERS),
    ("server_tls13_ciphers", None, CIPHERS),
    (
        "client_tls_dheparams",
        None,
        "rustls has no finite-field Diffie-Hellman; ECDHE is used",
    ),
    (
        "client_tls_ecdhcurve",
        None,
        "rustls chooses the key-exchange groups itself",
    ),
    (
        "scram_iterations",
        None,
        "pg_doorman hashes plaintext passwords with PostgreSQL's default of 4096 iterations",
    ),
    (
        "auth_ldap_options",
        None,
        "pg_doorman has no LDAP authentication",
    ),
    ("service_name", None, "a Windows service setting"),
    ("job_name", None, "a Windows service setting"),
    (
        "conffile",
        None,
        "pg_doorman reads the file it was started with",
    ),
];

/// Converts `value` for `key`; errors name the key and the form expected.
pub fn convert(key: &str, value: &str, conv: Conv) -> Result<Node, String> {
    let bad = |what: &str| format!("{key} = {value:?}: expected {what}");
    match conv {
        Conv::Str => Ok(s(value)),
        Conv::Int => value
            .parse::<i64>()
            .map(Node::Int)
            .map_err(|_| bad("an integer")),
        Conv::Bool => boolean(value).map(Node::Bool).ok_or_else(|| bad("0 or 1")),
        Conv::Secs => value
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| duration((v * 1000.0).round() as u64))
            .ok_or_else(|| bad("seconds")),
        Conv::Millis => value
            .parse::<u64>()
            .map(duration)
            .map_err(|_| bad("milliseconds")),
    }
}

/// A duration in ms written as pg_doorman spells it: whole seconds as `"30s"`, else `"500ms"`.
fn duration(ms: u64) -> Node {
    if ms.is_multiple_of(1000) && ms > 0 {
        s(format!("{}s", ms / 1000))
    } else {
        s(format!("{ms}ms"))
    }
}

/// PgBouncer's boolean spellings.
pub fn boolean(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "yes" | "on" | "true" => Some(true),
        "0" | "no" | "off" | "false" => Some(false),
        _ => None,
    }
}

/// The `general` entries from the `[pgbouncer]` settings that map one to one, and a note for
/// every setting that has no equivalent.
pub fn general(im: &mut Import) -> Vec<Entry> {
    let mut out = Vec::new();
    for &(pgb, ours, conv, default) in GENERAL {
        let (value, comment) = match im.setting(pgb) {
            Some((v, at)) => (v.to_string(), format!("{pgb} = {v} ({at})")),
            None => match default {
                Some(d) => (d.to_string(), format!("{pgb}: PgBouncer's default {d}")),
                None => continue,
            },
        };
        match convert(pgb, &value, conv) {
            Ok(node) => out.push(Entry::new(ours, node).note(comment)),
            Err(e) => im.error(e),
        }
    }
    let unknown: Vec<(String, String, String)> = im
        .pgbouncer
        .iter()
        .map(|(k, (v, at))| (k.clone(), v.clone(), at.clone()))
        .collect();
    for (key, value, at) in unknown {
        if GENERAL.iter().any(|g| g.0 == key) || HANDLED.iter().any(|h| h.0 == key) {
            continue;
        }
        match DROPPED.iter().find(|d| d.0 == key) {
            Some((_, quiet, _)) if quiet.is_some_and(|q| q.eq_ignore_ascii_case(&value)) => {}
            Some((_, _, why)) => im.note(format!("{key} ({at}): not carried over: {why}")),
            None => im.note(format!(
                "{key} ({at}): not carried over: not a PgBouncer setting pg_doorman knows"
            )),
        }
    }
    out
}
