//! Flow logs without DPDK: packets through the workers' burst loop
//! (`inspect::rx_burst`, as `worker::run` calls it) with the tap armed or
//! not, and the management side (`FlowLogs`) on a fake clock.
//!
//! The node: pod-a 10.1.0.2 (port 0), pod-b 10.1.0.3 (port 1), pod-c
//! 10.1.0.4 (port 2), pod-d 10.1.0.5 (port 3), the uplink (port 4, node IP
//! 192.168.50.1). Services: default/web:http 10.96.0.10:80/tcp → pod-b:8080
//! (NodePort 30080, externalTrafficPolicy Cluster), default/dns:dns
//! 10.96.0.53:53/udp → pod-b:5353. Policy: pod-c's ingress denies pod-a
//! (rule `np:default/deny-a/ingress/0`), allows the rest; pod-d's ingress
//! denies everything (its default).

use crate::pipeline::testkit;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

use super::manager::{sweep, FlowLogs};
use super::*;
use crate::api::Reply;
use crate::config::NodeConfig;
use crate::inspect::packet::build;
use crate::inspect::tap::{Burst, Tap};
use crate::inspect::{rx_burst, Clock, FlowLogRecord, PacketSpec, VxlanSpec};
use crate::pipeline::nat::{Nat, TCP_CLOSING_TIMEOUT_MS, UDP_STREAM_TIMEOUT_MS, UDP_TIMEOUT_MS};
use crate::pipeline::{Action, DropReason, NoEvents, ReplyKind, TestBuf};
use crate::tables::acl::{AclConfig, AclTable, DirectionConfig, PeerConfig, PodAclConfig, RuleConfig, Verdict};
use crate::tables::service::ServiceTable;
use crate::tables::{PortEntry, Tables};
use crate::wire::{ethernet, ipv4, MacAddr};

const A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);
const C: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 4);
const D: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 5);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const DNS: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 53);
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 9);
const DENY_A: &str = "np:default/deny-a/ingress/0";
/// The wall clock at workers' time 0, ns.
const WALL0: u64 = 1_800_000_000_000_000_000;

fn config(web_backends: &str) -> NodeConfig {
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
        [[services]]
        name = "default/web:http"
        cluster_ips = ["10.96.0.10"]
        ports = [{{ port = 80, protocol = "tcp", target_port = 8080, node_port = 30080 }}]
        backends = [{web_backends}]
        [[services]]
        name = "default/dns:dns"
        cluster_ips = ["10.96.0.53"]
        ports = [{{ port = 53, protocol = "udp", target_port = 5353 }}]
        backends = [{{ ip = "10.1.0.3" }}]
        "#
    ))
    .unwrap()
}

fn acl(c_denies: &[&str]) -> AclConfig {
    let deny = |id: &str, peer: &str| RuleConfig {
        id: id.into(),
        priority: 0,
        peers: vec![PeerConfig { cidr: peer.parse().unwrap(), except: vec![] }],
        protocol: None,
        ports: vec![],
        action: Verdict::Deny,
    };
    let rules = c_denies.iter().enumerate().map(|(i, p)| deny(if i == 0 { DENY_A } else { "np:x/y/ingress/1" }, p));
    AclConfig {
        pods: vec![
            PodAclConfig {
                ip: C,
                name: "default/pod-c".into(),
                ingress: Some(DirectionConfig { rules: rules.collect(), default: Verdict::Allow }),
                egress: None,
            },
            PodAclConfig {
                ip: D,
                name: "default/pod-d".into(),
                ingress: Some(DirectionConfig { rules: vec![], default: Verdict::Deny }),
                egress: None,
            },
        ],
    }
}

fn tables_with(generation: u64, cfg: &NodeConfig, acl: &AclConfig) -> Tables {
    let mut t = Tables::new(cfg, 1);
    t.generation = generation;
    for (i, (name, ip)) in [("pod-a", A), ("pod-b", B), ("pod-c", C), ("pod-d", D)].into_iter().enumerate() {
        t.add_port(i as u16, PortEntry::pod(name, ip, MacAddr([2, 0, 0, 0, 0, 2 + i as u8]), 0), 1);
    }
    t.add_port(4, PortEntry { uplink: true, ..PortEntry::plain("uplink") }, 1);
    t.overlay = Some(testkit::overlay(4));
    t.neighbours.insert(CLIENT, MacAddr([2, 0, 0, 0xcc, 0, 9]));
    t.services = ServiceTable::build(cfg).unwrap();
    t.acl = Arc::new(AclTable::build(acl, &[Ipv4Addr::new(10, 1, 0, 1), NODE_IP]).unwrap());
    t
}

fn tables() -> Tables {
    tables_with(7, &config(r#"{ ip = "10.1.0.3" }"#), &acl(&["10.1.0.2/32"]))
}

/// A node: its flow table, the tap, the manager, the clock.
struct Env {
    t: Tables,
    flows: FlowTable,
    tap: Arc<Tap>,
    logs: FlowLogs,
    now_ms: u64,
}

impl Env {
    fn new() -> Env {
        let tap = Arc::new(Tap::default());
        Env { t: tables(), flows: FlowTable::new(1 << 12), logs: FlowLogs::new(Arc::clone(&tap)), tap, now_ms: 1_000 }
    }

    fn start(&mut self, per_s: u32, burst: Option<u32>) -> u64 {
        self.logs.start(per_s, burst, self.flows.capacity(), Instant::now()).unwrap()
    }

    fn clock(&self) -> Clock {
        Clock { tsc: self.now_ms, tsc_hz: 1000, wall_ns: WALL0 + self.now_ms * 1_000_000 }
    }

    fn now(&self) -> Now {
        Now { clock: self.clock(), ms: self.now_ms, at: Instant::now() }
    }

    /// One frame through a worker's burst loop at `now_ms`; the action and
    /// the frame as it leaves.
    fn send(&self, spec: &PacketSpec) -> (Action, Vec<u8>) {
        let (port, frame) = build(&self.t, spec).unwrap();
        let nat = Nat::single(&self.flows, self.now_ms);
        let b =
            Burst { tables: &self.t, nat: &nat, tap: &self.tap, flags: self.tap.flags(), worker: 0, port, clock: || 0 };
        let mut out = None;
        rx_burst::<true, _, _, _, _>(&b, std::iter::once(TestBuf::new(&frame)), &mut NoEvents, |m, a| {
            out = Some((a, crate::pipeline::PacketBuf::data(&m).to_vec()))
        });
        out.unwrap()
    }

    fn tick(&mut self) {
        let now = self.now();
        self.logs.tick(&self.t, &self.flows, &now, &mut || {});
    }

    /// Polls session `id`: its records, drops and metered count.
    fn poll(&mut self, id: u64) -> (Vec<FlowLogRecord>, Drops, u64) {
        let now = self.now();
        match self.logs.poll(id, &self.t, &self.flows, &now, &mut || {}) {
            Reply::FlowLogged { records, drops, metered, done: None, .. } => (records, drops, metered),
            other => panic!("poll: {other:?}"),
        }
    }
}

fn tcp(in_port: &str, src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: &str, ip_len: u16) -> PacketSpec {
    PacketSpec {
        in_port: in_port.into(),
        src,
        dst,
        proto: "tcp".into(),
        sport: Some(sport),
        dport: Some(dport),
        tcp_flags: Some(flags.into()),
        ttl: None,
        ip_len: Some(ip_len),
        vxlan: None,
    }
}

fn udp(in_port: &str, src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, ip_len: u16) -> PacketSpec {
    PacketSpec { proto: "udp".into(), tcp_flags: None, ..tcp(in_port, src, sport, dst, dport, "syn", ip_len) }
}

/// The destination (address, port) of an IPv4 TCP/UDP frame.
fn dst_of(frame: &[u8]) -> (Ipv4Addr, u16) {
    let ip = ipv4::Packet::new_unchecked(&frame[ethernet::HEADER_LEN..]);
    let l4 = ip.payload();
    (ip.dst_addr(), u16::from_be_bytes([l4[2], l4[3]]))
}

fn src_of(frame: &[u8]) -> (Ipv4Addr, u16) {
    let ip = ipv4::Packet::new_unchecked(&frame[ethernet::HEADER_LEN..]);
    let l4 = ip.payload();
    (ip.src_addr(), u16::from_be_bytes([l4[0], l4[1]]))
}

fn sa(a: Ipv4Addr, p: u16) -> SocketAddrV4 {
    SocketAddrV4::new(a, p)
}

fn events(r: &[FlowLogRecord]) -> Vec<&str> {
    r.iter().map(|r| r.event.as_str()).collect()
}

/// A TCP connection pod-a:40000 → web's ClusterIP, answered by pod-b, some
/// data each way; returns the packets and IPv4 bytes sent (orig, reply).
fn open_connection(env: &Env) -> ([u64; 2], [u64; 2]) {
    let (a, out) = env.send(&tcp("pod-a", A, 40000, VIP, 80, "syn", 40));
    assert_eq!((a, dst_of(&out)), (Action::Forward(1), (B, 8080)));
    let (a, out) = env.send(&tcp("pod-b", B, 8080, A, 40000, "syn,ack", 40));
    assert_eq!((a, src_of(&out)), (Action::Forward(0), (VIP, 80)));
    assert_eq!(env.send(&tcp("pod-a", A, 40000, VIP, 80, "ack", 40)).0, Action::Forward(1));
    assert_eq!(env.send(&tcp("pod-a", A, 40000, VIP, 80, "psh,ack", 140)).0, Action::Forward(1));
    assert_eq!(env.send(&tcp("pod-b", B, 8080, A, 40000, "psh,ack", 90)).0, Action::Forward(0));
    ([3, 2], [40 + 40 + 140, 40 + 90])
}

#[test]
fn a_clusterip_flow_starts_with_its_backend_and_ends_closed_with_its_counts() {
    let mut env = Env::new();
    let id = env.start(1000, None);
    let born = env.now_ms;
    let (mut packets, mut bytes) = open_connection(&env);
    env.now_ms += 500;
    for (port, src, sport, dst, dport, reply) in
        [("pod-a", A, 40000, VIP, 80, false), ("pod-b", B, 8080, A, 40000, true)]
    {
        assert!(matches!(env.send(&tcp(port, src, sport, dst, dport, "fin,ack", 40)).0, Action::Forward(_)));
        packets[usize::from(reply)] += 1;
        bytes[usize::from(reply)] += 40;
    }
    env.now_ms += 5;
    assert_eq!(env.send(&tcp("pod-a", A, 40000, VIP, 80, "ack", 40)).0, Action::Forward(1));
    packets[0] += 1;
    bytes[0] += 40;
    let last = env.now_ms;

    let (r, drops, metered) = env.poll(id);
    assert_eq!(events(&r), ["start"], "{r:#?}");
    assert_eq!((drops, metered), (Drops::default(), 1));
    let s = &r[0];
    assert_eq!((s.src, s.sport, s.dst, s.dport, s.proto), (A, 40000, VIP, 80, 6));
    assert_eq!((s.nat_dst, s.nat_src), (Some(sa(B, 8080)), None));
    assert_eq!(
        (s.service.as_deref(), s.in_port.as_deref(), s.verdict.as_str()),
        (Some("default/web:http"), Some("pod-a"), "allowed")
    );
    assert_eq!(s.time_ns, WALL0 + born * 1_000_000);
    assert_eq!((s.packets, s.rule.as_ref(), s.reason.as_ref()), (None, None, None));

    // FIN both ways: closing, 10 s without packets; reported once that
    // and the grace are over, not before.
    env.now_ms = last + u64::from(TCP_CLOSING_TIMEOUT_MS) + GRACE_MS;
    env.tick();
    assert_eq!(env.poll(id).0, vec![], "not over yet");
    env.now_ms += 1;
    let (r, _, metered) = env.poll(id);
    assert_eq!(events(&r), ["end"], "{r:#?}");
    assert_eq!(metered, 0);
    let e = &r[0];
    assert_eq!((e.src, e.sport, e.dst, e.dport), (A, 40000, VIP, 80));
    assert_eq!((e.nat_dst, e.service.as_deref()), (Some(sa(B, 8080)), Some("default/web:http")));
    assert_eq!((e.packets, e.bytes), (Some(packets), Some(bytes)));
    assert_eq!(
        (e.reason.as_deref(), e.duration_ms, e.start_ns),
        (Some("fin"), Some(last - born), Some(WALL0 + born * 1_000_000))
    );
    assert_eq!(e.time_ns, WALL0 + env.now_ms * 1_000_000);
    // Reported once.
    env.now_ms += 60_000;
    env.tick();
    assert_eq!(env.poll(id).0, vec![]);
}

#[test]
fn a_reset_flow_ends_as_rst() {
    let mut env = Env::new();
    let id = env.start(1000, None);
    let (mut packets, _) = open_connection(&env);
    assert_eq!(env.send(&tcp("pod-b", B, 8080, A, 40000, "rst", 40)).0, Action::Forward(0));
    packets[1] += 1;
    env.now_ms += u64::from(TCP_CLOSING_TIMEOUT_MS) + GRACE_MS + 1;
    let (r, _, _) = env.poll(id);
    assert_eq!(events(&r), ["start", "end"]);
    assert_eq!((r[1].reason.as_deref(), r[1].packets), (Some("rst"), Some(packets)));
}

#[test]
fn a_new_syn_on_a_closed_connection_ends_it_and_starts_another() {
    let mut env = Env::new();
    let id = env.start(1000, None);
    open_connection(&env);
    env.send(&tcp("pod-a", A, 40000, VIP, 80, "rst", 40));
    env.now_ms += 100;
    assert_eq!(env.send(&tcp("pod-a", A, 40000, VIP, 80, "syn", 40)).0, Action::Forward(1));
    let (r, _, metered) = env.poll(id);
    assert_eq!(events(&r), ["start", "end", "start"], "{r:#?}");
    assert_eq!((r[1].reason.as_deref(), r[1].packets), (Some("rst"), Some([4, 2])));
    assert_eq!(metered, 1);
}

#[test]
fn nodeport_from_outside_shows_both_translations() {
    let mut env = Env::new();
    let id = env.start(1000, None);
    let (a, out) = env.send(&tcp("uplink", CLIENT, 50000, NODE_IP, 30080, "syn", 40));
    assert_eq!((a, dst_of(&out)), (Action::Forward(1), (B, 8080)));
    let (snat_ip, snat_port) = src_of(&out);
    assert_eq!(snat_ip, NODE_IP);
    // The answer comes back to the node IP and the claimed port.
    let (a, out) = env.send(&tcp("pod-b", B, 8080, NODE_IP, snat_port, "syn,ack", 40));
    assert_eq!((a, src_of(&out), dst_of(&out)), (Action::Forward(4), (NODE_IP, 30080), (CLIENT, 50000)));
    env.now_ms += 10;
    assert_eq!(env.send(&tcp("uplink", CLIENT, 50000, NODE_IP, 30080, "rst", 40)).0, Action::Forward(1));
    env.now_ms += u64::from(TCP_CLOSING_TIMEOUT_MS) + GRACE_MS + 1;
    let (r, _, _) = env.poll(id);
    assert_eq!(events(&r), ["start", "end"], "{r:#?}");
    for rec in &r {
        assert_eq!((rec.src, rec.sport, rec.dst, rec.dport), (CLIENT, 50000, NODE_IP, 30080));
        assert_eq!((rec.nat_src, rec.nat_dst), (Some(sa(NODE_IP, snat_port)), Some(sa(B, 8080))));
        assert_eq!(rec.service.as_deref(), Some("default/web:http"));
    }
    assert_eq!(r[0].in_port.as_deref(), Some("uplink"));
    assert_eq!((r[1].packets, r[1].bytes), (Some([2, 1]), Some([80, 40])));
}

#[test]
fn a_policy_deny_names_the_rule_or_the_default() {
    let mut env = Env::new();
    let id = env.start(1000, None);
    assert_eq!(env.send(&tcp("pod-a", A, 40000, C, 80, "syn", 40)).0, Action::Drop(DropReason::PolicyDeniedIngress));
    assert_eq!(env.send(&udp("pod-b", B, 41000, D, 53, 60)).0, Action::Drop(DropReason::PolicyDeniedIngress));
    let (r, _, metered) = env.poll(id);
    assert_eq!(events(&r), ["denied", "denied"], "{r:#?}");
    assert_eq!(metered, 0, "a denied flow is not metered");
    let d = &r[0];
    assert_eq!((d.src, d.sport, d.dst, d.dport, d.proto), (A, 40000, C, 80, 6));
    assert_eq!(
        (d.verdict.as_str(), d.rule.as_deref(), d.direction.as_deref()),
        ("denied", Some(DENY_A), Some("ingress"))
    );
    assert_eq!((d.nat_dst, d.in_port.as_deref()), (None, Some("pod-a")));
    let d = &r[1];
    assert_eq!((d.src, d.dst, d.dport, d.proto), (B, D, 53, 17));
    assert_eq!((d.rule.as_deref(), d.direction.as_deref()), (Some("default"), Some("ingress")));
}

#[test]
fn a_denied_service_flow_shows_the_backend_it_was_denied_to() {
    // pod-c is the backend of web; pod-a may not reach it.
    let mut env = Env::new();
    env.t = tables_with(7, &config(r#"{ ip = "10.1.0.4" }"#), &acl(&["10.1.0.2/32"]));
    let id = env.start(1000, None);
    assert_eq!(env.send(&tcp("pod-a", A, 40000, VIP, 80, "syn", 40)).0, Action::Drop(DropReason::PolicyDeniedIngress));
    let (r, _, _) = env.poll(id);
    assert_eq!(events(&r), ["denied"]);
    assert_eq!((r[0].dst, r[0].dport, r[0].nat_dst), (VIP, 80, Some(sa(C, 8080))));
    assert_eq!((r[0].service.as_deref(), r[0].rule.as_deref()), (Some("default/web:http"), Some(DENY_A)));
}

#[test]
fn an_idle_udp_flow_ends_by_timeout_through_the_sweep() {
    let mut env = Env::new();
    let id = env.start(1000, None);
    let (a, out) = env.send(&udp("pod-a", A, 41000, DNS, 53, 60));
    assert_eq!((a, dst_of(&out)), (Action::Forward(1), (B, 5353)));
    env.now_ms += 20;
    assert_eq!(env.send(&udp("pod-b", B, 5353, A, 41000, 100)).0, Action::Forward(0));
    let last = env.now_ms;
    // Answered: a stream, 120 s.
    env.now_ms = last + u64::from(UDP_STREAM_TIMEOUT_MS) + GRACE_MS;
    env.tick();
    let (r, _, metered) = env.poll(id);
    assert_eq!((events(&r), metered), (vec!["start"], 1));
    env.now_ms += 1;
    let (r, _, metered) = env.poll(id);
    assert_eq!((events(&r), metered), (vec!["end"], 0));
    assert_eq!((r[0].reason.as_deref(), r[0].packets, r[0].bytes), (Some("timeout"), Some([1, 1]), Some([60, 100])));
    assert_eq!(
        (r[0].nat_dst, r[0].service.as_deref(), r[0].duration_ms),
        (Some(sa(B, 5353)), Some("default/dns:dns"), Some(20))
    );
}

#[test]
fn a_flow_whose_table_slot_was_reused_still_ends() {
    let mut env = Env::new();
    let id = env.start(1000, None);
    env.send(&udp("pod-a", A, 41000, DNS, 53, 60));
    // The flow's entries are gone from the table (as when their slots go to
    // other flows after they expired).
    let key = crate::flow::FlowKey { src: A, dst: DNS, src_port: 41000, dst_port: 53, proto: 17 };
    assert!(env.flows.remove(&key));
    env.tick();
    let (r, _, _) = env.poll(id);
    assert_eq!(events(&r), ["start", "end"]);
    assert_eq!((r[1].reason.as_deref(), r[1].packets), (Some("timeout"), Some([1, 0])));
}

#[test]
fn the_same_tuple_after_an_unseen_expiry_ends_the_old_flow_once() {
    let mut env = Env::new();
    let id = env.start(1000, None);
    env.send(&udp("pod-a", A, 41000, DNS, 53, 60));
    // Expired (30 s unanswered), not swept yet: the next packet of the
    // tuple is a new flow, and its worker reports the old one's end first.
    env.now_ms += u64::from(UDP_TIMEOUT_MS) + 1;
    env.send(&udp("pod-a", A, 41000, DNS, 53, 70));
    let (r, _, metered) = env.poll(id);
    assert_eq!(events(&r), ["start", "end", "start"], "{r:#?}");
    assert_eq!((r[1].reason.as_deref(), r[1].bytes), (Some("timeout"), Some([60, 0])));
    assert_eq!(metered, 1);
    // The sweep leaves the live one alone, then reports it once.
    env.now_ms += 1000;
    env.tick();
    assert_eq!(env.poll(id).0, vec![]);
    env.now_ms += u64::from(UDP_TIMEOUT_MS) + GRACE_MS;
    let (r, _, _) = env.poll(id);
    assert_eq!(events(&r), ["end"]);
    assert_eq!(r[0].bytes, Some([70, 0]));
}

#[test]
fn a_backend_leaving_ends_its_flows() {
    let mut env = Env::new();
    let id = env.start(1000, None);
    open_connection(&env);
    env.send(&udp("pod-a", A, 41000, DNS, 53, 60));
    // web and dns move to 10.1.0.4.
    let mut cfg = config(r#"{ ip = "10.1.0.4" }"#);
    cfg.services[1].backends[0].ip = C;
    env.t = tables_with(8, &cfg, &acl(&[]));
    // TCP: the client is reset; UDP: a new flow to the live backend.
    assert_eq!(env.send(&tcp("pod-a", A, 40000, VIP, 80, "ack", 40)).0, Action::Reply(ReplyKind::TcpReset));
    let (a, out) = env.send(&udp("pod-a", A, 41000, DNS, 53, 60));
    assert_eq!((a, dst_of(&out)), (Action::Forward(2), (C, 5353)));
    let (r, _, metered) = env.poll(id);
    assert_eq!(events(&r), ["start", "start", "end", "end", "start"], "{r:#?}");
    assert_eq!((r[2].dport, r[2].reason.as_deref(), r[2].packets), (80, Some("backend_gone"), Some([3, 2])));
    assert_eq!((r[3].dport, r[3].reason.as_deref(), r[3].packets), (53, Some("backend_gone"), Some([1, 0])));
    assert_eq!(r[4].nat_dst, Some(sa(C, 5353)));
    assert_eq!(metered, 1);
}

#[test]
fn a_policy_change_that_cuts_a_flow_ends_it() {
    let mut env = Env::new();
    let id = env.start(1000, None);
    // pod-b → pod-c is tracked (pod-c has a policy) and allowed.
    assert_eq!(env.send(&tcp("pod-b", B, 42000, C, 9000, "syn", 40)).0, Action::Forward(2));
    assert_eq!(env.send(&tcp("pod-c", C, 9000, B, 42000, "syn,ack", 40)).0, Action::Forward(1));
    env.t = tables_with(8, &config(r#"{ ip = "10.1.0.3" }"#), &acl(&["10.1.0.2/32", "10.1.0.3/32"]));
    // The reply direction's next packet finds it cut.
    assert_eq!(env.send(&tcp("pod-c", C, 9000, B, 42000, "ack", 40)).0, Action::Drop(DropReason::PolicyDeniedIngress));
    let (r, _, _) = env.poll(id);
    assert_eq!(events(&r), ["start", "end"], "{r:#?}");
    for rec in &r {
        assert_eq!((rec.src, rec.sport, rec.dst, rec.dport), (B, 42000, C, 9000));
        assert_eq!(
            (rec.nat_dst, rec.nat_src, rec.service.as_ref()),
            (None, None, None),
            "policy only: nothing translated"
        );
    }
    assert_eq!((r[1].reason.as_deref(), r[1].packets), (Some("policy_revoked"), Some([1, 1])));
    // Both entries are gone: the client's next packet is a new flow, denied.
    assert_eq!(env.send(&tcp("pod-b", B, 42000, C, 9000, "ack", 40)).0, Action::Drop(DropReason::PolicyDeniedIngress));
}

#[test]
fn nothing_is_recorded_or_counted_unarmed() {
    let mut env = Env::new();
    open_connection(&env);
    env.send(&tcp("pod-a", A, 40000, C, 80, "syn", 40));
    // Armed after the fact: the flow that started unarmed is not metered,
    // its packets are not counted, and its end is not reported.
    let id = env.start(1000, None);
    let (r, drops, metered) = env.poll(id);
    assert_eq!((r, drops, metered), (vec![], Drops::default(), 0));
    env.send(&tcp("pod-a", A, 40000, VIP, 80, "psh,ack", 100));
    env.send(&tcp("pod-a", A, 40000, VIP, 80, "rst", 40));
    env.now_ms += u64::from(TCP_CLOSING_TIMEOUT_MS) + GRACE_MS + 1;
    let (r, _, metered) = env.poll(id);
    assert_eq!((r, metered), (vec![], 0));
    // Stopped: nothing more either.
    let now = env.now();
    let reply = env.logs.stop(id, &env.t, &env.flows, &now, &mut || {});
    assert!(matches!(reply, Reply::FlowLogged { done: Some(_), .. }), "{reply:?}");
    assert_eq!(env.tap.flags(), 0, "disarmed");
    env.send(&udp("pod-a", A, 41000, DNS, 53, 60));
    assert!(!env.logs.active());
}

#[test]
fn the_rate_limit_admits_a_burst_then_refills() {
    let r = RateLimit::new(5, 5);
    assert_eq!((0..10).filter(|_| r.admit(1000)).count(), 5, "the burst");
    assert!(!r.admit(1100), "nothing refilled yet after 100 ms");
    assert!(r.admit(1200), "one token per 200 ms");
    assert!(!r.admit(1200));
    assert_eq!((0..10).filter(|_| r.admit(3000)).count(), 5, "full again, no more than the burst");
    // Ends are charged even when empty, and later records wait out the debt.
    r.charge(3000);
    r.charge(3000);
    assert!(!r.admit(3200));
    assert!(!r.admit(3400));
    assert!(r.admit(3600));
    // A debt is capped: many charges do not block records for long.
    for _ in 0..1000 {
        r.charge(5000);
    }
    assert!(r.admit(8000));
    let one = RateLimit::new(1, 1);
    assert!(one.admit(0) && !one.admit(999) && one.admit(1000));
}

#[test]
fn flows_over_the_rate_are_counted_not_logged_nor_metered() {
    let mut env = Env::new();
    let id = env.start(3, None);
    for i in 0..10 {
        assert_eq!(env.send(&udp("pod-a", A, 41000 + i, DNS, 53, 60)).0, Action::Forward(1));
    }
    let (r, drops, metered) = env.poll(id);
    assert_eq!(events(&r), ["start"; 3]);
    assert_eq!((drops, metered), (Drops { rate_limited: 7, ..Drops::default() }, 3));
    // A second later: three more.
    env.now_ms += 1000;
    for i in 10..20 {
        env.send(&udp("pod-a", A, 41000 + i, DNS, 53, 60));
    }
    let (r, drops, _) = env.poll(id);
    assert_eq!((r.len(), drops.rate_limited), (3, 14));
}

#[test]
fn a_full_queue_loses_records_and_counts_them() {
    let mut env = Env::new();
    env.flows = FlowTable::new(1 << 16);
    let id = env.start(MAX_RATE_FOR_TEST, Some(MAX_RATE_FOR_TEST));
    let n = QUEUE as u16 + 10;
    for i in 0..n {
        env.send(&udp("pod-a", A, 10000 + i, DNS, 53, 60));
    }
    let (r, drops, metered) = env.poll(id);
    assert_eq!((r.len(), drops.queue_full), (QUEUE, 10));
    assert_eq!(metered, QUEUE as u64, "a flow whose start was lost is not metered");
}

const MAX_RATE_FOR_TEST: u32 = super::manager::MAX_RATE;

#[test]
fn bad_requests_are_refused_and_one_log_runs_at_a_time() {
    let mut env = Env::new();
    let now = Instant::now();
    assert_eq!(env.logs.start(0, None, 64, now), Err("flow log rate_per_s 0: want 1 to 1000000".into()));
    assert_eq!(env.logs.start(5, Some(0), 64, now), Err("flow log burst 0: want 1 to 1000000".into()));
    assert_eq!(env.logs.start(2_000_000, None, 64, now), Err("flow log rate_per_s 2000000: want 1 to 1000000".into()));
    assert_eq!(env.tap.flags(), 0, "nothing armed");
    let id = env.start(10, None);
    assert_eq!(
        env.logs.start(10, None, 64, now),
        Err(format!("a flow log is running already (session {id}); one at a time"))
    );
    let r = env.logs.poll(id + 1, &env.t, &env.flows, &env.now(), &mut || {});
    assert_eq!(r, Reply::Error { message: format!("no flow log session {} (ended, or never started)", id + 1) });
}

#[test]
fn an_unpolled_log_ends_after_its_lease() {
    let mut env = Env::new();
    env.start(10, None);
    let later = Instant::now() + crate::inspect::session::LEASE + std::time::Duration::from_secs(1);
    let mut synced = 0;
    env.logs.tick(&env.t, &env.flows, &Now { at: later, ..env.now() }, &mut || synced += 1);
    assert!(!env.logs.active());
    assert_eq!((env.tap.flags(), synced), (0, 1), "disarmed, and freed after a quiescent state");
}

#[test]
fn records_are_named_with_the_tables_they_were_written_under() {
    let mut env = Env::new();
    let id = env.start(1000, None);
    env.send(&tcp("pod-a", A, 40000, VIP, 80, "syn", 40));
    // New tables whose Services are numbered differently (a Service before
    // web) and whose port 0 has another name.
    let mut cfg = config(r#"{ ip = "10.1.0.3" }"#);
    let mut first = cfg.services[1].clone();
    first.name = "default/aaa:x".into();
    first.cluster_ips = vec![Ipv4Addr::new(10, 96, 0, 99)];
    cfg.services.insert(0, first);
    let old = std::mem::replace(&mut env.t, tables_with(8, &cfg, &acl(&[])));
    let clock = env.clock();
    env.logs.drain(&[&old, &env.t], &clock);
    let (r, _, _) = env.poll(id);
    assert_eq!((r[0].service.as_deref(), r[0].in_port.as_deref()), (Some("default/web:http"), Some("pod-a")));
}

#[test]
fn a_traced_packet_of_an_armed_log_is_both_traced_and_logged() {
    let mut env = Env::new();
    let id = env.start(1000, None);
    let spec = crate::inspect::FilterSpec { src: Some("10.1.0.2".into()), ..Default::default() };
    let filter = crate::inspect::Filter::compile(&spec, &env.t).unwrap();
    let trace = Arc::new(crate::inspect::tap::TraceSession::new(filter, 1));
    env.tap.arm_trace(Arc::clone(&trace));
    env.send(&tcp("pod-a", A, 40000, VIP, 80, "syn", 40));
    let rec = trace.records.pop().expect("traced");
    assert!(rec.steps.steps().iter().any(|s| matches!(s, crate::pipeline::Step::FlowMiss { .. })));
    assert_eq!(events(&env.poll(id).0), ["start"]);
}

#[test]
fn the_sweep_goes_round_the_meter_in_budgets() {
    let mut env = Env::new();
    env.start(1000, None);
    let session = env.logs.session().unwrap();
    for i in 0..20 {
        env.send(&udp("pod-a", A, 41000 + i, DNS, 53, 60));
    }
    assert_eq!(session.metered(), 20);
    env.now_ms += u64::from(UDP_TIMEOUT_MS) + GRACE_MS + 1;
    let ctx = Ctx { worker: MGMT, port: NO_PORT, generation: 7, now_ms: env.now_ms };
    let n = session.meter_slots();
    let mut cursor = 0;
    for _ in 0..3 {
        cursor = sweep(&session, &env.flows, &ctx, cursor, n / 4);
    }
    assert_eq!(cursor, 3 * n / 4);
    assert!(session.metered() > 0, "not all the way round yet");
    sweep(&session, &env.flows, &ctx, cursor, n / 4);
    assert_eq!(session.metered(), 0);
    assert_eq!(session.records.len(), 40);
}

#[test]
fn vxlan_answers_of_a_remote_backend_count_as_replies() {
    // web's backend on another node: its answers come decapsulated.
    let node2 = Ipv4Addr::new(192, 168, 50, 2);
    let remote = Ipv4Addr::new(10, 2, 0, 2);
    let mut env = Env::new();
    let mut t = tables_with(7, &config(r#"{ ip = "10.2.0.2" }"#), &acl(&[]));
    let hop = crate::tables::Hop::Remote { vtep: node2, vtep_mac: MacAddr([2, 0xfe, 0, 0, 0, 2]), net: 0 };
    t.add_remote_route(0, "10.2.0.0/24".parse().unwrap(), hop);
    t.node_hops.insert(node2, hop);
    t.neighbours.insert(node2, MacAddr([2, 0, 0, 0xaa, 0, 2]));
    env.t = t;
    let id = env.start(1000, None);
    assert_eq!(env.send(&tcp("pod-a", A, 40000, VIP, 80, "syn", 40)).0, Action::Forward(4));
    let answer = PacketSpec {
        vxlan: Some(VxlanSpec { vtep: node2, vni: None }),
        ..tcp("uplink", remote, 8080, A, 40000, "syn,ack", 40)
    };
    assert_eq!(env.send(&answer).0, Action::Forward(0));
    assert_eq!(env.send(&tcp("pod-a", A, 40000, VIP, 80, "rst", 40)).0, Action::Forward(4));
    env.now_ms += u64::from(TCP_CLOSING_TIMEOUT_MS) + GRACE_MS + 1;
    let (r, _, _) = env.poll(id);
    assert_eq!(events(&r), ["start", "end"]);
    assert_eq!((r[1].nat_dst, r[1].packets), (Some(sa(remote, 8080)), Some([2, 1])));
}
