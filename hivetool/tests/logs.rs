// SPDX-License-Identifier: MIT OR Apache-2.0
//! Transaction-log replay: tier 1 on synthetic hives and logs built here, tier 2 on the real
//! hives of the corpus (env `IMGPREP_HIVE_CORPUS`) against Windows' own recovery results.

use hivetool::base::{fix_checksum, BaseBlock};
use hivetool::log::{
    hvle_entry, hvle_log_base_block, max_sequence, read_logs_beside, replay, scan_log,
    write_hvle_log, LogFormat, ScanStop,
};
use hivetool::marvin::registry_hash;

// ---------------------------------------------------------------------------------------
// Synthetic data
// ---------------------------------------------------------------------------------------

const TS: u64 = 0x01D2_9627_F1C8_A860;

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
fn get32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

/// An hbin of `size` bytes at hive-bins offset `at`, holding one free cell (and, for the
/// first bin, a root key node named `name`).
fn hbin(at: u32, size: u32, root_name: Option<&str>) -> Vec<u8> {
    let mut b = vec![0u8; size as usize];
    b[0..4].copy_from_slice(b"hbin");
    put32(&mut b, 4, at);
    put32(&mut b, 8, size);
    put64(&mut b, 20, TS);
    let mut pos = 32;
    if let Some(name) = root_name {
        let cell = (4 + 76 + name.len()).div_ceil(8) * 8;
        put32(&mut b, pos, (-(cell as i32)) as u32);
        let nk = pos + 4;
        b[nk..nk + 2].copy_from_slice(b"nk");
        b[nk + 2..nk + 4].copy_from_slice(&0x2Cu16.to_le_bytes());
        put64(&mut b, nk + 4, TS);
        for f in [28, 32, 40, 44, 48] {
            put32(&mut b, nk + f, 0xFFFF_FFFF);
        }
        b[nk + 72..nk + 74].copy_from_slice(&(name.len() as u16).to_le_bytes());
        b[nk + 76..nk + 76 + name.len()].copy_from_slice(name.as_bytes());
        pos += cell;
    }
    put32(&mut b, pos, size - pos as u32);
    b
}

/// A base block: seq1/seq2, hbins size, the given file type; checksum fixed.
fn base_block(seq1: u32, seq2: u32, hbins: u32, file_type: u32) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    b[0..4].copy_from_slice(b"regf");
    put32(&mut b, 4, seq1);
    put32(&mut b, 8, seq2);
    put64(&mut b, 12, TS);
    put32(&mut b, 20, 1);
    put32(&mut b, 24, 3);
    put32(&mut b, 28, file_type);
    put32(&mut b, 32, 1);
    put32(&mut b, 36, 0x20);
    put32(&mut b, 40, hbins);
    put32(&mut b, 44, 1);
    for (i, u) in "ROOT\\synthetic".encode_utf16().enumerate() {
        b[48 + 2 * i..50 + 2 * i].copy_from_slice(&u.to_le_bytes());
    }
    fix_checksum(&mut b);
    b
}

/// A minimal hive: base block + one 4 KiB bin with a root key `name`.
fn hive(seq1: u32, seq2: u32, name: &str) -> Vec<u8> {
    let mut h = base_block(seq1, seq2, 4096, 0);
    h.extend_from_slice(&hbin(0, 4096, Some(name)));
    h
}

fn hbins_of(img: &[u8]) -> &[u8] {
    let size = get32(img, 40) as usize;
    &img[4096..4096 + size]
}

/// A new-format log: base block with seq `base_seq`, then the given entries.
fn new_log(base_seq: u32, hbins: u32, entries: &[Vec<u8>]) -> Vec<u8> {
    let mut log = hvle_log_base_block(&base_block(0, 0, hbins, 0), base_seq, hbins).unwrap();
    for e in entries {
        log.extend_from_slice(e);
    }
    log.resize(log.len() + 4096, 0); // unused tail, as Windows leaves it
    log
}

fn page0(name: &str) -> Vec<u8> {
    hbin(0, 4096, Some(name))
}

/// An old-format (DIRT) log of `img`'s hive bins, dirty pages = the given 512-byte page
/// numbers. Built by hand, independently of the library.
fn dirt_log(img: &[u8], seq: u32, ts: u64, pages: &[usize]) -> Vec<u8> {
    let hbins = get32(img, 40);
    let mut b = img[..512].to_vec();
    put32(&mut b, 4, seq);
    put32(&mut b, 8, seq);
    put64(&mut b, 12, ts);
    put32(&mut b, 28, 1);
    fix_checksum(&mut b);
    let mut dirt = b"DIRT".to_vec();
    let mut bitmap = vec![0u8; (hbins / 4096) as usize];
    for &p in pages {
        bitmap[p / 8] |= 1 << (p % 8);
    }
    dirt.extend_from_slice(&bitmap);
    dirt.resize(dirt.len().div_ceil(512) * 512, 0);
    b.extend_from_slice(&dirt);
    let mut sorted = pages.to_vec();
    sorted.sort_unstable();
    for p in sorted {
        b.extend_from_slice(&img[4096 + p * 512..4096 + (p + 1) * 512]);
    }
    b
}

// ---------------------------------------------------------------------------------------
// Tier 1
// ---------------------------------------------------------------------------------------

#[test]
fn clean_primary_is_returned_unchanged() {
    let h = hive(7, 7, "ROOT");
    let log = new_log(
        8,
        4096,
        &[hvle_entry(8, 4096, 0, &[(0, &page0("NEW1"))]).unwrap()],
    );
    let r = replay(&h, &[("h.LOG1", &log)]).unwrap();
    assert_eq!(r.data, h);
    assert_eq!(r.format, LogFormat::None);
    assert!(r.applied.is_empty());
    assert!(!r.changed());
    assert!(r.notes[0].contains("clean"));
    assert_eq!(r.new_seq, 7);
    assert_eq!(r.max_seq_seen, 8);
}

#[test]
fn new_format_single_log_applies_consecutive_entries() {
    let h = hive(3, 2, "ROOT");
    let log = new_log(
        2,
        4096,
        &[
            hvle_entry(2, 4096, 0, &[(0, &page0("AAA1"))]).unwrap(),
            hvle_entry(3, 4096, 0, &[(0, &page0("BBB2"))]).unwrap(),
        ],
    );
    let r = replay(&h, &[("h.LOG1", &log)]).unwrap();
    assert_eq!(r.format, LogFormat::New);
    assert_eq!(
        r.applied.iter().map(|a| a.seq).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(hbins_of(&r.data), &page0("BBB2")[..]);
    let b = BaseBlock::parse(&r.data).unwrap();
    assert!(b.checksum_ok && !b.is_dirty());
    assert_eq!((b.seq1, b.seq2), (4, 4), "max seen (3) + 1");
    // everything but sequence numbers and checksum is the primary's base block
    let mut expect = h[..4096].to_vec();
    put32(&mut expect, 4, 4);
    put32(&mut expect, 8, 4);
    fix_checksum(&mut expect);
    assert_eq!(&r.data[..4096], &expect[..]);
}

#[test]
fn new_format_grows_the_hive_and_follows_flags() {
    let h = hive(3, 2, "ROOT");
    let bin2 = hbin(4096, 8192, None);
    let log = new_log(
        2,
        4096,
        &[
            hvle_entry(2, 4096, 1, &[(0, &page0("AAA1"))]).unwrap(),
            hvle_entry(3, 12288, 1, &[(0, &page0("BBB2")), (4096, &bin2)]).unwrap(),
        ],
    );
    let r = replay(&h, &[("h.LOG1", &log)]).unwrap();
    assert_eq!(r.data.len(), 4096 + 12288);
    let b = BaseBlock::parse(&r.data).unwrap();
    assert_eq!(b.hbins_size, 12288);
    assert_eq!(b.flags & 1, 1, "flag bit 0 follows the entry");
    assert_eq!(&r.data[4096 + 4096..], &bin2[..]);
    assert_eq!(r.applied[1].bytes, 4096 + 8192);
    assert_eq!(r.applied[1].pages, 2);

    // flags bit 0 cleared again by a later entry
    let log = new_log(
        2,
        4096,
        &[
            hvle_entry(2, 4096, 1, &[(0, &page0("AAA1"))]).unwrap(),
            hvle_entry(3, 4096, 0, &[(0, &page0("BBB2"))]).unwrap(),
        ],
    );
    let r = replay(&h, &[("h.LOG1", &log)]).unwrap();
    assert_eq!(BaseBlock::parse(&r.data).unwrap().flags & 1, 0);
}

#[test]
fn dual_logs_are_ordered_by_sequence_and_chained() {
    let h = hive(3, 2, "ROOT");
    let log1 = new_log(
        2,
        4096,
        &[
            hvle_entry(2, 4096, 0, &[(0, &page0("AAA2"))]).unwrap(),
            hvle_entry(3, 4096, 0, &[(0, &page0("AAA3"))]).unwrap(),
        ],
    );
    let log2 = new_log(
        4,
        4096,
        &[
            hvle_entry(4, 4096, 0, &[(0, &page0("BBB4"))]).unwrap(),
            hvle_entry(5, 4096, 0, &[(0, &page0("BBB5"))]).unwrap(),
        ],
    );
    for logs in [
        [("LOG1", &log1[..]), ("LOG2", &log2[..])],
        [("LOG2", &log2[..]), ("LOG1", &log1[..])],
    ] {
        let r = replay(&h, &logs).unwrap();
        let seqs: Vec<(String, u32)> = r.applied.iter().map(|a| (a.log.clone(), a.seq)).collect();
        assert_eq!(
            seqs,
            vec![
                ("LOG1".into(), 2),
                ("LOG1".into(), 3),
                ("LOG2".into(), 4),
                ("LOG2".into(), 5)
            ]
        );
        assert_eq!(hbins_of(&r.data), &page0("BBB5")[..]);
        assert_eq!(r.new_seq, 6);
    }
    // LOG2 not continuing (starts at 6 after 3): only LOG1
    let log2b = new_log(
        6,
        4096,
        &[hvle_entry(6, 4096, 0, &[(0, &page0("CCC6"))]).unwrap()],
    );
    let r = replay(&h, &[("LOG1", &log1), ("LOG2", &log2b)]).unwrap();
    assert_eq!(r.applied.len(), 2);
    assert_eq!(hbins_of(&r.data), &page0("AAA3")[..]);
    assert!(r.notes.iter().any(|n| n.contains("does not continue")));
    assert_eq!(r.new_seq, 7, "above the stale LOG2 entry (6)");
    // LOG1 too old for the primary (starts before seq2 = 4): LOG2 alone
    let h2 = hive(5, 4, "ROOT");
    let r = replay(&h2, &[("LOG1", &log1), ("LOG2", &log2)]).unwrap();
    assert_eq!(
        r.applied.iter().map(|a| a.seq).collect::<Vec<_>>(),
        vec![4, 5]
    );
}

#[test]
fn wrap_around_sequence_numbers() {
    let h = hive(0xFFFF_FFFF, 0xFFFF_FFFE, "ROOT");
    let log1 = new_log(
        0xFFFF_FFFE,
        4096,
        &[
            hvle_entry(0xFFFF_FFFE, 4096, 0, &[(0, &page0("AAA1"))]).unwrap(),
            hvle_entry(0xFFFF_FFFF, 4096, 0, &[(0, &page0("AAA2"))]).unwrap(),
        ],
    );
    let log2 = new_log(
        0,
        4096,
        &[
            hvle_entry(0, 4096, 0, &[(0, &page0("BBB0"))]).unwrap(),
            hvle_entry(1, 4096, 0, &[(0, &page0("BBB1"))]).unwrap(),
        ],
    );
    let r = replay(&h, &[("LOG2", &log2), ("LOG1", &log1)]).unwrap();
    assert_eq!(
        r.applied.iter().map(|a| a.seq).collect::<Vec<_>>(),
        vec![0xFFFF_FFFE, 0xFFFF_FFFF, 0, 1]
    );
    assert_eq!(hbins_of(&r.data), &page0("BBB1")[..]);
    assert_eq!(r.new_seq, 2);
    assert_eq!(max_sequence(&h, &[("LOG1", &log1), ("LOG2", &log2)]), 1);
}

#[test]
fn replay_stops_at_gap_and_bad_hash() {
    let h = hive(3, 2, "ROOT");
    let e2 = hvle_entry(2, 4096, 0, &[(0, &page0("AAA2"))]).unwrap();
    let e3 = hvle_entry(3, 4096, 0, &[(0, &page0("AAA3"))]).unwrap();
    let e4 = hvle_entry(4, 4096, 0, &[(0, &page0("AAA4"))]).unwrap();
    // gap: 2, 4
    let log = new_log(2, 4096, &[e2.clone(), e4.clone()]);
    let r = replay(&h, &[("LOG1", &log)]).unwrap();
    assert_eq!(r.applied.len(), 1);
    assert_eq!(hbins_of(&r.data), &page0("AAA2")[..]);
    assert!(r.notes.iter().any(|n| n.contains("expected")));
    // bad hash in entry 3: 2 only, 4 never looked at
    let mut bad3 = e3.clone();
    let last = bad3.len() - 1;
    bad3[last] ^= 0x55;
    let log = new_log(2, 4096, &[e2.clone(), bad3, e4.clone()]);
    let scan = scan_log(&log);
    assert_eq!(scan.entries.len(), 1);
    assert!(matches!(scan.stop, ScanStop::Invalid { ref reason, .. } if reason.contains("Hash-1")));
    let r = replay(&h, &[("LOG1", &log)]).unwrap();
    assert_eq!(r.applied.len(), 1);
    assert_eq!(r.new_seq, 4, "primary seq1 3 is the max seen");
    // hbins size not a multiple of 4096 → invalid entry (hash recomputed so only the size is bad)
    let mut odd = e3.clone();
    put32(&mut odd, 16, 4097);
    let h1 = registry_hash(&odd[40..]);
    odd[24..32].copy_from_slice(&h1.to_le_bytes());
    let h2 = registry_hash(&odd[..32]);
    odd[32..40].copy_from_slice(&h2.to_le_bytes());
    let log = new_log(2, 4096, &[e2, odd]);
    assert_eq!(replay(&h, &[("LOG1", &log)]).unwrap().applied.len(), 1);
}

#[test]
fn first_entry_must_match_log_base_sequence() {
    let h = hive(3, 2, "ROOT");
    let log = new_log(
        2,
        4096,
        &[hvle_entry(3, 4096, 0, &[(0, &page0("AAA3"))]).unwrap()],
    );
    let r = replay(&h, &[("LOG1", &log)]).unwrap();
    assert!(r.applied.is_empty());
    assert_eq!(hbins_of(&r.data), hbins_of(&h));
    assert!(!BaseBlock::parse(&r.data).unwrap().is_dirty());
    assert!(r.notes.iter().any(|n| n.contains("no log entry applied")));
}

#[test]
fn bad_primary_base_block_recovered_from_latest_log() {
    let mut h = hive(3, 2, "ROOT");
    h[24] = 9; // corrupt the minor version; checksum now wrong
    let log1 = new_log(
        2,
        4096,
        &[hvle_entry(2, 4096, 0, &[(0, &page0("AAA2"))]).unwrap()],
    );
    let log2 = new_log(
        3,
        4096,
        &[
            hvle_entry(3, 4096, 1, &[(0, &page0("BBB3"))]).unwrap(),
            hvle_entry(4, 4096, 1, &[(0, &page0("BBB4"))]).unwrap(),
        ],
    );
    let r = replay(&h, &[("LOG1", &log1), ("LOG2", &log2)]).unwrap();
    assert!(r.base_block_recovered);
    assert_eq!(
        r.applied.iter().map(|a| a.seq).collect::<Vec<_>>(),
        vec![3, 4]
    );
    let b = BaseBlock::parse(&r.data).unwrap();
    assert!(b.checksum_ok && !b.is_dirty());
    assert_eq!(b.minor, 3, "taken from the log");
    assert_eq!(b.file_type, 0);
    assert_eq!(b.flags & 1, 1);
    assert_eq!((b.seq1, b.seq2), (5, 5));
    assert_eq!(hbins_of(&r.data), &page0("BBB4")[..]);
    // no usable log → error
    assert!(replay(&h, &[]).is_err());
    assert!(replay(&h, &[("LOG1", &[0u8; 100][..])]).is_err());
}

#[test]
fn old_format_dirt_log() {
    // the "new" image: root renamed, a second bin appended
    let mut new_img = base_block(5, 5, 8192, 0);
    new_img.extend_from_slice(&hbin(0, 4096, Some("NEWROOT")));
    new_img.extend_from_slice(&hbin(4096, 4096, None));
    let log = dirt_log(&new_img, 5, TS, &(0..16).collect::<Vec<_>>());
    let primary = hive(5, 4, "ROOT");
    let r = replay(&primary, &[("h.LOG1", &log), ("h.LOG2", &[])]).unwrap();
    assert_eq!(r.format, LogFormat::Old);
    assert_eq!(r.applied.len(), 1);
    assert_eq!(r.applied[0].bytes, 8192);
    assert_eq!(hbins_of(&r.data), hbins_of(&new_img));
    let b = BaseBlock::parse(&r.data).unwrap();
    assert_eq!((b.seq1, b.seq2, b.hbins_size), (6, 6, 8192));
    assert!(r.notes.iter().any(|n| n.contains("empty")));

    // only some 512-byte pages dirty: 0 and 3
    let log = dirt_log(&new_img, 5, TS, &[3, 0]);
    let r = replay(&primary, &[("h.LOG1", &log)]).unwrap();
    let mut expect = primary[4096..].to_vec();
    expect.resize(8192, 0);
    expect[..512].copy_from_slice(&new_img[4096..4096 + 512]);
    expect[1536..2048].copy_from_slice(&new_img[4096 + 1536..4096 + 2048]);
    assert_eq!(hbins_of(&r.data), &expect[..]);
    assert_eq!(r.applied[0].pages, 2);

    // timestamp mismatch: not eligible
    let log = dirt_log(&new_img, 5, TS + 1, &[0]);
    let r = replay(&primary, &[("h.LOG1", &log)]).unwrap();
    assert!(r.applied.is_empty());
    assert!(r.notes.iter().any(|n| n.contains("timestamp")));

    // truncated log: ignored as a whole
    let log = dirt_log(&new_img, 5, TS, &[0, 1, 2]);
    let r = replay(&primary, &[("h.LOG1", &log[..log.len() - 1])]).unwrap();
    assert!(r.applied.is_empty());
    assert!(r.notes.iter().any(|n| n.contains("truncated")));

    // log whose own base block is dirty: invalid
    let mut log = dirt_log(&new_img, 5, TS, &[0]);
    put32(&mut log, 8, 4);
    fix_checksum(&mut log[..512]);
    assert!(!scan_log(&log).base_valid);

    // bad primary base block: recovered (first bin's timestamp is not newer than the log's)
    let mut bad = primary.clone();
    bad[508] ^= 1;
    let log = dirt_log(&new_img, 5, TS, &(0..16).collect::<Vec<_>>());
    let r = replay(&bad, &[("h.LOG1", &log)]).unwrap();
    assert!(r.base_block_recovered);
    assert_eq!(hbins_of(&r.data), hbins_of(&new_img));
    assert_eq!(BaseBlock::parse(&r.data).unwrap().file_type, 0);
}

#[test]
fn written_log_replays_to_the_new_image() {
    // What a journaled writer would do: log the new pages, mark the primary dirty.
    let old = hive(10, 10, "ROOT");
    let mut new_img = base_block(11, 11, 8192, 0);
    new_img.extend_from_slice(&hbin(0, 4096, Some("EDITED")));
    new_img.extend_from_slice(&hbin(4096, 4096, None));
    let log = write_hvle_log(&new_img, 11, 8192, &[(0, &new_img[4096..])]).unwrap();
    let scan = scan_log(&log);
    assert_eq!(scan.format, LogFormat::New);
    assert_eq!(scan.entries.len(), 1);
    assert_eq!(scan.stop, ScanStop::EndOfFile);
    let mut primary = old.clone();
    put32(&mut primary, 4, 11); // seq1 = N+1, seq2 = N: the crash window
    fix_checksum(&mut primary);
    let r = replay(&primary, &[("LOG1", &log)]).unwrap();
    assert_eq!(hbins_of(&r.data), hbins_of(&new_img));
    assert_eq!(r.new_seq, 12);
}

#[test]
fn logs_beside_are_found_case_insensitively() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("SYSTEM");
    std::fs::write(&p, b"x").unwrap();
    std::fs::write(dir.path().join("SYSTEM.LOG1"), b"one").unwrap();
    std::fs::write(dir.path().join("system.log2"), b"two").unwrap();
    std::fs::write(dir.path().join("SYSTEM.LOG1.bak"), b"no").unwrap();
    std::fs::write(dir.path().join("SYSTEMX.LOG"), b"no").unwrap();
    let logs = read_logs_beside(&p).unwrap();
    assert_eq!(
        logs,
        vec![
            ("SYSTEM.LOG1".to_string(), b"one".to_vec()),
            ("system.log2".to_string(), b"two".to_vec())
        ]
    );
    assert!(read_logs_beside(&dir.path().join("none"))
        .unwrap()
        .is_empty());
}

/// xorshift64*: a fixed-seed PRNG, so failures are reproducible.
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

fn mutate_and_replay(primary: &[u8], logs: &[Vec<u8>], rounds: usize, seed: u64) {
    let mut rng = Rng(seed);
    for round in 0..rounds {
        let mut p = primary.to_vec();
        let mut ls: Vec<Vec<u8>> = logs.to_vec();
        let flips = 1 + rng.below(8);
        for _ in 0..flips {
            let target = rng.below(ls.len() + 1);
            let buf = if target == ls.len() {
                &mut p
            } else {
                &mut ls[target]
            };
            if buf.is_empty() {
                continue;
            }
            // favour the headers, where the interesting fields are
            let i = if rng.below(2) == 0 {
                rng.below(buf.len().min(1024))
            } else {
                rng.below(buf.len())
            };
            buf[i] = rng.next() as u8;
        }
        if rng.below(10) == 0 {
            let t = rng.below(ls.len());
            let n = rng.below(ls[t].len() + 1);
            ls[t].truncate(n);
        }
        let named: Vec<(&str, &[u8])> = ls.iter().map(|l| ("mut", l.as_slice())).collect();
        if let Ok(r) = replay(&p, &named) {
            let b = BaseBlock::parse(&r.data).unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert!(!b.is_dirty(), "round {round}: result must be clean");
        }
        let _ = max_sequence(&p, &named);
        for l in &ls {
            let _ = scan_log(l);
        }
    }
}

#[test]
fn mutated_logs_never_panic() {
    let h = hive(3, 2, "ROOT");
    let bin2 = hbin(4096, 4096, None);
    let log1 = new_log(
        2,
        4096,
        &[
            hvle_entry(2, 4096, 0, &[(0, &page0("AAA2"))]).unwrap(),
            hvle_entry(3, 8192, 1, &[(0, &page0("AAA3")), (4096, &bin2)]).unwrap(),
        ],
    );
    let log2 = new_log(
        4,
        8192,
        &[hvle_entry(4, 8192, 0, &[(0, &page0("BBB4"))]).unwrap()],
    );
    mutate_and_replay(&h, &[log1, log2], 3000, 0x1234_5678_9ABC_DEF1);

    let mut new_img = base_block(5, 5, 8192, 0);
    new_img.extend_from_slice(&hbin(0, 4096, Some("NEWROOT")));
    new_img.extend_from_slice(&hbin(4096, 4096, None));
    let dirt = dirt_log(&new_img, 5, TS, &[0, 1, 7, 9, 15]);
    mutate_and_replay(
        &hive(5, 4, "ROOT"),
        &[dirt, Vec::new()],
        3000,
        0xDEAD_BEEF_0BAD_F00D,
    );
}

#[test]
fn every_truncation_of_a_log_is_handled() {
    let h = hive(3, 2, "ROOT");
    let log = new_log(
        2,
        4096,
        &[
            hvle_entry(2, 4096, 0, &[(0, &page0("AAA2"))]).unwrap(),
            hvle_entry(3, 4096, 0, &[(0, &page0("AAA3"))]).unwrap(),
        ],
    );
    for n in (0..log.len()).step_by(7) {
        let r = replay(&h, &[("LOG1", &log[..n])]).unwrap();
        assert!(r.applied.len() <= 2);
    }
}

// ---------------------------------------------------------------------------------------
// Tier 2: the corpus
// ---------------------------------------------------------------------------------------

fn corpus() -> Option<std::path::PathBuf> {
    match std::env::var_os("IMGPREP_HIVE_CORPUS") {
        Some(d) => Some(d.into()),
        None => {
            eprintln!("skipped: IMGPREP_HIVE_CORPUS not set");
            None
        }
    }
}

fn load(dir: &std::path::Path, name: &str) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let p = dir.join(name);
    let primary = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let logs = read_logs_beside(&p).unwrap();
    (primary, logs)
}

fn replay_corpus(dir: &std::path::Path, name: &str) -> hivetool::log::Replay {
    let (primary, logs) = load(dir, name);
    let refs: Vec<(&str, &[u8])> = logs
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    replay(&primary, &refs).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Positions where two equally long images differ.
fn diff(a: &[u8], b: &[u8]) -> Vec<usize> {
    assert_eq!(a.len(), b.len());
    (0..a.len()).filter(|&i| a[i] != b[i]).collect()
}

/// Counts keys and values with nt-hive (an independent reader).
fn count_keys(img: &[u8]) -> (usize, usize) {
    let hive = nt_hive::Hive::new(img).expect("nt-hive accepts the replayed hive");
    let root = hive.root_key_node().unwrap();
    let mut stack = vec![root];
    let (mut keys, mut values) = (0, 0);
    while let Some(k) = stack.pop() {
        keys += 1;
        if let Some(v) = k.values() {
            values += v.unwrap().count();
        }
        if let Some(s) = k.subkeys() {
            for sk in s.unwrap() {
                stack.push(sk.unwrap());
            }
        }
    }
    (keys, values)
}

#[test]
fn corpus_every_log_hash_verifies() {
    let Some(dir) = corpus() else { return };
    let mut checked = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !(name.ends_with(".LOG1") || name.ends_with(".LOG2")) {
            continue;
        }
        let data = std::fs::read(&p).unwrap();
        let scan = scan_log(&data);
        if data.is_empty() {
            assert_eq!(scan.format, LogFormat::None);
            continue;
        }
        assert!(scan.base_valid, "{name}: {:?}", scan.problem);
        assert!(
            matches!(
                scan.stop,
                ScanStop::EndOfFile | ScanStop::NoSignature { .. }
            ),
            "{name}: {:?}",
            scan.stop
        );
        if scan.format == LogFormat::New {
            // entries are consecutive from the base block's sequence number
            let base = scan.base.as_ref().unwrap().seq1;
            for (i, e) in scan.entries.iter().enumerate() {
                assert_eq!(e.seq, base + i as u32, "{name}");
            }
            checked += scan.entries.len();
        }
    }
    // NewDirtyHive1/2: 1+3 each, SYSTEM_B 4+20, transactions_NTUSER 23+1
    assert_eq!(checked, 8 + 24 + 24, "hash-verified HvLE entries");
}

#[test]
fn corpus_new_dirty_hive1_matches_windows10_byte_for_byte() {
    let Some(dir) = corpus() else { return };
    let r = replay_corpus(&dir, "yarp-NewDirtyHive1.hive");
    let windows =
        std::fs::read(dir.join("yarp-NewDirtyHive1.recovered-by-Windows10.hive")).unwrap();
    assert_eq!(
        r.applied
            .iter()
            .map(|a| (a.log.as_str(), a.seq))
            .collect::<Vec<_>>(),
        vec![
            ("yarp-NewDirtyHive1.hive.LOG1", 2),
            ("yarp-NewDirtyHive1.hive.LOG2", 3),
            ("yarp-NewDirtyHive1.hive.LOG2", 4),
            ("yarp-NewDirtyHive1.hive.LOG2", 5)
        ]
    );
    assert_eq!(r.new_seq, 6);
    assert!(
        r.data == windows,
        "differs at {:x?}",
        diff(&r.data, &windows)
    );
}

#[test]
fn corpus_new_dirty_hive2_replays() {
    let Some(dir) = corpus() else { return };
    let r = replay_corpus(&dir, "yarp-NewDirtyHive2.hive");
    // primary 4/3: LOG1 (seq 2) is too old; LOG2's 3, 4, 5 apply. Same logs as NewDirtyHive1,
    // so the result is Windows 10's recovery of NewDirtyHive1.
    assert_eq!(
        r.applied.iter().map(|a| a.seq).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    let windows =
        std::fs::read(dir.join("yarp-NewDirtyHive1.recovered-by-Windows10.hive")).unwrap();
    assert!(
        r.data == windows,
        "differs at {:x?}",
        diff(&r.data, &windows)
    );
}

/// Byte ranges (file offsets) where Windows 7's recovery of OldDirtyHive differs from a pure
/// replay, all explained in docs/transaction-logs.md.
const WIN7_AFTER_LOAD: &[(usize, usize, &str)] = &[
    (
        4,
        12,
        "sequence numbers 7/7 (one more flush after recovery) vs 6/6",
    ),
    (12, 20, "last-written timestamp of that flush"),
    (
        48,
        112,
        "file name tail: Windows loaded the hive from another folder",
    ),
    (508, 512, "checksum"),
    (
        4096 + 20,
        4096 + 28,
        "first hbin's timestamp = the new base-block timestamp",
    ),
    (
        4096 + 0x6ad88 + 4 + 60,
        4096 + 0x6ad88 + 4 + 64,
        "key 4500: largest value name length 24 -> 2",
    ),
];

#[test]
fn corpus_old_dirty_hive_matches_windows7_except_its_later_writes() {
    let Some(dir) = corpus() else { return };
    let r = replay_corpus(&dir, "yarp-OldDirtyHive.hive");
    assert_eq!(r.format, LogFormat::Old);
    assert_eq!(r.new_seq, 6);
    let windows = std::fs::read(dir.join("yarp-OldDirtyHive.recovered-by-Windows7.hive")).unwrap();
    let d = diff(&r.data, &windows);
    assert!(!d.is_empty());
    for &i in &d {
        assert!(
            WIN7_AFTER_LOAD.iter().any(|&(a, b, _)| (a..b).contains(&i)),
            "unexplained difference at file offset {i:#x}"
        );
    }
    // only two 4 KiB pages of hive bins differ: the first bin's header and key 4500's page
    let pages: std::collections::BTreeSet<usize> = d
        .iter()
        .filter(|&&i| i >= 4096)
        .map(|&i| (i - 4096) / 4096)
        .collect();
    assert_eq!(pages.into_iter().collect::<Vec<_>>(), vec![0, 0x6a]);
    assert_eq!(count_keys(&r.data), count_keys(&windows));
}

#[test]
fn corpus_bad_base_block_hive_recovers_from_log() {
    let Some(dir) = corpus() else { return };
    let r = replay_corpus(&dir, "yarp-BadBaseBlockHive.hive");
    assert!(r.base_block_recovered);
    let b = BaseBlock::parse(&r.data).unwrap();
    assert!(b.checksum_ok && !b.is_dirty());
    assert_eq!(b.minor, 3);
    // Same log as OldDirtyHive: the result equals that replay exactly.
    let old = replay_corpus(&dir, "yarp-OldDirtyHive.hive");
    assert!(
        r.data == old.data,
        "differs at {:x?}",
        diff(&r.data, &old.data)
    );
    count_keys(&r.data);
}

#[test]
fn corpus_system_b_matches_yarp_except_sequence() {
    let Some(dir) = corpus() else { return };
    let r = replay_corpus(&dir, "regipy-SYSTEM_B.hive");
    assert_eq!(r.applied.len(), 24);
    assert_eq!(r.applied.first().unwrap().seq, 2107);
    assert_eq!(r.applied.last().unwrap().seq, 2130);
    assert_eq!(r.new_seq, 2131);
    let yarp = std::fs::read(dir.join("regipy-SYSTEM_B.recovered-by-yarp.hive")).unwrap();
    // yarp writes the last applied sequence number (2130); Windows 10 writes one more
    // (NewDirtyHive1: entries up to 5, Windows wrote 6/6). The two changes cancel in the
    // XOR checksum, so only bytes 4..12 differ.
    assert_eq!(diff(&r.data, &yarp), vec![4, 8]);
    assert_eq!(count_keys(&r.data), (35_595, 78_901));
}

#[test]
fn corpus_transactions_ntuser_replays() {
    let Some(dir) = corpus() else { return };
    let r = replay_corpus(&dir, "regipy-transactions_NTUSER.DAT.hive");
    assert_eq!(
        r.applied.iter().map(|a| a.seq).collect::<Vec<_>>(),
        (566..=588).collect::<Vec<_>>()
    );
    assert_eq!(r.new_seq, 589);
    let b = BaseBlock::parse(&r.data).unwrap();
    assert_eq!(b.hbins_size, 0xe2000);
    assert!(!b.is_dirty());
    let (primary, _) = load(&dir, "regipy-transactions_NTUSER.DAT.hive");
    let before = count_keys(&{
        let mut p = primary.clone();
        // nt-hive rejects dirty hives: compare against the stale primary made clean
        p[8..12].copy_from_slice(&567u32.to_le_bytes());
        fix_checksum(&mut p);
        p
    });
    let after = count_keys(&r.data);
    eprintln!("transactions_NTUSER keys/values before {before:?}, after {after:?}");
}

#[test]
fn corpus_logs_with_garbage_never_panic() {
    let Some(dir) = corpus() else { return };
    let (primary, logs) = load(&dir, "yarp-NewDirtyHive1.hive");
    let ls: Vec<Vec<u8>> = logs.into_iter().map(|(_, d)| d).collect();
    mutate_and_replay(&primary, &ls, 1000, 42);
    let (primary, logs) = load(&dir, "yarp-OldDirtyHive.hive");
    let ls: Vec<Vec<u8>> = logs.into_iter().map(|(_, d)| d).collect();
    mutate_and_replay(&primary, &ls, 1000, 43);
}

#[test]
fn bins_are_checked_after_replay() {
    let h = hive(3, 2, "ROOT");
    assert!(hivetool::log::check_bins(&h, 4096).is_empty());
    // an entry that grows the hive without writing the new bin: reported, not fatal
    let log = new_log(
        2,
        4096,
        &[hvle_entry(2, 8192, 0, &[(0, &page0("AAA2"))]).unwrap()],
    );
    let r = replay(&h, &[("LOG1", &log)]).unwrap();
    assert_eq!(r.data.len(), 4096 + 8192);
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("no hbin signature at offset 0x1000")),
        "{:?}",
        r.notes
    );
}

#[test]
fn corpus_every_hive_replays_or_is_left_alone() {
    let Some(dir) = corpus() else { return };
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".hive") {
            continue;
        }
        n += 1;
        let (primary, logs) = load(&dir, &name);
        let refs: Vec<(&str, &[u8])> = logs
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        let b = BaseBlock::parse(&primary).unwrap();
        let r = replay(&primary, &refs).unwrap_or_else(|e| panic!("{name}: {e}"));
        if !b.is_dirty() {
            assert!(r.data == primary, "{name}: clean hive changed");
            assert_eq!(r.format, LogFormat::None);
        } else {
            let rb = BaseBlock::parse(&r.data).unwrap();
            assert!(!rb.is_dirty(), "{name}");
            assert!(
                rb.seq1 > b.seq1.max(b.seq2) || r.base_block_recovered,
                "{name}: new sequence number above the old ones"
            );
            eprintln!("{name}: {} entries, notes {:?}", r.applied.len(), r.notes);
        }
    }
    assert!(n >= 30, "only {n} hives in the corpus");
}

#[test]
fn huge_size_in_a_dirty_primary_does_not_allocate() {
    let mut h = hive(3, 2, "ROOT");
    put32(&mut h, 40, 0xFFFF_F000);
    fix_checksum(&mut h[..4096]);
    let r = replay(&h, &[]).unwrap();
    assert_eq!(r.data.len(), h.len());
    assert!(r
        .notes
        .iter()
        .any(|n| n.contains("shorter than the hive bins size")));
}

#[test]
fn old_format_dual_logs_pick_the_matching_one() {
    let primary = hive(5, 4, "ROOT");
    let mut img_a = base_block(5, 5, 4096, 0);
    img_a.extend_from_slice(&hbin(0, 4096, Some("FROM_A")));
    let mut img_b = base_block(5, 5, 4096, 0);
    img_b.extend_from_slice(&hbin(0, 4096, Some("FROM_B")));
    let all: Vec<usize> = (0..8).collect();
    // LOG1 from another flush (other timestamp), LOG2 matches the primary
    let log1 = dirt_log(&img_a, 5, TS - 10, &all);
    let log2 = dirt_log(&img_b, 5, TS, &all);
    let r = replay(&primary, &[("LOG1", &log1), ("LOG2", &log2)]).unwrap();
    assert_eq!(r.applied.len(), 1);
    assert_eq!(r.applied[0].log, "LOG2");
    assert_eq!(hbins_of(&r.data), hbins_of(&img_b));
    // new-format logs win over old-format ones
    let hv = new_log(
        4,
        4096,
        &[hvle_entry(4, 4096, 0, &[(0, &page0("NEWFMT"))]).unwrap()],
    );
    let r = replay(&primary, &[("LOG1", &log2), ("LOG2", &hv)]).unwrap();
    assert_eq!(r.format, LogFormat::New);
    assert_eq!(hbins_of(&r.data), &page0("NEWFMT")[..]);
}
