//! UDP datagrams over IPv4 (RFC 768).
//!
//! Owns the 8-byte UDP header and the UDP checksum with the IPv4 pseudo
//! header. The length field, not the buffer, bounds the datagram: bytes past
//! it are ignored.
//!
//! Promise: once [`Packet::new_checked`] has accepted a buffer (length >= 8,
//! `8 <= length field <= len`), no accessor or setter of that `Packet` can
//! panic. `payload()`, `payload_mut()` and the checksum functions clamp to the
//! buffer, so they stay panic-free even after `set_len` wrote a bad value.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use super::checksum;
use super::ipv4::protocol;
use super::{clamped, clamped_mut, read_u16, write_u16, WireError};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A read/write view of a UDP datagram.
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

    /// `Truncated` if shorter than 8 bytes; `BadTotalLength` if the length
    /// field is below 8 or past the buffer.
    pub fn check_len(&self) -> Result<(), WireError> {
        let d = self.buffer.as_ref();
        if d.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let l = usize::from(self.len());
        if l < HEADER_LEN || l > d.len() {
            return Err(WireError::BadTotalLength);
        }
        Ok(())
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

    /// The length field: header plus payload, in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// `8..length`.
    pub fn payload(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), HEADER_LEN, usize::from(self.len()))
    }

    /// The datagram as the length field bounds it (clamped to the buffer).
    fn datagram(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), 0, usize::from(self.len()))
    }

    /// Checksum over pseudo header + datagram; the field itself is included,
    /// so a correct packet folds to 0xffff.
    fn raw_sum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let d = self.datagram();
        let pseudo = checksum::pseudo_header_v4(src, dst, protocol::UDP, self.len());
        checksum::fold(checksum::combine(pseudo, checksum::sum(d)))
    }

    /// True if the checksum field is 0 ("no checksum") or correct for this
    /// source and destination.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0 || self.raw_sum(src, dst) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    pub fn set_dst_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    /// Writes the length field (header plus payload).
    pub fn set_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Mutable `8..length`.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        clamped_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }

    /// Computes the checksum with the IPv4 pseudo header over the bytes the
    /// length field covers. A computed 0 is sent as 0xffff (0 means "none").
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = !self.raw_sum(src, dst);
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
    const RESOLVER: Ipv4Addr = Ipv4Addr::new(8, 8, 8, 8);

    // DNS query 192.168.1.2:53000 -> 8.8.8.8:53, A example.com, checksum
    // 0xe370, followed by 3 bytes that are not part of the datagram.
    static DNS_QUERY_PADDED: [u8; 40] = [
        0xcf, 0x08, 0x00, 0x35, 0x00, 0x25, 0xe3, 0x70, 0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x03, 0x63, 0x6f, 0x6d, 0x00, 0x00, 0x01, 0x00,
        0x01, 0xaa, 0xbb, 0xcc,
    ];

    #[test]
    fn parse_dns_query() {
        let p = Packet::new_checked(&DNS_QUERY_PADDED[..]).unwrap();
        assert_eq!(p.src_port(), 53000);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 37);
        assert_eq!(p.checksum(), 0xe370);
        assert_eq!(p.payload(), &DNS_QUERY_PADDED[8..37]);
        assert!(p.verify_checksum(CLIENT, RESOLVER));
        // Wrong pseudo header.
        assert!(!p.verify_checksum(CLIENT, Ipv4Addr::new(8, 8, 4, 4)));
        // The pseudo-header sum is symmetric in src/dst.
        assert!(p.verify_checksum(RESOLVER, CLIENT));
    }

    #[test]
    fn build_dns_query() {
        let mut b = [0u8; 37];
        b[8..].copy_from_slice(&DNS_QUERY_PADDED[8..37]);
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_src_port(53000);
        p.set_dst_port(53);
        p.set_len(37);
        p.fill_checksum(CLIENT, RESOLVER);
        assert_eq!(&b[..], &DNS_QUERY_PADDED[..37]);
    }

    #[test]
    fn zero_checksum_means_none() {
        let mut b = DNS_QUERY_PADDED;
        b[6] = 0;
        b[7] = 0;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum(CLIENT, RESOLVER));
        assert!(p.verify_checksum(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST));
        b[7] = 1;
        assert!(!Packet::new_checked(&b[..]).unwrap().verify_checksum(CLIENT, RESOLVER));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Choose the payload word so the checksum computes to 0.
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let mut b = [0x12, 0x34, 0x56, 0x78, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x00];
        let pseudo = checksum::pseudo_header_v4(src, dst, protocol::UDP, 10);
        let s = checksum::fold(checksum::combine(pseudo, checksum::sum(&b)));
        b[8..10].copy_from_slice(&(!s).to_be_bytes());
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum(src, dst);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(src, dst));
    }

    #[test]
    fn setters_and_payload_mut() {
        let mut b = DNS_QUERY_PADDED;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_src_port(1);
        p.set_dst_port(2);
        p.set_len(12);
        p.payload_mut().copy_from_slice(b"ping");
        p.fill_checksum(CLIENT, RESOLVER);
        assert!(p.verify_checksum(CLIENT, RESOLVER));
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (1, 2, 12));
        assert_eq!(p.payload(), b"ping");
        let _ = p.into_inner();
        assert_eq!(&b[..6], &[0, 1, 0, 2, 0, 12]);
        assert_eq!(&b[8..12], b"ping");
    }

    #[test]
    fn empty_payload() {
        let b = [0x00, 0x07, 0x00, 0x07, 0x00, 0x08, 0x00, 0x00];
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.payload().is_empty());
        assert!(p.verify_checksum(CLIENT, RESOLVER));
    }

    #[test]
    fn reject_truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&DNS_QUERY_PADDED[..len]).unwrap_err(), WireError::Truncated);
        }
    }

    #[test]
    fn reject_bad_length() {
        for l in [0u16, 1, 7, 41, 0xffff] {
            let mut b = DNS_QUERY_PADDED;
            b[4..6].copy_from_slice(&l.to_be_bytes());
            assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), WireError::BadTotalLength);
        }
        // Cut inside the datagram.
        assert_eq!(Packet::new_checked(&DNS_QUERY_PADDED[..36]).unwrap_err(), WireError::BadTotalLength);
        // Length exactly the buffer is fine.
        let mut b = DNS_QUERY_PADDED;
        b[4..6].copy_from_slice(&40u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&b[..]).unwrap().payload().len(), 32);
    }

    #[test]
    fn clamped_after_bad_set_len() {
        let mut b = DNS_QUERY_PADDED;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_len(0xffff);
        assert_eq!(p.payload().len(), 32);
        assert_eq!(p.payload_mut().len(), 32);
        p.set_len(3);
        assert!(p.payload().is_empty());
        p.fill_checksum(CLIENT, RESOLVER);
        let _ = p.verify_checksum(CLIENT, RESOLVER);
    }
}
