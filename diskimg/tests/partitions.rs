// SPDX-License-Identifier: MIT OR Apache-2.0
//! Partition tables and copy plans on the committed samples (fixtures/partitions/*.tables),
//! damaged variants, a hostile-input loop, and (IMGPREP_INTEROP=1) checks against sfdisk,
//! sgdisk and the gpt/mbrman crates.

use diskimg::disk::{Disk, OpenOptions};
use diskimg::partition::{
    detect_sector_size, read_table, Filesystem, IssueKind, PartitionTable, Role, Scheme,
};
use diskimg::range::{copy_range, plan_copy, Alignment, CopyPlan, DdTarget, GptFix, PlanKind};
use diskimg::{Error, ReadAt};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

// ---------------------------------------------------------------- helpers

/// An image held as a map of non-zero 512-byte sectors (the rest reads as zeros).
#[derive(Clone)]
struct SparseImage {
    len: u64,
    sectors: BTreeMap<u64, Vec<u8>>,
}

impl ReadAt for SparseImage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(self.len - offset) as usize;
        let buf = &mut buf[..n];
        buf.fill(0);
        let first = offset / 512 * 512;
        for (&at, data) in self.sectors.range(first..offset + n as u64) {
            for (i, &b) in data.iter().enumerate() {
                let pos = at + i as u64;
                if pos >= offset && pos < offset + n as u64 {
                    buf[(pos - offset) as usize] = b;
                }
            }
        }
        Ok(n)
    }
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.len)
    }
}

impl SparseImage {
    fn sector_mut(&mut self, offset: u64) -> &mut Vec<u8> {
        assert_eq!(offset % 512, 0);
        self.sectors.entry(offset).or_insert_with(|| vec![0; 512])
    }
    fn write(&mut self, offset: u64, bytes: &[u8]) {
        for (i, &b) in bytes.iter().enumerate() {
            let pos = offset + i as u64;
            self.sector_mut(pos / 512 * 512)[(pos % 512) as usize] = b;
        }
    }
    /// Writes the image as a sparse file.
    fn to_file(&self, path: &Path) {
        let mut f = std::fs::File::create(path).unwrap();
        f.set_len(self.len).unwrap();
        for (&at, data) in &self.sectors {
            use std::os::unix::fs::FileExt;
            f.write_all_at(data, at).unwrap();
        }
        f.flush().unwrap();
    }
}

fn b64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64"),
        }
    };
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let mut n = 0u32;
        for &c in chunk {
            n = (n << 6) | if c == b'=' { 0 } else { val(c) };
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    out
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/partitions")
}

fn sample(name: &str) -> SparseImage {
    let text = std::fs::read_to_string(fixtures().join(format!("{name}.tables"))).unwrap();
    let mut img = SparseImage {
        len: 0,
        sectors: BTreeMap::new(),
    };
    for line in text.lines() {
        let mut w = line.split_whitespace();
        match w.next() {
            Some("len") => img.len = w.next().unwrap().parse().unwrap(),
            Some("at") => {
                let off: u64 = w.next().unwrap().parse().unwrap();
                img.sectors.insert(off, b64_decode(w.next().unwrap()));
            }
            _ => {}
        }
    }
    img
}

const SAMPLES: &[&str] = &["mbr2", "mbrext", "gptwin", "hybrid", "gpt4k", "legacy"];

fn table(img: &SparseImage) -> PartitionTable {
    let ss = detect_sector_size(img).sector_size;
    read_table(img, ss).unwrap()
}

fn kinds(t: &PartitionTable) -> Vec<IssueKind> {
    t.issues.iter().map(|i| i.kind).collect()
}

/// Executes a plan into a sparse file, as a streaming copier would.
fn execute(plan: &CopyPlan, src: &dyn ReadAt, path: &Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(path).unwrap();
    f.set_len(plan.output_len).unwrap();
    for s in &plan.segments {
        let mut pos = s.src.start;
        let mut buf = vec![0u8; 1 << 20];
        while pos < s.src.end {
            let n = ((s.src.end - pos) as usize).min(buf.len());
            src.read_exact_at(&mut buf[..n], pos).unwrap();
            if buf[..n].iter().any(|&b| b != 0) {
                f.write_all_at(&buf[..n], s.dst_offset + (pos - s.src.start))
                    .unwrap();
            }
            pos += n as u64;
        }
    }
    for p in &plan.patches {
        f.write_all_at(&p.bytes, p.offset).unwrap();
    }
}

/// A prefix of `img`: the first `len` bytes.
fn prefix(img: &SparseImage, len: u64) -> SparseImage {
    SparseImage {
        len,
        sectors: img
            .sectors
            .range(..len)
            .map(|(k, v)| (*k, v.clone()))
            .collect(),
    }
}

fn interop() -> bool {
    if std::env::var_os("IMGPREP_INTEROP").is_some_and(|v| v == "1") {
        true
    } else {
        eprintln!("skipped: set IMGPREP_INTEROP=1 to run the sfdisk/sgdisk/gpt/mbrman checks");
        false
    }
}

fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    let o = Command::new(cmd).args(args).output().unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

// ---------------------------------------------------------------- tier 1: samples

#[test]
fn mbr_two_primaries() {
    let t = table(&sample("mbr2"));
    assert_eq!(t.scheme, Scheme::Mbr);
    assert_eq!(t.sector_size, 512);
    assert_eq!(t.label_id(), "0x1234abcd");
    assert!(t.issues.is_empty(), "{:?}", t.issues);
    let p: Vec<_> = t
        .partitions
        .iter()
        .map(|p| {
            (
                p.index,
                p.start_lba,
                p.sectors,
                p.mbr_type,
                p.filesystem,
                p.bootable,
            )
        })
        .collect();
    assert_eq!(
        p,
        vec![
            (1, 2048, 20480, Some(7), Filesystem::Ntfs, true),
            (2, 22528, 43008, Some(7), Filesystem::Ntfs, false)
        ]
    );
    let r = copy_range(&t).unwrap();
    assert_eq!(r.end_sectors, 65536);
    assert_eq!(r.end_bytes, 32 << 20);
    assert_eq!(r.last_partition, Some(2));
}

#[test]
fn mbr_extended_and_logicals() {
    let t = table(&sample("mbrext"));
    assert!(t.issues.is_empty(), "{:?}", t.issues);
    let p: Vec<_> = t
        .partitions
        .iter()
        .map(|p| (p.index, p.role, p.start_lba, p.sectors, p.filesystem))
        .collect();
    assert_eq!(
        p,
        vec![
            (1, Role::Primary, 2048, 4096, Filesystem::Fat12),
            (2, Role::Primary, 6144, 20480, Filesystem::Ntfs),
            (3, Role::Extended, 26624, 104448, Filesystem::NotProbed),
            (5, Role::Logical, 28672, 20480, Filesystem::Ntfs),
            (6, Role::Logical, 51200, 40960, Filesystem::Fat16),
            (7, Role::Logical, 94208, 8192, Filesystem::Empty),
        ]
    );
    assert_eq!(t.mbr.extended, Some((26624, 104448)));
    // The container's end counts, not the last logical's (94208 + 8192 = 102400).
    let r = copy_range(&t).unwrap();
    assert_eq!(r.end_sectors, 26624 + 104448);
    assert_eq!(r.last_partition, Some(3));
}

#[test]
fn gpt_windows_layout() {
    let img = sample("gptwin");
    let t = table(&img);
    assert_eq!(t.scheme, Scheme::Gpt);
    assert!(t.issues.is_empty(), "{:?}", t.issues);
    let g = t.gpt.as_ref().unwrap();
    assert_eq!(g.header.first_usable, 34);
    assert_eq!(g.header.last_usable, 262110);
    assert!(g.backup.is_some());
    assert_eq!(t.label_id(), "5B2C1C0E-2A6B-4F7E-9C1D-3E4F5A6B7C8D");
    let p: Vec<_> = t
        .partitions
        .iter()
        .map(|p| {
            (
                p.index,
                p.start_lba,
                p.sectors,
                p.type_name.as_str(),
                p.name.as_deref().unwrap_or(""),
                p.filesystem,
            )
        })
        .collect();
    assert_eq!(
        p,
        vec![
            (
                1,
                2048,
                40960,
                "EFI System",
                "EFI system partition",
                Filesystem::Fat32
            ),
            (
                2,
                43008,
                32768,
                "Microsoft reserved",
                "Microsoft reserved partition",
                Filesystem::Empty
            ),
            (
                3,
                75776,
                102400,
                "Microsoft basic data",
                "Basic data partition",
                Filesystem::Ntfs
            ),
            (
                4,
                178176,
                20480,
                "Windows recovery environment",
                "Recovery",
                Filesystem::Ntfs
            ),
        ]
    );
    assert_eq!(t.partitions[3].attributes, 1 | (1 << 63));
    assert_eq!(
        t.partitions[0].guid.unwrap().to_string(),
        "11111111-2222-3333-4444-555555555501"
    );
    let r = copy_range(&t).unwrap();
    assert_eq!(r.end_sectors, 198656);
    assert_eq!(r.original_disk_bytes, Some(128 << 20));
    assert_eq!(r.backup_gpt_sectors, Some(33));
}

#[test]
fn hybrid_mbr_uses_gpt_and_warns() {
    let t = table(&sample("hybrid"));
    assert_eq!(t.scheme, Scheme::Gpt);
    assert!(t.gpt.as_ref().unwrap().hybrid);
    assert!(kinds(&t).contains(&IssueKind::HybridMbr), "{:?}", t.issues);
    assert!(!kinds(&t).contains(&IssueKind::HybridMismatch));
    assert!(t.errors().next().is_none());
    assert_eq!(t.partitions[2].filesystem, Filesystem::Bitlocker);
    // A hybrid entry that matches nothing is reported.
    let mut img = sample("hybrid");
    let slot = t
        .mbr
        .entries
        .iter()
        .find(|e| e.is_used() && e.kind != 0xEE)
        .unwrap()
        .slot as u64;
    img.write(446 + 16 * (slot - 1) + 12, &12345u32.to_le_bytes());
    assert!(kinds(&table(&img)).contains(&IssueKind::HybridMismatch));
    // Relocation does not touch a hybrid MBR.
    let plan = plan_copy(&sample("hybrid"), &t, GptFix::Relocate).unwrap();
    assert!(plan.patches.iter().all(|p| p.offset != 0));
}

#[test]
fn gpt_4kn() {
    let img = sample("gpt4k");
    let g = detect_sector_size(&img);
    assert_eq!(g.sector_size, 4096, "{}", g.reason);
    let t = read_table(&img, 4096).unwrap();
    assert!(t.issues.is_empty(), "{:?}", t.issues);
    let p: Vec<_> = t
        .partitions
        .iter()
        .map(|p| (p.start_lba, p.sectors, p.start_byte, p.filesystem))
        .collect();
    assert_eq!(
        p,
        vec![
            (256, 2048, 1 << 20, Filesystem::Exfat),
            (2304, 8192, 2304 * 4096, Filesystem::Ntfs)
        ]
    );
    let r = copy_range(&t).unwrap();
    assert_eq!(r.end_sectors, 10496);
    assert_eq!(r.end_bytes, 10496 * 4096);
    assert_eq!(r.backup_gpt_sectors, Some(5));
    assert!(r
        .alignments
        .iter()
        .all(|a| a.alignment == Alignment::OneMib));
    // Read as 512 it is not a GPT (as sfdisk on the file shows): the MBR's 0xEE entry is
    // there but no header at LBA 1 → an error, not a panic.
    assert!(read_table(&img, 512).is_err());
}

#[test]
fn legacy_alignment() {
    let t = table(&sample("legacy"));
    let r = copy_range(&t).unwrap();
    let a: Vec<_> = r.alignments.iter().map(|a| a.alignment).collect();
    assert_eq!(a, vec![Alignment::Legacy63, Alignment::FourKib]);
    let plan = plan_copy(&sample("legacy"), &t, GptFix::Relocate).unwrap();
    assert!(plan.advice.iter().any(|a| a.contains("63-sector")));
}

#[test]
fn sfdisk_dump_matches_golden() {
    for name in SAMPLES {
        let t = table(&sample(name));
        let dev = if *name == "gpt4k" {
            "/dev/loop9".to_string()
        } else {
            format!("{name}.img")
        };
        let want = std::fs::read_to_string(fixtures().join(format!("{name}.sfdisk"))).unwrap();
        assert_eq!(t.sfdisk_dump(&dev), want, "{name}");
    }
}

#[test]
fn text_and_json_outputs() {
    for name in SAMPLES {
        let img = sample(name);
        let t = table(&img);
        let r = copy_range(&t).unwrap();
        let plan = plan_copy(&img, &t, GptFix::Relocate).unwrap();
        let text = format!("{}{}{}", t.to_text(), r.to_text(), plan.to_text());
        assert!(text.contains("Copy range"), "{text}");
        let j = serde_json::to_value((&t, &r, &plan)).unwrap();
        assert_eq!(j[0]["sector_size"], t.sector_size);
        assert_eq!(j[1]["end_bytes"], r.end_bytes);
    }
}

// ---------------------------------------------------------------- tier 1: copy plans

#[test]
fn gpt_relocate_plan() {
    let img = sample("gptwin");
    let t = table(&img);
    let plan = plan_copy(&img, &t, GptFix::Relocate).unwrap();
    assert_eq!(plan.kind, PlanKind::GptRelocate);
    // 198656 + 33 sectors, rounded up to 1 MiB = 98 MiB.
    assert_eq!(plan.lun_size, 98 << 20);
    assert_eq!(plan.output_len, 98 << 20);
    assert_eq!(plan.segments.len(), 1);
    assert_eq!(plan.segments[0].src, 0..198656 * 512);
    let offs: Vec<u64> = plan.patches.iter().map(|p| p.offset).collect();
    let new_last = (98u64 << 20) / 512 - 1;
    assert_eq!(offs, vec![0, 512, (new_last - 32) * 512, new_last * 512]);
    assert!(plan.patches.iter().all(|p| p.len() % 512 == 0));
    // The output, re-read, is a clean GPT with the same partitions.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.img");
    execute(&plan, &img, &out);
    let d = Disk::open(&out, OpenOptions::default()).unwrap();
    let t2 = d.table();
    assert!(t2.issues.is_empty(), "{:?}", t2.issues);
    assert_eq!(t2.partitions, t.partitions);
    let g = t2.gpt.as_ref().unwrap();
    assert_eq!(g.header.last_usable, new_last - 33);
    assert_eq!(g.backup.as_ref().unwrap().my_lba, new_last);
    // dd lines: exact prefix, then the patches.
    let dd = plan.dd_commands(&DdTarget {
        image: "gptwin.img".into(),
        host: Some("root@target".into()),
        device: "/dev/zvol/rdsk/tank/win".into(),
    });
    assert_eq!(dd.len(), 5);
    assert!(dd[0].starts_with("dd if=gptwin.img bs=1M count=101711872 iflag=count_bytes"));
    assert!(dd[3].starts_with("dd if=gptwin.img bs=512 skip=2 count=32 | ssh root@target"));
    assert!(dd[3].contains(&format!("seek={}", new_last - 32)));
}

#[test]
fn plan_runs_through_the_streaming_copier() {
    use diskimg::copy::{copy_reader, Output};
    for (name, fix) in [
        ("gptwin", GptFix::Relocate),
        ("gpt4k", GptFix::Relocate),
        ("gptwin", GptFix::KeepBackup),
    ] {
        let img = sample(name);
        let t = table(&img);
        let plan = plan_copy(&img, &t, fix).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
        execute(&plan, &img, &a);
        let f = std::fs::File::create(&b).unwrap();
        let rep = copy_reader(&img, &plan.to_copy_job(), Output::File(&f), &mut |_| {}).unwrap();
        assert_eq!(
            rep.patched_bytes,
            plan.patches.iter().map(|p| p.len()).sum::<u64>()
        );
        drop(f);
        assert!(
            std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
            "{name} {fix:?}"
        );
    }
}

#[test]
fn gpt_relocate_from_prefix_copy() {
    // The image itself is already a bare prefix (backup missing): same plan, warnings only.
    let full = sample("gptwin");
    let img = prefix(&full, 198656 * 512);
    let t = table(&img);
    assert!(t.errors().next().is_none(), "{:?}", t.issues);
    assert!(kinds(&t).contains(&IssueKind::GptBeyondEnd));
    let plan = plan_copy(&img, &t, GptFix::Relocate).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.img");
    execute(&plan, &img, &out);
    let t2 = Disk::open(&out, OpenOptions::default())
        .unwrap()
        .table()
        .clone();
    assert!(t2.issues.is_empty(), "{:?}", t2.issues);
    assert_eq!(t2.partitions, t.partitions);
}

#[test]
fn gpt_keep_backup_plan() {
    let img = sample("gptwin");
    let t = table(&img);
    let plan = plan_copy(&img, &t, GptFix::KeepBackup).unwrap();
    assert_eq!(plan.kind, PlanKind::GptKeepBackup);
    assert_eq!(plan.lun_size, 128 << 20);
    assert_eq!(plan.output_len, 128 << 20);
    // Prefix + the last 33 sectors, copied from the image; no patches.
    assert_eq!(plan.segments.len(), 2);
    assert_eq!(plan.segments[1].src, (262144 - 33) * 512..262144 * 512);
    assert!(plan.patches.is_empty());
    let dd = plan.dd_commands(&DdTarget {
        image: "gptwin.img".into(),
        host: None,
        device: "/dev/sdz".into(),
    });
    assert_eq!(
        dd[1],
        "dd if=gptwin.img bs=512 skip=262111 count=33 | dd of=/dev/sdz obs=512 seek=262111 conv=notrunc"
    );
    // From a bare prefix, the backup is rebuilt as patches at the original location.
    let pre = prefix(&img, 198656 * 512);
    let tp = table(&pre);
    let plan2 = plan_copy(&pre, &tp, GptFix::KeepBackup).unwrap();
    assert_eq!(plan2.output_len, 128 << 20);
    assert_eq!(plan2.patches.len(), 2);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
    execute(&plan, &img, &a);
    execute(&plan2, &pre, &b);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let t2 = Disk::open(&b, OpenOptions::default())
        .unwrap()
        .table()
        .clone();
    assert!(t2.issues.is_empty(), "{:?}", t2.issues);
}

#[test]
fn gpt_4kn_relocate() {
    let img = sample("gpt4k");
    let t = read_table(&img, 4096).unwrap();
    let plan = plan_copy(&img, &t, GptFix::Relocate).unwrap();
    // 10496 + 5 sectors of 4 KiB → 42 MiB.
    assert_eq!(plan.lun_size, 42 << 20);
    let new_last = (42u64 << 20) / 4096 - 1;
    let offs: Vec<u64> = plan.patches.iter().map(|p| p.offset).collect();
    assert_eq!(offs, vec![0, 4096, (new_last - 4) * 4096, new_last * 4096]);
    assert!(plan.advice.iter().any(|a| a.contains("4096 bytes")));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.img");
    execute(&plan, &img, &out);
    let d = Disk::open(&out, OpenOptions::default()).unwrap();
    assert_eq!(d.sector_size(), 4096);
    assert!(d.table().issues.is_empty(), "{:?}", d.table().issues);
    assert_eq!(d.table().partitions, t.partitions);
    let dd = plan.dd_commands(&DdTarget {
        image: "x.img".into(),
        host: None,
        device: "/dev/zvol/x".into(),
    });
    assert!(dd[0].contains(&format!("count={} iflag=count_bytes", 10496 * 4096)));
    assert!(dd[3].contains("bs=4096 skip=2 count=4"));
}

#[test]
fn disk_open_detects_and_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("g4.img");
    sample("gpt4k").to_file(&p);
    let d = Disk::open(&p, OpenOptions::default()).unwrap();
    assert_eq!(d.sector_size(), 4096);
    assert_eq!(d.len(), 64 << 20);
    assert!(!d.is_block_device());
    assert_eq!(d.table().partitions.len(), 2);
    assert!(d.file().metadata().unwrap().is_file());
    // Forcing 512 on a 4Kn GPT: no header at LBA 1 → error.
    let e = Disk::open(
        &p,
        OpenOptions {
            writable: false,
            sector_size: Some(512),
        },
    );
    assert!(e.is_err());
    let e = Disk::open(
        &p,
        OpenOptions {
            writable: false,
            sector_size: Some(1000),
        },
    );
    assert!(matches!(e, Err(Error::Invalid(_))));
    // MBR with NTFS at 4 KiB: detected from the boot sector.
    let mut m = sample("mbr2");
    // Move the first NTFS boot sector to 2048 × 4096 and make it say 4096 B/sector.
    let bs = m.sectors.remove(&(2048 * 512)).unwrap();
    m.sectors.remove(&(22528 * 512));
    m.len = 300 << 20;
    m.write(2048 * 4096, &bs);
    m.write(2048 * 4096 + 0x0B, &4096u16.to_le_bytes());
    let g = detect_sector_size(&m);
    assert_eq!(g.sector_size, 4096, "{}", g.reason);
}

// ---------------------------------------------------------------- tier 1: damage

#[test]
fn gpt_primary_header_crc_uses_backup() {
    let mut img = sample("gptwin");
    img.sector_mut(512)[40] ^= 0xFF; // first_usable byte, CRC now wrong
    let t = table(&img);
    assert_eq!(
        t.gpt.as_ref().unwrap().used,
        diskimg::partition::HeaderCopy::Backup
    );
    let w: Vec<_> = t.warnings().collect();
    assert!(w.iter().any(|i| i.kind == IssueKind::GptPrimaryDamaged
        && i.message.contains("header CRC32")
        && i.message.contains("using the backup")));
    assert_eq!(t.partitions.len(), 4);
    // The relocate plan rewrites the primary header and array too.
    let plan = plan_copy(&img, &t, GptFix::Relocate).unwrap();
    assert_eq!(plan.patches.len(), 5);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.img");
    execute(&plan, &img, &out);
    let t2 = Disk::open(&out, OpenOptions::default())
        .unwrap()
        .table()
        .clone();
    assert!(t2.issues.is_empty(), "{:?}", t2.issues);
    assert_eq!(t2.partitions, t.partitions);
}

#[test]
fn gpt_array_crc_uses_backup() {
    let mut img = sample("gptwin");
    img.sector_mut(1024)[200] ^= 1;
    let t = table(&img);
    assert!(t
        .issues
        .iter()
        .any(|i| i.kind == IssueKind::GptPrimaryDamaged && i.message.contains("entry array")));
    assert_eq!(t.partitions.len(), 4);
}

#[test]
fn gpt_both_headers_bad_is_an_error() {
    let mut img = sample("gptwin");
    img.sector_mut(512)[0] = b'X';
    img.sector_mut((262144 - 1) * 512)[0] = b'X';
    match read_table(&img, 512) {
        Err(Error::PartitionTable(m)) => {
            assert!(m.contains("primary") && m.contains("backup"), "{m}")
        }
        other => panic!("{other:?}"),
    }
}

/// Rewrites the primary header of `img` with `f` and fixes its CRC.
fn edit_primary(img: &mut SparseImage, f: impl FnOnce(&mut Vec<u8>)) {
    let s = img.sector_mut(512);
    f(s);
    s[16..20].fill(0);
    let crc = diskimg::partition::crc32(&s[..92]);
    s[16..20].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn gpt_absurd_headers_rejected() {
    for (what, at, val) in [
        ("entry size", 84usize, 129u32),
        ("entry size", 84, 0),
        ("entries", 80, 1_000_000),
        ("entries", 80, 0),
    ] {
        let mut img = sample("gptwin");
        edit_primary(&mut img, |s| {
            s[at..at + 4].copy_from_slice(&val.to_le_bytes())
        });
        let t = table(&img);
        let m = &t
            .issues
            .iter()
            .find(|i| i.kind == IssueKind::GptPrimaryDamaged)
            .unwrap_or_else(|| panic!("{what} {val}: {:?}", t.issues))
            .message;
        assert!(
            m.contains(if what == "entries" {
                "entries"
            } else {
                "entry size"
            }),
            "{m}"
        );
    }
    // first usable > last usable
    let mut img = sample("gptwin");
    edit_primary(&mut img, |s| {
        s[40..48].copy_from_slice(&999_999u64.to_le_bytes())
    });
    let t = table(&img);
    assert!(t.issues[0]
        .message
        .contains("first usable LBA 999999 > last usable"));
}

/// Sets GPT entry `n` (1-based) first/last LBA in both arrays and fixes the CRCs.
fn edit_entry(img: &mut SparseImage, n: u64, first: u64, last: u64) {
    for (hdr, arr) in [(512u64, 1024u64), ((262144 - 1) * 512, (262144 - 33) * 512)] {
        let off = arr + (n - 1) * 128;
        img.write(off + 32, &first.to_le_bytes());
        img.write(off + 40, &last.to_le_bytes());
        let mut a = vec![0u8; 128 * 128];
        img.read_exact_at(&mut a, arr).unwrap();
        let crc = diskimg::partition::crc32(&a);
        let s = img.sector_mut(hdr);
        s[88..92].copy_from_slice(&crc.to_le_bytes());
        s[16..20].fill(0);
        let hc = diskimg::partition::crc32(&s[..92]);
        s[16..20].copy_from_slice(&hc.to_le_bytes());
    }
}

#[test]
fn gpt_entry_damage() {
    // Overlap.
    let mut img = sample("gptwin");
    edit_entry(&mut img, 2, 43008 - 10, 75775);
    let t = table(&img);
    assert!(kinds(&t).contains(&IssueKind::Overlap), "{:?}", t.issues);
    assert!(matches!(copy_range(&t), Err(Error::PartitionTable(m)) if m.contains("overlap")));
    // First > last.
    let mut img = sample("gptwin");
    edit_entry(&mut img, 2, 75775, 43008);
    let t = table(&img);
    assert!(kinds(&t).contains(&IssueKind::GptEntry));
    assert_eq!(t.partitions.len(), 3);
    // Outside the usable range (but inside the image).
    let mut img = sample("gptwin");
    edit_entry(&mut img, 4, 178176, 262130);
    let t = table(&img);
    assert!(
        kinds(&t).contains(&IssueKind::OutsideUsable),
        "{:?}",
        t.issues
    );
    // Past the image end → Truncated.
    let mut img = sample("gptwin");
    edit_entry(&mut img, 4, 178176, u64::MAX / 512 + 5);
    let t = table(&img);
    assert!(t.errors().next().is_some());
}

#[test]
fn truncated_mbr_image() {
    let mut img = sample("mbr2");
    img.len = 20 << 20; // partition 2 ends at 32 MiB
    let t = table(&img);
    let e = t.errors().next().unwrap();
    assert_eq!(e.kind, IssueKind::BeyondEnd);
    assert_eq!(e.end, Some(32 << 20));
    match copy_range(&t) {
        Err(Error::Truncated {
            needed, available, ..
        }) => {
            assert_eq!(needed, 32 << 20);
            assert_eq!(available, 20 << 20);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(t.partitions[1].filesystem, Filesystem::Ntfs);
}

#[test]
fn mbr_overlap() {
    let mut img = sample("mbr2");
    img.write(446 + 16 + 8, &20000u32.to_le_bytes());
    let t = table(&img);
    let e: Vec<_> = t.errors().collect();
    assert!(
        e.iter()
            .any(|i| i.kind == IssueKind::Overlap && i.message.contains("partitions 1")),
        "{e:?}"
    );
}

/// Offset of the EBR chain's n-th EBR in the mbrext sample.
fn ebrs(img: &SparseImage) -> Vec<u64> {
    let t = table(img);
    let ext = t.mbr.extended.unwrap().0;
    t.partitions
        .iter()
        .filter(|p| p.role == Role::Logical)
        .map(|p| {
            // sfdisk leaves 2048 sectors (1 MiB) between an EBR and its logical... find it.
            let mut lba = p.start_lba - 1;
            while lba > ext && !img.sectors.contains_key(&(lba * 512)) {
                lba -= 1;
            }
            lba
        })
        .collect()
}

#[test]
fn ebr_loop_and_backward_link() {
    let base = sample("mbrext");
    let e = ebrs(&base);
    assert_eq!(e[0], 26624);
    let ext = 26624u64;
    // Third EBR links back to the first: loop.
    let mut img = base.clone();
    img.write(e[2] * 512 + 446 + 16 + 4, &[0x05]);
    img.write(e[2] * 512 + 446 + 16 + 8, &0u32.to_le_bytes());
    // rel 0 means "end": link to the second EBR instead, then make the second link to the third
    img.write(
        e[2] * 512 + 446 + 16 + 8,
        &((e[1] - ext) as u32).to_le_bytes(),
    );
    img.write(e[2] * 512 + 446 + 16 + 12, &100u32.to_le_bytes());
    let t = table(&img);
    assert!(kinds(&t).contains(&IssueKind::EbrLoop), "{:?}", t.issues);
    assert!(kinds(&t).contains(&IssueKind::EbrBackward));
    assert!(copy_range(&t).is_err());
    // Self-link.
    let mut img = base.clone();
    img.write(e[0] * 512 + 446 + 16 + 8, &0u32.to_le_bytes());
    img.write(e[0] * 512 + 446 + 16 + 4, &[0x05]);
    let t = table(&img);
    // rel 0 → end of chain: only the first logical remains.
    assert_eq!(
        t.partitions
            .iter()
            .filter(|p| p.role == Role::Logical)
            .count(),
        1
    );
    // The second EBR inside the first logical partition.
    let mut img = base.clone();
    let first_logical = 28672u64;
    img.write(
        e[0] * 512 + 446 + 16 + 8,
        &((first_logical + 100 - ext) as u32).to_le_bytes(),
    );
    let t = table(&img);
    assert!(
        t.errors()
            .any(|i| i.kind == IssueKind::Overlap
                && i.message.contains("inside logical partition 5")),
        "{:?}",
        t.issues
    );
    // Missing EBR signature.
    let mut img = base;
    img.sector_mut(e[1] * 512)[510] = 0;
    let t = table(&img);
    assert!(kinds(&t).contains(&IssueKind::EbrDamaged));
}

#[test]
fn no_table_and_tiny_images() {
    let img = SparseImage {
        len: 1 << 20,
        sectors: BTreeMap::new(),
    };
    assert!(matches!(
        read_table(&img, 512),
        Err(Error::PartitionTable(_))
    ));
    let img = SparseImage {
        len: 100,
        sectors: BTreeMap::new(),
    };
    assert!(matches!(
        read_table(&img, 512),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(read_table(&img, 777), Err(Error::Invalid(_))));
}

// ---------------------------------------------------------------- tier 1: hostile input

/// xorshift64*, fixed seed: the same mutations every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[test]
fn hostile_mutations_never_panic() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut runs = 0;
    for name in SAMPLES {
        let base = sample(name);
        let keys: Vec<u64> = base.sectors.keys().copied().collect();
        for _ in 0..600 {
            let mut img = base.clone();
            for _ in 0..1 + rng.below(8) {
                let sec = keys[rng.below(keys.len() as u64) as usize];
                // Bias towards the table fields: first 100 bytes of a header, the MBR entries.
                let pos = match rng.below(3) {
                    0 => rng.below(100),
                    1 => 446 + rng.below(66),
                    _ => rng.below(512),
                };
                let v = match rng.below(4) {
                    0 => 0,
                    1 => 0xFF,
                    _ => rng.next() as u8,
                };
                img.sector_mut(sec)[pos as usize] = v;
                // Sometimes fix the GPT header CRCs so the mutation gets past them.
                if rng.below(2) == 0 {
                    for hdr in [512u64, 4096] {
                        if let Some(s) = img.sectors.get_mut(&hdr) {
                            if &s[..8] == b"EFI PART" {
                                s[16..20].fill(0);
                                let crc = diskimg::partition::crc32(&s[..92]);
                                s[16..20].copy_from_slice(&crc.to_le_bytes());
                            }
                        }
                    }
                }
            }
            if rng.below(10) == 0 {
                img.len = rng.below(base.len + 1);
            }
            for ss in [512, 4096] {
                if let Ok(t) = read_table(&img, ss) {
                    let _ = t.to_text();
                    let _ = t.sfdisk_dump("x");
                    let _ = serde_json::to_string(&t).unwrap();
                    let _ = t.check();
                    if let Ok(r) = copy_range(&t) {
                        let _ = r.to_text();
                        for fix in [GptFix::KeepBackup, GptFix::Relocate] {
                            if let Ok(p) = plan_copy(&img, &t, fix) {
                                let _ = p.to_text();
                                let _ = p.dd_commands(&DdTarget {
                                    image: "i".into(),
                                    host: None,
                                    device: "d".into(),
                                });
                                assert!(p
                                    .patches
                                    .windows(2)
                                    .all(|w| w[0].end().unwrap() <= w[1].offset));
                                assert!(p.patches.iter().all(|x| x.end().unwrap() <= p.output_len));
                            }
                        }
                    }
                }
                let _ = detect_sector_size(&img);
                runs += 1;
            }
        }
    }
    assert_eq!(runs, SAMPLES.len() * 600 * 2);
}

// ---------------------------------------------------------------- tier 2: interop

#[test]
fn interop_sfdisk_dump() {
    if !interop() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in SAMPLES.iter().filter(|n| **n != "gpt4k") {
        let p = dir.path().join(format!("{name}.img"));
        sample(name).to_file(&p);
        let ps = p.to_str().unwrap();
        let o = Command::new("sfdisk").args(["-d", ps]).output().unwrap();
        assert!(o.status.success(), "sfdisk -d {ps}");
        let d = Disk::open(&p, OpenOptions::default()).unwrap();
        assert_eq!(
            d.table().sfdisk_dump(ps),
            String::from_utf8(o.stdout).unwrap(),
            "{name}"
        );
    }
    // 4Kn through a 4096-byte loop device, if we may.
    let p = dir.path().join("gpt4k.img");
    sample("gpt4k").to_file(&p);
    let (ok, loopdev) = run(
        "losetup",
        &["-f", "--show", "-b", "4096", p.to_str().unwrap()],
    );
    if !ok {
        eprintln!("skipped: losetup -b 4096 not available ({loopdev})");
        return;
    }
    let loopdev = loopdev.trim().to_string();
    let o = Command::new("sfdisk")
        .args(["-d", &loopdev])
        .output()
        .unwrap();
    let d = Disk::open(&loopdev, OpenOptions::default());
    let _ = run("losetup", &["-d", &loopdev]);
    let d = d.unwrap();
    assert!(d.is_block_device());
    assert_eq!(d.sector_size(), 4096);
    assert_eq!(
        d.table().sfdisk_dump(&loopdev),
        String::from_utf8(o.stdout).unwrap()
    );
    // 4Kn relocation: byte for byte what `sgdisk -e` writes through a 4096-byte loop device,
    // and `sgdisk -v` finds no problems in our copy.
    let img = sample("gpt4k");
    let t = read_table(&img, 4096).unwrap();
    let plan = plan_copy(&img, &t, GptFix::Relocate).unwrap();
    let ours = dir.path().join("ours4k.img");
    execute(&plan, &img, &ours);
    let theirs = dir.path().join("sgdisk4k.img");
    let pre = prefix(&img, copy_range(&t).unwrap().end_bytes);
    pre.to_file(&theirs);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&theirs)
        .unwrap()
        .set_len(plan.lun_size)
        .unwrap();
    for (f, fix) in [(&theirs, true), (&ours, false)] {
        let (ok, l) = run(
            "losetup",
            &["-f", "--show", "-b", "4096", f.to_str().unwrap()],
        );
        assert!(ok, "{l}");
        let l = l.trim().to_string();
        let (_, out) = if fix {
            run("sgdisk", &["-e", &l])
        } else {
            run("sgdisk", &["-v", &l])
        };
        let rows = sgdisk_rows(&l);
        let _ = run("losetup", &["-d", &l]);
        assert_eq!(rows, ours_rows(&t));
        if !fix {
            assert!(out.contains("No problems found"), "{out}");
        }
    }
    let a = std::fs::read(&ours).unwrap();
    let b = std::fs::read(&theirs).unwrap();
    let diff: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).take(20).collect();
    assert!(
        diff.is_empty(),
        "4Kn: differs from sgdisk -e at bytes {diff:?}"
    );
}

/// `sgdisk -p` partition rows: (number, start, end).
fn sgdisk_rows(path: &str) -> Vec<(u32, u64, u64)> {
    let (_, out) = run("sgdisk", &["-p", path]);
    out.lines()
        .skip_while(|l| !l.starts_with("Number"))
        .skip(1)
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            Some((
                w.first()?.parse().ok()?,
                w.get(1)?.parse().ok()?,
                w.get(2)?.parse().ok()?,
            ))
        })
        .collect()
}

fn ours_rows(t: &PartitionTable) -> Vec<(u32, u64, u64)> {
    t.partitions
        .iter()
        .map(|p| (p.index, p.start_lba, p.end_lba() - 1))
        .collect()
}

#[test]
fn interop_sgdisk_relocated_copy() {
    if !interop() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in ["gptwin", "hybrid"] {
        let src = dir.path().join(format!("{name}.img"));
        let img = sample(name);
        img.to_file(&src);
        let srcs = src.to_str().unwrap();
        let d = Disk::open(&src, OpenOptions::default()).unwrap();
        assert_eq!(sgdisk_rows(srcs), ours_rows(d.table()), "{name}");
        for fix in [GptFix::Relocate, GptFix::KeepBackup] {
            let plan = plan_copy(d.file(), d.table(), fix).unwrap();
            let out = dir.path().join(format!("{name}-{fix:?}.img"));
            execute(&plan, d.file(), &out);
            let outs = out.to_str().unwrap();
            let (_, v) = run("sgdisk", &["-v", outs]);
            assert!(v.contains("No problems found"), "{name} {fix:?}: {v}");
            assert_eq!(sgdisk_rows(outs), ours_rows(d.table()), "{name} {fix:?}");
            let (ok, sf) = run("sfdisk", &["-d", outs]);
            assert!(ok && sf.contains("label: gpt"), "{sf}");
            if fix == GptFix::Relocate && name == "gptwin" {
                // Byte for byte what `sgdisk -e` writes on the same prefix.
                let pe = dir.path().join("sgdisk-e.img");
                let pre = prefix(&img, copy_range(d.table()).unwrap().end_bytes);
                pre.to_file(&pe);
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&pe)
                    .unwrap()
                    .set_len(plan.lun_size)
                    .unwrap();
                let (ok, e) = run("sgdisk", &["-e", pe.to_str().unwrap()]);
                assert!(ok, "{e}");
                let a = std::fs::read(&out).unwrap();
                let b = std::fs::read(&pe).unwrap();
                let diff: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).take(20).collect();
                assert!(diff.is_empty(), "differs from sgdisk -e at bytes {diff:?}");
            }
        }
    }
}

/// sgdisk-made layouts beyond the samples: relocation must equal `sgdisk -e` byte for byte
/// and the dump must equal `sfdisk -d`.
#[test]
fn interop_sgdisk_layouts() {
    if !interop() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("entries256", &["-S", "256", "-n1:0:+10M", "-n2:0:+5M"]),
        ("entries16", &["-S", "16", "-n1:0:+10M"]),
        // Main table moved to LBA 2048: first usable 2080, sgdisk -e mirrors it at the end.
        ("table2048", &["-j", "2048", "-n1:4096:+10M", "-n2:0:+5M"]),
        ("gaps", &["-n3:0:+4M", "-n7:0:+4M"]),
        ("full", &["-n1:0:0"]),
        (
            "names",
            &[
                "-n1:0:+1M",
                "-c1:a \"q\" $x `b` \\z",
                "-n2:0:+1M",
                "-c2:Grüße",
                "-A2:set:2",
                "-A2:set:60",
                "-A2:set:1",
            ],
        ),
    ];
    for (name, args) in cases {
        let p = dir.path().join(format!("{name}.img"));
        std::fs::File::create(&p)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        let ps = p.to_str().unwrap();
        let mut a: Vec<&str> = args.to_vec();
        a.push(ps);
        let (ok, out) = run("sgdisk", &a);
        assert!(ok, "{name}: {out}");
        let d = Disk::open(&p, OpenOptions::default()).unwrap();
        assert!(
            d.table().issues.is_empty(),
            "{name}: {:?}",
            d.table().issues
        );
        let o = Command::new("sfdisk").args(["-d", ps]).output().unwrap();
        assert_eq!(
            d.table().sfdisk_dump(ps),
            String::from_utf8(o.stdout).unwrap(),
            "{name}"
        );
        let plan = d.plan_copy(GptFix::Relocate).unwrap();
        let ours = dir.path().join(format!("{name}.ours"));
        execute(&plan, d.file(), &ours);
        let (_, v) = run("sgdisk", &["-v", ours.to_str().unwrap()]);
        assert!(v.contains("No problems found"), "{name}: {v}");
        let theirs = dir.path().join(format!("{name}.sgdisk"));
        let end = d.copy_range().unwrap().end_bytes as usize;
        let full = std::fs::read(&p).unwrap();
        std::fs::write(&theirs, &full[..end]).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&theirs)
            .unwrap()
            .set_len(plan.lun_size)
            .unwrap();
        let (ok, e) = run("sgdisk", &["-e", theirs.to_str().unwrap()]);
        assert!(ok, "{name}: sgdisk -e: {e}");
        let (a, b) = (
            std::fs::read(&ours).unwrap(),
            std::fs::read(&theirs).unwrap(),
        );
        let diff: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).take(10).collect();
        assert!(
            diff.is_empty(),
            "{name}: differs from sgdisk -e at {diff:?}"
        );
        // Fix (a) from a bare prefix rebuilds the full disk's backup exactly.
        let pre = dir.path().join(format!("{name}.prefix"));
        std::fs::write(&pre, &full[..end]).unwrap();
        let dp = Disk::open(&pre, OpenOptions::default()).unwrap();
        let plan_a = dp.plan_copy(GptFix::KeepBackup).unwrap();
        let out_a = dir.path().join(format!("{name}.a"));
        execute(&plan_a, dp.file(), &out_a);
        let (_, v) = run("sgdisk", &["-v", out_a.to_str().unwrap()]);
        assert!(v.contains("No problems found"), "{name} (a): {v}");
    }
}

#[test]
fn interop_gpt_and_mbrman_crates() {
    if !interop() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in ["gptwin", "hybrid", "gpt4k"] {
        let p = dir.path().join(format!("{name}.img"));
        sample(name).to_file(&p);
        let d = Disk::open(&p, OpenOptions::default()).unwrap();
        let lb = if d.sector_size() == 4096 {
            gpt::disk::LogicalBlockSize::Lb4096
        } else {
            gpt::disk::LogicalBlockSize::Lb512
        };
        let g = gpt::GptConfig::new()
            .writable(false)
            .logical_block_size(lb)
            .open(&p)
            .unwrap();
        let theirs: Vec<_> = g
            .partitions()
            .iter()
            .map(|(i, p)| {
                (
                    *i,
                    p.first_lba,
                    p.last_lba,
                    p.part_guid.to_string().to_uppercase(),
                    p.name.clone(),
                    p.flags,
                )
            })
            .collect();
        let ours: Vec<_> = d
            .table()
            .partitions
            .iter()
            .map(|p| {
                (
                    p.index,
                    p.start_lba,
                    p.end_lba() - 1,
                    p.guid.unwrap().to_string(),
                    p.name.clone().unwrap_or_default(),
                    p.attributes,
                )
            })
            .collect();
        assert_eq!(ours, theirs, "{name}");
        assert_eq!(
            g.guid().to_string().to_uppercase(),
            d.table().label_id(),
            "{name}"
        );
    }
    for name in ["mbr2", "mbrext", "legacy"] {
        let p = dir.path().join(format!("{name}.img"));
        sample(name).to_file(&p);
        let d = Disk::open(&p, OpenOptions::default()).unwrap();
        let mut f = std::fs::File::open(&p).unwrap();
        let m = mbrman::MBR::read_from(&mut f, 512).unwrap();
        let theirs: Vec<_> = m
            .iter()
            .filter(|(_, e)| e.is_used())
            .map(|(i, e)| {
                (
                    i as u32,
                    e.sys,
                    u64::from(e.starting_lba),
                    u64::from(e.sectors),
                )
            })
            .collect();
        let ours: Vec<_> = d
            .table()
            .partitions
            .iter()
            .map(|p| (p.index, p.mbr_type.unwrap(), p.start_lba, p.sectors))
            .collect();
        assert_eq!(ours, theirs, "{name}");
    }
}

#[test]
fn interop_dd_commands_reproduce_the_plan() {
    if !interop() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, fix) in [
        ("gptwin", GptFix::Relocate),
        ("gptwin", GptFix::KeepBackup),
        ("gpt4k", GptFix::Relocate),
        ("mbrext", GptFix::Relocate),
    ] {
        let src = dir.path().join(format!("{name}.img"));
        let img = sample(name);
        // Fill the partitions' first MiB with a pattern so the copy has data to get right.
        let mut img = img;
        let t = table(&img);
        for p in t.data_partitions() {
            img.write(p.start_byte + 4096, &[0xA5; 512]);
        }
        img.to_file(&src);
        let d = Disk::open(&src, OpenOptions::default()).unwrap();
        let plan = d.plan_copy(fix).unwrap();
        let want = dir.path().join("want.img");
        execute(&plan, d.file(), &want);
        let got = dir.path().join("got.img");
        let _ = std::fs::remove_file(&got);
        for line in plan.dd_commands(&DdTarget {
            image: src.to_str().unwrap().into(),
            host: None,
            device: got.to_str().unwrap().into(),
        }) {
            let (ok, out) = run("sh", &["-c", &format!("set -e; {line}")]);
            assert!(ok, "{line}: {out}");
        }
        let (a, b) = (std::fs::read(&want).unwrap(), std::fs::read(&got).unwrap());
        assert_eq!(a.len(), b.len(), "{name} {fix:?}");
        assert!(a == b, "{name} {fix:?}: dd result differs from the plan");
    }
}
