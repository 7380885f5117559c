// SPDX-License-Identifier: MIT OR Apache-2.0
//! Prints a key's values and subkey names (debug aid).
//! Usage: `cargo run -p hivetool --example dumpkey -- FILE 'Path\To\Key'`
fn main() {
    let mut a = std::env::args().skip(1);
    let (file, path) = (a.next().expect("FILE"), a.next().unwrap_or_default());
    let data = std::fs::read(&file).expect("read");
    let hive = hivetool::Hive::open(&data).expect("open");
    let Some(k) = hive.key(&path).expect("lookup") else {
        println!("not found");
        return;
    };
    for v in k.values().expect("values") {
        let v = v.expect("value");
        println!("  {:?} = {:?}", v.name(), v.decoded());
    }
    for s in k.subkeys().expect("subkeys") {
        println!("[{}]", s.expect("subkey").name());
    }
}
