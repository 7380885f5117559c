// SPDX-License-Identifier: MIT OR Apache-2.0
//! Directory lookup: `$I30` index B+trees (`$INDEX_ROOT` + `$INDEX_ALLOCATION`).

use std::cmp::Ordering;

use super::{
    apply_fixups, attr_type, le16, le32, le64, ntfs_err, record, AttrBody, Attribute, Volume,
    MAX_INDEX_BLOCK_SIZE, MAX_INDEX_DEPTH, MAX_INDEX_ENTRIES_PER_NODE, MAX_PATH_COMPONENTS,
};
use crate::{Error, ReadAt, Result};

const I30: [u16; 4] = [b'$' as u16, b'I' as u16, b'3' as u16, b'0' as u16];
const ENTRY_HAS_SUBNODE: u16 = 0x0001;
const ENTRY_LAST: u16 = 0x0002;

/// One entry of a directory index node.
struct Entry {
    mft: u64,
    name: Vec<u16>,
    subnode: Option<u64>,
    last: bool,
}

/// Parses the entries of an index node; `hdr` is the offset of the INDEX_HEADER in `buf`.
fn parse_entries(buf: &[u8], hdr: usize, at: u64) -> Result<Vec<Entry>> {
    let first = le32(buf, hdr).unwrap_or(0) as usize;
    let used = le32(buf, hdr + 4).unwrap_or(0) as usize;
    let start = hdr.checked_add(first);
    let end = hdr.checked_add(used);
    let (Some(mut pos), Some(end)) = (start, end) else {
        return Err(ntfs_err(at, "index header offsets overflow"));
    };
    if end > buf.len() || pos >= end {
        return Err(ntfs_err(
            at,
            format!("index entries {pos:#x}..{end:#x} out of bounds"),
        ));
    }
    let mut out = Vec::new();
    loop {
        if out.len() >= MAX_INDEX_ENTRIES_PER_NODE {
            return Err(ntfs_err(at, "too many index entries in one node"));
        }
        let len = le16(buf, pos + 8).unwrap_or(0) as usize;
        let key_len = le16(buf, pos + 10).unwrap_or(0) as usize;
        let flags = le16(buf, pos + 12).unwrap_or(0);
        if len < 0x10 || pos + len > end || !len.is_multiple_of(8) {
            return Err(ntfs_err(
                at + pos as u64,
                format!("index entry length {len:#x} invalid"),
            ));
        }
        let last = flags & ENTRY_LAST != 0;
        let subnode = if flags & ENTRY_HAS_SUBNODE != 0 {
            if len < 0x18 {
                return Err(ntfs_err(
                    at + pos as u64,
                    "index entry too short for a subnode",
                ));
            }
            Some(le64(buf, pos + len - 8).unwrap_or(0))
        } else {
            None
        };
        let mut name = Vec::new();
        if !last {
            if key_len < 0x42 || 0x10 + key_len > len {
                return Err(ntfs_err(
                    at + pos as u64,
                    format!("index key length {key_len:#x} invalid"),
                ));
            }
            let key = &buf[pos + 0x10..pos + 0x10 + key_len];
            let n = key[0x40] as usize;
            let s = key
                .get(0x42..0x42 + 2 * n)
                .ok_or_else(|| ntfs_err(at + pos as u64, "file name beyond index key"))?;
            name = s
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
        }
        out.push(Entry {
            mft: le64(buf, pos).unwrap_or(0) & 0x0000_FFFF_FFFF_FFFF,
            name,
            subnode,
            last,
        });
        if last {
            return Ok(out);
        }
        pos += len;
        if pos >= end {
            return Err(ntfs_err(at, "index node has no last entry"));
        }
    }
}

impl<R: ReadAt> Volume<R> {
    fn cmp_names(&self, a: &[u16], b: &[u16]) -> Ordering {
        for (x, y) in a.iter().zip(b.iter()) {
            let (ux, uy) = (self.upcase(*x), self.upcase(*y));
            match ux.cmp(&uy) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        a.len().cmp(&b.len())
    }

    /// Looks `name` up in directory `dir` (MFT record); returns the entry's MFT record number.
    pub fn lookup(&self, dir: u64, name: &str) -> Result<u64> {
        let name16: Vec<u16> = name.encode_utf16().collect();
        let attrs = self.attributes(dir)?;
        let is_i30 = |a: &&Attribute| a.name == I30;
        let root = attrs
            .iter()
            .filter(is_i30)
            .find(|a| a.ty == attr_type::INDEX_ROOT)
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "MFT record {dir} is not a directory (no $I30 index root)"
                ))
            })?;
        let AttrBody::Resident(rv) = &root.body else {
            return Err(ntfs_err(root.offset, "$INDEX_ROOT is not resident"));
        };
        let block_size = le32(rv, 8).unwrap_or(0);
        let alloc_segs: Vec<Attribute> = attrs
            .iter()
            .filter(is_i30)
            .filter(|a| a.ty == attr_type::INDEX_ALLOCATION)
            .cloned()
            .collect();
        let alloc_runs = if alloc_segs.is_empty() {
            None
        } else {
            Some(self.combine_segments(&alloc_segs, root.offset)?)
        };
        let vcn_size: u64 = if block_size as u64 >= self.cluster_size {
            self.cluster_size
        } else {
            512
        };
        let mut entries = parse_entries(rv, 0x10, root.offset)?;
        let mut visited: Vec<u64> = Vec::new();
        for _depth in 0..MAX_INDEX_DEPTH {
            let mut next: Option<u64> = None;
            for e in &entries {
                if e.last {
                    next = e.subnode;
                    break;
                }
                match self.cmp_names(&name16, &e.name) {
                    Ordering::Equal => return Ok(e.mft),
                    Ordering::Less => {
                        next = e.subnode;
                        break;
                    }
                    Ordering::Greater => {}
                }
            }
            let Some(vcn) = next else {
                return Err(Error::NotFound(format!("{name} in directory record {dir}")));
            };
            if visited.contains(&vcn) {
                return Err(ntfs_err(root.offset, format!("index loop at VCN {vcn}")));
            }
            visited.push(vcn);
            let Some((info, runs)) = &alloc_runs else {
                return Err(ntfs_err(
                    root.offset,
                    "index has subnodes but no $INDEX_ALLOCATION",
                ));
            };
            if !(256..=MAX_INDEX_BLOCK_SIZE).contains(&block_size) || !block_size.is_power_of_two()
            {
                return Err(ntfs_err(
                    root.offset,
                    format!("index block size {block_size} invalid"),
                ));
            }
            let start = vcn
                .checked_mul(vcn_size)
                .filter(|s| s.saturating_add(block_size as u64) <= info.allocated_size)
                .ok_or_else(|| ntfs_err(root.offset, format!("index VCN {vcn} out of range")))?;
            let mut blk = vec![0u8; block_size as usize];
            self.read_runs_into(runs, start, &mut blk, "index block")?;
            let at = self
                .runs_disk_offset(runs, start)
                .unwrap_or(self.part_offset);
            if blk.get(0..4) != Some(b"INDX") {
                return Err(ntfs_err(
                    at,
                    format!("index block at VCN {vcn}: no INDX signature"),
                ));
            }
            apply_fixups(&mut blk, at)?;
            entries = parse_entries(&blk, 0x18, at)?;
        }
        Err(ntfs_err(
            root.offset,
            format!("index deeper than {MAX_INDEX_DEPTH} levels"),
        ))
    }

    fn runs_disk_offset(&self, runs: &[super::Run], byte: u64) -> Option<u64> {
        let cs = self.cluster_size;
        let vcn = byte / cs;
        let r = runs.iter().find(|r| r.vcn <= vcn && vcn < r.vcn + r.len)?;
        let lcn = r.lcn? + (vcn - r.vcn);
        self.cluster_offset(lcn).ok().map(|o| o + byte % cs)
    }

    /// Finds `path` (components separated by `\` or `/`; case-insensitive with the volume's
    /// `$UpCase`) from the root directory; returns the MFT record number. An empty path is the
    /// root (record 5).
    pub fn find(&self, path: &str) -> Result<u64> {
        let mut cur = record::ROOT;
        let mut n = 0usize;
        for comp in path.split(['\\', '/']).filter(|c| !c.is_empty()) {
            n += 1;
            if n > MAX_PATH_COMPONENTS {
                return Err(Error::Invalid(format!(
                    "path has more than {MAX_PATH_COMPONENTS} components"
                )));
            }
            if comp == "." {
                continue;
            }
            cur = self.lookup(cur, comp).map_err(|e| match e {
                Error::NotFound(_) => Error::NotFound(path.to_string()),
                other => other,
            })?;
        }
        Ok(cur)
    }
}
