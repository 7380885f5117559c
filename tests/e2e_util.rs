// SPDX-License-Identifier: MIT OR Apache-2.0
//! Helpers of the opt-in end-to-end suites (`interop.rs`, `corpus.rs`): running the built
//! binary and the independent tools (ntfs-3g/ntfsprogs, hivex, sfdisk/sgdisk), parsing
//! `hivexregedit --export` output, comparing two exports with a plan, and building NTFS images
//! (fixtures/make-image.sh, plus a fragmenting writer through an ntfs-3g FUSE mount).
//!
//! Everything here runs external programs: only the tier-2 tests call it, after their
//! `IMGPREP_INTEROP` / `IMGPREP_HIVE_CORPUS` gate.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_imgprep");
/// Fixed clock for reproducible writes (timestamps in the hive).
pub const EPOCH: &str = "1700000000";
/// The WFP lightweight filter.
pub const WFP_LWF: &str = "B70D6460-3635-4D42-B866-B8AB1A24454C";
/// The SYSTEM hive inside the Windows partition.
pub const SYSTEM_PATH: &str = "Windows/System32/config/SYSTEM";

/// True when the interop tier is enabled; otherwise prints the skip line.
pub fn interop(test: &str) -> bool {
    if std::env::var("IMGPREP_INTEROP").is_ok_and(|v| v == "1") {
        true
    } else {
        eprintln!("skipped: {test}: set IMGPREP_INTEROP=1 to run the interop tests");
        false
    }
}

/// The corpus folder when the corpus tier is enabled (it also needs the interop tools, as it
/// builds NTFS images); otherwise prints the skip line.
pub fn corpus(test: &str) -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("IMGPREP_HIVE_CORPUS") else {
        eprintln!("skipped: {test}: set IMGPREP_HIVE_CORPUS to the real-hive folder");
        return None;
    };
    if !interop(test) {
        return None;
    }
    Some(PathBuf::from(dir))
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A finished process.
#[derive(Debug)]
pub struct Run {
    /// Exit status (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error (lossy).
    pub stderr: String,
}

impl Run {
    /// Stdout as text (lossy).
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    /// Stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.out(), self.stderr))
    }
}

/// Runs a program to completion.
pub fn run(prog: &str, args: &[&str]) -> Run {
    let o = Command::new(prog)
        .args(args)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"));
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: o.stdout,
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Runs a program and requires exit status 0.
pub fn run_ok(prog: &str, args: &[&str]) -> Run {
    let r = run(prog, args);
    assert_eq!(
        r.code,
        0,
        "{prog} {args:?} failed\nstdout: {}\nstderr: {}",
        r.out(),
        r.stderr
    );
    r
}

/// Runs the binary under test (with SOURCE_DATE_EPOCH set).
pub fn imgprep(args: &[&str]) -> Run {
    run(BIN, args)
}

/// `p` as &str (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// SHA-256 of a file, hex.
pub fn sha256_file(p: &Path) -> String {
    let mut f = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of bytes, hex.
pub fn sha256(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where the sample images live (`IMGPREP_SAMPLE_DIR` overrides, to try regenerated ones).
pub fn sample_dir() -> PathBuf {
    std::env::var_os("IMGPREP_SAMPLE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("fixtures/sample"))
}

/// Gunzips `fixtures/sample/NAME.img.gz` into `dir/NAME.img`.
pub fn sample(name: &str, dir: &Path) -> PathBuf {
    let gz = sample_dir().join(format!("{name}.img.gz"));
    let out = dir.join(format!("{name}.img"));
    let r = run_ok("gzip", &["-dc", s(&gz)]);
    std::fs::write(&out, r.stdout).expect("write sample");
    out
}

/// Copies a file (sparse-aware through cp).
pub fn copy(src: &Path, dst: &Path) {
    run_ok("cp", &["--sparse=always", s(src), s(dst)]);
}

/// A partition, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// 1-based index as sfdisk numbers it.
    pub index: usize,
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The partitions of a disk image, from `sfdisk --json`.
pub fn partitions(img: &Path) -> Vec<Part> {
    let r = run_ok("sfdisk", &["--json", s(img)]);
    let v = r.json();
    let t = &v["partitiontable"];
    let ss = t["sectorsize"].as_u64().unwrap_or(512);
    t["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .enumerate()
        .map(|(i, p)| Part {
            index: i + 1,
            start: p["start"].as_u64().expect("start") * ss,
            len: p["size"].as_u64().expect("size") * ss,
        })
        .collect()
}

/// Reads `len` bytes at `start` of a file.
pub fn read_at(path: &Path, start: u64, len: u64) -> Vec<u8> {
    let mut f = std::fs::File::open(path).expect("open");
    f.seek(SeekFrom::Start(start)).expect("seek");
    let mut v = Vec::new();
    f.take(len).read_to_end(&mut v).expect("read");
    v
}

/// Writes `data` at `off` of a file (no truncation).
pub fn write_at(path: &Path, off: u64, data: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open rw");
    f.seek(SeekFrom::Start(off)).expect("seek");
    f.write_all(data).expect("write");
}

/// Copies a partition of `img` into its own file `out` (for ntfsprogs).
pub fn extract(img: &Path, p: Part, out: &Path) {
    std::fs::write(out, read_at(img, p.start, p.len)).expect("write partition file");
}

/// `ntfscat PART PATH`, or None when it fails.
pub fn ntfscat(part: &Path, path: &str) -> Option<Vec<u8>> {
    let r = run("ntfscat", &[s(part), path]);
    (r.code == 0).then_some(r.stdout)
}

/// The partition holding Windows (the one where `ntfscat` finds the SYSTEM hive), extracted
/// to `dir/NAME`, with the hive's bytes.
pub fn windows_partition(img: &Path, dir: &Path, name: &str) -> (Part, PathBuf, Vec<u8>) {
    let out = dir.join(name);
    for p in partitions(img) {
        extract(img, p, &out);
        if let Some(h) = ntfscat(&out, SYSTEM_PATH) {
            return (p, out, h);
        }
    }
    panic!("{}: no partition with {SYSTEM_PATH}", img.display());
}

/// The SYSTEM hive of an image, read by ntfscat.
pub fn system_hive(img: &Path, dir: &Path) -> Vec<u8> {
    windows_partition(img, dir, "hive-read.part").2
}

/// `hivexregedit --export HIVE '\'` of hive bytes.
pub fn hivex_export(hive: &[u8], dir: &Path) -> String {
    let f = dir.join("hivex-export.hive");
    std::fs::write(&f, hive).expect("write hive");
    let r = run_ok("hivexregedit", &["--export", s(&f), "\\"]);
    r.out()
}

/// Parsed .reg export: key path (as hivex prints it, e.g. `\ControlSet001\Services`) → value
/// name (`@` = default) → the text after `=`.
pub type Reg = BTreeMap<String, BTreeMap<String, String>>;

/// Parses a hivexregedit export (one line per value).
pub fn parse_reg(text: &str) -> Reg {
    let mut reg = Reg::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        if let Some(k) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            reg.entry(k.to_string()).or_default();
            cur = Some(k.to_string());
        } else if line.starts_with('"') || line.starts_with("@=") {
            let (name, data) = split_value_line(line);
            let k = cur.clone().expect("value before any key");
            let prev = reg.entry(k.clone()).or_default().insert(name.clone(), data);
            assert!(prev.is_none(), "duplicate value {k} {name}");
        }
    }
    reg
}

fn split_value_line(line: &str) -> (String, String) {
    if let Some(rest) = line.strip_prefix("@=") {
        return ("@".into(), rest.into());
    }
    // "name"=data, with \" and \\ escapes in the name.
    let mut name = String::new();
    let mut chars = line[1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, n)) = chars.next() {
                    name.push(n);
                }
            }
            '"' => {
                let rest = &line[1 + i + 1..];
                let data = rest.strip_prefix('=').expect("= after value name");
                return (name, data.into());
            }
            _ => name.push(c),
        }
    }
    panic!("bad value line {line}");
}

/// One difference between two exports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Diff {
    /// A key only in the second export.
    KeyAdded(String),
    /// A key only in the first export.
    KeyRemoved(String),
    /// A value added (key, name, data).
    ValueAdded(String, String, String),
    /// A value removed (key, name, old data).
    ValueRemoved(String, String, String),
    /// A value changed (key, name, old, new).
    ValueChanged(String, String, String, String),
}

/// The differences from `a` to `b`. Values of added/removed keys are not listed separately.
pub fn diff_reg(a: &Reg, b: &Reg) -> Vec<Diff> {
    let mut d = Vec::new();
    for (k, av) in a {
        match b.get(k) {
            None => d.push(Diff::KeyRemoved(k.clone())),
            Some(bv) => {
                for (n, x) in av {
                    match bv.get(n) {
                        None => d.push(Diff::ValueRemoved(k.clone(), n.clone(), x.clone())),
                        Some(y) if y != x => d.push(Diff::ValueChanged(
                            k.clone(),
                            n.clone(),
                            x.clone(),
                            y.clone(),
                        )),
                        Some(_) => {}
                    }
                }
                for (n, y) in bv {
                    if !av.contains_key(n) {
                        d.push(Diff::ValueAdded(k.clone(), n.clone(), y.clone()));
                    }
                }
            }
        }
    }
    for k in b.keys() {
        if !a.contains_key(k) {
            d.push(Diff::KeyAdded(k.clone()));
        }
    }
    d.sort();
    d
}

/// Decodes `hex(7):..` (REG_MULTI_SZ) into its strings.
pub fn decode_multi_sz(data: &str) -> Vec<String> {
    let bytes = decode_hex(data.strip_prefix("hex(7):").expect("hex(7)"));
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let mut out = Vec::new();
    for s in units.split(|&u| u == 0) {
        if s.is_empty() {
            break;
        }
        out.push(String::from_utf16_lossy(s));
    }
    out
}

/// Decodes `aa,bb,cc` hex bytes.
pub fn decode_hex(s: &str) -> Vec<u8> {
    if s.is_empty() {
        return Vec::new();
    }
    s.split(',')
        .map(|b| u8::from_str_radix(b.trim(), 16).expect("hex byte"))
        .collect()
}

/// Decodes REG_BINARY data as hivexregedit prints it (`hex(3):..`; regedit's `hex:..` too).
pub fn decode_binary(s: &str) -> Vec<u8> {
    let h = s
        .strip_prefix("hex(3):")
        .or_else(|| s.strip_prefix("hex:"))
        .unwrap_or_else(|| panic!("not REG_BINARY: {s}"));
    decode_hex(h)
}

/// Parses `dword:0000000a`.
pub fn decode_dword(s: &str) -> u32 {
    u32::from_str_radix(s.strip_prefix("dword:").expect("dword"), 16).expect("dword hex")
}

/// The little-endian 16-byte layout of a GUID string (no braces).
pub fn guid_le(g: &str) -> [u8; 16] {
    let h: String = g.chars().filter(|c| *c != '-').collect();
    let b: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).expect("guid"))
        .collect();
    let mut o = [0u8; 16];
    o[0..4].copy_from_slice(&[b[3], b[2], b[1], b[0]]);
    o[4..6].copy_from_slice(&[b[5], b[4]]);
    o[6..8].copy_from_slice(&[b[7], b[6]]);
    o[8..16].copy_from_slice(&b[8..16]);
    o
}

/// One change of a plan (`strip-lwf --dry-run --json`), as the test needs it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PlanChange {
    /// `set_value`, `delete_value` or `delete_key`.
    pub op: String,
    /// Key path from the hive root, with a leading `\` (as hivex prints it).
    pub key: String,
    /// Value name ("" for a key deletion).
    pub name: String,
    /// The plan's shown new value.
    pub new: String,
}

/// The plan of `strip-lwf --dry-run --json IMG EXTRA...`.
pub fn plan_of(img: &Path, extra: &[&str]) -> Vec<PlanChange> {
    let mut args = vec!["strip-lwf", "--dry-run", "--json", s(img)];
    args.extend_from_slice(extra);
    let r = imgprep(&args);
    assert!(
        r.code == 0 || r.code == 1,
        "dry run failed ({}): {}",
        r.code,
        r.stderr
    );
    plan_from_json(&r.json())
}

/// The changes of a strip-lwf JSON report.
pub fn plan_from_json(v: &serde_json::Value) -> Vec<PlanChange> {
    let changes = v["prepared"]["plan"]["changes"]
        .as_array()
        .expect("prepared.plan.changes");
    changes
        .iter()
        .map(|c| PlanChange {
            op: c["op"].as_str().expect("op").into(),
            key: format!("\\{}", c["key"].as_str().expect("key")),
            name: c["name"].as_str().unwrap_or("").into(),
            new: c["new"].as_str().unwrap_or("").into(),
        })
        .collect()
}

/// What the comparison found, for per-sample assertions.
#[derive(Debug, Default)]
pub struct Summary {
    /// FilterList (REG_MULTI_SZ) values edited.
    pub multi_sz_filter_lists: usize,
    /// NetworkSetup2 binary FilterList values edited.
    pub binary_filter_lists: usize,
    /// Start values set to 0.
    pub starts: usize,
    /// BootFlags values added.
    pub boot_flags_added: usize,
    /// BootFlags values changed.
    pub boot_flags_changed: usize,
    /// Keys deleted (with their subtrees: counted once per deleted root).
    pub keys_deleted: Vec<String>,
}

fn under(key: &str, root: &str) -> bool {
    let k = key.to_ascii_lowercase();
    let r = root.to_ascii_lowercase();
    k == r || k.starts_with(&format!("{r}\\"))
}

/// Asserts that `before` → `after` is exactly `plan`: every difference is a planned change and
/// every planned change happened, and each difference is the intended kind of edit (FilterList
/// without the WFP LWF entries, Start = 0, BootFlags bit 0, StartOverride gone, binary
/// FilterList without the 18-byte WFP LWF entries). Returns what it saw.
pub fn assert_diff_is_plan(before: &Reg, after: &Reg, plan: &[PlanChange]) -> Summary {
    let diffs = diff_reg(before, after);
    let mut sum = Summary::default();
    let planned_value = |k: &str, n: &str| {
        plan.iter().find(|c| {
            c.op == "set_value" && c.key.eq_ignore_ascii_case(k) && c.name.eq_ignore_ascii_case(n)
        })
    };
    let deleted_roots: Vec<&PlanChange> = plan.iter().filter(|c| c.op == "delete_key").collect();
    let mut seen_values = BTreeSet::new();
    for d in &diffs {
        let (k, n, old, new) = match d {
            Diff::ValueChanged(k, n, o, nw) => (k, n, Some(o.as_str()), nw.as_str()),
            Diff::ValueAdded(k, n, nw) => (k, n, None, nw.as_str()),
            _ => continue,
        };
        let c =
            planned_value(k, n).unwrap_or_else(|| panic!("unplanned value change {k}\\{n}: {d:?}"));
        seen_values.insert((c.key.to_ascii_lowercase(), c.name.to_ascii_lowercase()));
        check_value_edit(k, n, old, new, c, &mut sum);
    }
    for d in &diffs {
        match d {
            Diff::ValueChanged(..) | Diff::ValueAdded(..) => {}
            Diff::ValueRemoved(k, n, _) => {
                assert!(
                    plan.iter().any(|c| c.op == "delete_value"
                        && c.key.eq_ignore_ascii_case(k)
                        && c.name.eq_ignore_ascii_case(n)),
                    "unplanned value deletion {k}\\{n}"
                );
            }
            Diff::KeyRemoved(k) => {
                assert!(
                    deleted_roots.iter().any(|c| under(k, &c.key)),
                    "unplanned key deletion {k}"
                );
            }
            Diff::KeyAdded(k) => {
                assert!(
                    plan.iter()
                        .any(|c| c.op == "set_value" && under(&c.key, k) && c.key.len() >= k.len()),
                    "unplanned key creation {k}"
                );
            }
        }
    }
    // Every planned change happened.
    for c in plan {
        match c.op.as_str() {
            "set_value" => assert!(
                seen_values.contains(&(c.key.to_ascii_lowercase(), c.name.to_ascii_lowercase())),
                "planned change not in the result: {c:?}"
            ),
            "delete_value" => assert!(
                diffs.iter().any(|d| matches!(d, Diff::ValueRemoved(k, n, _)
                    if k.eq_ignore_ascii_case(&c.key) && n.eq_ignore_ascii_case(&c.name))),
                "planned value deletion not in the result: {c:?}"
            ),
            "delete_key" => {
                assert!(
                    diffs.iter().any(
                        |d| matches!(d, Diff::KeyRemoved(k) if k.eq_ignore_ascii_case(&c.key))
                    ),
                    "planned key deletion not in the result: {c:?}"
                );
                // The whole subtree went.
                for k in before.keys().filter(|k| under(k, &c.key)) {
                    assert!(!after.contains_key(k), "{k} survived deletion of {}", c.key);
                }
                assert!(
                    c.key.to_ascii_lowercase().ends_with("\\startoverride"),
                    "strip-lwf deletes only StartOverride keys, not {}",
                    c.key
                );
                sum.keys_deleted.push(c.key.clone());
            }
            other => panic!("unknown op {other}"),
        }
    }
    sum
}

fn check_value_edit(
    k: &str,
    n: &str,
    old: Option<&str>,
    new: &str,
    c: &PlanChange,
    sum: &mut Summary,
) {
    let lk = k.to_ascii_lowercase();
    match n.to_ascii_lowercase().as_str() {
        "filterlist" if new.starts_with("hex(7):") => {
            let old = decode_multi_sz(old.expect("FilterList existed"));
            let new = decode_multi_sz(new);
            let want: Vec<String> = old
                .iter()
                .filter(|e| !e.to_ascii_uppercase().contains(WFP_LWF))
                .cloned()
                .collect();
            assert!(want.len() < old.len(), "{k}: no WFP LWF entry to remove");
            let extra: Vec<&String> = new
                .iter()
                .filter(|e| e.to_ascii_uppercase().contains(WFP_LWF))
                .collect();
            assert!(extra.is_empty(), "{k}: WFP LWF entry left: {extra:?}");
            assert_eq!(
                new, want,
                "{k}: FilterList must keep the other entries in order"
            );
            // The plan shows the new list as a JSON array of strings.
            if let Ok(shown) = serde_json::from_str::<Vec<String>>(&c.new) {
                assert_eq!(
                    shown, new,
                    "{k}: plan's new FilterList differs from the result"
                );
            }
            assert!(lk.ends_with("\\linkage"), "{k}: FilterList outside Linkage");
            sum.multi_sz_filter_lists += 1;
        }
        "filterlist" => {
            assert!(
                lk.contains("\\control\\networksetup2\\interfaces\\") && lk.ends_with("\\kernel"),
                "{k}: binary FilterList outside NetworkSetup2"
            );
            let old = decode_binary(old.expect("binary FilterList existed"));
            let new = decode_binary(new);
            assert_eq!(
                old.len() % 18,
                0,
                "{k}: old binary FilterList not 18-byte entries"
            );
            let g = guid_le(WFP_LWF);
            let want: Vec<u8> = old
                .chunks_exact(18)
                .filter(|e| e[..16] != g)
                .flatten()
                .copied()
                .collect();
            assert!(
                want.len() < old.len(),
                "{k}: no WFP LWF entry in binary FilterList"
            );
            assert_eq!(
                new, want,
                "{k}: binary FilterList must lose exactly the WFP LWF entries"
            );
            sum.binary_filter_lists += 1;
        }
        "start" => {
            assert!(lk.contains("\\services\\"), "{k}: Start outside Services");
            assert_eq!(decode_dword(new), 0, "{k}: Start must become 0");
            if let Some(o) = old {
                assert_ne!(decode_dword(o), 0);
            }
            sum.starts += 1;
        }
        "bootflags" => {
            assert!(
                lk.contains("\\services\\"),
                "{k}: BootFlags outside Services"
            );
            let nv = decode_dword(new);
            match old {
                None => {
                    assert_eq!(nv, 1, "{k}: new BootFlags must be 1");
                    sum.boot_flags_added += 1;
                }
                Some(o) => {
                    assert_eq!(nv, decode_dword(o) | 1, "{k}: BootFlags |= 1 only");
                    sum.boot_flags_changed += 1;
                }
            }
        }
        other => panic!("{k}: strip-lwf changed an unexpected value {other}"),
    }
}

/// Runs fixtures/make-image.sh with `args` (the output path last).
pub fn make_image(args: &[&str]) {
    let script = repo().join("fixtures/make-image.sh");
    run_ok("bash", &[&[s(&script)], args].concat());
}

/// Offsets (in the image) of 4096-aligned `regf` signatures: the hive files' first cluster.
pub fn find_regf(img: &Path) -> Vec<u64> {
    let data = std::fs::read(img).expect("read image");
    (0..data.len() / 4096)
        .map(|i| i * 4096)
        .filter(|&o| data.get(o..o + 4) == Some(b"regf"))
        .map(|o| o as u64)
        .collect()
}

/// An ntfs-3g FUSE mount of a partition file, unmounted on drop.
pub struct Mount {
    /// The mount point.
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Mount {
    /// Mounts `part` on `dir` (created).
    pub fn new(part: &Path, dir: &Path) -> Mount {
        std::fs::create_dir_all(dir).expect("mkdir mount point");
        let child = Command::new("ntfs-3g")
            .args(["-o", "no_detach,big_writes", s(part), s(dir)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ntfs-3g");
        let m = Mount {
            dir: dir.to_path_buf(),
            child: Some(child),
        };
        let t = Instant::now();
        while run("mountpoint", &["-q", s(dir)]).code != 0 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "ntfs-3g mount failed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    /// Unmounts and waits for ntfs-3g to write everything back.
    pub fn finish(mut self) {
        self.unmount();
    }

    fn unmount(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = run("sync", &[]);
            let r = run("umount", &[s(&self.dir)]);
            if r.code != 0 {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// Writes `data` as `dest` (relative to the mount) in `run_bytes` chunks, each followed by a
/// one-cluster filler file, so that ntfs-3g cannot extend the file's last run: every chunk
/// becomes its own run. The fillers are deleted at the end.
pub fn write_fragmented(mnt: &Path, dest: &str, data: &[u8], run_bytes: usize, cluster: usize) {
    let path = mnt.join(dest);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let fill_dir = mnt.join("fragment-fill");
    std::fs::create_dir_all(&fill_dir).expect("mkdir fill");
    let mut f = std::fs::File::create(&path).expect("create fragmented file");
    let filler = vec![0x46u8; cluster];
    let mut fillers = Vec::new();
    for (i, chunk) in data.chunks(run_bytes.max(1)).enumerate() {
        f.write_all(chunk).expect("append chunk");
        f.sync_all().expect("fsync chunk");
        let fp = fill_dir.join(format!("f{i:05}"));
        let mut g = std::fs::File::create(&fp).expect("create filler");
        g.write_all(&filler).expect("write filler");
        g.sync_all().expect("fsync filler");
        fillers.push(fp);
    }
    drop(f);
    for fp in fillers {
        std::fs::remove_file(fp).expect("remove filler");
    }
    std::fs::remove_dir(&fill_dir).expect("rmdir fill");
}

/// Number of runs `ntfsinfo -v` lists for a file (its $DATA runs, plus one per non-resident
/// attribute list).
pub fn run_count(part: &Path, file: &str) -> usize {
    let r = run_ok("ntfsinfo", &["-v", "-F", file, s(part)]);
    r.out()
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() == 3 && f.iter().all(|x| x.starts_with("0x"))
        })
        .count()
}

/// Builds an MBR disk image with one Windows partition (no System Reserved) of `size_mib`
/// MiB, then writes each `(dest, data, run_bytes)` into it through ntfs-3g; `run_bytes` 0 =
/// written in one go. Returns the Windows partition.
pub fn image_with_files(
    out: &Path,
    size_mib: u32,
    files: &[(&str, &[u8], usize)],
    work: &Path,
) -> Part {
    let size = size_mib.to_string();
    make_image(&[
        "--table",
        "mbr",
        "--size",
        &size,
        "--sysres-size",
        "0",
        s(out),
    ]);
    let p = partitions(out)[0];
    let part = work.join("fill.part");
    extract(out, p, &part);
    let m = Mount::new(&part, &work.join("mnt"));
    for (dest, data, run_bytes) in files {
        if *run_bytes == 0 {
            let path = m.dir.join(dest);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            let mut f = std::fs::File::create(&path).expect("create");
            f.write_all(data).expect("write");
            f.sync_all().expect("fsync");
        } else {
            write_fragmented(&m.dir, dest, data, *run_bytes, 4096);
        }
    }
    m.finish();
    write_at(out, p.start, &std::fs::read(&part).expect("read partition"));
    std::fs::remove_file(&part).expect("rm partition file");
    p
}

/// `ntfsfix -n` on a partition file: must be clean.
pub fn assert_ntfsfix_clean(part: &Path) {
    let r = run("ntfsfix", &["-n", s(part)]);
    assert_eq!(r.code, 0, "ntfsfix -n: {}\n{}", r.out(), r.stderr);
    assert!(
        r.out().contains("processed successfully"),
        "ntfsfix -n: {}",
        r.out()
    );
}

/// Sequence numbers (bytes 4..12) of a hive or log base block.
pub fn seqs(h: &[u8]) -> (u32, u32) {
    let u = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().expect("4 bytes"));
    (u(4), u(8))
}

/// Every sequence number of a transaction log: its base block's two and every HvLE entry's.
pub fn log_seqs(log: &[u8]) -> Vec<u32> {
    let mut v = Vec::new();
    if log.len() < 512 {
        return v;
    }
    let (a, b) = seqs(log);
    v.push(a);
    v.push(b);
    let mut off = 512usize;
    while off + 16 <= log.len() && &log[off..off + 4] == b"HvLE" {
        let size = u32::from_le_bytes(log[off + 4..off + 8].try_into().expect("4")) as usize;
        v.push(u32::from_le_bytes(
            log[off + 12..off + 16].try_into().expect("4"),
        ));
        if size < 512 || !size.is_multiple_of(512) {
            break;
        }
        off += size;
    }
    v
}

/// Problems `hivetool check` finds in a hive (u64::MAX when it does not open).
pub fn hive_problems(bytes: &[u8]) -> u64 {
    match hivetool::Hive::open(bytes) {
        Ok(h) => hivetool::check::check(&h).problem_count,
        Err(_) => u64::MAX,
    }
}

/// The edited hive is structurally no worse than the one it came from (clean stays clean).
pub fn assert_structure_kept(before: &[u8], after: &[u8], what: &str) {
    let (b, a) = (hive_problems(before), hive_problems(after));
    assert!(a != u64::MAX, "{what}: the result does not open");
    assert!(
        a <= b,
        "{what}: hivetool check finds {a} problems, {b} before"
    );
}
