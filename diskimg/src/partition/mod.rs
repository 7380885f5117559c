// SPDX-License-Identifier: MIT OR Apache-2.0
//! Partition tables: MBR (primary, extended and logical partitions), GPT with its protective
//! MBR, hybrid MBRs; 512- and 4096-byte sectors.
//!
//! Our own parser (not the `gpt`/`mbrman` crates, which are test cross-checks only): `gpt`
//! panics on some corrupt headers and needs `Write` even to read, `mbrman` fails the whole read
//! on a bad boot flag, and neither checks overlaps or entries past the end. Every read goes
//! through [`ReadAt`], every offset that comes from the image is checked, loops are bounded by
//! the named limits below, and damage becomes an [`Issue`] (warning or error) instead of a
//! panic. [`PartitionTable::check`] turns the first error-severity issue into an [`Error`].
//!
//! Start with [`read_table`] (or [`crate::disk::Disk::open`], which also detects the sector
//! size).

mod fs;
mod sfdisk;
mod types;

pub use fs::{boot_sector_bytes_per_sector, detect as detect_filesystem, Filesystem};
pub use types::{crc32, gpt_type_name, is_extended_type, mbr_type_name, Guid, GPT_TYPES};

use crate::{Error, ReadAt, Result};
use serde::Serialize;
use std::collections::HashSet;

/// Most logical partitions followed in an EBR chain.
pub const MAX_LOGICAL_PARTITIONS: usize = 256;
/// Most GPT entries accepted in a header (the usual value is 128).
pub const MAX_GPT_ENTRIES: u32 = 4096;
/// Largest GPT entry size accepted (must also be 128 × 2^n).
pub const MAX_GPT_ENTRY_SIZE: u32 = 4096;
/// Largest GPT entry array read, in bytes.
pub const MAX_GPT_ARRAY_BYTES: u64 = 1 << 20;
/// The GPT header revision 1.0.
pub const GPT_REVISION_1_0: u32 = 0x0001_0000;
/// Size of the GPT header fields defined by UEFI (the rest of the sector is reserved).
pub const GPT_HEADER_SIZE: u32 = 92;
/// "EFI PART".
pub const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";

/// Which table describes the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// MBR (DOS) table.
    Mbr,
    /// GPT (with a protective or hybrid MBR).
    Gpt,
}

/// Severity of an [`Issue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth saying; the layout is still usable.
    Warning,
    /// The layout cannot be trusted for copying: planning refuses.
    Error,
}

/// What kind of damage or oddity an [`Issue`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IssueKind {
    /// Two partitions share sectors.
    Overlap,
    /// A partition (or table structure) ends past the image end.
    BeyondEnd,
    /// The EBR chain links back to an EBR already visited.
    EbrLoop,
    /// The EBR chain links backwards (allowed, but unusual; mbrman refuses it).
    EbrBackward,
    /// An EBR is damaged (no signature, link outside the extended partition).
    EbrDamaged,
    /// More logical partitions than [`MAX_LOGICAL_PARTITIONS`].
    TooManyLogicals,
    /// A logical partition lies outside its extended container.
    OutsideExtended,
    /// More than one extended partition in the MBR.
    MultipleExtended,
    /// An MBR entry field is odd (boot flag, zero size...).
    MbrEntry,
    /// The primary GPT header or its entry array is damaged; the backup was used.
    GptPrimaryDamaged,
    /// The backup GPT header or its entry array is missing or damaged.
    GptBackupDamaged,
    /// Primary and backup GPT headers disagree.
    GptMismatch,
    /// A GPT entry is invalid (first LBA > last LBA, overflow).
    GptEntry,
    /// A GPT partition lies outside the header's usable range.
    OutsideUsable,
    /// The GPT's usable range or backup location is beyond the image end (a prefix copy).
    GptBeyondEnd,
    /// The protective MBR's 0xEE entry does not cover the disk as it should.
    ProtectiveMbr,
    /// A hybrid MBR (0xEE plus other entries).
    HybridMbr,
    /// A hybrid MBR entry does not match any GPT partition.
    HybridMismatch,
    /// A GPT header was found without a protective MBR (or the reverse).
    SchemeConflict,
    /// Anything else.
    Other,
}

/// One finding about the table: damage or an oddity, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// Warning or error.
    pub severity: Severity,
    /// What kind of problem.
    pub kind: IssueKind,
    /// Human-readable message saying what and where.
    pub message: String,
    /// For [`IssueKind::BeyondEnd`]: the byte where the structure ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<u64>,
}

/// How a partition is held in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// MBR primary entry (index 1–4).
    Primary,
    /// MBR extended container (index 1–4); its logicals follow.
    Extended,
    /// MBR logical partition (index 5+).
    Logical,
    /// GPT entry (1-based entry index).
    Gpt,
}

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    /// MBR: 1–4 primary, 5+ logical; GPT: 1-based entry index in the array.
    pub index: u32,
    /// Primary, extended, logical or GPT.
    pub role: Role,
    /// MBR type byte (MBR partitions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mbr_type: Option<u8>,
    /// GPT partition type GUID (GPT partitions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub type_guid: Option<Guid>,
    /// Name of the type.
    pub type_name: String,
    /// First sector (in the disk's sector size).
    pub start_lba: u64,
    /// Length in sectors.
    pub sectors: u64,
    /// First byte.
    pub start_byte: u64,
    /// Length in bytes.
    pub len_bytes: u64,
    /// MBR boot flag 0x80.
    pub bootable: bool,
    /// GPT partition name (UTF-16LE label), if not empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// GPT unique partition GUID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guid: Option<Guid>,
    /// GPT attribute bits (0 for MBR).
    pub attributes: u64,
    /// What the partition's first sector shows.
    pub filesystem: Filesystem,
}

impl Partition {
    /// One past the last sector.
    pub fn end_lba(&self) -> u64 {
        self.start_lba.saturating_add(self.sectors)
    }
    /// One past the last byte.
    pub fn end_byte(&self) -> u64 {
        self.start_byte.saturating_add(self.len_bytes)
    }
    /// The MBR type byte as sfdisk prints it, or the GPT type GUID.
    pub fn type_id(&self) -> String {
        match (self.mbr_type, self.type_guid) {
            (Some(t), _) => format!("{t:#04x}"),
            (None, Some(g)) => g.to_string(),
            _ => String::new(),
        }
    }
}

/// One raw MBR entry (also used for EBR entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MbrEntry {
    /// Slot 1–4.
    pub slot: u8,
    /// Boot indicator (0x00 or 0x80).
    pub boot: u8,
    /// CHS of the first sector (ignored).
    pub chs_start: [u8; 3],
    /// Partition type.
    pub kind: u8,
    /// CHS of the last sector (ignored).
    pub chs_end: [u8; 3],
    /// First LBA.
    pub start_lba: u32,
    /// Number of sectors.
    pub sectors: u32,
}

impl MbrEntry {
    /// Parses the 16-byte entry for `slot`.
    pub fn parse(slot: u8, e: &[u8; 16]) -> MbrEntry {
        MbrEntry {
            slot,
            boot: e[0],
            chs_start: [e[1], e[2], e[3]],
            kind: e[4],
            chs_end: [e[5], e[6], e[7]],
            start_lba: u32::from_le_bytes([e[8], e[9], e[10], e[11]]),
            sectors: u32::from_le_bytes([e[12], e[13], e[14], e[15]]),
        }
    }
    /// Encodes the entry back to 16 bytes.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut e = [0u8; 16];
        e[0] = self.boot;
        e[1..4].copy_from_slice(&self.chs_start);
        e[4] = self.kind;
        e[5..8].copy_from_slice(&self.chs_end);
        e[8..12].copy_from_slice(&self.start_lba.to_le_bytes());
        e[12..16].copy_from_slice(&self.sectors.to_le_bytes());
        e
    }
    /// True if the type is not 0.
    pub fn is_used(&self) -> bool {
        self.kind != 0
    }
}

/// The MBR in sector 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MbrInfo {
    /// The 0x55AA signature is present.
    pub signature_ok: bool,
    /// Disk signature at 0x1B8 (sfdisk's `label-id`).
    pub disk_signature: u32,
    /// The four primary entries (empty ones too).
    pub entries: Vec<MbrEntry>,
    /// Slot (1–4) of the 0xEE protective entry, if any.
    pub protective_slot: Option<u8>,
    /// Extended container, as (start LBA, sectors).
    pub extended: Option<(u64, u64)>,
}

/// A parsed GPT header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GptHeader {
    /// Revision (0x00010000).
    pub revision: u32,
    /// Header size in bytes (92).
    pub header_size: u32,
    /// Stored header CRC32.
    pub header_crc: u32,
    /// LBA of this header.
    pub my_lba: u64,
    /// LBA of the other header.
    pub alternate_lba: u64,
    /// First usable LBA.
    pub first_usable: u64,
    /// Last usable LBA (inclusive).
    pub last_usable: u64,
    /// Disk GUID.
    pub disk_guid: Guid,
    /// LBA of the entry array.
    pub entries_lba: u64,
    /// Number of entries.
    pub num_entries: u32,
    /// Size of one entry.
    pub entry_size: u32,
    /// CRC32 of the entry array.
    pub entries_crc: u32,
    /// The raw `header_size` bytes as read (to keep reserved bytes when re-encoding).
    #[serde(skip)]
    pub raw: Vec<u8>,
}

impl GptHeader {
    /// Bytes in the entry array.
    pub fn array_bytes(&self) -> u64 {
        u64::from(self.num_entries) * u64::from(self.entry_size)
    }
    /// Sectors the entry array takes.
    pub fn array_sectors(&self, sector_size: u32) -> u64 {
        self.array_bytes().div_ceil(u64::from(sector_size.max(1)))
    }

    /// Encodes the header into one sector (`sector_size` bytes): the fields, the reserved
    /// bytes kept from [`GptHeader::raw`] up to `header_size`, a freshly computed header CRC,
    /// and zeros to the end of the sector.
    pub fn encode(&self, sector_size: u32) -> Vec<u8> {
        let hs = (self.header_size.max(GPT_HEADER_SIZE) as usize).min(sector_size as usize);
        let mut s = vec![0u8; sector_size as usize];
        if let (Some(dst), Some(src)) = (s.get_mut(..hs), self.raw.get(..hs)) {
            dst.copy_from_slice(src);
        }
        s[0..8].copy_from_slice(GPT_SIGNATURE);
        s[8..12].copy_from_slice(&self.revision.to_le_bytes());
        s[12..16].copy_from_slice(&(hs as u32).to_le_bytes());
        s[16..20].fill(0);
        s[20..24].fill(0);
        s[24..32].copy_from_slice(&self.my_lba.to_le_bytes());
        s[32..40].copy_from_slice(&self.alternate_lba.to_le_bytes());
        s[40..48].copy_from_slice(&self.first_usable.to_le_bytes());
        s[48..56].copy_from_slice(&self.last_usable.to_le_bytes());
        s[56..72].copy_from_slice(&self.disk_guid.0);
        s[72..80].copy_from_slice(&self.entries_lba.to_le_bytes());
        s[80..84].copy_from_slice(&self.num_entries.to_le_bytes());
        s[84..88].copy_from_slice(&self.entry_size.to_le_bytes());
        s[88..92].copy_from_slice(&self.entries_crc.to_le_bytes());
        let crc = crc32(&s[..hs]);
        s[16..20].copy_from_slice(&crc.to_le_bytes());
        s
    }
}

/// Which GPT header the layout came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HeaderCopy {
    /// The primary at LBA 1.
    Primary,
    /// The backup (usually at the last LBA).
    Backup,
}

/// GPT facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GptInfo {
    /// The header the partitions were read from.
    pub header: GptHeader,
    /// Which one that is.
    pub used: HeaderCopy,
    /// The primary header, if valid (header and array CRCs).
    pub primary: Option<GptHeader>,
    /// The backup header, if found and valid.
    pub backup: Option<GptHeader>,
    /// The raw entry array (`num_entries × entry_size` bytes) of the header used.
    #[serde(skip)]
    pub array: Vec<u8>,
    /// The MBR is hybrid (0xEE plus other entries).
    pub hybrid: bool,
}

/// A parsed partition table with everything found wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionTable {
    /// MBR or GPT.
    pub scheme: Scheme,
    /// Logical sector size the table was read with.
    pub sector_size: u32,
    /// Image length in bytes.
    pub image_len: u64,
    /// Sector 0 (always read).
    pub mbr: MbrInfo,
    /// GPT facts (GPT only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpt: Option<GptInfo>,
    /// Partitions in table order: MBR primaries (extended container included, role
    /// `Extended`) then logicals; GPT entries by index.
    pub partitions: Vec<Partition>,
    /// Damage and oddities, in the order found.
    pub issues: Vec<Issue>,
}

impl PartitionTable {
    /// Disk identifier as sfdisk prints it: `0x%08x` for MBR, the GUID for GPT.
    pub fn label_id(&self) -> String {
        match &self.gpt {
            Some(g) => g.header.disk_guid.to_string(),
            None => format!("0x{:08x}", self.mbr.disk_signature),
        }
    }

    /// Image length in whole sectors.
    pub fn image_sectors(&self) -> u64 {
        self.image_len / u64::from(self.sector_size.max(1))
    }

    /// Partitions that hold data (everything but the extended container).
    pub fn data_partitions(&self) -> impl Iterator<Item = &Partition> {
        self.partitions.iter().filter(|p| p.role != Role::Extended)
    }

    /// Warnings only.
    pub fn warnings(&self) -> impl Iterator<Item = &Issue> {
        self.issues
            .iter()
            .filter(|i| i.severity == Severity::Warning)
    }

    /// Errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Issue> {
        self.issues.iter().filter(|i| i.severity == Severity::Error)
    }

    /// `Ok` if no error-severity issue was found; otherwise the first one as an [`Error`]
    /// ([`Error::Truncated`] for partitions past the image end, [`Error::PartitionTable`]
    /// otherwise).
    pub fn check(&self) -> Result<()> {
        match self.errors().next() {
            None => Ok(()),
            Some(i) => Err(match (i.kind, i.end) {
                (IssueKind::BeyondEnd, Some(end)) => Error::Truncated {
                    what: i.message.clone(),
                    needed: end,
                    available: self.image_len,
                },
                _ => Error::PartitionTable(i.message.clone()),
            }),
        }
    }

    /// The `sfdisk -d` dump of this table for device name `device` (see [`sfdisk`](self)).
    pub fn sfdisk_dump(&self, device: &str) -> String {
        sfdisk::dump(self, device)
    }

    /// A human-readable listing: scheme, sector size, partitions and issues.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let ss = self.sector_size;
        s.push_str(&format!(
            "Scheme: {}{}  sector size: {} B  image: {} bytes ({} sectors)\n",
            match self.scheme {
                Scheme::Mbr => "MBR",
                Scheme::Gpt => "GPT",
            },
            if self.gpt.as_ref().is_some_and(|g| g.hybrid) {
                " (hybrid MBR)"
            } else {
                ""
            },
            ss,
            self.image_len,
            self.image_sectors()
        ));
        s.push_str(&format!("Disk identifier: {}\n", self.label_id()));
        if let Some(g) = &self.gpt {
            s.push_str(&format!(
                "GPT: {:?} header used, usable LBAs {}..={}, {} entries of {} bytes at LBA {}\n",
                g.used,
                g.header.first_usable,
                g.header.last_usable,
                g.header.num_entries,
                g.header.entry_size,
                g.header.entries_lba
            ));
        }
        s.push_str(&format!(
            "{:>3} {:<9} {:>12} {:>12} {:>16} {:<10} {}\n",
            "#", "role", "start", "sectors", "bytes", "fs", "type / name"
        ));
        for p in &self.partitions {
            let mut t = format!("{} ({})", p.type_name, p.type_id());
            if let Some(n) = &p.name {
                t.push_str(&format!(" \"{n}\""));
            }
            if p.bootable {
                t.push_str(" [boot]");
            }
            if p.attributes != 0 {
                t.push_str(&format!(" attrs={:#x}", p.attributes));
            }
            s.push_str(&format!(
                "{:>3} {:<9} {:>12} {:>12} {:>16} {:<10} {}\n",
                p.index,
                format!("{:?}", p.role).to_lowercase(),
                p.start_lba,
                p.sectors,
                p.len_bytes,
                p.filesystem.name(),
                t
            ));
        }
        for i in &self.issues {
            s.push_str(&format!(
                "{}: {}\n",
                match i.severity {
                    Severity::Warning => "warning",
                    Severity::Error => "error",
                },
                i.message
            ));
        }
        s
    }
}

/// Collects issues during parsing.
#[derive(Default)]
struct Issues(Vec<Issue>);

impl Issues {
    fn warn(&mut self, kind: IssueKind, message: String) {
        self.0.push(Issue {
            severity: Severity::Warning,
            kind,
            message,
            end: None,
        });
    }
    fn error(&mut self, kind: IssueKind, message: String) {
        self.0.push(Issue {
            severity: Severity::Error,
            kind,
            message,
            end: None,
        });
    }
    fn beyond_end(&mut self, message: String, end: u64) {
        self.0.push(Issue {
            severity: Severity::Error,
            kind: IssueKind::BeyondEnd,
            message,
            end: Some(end),
        });
    }
}

fn read_bytes(r: &dyn ReadAt, offset: u64, len: usize, what: &str) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    r.read_exact_at(&mut buf, offset)
        .map_err(|e| Error::io(format!("reading {what} at offset {offset}"), e))?;
    Ok(buf)
}

/// Reads up to `len` bytes at `offset`, `None` if the image ends earlier or on error.
fn try_read(r: &dyn ReadAt, offset: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    r.read_exact_at(&mut buf, offset).ok()?;
    Some(buf)
}

fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .unwrap_or(0)
}

fn le64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .map(|s| {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            u64::from_le_bytes(a)
        })
        .unwrap_or(0)
}

fn mbr_entries(sector: &[u8]) -> Vec<MbrEntry> {
    (0..4u8)
        .map(|i| {
            let at = 446 + 16 * usize::from(i);
            let mut e = [0u8; 16];
            if let Some(s) = sector.get(at..at + 16) {
                e.copy_from_slice(s);
            }
            MbrEntry::parse(i + 1, &e)
        })
        .collect()
}

/// True if `sector` (the first 512 bytes at some offset) starts a GPT header signature.
fn has_gpt_signature(r: &dyn ReadAt, offset: u64) -> bool {
    try_read(r, offset, 8).is_some_and(|b| b.as_slice() == GPT_SIGNATURE)
}

/// How the sector size was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SectorSizeGuess {
    /// 512 or 4096.
    pub sector_size: u32,
    /// Why (for the report).
    pub reason: String,
}

/// Guesses the logical sector size of a raw image: a GPT header signature at byte 512 → 512,
/// at byte 4096 → 4096; else the boot sector (NTFS/FAT/exFAT) of the first MBR partition at
/// `start × 512` or `start × 4096` (its BPB bytes-per-sector must agree); else 512.
pub fn detect_sector_size(r: &dyn ReadAt) -> SectorSizeGuess {
    if has_gpt_signature(r, 512) {
        return SectorSizeGuess {
            sector_size: 512,
            reason: "GPT header signature at byte 512".into(),
        };
    }
    if has_gpt_signature(r, 4096) {
        return SectorSizeGuess {
            sector_size: 4096,
            reason: "GPT header signature at byte 4096".into(),
        };
    }
    if let Some(mbr) = try_read(r, 0, 512) {
        if mbr.get(510..512) == Some(&[0x55, 0xAA]) {
            let first = mbr_entries(&mbr)
                .into_iter()
                .find(|e| e.is_used() && e.kind != 0xEE && !is_extended_type(e.kind));
            if let Some(e) = first {
                let start = u64::from(e.start_lba);
                for ss in [512u32, 4096] {
                    let Some(off) = start.checked_mul(u64::from(ss)) else {
                        continue;
                    };
                    if let Some(bs) = try_read(r, off, 512) {
                        if boot_sector_bytes_per_sector(&bs) == Some(ss) {
                            return SectorSizeGuess {
                                sector_size: ss,
                                reason: format!(
                                    "{} boot sector of partition {} at byte {off} (start {start} × {ss}) says {ss} bytes per sector",
                                    detect_filesystem(&bs).name(),
                                    e.slot
                                ),
                            };
                        }
                    }
                }
            }
        }
    }
    SectorSizeGuess {
        sector_size: 512,
        reason: "no GPT header and no boot sector that says otherwise: assuming 512".into(),
    }
}

/// Reads the partition table of `r` with logical sector size `sector_size` (512 or 4096;
/// other powers of two from 512 to 65536 are accepted too).
///
/// Fails only when there is no table at all (no 0x55AA signature and no GPT), on I/O errors
/// reading sector 0, or when a GPT is announced by a protective MBR but neither header is
/// valid. Everything else is reported in [`PartitionTable::issues`].
pub fn read_table(r: &dyn ReadAt, sector_size: u32) -> Result<PartitionTable> {
    if !(512..=65536).contains(&sector_size) || !sector_size.is_power_of_two() {
        return Err(Error::Invalid(format!(
            "sector size {sector_size} (must be a power of two from 512 to 65536)"
        )));
    }
    let image_len = r
        .size()
        .map_err(|e| Error::io("getting the image size", e))?;
    if image_len < 512 {
        return Err(Error::Truncated {
            what: "the MBR (sector 0)".into(),
            needed: 512,
            available: image_len,
        });
    }
    let sector0 = read_bytes(r, 0, 512, "the MBR")?;
    let mut issues = Issues::default();
    let signature_ok = sector0.get(510..512) == Some(&[0x55, 0xAA]);
    let entries = mbr_entries(&sector0);
    let protective_slot = entries.iter().find(|e| e.kind == 0xEE).map(|e| e.slot);
    let mut mbr = MbrInfo {
        signature_ok,
        disk_signature: le32(&sector0, 0x1B8),
        entries,
        protective_slot,
        extended: None,
    };
    let ss = u64::from(sector_size);
    let gpt_sig = has_gpt_signature(r, ss);

    let use_gpt = if signature_ok && protective_slot.is_some() {
        true
    } else if gpt_sig {
        if signature_ok {
            issues.warn(
                IssueKind::SchemeConflict,
                format!("a GPT header signature is at LBA 1 (byte {ss}) but the MBR has no 0xEE protective entry: using the MBR, as sfdisk and Linux do"),
            );
            false
        } else {
            issues.warn(
                IssueKind::SchemeConflict,
                "no MBR signature 0x55AA at byte 510, but a GPT header at LBA 1: using the GPT"
                    .into(),
            );
            true
        }
    } else if signature_ok {
        false
    } else {
        return Err(Error::PartitionTable(format!(
            "no partition table: no MBR signature 0x55AA at byte 510 and no GPT header at byte {ss}"
        )));
    };

    let mut table = PartitionTable {
        scheme: if use_gpt { Scheme::Gpt } else { Scheme::Mbr },
        sector_size,
        image_len,
        mbr: mbr.clone(),
        gpt: None,
        partitions: Vec::new(),
        issues: Vec::new(),
    };
    if use_gpt {
        let (gpt, parts) = read_gpt(r, sector_size, image_len, &mbr, &mut issues)?;
        table.gpt = Some(gpt);
        table.partitions = parts;
    } else {
        table.partitions = read_mbr(r, sector_size, image_len, &mut mbr, &mut issues);
        table.mbr = mbr;
    }
    check_layout(&table, &mut issues);
    for p in &mut table.partitions {
        if p.role == Role::Extended {
            p.filesystem = Filesystem::NotProbed;
            continue;
        }
        p.filesystem = match try_read(r, p.start_byte, 512) {
            Some(b) => detect_filesystem(&b),
            None => Filesystem::Unreadable,
        };
    }
    table.issues = issues.0;
    Ok(table)
}

fn mbr_partition(
    index: u32,
    role: Role,
    e: &MbrEntry,
    start: u64,
    ss: u64,
    issues: &mut Issues,
) -> Option<Partition> {
    let sectors = u64::from(e.sectors);
    let (Some(start_byte), Some(len_bytes)) = (start.checked_mul(ss), sectors.checked_mul(ss))
    else {
        issues.error(
            IssueKind::MbrEntry,
            format!("partition {index}: byte offset overflows"),
        );
        return None;
    };
    Some(Partition {
        index,
        role,
        mbr_type: Some(e.kind),
        type_guid: None,
        type_name: mbr_type_name(e.kind).into(),
        start_lba: start,
        sectors,
        start_byte,
        len_bytes,
        bootable: e.boot == 0x80,
        name: None,
        guid: None,
        attributes: 0,
        filesystem: Filesystem::NotProbed,
    })
}

fn read_mbr(
    r: &dyn ReadAt,
    sector_size: u32,
    image_len: u64,
    mbr: &mut MbrInfo,
    issues: &mut Issues,
) -> Vec<Partition> {
    let ss = u64::from(sector_size);
    let mut parts = Vec::new();
    let mut extended: Option<(u64, u64, u8)> = None;
    for e in mbr.entries.clone() {
        if !e.is_used() {
            continue;
        }
        if e.boot != 0 && e.boot != 0x80 {
            issues.warn(
                IssueKind::MbrEntry,
                format!(
                    "partition {}: boot flag {:#04x} is neither 0x00 nor 0x80 (byte {})",
                    e.slot,
                    e.boot,
                    446 + 16 * (u32::from(e.slot) - 1)
                ),
            );
        }
        if e.sectors == 0 {
            issues.warn(
                IssueKind::MbrEntry,
                format!(
                    "partition {}: type {:#04x} but size 0: ignored",
                    e.slot, e.kind
                ),
            );
            continue;
        }
        let ext = is_extended_type(e.kind);
        if ext && extended.is_some() {
            issues.warn(
                IssueKind::MultipleExtended,
                format!(
                    "partition {}: a second extended partition; only the first one's logicals are read",
                    e.slot
                ),
            );
        } else if ext {
            extended = Some((u64::from(e.start_lba), u64::from(e.sectors), e.slot));
        }
        let role = if ext { Role::Extended } else { Role::Primary };
        if let Some(p) = mbr_partition(
            u32::from(e.slot),
            role,
            &e,
            u64::from(e.start_lba),
            ss,
            issues,
        ) {
            parts.push(p);
        }
    }
    if let Some((ext_start, ext_len, slot)) = extended {
        mbr.extended = Some((ext_start, ext_len));
        read_ebr_chain(
            r, ss, image_len, ext_start, ext_len, slot, &mut parts, issues,
        );
    }
    parts
}

#[allow(clippy::too_many_arguments)]
fn read_ebr_chain(
    r: &dyn ReadAt,
    ss: u64,
    image_len: u64,
    ext_start: u64,
    ext_len: u64,
    slot: u8,
    parts: &mut Vec<Partition>,
    issues: &mut Issues,
) {
    let ext_end = ext_start.saturating_add(ext_len);
    let mut visited = HashSet::new();
    let mut ebr = ext_start;
    let mut index = 5u32;
    let mut steps = 0usize;
    loop {
        steps += 1;
        if steps > MAX_LOGICAL_PARTITIONS {
            issues.error(
                IssueKind::TooManyLogicals,
                format!("EBR chain longer than {MAX_LOGICAL_PARTITIONS} links: stopped at EBR LBA {ebr}"),
            );
            break;
        }
        if !visited.insert(ebr) {
            issues.error(
                IssueKind::EbrLoop,
                format!("EBR chain loops: LBA {ebr} is linked a second time"),
            );
            break;
        }
        let Some(off) = ebr.checked_mul(ss) else {
            issues.error(
                IssueKind::EbrDamaged,
                format!("EBR at LBA {ebr}: offset overflows"),
            );
            break;
        };
        let Some(sec) = try_read(r, off, 512) else {
            issues.beyond_end(
                format!("EBR at LBA {ebr} (byte {off}) is past the image end ({image_len} bytes)"),
                off.saturating_add(512),
            );
            break;
        };
        if sec.get(510..512) != Some(&[0x55, 0xAA]) {
            issues.error(
                IssueKind::EbrDamaged,
                format!("EBR at LBA {ebr} (byte {off}) has no 0x55AA signature: chain stopped"),
            );
            break;
        }
        let es = mbr_entries(&sec);
        let (Some(logical), Some(link)) = (es.first(), es.get(1)) else {
            break;
        };
        for extra in es.iter().skip(2).filter(|e| e.is_used()) {
            issues.warn(
                IssueKind::EbrDamaged,
                format!(
                    "EBR at LBA {ebr}: entry {} is used (type {:#04x}); ignored",
                    extra.slot, extra.kind
                ),
            );
        }
        if logical.is_used() && logical.sectors > 0 {
            let start = ebr.saturating_add(u64::from(logical.start_lba));
            if let Some(p) = mbr_partition(index, Role::Logical, logical, start, ss, issues) {
                if p.start_lba < ext_start || p.end_lba() > ext_end || p.start_lba <= ebr {
                    issues.error(
                        IssueKind::OutsideExtended,
                        format!(
                            "logical partition {index} (LBAs {}..{}) is not inside the extended partition {slot} (LBAs {ext_start}..{ext_end}) after its EBR at LBA {ebr}",
                            p.start_lba,
                            p.end_lba()
                        ),
                    );
                }
                parts.push(p);
                index += 1;
            }
        }
        if !link.is_used() || link.start_lba == 0 {
            break;
        }
        if !is_extended_type(link.kind) {
            issues.warn(
                IssueKind::EbrDamaged,
                format!(
                    "EBR at LBA {ebr}: link entry has type {:#04x}, not an extended type; followed anyway",
                    link.kind
                ),
            );
        }
        let next = ext_start.saturating_add(u64::from(link.start_lba));
        if next >= ext_end {
            issues.error(
                IssueKind::EbrDamaged,
                format!("EBR at LBA {ebr} links to LBA {next}, outside the extended partition (ends at LBA {ext_end})"),
            );
            break;
        }
        if let Some(p) = parts
            .iter()
            .find(|p| p.role == Role::Logical && p.start_lba <= next && next < p.end_lba())
        {
            issues.error(
                IssueKind::Overlap,
                format!(
                    "EBR at LBA {next} lies inside logical partition {} (LBAs {}..{})",
                    p.index,
                    p.start_lba,
                    p.end_lba()
                ),
            );
        }
        if next <= ebr {
            issues.warn(
                IssueKind::EbrBackward,
                format!("EBR at LBA {ebr} links backwards to LBA {next}"),
            );
        }
        ebr = next;
    }
}

/// Reads and validates a GPT header at `lba`. `Err` says why it is not valid.
fn read_gpt_header(
    r: &dyn ReadAt,
    lba: u64,
    sector_size: u32,
    image_len: u64,
) -> std::result::Result<GptHeader, String> {
    let ss = u64::from(sector_size);
    let off = lba
        .checked_mul(ss)
        .ok_or_else(|| format!("LBA {lba}: offset overflows"))?;
    if off.saturating_add(ss) > image_len {
        return Err(format!(
            "LBA {lba} (byte {off}) is beyond the image end ({image_len} bytes, {} sectors)",
            image_len / ss
        ));
    }
    let s = try_read(r, off, sector_size as usize)
        .ok_or_else(|| format!("LBA {lba} (byte {off}) cannot be read"))?;
    if s.get(0..8) != Some(GPT_SIGNATURE.as_slice()) {
        return Err(format!(
            "no \"EFI PART\" signature at LBA {lba} (byte {off})"
        ));
    }
    let header_size = le32(&s, 12);
    if header_size < GPT_HEADER_SIZE || header_size > sector_size {
        return Err(format!(
            "header at LBA {lba}: header size {header_size} is outside {GPT_HEADER_SIZE}..={sector_size}"
        ));
    }
    let hs = header_size as usize;
    let stored = le32(&s, 16);
    let mut raw = s.get(..hs).map(<[u8]>::to_vec).unwrap_or_default();
    if let Some(c) = raw.get_mut(16..20) {
        c.fill(0);
    }
    let crc = crc32(&raw);
    if crc != stored {
        return Err(format!(
            "header at LBA {lba}: header CRC32 {stored:#010x} is wrong (computed {crc:#010x})"
        ));
    }
    let mut disk_guid = [0u8; 16];
    if let Some(g) = s.get(56..72) {
        disk_guid.copy_from_slice(g);
    }
    let h = GptHeader {
        revision: le32(&s, 8),
        header_size,
        header_crc: stored,
        my_lba: le64(&s, 24),
        alternate_lba: le64(&s, 32),
        first_usable: le64(&s, 40),
        last_usable: le64(&s, 48),
        disk_guid: Guid(disk_guid),
        entries_lba: le64(&s, 72),
        num_entries: le32(&s, 80),
        entry_size: le32(&s, 84),
        entries_crc: le32(&s, 88),
        raw,
    };
    if h.my_lba != lba {
        return Err(format!(
            "header at LBA {lba} says it is at LBA {}",
            h.my_lba
        ));
    }
    if h.first_usable > h.last_usable {
        return Err(format!(
            "header at LBA {lba}: first usable LBA {} > last usable LBA {}",
            h.first_usable, h.last_usable
        ));
    }
    if h.entry_size < 128
        || h.entry_size > MAX_GPT_ENTRY_SIZE
        || !h.entry_size.is_multiple_of(128)
        || !(h.entry_size / 128).is_power_of_two()
    {
        return Err(format!(
            "header at LBA {lba}: entry size {} is not 128 × 2^n (≤ {MAX_GPT_ENTRY_SIZE})",
            h.entry_size
        ));
    }
    if h.num_entries == 0 || h.num_entries > MAX_GPT_ENTRIES {
        return Err(format!(
            "header at LBA {lba}: {} entries (must be 1..={MAX_GPT_ENTRIES})",
            h.num_entries
        ));
    }
    if h.array_bytes() > MAX_GPT_ARRAY_BYTES {
        return Err(format!(
            "header at LBA {lba}: entry array of {} bytes exceeds {MAX_GPT_ARRAY_BYTES}",
            h.array_bytes()
        ));
    }
    let arr_end = h.entries_lba.saturating_add(h.array_sectors(sector_size));
    let array_inside_usable = h.entries_lba <= h.last_usable && arr_end > h.first_usable;
    if h.entries_lba < 2 || array_inside_usable || (h.entries_lba <= lba && arr_end > lba) {
        return Err(format!(
            "header at LBA {lba}: entry array at LBAs {}..{arr_end} overlaps the header or the usable range {}..={}",
            h.entries_lba, h.first_usable, h.last_usable
        ));
    }
    Ok(h)
}

/// Reads the entry array of `h` and checks its CRC.
fn read_gpt_array(
    r: &dyn ReadAt,
    h: &GptHeader,
    sector_size: u32,
) -> std::result::Result<Vec<u8>, String> {
    let off = h
        .entries_lba
        .checked_mul(u64::from(sector_size))
        .ok_or_else(|| format!("entry array LBA {}: offset overflows", h.entries_lba))?;
    let len = usize::try_from(h.array_bytes()).map_err(|_| "entry array too big".to_string())?;
    let arr = try_read(r, off, len).ok_or_else(|| {
        format!(
            "entry array at LBA {} ({} bytes at byte {off}) is past the image end",
            h.entries_lba, len
        )
    })?;
    let crc = crc32(&arr);
    if crc != h.entries_crc {
        return Err(format!(
            "entry array at LBA {} (header at LBA {}): CRC32 {:#010x} is wrong (computed {crc:#010x})",
            h.entries_lba, h.my_lba, h.entries_crc
        ));
    }
    Ok(arr)
}

fn read_gpt_pair(
    r: &dyn ReadAt,
    lba: u64,
    sector_size: u32,
    image_len: u64,
) -> std::result::Result<(GptHeader, Vec<u8>), String> {
    let h = read_gpt_header(r, lba, sector_size, image_len)?;
    let a = read_gpt_array(r, &h, sector_size)?;
    Ok((h, a))
}

fn read_gpt(
    r: &dyn ReadAt,
    sector_size: u32,
    image_len: u64,
    mbr: &MbrInfo,
    issues: &mut Issues,
) -> Result<(GptInfo, Vec<Partition>)> {
    let ss = u64::from(sector_size);
    let image_sectors = image_len / ss;
    let last_lba = image_sectors.saturating_sub(1);
    let primary = read_gpt_pair(r, 1, sector_size, image_len);
    // Backup candidates: where the primary says, then the image's last LBA.
    let mut candidates = Vec::new();
    if let Ok((h, _)) = &primary {
        candidates.push(h.alternate_lba);
    }
    if !candidates.contains(&last_lba) {
        candidates.push(last_lba);
    }
    let mut backup_err = Vec::new();
    let mut backup = None;
    for &c in &candidates {
        if c <= 1 {
            backup_err.push(format!("LBA {c} cannot hold a backup header"));
            continue;
        }
        match read_gpt_pair(r, c, sector_size, image_len) {
            Ok(p) => {
                backup = Some(p);
                break;
            }
            Err(e) => backup_err.push(e),
        }
    }
    let (header, array, used) = match (&primary, &backup) {
        (Ok((h, a)), _) => (h.clone(), a.clone(), HeaderCopy::Primary),
        (Err(pe), Some((h, a))) => {
            issues.warn(
                IssueKind::GptPrimaryDamaged,
                format!(
                    "primary GPT is damaged ({pe}); using the backup GPT at LBA {}",
                    h.my_lba
                ),
            );
            (h.clone(), a.clone(), HeaderCopy::Backup)
        }
        (Err(pe), None) => {
            return Err(Error::PartitionTable(format!(
                "GPT: primary: {pe}; backup: {}",
                backup_err.join("; ")
            )))
        }
    };
    if let (Ok((p, _)), None) = (&primary, &backup) {
        let beyond = p.alternate_lba >= image_sectors;
        issues.warn(
            if beyond {
                IssueKind::GptBeyondEnd
            } else {
                IssueKind::GptBackupDamaged
            },
            format!(
                "backup GPT not usable ({}){}",
                backup_err.join("; "),
                if beyond {
                    ": the image looks like a prefix copy of a bigger disk; a copy needs GPT fix (a) or (b)"
                } else {
                    ""
                }
            ),
        );
    }
    if let (Ok((p, pa)), Some((b, ba))) = (&primary, &backup) {
        let mut diffs = Vec::new();
        if p.disk_guid != b.disk_guid {
            diffs.push("disk GUID");
        }
        if p.first_usable != b.first_usable || p.last_usable != b.last_usable {
            diffs.push("usable range");
        }
        if p.num_entries != b.num_entries || p.entry_size != b.entry_size || pa != ba {
            diffs.push("entry arrays");
        }
        if p.alternate_lba != b.my_lba || b.alternate_lba != 1 {
            diffs.push("header locations");
        }
        if !diffs.is_empty() {
            issues.warn(
                IssueKind::GptMismatch,
                format!(
                    "primary and backup GPT (LBA {}) differ in: {}; using the primary",
                    b.my_lba,
                    diffs.join(", ")
                ),
            );
        }
    }
    if header.revision != GPT_REVISION_1_0 {
        issues.warn(
            IssueKind::Other,
            format!(
                "GPT header revision {:#010x} (expected 0x00010000)",
                header.revision
            ),
        );
    }
    if header.last_usable >= image_sectors {
        issues.warn(
            IssueKind::GptBeyondEnd,
            format!(
                "GPT last usable LBA {} is beyond the image's last LBA {last_lba} (Linux rejects such a GPT: \"last_usable_lba incorrect\")",
                header.last_usable
            ),
        );
    }
    // Protective / hybrid MBR.
    let mut hybrid = false;
    if mbr.signature_ok {
        let others: Vec<&MbrEntry> = mbr
            .entries
            .iter()
            .filter(|e| e.is_used() && e.kind != 0xEE)
            .collect();
        if let Some(pe) = mbr.entries.iter().find(|e| e.kind == 0xEE) {
            if others.is_empty() {
                let want = last_lba.min(0xFFFF_FFFF);
                let orig = header.alternate_lba.max(header.my_lba).min(0xFFFF_FFFF);
                if pe.start_lba != 1
                    || (u64::from(pe.sectors) != want && u64::from(pe.sectors) != orig)
                {
                    issues.warn(
                        IssueKind::ProtectiveMbr,
                        format!(
                            "protective MBR entry {}: start {} size {} (expected start 1, size {want})",
                            pe.slot, pe.start_lba, pe.sectors
                        ),
                    );
                } else if u64::from(pe.sectors) != want {
                    issues.warn(
                        IssueKind::ProtectiveMbr,
                        format!(
                            "GPT PMBR size mismatch ({} != {want}): the protective entry covers the original disk, not this image",
                            pe.sectors
                        ),
                    );
                }
            }
        }
        hybrid = !others.is_empty();
        if hybrid {
            issues.warn(
                IssueKind::HybridMbr,
                format!(
                    "hybrid MBR: the MBR has {} entries besides 0xEE; the GPT is used, operating systems may use either table; never rewrite this MBR as protective-only",
                    others.len()
                ),
            );
        }
    }
    let mut parts = Vec::new();
    let esz = header.entry_size as usize;
    for (i, ent) in array.chunks(esz.max(128)).enumerate() {
        let mut tg = [0u8; 16];
        let mut pg = [0u8; 16];
        if let (Some(a), Some(b)) = (ent.get(0..16), ent.get(16..32)) {
            tg.copy_from_slice(a);
            pg.copy_from_slice(b);
        }
        let type_guid = Guid(tg);
        if type_guid.is_zero() {
            continue;
        }
        let index = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let first = le64(ent, 32);
        let last = le64(ent, 40);
        let attributes = le64(ent, 48);
        if first > last {
            issues.error(
                IssueKind::GptEntry,
                format!("GPT entry {index}: first LBA {first} > last LBA {last}"),
            );
            continue;
        }
        let sectors = last - first + 1;
        let (Some(start_byte), Some(len_bytes)) = (first.checked_mul(ss), sectors.checked_mul(ss))
        else {
            issues.error(
                IssueKind::GptEntry,
                format!("GPT entry {index}: LBAs {first}..={last} overflow a byte offset"),
            );
            continue;
        };
        if start_byte.checked_add(len_bytes).is_none() {
            issues.error(
                IssueKind::GptEntry,
                format!("GPT entry {index}: LBAs {first}..={last} overflow a byte offset"),
            );
            continue;
        }
        if first < header.first_usable || last > header.last_usable {
            issues.error(
                IssueKind::OutsideUsable,
                format!(
                    "GPT entry {index}: LBAs {first}..={last} are outside the usable range {}..={}",
                    header.first_usable, header.last_usable
                ),
            );
        }
        let units: Vec<u16> = ent
            .get(56..128)
            .unwrap_or(&[])
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        let name = String::from_utf16_lossy(&units);
        parts.push(Partition {
            index,
            role: Role::Gpt,
            mbr_type: None,
            type_guid: Some(type_guid),
            type_name: gpt_type_name(&type_guid).into(),
            start_lba: first,
            sectors,
            start_byte,
            len_bytes,
            bootable: false,
            name: (!name.is_empty()).then_some(name),
            guid: Some(Guid(pg)),
            attributes,
            filesystem: Filesystem::NotProbed,
        });
    }
    if hybrid {
        for e in mbr.entries.iter().filter(|e| e.is_used() && e.kind != 0xEE) {
            let s = u64::from(e.start_lba);
            let n = u64::from(e.sectors);
            if !parts.iter().any(|p| p.start_lba == s && p.sectors == n) {
                issues.warn(
                    IssueKind::HybridMismatch,
                    format!(
                        "hybrid MBR entry {} (type {:#04x}, LBAs {s}+{n}) matches no GPT partition",
                        e.slot, e.kind
                    ),
                );
            }
        }
    }
    Ok((
        GptInfo {
            header,
            used,
            primary: primary.ok().map(|(h, _)| h),
            backup: backup.map(|(h, _)| h),
            array,
            hybrid,
        },
        parts,
    ))
}

/// Overlap and beyond-end checks on the parsed layout.
fn check_layout(t: &PartitionTable, issues: &mut Issues) {
    for p in &t.partitions {
        if p.end_byte() > t.image_len {
            issues.beyond_end(
                format!(
                    "partition {} (LBAs {}..{}) ends at byte {}, past the image end ({} bytes): the image is truncated",
                    p.index,
                    p.start_lba,
                    p.end_lba(),
                    p.end_byte(),
                    t.image_len
                ),
                p.end_byte(),
            );
        }
        if p.start_lba == 0 {
            issues.error(
                IssueKind::Overlap,
                format!(
                    "partition {} starts at LBA 0, over the partition table",
                    p.index
                ),
            );
        }
    }
    // Data partitions among themselves; MBR primaries (with the container) among themselves.
    let mut groups: Vec<Vec<&Partition>> = vec![t.data_partitions().collect()];
    if t.scheme == Scheme::Mbr {
        groups.push(
            t.partitions
                .iter()
                .filter(|p| p.role != Role::Logical)
                .collect(),
        );
    }
    let mut seen = HashSet::new();
    for mut g in groups {
        g.sort_by_key(|p| (p.start_lba, p.end_lba()));
        // Compare each with the one reaching furthest so far (catches nested overlaps).
        let mut furthest: Option<&Partition> = None;
        for p in g {
            if let Some(f) = furthest {
                if p.start_lba < f.end_lba() && seen.insert((f.index, p.index)) {
                    issues.error(
                        IssueKind::Overlap,
                        format!(
                            "partitions {} (LBAs {}..{}) and {} (LBAs {}..{}) overlap",
                            f.index,
                            f.start_lba,
                            f.end_lba(),
                            p.index,
                            p.start_lba,
                            p.end_lba()
                        ),
                    );
                }
                if p.end_lba() > f.end_lba() {
                    furthest = Some(p);
                }
            } else {
                furthest = Some(p);
            }
        }
    }
}
