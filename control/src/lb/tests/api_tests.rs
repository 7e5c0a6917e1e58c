//! The status writer, the leader election and the membership against the
//! fake API server, through the real kube client (and the real Kubernetes
//! source feeding `Shared`). Waits are bounded polls. The election's
//! promises are timing promises, so the takeover tests do check elapsed
//! time against the bound the brief sets (duration + renew interval), with
//! [`SLACK`] for a loaded machine.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use serde_json::Value;

use crate::fake_api::FakeApi;
use crate::kube_source::{self, KubeOptions, KubeSource};
use crate::lb::{ingress_ips, spawn, LbHandle, LbOptions, LEADER_LEASE};
use crate::source::Shared;

/// Generous: only a broken implementation waits this long.
const WAIT: Duration = Duration::from_secs(20);
/// The leader Lease's duration in these tests.
const LEASE: Duration = Duration::from_secs(2);
/// The membership Leases' duration in these tests.
const MEMBERSHIP: Duration = Duration::from_secs(2);
/// Scheduling latitude on a busy test machine.
const SLACK: Duration = Duration::from_millis(750);
const NS: &str = "weir-system";

/// A /29: .97 to .102 usable.
const POOL: &str = "apiVersion: weir.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: {name: public}\nspec: {addresses: [192.168.50.96/29]}\n";

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < WAIT, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A Service of type `ty` (port 80), with `extra` YAML lines under
/// metadata (annotations) or spec.
fn service(name: &str, ty: &str, annotations: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default{annotations}}}\nspec: {{type: {ty}, clusterIP: 10.96.0.9, ports: [{{port: 80}}]{spec}}}\n"
    )
}

/// A fake API server with the Kubernetes source feeding a [`Shared`].
struct World {
    api: FakeApi,
    shared: Arc<Shared>,
    _source: KubeSource,
}

impl World {
    fn new(yaml: &str) -> World {
        let api = FakeApi::start();
        if !yaml.is_empty() {
            api.apply(yaml).unwrap();
        }
        let shared = Shared::new();
        let source = kube_source::spawn(config(&api), shared.clone(), KubeOptions::default());
        World { api, shared, _source: source }
    }

    fn lb(&self, identity: &str, node: &str) -> LbHandle {
        let opts = LbOptions {
            namespace: NS.into(),
            node: node.into(),
            identity: identity.into(),
            lease_duration: LEASE,
            membership_duration: MEMBERSHIP,
            interval: Duration::from_millis(200),
        };
        spawn(config(&self.api), self.shared.clone(), opts)
    }

    /// The ingress IPs the fake holds for `default/name`.
    fn ingress(&self, name: &str) -> Vec<String> {
        let svc = self.api.get("Service", "default", name).unwrap_or_else(|| panic!("no Service {name}"));
        let ingress = svc.pointer("/status/loadBalancer/ingress").and_then(Value::as_array).cloned();
        ingress.unwrap_or_default().iter().filter_map(|i| i["ip"].as_str().map(str::to_string)).collect()
    }

    /// Successful status writes, by the writer's User-Agent.
    fn status_writers(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for w in self.api.writes().into_iter().filter(|w| w.path.ends_with("/status") && w.code == 200) {
            *out.entry(w.user_agent).or_default() += 1;
        }
        out
    }

    /// The leader Lease's holder as the fake holds it.
    fn holder(&self) -> Option<String> {
        let lease = self.api.get("Lease", NS, LEADER_LEASE)?;
        lease.pointer("/spec/holderIdentity").and_then(Value::as_str).map(str::to_string)
    }

    /// `default/name` read back through the kube client (a GET).
    fn get(&self, name: &str) -> Service {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let client = kube::Client::try_from(config(&self.api)).unwrap();
            kube::Api::<Service>::namespaced(client, "default").get(name).await.unwrap()
        })
    }
}

fn config(api: &FakeApi) -> kube::Config {
    kube::Config::new(api.url().parse().unwrap())
}

fn agent(identity: &str) -> String {
    format!("weir-control/{} (lb {identity})", env!("CARGO_PKG_VERSION"))
}

#[test]
fn status_is_written_back_and_cleared() {
    let yaml = [
        POOL,
        &service("web", "LoadBalancer", "", ""),
        &service("asks", "LoadBalancer", ", annotations: {weir.dev/load-balancer-ips: 192.168.50.100}", ""),
        &service("spec", "LoadBalancer", "", ", loadBalancerIP: 192.168.50.101"),
        &service("plain", "ClusterIP", "", ""),
    ]
    .join("---\n");
    let w = World::new(&yaml);
    let a = w.lb("a", "node1");
    wait_for("a to lead", || a.is_leader());
    wait_for("the statuses", || {
        w.ingress("web") == ["192.168.50.97"]
            && w.ingress("asks") == ["192.168.50.100"]
            && w.ingress("spec") == ["192.168.50.101"]
    });
    assert!(w.ingress("plain").is_empty());
    let web = w.get("web");
    assert_eq!(ingress_ips(&web), [std::net::Ipv4Addr::new(192, 168, 50, 97)], "read back by GET");

    // Nothing changes, nothing is written (the watch brings the writes
    // back; they match).
    let writes = w.status_writers();
    assert_eq!(writes, BTreeMap::from([(agent("a"), 3)]));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(w.status_writers(), writes, "no writes once converged");

    // web turns ClusterIP: its address is cleared, and the next
    // Service gets it.
    w.api.apply(&service("web", "ClusterIP", "", "")).unwrap();
    wait_for("web's status to be cleared", || w.ingress("web").is_empty());
    w.api.apply(&service("late", "LoadBalancer", "", "")).unwrap();
    wait_for("late's status", || w.ingress("late") == ["192.168.50.97"]);
    // The pool is full now (.98 .99 .102 are free; .100 .101 asked for):
    // three more fit, the fourth gets nothing.
    for name in ["s1", "s2", "s3", "s4"] {
        w.api.apply(&service(name, "LoadBalancer", "", "")).unwrap();
    }
    wait_for("s1..s3's statuses", || {
        w.ingress("s1") == ["192.168.50.98"]
            && w.ingress("s2") == ["192.168.50.99"]
            && w.ingress("s3") == ["192.168.50.102"]
    });
    assert!(w.ingress("s4").is_empty());
    // Deleted: its address goes to the one waiting.
    w.api.delete("Service", "default", "s2").unwrap();
    wait_for("s4 to get s2's address", || w.ingress("s4") == ["192.168.50.99"]);
    a.stop();
    assert_eq!(w.holder(), None, "released on stop");
}

/// Both instances' leadership, sampled as close together as two loads.
fn leaders(a: &LbHandle, b: &LbHandle) -> (bool, bool) {
    (a.is_leader(), b.is_leader())
}

/// Starts a and b and waits for one to lead: (leader, follower, leader's
/// identity, follower's).
fn two(w: &World) -> (LbHandle, LbHandle, &'static str, &'static str) {
    let a = w.lb("a", "node1");
    let b = w.lb("b", "node2");
    wait_for("a leader", || a.is_leader() || b.is_leader());
    if a.is_leader() {
        (a, b, "a", "b")
    } else {
        (b, a, "b", "a")
    }
}

#[test]
fn two_instances_one_leader_one_writer() {
    let w = World::new(POOL);
    let (leader, follower, lid, fid) = two(&w);
    // Exactly one leader at every sample, for longer than the Lease.
    let start = Instant::now();
    let mut applied = false;
    while start.elapsed() < LEASE + LEASE / 2 {
        let (l, f) = leaders(&leader, &follower);
        assert!(l && !f, "leader {l}, follower {f} after {:?}", start.elapsed());
        if !applied && start.elapsed() > LEASE / 4 {
            w.api.apply(&service("web", "LoadBalancer", "", "")).unwrap();
            applied = true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    wait_for("web's status", || w.ingress("web") == ["192.168.50.97"]);
    assert_eq!(w.status_writers(), BTreeMap::from([(agent(lid), 1)]), "only the leader wrote");
    // The API shows the write before the writer has counted it.
    wait_for("the leader to count its write", || leader.status_writes() == 1);
    assert_eq!((leader.status_writes(), follower.status_writes()), (1, 0));

    // A clean stop releases the Lease: the other leads within the
    // Lease's duration.
    let stopped = Instant::now();
    leader.stop();
    wait_for("the follower to lead", || follower.is_leader());
    assert!(stopped.elapsed() < LEASE, "took over after {:?}", stopped.elapsed());
    assert_eq!(w.holder().as_deref(), Some(fid));
    w.api.apply(&service("api", "LoadBalancer", "", "")).unwrap();
    wait_for("api's status", || w.ingress("api") == ["192.168.50.98"]);
    assert_eq!(w.status_writers(), BTreeMap::from([(agent(lid), 1), (agent(fid), 1)]));
}

#[test]
fn a_leader_cut_off_steps_down_before_it_is_replaced() {
    let w = World::new(POOL);
    let (leader, follower, _, fid) = two(&w);
    // The leader's renewals stop (as if cut off from the API server);
    // everything else of it goes on, its status writer included.
    let paused = Instant::now();
    leader.pause_renewals(true);
    let mut stepped_down = None;
    loop {
        let (l, f) = leaders(&leader, &follower);
        assert!(!(l && f), "two leaders after {:?}", paused.elapsed());
        if !l && stepped_down.is_none() {
            stepped_down = Some(paused.elapsed());
        }
        if f {
            break;
        }
        assert!(paused.elapsed() < WAIT, "no takeover");
        std::thread::sleep(Duration::from_millis(2));
    }
    let took_over = paused.elapsed();
    let stepped_down = stepped_down.unwrap();
    assert!(stepped_down < took_over, "stepped down at {stepped_down:?}, replaced at {took_over:?}");
    assert!(took_over <= LEASE + LEASE / 3 + SLACK, "replaced after {took_over:?}");
    assert_eq!(w.holder().as_deref(), Some(fid));
    let transitions = w.api.get("Lease", NS, LEADER_LEASE).unwrap()["spec"]["leaseTransitions"].as_i64();
    assert_eq!(transitions, Some(1));

    // The old leader's writer is alive but no longer writes.
    w.api.apply(&service("web", "LoadBalancer", "", "")).unwrap();
    wait_for("web's status", || w.ingress("web") == ["192.168.50.97"]);
    wait_for("the new leader to count its write", || follower.status_writes() == 1);
    assert_eq!((leader.status_writes(), follower.status_writes()), (0, 1));
    assert_eq!(w.status_writers(), BTreeMap::from([(agent(fid), 1)]));

    // Back in touch, it finds the Lease held and follows.
    leader.pause_renewals(false);
    let back = Instant::now();
    while back.elapsed() < LEASE {
        assert_eq!(leaders(&leader, &follower), (false, true));
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_killed_leader_is_replaced() {
    let w = World::new(POOL);
    let (leader, follower, lid, fid) = two(&w);
    let killed = Instant::now();
    leader.kill();
    assert_eq!(w.holder().as_deref(), Some(lid), "a killed leader releases nothing");
    wait_for("the follower to lead", || follower.is_leader());
    let took_over = killed.elapsed();
    assert!(took_over <= LEASE + LEASE / 3 + SLACK, "replaced after {took_over:?}");
    // Not before the Lease expired as seen from the follower: it was last
    // renewed at most a renew interval before the kill.
    assert!(took_over >= LEASE - LEASE / 3, "replaced already after {took_over:?}");
    assert_eq!(w.holder().as_deref(), Some(fid));
}

#[test]
fn membership_follows_health() {
    let w = World::new("");
    // No Leases to be had: no answer yet, rather than a wrong one.
    w.api.fail("Lease", true);
    let a = w.lb("a", "node1");
    let b = w.lb("b", "node2");
    a.set_healthy(true);
    b.set_healthy(true);
    std::thread::sleep(MEMBERSHIP / 2);
    assert_eq!(a.live_nodes(), None);
    w.api.fail("Lease", false);
    let both: BTreeSet<String> = ["node1".to_string(), "node2".to_string()].into();
    wait_for("both to see both", || a.live_nodes().as_ref() == Some(&both) && b.live_nodes().as_ref() == Some(&both));
    assert!(w.api.get("Lease", NS, "weir-node-node1").is_some());

    // node2's dataplane is unhealthy: it stops renewing, and counts
    // itself out at once; node1 sees it go within its Lease's duration
    // (and the list interval).
    let unhealthy = Instant::now();
    b.set_healthy(false);
    let only1: BTreeSet<String> = ["node1".to_string()].into();
    assert_eq!(b.live_nodes(), Some(only1.clone()));
    assert_eq!(a.live_nodes().as_ref(), Some(&both), "not dropped before its Lease could expire");
    wait_for("node1 to see node2 go", || a.live_nodes().as_ref() == Some(&only1));
    let gone = unhealthy.elapsed();
    assert!(gone <= MEMBERSHIP + MEMBERSHIP / 3 + SLACK, "node2 left after {gone:?}");

    // Healthy again: back.
    b.set_healthy(true);
    wait_for("node2 back", || a.live_nodes().as_ref() == Some(&both));
}
