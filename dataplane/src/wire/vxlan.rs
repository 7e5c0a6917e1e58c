//! VXLAN headers (RFC 7348).
//!
//! Owns the 8-byte VXLAN header that sits in a UDP payload (destination port
//! [`DEFAULT_PORT`]): a flags byte whose I bit says the VNI is valid, 24
//! reserved bits, the 24-bit VNI and 8 more reserved bits. The payload is the
//! inner Ethernet frame.
//!
//! Promise: once [`Packet::new_checked`] has accepted a buffer (length >= 8),
//! no accessor or setter of that `Packet` can panic. `new_checked` does not
//! look at the flags; [`Repr::parse`] refuses a header without the I flag.
#![forbid(unsafe_code)]

use super::{read_u32, WireError};

mod field {
    use std::ops::{Range, RangeFrom};
    pub const FLAGS: usize = 0;
    pub const RESERVED1: Range<usize> = 1..4;
    pub const VNI: Range<usize> = 4..7;
    pub const RESERVED2: usize = 7;
    pub const PAYLOAD: RangeFrom<usize> = 8..;
}

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = 8;
/// IANA-assigned UDP destination port.
pub const DEFAULT_PORT: u16 = 4789;
/// The I flag: the VNI field is valid.
pub const FLAG_VNI: u8 = 0x08;
/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;

/// A read/write view of a VXLAN header and its inner frame.
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

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The I flag is set.
    pub fn has_vni(&self) -> bool {
        self.flags() & FLAG_VNI != 0
    }

    /// The 24-bit VNI (meaningful only if `has_vni()`).
    pub fn vni(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::VNI.start) >> 8
    }

    /// The inner Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    /// Writes the low 24 bits of `vni` and zeroes both reserved fields
    /// (bytes 1..4 and 7). The flags byte is left alone.
    pub fn set_vni(&mut self, vni: u32) {
        let d = self.buffer.as_mut();
        d[field::RESERVED1].fill(0);
        let v = (vni & MAX_VNI).to_be_bytes();
        d[field::VNI].copy_from_slice(&v[1..]);
        d[field::RESERVED2] = 0;
    }

    /// The inner Ethernet frame, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// A decoded VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub vni: u32,
}

impl Repr {
    /// `Unsupported` if the I flag is clear. Other flag bits and the reserved
    /// fields are ignored, as RFC 7348 asks of receivers.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, WireError> {
        if !packet.has_vni() {
            return Err(WireError::Unsupported);
        }
        Ok(Repr { vni: packet.vni() })
    }

    /// Writes flags 0x08, zero reserved fields and the VNI (low 24 bits).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_flags(FLAG_VNI);
        packet.set_vni(self.vni);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // VXLAN VNI 42 carrying an Ethernet/IPv4/ICMP echo request (46 bytes).
    static VXLAN_42: [u8; 54] = [
        0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x02, 0x00, 0x00, 0x00, 0x0a, 0x02, 0x02, 0x00, 0x00, 0x00,
        0x0a, 0x01, 0x08, 0x00, 0x45, 0x00, 0x00, 0x20, 0x00, 0x42, 0x40, 0x00, 0x40, 0x01, 0xa5, 0x47, 0xc0, 0xa8,
        0x0a, 0x01, 0xc0, 0xa8, 0x0a, 0x02, 0x08, 0x00, 0x17, 0x1e, 0x00, 0x07, 0x00, 0x03, 0x77, 0x65, 0x69, 0x72,
    ];

    #[test]
    fn parse_vni_42() {
        let p = Packet::new_checked(&VXLAN_42[..]).unwrap();
        assert_eq!(p.flags(), FLAG_VNI);
        assert!(p.has_vni());
        assert_eq!(p.vni(), 42);
        assert_eq!(p.payload(), &VXLAN_42[8..]);
        assert_eq!(p.payload().len(), 46);
        assert_eq!(&p.payload()[12..14], &[0x08, 0x00]);
        assert_eq!(Repr::parse(&p), Ok(Repr { vni: 42 }));
    }

    #[test]
    fn emit_vni_42() {
        let mut b = [0xffu8; 54];
        b[8..].copy_from_slice(&VXLAN_42[8..]);
        let mut p = Packet::new_unchecked(&mut b[..]);
        Repr { vni: 42 }.emit(&mut p);
        assert_eq!(b, VXLAN_42);
    }

    #[test]
    fn vni_is_24_bits() {
        let mut b = [0u8; 8];
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_vni(0xab12_3456);
        assert_eq!(p.vni(), 0x12_3456);
        p.set_vni(MAX_VNI);
        assert_eq!(p.vni(), MAX_VNI);
        assert!(!p.has_vni());
        p.set_flags(0x0c);
        assert!(p.has_vni());
        assert_eq!(b, [0x0c, 0, 0, 0, 0xff, 0xff, 0xff, 0]);
    }

    #[test]
    fn reserved_bits_ignored_on_parse() {
        let mut b = VXLAN_42;
        b[1] = 0x12;
        b[7] = 0x34;
        b[0] = 0x88;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&p), Ok(Repr { vni: 42 }));
    }

    #[test]
    fn missing_i_flag_is_unsupported() {
        let mut b = VXLAN_42;
        b[0] = 0x00;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(!p.has_vni());
        assert_eq!(Repr::parse(&p), Err(WireError::Unsupported));
    }

    #[test]
    fn payload_mut_and_empty() {
        let mut b = VXLAN_42;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.payload_mut()[0] = 0xaa;
        assert_eq!(p.into_inner()[8], 0xaa);
        assert!(Packet::new_checked(&VXLAN_42[..8]).unwrap().payload().is_empty());
    }

    #[test]
    fn reject_truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&VXLAN_42[..len]).unwrap_err(), WireError::Truncated);
        }
    }
}
