//! The policy compiler: Kubernetes NetworkPolicy (networking.k8s.io/v1) and the
//! Contiv model (networks, endpoint groups, policies of ordered rules) in,
//! the dataplane's [`AclConfig`] out: per pod, an ordered list of allow / deny
//! rules over addresses, protocols and destination ports, and a default, for
//! each direction. `docs/policy.md` describes the semantics and the order.
//!
//! It is a pure function of the objects it is given ([`compile`]): selectors,
//! namespaces and named ports are resolved here, so the dataplane only ever
//! sees addresses and numbers. Objects the API server would have refused (a
//! bad selector operator, a peer with nothing in it, an unparsable CIDR) do
//! not stop the compile: the part that is wrong matches nothing, so a
//! NetworkPolicy can only allow less than it meant, and a warning says what
//! was skipped. The Contiv model comes from weir's own files and is refused
//! whole when it is inconsistent ([`ContivModel::validate`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};
use weir_dataplane::tables::acl::{
    self, AclConfig, DirectionConfig, PeerConfig, PodAclConfig, PortRange, RuleConfig, Verdict, PROTO_ICMP, PROTO_SCTP,
    PROTO_TCP, PROTO_UDP,
};
use weir_dataplane::tables::cidr::Ipv4Cidr;

/// A pod's Contiv endpoint group.
pub const GROUP_LABEL: &str = "io.contiv.net-group";
/// A pod's Contiv network.
pub const NETWORK_LABEL: &str = "io.contiv.network";
/// Set by the API server on every namespace; added here when a namespace
/// object (from a cluster file) lacks it.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Contiv rule priorities are 0..=CONTIV_MAX_PRIORITY; a higher number is
/// tried first, as in Contiv.
pub const CONTIV_MAX_PRIORITY: u32 = 65_535;
/// The dataplane priority of every NetworkPolicy allow rule: after all the
/// Contiv rules (which take 0..=CONTIV_MAX_PRIORITY).
pub const NP_PRIORITY: u32 = 100_000;

/// The dataplane priority (lower first) of a Contiv priority (higher first).
pub fn contiv_rank(priority: u32) -> u32 {
    CONTIV_MAX_PRIORITY.saturating_sub(priority)
}

/// Everything the compiler reads.
#[derive(Debug, Clone, Copy)]
pub struct PolicyInput<'a> {
    pub pods: &'a [Pod],
    pub namespaces: &'a [Namespace],
    pub network_policies: &'a [NetworkPolicy],
    pub contiv: &'a ContivModel,
    /// Compile rules only for the pods with these addresses (the node's own
    /// pods); `None`: for every pod. Peers are always every pod.
    pub node_pods: Option<&'a [Ipv4Addr]>,
}

/// What [`compile`] gives back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompiledPolicy {
    pub acl: AclConfig,
    /// Parts of objects that were skipped, and why.
    pub warnings: Vec<String>,
}

// ---------------------------------------------------------------- Contiv model

/// The Contiv model: networks, endpoint groups and their policies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContivModel {
    #[serde(default)]
    pub networks: Vec<ContivNetwork>,
    #[serde(default)]
    pub groups: Vec<EndpointGroup>,
    #[serde(default)]
    pub policies: Vec<ContivPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContivNetwork {
    pub name: String,
    pub subnet: Ipv4Cidr,
    pub gateway: Ipv4Addr,
    pub vni: u32,
}

/// Pods labelled `io.contiv.net-group: <name>`, in `network`, guarded by
/// `policies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointGroup {
    pub name: String,
    pub network: String,
    #[serde(default)]
    pub policies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContivPolicy {
    pub name: String,
    #[serde(default)]
    pub rules: Vec<ContivRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleDirection {
    /// Traffic to the group's pods (`from*` names the source).
    In,
    /// Traffic from the group's pods (`to*` names the destination).
    Out,
}

/// One Contiv rule. A side left empty means any address; `fromGroup` with
/// `fromIp` means the group's pods inside that prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContivRule {
    pub id: u32,
    pub direction: RuleDirection,
    /// Higher first (as Contiv); Contiv's default is 1.
    #[serde(default = "default_priority")]
    pub priority: u32,
    #[serde(default)]
    pub from_group: Option<String>,
    #[serde(default)]
    pub to_group: Option<String>,
    #[serde(default)]
    pub from_network: Option<String>,
    #[serde(default)]
    pub to_network: Option<String>,
    /// An address or a prefix.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub from_ip: Option<IpOrCidr>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub to_ip: Option<IpOrCidr>,
    /// `tcp`, `udp`, `icmp` or a protocol number; `None`: any protocol.
    #[serde(default)]
    #[schemars(with = "Option<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>")]
    pub protocol: Option<ContivProtocol>,
    /// Destination port; `None` or 0: any port.
    #[serde(default)]
    pub port: Option<u16>,
    /// `allow` or `deny`.
    #[schemars(with = "String")]
    pub action: Verdict,
}

fn default_priority() -> u32 {
    1
}

/// `tcp`, `udp`, `icmp` or an IP protocol number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContivProtocol {
    Tcp,
    Udp,
    Icmp,
    Number(u8),
}

impl ContivProtocol {
    pub fn number(self) -> u8 {
        match self {
            ContivProtocol::Tcp => PROTO_TCP,
            ContivProtocol::Udp => PROTO_UDP,
            ContivProtocol::Icmp => PROTO_ICMP,
            ContivProtocol::Number(n) => n,
        }
    }
}

impl Serialize for ContivProtocol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ContivProtocol::Tcp => s.serialize_str("tcp"),
            ContivProtocol::Udp => s.serialize_str("udp"),
            ContivProtocol::Icmp => s.serialize_str("icmp"),
            ContivProtocol::Number(n) => s.serialize_u8(*n),
        }
    }
}

impl<'de> Deserialize<'de> for ContivProtocol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u8),
            Name(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(PROTO_TCP) => Ok(ContivProtocol::Tcp),
            Raw::Number(PROTO_UDP) => Ok(ContivProtocol::Udp),
            Raw::Number(PROTO_ICMP) => Ok(ContivProtocol::Icmp),
            Raw::Number(n) => Ok(ContivProtocol::Number(n)),
            Raw::Name(s) => match s.to_ascii_lowercase().as_str() {
                "tcp" => Ok(ContivProtocol::Tcp),
                "udp" => Ok(ContivProtocol::Udp),
                "icmp" => Ok(ContivProtocol::Icmp),
                _ => Err(serde::de::Error::custom(format!(
                    "{s:?} is not a protocol (want tcp, udp, icmp or a number 0-255)"
                ))),
            },
        }
    }
}

/// An address (`10.1.1.5`, taken as /32) or a prefix (`10.1.1.0/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpOrCidr(pub Ipv4Cidr);

impl Serialize for IpOrCidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.len() == 32 {
            s.collect_str(&self.0.addr())
        } else {
            s.collect_str(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for IpOrCidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.contains('/') {
            s.parse().map(IpOrCidr).map_err(serde::de::Error::custom)
        } else {
            s.parse::<Ipv4Addr>()
                .map(|a| IpOrCidr(Ipv4Cidr::host(a)))
                .map_err(|_| serde::de::Error::custom(format!("{s:?} is not an IPv4 address or prefix")))
        }
    }
}

impl ContivModel {
    /// Refuses a model whose references do not resolve or whose rules
    /// cannot mean anything; the message names the object.
    pub fn validate(&self) -> Result<(), String> {
        let mut networks = HashSet::new();
        for n in &self.networks {
            if !networks.insert(n.name.as_str()) {
                return Err(format!("contiv network {:?} defined twice", n.name));
            }
        }
        let mut policies = HashSet::new();
        for p in &self.policies {
            if !policies.insert(p.name.as_str()) {
                return Err(format!("contiv policy {:?} defined twice", p.name));
            }
        }
        let mut groups = HashSet::new();
        for g in &self.groups {
            if !groups.insert(g.name.as_str()) {
                return Err(format!("contiv group {:?} defined twice", g.name));
            }
            if !networks.contains(g.network.as_str()) {
                return Err(format!("contiv group {:?}: network {:?} does not exist", g.name, g.network));
            }
            for p in &g.policies {
                if !policies.contains(p.as_str()) {
                    return Err(format!("contiv group {:?}: policy {p:?} does not exist", g.name));
                }
            }
        }
        for p in &self.policies {
            let mut ids = HashSet::new();
            for r in &p.rules {
                let at = format!("contiv policy {:?} rule {}", p.name, r.id);
                if !ids.insert(r.id) {
                    return Err(format!("{at}: rule id used twice"));
                }
                if r.priority > CONTIV_MAX_PRIORITY {
                    return Err(format!("{at}: priority {} is over {CONTIV_MAX_PRIORITY}", r.priority));
                }
                let (group, network, ip, wrong_side) = match r.direction {
                    RuleDirection::In => (
                        &r.from_group,
                        &r.from_network,
                        &r.from_ip,
                        r.to_group.is_some() || r.to_network.is_some() || r.to_ip.is_some(),
                    ),
                    RuleDirection::Out => (
                        &r.to_group,
                        &r.to_network,
                        &r.to_ip,
                        r.from_group.is_some() || r.from_network.is_some() || r.from_ip.is_some(),
                    ),
                };
                if wrong_side {
                    let (d, side) = match r.direction {
                        RuleDirection::In => ("in", "to"),
                        RuleDirection::Out => ("out", "from"),
                    };
                    return Err(format!("{at}: an {d} rule cannot name a {side} group, network or IP"));
                }
                if network.is_some() && (group.is_some() || ip.is_some()) {
                    return Err(format!("{at}: a network cannot be combined with a group or an IP"));
                }
                if let Some(g) = group {
                    if !groups.contains(g.as_str()) {
                        return Err(format!("{at}: group {g:?} does not exist"));
                    }
                }
                if let Some(n) = network {
                    if !networks.contains(n.as_str()) {
                        return Err(format!("{at}: network {n:?} does not exist"));
                    }
                }
                if let (Some(proto), Some(port)) = (r.protocol, r.port) {
                    if port != 0 && !acl::has_ports(proto.number()) {
                        return Err(format!(
                            "{at}: port {port} given for protocol {}, which has none",
                            acl::proto_name(proto.number())
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

// ------------------------------------------------------------------ compiler

/// One pod as the compiler sees it.
struct PodView<'a> {
    ns: &'a str,
    /// `namespace/name`.
    key: String,
    ip: Ipv4Addr,
    labels: &'a BTreeMap<String, String>,
    /// Named container ports: (name, protocol, port).
    named_ports: Vec<(&'a str, u8, u16)>,
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

fn pod_ipv4(pod: &Pod) -> Option<Ipv4Addr> {
    let status = pod.status.as_ref()?;
    let from_list = status.pod_ips.iter().flatten().find_map(|p| p.ip.parse::<Ipv4Addr>().ok());
    from_list.or_else(|| status.pod_ip.as_deref().and_then(|ip| ip.parse().ok()))
}

fn k8s_protocol(p: Option<&str>) -> Option<u8> {
    match p.unwrap_or("TCP") {
        "TCP" => Some(PROTO_TCP),
        "UDP" => Some(PROTO_UDP),
        "SCTP" => Some(PROTO_SCTP),
        _ => None,
    }
}

/// The pods policy can apply to, sorted by namespace and name: running or
/// pending pods with an IPv4 address, not on the host network. A second pod
/// with an address already taken is skipped.
fn pod_views<'a>(pods: &'a [Pod], warnings: &mut Vec<String>) -> Vec<PodView<'a>> {
    let mut out = Vec::new();
    for pod in pods {
        let meta = &pod.metadata;
        let ns = meta.namespace.as_deref().unwrap_or("default");
        let name = meta.name.as_deref().unwrap_or("");
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
            continue;
        }
        let Some(ip) = pod_ipv4(pod) else { continue };
        let mut named_ports = Vec::new();
        if let Some(spec) = &pod.spec {
            for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
                for p in c.ports.iter().flatten() {
                    let (Some(n), Some(proto), Ok(port)) =
                        (p.name.as_deref(), k8s_protocol(p.protocol.as_deref()), u16::try_from(p.container_port))
                    else {
                        continue;
                    };
                    named_ports.push((n, proto, port));
                }
            }
        }
        out.push(PodView {
            ns,
            key: format!("{ns}/{name}"),
            ip,
            labels: meta.labels.as_ref().unwrap_or(&NO_LABELS),
            named_ports,
        });
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    let mut seen: HashMap<Ipv4Addr, String> = HashMap::new();
    out.retain(|p| match seen.get(&p.ip) {
        Some(first) => {
            warnings.push(format!("pod {}: address {} is also pod {first}'s; skipped", p.key, p.ip));
            false
        }
        None => {
            seen.insert(p.ip, p.key.clone());
            true
        }
    });
    out
}

/// A label selector, checked once.
enum Selector<'a> {
    All,
    Labels(&'a LabelSelector),
    /// Invalid: matches nothing.
    Nothing,
}

impl<'a> Selector<'a> {
    fn new(sel: Option<&'a LabelSelector>, ctx: &dyn fmt::Display, warnings: &mut Vec<String>) -> Self {
        let Some(sel) = sel else { return Selector::All };
        for r in sel.match_expressions.iter().flatten() {
            let values = r.values.as_deref().unwrap_or(&[]);
            let problem = match r.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => Some("needs values"),
                "Exists" | "DoesNotExist" if !values.is_empty() => Some("takes no values"),
                "In" | "NotIn" | "Exists" | "DoesNotExist" => None,
                _ => Some("is not an operator (In, NotIn, Exists, DoesNotExist)"),
            };
            if let Some(p) = problem {
                warnings.push(format!("{ctx}: selector on {:?}: {:?} {p}; it matches nothing", r.key, r.operator));
                return Selector::Nothing;
            }
        }
        Selector::Labels(sel)
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let sel = match self {
            Selector::All => return true,
            Selector::Nothing => return false,
            Selector::Labels(s) => s,
        };
        let labels_ok = sel.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
        labels_ok
            && sel.match_expressions.iter().flatten().all(|r| {
                let values = r.values.as_deref().unwrap_or(&[]);
                let have = labels.get(&r.key);
                match r.operator.as_str() {
                    "In" => have.is_some_and(|v| values.contains(v)),
                    "NotIn" => have.is_none_or(|v| !values.contains(v)),
                    "Exists" => have.is_some(),
                    "DoesNotExist" => have.is_none(),
                    _ => false,
                }
            })
    }
}

/// A lenient IPv4 prefix parse (host bits are cleared, as the API server
/// accepts them); `Ok(None)` for an IPv6 prefix, which no IPv4 packet matches.
fn parse_block(s: &str) -> Result<Option<Ipv4Cidr>, String> {
    if s.contains(':') {
        return Ok(None);
    }
    let (a, l) = s.split_once('/').ok_or_else(|| format!("{s:?} is not a CIDR"))?;
    let addr: Ipv4Addr = a.parse().map_err(|_| format!("{s:?} is not a CIDR"))?;
    let len: u8 = l.parse().map_err(|_| format!("{s:?} is not a CIDR"))?;
    Ipv4Cidr::new(addr, len).map(Some).ok_or_else(|| format!("{s:?} is not a CIDR"))
}

/// The CIDRs covering a set of addresses exactly (adjacent pods merge).
fn host_cidrs(ips: impl IntoIterator<Item = Ipv4Addr>) -> Vec<PeerConfig> {
    let mut v: Vec<u32> = ips.into_iter().map(u32::from).collect();
    v.sort_unstable();
    v.dedup();
    let mut out = Vec::new();
    let mut cidrs = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        acl::range_cidrs(v[i], v[j], &mut cidrs);
        i = j + 1;
    }
    for c in cidrs {
        out.push(PeerConfig { cidr: c, except: vec![] });
    }
    out
}

/// The other side of a rule.
struct Peers {
    /// No restriction (an empty `from` / `to`, a Contiv rule naming nothing).
    any: bool,
    /// Address blocks (ipBlocks, Contiv networks and IPs).
    blocks: Vec<PeerConfig>,
    /// Pods (indices into the pod views).
    pods: Vec<usize>,
}

impl Peers {
    fn any() -> Self {
        Peers { any: true, blocks: vec![], pods: vec![] }
    }

    /// `None`: matches nothing, so the rule is left out.
    fn configs(&self, pods: &[PodView]) -> Option<Vec<PeerConfig>> {
        if self.any {
            return Some(vec![]);
        }
        let mut v = self.blocks.clone();
        v.extend(host_cidrs(self.pods.iter().map(|&i| pods[i].ip)));
        (!v.is_empty()).then_some(v)
    }
}

/// One entry of a NetworkPolicy rule's `ports`.
enum PortSel {
    All,
    Range(u16, u16),
    Named(String),
}

fn port_spec(p: &NetworkPolicyPort, ctx: &dyn fmt::Display, warnings: &mut Vec<String>) -> Option<(u8, PortSel)> {
    let Some(proto) = k8s_protocol(p.protocol.as_deref()) else {
        warnings.push(format!("{ctx}: protocol {:?} is not TCP, UDP or SCTP; skipped", p.protocol));
        return None;
    };
    let sel = match (&p.port, p.end_port) {
        (None, None) => PortSel::All,
        (Some(IntOrString::Int(n)), end) => {
            let end = end.unwrap_or(*n);
            match (u16::try_from(*n), u16::try_from(end)) {
                (Ok(from), Ok(to)) if from >= 1 && from <= to => PortSel::Range(from, to),
                _ => {
                    warnings.push(format!("{ctx}: port {n} to endPort {end} is not a port range; skipped"));
                    return None;
                }
            }
        }
        (Some(IntOrString::String(name)), None) => PortSel::Named(name.clone()),
        _ => {
            warnings.push(format!("{ctx}: endPort needs a numeric port; skipped"));
            return None;
        }
    };
    Some((proto, sel))
}

/// Per protocol: `None` is every port, else the port ranges.
type ProtoPorts = BTreeMap<u8, Option<Vec<PortRange>>>;

fn add_ports(m: &mut ProtoPorts, proto: u8, range: Option<PortRange>) {
    let e = m.entry(proto).or_insert_with(|| Some(vec![]));
    match (e.as_mut(), range) {
        (Some(v), Some(r)) => v.push(r),
        (_, None) => *e = None,
        (None, Some(_)) => {}
    }
}

fn named_port(pod: &PodView, name: &str, proto: u8) -> Option<u16> {
    pod.named_ports.iter().find(|(n, p, _)| *n == name && *p == proto).map(|(_, _, port)| *port)
}

/// Appends one allow rule per protocol of `ports`.
fn emit_by_proto(base: &str, peers: &[PeerConfig], ports: &ProtoPorts, out: &mut Vec<RuleConfig>) {
    for (proto, ranges) in ports {
        out.push(RuleConfig {
            id: format!("{base}/{}", acl::proto_name(*proto)),
            priority: NP_PRIORITY,
            peers: peers.to_vec(),
            protocol: Some(*proto),
            ports: ranges.clone().unwrap_or_default(),
            action: Verdict::Allow,
        });
    }
}

#[derive(Default)]
struct PodRules {
    ingress_isolated: bool,
    egress_isolated: bool,
    contiv_ingress: Vec<RuleConfig>,
    contiv_egress: Vec<RuleConfig>,
    np_ingress: Vec<RuleConfig>,
    np_egress: Vec<RuleConfig>,
}

struct Compiler<'a> {
    pods: Vec<PodView<'a>>,
    /// Namespace name → labels (with the name label).
    ns_labels: HashMap<&'a str, BTreeMap<String, String>>,
    warnings: Vec<String>,
}

impl<'a> Compiler<'a> {
    fn namespace_labels(&self, ns: &str) -> BTreeMap<String, String> {
        self.ns_labels
            .get(ns)
            .cloned()
            .unwrap_or_else(|| BTreeMap::from([(NAMESPACE_NAME_LABEL.to_string(), ns.to_string())]))
    }

    /// The peers of one NetworkPolicy rule (`from` or `to`).
    fn np_peers(&mut self, list: Option<&'a [NetworkPolicyPeer]>, policy_ns: &str, ctx: &str) -> Peers {
        let list = list.unwrap_or(&[]);
        if list.is_empty() {
            return Peers::any();
        }
        let mut peers = Peers { any: false, blocks: vec![], pods: vec![] };
        for (i, peer) in list.iter().enumerate() {
            let at = format!("{ctx} peer {i}");
            match (&peer.ip_block, &peer.pod_selector, &peer.namespace_selector) {
                (Some(b), None, None) => self.ip_block(b, &at, &mut peers),
                (None, ps, nss) if ps.is_some() || nss.is_some() => {
                    let pod_sel = Selector::new(ps.as_ref(), &at, &mut self.warnings);
                    let ns_sel = nss.as_ref().map(|s| Selector::new(Some(s), &at, &mut self.warnings));
                    let mut ns_cache: HashMap<&str, bool> = HashMap::new();
                    for (pi, pod) in self.pods.iter().enumerate() {
                        let ns_ok = match &ns_sel {
                            None => pod.ns == policy_ns,
                            Some(sel) => {
                                *ns_cache.entry(pod.ns).or_insert_with(|| sel.matches(&self.namespace_labels(pod.ns)))
                            }
                        };
                        if ns_ok && pod_sel.matches(pod.labels) {
                            peers.pods.push(pi);
                        }
                    }
                }
                _ => self.warnings.push(format!(
                    "{at}: a peer is either an ipBlock or pod / namespace selectors; it matches nothing"
                )),
            }
        }
        peers.pods.sort_unstable();
        peers.pods.dedup();
        peers
    }

    fn ip_block(&mut self, b: &k8s_openapi::api::networking::v1::IPBlock, at: &str, peers: &mut Peers) {
        let cidr = match parse_block(&b.cidr) {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => {
                self.warnings.push(format!("{at}: ipBlock {e}; it matches nothing"));
                return;
            }
        };
        let mut except = Vec::new();
        for x in b.except.iter().flatten() {
            match parse_block(x) {
                Ok(Some(x)) if x.len() <= cidr.len() && x.contains(cidr.addr()) => return, // all of it
                Ok(Some(x)) if cidr.contains(x.addr()) => except.push(x),
                Ok(_) => {} // outside the block (or IPv6): excludes nothing
                Err(e) => {
                    self.warnings.push(format!("{at}: ipBlock except {e}; the block matches nothing"));
                    return;
                }
            }
        }
        peers.blocks.push(PeerConfig { cidr, except });
    }

    fn network_policy(&mut self, np: &'a NetworkPolicy, targets_filter: &dyn Fn(usize) -> bool, acc: &mut PerPod) {
        let ns = np.metadata.namespace.as_deref().unwrap_or("default");
        let name = np.metadata.name.as_deref().unwrap_or("");
        let Some(spec) = &np.spec else { return };
        let ctx = format!("networkpolicy {ns}/{name}");
        let (mut ingress, mut egress) = (false, false);
        match &spec.policy_types {
            Some(types) => {
                for t in types {
                    match t.as_str() {
                        "Ingress" => ingress = true,
                        "Egress" => egress = true,
                        other => self.warnings.push(format!("{ctx}: policyType {other:?} ignored")),
                    }
                }
            }
            None => {
                ingress = true;
                egress = spec.egress.as_ref().is_some_and(|e| !e.is_empty());
            }
        }
        let selector = Selector::new(spec.pod_selector.as_ref(), &ctx, &mut self.warnings);
        let targets: Vec<usize> = (0..self.pods.len())
            .filter(|&i| self.pods[i].ns == ns && targets_filter(i) && selector.matches(self.pods[i].labels))
            .collect();
        if targets.is_empty() {
            return;
        }
        for &t in &targets {
            let r = acc.entry(t).or_default();
            r.ingress_isolated |= ingress;
            r.egress_isolated |= egress;
        }
        if ingress {
            for (k, rule) in spec.ingress.iter().flatten().enumerate() {
                let base = format!("np:{ns}/{name}/ingress/{k}");
                let peers = self.np_peers(rule.from.as_deref(), ns, &format!("{ctx} ingress rule {k}"));
                let Some(peer_cfg) = peers.configs(&self.pods) else { continue };
                let ports = self.np_ports(rule.ports.as_deref(), &format!("{ctx} ingress rule {k}"));
                for &t in &targets {
                    let out = &mut acc.entry(t).or_default().np_ingress;
                    let Some(ports) = &ports else {
                        out.push(all_ports_rule(&base, &peer_cfg));
                        continue;
                    };
                    // Named ports are the selected pod's own.
                    let mut m = ports.numeric.clone();
                    for (proto, pname) in &ports.named {
                        if let Some(p) = named_port(&self.pods[t], pname, *proto) {
                            add_ports(&mut m, *proto, Some(PortRange::single(p)));
                        }
                    }
                    emit_by_proto(&base, &peer_cfg, &m, out);
                }
            }
        }
        if egress {
            for (k, rule) in spec.egress.iter().flatten().enumerate() {
                let base = format!("np:{ns}/{name}/egress/{k}");
                let peers = self.np_peers(rule.to.as_deref(), ns, &format!("{ctx} egress rule {k}"));
                let ports = self.np_ports(rule.ports.as_deref(), &format!("{ctx} egress rule {k}"));
                let mut rules = Vec::new();
                match &ports {
                    None => {
                        if let Some(peer_cfg) = peers.configs(&self.pods) {
                            rules.push(all_ports_rule(&base, &peer_cfg));
                        }
                    }
                    Some(ports) => {
                        if let Some(peer_cfg) = peers.configs(&self.pods) {
                            emit_by_proto(&base, &peer_cfg, &ports.numeric, &mut rules);
                        }
                        if !ports.named.is_empty() {
                            self.egress_named(&base, &peers, &ports.named, &mut rules);
                        }
                    }
                }
                for &t in &targets {
                    acc.entry(t).or_default().np_egress.extend(rules.iter().cloned());
                }
            }
        }
    }

    /// Egress to named ports: each peer pod's own numbers, so peer pods are
    /// grouped by the ports their names resolve to, one rule per group.
    fn egress_named(&self, base: &str, peers: &Peers, named: &[(u8, String)], out: &mut Vec<RuleConfig>) {
        let candidates: Vec<usize> = if peers.any { (0..self.pods.len()).collect() } else { peers.pods.clone() };
        // protocol → port set → pods
        let mut groups: BTreeMap<u8, BTreeMap<BTreeSet<u16>, Vec<Ipv4Addr>>> = BTreeMap::new();
        for &pi in &candidates {
            let pod = &self.pods[pi];
            let mut per_proto: BTreeMap<u8, BTreeSet<u16>> = BTreeMap::new();
            for (proto, name) in named {
                if let Some(p) = named_port(pod, name, *proto) {
                    per_proto.entry(*proto).or_default().insert(p);
                }
            }
            for (proto, set) in per_proto {
                groups.entry(proto).or_default().entry(set).or_default().push(pod.ip);
            }
        }
        for (proto, by_ports) in groups {
            for (set, ips) in by_ports {
                let list: Vec<String> = set.iter().map(|p| p.to_string()).collect();
                out.push(RuleConfig {
                    id: format!("{base}/{}/named:{}", acl::proto_name(proto), list.join(",")),
                    priority: NP_PRIORITY,
                    peers: host_cidrs(ips),
                    protocol: Some(proto),
                    ports: set.into_iter().map(PortRange::single).collect(),
                    action: Verdict::Allow,
                });
            }
        }
    }

    /// `None`: every port of every protocol.
    fn np_ports(&mut self, ports: Option<&[NetworkPolicyPort]>, ctx: &str) -> Option<RulePorts> {
        let ports = ports.unwrap_or(&[]);
        if ports.is_empty() {
            return None;
        }
        let mut out = RulePorts { numeric: BTreeMap::new(), named: vec![] };
        for (i, p) in ports.iter().enumerate() {
            match port_spec(p, &format!("{ctx} port {i}"), &mut self.warnings) {
                Some((proto, PortSel::All)) => add_ports(&mut out.numeric, proto, None),
                Some((proto, PortSel::Range(from, to))) => {
                    add_ports(&mut out.numeric, proto, Some(PortRange { from, to }))
                }
                Some((proto, PortSel::Named(n))) => out.named.push((proto, n)),
                None => {}
            }
        }
        Some(out)
    }

    /// Compiles every Contiv policy rule once: (direction, rule).
    fn contiv_rules(&self, model: &ContivModel) -> HashMap<String, Vec<(RuleDirection, RuleConfig)>> {
        let mut out = HashMap::new();
        for p in &model.policies {
            let mut rules = Vec::new();
            for r in &p.rules {
                let (group, network, ip) = match r.direction {
                    RuleDirection::In => (&r.from_group, &r.from_network, &r.from_ip),
                    RuleDirection::Out => (&r.to_group, &r.to_network, &r.to_ip),
                };
                let peers = match (group, network, ip) {
                    (Some(g), _, ip) => {
                        let ips = self
                            .pods
                            .iter()
                            .filter(|pod| pod.labels.get(GROUP_LABEL) == Some(g))
                            .map(|pod| pod.ip)
                            .filter(|a| ip.is_none_or(|c| c.0.contains(*a)));
                        let v = host_cidrs(ips);
                        if v.is_empty() {
                            continue; // an empty group: the rule matches nothing
                        }
                        v
                    }
                    (None, Some(n), _) => match model.networks.iter().find(|x| &x.name == n) {
                        Some(net) => vec![PeerConfig { cidr: net.subnet, except: vec![] }],
                        None => continue,
                    },
                    (None, None, Some(c)) => vec![PeerConfig { cidr: c.0, except: vec![] }],
                    (None, None, None) => vec![],
                };
                let port = r.port.filter(|p| *p != 0);
                rules.push((
                    r.direction,
                    RuleConfig {
                        id: format!("contiv:{}/{}", p.name, r.id),
                        priority: contiv_rank(r.priority),
                        peers,
                        protocol: r.protocol.map(ContivProtocol::number),
                        ports: port.map(PortRange::single).into_iter().collect(),
                        action: r.action,
                    },
                ));
            }
            out.insert(p.name.clone(), rules);
        }
        out
    }
}

/// A rule's `ports`, parsed: numbers per protocol, and names to resolve.
struct RulePorts {
    numeric: ProtoPorts,
    named: Vec<(u8, String)>,
}

fn all_ports_rule(base: &str, peers: &[PeerConfig]) -> RuleConfig {
    RuleConfig {
        id: base.to_string(),
        priority: NP_PRIORITY,
        peers: peers.to_vec(),
        protocol: None,
        ports: vec![],
        action: Verdict::Allow,
    }
}

type PerPod = BTreeMap<usize, PodRules>;

/// Compiles the policy objects into the dataplane's ACL config. Fails only
/// when the Contiv model is inconsistent; see the module doc.
pub fn compile(input: &PolicyInput<'_>) -> Result<CompiledPolicy, String> {
    input.contiv.validate()?;
    let mut warnings = Vec::new();
    let pods = pod_views(input.pods, &mut warnings);
    let mut ns_labels = HashMap::new();
    for n in input.namespaces {
        let Some(name) = n.metadata.name.as_deref() else { continue };
        let mut labels = n.metadata.labels.clone().unwrap_or_default();
        labels.entry(NAMESPACE_NAME_LABEL.to_string()).or_insert_with(|| name.to_string());
        ns_labels.insert(name, labels);
    }
    let mut c = Compiler { pods, ns_labels, warnings };
    let node_pods: Option<HashSet<Ipv4Addr>> = input.node_pods.map(|v| v.iter().copied().collect());
    let is_target = |i: usize| node_pods.as_ref().is_none_or(|set| set.contains(&c.pods[i].ip));
    let targets: Vec<bool> = (0..c.pods.len()).map(is_target).collect();
    let filter = |i: usize| targets[i];

    let mut acc: PerPod = BTreeMap::new();
    let mut policies: Vec<&NetworkPolicy> = input.network_policies.iter().collect();
    policies.sort_by(|a, b| {
        (a.metadata.namespace.as_deref(), a.metadata.name.as_deref())
            .cmp(&(b.metadata.namespace.as_deref(), b.metadata.name.as_deref()))
    });
    for np in policies {
        c.network_policy(np, &filter, &mut acc);
    }

    let contiv = c.contiv_rules(input.contiv);
    for (pi, pod) in c.pods.iter().enumerate() {
        if !targets[pi] {
            continue;
        }
        let Some(group_name) = pod.labels.get(GROUP_LABEL) else { continue };
        let Some(group) = input.contiv.groups.iter().find(|g| &g.name == group_name) else {
            c.warnings.push(format!("pod {}: contiv group {group_name:?} does not exist", pod.key));
            continue;
        };
        if let Some(net) = pod.labels.get(NETWORK_LABEL) {
            if net != &group.network {
                c.warnings.push(format!(
                    "pod {}: label {NETWORK_LABEL}={net} but group {} is in network {}",
                    pod.key, group.name, group.network
                ));
            }
        }
        let r = acc.entry(pi).or_default();
        for policy in &group.policies {
            for (d, rule) in contiv.get(policy).into_iter().flatten() {
                match d {
                    RuleDirection::In => r.contiv_ingress.push(rule.clone()),
                    RuleDirection::Out => r.contiv_egress.push(rule.clone()),
                }
            }
        }
        // Highest Contiv priority first; on a tie deny before allow, then the
        // group's policy order and each policy's rule order (the sort is stable).
        for v in [&mut r.contiv_ingress, &mut r.contiv_egress] {
            v.sort_by_key(|r| (r.priority, r.action == Verdict::Allow));
        }
    }

    let mut out = AclConfig::default();
    for (pi, r) in acc {
        let direction = |isolated: bool, contiv: Vec<RuleConfig>, np: Vec<RuleConfig>| {
            (isolated || !contiv.is_empty()).then(|| DirectionConfig {
                rules: contiv.into_iter().chain(np).collect(),
                default: if isolated { Verdict::Deny } else { Verdict::Allow },
            })
        };
        let ingress = direction(r.ingress_isolated, r.contiv_ingress, r.np_ingress);
        let egress = direction(r.egress_isolated, r.contiv_egress, r.np_egress);
        if ingress.is_some() || egress.is_some() {
            let pod = &c.pods[pi];
            out.pods.push(PodAclConfig { ip: pod.ip, name: pod.key.clone(), ingress, egress });
        }
    }
    out.pods.sort_by_key(|p| u32::from(p.ip));
    Ok(CompiledPolicy { acl: out, warnings: c.warnings })
}

#[cfg(test)]
mod tests;
