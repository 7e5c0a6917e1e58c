//! Wire formats: zero-copy views over packet bytes.
//!
//! This module owns the byte layout of every protocol header the data plane
//! touches (Ethernet, ARP, IPv4, ICMPv4, UDP, TCP, VXLAN) and the Internet
//! checksum. It knows nothing about mbufs, tables or policy: each view wraps
//! any `T: AsRef<[u8]>` (and, for writing, `AsMut<[u8]>`), so the same code runs
//! over a DPDK mbuf's data slice, a `Vec<u8>` in a test, or a stack array.
//!
//! # What it promises
//!
//! * No allocation, no `unsafe`, no dependencies outside `std`.
//! * Each view has `new_unchecked(buf)` (no validation) and
//!   `new_checked(buf) -> Result<Self, WireError>`, which validates the lengths
//!   **once**. After `new_checked` succeeds, **no getter, setter or payload
//!   accessor of that view can panic**. Payload/header slices are additionally
//!   clamped to the buffer, so they stay panic-free even if a setter later wrote
//!   an inconsistent length field.
//! * Checksums are never checked implicitly: `new_checked` accepts a packet
//!   with a bad checksum; call `verify_checksum` where it matters.
//! * Multi-byte fields are read and written in network byte order.
//!
//! # Invariants established by each `new_checked`
//!
//! | view               | on `Ok`, the buffer satisfies                                                            |
//! |--------------------|-------------------------------------------------------------------------------------------|
//! | `ethernet::Frame`  | `len >= 14`                                                                               |
//! | `arp::Packet`      | `len >= 28`; htype = 1 (Ethernet), ptype = 0x0800, hlen = 6, plen = 4                    |
//! | `ipv4::Packet`     | `len >= 20`; version = 4; `20 <= IHL*4 <= len`; `IHL*4 <= total_len <= len`               |
//! | `icmp::Packet`     | `len >= 8`                                                                                |
//! | `udp::Packet`      | `len >= 8`; `8 <= length field <= len`                                                    |
//! | `tcp::Packet`      | `len >= 20`; `20 <= data offset*4 <= len`                                                 |
//! | `vxlan::Packet`    | `len >= 8` (the I flag is checked by `vxlan::Repr::parse`, not by `new_checked`)          |
//!
//! A buffer may be longer than what the header describes (Ethernet padding after
//! an IPv4 packet, for example); `payload()` then stops where the header says.
//!
//! Views built with `new_unchecked` on a buffer that would fail `new_checked`
//! may panic on access; that is what `new_unchecked` is for (building a packet
//! in a fresh buffer before its length fields are written).
#![forbid(unsafe_code)]

use std::fmt;
use std::str::FromStr;

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod sctp;
pub mod tcp;
pub mod udp;
pub mod vxlan;

/// Why a buffer was rejected by a `new_checked` (or a `Repr::parse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireError {
    /// The buffer is shorter than the protocol's fixed header.
    Truncated,
    /// The IPv4 version field is not 4.
    BadVersion,
    /// IPv4 IHL < 5 or past the buffer; TCP data offset < 5 or past the buffer.
    BadHeaderLength,
    /// IPv4 total length < header length or past the buffer; UDP length < 8 or
    /// past the buffer.
    BadTotalLength,
    /// A well-formed packet of a variant we do not handle (ARP that is not
    /// Ethernet/IPv4, VXLAN without the I flag).
    Unsupported,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            WireError::Truncated => "buffer shorter than the fixed header",
            WireError::BadVersion => "IPv4 version field is not 4",
            WireError::BadHeaderLength => "header length field too small or beyond the buffer",
            WireError::BadTotalLength => "total length field too small or beyond the buffer",
            WireError::Unsupported => "unsupported protocol variant",
        };
        f.write_str(s)
    }
}

impl std::error::Error for WireError {}

/// A 48-bit Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// `00:00:00:00:00:00`.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Copies an address out of the first six bytes of `bytes`.
    /// Returns `None` if `bytes` is shorter than six bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<MacAddr> {
        let b: &[u8; 6] = bytes.get(..6)?.try_into().ok()?;
        Some(MacAddr(*b))
    }

    /// The six address bytes.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// All ones.
    pub fn is_broadcast(&self) -> bool {
        self.0 == [0xff; 6]
    }

    /// The I/G (group) bit is set; this includes broadcast.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// The I/G bit is clear.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// The U/L bit is set (locally administered).
    pub fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// All zero.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(b: [u8; 6]) -> Self {
        MacAddr(b)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

/// Error from `MacAddr::from_str`; carries the rejected input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacAddrParseError {
    /// The string that was rejected.
    pub input: String,
}

impl fmt::Display for MacAddrParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid MAC address {:?}: expected six colon-separated hex pairs like 02:00:00:00:00:01", self.input)
    }
}

impl std::error::Error for MacAddrParseError {}

impl FromStr for MacAddr {
    type Err = MacAddrParseError;

    /// Accepts exactly six two-digit hex groups separated by `:`
    /// (either case), e.g. `02:00:00:00:00:01`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacAddrParseError { input: s.to_string() };
        let mut out = [0u8; 6];
        let mut groups = s.split(':');
        for byte in out.iter_mut() {
            let g = groups.next().ok_or_else(err)?;
            if g.len() != 2 || !g.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(err());
            }
            *byte = u8::from_str_radix(g, 16).map_err(|_| err())?;
        }
        if groups.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

/// Big-endian u16 at `at..at + 2`. Callers guarantee the range is in bounds.
#[inline]
pub(crate) fn read_u16(data: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

/// Big-endian u32 at `at..at + 4`. Callers guarantee the range is in bounds.
#[inline]
pub(crate) fn read_u32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

#[inline]
pub(crate) fn write_u16(data: &mut [u8], at: usize, v: u16) {
    data[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn write_u32(data: &mut [u8], at: usize, v: u32) {
    data[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// `data[start..end]`, with both ends clamped to the buffer (empty if
/// `start >= end`). Used by payload accessors so they can never panic.
#[inline]
pub(crate) fn clamped(data: &[u8], start: usize, end: usize) -> &[u8] {
    let end = end.min(data.len());
    let start = start.min(end);
    &data[start..end]
}

/// Mutable counterpart of [`clamped`].
#[inline]
pub(crate) fn clamped_mut(data: &mut [u8], start: usize, end: usize) -> &mut [u8] {
    let end = end.min(data.len());
    let start = start.min(end);
    &mut data[start..end]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    // Ethernet/IPv4/UDP 4789/VXLAN VNI 42/Ethernet/IPv4/ICMP echo request.
    // Outer IPv4 checksum 0xc055, UDP checksum 0x8295.
    static VXLAN_FRAME: [u8; 96] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x20, 0x02, 0x00, 0x00, 0x00, 0x00, 0x10, 0x08, 0x00, 0x45, 0x00, 0x00, 0x52,
        0x22, 0x22, 0x40, 0x00, 0x40, 0x11, 0xc0, 0x55, 0xac, 0x10, 0x00, 0x01, 0xac, 0x10, 0x00, 0x02, 0xc0, 0x00,
        0x12, 0xb5, 0x00, 0x3e, 0x82, 0x95, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x02, 0x00, 0x00, 0x00,
        0x0a, 0x02, 0x02, 0x00, 0x00, 0x00, 0x0a, 0x01, 0x08, 0x00, 0x45, 0x00, 0x00, 0x20, 0x00, 0x42, 0x40, 0x00,
        0x40, 0x01, 0xa5, 0x47, 0xc0, 0xa8, 0x0a, 0x01, 0xc0, 0xa8, 0x0a, 0x02, 0x08, 0x00, 0x17, 0x1e, 0x00, 0x07,
        0x00, 0x03, 0x77, 0x65, 0x69, 0x72,
    ];

    // Ethernet/IPv4/TCP SYN with options (no Ethernet padding).
    static TCP_SYN_FRAME: [u8; 74] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45, 0x00, 0x00, 0x3c,
        0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x26, 0xac, 0x0a, 0x01, 0x00, 0x05, 0x0a, 0x02, 0x00, 0x09, 0x9c, 0x40,
        0x01, 0xbb, 0x11, 0x22, 0x33, 0x44, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0x40, 0x85, 0x00, 0x00,
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x0a, 0x0b, 0x0c, 0x0d, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03,
        0x03, 0x07,
    ];

    // Ethernet broadcast ARP request, padded to 60 bytes.
    static ARP_FRAME: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x01, 0x08, 0x00,
        0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x0a, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn mac_display_and_parse() {
        let m = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
        assert_eq!(m.to_string(), "02:00:00:00:00:01");
        assert_eq!("02:00:00:00:00:01".parse::<MacAddr>(), Ok(m));
        let upper: MacAddr = "AA:bb:0C:dd:EE:ff".parse().unwrap();
        assert_eq!(upper, MacAddr([0xaa, 0xbb, 0x0c, 0xdd, 0xee, 0xff]));
        assert_eq!(upper.to_string(), "aa:bb:0c:dd:ee:ff");
        assert_eq!(MacAddr::BROADCAST.to_string(), "ff:ff:ff:ff:ff:ff");
        assert_eq!(MacAddr::ZERO.to_string(), "00:00:00:00:00:00");
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "02:00:00:00:00:1",
            "02:00:00:00:00:001",
            "02-00-00-00-00-01",
            "02:00:00:00:00:0g",
            "+2:00:00:00:00:01",
            "02:00:00:00:00:01:",
            " 02:00:00:00:00:01",
            "02:00:00:00:00:é",
        ] {
            let e = bad.parse::<MacAddr>().unwrap_err();
            assert_eq!(e.input, bad);
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn mac_classes() {
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(!MacAddr::BROADCAST.is_unicast());
        let mcast = MacAddr([0x01, 0x00, 0x5e, 0x01, 0x02, 0x03]);
        assert!(mcast.is_multicast() && !mcast.is_broadcast() && !mcast.is_unicast());
        let ucast = MacAddr([0x02, 0, 0, 0, 0, 1]);
        assert!(ucast.is_unicast() && !ucast.is_multicast() && !ucast.is_broadcast());
        assert!(ucast.is_local());
        assert!(MacAddr::ZERO.is_unicast() && MacAddr::ZERO.is_zero());
        assert_eq!(MacAddr::default(), MacAddr::ZERO);
        assert_eq!(MacAddr::from_bytes(&[1, 2, 3, 4, 5, 6, 7]), Some(MacAddr([1, 2, 3, 4, 5, 6])));
        assert_eq!(MacAddr::from_bytes(&[1, 2, 3, 4, 5]), None);
        assert!(MacAddr::ZERO < MacAddr::BROADCAST);
    }

    #[test]
    fn error_display() {
        for e in [
            WireError::Truncated,
            WireError::BadVersion,
            WireError::BadHeaderLength,
            WireError::BadTotalLength,
            WireError::Unsupported,
        ] {
            assert!(!e.to_string().is_empty());
            let _: &dyn std::error::Error = &e;
        }
    }

    /// Walks a whole VXLAN-encapsulated frame down to the inner ICMP echo.
    #[test]
    fn parse_vxlan_stack() {
        let eth = ethernet::Frame::new_checked(&VXLAN_FRAME[..]).unwrap();
        assert_eq!(eth.ethertype(), ethernet::ethertype::IPV4);
        let ip = ipv4::Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.protocol(), ipv4::protocol::UDP);
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        assert_eq!(src, Ipv4Addr::new(172, 16, 0, 1));
        let udp = udp::Packet::new_checked(ip.payload()).unwrap();
        assert!(udp.verify_checksum(src, dst));
        assert_eq!(udp.dst_port(), vxlan::DEFAULT_PORT);
        let vx = vxlan::Packet::new_checked(udp.payload()).unwrap();
        assert_eq!(vxlan::Repr::parse(&vx), Ok(vxlan::Repr { vni: 42 }));
        let inner = ethernet::Frame::new_checked(vx.payload()).unwrap();
        assert_eq!(inner.src(), "02:00:00:00:0a:01".parse().unwrap());
        let iip = ipv4::Packet::new_checked(inner.payload()).unwrap();
        assert!(iip.verify_checksum());
        assert_eq!(iip.dst_addr(), Ipv4Addr::new(192, 168, 10, 2));
        let icmp = icmp::Packet::new_checked(iip.payload()).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!(icmp.msg_type(), icmp::msg::ECHO_REQUEST);
        assert_eq!((icmp.echo_ident(), icmp.echo_seq()), (7, 3));
        assert_eq!(icmp.payload(), b"weir");
    }

    /// Builds the same VXLAN frame from Reprs into a zeroed buffer.
    #[test]
    fn build_vxlan_stack() {
        let mut buf = [0u8; 96];
        let inner_len = 96 - 50;
        buf[50..].copy_from_slice(&VXLAN_FRAME[50..]);
        let mut eth = ethernet::Frame::new_unchecked(&mut buf[..]);
        ethernet::Repr {
            src: MacAddr([2, 0, 0, 0, 0, 0x10]),
            dst: MacAddr([2, 0, 0, 0, 0, 0x20]),
            ethertype: ethernet::ethertype::IPV4,
        }
        .emit(&mut eth);
        let mut ip = ipv4::Packet::new_unchecked(eth.payload_mut());
        let src = Ipv4Addr::new(172, 16, 0, 1);
        let dst = Ipv4Addr::new(172, 16, 0, 2);
        ipv4::Repr {
            src,
            dst,
            protocol: ipv4::protocol::UDP,
            ttl: 64,
            payload_len: udp::HEADER_LEN + vxlan::HEADER_LEN + inner_len,
            dscp_ecn: 0,
            ident: 0x2222,
            dont_frag: true,
        }
        .emit(&mut ip);
        let mut udp = udp::Packet::new_unchecked(ip.payload_mut());
        udp.set_src_port(49152);
        udp.set_dst_port(vxlan::DEFAULT_PORT);
        udp.set_len((udp::HEADER_LEN + vxlan::HEADER_LEN + inner_len) as u16);
        {
            let mut vx = vxlan::Packet::new_unchecked(udp.payload_mut());
            vxlan::Repr { vni: 42 }.emit(&mut vx);
        }
        udp.fill_checksum(src, dst);
        assert_eq!(&buf[..], &VXLAN_FRAME[..]);
    }

    /// A tiny xorshift64* PRNG so the fuzz-style tests need no crates.
    pub(crate) struct XorShift(pub u64);

    impl XorShift {
        pub(crate) fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }
        pub(crate) fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                *b = self.next_u64() as u8;
            }
        }
    }

    const VIEWS: [&str; 7] = ["ethernet", "arp", "ipv4", "icmp", "udp", "tcp", "vxlan"];

    /// Runs every `new_checked` over `buf` and, on success, every getter,
    /// payload accessor and checksum verification. Returns a bit per view
    /// that accepted the buffer (in the order of [`VIEWS`]). Any panic fails
    /// the test.
    fn exercise(buf: &[u8]) -> u32 {
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let b = Ipv4Addr::new(10, 0, 0, 2);
        let mut ok = 0;
        if let Ok(f) = ethernet::Frame::new_checked(buf) {
            ok |= 1 << 0;
            let _ = (f.dst(), f.src(), f.ethertype(), f.payload().len());
            let _ = ethernet::Repr::parse(&f);
        }
        if let Ok(p) = arp::Packet::new_checked(buf) {
            ok |= 1 << 1;
            let _ = (p.operation(), p.sender_mac(), p.sender_ip(), p.target_mac(), p.target_ip());
            let _ = (p.hardware_type(), p.protocol_type(), p.hardware_len(), p.protocol_len());
            let _ = arp::Repr::parse(&p);
        }
        if let Ok(p) = ipv4::Packet::new_checked(buf) {
            ok |= 1 << 2;
            let _ = (p.version(), p.header_len(), p.dscp_ecn(), p.total_len(), p.ident());
            let _ = (p.dont_frag(), p.more_frags(), p.frag_offset(), p.is_fragment());
            let _ = (p.ttl(), p.protocol(), p.checksum(), p.src_addr(), p.dst_addr());
            let _ = (p.verify_checksum(), p.header().len(), p.options().len(), p.payload().len());
            let r = ipv4::Repr::parse(&p);
            assert_eq!(r.payload_len, p.payload().len());
            assert!(p.header_len() <= p.total_len() as usize);
            assert!(p.total_len() as usize <= buf.len());
        }
        if let Ok(p) = icmp::Packet::new_checked(buf) {
            ok |= 1 << 3;
            let _ = (p.msg_type(), p.code(), p.checksum(), p.echo_ident(), p.echo_seq());
            let _ = (p.next_hop_mtu(), p.rest_of_header(), p.payload().len(), p.verify_checksum());
        }
        if let Ok(p) = udp::Packet::new_checked(buf) {
            ok |= 1 << 4;
            let _ = (p.src_port(), p.dst_port(), p.len(), p.checksum(), p.payload().len());
            let _ = p.verify_checksum(a, b);
            assert_eq!(p.payload().len() + 8, p.len() as usize);
        }
        if let Ok(p) = tcp::Packet::new_checked(buf) {
            ok |= 1 << 5;
            let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number());
            let _ = (p.header_len(), p.flags(), p.window(), p.checksum(), p.urgent());
            let _ = (p.options().len(), p.payload().len(), p.verify_checksum(a, b));
            assert_eq!(p.header_len() + p.payload().len(), buf.len());
        }
        if let Ok(p) = vxlan::Packet::new_checked(buf) {
            ok |= 1 << 6;
            let _ = (p.flags(), p.has_vni(), p.vni(), p.payload().len());
            let _ = vxlan::Repr::parse(&p);
        }
        ok
    }

    /// Mutates every setter on a copy; setters on a checked view must not panic
    /// either, and the payload accessors must survive the lengths they wrote.
    fn exercise_mut(buf: &[u8], rng: &mut XorShift) {
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let b = Ipv4Addr::new(10, 0, 0, 2);
        let mut copy = [0u8; 256];
        let copy = &mut copy[..buf.len()];
        copy.copy_from_slice(buf);
        let r = rng.next_u64();
        if let Ok(mut p) = ipv4::Packet::new_checked(&mut *copy) {
            p.decrement_ttl();
            p.set_version_ihl(4, (r as usize) & 0x3f);
            p.set_total_len((r >> 8) as u16);
            p.set_flags_frag(r & 1 != 0, r & 2 != 0, (r >> 24) as u16);
            let _ = (p.payload_mut().len(), p.header().len(), p.payload().len(), p.options().len());
            p.fill_checksum();
            let _ = p.verify_checksum();
        }
        copy.copy_from_slice(buf);
        if let Ok(mut p) = udp::Packet::new_checked(&mut *copy) {
            p.set_len((r >> 16) as u16);
            let _ = p.payload_mut().len();
            p.fill_checksum(a, b);
            let _ = (p.verify_checksum(a, b), p.payload().len());
        }
        copy.copy_from_slice(buf);
        if let Ok(mut p) = tcp::Packet::new_checked(&mut *copy) {
            p.set_header_len((r as usize) & 0x7f);
            p.set_flags(r as u8);
            let _ = (p.payload_mut().len(), p.options().len());
            p.fill_checksum(a, b);
            let _ = (p.verify_checksum(a, b), p.payload().len());
        }
        copy.copy_from_slice(buf);
        if let Ok(mut p) = icmp::Packet::new_checked(&mut *copy) {
            p.set_rest_of_header(r as u32);
            p.set_next_hop_mtu(r as u16);
            p.fill_checksum();
            assert!(p.verify_checksum());
        }
        copy.copy_from_slice(buf);
        if let Ok(mut p) = vxlan::Packet::new_checked(&mut *copy) {
            p.set_vni(r as u32);
            assert_eq!(p.vni(), (r as u32) & 0x00ff_ffff);
            let _ = p.payload_mut().len();
        }
        copy.copy_from_slice(buf);
        if let Ok(mut p) = arp::Packet::new_checked(&mut *copy) {
            let rep = arp::Repr::parse(&p);
            rep.emit(&mut p);
            assert_eq!(arp::Repr::parse(&p), rep);
        }
    }

    fn fixtures() -> Vec<&'static [u8]> {
        let mut v: Vec<&'static [u8]> = vec![&VXLAN_FRAME[..], &TCP_SYN_FRAME[..], &ARP_FRAME[..]];
        // The L3 views of the Ethernet fixtures as well.
        v.push(&VXLAN_FRAME[14..]);
        v.push(&VXLAN_FRAME[34..]);
        v.push(&VXLAN_FRAME[42..]);
        v.push(&VXLAN_FRAME[64..]);
        v.push(&VXLAN_FRAME[84..]);
        v.push(&TCP_SYN_FRAME[14..]);
        v.push(&TCP_SYN_FRAME[34..]);
        v.push(&ARP_FRAME[14..]);
        v
    }

    #[test]
    fn no_panic_on_arbitrary_bytes() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut buf = [0u8; 128];
        let mut accepted = [0usize; VIEWS.len()];
        let mut count = |mask: u32| {
            for (i, n) in accepted.iter_mut().enumerate() {
                if mask & (1 << i) != 0 {
                    *n += 1;
                }
            }
        };
        for i in 0..20_000 {
            let len = rng.below(129);
            let b = &mut buf[..len];
            rng.fill(b);
            // Bias some buffers towards plausible length fields so the deeper
            // validation paths are reached, not just the first check.
            if i % 4 == 0 && len > 3 {
                // IPv4: version 4, total length somewhere around the buffer.
                b[0] = 0x40 | (b[0] & 0x0f);
                b[2] = 0;
                b[3] = rng.below(len + 8) as u8;
            }
            if i % 4 == 1 && len > 13 {
                // UDP length and TCP data offset near the buffer length.
                b[4] = 0;
                b[5] = rng.below(len + 8) as u8;
                b[12] = (b[12] & 0x0f) | ((rng.below(16) as u8) << 4);
            }
            if i % 4 == 2 && len > 5 {
                // ARP: Ethernet/IPv4 most of the time.
                b[..6].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
                b[rng.below(6)] ^= (rng.below(2) as u8) << rng.below(8);
            }
            count(exercise(b));
            exercise_mut(b, &mut rng);
        }
        // Mutated copies of the real fixtures: overwrite bytes, truncate.
        for fx in fixtures() {
            for _ in 0..2_000 {
                let len = rng.below(fx.len() + 1);
                let mut m = [0u8; 128];
                let m = &mut m[..len];
                m.copy_from_slice(&fx[..len]);
                for _ in 0..rng.below(4) {
                    if len > 0 {
                        let at = rng.below(len);
                        m[at] = rng.next_u64() as u8;
                    }
                }
                count(exercise(m));
                exercise_mut(m, &mut rng);
            }
        }
        // Every view must have been exercised past its checks many times.
        for (name, n) in VIEWS.iter().zip(accepted) {
            assert!(n >= 500, "{name}: only {n} buffers accepted; fuzzing too shallow");
        }
    }

    #[test]
    fn fixtures_are_accepted() {
        for fx in fixtures() {
            assert_ne!(exercise(fx), 0);
        }
    }
}
