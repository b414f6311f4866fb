//! Prometheus `/metrics` (OpenMetrics text via prometheus-client) on the `prometheus`/`web`
//! listener. Every value is read at scrape time from the atomics the pools, clients and
//! connections keep, so a scrape takes no lock on the hot path and counters stay monotonic
//! (COMPAT.md §3 names). The families of the optional parts (fallback, auth_query, startup
//! parameters, pressure, prepared-statement memory) are in `families`, the shared encoding
//! helpers in `encode`.

use crate::app::clients::state;
use crate::app::context::AppContext;
use crate::pool::stats::ERROR_CLASSES;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod encode;
mod families;

use encode::{Labels, R, counter, gauge, pool_labels, with};
use families::{auth_query, fallback_families, prepared_memory, pressure, startup_parameters};

/// The collector: a view of the running process.
struct View(Arc<AppContext>);

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("pg_doorman metrics")
    }
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
