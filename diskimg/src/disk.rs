// SPDX-License-Identifier: MIT OR Apache-2.0
//! An opened disk image or block device: file, length, logical sector size and partition table.

use crate::partition::{detect_sector_size, read_table, PartitionTable};
use crate::range::{copy_range, plan_copy, CopyPlan, CopyRange, GptFix};
use crate::{Error, ReadAt, Result};
use std::fs::File;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// How to open a disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Open read-write (default: read-only).
    pub writable: bool,
    /// Force the logical sector size (512 or 4096) instead of detecting it.
    pub sector_size: Option<u32>,
}

/// Where the sector size came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SectorSizeSource {
    /// Given by the caller ([`OpenOptions::sector_size`]).
    Override,
    /// The block device's logical block size (sysfs).
    Device,
    /// Detected from the image content ([`detect_sector_size`]).
    Detected,
}

/// An opened disk.
#[derive(Debug)]
pub struct Disk {
    path: PathBuf,
    file: File,
    len: u64,
    sector_size: u32,
    source: SectorSizeSource,
    reason: String,
    block_device: bool,
    table: PartitionTable,
}

/// Linux `dev_t` → (major, minor).
fn dev_major_minor(rdev: u64) -> (u64, u64) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major, minor)
}

/// Logical block size of a block device from sysfs (no ioctl, so no unsafe code).
fn device_logical_block_size(rdev: u64) -> Option<u32> {
    let (ma, mi) = dev_major_minor(rdev);
    let base = format!("/sys/dev/block/{ma}:{mi}");
    for p in [
        format!("{base}/queue/logical_block_size"),
        format!("{base}/../queue/logical_block_size"),
    ] {
        if let Ok(s) = std::fs::read_to_string(&p) {
            if let Ok(v) = s.trim().parse::<u32>() {
                return Some(v);
            }
        }
    }
    None
}

impl Disk {
    /// Opens a regular file or a block device (read-only unless `opts.writable`), detects the
    /// sector size (unless given) and reads the partition table.
    ///
    /// Sector size order: `opts.sector_size`, else a block device's logical block size, else
    /// [`detect_sector_size`] on the content.
    pub fn open(path: impl AsRef<Path>, opts: OpenOptions) -> Result<Disk> {
        let path = path.as_ref();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(opts.writable)
            .open(path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
        let block_device = meta.file_type().is_block_device();
        if !block_device && !meta.is_file() {
            return Err(Error::Invalid(format!(
                "{} is neither a regular file nor a block device",
                path.display()
            )));
        }
        let len = ReadAt::size(&file)
            .map_err(|e| Error::io(format!("getting the size of {}", path.display()), e))?;
        let (sector_size, source, reason) = if let Some(s) = opts.sector_size {
            (s, SectorSizeSource::Override, format!("given: {s}"))
        } else if let Some(s) = block_device
            .then(|| device_logical_block_size(meta.rdev()))
            .flatten()
        {
            (
                s,
                SectorSizeSource::Device,
                format!("block device logical block size {s}"),
            )
        } else {
            let g = detect_sector_size(&file);
            (g.sector_size, SectorSizeSource::Detected, g.reason)
        };
        if sector_size != 512 && sector_size != 4096 {
            return Err(Error::Invalid(format!(
                "sector size {sector_size} (only 512 and 4096 are supported)"
            )));
        }
        let table = read_table(&file, sector_size)?;
        Ok(Disk {
            path: path.to_path_buf(),
            file,
            len,
            sector_size,
            source,
            reason,
            block_device,
            table,
        })
    }

    /// The open file (read it through [`ReadAt`]).
    pub fn file(&self) -> &File {
        &self.file
    }
    /// The path it was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// True for a zero-length disk (never returned by `open`, which needs a table).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Logical sector size (512 or 4096).
    pub fn sector_size(&self) -> u32 {
        self.sector_size
    }
    /// Where the sector size came from.
    pub fn sector_size_source(&self) -> SectorSizeSource {
        self.source
    }
    /// Why this sector size (for reports).
    pub fn sector_size_reason(&self) -> &str {
        &self.reason
    }
    /// True if it is a block device.
    pub fn is_block_device(&self) -> bool {
        self.block_device
    }
    /// The partition table.
    pub fn table(&self) -> &PartitionTable {
        &self.table
    }
    /// The exact copy range ([`crate::range::copy_range`]).
    pub fn copy_range(&self) -> Result<CopyRange> {
        copy_range(&self.table)
    }
    /// A copy plan ([`crate::range::plan_copy`]); `fix` matters for GPT only.
    pub fn plan_copy(&self, fix: GptFix) -> Result<CopyPlan> {
        plan_copy(&self.file, &self.table, fix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_minor() {
        // makedev(7, 0) and makedev(259, 1) on Linux.
        assert_eq!(dev_major_minor(0x700), (7, 0));
        assert_eq!(dev_major_minor((259 << 8) | 1), (259, 1));
    }
}
