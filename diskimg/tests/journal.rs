// SPDX-License-Identifier: MIT OR Apache-2.0
//! Tier-1 tests of the undo journal: apply/undo round trips, refusals, fault injection and
//! crash recovery (child processes that abort at each fault point).
#![allow(clippy::single_range_in_vec_init)]

use diskimg::journal::{
    self, ApplyOptions, Fault, FaultPoint, JournalState, RecoverMode, RegionState, UndoOptions,
};
use diskimg::patch::Patch;
use diskimg::Error;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

const IMG_LEN: usize = 1 << 20;

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn make_image(dir: &Path) -> PathBuf {
    let p = dir.join("disk.img");
    fs::write(&p, pattern(IMG_LEN, 42)).unwrap();
    p
}

fn sha(p: &Path) -> String {
    let d = Sha256::digest(fs::read(p).unwrap());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn patches() -> Vec<Patch> {
    vec![
        Patch::new(4096, pattern(512, 1)),
        Patch::new(70_000, pattern(3000, 2)),
        Patch::new(500_000, pattern(10, 3)),
        Patch::new(900_001, pattern(4096, 4)),
    ]
}

fn allowed() -> Vec<std::ops::Range<u64>> {
    vec![
        0..8192,
        65_536..131_072,
        499_999..500_010,
        800_000..1_000_000,
    ]
}

/// The image bytes after applying `patches()`.
fn expected_after(img: &Path) -> String {
    let mut v = fs::read(img).unwrap();
    for p in patches() {
        let o = p.offset as usize;
        v[o..o + p.bytes.len()].copy_from_slice(&p.bytes);
    }
    let d = Sha256::digest(&v);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn apply_then_undo_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path());
    let before = sha(&img);
    let after = expected_after(&img);
    let jp = journal::default_journal_path(&img, None);
    let r = journal::apply(&img, &patches(), &allowed(), &jp, &ApplyOptions::default()).unwrap();
    assert_eq!(r.written.len(), 4);
    assert!(r.skipped.is_empty());
    assert_eq!(r.bytes_written, 512 + 3000 + 10 + 4096);
    assert_eq!(sha(&img), after);
    let st = journal::inspect(&jp).unwrap();
    assert_eq!(st.state, JournalState::Complete);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&jp).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(st.patches.len(), 4);
    assert_eq!(st.image.size, IMG_LEN as u64);
    assert!(st.image.mtime_after.is_some());
    assert_eq!(journal::pending_journal(&img, None).unwrap(), None);
    let states = journal::region_states(&img, &jp).unwrap();
    assert!(states.iter().all(|(_, s)| *s == RegionState::New));

    let u = journal::undo(&img, &jp, &UndoOptions::default()).unwrap();
    assert_eq!(u.rewritten.len(), 4);
    assert_eq!(u.journal_state, Some(JournalState::Undone));
    assert_eq!(sha(&img), before);
    assert_eq!(journal::inspect(&jp).unwrap().state, JournalState::Undone);
    // A second undo is refused.
    assert!(matches!(
        journal::undo(&img, &jp, &UndoOptions::default()),
        Err(Error::Journal(_))
    ));
    // No temporary file left behind.
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn undo_can_remove_the_journal_and_journal_dir_option_works() {
    let dir = tempfile::tempdir().unwrap();
    let jdir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path());
    let before = sha(&img);
    let jp = journal::default_journal_path(&img, Some(jdir.path()));
    assert!(jp.starts_with(jdir.path()));
    journal::apply(&img, &patches(), &allowed(), &jp, &ApplyOptions::default()).unwrap();
    let opts = UndoOptions {
        remove_journal: true,
        ..UndoOptions::default()
    };
    let u = journal::undo(&img, &jp, &opts).unwrap();
    assert_eq!(u.journal_state, None);
    assert!(!jp.exists());
    assert_eq!(sha(&img), before);
}

#[test]
fn interrupted_undo_can_be_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path());
    let orig = fs::read(&img).unwrap();
    let jp = dir.path().join("j");
    journal::apply(&img, &patches(), &allowed(), &jp, &ApplyOptions::default()).unwrap();
    // Simulate an undo that died: patch 0 restored, patch 1 half restored.
    let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &orig[4096..4096 + 512], 4096).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &orig[70_000..71_500], 70_000).unwrap();
    let m = journal::inspect(&jp).unwrap().image.mtime_after.unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::new(m.sec as u64, m.nsec as u32))
        .unwrap();
    drop(f);
    let st: Vec<_> = journal::region_states(&img, &jp)
        .unwrap()
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert_eq!(
        st,
        [
            RegionState::Old,
            RegionState::Torn,
            RegionState::New,
            RegionState::New
        ]
    );
    let r = journal::undo(&img, &jp, &UndoOptions::default()).unwrap();
    assert_eq!(r.unchanged, vec![4096]);
    assert_eq!(r.rewritten, vec![70_000, 500_000, 900_001]);
    assert!(fs::read(&img).unwrap() == orig);
}

#[test]
fn parse_journal_rejects_garbage() {
    let p = Path::new("x");
    for bad in [
        &b""[..],
        b"{}",
        b"[1,2",
        b"\xff\xfe",
        b"{\"magic\":\"imgprep-undo-journal\"}",
    ] {
        assert!(matches!(
            journal::parse_journal(bad, p),
            Err(Error::Journal(_))
        ));
    }
}

#[test]
fn unchanged_patches_are_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path());
    let cur = fs::read(&img).unwrap();
    let same = Patch::new(100, cur[100..200].to_vec());
    let diff = Patch::new(300, vec![0u8; 10]);
    let jp = dir.path().join("j");
    let r = journal::apply(
        &img,
        &[diff, same],
        &[0..1000],
        &jp,
        &ApplyOptions::default(),
    )
    .unwrap();
    assert_eq!(r.written, vec![300]);
    assert_eq!(r.skipped, vec![100]);
    assert_eq!(r.bytes_written, 10);
    let u = journal::undo(&img, &jp, &UndoOptions::default()).unwrap();
    assert_eq!(fs::read(&img).unwrap(), cur);
    assert_eq!(u.rewritten, vec![300]);
}

#[test]
fn out_of_range_overlapping_and_past_end_patches_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path());
    let before = sha(&img);
    let jp = dir.path().join("j");
    let o = ApplyOptions::default();
    // One byte outside the allowed range.
    let bad = vec![Patch::new(10, vec![1; 4]), Patch::new(8190, vec![1; 3])];
    assert!(matches!(
        journal::apply(&img, &bad, &[0..8192], &jp, &o),
        Err(Error::PatchOutOfRange {
            offset: 8190,
            len: 3
        })
    ));
    // Overlap.
    let bad = vec![Patch::new(10, vec![1; 4]), Patch::new(12, vec![1; 4])];
    assert!(matches!(
        journal::apply(&img, &bad, &[0..8192], &jp, &o),
        Err(Error::Invalid(_))
    ));
    // Past the end of the image (allowed range is wrong too).
    let bad = vec![Patch::new(IMG_LEN as u64 - 2, vec![1; 4])];
    assert!(matches!(
        journal::apply(&img, &bad, &[0..u64::MAX], &jp, &o),
        Err(Error::Truncated { .. })
    ));
    assert!(!jp.exists(), "no journal written for a refused apply");
    assert_eq!(sha(&img), before, "nothing written for a refused apply");
    // Adjacent allowed ranges merge: a patch across their boundary is fine.
    journal::apply(
        &img,
        &[Patch::new(8190, vec![1; 4])],
        &[0..8192, 8192..9000],
        &jp,
        &o,
    )
    .unwrap();
    let mut v = fs::read(&img).unwrap();
    assert_eq!(v[8190..8194], [1; 4]);
    let orig = pattern(IMG_LEN, 42);
    v[8190..8194].copy_from_slice(&orig[8190..8194]);
    assert_eq!(v, orig, "only the patched bytes changed");
}

#[test]
fn locked_image_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path());
    let before = sha(&img);
    let holder = File::open(&img).unwrap();
    holder.lock().unwrap();
    let jp = dir.path().join("j");
    let e =
        journal::apply(&img, &patches(), &allowed(), &jp, &ApplyOptions::default()).unwrap_err();
    assert!(e.to_string().contains("locked"), "{e}");
    assert!(!jp.exists());
    assert_eq!(sha(&img), before);
    holder.unlock().unwrap();
    journal::apply(&img, &patches(), &allowed(), &jp, &ApplyOptions::default()).unwrap();
}

#[test]
fn existing_journal_is_refused_unless_replace() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path());
    let jp = dir.path().join("j");
    let o = ApplyOptions::default();
    journal::apply(&img, &patches(), &allowed(), &jp, &o).unwrap();
    let again = vec![Patch::new(0, vec![7; 8])];
    assert!(matches!(
        journal::apply(&img, &again, &allowed(), &jp, &o),
        Err(Error::Journal(_))
    ));
    let rep = ApplyOptions {
        replace: true,
        ..ApplyOptions::default()
    };
    journal::apply(&img, &again, &allowed(), &jp, &rep).unwrap();
    // A pending journal can never be replaced.
    let jp2 = dir.path().join("j2");
    let f = ApplyOptions {
        fault: Some(Fault {
            point: FaultPoint::AfterJournalWritten,
            abort: false,
        }),
        ..ApplyOptions::default()
    };
    journal::apply(&img, &[Patch::new(16, vec![1; 4])], &allowed(), &jp2, &f).unwrap_err();
    let e =
        journal::apply(&img, &[Patch::new(16, vec![1; 4])], &allowed(), &jp2, &rep).unwrap_err();
    assert!(e.to_string().contains("pending"), "{e}");
}

#[test]
fn undo_refuses_changed_bytes_and_other_images_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path());
    let before = sha(&img);
    let jp = dir.path().join("j");
    journal::apply(&img, &patches(), &allowed(), &jp, &ApplyOptions::default()).unwrap();

    // Another file with the same content: different inode.
    let copy = dir.path().join("copy.img");
    fs::copy(&img, &copy).unwrap();
    let e = journal::undo(&copy, &jp, &UndoOptions::default()).unwrap_err();
    assert!(e.to_string().contains("does not look like"), "{e}");

    // Someone changed a patched region.
    let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0xEE; 4], 70_010).unwrap();
    let changed = sha(&img);
    let e = journal::undo(&img, &jp, &UndoOptions::default()).unwrap_err();
    assert!(e.to_string().contains("modified after the apply"), "{e}");
    // Even with the old mtime put back, the bytes check refuses.
    let m = journal::inspect(&jp).unwrap().image.mtime_after.unwrap();
    let t = std::time::UNIX_EPOCH + std::time::Duration::new(m.sec as u64, m.nsec as u32);
    f.set_modified(t).unwrap();
    drop(f);
    let e = journal::undo(&img, &jp, &UndoOptions::default()).unwrap_err();
    assert!(e.to_string().contains("refusing"), "{e}");
    assert_eq!(sha(&img), changed, "nothing written on refusal");
    let forced = journal::undo(
        &img,
        &jp,
        &UndoOptions {
            force: true,
            ..UndoOptions::default()
        },
    )
    .unwrap();
    assert_eq!(forced.forced, vec![70_000]);
    assert_eq!(sha(&img), before);
}

#[test]
fn damaged_journal_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path());
    let jp = dir.path().join("j");
    journal::apply(&img, &patches(), &allowed(), &jp, &ApplyOptions::default()).unwrap();
    let text = fs::read_to_string(&jp).unwrap();
    let edited = text.replacen("\"offset\": 4096", "\"offset\": 4097", 1);
    assert_ne!(text, edited);
    fs::write(&jp, edited).unwrap();
    let e = journal::inspect(&jp).unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
    fs::write(&jp, &text[..text.len() / 2]).unwrap();
    assert!(matches!(journal::inspect(&jp), Err(Error::Journal(_))));
}

const POINTS: [FaultPoint; 4] = [
    FaultPoint::AfterJournalWritten,
    FaultPoint::AfterHalfPatches,
    FaultPoint::BeforeImageSync,
    FaultPoint::BeforeMarkComplete,
];

fn point_name(p: FaultPoint) -> &'static str {
    match p {
        FaultPoint::AfterJournalWritten => "journal",
        FaultPoint::AfterHalfPatches => "half",
        FaultPoint::BeforeImageSync => "nosync",
        FaultPoint::BeforeMarkComplete => "verified",
    }
}

fn recover_and_check(img: &Path, jp: &Path, mode: RecoverMode, before: &str, after: &str) {
    let pending = journal::pending_journal(img, None).unwrap();
    assert_eq!(pending.as_deref(), Some(jp));
    // undo refuses a pending journal.
    assert!(journal::undo(img, jp, &UndoOptions::default()).is_err());
    let r = journal::recover(img, jp, mode, &UndoOptions::default()).unwrap();
    match mode {
        RecoverMode::RollBack => {
            assert_eq!(sha(img), before);
            assert_eq!(r.journal_state, Some(JournalState::RolledBack));
        }
        RecoverMode::RollForward => {
            assert_eq!(sha(img), after);
            assert_eq!(r.journal_state, Some(JournalState::Complete));
            // A rolled-forward apply can be undone.
            journal::undo(img, jp, &UndoOptions::default()).unwrap();
            assert_eq!(sha(img), before);
        }
    }
    assert_eq!(journal::pending_journal(img, None).unwrap(), None);
}

#[test]
fn injected_errors_leave_a_recoverable_pending_journal() {
    for point in POINTS {
        for mode in [RecoverMode::RollBack, RecoverMode::RollForward] {
            let dir = tempfile::tempdir().unwrap();
            let img = make_image(dir.path());
            let before = sha(&img);
            let after = expected_after(&img);
            let jp = journal::default_journal_path(&img, None);
            let opts = ApplyOptions {
                fault: Some(Fault {
                    point,
                    abort: false,
                }),
                ..ApplyOptions::default()
            };
            let e = journal::apply(&img, &patches(), &allowed(), &jp, &opts).unwrap_err();
            assert!(e.to_string().contains("fault injected"), "{e}");
            assert_eq!(journal::inspect(&jp).unwrap().state, JournalState::Pending);
            if point == FaultPoint::AfterHalfPatches {
                let st = journal::region_states(&img, &jp).unwrap();
                let kinds: Vec<_> = st.iter().map(|(_, s)| *s).collect();
                assert_eq!(
                    kinds,
                    [
                        RegionState::New,
                        RegionState::New,
                        RegionState::Torn,
                        RegionState::Old
                    ]
                );
            }
            recover_and_check(&img, &jp, mode, &before, &after);
        }
    }
}

/// Child side of the crash test: does nothing unless started by `crash_at_each_point...`.
#[test]
fn crash_child() {
    let Ok(point) = std::env::var("DISKIMG_CRASH_CHILD") else {
        return;
    };
    let point = POINTS
        .into_iter()
        .find(|p| point_name(*p) == point)
        .expect("fault point");
    let img = PathBuf::from(std::env::var("DISKIMG_CRASH_IMAGE").unwrap());
    let jp = journal::default_journal_path(&img, None);
    let opts = ApplyOptions {
        fault: Some(Fault { point, abort: true }),
        ..ApplyOptions::default()
    };
    let r = journal::apply(&img, &patches(), &allowed(), &jp, &opts);
    // Not reached when the fault fires.
    eprintln!("child: apply returned {r:?}");
    std::process::exit(3);
}

#[test]
fn crash_at_each_point_then_roll_back_or_forward() {
    use std::os::unix::process::ExitStatusExt;
    let exe = std::env::current_exe().unwrap();
    for point in POINTS {
        for mode in [RecoverMode::RollBack, RecoverMode::RollForward] {
            let dir = tempfile::tempdir().unwrap();
            let img = make_image(dir.path());
            let before = sha(&img);
            let after = expected_after(&img);
            let status = Command::new(&exe)
                .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
                .env("DISKIMG_CRASH_CHILD", point_name(point))
                .env("DISKIMG_CRASH_IMAGE", &img)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert_eq!(
                status.signal(),
                Some(6),
                "child should abort at {point:?}: {status:?}"
            );
            let jp = journal::default_journal_path(&img, None);
            assert_eq!(journal::inspect(&jp).unwrap().state, JournalState::Pending);
            let expect_image = match point {
                FaultPoint::AfterJournalWritten => Some(&before),
                FaultPoint::BeforeImageSync | FaultPoint::BeforeMarkComplete => Some(&after),
                FaultPoint::AfterHalfPatches => None,
            };
            if let Some(h) = expect_image {
                assert_eq!(&sha(&img), h, "image after crash at {point:?}");
            } else {
                let h = sha(&img);
                assert!(h != before && h != after, "half-written image");
            }
            recover_and_check(&img, &jp, mode, &before, &after);
        }
    }
}

#[test]
fn recover_refuses_foreign_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path());
    let jp = dir.path().join("j");
    let opts = ApplyOptions {
        fault: Some(Fault {
            point: FaultPoint::BeforeImageSync,
            abort: false,
        }),
        ..ApplyOptions::default()
    };
    journal::apply(&img, &patches(), &allowed(), &jp, &opts).unwrap_err();
    let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0x11; 600], 4000).unwrap();
    drop(f);
    let e =
        journal::recover(&img, &jp, RecoverMode::RollBack, &UndoOptions::default()).unwrap_err();
    assert!(e.to_string().contains("refusing"), "{e}");
    assert!(
        journal::recover(&img, &jp, RecoverMode::RollForward, &UndoOptions::default()).is_err()
    );
    // A completed journal cannot be "recovered".
    let jp2 = dir.path().join("j2");
    journal::apply(
        &img,
        &[Patch::new(10, vec![1])],
        &[0..20],
        &jp2,
        &ApplyOptions::default(),
    )
    .unwrap();
    assert!(journal::recover(&img, &jp2, RecoverMode::RollBack, &UndoOptions::default()).is_err());
}
