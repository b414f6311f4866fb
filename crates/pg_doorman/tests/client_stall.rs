//! `proxy_copy_data_timeout`: a client that stops reading a large reply does not hold its
//! backend forever. With pool_size 1, another client gets the pool's connection once the
//! stalled one is cut off; with the timeout off (0) it waits in vain (53300).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use std::io::Write;
use std::time::{Duration, Instant};

/// Starts a client that asks for ~200 MB of rows and never reads them; returns its socket.
fn stalled_client(d: &Doorman) -> std::net::TcpStream {
    let mut s = raw_login(d);
    s.write_all(&raw::query(
        "SELECT repeat('x', 2000) FROM generate_series(1, 100000)",
    ))
    .unwrap();
    s
}

async fn second_client_waits(timeout: &str) -> (Result<String, String>, Duration, Doorman) {
    let pg = cluster(PgAuth::Scram);
    let general = format!("  proxy_copy_data_timeout: {timeout}\n  query_wait_timeout: 4s\n");
    let d = doorman(
        &pg,
        &PoolSpec {
            pool_size: 1,
            general_extra: &general,
            ..Default::default()
        },
    );
    let _stalled = stalled_client(&d);
    // Let the reply fill the socket buffers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    let c = connect(&app_conn(&d)).await.unwrap();
    let r = c
        .simple_query("SELECT 1")
        .await
        .map(|_| "ok".to_string())
        .map_err(|e| sqlstate(&e));
    (r, t.elapsed(), d)
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_frees_its_backend() {
    let (r, took, d) = second_client_waits("1s").await;
    assert_eq!(r, Ok("ok".into()), "{}", d.log_text());
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert!(
        d.log_text()
            .contains("client took no data for proxy_copy_data_timeout"),
        "{}",
        d.log_text()
    );
}

#[tokio::test]
async fn without_the_timeout_the_stalled_client_keeps_its_backend() {
    let (r, _, _d) = second_client_waits("0").await;
    assert_eq!(r, Err("53300".into()));
}
