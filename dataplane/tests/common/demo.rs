//! The demo bed shared by the tests that run weir-control: two weir nodes
//! in namespaces with the pods of config/demo-cluster.yaml, each with its
//! weir-dataplane and a weir-control reading (a copy of) a cluster file
//! (`--control-socket` in the node's directory), and the helpers that
//! serve, connect and hold connections from those pods. Included by
//! `#[path]` next to `mod common;` (it uses `crate::common`).
//! Root and hugepages needed.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

pub const DEMO: &str = include_str!("../../../config/demo-cluster.yaml");

/// weir-control, built by `cargo build --workspace` next to this test.
pub fn control_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("weir-control");
    assert!(bin.exists(), "{} missing: run `cargo build --workspace` first (scripts/test.sh does)", bin.display());
    bin
}

pub struct Control(pub Child);

impl Control {
    /// weir-control for the dataplane on `socket`, reading `file`, logging
    /// to `log` (and `log` with `.err`), its query socket `control.sock`
    /// next to the log.
    pub fn start(socket: &Path, file: &Path, log: &Path) -> Control {
        Self::start_with(socket, file, log, &[])
    }

    /// `start`, with `extra` arguments after those.
    pub fn start_with(socket: &Path, file: &Path, log: &Path, extra: &[String]) -> Control {
        let child = Command::new(control_bin())
            // No healthCheckNodePort listeners on the machine's addresses
            // (web-lb has one): tests/loadbalancer.rs checks them.
            .args(["--interval-ms", "100", "--metrics", "127.0.0.1:0", "--health-check-address", "off", "--dataplane"])
            .arg(socket)
            .arg("--cluster-file")
            .arg(file)
            .arg("--control-socket")
            .arg(log.with_file_name("control.sock"))
            .args(extra)
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .unwrap();
        Control(child)
    }

    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A server in a pod on `port`: sends "<name>" on connect, then echoes.
pub const ECHO: &str = r#"
import socket, sys, threading
name, port = sys.argv[1].encode(), int(sys.argv[2])
def serve(c):
    try:
        c.sendall(name)
        while True:
            d = c.recv(64)
            if not d: break
            c.sendall(d)
    except OSError:
        pass
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port)); s.listen(64)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

pub fn serve(pod: &Pod, name: &str, port: u16) -> Child {
    let c = Command::new("ip")
        .args(["netns", "exec", &pod.ns.0, "timeout", "300", "python3", "-c", ECHO, name, &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pat = format!(":{port}");
    let t0 = Instant::now();
    while !String::from_utf8_lossy(&in_ns(&pod.ns.0, &["ss", "-ltn"]).stdout).contains(&pat) {
        assert!(t0.elapsed() < Duration::from_secs(10), "{name} did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    c
}

/// Connects from `pod` to addr:port and says who answered ("refused",
/// "timeout" otherwise).
pub fn who(pod: &Pod, addr: &str, port: u16) -> String {
    let script = "import socket,sys\ntry:\n s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=2); print(s.recv(64).decode())\nexcept ConnectionRefusedError: print('refused')\nexcept OSError: print('timeout')\n";
    let out = in_ns(&pod.ns.0, &["timeout", "20", "python3", "-c", script, addr, &port.to_string()]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A long-lived connection: one exchange per line written to it.
pub struct Held {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
}

pub const HOLD: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
print("hello", s.recv(64).decode()); sys.stdout.flush()
for line in sys.stdin:
    try:
        s.sendall(b"ping"); r = s.recv(64)
        print("ok" if r == b"ping" else "closed")
    except socket.timeout:
        print("timeout")
    except OSError:
        print("reset")
    sys.stdout.flush()
"#;

impl Held {
    pub fn open(pod: &Pod, addr: &str, port: u16) -> (Held, String) {
        Self::open_in(&pod.ns.0, addr, port)
    }

    /// From any namespace (an external client's).
    pub fn open_in(ns: &str, addr: &str, port: u16) -> (Held, String) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "timeout", "120", "python3", "-c", HOLD, addr, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut hello = String::new();
        out.read_line(&mut hello).unwrap();
        (Held { child, stdin, out }, hello.trim().to_string())
    }

    pub fn exchange(&mut self) -> String {
        self.stdin.write_all(b"go\n").unwrap();
        let mut l = String::new();
        self.out.read_line(&mut l).unwrap();
        l.trim().to_string()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct DemoNode {
    pub dir: PathBuf,
    pub dp: Dataplane,
    pub control: Control,
    pub file: PathBuf,
}

impl DemoNode {
    pub fn socket(&self) -> PathBuf {
        self.dir.join("dp.sock")
    }

    /// weir-control's query socket.
    pub fn control_socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// Waits until weir-control applied the file's current content.
    pub fn wait_synced(&self, since: Option<u64>) -> u64 {
        let t0 = Instant::now();
        loop {
            let g = self.dp.stats().control_generation;
            if let Some(g) = g.filter(|g| since.is_none_or(|s| *g > s)) {
                return g;
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "weir-control never synced\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A scrape of weir-control's metrics endpoint (its address from its log).
    pub fn scrape(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("control.log")).unwrap_or_default();
        let url =
            log.lines().find_map(|l| l.strip_prefix("weir-control: metrics on http://")).expect("metrics address");
        let addr = url.trim_end_matches("/metrics");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut body = String::new();
        std::io::Read::read_to_string(&mut s, &mut body).unwrap();
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        body.split_once("\r\n\r\n").unwrap().1.to_string()
    }

    pub fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!("{}\ncontrol:\n{}{}", self.dp.logs(), read("control.log"), read("control.err"))
    }

    /// This node's tables for a cluster file's `text`, as weir-control
    /// computes them.
    pub fn tables_for(&self, node: &str, text: &str) -> String {
        let f = self.dir.join("probe.yaml");
        std::fs::write(&f, text).unwrap();
        let out =
            Command::new(control_bin()).args(["dump", "--node", node, "--cluster-file"]).arg(&f).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Rewrites the cluster file (atomically) and, if this node's tables
    /// change with it, waits for the push.
    pub fn edit(&self, node: &str, text: &str) {
        let old = std::fs::read_to_string(&self.file).unwrap();
        let changes = self.tables_for(node, &old) != self.tables_for(node, text);
        let before = self.dp.stats().control_generation;
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.file).unwrap();
        if changes {
            self.wait_synced(before);
        }
    }
}

/// The demo's two nodes and six pods, each node with its dataplane and
/// its weir-control on `cluster`.
pub struct Demo {
    pub pods: std::collections::BTreeMap<&'static str, Pod>,
    pub nodes: Vec<DemoNode>,
    pub _ns: Vec<Netns>,
}

pub const PODS: [(&str, u8, &str, &str, &str); 6] = [
    // name, node, ip, mac, network
    ("web-1", 1, "10.1.0.2", "02:00:00:00:01:02", "default"),
    ("client-1", 1, "10.1.0.3", "02:00:00:00:01:03", "default"),
    ("poc-1", 1, "21.1.1.2", "02:00:00:00:21:02", "poc-net"),
    ("web-2", 2, "10.2.0.2", "02:00:00:00:02:02", "default"),
    ("db-1", 2, "10.2.0.3", "02:00:00:00:02:03", "default"),
    ("noping-1", 2, "21.1.1.3", "02:00:00:00:21:03", "poc-net"),
];

impl Demo {
    pub fn start(cluster: &str) -> Demo {
        Self::start_with(cluster, &[])
    }

    /// `start`, with `extra` arguments for each node's weir-control;
    /// `{dir}` in one stands for the node's directory.
    pub fn start_with(cluster: &str, extra: &[&str]) -> Demo {
        require_root();
        let tag = tag();
        let (n1, n2) = (Netns::new(format!("wc{tag}-n1")), Netns::new(format!("wc{tag}-n2")));
        let (u1, u2) = (format!("wc{tag}u1"), format!("wc{tag}u2"));
        sh(&["ip", "link", "add", &u1, "netns", &n1.0, "type", "veth", "peer", "name", &u2, "netns", &n2.0]);
        for (ns, dev) in [(&n1.0, &u1), (&n2.0, &u2)] {
            in_ns(ns, &["sysctl", "-qw", &format!("net.ipv6.conf.{dev}.disable_ipv6=1")]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        let mut pods = std::collections::BTreeMap::new();
        let mut ports = [String::new(), String::new()];
        for (name, node, ip, mac, net) in PODS {
            let node_ns = if node == 1 { &n1 } else { &n2 };
            let gw = if net == "default" { format!("10.{node}.0.1") } else { "21.1.1.1".to_string() };
            let short = format!("{tag}{}", &name[..name.len().min(4)]).replace('-', "");
            let p = make_pod(node_ns, &format!("{short}{node}"), ip, mac, &gw, "1450");
            ports[usize::from(node) - 1].push_str(&format!(
                "[[ports]]\nname = \"{name}\"\nkind = \"af_packet\"\niface = \"{}\"\npod = {{ ip = \"{ip}\", mac = \"{mac}\", network = \"{net}\" }}\n\n",
                p.host_if
            ));
            pods.insert(name, p);
        }
        let mut nodes = Vec::new();
        for (i, (ns, up)) in [(&n1, &u1), (&n2, &u2)].into_iter().enumerate() {
            let n = i + 1;
            let dir = std::env::temp_dir().join(format!("weir-cluster-{tag}-{n}"));
            std::fs::create_dir_all(&dir).unwrap();
            let config = format!(
                "[node]\nname = \"node{n}\"\npod_cidr = \"10.{n}.0.0/24\"\nnode_ip = \"192.168.50.{n}\"\nunderlay_cidr = \"192.168.50.0/24\"\n\n\
                 [gateway]\nip = \"10.{n}.0.1\"\nmac = \"02:fe:00:00:00:0{n}\"\n\n\
                 [dpdk]\nworker_cores = [1]\nmemory_mb = 256\nmbufs = 16383\n\n\
                 [management]\nsocket = \"{}\"\n\n\
                 # poc-net's pods need their network before weir-control says so.\n\
                 [[networks]]\nname = \"poc-net\"\nsubnet = \"21.1.1.0/24\"\ngateway = \"21.1.1.1\"\nvni = 21\n\n\
                 [[ports]]\nname = \"uplink\"\nkind = \"af_packet\"\niface = \"{up}\"\nuplink = true\n\n{}",
                dir.join("dp.sock").display(),
                ports[i]
            );
            let dp = start_dataplane(&ns.0, &dir, &config);
            let file = dir.join("cluster.yaml");
            std::fs::write(&file, cluster).unwrap();
            let extra: Vec<String> = extra.iter().map(|a| a.replace("{dir}", &dir.display().to_string())).collect();
            let control = Control::start_with(&dir.join("dp.sock"), &file, &dir.join("control.log"), &extra);
            let node = DemoNode { dir, dp, control, file };
            node.wait_synced(None);
            nodes.push(node);
        }
        Demo { pods, nodes, _ns: vec![n1, n2] }
    }

    pub fn pod(&self, name: &str) -> &Pod {
        &self.pods[name]
    }

    pub fn edit(&self, text: &str) {
        for (i, n) in self.nodes.iter().enumerate() {
            n.edit(&format!("node{}", i + 1), text);
        }
    }

    pub fn logs(&self) -> String {
        self.nodes.iter().map(DemoNode::logs).collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.control.kill();
        }
        let dirs: Vec<PathBuf> = self.nodes.iter().map(|n| n.dir.clone()).collect();
        self.nodes.clear();
        self.pods.clear();
        for d in dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The fake Kubernetes API server as a process (control/src/bin).
pub struct FakeApi {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    pub url: String,
}

impl FakeApi {
    pub fn start(dir: &Path, objects: &str) -> FakeApi {
        let f = dir.join("objects.yaml");
        std::fs::write(&f, objects).unwrap();
        let bin = control_bin().with_file_name("weir-fake-apiserver");
        let mut child = Command::new(bin)
            .arg("--apply")
            .arg(&f)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("weir-fake-apiserver (cargo build --workspace)");
        let stdin = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut url = String::new();
        out.read_line(&mut url).unwrap();
        FakeApi { child, stdin, out, url: url.trim().to_string() }
    }

    pub fn apply(&mut self, dir: &Path, text: &str) {
        let f = dir.join("change.yaml");
        std::fs::write(&f, text).unwrap();
        writeln!(self.stdin, "apply {}", f.display()).unwrap();
        let mut l = String::new();
        self.out.read_line(&mut l).unwrap();
        assert!(l.starts_with("ok "), "{l}");
    }

    /// GET of an API path, as JSON (Null when the answer is not JSON).
    pub fn get(&self, path: &str) -> serde_json::Value {
        let addr = self.url.trim_start_matches("http://").trim_end_matches('/');
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut s, &mut text).unwrap();
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        // Chunked or not: the JSON object is between the outer braces.
        let (Some(a), Some(b)) = (body.find('{'), body.rfind('}')) else { return serde_json::Value::Null };
        serde_json::from_str(&body[a..=b]).unwrap_or(serde_json::Value::Null)
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
