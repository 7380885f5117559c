// SPDX-License-Identifier: MIT OR Apache-2.0
//! `sfdisk -d` dumps, in the format util-linux 2.38 prints them.
//!
//! Header lines `label`, `label-id`, `device`, `unit`, (GPT: `first-lba`, `last-lba`,
//! `table-length` when not 128), `sector-size`, a blank line, then one line per partition:
//! `<dev><n> : start=%12u, size=%12u, type=...` (MBR: hex type byte and `, bootable`; GPT:
//! upper-case type GUID, `uuid=`, `name="..."` with `"`, `\`, `` ` ``, `$` and non-printable
//! bytes as `\xNN`, `attrs="..."`). Partition device names get a `p` when the device name ends
//! with a digit (`/dev/loop0p1`), as libfdisk does.

use super::{PartitionTable, Role, Scheme};
use std::fmt::Write as _;

/// Partition device name as libfdisk builds it.
pub(crate) fn part_name(device: &str, n: u32) -> String {
    let sep = if device.ends_with(|c: char| c.is_ascii_digit()) {
        "p"
    } else {
        ""
    };
    format!("{device}{sep}{n}")
}

/// libfdisk's `fputs_quoted`.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for &b in s.as_bytes() {
        if b == b'"' || b == b'\\' || b == b'`' || b == b'$' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02x}");
        } else {
            out.push(char::from(b));
        }
    }
    out.push('"');
    out
}

/// libfdisk's GPT attribute string.
fn attrs(a: u64) -> String {
    let mut parts: Vec<String> = Vec::new();
    if a & 1 != 0 {
        parts.push("RequiredPartition".into());
    }
    if a & 2 != 0 {
        parts.push("NoBlockIOProtocol".into());
    }
    if a & 4 != 0 {
        parts.push("LegacyBIOSBootable".into());
    }
    let guid_bits: Vec<String> = (48..64)
        .filter(|b| a & (1u64 << b) != 0)
        .map(|b| b.to_string())
        .collect();
    if !guid_bits.is_empty() {
        parts.push(format!("GUID:{}", guid_bits.join(",")));
    }
    parts.join(" ")
}

pub(crate) fn dump(t: &PartitionTable, device: &str) -> String {
    let mut s = String::new();
    let gpt = if t.scheme == Scheme::Gpt {
        t.gpt.as_ref()
    } else {
        None
    };
    let _ = writeln!(s, "label: {}", if gpt.is_some() { "gpt" } else { "dos" });
    let _ = writeln!(s, "label-id: {}", t.label_id());
    let _ = writeln!(s, "device: {device}");
    let _ = writeln!(s, "unit: sectors");
    if let Some(g) = gpt {
        let _ = writeln!(s, "first-lba: {}", g.header.first_usable);
        let _ = writeln!(s, "last-lba: {}", g.header.last_usable);
        if g.header.num_entries != 128 {
            let _ = writeln!(s, "table-length: {}", g.header.num_entries);
        }
    }
    let _ = writeln!(s, "sector-size: {}", t.sector_size);
    s.push('\n');
    for p in &t.partitions {
        let _ = write!(
            s,
            "{} : start={:>12}, size={:>12}, type=",
            part_name(device, p.index),
            p.start_lba,
            p.sectors
        );
        match (p.role, p.mbr_type, p.type_guid) {
            (Role::Gpt, _, Some(g)) => {
                let _ = write!(s, "{g}");
                if let Some(u) = p.guid {
                    let _ = write!(s, ", uuid={u}");
                }
                if let Some(n) = &p.name {
                    let _ = write!(s, ", name={}", quoted(n));
                }
                let a = attrs(p.attributes);
                if !a.is_empty() {
                    let _ = write!(s, ", attrs=\"{a}\"");
                }
            }
            (_, Some(ty), _) => {
                let _ = write!(s, "{ty:x}");
                if p.bootable {
                    s.push_str(", bootable");
                }
            }
            _ => {}
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_quoting() {
        assert_eq!(part_name("/dev/loop0", 1), "/dev/loop0p1");
        assert_eq!(part_name("disk.img", 5), "disk.img5");
        assert_eq!(quoted("a\"b$"), "\"a\\x22b\\x24\"");
        assert_eq!(
            attrs(1 | (1 << 62) | (1 << 63)),
            "RequiredPartition GUID:62,63"
        );
    }
}
