// SPDX-License-Identifier: MIT OR Apache-2.0
//! Fuzzes reading: open (strict and unchecked) + full walk decoding every value + `check` +
//! both `.reg` export dialects. Must never panic and must terminate. Seed with the corpus
//! hives (`cp ../shared/hives/*.hive fuzz/corpus/hive_open_walk/` locally, never commit them).
#![no_main]

use hivetool::check::check;
use hivetool::export::{export, ExportOptions, Format};
use hivetool::{Hive, Key};
use libfuzzer_sys::fuzz_target;

/// Visits keys and values; `budget` counts every list entry visited (errors included), so shared lists
/// (which this naive walker does not detect) cannot make the work quadratic.
fn walk(k: Key<'_>, depth: usize, budget: &mut usize) {
    if depth > hivetool::hive::MAX_DEPTH || *budget == 0 {
        return;
    }
    *budget -= 1;
    let _ = k.name();
    let _ = k.class_name();
    if let Ok(values) = k.values() {
        for v in values {
            if *budget == 0 {
                return;
            }
            *budget -= 1;
            let Ok(v) = v else { continue };
            let _ = v.name();
            let _ = v.decoded();
            let _ = v.data_lossy();
        }
    }
    if let Ok(subs) = k.subkeys() {
        for s in subs {
            if *budget == 0 {
                return;
            }
            match s {
                Ok(s) => walk(s, depth + 1, budget),
                Err(_) => *budget -= 1,
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = Hive::open(data).map(|h| h.key("a\\b"));
    let Ok(hive) = Hive::open_unchecked(data) else {
        return;
    };
    if let Ok(root) = hive.root() {
        // The walker has no cycle detection of its own: bound it by the number of cells.
        let mut budget = hive.bins().len() / 8 + 1;
        walk(root, 0, &mut budget);
    }
    let report = check(&hive);
    assert!(report.problems.len() as u64 <= report.problem_count);
    for format in [Format::Regedit, Format::Hivex] {
        let opts = ExportOptions {
            format,
            prefix: Some("HKEY_LOCAL_MACHINE\\X".into()),
            utf16: true,
        };
        let _ = export(&hive, "", &opts, std::io::sink());
    }
});
