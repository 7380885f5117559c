// SPDX-License-Identifier: MIT OR Apache-2.0
//! Why imgprep refuses an image, and the exit status each reason gets.

use serde::Serialize;

/// The reasons imgprep refuses to edit (or calls unsafe) an image. Each has its own exit status
/// so pipelines can react without parsing text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Refusal {
    /// Windows is hibernated or was shut down with Fast Startup (hiberfil.sys header, or an
    /// NTFS `$LogFile` version 2.0 restart area).
    Hibernated,
    /// The NTFS volume is dirty or its `$LogFile` is unclean.
    DirtyVolume,
    /// The Windows volume is encrypted with BitLocker.
    BitLocker,
    /// The SYSTEM hive is dirty and its logs were not replayed (`--replay-logs`).
    DirtyHive,
    /// `Services\iScsiPrt` is missing.
    NoIscsiPrt,
    /// No network adapter qualifies as a boot NIC.
    NoBootNic,
    /// The edit does not fit in the hive's free space.
    NoSpace,
    /// The image is truncated or its partition table is damaged.
    BadDisk,
    /// The hive file cannot be edited in place (resident, compressed, sparse, VDL < size ...).
    FileLayout,
    /// An earlier in-place write left a journal (undo it, or pass `--replace-journal`).
    PendingJournal,
    /// NDIS, Tcpip or the NIC's miniport service is missing.
    MissingService,
}

impl Refusal {
    /// The process exit status for this refusal.
    pub fn exit_code(self) -> u8 {
        match self {
            Refusal::Hibernated => 10,
            Refusal::DirtyVolume => 11,
            Refusal::BitLocker => 12,
            Refusal::DirtyHive => 13,
            Refusal::NoIscsiPrt => 14,
            Refusal::NoBootNic => 15,
            Refusal::NoSpace => 16,
            Refusal::BadDisk => 17,
            Refusal::FileLayout => 18,
            Refusal::PendingJournal => 19,
            Refusal::MissingService => 20,
        }
    }

    /// Short name (as in JSON).
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Hibernated => "hibernated",
            Refusal::DirtyVolume => "dirty-volume",
            Refusal::BitLocker => "bitlocker",
            Refusal::DirtyHive => "dirty-hive",
            Refusal::NoIscsiPrt => "no-iscsiprt",
            Refusal::NoBootNic => "no-boot-nic",
            Refusal::NoSpace => "no-space",
            Refusal::BadDisk => "bad-disk",
            Refusal::FileLayout => "file-layout",
            Refusal::PendingJournal => "pending-journal",
            Refusal::MissingService => "missing-service",
        }
    }
}

/// An error that carries a [`Refusal`]: the message says what was found and what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    /// Why.
    pub reason: Refusal,
    /// What was found and what to do.
    pub message: String,
}

impl Refused {
    /// Builds the error.
    pub fn new(reason: Refusal, message: impl Into<String>) -> Refused {
        Refused {
            reason,
            message: message.into(),
        }
    }
}

/// Exit status for success / ready.
pub const EXIT_OK: u8 = 0;
/// Exit status: not ready (changes needed), or a blocking filter remains after strip-lwf.
pub const EXIT_NOT_READY: u8 = 1;
/// Exit status: bad input, I/O error, usage error.
pub const EXIT_ERROR: u8 = 2;

/// The exit status for an error: its [`Refusal`] if it has one, else [`EXIT_ERROR`].
pub fn exit_code_of(e: &anyhow::Error) -> u8 {
    e.chain()
        .find_map(|c| c.downcast_ref::<Refused>())
        .map_or(EXIT_ERROR, |r| r.reason.exit_code())
}
