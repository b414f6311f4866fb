//! The encoding helpers the `/metrics` families share: label sets and one-call counter and
//! gauge families (prometheus-client's descriptor encoder).

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use std::sync::atomic::Ordering;

/// Every value is a snapshot of independent atomics: no ordering between them is needed.
pub(super) const R: Ordering = Ordering::Relaxed;

/// Label pairs of one row.
pub(super) type Labels = Vec<(&'static str, String)>;

pub(super) fn counter(
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

pub(super) fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
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

pub(super) fn pool_labels(p: &crate::pool::Pool) -> Labels {
    vec![
        ("user", p.settings.user.clone()),
        ("database", p.settings.database.clone()),
    ]
}

pub(super) fn with(mut l: Labels, k: &'static str, v: &str) -> Labels {
    l.insert(0, (k, v.to_string()));
    l
}
