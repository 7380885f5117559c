// SPDX-License-Identifier: MIT OR Apache-2.0
//! `.reg` export ("Windows Registry Editor Version 5.00").
//!
//! Two flavours ([`Format`]):
//!
//! * [`Format::Regedit`]: what regedit.exe writes — keys and values in on-disk order, `REG_SZ`
//!   as quoted strings, `dword:`, `hex:` for `REG_BINARY`, `hex(N):` for everything else, hex
//!   lines wrapped at 80 columns with `,\` continuations. UTF-8 + LF by default, or UTF-16LE
//!   with a BOM and CRLF like regedit ([`ExportOptions::utf16`]).
//! * [`Format::Hivex`]: byte-identical to `hivexregedit --export HIVE KEY` (hivex 1.3.23):
//!   keys and values sorted by code point, every value `hex(N):` on one line except 4-byte
//!   `REG_DWORD`s, key paths `\`-rooted after the prefix, names printed the way Perl prints
//!   them (Latin-1 when every character is ≤ U+00FF, UTF-8 otherwise).
//!
//! Output is streamed to any [`Write`]; memory is bounded by the largest key (its names and
//! values), not by the hive. Every key, value list, value and data cell is visited at most once
//! (a bitmap over cell offsets), so a hive whose lists form a cycle or share cells gives an
//! error instead of endless or multiplied output.

use std::io::Write;

use crate::base::NIL;
use crate::error::Result;
use crate::hive::{corrupt, reg_type, Hive, Key, Storage, MAX_DEPTH};

/// Which `.reg` dialect to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// regedit.exe's layout (on-disk order, strings as text, wrapped hex).
    #[default]
    Regedit,
    /// Byte-identical to `hivexregedit --export`.
    Hivex,
}

/// Export settings.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// The dialect.
    pub format: Format,
    /// Prefix for every key path, e.g. `HKEY_LOCAL_MACHINE\SYSTEM` (a trailing `\` is dropped).
    /// Regedit format: the root key is `[PREFIX]`, a subkey `[PREFIX\A\B]`; with no prefix
    /// `[\]` and `[\A\B]`. Hivex format: like hivexregedit's `--prefix` (root `[PREFIX\]`).
    pub prefix: Option<String>,
    /// Regedit format only: write UTF-16LE with a BOM and CRLF line ends, like regedit.exe.
    pub utf16: bool,
}

/// Exports the key at `path` (relative to the root, `\`-separated, case-insensitive; `""` or
/// `\` = the whole hive) and everything below it, header included.
pub fn export<W: Write>(hive: &Hive<'_>, path: &str, opts: &ExportOptions, out: W) -> Result<()> {
    let mut key = hive.root()?;
    let mut names: Vec<String> = Vec::new();
    for part in path.split(['\\', '/']).filter(|p| !p.is_empty()) {
        key = key
            .subkey(part)?
            .ok_or_else(|| crate::Error::NotFound(format!("key {path}")))?;
        names.push(key.name());
    }
    export_key(&key, &names, opts, out)
}

/// Exports `key` and its subtree; `path` holds the stored names from the root down to `key`
/// (empty for the root).
pub fn export_key<W: Write>(
    key: &Key<'_>,
    path: &[String],
    opts: &ExportOptions,
    out: W,
) -> Result<()> {
    let mut ex = Exporter {
        out: Sink {
            w: out,
            utf16: opts.utf16 && opts.format == Format::Regedit,
        },
        format: opts.format,
        prefix: opts
            .prefix
            .as_deref()
            .map(|p| p.strip_suffix('\\').unwrap_or(p).to_string()),
        seen: vec![0u64; key.hive().bins().len() / 8 / 64 + 1],
        path: path.to_vec(),
    };
    if ex.out.utf16 {
        ex.out.w.write_all(&[0xFF, 0xFE])?;
    }
    ex.out.text("Windows Registry Editor Version 5.00\n\n")?;
    ex.key(key, 0)?;
    ex.out.w.flush()?;
    Ok(())
}

struct Sink<W: Write> {
    w: W,
    utf16: bool,
}

impl<W: Write> Sink<W> {
    /// Writes text (UTF-8, or UTF-16LE with CRLF).
    fn text(&mut self, s: &str) -> Result<()> {
        if self.utf16 {
            let mut buf = Vec::with_capacity(s.len() * 2 + 8);
            for u in s.encode_utf16() {
                if u == u16::from(b'\n') {
                    buf.extend_from_slice(&[b'\r', 0]);
                }
                buf.extend_from_slice(&u.to_le_bytes());
            }
            self.w.write_all(&buf)?;
        } else {
            self.w.write_all(s.as_bytes())?;
        }
        Ok(())
    }

    /// Writes a string the way Perl prints a character string to a raw handle: Latin-1 bytes
    /// when every character is ≤ U+00FF, else UTF-8.
    fn perl(&mut self, s: &str) -> Result<()> {
        if s.chars().all(|c| u32::from(c) <= 0xFF) {
            let bytes: Vec<u8> = s.chars().map(|c| u32::from(c) as u8).collect();
            self.w.write_all(&bytes)?;
        } else {
            self.w.write_all(s.as_bytes())?;
        }
        Ok(())
    }
}

struct Exporter<W: Write> {
    out: Sink<W>,
    format: Format,
    prefix: Option<String>,
    seen: Vec<u64>,
    path: Vec<String>,
}

/// `\` → `\\`, `"` → `\"`.
fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if c == '\\' || c == '"' {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

impl<W: Write> Exporter<W> {
    /// Marks a cell as exported; a second visit is an error (a cycle, or structures shared
    /// between keys or values, which would multiply the output). Offsets the reader will reject
    /// anyway (unaligned, outside the bins) are left to its precise error.
    fn mark(&mut self, off: u32, what: &str) -> Result<()> {
        if !off.is_multiple_of(8) {
            return Ok(());
        }
        let i = (off / 8) as usize;
        let (w, b) = (i / 64, i % 64);
        match self.seen.get_mut(w) {
            Some(word) if *word & (1 << b) != 0 => Err(corrupt(
                off,
                format!("{what} reached twice while exporting (cycle or shared cell)"),
            )),
            Some(word) => {
                *word |= 1 << b;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Marks a value's vk and data cells.
    fn mark_value(&mut self, v: &crate::Value<'_>) -> Result<()> {
        self.mark(v.offset(), "value")?;
        match v.storage() {
            Storage::Cell(o) | Storage::BigData(o) if v.data_size() > 0 => {
                self.mark(o, "value data")
            }
            _ => Ok(()),
        }
    }

    /// Marks a key's value list.
    fn mark_value_list(&mut self, key: &Key<'_>) -> Result<()> {
        if key.value_count() > 0 && key.value_list_offset() != NIL {
            self.mark(key.value_list_offset(), "value list")?;
        }
        Ok(())
    }

    fn key(&mut self, key: &Key<'_>, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(corrupt(
                key.offset(),
                format!("key tree deeper than {MAX_DEPTH}"),
            ));
        }
        self.mark(key.offset(), "key")?;
        self.mark_value_list(key)?;
        match self.format {
            Format::Hivex => self.hivex_key(key)?,
            Format::Regedit => self.regedit_key(key)?,
        }
        let mut children: Vec<(String, Key<'_>)> = Vec::new();
        for sub in key.subkeys()? {
            let sub = sub?;
            children.push((sub.name(), sub));
        }
        if self.format == Format::Hivex {
            // Perl `cmp` on character strings: code point order (stable sort).
            children.sort_by(|a, b| a.0.cmp(&b.0));
        }
        for (name, sub) in children {
            self.path.push(name);
            let r = self.key(&sub, depth + 1);
            self.path.pop();
            r?;
        }
        Ok(())
    }

    fn hivex_key(&mut self, key: &Key<'_>) -> Result<()> {
        self.out.text("[")?;
        if let Some(p) = &self.prefix {
            let p = p.clone();
            self.out.perl(&p)?;
        }
        let path = if self.path.is_empty() {
            "\\".to_string()
        } else {
            let mut s = String::new();
            for n in &self.path {
                s.push('\\');
                s.push_str(n);
            }
            s
        };
        self.out.perl(&path)?;
        self.out.text("]\n")?;
        let mut values = Vec::new();
        for v in key.values()? {
            let v = v?;
            self.mark_value(&v)?;
            let data = v.data_lossy()?;
            values.push((v.name(), v.data_type(), data));
        }
        values.sort_by(|a, b| a.0.cmp(&b.0));
        let mut line = String::new();
        for (name, ty, data) in values {
            if name.is_empty() {
                self.out.text("@=")?;
            } else {
                self.out.text("\"")?;
                self.out.perl(&escape(&name))?;
                self.out.text("\"=")?;
            }
            line.clear();
            if ty == reg_type::DWORD && data.len() == 4 {
                let d = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                line.push_str(&format!("dword:{d:08x}\n"));
            } else {
                line.push_str(&format!("hex({ty:x}):"));
                push_hex_list(&mut line, &data);
                line.push('\n');
            }
            self.out.text(&line)?;
        }
        self.out.text("\n")
    }

    fn regedit_key(&mut self, key: &Key<'_>) -> Result<()> {
        let mut head = String::from("[");
        match &self.prefix {
            Some(p) => head.push_str(p),
            None if self.path.is_empty() => head.push('\\'),
            None => {}
        }
        for n in &self.path {
            head.push('\\');
            head.push_str(n);
        }
        head.push_str("]\n");
        self.out.text(&head)?;
        let mut line = String::new();
        for v in key.values()? {
            let v = v?;
            self.mark_value(&v)?;
            let data = v.data_lossy()?;
            line.clear();
            let name = v.name();
            if name.is_empty() {
                line.push('@');
            } else {
                line.push('"');
                line.push_str(&escape(&name));
                line.push('"');
            }
            line.push('=');
            regedit_data(&mut line, v.data_type(), &data);
            line.push('\n');
            self.out.text(&line)?;
        }
        self.out.text("\n")
    }
}

fn push_hex_list(line: &mut String, data: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    line.reserve(data.len() * 3);
    for (i, b) in data.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        line.push(char::from(HEX[usize::from(b >> 4)]));
        line.push(char::from(HEX[usize::from(b & 15)]));
    }
}

/// A `REG_SZ` that regedit can show as text: even length, exactly one terminating NUL at the
/// end, no other NUL, no CR/LF, valid UTF-16.
fn clean_sz(data: &[u8]) -> Option<String> {
    if data.len() < 2 || !data.len().is_multiple_of(2) {
        return None;
    }
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let (last, body) = units.split_last()?;
    if *last != 0 || body.iter().any(|&u| u == 0 || u == 10 || u == 13) {
        return None;
    }
    String::from_utf16(body).ok()
}

/// Appends the data part of a regedit value line (after `=`), wrapping hex at 80 columns.
fn regedit_data(line: &mut String, ty: u32, data: &[u8]) {
    if ty == reg_type::SZ {
        if let Some(s) = clean_sz(data) {
            line.push('"');
            line.push_str(&escape(&s));
            line.push('"');
            return;
        }
    }
    if ty == reg_type::DWORD && data.len() == 4 {
        let d = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        line.push_str(&format!("dword:{d:08x}"));
        return;
    }
    if ty == reg_type::BINARY {
        line.push_str("hex:");
    } else {
        line.push_str(&format!("hex({ty:x}):"));
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut col = line.chars().count();
    for (i, b) in data.iter().enumerate() {
        line.push(char::from(HEX[usize::from(b >> 4)]));
        line.push(char::from(HEX[usize::from(b & 15)]));
        col += 2;
        if i + 1 < data.len() {
            line.push(',');
            col += 1;
            if col > 76 {
                line.push_str("\\\n  ");
                col = 2;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_hex_at_80_columns() {
        let mut l = String::from("\"x\"=");
        regedit_data(&mut l, 3, &[0xAB; 100]);
        for line in l.lines() {
            assert!(line.len() <= 80, "{line:?}");
        }
        assert!(l.starts_with("\"x\"=hex:ab,ab"));
        let bytes: usize = l.matches("ab").count();
        assert_eq!(bytes, 100);
    }

    #[test]
    fn strings_and_escapes() {
        let mut l = String::new();
        regedit_data(&mut l, 1, &crate::hive::encode_sz("a\"b\\c"));
        assert_eq!(l, r#""a\"b\\c""#);
        let mut l = String::new();
        regedit_data(&mut l, 1, b"a\0");
        assert_eq!(l, "hex(1):61,00");
        assert_eq!(clean_sz(b"a\0\0\0"), Some("a".into()));
        assert_eq!(clean_sz(b"a\0\0\0\0\0"), None);
    }
}
