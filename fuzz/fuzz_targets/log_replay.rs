// SPDX-License-Identifier: MIT OR Apache-2.0
//! Fuzzes transaction-log replay: the input is split into a primary hive and two logs.
//!
//! Layout: `u16 primary_len, u16 log1_len` (little-endian), then the primary bytes, the LOG1
//! bytes and, as LOG2, whatever remains. Lengths are clamped to the available data.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let a = usize::from(u16::from_le_bytes([data[0], data[1]]));
    let b = usize::from(u16::from_le_bytes([data[2], data[3]]));
    let rest = &data[4..];
    let a = a.min(rest.len());
    let (primary, rest) = rest.split_at(a);
    let b = b.min(rest.len());
    let (log1, log2) = rest.split_at(b);
    let logs: [(&str, &[u8]); 2] = [("LOG1", log1), ("LOG2", log2)];
    let _ = hivetool::log::scan_log(log1);
    let _ = hivetool::log::max_sequence(primary, &logs);
    if let Ok(r) = hivetool::log::replay(primary, &logs) {
        // the result is always a clean hive image
        let base = hivetool::BaseBlock::parse(&r.data).expect("result has a base block");
        assert!(!base.is_dirty());
    }
});
