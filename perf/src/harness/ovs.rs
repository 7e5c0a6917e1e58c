//! OVS-DPDK (Debian's `openvswitch-switch-dpdk`) as the device under test,
//! set up to do each scenario's work with OpenFlow rules:
//!
//! - pod2pod: match the destination pod, rewrite both MACs, decrement the
//!   TTL, output (what weir's L3 forwarding does);
//! - acl, acl-new: conntrack (zone 1); a new connection goes through the
//!   scenario's ACL rules ([`crate::policy`]: pod-a's egress list in table 2,
//!   pod-b's ingress list in table 3, priorities in weir's order) and, if
//!   allowed, is committed and forwarded; an established one is forwarded
//!   (its verdict cached in conntrack, as weir caches it in its flow);
//! - clusterip-*, nodeport: `ct(commit,nat(dst=backend))` in a conntrack
//!   zone, then the forwarding rule;
//! - vxlan-decap: a VXLAN tunnel port (userspace tunnelling: `br-phy` holds
//!   the node IP and terminates the tunnel, `br-int` forwards the inner
//!   frame);
//! - full, full-new: the tunnel as for vxlan-decap, a second VXLAN port to
//!   node3; what vxlan0 decapsulated for the NodePort goes through
//!   conntrack twice, as a DNAT and then an SNAT can only be done in two
//!   zones: zone 1 DNATs to one of node3's backends, zone 2 translates the
//!   client to the node IP and a port of the SNAT range. A new connection
//!   is committed in zone 1 with the DNAT, classified by the ACL tables
//!   (the backends' ingress list, one masked rule per entry for them all),
//!   and, allowed, committed in zone 2 with the SNAT; an established one
//!   gets both translations from its two entries (and is dropped if it has
//!   no zone-2 entry: a connection the ACL denied). Then it leaves by the
//!   VXLAN port to node3 (MACs, TTL).
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
use crate::policy::RuleSet;
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
/// The VXLAN port to node3 (full).
const VXLAN3_PORT_NO: u32 = 11;
/// Conntrack zones of the full path: the DNAT, then the SNAT.
const DNAT_ZONE: u32 = 1;
const SNAT_ZONE: u32 = 2;
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
pub fn flows(s: &Scenario) -> Result<String, String> {
    let rules = s.rule_set().transpose()?;
    Ok(flows_with(s, rules.as_ref()))
}

/// [`flows`] with the ACL tables made from `rules` (a scenario's own, or
/// a variant of them).
pub fn flows_with(s: &Scenario, rules: Option<&RuleSet>) -> String {
    let fwd = format!("mod_dl_src:{GW_MAC},mod_dl_dst:{POD_B_MAC},dec_ttl,output:{P1}");
    let mut f = Vec::new();
    match s.kind {
        Kind::Pod2Pod => f.push(format!("table=0,priority=100,in_port={P0},ip,nw_dst={POD_B_IP},actions={fwd}")),
        Kind::Acl | Kind::AclNew => {
            f.push(format!("table=0,priority=100,in_port={P0},ip,nw_dst={POD_B_IP},actions=ct(zone=1,table=1)"));
            f.push(format!("table=1,priority=100,ct_state=+trk+est,ip,actions={fwd}"));
            f.push("table=1,priority=90,ct_state=+trk+new,ip,actions=resubmit(,2)".into());
            f.push("table=1,priority=0,actions=drop".into());
            if let Some(r) = rules {
                f.extend(r.openflow(2, 3, &format!("ct(commit,zone=1),{fwd}")));
            }
        }
        // On br-int: what vxlan0 decapsulated, for the NodePort. Zone 1:
        // DNAT to a backend, picked by the low bits of the client's port
        // (one rule per backend: they are not a contiguous range, which
        // `nat(dst=A-B)` would need; weir picks by Maglev over the flow
        // hash, both spread evenly); ACL; zone 2: SNAT to the node IP (a
        // free port of the range, as weir claims one).
        Kind::Full | Kind::FullNew => {
            f.push(format!(
                "table=0,priority=100,in_port={VXLAN_PORT_NO},udp,nw_dst={NODE_IP},tp_dst={NODE_PORT},\
                 actions=ct(zone={DNAT_ZONE},nat,table=1)"
            ));
            f.push(format!("table=1,priority=100,ct_state=+trk+est,ip,actions=ct(zone={SNAT_ZONE},nat,table=5)"));
            let pick = FULL_BACKENDS - 1;
            for (i, b) in full_backends().enumerate() {
                f.push(format!(
                    "table=1,priority=90,ct_state=+trk+new,udp,tp_src={i:#06x}/{pick:#06x},\
                     actions=ct(commit,zone={DNAT_ZONE},nat(dst={b}:{SVC_PORT}),table=2)"
                ));
            }
            f.push("table=1,priority=0,actions=drop".into());
            if let Some(r) = rules {
                f.extend(r.openflow(
                    2,
                    3,
                    &format!("ct(commit,zone={SNAT_ZONE},nat(src={NODE_IP}:{SNAT_PORT_MIN}-{SNAT_PORT_MAX}),table=4)"),
                ));
            }
            f.push(format!(
                "table=4,priority=100,ip,nw_dst={NODE3_POD_CIDR},\
                 actions=mod_dl_src:{GW_MAC},mod_dl_dst:{NODE3_GW_MAC},dec_ttl,output:{VXLAN3_PORT_NO}"
            ));
            f.push("table=4,priority=0,actions=drop".into());
            // Established in zone 1: on only with its zone-2 entry (made
            // when the ACL allowed the connection).
            f.push("table=5,priority=100,ct_state=+trk+est,ip,actions=resubmit(,4)".into());
            f.push("table=5,priority=0,actions=drop".into());
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
    let bridge = if s.kind.vxlan() { "br-int" } else { "br0" };
    // vhost-user: OVS is the client; memif: a DPDK vdev port, OVS the server.
    let port = |name: &str, no: u32, path: &Path| -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--".into(),
            "add-port".into(),
            if no == P0 && s.kind.vxlan() { "br-phy".into() } else { bridge.into() },
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
    if s.kind.vxlan() {
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
    if s.kind.returns_by_uplink() {
        args.extend(
            [
                "--",
                "add-port",
                "br-int",
                "vxlan1",
                "--",
                "set",
                "Interface",
                "vxlan1",
                "type=vxlan",
                &format!("options:remote_ip={NODE3_VTEP}"),
                &format!("options:key={VNI}"),
                &format!("ofport_request={VXLAN3_PORT_NO}"),
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
                .map(|(i, p)| setup.link.gen_devargs(i, p, setup.link == Link::Vhost, 1))
                .collect(),
            tx_port: 0,
            rx_port: if s.kind.returns_by_uplink() { 0 } else { 1 },
            dst_mac: None,
            arp_reply: Vec::new(),
            queues: if setup.link == Link::Memif { MEMIF_QUEUES } else { 1 },
        },
    };
    vsctl(&refs).map_err(|e| DutError::Failed(format!("{e}\n{}", log_tail(&vlog))))?;
    if s.kind.vxlan() {
        // The tunnel ends on br-phy's kernel interface (in our namespace):
        // it carries the node IP, and OVS learns the route from it.
        let ns = dut._netns.0.clone();
        for a in [
            vec!["netns", "exec", &ns, "ip", "addr", "add", "192.168.50.1/24", "dev", "br-phy"],
            vec!["netns", "exec", &ns, "ip", "link", "set", "br-phy", "up"],
        ] {
            run_cmd(Command::new("ip").args(&a)).map_err(failed)?;
        }
        for vtep in [REMOTE_VTEP, NODE3_VTEP] {
            dut.appctl(&["tnl/arp/set", "br-phy", &vtep.to_string(), &PEER_MAC.to_string()]).map_err(failed)?;
        }
    }
    if !matches!(s.kind, Kind::Pod2Pod | Kind::VxlanDecap) {
        // The full path holds two entries a connection (zones 1 and 2).
        let zones = if s.kind.returns_by_uplink() { 2 } else { 1 };
        let max = zones * if s.kind.new_flows() { 8 << 20 } else { (2 * s.flows).max(3_000_000) };
        dut.appctl(&["dpctl/ct-set-maxconns", &max.to_string()]).map_err(failed)?;
    }
    let file = base.join("flows.txt");
    let text = flows(s).map_err(|e| failed(format!("internal error: the scenario's flows: {e}")))?;
    std::fs::write(&file, text).map_err(|e| failed(format!("cannot write {}: {e}", file.display())))?;
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
    use crate::traffic::OUTER_LEN;
    use std::collections::HashMap;
    use std::net::Ipv4Addr;
    use weir_dataplane::tables::acl::{AclTable, Direction, Verdict, PROTO_TCP, PROTO_UDP};
    use weir_dataplane::tables::cidr::Ipv4Cidr;

    #[test]
    fn flows_per_scenario() {
        let s = |k, f, r| Scenario::new(k, f, 64, r).unwrap();
        let p = flows(&s(Kind::Pod2Pod, None, 0)).unwrap();
        assert!(p.contains("in_port=1,ip,nw_dst=10.1.0.3,actions=mod_dl_src:02:fe:00:00:00:01,mod_dl_dst:02:00:00:00:00:03,dec_ttl,output:2"));
        assert!(p.ends_with("priority=0,actions=drop\n"));
        let a = flows(&s(Kind::Acl, None, 300)).unwrap();
        // One OpenFlow rule per ACL rule (single port ranges), one default
        // per list, the two tables' fall-throughs.
        let lists = s(Kind::Acl, None, 300).rule_set().unwrap().unwrap().lists.len();
        assert_eq!(
            a.lines().filter(|l| l.starts_with("table=2,") || l.starts_with("table=3,")).count(),
            300 + lists + 2
        );
        assert!(a.contains("table=3,priority=40000,udp,nw_dst=10.1.0.3,nw_src=172.16.0.0/32,tp_dst=8080,actions=ct(commit,zone=1),mod_dl_src"));
        assert!(a.contains("table=2,priority=10,ip,nw_src=10.1.0.2,actions=drop"));
        let c = flows(&s(Kind::ClusteripEst, Some(1_000_000), 0)).unwrap();
        assert!(c.contains("nw_dst=10.96.0.10,tp_dst=8080,actions=ct(commit,zone=1,nat(dst=10.1.0.3),table=1)"));
        assert!(c.contains("tp_dst=8095,actions=ct("));
        assert_eq!(c.matches("actions=ct(").count(), 16);
        assert!(c.contains("table=1,priority=100,ip,nw_dst=10.1.0.3,"));
        let n = flows(&s(Kind::Nodeport, None, 0)).unwrap();
        assert!(n.contains("nw_dst=192.168.50.1,tp_dst=30080"));
        let v = flows(&s(Kind::VxlanDecap, None, 0)).unwrap();
        assert!(v.contains("in_port=10,ip,nw_dst=10.1.0.3"));
        let f = flows(&s(Kind::Full, None, 1000)).unwrap();
        assert!(f.contains("in_port=10,udp,nw_dst=192.168.50.1,tp_dst=30080,actions=ct(zone=1,nat,table=1)"));
        assert!(f.contains(
            "ct_state=+trk+new,udp,tp_src=0x0000/0x003f,actions=ct(commit,zone=1,nat(dst=10.3.0.5:8080),table=2)"
        ));
        assert!(f.contains("tp_src=0x003f/0x003f,actions=ct(commit,zone=1,nat(dst=10.3.63.5:8080),table=2)"));
        assert_eq!(f.matches("actions=ct(commit,zone=1,nat(dst=").count(), 64);
        assert!(f.contains("ct_state=+trk+est,ip,actions=ct(zone=2,nat,table=5)"));
        assert!(f.contains("actions=ct(commit,zone=2,nat(src=192.168.50.1:1024-65535),table=4)"));
        assert!(f.contains("table=4,priority=100,ip,nw_dst=10.3.0.0/18,actions="));
        assert!(f.contains("output:11"));
        // The backends' list once for them all: 750 rules and its default,
        // the rest on the other pods' lists.
        let all = |l: &&str| l.starts_with("table=3,") && l.contains("nw_dst=10.3.0.5/255.255.192.255,");
        assert_eq!(f.lines().filter(all).count(), 751);
    }

    /// ovs-ofctl itself accepts every scenario's rules (offline: `parse-flows`
    /// checks syntax and prerequisites as `add-flows` does).
    #[test]
    fn ovs_ofctl_accepts_the_rules() {
        if Command::new("ovs-ofctl").arg("--version").output().is_err() {
            eprintln!("ovs-ofctl not installed: the OpenFlow model tests below still check the rules");
            return;
        }
        let dir = crate::proc::TempDir::new("weir-ovs-flows").unwrap();
        for kind in Kind::ALL {
            let s = Scenario::new(kind, Some(1_000_000), 64, 300).unwrap();
            let path = dir.path().join(format!("{kind}.txt"));
            std::fs::write(&path, flows(&s).unwrap()).unwrap();
            let out = Command::new("ovs-ofctl").args(["-O", "OpenFlow13", "parse-flows"]).arg(&path).output().unwrap();
            assert!(out.status.success(), "{}: {}", s.label(), String::from_utf8_lossy(&out.stderr));
        }
    }

    /// A packet as OVS's flow tables see it (after any tunnel decap).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Pkt {
        in_port: u32,
        proto: u8,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        sport: u16,
        dport: u16,
    }

    /// What the tables did with it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Fate {
        Out { port: u32, pkt: Pkt, dl_dst: String, ttl_dec: bool, committed: bool },
        Drop,
    }

    struct Flow {
        table: u32,
        priority: u32,
        matches: Vec<(String, String)>,
        actions: Vec<String>,
    }

    /// Splits at the commas outside parentheses.
    fn split_top(s: &str) -> Vec<String> {
        let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0);
        for c in s.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    out.push(std::mem::take(&mut cur));
                    continue;
                }
                _ => {}
            }
            cur.push(c);
        }
        out.push(cur);
        out
    }

    fn parse(text: &str) -> Vec<Flow> {
        text.lines()
            .map(|l| {
                let (m, a) = l.split_once(",actions=").unwrap_or_else(|| panic!("no actions: {l}"));
                let mut f = Flow { table: 0, priority: 32768, matches: Vec::new(), actions: split_top(a) };
                for kv in m.split(',') {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    match k {
                        "table" => f.table = v.parse().unwrap(),
                        "priority" => f.priority = v.parse().unwrap(),
                        _ => f.matches.push((k.to_string(), v.to_string())),
                    }
                }
                // ovs-ofctl refuses what lacks its prerequisites
                // (OFPBAC_MATCH_INCONSISTENT): IP for ct, NAT, dec_ttl and
                // addresses; a protocol with ports for tp_dst.
                let has = |k: &str| f.matches.iter().any(|(m, _)| m == k);
                let l4 = has("udp") || has("tcp") || has("sctp");
                let ip = has("ip") || l4;
                let needs_ip = f.actions.iter().any(|a| a == "dec_ttl" || a.starts_with("ct("))
                    || has("nw_src")
                    || has("nw_dst")
                    || has("ct_state");
                assert!(ip || !needs_ip, "no IP prerequisite: {l}");
                assert!(l4 || !(has("tp_dst") || has("tp_src")), "no L4 prerequisite: {l}");
                f
            })
            .collect()
    }

    fn num(v: &str) -> u32 {
        match v.strip_prefix("0x") {
            Some(h) => u32::from_str_radix(h, 16).unwrap(),
            None => v.parse().unwrap(),
        }
    }

    /// The subset of OpenFlow matching these flows use.
    fn matches(f: &Flow, p: &Pkt, ct: Option<&str>) -> bool {
        f.matches.iter().all(|(k, v)| match k.as_str() {
            "in_port" => num(v) == p.in_port,
            "ip" => true,
            "udp" => p.proto == PROTO_UDP,
            "tcp" => p.proto == PROTO_TCP,
            "nw_src" | "nw_dst" => {
                // a.b.c.d, a.b.c.d/len or a.b.c.d/m.m.m.m
                let (addr, mask) = match v.split_once('/') {
                    Some((a, m)) if m.contains('.') => (a, u32::from(m.parse::<Ipv4Addr>().unwrap())),
                    Some((a, m)) => (a, Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, m.parse().unwrap()).unwrap().mask()),
                    None => (v.as_str(), u32::MAX),
                };
                let ip = if k == "nw_src" { p.src } else { p.dst };
                u32::from(ip) & mask == u32::from(addr.parse::<Ipv4Addr>().unwrap())
            }
            "tp_src" => {
                let (val, mask) = match v.split_once('/') {
                    Some((a, m)) => (num(a), num(m)),
                    None => (num(v), 0xffff),
                };
                matches!(p.proto, PROTO_UDP | PROTO_TCP) && u32::from(p.sport) & mask == val
            }
            "tp_dst" => {
                let (val, mask) = match v.split_once('/') {
                    Some((a, m)) => (num(a), num(m)),
                    None => (num(v), 0xffff),
                };
                matches!(p.proto, PROTO_UDP | PROTO_TCP) && u32::from(p.dport) & mask == val
            }
            "ct_state" => ct == Some(v.as_str()),
            other => panic!("match field {other} not modelled"),
        })
    }

    /// (source, destination, source port, destination port).
    type Tuple = (Ipv4Addr, Ipv4Addr, u16, u16);

    /// What a committed connection's NAT does to its original direction.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Nat {
        None,
        Dst(Ipv4Addr, u16),
        Src(Ipv4Addr, u16),
    }

    impl Nat {
        fn apply(self, p: &mut Pkt) {
            match self {
                Nat::None => {}
                Nat::Dst(ip, port) => (p.dst, p.dport) = (ip, port),
                Nat::Src(ip, port) => (p.src, p.sport) = (ip, port),
            }
        }
    }

    /// Conntrack: (zone, original tuple) → the connection's NAT, and the
    /// reply tuples taken (an SNAT picks a port that leaves its reply
    /// tuple unique, as OVS does).
    #[derive(Default)]
    struct Conntrack {
        conns: HashMap<(u32, Tuple), Nat>,
        replies: std::collections::HashSet<(u32, Tuple)>,
    }

    impl Conntrack {
        fn new() -> Self {
            Self::default()
        }

        /// The NAT of `nat(...)` for a new connection of `orig`:
        /// `dst=A-B:P` picks an address by a hash of the tuple, `src=IP:L-H`
        /// the first port from a hashed start whose reply tuple is free.
        fn pick(&mut self, zone: u32, orig: Tuple, spec: &str) -> Nat {
            let h = {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                orig.hash(&mut h);
                h.finish()
            };
            let (kind, arg) = spec.split_once('=').unwrap();
            let (addrs, ports) = arg.split_once(':').unwrap_or((arg, ""));
            let (a, b) = addrs.split_once('-').unwrap_or((addrs, addrs));
            let (a, b): (Ipv4Addr, Ipv4Addr) = (a.parse().unwrap(), b.parse().unwrap());
            let addr = Ipv4Addr::from(u32::from(a) + (h % u64::from(u32::from(b) - u32::from(a) + 1)) as u32);
            let (src, dst, sport, dport) = orig;
            // No port given: the connection's own.
            let own = if kind == "dst" { dport } else { sport };
            let (lo, hi) = ports.split_once('-').unwrap_or((ports, ports));
            let (lo, hi): (u16, u16) = (lo.parse().unwrap_or(own), hi.parse().unwrap_or(own));
            match kind {
                "dst" => {
                    self.replies.insert((zone, (addr, src, lo, sport)));
                    Nat::Dst(addr, lo)
                }
                "src" => {
                    let span = u32::from(hi) - u32::from(lo) + 1;
                    let start = (h >> 32) as u32 % span;
                    for j in 0..span {
                        let port = (u32::from(lo) + (start + j) % span) as u16;
                        if self.replies.insert((zone, (dst, addr, dport, port))) {
                            return Nat::Src(addr, port);
                        }
                    }
                    panic!("SNAT ports of {addr} exhausted");
                }
                other => panic!("nat({other}=...) not modelled"),
            }
        }
    }

    /// Runs a packet through the flows from table `start`, as OVS would
    /// for these rules: the highest-priority match of a table decides,
    /// `ct(zone=Z,...)` looks the packet's tuple up in zone Z (and commits
    /// it with its NAT, or applies the NAT of its connection), `table=N`
    /// recirculates with the connection's state in that zone.
    fn run(flows: &[Flow], ct: &mut Conntrack, mut p: Pkt, start: u32, state: Option<&str>) -> Fate {
        let (mut table, mut state) = (start, state.map(String::from));
        let (mut dl_dst, mut ttl_dec, mut committed) = (String::new(), false, false);
        'tables: for _ in 0..16 {
            let Some(f) = flows
                .iter()
                .filter(|f| f.table == table && matches(f, &p, state.as_deref()))
                .max_by_key(|f| f.priority)
            else {
                return Fate::Drop; // a table miss drops (OpenFlow 1.3)
            };
            for a in &f.actions {
                if a == "drop" {
                    return Fate::Drop;
                } else if a == "dec_ttl" {
                    ttl_dec = true;
                } else if let Some(m) = a.strip_prefix("mod_dl_dst:") {
                    dl_dst = m.to_string();
                } else if a.starts_with("mod_dl_src:") {
                } else if let Some(port) = a.strip_prefix("output:") {
                    return Fate::Out { port: num(port), pkt: p, dl_dst, ttl_dec, committed };
                } else if let Some(t) = a.strip_prefix("resubmit(,").and_then(|r| r.strip_suffix(')')) {
                    table = num(t);
                    continue 'tables;
                } else if let Some(args) = a.strip_prefix("ct(").and_then(|r| r.strip_suffix(')')) {
                    let args = split_top(args);
                    let has = |x: &str| args.iter().any(|a| a == x);
                    let zone: u32 = args.iter().find_map(|a| a.strip_prefix("zone=")).expect(a).parse().unwrap();
                    assert!(zone == DNAT_ZONE || zone == SNAT_ZONE, "{a}");
                    let tuple = (p.src, p.dst, p.sport, p.dport);
                    let known = ct.conns.get(&(zone, tuple)).copied();
                    if has("commit") {
                        let spec = args.iter().find_map(|a| a.strip_prefix("nat(")).map(|n| n.trim_end_matches(')'));
                        let nat = match (known, spec) {
                            (Some(n), _) => n,
                            (None, Some(spec)) => ct.pick(zone, tuple, spec),
                            (None, None) => Nat::None,
                        };
                        ct.conns.insert((zone, tuple), nat);
                        committed = true;
                        nat.apply(&mut p);
                    } else if has("nat") {
                        if let Some(n) = known {
                            n.apply(&mut p);
                        }
                    }
                    let next = args.iter().find_map(|a| a.strip_prefix("table="));
                    if let Some(t) = next {
                        let s = if known.is_some() { "+trk+est" } else { "+trk+new" };
                        state = Some(s.to_string());
                        table = num(t);
                        continue 'tables;
                    }
                } else {
                    panic!("action {a} not modelled");
                }
            }
            return Fate::Drop; // no output: dropped
        }
        panic!("resubmit loop");
    }

    /// The scenario's frames through the OVS rules: every flow's first
    /// packet is classified, committed and sent out as weir would (for
    /// full: DNAT to the backend, out by the VXLAN port to node3), the next
    /// one is established; without the allowing rule nothing passes.
    #[test]
    fn scenario_frames_through_the_rules() {
        for kind in [Kind::Acl, Kind::AclNew, Kind::Full, Kind::FullNew] {
            let s = Scenario::new(kind, Some(200_000), 64, 1000).unwrap();
            let rules = s.rule_set().unwrap().unwrap();
            let tpl = s.template(None);
            let mut frame = vec![0u8; tpl.len()];
            let pkt = |frame: &[u8]| {
                let ip = if kind.vxlan() { OUTER_LEN + 14 } else { 14 };
                let a = |at: usize| Ipv4Addr::new(frame[at], frame[at + 1], frame[at + 2], frame[at + 3]);
                let port = |at: usize| u16::from_be_bytes([frame[at], frame[at + 1]]);
                Pkt {
                    in_port: if kind.vxlan() { VXLAN_PORT_NO } else { P0 },
                    proto: frame[ip + 9],
                    src: a(ip + 12),
                    dst: a(ip + 16),
                    sport: port(ip + 20),
                    dport: port(ip + 22),
                }
            };
            let all = parse(&flows(&s).unwrap());
            let mut ct = Conntrack::new();
            let mut translated = HashMap::new();
            for flow in (0..s.flows).step_by(9973) {
                tpl.write(&mut frame, flow, &crate::traffic::Stamp::default());
                let p = pkt(&frame);
                for (pass, est) in [(0, false), (1, true)] {
                    let fate = run(&all, &mut ct, p, 0, None);
                    let Fate::Out { port, pkt: out, dl_dst, ttl_dec, committed } = fate else {
                        panic!("{} flow {flow} pass {pass}: dropped", s.label());
                    };
                    assert!(ttl_dec, "{}", s.label());
                    assert_eq!(committed, !est, "{}: committed by its first packet only", s.label());
                    if kind.vxlan() {
                        // DNAT to a backend of node3, SNAT to the node IP
                        // and a port of the range, as weir does; the same
                        // for the connection's later packets.
                        assert_eq!((port, out.dport), (VXLAN3_PORT_NO, SVC_PORT));
                        assert!(full_backend_set().contains(out.dst), "{out:?}");
                        assert_eq!(out.src, NODE_IP, "client translated to the node IP");
                        assert!((SNAT_PORT_MIN..=SNAT_PORT_MAX).contains(&out.sport), "{out:?}");
                        assert_eq!(*translated.entry(flow).or_insert((out.dst, out.sport)), (out.dst, out.sport));
                        assert_eq!(dl_dst, NODE3_GW_MAC.to_string());
                    } else {
                        assert_eq!((port, out), (P1, p));
                        assert_eq!(dl_dst, POD_B_MAC.to_string());
                    }
                }
            }
            if kind.vxlan() {
                let pairs: std::collections::HashSet<_> = translated.values().collect();
                assert_eq!(pairs.len(), translated.len(), "{}: a (backend, SNAT port) pair per flow", s.label());
                let backends: std::collections::HashSet<_> = translated.values().map(|(b, _)| b).collect();
                assert!(backends.len() > 1, "{}: spread over the backends", s.label());
            }
            // Without an allowing rule on the path, new connections are
            // dropped, and so are their next packets (for full: they have a
            // zone-1 entry, made before the ACL, but no zone-2 one).
            let mut dirs = vec![Direction::Ingress];
            if rules.target.src_pod.is_some() {
                dirs.push(Direction::Egress);
            }
            for d in dirs {
                let denied = parse(&flows_with(&s, Some(&rules.without_allow(d))));
                let mut ct = Conntrack::new();
                for flow in (0..s.flows).step_by(9973) {
                    tpl.write(&mut frame, flow, &crate::traffic::Stamp::default());
                    for pass in 0..2 {
                        let fate = run(&denied, &mut ct, pkt(&frame), 0, None);
                        assert_eq!(fate, Fate::Drop, "{} without {d}, pass {pass}", s.label());
                    }
                }
            }
        }
    }

    /// Lists whose rules overlap, so that order, port masks and defaults
    /// decide (the scenarios' rules never overlap on a packet).
    fn overlapping() -> RuleSet {
        use crate::policy::{PodRules, PodSet, Rule, Target};
        use weir_dataplane::tables::acl::PortRange;
        let rule = |id: &str, peer: &str, proto, from, to, action| Rule {
            id: id.into(),
            peer: peer.parse().unwrap(),
            proto,
            ports: PortRange { from, to },
            action,
        };
        let (a, b) = (POD_A_IP, POD_B_IP);
        RuleSet {
            target: Target {
                src_pod: Some(a),
                dst_pods: PodSet::one(b),
                allow_from: POD_CIDR.parse().unwrap(),
                allow_to: POD_CIDR.parse().unwrap(),
                proto: PROTO_UDP,
                ports: PortRange { from: 8080, to: 8095 },
            },
            lists: vec![
                PodRules {
                    pods: PodSet::one(b),
                    name: "b".into(),
                    direction: Direction::Ingress,
                    rules: vec![
                        rule("1", "10.1.0.2/32", PROTO_UDP, 8080, 8080, Verdict::Deny),
                        rule("2", "10.1.0.0/24", PROTO_UDP, 8080, 8095, Verdict::Allow),
                        rule("3", "10.0.0.0/8", PROTO_UDP, 0, 65535, Verdict::Deny),
                        rule("4", "0.0.0.0/0", PROTO_TCP, 1, 1000, Verdict::Allow),
                        rule("5", "10.1.0.0/28", PROTO_TCP, 7, 9000, Verdict::Deny),
                    ],
                    default: Verdict::Allow,
                },
                PodRules {
                    pods: PodSet::one(a),
                    name: "a".into(),
                    direction: Direction::Egress,
                    rules: vec![
                        rule("1", "10.1.0.3/32", PROTO_UDP, 8081, 8081, Verdict::Allow),
                        rule("2", "10.1.0.0/24", PROTO_UDP, 8080, 8090, Verdict::Deny),
                        rule("3", "10.1.0.0/16", PROTO_TCP, 100, 65535, Verdict::Allow),
                    ],
                    default: Verdict::Deny,
                },
            ],
        }
    }

    /// The OpenFlow ACL tables decide every packet as weir's classifier
    /// does: the flows' own tuples, every rule's peer and ports, ports and
    /// protocols next to them, with and without the allowing rules, and
    /// lists whose rules overlap.
    #[test]
    fn acl_tables_decide_as_weir_does() {
        for kind in [Kind::Acl, Kind::Full] {
            let s = Scenario::new(kind, Some(200_000), 64, 400).unwrap();
            let base = s.rule_set().unwrap().unwrap();
            for rules in [
                base.clone(),
                base.without_allow(Direction::Ingress),
                base.without_allow(Direction::Egress),
                overlapping(),
            ] {
                let weir = AclTable::build(&rules.acl_config(), &[]).unwrap();
                let of = parse(&rules.openflow(2, 3, "output:2").join("\n"));
                let t = &rules.target;
                let mut probes = Vec::new();
                let sources =
                    [t.src_pod.unwrap_or(REMOTE_POD_BASE), Ipv4Addr::new(10, 9, 9, 9), Ipv4Addr::new(10, 1, 0, 20)];
                // The first and last pod of the destinations, and the
                // addresses next to them.
                let first = t.dst_pods.addrs().next().unwrap();
                let last = t.dst_pods.addrs().last().unwrap();
                let dsts =
                    [u32::from(first), u32::from(last), u32::from(first) - 1, u32::from(last) + 1].map(Ipv4Addr::from);
                for src in sources {
                    for port in [t.ports.from, t.ports.to, t.ports.to + 1, 1, 7] {
                        for proto in [PROTO_UDP, PROTO_TCP] {
                            for dst in dsts {
                                probes.push((src, dst, proto, port));
                            }
                        }
                    }
                }
                for l in &rules.lists {
                    for r in l.rules.iter().step_by(7) {
                        let ports =
                            [r.ports.from, r.ports.from.wrapping_add(1), r.ports.to, r.ports.to.wrapping_add(1)];
                        let pods = [l.pods.addrs().next().unwrap(), l.pods.addrs().last().unwrap()];
                        for (port, pod) in ports.into_iter().flat_map(|p| pods.map(|pod| (p, pod))) {
                            let (src, dst) = match l.direction {
                                Direction::Ingress => (r.peer.addr(), pod),
                                Direction::Egress => (pod, r.peer.addr()),
                            };
                            probes.push((src, dst, r.proto, port));
                            probes.push((src, dst, PROTO_TCP + PROTO_UDP - r.proto, port));
                        }
                    }
                }
                let mut allowed = 0;
                for (src, dst, proto, dport) in probes {
                    let p = Pkt { in_port: P0, proto, src, dst, sport: 1024, dport };
                    let want = weir.evaluate(src, dst, proto, 1024, dport).verdict;
                    let got = match run(&of, &mut Conntrack::new(), p, 2, Some("+trk+new")) {
                        Fate::Out { .. } => Verdict::Allow,
                        Fate::Drop => Verdict::Deny,
                    };
                    assert_eq!(got, want, "{}: {p:?}", s.label());
                    allowed += usize::from(want == Verdict::Allow);
                }
                assert!(allowed > 0, "{}: some probes are allowed", s.label());
            }
        }
    }
}
