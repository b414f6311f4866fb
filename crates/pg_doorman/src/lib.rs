//! pg_doorman: a PostgreSQL connection pooler. The library holds every subsystem; `main.rs`
//! only parses the command line, sets up logging and the runtime, and calls [`app::run`].

pub mod admin;
pub mod app;
pub mod auth_query;
pub mod client;
pub mod clock;
pub mod config;
pub mod error;
pub mod generate;
pub mod hba;
pub mod jwt;
pub mod keys;
pub mod leave;
pub mod listener;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod net;
pub mod pam;
pub mod params;
pub mod pool;
pub mod prepared;
pub mod relay;
pub mod server;
pub mod sockets;
pub mod sql_kind;
pub mod talos;
pub mod tls;
