// SPDX-License-Identifier: MIT OR Apache-2.0
//! A small read-only NTFS reader: exactly what an in-place file edit on a raw disk image needs.
//!
//! Getting started:
//! 1. [`Volume::open`] with the image (anything [`ReadAt`]) and the partition's byte range.
//! 2. [`Volume::find`] a path (`\` or `/`, case-insensitive via the volume's `$UpCase`) → MFT
//!    record number.
//! 3. [`Volume::data_extents`] → [`FileExtents`]: sizes, VDL, flags and the absolute disk
//!    extents of the unnamed `$DATA` (attribute lists over several MFT records handled).
//! 4. [`FileExtents::check_editable`] before patching, [`FileExtents::map_range`] to turn a file
//!    byte range into disk byte ranges.
//! 5. [`Volume::safety`] for the dirty flag, `$LogFile` and `hiberfil.sys` state;
//!    [`Volume::used_clusters`] for a copier that skips free clusters.
//!
//! Every structure is read through [`ReadAt`] with absolute offsets; all loops and allocations
//! are bounded by the named limits below, and nothing panics on hostile input.
//! Formats and decisions: `docs/diskimg-ntfs.md`.

mod index;
mod safety;

use std::collections::BTreeMap;
use std::ops::Range;

use crate::{Error, ReadAt, Result};

pub use safety::{
    classify_hiber, HiberMagic, HiberState, LogFileState, LogState, Safety, MAX_RESTART_READ,
    RESTART_VOLUME_IS_CLEAN, VOLUME_IS_DIRTY,
};

/// Largest FILE record size accepted (bytes).
pub const MAX_RECORD_SIZE: u32 = 64 * 1024;
/// Largest index block (INDX) size accepted (bytes).
pub const MAX_INDEX_BLOCK_SIZE: u32 = 64 * 1024;
/// Largest cluster size accepted (bytes; NTFS allows up to 2 MiB).
pub const MAX_CLUSTER_SIZE: u64 = 2 * 1024 * 1024;
/// Most attributes parsed from one FILE record.
pub const MAX_ATTRS_PER_RECORD: usize = 1024;
/// Largest `$ATTRIBUTE_LIST` value accepted (bytes).
pub const MAX_ATTR_LIST_LEN: u64 = 4 * 1024 * 1024;
/// Most extension records one file may span.
pub const MAX_EXTENSION_RECORDS: usize = 65_536;
/// Most runs decoded for one attribute (all segments together).
pub const MAX_RUNS: usize = 4_000_000;
/// Deepest directory index B+tree walked.
pub const MAX_INDEX_DEPTH: usize = 32;
/// Most index entries looked at in one node.
pub const MAX_INDEX_ENTRIES_PER_NODE: usize = 65_536;
/// Most path components in [`Volume::find`].
pub const MAX_PATH_COMPONENTS: usize = 256;
/// Largest `$Bitmap` read by [`Volume::used_clusters`] (bytes; 1 GiB covers 32 TiB at 4 KiB).
pub const MAX_BITMAP_LEN: u64 = 1024 * 1024 * 1024;
/// Most attributes collected for one file (base plus extension records).
pub const MAX_ATTRS_PER_FILE: usize = 65_536;
/// Largest VCN accepted (so that `vcn * cluster_size` never overflows: 2^64 / 2 MiB).
pub const MAX_VCN: u64 = u64::MAX / MAX_CLUSTER_SIZE;

/// Attribute type codes used here.
pub mod attr_type {
    /// `$STANDARD_INFORMATION`.
    pub const STANDARD_INFORMATION: u32 = 0x10;
    /// `$ATTRIBUTE_LIST`.
    pub const ATTRIBUTE_LIST: u32 = 0x20;
    /// `$FILE_NAME`.
    pub const FILE_NAME: u32 = 0x30;
    /// `$VOLUME_INFORMATION`.
    pub const VOLUME_INFORMATION: u32 = 0x70;
    /// `$DATA`.
    pub const DATA: u32 = 0x80;
    /// `$INDEX_ROOT`.
    pub const INDEX_ROOT: u32 = 0x90;
    /// `$INDEX_ALLOCATION`.
    pub const INDEX_ALLOCATION: u32 = 0xA0;
    /// `$BITMAP`.
    pub const BITMAP: u32 = 0xB0;
    /// `$REPARSE_POINT`.
    pub const REPARSE_POINT: u32 = 0xC0;
    /// End marker.
    pub const END: u32 = 0xFFFF_FFFF;
}

/// Well-known MFT record numbers.
pub mod record {
    /// `$MFT`.
    pub const MFT: u64 = 0;
    /// `$LogFile`.
    pub const LOGFILE: u64 = 2;
    /// `$Volume`.
    pub const VOLUME: u64 = 3;
    /// Root directory.
    pub const ROOT: u64 = 5;
    /// `$Bitmap`.
    pub const BITMAP: u64 = 6;
    /// `$UpCase`.
    pub const UPCASE: u64 = 10;
}

/// Attribute flag: compressed.
pub const FLAG_COMPRESSED: u16 = 0x0001;
/// Attribute flag: encrypted.
pub const FLAG_ENCRYPTED: u16 = 0x4000;
/// Attribute flag: sparse.
pub const FLAG_SPARSE: u16 = 0x8000;

pub(crate) fn ntfs_err(offset: u64, reason: impl Into<String>) -> Error {
    Error::Ntfs {
        offset,
        reason: reason.into(),
    }
}

pub(crate) fn le16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}
pub(crate) fn le32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
pub(crate) fn le64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// Undoes the update-sequence fixups of a multi-sector structure (FILE, INDX, RSTR) in place:
/// checks that the last two bytes of every stride hold the update sequence number and puts the
/// saved bytes back. The stride is `buf.len() / (usa_count - 1)` (512 on most volumes, the sector
/// size on 4Kn volumes); it must be a power of two between 256 and 4096.
/// `offset` is the structure's absolute offset, for errors.
pub fn apply_fixups(buf: &mut [u8], offset: u64) -> Result<()> {
    let usa_ofs =
        le16(buf, 4).ok_or_else(|| ntfs_err(offset, "record too short for a header"))? as usize;
    let usa_count = le16(buf, 6).ok_or_else(|| ntfs_err(offset, "record too short"))? as usize;
    if usa_count < 2 {
        return Err(ntfs_err(
            offset,
            format!("update sequence count {usa_count} < 2"),
        ));
    }
    let strides = usa_count - 1;
    if !buf.len().is_multiple_of(strides) {
        return Err(ntfs_err(
            offset,
            format!(
                "update sequence count {usa_count} does not divide the {}-byte record",
                buf.len()
            ),
        ));
    }
    let stride = buf.len() / strides;
    if !(256..=4096).contains(&stride) || !stride.is_power_of_two() {
        return Err(ntfs_err(
            offset,
            format!("update sequence stride {stride} is not a power of two in 256..=4096"),
        ));
    }
    let usa_end = usa_ofs
        .checked_add(usa_count * 2)
        .filter(|&e| usa_ofs >= 8 && e <= stride - 2)
        .ok_or_else(|| {
            ntfs_err(
                offset,
                format!(
                    "update sequence array at {usa_ofs:#x} (+{usa_count} entries) out of bounds"
                ),
            )
        })?;
    let _ = usa_end;
    let usn = [buf[usa_ofs], buf[usa_ofs + 1]];
    for i in 0..strides {
        let end = (i + 1) * stride - 2;
        if buf[end..end + 2] != usn {
            return Err(ntfs_err(
                offset + end as u64,
                format!(
                    "update sequence mismatch in stride {i}: {:02x}{:02x} != {:02x}{:02x} (torn write?)",
                    buf[end + 1],
                    buf[end],
                    usn[1],
                    usn[0]
                ),
            ));
        }
        let saved = usa_ofs + 2 + 2 * i;
        buf[end] = buf[saved];
        buf[end + 1] = buf[saved + 1];
    }
    Ok(())
}

/// One run of a non-resident attribute: `len` clusters from `vcn`, at `lcn` (`None` = sparse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// First virtual cluster number of the run.
    pub vcn: u64,
    /// Length in clusters.
    pub len: u64,
    /// Logical cluster number on the volume; `None` for a sparse (unallocated) run.
    pub lcn: Option<u64>,
}

/// Decodes a mapping-pairs array starting at `first_vcn`; appends to `out`. `max_lcn` bounds
/// every allocated run; `offset` is the array's absolute offset, for errors.
pub fn decode_runs(
    pairs: &[u8],
    first_vcn: u64,
    max_lcn: u64,
    offset: u64,
    out: &mut Vec<Run>,
) -> Result<()> {
    let mut pos = 0usize;
    let mut vcn = first_vcn;
    let mut lcn: i64 = 0;
    if first_vcn > MAX_VCN {
        return Err(ntfs_err(
            offset,
            format!("lowest VCN {first_vcn} out of range"),
        ));
    }
    while let Some(&hdr) = pairs.get(pos) {
        if hdr == 0 {
            return Ok(());
        }
        if out.len() >= MAX_RUNS {
            return Err(ntfs_err(offset, format!("more than {MAX_RUNS} runs")));
        }
        let len_bytes = (hdr & 0x0F) as usize;
        let off_bytes = (hdr >> 4) as usize;
        if len_bytes == 0 || len_bytes > 8 || off_bytes > 8 {
            return Err(ntfs_err(
                offset + pos as u64,
                format!("bad mapping pair header {hdr:#04x}"),
            ));
        }
        let field = |start: usize, n: usize, signed: bool| -> Option<i64> {
            let s = pairs.get(start..start.checked_add(n)?)?;
            let mut v: u64 = 0;
            for (i, b) in s.iter().enumerate() {
                v |= (*b as u64) << (8 * i);
            }
            if signed && n < 8 && s.last().is_some_and(|b| b & 0x80 != 0) {
                v |= u64::MAX << (8 * n);
            }
            Some(v as i64)
        };
        let run_len = field(pos + 1, len_bytes, false)
            .ok_or_else(|| ntfs_err(offset + pos as u64, "mapping pair truncated"))?
            as u64;
        if run_len == 0 || run_len > i64::MAX as u64 {
            return Err(ntfs_err(
                offset + pos as u64,
                format!("run length {run_len} invalid"),
            ));
        }
        let run_lcn = if off_bytes == 0 {
            None
        } else {
            let delta = field(pos + 1 + len_bytes, off_bytes, true)
                .ok_or_else(|| ntfs_err(offset + pos as u64, "mapping pair truncated"))?;
            lcn = lcn
                .checked_add(delta)
                .filter(|&l| l >= 0)
                .ok_or_else(|| ntfs_err(offset + pos as u64, "run LCN out of range"))?;
            let end = (lcn as u64).checked_add(run_len);
            if end.is_none_or(|e| e > max_lcn) {
                return Err(ntfs_err(
                    offset + pos as u64,
                    format!(
                        "run at LCN {lcn} (+{run_len}) lies beyond the volume's {max_lcn} clusters"
                    ),
                ));
            }
            Some(lcn as u64)
        };
        out.push(Run {
            vcn,
            len: run_len,
            lcn: run_lcn,
        });
        vcn = vcn
            .checked_add(run_len)
            .filter(|&v| v <= MAX_VCN)
            .ok_or_else(|| ntfs_err(offset + pos as u64, format!("VCN beyond {MAX_VCN}")))?;
        pos += 1 + len_bytes + off_bytes;
    }
    Err(ntfs_err(offset, "mapping pairs not terminated"))
}

/// A parsed attribute (header plus value or run list) from one FILE record.
#[derive(Debug, Clone)]
pub struct Attribute {
    /// Type code (see [`attr_type`]).
    pub ty: u32,
    /// Name (UTF-16), empty for the unnamed stream.
    pub name: Vec<u16>,
    /// Attribute flags ([`FLAG_COMPRESSED`], [`FLAG_ENCRYPTED`], [`FLAG_SPARSE`]).
    pub flags: u16,
    /// Instance number (per FILE record).
    pub instance: u16,
    /// MFT record holding this attribute.
    pub record: u64,
    /// Absolute offset of the attribute header on the disk image.
    pub offset: u64,
    /// Resident value or non-resident run list.
    pub body: AttrBody,
}

/// Value of an [`Attribute`].
#[derive(Debug, Clone)]
pub enum AttrBody {
    /// The value sits in the FILE record.
    Resident(Vec<u8>),
    /// The value sits in clusters.
    NonResident {
        /// First VCN of this segment.
        lowest_vcn: u64,
        /// Last VCN of this segment.
        highest_vcn: u64,
        /// Allocated size in bytes (meaningful in the VCN-0 segment).
        allocated_size: u64,
        /// Data size in bytes (VCN-0 segment).
        data_size: u64,
        /// Initialized size (valid data length) in bytes (VCN-0 segment).
        initialized_size: u64,
        /// Compression unit (log2 clusters), 0 = not compressed.
        compression_unit: u16,
        /// Decoded runs.
        runs: Vec<Run>,
    },
}

impl Attribute {
    /// The name as a Rust string (lossy).
    pub fn name_string(&self) -> String {
        String::from_utf16_lossy(&self.name)
    }
}

/// Sizes, flags and disk extents of a file's unnamed `$DATA` stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileExtents {
    /// What the extents belong to (a path if known, else "MFT record N"), for messages.
    pub path: String,
    /// MFT record number of the file (base record).
    pub record: u64,
    /// Logical size of the stream in bytes.
    pub data_size: u64,
    /// Valid data length (initialized size): bytes past it read as zeros.
    pub valid_data_length: u64,
    /// Allocated size in bytes (a multiple of the cluster size for non-resident data).
    pub allocated_size: u64,
    /// Attribute flags of the VCN-0 segment ([`FLAG_COMPRESSED`] …).
    pub flags: u16,
    /// The data sits inside the MFT record.
    pub resident: bool,
    /// The file has a `$REPARSE_POINT` attribute.
    pub reparse: bool,
    /// Names of the file's named `$DATA` streams (e.g. `WofCompressedData`).
    pub named_streams: Vec<String>,
    /// Number of `$DATA` segments (MFT records) the run list came from.
    pub segments: usize,
    /// Number of runs (including sparse runs).
    pub runs: usize,
    /// Extents covering `[0, data_size)` in file order; empty for resident data.
    pub extents: Vec<Extent>,
}

/// A piece of a file mapped to the disk image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Offset in the file.
    pub file_offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Absolute byte offset on the disk image; `None` for a sparse hole.
    pub disk_offset: Option<u64>,
}

impl FileExtents {
    /// Compressed flag set.
    pub fn is_compressed(&self) -> bool {
        self.flags & FLAG_COMPRESSED != 0
    }
    /// Encrypted flag set.
    pub fn is_encrypted(&self) -> bool {
        self.flags & FLAG_ENCRYPTED != 0
    }
    /// Sparse flag set.
    pub fn is_sparse(&self) -> bool {
        self.flags & FLAG_SPARSE != 0
    }

    fn refuse(&self, reason: impl Into<String>) -> Error {
        Error::NotEditable {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// Checks that bytes `range` of the file may be overwritten in place on the disk (same
    /// length, no metadata change): refuses resident, compressed, encrypted, reparse-point or
    /// WOF-compressed files, VDL below the data size, a range past the data size, and sparse
    /// holes inside the range ([`Error::NotEditable`]).
    pub fn check_editable(&self, range: Range<u64>) -> Result<()> {
        if self.resident {
            return Err(self.refuse("data is resident in the MFT record"));
        }
        if self.is_compressed() {
            return Err(self.refuse("data is NTFS-compressed"));
        }
        if self.is_encrypted() {
            return Err(self.refuse("data is EFS-encrypted"));
        }
        if self.reparse {
            return Err(self.refuse("file has a reparse point"));
        }
        if self
            .named_streams
            .iter()
            .any(|n| n.eq_ignore_ascii_case("WofCompressedData"))
        {
            return Err(self.refuse("file is WOF-compressed (WofCompressedData stream)"));
        }
        if self.valid_data_length < self.data_size {
            return Err(self.refuse(format!(
                "valid data length {} is below the data size {}",
                self.valid_data_length, self.data_size
            )));
        }
        if range.start > range.end || range.end > self.data_size {
            return Err(self.refuse(format!(
                "range {}..{} is outside the data size {}",
                range.start, range.end, self.data_size
            )));
        }
        for e in &self.extents {
            let end = e.file_offset.saturating_add(e.len);
            if e.disk_offset.is_none() && e.file_offset < range.end && end > range.start {
                return Err(self.refuse(format!(
                    "range {}..{} touches a sparse hole at {}..{}",
                    range.start, range.end, e.file_offset, end
                )));
            }
        }
        Ok(())
    }

    /// The same stream cut to its first `len` bytes (for reading headers).
    pub fn prefix(&self, len: u64) -> FileExtents {
        let mut fx = self.clone();
        if fx.data_size > len {
            fx.data_size = len;
            fx.valid_data_length = fx.valid_data_length.min(len);
            fx.extents.retain(|e| e.file_offset < len);
            if let Some(last) = fx.extents.last_mut() {
                last.len = last.len.min(len - last.file_offset);
            }
        }
        fx
    }

    /// `check_editable` for the whole file.
    pub fn editable(&self) -> Result<()> {
        self.check_editable(0..self.data_size)
    }

    /// Maps file bytes `range` to absolute disk byte ranges `(disk_offset, len)` in file order
    /// (adjacent pieces merged). Runs [`FileExtents::check_editable`] first, so every returned
    /// byte may be patched in place.
    pub fn map_range(&self, range: Range<u64>) -> Result<Vec<(u64, u64)>> {
        self.check_editable(range.clone())?;
        let mut out: Vec<(u64, u64)> = Vec::new();
        let mut covered = range.start;
        let start_idx = self
            .extents
            .partition_point(|e| e.file_offset.saturating_add(e.len) <= range.start);
        for e in self.extents.get(start_idx..).unwrap_or(&[]) {
            if e.file_offset >= range.end {
                break;
            }
            let s = range.start.max(e.file_offset);
            let t = range.end.min(e.file_offset.saturating_add(e.len));
            if s >= t {
                continue;
            }
            if s != covered {
                return Err(self.refuse(format!("no extent covers file byte {covered}")));
            }
            let Some(d) = e.disk_offset else {
                return Err(self.refuse("range touches a sparse hole"));
            };
            let disk = d + (s - e.file_offset);
            let len = t - s;
            match out.last_mut() {
                Some(last) if last.0 + last.1 == disk => last.1 += len,
                _ => out.push((disk, len)),
            }
            covered = t;
        }
        if covered != range.end {
            return Err(self.refuse(format!("no extent covers file byte {covered}")));
        }
        Ok(out)
    }
}

/// Files from this size on are read by two threads ([`Volume::read_extents_parallel`]).
pub const PARALLEL_READ_FROM: u64 = 4 << 20;

/// An opened NTFS volume inside a disk image.
#[derive(Debug)]
pub struct Volume<R: ReadAt> {
    src: R,
    part_offset: u64,
    part_len: u64,
    bytes_per_sector: u32,
    cluster_size: u64,
    record_size: u32,
    index_block_size: u32,
    total_sectors: u64,
    total_clusters: u64,
    mft_lcn: u64,
    mftmirr_lcn: u64,
    serial: u64,
    mft_runs: Vec<Run>,
    mft_size: u64,
    upcase: Vec<u16>,
    upcase_from_volume: bool,
}

/// Boot-sector facts of an NTFS volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes per sector (BPB).
    pub bytes_per_sector: u32,
    /// Cluster size in bytes.
    pub cluster_size: u64,
    /// FILE record size in bytes.
    pub record_size: u32,
    /// Index block size in bytes.
    pub index_block_size: u32,
    /// Total sectors from the BPB (one less than the partition: the last sector holds the
    /// backup boot sector).
    pub total_sectors: u64,
    /// Clusters in the volume.
    pub total_clusters: u64,
    /// LCN of `$MFT`.
    pub mft_lcn: u64,
    /// LCN of `$MFTMirr`.
    pub mftmirr_lcn: u64,
    /// Volume serial number.
    pub serial: u64,
}

fn decode_size(raw: u8, cluster: u64, what: &str, offset: u64) -> Result<u64> {
    let v = raw as i8;
    if v > 0 {
        cluster
            .checked_mul(v as u64)
            .ok_or_else(|| ntfs_err(offset, format!("{what} overflows")))
    } else {
        let shift = (-(v as i32)) as u32;
        if !(8..=31).contains(&shift) {
            return Err(ntfs_err(
                offset,
                format!("{what}: encoded value {v} invalid"),
            ));
        }
        Ok(1u64 << shift)
    }
}

/// Parses an NTFS boot sector (the first 512 bytes of the partition). `offset` is its absolute
/// offset, for errors. Refuses BitLocker (`-FVE-FS-`) with [`Error::BitLocker`].
pub fn parse_boot_sector(bs: &[u8], offset: u64) -> Result<Geometry> {
    let oem = bs
        .get(3..11)
        .ok_or_else(|| ntfs_err(offset, "boot sector shorter than 512 bytes"))?;
    if oem == b"-FVE-FS-" {
        return Err(Error::BitLocker { offset });
    }
    if oem != b"NTFS    " {
        return Err(ntfs_err(
            offset + 3,
            format!(
                "OEM ID {:?} is not \"NTFS    \"",
                String::from_utf8_lossy(oem)
            ),
        ));
    }
    if bs.get(510..512) != Some(&[0x55, 0xAA][..]) {
        return Err(ntfs_err(offset + 510, "boot sector signature 55AA missing"));
    }
    let bps = le16(bs, 0x0B).unwrap_or(0) as u32;
    if !(256..=4096).contains(&bps) || !bps.is_power_of_two() {
        return Err(ntfs_err(
            offset + 0x0B,
            format!("bytes per sector {bps} is not a power of two in 256..=4096"),
        ));
    }
    let spc_raw = bs[0x0D];
    // Values above 0x80 encode 2^(256 - value) sectors (large clusters, Windows 10 1709+).
    let spc: u64 = if spc_raw <= 0x80 {
        spc_raw as u64
    } else {
        let shift = 256 - spc_raw as u32;
        if shift > 20 {
            0
        } else {
            1u64 << shift
        }
    };
    let cluster = spc * bps as u64;
    if spc == 0 || !spc.is_power_of_two() || cluster > MAX_CLUSTER_SIZE {
        return Err(ntfs_err(
            offset + 0x0D,
            format!("sectors per cluster {spc_raw:#x} invalid"),
        ));
    }
    let total_sectors = le64(bs, 0x28).unwrap_or(0);
    let total_clusters = total_sectors / spc;
    if total_clusters == 0 {
        return Err(ntfs_err(offset + 0x28, "total sectors is 0"));
    }
    let mft_lcn = le64(bs, 0x30).unwrap_or(0);
    let mftmirr_lcn = le64(bs, 0x38).unwrap_or(0);
    if mft_lcn >= total_clusters || mftmirr_lcn >= total_clusters {
        return Err(ntfs_err(
            offset + 0x30,
            format!(
                "$MFT LCN {mft_lcn} / $MFTMirr LCN {mftmirr_lcn} beyond {total_clusters} clusters"
            ),
        ));
    }
    let record_size = decode_size(bs[0x40], cluster, "FILE record size", offset + 0x40)?;
    if !(256..=MAX_RECORD_SIZE as u64).contains(&record_size)
        || !record_size.is_power_of_two()
        || record_size < bps as u64
    {
        return Err(ntfs_err(
            offset + 0x40,
            format!("FILE record size {record_size} unsupported"),
        ));
    }
    let index_block_size = decode_size(bs[0x44], cluster, "index block size", offset + 0x44)?;
    if !(256..=MAX_INDEX_BLOCK_SIZE as u64).contains(&index_block_size)
        || !index_block_size.is_power_of_two()
    {
        return Err(ntfs_err(
            offset + 0x44,
            format!("index block size {index_block_size} unsupported"),
        ));
    }
    Ok(Geometry {
        bytes_per_sector: bps,
        cluster_size: cluster,
        record_size: record_size as u32,
        index_block_size: index_block_size as u32,
        total_sectors,
        total_clusters,
        mft_lcn,
        mftmirr_lcn,
        serial: le64(bs, 0x48).unwrap_or(0),
    })
}

/// Parsed header of a FILE record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordHeader {
    pub flags: u16,
    pub base: u64,
    pub first_attr: usize,
    pub used: usize,
}

pub(crate) const RECORD_IN_USE: u16 = 0x0001;

impl<R: ReadAt> Volume<R> {
    /// Opens the NTFS volume at `part_offset` (bytes) of `src`, `part_len` bytes long: parses
    /// and checks the boot sector, reads `$MFT`'s run list (an `$MFT` attribute list is
    /// followed) and loads `$UpCase` (record 10; if unreadable, a built-in simple case map is
    /// used and [`Volume::upcase_from_volume`] is false).
    pub fn open(src: R, part_offset: u64, part_len: u64) -> Result<Volume<R>> {
        if part_offset.checked_add(part_len).is_none() {
            return Err(Error::Invalid(format!(
                "partition {part_offset:#x} (+{part_len}) overflows"
            )));
        }
        let mut bs = [0u8; 512];
        src.read_exact_at(&mut bs, part_offset)
            .map_err(|e| Error::io(format!("reading NTFS boot sector at {part_offset:#x}"), e))?;
        let g = parse_boot_sector(&bs, part_offset)?;
        let vol_bytes = g
            .total_sectors
            .checked_mul(g.bytes_per_sector as u64)
            .ok_or_else(|| ntfs_err(part_offset + 0x28, "volume size overflows"))?;
        if vol_bytes > part_len {
            return Err(ntfs_err(
                part_offset + 0x28,
                format!(
                    "volume ({vol_bytes} bytes) is larger than its partition ({part_len} bytes)"
                ),
            ));
        }
        let mut vol = Volume {
            src,
            part_offset,
            part_len,
            bytes_per_sector: g.bytes_per_sector,
            cluster_size: g.cluster_size,
            record_size: g.record_size,
            index_block_size: g.index_block_size,
            total_sectors: g.total_sectors,
            total_clusters: g.total_clusters,
            mft_lcn: g.mft_lcn,
            mftmirr_lcn: g.mftmirr_lcn,
            serial: g.serial,
            mft_runs: Vec::new(),
            mft_size: 0,
            upcase: Vec::new(),
            upcase_from_volume: false,
        };
        // Bootstrap: record 0 sits at the start of the $MFT's first run.
        let rec0_off = vol.cluster_offset(g.mft_lcn)?;
        let mut rec0 = vol.read_bytes(rec0_off, vol.record_size as usize, "$MFT record 0")?;
        apply_fixups(&mut rec0, rec0_off)?;
        let attrs = vol.parse_record_attrs(&rec0, 0, rec0_off)?;
        let segs: Vec<Attribute> = attrs
            .iter()
            .filter(|a| a.ty == attr_type::DATA && a.name.is_empty())
            .cloned()
            .collect();
        if attrs.iter().any(|a| a.ty == attr_type::ATTRIBUTE_LIST) {
            // $MFT has its own attribute list: bootstrap with the base record's VCN-0 segment
            // (its extension records must be reachable through it, as Windows ensures), then
            // gather and check all segments.
            let base = segs
                .iter()
                .find_map(|a| match &a.body {
                    AttrBody::NonResident {
                        lowest_vcn: 0,
                        runs,
                        ..
                    } => Some(runs.clone()),
                    _ => None,
                })
                .ok_or_else(|| ntfs_err(rec0_off, "$MFT base record has no VCN-0 $DATA segment"))?;
            if base.is_empty() || base.iter().any(|r| r.lcn.is_none()) {
                return Err(ntfs_err(rec0_off, "$MFT first segment empty or sparse"));
            }
            vol.mft_size = base
                .last()
                .map_or(0, |r| (r.vcn + r.len) * vol.cluster_size);
            vol.mft_runs = base;
            let all = vol.attributes(record::MFT)?;
            let all_segs: Vec<Attribute> = all
                .into_iter()
                .filter(|a| a.ty == attr_type::DATA && a.name.is_empty())
                .collect();
            vol.set_mft_runs(&all_segs, rec0_off)?;
        } else {
            vol.set_mft_runs(&segs, rec0_off)?;
        }
        vol.load_upcase();
        Ok(vol)
    }

    fn set_mft_runs(&mut self, segs: &[Attribute], at: u64) -> Result<()> {
        let (info, runs) = self.combine_segments(segs, at)?;
        if info.resident {
            return Err(ntfs_err(at, "$MFT $DATA is resident"));
        }
        if runs.iter().any(|r| r.lcn.is_none()) {
            return Err(ntfs_err(at, "$MFT has a sparse run"));
        }
        self.mft_runs = runs;
        self.mft_size = info.data_size;
        Ok(())
    }

    fn load_upcase(&mut self) {
        let table = self
            .data_extents(record::UPCASE)
            .and_then(|fx| self.read_extents(&fx, 128 * 1024));
        match table {
            Ok(b) if b.len() == 128 * 1024 => {
                self.upcase = b
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                self.upcase_from_volume = true;
            }
            _ => {
                self.upcase = (0..=u16::MAX).map(simple_upcase).collect();
                self.upcase_from_volume = false;
            }
        }
    }

    /// Boot-sector geometry.
    pub fn geometry(&self) -> Geometry {
        Geometry {
            bytes_per_sector: self.bytes_per_sector,
            cluster_size: self.cluster_size,
            record_size: self.record_size,
            index_block_size: self.index_block_size,
            total_sectors: self.total_sectors,
            total_clusters: self.total_clusters,
            mft_lcn: self.mft_lcn,
            mftmirr_lcn: self.mftmirr_lcn,
            serial: self.serial,
        }
    }
    /// Bytes per sector (also the fixup stride on 4Kn volumes).
    pub fn bytes_per_sector(&self) -> u32 {
        self.bytes_per_sector
    }
    /// Cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        self.cluster_size
    }
    /// FILE record size in bytes.
    pub fn record_size(&self) -> u32 {
        self.record_size
    }
    /// Clusters in the volume.
    pub fn total_clusters(&self) -> u64 {
        self.total_clusters
    }
    /// Partition start (absolute bytes).
    pub fn part_offset(&self) -> u64 {
        self.part_offset
    }
    /// Partition length (bytes).
    pub fn part_len(&self) -> u64 {
        self.part_len
    }
    /// Number of FILE records `$MFT` holds.
    pub fn mft_records(&self) -> u64 {
        self.mft_size / self.record_size as u64
    }
    /// `$MFT`'s runs.
    pub fn mft_runs(&self) -> &[Run] {
        &self.mft_runs
    }
    /// Whether the `$UpCase` table came from the volume (false: built-in fallback).
    pub fn upcase_from_volume(&self) -> bool {
        self.upcase_from_volume
    }
    /// The source the volume reads from.
    pub fn source(&self) -> &R {
        &self.src
    }

    pub(crate) fn upcase(&self, c: u16) -> u16 {
        self.upcase.get(c as usize).copied().unwrap_or(c)
    }

    /// Absolute byte offset of cluster `lcn`.
    pub fn cluster_offset(&self, lcn: u64) -> Result<u64> {
        if lcn >= self.total_clusters {
            return Err(ntfs_err(
                self.part_offset,
                format!(
                    "LCN {lcn} beyond the volume's {} clusters",
                    self.total_clusters
                ),
            ));
        }
        lcn.checked_mul(self.cluster_size)
            .and_then(|b| b.checked_add(self.part_offset))
            .ok_or_else(|| ntfs_err(self.part_offset, "cluster offset overflows"))
    }

    pub(crate) fn read_bytes(&self, offset: u64, len: usize, what: &str) -> Result<Vec<u8>> {
        let end = offset
            .checked_add(len as u64)
            .ok_or_else(|| ntfs_err(offset, format!("{what}: offset overflows")))?;
        if offset < self.part_offset || end > self.part_offset.saturating_add(self.part_len) {
            return Err(ntfs_err(
                offset,
                format!("{what} (+{len}) lies outside the partition"),
            ));
        }
        let mut buf = vec![0u8; len];
        self.src
            .read_exact_at(&mut buf, offset)
            .map_err(|e| Error::io(format!("reading {what} at {offset:#x}"), e))?;
        Ok(buf)
    }

    /// Reads bytes `[vcn_byte, vcn_byte+len)` of a run list into `buf` (sparse → zeros).
    fn read_runs_into(&self, runs: &[Run], start: u64, buf: &mut [u8], what: &str) -> Result<()> {
        let cs = self.cluster_size;
        let mut done = 0usize;
        let idx = runs.partition_point(|r| (r.vcn + r.len) * cs <= start);
        for r in runs.get(idx..).unwrap_or(&[]) {
            if done == buf.len() {
                break;
            }
            let pos = start + done as u64;
            let rs = r.vcn * cs;
            let re = (r.vcn + r.len) * cs;
            if pos < rs || pos >= re {
                return Err(ntfs_err(
                    self.part_offset,
                    format!("{what}: gap in run list at byte {pos}"),
                ));
            }
            let n = ((re - pos) as usize).min(buf.len() - done);
            let chunk = &mut buf[done..done + n];
            match r.lcn {
                None => chunk.fill(0),
                Some(lcn) => {
                    let off = self.cluster_offset(lcn)? + (pos - rs);
                    let end = off + n as u64;
                    if end > self.part_offset.saturating_add(self.part_len) {
                        return Err(ntfs_err(off, format!("{what} lies outside the partition")));
                    }
                    self.src
                        .read_exact_at(chunk, off)
                        .map_err(|e| Error::io(format!("reading {what} at {off:#x}"), e))?;
                }
            }
            done += n;
        }
        if done != buf.len() {
            return Err(ntfs_err(
                self.part_offset,
                format!("{what}: run list ends before byte {}", start + done as u64),
            ));
        }
        Ok(())
    }

    /// Absolute offset of FILE record `n`, if it lies in one piece (it always does when the
    /// record size divides the cluster size or runs are contiguous).
    pub fn record_offset(&self, n: u64) -> Result<u64> {
        let rs = self.record_size as u64;
        let byte = n
            .checked_mul(rs)
            .filter(|b| b.saturating_add(rs) <= self.mft_size)
            .ok_or_else(|| {
                ntfs_err(
                    self.part_offset,
                    format!(
                        "MFT record {n} beyond $MFT ({} records)",
                        self.mft_records()
                    ),
                )
            })?;
        let cs = self.cluster_size;
        let vcn = byte / cs;
        let idx = self.mft_runs.partition_point(|r| r.vcn + r.len <= vcn);
        let r = self
            .mft_runs
            .get(idx)
            .filter(|r| r.vcn <= vcn)
            .ok_or_else(|| ntfs_err(self.part_offset, format!("MFT record {n} not mapped")))?;
        let lcn = r.lcn.unwrap_or(0) + (vcn - r.vcn);
        Ok(self.cluster_offset(lcn)? + byte % cs)
    }

    /// Reads FILE record `n` with fixups applied; checks the `FILE` magic. Returns the bytes and
    /// the record's absolute offset.
    pub fn read_record(&self, n: u64) -> Result<(Vec<u8>, u64)> {
        let rs = self.record_size as u64;
        let off = self.record_offset(n)?;
        let mut buf = vec![0u8; rs as usize];
        self.read_runs_into(&self.mft_runs, n * rs, &mut buf, "FILE record")?;
        if buf.get(0..4) != Some(b"FILE") {
            return Err(ntfs_err(off, format!("MFT record {n}: no FILE signature")));
        }
        apply_fixups(&mut buf, off)?;
        Ok((buf, off))
    }

    pub(crate) fn record_header(buf: &[u8], off: u64) -> Result<RecordHeader> {
        let first_attr = le16(buf, 0x14).unwrap_or(0) as usize;
        let used = le32(buf, 0x18).unwrap_or(0) as usize;
        if used > buf.len() || first_attr < 0x18 || first_attr >= used {
            return Err(ntfs_err(
                off,
                format!(
                    "FILE record: first attribute {first_attr:#x} / bytes in use {used:#x} invalid"
                ),
            ));
        }
        Ok(RecordHeader {
            flags: le16(buf, 0x16).unwrap_or(0),
            base: le64(buf, 0x20).unwrap_or(0) & 0x0000_FFFF_FFFF_FFFF,
            first_attr,
            used,
        })
    }

    /// Parses all attributes of one FILE record buffer (fixups applied).
    pub(crate) fn parse_record_attrs(
        &self,
        buf: &[u8],
        n: u64,
        off: u64,
    ) -> Result<Vec<Attribute>> {
        let h = Self::record_header(buf, off)?;
        let mut out = Vec::new();
        let mut pos = h.first_attr;
        loop {
            let ty = le32(buf, pos)
                .ok_or_else(|| ntfs_err(off + pos as u64, "attribute header truncated"))?;
            if ty == attr_type::END {
                break;
            }
            if out.len() >= MAX_ATTRS_PER_RECORD {
                return Err(ntfs_err(
                    off,
                    format!("more than {MAX_ATTRS_PER_RECORD} attributes"),
                ));
            }
            let aoff = off + pos as u64;
            let len = le32(buf, pos + 4).unwrap_or(0) as usize;
            if len < 0x18 || pos.checked_add(len).is_none_or(|e| e > h.used) {
                return Err(ntfs_err(
                    aoff,
                    format!("attribute {ty:#x}: length {len:#x} invalid"),
                ));
            }
            let a = &buf[pos..pos + len];
            let non_resident = a[8];
            let name_len = a[9] as usize;
            let name_off = le16(a, 0x0A).unwrap_or(0) as usize;
            let flags = le16(a, 0x0C).unwrap_or(0);
            let instance = le16(a, 0x0E).unwrap_or(0);
            let name: Vec<u16> = if name_len == 0 {
                Vec::new()
            } else {
                let s = a
                    .get(name_off..name_off + 2 * name_len)
                    .ok_or_else(|| ntfs_err(aoff, "attribute name out of bounds"))?;
                s.chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect()
            };
            let body = if non_resident == 0 {
                let vlen = le32(a, 0x10).unwrap_or(0) as usize;
                let voff = le16(a, 0x14).unwrap_or(0) as usize;
                let v = voff
                    .checked_add(vlen)
                    .and_then(|e| a.get(voff..e))
                    .ok_or_else(|| {
                        ntfs_err(
                            aoff,
                            format!("resident value {voff:#x}+{vlen} out of bounds"),
                        )
                    })?;
                AttrBody::Resident(v.to_vec())
            } else {
                if len < 0x40 {
                    return Err(ntfs_err(aoff, "non-resident attribute header too short"));
                }
                let lowest_vcn = le64(a, 0x10).unwrap_or(0);
                let highest_vcn = le64(a, 0x18).unwrap_or(0);
                let runs_off = le16(a, 0x20).unwrap_or(0) as usize;
                let compression_unit = le16(a, 0x22).unwrap_or(0);
                let pairs = a
                    .get(runs_off..)
                    .filter(|_| runs_off >= 0x40)
                    .ok_or_else(|| ntfs_err(aoff, "mapping pairs offset out of bounds"))?;
                let mut runs = Vec::new();
                decode_runs(
                    pairs,
                    lowest_vcn,
                    self.total_clusters,
                    aoff + runs_off as u64,
                    &mut runs,
                )?;
                let next = runs.last().map_or(lowest_vcn, |r| r.vcn + r.len);
                if !(runs.is_empty() && highest_vcn == u64::MAX
                    || next == highest_vcn.wrapping_add(1))
                {
                    return Err(ntfs_err(
                        aoff,
                        format!(
                            "attribute {ty:#x}: runs end at VCN {next} but highest VCN is {highest_vcn}"
                        ),
                    ));
                }
                AttrBody::NonResident {
                    lowest_vcn,
                    highest_vcn,
                    allocated_size: le64(a, 0x28).unwrap_or(0),
                    data_size: le64(a, 0x30).unwrap_or(0),
                    initialized_size: le64(a, 0x38).unwrap_or(0),
                    compression_unit,
                    runs,
                }
            };
            out.push(Attribute {
                ty,
                name,
                flags,
                instance,
                record: n,
                offset: aoff,
                body,
            });
            pos += len;
        }
        Ok(out)
    }

    /// All attributes of file `n` (base record), including those in extension records named by
    /// its `$ATTRIBUTE_LIST` (resident or non-resident list). Each extension record must point
    /// back to `n` as its base record.
    pub fn attributes(&self, n: u64) -> Result<Vec<Attribute>> {
        let (buf, off) = self.read_record(n)?;
        let h = Self::record_header(&buf, off)?;
        if h.flags & RECORD_IN_USE == 0 {
            return Err(ntfs_err(off, format!("MFT record {n} is not in use")));
        }
        if h.base != 0 {
            return Err(ntfs_err(
                off,
                format!("MFT record {n} is an extension of record {}", h.base),
            ));
        }
        let mut attrs = self.parse_record_attrs(&buf, n, off)?;
        let Some(list) = attrs
            .iter()
            .find(|a| a.ty == attr_type::ATTRIBUTE_LIST)
            .cloned()
        else {
            return Ok(attrs);
        };
        let list_bytes = match &list.body {
            AttrBody::Resident(v) => v.clone(),
            AttrBody::NonResident {
                data_size, runs, ..
            } => {
                if *data_size > MAX_ATTR_LIST_LEN {
                    return Err(ntfs_err(
                        list.offset,
                        format!("attribute list of {data_size} bytes is too long"),
                    ));
                }
                let mut v = vec![0u8; *data_size as usize];
                self.read_runs_into(runs, 0, &mut v, "attribute list")?;
                v
            }
        };
        let mut extensions: Vec<u64> = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut pos = 0usize;
        while pos + 0x1A <= list_bytes.len() {
            let rec_len = le16(&list_bytes, pos + 4).unwrap_or(0) as usize;
            if rec_len < 0x1A {
                return Err(ntfs_err(
                    list.offset,
                    format!("attribute list entry at {pos} has length {rec_len}"),
                ));
            }
            let r = le64(&list_bytes, pos + 0x10).unwrap_or(0) & 0x0000_FFFF_FFFF_FFFF;
            if r != n && seen.insert(r) {
                if extensions.len() >= MAX_EXTENSION_RECORDS {
                    return Err(ntfs_err(list.offset, "too many extension records"));
                }
                extensions.push(r);
            }
            pos += rec_len;
        }
        for r in extensions {
            let (ebuf, eoff) = self.read_record(r)?;
            let eh = Self::record_header(&ebuf, eoff)?;
            if eh.base != n || eh.flags & RECORD_IN_USE == 0 {
                return Err(ntfs_err(
                    eoff,
                    format!(
                        "extension record {r} does not belong to record {n} (base {})",
                        eh.base
                    ),
                ));
            }
            attrs.extend(self.parse_record_attrs(&ebuf, r, eoff)?);
            if attrs.len() > MAX_ATTRS_PER_FILE {
                return Err(ntfs_err(
                    eoff,
                    format!("file {n} has more than {MAX_ATTRS_PER_FILE} attributes"),
                ));
            }
        }
        Ok(attrs)
    }

    /// Combines the segments of one non-resident attribute (sorted by lowest VCN, contiguity
    /// checked; the VCN-0 segment gives sizes and flags).
    fn combine_segments(&self, segs: &[Attribute], at: u64) -> Result<(FileExtents, Vec<Run>)> {
        let mut fx = FileExtents {
            path: String::new(),
            record: 0,
            data_size: 0,
            valid_data_length: 0,
            allocated_size: 0,
            flags: 0,
            resident: false,
            reparse: false,
            named_streams: Vec::new(),
            segments: segs.len(),
            runs: 0,
            extents: Vec::new(),
        };
        if segs.is_empty() {
            return Err(ntfs_err(at, "no $DATA attribute"));
        }
        if let Some(res) = segs.iter().find_map(|s| match &s.body {
            AttrBody::Resident(v) => Some((s, v)),
            _ => None,
        }) {
            if segs.len() != 1 {
                return Err(ntfs_err(
                    res.0.offset,
                    "resident $DATA with more than one segment",
                ));
            }
            fx.resident = true;
            fx.flags = res.0.flags;
            fx.data_size = res.1.len() as u64;
            fx.valid_data_length = fx.data_size;
            fx.allocated_size = fx.data_size;
            return Ok((fx, Vec::new()));
        }
        let mut sorted: BTreeMap<u64, &Attribute> = BTreeMap::new();
        for s in segs {
            if let AttrBody::NonResident { lowest_vcn, .. } = &s.body {
                if sorted.insert(*lowest_vcn, s).is_some() {
                    return Err(ntfs_err(
                        s.offset,
                        format!("two $DATA segments start at VCN {lowest_vcn}"),
                    ));
                }
            }
        }
        let mut runs: Vec<Run> = Vec::new();
        let mut next_vcn = 0u64;
        for (i, (lv, s)) in sorted.iter().enumerate() {
            let AttrBody::NonResident {
                highest_vcn,
                allocated_size,
                data_size,
                initialized_size,
                runs: r,
                ..
            } = &s.body
            else {
                continue;
            };
            if *lv != next_vcn {
                return Err(ntfs_err(
                    s.offset,
                    format!("$DATA segment starts at VCN {lv}, expected {next_vcn}"),
                ));
            }
            if i == 0 {
                fx.allocated_size = *allocated_size;
                fx.data_size = *data_size;
                fx.valid_data_length = *initialized_size;
                fx.flags = s.flags;
            }
            if runs.len() + r.len() > MAX_RUNS {
                return Err(ntfs_err(s.offset, format!("more than {MAX_RUNS} runs")));
            }
            runs.extend_from_slice(r);
            next_vcn = highest_vcn.wrapping_add(1);
            if r.is_empty() && *highest_vcn == u64::MAX {
                next_vcn = *lv;
            }
        }
        let cs = self.cluster_size;
        let total = next_vcn
            .checked_mul(cs)
            .ok_or_else(|| ntfs_err(at, "allocated size overflows"))?;
        if fx.allocated_size != total && fx.flags & (FLAG_COMPRESSED | FLAG_SPARSE) == 0 {
            return Err(ntfs_err(
                at,
                format!(
                    "$DATA segments cover {next_vcn} clusters but the allocated size is {} bytes",
                    fx.allocated_size
                ),
            ));
        }
        if fx.data_size > total || fx.valid_data_length > fx.data_size {
            return Err(ntfs_err(
                at,
                format!(
                    "data size {} / initialized size {} exceed the {total} mapped bytes",
                    fx.data_size, fx.valid_data_length
                ),
            ));
        }
        fx.runs = runs.len();
        Ok((fx, runs))
    }

    /// Sizes, flags and absolute disk extents of file `n`'s unnamed `$DATA` (see
    /// [`FileExtents`]).
    pub fn data_extents(&self, n: u64) -> Result<FileExtents> {
        let attrs = self.attributes(n)?;
        let (_, off) = (0, self.record_offset(n)?);
        let segs: Vec<Attribute> = attrs
            .iter()
            .filter(|a| a.ty == attr_type::DATA && a.name.is_empty())
            .cloned()
            .collect();
        let (mut fx, runs) = self.combine_segments(&segs, off)?;
        fx.path = format!("MFT record {n}");
        fx.record = n;
        fx.reparse = attrs.iter().any(|a| a.ty == attr_type::REPARSE_POINT);
        for a in &attrs {
            if a.ty == attr_type::DATA && !a.name.is_empty() {
                let s = a.name_string();
                if !fx.named_streams.contains(&s) {
                    fx.named_streams.push(s);
                }
            }
        }
        let cs = self.cluster_size;
        let end = fx.data_size;
        for r in &runs {
            let fo = r.vcn * cs;
            if fo >= end {
                break;
            }
            let len = (r.len * cs).min(end - fo);
            let disk_offset = match r.lcn {
                Some(l) => Some(self.cluster_offset(l)?),
                None => None,
            };
            match fx.extents.last_mut() {
                Some(last)
                    if last.file_offset + last.len == fo
                        && match (last.disk_offset, disk_offset) {
                            (Some(a), Some(b)) => a + last.len == b,
                            (None, None) => true,
                            _ => false,
                        } =>
                {
                    last.len += len
                }
                _ => fx.extents.push(Extent {
                    file_offset: fo,
                    len,
                    disk_offset,
                }),
            }
        }
        Ok(fx)
    }

    /// [`Volume::find`] then [`Volume::data_extents`]; the extents carry `path`.
    pub fn file_extents(&self, path: &str) -> Result<FileExtents> {
        let n = self.find(path)?;
        let mut fx = self.data_extents(n)?;
        fx.path = path.to_string();
        Ok(fx)
    }

    /// Reads `extents` (a slice of `fx.extents`) into `out`, which holds file bytes from
    /// `out_start` on; holes are left as they are.
    fn read_extents_into(
        &self,
        fx: &FileExtents,
        extents: &[Extent],
        out: &mut [u8],
        out_start: u64,
    ) -> Result<()> {
        for e in extents {
            let Some(d) = e.disk_offset else { continue };
            let Some(s) = e
                .file_offset
                .checked_sub(out_start)
                .and_then(|s| usize::try_from(s).ok())
            else {
                return Err(ntfs_err(d, "extent before the buffer"));
            };
            let Some(t) = s.checked_add(e.len as usize).filter(|&t| t <= out.len()) else {
                return Err(ntfs_err(d, "extent beyond data size"));
            };
            if d.saturating_add(e.len) > self.part_offset.saturating_add(self.part_len) {
                return Err(ntfs_err(d, "extent outside the partition"));
            }
            self.src
                .read_exact_at(&mut out[s..t], d)
                .map_err(|err| Error::io(format!("reading {} at {d:#x}", fx.path), err))?;
        }
        Ok(())
    }

    /// [`Volume::read_extents`] with the work split over two threads for files of 4 MiB and
    /// more (a hive of 10–100 MiB: most of the time goes to faulting in the fresh buffer, which
    /// two cores do in about half the time).
    pub fn read_extents_parallel(&self, fx: &FileExtents, max_len: u64) -> Result<Vec<u8>>
    where
        R: Sync,
    {
        self.read_extents_parallel_from(fx, max_len, PARALLEL_READ_FROM)
    }

    /// [`Volume::read_extents_parallel`] with the size from which two threads are used.
    pub fn read_extents_parallel_from(
        &self,
        fx: &FileExtents,
        max_len: u64,
        parallel_from: u64,
    ) -> Result<Vec<u8>>
    where
        R: Sync,
    {
        let plain = fx.data_size < parallel_from
            || fx.resident
            || fx.is_compressed()
            || fx.is_encrypted()
            || fx.extents.len() < 2;
        if plain || fx.data_size > max_len {
            return self.read_extents(fx, max_len);
        }
        // Split at the extent boundary nearest to the middle of the file.
        let half = fx.data_size / 2;
        let cut = fx
            .extents
            .partition_point(|e| e.file_offset.saturating_add(e.len) <= half)
            .clamp(1, fx.extents.len() - 1);
        let (first, second) = fx.extents.split_at(cut);
        let split = second[0].file_offset;
        if split == 0 || split > fx.data_size {
            return self.read_extents(fx, max_len);
        }
        let mut out = vec![0u8; fx.data_size as usize];
        let (a, b) = out.split_at_mut(split as usize);
        let (ra, rb) = std::thread::scope(|scope| {
            let other = scope.spawn(|| self.read_extents_into(fx, second, b, split));
            let ra = self.read_extents_into(fx, first, a, 0);
            (ra, other.join())
        });
        ra?;
        rb.map_err(|_| ntfs_err(self.part_offset, "reader thread panicked"))??;
        let vdl = fx.valid_data_length as usize;
        if vdl < out.len() {
            out[vdl..].fill(0);
        }
        Ok(out)
    }

    /// Reads the bytes of an unnamed `$DATA` described by `fx` (resident or not; sparse holes and
    /// bytes past the valid data length read as zeros, like `ntfscat`). Refuses compressed or
    /// encrypted data and streams larger than `max_len`.
    pub fn read_extents(&self, fx: &FileExtents, max_len: u64) -> Result<Vec<u8>> {
        if fx.data_size > max_len {
            return Err(Error::Invalid(format!(
                "{}: {} bytes exceed the read limit of {max_len}",
                fx.path, fx.data_size
            )));
        }
        if fx.is_compressed() || fx.is_encrypted() {
            return Err(ntfs_err(
                self.part_offset,
                format!("{}: compressed or encrypted data cannot be read", fx.path),
            ));
        }
        if fx.resident {
            let attrs = self.attributes(fx.record)?;
            let v = attrs
                .into_iter()
                .find_map(|a| match a.body {
                    AttrBody::Resident(v) if a.ty == attr_type::DATA && a.name.is_empty() => {
                        Some(v)
                    }
                    _ => None,
                })
                .ok_or_else(|| ntfs_err(self.part_offset, "resident $DATA vanished"))?;
            return Ok(v);
        }
        let mut out = vec![0u8; fx.data_size as usize];
        self.read_extents_into(fx, &fx.extents, &mut out, 0)?;
        let vdl = fx.valid_data_length as usize;
        if vdl < out.len() {
            out[vdl..].fill(0);
        }
        Ok(out)
    }

    /// Reads file `n`'s unnamed `$DATA` (at most `max_len` bytes, else an error).
    pub fn read_file(&self, n: u64, max_len: u64) -> Result<Vec<u8>> {
        let fx = self.data_extents(n)?;
        self.read_extents(&fx, max_len)
    }

    /// Reads the first `len` bytes (or fewer, if the file is shorter) of file `n`.
    pub fn read_file_prefix(&self, n: u64, len: u64) -> Result<Vec<u8>> {
        let fx = self.data_extents(n)?.prefix(len);
        let mut v = self.read_extents(&fx, len)?;
        v.truncate(len as usize);
        Ok(v)
    }

    /// Used clusters from `$Bitmap` (record 6) as sorted, merged LCN ranges.
    pub fn used_clusters(&self) -> Result<Vec<Range<u64>>> {
        let need = self.total_clusters.div_ceil(8);
        if need > MAX_BITMAP_LEN {
            return Err(ntfs_err(self.part_offset, "$Bitmap too large"));
        }
        let fx = self.data_extents(record::BITMAP)?;
        if fx.data_size < need {
            return Err(ntfs_err(
                self.part_offset,
                format!("$Bitmap has {} bytes, {need} needed", fx.data_size),
            ));
        }
        let bm = self.read_extents(&fx.prefix(need), MAX_BITMAP_LEN)?;
        let mut out: Vec<Range<u64>> = Vec::new();
        let mut start: Option<u64> = None;
        let total = self.total_clusters;
        for (i, &byte) in bm.iter().take(need as usize).enumerate() {
            let base = i as u64 * 8;
            match byte {
                0x00 => {
                    if let Some(s) = start.take() {
                        out.push(s..base);
                    }
                }
                0xFF => {
                    start.get_or_insert(base);
                }
                _ => {
                    for bit in 0..8u64 {
                        let c = base + bit;
                        if c >= total {
                            break;
                        }
                        let used = byte >> bit & 1 == 1;
                        match (used, start) {
                            (true, None) => start = Some(c),
                            (false, Some(s)) => {
                                out.push(s..c);
                                start = None;
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        if let Some(s) = start {
            out.push(s.min(total)..total);
        }
        out.retain(|r| r.start < r.end);
        for r in &mut out {
            r.end = r.end.min(total);
        }
        Ok(out)
    }

    /// Absolute disk byte ranges a copier must copy for this partition: the boot sector's
    /// cluster, all used clusters, and the partition's last sector (backup boot sector), sorted
    /// and merged.
    pub fn used_byte_ranges(&self) -> Result<Vec<Range<u64>>> {
        let cs = self.cluster_size;
        let mut v: Vec<Range<u64>> = Vec::new();
        v.push(self.part_offset..self.part_offset + cs.min(self.part_len));
        for r in self.used_clusters()? {
            v.push(self.part_offset + r.start * cs..self.part_offset + r.end * cs);
        }
        let bps = self.bytes_per_sector as u64;
        let pend = self.part_offset + self.part_len;
        if self.part_len >= bps {
            v.push(pend - bps..pend);
        }
        let vol_end = self.part_offset + self.total_sectors * bps;
        if vol_end + bps <= pend && vol_end != pend - bps {
            v.push(vol_end..vol_end + bps);
        }
        v.sort_by_key(|r| r.start);
        let mut out: Vec<Range<u64>> = Vec::new();
        for r in v {
            match out.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => out.push(r),
            }
        }
        Ok(out)
    }
}

/// Case map used when the volume's `$UpCase` cannot be read: Rust's simple one-to-one upper
/// case mapping for BMP code points.
fn simple_upcase(c: u16) -> u16 {
    match char::from_u32(c as u32) {
        Some(ch) => {
            let mut up = ch.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) if (u as u32) <= 0xFFFF => u as u32 as u16,
                _ => c,
            }
        }
        None => c,
    }
}
