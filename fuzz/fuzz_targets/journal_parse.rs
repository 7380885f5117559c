// SPDX-License-Identifier: MIT OR Apache-2.0
//! Fuzzes the undo-journal parser (JSON, magic, version, checksum, entry checks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = diskimg::journal::parse_journal(data, std::path::Path::new("fuzz"));
});
