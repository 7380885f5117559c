// SPDX-License-Identifier: MIT OR Apache-2.0
//! Editing a hive safely, in place, optionally without growing the file.
//!
//! An [`Editor`] owns the bytes of a whole hive file. Each operation ([`Editor::set_value`],
//! [`Editor::delete_value`], [`Editor::create_key`], [`Editor::delete_key`]) is atomic: when it
//! fails, the image is exactly as before. [`Editor::commit`] finishes the image (sequence numbers,
//! hive-bins size, timestamp, checksum last) and reports the exact byte ranges that differ from
//! the original, so a caller can patch only those bytes into a disk image.
//!
//! Allocation: free cells first (best fit: the smallest free cell that fits, like Windows' size-bucketed free lists; remainders of 8 bytes or more are
//! split off, frees coalesce with free neighbours inside the same bin), then new bins appended
//! after the last bin — into the slack between the last bin and the end of the file, and in
//! [`Growth::Growable`] mode past the end of the file. In [`Growth::Fixed`] mode an operation
//! that would need the file to grow fails with [`Error::NoSpace`] and changes nothing.
//!
//! The image stays Windows-shaped: subkey lists sorted with Windows' upcase table, `lh` hashes /
//! `lf` hints, the list type the hive uses (`lf` for 1.3/1.4, `lh` for 1.5+), full leaves split
//! under an `ri`, security (`sk`) reference counts and ring, the parent's counts, largest-length
//! fields and timestamps, compressed names when every character is ≤ U+00FF, big data (`db`)
//! above 16,344 bytes in 1.4+ hives. See docs/hive-editing.md.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::ops::Range;

use crate::base::{self, le32, BaseBlock, BASE_BLOCK_SIZE, NIL};
use crate::error::{Error, Result};
use crate::hive::{Hive, ListKind, Storage, BIG_DATA_THRESHOLD, KEY_COMP_NAME, MAX_DEPTH};
use crate::upcase;

/// Size of a hive bin header.
pub const HBIN_HEADER: u32 = 32;
/// Page / bin granularity.
pub const PAGE: u32 = 4096;
/// Cell size of every big-data segment (as Windows and offreg write them, even the last one).
pub const BIG_DATA_SEGMENT_CELL: u32 = 16352;
/// Entries of an `lf`/`lh` leaf that fit one 4 KiB bin; a fuller leaf is split under an `ri`.
pub const MAX_HASH_LEAF: usize = 507;
/// Entries of an `li` leaf (or `ri` root) that fit one 4 KiB bin.
pub const MAX_INDEX_LEAF: usize = 1014;
/// Longest key name (UTF-16 code units).
pub const MAX_KEY_NAME: usize = 255;
/// Longest value name (UTF-16 code units).
pub const MAX_VALUE_NAME: usize = 16383;
/// `nk` flag: the key must not be deleted (set on hive roots).
pub const KEY_NO_DELETE: u16 = 0x0008;
/// Largest value data accepted (bytes). 1.3 hives store it in one cell.
pub const MAX_VALUE_DATA: usize = 64 * 1024 * 1024;
/// Largest hive image the editor produces (hive bins are addressed with 31-bit offsets).
pub const MAX_HIVE_BINS: u64 = 0x7FFF_0000;
/// How an edited hive may use space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Growth {
    /// The file keeps its size: free cells, then new bins in the slack after the last bin; an
    /// operation that needs more fails with [`Error::NoSpace`].
    Fixed,
    /// New bins may be appended past the end of the file (the file grows).
    Growable,
}

/// The result of [`Editor::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The complete new hive file.
    pub data: Vec<u8>,
    /// Byte ranges (file offsets) that differ from the original file, sorted and merged; bytes
    /// past the original end of the file are one range.
    pub changed: Vec<Range<usize>>,
    /// Whether the file became longer than the original.
    pub grew: bool,
    /// The sequence number written to both base-block fields.
    pub sequence: u32,
}

impl Commit {
    /// Total number of changed bytes.
    pub fn changed_bytes(&self) -> usize {
        self.changed.iter().map(|r| r.len()).sum()
    }

    /// The changed ranges merged when less than `gap` unchanged bytes separate them (fewer,
    /// larger writes), clamped to the file.
    pub fn coalesced(&self, gap: usize) -> Vec<Range<usize>> {
        let mut out: Vec<Range<usize>> = Vec::new();
        for r in &self.changed {
            match out.last_mut() {
                Some(last) if r.start <= last.end.saturating_add(gap) => last.end = r.end,
                _ => out.push(r.clone()),
            }
        }
        out
    }
}

#[derive(Debug)]
enum Undo {
    /// Old bytes at a file offset: (offset, start in `undo_bytes`, length).
    Bytes(usize, usize, usize),
    FreeInserted(u32),
    FreeRemoved(u32, u32),
    BinPushed,
    Len(usize),
}

/// An in-memory editor for one hive file.
#[derive(Debug)]
pub struct Editor {
    data: Vec<u8>,
    growth: Growth,
    orig_len: usize,
    minor: u32,
    root: u32,
    seq: u32,
    /// (offset, size) of each bin, relative to the hive bins, in order.
    bins: Vec<(u32, u32)>,
    /// Index into `bins` of the bin holding each 4 KiB page of the hive bins.
    page_bin: Vec<u32>,
    /// Free cells of each bin (parallel to `bins`): (offset, size), sorted by offset.
    bin_free: Vec<Vec<(u32, u32)>>,
    /// The same free cells ordered by (size, offset), for best-fit allocation.
    by_size: BTreeSet<(u32, u32)>,
    /// Original bytes of every page touched (index = file offset / 4096), inside `orig_len`.
    pages: Vec<Option<Box<[u8]>>>,
    undo: Vec<Undo>,
    undo_bytes: Vec<u8>,
    in_op: bool,
    clock: Option<u64>,
    /// Timestamp of the current operation (taken once per operation).
    op_time: Option<u64>,
    log: Vec<String>,
}

/// Current time as a FILETIME (100 ns since 1601-01-01).
pub fn filetime_now() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() + 11_644_473_600) * 10_000_000 + u64::from(d.subsec_nanos() / 100)
}

fn round8(n: u64) -> u64 {
    n.div_ceil(8) * 8
}

fn units_of(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

fn split_path(path: &str) -> Vec<&str> {
    path.split('\\').filter(|p| !p.is_empty()).collect()
}

/// The stored form of a name: (bytes, compressed?).
fn encode_name(units: &[u16]) -> (Vec<u8>, bool) {
    if units.iter().all(|&u| u <= 0xFF) {
        (units.iter().map(|&u| u as u8).collect(), true)
    } else {
        (units.iter().flat_map(|u| u.to_le_bytes()).collect(), false)
    }
}

/// The `lf` hint: the first four characters as bytes (zero padded); if one of them does not fit
/// in 8 bits, the hint's first byte is 0.
pub fn lf_hint(units: &[u16]) -> u32 {
    let mut b = [0u8; 4];
    for (i, &u) in units.iter().take(4).enumerate() {
        if u > 0xFF {
            b[0] = 0;
            break;
        }
        b[i] = u as u8;
    }
    u32::from_le_bytes(b)
}

fn hint_for(kind: ListKind, units: &[u16]) -> u32 {
    match kind {
        ListKind::Lh => upcase::lh_hash_units(units.iter().copied()),
        ListKind::Lf => lf_hint(units),
        _ => 0,
    }
}

fn leaf_capacity(kind: ListKind) -> usize {
    match kind {
        ListKind::Lf | ListKind::Lh => MAX_HASH_LEAF,
        _ => MAX_INDEX_LEAF,
    }
}

fn type_name(ty: u32) -> String {
    use crate::hive::reg_type::*;
    match ty {
        NONE => "REG_NONE".into(),
        SZ => "REG_SZ".into(),
        EXPAND_SZ => "REG_EXPAND_SZ".into(),
        BINARY => "REG_BINARY".into(),
        DWORD => "REG_DWORD".into(),
        DWORD_BE => "REG_DWORD_BIG_ENDIAN".into(),
        LINK => "REG_LINK".into(),
        MULTI_SZ => "REG_MULTI_SZ".into(),
        RESOURCE_LIST => "REG_RESOURCE_LIST".into(),
        FULL_RESOURCE_DESCRIPTOR => "REG_FULL_RESOURCE_DESCRIPTOR".into(),
        RESOURCE_REQUIREMENTS_LIST => "REG_RESOURCE_REQUIREMENTS_LIST".into(),
        QWORD => "REG_QWORD".into(),
        t => format!("type {t:#x}"),
    }
}

// nk field offsets (in the cell data).
const NK_TIME: u32 = 4;
const NK_PARENT: u32 = 16;
const NK_SUBKEYS: u32 = 20;
const NK_LIST: u32 = 28;
const NK_VALUES: u32 = 36;
const NK_VLIST: u32 = 40;
const NK_SK: u32 = 44;
const NK_CLASS: u32 = 48;
const NK_MAX_NAME: u32 = 52;
const NK_MAX_VNAME: u32 = 60;
const NK_MAX_VDATA: u32 = 64;

/// A subkey leaf read into memory.
#[derive(Debug, Clone)]
struct Leaf {
    off: u32,
    kind: ListKind,
    entries: Vec<(u32, u32)>,
}

impl Editor {
    /// Opens a clean hive for editing. A dirty hive (sequence numbers differ or bad checksum)
    /// is refused with [`Error::Dirty`]: replay its logs first ([`crate::log`]) and open the
    /// result with [`Editor::open_recovered`].
    pub fn open(bytes: Vec<u8>, growth: Growth) -> Result<Editor> {
        let base = BaseBlock::parse(&bytes)?;
        if base.is_dirty() {
            return Err(Error::Dirty {
                seq1: base.seq1,
                seq2: base.seq2,
                checksum_ok: base.checksum_ok,
            });
        }
        Self::open_inner(bytes, growth, base)
    }

    /// Opens the bytes of a hive whose transaction logs were replayed (sequence numbers may
    /// differ and the checksum may be stale; everything else is checked as in
    /// [`Editor::open`]). The commit writes it clean.
    pub fn open_recovered(bytes: Vec<u8>, growth: Growth) -> Result<Editor> {
        let base = BaseBlock::parse(&bytes)?;
        Self::open_inner(bytes, growth, base)
    }

    fn open_inner(bytes: Vec<u8>, growth: Growth, base: BaseBlock) -> Result<Editor> {
        base.validate(bytes.len() as u64)?;
        if u64::from(base.hbins_size) > MAX_HIVE_BINS {
            return Err(Error::BaseBlock(format!(
                "hive bins data size {:#x} is too large to edit",
                base.hbins_size
            )));
        }
        let pages = bytes.len().div_ceil(PAGE as usize);
        let mut ed = Editor {
            orig_len: bytes.len(),
            data: bytes,
            growth,
            minor: base.minor,
            root: base.root,
            seq: base.seq1.max(base.seq2),
            bins: Vec::new(),
            page_bin: Vec::new(),
            bin_free: Vec::new(),
            by_size: BTreeSet::new(),
            pages: (0..pages).map(|_| None).collect(),
            undo: Vec::new(),
            undo_bytes: Vec::new(),
            in_op: false,
            clock: None,
            op_time: None,
            log: Vec::new(),
        };
        ed.scan_bins(base.hbins_size)?;
        // The root must be a key node.
        Hive::open_unchecked(&ed.data)?.key_at(ed.root)?;
        Ok(ed)
    }

    /// Creates a new, empty hive (one 4 KiB bin holding the root key and one security cell
    /// with [`default_security_descriptor`]) of format 1.`minor` (3..=6), ready to edit in
    /// [`Growth::Growable`] mode.
    pub fn new_empty(minor: u32) -> Result<Editor> {
        Editor::open(new_hive(minor, filetime_now())?, Growth::Growable)
    }

    /// Uses `filetime` for every timestamp written (key timestamps, base block) instead of the
    /// current time — for reproducible output.
    pub fn set_clock(&mut self, filetime: Option<u64>) {
        self.clock = filetime;
    }

    /// A read-only view of the current (uncommitted) image.
    pub fn hive(&self) -> Result<Hive<'_>> {
        Ok(Hive::from_known_header(
            &self.data,
            self.minor,
            self.root,
            self.hbins_size(),
        ))
    }

    /// The current image bytes (not yet committed: base block not updated).
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// The growth mode.
    pub fn growth(&self) -> Growth {
        self.growth
    }

    /// Minor format version of the hive.
    pub fn minor_version(&self) -> u32 {
        self.minor
    }

    /// Total bytes of free cells (inside the bins) plus whole pages of slack after the last bin.
    pub fn free_space(&self) -> (u64, u64) {
        let cells = self.by_size.iter().map(|&(s, _)| u64::from(s)).sum();
        let used = BASE_BLOCK_SIZE as u64 + u64::from(self.hbins_size());
        (cells, (self.data.len() as u64).saturating_sub(used))
    }

    /// Human-readable list of the operations applied so far (for `--dry-run`).
    pub fn describe(&self) -> &[String] {
        &self.log
    }

    /// Looks up a key offset by path (relative to the root, `\`-separated; empty = root).
    ///
    /// Key offsets stay valid until that key (or an ancestor) is deleted: nk cells never
    /// move, but a freed cell can be reused for something else.
    pub fn key_offset(&self, path: &str) -> Result<Option<u32>> {
        let hive = self.hive()?;
        let mut key = hive.key_at(self.root)?;
        for part in split_path(path) {
            match key.subkey(part)? {
                Some(k) => key = k,
                None => return Ok(None),
            }
        }
        Ok(Some(key.offset()))
    }

    /// Reads a value: (type, data), or `None` when the key or value does not exist.
    pub fn get_value(&self, key_path: &str, name: &str) -> Result<Option<(u32, Vec<u8>)>> {
        let Some(off) = self.key_offset(key_path)? else {
            return Ok(None);
        };
        let hive = self.hive()?;
        let key = hive.key_at(off)?;
        match key.value(name)? {
            Some(v) => Ok(Some((v.data_type(), v.data()?.into_owned()))),
            None => Ok(None),
        }
    }

    // ------------------------------------------------------------------------------------
    // Public operations

    /// Sets (creates or replaces) value `name` ("" = default value) of the key at `key_path`
    /// to type `ty` and `data`. The key must exist (see [`Editor::create_key`]). Replacing a
    /// value with the same type and data changes nothing; new data that fits the existing data
    /// cell is written in place.
    pub fn set_value(&mut self, key_path: &str, name: &str, ty: u32, data: &[u8]) -> Result<()> {
        let key = self
            .key_offset(key_path)?
            .ok_or_else(|| Error::NotFound(format!("key {key_path:?}")))?;
        self.set_value_at(key, name, ty, data)?;
        self.note(format!(
            "set value {:?} in [{}]: {}, {} bytes",
            name,
            key_path,
            type_name(ty),
            data.len()
        ));
        Ok(())
    }

    /// [`Editor::set_value`] on a key given by its offset (from [`Editor::create_key`] or
    /// [`Editor::key_offset`]). Not recorded in [`Editor::describe`].
    pub fn set_value_at(&mut self, key: u32, name: &str, ty: u32, data: &[u8]) -> Result<()> {
        let units = units_of(name);
        if units.len() > MAX_VALUE_NAME {
            return Err(Error::Invalid(format!(
                "value name of {} characters (maximum {MAX_VALUE_NAME})",
                units.len()
            )));
        }
        if data.len() > MAX_VALUE_DATA {
            return Err(Error::Invalid(format!(
                "value data of {} bytes (maximum {MAX_VALUE_DATA})",
                data.len()
            )));
        }
        self.atomically(|ed| ed.set_value_inner(key, &units, ty, data))
    }

    /// Deletes value `name` of the key at `key_path`. Returns false (and changes nothing) when
    /// the key or the value does not exist.
    pub fn delete_value(&mut self, key_path: &str, name: &str) -> Result<bool> {
        let Some(key) = self.key_offset(key_path)? else {
            return Ok(false);
        };
        let done = self.delete_value_at(key, name)?;
        if done {
            self.note(format!("delete value {name:?} in [{key_path}]"));
        }
        Ok(done)
    }

    /// [`Editor::delete_value`] on a key given by its offset.
    pub fn delete_value_at(&mut self, key: u32, name: &str) -> Result<bool> {
        let units = units_of(name);
        self.atomically(|ed| ed.delete_value_inner(key, &units))
    }

    /// Creates the key at `path` and any missing intermediate keys; returns its offset (also
    /// when it existed already).
    pub fn create_key(&mut self, path: &str) -> Result<u32> {
        let parts = split_path(path);
        for p in &parts {
            let n = p.encode_utf16().count();
            if n > MAX_KEY_NAME {
                return Err(Error::Invalid(format!(
                    "key name {p:?} has {n} characters (maximum {MAX_KEY_NAME})"
                )));
            }
        }
        if parts.len() > MAX_DEPTH {
            return Err(Error::Invalid(format!(
                "key path of {} levels (maximum {MAX_DEPTH})",
                parts.len()
            )));
        }
        let mut created = 0usize;
        let off = self.atomically(|ed| {
            let mut cur = ed.root;
            for p in &parts {
                let units = units_of(p);
                cur = match ed.find_subkey(cur, &units)? {
                    Some(k) => k,
                    None => {
                        created += 1;
                        ed.add_subkey(cur, &units)?
                    }
                };
            }
            Ok(cur)
        })?;
        if created > 0 {
            self.note(format!("create key [{path}] ({created} new)"));
        }
        Ok(off)
    }

    /// Creates subkey `name` under the key at offset `parent` (or returns the existing one).
    pub fn create_subkey_at(&mut self, parent: u32, name: &str) -> Result<u32> {
        let units = units_of(name);
        if units.is_empty() || units.len() > MAX_KEY_NAME || units.contains(&u16::from(b'\\')) {
            return Err(Error::Invalid(format!("bad key name {name:?}")));
        }
        self.atomically(|ed| ed.add_subkey(parent, &units))
    }

    /// Deletes the key at `path` with all its subkeys and values (the root cannot be deleted).
    /// Returns false when the key does not exist.
    pub fn delete_key(&mut self, path: &str) -> Result<bool> {
        let Some(off) = self.key_offset(path)? else {
            return Ok(false);
        };
        if off == self.root {
            return Err(Error::Invalid("the root key cannot be deleted".into()));
        }
        let n = self.atomically(|ed| ed.delete_key_inner(off))?;
        self.note(format!("delete key [{path}] ({n} keys)"));
        Ok(true)
    }

    /// Finishes the image and returns it with the changed ranges. Both sequence numbers become
    /// `max(seq1, seq2, min_seq - 1) + 1` — pass the highest sequence number found in the
    /// hive's transaction logs + 1 (regf.md §10 rule 3), or 0 when there are none. Then the
    /// hive-bins size, the timestamp, and the checksum last.
    pub fn commit(mut self, min_seq: u32) -> Result<Commit> {
        let (changed, seq) = self.finish(min_seq);
        let grew = self.data.len() > self.orig_len;
        Ok(Commit {
            data: self.data,
            changed,
            grew,
            sequence: seq,
        })
    }

    /// What [`Editor::commit`] would produce, without consuming the editor: the changed ranges
    /// (including the base block) and whether the file grows.
    pub fn pending(&self) -> Commit {
        let mut copy = Editor {
            data: self.data.clone(),
            growth: self.growth,
            orig_len: self.orig_len,
            minor: self.minor,
            root: self.root,
            seq: self.seq,
            bins: self.bins.clone(),
            page_bin: self.page_bin.clone(),
            bin_free: Vec::new(),
            by_size: BTreeSet::new(),
            pages: self.pages.clone(),
            undo: Vec::new(),
            undo_bytes: Vec::new(),
            in_op: false,
            clock: self.clock,
            op_time: None,
            log: Vec::new(),
        };
        let (changed, seq) = copy.finish(0);
        Commit {
            grew: copy.data.len() > copy.orig_len,
            data: copy.data,
            changed,
            sequence: seq,
        }
    }

    fn finish(&mut self, min_seq: u32) -> (Vec<Range<usize>>, u32) {
        let seq = self.seq.max(min_seq.saturating_sub(1)).wrapping_add(1);
        let hbins = self.hbins_size();
        let now = self.now();
        self.write(base::off::SEQ1, &seq.to_le_bytes());
        self.write(base::off::SEQ2, &seq.to_le_bytes());
        self.write(base::off::TIMESTAMP, &now.to_le_bytes());
        self.write(base::off::HBINS_SIZE, &hbins.to_le_bytes());
        let mut block = [0u8; 512];
        block.copy_from_slice(&self.data[..512]);
        let sum = base::checksum(&block);
        self.write(base::CHECKSUM_OFFSET, &sum.to_le_bytes());
        (self.changed_ranges(), seq)
    }

    fn changed_ranges(&self) -> Vec<Range<usize>> {
        let mut out: Vec<Range<usize>> = Vec::new();
        let mut push = |r: Range<usize>| match out.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => out.push(r),
        };
        for (i, page) in self.pages.iter().enumerate() {
            let Some(orig) = page else { continue };
            let start = i * PAGE as usize;
            let cur = &self.data[start..(start + orig.len()).min(self.data.len())];
            let mut j = 0;
            while j < orig.len() {
                if cur.get(j) == Some(&orig[j]) {
                    j += 1;
                    continue;
                }
                let s = j;
                while j < orig.len() && cur.get(j) != Some(&orig[j]) {
                    j += 1;
                }
                push(start + s..start + j);
            }
        }
        if self.data.len() > self.orig_len {
            push(self.orig_len..self.data.len());
        }
        out
    }

    // ------------------------------------------------------------------------------------
    // Transactions

    /// Adds a line to [`Editor::describe`] (callers describing composite operations).
    pub fn note(&mut self, s: String) {
        self.log.push(s);
    }

    fn now(&self) -> u64 {
        self.clock.or(self.op_time).unwrap_or_else(filetime_now)
    }

    fn atomically<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        debug_assert!(!self.in_op);
        self.in_op = true;
        self.undo.clear();
        self.undo_bytes.clear();
        self.op_time = Some(self.clock.unwrap_or_else(filetime_now));
        let r = f(self).and_then(|v| {
            let need = BASE_BLOCK_SIZE as u64 + u64::from(self.hbins_size());
            if self.growth == Growth::Fixed && need > self.orig_len as u64 {
                Err(Error::NoSpace {
                    missing: need - self.orig_len as u64,
                })
            } else {
                Ok(v)
            }
        });
        if r.is_err() {
            self.rollback();
        }
        self.undo.clear();
        self.undo_bytes.clear();
        self.in_op = false;
        self.op_time = None;
        r
    }

    fn rollback(&mut self) {
        while let Some(u) = self.undo.pop() {
            match u {
                Undo::Bytes(off, at, len) => {
                    self.data[off..off + len].copy_from_slice(&self.undo_bytes[at..at + len]);
                }
                Undo::FreeInserted(off) => {
                    self.raw_free_remove(off);
                }
                Undo::FreeRemoved(off, size) => {
                    self.raw_free_insert(off, size);
                }
                Undo::BinPushed => {
                    if let Some((off, _)) = self.bins.pop() {
                        self.bin_free.pop();
                        self.page_bin.truncate((off / PAGE) as usize);
                    }
                }
                Undo::Len(len) => self.data.truncate(len),
            }
        }
    }

    /// Writes `bytes` at file offset `off` (must be inside the data), remembering the original
    /// page and the old bytes for rollback.
    fn write(&mut self, off: usize, bytes: &[u8]) {
        let end = off + bytes.len();
        let first = off / PAGE as usize;
        let last = end.saturating_sub(1) / PAGE as usize;
        for p in first..=last {
            if let Some(slot) = self.pages.get_mut(p) {
                if slot.is_none() {
                    let s = p * PAGE as usize;
                    let e = (s + PAGE as usize).min(self.orig_len);
                    *slot = Some(self.data[s..e].into());
                }
            }
        }
        if self.in_op {
            let at = self.undo_bytes.len();
            self.undo_bytes.extend_from_slice(&self.data[off..end]);
            self.undo.push(Undo::Bytes(off, at, bytes.len()));
        }
        self.data[off..end].copy_from_slice(bytes);
    }

    /// Records a free cell (no undo entry); returns the size it replaced, if any.
    fn raw_free_insert(&mut self, off: u32, size: u32) -> Option<u32> {
        let idx = *self.page_bin.get((off / PAGE) as usize)? as usize;
        let list = self.bin_free.get_mut(idx)?;
        let old = match list.binary_search_by_key(&off, |e| e.0) {
            Ok(i) => Some(std::mem::replace(&mut list[i].1, size)),
            Err(i) => {
                list.insert(i, (off, size));
                None
            }
        };
        if let Some(o) = old {
            self.by_size.remove(&(o, off));
        }
        self.by_size.insert((size, off));
        old
    }

    /// Forgets a free cell (no undo entry); returns its size.
    fn raw_free_remove(&mut self, off: u32) -> Option<u32> {
        let idx = *self.page_bin.get((off / PAGE) as usize)? as usize;
        let list = self.bin_free.get_mut(idx)?;
        let i = list.binary_search_by_key(&off, |e| e.0).ok()?;
        let (_, size) = list.remove(i);
        self.by_size.remove(&(size, off));
        Some(size)
    }

    fn free_insert(&mut self, off: u32, size: u32) {
        if let Some(old) = self.raw_free_insert(off, size) {
            self.undo.push(Undo::FreeRemoved(off, old));
        }
        self.undo.push(Undo::FreeInserted(off));
    }

    fn free_remove(&mut self, off: u32) -> Option<u32> {
        let size = self.raw_free_remove(off)?;
        self.undo.push(Undo::FreeRemoved(off, size));
        Some(size)
    }

    /// The free cell that ends exactly at `off` in the same bin, if any.
    fn free_before(&self, off: u32) -> Option<(u32, u32)> {
        let idx = *self.page_bin.get((off / PAGE) as usize)? as usize;
        let list = self.bin_free.get(idx)?;
        let i = list.partition_point(|e| e.0 < off);
        let &(p, ps) = list.get(i.checked_sub(1)?)?;
        (p + ps == off).then_some((p, ps))
    }

    // ------------------------------------------------------------------------------------
    // Cells and bins

    fn hbins_size(&self) -> u32 {
        le32(&self.data, base::off::HBINS_SIZE)
    }

    fn scan_bins(&mut self, hbins: u32) -> Result<()> {
        let mut pos: u32 = 0;
        while pos < hbins {
            let f = BASE_BLOCK_SIZE + pos as usize;
            let hdr = self
                .data
                .get(f..f + HBIN_HEADER as usize)
                .ok_or_else(|| corrupt(pos, "hive bin header past the end of the file"))?;
            if &hdr[0..4] != b"hbin" {
                return Err(corrupt(pos, "expected a hive bin (hbin)"));
            }
            if le32(hdr, 4) != pos {
                return Err(corrupt(
                    pos,
                    format!("hive bin records offset {:#x}", le32(hdr, 4)),
                ));
            }
            let size = le32(hdr, 8);
            if size < PAGE || !size.is_multiple_of(PAGE) || size > hbins - pos {
                return Err(corrupt(pos, format!("bad hive bin size {size:#x}")));
            }
            let end = pos + size;
            self.push_bin(pos, size);
            let mut c = pos + HBIN_HEADER;
            while c < end {
                let raw = le32(&self.data, BASE_BLOCK_SIZE + c as usize) as i32;
                let len = raw.unsigned_abs();
                if len < 8 || !len.is_multiple_of(8) || len > end - c {
                    return Err(corrupt(
                        c,
                        format!("bad cell size {raw} (cells must be 8-aligned inside their bin)"),
                    ));
                }
                if raw > 0 {
                    self.raw_free_insert(c, len);
                }
                c += len;
            }
            pos = end;
        }
        Ok(())
    }

    fn push_bin(&mut self, off: u32, size: u32) {
        let idx = self.bins.len() as u32;
        self.bins.push((off, size));
        self.bin_free.push(Vec::new());
        self.page_bin
            .extend(std::iter::repeat_n(idx, (size / PAGE) as usize));
    }

    fn bin_of(&self, off: u32) -> Option<(u32, u32)> {
        let i = *self.page_bin.get((off / PAGE) as usize)?;
        let b = *self.bins.get(i as usize)?;
        (off >= b.0 && off < b.0 + b.1).then_some(b)
    }

    /// Data range (file offsets) of the allocated cell at `off`.
    fn cell_range(&self, off: u32) -> Result<Range<usize>> {
        let (bs, bl) = self
            .bin_of(off)
            .ok_or_else(|| corrupt(off, "cell offset outside the hive bins"))?;
        if !off.is_multiple_of(8) || off < bs + HBIN_HEADER {
            return Err(corrupt(
                off,
                "cell offset not 8-aligned or inside a bin header",
            ));
        }
        let raw = le32(&self.data, BASE_BLOCK_SIZE + off as usize) as i32;
        if raw >= 0 {
            return Err(corrupt(off, "reference to a free cell"));
        }
        let len = raw.unsigned_abs();
        if len < 8 || len > bs + bl - off {
            return Err(corrupt(off, format!("bad cell size {len}")));
        }
        let s = BASE_BLOCK_SIZE + off as usize + 4;
        Ok(s..s + len as usize - 4)
    }

    fn cell_bytes(&self, off: u32) -> Result<&[u8]> {
        let r = self.cell_range(off)?;
        Ok(&self.data[r])
    }

    fn rd32(&self, cell: u32, field: u32) -> Result<u32> {
        let c = self.cell_bytes(cell)?;
        let f = field as usize;
        c.get(f..f + 4)
            .map(|b| le32(b, 0))
            .ok_or_else(|| corrupt(cell, format!("field at {f} past the end of the cell")))
    }

    fn wr(&mut self, cell: u32, field: u32, bytes: &[u8]) -> Result<()> {
        let r = self.cell_range(cell)?;
        let s = r.start + field as usize;
        if s + bytes.len() > r.end {
            return Err(corrupt(cell, "write past the end of the cell"));
        }
        self.write(s, bytes);
        Ok(())
    }

    fn wr32(&mut self, cell: u32, field: u32, v: u32) -> Result<()> {
        self.wr(cell, field, &v.to_le_bytes())
    }

    fn set_size_field(&mut self, off: u32, size: i32) {
        self.write(BASE_BLOCK_SIZE + off as usize, &size.to_le_bytes());
    }

    /// Allocates a cell with room for `len` data bytes and writes `content` at its start.
    fn alloc(&mut self, len: usize, content: &[u8]) -> Result<u32> {
        let need = round8(len as u64 + 4).max(8);
        if need > MAX_HIVE_BINS {
            return Err(Error::Invalid(format!("cell of {need} bytes")));
        }
        let need = need as u32;
        // Best fit: the smallest free cell that is big enough (lowest offset among equals).
        let found = self.by_size.range((need, 0)..).next().map(|&(s, o)| (o, s));
        let off = match found {
            Some((off, size)) => {
                self.free_remove(off);
                if size - need >= 8 {
                    self.set_size_field(off, -(need as i32));
                    self.set_size_field(off + need, (size - need) as i32);
                    self.free_insert(off + need, size - need);
                } else {
                    self.set_size_field(off, -(size as i32));
                }
                off
            }
            None => self.append_bin(need)?,
        };
        let s = BASE_BLOCK_SIZE + off as usize + 4;
        self.write(s, content);
        Ok(off)
    }

    /// Appends a bin big enough for a cell of `need` bytes and allocates that cell at its start.
    fn append_bin(&mut self, need: u32) -> Result<u32> {
        let hbins = self.hbins_size();
        let size =
            (u64::from(need) + u64::from(HBIN_HEADER)).div_ceil(u64::from(PAGE)) * u64::from(PAGE);
        let new_total = u64::from(hbins) + size;
        if new_total > MAX_HIVE_BINS {
            return Err(Error::Invalid(format!(
                "hive bins would exceed {MAX_HIVE_BINS:#x} bytes"
            )));
        }
        let size = size as u32;
        let file_end = BASE_BLOCK_SIZE + new_total as usize;
        if self.data.len() < file_end {
            self.undo.push(Undo::Len(self.data.len()));
            self.data.resize(file_end, 0);
        }
        let mut hdr = [0u8; HBIN_HEADER as usize];
        hdr[0..4].copy_from_slice(b"hbin");
        hdr[4..8].copy_from_slice(&hbins.to_le_bytes());
        hdr[8..12].copy_from_slice(&size.to_le_bytes());
        self.write(BASE_BLOCK_SIZE + hbins as usize, &hdr);
        self.push_bin(hbins, size);
        self.undo.push(Undo::BinPushed);
        let off = hbins + HBIN_HEADER;
        self.set_size_field(off, -(need as i32));
        let rest = size - HBIN_HEADER - need;
        if rest >= 8 {
            self.set_size_field(off + need, rest as i32);
            self.free_insert(off + need, rest);
        }
        self.write(base::off::HBINS_SIZE, &(new_total as u32).to_le_bytes());
        Ok(off)
    }

    /// Frees the allocated cell at `off`, coalescing with free neighbours in its bin.
    fn free_cell(&mut self, off: u32) -> Result<()> {
        let r = self.cell_range(off)?;
        let (bs, bl) = self.bin_of(off).ok_or_else(|| corrupt(off, "no bin"))?;
        let mut start = off;
        let mut size = (r.len() + 4) as u32;
        let next = off + size;
        if next < bs + bl {
            if let Some(ns) = self.free_remove(next) {
                size += ns;
            }
        }
        if let Some((p, ps)) = self.free_before(off) {
            self.free_remove(p);
            start = p;
            size += ps;
        }
        self.set_size_field(start, size as i32);
        self.free_insert(start, size);
        Ok(())
    }

    /// Usable data bytes of the allocated cell at `off`.
    fn cell_capacity(&self, off: u32) -> Result<usize> {
        Ok(self.cell_range(off)?.len())
    }

    // ------------------------------------------------------------------------------------
    // Keys

    fn key_name_units(&self, nk: u32) -> Result<Vec<u16>> {
        let hive = self.hive()?;
        Ok(hive.key_at(nk)?.raw_name().units().collect())
    }

    fn find_subkey(&self, parent: u32, units: &[u16]) -> Result<Option<u32>> {
        let hive = self.hive()?;
        Ok(hive
            .key_at(parent)?
            .subkey_units(units)?
            .map(|k| k.offset()))
    }

    fn touch(&mut self, nk: u32) -> Result<()> {
        let now = self.now();
        self.wr(nk, NK_TIME, &now.to_le_bytes())
    }

    fn add_subkey(&mut self, parent: u32, units: &[u16]) -> Result<u32> {
        if units.is_empty() || units.len() > MAX_KEY_NAME || units.contains(&u16::from(b'\\')) {
            return Err(Error::Invalid(format!(
                "bad key name {:?}",
                String::from_utf16_lossy(units)
            )));
        }
        let sk = self.rd32(parent, NK_SK)?;
        let (name, comp) = encode_name(units);
        let mut nk = vec![0u8; 76 + name.len()];
        nk[0..2].copy_from_slice(b"nk");
        let flags: u16 = if comp { KEY_COMP_NAME } else { 0 };
        nk[2..4].copy_from_slice(&flags.to_le_bytes());
        nk[4..12].copy_from_slice(&self.now().to_le_bytes());
        nk[16..20].copy_from_slice(&parent.to_le_bytes());
        nk[28..32].copy_from_slice(&NIL.to_le_bytes());
        nk[32..36].copy_from_slice(&NIL.to_le_bytes());
        nk[40..44].copy_from_slice(&NIL.to_le_bytes());
        nk[44..48].copy_from_slice(&sk.to_le_bytes());
        nk[48..52].copy_from_slice(&NIL.to_le_bytes());
        nk[72..74].copy_from_slice(&(name.len() as u16).to_le_bytes());
        nk[76..].copy_from_slice(&name);
        // Take the sk reference first (validates the sk cell).
        self.sk_addref(sk)?;
        let off = self.alloc(nk.len(), &nk)?;
        if let Some(existing) = self.list_insert(parent, off, units)? {
            // A key with that name exists: give back what was taken, return it.
            self.free_cell(off)?;
            self.sk_release(sk)?;
            return Ok(existing);
        }
        let count = self.rd32(parent, NK_SUBKEYS)?;
        let count = count
            .checked_add(1)
            .ok_or_else(|| corrupt(parent, "subkey count overflow"))?;
        self.wr32(parent, NK_SUBKEYS, count)?;
        let max = self.rd32(parent, NK_MAX_NAME)?;
        let len = (units.len() * 2) as u32;
        if len > max & 0xFFFF {
            self.wr32(parent, NK_MAX_NAME, (max & !0xFFFF) | len)?;
        }
        self.touch(parent)?;
        Ok(off)
    }

    fn sk_check(&self, sk: u32) -> Result<()> {
        let c = self.cell_bytes(sk)?;
        if c.len() < 20 || &c[0..2] != b"sk" {
            return Err(corrupt(sk, "expected a security cell (sk)"));
        }
        Ok(())
    }

    fn sk_addref(&mut self, sk: u32) -> Result<()> {
        self.sk_check(sk)?;
        let n = self.rd32(sk, 12)?;
        let n = n
            .checked_add(1)
            .ok_or_else(|| corrupt(sk, "security reference count overflow"))?;
        self.wr32(sk, 12, n)
    }

    fn sk_release(&mut self, sk: u32) -> Result<()> {
        self.sk_check(sk)?;
        let n = self.rd32(sk, 12)?.saturating_sub(1);
        if n > 0 {
            return self.wr32(sk, 12, n);
        }
        let flink = self.rd32(sk, 4)?;
        let blink = self.rd32(sk, 8)?;
        if flink == sk || blink == sk {
            // The last security cell of the hive: keep it (count 0) rather than break the ring.
            return self.wr32(sk, 12, 0);
        }
        self.sk_check(flink)?;
        self.sk_check(blink)?;
        self.wr32(blink, 4, flink)?;
        self.wr32(flink, 8, blink)?;
        self.free_cell(sk)
    }

    fn read_leaf(&self, off: u32) -> Result<Leaf> {
        let hive = self.hive()?;
        let l = crate::hive::SubkeyList::parse(&hive, off)?;
        let mut entries = Vec::with_capacity(l.len() + 1);
        for i in 0..l.len() {
            if let Some((o, h)) = l.get(i) {
                entries.push((o, h.unwrap_or(0)));
            }
        }
        Ok(Leaf {
            off,
            kind: l.kind,
            entries,
        })
    }

    /// Writes `leaf` in place when its cell is big enough, else into a new cell (freeing the
    /// old one). Returns the offset.
    fn write_leaf(&mut self, leaf: &Leaf) -> Result<u32> {
        let es = leaf.kind.element_size();
        let mut b = Vec::with_capacity(4 + es * leaf.entries.len());
        b.extend_from_slice(leaf.kind.signature());
        b.extend_from_slice(&(leaf.entries.len() as u16).to_le_bytes());
        for &(o, h) in &leaf.entries {
            b.extend_from_slice(&o.to_le_bytes());
            if es == 8 {
                b.extend_from_slice(&h.to_le_bytes());
            }
        }
        if leaf.off != NIL && self.cell_capacity(leaf.off)? >= b.len() {
            // Write only the span that differs (an insertion moves the entries after it).
            let cur = self.cell_bytes(leaf.off)?;
            let cur = &cur[..b.len()];
            if let Some(first) = b.iter().zip(cur).position(|(x, y)| x != y) {
                let tail = b
                    .iter()
                    .rev()
                    .zip(cur.iter().rev())
                    .position(|(x, y)| x != y);
                let end = b.len() - tail.unwrap_or(0);
                let span = b[first..end].to_vec();
                self.wr(leaf.off, first as u32, &span)?;
            }
            return Ok(leaf.off);
        }
        // Free first (the content is in `b`), so the old cell and its free neighbours can
        // be reused: this matters in fixed-size hives. Rollback restores it on failure.
        if leaf.off != NIL {
            self.free_cell(leaf.off)?;
        }
        self.alloc(b.len(), &b)
    }

    /// Position to insert `units` into a sorted leaf (error on a duplicate).
    /// Where `units` goes in a sorted leaf: `Ok(index)`, or `Err(nk)` of the key that has
    /// that name already.
    fn leaf_position(&self, leaf: &Leaf, units: &[u16]) -> Result<std::result::Result<usize, u32>> {
        let (mut lo, mut hi) = (0usize, leaf.entries.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let nk = leaf.entries[mid].0;
            match self.cmp_name(nk, units)? {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Err(nk)),
            }
        }
        Ok(Ok(lo))
    }

    /// Windows order of the name of key `nk` relative to `units`.
    fn cmp_name(&self, nk: u32, units: &[u16]) -> Result<std::cmp::Ordering> {
        let hive = self.hive()?;
        let key = hive.key_at(nk)?;
        let a = key.raw_name();
        let a = a.units().map(upcase::upcase_unit);
        Ok(a.cmp(units.iter().map(|&u| upcase::upcase_unit(u))))
    }

    fn new_leaf_kind(&self) -> ListKind {
        if self.minor >= 5 {
            ListKind::Lh
        } else {
            ListKind::Lf
        }
    }

    /// Inserts `nk` (named `units`) into the subkey list of `parent`. Returns the offset of
    /// an existing key with that name instead (and changes nothing) if there is one.
    fn list_insert(&mut self, parent: u32, nk: u32, units: &[u16]) -> Result<Option<u32>> {
        let list = self.rd32(parent, NK_LIST)?;
        let count = self.rd32(parent, NK_SUBKEYS)?;
        if list == NIL || count == 0 {
            let kind = self.new_leaf_kind();
            let leaf = Leaf {
                off: NIL,
                kind,
                entries: vec![(nk, hint_for(kind, units))],
            };
            let off = self.write_leaf(&leaf)?;
            if list != NIL && self.cell_range(list).is_ok() {
                self.free_list_cells(list)?;
            }
            self.wr32(parent, NK_LIST, off)?;
            return Ok(None);
        }
        let top = self.read_leaf(list)?;
        if top.kind != ListKind::Ri {
            let mut leaf = top;
            let pos = match self.leaf_position(&leaf, units)? {
                Ok(p) => p,
                Err(existing) => return Ok(Some(existing)),
            };
            leaf.entries.insert(pos, (nk, hint_for(leaf.kind, units)));
            if leaf.entries.len() <= leaf_capacity(leaf.kind) {
                let off = self.write_leaf(&leaf)?;
                if off != list {
                    self.wr32(parent, NK_LIST, off)?;
                }
                return Ok(None);
            }
            let (a, b) = self.split_leaf(leaf)?;
            let ri = Leaf {
                off: NIL,
                kind: ListKind::Ri,
                entries: vec![(a, 0), (b, 0)],
            };
            let off = self.write_leaf(&ri)?;
            self.wr32(parent, NK_LIST, off)?;
            return Ok(None);
        }
        // Index root: pick the first leaf whose last name sorts after the new name.
        let mut ri = top;
        if ri.entries.is_empty() {
            return Err(corrupt(list, "empty index root"));
        }
        let mut idx = ri.entries.len() - 1;
        for (i, &(leaf_off, _)) in ri.entries.iter().enumerate() {
            let leaf = self.read_leaf(leaf_off)?;
            if leaf.kind == ListKind::Ri {
                return Err(corrupt(leaf_off, "index root (ri) points to another ri"));
            }
            let Some(&(last, _)) = leaf.entries.last() else {
                continue;
            };
            let name = self.key_name_units(last)?;
            if upcase::cmp_units(units, &name) != std::cmp::Ordering::Greater {
                idx = i;
                break;
            }
        }
        let mut leaf = self.read_leaf(ri.entries[idx].0)?;
        let pos = match self.leaf_position(&leaf, units)? {
            Ok(p) => p,
            Err(existing) => return Ok(Some(existing)),
        };
        leaf.entries.insert(pos, (nk, hint_for(leaf.kind, units)));
        if leaf.entries.len() <= leaf_capacity(leaf.kind) {
            let off = self.write_leaf(&leaf)?;
            if off != ri.entries[idx].0 {
                ri.entries[idx].0 = off;
                let r = self.write_leaf(&ri)?;
                if r != list {
                    self.wr32(parent, NK_LIST, r)?;
                }
            }
            return Ok(None);
        }
        if ri.entries.len() >= MAX_INDEX_LEAF {
            return Err(Error::Invalid("too many subkeys under one key".into()));
        }
        let (a, b) = self.split_leaf(leaf)?;
        ri.entries[idx].0 = a;
        ri.entries.insert(idx + 1, (b, 0));
        let r = self.write_leaf(&ri)?;
        if r != list {
            self.wr32(parent, NK_LIST, r)?;
        }
        Ok(None)
    }

    /// Splits an over-full leaf in two halves: the first keeps the leaf's cell.
    ///
    /// In 1.3/1.4 hives the halves become `li` leaves (Windows does the same: yarp's
    /// `ManySubkeysHive`, written by Windows, has an `ri` over `li` leaves where the key
    /// started with an `lf`); in 1.5+ hives they stay `lh` (as in offreg's 512-subkey key).
    fn split_leaf(&mut self, leaf: Leaf) -> Result<(u32, u32)> {
        let half = leaf.entries.len() / 2;
        let kind = if self.minor < 5 && leaf.kind == ListKind::Lf {
            ListKind::Li
        } else {
            leaf.kind
        };
        let first = Leaf {
            off: leaf.off,
            kind,
            entries: leaf.entries[..half].to_vec(),
        };
        let second = Leaf {
            off: NIL,
            kind,
            entries: leaf.entries[half..].to_vec(),
        };
        let a = self.write_leaf(&first)?;
        let b = self.write_leaf(&second)?;
        Ok((a, b))
    }

    fn list_remove(&mut self, parent: u32, nk: u32) -> Result<()> {
        let list = self.rd32(parent, NK_LIST)?;
        if list == NIL {
            return Err(corrupt(parent, "key has no subkey list"));
        }
        let top = self.read_leaf(list)?;
        if top.kind != ListKind::Ri {
            let mut leaf = top;
            let pos = leaf
                .entries
                .iter()
                .position(|e| e.0 == nk)
                .ok_or_else(|| corrupt(list, "subkey missing from its parent's list"))?;
            leaf.entries.remove(pos);
            if leaf.entries.is_empty() {
                self.free_cell(list)?;
                return self.wr32(parent, NK_LIST, NIL);
            }
            self.write_leaf(&leaf)?;
            return Ok(());
        }
        let mut ri = top;
        for i in 0..ri.entries.len() {
            let mut leaf = self.read_leaf(ri.entries[i].0)?;
            let Some(pos) = leaf.entries.iter().position(|e| e.0 == nk) else {
                continue;
            };
            leaf.entries.remove(pos);
            if !leaf.entries.is_empty() {
                self.write_leaf(&leaf)?;
                return Ok(());
            }
            self.free_cell(leaf.off)?;
            ri.entries.remove(i);
            if ri.entries.is_empty() {
                self.free_cell(list)?;
                return self.wr32(parent, NK_LIST, NIL);
            }
            self.write_leaf(&ri)?;
            return Ok(());
        }
        Err(corrupt(list, "subkey missing from its parent's list"))
    }

    fn free_list_cells(&mut self, list: u32) -> Result<()> {
        let top = self.read_leaf(list)?;
        if top.kind == ListKind::Ri {
            for &(leaf, _) in &top.entries {
                self.free_cell(leaf)?;
            }
        }
        self.free_cell(list)
    }

    fn subkey_offsets(&self, nk: u32) -> Result<Vec<u32>> {
        let hive = self.hive()?;
        let key = hive.key_at(nk)?;
        let mut out = Vec::new();
        for k in key.subkeys()? {
            out.push(k?.offset());
        }
        Ok(out)
    }

    fn delete_key_inner(&mut self, top: u32) -> Result<usize> {
        let parent = self.rd32(top, NK_PARENT)?;
        // Collect the subtree (parents before children), bounded against cycles.
        let limit = self.data.len() / 80 + 1;
        let mut order = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![(top, 0usize)];
        while let Some((k, depth)) = stack.pop() {
            if !seen.insert(k) || order.len() > limit {
                return Err(corrupt(k, "key tree contains a cycle"));
            }
            if depth > MAX_DEPTH {
                return Err(corrupt(k, "key tree deeper than 512 levels"));
            }
            let flags = self.hive()?.key_at(k)?.flags();
            if flags & KEY_NO_DELETE != 0 {
                let name = self.hive()?.key_at(k)?.name();
                return Err(Error::Invalid(format!(
                    "key {name:?} (offset {k:#x}) is marked KEY_NO_DELETE; Windows refuses to delete it"
                )));
            }
            order.push(k);
            for c in self.subkey_offsets(k)? {
                stack.push((c, depth + 1));
            }
        }
        for &k in order.iter().rev() {
            self.free_key_cells(k)?;
        }
        self.list_remove(parent, top)?;
        let count = self.rd32(parent, NK_SUBKEYS)?;
        self.wr32(parent, NK_SUBKEYS, count.saturating_sub(1))?;
        self.touch(parent)?;
        Ok(order.len())
    }

    /// Frees everything a key owns (values, lists, class) and the key itself.
    fn free_key_cells(&mut self, nk: u32) -> Result<()> {
        let vlist = self.rd32(nk, NK_VLIST)?;
        let count = self.rd32(nk, NK_VALUES)? as usize;
        if vlist != NIL && count > 0 {
            let cell = self.cell_bytes(vlist)?;
            if count * 4 > cell.len() {
                return Err(corrupt(vlist, "value list does not fit its cell"));
            }
            let vks: Vec<u32> = (0..count).map(|i| le32(cell, i * 4)).collect();
            for vk in vks {
                self.free_value(vk)?;
            }
            self.free_cell(vlist)?;
        }
        let list = self.rd32(nk, NK_LIST)?;
        if list != NIL && self.rd32(nk, NK_SUBKEYS)? > 0 {
            self.free_list_cells(list)?;
        }
        let class = self.rd32(nk, NK_CLASS)?;
        if class != NIL && self.cell_range(class).is_ok() {
            self.free_cell(class)?;
        }
        let sk = self.rd32(nk, NK_SK)?;
        self.sk_release(sk)?;
        self.free_cell(nk)
    }

    // ------------------------------------------------------------------------------------
    // Values

    /// (vk offset, index in the value list) of value `units` of `nk`.
    fn find_value(&self, nk: u32, units: &[u16]) -> Result<Option<(u32, usize)>> {
        let hive = self.hive()?;
        let key = hive.key_at(nk)?;
        for (i, v) in key.values()?.enumerate() {
            let v = v?;
            if v.raw_name().eq_units(units) {
                return Ok(Some((v.offset(), i)));
            }
        }
        Ok(None)
    }

    fn value_storage(&self, vk: u32) -> Result<(Storage, u32, u32)> {
        let hive = self.hive()?;
        let v = hive.value_at(vk)?;
        Ok((v.storage(), v.data_type(), v.data_size()))
    }

    fn free_storage(&mut self, st: Storage, size: u32) -> Result<()> {
        match st {
            Storage::Inline => Ok(()),
            Storage::Cell(off) => {
                if size == 0 && (off == NIL || self.cell_range(off).is_err()) {
                    return Ok(());
                }
                self.free_cell(off)
            }
            Storage::BigData(off) => {
                let db = self.cell_bytes(off)?;
                if db.len() < 8 || &db[0..2] != b"db" {
                    return Err(corrupt(off, "expected a big-data record (db)"));
                }
                let n = u16::from_le_bytes([db[2], db[3]]) as usize;
                let list = le32(db, 4);
                let lc = self.cell_bytes(list)?;
                if n * 4 > lc.len() {
                    return Err(corrupt(list, "big-data segment list does not fit its cell"));
                }
                let segs: Vec<u32> = (0..n).map(|i| le32(lc, i * 4)).collect();
                for s in segs {
                    self.free_cell(s)?;
                }
                self.free_cell(list)?;
                self.free_cell(off)
            }
        }
    }

    fn free_value(&mut self, vk: u32) -> Result<()> {
        let (st, _, size) = self.value_storage(vk)?;
        self.free_storage(st, size)?;
        self.free_cell(vk)
    }

    /// Stores `data` (not inline) and returns the data-offset field.
    fn store_data(&mut self, data: &[u8]) -> Result<u32> {
        if self.minor < 4 || data.len() <= BIG_DATA_THRESHOLD as usize {
            return self.alloc(data.len(), data);
        }
        let chunk = BIG_DATA_THRESHOLD as usize;
        let n = data.len().div_ceil(chunk);
        if n > crate::hive::MAX_BIG_DATA_SEGMENTS {
            return Err(Error::Invalid(format!(
                "{} bytes of value data",
                data.len()
            )));
        }
        let mut segs = Vec::with_capacity(n * 4);
        for c in data.chunks(chunk) {
            let off = self.alloc(BIG_DATA_SEGMENT_CELL as usize - 4, c)?;
            segs.extend_from_slice(&off.to_le_bytes());
        }
        let list = self.alloc(segs.len(), &segs)?;
        let mut db = [0u8; 12];
        db[0..2].copy_from_slice(b"db");
        db[2..4].copy_from_slice(&(n as u16).to_le_bytes());
        db[4..8].copy_from_slice(&list.to_le_bytes());
        self.alloc(db.len(), &db)
    }

    fn set_value_inner(&mut self, nk: u32, units: &[u16], ty: u32, data: &[u8]) -> Result<()> {
        let existing = self.find_value(nk, units)?;
        let len = data.len() as u32;
        let mut reuse: Option<u32> = None;
        let old = match existing {
            Some((vk, _)) => {
                let (st, oty, osize) = self.value_storage(vk)?;
                let hive = self.hive()?;
                let same = oty == ty && hive.value_at(vk)?.data().ok().as_deref() == Some(data);
                if same {
                    return Ok(());
                }
                if let Storage::Cell(off) = st {
                    let fits_cell = data.len() > 4
                        && !(self.minor >= 4 && len > BIG_DATA_THRESHOLD)
                        && off != NIL
                        && self.cell_range(off).is_ok()
                        && self.cell_capacity(off)? >= data.len();
                    if fits_cell {
                        reuse = Some(off);
                    }
                }
                Some((vk, st, osize))
            }
            None => None,
        };
        // Free the old data first so its space (and free neighbours) can take the new data.
        if let (Some((_, st, osize)), None) = (old, reuse) {
            self.free_storage(st, osize)?;
        }
        let (size_field, data_field) = if data.len() <= 4 {
            let mut b = [0u8; 4];
            b[..data.len()].copy_from_slice(data);
            (len | 0x8000_0000, u32::from_le_bytes(b))
        } else if let Some(off) = reuse {
            self.wr(off, 0, data)?;
            (len, off)
        } else {
            (len, self.store_data(data)?)
        };
        match old {
            Some((vk, _, _)) => {
                let mut f = [0u8; 12];
                f[0..4].copy_from_slice(&size_field.to_le_bytes());
                f[4..8].copy_from_slice(&data_field.to_le_bytes());
                f[8..12].copy_from_slice(&ty.to_le_bytes());
                self.wr(vk, 4, &f)?;
            }
            None => {
                let (name, comp) = encode_name(units);
                let mut vk = vec![0u8; 20 + name.len()];
                vk[0..2].copy_from_slice(b"vk");
                vk[2..4].copy_from_slice(&(name.len() as u16).to_le_bytes());
                vk[4..8].copy_from_slice(&size_field.to_le_bytes());
                vk[8..12].copy_from_slice(&data_field.to_le_bytes());
                vk[12..16].copy_from_slice(&ty.to_le_bytes());
                let flags: u16 = if comp && !units.is_empty() { 1 } else { 0 };
                vk[16..18].copy_from_slice(&flags.to_le_bytes());
                vk[20..].copy_from_slice(&name);
                let off = self.alloc(vk.len(), &vk)?;
                self.value_list_append(nk, off)?;
                let max = self.rd32(nk, NK_MAX_VNAME)?;
                let nl = (units.len() * 2) as u32;
                if nl > max {
                    self.wr32(nk, NK_MAX_VNAME, nl)?;
                }
            }
        }
        let maxd = self.rd32(nk, NK_MAX_VDATA)?;
        if len > maxd {
            self.wr32(nk, NK_MAX_VDATA, len)?;
        }
        self.touch(nk)
    }

    fn value_list_append(&mut self, nk: u32, vk: u32) -> Result<()> {
        let count = self.rd32(nk, NK_VALUES)? as usize;
        let list = self.rd32(nk, NK_VLIST)?;
        if count == 0 || list == NIL {
            let off = self.alloc(4, &vk.to_le_bytes())?;
            if list != NIL && self.cell_range(list).is_ok() {
                self.free_cell(list)?;
            }
            self.wr32(nk, NK_VLIST, off)?;
        } else if self.cell_capacity(list)? >= (count + 1) * 4 {
            self.wr(list, (count * 4) as u32, &vk.to_le_bytes())?;
        } else {
            let old = self.cell_bytes(list)?;
            if count * 4 > old.len() {
                return Err(corrupt(list, "value list does not fit its cell"));
            }
            let mut b = old[..count * 4].to_vec();
            b.extend_from_slice(&vk.to_le_bytes());
            self.free_cell(list)?;
            let off = self.alloc(b.len(), &b)?;
            self.wr32(nk, NK_VLIST, off)?;
        }
        self.wr32(nk, NK_VALUES, (count + 1) as u32)
    }

    fn delete_value_inner(&mut self, nk: u32, units: &[u16]) -> Result<bool> {
        let Some((vk, idx)) = self.find_value(nk, units)? else {
            return Ok(false);
        };
        let count = self.rd32(nk, NK_VALUES)? as usize;
        let list = self.rd32(nk, NK_VLIST)?;
        if count <= 1 {
            self.free_cell(list)?;
            self.wr32(nk, NK_VLIST, NIL)?;
        } else {
            let cell = self.cell_bytes(list)?;
            if idx >= count || count * 4 > cell.len() {
                return Err(corrupt(list, "value list does not fit its cell"));
            }
            let mut b = cell[..count * 4].to_vec();
            b.drain(idx * 4..idx * 4 + 4);
            self.wr(list, 0, &b)?;
        }
        self.wr32(nk, NK_VALUES, (count.saturating_sub(1)) as u32)?;
        self.free_value(vk)?;
        self.touch(nk)?;
        Ok(true)
    }
}

fn corrupt(offset: u32, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        offset,
        reason: reason.into(),
    }
}

/// Builds the bytes of a new, empty, clean hive of format 1.`minor` (3..=6): base block, one
/// 4 KiB bin with the root key (flags 0x2C, name `ROOT`) and one security cell holding
/// [`default_security_descriptor`] (refcount 1, ring of one), rest of the bin free.
pub fn new_hive(minor: u32, filetime: u64) -> Result<Vec<u8>> {
    if !(3..=6).contains(&minor) {
        return Err(Error::Invalid(format!(
            "minor version {minor} (supported: 3 to 6)"
        )));
    }
    let mut f = vec![0u8; BASE_BLOCK_SIZE + PAGE as usize];
    let root: u32 = HBIN_HEADER;
    let name = b"ROOT";
    let nk_size = round8(4 + 76 + name.len() as u64) as u32;
    let sk: u32 = root + nk_size;
    let sd = default_security_descriptor();
    let sk_size = round8(4 + 20 + sd.len() as u64) as u32;
    // Base block.
    f[0..4].copy_from_slice(b"regf");
    f[4..8].copy_from_slice(&1u32.to_le_bytes());
    f[8..12].copy_from_slice(&1u32.to_le_bytes());
    f[12..20].copy_from_slice(&filetime.to_le_bytes());
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..28].copy_from_slice(&minor.to_le_bytes());
    f[32..36].copy_from_slice(&1u32.to_le_bytes());
    f[36..40].copy_from_slice(&root.to_le_bytes());
    f[40..44].copy_from_slice(&PAGE.to_le_bytes());
    f[44..48].copy_from_slice(&1u32.to_le_bytes());
    base::fix_checksum(&mut f[..512]);
    // Bin header.
    let b = BASE_BLOCK_SIZE;
    f[b..b + 4].copy_from_slice(b"hbin");
    f[b + 8..b + 12].copy_from_slice(&PAGE.to_le_bytes());
    f[b + 20..b + 28].copy_from_slice(&filetime.to_le_bytes());
    // Root nk.
    let n = b + root as usize;
    f[n..n + 4].copy_from_slice(&(-(nk_size as i32)).to_le_bytes());
    let d = n + 4;
    f[d..d + 2].copy_from_slice(b"nk");
    f[d + 2..d + 4].copy_from_slice(&0x2Cu16.to_le_bytes());
    f[d + 4..d + 12].copy_from_slice(&filetime.to_le_bytes());
    f[d + 16..d + 20].copy_from_slice(&NIL.to_le_bytes());
    f[d + 28..d + 32].copy_from_slice(&NIL.to_le_bytes());
    f[d + 32..d + 36].copy_from_slice(&NIL.to_le_bytes());
    f[d + 40..d + 44].copy_from_slice(&NIL.to_le_bytes());
    f[d + 44..d + 48].copy_from_slice(&sk.to_le_bytes());
    f[d + 48..d + 52].copy_from_slice(&NIL.to_le_bytes());
    f[d + 72..d + 74].copy_from_slice(&(name.len() as u16).to_le_bytes());
    f[d + 76..d + 76 + name.len()].copy_from_slice(name);
    // sk.
    let s = b + sk as usize;
    f[s..s + 4].copy_from_slice(&(-(sk_size as i32)).to_le_bytes());
    let d = s + 4;
    f[d..d + 2].copy_from_slice(b"sk");
    f[d + 4..d + 8].copy_from_slice(&sk.to_le_bytes());
    f[d + 8..d + 12].copy_from_slice(&sk.to_le_bytes());
    f[d + 12..d + 16].copy_from_slice(&1u32.to_le_bytes());
    f[d + 16..d + 20].copy_from_slice(&(sd.len() as u32).to_le_bytes());
    f[d + 20..d + 20 + sd.len()].copy_from_slice(&sd);
    // Free rest.
    let free_off = sk + sk_size;
    let free_size = PAGE - free_off;
    let fo = b + free_off as usize;
    f[fo..fo + 4].copy_from_slice(&(free_size as i32).to_le_bytes());
    Ok(f)
}

/// The self-relative security descriptor given to new hives:
/// `O:BAG:SYD:(A;CI;KA;;;SY)(A;CI;KA;;;BA)(A;CI;KR;;;BU)` — owner Administrators, group
/// SYSTEM, container-inheritable full control for SYSTEM and Administrators, read for Users.
/// Layout: header, DACL (3 ACEs), owner SID, group SID.
pub fn default_security_descriptor() -> Vec<u8> {
    fn sid(sub: &[u32]) -> Vec<u8> {
        let mut s = vec![1u8, sub.len() as u8, 0, 0, 0, 0, 0, 5];
        for a in sub {
            s.extend_from_slice(&a.to_le_bytes());
        }
        s
    }
    fn ace(mask: u32, sid: &[u8]) -> Vec<u8> {
        let mut a = vec![0u8, 0x02];
        a.extend_from_slice(&((8 + sid.len()) as u16).to_le_bytes());
        a.extend_from_slice(&mask.to_le_bytes());
        a.extend_from_slice(sid);
        a
    }
    let sy = sid(&[18]);
    let ba = sid(&[32, 544]);
    let bu = sid(&[32, 545]);
    let mut aces = Vec::new();
    aces.extend(ace(0x000F_003F, &sy));
    aces.extend(ace(0x000F_003F, &ba));
    aces.extend(ace(0x0002_0019, &bu));
    let acl_size = 8 + aces.len();
    let dacl_off = 20usize;
    let owner_off = dacl_off + acl_size;
    let group_off = owner_off + ba.len();
    let mut sd = vec![1u8, 0];
    sd.extend_from_slice(&0x8004u16.to_le_bytes());
    sd.extend_from_slice(&(owner_off as u32).to_le_bytes());
    sd.extend_from_slice(&(group_off as u32).to_le_bytes());
    sd.extend_from_slice(&0u32.to_le_bytes());
    sd.extend_from_slice(&(dacl_off as u32).to_le_bytes());
    sd.extend_from_slice(&[2, 0]);
    sd.extend_from_slice(&(acl_size as u16).to_le_bytes());
    sd.extend_from_slice(&3u16.to_le_bytes());
    sd.extend_from_slice(&[0, 0]);
    sd.extend(aces);
    sd.extend(ba);
    sd.extend(sy);
    sd
}

/// Formats changed ranges for display (`0x1000..0x1004 (4 bytes)` per line).
pub fn format_ranges(ranges: &[Range<usize>]) -> String {
    let mut s = String::new();
    for r in ranges {
        let _ = writeln!(
            s,
            "  {:#010x}..{:#010x} ({} bytes)",
            r.start,
            r.end,
            r.len()
        );
    }
    s
}
