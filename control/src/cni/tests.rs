//! The plugin driven the way libcni drives it (environment + stdin, one
//! invocation per operation: VERSION, ADD, CHECK, DEL twice, GC, STATUS),
//! each answer checked against the spec; first against a mock weir-control
//! socket, then against the real CNI server over a mock weir-dataplane
//! (vhost-user pods: no root needed). The namespace tests
//! (dataplane/tests/cni.rs) run the binary itself against real ones.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use weir_dataplane::api::{PortStats, Reply, Request, Stats};
use weir_dataplane::config::PortConfig;

use super::plugin::{self, Outcome};
use super::proto::{AttachInfo, CniReply, CniRequest, PodPort};
use super::server::{Server, ServerConfig, PORT_PREFIX};
use super::spec::{check_result, code};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wcni-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One invocation as libcni makes it.
fn invoke(cmd: &str, id: &str, netns: Option<&str>, args: &str, conf: &Value) -> Outcome {
    let mut env: HashMap<&str, String> = HashMap::new();
    env.insert("CNI_COMMAND", cmd.into());
    env.insert("CNI_PATH", "/opt/cni/bin".into());
    if !matches!(cmd, "VERSION" | "STATUS" | "GC") {
        env.insert("CNI_CONTAINERID", id.into());
        env.insert("CNI_IFNAME", "eth0".into());
        if let Some(n) = netns {
            env.insert("CNI_NETNS", n.into());
        }
        env.insert("CNI_ARGS", args.into());
    }
    plugin::run(&move |k: &str| env.get(k).cloned(), &conf.to_string())
}

fn error_of(o: &Outcome, version: &str) -> (u32, String) {
    assert_ne!(o.status, 0, "expected an error: {o:?}");
    let v: Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("error is not JSON ({e}): {o:?}"));
    assert_eq!(v["cniVersion"], version, "{v}");
    assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    (v["code"].as_u64().unwrap() as u32, v["msg"].as_str().unwrap().to_string())
}

fn result_of(o: &Outcome, version: &str) -> Value {
    assert_eq!(o.status, 0, "{o:?}");
    let v: Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("result is not JSON ({e}): {o:?}"));
    check_result(&v, version).unwrap_or_else(|e| panic!("{e}: {v:#}"));
    v
}

// ------------------------------------------------------------------ mock control

/// A weir-control stand-in: answers ADD/CHECK with one attachment, counts requests.
fn mock_control(sock: &Path) -> Arc<Mutex<Vec<CniRequest>>> {
    let l = UnixListener::bind(sock).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let mut out = conn.try_clone().unwrap();
            let mut line = String::new();
            BufReader::new(conn).read_line(&mut line).unwrap();
            let req: CniRequest = serde_json::from_str(&line).unwrap();
            let reply = match &req {
                CniRequest::Add(p) | CniRequest::Check(p) => CniReply::Attached {
                    info: AttachInfo {
                        kind: PodPort::Tap,
                        port: "cni-0123456789".into(),
                        port_mac: Some("02:aa:bb:cc:dd:ee".into()),
                        ifname: p.ifname.clone(),
                        mac: "0a:58:0a:01:00:05".into(),
                        netns: p.netns.clone(),
                        ip: Ipv4Addr::new(10, 1, 0, 5),
                        prefix_len: 24,
                        gateway: Ipv4Addr::new(10, 1, 0, 1),
                        mtu: 1450,
                        socket_path: None,
                        device_info: None,
                    },
                },
                _ => CniReply::Done,
            };
            s.lock().unwrap().push(req);
            writeln!(out, "{}", serde_json::to_string(&reply).unwrap()).unwrap();
        }
    });
    seen
}

#[test]
fn libcni_sequence_against_a_mock_control() {
    let d = tmp("mock");
    let sock = d.join("cni.sock");
    let seen = mock_control(&sock);
    for version in ["1.0.0", "1.1.0"] {
        let conf = json!({"cniVersion": version, "name": "weir", "type": "weir-cni", "socket": sock});
        // VERSION: stdin holds only the version.
        let o = invoke("VERSION", "", None, "", &json!({"cniVersion": version}));
        let v: Value = serde_json::from_str(&o.stdout).unwrap();
        assert_eq!((o.status, v["cniVersion"].as_str()), (0, Some(version)));
        assert_eq!(v["supportedVersions"], json!(["1.0.0", "1.1.0"]));
        let r =
            result_of(&invoke("ADD", "c1", Some("/run/netns/p1"), "IgnoreUnknown=1;K8S_POD_NAME=a", &conf), version);
        assert_eq!(r["ips"], json!([{"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 1}]));
        assert_eq!(r["interfaces"][1]["sandbox"], "/run/netns/p1");
        assert_eq!(r["interfaces"][1]["mac"], "0a:58:0a:01:00:05");
        assert_eq!(r["interfaces"][1].get("mtu").is_some(), version == "1.1.0");
        assert_eq!(r["routes"], json!([{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}]));
        // CHECK with the ADD's result: nothing printed.
        let mut with_prev = conf.clone();
        with_prev["prevResult"] = r.clone();
        let o = invoke("CHECK", "c1", Some("/run/netns/p1"), "", &with_prev);
        assert_eq!((o.status, o.stdout.as_str()), (0, ""));
        // A prevResult that is not this attachment fails CHECK.
        let mut other = with_prev.clone();
        other["prevResult"]["ips"][0]["address"] = "10.1.0.9/24".into();
        let (c, m) = error_of(&invoke("CHECK", "c1", Some("/run/netns/p1"), "", &other), version);
        assert_eq!(c, code::CHECK_FAILED, "{m}");
        // CHECK without prevResult: invalid configuration.
        assert_eq!(error_of(&invoke("CHECK", "c1", Some("/n"), "", &conf), version).0, code::INVALID_NETWORK_CONFIG);
        // DEL twice (with prevResult, as podman sends it), and without a namespace.
        for _ in 0..2 {
            let o = invoke("DEL", "c1", Some("/run/netns/p1"), "", &with_prev);
            assert_eq!((o.status, o.stdout.as_str()), (0, ""));
        }
        assert_eq!(invoke("DEL", "c1", None, "", &conf).status, 0);
        let mut gc = conf.clone();
        gc["cni.dev/valid-attachments"] = json!([{"containerID": "c2", "ifname": "eth0"}]);
        let o = invoke("GC", "", None, "", &gc);
        assert_eq!((o.status, o.stdout.as_str()), (0, ""));
        let o = invoke("STATUS", "", None, "", &conf);
        assert_eq!((o.status, o.stdout.as_str()), (0, ""));
        // Errors print in the configuration's version.
        assert_eq!(error_of(&invoke("ADD", "c1", None, "", &conf), version).0, code::INVALID_ENVIRONMENT);
    }
    let seen = seen.lock().unwrap();
    let ops: Vec<&str> = seen
        .iter()
        .map(|r| match r {
            CniRequest::Add(_) => "add",
            CniRequest::Del(_) => "del",
            CniRequest::Check(_) => "check",
            CniRequest::Status { .. } => "status",
            CniRequest::Gc { .. } => "gc",
        })
        .collect();
    let once = ["add", "check", "check", "del", "del", "del", "gc", "status"];
    assert_eq!(ops, [once, once].concat());
    if let CniRequest::Add(p) = &seen[0] {
        assert_eq!(p.args.get("K8S_POD_NAME").map(String::as_str), Some("a"));
    }
    if let CniRequest::Gc { valid, .. } = &seen[6] {
        assert_eq!(valid[0].container_id, "c2");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn without_weir_control_add_says_try_again_and_status_not_available() {
    let d = tmp("nocontrol");
    let conf = json!({"cniVersion": "1.0.0", "name": "weir", "type": "weir-cni", "socket": d.join("none.sock")});
    assert_eq!(error_of(&invoke("ADD", "c1", Some("/n"), "", &conf), "1.0.0").0, code::TRY_AGAIN_LATER);
    assert_eq!(error_of(&invoke("DEL", "c1", None, "", &conf), "1.0.0").0, code::TRY_AGAIN_LATER);
    assert_eq!(error_of(&invoke("STATUS", "", None, "", &conf), "1.0.0").0, code::NOT_AVAILABLE);
    // A version weir does not speak: code 1, in the newest version it does.
    let old = json!({"cniVersion": "0.4.0", "name": "weir", "type": "weir-cni"});
    assert_eq!(error_of(&invoke("ADD", "c1", Some("/n"), "", &old), "1.1.0").0, code::INCOMPATIBLE_VERSION);
    let o = plugin::run(&|k: &str| (k == "CNI_COMMAND").then(|| "ADD".to_string()), "{nope");
    assert_eq!(error_of(&o, "1.1.0").0, code::INVALID_ENVIRONMENT);
    let o = plugin::run(&|k: &str| (k == "CNI_COMMAND").then(|| "STATUS".to_string()), "{nope");
    assert_eq!(error_of(&o, "1.1.0").0, code::DECODING_FAILURE);
    let _ = std::fs::remove_dir_all(&d);
}

// ------------------------------------------------------------------ real server, mock dataplane

/// A weir-dataplane stand-in on the management protocol: ports by name
/// (a vhost-user server port makes its socket file, as DPDK does), an
/// instance that changes on `restart`.
struct MockDataplane {
    ports: Arc<Mutex<BTreeMap<String, PortConfig>>>,
    instance: Arc<Mutex<u64>>,
    up: Arc<Mutex<bool>>,
}

impl MockDataplane {
    fn start(sock: &Path) -> MockDataplane {
        let rx = weir_dataplane::mgmt::serve(sock).unwrap();
        let m = MockDataplane {
            ports: Arc::new(Mutex::new(BTreeMap::new())),
            instance: Arc::new(Mutex::new(1)),
            up: Arc::new(Mutex::new(true)),
        };
        let (ports, instance, up) = (m.ports.clone(), m.instance.clone(), m.up.clone());
        std::thread::spawn(move || {
            for (req, reply) in rx {
                if !*up.lock().unwrap() {
                    drop(reply); // no answer: the caller sees the connection close
                    continue;
                }
                let mut ports = ports.lock().unwrap();
                let r = match req {
                    Request::Handshake { .. } | Request::Hello => Reply::Hello {
                        version: weir_dataplane::api::PROTOCOL_VERSION,
                        node: "mock".into(),
                        dpdk: "none".into(),
                        instance: *instance.lock().unwrap(),
                        control_generation: None,
                    },
                    Request::Stats => Reply::Stats(Stats {
                        ports: ports
                            .values()
                            .map(|p| PortStats {
                                name: p.name.clone(),
                                kind: p.kind.to_string(),
                                mac: "02:00:00:00:aa:01".into(),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    }),
                    Request::AddPort { port } => {
                        if ports.contains_key(&port.name) {
                            Reply::Error {
                                message: format!("port.name = {:?}: a port with this name exists", port.name),
                            }
                        } else {
                            if let (Some(path), Some(true)) = (&port.path, port.server) {
                                std::fs::write(path, b"").unwrap();
                            }
                            ports.insert(port.name.clone(), port);
                            Reply::Applied { generation: 1 }
                        }
                    }
                    Request::RemovePort { name } => match ports.remove(&name) {
                        Some(p) => {
                            if let (Some(path), Some(true)) = (&p.path, p.server) {
                                let _ = std::fs::remove_file(path);
                            }
                            Reply::Applied { generation: 1 }
                        }
                        None => Reply::Error { message: format!("no port named {name:?}") },
                    },
                    other => Reply::Error { message: format!("mock: {other:?}") },
                };
                let _ = reply.send(r);
            }
        });
        m
    }

    fn restart(&self) {
        let mut ports = self.ports.lock().unwrap();
        for p in ports.values() {
            if let (Some(path), Some(true)) = (&p.path, p.server) {
                let _ = std::fs::remove_file(path);
            }
        }
        ports.clear();
        *self.instance.lock().unwrap() += 1;
    }

    fn port_names(&self) -> Vec<String> {
        self.ports.lock().unwrap().keys().cloned().collect()
    }
}

struct Bed {
    dir: PathBuf,
    dp: MockDataplane,
    server: Server,
    conf: Value,
}

fn bed(name: &str) -> Bed {
    let dir = tmp(name);
    let dp = MockDataplane::start(&dir.join("dp.sock"));
    let server = start_server(&dir);
    let conf = json!({
        "cniVersion": "1.1.0", "name": "weir", "type": "weir-cni",
        "socket": dir.join("cni.sock"),
        "vhostUser": true,
        "socketDir": dir.join("vhost"),
        "deviceInfoDir": dir.join("devinfo"),
        "ipam": {"subnet": "10.1.0.0/24", "gateway": "10.1.0.1"}
    });
    Bed { dir, dp, server, conf }
}

fn start_server(dir: &Path) -> Server {
    let _ = std::fs::remove_file(dir.join("cni.sock"));
    Server::start(ServerConfig {
        socket: dir.join("cni.sock"),
        ipam_dir: dir.join("ipam"),
        dataplane: dir.join("dp.sock"),
        node: None,
        objects: None,
        interval: Duration::from_secs(3600),
    })
    .unwrap()
}

fn files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn libcni_sequence_against_the_server_with_vhost_user_pods() {
    let b = bed("seq");
    let netns = "/run/netns/dpdk-pod";
    let r = result_of(&invoke("ADD", "c1", Some(netns), "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=a", &b.conf), "1.1.0");
    let ports = b.dp.port_names();
    assert_eq!(ports.len(), 1);
    assert!(ports[0].starts_with(PORT_PREFIX));
    let sock = b.dir.join("vhost").join(format!("{}.sock", ports[0]));
    assert_eq!(r["interfaces"][0]["name"], ports[0].as_str());
    assert_eq!(r["interfaces"][0]["socketPath"], sock.to_str().unwrap());
    assert_eq!(r["interfaces"][1]["socketPath"], sock.to_str().unwrap());
    assert_eq!(r["interfaces"][1]["sandbox"], netns);
    assert_eq!(r["ips"][0]["address"], "10.1.0.2/24");
    assert_eq!(r["interfaces"][1]["mac"], "0a:58:0a:01:00:02");
    // The port the dataplane got: vhost-user server, the pod's address and MAC.
    let pc = b.dp.ports.lock().unwrap()[&ports[0]].clone();
    assert_eq!((pc.server, pc.path.as_deref()), (Some(true), sock.to_str()));
    let pod = pc.pod.unwrap();
    assert_eq!(
        (pod.ip.to_string(), pod.mac.to_string(), pod.network),
        ("10.1.0.2".into(), "0a:58:0a:01:00:02".into(), None)
    );
    // Device info for the pod (device-info spec 1.1.0; the pod is the client).
    let di = b.dir.join("devinfo").join("weir-c1-eth0-device.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&di).unwrap()).unwrap();
    assert_eq!(v, json!({"type": "vhost-user", "version": "1.1.0", "vhost-user": {"mode": "client", "path": sock}}));

    let mut with_prev = b.conf.clone();
    with_prev["prevResult"] = r.clone();
    assert_eq!(invoke("CHECK", "c1", Some(netns), "", &with_prev).status, 0);
    // CHECK notices what went missing.
    std::fs::remove_file(&di).unwrap();
    let (c, m) = error_of(&invoke("CHECK", "c1", Some(netns), "", &with_prev), "1.1.0");
    assert_eq!(c, code::CHECK_FAILED);
    assert!(m.contains("device-info"), "{m}");
    for _ in 0..2 {
        let o = invoke("DEL", "c1", Some(netns), "", &with_prev);
        assert_eq!((o.status, o.stdout.as_str()), (0, ""), "DEL");
    }
    assert!(b.dp.port_names().is_empty());
    assert!(!sock.exists());
    assert_eq!(files(&b.dir.join("devinfo")), Vec::<String>::new());
    // CHECK of what is gone: container unknown.
    assert_eq!(error_of(&invoke("CHECK", "c1", Some(netns), "", &with_prev), "1.1.0").0, code::UNKNOWN_CONTAINER);

    // GC keeps the valid attachments and releases the rest.
    for c in ["g1", "g2", "g3"] {
        result_of(&invoke("ADD", c, Some(netns), "", &b.conf), "1.1.0");
    }
    // Another CNI network's attachments are not this GC's.
    let mut other = b.conf.clone();
    other["name"] = "other".into();
    result_of(&invoke("ADD", "o1", Some(netns), "", &other), "1.1.0");
    let mut gc = b.conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "g2", "ifname": "eth0"}]);
    assert_eq!(invoke("GC", "", None, "", &gc).status, 0);
    let left: Vec<String> = b.server.attachments().iter().map(|a| a.container_id.clone()).collect();
    assert_eq!(left, ["g2", "o1"]);
    assert_eq!(b.dp.port_names().len(), 2);

    // STATUS: ready; not available while the dataplane does not answer.
    assert_eq!(invoke("STATUS", "", None, "", &b.conf).status, 0);
    *b.dp.up.lock().unwrap() = false;
    assert_eq!(error_of(&invoke("STATUS", "", None, "", &b.conf), "1.1.0").0, code::NOT_AVAILABLE);
    assert_eq!(error_of(&invoke("ADD", "x", Some(netns), "", &b.conf), "1.1.0").0, code::TRY_AGAIN_LATER);
    // DEL while the dataplane is away still releases the address; the
    // port is removed once it answers again.
    assert_eq!(invoke("DEL", "g2", Some(netns), "", &b.conf).status, 0);
    *b.dp.up.lock().unwrap() = true;
    b.server.reconcile();
    let left: Vec<String> = b.server.attachments().iter().map(|a| a.container_id.clone()).collect();
    assert_eq!(left, ["o1"]);
    assert_eq!(b.dp.port_names().len(), 1, "the orphan port went");
    let _ = std::fs::remove_dir_all(&b.dir);
}

#[test]
fn a_restarted_control_keeps_its_addresses_and_a_restarted_dataplane_gets_its_ports_back() {
    let b = bed("restart");
    let ip = |o: &Outcome| result_of(o, "1.1.0")["ips"][0]["address"].as_str().unwrap().to_string();
    let a = ip(&invoke("ADD", "a", Some("/n"), "", &b.conf));
    // weir-control restarts (a new server on the same IPAM directory).
    drop(b.server);
    let server = start_server(&b.dir);
    let c = ip(&invoke("ADD", "c", Some("/n"), "", &b.conf));
    assert_ne!(a, c, "no address handed out twice");
    assert_eq!(server.attachments().len(), 2);
    // A client-mode pod (the pod listens; weir connects and reconnects).
    let r = result_of(&invoke("ADD", "k", Some("/n"), "WEIR_VHOST_MODE=client", &b.conf), "1.1.0");
    let kport = r["interfaces"][0]["name"].as_str().unwrap().to_string();
    assert_eq!(b.dp.ports.lock().unwrap()[&kport].server, Some(false));
    let di = b.dir.join("devinfo").join("weir-k-eth0-device.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(di).unwrap()).unwrap();
    assert_eq!(v["vhost-user"]["mode"], "server");
    // The dataplane restarts: every port comes back, sockets included.
    let before = b.dp.port_names();
    b.dp.restart();
    assert!(b.dp.port_names().is_empty());
    server.reconcile();
    assert_eq!(b.dp.port_names(), before);
    for a in server.attachments() {
        if a.vhost_server {
            assert!(Path::new(a.socket.as_deref().unwrap()).exists(), "{a:?}");
        }
    }
    // A port nobody owns is removed.
    let orphan = PortConfig { name: "cni-000000beef".into(), path: None, ..b.dp.ports.lock().unwrap()[&kport].clone() };
    b.dp.ports.lock().unwrap().insert(orphan.name.clone(), orphan);
    server.reconcile();
    assert_eq!(b.dp.port_names(), before);
    let _ = std::fs::remove_dir_all(&b.dir);
}

#[test]
fn add_errors_change_nothing() {
    let b = bed("errors");
    // Exhaust a /30: two host addresses, one the gateway.
    let mut small = b.conf.clone();
    small["ipam"] = json!({"subnet": "10.9.0.0/30"});
    result_of(&invoke("ADD", "s1", Some("/n"), "", &small), "1.1.0");
    let (c, m) = error_of(&invoke("ADD", "s2", Some("/n"), "", &small), "1.1.0");
    assert_eq!(c, code::IPAM_EXHAUSTED, "{m}");
    assert!(m.contains("no free address left in 10.9.0.0/30"), "{m}");
    // A port annotation weir does not know.
    let (c, m) = error_of(&invoke("ADD", "s3", Some("/n"), "WEIR_PORT=sriov", &b.conf), "1.1.0");
    assert_eq!(c, code::INVALID_NETWORK_CONFIG);
    assert!(m.contains("\"sriov\""), "{m}");
    // An unknown weir network.
    let (c, m) = error_of(&invoke("ADD", "s4", Some("/n"), "WEIR_NETWORK=nope", &b.conf), "1.1.0");
    assert_eq!(c, code::INVALID_NETWORK_CONFIG);
    assert!(m.contains("\"nope\""), "{m}");
    // A kernel pod whose namespace does not exist.
    let mut kernel = b.conf.clone();
    kernel["vhostUser"] = false.into();
    let (c, _) = error_of(&invoke("ADD", "s5", Some("/nonexistent/netns"), "", &kernel), "1.1.0");
    assert_eq!(c, code::INVALID_ENVIRONMENT);
    // No pod CIDR anywhere (no ipam.subnet, no Node object).
    let mut bare = b.conf.clone();
    bare.as_object_mut().unwrap().remove("ipam");
    let (c, m) = error_of(&invoke("ADD", "s6", Some("/n"), "", &bare), "1.1.0");
    assert_eq!(c, code::INVALID_NETWORK_CONFIG);
    assert!(m.contains("no pod CIDR for node mock"), "{m}");
    // The dataplane refuses the port: the address is released again.
    b.dp.ports.lock().unwrap().clear();
    let names_before = b.server.attachments().len();
    *b.dp.up.lock().unwrap() = false;
    error_of(&invoke("ADD", "s7", Some("/n"), "", &b.conf), "1.1.0");
    *b.dp.up.lock().unwrap() = true;
    assert_eq!(b.server.attachments().len(), names_before);
    let _ = std::fs::remove_dir_all(&b.dir);
}

#[test]
fn pods_and_nodes_from_the_cluster_choose_port_kind_network_and_cidr() {
    let dir = tmp("objs");
    let dp = MockDataplane::start(&dir.join("dp.sock"));
    let shared = crate::source::Shared::new();
    let yaml = r#"
apiVersion: v1
kind: Node
metadata: {name: mock}
spec: {podCIDR: 10.7.0.0/24}
---
apiVersion: v1
kind: Pod
metadata: {name: dpdk, namespace: ns, annotations: {weir.dev/port: vhost-user}}
spec: {nodeName: mock, containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: poc, namespace: ns, labels: {io.contiv.network: poc-net}}
spec: {nodeName: mock, containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: static, namespace: ns}
spec: {nodeName: mock, containers: [{name: c}]}
status: {podIP: 10.7.0.2}
---
apiVersion: weir.dev/v1alpha1
kind: Network
metadata: {name: poc-net}
spec: {subnet: 21.1.1.0/24, gateway: 21.1.1.1, vni: 21}
"#;
    shared.set(crate::model::ClusterObjects::from_yaml(yaml).unwrap());
    let server = Server::start(ServerConfig {
        socket: dir.join("cni.sock"),
        ipam_dir: dir.join("ipam"),
        dataplane: dir.join("dp.sock"),
        node: None,
        objects: Some(shared),
        interval: Duration::from_secs(3600),
    })
    .unwrap();
    let conf = json!({"cniVersion": "1.0.0", "name": "weir", "type": "weir-cni", "socket": dir.join("cni.sock"),
        "socketDir": dir.join("vhost"), "deviceInfoDir": dir.join("devinfo")});
    let r = result_of(&invoke("ADD", "d", Some("/n"), "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=dpdk", &conf), "1.0.0");
    // 10.7.0.2 is the static pod's: skipped.
    assert_eq!(r["ips"][0]["address"], "10.7.0.3/24");
    assert_eq!(r["ips"][0]["gateway"], "10.7.0.1");
    assert!(r["interfaces"][1].get("socketPath").is_none(), "1.0.0 has no socketPath");
    let a = server.attachments();
    assert_eq!((a[0].kind, a[0].pod.as_deref()), (PodPort::VhostUser, Some("ns/dpdk")));
    let r = result_of(
        &invoke("ADD", "p", Some("/n"), "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=poc;WEIR_PORT=vhost-user", &conf),
        "1.0.0",
    );
    assert_eq!(r["ips"][0]["address"], "21.1.1.2/24");
    let port = r["interfaces"][0]["name"].as_str().unwrap();
    assert_eq!(dp.ports.lock().unwrap()[port].pod.as_ref().unwrap().network.as_deref(), Some("poc-net"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// (c) against the mock dataplane: 1000 ADD/DEL cycles leave no address,
/// port, socket, device-info file or state behind. (The namespace test
/// does the same against a real weir-dataplane with TAP ports.)
#[test]
fn a_thousand_add_del_cycles_leak_nothing() {
    let b = bed("cycles");
    let mut seen = std::collections::HashSet::new();
    for i in 0..1000 {
        let id = format!("cycle{i}");
        let args = if i % 2 == 0 { "" } else { "WEIR_VHOST_MODE=client" };
        let r = result_of(&invoke("ADD", &id, Some("/n"), args, &b.conf), "1.1.0");
        seen.insert(r["ips"][0]["address"].as_str().unwrap().to_string());
        assert_eq!(b.dp.port_names().len(), 1);
        assert_eq!(invoke("DEL", &id, Some("/n"), "", &b.conf).status, 0);
    }
    // Round robin: every host address but the gateway was handed out.
    assert_eq!(seen.len(), 253);
    assert!(b.server.attachments().is_empty());
    assert!(b.dp.port_names().is_empty());
    assert_eq!(files(&b.dir.join("vhost")), Vec::<String>::new());
    assert_eq!(files(&b.dir.join("devinfo")), Vec::<String>::new());
    assert_eq!(files(&b.dir.join("ipam")), vec!["state.json".to_string()]);
    let state: Value = serde_json::from_str(&std::fs::read_to_string(b.dir.join("ipam/state.json")).unwrap()).unwrap();
    assert_eq!(state["attachments"], json!({}));
    let _ = std::fs::remove_dir_all(&b.dir);
}

/// The conflist a node installs: CNI 1.0.0 (what current runtimes accept),
/// weir-cni's configuration as the plugin parses it, and the same in the
/// DaemonSet's ConfigMap.
#[test]
fn the_shipped_conflist_parses_and_matches_the_daemonset() {
    let text = include_str!("../../../config/cni/10-weir.conflist");
    let list: Value = serde_json::from_str(text).unwrap();
    assert_eq!(list["cniVersion"], "1.0.0");
    assert_eq!(list["plugins"].as_array().unwrap().len(), 1);
    // What a runtime hands the plugin: its object with the list's version and name.
    let mut plugin = list["plugins"][0].clone();
    plugin["cniVersion"] = list["cniVersion"].clone();
    plugin["name"] = list["name"].clone();
    let conf = super::spec::NetConf::parse(&plugin.to_string()).unwrap();
    assert_eq!((conf.type_.as_str(), conf.name.as_str()), ("weir-cni", "weir"));
    assert_eq!(conf.socket.as_deref(), Some(Path::new(super::spec::DEFAULT_SOCKET)));
    for v in list["cniVersions"].as_array().unwrap() {
        super::spec::check_version(v.as_str().unwrap()).unwrap();
    }
    let ds = include_str!("../../../config/k8s/daemonset.yaml");
    let cm: serde_yaml::Value = serde_yaml::Deserializer::from_str(ds)
        .map(|d| <serde_yaml::Value as serde::Deserialize>::deserialize(d).unwrap())
        .find(|d| d["kind"].as_str() == Some("ConfigMap"))
        .unwrap();
    let in_ds: Value = serde_json::from_str(cm["data"]["10-weir.conflist"].as_str().unwrap()).unwrap();
    assert_eq!(in_ds, list, "config/k8s/daemonset.yaml's conflist is config/cni/10-weir.conflist");
}
