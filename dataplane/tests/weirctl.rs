//! Every weirctl command against a running two-node bed: the demo of
//! config/demo-cluster.yaml (two weir nodes in namespaces, six pods, a
//! weir-control on each reading the cluster file, with its query socket),
//! some traffic (pings, a denied ping, a TCP connection through a
//! ClusterIP held open), then the real `weirctl` binary for each view, as
//! a table and as `-o json`, checked against what the dataplane's own
//! Stats say before and after it and against the traffic sent.
//! Root and hugepages needed; one at a time (`--test-threads=1`).

mod common;
#[path = "common/demo.rs"]
mod demo;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use demo::*;
use serde_json::Value;

/// weirctl, built by `cargo build --workspace` next to weir-control.
fn weirctl_bin() -> PathBuf {
    let bin = control_bin().with_file_name("weirctl");
    assert!(bin.exists(), "{} missing: run `cargo build --workspace` first", bin.display());
    bin
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// weirctl `args` against `node`'s dataplane and weir-control.
fn run(node: &DemoNode, args: &[&str]) -> Run {
    let out = Command::new(weirctl_bin())
        .arg("-s")
        .arg(node.socket())
        .arg("--control-socket")
        .arg(node.control_socket())
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The table `args` print; they must succeed.
fn table(node: &DemoNode, args: &[&str]) -> String {
    let r = run(node, args);
    assert_eq!(r.code, 0, "weirctl {args:?}: {}\n{}", r.stderr, node.logs());
    assert!(r.stderr.is_empty(), "weirctl {args:?} wrote to stderr: {}", r.stderr);
    // Shown when the test fails (or with --nocapture).
    println!("$ weirctl {}\n{}", args.join(" "), r.stdout);
    r.stdout
}

/// The JSON `-o json args` print; it must parse.
fn json(node: &DemoNode, args: &[&str]) -> Value {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let text = table(node, &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("weirctl {all:?}: not JSON ({e}):\n{text}"))
}

/// The whitespace-separated cells of the row of `t` whose first cell is
/// `first` (blank cells vanish).
fn row<'a>(t: &'a str, first: &str) -> Vec<&'a str> {
    t.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&first))
        .unwrap_or_else(|| panic!("no row {first:?} in\n{t}"))
}

fn num(s: &str) -> u64 {
    s.parse().unwrap_or_else(|_| panic!("{s:?} is not a number"))
}

/// `lo <= x <= hi`, with a message.
fn between(what: &str, lo: u64, x: u64, hi: u64) {
    assert!(lo <= x && x <= hi, "{what}: {x} is not within [{lo}, {hi}]");
}

#[test]
fn every_weirctl_command_on_a_running_bed() {
    let demo = Demo::start(DEMO);
    let (n1, n2) = (&demo.nodes[0], &demo.nodes[1]);
    let _servers = [serve(demo.pod("web-1"), "web-1", 8080), serve(demo.pod("web-2"), "web-2", 8080)];

    // Traffic: client-1 pings web-1; poc-1's pings into noping-epg are
    // denied on node2 (icmpPol); client-1 holds a connection through the
    // ClusterIP of web.
    const PINGS: u64 = 5;
    const DENIED: u64 = 3;
    assert!(demo.pod("client-1").ping("10.1.0.2", PINGS as u32), "{}", demo.logs());
    assert!(!demo.pod("poc-1").ping("21.1.1.3", DENIED as u32), "ping into noping-epg went through");
    let (mut held, hello) = Held::open(demo.pod("client-1"), "10.96.0.10", 80);
    let backend = match hello.as_str() {
        "hello web-1" => "10.1.0.2",
        "hello web-2" => "10.2.0.2",
        other => panic!("{other:?} from 10.96.0.10:80\n{}", demo.logs()),
    };
    assert_eq!(held.exchange(), "ok");
    let ss = in_ns(&demo.pod("client-1").ns.0, &["ss", "-Htn", "state", "established", "dst", "10.96.0.10"]);
    let ss = String::from_utf8_lossy(&ss.stdout).into_owned();
    let sport = ss
        .split_whitespace()
        .find_map(|c| c.strip_prefix("10.1.0.3:"))
        .unwrap_or_else(|| panic!("no connection to 10.96.0.10 in ss: {ss:?}"))
        .to_string();
    let s1 = n1.dp.settled_stats();
    n2.dp.settled_stats();
    let cg = s1.control_generation.expect("node1 synced by weir-control");

    // hello
    let t = table(n1, &["hello"]);
    let j = json(n1, &["hello"]);
    assert_eq!(
        (j["reply"].as_str(), j["node"].as_str(), j["control_generation"].as_u64()),
        (Some("hello"), Some("node1"), Some(cg))
    );
    let version = j["version"].as_u64().unwrap();
    assert!(
        t.starts_with(&format!("node node1, protocol {version}, "))
            && t.ends_with(&format!(", control generation {cg}\n")),
        "{t}"
    );

    // stats
    let t = table(n1, &["stats"]);
    assert!(
        t.contains("client-1") && t.contains("WORKER") && t.contains(&format!("tables generation {}", s1.generation)),
        "{t}"
    );
    let j = json(n1, &["stats"]);
    assert_eq!((j["reply"].as_str(), j["node"].as_str()), (Some("stats"), Some("node1")));
    assert_eq!(j["ports"].as_array().map(Vec::len), Some(s1.ports.len()));

    // ports: every port, its link, its counters between two Stats.
    let before = n1.dp.stats();
    let t = table(n1, &["ports"]);
    let j = json(n1, &["ports"]);
    let after = n1.dp.stats();
    let head: Vec<&str> = t.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(head[..6], ["PORT", "ID", "KIND", "DRIVER", "MAC", "LINK"], "{t}");
    assert_eq!(t.lines().count(), 1 + before.ports.len(), "{t}");
    for p in &before.ports {
        let r = row(&t, &p.name);
        assert_eq!(
            r[1..6],
            [p.id.to_string().as_str(), p.kind.as_str(), p.driver.as_str(), p.mac.as_str(), "up"],
            "{t}"
        );
        let rx_after = after.port(&p.name).unwrap().rx_packets;
        between(&format!("{} rx packets (table)", p.name), p.rx_packets, num(r[6]), rx_after);
        let jp = j["ports"].as_array().unwrap().iter().find(|x| x["name"] == p.name.as_str()).unwrap();
        between(&format!("{} rx packets (json)", p.name), num(r[6]), jp["rx_packets"].as_u64().unwrap(), rx_after);
        assert_eq!((jp["link_up"].as_bool(), jp["mac"].as_str()), (Some(true), Some(p.mac.as_str())));
    }
    assert!(num(row(&t, "client-1")[6]) >= PINGS, "client-1 sent {PINGS} pings\n{t}");
    assert!(num(row(&t, "web-1")[6]) >= PINGS, "web-1 answered {PINGS} pings\n{t}");
    assert_eq!(j["node"], "node1");

    // drops on node2: the denied pings, only non-zero reasons, the total.
    let before = n2.dp.stats();
    let t = table(n2, &["drops"]);
    let j = json(n2, &["drops"]);
    let after = n2.dp.stats();
    let denied = num(row(&t, "policy_denied_ingress")[1]);
    assert!(denied >= DENIED, "{DENIED} pings denied\n{t}");
    between(
        "policy_denied_ingress",
        before.drop_count("policy_denied_ingress"),
        denied,
        after.drop_count("policy_denied_ingress"),
    );
    let nonzero = |s: &weir_dataplane::api::Stats| s.drops.values().filter(|n| **n > 0).count();
    assert!((nonzero(&before)..=nonzero(&after)).contains(&(t.lines().count() - 2)), "{t}");
    for (reason, n) in &after.drops {
        let shown = t.lines().any(|l| l.split_whitespace().next() == Some(reason));
        assert!(!shown || *n > 0, "{reason} shown without drops\n{t}");
        assert!(shown || before.drop_count(reason) == 0, "{reason} had drops and is not shown\n{t}");
    }
    between("total", before.total_drops(), num(row(&t, "total")[1]), after.total_drops());
    between(
        "policy_denied_ingress (json)",
        denied,
        j["drops"]["policy_denied_ingress"].as_u64().unwrap(),
        after.drop_count("policy_denied_ingress"),
    );
    assert!(j["drops"].as_object().unwrap().values().all(|v| v.as_u64() > Some(0)), "{j}");
    let t = table(n2, &["drops", "--all"]);
    assert_eq!(t.lines().count(), after.drops.len() + 2, "every reason and the total\n{t}");
    let j = json(n2, &["drops", "--all"]);
    let reasons: Vec<&String> = j["drops"].as_object().unwrap().keys().collect();
    assert_eq!(reasons, after.drops.keys().collect::<Vec<_>>());

    // workers
    let before = n1.dp.stats();
    let t = table(n1, &["workers"]);
    let j = json(n1, &["workers"]);
    let after = n1.dp.stats();
    assert_eq!(t.lines().count(), 1 + before.workers.len(), "{t}");
    for (w, wa) in before.workers.iter().zip(&after.workers) {
        let r = row(&t, &w.id.to_string());
        assert_eq!((num(r[1]), num(r[2])), (w.core as u64, w.generation), "{t}");
        between("polls", w.polls, num(r[3]), wa.polls);
        let jw = &j["workers"][w.id];
        assert_eq!((jw["core"].as_u64(), jw["generation"].as_u64()), (Some(w.core as u64), Some(w.generation)));
        between("polls (json)", num(r[3]), jw["polls"].as_u64().unwrap(), wa.polls);
    }

    // generation: what Stats says, run by every worker.
    let t = table(n1, &["generation"]);
    let g = s1.generation;
    assert!(t.starts_with(&format!("node node1: tables generation {g} (control generation {cg})\n")), "{t}");
    assert!(t.ends_with(&format!("every worker runs generation {g}\n")), "{t}");
    let j = json(n1, &["generation"]);
    assert_eq!(
        (j["generation"].as_u64(), j["control_generation"].as_u64(), j["current"].as_bool()),
        (Some(g), Some(cg), Some(true))
    );
    assert_eq!(j["workers"].as_array().map(Vec::len), Some(s1.workers.len()));
    assert_eq!(n1.dp.stats().generation, g, "nothing was published meanwhile");

    // services: web's frontend and both backends sharing the Maglev table.
    let t = table(n1, &["services"]);
    let line = t
        .lines()
        .find(|l| l.starts_with("SERVICE default/web:http 10.96.0.10:80/6 ClusterIP M=251 ["))
        .unwrap_or_else(|| panic!("{t}"));
    let slots: Vec<u64> = ["10.1.0.2:8080(", "10.2.0.2:8080("]
        .iter()
        .map(|b| {
            let rest = &line[line.find(b).unwrap_or_else(|| panic!("{b} in {line}")) + b.len()..];
            num(&rest[..rest.find(')').unwrap()])
        })
        .collect();
    assert_eq!(slots.iter().sum::<u64>(), 251, "{line}");
    assert!(slots.iter().all(|n| *n > 0), "{line}");
    assert!(t.contains("SERVICE default/db:redis 10.96.0.20:6379/6 ClusterIP M=251 [10.2.0.3:6379(251)]"), "{t}");
    assert_eq!(json(n1, &["services"])["text"].as_str(), Some(t.as_str()));

    // rules on node2: icmpPol's deny on noping-1 with the denied pings as hits.
    let t = table(n2, &["rules"]);
    assert!(t.contains("pod 21.1.1.3 default/noping-1"), "{t}");
    let rule = t.lines().find(|l| l.contains(" deny contiv:icmpPol/1 ")).unwrap_or_else(|| panic!("{t}"));
    let hits = num(rule.rsplit_once("hits=").unwrap().1.trim());
    assert!(hits >= DENIED, "{DENIED} pings denied, {hits} hits\n{t}");
    let jt = json(n2, &["rules"])["text"].as_str().unwrap().to_string();
    assert!(jt.lines().any(|l| l.contains(" deny contiv:icmpPol/1 ")), "{jt}");

    // flows on node1: the held connection, before and after NAT.
    let t = table(n1, &["flows"]);
    let flow = format!("10.1.0.3:{sport} → 10.96.0.10:80 proto 6: dst → {backend}:8080");
    assert!(t.contains(&flow), "{flow}\n{t}");
    assert!(json(n1, &["flows"])["text"].as_str().unwrap().contains(&flow));
    // Its verdict, and an age no younger than its idle time.
    let line = t.lines().find(|l| l.contains(&flow)).unwrap();
    let ms = |what: &str| num(line.split_once(&format!("{what} ")).unwrap().1.split(' ').next().unwrap());
    assert!(line.contains(", verdict allowed, "), "{line}");
    assert!(ms("age") >= ms("idle"), "{line}");
    assert_eq!(held.exchange(), "ok", "the connection lives on");

    // net list: poc-net, VNI 21, as netctl shows it.
    for cmd in [["net", "list"], ["net", "ls"]] {
        let t = table(n1, &cmd);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with("Tenant   Network  Nw-Type  Encap type  Packet tag  Subnet")
                && lines[1].starts_with("------"),
            "{t}"
        );
        assert_eq!(row(&t, "default"), ["default", "poc-net", "data", "vxlan", "21", "21.1.1.0/24", "21.1.1.1"], "{t}");
        assert_eq!(lines.len(), 3, "{t}");
    }
    let j = json(n1, &["net", "list"]);
    let net = &j["networks"][0];
    assert_eq!(
        (net["name"].as_str(), net["vni"].as_u64(), net["subnet"].as_str(), net["gateway"].as_str()),
        (Some("poc-net"), Some(21), Some("21.1.1.0/24"), Some("21.1.1.1"))
    );
    let pods: Vec<&str> = net["pods"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(pods, ["default/noping-1", "default/poc-1"]);

    // group list: noping-epg guarded by icmpPol, poc-epg by nothing.
    let t = table(n1, &["group", "list"]);
    let rows: Vec<Vec<&str>> = t.lines().skip(2).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows,
        [vec!["default", "noping-epg", "poc-net", "icmpPol"], vec!["default", "poc-epg", "poc-net"]],
        "{t}"
    );
    let j = json(n1, &["group", "list"]);
    let g = &j["groups"][0];
    assert_eq!(
        (g["name"].as_str(), g["network"].as_str(), g["policies"][0].as_str()),
        (Some("noping-epg"), Some("poc-net"), Some("icmpPol"))
    );
    assert_eq!(g["pods"][0]["ip"].as_str(), Some("21.1.1.3"));

    // rule list: the icmp deny, all policies or -p; its dataplane id is
    // the one `rules` shows the hits of.
    for args in
        [&["rule", "list"][..], &["rule", "list", "-p", "icmpPol"][..], &["rule", "ls", "--policy", "icmpPol"][..]]
    {
        let t = table(n1, args);
        assert!(
            t.starts_with(
                "Policy   Rule  Direction  Priority  EndpointGroup  Network  IpAddress  Protocol  Port  Action\n"
            ),
            "{t}"
        );
        assert_eq!(row(&t, "icmpPol"), ["icmpPol", "1", "in", "1", "icmp", "0", "deny"], "{t}");
        assert_eq!(t.lines().count(), 3, "{t}");
    }
    let j = json(n1, &["rule", "list", "-p", "icmpPol"]);
    let r = &j["policies"][0]["rules"][0];
    assert_eq!(
        (r["id"].as_u64(), r["direction"].as_str(), r["protocol"].as_str(), r["action"].as_str()),
        (Some(1), Some("in"), Some("icmp"), Some("deny"))
    );
    assert_eq!(j["policies"][0]["groups"][0].as_str(), Some("noping-epg"));
    assert!(rule.contains(&format!(" {} ", r["acl_id"].as_str().unwrap())), "{rule}");
    let e = run(n1, &["rule", "list", "-p", "nosuch"]);
    assert_eq!(e.code, 1, "an unknown policy is weir-control's error: {}", e.stderr);
    assert!(e.stderr.contains("policy \"nosuch\": there is none") && e.stdout.is_empty(), "{}", e.stderr);

    // control-status: the source, the objects, the generation pushed.
    let t = table(n1, &["control-status"]);
    assert!(t.contains(&format!("cluster file {}", n1.file.display())) && t.contains("contiv model  valid"), "{t}");
    assert!(t.contains(&format!("node node1, control generation {cg}")), "{t}");
    let j = json(n1, &["control-status"]);
    assert_eq!(
        (j["ready"].as_bool(), j["node"].as_str(), j["objects"]["pods"].as_u64()),
        (Some(true), Some("node1"), Some(6))
    );
    assert_eq!(
        (j["dataplane"]["reachable"].as_bool(), j["dataplane"]["control_generation"].as_u64()),
        (Some(true), Some(cg))
    );
    assert!(j["pushes"]["resyncs"].as_u64() >= Some(1), "{j}");

    // The dataplane refuses: exit 1 (unreachable sockets and bad usage: the
    // test below).
    let e = run(n1, &["remove-port", "nosuch"]);
    assert!(e.code == 1 && e.stderr.starts_with("weirctl: ") && e.stderr.contains("nosuch"), "{} {}", e.code, e.stderr);
    drop(held);
}

/// Bad usage and sockets nobody answers on: exit status 2 and a message
/// that says what was wrong (no bed needed).
/// The commands that change a node, on the same bed: `add-port` attaches
/// a new pod while the node runs (it then reaches a pod on the other
/// node), `remove-port` takes it away again, `set-services` replaces the
/// Services (with the node's weir-control stopped, which would put the
/// cluster's back), and `shutdown` stops a dataplane.
#[test]
fn the_commands_that_change_a_node() {
    let mut demo = Demo::start(DEMO);
    let mut server = serve(demo.pod("web-2"), "web-2", 8080);
    let extra = make_pod(&demo._ns[0], &format!("{}xt", tag()), "10.1.0.9", "02:00:00:00:01:09", "10.1.0.1", "1450");
    let n1 = &demo.nodes[0];

    // add-port: a pod port, listed up, and working across the tunnel.
    let add = [
        "add-port",
        "--name",
        "extra",
        "--kind",
        "af_packet",
        "--iface",
        &extra.host_if,
        "--pod-ip",
        "10.1.0.9",
        "--pod-mac",
        "02:00:00:00:01:09",
    ];
    let r = run(n1, &add);
    assert_eq!(r.code, 0, "add-port: {}\n{}", r.stderr, n1.logs());
    let listed = row(&table(n1, &["ports"]), "extra").join(" ");
    assert!(listed.contains("up"), "{listed}");
    assert!(extra.ping("10.2.0.2", 3), "the added pod reaches web-2\n{}", demo.logs());
    // The same name again is refused (exit 1, the dataplane's error).
    let again = run(n1, &add);
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(again.stderr.contains("extra"), "{}", again.stderr);

    // remove-port: gone from the list, and its pod cut off.
    let r = run(n1, &["remove-port", "extra"]);
    assert_eq!(r.code, 0, "remove-port: {}", r.stderr);
    assert!(!table(n1, &["ports"]).lines().any(|l| l.starts_with("extra ")));
    assert!(!extra.ping("10.2.0.2", 2), "a removed port still forwards");

    // set-services, with node1's weir-control stopped.
    demo.nodes[0].control.kill();
    let n1 = &demo.nodes[0];
    let file = n1.dir.join("services.toml");
    std::fs::write(
        &file,
        "[[services]]\nname = \"default/extra\"\ncluster_ips = [\"10.96.0.99\"]\nports = [{ port = 80, protocol = \"tcp\", target_port = 8080 }]\nbackends = [{ ip = \"10.2.0.2\" }]\n",
    )
    .unwrap();
    let r = run(n1, &["set-services", "--file", file.to_str().unwrap()]);
    assert_eq!(r.code, 0, "set-services: {}", r.stderr);
    assert!(table(n1, &["services"]).contains("default/extra 10.96.0.99:80/6 ClusterIP"));
    assert_eq!(who(demo.pod("client-1"), "10.96.0.99", 80), "web-2", "{}", demo.logs());
    // A file that is not Services: exit 2, nothing changed.
    std::fs::write(&file, "[[services]]\nname = 5\n").unwrap();
    let r = run(n1, &["set-services", "--file", file.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(who(demo.pod("client-1"), "10.96.0.99", 80), "web-2");

    // shutdown: node2's dataplane exits; its socket stops answering.
    let n2 = &demo.nodes[1];
    let r = run(n2, &["shutdown"]);
    assert_eq!(r.code, 0, "shutdown: {}", r.stderr);
    let t0 = std::time::Instant::now();
    while run(n2, &["hello"]).code != 2 {
        assert!(t0.elapsed() < std::time::Duration::from_secs(10), "node2's dataplane still answers");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn bad_usage_and_unreachable_sockets_exit_2() {
    let dir = std::env::temp_dir().join(format!("weirctl-usage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (dp, ctl) = (dir.join("dp.sock"), dir.join("control.sock"));
    let cases: [(&[&str], &str); 8] = [
        (&["frobnicate"], "frobnicate"),
        (&["drops", "--bogus"], "--bogus"),
        (&["net"], "Usage"),
        (&["-o", "yaml", "ports"], "yaml"),
        (&["ports"], "cannot connect to"),
        (&["-o", "json", "generation"], "is weir-dataplane running?"),
        (&["net", "list"], "is weir-control running?"),
        (&["control-status"], "cannot connect to"),
    ];
    for (args, want) in cases {
        let out = Command::new(weirctl_bin())
            .arg("-s")
            .arg(&dp)
            .arg("--control-socket")
            .arg(&ctl)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "weirctl {args:?}: {stderr}");
        assert!(stderr.contains(want), "weirctl {args:?}: want {want:?} in {stderr}");
        assert!(out.stdout.is_empty(), "weirctl {args:?} printed {}", String::from_utf8_lossy(&out.stdout));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
