// SPDX-License-Identifier: MIT OR Apache-2.0
//! Corpus tier (IMGPREP_HIVE_CORPUS = the real-hive folder, and IMGPREP_INTEROP=1: the images
//! are built with ntfs-3g): real Windows SYSTEM hives inside real NTFS images.
//!
//! * Windows 7 (regipy-SYSTEM.hive, 11.7 MB, compact: ~4.6 KB free, no slack) written as
//!   Windows/System32/config/SYSTEM in ~960 runs (an $ATTRIBUTE_LIST, like a real hive file):
//!   strip-lwf succeeds in place without changing the file size, and the hivexregedit diff is
//!   exactly the plan; undo restores the image.
//! * Windows 10 (regipy-SYSTEM_B.hive, dirty, with .LOG1/.LOG2): refused with 13 without
//!   --replay-logs; with it, the result equals the yarp-recovered hive plus exactly the plan,
//!   and its sequence numbers are equal and above every primary and log sequence number.

use std::path::Path;

use crate::e2e_util::*;
use crate::interop::{expect_refusal, journal_of};

fn read(dir: &Path, name: &str) -> Vec<u8> {
    let p = dir.join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn exit_for(img: &Path, extra: &[&str]) -> i32 {
    let mut a = vec!["strip-lwf", "--dry-run", "--json", s(img)];
    a.extend_from_slice(extra);
    let r = imgprep(&a);
    let v = r.json();
    if v["prepared"]["plan"]["blockers"]
        .as_array()
        .is_some_and(|b| !b.is_empty())
    {
        1
    } else {
        0
    }
}

#[test]
fn corpus_win7_fragmented_real_hive() {
    let Some(corpus) = corpus("corpus_win7_fragmented_real_hive") else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path();
    let hive = read(&corpus, "regipy-SYSTEM.hive");
    let img = dir.join("win7-real.img");
    // 1-cluster appends, each followed by a filler: ntfs-3g ends up with 3-cluster runs, ~960
    // runs for 11.7 MB (plus an $ATTRIBUTE_LIST).
    let p = image_with_files(&img, 64, &[(SYSTEM_PATH, &hive, 4096)], dir);
    let part = dir.join("w.part");
    extract(&img, p, &part);
    assert_eq!(ntfscat(&part, SYSTEM_PATH).as_deref(), Some(&hive[..]));
    let runs = run_count(&part, SYSTEM_PATH);
    assert!(runs >= 800, "SYSTEM has only {runs} runs: not fragmented");
    eprintln!("SYSTEM written in {runs} runs");
    let sha0 = sha256_file(&img);

    let before = parse_reg(&hivex_export(&hive, dir));
    let plan = plan_of(&img, &[]);
    assert!(!plan.is_empty());
    let code = exit_for(&img, &[]);
    let r = imgprep(&["strip-lwf", s(&img)]);
    assert_eq!(r.code, code, "strip-lwf: {}{}", r.out(), r.stderr);

    extract(&img, p, &part);
    let after_hive = ntfscat(&part, SYSTEM_PATH).expect("ntfscat");
    assert_eq!(after_hive.len(), hive.len(), "hive file size changed");
    assert_eq!(run_count(&part, SYSTEM_PATH), runs, "run list changed");
    let (a, b) = seqs(&after_hive);
    assert_eq!(a, b, "hive left dirty");
    assert!(a > seqs(&hive).0.max(seqs(&hive).1));
    assert_structure_kept(&hive, &after_hive, "Windows 7 real hive");
    let after = parse_reg(&hivex_export(&after_hive, dir));
    let sum = assert_diff_is_plan(&before, &after, &plan);
    assert!(sum.multi_sz_filter_lists >= 1, "{sum:?}");
    assert_ntfsfix_clean(&part);

    let r = imgprep(&["undo", s(&img)]);
    assert_eq!(r.code, 0, "undo: {}", r.stderr);
    assert_eq!(sha256_file(&img), sha0, "undo is not byte-identical");
    assert!(!journal_of(&img).exists());
}

#[test]
fn corpus_win10_dirty_hive_with_logs() {
    let Some(corpus) = corpus("corpus_win10_dirty_hive_with_logs") else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path();
    let hive = read(&corpus, "regipy-SYSTEM_B.hive");
    let log1 = read(&corpus, "regipy-SYSTEM_B.hive.LOG1");
    let log2 = read(&corpus, "regipy-SYSTEM_B.hive.LOG2");
    let yarp = read(&corpus, "regipy-SYSTEM_B.recovered-by-yarp.hive");
    let (s1, s2) = seqs(&hive);
    assert_ne!(s1, s2, "the corpus hive is dirty");
    let img = dir.join("win10-dirty.img");
    let l1 = format!("{SYSTEM_PATH}.LOG1");
    let l2 = format!("{SYSTEM_PATH}.LOG2");
    let p = image_with_files(
        &img,
        64,
        &[(SYSTEM_PATH, &hive, 0), (&l1, &log1, 0), (&l2, &log2, 0)],
        dir,
    );

    // Without --replay-logs: refused, untouched.
    expect_refusal(&img, 13, &[]);

    let plan = plan_of(&img, &["--replay-logs"]);
    assert!(!plan.is_empty());
    let code = exit_for(&img, &["--replay-logs"]);
    let sha0 = sha256_file(&img);

    // First as a copy (no journal involved), then in place: both must be the yarp-recovered
    // hive plus exactly the plan, clean above every log sequence.
    let out = dir.join("copy.img");
    let r = imgprep(&["strip-lwf", "--replay-logs", s(&img), "--output", s(&out)]);
    assert_eq!(
        r.code,
        code,
        "--replay-logs --output: {}{}",
        r.out(),
        r.stderr
    );
    assert_eq!(sha256_file(&img), sha0, "--output modified the image");
    check_replayed(&out, p, dir, &hive, &log1, &log2, &yarp, &plan);

    let r = imgprep(&["strip-lwf", "--replay-logs", s(&img)]);
    assert_eq!(
        r.code,
        code,
        "strip-lwf --replay-logs: {}{}",
        r.out(),
        r.stderr
    );
    check_replayed(&img, p, dir, &hive, &log1, &log2, &yarp, &plan);
    let out_len = std::fs::metadata(&out).expect("stat").len();
    assert!(
        read_at(&img, 0, out_len) == std::fs::read(&out).expect("read copy"),
        "in place vs --output differ over the copy range"
    );
    let r = imgprep(&["undo", s(&img)]);
    assert_eq!(r.code, 0, "undo: {}", r.stderr);
    assert_eq!(sha256_file(&img), sha0, "undo is not byte-identical");
}

#[allow(clippy::too_many_arguments)]
fn check_replayed(
    img: &Path,
    p: Part,
    dir: &Path,
    hive: &[u8],
    log1: &[u8],
    log2: &[u8],
    yarp: &[u8],
    plan: &[PlanChange],
) {
    let (s1, s2) = seqs(hive);
    let part = dir.join("w.part");
    extract(img, p, &part);
    let after_hive = ntfscat(&part, SYSTEM_PATH).expect("ntfscat");
    assert_eq!(after_hive.len(), hive.len(), "hive file size changed");
    let (a, b) = seqs(&after_hive);
    assert_eq!(a, b, "result must be clean");
    let mut all = vec![s1, s2];
    all.extend(log_seqs(log1));
    all.extend(log_seqs(log2));
    let max = all.iter().copied().max().expect("seqs");
    assert!(max >= 2130, "log entries up to 2130 expected, saw {max}");
    assert!(
        a > max,
        "sequence {a} must be above every log sequence ({max})"
    );
    // The logs in the image, whatever imgprep did with them, hold nothing newer.
    for l in ["LOG1", "LOG2"] {
        let l = format!("{SYSTEM_PATH}.{l}");
        if let Some(bytes) = ntfscat(&part, &l) {
            for q in log_seqs(&bytes) {
                assert!(q < a, "{l}: sequence {q} not below the hive's {a}");
            }
        }
    }
    assert_structure_kept(yarp, &after_hive, "Windows 10 replayed hive");
    let want = parse_reg(&hivex_export(yarp, dir));
    let got = parse_reg(&hivex_export(&after_hive, dir));
    let sum = assert_diff_is_plan(&want, &got, plan);
    assert!(sum.multi_sz_filter_lists >= 1, "{sum:?}");
    assert_ntfsfix_clean(&part);
}
