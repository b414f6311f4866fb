//! TLS on both sides with certificates made in the test: every client tls_mode against every
//! libpq sslmode, every server_tls_mode against PostgreSQL with and without ssl, mTLS both ways,
//! a wrong CA, SIGHUP rotation, direct TLS (PostgreSQL 17 style) and cancel over TLS, COPY over
//! server TLS.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::err_expect
)]

mod common;
use common::pki::Pki;
use common::raw::*;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// Runs psql with a full conninfo; returns (ok, stdout+stderr).
fn psql_conn(conninfo: &str, sql: &str) -> (bool, String) {
    let out = Command::new("psql")
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", conninfo, "-c", sql])
        .env("PGPASSWORD", "app_pw")
        .env("PGCONNECT_TIMEOUT", "10")
        .env("HOME", "/nonexistent") // no ~/.postgresql/root.crt
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Whether a psql session with `sslmode` (and extra conninfo) gets in, and over TLS.
fn attempt(d: &Doorman, host: &str, sslmode: &str, extra: &str) -> (bool, bool, String) {
    let conninfo = format!(
        "host={host} port={} user=app dbname=appdb sslmode={sslmode} {extra}",
        d.port
    );
    let (ok, out) = psql_conn(&conninfo, "\\conninfo");
    (ok, out.contains("SSL connection"), out)
}

fn client_tls_yaml(pki: &Pki, mode: &str) -> String {
    format!(
        "  tls_mode: {mode}\n  tls_certificate: \"{}\"\n  tls_private_key: \"{}\"\n  tls_ca_cert: \"{}\"\n",
        pki.p("server.crt"),
        pki.p("server.key"),
        pki.p("ca.pem")
    )
}

#[test]
fn client_modes_against_libpq_sslmodes() {
    let pki = Pki::new("client-ca");
    let other = Pki::new("other-ca");
    // The QuestDB case: the backend has no TLS at all.
    let pg = cluster(PgAuth::Scram);
    let ca = format!("sslrootcert={}", pki.p("ca.pem"));
    let wrong_ca = format!("sslrootcert={}", other.p("ca.pem"));
    let cert = format!(
        "sslcert={} sslkey={}",
        pki.p("client.crt"),
        pki.p("client.key")
    );
    // (tls_mode, sslmode, extra conninfo, expected: None = refused, Some(tls))
    let cases: &[(&str, &str, &str, Option<bool>)] = &[
        ("disable", "disable", "", Some(false)),
        ("disable", "prefer", "", Some(false)),
        ("disable", "require", "", None),
        ("allow", "disable", "", Some(false)),
        ("allow", "allow", "", Some(false)),
        ("allow", "prefer", "", Some(true)),
        ("allow", "require", "", Some(true)),
        ("allow", "verify-ca", &ca, Some(true)),
        ("allow", "verify-full", &ca, Some(true)),
        ("allow", "verify-ca", &wrong_ca, None),
        ("require", "disable", "", None),
        ("require", "allow", "", Some(true)),
        ("require", "prefer", "", Some(true)),
        ("require", "require", "", Some(true)),
        ("require", "verify-full", &ca, Some(true)),
        ("verify-full", "require", "", None),
        ("verify-full", "require", &cert, Some(true)),
    ];
    let mut failures = Vec::new();
    for mode in ["disable", "allow", "require", "verify-full"] {
        let d = doorman(
            &pg,
            &PoolSpec {
                general_extra: &client_tls_yaml(&pki, mode),
                ..Default::default()
            },
        );
        for (m, sslmode, extra, want) in cases.iter().filter(|c| c.0 == mode) {
            let (ok, tls, out) = attempt(&d, "localhost", sslmode, extra);
            let got = ok.then_some(tls);
            if got != *want {
                failures.push(format!(
                    "tls_mode {m} / sslmode {sslmode} {extra}: want {want:?}, got {got:?}: {out}"
                ));
            }
        }
        if mode == "verify-full" {
            // verify-full on both ends, by IP: the certificate has an IP SAN.
            let both = format!("{ca} {cert}");
            let (ok, tls, out) = attempt(&d, "127.0.0.1", "verify-full", &both);
            assert!(ok && tls, "{out}");
        }
        if mode == "require" {
            let (ok, _, out) = attempt(&d, "localhost", "disable", "");
            assert!(!ok && out.contains("requires TLS"), "{out}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// PostgreSQL with TLS and a pg_hba that refuses plain TCP.
fn ssl_cluster(pki: &Pki, hba: &str) -> TempCluster {
    let pg = cluster(PgAuth::Scram);
    pg.enable_ssl(
        &pki.server_cert_pem,
        &pki.server_key_pem,
        Some(&pki.ca_pem),
        hba,
    );
    pg
}

fn backend_ssl(d: &Doorman) -> Result<String, String> {
    let (ok, out, err) = psql(
        d,
        "app",
        "app_pw",
        "appdb",
        &[
            "-c",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ],
    );
    if ok {
        Ok(out.trim().to_string())
    } else {
        Err(err)
    }
}

fn server_tls_yaml(mode: &str, ca: Option<&str>) -> String {
    let mut y = format!("  server_tls_mode: {mode}\n");
    if let Some(ca) = ca {
        y.push_str(&format!("  server_tls_ca_cert: \"{ca}\"\n"));
    }
    y
}

#[test]
fn server_modes_against_postgres_with_and_without_tls() {
    let pki = Pki::new("pg-ca");
    let other = Pki::new("other-ca");
    let ca = pki.p("ca.pem");
    let wrong = other.p("ca.pem");
    // PostgreSQL accepting TLS only.
    let pg = ssl_cluster(&pki, "hostssl all all 127.0.0.1/32 scram-sha-256");
    let cases: &[(&str, Option<&str>, Option<&str>)] = &[
        ("disable", None, None),
        ("allow", None, Some("t")),
        ("prefer", None, Some("t")),
        ("require", None, Some("t")),
        ("verify-ca", Some(&ca), Some("t")),
        ("verify-full", Some(&ca), Some("t")),
        ("verify-ca", Some(&wrong), None),
        ("verify-full", Some(&wrong), None),
    ];
    for (mode, ca, want) in cases {
        let d = doorman(
            &pg,
            &PoolSpec {
                general_extra: &server_tls_yaml(mode, *ca),
                ..Default::default()
            },
        );
        let got = backend_ssl(&d);
        assert_eq!(
            got.as_ref().ok().map(String::as_str),
            *want,
            "{mode} {ca:?}: {got:?}"
        );
    }
    // A certificate for another name: verify-ca accepts it, verify-full does not.
    let named = Pki::for_host("named-ca", "db.internal", false);
    let pg_named = ssl_cluster(&named, "hostssl all all 127.0.0.1/32 scram-sha-256");
    let ca = named.p("ca.pem");
    for (mode, want) in [("verify-ca", Some("t")), ("verify-full", None)] {
        let d = doorman(
            &pg_named,
            &PoolSpec {
                general_extra: &server_tls_yaml(mode, Some(&ca)),
                ..Default::default()
            },
        );
        let got = backend_ssl(&d);
        assert_eq!(
            got.as_ref().ok().map(String::as_str),
            want,
            "{mode}: {got:?}"
        );
    }
    // PostgreSQL without TLS.
    let plain = cluster(PgAuth::Scram);
    for (mode, want) in [
        ("prefer", Some("f")),
        ("allow", Some("f")),
        ("require", None),
    ] {
        let d = doorman(
            &plain,
            &PoolSpec {
                general_extra: &server_tls_yaml(mode, None),
                ..Default::default()
            },
        );
        let got = backend_ssl(&d);
        assert_eq!(
            got.as_ref().ok().map(String::as_str),
            want,
            "{mode}: {got:?}"
        );
    }
}

#[test]
fn mtls_to_postgres() {
    let pki = Pki::new("mtls-ca");
    let pg = ssl_cluster(
        &pki,
        "hostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-ca",
    );
    let base = server_tls_yaml("verify-full", Some(&pki.p("ca.pem")));
    let without = doorman(
        &pg,
        &PoolSpec {
            general_extra: &base,
            ..Default::default()
        },
    );
    assert!(
        backend_ssl(&without).is_err(),
        "PostgreSQL wants a client certificate"
    );
    let with = format!(
        "{base}  server_tls_certificate: \"{}\"\n  server_tls_private_key: \"{}\"\n",
        pki.p("client.crt"),
        pki.p("client.key")
    );
    let d = doorman(
        &pg,
        &PoolSpec {
            general_extra: &with,
            ..Default::default()
        },
    );
    assert_eq!(backend_ssl(&d).unwrap(), "t");
}

#[tokio::test]
async fn copy_over_server_tls() {
    let pki = Pki::new("copy-ca");
    let pg = ssl_cluster(&pki, "hostssl all all 127.0.0.1/32 scram-sha-256");
    let d = doorman(
        &pg,
        &PoolSpec {
            general_extra: &server_tls_yaml("require", None),
            pool_size: 2,
            ..Default::default()
        },
    );
    let c = connect(&app_conn(&d)).await.unwrap();
    c.batch_execute("CREATE TABLE big(a int, b text)")
        .await
        .unwrap();
    use futures_util::SinkExt;
    let sink = c.copy_in("COPY big FROM STDIN").await.unwrap();
    let mut sink = std::pin::pin!(sink);
    let row = format!("\t{}\n", "z".repeat(200));
    for chunk in 0..10 {
        let mut data = String::new();
        for i in 0..2000 {
            data.push_str(&(chunk * 2000 + i).to_string());
            data.push_str(&row);
        }
        sink.send(bytes::Bytes::from(data)).await.unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), 20_000);
    // Several MB back through TLS on the backend side.
    let rows = c.query("SELECT b FROM big", &[]).await.unwrap();
    assert_eq!(rows.len(), 20_000);
    assert_eq!(one(&c, "SELECT count(*)::text FROM big").await, "20000");
}

/// A rustls client trusting `ca` (PEM path), optionally offering ALPN `postgresql`.
fn rustls_client(ca: &str, alpn: bool) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    if alpn {
        config.alpn_protocols = vec![b"postgresql".to_vec()];
    }
    Arc::new(config)
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Opens TLS to pg_doorman: SSLRequest first, or directly (PostgreSQL 17 `sslnegotiation=direct`).
fn tls_connect(port: u16, config: Arc<rustls::ClientConfig>, direct: bool) -> TlsStream {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if !direct {
        tcp.write_all(&[0, 0, 0, 8, 4, 210, 22, 47]).unwrap();
        let mut b = [0u8; 1];
        tcp.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"S");
    }
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

fn simple(s: &mut TlsStream, sql: &str) -> Vec<Msg> {
    s.write_all(&query(sql)).unwrap();
    read_until_ready(s)
}

#[test]
fn direct_tls_and_cancel_over_tls() {
    let pki = Pki::new("direct-ca");
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            general_extra: &client_tls_yaml(&pki, "require"),
            ..Default::default()
        },
    );
    let config = rustls_client(&pki.p("ca.pem"), true);
    let mut s = tls_connect(d.port, config.clone(), true);
    let (pid, secret) = login_on(&mut s);
    assert_eq!(s.conn.alpn_protocol(), Some(&b"postgresql"[..]));
    let r = simple(&mut s, "SELECT 'direct'");
    assert_eq!(r.iter().find(|m| m.tag == b'D').unwrap().text(), "direct");
    // Direct TLS without ALPN is refused, as PostgreSQL 17 does.
    let mut bare = tls_connect(d.port, rustls_client(&pki.p("ca.pem"), false), true);
    assert!(
        bare.write_all(&startup("app", "appdb")).is_err() || {
            let mut b = [0u8; 1];
            bare.read(&mut b).map(|n| n == 0).unwrap_or(true)
        }
    );
    // Cancel a running query: over TLS (SSLRequest then CancelRequest) and over plain TCP.
    for over_tls in [true, false] {
        s.write_all(&query("SELECT pg_sleep(20)")).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let mut cancel = Vec::new();
        cancel.extend_from_slice(&16u32.to_be_bytes());
        cancel.extend_from_slice(&80877102u32.to_be_bytes());
        cancel.extend_from_slice(&pid.to_be_bytes());
        cancel.extend_from_slice(&secret.to_be_bytes());
        if over_tls {
            let mut c = tls_connect(d.port, config.clone(), false);
            c.write_all(&cancel).unwrap();
            c.flush().unwrap();
            // The answer is end of stream (close_notify and FIN), not a reset: libpq 17's
            // PQcancelBlocking reports a reset as a failed cancel.
            assert_eq!(c.read(&mut [0u8; 1]).expect("clean close over TLS"), 0);
        } else {
            let mut c = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
            c.write_all(&cancel).unwrap();
            assert_eq!(c.read(&mut [0u8; 1]).expect("FIN, not a reset"), 0);
        }
        let msgs = read_until_ready(&mut s);
        let err = msgs.iter().find(|m| m.tag == b'E').expect("canceled");
        assert_eq!(err.text(), "57014", "cancel over tls={over_tls}");
    }
}

#[test]
fn sighup_rotates_client_and_server_certificates() {
    let first = Pki::new("first-ca");
    let second = Pki::new("second-ca");
    let live = tempfile::tempdir().unwrap();
    let put = |pki: &Pki| {
        for f in ["server.crt", "server.key"] {
            std::fs::copy(pki.path(f), live.path().join(f)).unwrap();
        }
    };
    put(&first);
    let pg = cluster(PgAuth::Scram);
    let yaml = format!(
        "  tls_mode: require\n  tls_certificate: \"{}\"\n  tls_private_key: \"{}\"\n",
        live.path().join("server.crt").display(),
        live.path().join("server.key").display()
    );
    let d = doorman(
        &pg,
        &PoolSpec {
            general_extra: &yaml,
            ..Default::default()
        },
    );
    let mut old = tls_connect(d.port, rustls_client(&first.p("ca.pem"), false), false);
    login_on(&mut old);
    put(&second);
    d.signal_and_expect_log("HUP", "client TLS certificate reloaded");
    // New handshakes present the new certificate.
    let ok_second = attempt(
        &d,
        "localhost",
        "verify-full",
        &format!("sslrootcert={}", second.p("ca.pem")),
    );
    assert!(ok_second.0 && ok_second.1, "{}", ok_second.2);
    let with_first = attempt(
        &d,
        "localhost",
        "verify-full",
        &format!("sslrootcert={}", first.p("ca.pem")),
    );
    assert!(
        !with_first.0,
        "old CA must no longer verify: {}",
        with_first.2
    );
    // The session opened before the reload goes on.
    let r = simple(&mut old, "SELECT 'still here'");
    assert_eq!(
        r.iter().find(|m| m.tag == b'D').unwrap().text(),
        "still here"
    );
    // A broken file keeps the running certificate.
    std::fs::write(live.path().join("server.crt"), "not a certificate").unwrap();
    d.signal_and_expect_log("HUP", "client TLS reload failed");
    let still = attempt(
        &d,
        "localhost",
        "verify-full",
        &format!("sslrootcert={}", second.p("ca.pem")),
    );
    assert!(still.0 && still.1, "{}", still.2);
}

#[test]
fn sighup_reloads_the_backend_ca_bundle() {
    let pki = Pki::new("backend-ca");
    let other = Pki::new("stale-ca");
    let pg = ssl_cluster(&pki, "hostssl all all 127.0.0.1/32 scram-sha-256");
    let bundle = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bundle.path(), &other.ca_pem).unwrap();
    let d = doorman(
        &pg,
        &PoolSpec {
            general_extra: &server_tls_yaml(
                "verify-full",
                Some(&bundle.path().display().to_string()),
            ),
            ..Default::default()
        },
    );
    assert!(
        backend_ssl(&d).is_err(),
        "the stale CA does not verify PostgreSQL"
    );
    // A bundle with several CAs, the right one among them.
    std::fs::write(bundle.path(), format!("{}{}", other.ca_pem, pki.ca_pem)).unwrap();
    d.signal_and_expect_log("HUP", "server TLS material reloaded");
    assert_eq!(backend_ssl(&d).unwrap(), "t");
}

#[test]
fn protocol_pinning_and_handshake_throttle() {
    let pki = Pki::new("policy-ca");
    let pg = cluster(PgAuth::Scram);
    let extra = format!(
        "{}  tls_protocols: tlsv1.2\n  tls_ciphers: TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\n  tls_rate_limit_per_second: 2\n",
        client_tls_yaml(&pki, "require")
    );
    let d = doorman(
        &pg,
        &PoolSpec {
            general_extra: &extra,
            ..Default::default()
        },
    );
    let started = std::time::Instant::now();
    for _ in 0..4 {
        let (ok, out) = psql_conn(
            &format!(
                "host=localhost port={} user=app dbname=appdb sslmode=require",
                d.port
            ),
            "\\conninfo",
        );
        assert!(ok, "{out}");
        assert!(
            out.contains("TLSv1.2") && out.contains("ECDHE-ECDSA-AES256-GCM-SHA384"),
            "{out}"
        );
    }
    // Two handshakes per second with a burst of two: the last two wait about a second.
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn backend_tls_shows_in_admin_and_metrics() {
    let pki = Pki::new("obs-ca");
    let pg = ssl_cluster(&pki, "hostssl all all 127.0.0.1/32 scram-sha-256");
    let port = doorman_testkit::free_port();
    let extra = format!(
        "{}  admin_username: boss\n  admin_password: boss_pw\nprometheus:\n  enabled: true\n  host: 127.0.0.1\n  port: {port}\n",
        server_tls_yaml("require", None)
    );
    let d = doorman(
        &pg,
        &PoolSpec {
            general_extra: &extra,
            ..Default::default()
        },
    );
    assert_eq!(backend_ssl(&d).unwrap(), "t");
    let (ok, out, err) = psql(&d, "boss", "boss_pw", "pgdoorman", &["-c", "SHOW SERVERS"]);
    assert!(ok, "{err}");
    assert!(out.contains("|true|"), "tls column: {out}");
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut m = String::new();
    s.read_to_string(&mut m).unwrap();
    assert!(
        m.contains("pg_doorman_server_tls_connections{pool=\"appdb\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("pg_doorman_server_tls_handshake_duration_seconds_count{pool=\"appdb\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("pg_doorman_server_tls_handshake_errors_total{pool=\"appdb\"} 0"),
        "{m}"
    );
}

/// Counts the TLS 1.3 session tickets a server sends (stores none).
#[derive(Debug, Default)]
struct TicketCounter(std::sync::atomic::AtomicUsize);

impl rustls::client::ClientSessionStore for TicketCounter {
    fn set_kx_hint(&self, _: rustls::pki_types::ServerName<'static>, _: rustls::NamedGroup) {}
    fn kx_hint(&self, _: &rustls::pki_types::ServerName<'_>) -> Option<rustls::NamedGroup> {
        None
    }
    fn set_tls12_session(
        &self,
        _: rustls::pki_types::ServerName<'static>,
        _: rustls::client::Tls12ClientSessionValue,
    ) {
    }
    fn tls12_session(
        &self,
        _: &rustls::pki_types::ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        None
    }
    fn remove_tls12_session(&self, _: &rustls::pki_types::ServerName<'static>) {}
    fn insert_tls13_ticket(
        &self,
        _: rustls::pki_types::ServerName<'static>,
        _: rustls::client::Tls13ClientSessionValue,
    ) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn take_tls13_ticket(
        &self,
        _: &rustls::pki_types::ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        None
    }
}

/// Like PostgreSQL's server (SSL_OP_NO_TICKET, no session cache), pg_doorman sends no TLS 1.3
/// session tickets: libpq never resumes, and each ticket is work at every login.
#[test]
fn no_session_tickets_as_postgresql() {
    let pki = Pki::new("tickets-ca");
    let pg = cluster(PgAuth::Scram);
    let d = doorman(
        &pg,
        &PoolSpec {
            general_extra: &client_tls_yaml(&pki, "require"),
            ..Default::default()
        },
    );
    let counter = Arc::new(TicketCounter::default());
    let mut config = (*rustls_client(&pki.p("ca.pem"), false)).clone();
    config.resumption = rustls::client::Resumption::store(counter.clone());
    let config = Arc::new(config);
    for _ in 0..2 {
        let mut s = tls_connect(d.port, config.clone(), false);
        login_on(&mut s);
        assert_eq!(
            s.conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        let r = simple(&mut s, "SELECT 'after the handshake'");
        assert_eq!(
            r.iter().find(|m| m.tag == b'D').unwrap().text(),
            "after the handshake"
        );
        assert_eq!(s.conn.handshake_kind(), Some(rustls::HandshakeKind::Full));
    }
    assert_eq!(counter.0.load(std::sync::atomic::Ordering::SeqCst), 0);
}
