//! Client authentication against the configured secret: SCRAM-SHA-256 (for verifiers and
//! plaintext passwords) and MD5 (for `md5...` secrets); protocol §55.3.

use crate::net::{ReadError, Stream};
use crate::pool::settings::ClientSecret;
use bytes::BytesMut;
use doorman_wire::auth::{md5, scram};
use doorman_wire::{ErrorFields, backend, frontend, sqlstate};

/// Largest password/SASL message accepted (bytes); PostgreSQL caps them at 10000 as well.
const MAX_AUTH_MESSAGE: u32 = 10_000;

/// How authentication ended, when not successfully.
#[derive(Debug)]
pub enum AuthFailure {
    /// The client left (psql does this to prompt for a password, then reconnects).
    Gone,
    /// Send this FATAL and close.
    Reject(ErrorFields),
}

fn password_failed(user: &str) -> AuthFailure {
    AuthFailure::Reject(ErrorFields::fatal(
        sqlstate::INVALID_PASSWORD,
        format!("password authentication failed for user \"{user}\""),
    ))
}

fn protocol(msg: impl Into<String>) -> AuthFailure {
    AuthFailure::Reject(ErrorFields::fatal(sqlstate::PROTOCOL_VIOLATION, msg))
}

async fn read_password_message(
    stream: &Stream,
    buf: &mut BytesMut,
) -> Result<BytesMut, AuthFailure> {
    match stream.read_message(buf, MAX_AUTH_MESSAGE, 1024).await {
        Ok((frontend::tag::PASSWORD, body)) => Ok(body),
        Ok((t, _)) => Err(protocol(format!(
            "expected password response, got message type {:?}",
            t as char
        ))),
        Err(ReadError::Wire(e)) => Err(protocol(e.to_string())),
        Err(ReadError::Io(_)) => Err(AuthFailure::Gone),
    }
}

async fn send(stream: &Stream, out: &mut BytesMut) -> Result<(), AuthFailure> {
    let r = stream.write_all(out).await.map_err(|_| AuthFailure::Gone);
    out.clear();
    r
}

/// Runs the exchange for `user` against `secret`. On success the caller sends AuthenticationOk;
/// a SCRAM login also yields the ClientKey recovered from the proof (for SCRAM passthrough).
pub async fn authenticate(
    stream: &Stream,
    buf: &mut BytesMut,
    user: &str,
    secret: &ClientSecret,
) -> Result<Option<[u8; 32]>, AuthFailure> {
    let mut out = BytesMut::with_capacity(256);
    match secret {
        ClientSecret::Md5(stored) => {
            let mut salt = [0u8; 4];
            rand::fill(&mut salt);
            backend::write_auth_md5(&mut out, salt);
            send(stream, &mut out).await?;
            let msg = read_password_message(stream, buf).await?;
            let reply = frontend::parse_password(&msg).map_err(|e| protocol(e.to_string()))?;
            if md5::verify(stored, salt, reply) {
                Ok(None)
            } else {
                Err(password_failed(user))
            }
        }
        ClientSecret::Scram(verifier) => {
            backend::write_auth_sasl_scram(&mut out);
            send(stream, &mut out).await?;
            let msg = read_password_message(stream, buf).await?;
            let (mech, first) =
                frontend::parse_sasl_initial_response(&msg).map_err(|e| protocol(e.to_string()))?;
            if mech != "SCRAM-SHA-256" {
                return Err(protocol(format!(
                    "client selected an invalid SASL authentication mechanism {mech:?}"
                )));
            }
            let (exchange, server_first) =
                scram::Exchange::start(verifier, first).map_err(|e| protocol(e.to_string()))?;
            backend::write_auth_sasl_continue(&mut out, server_first.as_bytes());
            send(stream, &mut out).await?;
            let msg = read_password_message(stream, buf).await?;
            match exchange.finish(verifier, &msg) {
                Ok(ok) => {
                    backend::write_auth_sasl_final(&mut out, ok.server_final.as_bytes());
                    send(stream, &mut out).await?;
                    Ok(Some(ok.client_key))
                }
                Err(scram::ScramError::InvalidProof) => Err(password_failed(user)),
                Err(e) => Err(protocol(e.to_string())),
            }
        }
    }
}
