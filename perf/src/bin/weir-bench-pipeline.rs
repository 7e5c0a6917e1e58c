//! weir-bench-pipeline: the packet pipeline alone (no DPDK, no NIC), one core.
//! For each scenario it prints packets per second and, under callgrind,
//! instructions per packet — a figure that does not move with machine noise,
//! so changes to the pipeline can be compared exactly.

use std::process::{Command, ExitCode};

use clap::Parser;
use weir_perf::scenario::{self, Scenario};

/// Pipeline throughput and instructions per packet for pod forwarding,
/// forward+VXLAN encapsulation, VXLAN decapsulation+forward, ClusterIP
/// NAT (established flows over 10k and 1M flows, and new flows), pod to
/// pod with N ACL rules (established flows, new flows, denied), and the
/// full path: VXLAN in, flow, ACL, DNAT and SNAT, VXLAN out (established
/// over 10k and 1M flows, and new flows).
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_help = "\
Instructions per packet come from valgrind's callgrind: the program runs
itself twice per scenario (N and N + 10000 packets) and divides the
difference in instructions by 10000, so set-up costs cancel out. The
copy baseline is the harness's own per-packet copy of the template;
\"net\" is the scenario minus that baseline.

Scenarios (--scenarios): copy, forward, encap, decap, est10k, est1m, new,
acl-est, acl-new, acl-deny, full-est10k, full-est1m, full-new.

Exit status: 0 with a table, 1 when a scenario's packets did not take their
path or valgrind failed, 2 on bad options."
)]
struct Args {
    /// Packets per timed run.
    #[arg(long, default_value_t = 20_000_000)]
    packets: u64,
    /// Timed runs per scenario; the best is reported.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Skip the callgrind instruction counts.
    #[arg(long)]
    no_instructions: bool,
    /// ACL rules on the node of the acl and full scenarios (1..=16384).
    #[arg(long, value_name = "N", default_value_t = weir_perf::policy::DEFAULT_RULES)]
    acl_rules: u32,
    /// Only these scenarios, comma-separated (the copy baseline always runs) [default: all].
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    scenarios: Vec<String>,
    /// (internal) run N packets of one scenario and exit: what callgrind measures.
    #[arg(long, hide = true, num_args = 2, value_names = ["SCENARIO", "N"])]
    just: Option<Vec<String>>,
}

fn instructions(s: Scenario, n: u64) -> Result<u64, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(&me)
        .args(["--just", &s.cli_name(), &n.to_string()])
        .output()
        .map_err(|e| format!("cannot run valgrind: {e} (apt-get install valgrind)"))?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("valgrind failed: {err}"));
    }
    err.lines()
        .find_map(|l| l.split("Collected :").nth(1))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no 'Collected' line in valgrind's output: {err}"))
}

/// The short name `--scenarios` takes.
fn key(s: Scenario) -> &'static str {
    match s {
        Scenario::Copy => "copy",
        Scenario::Forward => "forward",
        Scenario::Encap => "encap",
        Scenario::Decap => "decap",
        Scenario::Established(1_000_000) => "est1m",
        Scenario::Established(_) => "est10k",
        Scenario::NewFlow => "new",
        Scenario::Acl { .. } => "acl-est",
        Scenario::AclNew(_) => "acl-new",
        Scenario::AclDeny(_) => "acl-deny",
        Scenario::Full { flows: 1_000_000, .. } => "full-est1m",
        Scenario::Full { .. } => "full-est10k",
        Scenario::FullNew(_) => "full-new",
    }
}

/// The scenarios to run, or what is wrong with the options.
fn chosen(args: &Args) -> Result<Vec<Scenario>, String> {
    if !(1..=weir_perf::policy::MAX_RULES).contains(&args.acl_rules) {
        return Err(format!("--acl-rules {}: want 1..={}", args.acl_rules, weir_perf::policy::MAX_RULES));
    }
    if args.packets == 0 || args.runs == 0 {
        return Err("--packets and --runs: want at least 1".into());
    }
    let all = Scenario::all(args.acl_rules);
    for name in &args.scenarios {
        if !all.iter().any(|s| key(*s) == name.trim()) {
            let names: Vec<&str> = all.iter().map(|s| key(*s)).collect();
            return Err(format!("unknown scenario {name:?}; one of {}", names.join(", ")));
        }
    }
    let wanted = |s: &Scenario| {
        *s == Scenario::Copy || args.scenarios.is_empty() || args.scenarios.iter().any(|n| n.trim() == key(*s))
    };
    Ok(all.into_iter().filter(wanted).collect())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(just) = &args.just {
        let (Some(s), Ok(n)) = (Scenario::parse(&just[0]), just[1].parse::<u64>()) else {
            eprintln!("weir-bench-pipeline: --just SCENARIO N");
            return ExitCode::from(2);
        };
        let t = match scenario::tables(s) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("weir-bench-pipeline: {}: {e}", s.name());
                return ExitCode::from(1);
            }
        };
        let ok = scenario::run(&t, s, n);
        return if ok == n { ExitCode::SUCCESS } else { ExitCode::from(1) };
    }
    let scenarios = match chosen(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("weir-bench-pipeline: {e}");
            return ExitCode::from(2);
        }
    };
    println!("weir-bench-pipeline: {} packets per run, best of {} runs, one core", args.packets, args.runs);
    if let Some(Some(Ok(h))) =
        scenarios.iter().find_map(|s| matches!(s, Scenario::Acl { .. }).then(|| s.harness_scenario()))
    {
        if let Some(Ok(r)) = h.rule_set() {
            println!(
                "acl: {} ACL rules on the node, {} on the flows' path (pod-a's egress list, then pod-b's ingress list, \
                 each allowing at its last rule)",
                r.len(),
                r.on_path()
            );
        }
    }
    if let Some(Some(Ok(h))) =
        scenarios.iter().find_map(|s| matches!(s, Scenario::Full { .. }).then(|| s.harness_scenario()))
    {
        if let Some(Ok(r)) = h.rule_set() {
            println!(
                "full: {} ACL rules per backend, {} on the node ({} backends on node3, each with the same ingress \
                 list), {} on the flows' path (the backend's ingress list, allowing at its last rule); the client \
                 becomes the node IP and a port of {}-{}",
                r.per_pod_len(),
                r.len(),
                weir_perf::traffic::layout::FULL_BACKENDS,
                r.on_path(),
                weir_perf::traffic::layout::SNAT_PORT_MIN,
                weir_perf::traffic::layout::SNAT_PORT_MAX
            );
        }
    }
    println!("{:<20} {:>10} {:>10} {:>14} {:>12}", "scenario", "Mpps", "ns/pkt", "instr/pkt", "net instr");
    let mut baseline = None;
    let mut uncounted = Vec::new();
    for s in scenarios {
        let t = match scenario::tables(s) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("weir-bench-pipeline: {}: {e}", s.name());
                return ExitCode::from(1);
            }
        };
        let packets = args.packets.min(scenario::max_packets(s));
        let mut best = f64::MAX;
        for _ in 0..args.runs {
            // Timed without the set-up (flow table, established flows).
            let (ok, dt) = scenario::run_timed(&t, s, packets);
            let dt = dt.max(1e-9);
            if ok != packets {
                eprintln!("weir-bench-pipeline: {}: {} of {} packets got the expected action", s.name(), ok, packets);
                return ExitCode::from(1);
            }
            best = best.min(dt);
        }
        let ipp = if args.no_instructions {
            None
        } else if !countable(s) {
            uncounted.push(s);
            None
        } else {
            match (instructions(s, 1000), instructions(s, 11_000)) {
                (Ok(a), Ok(b)) => Some(b.saturating_sub(a) as f64 / 10_000.0),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("weir-bench-pipeline: {e}");
                    return ExitCode::from(1);
                }
            }
        };
        if s == Scenario::Copy {
            baseline = ipp;
        }
        let net = match (ipp, baseline) {
            (Some(i), Some(b)) if s != Scenario::Copy => format!("{:.1}", i - b),
            _ => "-".into(),
        };
        let ipp_s = ipp.map_or("-".into(), |i| format!("{i:.1}"));
        let mpps = packets as f64 / best / 1e6;
        println!("{:<20} {:>10.2} {:>10.2} {:>14} {:>12}", s.name(), mpps, best * 1e9 / packets as f64, ipp_s, net);
    }
    for s in uncounted {
        println!(
            "{}: instructions not counted: its flows' first packets are each classified against the ACL while \
             they are set up, too long under callgrind; per packet its path is that of the 10k row",
            s.name()
        );
    }
    ExitCode::SUCCESS
}

/// Whether callgrind counts a scenario in reasonable time: not the ACL and
/// full-path scenarios over more than 100k established flows (1M first
/// packets through hundreds of rules each are tens of billions of
/// instructions of set-up under callgrind; the per-packet path is the same
/// as over 10k flows).
fn countable(s: Scenario) -> bool {
    !matches!(s, Scenario::Acl { flows, .. } | Scenario::Full { flows, .. } if flows > 100_000)
}
