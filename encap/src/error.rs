//! The error type of every parser and transform in `encap`.
//!
//! It is a small `Copy` enum so that the hot path never allocates to report a bad packet: the
//! engine counts the reason and drops the packet.

use core::fmt;

/// Why a buffer could not be parsed, emitted or transformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the format needs; `needed` is the length that would do.
    Truncated {
        /// The number of bytes the operation needed.
        needed: usize,
    },
    /// The bytes are present but violate the format; the string names the field.
    Malformed(&'static str),
    /// A valid input that weft does not handle (an unknown GSO type, an IP version other than
    /// 4 or 6, ...).
    Unsupported(&'static str),
}

/// The result type of `encap`.
pub type Result<T> = core::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { needed } => write!(f, "truncated: {needed} bytes needed"),
            Error::Malformed(what) => write!(f, "malformed: {what}"),
            Error::Unsupported(what) => write!(f, "unsupported: {what}"),
        }
    }
}

impl std::error::Error for Error {}

/// Returns `Err(Truncated)` unless `buf` holds at least `needed` bytes.
#[inline]
pub(crate) fn need(buf: &[u8], needed: usize) -> Result<()> {
    if buf.len() < needed {
        Err(Error::Truncated { needed })
    } else {
        Ok(())
    }
}
