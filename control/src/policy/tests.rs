//! Semantic tests: Kubernetes objects and a Contiv model in, packets through
//! the compiled classifier (`AclTable`), verdicts out. Each table row is one
//! packet; the row's name says which rule of the model it shows.

use std::net::Ipv4Addr;

use serde_json::{json, Value};
use weir_dataplane::tables::acl::Verdict::{self, Allow, Deny};
use weir_dataplane::tables::acl::{AclTable, Direction, PROTO_ICMP, PROTO_SCTP, PROTO_TCP, PROTO_UDP};

use super::*;

const NODE: &str = "10.0.0.1";

fn ns(name: &str, labels: Value) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

/// A running pod; `ports` is a list of `[name, port, protocol]`.
fn pod(ns: &str, name: &str, ip: &str, labels: Value, ports: &[(&str, i32, &str)]) -> Pod {
    let ports: Vec<Value> =
        ports.iter().map(|(n, p, proto)| json!({"name": n, "containerPort": p, "protocol": proto})).collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "spec": {"containers": [{"name": "main", "ports": ports}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
    }))
    .unwrap()
}

fn np(v: Value) -> NetworkPolicy {
    serde_json::from_value(v).unwrap()
}

/// A NetworkPolicy in `ns` named `name` with this spec.
fn policy(ns: &str, name: &str, spec: Value) -> NetworkPolicy {
    np(json!({"metadata": {"namespace": ns, "name": name}, "spec": spec}))
}

struct World {
    pods: Vec<Pod>,
    namespaces: Vec<Namespace>,
    policies: Vec<NetworkPolicy>,
    contiv: ContivModel,
    node_pods: Option<Vec<Ipv4Addr>>,
}

/// (what it shows, source, destination, protocol, destination port, verdict)
type Case<'a> = (&'a str, &'a str, &'a str, u8, u16, Verdict);

impl World {
    /// Namespaces default, prod (env=prod), dev (env=dev), and pods:
    /// default/web 10.1.0.10 {app: web, role: frontend} http=8080, metrics=9090;
    /// default/web2 10.1.0.11 {app: web} http=80; default/db 10.1.0.20 {app: db};
    /// default/client 10.1.0.30 {role: client}; default/dns 10.1.0.53 {app: dns}
    /// dns=53/UDP; prod/api 10.2.0.10 {app: api}; prod/client 10.2.0.30
    /// {role: client}; dev/client 10.3.0.30 {role: client}.
    fn new() -> Self {
        World {
            namespaces: vec![
                ns("default", json!({})),
                ns("prod", json!({"env": "prod"})),
                ns("dev", json!({"env": "dev"})),
            ],
            pods: vec![
                pod(
                    "default",
                    "web",
                    "10.1.0.10",
                    json!({"app": "web", "role": "frontend"}),
                    &[("http", 8080, "TCP"), ("metrics", 9090, "TCP")],
                ),
                pod("default", "web2", "10.1.0.11", json!({"app": "web"}), &[("http", 80, "TCP")]),
                pod("default", "db", "10.1.0.20", json!({"app": "db"}), &[]),
                pod("default", "client", "10.1.0.30", json!({"role": "client"}), &[]),
                pod("default", "dns", "10.1.0.53", json!({"app": "dns"}), &[("dns", 53, "UDP")]),
                pod("prod", "api", "10.2.0.10", json!({"app": "api"}), &[]),
                pod("prod", "client", "10.2.0.30", json!({"role": "client"}), &[]),
                pod("dev", "client", "10.3.0.30", json!({"role": "client"}), &[]),
            ],
            policies: vec![],
            contiv: ContivModel::default(),
            node_pods: None,
        }
    }

    fn with(mut self, p: NetworkPolicy) -> Self {
        self.policies.push(p);
        self
    }

    fn compile(&self) -> Result<CompiledPolicy, String> {
        compile(&PolicyInput {
            pods: &self.pods,
            namespaces: &self.namespaces,
            network_policies: &self.policies,
            contiv: &self.contiv,
            node_pods: self.node_pods.as_deref(),
        })
    }

    fn table(&self) -> (AclTable, CompiledPolicy) {
        let c = self.compile().unwrap();
        let t = AclTable::build(&c.acl, &[NODE.parse().unwrap()]).unwrap();
        (t, c)
    }

    fn check(&self, cases: &[Case]) {
        let (t, c) = self.table();
        for (name, src, dst, proto, port, want) in cases {
            let d = t.evaluate(src.parse().unwrap(), dst.parse().unwrap(), *proto, 40000, *port);
            assert_eq!(d.verdict, *want, "{name}: {src} -> {dst} proto {proto} port {port}\n{}", t.dump());
        }
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }
}

const WEB: &str = "10.1.0.10";
const WEB2: &str = "10.1.0.11";
const DB: &str = "10.1.0.20";
const CLIENT: &str = "10.1.0.30";
const DNS: &str = "10.1.0.53";
const PROD_API: &str = "10.2.0.10";
const PROD_CLIENT: &str = "10.2.0.30";
const DEV_CLIENT: &str = "10.3.0.30";
const OUTSIDE: &str = "192.0.2.7";

#[test]
fn pod_selector_isolates_selected_pods_only() {
    World::new()
        .with(policy(
            "default",
            "web-from-clients",
            json!({"podSelector": {"matchLabels": {"app": "web"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]}),
        ))
        .check(&[
            ("selected pod, allowed peer", CLIENT, WEB, PROTO_TCP, 80, Allow),
            ("second selected pod", CLIENT, WEB2, PROTO_TCP, 80, Allow),
            ("a rule without ports allows every protocol", CLIENT, WEB, PROTO_ICMP, 0, Allow),
            ("selected pod, other peer: isolated", DB, WEB, PROTO_TCP, 80, Deny),
            ("podSelector peer is the policy's namespace only", PROD_CLIENT, WEB, PROTO_TCP, 80, Deny),
            ("unselected pod is not isolated", PROD_API, DB, PROTO_TCP, 5432, Allow),
            ("the policy does not isolate egress", WEB, OUTSIDE, PROTO_TCP, 443, Allow),
            ("the node reaches an isolated pod", NODE, WEB, PROTO_TCP, 8080, Allow),
        ]);
}

#[test]
fn empty_pod_selector_selects_the_whole_namespace() {
    World::new().with(policy("default", "default-deny", json!({"podSelector": {}, "policyTypes": ["Ingress"]}))).check(
        &[
            ("every pod of the namespace is isolated", CLIENT, WEB, PROTO_TCP, 80, Deny),
            ("even from its own namespace", WEB, DB, PROTO_TCP, 5432, Deny),
            ("and from outside", OUTSIDE, DNS, PROTO_UDP, 53, Deny),
            ("other namespaces are not", CLIENT, PROD_API, PROTO_TCP, 80, Allow),
            ("egress is not isolated", WEB, PROD_API, PROTO_TCP, 80, Allow),
            ("the node still reaches the pods", NODE, DB, PROTO_TCP, 5432, Allow),
        ],
    );
}

#[test]
fn namespace_selector_and_combined_peers() {
    World::new()
        .with(policy(
            "default",
            "web-from-prod",
            json!({"podSelector": {"matchLabels": {"app": "web"}, "matchExpressions": [
                      {"key": "role", "operator": "Exists"}]},
                   "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}}]}]}),
        ))
        .with(policy(
            "default",
            "db-from-prod-clients",
            json!({"podSelector": {"matchLabels": {"app": "db"}},
                   "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}},
                                          "podSelector": {"matchLabels": {"role": "client"}}}]}]}),
        ))
        .with(policy(
            "default",
            "dns-from-prod-or-clients",
            json!({"podSelector": {"matchLabels": {"app": "dns"}},
                   "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}},
                                         {"podSelector": {"matchLabels": {"role": "client"}}}]}]}),
        ))
        .with(policy(
            "default",
            "web2-from-any-namespace",
            json!({"podSelector": {"matchLabels": {"app": "web"}, "matchExpressions": [
                      {"key": "role", "operator": "DoesNotExist"}]},
                   "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
        ))
        .with(policy(
            "default",
            "client-from-named-namespace",
            json!({"podSelector": {"matchLabels": {"role": "client"}},
                   "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
                       "kubernetes.io/metadata.name": "dev"}}}]}]}),
        ))
        .check(&[
            ("namespaceSelector alone: every pod there", PROD_API, WEB, PROTO_TCP, 80, Allow),
            ("namespaceSelector alone: every pod there (2)", PROD_CLIENT, WEB, PROTO_TCP, 80, Allow),
            ("namespaceSelector alone: other namespace", DEV_CLIENT, WEB, PROTO_TCP, 80, Deny),
            ("namespaceSelector alone: not the policy's own namespace", CLIENT, WEB, PROTO_TCP, 80, Deny),
            ("both in one peer: AND", PROD_CLIENT, DB, PROTO_TCP, 5432, Allow),
            ("both in one peer: namespace without the label", CLIENT, DB, PROTO_TCP, 5432, Deny),
            ("both in one peer: label in another namespace", DEV_CLIENT, DB, PROTO_TCP, 5432, Deny),
            ("both in one peer: namespace, pod without the label", PROD_API, DB, PROTO_TCP, 5432, Deny),
            ("two peers: OR, first", PROD_API, DNS, PROTO_UDP, 53, Allow),
            ("two peers: OR, second", CLIENT, DNS, PROTO_UDP, 53, Allow),
            ("two peers: neither", DEV_CLIENT, DNS, PROTO_UDP, 53, Deny),
            ("empty namespaceSelector: all namespaces", DEV_CLIENT, WEB2, PROTO_TCP, 80, Allow),
            ("empty namespaceSelector: not outside addresses", OUTSIDE, WEB2, PROTO_TCP, 80, Deny),
            ("namespace name label is implied", DEV_CLIENT, CLIENT, PROTO_TCP, 80, Allow),
            ("namespace name label: other namespace", PROD_CLIENT, CLIENT, PROTO_TCP, 80, Deny),
        ]);
}

#[test]
fn ip_block_with_except_both_directions() {
    World::new()
        .with(policy(
            "default",
            "web-from-lan",
            json!({"podSelector": {"matchLabels": {"app": "web"}},
                   "ingress": [{"from": [{"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.5.0/24"]}}]}]}),
        ))
        .with(policy(
            "default",
            "client-to-internet",
            json!({"podSelector": {"matchLabels": {"role": "client"}}, "policyTypes": ["Egress"],
                   "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12"]}}]}]}),
        ))
        .check(&[
            ("ingress: inside the block", "192.168.1.1", WEB, PROTO_TCP, 80, Allow),
            ("ingress: inside the except", "192.168.5.5", WEB, PROTO_TCP, 80, Deny),
            ("ingress: outside the block", "10.9.9.9", WEB, PROTO_TCP, 80, Deny),
            ("egress: the internet", CLIENT, "8.8.8.8", PROTO_UDP, 53, Allow),
            ("egress: excepted pod range", CLIENT, DB, PROTO_TCP, 5432, Deny),
            ("egress: second except", CLIENT, "172.20.1.1", PROTO_TCP, 443, Deny),
            ("egress: between the excepts", CLIENT, "172.32.0.1", PROTO_TCP, 443, Allow),
            ("egress-only policy leaves ingress open", DB, CLIENT, PROTO_TCP, 22, Allow),
        ]);
}

#[test]
fn ports_protocols_ranges_and_named_ports() {
    World::new()
        .with(policy(
            "default",
            "web-ports",
            json!({"podSelector": {"matchLabels": {"role": "frontend"}},
                   "ingress": [{"ports": [
                       {"port": 80},
                       {"protocol": "UDP", "port": 5000, "endPort": 5010},
                       {"protocol": "SCTP"},
                       {"port": "http"},
                       {"protocol": "UDP", "port": "metrics"}]}]}),
        ))
        .check(&[
            ("protocol defaults to TCP", OUTSIDE, WEB, PROTO_TCP, 80, Allow),
            ("port 80 is TCP only", OUTSIDE, WEB, PROTO_UDP, 80, Deny),
            ("endPort range start", OUTSIDE, WEB, PROTO_UDP, 5000, Allow),
            ("endPort range end", OUTSIDE, WEB, PROTO_UDP, 5010, Allow),
            ("past endPort", OUTSIDE, WEB, PROTO_UDP, 5011, Deny),
            ("range is UDP only", OUTSIDE, WEB, PROTO_TCP, 5005, Deny),
            ("protocol without port: all its ports", OUTSIDE, WEB, PROTO_SCTP, 7, Allow),
            ("named port resolved from the pod", OUTSIDE, WEB, PROTO_TCP, 8080, Allow),
            ("named port needs the protocol to match", OUTSIDE, WEB, PROTO_UDP, 9090, Deny),
            ("other named port not listed", OUTSIDE, WEB, PROTO_TCP, 9090, Deny),
            ("a port rule does not allow ICMP", OUTSIDE, WEB, PROTO_ICMP, 0, Deny),
        ]);
}

#[test]
fn named_ports_per_pod_in_both_directions() {
    World::new()
        .with(policy(
            "default",
            "web-http",
            json!({"podSelector": {"matchLabels": {"app": "web"}},
                   "ingress": [{"ports": [{"port": "http"}]}]}),
        ))
        .with(policy(
            "default",
            "client-to-web-http",
            json!({"podSelector": {"matchLabels": {"role": "client"}}, "policyTypes": ["Egress"],
                   "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                               "ports": [{"port": "http"}]},
                              {"ports": [{"protocol": "UDP", "port": "dns"}]}]}),
        ))
        .check(&[
            ("ingress: web's http is 8080", DB, WEB, PROTO_TCP, 8080, Allow),
            ("ingress: not 80 on web", DB, WEB, PROTO_TCP, 80, Deny),
            ("ingress: web2's http is 80", DB, WEB2, PROTO_TCP, 80, Allow),
            ("ingress: not 8080 on web2", DB, WEB2, PROTO_TCP, 8080, Deny),
            ("egress: the peer's own http (web)", CLIENT, WEB, PROTO_TCP, 8080, Allow),
            ("egress: the peer's own http (web2)", CLIENT, WEB2, PROTO_TCP, 80, Allow),
            ("egress: web2 has nothing on 8080", CLIENT, WEB2, PROTO_TCP, 8080, Deny),
            ("egress: not a peer", CLIENT, DB, PROTO_TCP, 8080, Deny),
            ("egress, any destination: the pod with a dns port", CLIENT, DNS, PROTO_UDP, 53, Allow),
            ("egress, any destination: no pod, no named port", CLIENT, "8.8.8.8", PROTO_UDP, 53, Deny),
            ("egress, any destination: a pod without the port", CLIENT, DB, PROTO_UDP, 53, Deny),
        ]);
}

#[test]
fn policy_types_defaulting() {
    World::new()
        .with(policy(
            "default",
            "ingress-only",
            json!({"podSelector": {"matchLabels": {"app": "web"}, "matchExpressions": [
                      {"key": "role", "operator": "In", "values": ["frontend"]}]},
                   "ingress": [{"from": [{"podSelector": {}}]}]}),
        ))
        .with(policy(
            "default",
            "egress-rules-imply-egress",
            json!({"podSelector": {"matchLabels": {"app": "db"}},
                   "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}),
        ))
        .with(policy(
            "default",
            "explicit-egress-only",
            json!({"podSelector": {"matchLabels": {"app": "dns"}}, "policyTypes": ["Egress"],
                   "ingress": [{"from": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]}]}),
        ))
        .with(policy(
            "default",
            "empty-egress-list",
            json!({"podSelector": {"matchLabels": {"role": "client"}}, "egress": []}),
        ))
        .check(&[
            ("no egress rules: egress stays open", WEB, OUTSIDE, PROTO_TCP, 443, Allow),
            ("ingress is always a policy type", OUTSIDE, WEB, PROTO_TCP, 80, Deny),
            ("egress rules imply Egress", DB, OUTSIDE, PROTO_TCP, 443, Deny),
            ("egress rule allows", DB, PROD_API, PROTO_TCP, 443, Allow),
            ("and Ingress too", CLIENT, DB, PROTO_TCP, 5432, Deny),
            ("explicit [Egress]: egress isolated, no rules", DNS, OUTSIDE, PROTO_UDP, 53, Deny),
            ("explicit [Egress]: ingress rules are ignored", CLIENT, DNS, PROTO_UDP, 53, Allow),
            ("explicit [Egress]: ingress not isolated, any source", "198.51.100.1", DNS, PROTO_UDP, 53, Allow),
            ("egress: [] does not imply Egress", CLIENT, OUTSIDE, PROTO_TCP, 443, Allow),
            ("egress: [] still isolates ingress", PROD_API, CLIENT, PROTO_TCP, 80, Deny),
        ]);
}

#[test]
fn isolation_and_union_of_rules() {
    World::new()
        .with(policy(
            "default",
            "web-from-clients-80",
            json!({"podSelector": {"matchLabels": {"role": "frontend"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                                "ports": [{"port": 80}]}]}),
        ))
        .with(policy(
            "default",
            "web-from-db-and-443",
            json!({"podSelector": {"matchLabels": {"role": "frontend"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "db"}}}]},
                               {"ports": [{"port": 443}]}]}),
        ))
        .with(policy(
            "default",
            "db-allow-all",
            json!({"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{}]}),
        ))
        .with(policy(
            "default",
            "dns-from-nothing",
            json!({"podSelector": {"matchLabels": {"app": "dns"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "no-such-app"}}}]}]}),
        ))
        .check(&[
            ("first policy's rule", CLIENT, WEB, PROTO_TCP, 80, Allow),
            ("first policy: other port", CLIENT, WEB, PROTO_TCP, 81, Deny),
            ("second policy's first rule: all ports", DB, WEB, PROTO_UDP, 9999, Allow),
            ("second policy's second rule: empty from is every source", OUTSIDE, WEB, PROTO_TCP, 443, Allow),
            ("in no rule: isolated", WEB2, WEB, PROTO_TCP, 81, Deny),
            ("ingress: [{}] allows everything", OUTSIDE, DB, PROTO_UDP, 1, Allow),
            ("a peer selecting no pod allows nothing", CLIENT, DNS, PROTO_UDP, 53, Deny),
        ]);
}

#[test]
fn match_expressions_select_targets() {
    let cases: &[(&str, Value, &[&str])] = &[
        ("In", json!([{"key": "app", "operator": "In", "values": ["db", "dns"]}]), &[DB, DNS]),
        (
            "NotIn (also pods without the key)",
            json!([{"key": "app", "operator": "NotIn", "values": ["web", "db"]}]),
            &[CLIENT, DNS],
        ),
        ("Exists", json!([{"key": "role", "operator": "Exists"}]), &[WEB, CLIENT]),
        ("DoesNotExist", json!([{"key": "role", "operator": "DoesNotExist"}]), &[WEB2, DB, DNS]),
        (
            "all requirements and labels together",
            json!([{"key": "app", "operator": "Exists"}, {"key": "app", "operator": "NotIn", "values": ["dns"]}]),
            &[WEB, WEB2, DB],
        ),
    ];
    for (name, exprs, isolated) in cases {
        let w = World::new().with(policy(
            "default",
            "sel",
            json!({"podSelector": {"matchExpressions": exprs}, "policyTypes": ["Ingress"]}),
        ));
        let (t, c) = w.table();
        assert!(c.warnings.is_empty(), "{name}: {:?}", c.warnings);
        for target in [WEB, WEB2, DB, CLIENT, DNS] {
            let d = t.evaluate(OUTSIDE.parse().unwrap(), target.parse().unwrap(), PROTO_TCP, 1, 80);
            let want = if isolated.contains(&target) { Deny } else { Allow };
            assert_eq!(d.verdict, want, "{name}: {target}");
        }
    }
}

#[test]
fn traffic_from_the_node_is_allowed() {
    World::new()
        .with(policy("default", "deny-all", json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})))
        .check(&[
            ("node address to an isolated pod", NODE, WEB, PROTO_TCP, 8080, Allow),
            ("node address, any protocol", NODE, WEB, PROTO_ICMP, 0, Allow),
            ("another host", "10.0.0.2", WEB, PROTO_TCP, 8080, Deny),
            ("egress to the node is policy like any other", WEB, NODE, PROTO_TCP, 10250, Deny),
        ]);
}

#[test]
fn node_pods_limits_the_compiled_pods() {
    let mut w = World::new().with(policy(
        "default",
        "web-from-clients",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]}),
    ));
    w.node_pods = Some(vec![WEB.parse().unwrap()]);
    let c = w.compile().unwrap();
    let ips: Vec<String> = c.acl.pods.iter().map(|p| p.ip.to_string()).collect();
    assert_eq!(ips, vec![WEB]);
    w.check(&[
        ("compiled pod: peer on another node still counts", CLIENT, WEB, PROTO_TCP, 80, Allow),
        ("compiled pod: isolated", DB, WEB, PROTO_TCP, 80, Deny),
        ("not this node's pod: nothing compiled", OUTSIDE, DB, PROTO_TCP, 80, Allow),
    ]);
}

fn contiv_demo_world() -> World {
    let mut w = World::new();
    let net = |g: &str| json!({"io.contiv.network": "poc-net", "io.contiv.net-group": g});
    w.pods.push(pod("default", "noping-pod", "10.1.1.2", net("noping-epg"), &[("redis", 6379, "TCP")]));
    w.pods.push(pod("default", "poc-pod", "10.1.1.3", net("poc-epg"), &[]));
    w.pods.push(pod("default", "poc-client", "10.1.1.4", net("poc-epg"), &[]));
    w.contiv = serde_json::from_value(json!({
        "networks": [{"name": "poc-net", "subnet": "10.1.1.0/24", "gateway": "10.1.1.1", "vni": 100}],
        "groups": [{"name": "noping-epg", "network": "poc-net", "policies": ["icmpPol"]},
                   {"name": "poc-epg", "network": "poc-net"}],
        "policies": [{"name": "icmpPol", "rules": [
            {"id": 1, "direction": "in", "priority": 1, "protocol": "icmp", "action": "deny"}]}]
    }))
    .unwrap();
    w
}

#[test]
fn contiv_demo() {
    contiv_demo_world().check(&[
        ("ping to the noping-epg pod fails", "10.1.1.4", "10.1.1.2", PROTO_ICMP, 0, Deny),
        ("TCP 6379 to it succeeds", "10.1.1.4", "10.1.1.2", PROTO_TCP, 6379, Allow),
        ("ping to a poc-epg pod succeeds", "10.1.1.2", "10.1.1.3", PROTO_ICMP, 0, Allow),
        ("ping between poc-epg pods succeeds", "10.1.1.4", "10.1.1.3", PROTO_ICMP, 0, Allow),
        ("the rule is ingress only", "10.1.1.2", "10.1.1.4", PROTO_ICMP, 0, Allow),
    ]);
}

#[test]
fn demo_default_deny_plus_allow_for_one_label() {
    World::new()
        .with(policy("default", "default-deny", json!({"podSelector": {}})))
        .with(policy(
            "default",
            "allow-clients-to-web",
            json!({"podSelector": {"matchLabels": {"app": "web"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]}),
        ))
        .check(&[
            ("labelled client reaches web", CLIENT, WEB, PROTO_TCP, 8080, Allow),
            ("unlabelled pod does not", DB, WEB, PROTO_TCP, 8080, Deny),
            ("client reaches nothing else", CLIENT, DB, PROTO_TCP, 5432, Deny),
        ]);
}

#[test]
fn contiv_rules_every_field() {
    let mut w = World::new();
    let lbl = |net: &str, g: &str| json!({"io.contiv.network": net, "io.contiv.net-group": g});
    w.pods.push(pod("default", "a1", "10.10.0.1", lbl("net-a", "group-a"), &[]));
    w.pods.push(pod("default", "a2", "10.10.0.2", lbl("net-a", "group-a"), &[]));
    w.pods.push(pod("default", "b1", "10.20.0.1", lbl("net-b", "group-b"), &[]));
    w.pods.push(pod("default", "b2", "10.20.0.2", lbl("net-b", "group-b"), &[]));
    w.contiv = serde_json::from_value(json!({
        "networks": [{"name": "net-a", "subnet": "10.10.0.0/16", "gateway": "10.10.0.254", "vni": 10},
                     {"name": "net-b", "subnet": "10.20.0.0/16", "gateway": "10.20.0.254", "vni": 20}],
        "groups": [{"name": "group-a", "network": "net-a", "policies": ["pol-a"]},
                   {"name": "group-b", "network": "net-b"}],
        "policies": [{"name": "pol-a", "rules": [
            {"id": 1, "direction": "in", "priority": 10, "fromGroup": "group-b", "protocol": "tcp", "port": 80,
             "action": "allow"},
            {"id": 2, "direction": "in", "priority": 5, "protocol": "tcp", "action": "deny"},
            {"id": 3, "direction": "in", "priority": 5, "fromNetwork": "net-b", "protocol": "udp", "action": "deny"},
            {"id": 4, "direction": "in", "priority": 5, "fromIp": "192.168.1.0/24", "protocol": 47, "action": "deny"},
            {"id": 5, "direction": "in", "priority": 7, "fromGroup": "group-b", "fromIp": "10.20.0.2",
             "protocol": "icmp", "action": "deny"},
            {"id": 6, "direction": "out", "priority": 5, "toIp": "8.8.8.8", "protocol": "udp", "port": 53,
             "action": "deny"},
            {"id": 7, "direction": "out", "priority": 5, "toGroup": "group-b", "action": "deny"},
            {"id": 8, "direction": "out", "priority": 5, "toNetwork": "net-b", "protocol": 6, "port": 22,
             "action": "allow"},
            {"id": 9, "direction": "in", "port": 8443, "action": "deny"}
        ]}]
    }))
    .unwrap();
    let (a1, b1, b2) = ("10.10.0.1", "10.20.0.1", "10.20.0.2");
    w.check(&[
        ("from group + protocol + port: allow", b1, a1, PROTO_TCP, 80, Allow),
        ("higher priority first: the allow beats the tcp deny", b2, a1, PROTO_TCP, 80, Allow),
        ("tcp deny for any other source", "10.10.0.2", a1, PROTO_TCP, 80, Deny),
        ("tcp deny, other port", b1, a1, PROTO_TCP, 81, Deny),
        ("from network: udp denied", b1, a1, PROTO_UDP, 53, Deny),
        ("from network: only that network", "10.30.0.1", a1, PROTO_UDP, 53, Allow),
        ("from ip + protocol number", "192.168.1.9", a1, 47, 0, Deny),
        ("from ip: outside the prefix", "192.168.2.9", a1, 47, 0, Allow),
        ("group and IP together: both", b2, a1, PROTO_ICMP, 0, Deny),
        ("group and IP together: group only", b1, a1, PROTO_ICMP, 0, Allow),
        ("out: to ip, udp port", a1, "8.8.8.8", PROTO_UDP, 53, Deny),
        ("out: to ip, other port", a1, "8.8.8.8", PROTO_UDP, 54, Allow),
        ("out: to group", a1, b1, PROTO_UDP, 1000, Deny),
        ("out: equal priority, deny first, over the network allow", a1, b1, PROTO_TCP, 22, Deny),
        ("out: to network, allow", a1, "10.20.9.9", PROTO_TCP, 22, Allow),
        ("port without protocol: any protocol with ports", "1.1.1.1", a1, PROTO_UDP, 8443, Deny),
        ("port without protocol: not icmp", "1.1.1.1", a1, PROTO_ICMP, 0, Allow),
        ("no rule matches: allowed", "1.1.1.1", a1, PROTO_ICMP, 0, Allow),
        ("group without policies: open", b2, b1, PROTO_TCP, 80, Allow),
        ("pods outside any group: open", OUTSIDE, b1, PROTO_TCP, 80, Allow),
    ]);
}

#[test]
fn contiv_priority_higher_number_first() {
    let mut w = contiv_demo_world();
    w.contiv.policies[0].rules = serde_json::from_value(json!([
        {"id": 1, "direction": "in", "protocol": "tcp", "action": "deny"},
        {"id": 2, "direction": "in", "priority": 10, "protocol": "tcp", "port": 6379, "action": "allow"}
    ]))
    .unwrap();
    w.check(&[
        ("priority 10 allow before priority 1 deny", "10.1.1.4", "10.1.1.2", PROTO_TCP, 6379, Allow),
        ("the deny takes the rest", "10.1.1.4", "10.1.1.2", PROTO_TCP, 6380, Deny),
    ]);
}

#[test]
fn contiv_and_network_policy_combined() {
    let mut w = contiv_demo_world();
    w.contiv.policies[0].rules.push(
        serde_json::from_value(
            json!({"id": 2, "direction": "in", "priority": 1, "fromIp": "1.2.3.4", "protocol": "tcp", "port": 22,
                   "action": "allow"}),
        )
        .unwrap(),
    );
    let w = w.with(policy(
        "default",
        "noping-from-clients",
        json!({"podSelector": {"matchLabels": {"io.contiv.net-group": "noping-epg"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]}),
    ));
    let np_pod = "10.1.1.2";
    w.check(&[
        ("a Contiv deny beats a NetworkPolicy allow", CLIENT, np_pod, PROTO_ICMP, 0, Deny),
        ("NetworkPolicy allow after the Contiv rules", CLIENT, np_pod, PROTO_TCP, 6379, Allow),
        ("a Contiv allow passes an isolated pod", "1.2.3.4", np_pod, PROTO_TCP, 22, Allow),
        ("no Contiv rule, isolated by the NetworkPolicy", "1.2.3.4", np_pod, PROTO_TCP, 6379, Deny),
        ("no Contiv rule, no isolation elsewhere", "1.2.3.4", "10.1.1.3", PROTO_TCP, 6379, Allow),
    ]);
    let (t, _) = w.table();
    let ids: Vec<&str> = t.rules().filter(|r| r.pod.to_string() == np_pod).map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids, vec!["contiv:icmpPol/1", "contiv:icmpPol/2", "np:default/noping-from-clients/ingress/0"]);
    let denied = t.evaluate(CLIENT.parse().unwrap(), np_pod.parse().unwrap(), PROTO_ICMP, 0, 0);
    assert_eq!(denied.direction, Some(Direction::Ingress));
    assert_eq!(t.rule(denied.rule.unwrap()).unwrap().id, "contiv:icmpPol/1");
}

#[test]
fn rule_ids_are_stable_and_readable() {
    let w = World::new().with(policy(
        "default",
        "client-out",
        json!({"podSelector": {"matchLabels": {"role": "client"}}, "policyTypes": ["Ingress", "Egress"],
               "ingress": [{"ports": [{"port": 22}, {"protocol": "UDP", "port": 53}]}],
               "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                           "ports": [{"port": 443}, {"port": "http"}]}]}),
    ));
    let (t, _) = w.table();
    let ids: Vec<String> = t.rules().map(|r| format!("{} {}", r.direction, r.id)).collect();
    assert_eq!(
        ids,
        vec![
            "ingress np:default/client-out/ingress/0/tcp",
            "ingress np:default/client-out/ingress/0/udp",
            "egress np:default/client-out/egress/0/tcp",
            "egress np:default/client-out/egress/0/tcp/named:80",
            "egress np:default/client-out/egress/0/tcp/named:8080",
        ]
    );
    // The same objects in another order compile to the same table.
    let mut w2 = World::new();
    w2.pods.reverse();
    let w2 = w2.with(w.policies[0].clone());
    assert_eq!(w2.table().0.dump(), t.dump());
}

#[test]
fn invalid_parts_match_nothing_and_warn() {
    let w = World::new().with(policy(
        "default",
        "broken",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [
                   {"from": [{"ipBlock": {"cidr": "not-a-cidr"}}]},
                   {"from": [{"ipBlock": {"cidr": "192.168.0.0/16"}, "podSelector": {}}]},
                   {"from": [{"podSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}]},
                   {"ports": [{"protocol": "ICMP"}, {"port": 90, "endPort": 80}, {"port": "http", "endPort": 90}]},
                   {"from": [{"ipBlock": {"cidr": "fd00::/8"}}]}]}),
    ));
    let (t, c) = w.table();
    assert_eq!(c.warnings.len(), 6, "{:#?}", c.warnings);
    assert!(c.warnings.iter().all(|w| w.contains("networkpolicy default/broken ingress rule")), "{:#?}", c.warnings);
    for (src, proto, port) in [("192.168.1.1", PROTO_TCP, 80), (CLIENT, PROTO_ICMP, 0), (CLIENT, PROTO_TCP, 85)] {
        let d = t.evaluate(src.parse().unwrap(), WEB.parse().unwrap(), proto, 1, port);
        assert_eq!(d.verdict, Deny, "{src} {proto} {port}: the pod stays isolated, nothing is allowed");
    }
}

#[test]
fn pods_the_policy_cannot_see_are_left_out() {
    let mut w = World::new();
    let mut host = pod("default", "agent", "10.0.0.1", json!({"app": "web"}), &[]);
    host.spec.as_mut().unwrap().host_network = Some(true);
    let mut done = pod("default", "job", "10.1.0.99", json!({"app": "web"}), &[]);
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let dup = pod("default", "zz-dup", WEB, json!({"app": "web"}), &[]);
    w.pods.extend([host, done, dup]);
    let w = w.with(policy("default", "web", json!({"podSelector": {"matchLabels": {"app": "web"}}})));
    let c = w.compile().unwrap();
    let names: Vec<&str> = c.acl.pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["default/web", "default/web2"]);
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains("default/zz-dup") && c.warnings[0].contains("default/web"), "{:?}", c.warnings);
}

#[test]
fn contiv_model_is_validated() {
    let base = || -> Value {
        json!({
            "networks": [{"name": "n", "subnet": "10.1.1.0/24", "gateway": "10.1.1.1", "vni": 1}],
            "groups": [{"name": "g", "network": "n", "policies": ["p"]}],
            "policies": [{"name": "p", "rules": []}]
        })
    };
    let with_rule = |r: Value| {
        let mut m = base();
        m["policies"][0]["rules"] = json!([r]);
        m
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "unknown network",
            {
                let mut m = base();
                m["groups"][0]["network"] = json!("x");
                m
            },
            "network \"x\" does not exist",
        ),
        (
            "unknown policy",
            {
                let mut m = base();
                m["groups"][0]["policies"] = json!(["x"]);
                m
            },
            "policy \"x\" does not exist",
        ),
        (
            "duplicate group",
            {
                let mut m = base();
                m["groups"] = json!([{"name": "g", "network": "n"}, {"name": "g", "network": "n"}]);
                m
            },
            "defined twice",
        ),
        (
            "in rule with to",
            with_rule(json!({"id": 1, "direction": "in", "toIp": "1.1.1.1", "action": "deny"})),
            "cannot name a to",
        ),
        (
            "out rule with from",
            with_rule(json!({"id": 1, "direction": "out", "fromGroup": "g", "action": "deny"})),
            "cannot name a from",
        ),
        (
            "network and ip",
            with_rule(json!({"id": 1, "direction": "in", "fromNetwork": "n", "fromIp": "1.1.1.1",
                                             "action": "deny"})),
            "cannot be combined",
        ),
        (
            "unknown group",
            with_rule(json!({"id": 1, "direction": "in", "fromGroup": "x", "action": "deny"})),
            "group \"x\" does not exist",
        ),
        (
            "port with icmp",
            with_rule(json!({"id": 1, "direction": "in", "protocol": "icmp", "port": 1,
                                             "action": "deny"})),
            "which has none",
        ),
        (
            "priority too high",
            with_rule(json!({"id": 1, "direction": "in", "priority": 70000, "action": "deny"})),
            "is over",
        ),
    ];
    for (name, model, want) in cases {
        let model: ContivModel = serde_json::from_value(model).unwrap();
        let err = model.validate().unwrap_err();
        assert!(err.contains(want), "{name}: {err}");
        let w = World { contiv: model, ..World::new() };
        assert!(w.compile().is_err(), "{name}: compile refuses it too");
    }
    // What the parser refuses.
    let bad_parse = [
        json!({"id": 1, "direction": "in", "protocol": "gre", "action": "deny"}),
        json!({"id": 1, "direction": "sideways", "action": "deny"}),
        json!({"id": 1, "direction": "in", "fromIp": "10.1.1.1/24", "action": "deny"}),
        json!({"id": 1, "direction": "in", "action": "deny", "extra": 1}),
    ];
    for r in bad_parse {
        assert!(serde_json::from_value::<ContivRule>(r.clone()).is_err(), "{r}");
    }
    let r: ContivRule = serde_json::from_value(json!({"id": 1, "direction": "in", "fromIp": "10.1.1.1",
                                                      "protocol": 17, "action": "allow"}))
    .unwrap();
    assert_eq!(
        (r.priority, r.protocol, r.from_ip.map(|c| c.0.to_string())),
        (1, Some(ContivProtocol::Udp), Some("10.1.1.1/32".to_string()))
    );
    let back: ContivRule = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
    assert_eq!(back, r);
}

/// Objects from `control/tests/data/policy_golden.json` (a few packets
/// classified for the hit counts) → `AclTable::dump()`, compared with
/// `policy_golden.dump` beside it. `WEIR_BLESS=1` rewrites the expected file.
#[test]
fn golden_dump() {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Fixture {
        node_addrs: Vec<Ipv4Addr>,
        namespaces: Vec<Namespace>,
        pods: Vec<Pod>,
        network_policies: Vec<NetworkPolicy>,
        contiv: ContivModel,
        packets: Vec<(Ipv4Addr, Ipv4Addr, u8, u16)>,
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let input = std::fs::read_to_string(dir.join("policy_golden.json")).unwrap();
    let f: Fixture = serde_json::from_str(&input).unwrap();
    let c = compile(&PolicyInput {
        pods: &f.pods,
        namespaces: &f.namespaces,
        network_policies: &f.network_policies,
        contiv: &f.contiv,
        node_pods: None,
    })
    .unwrap();
    let t = AclTable::build(&c.acl, &f.node_addrs).unwrap();
    let mut got = String::new();
    for (src, dst, proto, port) in &f.packets {
        let d = t.classify(*src, *dst, *proto, 40000, *port);
        let rule = d.rule.and_then(|r| t.rule(r)).map_or("-".to_string(), |r| r.id.to_string());
        got.push_str(&format!("packet {src} -> {dst} proto {proto} port {port}: {} by {rule}\n", d.verdict));
    }
    got.push_str(&t.dump());
    for w in &c.warnings {
        got.push_str(&format!("warning: {w}\n"));
    }
    let path = dir.join("policy_golden.dump");
    if std::env::var_os("WEIR_BLESS").is_some() {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with WEIR_BLESS=1 to write it)", path.display()));
    assert!(
        got == want,
        "the dump differs from {} (run with WEIR_BLESS=1 to accept):\n--- got\n{got}\n--- want\n{want}",
        path.display()
    );
}
