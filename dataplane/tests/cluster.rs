//! The cluster file drives real packets: two weir nodes in namespaces with
//! the pods of config/demo-cluster.yaml, each with a weir-control reading
//! (a copy of) that file. Policy (the Contiv demo's icmpPol, a default-deny
//! NetworkPolicy with an allow for one label, an egress ipBlock with an
//! except), Service changes and a cut connection all come from editing the
//! file; weir-control is killed in the middle of a transfer and restarted.
//! Root and hugepages needed; one at a time (`--test-threads=1`).

mod common;
#[path = "common/demo.rs"]
mod demo;

use std::process::Command;
use std::time::{Duration, Instant};

use demo::*;

/// The Contiv demo, the NetworkPolicies and Service changes, all from the
/// cluster file.
#[test]
fn the_cluster_file_drives_policy_and_services() {
    let demo = Demo::start(DEMO);
    let _servers = [
        serve(demo.pod("web-1"), "web-1", 8080),
        serve(demo.pod("web-2"), "web-2", 8080),
        serve(demo.pod("db-1"), "db-1", 6379),
        serve(demo.pod("noping-1"), "noping-1", 6379),
    ];
    let logs = || demo.logs();

    // Contiv: noping-epg's icmpPol denies ping in; TCP 6379 still reaches
    // it; a pod of poc-epg can be pinged.
    assert!(!demo.pod("poc-1").ping("21.1.1.3", 2), "ping into noping-epg went through\n{}", logs());
    assert_eq!(who(demo.pod("poc-1"), "21.1.1.3", 6379), "noping-1", "{}", logs());
    assert!(demo.pod("noping-1").ping("21.1.1.2", 2), "ping to poc-epg\n{}", logs());

    // NetworkPolicy db-from-client: default deny on db with an allow for
    // app=client on TCP redis; through the db Service too.
    assert_eq!(who(demo.pod("client-1"), "10.96.0.20", 6379), "db-1", "{}", logs());
    assert_eq!(who(demo.pod("client-1"), "10.2.0.3", 6379), "db-1");
    assert_eq!(who(demo.pod("web-1"), "10.96.0.20", 6379), "timeout", "web-1 is not app=client");

    // Services: both backends of web answer; take web-2 out of the
    // EndpointSlice and only web-1 does.
    let names: Vec<String> = (0..20).map(|_| who(demo.pod("client-1"), "10.96.0.10", 80)).collect();
    assert!(names.contains(&"web-1".into()) && names.contains(&"web-2".into()), "{names:?}\n{}", logs());
    let one_backend = DEMO.replacen("- {addresses: [10.2.0.2], conditions: {ready: true}, nodeName: node2}\n", "", 1);
    assert_ne!(one_backend, DEMO);
    demo.edit(&one_backend);
    let names: Vec<String> = (0..10).map(|_| who(demo.pod("client-1"), "10.96.0.10", 80)).collect();
    assert!(names.iter().all(|n| n == "web-1"), "{names:?}");

    // An egress policy to an ipBlock with an except: client-1 may reach
    // 10.2.0.0/16 but not web-2.
    let egress = r#"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-out, namespace: default}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 10.2.0.0/16, except: [10.2.0.2/32]}}]
"#;
    demo.edit(&format!("{one_backend}{egress}"));
    assert_eq!(who(demo.pod("client-1"), "10.2.0.3", 6379), "db-1", "{}", logs());
    assert_eq!(who(demo.pod("client-1"), "10.2.0.2", 8080), "timeout");
    assert_eq!(who(demo.pod("web-1"), "10.2.0.2", 8080), "web-2", "web-1 has no egress policy");

    // weirctl shows the tables the workers run: the rule just added, the
    // Service with its one backend, and the flows through it.
    let weirctl = |n: &DemoNode, what: &str| {
        let out = Command::new(control_bin().with_file_name("weirctl")).arg("-s").arg(n.socket()).arg(what).output().unwrap();
        assert!(out.status.success(), "weirctl {what}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let rules = weirctl(&demo.nodes[0], "rules");
    assert!(rules.contains("np:default/client-out/egress/0") && rules.contains("pod 10.1.0.3 default/client-1"), "{rules}");
    let services = weirctl(&demo.nodes[0], "services");
    assert!(services.contains("SERVICE default/web:http 10.96.0.10:80/6 ClusterIP M=251 [10.1.0.2:8080(251)]"), "{services}");
    let flows = weirctl(&demo.nodes[0], "flows");
    assert!(flows.contains("→ 10.96.0.10:80 proto 6: dst → 10.1.0.2:8080"), "{flows}");

    // An open connection is cut when the policy that allowed it goes.
    let (mut held, hello) = Held::open(demo.pod("client-1"), "10.96.0.20", 6379);
    assert_eq!(hello, "hello db-1");
    assert_eq!(held.exchange(), "ok");
    demo.edit(&format!("{one_backend}{egress}").replace("matchLabels: {app: client}}}]", "matchLabels: {app: nobody}}}]"));
    assert_eq!(held.exchange(), "timeout", "the connection outlived its policy\n{}", logs());

    let s = demo.nodes[1].dp.settled_stats();
    assert!(s.drop_count("policy_denied_ingress") > 0, "{:?}", s.drops);

    // The metrics endpoint: every sample's family typed, the figures there.
    let text = demo.nodes[1].scrape();
    let typed: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    let mut samples = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (head, value) = line.rsplit_once(' ').unwrap();
        let name = head.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|x| name.strip_suffix(x)).unwrap_or(name);
        assert!(typed.contains(&name) || typed.contains(&family), "no TYPE for {line}");
        samples.insert(head.to_string(), value.parse::<f64>().unwrap());
    }
    let denied = samples["weir_dataplane_drops_total{node=\"node2\",reason=\"policy_denied_ingress\"}"];
    assert_eq!(denied as u64, s.drop_count("policy_denied_ingress"), "{text}");
    assert!(samples["weir_control_resyncs_total"] >= 1.0 && samples["weir_control_updates_total"] >= 1.0, "{text}");
    assert_eq!(samples["weir_dataplane_up"], 1.0);
    let s1 = demo.nodes[0].dp.settled_stats();
    assert!(s1.drop_count("policy_denied_egress") > 0, "{:?}", s1.drops);
}

/// weir-control dies in the middle of a transfer through a Service: the
/// transfer goes on; a new weir-control resyncs.
#[test]
fn a_control_restart_breaks_no_flow() {
    let mut demo = Demo::start(DEMO);
    let _servers = [serve(demo.pod("db-1"), "db-1", 6379)];
    let (mut held, hello) = Held::open(demo.pod("client-1"), "10.96.0.20", 6379);
    assert_eq!(hello, "hello db-1");
    assert_eq!(held.exchange(), "ok");
    for n in &mut demo.nodes {
        n.control.kill();
    }
    for _ in 0..5 {
        assert_eq!(held.exchange(), "ok", "{}", demo.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Restarted: a full resync (to the same tables), and the flow lives on.
    let before: Vec<Option<u64>> = demo.nodes.iter().map(|n| n.dp.stats().control_generation).collect();
    for (n, b) in demo.nodes.iter_mut().zip(&before) {
        n.control = Control::start(&n.socket(), &n.file, &n.dir.join("control2.log"));
        n.wait_synced(*b);
    }
    for _ in 0..5 {
        assert_eq!(held.exchange(), "ok", "{}", demo.logs());
    }
    let log = std::fs::read_to_string(demo.nodes[0].dir.join("control2.log")).unwrap();
    assert!(log.contains("resync applied"), "{log}");

    // The database's node restarts its dataplane: weir-control sees a new
    // instance and resyncs it, and the Service and its policy work again.
    drop(held);
    let n2 = &mut demo.nodes[1];
    let config = std::fs::read_to_string(n2.dir.join("node.toml")).unwrap();
    let ns = demo._ns[1].0.clone();
    n2.dp.restart(&ns, &config);
    n2.wait_synced(None);
    let t0 = Instant::now();
    while who(demo.pod("client-1"), "10.96.0.20", 6379) != "db-1" {
        assert!(t0.elapsed() < Duration::from_secs(20), "no db after the dataplane restart\n{}", demo.logs());
    }
    assert_eq!(who(demo.pod("web-1"), "10.96.0.20", 6379), "timeout", "the policy came back with the resync");
}

/// The demo cluster served by a fake Kubernetes API: weir-control watches
/// it (`--kube-url`); an EndpointSlice, a Service and a NetworkPolicy
/// changed in the API change where real packets go.
#[test]
fn the_kubernetes_api_drives_packets() {
    let mut demo = Demo::start(DEMO);
    let dir = demo.nodes[0].dir.clone();
    let mut api = FakeApi::start(&dir, DEMO);
    // Swap each node's file-fed control for one watching the API.
    for n in &mut demo.nodes {
        n.control.kill();
        let before = n.dp.stats().control_generation;
        let log = n.dir.join("control-kube.log");
        let child = Command::new(control_bin())
            .args(["--interval-ms", "100", "--kube-url", &api.url, "--metrics", "off", "--health-check-address", "off"])
            .arg("--dataplane")
            .arg(n.socket())
            .arg("--control-socket")
            .arg(n.dir.join("control-kube.sock"))
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .unwrap();
        n.control = Control(child);
        n.wait_synced(before);
    }
    let _servers = [
        serve(demo.pod("web-1"), "web-1", 8080),
        serve(demo.pod("web-2"), "web-2", 8080),
        serve(demo.pod("db-1"), "db-1", 6379),
    ];
    let logs = || demo.logs();
    let names = |n: usize| -> Vec<String> { (0..n).map(|_| who(demo.pod("client-1"), "10.96.0.10", 80)).collect() };
    let both = names(20);
    assert!(both.contains(&"web-1".into()) && both.contains(&"web-2".into()), "{both:?}\n{}", logs());
    assert_eq!(who(demo.pod("client-1"), "10.96.0.20", 6379), "db-1");

    // An EndpointSlice: web-2 is no longer an endpoint of web.
    let g = demo.nodes[0].dp.stats().control_generation;
    api.apply(
        &dir,
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-x1, namespace: default, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{name: http, protocol: TCP, port: 8080}]\nendpoints:\n- {addresses: [10.1.0.2], conditions: {ready: true}, nodeName: node1}\n",
    );
    demo.nodes[0].wait_synced(g);
    assert!(names(10).iter().all(|n| n == "web-1"), "{}", logs());

    // A Service: web moves to port 81.
    let g = demo.nodes[0].dp.stats().control_generation;
    api.apply(
        &dir,
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec: {type: ClusterIP, clusterIP: 10.96.0.10, clusterIPs: [10.96.0.10], ports: [{name: http, protocol: TCP, port: 81, targetPort: http}]}\n",
    );
    demo.nodes[0].wait_synced(g);
    assert_eq!(who(demo.pod("client-1"), "10.96.0.10", 81), "web-1", "{}", logs());
    assert_ne!(who(demo.pod("client-1"), "10.96.0.10", 80), "web-1");

    // A NetworkPolicy: the database's allow goes to another label.
    let g = demo.nodes[1].dp.stats().control_generation;
    api.apply(
        &dir,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db-from-client, namespace: default}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  policyTypes: [Ingress]\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: web}}}]\n    ports: [{protocol: TCP, port: redis}]\n",
    );
    demo.nodes[1].wait_synced(g);
    assert_eq!(who(demo.pod("client-1"), "10.96.0.20", 6379), "timeout", "{}", logs());
    assert_eq!(who(demo.pod("web-1"), "10.96.0.20", 6379), "db-1");
}
