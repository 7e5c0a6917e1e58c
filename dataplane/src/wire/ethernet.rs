//! Ethernet II frames (no FCS, no 802.1Q parsing).
//!
//! Owns the 14-byte Ethernet header layout: destination MAC, source MAC,
//! EtherType. A VLAN tag shows up as ethertype [`ethertype::VLAN`] and is left
//! to the caller.
//!
//! Promise: once [`Frame::new_checked`] has accepted a buffer (length >= 14),
//! no accessor or setter of that `Frame` can panic.
#![forbid(unsafe_code)]

use super::{read_u16, write_u16, MacAddr, WireError};

mod field {
    use std::ops::{Range, RangeFrom};
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: RangeFrom<usize> = 14..;
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = 14;

/// EtherType values the data plane cares about.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86dd;
}

/// A read/write view of an Ethernet II frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` without checking it.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps `buffer`, failing with `Truncated` if it is shorter than 14 bytes.
    pub fn new_checked(buffer: T) -> Result<Frame<T>, WireError> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// The check behind [`Frame::new_checked`].
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

    /// The whole underlying buffer.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Destination address.
    pub fn dst(&self) -> MacAddr {
        let d = self.buffer.as_ref();
        let mut m = [0u8; 6];
        m.copy_from_slice(&d[field::DST]);
        MacAddr(m)
    }

    /// Source address.
    pub fn src(&self) -> MacAddr {
        let d = self.buffer.as_ref();
        let mut m = [0u8; 6];
        m.copy_from_slice(&d[field::SRC]);
        MacAddr(m)
    }

    /// EtherType.
    pub fn ethertype(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// Everything after the header (including any padding).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    pub fn set_dst(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&mac.0);
    }

    pub fn set_src(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&mac.0);
    }

    pub fn set_ethertype(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ETHERTYPE, value);
    }

    /// Mutable payload, everything after the header.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// The decoded Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    pub src: MacAddr,
    pub dst: MacAddr,
    pub ethertype: u16,
}

impl Repr {
    /// Reads the header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Repr {
        Repr { src: frame.src(), dst: frame.dst(), ethertype: frame.ethertype() }
    }

    /// Writes the header into `frame` (which must be at least 14 bytes).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        frame.set_dst(self.dst);
        frame.set_src(self.src);
        frame.set_ethertype(self.ethertype);
    }

    /// Header plus `payload_len`.
    pub const fn buffer_len(payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Ethernet/IPv4/ICMP echo request 10.0.0.1 -> 10.0.0.2 (ping), 98 bytes.
    static PING_FRAME: [u8; 98] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45, 0x00, 0x00, 0x54,
        0xbe, 0xef, 0x40, 0x00, 0x40, 0x01, 0x67, 0xb7, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02, 0x08, 0x00,
        0xd0, 0x82, 0x12, 0x34, 0x00, 0x01, 0x5f, 0x1d, 0x0a, 0x67, 0x00, 0x00, 0x00, 0x00, 0x10, 0x11, 0x12, 0x13,
        0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25,
        0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37,
        0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f,
    ];

    // Broadcast ARP request, padded to the 60-byte minimum.
    static ARP_FRAME: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x01, 0x08, 0x00,
        0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x0a, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    const M1: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const M2: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);

    #[test]
    fn parse_ping() {
        let f = Frame::new_checked(&PING_FRAME[..]).unwrap();
        assert_eq!(f.dst(), M2);
        assert_eq!(f.src(), M1);
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.payload().len(), 84);
        assert_eq!(f.payload()[0], 0x45);
        assert_eq!(Repr::parse(&f), Repr { src: M1, dst: M2, ethertype: ethertype::IPV4 });
        assert_eq!(f.into_inner().len(), 98);
    }

    #[test]
    fn parse_arp_broadcast() {
        let f = Frame::new_checked(&ARP_FRAME[..]).unwrap();
        assert!(f.dst().is_broadcast());
        assert_eq!(f.src(), M1);
        assert_eq!(f.ethertype(), ethertype::ARP);
        assert_eq!(f.payload().len(), 46);
    }

    #[test]
    fn emit_matches_fixture() {
        let mut buf = [0u8; 98];
        buf[HEADER_LEN..].copy_from_slice(&PING_FRAME[HEADER_LEN..]);
        let mut f = Frame::new_unchecked(&mut buf[..]);
        Repr { src: M1, dst: M2, ethertype: ethertype::IPV4 }.emit(&mut f);
        assert_eq!(&buf[..], &PING_FRAME[..]);
        assert_eq!(Repr::buffer_len(84), 98);
    }

    #[test]
    fn setters_and_payload_mut() {
        let mut buf = PING_FRAME;
        let mut f = Frame::new_checked(&mut buf[..]).unwrap();
        f.set_dst(MacAddr::BROADCAST);
        f.set_src(M2);
        f.set_ethertype(ethertype::VLAN);
        f.payload_mut()[0] = 0xaa;
        assert_eq!(f.dst(), MacAddr::BROADCAST);
        assert_eq!(f.src(), M2);
        assert_eq!(f.ethertype(), 0x8100);
        assert_eq!(buf[14], 0xaa);
        assert_eq!(&buf[12..14], &[0x81, 0x00]);
    }

    #[test]
    fn header_only_frame() {
        let f = Frame::new_checked(&PING_FRAME[..14]).unwrap();
        assert!(f.payload().is_empty());
    }

    #[test]
    fn reject_truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(Frame::new_checked(&PING_FRAME[..len]).unwrap_err(), WireError::Truncated);
        }
    }
}
