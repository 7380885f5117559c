// SPDX-License-Identifier: MIT OR Apache-2.0
//! Tier-1 tests of the hive editor: self-made hives, fixed-seed random edit sequences checked
//! against a model, `hivetool::check`, fixed-size behaviour and exact changed ranges.

use std::collections::BTreeMap;
use std::ops::Range;

use hivetool::edit::{new_hive, Editor, Growth};
use hivetool::hive::{encode_sz, reg_type, ListKind, SubkeyList};
use hivetool::upcase::{cmp_units, lh_hash_units, upcase_unit};
use hivetool::{Error, Hive};

const CLOCK: u64 = 0x01DB_0000_0000_0000;

/// xorshift64* with a fixed seed: reproducible "random" edits.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn check_clean(data: &[u8]) {
    let hive = Hive::open(data).expect("open");
    let report = hivetool::check::check(&hive);
    assert!(report.is_clean(), "check found problems: {report:#?}");
}

/// Byte differences between two images as merged ranges (longer tail = one range).
fn diff_ranges(a: &[u8], b: &[u8]) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    let n = a.len().min(b.len());
    let mut i = 0;
    while i < n {
        if a[i] == b[i] {
            i += 1;
            continue;
        }
        let s = i;
        while i < n && a[i] != b[i] {
            i += 1;
        }
        out.push(s..i);
    }
    if b.len() > a.len() {
        match out.last_mut() {
            Some(l) if l.end == a.len() => l.end = b.len(),
            _ => out.push(a.len()..b.len()),
        }
    }
    out
}

fn upkey(s: &str) -> Vec<u16> {
    s.encode_utf16().map(upcase_unit).collect()
}

/// Model: key path (upcased components) → values (upcased name → (name, type, data)).
type Model = BTreeMap<Vec<Vec<u16>>, BTreeMap<Vec<u16>, (u32, Vec<u8>)>>;

const NAMES: &[&str] = &[
    "a",
    "B",
    "c1",
    "ControlSet001",
    "ä",
    "Ä2",
    "Ａx",
    "ａy",
    "𐐐",
    "ß2",
    "SS3",
    "ss1",
    "Zz",
    "[x]",
    "_u",
    "µ",
    "ı",
    "Linkage",
    "FilterList",
    "Start",
];

fn model_has_prefix(model: &Model, path: &[Vec<u16>]) -> bool {
    model.contains_key(path)
}

/// Compares the whole hive with the model.
fn compare(data: &[u8], model: &Model) {
    let hive = Hive::open(data).unwrap();
    let mut seen = 0usize;
    let mut stack = vec![(hive.root().unwrap(), Vec::<Vec<u16>>::new())];
    while let Some((k, path)) = stack.pop() {
        seen += 1;
        let vals = model
            .get(&path)
            .unwrap_or_else(|| panic!("key {path:?} not in the model"));
        let mut got = BTreeMap::new();
        for v in k.values().unwrap() {
            let v = v.unwrap();
            let name: Vec<u16> = v.raw_name().units().map(upcase_unit).collect();
            got.insert(name, (v.data_type(), v.data().unwrap().into_owned()));
        }
        assert_eq!(&got, vals, "values of {path:?}");
        for c in k.subkeys().unwrap() {
            let c = c.unwrap();
            let mut p = path.clone();
            p.push(c.raw_name().units().map(upcase_unit).collect());
            stack.push((c, p));
        }
    }
    assert_eq!(seen, model.len(), "key count");
}

fn path_str(parts: &[&str]) -> String {
    parts.join("\\")
}

fn random_data(rng: &mut Rng) -> (u32, Vec<u8>) {
    let len = match rng.below(10) {
        0 => rng.below(5),
        1..=5 => 5 + rng.below(200),
        6 | 7 => 200 + rng.below(3000),
        8 => 16340 + rng.below(10),
        _ => 16345 + rng.below(40000),
    };
    let ty = [reg_type::BINARY, reg_type::SZ, reg_type::DWORD, 0x1234_5678][rng.below(4)];
    let fill = rng.next() as u8;
    (ty, (0..len).map(|i| fill.wrapping_add(i as u8)).collect())
}

/// Applies one random edit to the editor and the model. Returns false if it failed with
/// NoSpace (then nothing may have changed).
fn random_edit(ed: &mut Editor, model: &mut Model, rng: &mut Rng) -> Result<(), Error> {
    let keys: Vec<Vec<Vec<u16>>> = model.keys().cloned().collect();
    let pick_existing = |rng: &mut Rng| keys[rng.below(keys.len())].clone();
    let to_str = |p: &[Vec<u16>]| -> String {
        p.iter()
            .map(|u| String::from_utf16(u).unwrap())
            .collect::<Vec<_>>()
            .join("\\")
    };
    match rng.below(10) {
        0..=2 => {
            let depth = 1 + rng.below(3);
            let parts: Vec<&str> = (0..depth).map(|_| NAMES[rng.below(NAMES.len())]).collect();
            ed.create_key(&path_str(&parts))?;
            let mut p = Vec::new();
            for part in parts {
                p.push(upkey(part));
                model.entry(p.clone()).or_default();
            }
        }
        3 => {
            let p = pick_existing(rng);
            if p.is_empty() {
                return Ok(());
            }
            assert!(ed.delete_key(&to_str(&p))?);
            model.retain(|k, _| !(k.len() >= p.len() && k[..p.len()] == p[..]));
        }
        4..=7 => {
            let p = pick_existing(rng);
            let name = if rng.below(8) == 0 {
                ""
            } else {
                NAMES[rng.below(NAMES.len())]
            };
            let (ty, data) = random_data(rng);
            ed.set_value(&to_str(&p), name, ty, &data)?;
            model.get_mut(&p).unwrap().insert(upkey(name), (ty, data));
        }
        _ => {
            let p = pick_existing(rng);
            let vals = &model[&p];
            if vals.is_empty() {
                return Ok(());
            }
            let name = vals.keys().nth(rng.below(vals.len())).unwrap().clone();
            let s = String::from_utf16(&name).unwrap();
            assert!(ed.delete_value(&to_str(&p), &s)?);
            model.get_mut(&p).unwrap().remove(&name);
        }
    }
    assert!(model_has_prefix(model, &[]));
    Ok(())
}

fn empty_model() -> Model {
    let mut m = Model::new();
    m.insert(Vec::new(), BTreeMap::new());
    m
}

#[test]
fn random_edits_growable_stay_clean_and_match_model() {
    for (seed, minor) in [(1u64, 5u32), (2, 3), (3, 4), (4, 6)] {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
        let mut ed = Editor::new_empty(minor).unwrap();
        ed.set_clock(Some(CLOCK));
        let mut model = empty_model();
        for step in 0..400 {
            random_edit(&mut ed, &mut model, &mut rng).unwrap();
            if step % 50 == 49 {
                let p = ed.pending();
                check_clean(&p.data);
                compare(&p.data, &model);
            }
        }
        let orig = new_hive(minor, CLOCK).unwrap();
        let c = ed.commit(0).unwrap();
        check_clean(&c.data);
        compare(&c.data, &model);
        assert!(c.grew);
        // Not the same original (new_empty used another timestamp), so only check the tail.
        assert!(c.data.len() >= orig.len());
    }
}

#[test]
fn changed_ranges_are_exact_and_reopen_round_trips() {
    let mut rng = Rng(77);
    let mut ed = Editor::new_empty(5).unwrap();
    ed.set_clock(Some(CLOCK));
    let mut model = empty_model();
    for _ in 0..300 {
        random_edit(&mut ed, &mut model, &mut rng).unwrap();
    }
    let base = ed.commit(0).unwrap().data;
    // Edit the committed image again in both modes; `changed` must equal the byte diff.
    for growth in [Growth::Growable, Growth::Fixed] {
        for round in 0..20u64 {
            let mut rng = Rng(1000 + round);
            let mut m = model.clone();
            let mut ed = Editor::open(base.clone(), growth).unwrap();
            ed.set_clock(Some(CLOCK + 1));
            for _ in 0..1 + rng.below(8) {
                match random_edit(&mut ed, &mut m, &mut rng) {
                    Ok(()) => {}
                    Err(Error::NoSpace { .. }) if growth == Growth::Fixed => {}
                    Err(e) => panic!("{e}"),
                }
            }
            let c = ed.commit(0).unwrap();
            assert_eq!(c.changed, diff_ranges(&base, &c.data), "round {round}");
            assert_eq!(c.grew, c.data.len() > base.len());
            if growth == Growth::Fixed {
                assert_eq!(c.data.len(), base.len());
            }
            check_clean(&c.data);
            compare(&c.data, &m);
        }
    }
}

#[test]
fn fixed_size_fails_precisely_and_atomically() {
    let mut ed = Editor::open(new_hive(5, CLOCK).unwrap(), Growth::Fixed).unwrap();
    ed.set_clock(Some(CLOCK));
    let len = ed.bytes().len();
    // Fill the single bin with small values until it is full.
    ed.create_key("K").unwrap();
    let mut i = 0;
    let err = loop {
        let before = ed.bytes().to_vec();
        match ed.set_value(
            "K",
            &format!("v{i}"),
            reg_type::BINARY,
            &[1, 2, 3, 4, 5, 6, 7, 8],
        ) {
            Ok(()) => i += 1,
            Err(e) => {
                assert_eq!(ed.bytes(), &before[..], "failed edit changed the image");
                break e;
            }
        }
        assert!(i < 1000);
    };
    assert!(matches!(err, Error::NoSpace { missing: 4096 }), "{err}");
    assert!(i > 10);
    // A 20,000-byte value needs a 20 KiB bin for one segment... more than the missing page.
    match ed.set_value("K", "big", reg_type::BINARY, &vec![7u8; 20_000]) {
        Err(Error::NoSpace { missing }) => assert!(missing >= 2 * 16384, "{missing}"),
        other => panic!("{other:?}"),
    }
    // Deleting frees space, then the edit fits again.
    assert!(ed.delete_value("K", "v0").unwrap());
    ed.set_value("K", "v-new", reg_type::BINARY, &[9; 8])
        .unwrap();
    let c = ed.commit(0).unwrap();
    assert_eq!(c.data.len(), len);
    assert!(!c.grew);
    check_clean(&c.data);
}

#[test]
fn fixed_size_uses_slack_after_the_last_bin() {
    let mut img = new_hive(5, CLOCK).unwrap();
    img.resize(img.len() + 3 * 4096, 0xAA); // slack (garbage)
    let mut ed = Editor::open(img.clone(), Growth::Fixed).unwrap();
    ed.set_clock(Some(CLOCK));
    ed.create_key("K").unwrap();
    ed.set_value("K", "a", reg_type::BINARY, &vec![1u8; 6000])
        .unwrap(); // needs 2 pages
    assert!(matches!(
        ed.set_value("K", "b", reg_type::BINARY, &vec![1u8; 6000]),
        Err(Error::NoSpace { missing: 4096 })
    ));
    let c = ed.commit(0).unwrap();
    assert_eq!(c.data.len(), img.len());
    check_clean(&c.data);
    assert_eq!(
        Hive::open(&c.data).unwrap().base_block().hbins_size,
        3 * 4096
    );
}

#[test]
fn dirty_hive_is_refused() {
    let mut img = new_hive(5, CLOCK).unwrap();
    img[4] = 7; // seq1 = 7, seq2 = 1
    hivetool::base::fix_checksum(&mut img[..512]);
    match Editor::open(img.clone(), Growth::Fixed) {
        Err(Error::Dirty {
            seq1: 7,
            seq2: 1,
            checksum_ok: true,
        }) => {}
        other => panic!("{other:?}"),
    }
    let ed = Editor::open_recovered(img, Growth::Fixed).unwrap();
    let c = ed.commit(0).unwrap();
    let b = Hive::open(&c.data).unwrap().base_block();
    assert_eq!((b.seq1, b.seq2), (8, 8));
    assert!(b.checksum_ok);
}

#[test]
fn sequence_rule() {
    let ed = Editor::open(new_hive(5, CLOCK).unwrap(), Growth::Fixed).unwrap();
    assert_eq!(ed.commit(0).unwrap().sequence, 2);
    let ed = Editor::open(new_hive(5, CLOCK).unwrap(), Growth::Fixed).unwrap();
    // Logs had seq up to 2130: the caller passes 2131.
    let c = ed.commit(2131).unwrap();
    assert_eq!(c.sequence, 2131);
    let b = Hive::open(&c.data).unwrap().base_block();
    assert_eq!((b.seq1, b.seq2), (2131, 2131));
}

#[test]
fn big_data_boundary() {
    let mut ed = Editor::new_empty(5).unwrap();
    ed.create_key("B").unwrap();
    for (name, len) in [("a", 16343usize), ("b", 16344), ("c", 16345), ("d", 81725)] {
        ed.set_value("B", name, reg_type::BINARY, &vec![0x5A; len])
            .unwrap();
    }
    let c = ed.commit(0).unwrap();
    check_clean(&c.data);
    let hive = Hive::open(&c.data).unwrap();
    let k = hive.key("B").unwrap().unwrap();
    let st = |n: &str| k.value(n).unwrap().unwrap().storage();
    assert!(matches!(st("a"), hivetool::Storage::Cell(_)));
    assert!(matches!(st("b"), hivetool::Storage::Cell(_)));
    let hivetool::Storage::BigData(db) = st("c") else {
        panic!()
    };
    let dbc = hive.cell(db).unwrap();
    assert_eq!(&dbc[0..4], b"db\x02\x00");
    let list = hive
        .cell(u32::from_le_bytes(dbc[4..8].try_into().unwrap()))
        .unwrap();
    for i in 0..2 {
        let seg = u32::from_le_bytes(list[i * 4..i * 4 + 4].try_into().unwrap());
        assert_eq!(hive.cell(seg).unwrap().len() + 4, 16352, "segment {i}");
    }
    assert_eq!(k.value("d").unwrap().unwrap().data().unwrap().len(), 81725);
    // 1.3 hive: one cell, no db.
    let mut ed = Editor::new_empty(3).unwrap();
    ed.create_key("B").unwrap();
    ed.set_value("B", "c", reg_type::BINARY, &vec![1; 16345])
        .unwrap();
    let c = ed.commit(0).unwrap();
    check_clean(&c.data);
    let hive = Hive::open(&c.data).unwrap();
    let v = hive.key("B").unwrap().unwrap().value("c").unwrap().unwrap();
    assert!(matches!(v.storage(), hivetool::Storage::Cell(_)));
}

#[test]
fn in_place_data_reuse_keeps_changes_small() {
    let mut ed = Editor::new_empty(5).unwrap();
    ed.create_key("S").unwrap();
    ed.set_value(
        "S",
        "FilterList",
        reg_type::MULTI_SZ,
        &hivetool::hive::encode_multi_sz(&[
            "{B70D6460-3635-4D42-B866-B8AB1A24454C}-{B5F4D659-7DAA-4565-8E41-BE220ED60542}-0000",
            "{B70D6460-3635-4D42-B866-B8AB1A24454C}-{AAAAAAAA-7DAA-4565-8E41-BE220ED60542}-0000",
        ]),
    )
    .unwrap();
    ed.set_value("S", "Start", reg_type::DWORD, &3u32.to_le_bytes())
        .unwrap();
    let base = ed.commit(0).unwrap().data;
    let mut ed = Editor::open(base.clone(), Growth::Fixed).unwrap();
    ed.set_clock(Some(CLOCK));
    let before = ed
        .hive()
        .unwrap()
        .key("S")
        .unwrap()
        .unwrap()
        .value("FilterList")
        .unwrap()
        .unwrap()
        .data_offset();
    ed.set_value(
        "S",
        "FilterList",
        reg_type::MULTI_SZ,
        &hivetool::hive::encode_multi_sz(&[
            "{B70D6460-3635-4D42-B866-B8AB1A24454C}-{AAAAAAAA-7DAA-4565-8E41-BE220ED60542}-0000",
        ]),
    )
    .unwrap();
    let after = ed
        .hive()
        .unwrap()
        .key("S")
        .unwrap()
        .unwrap()
        .value("FilterList")
        .unwrap()
        .unwrap()
        .data_offset();
    assert_eq!(before, after, "data cell reused in place");
    ed.set_value("S", "Start", reg_type::DWORD, &0u32.to_le_bytes())
        .unwrap();
    // Setting the same data again is a no-op.
    ed.set_value("S", "Start", reg_type::DWORD, &0u32.to_le_bytes())
        .unwrap();
    let c = ed.commit(0).unwrap();
    check_clean(&c.data);
    assert_eq!(c.changed, diff_ranges(&base, &c.data));
    assert!(
        c.changed_bytes() < 400,
        "{} bytes changed",
        c.changed_bytes()
    );
}

#[test]
fn many_subkeys_split_into_ri_and_delete_back() {
    for minor in [3u32, 5] {
        let mut ed = Editor::new_empty(minor).unwrap();
        ed.create_key("P").unwrap();
        let n = 1500;
        // Insert in a scrambled order.
        for i in 0..n {
            let j = (i * 7919) % n;
            ed.create_key(&format!("P\\key{j:05}")).unwrap();
        }
        let c = ed.commit(0).unwrap();
        check_clean(&c.data);
        let hive = Hive::open(&c.data).unwrap();
        let p = hive.key("P").unwrap().unwrap();
        assert_eq!(p.subkey_count(), n as u32);
        let top = SubkeyList::parse(&hive, p.subkey_list_offset()).unwrap();
        assert_eq!(top.kind, ListKind::Ri);
        let names: Vec<String> = p.subkeys().unwrap().map(|k| k.unwrap().name()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        // Leaf kind follows the version.
        let (leaf, _) = top.get(0).unwrap();
        let kind = SubkeyList::parse(&hive, leaf).unwrap().kind;
        assert_eq!(
            kind,
            if minor >= 5 {
                ListKind::Lh
            } else {
                ListKind::Lf
            }
        );
        let mut ed = Editor::open(c.data, Growth::Fixed).unwrap();
        for i in 0..n {
            assert!(ed.delete_key(&format!("P\\KEY{i:05}")).unwrap());
        }
        let c = ed.commit(0).unwrap();
        check_clean(&c.data);
        let hive = Hive::open(&c.data).unwrap();
        let p = hive.key("P").unwrap().unwrap();
        assert_eq!(p.subkey_count(), 0);
        assert_eq!(p.subkey_list_offset(), u32::MAX);
    }
}

#[test]
fn windows_order_and_hashes_for_non_ascii_names() {
    let names = ["ß2", "SS3", "ss1", "äöü", "Ａ", "𐐐", "µ", "ı", "ſ", "Z"];
    let mut ed = Editor::new_empty(5).unwrap();
    for n in names {
        ed.create_key(n).unwrap();
    }
    let c = ed.commit(0).unwrap();
    check_clean(&c.data);
    let hive = Hive::open(&c.data).unwrap();
    let root = hive.root().unwrap();
    let list = SubkeyList::parse(&hive, root.subkey_list_offset()).unwrap();
    assert_eq!(list.kind, ListKind::Lh);
    let mut prev: Option<Vec<u16>> = None;
    for i in 0..list.len() {
        let (off, h) = list.get(i).unwrap();
        let k = hive.key_at(off).unwrap();
        let u: Vec<u16> = k.raw_name().units().collect();
        assert_eq!(h, Some(lh_hash_units(u.iter().copied())));
        if let Some(p) = &prev {
            assert_eq!(cmp_units(p, &u), std::cmp::Ordering::Less);
        }
        // COMP_NAME exactly when every unit <= 0xFF.
        let comp = k.flags() & 0x20 != 0;
        assert_eq!(comp, u.iter().all(|&c| c <= 0xFF), "{}", k.name());
        prev = Some(u);
    }
    let order: Vec<String> = root.subkeys().unwrap().map(|k| k.unwrap().name()).collect();
    let p = |s: &str| order.iter().position(|x| x == s).unwrap();
    assert!(p("ss1") < p("SS3") && p("SS3") < p("ß2"));
    assert!(
        p("𐐐") < p("Ａ"),
        "surrogates (D801) sort before U+FF21: {order:?}"
    );
}

#[test]
fn sk_refcounts_follow_keys() {
    let mut ed = Editor::new_empty(5).unwrap();
    ed.create_key("A\\B\\C").unwrap();
    ed.create_key("A\\D").unwrap();
    let sk = ed.hive().unwrap().root().unwrap().security_offset();
    let refs = |ed: &Editor| {
        let h = ed.hive().unwrap();
        u32::from_le_bytes(h.cell(sk).unwrap()[12..16].try_into().unwrap())
    };
    assert_eq!(refs(&ed), 5);
    ed.delete_key("a\\b").unwrap();
    assert_eq!(refs(&ed), 3);
    assert!(matches!(ed.delete_key(""), Err(Error::Invalid(_))));
    assert!(!ed.delete_key("nope").unwrap());
    let c = ed.commit(0).unwrap();
    check_clean(&c.data);
}

#[test]
fn new_hive_is_clean_and_windows_shaped() {
    for minor in 3..=6 {
        let img = new_hive(minor, CLOCK).unwrap();
        assert_eq!(img.len(), 8192);
        check_clean(&img);
        let hive = Hive::open(&img).unwrap();
        let root = hive.root().unwrap();
        assert_eq!(root.flags(), 0x2C);
        assert_eq!(hive.minor_version(), minor);
    }
    assert!(new_hive(2, CLOCK).is_err());
}

#[test]
fn values_on_missing_keys_and_bad_names() {
    let mut ed = Editor::new_empty(5).unwrap();
    assert!(matches!(
        ed.set_value("missing", "x", 1, &encode_sz("y")),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        ed.create_key(&"x".repeat(256)),
        Err(Error::Invalid(_))
    ));
    assert!(!ed.delete_value("", "none").unwrap());
    ed.set_value("", "", reg_type::SZ, &encode_sz("default"))
        .unwrap();
    assert_eq!(ed.get_value("", "").unwrap().unwrap().0, reg_type::SZ);
    let c = ed.commit(0).unwrap();
    check_clean(&c.data);
}
