//! SCTP packets (RFC 9260), common header only.
//!
//! Owns the 12-byte SCTP common header (ports, verification tag, checksum)
//! and the CRC32c checksum (RFC 9260 Appendix A, RFC 3309). The chunks after
//! the header are opaque bytes. SCTP has no length field: the packet is the
//! whole buffer, so pass exactly the IPv4 payload (IPv4 protocol
//! [`super::ipv4::protocol::SCTP`]).
//!
//! # The checksum
//!
//! The checksum is the CRC32c (Castagnoli) of the whole packet, common header
//! and all chunks, computed with the checksum field set to zero. On the wire
//! the 32-bit CRC is stored **little-endian** (`crc.to_le_bytes()`), unlike
//! every other field; [`Packet::checksum`] and [`Packet::set_checksum`] take
//! care of that, so `checksum()` of a correct packet equals the CRC value.
//!
//! There is no pseudo header. For Service NAT this means:
//!
//! * rewriting IP **addresses** leaves the SCTP checksum valid (only the IPv4
//!   header checksum changes);
//! * rewriting a **port** invalidates it, and, unlike the Internet checksum,
//!   a CRC cannot be patched cheaply from the old and new field values: call
//!   [`Packet::fill_checksum`] after the rewrite, which recomputes the CRC
//!   over the whole packet (cost linear in the packet length).
//!
//! [`Packet::fill_checksum`] and [`Packet::verify_checksum`] need the whole
//! packet in one buffer. For a packet split over several segments, feed the
//! segments to [`crc32c_append`] in order (with the checksum bytes zeroed).
//!
//! Promise: once [`Packet::new_checked`] has accepted a buffer (length >= 12),
//! no accessor or setter of that `Packet` can panic. `payload()`,
//! `payload_mut()` and the checksum functions never panic on any buffer.
#![forbid(unsafe_code)]

use super::{clamped, clamped_mut, read_u16, read_u32, write_u16, write_u32, WireError};

mod field {
    use std::ops::Range;
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const VERIFICATION_TAG: usize = 4;
    pub const CHECKSUM: Range<usize> = 8..12;
}

/// Length of the SCTP common header.
pub const HEADER_LEN: usize = 12;

/// The reflected CRC32c (Castagnoli) polynomial.
const CRC32C_POLY: u32 = 0x82f6_3b78;

/// Slicing-by-8 tables: `CRC_TABLE[0]` is the classic byte-at-a-time table,
/// `CRC_TABLE[k][b]` is the CRC state after byte `b` followed by `k` zero
/// bytes.
static CRC_TABLE: [[u32; 256]; 8] = crc_tables();

const fn crc_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ CRC32C_POLY } else { c >> 1 };
            bit += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

/// Advances the raw (not inverted) CRC register over `data`.
fn crc_update(mut crc: u32, data: &[u8]) -> u32 {
    let t = &CRC_TABLE;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = crc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        crc = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][usize::from(c[4])]
            ^ t[2][usize::from(c[5])]
            ^ t[1][usize::from(c[6])]
            ^ t[0][usize::from(c[7])];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ t[0][((crc ^ u32::from(b)) & 0xff) as usize];
    }
    crc
}

/// CRC32c (Castagnoli: reflected polynomial 0x82F63B78, initial value and
/// final xor `!0`) of `data`. `crc32c(b"123456789") == 0xE306_9283`.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c_append(0, data)
}

/// Continues a CRC32c: `crc32c_append(crc32c(a), b) == crc32c(a ++ b)`, and
/// `crc32c_append(0, b) == crc32c(b)`.
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    !crc_update(!crc, data)
}

/// A read/write view of an SCTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` after [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` if shorter than 12 bytes. The chunks are not looked at.
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    pub fn verification_tag(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::VERIFICATION_TAG)
    }

    /// The CRC32c value held in the checksum field (stored little-endian on
    /// the wire; this is the decoded value).
    pub fn checksum(&self) -> u32 {
        let d = self.buffer.as_ref();
        let c = field::CHECKSUM.start;
        u32::from_le_bytes([d[c], d[c + 1], d[c + 2], d[c + 3]])
    }

    /// The chunks: everything after the common header.
    pub fn payload(&self) -> &[u8] {
        let d = self.buffer.as_ref();
        clamped(d, HEADER_LEN, d.len())
    }

    /// CRC32c of the whole buffer with the checksum field taken as zero (the
    /// field is not modified). Bytes of the field that lie past the end of a
    /// short buffer are simply absent.
    pub fn compute_checksum(&self) -> u32 {
        let d = self.buffer.as_ref();
        let head = clamped(d, 0, field::CHECKSUM.start);
        let zeros = &[0u8; 4][..clamped(d, field::CHECKSUM.start, field::CHECKSUM.end).len()];
        let tail = clamped(d, field::CHECKSUM.end, d.len());
        let crc = crc_update(!0, head);
        let crc = crc_update(crc, zeros);
        !crc_update(crc, tail)
    }

    /// The checksum field matches the CRC32c of the whole buffer. False for
    /// a buffer shorter than the common header.
    pub fn verify_checksum(&self) -> bool {
        self.buffer.as_ref().len() >= HEADER_LEN && self.checksum() == self.compute_checksum()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    pub fn set_dst_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    pub fn set_verification_tag(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::VERIFICATION_TAG, value);
    }

    /// Writes a CRC32c value into the checksum field, little-endian.
    pub fn set_checksum(&mut self, value: u32) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_le_bytes());
    }

    /// The chunks, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let d = self.buffer.as_mut();
        let end = d.len();
        clamped_mut(d, HEADER_LEN, end)
    }

    /// Recomputes the CRC32c over the whole buffer and stores it. Call after
    /// any change to the packet, port rewrites included.
    pub fn fill_checksum(&mut self) {
        let c = self.compute_checksum();
        self.set_checksum(c);
    }
}

/// The decoded SCTP common header, checksum aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
    pub verification_tag: u32,
}

impl Repr {
    /// Reads a checked packet. The checksum is not verified.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Repr {
        Repr { src_port: packet.src_port(), dst_port: packet.dst_port(), verification_tag: packet.verification_tag() }
    }

    /// Writes ports and verification tag. The checksum field is not touched:
    /// put the chunks in place, then call [`Packet::fill_checksum`].
    /// `packet` must be at least 12 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_verification_tag(self.verification_tag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::XorShift;

    // SCTP INIT 5000 -> 36412, verification tag 0; INIT chunk: type 1,
    // flags 0, length 20, initiate tag 0x11223344, a_rwnd 65536, outbound
    // streams 10, inbound streams 65535, initial TSN 0x01020304.
    //
    // Checksum bytes f7 da 1f 26 (CRC32c 0x261fdaf7, little-endian on the
    // wire) were computed outside this crate with a bitwise CRC32c written
    // out in Python (`crc = 0xFFFFFFFF; for b: crc ^= b; 8x crc = (crc >> 1)
    // ^ (0x82F63B78 if crc & 1 else 0); crc ^ 0xFFFFFFFF`, itself checked
    // against the RFC 3720 B.4 vectors) over these 32 bytes with bytes 8..12
    // zeroed, then `struct.pack("<I", crc)`. The little-endian placement is
    // the one RFC 9260 Appendix A and RFC 3720 B.4 (e.g. 32 zero bytes ->
    // "aa 36 91 8a") specify.
    static INIT: [u8; 32] = [
        0x13, 0x88, 0x8e, 0x3c, 0x00, 0x00, 0x00, 0x00, 0xf7, 0xda, 0x1f, 0x26, 0x01, 0x00, 0x00, 0x14, 0x11, 0x22,
        0x33, 0x44, 0x00, 0x01, 0x00, 0x00, 0x00, 0x0a, 0xff, 0xff, 0x01, 0x02, 0x03, 0x04,
    ];

    /// Bit-at-a-time reference CRC32c.
    fn crc32c_bitwise(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn crc32c_vectors() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        // RFC 3720 B.4.
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        let asc: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c(&asc), 0x46dd_794e);
        let desc: Vec<u8> = (0u8..32).rev().collect();
        assert_eq!(crc32c(&desc), 0x113f_db5c);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn crc32c_matches_bitwise_and_appends() {
        let mut rng = XorShift(0x5c7b);
        let mut buf = [0u8; 300];
        rng.fill(&mut buf);
        for len in 0..buf.len() {
            let d = &buf[..len];
            let c = crc32c(d);
            assert_eq!(c, crc32c_bitwise(d), "len {len}");
            let split = rng.below(len + 1);
            assert_eq!(crc32c_append(crc32c(&d[..split]), &d[split..]), c, "len {len} split {split}");
        }
        // Every offset of the slicing-by-8 loop sees every byte value.
        let all: Vec<u8> = (0..=255u8).cycle().take(1031).collect();
        for start in 0..8 {
            assert_eq!(crc32c(&all[start..]), crc32c_bitwise(&all[start..]));
        }
    }

    #[test]
    fn parse_init() {
        let p = Packet::new_checked(&INIT[..]).unwrap();
        assert_eq!(p.src_port(), 5000);
        assert_eq!(p.dst_port(), 36412);
        assert_eq!(p.verification_tag(), 0);
        assert_eq!(p.checksum(), 0x261f_daf7);
        assert_eq!(p.compute_checksum(), 0x261f_daf7);
        assert_eq!(p.payload(), &INIT[12..]);
        assert_eq!(p.payload()[0], 1); // INIT
        assert!(p.verify_checksum());
        assert_eq!(Repr::parse(&p), Repr { src_port: 5000, dst_port: 36412, verification_tag: 0 });
        // The whole-packet CRC with the field zeroed, stored little-endian.
        let mut z = INIT;
        z[8..12].fill(0);
        assert_eq!(&crc32c(&z).to_le_bytes(), &INIT[8..12]);
    }

    #[test]
    fn build_init() {
        let mut b = [0xeeu8; 32];
        b[12..].copy_from_slice(&INIT[12..]);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        Repr { src_port: 5000, dst_port: 36412, verification_tag: 0 }.emit(&mut p);
        p.fill_checksum();
        assert_eq!(b, INIT);
    }

    #[test]
    fn any_flipped_byte_fails_verification() {
        for i in 0..INIT.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut b = INIT;
                b[i] ^= x;
                assert!(!Packet::new_checked(&b[..]).unwrap().verify_checksum(), "byte {i} ^ {x:#x}");
            }
        }
    }

    #[test]
    fn port_rewrite_needs_refill() {
        let mut b = INIT;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_dst_port(38412);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.dst_port(), 38412);
        p.set_src_port(40000);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(&b[..4], &[0x9c, 0x40, 0x96, 0x0c]);
        assert_eq!(&b[12..], &INIT[12..]);
        // Rewriting back restores the original bytes exactly.
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_src_port(5000);
        p.set_dst_port(36412);
        p.fill_checksum();
        assert_eq!(b, INIT);
    }

    #[test]
    fn setters_and_payload_mut() {
        let mut b = INIT;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_verification_tag(0xdead_beef);
        p.payload_mut()[4..8].copy_from_slice(&[1, 2, 3, 4]);
        p.set_checksum(0x0102_0304);
        assert_eq!(p.checksum(), 0x0102_0304);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.verification_tag(), 0xdead_beef);
        let _ = p.into_inner();
        assert_eq!(&b[4..8], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&b[16..20], &[1, 2, 3, 4]);
    }

    #[test]
    fn header_only() {
        let mut b = [0u8; HEADER_LEN];
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        assert!(p.payload().is_empty());
        assert!(p.payload_mut().is_empty());
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.checksum(), crc32c(&[0u8; HEADER_LEN]));
    }

    #[test]
    fn reject_truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&INIT[..len]).unwrap_err(), WireError::Truncated);
        }
        assert!(Packet::new_checked(&INIT[..HEADER_LEN]).is_ok());
    }

    /// Every prefix of the fixture and of random buffers: `new_checked`
    /// either rejects it or every accessor and setter works; the panic-free
    /// functions work even on unchecked views.
    #[test]
    fn truncation_sweep_never_panics() {
        let mut rng = XorShift(9260);
        let mut random = [0u8; 64];
        for round in 0..64 {
            let src: &[u8] = if round == 0 {
                &INIT[..]
            } else {
                rng.fill(&mut random);
                &random[..]
            };
            for len in 0..=src.len() {
                let mut copy = [0u8; 64];
                let copy = &mut copy[..len];
                copy.copy_from_slice(&src[..len]);
                let u = Packet::new_unchecked(&*copy);
                let _ = (u.payload(), u.compute_checksum());
                assert_eq!(u.verify_checksum(), len >= HEADER_LEN && u.checksum() == u.compute_checksum());
                match Packet::new_checked(&mut *copy) {
                    Err(e) => {
                        assert!(len < HEADER_LEN);
                        assert_eq!(e, WireError::Truncated);
                    }
                    Ok(mut p) => {
                        assert!(len >= HEADER_LEN);
                        let r = Repr::parse(&p);
                        let _ = (p.checksum(), p.verify_checksum(), p.payload().len());
                        assert_eq!(p.payload().len(), len - HEADER_LEN);
                        p.payload_mut().fill(0x5a);
                        p.set_src_port(rng.next_u64() as u16);
                        r.emit(&mut p);
                        p.fill_checksum();
                        assert!(p.verify_checksum());
                    }
                }
            }
        }
    }
}
