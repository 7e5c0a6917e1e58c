//! weir-bench-pipeline: the packet pipeline alone (no DPDK, no NIC), one core.
//! For each scenario it prints packets per second and, under callgrind,
//! instructions per packet — a figure that does not move with machine noise,
//! so changes to the pipeline can be compared exactly.

use std::process::{Command, ExitCode};
use std::time::Instant;

use clap::Parser;
use weir_perf::scenario::{self, Scenario};

/// Pipeline throughput and instructions per packet for pod forwarding,
/// forward+VXLAN encapsulation, VXLAN decapsulation+forward, and ClusterIP
/// NAT (established flows over 10k and 1M flows, and new flows).
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_help = "\
Instructions per packet come from valgrind's callgrind: the program runs
itself twice per scenario (N and N + 10000 packets) and divides the
difference in instructions by 10000, so set-up costs cancel out. The
copy baseline is the harness's own per-packet copy of the template;
\"net\" is the scenario minus that baseline."
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
    /// (internal) run N packets of one scenario and exit: what callgrind measures.
    #[arg(long, hide = true, num_args = 2, value_names = ["SCENARIO", "N"])]
    just: Option<Vec<String>>,
}

fn instructions(s: Scenario, n: u64) -> Result<u64, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(&me)
        .args(["--just", s.cli_name(), &n.to_string()])
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

fn main() -> ExitCode {
    let args = Args::parse();
    let t = scenario::tables();
    if let Some(just) = &args.just {
        let (Some(s), Ok(n)) = (Scenario::parse(&just[0]), just[1].parse::<u64>()) else {
            eprintln!("weir-bench-pipeline: --just SCENARIO N");
            return ExitCode::from(2);
        };
        let ok = scenario::run(&t, s, n);
        return if ok == n { ExitCode::SUCCESS } else { ExitCode::from(1) };
    }
    println!("weir-bench-pipeline: {} packets per run, best of {} runs, one core", args.packets, args.runs);
    println!("{:<20} {:>10} {:>10} {:>14} {:>12}", "scenario", "Mpps", "ns/pkt", "instr/pkt", "net instr");
    let mut baseline = None;
    for s in [
        Scenario::Copy,
        Scenario::Forward,
        Scenario::Encap,
        Scenario::Decap,
        Scenario::Established(10_000),
        Scenario::Established(1_000_000),
        Scenario::NewFlow,
    ] {
        let packets = args.packets.min(scenario::max_packets(s));
        let mut best = f64::MAX;
        for _ in 0..args.runs {
            // The ClusterIP scenarios set up their flow table first: time
            // that alone (a run of 0 packets) and leave it out.
            let t_setup = Instant::now();
            let _ = scenario::run(&t, s, 0);
            let setup = t_setup.elapsed().as_secs_f64();
            let t0 = Instant::now();
            let ok = scenario::run(&t, s, packets);
            let dt = (t0.elapsed().as_secs_f64() - setup).max(1e-9);
            if ok != packets {
                eprintln!("weir-bench-pipeline: {}: {} of {} packets got the expected action", s.name(), ok, packets);
                return ExitCode::from(1);
            }
            best = best.min(dt);
        }
        let ipp = if args.no_instructions {
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
    ExitCode::SUCCESS
}
