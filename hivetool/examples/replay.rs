// SPDX-License-Identifier: MIT OR Apache-2.0
//! Replays the transaction logs beside a hive and optionally writes the recovered image.
//!
//! ```text
//! cargo run --release -p hivetool --example replay -- HIVE [OUT] [--repeat N]
//! ```
//! Loads `HIVE.LOG1/.LOG2/.LOG` (any case), replays them `N` times (default 1) and prints the
//! notes, the applied entries and the mean replay time (file reading excluded).

use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut repeat = 1u32;
    if let Some(i) = args.iter().position(|a| a == "--repeat") {
        repeat = args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("--repeat needs a number"))?;
        args.drain(i..i + 2);
    }
    let Some(hive) = args.first() else {
        anyhow::bail!("usage: replay HIVE [OUT] [--repeat N]");
    };
    let path = std::path::Path::new(hive);
    let primary = std::fs::read(path)?;
    let logs = hivetool::log::read_logs_beside(path)?;
    let refs: Vec<(&str, &[u8])> = logs
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let start = Instant::now();
    let mut result = None;
    for _ in 0..repeat.max(1) {
        result = Some(hivetool::log::replay(&primary, &refs)?);
    }
    let elapsed = start.elapsed();
    let r = result.ok_or_else(|| anyhow::anyhow!("no run"))?;
    for n in &r.notes {
        println!("note: {n}");
    }
    let bytes: u64 = r.applied.iter().map(|a| a.bytes).sum();
    println!(
        "format {:?}, {} entries applied ({} bytes), max seq {}, written as {}/{}, base block recovered: {}",
        r.format,
        r.applied.len(),
        bytes,
        r.max_seq_seen,
        r.new_seq,
        r.new_seq,
        r.base_block_recovered
    );
    println!(
        "replay time: {:.3} ms per run ({} runs)",
        elapsed.as_secs_f64() * 1000.0 / f64::from(repeat.max(1)),
        repeat.max(1)
    );
    if let Some(out) = args.get(1) {
        std::fs::write(out, &r.data)?;
        println!("wrote {out} ({} bytes)", r.data.len());
    }
    Ok(())
}
