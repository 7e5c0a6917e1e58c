//! TCP segments over IPv4 (RFC 9293), header only.
//!
//! Owns the TCP header layout (options as opaque bytes) and the TCP checksum
//! with the IPv4 pseudo header. TCP has no length field: the segment is the
//! whole buffer, so pass exactly the IPv4 payload.
//!
//! Promise: once [`Packet::new_checked`] has accepted a buffer (length >= 20,
//! `20 <= data offset*4 <= len`), no accessor or setter of that `Packet` can
//! panic. `options()`, `payload()` and `payload_mut()` clamp to the buffer, so
//! they stay panic-free even after `set_header_len` wrote a bad value.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use super::checksum;
use super::ipv4::protocol;
use super::{clamped, clamped_mut, read_u16, read_u32, write_u16, write_u32, WireError};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;

/// Bits of [`Packet::flags`].
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    /// ECN-Echo (RFC 3168).
    pub const ECE: u8 = 0x40;
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: u8 = 0x80;
}

/// A read/write view of a TCP segment.
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

    /// `Truncated` if shorter than 20 bytes; `BadHeaderLength` if the data
    /// offset is below 5 or the header runs past the buffer.
    pub fn check_len(&self) -> Result<(), WireError> {
        let d = self.buffer.as_ref();
        if d.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN || hl > d.len() {
            return Err(WireError::BadHeaderLength);
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

    pub fn seq_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQ)
    }

    pub fn ack_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::ACK)
    }

    /// Header length in bytes (data offset * 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFFSET] >> 4) * 4
    }

    /// The flag byte (see [`flags`]); the NS bit is not included.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    pub fn window(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::WINDOW)
    }

    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn urgent(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// The options, i.e. `20..header_len`.
    pub fn options(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), HEADER_LEN, self.header_len())
    }

    /// Everything after the header.
    pub fn payload(&self) -> &[u8] {
        let d = self.buffer.as_ref();
        clamped(d, self.header_len(), d.len())
    }

    /// Pseudo header + whole segment, checksum field included, folded.
    fn raw_sum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let d = self.buffer.as_ref();
        // An IPv4 payload is below 64 KiB; truncation only matters for
        // buffers that could never be a TCP segment anyway.
        let pseudo = checksum::pseudo_header_v4(src, dst, protocol::TCP, d.len() as u16);
        checksum::fold(checksum::combine(pseudo, checksum::sum(d)))
    }

    /// The checksum over the whole buffer with the pseudo header is correct.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.raw_sum(src, dst) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    pub fn set_dst_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    pub fn set_seq_number(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::SEQ, value);
    }

    pub fn set_ack_number(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::ACK, value);
    }

    /// Writes the data offset (`bytes / 4`, masked to 4 bits: pass a multiple
    /// of 4 between 20 and 60). The low nibble (reserved/NS) is kept.
    pub fn set_header_len(&mut self, bytes: usize) {
        let d = self.buffer.as_mut();
        let off = ((bytes / 4) & 0x0f) as u8;
        d[field::DATA_OFFSET] = (off << 4) | (d[field::DATA_OFFSET] & 0x0f);
    }

    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    pub fn set_window(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::WINDOW, value);
    }

    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    pub fn set_urgent(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::URGENT, value);
    }

    /// Mutable bytes after the header.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        let d = self.buffer.as_mut();
        let end = d.len();
        clamped_mut(d, start, end)
    }

    /// Computes the checksum with the IPv4 pseudo header over the whole
    /// buffer.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = !self.raw_sum(src, dst);
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 5);
    const B: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 9);

    // SYN 10.1.0.5:40000 -> 10.2.0.9:443, seq 0x11223344, window 64240,
    // options MSS 1460, SACK-permitted, timestamps, NOP, window scale 7;
    // checksum 0x4085.
    static SYN: [u8; 40] = [
        0x9c, 0x40, 0x01, 0xbb, 0x11, 0x22, 0x33, 0x44, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0x40, 0x85,
        0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x0a, 0x0b, 0x0c, 0x0d, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x03, 0x03, 0x07,
    ];

    // PSH|ACK 10.2.0.9:443 -> 10.1.0.5:40000, seq 0xa0b0c0d0, ack 0x11223345,
    // window 501, payload "hello, weir\n" (odd length); checksum 0x19ee.
    static DATA: [u8; 32] = [
        0x01, 0xbb, 0x9c, 0x40, 0xa0, 0xb0, 0xc0, 0xd0, 0x11, 0x22, 0x33, 0x45, 0x50, 0x18, 0x01, 0xf5, 0x19, 0xee,
        0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x2c, 0x20, 0x77, 0x65, 0x69, 0x72, 0x0a,
    ];

    #[test]
    fn parse_syn() {
        let p = Packet::new_checked(&SYN[..]).unwrap();
        assert_eq!(p.src_port(), 40000);
        assert_eq!(p.dst_port(), 443);
        assert_eq!(p.seq_number(), 0x1122_3344);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.flags(), flags::SYN);
        assert_eq!(p.window(), 64240);
        assert_eq!(p.checksum(), 0x4085);
        assert_eq!(p.urgent(), 0);
        assert_eq!(p.options(), &SYN[20..]);
        assert_eq!(&p.options()[..4], &[2, 4, 0x05, 0xb4]);
        assert!(p.payload().is_empty());
        assert!(p.verify_checksum(A, B));
        assert!(!p.verify_checksum(A, Ipv4Addr::new(10, 2, 0, 10)));
    }

    #[test]
    fn parse_data() {
        let p = Packet::new_checked(&DATA[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (443, 40000));
        assert_eq!(p.seq_number(), 0xa0b0_c0d0);
        assert_eq!(p.ack_number(), 0x1122_3345);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.flags(), flags::PSH | flags::ACK);
        assert_eq!(p.window(), 501);
        assert!(p.options().is_empty());
        assert_eq!(p.payload(), b"hello, weir\n");
        assert!(p.verify_checksum(B, A));
    }

    #[test]
    fn build_syn() {
        let mut b = [0u8; 40];
        b[20..].copy_from_slice(&SYN[20..]);
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_src_port(40000);
        p.set_dst_port(443);
        p.set_seq_number(0x1122_3344);
        p.set_ack_number(0);
        p.set_header_len(40);
        p.set_flags(flags::SYN);
        p.set_window(64240);
        p.set_urgent(0);
        p.fill_checksum(A, B);
        assert_eq!(b, SYN);
    }

    #[test]
    fn build_data() {
        let mut b = [0xffu8; 32];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_src_port(443);
        p.set_dst_port(40000);
        p.set_seq_number(0xa0b0_c0d0);
        p.set_ack_number(0x1122_3345);
        p.set_header_len(20);
        b[12] &= 0xf0; // reserved bits of the 0xff fill
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_flags(flags::PSH | flags::ACK);
        p.set_window(501);
        p.set_urgent(0);
        p.payload_mut().copy_from_slice(b"hello, weir\n");
        p.fill_checksum(B, A);
        assert_eq!(b, DATA);
    }

    #[test]
    fn set_header_len_keeps_low_nibble() {
        let mut b = DATA;
        b[12] = 0x51;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_header_len(24);
        assert_eq!(b[12], 0x61);
    }

    #[test]
    fn checksum_detects_corruption() {
        let mut b = DATA;
        b[25] ^= 0x20;
        assert!(!Packet::new_checked(&b[..]).unwrap().verify_checksum(B, A));
    }

    #[test]
    fn reject_truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&SYN[..len]).unwrap_err(), WireError::Truncated);
        }
    }

    #[test]
    fn reject_bad_header_len() {
        for off in 0u8..5 {
            let mut b = DATA;
            b[12] = off << 4;
            assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), WireError::BadHeaderLength);
        }
        // Options cut off: 40-byte header in 39 bytes.
        assert_eq!(Packet::new_checked(&SYN[..39]).unwrap_err(), WireError::BadHeaderLength);
        let mut b = DATA;
        b[12] = 0xf0;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), WireError::BadHeaderLength);
        // Header exactly the buffer is fine.
        let mut b = DATA;
        b[12] = 0x80;
        assert!(Packet::new_checked(&b[..]).unwrap().payload().is_empty());
    }

    #[test]
    fn clamped_after_bad_set_header_len() {
        let mut b = DATA;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_header_len(60);
        assert!(p.payload().is_empty());
        assert!(p.payload_mut().is_empty());
        assert_eq!(p.options().len(), 12);
        p.set_header_len(0);
        assert_eq!(p.payload().len(), 32);
        assert!(p.options().is_empty());
    }
}
