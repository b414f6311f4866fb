//! A backend connection: its socket, read buffer, reported parameters and lifetimes. Owned by
//! the pool while idle and moved to exactly one client while in use (never shared).

mod query;
pub mod registration;

pub use query::{Rows, read_message};

use crate::clock::Micros;
use crate::net::Stream;
use crate::params::ParamSet;
use bytes::BytesMut;
use std::time::Duration;

pub use crate::relay::READ_CHUNK;

/// How a connection holds its place under a database's `max_db_connections`
/// ([`crate::pool::coordinator`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Counted in `max_db_connections`.
    Main,
    /// Counted in `reserve_pool_size` (above the cap).
    Reserve,
}

/// One authenticated backend connection.
#[derive(Debug)]
pub struct Server {
    /// The socket.
    pub stream: Stream,
    /// Bytes read from the backend and not yet relayed.
    pub buf: BytesMut,
    /// Values the backend reported with ParameterStatus (current state).
    pub params: ParamSet,
    /// Non-reported settings we SET for a client (from its startup packet).
    pub extras: ParamSet,
    /// The client parameter set this connection was last aligned with; None once the backend
    /// reported any change. Lets a checkout skip the comparison (shared sets compare by pointer).
    pub synced: Option<ParamSet>,
    /// BackendKeyData process id.
    pub backend_pid: i32,
    /// BackendKeyData secret key.
    pub backend_secret: i32,
    /// Set when the connection must not be reused (I/O error, protocol error, FATAL).
    pub bad: bool,
    /// When the connection was established.
    pub created: Micros,
    /// When it was last returned to the pool.
    pub last_used: Micros,
    /// Pool-local sequence number (for logs).
    pub id: u64,
    /// Entry in the pool's server list (SHOW SERVERS); removed when the connection goes.
    pub reg: Option<registration::Registration>,
    /// The pool's RECONNECT epoch when this connection was opened.
    pub epoch: u64,
    /// server_lifetime with this connection's ±20 % jitter; None = unlimited.
    pub lifetime: Option<Duration>,
    /// idle_timeout with this connection's ±20 % jitter; None = unlimited.
    pub idle_limit: Option<Duration>,
    /// Has served a client (idle_timeout applies only then).
    pub served: bool,
    /// Its place under the database's max_db_connections, if coordinated.
    pub permit: Option<Permit>,
    /// Its protocol state: transaction status, replies owed, statements prepared on it.
    pub conv: Box<crate::relay::Conversation>,
}

impl Server {
    /// The parts the relay works on, lent for one relay.
    pub fn backend(&mut self) -> crate::relay::Backend<'_> {
        crate::relay::Backend {
            stream: &mut self.stream,
            buf: &mut self.buf,
            params: &mut self.params,
            conv: &mut self.conv,
        }
    }

    /// True when the backend is idle with nothing owed ([`crate::relay::Conversation::is_reusable`]).
    pub fn is_reusable(&self) -> bool {
        self.conv.is_reusable()
    }

    /// Whether the idle connection still looks usable: nothing unexpected has arrived and the
    /// peer has not closed. Costs no syscall unless the socket was flagged readable.
    pub fn is_alive(&mut self) -> bool {
        if self.bad {
            return false;
        }
        let mut probe = [0u8; 64];
        match self.stream.try_read(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
            // EOF, an error, or an unsolicited message (FATAL on admin shutdown) while idle.
            _ => false,
        }
    }

    /// True when this connection's (jittered) lifetime has passed.
    pub fn too_old(&self, now: Micros) -> bool {
        self.lifetime.is_some_and(|l| now.since(self.created) >= l)
    }

    /// True when the idle connection should close: too old, or idle past its (jittered)
    /// idle_timeout after having served a client (prewarmed ones stay).
    pub fn expired(&self, now: Micros) -> bool {
        self.too_old(now)
            || (self.served
                && self
                    .idle_limit
                    .is_some_and(|t| now.since(self.last_used) >= t))
    }

    /// Closes politely: a Terminate if the socket takes it now, then drop (never blocks).
    pub fn close(self) {
        if !self.bad {
            let _ = self
                .stream
                .try_write(&doorman_wire::frontend::messages::TERMINATE_FRAME);
        }
    }

    /// Forgets SET values applied for a client (after DISCARD ALL).
    pub fn clear_extras(&mut self) {
        self.extras = ParamSet::default();
    }

    /// Packs the cancel key for the cancel registry (pid in the high half).
    pub fn cancel_key(&self) -> u64 {
        ((self.backend_pid as u32 as u64) << 32) | self.backend_secret as u32 as u64
    }
}
