// SPDX-License-Identifier: MIT OR Apache-2.0
//! Transaction-log replay, following the rules Windows applies when it loads a dirty hive.
//!
//! A hive is *dirty* when its base-block checksum is wrong or its two sequence numbers differ.
//! Windows then replays the hive's transaction logs (`<hive>.LOG1`, `<hive>.LOG2`, on XP
//! `<hive>.LOG`) over the primary file before using it. Two formats exist:
//!
//! * **old** (NT .. Windows 8, file type 1 or 2): a 512-byte base-block copy, a `DIRT` sector
//!   with one bit per 512-byte page of hive-bins data, then the dirty pages in bitmap order.
//!   A log is valid when its base block has a good checksum and equal sequence numbers; it is
//!   eligible when its last-written timestamp equals the primary's (or, when the primary base
//!   block is bad, is not older than the first hive bin's timestamp).
//! * **new** (Windows 8.1 and later, file type 6): a 512-byte base-block copy followed by
//!   `HvLE` entries, each protected by two Marvin32 hashes ([`crate::marvin`]). Entries are
//!   applied in strictly consecutive sequence order; LOG1 and LOG2 are ordered by their
//!   base-block sequence numbers (wrap-around aware) and the later log continues the earlier
//!   one only if it starts exactly one after the last applied entry. Replay stops at the first
//!   gap, bad hash or malformed entry.
//!
//! After a replay the image is written clean the way Windows 10 writes it: the primary base
//! block (or, if it was bad, the one recovered from the log) with both sequence numbers set to
//! [`max_sequence`]` + 1`, the hive-bins size of the last applied entry, flag bit 0 from the
//! last entry (new format) and a fresh checksum. This reproduces byte for byte the file
//! Windows 10 wrote after recovering yarp's `NewDirtyHive1` (see `docs/transaction-logs.md`).
//!
//! Nothing here panics on hostile input: every offset is checked, sizes are bounded by
//! [`MAX_HBINS_SIZE`] and the log's own length.

use std::io;
use std::path::Path;

use crate::base::{checksum, fix_checksum, le32, le64, off, BaseBlock, BASE_BLOCK_SIZE};
use crate::error::{Error, Result};
use crate::marvin::registry_hash;

/// Size of the base-block copy at the start of a log (512 bytes × clustering factor 1).
pub const LOG_BASE_BLOCK_SIZE: usize = 512;
/// Size of an `HvLE` entry header (signature .. Hash-2).
pub const HVLE_HEADER_SIZE: usize = 40;
/// Largest hive-bins data size a log may ask for (1 GiB); larger values make the entry (or the
/// log) invalid, which bounds the memory a hostile log can make the replay allocate.
pub const MAX_HBINS_SIZE: u32 = 0x4000_0000;
/// Most `HvLE` entries read from one log (a log of 1 GiB of minimal entries would have 2 M).
pub const MAX_ENTRIES: usize = 1 << 21;

/// File type of an old-format log written by XP and later.
pub const FILE_TYPE_LOG_OLD: u32 = 1;
/// File type of an old-format log written by NT 3.x .. 2000.
pub const FILE_TYPE_LOG_VERY_OLD: u32 = 2;
/// File type of a new-format (`HvLE`) log.
pub const FILE_TYPE_LOG_NEW: u32 = 6;

const HBIN_ALIGN: u32 = 4096;
const SECTOR: usize = 512;

/// Which log format a log (or a replay) uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum LogFormat {
    /// Nothing was replayed / the file is not a usable log.
    None,
    /// Old format: base block + `DIRT` bitmap + 512-byte pages.
    Old,
    /// New format: `HvLE` entries.
    New,
}

/// One dirty range of hive-bins data inside a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PageRef {
    /// Offset in the hive-bins data (file offset − 4096).
    pub offset: u32,
    /// Length in bytes.
    pub size: u32,
    /// Where the bytes start in the log file.
    pub log_offset: u64,
}

/// One structurally valid log entry (for the old format: the whole dirty set of the log).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EntryInfo {
    /// Offset of the entry in the log file (old format: of the `DIRT` sector).
    pub log_offset: u64,
    /// Entry size in bytes (old format: bytes from the `DIRT` sector to the last page).
    pub size: u32,
    /// Entry flags (new format; bit 0 = base-block flag bit 0). Old format: the log base
    /// block's flags.
    pub flags: u32,
    /// Sequence number (old format: the log base block's primary sequence number).
    pub seq: u32,
    /// Hive-bins data size after this entry.
    pub hbins_size: u32,
    /// The dirty ranges, in log order.
    pub pages: Vec<PageRef>,
}

impl EntryInfo {
    /// Total dirty bytes of the entry.
    pub fn dirty_bytes(&self) -> u64 {
        self.pages.iter().map(|p| u64::from(p.size)).sum()
    }
}

/// Why scanning the entries of a log stopped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum ScanStop {
    /// The log ended exactly after the last entry (or the old-format log was read whole).
    EndOfFile,
    /// No `HvLE` signature at this offset: the normal end of the entries (the rest of the
    /// file is unused, usually zeros or older entries).
    NoSignature {
        /// Offset in the log file.
        log_offset: u64,
    },
    /// A malformed or corrupt entry (bad size, bad hash, out-of-range page...); everything
    /// from here on is ignored, as Windows does.
    Invalid {
        /// Offset in the log file.
        log_offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// What [`scan_log`] found in one log file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogScan {
    /// Format, from the base block's file type ([`LogFormat::None`] when the file is empty or
    /// not a log).
    pub format: LogFormat,
    /// The parsed base block (None when the file is too short or lacks `regf`).
    pub base: Option<BaseBlock>,
    /// Whether the base block is usable (checksum right; old format: also seq1 == seq2,
    /// clustering factor 1 and a sane hive-bins size).
    pub base_valid: bool,
    /// Why the log as a whole is unusable, if it is.
    pub problem: Option<String>,
    /// The structurally valid entries, in file order (hashes verified). Their sequence
    /// numbers are not yet checked for continuity.
    pub entries: Vec<EntryInfo>,
    /// Why the entry scan stopped.
    pub stop: ScanStop,
}

/// One log entry that [`replay`] applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppliedEntry {
    /// Name of the log it came from (as passed to [`replay`]).
    pub log: String,
    /// Its sequence number (old format: the log's sequence number).
    pub seq: u32,
    /// Number of dirty ranges written.
    pub pages: u32,
    /// Number of bytes written.
    pub bytes: u64,
    /// Hive-bins data size after the entry.
    pub hbins_size: u32,
}

/// The result of [`replay`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// The recovered, clean hive image (base block + hive bins + any slack the primary had).
    pub data: Vec<u8>,
    /// The entries applied, in order (empty when the primary was clean or nothing was
    /// eligible).
    pub applied: Vec<AppliedEntry>,
    /// The highest sequence number seen ([`max_sequence`]).
    pub max_seq_seen: u32,
    /// The sequence number written into both fields of the result (`max_seq_seen + 1`,
    /// wrapping); equal to the primary's when the primary was clean.
    pub new_seq: u32,
    /// Which format was replayed.
    pub format: LogFormat,
    /// Whether the base block was taken from a log because the primary's was bad.
    pub base_block_recovered: bool,
    /// Human-readable remarks (ignored logs and why, where replay stopped...).
    pub notes: Vec<String>,
}

impl Replay {
    /// Whether anything was replayed.
    pub fn changed(&self) -> bool {
        !self.applied.is_empty() || self.base_block_recovered
    }
}

/// Serial-number comparison: `a` is at or after `b` (wrap-around aware, like Windows' and
/// yarp's ordering of the two logs).
fn seq_at_or_after(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) <= 0x7FFF_FFFF
}

/// The later of two sequence numbers in serial-number arithmetic.
fn serial_max(a: u32, b: u32) -> u32 {
    if seq_at_or_after(a, b) {
        a
    } else {
        b
    }
}

fn round_up(v: usize, to: usize) -> Option<usize> {
    v.checked_add(to - 1).map(|x| x / to * to)
}

fn invalid(log_offset: usize, reason: String) -> ScanStop {
    ScanStop::Invalid {
        log_offset: log_offset as u64,
        reason,
    }
}

fn hbins_size_ok(size: u32) -> bool {
    size != 0 && size.is_multiple_of(HBIN_ALIGN) && size <= MAX_HBINS_SIZE
}

/// Parses one `HvLE` entry at `pos`; `Err` is the reason the scan stops there.
fn parse_hvle(data: &[u8], pos: usize) -> std::result::Result<EntryInfo, ScanStop> {
    let hdr = match data.get(pos..).and_then(|d| d.get(..HVLE_HEADER_SIZE)) {
        Some(h) => h,
        None if pos >= data.len() => return Err(ScanStop::EndOfFile),
        None => {
            return Err(if data.get(pos..pos + 4) == Some(b"HvLE") {
                invalid(pos, "entry header truncated by the end of the file".into())
            } else {
                ScanStop::NoSignature {
                    log_offset: pos as u64,
                }
            })
        }
    };
    if &hdr[0..4] != b"HvLE" {
        return Err(ScanStop::NoSignature {
            log_offset: pos as u64,
        });
    }
    let size = le32(hdr, 4);
    let flags = le32(hdr, 8);
    let seq = le32(hdr, 12);
    let hbins_size = le32(hdr, 16);
    let count = le32(hdr, 20);
    let hash1 = le64(hdr, 24);
    let hash2 = le64(hdr, 32);
    let size_us = size as usize;
    if size_us < SECTOR || !size_us.is_multiple_of(SECTOR) {
        return Err(invalid(
            pos,
            format!("entry size {size:#x} is not a non-zero multiple of 512"),
        ));
    }
    let entry = match pos.checked_add(size_us).and_then(|end| data.get(pos..end)) {
        Some(e) => e,
        None => {
            return Err(invalid(
                pos,
                format!(
                    "entry size {size:#x} reaches past the end of the log ({} bytes)",
                    data.len()
                ),
            ))
        }
    };
    if !hbins_size_ok(hbins_size) {
        return Err(invalid(
            pos,
            format!("hive bins data size {hbins_size:#x} is not a non-zero multiple of 4096 up to {MAX_HBINS_SIZE:#x}"),
        ));
    }
    if count == 0 {
        return Err(invalid(pos, "dirty page count is 0".into()));
    }
    let table_end = (count as usize)
        .checked_mul(8)
        .and_then(|t| t.checked_add(HVLE_HEADER_SIZE))
        .filter(|&e| e <= size_us);
    let Some(table_end) = table_end else {
        return Err(invalid(
            pos,
            format!("{count} dirty page references do not fit the entry size {size:#x}"),
        ));
    };
    if registry_hash(&entry[HVLE_HEADER_SIZE..]) != hash1 {
        return Err(invalid(
            pos,
            "Hash-1 (Marvin32 of the entry body) mismatch".into(),
        ));
    }
    if registry_hash(&entry[..32]) != hash2 {
        return Err(invalid(
            pos,
            "Hash-2 (Marvin32 of the header) mismatch".into(),
        ));
    }
    let mut pages = Vec::with_capacity(count as usize);
    let mut data_pos = table_end;
    for i in 0..count as usize {
        let r = HVLE_HEADER_SIZE + 8 * i;
        let p_off = le32(entry, r);
        let p_size = le32(entry, r + 4);
        if p_size == 0 || !p_off.is_multiple_of(HBIN_ALIGN) || !p_size.is_multiple_of(HBIN_ALIGN) {
            return Err(invalid(
                pos,
                format!("dirty page {i}: offset {p_off:#x} / size {p_size:#x} not 4096-aligned or empty"),
            ));
        }
        if u64::from(p_off) + u64::from(p_size) > u64::from(hbins_size) {
            return Err(invalid(
                pos,
                format!("dirty page {i} ({p_off:#x}+{p_size:#x}) lies beyond the hive bins size {hbins_size:#x}"),
            ));
        }
        let end = data_pos
            .checked_add(p_size as usize)
            .filter(|&e| e <= size_us);
        let Some(end) = end else {
            return Err(invalid(
                pos,
                format!("dirty page {i} data ({p_size:#x} bytes) runs past the entry end"),
            ));
        };
        pages.push(PageRef {
            offset: p_off,
            size: p_size,
            log_offset: (pos + data_pos) as u64,
        });
        data_pos = end;
    }
    Ok(EntryInfo {
        log_offset: pos as u64,
        size,
        flags,
        seq,
        hbins_size,
        pages,
    })
}

fn scan_new(data: &[u8], scan: &mut LogScan) {
    let mut pos = LOG_BASE_BLOCK_SIZE;
    loop {
        if scan.entries.len() >= MAX_ENTRIES {
            scan.stop = invalid(pos, format!("more than {MAX_ENTRIES} entries"));
            return;
        }
        match parse_hvle(data, pos) {
            Ok(e) => {
                pos += e.size as usize;
                scan.entries.push(e);
            }
            Err(stop) => {
                scan.stop = stop;
                return;
            }
        }
    }
}

fn scan_old(data: &[u8], base: &BaseBlock, scan: &mut LogScan) {
    let hbins = base.hbins_size;
    if !hbins_size_ok(hbins) {
        scan.problem = Some(format!(
            "hive bins data size {hbins:#x} in the log base block is not a non-zero multiple of 4096 up to {MAX_HBINS_SIZE:#x}"
        ));
        return;
    }
    if data.get(SECTOR..SECTOR + 4) != Some(b"DIRT") {
        scan.problem = Some("no DIRT signature at offset 0x200".into());
        return;
    }
    let bitmap_len = (hbins / HBIN_ALIGN) as usize; // hbins/512 bits
    let Some(bitmap) = data.get(SECTOR + 4..SECTOR + 4 + bitmap_len) else {
        scan.problem = Some(format!(
            "dirty bitmap ({bitmap_len} bytes) truncated by the end of the log"
        ));
        return;
    };
    let Some(pages_start) = round_up(SECTOR + 4 + bitmap_len, SECTOR) else {
        scan.problem = Some("dirty bitmap size overflows".into());
        return;
    };
    let mut pages: Vec<PageRef> = Vec::new();
    let mut next_log = pages_start;
    for (byte_i, &b) in bitmap.iter().enumerate() {
        if b == 0 {
            continue;
        }
        for bit in 0..8 {
            if b >> bit & 1 == 0 {
                continue;
            }
            let page = (byte_i * 8 + bit) as u32;
            let offset = page * SECTOR as u32; // < hbins <= MAX_HBINS_SIZE
            match pages.last_mut() {
                Some(last)
                    if last.offset + last.size == offset
                        && last.log_offset + u64::from(last.size) == next_log as u64 =>
                {
                    last.size += SECTOR as u32;
                }
                _ => pages.push(PageRef {
                    offset,
                    size: SECTOR as u32,
                    log_offset: next_log as u64,
                }),
            }
            next_log += SECTOR;
        }
    }
    if next_log > data.len() {
        scan.problem = Some(format!(
            "log truncated: its {} dirty pages need {next_log} bytes, the file has {}",
            (next_log - pages_start) / SECTOR,
            data.len()
        ));
        return;
    }
    scan.entries.push(EntryInfo {
        log_offset: SECTOR as u64,
        size: u32::try_from(next_log - SECTOR).unwrap_or(u32::MAX),
        flags: base.flags,
        seq: base.seq1,
        hbins_size: hbins,
        pages,
    });
    scan.stop = ScanStop::EndOfFile;
}

/// Reads a log's base block and its entries (hashes verified) without applying anything.
///
/// Never fails: problems are reported in [`LogScan::problem`] and [`LogScan::stop`].
pub fn scan_log(data: &[u8]) -> LogScan {
    let mut scan = LogScan {
        format: LogFormat::None,
        base: None,
        base_valid: false,
        problem: None,
        entries: Vec::new(),
        stop: ScanStop::EndOfFile,
    };
    if data.is_empty() {
        scan.problem = Some("empty file".into());
        return scan;
    }
    let base = match BaseBlock::parse(data) {
        Ok(b) => b,
        Err(e) => {
            scan.problem = Some(format!("base block: {e}"));
            return scan;
        }
    };
    scan.format = match base.file_type {
        FILE_TYPE_LOG_NEW => LogFormat::New,
        FILE_TYPE_LOG_OLD | FILE_TYPE_LOG_VERY_OLD => LogFormat::Old,
        t => {
            scan.problem = Some(format!(
                "file type {t} is not a transaction log (1, 2 or 6)"
            ));
            scan.base = Some(base);
            return scan;
        }
    };
    scan.base_valid = base.checksum_ok;
    if !base.checksum_ok {
        scan.problem = Some("base block checksum is wrong".into());
    } else if scan.format == LogFormat::Old {
        if base.seq1 != base.seq2 {
            scan.base_valid = false;
            scan.problem = Some(format!(
                "base block sequence numbers differ ({}/{}): the log itself was not completely written",
                base.seq1, base.seq2
            ));
        } else if base.clustering != 1 {
            scan.base_valid = false;
            scan.problem = Some(format!(
                "clustering factor {} is not supported (only 1)",
                base.clustering
            ));
        }
    }
    if scan.base_valid {
        match scan.format {
            LogFormat::New => scan_new(data, &mut scan),
            _ => {
                scan_old(data, &base, &mut scan);
                if scan.problem.is_some() {
                    scan.base_valid = false;
                }
            }
        }
    }
    scan.base = Some(base);
    scan
}

/// The highest sequence number anywhere in a hive and its logs: the primary's seq1/seq2 (when
/// its checksum is right), every log base block's seq1/seq2 (when its checksum is right) and
/// every hash-verified `HvLE` entry.
///
/// An editor that writes the hive clean must use this value + 1 (regf.md §10 rule 3), so that
/// no stale log entry can ever look newer than the primary. The maximum is taken in
/// serial-number arithmetic (wrap-around aware: after 0xFFFFFFFF comes 0), which is
/// meaningful while all numbers lie within 2^31 of each other; 0 when nothing is readable.
pub fn max_sequence(primary: &[u8], logs: &[(&str, &[u8])]) -> u32 {
    let mut max: Option<u32> = None;
    if let Ok(b) = BaseBlock::parse(primary) {
        if b.checksum_ok {
            max = Some(serial_max(b.seq1, b.seq2));
        }
    }
    for (_, data) in logs {
        max = fold_scan_max(max, &scan_log(data));
    }
    max.unwrap_or(0)
}

fn fold_max(max: Option<u32>, v: u32) -> Option<u32> {
    Some(max.map_or(v, |m| serial_max(m, v)))
}

fn fold_scan_max(mut max: Option<u32>, scan: &LogScan) -> Option<u32> {
    if let Some(b) = &scan.base {
        if b.checksum_ok && scan.format != LogFormat::None {
            max = fold_max(fold_max(max, b.seq1), b.seq2);
        }
    }
    if scan.format == LogFormat::New {
        for e in &scan.entries {
            max = fold_max(max, e.seq);
        }
    }
    max
}

struct Scanned<'a> {
    name: &'a str,
    data: &'a [u8],
    scan: LogScan,
}

impl Scanned<'_> {
    fn base(&self) -> Option<&BaseBlock> {
        self.scan.base.as_ref()
    }
}

/// Most problems [`check_bins`] reports before it stops.
pub const MAX_BIN_PROBLEMS: usize = 8;

/// Walks the hive-bins headers of a (replayed) image and describes what is wrong: missing
/// `hbin` signature, wrong offset field, size not a multiple of 4096 or reaching past
/// `hbins_size`. Windows replaces such bins by empty dummy bins when it loads the hive; this
/// function only reports them (at most [`MAX_BIN_PROBLEMS`], then stops walking).
pub fn check_bins(img: &[u8], hbins_size: u32) -> Vec<String> {
    let mut problems = Vec::new();
    let mut pos: u32 = 0;
    while pos < hbins_size && problems.len() < MAX_BIN_PROBLEMS {
        let at = BASE_BLOCK_SIZE + pos as usize;
        let Some(h) = img.get(at..at + 32) else {
            problems.push(format!(
                "hive bins end at {pos:#x}: the image is shorter than the hive bins size {hbins_size:#x}"
            ));
            break;
        };
        let size = le32(h, 8);
        if &h[0..4] != b"hbin" {
            problems.push(format!("no hbin signature at offset {pos:#x}"));
            pos += HBIN_ALIGN; // resynchronise on the next page
            continue;
        }
        if le32(h, 4) != pos {
            problems.push(format!("hbin at {pos:#x} records offset {:#x}", le32(h, 4)));
        }
        if size == 0
            || !size.is_multiple_of(HBIN_ALIGN)
            || u64::from(pos) + u64::from(size) > u64::from(hbins_size)
        {
            problems.push(format!(
                "hbin at {pos:#x} has size {size:#x} (not a multiple of 4096 inside {hbins_size:#x})"
            ));
            pos += HBIN_ALIGN;
            continue;
        }
        pos += size;
    }
    problems
}

/// Writes `pages` of `log` into `img`, growing it to `4096 + hbins_size` first.
fn apply_pages(img: &mut Vec<u8>, log: &[u8], hbins_size: u32, pages: &[PageRef]) -> Result<u64> {
    let need = BASE_BLOCK_SIZE + hbins_size as usize;
    if img.len() < need {
        img.resize(need, 0);
    }
    let mut bytes = 0u64;
    for p in pages {
        let src = usize::try_from(p.log_offset)
            .ok()
            .and_then(|s| Some(s..s.checked_add(p.size as usize)?))
            .and_then(|r| log.get(r));
        let dst_start = BASE_BLOCK_SIZE + p.offset as usize;
        let dst = img.get_mut(dst_start..dst_start + p.size as usize);
        match (src, dst) {
            (Some(s), Some(d)) => d.copy_from_slice(s),
            _ => {
                return Err(Error::Log {
                    log: String::new(),
                    reason: format!(
                        "dirty page {:#x}+{:#x} out of range (internal check)",
                        p.offset, p.size
                    ),
                })
            }
        }
        bytes += u64::from(p.size);
    }
    Ok(bytes)
}

/// Replays the transaction logs of a hive the way Windows does and returns the clean result.
///
/// `primary` is the whole primary file; `logs` are `(name, bytes)` pairs, typically LOG1 and
/// LOG2 (their order does not matter; names only appear in reports). Empty and unusable logs
/// are skipped with a note.
///
/// * A clean primary (good checksum, seq1 == seq2) is returned unchanged ([`LogFormat::None`]).
/// * Otherwise the new-format logs are replayed if there are any, else the old-format ones.
/// * When the primary's base block is bad, it is recovered from the log that is used.
/// * When nothing is eligible but the primary's base block is good, the primary's own data is
///   written clean (this is what Windows does: it loads the stale primary); check
///   [`Replay::applied`] if that is not acceptable.
///
/// Errors: the primary's base block is bad and no log can replace it, or the primary's base
/// block is valid but not a primary (file type ≠ 0).
pub fn replay(primary: &[u8], logs: &[(&str, &[u8])]) -> Result<Replay> {
    let pbase = BaseBlock::parse(primary).ok();
    let primary_valid = pbase.as_ref().is_some_and(|b| b.checksum_ok);
    if let Some(b) = pbase.as_ref().filter(|b| b.checksum_ok) {
        if b.file_type != 0 {
            return Err(Error::BaseBlock(format!(
                "file type {} is not a primary hive (0); was a log passed as the primary?",
                b.file_type
            )));
        }
        if b.seq1 == b.seq2 {
            return Ok(Replay {
                data: primary.to_vec(),
                applied: Vec::new(),
                max_seq_seen: max_sequence(primary, logs),
                new_seq: b.seq1,
                format: LogFormat::None,
                base_block_recovered: false,
                notes: vec![format!(
                    "primary is clean (sequence numbers {}/{}): logs ignored, as Windows does",
                    b.seq1, b.seq2
                )],
            });
        }
    }

    let mut notes = Vec::new();
    match &pbase {
        None => notes.push("primary base block unreadable (short or no regf signature)".into()),
        Some(b) if !b.checksum_ok => notes.push(format!(
            "primary base block checksum is wrong (stored {:#010x}, computed {:#010x}): base block to be recovered from a log",
            b.checksum,
            checksum(primary)
        )),
        Some(b) => notes.push(format!(
            "primary is dirty (sequence numbers {}/{})",
            b.seq1, b.seq2
        )),
    }

    let mut scanned: Vec<Scanned<'_>> = Vec::new();
    let mut max_seq: Option<u32> = None;
    if let Some(b) = pbase.as_ref().filter(|b| b.checksum_ok) {
        max_seq = Some(serial_max(b.seq1, b.seq2));
    }
    for &(name, data) in logs {
        let scan = scan_log(data);
        max_seq = fold_scan_max(max_seq, &scan);
        if let Some(p) = &scan.problem {
            notes.push(format!("{name}: ignored: {p}"));
        } else if let ScanStop::Invalid { log_offset, reason } = &scan.stop {
            notes.push(format!(
                "{name}: entries end at log offset {log_offset:#x}: {reason}"
            ));
        }
        if scan.base_valid && scan.format != LogFormat::None {
            scanned.push(Scanned { name, data, scan });
        }
    }

    let new_logs: Vec<&Scanned<'_>> = scanned
        .iter()
        .filter(|s| s.scan.format == LogFormat::New)
        .collect();
    let old_logs: Vec<&Scanned<'_>> = scanned
        .iter()
        .filter(|s| s.scan.format == LogFormat::Old)
        .collect();

    let mut img = primary.to_vec();
    let mut applied = Vec::new();
    let mut format = LogFormat::None;
    let mut recovered_from: Option<&Scanned<'_>> = None;
    let mut hbins_size = pbase.as_ref().map(|b| b.hbins_size);
    let mut flags = pbase.as_ref().map(|b| b.flags);

    if !new_logs.is_empty() {
        if !old_logs.is_empty() {
            notes.push("old-format logs ignored: new-format logs present".into());
        }
        // Order by base-block sequence number, wrap-around aware (stable: LOG1 before LOG2
        // on a tie).
        let mut order = new_logs.clone();
        let reference = order[0]
            .base()
            .map_or(0, |b| b.seq1)
            .wrapping_sub(0x8000_0000);
        order.sort_by_key(|s| s.base().map_or(0, |b| b.seq1).wrapping_sub(reference));

        let starts_right = |s: &Scanned<'_>| {
            let base_seq = s.base().map_or(0, |b| b.seq1);
            s.scan.entries.first().is_some_and(|e| e.seq == base_seq)
        };
        let mut chain: Vec<&Scanned<'_>> = Vec::new();
        if primary_valid {
            let pseq2 = pbase.as_ref().map_or(0, |b| b.seq2);
            for s in &order {
                let base_seq = s.base().map_or(0, |b| b.seq1);
                if chain.is_empty() {
                    if !seq_at_or_after(base_seq, pseq2) {
                        notes.push(format!(
                            "{}: not eligible: starts at sequence {base_seq}, before the primary's secondary sequence number {pseq2}",
                            s.name
                        ));
                    } else if !starts_right(s) {
                        notes.push(format!(
                            "{}: not eligible: no valid entry with sequence {base_seq}",
                            s.name
                        ));
                    } else {
                        chain.push(s);
                    }
                } else {
                    chain.push(s); // continuation checked while applying
                }
            }
        } else if let Some(s) = order.iter().rev().find(|s| starts_right(s)) {
            // Invalid primary base block: only the log with the latest entries is used.
            chain.push(s);
            recovered_from = Some(s);
            for other in order.iter().filter(|o| o.name != s.name) {
                notes.push(format!(
                    "{}: not used: the primary base block is bad, so only the log with the latest entries ({}) applies",
                    other.name, s.name
                ));
            }
        }

        if let Some(b) = recovered_from.and_then(|s| s.base()) {
            flags = Some(b.flags);
        }
        let mut last: Option<u32> = None;
        'logs: for s in chain {
            let base_seq = s.base().map_or(0, |b| b.seq1);
            if let Some(l) = last {
                if base_seq != l.wrapping_add(1) {
                    notes.push(format!(
                        "{}: does not continue the replay (starts at {base_seq}, expected {})",
                        s.name,
                        l.wrapping_add(1)
                    ));
                    break;
                }
            }
            let mut expect = base_seq;
            for e in &s.scan.entries {
                if e.seq != expect {
                    notes.push(format!(
                        "{}: replay stops at log offset {:#x}: sequence {} where {expect} was expected",
                        s.name, e.log_offset, e.seq
                    ));
                    break 'logs;
                }
                let bytes = apply_pages(&mut img, s.data, e.hbins_size, &e.pages).map_err(
                    |err| match err {
                        Error::Log { reason, .. } => Error::Log {
                            log: s.name.to_string(),
                            reason,
                        },
                        other => other,
                    },
                )?;
                hbins_size = Some(e.hbins_size);
                flags = Some((flags.unwrap_or(0) & !1) | (e.flags & 1));
                applied.push(AppliedEntry {
                    log: s.name.to_string(),
                    seq: e.seq,
                    pages: e.pages.len() as u32,
                    bytes,
                    hbins_size: e.hbins_size,
                });
                last = Some(e.seq);
                expect = e.seq.wrapping_add(1);
            }
        }
        if !applied.is_empty() {
            format = LogFormat::New;
        }
    } else if !old_logs.is_empty() {
        // Old format: the log whose timestamp matches; with a bad primary base block, a log
        // not older than the first hive bin's timestamp (the base block's backup).
        let target_ts = if primary_valid {
            pbase.as_ref().map(|b| b.timestamp)
        } else if primary.get(BASE_BLOCK_SIZE..BASE_BLOCK_SIZE + 4) == Some(b"hbin") {
            primary
                .get(BASE_BLOCK_SIZE + 20..BASE_BLOCK_SIZE + 28)
                .map(|t| le64(t, 0))
        } else {
            None
        };
        let mut best: Option<&Scanned<'_>> = None;
        for s in &old_logs {
            let Some(b) = s.base() else { continue };
            let ok = match target_ts {
                Some(t) if primary_valid => b.timestamp == t,
                Some(t) => b.timestamp >= t,
                None => true,
            };
            if !ok {
                notes.push(format!(
                    "{}: not eligible: log timestamp {:#x} does not match the primary's {:#x}",
                    s.name,
                    b.timestamp,
                    target_ts.unwrap_or(0)
                ));
                continue;
            }
            let better = match best.and_then(|x| x.base()) {
                None => true,
                Some(bb) => {
                    b.timestamp > bb.timestamp
                        || (b.timestamp == bb.timestamp && !seq_at_or_after(bb.seq1, b.seq1))
                }
            };
            if better {
                best = Some(s);
            }
        }
        if let Some(s) = best {
            if let (Some(e), Some(b)) = (s.scan.entries.first(), s.base()) {
                let bytes = apply_pages(&mut img, s.data, e.hbins_size, &e.pages).map_err(
                    |err| match err {
                        Error::Log { reason, .. } => Error::Log {
                            log: s.name.to_string(),
                            reason,
                        },
                        other => other,
                    },
                )?;
                hbins_size = Some(e.hbins_size);
                flags = Some(b.flags);
                applied.push(AppliedEntry {
                    log: s.name.to_string(),
                    seq: e.seq,
                    pages: e.pages.len() as u32,
                    bytes,
                    hbins_size: e.hbins_size,
                });
                format = LogFormat::Old;
                if !primary_valid {
                    recovered_from = Some(s);
                }
            }
        }
    }

    // Base block of the result.
    let mut base_block_recovered = false;
    if img.len() < BASE_BLOCK_SIZE {
        img.resize(BASE_BLOCK_SIZE, 0);
    }
    if !primary_valid {
        let Some(src) = recovered_from.filter(|_| !applied.is_empty()) else {
            return Err(Error::Log {
                log: logs.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
                reason: "the primary base block is bad and no transaction log can recover it"
                    .into(),
            });
        };
        let Some(log_base) = src.data.get(..LOG_BASE_BLOCK_SIZE) else {
            return Err(Error::Log {
                log: src.name.to_string(),
                reason: "base block truncated (internal check)".into(),
            });
        };
        img[..LOG_BASE_BLOCK_SIZE].copy_from_slice(log_base);
        base_block_recovered = true;
        notes.push(format!("base block recovered from {}", src.name));
    }
    let hb = hbins_size.unwrap_or(0);
    for p in check_bins(&img, hb) {
        notes.push(format!("after replay: {p}"));
    }
    if applied.is_empty() {
        notes.push(
            "no log entry applied: the primary's own (stale) data is written clean, as Windows would load it"
                .into(),
        );
    }
    let hbins_size = hbins_size.unwrap_or(0);
    // Only sizes that come from an applied entry / log (checked against MAX_HBINS_SIZE) make
    // the image grow; a stale primary's own size field is not trusted for an allocation.
    let need = BASE_BLOCK_SIZE + hbins_size as usize;
    if img.len() < need && !applied.is_empty() {
        img.resize(need, 0);
    }
    let max_seq = max_seq.unwrap_or(0);
    let new_seq = max_seq.wrapping_add(1);
    img[off::SEQ1..off::SEQ1 + 4].copy_from_slice(&new_seq.to_le_bytes());
    img[off::SEQ2..off::SEQ2 + 4].copy_from_slice(&new_seq.to_le_bytes());
    img[off::FILE_TYPE..off::FILE_TYPE + 4].copy_from_slice(&0u32.to_le_bytes());
    img[off::HBINS_SIZE..off::HBINS_SIZE + 4].copy_from_slice(&hbins_size.to_le_bytes());
    if let Some(f) = flags {
        img[off::FLAGS..off::FLAGS + 4].copy_from_slice(&f.to_le_bytes());
    }
    fix_checksum(&mut img);
    if let Some(last) = applied.last() {
        notes.push(format!(
            "applied {} entr{} up to sequence {}; written clean as {new_seq}/{new_seq}",
            applied.len(),
            if applied.len() == 1 { "y" } else { "ies" },
            last.seq
        ));
    }
    Ok(Replay {
        data: img,
        applied,
        max_seq_seen: max_seq,
        new_seq,
        format,
        base_block_recovered,
        notes,
    })
}

/// Loads the transaction logs that sit beside a primary hive: `<file>.LOG1`, `<file>.LOG2`
/// and `<file>.LOG`, matching the suffix case-insensitively (Windows images have e.g.
/// `SYSTEM.LOG1` or `system.log1`). Returns `(file name, bytes)` pairs in LOG1, LOG2, LOG order;
/// missing logs are simply absent.
pub fn read_logs_beside(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let Some(file_name) = path.file_name() else {
        return Ok(Vec::new());
    };
    let base = file_name.to_string_lossy().to_lowercase();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut found: [Option<(String, std::path::PathBuf)>; 3] = [None, None, None];
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let lower = name.to_lowercase();
        let Some(suffix) = lower.strip_prefix(&base) else {
            continue;
        };
        let slot = match suffix {
            ".log1" => 0,
            ".log2" => 1,
            ".log" => 2,
            _ => continue,
        };
        // Prefer the exact-case name if several spellings exist.
        let exact = name.strip_prefix(&*file_name.to_string_lossy()).is_some();
        if found[slot].is_none() || exact {
            found[slot] = Some((name, entry.path()));
        }
    }
    let mut out = Vec::new();
    for (name, p) in found.into_iter().flatten() {
        if p.is_file() {
            out.push((name, std::fs::read(&p)?));
        }
    }
    Ok(out)
}

/// Reads the hive at `path` and the logs beside it ([`read_logs_beside`]) and replays them
/// ([`replay`]). The files are not modified; write [`Replay::data`] where you want it.
pub fn replay_beside(path: &Path) -> Result<Replay> {
    let primary = std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let logs = read_logs_beside(path)
        .map_err(|e| Error::Io(format!("logs beside {}: {e}", path.display())))?;
    let refs: Vec<(&str, &[u8])> = logs
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    replay(&primary, &refs)
}

/// Builds the 512-byte base-block copy that starts a new-format log: the first 512 bytes of
/// `primary_base` with both sequence numbers = `seq`, file type 6, the given hive-bins size and
/// a fresh checksum.
pub fn hvle_log_base_block(primary_base: &[u8], seq: u32, hbins_size: u32) -> Result<Vec<u8>> {
    let Some(src) = primary_base.get(..LOG_BASE_BLOCK_SIZE) else {
        return Err(Error::Invalid(format!(
            "base block needs {LOG_BASE_BLOCK_SIZE} bytes, got {}",
            primary_base.len()
        )));
    };
    if &src[..4] != b"regf" {
        return Err(Error::Invalid("base block lacks the regf signature".into()));
    }
    let mut b = src.to_vec();
    b[off::SEQ1..off::SEQ1 + 4].copy_from_slice(&seq.to_le_bytes());
    b[off::SEQ2..off::SEQ2 + 4].copy_from_slice(&seq.to_le_bytes());
    b[off::FILE_TYPE..off::FILE_TYPE + 4].copy_from_slice(&FILE_TYPE_LOG_NEW.to_le_bytes());
    b[off::HBINS_SIZE..off::HBINS_SIZE + 4].copy_from_slice(&hbins_size.to_le_bytes());
    fix_checksum(&mut b);
    Ok(b)
}

/// Builds one `HvLE` entry in Windows' layout: header, page table, page bytes, zero padding
/// to a multiple of 512, Hash-1 and Hash-2 filled in.
///
/// `pages` are `(offset in hive-bins data, bytes)`; offsets and lengths must be non-zero
/// multiples of 4096 (lengths) / multiples of 4096 (offsets) inside `hbins_size`.
pub fn hvle_entry(
    seq: u32,
    hbins_size: u32,
    flags: u32,
    pages: &[(u32, &[u8])],
) -> Result<Vec<u8>> {
    if !hbins_size_ok(hbins_size) {
        return Err(Error::Invalid(format!(
            "hive bins size {hbins_size:#x} is not a non-zero multiple of 4096 up to {MAX_HBINS_SIZE:#x}"
        )));
    }
    if pages.is_empty() {
        return Err(Error::Invalid(
            "an HvLE entry needs at least one page".into(),
        ));
    }
    let mut out = vec![0u8; HVLE_HEADER_SIZE];
    let mut body = Vec::new();
    for (i, (o, bytes)) in pages.iter().enumerate() {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        if len == 0
            || !o.is_multiple_of(HBIN_ALIGN)
            || !len.is_multiple_of(HBIN_ALIGN)
            || u64::from(*o) + u64::from(len) > u64::from(hbins_size)
        {
            return Err(Error::Invalid(format!(
                "page {i}: offset {o:#x} size {len:#x} not 4096-aligned or outside the hive bins ({hbins_size:#x})"
            )));
        }
        out.extend_from_slice(&o.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(bytes);
    }
    out.extend_from_slice(&body);
    let Some(size) = round_up(out.len(), SECTOR).filter(|&s| s <= u32::MAX as usize) else {
        return Err(Error::Invalid("entry too large".into()));
    };
    out.resize(size, 0);
    out[0..4].copy_from_slice(b"HvLE");
    out[4..8].copy_from_slice(&(size as u32).to_le_bytes());
    out[8..12].copy_from_slice(&(flags & 1).to_le_bytes());
    out[12..16].copy_from_slice(&seq.to_le_bytes());
    out[16..20].copy_from_slice(&hbins_size.to_le_bytes());
    out[20..24].copy_from_slice(&(pages.len() as u32).to_le_bytes());
    let h1 = registry_hash(&out[HVLE_HEADER_SIZE..]);
    out[24..32].copy_from_slice(&h1.to_le_bytes());
    let h2 = registry_hash(&out[..32]);
    out[32..40].copy_from_slice(&h2.to_le_bytes());
    Ok(out)
}

/// Builds a complete new-format log holding one entry: [`hvle_log_base_block`] +
/// [`hvle_entry`]. This is the log a journaled writer puts in `.LOG1` before touching the
/// primary (regf.md §10 rule 5b): `seq` = the new sequence number, `pages` = every dirty
/// 4 KiB page of the new image. The entry's flag bit 0 is copied from the base block.
pub fn write_hvle_log(
    primary_base: &[u8],
    seq: u32,
    hbins_size: u32,
    pages: &[(u32, &[u8])],
) -> Result<Vec<u8>> {
    let mut log = hvle_log_base_block(primary_base, seq, hbins_size)?;
    let flags = le32(&log, off::FLAGS);
    log.extend_from_slice(&hvle_entry(seq, hbins_size, flags, pages)?);
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_comparison_wraps() {
        assert!(seq_at_or_after(5, 5));
        assert!(seq_at_or_after(6, 5));
        assert!(!seq_at_or_after(4, 5));
        assert!(seq_at_or_after(1, 0xFFFF_FFF0));
        assert!(!seq_at_or_after(0xFFFF_FFF0, 1));
    }

    #[test]
    fn entry_round_trip() {
        let page = vec![0xABu8; 4096];
        let e = hvle_entry(7, 8192, 1, &[(4096, &page)]).unwrap();
        assert_eq!(e.len() % 512, 0);
        let mut log = vec![0u8; 512];
        log.extend_from_slice(&e);
        let info = parse_hvle(&log, 512).unwrap();
        assert_eq!(info.seq, 7);
        assert_eq!(info.flags, 1);
        assert_eq!(info.pages.len(), 1);
        assert_eq!(info.pages[0].offset, 4096);
        assert_eq!(info.pages[0].log_offset, 512 + 48);
        // any flipped byte is caught by a hash or a structural check
        for i in 0..log.len() - 512 {
            let mut bad = log.clone();
            bad[512 + i] ^= 0x01;
            assert!(parse_hvle(&bad, 512).is_err(), "byte {i}");
        }
    }

    #[test]
    fn entry_builder_rejects_bad_pages() {
        let page = vec![0u8; 4096];
        assert!(hvle_entry(1, 4096, 0, &[(4096, &page)]).is_err());
        assert!(hvle_entry(1, 4096, 0, &[(0, &page[..100])]).is_err());
        assert!(hvle_entry(1, 4095, 0, &[(0, &page)]).is_err());
        assert!(hvle_entry(1, 4096, 0, &[]).is_err());
    }

    #[test]
    fn scan_reports_empty_and_garbage() {
        assert_eq!(scan_log(&[]).format, LogFormat::None);
        assert!(scan_log(&[1, 2, 3]).problem.is_some());
        let mut b = vec![0u8; 512];
        b[..4].copy_from_slice(b"regf");
        b[off::FILE_TYPE] = 6;
        let s = scan_log(&b);
        assert!(!s.base_valid, "bad checksum");
        fix_checksum(&mut b);
        let s = scan_log(&b);
        assert!(s.base_valid);
        assert_eq!(s.stop, ScanStop::EndOfFile);
    }
}
