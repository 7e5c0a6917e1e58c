//! weirctl explain, trace and capture against two running weir nodes joined
//! by a veth underlay, checked against what real packets then do.
//!
//! Node 1: the client pod 10.1.0.2 (port `pod`), a backend pod 10.1.0.3
//! (port `b`), and a pod 10.1.0.4 (port `guarded`) whose ingress policy
//! denies the client. Node 2: a backend pod 10.2.0.2. Both nodes have the
//! Service default/web 10.96.0.10:80/tcp → 8080 on 10.1.0.3 and 10.2.0.2.
//! Runs the real `weirctl` (built next to this test by
//! `cargo build --workspace`); the pcap is read by tshark. Root and
//! hugepages needed; one at a time (`--test-threads=1`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::*;

const VIP: &str = "10.96.0.10";
const DENY_RULE: &str = "np:default/deny-client/ingress/0";

/// weirctl, built by `cargo build --workspace` next to this test.
fn weirctl_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("weirctl");
    assert!(bin.exists(), "{} missing: run `cargo build --workspace` first (scripts/test.sh does)", bin.display());
    bin
}

fn weirctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(weirctl_bin()).arg("-s").arg(socket).args(args).output().expect("run weirctl")
}

/// weirctl that must succeed; its stdout.
fn weirctl_ok(socket: &Path, args: &[&str]) -> String {
    let o = weirctl(socket, args);
    assert!(
        o.status.success(),
        "weirctl {args:?}: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Answers every TCP connection on 8080 with the pod's name.
const NAME_SERVER: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(64)
while True:
    c, a = s.accept(); c.sendall(sys.argv[1].encode()); c.close()
"#;

/// Connects from source port argv[3] to argv[1]:argv[2]; prints what the
/// server said, "timeout" or "refused".
const CLIENT: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[3]))); s.settimeout(3)
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print(s.recv(64).decode())
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
"#;

/// A name server in a pod; stopped on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM to `timeout`, which passes it on to the server.
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

fn serve(pod: &Pod, name: &str) -> Server {
    let child = Command::new("ip")
        .args(["netns", "exec", &pod.ns.0, "timeout", "300", "python3", "-c", NAME_SERVER, name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !in_ns(&pod.ns.0, &["ss", "-ltn", "sport", "= :8080"]).stdout.windows(5).any(|w| w == b":8080") {
        assert!(t0.elapsed() < Duration::from_secs(10), "server in {name} did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server(child)
}

fn connect(pod: &Pod, addr: &str, port: u16, sport: u16) -> String {
    let out = in_ns(&pod.ns.0, &["python3", "-c", CLIENT, addr, &port.to_string(), &sport.to_string()]);
    assert!(out.status.success(), "client: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Two weir nodes and their pods; everything goes on drop.
struct TwoNodes {
    // Fields drop in order: dataplanes first, then pods, then namespaces.
    dp1: Dataplane,
    dp2: Dataplane,
    b: Pod,
    guarded: Pod,
    n1: OverlayNode,
    n2: OverlayNode,
    _ns: (Netns, Netns),
}

impl TwoNodes {
    fn new() -> TwoNodes {
        require_root();
        let tag = tag();
        let (n1ns, n2ns) = (Netns::new(format!("wi{tag}-n1")), Netns::new(format!("wi{tag}-n2")));
        let (u1, u2) = (format!("wi{tag}u1"), format!("wi{tag}u2"));
        sh(&["ip", "link", "add", &u1, "netns", &n1ns.0, "type", "veth", "peer", "name", &u2, "netns", &n2ns.0]);
        for (ns, dev) in [(&n1ns.0, &u1), (&n2ns.0, &u2)] {
            in_ns(ns, &["sysctl", "-qw", &format!("net.ipv6.conf.{dev}.disable_ipv6=1")]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        let n1 = OverlayNode::new(&tag, 1, &n1ns, &u1, "1450");
        let n2 = OverlayNode::new(&tag, 2, &n2ns, &u2, "1450");
        let b = make_pod(&n1ns, &format!("{tag}-b"), "10.1.0.3", "02:00:00:00:01:03", "10.1.0.1", "1450");
        let guarded = make_pod(&n1ns, &format!("{tag}-g"), "10.1.0.4", "02:00:00:00:01:04", "10.1.0.1", "1450");
        let services = format!(
            r#"
[[services]]
name = "default/web"
cluster_ips = ["{VIP}"]
ports = [{{ port = 80, protocol = "tcp", target_port = 8080 }}]
backends = [{{ ip = "10.1.0.3" }}, {{ ip = "10.2.0.2" }}]
"#
        );
        let port = |name: &str, p: &Pod| {
            format!(
                "[[ports]]\nname = \"{name}\"\nkind = \"af_packet\"\niface = \"{}\"\npod = {{ ip = \"{}\", mac = \"{}\" }}\n\n",
                p.host_if, p.ip, p.mac
            )
        };
        let acl = format!(
            r#"
[[acl.pods]]
ip = "10.1.0.4"
name = "default/guarded"
ingress = {{ default = "allow", rules = [{{ id = "{DENY_RULE}", peers = [{{ cidr = "10.1.0.2/32" }}], action = "deny" }}] }}
"#
        );
        let extra1 = remote("node2", "192.168.50.2", "10.2.0.0/24", VTEP2_MAC)
            + &port("b", &b)
            + &port("guarded", &guarded)
            + &services
            + &acl;
        let extra2 = remote("node1", "192.168.50.1", "10.1.0.0/24", VTEP1_MAC) + &services;
        // Four af_packet ports need more mbufs than the overlay nodes' default.
        let config1 = n1.config(1, &extra1).replace("mbufs = 8191", "mbufs = 16383");
        let dp1 = start_dataplane(&n1ns.0, &n1.dir, &config1);
        let dp2 = start_dataplane(&n2ns.0, &n2.dir, &n2.config(2, &extra2));
        let bed = TwoNodes { dp1, dp2, b, guarded, n1, n2, _ns: (n1ns, n2ns) };
        // The overlay is up (the VTEPs have resolved each other).
        assert!(bed.n1.pod.ping("10.2.0.2", 2), "node1's pod cannot reach node2's\n{}", bed.dp1.logs());
        bed
    }

    fn logs(&self) -> String {
        format!("node1:\n{}\nnode2:\n{}", self.dp1.logs(), self.dp2.logs())
    }
}

fn explain_json(socket: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["-o", "json", "explain"];
    all.extend_from_slice(args);
    serde_json::from_str(&weirctl_ok(socket, &all)).expect("explain -o json is JSON")
}

fn step<'a>(e: &'a serde_json::Value, stage: &str) -> &'a serde_json::Value {
    e["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == stage)
        .unwrap_or_else(|| panic!("no {stage} step in {e:#}"))
}

#[test]
fn explain_agrees_with_what_real_packets_do() {
    let bed = TwoNodes::new();
    let sock = &bed.dp1.socket;
    let _servers = [serve(&bed.b, "b"), serve(&bed.n2.pod, "remote")];
    let name_of = |ip: &str| match ip {
        "10.1.0.3" => "b",
        "10.2.0.2" => "remote",
        other => panic!("backend {other}"),
    };

    // Explain SYNs from the client to the ClusterIP until both backends have
    // come up twice; then make those very connections.
    let mut picked: Vec<(u16, String)> = Vec::new();
    for sport in 42000..42100u16 {
        let sp = sport.to_string();
        let e = explain_json(
            sock,
            &["--in-port", "pod", "--src", "10.1.0.2", "--dst", VIP, "--sport", &sp, "--dport", "80"],
        );
        assert_eq!(step(&e, "flow")["detail"]["hit"], false, "{e:#}");
        assert_eq!(step(&e, "service")["detail"]["service"], "default/web");
        let backend = step(&e, "backend")["detail"]["addr"].as_str().unwrap().to_string();
        let port = e["action"]["port"].as_str().unwrap_or_default();
        assert_eq!(e["action"]["action"], "forward", "{e:#}");
        if backend == "10.2.0.2" {
            // Through the tunnel to node 2.
            assert_eq!(port, "uplink", "{e:#}");
            assert_eq!(step(&e, "encap")["detail"]["vtep"], "192.168.50.2");
        } else {
            assert_eq!(port, "b", "{e:#}");
        }
        if picked.iter().filter(|(_, b)| *b == backend).count() < 2 {
            picked.push((sport, backend));
        }
        if picked.len() == 4 {
            break;
        }
    }
    assert_eq!(picked.len(), 4, "both backends picked twice in 100 source ports: {picked:?}");
    // Explain changed nothing: no flow of the client yet.
    let flows = weirctl_ok(sock, &["flows"]);
    assert!(!flows.contains("10.1.0.2:42"), "explain left flows behind:\n{flows}");
    let sp = picked[0].0.to_string();
    let text = weirctl_ok(
        sock,
        &["explain", "--in-port", "pod", "--src", "10.1.0.2", "--dst", VIP, "--sport", &sp, "--dport", "80"],
    );
    println!("weirctl explain (ClusterIP):\n{text}");
    for (sport, backend) in &picked {
        let answer = connect(&bed.n1.pod, VIP, 80, *sport);
        assert_eq!(answer, name_of(backend), "source port {sport}: explain said {backend}\n{}", bed.logs());
        // The flow now exists, with that backend.
        let sp = sport.to_string();
        let e = explain_json(
            sock,
            &["--in-port", "pod", "--src", "10.1.0.2", "--dst", VIP, "--sport", &sp, "--dport", "80", "--flags", "ack"],
        );
        let flow = step(&e, "flow");
        assert_eq!(flow["detail"]["hit"], true, "{e:#}");
        assert_eq!(flow["detail"]["nat"], format!("{backend}:8080"));
    }

    // A denied packet: explain names the rule, and a real one is dropped
    // and counted under that reason.
    let text = weirctl_ok(
        sock,
        &[
            "explain",
            "--in-port",
            "pod",
            "--src",
            "10.1.0.2",
            "--dst",
            "10.1.0.4",
            "--sport",
            "43000",
            "--dport",
            "8080",
        ],
    );
    println!("weirctl explain (denied):\n{text}");
    assert!(text.contains(DENY_RULE) && text.contains("dropped: policy_denied_ingress"), "{text}");
    let e = explain_json(sock, &["--in-port", "pod", "--src", "10.1.0.2", "--dst", "10.1.0.4", "--dport", "8080"]);
    let acl = step(&e, "acl");
    assert_eq!((acl["detail"]["verdict"].as_str(), acl["detail"]["rule"].as_str()), (Some("deny"), Some(DENY_RULE)));
    assert_eq!(
        (e["action"]["action"].as_str(), e["action"]["reason"].as_str()),
        (Some("drop"), Some("policy_denied_ingress"))
    );
    let before = bed.dp1.settled_stats().drop_count("policy_denied_ingress");
    assert_eq!(connect(&bed.n1.pod, "10.1.0.4", 8080, 43000), "timeout");
    let after = bed.dp1.settled_stats().drop_count("policy_denied_ingress");
    assert!(after > before, "the real SYN was dropped as policy_denied_ingress ({before} → {after})");
    // The other pods are allowed to reach it: explain says so.
    let e = explain_json(sock, &["--in-port", "b", "--src", "10.1.0.3", "--dst", "10.1.0.4", "--dport", "8080"]);
    assert_eq!((e["action"]["action"].as_str(), e["action"]["port"].as_str()), (Some("forward"), Some("guarded")));
    let _ = &bed.guarded;

    // Decapsulation on node 2 of what node 1's pod sends.
    let e = explain_json(
        &bed.dp2.socket,
        &[
            "--in-port",
            "uplink",
            "--vxlan-from",
            "192.168.50.1",
            "--src",
            "10.1.0.2",
            "--dst",
            "10.2.0.2",
            "--proto",
            "icmp",
        ],
    );
    assert_eq!(step(&e, "decap")["detail"]["vni"], 1);
    assert_eq!((e["action"]["action"].as_str(), e["action"]["port"].as_str()), (Some("forward"), Some("pod")));

    // Bad input: a clear error, exit 1 (the dataplane refused) or 2 (usage).
    let o = weirctl(sock, &["explain", "--in-port", "nope", "--src", "10.1.0.2", "--dst", VIP]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("in port \"nope\""), "{o:?}");
    let o = weirctl(sock, &["explain", "--in-port", "pod", "--src", "10.1.0.2", "--dst", VIP, "--proto", "tcpp"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("protocol \"tcpp\""), "{o:?}");
}

#[test]
fn trace_prints_each_packets_stages() {
    let bed = TwoNodes::new();
    let sock = &bed.dp1.socket;
    let mut ping = Command::new("ip")
        .args(["netns", "exec", &bed.n1.pod.ns.0, "ping", "-c", "40", "-i", "0.2", "-q", "10.2.0.2"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Node 1: the pod's echo requests, routed into the tunnel.
    let text = weirctl_ok(sock, &["trace", "--count", "4", "--timeout", "20", "--proto", "icmp", "--src", "10.1.0.2"]);
    println!("weirctl trace:\n{text}");
    for i in 1..=4 {
        assert!(text.contains(&format!("packet {i}: worker 0, port pod,")), "{text}");
    }
    assert!(!text.contains("packet 5:"), "{text}");
    assert_eq!(text.matches("icmp echo request").count(), 4, "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("  route ")).count(), 4, "{text}");
    assert_eq!(text.matches("VXLAN VNI 1 to VTEP 192.168.50.2").count(), 4, "{text}");
    assert_eq!(text.matches("action: forward out of uplink").count(), 4, "{text}");
    assert!(text.contains("trace ended: count reached, 4 packets"), "{text}");
    // Node 2, as JSON lines: the same packets decapsulated, to its pod.
    let json = weirctl_ok(
        &bed.dp2.socket,
        &["-o", "json", "trace", "--count", "3", "--timeout", "20", "--port", "uplink", "--dst", "10.2.0.2"],
    );
    let lines: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4, "{json}");
    for p in &lines[..3] {
        let stages: Vec<&str> = p["steps"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap()).collect();
        assert!(stages.starts_with(&["input", "ipv4", "decap", "ipv4"]), "{p:#}");
        assert_eq!((p["port"].as_str(), p["action"]["port"].as_str()), (Some("uplink"), Some("pod")), "{p:#}");
        assert!(p["packet"].as_str().unwrap().starts_with("VXLAN 192.168.50.1 > 192.168.50.2 vni 1"), "{p:#}");
    }
    assert_eq!(lines[3]["done"], "count reached");

    // A filter that does not parse: refused, nothing armed.
    let o = weirctl(sock, &["trace", "--src", "10.1.0.x"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("filter src \"10.1.0.x\""), "{o:?}");
    // A weirctl that goes away disarms its trace: the next one can start.
    let mut gone = Command::new(weirctl_bin())
        .arg("-s")
        .arg(sock)
        .args(["trace", "--count", "5", "--timeout", "100", "--src", "10.9.9.9"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let o = weirctl(sock, &["trace", "--count", "1", "--timeout", "1", "--src", "10.9.9.9"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("running already"), "one trace at a time: {o:?}");
    let _ = gone.kill();
    let _ = gone.wait();
    std::thread::sleep(Duration::from_millis(300));
    let text = weirctl_ok(sock, &["trace", "--count", "1", "--timeout", "1", "--src", "10.9.9.9"]);
    assert!(text.contains("trace ended: timeout, 0 packets"), "{text}");
    let _ = ping.kill();
    let _ = ping.wait();
}

#[test]
fn capture_writes_a_pcap_that_tshark_reads() {
    let bed = TwoNodes::new();
    let sock = bed.dp1.socket.clone();
    // weirctl resolves a relative path against its own directory.
    let cwd = bed.n1.dir.join("captures");
    std::fs::create_dir_all(&cwd).unwrap();
    let cap = Command::new(weirctl_bin())
        .current_dir(&cwd)
        .arg("-s")
        .arg(&sock)
        .args(["capture", "--port", "pod", "--proto", "icmp", "--count", "8", "--duration", "30", "-w", "ping.pcap"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(bed.n1.pod.ping("10.2.0.2", 6), "ping while capturing\n{}", bed.logs());
    let o = cap.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("8 packets written") && stdout.contains("0 lost"), "{stdout}");
    let file = cwd.join("ping.pcap");
    // An independent reader: tshark.
    let t = Command::new("tshark")
        .args(["-r"])
        .arg(&file)
        .args([
            "-T",
            "fields",
            "-E",
            "separator=,",
            "-e",
            "eth.src",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "icmp.type",
            "-e",
            "icmp.seq",
        ])
        .output()
        .expect("tshark (scripts/setup.sh installs it)");
    assert!(t.status.success(), "tshark: {}", String::from_utf8_lossy(&t.stderr));
    let rows: Vec<Vec<String>> =
        String::from_utf8_lossy(&t.stdout).lines().map(|l| l.split(',').map(String::from).collect()).collect();
    println!("tshark:\n{}", String::from_utf8_lossy(&t.stdout));
    assert_eq!(rows.len(), 8, "{rows:?}");
    let requests: Vec<&Vec<String>> = rows.iter().filter(|r| r[3] == "8").collect();
    let replies: Vec<&Vec<String>> = rows.iter().filter(|r| r[3] == "0").collect();
    assert_eq!((requests.len(), replies.len()), (4, 4), "{rows:?}");
    for r in &requests {
        // Received from the pod, before weir touched it.
        assert_eq!(
            (r[0].as_str(), r[1].as_str(), r[2].as_str()),
            ("02:00:00:00:01:02", "10.1.0.2", "10.2.0.2"),
            "{rows:?}"
        );
    }
    for r in &replies {
        // Sent to the pod, from the gateway MAC.
        assert_eq!((r[0].as_str(), r[1].as_str(), r[2].as_str()), (VTEP1_MAC, "10.2.0.2", "10.1.0.2"), "{rows:?}");
    }
    let seqs = |v: &[&Vec<String>]| v.iter().map(|r| r[4].clone()).collect::<Vec<_>>();
    assert_eq!(seqs(&requests), seqs(&replies), "each request and its reply");
    // Timestamps: now-ish, in order.
    let t = Command::new("tshark")
        .args(["-r"])
        .arg(&file)
        .args(["-T", "fields", "-e", "frame.time_epoch"])
        .output()
        .unwrap();
    let times: Vec<f64> = String::from_utf8_lossy(&t.stdout).lines().map(|l| l.trim().parse().unwrap()).collect();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(times.iter().all(|t| (now - t).abs() < 60.0), "{times:?} vs {now}");
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // Bad input: an unknown port, a filter that does not parse.
    let o = weirctl(&sock, &["capture", "--port", "eth7", "-w", "/dev/null"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("capture port \"eth7\""), "{o:?}");
    let o = weirctl(&sock, &["capture", "--port", "pod", "--proto", "ipx", "-w", "/dev/null"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("\"ipx\""), "{o:?}");
}
