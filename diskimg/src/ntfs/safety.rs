// SPDX-License-Identifier: MIT OR Apache-2.0
//! Volume safety report: `$Volume` dirty flag, `$LogFile` restart area, `hiberfil.sys` header.

use super::{apply_fixups, attr_type, le16, le32, le64, record, AttrBody, Volume};
use crate::{Error, ReadAt, Result};

/// `VOLUME_IS_DIRTY` in `$VOLUME_INFORMATION` flags.
pub const VOLUME_IS_DIRTY: u16 = 0x0001;
/// `RESTART_VOLUME_IS_CLEAN` in the restart area flags.
pub const RESTART_VOLUME_IS_CLEAN: u16 = 0x0002;
/// Bytes of `$LogFile` read for the restart pages (two pages of up to 64 KiB).
pub const MAX_RESTART_READ: u64 = 128 * 1024;

/// State of `$LogFile`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogState {
    /// Never used or reset (the restart pages are all 0xFF): nothing to replay.
    Empty,
    /// Restart area says clean (no client in use, or `RESTART_VOLUME_IS_CLEAN`).
    Clean,
    /// A client is in use and the clean bit is clear: unreplayed metadata changes.
    Unclean,
    /// Could not be read or parsed (treated as unsafe).
    Unreadable(String),
}

/// What the `$LogFile` restart pages say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFileState {
    /// Clean, unclean, empty or unreadable.
    pub state: LogState,
    /// Restart page version `(major, minor)`: (1, 1) classic, (2, 0) Windows 8+ (metadata kept
    /// in the Fast Startup cache). `None` when empty/unreadable.
    pub version: Option<(i16, i16)>,
    /// `current_lsn` of the restart area used (the newer of the two pages).
    pub current_lsn: u64,
}

impl LogFileState {
    /// Whether an offline edit is safe as far as the log is concerned (empty or clean, and not
    /// version 2.x).
    pub fn is_safe(&self) -> bool {
        matches!(self.state, LogState::Empty | LogState::Clean)
            && !matches!(self.version, Some((major, _)) if major >= 2)
    }
}

/// First four bytes of `hiberfil.sys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HiberMagic {
    /// `hibr`: hibernated.
    Hibr,
    /// `HIBR`: hibernated (Fast Startup / hybrid).
    HibrUpper,
    /// `wake`: resume attempted.
    Wake,
    /// `WAKE`.
    WakeUpper,
    /// `RSTR`.
    Rstr,
    /// `link`.
    Link,
    /// First page all zeros: not hibernated.
    Zero,
    /// Anything else (the first four bytes).
    Other([u8; 4]),
}

/// State of `\hiberfil.sys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiberState {
    /// The header magic.
    pub magic: HiberMagic,
    /// File size in bytes.
    pub size: u64,
    /// Whether this state forbids offline edits (every magic but an all-zero page; also a
    /// file shorter than 4096 bytes, which ntfs-3g refuses too).
    pub r#unsafe: bool,
}

/// Safety report of a volume, before any write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Safety {
    /// `$Volume` dirty flag (chkdsk pending).
    pub dirty: bool,
    /// `$VOLUME_INFORMATION` flags (raw), `None` if unreadable.
    pub volume_flags: Option<u16>,
    /// NTFS version `(major, minor)` from `$VOLUME_INFORMATION`.
    pub ntfs_version: Option<(u8, u8)>,
    /// `$LogFile` state.
    pub logfile: LogFileState,
    /// `hiberfil.sys` in the root directory, if present and readable.
    pub hiberfil: Option<HiberState>,
    /// Why `hiberfil.sys` exists but could not be read (then whether Windows is hibernated is
    /// unknown).
    pub hiberfil_error: Option<String>,
    /// Human-readable reasons why the volume is unsafe (empty when safe).
    pub reasons: Vec<String>,
}

impl Safety {
    /// No reason against an offline edit was found.
    pub fn is_safe(&self) -> bool {
        self.reasons.is_empty()
    }
}

/// Classifies the first bytes of `hiberfil.sys`.
pub fn classify_hiber(head: &[u8], size: u64) -> HiberState {
    let mut m = [0u8; 4];
    for (d, s) in m.iter_mut().zip(head.iter()) {
        *d = *s;
    }
    let magic = match &m {
        b"hibr" => HiberMagic::Hibr,
        b"HIBR" => HiberMagic::HibrUpper,
        b"wake" => HiberMagic::Wake,
        b"WAKE" => HiberMagic::WakeUpper,
        b"RSTR" => HiberMagic::Rstr,
        b"link" => HiberMagic::Link,
        _ if head.iter().take(4096).all(|&b| b == 0) => HiberMagic::Zero,
        _ => HiberMagic::Other(m),
    };
    let r#unsafe = magic != HiberMagic::Zero || (size > 0 && size < 4096);
    HiberState {
        magic,
        size,
        r#unsafe,
    }
}

/// Parses one restart page (fixups applied inside); returns `(version, current_lsn, clean)`.
fn parse_restart_page(
    page: &mut [u8],
    at: u64,
) -> std::result::Result<((i16, i16), u64, bool), String> {
    match page.get(0..4) {
        Some(b"RSTR") | Some(b"CHKD") => {}
        _ => return Err(format!("restart page at {at:#x}: no RSTR signature")),
    }
    apply_fixups(page, at).map_err(|e| e.to_string())?;
    let ra = le16(page, 0x18).unwrap_or(0) as usize;
    let minor = le16(page, 0x1A).unwrap_or(0) as i16;
    let major = le16(page, 0x1C).unwrap_or(0) as i16;
    if !ra.is_multiple_of(8) || ra + 0x30 > page.len() {
        return Err(format!("restart area offset {ra:#x} invalid at {at:#x}"));
    }
    let lsn = le64(page, ra).unwrap_or(0);
    let in_use = le16(page, ra + 0x0C).unwrap_or(0);
    let flags = le16(page, ra + 0x0E).unwrap_or(0);
    let clean = in_use == 0xFFFF || flags & RESTART_VOLUME_IS_CLEAN != 0;
    Ok(((major, minor), lsn, clean))
}

impl<R: ReadAt> Volume<R> {
    /// Reads the `$LogFile` restart pages (record 2): empty if the first page is all 0xFF,
    /// otherwise the page with the higher `current_lsn` of the two decides.
    pub fn logfile_state(&self) -> LogFileState {
        match self.logfile_state_inner() {
            Ok(s) => s,
            Err(e) => LogFileState {
                state: LogState::Unreadable(e),
                version: None,
                current_lsn: 0,
            },
        }
    }

    fn logfile_state_inner(&self) -> std::result::Result<LogFileState, String> {
        let head = self
            .read_file_prefix(record::LOGFILE, MAX_RESTART_READ)
            .map_err(|e| e.to_string())?;
        let first = head.get(..4096.min(head.len())).unwrap_or(&[]);
        if !first.is_empty() && first.iter().all(|&b| b == 0xFF) {
            return Ok(LogFileState {
                state: LogState::Empty,
                version: None,
                current_lsn: 0,
            });
        }
        let page_size = le32(&head, 0x10).unwrap_or(0) as usize;
        if !(512..=65536).contains(&page_size)
            || !page_size.is_power_of_two()
            || 2 * page_size > head.len()
        {
            return Err(format!("restart page size {page_size} invalid"));
        }
        let base = self
            .data_extents(record::LOGFILE)
            .ok()
            .and_then(|fx| fx.extents.first().and_then(|e| e.disk_offset))
            .unwrap_or(self.part_offset());
        let mut best: Option<((i16, i16), u64, bool)> = None;
        let mut errors = Vec::new();
        for i in 0..2 {
            let mut page = head[i * page_size..(i + 1) * page_size].to_vec();
            if page.iter().all(|&b| b == 0xFF) {
                continue;
            }
            match parse_restart_page(&mut page, base + (i * page_size) as u64) {
                Ok(p) => {
                    if best.is_none_or(|b| p.1 > b.1) {
                        best = Some(p);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        let Some((version, lsn, clean)) = best else {
            return Err(errors.join("; "));
        };
        Ok(LogFileState {
            state: if clean {
                LogState::Clean
            } else {
                LogState::Unclean
            },
            version: Some(version),
            current_lsn: lsn,
        })
    }

    /// `$VOLUME_INFORMATION` of `$Volume` (record 3): `(flags, major, minor)`.
    pub fn volume_information(&self) -> Result<(u16, u8, u8)> {
        let attrs = self.attributes(record::VOLUME)?;
        for a in attrs {
            if a.ty == attr_type::VOLUME_INFORMATION {
                if let AttrBody::Resident(v) = &a.body {
                    if v.len() >= 12 {
                        return Ok((le16(v, 0x0A).unwrap_or(0), v[8], v[9]));
                    }
                }
                return Err(super::ntfs_err(a.offset, "$VOLUME_INFORMATION malformed"));
            }
        }
        Err(super::ntfs_err(
            self.part_offset(),
            "$Volume has no $VOLUME_INFORMATION",
        ))
    }

    /// `hiberfil.sys` in the root directory, if any.
    pub fn hiberfil_state(&self) -> Result<Option<HiberState>> {
        let n = match self.lookup(record::ROOT, "hiberfil.sys") {
            Ok(n) => n,
            Err(Error::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let fx = self.data_extents(n)?;
        let head = self.read_file_prefix(n, 4096)?;
        Ok(Some(classify_hiber(&head, fx.data_size)))
    }

    /// The safety report: dirty flag, `$LogFile` state and version, `hiberfil.sys` magic, with
    /// human-readable reasons (BitLocker is refused earlier, by [`Volume::open`]).
    pub fn safety(&self) -> Safety {
        let mut reasons = Vec::new();
        let (volume_flags, ntfs_version) = match self.volume_information() {
            Ok((f, ma, mi)) => (Some(f), Some((ma, mi))),
            Err(e) => {
                reasons.push(format!("$Volume information unreadable: {e}"));
                (None, None)
            }
        };
        let dirty = volume_flags.is_some_and(|f| f & VOLUME_IS_DIRTY != 0);
        if dirty {
            reasons
                .push("volume is marked dirty (chkdsk pending): metadata cannot be trusted".into());
        }
        let logfile = self.logfile_state();
        match &logfile.state {
            LogState::Unclean => reasons.push(
                "$LogFile is not clean: unreplayed metadata changes (Windows was not shut down cleanly)".into(),
            ),
            LogState::Unreadable(e) => reasons.push(format!("$LogFile unreadable: {e}")),
            _ => {}
        }
        if let Some((major, minor)) = logfile.version {
            if major >= 2 {
                reasons.push(format!(
                    "$LogFile version {major}.{minor}: Windows 8+ kept metadata cached (Fast Startup); shut down fully"
                ));
            }
        }
        let (hiberfil, hiberfil_error) = match self.hiberfil_state() {
            Ok(h) => (h, None),
            Err(e) => {
                reasons.push(format!("hiberfil.sys unreadable: {e}"));
                (None, Some(e.to_string()))
            }
        };
        if let Some(h) = &hiberfil {
            if h.r#unsafe {
                reasons.push(format!(
                    "hiberfil.sys header {:?}: Windows is hibernated or Fast Startup is active",
                    h.magic
                ));
            }
        }
        Safety {
            dirty,
            volume_flags,
            ntfs_version,
            logfile,
            hiberfil,
            hiberfil_error,
            reasons,
        }
    }
}
