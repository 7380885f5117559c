// SPDX-License-Identifier: MIT OR Apache-2.0
//! Tier-1 tests of `.reg` parsing and import, incl. export → import → export round trips.

use hivetool::edit::{Editor, Growth};
use hivetool::export::{export, ExportOptions, Format};
use hivetool::hive::{encode_multi_sz, encode_sz, reg_type};
use hivetool::regfile::{self, parse, parse_str, strip_root, ImportOptions, RegOp, RegVersion};
use hivetool::{Error, Hive};

fn check_clean(data: &[u8]) {
    let hive = Hive::open(data).expect("open");
    let report = hivetool::check::check(&hive);
    assert!(report.is_clean(), "check found problems: {report:#?}");
}

fn export_text(data: &[u8], format: Format, prefix: Option<&str>) -> Vec<u8> {
    let hive = Hive::open(data).unwrap();
    let mut out = Vec::new();
    let opts = ExportOptions {
        format,
        prefix: prefix.map(str::to_string),
        utf16: false,
    };
    export(&hive, "", &opts, &mut out).unwrap();
    out
}

/// A hive with a bit of everything: types, odd strings, non-ASCII names, big data, many keys.
fn sample_hive(minor: u32) -> Vec<u8> {
    let mut ed = Editor::new_empty(minor).unwrap();
    ed.set_clock(Some(1));
    ed.create_key("ControlSet001\\Services\\Tcpip\\Parameters")
        .unwrap();
    let k = "ControlSet001\\Services\\Tcpip";
    ed.set_value(k, "Start", reg_type::DWORD, &3u32.to_le_bytes())
        .unwrap();
    ed.set_value(
        k,
        "ImagePath",
        reg_type::EXPAND_SZ,
        &encode_sz("\\SystemRoot\\x.sys"),
    )
    .unwrap();
    ed.set_value(
        k,
        "Quote\"and\\slash",
        reg_type::SZ,
        &encode_sz("a \"b\" \\c\\"),
    )
    .unwrap();
    ed.set_value(k, "", reg_type::SZ, &encode_sz("default"))
        .unwrap();
    ed.set_value(
        k,
        "Multi",
        reg_type::MULTI_SZ,
        &encode_multi_sz(&["x", "ä", "𐐐"]),
    )
    .unwrap();
    ed.set_value(k, "Bin", reg_type::BINARY, &(0..=255u8).collect::<Vec<_>>())
        .unwrap();
    ed.set_value(k, "Q", reg_type::QWORD, &u64::MAX.to_le_bytes())
        .unwrap();
    ed.set_value(k, "Odd", 0x1234_5678, &[1, 2, 3]).unwrap();
    ed.set_value(k, "Empty", reg_type::BINARY, &[]).unwrap();
    ed.set_value(k, "EmptySz", reg_type::SZ, &[]).unwrap();
    ed.set_value(k, "SzNoNul", reg_type::SZ, b"a\0b\0").unwrap();
    ed.set_value(k, "Dword3", reg_type::DWORD, &[1, 2, 3])
        .unwrap();
    ed.set_value(k, "Big", reg_type::BINARY, &vec![0xA5; 40_000])
        .unwrap();
    for n in ["ß2", "SS3", "ss1", "äöü", "Ａ", "𐐐", "µ"] {
        ed.create_key(&format!("Names\\{n}")).unwrap();
        ed.set_value(&format!("Names\\{n}"), n, reg_type::SZ, &encode_sz(n))
            .unwrap();
    }
    for i in 0..600 {
        ed.create_key(&format!("Many\\k{i:04}")).unwrap();
    }
    ed.commit(0).unwrap().data
}

#[test]
fn round_trip_regedit_and_hivex_formats() {
    for minor in [3u32, 5] {
        let src = sample_hive(minor);
        check_clean(&src);
        for (format, prefix) in [
            (Format::Regedit, None),
            (Format::Regedit, Some("HKEY_LOCAL_MACHINE\\SYSTEM")),
            (Format::Hivex, None),
            (Format::Hivex, Some("HKEY_LOCAL_MACHINE\\SYSTEM")),
        ] {
            let text = export_text(&src, format, prefix);
            let mut ed = Editor::new_empty(minor).unwrap();
            let opts = ImportOptions {
                prefix: prefix.map(str::to_string),
            };
            regfile::import(&mut ed, &text, &opts).unwrap();
            let out = ed.commit(0).unwrap().data;
            check_clean(&out);
            // The content survives, not only the text (a Latin-1 misreading of UTF-8 names
            // would give the same hivex-format text): compare keys and values.
            assert!(
                content(&src) == content(&out),
                "{format:?} {prefix:?}: content differs"
            );
            let again = export_text(&out, format, prefix);
            assert!(
                text == again,
                "{format:?} {prefix:?}: exports differ:\n{}",
                first_diff(&text, &again)
            );
        }
    }
}

/// Every key path and every (key path, value name, type, data), order-independent.
fn content(data: &[u8]) -> std::collections::BTreeSet<(String, String, u32, Vec<u8>)> {
    let hive = Hive::open(data).unwrap();
    let mut out = std::collections::BTreeSet::new();
    let mut stack = vec![(hive.root().unwrap(), String::new())];
    while let Some((k, path)) = stack.pop() {
        out.insert((path.clone(), String::from("<key>"), 0, Vec::new()));
        for v in k.values().unwrap() {
            let v = v.unwrap();
            out.insert((
                path.clone(),
                v.name(),
                v.data_type(),
                v.data().unwrap().into_owned(),
            ));
        }
        for c in k.subkeys().unwrap() {
            let c = c.unwrap();
            let p = format!("{path}\\{}", c.name());
            stack.push((c, p));
        }
    }
    out
}

fn first_diff(a: &[u8], b: &[u8]) -> String {
    let a = String::from_utf8_lossy(a);
    let b = String::from_utf8_lossy(b);
    for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        if x != y {
            return format!("line {}: {x:?} vs {y:?}", i + 1);
        }
    }
    format!("lengths {} vs {}", a.len(), b.len())
}

#[test]
fn utf16_export_imports_too() {
    let src = sample_hive(5);
    let hive = Hive::open(&src).unwrap();
    let mut text = Vec::new();
    let opts = ExportOptions {
        format: Format::Regedit,
        prefix: Some("HKEY_LOCAL_MACHINE\\SYSTEM".into()),
        utf16: true,
    };
    export(&hive, "", &opts, &mut text).unwrap();
    assert_eq!(&text[..2], &[0xFF, 0xFE]);
    let mut ed = Editor::new_empty(5).unwrap();
    regfile::import(&mut ed, &text, &ImportOptions::default()).unwrap();
    let out = ed.commit(0).unwrap().data;
    assert_eq!(
        export_text(&src, Format::Hivex, None),
        export_text(&out, Format::Hivex, None)
    );
}

#[test]
fn parse_syntax() {
    let text = "Windows Registry Editor Version 5.00\r\n\
        ; comment\r\n\
        \r\n\
        [HKEY_LOCAL_MACHINE\\SYSTEM\\A\\B]\r\n\
        \"s\"=\"x\\\\y \\\"q\\\"\"\r\n\
        @=\"def\"\r\n\
        \"d\" = dword:0000001f\r\n\
        \"h\"=hex:01,02,\\\r\n\
          03,ff\r\n\
        \"e\"=hex(2):41,00,00,00\r\n\
        \"m\"=hex(7):61,00,00,00,00,00\r\n\
        \"n\"=hex(0):\r\n\
        \"q\"=qword:0102030405060708\r\n\
        \"x\"=hex(abcd):00\r\n\
        \"gone\"=-\r\n\
        \r\n\
        [-HKEY_LOCAL_MACHINE\\SYSTEM\\Old]\r\n\
        \"ignored\"=dword:1\r\n";
    let f = parse_str(text).unwrap();
    assert_eq!(f.version, RegVersion::V5);
    let sets: Vec<(String, u32, Vec<u8>)> = f
        .ops
        .iter()
        .filter_map(|o| match o {
            RegOp::SetValue { name, ty, data, .. } => Some((name.clone(), *ty, data.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(sets[0], ("s".into(), 1, encode_sz("x\\y \"q\"")));
    assert_eq!(sets[1], ("".into(), 1, encode_sz("def")));
    assert_eq!(sets[2], ("d".into(), 4, vec![0x1f, 0, 0, 0]));
    assert_eq!(sets[3], ("h".into(), 3, vec![1, 2, 3, 0xff]));
    assert_eq!(sets[4], ("e".into(), 2, vec![0x41, 0, 0, 0]));
    assert_eq!(sets[5].1, 7);
    assert_eq!(sets[6], ("n".into(), 0, vec![]));
    assert_eq!(
        sets[7],
        ("q".into(), 11, 0x0102030405060708u64.to_le_bytes().to_vec())
    );
    assert_eq!(sets[8], ("x".into(), 0xabcd, vec![0]));
    assert_eq!(sets.len(), 9, "value under a deleted key is ignored");
    assert!(f
        .ops
        .iter()
        .any(|o| matches!(o, RegOp::DeleteValue { name, .. } if name == "gone")));
    assert!(f
        .ops
        .iter()
        .any(|o| matches!(o, RegOp::DeleteKey { path, line: 17 } if path.ends_with("Old"))));
}

#[test]
fn regedit4_is_8_bit() {
    let text =
        b"REGEDIT4\n\n[HKEY_LOCAL_MACHINE\\SOFTWARE\\X]\n\"e\"=hex(2):41,42,00\n\"s\"=\"\xe4\"\n";
    let f = parse(text).unwrap();
    assert_eq!(f.version, RegVersion::Regedit4);
    let RegOp::SetValue { data, .. } = &f.ops[1] else {
        panic!()
    };
    assert_eq!(data, &[0x41, 0, 0x42, 0, 0, 0]);
    let RegOp::SetValue { data, .. } = &f.ops[2] else {
        panic!()
    };
    assert_eq!(data, &encode_sz("ä"));
    let RegOp::CreateKey { path, .. } = &f.ops[0] else {
        panic!()
    };
    assert_eq!(strip_root(path, None, 1).unwrap(), "X");
}

#[test]
fn syntax_errors_name_the_line() {
    for (text, line) in [
        ("nonsense\n", 1),
        ("REGEDIT4\n\n\"a\"=dword:1\n", 3),
        ("REGEDIT4\n[K]\n\"a\"=dword:123456789\n", 3),
        ("REGEDIT4\n[K]\n\"a\"=hex:1,zz\n", 3),
        ("REGEDIT4\n[K]\n\"a=\"x\"\n", 3),
        ("REGEDIT4\n[K]\n\"a\"=\"unterminated\n", 3),
        ("REGEDIT4\n[K\n", 2),
        ("REGEDIT4\n[K]\nfoo\n", 3),
        ("REGEDIT4\n[K]\n\"a\"=str:x\n", 3),
    ] {
        match parse_str(text) {
            Err(Error::RegSyntax { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

#[test]
fn root_stripping_rules() {
    let s = |p: &str, pre: Option<&str>| strip_root(p, pre, 1).unwrap();
    assert_eq!(
        s("HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001", None),
        "ControlSet001"
    );
    assert_eq!(s("HKLM\\SYSTEM", None), "");
    assert_eq!(s("HKEY_USERS\\S-1-5-18\\Software", None), "Software");
    assert_eq!(s("HKEY_CURRENT_USER\\Software\\X", None), "Software\\X");
    assert_eq!(s("SYSTEM\\Select", None), "Select");
    assert_eq!(s("\\", None), "");
    assert_eq!(s("\\A\\B", None), "A\\B");
    assert_eq!(
        s(
            "hkey_local_machine\\system\\A",
            Some("HKEY_LOCAL_MACHINE\\SYSTEM")
        ),
        "A"
    );
    assert_eq!(
        s(
            "HKEY_LOCAL_MACHINE\\SYSTEM\\",
            Some("HKEY_LOCAL_MACHINE\\SYSTEM")
        ),
        ""
    );
    assert!(strip_root(
        "HKEY_LOCAL_MACHINE\\SYSTEMX",
        Some("HKEY_LOCAL_MACHINE\\SYSTEM"),
        1
    )
    .is_err());
}

#[test]
fn import_applies_deletes_and_is_usable_in_fixed_mode() {
    let mut ed = Editor::new_empty(5).unwrap();
    let text = "Windows Registry Editor Version 5.00\n\n[R\\A\\B]\n\"v\"=dword:1\n\"w\"=dword:2\n\n[R\\C]\n";
    let st = regfile::import(&mut ed, text.as_bytes(), &ImportOptions::default()).unwrap();
    assert_eq!((st.keys, st.values), (2, 2));
    let base = ed.commit(0).unwrap().data;
    let mut ed = Editor::open(base.clone(), Growth::Fixed).unwrap();
    let text =
        "Windows Registry Editor Version 5.00\n\n[-R\\C]\n\n[R\\A\\B]\n\"v\"=-\n\"x\"=\"new\"\n";
    let st = regfile::import(&mut ed, text.as_bytes(), &ImportOptions::default()).unwrap();
    assert_eq!((st.keys_deleted, st.values_deleted, st.values), (1, 1, 1));
    let c = ed.commit(0).unwrap();
    assert_eq!(c.data.len(), base.len());
    check_clean(&c.data);
    let hive = Hive::open(&c.data).unwrap();
    assert!(hive.key("C").unwrap().is_none());
    let b = hive.key("A\\B").unwrap().unwrap();
    assert!(b.value("v").unwrap().is_none());
    assert_eq!(
        b.value("x").unwrap().unwrap().decoded().unwrap().as_str(),
        Some("new")
    );
    // The root cannot be deleted.
    let mut ed = Editor::new_empty(5).unwrap();
    assert!(regfile::import(&mut ed, b"REGEDIT4\n[-R]\n", &ImportOptions::default()).is_err());
}

/// Fixed-seed mutations of a `.reg` file (byte flips, insertions, truncations): parsing and
/// importing never panic, and whatever was imported commits to a clean hive (what the
/// `reg_import` fuzz target checks, on a fixed corpus).
#[test]
fn mutated_reg_files_never_break_the_hive() {
    let src = sample_hive(5);
    let seed_text = export_text(&src, Format::Regedit, Some("HKEY_LOCAL_MACHINE\\SYSTEM"));
    let mut x: u64 = 0x1234_5678_9ABC_DEF1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let alphabet = b"[]\\\"=-@,:;\r\n hexdword()0123456789abcdefABCDEF\xff\xfe\x00";
    let mut imported = 0;
    for _ in 0..150 {
        let mut t = seed_text.clone();
        for _ in 0..1 + next() % 8 {
            let at = (next() as usize) % t.len().max(1);
            match next() % 4 {
                0 => t[at] = alphabet[(next() as usize) % alphabet.len()],
                1 => t.insert(at, alphabet[(next() as usize) % alphabet.len()]),
                2 => {
                    t.remove(at);
                }
                _ => t.truncate(at.max(40)),
            }
        }
        for growth in [Growth::Growable, Growth::Fixed] {
            let mut ed = Editor::open(hivetool::edit::new_hive(5, 1).unwrap(), growth).unwrap();
            if regfile::import(&mut ed, &t, &ImportOptions::default()).is_ok() {
                imported += 1;
            }
            let c = ed.commit(0).unwrap();
            check_clean(&c.data);
        }
    }
    assert!(imported > 0);
}
