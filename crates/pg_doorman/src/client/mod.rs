//! Client connections: startup negotiation and authentication (`startup`), the session loop
//! (`session`), client auth exchanges (`auth`) and cancel routing (`cancel`).

mod access;
pub mod auth;
pub mod cancel;
mod local_reply;
mod login_params;
pub mod migrate;
pub mod session;
pub mod startup;
mod sync;
mod talos;
