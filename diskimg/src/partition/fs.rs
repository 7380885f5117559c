// SPDX-License-Identifier: MIT OR Apache-2.0
//! What a partition's first sector shows: NTFS, BitLocker, exFAT, FAT12/16/32, empty, unknown.

use serde::Serialize;

/// The file system (or encryption) a partition's first sector shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Filesystem {
    /// OEM ID `"NTFS    "` at +3.
    Ntfs,
    /// OEM ID `"-FVE-FS-"` at +3 (BitLocker-encrypted volume).
    Bitlocker,
    /// OEM ID `"EXFAT   "` at +3.
    Exfat,
    /// FAT12 (by cluster count, as the FAT specification decides it).
    Fat12,
    /// FAT16.
    Fat16,
    /// FAT32.
    Fat32,
    /// The first sector is all zeros.
    Empty,
    /// Something else.
    Unknown,
    /// The first sector could not be read (beyond the image end).
    Unreadable,
    /// Not probed (extended container).
    NotProbed,
}

impl Filesystem {
    /// Short display name.
    pub fn name(self) -> &'static str {
        match self {
            Filesystem::Ntfs => "NTFS",
            Filesystem::Bitlocker => "BitLocker",
            Filesystem::Exfat => "exFAT",
            Filesystem::Fat12 => "FAT12",
            Filesystem::Fat16 => "FAT16",
            Filesystem::Fat32 => "FAT32",
            Filesystem::Empty => "none",
            Filesystem::Unknown => "unknown",
            Filesystem::Unreadable => "unreadable",
            Filesystem::NotProbed => "-",
        }
    }
}

fn le16(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 2) {
        Some(s) => u32::from(u16::from_le_bytes([s[0], s[1]])),
        None => 0,
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

/// Bytes per sector from a boot sector's BPB (+0x0B), when the sector is NTFS, exFAT or FAT.
/// exFAT stores it as a shift at +0x6C.
pub fn boot_sector_bytes_per_sector(sector: &[u8]) -> Option<u32> {
    match detect(sector) {
        Filesystem::Ntfs | Filesystem::Fat12 | Filesystem::Fat16 | Filesystem::Fat32 => {
            Some(le16(sector, 0x0B))
        }
        Filesystem::Exfat => {
            let shift = u32::from(*sector.get(0x6C)?);
            (9..=12).contains(&shift).then(|| 1u32 << shift)
        }
        _ => None,
    }
}

/// Classifies a partition's first sector (at least 512 bytes are looked at; a shorter slice
/// gives `Unknown` or `Empty`).
pub fn detect(sector: &[u8]) -> Filesystem {
    let oem = sector.get(3..11);
    if oem == Some(b"NTFS    ") {
        return Filesystem::Ntfs;
    }
    if oem == Some(b"-FVE-FS-") {
        return Filesystem::Bitlocker;
    }
    if oem == Some(b"EXFAT   ") {
        return Filesystem::Exfat;
    }
    if let Some(fat) = detect_fat(sector) {
        return fat;
    }
    if sector.iter().all(|&b| b == 0) {
        Filesystem::Empty
    } else {
        Filesystem::Unknown
    }
}

/// FAT type by the FAT specification's rule (count of data clusters), after sanity checks of
/// the BPB fields.
fn detect_fat(b: &[u8]) -> Option<Filesystem> {
    if b.get(510..512) != Some(&[0x55, 0xAA]) {
        return None;
    }
    // Jump instruction: EB xx 90 or E9 xx xx.
    let j = *b.first()?;
    if j != 0xEB && j != 0xE9 {
        return None;
    }
    let bps = le16(b, 0x0B);
    let spc = u32::from(*b.get(0x0D)?);
    let reserved = le16(b, 0x0E);
    let nfats = u32::from(*b.get(0x10)?);
    let root_entries = le16(b, 0x11);
    let total16 = le16(b, 0x13);
    let fatsz16 = le16(b, 0x16);
    let total32 = le32(b, 0x20);
    let fatsz32 = le32(b, 0x24);
    if !matches!(bps, 512 | 1024 | 2048 | 4096) || spc == 0 || !spc.is_power_of_two() {
        return None;
    }
    if reserved == 0 || nfats == 0 {
        return None;
    }
    let fatsz = if fatsz16 != 0 { fatsz16 } else { fatsz32 };
    let total = if total16 != 0 { total16 } else { total32 };
    if fatsz == 0 || total == 0 {
        return None;
    }
    // FAT32 by structure: only FAT32 has no 16-bit FAT size and no fixed root directory
    // (small FAT32 volumes exist, so the cluster count alone would call them FAT16).
    if fatsz16 == 0 && root_entries == 0 {
        return Some(Filesystem::Fat32);
    }
    let root_sectors = (root_entries * 32).div_ceil(bps);
    let meta = u64::from(reserved) + u64::from(nfats) * u64::from(fatsz) + u64::from(root_sectors);
    let data = u64::from(total).checked_sub(meta)?;
    let clusters = data / u64::from(spc);
    Some(if clusters < 4085 {
        Filesystem::Fat12
    } else if clusters < 65525 {
        Filesystem::Fat16
    } else {
        Filesystem::Fat32
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oem_ids() {
        let mut s = vec![0u8; 512];
        assert_eq!(detect(&s), Filesystem::Empty);
        s[3..11].copy_from_slice(b"NTFS    ");
        s[0x0B] = 0;
        s[0x0C] = 0x10;
        assert_eq!(detect(&s), Filesystem::Ntfs);
        assert_eq!(boot_sector_bytes_per_sector(&s), Some(4096));
        s[3..11].copy_from_slice(b"-FVE-FS-");
        assert_eq!(detect(&s), Filesystem::Bitlocker);
        s[3..11].copy_from_slice(b"EXFAT   ");
        assert_eq!(detect(&s), Filesystem::Exfat);
        assert_eq!(detect(&[1, 2, 3]), Filesystem::Unknown);
    }
}
