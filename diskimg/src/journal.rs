// SPDX-License-Identifier: MIT OR Apache-2.0
//! Undo journal for in-place byte patches on an image (file or block device).
//!
//! [`apply`] writes a set of [`Patch`]es into an image so that the change can always be undone
//! or, after a crash, rolled back or forward:
//!
//! 1. every patch is checked against the allowed ranges, the image size and the other patches
//!    (no overlaps) before anything is opened for writing;
//! 2. the image is opened read-write and locked exclusively (`flock`, advisory);
//! 3. the old bytes are read and the journal (JSON, see `docs/diskimg-journal-copy.md`) is
//!    written to a temporary file, fsynced, renamed into place and its directory fsynced, all
//!    **before** the image is touched; its state is [`JournalState::Pending`];
//! 4. the patches are written, the image is fsynced and every patch is read back;
//! 5. the journal is rewritten (temp + rename + fsync) with state [`JournalState::Complete`].
//!
//! A crash anywhere leaves either no journal (image untouched) or a pending journal holding both
//! the old and the new bytes of every patch, so [`recover`] can roll back or forward.
//! [`undo`] restores the old bytes of a completed apply.

use crate::patch::Patch;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Value of the journal's `magic` field.
pub const JOURNAL_MAGIC: &str = "imgprep-undo-journal";
/// Journal format version written by this crate (and the only one it reads).
pub const JOURNAL_VERSION: u32 = 1;
/// Suffix of the default journal file name (`<image file name><suffix>`).
pub const JOURNAL_SUFFIX: &str = ".imgprep-journal";
/// Most patches one journal may hold.
pub const MAX_PATCHES: usize = 65_536;
/// Most patched bytes (sum of all patch lengths) one journal may hold: 64 MiB.
pub const MAX_PATCH_BYTES: u64 = 64 << 20;
/// Largest journal file that is read (old + new bytes hex-encoded, plus per-patch overhead).
pub const MAX_JOURNAL_FILE: u64 = 4 * MAX_PATCH_BYTES + (32 << 20);

/// Life cycle of a journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JournalState {
    /// Written before the image is touched; if found later, an apply was interrupted.
    Pending,
    /// All patches written, fsynced and verified; can be undone.
    Complete,
    /// The patches were undone ([`undo`]); kept for the record.
    Undone,
    /// An interrupted apply was rolled back ([`recover`] with [`RecoverMode::RollBack`]).
    RolledBack,
}

/// Modification time as stored in the journal (seconds and nanoseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mtime {
    /// Seconds since 1970-01-01 UTC.
    pub sec: i64,
    /// Nanoseconds within the second.
    pub nsec: i64,
}

/// What identifies the image a journal belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageIdentity {
    /// Canonical path when the journal was written (informational: a renamed image still matches).
    pub path: String,
    /// Size in bytes (block devices: device size).
    pub size: u64,
    /// `st_dev` of the image file.
    pub dev: u64,
    /// `st_ino` of the image file.
    pub ino: u64,
    /// `st_rdev` (device number of a block device, 0 for files).
    pub rdev: u64,
    /// Modification time before the apply.
    pub mtime_before: Mtime,
    /// Modification time once the apply completed (checked by [`undo`]).
    pub mtime_after: Option<Mtime>,
    /// SHA-256 (hex) of the old bytes of all patches, concatenated in journal order.
    pub old_sha256: String,
    /// SHA-256 (hex) of the new bytes of all patches, concatenated in journal order.
    pub new_sha256: String,
}

/// One patch as recorded in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Absolute byte offset in the image.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// True if the image already held the new bytes (nothing written).
    pub skipped: bool,
    /// SHA-256 (hex) of the old bytes.
    pub old_sha256: String,
    /// SHA-256 (hex) of the new bytes.
    pub new_sha256: String,
    /// The old bytes, lower-case hex.
    pub old_hex: String,
    /// The new bytes, lower-case hex (lets [`recover`] roll forward without the caller).
    pub new_hex: String,
}

/// The journal file's content (JSON). Every field is documented in `docs/diskimg-journal-copy.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// Always [`JOURNAL_MAGIC`].
    pub magic: String,
    /// Always [`JOURNAL_VERSION`].
    pub version: u32,
    /// Current state.
    pub state: JournalState,
    /// Writer (`diskimg <version>`).
    pub tool: String,
    /// Creation time, seconds since the epoch.
    pub created_unix: u64,
    /// Last state change, seconds since the epoch.
    pub updated_unix: u64,
    /// The image.
    pub image: ImageIdentity,
    /// The patches, sorted by offset, non-overlapping.
    pub entries: Vec<JournalEntry>,
    /// SHA-256 (hex) of this JSON document serialized with `checksum` set to "".
    pub checksum: String,
}

/// Where to stop an [`apply`] on purpose. **For tests only** (crash-safety tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// After the pending journal is durable, before the image is touched.
    AfterJournalWritten,
    /// After half of the patches (and half of the bytes of the next one) are written.
    AfterHalfPatches,
    /// After all patches are written, before the image is fsynced.
    BeforeImageSync,
    /// After the read-back verification, before the journal is marked complete.
    BeforeMarkComplete,
}

/// A fault to inject into [`apply`]. **For tests only.**
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// Where to stop.
    pub point: FaultPoint,
    /// `true`: `std::process::abort()` (simulates a crash; use in a child process);
    /// `false`: return `Error::Journal("fault injected ...")`.
    pub abort: bool,
}

/// Options for [`apply`].
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Overwrite an existing journal at the journal path (never a pending one).
    pub replace: bool,
    /// Test hook: stop at a given point. Leave `None` in production code.
    pub fault: Option<Fault>,
}

/// Options for [`undo`] and [`recover`].
#[derive(Debug, Clone, Default)]
pub struct UndoOptions {
    /// Write even if the image identity or the current bytes do not match the journal.
    pub force: bool,
    /// Delete the journal afterwards instead of marking it undone / rolled back.
    pub remove_journal: bool,
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    /// The journal written.
    pub journal_path: PathBuf,
    /// Offsets of the patches written.
    pub written: Vec<u64>,
    /// Offsets of the patches skipped because the image already held their bytes.
    pub skipped: Vec<u64>,
    /// Bytes written into the image.
    pub bytes_written: u64,
    /// SHA-256 (hex) of all old bytes (journal order).
    pub old_sha256: String,
    /// SHA-256 (hex) of all new bytes (journal order).
    pub new_sha256: String,
}

/// What [`undo`] or [`recover`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// Offsets of the regions rewritten.
    pub rewritten: Vec<u64>,
    /// Offsets of the regions that already held the target bytes.
    pub unchanged: Vec<u64>,
    /// Offsets of the regions rewritten although they held unexpected bytes (`force`).
    pub forced: Vec<u64>,
    /// Bytes written into the image.
    pub bytes_written: u64,
    /// State the journal was left in (`None` if it was removed).
    pub journal_state: Option<JournalState>,
}

/// How to finish an interrupted apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoverMode {
    /// Restore the old bytes of every patch; the journal becomes [`JournalState::RolledBack`].
    RollBack,
    /// Write the new bytes of every patch; the journal becomes [`JournalState::Complete`].
    RollForward,
}

/// What a patched region of the image currently holds, compared with the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegionState {
    /// The old bytes (and the old bytes differ from the new ones).
    Old,
    /// The new bytes.
    New,
    /// A mix: each byte is either the old or the new one (torn write).
    Torn,
    /// Bytes that are neither old nor new: something else wrote there.
    Foreign,
}

/// Summary of a journal for `imgprep undo --status` and the like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalStatus {
    /// The journal file.
    pub journal_path: PathBuf,
    /// Its state.
    pub state: JournalState,
    /// The image it belongs to.
    pub image: ImageIdentity,
    /// Creation time, seconds since the epoch.
    pub created_unix: u64,
    /// Last state change, seconds since the epoch.
    pub updated_unix: u64,
    /// Writer.
    pub tool: String,
    /// Per patch: offset, length, skipped.
    pub patches: Vec<PatchSummary>,
}

/// One patch in a [`JournalStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatchSummary {
    /// Absolute offset.
    pub offset: u64,
    /// Length.
    pub len: u64,
    /// True if the apply found the new bytes already there.
    pub skipped: bool,
    /// SHA-256 (hex) of the old bytes.
    pub old_sha256: String,
    /// SHA-256 (hex) of the new bytes.
    pub new_sha256: String,
}

/// The default journal path: `<dir>/<image file name>.imgprep-journal`, where `dir` is
/// `journal_dir` if given, else the image's directory.
///
/// Use `journal_dir` when the image's directory is read-only, and always for block devices
/// (`/dev` is a tmpfs: a journal there does not survive a reboot).
pub fn default_journal_path(image_path: &Path, journal_dir: Option<&Path>) -> PathBuf {
    let mut name = image_path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "image".into());
    name.push(JOURNAL_SUFFIX);
    let dir = match journal_dir {
        Some(d) => d.to_path_buf(),
        None => match image_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        },
    };
    dir.join(name)
}

/// If a journal of an interrupted apply (state [`JournalState::Pending`]) sits at the default
/// journal path of `image_path` (see [`default_journal_path`]), returns its path.
///
/// Errors if a journal exists there but cannot be read (the caller should not go on blindly).
pub fn pending_journal(image_path: &Path, journal_dir: Option<&Path>) -> Result<Option<PathBuf>> {
    let path = default_journal_path(image_path, journal_dir);
    match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("checking {}", path.display()), e)),
        Ok(_) => {}
    }
    let j = read_journal(&path)?;
    Ok((j.state == JournalState::Pending).then_some(path))
}

/// Reads and checks a journal (magic, version, checksum, entries) and summarizes it.
pub fn inspect(journal_path: &Path) -> Result<JournalStatus> {
    let j = read_journal(journal_path)?;
    Ok(JournalStatus {
        journal_path: journal_path.to_path_buf(),
        state: j.state,
        image: j.image.clone(),
        created_unix: j.created_unix,
        updated_unix: j.updated_unix,
        tool: j.tool.clone(),
        patches: j
            .entries
            .iter()
            .map(|e| PatchSummary {
                offset: e.offset,
                len: e.len,
                skipped: e.skipped,
                old_sha256: e.old_sha256.clone(),
                new_sha256: e.new_sha256.clone(),
            })
            .collect(),
    })
}

/// Compares every journaled region of the image with the journal's old and new bytes
/// (read-only; no lock taken). Returns `(offset, state)` per patch.
pub fn region_states(image_path: &Path, journal_path: &Path) -> Result<Vec<(u64, RegionState)>> {
    let j = read_journal(journal_path)?;
    let decoded = decode_entries(&j, journal_path)?;
    let image = File::open(image_path)
        .map_err(|e| Error::io(format!("opening {}", image_path.display()), e))?;
    decoded
        .iter()
        .map(|d| Ok((d.offset, classify(&image, d)?)))
        .collect()
}

/// Reads and fully checks a journal file.
pub fn read_journal(journal_path: &Path) -> Result<Journal> {
    let ctx = |what: &str| format!("{what} journal {}", journal_path.display());
    let mut f = File::open(journal_path).map_err(|e| Error::io(ctx("opening"), e))?;
    let len = f
        .metadata()
        .map_err(|e| Error::io(ctx("stat of"), e))?
        .len();
    if len > MAX_JOURNAL_FILE {
        return Err(Error::Journal(format!(
            "{}: {len} bytes, more than the limit of {MAX_JOURNAL_FILE}",
            journal_path.display()
        )));
    }
    let mut text = Vec::new();
    Read::by_ref(&mut f)
        .take(MAX_JOURNAL_FILE)
        .read_to_end(&mut text)
        .map_err(|e| Error::io(ctx("reading"), e))?;
    parse_journal(&text, journal_path)
}

/// Parses and fully checks journal bytes (as read from `journal_path`, used in messages):
/// JSON, magic, version, checksum and every entry. Never panics on any input.
pub fn parse_journal(text: &[u8], journal_path: &Path) -> Result<Journal> {
    if text.len() as u64 > MAX_JOURNAL_FILE {
        return Err(Error::Journal(format!(
            "{}: {} bytes, more than the limit of {MAX_JOURNAL_FILE}",
            journal_path.display(),
            text.len()
        )));
    }
    let j: Journal = serde_json::from_slice(text).map_err(|e| {
        Error::Journal(format!(
            "{}: not a valid journal: {e}",
            journal_path.display()
        ))
    })?;
    if j.magic != JOURNAL_MAGIC {
        return Err(Error::Journal(format!(
            "{}: bad magic {:?}",
            journal_path.display(),
            j.magic
        )));
    }
    if j.version != JOURNAL_VERSION {
        return Err(Error::Journal(format!(
            "{}: unsupported version {} (this build reads {JOURNAL_VERSION})",
            journal_path.display(),
            j.version
        )));
    }
    if j.checksum != journal_checksum(&j)? {
        return Err(Error::Journal(format!(
            "{}: checksum mismatch (journal damaged or edited)",
            journal_path.display()
        )));
    }
    decode_entries(&j, journal_path)?;
    Ok(j)
}

/// Applies `patches` to the image at `image_path` in place, journaled at `journal_path`.
///
/// Every patch must lie fully inside one of `allowed` (after merging adjacent ranges) and inside
/// the image, and patches must not overlap; otherwise nothing is written. Refuses if the image
/// is locked by another process or if a journal exists at `journal_path` (unless
/// `opts.replace`, which still refuses to overwrite a pending journal). Patches whose bytes are
/// already in the image are skipped and listed in the report.
pub fn apply(
    image_path: &Path,
    patches: &[Patch],
    allowed: &[Range<u64>],
    journal_path: &Path,
    opts: &ApplyOptions,
) -> Result<ApplyReport> {
    let sorted = validate_patches(patches, allowed)?;
    let image = open_locked(image_path)?;
    let mut ident = identity(image_path, &image)?;
    for p in &sorted {
        // validate_patches checked that end() does not overflow.
        let end = p.end().unwrap_or(u64::MAX);
        if end > ident.size {
            return Err(Error::Truncated {
                what: format!("patch at offset {:#x}", p.offset),
                needed: end,
                available: ident.size,
            });
        }
    }
    check_existing_journal(journal_path, opts.replace)?;

    // Old bytes and journal entries.
    let mut entries = Vec::with_capacity(sorted.len());
    let mut old_all = Sha256::new();
    let mut new_all = Sha256::new();
    for p in &sorted {
        let mut old = vec![0u8; p.bytes.len()];
        image.read_exact_at(&mut old, p.offset).map_err(|e| {
            Error::io(
                format!(
                    "reading old bytes at {:#x} of {}",
                    p.offset,
                    image_path.display()
                ),
                e,
            )
        })?;
        old_all.update(&old);
        new_all.update(&p.bytes);
        entries.push(JournalEntry {
            offset: p.offset,
            len: p.len(),
            skipped: old == p.bytes,
            old_sha256: sha256_hex(&old),
            new_sha256: sha256_hex(&p.bytes),
            old_hex: to_hex(&old),
            new_hex: to_hex(&p.bytes),
        });
    }
    ident.old_sha256 = hex32(old_all.finalize().into());
    ident.new_sha256 = hex32(new_all.finalize().into());
    let now = unix_now();
    let mut journal = Journal {
        magic: JOURNAL_MAGIC.into(),
        version: JOURNAL_VERSION,
        state: JournalState::Pending,
        tool: format!("diskimg {}", env!("CARGO_PKG_VERSION")),
        created_unix: now,
        updated_unix: now,
        image: ident,
        entries,
        checksum: String::new(),
    };
    write_journal(journal_path, &mut journal)?;
    fault(opts, FaultPoint::AfterJournalWritten)?;

    // The patches.
    let to_write: Vec<&Patch> = sorted
        .iter()
        .zip(&journal.entries)
        .filter(|(_, e)| !e.skipped)
        .map(|(p, _)| *p)
        .collect();
    let half = to_write.len() / 2;
    let mut bytes_written = 0u64;
    for (i, p) in to_write.iter().enumerate() {
        if i == half && is_fault(opts, FaultPoint::AfterHalfPatches) {
            // Tear the next patch too: write the first half of its bytes.
            let torn = p.bytes.get(..p.bytes.len() / 2).unwrap_or(&[]);
            write_at(&image, torn, p.offset, image_path)?;
            fault(opts, FaultPoint::AfterHalfPatches)?;
        }
        write_at(&image, &p.bytes, p.offset, image_path)?;
        bytes_written += p.len();
    }
    fault(opts, FaultPoint::BeforeImageSync)?;
    image
        .sync_all()
        .map_err(|e| Error::io(format!("fsync of {}", image_path.display()), e))?;
    for p in &to_write {
        verify_at(&image, &p.bytes, p.offset, image_path)?;
    }
    fault(opts, FaultPoint::BeforeMarkComplete)?;

    journal.state = JournalState::Complete;
    journal.updated_unix = unix_now();
    journal.image.mtime_after = Some(mtime_of(&image, image_path)?);
    write_journal(journal_path, &mut journal)?;

    let (written, skipped): (Vec<&JournalEntry>, Vec<&JournalEntry>) =
        journal.entries.iter().partition(|e| !e.skipped);
    Ok(ApplyReport {
        journal_path: journal_path.to_path_buf(),
        written: written.iter().map(|e| e.offset).collect(),
        skipped: skipped.iter().map(|e| e.offset).collect(),
        bytes_written,
        old_sha256: journal.image.old_sha256.clone(),
        new_sha256: journal.image.new_sha256.clone(),
    })
}

/// Undoes a completed [`apply`]: restores the old bytes of every patch.
///
/// Checks first (without `opts.force`, any mismatch refuses and nothing is written) that the
/// image is the journaled one (device, inode, size, modification time since the apply) and that
/// every region holds the new bytes, the old ones or a byte-wise mix (so an interrupted undo can
/// be re-run). Verifies by reading back, then marks the journal [`JournalState::Undone`] or removes
/// it (`opts.remove_journal`).
pub fn undo(image_path: &Path, journal_path: &Path, opts: &UndoOptions) -> Result<RestoreReport> {
    let mut journal = read_journal(journal_path)?;
    match journal.state {
        JournalState::Complete => {}
        JournalState::Pending => {
            return Err(Error::Journal(format!(
                "{}: the apply was interrupted (state pending); use recover (roll back or forward)",
                journal_path.display()
            )))
        }
        s => {
            return Err(Error::Journal(format!(
                "{}: nothing to undo (state {s:?})",
                journal_path.display()
            )))
        }
    }
    let image = open_locked(image_path)?;
    check_identity(&journal, image_path, &image, true, opts.force)?;
    let decoded = decode_entries(&journal, journal_path)?;
    let report = restore(&image, image_path, &decoded, Target::Old, opts.force)?;
    finish_journal(
        journal_path,
        &mut journal,
        JournalState::Undone,
        None,
        opts,
        report,
    )
}

/// Finishes an interrupted [`apply`] (journal state [`JournalState::Pending`]).
///
/// Every region may hold old bytes, new bytes or a byte-wise mix of both (torn write); anything
/// else refuses unless `opts.force`. The image identity (device, inode, size) is checked too.
/// [`RecoverMode::RollBack`] restores the old bytes (journal becomes rolled-back, or is removed
/// with `opts.remove_journal`); [`RecoverMode::RollForward`] writes the new bytes and marks the
/// journal complete (so it can still be undone; `remove_journal` is ignored).
pub fn recover(
    image_path: &Path,
    journal_path: &Path,
    mode: RecoverMode,
    opts: &UndoOptions,
) -> Result<RestoreReport> {
    let mut journal = read_journal(journal_path)?;
    if journal.state != JournalState::Pending {
        return Err(Error::Journal(format!(
            "{}: nothing to recover (state {:?}); use undo for a completed apply",
            journal_path.display(),
            journal.state
        )));
    }
    let image = open_locked(image_path)?;
    check_identity(&journal, image_path, &image, false, opts.force)?;
    let decoded = decode_entries(&journal, journal_path)?;
    match mode {
        RecoverMode::RollBack => {
            let report = restore(&image, image_path, &decoded, Target::Old, opts.force)?;
            finish_journal(
                journal_path,
                &mut journal,
                JournalState::RolledBack,
                None,
                opts,
                report,
            )
        }
        RecoverMode::RollForward => {
            let report = restore(&image, image_path, &decoded, Target::New, opts.force)?;
            let mtime = mtime_of(&image, image_path)?;
            let keep = UndoOptions {
                remove_journal: false,
                ..opts.clone()
            };
            finish_journal(
                journal_path,
                &mut journal,
                JournalState::Complete,
                Some(mtime),
                &keep,
                report,
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// A journal entry with its bytes decoded.
struct Decoded {
    offset: u64,
    old: Vec<u8>,
    new: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Old,
    New,
}

fn finish_journal(
    journal_path: &Path,
    journal: &mut Journal,
    state: JournalState,
    mtime_after: Option<Mtime>,
    opts: &UndoOptions,
    mut report: RestoreReport,
) -> Result<RestoreReport> {
    if opts.remove_journal {
        fs::remove_file(journal_path)
            .map_err(|e| Error::io(format!("removing {}", journal_path.display()), e))?;
        sync_dir(journal_path)?;
        report.journal_state = None;
    } else {
        journal.state = state;
        journal.updated_unix = unix_now();
        if mtime_after.is_some() {
            journal.image.mtime_after = mtime_after;
        }
        write_journal(journal_path, journal)?;
        report.journal_state = Some(state);
    }
    Ok(report)
}

/// Brings every region to `target` (old or new bytes). All checks happen before any write.
fn restore(
    image: &File,
    image_path: &Path,
    decoded: &[Decoded],
    target: Target,
    force: bool,
) -> Result<RestoreReport> {
    let mut report = RestoreReport {
        rewritten: Vec::new(),
        unchanged: Vec::new(),
        forced: Vec::new(),
        bytes_written: 0,
        journal_state: None,
    };
    let mut plan: Vec<&Decoded> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for d in decoded {
        let want = if target == Target::Old {
            &d.old
        } else {
            &d.new
        };
        let state = classify(image, d)?;
        let at_target = match (state, target) {
            (RegionState::New, Target::New) | (RegionState::Old, Target::Old) => true,
            // old == new: classify says New.
            (RegionState::New, Target::Old) => d.old == d.new,
            _ => false,
        };
        if at_target {
            report.unchanged.push(d.offset);
            continue;
        }
        // Torn (a byte-wise mix of old and new) comes from an interrupted apply or undo.
        let acceptable = state != RegionState::Foreign;
        if acceptable {
            report.rewritten.push(d.offset);
        } else if force {
            report.forced.push(d.offset);
        } else {
            problems.push(format!(
                "offset {:#x} (+{}): {:?}",
                d.offset,
                want.len(),
                state
            ));
        }
        plan.push(d);
    }
    if !problems.is_empty() {
        return Err(Error::Journal(format!(
            "{}: refusing to write: {} region(s) hold bytes the journal does not expect ({}{}); \
             the image was changed after the apply; use force to write anyway",
            image_path.display(),
            problems.len(),
            problems
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            if problems.len() > 5 { ", ..." } else { "" }
        )));
    }
    for d in &plan {
        let want = if target == Target::Old {
            &d.old
        } else {
            &d.new
        };
        write_at(image, want, d.offset, image_path)?;
        report.bytes_written += want.len() as u64;
    }
    image
        .sync_all()
        .map_err(|e| Error::io(format!("fsync of {}", image_path.display()), e))?;
    for d in decoded {
        let want = if target == Target::Old {
            &d.old
        } else {
            &d.new
        };
        verify_at(image, want, d.offset, image_path)?;
    }
    Ok(report)
}

fn classify(image: &File, d: &Decoded) -> Result<RegionState> {
    let mut cur = vec![0u8; d.old.len()];
    image
        .read_exact_at(&mut cur, d.offset)
        .map_err(|e| Error::io(format!("reading image at {:#x}", d.offset), e))?;
    Ok(if cur == d.new {
        RegionState::New
    } else if cur == d.old {
        RegionState::Old
    } else if cur
        .iter()
        .zip(d.old.iter().zip(&d.new))
        .all(|(c, (o, n))| c == o || c == n)
    {
        RegionState::Torn
    } else {
        RegionState::Foreign
    })
}

fn validate_patches<'a>(patches: &'a [Patch], allowed: &[Range<u64>]) -> Result<Vec<&'a Patch>> {
    if patches.len() > MAX_PATCHES {
        return Err(Error::Invalid(format!(
            "{} patches, more than the limit of {MAX_PATCHES}",
            patches.len()
        )));
    }
    let total: u64 = patches.iter().map(|p| p.len()).fold(0, u64::saturating_add);
    if total > MAX_PATCH_BYTES {
        return Err(Error::Invalid(format!(
            "{total} patched bytes, more than the limit of {MAX_PATCH_BYTES}"
        )));
    }
    let merged = merge_ranges(allowed);
    for p in patches {
        let end = p.end().ok_or(Error::PatchOutOfRange {
            offset: p.offset,
            len: p.len(),
        })?;
        if p.is_empty() {
            return Err(Error::Invalid(format!(
                "empty patch at offset {:#x}",
                p.offset
            )));
        }
        // First merged range ending after the patch start.
        let i = merged.partition_point(|r| r.end <= p.offset);
        match merged.get(i) {
            Some(r) if r.start <= p.offset && end <= r.end => {}
            _ => {
                return Err(Error::PatchOutOfRange {
                    offset: p.offset,
                    len: p.len(),
                })
            }
        }
    }
    let mut sorted: Vec<&Patch> = patches.iter().collect();
    sorted.sort_by_key(|p| p.offset);
    for w in sorted.windows(2) {
        if let [a, b] = w {
            if a.end().unwrap_or(u64::MAX) > b.offset {
                return Err(Error::Invalid(format!(
                    "patches overlap: {:#x} (+{}) and {:#x} (+{})",
                    a.offset,
                    a.len(),
                    b.offset,
                    b.len()
                )));
            }
        }
    }
    Ok(sorted)
}

/// Sorts ranges and merges overlapping or adjacent ones; drops empty ones.
pub(crate) fn merge_ranges(ranges: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut v: Vec<Range<u64>> = ranges.iter().filter(|r| r.start < r.end).cloned().collect();
    v.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

fn check_existing_journal(journal_path: &Path, replace: bool) -> Result<()> {
    match fs::symlink_metadata(journal_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("checking {}", journal_path.display()), e)),
        Ok(_) => {}
    }
    if !replace {
        return Err(Error::Journal(format!(
            "a journal already exists at {}: undo or recover it first, or replace it",
            journal_path.display()
        )));
    }
    match read_journal(journal_path) {
        Ok(j) if j.state == JournalState::Pending => Err(Error::Journal(format!(
            "{} belongs to an interrupted apply (state pending): recover it first; \
             it cannot be replaced",
            journal_path.display()
        ))),
        // A finished or unreadable journal may be replaced on request.
        _ => Ok(()),
    }
}

fn open_locked(image_path: &Path) -> Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(image_path)
        .map_err(|e| Error::io(format!("opening {} read-write", image_path.display()), e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Journal(format!(
            "{} is locked by another process (flock); is another imgprep running on it?",
            image_path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(Error::io(format!("locking {}", image_path.display()), e))
        }
    }
}

fn identity(image_path: &Path, image: &File) -> Result<ImageIdentity> {
    let meta = image
        .metadata()
        .map_err(|e| Error::io(format!("stat of {}", image_path.display()), e))?;
    let size = crate::io::ReadAt::size(image)
        .map_err(|e| Error::io(format!("size of {}", image_path.display()), e))?;
    let path = fs::canonicalize(image_path)
        .unwrap_or_else(|_| image_path.to_path_buf())
        .to_string_lossy()
        .into_owned();
    Ok(ImageIdentity {
        path,
        size,
        dev: meta.dev(),
        ino: meta.ino(),
        rdev: meta.rdev(),
        mtime_before: Mtime {
            sec: meta.mtime(),
            nsec: meta.mtime_nsec(),
        },
        mtime_after: None,
        old_sha256: String::new(),
        new_sha256: String::new(),
    })
}

fn check_identity(
    journal: &Journal,
    image_path: &Path,
    image: &File,
    check_mtime: bool,
    force: bool,
) -> Result<()> {
    let now = identity(image_path, image)?;
    let want = &journal.image;
    let mut diffs = Vec::new();
    if (now.dev, now.ino, now.rdev) != (want.dev, want.ino, want.rdev) {
        diffs.push(format!(
            "device/inode {}/{} (journal: {}/{}, journaled path {})",
            now.dev, now.ino, want.dev, want.ino, want.path
        ));
    }
    if now.size != want.size {
        diffs.push(format!("size {} (journal: {})", now.size, want.size));
    }
    if check_mtime {
        if let Some(after) = want.mtime_after {
            if now.mtime_before != after {
                diffs.push(format!(
                    "modification time {}.{:09} (journal: {}.{:09}): modified after the apply",
                    now.mtime_before.sec, now.mtime_before.nsec, after.sec, after.nsec
                ));
            }
        }
    }
    if diffs.is_empty() || force {
        return Ok(());
    }
    Err(Error::Journal(format!(
        "{} does not look like the image this journal was written for: {}; use force to go on",
        image_path.display(),
        diffs.join("; ")
    )))
}

fn decode_entries(j: &Journal, journal_path: &Path) -> Result<Vec<Decoded>> {
    let bad = |what: String| Error::Journal(format!("{}: {what}", journal_path.display()));
    if j.entries.len() > MAX_PATCHES {
        return Err(bad(format!(
            "{} entries, more than {MAX_PATCHES}",
            j.entries.len()
        )));
    }
    let mut out = Vec::with_capacity(j.entries.len());
    let mut total = 0u64;
    let mut prev_end = 0u64;
    for e in &j.entries {
        total = total.saturating_add(e.len);
        if total > MAX_PATCH_BYTES || e.len == 0 {
            return Err(bad(format!(
                "entry at {:#x}: bad length {}",
                e.offset, e.len
            )));
        }
        let end = e
            .offset
            .checked_add(e.len)
            .filter(|&end| end <= j.image.size)
            .ok_or_else(|| bad(format!("entry at {:#x} reaches past the image", e.offset)))?;
        if e.offset < prev_end {
            return Err(bad(format!(
                "entries unsorted or overlapping at {:#x}",
                e.offset
            )));
        }
        prev_end = end;
        let old = from_hex(&e.old_hex)
            .ok_or_else(|| bad(format!("entry at {:#x}: bad old_hex", e.offset)))?;
        let new = from_hex(&e.new_hex)
            .ok_or_else(|| bad(format!("entry at {:#x}: bad new_hex", e.offset)))?;
        if old.len() as u64 != e.len || new.len() as u64 != e.len {
            return Err(bad(format!("entry at {:#x}: byte count != len", e.offset)));
        }
        if sha256_hex(&old) != e.old_sha256 || sha256_hex(&new) != e.new_sha256 {
            return Err(bad(format!("entry at {:#x}: hash mismatch", e.offset)));
        }
        out.push(Decoded {
            offset: e.offset,
            old,
            new,
        });
    }
    Ok(out)
}

fn journal_checksum(j: &Journal) -> Result<String> {
    let mut copy = j.clone();
    copy.checksum = String::new();
    let bytes = serde_json::to_vec(&copy)
        .map_err(|e| Error::Journal(format!("serializing journal: {e}")))?;
    Ok(sha256_hex(&bytes))
}

/// Writes the journal atomically: temp file, fsync, rename, fsync of the directory.
fn write_journal(journal_path: &Path, j: &mut Journal) -> Result<()> {
    j.checksum = journal_checksum(j)?;
    let mut text = serde_json::to_vec_pretty(j)
        .map_err(|e| Error::Journal(format!("serializing journal: {e}")))?;
    text.push(b'\n');
    let mut tmp_name = journal_path
        .file_name()
        .map(|n| n.to_os_string())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "journal path {} has no file name",
                journal_path.display()
            ))
        })?;
    tmp_name.push(".tmp");
    let tmp = journal_path.with_file_name(tmp_name);
    let ctx = |what: &str, p: &Path| format!("{what} {}", p.display());
    // 0600: the journal holds old bytes of the image (e.g. of a registry hive).
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io(ctx("creating", &tmp), e))?;
    f.write_all(&text)
        .map_err(|e| Error::io(ctx("writing", &tmp), e))?;
    f.sync_all()
        .map_err(|e| Error::io(ctx("fsync of", &tmp), e))?;
    drop(f);
    fs::rename(&tmp, journal_path).map_err(|e| {
        Error::io(
            format!("renaming {} to {}", tmp.display(), journal_path.display()),
            e,
        )
    })?;
    sync_dir(journal_path)
}

fn sync_dir(path_in_dir: &Path) -> Result<()> {
    let dir = match path_in_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("fsync of directory {}", dir.display()), e))
}

fn write_at(image: &File, bytes: &[u8], offset: u64, image_path: &Path) -> Result<()> {
    image.write_all_at(bytes, offset).map_err(|e| {
        Error::io(
            format!(
                "writing {} bytes at {offset:#x} of {}",
                bytes.len(),
                image_path.display()
            ),
            e,
        )
    })
}

fn verify_at(image: &File, want: &[u8], offset: u64, image_path: &Path) -> Result<()> {
    let mut got = vec![0u8; want.len()];
    image.read_exact_at(&mut got, offset).map_err(|e| {
        Error::io(
            format!("reading back at {offset:#x} of {}", image_path.display()),
            e,
        )
    })?;
    match got.iter().zip(want).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(i) => Err(Error::Verify {
            offset: offset + i as u64,
        }),
    }
}

fn mtime_of(image: &File, image_path: &Path) -> Result<Mtime> {
    let m = image
        .metadata()
        .map_err(|e| Error::io(format!("stat of {}", image_path.display()), e))?;
    Ok(Mtime {
        sec: m.mtime(),
        nsec: m.mtime_nsec(),
    })
}

fn is_fault(opts: &ApplyOptions, point: FaultPoint) -> bool {
    opts.fault.is_some_and(|f| f.point == point)
}

fn fault(opts: &ApplyOptions, point: FaultPoint) -> Result<()> {
    match opts.fault {
        Some(f) if f.point == point => {
            if f.abort {
                std::process::abort();
            }
            Err(Error::Journal(format!(
                "fault injected at {point:?} (test hook)"
            )))
        }
        _ => Ok(()),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex32(Sha256::digest(bytes).into())
}

pub(crate) fn hex32(h: [u8; 32]) -> String {
    to_hex(&h)
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    b.chunks_exact(2)
        .map(|p| match p {
            [h, l] => Some(nib(*h)? << 4 | nib(*l)?),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let v: Vec<u8> = (0..=255).collect();
        assert_eq!(from_hex(&to_hex(&v)).as_deref(), Some(&v[..]));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }

    #[test]
    fn merge() {
        assert_eq!(
            merge_ranges(&[5..10, 0..5, 20..30, 25..26, 7..7]),
            vec![0..10, 20..30]
        );
    }

    #[test]
    fn default_path() {
        assert_eq!(
            default_journal_path(Path::new("/a/b/disk.img"), None),
            PathBuf::from("/a/b/disk.img.imgprep-journal")
        );
        assert_eq!(
            default_journal_path(Path::new("disk.img"), Some(Path::new("/var/lib"))),
            PathBuf::from("/var/lib/disk.img.imgprep-journal")
        );
        assert_eq!(
            default_journal_path(Path::new("disk.img"), None),
            PathBuf::from("./disk.img.imgprep-journal")
        );
    }

    #[test]
    fn patch_validation() {
        let p = |o, n| Patch::new(o, vec![1; n]);
        assert!(validate_patches(&[p(0, 4), p(4, 4)], &[0..4, 4..8]).is_ok());
        assert!(matches!(
            validate_patches(&[p(2, 4)], &[0..4]),
            Err(Error::PatchOutOfRange { offset: 2, len: 4 })
        ));
        assert!(matches!(
            validate_patches(&[p(0, 4), p(2, 4)], &[0..10]),
            Err(Error::Invalid(_))
        ));
        assert!(validate_patches(&[p(u64::MAX, 4)], &[0..10]).is_err());
        assert!(validate_patches(&[p(0, 0)], &[0..10]).is_err());
    }
}
