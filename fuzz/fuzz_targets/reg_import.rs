// SPDX-License-Identifier: MIT OR Apache-2.0
//! Fuzz target: parse arbitrary bytes as a `.reg` file and import them into a new hive, in
//! growable and in fixed-size mode. Never panics; every committed result is a clean hive that
//! `hivetool::check` accepts; the fixed-size result keeps its length; a failed import leaves a
//! hive that still commits clean (each operation is atomic).
#![no_main]

use hivetool::edit::{new_hive, Editor, Growth};
use hivetool::regfile::{apply, parse, ImportOptions};
use hivetool::Hive;
use libfuzzer_sys::fuzz_target;

/// Inputs above this are ignored (bounds time and memory per run).
const MAX_INPUT: usize = 64 * 1024;

fn assert_clean(data: &[u8]) {
    let hive = Hive::open(data).expect("committed hive opens");
    let report = hivetool::check::check(&hive);
    assert!(report.is_clean(), "{report:?}");
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(file) = parse(data) else { return };
    for growth in [Growth::Growable, Growth::Fixed] {
        let img = new_hive(5, 0x01D0_0000_0000_0000).expect("new hive");
        let len = img.len();
        let mut ed = Editor::open(img, growth).expect("open new hive");
        ed.set_clock(Some(1));
        let _ = apply(&mut ed, &file, &ImportOptions::default());
        let c = ed.commit(0).expect("commit");
        if growth == Growth::Fixed {
            assert_eq!(c.data.len(), len);
        }
        assert_clean(&c.data);
    }
});
