//! The perf harness: each scenario against each device under test, over
//! the same ports, one after the other, with weir-pktgen as the generator.
//!
//! A run of one (scenario, DUT) pair: start the DUT with its worker on the
//! DUT core and wait until it is up; start `weir-pktgen` on the generator
//! core with the ports the DUT offers (vhost-user: the generator is the
//! virtio-user side; memif: the client), which primes the flows, searches
//! the no-drop rate and measures latency at a share of it, and writes a JSON
//! report; read the DUT's own counters; stop the DUT. Everything started is
//! killed by PID at the end, whatever happened.
//!
//! DUTs ([`DutKind`]): `dpdk-testpmd` io forwarding (the port's ceiling),
//! weir-dataplane in io mode (weir's bare rx→tx path; pod2pod only),
//! weir-dataplane doing the scenario's work, OVS-DPDK doing the same work
//! with OpenFlow rules and conntrack ([`ovs`]).

pub mod ovs;
pub mod testpmd_dut;
pub mod weir_dut;

use std::io::{IsTerminal, Read, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use weir_dataplane::wire::MacAddr;

use crate::proc::{self, Proc};
use crate::report::{Priming, RateSummary};
use crate::search::TrialResult;
use crate::traffic::{Kind, Scenario};

/// Entries of each virtio ring between the generator and a vhost-user DUT.
pub const VRING_SIZE: u32 = 8192;

/// How the generator reaches the DUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// The DUT's vhost-user ports, the generator's virtio-user ports.
    Vhost,
    /// memif: the DUT is the server, the generator the client. The sockets
    /// are files (`socket-abstract=no`): abstract ones would not reach a DUT
    /// in another network namespace (OVS).
    Memif,
}

impl Link {
    pub fn name(self) -> &'static str {
        match self {
            Link::Vhost => "vhost-user/virtio-user",
            Link::Memif => "memif",
        }
    }

    /// The generator's devargs for its port `i` on the socket `path`;
    /// `server`: the generator listens (the DUT's vhost side is a client);
    /// `queues`: queue pairs (memif: set by the generator's port setup).
    pub fn gen_devargs(self, i: usize, path: &Path, server: bool, queues: u16) -> String {
        match self {
            // Deep rings (the default is 256 entries) hold a stall of either
            // side of a few milliseconds without loss, as a NIC's rx ring
            // holds a burst: on a shared VM the vCPUs stop that long.
            Link::Vhost => format!(
                "net_virtio_user{i},path={},queues={queues},queue_size={VRING_SIZE}{}",
                path.display(),
                if server { ",server=1" } else { "" }
            ),
            // The client sets the ring size: 2^13, as deep as the vhost rings.
            Link::Memif => format!("net_memif{i},role=client,socket={},socket-abstract=no,rsize=13", path.display()),
        }
    }
}

/// The devices under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DutKind {
    Testpmd,
    WeirIo,
    Weir,
    Ovs,
}

impl DutKind {
    pub const ALL: [DutKind; 4] = [DutKind::Testpmd, DutKind::WeirIo, DutKind::Weir, DutKind::Ovs];

    pub fn name(self) -> &'static str {
        match self {
            DutKind::Testpmd => "testpmd",
            DutKind::WeirIo => "weir-io",
            DutKind::Weir => "weir",
            DutKind::Ovs => "ovs",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            DutKind::Testpmd => "dpdk-testpmd io",
            DutKind::WeirIo => "weir io mode",
            DutKind::Weir => "weir-dataplane",
            DutKind::Ovs => "OVS-DPDK",
        }
    }

    pub fn parse(s: &str) -> Option<DutKind> {
        DutKind::ALL.into_iter().find(|d| d.name() == s)
    }

    /// Why this DUT does not run a scenario, if it does not.
    pub fn skips(self, s: &Scenario) -> Option<&'static str> {
        match self {
            DutKind::WeirIo if s.kind != Kind::Pod2Pod => Some("io mode is measured on pod2pod only (bare rx->tx)"),
            _ => None,
        }
    }
}

/// What the harness runs with.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub link: Link,
    /// EAL main lcore of the DUTs (management, prompts): shares the
    /// generator's core, where it idles.
    pub main_core: usize,
    pub gen_core: usize,
    pub dut_core: usize,
    pub dut_memory_mb: u32,
    pub gen_memory_mb: u32,
    pub burst: usize,
    pub weir: PathBuf,
    pub testpmd: PathBuf,
    pub pktgen: PathBuf,
    pub ovs_vswitchd: PathBuf,
    /// Seconds per trial, and for the new-flow scenario (whose trials fill
    /// flow tables: kept short).
    pub trial: f64,
    pub new_flow_trial: f64,
    pub loss_pct: f64,
    pub resolution_pct: f64,
    pub max_trials: u32,
    pub attempts: u32,
    pub latency_load: f64,
    pub quiet: bool,
}

impl Setup {
    /// Defaults with made-up binary paths (for tests of config text).
    pub fn for_tests() -> Setup {
        Setup {
            link: Link::Vhost,
            main_core: 0,
            gen_core: 0,
            dut_core: 1,
            dut_memory_mb: 1024,
            gen_memory_mb: 512,
            burst: 32,
            weir: PathBuf::from("/nonexistent/weir-dataplane"),
            testpmd: PathBuf::from("dpdk-testpmd"),
            pktgen: PathBuf::from("/nonexistent/weir-pktgen"),
            ovs_vswitchd: PathBuf::from(ovs::VSWITCHD_DPDK),
            trial: 1.0,
            new_flow_trial: 0.5,
            loss_pct: 0.1,
            resolution_pct: 1.0,
            max_trials: 10,
            attempts: 2,
            latency_load: 0.5,
            quiet: true,
        }
    }
}

/// What a started DUT tells the generator.
#[derive(Debug, Clone, PartialEq)]
pub struct GenSide {
    /// The generator's ports (devargs).
    pub ports: Vec<String>,
    pub tx_port: usize,
    pub rx_port: usize,
    /// The destination MAC frames need (the DUT's uplink MAC), if not the template's.
    pub dst_mac: Option<MacAddr>,
    /// Addresses the generator answers ARP for.
    pub arp_reply: Vec<Ipv4Addr>,
    /// Queue pairs of the generator's ports (every rx queue is polled).
    pub queues: u16,
}

/// A DUT that could not run: it cannot run here at all (a tool missing, DPDK
/// refusing to start), or this run failed.
#[derive(Debug, Clone, PartialEq)]
pub enum DutError {
    Unavailable(String),
    Failed(String),
}

/// A running device under test.
pub trait RunningDut {
    fn gen_side(&self) -> &GenSide;
    /// An error when the DUT has exited.
    fn alive(&mut self) -> Result<(), String>;
    /// The DUT's own counters, as lines for the report.
    fn notes(&mut self) -> Vec<String>;
    fn stop(self: Box<Self>) -> Result<(), String>;
}

/// The part of weir-pktgen's JSON report the harness reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PktgenOutput {
    pub label: String,
    pub scenario_label: String,
    pub trials: Vec<TrialResult>,
    pub max: Option<RateSummary>,
    pub ndr: Option<RateSummary>,
    pub latency_load: f64,
    pub at_load: Option<RateSummary>,
    pub priming: Option<Priming>,
    pub notes: Vec<String>,
}

/// How often tasks of other processes were running while a pair ran: they
/// take CPU time from the generator or the DUT (two cores, both busy).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Contention {
    pub samples: u32,
    /// Samples in which at least one foreign task was running.
    pub busy: u32,
    /// The foreign tasks seen running, by name, with how many samples each.
    pub tasks: std::collections::BTreeMap<String, u32>,
}

impl Contention {
    pub fn share(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            f64::from(self.busy) / f64::from(self.samples)
        }
    }

    /// `others ran in 12 % of samples (rustc 30, cc 2)`.
    pub fn describe(&self) -> String {
        let mut top: Vec<(&String, &u32)> = self.tasks.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1));
        let names: Vec<String> = top.iter().take(4).map(|(n, c)| format!("{n} {c}")).collect();
        format!(
            "other processes were running in {:.0} % of {} samples{}",
            self.share() * 100.0,
            self.samples,
            if names.is_empty() { String::new() } else { format!(" ({})", names.join(", ")) }
        )
    }

    /// One look at every task on the machine: those running (state R) that
    /// belong neither to this process nor to its children, nor to the kernel.
    pub fn sample(&mut self) {
        let me = std::process::id();
        let mut busy = false;
        let Ok(rd) = std::fs::read_dir("/proc") else { return };
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if pid == me {
                continue;
            }
            let Some((ppid, _, name)) = task_stat(&format!("/proc/{pid}/stat")) else { continue };
            // Our children (DUTs, the generator, ip netns exec'd vswitchd),
            // and kernel threads (children of kthreadd, pid 2).
            if ppid == me || ppid == 2 || pid == 2 {
                continue;
            }
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
            for t in tasks.flatten() {
                let path = t.path().join("stat");
                if let Some((_, 'R', tname)) = task_stat(&path.to_string_lossy()) {
                    busy = true;
                    let n = if tname.is_empty() { name.clone() } else { tname };
                    *self.tasks.entry(n).or_default() += 1;
                }
            }
        }
        self.samples += 1;
        self.busy += u32::from(busy);
    }
}

/// (ppid, state, comm) from a `/proc/.../stat` file.
fn task_stat(path: &str) -> Option<(u32, char, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text[open + 1..close].to_string();
    let mut rest = text[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((ppid, state, name))
}

/// One (scenario, DUT) pair's result.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Measured { report: Box<PktgenOutput>, dut_notes: Vec<String>, contention: Contention },
    Failed { error: String },
    Unavailable { reason: String },
    Skipped { reason: String },
}

impl Outcome {
    pub fn report(&self) -> Option<&PktgenOutput> {
        match self {
            Outcome::Measured { report, .. } => Some(report),
            _ => None,
        }
    }

    /// The no-drop rate, Mpps (received at the passing trial).
    pub fn ndr_mpps(&self) -> Option<f64> {
        self.report().and_then(|r| r.ndr.as_ref()).map(|n| n.rx_mpps)
    }

    /// The no-drop rate is the generator's top rate: the first trial (as
    /// fast as the generator goes) passed, so the DUT may do more.
    pub fn generator_bound(&self) -> bool {
        self.report().is_some_and(|r| matches!((&r.ndr, &r.max), (Some(n), Some(m)) if n.trial == m.trial))
    }

    /// What the DUT forwarded at the highest offered rate, Mpps.
    pub fn max_mpps(&self) -> Option<f64> {
        self.report().and_then(|r| r.max.as_ref()).map(|n| n.rx_mpps)
    }

    /// p99 latency at the latency trial (a share of the no-drop rate), ns.
    pub fn p99_at_load_ns(&self) -> Option<u64> {
        self.report().and_then(|r| r.at_load.as_ref()).and_then(|a| a.latency).map(|l| l.p99_ns)
    }
}

/// Every DUT's outcome for one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scenario: Scenario,
    pub label: String,
    pub results: Vec<(DutKind, Outcome)>,
    /// Milliseconds per second both CPUs were taken away (a short busy-loop
    /// probe just before each DUT started), by DUT.
    pub stalls_ms_per_s: Vec<(DutKind, f64)>,
}

impl ScenarioResult {
    pub fn get(&self, d: DutKind) -> Option<&Outcome> {
        self.results.iter().find(|(k, _)| *k == d).map(|(_, o)| o)
    }

    pub fn stalls(&self, d: DutKind) -> Option<f64> {
        self.stalls_ms_per_s.iter().find(|(k, _)| *k == d).map(|(_, v)| *v)
    }
}

/// Starts `dut` for `s`.
pub fn start_dut(
    dut: DutKind,
    s: &Scenario,
    setup: &Setup,
    dir: &Path,
    tag: &str,
) -> Result<Box<dyn RunningDut>, DutError> {
    Ok(match dut {
        DutKind::Testpmd => Box::new(testpmd_dut::start(setup, dir, tag)?),
        DutKind::WeirIo => Box::new(weir_dut::start(s, setup, true, dir, tag)?),
        DutKind::Weir => Box::new(weir_dut::start(s, setup, false, dir, tag)?),
        DutKind::Ovs => Box::new(ovs::start(s, setup, dir, tag)?),
    })
}

/// weir-pktgen's arguments for a run.
pub fn pktgen_args(s: &Scenario, setup: &Setup, gen: &GenSide, label: &str, json: &Path, live: bool) -> Vec<String> {
    let trial = if s.kind.new_flows() { setup.new_flow_trial } else { setup.trial };
    let mut a: Vec<String> = Vec::new();
    for p in &gen.ports {
        a.push(format!("--port={p}"));
    }
    a.extend([
        format!("--tx-port={}", gen.tx_port),
        format!("--rx-port={}", gen.rx_port),
        format!("--scenario={}", s.kind),
        format!("--flows={}", s.flows),
        format!("--frame-size={}", s.frame_size),
        format!("--acl-rules={}", s.acl_rules),
        format!("--core={}", setup.gen_core),
        format!("--memory-mb={}", setup.gen_memory_mb),
        format!("--burst={}", setup.burst),
        format!("--queues={}", gen.queues),
        "--mode=ndr".into(),
        format!("--trial={trial}"),
        format!("--loss={}", setup.loss_pct),
        format!("--resolution={}", setup.resolution_pct),
        format!("--max-trials={}", setup.max_trials),
        format!("--attempts={}", setup.attempts),
        format!("--latency-load={}", setup.latency_load),
        format!("--label={label}"),
        format!("--json={}", json.display()),
        "--eal=--log-level=warning".into(),
    ]);
    if let Some(m) = gen.dst_mac {
        a.push(format!("--dst-mac={m}"));
    }
    for ip in &gen.arp_reply {
        a.push(format!("--arp-reply={ip}"));
    }
    if setup.quiet {
        a.push("--quiet".into());
    } else if live {
        a.push("--live-progress".into());
    }
    a
}

/// How long a pktgen run may take: priming, every trial with its drain,
/// the latency trial, start-up.
pub fn pktgen_timeout(s: &Scenario, setup: &Setup) -> Duration {
    let trial = if s.kind.new_flows() { setup.new_flow_trial } else { setup.trial };
    let prime = if s.kind.needs_priming() { f64::from(s.flows) / 20_000.0 } else { 0.0 };
    Duration::from_secs_f64(90.0 + prime + f64::from(setup.max_trials + 1) * (trial + 1.0))
}

/// Copies a child's stderr to ours (unless quiet) and keeps it.
fn tee(mut src: impl Read + Send + 'static, quiet: bool) -> (Arc<Mutex<String>>, std::thread::JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(String::new()));
    let b = Arc::clone(&buf);
    let h = std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        loop {
            match src.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if !quiet {
                        let mut e = std::io::stderr().lock();
                        let _ = e.write_all(&chunk[..n]);
                        let _ = e.flush();
                    }
                    if let Ok(mut g) = b.lock() {
                        g.push_str(&String::from_utf8_lossy(&chunk[..n]));
                    }
                }
            }
        }
    });
    (buf, h)
}

/// Runs one (scenario, DUT) pair.
pub fn run_one(dut: DutKind, s: &Scenario, setup: &Setup, dir: &Path, tag: &str) -> Outcome {
    if let Some(reason) = dut.skips(s) {
        return Outcome::Skipped { reason: reason.into() };
    }
    let mut d = match start_dut(dut, s, setup, dir, tag) {
        Ok(d) => d,
        Err(DutError::Unavailable(reason)) => return Outcome::Unavailable { reason },
        Err(DutError::Failed(error)) => return Outcome::Failed { error },
    };
    let json = dir.join(format!("{tag}.json"));
    let live = std::io::stderr().is_terminal();
    // The generator's prefix is ours: removed even if it has to be killed.
    let prefix = proc::DpdkPrefix::new(&format!("{tag}-gen"));
    let mut args = pktgen_args(s, setup, d.gen_side(), dut.label(), &json, live);
    args.push(format!("--file-prefix={}", prefix.name()));
    let mut contention = Contention::default();
    let result =
        run_pktgen(&mut *d, &setup.pktgen, &args, &json, pktgen_timeout(s, setup), setup.quiet, &mut contention);
    let mut dut_notes = d.notes();
    let stopped = d.stop();
    match (result, stopped) {
        (Ok(report), stopped) => {
            if let Err(e) = stopped {
                dut_notes.push(format!("stopping the DUT: {e}"));
            }
            Outcome::Measured { report: Box::new(report), dut_notes, contention }
        }
        (Err(error), _) => {
            let notes: Vec<String> = dut_notes.iter().map(|n| format!("    {n}")).collect();
            Outcome::Failed { error: format!("{error}\n  the DUT's counters:\n{}", notes.join("\n")) }
        }
    }
}

fn run_pktgen(
    d: &mut dyn RunningDut,
    pktgen: &Path,
    args: &[String],
    json: &Path,
    timeout: Duration,
    quiet: bool,
    contention: &mut Contention,
) -> Result<PktgenOutput, String> {
    if !pktgen.is_file() {
        return Err(format!("{} not found (cargo build --release -p weir-perf)", pktgen.display()));
    }
    let mut c = Command::new(pktgen);
    c.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut p = Proc::spawn("weir-pktgen", &mut c)?;
    let Some(err) = p.child_mut().stderr.take() else { return Err("weir-pktgen's stderr is missing".into()) };
    let (out, reader) = tee(err, quiet);
    let t0 = Instant::now();
    let mut next_sample = t0;
    let status = loop {
        if let Some(st) = p.try_status() {
            break Some(st);
        }
        if Instant::now() >= next_sample {
            contention.sample();
            next_sample += Duration::from_millis(200);
        }
        if let Err(e) = d.alive() {
            p.kill();
            return Err(format!("the DUT died during the run: {e}"));
        }
        if t0.elapsed() > timeout || proc::interrupted() {
            p.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = reader.join();
    let text = out.lock().map(|g| g.clone()).unwrap_or_default();
    match status {
        None if proc::interrupted() => return Err("interrupted".into()),
        None => {
            return Err(format!("weir-pktgen took longer than {timeout:?}; killed it\n{}", proc::tail_lines(&text, 12)))
        }
        Some(st) if !st.success() => {
            return Err(format!("weir-pktgen exited with {st}:\n{}", proc::tail_lines(&text, 12)));
        }
        Some(_) => {}
    }
    let body = std::fs::read_to_string(json).map_err(|e| format!("cannot read {}: {e}", json.display()))?;
    serde_json::from_str(&body).map_err(|e| format!("{}: not a weir-pktgen report: {e}", json.display()))
}

/// `kind[:N]`: N is the flow count, or for acl and acl-new the rule count.
/// `acl_rules`: the rules of the full scenarios, and of acl without N.
pub fn parse_scenario(spec: &str, frame_size: usize, acl_rules: u32) -> Result<Scenario, String> {
    let (name, n) = match spec.split_once(':') {
        Some((k, n)) => (k, Some(n.parse::<u32>().map_err(|e| format!("{spec:?}: {n:?} is not a count: {e}"))?)),
        None => (spec, None),
    };
    let kind = Kind::parse(name).ok_or_else(|| {
        let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        format!("unknown scenario {name:?}; one of {}", names.join(", "))
    })?;
    let (flows, rules) = match kind {
        Kind::Acl | Kind::AclNew => (None, n.unwrap_or(acl_rules)),
        _ => (n, acl_rules),
    };
    Scenario::new(kind, flows, frame_size, rules).map_err(|e| format!("{spec:?}: {e}"))
}

/// `a / b` when both are there and `b` is not zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_specs() {
        let s = parse_scenario("clusterip-est:1000000", 64, 1000).unwrap();
        assert_eq!((s.kind, s.flows), (Kind::ClusteripEst, 1_000_000));
        let a = parse_scenario("acl:250", 128, 1000).unwrap();
        assert_eq!((a.kind, a.acl_rules, a.flows, a.frame_size), (Kind::Acl, 250, 10_000, 128));
        assert_eq!(parse_scenario("acl", 64, 1000).unwrap().acl_rules, 1000);
        assert_eq!(parse_scenario("acl-new:20", 64, 1000).unwrap().acl_rules, 20);
        let f = parse_scenario("full:1000000", 64, 300).unwrap();
        assert_eq!((f.kind, f.flows, f.acl_rules, f.frame_size), (Kind::Full, 1_000_000, 300, 114));
        assert!(parse_scenario("full-new", 64, 1).unwrap().kind.new_flows());
        assert_eq!(parse_scenario("vxlan-decap", 64, 1000).unwrap().frame_size, 114);
        assert!(parse_scenario("nope", 64, 1000).is_err());
        assert!(parse_scenario("pod2pod:x", 64, 1000).is_err());
        // Rule counts out of range are refused with the spec named.
        let e = parse_scenario("acl:0", 64, 1000).unwrap_err();
        assert!(e.contains("\"acl:0\"") && e.contains("ACL rules"), "{e}");
        assert!(parse_scenario("acl:100000", 64, 1000).is_err());
        assert!(parse_scenario("full", 64, 0).is_err());
        assert!(parse_scenario("pod2pod", 64, 0).is_ok(), "rules matter only where there is an ACL");
    }

    #[test]
    fn pktgen_command_line() {
        let setup = Setup::for_tests();
        let s = parse_scenario("vxlan-decap", 64, 1000).unwrap();
        let gen = GenSide {
            ports: vec![
                "net_virtio_user0,path=/t/a.sock,queues=1".into(),
                "net_virtio_user1,path=/t/b.sock,queues=1".into(),
            ],
            tx_port: 0,
            rx_port: 1,
            dst_mac: Some(MacAddr([0x56, 0x48, 0x4f, 0x53, 0x54, 0])),
            arp_reply: vec![Ipv4Addr::new(192, 168, 50, 2)],
            queues: 1,
        };
        let a = pktgen_args(&s, &setup, &gen, "weir", Path::new("/t/r.json"), false).join(" ");
        for want in [
            "--port=net_virtio_user0,path=/t/a.sock,queues=1",
            "--scenario=vxlan-decap",
            "--frame-size=114",
            "--core=0",
            "--dst-mac=56:48:4f:53:54:00",
            "--arp-reply=192.168.50.2",
            "--json=/t/r.json",
            "--quiet",
        ] {
            assert!(a.contains(want), "{want} missing from {a}");
        }
        let n = parse_scenario("clusterip-new", 64, 1000).unwrap();
        assert!(pktgen_args(&n, &setup, &gen, "x", Path::new("/j"), false).contains(&"--trial=0.5".to_string()));
        assert!(
            pktgen_timeout(&parse_scenario("clusterip-est:1000000", 64, 1000).unwrap(), &setup)
                > Duration::from_secs(100)
        );
    }

    #[test]
    fn gen_devargs() {
        let p = Path::new("/t/a.sock");
        assert_eq!(Link::Vhost.gen_devargs(0, p, false, 1), "net_virtio_user0,path=/t/a.sock,queues=1,queue_size=8192");
        assert_eq!(
            Link::Vhost.gen_devargs(1, p, true, 2),
            "net_virtio_user1,path=/t/a.sock,queues=2,queue_size=8192,server=1"
        );
        assert_eq!(
            Link::Memif.gen_devargs(1, p, false, 2),
            "net_memif1,role=client,socket=/t/a.sock,socket-abstract=no,rsize=13"
        );
    }

    #[test]
    fn reads_pktgen_reports() {
        // The harness reads what weir-pktgen writes.
        let s = parse_scenario("pod2pod", 64, 1000).unwrap();
        let r = crate::report::RunReport {
            tool: "weir-pktgen",
            label: "x".into(),
            scenario_label: s.label(),
            scenario: s,
            mode: "ndr".into(),
            trial_seconds: 1.0,
            loss_threshold: 0.001,
            tsc_hz: 1,
            ports: vec![],
            tx_port: 0,
            rx_port: 1,
            priming: None,
            trials: vec![],
            max: None,
            ndr: None,
            latency_load: 0.5,
            at_load: None,
            notes: vec!["a".into()],
        };
        let back: PktgenOutput = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.notes, vec!["a".to_string()]);
        assert_eq!(ratio(Some(1.0), Some(4.0)), Some(0.25));
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
    }

    #[test]
    fn contention_sampling() {
        let mut c = Contention::default();
        c.sample();
        c.sample();
        assert_eq!(c.samples, 2);
        assert!(c.busy <= 2);
        assert!(c.describe().contains("of 2 samples"));
        assert_eq!(task_stat("/proc/thread-self/stat").map(|t| t.1), Some('R'));
        assert_eq!(task_stat("/nonexistent"), None);
    }

    #[test]
    fn io_mode_only_on_pod2pod() {
        assert!(DutKind::WeirIo.skips(&parse_scenario("pod2pod", 64, 1000).unwrap()).is_none());
        assert!(DutKind::WeirIo.skips(&parse_scenario("nodeport", 64, 1000).unwrap()).is_some());
        for d in DutKind::ALL {
            assert_eq!(DutKind::parse(d.name()), Some(d));
        }
    }
}
