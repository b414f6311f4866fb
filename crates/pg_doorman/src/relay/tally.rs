//! What one attachment did (transactions, queries, bytes, errors by class), counted by the
//! relay without atomics and added to the pool's totals ([`crate::pool::stats`]) at its end.

/// SQLSTATE classes counted separately (COMPAT.md §3 `pg_doorman_pools_errors_total`).
pub const ERROR_CLASSES: [&str; 6] = ["08", "53", "57", "25P02", "26000", "other"];

/// Index of `code`'s bucket in [`ERROR_CLASSES`].
pub fn error_class(code: &[u8]) -> usize {
    match code {
        b"25P02" => 3,
        b"26000" => 4,
        [b'0', b'8', ..] => 0,
        [b'5', b'3', ..] => 1,
        [b'5', b'7', ..] => 2,
        _ => 5,
    }
}

/// What one attachment of a client to a backend did, added to the totals at its end.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Transactions finished.
    pub xacts: u32,
    /// Queries answered.
    pub queries: u32,
    /// Client → backend bytes.
    pub received: u64,
    /// Backend → client bytes.
    pub sent: u64,
    /// Errors by class.
    pub errors: [u32; 6],
}
