//! Policy in the pipeline: the first packet of a flow is classified, the
//! replies of allowed flows pass, a publication re-checks live flows, and
//! Service flows are checked against the backend they go to.
//!
//! The node: pods A 10.1.0.2, B 10.1.0.3, C 10.1.0.4 on ports 0, 1, 2; the
//! Service 10.96.0.10:80 → B:8080.

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::*;
use crate::config::NodeConfig;
use crate::pipeline::{process_full, NoEvents, TestBuf};
use crate::tables::acl::{AclConfig, AclTable, DirectionConfig, PeerConfig, PodAclConfig, PortRange, RuleConfig};
use crate::tables::service::ServiceTable;
use crate::tables::PortEntry;
use crate::wire::MacAddr;

const GW: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const GW_MAC: MacAddr = MacAddr([2, 0xfe, 0, 0, 0, 1]);
const A: (Ipv4Addr, MacAddr) = (Ipv4Addr::new(10, 1, 0, 2), MacAddr([2, 0, 0, 0, 0, 2]));
const B: (Ipv4Addr, MacAddr) = (Ipv4Addr::new(10, 1, 0, 3), MacAddr([2, 0, 0, 0, 0, 3]));
const C: (Ipv4Addr, MacAddr) = (Ipv4Addr::new(10, 1, 0, 4), MacAddr([2, 0, 0, 0, 0, 4]));
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const TCP: u8 = ipv4::protocol::TCP;
const ICMP: u8 = ipv4::protocol::ICMP;

fn rule(id: &str, peers: &[&str], protocol: Option<u8>, port: Option<u16>, action: Verdict) -> RuleConfig {
    RuleConfig {
        id: id.into(),
        priority: 0,
        peers: peers.iter().map(|p| PeerConfig { cidr: p.parse().unwrap(), except: vec![] }).collect(),
        protocol,
        ports: port.map(PortRange::single).into_iter().collect(),
        action,
    }
}

fn pod(ip: Ipv4Addr, ingress: Option<DirectionConfig>, egress: Option<DirectionConfig>) -> PodAclConfig {
    PodAclConfig { ip, name: format!("default/{ip}"), ingress, egress }
}

fn tables(acl: AclConfig, generation: u64) -> Tables {
    let cfg = NodeConfig::from_toml(
        r#"
        [node]
        name = "n"
        pod_cidr = "10.1.0.0/24"
        [gateway]
        ip = "10.1.0.1"
        mac = "02:fe:00:00:00:01"
        [[services]]
        name = "default/b"
        cluster_ips = ["10.96.0.10"]
        ports = [{ port = 80, protocol = "tcp", target_port = 8080 }]
        backends = [{ ip = "10.1.0.3" }]
        "#,
    )
    .unwrap();
    let mut t = Tables::new(&cfg, 1);
    t.generation = generation;
    for (i, (ip, mac)) in [A, B, C].into_iter().enumerate() {
        t.add_port(i as u16, PortEntry::pod("p", ip, mac, 0), 1);
    }
    t.services = ServiceTable::build(&cfg).unwrap();
    t.acl = Arc::new(AclTable::build(&acl, &[GW]).unwrap());
    t
}

/// TCP (flags) or an ICMP echo request/reply (flags = the ICMP type).
fn frame(proto: u8, from: (Ipv4Addr, MacAddr), sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    let l4_len = if proto == TCP { 20 } else { 8 };
    let mut f = vec![0u8; 14 + 20 + l4_len];
    ethernet::Repr { src: from.1, dst: GW_MAC, ethertype: ethernet::ethertype::IPV4 }
        .emit(&mut ethernet::Frame::new_unchecked(&mut f[..]));
    ipv4::Repr { src: from.0, dst, protocol: proto, ttl: 64, payload_len: l4_len, dscp_ecn: 0, ident: 3, dont_frag: true }
        .emit(&mut ipv4::Packet::new_unchecked(&mut f[14..]));
    if proto == TCP {
        let mut t = tcp::Packet::new_unchecked(&mut f[34..]);
        t.set_src_port(sport);
        t.set_dst_port(dport);
        t.set_header_len(20);
        t.set_flags(flags);
        t.fill_checksum(from.0, dst);
    } else {
        let mut m = icmp::Packet::new_unchecked(&mut f[34..]);
        m.set_msg_type(flags);
        m.set_rest_of_header(u32::from(sport) << 16 | 1);
        m.fill_checksum();
    }
    f
}

fn run(t: &Tables, flows: &FlowTable, port: u16, f: &[u8]) -> Action {
    let mut b = TestBuf::new(f);
    process_full(t, Some(&Nat::single(flows, 1000)), port, &mut b, &mut NoEvents)
}

use tcp::flags::{ACK, SYN};

/// The Contiv demo's icmpPol on B: ICMP in denied, TCP to it still fine,
/// and the other pods' pings untouched.
#[test]
fn icmp_deny_keeps_tcp() {
    let deny_icmp = DirectionConfig {
        rules: vec![rule("contiv:icmpPol/1", &[], Some(ICMP), None, Verdict::Deny)],
        default: Verdict::Allow,
    };
    let t = tables(AclConfig { pods: vec![pod(B.0, Some(deny_icmp), None)] }, 1);
    let flows = FlowTable::new(1024);
    let ping = |to: Ipv4Addr| frame(ICMP, A, 7, to, 0, icmp::msg::ECHO_REQUEST);
    assert_eq!(run(&t, &flows, 0, &ping(B.0)), Action::Drop(DropReason::PolicyDeniedIngress));
    assert_eq!(run(&t, &flows, 0, &ping(C.0)), Action::Forward(2));
    assert_eq!(run(&t, &flows, 0, &frame(TCP, A, 40000, B.0, 6379, SYN)), Action::Forward(1));
    assert_eq!(run(&t, &flows, 1, &frame(TCP, B, 6379, A.0, 40000, SYN | ACK)), Action::Forward(0));
    let hits: Vec<u64> = t.acl.rules().map(|r| r.hits).collect();
    assert_eq!(hits, vec![1], "the deny rule counted once");
}

/// Default deny on B's ingress with one allow (A, TCP 80): A's connection
/// and its replies pass; C is refused; B's own connections out are not
/// affected (no egress policy).
#[test]
fn default_deny_with_one_allow_is_stateful() {
    let ingress = DirectionConfig {
        rules: vec![rule("np:default/allow-a/ingress/0/tcp", &["10.1.0.2/32"], Some(TCP), Some(80), Verdict::Allow)],
        default: Verdict::Deny,
    };
    let t = tables(AclConfig { pods: vec![pod(B.0, Some(ingress), None)] }, 1);
    let flows = FlowTable::new(1024);
    assert_eq!(run(&t, &flows, 0, &frame(TCP, A, 40000, B.0, 80, SYN)), Action::Forward(1));
    assert_eq!(run(&t, &flows, 1, &frame(TCP, B, 80, A.0, 40000, SYN | ACK)), Action::Forward(0));
    assert_eq!(run(&t, &flows, 0, &frame(TCP, A, 40000, B.0, 80, ACK)), Action::Forward(1));
    assert_eq!(run(&t, &flows, 2, &frame(TCP, C, 40000, B.0, 80, SYN)), Action::Drop(DropReason::PolicyDeniedIngress));
    assert_eq!(run(&t, &flows, 0, &frame(TCP, A, 40001, B.0, 81, SYN)), Action::Drop(DropReason::PolicyDeniedIngress));
    // B to C: C has no policy, B no egress policy.
    assert_eq!(run(&t, &flows, 1, &frame(TCP, B, 41000, C.0, 80, SYN)), Action::Forward(2));
    // The node (its gateway address) always reaches B.
    assert_eq!(t.acl.evaluate(GW, B.0, ICMP, 0, 0).verdict, Verdict::Allow);
}

/// Egress to an ipBlock with an except: A may reach 10.1.0.0/24 but not C.
#[test]
fn egress_ip_block_with_except() {
    let egress = DirectionConfig {
        rules: vec![RuleConfig {
            peers: vec![PeerConfig { cidr: "10.1.0.0/24".parse().unwrap(), except: vec!["10.1.0.4/32".parse().unwrap()] }],
            ..rule("np:default/out/egress/0", &[], None, None, Verdict::Allow)
        }],
        default: Verdict::Deny,
    };
    let t = tables(AclConfig { pods: vec![pod(A.0, None, Some(egress))] }, 1);
    let flows = FlowTable::new(1024);
    assert_eq!(run(&t, &flows, 0, &frame(TCP, A, 40000, B.0, 80, SYN)), Action::Forward(1));
    assert_eq!(run(&t, &flows, 0, &frame(TCP, A, 40000, C.0, 80, SYN)), Action::Drop(DropReason::PolicyDeniedEgress));
    // The reply of the allowed flow comes back even though A's egress
    // policy is default deny (replies are not A's egress).
    assert_eq!(run(&t, &flows, 1, &frame(TCP, B, 80, A.0, 40000, SYN | ACK)), Action::Forward(0));
    // A ping echo to B and its reply.
    assert_eq!(run(&t, &flows, 0, &frame(ICMP, A, 9, B.0, 0, icmp::msg::ECHO_REQUEST)), Action::Forward(1));
    assert_eq!(run(&t, &flows, 1, &frame(ICMP, B, 9, A.0, 0, icmp::msg::ECHO_REPLY)), Action::Forward(0));
}

/// A live connection is cut when the policy that allowed it goes: the next
/// packet after the publication is re-checked and dropped.
#[test]
fn a_removed_allow_cuts_the_live_flow() {
    let allow = |allowed: bool| {
        let rules = if allowed {
            vec![rule("np:default/allow-a/ingress/0", &["10.1.0.2/32"], None, None, Verdict::Allow)]
        } else {
            vec![]
        };
        AclConfig { pods: vec![pod(B.0, Some(DirectionConfig { rules, default: Verdict::Deny }), None)] }
    };
    let flows = FlowTable::new(1024);
    let t1 = tables(allow(true), 1);
    assert_eq!(run(&t1, &flows, 0, &frame(TCP, A, 40000, B.0, 80, SYN)), Action::Forward(1));
    assert_eq!(run(&t1, &flows, 0, &frame(TCP, A, 40000, B.0, 80, ACK)), Action::Forward(1));
    // Unrelated new tables (same policy): the flow lives on.
    let t2 = tables(allow(true), 2);
    assert_eq!(run(&t2, &flows, 0, &frame(TCP, A, 40000, B.0, 80, ACK)), Action::Forward(1));
    let t3 = tables(allow(false), 3);
    assert_eq!(run(&t3, &flows, 0, &frame(TCP, A, 40000, B.0, 80, ACK)), Action::Drop(DropReason::PolicyDeniedIngress));
    assert!(flows.entries(1000).is_empty(), "both directions forgotten: {:?}", flows.entries(1000));
}

/// A Service flow is checked against the backend it is given: B's ingress
/// policy decides whether A reaches B through the Service.
#[test]
fn service_flows_are_checked_after_dnat() {
    let ingress = DirectionConfig {
        rules: vec![rule("np:default/allow-c/ingress/0", &["10.1.0.4/32"], Some(TCP), Some(8080), Verdict::Allow)],
        default: Verdict::Deny,
    };
    let t = tables(AclConfig { pods: vec![pod(B.0, Some(ingress), None)] }, 1);
    let flows = FlowTable::new(1024);
    assert_eq!(run(&t, &flows, 0, &frame(TCP, A, 40000, VIP, 80, SYN)), Action::Drop(DropReason::PolicyDeniedIngress));
    assert!(flows.entries(1000).is_empty(), "no flow for a denied packet");
    assert_eq!(run(&t, &flows, 2, &frame(TCP, C, 40000, VIP, 80, SYN)), Action::Forward(1));
    assert_eq!(run(&t, &flows, 1, &frame(TCP, B, 8080, C.0, 40000, SYN | ACK)), Action::Forward(2));
}

/// Without policies nothing is tracked for plain pod traffic.
#[test]
fn no_policy_no_flow_state() {
    let t = tables(AclConfig::default(), 1);
    let flows = FlowTable::new(1024);
    assert_eq!(run(&t, &flows, 0, &frame(TCP, A, 40000, B.0, 80, SYN)), Action::Forward(1));
    assert_eq!(run(&t, &flows, 0, &frame(ICMP, A, 1, B.0, 0, icmp::msg::ECHO_REQUEST)), Action::Forward(1));
    assert!(flows.entries(1000).is_empty());
}

/// A flow tracked for policy keeps both directions' state in step: the
/// reply moves the original direction's entry to "answered" too (its
/// timeout from 60 s to 2 h), and a reply-side policy cut forgets both.
#[test]
fn a_tracked_flow_keeps_both_entries_in_step() {
    let allow = |allowed: bool| {
        let rules = if allowed {
            vec![rule("np:default/allow-a/ingress/0", &["10.1.0.2/32"], None, None, Verdict::Allow)]
        } else {
            vec![]
        };
        AclConfig { pods: vec![pod(B.0, Some(DirectionConfig { rules, default: Verdict::Deny }), None)] }
    };
    let flows = FlowTable::new(1024);
    let t1 = tables(allow(true), 1);
    assert_eq!(run(&t1, &flows, 0, &frame(TCP, A, 40000, B.0, 80, SYN)), Action::Forward(1));
    assert_eq!(run(&t1, &flows, 1, &frame(TCP, B, 80, A.0, 40000, SYN | ACK)), Action::Forward(0));
    let orig = FlowKey { src: A.0, dst: B.0, src_port: 40000, dst_port: 80, proto: TCP };
    for k in [orig, orig.reversed()] {
        let e = flows.lookup(&k, 1000).expect("both directions tracked");
        assert_eq!((e.state, e.timeout_ms), (state::REPLIED, TCP_ESTABLISHED_TIMEOUT_MS), "{k:?}");
    }
    // Cut from the reply side: both entries go.
    let t2 = tables(allow(false), 2);
    assert_eq!(run(&t2, &flows, 1, &frame(TCP, B, 80, A.0, 40000, ACK)), Action::Drop(DropReason::PolicyDeniedIngress));
    assert!(flows.entries(1000).is_empty(), "both directions forgotten: {:?}", flows.entries(1000));
}
