// SPDX-License-Identifier: MIT OR Apache-2.0
//! Streaming copy of (parts of) an image into a sparse file, a block device or a stream, with
//! zero ranges (unused clusters), source holes skipped and byte patches applied on the fly.
//!
//! The copier works in *output coordinates* `[0, output_len)`; output byte `o` lands at file
//! position `output_offset + o`. A [`CopyJob`] lists [`Segment`]s (source range → output start);
//! output bytes not covered by any segment are zeros. Inside a segment, source bytes in a
//! `zero_ranges` range are not read and become zeros, and holes of a sparse source are found with
//! `lseek(SEEK_DATA/SEEK_HOLE)` and not read either. Then `source_patches` (source offsets) and
//! `output_patches` (output offsets, applied last) are overlaid. The source is only read.
//!
//! Memory is constant: one 1 MiB data buffer and one 1 MiB zero buffer, whatever the disk
//! size (the job's own lists aside).

use crate::io::ReadAt;
use crate::patch::Patch;
use crate::{Error, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// Size of the copy buffer (largest single read or write): 1 MiB.
pub const BUF_SIZE: usize = 1 << 20;
/// Grain of zero detection for sparse outputs: 4 KiB, aligned on output file positions.
pub const ZERO_BLOCK: usize = 4096;
/// Most segments, zero ranges or patches (each list) a job may hold.
pub const MAX_JOB_ENTRIES: usize = 4_000_000;
/// Most patch bytes (source + output patches) a job may hold: 64 MiB.
pub const MAX_JOB_PATCH_BYTES: u64 = 64 << 20;
/// The progress callback is called at least every this many output bytes (and at the end).
pub const PROGRESS_STEP: u64 = 8 << 20;

/// Copy source bytes `src` to output offset `dst` (output coordinates).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    /// Source byte range.
    pub src: Range<u64>,
    /// Output offset of `src.start`.
    pub dst: u64,
}

/// What to copy where. See the module documentation for the coordinate systems.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyJob {
    /// Source ranges and where they go; output ranges must not overlap (sources may).
    pub segments: Vec<Segment>,
    /// Length of the output in bytes (output coordinates); gaps between segments are zeros.
    pub output_len: u64,
    /// Source ranges to write as zeros without reading them (e.g. unused NTFS clusters).
    pub zero_ranges: Vec<Range<u64>>,
    /// Byte substitutions at source offsets; each must lie fully inside one segment's source
    /// range, and they must not overlap each other. They win over zero ranges.
    pub source_patches: Vec<Patch>,
    /// Byte substitutions at output offsets (e.g. a relocated GPT), applied after everything
    /// else; inside `[0, output_len)`, not overlapping each other.
    pub output_patches: Vec<Patch>,
    /// File position of output byte 0 (65536 for COMSTAR shared-metadata LU files). A stream
    /// gets this many zero bytes first, so a stream equals the file byte for byte.
    pub output_offset: u64,
    /// Compute the SHA-256 of the output bytes `[0, output_len)` (costs CPU: holes are hashed
    /// as zeros).
    pub hash: bool,
    /// fsync a file or device output at the end.
    pub sync: bool,
}

impl CopyJob {
    /// A job copying source bytes `range` to output offset 0, `output_len = range` length.
    pub fn range(range: Range<u64>) -> Self {
        let len = range.end.saturating_sub(range.start);
        CopyJob {
            segments: vec![Segment { src: range, dst: 0 }],
            output_len: len,
            ..CopyJob::default()
        }
    }
}

/// Where the copy goes.
pub enum Output<'a> {
    /// A regular file, opened for writing. Its contents from `output_offset` on are discarded:
    /// it is cut to `output_offset`, extended with `set_len` to `output_offset + output_len`
    /// (one big hole), and only non-zero 4 KiB blocks are written. Bytes before
    /// `output_offset` are kept.
    File(&'a File),
    /// A block device (or any file that must not be truncated): every byte is written unless
    /// `reads_zeros` (the device is known to read zeros where nothing was written, e.g. a
    /// freshly created sparse zvol or thin LV), in which case zero blocks are skipped.
    BlockDevice {
        /// The device, opened for writing.
        device: &'a File,
        /// The device reads zeros where nothing was written.
        reads_zeros: bool,
    },
    /// A stream (stdout, a pipe, a socket): gaps are written as zeros, in 1 MiB writes.
    Stream(&'a mut dyn Write),
}

/// Progress of a copy, in output bytes (excluding `output_offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Output bytes done.
    pub done: u64,
    /// Output bytes in total (`output_len`).
    pub total: u64,
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Bytes written to the output (data and zeros, including a stream's offset prefix).
    pub bytes_written: u64,
    /// Zero bytes among `bytes_written`.
    pub zeros_written: u64,
    /// Output bytes left as holes (not written).
    pub hole_bytes: u64,
    /// Source bytes not read because the source has a hole there (SEEK_DATA/SEEK_HOLE).
    pub source_hole_bytes: u64,
    /// Source bytes not read because they are in a zero range.
    pub zero_range_bytes: u64,
    /// Bytes overlaid by patches.
    pub patched_bytes: u64,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// SHA-256 (hex) of the output bytes `[0, output_len)` if `CopyJob::hash`.
    pub sha256: Option<String>,
}

/// Opens a source image read-only (the copier never writes to its source).
pub fn open_source(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| Error::io(format!("opening {} read-only", path.display()), e))
}

/// A `File` writing to standard output (a duplicate of fd 1), for [`Output::Stream`]:
/// unlike `std::io::Stdout` it has no line buffering, so each 1 MiB chunk is one `write`.
pub fn stdout_file() -> Result<File> {
    use std::os::fd::AsFd;
    let fd = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| Error::io("duplicating standard output", e))?;
    Ok(File::from(fd))
}

/// Copies from a file or block device, skipping the source's holes (SEEK_DATA/SEEK_HOLE).
pub fn copy(
    source: &File,
    job: &CopyJob,
    out: Output<'_>,
    progress: &mut dyn FnMut(Progress),
) -> Result<CopyReport> {
    if let Output::File(f) | Output::BlockDevice { device: f, .. } = &out {
        let (a, b) = (source.metadata(), f.metadata());
        if let (Ok(a), Ok(b)) = (a, b) {
            if a.dev() == b.dev() && a.ino() == b.ino() {
                return Err(Error::Invalid(
                    "the output is the source file itself".to_string(),
                ));
            }
        }
    }
    run(source, Some(source), job, out, progress)
}

/// Copies from any [`ReadAt`] (no hole detection on the source).
pub fn copy_reader(
    source: &dyn ReadAt,
    job: &CopyJob,
    out: Output<'_>,
    progress: &mut dyn FnMut(Progress),
) -> Result<CopyReport> {
    run(source, None, job, out, progress)
}

// ---------------------------------------------------------------------------------------------

struct Plan<'j> {
    segs: Vec<&'j Segment>,
    zeros: Vec<Range<u64>>,
    spatches: Vec<&'j Patch>,
    opatches: Vec<&'j Patch>,
}

fn validate<'j>(job: &'j CopyJob, src_len: u64) -> Result<Plan<'j>> {
    for (what, n) in [
        ("segments", job.segments.len()),
        ("zero ranges", job.zero_ranges.len()),
        ("source patches", job.source_patches.len()),
        ("output patches", job.output_patches.len()),
    ] {
        if n > MAX_JOB_ENTRIES {
            return Err(Error::Invalid(format!(
                "copy job: {n} {what}, more than {MAX_JOB_ENTRIES}"
            )));
        }
    }
    job.output_offset
        .checked_add(job.output_len)
        .ok_or_else(|| Error::Invalid("copy job: output offset + length overflows".into()))?;
    let mut segs: Vec<&Segment> = job
        .segments
        .iter()
        .filter(|s| s.src.start < s.src.end)
        .collect();
    for s in &segs {
        if s.src.end > src_len {
            return Err(Error::Truncated {
                what: format!(
                    "copy segment {:#x}..{:#x} of the source",
                    s.src.start, s.src.end
                ),
                needed: s.src.end,
                available: src_len,
            });
        }
        let end = s
            .dst
            .checked_add(s.src.end - s.src.start)
            .filter(|&e| e <= job.output_len);
        if end.is_none() {
            return Err(Error::Invalid(format!(
                "copy segment {:#x}..{:#x} at output {:#x} reaches past the output length {}",
                s.src.start, s.src.end, s.dst, job.output_len
            )));
        }
    }
    segs.sort_by_key(|s| s.dst);
    for w in segs.windows(2) {
        if let [a, b] = w {
            if dst_end(a) > b.dst {
                return Err(Error::Invalid(format!(
                    "copy segments overlap in the output at {:#x}",
                    b.dst
                )));
            }
        }
    }
    let total: u64 = job
        .source_patches
        .iter()
        .chain(&job.output_patches)
        .map(|p| p.len())
        .fold(0, u64::saturating_add);
    if total > MAX_JOB_PATCH_BYTES {
        return Err(Error::Invalid(format!(
            "copy job: {total} patch bytes, more than {MAX_JOB_PATCH_BYTES}"
        )));
    }
    let spatches = sorted_patches(&job.source_patches, "source")?;
    // Every source patch must be inside one segment's source range.
    let mut by_src: Vec<&Segment> = segs.clone();
    by_src.sort_by_key(|s| s.src.start);
    let mut max_end = Vec::with_capacity(by_src.len());
    let mut m = 0u64;
    for s in &by_src {
        m = m.max(s.src.end);
        max_end.push(m);
    }
    for p in &spatches {
        let end = p.end().unwrap_or(u64::MAX);
        let k = by_src.partition_point(|s| s.src.start <= p.offset);
        let covered = k
            .checked_sub(1)
            .and_then(|i| max_end.get(i))
            .is_some_and(|&e| e >= end);
        if !covered {
            return Err(Error::PatchOutOfRange {
                offset: p.offset,
                len: p.len(),
            });
        }
    }
    let opatches = sorted_patches(&job.output_patches, "output")?;
    for p in &opatches {
        if p.end().unwrap_or(u64::MAX) > job.output_len {
            return Err(Error::PatchOutOfRange {
                offset: p.offset,
                len: p.len(),
            });
        }
    }
    Ok(Plan {
        segs,
        zeros: crate::journal::merge_ranges(&job.zero_ranges),
        spatches,
        opatches,
    })
}

fn sorted_patches<'j>(patches: &'j [Patch], what: &str) -> Result<Vec<&'j Patch>> {
    let mut v: Vec<&Patch> = Vec::with_capacity(patches.len());
    for p in patches {
        if p.end().is_none() {
            return Err(Error::PatchOutOfRange {
                offset: p.offset,
                len: p.len(),
            });
        }
        if !p.is_empty() {
            v.push(p);
        }
    }
    v.sort_by_key(|p| p.offset);
    for w in v.windows(2) {
        if let [a, b] = w {
            if a.end().unwrap_or(u64::MAX) > b.offset {
                return Err(Error::Invalid(format!(
                    "{what} patches overlap at {:#x}",
                    b.offset
                )));
            }
        }
    }
    Ok(v)
}

fn dst_end(s: &Segment) -> u64 {
    // Checked in validate().
    s.dst.saturating_add(s.src.end - s.src.start)
}

/// Patches overlapping `[start, start + len)`, in offset order.
fn overlapping<'a, 'j>(
    patches: &'a [&'j Patch],
    start: u64,
    len: u64,
) -> impl Iterator<Item = &'j Patch> + 'a {
    let end = start.saturating_add(len);
    let i = patches.partition_point(|p| p.end().unwrap_or(u64::MAX) <= start);
    patches
        .get(i..)
        .unwrap_or(&[])
        .iter()
        .take_while(move |p| p.offset < end)
        .copied()
}

/// What the source holds from a position on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Data,
    ZeroRange,
    Hole,
}

/// Cached SEEK_DATA/SEEK_HOLE answers.
struct HoleMap<'a> {
    fd: Option<&'a File>,
    /// No data in `[from, data.start)`; `data` is data (start == u64::MAX: none to EOF).
    cache: Option<(u64, Range<u64>)>,
}

impl HoleMap<'_> {
    /// `(Data, end)` or `(Hole, end)` for position `pos`.
    fn at(&mut self, pos: u64) -> (Kind, u64) {
        let Some(fd) = self.fd else {
            return (Kind::Data, u64::MAX);
        };
        if let Some((from, data)) = &self.cache {
            if data.start <= pos && pos < data.end {
                return (Kind::Data, data.end);
            }
            if *from <= pos && pos < data.start {
                return (Kind::Hole, data.start);
            }
        }
        use rustix::fs::{seek, SeekFrom};
        match seek(fd, SeekFrom::Data(pos)) {
            Ok(ds) => {
                let de = seek(fd, SeekFrom::Hole(ds)).unwrap_or(u64::MAX);
                if de <= ds {
                    // Inconsistent answer: treat as data.
                    self.fd = None;
                    return (Kind::Data, u64::MAX);
                }
                self.cache = Some((pos, ds..de));
                if ds > pos {
                    (Kind::Hole, ds)
                } else {
                    (Kind::Data, de)
                }
            }
            Err(rustix::io::Errno::NXIO) => {
                self.cache = Some((pos, u64::MAX..u64::MAX));
                (Kind::Hole, u64::MAX)
            }
            Err(_) => {
                // SEEK_DATA not supported here: read everything.
                self.fd = None;
                (Kind::Data, u64::MAX)
            }
        }
    }
}

struct Copier<'s, 'o, 'j> {
    src: &'s dyn ReadAt,
    holes: HoleMap<'s>,
    plan: Plan<'j>,
    out: Output<'o>,
    off: u64,
    buf: Vec<u8>,
    zero: Vec<u8>,
    hasher: Option<Sha256>,
    r: CopyReport,
}

fn run<'s>(
    src: &'s dyn ReadAt,
    fd: Option<&'s File>,
    job: &CopyJob,
    out: Output<'_>,
    progress: &mut dyn FnMut(Progress),
) -> Result<CopyReport> {
    let start = Instant::now();
    let src_len = src
        .size()
        .map_err(|e| Error::io("getting the source size", e))?;
    let plan = validate(job, src_len)?;
    let total_end = job.output_offset.saturating_add(job.output_len);
    match &out {
        Output::File(f) => {
            let meta = f
                .metadata()
                .map_err(|e| Error::io("stat of the output file", e))?;
            if !meta.is_file() {
                return Err(Error::Invalid(
                    "output is not a regular file (use a block-device output)".into(),
                ));
            }
            f.set_len(job.output_offset)
                .and_then(|()| f.set_len(total_end))
                .map_err(|e| Error::io(format!("setting the output length to {total_end}"), e))?;
        }
        Output::BlockDevice { device, .. } => {
            let size = ReadAt::size(*device).map_err(|e| Error::io("output device size", e))?;
            if size < total_end {
                return Err(Error::Truncated {
                    what: "output device".into(),
                    needed: total_end,
                    available: size,
                });
            }
        }
        Output::Stream(_) => {}
    }
    let mut c = Copier {
        src,
        holes: HoleMap { fd, cache: None },
        plan,
        out,
        off: job.output_offset,
        buf: vec![0u8; BUF_SIZE],
        zero: vec![0u8; BUF_SIZE],
        hasher: job.hash.then(Sha256::new),
        r: CopyReport {
            bytes_read: 0,
            bytes_written: 0,
            zeros_written: 0,
            hole_bytes: 0,
            source_hole_bytes: 0,
            zero_range_bytes: 0,
            patched_bytes: 0,
            elapsed: Duration::ZERO,
            sha256: None,
        },
    };
    if let Output::Stream(w) = &mut c.out {
        let mut left = job.output_offset;
        while left > 0 {
            let n = left.min(BUF_SIZE as u64) as usize;
            w.write_all(c.zero.get(..n).unwrap_or(&[]))
                .map_err(|e| Error::io("writing the output offset prefix", e))?;
            left -= n as u64;
            c.r.bytes_written += n as u64;
            c.r.zeros_written += n as u64;
        }
    }

    let total = job.output_len;
    let mut o = 0u64;
    let mut si = 0usize;
    let mut last_report = 0u64;
    progress(Progress { done: 0, total });
    while o < total {
        while c.plan.segs.get(si).is_some_and(|s| dst_end(s) <= o) {
            si += 1;
        }
        let n = match c.plan.segs.get(si).copied() {
            Some(s) if s.dst <= o => {
                let src_pos = s.src.start + (o - s.dst);
                let (kind, len) = c.classify(src_pos, dst_end(s) - o);
                let n = c.chunk(o, len, Some(src_pos), kind)?;
                match kind {
                    Kind::Hole => c.r.source_hole_bytes += n,
                    Kind::ZeroRange => c.r.zero_range_bytes += n,
                    Kind::Data => {}
                }
                n
            }
            next => {
                let end = next.map_or(total, |s| s.dst);
                c.chunk(o, end - o, None, Kind::ZeroRange)?
            }
        };
        if n == 0 {
            return Err(Error::Invalid(format!(
                "copy made no progress at output offset {o:#x}"
            )));
        }
        o += n;
        if o - last_report >= PROGRESS_STEP {
            last_report = o;
            progress(Progress { done: o, total });
        }
    }
    match &mut c.out {
        Output::Stream(w) => w.flush().map_err(|e| Error::io("flushing the output", e))?,
        Output::File(f) | Output::BlockDevice { device: f, .. } => {
            if job.sync {
                f.sync_all()
                    .map_err(|e| Error::io("fsync of the output", e))?;
            }
        }
    }
    if last_report != total || total == 0 {
        progress(Progress { done: total, total });
    }
    c.r.sha256 = c
        .hasher
        .take()
        .map(|h| crate::journal::hex32(h.finalize().into()));
    c.r.elapsed = start.elapsed();
    Ok(c.r)
}

impl Copier<'_, '_, '_> {
    /// Kind of the source from `pos` on and for how many bytes (at most `max`; data at most
    /// [`BUF_SIZE`]).
    fn classify(&mut self, pos: u64, max: u64) -> (Kind, u64) {
        let zi = self.plan.zeros.partition_point(|r| r.end <= pos);
        let mut data_limit = max.min(BUF_SIZE as u64);
        if let Some(z) = self.plan.zeros.get(zi) {
            if z.start <= pos {
                return (Kind::ZeroRange, (z.end - pos).min(max));
            }
            data_limit = data_limit.min(z.start - pos);
        }
        match self.holes.at(pos) {
            (Kind::Hole, end) => {
                let zlimit = self.plan.zeros.get(zi).map_or(u64::MAX, |z| z.start - pos);
                (Kind::Hole, (end - pos).min(max).min(zlimit))
            }
            (_, end) => (Kind::Data, data_limit.min(end - pos)),
        }
    }

    /// Handles up to `len` output bytes at `o`; returns how many were done.
    fn chunk(&mut self, o: u64, len: u64, src: Option<u64>, kind: Kind) -> Result<u64> {
        let mut len = len;
        if kind != Kind::Data {
            // First patched output byte in [o, o + len), if any.
            let mut first = overlapping(&self.plan.opatches, o, len)
                .next()
                .map(|p| p.offset.max(o));
            if let Some(s) = src {
                if let Some(p) = overlapping(&self.plan.spatches, s, len).next() {
                    let at = o + (p.offset.max(s) - s);
                    first = Some(first.map_or(at, |f| f.min(at)));
                }
            }
            match first {
                None => {
                    self.emit_zero(o, len)?;
                    return Ok(len);
                }
                Some(f) if f > o => {
                    self.emit_zero(o, f - o)?;
                    return Ok(f - o);
                }
                Some(_) => {
                    len = len.min(BUF_SIZE as u64);
                    let n = len as usize;
                    let buf = self.buf.get_mut(..n).unwrap_or(&mut []);
                    buf.fill(0);
                }
            }
        } else {
            len = len.min(BUF_SIZE as u64);
            let n = len as usize;
            let s = src.unwrap_or(0);
            let buf = self.buf.get_mut(..n).unwrap_or(&mut []);
            self.src
                .read_exact_at(buf, s)
                .map_err(|e| Error::io(format!("reading the source at {s:#x} (+{n})"), e))?;
            self.r.bytes_read += len;
        }
        let n = len as usize;
        let buf = self.buf.get_mut(..n).unwrap_or(&mut []);
        let mut patched = 0usize;
        if let Some(s) = src {
            for p in overlapping(&self.plan.spatches, s, len) {
                patched += p.apply_to(buf, s);
            }
        }
        for p in overlapping(&self.plan.opatches, o, len) {
            patched += p.apply_to(buf, o);
        }
        self.r.patched_bytes += patched as u64;
        self.emit_data(o, n)?;
        Ok(len)
    }

    /// Writes `self.buf[..n]` at output offset `o`.
    fn emit_data(&mut self, o: u64, n: usize) -> Result<()> {
        let data = self.buf.get(..n).unwrap_or(&[]);
        if let Some(h) = &mut self.hasher {
            h.update(data);
        }
        let pos = self.off + o;
        match &mut self.out {
            Output::Stream(w) => {
                w.write_all(data)
                    .map_err(|e| Error::io(format!("writing the output at {pos:#x}"), e))?;
                self.r.bytes_written += n as u64;
            }
            Output::BlockDevice {
                device,
                reads_zeros: false,
            } => {
                device
                    .write_all_at(data, pos)
                    .map_err(|e| Error::io(format!("writing the output at {pos:#x}"), e))?;
                self.r.bytes_written += n as u64;
            }
            Output::File(f)
            | Output::BlockDevice {
                device: f,
                reads_zeros: true,
            } => {
                let (w, h) = write_sparse(f, data, pos)?;
                self.r.bytes_written += w;
                self.r.hole_bytes += h;
            }
        }
        Ok(())
    }

    /// Output bytes `[o, o + len)` are zeros.
    fn emit_zero(&mut self, o: u64, len: u64) -> Result<()> {
        if let Some(h) = &mut self.hasher {
            let mut left = len;
            while left > 0 {
                let n = left.min(BUF_SIZE as u64) as usize;
                h.update(self.zero.get(..n).unwrap_or(&[]));
                left -= n as u64;
            }
        }
        let mut pos = self.off + o;
        match &mut self.out {
            Output::File(_)
            | Output::BlockDevice {
                reads_zeros: true, ..
            } => {
                self.r.hole_bytes += len;
            }
            Output::Stream(w) => {
                let mut left = len;
                while left > 0 {
                    let n = left.min(BUF_SIZE as u64) as usize;
                    w.write_all(self.zero.get(..n).unwrap_or(&[]))
                        .map_err(|e| Error::io(format!("writing zeros at {pos:#x}"), e))?;
                    left -= n as u64;
                    pos += n as u64;
                }
                self.r.bytes_written += len;
                self.r.zeros_written += len;
            }
            Output::BlockDevice { device, .. } => {
                let mut left = len;
                while left > 0 {
                    let n = left.min(BUF_SIZE as u64) as usize;
                    device
                        .write_all_at(self.zero.get(..n).unwrap_or(&[]), pos)
                        .map_err(|e| Error::io(format!("writing zeros at {pos:#x}"), e))?;
                    left -= n as u64;
                    pos += n as u64;
                }
                self.r.bytes_written += len;
                self.r.zeros_written += len;
            }
        }
        Ok(())
    }
}

/// True if every byte is zero (vectorizable: ORs 64-byte chunks).
pub(crate) fn is_zero(b: &[u8]) -> bool {
    b.chunks(64).all(|c| c.iter().fold(0u8, |a, &x| a | x) == 0)
}

/// Writes the non-zero 4 KiB blocks (aligned on file positions) of `data` at `pos`, coalescing
/// runs. Returns (bytes written, bytes skipped).
fn write_sparse(f: &File, data: &[u8], pos: u64) -> Result<(u64, u64)> {
    let mut written = 0u64;
    let mut skipped = 0u64;
    let mut run_start: Option<usize> = None;
    let mut i = 0usize;
    let flush = |from: usize, to: usize| -> Result<u64> {
        let chunk = data.get(from..to).unwrap_or(&[]);
        let at = pos + from as u64;
        f.write_all_at(chunk, at)
            .map_err(|e| Error::io(format!("writing the output at {at:#x}"), e))?;
        Ok(chunk.len() as u64)
    };
    while i < data.len() {
        let misalign = ((pos + i as u64) % ZERO_BLOCK as u64) as usize;
        let end = (i + ZERO_BLOCK - misalign).min(data.len());
        let block = data.get(i..end).unwrap_or(&[]);
        if is_zero(block) {
            if let Some(s) = run_start.take() {
                written += flush(s, i)?;
            }
            skipped += block.len() as u64;
        } else if run_start.is_none() {
            run_start = Some(i);
        }
        i = end;
    }
    if let Some(s) = run_start {
        written += flush(s, data.len())?;
    }
    Ok((written, skipped))
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[0; 4097]));
        let mut v = vec![0u8; 4097];
        v[4096] = 1;
        assert!(!is_zero(&v));
        assert!(is_zero(&[]));
    }

    #[test]
    fn validation() {
        let mut job = CopyJob::range(0..100);
        assert!(validate(&job, 100).is_ok());
        assert!(matches!(validate(&job, 50), Err(Error::Truncated { .. })));
        job.source_patches.push(Patch::new(98, vec![1, 2, 3]));
        assert!(matches!(
            validate(&job, 100),
            Err(Error::PatchOutOfRange { offset: 98, .. })
        ));
        job.source_patches.clear();
        job.segments.push(Segment {
            src: 0..10,
            dst: 50,
        });
        assert!(matches!(validate(&job, 100), Err(Error::Invalid(_))));
        job.segments.pop();
        job.output_patches.push(Patch::new(99, vec![1, 2]));
        assert!(validate(&job, 100).is_err());
    }

    #[test]
    fn in_memory_copy_with_patches_and_gaps() {
        let src: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let job = CopyJob {
            segments: vec![
                Segment {
                    src: 100..200,
                    dst: 0,
                },
                Segment {
                    src: 0..50,
                    dst: 300,
                },
            ],
            output_len: 400,
            zero_ranges: vec![150..160],
            source_patches: vec![Patch::new(155, vec![9, 9])],
            output_patches: vec![Patch::new(399, vec![7])],
            hash: true,
            ..CopyJob::default()
        };
        let mut out = Vec::new();
        let r = copy_reader(&src, &job, Output::Stream(&mut out), &mut |_| {}).unwrap();
        let mut want = vec![0u8; 400];
        want[..100].copy_from_slice(&src[100..200]);
        want[50..60].fill(0);
        want[55] = 9;
        want[56] = 9;
        want[300..350].copy_from_slice(&src[..50]);
        want[399] = 7;
        assert_eq!(out, want);
        assert_eq!(r.sha256, Some(crate::journal::sha256_hex(&want)));
        assert_eq!(r.bytes_written, 400);
        assert_eq!(r.patched_bytes, 3);
    }
}
