// SPDX-License-Identifier: MIT OR Apache-2.0
//! The crate's error type.

use thiserror::Error;

/// Everything that can go wrong with a disk image. Offsets are absolute byte offsets in the
/// image unless a variant says otherwise.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done (e.g. "reading MBR at offset 0").
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The partition table is damaged or unsupported.
    #[error("partition table: {0}")]
    PartitionTable(String),
    /// The image is shorter than its partition table says.
    #[error(
        "truncated image: {what} ends at byte {needed} but the image has only {available} bytes"
    )]
    Truncated {
        /// What reaches past the end.
        what: String,
        /// Byte where it ends.
        needed: u64,
        /// Image length.
        available: u64,
    },
    /// An NTFS structure is damaged or unsupported.
    #[error("NTFS at offset {offset:#x}: {reason}")]
    Ntfs {
        /// Absolute offset of the structure.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A file was not found.
    #[error("not found: {0}")]
    NotFound(String),
    /// A file cannot be edited in place (resident, compressed, encrypted, sparse, VDL < size,
    /// reparse point ...).
    #[error("{path}: cannot be edited in place: {reason}")]
    NotEditable {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The journal refused or failed.
    #[error("journal: {0}")]
    Journal(String),
    /// A patch lies outside the ranges it was planned for.
    #[error("patch at offset {offset:#x} (+{len}) lies outside the allowed ranges")]
    PatchOutOfRange {
        /// Patch offset.
        offset: u64,
        /// Patch length.
        len: u64,
    },
    /// Read-back verification failed after writing.
    #[error(
        "verification failed at offset {offset:#x}: the bytes read back differ from those written"
    )]
    Verify {
        /// Offset of the first difference.
        offset: u64,
    },
    /// An argument is not acceptable.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The partition is BitLocker-encrypted (`-FVE-FS-` OEM ID): its files cannot be read.
    #[error("BitLocker-encrypted volume at offset {offset:#x}: unlock or decrypt it first")]
    BitLocker {
        /// Absolute offset of the volume's boot sector.
        offset: u64,
    },
}

impl Error {
    /// Wraps an I/O error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
