// SPDX-License-Identifier: MIT OR Apache-2.0
//! `hivetool`: read, check, export (and edit) Windows registry hives.
//!
//! Exit codes: 0 = success, 1 = `check` found problems, 2 = error (message on stderr).
//!
//! Adding a command group: write a module with a `#[derive(Subcommand)]` enum that has a
//! `run(self, out: &mut dyn Write) -> anyhow::Result<Status>` method, then add one variant to
//! [`Command`] and one arm to [`run`].

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod edit;
mod read;

/// What a command reports back to `main` (turned into the exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit code 0.
    Ok,
    /// Exit code 1: the command ran, and found problems (e.g. `check`).
    Problems,
}

/// Read, check, export and edit Windows registry hive files (REGF).
///
/// Exit status: 0 = success, 1 = `check` found problems, 2 = error.
#[derive(Debug, Parser)]
#[command(name = "hivetool", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// All subcommands, grouped by module.
#[derive(Debug, Subcommand)]
enum Command {
    /// Reading commands (info, ls, get, export, check).
    #[command(flatten)]
    Read(read::ReadCommand),
    /// Editing commands (set, rm, mkkey, rmkey, import, replay-logs, new).
    #[command(flatten)]
    Edit(edit::EditCommand),
}

/// Runs a parsed command line, writing normal output to `out`.
fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<Status> {
    match cli.command {
        Command::Read(c) => c.run(out),
        Command::Edit(c) => c.run(out),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result = run(cli, &mut out).and_then(|s| {
        out.flush()?;
        Ok(s)
    });
    match result {
        Ok(Status::Ok) => ExitCode::SUCCESS,
        Ok(Status::Problems) => ExitCode::from(1),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hivetool: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<hivetool::Error>()
                .is_some_and(|h| matches!(h, hivetool::Error::Io(m) if m.contains("Broken pipe")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
