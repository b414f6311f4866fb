//! The HTTP API on `listen_address`: `GET /` (health, "OK"), `GET /update_clusters` (poll
//! every cluster now, as PgDoorman's patroni_proxy), `GET /metrics` (OpenMetrics text).

use crate::state::Proxy;
use http_body_util::Full;
use hyper::body::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Serves the API on `listener` until the process ends.
pub fn serve(proxy: Arc<Proxy>, listener: tokio::net::TcpListener) {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let proxy = proxy.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let proxy = proxy.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&proxy, req).await) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await
                {
                    tracing::debug!("HTTP API: {e}");
                }
            });
        }
    });
}

async fn answer<B>(proxy: &Arc<Proxy>, req: hyper::Request<B>) -> hyper::Response<Full<Bytes>> {
    let (status, ctype, body) = if req.method() != hyper::Method::GET {
        (405, "text/plain", "only GET\n".to_string())
    } else {
        match req.uri().path() {
            "/" => (200, "text/plain", "OK\n".to_string()),
            "/update_clusters" => (200, "text/plain", proxy.update_all().await),
            "/metrics" => (
                200,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                metrics(proxy),
            ),
            _ => (404, "text/plain", "not found\n".to_string()),
        }
    };
    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemberLabels {
    cluster: String,
    member: String,
    role: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabels {
    cluster: String,
    member: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    cluster: String,
    port: String,
    member: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PortLabels {
    cluster: String,
    port: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpdateLabels {
    cluster: String,
    result: String,
}

/// The figures as OpenMetrics text, built from the live state at scrape time.
pub fn metrics(proxy: &Proxy) -> String {
    let members = Family::<MemberLabels, Gauge>::default();
    let lag = Family::<LagLabels, Gauge>::default();
    let open = Family::<BackendLabels, Gauge>::default();
    let opened = Family::<BackendLabels, Counter>::default();
    let routed = Family::<BackendLabels, Gauge>::default();
    let refused = Family::<PortLabels, Counter>::default();
    let connect_errors = Family::<PortLabels, Counter>::default();
    let closed = Family::<PortLabels, Counter>::default();
    let updates = Family::<UpdateLabels, Counter>::default();
    for c in proxy.clusters.lock().values() {
        for m in c.members.lock().iter() {
            members
                .get_or_create(&MemberLabels {
                    cluster: c.name.clone(),
                    member: m.name.clone(),
                    role: m.role.as_str().to_string(),
                    state: m.state.clone(),
                })
                .set(1);
            if let Some(l) = m.lag {
                lag.get_or_create(&LagLabels {
                    cluster: c.name.clone(),
                    member: m.name.clone(),
                })
                .set(i64::try_from(l).unwrap_or(i64::MAX));
            }
        }
        for (ok, n) in [("ok", &c.updates_ok), ("error", &c.updates_failed)] {
            updates
                .get_or_create(&UpdateLabels {
                    cluster: c.name.clone(),
                    result: ok.into(),
                })
                .inc_by(n.load(Ordering::Relaxed));
        }
        for (name, p) in c.ports.lock().iter() {
            let pl = PortLabels {
                cluster: c.name.clone(),
                port: name.clone(),
            };
            let s = &p.routes.stats;
            refused
                .get_or_create(&pl)
                .inc_by(s.refused.load(Ordering::Relaxed));
            connect_errors
                .get_or_create(&pl)
                .inc_by(s.connect_errors.load(Ordering::Relaxed));
            closed
                .get_or_create(&pl)
                .inc_by(s.closed_on_change.load(Ordering::Relaxed));
            for b in p.routes.backends() {
                let bl = BackendLabels {
                    cluster: c.name.clone(),
                    port: name.clone(),
                    member: b.member.clone(),
                };
                let n = |a: &std::sync::atomic::AtomicU64| {
                    i64::try_from(a.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
                };
                open.get_or_create(&bl).inc_by(n(&b.active));
                opened
                    .get_or_create(&bl)
                    .inc_by(b.total.load(Ordering::Relaxed));
                routed.get_or_create(&bl).set(i64::from(
                    b.qualified.load(Ordering::Relaxed) && !b.close.is_cancelled(),
                ));
            }
        }
    }
    let mut r = Registry::with_prefix("patroni_proxy");
    r.register(
        "member",
        "Cluster members from the last /cluster poll (1 per member, role and state as labels)",
        members,
    );
    r.register(
        "member_lag_bytes",
        "Replication lag Patroni reports per replica, bytes",
        lag,
    );
    r.register(
        "backend_connections",
        "Connections open now to a member through a port",
        open,
    );
    r.register(
        "backend_connections_opened",
        "Connections made to a member through a port",
        opened,
    );
    r.register(
        "backend_routed",
        "1 while a member takes new connections on a port, 0 while its connections drain",
        routed,
    );
    r.register(
        "refused_connections",
        "Client connections refused because no member qualified for the port",
        refused,
    );
    r.register(
        "backend_connect_errors",
        "Connects to a chosen member that failed",
        connect_errors,
    );
    r.register(
        "closed_on_role_change",
        "Connections closed because their member stopped qualifying for the port",
        closed,
    );
    r.register(
        "cluster_updates",
        "Polls of Patroni's /cluster, by result",
        updates,
    );
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &r).is_err() {
        out = "# encoding failed\n".into();
    }
    out
}
