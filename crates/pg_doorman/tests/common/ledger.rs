//! The ledger the load tests write: each client inserts rows (client id, n) and reports what it
//! was told; `audit` holds the table against the reports, `pool_is_clean` checks what the pool
//! is left with.

use super::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tokio_postgres::SimpleQueryMessage;

/// What one load client saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Row numbers whose INSERT succeeded.
    pub committed: BTreeSet<i64>,
    /// Row numbers whose INSERT failed (the row may or may not be there).
    pub in_doubt: BTreeSet<i64>,
    /// SQLSTATE of each error ("" when the connection closed without one).
    pub errors: Vec<String>,
    /// When each success came back.
    pub successes: Vec<Instant>,
}

/// Checks the ledger against the reports and returns (clients affected, SQLSTATEs seen).
pub fn audit(
    pg: &TempCluster,
    reports: &[Report],
    allowed: &[&str],
) -> (usize, BTreeMap<String, usize>) {
    let text = pg.psql_db("appdb", "SELECT worker, n FROM ledger");
    let mut rows: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (w, n) = line.split_once('|').unwrap();
        rows.entry(w.parse().unwrap())
            .or_default()
            .insert(n.parse().unwrap());
    }
    let mut affected = 0;
    let mut codes = BTreeMap::new();
    for (id, r) in reports.iter().enumerate() {
        let have = rows.remove(&(id as i64)).unwrap_or_default();
        let lost: Vec<_> = r.committed.difference(&have).collect();
        assert!(lost.is_empty(), "client {id} lost committed rows {lost:?}");
        let phantom: Vec<_> = have
            .iter()
            .filter(|n| !r.committed.contains(n) && !r.in_doubt.contains(n))
            .collect();
        assert!(
            phantom.is_empty(),
            "client {id}: rows nobody sent {phantom:?}"
        );
        assert!(!r.committed.is_empty(), "client {id} never got through");
        if !r.errors.is_empty() {
            affected += 1;
        }
        for e in &r.errors {
            assert!(
                allowed.contains(&e.as_str()),
                "client {id} got SQLSTATE {e:?}, expected one of {allowed:?}"
            );
            *codes.entry(e.clone()).or_insert(0) += 1;
        }
    }
    assert!(rows.is_empty(), "rows of unknown clients: {rows:?}");
    (affected, codes)
}

/// The `appdb` row of SHOW POOLS, column name to figure (the text columns are left out).
pub async fn pools_row(admin: &tokio_postgres::Client) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for m in admin.simple_query("SHOW POOLS").await.unwrap() {
        if let SimpleQueryMessage::Row(r) = m {
            if r.get("database") != Some("appdb") {
                continue;
            }
            for (i, c) in r.columns().iter().enumerate() {
                if let Some(v) = r.get(i).and_then(|v| v.parse().ok()) {
                    out.insert(c.name().to_string(), v);
                }
            }
        }
    }
    out
}

/// After the load (admin console as boss/boss_pw): no backend held or waited for (SHOW
/// POOLS), at most `pool` backends open, and every one of them answers a query in a
/// transaction held at once.
pub async fn pool_is_clean(pg: &TempCluster, d: &Doorman, pool: usize) {
    let admin = connect(&d.conn_str("boss", "boss_pw", "pgdoorman"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let row = pools_row(&admin).await;
        if row["sv_active"] == 0 && row["cl_active"] == 0 && row["cl_waiting"] == 0 {
            assert!(row["sv_idle"] as usize <= pool, "{row:?}");
            break;
        }
        assert!(Instant::now() < deadline, "backends still held: {row:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(backends(pg, "app") <= pool);
    let mut clients = Vec::new();
    for _ in 0..pool {
        let c = connect(&app_conn(d)).await.unwrap();
        c.batch_execute("BEGIN").await.unwrap();
        clients.push(c);
    }
    // Each transaction starts (and takes its backend) at its first statement; all are held
    // before any ends.
    let mut pids = BTreeSet::new();
    for c in &clients {
        pids.insert(one(c, "SELECT pg_backend_pid()").await);
    }
    for c in &clients {
        assert_eq!(one(c, "SELECT count(*) >= 0 FROM ledger").await, "t");
        c.batch_execute("COMMIT").await.unwrap();
    }
    assert_eq!(
        pids.len(),
        pool,
        "each held client had a backend of its own"
    );
}
