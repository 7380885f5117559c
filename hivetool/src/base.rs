// SPDX-License-Identifier: MIT OR Apache-2.0
//! The base block ("regf", 4096 bytes; the first 512 are checksummed).
//!
//! | off | size | field |
//! |---|---|---|
//! | 0 | 4 | `regf` |
//! | 4 | 4 | primary sequence number |
//! | 8 | 4 | secondary sequence number |
//! | 12 | 8 | last written FILETIME |
//! | 20 | 4 | major version (1) |
//! | 24 | 4 | minor version (3..6) |
//! | 28 | 4 | file type (0 primary, 1/2 old-format log, 6 new-format log) |
//! | 32 | 4 | file format (1) |
//! | 36 | 4 | root cell offset |
//! | 40 | 4 | hive bins data size |
//! | 44 | 4 | clustering factor |
//! | 48 | 64 | file name tail (UTF-16LE) |
//! | 144 | 4 | flags |
//! | 508 | 4 | checksum |

use crate::error::{Error, Result};

/// Size of the base block.
pub const BASE_BLOCK_SIZE: usize = 4096;
/// Offset of the checksum field.
pub const CHECKSUM_OFFSET: usize = 508;
/// "No cell".
pub const NIL: u32 = 0xFFFF_FFFF;

/// Field offsets in the base block.
pub mod off {
    /// Primary sequence number.
    pub const SEQ1: usize = 4;
    /// Secondary sequence number.
    pub const SEQ2: usize = 8;
    /// Last written FILETIME.
    pub const TIMESTAMP: usize = 12;
    /// Major version.
    pub const MAJOR: usize = 20;
    /// Minor version.
    pub const MINOR: usize = 24;
    /// File type.
    pub const FILE_TYPE: usize = 28;
    /// File format.
    pub const FILE_FORMAT: usize = 32;
    /// Root cell offset.
    pub const ROOT: usize = 36;
    /// Hive bins data size.
    pub const HBINS_SIZE: usize = 40;
    /// Clustering factor.
    pub const CLUSTERING: usize = 44;
    /// File name (64 bytes UTF-16LE).
    pub const FILE_NAME: usize = 48;
    /// Flags.
    pub const FLAGS: usize = 144;
}

/// Reads a little-endian u32 at `off` (caller guarantees bounds).
#[inline]
pub(crate) fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Reads a little-endian u64 at `off` (caller guarantees bounds).
#[inline]
pub(crate) fn le64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// The base-block checksum: XOR of the 127 u32 words at 0..508, with Windows' two fix-ups
/// (0xFFFFFFFF → 0xFFFFFFFE, 0 → 1). `block` must be at least 512 bytes.
pub fn checksum(block: &[u8]) -> u32 {
    let x = (0..127).fold(0u32, |acc, i| acc ^ le32(block, i * 4));
    match x {
        0xFFFF_FFFF => 0xFFFF_FFFE,
        0 => 1,
        x => x,
    }
}

/// Writes the checksum into `block[508..512]`.
pub fn fix_checksum(block: &mut [u8]) {
    let c = checksum(block);
    block[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].copy_from_slice(&c.to_le_bytes());
}

/// The parsed header fields of a base block.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BaseBlock {
    /// Primary sequence number.
    pub seq1: u32,
    /// Secondary sequence number.
    pub seq2: u32,
    /// Last written FILETIME (100 ns since 1601).
    pub timestamp: u64,
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// File type (0 = primary).
    pub file_type: u32,
    /// File format (1).
    pub file_format: u32,
    /// Root cell offset.
    pub root: u32,
    /// Hive bins data size.
    pub hbins_size: u32,
    /// Clustering factor.
    pub clustering: u32,
    /// File name tail stored in the header.
    pub file_name: String,
    /// Flags at offset 144.
    pub flags: u32,
    /// Stored checksum.
    pub checksum: u32,
    /// Whether the stored checksum is right.
    pub checksum_ok: bool,
}

impl BaseBlock {
    /// Parses the fields without judging them (only the signature and length are checked).
    pub fn parse(data: &[u8]) -> Result<BaseBlock> {
        if data.len() < 512 {
            return Err(Error::Truncated {
                what: "base block",
                file_offset: 0,
                needed: 512,
                available: data.len() as u64,
            });
        }
        if &data[0..4] != b"regf" {
            return Err(Error::BadSignature {
                file_offset: 0,
                expected: "regf",
                found: data[0..4].to_vec(),
            });
        }
        let name_units: Vec<u16> = data[off::FILE_NAME..off::FILE_NAME + 64]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        let stored = le32(data, CHECKSUM_OFFSET);
        Ok(BaseBlock {
            seq1: le32(data, off::SEQ1),
            seq2: le32(data, off::SEQ2),
            timestamp: le64(data, off::TIMESTAMP),
            major: le32(data, off::MAJOR),
            minor: le32(data, off::MINOR),
            file_type: le32(data, off::FILE_TYPE),
            file_format: le32(data, off::FILE_FORMAT),
            root: le32(data, off::ROOT),
            hbins_size: le32(data, off::HBINS_SIZE),
            clustering: le32(data, off::CLUSTERING),
            file_name: String::from_utf16_lossy(&name_units),
            flags: le32(data, off::FLAGS),
            checksum: stored,
            checksum_ok: stored == checksum(data),
        })
    }

    /// Dirty = sequence numbers differ or the checksum is wrong.
    pub fn is_dirty(&self) -> bool {
        self.seq1 != self.seq2 || !self.checksum_ok
    }

    /// Checks the fields a reader relies on: version 1.3–1.6, primary file type, format 1,
    /// hive-bins size a multiple of 4096 and inside `file_len`. Does not judge dirtiness.
    pub fn validate(&self, file_len: u64) -> Result<()> {
        if self.major != 1 || !(3..=6).contains(&self.minor) {
            return Err(Error::BaseBlock(format!(
                "unsupported version {}.{} (supported: 1.3 to 1.6)",
                self.major, self.minor
            )));
        }
        if self.file_type != 0 {
            return Err(Error::BaseBlock(format!(
                "file type {} is not a primary hive (0)",
                self.file_type
            )));
        }
        if self.file_format != 1 {
            return Err(Error::BaseBlock(format!(
                "file format {} is not 1 (direct memory load)",
                self.file_format
            )));
        }
        if self.hbins_size == 0 || !self.hbins_size.is_multiple_of(4096) {
            return Err(Error::BaseBlock(format!(
                "hive bins data size {:#x} is not a non-zero multiple of 4096",
                self.hbins_size
            )));
        }
        let need = BASE_BLOCK_SIZE as u64 + u64::from(self.hbins_size);
        if need > file_len {
            return Err(Error::BaseBlock(format!(
                "hive bins data size {:#x} reaches past the end of the file ({} bytes, {} needed)",
                self.hbins_size, file_len, need
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_fixups() {
        let mut b = vec![0u8; 512];
        assert_eq!(checksum(&b), 1);
        b[0..4].copy_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
        assert_eq!(checksum(&b), 0xFFFF_FFFE);
        b[0..4].copy_from_slice(b"regf");
        fix_checksum(&mut b);
        assert!(BaseBlock::parse(&b).unwrap().checksum_ok);
    }

    #[test]
    fn rejects_short_and_bad_signature() {
        assert!(matches!(
            BaseBlock::parse(&[0u8; 10]),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            BaseBlock::parse(&[0u8; 512]),
            Err(Error::BadSignature { .. })
        ));
    }
}
