//! weir-bench-fwd: bare rx→tx forwarding rate of weir-dataplane next to
//! dpdk-testpmd's io forwarding, on the same port type, in the same run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Serialize;

use weir_perf::proc::{self, TempDir};
use weir_perf::{median, testpmd, weir, Measurement, PortType, RunSpec};

/// Bare rx→tx forwarding rate (Mpps) of weir-dataplane (`forward_mode = "io"`)
/// and of `dpdk-testpmd --forward-mode=io`, on the same port type, in the same
/// run, alternating the two; prints each run, the medians and their ratio.
///
/// Each forwarder gets the same two cores (EAL main lcore 0 for management,
/// lcore 1 busy-polling both ports), two ports of the chosen type forwarded to
/// each other, and the same burst size. The rate is the sum of both ports' tx
/// packet counters over a measured window (read twice, `--seconds` apart, after
/// `--warmup`) divided by the wall time between the two reads.
///
/// This is a benchmark, not a test: it checks nothing about the figures. It
/// exits non-zero only when a run fails (a process does not start, answers no
/// stats, or forwards nothing). Every process it starts is killed by PID at
/// the end, and its temp files, /var/run/dpdk/<prefix> and
/// /dev/hugepages/<prefix>* are removed. Needs root, hugepages mounted at
/// /dev/hugepages and nothing else busy on the two cores.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    long_about,
    after_help = "\
Example:
  cargo build --release -p weir-dataplane -p weir-perf && target/release/weir-bench-fwd

Exit status: 0 when every run produced a figure (whatever the figures are),
1 when a run failed (the message says which process and why), 2 on bad options."
)]
struct Args {
    /// Port type for both forwarders: `null` = two net_null vdevs (rx hands out
    /// mbufs, tx frees them: measures only the forwarding framework).
    #[arg(long, value_enum, default_value_t = PortTypeArg::Null, value_name = "TYPE")]
    port_type: PortTypeArg,
    /// Measurement window of each run, seconds.
    #[arg(long, value_name = "N", default_value = "5", value_parser = parse_window)]
    seconds: Duration,
    /// Forwarding time before the window opens, seconds.
    #[arg(long, value_name = "N", default_value = "1", value_parser = parse_warmup)]
    warmup: Duration,
    /// Runs per forwarder, alternating weir and testpmd; the medians are compared.
    #[arg(long, value_name = "R", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    runs: u32,
    /// The weir-dataplane binary [default: weir-dataplane next to this executable,
    /// i.e. target/release/weir-dataplane].
    #[arg(long, value_name = "PATH")]
    weir: Option<PathBuf>,
    /// The testpmd binary (run under `stdbuf -oL`).
    #[arg(long, value_name = "PATH", default_value = "dpdk-testpmd")]
    testpmd: PathBuf,
    /// Packets per rx burst, for both forwarders (1..=64).
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = parse_burst)]
    burst: usize,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PortTypeArg {
    Null,
}

impl From<PortTypeArg> for PortType {
    fn from(p: PortTypeArg) -> PortType {
        match p {
            PortTypeArg::Null => PortType::Null,
        }
    }
}

/// One forwarder's outcome in one run.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Measured {
        mpps: f64,
        tx_packets: u64,
        elapsed_s: f64,
    },
    Failed {
        error: String,
    },
    /// Not run: this forwarder already failed in an earlier run.
    Skipped,
}

impl Outcome {
    fn from_result(r: &Result<Measurement, String>) -> Outcome {
        match r {
            Ok(m) => Outcome::Measured { mpps: m.mpps(), tx_packets: m.tx_packets, elapsed_s: m.elapsed.as_secs_f64() },
            Err(e) => Outcome::Failed { error: e.clone() },
        }
    }

    fn mpps(&self) -> Option<f64> {
        match self {
            Outcome::Measured { mpps, .. } => Some(*mpps),
            _ => None,
        }
    }

    fn cell(&self) -> String {
        match self {
            Outcome::Measured { mpps, .. } => format!("{mpps:.2}"),
            Outcome::Failed { .. } => "failed".into(),
            Outcome::Skipped => "-".into(),
        }
    }
}

#[derive(Serialize)]
struct RunResult {
    run: u32,
    weir: Outcome,
    testpmd: Outcome,
}

#[derive(Serialize)]
struct Report {
    benchmark: &'static str,
    port_type: PortType,
    seconds: f64,
    warmup_seconds: f64,
    burst: usize,
    main_core: usize,
    fwd_core: usize,
    weir_binary: String,
    testpmd_binary: String,
    runs: Vec<RunResult>,
    weir_median_mpps: Option<f64>,
    testpmd_median_mpps: Option<f64>,
    /// weir median / testpmd median; absent when either has no figure.
    ratio: Option<f64>,
    goal_ratio: f64,
}

const GOAL: f64 = 0.90;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir-bench-fwd: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Seconds as a decimal number, more than 0, or at least 0 with `allow_zero`.
fn parse_secs(v: &str, allow_zero: bool) -> Result<Duration, String> {
    let f: f64 = v.parse().map_err(|e| format!("{v:?} is not a number of seconds: {e}"))?;
    if !f.is_finite() || f < 0.0 || (f == 0.0 && !allow_zero) || f > 3600.0 {
        return Err(format!("want {} up to 3600 seconds", if allow_zero { "0" } else { "more than 0" }));
    }
    Ok(Duration::from_secs_f64(f))
}

fn parse_window(v: &str) -> Result<Duration, String> {
    parse_secs(v, false)
}

fn parse_warmup(v: &str) -> Result<Duration, String> {
    parse_secs(v, true)
}

fn parse_burst(v: &str) -> Result<usize, String> {
    let max = weir_dataplane::config::MAX_BURST;
    match v.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("want a whole number in 1..={max} (weir-dataplane's limit)")),
    }
}

fn run(args: Args) -> Result<(), String> {
    let (seconds, warmup) = (args.seconds, args.warmup);
    let weir_bin = match args.weir.clone().or_else(weir::default_binary) {
        Some(p) => p,
        None => return Err("cannot find the current executable's directory; pass --weir PATH".into()),
    };
    if !weir_bin.is_file() {
        return Err(format!(
            "{} not found; build it (cargo build --release -p weir-dataplane) or pass --weir PATH",
            weir_bin.display()
        ));
    }
    proc::install_signal_handlers()?;

    let spec = RunSpec {
        port_type: args.port_type.into(),
        burst: args.burst,
        warmup,
        seconds,
        main_core: 0,
        fwd_core: 1,
        memory_mb: 512,
    };
    let dir = TempDir::new("weir-bench-fwd")?;
    eprintln!(
        "weir-bench-fwd: io forwarding, 2 x {} ports, burst {}, cores {} (main) + {} (forwarding), {} run(s) of {:.1} s after {:.1} s warm-up",
        spec.port_type.driver(),
        spec.burst,
        spec.main_core,
        spec.fwd_core,
        args.runs,
        seconds.as_secs_f64(),
        warmup.as_secs_f64()
    );

    // Alternate the two; a forwarder that fails is not run again, and the
    // other one still gets its runs, so the table shows what did work.
    let mut results: Vec<RunResult> = Vec::new();
    let (mut weir_failed, mut testpmd_failed) = (false, false);
    for r in 1..=args.runs {
        let weir = if weir_failed {
            Outcome::Skipped
        } else {
            let res = weir::run(&weir_bin, &spec, dir.path(), &format!("w{r}"));
            progress(r, args.runs, "weir-dataplane", &res);
            weir_failed = res.is_err();
            Outcome::from_result(&res)
        };
        proc::check_interrupted()?;
        let testpmd = if testpmd_failed {
            Outcome::Skipped
        } else {
            let res = testpmd::run(&args.testpmd, &spec, &format!("t{r}"));
            progress(r, args.runs, "dpdk-testpmd", &res);
            testpmd_failed = res.is_err();
            Outcome::from_result(&res)
        };
        proc::check_interrupted()?;
        results.push(RunResult { run: r, weir, testpmd });
    }
    drop(dir);

    let figures = |f: fn(&RunResult) -> &Outcome| -> Vec<f64> { results.iter().filter_map(|r| f(r).mpps()).collect() };
    let wm = median(&figures(|r| &r.weir));
    let tm = median(&figures(|r| &r.testpmd));
    let ratio = match (wm, tm) {
        (Some(w), Some(t)) if t > 0.0 => Some(w / t),
        _ => None,
    };
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));

    println!();
    println!(
        "weir-bench-fwd: bare rx->tx forwarding (io mode), port type {} (2 x {}), burst {}, {:.1} s per run",
        spec.port_type,
        spec.port_type.driver(),
        spec.burst,
        seconds.as_secs_f64()
    );
    println!("  {:<8} {:>20} {:>18}", "run", "weir-dataplane Mpps", "dpdk-testpmd Mpps");
    for r in &results {
        println!("  {:<8} {:>20} {:>18}", r.run, r.weir.cell(), r.testpmd.cell());
    }
    println!("  {:<8} {:>20} {:>18}", "median", opt(wm), opt(tm));
    println!("ratio weir/testpmd = {} (goal >= {GOAL:.2})", opt(ratio));

    if let Some(path) = &args.json {
        let report = Report {
            benchmark: "weir-bench-fwd",
            port_type: spec.port_type,
            seconds: seconds.as_secs_f64(),
            warmup_seconds: warmup.as_secs_f64(),
            burst: spec.burst,
            main_core: spec.main_core,
            fwd_core: spec.fwd_core,
            weir_binary: weir_bin.display().to_string(),
            testpmd_binary: args.testpmd.display().to_string(),
            runs: results,
            weir_median_mpps: wm,
            testpmd_median_mpps: tm,
            ratio,
            goal_ratio: GOAL,
        };
        let text = serde_json::to_string_pretty(&report).map_err(|e| format!("cannot encode the JSON report: {e}"))?;
        std::fs::write(path, text + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("weir-bench-fwd: wrote {}", path.display());
    }
    if weir_failed || testpmd_failed {
        let which: Vec<&str> = [(weir_failed, "weir-dataplane"), (testpmd_failed, "dpdk-testpmd")]
            .iter()
            .filter_map(|(f, n)| f.then_some(*n))
            .collect();
        return Err(format!("{} failed (see above)", which.join(" and ")));
    }
    Ok(())
}

fn progress(r: u32, runs: u32, who: &str, res: &Result<Measurement, String>) {
    match res {
        Ok(m) => eprintln!(
            "  run {r}/{runs}: {who:<14} {:7.2} Mpps ({} packets in {:.3} s)",
            m.mpps(),
            m.tx_packets,
            m.elapsed.as_secs_f64()
        ),
        Err(e) => eprintln!("  run {r}/{runs}: {who:<14} FAILED: {e}"),
    }
}
