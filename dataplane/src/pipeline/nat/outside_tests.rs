//! Service NAT unit tests on a node with an uplink: NodePort, externalIPs
//! and LoadBalancer IPs from outside under both traffic policies,
//! internalTrafficPolicy, endpoint conditions, headless Services, source
//! ranges, SNAT ports, TCP state timeouts, SCTP, and ICMP errors of
//! translated flows.
//!
//! The node: pods 10.1.0.0/24 behind gateway 10.1.0.1; pod A 10.1.0.2 on
//! port 0, pod B 10.1.0.3 on port 1, pod C 10.1.0.4 on port 2; the uplink on
//! port 3 (node IP 192.168.50.1); node 2 (192.168.50.2) has 10.2.0.0/24;
//! the external client 192.168.50.9 sits on the underlay.

use crate::pipeline::testkit;
use std::net::Ipv4Addr;

use super::*;
use crate::config::NodeConfig;
use crate::pipeline::{process_full, NoEvents, ReplyKind, TestBuf};
use crate::tables::service::ServiceTable;
use crate::tables::{Hop, PortEntry};
use crate::wire::{udp, vxlan, MacAddr};

const GW: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const GW_MAC: MacAddr = MacAddr([2, 0xfe, 0, 0, 0, 1]);
const A: (Ipv4Addr, MacAddr) = (Ipv4Addr::new(10, 1, 0, 2), MacAddr([2, 0, 0, 0, 0, 2]));
const B: (Ipv4Addr, MacAddr) = (Ipv4Addr::new(10, 1, 0, 3), MacAddr([2, 0, 0, 0, 0, 3]));
const C: (Ipv4Addr, MacAddr) = (Ipv4Addr::new(10, 1, 0, 4), MacAddr([2, 0, 0, 0, 0, 4]));
const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 5);
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
const NODE2_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
const UPLINK_MAC: MacAddr = MacAddr([2, 0, 0, 0xaa, 0, 1]);
const NODE2_MAC: MacAddr = MacAddr([2, 0, 0, 0xaa, 0, 2]);
const CLIENT: (Ipv4Addr, MacAddr) = (Ipv4Addr::new(192, 168, 50, 9), MacAddr([2, 0, 0, 0xcc, 0, 9]));
const FAR_CLIENT: (Ipv4Addr, MacAddr) = (Ipv4Addr::new(192, 168, 50, 20), MacAddr([2, 0, 0, 0xcc, 0, 20]));
const UPLINK: u16 = 3;
const TCP: u8 = ipv4::protocol::TCP;
const UDP: u8 = ipv4::protocol::UDP;
const SCTP: u8 = ipv4::protocol::SCTP;

const SERVICES: &str = r#"
[[services]]
name = "default/web"
cluster_ips = ["10.96.0.10"]
external_ips = ["192.168.60.10"]
load_balancer_ips = ["192.168.60.20"]
load_balancer_source_ranges = ["192.168.50.0/28"]
ports = [{ port = 80, protocol = "tcp", target_port = 8080, node_port = 30080 },
         { port = 53, protocol = "udp", node_port = 30053 }]
backends = [{ ip = "10.1.0.3" }, { ip = "10.2.0.5" }]

[[services]]
name = "default/web-local"
cluster_ips = ["10.96.0.20"]
external_traffic_policy = "local"
ports = [{ port = 80, protocol = "tcp", target_port = 8080, node_port = 30081 }]
backends = [{ ip = "10.1.0.3" }, { ip = "10.2.0.5" }]

[[services]]
name = "default/elsewhere"
cluster_ips = ["10.96.0.21"]
external_traffic_policy = "local"
ports = [{ port = 80, protocol = "tcp", node_port = 30082 }]
backends = [{ ip = "10.2.0.5" }]

[[services]]
name = "default/nobody"
cluster_ips = ["10.96.0.22"]
ports = [{ port = 80, protocol = "tcp", node_port = 30083 }]

[[services]]
name = "default/one"
cluster_ips = ["10.96.0.23"]
ports = [{ port = 80, protocol = "tcp", target_port = 8080, node_port = 30084 }]
backends = [{ ip = "10.1.0.3" }]

[[services]]
name = "default/itp-local"
cluster_ips = ["10.96.0.30"]
internal_traffic_policy = "local"
ports = [{ port = 80, protocol = "tcp" }]
backends = [{ ip = "10.1.0.3" }, { ip = "10.2.0.5" }]

[[services]]
name = "default/some-ready"
cluster_ips = ["10.96.0.40"]
ports = [{ port = 80, protocol = "tcp" }]
backends = [{ ip = "10.1.0.3", ready = false }, { ip = "10.1.0.4" }]

[[services]]
name = "default/terminating"
cluster_ips = ["10.96.0.41"]
ports = [{ port = 80, protocol = "tcp" }]
backends = [{ ip = "10.1.0.3", ready = false, serving = true, terminating = true },
            { ip = "10.1.0.4", ready = false, serving = false, terminating = true }]

[[services]]
name = "default/headless"
ports = [{ port = 80, protocol = "tcp" }]
backends = [{ ip = "10.1.0.4" }]

[[services]]
name = "default/diameter"
cluster_ips = ["10.96.0.50"]
ports = [{ port = 3868, protocol = "sctp", target_port = 3869 }]
backends = [{ ip = "10.1.0.3" }]
"#;

fn config(extra: &str) -> NodeConfig {
    NodeConfig::from_toml(&format!(
        r#"
        [node]
        name = "n1"
        pod_cidr = "10.1.0.0/24"
        node_ip = "192.168.50.1"
        underlay_cidr = "192.168.50.0/24"
        [gateway]
        ip = "10.1.0.1"
        mac = "02:fe:00:00:00:01"
        {extra}
        {SERVICES}
        "#
    ))
    .unwrap()
}

fn tables_from(cfg: &NodeConfig) -> Tables {
    let mut t = Tables::new(cfg, 1);
    t.add_port(0, PortEntry::pod("a", A.0, A.1, 0), 1);
    t.add_port(1, PortEntry::pod("b", B.0, B.1, 0), 1);
    t.add_port(2, PortEntry::pod("c", C.0, C.1, 0), 1);
    t.add_port(UPLINK, PortEntry { uplink: true, ..PortEntry::plain("uplink") }, 1);
    t.overlay = Some(testkit::overlay(UPLINK));
    let hop = Hop::Remote { vtep: NODE2_IP, vtep_mac: MacAddr([2, 0xfe, 0, 0, 0, 2]), net: 0 };
    t.add_remote_route(0, "10.2.0.0/24".parse().unwrap(), hop);
    t.node_hops.insert(NODE2_IP, hop);
    t.neighbours.insert(NODE2_IP, NODE2_MAC);
    t.neighbours.insert(CLIENT.0, CLIENT.1);
    t.neighbours.insert(FAR_CLIENT.0, FAR_CLIENT.1);
    t.services = ServiceTable::build(cfg).unwrap();
    t
}

fn tables() -> Tables {
    tables_from(&config(""))
}

/// A frame from `from` to `dst_mac`: TCP with `flags` (or UDP/SCTP) from
/// `sport` to `dst:dport`, checksums filled.
fn frame(
    proto: u8,
    from: (Ipv4Addr, MacAddr),
    dst_mac: MacAddr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    flags: u8,
) -> Vec<u8> {
    let l4_len = match proto {
        TCP => 20,
        UDP => 12,
        _ => 12 + 20, // SCTP common header + an INIT chunk
    };
    let mut f = vec![0u8; 14 + 20 + l4_len];
    ethernet::Repr { src: from.1, dst: dst_mac, ethertype: ethernet::ethertype::IPV4 }
        .emit(&mut ethernet::Frame::new_unchecked(&mut f[..]));
    ipv4::Repr {
        src: from.0,
        dst,
        protocol: proto,
        ttl: 64,
        payload_len: l4_len,
        dscp_ecn: 0,
        ident: 7,
        dont_frag: true,
    }
    .emit(&mut ipv4::Packet::new_unchecked(&mut f[14..]));
    let l4 = &mut f[34..];
    match proto {
        TCP => {
            let mut t = tcp::Packet::new_unchecked(l4);
            t.set_src_port(sport);
            t.set_dst_port(dport);
            t.set_seq_number(1000);
            t.set_header_len(20);
            t.set_flags(flags);
            t.fill_checksum(from.0, dst);
        }
        UDP => {
            let mut u = udp::Packet::new_unchecked(l4);
            u.set_src_port(sport);
            u.set_dst_port(dport);
            u.set_len(12);
            u.payload_mut().copy_from_slice(b"ask!");
            u.fill_checksum(from.0, dst);
        }
        _ => {
            let mut s = sctp::Packet::new_unchecked(l4);
            s.set_src_port(sport);
            s.set_dst_port(dport);
            // INIT: type 1, length 20, initiate tag, a_rwnd, streams, TSN.
            s.payload_mut().copy_from_slice(&[
                1, 0, 0, 20, 0x11, 0x22, 0x33, 0x44, 0, 1, 0, 0, 0, 10, 0xff, 0xff, 1, 2, 3, 4,
            ]);
            s.fill_checksum();
        }
    }
    f
}

fn syn_from_outside(client: (Ipv4Addr, MacAddr), sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    frame(TCP, client, UPLINK_MAC, sport, dst, dport, tcp::flags::SYN)
}

fn run_at(t: &Tables, nat: &Nat, port: u16, frame: &[u8]) -> (Action, Vec<u8>) {
    let mut b = TestBuf::new(frame);
    let a = process_full(t, Some(nat), port, &mut b, &mut NoEvents);
    (a, b.to_vec())
}

fn run(t: &Tables, flows: &FlowTable, port: u16, frame: &[u8]) -> (Action, Vec<u8>) {
    run_at(t, &Nat::single(flows, 1000), port, frame)
}

/// (src, dst, sport, dport) of an IPv4 frame (at `at`), checksums verified.
fn tuple_at(out: &[u8], at: usize) -> (Ipv4Addr, Ipv4Addr, u16, u16) {
    let ip = ipv4::Packet::new_checked(&out[at..]).unwrap();
    assert!(ip.verify_checksum(), "IPv4 checksum");
    let p = ip.payload();
    match ip.protocol() {
        TCP => assert!(tcp::Packet::new_checked(p).unwrap().verify_checksum(ip.src_addr(), ip.dst_addr()), "TCP sum"),
        UDP => assert!(udp::Packet::new_checked(p).unwrap().verify_checksum(ip.src_addr(), ip.dst_addr()), "UDP sum"),
        SCTP => assert!(sctp::Packet::new_checked(p).unwrap().verify_checksum(), "SCTP CRC32c"),
        _ => {}
    }
    (ip.src_addr(), ip.dst_addr(), u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]]))
}

fn tuple(out: &[u8]) -> (Ipv4Addr, Ipv4Addr, u16, u16) {
    tuple_at(out, 14)
}

/// The inner frame of a VXLAN frame weir sent to node 2.
fn inner(out: &[u8]) -> &[u8] {
    let (src, dst, _, dport) = tuple(out);
    assert_eq!((src, dst, dport), (NODE_IP, NODE2_IP, vxlan::DEFAULT_PORT));
    &out[14 + 20 + 8 + 8..]
}

/// `inner` wrapped in VXLAN from node 2 to this node.
fn from_node2(inner: &[u8]) -> Vec<u8> {
    let mut f = frame(UDP, (NODE2_IP, NODE2_MAC), UPLINK_MAC, 50000, NODE_IP, vxlan::DEFAULT_PORT, 0);
    f.truncate(14 + 20 + 8);
    f.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 1, 0]); // I flag, VNI 1
    f.extend_from_slice(inner);
    let len = f.len() - 14;
    let mut ip = ipv4::Packet::new_unchecked(&mut f[14..]);
    ip.set_total_len(len as u16);
    ip.fill_checksum();
    let mut u = udp::Packet::new_unchecked(&mut f[34..]);
    u.set_len((len - 20) as u16);
    u.set_checksum(0);
    f
}

fn eth_macs(out: &[u8]) -> (MacAddr, MacAddr) {
    let e = ethernet::Frame::new_unchecked(out);
    (e.dst(), e.src())
}

#[test]
fn node_port_cluster_policy_translates_the_client_to_the_node() {
    let t = tables();
    let flows = FlowTable::new(1 << 12);
    let (mut local, mut remote) = (0, 0);
    for sport in 40000..40040 {
        let (a, out) = run(&t, &flows, UPLINK, &syn_from_outside(CLIENT, sport, NODE_IP, 30080));
        match a {
            Action::Forward(1) => {
                local += 1;
                let (src, dst, snat_port, dport) = tuple(&out);
                assert_eq!((src, dst, dport), (NODE_IP, B.0, 8080), "client seen as the node");
                assert!((61000..=65535).contains(&snat_port), "{snat_port}");
                assert_eq!(eth_macs(&out), (B.1, GW_MAC));
                // B answers the node; the client gets the NodePort's answer.
                let answer = frame(TCP, B, GW_MAC, 8080, NODE_IP, snat_port, tcp::flags::SYN | tcp::flags::ACK);
                let (a, out) = run(&t, &flows, 1, &answer);
                assert_eq!(a, Action::Forward(UPLINK));
                assert_eq!(tuple(&out), (NODE_IP, CLIENT.0, 30080, sport));
                assert_eq!(eth_macs(&out), (CLIENT.1, UPLINK_MAC));
                assert_eq!(ipv4::Packet::new_checked(&out[14..]).unwrap().ttl(), 63);
            }
            Action::Forward(UPLINK) => {
                remote += 1;
                // To the backend on node 2 through the tunnel.
                let (src, dst, snat_port, dport) = tuple_at(inner(&out), 14);
                assert_eq!((src, dst, dport), (NODE_IP, REMOTE_POD, 8080));
                // Its answer comes back through the tunnel to the node IP.
                let remote_pod = (REMOTE_POD, MacAddr([2, 0xfe, 0, 0, 0, 2]));
                let answer = frame(TCP, remote_pod, GW_MAC, 8080, NODE_IP, snat_port, tcp::flags::ACK);
                let (a, out) = run(&t, &flows, UPLINK, &from_node2(&answer));
                assert_eq!(a, Action::Forward(UPLINK));
                assert_eq!(tuple(&out), (NODE_IP, CLIENT.0, 30080, sport));
                assert_eq!(eth_macs(&out), (CLIENT.1, UPLINK_MAC));
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(local > 5 && remote > 5, "{local} local, {remote} remote");
}

/// A pod of node 2 reaching this node's NodePort through the tunnel: its
/// backend may be this node's pod or one on node 2 itself, which would
/// answer the pod directly, so the client becomes the node IP (as
/// kube-proxy masquerades it) and every answer comes back here.
#[test]
fn node_port_from_another_nodes_pod_translates_the_client_to_the_node() {
    let t = tables();
    let flows = FlowTable::new(1 << 12);
    let client = (Ipv4Addr::new(10, 2, 0, 7), MacAddr([2, 0xfe, 0, 0, 0, 2]));
    let (mut local, mut remote) = (0, 0);
    // Under both traffic policies: a pod's packet is not "from outside".
    for (node_port, sports) in [(30080, 42000..42040), (30081, 43000..43040)] {
        for sport in sports {
            let syn = frame(TCP, client, GW_MAC, sport, NODE_IP, node_port, tcp::flags::SYN);
            let (a, out) = run(&t, &flows, UPLINK, &from_node2(&syn));
            let (answer, from) = match a {
                Action::Forward(1) => {
                    local += 1;
                    let (src, dst, snat_port, dport) = tuple(&out);
                    assert_eq!((src, dst, dport), (NODE_IP, B.0, 8080), "client seen as the node");
                    assert!((61000..=65535).contains(&snat_port), "{snat_port}");
                    (frame(TCP, B, GW_MAC, 8080, NODE_IP, snat_port, tcp::flags::SYN | tcp::flags::ACK), 1)
                }
                Action::Forward(UPLINK) => {
                    remote += 1;
                    // To the backend on node 2, the client's own node.
                    let (src, dst, snat_port, dport) = tuple_at(inner(&out), 14);
                    assert_eq!((src, dst, dport), (NODE_IP, REMOTE_POD, 8080), "client seen as the node");
                    let remote_pod = (REMOTE_POD, MacAddr([2, 0xfe, 0, 0, 0, 2]));
                    let answer = frame(TCP, remote_pod, GW_MAC, 8080, NODE_IP, snat_port, tcp::flags::ACK);
                    (from_node2(&answer), UPLINK)
                }
                other => panic!("{other:?}"),
            };
            // The answer goes back to the client pod through the tunnel, from
            // the NodePort it asked for.
            let (a, out) = run(&t, &flows, from, &answer);
            assert_eq!(a, Action::Forward(UPLINK));
            assert_eq!(tuple_at(inner(&out), 14), (NODE_IP, client.0, node_port, sport));
        }
    }
    assert!(local > 5 && remote > 5, "{local} local, {remote} remote");
}

#[test]
fn node_port_local_policy_keeps_the_client_address() {
    let t = tables();
    let flows = FlowTable::new(1 << 12);
    for sport in 41000..41040 {
        let (a, out) = run(&t, &flows, UPLINK, &syn_from_outside(CLIENT, sport, NODE_IP, 30081));
        assert_eq!(a, Action::Forward(1), "the local endpoint only");
        assert_eq!(tuple(&out), (CLIENT.0, B.0, sport, 8080), "client address kept");
        // B answers the client directly; weir sends it to the underlay.
        let answer = frame(TCP, B, GW_MAC, 8080, CLIENT.0, sport, tcp::flags::SYN | tcp::flags::ACK);
        let (a, out) = run(&t, &flows, 1, &answer);
        assert_eq!(a, Action::Forward(UPLINK));
        assert_eq!(tuple(&out), (NODE_IP, CLIENT.0, 30081, sport));
        assert_eq!(eth_macs(&out), (CLIENT.1, UPLINK_MAC));
    }
    // Pods reaching the same NodePort use every endpoint, untranslated source.
    let mut remote = 0;
    for sport in 41000..41040 {
        let (a, out) = run(&t, &flows, 0, &frame(TCP, A, GW_MAC, sport, NODE_IP, 30081, tcp::flags::SYN));
        assert_eq!(tuple(if a == Action::Forward(UPLINK) { inner(&out) } else { &out }).0, A.0);
        remote += usize::from(a == Action::Forward(UPLINK));
    }
    assert!(remote > 5, "{remote}");
    // No endpoint on this node: dropped, as kube-proxy does.
    let (a, _) = run(&t, &flows, UPLINK, &syn_from_outside(CLIENT, 41000, NODE_IP, 30082));
    assert_eq!(a, Action::Drop(DropReason::ServiceNoLocalBackend));
}

/// NodePorts are served on the node's other addresses too.
#[test]
fn node_ports_on_more_node_addresses() {
    let mut cfg = config("");
    let other = Ipv4Addr::new(192, 168, 70, 1);
    cfg.node_port_ips = vec![other];
    cfg.validate().unwrap();
    let t = tables_from(&cfg);
    let flows = FlowTable::new(1024);
    let (a, out) = run(&t, &flows, UPLINK, &syn_from_outside(CLIENT, 40500, other, 30081));
    assert_eq!(a, Action::Forward(1));
    assert_eq!(tuple(&out), (CLIENT.0, B.0, 40500, 8080));
    // The answer leaves from the address the client used.
    let answer = frame(TCP, B, GW_MAC, 8080, CLIENT.0, 40500, tcp::flags::SYN | tcp::flags::ACK);
    let (a, out) = run(&t, &flows, 1, &answer);
    assert_eq!((a, tuple(&out)), (Action::Forward(UPLINK), (other, CLIENT.0, 30081, 40500)));
    // Not a pod address.
    cfg.node_port_ips = vec![Ipv4Addr::new(10, 1, 0, 77)];
    assert!(cfg.validate().unwrap_err().to_string().starts_with("node_port_ips[0] = 10.1.0.77"));
}

#[test]
fn no_endpoint_is_refused_from_the_node_port() {
    let t = tables();
    let flows = FlowTable::new(1024);
    let (a, out) = run(&t, &flows, UPLINK, &syn_from_outside(CLIENT, 42000, NODE_IP, 30083));
    assert_eq!(a, Action::Reply(ReplyKind::IcmpPortUnreachable));
    assert_eq!(eth_macs(&out), (CLIENT.1, UPLINK_MAC));
    let ip = ipv4::Packet::new_checked(&out[14..]).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (NODE_IP, CLIENT.0));
    let m = icmp::Packet::new_checked(ip.payload()).unwrap();
    assert_eq!((m.msg_type(), m.code()), (icmp::msg::DEST_UNREACHABLE, icmp::code::PORT_UNREACHABLE));
    assert!(m.verify_checksum());
}

#[test]
fn external_and_load_balancer_ips_from_outside() {
    let t = tables();
    let flows = FlowTable::new(1 << 12);
    let ext = Ipv4Addr::new(192, 168, 60, 10);
    let lb = Ipv4Addr::new(192, 168, 60, 20);
    for (dst, sport) in [(ext, 43000), (lb, 43001)] {
        let (a, out) = run(&t, &flows, UPLINK, &syn_from_outside(CLIENT, sport, dst, 80));
        let (src, _, _, dport) = tuple(if a == Action::Forward(UPLINK) { inner(&out) } else { &out });
        assert!(matches!(a, Action::Forward(1 | UPLINK)), "{a:?}");
        assert_eq!((src, dport), (NODE_IP, 8080));
    }
    // loadBalancerSourceRanges: 192.168.50.0/28 only, and only on the LB IP.
    let (a, _) = run(&t, &flows, UPLINK, &syn_from_outside(FAR_CLIENT, 43002, lb, 80));
    assert_eq!(a, Action::Drop(DropReason::ServiceSourceNotAllowed));
    let (a, _) = run(&t, &flows, UPLINK, &syn_from_outside(FAR_CLIENT, 43002, ext, 80));
    assert!(matches!(a, Action::Forward(1 | UPLINK)), "{a:?}");
    // ClusterIPs are not served to the outside; nor are unknown addresses.
    let (a, _) = run(&t, &flows, UPLINK, &syn_from_outside(CLIENT, 43003, Ipv4Addr::new(10, 96, 0, 10), 80));
    assert_eq!(a, Action::Drop(DropReason::NotForUs));
    let (a, _) = run(&t, &flows, UPLINK, &syn_from_outside(CLIENT, 43003, ext, 81));
    assert_eq!(a, Action::Drop(DropReason::NotForUs));
    // A port of the node IP that is no NodePort goes to the node's kernel
    // (none here).
    let (a, _) = run(&t, &flows, UPLINK, &syn_from_outside(CLIENT, 43003, NODE_IP, 30099));
    assert_eq!(a, Action::Drop(DropReason::LocalNotServed));
}

#[test]
fn internal_traffic_policy_local_and_endpoint_conditions() {
    let t = tables();
    let flows = FlowTable::new(1 << 12);
    let to = |dst: [u8; 4], sport| frame(TCP, A, GW_MAC, sport, Ipv4Addr::from(dst), 80, tcp::flags::SYN);
    for sport in 44000..44030 {
        assert_eq!(run(&t, &flows, 0, &to([10, 96, 0, 30], sport)).0, Action::Forward(1), "iTP Local");
        assert_eq!(run(&t, &flows, 0, &to([10, 96, 0, 40], sport)).0, Action::Forward(2), "ready only");
        assert_eq!(run(&t, &flows, 0, &to([10, 96, 0, 41], sport)).0, Action::Forward(1), "serving + terminating");
    }
    // A flow stays on an endpoint that stops being ready while it is listed.
    let mut cfg = config("");
    let svc = cfg.services.iter_mut().find(|s| s.name == "default/some-ready").unwrap();
    svc.backends[1].ready = false;
    svc.backends[1].terminating = true;
    svc.backends[0].ready = true;
    let mut t2 = tables_from(&cfg);
    t2.generation = t.generation + 1;
    let (a, out) = run(&t2, &flows, 0, &frame(TCP, A, GW_MAC, 44000, Ipv4Addr::new(10, 96, 0, 40), 80, tcp::flags::ACK));
    assert_eq!((a, tuple(&out).1), (Action::Forward(2), C.0));
    // New flows go to the ready one.
    assert_eq!(run(&t2, &flows, 0, &to([10, 96, 0, 40], 45000)).0, Action::Forward(1));
    // Headless: no frontend, packets to the endpoint are plain pod traffic.
    let (a, out) = run(&t, &flows, 0, &frame(TCP, A, GW_MAC, 44000, C.0, 80, tcp::flags::SYN));
    assert_eq!((a, tuple(&out)), (Action::Forward(2), (A.0, C.0, 44000, 80)));
}

#[test]
fn tcp_state_sets_the_timeouts() {
    let t = tables();
    let flows = FlowTable::new(1 << 12);
    let vip = Ipv4Addr::new(10, 96, 0, 23);
    let key = FlowKey { src: A.0, dst: vip, src_port: 46000, dst_port: 80, proto: TCP };
    let reply_key = FlowKey { src: B.0, dst: A.0, src_port: 8080, dst_port: 46000, proto: TCP };
    let at = |ms: u64| Nat::single(&flows, ms);
    let both = |ms: u64| (flows.lookup(&key, ms).map(|e| e.timeout_ms), flows.lookup(&reply_key, ms).map(|e| e.timeout_ms));
    let client = |flags| frame(TCP, A, GW_MAC, 46000, vip, 80, flags);
    let server = |flags| frame(TCP, B, GW_MAC, 8080, A.0, 46000, flags);
    use tcp::flags::{ACK, FIN, RST, SYN};

    assert_eq!(run_at(&t, &at(0), 0, &client(SYN)).0, Action::Forward(1));
    assert_eq!(both(0), (Some(TCP_SYN_TIMEOUT_MS), Some(TCP_SYN_TIMEOUT_MS)));
    assert_eq!(run_at(&t, &at(10), 1, &server(SYN | ACK)).0, Action::Forward(0));
    assert_eq!(both(10), (Some(TCP_ESTABLISHED_TIMEOUT_MS), Some(TCP_ESTABLISHED_TIMEOUT_MS)));
    // Established flows outlive the SYN timeout.
    let later = 10 + u64::from(TCP_SYN_TIMEOUT_MS) * 3;
    assert_eq!(run_at(&t, &at(later), 0, &client(ACK)).0, Action::Forward(1));
    // FIN one way: still established (half-closed); both ways: closing.
    run_at(&t, &at(later + 1), 0, &client(FIN | ACK));
    assert_eq!(flows.lookup(&key, later + 1).map(|e| e.state), Some(state::REPLIED | state::FIN_ORIG));
    assert_eq!(both(later + 1).0, Some(TCP_ESTABLISHED_TIMEOUT_MS));
    run_at(&t, &at(later + 2), 1, &server(FIN | ACK));
    assert_eq!(both(later + 2), (Some(TCP_CLOSING_TIMEOUT_MS), Some(TCP_CLOSING_TIMEOUT_MS)));
    // A new SYN on the same ports is a new connection (state from zero).
    run_at(&t, &at(later + 3), 0, &client(SYN));
    assert_eq!(flows.lookup(&key, later + 3).map(|e| e.state), Some(0));
    // A reset closes; closing flows go after their short timeout.
    run_at(&t, &at(later + 4), 1, &server(RST | ACK));
    assert_eq!(both(later + 4), (Some(TCP_CLOSING_TIMEOUT_MS), Some(TCP_CLOSING_TIMEOUT_MS)));
    let gone = later + 5 + u64::from(TCP_CLOSING_TIMEOUT_MS);
    assert_eq!(both(gone), (None, None));
    // A SYN nobody answers goes after the SYN timeout.
    let key2 = FlowKey { src_port: 46001, ..key };
    run_at(&t, &at(0), 0, &frame(TCP, A, GW_MAC, 46001, vip, 80, SYN));
    assert!(flows.lookup(&key2, u64::from(TCP_SYN_TIMEOUT_MS)).is_some());
    assert!(flows.lookup(&key2, 2 * u64::from(TCP_SYN_TIMEOUT_MS) + 1).is_none());
    // UDP: unanswered 30 s, a stream once answered.
    let vip53 = Ipv4Addr::new(10, 96, 0, 10);
    let ukey = FlowKey { src: A.0, dst: vip53, src_port: 46002, dst_port: 53, proto: UDP };
    let (a, out) = run_at(&t, &at(0), 0, &frame(UDP, A, GW_MAC, 46002, vip53, 53, 0));
    assert_eq!(flows.lookup(&ukey, 0).map(|e| e.timeout_ms), Some(UDP_TIMEOUT_MS));
    if a == Action::Forward(1) {
        run_at(&t, &at(5), 1, &frame(UDP, B, GW_MAC, 53, A.0, 46002, 0));
        assert_eq!(flows.lookup(&ukey, 5).map(|e| e.timeout_ms), Some(UDP_STREAM_TIMEOUT_MS));
    } else {
        assert_eq!(tuple_at(inner(&out), 14).1, REMOTE_POD);
    }
}

#[test]
fn sctp_ports_are_translated_with_the_crc() {
    let t = tables();
    let flows = FlowTable::new(1024);
    let vip = Ipv4Addr::new(10, 96, 0, 50);
    let (a, out) = run(&t, &flows, 0, &frame(SCTP, A, GW_MAC, 5000, vip, 3868, 0));
    assert_eq!(a, Action::Forward(1));
    assert_eq!(tuple(&out), (A.0, B.0, 5000, 3869), "CRC32c verified in tuple()");
    let (a, out) = run(&t, &flows, 1, &frame(SCTP, B, GW_MAC, 3869, A.0, 5000, 0));
    assert_eq!(a, Action::Forward(0));
    assert_eq!(tuple(&out), (vip, A.0, 3868, 5000));
}

#[test]
fn snat_ports_come_from_each_workers_own_slice_and_run_out_cleanly() {
    let cfg = config("[nat]\nsnat_port_min = 61000\nsnat_port_max = 61003");
    let t = tables_from(&cfg);
    let flows = FlowTable::new(1 << 12);
    let one = |w: u16, sport: u16| {
        let nat = Nat { flows: &flows, now_ms: 1000, worker: w, workers: 2, dry: None };
        let (a, out) = run_at(&t, &nat, UPLINK, &syn_from_outside(CLIENT, sport, NODE_IP, 30084));
        (a, (a == Action::Forward(1)).then(|| tuple(&out).2))
    };
    // Worker 0 owns 61000 and 61002, worker 1 61001 and 61003.
    let mut got = vec![one(0, 1).1, one(0, 2).1, one(1, 3).1, one(1, 4).1];
    got.sort();
    assert_eq!(got, vec![Some(61000), Some(61001), Some(61002), Some(61003)]);
    assert_eq!(one(0, 5).0, Action::Drop(DropReason::SnatPortsExhausted));
    assert_eq!(one(1, 6).0, Action::Drop(DropReason::SnatPortsExhausted));
    // A retransmitted SYN keeps its port.
    assert_eq!(one(0, 1).0, Action::Forward(1));
}

/// ICMP errors about translated packets reach the other side as it knows
/// the flow: from a backend to a ClusterIP client, from weir itself
/// (fragmentation needed after DNAT), and from an outside client about a
/// NodePort answer.
#[test]
fn icmp_errors_of_translated_flows_are_translated_back() {
    let t = tables();
    let flows = FlowTable::new(1 << 12);
    // UDP from A to the one-backend NodePort Service's ClusterIP... use "one"
    // over TCP for a deterministic backend: B.
    let vip = Ipv4Addr::new(10, 96, 0, 23);
    let (a, sent) = run(&t, &flows, 0, &frame(TCP, A, GW_MAC, 47000, vip, 80, tcp::flags::SYN));
    assert_eq!(a, Action::Forward(1));
    // B's kernel refuses with ICMP port unreachable quoting what it got.
    let err = icmp_about(B, A.0, &sent[14..], icmp::code::PORT_UNREACHABLE);
    let (a, out) = run(&t, &flows, 1, &err);
    assert_eq!(a, Action::Forward(0));
    let (outer, quoted) = icmp_parts(&out);
    assert_eq!(outer, (vip, A.0), "from the Service address");
    assert_eq!(quoted, (A.0, vip, 47000, 80), "quoting what A sent");

    // Too big for the tunnel after DNAT to node 2: the frag-needed A gets
    // quotes the Service address, not the backend.
    let big = {
        let mut f = frame(TCP, A, GW_MAC, 47001, Ipv4Addr::new(10, 96, 0, 20), 80, tcp::flags::ACK);
        f.resize(14 + 1480, 0);
        let mut ip = ipv4::Packet::new_unchecked(&mut f[14..]);
        ip.set_total_len(1480);
        ip.fill_checksum();
        let mut tc = tcp::Packet::new_unchecked(&mut f[34..]);
        tc.fill_checksum(A.0, Ipv4Addr::new(10, 96, 0, 20));
        f
    };
    let mut seen_remote = false;
    for sport in 47001..47040 {
        let mut f = big.clone();
        tcp::Packet::new_unchecked(&mut f[34..]).set_src_port(sport);
        tcp::Packet::new_unchecked(&mut f[34..]).fill_checksum(A.0, Ipv4Addr::new(10, 96, 0, 20));
        let (a, out) = run(&t, &flows, 0, &f);
        if a == Action::Reply(ReplyKind::IcmpFragNeeded) {
            seen_remote = true;
            let (outer, quoted) = icmp_parts(&out);
            assert_eq!(outer, (GW, A.0));
            assert_eq!(quoted, (A.0, Ipv4Addr::new(10, 96, 0, 20), sport, 80));
        } else {
            assert_eq!(a, Action::Forward(1));
        }
    }
    assert!(seen_remote);

    // Outside: a client's ICMP about the NodePort's UDP answer goes to the
    // backend as an error about its own packet to the node.
    let (a, sent) = run(&t, &flows, UPLINK, &frame(UDP, CLIENT, UPLINK_MAC, 47100, NODE_IP, 30053, 0));
    let (backend_ip, port) = if a == Action::Forward(1) { (B.0, 1) } else { (REMOTE_POD, UPLINK) };
    let sent_ip = if port == 1 { &sent[14..] } else { &inner(&sent)[14..] };
    let snat_port = udp::Packet::new_unchecked(&sent_ip[20..]).src_port();
    // The backend's answer, as the client got it:
    let answer = frame(UDP, (NODE_IP, UPLINK_MAC), CLIENT.1, 30053, CLIENT.0, 47100, 0);
    let err = icmp_about(CLIENT, NODE_IP, &answer[14..], icmp::code::PORT_UNREACHABLE);
    let err = {
        let mut e = err;
        e[0..6].copy_from_slice(&UPLINK_MAC.0);
        e
    };
    let (a, out) = run(&t, &flows, UPLINK, &err);
    assert_eq!(a, Action::Forward(port));
    let out = if port == 1 { out } else { inner(&out).to_vec() };
    let (outer, quoted) = icmp_parts(&out);
    assert_eq!(outer, (NODE_IP, backend_ip));
    assert_eq!(quoted, (backend_ip, NODE_IP, 53, snat_port));
}

/// An ICMP destination-unreachable from `from` to `to` quoting `ip_packet`
/// (its IPv4 header and 8 bytes), as a frame to the gateway MAC.
fn icmp_about(from: (Ipv4Addr, MacAddr), to: Ipv4Addr, ip_packet: &[u8], code: u8) -> Vec<u8> {
    let quote_len = (ipv4::Packet::new_unchecked(ip_packet).header_len() + 8).min(ip_packet.len());
    let mut f = vec![0u8; 14 + 20 + 8 + quote_len];
    ethernet::Repr { src: from.1, dst: GW_MAC, ethertype: ethernet::ethertype::IPV4 }
        .emit(&mut ethernet::Frame::new_unchecked(&mut f[..]));
    ipv4::Repr {
        src: from.0,
        dst: to,
        protocol: ipv4::protocol::ICMP,
        ttl: 64,
        payload_len: 8 + quote_len,
        dscp_ecn: 0,
        ident: 9,
        dont_frag: false,
    }
    .emit(&mut ipv4::Packet::new_unchecked(&mut f[14..]));
    f[42..].copy_from_slice(&ip_packet[..quote_len]);
    let mut m = icmp::Packet::new_unchecked(&mut f[34..]);
    m.set_msg_type(icmp::msg::DEST_UNREACHABLE);
    m.set_code(code);
    m.fill_checksum();
    f
}

/// ((outer src, dst), (quoted src, dst, sport, dport)) of an ICMP error
/// frame, with the outer, ICMP and quoted IPv4 checksums verified.
fn icmp_parts(out: &[u8]) -> ((Ipv4Addr, Ipv4Addr), (Ipv4Addr, Ipv4Addr, u16, u16)) {
    let ip = ipv4::Packet::new_checked(&out[14..]).unwrap();
    assert!(ip.verify_checksum());
    let m = icmp::Packet::new_checked(ip.payload()).unwrap();
    assert!(m.verify_checksum(), "ICMP checksum");
    let q = &ip.payload()[8..];
    let qip = ipv4::Packet::new_unchecked(q);
    assert!(ipv4::Packet::new_unchecked(&q[..20]).verify_checksum(), "quoted IPv4 checksum");
    let p = &q[qip.header_len()..];
    (
        (ip.src_addr(), ip.dst_addr()),
        (qip.src_addr(), qip.dst_addr(), u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]])),
    )
}
