//! ARP for IPv4 over Ethernet (RFC 826), and nothing else.
//!
//! Owns the 28-byte Ethernet/IPv4 ARP packet layout. Any other hardware or
//! protocol type is refused with [`WireError::Unsupported`] at
//! [`Packet::new_checked`], so the getters can assume 6-byte MACs and 4-byte
//! IPv4 addresses at fixed offsets.
//!
//! Promise: once `new_checked` has accepted a buffer (length >= 28, htype 1,
//! ptype 0x0800, hlen 6, plen 4), no accessor or setter of that `Packet` can
//! panic. Trailing bytes after the 28 (Ethernet padding) are ignored.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use super::{read_u16, write_u16, MacAddr, WireError};

mod field {
    use std::ops::Range;
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;
/// `operation` of a request.
pub const OP_REQUEST: u16 = 1;
/// `operation` of a reply.
pub const OP_REPLY: u16 = 2;

/// Hardware type for Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;
/// Protocol type for IPv4 (the IPv4 EtherType).
pub const PTYPE_IPV4: u16 = 0x0800;

/// A read/write view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` after [`Packet::check`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// `Truncated` if shorter than 28 bytes; `Unsupported` unless the packet
    /// is Ethernet (1) / IPv4 (0x0800) with address lengths 6 and 4.
    pub fn check(&self) -> Result<(), WireError> {
        let d = self.buffer.as_ref();
        if d.len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        if read_u16(d, field::HTYPE) != HTYPE_ETHERNET
            || read_u16(d, field::PTYPE) != PTYPE_IPV4
            || d[field::HLEN] != 6
            || d[field::PLEN] != 4
        {
            return Err(WireError::Unsupported);
        }
        Ok(())
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn hardware_type(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::HTYPE)
    }

    pub fn protocol_type(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::PTYPE)
    }

    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// [`OP_REQUEST`], [`OP_REPLY`] or something else.
    pub fn operation(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::OPER)
    }

    pub fn sender_mac(&self) -> MacAddr {
        self.mac(field::SHA)
    }

    pub fn sender_ip(&self) -> Ipv4Addr {
        self.ip(field::SPA)
    }

    pub fn target_mac(&self) -> MacAddr {
        self.mac(field::THA)
    }

    pub fn target_ip(&self) -> Ipv4Addr {
        self.ip(field::TPA)
    }

    fn mac(&self, r: std::ops::Range<usize>) -> MacAddr {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.buffer.as_ref()[r]);
        MacAddr(m)
    }

    fn ip(&self, r: std::ops::Range<usize>) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[r];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes htype 1, ptype 0x0800, hlen 6, plen 4.
    pub fn set_ethernet_ipv4(&mut self) {
        let d = self.buffer.as_mut();
        write_u16(d, field::HTYPE, HTYPE_ETHERNET);
        write_u16(d, field::PTYPE, PTYPE_IPV4);
        d[field::HLEN] = 6;
        d[field::PLEN] = 4;
    }

    pub fn set_operation(&mut self, op: u16) {
        write_u16(self.buffer.as_mut(), field::OPER, op);
    }

    pub fn set_sender_mac(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&mac.0);
    }

    pub fn set_sender_ip(&mut self, ip: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&ip.octets());
    }

    pub fn set_target_mac(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&mac.0);
    }

    pub fn set_target_ip(&mut self, ip: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&ip.octets());
    }
}

/// The decoded contents of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub operation: u16,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl Repr {
    /// Reads a checked packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Repr {
        Repr {
            operation: packet.operation(),
            sender_mac: packet.sender_mac(),
            sender_ip: packet.sender_ip(),
            target_mac: packet.target_mac(),
            target_ip: packet.target_ip(),
        }
    }

    /// Writes all 28 bytes, including htype/ptype/hlen/plen, into `packet`
    /// (which must be at least 28 bytes).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_ethernet_ipv4();
        packet.set_operation(self.operation);
        packet.set_sender_mac(self.sender_mac);
        packet.set_sender_ip(self.sender_ip);
        packet.set_target_mac(self.target_mac);
        packet.set_target_ip(self.target_ip);
    }

    /// The reply to this request from the owner of `target_ip`, whose MAC is
    /// `mac`.
    pub fn reply(&self, mac: MacAddr) -> Repr {
        Repr {
            operation: OP_REPLY,
            sender_mac: mac,
            sender_ip: self.target_ip,
            target_mac: self.sender_mac,
            target_ip: self.sender_ip,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Ethernet payload of a broadcast ARP request (who-has 10.0.0.2 tell
    // 10.0.0.1), with the 18 bytes of Ethernet padding it arrived with.
    static REQUEST_PADDED: [u8; 46] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    // ARP reply: 10.0.0.2 is-at 02:00:00:00:00:02.
    static REPLY: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x0a, 0x00, 0x00, 0x02,
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x01,
    ];

    const M1: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const M2: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
    const IP1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const IP2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn request() -> Repr {
        Repr { operation: OP_REQUEST, sender_mac: M1, sender_ip: IP1, target_mac: MacAddr::ZERO, target_ip: IP2 }
    }

    #[test]
    fn parse_request() {
        let p = Packet::new_checked(&REQUEST_PADDED[..]).unwrap();
        assert_eq!(p.operation(), OP_REQUEST);
        assert_eq!(p.sender_mac(), M1);
        assert_eq!(p.sender_ip(), IP1);
        assert_eq!(p.target_mac(), MacAddr::ZERO);
        assert_eq!(p.target_ip(), IP2);
        assert_eq!((p.hardware_type(), p.protocol_type(), p.hardware_len(), p.protocol_len()), (1, 0x0800, 6, 4));
        assert_eq!(Repr::parse(&p), request());
    }

    #[test]
    fn parse_reply() {
        let p = Packet::new_checked(&REPLY[..]).unwrap();
        let r = Repr::parse(&p);
        assert_eq!(r, request().reply(M2));
        assert_eq!(r.operation, OP_REPLY);
    }

    #[test]
    fn emit_reply() {
        let mut buf = [0u8; PACKET_LEN];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        request().reply(M2).emit(&mut p);
        assert_eq!(buf, REPLY);
    }

    #[test]
    fn emit_request_overwrites() {
        let mut buf = [0xeeu8; PACKET_LEN];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        request().emit(&mut p);
        assert_eq!(&buf[..], &REQUEST_PADDED[..PACKET_LEN]);
    }

    #[test]
    fn setters() {
        let mut buf = REPLY;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.set_operation(OP_REQUEST);
        p.set_sender_mac(M1);
        p.set_sender_ip(IP1);
        p.set_target_mac(MacAddr::ZERO);
        p.set_target_ip(IP2);
        assert_eq!(Repr::parse(&p), request());
        assert_eq!(p.into_inner().len(), 28);
    }

    #[test]
    fn reject_truncated() {
        for len in 0..PACKET_LEN {
            assert_eq!(Packet::new_checked(&REPLY[..len]).unwrap_err(), WireError::Truncated);
        }
    }

    #[test]
    fn reject_non_ethernet_ipv4() {
        for (at, v) in [(1, 6u8), (2, 0x86), (3, 0x06), (4, 8), (5, 16)] {
            let mut b = REPLY;
            b[at] = v;
            assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), WireError::Unsupported);
        }
    }
}
