//! Opening a backend connection: TCP or unix connect, StartupMessage, authentication as a
//! client (trust, cleartext, MD5, SCRAM-SHA-256; protocol §55.2.2), then ParameterStatus and
//! BackendKeyData up to the first ReadyForQuery — all within connect_timeout.

use super::query::read_message;
use super::{READ_CHUNK, Server};
use crate::error::ServerError;
use crate::net::Stream;
use crate::params::ParamSet;
use crate::pool::settings::{PoolSettings, ServerAddress, ServerSecret};
use bytes::BytesMut;
use doorman_wire::auth::md5;
use doorman_wire::backend::{
    AuthRequest, parse_auth, parse_backend_key_data, parse_parameter_status, tag,
};
use doorman_wire::fields::parse_error_body;
use doorman_wire::frontend;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use std::time::Instant;

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

/// Connects and logs in a new backend connection for pool `s`, numbered `id`.
///
/// Errors: [`ServerError::Timeout`] after connect_timeout, [`ServerError::Io`] when the server
/// is unreachable, [`ServerError::Refused`] when it rejects the login, [`ServerError::Auth`]
/// when it asks for a method or secret we lack.
pub async fn connect(s: &PoolSettings, id: u64) -> Result<Server, ServerError> {
    match tokio::time::timeout(s.connect_timeout, connect_inner(s, id)).await {
        Ok(r) => r,
        Err(_) => Err(ServerError::Timeout),
    }
}

async fn connect_inner(s: &PoolSettings, id: u64) -> Result<Server, ServerError> {
    let stream = open_socket(&s.address, s).await?;
    let mut out = BytesMut::with_capacity(256);
    let mut params: Vec<(&str, &str)> =
        vec![("user", &s.server_user), ("database", &s.server_database)];
    if let Some(app) = &s.application_name {
        params.push(("application_name", app));
    }
    doorman_wire::startup::write_startup(&mut out, &params);
    stream.write_all(&out).await?;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut scram: Option<ScramSha256> = None;
    let mut server_params = ParamSet::default();
    let mut key = (0, 0);
    loop {
        let (t, body) = read_message(&stream, &mut buf).await?;
        match t {
            tag::AUTHENTICATION => {
                out.clear();
                authenticate(s, parse_auth(&body)?, &mut scram, &mut out)?;
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
                let now = Instant::now();
                return Ok(Server {
                    stream,
                    buf,
                    params: server_params,
                    extras: ParamSet::default(),
                    synced: None,
                    backend_pid: key.0,
                    backend_secret: key.1,
                    status: body.first().copied().unwrap_or(b'I'),
                    bad: false,
                    created: now,
                    last_used: now,
                    id,
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

fn authenticate(
    s: &PoolSettings,
    req: AuthRequest<'_>,
    scram: &mut Option<ScramSha256>,
    out: &mut BytesMut,
) -> Result<(), ServerError> {
    match req {
        AuthRequest::Ok => {}
        AuthRequest::Cleartext => frontend::write_password(out, plaintext(s)?.as_bytes()),
        AuthRequest::Md5(salt) => {
            let secret = match &s.server_secret {
                ServerSecret::Plain(p) => md5::secret(&s.server_user, p),
                ServerSecret::Md5(h) => h.clone(),
                ServerSecret::None => {
                    return Err(ServerError::Auth(
                        "MD5 requested but no password is configured".into(),
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
            let client = ScramSha256::new(plaintext(s)?.as_bytes(), ChannelBinding::unsupported());
            frontend::write_sasl_initial_response(out, "SCRAM-SHA-256", client.message());
            *scram = Some(client);
        }
        AuthRequest::SaslContinue(data) => {
            let client = scram
                .as_mut()
                .ok_or_else(|| ServerError::Protocol("SASLContinue before SASL".into()))?;
            client
                .update(data)
                .map_err(|e| ServerError::Auth(format!("SCRAM: {e}")))?;
            frontend::write_sasl_response(out, client.message());
        }
        AuthRequest::SaslFinal(data) => {
            let mut client = scram
                .take()
                .ok_or_else(|| ServerError::Protocol("SASLFinal before SASL".into()))?;
            client
                .finish(data)
                .map_err(|e| ServerError::Auth(format!("SCRAM server signature: {e}")))?;
        }
        AuthRequest::Unsupported(code) => {
            return Err(ServerError::Auth(format!(
                "unsupported authentication method {code}"
            )));
        }
    }
    Ok(())
}
