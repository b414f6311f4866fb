//! Opening a backend connection: TCP or unix connect, StartupMessage, authentication as a
//! client (trust, cleartext, MD5, SCRAM-SHA-256; protocol §55.2.2), then ParameterStatus and
//! BackendKeyData up to the first ReadyForQuery — all within connect_timeout.

use crate::config::ServerTlsMode;
use crate::error::ServerError;
use crate::net::Stream;
use crate::params::ParamSet;
use crate::pool::settings::{PoolSettings, ServerAddress, ServerSecret};
use crate::relay::{Conversation, TxStatus};
use crate::server::read_message;
use crate::server::{READ_CHUNK, Server};
use crate::tls::TlsConn;
use bytes::BytesMut;
use doorman_wire::auth::{md5, scram};
use doorman_wire::backend::{
    AuthRequest, parse_auth, parse_backend_key_data, parse_parameter_status, tag,
};
use doorman_wire::fields::parse_error_body;
use doorman_wire::frontend;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

/// Phases of a backend connect timed in [`CREATE_SECONDS`], as PgDoorman labels
/// `pg_doorman_backend_create_duration_seconds{phase}`.
pub const CREATE_PHASES: [&str; 4] = ["tcp_connect", "tls", "auth", "startup"];

/// Seconds each successful phase of a backend connect took, process-wide, by
/// [`CREATE_PHASES`] index (0.5 ms … 4 s buckets). Login path only, never per message.
pub static CREATE_SECONDS: std::sync::LazyLock<
    [prometheus_client::metrics::histogram::Histogram; 4],
> = std::sync::LazyLock::new(|| {
    std::array::from_fn(|_| {
        prometheus_client::metrics::histogram::Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 14),
        )
    })
});

fn observe(phase: usize, since: std::time::Instant) {
    CREATE_SECONDS[phase].observe(since.elapsed().as_secs_f64());
}

/// [`open_socket`] timed as the tcp_connect phase.
async fn open_timed(address: &ServerAddress, s: &PoolSettings) -> Result<Stream, ServerError> {
    let started = std::time::Instant::now();
    let stream = open_socket(address, s).await?;
    observe(0, started);
    Ok(stream)
}

/// Opens the socket to `address`, applying TCP options.
pub async fn open_socket(address: &ServerAddress, s: &PoolSettings) -> Result<Stream, ServerError> {
    match address {
        ServerAddress::Tcp { host, port } => {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
            if let Err(e) = s.tcp.apply(&tcp) {
                tracing::debug!("backend socket options: {e}");
            }
            Ok(Stream::Tcp(tcp))
        }
        ServerAddress::Unix(path) => Ok(Stream::Unix(tokio::net::UnixStream::connect(path).await?)),
    }
}

/// Connects and logs in a new backend connection for pool `s`, numbered `id`. `client_key` is
/// the ClientKey of the user's last SCRAM login, used when only a verifier is configured.
///
/// Errors: [`ServerError::Timeout`] after connect_timeout, [`ServerError::Io`] when the server
/// is unreachable, [`ServerError::Refused`] when it rejects the login, [`ServerError::Auth`]
/// when it asks for a method or secret we lack.
pub async fn connect(
    s: &PoolSettings,
    id: u64,
    client_key: Option<[u8; 32]>,
) -> Result<Server, ServerError> {
    match tokio::time::timeout(s.connect_timeout, connect_inner(s, id, client_key)).await {
        Ok(r) => r,
        Err(_) => Err(ServerError::Timeout),
    }
}

/// SSLRequest (protocol §55.2.10).
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

async fn connect_inner(
    s: &PoolSettings,
    id: u64,
    client_key: Option<[u8; 32]>,
) -> Result<Server, ServerError> {
    let stream = open_timed(&s.address, s).await?;
    let tls = s.tls.connector();
    match (s.tls.mode, tls) {
        (ServerTlsMode::Disable, _) | (_, None) => login(s, id, client_key, stream).await,
        // libpq sslmode=allow: plain first, TLS on a new socket if the server refuses.
        // A pg_hba rejection (28000, e.g. a hostssl-only rule) is what TLS can fix; if TLS
        // cannot be had either, the plain attempt's error is the one to report.
        (ServerTlsMode::Allow, Some(config)) => match login(s, id, client_key, stream).await {
            Err(ServerError::Refused(e))
                if e.code == doorman_wire::sqlstate::INVALID_AUTHORIZATION
                    && matches!(s.address, ServerAddress::Tcp { .. }) =>
            {
                tracing::debug!(
                    "{}: plain login refused ({}); retrying with TLS",
                    s.database,
                    e.message
                );
                let stream = open_timed(&s.address, s).await?;
                match start_tls(stream, s, config, true).await {
                    Ok(stream) => login(s, id, client_key, stream).await,
                    Err(_) => Err(ServerError::Refused(e)),
                }
            }
            other => other,
        },
        (mode, Some(config)) => {
            let required = mode != ServerTlsMode::Prefer;
            let stream = start_tls(stream, s, config, required).await?;
            login(s, id, client_key, stream).await
        }
    }
}

/// Asks the backend for TLS and runs the handshake. A unix socket stays plain (as in libpq);
/// a server that answers 'N' is an error only when `required`.
async fn start_tls(
    stream: Stream,
    s: &PoolSettings,
    config: std::sync::Arc<rustls::ClientConfig>,
    required: bool,
) -> Result<Stream, ServerError> {
    let (Stream::Tcp(tcp), ServerAddress::Tcp { host, .. }) = (stream, &s.address) else {
        return Err(ServerError::Tls("TLS needs a TCP server address".into()));
    };
    let plain = Stream::Tcp(tcp);
    plain.write_all(&SSL_REQUEST).await?;
    let mut answer = [0u8; 1];
    loop {
        match plain.try_read(&mut answer) {
            Ok(0) => return Err(ServerError::Io(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => plain.readable().await?,
            Err(e) => return Err(e.into()),
        }
    }
    match answer[0] {
        b'S' => {}
        b'N' if !required => return Ok(plain),
        b'N' => return Err(ServerError::Tls("the server does not support TLS".into())),
        other => {
            return Err(ServerError::Protocol(format!(
                "unexpected answer {other:?} to SSLRequest"
            )));
        }
    }
    let Stream::Tcp(tcp) = plain else {
        return Err(ServerError::Tls("socket changed".into()));
    };
    let name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|e| ServerError::Tls(format!("server name {host:?}: {e}")))?;
    let started = std::time::Instant::now();
    match TlsConn::connect(tcp, config, name).await {
        Ok(conn) => {
            s.tls
                .handshake_seconds
                .observe(started.elapsed().as_secs_f64());
            observe(1, started);
            Ok(Stream::Tls(Box::new(conn)))
        }
        Err(e) => {
            s.tls
                .handshake_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(ServerError::Tls(e.to_string()))
        }
    }
}

/// StartupMessage, authentication and the login reply on an open stream.
async fn login(
    s: &PoolSettings,
    id: u64,
    client_key: Option<[u8; 32]>,
    mut stream: Stream,
) -> Result<Server, ServerError> {
    let mut out = BytesMut::with_capacity(256);
    let mut params: Vec<(&str, &str)> =
        vec![("user", &s.server_user), ("database", &s.server_database)];
    let configured_app = s
        .startup_parameters
        .iter()
        .any(|(k, _)| k == "application_name");
    if let Some(app) = s.application_name.as_deref().filter(|_| !configured_app) {
        params.push(("application_name", app));
    }
    params.extend(
        s.startup_parameters
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    doorman_wire::startup::write_startup(&mut out, &params);
    let started = std::time::Instant::now();
    let mut authenticated: Option<std::time::Instant> = None;
    stream.write_all(&out).await?;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut scram: Option<Scram> = None;
    let mut server_params = ParamSet::default();
    let mut key = (0, 0);
    loop {
        let (t, body) = read_message(&mut stream, &mut buf).await?;
        match t {
            tag::AUTHENTICATION => {
                out.clear();
                let req = parse_auth(&body)?;
                if matches!(req, AuthRequest::Ok) {
                    observe(2, started);
                    authenticated = Some(std::time::Instant::now());
                }
                authenticate(s, req, client_key, &mut scram, &mut out)?;
                if !out.is_empty() {
                    stream.write_all(&out).await?;
                }
            }
            tag::PARAMETER_STATUS => {
                let (k, v) = parse_parameter_status(&body)?;
                server_params.set(k, v);
            }
            tag::BACKEND_KEY_DATA => key = parse_backend_key_data(&body)?,
            tag::ERROR_RESPONSE => return Err(ServerError::Refused(parse_error_body(&body)?)),
            tag::READY_FOR_QUERY => {
                if let Some(at) = authenticated {
                    observe(3, at);
                }
                let now = crate::clock::Micros::now();
                let mut conv = Box::new(Conversation::new(s.server_prepared_cache));
                conv.status = body
                    .first()
                    .copied()
                    .and_then(TxStatus::from_byte)
                    .unwrap_or_default();
                return Ok(Server {
                    stream,
                    buf,
                    params: server_params,
                    extras: ParamSet::default(),
                    synced: None,
                    backend_pid: key.0,
                    backend_secret: key.1,
                    bad: false,
                    created: now,
                    last_used: now,
                    id,
                    reg: None,
                    epoch: 0,
                    lifetime: None,
                    idle_limit: None,
                    served: false,
                    permit: None,
                    conv,
                });
            }
            tag::NOTICE_RESPONSE | tag::NEGOTIATE_PROTOCOL_VERSION => {}
            other => {
                return Err(ServerError::Protocol(format!(
                    "unexpected message {:?} during login",
                    other as char
                )));
            }
        }
    }
}

fn plaintext(s: &PoolSettings) -> Result<&str, ServerError> {
    match &s.server_secret {
        ServerSecret::Plain(p) => Ok(p),
        _ => Err(ServerError::Auth(format!(
            "the server asks for a password but pool {}/{} has no plaintext server_password",
            s.database, s.user
        ))),
    }
}

/// SCRAM client state: from a plaintext password, or from a recovered ClientKey.
enum Scram {
    Password(ScramSha256),
    Key(scram::KeyClient),
}

fn scram_error(e: impl std::fmt::Display) -> ServerError {
    ServerError::Auth(format!("SCRAM: {e}"))
}

fn start_scram(
    s: &PoolSettings,
    client_key: Option<[u8; 32]>,
    out: &mut BytesMut,
) -> Result<Scram, ServerError> {
    if let ServerSecret::ScramPassthrough(v) = &s.server_secret {
        let key = client_key.ok_or_else(|| {
            ServerError::Auth(format!(
                "SCRAM passthrough for {}/{}: no client of this user has logged in yet",
                s.database, s.user
            ))
        })?;
        let (client, first) = scram::KeyClient::new(key, v.clone());
        frontend::write_sasl_initial_response(out, "SCRAM-SHA-256", first.as_bytes());
        return Ok(Scram::Key(client));
    }
    let client = ScramSha256::new(plaintext(s)?.as_bytes(), ChannelBinding::unsupported());
    frontend::write_sasl_initial_response(out, "SCRAM-SHA-256", client.message());
    Ok(Scram::Password(client))
}

fn authenticate(
    s: &PoolSettings,
    req: AuthRequest<'_>,
    client_key: Option<[u8; 32]>,
    scram: &mut Option<Scram>,
    out: &mut BytesMut,
) -> Result<(), ServerError> {
    match req {
        AuthRequest::Ok => {}
        AuthRequest::Cleartext => frontend::write_password(out, plaintext(s)?.as_bytes()),
        AuthRequest::Md5(salt) => {
            let secret = match &s.server_secret {
                ServerSecret::Plain(p) => md5::secret(&s.server_user, p),
                ServerSecret::Md5(h) => h.clone(),
                ServerSecret::ScramPassthrough(_) | ServerSecret::None => {
                    return Err(ServerError::Auth(
                        "MD5 requested but no password or md5 secret is configured".into(),
                    ));
                }
            };
            frontend::write_password(out, md5::response_from_secret(&secret, salt).as_bytes());
        }
        AuthRequest::Sasl(mechs) => {
            if !mechs.contains(&"SCRAM-SHA-256") {
                return Err(ServerError::Auth(format!(
                    "unsupported SASL mechanisms {mechs:?}"
                )));
            }
            *scram = Some(start_scram(s, client_key, out)?);
        }
        AuthRequest::SaslContinue(data) => match scram.as_mut() {
            Some(Scram::Password(c)) => {
                c.update(data).map_err(scram_error)?;
                frontend::write_sasl_response(out, c.message());
            }
            Some(Scram::Key(c)) => {
                let reply = c.respond(data).map_err(scram_error)?;
                frontend::write_sasl_response(out, reply.as_bytes());
            }
            None => return Err(ServerError::Protocol("SASLContinue before SASL".into())),
        },
        AuthRequest::SaslFinal(data) => match scram.take() {
            Some(Scram::Password(mut c)) => c.finish(data).map_err(scram_error)?,
            Some(Scram::Key(c)) => c.verify(data).map_err(scram_error)?,
            None => return Err(ServerError::Protocol("SASLFinal before SASL".into())),
        },
        AuthRequest::Unsupported(code) => {
            return Err(ServerError::Auth(format!(
                "unsupported authentication method {code}"
            )));
        }
    }
    Ok(())
}
