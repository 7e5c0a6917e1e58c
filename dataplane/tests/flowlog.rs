//! Flow logs on the demo bed (config/demo-cluster.yaml and a UDP Service):
//! weir-control on each node with `--flow-log FILE`; client-1 opens a TCP
//! connection to the ClusterIP of web, exchanges data and closes it; web-1
//! tries db's ClusterIP, which db-from-client denies on node2. Then the
//! files have the connection's start (the backend that answered, the pods
//! on both ends) and its end (packets and bytes both ways, closed by FIN),
//! and node2's the deny with its rule. Last, weir-control on node1 again
//! with `--flow-log-rate 5`: 100 quick UDP flows give no more records than
//! the rate allows, and `dropped` lines count the rest.
//! Root and hugepages needed; one at a time (`--test-threads=1`).

mod common;
#[path = "common/demo.rs"]
mod demo;

use std::time::{Duration, Instant};

use common::*;
use demo::*;
use serde_json::Value;

/// A UDP Service on web-1 (nothing listens: a flow is made by its first
/// packet all the same).
const UDP_SERVICE: &str = r#"
---
apiVersion: v1
kind: Service
metadata: {name: udp-test, namespace: default}
spec:
  clusterIP: 10.96.0.30
  selector: {app: web}
  ports: [{name: u, protocol: UDP, port: 5300, targetPort: 5300}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: udp-test-x1
  namespace: default
  labels: {kubernetes.io/service-name: udp-test}
addressType: IPv4
ports: [{name: u, protocol: UDP, port: 5300}]
endpoints:
- {addresses: [10.1.0.2], conditions: {ready: true}, nodeName: node1}
"#;

/// Connects to addr:port, reads the server's name, sends 5 × 100 bytes
/// and reads them back, closes (FIN both ways); prints its own port and
/// the name.
const EXCHANGE: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
name = s.recv(64).decode()
for i in range(5):
    s.sendall(b"x" * 100)
    got = b""
    while len(got) < 100:
        d = s.recv(100 - len(got))
        if not d: raise SystemExit("closed early")
        got += d
port = s.getsockname()[1]
s.shutdown(socket.SHUT_WR)
while s.recv(64): pass
s.close()
print(port, name)
"#;

/// A server on `port` that sends its name, echoes, and closes its side
/// when the client has closed its own (the demo's echo server leaves the
/// last connection open).
const SERVER: &str = r#"
import socket, sys, threading
name, port = sys.argv[1].encode(), int(sys.argv[2])
def serve(c):
    with c:
        c.sendall(name)
        while True:
            d = c.recv(64)
            if not d: break
            c.sendall(d)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port)); s.listen(64)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start(); del c
"#;

fn server(pod: &Pod, name: &str, port: u16) -> std::process::Child {
    let c = std::process::Command::new("ip")
        .args(["netns", "exec", &pod.ns.0, "timeout", "300", "python3", "-c", SERVER, name, &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !String::from_utf8_lossy(&in_ns(&pod.ns.0, &["ss", "-ltn"]).stdout).contains(&format!(":{port}")) {
        assert!(t0.elapsed() < Duration::from_secs(10), "{name} did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    c
}

/// 100 UDP datagrams to addr:port, each from its own source port (100
/// flows: ephemeral ports could repeat).
const UDP_FLOWS: &str = r#"
import socket, sys
for i in range(100):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("", 20000 + i))
    s.sendto(b"x", (sys.argv[1], int(sys.argv[2])))
    s.close()
"#;

/// The lines of a flow-log file.
fn lines(node: &DemoNode, file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(node.dir.join(file)).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

/// Waits until `file` has a line `want` accepts; returns it.
fn wait_line(node: &DemoNode, file: &str, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        if let Some(l) = lines(node, file).into_iter().find(&want) {
            return l;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "no {what} in {file}:\n{}\n{}",
            std::fs::read_to_string(node.dir.join(file)).unwrap_or_default(),
            node.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until weir-control says its flow log is armed.
fn wait_armed(node: &DemoNode) {
    let t0 = Instant::now();
    while !std::fs::read_to_string(node.dir.join("control.log")).unwrap_or_default().contains("flow log armed") {
        assert!(t0.elapsed() < Duration::from_secs(20), "flow log never armed\n{}", node.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn flow_logs_on_the_demo_bed() {
    let mut demo = Demo::start_with(&format!("{DEMO}{UDP_SERVICE}"), &["--flow-log", "{dir}/flows.jsonl"]);
    for n in &demo.nodes {
        wait_armed(n);
    }
    let mut servers = [server(demo.pod("web-1"), "web-1", 8080), server(demo.pod("web-2"), "web-2", 8080)];

    // A connection through the ClusterIP, data both ways, closed.
    let out = in_ns(&demo.pod("client-1").ns.0, &["timeout", "20", "python3", "-c", EXCHANGE, "10.96.0.10", "80"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}\n{}", String::from_utf8_lossy(&out.stderr), demo.logs());
    let (sport, name) = text.trim().split_once(' ').unwrap();
    let (backend, backend_pod) = match name {
        "web-1" => ("10.1.0.2:8080", "default/web-1"),
        "web-2" => ("10.2.0.2:8080", "default/web-2"),
        other => panic!("{other:?} answered"),
    };
    let src = format!("10.1.0.3:{sport}");
    // web-1 may not reach db (db-from-client): denied on node2.
    assert_eq!(who(demo.pod("web-1"), "10.96.0.20", 6379), "timeout");

    let (n1, n2) = (&demo.nodes[0], &demo.nodes[1]);
    let conn = |l: &Value, event: &str| l["event"] == event && l["src"] == src.as_str() && l["dst"] == "10.96.0.10:80";
    let start = wait_line(n1, "flows.jsonl", "start of the connection", |l| conn(l, "start"));
    println!("start: {start}");
    assert_eq!(
        (&start["proto"], &start["nat_dst"], &start["nat_src"], &start["service"], &start["verdict"]),
        (
            &Value::from("tcp"),
            &Value::from(backend),
            &Value::Null,
            &Value::from("default/web:http"),
            &Value::from("allowed")
        )
    );
    assert_eq!((&start["src_pod"], &start["dst_pod"]), (&Value::from("default/client-1"), &Value::from(backend_pod)));
    assert_eq!((&start["node"], &start["in_port"]), (&Value::from("node1"), &Value::from("client-1")));
    assert!(start["time"].as_str().is_some_and(|t| t.ends_with('Z') && t.len() == 24), "{start}");

    // Closed by FIN both ways: reported once the closing timeout (10 s)
    // and the sweep's grace are over.
    let end = wait_line(n1, "flows.jsonl", "end of the connection", |l| conn(l, "end"));
    println!("end: {end}");
    assert_eq!(
        (&end["reason"], &end["nat_dst"], &end["dst_pod"]),
        (&Value::from("fin"), &Value::from(backend), &Value::from(backend_pod))
    );
    for side in ["orig", "reply"] {
        // At least the handshake, 5 exchanges and the FIN each way.
        assert!(end["packets"][side].as_u64().unwrap() >= 7, "{side}: {end}");
    }
    // 500 bytes of data each way, and 20+ bytes of headers per packet.
    assert!(end["bytes"]["orig"].as_u64().unwrap() >= 500 + 7 * 40, "{end}");
    assert!(end["bytes"]["reply"].as_u64().unwrap() >= 500 + 5 + 7 * 40, "{end}");
    // (`start` is the start record's `time`, converted at another moment:
    // equal to the ms, give or take the clocks' sampling.)
    assert!(end["duration_ms"].as_u64().is_some() && end["start"].as_str().is_some_and(|s| s.len() == 24), "{end}");

    let denied = wait_line(n2, "flows.jsonl", "the deny of web-1 → db", |l| {
        l["event"] == "denied" && l["dst"] == "10.2.0.3:6379"
    });
    println!("denied: {denied}");
    assert_eq!(
        (&denied["src_pod"], &denied["dst_pod"], &denied["verdict"], &denied["direction"], &denied["rule"]),
        (
            &Value::from("default/web-1"),
            &Value::from("default/db-1"),
            &Value::from("denied"),
            &Value::from("ingress"),
            &Value::from("default")
        ),
        "db-from-client isolates db-1: nothing allows web-1, the default denies it"
    );
    assert!(denied["src"].as_str().unwrap().starts_with("10.1.0.2:"), "{denied}");
    assert_eq!(denied["in_port"], "uplink", "it came through the tunnel");
    // Nothing allowed on node2 was logged for it: the flow is node1's.
    assert!(lines(n2, "flows.jsonl").iter().all(|l| l["event"] == "denied" || l["event"] == "dropped"));

    // The rate limit: weir-control on node1 again, 5 records/s. (One flow
    // log runs at a time: the new one arms only because the old one's
    // session ended with its connection.)
    {
        let n1 = &mut demo.nodes[0];
        n1.control.kill();
        let extra = [
            "--flow-log".to_string(),
            n1.dir.join("rate.jsonl").display().to_string(),
            "--flow-log-rate".into(),
            "5".into(),
        ];
        n1.control = Control::start_with(&n1.socket(), &n1.file, &n1.dir.join("control.log"), &extra);
        wait_armed(n1);
    }
    let n1 = &demo.nodes[0];
    let t0 = Instant::now();
    let out = in_ns(&demo.pod("client-1").ns.0, &["timeout", "20", "python3", "-c", UDP_FLOWS, "10.96.0.30", "5300"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sent_in = t0.elapsed().as_secs_f64();
    let dropped = wait_line(n1, "rate.jsonl", "a dropped line", |l| l["event"] == "dropped");
    println!("dropped: {dropped} (100 flows sent in {sent_in:.2} s)");
    // Until every flow is accounted for (a few polls), at most 5 s.
    let t0 = Instant::now();
    let (all, starts, lost) = loop {
        let all = lines(n1, "rate.jsonl");
        let starts = all
            .iter()
            .filter(|l| l["event"] == "start" && l["dst"].as_str().unwrap().starts_with("10.96.0.30:"))
            .count();
        let lost: u64 =
            all.iter().filter(|l| l["event"] == "dropped").map(|l| l["rate_limited"].as_u64().unwrap()).sum();
        if starts as u64 + lost >= 100 || t0.elapsed() > Duration::from_secs(5) {
            break (all, starts, lost);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // A burst of 5, then 5 per second while they were sent (and a token of slack).
    let most = 5 + (5.0 * sent_in).ceil() as usize + 1;
    assert!(
        (1..=most).contains(&starts),
        "{starts} start records for 100 flows sent in {sent_in:.2} s, at most {most}"
    );
    assert_eq!(starts as u64 + lost, 100, "every flow either logged or counted as dropped:\n{all:#?}");
    assert!(all.iter().all(|l| l["event"] == "start" || l["event"] == "dropped"), "{all:#?}");
    for s in &mut servers {
        let _ = s.kill();
        let _ = s.wait();
    }
}
