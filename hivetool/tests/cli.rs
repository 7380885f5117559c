// SPDX-License-Identifier: MIT OR Apache-2.0
//! The `hivetool` binary: every reading command, exit codes, JSON output, golden exports.
//! Tier 1: hives are built by the test (tests/support).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{build, sample_tree, sz, TKey};

fn hivetool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hivetool"))
        .args(args)
        .output()
        .expect("run hivetool")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

fn small() -> TKey {
    TKey::new("ROOT")
        .value("", 1, &sz("root default"))
        .sub(
            TKey::new("b")
                .value("z", 4, &7u32.to_le_bytes())
                .value("a\"q\\", 3, &[1, 2, 0xff])
                .value("", 1, &sz("x")),
        )
        .sub(TKey::new("A").sub(TKey::new("Inner")))
}

#[test]
fn info_clean_and_dirty() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = build(&sample_tree(false), 5);
    let p = write(dir.path(), "h", &data);
    let o = hivetool(&["info", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    let s = stdout(&o);
    assert!(s.contains("version:         1.5"), "{s}");
    assert!(s.contains("state:           clean"), "{s}");
    let o = hivetool(&["info", "--json", p.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["dirty"], false);
    assert_eq!(v["version"], "1.5");
    assert_eq!(v["root_name"], "ROOT");
    // Dirty: sequence numbers differ; reading still works, check says so.
    data[8] = 9;
    hivetool::base::fix_checksum(&mut data[..4096]);
    let p = write(dir.path(), "dirty", &data);
    let s = stdout(&hivetool(&["info", p.to_str().unwrap()]));
    assert!(s.contains("DIRTY (sequence numbers differ"), "{s}");
    assert!(s.contains("sequence:        1 / 9"), "{s}");
    let o = hivetool(&["ls", p.to_str().unwrap(), "Deep"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "er\\\n");
    let o = hivetool(&["check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("dirty: sequence numbers differ (1 / 9)"));
}

#[test]
fn ls_and_get() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "h", &build(&sample_tree(false), 5));
    let f = p.to_str().unwrap();
    let s = stdout(&hivetool(&["ls", f]));
    let lines: Vec<&str> = s.lines().collect();
    // Windows order: ä upper-cases to U+00C4, which sorts before ß (U+00DF, unchanged).
    assert_eq!(
        lines,
        [
            "Classy\\",
            "Deep\\",
            "Many\\",
            "ss1\\",
            "SS3\\",
            "Values\\",
            "äöü ß\\",
            "ß2\\"
        ]
    );
    let o = hivetool(&["ls", "--json", f, "values"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["name"], "Values");
    assert_eq!(v["values"].as_array().unwrap().len(), 11);
    assert_eq!(v["values"][4]["type"], "REG_DWORD");
    assert_eq!(
        stdout(&hivetool(&["get", f, "Values", "dword"])),
        "305419896 (0x12345678)\n"
    );
    assert_eq!(stdout(&hivetool(&["get", f, "Values", "@"])), "default\n");
    assert_eq!(
        stdout(&hivetool(&["get", f, "Values", "multi"])),
        "one\ntwo\n"
    );
    let o = hivetool(&["get", "--json", f, "Values", "sz"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["data"], "a \"quoted\" \\ path");
    assert_eq!(v["type"], "REG_SZ");
    let o = hivetool(&["get", "--json", f, "Values"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 11);
    assert_eq!(v[3]["data"], "010203040506070809");
    assert_eq!(v[7]["data"], 0x1122_3344_5566_7788u64);
    let s = stdout(&hivetool(&["get", f, "äöü ß\\ａWIDE"]));
    assert_eq!(s, "µ (REG_DWORD): 1 (0x00000001)\n");
    // Errors: exit 2, message on stderr.
    let o = hivetool(&["get", f, "Values", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).starts_with("hivetool: value \"nope\" not found"));
    let o = hivetool(&["ls", f, "No\\Such"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn export_regedit_golden() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "h", &build(&small(), 5));
    let f = p.to_str().unwrap();
    let o = hivetool(&["export", f]);
    assert_eq!(o.status.code(), Some(0));
    let want = "Windows Registry Editor Version 5.00\n\n\
        [\\]\n@=\"root default\"\n\n\
        [\\A]\n\n\
        [\\A\\Inner]\n\n\
        [\\b]\n\"z\"=dword:00000007\n\"a\\\"q\\\\\"=hex:01,02,ff\n@=\"x\"\n\n";
    assert_eq!(stdout(&o), want);
    let o = hivetool(&["export", "--prefix", "HKEY_LOCAL_MACHINE\\SOFT\\", f, "A"]);
    assert_eq!(
        stdout(&o),
        "Windows Registry Editor Version 5.00\n\n\
         [HKEY_LOCAL_MACHINE\\SOFT\\A]\n\n[HKEY_LOCAL_MACHINE\\SOFT\\A\\Inner]\n\n"
    );
    // UTF-16LE + BOM + CRLF into a file.
    let out = dir.path().join("x.reg");
    let o = hivetool(&["export", "--utf16", "-o", out.to_str().unwrap(), f, "a"]);
    assert_eq!(o.status.code(), Some(0));
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..2], &[0xFF, 0xFE]);
    let units: Vec<u16> = bytes[2..]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let text = String::from_utf16(&units).unwrap();
    assert!(
        text.starts_with("Windows Registry Editor Version 5.00\r\n\r\n[\\A]\r\n"),
        "{text:?}"
    );
}

#[test]
fn export_hivex_golden() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "h", &build(&small(), 5));
    let f = p.to_str().unwrap();
    let o = hivetool(&["export", "--hivex", f]);
    // hivexregedit: values and keys sorted by code point ("A" < "b"; "" < "a..." < "z"),
    // everything hex(N) except 4-byte dwords.
    let want = "Windows Registry Editor Version 5.00\n\n\
        [\\]\n@=hex(1):72,00,6f,00,6f,00,74,00,20,00,64,00,65,00,66,00,61,00,75,00,6c,00,74,00,00,00\n\n\
        [\\A]\n\n\
        [\\A\\Inner]\n\n\
        [\\b]\n@=hex(1):78,00,00,00\n\"a\\\"q\\\\\"=hex(3):01,02,ff\n\"z\"=dword:00000007\n\n";
    assert_eq!(stdout(&o), want);
    let o = hivetool(&["export", "--hivex", "--prefix", "HKLM\\X", f]);
    assert!(stdout(&o).contains("\n[HKLM\\X\\]\n"));
    assert!(stdout(&o).contains("\n[HKLM\\X\\A\\Inner]\n"));
    // Latin-1 names come out as Latin-1 bytes, wider ones as UTF-8 (Perl's print).
    let p = write(
        dir.path(),
        "n",
        &build(&TKey::new("r").sub(TKey::new("ä").sub(TKey::new("€"))), 5),
    );
    let o = hivetool(&["export", "--hivex", p.to_str().unwrap()]);
    let mut want = b"Windows Registry Editor Version 5.00\n\n[\\]\n\n[\\\xe4]\n\n[".to_vec();
    want.extend_from_slice("\\ä\\€]\n\n".as_bytes());
    assert_eq!(o.stdout, want);
}

#[test]
fn check_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let good = build(&sample_tree(true), 5);
    let p = write(dir.path(), "good", &good);
    let o = hivetool(&["check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains(": 0 problem(s); 162 keys, 13 values (1 big data)"));
    let o = hivetool(&["check", "--json", p.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["problem_count"], 0);
    assert_eq!(v["summary"]["keys"], 162);
    assert!(v["summary"]["free_bytes"].as_u64().is_some());
    // Break the sk reference count.
    let mut bad = good.clone();
    bad[4096 + 32 + 4 + 12] ^= 0x40;
    let p = write(dir.path(), "bad", &bad);
    let o = hivetool(&["check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).starts_with("0x00000020 security: reference count"),
        "{}",
        stdout(&o)
    );
    let o = hivetool(&["check", "--json", p.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["problems"][0]["kind"], "security");
    assert_eq!(v["problems"][0]["offset"], 32);
    // Not a hive / missing file: exit 2.
    let p = write(dir.path(), "junk", b"not a hive at all");
    let o = hivetool(&["check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("opening") && e.contains("base block"), "{e}");
    let o = hivetool(&["info", dir.path().join("missing").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("reading"));
    // Usage errors are clap's (exit 2).
    assert_eq!(hivetool(&["frobnicate"]).status.code(), Some(2));
}

/// Export (regedit format) → import into a new hive with the crate's editor → export again:
/// the two exports are identical, and the imported hive checks clean.
fn round_trip(data: &[u8], minor: u32, prefix: Option<&str>) {
    use hivetool::export::{export, ExportOptions};
    let opts = ExportOptions {
        prefix: prefix.map(String::from),
        ..Default::default()
    };
    let h = hivetool::Hive::open(data).unwrap();
    let mut first = Vec::new();
    export(&h, "", &opts, &mut first).unwrap();
    let mut ed = hivetool::edit::Editor::new_empty(minor).unwrap();
    let iopts = hivetool::regfile::ImportOptions {
        prefix: prefix.map(String::from),
    };
    hivetool::regfile::import(&mut ed, &first, &iopts).unwrap();
    let h2 = ed.hive().unwrap();
    // The uncommitted image has no final checksum yet: everything else must be clean.
    let r = hivetool::check::check(&h2);
    let problems: Vec<_> = r
        .problems
        .iter()
        .filter(|p| p.kind != hivetool::check::ProblemKind::Dirty)
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
    let mut second = Vec::new();
    export(&h2, "", &opts, &mut second).unwrap();
    assert!(first == second, "round trip changed the export");
}

#[test]
fn export_import_round_trip() {
    for minor in [3, 5] {
        let data = build(&sample_tree(minor >= 4), minor);
        round_trip(&data, minor, None);
        round_trip(&data, minor, Some("HKEY_LOCAL_MACHINE\\TEST"));
    }
}

#[test]
fn export_import_round_trip_corpus() {
    let Some(dir) = support::corpus("export_import_round_trip_corpus") else {
        return;
    };
    for (name, minor) in [
        ("regipy-NTUSER.DAT.hive", 3),
        ("nt-hive-testhive-offreg.hive", 5),
    ] {
        let data = std::fs::read(dir.join(name)).unwrap();
        round_trip(&data, minor, Some("HKEY_USERS\\S-1-5-21"));
    }
}
