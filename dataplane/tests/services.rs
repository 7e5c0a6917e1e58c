//! Service namespace tests: a ClusterIP in front of backend pods, real kernel
//! TCP/UDP clients and servers, one node. Root and hugepages needed; one at a
//! time (`--test-threads=1`).

mod common;
#[path = "common/demo.rs"]
mod demo;

use std::process::{Child, Command, Stdio};

use common::*;

/// A server in `pod` answering every TCP connection on 8080, and every UDP
/// datagram on 5353, with the pod's name and the address it sees the
/// client as. Killed on drop.
struct NameServer(Child);

impl NameServer {
    fn start(pod: &Pod, name: &str) -> NameServer {
        let child = Command::new("ip")
            .args(["netns", "exec", &pod.ns.0, "timeout", "120", "python3", "-c", NAME_SERVER, name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = std::time::Instant::now();
        while !in_ns(&pod.ns.0, &["ss", "-ltn", "sport", "= :8080"]).stdout.windows(5).any(|w| w == b":8080") {
            assert!(t0.elapsed() < std::time::Duration::from_secs(10), "server in {name} did not listen");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        NameServer(child)
    }
}

impl Drop for NameServer {
    fn drop(&mut self) {
        // SIGTERM to `timeout`, which passes it on to the server (a SIGKILL
        // would leave the server running until its own timeout).
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

const NAME_SERVER: &str = r#"
import socket, sys, threading
name = sys.argv[1].encode()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 5353))
def udp():
    while True:
        d, a = u.recvfrom(2048); u.sendto(name + b" " + a[0].encode(), a)
threading.Thread(target=udp, daemon=True).start()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(128)
while True:
    c, a = s.accept(); c.sendall(name + b" " + a[0].encode()); c.close()
"#;

/// Opens `n` TCP connections to addr:port (and, with `udp`, sends n UDP
/// datagrams to addr:53 from n ports) and prints what answered, one per line.
const CLIENT: &str = r#"
import socket, sys
addr, port, n, proto = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
lost = 0
for i in range(n):
    if lost >= 5:
        print("gave up"); break
    try:
        if proto == "tcp":
            s = socket.create_connection((addr, port), timeout=2)
            print(s.recv(64).decode()); s.close()
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
            s.sendto(b"who?", (addr, port)); print(s.recvfrom(64)[0].decode()); s.close()
    except ConnectionRefusedError:
        print("refused")
    except socket.timeout:
        print("timeout"); lost += 1
"#;

/// The names of the backends that answered `n` connections (or "refused",
/// "timeout").
fn client(pod: &Pod, addr: &str, port: u16, n: usize, proto: &str) -> Vec<String> {
    let full = client_in(&pod.ns.0, addr, port, n, proto);
    full.iter().map(|l| l.split(' ').next().unwrap_or("").to_string()).collect()
}

/// `client` from any namespace, with each answer in full: "name address".
fn client_in(ns: &str, addr: &str, port: u16, n: usize, proto: &str) -> Vec<String> {
    let out = in_ns(ns, &["timeout", "120", "python3", "-c", CLIENT, addr, &port.to_string(), &n.to_string(), proto]);
    assert!(out.status.success(), "client: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
}

fn count(answers: &[String], name: &str) -> usize {
    answers.iter().filter(|a| *a == name).count()
}

#[test]
fn cluster_ip_spreads_connections_over_its_backends() {
    let bed = Bed::new(4);
    let services = r#"
[[services]]
name = "default/web"
cluster_ips = ["10.96.0.10"]
ports = [{ port = 80, protocol = "tcp", target_port = 8080 }, { port = 53, protocol = "udp", target_port = 5353 }]
backends = [{ ip = "10.1.0.3" }, { ip = "10.1.0.4" }, { ip = "10.1.0.5" }]

[[services]]
name = "default/nobody"
cluster_ips = ["10.96.0.11"]
ports = [{ port = 80, protocol = "tcp" }]

[[services]]
name = "default/sticky"
cluster_ips = ["10.96.0.12"]
ports = [{ port = 80, protocol = "tcp", target_port = 8080 }]
backends = [{ ip = "10.1.0.3" }, { ip = "10.1.0.4" }, { ip = "10.1.0.5" }]
affinity_timeout_seconds = 10800
"#;
    let config = bed.config(&[0, 1, 2, 3]).replace("mbufs = 8191", "mbufs = 16383") + services;
    let dp = bed.start(&config);
    let client_pod = &bed.pods[0];
    // The pods reach the Service CIDR through their gateway like any address.
    let _servers: Vec<NameServer> =
        bed.pods[1..].iter().zip(["b1", "b2", "b3"]).map(|(p, n)| NameServer::start(p, n)).collect();

    let n = 1000;
    let answers = client(client_pod, "10.96.0.10", 80, n, "tcp");
    assert_eq!(answers.len(), n, "{answers:?}\n{}\n{:#?}", dp.logs(), dp.stats());
    let counts: Vec<usize> = ["b1", "b2", "b3"].iter().map(|b| count(&answers, b)).collect();
    assert_eq!(counts.iter().sum::<usize>(), n, "every connection answered by a backend: {answers:?}\n{}", dp.logs());
    // Maglev gives each backend a third of the slots (within 1%); 1000
    // connections with random source ports land binomially (σ ≈ 14.9):
    // ±75 is about 5σ.
    for c in &counts {
        assert!((258..=408).contains(c), "shares {counts:?}");
    }

    // UDP through the same Service: every datagram answered by a backend.
    let udp = client(client_pod, "10.96.0.10", 53, 30, "udp");
    assert_eq!(udp.iter().filter(|a| a.starts_with('b')).count(), 30, "{udp:?}");

    // sessionAffinity ClientIP: every connection of the client to one backend.
    let sticky = client(client_pod, "10.96.0.12", 80, 30, "tcp");
    assert!(sticky[0].starts_with('b') && sticky.iter().all(|a| *a == sticky[0]), "{sticky:?}");

    // No endpoints: refused at once (ICMP port unreachable), not a timeout.
    let refused = client(client_pod, "10.96.0.11", 80, 3, "tcp");
    assert_eq!(refused, vec!["refused"; 3]);

    let s = dp.settled_stats();
    assert!(s.replies["icmp_port_unreachable"] >= 3, "{:?}", s.replies);
    assert_eq!(s.drop_count("flow_table_full"), 0);
    assert!(dp.shutdown().success());
}

/// A server that sends the pod's name on every TCP connection and then
/// echoes what it receives (long-lived connections), and answers UDP with
/// the name.
const ECHO_SERVER: &str = r#"
import socket, sys, threading
name = sys.argv[1].encode()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 5353))
def udp():
    while True:
        d, a = u.recvfrom(2048); u.sendto(name, a)
def serve(c):
    try:
        c.sendall(name)
        while True:
            d = c.recv(64)
            if not d: break
            c.sendall(d)
    except OSError:
        pass
threading.Thread(target=udp, daemon=True).start()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(128)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// Opens 30 TCP connections and one UDP socket to the Service, prints who
/// answered, waits for a line on stdin, then uses each again and prints
/// what happened.
const HOLDING_CLIENT: &str = r#"
import socket, sys
conns = []
for i in range(30):
    c = socket.create_connection(("10.96.0.10", 80), timeout=5); conns.append((c, c.recv(64).decode()))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5); u.bind(("0.0.0.0", 40001))
u.sendto(b"?", ("10.96.0.10", 53)); print("udp", u.recvfrom(64)[0].decode())
for c, n in conns: print("tcp", n)
sys.stdout.flush()
sys.stdin.readline()
u.sendto(b"?", ("10.96.0.10", 53)); print("udp", u.recvfrom(64)[0].decode())
for c, n in conns:
    try:
        c.sendall(b"ping"); r = c.recv(64)
        print("ok" if r == b"ping" else "closed", n)
    except (ConnectionResetError, BrokenPipeError):
        print("reset", n)
    except socket.timeout:
        print("timeout", n)
sys.stdout.flush()
"#;

fn web(backends: &[&str]) -> Vec<weir_dataplane::config::ServiceConfig> {
    let list: Vec<String> = backends.iter().map(|b| format!("{{ ip = \"{b}\" }}")).collect();
    let text = format!(
        "[[services]]\nname = \"default/web\"\ncluster_ips = [\"10.96.0.10\"]\n\
         ports = [{{ port = 80, protocol = \"tcp\", target_port = 8080 }}, {{ port = 53, protocol = \"udp\", target_port = 5353 }}]\n\
         backends = [{}]\n",
        list.join(", ")
    );
    #[derive(serde::Deserialize)]
    struct S {
        services: Vec<weir_dataplane::config::ServiceConfig>,
    }
    toml::from_str::<S>(&text).unwrap().services
}

#[test]
fn backend_changes_keep_live_flows_reset_dead_tcp_and_move_udp() {
    use std::io::{BufRead, BufReader, Write};
    use weir_dataplane::api::{Reply, Request};

    let bed = Bed::new(4);
    let dp = bed.start(&bed.config(&[0, 1, 2, 3]).replace("mbufs = 8191", "mbufs = 16383"));
    let ips = ["10.1.0.3", "10.1.0.4", "10.1.0.5"];
    match dp.call(Request::SetServices { services: web(&ips) }) {
        Reply::Applied { .. } => {}
        other => panic!("set_services: {other:?}"),
    }
    let names = ["b1", "b2", "b3"];
    let _servers: Vec<Child> = bed.pods[1..]
        .iter()
        .zip(names)
        .map(|(p, n)| {
            let c = Command::new("ip")
                .args(["netns", "exec", &p.ns.0, "timeout", "120", "python3", "-c", ECHO_SERVER, n])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            while !in_ns(&p.ns.0, &["ss", "-ltn", "sport", "= :8080"]).stdout.windows(5).any(|w| w == b":8080") {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            c
        })
        .collect();

    let mut client = Command::new("ip")
        .args(["netns", "exec", &bed.pods[0].ns.0, "timeout", "60", "python3", "-c", HOLDING_CLIENT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    let mut next = || {
        line.clear();
        out.read_line(&mut line).unwrap();
        line.trim().to_string()
    };
    let udp_before = next();
    let tcp_before: Vec<String> = (0..30).map(|_| next()).collect();
    // Remove the backend the UDP flow was given.
    let gone = udp_before.strip_prefix("udp ").unwrap().to_string();
    let idx = names.iter().position(|n| *n == gone).unwrap();
    let left: Vec<&str> = ips.iter().enumerate().filter(|(i, _)| *i != idx).map(|(_, ip)| *ip).collect();
    match dp.call(Request::SetServices { services: web(&left) }) {
        Reply::Applied { .. } => {}
        other => panic!("set_services: {other:?}"),
    }
    client.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let udp_after = next();
    let tcp_after: Vec<String> = (0..30).map(|_| next()).collect();
    let _ = client.wait();

    assert_ne!(udp_after, udp_before, "the UDP flow moved to a live backend on its next packet");
    assert!(udp_after.starts_with("udp b"), "{udp_after}");
    let mut kept = 0;
    for (before, after) in tcp_before.iter().zip(&tcp_after) {
        let name = before.strip_prefix("tcp ").unwrap();
        if name == gone {
            assert_eq!(after, &format!("reset {name}"), "a connection to the removed backend is reset");
        } else {
            assert_eq!(after, &format!("ok {name}"), "a connection to a remaining backend lives on");
            kept += 1;
        }
    }
    assert!(kept > 0 && kept < 30, "connections spread over the backends: {tcp_before:?}");
    // A bad Service list is refused whole, and changes nothing.
    let mut bad = web(&left);
    bad[0].external_ips = vec!["224.0.0.1".parse().unwrap()];
    match dp.call(Request::SetServices { services: bad }) {
        Reply::Error { message } => assert!(message.contains("external_ips"), "{message}"),
        other => panic!("bad services accepted: {other:?}"),
    }
    let s = dp.settled_stats();
    assert!(s.replies["tcp_reset"] > 0, "{:?}", s.replies);
}

/// Hairpin: a backend pod reaches its own Service and is answered by itself.
#[test]
fn a_pod_reaches_itself_through_its_service() {
    let bed = Bed::new(2);
    let services = r#"
[[services]]
name = "default/solo"
cluster_ips = ["10.96.0.20"]
ports = [{ port = 80, protocol = "tcp", target_port = 8080 }]
backends = [{ ip = "10.1.0.3" }]
"#;
    let dp = bed.start(&(bed.config(&[0, 1]) + services));
    let _server = NameServer::start(&bed.pods[1], "solo");
    let own = client_in(&bed.pods[1].ns.0, "10.96.0.20", 80, 5, "tcp");
    // It sees itself as the gateway address (its own would be a martian).
    assert_eq!(own, vec!["solo 10.1.0.1"; 5], "the backend through its own Service\n{}", dp.logs());
    let other = client(&bed.pods[0], "10.96.0.20", 80, 5, "tcp");
    assert_eq!(other, vec!["solo"; 5], "another pod through the Service");
    assert!(dp.shutdown().success());
}

/// NodePort and externalIPs from an "external" client on the underlay: two
/// weir nodes with a backend pod each, all three on one bridge. Under
/// externalTrafficPolicy Cluster both backends answer and see the node's
/// address; under Local only the node's own backend answers and sees the
/// client's.
/// Two weir nodes and an external client (192.168.50.9, which routes the
/// externalIP 192.168.60.10 via node 1) on a bridged underlay; a pod on
/// each node (10.1.0.2, 10.2.0.2).
struct OutsideBed {
    // Dropped in this order: pods before the namespaces they hang off.
    n1: OverlayNode,
    n2: OverlayNode,
    n1ns: Netns,
    n2ns: Netns,
    ext: Netns,
    _under: Netns,
}

impl OutsideBed {
    fn new(tag: &str) -> OutsideBed {
        let (n1ns, n2ns, ext) =
            (Netns::new(format!("ws{tag}-n1")), Netns::new(format!("ws{tag}-n2")), Netns::new(format!("ws{tag}-x")));
        let (under, links) = bridged_underlay(&format!("ws{tag}"), &[&n1ns, &n2ns, &ext]);
        // The external client: on the underlay, the externalIP routed via node 1.
        let x = ext.0.as_str();
        sh(&["ip", "-n", x, "addr", "add", "192.168.50.9/24", "dev", &links[2]]);
        assert!(in_ns(x, &["ethtool", "-K", &links[2], "tx", "off"]).status.success());
        sh(&["ip", "-n", x, "route", "add", "192.168.60.10/32", "via", "192.168.50.1"]);

        let n1 = OverlayNode::new(tag, 1, &n1ns, &links[0], "1450");
        let n2 = OverlayNode::new(tag, 2, &n2ns, &links[1], "1450");
        OutsideBed { n1, n2, n1ns, n2ns, ext, _under: under }
    }
}

#[test]
fn node_port_from_outside_under_both_traffic_policies() {
    require_root();
    let tag = tag();
    let bed = OutsideBed::new(&tag);
    let (n1, n2, n1ns, n2ns) = (&bed.n1, &bed.n2, &bed.n1ns, &bed.n2ns);
    let x = bed.ext.0.as_str();
    let services = r#"
[[services]]
name = "default/web"
cluster_ips = ["10.96.0.10"]
external_ips = ["192.168.60.10"]
ports = [{ port = 80, protocol = "tcp", target_port = 8080, node_port = 30080 },
         { port = 53, protocol = "udp", target_port = 5353, node_port = 30053 }]
backends = [{ ip = "10.1.0.2" }, { ip = "10.2.0.2" }]

[[services]]
name = "default/web-local"
cluster_ips = ["10.96.0.11"]
external_traffic_policy = "local"
ports = [{ port = 80, protocol = "tcp", target_port = 8080, node_port = 30081 }]
backends = [{ ip = "10.1.0.2" }, { ip = "10.2.0.2" }]
"#;
    let extra1 = remote("node2", "192.168.50.2", "10.2.0.0/24", VTEP2_MAC) + services;
    let extra2 = remote("node1", "192.168.50.1", "10.1.0.0/24", VTEP1_MAC) + services;
    let dp1 = start_dataplane(&n1ns.0, &n1.dir, &n1.config(1, &extra1));
    let dp2 = start_dataplane(&n2ns.0, &n2.dir, &n2.config(2, &extra2));
    let _servers = [NameServer::start(&n1.pod, "b1"), NameServer::start(&n2.pod, "b2")];
    let logs = || format!("{}\n{}\n{:#?}\n{:#?}", dp1.logs(), dp2.logs(), dp1.stats(), dp2.stats());

    // Cluster: both backends, each sees node 1's address.
    let answers = client_in(x, "192.168.50.1", 30080, 40, "tcp");
    assert_eq!(answers.len(), 40, "{answers:?}\n{}", logs());
    for name in ["b1", "b2"] {
        assert!(answers.contains(&format!("{name} 192.168.50.1")), "{name} never answered: {answers:?}\n{}", logs());
    }
    assert!(answers.iter().all(|a| a.ends_with(" 192.168.50.1")), "client not translated: {answers:?}");
    // The same over UDP, and through the externalIP.
    let udp = client_in(x, "192.168.50.1", 30053, 10, "udp");
    assert!(udp.iter().all(|a| a == "b1 192.168.50.1" || a == "b2 192.168.50.1"), "{udp:?}\n{}", logs());
    let viaext = client_in(x, "192.168.60.10", 80, 10, "tcp");
    assert!(viaext.iter().all(|a| a.ends_with(" 192.168.50.1")), "{viaext:?}\n{}", logs());

    // Local: each node's own backend, which sees the client itself.
    let local1 = client_in(x, "192.168.50.1", 30081, 20, "tcp");
    assert_eq!(local1, vec!["b1 192.168.50.9"; 20], "{}", logs());
    let local2 = client_in(x, "192.168.50.2", 30081, 20, "tcp");
    assert_eq!(local2, vec!["b2 192.168.50.9"; 20], "{}", logs());

    // Pods reach the NodePort of the other node too (through the tunnel).
    let from_pod = client(&n2.pod, "192.168.50.1", 30080, 10, "tcp");
    assert!(from_pod.iter().all(|a| a == "b1" || a == "b2"), "{from_pod:?}\n{}", logs());

    for dp in [&dp1, &dp2] {
        let s = dp.settled_stats();
        for r in ["snat_ports_exhausted", "flow_table_full", "service_no_local_backend", "neighbour_timeout"] {
            assert_eq!(s.drop_count(r), 0, "{r}: {:?}", s.drops);
        }
    }
    drop((dp1, dp2));
}

/// weir-dataplane is killed (SIGKILL) under live NodePort connections from
/// outside, and comes back with three more endpoints for the Service (pods
/// that do not exist, so a connection Maglev now sends there is lost).
/// With its flow table in a file (`dpdk.flow_state`) every connection goes
/// on with its backend and its SNAT port; with `flow_state = "off"` the
/// same crash breaks the connections whose pick moved.
#[test]
fn connections_outlive_a_dataplane_crash() {
    require_root();
    let tag = tag();
    let bed = OutsideBed::new(&tag);
    let (n1, n2, x) = (&bed.n1, &bed.n2, bed.ext.0.as_str());
    let services = |backends: &str| {
        format!(
            "[[services]]\nname = \"default/web\"\ncluster_ips = [\"10.96.0.10\"]\n\
             ports = [{{ port = 80, protocol = \"tcp\", target_port = 8080, node_port = 30080 }}]\n\
             backends = [{backends}]\n"
        )
    };
    let two = r#"{ ip = "10.1.0.2" }, { ip = "10.2.0.2" }"#;
    let five = format!(r#"{two}, {{ ip = "10.2.0.50" }}, {{ ip = "10.2.0.51" }}, {{ ip = "10.2.0.52" }}"#);
    let state = n1.dir.join("flows");
    let config1 = |backends: &str, flow_state: &str| {
        let extra = remote("node2", "192.168.50.2", "10.2.0.0/24", VTEP2_MAC) + &services(backends);
        let c = n1.config(1, &extra).replace("mbufs = 8191", &format!("mbufs = 8191\nflow_state = \"{flow_state}\""));
        assert!(c.contains("flow_state"), "{c}");
        c
    };
    let ns1 = bed.n1ns.0.as_str();
    let mut dp1 = start_dataplane(ns1, &n1.dir, &config1(two, &state.display().to_string()));
    let extra2 = remote("node1", "192.168.50.1", "10.1.0.0/24", VTEP1_MAC) + &services(two);
    let dp2 = start_dataplane(&bed.n2ns.0, &n2.dir, &n2.config(2, &extra2));
    let _servers = [demo::serve(&n1.pod, "b1", 8080), demo::serve(&n2.pod, "b2", 8080)];

    // Connections through node 1's NodePort until both backends hold some.
    let mut held = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    while held.len() < 12 || names.len() < 2 {
        assert!(held.len() < 40, "one backend only: {names:?}\n{}", dp1.logs());
        let (h, hello) = demo::Held::open_in(x, "192.168.50.1", 30080);
        assert!(hello == "hello b1" || hello == "hello b2", "{hello:?}\n{}\n{}", dp1.logs(), dp2.logs());
        names.insert(hello);
        held.push(h);
    }
    let exchange = |held: &mut Vec<demo::Held>| held.iter_mut().map(|h| h.exchange()).collect::<Vec<_>>();
    assert!(exchange(&mut held).iter().all(|r| r == "ok"), "{}", dp1.logs());

    dp1.crash_and_start(ns1, &config1(&five, &state.display().to_string()));
    let log = dp1.logs();
    let kept = log
        .lines()
        .find_map(|l| l.split("live entries").next().filter(|_| l.contains("flows kept in")))
        .and_then(|l| l.rsplit(' ').nth(1).and_then(|n| n.parse::<usize>().ok()));
    // Two entries per connection (the client's direction and the reply's).
    assert!(kept.is_some_and(|n| n >= 2 * held.len()), "{kept:?}\n{log}");
    let after = exchange(&mut held);
    assert!(after.iter().all(|r| r == "ok"), "after the crash: {after:?}\n{}\n{:#?}", dp1.logs(), dp1.stats());

    // The same crash with the flows in the process's memory only.
    dp1.crash_and_start(ns1, &config1(&five, "off"));
    let lost = exchange(&mut held);
    assert!(lost.iter().any(|r| r != "ok"), "no connection moved: {lost:?}");
    drop((dp1, dp2));
}
