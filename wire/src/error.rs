//! The crate's error type.

/// Why a packet (or a buffer to emit into) was rejected.
///
/// The variants are coarse on purpose (smoltcp's `wire::Error` shows a parser need not say
/// more); the `&'static str` names the field or rule, for logs and tests. The data plane
/// maps them to its own drop counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The buffer is shorter than a header, or than a length the header states.
    #[error("truncated packet")]
    Truncated,
    /// A field holds a value the protocol forbids (e.g. IPv4 IHL < 5, wrong IP version).
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// Well formed, but not something this crate handles (e.g. a reserved tunnel control kind).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// A checksum did not verify.
    #[error("bad checksum")]
    BadChecksum,
    /// The buffer given to an `emit` function is too small for what is to be written.
    #[error("buffer too small")]
    BufferTooSmall,
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;
