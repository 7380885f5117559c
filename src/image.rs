// SPDX-License-Identifier: MIT OR Apache-2.0
//! A Windows disk image: which partition holds Windows, and its registry hives as files on NTFS.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use diskimg::disk::{Disk, OpenOptions as DiskOpenOptions};
use diskimg::ntfs::{FileExtents, Volume};
use diskimg::partition::{Filesystem, Partition};
use serde::Serialize;

use crate::error::{Refusal, Refused};

/// Where Windows keeps its hives.
pub const CONFIG_DIR: &str = r"Windows\System32\config";

/// The largest hive imgprep reads (Windows refuses hives above 2 GiB; real SYSTEM hives are
/// 10–100 MiB).
pub const MAX_HIVE_SIZE: u64 = 1 << 30;

/// The largest transaction log imgprep reads (real logs are a few MiB; this bounds the memory a
/// hostile image can make us allocate for the three logs of a hive).
pub const MAX_LOG_SIZE: u64 = 256 << 20;

/// How to open an image.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    /// Force the logical sector size (512 or 4096).
    pub sector_size: Option<u32>,
    /// Use this partition (its index as `imgprep inspect` shows it) instead of searching.
    pub partition: Option<u32>,
}

/// A Windows installation found in a disk image.
pub struct WindowsImage {
    path: PathBuf,
    disk: Disk,
    partition: Partition,
    volume: Volume<File>,
}

impl std::fmt::Debug for WindowsImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowsImage")
            .field("path", &self.path)
            .field("partition", &self.partition.index)
            .finish()
    }
}

/// A registry hive file inside the image.
#[derive(Debug, Clone)]
pub struct HiveFile {
    /// Hive name (`SYSTEM`).
    pub name: String,
    /// Path inside the volume.
    pub path: String,
    /// Its extents on the disk.
    pub extents: FileExtents,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its transaction logs (`SYSTEM.LOG1`, `SYSTEM.LOG2`, `SYSTEM.LOG`) when present.
    pub logs: Vec<(String, Vec<u8>)>,
}

/// Summary of a partition for reports.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionSummary {
    /// Index.
    pub index: u32,
    /// Type name.
    pub type_name: String,
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// Filesystem seen.
    pub filesystem: String,
}

fn is_not_found(e: &diskimg::Error) -> bool {
    matches!(e, diskimg::Error::NotFound(_))
}

impl WindowsImage {
    /// Opens the image read-only and finds the partition holding
    /// `Windows\System32\config\SYSTEM`.
    pub fn open(path: impl AsRef<Path>, opts: OpenOptions) -> Result<WindowsImage> {
        let path = path.as_ref().to_path_buf();
        let disk = Disk::open(
            &path,
            DiskOpenOptions {
                writable: false,
                sector_size: opts.sector_size,
            },
        )
        .map_err(|e| disk_error(e, &path))?;
        if let Err(e) = disk.table().check() {
            return Err(Refused::new(Refusal::BadDisk, format!("{}: {e}", path.display())).into());
        }
        let mut found: Vec<(Partition, Volume<File>)> = Vec::new();
        let mut bitlocker: Vec<u32> = Vec::new();
        let mut tried: Vec<String> = Vec::new();
        for p in disk.table().data_partitions() {
            if let Some(want) = opts.partition {
                if p.index != want {
                    continue;
                }
            }
            match p.filesystem {
                Filesystem::Bitlocker => {
                    bitlocker.push(p.index);
                    continue;
                }
                Filesystem::Ntfs => {}
                _ if opts.partition.is_some() => {
                    bail!("partition {} is {}, not NTFS", p.index, p.filesystem.name())
                }
                _ => continue,
            }
            let file = disk
                .file()
                .try_clone()
                .with_context(|| format!("reopening {}", path.display()))?;
            let vol = match Volume::open(file, p.start_byte, p.len_bytes) {
                Ok(v) => v,
                Err(e) => {
                    tried.push(format!("partition {}: {e}", p.index));
                    continue;
                }
            };
            match vol.find(&format!(r"{CONFIG_DIR}\SYSTEM")) {
                Ok(_) => found.push((p.clone(), vol)),
                Err(e) if is_not_found(&e) => {
                    tried.push(format!("partition {}: no {CONFIG_DIR}\\SYSTEM", p.index))
                }
                Err(e) => tried.push(format!("partition {}: {e}", p.index)),
            }
        }
        if found.len() > 1 {
            let list: Vec<String> = found.iter().map(|(p, _)| p.index.to_string()).collect();
            bail!(
                "{}: partitions {} all hold {CONFIG_DIR}\\SYSTEM: choose one with --partition N",
                path.display(),
                list.join(" and ")
            );
        }
        let Some((partition, volume)) = found.pop() else {
            if !bitlocker.is_empty() {
                return Err(Refused::new(
                    Refusal::BitLocker,
                    format!(
                        "{}: partition {} is encrypted with BitLocker (-FVE-FS-): decrypt it in \
                         Windows (manage-bde -off) before imaging",
                        path.display(),
                        bitlocker
                            .iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .into());
            }
            let detail = if tried.is_empty() {
                "no NTFS partition".to_string()
            } else {
                tried.join("; ")
            };
            bail!(
                "{}: no Windows installation found ({detail})",
                path.display()
            );
        };
        if !bitlocker.is_empty() && opts.partition.is_none() {
            // The encrypted partition may be the Windows that boots (the one found could be a
            // second installation or a recovery copy): make the user say which one is meant.
            return Err(Refused::new(
                Refusal::BitLocker,
                format!(
                    "{}: partition {} is encrypted with BitLocker; the Windows found on \
                     partition {} may not be the one that boots. Pass --partition {} to prepare \
                     it anyway, or decrypt the other partition first",
                    path.display(),
                    bitlocker
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    partition.index,
                    partition.index
                ),
            )
            .into());
        }
        Ok(WindowsImage {
            path,
            disk,
            partition,
            volume,
        })
    }

    /// Path of the image.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The disk.
    pub fn disk(&self) -> &Disk {
        &self.disk
    }
    /// The Windows partition.
    pub fn partition(&self) -> &Partition {
        &self.partition
    }
    /// The Windows NTFS volume.
    pub fn volume(&self) -> &Volume<File> {
        &self.volume
    }

    /// Reads a hive (`SYSTEM`, `SOFTWARE`, `SAM`, `SECURITY`, `DEFAULT`) and its logs.
    pub fn hive(&self, name: &str) -> Result<HiveFile> {
        let path = format!(r"{CONFIG_DIR}\{name}");
        let extents = self
            .volume
            .file_extents(&path)
            .map_err(|e| anyhow!("{}: {e}", self.path.display()))?;
        if extents.data_size > MAX_HIVE_SIZE {
            bail!(
                "{path} is {} bytes, more than a hive can be ({MAX_HIVE_SIZE})",
                extents.data_size
            );
        }
        let bytes = self
            .volume
            .read_extents_parallel(&extents, MAX_HIVE_SIZE)
            .with_context(|| format!("reading {path}"))?;
        let mut logs = Vec::new();
        for suffix in ["LOG1", "LOG2", "LOG"] {
            let lp = format!("{path}.{suffix}");
            match self.volume.file_extents(&lp) {
                Ok(fx) => {
                    let data = self
                        .volume
                        .read_extents(&fx, MAX_LOG_SIZE)
                        .with_context(|| format!("reading {lp}"))?;
                    logs.push((format!("{name}.{suffix}"), data));
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(anyhow!("{lp}: {e}")),
            }
        }
        Ok(HiveFile {
            name: name.to_string(),
            path,
            extents,
            bytes,
            logs,
        })
    }

    /// A summary of every partition.
    pub fn partitions(&self) -> Vec<PartitionSummary> {
        self.disk
            .table()
            .partitions
            .iter()
            .map(|p| PartitionSummary {
                index: p.index,
                type_name: p.type_name.clone(),
                start: p.start_byte,
                len: p.len_bytes,
                filesystem: p.filesystem.name().to_string(),
            })
            .collect()
    }
}

fn disk_error(e: diskimg::Error, path: &Path) -> anyhow::Error {
    match e {
        diskimg::Error::Truncated { .. } | diskimg::Error::PartitionTable(_) => {
            Refused::new(Refusal::BadDisk, format!("{}: {e}", path.display())).into()
        }
        e => anyhow!("{}: {e}", path.display()),
    }
}
