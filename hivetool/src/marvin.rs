// SPDX-License-Identifier: MIT OR Apache-2.0
//! Marvin32, the keyed hash Windows uses for the two integrity hashes of a new-format
//! transaction-log entry (`HvLE`, see [`crate::log`]).
//!
//! The state is two 32-bit words: `p0` starts as the low half of the seed, `p1` as the high
//! half. Every full little-endian 32-bit word `w` of the input does `p0 += w; mix()`. The last
//! 0–3 bytes are padded with a `0x80` end marker into one more word (`0x80`, `0x8000 | b0`,
//! `0x800000 | u16le(b0, b1)`, `0x80000000 | b2 << 16 | u16le(b0, b1)`), added to `p0`, and
//! then `mix()` runs twice. The result is `p1 << 32 | p0`.
//!
//! `mix()`: `p1 ^= p0; p0 = rotl(p0, 20) + p1; p1 = rotl(p1, 9) ^ p0; p0 = rotl(p0, 27) + p1;
//! p1 = rotl(p1, 19)` with wrapping additions.

/// The seed Windows uses for registry log entries.
pub const REGISTRY_SEED: u64 = 0x82EF_4D88_7A4E_55C5;

#[inline]
fn mix(p0: &mut u32, p1: &mut u32) {
    *p1 ^= *p0;
    *p0 = p0.rotate_left(20).wrapping_add(*p1);
    *p1 = p1.rotate_left(9) ^ *p0;
    *p0 = p0.rotate_left(27).wrapping_add(*p1);
    *p1 = p1.rotate_left(19);
}

/// Marvin32 of `data` with an arbitrary 64-bit `seed`.
pub fn marvin32(seed: u64, data: &[u8]) -> u64 {
    let mut p0 = seed as u32;
    let mut p1 = (seed >> 32) as u32;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        p0 = p0.wrapping_add(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        mix(&mut p0, &mut p1);
    }
    let last = match *words.remainder() {
        [] => 0x80,
        [b0] => 0x8000 | u32::from(b0),
        [b0, b1] => 0x80_0000 | u32::from(u16::from_le_bytes([b0, b1])),
        [b0, b1, b2, ..] => {
            0x8000_0000 | (u32::from(b2) << 16) | u32::from(u16::from_le_bytes([b0, b1]))
        }
    };
    p0 = p0.wrapping_add(last);
    mix(&mut p0, &mut p1);
    mix(&mut p0, &mut p1);
    (u64::from(p1) << 32) | u64::from(p0)
}

/// Marvin32 of `data` with the registry seed ([`REGISTRY_SEED`]).
pub fn registry_hash(data: &[u8]) -> u64 {
    marvin32(REGISTRY_SEED, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference implementation written independently from the description in the module
    /// docs: processes the input byte by byte into a padded buffer.
    fn reference(seed: u64, data: &[u8]) -> u64 {
        let mut buf = data.to_vec();
        buf.push(0x80);
        while !buf.len().is_multiple_of(4) {
            buf.push(0);
        }
        let (mut a, mut b) = (seed as u32, (seed >> 32) as u32);
        let n = buf.len() / 4;
        for (i, w) in buf.chunks(4).enumerate() {
            a = a.wrapping_add(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
            mix(&mut a, &mut b);
            if i + 1 == n {
                mix(&mut a, &mut b);
            }
        }
        (u64::from(b) << 32) | u64::from(a)
    }

    #[test]
    fn tail_encodings_match_padding_reference() {
        let data: Vec<u8> = (0..64u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        for len in 0..data.len() {
            assert_eq!(
                registry_hash(&data[..len]),
                reference(REGISTRY_SEED, &data[..len]),
                "len {len}"
            );
        }
    }

    #[test]
    fn empty_input_value() {
        // Computed by hand from the definition: p0 = seed_lo + 0x80, then two mixes.
        let (mut p0, mut p1) = (0x7A4E_55C5u32.wrapping_add(0x80), 0x82EF_4D88u32);
        mix(&mut p0, &mut p1);
        mix(&mut p0, &mut p1);
        assert_eq!(registry_hash(&[]), (u64::from(p1) << 32) | u64::from(p0));
    }

    #[test]
    fn seed_halves_are_not_swapped() {
        assert_ne!(
            marvin32(REGISTRY_SEED, b"abcd"),
            marvin32(REGISTRY_SEED.rotate_left(32), b"abcd")
        );
    }

    #[test]
    fn known_vectors() {
        // Computed with an independent Python prototype of the same definition, which
        // reproduces every Hash-1/Hash-2 of the corpus logs (see tests/logs.rs).
        assert_eq!(registry_hash(b""), 0xb39e_fca4_0396_6e08);
        assert_eq!(registry_hash(b"hello"), 0x0b53_503c_1b83_f45c);
        assert_eq!(registry_hash(b"abcdefg"), 0x0c00_597a_c6bf_45f2);
    }
}
