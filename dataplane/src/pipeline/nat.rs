//! Service NAT: the flow-table lookup every TCP/UDP packet of a pod network
//! gets, and, on a miss, the service lookup that picks a backend with the
//! Service port's Maglev table and creates the flow (both directions).
//!
//! The original direction has its destination rewritten (VIP:port →
//! backend:target port), the reply direction its source (backend → VIP),
//! both with incremental checksum updates (IPv4 header, and the TCP/UDP
//! checksum through its pseudo-header; a UDP checksum of 0 stays 0).
//! A Service port with no usable backend answers with ICMP port unreachable,
//! which TCP clients see as "connection refused" at once.
//!
//! When tables with other backends are published, established flows keep
//! their backend if it is still one of the Service's; if it is gone, a TCP
//! flow's next packet is answered with a reset, and a UDP flow's next packet
//! picks a live backend (no stale UDP flows, no table flush).
//!
//! ClientIP session affinity keeps a client's new flows on the backend its
//! last flow got, while the client's affinity entry lives (timeout from its
//! last new flow).
//!
//! Fragments and protocols other than TCP and UDP pass untranslated for now.

use std::net::Ipv4Addr;

use super::{icmp_error, Action, DropReason, PacketBuf};
use crate::flow::{FlowEntry, FlowKey, FlowTable};
use crate::tables::service::Frontend;
use crate::tables::{Network, Tables};
use crate::wire::{checksum, ethernet, icmp, ipv4, tcp};

/// The protocol number of ClientIP-affinity entries in the flow table (no
/// packet is looked up with it).
const AFFINITY_PROTO: u8 = 0;

/// Idle timeouts of flows, by protocol.
pub const TCP_TIMEOUT_MS: u32 = 2 * 3600 * 1000;
pub const UDP_TIMEOUT_MS: u32 = 30 * 1000;

/// The shared flow table and the worker's clock for this burst.
pub struct Nat<'a> {
    pub flows: &'a FlowTable,
    pub now_ms: u64,
}

/// Runs NAT on a checked IPv4 frame of network `net`. `None`: go on routing
/// (the destination may have changed); `Some`: the packet is done.
pub(crate) fn nat_stage<B: PacketBuf>(t: &Tables, nat: &Nat, net: &Network, pkt: &mut B) -> Option<Action> {
    let key = {
        let frame = pkt.data();
        let ip = ipv4::Packet::new_unchecked(&frame[ethernet::HEADER_LEN..]);
        let proto = ip.protocol();
        if !matches!(proto, ipv4::protocol::TCP | ipv4::protocol::UDP)
            || ip.is_fragment()
            || !t.services.may_translate(ip.src_addr(), ip.dst_addr())
        {
            return None;
        }
        let l4 = ip.payload(); // TCP/UDP header present: checked by check_ipv4
        FlowKey {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            src_port: u16::from_be_bytes([l4[0], l4[1]]),
            dst_port: u16::from_be_bytes([l4[2], l4[3]]),
            proto,
        }
    };
    let frontend = Frontend { vip: key.dst, port: key.dst_port, proto: key.proto };
    // Hashed once: the flow table and the Maglev pick both use it.
    let hash = key.hash();
    if let Some(e) = nat.flows.lookup_hashed(&key, hash, nat.now_ms) {
        // Tables published since the flow was given its backend: is that
        // backend still one of the Service's? (Checked once per flow per
        // publication: a flow that passes is stamped with the generation.)
        if e.rewrite_dst && e.generation != t.generation as u32 {
            let alive = t
                .services
                .lookup(&frontend)
                .is_some_and(|(_, p)| p.backends.contains(&e.nat_addr) && p.target_port == e.nat_port);
            if alive {
                let _ = nat.flows.insert_hashed(
                    &key,
                    hash,
                    &FlowEntry { generation: t.generation as u32, ..e },
                    nat.now_ms,
                );
            } else if key.proto == ipv4::protocol::TCP {
                // Its backend is gone: the client learns at once.
                nat.flows.remove_hashed(&key, hash);
                return Some(tcp_reset(pkt));
            } else {
                // UDP moves to a live backend with its next packet.
                nat.flows.remove_hashed(&key, hash);
                return new_flow(t, nat, net, pkt, key, hash, frontend);
            }
        }
        rewrite(pkt.data_mut(), &e);
        return None;
    }
    new_flow(t, nat, net, pkt, key, hash, frontend)
}

/// A packet of no known flow: a Service's, or nobody's (`None`, untouched).
fn new_flow<B: PacketBuf>(
    t: &Tables,
    nat: &Nat,
    net: &Network,
    pkt: &mut B,
    key: FlowKey,
    hash: u64,
    frontend: Frontend,
) -> Option<Action> {
    let (id, svc) = t.services.lookup(&frontend)?;
    // ClientIP affinity: the client's entry (in the flow table, under a key
    // no packet has: protocol 0) names its backend while it is live.
    let affinity_key =
        FlowKey { src: key.src, dst: key.dst, src_port: 0, dst_port: key.dst_port, proto: AFFINITY_PROTO };
    let sticky = svc.affinity_ms.and_then(|_| nat.flows.lookup(&affinity_key, nat.now_ms)).and_then(|e| {
        let i = svc.backends.iter().position(|b| *b == e.nat_addr)?;
        Some(i as u16)
    });
    let Some(b) = sticky.or_else(|| svc.maglev.lookup(hash as u32)) else {
        return Some(
            icmp_error(t, net, pkt, icmp::msg::DEST_UNREACHABLE, icmp::code::PORT_UNREACHABLE, 0)
                .unwrap_or(Action::Drop(DropReason::ServiceNoBackend)),
        );
    };
    let Some(backend) = svc.backends.get(usize::from(b)).copied() else {
        return Some(Action::Drop(DropReason::ServiceNoBackend));
    };
    let timeout_ms = if key.proto == ipv4::protocol::TCP { TCP_TIMEOUT_MS } else { UDP_TIMEOUT_MS };
    let generation = t.generation as u32;
    // Hairpin: a pod that reaches itself through its Service would see a
    // packet from its own address, which its kernel drops; its source is
    // translated to the network's gateway address, keeping the port (the
    // pod's own ports tell its flows apart).
    let client_seen_as = if backend == key.src { net.gateway_ip } else { key.src };
    let snat = (client_seen_as != key.src).then_some((client_seen_as, key.src_port));
    let orig = FlowEntry {
        nat_addr: backend,
        nat_port: svc.target_port,
        rewrite_dst: true,
        service: id,
        backend: b,
        generation,
        timeout_ms,
        other: snat,
    };
    let reply_key = FlowKey {
        src: backend,
        dst: client_seen_as,
        src_port: svc.target_port,
        dst_port: key.src_port,
        proto: key.proto,
    };
    let reply = FlowEntry {
        nat_addr: key.dst,
        nat_port: key.dst_port,
        rewrite_dst: false,
        other: snat.map(|_| (key.src, key.src_port)),
        ..orig
    };
    if nat.flows.insert_hashed(&key, hash, &orig, nat.now_ms).is_err()
        || nat.flows.insert(&reply_key, &reply, nat.now_ms).is_err()
    {
        nat.flows.remove_hashed(&key, hash);
        return Some(Action::Drop(DropReason::FlowTableFull));
    }
    if let Some(ms) = svc.affinity_ms {
        // (Re)started by every new flow of the client; a full table only
        // loses the stickiness, never the packet.
        let _ = nat.flows.insert(&affinity_key, &FlowEntry { timeout_ms: ms, other: None, ..orig }, nat.now_ms);
    }
    rewrite(pkt.data_mut(), &orig);
    None
}

struct Side {
    rewrite_dst: bool,
    nat_addr: Ipv4Addr,
    nat_port: u16,
}

/// Turns a client's TCP segment, in place, into the reset the Service
/// answers with when the flow's backend is gone (RFC 793: seq = the
/// segment's ACK if it had one, else ACK of everything it carried).
fn tcp_reset<B: PacketBuf>(pkt: &mut B) -> Action {
    let (ihl, payload_len) = {
        let ip = ipv4::Packet::new_unchecked(&pkt.data()[ethernet::HEADER_LEN..]);
        let t = tcp::Packet::new_unchecked(ip.payload());
        (ip.header_len(), ip.payload().len().saturating_sub(t.header_len()))
    };
    let want = ethernet::HEADER_LEN + ihl + tcp::HEADER_LEN;
    let extra = pkt.len().saturating_sub(want);
    if pkt.trim(extra).is_err() {
        return Action::Drop(DropReason::NoBufferRoom);
    }
    let frame = pkt.data_mut();
    let (eth, rest) = frame.split_at_mut(ethernet::HEADER_LEN);
    let mut eth = ethernet::Frame::new_unchecked(eth);
    let (src_mac, dst_mac) = (eth.src(), eth.dst());
    eth.set_src(dst_mac);
    eth.set_dst(src_mac);
    let mut ip = ipv4::Packet::new_unchecked(rest);
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    ip.set_src_addr(dst);
    ip.set_dst_addr(src);
    ip.set_ttl(super::LOCAL_TTL);
    ip.set_total_len((ihl + tcp::HEADER_LEN) as u16);
    ip.fill_checksum();
    let mut t = tcp::Packet::new_unchecked(ip.payload_mut());
    let (sport, dport, seq, ack, flags) = (t.src_port(), t.dst_port(), t.seq_number(), t.ack_number(), t.flags());
    t.set_src_port(dport);
    t.set_dst_port(sport);
    t.set_header_len(tcp::HEADER_LEN);
    t.set_window(0);
    t.set_urgent(0);
    if flags & tcp::flags::ACK != 0 {
        t.set_seq_number(ack);
        t.set_ack_number(0);
        t.set_flags(tcp::flags::RST);
    } else {
        let len = payload_len as u32 + u32::from(flags & (tcp::flags::SYN | tcp::flags::FIN) != 0);
        t.set_seq_number(0);
        t.set_ack_number(seq.wrapping_add(len));
        t.set_flags(tcp::flags::RST | tcp::flags::ACK);
    }
    t.fill_checksum(dst, src);
    Action::Reply(super::ReplyKind::TcpReset)
}

/// Applies an entry's rewrites to a TCP/UDP frame, with incremental checksums.
fn rewrite(frame: &mut [u8], e: &FlowEntry) {
    rewrite_side(frame, e.rewrite_dst, e.nat_addr, e.nat_port);
    if let Some((addr, port)) = e.other {
        rewrite_side(frame, !e.rewrite_dst, addr, port);
    }
}

/// Rewrites the destination (`dst`) or the source address and port.
fn rewrite_side(frame: &mut [u8], dst: bool, new_addr: Ipv4Addr, new_port: u16) {
    let e = Side { rewrite_dst: dst, nat_addr: new_addr, nat_port: new_port };
    let mut ip = ipv4::Packet::new_unchecked(&mut frame[ethernet::HEADER_LEN..]);
    let proto = ip.protocol();
    let old_addr = if e.rewrite_dst { ip.dst_addr() } else { ip.src_addr() };
    if e.rewrite_dst {
        ip.set_dst_addr(e.nat_addr);
    } else {
        ip.set_src_addr(e.nat_addr);
    }
    let (old, new) = (u32::from(old_addr), u32::from(e.nat_addr));
    ip.set_checksum(checksum::update32(ip.checksum(), old, new));
    let l4 = ip.payload_mut();
    let port_at = if e.rewrite_dst { 2 } else { 0 };
    let old_port = u16::from_be_bytes([l4[port_at], l4[port_at + 1]]);
    l4[port_at..port_at + 2].copy_from_slice(&e.nat_port.to_be_bytes());
    let sum_at = if proto == ipv4::protocol::TCP { 16 } else { 6 };
    if l4.len() < sum_at + 2 {
        return;
    }
    let sum = u16::from_be_bytes([l4[sum_at], l4[sum_at + 1]]);
    if proto == ipv4::protocol::UDP && sum == 0 {
        return; // no checksum: stays none
    }
    let mut sum = checksum::update32(sum, old, new);
    sum = checksum::update16(sum, old_port, e.nat_port);
    if proto == ipv4::protocol::UDP && sum == 0 {
        sum = 0xffff;
    }
    l4[sum_at..sum_at + 2].copy_from_slice(&sum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::config::NodeConfig;
    use crate::pipeline::{process_full, NoEvents, ReplyKind, TestBuf};
    use crate::tables::service::ServiceTable;
    use crate::tables::PortEntry;
    use crate::wire::{tcp, udp, MacAddr};

    const GW_MAC: MacAddr = MacAddr([2, 0xfe, 0, 0, 0, 1]);
    const A: (Ipv4Addr, MacAddr) = (Ipv4Addr::new(10, 1, 0, 2), MacAddr([2, 0, 0, 0, 0, 2]));
    const B: (Ipv4Addr, MacAddr) = (Ipv4Addr::new(10, 1, 0, 3), MacAddr([2, 0, 0, 0, 0, 3]));
    const C: (Ipv4Addr, MacAddr) = (Ipv4Addr::new(10, 1, 0, 4), MacAddr([2, 0, 0, 0, 0, 4]));
    const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
    const EMPTY_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 11);

    fn tables(backends: &str) -> Tables {
        let cfg = NodeConfig::from_toml(&format!(
            r#"
            [node]
            name = "n"
            pod_cidr = "10.1.0.0/24"
            [gateway]
            ip = "10.1.0.1"
            mac = "02:fe:00:00:00:01"
            [[services]]
            name = "default/web"
            cluster_ips = ["10.96.0.10"]
            ports = [{{ port = 80, protocol = "tcp", target_port = 8080 }}, {{ port = 53, protocol = "udp" }}]
            backends = [{backends}]
            [[services]]
            name = "default/empty"
            cluster_ips = ["10.96.0.11"]
            ports = [{{ port = 80, protocol = "tcp" }}]
            [[services]]
            name = "default/sticky"
            cluster_ips = ["10.96.0.13"]
            ports = [{{ port = 80, protocol = "tcp" }}]
            backends = [{{ ip = "10.1.0.3" }}, {{ ip = "10.1.0.4" }}]
            affinity_timeout_seconds = 10800
            [[services]]
            name = "default/a-only"
            cluster_ips = ["10.96.0.12"]
            ports = [{{ port = 80, protocol = "tcp", target_port = 8080 }}]
            backends = [{{ ip = "10.1.0.2" }}]
            "#
        ))
        .unwrap();
        let mut t = Tables::new(&cfg, 1);
        t.add_port(0, PortEntry::pod("a", A.0, A.1, 0), 1);
        t.add_port(1, PortEntry::pod("b", B.0, B.1, 0), 1);
        t.add_port(2, PortEntry::pod("c", C.0, C.1, 0), 1);
        t.services = ServiceTable::build(&cfg.services).unwrap();
        t
    }

    fn both() -> Tables {
        tables(r#"{ ip = "10.1.0.3" }, { ip = "10.1.0.4" }"#)
    }

    /// A TCP SYN (or UDP datagram with `udp_sum`) frame.
    fn l4(proto: u8, from: (Ipv4Addr, MacAddr), sport: u16, dst: Ipv4Addr, dport: u16, udp_sum: bool) -> Vec<u8> {
        let l4_len = if proto == ipv4::protocol::TCP { 20 } else { 8 + 4 };
        let mut f = vec![0u8; 14 + 20 + l4_len];
        ethernet::Repr { src: from.1, dst: GW_MAC, ethertype: ethernet::ethertype::IPV4 }
            .emit(&mut ethernet::Frame::new_unchecked(&mut f[..]));
        ipv4::Repr {
            src: from.0,
            dst,
            protocol: proto,
            ttl: 64,
            payload_len: l4_len,
            dscp_ecn: 0,
            ident: 1,
            dont_frag: true,
        }
        .emit(&mut ipv4::Packet::new_unchecked(&mut f[14..]));
        if proto == ipv4::protocol::TCP {
            let mut t = tcp::Packet::new_unchecked(&mut f[34..]);
            t.set_src_port(sport);
            t.set_dst_port(dport);
            t.set_header_len(20);
            t.set_flags(tcp::flags::SYN);
            t.fill_checksum(from.0, dst);
        } else {
            let mut u = udp::Packet::new_unchecked(&mut f[34..]);
            u.set_src_port(sport);
            u.set_dst_port(dport);
            u.set_len(12);
            u.payload_mut().copy_from_slice(b"dns?");
            if udp_sum {
                u.fill_checksum(from.0, dst);
            } else {
                u.set_checksum(0);
            }
        }
        f
    }

    fn run(t: &Tables, flows: &FlowTable, port: u16, frame: &[u8]) -> (Action, Vec<u8>) {
        let nat = Nat { flows, now_ms: 1000 };
        let mut b = TestBuf::new(frame);
        let a = process_full(t, Some(&nat), port, &mut b, &mut NoEvents);
        (a, b.to_vec())
    }

    /// (src, dst, sport, dport) of a forwarded frame, with its checksums verified.
    fn tuple(out: &[u8]) -> (Ipv4Addr, Ipv4Addr, u16, u16) {
        let ip = ipv4::Packet::new_checked(&out[14..]).unwrap();
        assert!(ip.verify_checksum(), "IPv4 checksum");
        let p = ip.payload();
        if ip.protocol() == ipv4::protocol::TCP {
            assert!(tcp::Packet::new_checked(p).unwrap().verify_checksum(ip.src_addr(), ip.dst_addr()), "TCP checksum");
        } else {
            assert!(udp::Packet::new_checked(p).unwrap().verify_checksum(ip.src_addr(), ip.dst_addr()), "UDP checksum");
        }
        (ip.src_addr(), ip.dst_addr(), u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]]))
    }

    #[test]
    fn cluster_ip_both_directions() {
        let t = both();
        let flows = FlowTable::new(1024);
        let syn = l4(ipv4::protocol::TCP, A, 40000, VIP, 80, true);
        let (a, out) = run(&t, &flows, 0, &syn);
        let (src, dst, sport, dport) = tuple(&out);
        assert_eq!((src, sport, dport), (A.0, 40000, 8080));
        let (backend, port) = match a {
            Action::Forward(1) => (B, 1),
            Action::Forward(2) => (C, 2),
            other => panic!("{other:?}"),
        };
        assert_eq!(dst, backend.0);
        assert_eq!(&out[0..6], &backend.1 .0);
        // The same flow again: the same backend, from the flow table.
        assert_eq!(run(&t, &flows, 0, &syn).0, a);
        // The backend's answer: source translated back to the VIP.
        let reply = l4(ipv4::protocol::TCP, backend, 8080, A.0, 40000, true);
        let (a2, out2) = run(&t, &flows, port, &reply);
        assert_eq!(a2, Action::Forward(0));
        assert_eq!(tuple(&out2), (VIP, A.0, 80, 40000));
        // Direct pod-to-pod traffic is not translated.
        let direct = l4(ipv4::protocol::TCP, A, 40001, B.0, 8080, true);
        let (a3, out3) = run(&t, &flows, 0, &direct);
        assert_eq!((a3, tuple(&out3)), (Action::Forward(1), (A.0, B.0, 40001, 8080)));
    }

    #[test]
    fn established_flows_keep_their_backend_across_table_changes() {
        let flows = FlowTable::new(1 << 12);
        let t = both();
        let mut picked = Vec::new();
        for sport in 1000..1100 {
            picked.push(run(&t, &flows, 0, &l4(ipv4::protocol::TCP, A, sport, VIP, 80, true)).0);
        }
        // New tables: C weighs ten times B. Existing flows do not move.
        let t2 = tables(r#"{ ip = "10.1.0.3", weight = 1 }, { ip = "10.1.0.4", weight = 10 }"#);
        for (i, sport) in (1000..1100).enumerate() {
            assert_eq!(run(&t2, &flows, 0, &l4(ipv4::protocol::TCP, A, sport, VIP, 80, true)).0, picked[i]);
        }
    }

    #[test]
    fn a_removed_backend_resets_tcp_and_moves_udp() {
        let flows = FlowTable::new(1 << 12);
        let t = both();
        // Flows to both backends, TCP and UDP.
        let mut tcp_to = Vec::new();
        let mut udp_to = Vec::new();
        for sport in 3000..3040 {
            tcp_to.push(run(&t, &flows, 0, &l4(ipv4::protocol::TCP, A, sport, VIP, 80, true)).0);
            udp_to.push(run(&t, &flows, 0, &l4(ipv4::protocol::UDP, A, sport, VIP, 53, true)).0);
        }
        assert!(tcp_to.contains(&Action::Forward(2)) && udp_to.contains(&Action::Forward(2)));
        // C (port 2) goes away in the next tables.
        let mut t2 = tables(r#"{ ip = "10.1.0.3" }"#);
        t2.generation = t.generation + 1;
        for (i, sport) in (3000..3040).enumerate() {
            let syn = l4(ipv4::protocol::TCP, A, sport, VIP, 80, true);
            let (a, out) = run(&t2, &flows, 0, &syn);
            if tcp_to[i] == Action::Forward(1) {
                assert_eq!(a, Action::Forward(1), "flows of the remaining backend stay");
                continue;
            }
            assert_eq!(a, Action::Reply(ReplyKind::TcpReset));
            let ip = ipv4::Packet::new_checked(&out[14..]).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!((ip.src_addr(), ip.dst_addr()), (VIP, A.0));
            let r = tcp::Packet::new_checked(ip.payload()).unwrap();
            assert!(r.verify_checksum(VIP, A.0));
            assert_eq!((r.src_port(), r.dst_port()), (80, sport));
            // The SYN carried no ACK: RST+ACK of its sequence number + 1.
            assert_eq!(r.flags(), tcp::flags::RST | tcp::flags::ACK);
            assert_eq!(r.ack_number(), 1);
            assert_eq!(&out[0..6], &A.1 .0);
        }
        for sport in 3000..3040 {
            let (a, out) = run(&t2, &flows, 0, &l4(ipv4::protocol::UDP, A, sport, VIP, 53, true));
            assert_eq!(a, Action::Forward(1), "UDP follows to a live backend at once");
            assert_eq!(tuple(&out).1, B.0);
        }
    }

    /// A pod reaching itself through its own Service: the source becomes the
    /// gateway address on the way in, and both addresses are put back on
    /// the way out.
    #[test]
    fn hairpin_translates_both_addresses() {
        let t = both();
        let flows = FlowTable::new(1024);
        let self_vip = Ipv4Addr::new(10, 96, 0, 12);
        let gw = Ipv4Addr::new(10, 1, 0, 1);
        let (a, out) = run(&t, &flows, 0, &l4(ipv4::protocol::TCP, A, 41000, self_vip, 80, true));
        assert_eq!(a, Action::Forward(0), "back to the pod itself");
        assert_eq!(tuple(&out), (gw, A.0, 41000, 8080));
        // The pod answers the gateway address; weir puts the Service back.
        let answer = l4(ipv4::protocol::TCP, A, 8080, gw, 41000, true);
        let (a, out) = run(&t, &flows, 0, &answer);
        assert_eq!(a, Action::Forward(0));
        assert_eq!(tuple(&out), (self_vip, A.0, 80, 41000));
        // Another client of the same Service is not translated at its source.
        let (_, out) = run(&t, &flows, 1, &l4(ipv4::protocol::TCP, B, 41000, self_vip, 80, true));
        assert_eq!(tuple(&out), (B.0, A.0, 41000, 8080));
    }

    /// ClientIP affinity: every new flow of a client goes where its first went.
    #[test]
    fn client_ip_affinity_pins_a_client() {
        let t = both();
        let flows = FlowTable::new(1 << 12);
        let sticky = Ipv4Addr::new(10, 96, 0, 13);
        let mut by_client = Vec::new();
        for last in 10..40u8 {
            let client = (Ipv4Addr::new(10, 1, 0, last), MacAddr([2, 0, 0, 0, 1, last]));
            let first = run(&t, &flows, 0, &l4(ipv4::protocol::TCP, client, 20000, sticky, 80, true)).0;
            for sport in 20001..20020 {
                let a = run(&t, &flows, 0, &l4(ipv4::protocol::TCP, client, sport, sticky, 80, true)).0;
                assert_eq!(a, first, "client {} moved", client.0);
            }
            by_client.push(first);
        }
        // Different clients still spread over the backends.
        assert!(by_client.contains(&Action::Forward(1)) && by_client.contains(&Action::Forward(2)), "{by_client:?}");
        // Without affinity the same client's flows spread.
        let web: Vec<Action> =
            (20000..20040).map(|p| run(&t, &flows, 0, &l4(ipv4::protocol::TCP, A, p, VIP, 80, true)).0).collect();
        assert!(web.contains(&Action::Forward(1)) && web.contains(&Action::Forward(2)));
    }

    #[test]
    fn new_flows_spread_over_the_backends() {
        let flows = FlowTable::new(1 << 14);
        let t = both();
        let (mut to_b, mut to_c) = (0, 0);
        for sport in 10000..12000 {
            match run(&t, &flows, 0, &l4(ipv4::protocol::TCP, A, sport, VIP, 80, true)).0 {
                Action::Forward(1) => to_b += 1,
                Action::Forward(2) => to_c += 1,
                other => panic!("{other:?}"),
            }
        }
        // Maglev gives each of 2 backends half the slots; 2000 flows hashed
        // over them stay within a few percent (binomial σ ≈ 22).
        assert!((900..=1100).contains(&to_b), "{to_b} / {to_c}");
    }

    #[test]
    fn udp_checksums_and_no_checksum() {
        let t = both();
        let flows = FlowTable::new(1024);
        let (a, out) = run(&t, &flows, 0, &l4(ipv4::protocol::UDP, A, 5353, VIP, 53, true));
        assert!(matches!(a, Action::Forward(1 | 2)));
        let (_, dst, _, dport) = tuple(&out);
        assert!(dst == B.0 || dst == C.0);
        assert_eq!(dport, 53, "target port defaults to the port");
        let (_, out) = run(&t, &flows, 0, &l4(ipv4::protocol::UDP, A, 5354, VIP, 53, false));
        assert_eq!(&out[34 + 6..34 + 8], &[0, 0], "a UDP checksum of 0 stays 0");
        assert!(ipv4::Packet::new_checked(&out[14..]).unwrap().verify_checksum());
    }

    #[test]
    fn no_backend_is_refused_at_once() {
        let t = both();
        let flows = FlowTable::new(1024);
        let (a, out) = run(&t, &flows, 0, &l4(ipv4::protocol::TCP, A, 40000, EMPTY_VIP, 80, true));
        assert_eq!(a, Action::Reply(ReplyKind::IcmpPortUnreachable));
        let ip = ipv4::Packet::new_checked(&out[14..]).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (Ipv4Addr::new(10, 1, 0, 1), A.0));
        let m = icmp::Packet::new_checked(ip.payload()).unwrap();
        assert_eq!((m.msg_type(), m.code()), (icmp::msg::DEST_UNREACHABLE, icmp::code::PORT_UNREACHABLE));
        assert!(m.verify_checksum());
        // A port the Service does not have is not the Service's.
        let other_port = l4(ipv4::protocol::TCP, A, 40000, VIP, 443, true);
        assert_eq!(run(&t, &flows, 0, &other_port).0, Action::Drop(DropReason::NoRoute));
    }

    #[test]
    fn a_full_table_is_a_counted_drop() {
        let t = both();
        let flows = FlowTable::new(32);
        let mut full = 0;
        for sport in 0..200 {
            if run(&t, &flows, 0, &l4(ipv4::protocol::TCP, A, 2000 + sport, VIP, 80, true)).0
                == Action::Drop(DropReason::FlowTableFull)
            {
                full += 1;
            }
        }
        assert!(full > 150, "{full}");
    }
}
