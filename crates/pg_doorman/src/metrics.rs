//! Prometheus `/metrics` (OpenMetrics text via prometheus-client) on the `prometheus`/`web`
//! listener. Every value is read at scrape time from the atomics the pools, clients and
//! connections keep, so a scrape takes no lock on the hot path and counters stay monotonic
//! (COMPAT.md §3 names).

use crate::app::clients::state;
use crate::app::context::AppContext;
use crate::pool::Pool;
use crate::pool::stats::ERROR_CLASSES;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const R: Ordering = Ordering::Relaxed;

type Labels = Vec<(&'static str, String)>;

/// The collector: a view of the running process.
struct View(Arc<AppContext>);

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("pg_doorman metrics")
    }
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        m.encode_family(labels)?
            .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(v, None)?;
    }
    Ok(())
}

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, V)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        m.encode_family(labels)?.encode_gauge(v)?;
    }
    Ok(())
}

fn pool_labels(p: &crate::pool::Pool) -> Labels {
    vec![
        ("user", p.settings.user.clone()),
        ("database", p.settings.database.clone()),
    ]
}

fn with(mut l: Labels, k: &'static str, v: &str) -> Labels {
    l.insert(0, (k, v.to_string()));
    l
}

/// Resident set size of this process (bytes), from /proc/self/statm.
fn rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    pages * 4096
}

impl Collector for View {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let ctx = &self.0;
        let pools: Vec<_> = ctx.pools.all();
        let info = vec![("version", env!("CARGO_PKG_VERSION").to_string())];
        enc.encode_descriptor("build", "pg_doorman version", None, MetricType::Info)?
            .encode_info(&info)?;
        gauge(
            &mut enc,
            "log_level",
            "The log filter in force (value 1)",
            &[(vec![("level", crate::logging::current())], 1i64)],
        )?;
        gauge(
            &mut enc,
            "total_memory",
            "Resident memory of the process (bytes)",
            &[(Vec::new(), rss_bytes())],
        )?;
        let c = &ctx.conns;
        let accepted = [
            (vec![("type", "total".into())], c.total.load(R)),
            (vec![("type", "plain".into())], c.plain.load(R)),
            (vec![("type", "tls".into())], c.tls.load(R)),
            (vec![("type", "cancel".into())], c.cancel.load(R)),
        ];
        counter(
            &mut enc,
            "connections",
            "Accepted client connections by kind",
            &accepted,
        )?;
        // PgDoorman's deprecated gauge of the same figures (still in its 3.10).
        gauge(
            &mut enc,
            "connection_count",
            "Accepted client connections by kind (deprecated: use pg_doorman_connections_total)",
            &accepted,
        )?;
        gauge(
            &mut enc,
            "sockets",
            "Open sockets of the process by kind (Linux /proc)",
            &crate::sockets::counts()
                .iter()
                .map(|(k, n)| (vec![("type", (*k).to_string())], *n))
                .collect::<Vec<_>>(),
        )?;
        let rejections: Vec<(Labels, u64)> = crate::app::context::REJECTIONS
            .iter()
            .zip(&c.rejections)
            .map(|(r, n)| (vec![("reason", r.to_string())], n.load(R)))
            .collect();
        counter(
            &mut enc,
            "listener_rejections",
            "Connections refused or failed before login, by reason",
            &rejections,
        )?;
        gauge(
            &mut enc,
            "users_configured",
            "Configured (user, database) pools (value 1)",
            &pools
                .iter()
                .map(|p| {
                    (
                        with(pool_labels(p), "pool_mode", p.settings.mode.as_str()),
                        1i64,
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        let clients = ctx.client_list.snapshot();
        let mut cl = Vec::new();
        let mut pinned = Vec::new();
        let mut sv = Vec::new();
        let mut size = Vec::new();
        let mut paused = Vec::new();
        let mut maxwait = Vec::new();
        let mut errors = Vec::new();
        let mut bytes = Vec::new();
        let mut queries = Vec::new();
        let mut xacts = Vec::new();
        let mut xtime = Vec::new();
        let mut qtime = Vec::new();
        let mut avg_wait = Vec::new();
        let mut prep_entries = Vec::new();
        let mut prep_bytes = Vec::new();
        let mut tls_conns = Vec::new();
        let mut tls_errors = Vec::new();
        let mut connect_failures = Vec::new();
        for p in &pools {
            let l = pool_labels(p);
            let st = &p.stats;
            let mine = clients.iter().filter(|c| std::ptr::eq(&*c.pool, &**p));
            let (mut idle, mut active, mut waiting) = (0i64, 0i64, 0i64);
            let mut n_pinned = 0i64;
            for c in mine {
                n_pinned += i64::from(c.pinned.load(R));
                match c.state.load(R) {
                    state::ACTIVE => active += 1,
                    state::WAITING => waiting += 1,
                    _ => idle += 1,
                }
            }
            for (s, v) in [("idle", idle), ("waiting", waiting), ("active", active)] {
                cl.push((with(l.clone(), "status", s), v));
            }
            pinned.push((l.clone(), n_pinned));
            let servers = p.servers.snapshot();
            let sv_active = servers.iter().filter(|s| s.active.load(R)).count() as i64;
            sv.push((with(l.clone(), "status", "active"), sv_active));
            sv.push((
                with(l.clone(), "status", "idle"),
                servers.len() as i64 - sv_active,
            ));
            size.push((l.clone(), p.settings.pool_size as i64));
            connect_failures.push((l.clone(), st.connect_failures.load(R)));
            paused.push((l.clone(), i64::from(st.paused.load(R))));
            maxwait.push((l.clone(), p.max_wait().as_micros() as i64));
            for (i, class) in ERROR_CLASSES.iter().enumerate() {
                errors.push((with(l.clone(), "sqlstate", class), st.errors(i)));
            }
            bytes.push((with(l.clone(), "direction", "received"), st.received()));
            bytes.push((with(l.clone(), "direction", "sent"), st.sent()));
            let (q, x) = (st.queries(), st.xacts());
            queries.push((l.clone(), q));
            xacts.push((l.clone(), x));
            let xt_ms = st.xact_us() / 1000;
            xtime.push((l.clone(), xt_ms));
            qtime.push((l.clone(), st.query_hist.sum_us() / 1000));
            let wait = st.wait_us().checked_div(q.max(1)).unwrap_or(0);
            avg_wait.push((l.clone(), wait as i64));
            let entries = p
                .statements
                .as_ref()
                .map(|c| c.entries())
                .unwrap_or_default();
            prep_entries.push((l.clone(), entries.len() as i64));
            prep_bytes.push((
                l.clone(),
                entries.iter().map(|s| s.body.len() as i64).sum::<i64>(),
            ));
            // Backend TLS is per pool section (database): users of it share one label.
            let n = servers.iter().filter(|s| s.tls).count() as i64;
            let pool = vec![("pool", p.settings.database.clone())];
            match tls_conns.iter_mut().find(|(l, _)| *l == pool) {
                Some((_, total)) => *total += n,
                None => {
                    tls_conns.push((pool.clone(), n));
                    tls_errors.push((pool, p.settings.tls.handshake_errors.load(R)));
                }
            }
        }
        gauge(&mut enc, "pools_clients", "Clients by status", &cl)?;
        gauge(
            &mut enc,
            "pools_pinned_clients",
            "Clients kept on their backend by session state (WITH HOLD cursor, temporary table) in transaction mode",
            &pinned,
        )?;
        gauge(
            &mut enc,
            "pools_servers",
            "Backend connections by status",
            &sv,
        )?;
        gauge(&mut enc, "pool_size", "Configured pool_size", &size)?;
        gauge(
            &mut enc,
            "pools_paused",
            "1 while PAUSE is in effect",
            &paused,
        )?;
        gauge(
            &mut enc,
            "pools_maxwait_microseconds",
            "Wait of the oldest waiting client",
            &maxwait,
        )?;
        counter(
            &mut enc,
            "pools_errors",
            "ErrorResponses relayed, by SQLSTATE class",
            &errors,
        )?;
        counter(&mut enc, "pools_bytes", "Bytes relayed", &bytes)?;
        // pg_doorman's own family (PgDoorman has none for this): the alert rules page on it.
        counter(
            &mut enc,
            "server_connect_failures",
            "Backend connects or logins that failed (refused, timed out, wrong password, TLS)",
            &connect_failures,
        )?;
        counter(
            &mut enc,
            "pools_queries",
            "Queries (ReadyForQuery)",
            &queries,
        )?;
        counter(
            &mut enc,
            "pools_transactions",
            "Transactions (ReadyForQuery 'I')",
            &xacts,
        )?;
        // PgDoorman's deprecated gauges of the two counters above (still in its 3.10).
        gauge(
            &mut enc,
            "pools_queries_count",
            "Queries (deprecated: use pg_doorman_pools_queries_total)",
            &queries,
        )?;
        gauge(
            &mut enc,
            "pools_transactions_count",
            "Transactions (deprecated: use pg_doorman_pools_transactions_total)",
            &xacts,
        )?;
        gauge(
            &mut enc,
            "pools_queries_total_time",
            "Time queries took, from request to ReadyForQuery (ms)",
            &qtime,
        )?;
        gauge(
            &mut enc,
            "pools_transactions_total_time",
            "Time clients held a backend in transaction mode (ms)",
            &xtime,
        )?;
        gauge(
            &mut enc,
            "pools_avg_wait_time",
            "Average wait for a backend per query (us)",
            &avg_wait,
        )?;
        gauge(
            &mut enc,
            "pool_prepared_cache_entries",
            "Statements in the pool cache",
            &prep_entries,
        )?;
        gauge(
            &mut enc,
            "pool_prepared_cache_bytes",
            "Bytes of statement text in the pool cache",
            &prep_bytes,
        )?;
        gauge(
            &mut enc,
            "server_tls_connections",
            "Backend connections over TLS",
            &tls_conns,
        )?;
        counter(
            &mut enc,
            "server_tls_handshake_errors",
            "Failed backend TLS handshakes",
            &tls_errors,
        )?;
        pressure(&mut enc, &pools)?;
        prepared_memory(&mut enc, &pools, &clients)?;
        auth_query(&mut enc, &ctx.pools.auth_queries())?;
        startup_parameters(&mut enc, &pools, &ctx.pools.auth_queries())?;
        for (name, help, pick) in [
            ("pools_query_duration_seconds", "Query durations", 0),
            (
                "pools_transaction_duration_seconds",
                "Transaction-mode hold times",
                1,
            ),
            ("pools_wait_duration_seconds", "Waits for a backend", 2),
        ] {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for p in &pools {
                let h = match pick {
                    0 => &p.stats.query_hist,
                    1 => &p.stats.xact_hist,
                    _ => &p.stats.wait_hist,
                };
                let (buckets, sum, count) = h.snapshot();
                m.encode_family(&pool_labels(p))?
                    .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                        sum, count, &buckets, None,
                    )?;
            }
        }
        let mut m = enc.encode_descriptor(
            "backend_create_duration_seconds",
            "Backend connect phases that succeeded: tcp_connect, tls, auth (StartupMessage to AuthenticationOk), startup (to ReadyForQuery)",
            None,
            MetricType::Histogram,
        )?;
        for (phase, h) in crate::pool::connect::CREATE_PHASES
            .iter()
            .zip(crate::pool::connect::CREATE_SECONDS.iter())
        {
            h.encode(m.encode_family(&vec![("phase", (*phase).to_string())])?)?;
        }
        {
            // Scoped: the encoder borrows `enc` until the fallback families below.
            let mut m = enc.encode_descriptor(
                "server_tls_handshake_duration_seconds",
                "Backend TLS handshake time",
                None,
                MetricType::Histogram,
            )?;
            let mut seen = std::collections::HashSet::new();
            for p in &pools {
                if !seen.insert(p.settings.database.clone()) {
                    continue;
                }
                let pool = vec![("pool", p.settings.database.clone())];
                p.settings
                    .tls
                    .handshake_seconds
                    .encode(m.encode_family(&pool)?)?;
            }
        }
        fallback_families(&mut enc, &pools)
    }
}

/// Patroni-assisted fallback, one row per pool section with `patroni_api_urls` (PgDoorman's
/// names, label `pool`; docs/patroni.md).
fn fallback_families(
    enc: &mut DescriptorEncoder,
    pools: &[std::sync::Arc<crate::pool::Pool>],
) -> Result<(), std::fmt::Error> {
    let mut seen = std::collections::HashSet::new();
    let sections: Vec<_> = pools
        .iter()
        .filter_map(|p| p.settings.fallback.clone())
        .filter(|f| seen.insert(f.pool.clone()))
        .collect();
    if sections.is_empty() {
        return Ok(());
    }
    let rows = |f: &dyn Fn(&crate::pool::fallback::Fallback) -> u64| -> Vec<(Labels, u64)> {
        sections
            .iter()
            .map(|s| (vec![("pool", s.pool.clone())], f(s)))
            .collect()
    };
    counter(
        enc,
        "patroni_api_requests",
        "Patroni /cluster discoveries made",
        &rows(&|f| f.stats.api_requests.load(R)),
    )?;
    counter(
        enc,
        "patroni_api_errors",
        "Discoveries where no Patroni API URL answered",
        &rows(&|f| f.stats.api_errors.load(R)),
    )?;
    counter(
        enc,
        "fallback_connections",
        "Backend connections opened to a Patroni member while the configured backend was down",
        &rows(&|f| f.stats.connections.load(R)),
    )?;
    counter(
        enc,
        "fallback_cache_hits",
        "Fallback connections to the cached member made without asking Patroni",
        &rows(&|f| f.stats.cache_hits.load(R)),
    )?;
    gauge(
        enc,
        "fallback_active",
        "1 while the configured backend is in its cooldown and new connections go to a Patroni member",
        &rows(&|f| u64::from(f.active())),
    )?;
    let hosts: Vec<(Labels, i64)> = sections
        .iter()
        .filter_map(|s| {
            s.host().map(|(h, p)| {
                (
                    vec![
                        ("pool", s.pool.clone()),
                        ("host", h),
                        ("port", p.to_string()),
                    ],
                    1i64,
                )
            })
        })
        .collect();
    gauge(
        enc,
        "fallback_host",
        "The Patroni member new connections go to (1), while fallback is active",
        &hosts,
    )?;
    let mut failures = Vec::new();
    for s in &sections {
        for (i, reason) in crate::pool::fallback::FAILURE_REASONS.iter().enumerate() {
            failures.push((
                vec![("pool", s.pool.clone()), ("reason", (*reason).to_string())],
                s.stats.failures[i].load(R),
            ));
        }
    }
    counter(
        enc,
        "fallback_candidate_failures",
        "Fallback candidates that failed, by reason",
        &failures,
    )?;
    let mut m = enc.encode_descriptor(
        "patroni_api_duration_seconds",
        "Time of one Patroni /cluster discovery (all URLs raced)",
        None,
        MetricType::Histogram,
    )?;
    for s in &sections {
        s.stats
            .api_seconds
            .encode(m.encode_family(&vec![("pool", s.pool.clone())])?)?;
    }
    Ok(())
}

/// Coordinator and scaling families. Their `_total` families carry monotonic counts but are
/// typed gauge: OpenMetrics would give a counter family `pg_doorman_pool_coordinator` the same
/// name as the gauge family of that name (COMPAT.md §3 names both).
/// auth_query families as PgDoorman names them: gauges `pg_doorman_auth_query_{cache,auth,
/// executor,dynamic_pools}` with every figure (its dashboards read those), and the monotonic
/// ones again as `…_total` (COMPAT.md §3), typed gauge as the other `_total` families here.
fn auth_query(
    enc: &mut DescriptorEncoder,
    all: &[Arc<crate::auth_query::AuthQuery>],
) -> Result<(), std::fmt::Error> {
    // (family, label, [(label value, index in FIGURES, monotonic)])
    type Family = (
        &'static str,
        &'static str,
        &'static [(&'static str, usize, bool)],
    );
    let families: [Family; 4] = [
        (
            "auth_query_cache",
            "type",
            &[
                ("entries", 0, false),
                ("hits", 1, true),
                ("misses", 2, true),
                ("refetches", 3, true),
                ("rate_limited", 4, true),
            ],
        ),
        (
            "auth_query_auth",
            "result",
            &[("success", 5, true), ("failure", 6, true)],
        ),
        (
            "auth_query_executor",
            "type",
            &[("queries", 7, true), ("errors", 8, true)],
        ),
        (
            "auth_query_dynamic_pools",
            "type",
            &[
                ("current", 9, false),
                ("created", 10, true),
                ("destroyed", 11, true),
            ],
        ),
    ];
    let figures: Vec<_> = all
        .iter()
        .map(|a| (a.settings.database.clone(), a.figures()))
        .collect();
    for (family, label, rows) in families {
        let mut now = Vec::new();
        let mut totals = Vec::new();
        for (db, f) in &figures {
            for (value, i, monotonic) in rows {
                let l: Labels = vec![(label, value.to_string()), ("database", db.clone())];
                if *monotonic {
                    totals.push((l.clone(), f[*i] as i64));
                }
                now.push((l, f[*i] as i64));
            }
        }
        gauge(
            enc,
            family,
            "auth_query figures per pool section (PgDoorman's gauge)",
            &now,
        )?;
        gauge(
            enc,
            &format!("{family}_total"),
            "auth_query events per pool section since it was loaded (monotonic)",
            &totals,
        )?;
    }
    Ok(())
}

/// `pg_doorman_startup_parameters_dropped_total{pool,reason}` (auth_query rows' parameters
/// left out; the config's are checked at load) and
/// `pg_doorman_backend_startup_parameter_errors_total{pool,sqlstate}` (backend logins
/// PostgreSQL refused for one), per pool section (COMPAT.md §3).
fn startup_parameters(
    enc: &mut DescriptorEncoder,
    pools: &[Arc<Pool>],
    auth: &[Arc<crate::auth_query::AuthQuery>],
) -> Result<(), std::fmt::Error> {
    let mut dropped = Vec::new();
    for a in auth {
        for (reason, n) in crate::auth_query::DROP_REASONS
            .iter()
            .zip(a.dropped_counts())
        {
            let l: Labels = vec![
                ("pool", a.settings.database.clone()),
                ("reason", reason.to_string()),
            ];
            dropped.push((l, n));
        }
    }
    counter(
        enc,
        "startup_parameters_dropped",
        "Startup parameters of auth_query rows left out, by reason",
        &dropped,
    )?;
    let mut errors: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for p in pools {
        for (code, n) in p.stats.startup_parameter_errors() {
            *errors
                .entry((p.settings.database.clone(), code))
                .or_default() += n;
        }
    }
    let errors: Vec<(Labels, u64)> = errors
        .into_iter()
        .map(|((pool, code), n)| (vec![("pool", pool), ("sqlstate", code)], n))
        .collect();
    counter(
        enc,
        "backend_startup_parameter_errors",
        "Backend logins PostgreSQL refused for a startup parameter, by SQLSTATE",
        &errors,
    )
}

fn pressure(enc: &mut DescriptorEncoder, pools: &[Arc<Pool>]) -> Result<(), std::fmt::Error> {
    let mut now = Vec::new();
    let mut totals = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for p in pools {
        let Some(c) = &p.settings.coordinator else {
            continue;
        };
        if !seen.insert(c.database.clone()) {
            continue;
        }
        let l = vec![("database", c.database.clone())];
        let (used, reserve) = c.used();
        for (t, v) in [
            ("connections", used),
            ("reserve_in_use", reserve),
            ("max_connections", c.settings.max),
            ("reserve_pool_size", c.settings.reserve),
        ] {
            now.push((with(l.clone(), "type", t), v as i64));
        }
        for (t, v) in [
            ("evictions", &c.evictions),
            ("reserve_acquisitions", &c.reserve_acquisitions),
            ("exhaustions", &c.exhaustions),
        ] {
            totals.push((with(l.clone(), "type", t), v.load(R) as i64));
        }
    }
    gauge(
        enc,
        "pool_coordinator",
        "Pool coordinator state per database (max_db_connections)",
        &now,
    )?;
    gauge(
        enc,
        "pool_coordinator_total",
        "Pool coordinator events per database since start (monotonic)",
        &totals,
    )?;
    let mut inflight = Vec::new();
    let mut totals = Vec::new();
    for p in pools {
        let l = pool_labels(p);
        let sc = &p.stats.scaling;
        inflight.push((
            with(l.clone(), "type", "inflight_creates"),
            sc.inflight.load(R) as i64,
        ));
        for (t, v) in [
            ("creates_started", &sc.creates),
            ("burst_gate_waits", &sc.gate_waits),
            ("burst_gate_budget_exhausted", &sc.gate_budget_exhausted),
            ("anticipation_wakes_notify", &sc.anticipation_notify),
            ("anticipation_wakes_timeout", &sc.anticipation_timeout),
            ("create_fallback", &sc.create_fallback),
            ("replenish_deferred", &sc.replenish_deferred),
        ] {
            totals.push((with(l.clone(), "type", t), v.load(R) as i64));
        }
    }
    gauge(
        enc,
        "pool_scaling",
        "Backend connects in flight per pool",
        &inflight,
    )?;
    gauge(
        enc,
        "pool_scaling_total",
        "How backend connections came about, per pool since start (monotonic)",
        &totals,
    )
}

/// Prepared-statement memory held by clients and backend cache hits per pool.
fn prepared_memory(
    enc: &mut DescriptorEncoder,
    pools: &[Arc<Pool>],
    clients: &[Arc<crate::app::clients::ClientInfo>],
) -> Result<(), std::fmt::Error> {
    const GAUGES: [(&str, &str); 7] = [
        (
            "clients_prepared_cache_entries",
            "Statements connected clients hold in their own maps",
        ),
        (
            "clients_prepared_cache_bytes",
            "Bytes of names and statement text those entries refer to",
        ),
        (
            "clients_prepared_named_entries",
            "Named statements of connected clients",
        ),
        (
            "clients_prepared_anonymous_entries",
            "Statements connected clients remember by text",
        ),
        (
            "async_clients_count",
            "Connected clients that pipelined with Flush",
        ),
        (
            "servers_prepared_hits",
            "Parses found prepared on the live backends",
        ),
        (
            "servers_prepared_misses",
            "Parses the live backends had to prepare",
        ),
    ];
    let mut gauges: [Vec<(Labels, i64)>; 7] = Default::default();
    let mut counters: [Vec<(Labels, u64)>; 3] = Default::default();
    for p in pools {
        let l = pool_labels(p);
        let m = crate::prepared::MemoryFigures::of(
            p.statements.as_ref(),
            crate::app::clients::async_clients(clients, p),
        );
        let servers = p.servers.snapshot();
        let hits: u64 = servers.iter().map(|s| s.prepared_hits.load(R)).sum();
        let misses: u64 = servers.iter().map(|s| s.prepared_misses.load(R)).sum();
        let values = [
            m.named + m.anonymous,
            m.client_bytes,
            m.named,
            m.anonymous,
            m.async_clients,
            hits as i64,
            misses as i64,
        ];
        for (rows, v) in gauges.iter_mut().zip(values) {
            rows.push((l.clone(), v));
        }
        let values = [
            m.evictions_total,
            p.stats.prepared_hits.load(R),
            p.stats.prepared_misses.load(R),
        ];
        for (rows, v) in counters.iter_mut().zip(values) {
            rows.push((l.clone(), v));
        }
    }
    for ((name, help), rows) in GAUGES.iter().zip(&gauges) {
        gauge(enc, name, help, rows)?;
    }
    counter(
        enc,
        "clients_prepared_anonymous_evictions",
        "Entries dropped by the per-client statement caps",
        &counters[0],
    )?;
    // Typed gauge for the same reason as in pressure(): a counter family would share its
    // name with the gauge of the live backends.
    let as_gauge = |rows: &[(Labels, u64)]| -> Vec<(Labels, i64)> {
        rows.iter().map(|(l, v)| (l.clone(), *v as i64)).collect()
    };
    gauge(
        enc,
        "servers_prepared_hits_total",
        "Parses found prepared on the backend since start (monotonic)",
        &as_gauge(&counters[1]),
    )?;
    gauge(
        enc,
        "servers_prepared_misses_total",
        "Parses the backend had to prepare since start (monotonic)",
        &as_gauge(&counters[2]),
    )
}

/// The /metrics body.
pub fn render(ctx: &Arc<AppContext>) -> String {
    let mut reg = prometheus_client::registry::Registry::with_prefix("pg_doorman");
    reg.register_collector(Box::new(View(ctx.clone())));
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &reg).is_err() {
        out.clear();
    }
    out
}

/// Serves `GET /metrics` on `listener` until shutdown. One short-lived task per scrape.
pub async fn serve(listener: tokio::net::TcpListener, ctx: Arc<AppContext>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = ctx.lifecycle.stop_accepting.cancelled() => return,
            _ = ctx.shutdown.cancelled() => return,
        };
        let Ok((mut sock, _)) = accepted else {
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut req = Vec::with_capacity(512);
            let mut chunk = [0u8; 1024];
            // The request line and headers, at most 8 KiB, within 5 s.
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => req.extend_from_slice(&chunk[..n]),
                    }
                }
                true
            })
            .await;
            if !matches!(read, Ok(true)) {
                return;
            }
            let line = req.split(|&c| c == b'\r').next().unwrap_or_default();
            let mut parts = line.split(|&c| c == b' ');
            let (method, path) = (parts.next(), parts.next());
            let (status, ctype, body) = match (method, path) {
                (Some(b"GET"), Some(p)) if p == b"/metrics" || p.starts_with(b"/metrics?") => (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    render(&ctx),
                ),
                (Some(b"GET"), Some(b"/")) => (
                    "200 OK",
                    "text/plain; charset=utf-8",
                    "pg_doorman: metrics at /metrics\n".to_string(),
                ),
                _ => (
                    "404 Not Found",
                    "text/plain; charset=utf-8",
                    "not found\n".into(),
                ),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
