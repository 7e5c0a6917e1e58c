//! The cluster as weir-control sees it ([`ClusterObjects`]: the Kubernetes
//! objects and weir's own), read from a cluster file or kept up to date by
//! the Kubernetes watch, and what it means for one node's tables
//! ([`compute`]): the Service model, the other nodes' routes, the networks
//! and the compiled ACLs — the [`ClusterTables`] pushed to weir-dataplane.
//!
//! Service semantics follow kube-proxy: Services labelled
//! `service.kubernetes.io/service-proxy-name` belong to another proxy and
//! headless and ExternalName Services are not translated; endpoints are
//! the Service's EndpointSlices (`kubernetes.io/service-name`) merged, an
//! address listed twice counted once; each Service port becomes one
//! dataplane Service (`namespace/name:port`), whose backends are the
//! endpoints that have that port, with their conditions and whether they
//! are on this node.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;
use weir_dataplane::api::ClusterTables;
use weir_dataplane::config::{
    BackendConfig, L4Proto, NetworkConfig, RemoteNodeConfig, RemoteRouteConfig, ServiceConfig, ServicePortConfig,
    TrafficPolicy,
};
use weir_dataplane::tables::cidr::Ipv4Cidr;
use weir_dataplane::wire::MacAddr;

use crate::crd::{EndpointGroup, LoadBalancerPool, Network, Policy};
use crate::policy::{self, PolicyInput};

/// The label kube-proxy leaves to other proxies.
pub const SERVICE_PROXY_NAME: &str = "service.kubernetes.io/service-proxy-name";
/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// A Node's VTEP MAC (the inner destination MAC its dataplane accepts);
/// default: the cluster-wide gateway MAC.
pub const VTEP_MAC_ANNOTATION: &str = "weir.dev/vtep-mac";
/// The Contiv network label of pods.
pub const NETWORK_LABEL: &str = "io.contiv.network";
/// The gateway MAC weir nodes use unless told otherwise.
pub const DEFAULT_GATEWAY_MAC: MacAddr = MacAddr([0x02, 0xfe, 0, 0, 0, 0x01]);

/// Every object weir-control reads.
#[derive(Debug, Clone, Default)]
pub struct ClusterObjects {
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    pub pods: Vec<Pod>,
    pub namespaces: Vec<Namespace>,
    pub nodes: Vec<Node>,
    pub network_policies: Vec<NetworkPolicy>,
    pub networks: Vec<Network>,
    pub endpoint_groups: Vec<EndpointGroup>,
    pub policies: Vec<Policy>,
    /// Address pools of LoadBalancer Services (`crate::lb`).
    pub lb_pools: Vec<LoadBalancerPool>,
}

#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    kind: String,
}

/// `namespace/name` of an object.
pub fn ns_name(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    match &m.namespace {
        Some(ns) => format!("{ns}/{}", m.name.as_deref().unwrap_or("")),
        None => m.name.clone().unwrap_or_default(),
    }
}

impl ClusterObjects {
    /// Reads a cluster file: YAML documents of the kinds above (`List`s
    /// too). An unknown kind or a document that does not parse is an
    /// error naming its position and kind.
    pub fn from_yaml(text: &str) -> Result<ClusterObjects, String> {
        let mut objs = ClusterObjects::default();
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let value = serde_yaml::Value::deserialize(doc).map_err(|e| format!("document {}: {e}", i + 1))?;
            if value.is_null() {
                continue;
            }
            objs.add_value(value).map_err(|e| format!("document {}: {e}", i + 1))?;
        }
        Ok(objs)
    }

    fn add_value(&mut self, value: serde_yaml::Value) -> Result<(), String> {
        let kind = Head::deserialize(&value).map_err(|e| e.to_string())?.kind;
        fn parse<T: serde::de::DeserializeOwned>(kind: &str, v: serde_yaml::Value) -> Result<T, String> {
            let name = v.get("metadata").and_then(|m| m.get("name")).and_then(|n| n.as_str()).unwrap_or("?");
            let name = name.to_string();
            serde_yaml::from_value(v).map_err(|e| format!("{kind} {name}: {e}"))
        }
        match kind.as_str() {
            "List" => {
                let items = value.get("items").and_then(|i| i.as_sequence()).cloned().unwrap_or_default();
                for item in items {
                    self.add_value(item)?;
                }
            }
            "Service" => self.services.push(parse(&kind, value)?),
            "EndpointSlice" => self.endpoint_slices.push(parse(&kind, value)?),
            "Pod" => self.pods.push(parse(&kind, value)?),
            "Namespace" => self.namespaces.push(parse(&kind, value)?),
            "Node" => self.nodes.push(parse(&kind, value)?),
            "NetworkPolicy" => self.network_policies.push(parse(&kind, value)?),
            "Network" => self.networks.push(parse(&kind, value)?),
            "EndpointGroup" => self.endpoint_groups.push(parse(&kind, value)?),
            "Policy" => self.policies.push(parse(&kind, value)?),
            "LoadBalancerPool" => self.lb_pools.push(parse(&kind, value)?),
            other => return Err(format!("kind {other:?} is not one weir reads")),
        }
        Ok(())
    }
}

/// What computing a node's tables found worth telling (objects skipped).
pub type Warnings = Vec<String>;

/// Settings of the computation that are not in the objects.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The VTEP MAC of nodes without the annotation.
    pub gateway_mac: MacAddr,
    /// The nodes known alive (membership Leases), which alone may announce
    /// LoadBalancer IPs; `None`: every Node (a cluster file).
    pub live_nodes: Option<BTreeSet<String>>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { gateway_mac: DEFAULT_GATEWAY_MAC, live_nodes: None }
    }
}

/// The tables of node `node`. Errors only for a Contiv model that cannot
/// be compiled; bad parts of other objects are skipped with a warning.
pub fn compute(objs: &ClusterObjects, node: &str, settings: &Settings) -> Result<(ClusterTables, Warnings), String> {
    let mut warn = Vec::new();
    let mut t = ClusterTables { services: services(objs, node, &mut warn), ..ClusterTables::default() };
    let contiv = crate::crd::contiv_model(&objs.networks, &objs.endpoint_groups, &objs.policies)?;
    t.networks = contiv
        .networks
        .iter()
        .map(|n| NetworkConfig { name: n.name.clone(), subnet: n.subnet, gateway: n.gateway, vni: n.vni })
        .collect();
    t.networks.sort_by(|a, b| a.name.cmp(&b.name));
    for n in &objs.nodes {
        let name = n.metadata.name.clone().unwrap_or_default();
        if name == node {
            t.node_port_ips = node_port_ips(n);
            continue;
        }
        match remote_node(n, settings) {
            Ok(r) => t.remote_nodes.push(r),
            Err(e) => warn.push(format!("Node {name} skipped: {e}")),
        }
    }
    t.remote_nodes.sort_by(|a, b| a.name.cmp(&b.name));
    // Pods of named networks on other nodes: a /32 route each to their node.
    let known: BTreeSet<&str> = t.remote_nodes.iter().map(|r| r.name.as_str()).collect();
    let nets: BTreeSet<&str> = t.networks.iter().map(|n| n.name.as_str()).collect();
    for p in &objs.pods {
        let (Some(net), Some(on), Some(ip)) = (pod_network(p), pod_node(p), pod_ip(p)) else { continue };
        if on != node && known.contains(on) && nets.contains(net) {
            t.remote_routes.push(RemoteRouteConfig {
                network: net.to_string(),
                prefix: Ipv4Cidr::host(ip),
                node: on.to_string(),
            });
        }
    }
    t.remote_routes.sort_by(|a, b| (&a.network, a.prefix).cmp(&(&b.network, b.prefix)));
    // ACLs of this node's pods.
    let local: Vec<Ipv4Addr> =
        objs.pods.iter().filter(|p| pod_node(p) == Some(node)).filter_map(pod_ip).collect();
    let compiled = policy::compile(&PolicyInput {
        pods: &objs.pods,
        namespaces: &objs.namespaces,
        network_policies: &objs.network_policies,
        contiv: &contiv,
        node_pods: Some(&local),
    })?;
    warn.extend(compiled.warnings);
    t.acl = compiled.acl;
    t.announce_ips = crate::announce::announced(objs, node, settings.live_nodes.as_ref());
    Ok((t, warn))
}

/// This node's addresses NodePorts are also served on: its IPv4 addresses
/// of kind InternalIP or ExternalIP other than the first InternalIP (the
/// node IP the dataplane is configured with).
fn node_port_ips(n: &Node) -> Vec<Ipv4Addr> {
    let addrs = n.status.as_ref().and_then(|s| s.addresses.as_ref());
    let v4 = |kind: &str| -> Vec<Ipv4Addr> {
        addrs.map(|a| a.iter().filter(|a| a.type_ == kind).filter_map(|a| a.address.parse().ok()).collect()).unwrap_or_default()
    };
    let internal = v4("InternalIP");
    let mut out: Vec<Ipv4Addr> = internal.iter().skip(1).copied().chain(v4("ExternalIP")).collect();
    out.sort();
    out.dedup();
    out
}

fn pod_node(p: &Pod) -> Option<&str> {
    p.spec.as_ref()?.node_name.as_deref()
}

fn pod_ip(p: &Pod) -> Option<Ipv4Addr> {
    p.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

fn pod_network(p: &Pod) -> Option<&str> {
    p.metadata.labels.as_ref()?.get(NETWORK_LABEL).map(String::as_str)
}

fn remote_node(n: &Node, settings: &Settings) -> Result<RemoteNodeConfig, String> {
    let addrs = n.status.as_ref().and_then(|s| s.addresses.as_ref());
    let ip = addrs
        .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP" && a.address.parse::<Ipv4Addr>().is_ok()))
        .ok_or("no IPv4 InternalIP")?
        .address
        .parse()
        .map_err(|_| "bad InternalIP")?;
    let spec = n.spec.as_ref();
    let cidr = spec
        .and_then(|s| s.pod_cidr.as_deref())
        .or_else(|| spec.and_then(|s| s.pod_cidrs.as_ref()).and_then(|c| c.iter().find(|c| !c.contains(':'))).map(String::as_str))
        .ok_or("no IPv4 podCIDR")?;
    let pod_cidr = cidr.parse().map_err(|_| format!("podCIDR {cidr:?} does not parse"))?;
    let vtep_mac = match n.metadata.annotations.as_ref().and_then(|a| a.get(VTEP_MAC_ANNOTATION)) {
        Some(m) => m.parse().map_err(|_| format!("{VTEP_MAC_ANNOTATION} {m:?} is not a MAC"))?,
        None => settings.gateway_mac,
    };
    Ok(RemoteNodeConfig { name: n.metadata.name.clone().unwrap_or_default(), node_ip: ip, pod_cidr, vtep_mac })
}

/// One endpoint of a Service port, merged over its EndpointSlices.
struct Endpoint {
    port: u16,
    ready: bool,
    serving: bool,
    terminating: bool,
    local: bool,
}

fn services(objs: &ClusterObjects, node: &str, warn: &mut Warnings) -> Vec<ServiceConfig> {
    let mut out = Vec::new();
    // EndpointSlices by (namespace, service name).
    let mut slices: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in &objs.endpoint_slices {
        let svc = s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME));
        if let (Some(ns), Some(svc)) = (&s.metadata.namespace, svc) {
            if s.address_type == "IPv4" {
                slices.entry((ns.clone(), svc.clone())).or_default().push(s);
            }
        }
    }
    for svc in &objs.services {
        let name = ns_name(&svc.metadata);
        let Some(spec) = &svc.spec else { continue };
        if svc.metadata.labels.as_ref().is_some_and(|l| l.contains_key(SERVICE_PROXY_NAME)) {
            continue; // another proxy's
        }
        let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
        if ty == "ExternalName" || spec.cluster_ip.as_deref() == Some("None") {
            continue; // no translation: DNS only
        }
        let v4 = |list: Option<&Vec<String>>| -> Vec<Ipv4Addr> {
            list.map(|l| l.iter().filter_map(|a| a.parse().ok()).collect()).unwrap_or_default()
        };
        let mut cluster_ips = v4(spec.cluster_ips.as_ref());
        if cluster_ips.is_empty() {
            cluster_ips = spec.cluster_ip.iter().filter_map(|a| a.parse().ok()).collect();
        }
        let external_ips = v4(spec.external_ips.as_ref());
        let load_balancer_ips = if ty == "LoadBalancer" { crate::lb::ingress_ips(svc) } else { Vec::new() };
        let external_local = spec.external_traffic_policy.as_deref() == Some("Local") && ty != "ClusterIP";
        let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            let cfg = spec.session_affinity_config.as_ref().and_then(|c| c.client_ip.as_ref());
            cfg.and_then(|c| c.timeout_seconds).map_or(10800, |s| s.clamp(1, 86400) as u32)
        });
        let mut ranges = Vec::new();
        for r in spec.load_balancer_source_ranges.iter().flatten() {
            match r.trim().parse::<Ipv4Cidr>() {
                Ok(c) => ranges.push(c),
                Err(_) => warn.push(format!("Service {name}: loadBalancerSourceRanges {r:?} skipped (not an IPv4 prefix)")),
            }
        }
        let key = (svc.metadata.namespace.clone().unwrap_or_default(), svc.metadata.name.clone().unwrap_or_default());
        let my_slices = slices.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        for sp in spec.ports.iter().flatten() {
            let proto = match sp.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => L4Proto::Tcp,
                "UDP" => L4Proto::Udp,
                "SCTP" => L4Proto::Sctp,
                p => {
                    warn.push(format!("Service {name}: port {} protocol {p} skipped", sp.port));
                    continue;
                }
            };
            let Ok(port) = u16::try_from(sp.port) else { continue };
            let endpoints = endpoints_of(my_slices, sp.name.as_deref(), proto, node);
            let (target, mixed) = target_port(sp.target_port.as_ref(), port, &endpoints);
            if mixed {
                warn.push(format!("Service {name}: port {port} has endpoints on different ports; only those on {target} kept"));
            }
            let node_port = if matches!(ty, "NodePort" | "LoadBalancer") {
                sp.node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0)
            } else {
                None
            };
            let backends = endpoints
                .iter()
                .filter(|(_, e)| e.port == target)
                .map(|(ip, e)| BackendConfig {
                    local: Some(e.local),
                    ready: e.ready,
                    serving: Some(e.serving),
                    terminating: e.terminating,
                    ..BackendConfig::new(*ip)
                })
                .collect();
            let port_name = sp.name.clone().unwrap_or_else(|| port.to_string());
            out.push(ServiceConfig {
                name: format!("{name}:{port_name}"),
                cluster_ips: cluster_ips.clone(),
                external_ips: external_ips.clone(),
                load_balancer_ips: load_balancer_ips.clone(),
                external_traffic_policy: if external_local { TrafficPolicy::Local } else { TrafficPolicy::Cluster },
                internal_traffic_policy: if internal_local { TrafficPolicy::Local } else { TrafficPolicy::Cluster },
                load_balancer_source_ranges: ranges.clone(),
                ports: vec![ServicePortConfig { port, protocol: proto, target_port: Some(target), node_port }],
                backends,
                affinity_timeout_seconds: affinity,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The endpoints of the Service port named `port_name` (EndpointSlice
/// ports match by name), merged over the slices: an address listed twice
/// counts once, the more ready listing winning.
fn endpoints_of(slices: &[&EndpointSlice], port_name: Option<&str>, proto: L4Proto, node: &str) -> BTreeMap<Ipv4Addr, Endpoint> {
    let mut out: BTreeMap<Ipv4Addr, Endpoint> = BTreeMap::new();
    for s in slices {
        let want = |p: &&k8s_openapi::api::discovery::v1::EndpointPort| {
            p.name.as_deref().unwrap_or("") == port_name.unwrap_or("")
                && p.protocol.as_deref().unwrap_or("TCP") == proto_name(proto)
        };
        let Some(port) = s.ports.iter().flatten().find(want).and_then(|p| p.port).and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for e in &s.endpoints {
            let c = e.conditions.as_ref();
            let ready = c.and_then(|c| c.ready).unwrap_or(true);
            let serving = c.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
            let local = e.node_name.as_deref() == Some(node);
            for a in &e.addresses {
                let Ok(ip) = a.parse::<Ipv4Addr>() else { continue };
                let new = Endpoint { port, ready, serving, terminating, local };
                match out.get(&ip) {
                    Some(old) if old.ready || !ready => {}
                    _ => {
                        out.insert(ip, new);
                    }
                }
            }
        }
    }
    out
}

fn proto_name(p: L4Proto) -> &'static str {
    match p {
        L4Proto::Tcp => "TCP",
        L4Proto::Udp => "UDP",
        L4Proto::Sctp => "SCTP",
    }
}

/// The backends' port: the port the endpoints have (named targetPorts are
/// resolved in the EndpointSlices), else a numeric targetPort, else the
/// Service port. When endpoints differ the most common wins and the second
/// value is true (the caller warns; the others are left out).
fn target_port(target: Option<&IntOrString>, port: u16, endpoints: &BTreeMap<Ipv4Addr, Endpoint>) -> (u16, bool) {
    let mut count: BTreeMap<u16, usize> = BTreeMap::new();
    for e in endpoints.values() {
        *count.entry(e.port).or_default() += 1;
    }
    match count.iter().max_by_key(|(p, n)| (**n, std::cmp::Reverse(**p))) {
        Some((best, _)) => (*best, count.len() > 1),
        None => match target {
            Some(IntOrString::Int(p)) => (u16::try_from(*p).ok().filter(|p| *p > 0).unwrap_or(port), false),
            _ => (port, false),
        },
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
