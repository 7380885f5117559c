// SPDX-License-Identifier: MIT OR Apache-2.0
//! Opening a hive and reading its cells, keys and values.
//!
//! A [`Hive`] is a cheap, copyable view over the bytes of a hive file. Every offset that comes
//! from the file goes through [`Hive::cell`], which checks it against the hive-bins area, so a
//! damaged file gives an [`Error::Corrupt`] naming the offset instead of a panic.

use std::borrow::Cow;

use crate::base::{le32, BaseBlock, BASE_BLOCK_SIZE, NIL};
use crate::error::{Error, Result};
use crate::upcase;

/// Largest value data Windows stores in one cell; above this (minor ≥ 4) it uses big data.
pub const BIG_DATA_THRESHOLD: u32 = 16344;
/// Maximum depth of the key tree a walker follows (MSDN limit).
pub const MAX_DEPTH: usize = 512;
/// Maximum number of big-data segments accepted (bounds memory on hostile input: 64 MiB).
pub const MAX_BIG_DATA_SEGMENTS: usize = 4096;

/// `nk` flag: the key name is stored compressed (Latin-1).
pub const KEY_COMP_NAME: u16 = 0x0020;
/// `nk` flag: root key of the hive.
pub const KEY_HIVE_ENTRY: u16 = 0x0004;
/// `nk` flag: symbolic link.
pub const KEY_SYM_LINK: u16 = 0x0010;
/// `vk` flag: the value name is stored compressed (Latin-1).
pub const VALUE_COMP_NAME: u16 = 0x0001;

/// Value types.
pub mod reg_type {
    /// REG_NONE
    pub const NONE: u32 = 0;
    /// REG_SZ
    pub const SZ: u32 = 1;
    /// REG_EXPAND_SZ
    pub const EXPAND_SZ: u32 = 2;
    /// REG_BINARY
    pub const BINARY: u32 = 3;
    /// REG_DWORD
    pub const DWORD: u32 = 4;
    /// REG_DWORD_BIG_ENDIAN
    pub const DWORD_BE: u32 = 5;
    /// REG_LINK
    pub const LINK: u32 = 6;
    /// REG_MULTI_SZ
    pub const MULTI_SZ: u32 = 7;
    /// REG_RESOURCE_LIST
    pub const RESOURCE_LIST: u32 = 8;
    /// REG_FULL_RESOURCE_DESCRIPTOR
    pub const FULL_RESOURCE_DESCRIPTOR: u32 = 9;
    /// REG_RESOURCE_REQUIREMENTS_LIST
    pub const RESOURCE_REQUIREMENTS_LIST: u32 = 10;
    /// REG_QWORD
    pub const QWORD: u32 = 11;
}

#[inline]
fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

/// A read-only view of a hive.
#[derive(Debug, Clone, Copy)]
pub struct Hive<'a> {
    data: &'a [u8],
    /// Hive-bins data (from file offset 4096, `hbins_size` bytes, clamped to the file).
    bins: &'a [u8],
    minor: u32,
    root: u32,
    dirty: bool,
}

impl<'a> Hive<'a> {
    /// Opens a hive: checks the base block (signature, version 1.3–1.6, primary file type,
    /// format, hive-bins size inside the file) and the root key. A dirty hive opens (see
    /// [`Hive::is_dirty`]); editing it is refused elsewhere.
    pub fn open(data: &'a [u8]) -> Result<Hive<'a>> {
        let base = BaseBlock::parse(data)?;
        // A dirty hive's header may describe more bins than the file holds (the logs carry
        // the rest), so only a clean hive must fit its file.
        let limit = if base.is_dirty() {
            u64::MAX
        } else {
            data.len() as u64
        };
        base.validate(limit).map_err(|e| match e {
            Error::BaseBlock(m) if !base.checksum_ok => Error::BaseBlock(format!(
                "{m}; the checksum is wrong too: the base block is damaged \
                 (recover it from a transaction log)"
            )),
            e => e,
        })?;
        let hive = Self::from_parts(data, &base);
        hive.root()?;
        Ok(hive)
    }

    /// Opens without validating the base block's version, type or sizes (forensic use). The
    /// hive-bins area is clamped to the file.
    pub fn open_unchecked(data: &'a [u8]) -> Result<Hive<'a>> {
        let base = BaseBlock::parse(data)?;
        Ok(Self::from_parts(data, &base))
    }

    /// A view from header fields the caller already knows (no base-block parsing: for an
    /// editor that re-reads its own image often). The hive-bins area is clamped to the file.
    pub fn from_known_header(data: &'a [u8], minor: u32, root: u32, hbins_size: u32) -> Hive<'a> {
        let start = BASE_BLOCK_SIZE.min(data.len());
        let end = (BASE_BLOCK_SIZE as u64 + u64::from(hbins_size)).min(data.len() as u64);
        Hive {
            data,
            bins: &data[start..end as usize],
            minor,
            root,
            dirty: false,
        }
    }

    fn from_parts(data: &'a [u8], base: &BaseBlock) -> Hive<'a> {
        let start = BASE_BLOCK_SIZE.min(data.len());
        let end = (BASE_BLOCK_SIZE as u64 + u64::from(base.hbins_size)).min(data.len() as u64);
        Hive {
            data,
            bins: &data[start..end as usize],
            minor: base.minor,
            root: base.root,
            dirty: base.is_dirty(),
        }
    }

    /// The whole file.
    pub fn bytes(&self) -> &'a [u8] {
        self.data
    }

    /// The hive-bins data (file offset 4096 onwards, as long as the header says).
    pub fn bins(&self) -> &'a [u8] {
        self.bins
    }

    /// The base block's fields.
    pub fn base_block(&self) -> BaseBlock {
        // Cannot fail: `open` parsed it already.
        BaseBlock::parse(self.data).unwrap_or_else(|_| unreachable_base())
    }

    /// Minor format version (3..6).
    pub fn minor_version(&self) -> u32 {
        self.minor
    }

    /// True when the sequence numbers differ or the checksum is wrong.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Whether a value of `size` bytes is stored as big data in this hive.
    pub fn is_big_data_size(&self, size: u32) -> bool {
        self.minor >= 4 && size > BIG_DATA_THRESHOLD
    }

    /// The raw cell at `offset` (relative to the hive bins): its data without the size field.
    /// Checks that the cell lies inside the hive bins, is 8-aligned, allocated and not bigger
    /// than the area.
    pub fn cell(&self, offset: u32) -> Result<&'a [u8]> {
        let o = offset as usize;
        if offset == NIL
            || !o.is_multiple_of(8)
            || o.checked_add(4).is_none_or(|e| e > self.bins.len())
        {
            return Err(corrupt(
                offset,
                "cell offset outside the hive bins or not 8-aligned",
            ));
        }
        let size = le32(self.bins, o) as i32;
        if size >= 0 {
            return Err(corrupt(offset, "reference to a free cell"));
        }
        let len = size.unsigned_abs() as usize;
        if len < 8 || o + len > self.bins.len() {
            return Err(corrupt(offset, format!("bad cell size {len}")));
        }
        Ok(&self.bins[o + 4..o + len])
    }

    /// The root key.
    pub fn root(&self) -> Result<Key<'a>> {
        self.key_at(self.root)
    }

    /// The key node at `offset`.
    pub fn key_at(&self, offset: u32) -> Result<Key<'a>> {
        let nk = self.cell(offset)?;
        if nk.len() < 76 || &nk[0..2] != b"nk" {
            return Err(corrupt(offset, "expected a key node (nk)"));
        }
        let name_len = le16(nk, 72) as usize;
        if 76 + name_len > nk.len() {
            return Err(corrupt(offset, "key name runs past the end of its cell"));
        }
        Ok(Key {
            hive: *self,
            offset,
            nk,
        })
    }

    /// The value at `offset`.
    pub fn value_at(&self, offset: u32) -> Result<Value<'a>> {
        let vk = self.cell(offset)?;
        if vk.len() < 20 || &vk[0..2] != b"vk" {
            return Err(corrupt(offset, "expected a value (vk)"));
        }
        let name_len = le16(vk, 2) as usize;
        if 20 + name_len > vk.len() {
            return Err(corrupt(offset, "value name runs past the end of its cell"));
        }
        Ok(Value {
            hive: *self,
            offset,
            vk,
        })
    }

    /// Looks a key up by path (`\`-separated, case-insensitive like Windows; an empty path or
    /// `\` is the root). A leading root-key name is not stripped: pass paths relative to the root.
    pub fn key(&self, path: &str) -> Result<Option<Key<'a>>> {
        let mut key = self.root()?;
        for part in path.split(['\\', '/']).filter(|p| !p.is_empty()) {
            match key.subkey(part)? {
                Some(k) => key = k,
                None => return Ok(None),
            }
        }
        Ok(Some(key))
    }
}

#[cold]
fn unreachable_base() -> BaseBlock {
    BaseBlock {
        seq1: 0,
        seq2: 0,
        timestamp: 0,
        major: 0,
        minor: 0,
        file_type: 0,
        file_format: 0,
        root: NIL,
        hbins_size: 0,
        clustering: 0,
        file_name: String::new(),
        flags: 0,
        checksum: 0,
        checksum_ok: false,
    }
}

pub(crate) fn corrupt(offset: u32, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        offset,
        reason: reason.into(),
    }
}

/// A name as stored: Latin-1 (compressed) or UTF-16LE bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawName<'a> {
    /// One byte per character (Latin-1).
    Latin1(&'a [u8]),
    /// UTF-16LE bytes (an odd trailing byte is ignored).
    Utf16(&'a [u8]),
}

impl RawName<'_> {
    /// The UTF-16 code units of the name.
    pub fn units(&self) -> impl Iterator<Item = u16> + '_ {
        let (latin, utf16): (&[u8], &[u8]) = match self {
            RawName::Latin1(b) => (b, &[]),
            RawName::Utf16(b) => (&[], b),
        };
        latin.iter().map(|&b| u16::from(b)).chain(
            utf16
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]])),
        )
    }

    /// The name as a Rust string (unpaired surrogates become U+FFFD).
    pub fn to_string_lossy(&self) -> String {
        match self {
            RawName::Latin1(b) if b.is_ascii() => ascii_string(b.to_vec()),
            RawName::Latin1(b) => {
                let mut s = String::with_capacity(b.len() * 2);
                s.extend(b.iter().map(|&c| char::from(c)));
                s
            }
            RawName::Utf16(b) => utf16_lossy(b),
        }
    }

    /// The length in bytes as Windows counts it for the "largest name" fields (UTF-16 size).
    pub fn utf16_len(&self) -> u32 {
        match self {
            RawName::Latin1(b) => 2 * b.len() as u32,
            RawName::Utf16(b) => (b.len() & !1) as u32,
        }
    }

    /// Whether this name equals `other` (given as UTF-16 units) case-insensitively, the
    /// Windows way.
    pub fn eq_units(&self, other: &[u16]) -> bool {
        let mut a = self.units();
        let mut b = other.iter();
        loop {
            match (a.next(), b.next()) {
                (None, None) => return true,
                (Some(x), Some(&y)) if upcase::upcase_unit(x) == upcase::upcase_unit(y) => {}
                _ => return false,
            }
        }
    }
}

/// A key node (`nk`).
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    hive: Hive<'a>,
    offset: u32,
    nk: &'a [u8],
}

impl<'a> Key<'a> {
    /// Offset of the nk cell (relative to the hive bins).
    pub fn offset(&self) -> u32 {
        self.offset
    }
    /// The hive this key belongs to.
    pub fn hive(&self) -> Hive<'a> {
        self.hive
    }
    /// The raw cell data (starting with `nk`).
    pub fn raw(&self) -> &'a [u8] {
        self.nk
    }
    /// Flags (KEY_COMP_NAME, KEY_HIVE_ENTRY, ...).
    pub fn flags(&self) -> u16 {
        le16(self.nk, 2)
    }
    /// Last-written FILETIME.
    pub fn timestamp(&self) -> u64 {
        crate::base::le64(self.nk, 4)
    }
    /// Offset of the parent key.
    pub fn parent_offset(&self) -> u32 {
        le32(self.nk, 16)
    }
    /// Number of (stable) subkeys recorded in the key.
    pub fn subkey_count(&self) -> u32 {
        le32(self.nk, 20)
    }
    /// Offset of the subkey list, or NIL.
    pub fn subkey_list_offset(&self) -> u32 {
        le32(self.nk, 28)
    }
    /// Number of values recorded in the key.
    pub fn value_count(&self) -> u32 {
        le32(self.nk, 36)
    }
    /// Offset of the value list, or NIL.
    pub fn value_list_offset(&self) -> u32 {
        le32(self.nk, 40)
    }
    /// Offset of the security cell.
    pub fn security_offset(&self) -> u32 {
        le32(self.nk, 44)
    }
    /// Offset of the class name cell, or NIL.
    pub fn class_offset(&self) -> u32 {
        le32(self.nk, 48)
    }
    /// Largest subkey name length field (low 16 bits are the length in bytes).
    pub fn max_subkey_name_len(&self) -> u32 {
        le32(self.nk, 52)
    }
    /// Largest subkey class length field.
    pub fn max_subkey_class_len(&self) -> u32 {
        le32(self.nk, 56)
    }
    /// Largest value name length field (bytes, UTF-16).
    pub fn max_value_name_len(&self) -> u32 {
        le32(self.nk, 60)
    }
    /// Largest value data size field.
    pub fn max_value_data_len(&self) -> u32 {
        le32(self.nk, 64)
    }
    /// Class name length in bytes.
    pub fn class_len(&self) -> u16 {
        le16(self.nk, 74)
    }

    /// The name as stored.
    pub fn raw_name(&self) -> RawName<'a> {
        let len = le16(self.nk, 72) as usize;
        let bytes = &self.nk[76..76 + len];
        if self.flags() & KEY_COMP_NAME != 0 {
            RawName::Latin1(bytes)
        } else {
            RawName::Utf16(bytes)
        }
    }

    /// The name.
    pub fn name(&self) -> String {
        self.raw_name().to_string_lossy()
    }

    /// The class name, if any.
    pub fn class_name(&self) -> Result<Option<String>> {
        let off = self.class_offset();
        if off == NIL || self.class_len() == 0 {
            return Ok(None);
        }
        let cell = self.hive.cell(off)?;
        let len = (self.class_len() as usize).min(cell.len());
        Ok(Some(RawName::Utf16(&cell[..len]).to_string_lossy()))
    }

    /// Iterates over the subkeys in on-disk order (through `ri` index roots).
    pub fn subkeys(&self) -> Result<Subkeys<'a>> {
        let off = self.subkey_list_offset();
        if off == NIL || self.subkey_count() == 0 {
            return Ok(Subkeys::empty(self.hive));
        }
        let list = SubkeyList::parse(&self.hive, off)?;
        Ok(Subkeys {
            hive: self.hive,
            root: if list.kind == ListKind::Ri {
                Some((list, 0))
            } else {
                None
            },
            leaf: if list.kind == ListKind::Ri {
                None
            } else {
                Some((list, 0))
            },
        })
    }

    /// Finds a subkey by name (case-insensitive, Windows rules).
    pub fn subkey(&self, name: &str) -> Result<Option<Key<'a>>> {
        let units: Vec<u16> = name.encode_utf16().collect();
        self.subkey_units(&units)
    }

    /// Finds a subkey by its UTF-16 name.
    pub fn subkey_units(&self, units: &[u16]) -> Result<Option<Key<'a>>> {
        let hash = upcase::lh_hash_units(units.iter().copied());
        for item in self.subkeys_with_hints()? {
            let (off, hint) = item?;
            if let Some((kind, h)) = hint {
                if kind == ListKind::Lh && h != hash {
                    continue;
                }
            }
            let k = self.hive.key_at(off)?;
            if k.raw_name().eq_units(units) {
                return Ok(Some(k));
            }
        }
        Ok(None)
    }

    fn subkeys_with_hints(&self) -> Result<SubkeyOffsets<'a>> {
        Ok(SubkeyOffsets(self.subkeys()?))
    }

    /// The values in on-disk (value list) order.
    pub fn values(&self) -> Result<Values<'a>> {
        let count = self.value_count() as usize;
        let off = self.value_list_offset();
        if count == 0 || off == NIL {
            return Ok(Values {
                hive: self.hive,
                list: &[],
            });
        }
        let cell = self.hive.cell(off)?;
        if count.checked_mul(4).is_none_or(|n| n > cell.len()) {
            return Err(corrupt(
                off,
                format!("value list of {count} entries does not fit its cell"),
            ));
        }
        Ok(Values {
            hive: self.hive,
            list: &cell[..count * 4],
        })
    }

    /// Finds a value by name (case-insensitive; "" is the default value).
    pub fn value(&self, name: &str) -> Result<Option<Value<'a>>> {
        let units: Vec<u16> = name.encode_utf16().collect();
        for v in self.values()? {
            let v = v?;
            if v.raw_name().eq_units(&units) {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }
}

/// Kinds of subkey lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// `li`: offsets only.
    Li,
    /// `lf`: offset + 4-byte name hint.
    Lf,
    /// `lh`: offset + name hash.
    Lh,
    /// `ri`: offsets of leaves.
    Ri,
}

impl ListKind {
    /// Bytes per element.
    pub fn element_size(self) -> usize {
        match self {
            ListKind::Li | ListKind::Ri => 4,
            ListKind::Lf | ListKind::Lh => 8,
        }
    }
    /// The two-byte signature.
    pub fn signature(self) -> &'static [u8; 2] {
        match self {
            ListKind::Li => b"li",
            ListKind::Lf => b"lf",
            ListKind::Lh => b"lh",
            ListKind::Ri => b"ri",
        }
    }
}

/// A parsed subkey list cell.
#[derive(Debug, Clone, Copy)]
pub struct SubkeyList<'a> {
    /// Offset of the list cell.
    pub offset: u32,
    /// Its kind.
    pub kind: ListKind,
    /// Element bytes (count × element size).
    pub elements: &'a [u8],
}

impl<'a> SubkeyList<'a> {
    /// Parses the list cell at `offset`.
    pub fn parse(hive: &Hive<'a>, offset: u32) -> Result<SubkeyList<'a>> {
        let cell = hive.cell(offset)?;
        if cell.len() < 4 {
            return Err(corrupt(offset, "subkey list cell too small"));
        }
        let kind = match &cell[0..2] {
            b"li" => ListKind::Li,
            b"lf" => ListKind::Lf,
            b"lh" => ListKind::Lh,
            b"ri" => ListKind::Ri,
            other => {
                return Err(corrupt(
                    offset,
                    format!("expected a subkey list (li/lf/lh/ri), found {other:02x?}"),
                ))
            }
        };
        let count = le16(cell, 2) as usize;
        let need = count * kind.element_size();
        if 4 + need > cell.len() {
            return Err(corrupt(
                offset,
                format!("subkey list of {count} entries does not fit its cell"),
            ));
        }
        Ok(SubkeyList {
            offset,
            kind,
            elements: &cell[4..4 + need],
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.elements.len() / self.kind.element_size()
    }

    /// True when the list has no elements.
    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }

    /// Element `i`: (offset, hint/hash if lf/lh).
    pub fn get(&self, i: usize) -> Option<(u32, Option<u32>)> {
        let sz = self.kind.element_size();
        let e = self.elements.get(i * sz..i * sz + sz)?;
        let off = le32(e, 0);
        let hint = (sz == 8).then(|| le32(e, 4));
        Some((off, hint))
    }
}

/// One subkey-list element: nk offset and, for lf/lh leaves, (leaf kind, hint or hash).
pub type ListEntry = (u32, Option<(ListKind, u32)>);

/// Iterator over subkeys (see [`Key::subkeys`]).
#[derive(Debug, Clone)]
pub struct Subkeys<'a> {
    hive: Hive<'a>,
    root: Option<(SubkeyList<'a>, usize)>,
    leaf: Option<(SubkeyList<'a>, usize)>,
}

impl<'a> Subkeys<'a> {
    fn empty(hive: Hive<'a>) -> Self {
        Subkeys {
            hive,
            root: None,
            leaf: None,
        }
    }

    /// Next (nk offset, (list kind, hint)) without decoding the key.
    fn next_offset(&mut self) -> Option<Result<ListEntry>> {
        loop {
            if let Some((leaf, i)) = &mut self.leaf {
                if let Some((off, hint)) = leaf.get(*i) {
                    *i += 1;
                    return Some(Ok((off, hint.map(|h| (leaf.kind, h)))));
                }
                self.leaf = None;
            }
            let (root, i) = self.root.as_mut()?;
            let (leaf_off, _) = match root.get(*i) {
                Some(e) => e,
                None => {
                    self.root = None;
                    return None;
                }
            };
            *i += 1;
            match SubkeyList::parse(&self.hive, leaf_off) {
                Ok(l) if l.kind == ListKind::Ri => {
                    self.root = None;
                    return Some(Err(corrupt(
                        leaf_off,
                        "index root (ri) points to another ri",
                    )));
                }
                Ok(l) => self.leaf = Some((l, 0)),
                Err(e) => {
                    self.root = None;
                    return Some(Err(e));
                }
            }
        }
    }
}

impl<'a> Iterator for Subkeys<'a> {
    type Item = Result<Key<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        let r = self.next_offset()?;
        Some(r.and_then(|(off, _)| self.hive.key_at(off)))
    }
}

struct SubkeyOffsets<'a>(Subkeys<'a>);

impl Iterator for SubkeyOffsets<'_> {
    type Item = Result<ListEntry>;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next_offset()
    }
}

/// Iterator over the values of a key.
#[derive(Debug, Clone)]
pub struct Values<'a> {
    hive: Hive<'a>,
    list: &'a [u8],
}

impl<'a> Iterator for Values<'a> {
    type Item = Result<Value<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.list.len() < 4 {
            return None;
        }
        let off = le32(self.list, 0);
        self.list = &self.list[4..];
        Some(self.hive.value_at(off))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.list.len() / 4;
        (n, Some(n))
    }
}

/// A value (`vk`).
#[derive(Debug, Clone, Copy)]
pub struct Value<'a> {
    hive: Hive<'a>,
    offset: u32,
    vk: &'a [u8],
}

/// Where a value's data is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Inline in the vk (≤ 4 bytes).
    Inline,
    /// One data cell at this offset.
    Cell(u32),
    /// A big-data (`db`) record at this offset.
    BigData(u32),
}

impl<'a> Value<'a> {
    /// Offset of the vk cell.
    pub fn offset(&self) -> u32 {
        self.offset
    }
    /// Raw vk cell data.
    pub fn raw(&self) -> &'a [u8] {
        self.vk
    }
    /// The name as stored ("" = default value).
    pub fn raw_name(&self) -> RawName<'a> {
        let len = le16(self.vk, 2) as usize;
        let bytes = &self.vk[20..20 + len];
        if self.flags() & VALUE_COMP_NAME != 0 {
            RawName::Latin1(bytes)
        } else {
            RawName::Utf16(bytes)
        }
    }
    /// The name ("" = default value).
    pub fn name(&self) -> String {
        self.raw_name().to_string_lossy()
    }
    /// The value type (REG_*; any u32).
    pub fn data_type(&self) -> u32 {
        le32(self.vk, 12)
    }
    /// vk flags.
    pub fn flags(&self) -> u16 {
        le16(self.vk, 16)
    }
    /// The raw data-size field (bit 31 = inline).
    pub fn raw_data_size(&self) -> u32 {
        le32(self.vk, 4)
    }
    /// Data size in bytes.
    pub fn data_size(&self) -> u32 {
        self.raw_data_size() & 0x7FFF_FFFF
    }
    /// The data-offset field (or the inline data).
    pub fn data_offset(&self) -> u32 {
        le32(self.vk, 8)
    }

    /// How the data is stored.
    pub fn storage(&self) -> Storage {
        let raw = self.raw_data_size();
        if raw & 0x8000_0000 != 0 {
            Storage::Inline
        } else if self.hive.is_big_data_size(raw) {
            Storage::BigData(self.data_offset())
        } else {
            Storage::Cell(self.data_offset())
        }
    }

    /// The value's data. Errors when the data cell is missing or too small for the recorded
    /// size (see [`Value::data_lossy`] for a tolerant read).
    pub fn data(&self) -> Result<Cow<'a, [u8]>> {
        self.read_data(true)
    }

    /// Like [`Value::data`], but data longer than its cell is cut at the cell's end (as hivex
    /// and regedit show such values).
    pub fn data_lossy(&self) -> Result<Cow<'a, [u8]>> {
        self.read_data(false)
    }

    fn read_data(&self, strict: bool) -> Result<Cow<'a, [u8]>> {
        let size = self.data_size() as usize;
        match self.storage() {
            Storage::Inline => {
                if size > 4 {
                    if strict {
                        return Err(corrupt(self.offset, format!("inline data of {size} bytes")));
                    }
                    return Ok(Cow::Borrowed(&self.vk[8..12]));
                }
                Ok(Cow::Borrowed(&self.vk[8..8 + size]))
            }
            Storage::Cell(off) => {
                if size == 0 {
                    return Ok(Cow::Borrowed(&[]));
                }
                let cell = self.hive.cell(off)?;
                if size > cell.len() {
                    if strict {
                        return Err(corrupt(
                            off,
                            format!(
                                "value data of {size} bytes does not fit its {}-byte cell",
                                cell.len()
                            ),
                        ));
                    }
                    return Ok(Cow::Borrowed(cell));
                }
                Ok(Cow::Borrowed(&cell[..size]))
            }
            Storage::BigData(off) => self.big_data(off, size, strict).map(Cow::Owned),
        }
    }

    fn big_data(&self, off: u32, size: usize, strict: bool) -> Result<Vec<u8>> {
        let db = self.hive.cell(off)?;
        if db.len() < 8 || &db[0..2] != b"db" {
            return Err(corrupt(off, "expected a big-data record (db)"));
        }
        let count = le16(db, 2) as usize;
        if count > MAX_BIG_DATA_SEGMENTS {
            return Err(corrupt(off, format!("{count} big-data segments")));
        }
        let list_off = le32(db, 4);
        let list = self.hive.cell(list_off)?;
        if count * 4 > list.len() {
            return Err(corrupt(
                list_off,
                "big-data segment list does not fit its cell",
            ));
        }
        if strict && size > count * BIG_DATA_THRESHOLD as usize {
            return Err(corrupt(
                off,
                format!("{size} bytes of big data in only {count} segments"),
            ));
        }
        let mut out = Vec::with_capacity(size.min(count * BIG_DATA_THRESHOLD as usize));
        for i in 0..count {
            if out.len() >= size {
                break;
            }
            let seg_off = le32(list, i * 4);
            let seg = self.hive.cell(seg_off)?;
            let want = (size - out.len()).min(BIG_DATA_THRESHOLD as usize);
            if seg.len() < want {
                if strict {
                    return Err(corrupt(seg_off, "big-data segment too small"));
                }
                out.extend_from_slice(seg);
                continue;
            }
            out.extend_from_slice(&seg[..want]);
        }
        if strict && out.len() != size {
            return Err(corrupt(off, "big data shorter than its recorded size"));
        }
        Ok(out)
    }

    /// The data decoded according to the value type.
    pub fn decoded(&self) -> Result<Data> {
        Ok(Data::decode(self.data_type(), &self.data()?))
    }
}

/// Decoded value data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// REG_NONE (raw bytes).
    None(Vec<u8>),
    /// REG_SZ.
    Sz(String),
    /// REG_EXPAND_SZ.
    ExpandSz(String),
    /// REG_BINARY.
    Binary(Vec<u8>),
    /// REG_DWORD (little-endian).
    Dword(u32),
    /// REG_DWORD_BIG_ENDIAN.
    DwordBe(u32),
    /// REG_LINK (UTF-16 target path).
    Link(String),
    /// REG_MULTI_SZ.
    MultiSz(Vec<String>),
    /// REG_QWORD.
    Qword(u64),
    /// REG_RESOURCE_LIST, REG_FULL_RESOURCE_DESCRIPTOR, REG_RESOURCE_REQUIREMENTS_LIST (raw).
    Resource(u32, Vec<u8>),
    /// A type whose data does not have the expected shape, or an unknown type: raw bytes.
    Raw(u32, Vec<u8>),
}

/// Decodes UTF-16LE string data the way regedit shows it: up to the first NUL; an odd trailing
/// byte is ignored; unpaired surrogates become U+FFFD.
pub fn utf16_string(bytes: &[u8]) -> String {
    let end = bytes
        .chunks_exact(2)
        .position(|c| c == [0, 0])
        .unwrap_or(bytes.len() / 2);
    utf16_lossy(&bytes[..end * 2])
}

/// Bytes known to be ASCII as a `String` (no panic path: falls back to lossy).
fn ascii_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// UTF-16LE bytes (odd trailing byte ignored) to a `String`, unpaired surrogates → U+FFFD.
/// Fast path for ASCII, the common case in real hives.
fn utf16_lossy(bytes: &[u8]) -> String {
    let pairs = bytes.chunks_exact(2);
    if pairs.clone().all(|c| c[1] == 0 && c[0] < 0x80) {
        return ascii_string(pairs.map(|c| c[0]).collect());
    }
    // Non-ASCII: widestring's lossy UTF-16 decoder (unpaired surrogates become U+FFFD, as
    // regedit shows them).
    let mut s = String::with_capacity(bytes.len());
    s.extend(widestring::decode_utf16_lossy(
        pairs.map(|c| u16::from_le_bytes([c[0], c[1]])),
    ));
    s
}

/// Decodes REG_MULTI_SZ data: NUL-separated strings ending at an empty string or at the end
/// (a missing terminator is tolerated); an odd trailing byte is ignored.
pub fn multi_sz(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = &bytes[..bytes.len() & !1];
    while !rest.is_empty() {
        let end = rest
            .chunks_exact(2)
            .position(|c| c == [0, 0])
            .unwrap_or(rest.len() / 2);
        if end == 0 {
            break;
        }
        out.push(utf16_lossy(&rest[..end * 2]));
        rest = rest.get(end * 2 + 2..).unwrap_or(&[]);
    }
    out
}

/// Encodes strings as REG_MULTI_SZ data (each NUL-terminated, plus a final NUL).
pub fn encode_multi_sz<S: AsRef<str>>(items: &[S]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in items {
        for u in s.as_ref().encode_utf16() {
            out.extend_from_slice(&u.to_le_bytes());
        }
        out.extend_from_slice(&[0, 0]);
    }
    out.extend_from_slice(&[0, 0]);
    out
}

/// Encodes a string as REG_SZ data (UTF-16LE with a terminating NUL).
pub fn encode_sz(s: &str) -> Vec<u8> {
    let mut out: Vec<u8> = s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    out.extend_from_slice(&[0, 0]);
    out
}

impl Data {
    /// Decodes `bytes` of value type `ty`.
    pub fn decode(ty: u32, bytes: &[u8]) -> Data {
        use reg_type::*;
        match ty {
            NONE => Data::None(bytes.to_vec()),
            SZ => Data::Sz(utf16_string(bytes)),
            EXPAND_SZ => Data::ExpandSz(utf16_string(bytes)),
            BINARY => Data::Binary(bytes.to_vec()),
            DWORD if bytes.len() == 4 => {
                Data::Dword(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
            }
            DWORD_BE if bytes.len() == 4 => {
                Data::DwordBe(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
            }
            LINK => Data::Link(utf16_string(bytes)),
            MULTI_SZ => Data::MultiSz(multi_sz(bytes)),
            QWORD if bytes.len() == 8 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(bytes);
                Data::Qword(u64::from_le_bytes(a))
            }
            RESOURCE_LIST | FULL_RESOURCE_DESCRIPTOR | RESOURCE_REQUIREMENTS_LIST => {
                Data::Resource(ty, bytes.to_vec())
            }
            _ => Data::Raw(ty, bytes.to_vec()),
        }
    }

    /// The DWORD, if this is one.
    pub fn as_dword(&self) -> Option<u32> {
        match self {
            Data::Dword(v) | Data::DwordBe(v) => Some(*v),
            _ => None,
        }
    }

    /// The string, if this is REG_SZ / REG_EXPAND_SZ / REG_LINK.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Data::Sz(s) | Data::ExpandSz(s) | Data::Link(s) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_decoding_tolerates_odd_and_missing_nul() {
        assert_eq!(utf16_string(b"a\0b\0"), "ab");
        assert_eq!(utf16_string(b"a\0b\0\0\0x\0"), "ab");
        assert_eq!(utf16_string(b"a\0b"), "a");
        assert_eq!(multi_sz(b"a\0\0\0b\0\0\0\0\0"), ["a", "b"]);
        assert_eq!(multi_sz(b"a\0\0\0b\0"), ["a", "b"]);
        assert_eq!(decode_rt(&encode_multi_sz(&["x", "yz"])), ["x", "yz"]);
    }

    fn decode_rt(b: &[u8]) -> Vec<String> {
        multi_sz(b)
    }

    #[test]
    fn cell_bounds() {
        // A minimal buffer that is not a hive fails with a precise error.
        assert!(Hive::open(&[0u8; 100]).is_err());
    }
}
