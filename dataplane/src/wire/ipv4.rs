//! IPv4 packets (RFC 791).
//!
//! Owns the IPv4 header layout, options included (as opaque bytes), and the
//! header checksum. Fragments are described (`is_fragment`, `frag_offset`) but
//! not reassembled.
//!
//! Promise: once [`Packet::new_checked`] has accepted a buffer (length >= 20,
//! version 4, `20 <= IHL*4 <= len`, `IHL*4 <= total_len <= len`), no accessor
//! or setter of that `Packet` can panic. `header()`, `options()` and
//! `payload()` clamp to the buffer, so they stay panic-free even after a
//! setter wrote an inconsistent IHL or total length. The buffer may be longer
//! than `total_len` (Ethernet padding); `payload()` stops at `total_len`.
//! The checksum is not verified by `new_checked`; see
//! [`Packet::verify_checksum`].
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use super::checksum;
use super::{clamped, clamped_mut, read_u16, write_u16, WireError};

mod field {
    use std::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_MASK: u16 = 0x1fff;

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

/// IP protocol numbers.
pub mod protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const SCTP: u8 = 132;
}

/// A read/write view of an IPv4 packet.
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
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` if shorter than 20 bytes; `BadVersion` unless version 4;
    /// `BadHeaderLength` if IHL < 5 or the header runs past the buffer;
    /// `BadTotalLength` if total length < header length or > buffer length.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let d = self.buffer.as_ref();
        if d.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 4 {
            return Err(WireError::BadVersion);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN || hl > d.len() {
            return Err(WireError::BadHeaderLength);
        }
        let tl = usize::from(self.total_len());
        if tl < hl || tl > d.len() {
            return Err(WireError::BadTotalLength);
        }
        Ok(())
    }

    /// Unwraps the buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole underlying buffer (including any padding past `total_len`).
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The DSCP/ECN (ex-TOS) byte.
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Total length (header + payload) in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT)
    }

    #[inline]
    fn flags_frag(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FLAGS_FRAG)
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_frag() & FLAG_DF != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flags_frag() & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field times 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flags_frag() & FRAG_MASK) * 8
    }

    /// More-fragments set or a non-zero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_frag() & (FLAG_MF | FRAG_MASK) != 0
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[field::SRC];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[field::DST];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    /// The header checksum over `header_len` bytes is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        let d = self.buffer.as_ref();
        match d.first_chunk::<HEADER_LEN>() {
            // No options (nearly every packet): a fixed 20-byte sum.
            Some(h) if self.header_len() == HEADER_LEN => checksum::fold(checksum::sum_array(h)) == 0xffff,
            _ => checksum::checksum(self.header()) == 0,
        }
    }

    /// The header, options included (`header_len` bytes).
    #[inline]
    pub fn header(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), 0, self.header_len())
    }

    /// The options, i.e. the header past the fixed 20 bytes.
    #[inline]
    pub fn options(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), HEADER_LEN, self.header_len())
    }

    /// `header_len..total_len`.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), self.header_len(), usize::from(self.total_len()))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes the version/IHL byte; `header_len_bytes` is divided by 4 and
    /// masked to 4 bits (pass a multiple of 4 between 20 and 60).
    #[inline]
    pub fn set_version_ihl(&mut self, version: u8, header_len_bytes: usize) {
        let ihl = ((header_len_bytes / 4) & 0x0f) as u8;
        self.buffer.as_mut()[field::VER_IHL] = (version << 4) | ihl;
    }

    #[inline]
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    #[inline]
    pub fn set_total_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    #[inline]
    pub fn set_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT, value);
    }

    /// Writes the flags and fragment offset; `offset_bytes` is divided by 8
    /// (pass a multiple of 8). The reserved bit is cleared.
    #[inline]
    pub fn set_flags_frag(&mut self, dont_frag: bool, more_frags: bool, offset_bytes: u16) {
        let mut v = (offset_bytes / 8) & FRAG_MASK;
        if dont_frag {
            v |= FLAG_DF;
        }
        if more_frags {
            v |= FLAG_MF;
        }
        write_u16(self.buffer.as_mut(), field::FLAGS_FRAG, v);
    }

    #[inline]
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    #[inline]
    pub fn set_protocol(&mut self, value: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = value;
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.octets());
    }

    /// Zeroes the checksum field, then computes it over `header_len` bytes.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = match self.buffer.as_ref().first_chunk::<HEADER_LEN>() {
            Some(h) if hl == HEADER_LEN => !checksum::fold(checksum::sum_array(h)),
            _ => checksum::checksum(self.header()),
        };
        self.set_checksum(c);
    }

    /// Lowers the TTL by one and patches the checksum incrementally
    /// (RFC 1624) on the TTL/protocol word. A TTL of 0 is left unchanged;
    /// callers drop (or answer with ICMP time-exceeded) packets whose TTL is
    /// <= 1 before calling this.
    #[inline(always)]
    pub fn decrement_ttl(&mut self) {
        // Through a fixed 20-byte view: one length check, no bounds checks.
        let Some(h) = self.buffer.as_mut().first_chunk_mut::<HEADER_LEN>() else {
            return; // shorter than a header: no TTL to lower
        };
        let (ttl, proto) = (h[field::TTL], h[field::PROTOCOL]);
        if ttl == 0 {
            return;
        }
        let old = u16::from_be_bytes([ttl, proto]);
        let new = u16::from_be_bytes([ttl - 1, proto]);
        h[field::TTL] = ttl - 1;
        let c = checksum::update16(u16::from_be_bytes([h[field::CHECKSUM], h[field::CHECKSUM + 1]]), old, new);
        h[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
    }

    /// Mutable `header_len..total_len`.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), usize::from(self.total_len()));
        clamped_mut(self.buffer.as_mut(), start, end)
    }
}

/// The decoded fields of an option-less IPv4 header that the data plane uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    pub payload_len: usize,
    pub dscp_ecn: u8,
    pub ident: u16,
    pub dont_frag: bool,
}

impl Repr {
    /// Reads a checked packet. `payload_len` is `total_len - header_len`;
    /// options and fragment fields are not represented (check
    /// `is_fragment()` on the packet if they matter).
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Repr {
        Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            protocol: packet.protocol(),
            ttl: packet.ttl(),
            payload_len: packet.payload().len(),
            dscp_ecn: packet.dscp_ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
        }
    }

    /// Writes a 20-byte header without options, `total_len = 20 +
    /// payload_len` (truncated to 16 bits: keep `payload_len <= 65515`), no
    /// fragmentation, and fills the checksum. `packet` must be at least 20
    /// bytes; the payload bytes are not touched.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_version_ihl(4, HEADER_LEN);
        packet.set_dscp_ecn(self.dscp_ecn);
        packet.set_total_len((HEADER_LEN + self.payload_len) as u16);
        packet.set_ident(self.ident);
        packet.set_flags_frag(self.dont_frag, false, 0);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src);
        packet.set_dst_addr(self.dst);
        packet.fill_checksum();
    }

    /// Bytes `emit` describes: `20 + payload_len`.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::XorShift;

    // IPv4/ICMP echo request 10.0.0.1 -> 10.0.0.2, ident 0xbeef, DF, TTL 64,
    // header checksum 0x67b7.
    static PING_IP: [u8; 84] = [
        0x45, 0x00, 0x00, 0x54, 0xbe, 0xef, 0x40, 0x00, 0x40, 0x01, 0x67, 0xb7, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00,
        0x00, 0x02, 0x08, 0x00, 0xd0, 0x82, 0x12, 0x34, 0x00, 0x01, 0x5f, 0x1d, 0x0a, 0x67, 0x00, 0x00, 0x00, 0x00,
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21,
        0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33,
        0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f,
    ];

    // IPv4 with IHL 6 (Router Alert option 94 04 00 00) carrying an IGMPv2
    // report for 239.1.2.3; TTL 1, DSCP/ECN 0xc0, checksum 0xe912.
    static IGMP_RA_IP: [u8; 32] = [
        0x46, 0xc0, 0x00, 0x20, 0x00, 0x00, 0x40, 0x00, 0x01, 0x02, 0xe9, 0x12, 0x0a, 0x00, 0x00, 0x01, 0xef, 0x01,
        0x02, 0x03, 0x94, 0x04, 0x00, 0x00, 0x16, 0x00, 0xf8, 0xfa, 0xef, 0x01, 0x02, 0x03,
    ];

    // IPv4/UDP DNS query 192.168.1.2 -> 8.8.8.8 (57 bytes), followed by 3
    // bytes of Ethernet padding that are not part of the packet.
    static DNS_QUERY_PADDED: [u8; 60] = [
        0x45, 0x00, 0x00, 0x39, 0x4d, 0x2e, 0x40, 0x00, 0x40, 0x11, 0x1b, 0xcc, 0xc0, 0xa8, 0x01, 0x02, 0x08, 0x08,
        0x08, 0x08, 0xcf, 0x08, 0x00, 0x35, 0x00, 0x25, 0xe3, 0x70, 0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x03, 0x63, 0x6f, 0x6d, 0x00, 0x00,
        0x01, 0x00, 0x01, 0x00, 0x00, 0x00,
    ];

    fn ping_repr() -> Repr {
        Repr {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            protocol: protocol::ICMP,
            ttl: 64,
            payload_len: 64,
            dscp_ecn: 0,
            ident: 0xbeef,
            dont_frag: true,
        }
    }

    #[test]
    fn parse_ping() {
        let p = Packet::new_checked(&PING_IP[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.dscp_ecn(), 0);
        assert_eq!(p.total_len(), 84);
        assert_eq!(p.ident(), 0xbeef);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), protocol::ICMP);
        assert_eq!(p.checksum(), 0x67b7);
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert!(p.verify_checksum());
        assert_eq!(p.header(), &PING_IP[..20]);
        assert!(p.options().is_empty());
        assert_eq!(p.payload(), &PING_IP[20..]);
        assert_eq!(Repr::parse(&p), ping_repr());
    }

    #[test]
    fn parse_with_options() {
        let p = Packet::new_checked(&IGMP_RA_IP[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(p.header().len(), 24);
        assert!(p.verify_checksum());
        assert_eq!(p.checksum(), 0xe912);
        assert_eq!(p.ttl(), 1);
        assert_eq!(p.dscp_ecn(), 0xc0);
        assert_eq!(p.protocol(), 2);
        assert_eq!(p.dst_addr(), Ipv4Addr::new(239, 1, 2, 3));
        assert_eq!(p.payload(), &IGMP_RA_IP[24..]);
        assert_eq!(Repr::parse(&p).payload_len, 8);
    }

    #[test]
    fn payload_stops_at_total_len() {
        let p = Packet::new_checked(&DNS_QUERY_PADDED[..]).unwrap();
        assert_eq!(p.total_len(), 57);
        assert_eq!(p.payload().len(), 37);
        assert_eq!(p.payload(), &DNS_QUERY_PADDED[20..57]);
        assert!(p.verify_checksum());
        assert_eq!(p.protocol(), protocol::UDP);
    }

    #[test]
    fn bad_checksum_detected_not_rejected() {
        let mut b = PING_IP;
        b[11] ^= 1;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(!p.verify_checksum());
    }

    #[test]
    fn emit_matches_fixture() {
        let mut buf = [0u8; 84];
        buf[20..].copy_from_slice(&PING_IP[20..]);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        let r = ping_repr();
        r.emit(&mut p);
        assert_eq!(r.buffer_len(), 84);
        assert_eq!(&buf[..], &PING_IP[..]);
    }

    #[test]
    fn emit_overwrites_garbage_and_options() {
        let mut buf = [0xffu8; 84];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        ping_repr().emit(&mut p);
        assert_eq!(&buf[..20], &PING_IP[..20]);
    }

    #[test]
    fn fragments() {
        let mut b = PING_IP;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_flags_frag(false, true, 0);
        assert!(p.more_frags() && p.is_fragment() && !p.dont_frag());
        p.set_flags_frag(false, false, 1480);
        assert!(!p.more_frags() && p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
        p.set_flags_frag(true, true, 65528);
        assert_eq!(p.frag_offset(), 65528);
        assert!(p.dont_frag() && p.more_frags());
        assert_eq!(&b[6..8], &[0x7f, 0xff]);
    }

    #[test]
    fn setters_round_trip() {
        let mut b = [0u8; 40];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_version_ihl(4, 24);
        p.set_dscp_ecn(0x2e << 2);
        p.set_total_len(40);
        p.set_ident(7);
        p.set_flags_frag(true, false, 0);
        p.set_ttl(9);
        p.set_protocol(protocol::SCTP);
        p.set_src_addr(Ipv4Addr::new(1, 2, 3, 4));
        p.set_dst_addr(Ipv4Addr::new(5, 6, 7, 8));
        p.fill_checksum();
        p.payload_mut().fill(0xab);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.version(), p.header_len(), p.dscp_ecn()), (4, 24, 0xb8));
        assert_eq!((p.total_len(), p.ident(), p.ttl(), p.protocol()), (40, 7, 9, 132));
        assert_eq!(p.src_addr(), Ipv4Addr::new(1, 2, 3, 4));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(5, 6, 7, 8));
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &[0xab; 16]);
        assert_eq!(&b[20..24], &[0, 0, 0, 0]);
    }

    #[test]
    fn decrement_ttl_fixture() {
        let mut b = PING_IP;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.decrement_ttl();
        assert_eq!(p.ttl(), 63);
        assert!(p.verify_checksum());
        let inc = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), inc);
        // 0x67b7 + 0x0100.
        assert_eq!(inc, 0x68b7);
    }

    #[test]
    fn decrement_ttl_matches_fill_checksum() {
        let mut rng = XorShift(7);
        let mut b = [0u8; 60];
        for i in 0..20_000 {
            rng.fill(&mut b);
            let hl = 20 + 4 * rng.below(11);
            b[0] = 0x40 | (hl / 4) as u8;
            b[2..4].copy_from_slice(&(hl as u16).to_be_bytes());
            if b[8] == 0 {
                b[8] = 1;
            }
            if i % 3 == 0 {
                // Make the header sum land on the edges: checksum 0x0000 after
                // (or before) the decrement.
                b[10] = 0;
                b[11] = 0;
                let s = checksum::fold(checksum::sum(&b[..hl]));
                let adj = if i % 2 == 0 { !s } else { (!s).wrapping_add(0x0100) };
                let t = u16::from_be_bytes([b[12], b[13]]);
                let fixed = checksum::fold(u32::from(t) + u32::from(adj));
                b[12..14].copy_from_slice(&fixed.to_be_bytes());
            }
            let mut p = Packet::new_checked(&mut b[..]).unwrap();
            p.fill_checksum();
            let ttl = p.ttl();
            p.decrement_ttl();
            assert_eq!(p.ttl(), ttl - 1);
            let inc = p.checksum();
            assert!(p.verify_checksum());
            p.fill_checksum();
            assert_eq!(inc, p.checksum(), "header {:02x?}", &b[..hl]);
        }
    }

    #[test]
    fn decrement_ttl_zero_is_noop() {
        let mut b = PING_IP;
        b[8] = 0;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum();
        let before = p.checksum();
        p.decrement_ttl();
        assert_eq!((p.ttl(), p.checksum()), (0, before));
    }

    #[test]
    fn reject_truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&PING_IP[..len]).unwrap_err(), WireError::Truncated);
        }
    }

    #[test]
    fn reject_bad_version() {
        for v in [0u8, 6, 15] {
            let mut b = PING_IP;
            b[0] = (v << 4) | 5;
            assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), WireError::BadVersion);
        }
    }

    #[test]
    fn reject_bad_header_len() {
        for ihl in 0u8..5 {
            let mut b = PING_IP;
            b[0] = 0x40 | ihl;
            assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), WireError::BadHeaderLength);
        }
        // IHL 6 with only 20 bytes of buffer; IHL 15 (60 bytes) in 32.
        let mut b = PING_IP;
        b[0] = 0x46;
        assert_eq!(Packet::new_checked(&b[..20]).unwrap_err(), WireError::BadHeaderLength);
        let mut b = IGMP_RA_IP;
        b[0] = 0x4f;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), WireError::BadHeaderLength);
    }

    #[test]
    fn reject_bad_total_len() {
        // total_len < header_len
        let mut b = IGMP_RA_IP;
        b[2..4].copy_from_slice(&20u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), WireError::BadTotalLength);
        // total_len > buffer (a truncated capture)
        assert_eq!(Packet::new_checked(&PING_IP[..83]).unwrap_err(), WireError::BadTotalLength);
        let mut b = PING_IP;
        b[2..4].copy_from_slice(&0xffffu16.to_be_bytes());
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), WireError::BadTotalLength);
        // total_len == header_len is fine: empty payload.
        let mut b = PING_IP;
        b[2..4].copy_from_slice(&20u16.to_be_bytes());
        assert!(Packet::new_checked(&b[..]).unwrap().payload().is_empty());
    }

    #[test]
    fn clamped_after_bad_setters() {
        let mut b = PING_IP;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_version_ihl(4, 60);
        p.set_total_len(10);
        assert_eq!(p.header().len(), 60);
        assert!(p.payload().is_empty());
        assert!(p.payload_mut().is_empty());
        p.set_total_len(0xffff);
        assert_eq!(p.payload().len(), 24);
        p.fill_checksum();
        assert!(p.verify_checksum());
        let mut short = [0x4fu8; 20];
        let mut p = Packet::new_unchecked(&mut short[..]);
        assert_eq!(p.header().len(), 20);
        assert_eq!(p.options().len(), 0);
        assert!(p.payload_mut().is_empty());
    }
}
