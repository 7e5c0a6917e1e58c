//! The ACL rule sets of the benchmarks: N rules of the shape the policy
//! compiler emits (a peer CIDR, a protocol, a destination port range, allow
//! or deny, per pod and direction, default deny), written two ways from one
//! [`RuleSet`]: as weir's [`AclConfig`] (the node config's `[acl]`, or
//! tables built directly) and as OpenFlow rules for OVS-DPDK doing the
//! same classification.
//!
//! Layout of `n` rules for a [`Target`] (the flows a scenario sends):
//!
//! - the destination pod's ingress list holds what is left after the two
//!   shares below, its allowing rule **last**; when the flows go to a set
//!   of pods (the full scenarios' Service backends), every pod of the set
//!   holds that same list (a [`PodRules`] names a [`PodSet`]), so a flow
//!   meets the same rules whichever backend it gets, and weir's table
//!   holds the list once per pod while OVS matches the set with one
//!   masked rule per list entry;
//! - the source pod's egress list (when the source is a pod of this node)
//!   holds `n / 4`, its allowing rule last;
//! - `n / 4` rules are spread over [`OTHER_PODS`] other pods of the node
//!   (ingress, single ports, TCP and UDP mixed): they make the table as
//!   big as `n` says without being on the flows' path.
//!
//! Every rule before an allowing one has the flows' protocol and ports and
//! fails only on its peer (a /32 in 172.16.0.0/12, which no flow uses):
//! the most a non-matching rule costs weir's classifier (protocol compare,
//! port and address binary searches). A quarter of them are denies. So a
//! flow's first packet walks both lists to their end before it is allowed;
//! [`RuleSet::without_allow`] drops one allowing rule, after which the
//! flows fall through to the default and are denied.
//!
//! `n` is therefore the rules of one pod's view: the lists on a flow's
//! path plus the rules off it. With a set of `k` destination pods the
//! node's table holds `k` copies of the ingress list ([`RuleSet::len`]);
//! [`RuleSet::per_pod_len`] is `n`.

use std::net::Ipv4Addr;

use weir_dataplane::tables::acl::{
    self, AclConfig, Direction, DirectionConfig, PeerConfig, PodAclConfig, PortRange, RuleConfig, Verdict,
};
use weir_dataplane::tables::cidr::Ipv4Cidr;

/// The most rules a scenario may ask for: every list fits weir's limit per
/// pod and direction ([`acl::MAX_RULES_PER_DIRECTION`]) whatever the share.
pub const MAX_RULES: u32 = acl::MAX_RULES_PER_DIRECTION as u32;
/// Rules when none are asked for.
pub const DEFAULT_RULES: u32 = 1000;
/// Pods of the node that hold the rules off the flows' path: 10.1.0.16 on.
pub const OTHER_PODS: u32 = 8;
pub const OTHER_POD_BASE: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 16);
/// The peers of the non-matching rules: 172.16.0.0 + k, one /32 each.
pub const DECOY_PEER_BASE: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 0);

/// The flows a rule set is made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The flows' source, when it is a pod of this node: its egress list
    /// is checked. `None`: the source has no policy here (another node's pod).
    pub src_pod: Option<Ipv4Addr>,
    /// The flows' destinations as the classifier sees them (the backends,
    /// after DNAT): one pod (a /32) or a block of pods, each of which holds
    /// the same ingress list, which decides.
    pub dst_pods: PodSet,
    /// The sources the ingress allowing rule lets in (covers every flow's source).
    pub allow_from: Ipv4Cidr,
    /// The destinations the egress allowing rule lets out.
    pub allow_to: Ipv4Cidr,
    /// The flows' IP protocol and destination ports (after DNAT).
    pub proto: u8,
    pub ports: PortRange,
}

/// One rule, in the shape both weir and OpenFlow express directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub peer: Ipv4Cidr,
    pub proto: u8,
    pub ports: PortRange,
    pub action: Verdict,
}

/// One pod's rules in one direction, in evaluation order (their priority
/// is their position); or the same list held by every pod of a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRules {
    /// The pod, or the set of pods that each hold the list.
    pub pods: PodSet,
    pub name: String,
    pub direction: Direction,
    pub rules: Vec<Rule>,
    pub default: Verdict,
}

/// A scenario's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    pub target: Target,
    pub lists: Vec<PodRules>,
}

impl RuleSet {
    /// `n` rules (1..=[`MAX_RULES`]) laid out for `target` as the module doc says.
    pub fn new(n: u32, target: &Target) -> Result<RuleSet, String> {
        if !(1..=MAX_RULES).contains(&n) {
            return Err(format!("{n} ACL rules: want 1..={MAX_RULES}"));
        }
        let egress = if target.src_pod.is_some() { n / 4 } else { 0 };
        let others = n / 4;
        let ingress = n - egress - others;
        let mut decoy = 0u32;
        let mut next_decoy = || {
            let peer = Ipv4Cidr::host(Ipv4Addr::from(u32::from(DECOY_PEER_BASE) + decoy));
            decoy += 1;
            peer
        };
        let mut lists = Vec::new();
        // The lists on the flows' path: decoys, then the allowing rule.
        let mut path_list = |pods: PodSet, name: &str, d: Direction, count: u32, allow: Ipv4Cidr| {
            let mut rules: Vec<Rule> = (0..count.saturating_sub(1))
                .map(|k| Rule {
                    id: format!("bench:{d}/{k}"),
                    peer: next_decoy(),
                    proto: target.proto,
                    ports: target.ports,
                    action: if k % 4 == 3 { Verdict::Deny } else { Verdict::Allow },
                })
                .collect();
            rules.push(Rule {
                id: format!("bench:{d}/allow"),
                peer: allow,
                proto: target.proto,
                ports: target.ports,
                action: Verdict::Allow,
            });
            PodRules { pods, name: name.into(), direction: d, rules, default: Verdict::Deny }
        };
        lists.push(path_list(target.dst_pods, "bench/server", Direction::Ingress, ingress, target.allow_from));
        if let Some(src) = target.src_pod.filter(|_| egress > 0) {
            lists.push(path_list(PodSet::one(src), "bench/client", Direction::Egress, egress, target.allow_to));
        }
        // The rest, spread over the other pods: single ports, TCP and UDP.
        let per_pod = others.div_ceil(OTHER_PODS).max(1);
        for p in 0..OTHER_PODS {
            let count = others.saturating_sub(p * per_pod).min(per_pod);
            if count == 0 {
                break;
            }
            let pod = Ipv4Addr::from(u32::from(OTHER_POD_BASE) + p);
            let rules = (0..count)
                .map(|k| Rule {
                    id: format!("bench:other/{k}"),
                    peer: next_decoy(),
                    proto: if k % 2 == 0 { acl::PROTO_TCP } else { acl::PROTO_UDP },
                    ports: PortRange::single(1 + (k % 1000) as u16),
                    action: if k % 4 == 3 { Verdict::Deny } else { Verdict::Allow },
                })
                .collect();
            lists.push(PodRules {
                pods: PodSet::one(pod),
                name: format!("bench/other-{p}"),
                direction: Direction::Ingress,
                rules,
                default: Verdict::Deny,
            });
        }
        let set = RuleSet { target: target.clone(), lists };
        if set.len() > acl::MAX_RULES {
            return Err(format!(
                "{n} ACL rules on each of {} pods: {} in all, weir holds at most {}",
                target.dst_pods.len(),
                set.len(),
                acl::MAX_RULES
            ));
        }
        Ok(set)
    }

    /// Rules in the node's table: a block's list once per pod of it.
    pub fn len(&self) -> usize {
        self.lists.iter().map(|l| l.rules.len() * l.pods.len()).sum()
    }

    /// Rules as one pod of a block sees them: each list once (the `n` the
    /// set was made with).
    pub fn per_pod_len(&self) -> usize {
        self.lists.iter().map(|l| l.rules.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rules a flow's first packet is checked against before it is allowed
    /// (both lists on its path, each to its allowing rule, the last).
    pub fn on_path(&self) -> usize {
        let t = &self.target;
        self.lists
            .iter()
            .filter(|l| match l.direction {
                Direction::Ingress => l.pods == t.dst_pods,
                Direction::Egress => t.src_pod.map(PodSet::one) == Some(l.pods),
            })
            .map(|l| l.rules.len())
            .sum()
    }

    /// The same set less the allowing rule of direction `d` on the flows'
    /// path: its flows then meet that list's default (deny).
    pub fn without_allow(&self, d: Direction) -> RuleSet {
        let mut s = self.clone();
        let pods = match d {
            Direction::Ingress => Some(self.target.dst_pods),
            Direction::Egress => self.target.src_pod.map(PodSet::one),
        };
        for l in s.lists.iter_mut().filter(|l| Some(l.pods) == pods && l.direction == d) {
            l.rules.retain(|r| !r.id.ends_with("/allow"));
        }
        s
    }

    /// weir's form: one entry per pod, its directions (a block's list
    /// copied to each of its pods, named `NAME-I`).
    pub fn acl_config(&self) -> AclConfig {
        let mut pods: Vec<PodAclConfig> = Vec::new();
        for l in &self.lists {
            let dir = DirectionConfig {
                rules: l
                    .rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| RuleConfig {
                        id: r.id.clone(),
                        priority: i as u32,
                        peers: vec![PeerConfig { cidr: r.peer, except: Vec::new() }],
                        protocol: Some(r.proto),
                        ports: vec![r.ports],
                        action: r.action,
                    })
                    .collect(),
                default: l.default,
            };
            for (i, ip) in l.pods.addrs().enumerate() {
                let at = match pods.iter().position(|p| p.ip == ip) {
                    Some(at) => at,
                    None => {
                        let name = if l.pods.len() == 1 { l.name.clone() } else { format!("{}-{i}", l.name) };
                        pods.push(PodAclConfig { ip, name, ingress: None, egress: None });
                        pods.len() - 1
                    }
                };
                match l.direction {
                    Direction::Ingress => pods[at].ingress = Some(dir.clone()),
                    Direction::Egress => pods[at].egress = Some(dir.clone()),
                }
            }
        }
        AclConfig { pods }
    }

    /// The node config's `[acl]` section (TOML, `[[acl.pods]]` tables).
    pub fn toml(&self) -> Result<String, String> {
        #[derive(serde::Serialize)]
        struct Section<'a> {
            acl: &'a AclConfig,
        }
        toml::to_string(&Section { acl: &self.acl_config() }).map_err(|e| format!("ACL config as TOML: {e}"))
    }

    /// The same classification as OpenFlow rules: egress lists in table
    /// `egress` (allow: on to table `ingress`; a pod's default at priority
    /// 10; no policy: priority 0, on to `ingress`), ingress lists in table
    /// `ingress` (allow: `allowed`, the actions of an allowed packet). A
    /// rule's priority falls with its position, so the first matching rule
    /// of a list wins as in weir; rules of different lists never overlap
    /// (each names its pod's address, or its block of pods: one OpenFlow
    /// rule serves every pod of a block, as they hold the same list).
    pub fn openflow(&self, egress: u8, ingress: u8, allowed: &str) -> Vec<String> {
        let mut f = Vec::new();
        for l in &self.lists {
            let (table, own, peer, allow) = match l.direction {
                Direction::Egress => (egress, "nw_src", "nw_dst", format!("resubmit(,{ingress})")),
                Direction::Ingress => (ingress, "nw_dst", "nw_src", allowed.to_string()),
            };
            for (i, r) in l.rules.iter().enumerate() {
                let act = match r.action {
                    Verdict::Allow => allow.as_str(),
                    Verdict::Deny => "drop",
                };
                for (v, m) in port_masks(r.ports.from, r.ports.to) {
                    let tp = if m == u16::MAX { format!("{v}") } else { format!("{v:#06x}/{m:#06x}") };
                    f.push(format!(
                        "table={table},priority={},{},{own}={},{peer}={},tp_dst={tp},actions={act}",
                        RULE_PRIORITY_TOP - i as u32,
                        proto_keyword(r.proto),
                        l.pods.openflow(),
                        r.peer
                    ));
                }
            }
            let default = match l.default {
                Verdict::Deny => "drop".to_string(),
                Verdict::Allow => allow,
            };
            f.push(format!("table={table},priority=10,ip,{own}={},actions={default}", l.pods.openflow()));
        }
        // `ip`: the allowed actions may need it (dec_ttl, ct).
        f.push(format!("table={egress},priority=0,ip,actions=resubmit(,{ingress})"));
        f.push(format!("table={ingress},priority=0,ip,actions={allowed}"));
        f
    }
}

/// Pods that hold one list: `count` addresses from `first`, `stride`
/// apart (both powers of two, the bits they vary clear in `first`), so
/// that OpenFlow matches them all with one masked address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodSet {
    first: Ipv4Addr,
    count: u32,
    stride: u32,
}

impl PodSet {
    /// One pod.
    pub fn one(pod: Ipv4Addr) -> PodSet {
        PodSet { first: pod, count: 1, stride: 1 }
    }

    /// `count` pods from `first`, `stride` apart; at most 65536, and the
    /// address bits they vary must be clear in `first`.
    pub fn new(first: Ipv4Addr, count: u32, stride: u32) -> Result<PodSet, String> {
        if !count.is_power_of_two() || !stride.is_power_of_two() || count > 1 << 16 {
            return Err(format!("{count} pods {stride} apart: want powers of two, at most 65536 pods"));
        }
        let varying = u64::from(count - 1) * u64::from(stride);
        if varying > u64::from(u32::MAX) || u32::from(first) & varying as u32 != 0 {
            return Err(format!("{count} pods {stride} apart from {first}: the bits they vary are set in it"));
        }
        Ok(PodSet { first, count, stride })
    }

    /// How many pods.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The pods, in order.
    pub fn addrs(&self) -> impl Iterator<Item = Ipv4Addr> {
        let (first, stride) = (u32::from(self.first), self.stride);
        (0..self.count).map(move |i| Ipv4Addr::from(first + i * stride))
    }

    /// The address bits the pods share.
    fn mask(&self) -> u32 {
        !((self.count - 1) * self.stride)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.first)
    }

    /// As OpenFlow matches it: the address for one pod, else the first
    /// with a dotted mask of the bits the pods share.
    pub fn openflow(&self) -> String {
        match self.count {
            1 => self.first.to_string(),
            _ => format!("{}/{}", self.first, Ipv4Addr::from(self.mask())),
        }
    }
}

impl std::fmt::Display for PodSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.count {
            1 => write!(f, "{}", self.first),
            n => write!(f, "{n} pods from {}, {} apart", self.first, self.stride),
        }
    }
}

/// OpenFlow priority of a list's first rule; the others count down.
pub const RULE_PRIORITY_TOP: u32 = 40_000;

/// `udp`, `tcp`, `sctp` (what ovs-ofctl calls a protocol with ports).
fn proto_keyword(p: u8) -> &'static str {
    match p {
        acl::PROTO_TCP => "tcp",
        acl::PROTO_SCTP => "sctp",
        _ => "udp",
    }
}

/// The fewest (value, mask) pairs that cover the ports `from..=to` exactly
/// (OpenFlow matches ports by mask, not by range).
pub fn port_masks(from: u16, to: u16) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let (mut s, e) = (u32::from(from), u32::from(to));
    while s <= e {
        // The largest aligned block at `s` that does not pass `e`.
        let mut size: u32 = if s == 0 { 1 << 16 } else { 1 << s.trailing_zeros().min(16) };
        while s + size - 1 > e {
            size >>= 1;
        }
        out.push((s as u16, !(size - 1) as u16));
        s += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_dataplane::tables::acl::AclTable;

    fn target(src: bool) -> Target {
        Target {
            src_pod: src.then_some(Ipv4Addr::new(10, 1, 0, 2)),
            dst_pods: PodSet::one(Ipv4Addr::new(10, 1, 0, 3)),
            allow_from: "10.1.0.0/24".parse().unwrap(),
            allow_to: "10.1.0.0/24".parse().unwrap(),
            proto: acl::PROTO_UDP,
            ports: PortRange { from: 8080, to: 8095 },
        }
    }

    #[test]
    fn counts_and_shares() {
        for (n, src) in [(1, true), (2, true), (4, true), (7, false), (1000, true), (1000, false), (MAX_RULES, true)] {
            let s = RuleSet::new(n, &target(src)).unwrap();
            assert_eq!(s.len(), n as usize, "{n}");
            let ingress = &s.lists[0];
            assert_eq!(
                (ingress.pods, ingress.direction),
                (PodSet::one(Ipv4Addr::new(10, 1, 0, 3)), Direction::Ingress)
            );
            assert_eq!(s.per_pod_len(), n as usize, "{n}");
            assert_eq!(ingress.rules.last().unwrap().action, Verdict::Allow);
            assert!(ingress.rules.len() <= acl::MAX_RULES_PER_DIRECTION);
            let egress = s.lists.iter().filter(|l| l.direction == Direction::Egress).count();
            assert_eq!(egress, usize::from(src && n >= 4), "{n}");
            // The config builds, in weir's limits, and round-trips through TOML.
            let cfg = s.acl_config();
            let t = AclTable::build(&cfg, &[]).unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(t.len(), n as usize);
            #[derive(serde::Deserialize)]
            struct Back {
                acl: AclConfig,
            }
            let back: Back = toml::from_str(&s.toml().unwrap()).unwrap();
            assert_eq!(back.acl, cfg);
        }
        let s = RuleSet::new(1000, &target(true)).unwrap();
        assert_eq!(s.on_path(), 750, "ingress 500 + egress 250");
        assert!(RuleSet::new(0, &target(true)).is_err());
        assert!(RuleSet::new(MAX_RULES + 1, &target(true)).is_err());
    }

    /// weir's classifier: the flows are allowed by the last rule of each
    /// list, every decoy is tried first; without an allowing rule they are
    /// denied by that direction's default.
    #[test]
    fn flows_decided_deep_in_the_lists() {
        let s = RuleSet::new(1000, &target(true)).unwrap();
        let t = AclTable::build(&s.acl_config(), &[]).unwrap();
        let (a, b) = (Ipv4Addr::new(10, 1, 0, 2), Ipv4Addr::new(10, 1, 0, 3));
        let d = t.classify(a, b, acl::PROTO_UDP, 1024, 8080);
        assert_eq!(d.verdict, Verdict::Allow);
        let rule = t.rule(d.rule.unwrap()).unwrap();
        assert_eq!((rule.id, rule.direction, rule.pod), ("bench:ingress/allow", Direction::Ingress, b));
        assert_eq!(t.classify(a, b, acl::PROTO_UDP, 1024, 8095).verdict, Verdict::Allow);
        // Another port or protocol: no rule of the list matches, the default denies.
        let off = t.classify(a, b, acl::PROTO_UDP, 1024, 8096);
        assert_eq!((off.verdict, off.rule, off.direction), (Verdict::Deny, None, Some(Direction::Egress)));
        assert_eq!(t.classify(a, b, acl::PROTO_TCP, 1024, 8080).verdict, Verdict::Deny);
        // A decoy peer is decided by its own rule.
        let decoy = t.classify(Ipv4Addr::new(172, 16, 0, 3), b, acl::PROTO_UDP, 1, 8080);
        assert_eq!((decoy.verdict, t.rule(decoy.rule.unwrap()).unwrap().id), (Verdict::Deny, "bench:ingress/3"));
        for (d, why) in [(Direction::Ingress, Direction::Ingress), (Direction::Egress, Direction::Egress)] {
            let t = AclTable::build(&s.without_allow(d).acl_config(), &[]).unwrap();
            let x = t.classify(a, b, acl::PROTO_UDP, 1024, 8080);
            assert_eq!((x.verdict, x.rule, x.direction), (Verdict::Deny, None, Some(why)), "{d}");
        }
    }

    /// A set of destination pods: each holds the same ingress list, the
    /// table holds it once per pod, a flow to any of them is decided by
    /// that pod's allowing rule after the same decoys, and OpenFlow
    /// matches the set with one masked rule per list entry.
    #[test]
    fn a_set_of_pods_holds_one_list_each() {
        let set = PodSet::new(Ipv4Addr::new(10, 3, 0, 5), 64, 256).unwrap();
        assert_eq!(set.openflow(), "10.3.0.5/255.255.192.255");
        assert!(set.contains(Ipv4Addr::new(10, 3, 63, 5)) && !set.contains(Ipv4Addr::new(10, 3, 64, 5)));
        assert!(!set.contains(Ipv4Addr::new(10, 3, 1, 6)));
        assert_eq!(set.addrs().collect::<Vec<_>>()[..2], [Ipv4Addr::new(10, 3, 0, 5), Ipv4Addr::new(10, 3, 1, 5)]);
        let t = Target { dst_pods: set, ..target(false) };
        let s = RuleSet::new(1000, &t).unwrap();
        assert_eq!((s.per_pod_len(), s.on_path()), (1000, 750));
        assert_eq!(s.len(), 64 * 750 + 250);
        let cfg = s.acl_config();
        let backends: Vec<&PodAclConfig> = cfg.pods.iter().filter(|p| set.contains(p.ip)).collect();
        assert_eq!(backends.len(), 64);
        assert_eq!((backends[5].ip, backends[5].name.as_str()), (Ipv4Addr::new(10, 3, 5, 5), "bench/server-5"));
        assert!(backends.iter().all(|p| p.ingress == backends[0].ingress && p.egress.is_none()));
        let table = AclTable::build(&cfg, &[]).unwrap();
        assert_eq!(table.len(), s.len());
        for dst in set.addrs().step_by(9) {
            let d = table.classify(Ipv4Addr::new(10, 1, 0, 9), dst, acl::PROTO_UDP, 1024, 8080);
            let rule = table.rule(d.rule.unwrap()).unwrap();
            assert_eq!((d.verdict, rule.id, rule.pod), (Verdict::Allow, "bench:ingress/allow", dst));
        }
        // Next to the set: no list speaks for it.
        let d = table.classify(Ipv4Addr::new(10, 1, 0, 9), Ipv4Addr::new(10, 3, 0, 6), acl::PROTO_UDP, 1, 8080);
        assert_eq!((d.verdict, d.rule), (Verdict::Allow, None));
        let of = s.openflow(2, 3, "output:9");
        assert_eq!(of.iter().filter(|l| l.contains("nw_dst=10.3.0.5/255.255.192.255,")).count(), 750 + 1);
        assert!(of.iter().any(|l| l.contains("priority=10,ip,nw_dst=10.3.0.5/255.255.192.255,actions=drop")));
        // Without the allowing rule: gone from every pod's copy.
        let denied = AclTable::build(&s.without_allow(Direction::Ingress).acl_config(), &[]).unwrap();
        assert_eq!(denied.len(), 64 * 749 + 250);
        // The most rules fit weir's table on 64 pods; more pods do not.
        let max = RuleSet::new(MAX_RULES, &t).unwrap();
        assert_eq!(AclTable::build(&max.acl_config(), &[]).unwrap().len(), 64 * 12_288 + 4096);
        let wide = Target { dst_pods: PodSet::new(Ipv4Addr::new(10, 3, 0, 0), 256, 1).unwrap(), ..t };
        assert!(RuleSet::new(MAX_RULES, &wide).unwrap_err().contains("in all"));
        // Sets OpenFlow cannot mask are refused.
        assert!(PodSet::new(Ipv4Addr::new(10, 3, 0, 5), 48, 256).is_err());
        assert!(PodSet::new(Ipv4Addr::new(10, 3, 1, 5), 64, 256).is_err());
        assert!(PodSet::new(Ipv4Addr::new(10, 3, 0, 5), 64, 100).is_err());
        assert!(PodSet::new(Ipv4Addr::new(0, 0, 0, 0), 1 << 17, 1).is_err());
    }

    #[test]
    fn port_masks_cover_exactly() {
        for (from, to) in [(8080, 8080), (8080, 8095), (8080, 8303), (0, 65535), (1, 1000), (65535, 65535)] {
            let m = port_masks(from, to);
            for p in 0..=u16::MAX {
                let hit = m.iter().filter(|(v, mask)| p & mask == *v).count();
                assert_eq!(hit, usize::from((from..=to).contains(&p)), "{from}-{to} port {p}: {m:?}");
            }
        }
        assert_eq!(port_masks(8080, 8095), vec![(8080, 0xfff0)]);
        assert_eq!(port_masks(0, 65535), vec![(0, 0)]);
    }
}
