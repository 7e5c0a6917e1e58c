//! ICMPv4 messages (RFC 792, RFC 1191 for the next-hop MTU).
//!
//! Owns the 8-byte ICMP header: type, code, checksum and the 4-byte
//! "rest of header" (echo identifier/sequence, or the next-hop MTU of a
//! fragmentation-needed message). The view covers the whole ICMP message, so
//! pass it exactly the IPv4 payload: the checksum is computed over all of it.
//!
//! Promise: once [`Packet::new_checked`] has accepted a buffer (length >= 8),
//! no accessor or setter of that `Packet` can panic.
#![forbid(unsafe_code)]

use super::checksum;
use super::{read_u16, read_u32, write_u16, write_u32, WireError};

mod field {
    use std::ops::RangeFrom;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: usize = 4;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const NEXT_HOP_MTU: usize = 6;
    pub const PAYLOAD: RangeFrom<usize> = 8..;
}

/// Length of the ICMP header.
pub const HEADER_LEN: usize = 8;

/// ICMP message types.
pub mod msg {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
}

/// ICMP codes (meaning depends on the type).
pub mod code {
    /// Destination unreachable: network.
    pub const NET_UNREACHABLE: u8 = 0;
    /// Destination unreachable: host.
    pub const HOST_UNREACHABLE: u8 = 1;
    /// Destination unreachable: port.
    pub const PORT_UNREACHABLE: u8 = 3;
    /// Destination unreachable: fragmentation needed and DF set.
    pub const FRAG_NEEDED: u8 = 4;
    /// Time exceeded: TTL exceeded in transit.
    pub const TTL_EXCEEDED_IN_TRANSIT: u8 = 0;
}

/// A read/write view of an ICMPv4 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer`, failing with `Truncated` if it is shorter than 8 bytes.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The check behind [`Packet::new_checked`].
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

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Echo request/reply identifier.
    pub fn echo_ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo request/reply sequence number.
    pub fn echo_seq(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    /// Next-hop MTU of a fragmentation-needed message (bytes 6..8).
    pub fn next_hop_mtu(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::NEXT_HOP_MTU)
    }

    /// Bytes 4..8 as one word.
    pub fn rest_of_header(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::REST)
    }

    /// Everything after the 8-byte header (echo data, or the quoted IPv4
    /// header and first bytes of an error's offending packet).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }

    /// The checksum over the whole buffer is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    pub fn set_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    pub fn set_echo_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_IDENT, value);
    }

    pub fn set_echo_seq(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_SEQ, value);
    }

    /// Writes bytes 4..8 (zero them for unreachable/time-exceeded).
    pub fn set_rest_of_header(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::REST, value);
    }

    /// Writes bytes 6..8 (bytes 4..6 are left as they are).
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::NEXT_HOP_MTU, value);
    }

    /// Mutable bytes after the 8-byte header.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }

    /// Zeroes the checksum field, then computes it over the whole buffer.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Echo request id 0x1234 seq 1 with 56 bytes of data (a Linux ping),
    // checksum 0xd082.
    static ECHO_REQUEST: [u8; 64] = [
        0x08, 0x00, 0xd0, 0x82, 0x12, 0x34, 0x00, 0x01, 0x5f, 0x1d, 0x0a, 0x67, 0x00, 0x00, 0x00, 0x00, 0x10, 0x11,
        0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23,
        0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35,
        0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f,
    ];

    // Destination unreachable / fragmentation needed, next-hop MTU 1400,
    // quoting the offending IPv4 header and 8 bytes of its UDP header;
    // checksum 0x1a9a.
    static FRAG_NEEDED: [u8; 36] = [
        0x03, 0x04, 0x1a, 0x9a, 0x00, 0x00, 0x05, 0x78, 0x45, 0x00, 0x00, 0x1c, 0x11, 0x11, 0x40, 0x00, 0x40, 0x11,
        0x5d, 0xb8, 0x0a, 0x00, 0x00, 0x01, 0xc0, 0x00, 0x02, 0x07, 0xd6, 0xd8, 0x00, 0x35, 0x05, 0xdc, 0x00, 0x00,
    ];

    #[test]
    fn parse_echo_request() {
        let p = Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        assert_eq!(p.msg_type(), msg::ECHO_REQUEST);
        assert_eq!(p.code(), 0);
        assert_eq!(p.checksum(), 0xd082);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq(), 1);
        assert_eq!(p.rest_of_header(), 0x1234_0001);
        assert_eq!(p.payload(), &ECHO_REQUEST[8..]);
        assert!(p.verify_checksum());
    }

    #[test]
    fn parse_frag_needed() {
        let p = Packet::new_checked(&FRAG_NEEDED[..]).unwrap();
        assert_eq!(p.msg_type(), msg::DEST_UNREACHABLE);
        assert_eq!(p.code(), code::FRAG_NEEDED);
        assert_eq!(p.next_hop_mtu(), 1400);
        assert!(p.verify_checksum());
        let quoted = crate::wire::ipv4::Packet::new_unchecked(p.payload());
        assert_eq!(quoted.dst_addr(), std::net::Ipv4Addr::new(192, 0, 2, 7));
        assert!(quoted.verify_checksum());
    }

    #[test]
    fn echo_request_to_reply() {
        // What an ICMP responder does: flip the type, patch the checksum.
        let mut b = ECHO_REQUEST;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_msg_type(msg::ECHO_REPLY);
        p.fill_checksum();
        assert!(p.verify_checksum());
        // Type 8 -> 0 lowers the first word by 0x0800.
        assert_eq!(p.checksum(), 0xd882);
        let inc = crate::wire::checksum::update16(0xd082, 0x0800, 0x0000);
        assert_eq!(inc, 0xd882);
    }

    #[test]
    fn build_echo_request() {
        let mut b = [0u8; 64];
        b[8..].copy_from_slice(&ECHO_REQUEST[8..]);
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_msg_type(msg::ECHO_REQUEST);
        p.set_code(0);
        p.set_echo_ident(0x1234);
        p.set_echo_seq(1);
        p.fill_checksum();
        assert_eq!(b, ECHO_REQUEST);
    }

    #[test]
    fn build_frag_needed() {
        let mut b = [0xffu8; 36];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_msg_type(msg::DEST_UNREACHABLE);
        p.set_code(code::FRAG_NEEDED);
        p.set_rest_of_header(0);
        p.set_next_hop_mtu(1400);
        p.payload_mut().copy_from_slice(&FRAG_NEEDED[8..]);
        p.fill_checksum();
        assert_eq!(p.into_inner(), &FRAG_NEEDED[..]);
    }

    #[test]
    fn header_only_and_odd_length() {
        let mut b = [msg::TIME_EXCEEDED, code::TTL_EXCEEDED_IN_TRANSIT, 0, 0, 0, 0, 0, 0, 0x45];
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &[0x45]);
        // 0x0b00 + 0x4500 = 0x5000 -> checksum 0xafff.
        assert_eq!(p.checksum(), 0xafff);
    }

    #[test]
    fn reject_truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&ECHO_REQUEST[..len]).unwrap_err(), WireError::Truncated);
        }
        assert!(Packet::new_checked(&ECHO_REQUEST[..8]).unwrap().payload().is_empty());
    }
}
