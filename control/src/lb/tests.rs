//! The allocator's rules, one test each, over objects built here; and
//! (`api_tests`) the status writer, the leader election and the membership
//! against the fake API server through the real kube client.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use serde_json::{json, Value};

use super::*;
use crate::crd::LoadBalancerPool;
use crate::model::ClusterObjects;

mod api_tests;

/// A Service of type LoadBalancer in the making (port 80/TCP, created
/// `created` seconds into the day).
struct Svc(Value);

fn lb(key: &str, created: u32) -> Svc {
    let (ns, name) = key.split_once('/').unwrap();
    Svc(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": ns,
            "creationTimestamp": format!("2024-05-01T{:02}:{:02}:{:02}Z", created / 3600, created / 60 % 60, created % 60),
        },
        "spec": { "type": "LoadBalancer", "ports": [{ "port": 80, "protocol": "TCP" }] },
    }))
}

impl Svc {
    fn ann(mut self, k: &str, v: &str) -> Svc {
        self.0["metadata"]["annotations"][k] = json!(v);
        self
    }
    fn class(mut self, c: &str) -> Svc {
        self.0["spec"]["loadBalancerClass"] = json!(c);
        self
    }
    fn ip(mut self, ip: &str) -> Svc {
        self.0["spec"]["loadBalancerIP"] = json!(ip);
        self
    }
    fn ports(mut self, ports: &[(i32, &str)]) -> Svc {
        self.0["spec"]["ports"] = ports.iter().map(|(p, proto)| json!({ "port": p, "protocol": proto })).collect();
        self
    }
    fn status(mut self, ips: &[&str]) -> Svc {
        let ingress: Vec<Value> = ips.iter().map(|ip| json!({ "ip": ip })).collect();
        self.0["status"] = json!({ "loadBalancer": { "ingress": ingress } });
        self
    }
    fn ty(mut self, t: &str) -> Svc {
        self.0["spec"]["type"] = json!(t);
        self
    }
    fn build(self) -> Service {
        serde_json::from_value(self.0).unwrap()
    }
}

struct PoolB(Value);

fn pool(name: &str, addresses: &[&str]) -> PoolB {
    PoolB(json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "LoadBalancerPool",
        "metadata": { "name": name },
        "spec": { "addresses": addresses },
    }))
}

impl PoolB {
    fn namespaces(mut self, ns: &[&str]) -> PoolB {
        self.0["spec"]["namespaces"] = json!(ns);
        self
    }
    fn class(mut self, c: &str) -> PoolB {
        self.0["spec"]["loadBalancerClass"] = json!(c);
        self
    }
    fn manual(mut self) -> PoolB {
        self.0["spec"]["autoAssign"] = json!(false);
        self
    }
    fn build(self) -> LoadBalancerPool {
        serde_json::from_value(self.0).unwrap()
    }
}

fn cluster(pools: Vec<PoolB>, svcs: Vec<Svc>) -> ClusterObjects {
    ClusterObjects {
        lb_pools: pools.into_iter().map(PoolB::build).collect(),
        services: svcs.into_iter().map(Svc::build).collect(),
        ..ClusterObjects::default()
    }
}

/// A Service's addresses as text.
fn ips(a: &Allocation, key: &str) -> Vec<String> {
    a.ips.get(key).unwrap_or_else(|| panic!("{key} not allocated for: {a:?}")).iter().map(Ipv4Addr::to_string).collect()
}

fn problem<'a>(a: &'a Allocation, key: &str) -> &'a str {
    a.problems.get(key).unwrap_or_else(|| panic!("{key} has no problem: {a:?}"))
}

/// The objects after their allocation is written to status (what the
/// next round, or a restarted leader, starts from).
fn applied(mut objs: ClusterObjects) -> ClusterObjects {
    let a = allocate(&objs);
    apply(&mut objs, &a);
    objs
}

#[test]
fn cidr_pools_skip_network_and_broadcast() {
    let objs = cluster(
        vec![pool("p", &["192.168.50.100/30"])],
        vec![lb("default/a", 1), lb("default/b", 2), lb("default/c", 3)],
    );
    let a = allocate(&objs);
    assert_eq!(ips(&a, "default/a"), ["192.168.50.101"], "not the network address .100");
    assert_eq!(ips(&a, "default/b"), ["192.168.50.102"]);
    assert_eq!(ips(&a, "default/c"), Vec::<String>::new(), "not the broadcast address .103");
    assert_eq!(problem(&a, "default/c"), "no free address in LoadBalancerPools p");
    assert!(!a.problems.contains_key("default/a"));

    // /31 and /32 have no network or broadcast address to spare.
    let objs = cluster(
        vec![pool("p", &["10.0.0.0/31", "10.0.1.7/32"])],
        vec![lb("default/a", 1), lb("default/b", 2), lb("default/c", 3)],
    );
    let a = allocate(&objs);
    assert_eq!(ips(&a, "default/a"), ["10.0.0.0"]);
    assert_eq!(ips(&a, "default/b"), ["10.0.0.1"]);
    assert_eq!(ips(&a, "default/c"), ["10.0.1.7"]);
}

#[test]
fn range_pools_in_name_order() {
    let objs = cluster(
        vec![pool("b-second", &["10.0.9.1/32"]), pool("a-first", &["192.168.50.200-192.168.50.201"])],
        vec![lb("default/a", 1), lb("default/b", 2), lb("default/c", 3)],
    );
    let a = allocate(&objs);
    assert_eq!(ips(&a, "default/a"), ["192.168.50.200"], "a range gives its first address too");
    assert_eq!(ips(&a, "default/b"), ["192.168.50.201"], "and its last");
    assert_eq!(ips(&a, "default/c"), ["10.0.9.1"], "then the next pool by name");
    assert!(a.problems.is_empty(), "{a:?}");
}

#[test]
fn requested_addresses_from_spec_and_annotations() {
    let objs = cluster(
        vec![pool("p", &["192.168.50.96/27"])],
        vec![
            // Older, but auto-assigned: requests are honoured first.
            lb("default/auto", 1),
            lb("default/spec", 2).ip("192.168.50.97"),
            lb("default/weir", 3).ann(IPS_ANNOTATION, "192.168.50.110"),
            lb("default/metallb", 4).ann(METALLB_IPS_ANNOTATION, "192.168.50.111, 192.168.50.112"),
            lb("default/outside", 5).ip("10.9.9.9"),
            lb("default/bad", 6).ann(IPS_ANNOTATION, "192.168.50.113,nonsense"),
            lb("default/v6", 7).ann(METALLB_IPS_ANNOTATION, "fd00::1"),
            // The weir annotation is preferred over the others.
            lb("default/both", 8).ip("192.168.50.120").ann(IPS_ANNOTATION, "192.168.50.121"),
        ],
    );
    let a = allocate(&objs);
    assert_eq!(ips(&a, "default/spec"), ["192.168.50.97"]);
    assert_eq!(ips(&a, "default/auto"), ["192.168.50.98"], "the requested .97 was not given away");
    assert_eq!(ips(&a, "default/weir"), ["192.168.50.110"]);
    assert_eq!(ips(&a, "default/metallb"), ["192.168.50.111", "192.168.50.112"]);
    assert_eq!(ips(&a, "default/both"), ["192.168.50.121"]);
    assert!(ips(&a, "default/outside").is_empty());
    assert_eq!(
        problem(&a, "default/outside"),
        "requested 10.9.9.9 is in no LoadBalancerPool for this Service (namespace default, loadBalancerClass weir.dev/lb)"
    );
    assert!(ips(&a, "default/bad").is_empty(), "all requested or none");
    assert!(problem(&a, "default/bad").contains("\"nonsense\" is not an IPv4 address"), "{a:?}");
    assert!(problem(&a, "default/v6").contains("IPv6"), "{a:?}");
    assert_eq!(a.problems.len(), 3, "{a:?}");
}

#[test]
fn a_contested_address_goes_to_the_older_service() {
    // z is older than a: creationTimestamp decides before the name.
    let objs = cluster(
        vec![pool("p", &["192.168.50.0/24"])],
        vec![lb("default/a", 20).ip("192.168.50.7"), lb("default/z", 10).ip("192.168.50.7")],
    );
    let a = allocate(&objs);
    assert_eq!(ips(&a, "default/z"), ["192.168.50.7"]);
    assert!(ips(&a, "default/a").is_empty());
    assert!(problem(&a, "default/a").starts_with("192.168.50.7 is held by default/z"), "{a:?}");
    // Same age: namespace/name decides.
    let objs = cluster(
        vec![pool("p", &["192.168.50.0/24"])],
        vec![lb("ns2/a", 5).ip("192.168.50.7"), lb("ns1/b", 5).ip("192.168.50.7")],
    );
    let a = allocate(&objs);
    assert_eq!(ips(&a, "ns1/b"), ["192.168.50.7"]);
    assert!(problem(&a, "ns2/a").starts_with("192.168.50.7 is held by ns1/b"));
}

#[test]
fn sharing_needs_the_same_key_and_disjoint_ports() {
    let dns = |key: &str, t: u32, share: &str, proto: &str| {
        lb(key, t).ip("192.168.50.53").ann(SHARED_IP_ANNOTATION, share).ports(&[(53, proto)])
    };
    let p = || vec![pool("p", &["192.168.50.0/24"])];
    // Same key, TCP and UDP: one address for both.
    let a = allocate(&cluster(p(), vec![dns("default/tcp", 1, "dns", "TCP"), dns("default/udp", 2, "dns", "UDP")]));
    assert_eq!(ips(&a, "default/tcp"), ["192.168.50.53"]);
    assert_eq!(ips(&a, "default/udp"), ["192.168.50.53"]);
    assert!(a.problems.is_empty(), "{a:?}");
    // MetalLB's annotation is the same key.
    let metallb =
        lb("default/udp", 2).ip("192.168.50.53").ann(METALLB_SHARED_IP_ANNOTATION, "dns").ports(&[(53, "UDP")]);
    let a = allocate(&cluster(p(), vec![dns("default/tcp", 1, "dns", "TCP"), metallb]));
    assert_eq!(ips(&a, "default/udp"), ["192.168.50.53"]);
    // A common port: refused.
    let a = allocate(&cluster(p(), vec![dns("default/one", 1, "dns", "TCP"), dns("default/two", 2, "dns", "TCP")]));
    assert!(ips(&a, "default/two").is_empty());
    assert_eq!(problem(&a, "default/two"), "192.168.50.53 is held by default/one (both use port 53/TCP)");
    // Different keys: refused.
    let a = allocate(&cluster(p(), vec![dns("default/one", 1, "x", "TCP"), dns("default/two", 2, "y", "UDP")]));
    assert!(problem(&a, "default/two").contains("values differ"), "{a:?}");
    // Only one of them willing: refused.
    let plain = lb("default/two", 2).ip("192.168.50.53").ports(&[(53, "UDP")]);
    let a = allocate(&cluster(p(), vec![dns("default/one", 1, "dns", "TCP"), plain]));
    assert!(problem(&a, "default/two").starts_with("192.168.50.53 is held by default/one"), "{a:?}");
    // Auto-assigned with a key: the address already shared under it.
    let auto =
        |key: &str, t: u32, share: &str, port: i32| lb(key, t).ann(SHARED_IP_ANNOTATION, share).ports(&[(port, "TCP")]);
    let a = allocate(&cluster(
        p(),
        vec![lb("default/first", 1), auto("default/web", 2, "k", 80), auto("default/tls", 3, "k", 443)],
    ));
    assert_eq!(ips(&a, "default/first"), ["192.168.50.1"]);
    assert_eq!(ips(&a, "default/web"), ["192.168.50.2"]);
    assert_eq!(ips(&a, "default/tls"), ["192.168.50.2"], "shares with web");
}

#[test]
fn released_addresses_go_to_the_next_service() {
    let p = || vec![pool("p", &["192.168.50.100/30"])];
    // a and b hold .101 and .102; the pool is full.
    let before = applied(cluster(p(), vec![lb("default/a", 1), lb("default/b", 2)]));
    assert_eq!(ingress_ips(&before.services[0]), [Ipv4Addr::new(192, 168, 50, 101)]);
    let with_c = |mut objs: ClusterObjects| {
        objs.services.push(lb("default/c", 3).build());
        objs
    };
    assert!(allocate(&with_c(before.clone())).problems.contains_key("default/c"));
    // a deleted: c gets its address.
    let mut deleted = before.clone();
    deleted.services.remove(0);
    let a = allocate(&with_c(deleted));
    assert_eq!(ips(&a, "default/c"), ["192.168.50.101"]);
    assert_eq!(ips(&a, "default/b"), ["192.168.50.102"]);
    // a turned ClusterIP: released (its status is cleared), c gets it.
    let mut retyped = with_c(before);
    let svc_a = std::mem::replace(&mut retyped.services[0], lb("x/x", 0).build());
    let mut v = serde_json::to_value(&svc_a).unwrap();
    v["spec"]["type"] = json!("ClusterIP");
    retyped.services[0] = serde_json::from_value(v).unwrap();
    let a = allocate(&retyped);
    assert_eq!(ips(&a, "default/c"), ["192.168.50.101"]);
    assert!(!a.ips.contains_key("default/a"));
    assert!(a.released.contains("default/a"));
    apply(&mut retyped, &a);
    assert!(ingress_ips(&retyped.services[0]).is_empty(), "a's ingress cleared");
    assert_eq!(ingress_ips(&retyped.services[2]), [Ipv4Addr::new(192, 168, 50, 101)]);
}

#[test]
fn an_address_held_is_kept() {
    let objs = cluster(
        vec![pool("p", &["192.168.50.96/28"])],
        vec![
            // Holds .105 while .97 is free: keeps it.
            lb("default/a", 1).status(&["192.168.50.105"]),
            // Holds one outside every pool: gets a new one.
            lb("default/b", 2).status(&["10.1.1.1"]),
            // Newer than c but already holds .98: keeps it; c, which now
            // asks for .98, gets a problem naming the holder.
            lb("default/holder", 3).status(&["192.168.50.98"]),
            lb("default/c", 0).ip("192.168.50.98"),
            // Two hold the same address: the older keeps it, the other is
            // given a new one.
            lb("default/d", 4).status(&["192.168.50.106"]),
            lb("default/e", 5).status(&["192.168.50.106"]),
        ],
    );
    let a = allocate(&objs);
    assert_eq!(ips(&a, "default/a"), ["192.168.50.105"]);
    assert_eq!(ips(&a, "default/b"), ["192.168.50.97"]);
    assert_eq!(ips(&a, "default/holder"), ["192.168.50.98"]);
    assert!(problem(&a, "default/c").starts_with("192.168.50.98 is held by default/holder"), "{a:?}");
    assert_eq!(ips(&a, "default/d"), ["192.168.50.106"]);
    assert_eq!(ips(&a, "default/e"), ["192.168.50.99"]);
    // Written back and computed again (a restart): the same answer.
    let mut objs = objs;
    apply(&mut objs, &a);
    assert_eq!(allocate(&objs), a);
}

#[test]
fn the_order_of_the_objects_changes_nothing() {
    let svcs = || {
        vec![
            lb("default/a", 3),
            lb("default/b", 1).ann(IPS_ANNOTATION, "192.168.50.2"),
            lb("other/c", 2),
            lb("default/d", 2).status(&["192.168.50.9"]),
        ]
    };
    let pools = || vec![pool("y", &["192.168.50.0/28"]), pool("x", &["192.168.60.0/30"]).namespaces(&["other"])];
    let a = allocate(&cluster(pools(), svcs()));
    let mut reversed = svcs();
    reversed.reverse();
    let mut rpools = pools();
    rpools.reverse();
    assert_eq!(allocate(&cluster(rpools, reversed)), a);
    assert_eq!(ips(&a, "other/c"), ["192.168.60.1"], "pool x comes first by name");
}

#[test]
fn pools_per_namespace_and_class() {
    let objs = cluster(
        vec![
            pool("a-team", &["10.0.1.1/32"]).namespaces(&["team"]),
            pool("b-all", &["10.0.2.1-10.0.2.9"]),
            pool("c-other", &["10.0.3.1/32"]).class("example.com/other"),
        ],
        vec![
            lb("team/t", 1),
            lb("default/d", 2),
            lb("default/weir-class", 3).class(LB_CLASS),
            lb("default/other-class", 4).class("example.com/other"),
            lb("default/other-req", 5).class("example.com/other").ip("10.0.2.5"),
            lb("default/asks-team", 6).ip("10.0.1.1"),
        ],
    );
    let a = allocate(&objs);
    assert_eq!(ips(&a, "team/t"), ["10.0.1.1"]);
    assert_eq!(ips(&a, "default/d"), ["10.0.2.1"], "a-team is not for namespace default");
    assert_eq!(ips(&a, "default/weir-class"), ["10.0.2.2"], "weir's class is the pools without one");
    assert_eq!(ips(&a, "default/other-class"), ["10.0.3.1"], "only its class's pool");
    assert!(problem(&a, "default/other-req").starts_with("requested 10.0.2.5 is in no LoadBalancerPool"));
    assert!(problem(&a, "default/asks-team").starts_with("requested 10.0.1.1 is in no LoadBalancerPool"));
    // A pool's class no Service without it ever sees.
    let objs = cluster(vec![pool("only", &["10.0.3.1/32"]).class("example.com/other")], vec![lb("default/d", 1)]);
    assert!(problem(&allocate(&objs), "default/d").starts_with("no LoadBalancerPool is for this Service"));
}

#[test]
fn auto_assign_false_gives_only_requested_addresses() {
    let objs = cluster(
        vec![pool("manual", &["10.0.5.0/24"]).manual()],
        vec![lb("default/auto", 1), lb("default/asks", 2).ip("10.0.5.20"), lb("default/held", 3).status(&["10.0.5.1"])],
    );
    let a = allocate(&objs);
    assert_eq!(ips(&a, "default/asks"), ["10.0.5.20"]);
    assert!(ips(&a, "default/auto").is_empty());
    assert!(problem(&a, "default/auto").contains("autoAssign: false"), "{a:?}");
    // Holding one without asking for it is not asking.
    assert!(ips(&a, "default/held").is_empty());
}

#[test]
fn another_implementations_class_is_left_alone() {
    let mut objs = cluster(
        vec![pool("p", &["192.168.50.0/24"])],
        vec![
            lb("default/theirs", 1).class("metallb.io/other").status(&["192.168.50.1"]),
            lb("default/mine", 2),
            // Another proxy's Service too.
            lb("default/proxied", 3).status(&["192.168.50.3"]),
        ],
    );
    let mut v = serde_json::to_value(&objs.services[2]).unwrap();
    v["metadata"]["labels"] = json!({ crate::model::SERVICE_PROXY_NAME: "other" });
    objs.services[2] = serde_json::from_value(v).unwrap();
    let a = allocate(&objs);
    assert_eq!(a.ips.keys().collect::<Vec<_>>(), ["default/mine"]);
    assert!(a.problems.is_empty() && a.released.is_empty(), "{a:?}");
    // What they show is not given to anyone else.
    assert_eq!(ips(&a, "default/mine"), ["192.168.50.2"]);
    let before = objs.services.clone();
    apply(&mut objs, &a);
    assert_eq!(objs.services[0], before[0], "status untouched");
    assert_eq!(objs.services[2], before[2], "status untouched");
    let asks = lb("default/asks", 4).ip("192.168.50.1").build();
    objs.services.push(asks);
    assert_eq!(
        problem(&allocate(&objs), "default/asks"),
        "192.168.50.1 is held by default/theirs (of loadBalancerClass metallb.io/other, not weir's)"
    );
}

#[test]
fn not_load_balancer_services_get_nothing() {
    let objs = cluster(
        vec![pool("p", &["192.168.50.0/24"])],
        vec![lb("default/c", 1).ty("ClusterIP"), lb("default/n", 2).ty("NodePort").status(&["10.0.0.1"])],
    );
    let a = allocate(&objs);
    assert!(a.ips.is_empty() && a.problems.is_empty());
    assert!(a.released.is_empty(), "an address of no pool is not weir's to clear");
}

#[test]
fn pool_entries_that_do_not_parse_are_warned_about() {
    let objs = cluster(
        vec![pool("p", &["192.168.50.7/24", "fd00::/64", "10.0.0.9-10.0.0.1", "junk", "10.0.0.5"])],
        vec![lb("default/a", 1)],
    );
    let a = allocate(&objs);
    assert_eq!(a.pool_warnings.len(), 4, "{:?}", a.pool_warnings);
    assert!(a.pool_warnings.iter().all(|w| w.starts_with("LoadBalancerPool p: address ")));
    assert!(a.pool_warnings[1].contains("IPv6"), "{:?}", a.pool_warnings);
    assert!(a.pool_warnings[2].contains("ends before it starts"));
    assert_eq!(ips(&a, "default/a"), ["10.0.0.5"], "the rest of the pool serves");
}

#[test]
fn pools_parse_from_a_cluster_file() {
    let objs = ClusterObjects::from_yaml(
        "apiVersion: weir.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: {name: p}\nspec: {addresses: [192.168.50.100/30], namespaces: [a], loadBalancerClass: x}\n",
    )
    .unwrap();
    let p = &objs.lb_pools[0].spec;
    assert_eq!(p.addresses, ["192.168.50.100/30"]);
    assert_eq!(p.namespaces, ["a"]);
    assert_eq!(p.load_balancer_class.as_deref(), Some("x"));
    assert!(p.auto_assign, "autoAssign defaults to true");
    let err = ClusterObjects::from_yaml(
        "apiVersion: weir.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: {name: p}\nspec: {addresses: [], color: red}\n",
    )
    .unwrap_err();
    assert!(err.contains("LoadBalancerPool p") && err.contains("color"), "{err}");
}
