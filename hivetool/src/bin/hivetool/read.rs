// SPDX-License-Identifier: MIT OR Apache-2.0
//! Reading commands: info, ls, get, export, check.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use hivetool::check::check;
use hivetool::export::{export, ExportOptions, Format};
use hivetool::hive::reg_type;
use hivetool::{Data, Hive, Key, Value};
use serde_json::json;

use crate::Status;

/// Reading commands.
#[derive(Debug, Subcommand)]
pub enum ReadCommand {
    /// Show the base block: version, sequence numbers (dirty or clean), sizes, root.
    Info(InfoArgs),
    /// List the subkeys and values of a key.
    Ls(LsArgs),
    /// Print one value (or all values of a key).
    Get(GetArgs),
    /// Export a key and its subtree as a .reg file.
    Export(ExportArgs),
    /// Verify every structure of the hive; exit status 1 if problems are found.
    Check(CheckArgs),
}

/// Options shared by all reading commands.
#[derive(Debug, Args)]
pub struct Open {
    /// The hive file.
    pub file: PathBuf,
    /// Skip the base-block validation (version, type, sizes): forensic use on damaged files.
    #[arg(long)]
    pub unchecked: bool,
}

/// `info` arguments.
#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    open: Open,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `ls` arguments.
#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    open: Open,
    /// Key path relative to the root (`\`-separated, case-insensitive); default: the root.
    #[arg(default_value = "")]
    key: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `get` arguments.
#[derive(Debug, Args)]
pub struct GetArgs {
    #[command(flatten)]
    open: Open,
    /// Key path relative to the root.
    key: String,
    /// Value name (`@` or "" = the default value); omitted: every value of the key.
    value: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `export` arguments.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    open: Open,
    /// Key to export (relative to the root); default: the whole hive.
    #[arg(default_value = "")]
    key: String,
    /// Prefix for key paths, e.g. `HKEY_LOCAL_MACHINE\SYSTEM`.
    #[arg(long)]
    prefix: Option<String>,
    /// Produce exactly what `hivexregedit --export FILE KEY` prints.
    #[arg(long)]
    hivex: bool,
    /// Write UTF-16LE with BOM and CRLF like regedit.exe (regedit format only).
    #[arg(long, conflicts_with = "hivex")]
    utf16: bool,
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

/// `check` arguments.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    open: Open,
    /// Print JSON (report and summary).
    #[arg(long)]
    json: bool,
    /// Print at most this many problems (all are counted).
    #[arg(long, default_value_t = 100)]
    max: usize,
}

impl ReadCommand {
    /// Runs the command.
    pub fn run(self, out: &mut dyn Write) -> Result<Status> {
        match self {
            ReadCommand::Info(a) => info(a, out),
            ReadCommand::Ls(a) => ls(a, out),
            ReadCommand::Get(a) => get(a, out),
            ReadCommand::Export(a) => export_cmd(a, out),
            ReadCommand::Check(a) => check_cmd(a, out),
        }
    }
}

/// Reads a whole hive file.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn open<'a>(o: &Open, data: &'a [u8]) -> Result<Hive<'a>> {
    let h = if o.unchecked {
        Hive::open_unchecked(data)
    } else {
        Hive::open(data)
    };
    h.with_context(|| format!("opening {}", o.file.display()))
}

fn find<'a>(hive: &Hive<'a>, path: &str) -> Result<Key<'a>> {
    hive.key(path)?
        .with_context(|| format!("key not found: {path:?}"))
}

/// Name of a value type.
pub fn type_name(ty: u32) -> String {
    match ty {
        reg_type::NONE => "REG_NONE".into(),
        reg_type::SZ => "REG_SZ".into(),
        reg_type::EXPAND_SZ => "REG_EXPAND_SZ".into(),
        reg_type::BINARY => "REG_BINARY".into(),
        reg_type::DWORD => "REG_DWORD".into(),
        reg_type::DWORD_BE => "REG_DWORD_BIG_ENDIAN".into(),
        reg_type::LINK => "REG_LINK".into(),
        reg_type::MULTI_SZ => "REG_MULTI_SZ".into(),
        reg_type::RESOURCE_LIST => "REG_RESOURCE_LIST".into(),
        reg_type::FULL_RESOURCE_DESCRIPTOR => "REG_FULL_RESOURCE_DESCRIPTOR".into(),
        reg_type::RESOURCE_REQUIREMENTS_LIST => "REG_RESOURCE_REQUIREMENTS_LIST".into(),
        reg_type::QWORD => "REG_QWORD".into(),
        t => format!("0x{t:x}"),
    }
}

/// FILETIME → "YYYY-MM-DDTHH:MM:SSZ" (UTC), or the raw number when out of range.
pub fn filetime(ft: u64) -> String {
    const EPOCH_DIFF: u64 = 11_644_473_600;
    let secs = ft / 10_000_000;
    if ft == 0 || secs < EPOCH_DIFF {
        return format!("{ft}");
    }
    let t = secs - EPOCH_DIFF;
    let (days, rem) = (t / 86_400, t % 86_400);
    // Civil-from-days (Howard Hinnant), days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn info(a: InfoArgs, out: &mut dyn Write) -> Result<Status> {
    let data = read_file(&a.open.file)?;
    let hive = open(&a.open, &data)?;
    let b = hive.base_block();
    let file_len = data.len() as u64;
    let slack = file_len.saturating_sub(4096 + u64::from(b.hbins_size));
    let root = hive.root().ok();
    if a.json {
        let v = json!({
            "file": a.open.file.display().to_string(),
            "file_size": file_len,
            "version": format!("{}.{}", b.major, b.minor),
            "seq1": b.seq1,
            "seq2": b.seq2,
            "checksum": b.checksum,
            "checksum_ok": b.checksum_ok,
            "dirty": b.is_dirty(),
            "timestamp": b.timestamp,
            "timestamp_utc": filetime(b.timestamp),
            "root_offset": b.root,
            "root_name": root.map(|r| r.name()),
            "hbins_size": b.hbins_size,
            "slack_after_bins": slack,
            "clustering": b.clustering,
            "file_name": b.file_name,
            "flags": b.flags,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(Status::Ok);
    }
    writeln!(out, "file:            {}", a.open.file.display())?;
    writeln!(out, "size:            {file_len} bytes")?;
    writeln!(out, "version:         {}.{}", b.major, b.minor)?;
    let state = if b.is_dirty() {
        let why = match (b.seq1 != b.seq2, b.checksum_ok) {
            (true, true) => "sequence numbers differ",
            (true, false) => "sequence numbers differ, bad checksum",
            _ => "bad checksum",
        };
        format!("DIRTY ({why}; replay the transaction logs before editing)")
    } else {
        "clean".to_string()
    };
    writeln!(out, "state:           {state}")?;
    writeln!(out, "sequence:        {} / {}", b.seq1, b.seq2)?;
    writeln!(
        out,
        "checksum:        {:#010x} ({})",
        b.checksum,
        if b.checksum_ok { "ok" } else { "WRONG" }
    )?;
    writeln!(out, "last written:    {}", filetime(b.timestamp))?;
    writeln!(
        out,
        "root key:        {:#x}{}",
        b.root,
        root.map(|r| format!(" ({})", r.name())).unwrap_or_default()
    )?;
    writeln!(out, "hive bins size:  {} bytes", b.hbins_size)?;
    writeln!(out, "slack after bins: {slack} bytes")?;
    writeln!(out, "clustering:      {}", b.clustering)?;
    writeln!(out, "file name:       {}", b.file_name)?;
    writeln!(out, "flags:           {:#x}", b.flags)?;
    Ok(Status::Ok)
}

fn ls(a: LsArgs, out: &mut dyn Write) -> Result<Status> {
    let data = read_file(&a.open.file)?;
    let hive = open(&a.open, &data)?;
    let key = find(&hive, &a.key)?;
    let mut subkeys = Vec::new();
    for s in key.subkeys()? {
        subkeys.push(s?);
    }
    let mut values = Vec::new();
    for v in key.values()? {
        values.push(v?);
    }
    if a.json {
        let v = json!({
            "key": a.key,
            "name": key.name(),
            "timestamp_utc": filetime(key.timestamp()),
            "class": key.class_name()?,
            "subkeys": subkeys.iter().map(|s| json!({
                "name": s.name(),
                "subkeys": s.subkey_count(),
                "values": s.value_count(),
                "timestamp_utc": filetime(s.timestamp()),
            })).collect::<Vec<_>>(),
            "values": values.iter().map(|v| json!({
                "name": v.name(),
                "type": type_name(v.data_type()),
                "size": v.data_size(),
            })).collect::<Vec<_>>(),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(Status::Ok);
    }
    for s in &subkeys {
        writeln!(out, "{}\\", s.name())?;
    }
    for v in &values {
        let name = v.name();
        let name = if name.is_empty() { "@".into() } else { name };
        writeln!(
            out,
            "{name}  {}  {} bytes",
            type_name(v.data_type()),
            v.data_size()
        )?;
    }
    Ok(Status::Ok)
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn data_text(d: &Data) -> String {
    match d {
        Data::Sz(s) | Data::ExpandSz(s) | Data::Link(s) => s.clone(),
        Data::Dword(v) | Data::DwordBe(v) => format!("{v} ({v:#010x})"),
        Data::Qword(v) => format!("{v} ({v:#018x})"),
        Data::MultiSz(v) => v.join("\n"),
        Data::None(b) | Data::Binary(b) | Data::Resource(_, b) | Data::Raw(_, b) => hex(b),
    }
}

fn data_json(d: &Data) -> serde_json::Value {
    match d {
        Data::Sz(s) | Data::ExpandSz(s) | Data::Link(s) => json!(s),
        Data::Dword(v) | Data::DwordBe(v) => json!(v),
        Data::Qword(v) => json!(v),
        Data::MultiSz(v) => json!(v),
        Data::None(b) | Data::Binary(b) | Data::Resource(_, b) | Data::Raw(_, b) => {
            json!(b.iter().map(|x| format!("{x:02x}")).collect::<String>())
        }
    }
}

fn value_json(v: &Value<'_>) -> Result<serde_json::Value> {
    let d = v.decoded()?;
    Ok(json!({
        "name": v.name(),
        "type": type_name(v.data_type()),
        "type_code": v.data_type(),
        "size": v.data_size(),
        "data": data_json(&d),
    }))
}

fn get(a: GetArgs, out: &mut dyn Write) -> Result<Status> {
    let data = read_file(&a.open.file)?;
    let hive = open(&a.open, &data)?;
    let key = find(&hive, &a.key)?;
    let values: Vec<Value<'_>> = match &a.value {
        Some(name) => {
            let n = if name == "@" { "" } else { name.as_str() };
            vec![key
                .value(n)?
                .with_context(|| format!("value {name:?} not found in {:?}", a.key))?]
        }
        None => key.values()?.collect::<hivetool::Result<_>>()?,
    };
    if a.json {
        let list = values.iter().map(value_json).collect::<Result<Vec<_>>>()?;
        let v = if a.value.is_some() {
            list.into_iter().next().unwrap_or_default()
        } else {
            json!(list)
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(Status::Ok);
    }
    if a.value.is_some() {
        if let Some(v) = values.first() {
            writeln!(out, "{}", data_text(&v.decoded()?))?;
        }
        return Ok(Status::Ok);
    }
    for v in &values {
        let name = v.name();
        let name = if name.is_empty() { "@".into() } else { name };
        writeln!(
            out,
            "{name} ({}): {}",
            type_name(v.data_type()),
            data_text(&v.decoded()?)
        )?;
    }
    Ok(Status::Ok)
}

fn export_cmd(a: ExportArgs, out: &mut dyn Write) -> Result<Status> {
    let data = read_file(&a.open.file)?;
    let hive = open(&a.open, &data)?;
    let opts = ExportOptions {
        format: if a.hivex {
            Format::Hivex
        } else {
            Format::Regedit
        },
        prefix: a.prefix,
        utf16: a.utf16,
    };
    match &a.output {
        Some(p) => {
            let f =
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
            export(&hive, &a.key, &opts, std::io::BufWriter::new(f))?;
        }
        None => export(&hive, &a.key, &opts, out)?,
    }
    Ok(Status::Ok)
}

fn check_cmd(a: CheckArgs, out: &mut dyn Write) -> Result<Status> {
    let data = read_file(&a.open.file)?;
    let hive = open(&a.open, &data)?;
    let report = check(&hive);
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        for p in report.problems.iter().take(a.max) {
            writeln!(out, "{p}")?;
        }
        let shown = report.problems.len().min(a.max) as u64;
        if report.problem_count > shown {
            writeln!(out, "... and {} more", report.problem_count - shown)?;
        }
        let s = &report.summary;
        writeln!(
            out,
            "{}: {} problem(s); {} keys, {} values ({} big data), {} security cells, depth {}",
            a.open.file.display(),
            report.problem_count,
            s.keys,
            s.values,
            s.big_data_values,
            s.security_cells,
            s.max_depth
        )?;
        writeln!(
            out,
            "{} bins, {} allocated cells ({} bytes), {} free cells ({} bytes, largest {}), \
             {} unreachable allocated cells ({} bytes), {} bytes slack after the bins",
            s.bins,
            s.allocated_cells,
            s.allocated_bytes,
            s.free_cells,
            s.free_bytes,
            s.largest_free_cell,
            s.unreachable_cells,
            s.unreachable_bytes,
            s.slack_bytes
        )?;
    }
    Ok(if report.is_clean() {
        Status::Ok
    } else {
        Status::Problems
    })
}
