//! Sans-I/O PostgreSQL v3 wire codec and authentication math for pg_doorman.
//!
//! This crate owns the byte layout of every message the pooler meets (protocol chapter
//! "Frontend/Backend Protocol", §55.7 "Message Formats") and the SCRAM-SHA-256 / MD5 arithmetic.
//! It never performs I/O, never awaits and never panics on input: every decoder returns a typed
//! [`WireError`] and every length is capped by a limit that cites PostgreSQL's own.

pub mod auth;
pub mod backend;
pub mod checks;
pub mod error;
pub mod fields;
pub mod frame;
pub mod frontend;
pub mod sqlstate;
pub mod startup;

pub use error::WireError;
pub use fields::ErrorFields;
pub use frame::{FrameHeader, HEADER_LEN};
