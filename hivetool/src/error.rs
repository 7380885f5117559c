// SPDX-License-Identifier: MIT OR Apache-2.0
//! The crate's error type.

use thiserror::Error;

/// Everything that can go wrong reading, checking or editing a hive.
///
/// Offsets named `offset` are relative to the start of the hive-bins data (file offset − 4096)
/// unless the variant says `file_offset`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The data is shorter than a structure needs.
    #[error(
        "{what} at file offset {file_offset:#x} needs {needed} bytes, only {available} available"
    )]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where (absolute offset in the file).
        file_offset: u64,
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// A signature did not match.
    #[error(
        "bad signature at file offset {file_offset:#x}: expected {expected:?}, found {found:02x?}"
    )]
    BadSignature {
        /// Absolute file offset.
        file_offset: u64,
        /// Expected signature.
        expected: &'static str,
        /// Bytes found.
        found: Vec<u8>,
    },
    /// The base block is not usable (unsupported version, type, format or sizes).
    #[error("base block: {0}")]
    BaseBlock(String),
    /// The hive is dirty (sequence numbers differ or the checksum is wrong); its transaction
    /// logs must be replayed before it can be edited.
    #[error("hive is dirty (sequence numbers {seq1}/{seq2}{}); replay its transaction logs first", if *.checksum_ok { "" } else { ", bad checksum" })]
    Dirty {
        /// Primary sequence number.
        seq1: u32,
        /// Secondary sequence number.
        seq2: u32,
        /// Whether the header checksum is right.
        checksum_ok: bool,
    },
    /// A structure inside the hive bins is damaged.
    #[error("corrupt hive at offset {offset:#x}: {reason}")]
    Corrupt {
        /// Cell offset (relative to the hive bins).
        offset: u32,
        /// What is wrong.
        reason: String,
    },
    /// A key or value path was not found.
    #[error("not found: {0}")]
    NotFound(String),
    /// An argument was not acceptable (e.g. a name too long).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A fixed-size hive has no room for an edit.
    #[error("not enough free space in the hive: {missing} more bytes needed (free cells and slack exhausted)")]
    NoSpace {
        /// Bytes that were missing.
        missing: u64,
    },
    /// A transaction log could not be used.
    #[error("transaction log {log}: {reason}")]
    Log {
        /// Which log (file name or "LOG1"/"LOG2").
        log: String,
        /// Why.
        reason: String,
    },
    /// A `.reg` file could not be parsed.
    #[error(".reg line {line}: {reason}")]
    RegSyntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// An I/O error (message only, to keep the type `Clone`).
    #[error("{0}")]
    Io(String),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
