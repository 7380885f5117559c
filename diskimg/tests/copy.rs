// SPDX-License-Identifier: MIT OR Apache-2.0
//! Tests of the streaming copier on generated sparse files (tier 1) and against `dd`/`cmp`
//! (tier 2, `IMGPREP_INTEROP=1`).
#![allow(clippy::single_range_in_vec_init)]

use diskimg::copy::{self, CopyJob, Output, Progress, Segment};
use diskimg::patch::Patch;
use diskimg::Error;
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;
const SRC_LEN: u64 = 16 * MIB;

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x as u8) | 1 // never zero, so zero detection cannot hide data
        })
        .collect()
}

/// A 16 MiB sparse source: data regions, one allocated all-zero region, holes elsewhere.
fn make_source(dir: &Path) -> PathBuf {
    let p = dir.join("src.img");
    let f = File::create(&p).unwrap();
    f.set_len(SRC_LEN).unwrap();
    f.write_all_at(&pattern(300 * 1024, 1), MIB).unwrap();
    f.write_all_at(&pattern(2 * MIB as usize - 123, 2), 5 * MIB + 123)
        .unwrap();
    f.write_all_at(&vec![0u8; MIB as usize], 9 * MIB).unwrap(); // allocated zeros
    f.write_all_at(&pattern(4096 * 3 + 7, 3), 12 * MIB - 5000)
        .unwrap();
    f.write_all_at(&pattern(512, 4), SRC_LEN - 512).unwrap(); // last sector
    f.sync_all().unwrap();
    p
}

fn sha(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn new_out(dir: &Path, name: &str) -> (PathBuf, File) {
    let p = dir.join(name);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    (p, f)
}

fn allocated(p: &Path) -> u64 {
    fs::metadata(p).unwrap().blocks() * 512
}

fn fs_is_sparse(p: &Path) -> bool {
    allocated(p) < fs::metadata(p).unwrap().len()
}

#[test]
fn whole_copy_to_sparse_file_is_identical_and_thin() {
    let dir = tempfile::tempdir().unwrap();
    let src_path = make_source(dir.path());
    let src_bytes = fs::read(&src_path).unwrap();
    let src_mtime = fs::metadata(&src_path).unwrap().mtime_nsec();
    let src = copy::open_source(&src_path).unwrap();
    let (out_path, out) = new_out(dir.path(), "out.img");
    let mut job = CopyJob::range(0..SRC_LEN);
    job.hash = true;
    job.sync = true;
    let mut seen: Vec<Progress> = Vec::new();
    let r = copy::copy(&src, &job, Output::File(&out), &mut |p| seen.push(p)).unwrap();
    let got = fs::read(&out_path).unwrap();
    assert_eq!(got.len() as u64, SRC_LEN);
    assert!(got == src_bytes, "output differs from source");
    assert_eq!(r.sha256.as_deref(), Some(sha(&got).as_str()));
    // Source untouched.
    assert_eq!(fs::read(&src_path).unwrap(), src_bytes);
    assert_eq!(fs::metadata(&src_path).unwrap().mtime_nsec(), src_mtime);
    // Progress: monotone, ends at the total.
    assert!(seen.windows(2).all(|w| w[0].done <= w[1].done));
    assert_eq!(
        seen.last().copied(),
        Some(Progress {
            done: SRC_LEN,
            total: SRC_LEN
        })
    );
    let data = 300 * 1024 + 2 * MIB - 123 + 4096 * 3 + 7 + 512;
    assert!(
        r.bytes_written >= data && r.bytes_written < data + 6 * 4096,
        "{r:?}"
    );
    assert_eq!(r.bytes_written + r.hole_bytes, SRC_LEN);
    if fs_is_sparse(&src_path) {
        assert!(r.source_hole_bytes > 10 * MIB, "holes skipped: {r:?}");
        assert!(r.bytes_read < SRC_LEN - 10 * MIB, "{r:?}");
        // The allocated zero MiB of the source is not allocated in the output.
        assert!(
            allocated(&out_path) < allocated(&src_path),
            "output not thinner"
        );
        assert!(allocated(&out_path) <= data + 16 * 4096 + 64 * 1024);
        let mut buf = vec![0u8; 4096];
        // A hole in the output reads as zeros and is not allocated: check via SEEK_DATA.
        out.read_exact_at(&mut buf, 9 * MIB).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
    } else {
        eprintln!("skipped: temp file system does not support holes, allocation not checked");
    }
}

/// The job used by several tests and its expected output, computed in memory.
fn complex_job(src: &[u8]) -> (CopyJob, Vec<u8>) {
    let job = CopyJob {
        segments: vec![
            // The first 8 MiB at output 0.
            Segment {
                src: 0..8 * MIB,
                dst: 0,
            },
            // The last 4 KiB (a backup structure) after a gap.
            Segment {
                src: SRC_LEN - 4096..SRC_LEN,
                dst: 9 * MIB,
            },
        ],
        output_len: 9 * MIB + 8192,
        // Unused "clusters" inside the data: not read, written as zeros.
        zero_ranges: vec![5 * MIB + 4096..6 * MIB, 7 * MIB..7 * MIB + 100],
        source_patches: vec![
            Patch::new(MIB + 10, b"SYSTEM-EDIT".to_vec()),
            Patch::new(5 * MIB + 8000, vec![0xAB; 5000]), // inside a zero range
            Patch::new(SRC_LEN - 100, vec![0xCD; 50]),
        ],
        output_patches: vec![
            Patch::new(9 * MIB + 8192 - 512, vec![0xEF; 512]), // "relocated GPT"
            Patch::new(8 * MIB + 100, vec![0x77; 10]),         // in a gap
        ],
        output_offset: 65536,
        hash: true,
        sync: false,
    };
    let mut want = vec![0u8; job.output_len as usize];
    want[..8 * MIB as usize].copy_from_slice(&src[..8 * MIB as usize]);
    for z in &job.zero_ranges {
        want[z.start as usize..z.end as usize].fill(0);
    }
    want[9 * MIB as usize..9 * MIB as usize + 4096]
        .copy_from_slice(&src[(SRC_LEN - 4096) as usize..]);
    for p in &job.source_patches {
        let o = if p.offset >= SRC_LEN - 4096 {
            p.offset - (SRC_LEN - 4096) + 9 * MIB
        } else {
            p.offset
        } as usize;
        want[o..o + p.bytes.len()].copy_from_slice(&p.bytes);
    }
    for p in &job.output_patches {
        let o = p.offset as usize;
        want[o..o + p.bytes.len()].copy_from_slice(&p.bytes);
    }
    (job, want)
}

#[test]
fn segments_zero_ranges_patches_and_output_offset() {
    let dir = tempfile::tempdir().unwrap();
    let src_path = make_source(dir.path());
    let src_bytes = fs::read(&src_path).unwrap();
    let (job, want) = complex_job(&src_bytes);
    let src = copy::open_source(&src_path).unwrap();
    // An existing LU file whose first 64 KiB (metadata) must be kept, with junk after it.
    let (out_path, out) = new_out(dir.path(), "lu");
    out.write_all_at(&vec![0x5A; 65536], 0).unwrap();
    out.write_all_at(&vec![0x99; 3 * MIB as usize], 65536)
        .unwrap();
    let r = copy::copy(&src, &job, Output::File(&out), &mut |_| {}).unwrap();
    let got = fs::read(&out_path).unwrap();
    assert_eq!(got.len() as u64, 65536 + job.output_len);
    assert!(got[..65536].iter().all(|&b| b == 0x5A), "metadata kept");
    assert!(got[65536..] == want[..], "output differs from expectation");
    assert_eq!(r.sha256.as_deref(), Some(sha(&want).as_str()));
    assert_eq!(r.patched_bytes, 11 + 5000 + 50 + 512 + 10);
    assert_eq!(
        r.zero_range_bytes,
        (MIB - 4096) + 100, // not read (the patched part is materialized from zeros)
        "{r:?}"
    );
    assert_eq!(fs::read(&src_path).unwrap(), src_bytes, "source unchanged");
}

#[test]
fn stream_output_equals_file_output_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let src_path = make_source(dir.path());
    let src_bytes = fs::read(&src_path).unwrap();
    let (job, want) = complex_job(&src_bytes);
    let src = copy::open_source(&src_path).unwrap();
    let (out_path, out) = new_out(dir.path(), "out.img");
    copy::copy(&src, &job, Output::File(&out), &mut |_| {}).unwrap();
    let file_bytes = fs::read(&out_path).unwrap();
    let mut stream: Vec<u8> = Vec::new();
    let r = copy::copy(&src, &job, Output::Stream(&mut stream), &mut |_| {}).unwrap();
    assert_eq!(stream.len(), file_bytes.len());
    assert!(stream == file_bytes, "stream differs from file output");
    assert!(stream[65536..] == want[..]);
    assert_eq!(r.bytes_written, 65536 + job.output_len);
    assert_eq!(r.hole_bytes, 0);
    // copy_reader (no SEEK_DATA) gives the same stream.
    let mut stream2: Vec<u8> = Vec::new();
    let r2 =
        copy::copy_reader(&src_bytes, &job, Output::Stream(&mut stream2), &mut |_| {}).unwrap();
    assert!(stream2 == stream);
    assert_eq!(r2.sha256, r.sha256);
}

#[test]
fn block_device_output_writes_everything_unless_it_reads_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let src_path = make_source(dir.path());
    let src_bytes = fs::read(&src_path).unwrap();
    let (mut job, want) = complex_job(&src_bytes);
    job.output_offset = 4096;
    let src = copy::open_source(&src_path).unwrap();
    // A "device" full of old junk: every byte must be overwritten.
    let (dev_path, dev) = new_out(dir.path(), "dev");
    let dev_len = 4096 + job.output_len + 8192;
    dev.write_all_at(&vec![0xFF; dev_len as usize], 0).unwrap();
    let r = copy::copy(
        &src,
        &job,
        Output::BlockDevice {
            device: &dev,
            reads_zeros: false,
        },
        &mut |_| {},
    )
    .unwrap();
    let got = fs::read(&dev_path).unwrap();
    assert_eq!(got.len() as u64, dev_len, "no set_len on a device");
    assert!(got[..4096].iter().all(|&b| b == 0xFF));
    assert!(got[4096..4096 + want.len()] == want[..]);
    assert!(got[4096 + want.len()..].iter().all(|&b| b == 0xFF));
    assert_eq!(r.bytes_written, job.output_len);
    assert_eq!(r.hole_bytes, 0);
    // A device that reads zeros (here: a fresh sparse file) gets only the non-zero blocks.
    let (dev2_path, dev2) = new_out(dir.path(), "dev2");
    dev2.set_len(dev_len).unwrap();
    let r2 = copy::copy(
        &src,
        &job,
        Output::BlockDevice {
            device: &dev2,
            reads_zeros: true,
        },
        &mut |_| {},
    )
    .unwrap();
    assert!(r2.hole_bytes > 0);
    let got2 = fs::read(&dev2_path).unwrap();
    assert!(got2[4096..4096 + want.len()] == want[..]);
    // Too small a device is refused.
    let (_, small) = new_out(dir.path(), "small");
    small.set_len(MIB).unwrap();
    assert!(matches!(
        copy::copy(
            &src,
            &job,
            Output::BlockDevice {
                device: &small,
                reads_zeros: false
            },
            &mut |_| {}
        ),
        Err(Error::Truncated { .. })
    ));
}

#[test]
fn bad_jobs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src_path = make_source(dir.path());
    let src = copy::open_source(&src_path).unwrap();
    let (_, out) = new_out(dir.path(), "out");
    let none = &mut |_: Progress| {};
    // Past the source end.
    let job = CopyJob::range(0..SRC_LEN + 1);
    assert!(matches!(
        copy::copy(&src, &job, Output::File(&out), none),
        Err(Error::Truncated { .. })
    ));
    // Source patch outside every segment.
    let mut job = CopyJob::range(0..MIB);
    job.source_patches.push(Patch::new(MIB - 1, vec![1, 2]));
    assert!(matches!(
        copy::copy(&src, &job, Output::File(&out), none),
        Err(Error::PatchOutOfRange { .. })
    ));
    // Output patch past the output.
    let mut job = CopyJob::range(0..MIB);
    job.output_patches.push(Patch::new(MIB, vec![1]));
    assert!(copy::copy(&src, &job, Output::File(&out), none).is_err());
    // Overlapping segments in the output.
    let mut job = CopyJob::range(0..MIB);
    job.segments.push(Segment {
        src: 0..10,
        dst: 100,
    });
    assert!(copy::copy(&src, &job, Output::File(&out), none).is_err());
    // The source as its own output.
    let same = OpenOptions::new().write(true).open(&src_path).unwrap();
    let job = CopyJob::range(0..MIB);
    assert!(matches!(
        copy::copy(&src, &job, Output::File(&same), none),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn empty_and_all_gap_jobs() {
    let src: Vec<u8> = vec![1; 100];
    let mut out = Vec::new();
    let job = CopyJob::default();
    let r = copy::copy_reader(&src, &job, Output::Stream(&mut out), &mut |_| {}).unwrap();
    assert_eq!(r.bytes_written, 0);
    let job = CopyJob {
        output_len: 3 * MIB + 5,
        ..CopyJob::default()
    };
    let r = copy::copy_reader(&src, &job, Output::Stream(&mut out), &mut |_| {}).unwrap();
    assert_eq!(out.len() as u64, 3 * MIB + 5);
    assert!(out.iter().all(|&b| b == 0));
    assert_eq!(r.zeros_written, 3 * MIB + 5);
}

/// Tier 2: compare with `dd` and `cmp`.
#[test]
fn interop_matches_dd_and_cmp() {
    if std::env::var("IMGPREP_INTEROP").as_deref() != Ok("1") {
        eprintln!("skipped: set IMGPREP_INTEROP=1 to compare with dd/cmp");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src_path = make_source(dir.path());
    let src = copy::open_source(&src_path).unwrap();
    // Bytes [1 MiB, 13 MiB) of the source at output offset 64 KiB.
    let mut job = CopyJob {
        segments: vec![Segment {
            src: MIB..13 * MIB,
            dst: 0,
        }],
        output_len: 12 * MIB,
        ..CopyJob::default()
    };
    job.output_offset = 65536;
    let (out_path, out) = new_out(dir.path(), "ours");
    copy::copy(&src, &job, Output::File(&out), &mut |_| {}).unwrap();
    let dd_path = dir.path().join("dd");
    let st = std::process::Command::new("dd")
        .arg(format!("if={}", src_path.display()))
        .arg(format!("of={}", dd_path.display()))
        .args(["bs=64K", "skip=16", "seek=1", "count=192", "status=none"])
        .status()
        .unwrap();
    assert!(st.success());
    let st = std::process::Command::new("cmp")
        .arg(&out_path)
        .arg(&dd_path)
        .status()
        .unwrap();
    assert!(st.success(), "cmp reports a difference");
}
