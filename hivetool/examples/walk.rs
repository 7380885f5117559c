// SPDX-License-Identifier: MIT OR Apache-2.0
//! Full walk of a hive decoding every value; prints key and value counts.
//! Usage: `cargo run --release -p hivetool --example walk -- FILE [REPEAT]`
use hivetool::{Hive, Key};

fn walk(k: Key<'_>, depth: usize, keys: &mut u64, values: &mut u64, bytes: &mut u64) {
    *keys += 1;
    if depth > hivetool::hive::MAX_DEPTH {
        return;
    }
    for v in k.values().expect("values") {
        let v = v.expect("value");
        let _ = v.name();
        let d = v.decoded().expect("data");
        *bytes += std::hint::black_box(match d {
            hivetool::Data::Sz(s) => s.len(),
            hivetool::Data::MultiSz(v) => v.len(),
            _ => 1,
        }) as u64;
        *values += 1;
    }
    for s in k.subkeys().expect("subkeys") {
        let s = s.expect("subkey");
        let _ = s.name();
        walk(s, depth + 1, keys, values, bytes);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("FILE");
    let repeat: usize = args.next().map(|s| s.parse().expect("REPEAT")).unwrap_or(1);
    let data = std::fs::read(&path).expect("read");
    for _ in 0..repeat {
        let hive = Hive::open(&data).expect("open");
        let (mut k, mut v, mut b) = (0, 0, 0);
        walk(hive.root().expect("root"), 0, &mut k, &mut v, &mut b);
        println!("{path}: {k} keys, {v} values");
    }
}
