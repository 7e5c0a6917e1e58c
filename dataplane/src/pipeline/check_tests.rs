//! The one-pass header checks of the fast path against the wire views
//! they replace: `check_ipv4` against `ipv4::Packet::new_checked` +
//! `verify_checksum` + the address and L4 checks, `flow_hash` against the
//! accessor-based hash, over random and mutated headers (every drop reason
//! and every accepted field must agree).

use std::net::Ipv4Addr;

use super::{bad_source, check_ipv4, l4_ok, overlay, DropReason, Ipv4Meta};
use crate::wire::tests::XorShift;
use crate::wire::{checksum, ethernet, ipv4, MacAddr, WireError};

const MAC: MacAddr = MacAddr([0x02, 0xfe, 0, 0, 0, 1]);

/// The checks as the wire views make them (the code `check_ipv4` replaced).
fn reference(frame: &[u8], mac: MacAddr) -> Result<Ipv4Meta, DropReason> {
    let (eth, body) = frame.split_at(ethernet::HEADER_LEN);
    if ethernet::Frame::new_unchecked(eth).dst() != mac {
        return Err(DropReason::NotForUs);
    }
    let ip = ipv4::Packet::new_checked(body).map_err(|e| match e {
        WireError::Truncated => DropReason::Ipv4Truncated,
        WireError::BadVersion => DropReason::Ipv4BadVersion,
        WireError::BadHeaderLength => DropReason::Ipv4BadIhl,
        WireError::BadTotalLength | WireError::Unsupported => DropReason::Ipv4BadTotalLength,
    })?;
    if !ip.verify_checksum() {
        return Err(DropReason::Ipv4BadChecksum);
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if bad_source(src) {
        return Err(DropReason::Ipv4BadSource);
    }
    if dst.is_multicast() || dst.is_broadcast() || dst.is_loopback() || dst.is_unspecified() {
        return Err(DropReason::Ipv4BadDestination);
    }
    if ip.frag_offset() == 0 && !l4_ok(ip.protocol(), ip.payload(), !ip.more_frags()) {
        return Err(DropReason::L4Malformed);
    }
    let flags_frag = u16::from_be_bytes([body[6], body[7]]);
    Ok(Ipv4Meta {
        src,
        dst,
        ttl: ip.ttl(),
        proto: ip.protocol(),
        header_len: ip.header_len() as u8,
        total_len: ip.total_len(),
        flags_frag,
    })
}

/// The hash as it was written with the packet's accessors.
fn reference_hash(ip: &ipv4::Packet<&[u8]>) -> u32 {
    let mut h = u64::from(u32::from(ip.src_addr())) << 32 | u64::from(u32::from(ip.dst_addr()));
    h ^= u64::from(ip.protocol()) << 56;
    if ip.frag_offset() == 0 && !ip.more_frags() {
        let p = ip.payload();
        if matches!(ip.protocol(), ipv4::protocol::TCP | ipv4::protocol::UDP) && p.len() >= 4 {
            h ^= u64::from(u32::from_be_bytes([p[0], p[1], p[2], p[3]])).rotate_left(17);
        }
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (h ^ (h >> 31)) as u32
}

fn same(a: Result<Ipv4Meta, DropReason>, b: Result<Ipv4Meta, DropReason>, frame: &[u8]) {
    match (a, b) {
        (Ok(a), Ok(b)) => {
            assert_eq!(
                (a.src, a.dst, a.ttl, a.proto, a.header_len, a.total_len, a.flags_frag),
                (b.src, b.dst, b.ttl, b.proto, b.header_len, b.total_len, b.flags_frag),
                "{frame:02x?}"
            );
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "{frame:02x?}"),
        (a, b) => panic!("{a:?} vs {b:?} for {frame:02x?}"),
    }
}

/// A frame with a plausible IPv4 header (random options, protocol, flags,
/// L4 bytes, lengths), often with a correct checksum, then mutated.
fn random_frame(rng: &mut XorShift) -> Vec<u8> {
    let opts = if rng.below(3) == 0 { 4 * rng.below(11) } else { 0 };
    let hl = ipv4::HEADER_LEN + opts;
    let l4_len = rng.below(48);
    let pad = if rng.below(4) == 0 { rng.below(8) } else { 0 };
    let mut f = vec![0u8; ethernet::HEADER_LEN + hl + l4_len + pad];
    rng.fill(&mut f);
    f[..6].copy_from_slice(&if rng.below(20) == 0 { MacAddr([2, 0, 0, 0, 0, 9]) } else { MAC }.0);
    let ip = &mut f[ethernet::HEADER_LEN..];
    ip[0] = 0x40 | (hl / 4) as u8;
    ip[2..4].copy_from_slice(&((hl + l4_len) as u16).to_be_bytes());
    ip[6] &= match rng.below(4) {
        0 => 0x40,
        1 => 0x60,
        _ => 0xff,
    };
    if rng.below(3) == 0 {
        ip[7] = 0;
        ip[6] &= 0xe0;
    }
    ip[9] = [ipv4::protocol::TCP, ipv4::protocol::UDP, ipv4::protocol::ICMP, ipv4::protocol::SCTP, 47][rng.below(5)];
    if ip[9] == ipv4::protocol::TCP && hl + 20 <= ip.len() {
        ip[hl + 12] = ((5 + rng.below(3)) as u8) << 4;
    }
    if ip[9] == ipv4::protocol::UDP && hl + 8 <= ip.len() {
        let ul = (l4_len as u16).wrapping_add(rng.below(3) as u16).wrapping_sub(1);
        ip[hl + 4..hl + 6].copy_from_slice(&ul.to_be_bytes());
    }
    match rng.below(8) {
        0 => ip[0] = (rng.next_u64() as u8) | 0x40, // version or IHL off (or not)
        1 => ip[2..4].copy_from_slice(&(rng.next_u64() as u16 % 100).to_be_bytes()),
        2 => ip[12] = [0, 127, 224, 255][rng.below(4)],
        3 => ip[16] = [0, 127, 224, 255][rng.below(4)],
        _ => {}
    }
    if rng.below(6) != 0 && (ip[0] & 0x0f) as usize * 4 <= ip.len() && ip[0] & 0x0f >= 5 {
        let ihl = (ip[0] & 0x0f) as usize * 4;
        ip[10] = 0;
        ip[11] = 0;
        let c = checksum::checksum(&ip[..ihl]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let cut = rng.below(6);
    if cut == 0 {
        let keep = ethernet::HEADER_LEN + rng.below(f.len() - ethernet::HEADER_LEN + 1);
        f.truncate(keep);
    }
    f
}

#[test]
fn check_ipv4_matches_the_wire_views() {
    let mut rng = XorShift(0x5eed);
    let mut reasons = std::collections::HashSet::new();
    let mut accepted = 0;
    for _ in 0..200_000 {
        let f = random_frame(&mut rng);
        let (fast, slow) = (check_ipv4(&f, MAC), reference(&f, MAC));
        match &slow {
            Ok(_) => accepted += 1,
            Err(r) => {
                reasons.insert(*r);
            }
        }
        same(fast, slow, &f);
    }
    // Every reason the checks give was exercised, and many headers passed.
    for r in [
        DropReason::NotForUs,
        DropReason::Ipv4Truncated,
        DropReason::Ipv4BadVersion,
        DropReason::Ipv4BadIhl,
        DropReason::Ipv4BadTotalLength,
        DropReason::Ipv4BadChecksum,
        DropReason::Ipv4BadSource,
        DropReason::Ipv4BadDestination,
        DropReason::L4Malformed,
    ] {
        assert!(reasons.contains(&r), "{r:?} never seen");
    }
    assert!(accepted > 10_000, "{accepted}");
}

#[test]
fn flow_hash_matches_the_accessors() {
    let mut rng = XorShift(99);
    for _ in 0..100_000 {
        let f = random_frame(&mut rng);
        let body = &f[ethernet::HEADER_LEN..];
        // The hash runs on checked packets only (`new_checked` passes).
        let Ok(ip) = ipv4::Packet::new_checked(body) else { continue };
        assert_eq!(overlay::flow_hash(&ip), reference_hash(&ip), "{body:02x?}");
    }
}

#[test]
fn meta_is_fragment() {
    let m = |flags_frag| Ipv4Meta {
        src: Ipv4Addr::LOCALHOST,
        dst: Ipv4Addr::LOCALHOST,
        ttl: 1,
        proto: 17,
        header_len: 20,
        total_len: 20,
        flags_frag,
    };
    assert!(!m(0).is_fragment());
    assert!(!m(0x4000).is_fragment()); // DF only
    assert!(m(0x2000).is_fragment()); // MF
    assert!(m(0x0001).is_fragment()); // offset
    assert!(m(0x8000 | 0x1fff).is_fragment());
}
