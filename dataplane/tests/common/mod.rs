//! A test bed of network namespaces: a node namespace where weir-dataplane
//! runs and pod namespaces joined to it by veth pairs (af_packet ports).
//! Everything made here is removed on drop, processes by PID.
//!
//! Needs root, hugepages (scripts/setup.sh) and iproute2, ping, ethtool, python3.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use weir_dataplane::api::{Reply, Request, Stats};
use weir_dataplane::mgmt;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A short tag unique to this test process and call: keeps interface names
/// under 15 characters and apart from other runs.
pub fn tag() -> String {
    format!("{:x}{}", std::process::id() % 0xffff, SEQ.fetch_add(1, Ordering::SeqCst))
}

pub fn require_root() {
    // /proc/self/status tells the effective uid.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)).unwrap_or("1");
    assert_eq!(euid, "0", "namespace tests need root (run scripts/test.sh as root)");
}

pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn sh_ok(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `args` inside namespace `ns`.
pub fn in_ns(ns: &str, args: &[&str]) -> std::process::Output {
    Command::new("ip").args(["netns", "exec", ns]).args(args).output().expect("ip netns exec")
}

pub struct Netns(pub String);

impl Netns {
    pub fn new(name: String) -> Netns {
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Whatever a test left running in the namespace goes with it (a
        // process would otherwise outlive the namespace, and hold the test
        // run's output pipes open).
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.0]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

pub struct Pod {
    pub ns: Netns,
    pub ip: Ipv4Addr,
    pub mac: String,
    /// The veth end in the node namespace (weir's port).
    pub host_if: String,
}

impl Pod {
    /// Kernel counters of the pod's eth0: (rx packets, tx packets).
    pub fn eth0_packets(&self) -> (u64, u64) {
        let out = in_ns(&self.ns.0, &["ip", "-s", "-j", "link", "show", "eth0"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
        let s = &v[0]["stats64"];
        (s["rx"]["packets"].as_u64().unwrap(), s["tx"]["packets"].as_u64().unwrap())
    }

    pub fn ping(&self, dst: &str, count: u32) -> bool {
        let c = count.to_string();
        in_ns(&self.ns.0, &["ping", "-c", &c, "-i", "0.2", "-W", "2", "-q", dst]).status.success()
    }
}

/// A node namespace with pods; weir's ports are the pods' veth peers.
pub struct Bed {
    pub tag: String,
    pub node: Netns,
    pub pods: Vec<Pod>,
    pub dir: PathBuf,
}

pub const GW_IP: &str = "10.1.0.1";
pub const GW_MAC: &str = "02:fe:00:00:00:01";

impl Bed {
    /// `n` pods: 10.1.0.2, 10.1.0.3, ... with MACs 02:00:00:00:00:02, ...
    pub fn new(n: usize) -> Bed {
        require_root();
        let tag = tag();
        let node = Netns::new(format!("wt{tag}-node"));
        let dir = std::env::temp_dir().join(format!("weir-test-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut pods = Vec::new();
        for i in 0..n {
            let ns = Netns::new(format!("wt{tag}-p{i}"));
            let host_if = format!("wt{tag}p{i}");
            let ip = Ipv4Addr::new(10, 1, 0, 2 + i as u8);
            let mac = format!("02:00:00:00:00:{:02x}", 2 + i);
            sh(&[
                "ip", "link", "add", &host_if, "netns", &node.0, "type", "veth", "peer", "name", "eth0", "netns", &ns.0,
            ]);
            let p = &ns.0;
            for (n, dev) in [(node.0.as_str(), host_if.as_str()), (p.as_str(), "eth0")] {
                // No IPv6 on these links: no neighbour discovery noise in the counters.
                in_ns(n, &["sysctl", "-qw", &format!("net.ipv6.conf.{dev}.disable_ipv6=1")]);
            }
            sh(&["ip", "-n", p, "link", "set", "eth0", "address", &mac]);
            // af_packet sees what the kernel hands the veth: with tx checksum
            // offload the TCP/UDP checksum is left for "the NIC" and would go
            // out wrong. Pods on veth + af_packet compute their own.
            let off = in_ns(p, &["ethtool", "-K", "eth0", "tx", "off"]);
            assert!(off.status.success(), "ethtool -K eth0 tx off: {}", String::from_utf8_lossy(&off.stderr));
            sh(&["ip", "-n", p, "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
            sh(&["ip", "-n", p, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", p, "route", "add", "default", "via", GW_IP]);
            sh(&["ip", "-n", &node.0, "link", "set", &host_if, "up"]);
            pods.push(Pod { ns, ip, mac, host_if });
        }
        Bed { tag, node, pods, dir }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("dp.sock")
    }

    /// The TOML of a port for pod `i`.
    pub fn port_toml(&self, i: usize) -> String {
        let p = &self.pods[i];
        format!(
            "[[ports]]\nname = \"pod-{i}\"\nkind = \"af_packet\"\niface = \"{}\"\npod = {{ ip = \"{}\", mac = \"{}\" }}\n",
            p.host_if, p.ip, p.mac
        )
    }

    /// A node config with ports for the pods listed in `ports`.
    pub fn config(&self, ports: &[usize]) -> String {
        let mut c = format!(
            "[node]\nname = \"wt{tag}\"\npod_cidr = \"10.1.0.0/24\"\n\n[gateway]\nip = \"{GW_IP}\"\nmac = \"{GW_MAC}\"\n\n\
             [dpdk]\nmain_core = 0\nworker_cores = [1]\nmemory_mb = 256\nmbufs = 8191\nfile_prefix = \"wt{tag}\"\n\n\
             [management]\nsocket = \"{}\"\n\n",
            self.socket().display(),
            tag = self.tag
        );
        for i in ports {
            c.push_str(&self.port_toml(*i));
        }
        c
    }

    /// Starts weir-dataplane in the node namespace with `config`.
    pub fn start(&self, config: &str) -> Dataplane {
        start_dataplane(&self.node.0, &self.dir, config)
    }
}

/// Starts weir-dataplane in namespace `ns` with `config` (files in `dir`, whose
/// `dp.sock` must be the config's management socket).
pub fn start_dataplane(ns: &str, dir: &Path, config: &str) -> Dataplane {
    let cfg = dir.join("node.toml");
    std::fs::write(&cfg, config).unwrap();
    let log = dir.join("dataplane.log");
    let child = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_weir-dataplane"), "-c"])
        .arg(&cfg)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.join("dataplane.err")).unwrap())
        .spawn()
        .expect("start weir-dataplane");
    let mut dp = Dataplane { child: Some(child), socket: dir.join("dp.sock"), dir: dir.to_path_buf() };
    dp.wait_ready();
    dp
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.pods.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Dataplane {
    child: Option<Child>,
    pub socket: PathBuf,
    dir: PathBuf,
}

impl Dataplane {
    fn wait_ready(&mut self) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            if let Ok(Reply::Hello { .. }) = mgmt::call(&self.socket, &Request::Hello) {
                return;
            }
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("weir-dataplane exited ({st}) before it came up: {}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("weir-dataplane did not come up: {}", self.logs());
    }

    pub fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!("stdout:\n{}\nstderr:\n{}", read("dataplane.log"), read("dataplane.err"))
    }

    pub fn call(&self, req: Request) -> Reply {
        mgmt::call(&self.socket, &req).unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    pub fn stats(&self) -> Stats {
        match self.call(Request::Stats) {
            Reply::Stats(s) => s,
            other => panic!("stats: {other:?}"),
        }
    }

    /// Stats once the counters have stopped moving (traffic has drained).
    pub fn settled_stats(&self) -> Stats {
        let mut last = self.stats();
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(200));
            let s = self.stats();
            if s.ports == last.ports && s.drops == last.drops {
                return s;
            }
            last = s;
        }
        last
    }

    /// Shuts this dataplane down and starts a new one in namespace `ns` with
    /// `config` (same directory and socket).
    pub fn restart(&mut self, ns: &str, config: &str) {
        let old =
            std::mem::replace(self, Dataplane { child: None, socket: self.socket.clone(), dir: self.dir.clone() });
        assert!(old.shutdown().success(), "weir-dataplane did not exit cleanly");
        *self = start_dataplane(ns, &self.dir.clone(), config);
    }

    /// Kills weir-dataplane with SIGKILL (nothing is cleaned up or handed
    /// over, as in a crash) and starts it again with `config`.
    pub fn crash_and_start(&mut self, ns: &str, config: &str) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        *self = start_dataplane(ns, &self.dir.clone(), config);
    }

    /// Asks for a clean shutdown; returns the exit status.
    pub fn shutdown(mut self) -> std::process::ExitStatus {
        let _ = mgmt::call(&self.socket, &Request::Shutdown);
        let mut child = self.child.take().unwrap();
        let t0 = Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!("weir-dataplane did not exit after shutdown");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = mgmt::call(&self.socket, &Request::Shutdown);
            std::thread::sleep(Duration::from_millis(300));
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// TCP: pod `from` streams `bytes` random bytes to pod `to` port 5001; returns
/// (sent sha256, received sha256, received length).
pub fn tcp_stream(from: &Pod, to: &Pod, bytes: usize) -> (String, String, usize) {
    tcp_stream_ns(&from.ns.0, &to.ns.0, &to.ip.to_string(), bytes)
}

/// `tcp_stream` between any two namespaces: the server listens in `to_ns` on
/// all addresses; the client in `from_ns` connects to `to_ip`.
pub fn tcp_stream_ns(from_ns: &str, to_ns: &str, to_ip: &str, bytes: usize) -> (String, String, usize) {
    let server = Command::new("ip")
        .args(["netns", "exec", to_ns, "timeout", "60", "python3", "-c", TCP_SERVER])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it listens.
    let t0 = Instant::now();
    while !in_ns(to_ns, &["ss", "-ltn", "sport", "= :5001"]).stdout.windows(5).any(|w| w == b":5001") {
        assert!(t0.elapsed() < Duration::from_secs(10), "server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let client = in_ns(from_ns, &["timeout", "60", "python3", "-c", TCP_CLIENT, to_ip, &bytes.to_string()]);
    let srv = server.wait_with_output().unwrap();
    assert!(client.status.success(), "client: {}", String::from_utf8_lossy(&client.stderr));
    assert!(srv.status.success(), "server: {}", String::from_utf8_lossy(&srv.stderr));
    let c = String::from_utf8_lossy(&client.stdout).trim().to_string();
    let s = String::from_utf8_lossy(&srv.stdout).trim().to_string();
    let (slen, sh) = s.split_once(' ').unwrap();
    (c, sh.to_string(), slen.parse().unwrap())
}

const TCP_SERVER: &str = r#"
import socket, hashlib
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5001)); s.listen(1); s.settimeout(30)
c, _ = s.accept(); c.settimeout(30); h = hashlib.sha256(); n = 0
while True:
    d = c.recv(1 << 16)
    if not d: break
    h.update(d); n += len(d)
print(n, h.hexdigest())
"#;

const TCP_CLIENT: &str = r#"
import socket, hashlib, os, sys
data = os.urandom(int(sys.argv[2]))
s = socket.create_connection((sys.argv[1], 5001), timeout=10)
s.sendall(data); s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
print(hashlib.sha256(data).hexdigest())
"#;

/// Sends raw frames (hex, one per line) out of `pod`'s eth0 with an AF_PACKET socket.
pub fn inject(pod: &Pod, frames: &[Vec<u8>]) {
    let hex: String = frames.iter().map(|f| f.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n").collect();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &pod.ns.0, "python3", "-c", INJECT])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(hex.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "inject: {}", String::from_utf8_lossy(&out.stderr));
}

const INJECT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for line in sys.stdin:
    line = line.strip()
    if line:
        s.send(bytes.fromhex(line))
"#;

// ------------------------------------------------ overlay nodes

/// An underlay: a namespace `<prefix>-u` with a bridge `br0`, and a veth
/// from each of `ends` (named `<prefix>u<i>` there, IPv6 off, up) to a port
/// of the bridge. Returns the bridge's namespace and the ends' interfaces.
pub fn bridged_underlay(prefix: &str, ends: &[&Netns]) -> (Netns, Vec<String>) {
    let under = Netns::new(format!("{prefix}-u"));
    sh(&["ip", "-n", &under.0, "link", "add", "br0", "type", "bridge"]);
    sh(&["ip", "-n", &under.0, "link", "set", "br0", "up"]);
    let mut links = Vec::new();
    for (i, ns) in ends.iter().enumerate() {
        let (dev, br_port) = (format!("{prefix}u{i}"), format!("{prefix}b{i}"));
        sh(&["ip", "link", "add", &dev, "netns", &ns.0, "type", "veth", "peer", "name", &br_port, "netns", &under.0]);
        in_ns(&ns.0, &["sysctl", "-qw", &format!("net.ipv6.conf.{dev}.disable_ipv6=1")]);
        in_ns(&under.0, &["sysctl", "-qw", &format!("net.ipv6.conf.{br_port}.disable_ipv6=1")]);
        sh(&["ip", "-n", &under.0, "link", "set", &br_port, "master", "br0", "up"]);
        sh(&["ip", "-n", &ns.0, "link", "set", &dev, "up"]);
        links.push(dev);
    }
    (under, links)
}

pub const VTEP1_MAC: &str = "02:fe:00:00:00:01";
pub const VTEP2_MAC: &str = "02:fe:00:00:00:02";

/// A node namespace with one pod (veth + af_packet) and one uplink veth end.
pub struct OverlayNode {
    pub pod: Pod,
    pub dir: PathBuf,
    pub uplink_if: String,
}

impl OverlayNode {
    /// Node `i` (1 or 2): pods in 10.i.0.0/24, node IP 192.168.50.i.
    pub fn new(tag: &str, i: u8, node: &Netns, uplink_if: &str, pod_mtu: &str) -> OverlayNode {
        let dir = std::env::temp_dir().join(format!("weir-ovl-{tag}-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let pod = make_pod(
            node,
            &format!("{tag}-p{i}"),
            &format!("10.{i}.0.2"),
            &format!("02:00:00:00:0{i}:02"),
            &format!("10.{i}.0.1"),
            pod_mtu,
        );
        OverlayNode { pod, dir, uplink_if: uplink_if.to_string() }
    }

    pub fn config(&self, i: u8, remote: &str) -> String {
        format!(
            r#"
[node]
name = "node{i}"
pod_cidr = "10.{i}.0.0/24"
node_ip = "192.168.50.{i}"
underlay_cidr = "192.168.50.0/24"

[gateway]
ip = "10.{i}.0.1"
mac = "02:fe:00:00:00:0{i}"

[dpdk]
worker_cores = [1]
memory_mb = 256
mbufs = 8191

[management]
socket = "{sock}"

[[ports]]
name = "pod"
kind = "af_packet"
iface = "{pod_if}"
pod = {{ ip = "{pod_ip}", mac = "{pod_mac}" }}

[[ports]]
name = "uplink"
kind = "af_packet"
iface = "{up}"
uplink = true

{remote}
"#,
            sock = self.dir.join("dp.sock").display(),
            pod_if = self.pod.host_if,
            pod_ip = self.pod.ip,
            pod_mac = self.pod.mac,
            up = self.uplink_if,
        )
    }
}

impl Drop for OverlayNode {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A pod namespace `wo<name>` whose eth0 is a veth to `node` (the node end
/// named `wo<name>` without dashes).
pub fn make_pod(node: &Netns, name: &str, ip: &str, mac: &str, gw: &str, mtu: &str) -> Pod {
    let ns = Netns::new(format!("wo{name}"));
    let host_if = format!("wo{}", name.replace('-', ""));
    sh(&["ip", "link", "add", &host_if, "netns", &node.0, "type", "veth", "peer", "name", "eth0", "netns", &ns.0]);
    in_ns(&node.0, &["sysctl", "-qw", &format!("net.ipv6.conf.{host_if}.disable_ipv6=1")]);
    pod_side(&ns.0, ip, mac, gw, mtu);
    sh(&["ip", "-n", &node.0, "link", "set", &host_if, "up"]);
    Pod { ns, ip: ip.parse().unwrap(), mac: mac.to_string(), host_if }
}

/// Addresses, MAC, MTU and default route of a pod's eth0; no IPv6, no tx
/// checksum offload (af_packet, see the README).
pub fn pod_side(ns: &str, ip: &str, mac: &str, gw: &str, mtu: &str) {
    in_ns(ns, &["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1"]);
    sh(&["ip", "-n", ns, "link", "set", "eth0", "address", mac, "mtu", mtu]);
    assert!(in_ns(ns, &["ethtool", "-K", "eth0", "tx", "off"]).status.success());
    sh(&["ip", "-n", ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
    sh(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
    sh(&["ip", "-n", ns, "route", "add", "default", "via", gw]);
}

pub fn remote(name: &str, ip: &str, cidr: &str, mac: &str) -> String {
    format!("[[remote_nodes]]\nname = \"{name}\"\nnode_ip = \"{ip}\"\npod_cidr = \"{cidr}\"\nvtep_mac = \"{mac}\"\n")
}
