// SPDX-License-Identifier: MIT OR Apache-2.0
//! Interop tier (IMGPREP_INTEROP=1): the built binary against independent tools.
//!
//! * Sample images (fixtures/sample): the SYSTEM hive read by `ntfscat` before and after
//!   `strip-lwf`, both exported by `hivexregedit`: the difference is exactly the plan and each
//!   changed line is the intended edit; `ntfsfix -n` is clean after; `undo` restores the image
//!   byte for byte; `--output` copies (file and stdout) equal the in-place result; GPT copies
//!   pass `sgdisk -v` (keep-size and relocate) and keep `sfdisk -d`'s partitions.
//! * Refusals: real NTFS images built by fixtures/make-image.sh holding the sample hive, each
//!   made unsafe one way: `strip-lwf` (in place and --output) and `check` exit with the
//!   documented status, `check --json` says so, and the image stays byte-identical.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::e2e_util::*;

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("imgprep-interop-")
        .tempdir()
        .expect("tempdir")
}

pub(crate) fn journal_of(img: &Path) -> PathBuf {
    PathBuf::from(format!("{}.imgprep-journal", img.display()))
}

/// Non-header lines of `sfdisk -d` (partition lines without the device name, label, label-id,
/// sector size): what must survive a copy.
fn sfdisk_parts(img: &Path) -> Vec<String> {
    let r = run_ok("sfdisk", &["-d", s(img)]);
    r.out()
        .lines()
        .filter_map(|l| {
            if let Some((_, rest)) = l.split_once(" : ") {
                Some(rest.trim().to_string())
            } else if l.starts_with("label") || l.starts_with("sector-size") {
                Some(l.to_string())
            } else {
                None
            }
        })
        .collect()
}

fn assert_sgdisk_clean(img: &Path) {
    let r = run("sgdisk", &["-v", s(img)]);
    assert_eq!(
        r.code,
        0,
        "sgdisk -v {}: {}{}",
        img.display(),
        r.out(),
        r.stderr
    );
    assert!(
        r.out().contains("No problems found"),
        "sgdisk -v {}: {}",
        img.display(),
        r.out()
    );
}

fn blockers(img: &Path) -> usize {
    let r = imgprep(&["strip-lwf", "--dry-run", "--json", s(img)]);
    r.json()["prepared"]["plan"]["blockers"]
        .as_array()
        .map_or(0, |b| b.len())
}

/// The whole sample flow. Returns the comparison summary.
fn sample_flow(name: &str) -> Summary {
    let t = tmp();
    let dir = t.path();
    let img = sample(name, dir);
    let sha0 = sha256_file(&img);
    let (part, _, hive_before) = windows_partition(&img, dir, "before.part");
    let before = parse_reg(&hivex_export(&hive_before, dir));
    let plan = plan_of(&img, &[]);
    assert!(!plan.is_empty(), "{name}: the sample needs changes");
    let expect_code = if blockers(&img) == 0 { 0 } else { 1 };

    // In place.
    let r = imgprep(&["strip-lwf", s(&img)]);
    assert_eq!(
        r.code,
        expect_code,
        "{name}: strip-lwf: {}{}",
        r.out(),
        r.stderr
    );
    assert!(journal_of(&img).exists(), "{name}: no undo journal");
    let after_part = dir.join("after.part");
    extract(&img, part, &after_part);
    let hive_after = ntfscat(&after_part, SYSTEM_PATH).expect("ntfscat after");
    assert_eq!(
        hive_after.len(),
        hive_before.len(),
        "{name}: hive size changed"
    );
    let (a, b) = seqs(&hive_after);
    assert_eq!(a, b, "{name}: hive left dirty");
    assert!(a > seqs(&hive_before).0, "{name}: sequence not advanced");
    assert_structure_kept(&hive_before, &hive_after, name);
    let after = parse_reg(&hivex_export(&hive_after, dir));
    let sum = assert_diff_is_plan(&before, &after, &plan);
    assert_ntfsfix_clean(&after_part);
    // check agrees: ready, or not-ready only for a blocking filter strip-lwf leaves alone.
    let r = imgprep(&["check", "--json", s(&img)]);
    let v = r.json();
    assert_eq!(r.code, expect_code, "{name}: check after strip-lwf: {v}");
    assert_eq!(
        v["verdict"],
        if expect_code == 0 {
            "ready"
        } else {
            "not-ready"
        },
        "{v}"
    );
    assert!(
        v["reasons"]
            .as_array()
            .expect("reasons")
            .iter()
            .all(|r| r["kind"] == "blocking-filter"),
        "{name}: check after strip-lwf: {v}"
    );
    // Already prepared now: a second dry run plans nothing.
    assert!(
        plan_of(&img, &[]).is_empty(),
        "{name}: plan not empty after strip-lwf"
    );
    let in_place = dir.join("in-place.img");
    copy(&img, &in_place);

    // Undo: byte-identical.
    let r = imgprep(&["undo", s(&img)]);
    assert_eq!(r.code, 0, "{name}: undo: {}", r.stderr);
    assert_eq!(
        sha256_file(&img),
        sha0,
        "{name}: undo is not byte-identical"
    );
    assert!(
        !journal_of(&img).exists(),
        "{name}: journal left after undo"
    );

    // --output to a file and to stdout: the in-place result, image untouched.
    let range = imgprep(&["range", "--format", "json", s(&img)]).json();
    let out_len = range["plan"]["output_len"].as_u64().expect("output_len");
    let out = dir.join("out.img");
    let r = imgprep(&["strip-lwf", s(&img), "--output", s(&out)]);
    assert_eq!(r.code, expect_code, "{name}: --output: {}", r.stderr);
    assert_eq!(
        sha256_file(&img),
        sha0,
        "{name}: --output modified the image"
    );
    assert!(
        !journal_of(&img).exists(),
        "{name}: --output wrote a journal"
    );
    let out_bytes = std::fs::read(&out).expect("read out");
    assert_eq!(out_bytes.len() as u64, out_len, "{name}: output length");
    let ip = read_at(&in_place, 0, out_len);
    assert!(
        out_bytes == ip,
        "{name}: --output differs from strip-lwf in place over the copy range"
    );
    let r = imgprep(&["strip-lwf", s(&img), "--output", "-"]);
    assert_eq!(r.code, expect_code, "{name}: --output -: {}", r.stderr);
    assert!(
        r.stdout == out_bytes,
        "{name}: --output - differs from --output FILE"
    );
    assert_eq!(sfdisk_parts(&out), sfdisk_parts(&img), "{name}: partitions");
    // `export --prepare` is the same stream.
    let ex = dir.join("export.img");
    let r = imgprep(&["export", s(&img), "--prepare", "-o", s(&ex)]);
    // (like strip-lwf, export exits 1 while a blocking filter remains.)
    let want = if blockers(&img) == 0 { 0 } else { 1 };
    assert_eq!(r.code, want, "{name}: export --prepare: {}", r.stderr);
    assert!(
        std::fs::read(&ex).expect("read export") == out_bytes,
        "{name}: export --prepare differs from strip-lwf --output"
    );
    assert_eq!(sha256_file(&img), sha0, "{name}: export modified the image");

    if range["range"]["scheme"] == "gpt" {
        assert_sgdisk_clean(&out);
        let rel = dir.join("relocated.img");
        let r = imgprep(&[
            "strip-lwf",
            s(&img),
            "--gpt-fix",
            "relocate",
            "--output",
            s(&rel),
        ]);
        assert_eq!(r.code, expect_code, "{name}: relocate: {}", r.stderr);
        assert_sgdisk_clean(&rel);
        let strip_ends = |v: Vec<String>| -> Vec<String> {
            v.into_iter()
                .filter(|l| !l.starts_with("last-lba"))
                .collect()
        };
        assert_eq!(
            strip_ends(sfdisk_parts(&rel)),
            strip_ends(sfdisk_parts(&img)),
            "{name}: relocate changed the partitions"
        );
        // The partitions' bytes are the in-place result.
        let end = range["range"]["end_bytes"].as_u64().expect("end_bytes");
        let first = partitions(&img)
            .iter()
            .map(|p| p.start)
            .min()
            .expect("a partition");
        assert!(
            read_at(&rel, first, end - first) == read_at(&in_place, first, end - first),
            "{name}: relocated copy's partitions differ from the in-place result"
        );
        assert_eq!(sha256_file(&img), sha0);
    }
    sum
}

#[test]
fn interop_sample_win7_mbr() {
    if !interop("interop_sample_win7_mbr") {
        return;
    }
    let s = sample_flow("win7-mbr");
    assert!(
        s.multi_sz_filter_lists >= 1 && s.starts >= 1 && s.boot_flags_added >= 1,
        "{s:?}"
    );
    assert_eq!(s.binary_filter_lists, 0, "Windows 7 has no NetworkSetup2");
}

#[test]
fn interop_sample_win7_gpt() {
    if !interop("interop_sample_win7_gpt") {
        return;
    }
    let s = sample_flow("win7-gpt");
    assert!(
        s.multi_sz_filter_lists >= 1 && s.starts >= 1 && s.boot_flags_added >= 1,
        "{s:?}"
    );
}

#[test]
fn interop_sample_win10_mbr() {
    if !interop("interop_sample_win10_mbr") {
        return;
    }
    let s = sample_flow("win10-mbr");
    assert!(s.multi_sz_filter_lists >= 1 && s.starts >= 1, "{s:?}");
    assert!(
        s.binary_filter_lists >= 1,
        "NetworkSetup2 FilterList not edited: {s:?}"
    );
    assert!(
        !s.keys_deleted.is_empty(),
        "StartOverride not deleted: {s:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Refusals

/// The Windows 7 sample's SYSTEM hive (read by ntfscat), cached on disk for the test process.
fn sample_hive() -> &'static Path {
    static HIVE: OnceLock<PathBuf> = OnceLock::new();
    HIVE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("imgprep-interop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let img = sample("win7-mbr", &dir);
        let hive = system_hive(&img, &dir);
        let p = dir.join("SYSTEM");
        std::fs::write(&p, hive).expect("write hive");
        std::fs::remove_file(&img).expect("rm");
        p
    })
}

/// An image made by make-image.sh holding the sample hive, with extra flags.
fn built(dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
    let out = dir.join(format!("{name}.img"));
    let put = format!("{}:{SYSTEM_PATH}", s(sample_hive()));
    let mut args: Vec<&str> = vec!["--table", "mbr", "--size", "24", "--put", &put];
    args.extend_from_slice(flags);
    args.push(s(&out));
    make_image(&args);
    out
}

/// A clean base image (built once per test process), copied into `dir`.
fn base(dir: &Path) -> PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    let b = BASE.get_or_init(|| {
        let d = sample_hive().parent().expect("dir").to_path_buf();
        let img = built(&d, "base", &[]);
        let r = imgprep(&["check", s(&img)]);
        assert_eq!(
            r.code,
            1,
            "base image must be not-ready: {}{}",
            r.out(),
            r.stderr
        );
        img
    });
    let out = dir.join("image.img");
    copy(b, &out);
    out
}

/// Every way of running strip-lwf/check on an unsafe image gives `code` and leaves it
/// byte-identical, with no journal and no output file.
pub(crate) fn expect_refusal(img: &Path, code: i32, extra: &[&str]) {
    let sha = sha256_file(img);
    let had_journal = journal_of(img).exists();
    let with = |mut a: Vec<&'static str>, img: &Path| -> Vec<String> {
        let mut v: Vec<String> = a.drain(..).map(String::from).collect();
        v.push(s(img).to_string());
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    let out = img.with_extension("refused-output");
    let out_s = s(&out).to_string();
    let cases: Vec<Vec<String>> = vec![
        with(vec!["strip-lwf"], img),
        with(vec!["strip-lwf", "--dry-run"], img),
        with(vec!["strip-lwf", "--json"], img),
        [
            with(vec!["strip-lwf"], img),
            vec!["--output".into(), out_s.clone()],
        ]
        .concat(),
        with(vec!["check"], img),
    ];
    for args in &cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = imgprep(&a);
        assert_eq!(
            r.code,
            code,
            "{a:?}: want exit {code}\nstdout: {}\nstderr: {}",
            r.out(),
            r.stderr
        );
        assert_eq!(sha256_file(img), sha, "{a:?} modified a refused image");
        assert_eq!(journal_of(img).exists(), had_journal, "{a:?}: journal");
        assert!(!out.exists(), "{a:?} created the output of a refused copy");
    }
    let a = with(vec!["check", "--json"], img);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let r = imgprep(&a);
    assert_eq!(r.code, code, "{a:?}: {}", r.stderr);
    let v = r.json();
    assert_eq!(v["schema"], "imgprep-check/1");
    assert_eq!(v["verdict"], "unsafe", "{v}");
    assert_eq!(v["exit_code"], code, "{v}");
    let reasons = v["reasons"].as_array().expect("reasons");
    assert!(
        reasons.iter().any(|r| r["exit_code"] == code),
        "no reason with exit code {code}: {v}"
    );
    assert_eq!(sha256_file(img), sha);
}

#[test]
fn interop_refuse_hibernated_hibr() {
    if !interop("interop_refuse_hibernated_hibr") {
        return;
    }
    let t = tmp();
    expect_refusal(&built(t.path(), "hibr", &["--hiberfil", "hibr"]), 10, &[]);
}

#[test]
fn interop_refuse_hibernated_upper_hibr() {
    if !interop("interop_refuse_hibernated_upper_hibr") {
        return;
    }
    let t = tmp();
    expect_refusal(&built(t.path(), "HIBR", &["--hiberfil", "HIBR"]), 10, &[]);
}

#[test]
fn interop_refuse_hibernated_wake() {
    if !interop("interop_refuse_hibernated_wake") {
        return;
    }
    let t = tmp();
    let img = built(t.path(), "wake", &["--hiberfil", "wake"]);
    expect_refusal(&img, 10, &[]);
    expect_refusal(&img, 10, &["--replay-logs"]);
}

#[test]
fn interop_refuse_fast_startup_logfile_v2() {
    if !interop("interop_refuse_fast_startup_logfile_v2") {
        return;
    }
    let t = tmp();
    expect_refusal(&built(t.path(), "v2", &["--logfile-v2"]), 10, &[]);
}

#[test]
fn interop_refuse_unclean_logfile() {
    if !interop("interop_refuse_unclean_logfile") {
        return;
    }
    let t = tmp();
    expect_refusal(&built(t.path(), "unclean", &["--logfile-unclean"]), 11, &[]);
}

#[test]
fn interop_refuse_dirty_volume() {
    if !interop("interop_refuse_dirty_volume") {
        return;
    }
    let t = tmp();
    expect_refusal(&built(t.path(), "dirty", &["--dirty"]), 11, &[]);
}

#[test]
fn interop_refuse_bitlocker() {
    if !interop("interop_refuse_bitlocker") {
        return;
    }
    let t = tmp();
    let img = base(t.path());
    let (p, _, _) = windows_partition(&img, t.path(), "w.part");
    assert_eq!(read_at(&img, p.start + 3, 8), b"NTFS    ");
    write_at(&img, p.start + 3, b"-FVE-FS-");
    expect_refusal(&img, 12, &[]);
}

#[test]
fn interop_refuse_dirty_hive_without_logs() {
    if !interop("interop_refuse_dirty_hive_without_logs") {
        return;
    }
    let t = tmp();
    let img = base(t.path());
    let offs = find_regf(&img);
    assert_eq!(offs.len(), 1, "one hive in the image: {offs:?}");
    let h = read_at(&img, offs[0], 12);
    let (s1, s2) = seqs(&h);
    assert_eq!(s1, s2);
    // seq1 = seq2 + 1: a write Windows started and did not finish; no logs to replay.
    write_at(&img, offs[0] + 4, &(s1 + 1).to_le_bytes());
    expect_refusal(&img, 13, &[]);
    expect_refusal(&img, 13, &["--replay-logs"]);
}

/// Runs `imgprep reg IMG ...` (through the journal), then deletes the journal: the edited
/// image is the new baseline.
fn reg_edit(img: &Path, args: &[&str]) {
    let mut a = vec!["reg", s(img)];
    a.extend_from_slice(args);
    let r = imgprep(&a);
    assert_eq!(r.code, 0, "{a:?}: {}{}", r.out(), r.stderr);
    std::fs::remove_file(journal_of(img)).expect("rm journal");
}

fn export_of(img: &Path, dir: &Path) -> Reg {
    parse_reg(&hivex_export(&system_hive(img, dir), dir))
}

/// `\ControlSetNNN` keys of an export.
fn control_sets(reg: &Reg) -> Vec<String> {
    reg.keys()
        .filter(|k| {
            k.strip_prefix("\\ControlSet")
                .is_some_and(|n| n.len() == 3 && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .cloned()
        .collect()
}

#[test]
fn interop_refuse_no_iscsiprt() {
    if !interop("interop_refuse_no_iscsiprt") {
        return;
    }
    let t = tmp();
    let img = base(t.path());
    let reg = export_of(&img, t.path());
    for cs in control_sets(&reg) {
        let k = format!("{cs}\\Services\\iScsiPrt");
        if reg.contains_key(&k) {
            reg_edit(&img, &["delete-key", &format!("HKLM\\SYSTEM{k}")]);
        }
    }
    assert!(
        !export_of(&img, t.path())
            .keys()
            .any(|k| k.to_ascii_lowercase().ends_with("\\services\\iscsiprt")),
        "iScsiPrt still there"
    );
    expect_refusal(&img, 14, &[]);
}

/// The boot NICs of the plan (subkey, service) per control set.
fn nics(img: &Path) -> Vec<(String, String, String)> {
    let r = imgprep(&["strip-lwf", "--dry-run", "--json", s(img)]);
    r.json()["prepared"]["plan"]["nics"]
        .as_array()
        .expect("nics")
        .iter()
        .map(|n| {
            (
                n["control_set"].as_str().expect("control_set").to_string(),
                n["subkey"].as_str().expect("subkey").to_string(),
                n["service"].as_str().expect("service").to_string(),
            )
        })
        .collect()
}

#[test]
fn interop_refuse_no_boot_nic() {
    if !interop("interop_refuse_no_boot_nic") {
        return;
    }
    let t = tmp();
    let img = base(t.path());
    let nics = nics(&img);
    assert!(!nics.is_empty());
    for (cs, sub, _) in &nics {
        // NCF_VIRTUAL | NCF_HIDDEN: a tunnel-like adapter, never a boot NIC.
        reg_edit(
            &img,
            &[
                "set",
                &format!(
                    "HKLM\\SYSTEM\\{cs}\\Control\\Class\\{{4D36E972-E325-11CE-BFC1-08002BE10318}}\\{sub}"
                ),
                "Characteristics",
                "--type",
                "dword",
                "--data",
                "0x9",
            ],
        );
    }
    expect_refusal(&img, 15, &[]);
}

#[test]
fn interop_refuse_missing_nic_service() {
    if !interop("interop_refuse_missing_nic_service") {
        return;
    }
    let t = tmp();
    let img = base(t.path());
    let mut done = std::collections::BTreeSet::new();
    for (cs, _, svc) in nics(&img) {
        if done.insert((cs.clone(), svc.clone())) {
            reg_edit(
                &img,
                &[
                    "delete-key",
                    &format!("HKLM\\SYSTEM\\{cs}\\Services\\{svc}"),
                ],
            );
        }
    }
    expect_refusal(&img, 20, &[]);
}

/// `reg set HKLM\SYSTEM\Fill NAME` with `size` bytes of REG_BINARY (from a file).
fn set_fill(img: &Path, dir: &Path, name: &str, size: usize, dry: bool) -> i32 {
    let f = dir.join("fill.bin");
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8 | 1).collect();
    std::fs::write(&f, data).expect("write fill");
    let mut a = vec![
        "reg",
        s(img),
        "set",
        "HKLM\\SYSTEM\\Fill",
        name,
        "--type",
        "binary",
        "--replace-journal",
        "--data-file",
        s(&f),
    ];
    if dry {
        a.push("--dry-run");
    }
    let r = imgprep(&a);
    assert!(
        r.code == 0 || r.code == 16,
        "reg set: exit {}: {}",
        r.code,
        r.stderr
    );
    r.code
}

#[test]
fn interop_refuse_no_space_in_hive() {
    if !interop("interop_refuse_no_space_in_hive") {
        return;
    }
    let t = tmp();
    let img = base(t.path());
    let hive_len = system_hive(&img, t.path()).len();
    // Fill the hive: each round adds the largest value that still fits (binary search with
    // --dry-run), until strip-lwf's edit no longer fits.
    let mut hi = hive_len;
    let mut calls = 0;
    for round in 0..12 {
        let r = imgprep(&["strip-lwf", "--dry-run", s(&img)]);
        calls += 1;
        if r.code == 16 {
            break;
        }
        assert_eq!(r.code, 0, "dry run: {}", r.stderr);
        let name = format!("v{round:02}");
        let (mut lo, mut top) = (0usize, hi + 1); // lo fits (0 = nothing), top does not
        while top - lo > 1 {
            let mid = lo + (top - lo) / 2;
            calls += 1;
            if set_fill(&img, t.path(), &name, mid, true) == 0 {
                lo = mid;
            } else {
                top = mid;
            }
        }
        assert!(lo > 0, "nothing fits any more, yet strip-lwf's edit does");
        assert_eq!(set_fill(&img, t.path(), &name, lo, false), 0);
        calls += 1;
        hi = lo;
    }
    let _ = std::fs::remove_file(journal_of(&img));
    eprintln!("filled the hive in {calls} calls");
    expect_refusal(&img, 16, &[]);
}

#[test]
fn interop_refuse_truncated_image() {
    if !interop("interop_refuse_truncated_image") {
        return;
    }
    let t = tmp();
    let img = base(t.path());
    let len = std::fs::metadata(&img).expect("stat").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .expect("open");
    f.set_len(len - 4 * 1024 * 1024).expect("truncate");
    drop(f);
    expect_refusal(&img, 17, &[]);
}

#[test]
fn interop_refuse_pending_journal() {
    if !interop("interop_refuse_pending_journal") {
        return;
    }
    let t = tmp();
    let img = base(t.path());
    let sha0 = sha256_file(&img);
    let r = imgprep(&["strip-lwf", "--no-boot-start", s(&img)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(journal_of(&img).exists());
    let sha1 = sha256_file(&img);
    // A second in-place write (the boot-start edits) must not drop the first one's undo data.
    for args in [
        vec!["strip-lwf", s(&img)],
        vec!["strip-lwf", "--json", s(&img)],
        vec![
            "reg",
            s(&img),
            "set",
            "HKLM\\SYSTEM\\Select",
            "Failed",
            "--type",
            "dword",
            "--data",
            "0",
        ],
        vec![
            "reg",
            s(&img),
            "delete-key",
            "HKLM\\SYSTEM\\ControlSet001\\Services\\iScsiPrt",
        ],
    ] {
        let r = imgprep(&args);
        assert_eq!(
            r.code,
            19,
            "{args:?} over a pending journal: {}{}",
            r.out(),
            r.stderr
        );
        assert_eq!(
            sha256_file(&img),
            sha1,
            "{args:?} wrote over a pending journal"
        );
    }
    // Read-only uses and copies are fine: check reports what is still needed.
    let r = imgprep(&["check", "--json", s(&img)]);
    let v = r.json();
    assert_eq!(
        (r.code, &v["verdict"], &v["exit_code"]),
        (1, &"not-ready".into(), &1.into()),
        "{v}"
    );
    let out = t.path().join("copy.img");
    let r = imgprep(&["strip-lwf", s(&img), "--output", s(&out)]);
    assert_eq!(r.code, 0, "--output beside a pending journal: {}", r.stderr);
    assert_eq!(sha256_file(&img), sha1);
    // Undo the first write: byte-identical; then the full edit goes through.
    let r = imgprep(&["undo", s(&img)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(sha256_file(&img), sha0);
    let r = imgprep(&["strip-lwf", s(&img)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Same registry content as the --output copy made from the half-done image.
    assert_eq!(
        export_of(&img, t.path()),
        export_of(&out, t.path()),
        "in place vs --output of the half-done image"
    );
    // A complete journal does not make the prepared image unsafe.
    let r = imgprep(&["check", "--json", s(&img)]);
    let v = r.json();
    assert_eq!((r.code, &v["verdict"]), (0, &"ready".into()), "{v}");
    // --replace-journal gives the old undo data up explicitly.
    let r = imgprep(&[
        "strip-lwf",
        "--replace-journal",
        "--no-auto-reboot",
        s(&img),
    ]);
    assert_eq!(r.code, 0, "--replace-journal: {}{}", r.out(), r.stderr);
}

#[test]
fn interop_refuse_unreadable_hiberfil() {
    if !interop("interop_refuse_unreadable_hiberfil") {
        return;
    }
    // hiberfil.sys exists but its MFT record is damaged (update sequence mismatch): whether
    // Windows is hibernated cannot be told, so the image is refused (it was taken as absent).
    let t = tmp();
    let img = built(t.path(), "hiberfil-unreadable", &["--hiberfil", "zero"]);
    let mut data = std::fs::read(&img).expect("read image");
    let name: Vec<u8> = "hiberfil.sys"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let rec = (0..data.len() / 1024)
        .map(|i| i * 1024)
        .find(|&o| {
            data[o..o + 4] == *b"FILE" && data[o..o + 1024].windows(name.len()).any(|w| w == name)
        })
        .expect("hiberfil.sys MFT record");
    data[rec + 510] ^= 0xFF;
    std::fs::write(&img, &data).expect("write image");
    expect_refusal(&img, 10, &[]);
}
