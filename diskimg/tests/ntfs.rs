// SPDX-License-Identifier: MIT OR Apache-2.0
//! Tests of `diskimg::ntfs`.
//!
//! Tier 1 reads the committed images in `fixtures/ntfs/` (made by `fixtures/gen-ntfs-fixtures.sh`).
//! Tier 2 (`IMGPREP_INTEROP=1`) builds images with `fixtures/make-image.sh` and checks against
//! `ntfscat`, `ntfsfix -n` and `ntfsinfo`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use diskimg::ntfs::{self, FileExtents, HiberMagic, LogState, Volume};
use diskimg::{Error, ReadAt};

// ---------------------------------------------------------------------------------------------
// helpers

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn load(name: &str) -> Vec<u8> {
    let p = repo().join("fixtures/ntfs").join(name);
    let f = std::fs::File::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(f)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

/// The sector pattern of `fixtures/gen-ntfs-fixtures.sh`.
fn pattern(name: &str, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 512);
    let mut i = 0;
    while out.len() < n {
        let s = format!("{name} sector {i:08}\n");
        out.extend_from_slice(s.as_bytes());
        out.resize(out.len() + 512 - s.len(), b'.');
        i += 1;
    }
    out.truncate(n);
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// NTFS partitions `(start, len)` in bytes: a tiny MBR/GPT reader for the tests (the crate's
/// own partition module is tested elsewhere). A bare volume gives `(0, len)`.
fn ntfs_partitions(img: &[u8]) -> Vec<(u64, u64)> {
    if &img[3..11] == b"NTFS    " {
        return vec![(0, img.len() as u64)];
    }
    let mut out = Vec::new();
    if img[450] == 0xEE {
        let ss = if &img[512..520] == b"EFI PART" {
            512
        } else {
            4096
        };
        assert_eq!(&img[ss..ss + 8], b"EFI PART");
        let ents = u64_at(img, ss + 72) as usize * ss;
        let n = u32_at(img, ss + 80) as usize;
        let esz = u32_at(img, ss + 84) as usize;
        for i in 0..n {
            let e = &img[ents + i * esz..ents + (i + 1) * esz];
            if e[..16].iter().all(|&b| b == 0) {
                continue;
            }
            let first = u64_at(e, 32);
            let last = u64_at(e, 40);
            out.push((first * ss as u64, (last + 1 - first) * ss as u64));
        }
    } else {
        for i in 0..4 {
            let e = &img[446 + 16 * i..446 + 16 * (i + 1)];
            if e[4] != 0x07 {
                continue;
            }
            let start = u32_at(e, 8) as u64;
            let len = u32_at(e, 12) as u64;
            // sector size: where the NTFS boot sector is
            let ss = if img.get((start * 512 + 3) as usize..(start * 512 + 11) as usize)
                == Some(&b"NTFS    "[..])
            {
                512
            } else {
                4096
            };
            out.push((start * ss, len * ss));
        }
    }
    out
}

fn open_last(img: &[u8]) -> Volume<&[u8]> {
    let (s, l) = *ntfs_partitions(img).last().expect("an NTFS partition");
    Volume::open(img, s, l).expect("open")
}

/// Reads a file through its extents directly from the image bytes (zeros for holes and past VDL).
fn read_via_extents(img: &[u8], fx: &FileExtents) -> Vec<u8> {
    let mut out = vec![0u8; fx.data_size as usize];
    for e in &fx.extents {
        if let Some(d) = e.disk_offset {
            let (s, d, n) = (e.file_offset as usize, d as usize, e.len as usize);
            out[s..s + n].copy_from_slice(&img[d..d + n]);
        }
    }
    for b in &mut out[fx.valid_data_length as usize..] {
        *b = 0;
    }
    out
}

/// A `ReadAt` that overlays byte mutations on a base image.
struct Overlay<'a> {
    base: &'a [u8],
    patches: Vec<(u64, u8)>,
}

impl ReadAt for Overlay<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let n = self.base.read_at(buf, offset)?;
        for &(o, v) in &self.patches {
            if o >= offset && o < offset + n as u64 {
                buf[(o - offset) as usize] = v;
            }
        }
        Ok(n)
    }
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.base.len() as u64)
    }
}

/// xorshift64*: a fixed-seed PRNG for the mutation tests.
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

fn interop() -> bool {
    if std::env::var("IMGPREP_INTEROP").as_deref() == Ok("1") {
        true
    } else {
        eprintln!("skipped: set IMGPREP_INTEROP=1 to run the ntfs-3g interop tests");
        false
    }
}

// ---------------------------------------------------------------------------------------------
// tier 1: committed images

#[test]
fn mbr_geometry_and_partitions() {
    let img = load("mbr-512.img.gz");
    let parts = ntfs_partitions(&img);
    assert_eq!(parts.len(), 2, "System Reserved + Windows");
    let sr = Volume::open(&img[..], parts[0].0, parts[0].1).unwrap();
    assert!(sr.find("Windows").is_err());
    let v = open_last(&img);
    let g = v.geometry();
    assert_eq!(g.bytes_per_sector, 512);
    assert_eq!(g.cluster_size, 512);
    assert_eq!(g.record_size, 1024);
    assert_eq!(g.index_block_size, 4096);
    assert_eq!(
        g.total_sectors * 512 + 512,
        parts[1].1,
        "BPB ends one sector early"
    );
    assert!(v.upcase_from_volume());
    assert!(v.mft_records() >= 64);
}

#[test]
fn find_is_case_insensitive() {
    let img = load("mbr-512.img.gz");
    let v = open_last(&img);
    let a = v.find("Windows\\System32\\config\\SYSTEM").unwrap();
    assert_eq!(v.find("/windows/system32/CONFIG/system").unwrap(), a);
    assert_eq!(v.find("WINDOWS/System32//config/./System").unwrap(), a);
    assert_ne!(v.find("Windows/System32/config/SOFTWARE").unwrap(), a);
    // non-ASCII: Ü/ü, Ä/ä, ï/Ï through the volume's $UpCase
    let u = v.find("ünïcode/ärger.TXT").unwrap();
    assert_eq!(v.find("ÜNÏCODE\\ÄRGER.txt").unwrap(), u);
    assert_eq!(
        v.read_file(u, 1 << 20).unwrap(),
        "café upcase test\n".as_bytes()
    );
    assert_eq!(v.find("").unwrap(), 5);
    for missing in [
        "nope",
        "Windows/System32/config/SYSTEM2",
        "small.txt/x",
        "Windows/Syste",
    ] {
        match v.find(missing) {
            Err(Error::NotFound(_)) => {}
            other => panic!("{missing}: {other:?}"),
        }
    }
}

#[test]
fn large_directory_index() {
    let img = load("gpt-4k.img.gz");
    let v = open_last(&img);
    let dir = v.find("Windows/WinSxS").unwrap();
    for i in (0..600).step_by(7).chain([0, 1, 298, 299, 598, 599]) {
        let n = v
            .lookup(dir, &format!("FILE-{i:05}.TXT"))
            .unwrap_or_else(|e| panic!("file {i}: {e}"));
        assert_eq!(
            v.read_file(n, 100).unwrap(),
            format!("file {i}\n").as_bytes()
        );
    }
    assert!(matches!(
        v.lookup(dir, "file-00600.txt"),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(v.lookup(dir, "a"), Err(Error::NotFound(_))));
    assert!(matches!(v.lookup(dir, "zzz"), Err(Error::NotFound(_))));
}

#[test]
fn fragmented_system_with_attribute_list() {
    let img = load("mbr-512.img.gz");
    let v = open_last(&img);
    let fx = v.file_extents("Windows/System32/config/SYSTEM").unwrap();
    assert_eq!(fx.data_size, 1 << 20);
    assert_eq!(fx.valid_data_length, fx.data_size);
    assert_eq!(fx.allocated_size, fx.data_size);
    assert!(!fx.resident && !fx.reparse && fx.flags == 0);
    assert_eq!(fx.segments, 2, "base record + one extension record");
    assert_eq!(fx.runs, 256, "one run per 4 KiB piece");
    assert_eq!(fx.extents.len(), 256);
    // the VCN-0 segment sits in the base record (the case the ntfs crate gets wrong)
    let attrs = v.attributes(fx.record).unwrap();
    assert!(attrs
        .iter()
        .any(|a| a.ty == ntfs::attr_type::ATTRIBUTE_LIST && a.record == fx.record));
    assert!(attrs.iter().any(|a| a.ty == ntfs::attr_type::DATA
        && a.record == fx.record
        && matches!(a.body, ntfs::AttrBody::NonResident { lowest_vcn: 0, .. })));
    let want = pattern("SYSTEM", 1 << 20);
    assert!(read_via_extents(&img, &fx) == want);
    assert!(v.read_extents(&fx, 4 << 20).unwrap() == want);
    // Split over two threads (forced by a low threshold): the same bytes.
    assert!(v.read_extents_parallel_from(&fx, 4 << 20, 0).unwrap() == want);
    assert!(v.read_extents_parallel(&fx, 4 << 20).unwrap() == want);
    fx.editable().unwrap();
    // map_range: the whole file and odd pieces spanning several extents
    let all = fx.map_range(0..fx.data_size).unwrap();
    assert_eq!(all.iter().map(|p| p.1).sum::<u64>(), fx.data_size);
    for (s, l) in [
        (0u64, 1u64),
        (4095, 2),
        (10_000, 20_000),
        ((1 << 20) - 7, 7),
    ] {
        let pieces = fx.map_range(s..s + l).unwrap();
        let mut got = Vec::new();
        for (d, n) in pieces {
            got.extend_from_slice(&img[d as usize..(d + n) as usize]);
        }
        assert_eq!(got, &want[s as usize..(s + l) as usize]);
    }
    assert!(matches!(
        fx.map_range(0..fx.data_size + 1),
        Err(Error::NotEditable { .. })
    ));
    assert!(v.read_extents(&fx, 1000).is_err(), "size limit");
}

#[test]
fn normal_files_and_read_file() {
    let img = load("mbr-512.img.gz");
    let v = open_last(&img);
    for (name, len) in [("SOFTWARE", 307200usize), ("SAM", 65536)] {
        let fx = v
            .file_extents(&format!("Windows/System32/config/{name}"))
            .unwrap();
        assert_eq!(fx.data_size as usize, len);
        assert_eq!(fx.segments, 1);
        assert!(read_via_extents(&img, &fx) == pattern(name, len));
        fx.editable().unwrap();
    }
}

#[test]
fn resident_file_is_not_editable() {
    let img = load("mbr-512.img.gz");
    let v = open_last(&img);
    let fx = v.file_extents("small.txt").unwrap();
    assert!(fx.resident);
    assert!(fx.extents.is_empty());
    assert_eq!(
        v.read_file(fx.record, 100).unwrap(),
        b"hello from a resident file\n"
    );
    match fx.editable() {
        Err(Error::NotEditable { path, reason }) => {
            assert_eq!(path, "small.txt");
            assert!(reason.contains("resident"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn sparse_file() {
    let img = load("gpt-4k.img.gz");
    let v = open_last(&img);
    let fx = v.file_extents("sparse.bin").unwrap();
    assert!(fx.is_sparse());
    assert_eq!(fx.data_size, 1 << 20);
    assert!(fx.extents.iter().any(|e| e.disk_offset.is_none()));
    let data = v.read_extents(&fx, 1 << 20).unwrap();
    assert!(data[..4096].iter().all(|&b| b == b'S'));
    assert!(data[4096..(1 << 20) - 4096].iter().all(|&b| b == 0));
    assert!(data[(1 << 20) - 4096..].iter().all(|&b| b == b'E'));
    assert_eq!(read_via_extents(&img, &fx), data);
    // allowed where allocated, refused across the hole
    fx.check_editable(0..4096).unwrap();
    assert!(fx.check_editable(4000..5000).is_err());
    assert!(fx.map_range(0..(1 << 20)).is_err());
}

#[test]
fn preallocated_file_vdl_below_size() {
    let img = load("gpt-4k.img.gz");
    let v = open_last(&img);
    let fx = v.file_extents("prealloc.bin").unwrap();
    assert_eq!(fx.data_size, 65536);
    assert!(
        fx.valid_data_length < fx.data_size,
        "{}",
        fx.valid_data_length
    );
    let data = v.read_extents(&fx, 1 << 20).unwrap();
    assert!(data[..4096].iter().all(|&b| b == b'P'));
    assert!(data[fx.valid_data_length as usize..]
        .iter()
        .all(|&b| b == 0));
    match fx.editable() {
        Err(Error::NotEditable { reason, .. }) => assert!(reason.contains("valid data length")),
        other => panic!("{other:?}"),
    }
}

fn compressible_text(n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    let mut i = 0;
    while v.len() < n {
        v.extend_from_slice(format!("line {i:08} of a compressible file\n").as_bytes());
        i += 1;
    }
    v.truncate(n);
    v
}

#[test]
fn compressed_file_is_refused() {
    let img = load("gpt-4k.img.gz");
    let v = open_last(&img);
    let fx = v.file_extents("Windows/compressed.log").unwrap();
    assert!(fx.is_compressed());
    assert_eq!(fx.data_size, 200_000);
    assert!(
        fx.extents.iter().any(|e| e.disk_offset.is_none()),
        "compressed units leave holes"
    );
    match fx.editable() {
        Err(Error::NotEditable { reason, .. }) => {
            assert!(reason.contains("compressed"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        v.read_extents(&fx, 1 << 20),
        Err(Error::Ntfs { .. })
    ));
    assert!(fx.map_range(0..10).is_err());
}

#[test]
fn wof_file_is_refused() {
    let img = load("gpt-4k.img.gz");
    let v = open_last(&img);
    let fx = v.file_extents("Windows/System32/wof.dll").unwrap();
    assert!(fx.reparse);
    assert_eq!(fx.named_streams, vec!["WofCompressedData".to_string()]);
    assert!(!fx.resident);
    // the unnamed stream itself is plain data (ntfs-3g wrote it before the reparse point)
    assert!(v.read_extents(&fx, 1 << 20).unwrap() == compressible_text(20_000));
    match fx.editable() {
        Err(Error::NotEditable { reason, .. }) => assert!(reason.contains("reparse"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn safety_of_a_clean_volume() {
    let img = load("mbr-512.img.gz");
    let v = open_last(&img);
    let s = v.safety();
    assert!(s.is_safe(), "{:?}", s.reasons);
    assert!(!s.dirty);
    assert_eq!(s.logfile.state, LogState::Empty);
    let h = s.hiberfil.expect("hiberfil.sys");
    assert_eq!(h.magic, HiberMagic::Zero);
    assert!(!h.r#unsafe);
    assert_eq!(s.ntfs_version, Some((3, 1)));
}

#[test]
fn gpt_4kn_hibernated_logfile_v2() {
    let img = load("gpt-4k.img.gz");
    let v = open_last(&img);
    let g = v.geometry();
    assert_eq!(g.bytes_per_sector, 4096);
    assert_eq!(g.record_size, 4096);
    let fx = v.file_extents("windows/system32/config/system").unwrap();
    assert!(read_via_extents(&img, &fx) == pattern("SOFTWARE", 307200));
    let s = v.safety();
    assert!(!s.is_safe());
    assert_eq!(s.logfile.state, LogState::Clean);
    assert_eq!(s.logfile.version, Some((2, 0)));
    assert!(!s.logfile.is_safe());
    assert_eq!(s.hiberfil.as_ref().unwrap().magic, HiberMagic::Hibr);
    assert_eq!(s.reasons.len(), 2, "{:?}", s.reasons);
    assert!(!s.dirty);
}

#[test]
fn fixup_stride_follows_the_record() {
    // On the 4Kn volume mkntfs writes FILE records of 4096 bytes; whatever the update sequence
    // count, the stride is record / (count - 1) and reading works (checked above). Here: a
    // torn stride is detected.
    let img = load("gpt-4k.img.gz");
    let v = open_last(&img);
    let n = v.find("small.txt").unwrap();
    let off = v.record_offset(n).unwrap();
    let rec = &img[off as usize..off as usize + 4096];
    let usa_count = u16::from_le_bytes([rec[6], rec[7]]) as usize;
    let stride = 4096 / (usa_count - 1);
    assert!(stride == 512 || stride == 4096, "stride {stride}");
    let mut bad = img.clone();
    bad[off as usize + stride - 1] ^= 0xFF;
    let (s, l) = *ntfs_partitions(&bad).last().unwrap();
    let v2 = Volume::open(&bad[..], s, l).unwrap();
    match v2.data_extents(n) {
        Err(Error::Ntfs { offset, reason }) => {
            assert_eq!(offset, off + stride as u64 - 2);
            assert!(reason.contains("update sequence"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn dirty_unclean_hibr_bare_volume() {
    let img = load("bare-unsafe.img.gz");
    let v = Volume::open(&img[..], 0, img.len() as u64).unwrap();
    assert_eq!(v.cluster_size(), 1024);
    let s = v.safety();
    assert!(s.dirty);
    assert_eq!(s.logfile.state, LogState::Unclean);
    assert_eq!(s.logfile.version, Some((1, 1)));
    assert_eq!(s.hiberfil.as_ref().unwrap().magic, HiberMagic::HibrUpper);
    assert_eq!(s.reasons.len(), 3, "{:?}", s.reasons);
    let fx = v.file_extents("Windows/System32/config/SAM").unwrap();
    assert!(read_via_extents(&img, &fx) == pattern("SAM", 65536));
}

#[test]
fn bitlocker_and_bad_boot_sectors() {
    let img = load("bare-unsafe.img.gz");
    let len = img.len() as u64;
    let mut b = img.clone();
    b[3..11].copy_from_slice(b"-FVE-FS-");
    assert!(matches!(
        Volume::open(&b[..], 0, len),
        Err(Error::BitLocker { offset: 0 })
    ));
    let mut b = img.clone();
    b[3..11].copy_from_slice(b"MSDOS5.0");
    assert!(matches!(
        Volume::open(&b[..], 0, len),
        Err(Error::Ntfs { offset: 3, .. })
    ));
    for (at, val) in [
        (0x0B, 0x03u8),
        (0x0C, 0x20),
        (0x0D, 0x03),
        (0x40, 0x00),
        (0x40, 0xE0),
    ] {
        let mut b = img.clone();
        b[at] = val;
        assert!(
            Volume::open(&b[..], 0, len).is_err(),
            "byte {at:#x} = {val:#x}"
        );
    }
    // partition shorter than the volume
    assert!(Volume::open(&img[..], 0, len - 4096).is_err());
    // absurd partition ranges
    assert!(Volume::open(&img[..], u64::MAX - 10, 100).is_err());
    assert!(Volume::open(&img[..], 4096, u64::MAX).is_err());
    assert!(Volume::open(&img[..], len, 1 << 20).is_err());
}

#[test]
fn used_clusters_cover_the_files() {
    let img = load("mbr-512.img.gz");
    let v = open_last(&img);
    let used = v.used_clusters().unwrap();
    assert!(used.windows(2).all(|w| w[0].end < w[1].start));
    let cs = v.cluster_size();
    let in_used = |lcn: u64| used.iter().any(|r| r.contains(&lcn));
    for p in [
        "Windows/System32/config/SYSTEM",
        "Windows/System32/config/SOFTWARE",
        "Windows/System32/config/SAM",
    ] {
        let fx = v.file_extents(p).unwrap();
        for e in fx
            .extents
            .iter()
            .filter_map(|e| e.disk_offset.map(|d| (d, e.len)))
        {
            let first = (e.0 - v.part_offset()) / cs;
            let last = (e.0 + e.1 - 1 - v.part_offset()) / cs;
            assert!(in_used(first) && in_used(last), "{p}");
        }
    }
    for r in v.mft_runs() {
        assert!(in_used(r.lcn.unwrap()));
    }
    let bytes = v.used_byte_ranges().unwrap();
    assert_eq!(bytes[0].start, v.part_offset());
    let end = v.part_offset() + v.part_len();
    assert_eq!(bytes.last().unwrap().end, end, "backup boot sector kept");
    assert_eq!(
        &img[(end - 512) as usize + 3..(end - 512) as usize + 11],
        b"NTFS    "
    );
}

/// A `Read + Seek` window over the partition for the `ntfs` crate.
fn crate_fs(img: &[u8]) -> std::io::Cursor<Vec<u8>> {
    let (s, l) = *ntfs_partitions(img).last().unwrap();
    std::io::Cursor::new(img[s as usize..(s + l) as usize].to_vec())
}

fn crate_file<'n>(
    fs: &mut std::io::Cursor<Vec<u8>>,
    ntfs: &'n ::ntfs::Ntfs,
    path: &str,
) -> ::ntfs::NtfsFile<'n> {
    use ::ntfs::indexes::NtfsFileNameIndex;
    let mut f = ntfs.root_directory(fs).unwrap();
    for c in path.split('/') {
        let idx = f.directory_index(fs).unwrap();
        let mut finder = idx.finder();
        let e = NtfsFileNameIndex::find(&mut finder, ntfs, fs, c)
            .unwrap()
            .unwrap();
        f = e.to_file(ntfs, fs).unwrap();
    }
    f
}

/// Runs of the unnamed $DATA as the `ntfs` crate sees them: (data length, [(position, len)]).
fn crate_runs(
    fs: &mut std::io::Cursor<Vec<u8>>,
    file: &::ntfs::NtfsFile<'_>,
) -> (u64, Vec<(Option<u64>, u64)>) {
    use ::ntfs::attribute_value::NtfsAttributeValue;
    let item = file.data(fs, "").unwrap().unwrap();
    let attr = item.to_attribute().unwrap();
    let len = attr.value_length();
    let mut runs = Vec::new();
    match attr.value(fs).unwrap() {
        NtfsAttributeValue::NonResident(v) => {
            for r in v.data_runs() {
                let r = r.unwrap();
                runs.push((
                    r.data_position().value().map(|p| p.get()),
                    r.allocated_size(),
                ));
            }
        }
        NtfsAttributeValue::AttributeListNonResident(_) => {}
        NtfsAttributeValue::Resident(_) => {}
    }
    (len, runs)
}

fn cross_check(img: &[u8], paths: &[&str]) {
    let v = open_last(img);
    let base = v.part_offset();
    let mut fs = crate_fs(img);
    let mut n = ::ntfs::Ntfs::new(&mut fs).unwrap();
    n.read_upcase_table(&mut fs).unwrap();
    assert_eq!(n.cluster_size() as u64, v.cluster_size());
    assert_eq!(n.file_record_size(), v.record_size());
    for p in paths {
        let f = crate_file(&mut fs, &n, p);
        assert_eq!(f.file_record_number(), v.find(p).unwrap(), "{p}");
        let (len, runs) = crate_runs(&mut fs, &f);
        let fx = v.file_extents(p).unwrap();
        assert_eq!(len, fx.data_size);
        // merge the crate's runs the same way and compare with our extents
        let mut ours: Vec<(Option<u64>, u64)> = Vec::new();
        let mut pos = 0;
        for (d, l) in runs {
            if pos >= fx.data_size {
                break;
            }
            let l = l.min(fx.data_size - pos);
            let d = d.map(|d| d + base);
            match ours.last_mut() {
                Some((Some(a), al)) if d == Some(*a + *al) => *al += l,
                Some((None, al)) if d.is_none() => *al += l,
                _ => ours.push((d, l)),
            }
            pos += l;
        }
        let theirs: Vec<(Option<u64>, u64)> =
            fx.extents.iter().map(|e| (e.disk_offset, e.len)).collect();
        assert_eq!(ours, theirs, "{p}");
    }
}

#[test]
fn cross_check_with_the_ntfs_crate() {
    let img = load("mbr-512.img.gz");
    cross_check(
        &img,
        &[
            "Windows/System32/config/SOFTWARE",
            "Windows/System32/config/SAM",
        ],
    );
    let img4k = load("gpt-4k.img.gz");
    cross_check(&img4k, &["Windows/System32/config/SYSTEM", "sparse.bin"]);
}

#[test]
fn ntfs_crate_attribute_list_bug() {
    // docs/diskimg-ntfs.md: the fragmented SYSTEM has an $ATTRIBUTE_LIST and its first $DATA
    // segment in the base record; ntfs 0.4.0 yields a 0-byte value for it.
    let img = load("mbr-512.img.gz");
    let v = open_last(&img);
    let mut fs = crate_fs(&img);
    let mut n = ::ntfs::Ntfs::new(&mut fs).unwrap();
    n.read_upcase_table(&mut fs).unwrap();
    let path = "Windows/System32/config/SYSTEM";
    let f = crate_file(&mut fs, &n, path);
    let (len, _) = crate_runs(&mut fs, &f);
    let fx = v.file_extents(path).unwrap();
    assert_eq!(fx.data_size, 1 << 20);
    assert_ne!(len, fx.data_size, "ntfs 0.4.0 attribute-list bug is gone?");
    assert_eq!(len, 0);
    // the documented workaround (walk the attribute list by hand) finds all runs
    assert_eq!(crate_workaround_runs(&mut fs, &n, path), fx.runs);
}

/// Mutates bytes of the boot sector, well-known MFT records, the file's records and the
/// directory's index blocks (fixed-seed PRNG) and runs every entry point: no panic allowed.
fn mutate(img: &[u8], file: &str, dir: &str, probe: &str, iters: usize, seed: u64) {
    let (ps, pl) = *ntfs_partitions(img).last().unwrap();
    let v = Volume::open(img, ps, pl).unwrap();
    let rs = v.record_size() as u64;
    let cs = v.cluster_size();
    let sys = v.find(file).unwrap();
    let d = v.find(dir).unwrap();
    let mut targets: Vec<(u64, u64)> = vec![(ps, 512)];
    let mut recs = vec![0u64, 2, 3, 5, 6, 10, sys, d];
    for a in v.attributes(sys).unwrap() {
        recs.push(a.record);
    }
    for r in recs {
        targets.push((v.record_offset(r).unwrap(), rs));
    }
    for a in v.attributes(d).unwrap() {
        if let ntfs::AttrBody::NonResident { runs, .. } = &a.body {
            for r in runs.iter().take(16) {
                if let Some(l) = r.lcn {
                    targets.push((ps + l * cs, r.len * cs));
                }
            }
        }
    }
    let mut rng = Rng(seed);
    let mut opened = 0;
    for _ in 0..iters {
        let (base, len) = targets[rng.below(targets.len() as u64) as usize];
        let mut patches = Vec::new();
        for _ in 0..1 + rng.below(8) {
            let o = base + rng.below(len);
            let val = match rng.below(4) {
                0 => 0,
                1 => 0xFF,
                _ => rng.next() as u8,
            };
            patches.push((o, val));
        }
        let ov = Overlay { base: img, patches };
        let Ok(v) = Volume::open(&ov, ps, pl) else {
            continue;
        };
        opened += 1;
        let _ = v.find(file);
        let _ = v.find(probe);
        if let Ok(fx) = v.data_extents(sys) {
            let _ = fx.map_range(0..fx.data_size.min(100_000));
            let _ = v.read_extents(&fx, 4 << 20);
        }
        let _ = v.safety();
        let _ = v.used_clusters();
        let _ = v.used_byte_ranges();
    }
    assert!(opened > iters / 4, "opened {opened}");
}

#[test]
fn hostile_mutations_do_not_panic() {
    // IMGPREP_NTFS_MUTATIONS=N runs N iterations per image (a longer campaign by hand)
    let iters = std::env::var("IMGPREP_NTFS_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) { 600 } else { 6000 });
    let img = load("mbr-512.img.gz");
    mutate(
        &img,
        "Windows/System32/config/SYSTEM",
        "Windows/System32/config",
        "Windows/System32/config/SAM",
        iters,
        0x1234_5678_9ABC_DEF1,
    );
    let img = load("gpt-4k.img.gz");
    mutate(
        &img,
        "Windows/System32/config/SYSTEM",
        "Windows/WinSxS",
        "Windows/WinSxS/file-00321.txt",
        iters,
        0x0FED_CBA9_8765_4321,
    );
}

#[test]
fn run_decoder_limits() {
    let mut out = Vec::new();
    // not terminated
    assert!(ntfs::decode_runs(&[0x11, 0x01, 0x05], 0, 100, 0, &mut out).is_err());
    // run past the volume
    out.clear();
    assert!(ntfs::decode_runs(&[0x11, 0x10, 0x60, 0x00], 0, 100, 0, &mut out).is_err());
    // negative LCN
    out.clear();
    assert!(ntfs::decode_runs(&[0x11, 0x01, 0xF0, 0x00], 0, 100, 0, &mut out).is_err());
    // sparse + relative runs
    out.clear();
    ntfs::decode_runs(
        &[0x11, 0x02, 0x10, 0x01, 0x03, 0x11, 0x01, 0xFE, 0x00],
        0,
        100,
        0,
        &mut out,
    )
    .unwrap();
    assert_eq!(
        out,
        vec![
            ntfs::Run {
                vcn: 0,
                len: 2,
                lcn: Some(16)
            },
            ntfs::Run {
                vcn: 2,
                len: 3,
                lcn: None
            },
            ntfs::Run {
                vcn: 5,
                len: 1,
                lcn: Some(14)
            },
        ]
    );
    // zero-length header byte invalid
    out.clear();
    assert!(ntfs::decode_runs(&[0x10, 0x00], 0, 100, 0, &mut out).is_err());
}

// ---------------------------------------------------------------------------------------------
// tier 2: images built with fixtures/make-image.sh, checked with ntfs-3g tools

fn make_image(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let st = Command::new("bash")
        .arg(repo().join("fixtures/make-image.sh"))
        .args(args)
        .arg(&out)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("make-image.sh");
    assert!(st.success(), "make-image.sh {args:?}");
    out
}

fn write_pattern(dir: &Path, name: &str, n: usize) -> String {
    let p = dir.join(name);
    std::fs::write(&p, pattern(name, n)).unwrap();
    p.to_str().unwrap().to_string()
}

fn ntfscat(part: &Path, path: &str) -> Vec<u8> {
    let o = Command::new("ntfscat")
        .arg("-f")
        .arg(part)
        .arg(path)
        .output()
        .expect("ntfscat");
    assert!(
        o.status.success(),
        "ntfscat {path}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// The big fragmented image (bare partition, so ntfscat can read it directly).
fn big_image(dir: &Path) -> PathBuf {
    let sys = write_pattern(dir, "SYSTEM", 12 << 20);
    let soft = write_pattern(dir, "SOFTWARE", 3 << 20);
    let small = dir.join("small.txt");
    std::fs::write(&small, b"tiny resident file\n").unwrap();
    make_image(
        dir,
        "big.img",
        &[
            "--table",
            "none",
            "--size",
            "48",
            "--cluster-size",
            "512",
            "--put",
            &format!("{sys}:Windows/System32/config/SYSTEM"),
            "--fragment",
            "--put",
            &format!("{soft}:Windows/System32/config/SOFTWARE"),
            "--put",
            &format!("{}:small.txt", small.display()),
            "--sparse",
            "sparse.bin:2097152",
            "--mkfiles",
            "Windows/WinSxS:2000",
        ],
    )
}

#[test]
fn interop_extents_match_ntfscat() {
    if !interop() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = big_image(dir.path());
    let img = std::fs::read(&p).unwrap();
    let v = Volume::open(&img[..], 0, img.len() as u64).unwrap();
    let fx = v.file_extents("Windows/System32/config/SYSTEM").unwrap();
    assert!(fx.runs >= 1500, "runs {}", fx.runs);
    assert!(fx.segments >= 3, "segments {}", fx.segments);
    for path in [
        "Windows/System32/config/SYSTEM",
        "Windows/System32/config/SOFTWARE",
        "small.txt",
        "sparse.bin",
        "Windows/WinSxS/file-01999.txt",
    ] {
        let fx = v.file_extents(path).unwrap();
        let ours = v.read_extents(&fx, 64 << 20).unwrap();
        let theirs = ntfscat(&p, path);
        assert!(ours == theirs, "{path}: differs from ntfscat");
        if !fx.resident {
            assert!(read_via_extents(&img, &fx) == theirs, "{path}");
        }
    }
    // the ntfs crate agrees on the files without an attribute list, and shows its bug on SYSTEM
    cross_check(&img, &["Windows/System32/config/SOFTWARE", "sparse.bin"]);
    {
        let mut fs = crate_fs(&img);
        let mut n = ::ntfs::Ntfs::new(&mut fs).unwrap();
        n.read_upcase_table(&mut fs).unwrap();
        let sys = "Windows/System32/config/SYSTEM";
        let f = crate_file(&mut fs, &n, sys);
        assert_eq!(
            crate_runs(&mut fs, &f).0,
            0,
            "ntfs 0.4.0 attribute-list bug"
        );
        assert_eq!(crate_workaround_runs(&mut fs, &n, sys), fx.runs);
    }
    // used clusters agree with ntfsinfo's free cluster count
    let o = Command::new("ntfsinfo")
        .args(["-f", "-m"])
        .arg(&p)
        .output()
        .unwrap();
    let txt = String::from_utf8_lossy(&o.stdout);
    let free: u64 = txt
        .lines()
        .find(|l| l.contains("Free Clusters"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no free clusters in ntfsinfo output:\n{txt}"));
    let used: u64 = v
        .used_clusters()
        .unwrap()
        .iter()
        .map(|r| r.end - r.start)
        .sum();
    assert_eq!(used + free, v.total_clusters());
}

#[test]
fn interop_in_place_write_changes_only_the_file() {
    if !interop() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = big_image(dir.path());
    let orig = std::fs::read(&p).unwrap();
    let v = Volume::open(&orig[..], 0, orig.len() as u64).unwrap();
    let fx = v.file_extents("Windows/System32/config/SYSTEM").unwrap();
    let pieces = fx.map_range(0..fx.data_size).unwrap();
    let mut rng = Rng(42);
    let new: Vec<u8> = (0..fx.data_size).map(|_| rng.next() as u8).collect();
    let mut img = orig.clone();
    let mut pos = 0usize;
    for &(d, n) in &pieces {
        img[d as usize..(d + n) as usize].copy_from_slice(&new[pos..pos + n as usize]);
        pos += n as usize;
    }
    let copy = dir.path().join("edited.img");
    std::fs::write(&copy, &img).unwrap();
    // block diff at cluster grain: every changed block lies inside the file's extents
    let blk = v.cluster_size();
    let inside = |b: u64| {
        pieces
            .iter()
            .any(|&(d, n)| b * blk >= d && (b + 1) * blk <= d + n)
    };
    let mut changed = 0;
    for (i, (a, b)) in orig
        .chunks(blk as usize)
        .zip(img.chunks(blk as usize))
        .enumerate()
    {
        if a != b {
            changed += 1;
            assert!(inside(i as u64), "block {i} outside the extents changed");
        }
    }
    assert_eq!(changed as u64, fx.data_size / blk);
    assert!(ntfscat(&copy, "Windows/System32/config/SYSTEM") == new);
    let o = Command::new("ntfsfix")
        .arg("-n")
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "ntfsfix -n: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let v2 = Volume::open(&img[..], 0, img.len() as u64).unwrap();
    assert!(v2.safety().is_safe());
}

#[test]
fn interop_mft_with_attribute_list() {
    if !interop() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = make_image(
        dir.path(),
        "mft.img",
        &[
            "--table",
            "none",
            "--size",
            "16",
            "--cluster-size",
            "512",
            "--fragment-mft",
            "5000",
        ],
    );
    let img = std::fs::read(&p).unwrap();
    let v = Volume::open(&img[..], 0, img.len() as u64).unwrap();
    let mft = v.attributes(0).unwrap();
    assert!(mft.iter().any(|a| a.ty == ntfs::attr_type::ATTRIBUTE_LIST));
    let segs = mft
        .iter()
        .filter(|a| a.ty == ntfs::attr_type::DATA && a.name.is_empty())
        .count();
    assert!(segs >= 3, "$MFT $DATA segments: {segs}");
    assert!(v.mft_runs().len() > 500, "{} runs", v.mft_runs().len());
    assert!(v.mft_records() >= 5000);
    // records far past the base segment are reachable, and agree with ntfscat
    for i in [0, 2500, 4998, 4999] {
        let path = format!("MftFill/m{i:05}.txt");
        let n = v.find(&path).unwrap();
        let ours = v.read_file(n, 100).unwrap();
        assert_eq!(ours, format!("mft fill {i:05}\n").as_bytes());
        assert_eq!(ours, ntfscat(&p, &path), "{path}");
    }
    let used: u64 = v
        .used_clusters()
        .unwrap()
        .iter()
        .map(|r| r.end - r.start)
        .sum();
    for r in v.mft_runs() {
        let l = r.lcn.unwrap();
        assert!(v
            .used_clusters()
            .unwrap()
            .iter()
            .any(|u| u.start <= l && l + r.len <= u.end));
    }
    assert!(used > 0);
}

/// name, make-image options, dirty, hiberfil magic, log state, log version
type SafetyCase<'a> = (
    &'a str,
    &'a [&'a str],
    bool,
    Option<HiberMagic>,
    LogState,
    Option<(i16, i16)>,
);

#[test]
fn interop_safety_states() {
    if !interop() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: &[SafetyCase<'_>] = &[
        (
            "clean",
            &["--hiberfil", "zero"],
            false,
            Some(HiberMagic::Zero),
            LogState::Empty,
            None,
        ),
        (
            "wake",
            &["--hiberfil", "wake"],
            false,
            Some(HiberMagic::Wake),
            LogState::Empty,
            None,
        ),
        (
            "hibr",
            &["--hiberfil", "hibr"],
            false,
            Some(HiberMagic::Hibr),
            LogState::Empty,
            None,
        ),
        (
            "v2",
            &["--logfile-v2"],
            false,
            None,
            LogState::Clean,
            Some((2, 0)),
        ),
        (
            "unclean",
            &["--logfile-unclean"],
            false,
            None,
            LogState::Unclean,
            Some((1, 1)),
        ),
        (
            "v2unclean",
            &["--logfile-v2", "--logfile-unclean"],
            false,
            None,
            LogState::Unclean,
            Some((2, 0)),
        ),
        ("dirty", &["--dirty"], true, None, LogState::Empty, None),
    ];
    for (name, args, dirty, hib, log, ver) in cases {
        let mut a = vec!["--table", "none", "--size", "8"];
        a.extend_from_slice(args);
        let p = make_image(d, &format!("{name}.img"), &a);
        let img = std::fs::read(&p).unwrap();
        let v = Volume::open(&img[..], 0, img.len() as u64).unwrap();
        let s = v.safety();
        assert_eq!(s.dirty, *dirty, "{name}");
        assert_eq!(s.hiberfil.as_ref().map(|h| h.magic.clone()), *hib, "{name}");
        assert_eq!(&s.logfile.state, log, "{name}");
        assert_eq!(s.logfile.version, *ver, "{name}");
        assert_eq!(s.is_safe(), *name == "clean", "{name}: {:?}", s.reasons);
    }
}

#[test]
fn interop_partition_tables() {
    if !interop() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sys = write_pattern(d, "SYSTEM", 1 << 20);
    let put = format!("{sys}:Windows/System32/config/SYSTEM");
    for (table, ss, windows) in [
        ("mbr", 512u64, false),
        ("mbr", 4096, false),
        ("gpt", 512, false),
        ("gpt", 4096, false),
        ("gpt", 512, true),
        ("gpt", 4096, true),
    ] {
        let ss_s = ss.to_string();
        let mut args = vec![
            "--table",
            table,
            "--sector-size",
            &ss_s,
            "--size",
            "16",
            "--put",
            &put,
        ];
        if windows {
            args.push("--gpt-windows");
        }
        let name = format!("{table}{ss}{windows}.img");
        let p = make_image(d, &name, &args);
        let img = std::fs::read(&p).unwrap();
        let parts = ntfs_partitions(&img);
        // ESP, MSR, Windows, Recovery with --gpt-windows
        let (start, len) = if windows {
            parts[2]
        } else {
            *parts.last().unwrap()
        };
        let v = Volume::open(&img[..], start, len).unwrap();
        assert_eq!(v.bytes_per_sector() as u64, ss);
        let fx = v.file_extents("Windows/System32/config/SYSTEM").unwrap();
        assert!(
            read_via_extents(&img, &fx) == pattern("SYSTEM", 1 << 20),
            "{name}"
        );
        if windows {
            let rec = Volume::open(&img[..], parts[3].0, parts[3].1).unwrap();
            assert_eq!(rec.bytes_per_sector() as u64, ss);
        }
        if table == "gpt" {
            // independent check of the GPT (incl. the python-written 4Kn one): the gpt crate
            let lb = if ss == 512 {
                gpt::disk::LogicalBlockSize::Lb512
            } else {
                gpt::disk::LogicalBlockSize::Lb4096
            };
            let disk = gpt::GptConfig::new()
                .writable(false)
                .logical_block_size(lb)
                .open(&p)
                .unwrap_or_else(|e| panic!("{name}: gpt crate: {e}"));
            let got: Vec<(u64, u64)> = disk
                .partitions()
                .values()
                .map(|q| (q.first_lba * ss, (q.last_lba + 1 - q.first_lba) * ss))
                .collect();
            assert_eq!(got, parts, "{name}");
            assert!(disk.primary_header().is_ok() && disk.backup_header().is_ok());
        }
        if table == "gpt" && ss == 512 {
            let o = Command::new("sgdisk").arg("-v").arg(&p).output().unwrap();
            assert!(
                String::from_utf8_lossy(&o.stdout).contains("No problems found"),
                "{}",
                String::from_utf8_lossy(&o.stdout)
            );
        }
    }
}

/// Benchmark (run by `benches/ntfs-map.sh`): maps the fragmented SYSTEM of the image in
/// `IMGPREP_NTFS_BENCH_IMAGE` N times, with our reader and with the `ntfs` crate's workaround.
#[test]
#[ignore]
fn bench_map_fragmented_system() {
    let Ok(p) = std::env::var("IMGPREP_NTFS_BENCH_IMAGE") else {
        eprintln!("skipped: IMGPREP_NTFS_BENCH_IMAGE not set");
        return;
    };
    let f = std::fs::File::open(&p).unwrap();
    let len = f.metadata().unwrap().len();
    let path = "Windows/System32/config/SYSTEM";
    let iters = 50;
    let t = std::time::Instant::now();
    let mut runs = 0;
    for _ in 0..iters {
        let v = Volume::open(&f, 0, len).unwrap();
        let fx = v.file_extents(path).unwrap();
        runs = fx.runs;
    }
    let open_find_map = t.elapsed() / iters;
    let v = Volume::open(&f, 0, len).unwrap();
    let t = std::time::Instant::now();
    for _ in 0..iters {
        let fx = v.file_extents(path).unwrap();
        let _ = fx.map_range(0..fx.data_size).unwrap();
    }
    let find_map = t.elapsed() / iters;
    let fx = v.file_extents(path).unwrap();
    println!(
        "BENCH ours: {runs} runs, {} segments; open+find+map {open_find_map:?}; find+map+map_range {find_map:?}",
        fx.segments
    );
    // the ntfs crate, for comparison: workaround of docs/disk.md 1.2 (attribute list entries)
    let mut fs = std::io::BufReader::new(std::fs::File::open(&p).unwrap());
    let t = std::time::Instant::now();
    let mut crate_runs_n = 0;
    for _ in 0..iters {
        let mut n = ::ntfs::Ntfs::new(&mut fs).unwrap();
        n.read_upcase_table(&mut fs).unwrap();
        crate_runs_n = crate_workaround_runs(&mut fs, &n, path);
    }
    println!(
        "BENCH ntfs crate (attribute-list workaround): {crate_runs_n} runs; open+find+map {:?}",
        t.elapsed() / iters
    );
}

fn crate_workaround_runs<T: std::io::Read + std::io::Seek>(
    fs: &mut T,
    ntfs: &::ntfs::Ntfs,
    path: &str,
) -> usize {
    use ::ntfs::attribute_value::NtfsAttributeValue;
    use ::ntfs::indexes::NtfsFileNameIndex;
    use ::ntfs::structured_values::NtfsAttributeList;
    use ::ntfs::NtfsAttributeType;
    let mut f = ntfs.root_directory(fs).unwrap();
    for c in path.split('/') {
        let idx = f.directory_index(fs).unwrap();
        let mut finder = idx.finder();
        let e = NtfsFileNameIndex::find(&mut finder, ntfs, fs, c)
            .unwrap()
            .unwrap();
        f = e.to_file(ntfs, fs).unwrap();
    }
    let mut total = 0;
    for a in f.attributes_raw() {
        let a = a.unwrap();
        if a.ty().unwrap() != NtfsAttributeType::AttributeList {
            continue;
        }
        let list = a
            .structured_value::<_, NtfsAttributeList<'_, '_>>(fs)
            .unwrap();
        let mut entries = list.entries();
        while let Some(e) = entries.next(fs) {
            let e = e.unwrap();
            if e.ty().unwrap() != NtfsAttributeType::Data || !e.name().is_empty() {
                continue;
            }
            let seg = e.to_file(ntfs, fs).unwrap();
            let attr = e.to_attribute(&seg).unwrap();
            if let NtfsAttributeValue::NonResident(v) = attr.value(fs).unwrap() {
                total += v.data_runs().count();
            }
        }
    }
    total
}
