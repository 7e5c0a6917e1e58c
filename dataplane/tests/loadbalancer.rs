//! Bare-metal LoadBalancer, end to end: two weir nodes and an external
//! client on a bridged underlay (192.168.50.0/24).
//!
//! - Through the (fake) Kubernetes API: weir-control on each node, one of
//!   them the elected allocator, gives a LoadBalancer Service its IP from a
//!   LoadBalancerPool and writes it to the Service's status; the elected
//!   node answers ARP for it. The client reaches the IP; the announcing
//!   node's endpoint goes (healthCheckNodePort 503, the IP moves), then the
//!   node itself is stopped, and the IP moves to the other node, which the
//!   client sees in gratuitous ARP and in its neighbour table.
//! - From a cluster file: nginx from Debian in a pod, as an Ingress proxy
//!   behind a LoadBalancer IP, routes two host names to two Services.
//!
//! Root and hugepages needed; one at a time (`--test-threads=1`).

mod common;
#[path = "common/demo.rs"]
mod demo;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use demo::{control_bin, FakeApi};

const VIP: &str = "192.168.50.100";
const CLIENT_IP: &str = "192.168.50.9";

/// A child process killed (SIGKILL) on drop.
struct Proc(Child);

impl Proc {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The LoadBalancer IPs in a Service's status, read from the fake API.
fn lb_ips(api: &FakeApi, name: &str) -> Vec<String> {
    let v = api.get(&format!("/api/v1/namespaces/default/services/{name}"));
    v["status"]["loadBalancer"]["ingress"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["ip"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// Two weir nodes (node1 192.168.50.1, node2 192.168.50.2) and a client
/// (192.168.50.9) on one bridge; pods on the nodes.
struct LbBed {
    pods: BTreeMap<&'static str, Pod>,
    dps: Vec<Option<Dataplane>>,
    controls: Vec<Option<Proc>>,
    dirs: Vec<PathBuf>,
    client_if: String,
    // Dropped last: the namespaces.
    _nodes: Vec<Netns>,
    client: Netns,
    _under: Netns,
}

impl LbBed {
    /// `pods`: (name, node 1 or 2, last octet of 10.<node>.0.x).
    fn new(pods: &[(&'static str, u8, u8)]) -> LbBed {
        require_root();
        let tag = tag();
        let nodes = vec![Netns::new(format!("wl{tag}-n1")), Netns::new(format!("wl{tag}-n2"))];
        let client = Netns::new(format!("wl{tag}-x"));
        let (under, links) = bridged_underlay(&format!("wl{tag}"), &[&nodes[0], &nodes[1], &client]);
        let client_if = links[2].clone();
        sh(&["ip", "-n", &client.0, "addr", "add", &format!("{CLIENT_IP}/24"), "dev", &client_if]);
        assert!(in_ns(&client.0, &["ethtool", "-K", &client_if, "tx", "off"]).status.success());

        let mut made = BTreeMap::new();
        let mut ports = [String::new(), String::new()];
        for &(name, node, last) in pods {
            let (ip, mac) = (format!("10.{node}.0.{last}"), format!("02:00:00:00:0{node}:{last:02x}"));
            let p = make_pod(
                &nodes[usize::from(node) - 1],
                &format!("{tag}{}{node}", &name[..name.len().min(3)]),
                &ip,
                &mac,
                &format!("10.{node}.0.1"),
                "1450",
            );
            ports[usize::from(node) - 1].push_str(&format!(
                "[[ports]]\nname = \"{name}\"\nkind = \"af_packet\"\niface = \"{}\"\npod = {{ ip = \"{ip}\", mac = \"{mac}\" }}\n\n",
                p.host_if
            ));
            made.insert(name, p);
        }
        let mut dps = Vec::new();
        let mut dirs = Vec::new();
        for (i, ns) in nodes.iter().enumerate() {
            let n = i + 1;
            let dir = std::env::temp_dir().join(format!("weir-lb-{tag}-{n}"));
            std::fs::create_dir_all(&dir).unwrap();
            let config = format!(
                "[node]\nname = \"node{n}\"\npod_cidr = \"10.{n}.0.0/24\"\nnode_ip = \"192.168.50.{n}\"\nunderlay_cidr = \"192.168.50.0/24\"\n\n\
                 [gateway]\nip = \"10.{n}.0.1\"\nmac = \"02:fe:00:00:00:0{n}\"\n\n\
                 [dpdk]\nworker_cores = [1]\nmemory_mb = 256\nmbufs = 8191\n\n\
                 [management]\nsocket = \"{}\"\n\n\
                 [[ports]]\nname = \"uplink\"\nkind = \"af_packet\"\niface = \"{}\"\nuplink = true\n\n{}",
                dir.join("dp.sock").display(),
                links[i],
                ports[i]
            );
            dps.push(Some(start_dataplane(&ns.0, &dir, &config)));
            dirs.push(dir);
        }
        LbBed { pods: made, dps, controls: vec![None, None], dirs, client_if, _nodes: nodes, client, _under: under }
    }

    fn dp(&self, i: usize) -> &Dataplane {
        self.dps[i].as_ref().expect("node stopped")
    }

    /// Starts weir-control for node `i` (0 or 1) with `args`.
    fn start_control(&mut self, i: usize, args: &[&str]) {
        let log = self.dirs[i].join("control.log");
        let child = Command::new(control_bin())
            .args([
                "--interval-ms",
                "100",
                "--metrics",
                "off",
                "--control-socket",
                "off",
                "--node",
                &format!("node{}", i + 1),
                "--dataplane",
            ])
            .arg(self.dirs[i].join("dp.sock"))
            .args(args)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .unwrap();
        self.controls[i] = Some(Proc(child));
    }

    /// Stops node `i`: its weir-control killed (no goodbye: its Leases
    /// must expire), its dataplane shut down.
    fn stop_node(&mut self, i: usize) {
        if let Some(mut c) = self.controls[i].take() {
            c.kill();
        }
        self.dps[i] = None;
    }

    /// SIGTERM to node `i`'s weir-control, as the kubelet stops a pod: it
    /// must exit 0 within a few seconds.
    fn terminate_control(&mut self, i: usize) {
        let mut c = self.controls[i].take().expect("weir-control running");
        sh(&["kill", "-TERM", &c.0.id().to_string()]);
        let t0 = Instant::now();
        loop {
            if let Some(st) = c.0.try_wait().unwrap() {
                assert!(st.success(), "weir-control exited with {st} on SIGTERM\n{}", self.logs());
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(5), "weir-control ignored SIGTERM\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for (i, d) in self.dirs.iter().enumerate() {
            let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
            out.push_str(&format!(
                "--- node{}\n{}\ncontrol:\n{}{}\n",
                i + 1,
                self.dps[i].as_ref().map(Dataplane::logs).unwrap_or_default(),
                read("control.log"),
                read("control.err")
            ));
        }
        out
    }

    /// The node whose dataplane announces `ip`, if exactly one does.
    fn announcer(&self, ip: &str) -> Option<usize> {
        let ip: std::net::Ipv4Addr = ip.parse().unwrap();
        let who: Vec<usize> = (0..2)
            .filter(|i| {
                self.dps[*i].as_ref().is_some_and(|dp| dp.stats().overlay.is_some_and(|o| o.announced.contains(&ip)))
            })
            .collect();
        match who.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    fn wait_announcer(&self, ip: &str, want: Option<usize>) -> usize {
        let t0 = Instant::now();
        loop {
            if let Some(i) = self.announcer(ip).filter(|i| want.is_none_or(|w| w == *i)) {
                return i;
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "{ip} never announced by {want:?}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn uplink_mac(&self, i: usize) -> String {
        self.dp(i).stats().port("uplink").unwrap().mac.to_lowercase()
    }

    /// The MAC the client's kernel has for `ip` (empty if none).
    fn client_neighbour(&self, ip: &str) -> String {
        let out = in_ns(&self.client.0, &["ip", "-j", "neigh", "show", ip]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v[0]["lladdr"].as_str().unwrap_or("").to_lowercase()
    }
}

impl Drop for LbBed {
    fn drop(&mut self) {
        self.controls.clear();
        self.dps.clear();
        self.pods.clear();
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A TCP server on 8080 in a pod: sends "<name> <client address>".
const NAME_SERVER: &str = r#"
import socket, sys
name = sys.argv[1].encode()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(128)
while True:
    c, a = s.accept(); c.sendall(name + b" " + a[0].encode()); c.close()
"#;

fn listen(pod: &Pod, port: u16) {
    let t0 = Instant::now();
    let pat = format!(":{port}");
    while !String::from_utf8_lossy(&in_ns(&pod.ns.0, &["ss", "-ltn"]).stdout).contains(&pat) {
        assert!(t0.elapsed() < Duration::from_secs(10), "nothing listens on {port} in {}", pod.ns.0);
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn name_server(pod: &Pod, name: &str) -> Proc {
    let c = Command::new("ip")
        .args(["netns", "exec", &pod.ns.0, "timeout", "300", "python3", "-c", NAME_SERVER, name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    listen(pod, 8080);
    Proc(c)
}

/// One connection from namespace `ns` to addr:port: what the server said,
/// or "timeout" / "refused".
fn ask(ns: &str, addr: &str, port: u16) -> String {
    let script = "import socket,sys\ntry:\n s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=1); print(s.recv(64).decode())\nexcept ConnectionRefusedError: print('refused')\nexcept OSError: print('timeout')\n";
    let out = in_ns(ns, &["timeout", "20", "python3", "-c", script, addr, &port.to_string()]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Watches ARP on the client's interface for gratuitous ARP (and replies)
/// about one address; each is a line "<op> <sender MAC>" in `file`.
const ARP_WATCH: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806)); s.bind((sys.argv[1], 0))
ip = socket.inet_aton(sys.argv[2])
out = open(sys.argv[3], "a")
out.write("ready\n"); out.flush()
while True:
    f = s.recv(128)
    if len(f) < 42: continue
    op = struct.unpack("!H", f[20:22])[0]
    sha, spa, tpa = f[22:28], f[28:32], f[38:42]
    if spa == ip and tpa == ip:
        kind = "garp"
    elif spa == ip and op == 2:
        kind = "reply"
    else:
        continue
    out.write(kind + " " + ":".join("%02x" % b for b in sha) + "\n"); out.flush()
"#;

/// An HTTP GET of the health check at addr:port: (status, body).
fn health(addr: &str, port: u16) -> Option<(u16, serde_json::Value)> {
    let mut s = std::net::TcpStream::connect((addr, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.get(9..12)?.parse().ok()?;
    Some((code, serde_json::from_str(text.split_once("\r\n\r\n")?.1).ok()?))
}

fn wait_health(addr: &str, port: u16, code: u16, logs: impl Fn() -> String) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        match health(addr, port) {
            Some((c, body)) if c == code => return body,
            got => assert!(t0.elapsed() < Duration::from_secs(15), "{addr}:{port}: {got:?}, want {code}\n{}", logs()),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn nodes_yaml() -> String {
    (1..=2)
        .map(|n| {
            format!(
                "apiVersion: v1\nkind: Node\nmetadata: {{name: node{n}, annotations: {{weir.dev/vtep-mac: \"02:fe:00:00:00:0{n}\"}}}}\nspec: {{podCIDR: 10.{n}.0.0/24}}\nstatus: {{addresses: [{{type: InternalIP, address: 192.168.50.{n}}}]}}\n---\n"
            )
        })
        .collect()
}

/// A LoadBalancer Service `name` on port 80 to `target` of the endpoints
/// `eps` (address, node, ready), with `extra` spec lines.
fn lb_service(name: &str, cluster_ip: &str, extra: &str, target: u16, eps: &[(&str, &str, bool)]) -> String {
    let mut s = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  type: LoadBalancer\n  clusterIP: {cluster_ip}\n  clusterIPs: [{cluster_ip}]\n  ports: [{{name: http, protocol: TCP, port: 80, targetPort: {target}}}]\n{extra}---\n"
    );
    s.push_str(&slice(name, target, eps));
    s
}

fn slice(name: &str, port: u16, eps: &[(&str, &str, bool)]) -> String {
    let mut s = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-x, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: http, protocol: TCP, port: {port}}}]\nendpoints:\n"
    );
    for (ip, node, ready) in eps {
        s.push_str(&format!("- {{addresses: [{ip}], nodeName: {node}, conditions: {{ready: {ready}}}}}\n"));
    }
    s.push_str("---\n");
    s
}

const POOL: &str = "apiVersion: weir.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: {name: underlay}\nspec:\n  addresses: [192.168.50.100-192.168.50.110]\n---\n";

/// Seconds of a membership Lease in this test: how long a stopped node
/// keeps its LoadBalancer IPs.
const LEASE_SECONDS: u64 = 2;

#[test]
fn a_load_balancer_ip_follows_its_endpoints_and_survives_its_node() {
    let mut bed = LbBed::new(&[("web1", 1, 2), ("web2", 2, 2)]);
    let local = "  externalTrafficPolicy: Local\n  healthCheckNodePort: 32100\n";
    let both = [("10.1.0.2", "node1", true), ("10.2.0.2", "node2", true)];
    let objects = nodes_yaml()
        + "apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n---\n"
        + POOL
        + &lb_service("web", "10.96.0.10", local, 8080, &both)
        + &lb_service("asked", "10.96.0.11", "  loadBalancerIP: 192.168.50.105\n", 8080, &both);
    let x = bed.client.0.clone();
    let watch_file = bed.dirs[0].join("arp.txt");
    let _watch = Proc(
        Command::new("ip")
            .args(["netns", "exec", &x, "timeout", "300", "python3", "-c", ARP_WATCH, &bed.client_if, VIP])
            .arg(&watch_file)
            .spawn()
            .unwrap(),
    );
    // Listening before any node can announce anything.
    let t0 = Instant::now();
    while !std::fs::read_to_string(&watch_file).unwrap_or_default().starts_with("ready") {
        assert!(t0.elapsed() < Duration::from_secs(10), "the ARP watcher did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let dir = bed.dirs[0].clone();
    let mut api = FakeApi::start(&dir, &objects);
    let lease = LEASE_SECONDS.to_string();
    for i in 0..2 {
        let hc = format!("127.0.0.{}", i + 1);
        let url = api.url.clone();
        bed.start_control(
            i,
            &[
                "--kube-url",
                &url,
                "--leader-lease-seconds",
                &lease,
                "--membership-lease-seconds",
                &lease,
                "--health-check-address",
                &hc,
            ],
        );
    }
    let _servers = [name_server(&bed.pods["web1"], "web1"), name_server(&bed.pods["web2"], "web2")];
    let garps_from = |mac: &str| -> usize {
        let text = std::fs::read_to_string(&watch_file).unwrap_or_default();
        text.lines().filter(|l| *l == format!("garp {mac}")).count()
    };
    // Gratuitous ARPs come three times a second apart: waits for more than `n`.
    let wait_garps = |mac: &str, n: usize| {
        let t0 = Instant::now();
        while garps_from(mac) <= n {
            assert!(t0.elapsed() < Duration::from_secs(5), "no gratuitous ARP from {mac} seen by the client");
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // The allocator: the first free address for web, the asked-for one for
    // the other, both written to the Services' status.
    let t0 = Instant::now();
    while lb_ips(&api, "web").is_empty() || lb_ips(&api, "asked").is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(20), "no status written back\n{}", bed.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(lb_ips(&api, "web"), vec![VIP]);
    assert_eq!(lb_ips(&api, "asked"), vec!["192.168.50.105"]);
    let leaders: Vec<usize> = (0..2)
        .filter(|i| {
            std::fs::read_to_string(bed.dirs[*i].join("control.log")).unwrap_or_default().contains("allocator: leader")
        })
        .collect();
    assert_eq!(leaders.len(), 1, "exactly one allocator\n{}", bed.logs());

    // One node announces the VIP; the client reaches that node's own
    // endpoint (Local: the client's address kept) and has its MAC.
    let a = bed.wait_announcer(VIP, None);
    let b = 1 - a;
    let (mac_a, mac_b) = (bed.uplink_mac(a), bed.uplink_mac(b));
    let (name_a, name_b) = (format!("web{}", a + 1), format!("web{}", b + 1));
    for _ in 0..5 {
        assert_eq!(ask(&x, VIP, 80), format!("{name_a} {CLIENT_IP}"), "{}", bed.logs());
    }
    assert_eq!(bed.client_neighbour(VIP), mac_a);
    wait_garps(&mac_a, 0);
    // The other Service's IP is answered too (by whichever node has it).
    bed.wait_announcer("192.168.50.105", None);
    let asked = ask(&x, "192.168.50.105", 80);
    assert!(asked.starts_with("web"), "{asked}\n{}", bed.logs());

    // healthCheckNodePort: 200 and one local endpoint on both nodes.
    let hc = |i: usize| format!("127.0.0.{}", i + 1);
    for i in 0..2 {
        let body = wait_health(&hc(i), 32100, 200, || bed.logs());
        assert_eq!(body["localEndpoints"], 1);
        assert_eq!(body["service"]["name"], "web");
    }

    // The announcing node's endpoint goes: its health check says 503, the
    // VIP moves to the other node, which the client learns by ARP.
    let node_a = format!("node{}", a + 1);
    let node_b = format!("node{}", b + 1);
    let ip_a = format!("10.{}.0.2", a + 1);
    let ip_b = format!("10.{}.0.2", b + 1);
    api.apply(&dir, &slice("web", 8080, &[(&ip_a, &node_a, false), (&ip_b, &node_b, true)]));
    let body = wait_health(&hc(a), 32100, 503, || bed.logs());
    assert_eq!(body["localEndpoints"], 0);
    assert_eq!(wait_health(&hc(b), 32100, 200, || bed.logs())["localEndpoints"], 1);
    bed.wait_announcer(VIP, Some(b));
    let t0 = Instant::now();
    while bed.client_neighbour(VIP) != mac_b {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the client still has {}\n{}",
            bed.client_neighbour(VIP),
            bed.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_garps(&mac_b, 0);
    assert_eq!(ask(&x, VIP, 80), format!("{name_b} {CLIENT_IP}"), "{}", bed.logs());

    // Back: both have an endpoint again, so the VIP returns to its first
    // node (the same rank as before).
    api.apply(&dir, &slice("web", 8080, &both));
    bed.wait_announcer(VIP, Some(a));
    let t0 = Instant::now();
    while ask(&x, VIP, 80) != format!("{name_a} {CLIENT_IP}") {
        assert!(t0.elapsed() < Duration::from_secs(10), "the VIP did not come back\n{}", bed.logs());
        std::thread::sleep(Duration::from_millis(100));
    }

    // The announcing node stops (its agent killed, its dataplane gone):
    // within the documented time (membership Lease + 2 s) the other node
    // announces the VIP and the client's connections work again.
    let garps_before = garps_from(&mac_b);
    bed.stop_node(a);
    let stopped = Instant::now();
    let mut answered = String::new();
    while stopped.elapsed() < Duration::from_secs(30) {
        answered = ask(&x, VIP, 80);
        if answered == format!("{name_b} {CLIENT_IP}") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = stopped.elapsed();
    assert_eq!(answered, format!("{name_b} {CLIENT_IP}"), "the VIP never moved\n{}", bed.logs());
    println!("VIP moved to node{} {took:?} after node{} stopped", b + 1, a + 1);
    assert!(
        took <= Duration::from_secs(LEASE_SECONDS + 2),
        "the VIP took {took:?} to move, more than the documented lease + 2 s\n{}",
        bed.logs()
    );
    wait_garps(&mac_b, garps_before);
    assert_eq!(bed.client_neighbour(VIP), mac_b);

    // The survivor allocates now (it is, or becomes, the leader): a new
    // LoadBalancer Service gets the next free address.
    api.apply(&dir, &lb_service("late", "10.96.0.12", "", 8080, &[(&ip_b, &node_b, true)]));
    let t0 = Instant::now();
    while lb_ips(&api, "late").is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(20), "the survivor did not allocate\n{}", bed.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(lb_ips(&api, "late"), vec!["192.168.50.101"]);

    // Stopped by SIGTERM, the survivor (the allocator now) exits cleanly and
    // hands its Lease back: no holder, for a successor to take at once.
    let lease_path = "/apis/coordination.k8s.io/v1/namespaces/weir-system/leases/weir-lb-allocator";
    assert_eq!(api.get(lease_path)["spec"]["holderIdentity"], format!("node{}", b + 1));
    bed.terminate_control(b);
    let spec = &api.get(lease_path)["spec"];
    assert!(spec["holderIdentity"].is_null(), "the Lease is still held: {spec}");
    let s = bed.dp(b).settled_stats();
    for r in ["snat_ports_exhausted", "flow_table_full", "neighbour_timeout"] {
        assert_eq!(s.drop_count(r), 0, "{r}: {:?}", s.drops);
    }
}

/// nginx.conf of the Ingress pod: two host names to two Services.
fn nginx_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
    access_log {d}/nginx-access.log;
    client_body_temp_path {d}/nginx-body;
    proxy_temp_path {d}/nginx-proxy;
    fastcgi_temp_path {d}/nginx-fastcgi;
    uwsgi_temp_path {d}/nginx-uwsgi;
    scgi_temp_path {d}/nginx-scgi;
    server {{
        listen 80 default_server;
        return 404;
    }}
    server {{
        listen 80;
        server_name shop.example.com;
        location / {{ proxy_pass http://10.96.0.31:80; }}
    }}
    server {{
        listen 80;
        server_name blog.example.com;
        location / {{ proxy_pass http://10.96.0.32:80; }}
    }}
}}
"#
    )
}

/// A minimal HTTP server on 8080 in a pod: answers every GET with its name.
const HTTP_NAME: &str = r#"
import http.server, sys
name = sys.argv[1].encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", str(len(name))); self.end_headers()
        self.wfile.write(name)
    def log_message(self, *a): pass
http.server.HTTPServer(("0.0.0.0", 8080), H).serve_forever()
"#;

/// An HTTP GET with a Host header from namespace `ns`: "<status> <body>".
fn http_get(ns: &str, url: &str, host: &str) -> String {
    let out = in_ns(
        ns,
        &["curl", "-s", "-m", "5", "-H", &format!("Host: {host}"), "-o", "/dev/stdout", "-w", " %{http_code}", url],
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn an_ingress_proxy_behind_a_load_balancer_ip_routes_by_host_name() {
    let mut bed = LbBed::new(&[("shop", 1, 2), ("ingress", 1, 3), ("blog", 2, 2)]);
    // The cluster, from a file: every node allocates from the pool itself
    // (the same answer everywhere) and one announces the IP.
    let objects = nodes_yaml()
        + POOL
        + &lb_service("ingress-nginx", "10.96.0.30", "", 80, &[("10.1.0.3", "node1", true)])
        + "apiVersion: v1\nkind: Service\nmetadata: {name: shop, namespace: default}\nspec: {clusterIP: 10.96.0.31, ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]}\n---\n"
        + &slice("shop", 8080, &[("10.1.0.2", "node1", true)])
        + "apiVersion: v1\nkind: Service\nmetadata: {name: blog, namespace: default}\nspec: {clusterIP: 10.96.0.32, ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]}\n---\n"
        + &slice("blog", 8080, &[("10.2.0.2", "node2", true)]);
    for i in 0..2 {
        let file = bed.dirs[i].join("cluster.yaml");
        std::fs::write(&file, &objects).unwrap();
        let f = file.display().to_string();
        bed.start_control(i, &["--cluster-file", &f, "--health-check-address", "off"]);
    }
    let servers = [
        Proc(
            Command::new("ip")
                .args(["netns", "exec", &bed.pods["shop"].ns.0, "timeout", "300", "python3", "-c", HTTP_NAME, "shop"])
                .spawn()
                .unwrap(),
        ),
        Proc(
            Command::new("ip")
                .args(["netns", "exec", &bed.pods["blog"].ns.0, "timeout", "300", "python3", "-c", HTTP_NAME, "blog"])
                .spawn()
                .unwrap(),
        ),
    ];
    listen(&bed.pods["shop"], 8080);
    listen(&bed.pods["blog"], 8080);
    let dir = bed.dirs[0].clone();
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(&dir)).unwrap();
    let ingress_ns = bed.pods["ingress"].ns.0.clone();
    let check = in_ns(&ingress_ns, &["nginx", "-t", "-c", conf.to_str().unwrap()]);
    assert!(check.status.success(), "nginx -t: {}", String::from_utf8_lossy(&check.stderr));
    let _nginx = Proc(
        Command::new("ip")
            .args(["netns", "exec", &ingress_ns, "nginx", "-c", conf.to_str().unwrap(), "-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    listen(&bed.pods["ingress"], 80);
    bed.wait_announcer(VIP, None);

    let x = bed.client.0.clone();
    let url = format!("http://{VIP}/");
    let logs = || {
        let nginx = std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default();
        format!("{}\nnginx:\n{nginx}", bed.logs())
    };
    let t0 = Instant::now();
    while http_get(&x, &url, "shop.example.com") != "shop 200" {
        assert!(t0.elapsed() < Duration::from_secs(20), "no answer through the VIP\n{}", logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    for _ in 0..5 {
        assert_eq!(http_get(&x, &url, "shop.example.com"), "shop 200", "{}", logs());
        assert_eq!(http_get(&x, &url, "blog.example.com"), "blog 200", "{}", logs());
    }
    assert!(http_get(&x, &url, "other.example.com").ends_with(" 404"), "{}", logs());
    drop(servers);
}
