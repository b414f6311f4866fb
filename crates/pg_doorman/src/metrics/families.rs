//! The `/metrics` families of the optional parts: Patroni-assisted fallback, auth_query,
//! startup parameters, pool pressure and prepared-statement memory (COMPAT.md §3 names).

use super::encode::{Labels, R, counter, gauge, pool_labels, with};
use crate::pool::Pool;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use std::sync::Arc;

/// Patroni-assisted fallback, one row per pool section with `patroni_api_urls` (PgDoorman's
/// names, label `pool`; docs/patroni.md).
pub(super) fn fallback_families(
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
pub(super) fn auth_query(
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
pub(super) fn startup_parameters(
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

pub(super) fn pressure(
    enc: &mut DescriptorEncoder,
    pools: &[Arc<Pool>],
) -> Result<(), std::fmt::Error> {
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
pub(super) fn prepared_memory(
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
