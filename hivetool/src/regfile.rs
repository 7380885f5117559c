// SPDX-License-Identifier: MIT OR Apache-2.0
//! `.reg` files: parsing (regedit 5.00 and REGEDIT4) and importing into an [`Editor`].
//!
//! Accepted syntax (what regedit.exe and `hivexregedit --export` write):
//!
//! * header `Windows Registry Editor Version 5.00` or `REGEDIT4` (first non-empty line);
//! * text encoding: UTF-16LE with BOM (regedit's default), UTF-16BE with BOM, UTF-8 with or
//!   without BOM; in input that is not valid UTF-8, each line that is not valid UTF-8 is read
//!   as Latin-1 (hivexregedit writes Latin-1 lines and UTF-8 lines in one file);
//! * `[KEY]` creates a key (and its missing parents), `[-KEY]` deletes it with its subtree
//!   (value lines under a deleted key are ignored, like regedit);
//! * `"name"=...` and `@=...` (default value); `"name"=-` deletes a value;
//! * data: `"string"` (REG_SZ), `dword:XXXXXXXX`, `hex:` (REG_BINARY), `hex(N):` with N the type
//!   in hex (`hex(0)`, `hex(2)`, `hex(7)`, `hex(b)`, any u32), and the extension `qword:` (up to
//!   16 hex digits); hex bytes are comma separated, lines continue with a trailing `\`;
//! * in quoted names and strings `\\` is `\` and `\"` is `"` (any other `\x` is kept as is);
//! * lines starting with `;` are comments; blank lines are ignored.
//!
//! REGEDIT4 files are 8-bit: their `hex(1)`, `hex(2)`, `hex(6)` and `hex(7)` data hold one byte
//! per character; they are widened to UTF-16LE on import (as regedit does).
//!
//! Key paths: see [`strip_root`] for how the part naming the hive itself is removed.

use std::collections::HashMap;

use crate::edit::Editor;
use crate::error::{Error, Result};
use crate::hive::reg_type;
use crate::upcase;

/// Longest logical line accepted (continuations joined), against hostile input.
pub const MAX_LINE: usize = 64 * 1024 * 1024;

/// The header dialect of a `.reg` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegVersion {
    /// `Windows Registry Editor Version 5.00` (Unicode).
    V5,
    /// `REGEDIT4` (8-bit).
    Regedit4,
}

/// One operation of a `.reg` file. Key paths are as written (see [`strip_root`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegOp {
    /// `[KEY]`: create the key (if missing) and make it current.
    CreateKey {
        /// Path as written.
        path: String,
        /// 1-based line number.
        line: usize,
    },
    /// `[-KEY]`: delete the key and its subtree.
    DeleteKey {
        /// Path as written.
        path: String,
        /// 1-based line number.
        line: usize,
    },
    /// `"name"=data`: set a value of the current key.
    SetValue {
        /// Path of the key (as written in its `[KEY]` line).
        key: String,
        /// Value name ("" = default value).
        name: String,
        /// Value type.
        ty: u32,
        /// Raw data.
        data: Vec<u8>,
        /// 1-based line number.
        line: usize,
    },
    /// `"name"=-`: delete a value of the current key.
    DeleteValue {
        /// Path of the key.
        key: String,
        /// Value name.
        name: String,
        /// 1-based line number.
        line: usize,
    },
}

/// A parsed `.reg` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegFile {
    /// Header dialect.
    pub version: RegVersion,
    /// Operations in file order.
    pub ops: Vec<RegOp>,
}

/// How key paths are mapped onto the hive.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// A prefix every key path must start with (case-insensitive), naming the hive's root, e.g.
    /// `HKEY_LOCAL_MACHINE\SYSTEM`. `None`: the rule of [`strip_root`].
    pub prefix: Option<String>,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// `[KEY]` lines processed.
    pub keys: usize,
    /// Keys deleted by `[-KEY]` (existing ones).
    pub keys_deleted: usize,
    /// Values set.
    pub values: usize,
    /// Values deleted (existing ones).
    pub values_deleted: usize,
}

/// Decodes the text of a `.reg` file (BOM-detected UTF-16LE/BE, or UTF-8; lines that are not
/// UTF-8 as Latin-1).
pub fn decode_text(bytes: &[u8]) -> Result<String> {
    let utf16 = |b: &[u8], le: bool| -> Result<String> {
        let units: Vec<u16> = b
            .chunks_exact(2)
            .map(|c| {
                if le {
                    u16::from_le_bytes([c[0], c[1]])
                } else {
                    u16::from_be_bytes([c[0], c[1]])
                }
            })
            .collect();
        String::from_utf16(&units).map_err(|_| Error::RegSyntax {
            line: 0,
            reason: "invalid UTF-16 (unpaired surrogate)".into(),
        })
    };
    if let Some(b) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        return utf16(b, true);
    }
    if let Some(b) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        return utf16(b, false);
    }
    let b = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    if let Ok(s) = std::str::from_utf8(b) {
        return Ok(s.to_string());
    }
    // Not UTF-8 as a whole: decide per line (hivexregedit prints each line either in Latin-1,
    // when all its characters are <= U+00FF, or in UTF-8).
    let mut out = String::with_capacity(b.len());
    for line in b.split_inclusive(|&c| c == b'\n') {
        match std::str::from_utf8(line) {
            Ok(s) => out.push_str(s),
            Err(_) => out.extend(line.iter().map(|&c| char::from(c))),
        }
    }
    Ok(out)
}

fn syntax(line: usize, reason: impl Into<String>) -> Error {
    Error::RegSyntax {
        line,
        reason: reason.into(),
    }
}

/// Parses `.reg` file bytes (see the module docs for the syntax).
pub fn parse(bytes: &[u8]) -> Result<RegFile> {
    parse_str(&decode_text(bytes)?)
}

/// Parses `.reg` text.
pub fn parse_str(text: &str) -> Result<RegFile> {
    let mut lines = text.split('\n').enumerate().map(|(i, l)| {
        (
            i + 1,
            l.strip_suffix('\r')
                .unwrap_or(l)
                .trim_start_matches('\u{feff}'),
        )
    });
    let version = loop {
        let Some((n, l)) = lines.next() else {
            return Err(syntax(1, "empty file: no .reg header"));
        };
        let l = l.trim();
        if l.is_empty() {
            continue;
        }
        if l == "Windows Registry Editor Version 5.00" {
            break RegVersion::V5;
        }
        if l == "REGEDIT4" {
            break RegVersion::Regedit4;
        }
        return Err(syntax(
            n,
            format!("expected the header \"Windows Registry Editor Version 5.00\" or \"REGEDIT4\", found {l:?}"),
        ));
    };
    let mut ops = Vec::new();
    let mut current: Option<String> = None; // None = before any key or inside a [-key]
    let mut deleted_section = false;
    while let Some((n, first)) = lines.next() {
        let t = first.trim();
        if t.is_empty() || t.starts_with(';') {
            continue;
        }
        if t.starts_with('[') {
            let end = t
                .rfind(']')
                .ok_or_else(|| syntax(n, "key line without a closing ']'"))?;
            let inner = &t[1..end];
            if let Some(p) = inner.strip_prefix('-') {
                ops.push(RegOp::DeleteKey {
                    path: p.to_string(),
                    line: n,
                });
                current = None;
                deleted_section = true;
            } else {
                ops.push(RegOp::CreateKey {
                    path: inner.to_string(),
                    line: n,
                });
                current = Some(inner.to_string());
                deleted_section = false;
            }
            continue;
        }
        // A value line, possibly continued with a trailing backslash.
        let mut logical = std::borrow::Cow::Borrowed(t);
        while logical.ends_with('\\') && !ends_in_string(&logical) {
            let l = logical.to_mut();
            l.pop();
            match lines.next() {
                Some((_, next)) => l.push_str(next.trim()),
                None => break,
            }
            if l.len() > MAX_LINE {
                return Err(syntax(n, "line too long"));
            }
        }
        if !(logical.starts_with('"') || logical.starts_with('@')) {
            return Err(syntax(
                n,
                format!(
                    "expected a key line [..] or a value line \"name\"=..., found {:?}",
                    truncate(&logical)
                ),
            ));
        }
        let Some(key) = current.clone() else {
            if deleted_section {
                continue;
            }
            return Err(syntax(n, "value line before any [key] line"));
        };
        let (name, rest) = parse_name(&logical, n)?;
        let rest = rest.trim_start();
        let rest = rest
            .strip_prefix('=')
            .ok_or_else(|| syntax(n, "expected '=' after the value name"))?
            .trim();
        if rest == "-" {
            ops.push(RegOp::DeleteValue { key, name, line: n });
            continue;
        }
        let (ty, data) = parse_data(rest, version, n)?;
        ops.push(RegOp::SetValue {
            key,
            name,
            ty,
            data,
            line: n,
        });
    }
    Ok(RegFile { version, ops })
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Whether `s` ends inside or at the end of a quoted string (so a trailing `\` is data, not a
/// continuation). Only hex data lines are continued.
fn ends_in_string(s: &str) -> bool {
    // Value lines with quoted data end in '"'; a trailing backslash only matters for lines
    // whose data part is not quoted. Find the data part after the name.
    let Some(eq) = name_end(s) else { return false };
    s[eq..]
        .trim_start()
        .trim_start_matches('=')
        .trim_start()
        .starts_with('"')
}

/// Byte index just after the name part (`@` or the closing quote).
fn name_end(s: &str) -> Option<usize> {
    if s.starts_with('@') {
        return Some(1);
    }
    let mut esc = false;
    for (i, c) in s.char_indices().skip(1) {
        if esc {
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else if c == '"' {
            return Some(i + 1);
        }
    }
    None
}

/// Parses `"..."` (with escapes) or `@` at the start of `s`; returns the name and the rest.
fn parse_name(s: &str, line: usize) -> Result<(String, &str)> {
    if let Some(rest) = s.strip_prefix('@') {
        return Ok((String::new(), rest));
    }
    let (name, used) = parse_quoted(s, line)?;
    Ok((name, &s[used..]))
}

/// Parses a quoted string at the start of `s`; returns it and the bytes consumed.
fn parse_quoted(s: &str, line: usize) -> Result<(String, usize)> {
    // Fast path: no escapes before the closing quote.
    if let Some(body) = s.strip_prefix('"') {
        if let Some(end) = body.find(['"', '\\']) {
            if body.as_bytes()[end] == b'"' {
                return Ok((body[..end].to_string(), end + 2));
            }
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.char_indices();
    if chars.next().map(|c| c.1) != Some('"') {
        return Err(syntax(line, "expected '\"'"));
    }
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\\' => match chars.next() {
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => return Err(syntax(line, "unterminated string")),
            },
            c => out.push(c),
        }
    }
    Err(syntax(line, "unterminated string (missing closing '\"')"))
}

fn parse_hex_bytes(s: &str, line: usize) -> Result<Vec<u8>> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bad = |at: usize| {
        let rest: String = s[at..].chars().take(12).collect();
        syntax(line, format!("bad hex byte at {rest:?}"))
    };
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len() / 3 + 1);
    let mut i = 0;
    while i < b.len() {
        // One item: optional blanks, 1-2 hex digits, optional blanks, then ',' or the end.
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        if b[i] == b',' {
            i += 1; // empty item (e.g. a trailing comma)
            continue;
        }
        let start = i;
        let hi = digit(b[i]).ok_or_else(|| bad(start))?;
        i += 1;
        let mut v = hi;
        if let Some(lo) = b.get(i).and_then(|&c| digit(c)) {
            v = hi << 4 | lo;
            i += 1;
        }
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        match b.get(i) {
            None => {}
            Some(b',') => i += 1,
            Some(_) => return Err(bad(start)),
        }
        out.push(v);
    }
    Ok(out)
}

/// REG_SZ data (like [`crate::hive::encode_sz`], allocated once).
fn sz_data(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 2 + 2);
    for u in text.encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out.extend_from_slice(&[0, 0]);
    out
}

fn widen(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().flat_map(|&b| [b, 0]).collect()
}

/// `s` without `prefix` (ASCII, case-insensitive).
fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn parse_data(s: &str, version: RegVersion, line: usize) -> Result<(u32, Vec<u8>)> {
    if s.starts_with('"') {
        let (text, used) = parse_quoted(s, line)?;
        let rest = s[used..].trim();
        if !rest.is_empty() && !rest.starts_with(';') {
            return Err(syntax(
                line,
                format!("unexpected text after the string: {:?}", truncate(rest)),
            ));
        }
        return Ok((reg_type::SZ, sz_data(&text)));
    }
    let lower = s;
    if let Some(h) = strip_prefix_ci(lower, "dword:") {
        let h = h.trim();
        if h.is_empty() || h.len() > 8 {
            return Err(syntax(line, format!("bad dword {h:?} (1 to 8 hex digits)")));
        }
        let v = u32::from_str_radix(h, 16).map_err(|_| syntax(line, format!("bad dword {h:?}")))?;
        return Ok((reg_type::DWORD, v.to_le_bytes().to_vec()));
    }
    if let Some(h) = strip_prefix_ci(lower, "qword:") {
        let h = h.trim();
        if h.is_empty() || h.len() > 16 {
            return Err(syntax(
                line,
                format!("bad qword {h:?} (1 to 16 hex digits)"),
            ));
        }
        let v = u64::from_str_radix(h, 16).map_err(|_| syntax(line, format!("bad qword {h:?}")))?;
        return Ok((reg_type::QWORD, v.to_le_bytes().to_vec()));
    }
    if let Some(h) = strip_prefix_ci(lower, "hex:") {
        return Ok((reg_type::BINARY, parse_hex_bytes(h, line)?));
    }
    if let Some(h) = strip_prefix_ci(lower, "hex(") {
        let close = h
            .find("):")
            .ok_or_else(|| syntax(line, "expected hex(N):"))?;
        let ty = u32::from_str_radix(h[..close].trim(), 16)
            .map_err(|_| syntax(line, format!("bad value type {:?}", &h[..close])))?;
        let bytes = parse_hex_bytes(&h[close + 2..], line)?;
        let wide = version == RegVersion::Regedit4
            && matches!(
                ty,
                reg_type::SZ | reg_type::EXPAND_SZ | reg_type::LINK | reg_type::MULTI_SZ
            );
        return Ok((ty, if wide { widen(&bytes) } else { bytes }));
    }
    Err(syntax(
        line,
        format!("unknown value data {:?}", truncate(s)),
    ))
}

fn eq_prefix<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    // ASCII prefix (the usual case): Windows' upcase table maps no non-ASCII unit to ASCII,
    // so ASCII case folding is exact here.
    if prefix.is_ascii() {
        let head = path.get(..prefix.len())?;
        if !head.eq_ignore_ascii_case(prefix) {
            return None;
        }
        let rest = &path[prefix.len()..];
        return if rest.is_empty() {
            Some("")
        } else {
            rest.strip_prefix('\\')
        };
    }
    let pu: Vec<u16> = prefix.encode_utf16().collect();
    let mut it = path.char_indices();
    let mut units = Vec::new();
    for (i, c) in it.by_ref() {
        if units.len() >= pu.len() {
            let rest = &path[i..];
            return if upcase::cmp_units(&units, &pu).is_eq() {
                if rest.is_empty() {
                    Some("")
                } else {
                    rest.strip_prefix('\\')
                }
            } else {
                None
            };
        }
        let mut buf = [0u16; 2];
        units.extend_from_slice(c.encode_utf16(&mut buf));
    }
    upcase::cmp_units(&units, &pu).is_eq().then_some("")
}

/// Maps a key path of a `.reg` file to a path relative to the hive root.
///
/// * With `prefix` (e.g. `HKEY_LOCAL_MACHINE\SYSTEM`): the path must be the prefix or start
///   with it followed by `\` (compared case-insensitively); the prefix is removed.
/// * Else, a path starting with `\` (hivexregedit's style, `[\]` = root) is relative already.
/// * Else the first component names where the hive is loaded and is removed:
///   `HKEY_LOCAL_MACHINE` / `HKLM` / `HKEY_USERS` / `HKU` take the next component too (the
///   hive's name, e.g. `SYSTEM` or a user SID); other `HKEY_*` roots and `HKCU`, `HKCR`, `HKCC`
///   are removed alone; any other first component is taken as the hive root's own name.
pub fn strip_root(path: &str, prefix: Option<&str>, line: usize) -> Result<String> {
    if let Some(p) = prefix {
        let p = p.trim_end_matches('\\');
        return eq_prefix(path, p)
            .map(|r| r.trim_start_matches('\\').to_string())
            .ok_or_else(|| syntax(line, format!("key {path:?} is not under the prefix {p:?}")));
    }
    if let Some(rest) = path.strip_prefix('\\') {
        return Ok(rest.to_string());
    }
    let mut parts = path.splitn(3, '\\');
    let first = parts.next().unwrap_or("").to_ascii_uppercase();
    let second = parts.next();
    let rest = parts.next();
    let two = matches!(
        first.as_str(),
        "HKEY_LOCAL_MACHINE" | "HKLM" | "HKEY_USERS" | "HKU"
    );
    Ok(if two {
        rest.unwrap_or("").to_string()
    } else {
        match (second, rest) {
            (Some(s), Some(r)) => format!("{s}\\{r}"),
            (Some(s), None) => s.to_string(),
            _ => String::new(),
        }
    })
}

/// Applies parsed operations to `ed`. Each operation is atomic; on error the operations before
/// it stay applied (the caller discards the editor to abandon the whole import). Errors other
/// than [`Error::NoSpace`] and [`Error::Corrupt`] are reported as [`Error::RegSyntax`] with the
/// line number.
pub fn apply(ed: &mut Editor, file: &RegFile, opts: &ImportOptions) -> Result<ImportStats> {
    let mut stats = ImportStats::default();
    let mut cur: Option<(String, u32)> = None;
    // Offsets of keys created or found so far (upper-cased relative path → nk), so that a
    // key's parent is not looked up from the root again; cleared when a key is deleted.
    let mut known: HashMap<Vec<u16>, u32> = HashMap::new();
    let wrap = |line: usize, e: Error| match e {
        Error::NoSpace { .. } | Error::Corrupt { .. } | Error::RegSyntax { .. } => e,
        other => syntax(line, other.to_string()),
    };
    for op in &file.ops {
        match op {
            RegOp::CreateKey { path, line } => {
                let rel = strip_root(path, opts.prefix.as_deref(), *line)?;
                let rel = rel.trim_matches('\\');
                let parent = rel
                    .rsplit_once('\\')
                    .and_then(|(p, name)| Some((*known.get(&upper(p))?, name)))
                    .filter(|(_, name)| !name.is_empty());
                let off = match parent {
                    Some((p, name)) => ed.create_subkey_at(p, name),
                    None => ed.create_key(rel),
                }
                .map_err(|e| wrap(*line, e))?;
                known.insert(upper(rel), off);
                cur = Some((path.clone(), off));
                stats.keys += 1;
            }
            RegOp::DeleteKey { path, line } => {
                let rel = strip_root(path, opts.prefix.as_deref(), *line)?;
                cur = None;
                known.clear();
                if rel.split('\\').all(|p| p.is_empty()) {
                    return Err(syntax(*line, "the hive root cannot be deleted"));
                }
                if ed.delete_key(&rel).map_err(|e| wrap(*line, e))? {
                    stats.keys_deleted += 1;
                }
            }
            RegOp::SetValue {
                key,
                name,
                ty,
                data,
                line,
            } => {
                let off = current_key(ed, &mut cur, key, opts, *line)?;
                ed.set_value_at(off, name, *ty, data)
                    .map_err(|e| wrap(*line, e))?;
                stats.values += 1;
            }
            RegOp::DeleteValue { key, name, line } => {
                let off = current_key(ed, &mut cur, key, opts, *line)?;
                if ed.delete_value_at(off, name).map_err(|e| wrap(*line, e))? {
                    stats.values_deleted += 1;
                }
            }
        }
    }
    Ok(stats)
}

fn upper(path: &str) -> Vec<u16> {
    let mut v = Vec::with_capacity(path.len());
    v.extend(path.encode_utf16().map(upcase::upcase_unit));
    v
}

fn current_key(
    ed: &mut Editor,
    cur: &mut Option<(String, u32)>,
    key: &str,
    opts: &ImportOptions,
    line: usize,
) -> Result<u32> {
    if let Some((k, off)) = cur {
        if k == key {
            return Ok(*off);
        }
    }
    let rel = strip_root(key, opts.prefix.as_deref(), line)?;
    let off = ed.create_key(&rel)?;
    *cur = Some((key.to_string(), off));
    Ok(off)
}

/// Parses `bytes` as a `.reg` file and applies it to `ed`.
pub fn import(ed: &mut Editor, bytes: &[u8], opts: &ImportOptions) -> Result<ImportStats> {
    let file = parse(bytes)?;
    apply(ed, &file, opts)
}
