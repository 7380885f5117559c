// SPDX-License-Identifier: MIT OR Apache-2.0
//! Benchmark driver for the streaming copier (used by `benches/stream-copy.sh`).
//!
//! ```text
//! stream_copy SRC OUT|- [--range START:END] [--offset N] [--hash] [--sync]
//!             [--ntfs-bitmap FILE --cluster-size N [--part-offset N]]
//! ```
//! `--ntfs-bitmap` takes the raw `$Bitmap` (e.g. from `ntfscat vol '$Bitmap'`): clear bits
//! become zero ranges. Prints the report as JSON on stderr.

use diskimg::copy::{self, CopyJob, Output, Segment};
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::ExitCode;

fn num(s: &str) -> Result<u64, String> {
    s.parse().map_err(|e| format!("bad number {s:?}: {e}"))
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let src_path = PathBuf::from(args.next().ok_or("missing SRC")?);
    let out_name = args.next().ok_or("missing OUT")?;
    let (mut range, mut offset, mut hash, mut sync) = (None, 0u64, false, false);
    let (mut bitmap, mut cluster, mut part_off) = (None, 4096u64, 0u64);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--range" => {
                let v = val()?;
                let (s, e) = v.split_once(':').ok_or("range is START:END")?;
                range = Some(num(s)?..num(e)?);
            }
            "--offset" => offset = num(&val()?)?,
            "--ntfs-bitmap" => bitmap = Some(PathBuf::from(val()?)),
            "--cluster-size" => cluster = num(&val()?)?,
            "--part-offset" => part_off = num(&val()?)?,
            "--hash" => hash = true,
            "--sync" => sync = true,
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    let src = copy::open_source(&src_path).map_err(|e| e.to_string())?;
    let len = src.metadata().map_err(|e| e.to_string())?.len();
    let range = range.unwrap_or(0..len);
    let mut job = CopyJob {
        segments: vec![Segment {
            src: range.clone(),
            dst: 0,
        }],
        output_len: range.end - range.start,
        output_offset: offset,
        hash,
        sync,
        ..CopyJob::default()
    };
    if let Some(b) = bitmap {
        let bits = std::fs::read(&b).map_err(|e| format!("{}: {e}", b.display()))?;
        let mut run_start: Option<u64> = None;
        let nclusters = bits.len() as u64 * 8;
        for c in 0..=nclusters {
            let used = c == nclusters || bits[(c / 8) as usize] & (1 << (c % 8)) != 0;
            match (used, run_start) {
                (false, None) => run_start = Some(c),
                (true, Some(s)) => {
                    job.zero_ranges
                        .push(part_off + s * cluster..part_off + c * cluster);
                    run_start = None;
                }
                _ => {}
            }
        }
        // The bitmap may cover more than the volume: never zero the last sector (backup boot
        // sector) or anything past it.
        let last = range.end.saturating_sub(512);
        for z in &mut job.zero_ranges {
            z.end = z.end.min(last);
        }
        job.zero_ranges.retain(|z| z.start < z.end);
    }
    let mut progress = |_| {};
    let report = if out_name == "-" {
        let mut w = copy::stdout_file().map_err(|e| e.to_string())?;
        copy::copy(&src, &job, Output::Stream(&mut w), &mut progress)
    } else {
        let out = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&out_name)
            .map_err(|e| format!("{out_name}: {e}"))?;
        copy::copy(&src, &job, Output::File(&out), &mut progress)
    }
    .map_err(|e| e.to_string())?;
    eprintln!(
        "{}",
        serde_json::to_string(&report).map_err(|e| e.to_string())?
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stream_copy: {e}");
            ExitCode::FAILURE
        }
    }
}
