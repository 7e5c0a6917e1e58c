//! Which node answers for a LoadBalancer IP on the underlay (ARP), and the
//! facts kube-proxy's healthCheckNodePort reports: a Service's ready
//! endpoints on this node.
//!
//! Every weir-control computes the same answer from the same objects, with
//! no coordination: for each IP, the nodes that may announce it are ranked
//! by a hash of (node, IP) and the first one announces. A node may announce
//! an IP when it is alive (its membership Lease is fresh; in cluster-file
//! mode every node is), it is not labelled
//! `node.kubernetes.io/exclude-from-external-load-balancers`, and, for each
//! Service on that IP with `externalTrafficPolicy: Local`, it has a ready
//! endpoint of that Service. Ranking by (node, IP) rather than picking one
//! node for all spreads the IPs over the nodes, and when a node goes away
//! only its own IPs move (rendezvous hashing).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;

use crate::model::{ns_name, ClusterObjects, SERVICE_NAME, SERVICE_PROXY_NAME};

/// The label that keeps a node out of external load balancers (Kubernetes'
/// well-known label, honoured by kube-proxy's peers and MetalLB).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// A LoadBalancer Service that is weir's (not another proxy's, by
/// kube-proxy's label).
fn weirs_load_balancer(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
        && !svc.metadata.labels.as_ref().is_some_and(|l| l.contains_key(SERVICE_PROXY_NAME))
}

fn external_local(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local")
}

/// Ready endpoints (distinct addresses) of `svc` on each node, from its
/// EndpointSlices. An endpoint without conditions counts as ready, as in
/// EndpointSlice semantics.
pub fn ready_endpoints_by_node(objs: &ClusterObjects, svc: &Service) -> BTreeMap<String, usize> {
    let (ns, name) = (svc.metadata.namespace.as_deref().unwrap_or(""), svc.metadata.name.as_deref().unwrap_or(""));
    let mut seen: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for s in &objs.endpoint_slices {
        let owner = s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME));
        if s.metadata.namespace.as_deref() != Some(ns) || owner.map(String::as_str) != Some(name) {
            continue;
        }
        for e in &s.endpoints {
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if let (true, Some(node)) = (ready, e.node_name.as_ref()) {
                seen.entry(node.clone()).or_default().extend(e.addresses.iter().map(String::as_str));
            }
        }
    }
    seen.into_iter().map(|(n, a)| (n, a.len())).collect()
}

/// The rank of `node` for `ip`: a 64-bit mix of both (FNV-1a, then the
/// SplitMix64 finaliser so that similar names spread).
fn score(node: &str, ip: Ipv4Addr) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes().chain([0]).chain(ip.octets()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Every LoadBalancer IP with the node that announces it (`None`: no node
/// may). `live`: the nodes known alive; `None` means every Node object.
pub fn speakers(objs: &ClusterObjects, live: Option<&BTreeSet<String>>) -> BTreeMap<Ipv4Addr, Option<String>> {
    let candidates: BTreeSet<String> = objs
        .nodes
        .iter()
        .filter(|n| !n.metadata.labels.as_ref().is_some_and(|l| l.contains_key(EXCLUDE_LABEL)))
        .filter_map(|n| n.metadata.name.clone())
        .filter(|n| live.is_none_or(|l| l.contains(n)))
        .collect();
    let mut eligible: BTreeMap<Ipv4Addr, BTreeSet<String>> = BTreeMap::new();
    for svc in &objs.services {
        if !weirs_load_balancer(svc) {
            continue;
        }
        let ips = crate::lb::ingress_ips(svc);
        if ips.is_empty() {
            continue;
        }
        let allowed: BTreeSet<String> = if external_local(svc) {
            let with = ready_endpoints_by_node(objs, svc);
            candidates.iter().filter(|n| with.get(*n).is_some_and(|c| *c > 0)).cloned().collect()
        } else {
            candidates.clone()
        };
        for ip in ips {
            // Services sharing an IP: a node must suit all of them.
            eligible.entry(ip).and_modify(|e| e.retain(|n| allowed.contains(n))).or_insert_with(|| allowed.clone());
        }
    }
    eligible
        .into_iter()
        .map(|(ip, nodes)| (ip, nodes.into_iter().max_by_key(|n| (score(n, ip), std::cmp::Reverse(n.clone())))))
        .collect()
}

/// The LoadBalancer IPs `node` announces, sorted.
pub fn announced(objs: &ClusterObjects, node: &str, live: Option<&BTreeSet<String>>) -> Vec<Ipv4Addr> {
    speakers(objs, live).into_iter().filter(|(_, n)| n.as_deref() == Some(node)).map(|(ip, _)| ip).collect()
}

/// One healthCheckNodePort this node serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub port: u16,
    pub namespace: String,
    pub name: String,
    /// Ready endpoints of the Service on this node.
    pub local_endpoints: usize,
}

/// The healthCheckNodePorts of `node`: one per LoadBalancer Service with
/// `externalTrafficPolicy: Local` and a healthCheckNodePort, as kube-proxy
/// serves them, sorted by port. A port claimed twice keeps its first
/// Service (by name); the second is reported in the warnings.
pub fn health_checks(objs: &ClusterObjects, node: &str) -> (Vec<HealthCheck>, Vec<String>) {
    let mut out: BTreeMap<u16, HealthCheck> = BTreeMap::new();
    let mut warnings = Vec::new();
    let mut services: Vec<&Service> = objs.services.iter().collect();
    services.sort_by_key(|s| ns_name(&s.metadata));
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        if !weirs_load_balancer(svc) || !external_local(svc) {
            continue;
        }
        let Some(port) = spec.health_check_node_port else { continue };
        let Ok(port) = u16::try_from(port) else {
            warnings
                .push(format!("Service {}: healthCheckNodePort {port} skipped (not a port)", ns_name(&svc.metadata)));
            continue;
        };
        if port == 0 {
            continue;
        }
        if let Some(first) = out.get(&port) {
            warnings.push(format!(
                "Service {}: healthCheckNodePort {port} is {}/{}'s already; skipped",
                ns_name(&svc.metadata),
                first.namespace,
                first.name
            ));
            continue;
        }
        let local = ready_endpoints_by_node(objs, svc).get(node).copied().unwrap_or(0);
        out.insert(
            port,
            HealthCheck {
                port,
                namespace: svc.metadata.namespace.clone().unwrap_or_default(),
                name: svc.metadata.name.clone().unwrap_or_default(),
                local_endpoints: local,
            },
        );
    }
    (out.into_values().collect(), warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: n1}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
---
apiVersion: v1
kind: Node
metadata: {name: n3, labels: {node.kubernetes.io/exclude-from-external-load-balancers: ""}}
"#;

    fn service(name: &str, ip: &str, local: bool, hc: Option<u16>) -> String {
        let policy = if local { "Local" } else { "Cluster" };
        let hc = hc.map(|p| format!("\n  healthCheckNodePort: {p}")).unwrap_or_default();
        format!(
            r#"
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.50
  externalTrafficPolicy: {policy}{hc}
  ports: [{{port: 80, protocol: TCP, targetPort: 8080, nodePort: 30080}}]
status:
  loadBalancer:
    ingress: [{{ip: {ip}}}]
"#
        )
    }

    /// An EndpointSlice of `name` with (address, node, ready) endpoints.
    fn slice(name: &str, eps: &[(&str, &str, bool)]) -> String {
        let mut s = format!(
            "\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-x, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{port: 8080, protocol: TCP}}]\nendpoints:\n"
        );
        for (ip, node, ready) in eps {
            s.push_str(&format!("- addresses: [{ip}]\n  nodeName: {node}\n  conditions: {{ready: {ready}}}\n"));
        }
        s
    }

    fn objs(text: &str) -> ClusterObjects {
        ClusterObjects::from_yaml(&format!("{NODES}{text}")).unwrap()
    }

    fn live(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exactly_one_node_announces_each_ip_and_never_an_excluded_one() {
        let mut text = String::new();
        for i in 0..40 {
            text.push_str(&service(&format!("s{i}"), &format!("192.168.50.{}", 100 + i), false, None));
        }
        let o = objs(&text);
        let s = speakers(&o, None);
        assert_eq!(s.len(), 40);
        let (a1, a2) = (announced(&o, "n1", None), announced(&o, "n2", None));
        assert!(announced(&o, "n3", None).is_empty(), "n3 is excluded");
        assert_eq!(a1.len() + a2.len(), 40, "each IP once");
        assert!(a1.iter().all(|ip| !a2.contains(ip)));
        // Spread: neither node has them all (40 IPs; each side ≥ 8 unless
        // the hash were broken).
        assert!(a1.len() >= 8 && a2.len() >= 8, "{} / {}", a1.len(), a2.len());
        // n1 gone: everything moves to n2, and n2 keeps what it had.
        let only2 = announced(&o, "n2", Some(&live(&["n2"])));
        assert_eq!(only2.len(), 40);
        assert!(a2.iter().all(|ip| only2.contains(ip)));
        // Nobody alive: nobody announces.
        assert!(speakers(&o, Some(&live(&[]))).values().all(Option::is_none));
    }

    #[test]
    fn local_services_are_announced_only_where_a_ready_endpoint_is() {
        let text = service("web", "192.168.50.100", true, Some(32000))
            + &slice("web", &[("10.1.0.2", "n1", false), ("10.2.0.2", "n2", true)]);
        let o = objs(&text);
        assert_eq!(announced(&o, "n2", None), vec![Ipv4Addr::new(192, 168, 50, 100)]);
        assert!(announced(&o, "n1", None).is_empty(), "n1's endpoint is not ready");
        // n2 not alive: nobody may (n1 has no ready endpoint).
        assert_eq!(speakers(&o, Some(&live(&["n1"]))).values().next(), Some(&None));
        // Both ready: one of the two, and the other when it goes.
        let text = service("web", "192.168.50.100", true, None)
            + &slice("web", &[("10.1.0.2", "n1", true), ("10.2.0.2", "n2", true)]);
        let o = objs(&text);
        let first = speakers(&o, None)[&Ipv4Addr::new(192, 168, 50, 100)].clone().unwrap();
        let other = if first == "n1" { "n2" } else { "n1" };
        let then = speakers(&o, Some(&live(&[other])));
        assert_eq!(then[&Ipv4Addr::new(192, 168, 50, 100)].as_deref(), Some(other));
    }

    #[test]
    fn a_shared_ip_needs_a_node_that_suits_every_service_on_it() {
        let text = service("a", "192.168.50.100", true, None)
            + &slice("a", &[("10.1.0.2", "n1", true)])
            + &service("b", "192.168.50.100", false, None);
        assert_eq!(speakers(&objs(&text), None)[&Ipv4Addr::new(192, 168, 50, 100)].as_deref(), Some("n1"));
    }

    #[test]
    fn services_without_an_ip_or_of_another_type_are_not_announced() {
        let text = service("a", "192.168.50.100", false, None).replace("type: LoadBalancer", "type: NodePort");
        assert!(speakers(&objs(&text), None).is_empty());
        let text =
            service("a", "192.168.50.100", false, None).replace("ingress: [{ip: 192.168.50.100}]", "ingress: []");
        assert!(speakers(&objs(&text), None).is_empty());
        // Another proxy's (kube-proxy's label): neither announced nor health-checked.
        let text = service("a", "192.168.50.100", true, Some(32000)).replace(
            "namespace: default}",
            "namespace: default, labels: {service.kubernetes.io/service-proxy-name: other}}",
        );
        assert!(speakers(&objs(&text), None).is_empty());
        assert!(health_checks(&objs(&text), "n1").0.is_empty());
    }

    #[test]
    fn health_checks_count_ready_local_endpoints() {
        let text = service("web", "192.168.50.100", true, Some(32000))
            + &slice("web", &[("10.1.0.2", "n1", true), ("10.1.0.3", "n1", true), ("10.2.0.2", "n2", false)])
            + &service("cluster", "192.168.50.101", false, Some(32001))
            + &service("twice", "192.168.50.102", true, Some(32000));
        let o = objs(&text);
        let (n1, warnings) = health_checks(&o, "n1");
        // "default/twice" sorts before "default/web": it keeps the port.
        let twice = HealthCheck { port: 32000, namespace: "default".into(), name: "twice".into(), local_endpoints: 0 };
        assert_eq!(n1, vec![twice]);
        assert_eq!(
            warnings,
            vec!["Service default/web: healthCheckNodePort 32000 is default/twice's already; skipped"]
        );
        let text = service("web", "192.168.50.100", true, Some(32000))
            + &slice("web", &[("10.1.0.2", "n1", true), ("10.1.0.3", "n1", true), ("10.2.0.2", "n2", false)])
            + &service("cluster", "192.168.50.101", false, Some(32001));
        let o = objs(&text);
        let web = |n| HealthCheck { port: 32000, namespace: "default".into(), name: "web".into(), local_endpoints: n };
        assert_eq!(health_checks(&o, "n1"), (vec![web(2)], vec![]), "Cluster Services have none");
        assert_eq!(health_checks(&o, "n2"), (vec![web(0)], vec![]), "not ready: 0");
    }
}
