// SPDX-License-Identifier: MIT OR Apache-2.0
//! Prints the plan for a plain SYSTEM hive file (debug aid).
fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).expect("SYSTEM hive");
    let data = std::fs::read(path)?;
    let hive = hivetool::Hive::open(&data)?;
    let p = imgprep::plan::plan(&hive, &imgprep::plan::Options::default())?;
    println!("{}", serde_json::to_string_pretty(&p)?);
    Ok(())
}
