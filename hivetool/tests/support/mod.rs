// SPDX-License-Identifier: MIT OR Apache-2.0
//! Test support: builds small, well-formed hives by hand (independent of the crate's editor),
//! a fixed-seed PRNG, and the corpus location.
#![allow(dead_code)]

use hivetool::upcase;

/// A key to build.
#[derive(Debug, Clone, Default)]
pub struct TKey {
    pub name: String,
    pub class: Option<String>,
    /// (name, type, data)
    pub values: Vec<(String, u32, Vec<u8>)>,
    pub subkeys: Vec<TKey>,
}

impl TKey {
    pub fn new(name: &str) -> TKey {
        TKey {
            name: name.into(),
            ..TKey::default()
        }
    }
    pub fn value(mut self, name: &str, ty: u32, data: &[u8]) -> TKey {
        self.values.push((name.into(), ty, data.to_vec()));
        self
    }
    pub fn sub(mut self, k: TKey) -> TKey {
        self.subkeys.push(k);
        self
    }
}

/// Entries per leaf before an `ri` is used (small, to exercise index roots in tests).
pub const LEAF_MAX: usize = 64;

struct B {
    cells: Vec<u8>,
    minor: u32,
    sk: u32,
    keys: u32,
}

fn le16(v: &mut [u8], at: usize, x: u16) {
    v[at..at + 2].copy_from_slice(&x.to_le_bytes());
}
fn le32(v: &mut [u8], at: usize, x: u32) {
    v[at..at + 4].copy_from_slice(&x.to_le_bytes());
}

impl B {
    /// Appends an allocated cell holding `data`; returns its offset (relative to the bins).
    fn alloc(&mut self, data: &[u8]) -> u32 {
        let off = 32 + self.cells.len() as u32;
        let size = (4 + data.len()).div_ceil(8) * 8;
        self.cells
            .extend_from_slice(&(-(size as i32)).to_le_bytes());
        self.cells.extend_from_slice(data);
        self.cells
            .resize(self.cells.len() + size - 4 - data.len(), 0);
        off
    }
    fn patch32(&mut self, cell: u32, field: usize, x: u32) {
        let at = (cell - 32) as usize + 4 + field;
        le32(&mut self.cells, at, x);
    }

    fn name_bytes(name: &str) -> (Vec<u8>, bool) {
        if name.chars().all(|c| (c as u32) <= 0xFF) {
            (name.chars().map(|c| c as u32 as u8).collect(), true)
        } else {
            (
                name.encode_utf16().flat_map(|u| u.to_le_bytes()).collect(),
                false,
            )
        }
    }

    fn value(&mut self, name: &str, ty: u32, data: &[u8]) -> u32 {
        let (nb, comp) = Self::name_bytes(name);
        let mut vk = vec![0u8; 20 + nb.len()];
        vk[0..2].copy_from_slice(b"vk");
        le16(&mut vk, 2, nb.len() as u16);
        le32(&mut vk, 12, ty);
        le16(&mut vk, 16, u16::from(comp && !name.is_empty()));
        vk[20..].copy_from_slice(&nb);
        if data.len() <= 4 {
            le32(&mut vk, 4, 0x8000_0000 | data.len() as u32);
            vk[8..8 + data.len()].copy_from_slice(data);
        } else if self.minor >= 4 && data.len() > 16344 {
            let segs: Vec<u32> = data
                .chunks(16344)
                .map(|c| {
                    let mut s = c.to_vec();
                    s.resize(16348, 0);
                    self.alloc(&s)
                })
                .collect();
            let list: Vec<u8> = segs.iter().flat_map(|o| o.to_le_bytes()).collect();
            let list_off = self.alloc(&list);
            let mut db = vec![0u8; 8];
            db[0..2].copy_from_slice(b"db");
            le16(&mut db, 2, segs.len() as u16);
            le32(&mut db, 4, list_off);
            let db_off = self.alloc(&db);
            le32(&mut vk, 4, data.len() as u32);
            le32(&mut vk, 8, db_off);
        } else {
            let d = self.alloc(data);
            le32(&mut vk, 4, data.len() as u32);
            le32(&mut vk, 8, d);
        }
        self.alloc(&vk)
    }

    fn key(&mut self, k: &TKey, parent: u32, root: bool) -> u32 {
        self.keys += 1;
        let (nb, comp) = Self::name_bytes(&k.name);
        let mut nk = vec![0u8; 76 + nb.len()];
        nk[0..2].copy_from_slice(b"nk");
        let mut flags = if comp { 0x20 } else { 0 };
        if root {
            flags |= 0x0C;
        }
        le16(&mut nk, 2, flags);
        nk[4..12].copy_from_slice(&0x01D2_0000_0000_0000u64.to_le_bytes());
        le32(&mut nk, 16, parent);
        le32(&mut nk, 28, u32::MAX);
        le32(&mut nk, 32, u32::MAX);
        le32(&mut nk, 40, u32::MAX);
        le32(&mut nk, 44, self.sk);
        le32(&mut nk, 48, u32::MAX);
        le16(&mut nk, 72, nb.len() as u16);
        nk[76..].copy_from_slice(&nb);
        let off = self.alloc(&nk);
        if let Some(c) = &k.class {
            let cb: Vec<u8> = c.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
            let co = self.alloc(&cb);
            self.patch32(off, 48, co);
            let at = (off - 32) as usize + 4 + 74;
            le16(&mut self.cells, at, cb.len() as u16);
        }
        // Values.
        if !k.values.is_empty() {
            let mut offs = Vec::new();
            let (mut mn, mut md) = (0u32, 0u32);
            for (n, t, d) in &k.values {
                offs.push(self.value(n, *t, d));
                mn = mn.max(2 * n.encode_utf16().count() as u32);
                md = md.max(d.len() as u32);
            }
            let list: Vec<u8> = offs.iter().flat_map(|o| o.to_le_bytes()).collect();
            let lo = self.alloc(&list);
            self.patch32(off, 36, offs.len() as u32);
            self.patch32(off, 40, lo);
            self.patch32(off, 60, mn);
            self.patch32(off, 64, md);
        }
        // Subkeys, sorted the Windows way.
        if !k.subkeys.is_empty() {
            let mut subs: Vec<&TKey> = k.subkeys.iter().collect();
            subs.sort_by(|a, b| upcase::cmp_names(&a.name, &b.name));
            let mut entries = Vec::new();
            let (mut mn, mut mc) = (0u32, 0u32);
            for s in subs {
                let so = self.key(s, off, false);
                let units: Vec<u16> = s.name.encode_utf16().collect();
                mn = mn.max(2 * units.len() as u32);
                mc = mc.max(
                    s.class
                        .as_ref()
                        .map_or(0, |c| 2 * c.encode_utf16().count() as u32),
                );
                entries.push((so, units));
            }
            let leaves: Vec<u32> = entries
                .chunks(LEAF_MAX)
                .map(|chunk| self.leaf(chunk))
                .collect();
            let list = if leaves.len() == 1 {
                leaves[0]
            } else {
                let mut ri = vec![0u8; 4 + 4 * leaves.len()];
                ri[0..2].copy_from_slice(b"ri");
                le16(&mut ri, 2, leaves.len() as u16);
                for (i, l) in leaves.iter().enumerate() {
                    le32(&mut ri, 4 + 4 * i, *l);
                }
                self.alloc(&ri)
            };
            self.patch32(off, 20, entries.len() as u32);
            self.patch32(off, 28, list);
            self.patch32(off, 52, mn);
            self.patch32(off, 56, mc);
        }
        off
    }

    fn leaf(&mut self, entries: &[(u32, Vec<u16>)]) -> u32 {
        let lh = self.minor >= 5;
        let mut l = vec![0u8; 4 + 8 * entries.len()];
        l[0..2].copy_from_slice(if lh { b"lh" } else { b"lf" });
        le16(&mut l, 2, entries.len() as u16);
        for (i, (o, units)) in entries.iter().enumerate() {
            le32(&mut l, 4 + 8 * i, *o);
            let h = if lh {
                upcase::lh_hash_units(units.iter().copied())
            } else {
                let mut b = [0u8; 4];
                for (j, &u) in units.iter().take(4).enumerate() {
                    b[j] = u as u8;
                }
                u32::from_le_bytes(b)
            };
            le32(&mut l, 8 + 8 * i, h);
        }
        self.alloc(&l)
    }
}

/// A minimal self-relative security descriptor (owner/group SYSTEM, no DACL).
fn security_descriptor() -> Vec<u8> {
    let sid = [1u8, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0]; // S-1-5-18
    let mut sd = vec![1u8, 0, 0x00, 0x80]; // revision 1, control SE_SELF_RELATIVE
    sd.extend_from_slice(&20u32.to_le_bytes()); // owner
    sd.extend_from_slice(&32u32.to_le_bytes()); // group
    sd.extend_from_slice(&0u32.to_le_bytes()); // sacl
    sd.extend_from_slice(&0u32.to_le_bytes()); // dacl
    sd.extend_from_slice(&sid);
    sd.extend_from_slice(&sid);
    sd
}

/// Builds a clean hive of format 1.`minor` holding `root` (one bin, one shared sk).
pub fn build(root: &TKey, minor: u32) -> Vec<u8> {
    let mut b = B {
        cells: Vec::new(),
        minor,
        sk: 32,
        keys: 0,
    };
    let sd = security_descriptor();
    let mut sk = vec![0u8; 20 + sd.len()];
    sk[0..2].copy_from_slice(b"sk");
    le32(&mut sk, 4, 32);
    le32(&mut sk, 8, 32);
    le32(&mut sk, 16, sd.len() as u32);
    sk[20..].copy_from_slice(&sd);
    let sk_off = b.alloc(&sk);
    assert_eq!(sk_off, 32);
    let root_off = b.key(root, 0, true);
    let keys = b.keys;
    b.patch32(sk_off, 12, keys);
    // One bin holding everything, the rest of it one free cell.
    let used = 32 + b.cells.len();
    let bin_size = used.div_ceil(4096).max(1) * 4096;
    let bin_size = if bin_size - used > 0 && bin_size - used < 8 {
        bin_size + 4096
    } else {
        bin_size
    };
    let mut bins = vec![0u8; bin_size];
    bins[0..4].copy_from_slice(b"hbin");
    le32(&mut bins, 4, 0);
    le32(&mut bins, 8, bin_size as u32);
    bins[32..used].copy_from_slice(&b.cells);
    if bin_size > used {
        le32(&mut bins, used, (bin_size - used) as u32);
    }
    let mut base = vec![0u8; 4096];
    base[0..4].copy_from_slice(b"regf");
    le32(&mut base, 4, 1);
    le32(&mut base, 8, 1);
    le32(&mut base, 20, 1);
    le32(&mut base, 24, minor);
    le32(&mut base, 32, 1);
    le32(&mut base, 36, root_off);
    le32(&mut base, 40, bin_size as u32);
    le32(&mut base, 44, 1);
    hivetool::base::fix_checksum(&mut base);
    base.extend_from_slice(&bins);
    base
}

/// UTF-16LE + NUL.
pub fn sz(s: &str) -> Vec<u8> {
    hivetool::hive::encode_sz(s)
}

/// A sample tree with every value type, non-ASCII names, a class name, big data and an `ri`.
pub fn sample_tree(big: bool) -> TKey {
    let mut many = TKey::new("Many");
    for i in 0..150 {
        many = many.sub(TKey::new(&format!("k{i:03}")));
    }
    let mut values = TKey::new("Values")
        .value("", 1, &sz("default"))
        .value("sz", 1, &sz("a \"quoted\" \\ path"))
        .value("expand", 2, &sz("%SystemRoot%\\x"))
        .value("bin", 3, &[1, 2, 3, 4, 5, 6, 7, 8, 9])
        .value("dword", 4, &0x1234_5678u32.to_le_bytes())
        .value("dword_be", 5, &[0, 0, 0, 1])
        .value(
            "multi",
            7,
            &hivetool::hive::encode_multi_sz(&["one", "two"]),
        )
        .value("qword", 11, &0x1122_3344_5566_7788u64.to_le_bytes())
        .value("none", 0, &[])
        .value("odd\"name\\", 0x1234, &[0xAA; 3])
        .value("long", 3, &[0x5A; 300]);
    if big {
        values = values.value(
            "big",
            3,
            &(0..40_000u32).map(|i| i as u8).collect::<Vec<_>>(),
        );
    }
    let mut cls = TKey::new("Classy");
    cls.class = Some("MyClass".into());
    TKey::new("ROOT")
        .sub(values)
        .sub(many)
        .sub(cls)
        .sub(TKey::new("äöü ß").sub(TKey::new("Ａwide").value("µ", 4, &[1, 0, 0, 0])))
        .sub(TKey::new("ss1"))
        .sub(TKey::new("SS3"))
        .sub(TKey::new("ß2"))
        .sub(TKey::new("Deep").sub(TKey::new("er").sub(TKey::new("est"))))
}

/// xorshift64*: fixed-seed, reproducible.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The corpus folder, or None (with a skip line) when `IMGPREP_HIVE_CORPUS` is unset.
pub fn corpus(test: &str) -> Option<std::path::PathBuf> {
    match std::env::var_os("IMGPREP_HIVE_CORPUS") {
        Some(p) if !p.is_empty() => Some(std::path::PathBuf::from(p)),
        _ => {
            eprintln!("skipped: {test}: IMGPREP_HIVE_CORPUS is not set");
            None
        }
    }
}

/// Whether interop tests (running external tools) are enabled.
pub fn interop(test: &str) -> bool {
    if std::env::var("IMGPREP_INTEROP").as_deref() == Ok("1") {
        true
    } else {
        eprintln!("skipped: {test}: IMGPREP_INTEROP is not 1");
        false
    }
}

/// Every `*.hive` file of the corpus, sorted.
pub fn corpus_hives(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("corpus folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "hive"))
        .collect();
    v.sort();
    v
}

/// A full walk (every key, every value decoded); returns (keys, values) or the first error.
pub fn walk(hive: &hivetool::Hive<'_>) -> hivetool::Result<(u64, u64)> {
    let mut stack = vec![(hive.root()?, 0usize)];
    let (mut keys, mut values) = (0u64, 0u64);
    let mut seen = std::collections::HashSet::new();
    while let Some((k, depth)) = stack.pop() {
        if !seen.insert(k.offset()) || depth > hivetool::hive::MAX_DEPTH {
            return Err(hivetool::Error::Corrupt {
                offset: k.offset(),
                reason: "cycle or too deep".into(),
            });
        }
        keys += 1;
        let _ = k.name();
        let _ = k.class_name();
        for v in k.values()? {
            let v = v?;
            let _ = v.name();
            let _ = v.decoded();
            let _ = v.data_lossy();
            values += 1;
        }
        for s in k.subkeys()? {
            stack.push((s?, depth + 1));
        }
    }
    Ok((keys, values))
}
