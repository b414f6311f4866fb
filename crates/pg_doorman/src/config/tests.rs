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
    let err = Config::from_yaml("general:\n  port: 1\n  bogus_key: 3\n  proxy_copy_data_timeout: 3\npools:\n  d:\n    users:\n      - username: u\n        password: p\n        auth_pam_service: x\n").unwrap_err();
    assert!(err.contains("general.bogus_key: unknown setting"), "{err}");
    assert!(
        err.contains("general.proxy_copy_data_timeout: this PgDoorman setting is not implemented"),
        "{err}"
    );
    assert!(err.contains("pools.d.users[0].auth_pam_service"), "{err}");
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
