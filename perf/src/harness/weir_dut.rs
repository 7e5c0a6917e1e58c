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
use std::time::Duration;

use weir_dataplane::api::Request;
use weir_dataplane::config::NodeConfig;
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
        // reports it when its tuple space wraps).
        Kind::ClusteripNew => 4 << 20,
        Kind::ClusteripEst | Kind::Nodeport => s.flows.saturating_mul(2),
        _ => 0,
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
) -> String {
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
        return c;
    }
    if s.kind == Kind::VxlanDecap {
        c.push_str(&format!(
            "\n[[remote_nodes]]\nname = \"node2\"\nnode_ip = \"{REMOTE_VTEP}\"\npod_cidr = {REMOTE_POD_CIDR:?}\n\
             vtep_mac = \"{REMOTE_GW_MAC}\"\n"
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
    c
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
    let text = node_config(s, setup, io, prefix.name(), &socket, &paths);
    NodeConfig::from_toml(&text)
        .map_err(|e| DutError::Failed(format!("internal error: the harness's weir config is refused: {e}\n{text}")))?;
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
    let gen = GenSide {
        ports: paths.iter().enumerate().map(|(i, p)| setup.link.gen_devargs(i, p, false)).collect(),
        tx_port: 0,
        rx_port: 1,
        dst_mac,
        arp_reply: if s.kind.enters_by_uplink() { vec![REMOTE_VTEP] } else { Vec::new() },
        queues: 1,
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
    //! tables of that config (built as weir-dataplane builds them).

    use super::*;
    use crate::traffic::Stamp;
    use std::net::Ipv4Addr;
    use weir_dataplane::flow::FlowTable;
    use weir_dataplane::pipeline::nat::Nat;
    use weir_dataplane::pipeline::{self, Action, NoEvents, PacketBuf, TestBuf};
    use weir_dataplane::tables::service::ServiceTable;
    use weir_dataplane::tables::{Hop, Overlay, PortEntry, Tables, DEFAULT_NETWORK};

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
        );
        NodeConfig::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// Tables as weir-dataplane publishes them for this config, ports 0
    /// and 1 in config order.
    fn tables(cfg: &NodeConfig, uplink_mac: MacAddr) -> Tables {
        let mut t = Tables::new(cfg, 1);
        t.services = ServiceTable::build(cfg).expect("services");
        for (id, p) in cfg.ports.iter().enumerate() {
            let e = match &p.pod {
                Some(pod) => PortEntry::pod(&p.name, pod.ip, pod.mac, DEFAULT_NETWORK),
                None => PortEntry { uplink: p.uplink, ..PortEntry::plain(&p.name) },
            };
            t.add_port(id as u16, e, 1);
        }
        if let Some(up) = cfg.ports.iter().position(|p| p.uplink) {
            t.overlay = Some(Overlay {
                node_ip: cfg.node.node_ip.unwrap(),
                uplink: up as u16,
                uplink_mac,
                mtu: 1500,
                vxlan_port: cfg.overlay.vxlan_port,
                underlay: cfg.node.underlay_cidr.unwrap(),
                gateway: None,
                host: None,
                announced: Vec::new(),
            });
            for r in &cfg.remote_nodes {
                let hop = Hop::Remote { vtep: r.node_ip, vtep_mac: r.vtep_mac, net: DEFAULT_NETWORK };
                t.add_remote_route(DEFAULT_NETWORK, r.pod_cidr, hop);
                t.node_hops.insert(r.node_ip, hop);
            }
        }
        t
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
                }
            }
            let io = config(&Scenario::new(Kind::Pod2Pod, None, 64, 0).unwrap(), true, link);
            assert_eq!(io.dpdk.forward_mode, weir_dataplane::config::ForwardMode::Io);
        }
    }

    /// Runs `n` frames of the scenario (flows spread over its whole range)
    /// through the pipeline; every one must leave by port 1 with its stamp.
    fn check(kind: Kind, flows: Option<u32>) {
        let s = Scenario::new(kind, flows, 128, 10).unwrap();
        let cfg = config(&s, false, Link::Vhost);
        let uplink_mac = MacAddr([0x56, 0x48, 0x4f, 0x53, 0x54, 0x00]);
        let t = tables(&cfg, uplink_mac);
        let table = FlowTable::new(1 << 16);
        let nat = Nat::single(&table, 1);
        let dst = kind.enters_by_uplink().then_some(uplink_mac);
        let tpl = s.template(dst);
        let mut frame = vec![0u8; tpl.len()];
        let step = (s.flows / 97).max(1);
        for (i, flow) in (0..s.flows).step_by(step as usize).chain([s.flows - 1]).enumerate() {
            let st = Stamp { trial: 1, seq: i as u32, tsc: 42 };
            tpl.write(&mut frame, flow, &st);
            let mut b = TestBuf::new(&frame);
            let a = pipeline::process_full(&t, Some(&nat), 0, &mut b, &mut NoEvents);
            assert_eq!(a, Action::Forward(1), "{} flow {flow}", s.label());
            let out = b.data();
            assert_eq!(&out[0..6], &POD_B_MAC.0, "{} flow {flow}: to pod-b's MAC", s.label());
            assert_eq!(Ipv4Addr::new(out[30], out[31], out[32], out[33]), POD_B_IP, "{}", s.label());
            assert_eq!(Stamp::find(out, 4789), Some(st), "{} flow {flow}", s.label());
            assert!(crate::traffic::tests::checksums_ok(out), "{} flow {flow}: checksums after weir", s.label());
        }
        // The same flows again: established now (the NAT scenarios hit their flows).
        tpl.write(&mut frame, 0, &Stamp::default());
        let mut b = TestBuf::new(&frame);
        assert_eq!(pipeline::process_full(&t, Some(&nat), 0, &mut b, &mut NoEvents), Action::Forward(1));
    }

    #[test]
    fn every_scenario_reaches_pod_b_through_weir() {
        for kind in Kind::ALL {
            check(kind, None);
        }
        check(Kind::ClusteripEst, Some(1_000_000));
        check(Kind::Nodeport, Some(200_000));
        check(Kind::Pod2Pod, Some(100_000));
        check(Kind::VxlanDecap, Some(100_000));
    }
}
