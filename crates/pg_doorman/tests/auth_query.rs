//! auth_query against a real PostgreSQL whose roles exist only there: users in no config log
//! in with the MD5 secret or SCRAM verifier PostgreSQL stores (passthrough: their own pools,
//! logged in as themselves, the backend never given a plaintext; dedicated: one shared pool);
//! wrong passwords and unknown names get 28P01; a dropped role stops working after cache_ttl;
//! a flood of logins with unknown names costs one query per name (counted by PostgreSQL
//! itself); idle dynamic pools are collected; static users win; a reload keeps the cache.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use std::collections::HashMap;
use std::time::Duration;

/// Roles: alice (SCRAM verifier), bob (MD5 secret), carol (SCRAM, dropped by a test), the
/// look-up role and a SECURITY DEFINER function that counts its calls in `lookups`.
fn roles(pg: &TempCluster) {
    pg.psql("SET password_encryption = 'scram-sha-256'; CREATE ROLE alice LOGIN PASSWORD 'alice_pw'; CREATE ROLE carol LOGIN PASSWORD 'carol_pw'");
    pg.psql("SET password_encryption = 'md5'; CREATE ROLE bob LOGIN PASSWORD 'bob_pw'");
    pg.psql("CREATE ROLE doorman_auth LOGIN PASSWORD 'auth_pw'");
    pg.psql("CREATE TABLE lookups (n int); INSERT INTO lookups VALUES (0)");
    pg.psql(
        "CREATE FUNCTION lookup(u text) RETURNS TABLE (usename name, passwd text) \
         LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$ \
         BEGIN UPDATE public.lookups SET n = n + 1; \
         RETURN QUERY SELECT s.usename, s.passwd::text FROM pg_catalog.pg_shadow s WHERE s.usename = u; END $$",
    );
    pg.psql("REVOKE ALL ON FUNCTION lookup(text) FROM PUBLIC; GRANT EXECUTE ON FUNCTION lookup(text) TO doorman_auth");
}

fn lookups(pg: &TempCluster) -> u64 {
    pg.psql("SELECT n FROM lookups").trim().parse().unwrap()
}

/// pg_doorman with pool `appdb` holding static user `app` (file password `file_pw`) and an
/// auth_query; `aq_extra` lines go in the auth_query section (6 spaces).
fn config(pg: &TempCluster, aq_extra: &str, general_extra: &str) -> String {
    format!(
        "general:\n  host: 127.0.0.1\n  port: {{port}}\n  worker_threads: 2\n  connect_timeout: 10s\n  admin_username: boss\n  admin_password: boss_pw\n{general_extra}pools:\n  appdb:\n    server_host: 127.0.0.1\n    server_port: {}\n    pool_mode: transaction\n    auth_query:\n      query: \"SELECT * FROM lookup($1)\"\n      user: doorman_auth\n      password: auth_pw\n      database: postgres\n      pool_size: 3\n{aq_extra}    users:\n      - username: app\n        password: file_pw\n        server_password: app_pw\n        pool_size: 2\n",
        pg.port
    )
}

async fn figures(d: &Doorman) -> HashMap<String, u64> {
    let admin = connect(&d.conn_str("boss", "boss_pw", "pgdoorman"))
        .await
        .unwrap();
    let rows = admin.simple_query("SHOW AUTH_QUERY").await.unwrap();
    for m in rows {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            assert_eq!(r.get("database"), Some("appdb"));
            return r
                .columns()
                .iter()
                .skip(1)
                .map(|c| {
                    (
                        c.name().to_string(),
                        r.get(c.name()).unwrap().parse().unwrap(),
                    )
                })
                .collect();
        }
    }
    panic!("SHOW AUTH_QUERY: no row")
}

async fn refused(d: &Doorman, user: &str, password: &str) -> String {
    let e = connect(&d.conn_str(user, password, "appdb"))
        .await
        .err()
        .unwrap_or_else(|| panic!("{user} with {password:?} logged in"));
    sqlstate(&e)
}

#[tokio::test]
async fn passthrough_users_log_in_with_the_secrets_postgresql_stores() {
    // md5 rules on the backend: bob's MD5 secret answers MD5, alice's verifier answers SCRAM.
    let pg = cluster(PgAuth::Md5);
    roles(&pg);
    let d = Doorman::start(binary(), &config(&pg, "", ""));
    for (user, pw) in [("alice", "alice_pw"), ("bob", "bob_pw")] {
        let c = connect(&d.conn_str(user, pw, "appdb")).await.unwrap();
        assert_eq!(one(&c, "SELECT current_user").await, user);
        // Its own pool, logged in as itself.
        assert!(backends(&pg, user) >= 1, "{user} has a backend");
    }
    assert_eq!(refused(&d, "alice", "wrong").await, "28P01");
    assert_eq!(refused(&d, "bob", "wrong").await, "28P01");
    assert_eq!(refused(&d, "nobody", "x").await, "28P01");
    // The static user wins over auth_query: its file password, not PostgreSQL's.
    let c = connect(&d.conn_str("app", "file_pw", "appdb"))
        .await
        .unwrap();
    assert_eq!(one(&c, "SELECT current_user").await, "app");
    assert_eq!(refused(&d, "app", "app_pw").await, "28P01");
    let f = figures(&d).await;
    assert_eq!(f["executor_queries"], 3, "alice, bob, nobody: {f:?}");
    assert_eq!(lookups(&pg), 3);
    assert_eq!(f["auth_success"], 2, "{f:?}");
    assert_eq!(f["auth_failure"], 3, "{f:?}");
    assert_eq!(f["dynamic_pools_current"], 2, "{f:?}");
    // Their pools are listed by SHOW POOLS and in /metrics-style figures.
    let admin = connect(&d.conn_str("boss", "boss_pw", "pgdoorman"))
        .await
        .unwrap();
    let pools: Vec<String> = admin
        .simple_query("SHOW POOLS")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get("user").map(str::to_string),
            _ => None,
        })
        .collect();
    assert!(pools.contains(&"alice".to_string()) && pools.contains(&"bob".to_string()));
}

#[tokio::test]
async fn scram_passthrough_needs_only_the_verifier() {
    // scram-sha-256 rules on the backend, which stores verifiers only: pg_doorman has no
    // plaintext for alice, yet logs in as her with the ClientKey of her own SCRAM proof.
    let pg = cluster(PgAuth::Scram);
    roles(&pg);
    let hba = "  pg_hba:\n    content: |\n      host appdb alice 127.0.0.1/32 md5\n      host appdb carol 127.0.0.1/32 password\n      host appdb bob 127.0.0.1/32 md5\n      host pgdoorman boss 127.0.0.1/32 md5\n";
    let d = Doorman::start(binary(), &config(&pg, "", hba));
    // An `md5` rule with a SCRAM verifier runs SCRAM (as PostgreSQL does): an MD5 exchange
    // cannot be checked against a verifier, and would leave no ClientKey for the backend.
    let c = connect(&d.conn_str("alice", "alice_pw", "appdb"))
        .await
        .unwrap();
    assert_eq!(one(&c, "SELECT current_user").await, "alice");
    assert_eq!(backends(&pg, "alice"), 1);
    // `password` (cleartext): the password derives the ClientKey just as well.
    let c = connect(&d.conn_str("carol", "carol_pw", "appdb"))
        .await
        .unwrap();
    assert_eq!(one(&c, "SELECT current_user").await, "carol");
    // bob's MD5 secret answers the client, but a scram-sha-256 backend cannot take an MD5
    // secret (it has none for him: PostgreSQL stores MD5 too and refuses, as for libpq).
    let e = connect(&d.conn_str("bob", "bob_pw", "appdb")).await;
    match e {
        Ok(c) => {
            let q = c.simple_query("SELECT 1").await;
            assert!(
                q.is_err(),
                "bob's backend login must fail under scram-sha-256"
            );
        }
        Err(e) => assert!(!sqlstate(&e).is_empty(), "{e}"),
    }
}

#[tokio::test]
async fn a_dropped_role_stops_working_after_the_ttl() {
    let pg = cluster(PgAuth::Md5);
    roles(&pg);
    let d = Doorman::start(
        binary(),
        &config(
            &pg,
            "      cache_ttl: 2s\n      cache_failure_ttl: 1s\n",
            "",
        ),
    );
    let c = connect(&d.conn_str("carol", "carol_pw", "appdb"))
        .await
        .unwrap();
    assert_eq!(one(&c, "SELECT 1").await, "1");
    drop(c);
    pg.psql("DROP ROLE carol");
    // Still cached (and its backend still logged in): the login works within the TTL.
    let c = connect(&d.conn_str("carol", "carol_pw", "appdb"))
        .await
        .unwrap();
    drop(c);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(refused(&d, "carol", "carol_pw").await, "28P01");
    let f = figures(&d).await;
    assert_eq!(f["executor_queries"], 2, "{f:?}");
}

#[tokio::test]
async fn a_thousand_logins_with_unknown_names_cost_one_query_per_name() {
    let pg = cluster(PgAuth::Md5);
    roles(&pg);
    let d = Doorman::start(binary(), &config(&pg, "", ""));
    let before = lookups(&pg);
    let mut tasks = tokio::task::JoinSet::new();
    let conns: Vec<String> = (0..1000)
        .map(|i| d.conn_str(&format!("ghost{}", i % 10), "guess", "appdb"))
        .collect();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(50));
    for c in conns {
        let gate = gate.clone();
        tasks.spawn(async move {
            let _p = gate.acquire().await.unwrap();
            match connect(&c).await {
                Ok(_) => panic!("a ghost logged in"),
                Err(e) => sqlstate(&e),
            }
        });
    }
    let mut codes = HashMap::new();
    while let Some(code) = tasks.join_next().await {
        *codes.entry(code.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(codes.get("28P01"), Some(&1000), "{codes:?}");
    // Ten names: ten look-ups, however many logins came at once (cache_failure_ttl 30 s).
    assert_eq!(lookups(&pg) - before, 10);
    let f = figures(&d).await;
    assert_eq!(f["executor_queries"], 10, "{f:?}");
    assert_eq!(f["cache_misses"], 10, "{f:?}");
    assert_eq!(f["cache_hits"], 990, "{f:?}");
}

#[tokio::test]
async fn idle_dynamic_pools_are_collected() {
    let pg = cluster(PgAuth::Md5);
    roles(&pg);
    let general = "  retain_connections_time: 500ms\n  server_lifetime: 1s\n";
    let d = Doorman::start(binary(), &config(&pg, "", general));
    let c = connect(&d.conn_str("bob", "bob_pw", "appdb"))
        .await
        .unwrap();
    assert_eq!(one(&c, "SELECT 1").await, "1");
    // In use: kept however long.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(figures(&d).await["dynamic_pools_current"], 1);
    drop(c);
    let mut f = figures(&d).await;
    for _ in 0..40 {
        if f["dynamic_pools_current"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        f = figures(&d).await;
    }
    assert_eq!(f["dynamic_pools_current"], 0, "{f:?}\n{}", d.log_text());
    assert_eq!(f["dynamic_pools_destroyed"], 1, "{f:?}");
    assert!(d.log_text().contains("idle dynamic pool(s) removed"));
    // Retired with it: its backend closed.
    for _ in 0..20 {
        if backends(&pg, "bob") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(backends(&pg, "bob"), 0);
    // bob logs in again: a new pool, the secret still cached.
    let c = connect(&d.conn_str("bob", "bob_pw", "appdb"))
        .await
        .unwrap();
    assert_eq!(one(&c, "SELECT current_user").await, "bob");
    let f = figures(&d).await;
    assert_eq!(
        (f["dynamic_pools_created"], f["executor_queries"]),
        (2, 1),
        "{f:?}"
    );
}

#[tokio::test]
async fn dedicated_mode_shares_one_pool_as_server_user() {
    let pg = cluster(PgAuth::Md5);
    roles(&pg);
    let aq = "      server_user: app\n      server_password: app_pw\n";
    let d = Doorman::start(binary(), &config(&pg, aq, ""));
    for (user, pw) in [("alice", "alice_pw"), ("bob", "bob_pw")] {
        let c = connect(&d.conn_str(user, pw, "appdb")).await.unwrap();
        assert_eq!(one(&c, "SELECT current_user").await, "app", "{user}");
    }
    assert_eq!(refused(&d, "alice", "bob_pw").await, "28P01");
    let f = figures(&d).await;
    assert_eq!(f["dynamic_pools_current"], 1, "{f:?}");
    assert_eq!(backends(&pg, "alice") + backends(&pg, "bob"), 0);
}

#[tokio::test]
async fn a_reload_keeps_an_unchanged_auth_query_and_rebuilds_a_changed_one() {
    let pg = cluster(PgAuth::Md5);
    roles(&pg);
    let d = Doorman::start(binary(), &config(&pg, "", ""));
    let login = async || {
        let c = connect(&d.conn_str("bob", "bob_pw", "appdb"))
            .await
            .unwrap();
        assert_eq!(one(&c, "SELECT 1").await, "1");
    };
    login().await;
    d.signal_and_expect_log("HUP", "pools reloaded");
    login().await;
    assert_eq!(lookups(&pg), 1, "the cache survived an unchanged reload");
    d.rewrite_config(&config(&pg, "      cache_ttl: 10m\n", ""));
    d.signal_and_expect_log("HUP", "pools reloaded: 0 kept");
    login().await;
    assert_eq!(
        lookups(&pg),
        2,
        "a changed auth_query starts with an empty cache"
    );
    assert_eq!(figures(&d).await["executor_queries"], 1);
}

/// SHOW STARTUP_PARAMETERS rows (user, parameter, value, source, state) of `user`.
async fn startup_rows(d: &Doorman, user: &str) -> Vec<[String; 4]> {
    let admin = connect(&d.conn_str("boss", "boss_pw", "pgdoorman"))
        .await
        .unwrap();
    let mut out = Vec::new();
    for m in admin.simple_query("SHOW STARTUP_PARAMETERS").await.unwrap() {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m
            && r.get("user") == Some(user)
        {
            let v = |c: &str| r.get(c).unwrap().to_string();
            let mut value = v("value");
            value.truncate(20);
            out.push([v("parameter"), value, v("source"), v("state")]);
        }
    }
    out.sort();
    out
}

/// The value of the sample `name` in an exposition, 0 if absent.
fn sample(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_rows_startup_parameters_reach_its_backends_within_the_budget() {
    let pg = cluster(PgAuth::Md5);
    roles(&pg);
    pg.psql("CREATE TABLE aq_params (usename name, params text); GRANT SELECT ON aq_params TO doorman_auth");
    let long = "x".repeat(9_600);
    pg.psql(&format!(
        "INSERT INTO aq_params VALUES ('bob', '{{\"work_mem\": \"7MB\", \"statement_timeout\": 1234, \"bad key\": 1, \"search_path\": \"{long}\"}}'), ('alice', '{{\"work_mem\": \"lots\"}}')"
    ));
    let port = doorman_testkit::free_port();
    let web = format!("prometheus:\n  enabled: true\n  host: 127.0.0.1\n  port: {port}\n");
    let text = config(&pg, "", &web)
        .replace(
            "SELECT * FROM lookup($1)",
            "SELECT l.passwd, p.params AS startup_parameters FROM lookup($1) l LEFT JOIN aq_params p ON p.usename = l.usename",
        )
        .replace("    auth_query:\n", "    startup_parameters:\n      jit: \"off\"\n    auth_query:\n");
    let d = Doorman::start(binary(), &text);
    let c = connect(&d.conn_str("bob", "bob_pw", "appdb"))
        .await
        .unwrap();
    assert_eq!(one(&c, "SHOW work_mem").await, "7MB");
    assert_eq!(one(&c, "SHOW statement_timeout").await, "1234ms");
    assert_eq!(one(&c, "SHOW jit").await, "off");
    assert_ne!(
        one(&c, "SHOW search_path").await.len(),
        9_600,
        "over the budget: left out"
    );
    let row = |p: &str, v: &str, src: &str, st: &str| -> [String; 4] {
        [p.into(), v.into(), src.into(), st.into()]
    };
    assert_eq!(
        startup_rows(&d, "bob").await,
        vec![
            row("jit", "off", "pool", "applied"),
            row(
                "search_path",
                "xxxxxxxxxxxxxxxxxxxx",
                "auth_query",
                "dropped_due_to_budget"
            ),
            row("statement_timeout", "1234", "auth_query", "applied"),
            row("work_mem", "7MB", "auth_query", "applied"),
        ]
    );
    // PostgreSQL refuses alice's value: her login fails with its SQLSTATE, and it is counted.
    let e = connect(&d.conn_str("alice", "alice_pw", "appdb"))
        .await
        .expect_err("an invalid work_mem fails the login");
    assert_eq!(sqlstate(&e), "22023", "{e}");
    let (_, body) = scrape(port);
    let dropped = "pg_doorman_startup_parameters_dropped_total{pool=\"appdb\",reason=";
    assert_eq!(
        sample(&body, &format!("{dropped}\"budget\"}}")),
        1,
        "{body}"
    );
    assert_eq!(
        sample(&body, &format!("{dropped}\"invalid_name\"}}")),
        1,
        "{body}"
    );
    assert_eq!(
        sample(&body, &format!("{dropped}\"reserved\"}}")),
        0,
        "{body}"
    );
    let errors =
        "pg_doorman_backend_startup_parameter_errors_total{pool=\"appdb\",sqlstate=\"22023\"}";
    assert!(sample(&body, errors) >= 1, "{body}");
}

#[test]
fn config_checks() {
    let base = "general:\n  port: 6432\npools:\n  db:\n    auth_query:\n";
    let (ok, out) = check_config(
        "c.yaml",
        &format!(
            "{base}      query: \"SELECT passwd FROM pg_shadow WHERE usename = $1\"\n      user: a\n      default_pool_size: 5\n"
        ),
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("pools.db.auth_query.default_pool_size: renamed to pool_size"),
        "{out}"
    );
    let (ok, out) = check_config(
        "c.yaml",
        &format!(
            "{base}      query: \"SELECT passwd FROM pg_shadow WHERE usename = 'x'\"\n      user: a\n      min_pool_size: 1\n      server_user: s\n      bogus: 1\n"
        ),
    );
    assert!(!ok);
    for needle in [
        "pools.db.auth_query.query: must take the login name as parameter $1",
        "pools.db.auth_query.min_pool_size: applies to passthrough mode only",
        "pools.db.auth_query.bogus: unknown setting",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
}
