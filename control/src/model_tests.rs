//! Object YAML → a node's tables: golden dumps of the demo cluster, and
//! the kube-proxy semantics one by one.

use super::*;
use weir_dataplane::tables::acl::Verdict;

fn tables(text: &str, node: &str) -> (ClusterTables, Warnings) {
    compute(&ClusterObjects::from_yaml(text).unwrap(), node, &Settings::default()).unwrap()
}

/// The demo cluster's tables for both nodes, as text, against the files in
/// control/tests/data (`WEIR_BLESS=1` rewrites them after a deliberate
/// change; read the diff).
#[test]
fn golden_dumps_of_the_demo_cluster() {
    let text = include_str!("../../config/demo-cluster.yaml");
    let mut objs = ClusterObjects::from_yaml(text).unwrap();
    // As weir-control runs a cluster file: LoadBalancer IPs allocated first.
    assert!(crate::lb::allocate_in_place(&mut objs).is_empty());
    for node in ["node1", "node2"] {
        let (t, warnings) = compute(&objs, node, &Settings::default()).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let got = crate::dump::dump(&objs, node, &t).unwrap();
        let path = format!("{}/tests/data/demo.{node}.dump", env!("CARGO_MANIFEST_DIR"));
        if std::env::var_os("WEIR_BLESS").is_some() {
            std::fs::write(&path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(got == want, "{path} differs:\n--- got\n{got}\n--- want\n{want}");
    }
}

const BASE: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: n1}
spec: {podCIDR: 10.1.0.0/24}
status: {addresses: [{type: InternalIP, address: 192.168.50.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
spec: {podCIDR: 10.2.0.0/24}
status: {addresses: [{type: InternalIP, address: 192.168.50.2}]}
"#;

fn svc(body: &str, slices: &str) -> String {
    format!("{BASE}---\napiVersion: v1\nkind: Service\nmetadata: {{name: s, namespace: ns}}\n{body}\n{slices}")
}

fn slice(name: &str, ports: &str, endpoints: &str) -> String {
    format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: ns, labels: {{kubernetes.io/service-name: s}}}}\naddressType: IPv4\nports: {ports}\nendpoints: {endpoints}\n"
    )
}

#[test]
fn slices_merge_with_conditions_and_locality() {
    let text = svc(
        "spec: {clusterIP: 10.96.0.1, ports: [{name: http, port: 80, targetPort: web}]}",
        &(slice(
            "a",
            "[{name: http, port: 8080, protocol: TCP}]",
            "[{addresses: [10.1.0.5], nodeName: n1}, {addresses: [10.2.0.5], conditions: {ready: false, serving: true, terminating: true}, nodeName: n2}]",
        ) + &slice(
            "b",
            "[{name: http, port: 8080}]",
            // 10.1.0.5 again (counted once), and one more.
            "[{addresses: [10.1.0.5], nodeName: n1}, {addresses: [10.2.0.6], conditions: {ready: true}, nodeName: n2}]",
        )),
    );
    let (t, _) = tables(&text, "n1");
    assert_eq!(t.services.len(), 1);
    let s = &t.services[0];
    assert_eq!(s.name, "ns/s:http");
    assert_eq!(s.ports[0].target_port, Some(8080), "named targetPort resolved from the slices");
    let b: Vec<(String, bool, bool, bool)> = s
        .backends
        .iter()
        .map(|b| (b.ip.to_string(), b.local.unwrap(), b.ready, b.terminating))
        .collect();
    assert_eq!(
        b,
        vec![
            ("10.1.0.5".into(), true, true, false),
            ("10.2.0.5".into(), false, false, true),
            ("10.2.0.6".into(), false, true, false)
        ]
    );
    // On n2 the locality flips.
    let (t2, _) = tables(&text, "n2");
    assert!(!t2.services[0].backends[0].local.unwrap() && t2.services[0].backends[1].local.unwrap());
}

#[test]
fn kinds_of_services() {
    let lb = "spec: {type: LoadBalancer, clusterIP: 10.96.0.2, externalIPs: [192.168.60.1], externalTrafficPolicy: Local, internalTrafficPolicy: Local, loadBalancerSourceRanges: [192.168.50.0/24, 'not-a-cidr'], sessionAffinity: ClientIP, ports: [{port: 53, protocol: UDP, nodePort: 30053}]}\nstatus: {loadBalancer: {ingress: [{ip: 192.168.70.1}]}}";
    let (t, warnings) = tables(&svc(lb, ""), "n1");
    let s = &t.services[0];
    assert_eq!(s.name, "ns/s:53");
    assert_eq!(s.external_ips, vec![Ipv4Addr::new(192, 168, 60, 1)]);
    assert_eq!(s.load_balancer_ips, vec![Ipv4Addr::new(192, 168, 70, 1)]);
    assert_eq!((s.external_traffic_policy, s.internal_traffic_policy), (TrafficPolicy::Local, TrafficPolicy::Local));
    assert_eq!(s.ports[0].node_port, Some(30053));
    assert_eq!(s.ports[0].protocol, L4Proto::Udp);
    assert_eq!(s.affinity_timeout_seconds, Some(10800));
    assert_eq!(s.load_balancer_source_ranges.len(), 1);
    assert!(warnings.iter().any(|w| w.contains("not-a-cidr")), "{warnings:?}");
    // Not ours: headless, ExternalName, another proxy's.
    for body in [
        "spec: {clusterIP: None, ports: [{port: 80}]}",
        "spec: {type: ExternalName, externalName: example.com}",
    ] {
        assert!(tables(&svc(body, ""), "n1").0.services.is_empty(), "{body}");
    }
    let other = svc("spec: {clusterIP: 10.96.0.3, ports: [{port: 80}]}", "")
        .replace("name: s, namespace: ns}", "name: s, namespace: ns, labels: {service.kubernetes.io/service-proxy-name: other}}");
    assert!(tables(&other, "n1").0.services.is_empty());
    // A ClusterIP Service's nodePort is ignored; eTP only matters off ClusterIP.
    let cip = "spec: {clusterIP: 10.96.0.4, externalTrafficPolicy: Local, ports: [{port: 80, targetPort: 8080, nodePort: 30001}]}";
    let (t, _) = tables(&svc(cip, ""), "n1");
    assert_eq!((t.services[0].ports[0].node_port, t.services[0].external_traffic_policy), (None, TrafficPolicy::Cluster));
    assert_eq!(t.services[0].ports[0].target_port, Some(8080), "numeric targetPort without endpoints");
}

#[test]
fn nodes_become_routes_and_bad_ones_are_skipped() {
    let text = format!(
        "{BASE}---\napiVersion: v1\nkind: Node\nmetadata: {{name: n3}}\nspec: {{}}\nstatus: {{addresses: [{{type: InternalIP, address: 192.168.50.3}}]}}\n"
    );
    let (t, warnings) = tables(&text, "n1");
    let names: Vec<&str> = t.remote_nodes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["n2"], "n1 is this node; n3 has no podCIDR");
    assert_eq!(t.remote_nodes[0].node_ip, Ipv4Addr::new(192, 168, 50, 2));
    assert_eq!(t.remote_nodes[0].vtep_mac, DEFAULT_GATEWAY_MAC);
    assert!(t.node_port_ips.is_empty(), "n1 has one InternalIP: the node IP");
    let with_external = BASE.replace(
        "status: {addresses: [{type: InternalIP, address: 192.168.50.1}]}",
        "status: {addresses: [{type: InternalIP, address: 192.168.50.1}, {type: ExternalIP, address: 203.0.113.7}, {type: Hostname, address: n1}]}",
    );
    assert_eq!(tables(&with_external, "n1").0.node_port_ips, vec![Ipv4Addr::new(203, 0, 113, 7)]);
    assert!(warnings.iter().any(|w| w.contains("n3")), "{warnings:?}");
}

#[test]
fn the_demo_policies_reach_the_acls() {
    let text = include_str!("../../config/demo-cluster.yaml");
    let (t2, _) = tables(text, "node2");
    let acl = weir_dataplane::tables::acl::AclTable::build(&t2.acl, &[]).unwrap();
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    // node2 runs db-1 (client only, TCP 6379) and noping-1 (no ICMP in).
    assert_eq!(acl.evaluate(ip("10.1.0.3"), ip("10.2.0.3"), 6, 40000, 6379).verdict, Verdict::Allow);
    assert_eq!(acl.evaluate(ip("10.1.0.2"), ip("10.2.0.3"), 6, 40000, 6379).verdict, Verdict::Deny);
    assert_eq!(acl.evaluate(ip("21.1.1.2"), ip("21.1.1.3"), 1, 0, 0).verdict, Verdict::Deny);
    assert_eq!(acl.evaluate(ip("21.1.1.2"), ip("21.1.1.3"), 6, 40000, 6379).verdict, Verdict::Allow);
    // node1's tables carry node1's pods only: poc-1 may be pinged.
    let (t1, _) = tables(text, "node1");
    assert!(t1.acl.pods.iter().all(|p| !["10.2.0.3", "21.1.1.3"].contains(&p.ip.to_string().as_str())));
    // poc-net routes: each node routes the other's poc-net pod.
    assert_eq!(t1.remote_routes.len(), 1);
    assert_eq!((t1.remote_routes[0].prefix.to_string().as_str(), t1.remote_routes[0].node.as_str()), ("21.1.1.3/32", "node2"));
}

#[test]
fn bad_documents_are_named() {
    let e = ClusterObjects::from_yaml("kind: Service\nmetadata: {name: x}\nspec: {ports: 7}\n").unwrap_err();
    assert!(e.starts_with("document 1: Service x:"), "{e}");
    let e = ClusterObjects::from_yaml("---\nkind: Node\nmetadata: {name: a}\n---\nkind: Deployment\n").unwrap_err();
    assert_eq!(e, "document 2: kind \"Deployment\" is not one weir reads");
}
