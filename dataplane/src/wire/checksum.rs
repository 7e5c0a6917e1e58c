//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Owns the one's-complement arithmetic used by IPv4, ICMP, UDP and TCP. All
//! functions are pure, allocation-free and cannot panic for any input.
//!
//! Sums are carried as an unfolded `u32` so that several pieces (a pseudo
//! header, a header, a payload) can be added with [`combine`] and folded once:
//! `!fold(combine(pseudo_header_v4(..), sum(segment)))`.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

/// One's-complement accumulation of `data` as 16-bit big-endian words; an odd
/// trailing byte is padded with a zero byte. The result is not folded: it is
/// congruent to the one's-complement sum modulo 0xffff and is zero only if
/// every byte is zero.
pub fn sum(data: &[u8]) -> u32 {
    // Summing 32-bit words is equivalent modulo 0xffff (2^16 = 1 mod 0xffff)
    // and halves the work; a u64 accumulator cannot overflow for any slice a
    // machine can hold in practice (2^32 words of at most 2^32 each).
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        acc += u64::from(u16::from_be_bytes([rest[i], rest[i + 1]]));
        i += 2;
    }
    if i < rest.len() {
        acc += u64::from(rest[i]) << 8;
    }
    fold64(acc)
}

/// Folds a 64-bit accumulator to an unfolded 32-bit sum, keeping the
/// end-around carries: two steps always suffice (after the first the value
/// is at most `2^33 - 2`, after the second at most `2^32 - 1`).
#[inline(always)]
fn fold64(acc: u64) -> u32 {
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    ((acc & 0xffff_ffff) + (acc >> 32)) as u32
}

/// [`sum`] of a buffer whose length is known at compile time (a fixed
/// header): the same value, with the loop unrolled and no bounds checks.
#[inline(always)]
pub fn sum_array<const N: usize>(data: &[u8; N]) -> u32 {
    let mut acc: u64 = 0;
    let mut i = 0;
    while i + 4 <= N {
        acc += u64::from(u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]));
        i += 4;
    }
    if i + 2 <= N {
        acc += u64::from(u16::from_be_bytes([data[i], data[i + 1]]));
        i += 2;
    }
    if i < N {
        acc += u64::from(data[i]) << 8;
    }
    fold64(acc)
}

/// Adds two unfolded sums with end-around carry, so the result stays a valid
/// unfolded sum even if the plain addition would overflow.
#[inline]
pub fn combine(a: u32, b: u32) -> u32 {
    let (s, carry) = a.overflowing_add(b);
    // On overflow s <= 2^32 - 2, so adding the carry cannot overflow again.
    s + u32::from(carry)
}

/// Folds the carries of an unfolded sum into 16 bits. Not complemented.
/// Two end-around-carry steps always suffice (after the first the value is
/// at most 0x1fffe); a step on a value below 0x10000 leaves it as it is, so
/// the result is the same as folding until no carry is left.
#[inline]
pub fn fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    ((s & 0xffff) + (s >> 16)) as u16
}

/// The Internet checksum of `data`: `!fold(sum(data))`.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// Unfolded sum of the IPv4 pseudo header used by UDP and TCP:
/// source, destination, zero, protocol, and the L4 length.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u32 {
    let s = src.octets();
    let d = dst.octets();
    u32::from(u16::from_be_bytes([s[0], s[1]]))
        + u32::from(u16::from_be_bytes([s[2], s[3]]))
        + u32::from(u16::from_be_bytes([d[0], d[1]]))
        + u32::from(u16::from_be_bytes([d[2], d[3]]))
        + u32::from(protocol)
        + u32::from(length)
}

/// Incrementally updates `checksum` after a 16-bit word of the covered data
/// changed from `old` to `new` (RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`).
///
/// For a checksum that was computed over the data (as [`checksum`] does), the
/// result equals a full recomputation bit for bit, with one exception
/// inherent to eqn. 3: if the updated data is entirely zero the result is
/// 0x0000 where a recomputation gives 0xffff (the other one's-complement
/// zero). No real IPv4/ICMP/UDP/TCP header is all zero.
#[inline]
pub fn update16(checksum: u16, old: u16, new: u16) -> u16 {
    let s = u32::from(!checksum) + u32::from(!old) + u32::from(new);
    !fold(s)
}

/// As [`update16`], for a 32-bit field (e.g. an IPv4 address) that changed
/// from `old` to `new`.
#[inline]
pub fn update32(checksum: u16, old: u32, new: u32) -> u16 {
    let s =
        u32::from(!checksum) + u32::from(!(old >> 16) as u16) + u32::from(!(old as u16)) + (new >> 16) + (new & 0xffff);
    !fold(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::XorShift;

    /// The textbook byte-at-a-time reference.
    fn reference_sum(data: &[u8]) -> u32 {
        let mut s: u32 = 0;
        let mut i = 0;
        while i < data.len() {
            let hi = u32::from(data[i]) << 8;
            let lo = data.get(i + 1).copied().map_or(0, u32::from);
            s += hi | lo;
            while s >> 16 != 0 {
                s = (s & 0xffff) + (s >> 16);
            }
            i += 2;
        }
        s
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
        assert_eq!(sum(&[]), 0);
        assert_eq!(checksum(&[]), 0xffff);
    }

    #[test]
    fn ipv4_header_example() {
        // Header of the PING fixture used in ipv4.rs, with its checksum zeroed.
        let mut h = [
            0x45, 0x00, 0x00, 0x54, 0xbe, 0xef, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00,
            0x00, 0x02,
        ];
        assert_eq!(checksum(&h), 0x67b7);
        h[10] = 0x67;
        h[11] = 0xb7;
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn sum_matches_reference() {
        let mut rng = XorShift(1);
        let mut buf = [0u8; 300];
        for _ in 0..5_000 {
            let len = rng.below(buf.len() + 1);
            rng.fill(&mut buf[..len]);
            if rng.below(4) == 0 {
                // Lots of 0xff to exercise carries.
                for b in &mut buf[..len] {
                    if rng.below(2) == 0 {
                        *b = 0xff;
                    }
                }
            }
            let d = &buf[..len];
            assert_eq!(fold(sum(d)), fold(reference_sum(d)), "{d:02x?}");
        }
        assert_eq!(fold(sum(&[0xff; 1000])), 0xffff);
        assert_eq!(fold(sum(&[0; 1000])), 0);
    }

    /// The loop every fold used to be: carries folded until none is left.
    fn fold_loop(sum: u32) -> u16 {
        let mut s = sum;
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn fold_matches_loop() {
        let mut rng = XorShift(7);
        for s in [0, 1, 0xffff, 0x1_0000, 0x1_fffe, 0x1_ffff, 0xffff_0000, 0xfffe_ffff, u32::MAX - 1, u32::MAX] {
            assert_eq!(fold(s), fold_loop(s), "{s:#x}");
        }
        for _ in 0..100_000 {
            let s = rng.next_u64() as u32;
            assert_eq!(fold(s), fold_loop(s), "{s:#x}");
        }
    }

    #[test]
    fn sum_array_matches_sum() {
        fn check<const N: usize>(rng: &mut XorShift) {
            let mut d = [0u8; N];
            for round in 0..2_000 {
                match round % 4 {
                    0 => d.fill(0xff),
                    1 => d.fill(0),
                    _ => rng.fill(&mut d),
                }
                assert_eq!(sum_array(&d), sum(&d), "{d:02x?}");
            }
        }
        let mut rng = XorShift(11);
        check::<0>(&mut rng);
        check::<1>(&mut rng);
        check::<2>(&mut rng);
        check::<3>(&mut rng);
        check::<8>(&mut rng);
        check::<20>(&mut rng);
        check::<23>(&mut rng);
        check::<60>(&mut rng);
    }

    #[test]
    fn fold_and_combine() {
        assert_eq!(fold(0), 0);
        assert_eq!(fold(0xffff), 0xffff);
        assert_eq!(fold(0x1_0000), 1);
        assert_eq!(fold(0x1_fffe), 0xffff);
        assert_eq!(fold(u32::MAX), 0xffff);
        assert_eq!(fold(combine(u32::MAX, 1)), fold(1));
        assert_eq!(fold(combine(u32::MAX, u32::MAX)), 0xffff);
        assert_eq!(combine(5, 7), 12);
    }

    #[test]
    fn pseudo_header() {
        let src = Ipv4Addr::new(192, 168, 1, 2);
        let dst = Ipv4Addr::new(8, 8, 8, 8);
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&src.octets());
        bytes[4..8].copy_from_slice(&dst.octets());
        bytes[9] = 17;
        bytes[10..].copy_from_slice(&37u16.to_be_bytes());
        assert_eq!(fold(pseudo_header_v4(src, dst, 17, 37)), fold(sum(&bytes)));
        let m = Ipv4Addr::new(255, 255, 255, 255);
        assert_eq!(
            fold(pseudo_header_v4(m, m, 255, 0xffff)),
            fold(sum(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0xff]))
        );
    }

    /// Replaces the word at `at`, returning the old value.
    fn put16(d: &mut [u8], at: usize, v: u16) -> u16 {
        let old = u16::from_be_bytes([d[at], d[at + 1]]);
        d[at..at + 2].copy_from_slice(&v.to_be_bytes());
        old
    }

    fn put32(d: &mut [u8], at: usize, v: u32) -> u32 {
        let old = u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]]);
        d[at..at + 4].copy_from_slice(&v.to_be_bytes());
        old
    }

    fn interesting16(rng: &mut XorShift) -> u16 {
        match rng.below(6) {
            0 => 0x0000,
            1 => 0xffff,
            2 => 0x0001,
            3 => 0xfffe,
            _ => rng.next_u64() as u16,
        }
    }

    /// Random data, often shaped so the checksum is 0x0000 or the data sums
    /// to one of the edge values.
    fn random_data(rng: &mut XorShift, d: &mut [u8]) {
        match rng.below(5) {
            0 => d.fill(0),
            1 => d.fill(0xff),
            2 => {
                // All zero except one word, which is set so the sum is 0xffff
                // (checksum 0x0000) after the random part.
                rng.fill(d);
                let s = fold(sum(&d[2..]));
                put16(d, 0, !s);
            }
            _ => rng.fill(d),
        }
    }

    fn equivalent(incremental: u16, full: u16, data: &[u8]) {
        if data.iter().all(|&b| b == 0) {
            // The documented exception: both are one's-complement zero.
            assert!(incremental == 0 || incremental == 0xffff);
            assert_eq!(full, 0xffff);
        } else {
            assert_eq!(incremental, full, "data {data:02x?}");
        }
    }

    #[test]
    fn update16_matches_recomputation() {
        let mut rng = XorShift(0xdead_beef);
        let mut d = [0u8; 20];
        let mut seen_zero = false;
        let mut seen_ffff_word = false;
        for _ in 0..50_000 {
            random_data(&mut rng, &mut d);
            let hc = checksum(&d);
            let at = 2 * rng.below(d.len() / 2);
            let new = interesting16(&mut rng);
            let old = put16(&mut d, at, new);
            seen_ffff_word |= old == 0xffff || new == 0xffff;
            let full = checksum(&d);
            seen_zero |= full == 0;
            equivalent(update16(hc, old, new), full, &d);
        }
        assert!(seen_zero && seen_ffff_word);
    }

    #[test]
    fn update16_corner_cases() {
        // Data whose checksum is 0x0000 (sum 0xffff) going to and from it.
        let mut d = [0x12, 0x34, 0xed, 0xcb, 0x00, 0x00];
        assert_eq!(checksum(&d), 0x0000);
        let hc = checksum(&d);
        let old = put16(&mut d, 4, 0xffff);
        assert_eq!(update16(hc, old, 0xffff), checksum(&d));
        let hc2 = checksum(&d);
        put16(&mut d, 4, 0x0000);
        assert_eq!(update16(hc2, 0xffff, 0x0000), 0x0000);
        // No-op update leaves the checksum alone.
        for hc in [0x0000, 0x0001, 0x8000, 0xfffe] {
            for w in [0x0000, 0xffff, 0x1234] {
                assert_eq!(update16(hc, w, w), hc, "hc {hc:04x} w {w:04x}");
            }
        }
        // 0x0000 <-> 0xffff words are equivalent one's-complement zeros and
        // therefore do not change a checksum over otherwise non-zero data.
        let d = [0x45, 0x00, 0x00, 0x00];
        let hc = checksum(&d);
        assert_eq!(update16(hc, 0x0000, 0xffff), hc);
    }

    #[test]
    fn update32_matches_recomputation() {
        let mut rng = XorShift(42);
        let mut d = [0u8; 24];
        for _ in 0..50_000 {
            random_data(&mut rng, &mut d);
            let hc = checksum(&d);
            let at = 2 * rng.below(d.len() / 2 - 1);
            let new = match rng.below(5) {
                0 => 0,
                1 => u32::MAX,
                2 => 0xffff_0000,
                3 => 0x0000_ffff,
                _ => rng.next_u64() as u32,
            };
            let old = put32(&mut d, at, new);
            equivalent(update32(hc, old, new), checksum(&d), &d);
            // Same as two 16-bit updates.
            let two = update16(update16(hc, (old >> 16) as u16, (new >> 16) as u16), old as u16, new as u16);
            equivalent(two, checksum(&d), &d);
        }
    }
}
