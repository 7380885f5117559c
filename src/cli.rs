// SPDX-License-Identifier: MIT OR Apache-2.0
//! Command-line definitions (clap derive). Man pages and completions are generated from these.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Prepare Windows disk images offline for diskless boot from an iSCSI SAN.
///
/// imgprep edits the image file directly: no mount, no root, no FUSE. It refuses images that
/// are not safe to edit (hibernated or Fast-Startup Windows, dirty volume or hive, BitLocker)
/// and leaves them byte-identical.
///
/// Exit status: 0 success / ready; 1 not ready (changes needed, or a blocking filter remains);
/// 2 bad input or I/O error; 10 hibernated / Fast Startup; 11 dirty volume or unclean $LogFile;
/// 12 BitLocker; 13 dirty hive (use --replay-logs); 14 no iScsiPrt service; 15 no boot NIC;
/// 16 the edit does not fit in the hive; 17 truncated image or damaged partition table;
/// 18 hive file not editable in place; 19 an earlier write's journal exists; 20 NDIS, Tcpip or
/// a miniport service is missing.
#[derive(Debug, Parser)]
#[command(
    name = "imgprep",
    version,
    propagate_version = true,
    subcommand_required = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make the image bootable from iSCSI: remove the WFP lightweight filter from the boot
    /// NICs' bindings and make the NIC driver, iScsiPrt, NDIS and Tcpip boot-start.
    ///
    /// Writes only the changed bytes, through an undo journal beside the image
    /// (`imgprep undo` restores them), and verifies them by reading back. With --output, the
    /// image is left untouched and a prepared copy of the exact copy range is written instead.
    StripLwf(StripLwf),
    /// Pre-transfer check (read-only): is the image ready to boot from iSCSI? Prints the verdict
    /// (ready / not-ready / unsafe), every reason, and the copy range.
    ///
    /// Exit status: 0 ready, 1 not ready, 10-20 unsafe (see `imgprep --help`), 2 error.
    Check(Check),
    /// Show everything about the image: partitions, copy range, volume safety, hive state,
    /// control sets, network adapters with their filters, and what strip-lwf would change.
    Inspect(Inspect),
    /// The exact byte range to copy to the SAN and the LUN to create.
    Range(RangeCmd),
    /// Write the exact copy range to a file, a block device or stdout (optionally prepared).
    Export(Export),
    /// Restore the bytes an earlier in-place write changed (from its journal).
    Undo(Undo),
    /// Read and write registry values of the Windows installation in the image.
    Reg(Reg),
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (imgprep.1 and one per command) into a directory.
    Man {
        /// Output directory.
        dir: PathBuf,
    },
}

/// How to find Windows in the image.
#[derive(Debug, Args, Clone)]
pub struct ImageArgs {
    /// The disk image (raw file or block device).
    pub image: PathBuf,
    /// The partition holding Windows (index as `imgprep inspect` shows it), when several do.
    #[arg(long, value_name = "N")]
    pub partition: Option<u32>,
    /// Logical sector size of the image (default: detected).
    #[arg(long, value_name = "BYTES", value_parser = ["512", "4096"])]
    pub sector_size: Option<String>,
}

impl ImageArgs {
    /// As library options.
    pub fn open_options(&self) -> imgprep::image::OpenOptions {
        imgprep::image::OpenOptions {
            sector_size: self.sector_size.as_deref().and_then(|s| s.parse().ok()),
            partition: self.partition,
        }
    }
}

/// What to prepare.
#[derive(Debug, Args, Clone)]
pub struct Selection {
    /// Boot NIC(s) to prepare: class subkey (0007), NetCfgInstanceId ({GUID}) or MAC address
    /// (Windows 8+). Default: every physical wired adapter. Repeatable.
    #[arg(long = "nic", value_name = "SEL")]
    pub nics: Vec<String>,
    /// Control set(s) to edit (ControlSet001 or 1). Default: those Select names (Current,
    /// Default, LastKnownGood). Repeatable.
    #[arg(long = "control-set", value_name = "CS")]
    pub control_sets: Vec<String>,
    /// Also remove this filter GUID from the boot NICs' bindings. Repeatable.
    #[arg(long = "filter", value_name = "GUID")]
    pub filters: Vec<String>,
    /// Only edit the filter bindings; leave the services' Start/BootFlags alone.
    #[arg(long)]
    pub no_boot_start: bool,
    /// Empty the pagefile list (a pagefile on the iSCSI disk crashes Windows 10's first boot).
    #[arg(long)]
    pub no_pagefile: bool,
    /// Set Tcpip\Parameters\DisableDhcpMediaSense = 1.
    #[arg(long)]
    pub disable_dhcp_media_sense: bool,
    /// Set CrashControl\AutoReboot = 0, so a stop error (0x7B) stays on screen.
    #[arg(long)]
    pub no_auto_reboot: bool,
    /// Disable hibernation and Fast Startup (HibernateEnabled = 0, HiberbootEnabled = 0).
    #[arg(long)]
    pub no_hibernate: bool,
    /// Set Control\BootDriverFlags bit 0: load network-boot drivers even without an iBFT.
    #[arg(long)]
    pub boot_driver_flags: bool,
    /// Replay the SYSTEM hive's transaction logs first when it is dirty (as Windows would).
    #[arg(long)]
    pub replay_logs: bool,
}

impl Selection {
    /// As library options.
    pub fn prepare_options(&self) -> imgprep::prepare::PrepareOptions {
        use imgprep::plan::{Hardening, Options};
        imgprep::prepare::PrepareOptions {
            plan: Options {
                nics: self.nics.clone(),
                control_sets: self.control_sets.clone(),
                extra_filters: self.filters.clone(),
                boot_start: !self.no_boot_start,
                hardening: Hardening {
                    no_pagefile: self.no_pagefile,
                    disable_dhcp_media_sense: self.disable_dhcp_media_sense,
                    no_auto_reboot: self.no_auto_reboot,
                    no_hibernate: self.no_hibernate,
                    boot_driver_flags: self.boot_driver_flags,
                },
            },
            replay_logs: self.replay_logs,
            clock: crate::clock(),
        }
    }
}

/// GPT fix for a prefix copy.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GptFixArg {
    /// Keep the original disk size: copy the backup GPT too (LUN = original size, thin).
    KeepSize,
    /// Move the backup GPT right after the last partition (like `sgdisk -e`).
    Relocate,
}

impl GptFixArg {
    /// As the library's value.
    pub fn fix(self) -> diskimg::range::GptFix {
        match self {
            GptFixArg::KeepSize => diskimg::range::GptFix::KeepBackup,
            GptFixArg::Relocate => diskimg::range::GptFix::Relocate,
        }
    }
}

/// Where and how to write a copy.
#[derive(Debug, Args, Clone)]
pub struct CopyArgs {
    /// GPT disks: how to keep the backup GPT valid in the copy.
    #[arg(long, value_enum, default_value = "keep-size")]
    pub gpt_fix: GptFixArg,
    /// Write zeros/holes for unused NTFS clusters (from $Bitmap) of clean volumes.
    #[arg(long)]
    pub skip_unused: bool,
    /// Start the output at this byte offset of the file (65536 for a COMSTAR LU file without
    /// a separate meta file).
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub output_offset: u64,
    /// The output block device reads zeros where nothing was written (fresh sparse zvol or thin
    /// LV): skip writing zero blocks.
    #[arg(long)]
    pub device_reads_zeros: bool,
    /// Print the SHA-256 of the output.
    #[arg(long)]
    pub sha256: bool,
}

/// `strip-lwf`.
#[derive(Debug, Args)]
pub struct StripLwf {
    #[command(flatten)]
    pub image: ImageArgs,
    #[command(flatten)]
    pub sel: Selection,
    /// Show what would change; write nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Leave the image untouched and write a prepared copy of the copy range to FILE (a file
    /// or block device), or to stdout with `-`.
    #[arg(long, short = 'o', value_name = "FILE|-")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub copy: CopyArgs,
    /// Directory for the undo journal (default: beside the image).
    #[arg(long, value_name = "DIR")]
    pub journal_dir: Option<PathBuf>,
    /// Give up the undo journal of an earlier in-place write and write a new one.
    #[arg(long)]
    pub replace_journal: bool,
    /// Machine-readable output (JSON on stdout).
    #[arg(long)]
    pub json: bool,
}

/// `check`.
#[derive(Debug, Args)]
pub struct Check {
    #[command(flatten)]
    pub image: ImageArgs,
    #[command(flatten)]
    pub sel: Selection,
    /// Directory of the undo journal, if strip-lwf was given one (an interrupted write recorded
    /// there makes the image unsafe).
    #[arg(long, value_name = "DIR")]
    pub journal_dir: Option<PathBuf>,
    /// JSON on stdout (schema imgprep-check/1, see docs/user-guide.md).
    #[arg(long)]
    pub json: bool,
}

/// `inspect`.
#[derive(Debug, Args)]
pub struct Inspect {
    #[command(flatten)]
    pub image: ImageArgs,
    #[command(flatten)]
    pub sel: Selection,
    /// JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Output formats of `range`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RangeFormat {
    /// Human text.
    Text,
    /// JSON.
    Json,
    /// Like `sfdisk -d`.
    Sfdisk,
    /// Ready `dd` command lines.
    Dd,
}

/// `range`.
#[derive(Debug, Args)]
pub struct RangeCmd {
    /// The disk image.
    pub image: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: RangeFormat,
    /// GPT disks: how to keep the backup GPT valid in the copy.
    #[arg(long, value_enum, default_value = "keep-size")]
    pub gpt_fix: GptFixArg,
    /// For --format dd: the host to pipe to over ssh.
    #[arg(long, value_name = "HOST")]
    pub ssh: Option<String>,
    /// For --format dd: the target device or file.
    #[arg(long, value_name = "PATH", default_value = "/dev/zvol/POOL/VOLUME")]
    pub target: String,
    /// Logical sector size of the image (default: detected).
    #[arg(long, value_name = "BYTES", value_parser = ["512", "4096"])]
    pub sector_size: Option<String>,
}

/// `export`.
#[derive(Debug, Args)]
pub struct Export {
    #[command(flatten)]
    pub image: ImageArgs,
    /// Output: a file, a block device, or `-` for stdout.
    #[arg(long, short = 'o', value_name = "FILE|-")]
    pub output: PathBuf,
    /// Apply the strip-lwf preparation in the stream.
    #[arg(long)]
    pub prepare: bool,
    #[command(flatten)]
    pub sel: Selection,
    #[command(flatten)]
    pub copy: CopyArgs,
    /// JSON report on stdout (not allowed with `-o -`).
    #[arg(long)]
    pub json: bool,
}

/// `undo`.
#[derive(Debug, Args)]
pub struct Undo {
    /// The disk image.
    pub image: PathBuf,
    /// Directory of the journal (default: beside the image).
    #[arg(long, value_name = "DIR")]
    pub journal_dir: Option<PathBuf>,
    /// Only show the journal's state.
    #[arg(long)]
    pub status: bool,
    /// Interrupted write: finish it instead of rolling it back.
    #[arg(long)]
    pub roll_forward: bool,
    /// Restore even if the image changed since (dangerous).
    #[arg(long)]
    pub force: bool,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// `reg`.
#[derive(Debug, Args)]
pub struct Reg {
    #[command(flatten)]
    pub image: ImageArgs,
    /// Replay a dirty hive's transaction logs first (reads and writes).
    #[arg(long, global = true)]
    pub replay_logs: bool,
    /// What to do.
    #[command(subcommand)]
    pub op: RegOpCmd,
}

/// Value types for `reg set`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ValueType {
    /// REG_SZ
    Sz,
    /// REG_EXPAND_SZ
    ExpandSz,
    /// REG_MULTI_SZ (one --data per string)
    MultiSz,
    /// REG_DWORD (decimal or 0x hex)
    Dword,
    /// REG_QWORD
    Qword,
    /// REG_BINARY (hex bytes, e.g. 01,02,ff or 0102ff)
    Binary,
}

/// `reg` operations. PATH is a registry path such as `HKLM\SYSTEM\ControlSet001\Services\Tcpip`
/// (HKLM\SYSTEM, HKLM\SOFTWARE, HKLM\SAM, HKLM\SECURITY, HKU\.DEFAULT), or `SYSTEM\...`.
#[derive(Debug, Subcommand)]
pub enum RegOpCmd {
    /// Print a key's values and subkeys, or one value.
    Get {
        /// Key path.
        path: String,
        /// Value name (omit: the whole key; "" or @: the default value).
        name: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Set a value (through the journal).
    Set {
        /// Key path (created if missing).
        path: String,
        /// Value name ("" or @: the default value).
        name: String,
        /// Type.
        #[arg(long = "type", value_enum)]
        ty: ValueType,
        /// Data (repeat for REG_MULTI_SZ).
        #[arg(long, num_args = 0..)]
        data: Vec<String>,
        /// Read the data from a file instead (raw bytes for binary, text otherwise).
        #[arg(long, value_name = "FILE", conflicts_with = "data")]
        data_file: Option<PathBuf>,
        /// Show what would change; write nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// Give up an earlier write's undo journal.
        #[arg(long)]
        replace_journal: bool,
    },
    /// Delete a value (through the journal).
    Delete {
        /// Key path.
        path: String,
        /// Value name.
        name: String,
        /// Show what would change; write nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// Give up an earlier write's undo journal.
        #[arg(long)]
        replace_journal: bool,
    },
    /// Delete a key and everything below it (through the journal).
    DeleteKey {
        /// Key path.
        path: String,
        /// Show what would change; write nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// Give up an earlier write's undo journal.
        #[arg(long)]
        replace_journal: bool,
    },
    /// Export a key (default: the whole hive) as a .reg file (regedit 5.00 format) on stdout.
    Export {
        /// Key path (e.g. HKLM\SYSTEM\Select).
        path: String,
    },
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
