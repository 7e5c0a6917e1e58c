//! weir-bench-harness: every scenario against dpdk-testpmd, weir-dataplane
//! and OVS-DPDK over the same ports, one generator (weir-pktgen), one run;
//! prints every figure, the ratios weir/testpmd and weir/OVS, and the
//! issue's goals against what was measured.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use clap::{Parser, ValueEnum};
use serde::Serialize;

use weir_perf::harness::{self, ratio, DutKind, Link, Outcome, ScenarioResult, Setup};
use weir_perf::proc::{self, TempDir};
use weir_perf::report::{self, us, Series};
use weir_perf::traffic::Kind;

/// Runs each scenario against each device under test (DUT), one pair at a
/// time: the DUT's forwarding thread on --dut-core, weir-pktgen on
/// --gen-core, connected by vhost-user/virtio-user (or memif). For each pair
/// weir-pktgen searches the no-drop rate (NDR: the highest offered rate that
/// loses at most --loss percent) and measures latency at --latency-load of
/// it. Prints a table of every figure with the ratios weir/testpmd and
/// weir/OVS, then the goals against the figures of this run.
///
/// DUTs: testpmd (dpdk-testpmd io forwarding: the port's ceiling), weir-io
/// (weir-dataplane in io mode: its bare rx->tx path, pod2pod only), weir
/// (weir-dataplane doing the scenario's work), ovs (OVS-DPDK doing the same
/// work with OpenFlow rules, conntrack and a VXLAN port). A DUT that cannot
/// run here is shown as "unavailable (reason)", never with a figure.
///
/// A benchmark, not a test: it judges nothing. Needs root, hugepages, and the
/// two cores otherwise idle.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    long_about,
    after_help = "\
Scenarios are kind[:N], N the flows, or for acl and acl-new the ACL rules: pod2pod,
vxlan-decap, clusterip-est:10000, clusterip-est:1000000, clusterip-new, nodeport,
acl:1000, acl-new:1000, full:10000, full:1000000, full-new. The full scenarios (decap,
flow, ACL, DNAT to one of node3's backends, SNAT to the node IP, encap) hold --acl-rules
rules as each backend sees them (every backend holds the same ingress list); their flows
are at most half the backends' SNAT ports (perf/README.md).

Example:
  cargo build --release -p weir-dataplane -p weir-perf
  target/release/weir-bench-harness --out target/perf

Exit status: 0 when every pair ran or was shown unavailable/skipped, 1 when a run
failed, 2 on bad options."
)]
struct Args {
    /// Scenarios, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "pod2pod,vxlan-decap,clusterip-est:10000,clusterip-est:1000000,clusterip-new,nodeport,\
                         acl:1000,acl-new:1000,full:10000,full:1000000,full-new"
    )]
    scenarios: Vec<String>,
    /// ACL rules of the full scenarios, and of acl and acl-new given without a count (1..=16384).
    #[arg(long, value_name = "N", default_value_t = weir_perf::policy::DEFAULT_RULES)]
    acl_rules: u32,
    /// DUTs, comma-separated: testpmd, weir-io, weir, ovs.
    #[arg(long, value_delimiter = ',', default_value = "testpmd,weir-io,weir,ovs")]
    duts: Vec<String>,
    /// Frame size on the wire, FCS included (raised to a scenario's minimum).
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    frame_size: usize,
    /// How the generator reaches the DUT.
    #[arg(long, value_enum, default_value_t = LinkArg::Vhost)]
    link: LinkArg,
    /// Seconds per trial.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    trial: f64,
    /// Seconds per trial of clusterip-new (every trial fills flow tables).
    #[arg(long, value_name = "SECS", default_value_t = 0.5)]
    new_flow_trial: f64,
    /// Loss a trial may have and pass, percent. The default tolerates the
    /// loss a few-millisecond stall of a shared vCPU causes (see the stall probe).
    #[arg(long, value_name = "PCT", default_value_t = 0.5)]
    loss: f64,
    /// The search stops when its bracket is narrower than this, percent of the rate.
    #[arg(long, value_name = "PCT", default_value_t = 2.0)]
    resolution: f64,
    /// Trials per search at most.
    #[arg(long, value_name = "N", default_value_t = 10)]
    max_trials: u32,
    /// Trials at one rate before the search counts it as failed.
    #[arg(long, value_name = "N", default_value_t = 2)]
    attempts: u32,
    /// The latency trial's rate, as a share of each DUT's no-drop rate.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.5)]
    latency_load: f64,
    /// Core of the generator (and of the DUTs' idle main threads).
    #[arg(long, value_name = "CPU", default_value_t = 0)]
    gen_core: usize,
    /// Core of the DUT's forwarding thread.
    #[arg(long, value_name = "CPU", default_value_t = 1)]
    dut_core: usize,
    /// weir-dataplane [default: next to this executable].
    #[arg(long, value_name = "PATH")]
    weir: Option<PathBuf>,
    /// weir-pktgen [default: next to this executable].
    #[arg(long, value_name = "PATH")]
    pktgen: Option<PathBuf>,
    #[arg(long, value_name = "PATH", default_value = "dpdk-testpmd")]
    testpmd: PathBuf,
    /// The DPDK build of ovs-vswitchd.
    #[arg(long, value_name = "PATH", default_value = harness::ovs::VSWITCHD_DPDK)]
    ovs_vswitchd: PathBuf,
    /// Write results.json and one SVG per scenario into DIR.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Skip the instructions-per-packet figures (weir-bench-pipeline under callgrind).
    #[arg(long)]
    no_instructions: bool,
    /// Only the final table (no progress, no per-run lines).
    #[arg(long)]
    quiet: bool,
    /// Seconds of the stall probe run on both cores before the scenarios (0 skips it).
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    probe: f64,
    /// Seconds of the stall probe before each pair (its "stall" column; 0 skips it).
    #[arg(long, value_name = "SECS", default_value_t = 0.5)]
    pair_probe: f64,
    /// (internal) busy-loop for SECS on the calling CPU and print the stalls seen, as JSON.
    #[arg(long, hide = true, value_name = "SECS")]
    stall_probe: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LinkArg {
    Vhost,
    Memif,
}

#[derive(Serialize)]
struct Results<'a> {
    tool: &'static str,
    machine: Machine,
    stalls: &'a [(usize, Option<Stalls>)],
    setup: &'a Setup,
    scenarios: &'a [ScenarioResult],
    goals: Vec<String>,
    instructions: Option<String>,
}

#[derive(Serialize, Clone)]
struct Machine {
    cpu: String,
    cpus: usize,
    kernel: String,
    dpdk: String,
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let dpdk = Command::new("pkg-config")
        .args(["--modversion", "libdpdk"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    Machine { cpu, cpus: std::thread::available_parallelism().map_or(0, |n| n.get()), kernel, dpdk }
}

/// What a busy loop on one CPU saw: gaps between consecutive clock reads
/// longer than 100 us are time the CPU was taken away (the hypervisor, the
/// kernel, another task).
#[derive(Serialize, serde::Deserialize, Clone, Copy, Debug)]
struct Stalls {
    seconds: f64,
    over_100us: u64,
    over_1ms: u64,
    max_ms: f64,
    lost_ms: f64,
}

fn stall_probe(secs: f64) -> Stalls {
    let start = std::time::Instant::now();
    let mut last = start;
    let mut s = Stalls { seconds: secs, over_100us: 0, over_1ms: 0, max_ms: 0.0, lost_ms: 0.0 };
    loop {
        let now = std::time::Instant::now();
        let gap = (now - last).as_secs_f64() * 1e3;
        last = now;
        if gap > 0.1 {
            s.over_100us += 1;
            s.lost_ms += gap;
            s.over_1ms += u64::from(gap > 1.0);
        }
        s.max_ms = s.max_ms.max(gap);
        if (now - start).as_secs_f64() >= secs {
            return s;
        }
    }
}

/// Runs the stall probe on each CPU at once (pinned with taskset).
fn probe_cpus(cpus: &[usize], secs: f64) -> Vec<(usize, Option<Stalls>)> {
    let me = next_to_me("weir-bench-harness");
    let me = std::env::current_exe().unwrap_or(me);
    let children: Vec<_> = cpus
        .iter()
        .map(|c| {
            let child = Command::new("taskset")
                .args(["-c", &c.to_string()])
                .arg(&me)
                .arg(format!("--stall-probe={secs}"))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn();
            (*c, child)
        })
        .collect();
    children
        .into_iter()
        .map(|(c, child)| {
            let st = child
                .ok()
                .and_then(|ch| ch.wait_with_output().ok())
                .and_then(|o| serde_json::from_slice::<Stalls>(&o.stdout).ok());
            (c, st)
        })
        .collect()
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(secs) = args.stall_probe {
        println!("{}", serde_json::to_string(&stall_probe(secs.clamp(0.1, 60.0))).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("weir-bench-harness: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn next_to_me(name: &str) -> PathBuf {
    std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join(name))).unwrap_or_else(|| PathBuf::from(name))
}

fn run(args: Args) -> Result<bool, String> {
    let scenarios = args
        .scenarios
        .iter()
        .map(|s| harness::parse_scenario(s.trim(), args.frame_size, args.acl_rules))
        .collect::<Result<Vec<_>, _>>()?;
    let duts = args
        .duts
        .iter()
        .map(|d| DutKind::parse(d.trim()).ok_or_else(|| format!("unknown DUT {d:?}: testpmd, weir-io, weir, ovs")))
        .collect::<Result<Vec<_>, _>>()?;
    if !(args.trial > 0.0 && args.new_flow_trial > 0.0) {
        return Err("trial lengths must be positive".into());
    }
    proc::install_signal_handlers()?;
    let setup = Setup {
        link: match args.link {
            LinkArg::Vhost => Link::Vhost,
            LinkArg::Memif => Link::Memif,
        },
        main_core: args.gen_core,
        gen_core: args.gen_core,
        dut_core: args.dut_core,
        dut_memory_mb: 1024,
        gen_memory_mb: 512,
        burst: 32,
        weir: args.weir.clone().unwrap_or_else(|| next_to_me("weir-dataplane")),
        testpmd: args.testpmd.clone(),
        pktgen: args.pktgen.clone().unwrap_or_else(|| next_to_me("weir-pktgen")),
        ovs_vswitchd: args.ovs_vswitchd.clone(),
        trial: args.trial,
        new_flow_trial: args.new_flow_trial,
        loss_pct: args.loss,
        resolution_pct: args.resolution,
        max_trials: args.max_trials,
        attempts: args.attempts.max(1),
        latency_load: args.latency_load,
        quiet: args.quiet,
    };
    let dir = TempDir::new("weir-bench-harness")?;
    let machine = machine();
    let say = |s: String| {
        if !args.quiet {
            eprintln!("{s}");
        }
    };
    say(format!(
        "weir-bench-harness: {} scenario(s) x {} DUT(s) over {}, generator on CPU {}, DUT on CPU {}",
        scenarios.len(),
        duts.len(),
        setup.link.name(),
        setup.gen_core,
        setup.dut_core
    ));
    let stalls = if args.probe > 0.0 {
        say(format!("stall probe: {:.1} s of busy loop on CPUs {} and {}", args.probe, setup.gen_core, setup.dut_core));
        probe_cpus(&[setup.gen_core, setup.dut_core], args.probe)
    } else {
        Vec::new()
    };
    let mut results: Vec<ScenarioResult> = Vec::new();
    let mut ovs_unavailable: Option<String> = None;
    let mut all_ok = true;
    for (i, s) in scenarios.iter().enumerate() {
        let mut r =
            ScenarioResult { scenario: s.clone(), label: s.label(), results: Vec::new(), stalls_ms_per_s: Vec::new() };
        for (j, d) in duts.iter().enumerate() {
            proc::check_interrupted()?;
            say(format!(
                "\n== {} | {} ({}/{}, {}/{})",
                s.label(),
                d.label(),
                i + 1,
                scenarios.len(),
                j + 1,
                duts.len()
            ));
            let skip = d.skips(s).is_some() || (*d == DutKind::Ovs && ovs_unavailable.is_some());
            if args.pair_probe > 0.0 && !skip {
                // How much the machine stalls right now, before this pair.
                let st = probe_cpus(&[setup.gen_core, setup.dut_core], args.pair_probe);
                let per_s: f64 = st.iter().filter_map(|(_, x)| x.map(|x| x.lost_ms / x.seconds)).sum();
                r.stalls_ms_per_s.push((*d, per_s));
            }
            let out = match (&ovs_unavailable, d) {
                (Some(reason), DutKind::Ovs) => Outcome::Unavailable { reason: reason.clone() },
                _ => harness::run_one(*d, s, &setup, dir.path(), &format!("s{i}{}", d.name())),
            };
            match &out {
                Outcome::Measured { report, dut_notes, contention } => {
                    let n = report.ndr.as_ref().map_or("none".into(), |n| format!("{:.3} Mpps", n.rx_mpps));
                    say(format!("   NDR {n}"));
                    for note in report.notes.iter().chain(dut_notes) {
                        say(format!("   {note}"));
                    }
                    say(format!("   {}", contention.describe()));
                }
                Outcome::Failed { error } => {
                    all_ok = false;
                    say(format!("   FAILED: {error}"));
                }
                Outcome::Unavailable { reason } => {
                    if *d == DutKind::Ovs {
                        ovs_unavailable = Some(reason.clone());
                    }
                    say(format!("   unavailable: {reason}"));
                }
                Outcome::Skipped { reason } => say(format!("   skipped: {reason}")),
            }
            r.results.push((*d, out));
        }
        results.push(r);
    }
    proc::check_interrupted()?;
    let instructions = if args.no_instructions { None } else { Some(instructions_per_packet(args.acl_rules)) };
    let goals = goals(&results, &setup, instructions.as_deref());
    let table = summary(&results, &setup, &machine, &stalls);
    println!("\n{table}");
    println!("goals (issue 8), from the figures above:");
    for g in &goals {
        println!("  {g}");
    }
    if let Some(i) = &instructions {
        println!("\ninstructions per packet, pure pipeline (weir-bench-pipeline, callgrind):\n{i}");
    }
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
        let res = Results {
            tool: "weir-bench-harness",
            machine: machine.clone(),
            stalls: &stalls,
            setup: &setup,
            scenarios: &results,
            goals: goals.clone(),
            instructions: instructions.clone(),
        };
        let text = serde_json::to_string_pretty(&res).map_err(|e| format!("cannot encode the results: {e}"))?;
        let path = out.join("results.json");
        std::fs::write(&path, text + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        std::fs::write(out.join("summary.txt"), format!("{table}\n{}\n", goals.join("\n")))
            .map_err(|e| format!("cannot write summary.txt: {e}"))?;
        for r in &results {
            let series: Vec<Series> = r
                .results
                .iter()
                .filter_map(|(d, o)| {
                    o.report().map(|rep| Series {
                        name: d.label(),
                        trials: &rep.trials,
                        ndr_mpps: rep.ndr.as_ref().map(|n| n.rx_mpps),
                    })
                })
                .collect();
            let name = format!("{}-{}-{}B.svg", r.scenario.kind, r.scenario.flows, r.scenario.frame_size);
            let svg = report::rate_plot(&r.label, &series);
            std::fs::write(out.join(&name), svg).map_err(|e| format!("cannot write {name}: {e}"))?;
        }
        eprintln!("weir-bench-harness: wrote {}/results.json, summary.txt and one SVG per scenario", out.display());
    }
    Ok(all_ok)
}

/// The telling line of an error: the last one that says "error", else the first.
fn brief(error: &str) -> String {
    let line = error
        .lines()
        .rev()
        .find(|l| l.contains("error"))
        .or_else(|| error.lines().next())
        .unwrap_or("")
        .trim_start_matches([' ', '|'])
        .trim();
    line.chars().take(160).collect()
}

fn mpps(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

fn times(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}x"))
}

/// The table of every figure.
fn summary(results: &[ScenarioResult], setup: &Setup, m: &Machine, stalls: &[(usize, Option<Stalls>)]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "weir-bench-harness: {} ports, generator CPU {}, DUT CPU {}; {} x {} CPUs, kernel {}, DPDK {}",
        setup.link.name(),
        setup.gen_core,
        setup.dut_core,
        m.cpu,
        m.cpus,
        m.kernel,
        m.dpdk
    );
    for (cpu, st) in stalls {
        let _ = match st {
            Some(x) => writeln!(
                s,
                "stalls of CPU {cpu} (busy loop, {:.1} s): {} over 100 us, {} over 1 ms, longest {:.2} ms, {:.1} ms lost per second",
                x.seconds,
                x.over_100us,
                x.over_1ms,
                x.max_ms,
                x.lost_ms / x.seconds
            ),
            None => writeln!(s, "stalls of CPU {cpu}: probe failed (taskset missing?)"),
        };
    }
    let _ = writeln!(
        s,
        "NDR: highest offered rate with loss <= {} % ({} s trials); max: forwarded at the highest offered rate; latency at {:.0} % of each DUT's own NDR; stalls: ms per second both CPUs were taken away just before the run",
        setup.loss_pct,
        setup.trial,
        setup.latency_load * 100.0
    );
    let _ = writeln!(
        s,
        "\n{:<44} {:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "scenario", "DUT", "NDR Mpps", "max Mpps", "p50 us", "p99 us", "p99.9 us", "stalls"
    );
    let mut any_busy = false;
    let mut any_bound = false;
    for r in results {
        let mut first = true;
        for (d, o) in &r.results {
            let name = if first { r.label.as_str() } else { "" };
            first = false;
            let line = match o {
                Outcome::Measured { report, contention, .. } => {
                    let lat = report.at_load.as_ref().and_then(|a| a.latency);
                    let l = |f: fn(&weir_perf::search::Latency) -> u64| lat.map_or("-".into(), |l| us(f(&l)));
                    let busy = contention.share() > BUSY;
                    any_busy |= busy;
                    let ndr = if o.generator_bound() {
                        any_bound = true;
                        format!(">={}", mpps(o.ndr_mpps()))
                    } else {
                        mpps(o.ndr_mpps())
                    };
                    format!(
                        "{:>9} {:>9} {:>9} {:>9} {:>9} {:>7}{}",
                        ndr,
                        mpps(o.max_mpps()),
                        l(|l| l.p50_ns),
                        l(|l| l.p99_ns),
                        l(|l| l.p999_ns),
                        r.stalls(*d).map_or("-".into(), |v| format!("{v:.1}")),
                        if busy {
                            format!("  * others ran {:.0} %", contention.share() * 100.0)
                        } else {
                            String::new()
                        }
                    )
                }
                Outcome::Failed { error } => format!("failed: {}", brief(error)),
                Outcome::Unavailable { reason } => format!("unavailable ({})", reason.lines().next().unwrap_or("")),
                Outcome::Skipped { reason } => format!("skipped ({reason})"),
            };
            let _ = writeln!(s, "{name:<44} {:<16} {line}", d.label());
        }
        let both = |a: Option<&Outcome>, b: Option<&Outcome>| {
            format!(
                "NDR {}, max {}",
                times(ratio(a.and_then(Outcome::ndr_mpps), b.and_then(Outcome::ndr_mpps))),
                times(ratio(a.and_then(Outcome::max_mpps), b.and_then(Outcome::max_mpps)))
            )
        };
        let w = r.get(DutKind::Weir);
        let vs_ovs = match r.get(DutKind::Ovs) {
            Some(Outcome::Unavailable { reason }) => {
                format!("OVS-DPDK: unavailable ({})", reason.lines().next().unwrap_or(""))
            }
            o => format!("weir/OVS {}", both(w, o)),
        };
        let _ = writeln!(s, "{:<44} weir/testpmd {}   {vs_ovs}", "", both(w, r.get(DutKind::Testpmd)));
    }
    if any_bound {
        let _ = writeln!(
            s,
            ">= the first trial, as fast as the generator could go, passed: the generator's core was the limit, not the DUT"
        );
    }
    if any_busy {
        let _ = writeln!(
            s,
            "* other processes were running during more than {:.0} % of that run's samples: its figures are low by an unknown amount",
            BUSY * 100.0
        );
    }
    s
}

/// Share of samples with other processes running above which a figure is marked.
const BUSY: f64 = 0.05;

/// NDR of a DUT on the first scenario of `kind` (with `flows`, if given).
fn ndr_of(results: &[ScenarioResult], kind: Kind, flows: Option<u32>, d: DutKind) -> Option<f64> {
    results
        .iter()
        .find(|r| r.scenario.kind == kind && flows.is_none_or(|f| r.scenario.flows == f))
        .and_then(|r| r.get(d))
        .and_then(Outcome::ndr_mpps)
}

fn verdict(v: Option<f64>, goal: f64, more_is_better: bool) -> String {
    match v {
        None => "not measured in this run".into(),
        Some(v) if (more_is_better && v >= goal) || (!more_is_better && v <= goal) => format!("{v:.2}: met"),
        Some(v) => format!("{v:.2}: not met"),
    }
}

/// The goals against this run's figures.
fn goals(results: &[ScenarioResult], setup: &Setup, instructions: Option<&str>) -> Vec<String> {
    let mut g = Vec::new();
    let bare = ndr_of(results, Kind::Pod2Pod, None, DutKind::WeirIo);
    let tp = ndr_of(results, Kind::Pod2Pod, None, DutKind::Testpmd);
    let bound = |d| {
        results
            .iter()
            .find(|r| r.scenario.kind == Kind::Pod2Pod)
            .and_then(|r| r.get(d))
            .is_some_and(Outcome::generator_bound)
    };
    let note = if bound(DutKind::WeirIo) && bound(DutKind::Testpmd) {
        " (both at the generator's limit: a lower bound of weir's, not a comparison)"
    } else {
        ""
    };
    g.push(format!(
        "bare rx->tx >= 0.9x testpmd (weir io / testpmd, pod2pod NDR): {}{note}",
        verdict(ratio(bare, tp), 0.9, true)
    ));
    for (flows, goal) in [(10_000, 0.4), (1_000_000, 0.3)] {
        // The full path when it was run, else the nearest (no decap, ACL or encap).
        let (est, what) = match ndr_of(results, Kind::Full, Some(flows), DutKind::Weir) {
            Some(v) => (Some(v), "full / weir io: decap, flow hit, ACL verdict, DNAT, SNAT, encap"),
            None => (
                ndr_of(results, Kind::ClusteripEst, Some(flows), DutKind::Weir),
                "clusterip-est / weir io: flow hit + DNAT only, as full has no figure in this run",
            ),
        };
        g.push(format!(
            "established path >= {goal}x bare at {flows} flows ({what}): {}",
            verdict(ratio(est, bare), goal, true)
        ));
    }
    let mut ovs = Vec::new();
    for r in results {
        match r.get(DutKind::Ovs) {
            Some(Outcome::Unavailable { reason }) => {
                ovs = vec![format!("OVS-DPDK: unavailable ({})", reason.lines().next().unwrap_or(""))];
                break;
            }
            Some(o) => {
                let w = r.get(DutKind::Weir).and_then(Outcome::ndr_mpps);
                if let Some(x) = ratio(w, o.ndr_mpps()) {
                    ovs.push(format!("{} {x:.2}x", short_name(&r.scenario)));
                }
            }
            None => {}
        }
    }
    g.push(format!(
        ">= 3x OVS-DPDK on the same work (weir/OVS NDR): {}",
        if ovs.is_empty() { "not measured in this run".into() } else { ovs.join(", ") }
    ));
    for (new_kind, est_kind) in [(Kind::ClusteripNew, Kind::ClusteripEst), (Kind::FullNew, Kind::Full)] {
        let new = ndr_of(results, new_kind, None, DutKind::Weir);
        let est = ndr_of(results, est_kind, Some(10_000), DutKind::Weir)
            .or_else(|| ndr_of(results, est_kind, None, DutKind::Weir));
        g.push(format!(
            "new flows >= 0.2x established ({new_kind} / {est_kind} NDR): {}",
            verdict(ratio(new, est), 0.2, true)
        ));
    }
    let p = |d| {
        results
            .iter()
            .find(|r| r.scenario.kind == Kind::Pod2Pod)
            .and_then(|r| r.get(d))
            .and_then(Outcome::p99_at_load_ns)
            .map(|n| n as f64)
    };
    g.push(format!(
        "p99 latency <= 1.5x testpmd at {:.0} % load (pod2pod, weir / testpmd p99, each at its own NDR share): {}",
        setup.latency_load * 100.0,
        verdict(ratio(p(DutKind::Weir), p(DutKind::Testpmd)), 1.5, false)
    ));
    let full = instructions.and_then(|t| net_instructions(t, FULL_EST_ROW));
    g.push(format!(
        "<= 300 instructions per packet on the full established path (weir-bench-pipeline, {FULL_EST_ROW:?}, net of \
         the copy): {}",
        match (full, instructions) {
            (Some(v), _) => verdict(Some(v), 300.0, false),
            (None, None) => "not measured in this run".into(),
            (None, Some(_)) => "no figure in the instructions table".into(),
        }
    ));
    g
}

/// weir-bench-pipeline's row of the full established path.
const FULL_EST_ROW: &str = "full est 10k";

/// The "net instr" column of a row of weir-bench-pipeline's table.
fn net_instructions(table: &str, row: &str) -> Option<f64> {
    table
        .lines()
        .find(|l| l.starts_with(row) && l[row.len()..].starts_with("  "))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

/// `clusterip-est:10000`, `acl`: a scenario in a list of figures.
fn short_name(s: &weir_perf::traffic::Scenario) -> String {
    if s.kind.needs_priming() {
        format!("{}:{}", s.kind, s.flows)
    } else {
        s.kind.to_string()
    }
}

/// weir-bench-pipeline's table (it runs callgrind itself), or why not.
fn instructions_per_packet(acl_rules: u32) -> String {
    let bin = next_to_me("weir-bench-pipeline");
    let rules = acl_rules.to_string();
    match Command::new(&bin).args(["--packets", "2000000", "--runs", "1", "--acl-rules", &rules]).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => format!("weir-bench-pipeline failed: {}", String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => format!("cannot run {}: {e}", bin.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_full_path_row() {
        let table = "\
scenario                   Mpps     ns/pkt      instr/pkt    net instr
copy (baseline)          254.79       3.92           47.0            -
full est 10k               7.82     127.80         2338.4       2291.4
full est 1M                3.00     333.63              -            -
";
        assert_eq!(net_instructions(table, FULL_EST_ROW), Some(2291.4));
        assert_eq!(net_instructions(table, "full est 1M"), None, "not counted");
        assert_eq!(net_instructions(table, "full est"), None, "a row's name, not a prefix of one");
        assert_eq!(net_instructions("weir-bench-pipeline failed: x", FULL_EST_ROW), None);
    }
}
