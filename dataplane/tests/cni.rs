//! CNI namespace tests: weir-cni run the way a runtime runs it, against a
//! real weir-control (`--cni-socket`) and a real weir-dataplane in a node
//! namespace. podman (CNI backend) runs a busybox container on a weir
//! network that reaches a pod on a second weir node and a ClusterIP
//! Service; 1000 ADD/DEL cycles leave nothing behind; a DPDK pod
//! (dpdk-testpmd on the handed-over vhost-user socket) talks to a kernel
//! pod before and after weir-dataplane restarts. Root and hugepages
//! needed; one at a time (`--test-threads=1`). The binaries of
//! weir-control (weir-control, weir-cni) must be built
//! (`cargo build --workspace`, as scripts/test.sh does).

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::*;

/// A binary of weir-control, built next to this test.
fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join(name);
    assert!(bin.exists(), "{} missing: run `cargo build --workspace` first (scripts/test.sh does)", bin.display());
    bin
}

/// A child process, killed (by PID) and reaped on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs weir-cni as libcni does: the environment, the configuration on stdin.
fn cni(cmd: &str, id: &str, netns: Option<&str>, args: &str, conf: &Value) -> (i32, String) {
    let mut c = Command::new(bin("weir-cni"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CNI_COMMAND", cmd)
        .env("CNI_PATH", "/opt/cni/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !matches!(cmd, "VERSION" | "STATUS" | "GC") {
        c.env("CNI_CONTAINERID", id).env("CNI_IFNAME", "eth0").env("CNI_ARGS", args);
        if let Some(n) = netns {
            c.env("CNI_NETNS", n);
        }
    }
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(conf.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// ADD that must succeed; its result.
fn add(id: &str, netns: &str, args: &str, conf: &Value) -> Value {
    let (rc, out) = cni("ADD", id, Some(netns), args, conf);
    assert_eq!(rc, 0, "ADD {id}: {out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ADD {id}: not JSON ({e}): {out}"))
}

fn del(id: &str, netns: Option<&str>, conf: &Value) {
    let (rc, out) = cni("DEL", id, netns, "", conf);
    assert_eq!((rc, out.as_str()), (0, ""), "DEL {id}");
}

fn ip_of(result: &Value) -> String {
    let a = result["ips"][0]["address"].as_str().unwrap();
    a.split('/').next().unwrap().to_string()
}

/// A weir node: a namespace with weir-dataplane and weir-control (with
/// its CNI server); pods are attached only through CNI.
struct Node {
    ns: Netns,
    dir: PathBuf,
    config: String,
    dp: Option<Dataplane>,
    control: Option<Proc>,
}

/// Node 1 alone (its pod CIDR for IPAM).
const NODE1: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node1, annotations: {weir.dev/vtep-mac: "02:fe:00:00:00:01"}}
spec: {podCIDR: 10.1.0.0/24}
status: {addresses: [{type: InternalIP, address: 192.168.50.1}]}
"#;

/// Two nodes and a ClusterIP Service whose endpoint is 10.2.0.2:8080 on node 2.
const CLUSTER: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node2, annotations: {weir.dev/vtep-mac: "02:fe:00:00:00:02"}}
spec: {podCIDR: 10.2.0.0/24}
status: {addresses: [{type: InternalIP, address: 192.168.50.2}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: ClusterIP
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10]
  ports: [{name: http, protocol: TCP, port: 80, targetPort: http}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-x1
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, protocol: TCP, port: 8080}]
endpoints:
- {addresses: [10.2.0.2], conditions: {ready: true}, nodeName: node2}
"#;

impl Node {
    /// Node `i` (1 or 2) of CLUSTER; `uplink`: its end of the underlay veth.
    fn start(tag: &str, i: u8, ns: Netns, uplink: Option<&str>) -> Node {
        // One node alone gets only its own Node object (remote nodes need an uplink).
        let cluster = if uplink.is_some() { format!("{NODE1}---{CLUSTER}") } else { NODE1.to_string() };
        let dir = std::env::temp_dir().join(format!("weir-cni-{tag}-{i}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = format!(
            "[node]\nname = \"node{i}\"\npod_cidr = \"10.{i}.0.0/24\"\nnode_ip = \"192.168.50.{i}\"\nunderlay_cidr = \"192.168.50.0/24\"\n\n\
             [gateway]\nip = \"10.{i}.0.1\"\nmac = \"02:fe:00:00:00:0{i}\"\n\n\
             [dpdk]\nworker_cores = [1]\nmemory_mb = 256\nmbufs = 16383\nrx_descriptors = 512\ntx_descriptors = 512\nfile_prefix = \"wc{tag}{i}\"\n\n\
             [management]\nsocket = \"{}\"\n",
            dir.join("dp.sock").display()
        );
        if let Some(u) = uplink {
            config.push_str(&format!(
                "\n[[ports]]\nname = \"uplink\"\nkind = \"af_packet\"\niface = \"{u}\"\nuplink = true\n"
            ));
        }
        std::fs::write(dir.join("cluster.yaml"), cluster).unwrap();
        let dp = start_dataplane(&ns.0, &dir, &config);
        let mut n = Node { ns, dir, config, dp: Some(dp), control: None };
        n.start_control();
        n
    }

    fn start_control(&mut self) {
        let log = self.dir.join("control.log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns.0])
            .arg(bin("weir-control"))
            .args(["--interval-ms", "100", "--metrics", "off", "--health-check-address", "off", "--dataplane"])
            .arg(self.dir.join("dp.sock"))
            .arg("--control-socket")
            .arg(self.dir.join("control.sock"))
            .arg("--cluster-file")
            .arg(self.dir.join("cluster.yaml"))
            .arg("--cni-socket")
            .arg(self.dir.join("cni.sock"))
            .arg("--ipam-dir")
            .arg(self.dir.join("ipam"))
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .unwrap();
        self.control = Some(Proc(child));
        let t0 = Instant::now();
        while !self.dir.join("cni.sock").exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "weir-control's CNI socket did not appear: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The network configuration (the conflist's plugin object) for this node.
    fn conf(&self, version: &str) -> Value {
        json!({
            "cniVersion": version, "name": "weir", "type": "weir-cni",
            "socket": self.dir.join("cni.sock"),
            "socketDir": self.dir.join("vhost"),
            "deviceInfoDir": self.dir.join("devinfo"),
        })
    }

    fn dp(&self) -> &Dataplane {
        self.dp.as_ref().unwrap()
    }

    fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!(
            "{}\nweir-control stdout:\n{}\nweir-control stderr:\n{}",
            self.dp.as_ref().map(|d| d.logs()).unwrap_or_default(),
            read("control.log"),
            read("control.err")
        )
    }

    /// Shuts weir-dataplane down and starts it again with the same config.
    fn restart_dataplane(&mut self) {
        let st = self.dp.take().unwrap().shutdown();
        assert!(st.success(), "weir-dataplane exit: {st}");
        self.dp = Some(start_dataplane(&self.ns.0, &self.dir, &self.config));
    }

    fn cni_ports(&self) -> Vec<String> {
        self.dp().stats().ports.into_iter().map(|p| p.name).filter(|n| n.starts_with("cni-")).collect()
    }

    fn ipam_attachments(&self) -> usize {
        let text = std::fs::read_to_string(self.dir.join("ipam/state.json")).unwrap_or_else(|_| "{}".into());
        let v: Value = serde_json::from_str(&text).unwrap();
        v["attachments"].as_object().map_or(0, |o| o.len())
    }

    /// Waits until `f` holds (weir-control acts on a 100 ms loop).
    fn wait(&self, what: &str, secs: u64, f: impl Fn() -> bool) {
        let t0 = Instant::now();
        while !f() {
            assert!(t0.elapsed() < Duration::from_secs(secs), "{what}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.control.take();
        self.dp.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ping(ns: &str, dst: &str, count: u32) -> bool {
    in_ns(ns, &["ping", "-c", &count.to_string(), "-i", "0.2", "-W", "2", "-q", dst]).status.success()
}

fn links(ns: &str) -> Vec<String> {
    let out = in_ns(ns, &["ip", "-j", "link", "show"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v.as_array().map(|a| a.iter().filter_map(|l| l["ifname"].as_str().map(String::from)).collect()).unwrap_or_default()
}

fn files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|r| r.count()).unwrap_or(0)
}

/// The PID of weir-dataplane in the node namespace.
fn dataplane_pid(node: &Node) -> u32 {
    let out = Command::new("ip").args(["netns", "pids", &node.ns.0]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim().starts_with("weir-dataplane"))
        })
        .expect("weir-dataplane's PID")
}

// ------------------------------------------------------------------ (a) + (c)

/// The libcni sequence against the real binary, control and dataplane
/// (kernel pod: a TAP moved into the pod), then 1000 ADD/DEL cycles
/// (every 25th a vhost-user pod) that must leave no address, port,
/// interface, socket, file or descriptor behind.
#[test]
fn libcni_sequence_then_a_thousand_add_del_cycles_leak_nothing() {
    require_root();
    let tag = tag();
    let node = Node::start(&tag, 1, Netns::new(format!("wc{tag}-n")), None);
    let pod = Netns::new(format!("wc{tag}-p"));
    let netns = format!("/run/netns/{}", pod.0);
    let conf = node.conf("1.1.0");

    // VERSION
    let (rc, out) = cni("VERSION", "", None, "", &json!({"cniVersion": "1.1.0"}));
    assert_eq!(rc, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["supportedVersions"], json!(["1.0.0", "1.1.0"]));
    // STATUS before anything
    let (rc, out) = cni("STATUS", "", None, "", &conf);
    assert_eq!((rc, out.as_str()), (0, ""), "STATUS\n{}", node.logs());
    // ADD
    let r = add("seq", &netns, "IgnoreUnknown=1;K8S_POD_NAME=seq", &conf);
    assert_eq!(r["cniVersion"], "1.1.0");
    assert_eq!(r["ips"], json!([{"address": "10.1.0.2/24", "gateway": "10.1.0.1", "interface": 1}]));
    assert_eq!(r["routes"], json!([{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}]));
    let sandbox = &r["interfaces"][1];
    assert_eq!((sandbox["name"].as_str(), sandbox["sandbox"].as_str()), (Some("eth0"), Some(netns.as_str())));
    assert_eq!((sandbox["mac"].as_str(), sandbox["mtu"].as_u64()), (Some("0a:58:0a:01:00:02"), Some(1450)));
    let host = &r["interfaces"][0];
    assert!(host["name"].as_str().unwrap().starts_with("cni-") && host.get("sandbox").is_none(), "{host}");
    assert!(host["mac"].as_str().is_some_and(|m| m.len() == 17), "weir's port MAC: {host}");
    // The pod's eth0 is there as the result says, and reaches the gateway.
    let show = in_ns(&pod.0, &["ip", "-j", "addr", "show", "dev", "eth0"]);
    let l: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!((l[0]["address"].as_str(), l[0]["mtu"].as_u64()), (Some("0a:58:0a:01:00:02"), Some(1450)));
    assert!(ping(&pod.0, "10.1.0.1", 2), "pod → gateway\n{}", node.logs());
    // CHECK with the ADD's result
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = r.clone();
    let (rc, out) = cni("CHECK", "seq", Some(&netns), "", &with_prev);
    assert_eq!((rc, out.as_str()), (0, ""), "CHECK");
    // CHECK notices a pod interface that went wrong.
    in_ns(&pod.0, &["ip", "link", "set", "eth0", "mtu", "1400"]);
    let (rc, out) = cni("CHECK", "seq", Some(&netns), "", &with_prev);
    assert_ne!(rc, 0);
    let e: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["code"], 103, "{e}");
    // DEL twice (the second finds nothing and succeeds)
    del("seq", Some(&netns), &with_prev);
    del("seq", Some(&netns), &with_prev);
    assert_eq!(links(&pod.0), ["lo"], "the TAP left the pod with its port");
    assert!(node.cni_ports().is_empty());
    // GC with an attachment it must keep and one it must drop.
    add("keep", &netns, "", &conf);
    let other = Netns::new(format!("wc{tag}-q"));
    add("drop", &format!("/run/netns/{}", other.0), "", &conf);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    let (rc, out) = cni("GC", "", None, "", &gc);
    assert_eq!((rc, out.as_str()), (0, ""), "GC");
    assert_eq!(node.ipam_attachments(), 1);
    assert_eq!(links(&other.0), ["lo"]);
    assert_eq!(node.cni_ports().len(), 1);
    del("keep", Some(&netns), &conf);
    drop(other);

    // 1000 cycles.
    let dp_pid = dataplane_pid(&node);
    let ctl_pid = node.control.as_ref().unwrap().0.id();
    let (dp_fds, ctl_fds) = (open_fds(dp_pid), open_fds(ctl_pid));
    let mbufs = node.dp().settled_stats().mbufs_free;
    let t0 = Instant::now();
    for i in 0..1000 {
        let id = format!("cycle{i}");
        let args = if i % 25 == 0 { "WEIR_PORT=vhost-user" } else { "" };
        let r = add(&id, &netns, args, &conf);
        if i % 100 == 1 {
            // Now and then: the pod really works.
            assert!(ping(&pod.0, "10.1.0.1", 1), "cycle {i}: pod → gateway\n{}", node.logs());
        }
        assert!(r["ips"][0]["address"].is_string());
        del(&id, Some(&netns), &conf);
    }
    eprintln!("1000 ADD/DEL cycles in {:?}", t0.elapsed());
    assert_eq!(node.ipam_attachments(), 0, "no address held");
    assert!(node.cni_ports().is_empty(), "no port left: {:?}", node.cni_ports());
    assert_eq!(links(&pod.0), ["lo"], "no interface left in the pod");
    let node_links: Vec<String> = links(&node.ns.0).into_iter().filter(|l| l.starts_with("wc")).collect();
    assert!(node_links.is_empty(), "no TAP left on the node: {node_links:?}");
    assert_eq!(files(&node.dir.join("vhost")), Vec::<String>::new(), "no vhost-user socket left");
    assert_eq!(files(&node.dir.join("devinfo")), Vec::<String>::new(), "no device-info file left");
    assert_eq!(files(&node.dir.join("ipam")), ["state.json"]);
    // Descriptors and mbufs: back where they were (a little slack for
    // connections in flight).
    assert!(open_fds(dp_pid) <= dp_fds + 2, "weir-dataplane fds {dp_fds} → {}", open_fds(dp_pid));
    assert!(open_fds(ctl_pid) <= ctl_fds + 2, "weir-control fds {ctl_fds} → {}", open_fds(ctl_pid));
    assert_eq!(node.dp().settled_stats().mbufs_free, mbufs, "mbufs");
    drop(pod);
    drop(node);
}

// ------------------------------------------------------------------ (b) podman

/// A busybox image imported into podman from busybox-static (no registry).
fn busybox_image(dir: &Path) -> String {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    for d in ["proc", "sys", "dev", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static (scripts/setup.sh installs it)");
    sh(&["chroot", root.to_str().unwrap(), "/bin/busybox", "--install", "-s", "/bin"]);
    let tar = dir.join("busybox.tar");
    sh(&["tar", "-C", root.to_str().unwrap(), "-cf", tar.to_str().unwrap(), "."]);
    let name = "localhost/weir-test-busybox:latest".to_string();
    sh(&["podman", "import", tar.to_str().unwrap(), &name]);
    name
}

struct Podman {
    conf: PathBuf,
}

impl Podman {
    /// podman with its own containers.conf: the CNI backend, runc, our
    /// network config dir and plugin dir (PLATFORM facts in
    /// ../shared/PLATFORM.md).
    fn new(dir: &Path, conflist: &Value) -> Podman {
        let net = dir.join("net.d");
        let plugins = dir.join("plugins");
        std::fs::create_dir_all(&net).unwrap();
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::copy(bin("weir-cni"), plugins.join("weir-cni")).unwrap();
        std::fs::write(net.join("10-weir.conflist"), serde_json::to_string_pretty(conflist).unwrap()).unwrap();
        let conf = dir.join("containers.conf");
        std::fs::write(
            &conf,
            format!(
                "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=20000:20000\"]\n\n\
                 [network]\nnetwork_backend = \"cni\"\nnetwork_config_dir = \"{}\"\ncni_plugin_dirs = [\"{}\", \"/usr/lib/cni\"]\n\n\
                 [engine]\nruntime = \"runc\"\n",
                net.display(),
                plugins.display()
            ),
        )
        .unwrap();
        Podman { conf }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("timeout").arg("120").arg("podman").args(args).env("CONTAINERS_CONF", &self.conf).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// podman runs a busybox container on the weir network of node 1: it gets
/// its address, reaches a pod on node 2 over VXLAN and a ClusterIP Service
/// whose endpoint is that pod; stopping it runs DEL.
#[test]
fn podman_container_on_a_weir_network() {
    require_root();
    let tag = tag();
    let (n1ns, n2ns) = (Netns::new(format!("wc{tag}-n1")), Netns::new(format!("wc{tag}-n2")));
    let (u1, u2) = (format!("wc{tag}u1"), format!("wc{tag}u2"));
    sh(&["ip", "link", "add", &u1, "netns", &n1ns.0, "type", "veth", "peer", "name", &u2, "netns", &n2ns.0]);
    for (ns, dev) in [(&n1ns.0, &u1), (&n2ns.0, &u2)] {
        in_ns(ns, &["sysctl", "-qw", &format!("net.ipv6.conf.{dev}.disable_ipv6=1")]);
        sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
    }
    let n1 = Node::start(&tag, 1, n1ns, Some(&u1));
    let n2 = Node::start(&tag, 2, n2ns, Some(&u2));
    // Both nodes synced from the cluster file (remote node, Service).
    for n in [&n1, &n2] {
        n.wait("weir-control synced the cluster tables", 20, || n.dp().stats().control_generation.is_some());
    }
    // A pod on node 2, attached through weir-cni, serving HTTP on 8080: the Service's endpoint.
    let p2 = Netns::new(format!("wc{tag}-p2"));
    let r = add(
        "remote-pod",
        &format!("/run/netns/{}", p2.0),
        "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
        &n2.conf("1.0.0"),
    );
    assert_eq!(ip_of(&r), "10.2.0.2", "the endpoint address of the cluster file");
    let www = n2.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("hello.txt"), "hello from node2\n").unwrap();
    let _http = Proc(
        Command::new("ip")
            .args(["netns", "exec", &p2.0, "timeout", "300", "python3", "-m", "http.server", "8080", "-d"])
            .arg(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    n2.wait("the pod's HTTP server listens", 10, || {
        String::from_utf8_lossy(&in_ns(&p2.0, &["ss", "-ltn"]).stdout).contains(":8080")
    });

    let pdir = n1.dir.join("podman");
    std::fs::create_dir_all(&pdir).unwrap();
    let mut plugin = n1.conf("1.0.0");
    let plugin = plugin.as_object_mut().unwrap();
    plugin.remove("cniVersion");
    plugin.remove("name");
    let net = format!("weir{tag}");
    let conflist = json!({"cniVersion": "1.0.0", "name": net, "plugins": [plugin]});
    let podman = Podman::new(&pdir, &conflist);
    let image = busybox_image(&pdir);
    let name = format!("weir-test-{tag}");
    let _ = podman.run(&["rm", "-f", &name]);
    podman.ok(&["run", "-d", "--name", &name, "--network", &net, "--cap-add", "NET_RAW", &image, "sleep", "300"]);
    let cleanup = |p: &Podman| {
        let _ = p.run(&["rm", "-f", &name]);
        let _ = p.run(&["rmi", "-f", &image]);
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // The container got its address from node 1's pod CIDR.
        let addr = podman.ok(&["exec", &name, "ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
        assert!(addr.contains("inet 10.1.0."), "{addr}\n{}", n1.logs());
        assert_eq!(n1.ipam_attachments(), 1);
        let route = podman.ok(&["exec", &name, "ip", "route"]);
        assert!(route.contains("default via 10.1.0.1"), "{route}");
        // It reaches the pod on node 2 and the ClusterIP Service.
        let ping = podman.run(&["exec", &name, "ping", "-c", "3", "-W", "2", "10.2.0.2"]);
        assert!(
            ping.status.success(),
            "container → node2's pod: {}\n{}\n{}",
            String::from_utf8_lossy(&ping.stdout),
            n1.logs(),
            n2.logs()
        );
        // HTTP/1.0 with busybox nc (busybox-static's wget crashes in
        // name-service lookups inside a bare rootfs); the body is what
        // follows the blank line.
        let wget = |addr: &str, path: &str| {
            let script = format!("printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {addr}");
            let out = podman.run(&["exec", &name, "sh", "-c", &script]);
            let drops = |n: &Node| {
                format!("{:?}", n.dp().stats().drops.into_iter().filter(|(_, v)| *v > 0).collect::<Vec<_>>())
            };
            assert!(
                out.status.success(),
                "GET {addr} {path}: {}{}\nnode1 drops {}\nnode2 drops {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                drops(&n1),
                drops(&n2)
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or(text)
        };
        assert_eq!(wget("10.2.0.2 8080", "/hello.txt"), "hello from node2\n", "container → node2's pod over TCP");
        let body = wget("10.96.0.10 80", "/hello.txt");
        assert_eq!(body, "hello from node2\n", "container → ClusterIP 10.96.0.10:80 → 10.2.0.2:8080");
        // Stopping it runs DEL: the address and the port are released.
        podman.ok(&["stop", "-t", "1", &name]);
        n1.wait("DEL released the container's attachment", 20, || n1.ipam_attachments() == 0);
        assert!(n1.cni_ports().is_empty(), "{:?}", n1.cni_ports());
    }));
    cleanup(&podman);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    del("remote-pod", Some(&format!("/run/netns/{}", p2.0)), &n2.conf("1.0.0"));
    drop((n1, n2, p2));
}

// ------------------------------------------------------------------ (d) DPDK pod

/// dpdk-testpmd as a DPDK pod: virtio-user on the pod's socket, answering
/// ARP and ping (`icmpecho`), forwarding on core 0 for the few seconds it
/// runs. Stopped (Enter on its stdin) and reaped on drop.
struct Testpmd {
    child: Option<Child>,
    log: PathBuf,
}

impl Testpmd {
    fn start(dir: &Path, prefix: &str, socket: &str, mac: &str, server: bool) -> Testpmd {
        let log = dir.join(format!("testpmd-{prefix}.log"));
        let vdev =
            format!("net_virtio_user0,path={socket},queues=1,mac={mac}{}", if server { ",server=1" } else { "" });
        // Line-buffered stdout (a file): "Press enter to exit" says it forwards.
        let child = Command::new("stdbuf")
            .args(["-oL", "dpdk-testpmd"])
            .args(["-l", "0,1", "--main-lcore", "1", "--no-pci", "--in-memory", "--single-file-segments", "-m", "256"])
            .arg(format!("--file-prefix={prefix}"))
            .arg(format!("--vdev={vdev}"))
            .args(["--", "--forward-mode=icmpecho", "--nb-cores=1", "--rxq=1", "--txq=1", "--total-num-mbufs=4096"])
            .arg("--disable-link-check")
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(std::fs::File::create(log.with_extension("err")).unwrap()))
            .spawn()
            .expect("dpdk-testpmd (dpdk-dev)");
        let t = Testpmd { child: Some(child), log };
        let t0 = Instant::now();
        while !std::fs::read_to_string(&t.log).unwrap_or_default().contains("Press enter to exit") {
            assert!(t0.elapsed() < Duration::from_secs(30), "testpmd did not start: {}", t.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
        t
    }

    fn logs(&self) -> String {
        let err = std::fs::read_to_string(self.log.with_extension("err")).unwrap_or_default();
        format!("testpmd:\n{}\n{err}", std::fs::read_to_string(&self.log).unwrap_or_default())
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Some(mut i) = c.stdin.take() {
                let _ = i.write_all(b"\n");
            }
            let t0 = Instant::now();
            while c.try_wait().ok().flatten().is_none() && t0.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A kernel pod and DPDK pods on one node: ping through weir to testpmd on
/// the vhost-user socket weir-cni handed over, in both modes; weir-dataplane
/// restarts and weir-control puts every port back: the client-mode pod (the
/// pod listens) reconnects by itself, the server-mode pod's socket comes
/// back at the same path for a restarted application, and the kernel pod
/// gets a new TAP with the same address.
#[test]
fn dpdk_pod_on_vhost_user_talks_to_a_kernel_pod_across_a_dataplane_restart() {
    require_root();
    let tag = tag();
    let mut node = Node::start(&tag, 1, Netns::new(format!("wc{tag}-n")), None);
    let conf = node.conf("1.1.0");
    let kpod = Netns::new(format!("wc{tag}-k"));
    add("kernel", &format!("/run/netns/{}", kpod.0), "", &conf);
    let dpdk_ns = Netns::new(format!("wc{tag}-d"));
    let dnetns = format!("/run/netns/{}", dpdk_ns.0);
    // Server mode (the default): weir listens; the pod connects.
    let a = add("dpdk-a", &dnetns, "WEIR_PORT=vhost-user", &conf);
    // Client mode: the pod listens (virtio-user server=1); weir connects.
    let b = add("dpdk-b", &dnetns, "WEIR_PORT=vhost-user;WEIR_VHOST_MODE=client", &conf);
    let sock = |r: &Value| r["interfaces"][1]["socketPath"].as_str().unwrap().to_string();
    let mac = |r: &Value| r["interfaces"][1]["mac"].as_str().unwrap().to_string();
    assert!(Path::new(&sock(&a)).exists(), "weir made A's socket");
    let di: Value = serde_json::from_str(
        &std::fs::read_to_string(node.dir.join("devinfo").join("weir-dpdk-a-eth0-device.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(di["vhost-user"]["path"], sock(&a).as_str());
    assert_eq!(di["vhost-user"]["mode"], "client");

    let (ip_a, ip_b) = (ip_of(&a), ip_of(&b));
    let pmd_a = Testpmd::start(&node.dir, &format!("wc{tag}a"), &sock(&a), &mac(&a), false);
    node.wait("A reachable", 15, || ping(&kpod.0, &ip_a, 1));
    assert!(ping(&kpod.0, &ip_a, 3), "kernel pod → DPDK pod A ({ip_a})\n{}\n{}", pmd_a.logs(), node.logs());
    drop(pmd_a);
    let pmd_b = Testpmd::start(&node.dir, &format!("wc{tag}b"), &sock(&b), &mac(&b), true);
    node.wait("weir connected to B's socket", 15, || ping(&kpod.0, &ip_b, 1));
    assert!(ping(&kpod.0, &ip_b, 3), "kernel pod → DPDK pod B ({ip_b})\n{}", pmd_b.logs());

    // weir-dataplane restarts: weir-control adds every port again.
    let before: BTreeMap<String, ()> = node.cni_ports().into_iter().map(|p| (p, ())).collect();
    node.restart_dataplane();
    node.wait("weir-control put the pod ports back", 20, || {
        node.cni_ports().into_iter().map(|p| (p, ())).collect::<BTreeMap<_, _>>() == before
    });
    // B reconnects by itself; the kernel pod has a new TAP, configured again.
    node.wait("B reachable after the restart", 20, || ping(&kpod.0, &ip_b, 1));
    assert!(ping(&kpod.0, &ip_b, 3), "kernel pod → DPDK pod B after the restart\n{}", pmd_b.logs());
    drop(pmd_b);
    // A's application restarts on the same socket path.
    assert!(Path::new(&sock(&a)).exists(), "A's socket is back");
    let pmd_a = Testpmd::start(&node.dir, &format!("wc{tag}a"), &sock(&a), &mac(&a), false);
    node.wait("A reachable after the restart", 15, || ping(&kpod.0, &ip_a, 1));
    drop(pmd_a);

    for id in ["dpdk-a", "dpdk-b"] {
        del(id, Some(&dnetns), &conf);
    }
    del("kernel", Some(&format!("/run/netns/{}", kpod.0)), &conf);
    assert!(node.cni_ports().is_empty());
    assert_eq!(files(&node.dir.join("vhost")), Vec::<String>::new(), "sockets removed");
    drop((kpod, dpdk_ns, node));
}

// ------------------------------------------------------------------ anti-spoofing

/// Only the pod's own IP and MAC may leave its port (weir counts the rest
/// as `pod_source_spoofed`).
#[test]
fn a_pod_cannot_send_from_an_address_or_mac_not_its_own() {
    require_root();
    let tag = tag();
    let node = Node::start(&tag, 1, Netns::new(format!("wc{tag}-n")), None);
    let conf = node.conf("1.1.0");
    let (pa, pb) = (Netns::new(format!("wc{tag}-a")), Netns::new(format!("wc{tag}-b")));
    let ra = add("a", &format!("/run/netns/{}", pa.0), "", &conf);
    let rb = add("b", &format!("/run/netns/{}", pb.0), "", &conf);
    assert!(ping(&pa.0, &ip_of(&rb), 2), "a → b");
    let spoofed = |src_ip: &str, src_mac: &str| -> u64 {
        let before: u64 = node.dp().stats().drops.iter().filter(|(k, _)| k.contains("spoof")).map(|(_, v)| v).sum();
        // One UDP datagram to b from a forged source, sent raw out of a's eth0.
        let script = format!(
            "import socket,struct\n\
             def cs(b):\n s=sum(struct.unpack('!%dH'%(len(b)//2),b)); s=(s>>16)+(s&0xffff); return ~(s+(s>>16))&0xffff\n\
             src=socket.inet_aton('{src_ip}'); dst=socket.inet_aton('{dst}')\n\
             udp=struct.pack('!HHHH',1234,5678,12,0)+b'spam'\n\
             ip=struct.pack('!BBHHHBBH4s4s',0x45,0,20+len(udp),1,0,64,17,0,src,dst)\n\
             ip=ip[:10]+struct.pack('!H',cs(ip))+ip[12:]\n\
             eth=bytes.fromhex('02fe00000001')+bytes.fromhex('{smac}')+b'\\x08\\x00'\n\
             s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW); s.bind(('eth0',0)); s.send(eth+ip+udp)\n",
            dst = ip_of(&rb),
            smac = src_mac.replace(':', ""),
        );
        assert!(in_ns(&pa.0, &["python3", "-c", &script]).status.success());
        std::thread::sleep(Duration::from_millis(500));
        let after: u64 = node.dp().stats().drops.iter().filter(|(k, _)| k.contains("spoof")).map(|(_, v)| v).sum();
        after - before
    };
    let own_mac = ra["interfaces"][1]["mac"].as_str().unwrap().to_string();
    assert_eq!(spoofed(&ip_of(&ra), &own_mac), 0, "its own address and MAC pass");
    assert_eq!(spoofed("10.1.0.99", &own_mac), 1, "a forged source address is dropped");
    assert_eq!(spoofed(&ip_of(&ra), "0a:58:0a:01:00:63"), 1, "a forged source MAC is dropped");
    del("a", None, &conf);
    del("b", None, &conf);
    drop((pa, pb, node));
}
