//! SQLSTATE codes the pooler emits (PostgreSQL Appendix A, src/backend/utils/errcodes.txt).

/// 08001 sqlclient_unable_to_establish_sqlconnection: the backend could not be reached.
pub const CONNECTION_FAILURE_ESTABLISH: &str = "08001";
/// 08006 connection_failure: the backend connection broke.
pub const CONNECTION_FAILURE: &str = "08006";
/// 08P01 protocol_violation.
pub const PROTOCOL_VIOLATION: &str = "08P01";
/// 0A000 feature_not_supported.
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
/// 28000 invalid_authorization_specification (unknown user, no pg_hba entry).
pub const INVALID_AUTHORIZATION: &str = "28000";
/// 28P01 invalid_password.
pub const INVALID_PASSWORD: &str = "28P01";
/// 3D000 invalid_catalog_name (unknown database).
pub const INVALID_CATALOG_NAME: &str = "3D000";
/// 53300 too_many_connections (also used for a pool wait timeout, like PgBouncer).
pub const TOO_MANY_CONNECTIONS: &str = "53300";
/// 57P01 admin_shutdown.
pub const ADMIN_SHUTDOWN: &str = "57P01";
/// 57014 query_canceled.
pub const QUERY_CANCELED: &str = "57014";
/// 58000 system_error.
pub const SYSTEM_ERROR: &str = "58000";
/// 58006: PgDoorman's code for "pooler is shut down now", sent to a client the pooler closes
/// between transactions while it shuts down (not a PostgreSQL code; drivers treat class 58 as
/// a system error and reconnect).
pub const POOLER_SHUTDOWN: &str = "58006";
/// XX000 internal_error.
pub const INTERNAL_ERROR: &str = "XX000";
/// 42601 syntax_error.
pub const SYNTAX_ERROR: &str = "42601";
/// 53200 out_of_memory.
pub const OUT_OF_MEMORY: &str = "53200";
/// 42P05 duplicate_prepared_statement.
pub const DUPLICATE_PREPARED_STATEMENT: &str = "42P05";
/// 42501 insufficient_privilege (e.g. reading pg_shadow without superuser).
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
