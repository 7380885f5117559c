// SPDX-License-Identifier: MIT OR Apache-2.0
//! Byte patches: "write these bytes at this absolute offset".
//!
//! Shared by the copy planner ([`crate::range`]), the patch journal and the streaming copier.
//! A patch is applied on the fly while streaming (the copier overlays the bytes onto the data it
//! writes) or in place on an image.

use serde::Serialize;

/// Bytes to write at an absolute byte offset of the output (or image).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Patch {
    /// Absolute byte offset where `bytes` start.
    pub offset: u64,
    /// The bytes to write (JSON: a lower-case hex string).
    #[serde(serialize_with = "hex")]
    pub bytes: Vec<u8>,
}

fn hex<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    s.serialize_str(&out)
}

impl Patch {
    /// A patch writing `bytes` at `offset`.
    pub fn new(offset: u64, bytes: Vec<u8>) -> Self {
        Patch { offset, bytes }
    }

    /// Length of the patch in bytes.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// True if the patch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// One past the last byte written (`None` on overflow).
    pub fn end(&self) -> Option<u64> {
        self.offset.checked_add(self.len())
    }

    /// Overlays the part of this patch that falls into `buf`, where `buf` holds the bytes
    /// starting at absolute offset `buf_offset`. Returns how many bytes were overlaid.
    pub fn apply_to(&self, buf: &mut [u8], buf_offset: u64) -> usize {
        let Some(pend) = self.end() else { return 0 };
        let Some(bend) = buf_offset.checked_add(buf.len() as u64) else {
            return 0;
        };
        let start = self.offset.max(buf_offset);
        let end = pend.min(bend);
        if start >= end {
            return 0;
        }
        // All differences below are < buf.len() / bytes.len(), so they fit in usize.
        let (Ok(b0), Ok(p0), Ok(n)) = (
            usize::try_from(start - buf_offset),
            usize::try_from(start - self.offset),
            usize::try_from(end - start),
        ) else {
            return 0;
        };
        match (buf.get_mut(b0..b0 + n), self.bytes.get(p0..p0 + n)) {
            (Some(dst), Some(src)) => {
                dst.copy_from_slice(src);
                n
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_partial_overlap() {
        let p = Patch::new(10, vec![1, 2, 3, 4]);
        let mut buf = [0u8; 4];
        assert_eq!(p.apply_to(&mut buf, 12), 2);
        assert_eq!(buf, [3, 4, 0, 0]);
        let mut buf = [0u8; 4];
        assert_eq!(p.apply_to(&mut buf, 8), 2);
        assert_eq!(buf, [0, 0, 1, 2]);
        assert_eq!(p.apply_to(&mut buf, 100), 0);
        assert_eq!(p.end(), Some(14));
    }

    #[test]
    fn json_is_hex() {
        let p = Patch::new(7, vec![0xAB, 0x01]);
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"offset":7,"bytes":"ab01"}"#
        );
    }
}
