// SPDX-License-Identifier: MIT OR Apache-2.0
//! The commands behind the CLI. Each prints to stdout (results) and stderr (progress).

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use clap::CommandFactory;
use diskimg::disk::{Disk, OpenOptions as DiskOpen};
use diskimg::journal;
use diskimg::range::{copy_range, plan_copy, DdTarget};
use imgprep::error::{Refused, EXIT_NOT_READY, EXIT_OK};
use imgprep::export::{self, ExportOptions, Target};
use imgprep::image::WindowsImage;
use imgprep::plan::{self, Change, Plan, RegOp};
use imgprep::prepare::{self, ApplyInPlace, Prepared, Safety};
use serde::Serialize;
use serde_json::json;

use crate::cli::*;

/// Runs a parsed command line; returns the exit status.
pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::StripLwf(a) => strip_lwf(a),
        Command::Check(a) => check(a),
        Command::Inspect(a) => inspect(a),
        Command::Range(a) => range(a),
        Command::Export(a) => export_cmd(a),
        Command::Undo(a) => undo(a),
        Command::Reg(a) => reg(a),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "imgprep",
                &mut std::io::stdout(),
            );
            Ok(EXIT_OK)
        }
        Command::Man { dir } => man(&dir),
    }
}

fn man(dir: &Path) -> Result<u8> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cmd = Cli::command();
    let mut pages = vec![(String::from("imgprep"), cmd.clone())];
    for sub in cmd.get_subcommands() {
        pages.push((format!("imgprep-{}", sub.get_name()), sub.clone()));
    }
    for (name, c) in pages {
        let mut buf = Vec::new();
        let leaked: &'static str = Box::leak(name.clone().into_boxed_str());
        clap_mangen::Man::new(c.name(leaked)).render(&mut buf)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(EXIT_OK)
}

fn human_bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

fn print_changes(out: &mut impl Write, changes: &[Change]) -> Result<()> {
    for c in changes {
        writeln!(out, "  {}", c.path)?;
        writeln!(out, "      old: {}", c.old)?;
        writeln!(out, "      new: {}", c.new)?;
        writeln!(out, "      why: {}", c.reason)?;
    }
    Ok(())
}

fn print_plan_notes(out: &mut impl Write, p: &Plan) -> Result<()> {
    for b in &p.blockers {
        writeln!(out, "BLOCKER: {}", b.message)?;
    }
    for n in &p.notes {
        writeln!(out, "note: {n}")?;
    }
    Ok(())
}

fn open_windows(a: &ImageArgs) -> Result<WindowsImage> {
    WindowsImage::open(&a.image, a.open_options())
}

/// Opens the output of a copy: `-` = stdout.
enum Out {
    Stdout,
    File(File),
    Device(File),
}

fn open_output(path: &Path, offset: u64) -> Result<Out> {
    if path == Path::new("-") {
        if std::io::stdout().is_terminal() {
            bail!("refusing to write a disk image to a terminal: redirect stdout or use -o FILE");
        }
        return Ok(Out::Stdout);
    }
    if let Ok(m) = std::fs::metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if m.file_type().is_block_device() {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            return Ok(Out::Device(f));
        }
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(offset == 0)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    Ok(Out::File(f))
}

fn progress_bar() -> impl FnMut(diskimg::copy::Progress) {
    let tty = std::io::stderr().is_terminal();
    let start = std::time::Instant::now();
    move |p: diskimg::copy::Progress| {
        if !tty || p.total == 0 {
            return;
        }
        let frac = p.done as f64 / p.total as f64;
        let width = 40;
        let filled = (frac * width as f64) as usize;
        let secs = start.elapsed().as_secs_f64().max(0.001);
        eprint!(
            "\r[{}{}] {:5.1}% {} / {} ({}/s) ",
            "#".repeat(filled),
            "-".repeat(width - filled),
            frac * 100.0,
            human_bytes(p.done),
            human_bytes(p.total),
            human_bytes((p.done as f64 / secs) as u64)
        );
        if p.done >= p.total {
            eprintln!();
        }
    }
}

fn copy_out(
    disk: &Disk,
    patches: &[diskimg::patch::Patch],
    output: &Path,
    c: &CopyArgs,
) -> Result<(diskimg::copy::CopyReport, export::ExportJob)> {
    let opts = ExportOptions {
        gpt_fix: c.gpt_fix.fix(),
        skip_unused: c.skip_unused,
        output_offset: c.output_offset,
        hash: c.sha256,
    };
    // Before the output is opened (and truncated): it must not be the source itself.
    if let (Ok(src), Ok(dst)) = (disk.file().metadata(), std::fs::metadata(output)) {
        use std::os::unix::fs::MetadataExt;
        if src.dev() == dst.dev() && src.ino() == dst.ino() {
            bail!(
                "{} is the source image itself: choose another output",
                output.display()
            );
        }
    }
    let job = export::build_job(disk, patches, &opts)?;
    for (p, why) in &job.full_partitions {
        eprintln!("imgprep: partition {p} copied in full (unused clusters not skipped): {why}");
    }
    let mut bar = progress_bar();
    let report = match open_output(output, c.output_offset)? {
        Out::Stdout => {
            // A File on a duplicate of fd 1: no line buffering for binary data.
            let mut f = diskimg::copy::stdout_file()?;
            // A reader that goes away leaves a partial image: an error (exit 2), not the
            // broken-pipe success `main` gives text output.
            let cut = |m: String| anyhow!("writing the image to stdout: {m}");
            let r = export::run(disk, &job, Target::Stream(&mut f), &mut bar)
                .map_err(|e| cut(format!("{e:#}")))?;
            f.flush().map_err(|e| cut(e.to_string()))?;
            r
        }
        Out::File(f) => export::run(disk, &job, Target::File(&f), &mut bar)?,
        Out::Device(f) => export::run(
            disk,
            &job,
            Target::Device(&f, c.device_reads_zeros),
            &mut bar,
        )?,
    };
    Ok((report, job))
}

fn describe_image(img: &WindowsImage) -> String {
    let p = img.partition();
    format!(
        "{}: Windows on partition {} ({}, {})",
        img.path().display(),
        p.index,
        p.filesystem.name(),
        human_bytes(p.len_bytes)
    )
}

#[derive(Serialize)]
struct StripReport<'a> {
    schema: &'static str,
    image: String,
    partition: u32,
    dry_run: bool,
    changed: bool,
    prepared: &'a Prepared,
    bytes_written: u64,
    journal: Option<String>,
    output: Option<String>,
    ready: bool,
}

/// Refuses (exit 19) when an interrupted in-place write left a pending journal, at the default
/// place or in `journal_dir`: the image holds a mix of old and new bytes, so neither a plan nor
/// a copy made from it can be trusted.
fn refuse_pending_journal(image: &Path, journal_dir: Option<&Path>) -> Result<()> {
    let mut dirs = vec![None];
    if journal_dir.is_some() {
        dirs.push(journal_dir);
    }
    for dir in dirs {
        if let Some(j) = journal::pending_journal(image, dir)? {
            return Err(Refused::new(
                imgprep::error::Refusal::PendingJournal,
                format!(
                    "{} holds an interrupted write: run `imgprep undo{} {}` (rolls it back) first",
                    j.display(),
                    dir.map(|d| format!(" --journal-dir {}", d.display()))
                        .unwrap_or_default(),
                    image.display()
                ),
            )
            .into());
        }
    }
    Ok(())
}

fn strip_lwf(a: StripLwf) -> Result<u8> {
    refuse_pending_journal(&a.image.image, a.journal_dir.as_deref())?;
    let img = open_windows(&a.image)?;
    let partition = img.partition().index;
    let hive = img.hive("SYSTEM")?;
    let opts = a.sel.prepare_options();
    let prepared = prepare::prepare(&img, hive, &opts)?;
    if a.dry_run && a.output.is_none() {
        let j = prepare::journal_path(&a.image.image, a.journal_dir.as_deref());
        if j.exists() && !a.replace_journal {
            eprintln!(
                "imgprep: note: {} exists: the real run would refuse (exit 19) until \
                 `imgprep undo` or --replace-journal",
                j.display()
            );
        }
    }
    let stdout = std::io::stdout();
    let to_stdout = a.output.as_deref() == Some(Path::new("-"));
    // When the image goes to stdout, the report goes to stderr.
    let mut out: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stderr())
    } else {
        Box::new(stdout.lock())
    };
    if !a.json {
        writeln!(out, "{}", describe_image(&img))?;
        if let Some(r) = &prepared.edit.replay {
            writeln!(
                out,
                "replayed {} transaction-log entries{} of the dirty {}",
                r.entries,
                r.seq_range
                    .map(|(x, y)| format!(" (sequence {x}..{y})"))
                    .unwrap_or_default(),
                prepared.hive_path
            )?;
        }
        for n in &prepared.plan.nics {
            writeln!(
                out,
                "boot NIC: {} {} {} ({}, service {})",
                n.control_set, n.subkey, n.net_cfg_instance_id, n.description, n.service
            )?;
        }
    }
    let mut bytes_written = 0;
    let mut journal_path = None;
    let mut output = None;
    if prepared.is_noop() {
        if !a.json {
            writeln!(out, "Nothing to change: the image is already prepared.")?;
        }
        if let Some(o) = &a.output {
            if !a.dry_run {
                let (rep, _) = copy_out(img.disk(), &[], o, &a.copy)?;
                output = Some(o.display().to_string());
                if !a.json {
                    writeln!(
                        out,
                        "copied {} to {}",
                        human_bytes(rep.bytes_written),
                        o.display()
                    )?;
                }
            }
        }
    } else {
        if !a.json {
            writeln!(
                out,
                "{} {} change(s) in {} ({} bytes in {} patch(es), sequence {}/{} -> {}):",
                if a.dry_run { "Would make" } else { "Making" },
                prepared.plan.changes.len(),
                prepared.hive_path,
                prepared.edit.bytes_changed(),
                prepared.edit.patches.len(),
                prepared.seq_before.0,
                prepared.seq_before.1,
                prepared.edit.seq_after.unwrap_or(0)
            )?;
            print_changes(&mut out, &prepared.plan.changes)?;
        }
        if !a.dry_run {
            match &a.output {
                Some(o) => {
                    let (rep, _) = copy_out(img.disk(), &prepared.edit.patches, o, &a.copy)?;
                    bytes_written = rep.bytes_written;
                    output = Some(o.display().to_string());
                    if !a.json {
                        writeln!(
                            out,
                            "Wrote a prepared copy ({}) to {}; {} was not modified.{}",
                            human_bytes(rep.bytes_written),
                            o.display(),
                            img.path().display(),
                            rep.sha256
                                .map(|h| format!(" sha256 {h}"))
                                .unwrap_or_default()
                        )?;
                    }
                }
                None => {
                    let open = a.image.open_options();
                    let path = img.path().to_path_buf();
                    drop(img);
                    let rep = prepare::apply_in_place(
                        &path,
                        "SYSTEM",
                        &prepared.edit,
                        &ApplyInPlace {
                            journal_dir: a.journal_dir.clone(),
                            replace_journal: a.replace_journal,
                        },
                        open,
                    )?;
                    bytes_written = rep.bytes_written;
                    journal_path = Some(rep.journal_path.display().to_string());
                    if !a.json {
                        writeln!(
                            out,
                            "Wrote {} bytes; verified by reading the hive back. Undo journal: {} \
                             (`imgprep undo {}` restores the old bytes).",
                            rep.bytes_written,
                            rep.journal_path.display(),
                            path.display()
                        )?;
                    }
                }
            }
        }
    }
    if !a.json {
        print_plan_notes(&mut out, &prepared.plan)?;
    }
    let ready = prepared.plan.blockers.is_empty();
    if a.json {
        let rep = StripReport {
            schema: "imgprep-strip-lwf/1",
            image: a.image.image.display().to_string(),
            partition,
            dry_run: a.dry_run,
            changed: !prepared.is_noop() && !a.dry_run,
            prepared: &prepared,
            bytes_written,
            journal: journal_path,
            output,
            ready,
        };
        serde_json::to_writer_pretty(&mut out, &rep)?;
        writeln!(out)?;
    }
    // The process ends now: let the OS reclaim the hive buffers instead of unmapping them one
    // by one (a measurable part of a 12 MiB run).
    std::mem::forget(prepared);
    Ok(if ready { EXIT_OK } else { EXIT_NOT_READY })
}

/// The verdict of `check`.
#[derive(Serialize)]
struct CheckReport {
    schema: &'static str,
    image: String,
    verdict: &'static str,
    exit_code: u8,
    reasons: Vec<serde_json::Value>,
    partition: Option<u32>,
    copy_range: Option<diskimg::range::CopyRange>,
    safety: Option<Safety>,
    changes: Vec<Change>,
}

fn check(a: Check) -> Result<u8> {
    let mut rep = CheckReport {
        schema: "imgprep-check/1",
        image: a.image.image.display().to_string(),
        verdict: "ready",
        exit_code: EXIT_OK,
        reasons: Vec::new(),
        partition: None,
        copy_range: None,
        safety: None,
        changes: Vec::new(),
    };
    let unsafe_verdict = |rep: &mut CheckReport, code: u8, kind: &str, msg: String| {
        if rep.verdict != "unsafe" {
            rep.verdict = "unsafe";
            rep.exit_code = code;
        }
        rep.reasons
            .push(json!({"kind": kind, "exit_code": code, "message": msg}));
    };
    let result: Result<()> = (|| {
        let img = match open_windows(&a.image) {
            Ok(i) => i,
            Err(e) => match e.downcast_ref::<Refused>() {
                Some(r) => {
                    unsafe_verdict(
                        &mut rep,
                        r.reason.exit_code(),
                        r.reason.name(),
                        r.message.clone(),
                    );
                    return Ok(());
                }
                None => return Err(e),
            },
        };
        rep.partition = Some(img.partition().index);
        if let Some(j) = journal::pending_journal(&a.image.image, a.journal_dir.as_deref())? {
            unsafe_verdict(
                &mut rep,
                imgprep::error::Refusal::PendingJournal.exit_code(),
                "pending-journal",
                format!(
                    "{} records an interrupted write: the image may hold a mix of old and new \
                     bytes; run `imgprep undo {}` to roll it back",
                    j.display(),
                    a.image.image.display()
                ),
            );
        }
        match copy_range(img.disk().table()) {
            Ok(r) => rep.copy_range = Some(r),
            Err(e) => unsafe_verdict(&mut rep, 17, "bad-disk", e.to_string()),
        }
        let hive = img.hive("SYSTEM")?;
        let s = prepare::safety(&img, &hive, a.sel.replay_logs);
        for p in &s.problems {
            unsafe_verdict(&mut rep, p.exit_code, p.reason.name(), p.message.clone());
        }
        if !s.is_safe() {
            rep.safety = Some(s);
            return Ok(());
        }
        // Try the whole edit in memory: a plan that does not fit is unsafe too.
        let attempt = prepare::prepare_safe(hive, &s, &a.sel.prepare_options());
        rep.safety = Some(s);
        match attempt {
            Ok(p) => {
                for b in &p.plan.blockers {
                    // Only blocking filters remain here; the other blockers are refusals.
                    if rep.verdict == "ready" {
                        rep.verdict = "not-ready";
                        rep.exit_code = EXIT_NOT_READY;
                    }
                    rep.reasons.push(
                        json!({"kind": "blocking-filter", "exit_code": 1, "message": b.message}),
                    );
                }
                if !p.plan.changes.is_empty() {
                    if rep.verdict == "ready" {
                        rep.verdict = "not-ready";
                        rep.exit_code = EXIT_NOT_READY;
                    }
                    for c in &p.plan.changes {
                        rep.reasons.push(json!({
                            "kind": "change-needed",
                            "exit_code": 1,
                            "message": format!("{}: {} (now {}, needs {})", c.path, c.reason, c.old, c.new),
                        }));
                    }
                }
                rep.changes = p.plan.changes;
            }
            Err(e) => match e.chain().find_map(|c| c.downcast_ref::<Refused>()) {
                Some(r) => unsafe_verdict(
                    &mut rep,
                    r.reason.exit_code(),
                    r.reason.name(),
                    r.message.clone(),
                ),
                None => return Err(e),
            },
        }
        Ok(())
    })();
    if let Err(e) = result {
        if rep.verdict != "unsafe" {
            return Err(e);
        }
        // Already unsafe (an interrupted write leaves a hive that may not open): that verdict
        // and its exit status stand; the error is shown besides.
        eprintln!("imgprep: error: {e:#}");
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &rep)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}: {}", rep.image, rep.verdict.to_uppercase())?;
        for r in &rep.reasons {
            writeln!(
                out,
                "  - [{}] {}",
                r["kind"].as_str().unwrap_or(""),
                r["message"].as_str().unwrap_or("")
            )?;
        }
        if let Some(r) = &rep.copy_range {
            writeln!(
                out,
                "copy range: bytes 0..{} ({} sectors of {} bytes){}",
                r.end_bytes,
                r.end_sectors,
                r.sector_size,
                r.original_disk_bytes
                    .map(|o| format!("; GPT disk made for {o} bytes"))
                    .unwrap_or_default()
            )?;
        }
    }
    Ok(rep.exit_code)
}

fn bar(out: &mut impl Write, disk: &Disk, end: u64) -> Result<()> {
    const W: u64 = 64;
    let len = disk.len().max(1);
    let mut line = vec![b'.'; W as usize];
    for p in disk.table().data_partitions() {
        let s = (p.start_byte * W / len) as usize;
        let e = ((p.end_byte() * W).div_ceil(len) as usize).clamp(s + 1, W as usize);
        let ch = char::from_digit(p.index % 36, 36).unwrap_or('#') as u8;
        for c in line.iter_mut().take(e).skip(s) {
            *c = ch;
        }
    }
    let mark = ((end * W).div_ceil(len) as usize).min(W as usize);
    writeln!(out, "  |{}|", String::from_utf8_lossy(&line))?;
    writeln!(
        out,
        "  |{}{}| copy range = first {} of {}",
        "^".repeat(mark),
        " ".repeat(W as usize - mark),
        human_bytes(end),
        human_bytes(disk.len())
    )?;
    Ok(())
}

/// `Start/BootFlags` of a service (`-` when absent), marking a StartOverride key.
fn start_flags(s: &imgprep::windows::Service) -> String {
    let show = |v: Option<u32>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    format!(
        "{}/{}{}",
        show(s.start),
        show(s.boot_flags),
        if s.start_override {
            " +StartOverride"
        } else {
            ""
        }
    )
}

fn inspect(a: Inspect) -> Result<u8> {
    let img = open_windows(&a.image)?;
    let hive = img.hive("SYSTEM")?;
    let s = prepare::safety(&img, &hive, a.sel.replay_logs);
    let range = copy_range(img.disk().table()).ok();
    let (working, _) =
        prepare::recover_hive(&hive, true).unwrap_or_else(|_| (hive.bytes.clone(), None));
    let view = hivetool::Hive::open(&working).map_err(|e| anyhow!("{}: {e}", hive.path))?;
    let info = imgprep::windows::read_system(&view)?;
    let p = plan::plan(&view, &a.sel.prepare_options().plan)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(
            &mut out,
            &json!({
                "schema": "imgprep-inspect/1",
                "image": a.image.image.display().to_string(),
                "disk": {
                    "len": img.disk().len(),
                    "sector_size": img.disk().sector_size(),
                    "table": img.disk().table(),
                },
                "windows_partition": img.partition().index,
                "copy_range": range,
                "safety": s,
                "system": info,
                "plan": p,
            }),
        )?;
        writeln!(out)?;
        return Ok(EXIT_OK);
    }
    let d = img.disk();
    writeln!(
        out,
        "{}: {} disk, {} ({} sectors of {} bytes)",
        img.path().display(),
        format!("{:?}", d.table().scheme).to_uppercase(),
        human_bytes(d.len()),
        d.len() / u64::from(d.sector_size()),
        d.sector_size()
    )?;
    writeln!(out, "\nPartitions:")?;
    for part in d.table().data_partitions() {
        writeln!(
            out,
            "  {:>2}  start {:>12}  size {:>10}  {:<28} {}{}",
            part.index,
            part.start_lba,
            human_bytes(part.len_bytes),
            part.type_name,
            part.filesystem.name(),
            if part.index == img.partition().index {
                "  <- Windows"
            } else {
                ""
            }
        )?;
    }
    if let Some(r) = &range {
        bar(&mut out, d, r.end_bytes)?;
        writeln!(
            out,
            "  copy range: bytes 0..{} = {} sectors",
            r.end_bytes, r.end_sectors
        )?;
    }
    writeln!(out, "\nVolume (partition {}):", s.volume.partition)?;
    writeln!(
        out,
        "  dirty flag: {}; $LogFile: {}{}; hiberfil.sys: {}",
        if s.volume.dirty { "SET" } else { "clear" },
        s.volume.logfile,
        s.volume
            .logfile_version
            .as_ref()
            .map(|v| format!(" (restart area {v})"))
            .unwrap_or_default(),
        s.volume.hiberfil.as_deref().unwrap_or("absent")
    )?;
    let h = &s.hive;
    writeln!(out, "\nSYSTEM hive ({}):", h.path)?;
    writeln!(
        out,
        "  format {}, {}, {} fragment(s) over {} MFT record(s); sequence {}/{} ({}); logs: {}",
        h.version,
        human_bytes(h.size),
        h.fragments,
        h.mft_segments,
        h.seq1,
        h.seq2,
        if h.dirty { "DIRTY" } else { "clean" },
        if h.logs.is_empty() {
            "none".to_string()
        } else {
            h.logs
                .iter()
                .map(|(n, l)| format!("{n} ({})", human_bytes(*l)))
                .collect::<Vec<_>>()
                .join(", ")
        }
    )?;
    if !s.problems.is_empty() {
        writeln!(out, "\nUNSAFE:")?;
        for p in &s.problems {
            writeln!(out, "  - [{}] {}", p.reason.name(), p.message)?;
        }
    }
    writeln!(
        out,
        "\nSelect: Current {}, Default {}, LastKnownGood {}, Failed {}",
        info.select.current, info.select.default, info.select.last_known_good, info.select.failed
    )?;
    for cs in &info.control_sets {
        writeln!(out, "\n{} ({}):", cs.name, cs.roles.join(", "))?;
        writeln!(
            out,
            "  {:<4} {:<5} {:<40} {:<10} {:<14} Start/BootFlags",
            "NIC", "boot", "description", "chars", "service"
        )?;
        for n in &cs.nics {
            let svc = n.service.clone().unwrap_or_default();
            let st = cs.services.get(&svc).map(start_flags).unwrap_or_default();
            writeln!(
                out,
                "  {:<4} {:<5} {:<40} {:<10} {:<14} {}",
                n.subkey,
                if n.boot_candidate { "yes" } else { "no" },
                n.description.chars().take(40).collect::<String>(),
                format!("{:#x}", n.characteristics),
                svc,
                st
            )?;
            writeln!(
                out,
                "         {} [{}]{}{}",
                n.net_cfg_instance_id.as_deref().unwrap_or("-"),
                n.characteristics_names.join(","),
                n.mac
                    .as_ref()
                    .map(|m| format!(" MAC {m}"))
                    .unwrap_or_default(),
                n.excluded_because
                    .as_ref()
                    .map(|r| format!(" (not a boot NIC: {r})"))
                    .unwrap_or_default()
            )?;
            for f in &n.filters {
                writeln!(
                    out,
                    "           filter {{{}}} {} ({}, service {}{})",
                    f.guid,
                    f.name,
                    if f.mandatory { "mandatory" } else { "optional" },
                    f.service.as_deref().unwrap_or("?"),
                    if f.boot_loadable {
                        ", boot-loadable"
                    } else {
                        ", not boot-loadable"
                    }
                )?;
            }
        }
        for (name, svc) in &cs.services {
            if ["NDIS", "Tcpip", "iScsiPrt"].contains(&name.as_str()) {
                writeln!(
                    out,
                    "  service {:<9} {}",
                    name,
                    if svc.exists {
                        format!("Start/BootFlags {}", start_flags(svc))
                    } else {
                        "MISSING".into()
                    }
                )?;
            }
        }
    }
    for o in &info.other_control_sets {
        if p.control_sets.iter().any(|c| c.eq_ignore_ascii_case(o)) {
            continue;
        }
        writeln!(out, "\n{o}: not named by Select (left alone)")?;
    }
    writeln!(out, "\nstrip-lwf would make {} change(s):", p.changes.len())?;
    print_changes(&mut out, &p.changes)?;
    print_plan_notes(&mut out, &p)?;
    Ok(EXIT_OK)
}

fn range(a: RangeCmd) -> Result<u8> {
    let disk = Disk::open(
        &a.image,
        DiskOpen {
            writable: false,
            sector_size: a.sector_size.as_deref().and_then(|s| s.parse().ok()),
        },
    )
    .map_err(|e| anyhow!("{}: {e}", a.image.display()))?;
    let t = disk.table();
    let r = copy_range(t).map_err(|e| {
        anyhow::Error::from(Refused::new(
            imgprep::error::Refusal::BadDisk,
            format!("{}: {e}", a.image.display()),
        ))
    })?;
    let plan = plan_copy(disk.file(), t, a.gpt_fix.fix())?;
    let mut out = std::io::stdout().lock();
    match a.format {
        RangeFormat::Text => {
            write!(out, "{}", r.to_text())?;
            write!(out, "{}", plan.to_text())?;
        }
        RangeFormat::Json => {
            serde_json::to_writer_pretty(
                &mut out,
                &json!({"schema": "imgprep-range/1", "range": r, "plan": plan}),
            )?;
            writeln!(out)?;
        }
        RangeFormat::Sfdisk => write!(out, "{}", t.sfdisk_dump(&a.image.display().to_string()))?,
        RangeFormat::Dd => {
            for l in plan.dd_commands(&DdTarget {
                image: a.image.display().to_string(),
                host: a.ssh.clone(),
                device: a.target.clone(),
            }) {
                writeln!(out, "{l}")?;
            }
        }
    }
    Ok(EXIT_OK)
}

fn export_cmd(a: Export) -> Result<u8> {
    if a.json && a.output == Path::new("-") {
        bail!("--json needs -o FILE: stdout carries the image");
    }
    let (disk, patches, prepared) = if a.prepare {
        refuse_pending_journal(&a.image.image, None)?;
        let img = open_windows(&a.image)?;
        let hive = img.hive("SYSTEM")?;
        let p = prepare::prepare(&img, hive, &a.sel.prepare_options())?;
        for b in &p.plan.blockers {
            eprintln!("imgprep: BLOCKER: {}", b.message);
        }
        let patches = p.edit.patches.clone();
        let disk = Disk::open(
            &a.image.image,
            DiskOpen {
                writable: false,
                sector_size: a.image.open_options().sector_size,
            },
        )?;
        (disk, patches, Some(p))
    } else {
        let disk = Disk::open(
            &a.image.image,
            DiskOpen {
                writable: false,
                sector_size: a.image.open_options().sector_size,
            },
        )
        .map_err(|e| anyhow!("{}: {e}", a.image.image.display()))?;
        (disk, Vec::new(), None)
    };
    let blocked = prepared
        .as_ref()
        .is_some_and(|p| !p.plan.blockers.is_empty());
    let (rep, job) = copy_out(&disk, &patches, &a.output, &a.copy)?;
    let msg = format!(
        "exported {} ({} holes) to {}; LUN size to create: {} bytes, block size {}{}",
        human_bytes(job.plan.output_len),
        human_bytes(rep.hole_bytes),
        a.output.display(),
        job.plan.lun_size,
        job.plan.sector_size,
        rep.sha256
            .as_ref()
            .map(|h| format!("; sha256 {h}"))
            .unwrap_or_default()
    );
    if a.json {
        serde_json::to_writer_pretty(
            std::io::stdout().lock(),
            &json!({"schema": "imgprep-export/1", "report": rep, "plan": job.plan,
                    "prepared": prepared}),
        )?;
        println!();
    } else {
        eprintln!("imgprep: {msg}");
        for adv in &job.plan.advice {
            eprintln!("imgprep: {adv}");
        }
    }
    // Like strip-lwf: a blocking filter that stays makes the prepared copy not ready.
    Ok(if blocked { EXIT_NOT_READY } else { EXIT_OK })
}

fn undo(a: Undo) -> Result<u8> {
    let dir = a.journal_dir.as_deref();
    let jpath = journal::default_journal_path(&a.image, dir);
    if !jpath.exists() {
        bail!(
            "no journal for {} at {}: nothing to undo",
            a.image.display(),
            jpath.display()
        );
    }
    let status = journal::inspect(&jpath)?;
    let mut out = std::io::stdout().lock();
    if a.status {
        if a.json {
            serde_json::to_writer_pretty(&mut out, &status)?;
            writeln!(out)?;
        } else {
            writeln!(
                out,
                "{}: {:?}, {} patch(es) for {}",
                jpath.display(),
                status.state,
                status.patches.len(),
                status.image.path
            )?;
        }
        return Ok(EXIT_OK);
    }
    let opts = journal::UndoOptions {
        force: a.force,
        remove_journal: false,
    };
    let rep = match status.state {
        journal::JournalState::Pending => journal::recover(
            &a.image,
            &jpath,
            if a.roll_forward {
                journal::RecoverMode::RollForward
            } else {
                journal::RecoverMode::RollBack
            },
            &opts,
        )?,
        journal::JournalState::Complete => {
            if a.roll_forward {
                bail!("the journal's write completed: nothing to roll forward");
            }
            journal::undo(&a.image, &jpath, &opts)?
        }
        other => bail!(
            "{}: journal state {other:?}: nothing to undo",
            jpath.display()
        ),
    };
    if a.json {
        serde_json::to_writer_pretty(&mut out, &rep)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "restored {} bytes in {} region(s) of {} ({} already held the old bytes)",
            rep.bytes_written,
            rep.rewritten.len(),
            a.image.display(),
            rep.unchanged.len()
        )?;
    }
    // The journal is kept (marked undone/rolled back) as a record; remove it so the next write
    // does not ask for --replace-journal.
    std::fs::remove_file(&jpath).with_context(|| format!("removing {}", jpath.display()))?;
    Ok(EXIT_OK)
}

/// Splits `HKLM\SYSTEM\A\B` into (hive name, path inside the hive).
fn split_reg_path(path: &str) -> Result<(String, String)> {
    let mut parts: Vec<&str> = path.split('\\').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        bail!("empty registry path");
    }
    let first = parts[0].to_ascii_uppercase();
    if ["HKLM", "HKEY_LOCAL_MACHINE"].contains(&first.as_str()) {
        parts.remove(0);
    } else if ["HKU", "HKEY_USERS"].contains(&first.as_str()) {
        parts.remove(0);
        match parts.first().map(|s| s.to_ascii_uppercase()) {
            Some(s) if s == ".DEFAULT" => {
                parts.remove(0);
                return Ok(("DEFAULT".into(), parts.join("\\")));
            }
            _ => {
                bail!("only HKU\\.DEFAULT lives in the config folder; user hives are not supported")
            }
        }
    }
    let Some(hive) = parts.first().map(|s| s.to_ascii_uppercase()) else {
        bail!("{path}: no hive named (HKLM\\SYSTEM, HKLM\\SOFTWARE, ...)");
    };
    const HIVES: [&str; 6] = [
        "SYSTEM",
        "SOFTWARE",
        "SAM",
        "SECURITY",
        "DEFAULT",
        "COMPONENTS",
    ];
    if !HIVES.contains(&hive.as_str()) {
        bail!("{path}: unknown hive {hive} (one of {})", HIVES.join(", "));
    }
    parts.remove(0);
    Ok((hive, parts.join("\\")))
}

fn parse_data(ty: ValueType, data: &[String]) -> Result<(u32, Vec<u8>)> {
    use hivetool::hive::reg_type as t;
    let one = || -> Result<&str> {
        match data {
            [d] => Ok(d.as_str()),
            _ => bail!("--data needs exactly one value for this type"),
        }
    };
    let num = |s: &str| -> Result<u64> {
        let s = s.trim();
        Ok(
            match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(h) => u64::from_str_radix(h, 16)?,
                None => s.parse()?,
            },
        )
    };
    Ok(match ty {
        ValueType::Sz => (t::SZ, hivetool::hive::encode_sz(one()?)),
        ValueType::ExpandSz => (t::EXPAND_SZ, hivetool::hive::encode_sz(one()?)),
        ValueType::MultiSz => (t::MULTI_SZ, hivetool::hive::encode_multi_sz(data)),
        ValueType::Dword => {
            let v = u32::try_from(num(one()?)?).map_err(|_| anyhow!("DWORD out of range"))?;
            (t::DWORD, v.to_le_bytes().to_vec())
        }
        ValueType::Qword => (t::QWORD, num(one()?)?.to_le_bytes().to_vec()),
        ValueType::Binary => {
            let hex: String = data
                .concat()
                .chars()
                .filter(|c| !matches!(c, ',' | ' ' | ':'))
                .collect();
            if !hex.is_ascii() {
                bail!("binary data: not hex: {hex}");
            }
            if !hex.len().is_multiple_of(2) {
                bail!("binary data needs an even number of hex digits");
            }
            let bytes = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| anyhow!("binary data: not hex: {hex}"))?;
            (t::BINARY, bytes)
        }
    })
}

fn reg(a: Reg) -> Result<u8> {
    let img = open_windows(&a.image)?;
    let (write_path, op, dry_run, replace, desc) = match &a.op {
        RegOpCmd::Get { path, name, json } => {
            return reg_get(&img, path, name.as_deref(), *json, a.replay_logs)
        }
        RegOpCmd::Export { path } => return reg_export(&img, path, a.replay_logs),
        RegOpCmd::Set {
            path,
            name,
            ty,
            data,
            data_file,
            dry_run,
            replace_journal,
        } => {
            let (hive, key) = split_reg_path(path)?;
            let (t, bytes) = match data_file {
                Some(f) => {
                    let raw =
                        std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
                    match ty {
                        ValueType::Binary => (hivetool::hive::reg_type::BINARY, raw),
                        _ => parse_data(
                            *ty,
                            &[String::from_utf8(raw)
                                .map_err(|_| anyhow!("{}: not UTF-8 text", f.display()))?
                                .trim_end_matches(['\r', '\n'])
                                .to_string()],
                        )?,
                    }
                }
                None => parse_data(*ty, data)?,
            };
            let name = if name == "@" {
                String::new()
            } else {
                name.clone()
            };
            (
                hive,
                vec![RegOp::SetValue {
                    key: key.clone(),
                    name: name.clone(),
                    ty: t,
                    data: bytes,
                    create_key: true,
                }],
                *dry_run,
                *replace_journal,
                format!("set {path}\\{name}"),
            )
        }
        RegOpCmd::Delete {
            path,
            name,
            dry_run,
            replace_journal,
        } => {
            let (hive, key) = split_reg_path(path)?;
            (
                hive,
                vec![RegOp::DeleteValue {
                    key,
                    name: name.clone(),
                }],
                *dry_run,
                *replace_journal,
                format!("delete value {path}\\{name}"),
            )
        }
        RegOpCmd::DeleteKey {
            path,
            dry_run,
            replace_journal,
        } => {
            let (hive, key) = split_reg_path(path)?;
            if key.is_empty() {
                bail!("refusing to delete the root of a hive");
            }
            (
                hive,
                vec![RegOp::DeleteKey { key }],
                *dry_run,
                *replace_journal,
                format!("delete key {path}"),
            )
        }
    };
    let hive = img.hive(&write_path)?;
    let s = prepare::safety(&img, &hive, a.replay_logs);
    if let Some(p) = s.problems.first() {
        return Err(Refused::new(p.reason, p.message.clone()).into());
    }
    let (working, replay) = prepare::recover_hive(&hive, a.replay_logs)?;
    let edit = prepare::edit_hive(&hive, working, replay, &op, crate::clock())?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{desc}: {} byte(s) of {} change in {} patch(es)",
        edit.bytes_changed(),
        hive.path,
        edit.patches.len()
    )?;
    if dry_run || edit.patches.is_empty() {
        return Ok(EXIT_OK);
    }
    let path = img.path().to_path_buf();
    let open = a.image.open_options();
    drop(img);
    let rep = prepare::apply_in_place(
        &path,
        &write_path,
        &edit,
        &ApplyInPlace {
            journal_dir: None,
            replace_journal: replace,
        },
        open,
    )?;
    writeln!(
        out,
        "wrote {} bytes, verified; undo journal {}",
        rep.bytes_written,
        rep.journal_path.display()
    )?;
    Ok(EXIT_OK)
}

fn reg_view(img: &WindowsImage, hive_name: &str, replay: bool) -> Result<Vec<u8>> {
    let hive = img.hive(hive_name)?;
    if replay {
        Ok(prepare::recover_hive(&hive, true)?.0)
    } else {
        let base = hivetool::BaseBlock::parse(&hive.bytes)?;
        if base.is_dirty() {
            eprintln!(
                "imgprep: warning: {} is dirty ({}/{}): showing the stale primary file; \
                 --replay-logs shows what Windows would see",
                hive.path, base.seq1, base.seq2
            );
        }
        Ok(hive.bytes)
    }
}

fn reg_get(
    img: &WindowsImage,
    path: &str,
    name: Option<&str>,
    json: bool,
    replay: bool,
) -> Result<u8> {
    let (hive_name, key_path) = split_reg_path(path)?;
    let bytes = reg_view(img, &hive_name, replay)?;
    let hive = hivetool::Hive::open(&bytes)?;
    let key = hive
        .key(&key_path)?
        .ok_or_else(|| anyhow!("key not found: {path}"))?;
    let mut out = std::io::stdout().lock();
    let show_value = |v: &hivetool::Value<'_>| -> Result<serde_json::Value> {
        let d = v.decoded()?;
        Ok(json!({"name": v.name(), "type": v.data_type(), "data": plan::show(Some(&d))}))
    };
    match name {
        Some(n) => {
            let n = if n == "@" { "" } else { n };
            let v = key
                .value(n)?
                .ok_or_else(|| anyhow!("value not found: {path}\\{n}"))?;
            if json {
                serde_json::to_writer_pretty(&mut out, &show_value(&v)?)?;
                writeln!(out)?;
            } else {
                writeln!(out, "{}", plan::show(Some(&v.decoded()?)))?;
            }
        }
        None => {
            let mut values = Vec::new();
            for v in key.values()? {
                values.push(show_value(&v?)?);
            }
            let mut subkeys = Vec::new();
            for k in key.subkeys()? {
                subkeys.push(k?.name());
            }
            if json {
                serde_json::to_writer_pretty(
                    &mut out,
                    &json!({"key": path, "values": values, "subkeys": subkeys}),
                )?;
                writeln!(out)?;
            } else {
                for v in values {
                    let n = v["name"].as_str().unwrap_or("");
                    writeln!(
                        out,
                        "{} = {}",
                        if n.is_empty() { "@" } else { n },
                        v["data"].as_str().unwrap_or("")
                    )?;
                }
                for k in subkeys {
                    writeln!(out, "[{k}]")?;
                }
            }
        }
    }
    Ok(EXIT_OK)
}

fn reg_export(img: &WindowsImage, path: &str, replay: bool) -> Result<u8> {
    let (hive_name, key_path) = split_reg_path(path)?;
    let bytes = reg_view(img, &hive_name, replay)?;
    let hive = hivetool::Hive::open(&bytes)?;
    let opts = hivetool::export::ExportOptions {
        prefix: Some(format!(r"HKEY_LOCAL_MACHINE\{hive_name}")),
        ..Default::default()
    };
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    hivetool::export::export(&hive, &key_path, &opts, &mut w)?;
    w.flush()?;
    Ok(EXIT_OK)
}
