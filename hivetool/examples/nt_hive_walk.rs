// SPDX-License-Identifier: MIT OR Apache-2.0
//! The same full walk as `walk.rs`, done with nt-hive (dev-dependency, GPL; benchmark only):
//! every key name, every value name, every value's data read and strings decoded.
//! Usage: `cargo run --release -p hivetool --example nt_hive_walk -- FILE [REPEAT]`
use nt_hive::{Hive, KeyNode, KeyValueDataType};

fn walk(k: KeyNode<'_, &[u8]>, depth: usize, keys: &mut u64, values: &mut u64, bytes: &mut u64) {
    *keys += 1;
    if depth > 512 {
        return;
    }
    if let Some(vals) = k.values() {
        for v in vals.expect("values") {
            let v = v.expect("value");
            let _ = v.name().expect("name").to_string_lossy();
            let n = match v.data_type() {
                Ok(KeyValueDataType::RegSZ | KeyValueDataType::RegExpandSZ) => {
                    v.string_data().map(|s| s.len()).unwrap_or(0)
                }
                Ok(KeyValueDataType::RegMultiSZ) => {
                    v.multi_string_data().map(|i| i.count()).unwrap_or(0)
                }
                _ if v.data_size() == 0 => 1,
                _ => {
                    let _ = std::hint::black_box(v.data().and_then(|d| d.into_vec()));
                    1
                }
            };
            *bytes += std::hint::black_box(n) as u64;
            *values += 1;
        }
    }
    if let Some(subs) = k.subkeys() {
        for s in subs.expect("subkeys") {
            let s = s.expect("subkey");
            let _ = s.name().expect("name").to_string_lossy();
            walk(s, depth + 1, keys, values, bytes);
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("FILE");
    let repeat: usize = args.next().map(|s| s.parse().expect("REPEAT")).unwrap_or(1);
    let data = std::fs::read(&path).expect("read");
    for _ in 0..repeat {
        let hive = Hive::new(data.as_slice()).expect("open");
        let (mut k, mut v, mut b) = (0, 0, 0);
        walk(
            hive.root_key_node().expect("root"),
            0,
            &mut k,
            &mut v,
            &mut b,
        );
        println!("{path}: {k} keys, {v} values");
    }
}
