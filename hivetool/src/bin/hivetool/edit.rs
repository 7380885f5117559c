// SPDX-License-Identifier: MIT OR Apache-2.0
//! Editing commands: set, rm, mkkey, rmkey, import, replay-logs, new.
//!
//! Every editing command reads the whole hive, applies the edit in memory
//! ([`hivetool::edit::Editor`]), commits it (sequence numbers above everything in the logs
//! beside the file, checksum last) and saves crash-safely: a temporary file beside the hive,
//! fsync, rename over the original, fsync of the directory. The original is never truncated in
//! place. With `--dry-run` nothing is written; the planned changes and the changed byte ranges
//! are printed instead.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use hivetool::edit::{format_ranges, new_hive, Commit, Editor, Growth};
use hivetool::hive::{encode_multi_sz, encode_sz, reg_type};
use hivetool::regfile::{self, ImportOptions};

use crate::Status;

/// At most this many operation lines are printed (imports can do many thousands).
const MAX_DESCRIBE: usize = 40;

/// Editing commands.
#[derive(Debug, Subcommand)]
pub enum EditCommand {
    /// Set (create or replace) a value.
    Set(SetArgs),
    /// Delete a value.
    Rm(RmArgs),
    /// Create a key (and missing parent keys).
    Mkkey(KeyArgs),
    /// Delete a key with all its subkeys and values.
    Rmkey(KeyArgs),
    /// Apply a .reg file (regedit 5.00 or REGEDIT4; UTF-16LE with BOM or UTF-8).
    Import(ImportArgs),
    /// Replay the transaction logs beside a dirty hive and save it clean.
    ReplayLogs(ReplayArgs),
    /// Create a new, empty hive file (refuses to overwrite).
    New(NewArgs),
}

/// Options shared by the editing commands.
#[derive(Debug, Args)]
pub struct EditOpts {
    /// The hive file (edited in place, crash-safely).
    pub file: PathBuf,
    /// Print what would change, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep the file size: use only free cells and the slack after the last bin; fail if the
    /// edit needs more. Default: the file may grow.
    #[arg(long)]
    pub fixed_size: bool,
    /// If the hive is dirty, replay its transaction logs (FILE.LOG1/.LOG2/.LOG) first instead
    /// of refusing.
    #[arg(long)]
    pub replay_logs: bool,
    /// Print all changed byte ranges (--dry-run prints the first 40).
    #[arg(short, long)]
    pub verbose: bool,
    /// Print how long each phase took (read, open, edit, commit, save) to standard error.
    #[arg(long)]
    pub timings: bool,
}

/// Phase timer for `--timings`.
struct Timer {
    on: bool,
    last: std::time::Instant,
    phases: Vec<(&'static str, std::time::Duration)>,
}

impl Timer {
    fn new(on: bool) -> Timer {
        Timer {
            on,
            last: std::time::Instant::now(),
            phases: Vec::new(),
        }
    }
    fn lap(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.phases.push((name, now - self.last));
        self.last = now;
    }
    fn report(&self) {
        if !self.on {
            return;
        }
        let parts: Vec<String> = self
            .phases
            .iter()
            .map(|(n, d)| format!("{n} {:.3} ms", d.as_secs_f64() * 1000.0))
            .collect();
        eprintln!("timings: {}", parts.join(", "));
    }
}

/// Value types accepted by `set --type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ValueType {
    /// REG_DWORD (decimal or 0x-hex data).
    Dword,
    /// REG_QWORD (decimal or 0x-hex data).
    Qword,
    /// REG_SZ.
    Sz,
    /// REG_EXPAND_SZ.
    #[value(name = "expand_sz", alias = "expand-sz")]
    ExpandSz,
    /// REG_MULTI_SZ (one --data per string).
    #[value(name = "multi_sz", alias = "multi-sz")]
    MultiSz,
    /// REG_BINARY (hex bytes: `01,02,ff` or `0102ff`).
    Binary,
    /// REG_NONE (hex bytes).
    None,
}

/// `set` arguments.
#[derive(Debug, Args)]
pub struct SetArgs {
    #[command(flatten)]
    opts: EditOpts,
    /// Key path relative to the root (`\`-separated).
    key: String,
    /// Value name (`@` or "" = the default value).
    name: String,
    /// Value type.
    #[arg(long = "type", value_enum)]
    ty: Option<ValueType>,
    /// Numeric value type (e.g. 0x1234) with hex-byte data; overrides --type.
    #[arg(long, value_parser = parse_u32)]
    raw_type: Option<u32>,
    /// The data (repeat for multi_sz).
    #[arg(long, allow_hyphen_values = true)]
    data: Vec<String>,
    /// Create the key (and parents) if missing.
    #[arg(long)]
    create_key: bool,
}

/// `rm` arguments.
#[derive(Debug, Args)]
pub struct RmArgs {
    #[command(flatten)]
    opts: EditOpts,
    /// Key path relative to the root.
    key: String,
    /// Value name (`@` or "" = the default value).
    name: String,
}

/// `mkkey` / `rmkey` arguments.
#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(flatten)]
    opts: EditOpts,
    /// Key path relative to the root.
    key: String,
}

/// `import` arguments.
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    opts: EditOpts,
    /// The .reg file.
    reg: PathBuf,
    /// Prefix of every key path in the .reg file that names the hive root, e.g.
    /// `HKEY_LOCAL_MACHINE\SYSTEM`. Default: `[\...]` paths are relative to the root;
    /// otherwise `HKEY_LOCAL_MACHINE\<hive>`/`HKEY_USERS\<hive>` or the first component is
    /// taken as the root.
    #[arg(long)]
    prefix: Option<String>,
    /// Create FILE as a new empty hive first if it does not exist.
    #[arg(long)]
    create: bool,
    /// Format minor version for --create (3 = NT4 format with lf lists, 5 = XP+ with lh).
    #[arg(long, default_value_t = 5)]
    minor: u32,
}

/// `replay-logs` arguments.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The (dirty) hive file; its logs are FILE.LOG1, FILE.LOG2, FILE.LOG.
    file: PathBuf,
    /// Print what would happen, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write the result here instead of replacing FILE.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// After the clean hive is safely on disk, truncate the logs to 0 bytes (only when
    /// replacing FILE).
    #[arg(long, conflicts_with = "output")]
    truncate_logs: bool,
}

/// `new` arguments.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The file to create.
    file: PathBuf,
    /// Format minor version (3..6; 3 = lf lists, 5 = lh lists).
    #[arg(long, default_value_t = 5)]
    minor: u32,
}

fn parse_u32(s: &str) -> Result<u32, String> {
    parse_int(s)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| format!("not a 32-bit number: {s:?}"))
}

fn parse_int(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn parse_hex(s: &str) -> Result<Vec<u8>> {
    let clean: String = s
        .chars()
        .filter(|c| !matches!(c, ',' | ' ' | ':' | '\n' | '\r' | '\t'))
        .collect();
    if !clean.len().is_multiple_of(2) {
        bail!("hex data {s:?} has an odd number of digits");
    }
    (0..clean.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&clean[i..i + 2], 16)
                .with_context(|| format!("bad hex byte {:?}", &clean[i..i + 2]))
        })
        .collect()
}

fn value_name(n: &str) -> &str {
    if n == "@" {
        ""
    } else {
        n
    }
}

fn one_data(a: &SetArgs) -> Result<&str> {
    match a.data.as_slice() {
        [d] => Ok(d),
        [] => bail!("--data is required"),
        _ => bail!(
            "--data given {} times (only multi_sz takes several)",
            a.data.len()
        ),
    }
}

fn encode_data(a: &SetArgs) -> Result<(u32, Vec<u8>)> {
    if let Some(t) = a.raw_type {
        let d = a.data.join(",");
        return Ok((t, parse_hex(&d)?));
    }
    let ty =
        a.ty.context("--type is required (dword, qword, sz, expand_sz, multi_sz, binary, none)")?;
    Ok(match ty {
        ValueType::Dword => {
            let d = one_data(a)?;
            let v = parse_int(d)
                .and_then(|v| u32::try_from(v).ok())
                .with_context(|| format!("not a DWORD: {d:?}"))?;
            (reg_type::DWORD, v.to_le_bytes().to_vec())
        }
        ValueType::Qword => {
            let d = one_data(a)?;
            let v = parse_int(d).with_context(|| format!("not a QWORD: {d:?}"))?;
            (reg_type::QWORD, v.to_le_bytes().to_vec())
        }
        ValueType::Sz => (reg_type::SZ, encode_sz(one_data(a)?)),
        ValueType::ExpandSz => (reg_type::EXPAND_SZ, encode_sz(one_data(a)?)),
        ValueType::MultiSz => (reg_type::MULTI_SZ, encode_multi_sz(&a.data)),
        ValueType::Binary => (reg_type::BINARY, parse_hex(&a.data.join(","))?),
        ValueType::None => (reg_type::NONE, parse_hex(&a.data.join(","))?),
    })
}

impl EditCommand {
    /// Runs the command.
    pub fn run(self, out: &mut dyn Write) -> Result<Status> {
        match self {
            EditCommand::Set(a) => {
                let (ty, data) = encode_data(&a)?;
                let name = value_name(&a.name).to_string();
                edit_file(&a.opts, out, |ed| {
                    if a.create_key {
                        ed.create_key(&a.key)?;
                    }
                    ed.set_value(&a.key, &name, ty, &data)?;
                    Ok(())
                })
            }
            EditCommand::Rm(a) => {
                let name = value_name(&a.name).to_string();
                edit_file(&a.opts, out, |ed| {
                    if !ed.delete_value(&a.key, &name)? {
                        bail!("no value {name:?} in key {:?}", a.key);
                    }
                    Ok(())
                })
            }
            EditCommand::Mkkey(a) => edit_file(&a.opts, out, |ed| {
                ed.create_key(&a.key)?;
                Ok(())
            }),
            EditCommand::Rmkey(a) => edit_file(&a.opts, out, |ed| {
                if !ed.delete_key(&a.key)? {
                    bail!("no key {:?}", a.key);
                }
                Ok(())
            }),
            EditCommand::Import(a) => import(a, out),
            EditCommand::ReplayLogs(a) => replay_logs(a, out),
            EditCommand::New(a) => {
                let img = new_hive(a.minor, hivetool::edit::filetime_now())?;
                write_new(&a.file, &img)?;
                writeln!(
                    out,
                    "created {} (empty hive, format 1.{}, {} bytes)",
                    a.file.display(),
                    a.minor,
                    img.len()
                )?;
                Ok(Status::Ok)
            }
        }
    }
}

fn import(a: ImportArgs, out: &mut dyn Write) -> Result<Status> {
    let mut timer = Timer::new(a.opts.timings);
    let text = fs::read(&a.reg).with_context(|| format!("reading {}", a.reg.display()))?;
    let file = regfile::parse(&text).with_context(|| format!("parsing {}", a.reg.display()))?;
    let opts = ImportOptions {
        prefix: a.prefix.clone(),
    };
    if a.create && !a.opts.file.exists() {
        timer.lap("read+parse");
        let mut ed = Editor::new_empty(a.minor)?;
        let stats = regfile::apply(&mut ed, &file, &opts)
            .with_context(|| format!("importing {}", a.reg.display()))?;
        timer.lap("import");
        let commit = ed.commit(0)?;
        timer.lap("commit");
        writeln!(
            out,
            "new hive: {} keys, {} values from {}",
            stats.keys,
            stats.values,
            a.reg.display()
        )?;
        if a.opts.dry_run {
            writeln!(out, "dry run: {} not written", a.opts.file.display())?;
        } else {
            write_new(&a.opts.file, &commit.data)?;
            timer.lap("save");
            writeln!(
                out,
                "created {} ({} bytes)",
                a.opts.file.display(),
                commit.data.len()
            )?;
        }
        timer.report();
        return Ok(Status::Ok);
    }
    let reg_name = a.reg.display().to_string();
    edit_file(&a.opts, out, |ed| {
        let stats =
            regfile::apply(ed, &file, &opts).with_context(|| format!("importing {reg_name}"))?;
        ed.note(format!(
            "import {reg_name}: {} key lines, {} keys deleted, {} values set, {} values deleted",
            stats.keys, stats.keys_deleted, stats.values, stats.values_deleted
        ));
        Ok(())
    })
}

/// Reads the hive (and its logs), runs `f` on an editor, commits and saves (or prints for
/// `--dry-run`).
fn edit_file(
    o: &EditOpts,
    out: &mut dyn Write,
    f: impl FnOnce(&mut Editor) -> Result<()>,
) -> Result<Status> {
    let mut timer = Timer::new(o.timings);
    let bytes = fs::read(&o.file).with_context(|| format!("reading {}", o.file.display()))?;
    let logs = hivetool::log::read_logs_beside(&o.file)
        .with_context(|| format!("looking for logs beside {}", o.file.display()))?;
    let log_refs: Vec<(&str, &[u8])> = logs
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let growth = if o.fixed_size {
        Growth::Fixed
    } else {
        Growth::Growable
    };
    let base = hivetool::BaseBlock::parse(&bytes)?;
    // The highest sequence number in the hive and its logs (regf.md §10 rule 3).
    let max_seq = hivetool::log::max_sequence(&bytes, &log_refs);
    let old_len = bytes.len();
    timer.lap("read");
    let mut ed = if base.is_dirty() && o.replay_logs {
        let r = hivetool::log::replay(&bytes, &log_refs)?;
        for n in &r.notes {
            writeln!(out, "replay: {n}")?;
        }
        writeln!(
            out,
            "replayed {} log entries ({:?}); hive sequence now {}",
            r.applied.len(),
            r.format,
            r.new_seq
        )?;
        Editor::open_recovered(r.data, growth)?
    } else {
        match Editor::open(bytes, growth) {
            Err(e @ hivetool::Error::Dirty { .. }) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "{} is dirty; pass --replay-logs to replay {} first",
                    o.file.display(),
                    if logs.is_empty() {
                        "its logs (none found beside it)".to_string()
                    } else {
                        logs.iter()
                            .map(|l| l.0.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                )))
            }
            r => r?,
        }
    };
    timer.lap("open");
    f(&mut ed)?;
    timer.lap("edit");
    let lines = ed.describe();
    for line in lines.iter().take(MAX_DESCRIBE) {
        writeln!(out, "{line}")?;
    }
    if lines.len() > MAX_DESCRIBE {
        writeln!(
            out,
            "... and {} more operations",
            lines.len() - MAX_DESCRIBE
        )?;
    }
    let commit = ed.commit(max_seq.wrapping_add(1))?;
    timer.lap("commit");
    report_commit(o, out, &commit, old_len)?;
    if !logs.is_empty() {
        writeln!(
            out,
            "note: logs beside the hive ({}) were left in place; they are stale and harmless: \
             their highest sequence number is {max_seq}, the hive now has {}",
            logs.iter()
                .map(|l| l.0.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            commit.sequence
        )?;
    }
    if o.dry_run {
        writeln!(out, "dry run: {} not written", o.file.display())?;
    } else {
        save_replace(&o.file, &commit.data)?;
        timer.lap("save");
        writeln!(out, "saved {}", o.file.display())?;
    }
    timer.report();
    Ok(Status::Ok)
}

fn report_commit(o: &EditOpts, out: &mut dyn Write, c: &Commit, old_len: usize) -> Result<()> {
    writeln!(
        out,
        "{} bytes changed in {} ranges; sequence {}; size {} -> {} bytes{}",
        c.changed_bytes(),
        c.changed.len(),
        c.sequence,
        old_len,
        c.data.len(),
        if c.grew { " (grew)" } else { "" }
    )?;
    if o.verbose {
        write!(out, "{}", format_ranges(&c.changed))?;
    } else if o.dry_run {
        let shown = c.changed.len().min(MAX_DESCRIBE);
        write!(out, "{}", format_ranges(&c.changed[..shown]))?;
        if c.changed.len() > shown {
            writeln!(
                out,
                "  ... and {} more ranges (-v shows all)",
                c.changed.len() - shown
            )?;
        }
    }
    Ok(())
}

fn replay_logs(a: ReplayArgs, out: &mut dyn Write) -> Result<Status> {
    let bytes = fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let logs = hivetool::log::read_logs_beside(&a.file)?;
    let refs: Vec<(&str, &[u8])> = logs
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let r = hivetool::log::replay(&bytes, &refs)?;
    for n in &r.notes {
        writeln!(out, "note: {n}")?;
    }
    if !r.changed() && !hivetool::BaseBlock::parse(&bytes)?.is_dirty() {
        writeln!(out, "{} is clean; nothing to replay", a.file.display())?;
        return Ok(Status::Ok);
    }
    writeln!(
        out,
        "replayed {} entries ({:?}); highest sequence seen {}, written {}; size {} -> {}",
        r.applied.len(),
        r.format,
        r.max_seq_seen,
        r.new_seq,
        bytes.len(),
        r.data.len()
    )?;
    if a.dry_run {
        writeln!(out, "dry run: nothing written")?;
        return Ok(Status::Ok);
    }
    match &a.output {
        Some(p) => {
            write_new(p, &r.data)?;
            writeln!(out, "wrote {}", p.display())?;
        }
        None => {
            save_replace(&a.file, &r.data)?;
            writeln!(out, "saved {}", a.file.display())?;
            if a.truncate_logs {
                for (name, _) in &logs {
                    let p = a.file.with_file_name(name);
                    let f = OpenOptions::new().write(true).open(&p)?;
                    f.set_len(0)?;
                    f.sync_all()?;
                    writeln!(out, "truncated {}", p.display())?;
                }
            } else if !logs.is_empty() {
                writeln!(
                    out,
                    "note: the logs were left in place; they are harmless now (the hive's \
                     sequence number {} is above all of theirs)",
                    r.new_seq
                )?;
            }
        }
    }
    Ok(Status::Ok)
}

fn fsync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Directories can be opened read-only and fsync'ed on Unix; elsewhere this may fail: ignore.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.hivetool-{}.tmp", std::process::id()))
}

/// Crash-safe replace: temp file beside `path`, fsync, rename, fsync the directory.
fn save_replace(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let perms = fs::metadata(path).ok().map(|m| m.permissions());
    let result = (|| -> Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        if let Some(p) = perms {
            fs::set_permissions(&tmp, p)?;
        }
        fs::rename(&tmp, path).with_context(|| format!("renaming over {}", path.display()))?;
        fsync_dir(path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes a new file (refusing to overwrite), crash-safely.
fn write_new(path: &Path, data: &[u8]) -> Result<()> {
    if path.exists() {
        bail!("{} exists already (not overwritten)", path.display());
    }
    let tmp = temp_path(path);
    let result = (|| -> Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        // hard_link fails if the target appeared meanwhile: never overwrite.
        fs::hard_link(&tmp, path)
            .or_else(|_| fs::rename(&tmp, path))
            .with_context(|| format!("creating {}", path.display()))?;
        let _ = fs::remove_file(&tmp);
        fsync_dir(path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
