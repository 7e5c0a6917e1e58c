//! What weir-pktgen sends: the perf harness's scenarios as template frames
//! built with weir's own `wire` views, the flow every packet of a run belongs
//! to, and the [`Stamp`] (trial, sequence number, TSC) each frame carries at
//! the start of its innermost UDP payload.
//!
//! Every scenario runs against one node ([`layout`]): the harness writes the
//! same addresses into the configs of the devices under test (weir's node
//! config, OVS's flows), and the tests run every template through weir's
//! pipeline with the tables of that config.
//!
//! A frame differs from its template only in its flow fields and its stamp,
//! and both are written so that every checksum stays valid without being
//! recomputed: flow fields by incremental update (RFC 1624), the stamp with a
//! compensating word that keeps the UDP checksum's sum unchanged.

use std::fmt;
use std::net::Ipv4Addr;

use weir_dataplane::tables::acl::PortRange;
use weir_dataplane::tables::cidr::Ipv4Cidr;
use weir_dataplane::wire::{arp, checksum, ethernet, ipv4, udp, vxlan, MacAddr};

use crate::policy::{self, PodSet, RuleSet, Target};

/// The node every scenario runs against, and the peers around it.
pub mod layout {
    use super::*;

    /// The pods' gateway (weir's `gateway.mac` / `gateway.ip`).
    pub const GW_MAC: MacAddr = MacAddr([0x02, 0xfe, 0, 0, 0, 0x01]);
    pub const GW_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
    pub const POD_CIDR: &str = "10.1.0.0/24";
    /// pod-a: the sending pod, on the DUT's first port.
    pub const POD_A_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
    pub const POD_A_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
    /// pod-b: the receiving pod (and the Services' backend), on the second port.
    pub const POD_B_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);
    pub const POD_B_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x03]);
    /// The node's underlay address (VXLAN endpoint, NodePorts).
    pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
    pub const UNDERLAY_CIDR: &str = "192.168.50.0/24";
    /// The uplink's MAC in templates; the real one (a vhost port's MAC is the
    /// driver's) is given to weir-pktgen with `--dst-mac`.
    pub const UPLINK_MAC: MacAddr = MacAddr([0x02, 0, 0, 0xaa, 0, 0x01]);
    /// What sits on the generator's side of the uplink: another node's VTEP
    /// and the outside clients' router.
    pub const PEER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0xaa, 0, 0x02]);
    /// The other node: its VTEP, its pod CIDR, its gateway MAC (the inner
    /// source MAC of what it encapsulates).
    pub const REMOTE_VTEP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
    pub const REMOTE_POD_CIDR: &str = "10.2.0.0/24";
    pub const REMOTE_GW_MAC: MacAddr = MacAddr([0x02, 0xfe, 0, 0, 0, 0x02]);
    /// VNI of the default pod network.
    pub const VNI: u32 = 1;
    /// The Service's ClusterIP.
    pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
    /// The Services' port (and the pods' destination port).
    pub const SVC_PORT: u16 = 8080;
    pub const NODE_PORT: u16 = 30080;
    /// The first outside client (NodePort).
    pub const EXT_CLIENT_BASE: Ipv4Addr = Ipv4Addr::new(192, 168, 60, 16);
    /// The first pod of the other node (VXLAN).
    pub const REMOTE_POD_BASE: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 16);
    /// Flow `i` uses source port `CLIENT_PORT_BASE + i % PORTS_PER_STEP`
    /// and step `i / PORTS_PER_STEP` of a second field: from pods, the
    /// destination port (pod-b's 8080, 8081, ..., or the Service's ports of
    /// the same numbers: pod-a always sends from its own address, or weir
    /// drops the frame as spoofed); from outside and from node2, the client
    /// address. Either survives the DNAT to the one backend, so the flows'
    /// reply tuples differ too (as conntrack needs).
    pub const CLIENT_PORT_BASE: u16 = 1024;
    pub const PORTS_PER_STEP: u32 = 65536 - CLIENT_PORT_BASE as u32;
    /// Steps of the second field (client addresses .16 to .239 of a /24,
    /// destination ports 8080 to 8303).
    pub const MAX_STEPS: u32 = 224;
    /// The most distinct flows a scenario can have.
    pub const MAX_FLOWS: u32 = MAX_STEPS * PORTS_PER_STEP;
    /// Source port of the outer UDP header of VXLAN frames.
    pub const VXLAN_SRC_PORT: u16 = 49152;
    /// A third node, where the `full` scenarios' Service backend runs: its
    /// VTEP, its pod CIDR, its gateway MAC (the inner destination MAC of
    /// what is encapsulated for it).
    pub const NODE3_VTEP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 3);
    pub const NODE3_POD_CIDR: &str = "10.3.0.0/18";
    pub const NODE3_GW_MAC: MacAddr = MacAddr([0x02, 0xfe, 0, 0, 0, 0x03]);
    /// The `full` scenarios' NodePort backends: [`FULL_BACKENDS`] pods of
    /// node3 (port `SVC_PORT`), 10.3.0.5, 10.3.1.5, ... 10.3.63.5: one
    /// in each /24. (This layout stepped around a weakness of weir's
    /// `FlowKey::hash`, since fixed: the reply keys of SNATed flows,
    /// (backend, node IP, 8080, SNAT port), of backends that differed in
    /// their low 7 bits shared hash values by the dozen and overflowed the
    /// flow table's probe windows.) OVS matches the set with one masked
    /// address ([`crate::policy::PodSet`]).
    pub const FULL_BACKEND_BASE: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 5);
    pub const FULL_BACKEND_STRIDE: u32 = 256;
    /// How many. The client of a full flow becomes the node IP and a port of
    /// the SNAT range, so one (backend, port) pair holds at most
    /// [`snat_ports`] flows; with 64 backends the largest established
    /// scenario (1M flows) fills about a quarter of each one's ports, and a
    /// new-flow run may set up [`FULL_MAX_FLOWS`] before any backend's
    /// ports are half taken (see [`FULL_MAX_FLOWS`]).
    pub const FULL_BACKENDS: u32 = 64;
    /// The SNAT range the DUTs get for the full scenarios (weir's `[nat]
    /// snat_port_min..=snat_port_max`, OVS's `nat(src=...)`), wider than
    /// weir's default 61000-65535 so that fewer backends do.
    pub const SNAT_PORT_MIN: u16 = 1024;
    pub const SNAT_PORT_MAX: u16 = 65535;
    /// The most flows of a full scenario: half the SNAT ports of every
    /// backend (2 064 384). weir claims a port by trying up to 64 ports in
    /// a row from one the flow's hash picks; with half of a backend's ports
    /// taken that finds a free one every time (a simulation of 3 x 32 256
    /// claims on 64 512 ports missed none; at 70 % about one in 70 000 failed).
    pub const FULL_MAX_FLOWS: u32 = FULL_BACKENDS * snat_ports() / 2;

    /// Ports in the SNAT range.
    pub const fn snat_ports() -> u32 {
        SNAT_PORT_MAX as u32 - SNAT_PORT_MIN as u32 + 1
    }

    /// The full scenarios' backends, in order.
    pub fn full_backends() -> impl Iterator<Item = Ipv4Addr> + Clone {
        (0..FULL_BACKENDS).map(|i| Ipv4Addr::from(u32::from(FULL_BACKEND_BASE) + i * FULL_BACKEND_STRIDE))
    }

    /// The same, as the set of pods that hold the backends' ingress list.
    pub fn full_backend_set() -> PodSet {
        PodSet::new(FULL_BACKEND_BASE, FULL_BACKENDS, FULL_BACKEND_STRIDE).unwrap_or(PodSet::one(FULL_BACKEND_BASE))
    }
}

use layout::*;

/// Frames are sized as on the wire, with the 4-byte FCS the NIC adds
/// (RFC 2544: 64, 128, 256, 512, 1024, 1280, 1518).
pub const FCS_LEN: usize = 4;
pub const MIN_FRAME_SIZE: usize = 64;
pub const MAX_FRAME_SIZE: usize = 1518;

/// The traffic patterns of the harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// pod-a → pod-b on the node: L3 forwarding (checks, route, TTL, MACs).
    Pod2Pod,
    /// VXLAN from another node's pod → pod-b: decapsulation + forwarding.
    VxlanDecap,
    /// pod-a → ClusterIP, every packet a new flow (service lookup, backend
    /// pick, flow creation, DNAT).
    ClusteripNew,
    /// pod-a → ClusterIP over N established flows (flow hit, DNAT).
    ClusteripEst,
    /// An outside client → node IP:NodePort through the uplink, to pod-b
    /// (externalTrafficPolicy Local: DNAT, client kept).
    Nodeport,
    /// pod-a → pod-b over N established flows, with pod-a's egress and
    /// pod-b's ingress policy among N ACL rules ([`crate::policy`]): the
    /// flows' verdicts were decided on their first packets.
    Acl,
    /// pod-a → pod-b with N ACL rules, every packet a new flow (classified
    /// against both lists to their last rule, then tracked both ways).
    AclNew,
    /// The full path: a pod on node2 reaches the NodePort on this node's IP
    /// through the tunnel; this node decapsulates, finds the flow (or sets
    /// it up: Service, backend pick among node3's pods, ACL with N rules,
    /// an SNAT port), DNATs to the backend on node3, translates the client
    /// to the node IP and an SNAT port (as kube-proxy masquerades it) and
    /// encapsulates for node3. Over N established flows.
    Full,
    /// The full path, every packet a new flow.
    FullNew,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Pod2Pod,
        Kind::VxlanDecap,
        Kind::ClusteripNew,
        Kind::ClusteripEst,
        Kind::Nodeport,
        Kind::Acl,
        Kind::AclNew,
        Kind::Full,
        Kind::FullNew,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Pod2Pod => "pod2pod",
            Kind::VxlanDecap => "vxlan-decap",
            Kind::ClusteripNew => "clusterip-new",
            Kind::ClusteripEst => "clusterip-est",
            Kind::Nodeport => "nodeport",
            Kind::Acl => "acl",
            Kind::AclNew => "acl-new",
            Kind::Full => "full",
            Kind::FullNew => "full-new",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Kind::Pod2Pod => "pod-a -> pod-b on the node (L3 forwarding)",
            Kind::VxlanDecap => "VXLAN from node2's pods -> pod-b (decap + forward)",
            Kind::ClusteripNew => {
                "pod-a -> ClusterIP, a new flow every packet (service + backend pick + flow setup + DNAT)"
            }
            Kind::ClusteripEst => "pod-a -> ClusterIP over established flows (flow hit + DNAT)",
            Kind::Nodeport => "outside client -> node IP:NodePort via the uplink -> pod-b (DNAT, client kept)",
            Kind::Acl => "pod-a -> pod-b over established flows, N ACL rules (verdicts cached in the flows)",
            Kind::AclNew => "pod-a -> pod-b with N ACL rules, a new flow every packet (classifier + flow setup)",
            Kind::Full => {
                "node2's pod -> VXLAN -> NodePort here -> DNAT to node3's pod + SNAT to the node IP -> VXLAN to \
                 node3, N ACL rules, established flows (decap + flow hit + DNAT + SNAT + encap)"
            }
            Kind::FullNew => {
                "the full path, a new flow every packet (decap + service + backend pick + ACL + SNAT port claim + \
                 flow setup + DNAT + SNAT + encap)"
            }
        }
    }

    /// Distinct flows when none are asked for.
    pub fn default_flows(self) -> u32 {
        match self {
            Kind::ClusteripEst | Kind::Nodeport | Kind::Acl | Kind::Full => 10_000,
            Kind::ClusteripNew | Kind::AclNew | Kind::FullNew => MAX_FLOWS,
            Kind::Pod2Pod | Kind::VxlanDecap => 1,
        }
    }

    /// Whether the frames enter the DUT through its uplink (else a pod port).
    pub fn enters_by_uplink(self) -> bool {
        matches!(self, Kind::VxlanDecap | Kind::Nodeport | Kind::Full | Kind::FullNew)
    }

    /// Whether the frames come back by the port they went in by (the
    /// uplink: the full path encapsulates them again), not by pod-b's.
    pub fn returns_by_uplink(self) -> bool {
        matches!(self, Kind::Full | Kind::FullNew)
    }

    /// Whether the frames are VXLAN from node2.
    pub fn vxlan(self) -> bool {
        matches!(self, Kind::VxlanDecap | Kind::Full | Kind::FullNew)
    }

    /// Whether the DUT holds the scenario's ACL rules.
    pub fn uses_acl(self) -> bool {
        matches!(self, Kind::Acl | Kind::AclNew | Kind::Full | Kind::FullNew)
    }

    /// Every packet a new flow: the flow number runs on over the whole run
    /// instead of cycling through `flows` in each trial.
    pub fn new_flows(self) -> bool {
        matches!(self, Kind::ClusteripNew | Kind::AclNew | Kind::FullNew)
    }

    /// Flows the DUT must set up before the trials (established-flow scenarios).
    pub fn needs_priming(self) -> bool {
        matches!(self, Kind::ClusteripEst | Kind::Nodeport | Kind::Acl | Kind::Full)
    }

    /// The smallest frame of this kind (wire size, FCS included): the
    /// stamp must fit in the innermost payload.
    pub fn min_frame_size(self) -> usize {
        let inner = ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN + STAMP_LEN + FCS_LEN;
        if self.vxlan() {
            inner + OUTER_LEN
        } else {
            inner.max(MIN_FRAME_SIZE)
        }
    }
}

impl serde::Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Outer Ethernet + IPv4 + UDP + VXLAN headers.
pub const OUTER_LEN: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN + vxlan::HEADER_LEN;

/// One scenario of a run: the kind, its flows, its frame size.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Scenario {
    pub kind: Kind,
    /// Distinct flows (5-tuples) the packets cycle through; for
    /// clusterip-new, the size of the tuple space the run walks through.
    pub flows: u32,
    /// Wire size of the frames, FCS included (at least the kind's minimum).
    pub frame_size: usize,
    /// ACL rules the DUT holds (the kinds that [use an ACL](Kind::uses_acl);
    /// ignored by the others).
    pub acl_rules: u32,
}

impl Scenario {
    /// A scenario; `frame_size` below the kind's minimum is raised to it.
    pub fn new(kind: Kind, flows: Option<u32>, frame_size: usize, acl_rules: u32) -> Result<Scenario, String> {
        let flows = flows.unwrap_or_else(|| kind.default_flows());
        if flows == 0 || flows > MAX_FLOWS {
            return Err(format!("flows = {flows}: want 1..={MAX_FLOWS}"));
        }
        if !(MIN_FRAME_SIZE..=MAX_FRAME_SIZE).contains(&frame_size) {
            return Err(format!("frame size {frame_size}: want {MIN_FRAME_SIZE}..={MAX_FRAME_SIZE} (FCS included)"));
        }
        if kind == Kind::Full && flows > FULL_MAX_FLOWS {
            return Err(format!(
                "full: flows = {flows}: want 1..={FULL_MAX_FLOWS} (half the SNAT ports of its {FULL_BACKENDS} backends)"
            ));
        }
        if kind.uses_acl() && !(1..=policy::MAX_RULES).contains(&acl_rules) {
            return Err(format!("{kind}: {acl_rules} ACL rules: want 1..={}", policy::MAX_RULES));
        }
        Ok(Scenario { kind, flows, frame_size: frame_size.max(kind.min_frame_size()), acl_rules })
    }

    /// The flows the ACL rules are laid out for (the kinds that use an ACL).
    pub fn acl_target(&self) -> Option<Target> {
        let udp = weir_dataplane::tables::acl::PROTO_UDP;
        let cidr = |s: &str| s.parse::<Ipv4Cidr>().ok();
        match self.kind {
            // pod-a's destination ports: one per step of the flows.
            Kind::Acl | Kind::AclNew => Some(Target {
                src_pod: Some(POD_A_IP),
                dst_pods: PodSet::one(POD_B_IP),
                allow_from: cidr(POD_CIDR)?,
                allow_to: cidr(POD_CIDR)?,
                proto: udp,
                ports: PortRange { from: SVC_PORT, to: SVC_PORT + (self.steps() - 1) as u16 },
            }),
            // node2's pods, to the backends' port after DNAT (policy sees
            // the client before its SNAT); the source is another node's
            // pod, whose egress policy is its node's. Every backend holds
            // the same ingress list.
            Kind::Full | Kind::FullNew => Some(Target {
                src_pod: None,
                dst_pods: full_backend_set(),
                allow_from: cidr(REMOTE_POD_CIDR)?,
                allow_to: cidr(NODE3_POD_CIDR)?,
                proto: udp,
                ports: PortRange::single(SVC_PORT),
            }),
            _ => None,
        }
    }

    /// The ACL rules of the scenario (`None` for the kinds without).
    pub fn rule_set(&self) -> Option<Result<RuleSet, String>> {
        self.acl_target().map(|t| RuleSet::new(self.acl_rules, &t))
    }

    /// Bytes of a frame in a buffer (the wire size less the FCS).
    pub fn frame_len(&self) -> usize {
        self.frame_size - FCS_LEN
    }

    /// Values the second flow field takes: destination ports from pods,
    /// client addresses from outside.
    pub fn steps(&self) -> u32 {
        self.flows.div_ceil(PORTS_PER_STEP)
    }

    /// The destination ports the frames use (the Service's ports for the
    /// ClusterIP scenarios): `SVC_PORT` on, one per step. The scenarios
    /// that enter by the uplink vary their client address instead.
    pub fn dst_ports(&self) -> Vec<u16> {
        if self.kind.enters_by_uplink() {
            return vec![if self.kind == Kind::VxlanDecap { SVC_PORT } else { NODE_PORT }];
        }
        (0..self.steps() as u16).map(|k| SVC_PORT + k).collect()
    }

    /// `clusterip-est, 10000 flows, 64 B`.
    pub fn label(&self) -> String {
        let flows = if self.kind.new_flows() {
            "new flow per packet".to_string()
        } else if self.flows == 1 {
            "1 flow".to_string()
        } else {
            format!("{} flows", self.flows)
        };
        let acl = if self.kind.uses_acl() { format!(", {} rules", self.acl_rules) } else { String::new() };
        format!("{}, {flows}{acl}, {} B", self.kind, self.frame_size)
    }

    /// The template frame; `dst_mac` replaces the outer destination MAC (the
    /// DUT's uplink MAC for the kinds that enter by the uplink).
    pub fn template(&self, dst_mac: Option<MacAddr>) -> Template {
        let len = self.frame_len();
        match self.kind {
            Kind::Pod2Pod | Kind::Acl | Kind::AclNew => Template::plain(
                len,
                (POD_A_MAC, dst_mac.unwrap_or(GW_MAC)),
                (POD_A_IP, POD_B_IP),
                SVC_PORT,
                Vary::DstPort,
            ),
            Kind::ClusteripNew | Kind::ClusteripEst => {
                Template::plain(len, (POD_A_MAC, dst_mac.unwrap_or(GW_MAC)), (POD_A_IP, VIP), SVC_PORT, Vary::DstPort)
            }
            Kind::Nodeport => Template::plain(
                len,
                (PEER_MAC, dst_mac.unwrap_or(UPLINK_MAC)),
                (EXT_CLIENT_BASE, NODE_IP),
                NODE_PORT,
                Vary::SrcAddr,
            ),
            Kind::VxlanDecap => {
                let inner = Template::plain(
                    len - OUTER_LEN,
                    (REMOTE_GW_MAC, GW_MAC),
                    (REMOTE_POD_BASE, POD_B_IP),
                    SVC_PORT,
                    Vary::SrcAddr,
                );
                inner.in_vxlan(dst_mac.unwrap_or(UPLINK_MAC))
            }
            // node2's pods to the NodePort on this node's IP, through the
            // tunnel (node2 routes other nodes' IPs there).
            Kind::Full | Kind::FullNew => {
                let inner = Template::plain(
                    len - OUTER_LEN,
                    (REMOTE_GW_MAC, GW_MAC),
                    (REMOTE_POD_BASE, NODE_IP),
                    NODE_PORT,
                    Vary::SrcAddr,
                );
                inner.in_vxlan(dst_mac.unwrap_or(UPLINK_MAC))
            }
        }
    }

    /// The flow of packet `n` of a run (the n-th packet sent).
    #[inline]
    pub fn flow_of(&self, n: u64) -> u32 {
        (n % u64::from(self.flows)) as u32
    }
}

/// A frame to send, and where in it the flow fields and the stamp are.
#[derive(Debug, Clone)]
pub struct Template {
    frame: Vec<u8>,
    /// Offset of the IPv4 header whose fields vary (the inner one in VXLAN).
    ip: usize,
    /// Offset of its UDP header.
    udp: usize,
    vary: Vary,
}

/// The second field that tells flows apart, besides the source port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vary {
    /// The destination port, up from the template's.
    DstPort,
    /// The source address, up from the template's.
    SrcAddr,
}

impl Template {
    /// Ethernet / IPv4 / UDP (source port `CLIENT_PORT_BASE`) of `len`
    /// bytes, the payload a stamp slot (magic, zeros) and filler.
    fn plain(len: usize, macs: (MacAddr, MacAddr), addrs: (Ipv4Addr, Ipv4Addr), dst_port: u16, vary: Vary) -> Template {
        let ip_at = ethernet::HEADER_LEN;
        let udp_at = ip_at + ipv4::HEADER_LEN;
        let mut f = vec![0u8; len];
        ethernet::Repr { src: macs.0, dst: macs.1, ethertype: ethernet::ethertype::IPV4 }
            .emit(&mut ethernet::Frame::new_unchecked(&mut f[..]));
        ipv4::Repr {
            src: addrs.0,
            dst: addrs.1,
            protocol: ipv4::protocol::UDP,
            ttl: 64,
            payload_len: len - udp_at,
            dscp_ecn: 0,
            ident: 0,
            dont_frag: true,
        }
        .emit(&mut ipv4::Packet::new_unchecked(&mut f[ip_at..]));
        let mut u = udp::Packet::new_unchecked(&mut f[udp_at..]);
        u.set_src_port(CLIENT_PORT_BASE);
        u.set_dst_port(dst_port);
        u.set_len((len - udp_at) as u16);
        let payload = u.payload_mut();
        for (i, b) in payload.iter_mut().enumerate() {
            *b = i as u8;
        }
        Stamp::clear_slot(&mut payload[..STAMP_LEN]);
        u.fill_checksum(addrs.0, addrs.1);
        Template { frame: f, ip: ip_at, udp: udp_at, vary }
    }

    /// This frame inside VXLAN (VNI [`VNI`]) from the other node's VTEP to
    /// this node; the outer UDP checksum is zero, as VTEPs send it.
    fn in_vxlan(self, dst_mac: MacAddr) -> Template {
        let udp_len = udp::HEADER_LEN + vxlan::HEADER_LEN + self.frame.len();
        let mut f = vec![0u8; OUTER_LEN + self.frame.len()];
        ethernet::Repr { src: PEER_MAC, dst: dst_mac, ethertype: ethernet::ethertype::IPV4 }
            .emit(&mut ethernet::Frame::new_unchecked(&mut f[..]));
        let ip_at = ethernet::HEADER_LEN;
        ipv4::Repr {
            src: REMOTE_VTEP,
            dst: NODE_IP,
            protocol: ipv4::protocol::UDP,
            ttl: 64,
            payload_len: udp_len,
            dscp_ecn: 0,
            ident: 0,
            dont_frag: true,
        }
        .emit(&mut ipv4::Packet::new_unchecked(&mut f[ip_at..]));
        let mut u = udp::Packet::new_unchecked(&mut f[ip_at + ipv4::HEADER_LEN..]);
        u.set_src_port(VXLAN_SRC_PORT);
        u.set_dst_port(vxlan::DEFAULT_PORT);
        u.set_len(udp_len as u16);
        u.set_checksum(0);
        let vx = u.payload_mut();
        vxlan::Repr { vni: VNI }.emit(&mut vxlan::Packet::new_unchecked(&mut vx[..vxlan::HEADER_LEN]));
        vx[vxlan::HEADER_LEN..].copy_from_slice(&self.frame);
        Template { frame: f, ip: self.ip + OUTER_LEN, udp: self.udp + OUTER_LEN, vary: self.vary }
    }

    /// The template itself (flow 0, empty stamp).
    pub fn frame(&self) -> &[u8] {
        &self.frame
    }

    pub fn len(&self) -> usize {
        self.frame.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frame.is_empty()
    }

    /// Offset of the stamp in the frame.
    pub fn stamp_offset(&self) -> usize {
        self.udp + udp::HEADER_LEN
    }

    /// Writes the frame of `flow` carrying `stamp` into `out`, which must be
    /// exactly [`Template::len`] bytes (else nothing is written).
    #[inline]
    pub fn write(&self, out: &mut [u8], flow: u32, stamp: &Stamp) {
        if out.len() != self.frame.len() {
            return;
        }
        out.copy_from_slice(&self.frame);
        self.set_flow(out, flow);
        let at = self.stamp_offset();
        stamp.write(&mut out[at..at + STAMP_LEN]);
    }

    /// Turns `f`, a copy of the template (flow 0), into flow `flow`: the
    /// source port moves by `flow % PORTS_PER_STEP` and the second field by
    /// `flow / PORTS_PER_STEP`, the IPv4 and UDP checksums updated
    /// incrementally. A buffer of another length is left alone.
    #[inline]
    pub fn set_flow(&self, f: &mut [u8], flow: u32) {
        if flow == 0 || f.len() != self.frame.len() {
            return;
        }
        let flow = flow % MAX_FLOWS;
        let (port_step, step) = ((flow % PORTS_PER_STEP) as u16, flow / PORTS_PER_STEP);
        let (ip, u) = (self.ip, self.udp);
        let mut ucsum = u16::from_be_bytes([f[u + 6], f[u + 7]]);
        let sport = CLIENT_PORT_BASE + port_step;
        ucsum = checksum::update16(ucsum, CLIENT_PORT_BASE, sport);
        f[u..u + 2].copy_from_slice(&sport.to_be_bytes());
        if step > 0 {
            match self.vary {
                Vary::DstPort => {
                    let old = u16::from_be_bytes([f[u + 2], f[u + 3]]);
                    let new = old.wrapping_add(step as u16);
                    ucsum = checksum::update16(ucsum, old, new);
                    f[u + 2..u + 4].copy_from_slice(&new.to_be_bytes());
                }
                Vary::SrcAddr => {
                    let at = ip + 12;
                    let old = u32::from_be_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]]);
                    let new = old.wrapping_add(step);
                    f[at..at + 4].copy_from_slice(&new.to_be_bytes());
                    let icsum = checksum::update32(u16::from_be_bytes([f[ip + 10], f[ip + 11]]), old, new);
                    f[ip + 10..ip + 12].copy_from_slice(&icsum.to_be_bytes());
                    // The UDP checksum covers the addresses (pseudo header).
                    ucsum = checksum::update32(ucsum, old, new);
                }
            }
        }
        f[u + 6..u + 8].copy_from_slice(&ucsum.to_be_bytes());
    }
}

/// Bytes of the stamp: magic (2), trial (2), sequence number (4), TSC (8),
/// and a word that keeps the UDP checksum valid (2). 18 bytes: what a
/// 64-byte frame has after its headers.
pub const STAMP_LEN: usize = 18;
/// "WE".
pub const STAMP_MAGIC: u16 = 0x5745;

/// What weir-pktgen writes into every frame it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    /// The trial the frame belongs to (frames of earlier trials that arrive
    /// late are not counted as this trial's).
    pub trial: u16,
    /// Sequence number within the trial.
    pub seq: u32,
    /// TSC when the frame was written (just before its tx burst).
    pub tsc: u64,
}

impl Stamp {
    /// Writes the magic and zeros: the stamp slot of a template, whose
    /// checksum is computed over it.
    fn clear_slot(b: &mut [u8]) {
        b[..STAMP_LEN].fill(0);
        b[..2].copy_from_slice(&STAMP_MAGIC.to_be_bytes());
    }

    /// Writes the stamp into a slot `clear_slot` made: bytes 2..18 sum to
    /// one's-complement zero, so the UDP checksum computed over the empty
    /// slot still holds.
    #[inline]
    pub fn write(&self, b: &mut [u8]) {
        b[0..2].copy_from_slice(&STAMP_MAGIC.to_be_bytes());
        b[2..4].copy_from_slice(&self.trial.to_be_bytes());
        b[4..8].copy_from_slice(&self.seq.to_be_bytes());
        b[8..16].copy_from_slice(&self.tsc.to_be_bytes());
        let fix = !checksum::fold(checksum::sum(&b[2..16]));
        b[16..18].copy_from_slice(&fix.to_be_bytes());
    }

    /// Reads a stamp from the start of a UDP payload.
    #[inline]
    pub fn read(b: &[u8]) -> Option<Stamp> {
        if b.len() < STAMP_LEN || b[0..2] != STAMP_MAGIC.to_be_bytes() {
            return None;
        }
        Some(Stamp {
            trial: u16::from_be_bytes([b[2], b[3]]),
            seq: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            tsc: u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
        })
    }

    /// Finds the stamp in a received frame: Ethernet (one VLAN tag at most),
    /// IPv4, UDP, and once more inside VXLAN (UDP port `vxlan_port`).
    #[inline]
    pub fn find(frame: &[u8], vxlan_port: u16) -> Option<Stamp> {
        let mut f = frame;
        for _ in 0..2 {
            let mut at = ethernet::HEADER_LEN;
            let mut et = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
            if et == 0x8100 {
                et = u16::from_be_bytes([*f.get(16)?, *f.get(17)?]);
                at += 4;
            }
            if et != ethernet::ethertype::IPV4 {
                return None;
            }
            let ip = f.get(at..)?;
            let ihl = usize::from(*ip.first()? & 0x0f) * 4;
            if ihl < ipv4::HEADER_LEN || *ip.get(9)? != ipv4::protocol::UDP {
                return None;
            }
            let u = ip.get(ihl..)?;
            let dport = u16::from_be_bytes([*u.get(2)?, *u.get(3)?]);
            let payload = u.get(udp::HEADER_LEN..)?;
            if dport == vxlan_port {
                f = payload.get(vxlan::HEADER_LEN..)?;
                continue;
            }
            return Stamp::read(payload);
        }
        None
    }
}

/// The answer to an ARP request for one of `ips`, from `mac` ("ip is at
/// mac"), or `None` when `frame` is no such request. weir-pktgen answers for
/// the peers the device under test resolves on a port (a remote VTEP).
pub fn arp_answer(frame: &[u8], ips: &[Ipv4Addr], mac: MacAddr) -> Option<Vec<u8>> {
    let eth = ethernet::Frame::new_checked(frame).ok()?;
    if eth.ethertype() != ethernet::ethertype::ARP {
        return None;
    }
    let req = arp::Packet::new_checked(&frame[ethernet::HEADER_LEN..]).ok()?;
    let req = arp::Repr::parse(&req);
    if req.operation != arp::OP_REQUEST || !ips.contains(&req.target_ip) {
        return None;
    }
    let mut out = vec![0u8; (ethernet::HEADER_LEN + arp::PACKET_LEN).max(60)];
    ethernet::Repr { src: mac, dst: req.sender_mac, ethertype: ethernet::ethertype::ARP }
        .emit(&mut ethernet::Frame::new_unchecked(&mut out[..]));
    req.reply(mac).emit(&mut arp::Packet::new_unchecked(&mut out[ethernet::HEADER_LEN..]));
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An independent check of every checksum of a frame (full recomputation).
    pub(crate) fn checksums_ok(frame: &[u8]) -> bool {
        let mut f = frame;
        loop {
            let bytes: &[u8] = &f[ethernet::HEADER_LEN..];
            let Ok(ip) = ipv4::Packet::new_checked(bytes) else { return false };
            if checksum::checksum(&bytes[..ip.header_len()]) != 0 {
                return false;
            }
            let l4 = &bytes[ip.header_len()..usize::from(ip.total_len())];
            let Ok(u) = udp::Packet::new_checked(l4) else { return false };
            if u.checksum() != 0 && !u.verify_checksum(ip.src_addr(), ip.dst_addr()) {
                return false;
            }
            if u.dst_port() != vxlan::DEFAULT_PORT {
                return true;
            }
            f = &l4[udp::HEADER_LEN + vxlan::HEADER_LEN..];
        }
    }

    fn all(size: usize) -> Vec<Scenario> {
        Kind::ALL.iter().map(|k| Scenario::new(*k, Some(1_000_000), size, 10).unwrap()).collect()
    }

    #[test]
    fn sizes_and_minimums() {
        for s in all(64) {
            assert_eq!(s.template(None).len(), s.frame_len());
            assert_eq!(s.frame_size, s.kind.min_frame_size());
        }
        assert_eq!(Kind::Pod2Pod.min_frame_size(), 64);
        assert_eq!(Kind::VxlanDecap.min_frame_size(), 64 + 50);
        for size in [64, 128, 512, 1024, 1500, 1518] {
            for s in all(size) {
                assert_eq!(s.template(None).len(), size.max(s.kind.min_frame_size()) - 4, "{}", s.label());
            }
        }
        assert!(Scenario::new(Kind::Pod2Pod, None, 63, 0).is_err());
        assert!(Scenario::new(Kind::Pod2Pod, None, 1519, 0).is_err());
        assert!(Scenario::new(Kind::Pod2Pod, Some(0), 64, 0).is_err());
        assert!(Scenario::new(Kind::Pod2Pod, Some(MAX_FLOWS + 1), 64, 0).is_err());
    }

    #[test]
    fn names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.name()), Some(k));
        }
        assert_eq!(Kind::parse("nope"), None);
    }

    #[test]
    fn every_flow_and_stamp_keeps_checksums_valid() {
        for size in [64, 200, 1518] {
            for s in all(size) {
                let t = s.template(None);
                assert!(checksums_ok(t.frame()), "{} template", s.label());
                let mut out = vec![0u8; t.len()];
                for flow in [0, 1, 2, 64511, 64512, 64513, 999_999, MAX_FLOWS - 1] {
                    for st in [Stamp::default(), Stamp { trial: 7, seq: 0xffff_fffe, tsc: u64::MAX - 3 }] {
                        t.write(&mut out, flow, &st);
                        assert!(checksums_ok(&out), "{} flow {flow} {st:?}", s.label());
                        assert_eq!(Stamp::find(&out, vxlan::DEFAULT_PORT), Some(st), "{}", s.label());
                    }
                }
            }
        }
    }

    #[test]
    fn flows_are_distinct_tuples() {
        for s in all(64) {
            let t = s.template(None);
            let mut out = vec![0u8; t.len()];
            let mut seen = std::collections::HashSet::new();
            for flow in (0..200_000).step_by(997).chain([MAX_FLOWS - 1]) {
                t.write(&mut out, flow, &Stamp::default());
                let ip = &out[t.ip..];
                let tuple = (ip[12..20].to_vec(), out[t.udp..t.udp + 4].to_vec());
                assert!(seen.insert(tuple), "{} flow {flow} repeats a tuple", s.label());
            }
        }
    }

    /// The full scenarios' backends: 64 pods of node3, one list holder
    /// each; their flows bounded by half their SNAT ports; and the reply
    /// keys of SNATed flows, (backend, node IP, 8080, SNAT port), never
    /// share a hash value (which would crowd them into the same probe
    /// windows of weir's flow table, see `FULL_BACKEND_BASE`).
    #[test]
    fn full_backends_and_their_snat_ports() {
        let cidr: Ipv4Cidr = NODE3_POD_CIDR.parse().unwrap();
        let set = full_backend_set();
        let backends: Vec<Ipv4Addr> = full_backends().collect();
        assert_eq!((backends.len(), set.len()), (FULL_BACKENDS as usize, FULL_BACKENDS as usize));
        assert_eq!(set.addrs().collect::<Vec<_>>(), backends);
        assert!(backends.iter().all(|b| cidr.contains(*b)));
        assert_eq!(FULL_MAX_FLOWS, 2_064_384);
        assert!(Scenario::new(Kind::Full, Some(FULL_MAX_FLOWS), 64, 10).is_ok());
        assert!(Scenario::new(Kind::Full, Some(FULL_MAX_FLOWS + 1), 64, 10).is_err());
        assert!(Scenario::new(Kind::FullNew, None, 64, 10).is_ok(), "new flows: the tuple space, not the flows");
        let mut seen = std::collections::HashSet::new();
        for b in &backends {
            for port in (SNAT_PORT_MIN..=SNAT_PORT_MAX).step_by(5) {
                let k = weir_dataplane::flow::FlowKey {
                    src: *b,
                    dst: NODE_IP,
                    src_port: SVC_PORT,
                    dst_port: port,
                    proto: 17,
                };
                assert!(seen.insert(k.hash()), "{k:?} shares its hash");
            }
        }
    }

    #[test]
    fn second_field_covers_the_flows() {
        let s = Scenario::new(Kind::ClusteripEst, Some(1_000_000), 64, 0).unwrap();
        assert_eq!(s.steps(), 16);
        assert_eq!(s.dst_ports(), (8080..8096).collect::<Vec<u16>>());
        let t = s.template(None);
        let mut out = vec![0u8; t.len()];
        let src = |out: &[u8]| Ipv4Addr::new(out[26], out[27], out[28], out[29]);
        let dport = |out: &[u8]| u16::from_be_bytes([out[36], out[37]]);
        for flow in [0, 64511, 64512, 999_999, MAX_FLOWS - 1] {
            t.write(&mut out, flow, &Stamp::default());
            assert_eq!(src(&out), POD_A_IP, "pods never spoof");
            assert_eq!(&out[6..12], &POD_A_MAC.0);
            assert_eq!(Ipv4Addr::new(out[30], out[31], out[32], out[33]), VIP);
            assert_eq!(u32::from(dport(&out)), 8080 + flow / PORTS_PER_STEP);
        }
        let n = Scenario::new(Kind::Nodeport, Some(200_000), 64, 0).unwrap();
        assert_eq!(n.dst_ports(), vec![NODE_PORT]);
        let nt = n.template(None);
        nt.write(&mut out, 199_999, &Stamp::default());
        assert_eq!(src(&out), Ipv4Addr::new(192, 168, 60, 19));
        assert_eq!(dport(&out), NODE_PORT);
    }

    #[test]
    fn stamp_is_not_found_in_other_frames() {
        assert_eq!(Stamp::find(&[], 4789), None);
        assert_eq!(Stamp::find(&[0u8; 60], 4789), None);
        let s = Scenario::new(Kind::Pod2Pod, None, 64, 0).unwrap();
        let t = s.template(None);
        let mut f = t.frame().to_vec();
        let at = t.stamp_offset();
        f[at] ^= 0xff;
        assert_eq!(Stamp::find(&f, 4789), None);
        // Every truncation is refused, never a panic.
        let mut out = vec![0u8; t.len()];
        t.write(&mut out, 3, &Stamp { trial: 1, seq: 2, tsc: 3 });
        for n in 0..out.len() {
            let _ = Stamp::find(&out[..n], 4789);
        }
        assert_eq!(Stamp::find(&out[..at + STAMP_LEN - 1], 4789), None);
    }

    #[test]
    fn uplink_mac_override() {
        let s = Scenario::new(Kind::VxlanDecap, None, 64, 0).unwrap();
        let mac = MacAddr([0x56, 0x48, 0x4f, 0x53, 0x54, 0]);
        assert_eq!(&s.template(Some(mac)).frame()[..6], &mac.0);
        assert_eq!(&s.template(None).frame()[..6], &UPLINK_MAC.0);
    }

    #[test]
    fn answers_arp_for_its_peers_only() {
        let asker = MacAddr([0x56, 0x48, 0x4f, 0x53, 0x54, 0x01]);
        let mut req = vec![0u8; 42];
        ethernet::Repr { src: asker, dst: MacAddr::BROADCAST, ethertype: ethernet::ethertype::ARP }
            .emit(&mut ethernet::Frame::new_unchecked(&mut req[..]));
        arp::Repr {
            operation: arp::OP_REQUEST,
            sender_mac: asker,
            sender_ip: NODE_IP,
            target_mac: MacAddr::ZERO,
            target_ip: REMOTE_VTEP,
        }
        .emit(&mut arp::Packet::new_unchecked(&mut req[14..]));
        let ans = arp_answer(&req, &[REMOTE_VTEP], PEER_MAC).expect("an answer");
        assert_eq!(ans.len(), 60);
        assert_eq!(&ans[0..6], &asker.0);
        assert_eq!(&ans[6..12], &PEER_MAC.0);
        let a = arp::Repr::parse(&arp::Packet::new_checked(&ans[14..]).unwrap());
        assert_eq!(
            (a.operation, a.sender_ip, a.sender_mac, a.target_ip),
            (arp::OP_REPLY, REMOTE_VTEP, PEER_MAC, NODE_IP)
        );
        assert_eq!(arp_answer(&req, &[EXT_CLIENT_BASE], PEER_MAC), None);
        assert_eq!(arp_answer(&ans, &[REMOTE_VTEP], PEER_MAC), None, "a reply is not answered");
        assert_eq!(arp_answer(&req[..30], &[REMOTE_VTEP], PEER_MAC), None);
        let t = Scenario::new(Kind::Pod2Pod, None, 64, 0).unwrap().template(None);
        assert_eq!(arp_answer(t.frame(), &[POD_B_IP], PEER_MAC), None);
    }
}
