// SPDX-License-Identifier: MIT OR Apache-2.0
//! Full structural verification of a hive, in the spirit of Windows' own checker.
//!
//! [`check`] never stops at the first problem: it reports every one it finds, each with the
//! offset (relative to the hive bins) of the structure at fault, and gathers a [`Summary`]
//! (keys, values, security cells, free and allocated space, slack).
//!
//! Rules, in the order they are applied:
//!
//! 1. Base block: version 1.3–1.6, primary file type, format 1, hive-bins size a non-zero
//!    multiple of 4096 inside the file, checksum right, sequence numbers equal (a dirty hive is
//!    reported as a problem of kind [`ProblemKind::Dirty`]: its logs must be replayed first).
//! 2. Bins: each `hbin` header has the signature, an offset field equal to its real position, a
//!    size that is a non-zero multiple of 4096, and the bins are contiguous up to the hive-bins
//!    size. Cells fill each bin exactly: every size is a non-zero multiple of 8 (so every cell is
//!    8-aligned) and no cell crosses the end of its bin.
//! 3. The tree, walked from the root: every reference points at the start of an allocated cell;
//!    no cell is reached twice (one bitmap over cell offsets: catches cycles and shared cells);
//!    `nk`/`vk`/`sk`/`db`/list signatures; subkey lists sorted in Windows order
//!    ([`upcase::cmp_units`]) across `ri` leaves, no case-insensitive duplicates, `lh` hashes
//!    and `lf` hints right; `ri` never pointing to `ri`; list kinds allowed for the minor version
//!    (`lh` needs 1.5+); subkey and value counts match the lists; parent offsets right; depth ≤
//!    [`MAX_DEPTH`]; the nk "largest" fields (subkey name — low 16 bits —, subkey class, value
//!    name, value data) not smaller than the truth; value data inside its cell; big data
//!    (`db`) exactly when minor ≥ 4 and size > 16344, with the right segment count.
//! 4. Security: every key references an `sk`; each `sk`'s reference count equals the number of
//!    keys pointing at it; the Flink/Blink ring is closed and consistent and holds exactly the
//!    referenced `sk` cells.
//!
//! Allocated cells that nothing references are *not* problems (Windows tolerates such leaks;
//! hivex's writer leaves them): they are counted in [`Summary::unreachable_cells`].
//!
//! Work is linear in the hive size: each cell is visited at most once, and at most
//! [`MAX_PROBLEMS`] problems are stored (the rest are only counted).

use std::collections::HashMap;

use serde::Serialize;

use crate::base::{le32, BASE_BLOCK_SIZE, NIL};
use crate::hive::{Hive, ListKind, SubkeyList, BIG_DATA_THRESHOLD, KEY_HIVE_ENTRY, MAX_DEPTH};
use crate::upcase;

/// At most this many problems are stored in a report (all are counted).
pub const MAX_PROBLEMS: usize = 10_000;
/// Longest key name Windows accepts (characters).
pub const MAX_KEY_NAME_CHARS: usize = 255;
/// Longest value name Windows accepts (characters).
pub const MAX_VALUE_NAME_CHARS: usize = 16_383;
/// Size of an `hbin` header.
const HBIN_HEADER: usize = 32;
/// Size of a hive bin page.
const PAGE: usize = 4096;

/// One problem found by [`check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Offset (relative to the hive bins, i.e. file offset − 4096) of the structure at fault;
    /// for base-block problems, the file offset of the field.
    pub offset: u32,
    /// Category.
    pub kind: ProblemKind,
    /// What is wrong, in words.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:#010x} {}: {}",
            self.offset,
            self.kind.as_str(),
            self.message
        )
    }
}

/// Categories of problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ProblemKind {
    /// Base block fields (version, type, format, sizes, root).
    BaseBlock,
    /// The hive is dirty (sequence numbers differ or bad checksum).
    Dirty,
    /// An `hbin` header or the bin sequence.
    Bin,
    /// A cell's size or placement.
    Cell,
    /// A reference to something that is not the start of an allocated cell.
    Reference,
    /// A cell reached twice (cycle or shared structure).
    Shared,
    /// A wrong signature or a cell too small for its record.
    Signature,
    /// Key node fields (parent, flags, name).
    Key,
    /// A subkey list (kind, ri→ri, size).
    List,
    /// Subkeys out of Windows order.
    Order,
    /// Case-insensitive duplicate names.
    Duplicate,
    /// A wrong `lh` hash or `lf` hint.
    Hash,
    /// A count field that does not match its list.
    Count,
    /// A value (data size, data cell).
    Value,
    /// Big-data layout.
    BigData,
    /// Security cells: reference counts, Flink/Blink ring.
    Security,
    /// An nk "largest name/class/data" field smaller than the truth.
    LargestField,
    /// Tree deeper than [`MAX_DEPTH`].
    Depth,
}

impl ProblemKind {
    /// Short kebab-case name (as in the JSON output).
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::BaseBlock => "base-block",
            ProblemKind::Dirty => "dirty",
            ProblemKind::Bin => "bin",
            ProblemKind::Cell => "cell",
            ProblemKind::Reference => "reference",
            ProblemKind::Shared => "shared",
            ProblemKind::Signature => "signature",
            ProblemKind::Key => "key",
            ProblemKind::List => "list",
            ProblemKind::Order => "order",
            ProblemKind::Duplicate => "duplicate",
            ProblemKind::Hash => "hash",
            ProblemKind::Count => "count",
            ProblemKind::Value => "value",
            ProblemKind::BigData => "big-data",
            ProblemKind::Security => "security",
            ProblemKind::LargestField => "largest-field",
            ProblemKind::Depth => "depth",
        }
    }
}

/// Totals gathered while checking.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// File size in bytes.
    pub file_size: u64,
    /// Hive-bins data size from the base block.
    pub hbins_size: u32,
    /// Bytes in the file after the last bin (room to grow without extending the file).
    pub slack_bytes: u64,
    /// Number of hive bins scanned.
    pub bins: u64,
    /// Key nodes reachable from the root.
    pub keys: u64,
    /// Values reachable from the root.
    pub values: u64,
    /// Values stored as big data (`db`).
    pub big_data_values: u64,
    /// Distinct security cells referenced by keys.
    pub security_cells: u64,
    /// Deepest key (root = 0).
    pub max_depth: u32,
    /// Allocated cells in the bins.
    pub allocated_cells: u64,
    /// Bytes in allocated cells (size fields included).
    pub allocated_bytes: u64,
    /// Free cells in the bins.
    pub free_cells: u64,
    /// Bytes in free cells (what an editor can reuse without growing the hive).
    pub free_bytes: u64,
    /// Largest free cell (bytes, size field included).
    pub largest_free_cell: u64,
    /// Allocated cells that nothing reachable from the root references (leaked).
    pub unreachable_cells: u64,
    /// Bytes in those leaked cells.
    pub unreachable_bytes: u64,
    /// Whether the base block says dirty.
    pub dirty: bool,
}

/// The result of [`check`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// The problems found (at most [`MAX_PROBLEMS`]), in the order found.
    pub problems: Vec<Problem>,
    /// Total number of problems, including those not stored.
    pub problem_count: u64,
    /// Totals.
    pub summary: Summary,
}

impl CheckReport {
    /// True when no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problem_count == 0
    }

    /// Number of problems of one kind (among the stored ones).
    pub fn count(&self, kind: ProblemKind) -> usize {
        self.problems.iter().filter(|p| p.kind == kind).count()
    }
}

/// A bitmap with one bit per 8-byte unit of the hive bins.
struct Bitmap(Vec<u64>);

impl Bitmap {
    fn new(bytes: usize) -> Bitmap {
        Bitmap(vec![0; bytes / 8 / 64 + 1])
    }
    fn get(&self, off: u32) -> bool {
        let i = (off / 8) as usize;
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    /// Sets the bit; returns whether it was already set.
    fn set(&mut self, off: u32) -> bool {
        let i = (off / 8) as usize;
        match self.0.get_mut(i / 64) {
            Some(w) => {
                let was = *w & (1 << (i % 64)) != 0;
                *w |= 1 << (i % 64);
                was
            }
            None => false,
        }
    }
}

/// A subkey-list element: (nk offset, (leaf kind, hint/hash), leaf offset).
type Entry = (u32, Option<(ListKind, u32)>, u32);
/// A key waiting to be visited: (nk offset, expected parent or NIL, depth, referrer).
type Pending = (u32, u32, u32, u32);

struct Checker<'h, 'a> {
    hive: &'h Hive<'a>,
    bins: &'a [u8],
    report: CheckReport,
    /// Start of every allocated cell found by the bin scan.
    allocated: Bitmap,
    /// Cells reached from the root.
    reached: Bitmap,
    /// Security cell → number of keys referencing it.
    sk_refs: HashMap<u32, u32>,
    /// Part of the tree was not walked (depth limit): reference counts can only be too high.
    cut: bool,
}

/// Checks the whole hive (see the module documentation for the rules).
pub fn check(hive: &Hive<'_>) -> CheckReport {
    let bins = hive.bins();
    let mut c = Checker {
        hive,
        bins,
        report: CheckReport::default(),
        allocated: Bitmap::new(bins.len()),
        reached: Bitmap::new(bins.len()),
        sk_refs: HashMap::new(),
        cut: false,
    };
    c.base_block();
    c.scan_bins();
    c.walk();
    c.security();
    c.leaks();
    c.report
}

fn le16(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .unwrap_or(0)
}

fn le32s(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .unwrap_or(0)
}

/// The `lf` hint Windows stores: the first four characters as bytes, zero padded.
fn lf_hint(units: &[u16]) -> [u8; 4] {
    let mut h = [0u8; 4];
    for (i, &u) in units.iter().take(4).enumerate() {
        h[i] = u as u8;
    }
    h
}

impl<'a> Checker<'_, 'a> {
    fn problem(&mut self, offset: u32, kind: ProblemKind, message: impl Into<String>) {
        self.report.problem_count += 1;
        if self.report.problems.len() < MAX_PROBLEMS {
            self.report.problems.push(Problem {
                offset,
                kind,
                message: message.into(),
            });
        }
    }

    fn base_block(&mut self) {
        let b = self.hive.base_block();
        let file_len = self.hive.bytes().len() as u64;
        let s = &mut self.report.summary;
        s.file_size = file_len;
        s.hbins_size = b.hbins_size;
        s.dirty = b.is_dirty();
        s.slack_bytes = file_len.saturating_sub(BASE_BLOCK_SIZE as u64 + u64::from(b.hbins_size));
        if b.seq1 != b.seq2 {
            self.problem(
                4,
                ProblemKind::Dirty,
                format!(
                    "sequence numbers differ ({} / {}): the transaction logs must be replayed",
                    b.seq1, b.seq2
                ),
            );
        }
        if !b.checksum_ok {
            let want = crate::base::checksum(self.hive.bytes());
            self.problem(
                508,
                ProblemKind::Dirty,
                format!(
                    "base block checksum {:#010x}, should be {want:#010x}",
                    b.checksum
                ),
            );
        }
        if let Err(e) = b.validate(file_len) {
            self.problem(0, ProblemKind::BaseBlock, e.to_string());
        }
        if !b.root.is_multiple_of(8) || b.root == NIL {
            self.problem(
                36,
                ProblemKind::BaseBlock,
                format!("root offset {:#x}", b.root),
            );
        }
    }

    /// Rule 2: bins and cells.
    fn scan_bins(&mut self) {
        let bins = self.bins;
        let total = bins.len();
        let mut pos = 0usize;
        while pos < total {
            let p32 = pos as u32;
            let Some(hdr) = bins.get(pos..pos + HBIN_HEADER) else {
                self.problem(
                    p32,
                    ProblemKind::Bin,
                    "truncated hbin header at the end of the hive bins",
                );
                return;
            };
            self.report.summary.bins += 1;
            let mut ok = true;
            if &hdr[0..4] != b"hbin" {
                self.problem(
                    p32,
                    ProblemKind::Bin,
                    format!("bad hbin signature {:02x?}", &hdr[0..4]),
                );
                ok = false;
            }
            let off_field = le32(hdr, 4);
            if ok && off_field as usize != pos {
                self.problem(
                    p32,
                    ProblemKind::Bin,
                    format!("hbin offset field {off_field:#x} differs from its position"),
                );
            }
            let size = le32(hdr, 8) as usize;
            if ok && (size < PAGE || !size.is_multiple_of(PAGE)) {
                self.problem(
                    p32,
                    ProblemKind::Bin,
                    format!("hbin size {size:#x} is not a non-zero multiple of 4096"),
                );
                ok = false;
            }
            if ok && size > total - pos {
                self.problem(
                    p32,
                    ProblemKind::Bin,
                    format!("hbin of {size:#x} bytes runs past the hive-bins size ({total:#x})"),
                );
                ok = false;
            }
            if !ok {
                // Resynchronise on the next page that starts with "hbin".
                let mut next = pos + PAGE;
                while next < total && bins.get(next..next + 4) != Some(b"hbin") {
                    next += PAGE;
                }
                pos = next;
                continue;
            }
            self.scan_cells(pos, pos + size);
            pos += size;
        }
    }

    fn scan_cells(&mut self, bin: usize, end: usize) {
        let mut c = bin + HBIN_HEADER;
        while c < end {
            let raw = le32s(self.bins, c) as i32;
            let len = raw.unsigned_abs() as usize;
            if len < 8 || !len.is_multiple_of(8) {
                self.problem(
                    c as u32,
                    ProblemKind::Cell,
                    format!("cell size {raw} is not a non-zero multiple of 8; rest of the bin at {bin:#x} skipped"),
                );
                return;
            }
            if len > end - c {
                self.problem(
                    c as u32,
                    ProblemKind::Cell,
                    format!("cell of {len} bytes crosses the end of its bin ({end:#x})"),
                );
                return;
            }
            let s = &mut self.report.summary;
            if raw < 0 {
                s.allocated_cells += 1;
                s.allocated_bytes += len as u64;
                self.allocated.set(c as u32);
            } else {
                s.free_cells += 1;
                s.free_bytes += len as u64;
                s.largest_free_cell = s.largest_free_cell.max(len as u64);
            }
            c += len;
        }
    }

    /// Follows a reference: it must be the start of an allocated cell not reached before.
    /// Returns the cell data (without the size field).
    fn follow(&mut self, off: u32, from: u32, what: &str) -> Option<&'a [u8]> {
        if off == NIL || !off.is_multiple_of(8) || !self.allocated.get(off) {
            let why = if off == NIL {
                "nil".to_string()
            } else if (off as usize) >= self.bins.len() {
                "outside the hive bins".to_string()
            } else {
                "not the start of an allocated cell".to_string()
            };
            self.problem(
                from,
                ProblemKind::Reference,
                format!("{what} offset {off:#x}: {why}"),
            );
            return None;
        }
        if self.reached.set(off) {
            self.problem(
                off,
                ProblemKind::Shared,
                format!("{what} cell reached a second time (from {from:#x}): cycle or shared cell"),
            );
            return None;
        }
        match self.hive.cell(off) {
            Ok(c) => Some(c),
            Err(e) => {
                self.problem(off, ProblemKind::Cell, e.to_string());
                None
            }
        }
    }

    /// Rule 3: walks the tree from the root.
    fn walk(&mut self) {
        let root = self.hive.base_block().root;
        // (nk offset, parent offset or NIL for the root, depth, referrer)
        let mut stack: Vec<Pending> = vec![(root, NIL, 0, 36)];
        while let Some((off, parent, depth, from)) = stack.pop() {
            self.key(off, parent, depth, from, &mut stack);
        }
    }

    fn key(&mut self, off: u32, parent: u32, depth: u32, from: u32, stack: &mut Vec<Pending>) {
        let Some(nk) = self.follow(off, from, "key") else {
            return;
        };
        if nk.len() < 76 || &nk[0..2] != b"nk" {
            self.problem(off, ProblemKind::Signature, "expected a key node (nk)");
            return;
        }
        let key = match self.hive.key_at(off) {
            Ok(k) => k,
            Err(e) => {
                self.problem(off, ProblemKind::Key, e.to_string());
                return;
            }
        };
        self.report.summary.keys += 1;
        self.report.summary.max_depth = self.report.summary.max_depth.max(depth);
        let name: Vec<u16> = key.raw_name().units().collect();
        if name.len() > MAX_KEY_NAME_CHARS {
            self.problem(
                off,
                ProblemKind::Key,
                format!(
                    "key name of {} characters (max {MAX_KEY_NAME_CHARS})",
                    name.len()
                ),
            );
        }
        if parent != NIL {
            if key.parent_offset() != parent {
                self.problem(
                    off,
                    ProblemKind::Key,
                    format!(
                        "parent offset {:#x}, but the key is listed under {parent:#x}",
                        key.parent_offset()
                    ),
                );
            }
            if key.flags() & KEY_HIVE_ENTRY != 0 {
                self.problem(
                    off,
                    ProblemKind::Key,
                    "KEY_HIVE_ENTRY flag on a key that is not the root",
                );
            }
        }
        // Security.
        let sk = key.security_offset();
        if sk == NIL || !self.allocated.get(sk) {
            self.problem(
                off,
                ProblemKind::Reference,
                format!("security offset {sk:#x} is not an allocated cell"),
            );
        } else {
            *self.sk_refs.entry(sk).or_insert(0) += 1;
        }
        // Class.
        if key.class_offset() != NIL && key.class_len() > 0 {
            if let Some(cell) = self.follow(key.class_offset(), off, "class name") {
                if usize::from(key.class_len()) > cell.len() {
                    self.problem(
                        off,
                        ProblemKind::Key,
                        format!(
                            "class name of {} bytes in a {}-byte cell",
                            key.class_len(),
                            cell.len()
                        ),
                    );
                }
            }
        }
        self.values(&key);
        if depth as usize >= MAX_DEPTH {
            if key.subkey_count() > 0 {
                self.cut = true;
                self.problem(
                    off,
                    ProblemKind::Depth,
                    format!("key at depth {depth} has subkeys (max depth {MAX_DEPTH})"),
                );
            }
            return;
        }
        self.subkeys(&key, depth, stack);
    }

    fn values(&mut self, key: &crate::Key<'a>) {
        let off = key.offset();
        let count = key.value_count() as usize;
        let list_off = key.value_list_offset();
        if count == 0 {
            return;
        }
        if list_off == NIL {
            self.problem(
                off,
                ProblemKind::Count,
                format!("{count} values but no value list"),
            );
            return;
        }
        let Some(list) = self.follow(list_off, off, "value list") else {
            return;
        };
        if count.checked_mul(4).is_none_or(|n| n > list.len()) {
            self.problem(
                list_off,
                ProblemKind::Count,
                format!(
                    "value count {count} does not fit the {}-byte value list",
                    list.len()
                ),
            );
            return;
        }
        let mut names: Vec<Vec<u16>> = Vec::with_capacity(count);
        let (mut max_name, mut max_data) = (0u32, 0u32);
        for i in 0..count {
            let vk_off = le32(list, i * 4);
            let Some(vk) = self.follow(vk_off, list_off, "value") else {
                continue;
            };
            if vk.len() < 20 || &vk[0..2] != b"vk" {
                self.problem(vk_off, ProblemKind::Signature, "expected a value (vk)");
                continue;
            }
            let v = match self.hive.value_at(vk_off) {
                Ok(v) => v,
                Err(e) => {
                    self.problem(vk_off, ProblemKind::Value, e.to_string());
                    continue;
                }
            };
            self.report.summary.values += 1;
            let raw = v.raw_name();
            let units: Vec<u16> = raw.units().collect();
            if units.len() > MAX_VALUE_NAME_CHARS {
                self.problem(
                    vk_off,
                    ProblemKind::Value,
                    format!("value name of {} characters", units.len()),
                );
            }
            max_name = max_name.max(raw.utf16_len());
            max_data = max_data.max(v.data_size());
            self.value_data(&v);
            names.push(units.iter().map(|&u| upcase::upcase_unit(u)).collect());
        }
        if max_name > key.max_value_name_len() {
            self.problem(
                off,
                ProblemKind::LargestField,
                format!(
                    "largest value name field {} < {max_name}",
                    key.max_value_name_len()
                ),
            );
        }
        if max_data > key.max_value_data_len() {
            self.problem(
                off,
                ProblemKind::LargestField,
                format!(
                    "largest value data field {} < {max_data}",
                    key.max_value_data_len()
                ),
            );
        }
        names.sort_unstable();
        for w in names.windows(2) {
            if w[0] == w[1] {
                self.problem(
                    list_off,
                    ProblemKind::Duplicate,
                    format!(
                        "two values named {:?} (case-insensitively)",
                        String::from_utf16_lossy(&w[0])
                    ),
                );
            }
        }
    }

    fn value_data(&mut self, v: &crate::Value<'a>) {
        let vk_off = v.offset();
        let raw = v.raw_data_size();
        let size = v.data_size();
        if raw & 0x8000_0000 != 0 {
            if size > 4 {
                self.problem(
                    vk_off,
                    ProblemKind::Value,
                    format!("inline data of {size} bytes (max 4)"),
                );
            }
            return;
        }
        if size == 0 {
            return;
        }
        let big = self.hive.is_big_data_size(size);
        if !big {
            let Some(cell) = self.follow(v.data_offset(), vk_off, "value data") else {
                return;
            };
            if size as usize > cell.len() {
                let what =
                    if cell.len() >= 8 && &cell[0..2] == b"db" && self.hive.minor_version() < 4 {
                        " (a big-data record in a 1.3 hive)"
                    } else {
                        ""
                    };
                self.problem(
                    vk_off,
                    ProblemKind::Value,
                    format!(
                        "value data of {size} bytes does not fit its {}-byte cell at {:#x}{what}",
                        cell.len(),
                        v.data_offset()
                    ),
                );
            }
            return;
        }
        self.report.summary.big_data_values += 1;
        let db_off = v.data_offset();
        let Some(db) = self.follow(db_off, vk_off, "big data") else {
            return;
        };
        if db.len() < 8 || &db[0..2] != b"db" {
            self.problem(
                vk_off,
                ProblemKind::BigData,
                format!("value of {size} bytes (> {BIG_DATA_THRESHOLD}) in a 1.{} hive must be big data, but its cell at {db_off:#x} is not a db record", self.hive.minor_version()),
            );
            return;
        }
        let count = usize::from(le16(db, 2));
        let want = (size as usize).div_ceil(BIG_DATA_THRESHOLD as usize);
        if count != want {
            self.problem(
                db_off,
                ProblemKind::BigData,
                format!("{count} segments for {size} bytes (should be {want})"),
            );
        }
        let list_off = le32(db, 4);
        let Some(list) = self.follow(list_off, db_off, "big-data segment list") else {
            return;
        };
        if count * 4 > list.len() {
            self.problem(
                list_off,
                ProblemKind::BigData,
                format!("segment list of {count} entries does not fit its cell"),
            );
            return;
        }
        let mut left = size as usize;
        for i in 0..count {
            let seg_off = le32(list, i * 4);
            let Some(seg) = self.follow(seg_off, list_off, "big-data segment") else {
                continue;
            };
            let need = left.min(BIG_DATA_THRESHOLD as usize);
            if seg.len() < need {
                self.problem(
                    seg_off,
                    ProblemKind::BigData,
                    format!("segment of {} bytes, {need} needed", seg.len()),
                );
            }
            left -= need;
        }
    }

    fn subkeys(&mut self, key: &crate::Key<'a>, depth: u32, stack: &mut Vec<Pending>) {
        let off = key.offset();
        let count = key.subkey_count();
        let list_off = key.subkey_list_offset();
        if count == 0 {
            return;
        }
        if list_off == NIL {
            self.problem(
                off,
                ProblemKind::Count,
                format!("{count} subkeys but no subkey list"),
            );
            return;
        }
        // Collect the leaf entries (through one ri level).
        let mut entries: Vec<Entry> = Vec::new();
        let Some(top) = self.list(list_off, off) else {
            return;
        };
        if top.kind == ListKind::Ri {
            for i in 0..top.len() {
                let Some((leaf_off, _)) = top.get(i) else {
                    break;
                };
                let Some(leaf) = self.list(leaf_off, list_off) else {
                    continue;
                };
                if leaf.kind == ListKind::Ri {
                    self.problem(
                        leaf_off,
                        ProblemKind::List,
                        "index root (ri) points to another ri",
                    );
                    continue;
                }
                if leaf.is_empty() {
                    self.problem(
                        leaf_off,
                        ProblemKind::List,
                        "empty leaf under an index root",
                    );
                }
                push_entries(&leaf, &mut entries);
            }
        } else {
            push_entries(&top, &mut entries);
        }
        if entries.len() as u64 != u64::from(count) {
            self.problem(
                off,
                ProblemKind::Count,
                format!("subkey count {count}, but the lists hold {}", entries.len()),
            );
        }
        let (mut max_name, mut max_class) = (0u32, 0u32);
        let mut prev: Option<Vec<u16>> = None;
        for (child_off, hint, leaf_off) in entries {
            // Validate the target before following it, so the hint check can read the name.
            let child = if child_off.is_multiple_of(8)
                && self.allocated.get(child_off)
                && !self.reached.get(child_off)
            {
                self.hive.key_at(child_off).ok()
            } else {
                None
            };
            if let Some(child) = child {
                let raw = child.raw_name();
                let units: Vec<u16> = raw.units().collect();
                max_name = max_name.max(raw.utf16_len());
                max_class = max_class.max(u32::from(child.class_len()));
                match hint {
                    Some((ListKind::Lh, h)) => {
                        let want = upcase::lh_hash_units(units.iter().copied());
                        if h != want {
                            self.problem(leaf_off, ProblemKind::Hash, format!("lh hash {h:#010x} for {:?} at {child_off:#x}, should be {want:#010x}", raw.to_string_lossy()));
                        }
                    }
                    Some((ListKind::Lf, h)) => {
                        // Only ASCII hints are pinned down (Windows derives non-ASCII hint
                        // bytes in ways not documented: yarp's CompHive has U+009F → 0x81).
                        let ascii = units.iter().take(4).all(|&u| u < 0x80);
                        let want = lf_hint(&units);
                        let got = h.to_le_bytes();
                        if ascii && got != want {
                            self.problem(
                                leaf_off,
                                ProblemKind::Hash,
                                format!(
                                    "lf hint {got:02x?} for {:?} at {child_off:#x}, should be {want:02x?}",
                                    raw.to_string_lossy()
                                ),
                            );
                        }
                    }
                    _ => {}
                }
                if let Some(p) = &prev {
                    match upcase::cmp_units(p, &units) {
                        std::cmp::Ordering::Less => {}
                        std::cmp::Ordering::Equal => self.problem(
                            leaf_off,
                            ProblemKind::Duplicate,
                            format!(
                                "two subkeys named {:?} (case-insensitively) under {off:#x}",
                                raw.to_string_lossy()
                            ),
                        ),
                        std::cmp::Ordering::Greater => self.problem(
                            leaf_off,
                            ProblemKind::Order,
                            format!(
                                "subkey {:?} sorts before its predecessor {:?} under {off:#x}",
                                raw.to_string_lossy(),
                                String::from_utf16_lossy(p)
                            ),
                        ),
                    }
                }
                prev = Some(units);
            }
            stack.push((child_off, off, depth + 1, leaf_off));
        }
        if max_name > key.max_subkey_name_len() & 0xFFFF {
            self.problem(
                off,
                ProblemKind::LargestField,
                format!(
                    "largest subkey name field {} < {max_name}",
                    key.max_subkey_name_len() & 0xFFFF
                ),
            );
        }
        if max_class > key.max_subkey_class_len() {
            self.problem(
                off,
                ProblemKind::LargestField,
                format!(
                    "largest subkey class field {} < {max_class}",
                    key.max_subkey_class_len()
                ),
            );
        }
    }

    /// Follows and parses a subkey list, checking its kind against the minor version.
    fn list(&mut self, off: u32, from: u32) -> Option<SubkeyList<'a>> {
        self.follow(off, from, "subkey list")?;
        match SubkeyList::parse(self.hive, off) {
            Ok(l) => {
                if l.kind == ListKind::Lh && self.hive.minor_version() < 5 {
                    self.problem(
                        off,
                        ProblemKind::List,
                        format!(
                            "lh list in a 1.{} hive (needs 1.5+)",
                            self.hive.minor_version()
                        ),
                    );
                }
                Some(l)
            }
            Err(e) => {
                self.problem(off, ProblemKind::List, e.to_string());
                None
            }
        }
    }

    /// Rule 4: security cells.
    fn security(&mut self) {
        let mut refs: Vec<(u32, u32)> = self.sk_refs.iter().map(|(&k, &v)| (k, v)).collect();
        refs.sort_unstable();
        self.report.summary.security_cells = refs.len() as u64;
        for &(off, n) in &refs {
            let Some(sk) = self.hive.cell(off).ok() else {
                continue;
            };
            if sk.len() < 20 || &sk[0..2] != b"sk" {
                self.problem(off, ProblemKind::Signature, "expected a security cell (sk)");
                continue;
            }
            self.reached.set(off);
            let stored = le32(sk, 12);
            if stored < n || (stored > n && !self.cut) {
                self.problem(
                    off,
                    ProblemKind::Security,
                    format!("reference count {stored}, but {n} keys use it"),
                );
            }
            let desc = le32(sk, 16) as usize;
            if desc > sk.len() - 20 {
                self.problem(
                    off,
                    ProblemKind::Security,
                    format!("descriptor of {desc} bytes does not fit the cell"),
                );
            }
        }
        // The ring, starting from the first referenced sk.
        let Some(&(start, _)) = refs.first() else {
            return;
        };
        let Ok(first) = self.hive.cell(start) else {
            return;
        };
        if first.len() < 20 || &first[0..2] != b"sk" {
            return;
        }
        let limit = self.report.summary.allocated_cells + 1;
        let mut in_ring: HashMap<u32, ()> = HashMap::new();
        let mut cur = start;
        let mut steps = 0u64;
        loop {
            in_ring.insert(cur, ());
            let Ok(c) = self.hive.cell(cur) else { break };
            let flink = le32(c, 4);
            let ok_next = flink.is_multiple_of(8)
                && self.allocated.get(flink)
                && self
                    .hive
                    .cell(flink)
                    .is_ok_and(|n| n.len() >= 20 && &n[0..2] == b"sk");
            if !ok_next {
                self.problem(
                    cur,
                    ProblemKind::Security,
                    format!("Flink {flink:#x} is not a security cell"),
                );
                break;
            }
            let next = self.hive.cell(flink).unwrap_or_default();
            if le32s(next, 8) != cur {
                self.problem(
                    flink,
                    ProblemKind::Security,
                    format!(
                        "Blink {:#x} should be {cur:#x} (its Flink predecessor)",
                        le32s(next, 8)
                    ),
                );
            }
            if flink == start {
                break;
            }
            if in_ring.contains_key(&flink) {
                self.problem(
                    flink,
                    ProblemKind::Security,
                    "Flink chain loops without returning to its start",
                );
                break;
            }
            steps += 1;
            if steps > limit {
                break;
            }
            if !self.cut && !self.sk_refs.contains_key(&flink) {
                self.problem(
                    flink,
                    ProblemKind::Security,
                    "security cell in the ring that no key references",
                );
                self.reached.set(flink);
            }
            cur = flink;
        }
        for &(off, _) in &refs {
            if !in_ring.contains_key(&off) {
                self.problem(
                    off,
                    ProblemKind::Security,
                    "referenced security cell is not in the Flink/Blink ring",
                );
            }
        }
    }

    /// Counts allocated cells that nothing references.
    fn leaks(&mut self) {
        let (mut n, mut bytes) = (0u64, 0u64);
        for (wi, (&a, &r)) in self.allocated.0.iter().zip(&self.reached.0).enumerate() {
            let mut left = a & !r;
            while left != 0 {
                let bit = left.trailing_zeros() as usize;
                left &= left - 1;
                let off = (wi * 64 + bit) * 8;
                n += 1;
                bytes += u64::from((le32s(self.bins, off) as i32).unsigned_abs());
            }
        }
        self.report.summary.unreachable_cells = n;
        self.report.summary.unreachable_bytes = bytes;
    }
}

fn push_entries(list: &SubkeyList<'_>, out: &mut Vec<Entry>) {
    for i in 0..list.len() {
        if let Some((o, h)) = list.get(i) {
            out.push((o, h.map(|h| (list.kind, h)), list.offset));
        }
    }
}
