//! explain, trace and capture on fixture tables, without DPDK.
//!
//! The node: pods 10.1.0.0/24 behind gateway 10.1.0.1; pod-a 10.1.0.2 on
//! port 0, pod-b 10.1.0.3 on port 1, pod-c 10.1.0.4 on port 2; the uplink
//! on port 3 (node IP 192.168.50.1); node2 (192.168.50.2) has 10.2.0.0/24.
//! Services: default/web 10.96.0.10:80/tcp → 8080 on pod-b and 10.2.0.2,
//! NodePort 30080; default/empty 10.96.0.11:80 with no endpoint. Policy:
//! pod-c's ingress denies pod-a (rule `np:default/deny-a/ingress/0`).

use crate::pipeline::testkit;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::packet::{build, describe};
use super::tap::{capture_tx, CaptureSession, CAPTURE_RX, CAPTURE_TX, TRACE};
use super::*;
use crate::api::Reply;
use crate::config::NodeConfig;
use crate::flow::FlowTable;
use crate::pipeline::nat::Nat;
use crate::pipeline::{process_full, process_traced, Action, DropReason, NoEvents, PacketBuf, Recorder, TestBuf};
use crate::tables::acl::{AclConfig, AclTable, DirectionConfig, PeerConfig, PodAclConfig, RuleConfig, Verdict};
use crate::tables::service::ServiceTable;
use crate::tables::{Hop, PortEntry, Tables};
use crate::wire::MacAddr;

const A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);
const C: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 4);
const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const EMPTY_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 11);
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
const NODE2: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 9);
const NOW: u64 = 1_000;
const DENY_RULE: &str = "np:default/deny-a/ingress/0";

fn tables() -> Tables {
    let cfg = NodeConfig::from_toml(
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
        name = "default/web"
        cluster_ips = ["10.96.0.10"]
        ports = [{ port = 80, protocol = "tcp", target_port = 8080, node_port = 30080 }]
        backends = [{ ip = "10.1.0.3" }, { ip = "10.2.0.2" }]
        [[services]]
        name = "default/empty"
        cluster_ips = ["10.96.0.11"]
        ports = [{ port = 80, protocol = "tcp" }]
        "#,
    )
    .unwrap();
    let mut t = Tables::new(&cfg, 1);
    t.generation = 7;
    t.add_port(0, PortEntry::pod("pod-a", A, MacAddr([2, 0, 0, 0, 0, 2]), 0), 1);
    t.add_port(1, PortEntry::pod("pod-b", B, MacAddr([2, 0, 0, 0, 0, 3]), 0), 1);
    t.add_port(2, PortEntry::pod("pod-c", C, MacAddr([2, 0, 0, 0, 0, 4]), 0), 1);
    t.add_port(3, PortEntry { uplink: true, ..PortEntry::plain("uplink") }, 1);
    t.overlay = Some(testkit::overlay(3));
    let hop = Hop::Remote { vtep: NODE2, vtep_mac: MacAddr([2, 0xfe, 0, 0, 0, 2]), net: 0 };
    t.add_remote_route(0, "10.2.0.0/24".parse().unwrap(), hop);
    t.node_hops.insert(NODE2, hop);
    t.neighbours.insert(NODE2, MacAddr([2, 0, 0, 0xaa, 0, 2]));
    t.neighbours.insert(CLIENT, MacAddr([2, 0, 0, 0xcc, 0, 9]));
    t.services = ServiceTable::build(&cfg).unwrap();
    let deny_a = RuleConfig {
        id: DENY_RULE.into(),
        priority: 0,
        peers: vec![PeerConfig { cidr: "10.1.0.2/32".parse().unwrap(), except: vec![] }],
        protocol: None,
        ports: vec![],
        action: Verdict::Deny,
    };
    let acl = AclConfig {
        pods: vec![PodAclConfig {
            ip: C,
            name: "default/pod-c".into(),
            ingress: Some(DirectionConfig { rules: vec![deny_a], default: Verdict::Allow }),
            egress: None,
        }],
    };
    t.acl = Arc::new(AclTable::build(&acl, &[Ipv4Addr::new(10, 1, 0, 1), NODE_IP]).unwrap());
    t
}

fn spec(in_port: &str, src: Ipv4Addr, dst: Ipv4Addr, proto: &str, dport: u16) -> PacketSpec {
    PacketSpec {
        in_port: in_port.into(),
        src,
        dst,
        proto: proto.into(),
        sport: Some(40000),
        dport: Some(dport),
        tcp_flags: None,
        ttl: None,
        ip_len: None,
        vxlan: None,
    }
}

fn stages(e: &Explanation) -> Vec<&str> {
    e.steps.iter().map(|s| s.stage.as_str()).collect()
}

fn stage<'a>(e: &'a Explanation, name: &str) -> &'a StepReport {
    e.steps.iter().find(|s| s.stage == name).unwrap_or_else(|| panic!("no {name} step: {e:#?}"))
}

/// What the plain pipeline does to the same frame: (action, frame out).
fn real(t: &Tables, flows: &FlowTable, s: &PacketSpec) -> (Action, Vec<u8>) {
    let (port, frame) = build(t, s).unwrap();
    let mut b = TestBuf::new(&frame);
    let a = process_full(t, Some(&Nat::single(flows, NOW)), port, &mut b, &mut NoEvents);
    (a, b.to_vec())
}

fn rule_hits(t: &Tables) -> Vec<u64> {
    t.acl.rules().map(|r| r.hits).collect()
}

#[test]
fn pod_to_local_pod() {
    let t = tables();
    let flows = FlowTable::new(1024);
    let e = explain(&t, &flows, NOW, &spec("pod-a", A, B, "udp", 53)).unwrap();
    assert_eq!(stages(&e), ["input", "ipv4", "note", "route"], "{e:#?}");
    assert!(stage(&e, "input").text.contains("pod-a (pod 10.1.0.2)"), "{e:#?}");
    assert_eq!(stage(&e, "route").detail["port"], "pod-b");
    assert_eq!(stage(&e, "route").detail["hop"], "local");
    assert_eq!((e.action.action.as_str(), e.action.port.as_deref()), ("forward", Some("pod-b")));
    assert_eq!(e.output.as_deref(), Some("10.1.0.2:40000 > 10.1.0.3:53 udp, ttl 63"));
    assert_eq!(e.generation, 7);
    assert!(e.flows_created.is_empty(), "{e:#?}");
}

#[test]
fn pod_to_remote_pod_is_encapsulated() {
    let t = tables();
    let flows = FlowTable::new(1024);
    let e = explain(&t, &flows, NOW, &spec("pod-a", A, REMOTE_POD, "tcp", 22)).unwrap();
    let route = stage(&e, "route");
    assert_eq!((route.detail["hop"].as_str(), route.detail["vtep"].as_str()), (Some("remote"), Some("192.168.50.2")));
    let encap = stage(&e, "encap");
    assert_eq!((encap.detail["vni"].as_u64(), encap.detail["vtep"].as_str()), (Some(1), Some("192.168.50.2")));
    assert_eq!((e.action.action.as_str(), e.action.port.as_deref()), ("forward", Some("uplink")));
    let out = e.output.clone().unwrap();
    assert!(out.starts_with("VXLAN 192.168.50.1 > 192.168.50.2 vni 1 [10.1.0.2:40000 > 10.2.0.2:22 tcp [S]"), "{out}");
    // The UDP source port explain reports is the one the worker writes.
    let (_, frame) = real(&t, &flows, &spec("pod-a", A, REMOTE_POD, "tcp", 22));
    let sport = u16::from_be_bytes([frame[34], frame[35]]);
    assert_eq!(encap.detail["sport"].as_u64(), Some(u64::from(sport)));
}

#[test]
fn pod_to_cluster_ip_names_the_backend_the_worker_picks() {
    let t = tables();
    let flows = FlowTable::new(1024);
    let mut backends = std::collections::BTreeSet::new();
    for sport in 40000..40040 {
        let s = PacketSpec { sport: Some(sport), ..spec("pod-a", A, VIP, "tcp", 80) };
        let live = flows.entries(NOW).len();
        let e = explain(&t, &flows, NOW, &s).unwrap();
        assert_eq!(stages(&e)[..6], ["input", "ipv4", "flow", "service", "backend", "acl"], "{e:#?}");
        assert_eq!(stage(&e, "flow").detail["hit"], false);
        let svc = stage(&e, "service");
        assert_eq!(
            (svc.detail["service"].as_str(), svc.detail["kind"].as_str()),
            (Some("default/web"), Some("ClusterIP"))
        );
        let backend = stage(&e, "backend").detail["backend"].as_str().unwrap().to_string();
        assert!(e.flows_created.len() == 2, "both directions: {:?}", e.flows_created);
        assert_eq!(flows.entries(NOW).len(), live, "explain inserted nothing");
        // The real packet goes to the backend explain named, the same way.
        let (a, out) = real(&t, &flows, &s);
        let dst = Ipv4Addr::new(out[30], out[31], out[32], out[33]);
        let dport = u16::from_be_bytes([out[36], out[37]]);
        let (dst, dport) = if out.len() > 80 {
            // Encapsulated: the inner header, after 50 bytes of outer ones.
            (Ipv4Addr::new(out[80], out[81], out[82], out[83]), u16::from_be_bytes([out[86], out[87]]))
        } else {
            (dst, dport)
        };
        assert_eq!(format!("{dst}:{dport}"), backend, "sport {sport}");
        let want = if dst == B { Action::Forward(1) } else { Action::Forward(3) };
        assert_eq!(a, want);
        assert_eq!(e.action.port.as_deref(), Some(if dst == B { "pod-b" } else { "uplink" }));
        assert!(stage(&e, "nat").text.contains(&format!("becomes 10.1.0.2:{sport} > {backend} tcp")), "{e:#?}");
        backends.insert(backend);
        // Now the flow exists: explain sees the hit, and the same backend.
        let e2 = explain(&t, &flows, NOW, &PacketSpec { tcp_flags: Some("ack".into()), ..s.clone() }).unwrap();
        let hit = stage(&e2, "flow");
        assert_eq!(hit.detail["hit"], true, "{e2:#?}");
        assert_eq!(hit.detail["nat"].as_str(), Some(format!("{dst}:{dport}").as_str()));
        assert!(!stages(&e2).contains(&"service"), "a hit decides no new backend");
    }
    assert_eq!(backends.len(), 2, "40 flows spread over both backends: {backends:?}");
}

#[test]
fn decapsulated_from_the_uplink() {
    let t = tables();
    let flows = FlowTable::new(1024);
    let s =
        PacketSpec { vxlan: Some(VxlanSpec { vtep: NODE2, vni: None }), ..spec("uplink", REMOTE_POD, A, "udp", 53) };
    let e = explain(&t, &flows, NOW, &s).unwrap();
    // 10.2.0.2 is a backend of default/web: its packets are looked up as
    // possible Service replies.
    assert_eq!(stages(&e), ["input", "ipv4", "decap", "ipv4", "flow", "note", "route"], "{e:#?}");
    let d = stage(&e, "decap");
    assert_eq!((d.detail["vni"].as_u64(), d.detail["vtep"].as_str()), (Some(1), Some("192.168.50.2")));
    assert_eq!(d.detail["network"], "default");
    assert_eq!((e.action.action.as_str(), e.action.port.as_deref()), ("forward", Some("pod-a")));
    assert!(
        e.packet.contains("VXLAN 192.168.50.2 > 192.168.50.1 vni 1 [10.2.0.2:40000 > 10.1.0.2:53 udp"),
        "{}",
        e.packet
    );
    // From a VTEP that is not a node of the cluster, or a VNI nobody has.
    let s2 = PacketSpec { vxlan: Some(VxlanSpec { vtep: CLIENT, vni: None }), ..s.clone() };
    let e2 = explain(&t, &flows, NOW, &s2).unwrap();
    assert_eq!(e2.action.reason.as_deref(), Some("vxlan_unknown_vtep"));
    let s3 = PacketSpec { vxlan: Some(VxlanSpec { vtep: NODE2, vni: Some(99) }), ..s };
    assert_eq!(explain(&t, &flows, NOW, &s3).unwrap().action.reason.as_deref(), Some("vxlan_unknown_vni"));
}

#[test]
fn a_policy_deny_names_its_rule_and_counts_nothing() {
    let t = tables();
    let flows = FlowTable::new(1024);
    let before = rule_hits(&t);
    let s = spec("pod-a", A, C, "tcp", 80);
    let e = explain(&t, &flows, NOW, &s).unwrap();
    let acl = stage(&e, "acl");
    assert_eq!(acl.detail["verdict"], "deny");
    assert_eq!(acl.detail["rule"], DENY_RULE);
    assert_eq!(acl.detail["direction"], "ingress");
    assert!(acl.text.contains(DENY_RULE) && acl.text.contains("default/pod-c"), "{}", acl.text);
    assert_eq!((e.action.action.as_str(), e.action.reason.as_deref()), ("drop", Some("policy_denied_ingress")));
    assert_eq!(rule_hits(&t), before, "explain counts no hit");
    assert!(flows.entries(NOW).is_empty());
    // The real packet: dropped for the same reason, and the rule counts it.
    let (a, _) = real(&t, &flows, &s);
    assert_eq!(a, Action::Drop(DropReason::PolicyDeniedIngress));
    assert_eq!(rule_hits(&t).iter().sum::<u64>(), before.iter().sum::<u64>() + 1);
    // pod-b → pod-c is allowed by the default, and tracked for policy.
    let e = explain(&t, &flows, NOW, &spec("pod-b", B, C, "tcp", 80)).unwrap();
    assert_eq!(stage(&e, "acl").detail["verdict"], "allow");
    assert_eq!(stage(&e, "acl").detail["rule"], serde_json::Value::Null);
    assert_eq!(e.action.port.as_deref(), Some("pod-c"));
    assert_eq!(e.flows_created.len(), 2, "{:?}", e.flows_created);
}

#[test]
fn drop_and_reply_reasons() {
    let t = tables();
    let flows = FlowTable::new(1024);
    let reason = |s: PacketSpec| {
        let e = explain(&t, &flows, NOW, &s).unwrap();
        (e.action.action.clone(), e.action.reason.clone().unwrap_or_default())
    };
    let d = |r: &str| ("drop".to_string(), r.to_string());
    // Not pod-a's address on pod-a's port.
    assert_eq!(reason(spec("pod-a", Ipv4Addr::new(10, 1, 0, 9), B, "udp", 53)), d("pod_source_spoofed"));
    assert_eq!(reason(spec("pod-a", A, Ipv4Addr::new(172, 16, 0, 1), "udp", 53)), d("no_route"));
    assert_eq!(
        reason(PacketSpec { ttl: Some(1), ..spec("pod-a", A, B, "udp", 53) }),
        ("reply".into(), "icmp_time_exceeded".into())
    );
    assert_eq!(reason(spec("pod-a", A, EMPTY_VIP, "tcp", 80)), ("reply".into(), "icmp_port_unreachable".into()));
    assert_eq!(
        reason(spec("pod-a", A, Ipv4Addr::new(10, 1, 0, 1), "icmp", 0)),
        ("reply".into(), "icmp_echo_reply".into())
    );
    assert_eq!(reason(spec("pod-a", A, Ipv4Addr::new(10, 1, 0, 1), "tcp", 22)), d("local_not_served"));
    // Too big for the tunnel (DF): fragmentation needed, with the note.
    let e = explain(&t, &flows, NOW, &PacketSpec { ip_len: Some(1460), ..spec("pod-a", A, REMOTE_POD, "udp", 53) })
        .unwrap();
    assert_eq!(e.action.reason.as_deref(), Some("icmp_frag_needed"));
    assert!(e.steps.iter().any(|s| s.text.contains("MTU")), "{e:#?}");
    // From outside to a NodePort: translated to a backend, the client to the
    // node IP; no SNAT port is claimed by explain.
    let e = explain(&t, &flows, NOW, &spec("uplink", CLIENT, NODE_IP, "tcp", 30080)).unwrap();
    assert_eq!(stage(&e, "service").detail["kind"], "NodePort");
    assert!(e.steps.iter().any(|s| s.text.contains("the source port depends on the worker")), "{e:#?}");
    assert!(flows.entries(NOW).is_empty(), "no SNAT port claimed");
}

#[test]
fn explain_changes_nothing() {
    let t = tables();
    let flows = FlowTable::new(1024);
    // A real SYN makes the flow at 1000 ms (60 s SYN timeout).
    let s = spec("pod-a", A, VIP, "tcp", 80);
    real(&t, &flows, &s);
    let entries = |at: u64| {
        let mut v = flows.entries(at);
        v.sort_by_key(|(k, _)| (k.src, k.src_port));
        v
    };
    let before = entries(NOW);
    assert_eq!(before.len(), 2);
    // Explaining its next packets at 60 s does not mark it seen ...
    let later = NOW + 59_000;
    for flags in ["ack", "fin,ack", "rst"] {
        let e = explain(&t, &flows, later, &PacketSpec { tcp_flags: Some(flags.into()), ..s.clone() }).unwrap();
        assert_eq!(stage(&e, "flow").detail["hit"], true);
    }
    assert_eq!(entries(later), before, "entries and their state unchanged");
    // ... so it expires when it would have without explain.
    assert!(flows.entries(NOW + 61_000).is_empty(), "explain refreshed a flow");
    // Tables that drop the flow's backend: the worker would end the flow and
    // reset the client; explain says so and leaves it.
    real(&t, &flows, &s);
    let backend = flows
        .lookup(&crate::flow::FlowKey { src: A, dst: VIP, src_port: 40000, dst_port: 80, proto: 6 }, NOW)
        .unwrap()
        .nat_addr;
    let mut t2 = tables();
    t2.generation = 8;
    let keep = if backend == B { "10.2.0.2" } else { "10.1.0.3" };
    let cfg = NodeConfig::from_toml(&format!(
        "[node]\nname = \"n1\"\npod_cidr = \"10.1.0.0/24\"\nnode_ip = \"192.168.50.1\"\n[gateway]\nip = \"10.1.0.1\"\nmac = \"02:fe:00:00:00:01\"\n\
         [[services]]\nname = \"default/web\"\ncluster_ips = [\"10.96.0.10\"]\nports = [{{ port = 80, protocol = \"tcp\", target_port = 8080 }}]\nbackends = [{{ ip = \"{keep}\" }}]\n"
    ))
    .unwrap();
    t2.services = ServiceTable::build(&cfg).unwrap();
    let live = entries(NOW);
    let e = explain(&t2, &flows, NOW, &PacketSpec { tcp_flags: Some("ack".into()), ..s.clone() }).unwrap();
    assert!(e.steps.iter().any(|s| s.stage == "flow" && s.text.contains("no longer one of the Service's")), "{e:#?}");
    assert_eq!(e.action.reason.as_deref(), Some("tcp_reset"));
    assert_eq!(e.flows_removed.len(), 2, "{e:#?}");
    assert_eq!(entries(NOW), live, "the live flow is still there");
}

#[test]
fn bad_packets_are_refused_with_the_reason() {
    let t = tables();
    let flows = FlowTable::new(64);
    let err = |s: PacketSpec| explain(&t, &flows, NOW, &s).unwrap_err();
    assert!(err(spec("pod-z", A, B, "tcp", 80)).contains("in port \"pod-z\""));
    assert!(err(spec("pod-a", A, B, "tpc", 80)).contains("protocol \"tpc\""));
    assert!(err(PacketSpec { tcp_flags: Some("syn".into()), ..spec("pod-a", A, B, "udp", 80) }).contains("tcp_flags"));
    assert!(
        err(PacketSpec { tcp_flags: Some("syn,nope".into()), ..spec("pod-a", A, B, "tcp", 80) }).contains("\"nope\"")
    );
    assert!(err(PacketSpec { ip_len: Some(30), ..spec("pod-a", A, B, "tcp", 80) }).contains("ip_len 30"));
    let vx = Some(VxlanSpec { vtep: NODE2, vni: None });
    assert!(err(PacketSpec { vxlan: vx, ..spec("pod-a", A, B, "tcp", 80) }).contains("uplink only"));
    let vx = Some(VxlanSpec { vtep: NODE2, vni: Some(1 << 24) });
    assert!(err(PacketSpec { vxlan: vx, ..spec("uplink", A, B, "tcp", 80) }).contains("vni"));
}

/// Many packets, the plain pipeline on one flow table and the recording one
/// on an identical other: the same action and the same bytes out, and the
/// recorder's last step is that action.
#[test]
fn the_recording_pipeline_does_what_the_plain_one_does() {
    let t = tables();
    let (plain_flows, traced_flows) = (FlowTable::new(4096), FlowTable::new(4096));
    let mut specs = vec![
        spec("pod-a", A, B, "udp", 53),
        spec("pod-a", A, REMOTE_POD, "tcp", 22),
        spec("pod-a", A, C, "tcp", 80),
        spec("pod-b", B, C, "tcp", 80),
        spec("pod-a", A, EMPTY_VIP, "tcp", 80),
        spec("pod-a", A, Ipv4Addr::new(10, 1, 0, 1), "icmp", 0),
        spec("pod-a", Ipv4Addr::new(10, 1, 0, 9), B, "udp", 53),
        spec("uplink", CLIENT, NODE_IP, "tcp", 30080),
        PacketSpec { vxlan: Some(VxlanSpec { vtep: NODE2, vni: None }), ..spec("uplink", REMOTE_POD, A, "udp", 53) },
        PacketSpec { ttl: Some(1), ..spec("pod-a", A, B, "udp", 53) },
        PacketSpec { ip_len: Some(1460), ..spec("pod-a", A, REMOTE_POD, "udp", 53) },
    ];
    for sport in 0..50 {
        specs.push(PacketSpec { sport: Some(30000 + sport), ..spec("pod-a", A, VIP, "tcp", 80) });
        specs.push(PacketSpec {
            sport: Some(30000 + sport),
            tcp_flags: Some("ack".into()),
            ..spec("pod-a", A, VIP, "tcp", 80)
        });
    }
    let mut frames: Vec<(u16, Vec<u8>)> = specs.iter().map(|s| build(&t, s).unwrap()).collect();
    // And malformed frames: cut short at every length of one.
    let (p, f) = build(&t, &spec("pod-a", A, VIP, "tcp", 80)).unwrap();
    frames.extend((0..f.len()).map(|n| (p, f[..n].to_vec())));
    for (port, f) in frames {
        let (mut a, mut b) = (TestBuf::new(&f), TestBuf::new(&f));
        let plain = process_full(&t, Some(&Nat::single(&plain_flows, NOW)), port, &mut a, &mut NoEvents);
        let mut rec = Recorder::default();
        let traced = process_traced(&t, Some(&Nat::single(&traced_flows, NOW)), port, &mut b, &mut NoEvents, &mut rec);
        assert_eq!(plain, traced, "{}", describe(&f, 4789));
        assert_eq!(rec.action(), Some(plain));
        assert_eq!(a.data(), b.data(), "{}", describe(&f, 4789));
    }
    let sorted = |t: &FlowTable| {
        let mut v = t.entries(NOW);
        v.sort_by_key(|(k, _)| (k.src, k.dst, k.src_port, k.dst_port));
        v
    };
    assert_eq!(sorted(&plain_flows), sorted(&traced_flows));
}

// ------------------------------------------------------------------ filters

fn filter(t: &Tables, f: FilterSpec) -> Filter {
    Filter::compile(&f, t).unwrap()
}

#[test]
fn filters_are_checked_and_match_what_they_say() {
    let t = tables();
    let frame = |s: PacketSpec| build(&t, &s).unwrap().1;
    let syn = frame(spec("pod-a", A, VIP, "tcp", 80));
    let udp = frame(spec("pod-a", A, B, "udp", 53));
    let ping = frame(spec("pod-a", A, B, "icmp", 0));
    let vx = frame(PacketSpec {
        vxlan: Some(VxlanSpec { vtep: NODE2, vni: None }),
        ..spec("uplink", REMOTE_POD, A, "udp", 53)
    });
    let arp = crate::pipeline::overlay::arp_request_from(MacAddr([2, 0, 0, 0, 0, 2]), A, B).to_vec();

    let all = filter(&t, FilterSpec::default());
    assert!([&syn, &udp, &ping, &vx, &arp].iter().all(|f| all.matches(0, f)));
    assert!(all.matches(0, &[1, 2, 3]), "even a runt");
    let f = filter(
        &t,
        FilterSpec { src: Some("10.1.0.0/24".into()), dst: Some("10.96.0.10".into()), ..Default::default() },
    );
    assert!(f.matches(0, &syn) && !f.matches(0, &udp) && !f.matches(0, &arp));
    let f = filter(&t, FilterSpec { host: Some("10.1.0.3".into()), ..Default::default() });
    assert!(f.matches(0, &udp) && f.matches(0, &ping) && !f.matches(0, &syn));
    let f = filter(&t, FilterSpec { proto: Some("udp".into()), dport: Some(53), ..Default::default() });
    assert!(f.matches(0, &udp) && !f.matches(0, &syn) && !f.matches(0, &ping));
    assert!(f.matches(3, &vx), "the inner packet of VXLAN");
    let f = filter(&t, FilterSpec { dst: Some("10.1.0.2".into()), ..Default::default() });
    assert!(f.matches(3, &vx) && !f.matches(0, &udp));
    let f = filter(&t, FilterSpec { src: Some("192.168.50.2".into()), ..Default::default() });
    assert!(f.matches(3, &vx), "or its outer header");
    let f = filter(&t, FilterSpec { proto: Some("arp".into()), ..Default::default() });
    assert!(f.matches(0, &arp) && !f.matches(0, &udp));
    let f = filter(&t, FilterSpec { port: Some("pod-b".into()), ..Default::default() });
    assert!(f.matches(1, &udp) && !f.matches(0, &udp));
    assert_eq!(f.port(), Some(1));
    let f = filter(&t, FilterSpec { sport: Some(40001), ..Default::default() });
    assert!(!f.matches(0, &syn) && !f.matches(0, &ping));

    let err = |f: FilterSpec| Filter::compile(&f, &t).unwrap_err();
    assert!(err(FilterSpec { src: Some("10.1.0.x".into()), ..Default::default() }).contains("filter src \"10.1.0.x\""));
    assert!(err(FilterSpec { dst: Some("10.1.0.1/24".into()), ..Default::default() }).contains("host bits"));
    assert!(err(FilterSpec { proto: Some("ipx".into()), ..Default::default() }).contains("\"ipx\""));
    assert!(err(FilterSpec { port: Some("eth9".into()), ..Default::default() }).contains("\"eth9\""));
    assert!(err(FilterSpec { proto: Some("arp".into()), host: Some("10.1.0.2".into()), ..Default::default() })
        .contains("arp"));
    assert!(err(FilterSpec { proto: Some("icmp".into()), dport: Some(1), ..Default::default() }).contains("no ports"));
}

// ----------------------------------------------------- trace and capture

fn clock() -> Clock {
    Clock { tsc: 2_000_000, tsc_hz: 1_000_000, wall_ns: 1_700_000_000_000_000_000 }
}

/// One worker loop over `frames` arriving on `port`, as `worker::run` does it.
fn worker_burst(t: &Tables, flows: &FlowTable, tap: &Tap, port: u16, frames: &[Vec<u8>]) -> Vec<Action> {
    let nat = Nat::single(flows, NOW);
    let b = Burst { tables: t, nat: &nat, tap, flags: tap.flags(), worker: 0, port, clock: || 1_500_000 };
    let mut bufs: Vec<TestBuf> = frames.iter().map(|f| TestBuf::new(f)).collect();
    let mut actions = Vec::new();
    rx_burst::<true, _, _, _, _>(&b, bufs.iter_mut(), &mut NoEvents, |_, a| actions.push(a));
    actions
}

#[test]
fn a_trace_records_what_the_worker_does_to_matching_packets() {
    let t = tables();
    let flows = FlowTable::new(1024);
    let mut sessions = Sessions::new(Arc::default());
    let tap = sessions.tap();
    let now = Instant::now();
    let syncs = std::cell::Cell::new(0);
    let mut sync = || syncs.set(syncs.get() + 1);
    let f = FilterSpec { dst: Some("10.96.0.10".into()), ..Default::default() };
    let id = sessions.start_trace(&t, &f, 3, Duration::from_secs(30), now).unwrap();
    assert_eq!(tap.flags(), TRACE);
    assert!(sessions.start_trace(&t, &f, 3, Duration::from_secs(30), now).unwrap_err().contains("running already"));
    let to_vip: Vec<Vec<u8>> = (0..2)
        .map(|i| build(&t, &PacketSpec { sport: Some(41000 + i), ..spec("pod-a", A, VIP, "tcp", 80) }).unwrap().1)
        .collect();
    let other = build(&t, &spec("pod-a", A, B, "udp", 53)).unwrap().1;
    let frames = vec![to_vip[0].clone(), other.clone(), to_vip[1].clone()];
    let actions = worker_burst(&t, &flows, &tap, 0, &frames);
    assert!(matches!(actions[..], [Action::Forward(_), Action::Forward(1), Action::Forward(_)]), "{actions:?}");
    let Reply::Traced { session, packets, done } = sessions.poll(id, &t, &clock(), now, &mut sync) else { panic!() };
    assert_eq!((session, packets.len(), done), (id, 2, None), "only the packets to the VIP");
    let p = &packets[0];
    assert_eq!((p.worker, p.port.as_str(), p.generation), (0, "pod-a", 7));
    assert_eq!(p.time_ns, 1_700_000_000_000_000_000 - 500_000_000, "the worker's clock, in wall time");
    assert!(p.packet.starts_with("10.1.0.2:41000 > 10.96.0.10:80 tcp [S]"), "{}", p.packet);
    let st: Vec<&str> = p.steps.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(st[..6], ["input", "ipv4", "flow", "service", "backend", "acl"]);
    assert_eq!(p.action.action, "forward");
    assert_eq!(flows.entries(NOW).len(), 4, "traced packets are really processed: two flows made");
    // The third matching packet ends the trace; later ones are not traced.
    let third = build(&t, &PacketSpec { sport: Some(41005), ..spec("pod-a", A, VIP, "tcp", 80) }).unwrap().1;
    worker_burst(&t, &flows, &tap, 0, &[third.clone(), third]);
    let Reply::Traced { packets, done, .. } = sessions.poll(id, &t, &clock(), now, &mut sync) else { panic!() };
    assert_eq!((packets.len(), done.as_deref()), (1, Some("count reached")));
    assert_eq!(tap.flags(), 0, "disarmed");
    assert_eq!(syncs.get(), 1, "waited for the workers before freeing the session");
    assert!(matches!(sessions.poll(id, &t, &clock(), now, &mut sync), Reply::Error { .. }), "forgotten");
    assert!(!sessions.active());
    // Bad requests.
    assert!(sessions.start_trace(&t, &f, 0, Duration::from_secs(1), now).unwrap_err().contains("count 0"));
    assert!(sessions.start_trace(&t, &f, 100_000, Duration::from_secs(1), now).unwrap_err().contains("count"));
    let bad = FilterSpec { src: Some("nope".into()), ..Default::default() };
    assert!(sessions.start_trace(&t, &bad, 1, Duration::from_secs(1), now).unwrap_err().contains("\"nope\""));
    assert_eq!(tap.flags(), 0, "a refused trace arms nothing");
}

#[test]
fn traces_end_at_their_timeout_when_stopped_and_when_nobody_polls() {
    let t = tables();
    let mut sessions = Sessions::new(Arc::default());
    let tap = sessions.tap();
    let now = Instant::now();
    let mut sync = || {};
    let id = sessions.start_trace(&t, &FilterSpec::default(), 5, Duration::from_secs(2), now).unwrap();
    sessions.tick(&t, &clock(), now + Duration::from_secs(1), &mut sync);
    assert_eq!(tap.flags(), TRACE);
    let Reply::Traced { done, .. } = sessions.poll(id, &t, &clock(), now + Duration::from_secs(3), &mut sync) else {
        panic!()
    };
    assert_eq!(done.as_deref(), Some("timeout"));
    assert_eq!(tap.flags(), 0);
    let id = sessions.start_trace(&t, &FilterSpec::default(), 5, Duration::from_secs(60), now).unwrap();
    let Reply::Traced { done, .. } = sessions.stop(id, &t, &clock(), now, &mut sync) else { panic!() };
    assert_eq!((done.as_deref(), tap.flags()), (Some("stopped"), 0));
    let id = sessions.start_trace(&t, &FilterSpec::default(), 5, Duration::from_secs(600), now).unwrap();
    sessions.tick(&t, &clock(), now + session::LEASE + Duration::from_secs(1), &mut sync);
    assert_eq!(tap.flags(), 0, "a client that stopped polling");
    assert!(matches!(sessions.poll(id, &t, &clock(), now, &mut sync), Reply::Error { .. }));
}

#[test]
fn a_capture_copies_rx_and_tx_of_its_port() {
    let t = tables();
    let flows = FlowTable::new(1024);
    let mut sessions = Sessions::new(Arc::default());
    let tap = sessions.tap();
    let now = Instant::now();
    let mut sync = || {};
    let f = FilterSpec { proto: Some("udp".into()), ..Default::default() };
    let err = |s: &mut Sessions, port: &str, f: &FilterSpec, count: Option<u64>, snap: Option<u32>| {
        s.start_capture(&t, port, CaptureDir::Both, f, count, None, snap, now).unwrap_err()
    };
    assert!(err(&mut sessions, "eth9", &f, None, None).contains("\"eth9\""));
    assert!(err(&mut sessions, "pod-a", &f, None, Some(10)).contains("snaplen 10"));
    assert!(err(&mut sessions, "pod-a", &f, Some(0), None).contains("count 0"));
    let other_port = FilterSpec { port: Some("pod-b".into()), ..f.clone() };
    assert!(err(&mut sessions, "pod-a", &other_port, None, None).contains("not the captured port"));
    assert_eq!(tap.flags(), 0);
    let id = sessions.start_capture(&t, "pod-a", CaptureDir::Both, &f, Some(3), None, Some(64), now).unwrap();
    assert_eq!(tap.flags(), CAPTURE_RX | CAPTURE_TX);
    let udp = build(&t, &spec("pod-a", A, B, "udp", 53)).unwrap().1;
    let tcp = build(&t, &spec("pod-a", A, B, "tcp", 53)).unwrap().1;
    let mut big = build(&t, &PacketSpec { ip_len: Some(200), ..spec("pod-a", A, B, "udp", 53) }).unwrap().1;
    big[100] = 0xab;
    // rx on pod-a: the UDP frames (before the pipeline changes them); the
    // TCP one does not match; pod-b's rx is not captured.
    worker_burst(&t, &flows, &tap, 0, &[udp.clone(), tcp.clone(), big.clone()]);
    worker_burst(&t, &flows, &tap, 1, std::slice::from_ref(&udp));
    // tx of pod-a, then of pod-b (not captured).
    capture_tx(&tap, 0, [udp.as_slice(), udp.as_slice()].into_iter(), 1_900_000);
    capture_tx(&tap, 1, [udp.as_slice()].into_iter(), 1_900_000);
    let Reply::Captured { packets, lost, done, .. } = sessions.poll(id, &t, &clock(), now, &mut sync) else { panic!() };
    assert_eq!(done.as_deref(), Some("count reached (3 packets of port pod-a)"));
    assert_eq!((packets.len(), lost, tap.flags()), (3, 0, 0));
    let dirs: Vec<&str> = packets.iter().map(|p| p.dir.as_str()).collect();
    assert_eq!(dirs, ["rx", "rx", "tx"]);
    assert_eq!(pcap::unhex(&packets[0].data).unwrap(), udp);
    assert_eq!((packets[1].orig_len, pcap::unhex(&packets[1].data).unwrap()), (big.len() as u32, big[..64].to_vec()));
    assert_eq!(packets[2].time_ns, 1_700_000_000_000_000_000 - 100_000_000);
    assert!(packets.iter().all(|p| p.port == "pod-a"));
}

#[test]
fn a_full_capture_queue_loses_copies_and_counts_them() {
    let s = CaptureSession::new(Filter::ALL, 0, CaptureDir::Rx, 128, u64::MAX, 2);
    for _ in 0..5 {
        s.take(0, false, &[0u8; 60], 0);
    }
    s.take(1, false, &[0u8; 60], 0);
    assert_eq!((s.full.len(), s.lost.load(std::sync::atomic::Ordering::Relaxed)), (2, 3), "other ports are not taken");
}

#[test]
fn describe_says_what_a_frame_is() {
    let t = tables();
    let d = |s: PacketSpec| describe(&build(&t, &s).unwrap().1, 4789);
    assert_eq!(d(spec("pod-a", A, VIP, "tcp", 80)), "10.1.0.2:40000 > 10.96.0.10:80 tcp [S], ttl 64");
    assert_eq!(d(spec("pod-a", A, B, "icmp", 0)), "10.1.0.2 > 10.1.0.3 icmp echo request id 40000 seq 1, ttl 64");
    assert_eq!(
        d(PacketSpec { tcp_flags: Some("syn,ack".into()), ..spec("pod-a", A, B, "tcp", 80) }),
        "10.1.0.2:40000 > 10.1.0.3:80 tcp [S.], ttl 64"
    );
    let arp = crate::pipeline::overlay::arp_request_from(MacAddr([2, 0, 0, 0, 0, 2]), A, B);
    assert_eq!(describe(&arp, 4789), "ARP who-has 10.1.0.3 tell 10.1.0.2 (02:00:00:00:00:02)");
    assert_eq!(describe(&[0u8; 5], 4789), "5 bytes, shorter than an Ethernet header");
    // Cut short (a trace keeps the first bytes): described as far as it goes.
    let vx = build(
        &t,
        &PacketSpec {
            vxlan: Some(VxlanSpec { vtep: NODE2, vni: None }),
            ip_len: Some(300),
            ..spec("uplink", REMOTE_POD, A, "udp", 53)
        },
    )
    .unwrap()
    .1;
    assert_eq!(
        describe(&vx[..128], 4789),
        "VXLAN 192.168.50.2 > 192.168.50.1 vni 1 [10.2.0.2:40000 > 10.1.0.2:53 udp, ttl 64]"
    );
    assert_eq!(describe(&vx[..20], 4789), "IPv4, malformed (20 bytes)");
}

#[test]
fn the_requests_and_replies_travel_as_json() {
    use crate::api::Request;
    let r: Request = serde_json::from_str(
        r#"{"cmd":"explain","packet":{"in_port":"pod","src":"10.1.0.2","dst":"10.96.0.10","sport":42000,"dport":80}}"#,
    )
    .unwrap();
    let Request::Explain { packet } = r else { panic!("{r:?}") };
    assert_eq!((packet.proto.as_str(), packet.sport, packet.vxlan), ("tcp", Some(42000), None));
    let r: Request = serde_json::from_str(
        r#"{"cmd":"trace_start","filter":{"src":"10.1.0.2","proto":"icmp"},"count":4,"timeout_ms":20000}"#,
    )
    .unwrap();
    assert!(matches!(r, Request::TraceStart { count: 4, timeout_ms: 20000, .. }), "{r:?}");
    let r: Request = serde_json::from_str(r#"{"cmd":"capture_start","port":"pod"}"#).unwrap();
    let Request::CaptureStart { dir, filter, count, snaplen, .. } = r else { panic!() };
    assert_eq!((dir, filter, count, snaplen), (CaptureDir::Both, FilterSpec::default(), None, None));
    assert!(serde_json::from_str::<Request>(r#"{"cmd":"capture_start","port":"pod","dir":"up"}"#).is_err());
    assert!(serde_json::from_str::<Request>(
        r#"{"cmd":"trace_start","filter":{"sauce":"x"},"count":1,"timeout_ms":1}"#
    )
    .is_err());
    let reply = Reply::Captured { session: 3, packets: vec![], lost: 2, done: Some("stopped".into()) };
    let text = serde_json::to_string(&reply).unwrap();
    assert_eq!(text, r#"{"reply":"captured","session":3,"packets":[],"lost":2,"done":"stopped"}"#);
    assert_eq!(serde_json::from_str::<Reply>(&text).unwrap(), reply);
    let e = explain(&tables(), &FlowTable::new(64), NOW, &spec("pod-a", A, B, "udp", 53)).unwrap();
    let reply = Reply::Explained(e);
    assert_eq!(serde_json::from_str::<Reply>(&serde_json::to_string(&reply).unwrap()).unwrap(), reply);
}
