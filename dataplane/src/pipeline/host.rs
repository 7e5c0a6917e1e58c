//! The host path: the node's own kernel behind a port of weir's (a TAP or a
//! veth), carrying the node IP, as if weir were the node's NIC and router.
//!
//! - From the uplink, IPv4 for the node IP that is not VXLAN (SSH, the
//!   kubelet's API traffic, ...) goes to the kernel unchanged but for its
//!   MACs; the kernel's MAC is the resolved neighbour entry of the node IP.
//! - From the kernel, packets to pods are routed like a pod's (local pods
//!   directly, other nodes' pods over VXLAN); everything else goes out of the
//!   uplink to its underlay next hop, unchanged but for its MACs (weir is the
//!   node's NIC here, not a router hop).
//! - From pods, the node IP is routed to the kernel (a router hop).
//! - ARP from the kernel is answered for every address but the node IP
//!   (weir is the kernel's only neighbour); what it says of the node IP's
//!   MAC is reported like an underlay neighbour.

use super::overlay::{arp_request_from, encap, ARP_FRAME_LEN};
use super::{arp_answer, checked, forward_local, Action, Consumed, DropReason, Events, PacketBuf, Step, Trace};
use crate::tables::{Hop, Overlay, Tables, DEFAULT_NETWORK};
use crate::wire::{arp, ethernet, ipv4};

use Action::{Drop, Forward};

/// Sends a frame to the kernel: destination the kernel's MAC (or wait for it
/// to be resolved), source weir's gateway MAC.
pub(crate) fn to_host<B: PacketBuf, T: Trace>(t: &Tables, o: &Overlay, pkt: &mut B, tr: &mut T) -> Action {
    let Some(host) = o.host else {
        tr.note(Step::Note("for the node's kernel, but there is no host port"));
        return Drop(DropReason::LocalNotServed);
    };
    tr.note(Step::Note("to the node's kernel through the host port"));
    let mac = t.neighbours.get(&o.node_ip).copied();
    let mut eth = ethernet::Frame::new_unchecked(pkt.data_mut());
    eth.set_src(t.gateway_mac);
    match mac {
        Some(m) => {
            eth.set_dst(m);
            Forward(host)
        }
        None => Action::Resolve { port: host, next_hop: o.node_ip },
    }
}

/// A pod's packet for the node IP: one router hop (TTL), then to the kernel.
pub(crate) fn forward_to_host<B: PacketBuf, T: Trace>(t: &Tables, pkt: &mut B, tr: &mut T) -> Action {
    let Some(o) = &t.overlay else {
        return Drop(DropReason::NoRoute);
    };
    ipv4::Packet::new_unchecked(&mut pkt.data_mut()[ethernet::HEADER_LEN..]).decrement_ttl();
    to_host(t, o, pkt, tr)
}

/// ARP from the kernel.
pub(crate) fn host_arp_input<E: Events>(t: &Tables, o: &Overlay, frame: &mut [u8], ev: &mut E) -> Action {
    let (eth, body) = frame.split_at_mut(ethernet::HEADER_LEN);
    let mut eth = ethernet::Frame::new_unchecked(eth);
    let dst = eth.dst();
    if !(dst.is_broadcast() || dst == t.gateway_mac) {
        return Drop(DropReason::NotForUs);
    }
    let Ok(mut a) = arp::Packet::new_checked(body) else {
        return Drop(DropReason::ArpMalformed);
    };
    let (sender_ip, sender_mac, target, op) = (a.sender_ip(), a.sender_mac(), a.target_ip(), a.operation());
    if sender_ip == o.node_ip
        && sender_mac.is_unicast()
        && (op == arp::OP_REPLY || t.neighbours.get(&o.node_ip) != Some(&sender_mac))
    {
        ev.neighbour(sender_ip, sender_mac);
    }
    match op {
        arp::OP_REQUEST if target != o.node_ip && target != sender_ip && sender_mac.is_unicast() => {
            arp_answer(&mut eth, &mut a, t.gateway_mac, target)
        }
        _ if sender_ip == o.node_ip => Action::Consumed(Consumed::ArpOnHost),
        _ => Drop(DropReason::ArpNotForUs),
    }
}

/// IPv4 from the kernel.
pub(crate) fn host_ipv4_input<B: PacketBuf, T: Trace>(
    t: &Tables,
    o: &Overlay,
    pkt: &mut B,
    nat: Option<&super::nat::Nat>,
    tr: &mut T,
) -> Action {
    let mut m = match checked(pkt.data(), t.gateway_mac, tr) {
        Ok(m) => m,
        Err(r) => return Drop(r),
    };
    let Some(net) = t.network(DEFAULT_NETWORK) else {
        return Drop(DropReason::NoRoute);
    };
    // The node reaches Services too (kubelet, host-network pods).
    if let Some(n) = nat {
        match super::nat::nat_stage(t, n, net, super::nat::Origin::Host, pkt, &m, tr) {
            super::nat::NatResult::Done(a) => return a,
            super::nat::NatResult::Translated => m.dst = super::current_dst(pkt.data()),
            super::nat::NatResult::Untouched => {}
        }
    }
    let hop = net.routes.lookup(m.dst).copied();
    if T::ON {
        tr.note(Step::Route { vni: net.vni, dst: m.dst, hop });
    }
    match hop {
        Some(_) if m.ttl <= 1 => Drop(DropReason::TtlExceeded),
        Some(Hop::Local { port, mac }) => forward_local(t, pkt.data_mut(), port, mac),
        Some(Hop::Remote { vtep, vtep_mac, net: to }) => match t.network(to) {
            Some(n) => encap(t, net, pkt, vtep, vtep_mac, n.vni, tr),
            None => Drop(DropReason::NoRoute),
        },
        Some(Hop::Host) => {
            tr.note(Step::Note("from the node's kernel to its own address"));
            Drop(DropReason::LocalNotServed)
        }
        None => {
            // The node's own traffic to the underlay and beyond.
            let Some(next_hop) = o.next_hop(m.dst) else {
                tr.note(Step::Note("off the underlay subnet, and there is no underlay gateway"));
                return Drop(DropReason::NoRoute);
            };
            super::overlay::to_underlay(t, o, pkt, next_hop, tr)
        }
    }
}

/// "Who has the node IP?", asked of the kernel from the gateway.
pub fn host_arp_request(t: &Tables, o: &Overlay) -> [u8; ARP_FRAME_LEN] {
    let gw = t.network(DEFAULT_NETWORK).map_or(o.node_ip, |n| n.gateway_ip);
    arp_request_from(t.gateway_mac, gw, o.node_ip)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::config::NodeConfig;
    use crate::pipeline::testkit;
    use crate::pipeline::{process_events, ReplyKind, TestBuf};
    use crate::tables::PortEntry;
    use crate::wire::{tcp, MacAddr};
    use Action::Reply;

    const GW_MAC: MacAddr = MacAddr([2, 0xfe, 0, 0, 0, 1]);
    const POD_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    const UPLINK_MAC: MacAddr = MacAddr([2, 0, 0, 0xaa, 0, 1]);
    const PEER_MAC: MacAddr = MacAddr([2, 0, 0, 0xaa, 0, 2]);
    const KERNEL_MAC: MacAddr = MacAddr([2, 0, 0, 0xbb, 0, 1]);
    const CLIENT_MAC: MacAddr = MacAddr([2, 0, 0, 0xcc, 0, 1]);
    const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
    const PEER_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
    const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 9);
    const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
    const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);
    const POD: u16 = 0;
    const UPLINK: u16 = 1;
    const HOST: u16 = 2;

    /// pod 10.1.0.2 on port 0, the uplink on 1, the kernel on 2; node2's pods
    /// behind 192.168.50.2; the kernel's MAC known unless `kernel_known` is false.
    fn tables(kernel_known: bool, underlay_gateway: Option<Ipv4Addr>) -> Tables {
        let cfg = NodeConfig::from_toml(
            "[node]\nname = \"n\"\npod_cidr = \"10.1.0.0/24\"\n[gateway]\nip = \"10.1.0.1\"\nmac = \"02:fe:00:00:00:01\"\n",
        )
        .unwrap();
        let mut t = Tables::new(&cfg, 1);
        t.add_port(POD, PortEntry::pod("pod", POD_IP, POD_MAC, 0), 1);
        t.add_port(UPLINK, PortEntry { uplink: true, ..PortEntry::plain("uplink") }, 1);
        t.add_port(HOST, PortEntry { host: true, ..PortEntry::plain("host") }, 1);
        t.overlay = Some(Overlay { gateway: underlay_gateway, host: Some(HOST), ..testkit::overlay(UPLINK) });
        t.add_remote_route(
            0,
            "10.2.0.0/24".parse().unwrap(),
            Hop::Remote { vtep: PEER_IP, vtep_mac: MacAddr([2, 0xfe, 0, 0, 0, 2]), net: 0 },
        );
        t.networks[0].routes.insert(crate::tables::cidr::Ipv4Cidr::host(NODE_IP), Hop::Host);
        t.neighbours.insert(PEER_IP, PEER_MAC);
        if kernel_known {
            t.neighbours.insert(NODE_IP, KERNEL_MAC);
        }
        t
    }

    /// A TCP SYN frame.
    fn syn(src_mac: MacAddr, dst_mac: MacAddr, src: Ipv4Addr, dst: Ipv4Addr, ttl: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        ethernet::Repr { src: src_mac, dst: dst_mac, ethertype: ethernet::ethertype::IPV4 }
            .emit(&mut ethernet::Frame::new_unchecked(&mut f[..]));
        ipv4::Repr {
            src,
            dst,
            protocol: ipv4::protocol::TCP,
            ttl,
            payload_len: 20,
            dscp_ecn: 0,
            ident: 9,
            dont_frag: true,
        }
        .emit(&mut ipv4::Packet::new_unchecked(&mut f[14..]));
        let mut t = tcp::Packet::new_unchecked(&mut f[34..]);
        t.set_src_port(50000);
        t.set_dst_port(22);
        t.set_header_len(20);
        t.set_flags(tcp::flags::SYN);
        t.fill_checksum(src, dst);
        f
    }

    fn arp(op: u16, src_mac: MacAddr, dst_mac: MacAddr, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
        let mut f = vec![0u8; 42];
        ethernet::Repr { src: src_mac, dst: dst_mac, ethertype: ethernet::ethertype::ARP }
            .emit(&mut ethernet::Frame::new_unchecked(&mut f[..]));
        arp::Repr {
            operation: op,
            sender_mac: src_mac,
            sender_ip: sender,
            target_mac: MacAddr::ZERO,
            target_ip: target,
        }
        .emit(&mut arp::Packet::new_unchecked(&mut f[14..]));
        f
    }

    fn run(t: &Tables, port: u16, frame: &[u8]) -> (Action, Vec<u8>, Vec<(Ipv4Addr, MacAddr)>) {
        let mut b = TestBuf::new(frame);
        let mut ev = Vec::new();
        let a = process_events(t, port, &mut b, &mut ev);
        (a, b.to_vec(), ev)
    }

    /// The same frame with other MACs (what "unchanged but for its MACs" means).
    fn with_macs(frame: &[u8], dst: MacAddr, src: MacAddr) -> Vec<u8> {
        let mut f = frame.to_vec();
        f[0..6].copy_from_slice(&dst.0);
        f[6..12].copy_from_slice(&src.0);
        f
    }

    #[test]
    fn node_traffic_from_the_uplink_goes_to_the_kernel() {
        let t = tables(true, None);
        let ssh = syn(CLIENT_MAC, UPLINK_MAC, CLIENT_IP, NODE_IP, 64);
        let (a, out, _) = run(&t, UPLINK, &ssh);
        assert_eq!(a, Forward(HOST));
        assert_eq!(out, with_macs(&ssh, KERNEL_MAC, GW_MAC), "only the MACs change");
        // Kernel MAC not known yet: held for resolution of the node IP.
        let (a, out, _) = run(&tables(false, None), UPLINK, &ssh);
        assert_eq!(a, Action::Resolve { port: HOST, next_hop: NODE_IP });
        assert_eq!(&out[6..12], &GW_MAC.0);
        // Without a host port it is not weir's to take.
        let mut t = tables(true, None);
        t.overlay.as_mut().unwrap().host = None;
        assert_eq!(run(&t, UPLINK, &ssh).0, Drop(DropReason::LocalNotServed));
    }

    #[test]
    fn the_kernel_reaches_pods_and_the_underlay() {
        let t = tables(true, None);
        // A local pod: routed (TTL down by one).
        let (a, out, _) = run(&t, HOST, &syn(KERNEL_MAC, GW_MAC, NODE_IP, POD_IP, 64));
        assert_eq!(a, Forward(POD));
        assert_eq!(&out[0..6], &POD_MAC.0);
        assert_eq!(ipv4::Packet::new_checked(&out[14..]).unwrap().ttl(), 63);
        // A pod on node2: encapsulated for the uplink.
        let (a, out, _) = run(&t, HOST, &syn(KERNEL_MAC, GW_MAC, NODE_IP, REMOTE_POD, 64));
        assert_eq!(a, Forward(UPLINK));
        assert_eq!(out.len(), 54 + 50);
        let outer = ipv4::Packet::new_checked(&out[14..]).unwrap();
        assert_eq!((outer.src_addr(), outer.dst_addr()), (NODE_IP, PEER_IP));
        // An underlay host: out of the uplink as the node's NIC would send it.
        let to_peer = syn(KERNEL_MAC, GW_MAC, NODE_IP, PEER_IP, 64);
        let (a, out, _) = run(&t, HOST, &to_peer);
        assert_eq!(a, Forward(UPLINK));
        assert_eq!(out, with_macs(&to_peer, PEER_MAC, UPLINK_MAC));
        let (a, _, _) = run(&t, HOST, &syn(KERNEL_MAC, GW_MAC, NODE_IP, CLIENT_IP, 64));
        assert_eq!(a, Action::Resolve { port: UPLINK, next_hop: CLIENT_IP });
        // Beyond the underlay: through its gateway, or nowhere.
        let far = syn(KERNEL_MAC, GW_MAC, NODE_IP, Ipv4Addr::new(198, 51, 100, 7), 64);
        assert_eq!(run(&t, HOST, &far).0, Drop(DropReason::NoRoute));
        let gw = Ipv4Addr::new(192, 168, 50, 254);
        assert_eq!(run(&tables(true, Some(gw)), HOST, &far).0, Action::Resolve { port: UPLINK, next_hop: gw });
        // Checked like any packet.
        let mut bad = to_peer.clone();
        bad[24] ^= 0xff;
        assert_eq!(run(&t, HOST, &bad).0, Drop(DropReason::Ipv4BadChecksum));
        assert_eq!(run(&t, HOST, &with_macs(&to_peer, PEER_MAC, KERNEL_MAC)).0, Drop(DropReason::NotForUs));
    }

    #[test]
    fn pods_reach_the_node_ip_through_the_kernel() {
        let t = tables(true, None);
        let (a, out, _) = run(&t, POD, &syn(POD_MAC, GW_MAC, POD_IP, NODE_IP, 64));
        assert_eq!(a, Forward(HOST));
        assert_eq!((&out[0..6], &out[6..12]), (&KERNEL_MAC.0[..], &GW_MAC.0[..]));
        let ip = ipv4::Packet::new_checked(&out[14..]).unwrap();
        assert_eq!(ip.ttl(), 63);
        assert!(ip.verify_checksum());
    }

    #[test]
    fn arp_from_the_kernel() {
        let t = tables(false, None);
        // The kernel asks for a pod: weir answers, and learns the kernel's MAC.
        let (a, out, ev) = run(&t, HOST, &arp(arp::OP_REQUEST, KERNEL_MAC, MacAddr::BROADCAST, NODE_IP, POD_IP));
        assert_eq!(a, Reply(ReplyKind::ArpReply));
        let r = arp::Repr::parse(&arp::Packet::new_checked(&out[14..]).unwrap());
        assert_eq!(
            (r.operation, r.sender_mac, r.sender_ip, r.target_mac, r.target_ip),
            (2, GW_MAC, POD_IP, KERNEL_MAC, NODE_IP)
        );
        assert_eq!(&out[0..12], &[KERNEL_MAC.0, GW_MAC.0].concat()[..]);
        assert_eq!(ev, vec![(NODE_IP, KERNEL_MAC)]);
        // Known already: no event for a request.
        let (_, _, ev) =
            run(&tables(true, None), HOST, &arp(arp::OP_REQUEST, KERNEL_MAC, MacAddr::BROADCAST, NODE_IP, PEER_IP));
        assert!(ev.is_empty());
        // Its answer to weir's "who has the node IP": used up, always reported.
        let reply = arp(arp::OP_REPLY, KERNEL_MAC, GW_MAC, NODE_IP, Ipv4Addr::new(10, 1, 0, 1));
        let (a, _, ev) = run(&tables(true, None), HOST, &reply);
        assert_eq!(a, Action::Consumed(Consumed::ArpOnHost));
        assert_eq!(ev, vec![(NODE_IP, KERNEL_MAC)]);
        // Its own address (duplicate-address probe, gratuitous): never answered.
        let (a, _, _) = run(&t, HOST, &arp(arp::OP_REQUEST, KERNEL_MAC, MacAddr::BROADCAST, NODE_IP, NODE_IP));
        assert_eq!(a, Action::Consumed(Consumed::ArpOnHost));
        let (a, _, ev) =
            run(&t, HOST, &arp(arp::OP_REQUEST, KERNEL_MAC, MacAddr::BROADCAST, Ipv4Addr::UNSPECIFIED, NODE_IP));
        assert_eq!((a, ev.len()), (Drop(DropReason::ArpNotForUs), 0));
        assert_eq!(run(&t, HOST, &arp(1, KERNEL_MAC, CLIENT_MAC, NODE_IP, POD_IP)).0, Drop(DropReason::NotForUs));
        assert_eq!(
            run(&t, HOST, &arp(1, KERNEL_MAC, MacAddr::BROADCAST, NODE_IP, POD_IP)[..30]).0,
            Drop(DropReason::ArpMalformed)
        );
    }

    #[test]
    fn the_request_weir_sends_the_kernel() {
        let t = tables(false, None);
        let f = host_arp_request(&t, t.overlay.as_ref().unwrap());
        let r = arp::Repr::parse(&arp::Packet::new_checked(&f[14..]).unwrap());
        assert_eq!(
            (r.operation, r.sender_mac, r.sender_ip, r.target_ip),
            (1, GW_MAC, Ipv4Addr::new(10, 1, 0, 1), NODE_IP)
        );
        assert!(ethernet::Frame::new_checked(&f[..]).unwrap().dst().is_broadcast());
    }
}
