//! OVS-DPDK (Debian's `openvswitch-switch-dpdk`) as the device under test,
//! set up to do each scenario's work with OpenFlow rules:
//!
//! - pod2pod: match the destination pod, rewrite both MACs, decrement the
//!   TTL, output (what weir's L3 forwarding does);
//! - acl: the same behind N drop rules the traffic is checked against;
//! - clusterip-*, nodeport: `ct(commit,nat(dst=backend))` in a conntrack
//!   zone, then the forwarding rule;
//! - vxlan-decap: a VXLAN tunnel port (userspace tunnelling: `br-phy` holds
//!   the node IP and terminates the tunnel, `br-int` forwards the inner
//!   frame).
//!
//! Everything is private to one run: its own database, sockets, logs and
//! unixctl paths under the run's directory, its own DPDK `--file-prefix`,
//! and a network namespace of its own for the bridges' kernel interfaces
//! (`br-phy` gets the node IP; nothing reaches the machine's network). The
//! main thread and handlers share the generator's core (`dpdk-lcore-mask`),
//! the PMD thread gets the DUT core (`pmd-cpu-mask`). Its vhost-user ports
//! are clients (`dpdkvhostuserclient`; the generator's virtio-user ports are
//! the servers); over memif its ports are `type=dpdk` memif vdevs, servers.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{DutError, GenSide, Link, RunningDut, Setup};
use crate::proc::{self, DpdkPrefix, Proc};
use crate::traffic::layout::*;
use crate::traffic::{Kind, Scenario};

pub const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";
/// The DPDK build of ovs-vswitchd, called directly (no alternatives switched).
pub const VSWITCHD_DPDK: &str = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk";
/// How long DPDK init in ovs-vswitchd may take.
const INIT_TIMEOUT: Duration = Duration::from_secs(60);
/// OpenFlow port numbers.
const P0: u32 = 1;
const P1: u32 = 2;
const VXLAN_PORT_NO: u32 = 10;
/// Queue pairs of a memif port: the PMD thread's tx queue and the main thread's.
const MEMIF_QUEUES: u16 = 2;

/// Why OVS-DPDK cannot run here, if it cannot: a tool or file missing.
pub fn unavailable(setup: &Setup) -> Option<String> {
    let vswitchd = setup.ovs_vswitchd.as_path();
    if !vswitchd.is_file() {
        return Some(format!(
            "{} not found (Debian package openvswitch-switch-dpdk; scripts/perf.sh installs it)",
            vswitchd.display()
        ));
    }
    if !Path::new(SCHEMA).is_file() {
        return Some(format!("{SCHEMA} not found (package openvswitch-common)"));
    }
    for tool in ["ovsdb-tool", "ovsdb-server", "ovs-vsctl", "ovs-ofctl", "ovs-appctl", "ip"] {
        let ok = Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
        if ok.is_err() {
            return Some(format!("{tool} not found"));
        }
    }
    None
}

/// The OpenFlow rules of a scenario, one per line (for `ovs-ofctl add-flows`).
pub fn flows(s: &Scenario) -> String {
    let fwd = format!("mod_dl_src:{GW_MAC},mod_dl_dst:{POD_B_MAC},dec_ttl,output:{P1}");
    let mut f = Vec::new();
    match s.kind {
        Kind::Pod2Pod => f.push(format!("table=0,priority=100,in_port={P0},ip,nw_dst={POD_B_IP},actions={fwd}")),
        Kind::Acl => {
            for k in 0..s.acl_rules {
                f.push(format!(
                    "table=0,priority=200,in_port={P0},udp,nw_src=172.16.{}.{},tp_dst={},actions=drop",
                    k / 256 % 256,
                    k % 256,
                    1 + k % 1000
                ));
            }
            f.push(format!("table=0,priority=100,in_port={P0},ip,nw_dst={POD_B_IP},actions={fwd}"));
        }
        // One rule per Service port, as weir has one per (address, port):
        // DNAT to the backend, the port kept (target port = port).
        Kind::ClusteripEst | Kind::ClusteripNew => {
            for port in s.dst_ports() {
                f.push(format!(
                    "table=0,priority=100,in_port={P0},udp,nw_dst={VIP},tp_dst={port},\
                     actions=ct(commit,zone=1,nat(dst={POD_B_IP}),table=1)"
                ));
            }
            f.push(format!("table=1,priority=100,ip,nw_dst={POD_B_IP},actions={fwd}"));
        }
        Kind::Nodeport => {
            f.push(format!(
                "table=0,priority=100,in_port={P0},udp,nw_dst={NODE_IP},tp_dst={NODE_PORT},\
                 actions=ct(commit,zone=1,nat(dst={POD_B_IP}:{SVC_PORT}),table=1)"
            ));
            f.push(format!("table=1,priority=100,ip,nw_dst={POD_B_IP},actions={fwd}"));
        }
        // On br-int: what the tunnel port decapsulated.
        Kind::VxlanDecap => {
            f.push(format!("table=0,priority=100,in_port={VXLAN_PORT_NO},ip,nw_dst={POD_B_IP},actions={fwd}"))
        }
    }
    f.push("table=0,priority=0,actions=drop".into());
    f.join("\n") + "\n"
}

/// A network namespace of ours, deleted when dropped.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).stderr(Stdio::null()).status();
    }
}

pub struct OvsDut {
    // Dropped in this order: vswitchd, then the database, the namespace,
    // the DPDK prefix.
    vswitchd: Proc,
    ovsdb: Proc,
    _netns: Netns,
    _prefix: DpdkPrefix,
    run: PathBuf,
    log: PathBuf,
    db_sock: PathBuf,
    bridge: &'static str,
    gen: GenSide,
}

impl OvsDut {
    fn env(&self, c: &mut Command) {
        env(c, &self.run, &self.log);
    }

    fn ctl(&self) -> PathBuf {
        self.run.join("ovs-vswitchd.ctl")
    }
}

fn env(c: &mut Command, run: &Path, log: &Path) {
    c.env("OVS_RUNDIR", run).env("OVS_LOGDIR", log).env("OVS_DBDIR", run);
}

/// Runs a command to completion; its stdout, or an error with its stderr.
fn run_cmd(c: &mut Command) -> Result<String, String> {
    let out = c.stdin(Stdio::null()).output().map_err(|e| format!("cannot run {:?}: {e}", c.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} {:?} failed ({}): {}",
            c.get_program(),
            c.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn log_tail(path: &Path) -> String {
    proc::tail_lines(&std::fs::read_to_string(path).unwrap_or_default(), 12)
}

pub fn start(s: &Scenario, setup: &Setup, dir: &Path, tag: &str) -> Result<OvsDut, DutError> {
    if let Some(why) = unavailable(setup) {
        return Err(DutError::Unavailable(why));
    }
    let base = dir.join(format!("ovs-{tag}"));
    let (run, log) = (base.join("run"), base.join("log"));
    for d in [&run, &log] {
        std::fs::create_dir_all(d).map_err(|e| DutError::Failed(format!("cannot create {}: {e}", d.display())))?;
    }
    let failed = |e: String| DutError::Failed(e);
    let db = run.join("conf.db");
    let db_sock = run.join("db.sock");
    run_cmd(Command::new("ovsdb-tool").arg("create").arg(&db).arg(SCHEMA)).map_err(failed)?;
    let mut c = Command::new("ovsdb-server");
    c.arg(&db)
        .arg(format!("--remote=punix:{}", db_sock.display()))
        .arg(format!("--unixctl={}", run.join("ovsdb-server.ctl").display()))
        .arg(format!("--log-file={}", log.join("ovsdb-server.log").display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    env(&mut c, &run, &log);
    let ovsdb = Proc::spawn("ovsdb-server", &mut c).map_err(failed)?;
    let t0 = Instant::now();
    while !db_sock.exists() {
        if t0.elapsed() > Duration::from_secs(10) {
            return Err(failed(format!("ovsdb-server made no {} in 10 s", db_sock.display())));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let vsctl = |args: &[&str]| -> Result<String, String> {
        let mut c = Command::new("ovs-vsctl");
        c.arg(format!("--db=unix:{}", db_sock.display())).arg("--timeout=30").args(args);
        env(&mut c, &run, &log);
        run_cmd(&mut c)
    };
    let prefix = DpdkPrefix::new(tag);
    vsctl(&["--no-wait", "init"]).map_err(failed)?;
    vsctl(&[
        "--no-wait",
        "set",
        "Open_vSwitch",
        ".",
        "other_config:dpdk-init=true",
        &format!("other_config:dpdk-lcore-mask={:#x}", 1u64 << setup.main_core),
        &format!("other_config:pmd-cpu-mask={:#x}", 1u64 << setup.dut_core),
        &format!("other_config:dpdk-socket-mem={}", setup.dut_memory_mb),
        &format!("other_config:dpdk-extra=--file-prefix={} --no-pci --huge-unlink", prefix.name()),
        "other_config:n-handler-threads=1",
        "other_config:n-revalidator-threads=1",
    ])
    .map_err(failed)?;
    let ns = Netns(format!("weir-bench-{}-{tag}", std::process::id()));
    run_cmd(Command::new("ip").args(["netns", "add", &ns.0])).map_err(failed)?;
    let vlog = log.join("ovs-vswitchd.log");
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns.0])
        .arg(&setup.ovs_vswitchd)
        .arg(format!("unix:{}", db_sock.display()))
        .arg(format!("--unixctl={}", run.join("ovs-vswitchd.ctl").display()))
        .arg(format!("--log-file={}", vlog.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    env(&mut c, &run, &log);
    let mut vswitchd = Proc::spawn("ovs-vswitchd", &mut c).map_err(failed)?;
    // DPDK init: the database says when it is done.
    let t0 = Instant::now();
    loop {
        if let Some(st) = vswitchd.try_status() {
            return Err(DutError::Unavailable(format!(
                "ovs-vswitchd-dpdk exited with {st} during start-up:\n{}",
                log_tail(&vlog)
            )));
        }
        if vsctl(&["get", "Open_vSwitch", ".", "dpdk_initialized"]).is_ok_and(|v| v.trim() == "true") {
            break;
        }
        if t0.elapsed() > INIT_TIMEOUT {
            return Err(DutError::Unavailable(format!(
                "ovs-vswitchd-dpdk did not initialise DPDK within {INIT_TIMEOUT:?}:\n{}",
                log_tail(&vlog)
            )));
        }
        proc::sleep(Duration::from_millis(100)).map_err(failed)?;
    }
    let paths = [dir.join(format!("{tag}-a.sock")), dir.join(format!("{tag}-b.sock"))];
    let bridge = if s.kind == Kind::VxlanDecap { "br-int" } else { "br0" };
    // vhost-user: OVS is the client; memif: a DPDK vdev port, OVS the server.
    let port = |name: &str, no: u32, path: &Path| -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--".into(),
            "add-port".into(),
            if no == P0 && s.kind == Kind::VxlanDecap { "br-phy".into() } else { bridge.into() },
            name.into(),
            "--".into(),
            "set".into(),
            "Interface".into(),
            name.into(),
        ];
        match setup.link {
            Link::Vhost => a.extend([
                "type=dpdkvhostuserclient".to_string(),
                format!("options:vhost-server-path={}", path.display()),
            ]),
            // OVS gives a DPDK port one tx queue per PMD thread plus one:
            // the memif peer needs as many queue pairs (n_rxq makes them
            // pairs), and the generator polls them all.
            Link::Memif => a.extend([
                "type=dpdk".to_string(),
                format!(
                    "options:dpdk-devargs=net_memif{},role=server,socket={},socket-abstract=no",
                    no - 1,
                    path.display()
                ),
                format!("options:n_rxq={MEMIF_QUEUES}"),
            ]),
        }
        a.push(format!("ofport_request={no}"));
        a
    };
    let mut args: Vec<String> = vec![
        "add-br".into(),
        bridge.into(),
        "--".into(),
        "set".into(),
        "bridge".into(),
        bridge.into(),
        "datapath_type=netdev".into(),
        "protocols=OpenFlow10,OpenFlow13".into(),
    ];
    if s.kind == Kind::VxlanDecap {
        args.extend(
            [
                "--",
                "add-br",
                "br-phy",
                "--",
                "set",
                "bridge",
                "br-phy",
                "datapath_type=netdev",
                &format!("other_config:hwaddr={UPLINK_MAC}"),
                "--",
                "add-port",
                "br-int",
                "vxlan0",
                "--",
                "set",
                "Interface",
                "vxlan0",
                "type=vxlan",
                &format!("options:remote_ip={REMOTE_VTEP}"),
                &format!("options:key={VNI}"),
                &format!("ofport_request={VXLAN_PORT_NO}"),
            ]
            .map(String::from),
        );
    }
    args.extend(port("p0", P0, &paths[0]));
    args.extend(port("p1", P1, &paths[1]));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let dut = OvsDut {
        vswitchd,
        ovsdb,
        _netns: ns,
        _prefix: prefix,
        run: run.clone(),
        log: log.clone(),
        db_sock: db_sock.clone(),
        bridge,
        gen: GenSide {
            // The generator serves the vhost sockets (OVS connects); with
            // memif OVS serves.
            ports: paths
                .iter()
                .enumerate()
                .map(|(i, p)| setup.link.gen_devargs(i, p, setup.link == Link::Vhost))
                .collect(),
            tx_port: 0,
            rx_port: 1,
            dst_mac: None,
            arp_reply: Vec::new(),
            queues: if setup.link == Link::Memif { MEMIF_QUEUES } else { 1 },
        },
    };
    vsctl(&refs).map_err(|e| DutError::Failed(format!("{e}\n{}", log_tail(&vlog))))?;
    if s.kind == Kind::VxlanDecap {
        // The tunnel ends on br-phy's kernel interface (in our namespace):
        // it carries the node IP, and OVS learns the route from it.
        let ns = dut._netns.0.clone();
        for a in [
            vec!["netns", "exec", &ns, "ip", "addr", "add", "192.168.50.1/24", "dev", "br-phy"],
            vec!["netns", "exec", &ns, "ip", "link", "set", "br-phy", "up"],
        ] {
            run_cmd(Command::new("ip").args(&a)).map_err(failed)?;
        }
        dut.appctl(&["tnl/arp/set", "br-phy", &REMOTE_VTEP.to_string(), &PEER_MAC.to_string()]).map_err(failed)?;
    }
    if matches!(s.kind, Kind::ClusteripEst | Kind::ClusteripNew | Kind::Nodeport) {
        let max = if s.kind.new_flows() { 8 << 20 } else { (2 * s.flows).max(3_000_000) };
        dut.appctl(&["dpctl/ct-set-maxconns", &max.to_string()]).map_err(failed)?;
    }
    let file = base.join("flows.txt");
    std::fs::write(&file, flows(s)).map_err(|e| failed(format!("cannot write {}: {e}", file.display())))?;
    dut.ofctl(&["del-flows", bridge]).map_err(failed)?;
    dut.ofctl(&["add-flows", bridge, &file.display().to_string()]).map_err(failed)?;
    Ok(dut)
}

impl OvsDut {
    fn appctl(&self, args: &[&str]) -> Result<String, String> {
        let mut c = Command::new("ovs-appctl");
        c.arg("--timeout=30").arg("-t").arg(self.ctl()).args(args);
        self.env(&mut c);
        run_cmd(&mut c)
    }

    fn ofctl(&self, args: &[&str]) -> Result<String, String> {
        let mut c = Command::new("ovs-ofctl");
        c.args(["--timeout=30", "-O", "OpenFlow13"]).args(args);
        self.env(&mut c);
        run_cmd(&mut c)
    }
}

impl RunningDut for OvsDut {
    fn gen_side(&self) -> &GenSide {
        &self.gen
    }

    fn alive(&mut self) -> Result<(), String> {
        match self.vswitchd.try_status() {
            Some(st) => Err(format!("ovs-vswitchd exited with {st}\n{}", log_tail(&self.log.join("ovs-vswitchd.log")))),
            None => Ok(()),
        }
    }

    /// Packets per rule, as OVS counted them.
    fn notes(&mut self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Ok(out) = self.ofctl(&["dump-flows", self.bridge]) {
            let hits: Vec<String> = out
                .lines()
                .filter(|l| l.contains("n_packets=") && !l.contains("n_packets=0,"))
                .map(|l| {
                    let n = l.split("n_packets=").nth(1).and_then(|r| r.split(',').next()).unwrap_or("?");
                    let rule = l.split(" priority=").nth(1).unwrap_or(l).trim();
                    format!("{n} x [{}]", rule.chars().take(70).collect::<String>())
                })
                .collect();
            notes.push(format!("OVS rule hits: {}", hits.join("; ")));
        }
        if let Ok(out) = self.appctl(&["dpctl/ct-get-nconns"]) {
            notes.push(format!("OVS conntrack entries: {}", out.trim()));
        }
        let _ = &self.db_sock;
        notes
    }

    fn stop(mut self: Box<Self>) -> Result<(), String> {
        let r = self.appctl(&["exit", "--cleanup"]).map(|_| ());
        if self.vswitchd.wait_timeout(Duration::from_secs(10)).is_none() {
            self.vswitchd.kill();
        }
        self.ovsdb.kill();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_per_scenario() {
        let s = |k, f, r| Scenario::new(k, f, 64, r).unwrap();
        let p = flows(&s(Kind::Pod2Pod, None, 0));
        assert!(p.contains("in_port=1,ip,nw_dst=10.1.0.3,actions=mod_dl_src:02:fe:00:00:00:01,mod_dl_dst:02:00:00:00:00:03,dec_ttl,output:2"));
        assert!(p.ends_with("priority=0,actions=drop\n"));
        let a = flows(&s(Kind::Acl, None, 300));
        assert_eq!(a.matches("actions=drop").count(), 301);
        assert!(a.contains("nw_src=172.16.1.43,tp_dst=300,actions=drop"));
        let c = flows(&s(Kind::ClusteripEst, Some(1_000_000), 0));
        assert!(c.contains("nw_dst=10.96.0.10,tp_dst=8080,actions=ct(commit,zone=1,nat(dst=10.1.0.3),table=1)"));
        assert!(c.contains("tp_dst=8095,actions=ct("));
        assert_eq!(c.matches("actions=ct(").count(), 16);
        assert!(c.contains("table=1,priority=100,ip,nw_dst=10.1.0.3,"));
        let n = flows(&s(Kind::Nodeport, None, 0));
        assert!(n.contains("nw_dst=192.168.50.1,tp_dst=30080"));
        let v = flows(&s(Kind::VxlanDecap, None, 0));
        assert!(v.contains("in_port=10,ip,nw_dst=10.1.0.3"));
    }
}
