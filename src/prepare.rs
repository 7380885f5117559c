// SPDX-License-Identifier: MIT OR Apache-2.0
//! Plan → byte patches → apply: the preparation of a Windows image for iSCSI boot.
//!
//! 1. [`safety`] looks at the volume (hibernation, Fast Startup, dirty flag, `$LogFile`) and
//!    the SYSTEM hive (dirty, file layout).
//! 2. [`prepare`] plans the registry edits ([`crate::plan`]), performs them on an in-memory copy
//!    of the hive in fixed-size mode (the file in NTFS cannot grow), commits it clean with a
//!    sequence number above every log, and maps the changed hive bytes to disk patches.
//! 3. [`apply_in_place`] writes the patches through diskimg's undo journal and verifies them
//!    by reading the hive back; [`export`] streams the copy range with the patches applied.

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use diskimg::journal::{self, ApplyOptions, ApplyReport};
use diskimg::ntfs::LogState;
use diskimg::patch::Patch;
use hivetool::edit::{Editor, Growth};
use hivetool::{BaseBlock, Hive};
use serde::Serialize;

use crate::error::{Refusal, Refused};
use crate::image::{HiveFile, WindowsImage};
use crate::plan::{self, Plan, RegOp};

/// One reason an image is unsafe to edit.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Why (with its exit status).
    pub reason: Refusal,
    /// Exit status of this reason.
    pub exit_code: u8,
    /// What was found and what to do.
    pub message: String,
}

impl Problem {
    fn new(reason: Refusal, message: impl Into<String>) -> Problem {
        Problem {
            reason,
            exit_code: reason.exit_code(),
            message: message.into(),
        }
    }
}

/// The hive's state.
#[derive(Debug, Clone, Serialize)]
pub struct HiveState {
    /// Path in the volume.
    pub path: String,
    /// File size.
    pub size: u64,
    /// Number of NTFS runs (fragments) of the file.
    pub fragments: usize,
    /// Number of MFT records the run list spans (> 1: an attribute list).
    pub mft_segments: usize,
    /// Format version `1.minor`.
    pub version: String,
    /// Primary sequence number.
    pub seq1: u32,
    /// Secondary sequence number.
    pub seq2: u32,
    /// Whether the checksum is right.
    pub checksum_ok: bool,
    /// Dirty (seq1 ≠ seq2 or bad checksum).
    pub dirty: bool,
    /// Transaction logs found beside it, with their sizes.
    pub logs: Vec<(String, u64)>,
    /// Highest sequence number in the hive and its logs.
    pub max_log_seq: u32,
}

/// The volume's state.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeState {
    /// Partition index.
    pub partition: u32,
    /// `$Volume` dirty flag.
    pub dirty: bool,
    /// NTFS version.
    pub ntfs_version: Option<String>,
    /// `$LogFile` state (`empty`, `clean`, `unclean`, `unreadable: …`).
    pub logfile: String,
    /// `$LogFile` restart-area version.
    pub logfile_version: Option<String>,
    /// `hiberfil.sys` header magic, if the file exists.
    pub hiberfil: Option<String>,
}

/// Safety of an image for an offline edit.
#[derive(Debug, Clone, Serialize)]
pub struct Safety {
    /// Volume facts.
    pub volume: VolumeState,
    /// SYSTEM hive facts.
    pub hive: HiveState,
    /// Every reason against editing (empty = safe).
    pub problems: Vec<Problem>,
}

impl Safety {
    /// Safe to edit.
    pub fn is_safe(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Looks at the volume and the SYSTEM hive. `replay_logs`: a dirty hive is fine when its logs
/// will be replayed.
pub fn safety(img: &WindowsImage, hive: &HiveFile, replay_logs: bool) -> Safety {
    let v = img.volume().safety();
    let mut problems = Vec::new();
    if let Some(h) = &v.hiberfil {
        if h.r#unsafe {
            problems.push(Problem::new(
                Refusal::Hibernated,
                format!(
                    "hiberfil.sys begins with {:?}: Windows is hibernated (or was shut down with \
                     Fast Startup). Boot it, then shut down fully (shutdown /s /t 0, or disable \
                     Fast Startup: powercfg /h off) and image again",
                    h.magic
                ),
            ));
        }
    }
    if matches!(v.logfile.version, Some((major, _)) if major >= 2) {
        problems.push(Problem::new(
            Refusal::Hibernated,
            "$LogFile restart area is version 2.0: Windows 8+ kept the NTFS metadata in its Fast \
             Startup cache. Boot it and shut down fully (shutdown /s /t 0) before imaging",
        ));
    }
    if v.dirty {
        problems.push(Problem::new(
            Refusal::DirtyVolume,
            "the NTFS volume is marked dirty (chkdsk pending): run chkdsk in Windows, shut down \
             cleanly and image again",
        ));
    }
    match &v.logfile.state {
        LogState::Unclean => problems.push(Problem::new(
            Refusal::DirtyVolume,
            "$LogFile is not clean: Windows was not shut down cleanly; boot it and shut down \
             fully before imaging",
        )),
        LogState::Unreadable(e) => problems.push(Problem::new(
            Refusal::DirtyVolume,
            format!("$LogFile cannot be read ({e}): cannot tell whether the volume is clean"),
        )),
        _ => {}
    }
    if let Some(e) = &v.hiberfil_error {
        problems.push(Problem::new(
            Refusal::Hibernated,
            format!("hiberfil.sys unreadable: {e}: cannot tell whether Windows is hibernated"),
        ));
    }
    if v.volume_flags.is_none() {
        problems.push(Problem::new(
            Refusal::DirtyVolume,
            "$Volume information cannot be read: cannot tell whether the volume is clean",
        ));
    }
    let hs = hive_state(hive);
    if let Err(e) = hive.extents.editable() {
        problems.push(Problem::new(Refusal::FileLayout, e.to_string()));
    }
    if hs.dirty && !replay_logs {
        problems.push(Problem::new(
            Refusal::DirtyHive,
            format!(
                "{} is dirty (sequence numbers {}/{}{}): its transaction logs hold changes that \
                 are not in the file. Pass --replay-logs to replay {} first (as Windows would), \
                 or boot Windows and shut it down cleanly",
                hive.path,
                hs.seq1,
                hs.seq2,
                if hs.checksum_ok { "" } else { ", bad checksum" },
                if hive.logs.is_empty() {
                    "its logs (none were found!)".to_string()
                } else {
                    hive.logs
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(" and ")
                }
            ),
        ));
    }
    Safety {
        volume: VolumeState {
            partition: img.partition().index,
            dirty: v.dirty,
            ntfs_version: v.ntfs_version.map(|(a, b)| format!("{a}.{b}")),
            logfile: match &v.logfile.state {
                LogState::Empty => "empty".into(),
                LogState::Clean => "clean".into(),
                LogState::Unclean => "unclean".into(),
                LogState::Unreadable(e) => format!("unreadable: {e}"),
            },
            logfile_version: v.logfile.version.map(|(a, b)| format!("{a}.{b}")),
            hiberfil: v.hiberfil.as_ref().map(|h| format!("{:?}", h.magic)),
        },
        hive: hs,
        problems,
    }
}

fn log_refs(hive: &HiveFile) -> Vec<(&str, &[u8])> {
    hive.logs
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect()
}

/// Facts about a hive file.
pub fn hive_state(hive: &HiveFile) -> HiveState {
    let base = BaseBlock::parse(&hive.bytes).ok();
    HiveState {
        path: hive.path.clone(),
        size: hive.bytes.len() as u64,
        fragments: hive.extents.extents.len(),
        mft_segments: hive.extents.segments,
        version: base
            .as_ref()
            .map(|b| format!("{}.{}", b.major, b.minor))
            .unwrap_or_else(|| "?".into()),
        seq1: base.as_ref().map_or(0, |b| b.seq1),
        seq2: base.as_ref().map_or(0, |b| b.seq2),
        checksum_ok: base.as_ref().is_some_and(|b| b.checksum_ok),
        dirty: base.as_ref().is_none_or(|b| b.is_dirty()),
        logs: hive
            .logs
            .iter()
            .map(|(n, d)| (n.clone(), d.len() as u64))
            .collect(),
        max_log_seq: hivetool::log::max_sequence(&hive.bytes, &log_refs(hive)),
    }
}

/// Options for [`prepare`].
#[derive(Debug, Clone, Default)]
pub struct PrepareOptions {
    /// What to edit.
    pub plan: plan::Options,
    /// Replay the SYSTEM hive's transaction logs first when it is dirty.
    pub replay_logs: bool,
    /// Timestamp (FILETIME) to write instead of the current time (reproducible output).
    pub clock: Option<u64>,
}

/// A summary of a log replay.
#[derive(Debug, Clone, Serialize)]
pub struct ReplaySummary {
    /// Log entries applied.
    pub entries: usize,
    /// Sequence numbers of the first and last entry applied.
    pub seq_range: Option<(u32, u32)>,
    /// Whether the base block came from a log.
    pub base_block_recovered: bool,
    /// Notes from the replay.
    pub notes: Vec<String>,
}

/// The prepared edit: what changes, in the registry and on the disk.
#[derive(Debug, Clone, Serialize)]
pub struct Prepared {
    /// The registry plan.
    pub plan: Plan,
    /// Path of the hive in the volume.
    pub hive_path: String,
    /// Sequence numbers before.
    pub seq_before: (u32, u32),
    /// The hive edit and its disk patches.
    #[serde(flatten)]
    pub edit: HiveEdit,
}

impl Prepared {
    /// Nothing to write.
    pub fn is_noop(&self) -> bool {
        self.edit.patches.is_empty()
    }
}

impl HiveEdit {
    /// Bytes changed on the disk.
    pub fn bytes_changed(&self) -> u64 {
        self.patches.iter().map(|p| p.bytes.len() as u64).sum()
    }
}

fn first_refusal(problems: &[Problem]) -> Option<Refused> {
    problems
        .first()
        .map(|p| Refused::new(p.reason, p.message.clone()))
}

/// Differing bytes at most this far apart become one range (a log replay changes ~550 KB in
/// ~174,000 byte runs: far more than the journal's patch limit; merged: ~700).
pub const MERGE_GAP: u64 = 32;

/// Byte ranges covering every byte where `a` and `b` differ, differences at most [`MERGE_GAP`]
/// bytes apart merged into one range (`b` may be longer: the tail is one range).
pub fn diff_ranges(a: &[u8], b: &[u8]) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    let n = a.len().min(b.len());
    let mut i = 0;
    while i < n {
        let chunk = (n - i).min(4096);
        if a[i..i + chunk] == b[i..i + chunk] {
            i += chunk;
            continue;
        }
        for j in i..i + chunk {
            if a[j] != b[j] {
                match out.last_mut() {
                    Some(r) if j as u64 <= r.end + MERGE_GAP => r.end = j as u64 + 1,
                    _ => out.push(j as u64..j as u64 + 1),
                }
            }
        }
        i += chunk;
    }
    if b.len() > a.len() {
        out.push(a.len() as u64..b.len() as u64);
    }
    out
}

/// Merges sorted ranges at most [`MERGE_GAP`] bytes apart.
pub fn merge_ranges(ranges: impl IntoIterator<Item = Range<u64>>) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end + MERGE_GAP => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{diff_ranges, merge_ranges};

    #[test]
    fn diffs_and_merging() {
        let a = vec![0u8; 10_000];
        let mut b = a.clone();
        b[5] = 1;
        b[6] = 1;
        b[300] = 2;
        b[9_000] = 3;
        let d = diff_ranges(&a, &b);
        assert_eq!(d, vec![5..7, 300..301, 9_000..9_001]);
        b[320] = 4; // within MERGE_GAP of 300
        assert_eq!(diff_ranges(&a, &b), vec![5..7, 300..321, 9_000..9_001]);
        assert_eq!(diff_ranges(&a, &a), vec![]);
        assert_eq!(
            merge_ranges([0..2, 10..12, 100..101]),
            vec![0..12, 100..101]
        );
        assert_eq!(diff_ranges(&a[..10], &b[..12]), vec![5..7, 10..12]);
        let _ = &mut b;
    }
}

fn map_hive_error(e: hivetool::Error, hive_path: &str) -> anyhow::Error {
    match e {
        hivetool::Error::NoSpace { missing } => Refused::new(
            Refusal::NoSpace,
            format!(
                "the edit does not fit in {hive_path}: {missing} more bytes are needed than its \
                 free cells and slack hold, and the file cannot grow inside the image. Boot \
                 Windows once (it compacts and grows the hive) or free space in the hive"
            ),
        )
        .into(),
        hivetool::Error::Dirty { seq1, seq2, .. } => Refused::new(
            Refusal::DirtyHive,
            format!("{hive_path} is dirty ({seq1}/{seq2}): pass --replay-logs"),
        )
        .into(),
        e => anyhow!("{hive_path}: {e}"),
    }
}

/// Applies registry operations to an editor.
pub fn apply_ops(ed: &mut Editor, ops: &[RegOp]) -> hivetool::Result<()> {
    for op in ops {
        match op {
            RegOp::SetValue {
                key,
                name,
                ty,
                data,
                create_key,
            } => {
                if *create_key && ed.key_offset(key)?.is_none() {
                    ed.create_key(key)?;
                }
                ed.set_value(key, name, *ty, data)?;
            }
            RegOp::DeleteValue { key, name } => {
                ed.delete_value(key, name)?;
            }
            RegOp::DeleteKey { key } => {
                ed.delete_key(key)?;
            }
        }
    }
    Ok(())
}

/// Plans the preparation and computes the disk patches. Refuses (with a [`Refused`] error)
/// when the image is not safe to edit.
///
/// Takes the hive by value: a clean hive's bytes become the editor's working copy without
/// being copied (a SYSTEM hive is 10–100 MiB).
pub fn prepare(img: &WindowsImage, hive: HiveFile, opts: &PrepareOptions) -> Result<Prepared> {
    let s = safety(img, &hive, opts.replay_logs);
    prepare_safe(hive, &s, opts)
}

/// [`prepare`] for a caller that has already looked at the image with [`safety`] (for the same
/// `opts.replay_logs`): refuses on its first problem, otherwise plans and edits without reading
/// the volume's state again.
pub fn prepare_safe(
    mut hive: HiveFile,
    safety: &Safety,
    opts: &PrepareOptions,
) -> Result<Prepared> {
    let hive = &mut hive;
    if let Some(r) = first_refusal(&safety.problems) {
        return Err(r.into());
    }
    let base = BaseBlock::parse(&hive.bytes).map_err(|e| anyhow!("{}: {e}", hive.path))?;
    let (working, replay) = if base.is_dirty() {
        recover_hive(hive, opts.replay_logs)?
    } else {
        // The editor reports its exact changes, so the original bytes are not needed.
        (std::mem::take(&mut hive.bytes), None)
    };
    let view = Hive::open(&working).map_err(|e| anyhow!("{}: {e}", hive.path))?;
    let p = plan::plan(&view, &opts.plan)?;
    // Blockers that make the image unbootable whatever we edit: refuse before writing.
    for b in &p.blockers {
        let reason = match b.kind {
            plan::BlockerKind::NoIscsiPrt => Refusal::NoIscsiPrt,
            plan::BlockerKind::NoBootNic => Refusal::NoBootNic,
            plan::BlockerKind::MissingService => Refusal::MissingService,
            plan::BlockerKind::BlockingFilter => continue,
        };
        return Err(Refused::new(reason, b.message.clone()).into());
    }
    let ops: Vec<RegOp> = p.changes.iter().map(|c| c.op.clone()).collect();
    let edit = edit_hive(hive, working, replay, &ops, opts.clock)?;
    Ok(Prepared {
        plan: p,
        hive_path: hive.path.clone(),
        seq_before: (base.seq1, base.seq2),
        edit,
    })
}

/// The result of [`edit_hive`]: a hive edit turned into disk patches.
#[derive(Debug, Clone, Serialize)]
pub struct HiveEdit {
    /// The log replay, if one was done.
    pub replay: Option<ReplaySummary>,
    /// Sequence number written, when anything changes.
    pub seq_after: Option<u32>,
    /// Changed byte ranges of the hive file.
    pub hive_changes: Vec<Range<u64>>,
    /// Disk patches.
    #[serde(skip)]
    pub patches: Vec<Patch>,
    /// Disk ranges the patches may touch (the hive's extents).
    #[serde(skip)]
    pub allowed: Vec<Range<u64>>,
    /// The new hive bytes (the old ones when nothing changes).
    #[serde(skip)]
    pub new_hive: Vec<u8>,
}

/// Replays `hive`'s logs if it is dirty (refusing when `replay_logs` is false); returns the
/// working bytes (same length as the file) and the replay summary.
pub fn recover_hive(
    hive: &HiveFile,
    replay_logs: bool,
) -> Result<(Vec<u8>, Option<ReplaySummary>)> {
    let base = BaseBlock::parse(&hive.bytes).map_err(|e| anyhow!("{}: {e}", hive.path))?;
    if !base.is_dirty() {
        return Ok((hive.bytes.clone(), None));
    }
    let logs = log_refs(hive);
    if !replay_logs {
        return Err(Refused::new(
            Refusal::DirtyHive,
            format!(
                "{} is dirty (sequence numbers {}/{}): pass --replay-logs to replay its \
                 transaction logs first",
                hive.path, base.seq1, base.seq2
            ),
        )
        .into());
    }
    if logs.is_empty() {
        return Err(Refused::new(
            Refusal::DirtyHive,
            format!(
                "{} is dirty ({}/{}) and has no transaction logs to replay: boot Windows and \
                 shut it down cleanly",
                hive.path, base.seq1, base.seq2
            ),
        )
        .into());
    }
    let r = hivetool::log::replay(&hive.bytes, &logs)
        .map_err(|e| anyhow!("replaying the logs of {}: {e}", hive.path))?;
    if r.data.len() > hive.bytes.len() {
        return Err(Refused::new(
            Refusal::NoSpace,
            format!(
                "replaying the logs grows {} to {} bytes, but its file holds {} and cannot \
                 grow inside the image: boot Windows once and shut it down cleanly",
                hive.path,
                r.data.len(),
                hive.bytes.len()
            ),
        )
        .into());
    }
    let mut working = r.data.clone();
    // Keep the file length: the tail past the replayed image stays as it was.
    working.extend_from_slice(&hive.bytes[r.data.len()..]);
    let summary = ReplaySummary {
        entries: r.applied.len(),
        seq_range: r
            .applied
            .first()
            .zip(r.applied.last())
            .map(|(a, b)| (a.seq, b.seq)),
        base_block_recovered: r.base_block_recovered,
        notes: r.notes.clone(),
    };
    Ok((working, Some(summary)))
}

/// Performs `ops` on `working` (the hive's bytes, replayed if `replay` is set) in fixed-size
/// mode, commits it clean above every log sequence number, and maps the bytes that differ from
/// the file on disk to disk patches.
pub fn edit_hive(
    hive: &HiveFile,
    working: Vec<u8>,
    replay: Option<ReplaySummary>,
    ops: &[RegOp],
    clock: Option<u64>,
) -> Result<HiveEdit> {
    let mut out = HiveEdit {
        replay,
        seq_after: None,
        hive_changes: Vec::new(),
        patches: Vec::new(),
        allowed: Vec::new(),
        new_hive: Vec::new(),
    };
    if ops.is_empty() && out.replay.is_none() {
        out.new_hive = working;
        return Ok(out);
    }
    let logs = log_refs(hive);
    // `hive.bytes` may have been moved into `working` (clean hive, see [`prepare`]).
    let original: &[u8] = if hive.bytes.is_empty() {
        &working
    } else {
        &hive.bytes
    };
    let min_seq = hivetool::log::max_sequence(original, &logs).saturating_add(1);
    let file_len = hive.extents.data_size;
    let mut ed = if out.replay.is_some() {
        Editor::open_recovered(working, Growth::Fixed)
    } else {
        Editor::open(working, Growth::Fixed)
    }
    .map_err(|e| map_hive_error(e, &hive.path))?;
    ed.set_clock(clock);
    apply_ops(&mut ed, ops).map_err(|e| map_hive_error(e, &hive.path))?;
    let commit = ed
        .commit(min_seq)
        .map_err(|e| map_hive_error(e, &hive.path))?;
    // The committed image must open as a clean hive before anything is written.
    Hive::open(&commit.data).map_err(|e| anyhow!("the edited {} does not open: {e}", hive.path))?;
    if commit.data.len() as u64 != file_len {
        return Err(Refused::new(
            Refusal::NoSpace,
            format!("the edited {} would change the file's size", hive.path),
        )
        .into());
    }
    // The bytes that differ from the file on disk: the editor's own changes, or (after a log
    // replay, which changes more) a diff against the file; merged across short unchanged gaps.
    let changes = if out.replay.is_none() {
        merge_ranges(commit.changed.iter().map(|r| r.start as u64..r.end as u64))
    } else {
        diff_ranges(&hive.bytes, &commit.data)
    };
    for r in &changes {
        let pieces = hive
            .extents
            .map_range(r.clone())
            .map_err(|e| Refused::new(Refusal::FileLayout, format!("{}: {e}", hive.path)))?;
        let mut at = r.start as usize;
        for (disk, len) in pieces {
            let len = len as usize;
            out.patches
                .push(Patch::new(disk, commit.data[at..at + len].to_vec()));
            at += len;
        }
    }
    out.allowed = hive
        .extents
        .map_range(0..hive.extents.data_size)
        .map_err(|e| Refused::new(Refusal::FileLayout, format!("{}: {e}", hive.path)))?
        .into_iter()
        .map(|(d, l)| d..d + l)
        .collect();
    out.seq_after = Some(commit.sequence);
    out.hive_changes = changes;
    out.new_hive = commit.data;
    Ok(out)
}

/// Options for [`apply_in_place`].
#[derive(Debug, Clone, Default)]
pub struct ApplyInPlace {
    /// Directory for the journal (default: beside the image).
    pub journal_dir: Option<PathBuf>,
    /// Give up the undo information of an earlier in-place write.
    pub replace_journal: bool,
}

/// The journal path used for an image.
pub fn journal_path(image: &Path, dir: Option<&Path>) -> PathBuf {
    journal::default_journal_path(image, dir)
}

/// Writes the patches of `edit` (an edit of hive `hive_name`) into the image through the undo
/// journal, then reopens the image, reads the hive back through NTFS and checks that it equals
/// the bytes meant.
pub fn apply_in_place(
    image_path: &Path,
    hive_name: &str,
    edit: &HiveEdit,
    opts: &ApplyInPlace,
    open: crate::image::OpenOptions,
) -> Result<ApplyReport> {
    use std::os::unix::fs::FileTypeExt;
    let is_device = std::fs::metadata(image_path)
        .map(|m| m.file_type().is_block_device())
        .unwrap_or(false);
    if is_device && opts.journal_dir.is_none() {
        anyhow::bail!(
            "{} is a block device: pass --journal-dir DIR (a directory on persistent storage) \
             for the undo journal; beside the device (in /dev) it would not survive a reboot",
            image_path.display()
        );
    }
    let jpath = journal_path(image_path, opts.journal_dir.as_deref());
    if let Some(p) = journal::pending_journal(image_path, opts.journal_dir.as_deref())? {
        return Err(Refused::new(
            Refusal::PendingJournal,
            format!(
                "{} holds an interrupted write: run `imgprep undo {}` (rolls it back) first",
                p.display(),
                image_path.display()
            ),
        )
        .into());
    }
    if jpath.exists() && !opts.replace_journal {
        return Err(Refused::new(
            Refusal::PendingJournal,
            format!(
                "{} holds the undo information of an earlier write: run `imgprep undo {}` first, \
                 or pass --replace-journal to give that undo up",
                jpath.display(),
                image_path.display()
            ),
        )
        .into());
    }
    let report = journal::apply(
        image_path,
        &edit.patches,
        &edit.allowed,
        &jpath,
        &ApplyOptions {
            replace: opts.replace_journal,
            fault: None,
        },
    )
    .with_context(|| format!("writing {}", image_path.display()))?;
    // Verify through a fresh open: map the hive again through NTFS and read back its base
    // block and every changed range from the image; they must equal the bytes meant.
    let img = WindowsImage::open(image_path, open)?;
    let path = format!(r"{}\{hive_name}", crate::image::CONFIG_DIR);
    let fx = img
        .volume()
        .file_extents(&path)
        .map_err(|e| anyhow!("verification: {path}: {e}"))?;
    let base_len = 4096u64.min(edit.new_hive.len() as u64);
    let base_block = 0..base_len;
    for r in std::iter::once(base_block).chain(edit.hive_changes.iter().cloned()) {
        let mut at = r.start as usize;
        for (disk, len) in fx
            .map_range(r.clone())
            .map_err(|e| anyhow!("verification: {path}: {e}"))?
        {
            let mut buf = vec![0u8; len as usize];
            diskimg::ReadAt::read_exact_at(img.disk().file(), &mut buf, disk)
                .with_context(|| format!("verification: reading back {}", image_path.display()))?;
            if buf[..] != edit.new_hive[at..at + len as usize] {
                anyhow::bail!(
                    "verification failed: {path} bytes {}..{} read back from {} differ from \
                     those written; run `imgprep undo {}`",
                    at,
                    at + len as usize,
                    image_path.display(),
                    image_path.display()
                );
            }
            at += len as usize;
        }
    }
    let base = BaseBlock::parse(&edit.new_hive)?;
    if base.is_dirty() {
        anyhow::bail!("verification: the written {path} is not clean");
    }
    Ok(report)
}
