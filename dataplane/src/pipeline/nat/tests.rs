//! Service NAT unit tests: ClusterIP from pods.
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
    t.services = ServiceTable::build(&cfg).unwrap();
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
    let nat = Nat::single(flows, 1000);
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
    let mut t = both();
    // Thirty clients, each a pod on its own port (100 + last byte).
    for last in 10..40u8 {
        t.add_port(100 + u16::from(last), PortEntry::pod("client", Ipv4Addr::new(10, 1, 0, last), MacAddr([2, 0, 0, 0, 1, last]), 0), 1);
    }
    let flows = FlowTable::new(1 << 12);
    let sticky = Ipv4Addr::new(10, 96, 0, 13);
    let mut by_client = Vec::new();
    for last in 10..40u8 {
        let client = (Ipv4Addr::new(10, 1, 0, last), MacAddr([2, 0, 0, 0, 1, last]));
        let port = 100 + u16::from(last);
        let first = run(&t, &flows, port, &l4(ipv4::protocol::TCP, client, 20000, sticky, 80, true)).0;
        for sport in 20001..20020 {
            let a = run(&t, &flows, port, &l4(ipv4::protocol::TCP, client, sport, sticky, 80, true)).0;
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
