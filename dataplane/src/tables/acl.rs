//! The ACL table: per pod, the compiled network-policy rules of each
//! direction, and the classifier a worker runs on the first packet of a flow.
//!
//! The control plane compiles Kubernetes NetworkPolicy and the Contiv model
//! into an [`AclConfig`] (ordered allow / deny rules and a default per pod and
//! direction); [`AclTable::build`] validates it whole and compiles it into
//! flat vectors. Nothing here knows about selectors or namespaces.
//!
//! A packet from `src` to `dst` passes when the egress rules of `src` (if
//! `src` is a pod with an egress policy) and the ingress rules of `dst` (if
//! `dst` is a pod with an ingress policy) both allow it. In one direction the
//! first rule that matches decides, in the order (priority, position in the
//! config); no rule matching means the direction's default. Traffic from one
//! of the node's own addresses (given to `build`) is always allowed by
//! ingress, as Kubernetes requires for kubelet probes.
//!
//! Promises: [`AclTable::classify`] never allocates, locks or panics, for any
//! table and any packet fields; the per-rule hit counters are relaxed atomics
//! (a flow's first packet only, so contention stays low).
//!
//! Cost: a pod is found with one hash lookup. The rules of one pod and
//! direction are scanned in order; each rule tests its protocol, then its
//! destination port against sorted disjoint port ranges (binary search), then
//! the peer address against sorted disjoint address ranges (binary search;
//! `except` blocks are subtracted at build time). A packet costs
//! O(k · (log P + log Q)) per direction, k the rules before the deciding one,
//! P and Q the address and port ranges of a rule. Identical peer and port
//! sets are stored once, so a selector copied into many pods' rules costs
//! its ranges once.

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::cidr::Ipv4Cidr;
use super::FastMap;

/// Pods with a policy on one node.
pub const MAX_PODS: usize = 65_536;
/// Rules of one pod in one direction (the linear scan of the classifier).
pub const MAX_RULES_PER_DIRECTION: usize = 16_384;
/// Rules of the whole table (the global rule index is a `u32`).
pub const MAX_RULES: usize = 1 << 20;
/// Peers of one rule (a selector matching many pods gives one per pod).
pub const MAX_PEERS_PER_RULE: usize = 65_536;
/// `except` blocks of one peer.
pub const MAX_EXCEPTS_PER_PEER: usize = 1_024;
/// Port ranges of one rule.
pub const MAX_PORT_RANGES_PER_RULE: usize = 1_024;
/// Address ranges of the whole table, after merging and de-duplication
/// (8 bytes each).
pub const MAX_ADDRESS_RANGES: usize = 1 << 23;
/// Length of a rule id, in bytes.
pub const MAX_RULE_ID_LEN: usize = 512;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_SCTP: u8 = 132;

/// Whether packets of this IP protocol carry ports a rule can match.
#[inline]
pub fn has_ports(proto: u8) -> bool {
    matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP)
}

/// What a rule, a direction's default, or the classifier says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        })
    }
}

/// A pod's side of a packet: `Ingress` (to the pod) or `Egress` (from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        })
    }
}

/// The ACLs the control plane pushes: one entry per pod with a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclConfig {
    #[serde(default)]
    pub pods: Vec<PodAclConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodAclConfig {
    pub ip: Ipv4Addr,
    /// `namespace/pod`, for humans.
    pub name: String,
    /// `None`: no policy in this direction, everything is allowed.
    #[serde(default)]
    pub ingress: Option<DirectionConfig>,
    #[serde(default)]
    pub egress: Option<DirectionConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectionConfig {
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// What happens to traffic no rule matches.
    pub default: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Stable and readable (`contiv:icmpPol/1`, `np:default/allow-web/ingress/0/tcp`);
    /// unique within a pod and direction. Hit counters follow it across rebuilds.
    pub id: String,
    /// Lower is tried first; equal priorities keep their order in the config.
    #[serde(default)]
    pub priority: u32,
    /// The other side's address (the source for ingress, the destination
    /// for egress). Empty: any address.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// IP protocol number; `None`: any protocol.
    #[serde(default)]
    pub protocol: Option<u8>,
    /// Destination ports. Empty: any port. Non-empty: only TCP, UDP and
    /// SCTP packets to one of these ports match.
    #[serde(default)]
    pub ports: Vec<PortRange>,
    pub action: Verdict,
}

/// `cidr` less its `except` blocks (each inside `cidr`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub cidr: Ipv4Cidr,
    #[serde(default)]
    pub except: Vec<Ipv4Cidr>,
}

/// Ports `from..=to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortRange {
    pub from: u16,
    pub to: u16,
}

impl PortRange {
    pub fn single(port: u16) -> Self {
        PortRange { from: port, to: port }
    }
}

/// The classifier's answer for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// The rule that decided (global index, see [`AclTable::rule`]): for a
    /// deny the denying rule, for an allow the ingress rule if ingress was
    /// checked, else the egress rule. `None`: a default or no policy decided.
    pub rule: Option<u32>,
    /// For a deny: the side whose policy denied.
    pub direction: Option<Direction>,
}

impl Decision {
    const ALLOW: Decision = Decision { verdict: Verdict::Allow, rule: None, direction: None };
}

/// One compiled rule (hot data only).
#[derive(Debug, Clone, Copy)]
struct Rule {
    /// Into `AclTable::addr_ranges`; `None`: any address.
    peers: Option<Span>,
    /// Into `AclTable::port_ranges`; `None`: any port.
    ports: Option<Span>,
    proto: Option<u8>,
    action: Verdict,
}

/// What is only read by humans.
#[derive(Debug, Clone)]
struct RuleMeta {
    id: String,
    pod: u32,
    direction: Direction,
    priority: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    #[inline]
    fn of<T>(self, v: &[T]) -> &[T] {
        let start = self.start as usize;
        v.get(start..start.saturating_add(self.len as usize)).unwrap_or(&[])
    }

    fn indices(self) -> std::ops::Range<u32> {
        self.start..self.start.saturating_add(self.len)
    }
}

#[derive(Debug, Clone, Copy)]
struct DirectionTable {
    /// Into `AclTable::rules`, in evaluation order.
    rules: Span,
    default: Verdict,
}

#[derive(Debug, Clone)]
struct PodTable {
    ip: Ipv4Addr,
    name: String,
    ingress: Option<DirectionTable>,
    egress: Option<DirectionTable>,
}

impl PodTable {
    fn direction(&self, d: Direction) -> Option<&DirectionTable> {
        match d {
            Direction::Ingress => self.ingress.as_ref(),
            Direction::Egress => self.egress.as_ref(),
        }
    }
}

/// A rule as weirctl shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo<'a> {
    /// The global rule index ([`Decision::rule`]).
    pub index: u32,
    pub pod: Ipv4Addr,
    pub pod_name: &'a str,
    pub direction: Direction,
    pub id: &'a str,
    pub priority: u32,
    pub action: Verdict,
    pub protocol: Option<u8>,
    pub hits: u64,
}

/// The compiled ACLs of a node; see the module doc.
#[derive(Debug, Default)]
pub struct AclTable {
    /// Pod address → index into `pods`.
    index: FastMap<Ipv4Addr, u32>,
    /// Sorted by address.
    pods: Vec<PodTable>,
    /// Every rule, pod by pod (ingress, then egress), each direction in
    /// evaluation order; the position is the global rule index.
    rules: Vec<Rule>,
    meta: Vec<RuleMeta>,
    /// Sorted, disjoint, non-adjacent runs, one run per distinct peer set.
    addr_ranges: Vec<(u32, u32)>,
    port_ranges: Vec<(u16, u16)>,
    /// Sorted; always allowed by ingress.
    node_addrs: Vec<Ipv4Addr>,
    hits: Vec<AtomicU64>,
    /// Two per pod: ingress default, egress default.
    default_hits: Vec<AtomicU64>,
}

/// Why a direction decided what it did.
#[derive(Clone, Copy)]
enum Outcome {
    Rule(u32, Verdict),
    Default(Verdict),
    /// Ingress from a node address.
    Node,
}

impl Outcome {
    fn verdict(self) -> Verdict {
        match self {
            Outcome::Rule(_, v) | Outcome::Default(v) => v,
            Outcome::Node => Verdict::Allow,
        }
    }

    fn rule(self) -> Option<u32> {
        match self {
            Outcome::Rule(i, _) => Some(i),
            _ => None,
        }
    }
}

fn dir_slot(d: Direction) -> usize {
    match d {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

/// Whether `x` is in one of the sorted disjoint ranges.
#[inline]
fn in_ranges<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|r| r.1 < x);
    ranges.get(i).is_some_and(|r| r.0 <= x)
}

fn cidr_range(c: &Ipv4Cidr) -> (u64, u64) {
    let start = u64::from(u32::from(c.addr()));
    (start, start | u64::from(!c.mask()))
}

/// Sorts and merges overlapping or adjacent ranges.
fn merge(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1 + 1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The addresses of a peer list: each cidr less its excepts, all unioned.
fn peer_ranges(peers: &[PeerConfig]) -> Vec<(u32, u32)> {
    let mut all = Vec::with_capacity(peers.len());
    for p in peers {
        let (s, e) = cidr_range(&p.cidr);
        let mut cursor = s;
        for (xs, xe) in merge(p.except.iter().map(cidr_range).collect()) {
            if xs > cursor {
                all.push((cursor, xs - 1));
            }
            cursor = cursor.max(xe + 1);
        }
        if cursor <= e {
            all.push((cursor, e));
        }
    }
    // Every bound came from a u32, so the conversions cannot fail.
    merge(all).into_iter().map(|(s, e)| (s as u32, e as u32)).collect()
}

fn port_ranges(ports: &[PortRange]) -> Vec<(u16, u16)> {
    let v = ports.iter().map(|p| (u64::from(p.from), u64::from(p.to))).collect();
    merge(v).into_iter().map(|(s, e)| (s as u16, e as u16)).collect()
}

/// Stores each distinct range list once.
struct Interner<T> {
    seen: HashMap<Vec<(T, T)>, Span>,
}

impl<T: Copy + Eq + std::hash::Hash> Interner<T> {
    fn new() -> Self {
        Interner { seen: HashMap::new() }
    }

    fn intern(&mut self, ranges: Vec<(T, T)>, store: &mut Vec<(T, T)>) -> Span {
        if let Some(s) = self.seen.get(&ranges) {
            return *s;
        }
        let span = Span { start: store.len() as u32, len: ranges.len() as u32 };
        store.extend_from_slice(&ranges);
        self.seen.insert(ranges, span);
        span
    }
}

pub fn proto_name(p: u8) -> String {
    match p {
        PROTO_ICMP => "icmp".into(),
        PROTO_TCP => "tcp".into(),
        PROTO_UDP => "udp".into(),
        PROTO_SCTP => "sctp".into(),
        n => n.to_string(),
    }
}

/// Appends the fewest CIDR blocks that cover the addresses `s..=e` exactly.
pub fn range_cidrs(s: u32, e: u32, out: &mut Vec<Ipv4Cidr>) {
    let (mut s, e) = (u64::from(s), u64::from(e));
    while s <= e {
        // The largest block aligned at `s` that does not pass `e`.
        let mut size: u64 = if s == 0 { 1 << 32 } else { 1 << s.trailing_zeros().min(32) };
        while s + size - 1 > e {
            size >>= 1;
        }
        let len = 32 - size.trailing_zeros() as u8;
        if let Some(c) = Ipv4Cidr::new(Ipv4Addr::from(s as u32), len) {
            out.push(c);
        }
        s += size;
    }
}

impl AclTable {
    /// Validates and compiles `cfg`. `node_addrs` are the node's own
    /// addresses (node IP, gateway addresses): always allowed by ingress.
    /// An error names the pod, direction and rule id, and nothing is built.
    pub fn build(cfg: &AclConfig, node_addrs: &[Ipv4Addr]) -> Result<AclTable, String> {
        if cfg.pods.len() > MAX_PODS {
            return Err(format!("{} pods with a policy, at most {MAX_PODS}", cfg.pods.len()));
        }
        let mut order: Vec<&PodAclConfig> = cfg.pods.iter().collect();
        order.sort_by_key(|p| u32::from(p.ip));
        for w in order.windows(2) {
            if w[0].ip == w[1].ip {
                return Err(format!("pod address {} given twice ({} and {})", w[0].ip, w[0].name, w[1].name));
            }
        }
        let mut t = AclTable::default();
        let mut addr_interner = Interner::new();
        let mut port_interner = Interner::new();
        for (pi, pod) in order.iter().enumerate() {
            let mut table = PodTable { ip: pod.ip, name: pod.name.clone(), ingress: None, egress: None };
            for (d, dcfg) in [(Direction::Ingress, &pod.ingress), (Direction::Egress, &pod.egress)] {
                let Some(dcfg) = dcfg else { continue };
                let at = |id: &str| format!("pod {} ({}) {d} rule {id:?}", pod.ip, pod.name);
                if dcfg.rules.len() > MAX_RULES_PER_DIRECTION {
                    return Err(format!(
                        "pod {} ({}) {d}: {} rules, at most {MAX_RULES_PER_DIRECTION} per pod and direction",
                        pod.ip,
                        pod.name,
                        dcfg.rules.len()
                    ));
                }
                let mut sorted: Vec<&RuleConfig> = dcfg.rules.iter().collect();
                sorted.sort_by_key(|r| r.priority); // stable: ties keep config order
                let mut ids = HashSet::new();
                let start = t.rules.len();
                for r in sorted {
                    Self::validate_rule(r).map_err(|e| format!("{}: {e}", at(&r.id)))?;
                    if !ids.insert(r.id.as_str()) {
                        return Err(format!("{}: rule id used twice", at(&r.id)));
                    }
                    let peers = if r.peers.is_empty() {
                        None
                    } else {
                        Some(addr_interner.intern(peer_ranges(&r.peers), &mut t.addr_ranges))
                    };
                    let ports = if r.ports.is_empty() {
                        None
                    } else {
                        Some(port_interner.intern(port_ranges(&r.ports), &mut t.port_ranges))
                    };
                    if t.addr_ranges.len() > MAX_ADDRESS_RANGES {
                        return Err(format!("{}: more than {MAX_ADDRESS_RANGES} address ranges in all", at(&r.id)));
                    }
                    if t.rules.len() >= MAX_RULES {
                        return Err(format!("{}: more than {MAX_RULES} rules in all", at(&r.id)));
                    }
                    t.rules.push(Rule { peers, ports, proto: r.protocol, action: r.action });
                    t.meta.push(RuleMeta { id: r.id.clone(), pod: pi as u32, direction: d, priority: r.priority });
                }
                let rules = Span { start: start as u32, len: (t.rules.len() - start) as u32 };
                let dt = Some(DirectionTable { rules, default: dcfg.default });
                match d {
                    Direction::Ingress => table.ingress = dt,
                    Direction::Egress => table.egress = dt,
                }
            }
            t.index.insert(pod.ip, pi as u32);
            t.pods.push(table);
        }
        t.hits = (0..t.rules.len()).map(|_| AtomicU64::new(0)).collect();
        t.default_hits = (0..t.pods.len() * 2).map(|_| AtomicU64::new(0)).collect();
        t.node_addrs = node_addrs.to_vec();
        t.node_addrs.sort_unstable();
        t.node_addrs.dedup();
        Ok(t)
    }

    fn validate_rule(r: &RuleConfig) -> Result<(), String> {
        if r.id.is_empty() {
            return Err("empty rule id".into());
        }
        if r.id.len() > MAX_RULE_ID_LEN {
            return Err(format!("rule id longer than {MAX_RULE_ID_LEN} bytes"));
        }
        if r.peers.len() > MAX_PEERS_PER_RULE {
            return Err(format!("{} peers, at most {MAX_PEERS_PER_RULE}", r.peers.len()));
        }
        for p in &r.peers {
            if p.except.len() > MAX_EXCEPTS_PER_PEER {
                return Err(format!("peer {}: {} excepts, at most {MAX_EXCEPTS_PER_PEER}", p.cidr, p.except.len()));
            }
            for x in &p.except {
                if x.len() < p.cidr.len() || !p.cidr.contains(x.addr()) {
                    return Err(format!("peer {}: except {x} is not inside it", p.cidr));
                }
            }
        }
        if r.ports.len() > MAX_PORT_RANGES_PER_RULE {
            return Err(format!("{} port ranges, at most {MAX_PORT_RANGES_PER_RULE}", r.ports.len()));
        }
        for p in &r.ports {
            if p.from > p.to {
                return Err(format!("port range {}-{} has from > to", p.from, p.to));
            }
        }
        if let Some(proto) = r.protocol {
            if !r.ports.is_empty() && !has_ports(proto) {
                return Err(format!("ports given for protocol {}, which has none", proto_name(proto)));
            }
        }
        Ok(())
    }

    /// Decides a packet and counts the deciding rules (or defaults). Ports
    /// are ignored for protocols without them; `_src_port` is not matched on
    /// by any rule today.
    #[inline]
    pub fn classify(&self, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, _src_port: u16, dst_port: u16) -> Decision {
        self.run(src, dst, proto, dst_port, true)
    }

    /// [`classify`](Self::classify) without counting (weirctl's `explain`).
    pub fn evaluate(&self, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, _src_port: u16, dst_port: u16) -> Decision {
        self.run(src, dst, proto, dst_port, false)
    }

    #[inline]
    fn run(&self, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, dst_port: u16, count: bool) -> Decision {
        if self.pods.is_empty() {
            return Decision::ALLOW;
        }
        let mut allowed_by = None;
        if let Some(&pi) = self.index.get(&src) {
            if let Some(o) = self.decide(pi, Direction::Egress, None, dst, proto, dst_port, count) {
                if o.verdict() == Verdict::Deny {
                    return Decision { verdict: Verdict::Deny, rule: o.rule(), direction: Some(Direction::Egress) };
                }
                allowed_by = o.rule();
            }
        }
        if let Some(&pi) = self.index.get(&dst) {
            if let Some(o) = self.decide(pi, Direction::Ingress, Some(src), src, proto, dst_port, count) {
                if o.verdict() == Verdict::Deny {
                    return Decision { verdict: Verdict::Deny, rule: o.rule(), direction: Some(Direction::Ingress) };
                }
                allowed_by = o.rule();
            }
        }
        Decision { verdict: Verdict::Allow, rule: allowed_by, direction: None }
    }

    /// One pod's one direction; `None` when it has no policy there.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn decide(
        &self,
        pod: u32,
        d: Direction,
        node_check: Option<Ipv4Addr>,
        peer: Ipv4Addr,
        proto: u8,
        dst_port: u16,
        count: bool,
    ) -> Option<Outcome> {
        let table = self.pods.get(pod as usize)?.direction(d)?;
        let o = self.first_match(table, node_check, peer, proto, dst_port);
        if count {
            let counter = match o {
                Outcome::Rule(i, _) => self.hits.get(i as usize),
                Outcome::Default(_) => self.default_hits.get(pod as usize * 2 + dir_slot(d)),
                Outcome::Node => None,
            };
            if let Some(c) = counter {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        Some(o)
    }

    #[inline]
    fn first_match(
        &self,
        table: &DirectionTable,
        node_check: Option<Ipv4Addr>,
        peer: Ipv4Addr,
        proto: u8,
        dst_port: u16,
    ) -> Outcome {
        if let Some(src) = node_check {
            if !self.node_addrs.is_empty() && self.node_addrs.binary_search(&src).is_ok() {
                return Outcome::Node;
            }
        }
        let peer = u32::from(peer);
        let ported = has_ports(proto);
        for (i, r) in table.rules.indices().zip(table.rules.of(&self.rules)) {
            if r.proto.is_some_and(|p| p != proto) {
                continue;
            }
            if let Some(ports) = r.ports {
                if !ported || !in_ranges(ports.of(&self.port_ranges), dst_port) {
                    continue;
                }
            }
            if let Some(peers) = r.peers {
                if !in_ranges(peers.of(&self.addr_ranges), peer) {
                    continue;
                }
            }
            return Outcome::Rule(i, r.action);
        }
        Outcome::Default(table.default)
    }

    /// Takes over the hit counts of `old` for every rule (and default) whose
    /// pod, direction and id are unchanged. Call before publishing `self`;
    /// hits the workers count on `old` after this call are lost.
    pub fn carry_counters_from(&mut self, old: &AclTable) {
        let mut counts: HashMap<(Ipv4Addr, Direction, &str), u64> = HashMap::with_capacity(old.meta.len());
        for (m, h) in old.meta.iter().zip(&old.hits) {
            if let Some(p) = old.pods.get(m.pod as usize) {
                counts.insert((p.ip, m.direction, m.id.as_str()), h.load(Ordering::Relaxed));
            }
        }
        for (m, h) in self.meta.iter().zip(&self.hits) {
            if let Some(p) = self.pods.get(m.pod as usize) {
                if let Some(n) = counts.get(&(p.ip, m.direction, m.id.as_str())) {
                    h.store(*n, Ordering::Relaxed);
                }
            }
        }
        for (pi, pod) in self.pods.iter().enumerate() {
            let Some(&oi) = old.index.get(&pod.ip) else { continue };
            for d in [Direction::Ingress, Direction::Egress] {
                let was = old.pods.get(oi as usize).and_then(|p| p.direction(d)).is_some();
                if was && pod.direction(d).is_some() {
                    if let (Some(n), Some(c)) = (
                        old.default_hits.get(oi as usize * 2 + dir_slot(d)),
                        self.default_hits.get(pi * 2 + dir_slot(d)),
                    ) {
                        c.store(n.load(Ordering::Relaxed), Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// Rules in the table.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether the flows of a packet from `src` to `dst` need tracking: one
    /// of them is a pod with a policy in either direction. Not only the
    /// directions a policy applies to: a pod with an ingress policy must
    /// get the answers to its own connections, whose first packet its
    /// policy did not look at, so those are tracked too. Packets between
    /// pods without policy need no classification and no flow state.
    #[inline]
    pub fn tracks(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        !self.pods.is_empty() && (self.index.contains_key(&src) || self.index.contains_key(&dst))
    }

    /// Pods with a policy in at least one direction.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// Hits of one rule (global index).
    pub fn hits(&self, rule: u32) -> u64 {
        self.hits.get(rule as usize).map_or(0, |h| h.load(Ordering::Relaxed))
    }

    /// Packets decided by a pod's default in one direction.
    pub fn default_hits(&self, pod: Ipv4Addr, d: Direction) -> u64 {
        self.index
            .get(&pod)
            .and_then(|&pi| self.default_hits.get(pi as usize * 2 + dir_slot(d)))
            .map_or(0, |h| h.load(Ordering::Relaxed))
    }

    /// One rule by its global index ([`Decision::rule`]).
    pub fn rule(&self, index: u32) -> Option<RuleInfo<'_>> {
        let m = self.meta.get(index as usize)?;
        let r = self.rules.get(index as usize)?;
        let pod = self.pods.get(m.pod as usize)?;
        Some(RuleInfo {
            index,
            pod: pod.ip,
            pod_name: &pod.name,
            direction: m.direction,
            id: &m.id,
            priority: m.priority,
            action: r.action,
            protocol: r.proto,
            hits: self.hits(index),
        })
    }

    /// Every rule, pod by pod in address order, ingress before egress, each
    /// direction in evaluation order.
    pub fn rules(&self) -> impl Iterator<Item = RuleInfo<'_>> + '_ {
        (0..self.rules.len() as u32).filter_map(move |i| self.rule(i))
    }

    /// Approximate heap bytes of the compiled table.
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        let names: usize =
            self.pods.iter().map(|p| p.name.len()).sum::<usize>() + self.meta.iter().map(|m| m.id.len()).sum::<usize>();
        self.index.capacity() * (size_of::<(Ipv4Addr, u32)>() + 1)
            + self.pods.capacity() * size_of::<PodTable>()
            + self.rules.capacity() * size_of::<Rule>()
            + self.meta.capacity() * size_of::<RuleMeta>()
            + self.addr_ranges.capacity() * 8
            + self.port_ranges.capacity() * 4
            + (self.hits.capacity() + self.default_hits.capacity()) * 8
            + names
    }

    /// A stable text form: for each pod (by address) and direction, the
    /// default, then each rule in evaluation order with its hit count.
    pub fn dump(&self) -> String {
        let mut o = String::new();
        if !self.node_addrs.is_empty() {
            let addrs: Vec<String> = self.node_addrs.iter().map(|a| a.to_string()).collect();
            let _ = writeln!(o, "node addresses (ingress always allowed): {}", addrs.join(", "));
        }
        for (pi, pod) in self.pods.iter().enumerate() {
            let _ = writeln!(o, "pod {} {}", pod.ip, pod.name);
            for d in [Direction::Ingress, Direction::Egress] {
                let Some(t) = pod.direction(d) else {
                    let _ = writeln!(o, "  {d}: no policy");
                    continue;
                };
                let dh = self.default_hits.get(pi * 2 + dir_slot(d)).map_or(0, |h| h.load(Ordering::Relaxed));
                let _ = writeln!(o, "  {d}: default {} hits={dh}", t.default);
                for i in t.rules.indices() {
                    if let (Some(r), Some(m)) = (self.rules.get(i as usize), self.meta.get(i as usize)) {
                        let _ = writeln!(
                            o,
                            "    [{i}] {} {} prio={} proto={} ports={} peers={} hits={}",
                            r.action,
                            m.id,
                            m.priority,
                            r.proto.map_or_else(|| "any".to_string(), proto_name),
                            self.ports_text(r.ports),
                            self.peers_text(r.peers),
                            self.hits(i)
                        );
                    }
                }
            }
        }
        o
    }

    fn ports_text(&self, ports: Option<Span>) -> String {
        let Some(span) = ports else { return "any".into() };
        let v: Vec<String> = span
            .of(&self.port_ranges)
            .iter()
            .map(|&(s, e)| if s == e { s.to_string() } else { format!("{s}-{e}") })
            .collect();
        v.join(",")
    }

    fn peers_text(&self, peers: Option<Span>) -> String {
        let Some(span) = peers else { return "any".into() };
        let ranges = span.of(&self.addr_ranges);
        if ranges.is_empty() {
            return "none".into();
        }
        let mut cidrs = Vec::new();
        for &(s, e) in ranges {
            range_cidrs(s, e, &mut cidrs);
        }
        let v: Vec<String> = cidrs.iter().map(|c| c.to_string()).collect();
        v.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    fn peer(c: &str, except: &[&str]) -> PeerConfig {
        PeerConfig { cidr: cidr(c), except: except.iter().map(|e| cidr(e)).collect() }
    }

    fn rule(id: &str, priority: u32, action: Verdict) -> RuleConfig {
        RuleConfig { id: id.into(), priority, peers: vec![], protocol: None, ports: vec![], action }
    }

    fn pod(addr: &str, ingress: Option<DirectionConfig>, egress: Option<DirectionConfig>) -> PodAclConfig {
        PodAclConfig { ip: ip(addr), name: format!("ns/{addr}"), ingress, egress }
    }

    fn dir(rules: Vec<RuleConfig>, default: Verdict) -> Option<DirectionConfig> {
        Some(DirectionConfig { rules, default })
    }

    use Verdict::{Allow, Deny};

    /// One table exercising every field; each case is one packet.
    #[test]
    fn classifies_every_field() {
        let web = pod(
            "10.1.0.10",
            dir(
                vec![
                    // Contiv-style deny of ICMP first.
                    RuleConfig { protocol: Some(PROTO_ICMP), ..rule("deny-icmp", 1, Deny) },
                    // TCP 80 and 8000-8010 from 10.1.0.0/24 less 10.1.0.128/25.
                    RuleConfig {
                        peers: vec![peer("10.1.0.0/24", &["10.1.0.128/25"])],
                        protocol: Some(PROTO_TCP),
                        ports: vec![PortRange::single(80), PortRange { from: 8000, to: 8010 }],
                        ..rule("web", 10, Allow)
                    },
                    // Any protocol with ports, port 53, from anywhere.
                    RuleConfig { ports: vec![PortRange::single(53)], ..rule("dns", 10, Allow) },
                    // Protocol 47 (GRE) from one host.
                    RuleConfig {
                        peers: vec![peer("192.168.0.7/32", &[])],
                        protocol: Some(47),
                        ..rule("gre", 20, Allow)
                    },
                ],
                Deny,
            ),
            dir(vec![RuleConfig { peers: vec![peer("10.9.0.0/16", &[])], ..rule("no-10.9", 0, Deny) }], Allow),
        );
        let t = AclTable::build(&AclConfig { pods: vec![web] }, &[ip("10.0.0.1")]).unwrap();
        let w = "10.1.0.10";
        // (name, src, dst, protocol, dst port, verdict, deciding rule, denying side)
        type Case<'a> = (&'a str, &'a str, &'a str, u8, u16, Verdict, Option<&'a str>, Option<Direction>);
        let cases: &[Case] = &[
            ("icmp denied by rule", "10.1.0.5", w, PROTO_ICMP, 0, Deny, Some("deny-icmp"), Some(Direction::Ingress)),
            ("tcp 80 from peer", "10.1.0.5", w, PROTO_TCP, 80, Allow, Some("web"), None),
            ("tcp 8005 in range", "10.1.0.5", w, PROTO_TCP, 8005, Allow, Some("web"), None),
            ("tcp 8011 past range", "10.1.0.5", w, PROTO_TCP, 8011, Deny, None, Some(Direction::Ingress)),
            ("tcp 80 from except", "10.1.0.200", w, PROTO_TCP, 80, Deny, None, Some(Direction::Ingress)),
            ("tcp 80 outside cidr", "10.2.0.5", w, PROTO_TCP, 80, Deny, None, Some(Direction::Ingress)),
            ("udp 80: wrong protocol", "10.1.0.5", w, PROTO_UDP, 80, Deny, None, Some(Direction::Ingress)),
            ("udp 53 any protocol rule", "8.8.8.8", w, PROTO_UDP, 53, Allow, Some("dns"), None),
            ("sctp 53 any protocol rule", "8.8.8.8", w, PROTO_SCTP, 53, Allow, Some("dns"), None),
            ("gre from host", "192.168.0.7", w, 47, 53, Allow, Some("gre"), None),
            ("gre from other", "192.168.0.8", w, 47, 0, Deny, None, Some(Direction::Ingress)),
            ("proto 47 port ignored for dns rule", "8.8.8.8", w, 47, 53, Deny, None, Some(Direction::Ingress)),
            ("node address always allowed", "10.0.0.1", w, PROTO_ICMP, 0, Allow, None, None),
            ("egress denied to 10.9", w, "10.9.3.3", PROTO_TCP, 80, Deny, Some("no-10.9"), Some(Direction::Egress)),
            ("egress default allow", w, "10.8.3.3", PROTO_TCP, 80, Allow, None, None),
            ("neither side has policy", "1.1.1.1", "2.2.2.2", PROTO_TCP, 1, Allow, None, None),
        ];
        for (name, src, dst, proto, port, verdict, rule_id, direction) in cases {
            let d = t.evaluate(ip(src), ip(dst), *proto, 1234, *port);
            assert_eq!(d.verdict, *verdict, "{name}");
            assert_eq!(d.rule.and_then(|i| t.rule(i)).map(|r| r.id), *rule_id, "{name}");
            assert_eq!(d.direction, *direction, "{name}");
        }
        // evaluate never counts.
        assert!(t.rules().all(|r| r.hits == 0));
    }

    #[test]
    fn both_sides_must_allow_and_hits_are_counted() {
        let a = pod("10.1.0.1", None, dir(vec![RuleConfig { ..rule("a-out-tcp", 0, Allow) }], Deny));
        let b = pod(
            "10.1.0.2",
            dir(vec![RuleConfig { protocol: Some(PROTO_TCP), ..rule("b-in-tcp", 0, Allow) }], Deny),
            None,
        );
        let t = AclTable::build(&AclConfig { pods: vec![b, a] }, &[]).unwrap();
        let (a, b) = (ip("10.1.0.1"), ip("10.1.0.2"));
        let d = t.classify(a, b, PROTO_TCP, 1, 2);
        assert_eq!(d.verdict, Allow);
        assert_eq!(t.rule(d.rule.unwrap()).unwrap().id, "b-in-tcp");
        let d = t.classify(a, b, PROTO_UDP, 1, 2);
        assert_eq!((d.verdict, d.direction, d.rule), (Deny, Some(Direction::Ingress), None));
        let counts: Vec<(&str, u64)> = t.rules().map(|r| (r.id, r.hits)).collect();
        // Pods in address order: a (egress) then b (ingress).
        assert_eq!(counts, vec![("a-out-tcp", 2), ("b-in-tcp", 1)]);
        assert_eq!(t.default_hits(b, Direction::Ingress), 1);
        assert_eq!(t.default_hits(a, Direction::Egress), 0);
    }

    #[test]
    fn priority_then_config_order() {
        let p = pod(
            "10.1.0.1",
            dir(vec![rule("late-allow", 5, Allow), rule("first-deny", 1, Deny), rule("tie-allow", 1, Allow)], Allow),
            None,
        );
        let t = AclTable::build(&AclConfig { pods: vec![p] }, &[]).unwrap();
        let ids: Vec<&str> = t.rules().map(|r| r.id).collect();
        assert_eq!(ids, vec!["first-deny", "tie-allow", "late-allow"]);
        assert_eq!(t.evaluate(ip("1.2.3.4"), ip("10.1.0.1"), PROTO_TCP, 1, 1).verdict, Deny);
    }

    #[test]
    fn refuses_bad_configs() {
        let ok_rule = || rule("r", 0, Allow);
        let with = |r: RuleConfig| AclConfig { pods: vec![pod("10.1.0.1", dir(vec![r], Deny), None)] };
        let cases: Vec<(&str, AclConfig, &str)> = vec![
            (
                "duplicate pod",
                AclConfig { pods: vec![pod("10.1.0.1", None, None), pod("10.1.0.1", None, None)] },
                "given twice",
            ),
            ("from > to", with(RuleConfig { ports: vec![PortRange { from: 9, to: 8 }], ..ok_rule() }), "from > to"),
            (
                "ports for icmp",
                with(RuleConfig { protocol: Some(PROTO_ICMP), ports: vec![PortRange::single(1)], ..ok_rule() }),
                "which has none",
            ),
            (
                "except outside",
                with(RuleConfig { peers: vec![peer("10.0.0.0/24", &["10.0.1.0/28"])], ..ok_rule() }),
                "not inside",
            ),
            (
                "except wider",
                with(RuleConfig { peers: vec![peer("10.0.0.0/24", &["10.0.0.0/16"])], ..ok_rule() }),
                "not inside",
            ),
            ("empty id", with(rule("", 0, Allow)), "empty rule id"),
            (
                "duplicate id",
                AclConfig { pods: vec![pod("10.1.0.1", None, dir(vec![ok_rule(), ok_rule()], Deny))] },
                "used twice",
            ),
            (
                "too many rules",
                AclConfig {
                    pods: vec![pod(
                        "10.1.0.1",
                        dir((0..=MAX_RULES_PER_DIRECTION).map(|i| rule(&i.to_string(), 0, Allow)).collect(), Deny),
                        None,
                    )],
                },
                "per pod and direction",
            ),
        ];
        for (name, cfg, want) in cases {
            let err = AclTable::build(&cfg, &[]).unwrap_err();
            assert!(err.contains(want), "{name}: {err}");
            if name != "duplicate pod" && name != "too many rules" {
                assert!(err.contains("10.1.0.1") && err.contains("rule \""), "{name} names pod and rule: {err}");
            }
        }
    }

    #[test]
    fn config_round_trips_through_json() {
        let json = r#"{"pods":[{"ip":"10.1.0.1","name":"default/web","ingress":{"default":"deny","rules":[
            {"id":"np:default/web/ingress/0/tcp","priority":1000,"protocol":6,
             "peers":[{"cidr":"10.0.0.0/8","except":["10.9.0.0/16"]}],
             "ports":[{"from":80,"to":80}],"action":"allow"}]}}]}"#;
        let cfg: AclConfig = serde_json::from_str(json).unwrap();
        let back: AclConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(cfg, back);
        assert!(serde_json::from_str::<AclConfig>(r#"{"pods":[],"extra":1}"#).is_err());
        assert!(serde_json::from_str::<RuleConfig>(r#"{"id":"x","action":"maybe"}"#).is_err());
    }

    #[test]
    fn dump_is_stable() {
        let cfg = AclConfig {
            pods: vec![
                pod(
                    "10.1.0.2",
                    dir(
                        vec![RuleConfig {
                            peers: vec![
                                peer("10.1.0.0/24", &["10.1.0.128/25", "10.1.0.0/30"]),
                                peer("10.3.0.1/32", &[]),
                            ],
                            protocol: Some(PROTO_TCP),
                            ports: vec![PortRange { from: 8000, to: 8080 }, PortRange::single(80)],
                            ..rule("np:a", 1000, Allow)
                        }],
                        Deny,
                    ),
                    None,
                ),
                pod(
                    "10.1.0.1",
                    None,
                    dir(
                        vec![RuleConfig {
                            peers: vec![peer("10.2.0.0/24", &["10.2.0.0/24"])],
                            ..rule("contiv:p/1", 0, Deny)
                        }],
                        Allow,
                    ),
                ),
            ],
        };
        let t = AclTable::build(&cfg, &[ip("10.0.0.1")]).unwrap();
        t.classify(ip("10.1.0.5"), ip("10.1.0.2"), PROTO_TCP, 1, 80);
        t.classify(ip("10.1.0.5"), ip("10.1.0.2"), PROTO_TCP, 1, 81);
        let want = "\
node addresses (ingress always allowed): 10.0.0.1
pod 10.1.0.1 ns/10.1.0.1
  ingress: no policy
  egress: default allow hits=0
    [0] deny contiv:p/1 prio=0 proto=any ports=any peers=none hits=0
pod 10.1.0.2 ns/10.1.0.2
  ingress: default deny hits=1
    [1] allow np:a prio=1000 proto=tcp ports=80,8000-8080 peers=10.1.0.4/30,10.1.0.8/29,10.1.0.16/28,10.1.0.32/27,10.1.0.64/26,10.3.0.1/32 hits=1
  egress: no policy
";
        assert_eq!(t.dump(), want);
    }

    #[test]
    fn counters_follow_rule_ids() {
        let cfg = |ids: &[&str]| AclConfig {
            pods: vec![pod("10.1.0.1", dir(ids.iter().map(|i| rule(i, 0, Deny)).collect(), Deny), None)],
        };
        let old = AclTable::build(&cfg(&["keep", "gone"]), &[]).unwrap();
        for _ in 0..3 {
            old.classify(ip("1.1.1.1"), ip("10.1.0.1"), PROTO_TCP, 1, 1);
        }
        let mut new = AclTable::build(&cfg(&["new", "keep"]), &[]).unwrap();
        new.carry_counters_from(&old);
        let counts: Vec<(&str, u64)> = new.rules().map(|r| (r.id, r.hits)).collect();
        assert_eq!(counts, vec![("new", 0), ("keep", 3)]);
        // Defaults carry too.
        let empty = || AclConfig { pods: vec![pod("10.1.0.1", dir(vec![], Deny), None)] };
        let old = AclTable::build(&empty(), &[]).unwrap();
        old.classify(ip("1.1.1.1"), ip("10.1.0.1"), PROTO_TCP, 1, 1);
        let mut new = AclTable::build(&empty(), &[]).unwrap();
        new.carry_counters_from(&old);
        assert_eq!(new.default_hits(ip("10.1.0.1"), Direction::Ingress), 1);
    }

    #[test]
    fn empty_table_and_odd_inputs_do_not_panic() {
        let t = AclTable::build(&AclConfig::default(), &[]).unwrap();
        assert!(t.is_empty());
        assert_eq!(t.classify(ip("0.0.0.0"), ip("255.255.255.255"), 255, 65535, 65535), Decision::ALLOW);
        assert!(t.rule(0).is_none());
        let all = AclConfig {
            pods: vec![pod(
                "255.255.255.255",
                dir(
                    vec![RuleConfig {
                        peers: vec![peer("0.0.0.0/0", &["255.255.255.255/32", "0.0.0.0/32"])],
                        ports: vec![PortRange { from: 0, to: 65535 }],
                        ..rule("edges", 0, Allow)
                    }],
                    Deny,
                ),
                None,
            )],
        };
        let t = AclTable::build(&all, &[]).unwrap();
        let top = ip("255.255.255.255");
        assert_eq!(t.classify(ip("0.0.0.1"), top, PROTO_TCP, 0, 65535).verdict, Allow);
        assert_eq!(t.classify(ip("255.255.255.254"), top, PROTO_UDP, 0, 0).verdict, Allow);
        assert_eq!(t.classify(ip("0.0.0.0"), top, PROTO_TCP, 0, 1).verdict, Deny);
        assert_eq!(t.classify(top, top, PROTO_TCP, 0, 1).verdict, Deny);
        assert_eq!(t.classify(ip("0.0.0.1"), top, PROTO_ICMP, 0, 1).verdict, Deny);
        assert!(t.dump().contains("peers=0.0.0.1/32,0.0.0.2/31"));
    }

    #[test]
    fn range_to_cidrs() {
        let mut v = Vec::new();
        range_cidrs(0, u32::MAX, &mut v);
        assert_eq!(v, vec![cidr("0.0.0.0/0")]);
        v.clear();
        range_cidrs(u32::from(ip("10.0.0.1")), u32::from(ip("10.0.0.6")), &mut v);
        let s: Vec<String> = v.iter().map(|c| c.to_string()).collect();
        assert_eq!(s, vec!["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]);
    }

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    /// An address in a small space (so rules and packets meet often), now and
    /// then anywhere.
    fn rand_addr(rng: &mut Rng) -> Ipv4Addr {
        if rng.chance(10) {
            Ipv4Addr::from(rng.next() as u32)
        } else {
            Ipv4Addr::new(10, 0, rng.below(2) as u8, rng.below(64) as u8)
        }
    }

    fn rand_cidr(rng: &mut Rng, within: Option<Ipv4Cidr>) -> Ipv4Cidr {
        let (base, min) = within.map_or((rand_addr(rng), 20), |c| (c.addr(), c.len()));
        let len = (min + rng.below(u64::from(33 - min)) as u8).max(min);
        let bits = u32::from(base) | (rng.next() as u32 & !within.map_or(0, |c| c.mask()));
        Ipv4Cidr::new(Ipv4Addr::from(bits), len).unwrap()
    }

    fn rand_rule(rng: &mut Rng, id: usize) -> RuleConfig {
        let protocol = [None, Some(PROTO_ICMP), Some(PROTO_TCP), Some(PROTO_UDP)][rng.below(4) as usize];
        let peers = (0..rng.below(3))
            .map(|_| {
                let c = rand_cidr(rng, None);
                PeerConfig { cidr: c, except: (0..rng.below(3)).map(|_| rand_cidr(rng, Some(c))).collect() }
            })
            .collect();
        let ports = if protocol == Some(PROTO_ICMP) {
            vec![]
        } else {
            (0..rng.below(3))
                .map(|_| {
                    let from = rng.below(20) as u16;
                    PortRange { from, to: from + rng.below(5) as u16 }
                })
                .collect()
        };
        let action = if rng.chance(50) { Allow } else { Deny };
        RuleConfig { id: format!("r{id}"), priority: rng.below(4) as u32, peers, protocol, ports, action }
    }

    /// The semantics, written the slow and obvious way.
    fn reference(cfg: &AclConfig, node: &[Ipv4Addr], src: Ipv4Addr, dst: Ipv4Addr, proto: u8, port: u16) -> Verdict {
        let side = |d: &DirectionConfig, peer: Ipv4Addr| {
            let mut rules: Vec<&RuleConfig> = d.rules.iter().collect();
            rules.sort_by_key(|r| r.priority);
            for r in rules {
                let proto_ok = match r.protocol {
                    Some(p) => p == proto,
                    None => true,
                };
                let port_ok =
                    r.ports.is_empty() || (has_ports(proto) && r.ports.iter().any(|p| p.from <= port && port <= p.to));
                let peer_ok = r.peers.is_empty()
                    || r.peers.iter().any(|p| p.cidr.contains(peer) && !p.except.iter().any(|x| x.contains(peer)));
                if proto_ok && port_ok && peer_ok {
                    return r.action;
                }
            }
            d.default
        };
        if let Some(e) = cfg.pods.iter().find(|p| p.ip == src).and_then(|p| p.egress.as_ref()) {
            if side(e, dst) == Deny {
                return Deny;
            }
        }
        if let Some(i) = cfg.pods.iter().find(|p| p.ip == dst).and_then(|p| p.ingress.as_ref()) {
            if !node.contains(&src) && side(i, src) == Deny {
                return Deny;
            }
        }
        Allow
    }

    #[test]
    fn matches_reference_on_random_tables() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let node = [Ipv4Addr::new(10, 0, 0, 1)];
        // (allowed by a rule, denied by a rule, decided by defaults or no policy)
        let mut seen = [0u32; 3];
        for round in 0..200 {
            let mut cfg = AclConfig::default();
            let mut used = HashSet::new();
            let mut id = 0;
            for _ in 0..rng.below(6) {
                let addr = rand_addr(&mut rng);
                if !used.insert(addr) {
                    continue;
                }
                let mut side = |rng: &mut Rng| {
                    rng.chance(70).then(|| DirectionConfig {
                        rules: (0..rng.below(8))
                            .map(|_| {
                                id += 1;
                                rand_rule(rng, id)
                            })
                            .collect(),
                        default: if rng.chance(50) { Allow } else { Deny },
                    })
                };
                let ingress = side(&mut rng);
                let egress = side(&mut rng);
                cfg.pods.push(PodAclConfig { ip: addr, name: format!("p{round}"), ingress, egress });
            }
            let t = AclTable::build(&cfg, &node).unwrap();
            for _ in 0..300 {
                let src = if rng.chance(10) { node[0] } else { rand_addr(&mut rng) };
                let dst = if !cfg.pods.is_empty() && rng.chance(60) {
                    cfg.pods[rng.below(cfg.pods.len() as u64) as usize].ip
                } else {
                    rand_addr(&mut rng)
                };
                let src = if !cfg.pods.is_empty() && rng.chance(50) {
                    cfg.pods[rng.below(cfg.pods.len() as u64) as usize].ip
                } else {
                    src
                };
                let proto = [PROTO_ICMP, PROTO_TCP, PROTO_UDP, 47][rng.below(4) as usize];
                let port = rng.below(26) as u16;
                let want = reference(&cfg, &node, src, dst, proto, port);
                let got = t.classify(src, dst, proto, 9, port);
                assert_eq!(got.verdict, want, "round {round}: {src} -> {dst} proto {proto} port {port}\n{cfg:#?}");
                seen[match (got.rule, got.verdict) {
                    (Some(_), Allow) => 0,
                    (Some(_), Deny) => 1,
                    (None, _) => 2,
                }] += 1;
                if let Some(r) = got.rule {
                    let info = t.rule(r).unwrap();
                    if got.verdict == Deny {
                        assert_eq!(info.action, Deny);
                        assert_eq!(Some(info.direction), got.direction);
                    }
                }
            }
        }
        // The random tables reach every kind of outcome often.
        assert!(seen.iter().all(|n| *n > 2_000), "{seen:?}");
    }
}
