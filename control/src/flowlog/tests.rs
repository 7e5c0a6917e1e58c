//! The JSON lines, the pods they name, the time format, and the thread
//! against a fake dataplane (arming, polling, re-arming after the
//! dataplane ends a session or goes away, the dropped lines).

use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::net::UnixListener;

use super::*;
use crate::source::DEMO_CLUSTER;

fn demo_pods() -> PodIndex {
    PodIndex::new(&ClusterObjects::from_yaml(DEMO_CLUSTER).unwrap())
}

fn record(event: &str) -> FlowLogRecord {
    FlowLogRecord {
        event: event.into(),
        time_ns: 1_795_452_915_619_000_000,
        proto: 6,
        src: "10.1.0.3".parse().unwrap(),
        sport: 40000,
        dst: "10.96.0.10".parse().unwrap(),
        dport: 80,
        nat_src: None,
        nat_dst: Some("10.2.0.2:8080".parse().unwrap()),
        service: Some("default/web:http".into()),
        in_port: Some("client-1".into()),
        verdict: "allowed".into(),
        rule: None,
        direction: None,
        packets: None,
        bytes: None,
        start_ns: None,
        duration_ms: None,
        reason: None,
    }
}

#[test]
fn times_are_rfc3339_utc_with_milliseconds() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(951_782_400_123_456_789), "2000-02-29T00:00:00.123Z");
    assert_eq!(rfc3339(1_735_689_599_999_000_000), "2024-12-31T23:59:59.999Z");
    assert_eq!(rfc3339(1_795_452_915_619_000_000), "2026-11-23T16:55:15.619Z");
    assert_eq!(rfc3339(4_107_542_400_000_000_000), "2100-03-01T00:00:00.000Z");
}

#[test]
fn pods_by_address_skip_the_host_network_and_finished_pods() {
    let p = demo_pods();
    assert_eq!(p.get("10.1.0.3".parse().unwrap()), Some("default/client-1"));
    assert_eq!(p.get("10.2.0.3".parse().unwrap()), Some("default/db-1"));
    assert_eq!(p.get("21.1.1.3".parse().unwrap()), Some("default/noping-1"));
    assert_eq!(p.get("10.96.0.10".parse().unwrap()), None);
    let extra = r#"
apiVersion: v1
kind: Pod
metadata: {name: kube-proxy, namespace: kube-system}
spec: {hostNetwork: true, nodeName: node1, containers: [{name: p, image: x}]}
status: {podIP: 192.168.50.1}
---
apiVersion: v1
kind: Pod
metadata: {name: done, namespace: a}
spec: {nodeName: node1, containers: [{name: p, image: x}]}
status: {podIP: 10.1.0.9, phase: Succeeded}
---
apiVersion: v1
kind: Pod
metadata: {name: z, namespace: b}
spec: {nodeName: node1, containers: [{name: p, image: x}]}
status: {podIP: 10.1.0.8, podIPs: [{ip: 10.1.0.8}, {ip: "fd00::8"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: y, namespace: b}
spec: {nodeName: node1, containers: [{name: p, image: x}]}
status: {podIP: 10.1.0.8}
"#;
    let p = PodIndex::new(&ClusterObjects::from_yaml(extra).unwrap());
    assert_eq!(p.get("192.168.50.1".parse().unwrap()), None, "host network");
    assert_eq!(p.get("10.1.0.9".parse().unwrap()), None, "finished");
    assert_eq!(p.get("10.1.0.8".parse().unwrap()), Some("b/y"), "the first by namespace/name");
}

#[test]
fn a_start_line_names_the_client_and_the_backend_pod() {
    let l = line(&record("start"), &demo_pods(), Some("node1"));
    assert_eq!(
        l,
        r#"{"time":"2026-11-23T16:55:15.619Z","event":"start","node":"node1","proto":"tcp","src":"10.1.0.3:40000","dst":"10.96.0.10:80","nat_src":null,"nat_dst":"10.2.0.2:8080","service":"default/web:http","verdict":"allowed","src_pod":"default/client-1","dst_pod":"default/web-2","in_port":"client-1"}"#
    );
}

#[test]
fn an_end_line_has_counts_duration_and_reason() {
    let r = FlowLogRecord {
        in_port: None,
        packets: Some([6, 4]),
        bytes: Some([400, 330]),
        start_ns: Some(1_795_452_905_000_000_000),
        duration_ms: Some(1200),
        reason: Some("fin".into()),
        nat_src: Some("192.168.50.1:61002".parse().unwrap()),
        ..record("end")
    };
    let v: serde_json::Value = serde_json::from_str(&line(&r, &demo_pods(), None)).unwrap();
    assert_eq!(v["event"], "end");
    assert_eq!(v["packets"], serde_json::json!({"orig": 6, "reply": 4}));
    assert_eq!(v["bytes"], serde_json::json!({"orig": 400, "reply": 330}));
    assert_eq!((v["duration_ms"].as_u64(), v["reason"].as_str()), (Some(1200), Some("fin")));
    assert_eq!(v["start"], "2026-11-23T16:55:05.000Z");
    assert_eq!(v["nat_src"], "192.168.50.1:61002");
    assert!(v.get("node").is_none() && v.get("in_port").is_none() && v.get("rule").is_none());
}

#[test]
fn a_denied_line_has_the_rule_and_direction_and_no_counts() {
    let r = FlowLogRecord {
        src: "10.1.0.2".parse().unwrap(),
        sport: 41000,
        dst: "10.2.0.3".parse().unwrap(),
        dport: 6379,
        nat_dst: None,
        service: None,
        in_port: Some("uplink".into()),
        verdict: "denied".into(),
        rule: Some("default".into()),
        direction: Some("ingress".into()),
        ..record("denied")
    };
    let v: serde_json::Value = serde_json::from_str(&line(&r, &demo_pods(), Some("node2"))).unwrap();
    assert_eq!((v["src_pod"].as_str(), v["dst_pod"].as_str()), (Some("default/web-1"), Some("default/db-1")));
    assert_eq!(
        (v["verdict"].as_str(), v["rule"].as_str(), v["direction"].as_str()),
        (Some("denied"), Some("default"), Some("ingress"))
    );
    assert!(v["nat_dst"].is_null() && v["service"].is_null());
    assert!(v.get("packets").is_none() && v.get("reason").is_none());
}

#[test]
fn icmp_shows_bare_addresses_and_the_echo_id() {
    let r = FlowLogRecord {
        proto: 1,
        sport: 77,
        dport: 0,
        dst: "21.1.1.3".parse().unwrap(),
        nat_dst: None,
        service: None,
        ..record("denied")
    };
    let v: serde_json::Value = serde_json::from_str(&line(&r, &demo_pods(), None)).unwrap();
    assert_eq!(
        (v["proto"].as_str(), v["src"].as_str(), v["dst"].as_str()),
        (Some("icmp"), Some("10.1.0.3"), Some("21.1.1.3"))
    );
    assert_eq!((v["icmp_id"].as_u64(), v["dst_pod"].as_str()), (Some(77), Some("default/noping-1")));
}

#[test]
fn dropped_lines_carry_what_was_lost_since_the_last() {
    let a = FlowLogDrops { rate_limited: 5, queue_full: 1, meter_full: 0 };
    assert_eq!(dropped_line(0, None, &a, &a), None);
    let b = FlowLogDrops { rate_limited: 12, queue_full: 1, meter_full: 2 };
    let v: serde_json::Value = serde_json::from_str(&dropped_line(0, Some("n"), &a, &b).unwrap()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"time": "1970-01-01T00:00:00.000Z", "event": "dropped", "node": "n", "count": 9,
            "rate_limited": 7, "queue_full": 0, "meter_full": 2})
    );
}

#[test]
fn a_path_that_cannot_be_opened_is_a_clear_error() {
    let e = Sink::open("/nonexistent-dir/flows.jsonl").err().unwrap();
    assert!(e.starts_with("--flow-log /nonexistent-dir/flows.jsonl: cannot open for appending: "), "{e}");
    assert_eq!(Sink::open("").err().unwrap(), "--flow-log: empty path (a file, or - for stdout)");
    let cfg = FlowLogConfig { dataplane: "/nonexistent.sock".into(), rate: 0, shared: Shared::new() };
    assert_eq!(spawn(cfg, "-").err().unwrap(), "--flow-log-rate 0: want 1 to 1000000 records per second");
    let cfg = FlowLogConfig { dataplane: "/nonexistent.sock".into(), rate: 1_000_001, shared: Shared::new() };
    assert_eq!(spawn(cfg, "-").err().unwrap(), "--flow-log-rate 1000001: want 1 to 1000000 records per second");
}

/// A fake dataplane: answers each connection's polls from `sessions` (one
/// list of replies per connection; an error "CLOSE" closes the connection
/// without an answer, as a dataplane that stops), until a reply with
/// `done`.
fn fake_dataplane(path: &std::path::Path, sessions: Vec<Vec<Reply>>) -> std::thread::JoinHandle<Vec<Request>> {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for polls in sessions {
            let (conn, _) = listener.accept().unwrap();
            let mut out = conn.try_clone().unwrap();
            let mut input = BufReader::new(conn);
            let mut polls = polls.into_iter();
            let mut line = String::new();
            while input.read_line(&mut line).unwrap_or(0) > 0 {
                let req: Request = serde_json::from_str(&line).unwrap();
                line.clear();
                let reply = match &req {
                    Request::Hello => Reply::Hello {
                        version: 2,
                        node: "n1".into(),
                        dpdk: "x".into(),
                        instance: 1,
                        control_generation: None,
                    },
                    Request::FlowLogStart { rate_per_s: 5, burst: None } => {
                        Reply::FlowLogStarted { session: seen.len() as u64 }
                    }
                    Request::FlowLogPoll { session } | Request::FlowLogStop { session } => {
                        polls.next().unwrap_or(Reply::FlowLogged {
                            session: *session,
                            records: vec![],
                            drops: FlowLogDrops::default(),
                            metered: 0,
                            done: matches!(req, Request::FlowLogStop { .. }).then(|| "stopped".into()),
                        })
                    }
                    other => Reply::Error { message: format!("unexpected {other:?}") },
                };
                seen.push(req);
                if matches!(&reply, Reply::Error { message } if message == "CLOSE") {
                    break;
                }
                let mut text = serde_json::to_string(&reply).unwrap();
                text.push('\n');
                out.write_all(text.as_bytes()).unwrap();
                if matches!(reply, Reply::FlowLogged { done: Some(_), .. }) {
                    break;
                }
            }
        }
        seen
    })
}

#[test]
fn the_thread_arms_writes_and_arms_again_when_a_session_ends() {
    let dir = std::env::temp_dir().join(format!("weir-flowlog-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("dp.sock");
    let _ = std::fs::remove_file(&sock);
    let out = dir.join("flows.jsonl");
    let _ = std::fs::remove_file(&out);
    let logged = |records: Vec<FlowLogRecord>, rate_limited: u64, done: Option<&str>| Reply::FlowLogged {
        session: 0,
        records,
        drops: FlowLogDrops { rate_limited, ..Default::default() },
        metered: 0,
        done: done.map(Into::into),
    };
    // Session 1: a start and 2 dropped, then the dataplane ends it; session
    // 2 (its counts from 0 again): a deny, then the dataplane goes away
    // (restarts); session 3: an end and 1 dropped.
    let close = Reply::Error { message: "CLOSE".into() };
    let server = fake_dataplane(
        &sock,
        vec![
            vec![logged(vec![record("start")], 2, None), logged(vec![], 2, Some("not polled"))],
            vec![logged(vec![record("denied")], 0, None), close],
            vec![logged(vec![record("end")], 1, None)],
        ],
    );
    let shared = Shared::new();
    shared.set(ClusterObjects::from_yaml(DEMO_CLUSTER).unwrap());
    let cfg = FlowLogConfig { dataplane: sock.clone(), rate: 5, shared };
    let mut sink = Sink::open(out.to_str().unwrap()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    let writer = std::thread::spawn(move || run(&cfg, &mut sink, &s));
    let t0 = std::time::Instant::now();
    let lines = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        if lines.len() >= 5 || t0.elapsed() > Duration::from_secs(20) {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let requests = server.join().unwrap();
    let events: Vec<(&str, u64)> =
        lines.iter().map(|l| (l["event"].as_str().unwrap(), l["count"].as_u64().unwrap_or(0))).collect();
    assert_eq!(events, [("start", 0), ("dropped", 2), ("denied", 0), ("end", 0), ("dropped", 1)]);
    assert_eq!((lines[0]["src_pod"].as_str(), lines[0]["node"].as_str()), (Some("default/client-1"), Some("n1")));
    let starts = requests.iter().filter(|r| matches!(r, Request::FlowLogStart { .. })).count();
    assert_eq!(starts, 3, "armed again after the dataplane ended a session, and after it went away: {requests:?}");
    assert!(matches!(requests.last(), Some(Request::FlowLogStop { .. })), "stopped on the way out: {requests:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
