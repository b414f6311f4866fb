//! SHOW commands: columns and order as PgDoorman's console (COMPAT.md §2.2).

use super::result::{Col, ResultSet};
use crate::app::clients::state;
use crate::app::context::AppContext;
use bytes::BytesMut;
use doorman_wire::{ErrorFields, sqlstate};
use std::sync::atomic::Ordering;

const R: Ordering = Ordering::Relaxed;

/// The commands SHOW HELP lists.
const HELP: &[&str] = &[
    "SHOW HELP|CONFIG|DATABASES|POOLS|POOLS_EXTENDED|POOLS_MEMORY|POOL_COORDINATOR|POOL_SCALING|STATS|CLIENTS|SERVERS|CONNECTIONS|USERS|LISTS|VERSION|LOG_LEVEL|PREPARED_STATEMENTS|STARTUP_PARAMETERS|AUTH_QUERY",
    "SET log_level = '<filter>'",
    "PAUSE [<db>]",
    "RESUME [<db>]",
    "RECONNECT [<db>]",
    "RELOAD",
    "SHUTDOWN",
    "UPGRADE",
];

fn cols(spec: &[(&'static str, Col)]) -> Vec<(&'static str, Col)> {
    spec.to_vec()
}

/// Runs `SHOW <args>`.
pub fn show(ctx: &AppContext, args: &[&str], out: &mut BytesMut) -> Result<(), ErrorFields> {
    let what = args
        .first()
        .map(|w| w.to_ascii_uppercase())
        .unwrap_or_default();
    match what.as_str() {
        "HELP" => {
            let mut rs = ResultSet::new(out, &[("item", Col::Text)]);
            for h in HELP {
                rs.row(&[Some(h)]);
            }
            rs.finish("SHOW");
        }
        "VERSION" => {
            let mut rs = ResultSet::new(out, &[("version", Col::Text)]);
            rs.row(&[Some(&format!("pg_doorman {}", env!("CARGO_PKG_VERSION")))]);
            rs.finish("SHOW");
        }
        "LOG_LEVEL" => {
            let mut rs = ResultSet::new(out, &[("log_level", Col::Text)]);
            rs.row(&[Some(&crate::logging::current())]);
            rs.finish("SHOW");
        }
        "CONFIG" => config(ctx, out),
        "DATABASES" => databases(ctx, out),
        "POOLS" => pools(ctx, out),
        "STATS" => stats(ctx, out),
        "POOLS_EXTENDED" => pools_extended(ctx, out),
        "POOL_COORDINATOR" => coordinators(ctx, out),
        "POOL_SCALING" => scaling(ctx, out),
        "POOLS_MEMORY" | "POOL_MEMORY" => memory(ctx, out),
        "CLIENTS" => clients(ctx, out),
        "SERVERS" => servers(ctx, out),
        "CONNECTIONS" => {
            let c = &ctx.conns;
            let mut rs = ResultSet::new(
                out,
                &cols(&[
                    ("total", Col::Int),
                    ("errors", Col::Int),
                    ("tls", Col::Int),
                    ("plain", Col::Int),
                    ("cancel", Col::Int),
                ]),
            );
            rs.row_s(&[
                c.total.load(R).to_string(),
                c.errors.load(R).to_string(),
                c.tls.load(R).to_string(),
                c.plain.load(R).to_string(),
                c.cancel.load(R).to_string(),
            ]);
            rs.finish("SHOW");
        }
        "USERS" => {
            let mut rs = ResultSet::new(out, &[("name", Col::Text), ("pool_mode", Col::Text)]);
            let mut seen = std::collections::BTreeSet::new();
            for p in &ctx.pools.all() {
                if seen.insert((p.settings.user.clone(), p.settings.mode.as_str())) {
                    rs.row(&[Some(&p.settings.user), Some(p.settings.mode.as_str())]);
                }
            }
            rs.finish("SHOW");
        }
        "STARTUP_PARAMETERS" => startup_parameters(ctx, out),
        "AUTH_QUERY" => auth_query(ctx, out),
        "LISTS" => lists(ctx, out),
        "PREPARED_STATEMENTS" => prepared(ctx, out),
        _ => {
            return Err(ErrorFields::error(
                sqlstate::SYSTEM_ERROR,
                format!("unsupported SHOW: {}", args.join(" ")),
            )
            .with_detail("SHOW HELP lists the commands"));
        }
    }
    Ok(())
}

/// SHOW STARTUP_PARAMETERS (PgDoorman's columns): what each pool's backends get in their
/// StartupMessage, and from where (`general`, `pool`, or the user's `auth_query` row for a
/// dynamic pool). A configured set that does not fit PostgreSQL's packet cap is refused at
/// load; a row's key that does not fit is left out and shown as `dropped_due_to_budget`.
/// (`stale` never shows: a row whose parameters change gets a new pool.)
fn startup_parameters(ctx: &AppContext, out: &mut BytesMut) {
    let reloaded = ctx.reloaded.load_full();
    let config = reloaded.as_deref().unwrap_or(&ctx.config);
    let mut rs = ResultSet::new(
        out,
        &cols(&[
            ("user", Col::Text),
            ("database", Col::Text),
            ("parameter", Col::Text),
            ("value", Col::Text),
            ("source", Col::Text),
            ("state", Col::Text),
        ]),
    );
    for p in &ctx.pools.all() {
        let s = &p.settings;
        let own = config.pools.get(&s.database).map(|c| &c.startup_parameters);
        let row = &s.row_parameters;
        for (k, v) in &s.startup_parameters {
            let source = if row.applied.contains(k) {
                "auth_query"
            } else if own.is_some_and(|m| m.contains_key(k)) {
                "pool"
            } else {
                "general"
            };
            rs.row(&[
                Some(&s.user),
                Some(&s.database),
                Some(k),
                Some(v),
                Some(source),
                Some("applied"),
            ]);
        }
        for (k, v, _) in row.left_out.iter().filter(|(_, _, r)| *r == "budget") {
            rs.row(&[
                Some(&s.user),
                Some(&s.database),
                Some(k),
                Some(v),
                Some("auth_query"),
                Some("dropped_due_to_budget"),
            ]);
        }
    }
    rs.finish("SHOW");
}

/// SHOW CONFIG: the config last loaded (at start or by a reload). Keys outside pools, users
/// and pg_hba keep their start values until a restart; `changeable` says which.
fn config(ctx: &AppContext, out: &mut BytesMut) {
    let reloaded = ctx.reloaded.load_full();
    let g = &reloaded.as_deref().unwrap_or(&ctx.config).general;
    let mut rs = ResultSet::new(
        out,
        &cols(&[
            ("key", Col::Text),
            ("value", Col::Text),
            ("default", Col::Text),
            ("changeable", Col::Text),
        ]),
    );
    let ms = |d: &crate::config::units::Millis| d.0.as_millis().to_string();
    // Unset runtime knobs run with tokio's own defaults.
    fn opt<T: ToString>(v: &Option<T>) -> String {
        v.as_ref()
            .map_or_else(|| "default".to_string(), T::to_string)
    }
    // Keys a reload applies show the loaded value; the others the one in force until restart.
    let run = &ctx.config.general;
    let rows: Vec<(&str, String, bool)> = vec![
        ("host", run.host.clone(), false),
        ("port", run.port.to_string(), false),
        ("worker_threads", run.worker_threads.to_string(), false),
        (
            "worker_cpu_affinity_pinning",
            run.worker_cpu_affinity_pinning.to_string(),
            false,
        ),
        (
            "worker_stack_size",
            opt(&run.worker_stack_size.map(|b| b.0)),
            false,
        ),
        (
            "max_blocking_threads",
            opt(&run.max_blocking_threads),
            false,
        ),
        (
            "tokio_event_interval",
            opt(&run.tokio_event_interval),
            false,
        ),
        (
            "tokio_global_queue_interval",
            opt(&run.tokio_global_queue_interval),
            false,
        ),
        ("connect_timeout", ms(&g.connect_timeout), true),
        ("query_wait_timeout", ms(&g.query_wait_timeout), true),
        ("idle_timeout", ms(&g.idle_timeout), true),
        ("server_lifetime", ms(&g.server_lifetime), true),
        (
            "retain_connections_time",
            ms(&run.retain_connections_time),
            false,
        ),
        ("max_connections", run.max_connections.to_string(), false),
        ("admin_username", g.admin_username.clone(), true),
        ("tls_mode", run.tls_mode.as_str().to_string(), false),
        (
            "prepared_statements",
            g.prepared_statements.to_string(),
            true,
        ),
        (
            "prepared_statements_cache_size",
            g.prepared_statements_cache_size.to_string(),
            true,
        ),
        ("max_memory_usage", g.max_memory_usage.0.to_string(), true),
        ("log_level", crate::logging::current(), true),
    ];
    for (k, v, reloads) in rows {
        let changeable = if reloads { "yes" } else { "no" };
        rs.row(&[Some(k), Some(&v), Some("-"), Some(changeable)]);
    }
    rs.finish("SHOW");
}

fn databases(ctx: &AppContext, out: &mut BytesMut) {
    let mut rs = ResultSet::new(
        out,
        &cols(&[
            ("name", Col::Text),
            ("host", Col::Text),
            ("port", Col::Int),
            ("database", Col::Text),
            ("force_user", Col::Text),
            ("pool_size", Col::Int),
            ("min_pool_size", Col::Int),
            ("reserve_pool", Col::Int),
            ("pool_mode", Col::Text),
            ("max_connections", Col::Int),
            ("current_connections", Col::Int),
        ]),
    );
    for p in &ctx.pools.all() {
        let s = &p.settings;
        let (host, port) = match &s.address {
            crate::pool::settings::ServerAddress::Tcp { host, port } => (host.clone(), *port),
            crate::pool::settings::ServerAddress::Unix(path) => (path.clone(), 0),
        };
        let c = p.counts();
        rs.row_s(&[
            s.database.clone(),
            host,
            port.to_string(),
            s.server_database.clone(),
            s.server_user.clone(),
            s.pool_size.to_string(),
            s.min_pool_size.to_string(),
            "0".into(),
            s.mode.as_str().into(),
            s.pool_size.to_string(),
            c.sv_total.to_string(),
        ]);
    }
    rs.finish("SHOW");
}

/// Backend figures SHOW POOLS and POOLS_EXTENDED share.
struct Occupancy {
    sv_active: usize,
    /// Connections being opened (counted in the pool, not yet listed).
    sv_login: usize,
    maxwait: std::time::Duration,
}

fn occupancy(p: &crate::pool::Pool, c: &crate::pool::PoolCounts) -> Occupancy {
    let servers = p.servers.snapshot();
    Occupancy {
        sv_active: servers.iter().filter(|s| s.active.load(R)).count(),
        sv_login: c.sv_total.saturating_sub(servers.len()),
        maxwait: p.max_wait(),
    }
}

fn pools(ctx: &AppContext, out: &mut BytesMut) {
    let mut rs = ResultSet::new(
        out,
        &cols(&[
            ("database", Col::Text),
            ("user", Col::Text),
            ("pool_mode", Col::Text),
            ("cl_idle", Col::Int),
            ("cl_active", Col::Int),
            ("cl_waiting", Col::Int),
            ("cl_cancel_req", Col::Int),
            ("sv_active", Col::Int),
            ("sv_idle", Col::Int),
            ("sv_used", Col::Int),
            ("sv_login", Col::Int),
            ("pool_size", Col::Int),
            ("maxwait", Col::Int),
            ("maxwait_us", Col::Int),
            ("avg_xact_time", Col::Int),
            ("paused", Col::Int),
            ("fallback_active", Col::Int),
            ("oldest_active_age_ms", Col::Int),
            ("cl_pinned", Col::Int),
        ]),
    );
    // One snapshot of the client list for every pool's oldest_active_age_ms.
    let clients = ctx.client_list.snapshot();
    for p in &ctx.pools.all() {
        let c = p.counts();
        let st = &p.stats;
        let logged_in = st.clients.load(R);
        let active = st.active();
        let waiting = c.cl_waiting;
        let Occupancy {
            sv_active,
            sv_login,
            maxwait,
        } = occupancy(p, &c);
        let xacts = st.xacts();
        let avg_xact = st.xact_us().checked_div(xacts).unwrap_or(0);
        let oldest = clients
            .iter()
            .filter(|c| std::ptr::eq(&*c.pool, &**p) && c.state.load(R) == state::ACTIVE)
            .map(|c| {
                let now = c.connected.elapsed().as_micros() as u64;
                now.saturating_sub(c.wait_from_us.load(R)) / 1000
            })
            .max()
            .unwrap_or(0);
        let pinned = clients
            .iter()
            .filter(|c| std::ptr::eq(&*c.pool, &**p) && c.pinned.load(R))
            .count();
        rs.row_s(&[
            p.settings.database.clone(),
            p.settings.user.clone(),
            p.settings.mode.as_str().into(),
            logged_in.saturating_sub(active + waiting).to_string(),
            active.to_string(),
            waiting.to_string(),
            "0".into(),
            sv_active.to_string(),
            c.sv_idle.to_string(),
            "0".into(),
            sv_login.to_string(),
            p.settings.pool_size.to_string(),
            maxwait.as_secs().to_string(),
            maxwait.subsec_micros().to_string(),
            avg_xact.to_string(),
            u8::from(st.paused.load(R)).to_string(),
            u8::from(p.settings.fallback.as_ref().is_some_and(|f| f.active())).to_string(),
            oldest.to_string(),
            pinned.to_string(),
        ]);
    }
    rs.finish("SHOW");
}

/// Percentiles are in µs, from the pool's duration histograms.
fn pools_extended(ctx: &AppContext, out: &mut BytesMut) {
    let mut rs = ResultSet::new(
        out,
        &cols(&[
            ("database", Col::Text),
            ("user", Col::Text),
            ("cl_active", Col::Int),
            ("cl_waiting", Col::Int),
            ("sv_active", Col::Int),
            ("sv_idle", Col::Int),
            ("sv_used", Col::Int),
            ("sv_login", Col::Int),
            ("pool_size", Col::Int),
            ("maxwait", Col::Int),
            ("maxwait_us", Col::Int),
            ("pool_mode", Col::Text),
            ("bytes_recieved", Col::Int),
            ("bytes_sent", Col::Int),
            ("query_0.99", Col::Int),
            ("transaction_0.99", Col::Int),
            ("query_0.95", Col::Int),
            ("transaction_0.95", Col::Int),
            ("query_0.5", Col::Int),
            ("transaction_0.5", Col::Int),
        ]),
    );
    for p in &ctx.pools.all() {
        let c = p.counts();
        let st = &p.stats;
        let Occupancy {
            sv_active,
            sv_login,
            maxwait,
        } = occupancy(p, &c);
        let (q, x) = (&st.query_hist, &st.xact_hist);
        rs.row_s(&[
            p.settings.database.clone(),
            p.settings.user.clone(),
            st.active().to_string(),
            c.cl_waiting.to_string(),
            sv_active.to_string(),
            c.sv_idle.to_string(),
            "0".into(),
            sv_login.to_string(),
            p.settings.pool_size.to_string(),
            maxwait.as_secs().to_string(),
            maxwait.subsec_micros().to_string(),
            p.settings.mode.as_str().into(),
            st.received().to_string(),
            st.sent().to_string(),
            q.quantile_us(0.99).to_string(),
            x.quantile_us(0.99).to_string(),
            q.quantile_us(0.95).to_string(),
            x.quantile_us(0.95).to_string(),
            q.quantile_us(0.5).to_string(),
            x.quantile_us(0.5).to_string(),
        ]);
    }
    rs.finish("SHOW");
}

/// SHOW AUTH_QUERY: one row per pool section with an auth_query (PgDoorman's 13 columns,
/// COMPAT.md §2.2).
fn auth_query(ctx: &AppContext, out: &mut BytesMut) {
    let mut spec = vec![("database", Col::Text)];
    spec.extend(crate::auth_query::FIGURES.iter().map(|f| (*f, Col::Int)));
    let mut rs = ResultSet::new(out, &spec);
    let mut all = ctx.pools.auth_queries();
    all.sort_by(|a, b| a.settings.database.cmp(&b.settings.database));
    for a in &all {
        let mut row = vec![a.settings.database.clone()];
        row.extend(a.figures().iter().map(u64::to_string));
        rs.row_s(&row);
    }
    rs.finish("SHOW");
}

fn coordinators(ctx: &AppContext, out: &mut BytesMut) {
    let mut rs = ResultSet::new(
        out,
        &cols(&[
            ("database", Col::Text),
            ("max_db_conn", Col::Int),
            ("current", Col::Int),
            ("reserve_size", Col::Int),
            ("reserve_used", Col::Int),
            ("evictions", Col::Int),
            ("reserve_acq", Col::Int),
            ("exhaustions", Col::Int),
        ]),
    );
    let mut seen = std::collections::BTreeSet::new();
    for p in &ctx.pools.all() {
        let Some(c) = &p.settings.coordinator else {
            continue;
        };
        if !seen.insert(c.database.clone()) {
            continue;
        }
        let (used, reserve) = c.used();
        rs.row_s(&[
            c.database.clone(),
            c.settings.max.to_string(),
            used.to_string(),
            c.settings.reserve.to_string(),
            reserve.to_string(),
            c.evictions.load(R).to_string(),
            c.reserve_acquisitions.load(R).to_string(),
            c.exhaustions.load(R).to_string(),
        ]);
    }
    rs.finish("SHOW");
}

/// SHOW POOL_SCALING: how each pool's connections came about (COMPAT.md §2.2).
fn scaling(ctx: &AppContext, out: &mut BytesMut) {
    let mut rs = ResultSet::new(
        out,
        &cols(&[
            ("user", Col::Text),
            ("database", Col::Text),
            ("inflight", Col::Int),
            ("creates", Col::Int),
            ("gate_waits", Col::Int),
            ("gate_budget_ex", Col::Int),
            ("antic_notify", Col::Int),
            ("antic_timeout", Col::Int),
            ("create_fallback", Col::Int),
            ("replenish_def", Col::Int),
        ]),
    );
    for p in &ctx.pools.all() {
        let sc = &p.stats.scaling;
        rs.row_s(&[
            p.settings.user.clone(),
            p.settings.database.clone(),
            sc.inflight.load(R).to_string(),
            sc.creates.load(R).to_string(),
            sc.gate_waits.load(R).to_string(),
            sc.gate_budget_exhausted.load(R).to_string(),
            sc.anticipation_notify.load(R).to_string(),
            sc.anticipation_timeout.load(R).to_string(),
            sc.create_fallback.load(R).to_string(),
            sc.replenish_deferred.load(R).to_string(),
        ]);
    }
    rs.finish("SHOW");
}

/// SHOW POOLS_MEMORY: prepared-statement memory per pool, in the pool cache and in the
/// clients' own maps (COMPAT.md §2.2).
fn memory(ctx: &AppContext, out: &mut BytesMut) {
    let mut rs = ResultSet::new(
        out,
        &cols(&[
            ("database", Col::Text),
            ("user", Col::Text),
            ("pool_prepared_count", Col::Int),
            ("pool_prepared_bytes", Col::Int),
            ("client_prepared_count", Col::Int),
            ("client_prepared_bytes", Col::Int),
            ("client_named_count", Col::Int),
            ("client_anonymous_count", Col::Int),
            ("client_anonymous_evictions_alive", Col::Int),
            ("async_clients", Col::Int),
        ]),
    );
    let clients = ctx.client_list.snapshot();
    for p in &ctx.pools.all() {
        let m = crate::prepared::MemoryFigures::of(
            p.statements.as_ref(),
            crate::app::clients::async_clients(&clients, p),
        );
        rs.row_s(&[
            p.settings.database.clone(),
            p.settings.user.clone(),
            m.pool_count.to_string(),
            m.pool_bytes.to_string(),
            (m.named + m.anonymous).to_string(),
            m.client_bytes.to_string(),
            m.named.to_string(),
            m.anonymous.to_string(),
            m.evictions.to_string(),
            m.async_clients.to_string(),
        ]);
    }
    rs.finish("SHOW");
}

fn stats(ctx: &AppContext, out: &mut BytesMut) {
    let mut rs = ResultSet::new(
        out,
        &cols(&[
            ("database", Col::Text),
            ("user", Col::Text),
            ("total_xact_count", Col::Int),
            ("total_query_count", Col::Int),
            ("total_received", Col::Int),
            ("total_sent", Col::Int),
            ("total_xact_time", Col::Int),
            ("total_query_time", Col::Int),
            ("total_wait_time", Col::Int),
            ("total_errors", Col::Int),
            ("avg_xact_count", Col::Int),
            ("avg_query_count", Col::Int),
            ("avg_recv", Col::Int),
            ("avg_sent", Col::Int),
            ("avg_errors", Col::Int),
            ("avg_xact_time", Col::Int),
            ("avg_query_time", Col::Int),
            ("avg_wait_time", Col::Int),
        ]),
    );
    let secs = ctx.started.elapsed().as_secs().max(1);
    for p in &ctx.pools.all() {
        let st = &p.stats;
        let (x, q) = (st.xacts(), st.queries());
        let (rcv, snt) = (st.received(), st.sent());
        let (xt, wt) = (st.xact_us(), st.wait_us());
        let qt = st.query_hist.sum_us();
        let errors = st.total_errors();
        rs.row_s(&[
            p.settings.database.clone(),
            p.settings.user.clone(),
            x.to_string(),
            q.to_string(),
            rcv.to_string(),
            snt.to_string(),
            xt.to_string(),
            qt.to_string(),
            wt.to_string(),
            errors.to_string(),
            (x / secs).to_string(),
            (q / secs).to_string(),
            (rcv / secs).to_string(),
            (snt / secs).to_string(),
            (errors / secs).to_string(),
            xt.checked_div(x).unwrap_or(0).to_string(),
            qt.checked_div(q).unwrap_or(0).to_string(),
            wt.checked_div(q.max(x)).unwrap_or(0).to_string(),
        ]);
    }
    rs.finish("SHOW");
}

fn clients(ctx: &AppContext, out: &mut BytesMut) {
    let mut rs = ResultSet::new(
        out,
        &cols(&[
            ("client_id", Col::Text),
            ("database", Col::Text),
            ("user", Col::Text),
            ("application_name", Col::Text),
            ("addr", Col::Text),
            ("tls", Col::Text),
            ("state", Col::Text),
            ("wait", Col::Int),
            ("transaction_count", Col::Int),
            ("query_count", Col::Int),
            ("error_count", Col::Int),
            ("age_seconds", Col::Int),
        ]),
    );
    for c in ctx.client_list.snapshot() {
        let st = c.state.load(R);
        let wait = if st == state::WAITING {
            let now = c.connected.elapsed().as_micros() as u64;
            now.saturating_sub(c.wait_from_us.load(R)) / 1_000_000
        } else {
            0
        };
        let name = match st {
            state::ACTIVE => "active",
            state::WAITING => "waiting",
            _ => "idle",
        };
        rs.row_s(&[
            format!("#c{}", c.id),
            c.pool.settings.database.clone(),
            c.pool.settings.user.clone(),
            c.application_name().to_string(),
            c.addr().to_string(),
            c.tls.to_string(),
            name.into(),
            wait.to_string(),
            c.xacts.load(R).to_string(),
            c.queries.load(R).to_string(),
            c.errors.load(R).to_string(),
            c.connected.elapsed().as_secs().to_string(),
        ]);
    }
    rs.finish("SHOW");
}

fn servers(ctx: &AppContext, out: &mut BytesMut) {
    let mut rs = ResultSet::new(
        out,
        &cols(&[
            ("server_id", Col::Text),
            ("server_process_id", Col::Int),
            ("database_name", Col::Text),
            ("user", Col::Text),
            ("application_name", Col::Text),
            ("tls", Col::Text),
            ("state", Col::Text),
            ("wait", Col::Int),
            ("transaction_count", Col::Int),
            ("query_count", Col::Int),
            ("bytes_sent", Col::Int),
            ("bytes_received", Col::Int),
            ("age_seconds", Col::Int),
            ("prepare_cache_hit", Col::Int),
            ("prepare_cache_miss", Col::Int),
            ("prepare_cache_size", Col::Int),
        ]),
    );
    for p in &ctx.pools.all() {
        let app = p.settings.application_name.clone().unwrap_or_default();
        for s in p.servers.snapshot() {
            let active = s.active.load(R);
            rs.row_s(&[
                format!("#s{}", s.id),
                s.pid.to_string(),
                p.settings.database.clone(),
                p.settings.user.clone(),
                app.clone(),
                s.tls.to_string(),
                if active { "active" } else { "idle" }.into(),
                "0".into(),
                s.xacts.load(R).to_string(),
                s.queries.load(R).to_string(),
                s.sent.load(R).to_string(),
                s.received.load(R).to_string(),
                s.created.elapsed().as_secs().to_string(),
                s.prepared_hits.load(R).to_string(),
                s.prepared_misses.load(R).to_string(),
                s.prepared_size.load(R).to_string(),
            ]);
        }
    }
    rs.finish("SHOW");
}

fn lists(ctx: &AppContext, out: &mut BytesMut) {
    let mut rs = ResultSet::new(out, &[("list", Col::Text), ("items", Col::Int)]);
    let pools = ctx.pools.all();
    let dbs: std::collections::BTreeSet<_> = pools.iter().map(|p| &p.settings.database).collect();
    let users: std::collections::BTreeSet<_> = pools.iter().map(|p| &p.settings.user).collect();
    let clients = ctx.client_list.snapshot();
    let used_clients = clients
        .iter()
        .filter(|c| c.state.load(R) != state::IDLE)
        .count();
    let (mut free_servers, mut used_servers) = (0, 0);
    for p in &pools {
        for s in p.servers.snapshot() {
            if s.active.load(R) {
                used_servers += 1;
            } else {
                free_servers += 1;
            }
        }
    }
    for (k, v) in [
        ("databases", dbs.len()),
        ("users", users.len()),
        ("pools", pools.len()),
        ("free_clients", clients.len() - used_clients),
        ("used_clients", used_clients),
        ("login_clients", 0),
        ("free_servers", free_servers),
        ("used_servers", used_servers),
    ] {
        rs.row(&[Some(k), Some(&v.to_string())]);
    }
    rs.finish("SHOW");
}

fn prepared(ctx: &AppContext, out: &mut BytesMut) {
    let mut rs = ResultSet::new(
        out,
        &cols(&[
            ("pool", Col::Text),
            ("hash", Col::Text),
            ("name", Col::Text),
            ("query", Col::Text),
            ("count_used", Col::Int),
            ("kind", Col::Text),
        ]),
    );
    for p in &ctx.pools.all() {
        let Some(cache) = &p.statements else { continue };
        for st in cache.entries() {
            let q = st.body.split(|&c| c == 0).next().unwrap_or_default();
            rs.row_s(&[
                p.name(),
                format!("{:016x}", st.hash),
                format!("DOORMAN_{}", st.id),
                String::from_utf8_lossy(q).into_owned(),
                (std::sync::Arc::strong_count(&st) - 2).to_string(),
                "statement".into(),
            ]);
        }
    }
    rs.finish("SHOW");
}
