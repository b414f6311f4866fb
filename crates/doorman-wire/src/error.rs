//! Typed decoding errors: each names what was wrong so logs and clients get a precise reason.

/// A malformed or oversized protocol element.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The length word is below the 4 bytes it must count, or above the cap for this message.
    #[error("invalid message length {len} for message type {tag:?} (allowed 4..={max})")]
    BadLength {
        /// Message type byte (0 for the untyped startup packet).
        tag: u8,
        /// Length word as received (bytes, includes itself).
        len: u32,
        /// Cap applied (bytes).
        max: u32,
    },
    /// A message type byte the receiver does not accept here.
    #[error("invalid message type {0:?}")]
    UnknownTag(u8),
    /// The startup packet asked for a protocol version we do not speak.
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0")]
    UnsupportedProtocol {
        /// Major version requested.
        major: u16,
        /// Minor version requested.
        minor: u16,
    },
    /// A message body ended before a field was complete.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A string field was not valid UTF-8 or lacked its NUL terminator.
    #[error("invalid string in {0}")]
    BadString(&'static str),
    /// A field had a value the protocol does not allow.
    #[error("invalid {0}")]
    Invalid(&'static str),
}
