// SPDX-License-Identifier: MIT OR Apache-2.0
//! Fuzz `diskimg::ntfs`: the input is a whole NTFS partition. Seeds: a partition cut out of
//! `fixtures/ntfs/bare-unsafe.img.gz` (gunzip it; it is a bare volume).
#![no_main]

use diskimg::ntfs::Volume;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = Volume::open(data, 0, data.len() as u64) else {
        return;
    };
    for path in ["Windows/System32/config/SYSTEM", "hiberfil.sys", "$MFT"] {
        if let Ok(fx) = v.file_extents(path) {
            let _ = fx.editable();
            let _ = fx.map_range(0..fx.data_size.min(1 << 20));
            let _ = v.read_extents(&fx, 1 << 20);
        }
    }
    for n in 0..16 {
        let _ = v.data_extents(n);
    }
    let _ = v.safety();
    let _ = v.used_byte_ranges();
});
