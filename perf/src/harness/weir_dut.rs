//! weir-dataplane as the device under test: a node config for each
//! scenario (the addresses of [`crate::traffic::layout`]), started with its
//! worker on the DUT core, stopped with `shutdown`.
//!
//! Ports: the first is pod-a (or the uplink, for the scenarios that enter by
//! it), the second pod-b; vhost-user (weir listens, the generator's
//! virtio-user connects) or memif (weir is the server).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use weir_dataplane::api::Request;
use weir_dataplane::config::NodeConfig;
use weir_dataplane::tables::acl::{AclConfig, AclTable};
use weir_dataplane::tables::service::ServiceTable;
use weir_dataplane::tables::{Hop, Overlay, PortEntry, Tables, DEFAULT_NETWORK};
use weir_dataplane::wire::MacAddr;

use super::{DutError, GenSide, Link, RunningDut, Setup};
use crate::proc::{self, DpdkPrefix, Proc};
use crate::traffic::layout::*;
use crate::traffic::{Kind, Scenario};
use crate::weir as weir_proc;

/// Flow-table size for a scenario: room for every flow it sets up (two
/// entries each) with half the table free.
pub fn max_flows(s: &Scenario) -> u32 {
    let want = match s.kind {
        // New flows: what a search's short trials set up (the generator
        // reports it when its tuple space wraps). full-new's flows are
        // bounded first by its SNAT ports: `FULL_MAX_FLOWS` (2M) before any
        // backend's ports are half taken, 5.5 s of trials at 0.37 Mpps of
        // new flows with the harness's defaults (perf/README.md).
        Kind::ClusteripNew | Kind::AclNew | Kind::FullNew => 4 << 20,
        Kind::ClusteripEst | Kind::Nodeport | Kind::Acl | Kind::Full => s.flows.saturating_mul(2),
        Kind::Pod2Pod | Kind::VxlanDecap => 0,
    };
    want.clamp(65536, 1 << 24)
}

/// The node config text for `scenario`. `io`: `forward_mode = "io"` (ports
/// forwarded in pairs, no pipeline: the bare rx→tx path).
pub fn node_config(
    s: &Scenario,
    setup: &Setup,
    io: bool,
    file_prefix: &str,
    socket: &Path,
    paths: &[PathBuf; 2],
) -> Result<String, String> {
    let uplink = s.kind.enters_by_uplink() && !io;
    let mut c = String::from("# Written by weir-bench-harness for one run; removed afterwards.\n");
    c.push_str(&format!("[node]\nname = \"weir-bench\"\npod_cidr = {POD_CIDR:?}\n"));
    if uplink {
        c.push_str(&format!("node_ip = \"{NODE_IP}\"\nunderlay_cidr = {UNDERLAY_CIDR:?}\n"));
    }
    c.push_str(&format!("\n[gateway]\nip = \"{GW_IP}\"\nmac = \"{GW_MAC}\"\n"));
    c.push_str(&format!(
        "\n[dpdk]\nmain_core = {}\nworker_cores = [{}]\nmemory_mb = {}\nhugepages = true\nfile_prefix = {file_prefix:?}\n\
         burst = {}\nbusy_poll = true\nforward_mode = {:?}\nmax_flows = {}\n",
        setup.main_core,
        setup.dut_core,
        setup.dut_memory_mb,
        setup.burst,
        if io { "io" } else { "l3" },
        max_flows(s)
    ));
    c.push_str(&format!("\n[management]\nsocket = {:?}\n", socket.display().to_string()));
    let kind = match setup.link {
        Link::Vhost => "vhost_user",
        Link::Memif => "memif",
    };
    let first = if uplink {
        "name = \"uplink\"\nuplink = true\n".to_string()
    } else if io {
        "name = \"pod-a\"\n".to_string()
    } else {
        format!("name = \"pod-a\"\npod = {{ ip = \"{POD_A_IP}\", mac = \"{POD_A_MAC}\" }}\n")
    };
    let second = if io {
        "name = \"pod-b\"\n".to_string()
    } else {
        format!("name = \"pod-b\"\npod = {{ ip = \"{POD_B_IP}\", mac = \"{POD_B_MAC}\" }}\n")
    };
    // memif sockets as files, as the generator expects them (see `Link::Memif`).
    let extra = if setup.link == Link::Memif { "devargs = \"socket-abstract=no\"\n" } else { "" };
    for (body, path) in [(first, &paths[0]), (second, &paths[1])] {
        c.push_str(&format!(
            "\n[[ports]]\n{body}kind = {kind:?}\npath = {:?}\nserver = true\n{extra}",
            path.display().to_string()
        ));
    }
    if io {
        return Ok(c);
    }
    if s.kind.vxlan() {
        c.push_str(&format!(
            "\n[[remote_nodes]]\nname = \"node2\"\nnode_ip = \"{REMOTE_VTEP}\"\npod_cidr = {REMOTE_POD_CIDR:?}\n\
             vtep_mac = \"{REMOTE_GW_MAC}\"\n"
        ));
    }
    if matches!(s.kind, Kind::Full | Kind::FullNew) {
        // The Service's backends live on a third node; node2's pods reach
        // the NodePort on this node's IP through the tunnel: every
        // endpoint, and the client becomes the node IP and a port of the
        // SNAT range, widened so that the flows fit (`FULL_BACKENDS`).
        let backends: Vec<String> = full_backends().map(|b| format!("{{ ip = \"{b}\" }}")).collect();
        c.push_str(&format!(
            "\n[[remote_nodes]]\nname = \"node3\"\nnode_ip = \"{NODE3_VTEP}\"\npod_cidr = {NODE3_POD_CIDR:?}\n\
             vtep_mac = \"{NODE3_GW_MAC}\"\n\
             \n[[services]]\nname = \"bench/full\"\ncluster_ips = [\"10.96.2.1\"]\n\
             ports = [{{ port = {SVC_PORT}, protocol = \"udp\", node_port = {NODE_PORT} }}]\n\
             backends = [{}]\n\
             \n[nat]\nsnat_port_min = {SNAT_PORT_MIN}\nsnat_port_max = {SNAT_PORT_MAX}\n",
            backends.join(", ")
        ));
    }
    if matches!(s.kind, Kind::ClusteripEst | Kind::ClusteripNew) {
        // One port per step of the flows (pod-a varies the destination port).
        let ports: Vec<String> =
            s.dst_ports().iter().map(|p| format!("{{ port = {p}, protocol = \"udp\" }}")).collect();
        c.push_str(&format!(
            "\n[[services]]\nname = \"bench/svc\"\ncluster_ips = [\"{VIP}\"]\nports = [{}]\n\
             backends = [{{ ip = \"{POD_B_IP}\" }}]\n",
            ports.join(", ")
        ));
    }
    if s.kind == Kind::Nodeport {
        c.push_str(&format!(
            "\n[[services]]\nname = \"bench/nodeport\"\ncluster_ips = [\"10.96.1.1\"]\n\
             ports = [{{ port = {SVC_PORT}, protocol = \"udp\", node_port = {NODE_PORT} }}]\n\
             backends = [{{ ip = \"{POD_B_IP}\" }}]\nexternal_traffic_policy = \"local\"\n"
        ));
    }
    if let Some(rules) = s.rule_set() {
        // Tables ([[acl.pods]]) after every top-level key.
        c.push('\n');
        c.push_str(&rules?.toml()?);
    }
    Ok(c)
}

/// The node's own addresses, as weir-dataplane gives them to the ACL table
/// (always allowed by ingress).
pub fn node_addrs(cfg: &NodeConfig) -> Vec<std::net::Ipv4Addr> {
    std::iter::once(cfg.gateway.ip).chain(cfg.networks.iter().map(|n| n.gateway)).chain(cfg.node.node_ip).collect()
}

/// The tables weir-dataplane publishes for `s`'s config, for runs of its
/// pipeline without DPDK (the tests, weir-bench-pipeline): ports 0 and 1
/// in config order, the uplink's MAC `uplink_mac` (the driver's in a run),
/// every remote VTEP resolved to `vtep_mac` (what ARP would find), the
/// scenario's ACL or `acl` instead.
pub fn tables_for(
    s: &Scenario,
    acl: Option<AclConfig>,
    uplink_mac: MacAddr,
    vtep_mac: MacAddr,
) -> Result<Tables, String> {
    let dir = Path::new("/nonexistent");
    let text = node_config(
        s,
        &Setup::for_tests(),
        false,
        "weir-bench-tables",
        &dir.join("w.sock"),
        &[dir.join("a.sock"), dir.join("b.sock")],
    )?;
    let mut cfg = NodeConfig::from_toml(&text).map_err(|e| format!("the harness's weir config is refused: {e}"))?;
    if let Some(acl) = acl {
        cfg.acl = acl;
    }
    let mut t = Tables::new(&cfg, 1);
    t.services = ServiceTable::build(&cfg).map_err(|e| format!("services: {e}"))?;
    t.acl = Arc::new(AclTable::build(&cfg.acl, &node_addrs(&cfg))?);
    for (id, p) in cfg.ports.iter().enumerate() {
        let e = match &p.pod {
            Some(pod) => PortEntry::pod(&p.name, pod.ip, pod.mac, DEFAULT_NETWORK),
            None => PortEntry { uplink: p.uplink, ..PortEntry::plain(&p.name) },
        };
        t.add_port(id as u16, e, 1);
    }
    if let (Some(up), Some(node_ip), Some(underlay)) =
        (cfg.ports.iter().position(|p| p.uplink), cfg.node.node_ip, cfg.node.underlay_cidr)
    {
        t.overlay = Some(Overlay {
            node_ip,
            uplink: up as u16,
            uplink_mac,
            mtu: 1500,
            vxlan_port: cfg.overlay.vxlan_port,
            underlay,
            gateway: None,
            host: None,
            announced: Vec::new(),
        });
        for r in &cfg.remote_nodes {
            let hop = Hop::Remote { vtep: r.node_ip, vtep_mac: r.vtep_mac, net: DEFAULT_NETWORK };
            t.add_remote_route(DEFAULT_NETWORK, r.pod_cidr, hop);
            t.node_hops.insert(r.node_ip, hop);
            t.neighbours.insert(r.node_ip, vtep_mac);
        }
    }
    Ok(t)
}

/// A running weir-dataplane.
pub struct WeirDut {
    proc: Proc,
    socket: PathBuf,
    log: PathBuf,
    gen: GenSide,
    _prefix: DpdkPrefix,
}

/// Starts weir-dataplane for `scenario` and waits until it answers.
pub fn start(s: &Scenario, setup: &Setup, io: bool, dir: &Path, tag: &str) -> Result<WeirDut, DutError> {
    let bin = &setup.weir;
    if !bin.is_file() {
        return Err(DutError::Unavailable(format!(
            "{} not found (cargo build --release -p weir-dataplane, or --weir PATH)",
            bin.display()
        )));
    }
    let prefix = DpdkPrefix::new(tag);
    let socket = dir.join(format!("{tag}.sock"));
    let config = dir.join(format!("{tag}.toml"));
    let log = dir.join(format!("{tag}.log"));
    let paths = [dir.join(format!("{tag}-a.sock")), dir.join(format!("{tag}-b.sock"))];
    let text = node_config(s, setup, io, prefix.name(), &socket, &paths)
        .map_err(|e| DutError::Failed(format!("internal error: the harness's weir config: {e}")))?;
    let cfg = NodeConfig::from_toml(&text)
        .map_err(|e| DutError::Failed(format!("internal error: the harness's weir config is refused: {e}\n{text}")))?;
    // weir-dataplane only logs an ACL it refuses: refuse it here instead.
    AclTable::build(&cfg.acl, &node_addrs(&cfg))
        .map_err(|e| DutError::Failed(format!("internal error: the harness's ACL is refused: {e}")))?;
    std::fs::write(&config, &text).map_err(|e| DutError::Failed(format!("cannot write {}: {e}", config.display())))?;
    let out = File::create(&log).map_err(|e| DutError::Failed(format!("cannot create {}: {e}", log.display())))?;
    let err = out.try_clone().map_err(|e| DutError::Failed(e.to_string()))?;
    let mut p = Proc::spawn(
        "weir-dataplane",
        Command::new(bin).arg("-c").arg(&config).stdin(Stdio::null()).stdout(out).stderr(err),
    )
    .map_err(DutError::Failed)?;
    if let Err(e) = weir_proc::wait_ready(&mut p, &socket) {
        p.kill();
        return Err(DutError::Failed(format!("weir-dataplane did not come up: {e}\n{}", log_tail(&log))));
    }
    // The uplink's MAC is the driver's (vhost, memif): frames for the node
    // must carry it.
    let mut dst_mac = None;
    if s.kind.enters_by_uplink() && !io {
        let st = weir_proc::stats(&socket).map_err(DutError::Failed)?;
        let mac = st.port("uplink").map(|p| p.mac.clone()).unwrap_or_default();
        dst_mac = Some(mac.parse::<MacAddr>().map_err(|e| DutError::Failed(format!("uplink MAC {mac:?}: {e}")))?);
    }
    // One queue pair: weir's worker sends on its own tx queue, also the
    // management thread's ARP requests (for node3's VTEP).
    let queues = 1;
    let gen = GenSide {
        ports: paths.iter().enumerate().map(|(i, p)| setup.link.gen_devargs(i, p, false, queues)).collect(),
        tx_port: 0,
        rx_port: if s.kind.returns_by_uplink() && !io { 0 } else { 1 },
        dst_mac,
        // The VTEPs weir resolves on the uplink.
        arp_reply: match s.kind {
            _ if io => Vec::new(),
            Kind::Full | Kind::FullNew => vec![REMOTE_VTEP, NODE3_VTEP],
            k if k.enters_by_uplink() => vec![REMOTE_VTEP],
            _ => Vec::new(),
        },
        queues,
    };
    Ok(WeirDut { proc: p, socket, log, gen, _prefix: prefix })
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    proc::tail_lines(&weir_proc::without_eal_usage(&text), 20)
}

impl RunningDut for WeirDut {
    fn gen_side(&self) -> &GenSide {
        &self.gen
    }

    fn alive(&mut self) -> Result<(), String> {
        match self.proc.try_status() {
            Some(st) => Err(format!("weir-dataplane exited with {st}\n{}", log_tail(&self.log))),
            None => Ok(()),
        }
    }

    /// weir's own view: packets per port and every drop reason that counted.
    fn notes(&mut self) -> Vec<String> {
        let Ok(st) = weir_proc::stats(&self.socket) else { return vec!["weir stats unavailable".into()] };
        let mut notes = Vec::new();
        let ports: Vec<String> =
            st.ports.iter().map(|p| format!("{} rx {} tx {}", p.name, p.rx_packets, p.tx_packets)).collect();
        notes.push(format!("weir counters: {}", ports.join(", ")));
        let drops: Vec<String> = st.drops.iter().filter(|(_, n)| **n > 0).map(|(r, n)| format!("{r} {n}")).collect();
        if !drops.is_empty() {
            notes.push(format!("weir drops: {}", drops.join(", ")));
        }
        notes
    }

    fn stop(mut self: Box<Self>) -> Result<(), String> {
        let r = weir_proc::call(&self.socket, Request::Shutdown, weir_proc::CALL_TIMEOUT).map(|_| ());
        if r.is_ok() && self.proc.wait_timeout(weir_proc::EXIT_TIMEOUT).is_none() {
            self.proc.kill();
            return Err("weir-dataplane did not exit after shutdown; killed it".into());
        }
        self.proc.kill();
        r
    }
}

/// How long a stop may take, for callers that budget time.
pub const STOP_TIMEOUT: Duration = weir_proc::EXIT_TIMEOUT;

#[cfg(test)]
mod tests {
    //! The configs the harness gives weir are valid, and every scenario's
    //! frames take the path they should through weir's pipeline with the
    //! tables of that config (built as weir-dataplane builds them): out of
    //! the expected port with the expected rewrite or encapsulation, their
    //! stamp intact, every checksum valid; and the ACL scenarios' frames are
    //! dropped as policy denied once their allowing rule is gone.

    use super::*;
    use crate::traffic::{Stamp, OUTER_LEN};
    use std::net::Ipv4Addr;
    use weir_dataplane::flow::FlowTable;
    use weir_dataplane::pipeline::nat::Nat;
    use weir_dataplane::pipeline::{self, Action, DropReason, NoEvents, PacketBuf, TestBuf};
    use weir_dataplane::tables::acl::Direction;
    use weir_dataplane::wire::{ethernet, ipv4, udp, vxlan};

    /// The uplink's MAC (the driver's, in a run) and the generator's (what
    /// it answers the VTEPs' ARP with).
    const UPLINK: MacAddr = MacAddr([0x56, 0x48, 0x4f, 0x53, 0x54, 0x00]);
    const GEN: MacAddr = MacAddr([0x56, 0x48, 0x4f, 0x53, 0x54, 0x01]);

    fn setup(link: Link) -> Setup {
        Setup { link, ..Setup::for_tests() }
    }

    fn config(s: &Scenario, io: bool, link: Link) -> NodeConfig {
        let text = node_config(
            s,
            &setup(link),
            io,
            "weir-bench-1-x",
            Path::new("/tmp/x/w.sock"),
            &[PathBuf::from("/tmp/x/a.sock"), PathBuf::from("/tmp/x/b.sock")],
        )
        .unwrap();
        NodeConfig::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn configs_are_valid() {
        for link in [Link::Vhost, Link::Memif] {
            for kind in Kind::ALL {
                for flows in [None, Some(1_000_000)] {
                    let s = Scenario::new(kind, flows, 64, 10).unwrap();
                    let c = config(&s, false, link);
                    assert_eq!(c.ports.len(), 2);
                    assert_eq!(c.ports[0].uplink, kind.enters_by_uplink());
                    assert!(c.dpdk.busy_poll);
                    assert_eq!(c.dpdk.worker_cores, vec![1]);
                    if kind.needs_priming() {
                        assert!(c.dpdk.max_flows >= 2 * s.flows, "{}", s.label());
                    }
                    match s.rule_set() {
                        Some(rules) => {
                            let rules = rules.unwrap();
                            assert_eq!(c.acl, rules.acl_config(), "{}", s.label());
                            assert_eq!(rules.per_pod_len(), 10);
                            assert_eq!(AclTable::build(&c.acl, &node_addrs(&c)).unwrap().len(), rules.len());
                        }
                        None => assert!(c.acl.pods.is_empty(), "{}", s.label()),
                    }
                }
            }
            let io = config(&Scenario::new(Kind::Pod2Pod, None, 64, 0).unwrap(), true, link);
            assert_eq!(io.dpdk.forward_mode, weir_dataplane::config::ForwardMode::Io);
        }
        let full = config(&Scenario::new(Kind::Full, None, 64, 500).unwrap(), false, Link::Vhost);
        assert_eq!(full.remote_nodes.iter().map(|r| r.node_ip).collect::<Vec<_>>(), vec![REMOTE_VTEP, NODE3_VTEP]);
        assert_eq!(full.services[0].ports[0].node_port, Some(NODE_PORT));
        let backends: Vec<Ipv4Addr> = full.services[0].backends.iter().map(|b| b.ip).collect();
        assert_eq!(backends, full_backends().collect::<Vec<_>>());
        assert_eq!(backends.len(), FULL_BACKENDS as usize);
        assert!(backends.iter().all(|b| full_backend_set().contains(*b)));
        assert_eq!((full.nat.snat_port_min, full.nat.snat_port_max), (SNAT_PORT_MIN, SNAT_PORT_MAX));
        // 500 rules as each backend sees them: its ingress list (375) on
        // every backend, 125 on other pods.
        assert_eq!(AclTable::build(&full.acl, &node_addrs(&full)).unwrap().len(), 64 * 375 + 125);
        // The other scenarios keep weir's default SNAT range.
        let acl = config(&Scenario::new(Kind::Acl, None, 64, 10).unwrap(), false, Link::Vhost);
        assert_eq!((acl.nat.snat_port_min, acl.nat.snat_port_max), (61000, 65535));
    }

    fn ip_at(f: &[u8], at: usize) -> Ipv4Addr {
        Ipv4Addr::new(f[at], f[at + 1], f[at + 2], f[at + 3])
    }

    /// What every frame of `kind` must look like when weir sends it on:
    /// `sent` is the frame given to the pipeline, `out` what left it. For
    /// the full path, the backend and the SNAT port it got.
    fn check_output(s: &Scenario, sent: &[u8], out: &[u8]) -> Option<(Ipv4Addr, u16)> {
        let label = s.label();
        let ip = ethernet::HEADER_LEN;
        if s.kind.returns_by_uplink() {
            // Out of the uplink to node3: the generator's MAC (the VTEP as
            // ARP resolved it), from the node IP, VXLAN VNI 1.
            assert_eq!((&out[0..6], &out[6..12]), (&GEN.0[..], &UPLINK.0[..]), "{label}: outer MACs");
            assert_eq!((ip_at(out, ip + 12), ip_at(out, ip + 16)), (NODE_IP, NODE3_VTEP), "{label}: outer IPs");
            let u = udp::Packet::new_checked(&out[ip + ipv4::HEADER_LEN..]).unwrap();
            assert_eq!(u.dst_port(), vxlan::DEFAULT_PORT, "{label}");
            assert!(u.src_port() >= 49152, "{label}: source port from the inner flow's hash");
            let vx = vxlan::Packet::new_checked(u.payload()).unwrap();
            assert_eq!(vx.vni(), VNI, "{label}");
            let inner = &out[OUTER_LEN..];
            let was = &sent[OUTER_LEN..];
            assert_eq!((&inner[0..6], &inner[6..12]), (&NODE3_GW_MAC.0[..], &GW_MAC.0[..]), "{label}: inner MACs");
            // DNAT: the NodePort became one of node3's backends and its
            // port; SNAT: the client (node2's pod) became the node IP and a
            // port of the SNAT range; one hop here, so TTL - 1.
            assert_eq!(ip_at(inner, ip + 12), NODE_IP, "{label}: client translated to the node IP");
            let backend = ip_at(inner, ip + 16);
            assert!(full_backend_set().contains(backend), "{label}: backend {backend}");
            let l4 = ip + ipv4::HEADER_LEN;
            let snat_port = u16::from_be_bytes([inner[l4], inner[l4 + 1]]);
            assert!((SNAT_PORT_MIN..=SNAT_PORT_MAX).contains(&snat_port), "{label}: SNAT port {snat_port}");
            assert_eq!(u16::from_be_bytes([inner[l4 + 2], inner[l4 + 3]]), SVC_PORT, "{label}: target port");
            assert_eq!(inner[ip + 8], was[ip + 8] - 1, "{label}: TTL");
            assert_eq!(out.len(), sent.len(), "{label}: VXLAN in, VXLAN out");
            assert!(crate::traffic::tests::checksums_ok(out), "{label}: checksums after weir");
            return Some((backend, snat_port));
        } else {
            assert_eq!(&out[0..6], &POD_B_MAC.0, "{label}: to pod-b's MAC");
            assert_eq!(&out[6..12], &GW_MAC.0, "{label}: from the gateway");
            assert_eq!(ip_at(out, ip + 16), POD_B_IP, "{label}");
        }
        assert!(crate::traffic::tests::checksums_ok(out), "{label}: checksums after weir");
        None
    }

    /// Runs frames of the scenario (flows spread over its whole range, or
    /// new flows) through the pipeline; every one must leave by the
    /// expected port as [`check_output`] says, its stamp intact; on the
    /// full path every flow gets its own (backend, SNAT port) pair, the
    /// same for its later packets, and the flows spread over the backends.
    fn check(kind: Kind, flows: Option<u32>) {
        let s = Scenario::new(kind, flows, 128, 300).unwrap();
        let t = tables_for(&s, None, UPLINK, GEN).unwrap();
        let table = FlowTable::new(1 << 16);
        let nat = Nat::single(&table, 1);
        let dst = kind.enters_by_uplink().then_some(UPLINK);
        let tpl = s.template(dst);
        let mut frame = vec![0u8; tpl.len()];
        let out_port = if kind.returns_by_uplink() { 0 } else { 1 };
        let step = (s.flows / 97).max(1);
        let sent: Vec<u32> = (0..s.flows).step_by(step as usize).chain([s.flows - 1]).collect();
        let mut snat = std::collections::HashMap::new();
        // Twice: the first pass sets the flows up, the second finds them.
        for pass in 0..2 {
            for (i, flow) in sent.iter().enumerate() {
                let st = Stamp { trial: 1 + pass, seq: i as u32, tsc: 42 };
                tpl.write(&mut frame, *flow, &st);
                let mut b = TestBuf::new(&frame);
                let a = pipeline::process_full(&t, Some(&nat), 0, &mut b, &mut NoEvents);
                assert_eq!(a, Action::Forward(out_port), "{} flow {flow} pass {pass}", s.label());
                assert_eq!(Stamp::find(b.data(), 4789), Some(st), "{} flow {flow}", s.label());
                match (check_output(&s, &frame, b.data()), pass) {
                    (Some(got), 0) => assert_eq!(*snat.entry(*flow).or_insert(got), got, "{}", s.label()),
                    (Some(got), _) => assert_eq!(snat.get(flow), Some(&got), "{} flow {flow}: same pair", s.label()),
                    (None, _) => {}
                }
            }
        }
        if kind.returns_by_uplink() {
            let pairs: std::collections::HashSet<_> = snat.values().collect();
            assert_eq!(pairs.len(), snat.len(), "{}: a (backend, SNAT port) pair per flow", s.label());
            let backends: std::collections::HashSet<_> = snat.values().map(|(b, _)| b).collect();
            assert!(backends.len() > 16, "{}: {} backends used", s.label(), backends.len());
        }
        // The ACL scenarios: each flow's first packet was allowed by the
        // allowing rule at the end of each list on the path (on the full
        // path: the list of the backend it got), and only its first (the
        // second pass hit the flows).
        if let Some(rules) = s.rule_set() {
            let rules = rules.unwrap();
            let distinct = sent.iter().collect::<std::collections::HashSet<_>>().len() as u64;
            let (mut deciding, mut allowed) = (0, [0u64; 2]);
            for r in t.acl.rules() {
                if r.id.ends_with("/allow") {
                    deciding += 1;
                    allowed[usize::from(r.direction == Direction::Egress)] += r.hits;
                    if !kind.returns_by_uplink() {
                        assert_eq!(r.hits, distinct, "{}: rule {} of {}", s.label(), r.id, r.pod);
                    }
                } else {
                    assert_eq!(r.hits, 0, "{}: rule {} of {}", s.label(), r.id, r.pod);
                }
            }
            if kind.returns_by_uplink() {
                assert_eq!((deciding, allowed), (FULL_BACKENDS, [distinct, 0]), "{}", s.label());
            } else {
                assert_eq!((deciding, allowed), (2, [distinct, distinct]), "{}", s.label());
            }
            assert!(rules.on_path() >= 150, "{}: the deciding rules are deep", s.label());
        }
    }

    #[test]
    fn every_scenario_takes_its_path_through_weir() {
        for kind in Kind::ALL {
            check(kind, None);
        }
        check(Kind::ClusteripEst, Some(1_000_000));
        check(Kind::Nodeport, Some(200_000));
        check(Kind::Pod2Pod, Some(100_000));
        check(Kind::VxlanDecap, Some(100_000));
        check(Kind::Acl, Some(1_000_000));
        check(Kind::Full, Some(1_000_000));
    }

    /// Without the allowing rule of a list on their path, every frame of
    /// the ACL scenarios is dropped as denied by that list (its default),
    /// and nothing leaves.
    #[test]
    fn acl_scenarios_are_denied_without_their_allowing_rule() {
        for kind in Kind::ALL.into_iter().filter(|k| k.uses_acl()) {
            let s = Scenario::new(kind, Some(200_000), 128, 1000).unwrap();
            let rules = s.rule_set().unwrap().unwrap();
            let mut dirs = vec![(Direction::Ingress, DropReason::PolicyDeniedIngress)];
            if rules.target.src_pod.is_some() {
                dirs.push((Direction::Egress, DropReason::PolicyDeniedEgress));
            }
            for (d, reason) in dirs {
                let t = tables_for(&s, Some(rules.without_allow(d).acl_config()), UPLINK, GEN).unwrap();
                let table = FlowTable::new(1 << 16);
                let nat = Nat::single(&table, 1);
                let tpl = s.template(kind.enters_by_uplink().then_some(UPLINK));
                let mut frame = vec![0u8; tpl.len()];
                let mut sent = 0;
                // Each flow twice: a denied flow is classified again.
                for flow in (0..s.flows).step_by(4999).flat_map(|f| [f, f]) {
                    tpl.write(&mut frame, flow, &Stamp::default());
                    let mut b = TestBuf::new(&frame);
                    let a = pipeline::process_full(&t, Some(&nat), 0, &mut b, &mut NoEvents);
                    assert_eq!(a, Action::Drop(reason), "{} without the {d} allow, flow {flow}", s.label());
                    sent += 1;
                }
                // No rule of the list matched (its default denied); the
                // egress list passed them on to it, every time.
                for r in t.acl.rules() {
                    let want = if d == Direction::Ingress && r.id == "bench:egress/allow" { sent } else { 0 };
                    assert_eq!(r.hits, want, "{}: rule {} of {}", s.label(), r.id, r.pod);
                }
                let defaults: u64 =
                    rules.target.dst_pods.addrs().map(|pod| t.acl.default_hits(pod, Direction::Ingress)).sum();
                assert_eq!(defaults, if d == Direction::Ingress { sent } else { 0 });
                assert!(table.entries(1).is_empty(), "{}: a denied flow leaves no state", s.label());
            }
        }
    }
}
