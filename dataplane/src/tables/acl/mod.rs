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
//! Cost: a pod is found with one hash lookup. Then per direction:
//!
//! - **Fewer than [`INDEX_MIN_RULES`] rules: the scan.** The rules are tried
//!   in order; each tests its protocol, then its destination port against
//!   sorted disjoint port ranges (binary search), then the peer address
//!   against sorted disjoint address ranges (binary search; `except` blocks
//!   are subtracted at build time): O(k · (log P + log Q)), k the rules
//!   before the deciding one, P and Q the address and port ranges of a
//!   rule — about 64 instructions per rule tried.
//! - **More: the index** (`index.rs`): the rules are bits; the packet's
//!   protocol, port and address each select the set of rules that accept
//!   them (a table read and two binary searches over the direction's
//!   elementary intervals), and the first bit of their intersection is the
//!   deciding rule: O(log I + W), I the intervals and W the 64-rule words
//!   walked, whatever the number of rules before the deciding one. It gives
//!   the scan's answer exactly. Memory and build work are bounded per
//!   direction ([`MAX_INDEX_BYTES_PER_DIRECTION`],
//!   [`MAX_INDEX_WORK_PER_DIRECTION`]) and per table ([`MAX_INDEX_BYTES`],
//!   [`MAX_INDEX_WORK`]); a direction past a budget keeps the scan, and
//!   [`AclTable::dump`] says so.
//!
//! Measured with `weir-bench-pipeline` (callgrind instruction counts; a
//! noisy shared 2-vCPU VM, so wall times vary but the counts are stable):
//! a flow's first packet through the 750 rules on its path went from
//! 50 913 instructions to 4 795 (a denied one 48 213 → 2 122), and stays
//! there at 16 384 rules (766 270 → 4 887). The index costs memory a scan
//! does not (its intervals are per direction, where the scan shares
//! identical address sets between rules and pods): on `weir-bench-policy`'s
//! random pod-to-pod packets with 40 rules a pod it classifies 2-3× faster
//! with 110 pods, but with 1 000 pods its 11.5 MiB of tables miss the
//! caches and it is no faster than the scan. docs/policy.md has the
//! figures.
//!
//! Identical peer and port sets are stored once, so a selector copied into
//! many pods' rules costs its ranges once.

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::cidr::Ipv4Cidr;
use super::FastMap;

mod index;
#[cfg(test)]
mod tests;

use index::{DirIndex, IndexLimits, OverBudget};

/// Pods with a policy on one node.
pub const MAX_PODS: usize = 65_536;
/// Rules of one pod in one direction (the bits of a direction's index; the
/// linear scan where a direction has none).
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
/// Directions with at least this many rules get an index (see the module
/// doc). Measured: a rule the scan tries costs about 64 instructions and
/// an index lookup about 150-250 whatever the rules, so the index wins on
/// instructions from about 4 rules; but it takes memory (a few KiB for a
/// few dozen rules) that a scan of a few rules does not need, and with
/// many pods its cache misses cost more than such a scan. At this
/// threshold a scanned direction costs at most about 1 000 instructions,
/// about an established packet's whole path.
pub const INDEX_MIN_RULES: usize = 16;
/// Memory one direction's index may take; a direction whose index would
/// need more keeps the linear scan (`dump` says so).
pub const MAX_INDEX_BYTES_PER_DIRECTION: usize = 8 << 20;
/// Memory the indexes of the whole table may take; directions (in pod
/// address order, ingress before egress) whose index no longer fits keep
/// the linear scan.
pub const MAX_INDEX_BYTES: usize = 256 << 20;
/// Work one direction's index may take to build, in range bounds sorted
/// plus 64-rule words written and hashed (about a nanosecond each); past it
/// the direction keeps the linear scan. Bounds the build time of a
/// direction whose rules name very many address blocks.
pub const MAX_INDEX_WORK_PER_DIRECTION: usize = 1 << 24;
/// Work the indexes of the whole table may take to build, counted as for
/// [`MAX_INDEX_WORK_PER_DIRECTION`].
pub const MAX_INDEX_WORK: usize = 1 << 27;

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
    lookup: Lookup,
}

/// How a direction finds its first matching rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// Fewer rules than the index threshold: the scan.
    Scan,
    /// Into `AclTable::indexes`.
    Index(u32),
    /// Enough rules, but an index would pass a budget: the scan.
    OverBudget(OverBudget),
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

    fn direction_mut(&mut self, d: Direction) -> Option<&mut DirectionTable> {
        match d {
            Direction::Ingress => self.ingress.as_mut(),
            Direction::Egress => self.egress.as_mut(),
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
    /// The directions' indexes ([`Lookup::Index`]).
    indexes: Vec<DirIndex>,
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
        Self::build_with(cfg, node_addrs, IndexLimits::default())
    }

    fn build_with(cfg: &AclConfig, node_addrs: &[Ipv4Addr], limits: IndexLimits) -> Result<AclTable, String> {
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
                let dt = Some(DirectionTable { rules, default: dcfg.default, lookup: Lookup::Scan });
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
        t.build_indexes(limits);
        Ok(t)
    }

    /// Gives the directions with enough rules an index, within the budgets.
    fn build_indexes(&mut self, limits: IndexLimits) {
        let (mut bytes, mut work) = (0usize, 0usize);
        for pi in 0..self.pods.len() {
            for d in [Direction::Ingress, Direction::Egress] {
                let Some(dt) = self.pods.get(pi).and_then(|p| p.direction(d)).copied() else { continue };
                if (dt.rules.len as usize) < limits.min_rules {
                    continue;
                }
                let lookup = match DirIndex::build(
                    dt.rules.of(&self.rules),
                    &self.addr_ranges,
                    &self.port_ranges,
                    limits.direction_bytes.min(limits.table_bytes.saturating_sub(bytes)),
                    limits.direction_work.min(limits.table_work.saturating_sub(work)),
                    &mut work,
                ) {
                    Ok(ix) => {
                        bytes += ix.bytes();
                        self.indexes.push(ix);
                        Lookup::Index(self.indexes.len() as u32 - 1)
                    }
                    Err(why) => Lookup::OverBudget(why),
                };
                if let Some(dt) = self.pods.get_mut(pi).and_then(|p| p.direction_mut(d)) {
                    dt.lookup = lookup;
                }
            }
        }
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
        if let Lookup::Index(x) = table.lookup {
            if let Some(ix) = self.indexes.get(x as usize) {
                let Some(pos) = ix.first(peer, proto, dst_port) else { return Outcome::Default(table.default) };
                let i = table.rules.start.saturating_add(pos);
                if let Some(r) = self.rules.get(i as usize) {
                    return Outcome::Rule(i, r.action);
                }
            }
        }
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

    /// Approximate heap bytes of the compiled table, its indexes included.
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
            + self.indexes.iter().map(DirIndex::bytes).sum::<usize>()
            + self.indexes.capacity() * std::mem::size_of::<DirIndex>()
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
                match t.lookup {
                    Lookup::Scan => {}
                    Lookup::Index(x) => {
                        if let Some(ix) = self.indexes.get(x as usize) {
                            let (addrs, ports) = ix.shape();
                            let _ = writeln!(
                                o,
                                "    index: {addrs} address intervals, {ports} port intervals, {} bytes",
                                ix.bytes()
                            );
                        }
                    }
                    Lookup::OverBudget(why) => {
                        let what = match why {
                            OverBudget::Bytes => "memory",
                            OverBudget::Work => "build work",
                        };
                        let _ = writeln!(o, "    linear scan: an index would pass its {what} budget");
                    }
                }
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
