use super::*;

const YAML: &str = r#"
general:
  host: 127.0.0.1
  port: 6432
  query_wait_timeout: 2s
  idle_timeout: 5m
  server_lifetime: "0.5h"
  connect_timeout: 1500
pools:
  app:
    server_host: /var/run/postgresql
    server_port: 5433
    pool_mode: session
    users:
      - username: alice
        password: md53175bce1d3201d16594cebf9d7eb3f9d
        pool_size: 7
      - username: bob
        password: secret
"#;

#[test]
fn yaml_parses_with_units_and_defaults() {
    let c = Config::from_yaml(YAML).unwrap();
    assert_eq!(c.general.port, 6432);
    assert_eq!(c.general.query_wait_timeout.0.as_secs(), 2);
    assert_eq!(c.general.idle_timeout.0.as_secs(), 300);
    assert_eq!(c.general.server_lifetime.0.as_secs(), 1800);
    assert_eq!(c.general.connect_timeout.0.as_millis(), 1500);
    assert_eq!(c.general.worker_threads, 4);
    let p = &c.pools["app"];
    assert_eq!(p.pool_mode, PoolMode::Session);
    assert_eq!(p.users[0].pool_size, 7);
    assert_eq!(p.users[1].pool_size, 40);
}

#[test]
fn toml_with_indexed_users() {
    let c = parse_toml(
        r#"
[general]
port = 6433
idle_timeout = 1000
[pools.db]
server_port = 5432
[pools.db.users.1]
username = "second"
password = "x"
[pools.db.users.0]
username = "first"
password = "y"
pool_size = 3
"#,
    )
    .unwrap();
    assert!(validate::check(&c).is_empty());
    assert_eq!(c.pools["db"].users[0].username, "first");
    assert_eq!(c.pools["db"].users[0].pool_size, 3);
    assert_eq!(c.general.idle_timeout.0.as_millis(), 1000);
}

#[test]
fn unknown_and_unimplemented_keys_are_rejected_with_path() {
    let err = Config::from_yaml("general:\n  port: 1\n  bogus_key: 3\nweb:\n  ui: true\npools:\n  d:\n    patroni_api_urls: [x]\n    users:\n      - username: u\n        password: p\n").unwrap_err();
    assert!(err.contains("general.bogus_key: unknown setting"), "{err}");
    assert!(
        err.contains("web.ui: this PgDoorman setting is not implemented"),
        "{err}"
    );
    assert!(err.contains("pools.d.patroni_api_urls: "), "{err}");
    assert!(
        err.contains("expected http://") || err.contains("not a URL"),
        "{err}"
    );
}

/// The fallback keys load in both places; the pool's value wins over general's.
#[test]
fn fallback_keys_load_general_and_per_pool() {
    let c = Config::from_yaml("general:\n  patroni_api_urls: ['http://10.0.0.1:8008']\n  fallback_cooldown: 10s\npools:\n  d:\n    fallback_cooldown: 3s\n    users:\n      - {username: u, password: p}\n").unwrap();
    assert_eq!(
        c.general.patroni_api_urls,
        vec!["http://10.0.0.1:8008".to_string()]
    );
    assert_eq!(
        c.pools["d"].fallback_cooldown.map(|d| d.0.as_secs()),
        Some(3)
    );
    let err = Config::from_yaml("general:\n  patroni_api_urls: ['http://10.0.0.1:8008']\n  fallback_connect_timeout: 0\npools:\n  d:\n    users:\n      - {username: u, password: p}\n").unwrap_err();
    assert!(
        err.contains("general.fallback_connect_timeout: must be greater than 0"),
        "{err}"
    );
}

#[test]
fn bad_values_are_rejected() {
    let err = Config::from_yaml("general:\n  idle_timeout: 3 parsecs\n").unwrap_err();
    assert!(err.contains("duration"), "{err}");
    let err = Config::from_yaml(
        "pools:\n  d:\n    pool_mode: statement\n    users:\n      - {username: u, password: p}\n",
    )
    .unwrap_err();
    assert!(err.contains("statement"), "{err}");
    let err = Config::from_yaml("pools:\n  d:\n    users:\n      - {username: u, password: p, pool_size: 0}\n      - {username: u, password: p}\n").unwrap_err();
    assert!(
        err.contains("pools.d.users[0].pool_size: must be at least 1"),
        "{err}"
    );
    assert!(
        err.contains("pools.d.users[1].username: duplicate"),
        "{err}"
    );
    let err = Config::from_yaml("general:\n  tls_mode: require\n").unwrap_err();
    assert!(err.contains("general.tls_mode"), "{err}");
    let err = Config::from_yaml(
        "pools:\n  d:\n    users:\n      - {username: u, password: 'SCRAM-SHA-256$bad'}\n",
    )
    .unwrap_err();
    assert!(err.contains("SCRAM"), "{err}");
}

/// PgDoorman counts tcp_user_timeout in seconds (its sample config ships `60`): a bare number
/// here must not become 60 ms.
#[test]
fn tcp_user_timeout_is_seconds_like_pgdoorman() {
    let t = |v: &str| {
        let c = Config::from_yaml(&format!("general:\n  tcp_user_timeout: {v}\n")).unwrap();
        c.general.tcp_user_timeout.0
    };
    assert_eq!(t("60"), std::time::Duration::from_secs(60));
    assert_eq!(t("\"30\""), std::time::Duration::from_secs(30));
    assert_eq!(t("\"500ms\""), std::time::Duration::from_millis(500));
    assert_eq!(t("\"2m\""), std::time::Duration::from_secs(120));
    assert_eq!(t("0"), std::time::Duration::ZERO);
    let c = parse_toml("[general]\ntcp_user_timeout = 45\n").unwrap();
    assert_eq!(c.general.tcp_user_timeout.0.as_secs(), 45);
    assert_eq!(
        crate::pool::settings::tcp_options(&c).user_timeout_ms,
        45_000
    );
}

/// Defaults that PgDoorman documents (COMPAT.md), where an older changelog said otherwise.
#[test]
fn defaults_follow_pgdoorman() {
    let c = Config::from_yaml("general:\n  port: 1\n").unwrap();
    assert_eq!(c.general.server_idle_check_timeout.0.as_secs(), 60);
    assert_eq!(c.general.tcp_user_timeout.0.as_secs(), 60);
    // Unset, the per-client anonymous cache inherits the pool cache size.
    assert_eq!(
        c.general.client_prepared_statements_cache_size(),
        c.general.prepared_statements_cache_size
    );
}

#[test]
fn include_files_merge_in_order_and_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("pg_doorman.yaml");
    std::fs::write(
        &main,
        "include:\n  files: [\"pools.toml\", \"more.yaml\"]\ngeneral:\n  port: 6432\n  idle_timeout: 5m\npools:\n  app:\n    users:\n      - username: alice\n        password: a\n",
    )
    .unwrap();
    // TOML and YAML mixed; relative names are found beside the main file.
    std::fs::write(
        dir.path().join("pools.toml"),
        "[general]\nport = 7000\n\n[pools.app]\nserver_port = 5433\n\n[[pools.app.users]]\nusername = \"bob\"\npassword = \"b\"\n\n[pools.other]\nserver_host = \"10.0.0.1\"\n\n[[pools.other.users]]\nusername = \"carol\"\npassword = \"c\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("more.yaml"),
        "general:\n  port: 7001\n  query_wait_timeout: ~\n",
    )
    .unwrap();
    let c = load(&main).unwrap();
    // The last file wins for a scalar; the main file's other keys stay.
    assert_eq!(c.general.port, 7001);
    assert_eq!(c.general.idle_timeout.0.as_secs(), 300);
    // A YAML null is dropped: the default stays.
    assert_eq!(c.general.query_wait_timeout.0.as_secs(), 5);
    let app = &c.pools["app"];
    assert_eq!(app.server_port, 5433);
    let names: Vec<_> = app.users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["alice", "bob"], "users lists are appended");
    assert_eq!(c.pools["other"].server_host, "10.0.0.1");

    // A missing include is named.
    std::fs::write(&main, "include:\n  files: [\"/nonexistent/x.yaml\"]\n").unwrap();
    let e = load(&main).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/x.yaml"), "{e}");
    // Kinds that do not merge: the file and the key are named.
    std::fs::write(dir.path().join("bad.yaml"), "general:\n  port: {a: 1}\n").unwrap();
    std::fs::write(
        &main,
        "include:\n  files: [\"bad.yaml\"]\ngeneral:\n  port: 6432\n",
    )
    .unwrap();
    let e = load(&main).unwrap_err().to_string();
    assert!(e.contains("bad.yaml") && e.contains("general.port"), "{e}");
    // A merged config is validated as any other.
    std::fs::write(dir.path().join("bad.yaml"), "general:\n  bogus_key: 1\n").unwrap();
    let e = load(&main).unwrap_err().to_string();
    assert!(e.contains("general.bogus_key: unknown setting"), "{e}");
}

/// Every key PgDoorman 3.10.7's sample `pg_doorman.yaml` sets (with its values, including its
/// empty `include:` section) loads; the one key that changes nothing here is warned about.
#[test]
fn pgdoorman_sample_config_keys_load() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("pg_doorman.yaml");
    std::fs::write(
        &main,
        r#"include:
general:
  host: "0.0.0.0"
  port: 6432
  backlog: 0
  connect_timeout: "3s"
  query_wait_timeout: "5s"
  idle_timeout: "10m"
  server_lifetime: "20m"
  retain_connections_time: "30s"
  retain_connections_max: 3
  server_idle_check_timeout: "60s"
  shutdown_timeout: "10s"
  proxy_copy_data_timeout: "15s"
  tcp_keepalives_idle: 5
  tcp_keepalives_interval: 5
  tcp_keepalives_count: 5
  tcp_so_linger: 0
  tcp_no_delay: true
  tcp_user_timeout: 60
  unix_socket_buffer_size: "1MB"
  unix_socket_mode: "0600"
  max_connections: 8192
  max_concurrent_creates: 4
  max_memory_usage: "256MB"
  scaling_warm_pool_ratio: 20
  scaling_fast_retries: 10
  scaling_max_parallel_creates: 2
  log_client_connections: true
  log_client_disconnections: true
  worker_threads: 4
  worker_cpu_affinity_pinning: false
  server_round_robin: false
  sync_server_parameters: false
  message_size_to_be_stream: "1MB"
  pooler_check_query: ";"
  prepared_statements: true
  prepared_statements_cache_size: 8192
  client_anonymous_prepared_cache_size: 256
  admin_username: "admin"
  admin_password: "admin"
  tls_mode: "allow"
  tls_rate_limit_per_second: 0
  server_tls_mode: "allow"
  hba: []
  scaling_cooldown_sleep: 10
prometheus:
  enabled: false
  host: "0.0.0.0"
  port: 9127
pools:
  exampledb:
    server_host: "127.0.0.1"
    server_port: 5432
    pool_mode: "transaction"
    cleanup_server_connections: true
    log_client_parameter_status_changes: false
    users:
      - username: "app_user"
        password: "md5dd9a0f26a4302744db881776a09bbfad"
        pool_size: 40
"#,
    )
    .unwrap();
    let c = load(&main).unwrap();
    assert_eq!(c.general.proxy_copy_data_timeout.0.as_secs(), 15);
    assert_eq!(c.general.unix_socket_buffer_size.0, 1024 * 1024);
    assert_eq!(c.general.unix_socket_mode().unwrap(), 0o600);
    assert_eq!(c.general.client_prepared_statements_cache_size(), 256);
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(c.warnings[0].starts_with("general.scaling_cooldown_sleep: removed in PgDoorman"));
    assert!(
        c.warnings[1].starts_with("general.sync_server_parameters: pg_doorman always restores")
    );
}

#[test]
fn pgdoorman_example_auth_query_section_loads() {
    // PgDoorman's example/pg_doorman/pg_doorman.yaml, its TLS and pg_hba file lines left out
    // (those paths exist only in its container).
    let c = Config::from_yaml(
        "general:\n  host: \"0.0.0.0\"\n  port: 6432\n  admin_username: \"admin\"\n  admin_password: \"admin\"\npools:\n  exampledb:\n    server_host: \"postgres\"\n    server_port: 5432\n    pool_mode: \"transaction\"\n    auth_query:\n      query: \"SELECT passwd FROM pg_shadow WHERE usename = $1\"\n      user: \"postgres\"\n      password: \"\"\n      pool_size: 2\n      default_pool_size: 20\n      cache_ttl: \"5m\"\n      cache_failure_ttl: \"30s\"\n      min_interval: \"1s\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let a = c.pools["exampledb"]
        .auth_query
        .as_ref()
        .unwrap_or_else(|| panic!("auth_query"));
    assert_eq!((a.pool_size, a.workers), (2, 2));
    assert_eq!(a.cache_ttl.0.as_secs(), 300);
    let warnings = super::validate::warnings(&c);
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("pools.exampledb.auth_query.default_pool_size")),
        "{warnings:?}"
    );
}
