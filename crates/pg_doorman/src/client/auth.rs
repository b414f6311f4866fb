//! Client authentication against the configured secret, by the pg_hba method: SCRAM-SHA-256
//! (for verifiers and plaintext passwords), MD5 (for `md5...` secrets) or the password in clear
//! text; protocol §55.3.

use crate::hba::Method;
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

/// pg_hba `peer`: the connecting process runs as the operating-system user named `user`
/// (SO_PEERCRED on the unix socket; PostgreSQL's messages and SQLSTATE 28000).
fn peer_matches(stream: &Stream, user: &str) -> Result<(), AuthFailure> {
    let failed = |detail: String| {
        tracing::debug!("peer authentication for {user:?}: {detail}");
        AuthFailure::Reject(ErrorFields::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            format!("Peer authentication failed for user \"{user}\""),
        ))
    };
    let Stream::Unix(sock) = stream else {
        return Err(failed("not a unix-socket connection".into()));
    };
    let uid = sock
        .peer_cred()
        .map_err(|e| failed(format!("could not get peer credentials: {e}")))?
        .uid();
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(os)) if os.name == user => Ok(()),
        Ok(Some(os)) => Err(failed(format!(
            "provided user name ({user}) and authenticated user name ({}) do not match",
            os.name
        ))),
        Ok(None) | Err(_) => Err(failed(format!("could not look up local user ID {uid}"))),
    }
}

fn protocol(msg: impl Into<String>) -> AuthFailure {
    AuthFailure::Reject(ErrorFields::fatal(sqlstate::PROTOCOL_VIOLATION, msg))
}

async fn read_password_message(
    stream: &mut Stream,
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

/// Asks for the password in clear text (AuthenticationCleartextPassword) and returns it.
pub async fn read_cleartext(
    stream: &mut Stream,
    buf: &mut BytesMut,
) -> Result<String, AuthFailure> {
    let mut out = BytesMut::with_capacity(16);
    backend::write_auth_cleartext(&mut out);
    send(stream, &mut out).await?;
    let msg = read_password_message(stream, buf).await?;
    let password = frontend::parse_password(&msg).map_err(|e| protocol(e.to_string()))?;
    Ok(password.to_string())
}

/// Runs the exchange `method` asks for, for `user` against `secret`. On success the caller
/// sends AuthenticationOk; a SCRAM or cleartext login against a verifier also yields the
/// ClientKey (for SCRAM passthrough to the backend).
///
/// `Md5` is PostgreSQL's md5 method: MD5 for an `md5…` secret, SCRAM for a verifier.
/// `ScramSha256` with an MD5 secret runs SCRAM against a made-up verifier, so the client learns
/// only that its password was wrong (as PostgreSQL does). `Reject` never gets here.
pub async fn authenticate(
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    secret: &ClientSecret,
    method: Method,
) -> Result<Option<[u8; 32]>, AuthFailure> {
    let mut out = BytesMut::with_capacity(256);
    match (method, secret) {
        (Method::Trust, _) => Ok(None),
        (Method::Peer, _) => peer_matches(stream, user).map(|()| None),
        (Method::Reject, _) => Err(password_failed(user)),
        // PAM: the password in clear text, checked by the service on a blocking thread (a
        // failure waits PAM's fail delay).
        // A scram-sha-256 rule cannot carry a password to PAM: refused, as PostgreSQL would.
        (Method::ScramSha256, ClientSecret::Pam(_)) => Err(password_failed(user)),
        (_, ClientSecret::Pam(service)) => {
            let password = read_cleartext(stream, buf).await?;
            let (svc, who) = (service.clone(), user.to_string());
            let checked = tokio::task::spawn_blocking(move || {
                crate::pam::authenticate(&svc, &who, &password)
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            match checked {
                Ok(()) => Ok(None),
                Err(e) => {
                    tracing::info!("PAM login as {user:?} (service {service:?}) refused: {e}");
                    Err(password_failed(user))
                }
            }
        }
        (Method::Password, _) => {
            let password = read_cleartext(stream, buf).await?;
            cleartext_matches(user, &password, secret).ok_or_else(|| password_failed(user))
        }
        // A token cannot be checked through SCRAM: the client learns only that it failed.
        (Method::ScramSha256, ClientSecret::Md5(_) | ClientSecret::Jwt(_)) => {
            let mut salt = [0u8; 16];
            rand::fill(&mut salt);
            let mut keys = [0u8; 64];
            rand::fill(&mut keys);
            let mock = scram::Verifier {
                iterations: 4096,
                salt: salt.to_vec(),
                stored_key: keys[..32].try_into().unwrap_or_default(),
                server_key: keys[32..].try_into().unwrap_or_default(),
            };
            scram_exchange(stream, buf, user, &mock, &mut out).await
        }
        // JWT: the token comes as the password in clear text (PgDoorman's way).
        (_, ClientSecret::Jwt(_)) => {
            let token = read_cleartext(stream, buf).await?;
            cleartext_matches(user, &token, secret).ok_or_else(|| password_failed(user))
        }
        (_, ClientSecret::Md5(stored)) => {
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
        (_, ClientSecret::Scram(verifier)) => {
            scram_exchange(stream, buf, user, verifier, &mut out).await
        }
    }
}

/// Checks a password given in clear text against the secret: for a verifier, the StoredKey it
/// derives must match (its ClientKey is returned); for an MD5 secret, md5(password || user).
/// None when it does not match.
fn cleartext_matches(
    user: &str,
    password: &str,
    secret: &ClientSecret,
) -> Option<Option<[u8; 32]>> {
    match secret {
        ClientSecret::Md5(stored) => {
            doorman_wire::auth::ct_eq(md5::secret(user, password).as_bytes(), stored.as_bytes())
                .then_some(None)
        }
        ClientSecret::Scram(v) => v.check_password(password).map(Some),
        // Not reached: PAM logins are checked in `authenticate`.
        ClientSecret::Pam(_) => None,
        ClientSecret::Jwt(key) => match key.verify(password, user, crate::jwt::now()) {
            Ok(()) => Some(None),
            Err(e) => {
                tracing::info!("JWT login as {user:?} refused ({}): {e}", key.path);
                None
            }
        },
    }
}

/// SCRAM-SHA-256 (RFC 5802, protocol §55.3.1) against `verifier`.
async fn scram_exchange(
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    verifier: &scram::Verifier,
    out: &mut BytesMut,
) -> Result<Option<[u8; 32]>, AuthFailure> {
    backend::write_auth_sasl_scram(out);
    send(stream, out).await?;
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
    backend::write_auth_sasl_continue(out, server_first.as_bytes());
    send(stream, out).await?;
    let msg = read_password_message(stream, buf).await?;
    match exchange.finish(verifier, &msg) {
        Ok(ok) => {
            backend::write_auth_sasl_final(out, ok.server_final.as_bytes());
            send(stream, out).await?;
            Ok(Some(ok.client_key))
        }
        Err(scram::ScramError::InvalidProof) => Err(password_failed(user)),
        Err(e) => Err(protocol(e.to_string())),
    }
}
