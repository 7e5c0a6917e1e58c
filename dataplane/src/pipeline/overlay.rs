//! The VXLAN overlay (RFC 7348): encapsulation of pod traffic for another
//! node, and what arrives on the uplink — ARP for the node IP and from
//! underlay neighbours, and VXLAN to decapsulate.
//!
//! Encapsulation writes, in front of the routed inner frame: Ethernet (uplink
//! MAC → the next hop's MAC), IPv4 (node IP → remote VTEP, TTL 64, DF set so
//! the underlay never fragments, DSCP/ECN copied from the inner header), UDP
//! (source port from a hash of the inner flow in 49152-65535 so the underlay
//! can spread flows; destination `overlay.vxlan_port`; checksum 0, allowed
//! for VXLAN over IPv4) and VXLAN (I flag, the network's VNI). Inner packets
//! longer than the underlay MTU minus 50 are refused: with DF the sender gets
//! ICMP fragmentation-needed with that MTU; without DF they are dropped
//! (VXLAN packets are never fragmented).
//!
//! Decapsulation accepts only IPv4/UDP to the node IP and the VXLAN port
//! from a MAC-valid frame, sent by a known VTEP (another node of the
//! cluster), with the I flag and a VNI of one of this node's networks; the inner frame is then checked like a pod's and routed to a
//! local pod of that network.

use std::net::Ipv4Addr;

use super::{checked, icmp_error, Action, DropReason, Events, PacketBuf, Step, Trace};
use crate::tables::{Hop, Network, Overlay, Tables, VXLAN_OVERHEAD};
use crate::wire::{arp, checksum, ethernet, icmp, ipv4, udp, vxlan, MacAddr};

use Action::{Drop, Forward};

/// The UDP source port range for VXLAN (RFC 7348 §5: dynamic ports).
pub const SRC_PORT_MIN: u16 = 49152;

/// A hash of the inner flow: addresses and protocol, and the ports of TCP and
/// UDP first fragments. Same flow, same value; it picks the UDP source port.
/// Reads the header bytes directly (a fixed 20-byte view), not through the
/// packet's accessors: it runs on every encapsulated packet.
pub fn flow_hash(ip: &ipv4::Packet<&[u8]>) -> u32 {
    let d = ip.as_bytes();
    let Some(f) = d.first_chunk::<{ ipv4::HEADER_LEN }>() else {
        return mix(0); // no header (not a packet the pipeline passes)
    };
    let (src, dst) =
        (u32::from_be_bytes([f[12], f[13], f[14], f[15]]), u32::from_be_bytes([f[16], f[17], f[18], f[19]]));
    let proto = f[9];
    let mut h = u64::from(src) << 32 | u64::from(dst);
    h ^= u64::from(proto) << 56;
    // Not a fragment: more-fragments clear and offset 0.
    let unfragmented = u16::from_be_bytes([f[6], f[7]]) & 0x3fff == 0;
    if unfragmented && matches!(proto, ipv4::protocol::TCP | ipv4::protocol::UDP) {
        // The ports, when the payload (header_len..total_len, clamped to
        // the buffer) holds at least four bytes.
        let hl = usize::from(f[0] & 0x0f) * 4;
        let tl = usize::from(u16::from_be_bytes([f[2], f[3]]));
        if let Some(p) = d.get(hl..hl + 4).filter(|_| tl >= hl + 4) {
            h ^= u64::from(u32::from_be_bytes([p[0], p[1], p[2], p[3]])).rotate_left(17);
        }
    }
    mix(h)
}

/// A 64-bit finaliser (splitmix64's) so every input bit reaches the low bits.
#[inline(always)]
fn mix(mut h: u64) -> u32 {
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (h ^ (h >> 31)) as u32
}

#[inline]
pub fn src_port(hash: u32) -> u16 {
    SRC_PORT_MIN + (hash % u32::from(u16::MAX - SRC_PORT_MIN + 1)) as u16
}

/// Routes a checked pod frame (network `net`) to a remote VTEP: inner MACs
/// and TTL as a router hop, then the outer headers.
pub(crate) fn encap<B: PacketBuf, T: Trace>(
    t: &Tables,
    net: &Network,
    pkt: &mut B,
    vtep: Ipv4Addr,
    vtep_mac: MacAddr,
    vni: u32,
    tr: &mut T,
) -> Action {
    let Some(o) = &t.overlay else {
        tr.note(Step::Note("a route to another node, but this node has no uplink"));
        return Drop(DropReason::NoRoute);
    };
    let (ip_len, dont_frag, dscp_ecn, hash) = {
        let ip = ipv4::Packet::new_unchecked(&pkt.data()[ethernet::HEADER_LEN..]);
        (usize::from(ip.total_len()), ip.dont_frag(), ip.dscp_ecn(), flow_hash(&ip))
    };
    // outer IPv4 = 20 + UDP 8 + VXLAN 8 + inner Ethernet 14 + inner IPv4
    let room = usize::from(o.mtu).saturating_sub(VXLAN_OVERHEAD);
    if ip_len > room {
        tr.note(Step::Note("longer than the tunnel's MTU (underlay MTU - 50)"));
        if !dont_frag {
            return Drop(DropReason::TooBigForTunnel);
        }
        return icmp_error(t, net, pkt, icmp::msg::DEST_UNREACHABLE, icmp::code::FRAG_NEEDED, room as u32)
            .unwrap_or(Drop(DropReason::TooBigForTunnel));
    }
    // Ethernet padding must not travel inside the tunnel.
    let inner_len = ethernet::HEADER_LEN + ip_len;
    let pad = pkt.len() - inner_len;
    if pad > 0 && pkt.trim(pad).is_err() {
        return Drop(DropReason::NoBufferRoom);
    }
    // A checked frame: at least an Ethernet and an IPv4 header.
    if let Some((eth, body)) = pkt.data_mut().split_first_chunk_mut::<{ ethernet::HEADER_LEN }>() {
        ipv4::Packet::new_unchecked(body).decrement_ttl();
        eth[..6].copy_from_slice(&vtep_mac.0);
        eth[6..12].copy_from_slice(&t.gateway_mac.0);
    }
    let next_hop = if o.underlay.contains(vtep) {
        vtep
    } else {
        match o.gateway {
            Some(gw) => gw,
            None => {
                tr.note(Step::Note("the VTEP is off the underlay subnet, and there is no underlay gateway"));
                return Drop(DropReason::NoRoute);
            }
        }
    };
    if pkt.prepend(VXLAN_OVERHEAD).is_err() {
        return Drop(DropReason::NoBufferRoom);
    }
    let dst_mac = t.neighbours.get(&next_hop).copied();
    let sport = src_port(hash);
    if T::ON {
        tr.note(Step::Encap { vtep, vni, next_hop, sport });
    }
    write_outer(pkt.data_mut(), o, dst_mac.unwrap_or(MacAddr::ZERO), vtep, vni, sport, dscp_ecn, inner_len);
    match dst_mac {
        Some(_) => Forward(o.uplink),
        None => Action::Resolve { port: o.uplink, next_hop },
    }
}

/// Writes the 50 bytes of outer headers at the front of `frame`, in
/// place through fixed-size views (no bounds checks, the IPv4 checksum an
/// unrolled sum of five words). The same bytes as the wire views' `emit`s:
/// IPv4 without options, ident 0, DF, TTL 64; UDP checksum 0; VXLAN flags
/// 0x08, reserved fields zero.
#[allow(clippy::too_many_arguments)]
#[inline]
fn write_outer(
    frame: &mut [u8],
    o: &Overlay,
    dst_mac: MacAddr,
    vtep: Ipv4Addr,
    vni: u32,
    sport: u16,
    dscp_ecn: u8,
    inner_len: usize,
) {
    let Some(out) = frame.first_chunk_mut::<VXLAN_OVERHEAD>() else {
        return; // prepended by the caller: never short
    };
    let udp_len = udp::HEADER_LEN + vxlan::HEADER_LEN + inner_len;
    let ip_len = (ipv4::HEADER_LEN + udp_len) as u16;
    out[0..6].copy_from_slice(&dst_mac.0);
    out[6..12].copy_from_slice(&o.uplink_mac.0);
    out[12..14].copy_from_slice(&ethernet::ethertype::IPV4.to_be_bytes());
    let (_, rest) = out.split_at_mut(ethernet::HEADER_LEN);
    let Some((ip, rest)) = rest.split_first_chunk_mut::<{ ipv4::HEADER_LEN }>() else {
        return; // 50 = 14 + 20 + 16: never
    };
    *ip = [0; ipv4::HEADER_LEN];
    ip[0] = 0x45;
    ip[1] = dscp_ecn;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = super::LOCAL_TTL;
    ip[9] = ipv4::protocol::UDP;
    ip[12..16].copy_from_slice(&o.node_ip.octets());
    ip[16..20].copy_from_slice(&vtep.octets());
    let c = !checksum::fold(checksum::sum_array(ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let Some(uv) = rest.first_chunk_mut::<{ udp::HEADER_LEN + vxlan::HEADER_LEN }>() else {
        return;
    };
    uv[0..2].copy_from_slice(&sport.to_be_bytes());
    uv[2..4].copy_from_slice(&o.vxlan_port.to_be_bytes());
    uv[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    uv[6..8].copy_from_slice(&[0, 0]); // no UDP checksum (RFC 7348 allows it over IPv4)
    let v = (vni & vxlan::MAX_VNI).to_be_bytes();
    if let Some(vx) = uv.last_chunk_mut::<{ vxlan::HEADER_LEN }>() {
        *vx = [vxlan::FLAG_VNI, 0, 0, 0, v[1], v[2], v[3], 0];
    }
}

/// Length of an Ethernet/IPv4 ARP frame (without padding).
pub const ARP_FRAME_LEN: usize = ethernet::HEADER_LEN + arp::PACKET_LEN;

/// An ARP request from the node on the uplink: "who has `target`" (with
/// `target == node_ip`, a gratuitous ARP announcing the node).
pub fn arp_request(o: &Overlay, target: Ipv4Addr) -> [u8; ARP_FRAME_LEN] {
    arp_request_from(o.uplink_mac, o.node_ip, target)
}

/// A broadcast ARP request "who has `target`? tell `sender_ip`".
pub fn arp_request_from(sender_mac: MacAddr, sender_ip: Ipv4Addr, target: Ipv4Addr) -> [u8; ARP_FRAME_LEN] {
    let mut f = [0u8; ARP_FRAME_LEN];
    let (eth, body) = f.split_at_mut(ethernet::HEADER_LEN);
    ethernet::Repr { src: sender_mac, dst: MacAddr::BROADCAST, ethertype: ethernet::ethertype::ARP }
        .emit(&mut ethernet::Frame::new_unchecked(eth));
    arp::Repr { operation: arp::OP_REQUEST, sender_mac, sender_ip, target_mac: MacAddr::ZERO, target_ip: target }
        .emit(&mut arp::Packet::new_unchecked(body));
    f
}

/// Sends a frame out of the uplink to `next_hop` on the underlay: MACs
/// rewritten (or the neighbour resolved first), nothing else.
pub(crate) fn to_underlay<B: PacketBuf, T: Trace>(
    t: &Tables,
    o: &Overlay,
    pkt: &mut B,
    next_hop: Ipv4Addr,
    tr: &mut T,
) -> Action {
    tr.note(Step::Underlay { next_hop });
    let mac = t.neighbours.get(&next_hop).copied();
    let mut eth = ethernet::Frame::new_unchecked(pkt.data_mut());
    eth.set_src(o.uplink_mac);
    match mac {
        Some(mac) => {
            eth.set_dst(mac);
            Forward(o.uplink)
        }
        None => Action::Resolve { port: o.uplink, next_hop },
    }
}

/// Fills in the outer destination MAC of a packet `encap` left waiting
/// (`Action::Resolve`) once the neighbour is known.
pub fn set_outer_dst<B: PacketBuf>(pkt: &mut B, mac: MacAddr) {
    if let Ok(mut eth) = ethernet::Frame::new_checked(pkt.data_mut()) {
        eth.set_dst(mac);
    }
}

/// ARP on the uplink: answer requests for the node IP and the LoadBalancer
/// IPs the node announces, and report what the
/// sender's addresses say (requests and replies alike) when the tables do not
/// know it yet.
pub(crate) fn uplink_arp_input<E: Events>(t: &Tables, o: &Overlay, frame: &mut [u8], ev: &mut E) -> Action {
    let (eth, body) = frame.split_at_mut(ethernet::HEADER_LEN);
    let mut eth = ethernet::Frame::new_unchecked(eth);
    let dst = eth.dst();
    if !(dst.is_broadcast() || dst == o.uplink_mac) {
        return Drop(DropReason::NotForUs);
    }
    let Ok(mut a) = arp::Packet::new_checked(body) else {
        return Drop(DropReason::ArpMalformed);
    };
    let (sender_ip, sender_mac, target) = (a.sender_ip(), a.sender_mac(), a.target_ip());
    // Report what the tables do not know yet, and every reply addressed to the
    // node: those answer the management thread's own requests (refreshes of
    // known neighbours included).
    let answer_to_us = a.operation() == arp::OP_REPLY && target == o.node_ip;
    if sender_mac.is_unicast()
        && sender_ip != o.node_ip
        && o.underlay.contains(sender_ip)
        && (answer_to_us || t.neighbours.get(&sender_ip) != Some(&sender_mac))
    {
        ev.neighbour(sender_ip, sender_mac);
    }
    match a.operation() {
        arp::OP_REQUEST if target == o.node_ip && sender_mac.is_unicast() && sender_ip != target => {
            super::arp_answer(&mut eth, &mut a, o.uplink_mac, o.node_ip)
        }
        // A LoadBalancer IP this node was elected to announce.
        arp::OP_REQUEST if sender_mac.is_unicast() && sender_ip != target && o.announces(target) => {
            super::arp_answer(&mut eth, &mut a, o.uplink_mac, target)
        }
        arp::OP_REPLY if dst == o.uplink_mac || target == o.node_ip || sender_ip == target => {
            Action::Consumed(super::Consumed::ArpOnUplink)
        }
        arp::OP_REQUEST if sender_ip == target => Action::Consumed(super::Consumed::ArpOnUplink),
        _ => Drop(DropReason::ArpNotForUs),
    }
}

/// IPv4 on the uplink: VXLAN for this node is decapsulated and routed to a
/// local pod; anything else is not (yet) weir's.
pub(crate) fn uplink_ipv4_input<B: PacketBuf, T: Trace>(
    t: &Tables,
    o: &Overlay,
    pkt: &mut B,
    nat: Option<&super::nat::Nat>,
    tr: &mut T,
) -> Action {
    let m = match checked(pkt.data(), o.uplink_mac, tr) {
        Ok(m) => m,
        Err(r) => return Drop(r),
    };
    if m.dst != o.node_ip {
        // externalIPs and LoadBalancer IPs.
        return match nat {
            Some(n) if t.services.is_frontend_addr(m.dst) => {
                tr.note(Step::Note("from outside to a Service frontend address"));
                from_outside(t, n, pkt, m, tr).unwrap_or(Drop(DropReason::NotForUs))
            }
            _ => {
                tr.note(Step::Note("on the uplink, not for the node IP nor a Service frontend"));
                Drop(DropReason::NotForUs)
            }
        };
    }
    let (outer_len, inner_at, inner_len, vni) = {
        // The outer header as checked (`m`), the UDP and VXLAN headers
        // through fixed-size views of its L4 bytes.
        let l4 = m.l4(pkt.data());
        let udp_hdr = l4.first_chunk::<{ udp::HEADER_LEN }>(); // UDP checked by check_ipv4
        let is_vxlan = m.proto == ipv4::protocol::UDP
            && !m.is_fragment()
            && udp_hdr.is_some_and(|u| u16::from_be_bytes([u[2], u[3]]) == o.vxlan_port);
        if !is_vxlan {
            // NodePorts, then the node's own traffic (SSH, the kubelet, ...):
            // its kernel's.
            tr.note(Step::Note("for the node IP, not VXLAN: a NodePort, else the node's kernel"));
            let served = nat.and_then(|n| from_outside(t, n, pkt, m, tr));
            return served.unwrap_or_else(|| super::host::to_host(t, o, pkt, tr));
        }
        // Only the cluster's nodes may put packets into a pod network.
        if !t.vteps.contains(&m.src) {
            return Drop(DropReason::VxlanUnknownVtep);
        }
        // The UDP payload: 8..length, clamped to the L4 bytes (as
        // `udp::Packet::payload`).
        let udp_len = udp_hdr.map_or(0, |u| usize::from(u16::from_be_bytes([u[4], u[5]])));
        let end = udp_len.min(l4.len());
        let udp_payload = l4.get(udp::HEADER_LEN.min(end)..end).unwrap_or(&[]);
        let Some(vx) = udp_payload.first_chunk::<{ vxlan::HEADER_LEN }>() else {
            return Drop(DropReason::VxlanMalformed);
        };
        if vx[0] & vxlan::FLAG_VNI == 0 {
            return Drop(DropReason::VxlanBadFlags);
        }
        let inner_len = udp_payload.len() - vxlan::HEADER_LEN;
        if inner_len < ethernet::HEADER_LEN {
            return Drop(DropReason::VxlanMalformed);
        }
        let inner_at = ethernet::HEADER_LEN + usize::from(m.header_len) + udp::HEADER_LEN + vxlan::HEADER_LEN;
        let vni = u32::from_be_bytes([0, vx[4], vx[5], vx[6]]);
        (ethernet::HEADER_LEN + usize::from(m.total_len), inner_at, inner_len, vni)
    };
    let Some(net_id) = t.vni_index.get(&vni).copied() else {
        return Drop(DropReason::VxlanUnknownVni);
    };
    if T::ON {
        tr.note(Step::Decap { vtep: m.src, vni });
    }
    // Strip Ethernet padding after the outer packet, then the outer headers.
    let pad = pkt.len() - outer_len;
    if pkt.trim(pad).is_err() || pkt.adj(inner_at).is_err() || pkt.len() != inner_len {
        return Drop(DropReason::VxlanMalformed);
    }
    decapped_input(t, net_id, pkt, nat, tr)
}

/// A packet from outside the cluster to a Service frontend (NodePort,
/// externalIP, LoadBalancer IP): translated and routed into the default pod
/// network, or `None` when it is no Service's.
fn from_outside<B: PacketBuf, T: Trace>(
    t: &Tables,
    n: &super::nat::Nat,
    pkt: &mut B,
    m: super::Ipv4Meta,
    tr: &mut T,
) -> Option<Action> {
    use super::nat::{nat_stage, NatResult, Origin};
    let net = t.network(crate::tables::DEFAULT_NETWORK)?;
    match nat_stage(t, n, net, Origin::Uplink, pkt, &m, tr) {
        NatResult::Untouched => None,
        NatResult::Done(a) => Some(a),
        NatResult::Translated if m.ttl <= 1 => {
            tr.note(Step::Note("TTL runs out here"));
            Some(Drop(DropReason::TtlExceeded))
        }
        NatResult::Translated => {
            let dst = super::current_dst(pkt.data());
            let hop = net.routes.lookup(dst);
            if T::ON {
                tr.note(Step::Route { vni: net.vni, dst, hop: hop.copied() });
            }
            Some(match hop {
                Some(hop) => super::route_to_hop(t, net, pkt, *hop, tr),
                None => super::beyond_pod_networks(t, net, pkt, dst, tr),
            })
        }
    }
}

/// A decapsulated frame of network `net`: checked like a pod's, then routed to
/// a local pod. No ICMP errors go back through the tunnel: a packet whose TTL
/// runs out here is dropped.
fn decapped_input<B: PacketBuf, T: Trace>(
    t: &Tables,
    net: crate::tables::NetId,
    pkt: &mut B,
    nat: Option<&super::nat::Nat>,
    tr: &mut T,
) -> Action {
    let Some(network) = t.network(net) else {
        return Drop(DropReason::VxlanUnknownVni);
    };
    let ethertype = ethernet::Frame::new_unchecked(pkt.data()).ethertype();
    if ethertype != ethernet::ethertype::IPV4 {
        return Drop(DropReason::UnknownEthertype);
    }
    let mut m = match checked(pkt.data(), t.gateway_mac, tr) {
        Ok(m) => m,
        Err(r) => return Drop(r),
    };
    if m.ttl <= 1 {
        tr.note(Step::Note("TTL runs out here (no ICMP errors go back through the tunnel)"));
        return Drop(DropReason::TtlExceeded);
    }
    // Replies of flows a remote client's node translated come back here
    // untranslated; flows this node translated find their reply entry.
    let mut translated = false;
    if let Some(n) = nat {
        match super::nat::nat_stage(t, n, network, super::nat::Origin::Tunnel, pkt, &m, tr) {
            super::nat::NatResult::Done(a) => return a,
            super::nat::NatResult::Translated => {
                m.dst = super::current_dst(pkt.data());
                translated = true;
            }
            super::nat::NatResult::Untouched => {}
        }
    }
    let hop = network.routes.lookup(m.dst);
    if T::ON {
        tr.note(Step::Route { vni: network.vni, dst: m.dst, hop: hop.copied() });
    }
    match hop {
        // Back into the tunnel only when NAT changed the destination.
        Some(Hop::Remote { .. }) if !translated => {
            tr.note(Step::Note("decapsulated, and routed back into the tunnel"));
            Drop(DropReason::OverlayLoop)
        }
        Some(hop) => super::route_to_hop(t, network, pkt, *hop, tr),
        // Answers of Services reached from outside, translated back here.
        None if translated => super::beyond_pod_networks(t, network, pkt, m.dst, tr),
        None => Drop(DropReason::NoRoute),
    }
}

#[cfg(test)]
mod tests;
