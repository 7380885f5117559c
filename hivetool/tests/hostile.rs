// SPDX-License-Identifier: MIT OR Apache-2.0
//! Hostile input: crafted corruptions (each must be reported by `check`, and never make open,
//! walk, check or export panic or loop) and thousands of fixed-seed random mutations of
//! self-made hives (tier 1) and of the corpus (tier 2, `IMGPREP_HIVE_CORPUS`).

mod support;

use hivetool::check::{check, ProblemKind};
use hivetool::export::{export, ExportOptions, Format};
use hivetool::Hive;
use support::{build, corpus, corpus_hives, sample_tree, walk, Rng, TKey};

/// Offset (relative to the bins) of the key at `path`.
fn key_off(data: &[u8], path: &str) -> u32 {
    Hive::open(data)
        .unwrap()
        .key(path)
        .unwrap()
        .unwrap()
        .offset()
}

/// File position of field `field` of the cell at bins offset `cell`.
fn at(cell: u32, field: usize) -> usize {
    4096 + cell as usize + 4 + field
}

fn put32(d: &mut [u8], pos: usize, x: u32) {
    d[pos..pos + 4].copy_from_slice(&x.to_le_bytes());
}

fn get32(d: &[u8], pos: usize) -> u32 {
    u32::from_le_bytes(d[pos..pos + 4].try_into().unwrap())
}

/// Runs everything a user can run on a hive; must never panic.
fn exercise(data: &[u8]) {
    let _ = Hive::open(data).map(|h| h.root());
    if let Ok(h) = Hive::open_unchecked(data) {
        let _ = walk(&h);
        let r = check(&h);
        assert!(r.problems.len() as u64 <= r.problem_count);
        for format in [Format::Regedit, Format::Hivex] {
            let opts = ExportOptions {
                format,
                ..Default::default()
            };
            let _ = export(&h, "", &opts, std::io::sink());
        }
        let _ = h.key("Values\\sz");
    }
}

fn kinds(data: &[u8]) -> Vec<ProblemKind> {
    let h = Hive::open_unchecked(data).unwrap();
    exercise(data);
    check(&h).problems.iter().map(|p| p.kind).collect()
}

#[test]
fn self_made_hives_check_clean() {
    for minor in [3, 4, 5, 6] {
        let data = build(&sample_tree(minor >= 4), minor);
        let h = Hive::open(&data).unwrap();
        let r = check(&h);
        assert!(r.is_clean(), "1.{minor}: {:?}", r.problems);
        assert_eq!(r.summary.keys, 162);
        assert_eq!(r.summary.values, 12 + u64::from(minor >= 4));
        assert_eq!(r.summary.big_data_values, u64::from(minor >= 4));
        assert_eq!(r.summary.security_cells, 1);
        assert_eq!(r.summary.unreachable_cells, 0);
        assert_eq!(walk(&h).unwrap(), (162, 12 + u64::from(minor >= 4)));
        assert!(r.summary.free_bytes > 0 || r.summary.free_cells == 0);
    }
}

#[test]
fn key_listing_an_ancestor_is_a_cycle() {
    let mut d = build(&sample_tree(false), 5);
    let deep = key_off(&d, "Deep");
    let er = key_off(&d, "Deep\\er");
    // er's only subkey ("est") now points back to "Deep".
    let list = get32(&d, at(er, 28));
    put32(&mut d, at(list, 4), deep);
    let k = kinds(&d);
    assert!(k.contains(&ProblemKind::Shared), "{k:?}");
    let h = Hive::open(&d).unwrap();
    assert!(walk(&h).is_err());
    assert!(export(&h, "", &ExportOptions::default(), std::io::sink()).is_err());
}

#[test]
fn key_listing_itself() {
    let mut d = build(&sample_tree(false), 5);
    let est = key_off(&d, "Deep\\er\\est");
    // Make "est" claim one subkey whose list is er's list (which lists est).
    let er = key_off(&d, "Deep\\er");
    let list = get32(&d, at(er, 28));
    put32(&mut d, at(est, 20), 1);
    put32(&mut d, at(est, 28), list);
    let k = kinds(&d);
    assert!(k.contains(&ProblemKind::Shared), "{k:?}");
}

#[test]
fn index_root_pointing_to_index_root() {
    let mut d = build(&sample_tree(false), 5);
    let many = key_off(&d, "Many");
    let ri = get32(&d, at(many, 28));
    assert_eq!(&d[at(ri, 0)..at(ri, 2)], b"ri");
    // The ri's first leaf becomes the ri itself, and a second ri is made from the first leaf.
    put32(&mut d, at(ri, 4), ri);
    let k = kinds(&d);
    assert!(!k.is_empty());
    let mut d = build(&sample_tree(false), 5);
    let ri = get32(&d, at(key_off(&d, "Many"), 28));
    let leaf = get32(&d, at(ri, 4));
    d[at(leaf, 0)..at(leaf, 2)].copy_from_slice(b"ri");
    let k = kinds(&d);
    assert!(k.contains(&ProblemKind::List), "{k:?}");
}

#[test]
fn huge_counts() {
    let mut d = build(&sample_tree(false), 5);
    let v = key_off(&d, "Values");
    put32(&mut d, at(v, 20), u32::MAX);
    put32(&mut d, at(v, 36), u32::MAX);
    let root = key_off(&d, "");
    put32(&mut d, at(root, 20), 0x7FFF_FFFF);
    let k = kinds(&d);
    assert!(
        k.iter().filter(|&&x| x == ProblemKind::Count).count() >= 2,
        "{k:?}"
    );
}

#[test]
fn wrong_order_hash_and_duplicates() {
    let d0 = build(&sample_tree(false), 5);
    let root = key_off(&d0, "");
    let list = get32(&d0, at(root, 28));
    // Swap the first two entries (offset + hash together): order only.
    let mut d = d0.clone();
    let (a, b) = (at(list, 4), at(list, 12));
    let ea: Vec<u8> = d[a..a + 8].to_vec();
    let eb: Vec<u8> = d[b..b + 8].to_vec();
    d[a..a + 8].copy_from_slice(&eb);
    d[b..b + 8].copy_from_slice(&ea);
    assert_eq!(kinds(&d), [ProblemKind::Order]);
    // Wrong hash.
    let mut d = d0.clone();
    d[at(list, 8)] ^= 1;
    assert_eq!(kinds(&d), [ProblemKind::Hash]);
    // Duplicate: "ss1" renamed "SS3" (same length), hash fixed up.
    let mut d = build(
        &TKey::new("r").sub(TKey::new("ss1")).sub(TKey::new("SS3")),
        5,
    );
    let k = key_off(&d, "ss1");
    d[at(k, 76)..at(k, 79)].copy_from_slice(b"ss3");
    let root = key_off(&d, "");
    let list = get32(&d, at(root, 28));
    put32(&mut d, at(list, 8), hivetool::upcase::lh_hash("ss3"));
    assert_eq!(kinds(&d), [ProblemKind::Duplicate]);
    // lf hints in a 1.3 hive.
    let mut d = build(&TKey::new("r").sub(TKey::new("abc")), 3);
    let list = get32(&d, at(key_off(&d, ""), 28));
    assert_eq!(&d[at(list, 8)..at(list, 12)], b"abc\0");
    d[at(list, 8)] = b'x';
    assert_eq!(kinds(&d), [ProblemKind::Hash]);
}

#[test]
fn lh_in_a_1_3_hive_and_big_data_rules() {
    // lh lists need 1.5.
    let mut d = build(&TKey::new("r").sub(TKey::new("a")), 5);
    d[24..28].copy_from_slice(&3u32.to_le_bytes());
    hivetool::base::fix_checksum(&mut d[..4096]);
    assert_eq!(kinds(&d), [ProblemKind::List]);
    // A 20,000-byte value in one cell is fine in 1.3 but must be big data in 1.5 (hivex's bug).
    let mut d = build(&TKey::new("r").value("v", 3, &[7; 20_000]), 3);
    assert!(kinds(&d).is_empty());
    d[24..28].copy_from_slice(&5u32.to_le_bytes());
    hivetool::base::fix_checksum(&mut d[..4096]);
    assert_eq!(kinds(&d), [ProblemKind::BigData]);
    // Wrong segment count.
    let mut d = build(&TKey::new("r").value("v", 3, &[7; 40_000]), 5);
    let h = Hive::open(&d).unwrap();
    let v = h.root().unwrap().value("v").unwrap().unwrap();
    let db = v.data_offset();
    d[at(db, 2)] = 2;
    let k = kinds(&d);
    assert!(k.contains(&ProblemKind::BigData), "{k:?}");
}

#[test]
fn security_parent_largest_fields_and_bins() {
    let d0 = build(&sample_tree(false), 5);
    // sk reference count.
    let mut d = d0.clone();
    put32(&mut d, at(32, 12), 5);
    assert_eq!(kinds(&d), [ProblemKind::Security]);
    // Broken Flink.
    let mut d = d0.clone();
    put32(&mut d, at(32, 4), 0x1234_5678);
    assert!(kinds(&d).contains(&ProblemKind::Security));
    // Parent offset.
    let mut d = d0.clone();
    let k = key_off(&d, "Deep\\er");
    put32(&mut d, at(k, 16), 32);
    assert_eq!(kinds(&d), [ProblemKind::Key]);
    // Largest subkey name (low 16 bits only count).
    let mut d = d0.clone();
    let k = key_off(&d, "Deep");
    put32(&mut d, at(k, 52), 0x00F0_0002);
    assert_eq!(kinds(&d), [ProblemKind::LargestField]);
    put32(&mut d, at(k, 52), 0x00F0_0004);
    assert!(kinds(&d).is_empty());
    // Largest value data.
    let mut d = d0.clone();
    let k = key_off(&d, "Values");
    put32(&mut d, at(k, 64), 1);
    assert_eq!(kinds(&d), [ProblemKind::LargestField]);
    // hbin offset field.
    let mut d = d0.clone();
    put32(&mut d, 4096 + 4, 4096);
    assert_eq!(kinds(&d), [ProblemKind::Bin]);
    // A cell size that crosses the end of the bin.
    let mut d = d0.clone();
    let bin = get32(&d, 4096 + 8) as usize;
    let last = {
        let mut c = 32usize;
        let mut last = c;
        while c < bin {
            last = c;
            c += (get32(&d, 4096 + c) as i32).unsigned_abs() as usize;
        }
        last
    };
    let sz = get32(&d, 4096 + last) as i32;
    let grown = if sz < 0 { sz - 8 } else { sz + 8 };
    put32(&mut d, 4096 + last, grown as u32);
    assert!(kinds(&d).contains(&ProblemKind::Cell));
    // Dirty.
    let mut d = d0.clone();
    put32(&mut d, 8, 7);
    hivetool::base::fix_checksum(&mut d[..4096]);
    assert_eq!(kinds(&d), [ProblemKind::Dirty]);
}

/// Starts of all cells (allocated or free) of a well-formed hive.
fn cell_starts(d: &[u8]) -> Vec<u32> {
    let h = Hive::open_unchecked(d).unwrap();
    let bins = h.bins();
    let mut v = Vec::new();
    let mut bin = 0usize;
    while bin + 32 <= bins.len() && &bins[bin..bin + 4] == b"hbin" {
        let size = get32(bins, bin + 8) as usize;
        if size == 0 {
            break;
        }
        let mut c = bin + 32;
        while c + 4 <= bin + size && c + 4 <= bins.len() {
            v.push(c as u32);
            let len = (get32(bins, c) as i32).unsigned_abs() as usize;
            if len == 0 {
                break;
            }
            c += len;
        }
        bin += size;
    }
    v
}

/// Mutates `seed` `n` times (1–4 edits each: byte flips, random u32s, NIL, 0, offsets of other
/// cells, mostly inside the first 80 bytes of a cell) and exercises every result.
fn mutate_many(seed: &[u8], n: usize, rng: &mut Rng) {
    let cells = cell_starts(seed);
    assert!(!cells.is_empty());
    let mut d = seed.to_vec();
    for _ in 0..n {
        d.copy_from_slice(seed);
        for _ in 0..1 + rng.below(4) {
            let pos = if rng.below(10) == 0 {
                rng.below(d.len() - 4)
            } else {
                let c = cells[rng.below(cells.len())] as usize;
                (4096 + c + rng.below(84)).min(d.len() - 4)
            };
            match rng.below(6) {
                0 => d[pos] ^= 1 << rng.below(8),
                1 => d[pos] = rng.next() as u8,
                2 => put32(&mut d, pos & !3, rng.next() as u32),
                3 => put32(&mut d, pos & !3, u32::MAX),
                4 => put32(&mut d, pos & !3, cells[rng.below(cells.len())]),
                _ => put32(&mut d, pos & !3, (rng.next() % 0x1_0000) as u32),
            }
        }
        exercise(&d);
    }
}

#[test]
fn random_mutations_of_self_made_hives() {
    let mut rng = Rng(0x5EED_0001);
    for minor in [3, 5] {
        let d = build(&sample_tree(false), minor);
        mutate_many(&d, 800, &mut rng);
    }
    let small = build(
        &TKey::new("r")
            .sub(TKey::new("a").value("x", 1, &support::sz("hello")))
            .sub(TKey::new("b").value("y", 3, &[1; 20_000])),
        5,
    );
    mutate_many(&small, 800, &mut rng);
}

#[test]
fn random_mutations_of_corpus_hives() {
    let Some(dir) = corpus("random_mutations_of_corpus_hives") else {
        return;
    };
    let mut rng = Rng(0x5EED_0002);
    for p in corpus_hives(&dir) {
        let d = std::fs::read(&p).unwrap();
        if d.len() > 1 << 20 || Hive::open_unchecked(&d).is_err() {
            continue;
        }
        // Bounded time in debug builds: fewer rounds for hives with many cells.
        let rounds = (300_000 / cell_starts(&d).len().max(1)).clamp(20, 300);
        mutate_many(&d, rounds, &mut rng);
    }
}

#[test]
fn truncated_and_tiny_inputs() {
    let d = build(&sample_tree(false), 5);
    for len in [0, 1, 511, 512, 4095, 4096, 4097, 4200, 8191, d.len() - 1] {
        exercise(&d[..len.min(d.len())]);
    }
    // Header claiming a huge hive-bins size.
    let mut d2 = d.clone();
    put32(&mut d2, 40, 0xFFFF_F000);
    hivetool::base::fix_checksum(&mut d2[..4096]);
    exercise(&d2);
}

#[test]
fn tree_deeper_than_512() {
    let mut k = TKey::new("leaf");
    for i in 0..520 {
        k = TKey::new(&format!("d{i}")).sub(k);
    }
    let d = build(&TKey::new("r").sub(k), 5);
    let h = Hive::open(&d).unwrap();
    let r = check(&h);
    assert_eq!(r.count(ProblemKind::Depth), 1, "{:?}", r.problems);
    assert_eq!(r.problem_count, 1, "{:?}", r.problems);
    let e = export(&h, "", &ExportOptions::default(), std::io::sink()).unwrap_err();
    assert!(e.to_string().contains("deeper than 512"), "{e}");
}

#[test]
fn shared_value_list_and_data_cells() {
    let tree = TKey::new("r")
        .sub(TKey::new("a").value("x", 3, &[1; 64]))
        .sub(TKey::new("b").value("y", 3, &[2; 64]));
    let d0 = build(&tree, 5);
    let (a, b) = (key_off(&d0, "a"), key_off(&d0, "b"));
    // b uses a's value list.
    let mut d = d0.clone();
    let list = get32(&d, at(a, 40));
    put32(&mut d, at(b, 40), list);
    assert!(kinds(&d).contains(&ProblemKind::Shared));
    let h = Hive::open(&d).unwrap();
    let e = export(&h, "", &ExportOptions::default(), std::io::sink()).unwrap_err();
    assert!(e.to_string().contains("value list reached twice"), "{e}");
    // y's data cell is x's.
    let mut d = d0.clone();
    let h = Hive::open(&d0).unwrap();
    let x = h.key("a").unwrap().unwrap().value("x").unwrap().unwrap();
    let y = h.key("b").unwrap().unwrap().value("y").unwrap().unwrap();
    put32(&mut d, at(y.offset(), 8), x.data_offset());
    assert!(kinds(&d).contains(&ProblemKind::Shared));
    let h = Hive::open(&d).unwrap();
    let e = export(&h, "", &ExportOptions::default(), std::io::sink()).unwrap_err();
    assert!(e.to_string().contains("value data reached twice"), "{e}");
}
