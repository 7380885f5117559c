// SPDX-License-Identifier: MIT OR Apache-2.0
//! Streaming the exact copy range of an image into a new file, a block device or a pipe, with
//! the preparation's patches applied on the fly (the source is never written).

use std::fs::File;
use std::ops::Range;

use anyhow::{Context, Result};
use diskimg::copy::{self, CopyJob, CopyReport, Output, Progress, Segment};
use diskimg::disk::Disk;
use diskimg::ntfs::Volume;
use diskimg::partition::Filesystem;
use diskimg::patch::Patch;
use diskimg::range::{plan_copy, CopyPlan, GptFix};

/// How to export.
#[derive(Debug, Clone, Copy)]
pub struct ExportOptions {
    /// GPT disks: keep the backup GPT at the original size, or relocate it.
    pub gpt_fix: GptFix,
    /// Write zeros (holes) instead of the unused clusters of NTFS volumes that are safe (clean,
    /// not hibernated). Boot sectors and backup boot sectors are always copied.
    pub skip_unused: bool,
    /// File offset of output byte 0 (65536 for COMSTAR shared-metadata LU files).
    pub output_offset: u64,
    /// Compute the SHA-256 of the output.
    pub hash: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            gpt_fix: GptFix::KeepBackup,
            skip_unused: false,
            output_offset: 0,
            hash: false,
        }
    }
}

/// What the export will do.
#[derive(Debug, Clone)]
pub struct ExportJob {
    /// The copy plan (range, GPT fix, LUN size, advice).
    pub plan: CopyPlan,
    /// The job for the copier.
    pub job: CopyJob,
    /// NTFS partitions whose unused clusters were skipped.
    pub skipped_partitions: Vec<u32>,
    /// NTFS partitions copied in full although `skip_unused` asked otherwise (unsafe volume).
    pub full_partitions: Vec<(u32, String)>,
}

fn complement(within: Range<u64>, used: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    let mut at = within.start;
    for r in used {
        let s = r.start.max(within.start);
        let e = r.end.min(within.end);
        if s >= e {
            continue;
        }
        if s > at {
            out.push(at..s);
        }
        at = at.max(e);
    }
    if at < within.end {
        out.push(at..within.end);
    }
    out
}

/// Builds the copy job for `disk` with `patches` (absolute source offsets) applied.
pub fn build_job(disk: &Disk, patches: &[Patch], opts: &ExportOptions) -> Result<ExportJob> {
    let plan = plan_copy(disk.file(), disk.table(), opts.gpt_fix)
        .with_context(|| format!("computing the copy range of {}", disk.path().display()))?;
    let mut zero_ranges = Vec::new();
    let (mut skipped_partitions, mut full_partitions) = (Vec::new(), Vec::new());
    if opts.skip_unused {
        for p in disk.table().data_partitions() {
            if p.filesystem != Filesystem::Ntfs {
                continue;
            }
            let file = disk.file().try_clone()?;
            let vol = match Volume::open(file, p.start_byte, p.len_bytes) {
                Ok(v) => v,
                Err(e) => {
                    full_partitions.push((p.index, e.to_string()));
                    continue;
                }
            };
            let safety = vol.safety();
            if !safety.is_safe() {
                // An unclean volume's $Bitmap may not say which clusters are in use.
                full_partitions.push((p.index, safety.reasons.join("; ")));
                continue;
            }
            match vol.used_byte_ranges() {
                Ok(used) => {
                    zero_ranges.extend(complement(p.start_byte..p.end_byte(), &used));
                    skipped_partitions.push(p.index);
                }
                Err(e) => full_partitions.push((p.index, e.to_string())),
            }
        }
    }
    let job = CopyJob {
        segments: plan
            .segments
            .iter()
            .map(|s| Segment {
                src: s.src.clone(),
                dst: s.dst_offset,
            })
            .collect(),
        output_len: plan.output_len,
        zero_ranges,
        source_patches: patches.to_vec(),
        output_patches: plan.patches.clone(),
        output_offset: opts.output_offset,
        hash: opts.hash,
        sync: true,
    };
    Ok(ExportJob {
        plan,
        job,
        skipped_partitions,
        full_partitions,
    })
}

/// Where an export goes.
pub enum Target<'a> {
    /// A regular file (created sparse).
    File(&'a File),
    /// A block device (every byte written unless it reads zeros).
    Device(&'a File, bool),
    /// A stream (stdout).
    Stream(&'a mut dyn std::io::Write),
}

/// Runs the copy.
pub fn run(
    disk: &Disk,
    job: &ExportJob,
    target: Target<'_>,
    progress: &mut dyn FnMut(Progress),
) -> Result<CopyReport> {
    let out = match target {
        Target::File(f) => Output::File(f),
        Target::Device(f, reads_zeros) => Output::BlockDevice {
            device: f,
            reads_zeros,
        },
        Target::Stream(w) => Output::Stream(w),
    };
    Ok(copy::copy(disk.file(), &job.job, out, progress)?)
}

#[cfg(test)]
mod tests {
    use super::complement;

    #[test]
    fn complement_of_used() {
        let whole = 0..10;
        assert_eq!(
            complement(0..100, &[10..20, 15..30, 90..120]),
            [0..10, 30..90]
        );
        assert_eq!(complement(whole.clone(), &[]), vec![whole.clone()]);
        assert!(complement(whole.clone(), std::slice::from_ref(&whole)).is_empty());
    }
}
