// SPDX-License-Identifier: MIT OR Apache-2.0
//! Fuzz the partition-table parser and the copy planner: the input is the image's first bytes
//! (sparse tail implied by a length taken from the input), read at 512 and 4096 bytes/sector.
#![no_main]

use diskimg::partition::{detect_sector_size, read_table};
use diskimg::range::{copy_range, plan_copy, DdTarget, GptFix};
use diskimg::ReadAt;
use libfuzzer_sys::fuzz_target;

/// The fuzz input followed by zeros up to `len`.
struct Img<'a> {
    data: &'a [u8],
    len: u64,
}

impl ReadAt for Img<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(self.len - offset) as usize;
        let buf = &mut buf[..n];
        buf.fill(0);
        if let Ok(o) = usize::try_from(offset) {
            if o < self.data.len() {
                let m = n.min(self.data.len() - o);
                buf[..m].copy_from_slice(&self.data[o..o + m]);
            }
        }
        Ok(n)
    }
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.len)
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((head, data)) = input.split_first_chunk::<4>() else {
        return;
    };
    // Image length: the data plus up to 2^32 sectors of implied zeros.
    let extra = u64::from(u32::from_le_bytes(*head)) * 512;
    let img = Img {
        data,
        len: data.len() as u64 + extra,
    };
    let _ = detect_sector_size(&img);
    for ss in [512u32, 4096] {
        let Ok(t) = read_table(&img, ss) else {
            continue;
        };
        let _ = t.to_text();
        let _ = t.sfdisk_dump("/dev/sdx");
        let _ = t.check();
        let Ok(r) = copy_range(&t) else {
            continue;
        };
        let _ = r.to_text();
        for fix in [GptFix::KeepBackup, GptFix::Relocate] {
            if let Ok(p) = plan_copy(&img, &t, fix) {
                let _ = p.to_text();
                let _ = p.dd_commands(&DdTarget {
                    image: "img".into(),
                    host: Some("h".into()),
                    device: "/dev/zvol/p/v".into(),
                });
            }
        }
    }
});
