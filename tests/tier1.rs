// SPDX-License-Identifier: MIT OR Apache-2.0
//! Tier-1 end-to-end tests on the committed sample images: no external tools, no corpus.

use std::os::unix::fs::FileExt;
use std::path::Path;

use imgprep::image::{OpenOptions, WindowsImage};

use crate::util::*;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Reads the SYSTEM hive bytes out of an image through the library.
fn system_hive(img: &Path) -> Vec<u8> {
    let w = WindowsImage::open(img, OpenOptions::default()).expect("open image");
    w.hive("SYSTEM").expect("read SYSTEM").bytes
}

fn reg_get(img: &Path, path: &str, name: &str) -> String {
    let o = imgprep(["reg", p(img), "get", path, name]);
    assert_code(&o, 0);
    stdout(&o).trim().to_string()
}

const CLASS: &str =
    r"HKLM\SYSTEM\ControlSet001\Control\Class\{4D36E972-E325-11CE-BFC1-08002BE10318}";

fn round_trip(name: &str) {
    let d = tmp();
    let img = sample(d.path(), name);
    let before = sha256(&img);

    let o = imgprep(["check", p(&img)]);
    assert_code(&o, 1);
    assert!(stdout(&o).contains("NOT-READY"), "{}", stdout(&o));

    let o = imgprep(["strip-lwf", p(&img)]);
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("Linkage\\FilterList"), "{out}");
    assert!(out.contains("verified"), "{out}");
    assert_ne!(sha256(&img), before);

    // The FilterList no longer holds the WFP LWF, the services are boot-start.
    let fl = reg_get(&img, &format!(r"{CLASS}\0007\Linkage"), "FilterList");
    assert!(fl.contains("B5F4D659"), "{fl}");
    assert!(!fl.contains("B70D6460"), "{fl}");
    let start = reg_get(
        &img,
        r"HKLM\SYSTEM\ControlSet001\Services\iScsiPrt",
        "Start",
    );
    assert!(start.starts_with("0x0 "), "{start}");

    // The hive is clean, sequence numbers equal, and it passes hivetool's full check.
    let hive = system_hive(&img);
    let h = hivetool::Hive::open(&hive).expect("hive opens");
    assert!(!h.is_dirty());
    let report = hivetool::check::check(&h);
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    // Second run: nothing to do.
    let after = sha256(&img);
    let o = imgprep(["strip-lwf", p(&img), "--replace-journal"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("Nothing to change"), "{}", stdout(&o));
    assert_eq!(sha256(&img), after);

    let o = imgprep(["check", p(&img)]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("READY"));

    // Undo restores the original bytes exactly.
    let o = imgprep(["undo", p(&img)]);
    assert_code(&o, 0);
    assert_eq!(sha256(&img), before);
}

#[test]
fn strip_lwf_round_trip_mbr() {
    round_trip("win7-mbr");
}

#[test]
fn strip_lwf_round_trip_gpt() {
    round_trip("win7-gpt");
}

#[test]
fn dry_run_writes_nothing() {
    let d = tmp();
    let img = sample(d.path(), "win7-mbr");
    let before = sha256(&img);
    let o = imgprep(["strip-lwf", "--dry-run", p(&img)]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("Would make 10 change(s)"),
        "{}",
        stdout(&o)
    );
    assert_eq!(sha256(&img), before);
    assert!(!d.path().join("win7-mbr.img.imgprep-journal").exists());
}

#[test]
fn check_json_schema() {
    let d = tmp();
    let img = sample(d.path(), "win7-mbr");
    let o = imgprep(["check", "--json", p(&img)]);
    assert_code(&o, 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["schema"], "imgprep-check/1");
    assert_eq!(v["verdict"], "not-ready");
    assert_eq!(v["exit_code"], 1);
    let len = std::fs::metadata(&img).expect("meta").len();
    assert_eq!(v["copy_range"]["end_bytes"], len);
    assert!(v["reasons"].as_array().is_some_and(|r| r.len() == 10));
}

#[test]
fn output_copy_equals_in_place_result() {
    let d = tmp();
    let a = sample(d.path(), "win7-mbr");
    let src_before = sha256(&a);
    let b = d.path().join("b.img");
    std::fs::copy(&a, &b).expect("copy");
    let out = d.path().join("out.img");
    let o = imgprep(["strip-lwf", p(&a), "--output", p(&out)]);
    assert_code(&o, 0);
    assert_eq!(
        sha256(&a),
        src_before,
        "the source of a copy is never modified"
    );
    assert!(!d.path().join("win7-mbr.img.imgprep-journal").exists());
    let o = imgprep(["strip-lwf", p(&b)]);
    assert_code(&o, 0);
    // The whole disk is the copy range here (the Windows partition ends at the disk's end).
    assert_eq!(sha256(&out), sha256(&b));

    // To stdout: the same bytes.
    let o = imgprep(["strip-lwf", p(&a), "--output", "-"]);
    assert_code(&o, 0);
    assert_eq!(o.stdout, std::fs::read(&out).expect("read out"));
}

#[test]
fn windows10_blocking_filter_networksetup2_and_mac() {
    let d = tmp();
    let img = sample(d.path(), "win10-mbr");
    // The third-party mandatory filter (demand-start service) blocks: exit 1 after editing.
    let o = imgprep(["strip-lwf", "--dry-run", p(&img)]);
    assert_code(&o, 1);
    let out = stdout(&o);
    assert!(out.contains("BLOCKER"), "{out}");
    assert!(
        out.contains("7E1A5C4B-9D2F-4E11-A3B5-0C1D2E3F4A5B"),
        "{out}"
    );
    assert!(out.contains("NetworkSetup2"), "{out}");
    assert!(out.contains("StartOverride"), "{out}");
    // The Wi-Fi adapter is not a boot NIC.
    assert!(!out.contains("boot NIC: ControlSet001 0002"), "{out}");

    // Select the NIC by MAC and remove the blocking filter too: ready.
    let o = imgprep([
        "strip-lwf",
        p(&img),
        "--nic",
        "00-0c-29-ab-cd-01",
        "--filter",
        "{7E1A5C4B-9D2F-4E11-A3B5-0C1D2E3F4A5B}",
    ]);
    assert_code(&o, 0);
    let o = imgprep([
        "check",
        p(&img),
        "--filter",
        "7E1A5C4B-9D2F-4E11-A3B5-0C1D2E3F4A5B",
    ]);
    assert_code(&o, 0);

    let hive = system_hive(&img);
    let h = hivetool::Hive::open(&hive).expect("hive");
    let k = h
        .key(r"ControlSet001\Services\e1iexpress")
        .expect("lookup")
        .expect("service key");
    assert!(k.subkey("StartOverride").expect("lookup").is_none());
    let ns2 = h
        .key(r"ControlSet001\Control\NetworkSetup2\Interfaces\{6AAFC9A9-0542-4DB2-8760-CCFFA953737C}\Kernel")
        .expect("lookup")
        .expect("ns2 key");
    let fl = ns2.value("FilterList").expect("v").expect("FilterList");
    let guids = imgprep::windows::ns2_filter_guids(&fl.data().expect("data"));
    assert_eq!(
        guids,
        [
            "3BFD7820-D65C-4C1B-9FEA-983A019639EA",
            "B5F4D659-7DAA-4565-8E41-BE220ED60542"
        ]
    );
}

#[test]
fn unknown_nic_selector_is_an_error() {
    let d = tmp();
    let img = sample(d.path(), "win7-mbr");
    let before = sha256(&img);
    let o = imgprep(["strip-lwf", p(&img), "--nic", "0099"]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("matches no network adapter"),
        "{}",
        stderr(&o)
    );
    // A WAN miniport cannot be a boot NIC.
    let o = imgprep(["strip-lwf", p(&img), "--nic", "0003"]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("cannot be a boot NIC"),
        "{}",
        stderr(&o)
    );
    assert_eq!(sha256(&img), before);
}

/// Writes `bytes` at `offset` of the file.
fn poke(img: &Path, offset: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(img)
        .expect("open rw");
    f.write_all_at(bytes, offset).expect("poke");
}

fn refused(img: &Path, want: i32, needle: &str) {
    let before = sha256(img);
    let o = imgprep(["strip-lwf", p(img)]);
    assert_code(&o, want);
    assert!(stderr(&o).contains(needle), "{}", stderr(&o));
    assert_eq!(sha256(img), before, "a refused image stays byte-identical");
    let o = imgprep(["check", "--json", p(img)]);
    assert_code(&o, want);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["verdict"], "unsafe");
    assert_eq!(sha256(img), before);
}

#[test]
fn refuses_dirty_hive() {
    let d = tmp();
    let img = sample(d.path(), "win7-mbr");
    let w = WindowsImage::open(&img, OpenOptions::default()).expect("open");
    let hive = w.hive("SYSTEM").expect("hive");
    let seq1_disk = hive.extents.map_range(4..8).expect("map")[0].0;
    drop(w);
    poke(&img, seq1_disk, &77u32.to_le_bytes());
    refused(&img, 13, "dirty");
    // --replay-logs cannot help: there are no logs.
    let before = sha256(&img);
    let o = imgprep(["strip-lwf", "--replay-logs", p(&img)]);
    assert_code(&o, 13);
    assert!(stderr(&o).contains("no transaction logs"), "{}", stderr(&o));
    assert_eq!(sha256(&img), before);
}

#[test]
fn refuses_bitlocker() {
    let d = tmp();
    let img = sample(d.path(), "win7-mbr");
    let w = WindowsImage::open(&img, OpenOptions::default()).expect("open");
    let start = w.partition().start_byte;
    drop(w);
    poke(&img, start + 3, b"-FVE-FS-");
    refused(&img, 12, "BitLocker");
}

#[test]
fn refuses_truncated_image() {
    let d = tmp();
    let img = sample(d.path(), "win7-mbr");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .expect("open");
    f.set_len(6 * 1024 * 1024).expect("truncate");
    drop(f);
    refused(&img, 17, "truncated");
}

#[test]
fn refuses_missing_iscsiprt_and_boot_nic() {
    let d = tmp();
    let img = sample(d.path(), "win7-mbr");
    for cs in ["ControlSet001", "ControlSet002"] {
        let o = imgprep([
            "reg",
            p(&img),
            "delete-key",
            &format!(r"HKLM\SYSTEM\{cs}\Services\iScsiPrt"),
            "--replace-journal",
        ]);
        assert_code(&o, 0);
    }
    std::fs::remove_file(d.path().join("win7-mbr.img.imgprep-journal")).expect("rm journal");
    let before = sha256(&img);
    let o = imgprep(["strip-lwf", p(&img)]);
    assert_code(&o, 14);
    assert!(stderr(&o).contains("iScsiPrt"), "{}", stderr(&o));
    assert_eq!(sha256(&img), before);
    let o = imgprep(["check", p(&img)]);
    assert_code(&o, 14);

    let img = sample(d.path(), "win7-mbr");
    for cs in ["ControlSet001", "ControlSet002"] {
        for nic in ["0007", "0012"] {
            let o = imgprep([
                "reg",
                p(&img),
                "delete-key",
                &format!(
                    r"HKLM\SYSTEM\{cs}\Control\Class\{{4D36E972-E325-11CE-BFC1-08002BE10318}}\{nic}"
                ),
                "--replace-journal",
            ]);
            assert_code(&o, 0);
        }
    }
    std::fs::remove_file(d.path().join("win7-mbr.img.imgprep-journal")).expect("rm journal");
    let before = sha256(&img);
    let o = imgprep(["strip-lwf", p(&img)]);
    assert_code(&o, 15);
    assert!(stderr(&o).contains("boot NIC"), "{}", stderr(&o));
    assert_eq!(sha256(&img), before);
}

#[test]
fn refuses_second_write_while_a_journal_exists() {
    let d = tmp();
    let img = sample(d.path(), "win7-mbr");
    let o = imgprep(["strip-lwf", p(&img)]);
    assert_code(&o, 0);
    let before = sha256(&img);
    let o = imgprep([
        "reg",
        p(&img),
        "set",
        r"HKLM\SYSTEM\ControlSet001\Services\Tcpip\Parameters",
        "DisableDhcpMediaSense",
        "--type",
        "dword",
        "--data",
        "1",
    ]);
    assert_code(&o, 19);
    assert!(stderr(&o).contains("imgprep undo"), "{}", stderr(&o));
    assert_eq!(sha256(&img), before);
}

#[test]
fn refuses_edit_that_does_not_fit() {
    let d = tmp();
    let img = sample(d.path(), "win10-mbr");
    let before = sha256(&img);
    // More data than the whole hive file holds cannot fit: the file may not grow.
    let hive_len = system_hive(&img).len();
    let big = d.path().join("big.bin");
    std::fs::write(&big, vec![0x5Au8; hive_len + 4096]).expect("write");
    let o = imgprep([
        "reg",
        p(&img),
        "set",
        r"HKLM\SYSTEM\Setup",
        "Big",
        "--type",
        "binary",
        "--data-file",
        p(&big),
    ]);
    assert_code(&o, 16);
    assert!(
        stderr(&o).contains("more bytes are needed"),
        "{}",
        stderr(&o)
    );
    assert_eq!(sha256(&img), before);
}

#[test]
fn reg_get_set_delete_through_the_journal() {
    let d = tmp();
    let img = sample(d.path(), "win7-mbr");
    let before = sha256(&img);
    assert_eq!(reg_get(&img, r"HKLM\SYSTEM\Select", "Current"), "0x1 (1)");
    let o = imgprep([
        "reg",
        p(&img),
        "set",
        r"HKLM\SYSTEM\Tools\Imgprep",
        "Note",
        "--type",
        "sz",
        "--data",
        "hello",
    ]);
    assert_code(&o, 0);
    assert_eq!(
        reg_get(&img, r"HKLM\SYSTEM\Tools\Imgprep", "Note"),
        "\"hello\""
    );
    let o = imgprep(["reg", p(&img), "export", r"HKLM\SYSTEM\Tools"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("\"Note\"=\"hello\""), "{}", stdout(&o));
    let o = imgprep(["undo", p(&img)]);
    assert_code(&o, 0);
    assert_eq!(sha256(&img), before);
}

#[test]
fn inspect_and_range_outputs() {
    let d = tmp();
    let img = sample(d.path(), "win7-gpt");
    let o = imgprep(["inspect", p(&img)]);
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("<- Windows"), "{out}");
    assert!(out.contains("copy range"), "{out}");
    assert!(out.contains("WFP Lightweight Filter"), "{out}");
    let o = imgprep(["inspect", "--json", p(&img)]);
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["schema"], "imgprep-inspect/1");
    for fmt in ["text", "json", "sfdisk", "dd"] {
        let o = imgprep(["range", p(&img), "--format", fmt]);
        assert_code(&o, 0);
        assert!(!o.stdout.is_empty());
    }
}

#[test]
fn export_relocated_gpt_and_comstar_offset() {
    let d = tmp();
    let img = sample(d.path(), "win7-gpt");
    let before = sha256(&img);
    let out = d.path().join("lun.img");
    let o = imgprep([
        "export",
        p(&img),
        "-o",
        p(&out),
        "--prepare",
        "--gpt-fix",
        "relocate",
        "--output-offset",
        "65536",
        "--json",
    ]);
    assert_code(&o, 0);
    assert_eq!(sha256(&img), before);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let len = v["plan"]["output_len"].as_u64().expect("output_len");
    assert_eq!(std::fs::metadata(&out).expect("meta").len(), 65536 + len);
    // The copy, read without its COMSTAR prefix, is a disk whose Windows is prepared.
    let data = std::fs::read(&out).expect("read");
    let inner = d.path().join("inner.img");
    std::fs::write(&inner, &data[65536..]).expect("write");
    let o = imgprep(["check", p(&inner)]);
    assert_code(&o, 0);
}

#[test]
fn library_api_plans_and_prepares() {
    let d = tmp();
    let img = sample(d.path(), "win7-mbr");
    let w = WindowsImage::open(&img, OpenOptions::default()).expect("open");
    let hive = w.hive("SYSTEM").expect("hive");
    let prepared = imgprep::prepare::prepare(&w, hive, &Default::default()).expect("prepare");
    assert_eq!(prepared.plan.changes.len(), 10);
    assert!(prepared.plan.blockers.is_empty());
    assert!(!prepared.edit.patches.is_empty());
    // Every patch lies inside the hive's extents.
    for patch in &prepared.edit.patches {
        assert!(prepared
            .edit
            .allowed
            .iter()
            .any(|r| r.start <= patch.offset && patch.offset + patch.bytes.len() as u64 <= r.end));
    }
    // The edited hive plans as ready.
    let h = hivetool::Hive::open(&prepared.edit.new_hive).expect("new hive");
    let again = imgprep::plan::plan(&h, &Default::default()).expect("plan");
    assert!(again.is_ready(), "{:?}", again.changes);
}

#[test]
fn completions_and_man_pages() {
    let o = imgprep(["completions", "bash"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("strip-lwf"));
    let d = tmp();
    let o = imgprep(["man", p(d.path())]);
    assert_code(&o, 0);
    assert!(d.path().join("imgprep-strip-lwf.1").exists());
}

#[test]
fn interrupted_write_is_detected_and_rolled_back() {
    let d = tmp();
    let img = sample(d.path(), "win7-mbr");
    let before = sha256(&img);
    interrupt_write(&img);
    assert_ne!(sha256(&img), before, "half of the patches are on the image");
    let o = imgprep(["check", "--json", p(&img)]);
    assert_code(&o, 19);
    let o = imgprep(["strip-lwf", p(&img)]);
    assert_code(&o, 19);
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    let o = imgprep(["undo", p(&img)]);
    assert_code(&o, 0);
    assert_eq!(sha256(&img), before);
}

#[test]
fn output_that_is_the_source_is_refused_before_truncating_it() {
    let d = tmp();
    let img = sample(d.path(), "win7-mbr");
    let before = sha256(&img);
    let link = d.path().join("link.img");
    std::fs::hard_link(&img, &link).expect("hard link");
    for args in [
        vec!["export", p(&img), "-o", p(&img)],
        vec!["export", p(&img), "-o", p(&link)],
        vec!["strip-lwf", p(&img), "--output", p(&link)],
    ] {
        let o = imgprep(&args);
        assert_ne!(code(&o), 0, "{args:?}");
        assert_eq!(sha256(&img), before, "{args:?} changed the source");
    }
}

#[test]
fn control_set_named_twice_is_edited_once() {
    let d = tmp();
    let img = sample(d.path(), "win7-mbr");
    let o = imgprep([
        "strip-lwf",
        "--dry-run",
        "--control-set",
        "1",
        "--control-set",
        "controlset001",
        p(&img),
    ]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("Would make 5 change(s)"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn reg_set_binary_with_non_ascii_data_is_an_error_not_a_panic() {
    let d = tmp();
    let img = sample(d.path(), "win7-mbr");
    let before = sha256(&img);
    let o = imgprep([
        "reg",
        p(&img),
        "set",
        r"HKLM\SYSTEM\Tools",
        "Bin",
        "--type",
        "binary",
        "--data",
        "a\u{e9}b",
    ]);
    assert_code(&o, 2);
    assert_eq!(sha256(&img), before);
}

#[test]
fn image_stream_cut_short_is_an_error() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let d = tmp();
    let img = sample(d.path(), "win7-mbr");
    for args in [
        vec!["export", p(&img), "-o", "-"],
        vec!["strip-lwf", p(&img), "--output", "-"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_imgprep"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let mut out = child.stdout.take().expect("stdout");
        let mut buf = [0u8; 4096];
        out.read_exact(&mut buf)
            .expect("read the start of the image");
        drop(out);
        let status = child.wait().expect("wait");
        assert_eq!(
            status.code(),
            Some(2),
            "{args:?}: a cut image stream is not a success"
        );
    }
}

#[test]
fn empty_or_path_like_miniport_service_is_not_taken_for_a_service() {
    let d = tmp();
    let set_service = |img: &Path, nic: &str, svc: &str| {
        for cs in ["ControlSet001", "ControlSet002"] {
            let o = imgprep([
                "reg",
                p(img),
                "set",
                &format!(
                    r"HKLM\SYSTEM\{cs}\Control\Class\{{4D36E972-E325-11CE-BFC1-08002BE10318}}\{nic}\Ndi"
                ),
                "Service",
                "--type",
                "sz",
                "--data",
                svc,
                "--replace-journal",
            ]);
            assert_code(&o, 0);
        }
    };
    // An empty Ndi\Service: the adapter has no miniport to make boot-start, so it is no boot
    // NIC (it used to be selected, and `check` could call the image ready).
    let img = sample(d.path(), "win7-mbr");
    set_service(&img, "0007", "");
    let o = imgprep(["strip-lwf", "--dry-run", p(&img)]);
    assert_code(&o, 0);
    assert!(
        !stdout(&o).contains("boot NIC: ControlSet001 0007"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("boot NIC: ControlSet001 0012"),
        "{}",
        stdout(&o)
    );
    // A name with a backslash is not a service key: it must not edit Services\Tcpip\Parameters.
    let img = sample(d.path(), "win7-mbr");
    set_service(&img, "0007", r"Tcpip\Parameters");
    set_service(&img, "0012", r"Tcpip\Parameters");
    std::fs::remove_file(d.path().join("win7-mbr.img.imgprep-journal")).expect("rm journal");
    let before = sha256(&img);
    let o = imgprep(["strip-lwf", p(&img)]);
    assert_code(&o, 20);
    assert_eq!(sha256(&img), before);
}

#[test]
fn strip_lwf_json_names_the_windows_partition() {
    let d = tmp();
    let img = sample(d.path(), "win7-mbr");
    let o = imgprep(["strip-lwf", "--dry-run", "--json", p(&img)]);
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["schema"], "imgprep-strip-lwf/1");
    assert_eq!(v["partition"], 2, "the partition found, not 0");
}

#[test]
fn out_of_range_source_date_epoch_is_no_panic() {
    let d = tmp();
    let img = sample(d.path(), "win7-mbr");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_imgprep"))
        .args(["strip-lwf", "--dry-run", p(&img)])
        .env("SOURCE_DATE_EPOCH", u64::MAX.to_string())
        .output()
        .expect("run imgprep");
    assert_code(&o, 0);
}

#[test]
fn interrupted_write_blocks_copies_and_other_journal_dirs() {
    let d = tmp();
    let img = sample(d.path(), "win7-mbr");
    interrupt_write(&img);
    let half = sha256(&img);
    let out = d.path().join("out.img");
    let other = d.path().join("journals");
    std::fs::create_dir(&other).expect("mkdir");
    for args in [
        vec!["strip-lwf", p(&img), "--output", p(&out)],
        vec!["export", "--prepare", p(&img), "-o", p(&out)],
        vec!["strip-lwf", "--journal-dir", p(&other), p(&img)],
    ] {
        let o = imgprep(&args);
        assert_code(&o, 19);
        assert!(
            stderr(&o).contains("interrupted"),
            "{args:?}: {}",
            stderr(&o)
        );
        assert_eq!(sha256(&img), half, "{args:?}");
        assert!(!out.exists(), "{args:?}: a copy of a half-written image");
    }
}

#[test]
fn requested_control_set_is_not_called_left_unchanged() {
    let d = tmp();
    let img = sample(d.path(), "win7-mbr");
    let o = imgprep([
        "reg",
        p(&img),
        "set",
        r"HKLM\SYSTEM\ControlSet003\Control",
        "X",
        "--type",
        "dword",
        "--data",
        "1",
    ]);
    assert_code(&o, 0);
    let o = imgprep(["inspect", p(&img)]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("note: ControlSet003 exists but is not named by Select"),
        "{}",
        stdout(&o)
    );
    let o = imgprep(["inspect", "--control-set", "3", p(&img)]);
    assert_code(&o, 0);
    assert!(
        !stdout(&o).contains("ControlSet003 exists but is not named by Select")
            && !stdout(&o).contains("ControlSet003: not named by Select (left alone)"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn check_says_pending_journal_even_when_the_half_written_hive_does_not_open() {
    let d = tmp();
    let img = sample(d.path(), "win7-mbr");
    let w = WindowsImage::open(&img, OpenOptions::default()).expect("open");
    let hive = w.hive("SYSTEM").expect("hive");
    let hbin = hive.extents.map_range(4096..4100).expect("map")[0].0;
    drop(w);
    interrupt_write(&img);
    // The half-written hive no longer opens (its first bin is damaged).
    poke(&img, hbin, b"XXXX");
    let o = imgprep(["check", p(&img)]);
    assert_code(&o, 19);
    let o = imgprep(["check", "--json", p(&img)]);
    assert_code(&o, 19);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["verdict"], "unsafe");
}

/// Starts strip-lwf's in-place write through the journal and stops it half-way through the
/// patches, as a crash would (the journal stays pending).
fn interrupt_write(img: &Path) {
    use diskimg::journal::{self, ApplyOptions, Fault, FaultPoint};
    let w = WindowsImage::open(img, OpenOptions::default()).expect("open");
    let hive = w.hive("SYSTEM").expect("hive");
    let prepared = imgprep::prepare::prepare(&w, hive, &Default::default()).expect("prepare");
    drop(w);
    let err = journal::apply(
        img,
        &prepared.edit.patches,
        &prepared.edit.allowed,
        &journal::default_journal_path(img, None),
        &ApplyOptions {
            replace: false,
            fault: Some(Fault {
                point: FaultPoint::AfterHalfPatches,
                abort: false,
            }),
        },
    );
    assert!(err.is_err(), "the injected fault stops the write");
}
