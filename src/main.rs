// SPDX-License-Identifier: MIT OR Apache-2.0
//! The `imgprep` command.

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

/// FILETIME for `SOURCE_DATE_EPOCH`, if set (reproducible output).
pub(crate) fn clock() -> Option<u64> {
    let secs: u64 = std::env::var("SOURCE_DATE_EPOCH")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // Out of FILETIME's range: ignored (the current time is used).
    secs.checked_add(11_644_473_600)?.checked_mul(10_000_000)
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if e.chain()
                .filter_map(|c| c.downcast_ref::<std::io::Error>())
                .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("imgprep: error: {e:#}");
            ExitCode::from(imgprep::error::exit_code_of(&e))
        }
    }
}
