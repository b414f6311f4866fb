//! Typed errors of the backend and pool side, each mapped once to a client-safe ErrorResponse
//! (SQLSTATE + text without hosts or secrets); logs get the full `Display` chain.

use doorman_wire::fields::ReceivedError;
use doorman_wire::{ErrorFields, sqlstate};

/// A backend connection could not be made or broke.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// TCP/unix connect or I/O failed.
    #[error("server I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// connect_timeout elapsed before the backend was ready.
    #[error("timed out connecting to the server")]
    Timeout,
    /// The backend sent an ErrorResponse during login (bad password, no such database...).
    #[error("server refused login: {} ({})", .0.message, .0.code)]
    Refused(ReceivedError),
    /// The backend asked for something we cannot answer (method, missing plaintext).
    #[error("cannot log in to the server: {0}")]
    Auth(String),
    /// The backend violated the protocol.
    #[error("server protocol error: {0}")]
    Protocol(String),
    /// TLS to the backend was required and could not be set up (no TLS on the server, a
    /// certificate that does not verify, a failed handshake).
    #[error("server TLS: {0}")]
    Tls(String),
}

impl From<doorman_wire::WireError> for ServerError {
    fn from(e: doorman_wire::WireError) -> Self {
        ServerError::Protocol(e.to_string())
    }
}

impl ServerError {
    /// The ErrorResponse a client gets for this failure.
    pub fn to_client(&self) -> ErrorFields {
        match self {
            ServerError::Refused(e) => {
                let code = known_code(&e.code).unwrap_or(sqlstate::CONNECTION_FAILURE_ESTABLISH);
                ErrorFields::error(code, format!("server login failed: {}", e.message))
            }
            ServerError::Auth(_) => ErrorFields::error(
                sqlstate::CONNECTION_FAILURE_ESTABLISH,
                "server login failed: pg_doorman cannot answer the server's authentication request",
            ),
            _ => ErrorFields::error(
                sqlstate::CONNECTION_FAILURE_ESTABLISH,
                "pg_doorman could not connect to the database server",
            ),
        }
    }
}

/// SQLSTATEs a backend may refuse a login with that we pass on unchanged (others become 08001).
fn known_code(code: &str) -> Option<&'static str> {
    [
        sqlstate::INVALID_PASSWORD,
        sqlstate::INVALID_AUTHORIZATION,
        sqlstate::INVALID_CATALOG_NAME,
        sqlstate::TOO_MANY_CONNECTIONS,
        sqlstate::ADMIN_SHUTDOWN,
        "57P03",
        "22023",
        "42704",
        // A startup parameter PostgreSQL refuses (pool/mod.rs STARTUP_PARAMETER_ERRORS).
        "42501",
        "55P02",
        "22P02",
    ]
    .into_iter()
    .find(|c| *c == code)
}

/// A checkout that did not yield a backend connection.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// query_wait_timeout elapsed while every connection was busy.
    #[error("no server connection became free within query_wait_timeout")]
    WaitTimeout,
    /// A new backend connection failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The database's max_db_connections (and reserve) were exhausted.
    #[error("max_db_connections reached for database {0}")]
    DbLimit(String),
}

impl PoolError {
    /// The ErrorResponse a client gets for this failure.
    pub fn to_client(&self) -> ErrorFields {
        match self {
            PoolError::WaitTimeout => ErrorFields::error(
                sqlstate::TOO_MANY_CONNECTIONS,
                "query_wait_timeout: no server connection available",
            ),
            PoolError::Server(e) => e.to_client(),
            PoolError::DbLimit(db) => ErrorFields::error(
                sqlstate::TOO_MANY_CONNECTIONS,
                format!("max_db_connections reached for database \"{db}\""),
            ),
        }
    }
}
