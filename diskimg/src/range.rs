// SPDX-License-Identifier: MIT OR Apache-2.0
//! The exact copy range of a disk image, and copy plans that a streaming copier executes.
//!
//! The range is byte 0 to the end of the last partition (for MBR, the extended container's end
//! counts: it is an entry in the table). A prefix copy of a GPT disk leaves both GPT headers
//! pointing past the end (the backup is not copied, `last_usable` and the protective MBR name
//! the old size), so [`plan_copy`] offers two fixes:
//!
//! * [`GptFix::KeepBackup`] (a): the output keeps the original disk size (the LUN is thin, so
//!   the gap costs nothing) and the backup GPT (the last 33 sectors at 512 B, 5 at 4 KiB) is
//!   copied, or rebuilt when the image lacks it.
//! * [`GptFix::Relocate`] (b): the LUN is `end + backup sectors` rounded up to 1 MiB and the
//!   backup GPT moves to its new last LBA, as `sgdisk -e` writes it: new primary header,
//!   protective-MBR size, backup entry array and backup header as byte [`Patch`]es.
//!
//! A [`CopyPlan`] is: `output_len` bytes of output, zeros except where a [`CopySegment`]
//! copies source bytes, then every [`Patch`] overlaid. Segments and patches are sorted by
//! output offset and do not overlap, and every patch covers whole sectors.

use crate::partition::{
    crc32, GptHeader, HeaderCopy, MbrEntry, PartitionTable, Role, Scheme, GPT_REVISION_1_0,
};
use crate::patch::Patch;
use crate::{Error, ReadAt, Result};
use serde::Serialize;
use std::fmt::Write as _;
use std::ops::Range;

/// 1 MiB, the LUN rounding and the preferred partition alignment.
pub const MIB: u64 = 1 << 20;
/// COMSTAR's shared-metadata area at the start of a file-backed LU without `meta=`.
pub const COMSTAR_META_BYTES: u64 = 64 << 10;

/// How a partition start is aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Alignment {
    /// A multiple of 1 MiB (2048 × 512, 256 × 4096).
    OneMib,
    /// A multiple of 4 KiB but not of 1 MiB.
    FourKib,
    /// A multiple of 63 sectors (CHS-era layouts: slow on 4K and zvol backends).
    Legacy63,
    /// Anything else.
    Other,
}

/// Alignment of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionAlignment {
    /// Partition index.
    pub index: u32,
    /// First sector.
    pub start_lba: u64,
    /// First byte.
    pub start_byte: u64,
    /// Class.
    pub alignment: Alignment,
    /// Largest power of two (≤ 1 MiB) that divides the start byte.
    pub aligned_to: u64,
}

/// Classifies a start offset.
pub fn alignment_of(start_lba: u64, sector_size: u32) -> (Alignment, u64) {
    let start_byte = start_lba.saturating_mul(u64::from(sector_size));
    let aligned_to = if start_byte == 0 {
        MIB
    } else {
        (1u64 << start_byte.trailing_zeros().min(20)).min(MIB)
    };
    let a = if start_byte.is_multiple_of(MIB) {
        Alignment::OneMib
    } else if start_byte.is_multiple_of(4096) {
        Alignment::FourKib
    } else if start_lba.is_multiple_of(63) {
        Alignment::Legacy63
    } else {
        Alignment::Other
    };
    (a, aligned_to)
}

/// The exact range to copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyRange {
    /// MBR or GPT.
    pub scheme: Scheme,
    /// The disk's logical sector size.
    pub sector_size: u32,
    /// Copy `[0, end_bytes)`.
    pub end_bytes: u64,
    /// The same in the disk's sectors.
    pub end_sectors: u64,
    /// Image length in bytes.
    pub image_len: u64,
    /// Index of the partition that ends last (the extended container for MBR logicals).
    pub last_partition: Option<u32>,
    /// GPT: size of the disk the table was made for (`(backup LBA + 1) × sector size`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_disk_bytes: Option<u64>,
    /// GPT: sectors the backup GPT needs at the end (entry array + header: 33 at 512 B with
    /// 128 entries, 5 at 4 KiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_gpt_sectors: Option<u64>,
    /// Alignment of every partition.
    pub alignments: Vec<PartitionAlignment>,
}

/// Computes the copy range. Refuses (with the table's first error) damaged tables:
/// overlaps, partitions past the image end ([`Error::Truncated`]), EBR loops...
pub fn copy_range(t: &PartitionTable) -> Result<CopyRange> {
    t.check()?;
    let ss = u64::from(t.sector_size);
    let mut end_sectors = 1u64; // the MBR itself
    let mut last_partition = None;
    for p in &t.partitions {
        if p.end_lba() > end_sectors {
            end_sectors = p.end_lba();
            last_partition = Some(p.index);
        }
    }
    let (mut original_disk_bytes, mut backup_gpt_sectors) = (None, None);
    if let Some(g) = &t.gpt {
        let h = &g.header;
        // The primary's own structures: header and entry array.
        let primary_array_end = match g.used {
            HeaderCopy::Primary => h.entries_lba.saturating_add(h.array_sectors(t.sector_size)),
            HeaderCopy::Backup => 2u64.saturating_add(h.array_sectors(t.sector_size)),
        };
        end_sectors = end_sectors.max(primary_array_end);
        let backup_lba = match g.used {
            HeaderCopy::Primary => h.alternate_lba,
            HeaderCopy::Backup => h.my_lba,
        };
        original_disk_bytes = backup_lba.checked_add(1).and_then(|n| n.checked_mul(ss));
        backup_gpt_sectors = Some(h.array_sectors(t.sector_size) + 1);
    }
    let end_bytes = end_sectors
        .checked_mul(ss)
        .ok_or_else(|| Error::PartitionTable("copy range overflows".into()))?;
    if end_bytes > t.image_len {
        return Err(Error::Truncated {
            what: "the partition table structures".into(),
            needed: end_bytes,
            available: t.image_len,
        });
    }
    let alignments = t
        .partitions
        .iter()
        .filter(|p| p.role != Role::Extended)
        .map(|p| {
            let (alignment, aligned_to) = alignment_of(p.start_lba, t.sector_size);
            PartitionAlignment {
                index: p.index,
                start_lba: p.start_lba,
                start_byte: p.start_byte,
                alignment,
                aligned_to,
            }
        })
        .collect();
    Ok(CopyRange {
        scheme: t.scheme,
        sector_size: t.sector_size,
        end_bytes,
        end_sectors,
        image_len: t.image_len,
        last_partition,
        original_disk_bytes,
        backup_gpt_sectors,
        alignments,
    })
}

impl CopyRange {
    /// Human-readable summary.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Copy range: bytes 0..{} = {} sectors of {} B ({:.1} MiB){}",
            self.end_bytes,
            self.end_sectors,
            self.sector_size,
            self.end_bytes as f64 / MIB as f64,
            match self.last_partition {
                Some(i) => format!(", ends with partition {i}"),
                None => String::new(),
            }
        );
        let _ = writeln!(s, "Image length: {} bytes", self.image_len);
        if let Some(o) = self.original_disk_bytes {
            let _ = writeln!(
                s,
                "Original disk (GPT backup location): {o} bytes; backup GPT needs {} sectors",
                self.backup_gpt_sectors.unwrap_or(0)
            );
        }
        for a in &self.alignments {
            let _ = writeln!(
                s,
                "Partition {} at LBA {}: {}",
                a.index,
                a.start_lba,
                match a.alignment {
                    Alignment::OneMib => "1 MiB aligned".to_string(),
                    Alignment::FourKib => format!("4 KiB aligned (to {} bytes)", a.aligned_to),
                    Alignment::Legacy63 => "63-sector legacy alignment (not 4 KiB aligned)".into(),
                    Alignment::Other => format!("not 4 KiB aligned (to {} bytes)", a.aligned_to),
                }
            );
        }
        s
    }
}

/// How to fix the GPT of a prefix copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GptFix {
    /// (a) Keep the original disk size and copy (or rebuild) the backup GPT at its end.
    KeepBackup,
    /// (b) Move the backup GPT to the end of `end + backup` rounded up to 1 MiB (`sgdisk -e`).
    Relocate,
}

/// What a plan does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanKind {
    /// MBR: the prefix as is.
    Prefix,
    /// GPT fix (a).
    GptKeepBackup,
    /// GPT fix (b).
    GptRelocate,
}

/// Source bytes to copy to an output offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopySegment {
    /// Source byte range (half-open).
    pub src: Range<u64>,
    /// Output offset of `src.start`.
    pub dst_offset: u64,
}

/// What a patch is, for reports and for copiers that prefer to copy rather than write bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatchInfo {
    /// What the patch writes.
    pub what: String,
    /// Output offset (same as the patch's).
    pub offset: u64,
    /// Length.
    pub len: u64,
    /// If the patch bytes equal the source bytes at this offset, the offset (e.g. the backup
    /// entry array is a copy of the primary's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_as_src: Option<u64>,
}

/// Everything a streaming copier needs: output = zeros, then segments, then patches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyPlan {
    /// What the plan does.
    pub kind: PlanKind,
    /// The disk's logical sector size (also the LUN block size to use).
    pub sector_size: u32,
    /// Source ranges to copy, sorted by `dst_offset`, not overlapping.
    pub segments: Vec<CopySegment>,
    /// Total output length in bytes (gaps are zeros).
    pub output_len: u64,
    /// Byte patches over the output, sorted, not overlapping, whole sectors.
    pub patches: Vec<Patch>,
    /// One entry per patch, same order.
    pub patch_info: Vec<PatchInfo>,
    /// The LUN size to create, in bytes.
    pub lun_size: u64,
    /// Advice for the target admin (sector size, LUN size, COMSTAR, alignment, GPT).
    pub advice: Vec<String>,
}

fn round_up(v: u64, to: u64) -> Option<u64> {
    v.checked_add(to - 1).map(|x| x / to * to)
}

/// gdisk's LBA → CHS (255 heads, 63 sectors per track; past 1024 cylinders: FE FF FF).
pub fn lba_to_chs(lba: u64) -> [u8; 3] {
    const HEADS: u64 = 255;
    const SECTORS: u64 = 63;
    if lba >= HEADS * SECTORS * 1024 {
        return [0xFE, 0xFF, 0xFF];
    }
    let cyl = lba / (HEADS * SECTORS);
    let rem = lba % (HEADS * SECTORS);
    let head = rem / SECTORS;
    let sector = rem % SECTORS + 1;
    [
        head as u8,
        ((sector & 0x3F) | ((cyl >> 2) & 0xC0)) as u8,
        (cyl & 0xFF) as u8,
    ]
}

fn read_sector(r: &dyn ReadAt, lba: u64, ss: u32) -> Result<Vec<u8>> {
    let mut b = vec![0u8; ss as usize];
    let off = lba.saturating_mul(u64::from(ss));
    r.read_exact_at(&mut b, off)
        .map_err(|e| Error::io(format!("reading sector {lba} at byte {off}"), e))?;
    Ok(b)
}

/// Makes the plan for copying `t` (read from `r`). MBR tables ignore `fix`.
pub fn plan_copy(r: &dyn ReadAt, t: &PartitionTable, fix: GptFix) -> Result<CopyPlan> {
    let range = copy_range(t)?;
    let ss = u64::from(t.sector_size);
    let mut plan = CopyPlan {
        kind: PlanKind::Prefix,
        sector_size: t.sector_size,
        segments: vec![CopySegment {
            src: 0..range.end_bytes,
            dst_offset: 0,
        }],
        output_len: range.end_bytes,
        patches: Vec::new(),
        patch_info: Vec::new(),
        lun_size: 0,
        advice: Vec::new(),
    };
    let mut patches: Vec<(Patch, PatchInfo)> = Vec::new();
    let mut add = |offset: u64, bytes: Vec<u8>, what: String, same: Option<u64>| {
        let info = PatchInfo {
            what,
            offset,
            len: bytes.len() as u64,
            same_as_src: same,
        };
        patches.push((Patch { offset, bytes }, info));
    };
    match (&t.gpt, t.scheme) {
        (Some(g), Scheme::Gpt) => {
            let h = &g.header;
            let asec = h.array_sectors(t.sector_size);
            let array_padded = {
                let mut a = g.array.clone();
                a.resize(
                    usize::try_from(asec * ss)
                        .map_err(|_| Error::Invalid("array too big".into()))?,
                    0,
                );
                a
            };
            let array_crc = crc32(&g.array);
            // Where the primary array lives (and whether the source holds it intact).
            let (primary_entries_lba, primary_ok) = match (&g.primary, g.used) {
                (Some(p), HeaderCopy::Primary) => (p.entries_lba, true),
                _ => (2, false),
            };
            let primary_array_src = if primary_ok && g.array.len() as u64 == asec * ss {
                Some(primary_entries_lba * ss)
            } else {
                None
            };
            let make = |my: u64, alt: u64, last_usable: u64, entries: u64| GptHeader {
                revision: if h.revision == 0 {
                    GPT_REVISION_1_0
                } else {
                    h.revision
                },
                my_lba: my,
                alternate_lba: alt,
                last_usable,
                entries_lba: entries,
                entries_crc: array_crc,
                ..h.clone()
            };
            let (new_last, last_usable) = match fix {
                GptFix::KeepBackup => {
                    plan.kind = PlanKind::GptKeepBackup;
                    let orig = range.original_disk_bytes.ok_or_else(|| {
                        Error::PartitionTable("GPT backup location overflows".into())
                    })?;
                    let orig_last = orig / ss - 1;
                    if orig_last <= h.last_usable || orig_last < asec + 1 {
                        return Err(Error::PartitionTable(format!(
                            "GPT backup LBA {orig_last} is not after the last usable LBA {}",
                            h.last_usable
                        )));
                    }
                    (orig_last, h.last_usable)
                }
                GptFix::Relocate => {
                    plan.kind = PlanKind::GptRelocate;
                    // sgdisk -e: last_usable = total - first_usable (the backup area mirrors
                    // the primary's), so the LUN needs end - 1 + first_usable sectors. With the
                    // usual first_usable = 2 + A that is end + A + 1 (33 at 512 B, 5 at 4 KiB).
                    let mirror = h.first_usable >= asec + 2;
                    let tail = if mirror { h.first_usable - 1 } else { asec + 1 };
                    let need = range
                        .end_sectors
                        .checked_add(tail)
                        .and_then(|n| n.checked_mul(ss))
                        .and_then(|b| round_up(b, MIB))
                        .ok_or_else(|| Error::PartitionTable("LUN size overflows".into()))?;
                    let total = need / ss;
                    let new_last = total - 1;
                    let last_usable = if mirror {
                        total - h.first_usable
                    } else {
                        new_last - asec - 1
                    };
                    (new_last, last_usable)
                }
            };
            // The backup array follows the last usable LBA (as sgdisk writes it), or stays
            // where the original backup header has it (fix (a)).
            let backup_entries = match (&g.backup, fix) {
                (Some(b), GptFix::KeepBackup) if b.my_lba == new_last => b.entries_lba,
                _ => last_usable + 1,
            };
            if backup_entries.saturating_add(asec) > new_last {
                return Err(Error::PartitionTable(format!(
                    "no room for the backup GPT array ({asec} sectors) between last usable LBA {last_usable} and the backup header at LBA {new_last}"
                )));
            }
            let total_bytes = (new_last + 1) * ss;
            let keep_existing_backup = fix == GptFix::KeepBackup
                && g.backup
                    .as_ref()
                    .is_some_and(|b| b.my_lba == new_last && b.entries_lba == backup_entries)
                && total_bytes <= t.image_len
                && g.used == HeaderCopy::Primary;
            plan.output_len = total_bytes;
            plan.lun_size = total_bytes;
            // Protective MBR (pure protective only; never touch a hybrid MBR).
            if fix == GptFix::Relocate {
                if let (Some(slot), false) = (t.mbr.protective_slot, g.hybrid) {
                    let mut s0 = read_sector(r, 0, t.sector_size)?;
                    let at = 446 + 16 * (usize::from(slot) - 1);
                    if let Some(raw) = s0.get(at..at + 16) {
                        let mut e16 = [0u8; 16];
                        e16.copy_from_slice(raw);
                        let mut e = MbrEntry::parse(slot, &e16);
                        let size = (new_last + 1)
                            .saturating_sub(u64::from(e.start_lba))
                            .min(0xFFFF_FFFF);
                        e.sectors = size as u32;
                        e.chs_end = lba_to_chs(new_last);
                        if let Some(dst) = s0.get_mut(at..at + 16) {
                            dst.copy_from_slice(&e.to_bytes());
                        }
                        add(
                            0,
                            s0,
                            format!("protective MBR: 0xEE entry {slot} size {size} sectors"),
                            None,
                        );
                    }
                } else if g.hybrid {
                    plan.advice.push("hybrid MBR left as is: its 0xEE entry does not need to cover the disk; check the MBR entries yourself".into());
                }
            }
            // Primary header (and array, if it was damaged) when anything changes.
            if fix == GptFix::Relocate || !primary_ok {
                let ph = make(1, new_last, last_usable, primary_entries_lba);
                add(
                    ss,
                    ph.encode(t.sector_size),
                    format!("primary GPT header at LBA 1: backup LBA {new_last}, last usable LBA {last_usable}"),
                    None,
                );
            }
            if !primary_ok {
                add(
                    primary_entries_lba * ss,
                    array_padded.clone(),
                    format!(
                        "primary GPT entry array at LBA {primary_entries_lba} (from the backup)"
                    ),
                    None,
                );
            }
            if keep_existing_backup {
                plan.segments.push(CopySegment {
                    src: backup_entries * ss..total_bytes,
                    dst_offset: backup_entries * ss,
                });
            } else {
                add(
                    backup_entries * ss,
                    array_padded,
                    format!("backup GPT entry array at LBA {backup_entries}"),
                    primary_array_src,
                );
                let bh = make(new_last, 1, last_usable, backup_entries);
                add(
                    new_last * ss,
                    bh.encode(t.sector_size),
                    format!("backup GPT header at LBA {new_last}"),
                    None,
                );
            }
            if fix == GptFix::KeepBackup {
                plan.advice.push(format!(
                    "GPT fix (a): the LUN must be exactly the original disk size, {total_bytes} bytes ({} sectors of {ss} B), so the backup GPT stays on its last LBA; create it thin (sparse): the gap between byte {} and byte {} is zeros",
                    new_last + 1,
                    range.end_bytes,
                    backup_entries * ss
                ));
                if !total_bytes.is_multiple_of(MIB) {
                    plan.advice.push(format!("the original disk size {total_bytes} is not a multiple of 1 MiB: a backend that rounds the LUN up (zvol volblocksize) moves the last LBA; use fix (b) there"));
                }
            } else {
                plan.advice.push(format!(
                    "GPT fix (b): backup GPT moved to LBA {new_last} (as `sgdisk -e` does); the LUN must be {total_bytes} bytes = {} MiB ({} sectors of {ss} B)",
                    total_bytes / MIB,
                    new_last + 1
                ));
            }
        }
        _ => {
            plan.lun_size = round_up(range.end_bytes, MIB)
                .ok_or_else(|| Error::PartitionTable("LUN size overflows".into()))?;
            plan.advice.push(format!(
                "MBR: copy {} bytes; LUN size {} bytes ({} MiB, rounded up to 1 MiB)",
                range.end_bytes,
                plan.lun_size,
                plan.lun_size / MIB
            ));
        }
    }
    patches.sort_by_key(|(p, _)| p.offset);
    for (p, i) in patches {
        plan.patches.push(p);
        plan.patch_info.push(i);
    }
    plan.advice.extend(lun_advice(t, &range, plan.lun_size));
    Ok(plan)
}

/// LUN advice: block size, size rounding, COMSTAR metadata, alignment.
pub fn lun_advice(t: &PartitionTable, range: &CopyRange, lun_size: u64) -> Vec<String> {
    let ss = t.sector_size;
    let mut v = vec![format!(
        "the LUN block size must be {ss} bytes, the image's logical sector size (LIO `set attribute block_size={ss}`, COMSTAR `stmfadm create-lu -p blk={ss}`, tgt `--blocksize {ss}`); any other value misplaces every partition"
    )];
    if ss == 4096 {
        v.push("4Kn image: the initiator must see 4096-byte sectors; a 512-byte LUN would show no partitions".into());
    }
    if lun_size.is_multiple_of(MIB) {
        v.push(format!(
            "LUN size {lun_size} bytes is a multiple of 1 MiB (zvol: `zfs create -s -V {lun_size} -o compression=lz4 POOL/VOL`; volsize must be a multiple of volblocksize)"
        ));
    }
    v.push(format!(
        "COMSTAR with a plain file as backing store and no `-p meta=` keeps {COMSTAR_META_BYTES} bytes of LU metadata at the start of the file (data at offset 65536): use a zvol, `-p meta=FILE`, or write the image at file offset 65536"
    ));
    for a in &range.alignments {
        match a.alignment {
            Alignment::OneMib => {}
            Alignment::Legacy63 => v.push(format!(
                "partition {} starts at LBA {} (63-sector CHS-era alignment): slow on 4 KiB and zvol backends",
                a.index, a.start_lba
            )),
            Alignment::FourKib => v.push(format!(
                "partition {} starts at byte {}: 4 KiB aligned but not 1 MiB aligned (not aligned to volblocksize above {})",
                a.index, a.start_byte, a.aligned_to
            )),
            Alignment::Other => v.push(format!(
                "partition {} starts at byte {}: not 4 KiB aligned (slow on 4 KiB and zvol backends)",
                a.index, a.start_byte
            )),
        }
    }
    if t.gpt.as_ref().is_some_and(|g| g.hybrid) {
        v.push(
            "hybrid MBR: Windows and BIOS boot may use the MBR entries; keep them matching the GPT"
                .into(),
        );
    }
    v
}

/// Where a dd pipeline writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdTarget {
    /// Source image path.
    pub image: String,
    /// `ssh` host, or `None` to write locally.
    pub host: Option<String>,
    /// Target device or file on the host (e.g. `/dev/zvol/rdsk/pool/vol`).
    pub device: String,
}

/// Single-quotes a word for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:=@,%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Standard base64 (for patch bytes in shell lines).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [
            c[0],
            c.get(1).copied().unwrap_or(0),
            c.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                s.push(char::from(A[((n >> shift) & 63) as usize]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

impl CopyPlan {
    /// Shell lines that carry out the plan with `dd` (and `ssh`), in order. The first line
    /// streams the prefix with an exact byte count (`iflag=count_bytes`); the receiving `dd`
    /// uses separate `ibs=`/`obs=` (re-blocking) so that short pipe reads still become whole-block writes (GNU and illumos
    /// dd). Later segments and patches are written at their sector with `seek=` and
    /// `conv=notrunc` (patches that equal source bytes are copied from the image, the others
    /// go through `base64 -d` on the local side). The target must already have the size
    /// [`CopyPlan::lun_size`].
    pub fn dd_commands(&self, t: &DdTarget) -> Vec<String> {
        let ss = u64::from(self.sector_size);
        let img = shell_quote(&t.image);
        let sink = |args: String| -> String {
            let dd = format!("dd of={} {args}", shell_quote(&t.device));
            match &t.host {
                Some(h) => format!("ssh {} {}", shell_quote(h), shell_quote(&dd)),
                None => dd,
            }
        };
        let mut out = Vec::new();
        for s in &self.segments {
            let len = s.src.end.saturating_sub(s.src.start);
            if s.src.start == 0 && s.dst_offset == 0 {
                out.push(format!(
                    "dd if={img} bs=1M count={len} iflag=count_bytes status=progress | {}",
                    sink("ibs=1M obs=1M".into())
                ));
            } else {
                out.push(format!(
                    "dd if={img} bs={ss} skip={} count={} | {}",
                    s.src.start / ss,
                    len.div_ceil(ss),
                    sink(format!("obs={ss} seek={} conv=notrunc", s.dst_offset / ss))
                ));
            }
        }
        for (p, i) in self.patches.iter().zip(&self.patch_info) {
            let seek = format!("obs={ss} seek={} conv=notrunc", p.offset / ss);
            match i.same_as_src {
                Some(src) => out.push(format!(
                    "dd if={img} bs={ss} skip={} count={} | {}   # {}",
                    src / ss,
                    p.len().div_ceil(ss),
                    sink(seek),
                    i.what
                )),
                None => out.push(format!(
                    "printf '%s' '{}' | base64 -d | {}   # {}",
                    base64(&p.bytes),
                    sink(seek),
                    i.what
                )),
            }
        }
        out
    }

    /// The plan as a job for the streaming copier ([`crate::copy::copy`]): the segments, the
    /// output length, and the patches as output patches (no zero ranges, no hash, no sync;
    /// set those on the returned job as needed).
    pub fn to_copy_job(&self) -> crate::copy::CopyJob {
        crate::copy::CopyJob {
            segments: self
                .segments
                .iter()
                .map(|s| crate::copy::Segment {
                    src: s.src.clone(),
                    dst: s.dst_offset,
                })
                .collect(),
            output_len: self.output_len,
            output_patches: self.patches.clone(),
            ..crate::copy::CopyJob::default()
        }
    }

    /// Human-readable summary.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Copy plan ({:?}): output {} bytes, LUN size {} bytes, sector size {}",
            self.kind, self.output_len, self.lun_size, self.sector_size
        );
        for seg in &self.segments {
            let _ = writeln!(
                s,
                "  copy source bytes {}..{} to output offset {}",
                seg.src.start, seg.src.end, seg.dst_offset
            );
        }
        for i in &self.patch_info {
            let _ = writeln!(s, "  patch {} bytes at {}: {}", i.len, i.offset, i.what);
        }
        for a in &self.advice {
            let _ = writeln!(s, "advice: {a}");
        }
        s
    }

    /// Builds the whole output in memory (tests and small images only: `output_len` bytes).
    pub fn render(&self, r: &dyn ReadAt) -> Result<Vec<u8>> {
        let len = usize::try_from(self.output_len)
            .map_err(|_| Error::Invalid("output too big for memory".into()))?;
        let mut out = vec![0u8; len];
        for s in &self.segments {
            let n = usize::try_from(s.src.end.saturating_sub(s.src.start))
                .map_err(|_| Error::Invalid("segment too big".into()))?;
            let d = usize::try_from(s.dst_offset)
                .map_err(|_| Error::Invalid("segment offset too big".into()))?;
            let dst = out
                .get_mut(d..d.saturating_add(n))
                .ok_or_else(|| Error::Invalid("segment past the output end".into()))?;
            r.read_exact_at(dst, s.src.start)
                .map_err(|e| Error::io(format!("reading source at byte {}", s.src.start), e))?;
        }
        for p in &self.patches {
            if p.end().is_none_or(|e| e > self.output_len) {
                return Err(Error::PatchOutOfRange {
                    offset: p.offset,
                    len: p.len(),
                });
            }
            p.apply_to(&mut out, 0);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::read_table;

    fn mbr_image(parts: &[(u8, u32, u32)], len: usize) -> Vec<u8> {
        let mut img = vec![0u8; len];
        for (i, &(ty, start, size)) in parts.iter().enumerate() {
            let at = 446 + 16 * i;
            img[at + 4] = ty;
            img[at + 8..at + 12].copy_from_slice(&start.to_le_bytes());
            img[at + 12..at + 16].copy_from_slice(&size.to_le_bytes());
        }
        img[510] = 0x55;
        img[511] = 0xAA;
        img
    }

    /// A sparse-looking reader: only the first sector is data, the rest reads as zeros.
    struct Sparse {
        head: Vec<u8>,
        len: u64,
    }
    impl ReadAt for Sparse {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
            if offset >= self.len {
                return Ok(0);
            }
            let n = (buf.len() as u64).min(self.len - offset) as usize;
            buf[..n].fill(0);
            if offset < self.head.len() as u64 {
                let o = offset as usize;
                let m = n.min(self.head.len() - o);
                buf[..m].copy_from_slice(&self.head[o..o + m]);
            }
            Ok(n)
        }
        fn size(&self) -> std::io::Result<u64> {
            Ok(self.len)
        }
    }

    #[test]
    fn seed_example_mbr() {
        let head = mbr_image(&[(0x07, 2048, 204800), (0x07, 206848, 61233152)], 512);
        let r = Sparse {
            head,
            len: 61_440_000 * 512,
        };
        let t = read_table(&r, 512).unwrap();
        let c = copy_range(&t).unwrap();
        assert_eq!(c.end_sectors, 61_440_000);
        assert_eq!(c.end_bytes, 31_457_280_000);
        assert_eq!(c.last_partition, Some(2));
        assert!(c
            .alignments
            .iter()
            .all(|a| a.alignment == Alignment::OneMib));
        let p = plan_copy(&r, &t, GptFix::Relocate).unwrap();
        assert_eq!(p.output_len, 31_457_280_000);
        assert_eq!(p.lun_size, 31_457_280_000); // 30000 MiB exactly
        let dd = p.dd_commands(&DdTarget {
            image: "disk.img".into(),
            host: Some("host".into()),
            device: "/dev/zvol/rdsk/tank/win".into(),
        });
        assert_eq!(dd, vec!["dd if=disk.img bs=1M count=31457280000 iflag=count_bytes status=progress | ssh host 'dd of=/dev/zvol/rdsk/tank/win ibs=1M obs=1M'".to_string()]);
    }

    #[test]
    fn truncated_is_refused() {
        let head = mbr_image(&[(0x07, 2048, 204800)], 512);
        let r = Sparse { head, len: 1 << 20 };
        let t = read_table(&r, 512).unwrap();
        assert!(matches!(copy_range(&t), Err(Error::Truncated { .. })));
    }

    #[test]
    fn alignment_classes() {
        assert_eq!(alignment_of(2048, 512).0, Alignment::OneMib);
        assert_eq!(alignment_of(256, 4096).0, Alignment::OneMib);
        assert_eq!(alignment_of(8, 512).0, Alignment::FourKib);
        assert_eq!(alignment_of(63, 512).0, Alignment::Legacy63);
        assert_eq!(alignment_of(65, 512).0, Alignment::Other);
    }

    #[test]
    fn chs_and_base64() {
        assert_eq!(lba_to_chs(83967), [0x39, 0x34, 0x05]);
        assert_eq!(lba_to_chs(131071), [0x28, 0x20, 0x08]);
        assert_eq!(lba_to_chs(1 << 30), [0xFE, 0xFF, 0xFF]);
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
    }
}
