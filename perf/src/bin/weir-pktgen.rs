//! weir-pktgen: a DPDK traffic generator and receiver for the perf harness,
//! and a pcap writer of the same frames.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use weir_dataplane::wire::MacAddr;
use weir_perf::gen::{GenConfig, Generator};
use weir_perf::report::{self, RateSummary, RunReport, Series};
use weir_perf::search::{self, SearchConfig, TrialResult};
use weir_perf::traffic::{Kind, Scenario};
use weir_perf::{pcap, proc};

/// Generates the perf harness's traffic on DPDK ports and measures what comes
/// back: throughput, loss, latency (TSC stamps in every frame, an HDR
/// histogram), the no-drop rate (binary search on the offered rate).
///
/// One lcore does everything: a token bucket on the TSC paces the tx bursts,
/// and the same loop polls the rx port. Frames are built from a template of
/// the scenario (weir's `wire` views), each with its flow fields and a stamp
/// (trial, sequence number, TSC); every checksum stays valid.
///
/// With --write-pcap it writes the scenario's frames to a classic pcap file
/// instead, for tcpreplay, TRex or pktgen-dpdk; that needs no DPDK.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    long_about,
    after_help = "\
Examples:
  weir-pktgen --list
  weir-pktgen --write-pcap est.pcap --scenario clusterip-est --flows 10000 --count 100000
  weir-pktgen --port net_virtio_user0,path=/tmp/a.sock --port net_virtio_user1,path=/tmp/b.sock \\
      --scenario pod2pod --frame-size 64 --mode ndr --trial 1 --json out.json --svg out.svg

Ports are DPDK devargs, probed in order; frames leave by --tx-port and come
back on --rx-port (indexes, default 0 and 1, or 0 and 0 with one port). A
virtio-user port needs EAL's --single-file-segments, which weir-pktgen
always passes (with --in-memory: it leaves no files).

Exit status: 0 when every trial ran (whatever the figures), 1 when the
generator could not start, no frame came back, or a trial failed, 2 on bad
options."
)]
struct Args {
    /// Scenario: pod2pod, vxlan-decap, clusterip-new, clusterip-est, nodeport, acl, acl-new, full, full-new
    /// (--list describes them).
    #[arg(long, default_value = "pod2pod", value_parser = parse_kind)]
    scenario: Kind,
    /// Distinct flows the frames cycle through [default: 1; clusterip-est, nodeport, acl and full 10000;
    /// clusterip-new, acl-new and full-new every packet a new flow].
    #[arg(long, value_name = "N")]
    flows: Option<u32>,
    /// Frame size on the wire, FCS included (64..=1518); raised to a scenario's minimum (VXLAN: 114).
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    frame_size: usize,
    /// ACL rules the DUT holds (acl, acl-new, full, full-new; 1..=16384): the frames are the same
    /// whatever the count, the report names it (weir-bench-harness gives the DUT the rules).
    #[arg(long, value_name = "N", default_value_t = weir_perf::policy::DEFAULT_RULES)]
    acl_rules: u32,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,

    /// Write --count frames of the scenario to FILE (classic pcap) and exit.
    #[arg(long, value_name = "FILE")]
    write_pcap: Option<PathBuf>,
    /// Frames to write with --write-pcap.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    count: u64,
    /// Rate the pcap timestamps are spaced for, Mpps.
    #[arg(long, value_name = "MPPS", default_value_t = 1.0)]
    pcap_rate: f64,

    /// A DPDK port (devargs), repeated for each port.
    #[arg(long = "port", value_name = "DEVARGS")]
    ports: Vec<String>,
    /// Index of the port frames leave by.
    #[arg(long, value_name = "I", default_value_t = 0)]
    tx_port: usize,
    /// Index of the port frames come back on [default: 1 with two ports or more, else 0].
    #[arg(long, value_name = "I")]
    rx_port: Option<usize>,
    /// The lcore (CPU) the generator runs on.
    #[arg(long, value_name = "CPU", default_value_t = 0)]
    core: usize,
    /// DPDK memory, MiB.
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    memory_mb: u32,
    /// Run on 4 KiB pages (EAL --no-huge) instead of hugepages: no hugepages
    /// needed (virtio-user then needs none either; slower).
    #[arg(long)]
    no_huge: bool,
    /// EAL --file-prefix [default: weir-pktgen-<pid>].
    #[arg(long, value_name = "PREFIX")]
    file_prefix: Option<String>,
    /// An extra EAL argument (repeat; e.g. --eal=--no-huge).
    #[arg(long = "eal", value_name = "ARG", allow_hyphen_values = true)]
    eal: Vec<String>,
    /// Queue pairs per port (frames leave by queue 0; every rx queue is polled).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    queues: u16,
    /// Frames per burst (1..=64).
    #[arg(long, value_name = "N", default_value_t = 32)]
    burst: usize,
    /// Destination MAC of the frames (the outer one for VXLAN) instead of the template's: the
    /// DUT's uplink MAC for vxlan-decap and nodeport.
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    dst_mac: Option<MacAddr>,
    /// Answer ARP requests for this address with the port's MAC (repeat).
    #[arg(long = "arp-reply", value_name = "IP")]
    arp_reply: Vec<Ipv4Addr>,
    /// ndr: search the no-drop rate, then a latency trial at --latency-load of it; fixed: one trial
    /// at --rate; sweep: --steps trials from --rate/steps to --rate.
    #[arg(long, value_enum, default_value_t = Mode::Ndr)]
    mode: Mode,
    /// Offered rate, Mpps (fixed, sweep) or the search's first trial (ndr) [default: as fast as the
    /// generator goes].
    #[arg(long, value_name = "MPPS")]
    rate: Option<f64>,
    /// Seconds per trial.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    trial: f64,
    /// A trial passes when it loses at most this share of the offered frames, percent.
    #[arg(long, value_name = "PCT", default_value_t = 0.1)]
    loss: f64,
    /// The search stops when its bracket is narrower than this share of the rate, percent.
    #[arg(long, value_name = "PCT", default_value_t = 1.0)]
    resolution: f64,
    /// At most this many search trials.
    #[arg(long, value_name = "N", default_value_t = 12)]
    max_trials: u32,
    /// Trials at one rate before the search counts it as failed (a stall of the machine can spoil one).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10))]
    attempts: u32,
    /// The latency trial's rate as a share of the no-drop rate (0 skips it).
    #[arg(long, value_name = "FRACTION", default_value_t = 0.5)]
    latency_load: f64,
    /// Trials of a sweep.
    #[arg(long, value_name = "N", default_value_t = 10)]
    steps: u32,
    /// Seconds to wait for every port's link (the DUT connecting).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    link_timeout: u64,
    /// UDP port of VXLAN (to find the stamp in returning VXLAN frames).
    #[arg(long, value_name = "PORT", default_value_t = 4789)]
    vxlan_port: u16,
    /// Name of the device under test in the outputs.
    #[arg(long, value_name = "TEXT", default_value = "dut")]
    label: String,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write a plot of offered rate against loss and latency to FILE (SVG).
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Redraw the progress line in place even when stderr is not a terminal.
    #[arg(long, hide = true)]
    live_progress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Ndr,
    Fixed,
    Sweep,
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    Kind::parse(s).ok_or_else(|| {
        let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        format!("unknown scenario {s:?}; one of {}", names.join(", "))
    })
}

fn parse_mac(s: &str) -> Result<MacAddr, String> {
    s.parse::<MacAddr>().map_err(|e| format!("{s:?}: {e}"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for k in Kind::ALL {
            println!("{:<15} {}", k.name(), k.describe());
        }
        return ExitCode::SUCCESS;
    }
    let scenario = match Scenario::new(args.scenario, args.flows, args.frame_size, args.acl_rules) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("weir-pktgen: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &args.write_pcap {
        let rate = args.pcap_rate * 1e6;
        return match pcap::write_scenario(path, &scenario, args.dst_mac, args.count, rate) {
            Ok(bytes) => {
                eprintln!(
                    "weir-pktgen: wrote {} frames of {} to {} ({bytes} bytes, {:.3} Mpps timestamps)",
                    args.count,
                    scenario.label(),
                    path.display(),
                    args.pcap_rate
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("weir-pktgen: {e}");
                ExitCode::from(1)
            }
        };
    }
    if let Err(e) = check_args(&args) {
        eprintln!("weir-pktgen: {e}");
        return ExitCode::from(2);
    }
    match run(&args, scenario) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir-pktgen: error: {e}");
            ExitCode::from(1)
        }
    }
}

fn check_args(a: &Args) -> Result<(), String> {
    if a.ports.is_empty() {
        return Err("no --port given (or --write-pcap / --list)".into());
    }
    if !(a.trial.is_finite() && a.trial > 0.0 && a.trial <= 600.0) {
        return Err(format!("--trial {}: want more than 0 and at most 600 seconds", a.trial));
    }
    if let Some(r) = a.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err(format!("--rate {r}: want a positive number of Mpps"));
        }
    }
    if a.mode == Mode::Sweep && a.steps == 0 {
        return Err("--steps 0: want at least one".into());
    }
    if !((0.0..100.0).contains(&a.loss) && a.resolution > 0.0 && a.resolution < 100.0) {
        return Err("--loss and --resolution are percentages below 100".into());
    }
    if !(0.0..=1.0).contains(&a.latency_load) {
        return Err(format!("--latency-load {}: want 0..=1", a.latency_load));
    }
    if !(1..=weir_dataplane::config::MAX_BURST).contains(&a.burst) {
        return Err(format!("--burst {}: want 1..={}", a.burst, weir_dataplane::config::MAX_BURST));
    }
    Ok(())
}

fn run(args: &Args, scenario: Scenario) -> Result<(), String> {
    proc::install_signal_handlers()?;
    let prefix = args.file_prefix.clone().unwrap_or_else(|| format!("weir-pktgen-{}", std::process::id()));
    // EAL makes a runtime directory even in memory; remove it on the way out.
    let _prefix_guard = proc::DpdkPrefix::named(&prefix);
    let mut eal_args: Vec<String> = vec!["weir-pktgen".into(), "-l".into(), args.core.to_string()];
    if args.no_huge {
        eal_args.push("--no-huge".into());
    } else {
        // Nothing left behind; one memory file per segment list, which
        // virtio-user needs (vhost-user shares only a few regions).
        eal_args.extend(["--in-memory".into(), "--single-file-segments".into()]);
    }
    eal_args.extend([
        "--file-prefix".into(),
        prefix.clone(),
        "-m".into(),
        args.memory_mb.to_string(),
        "--no-pci".into(),
    ]);
    eal_args.extend(args.eal.iter().cloned());
    let rx_port = args.rx_port.unwrap_or(if args.ports.len() > 1 { 1 } else { 0 });
    let cfg = GenConfig {
        eal_args,
        ports: args.ports.clone(),
        tx_port: args.tx_port,
        rx_port,
        burst: args.burst,
        queues: args.queues,
        // Enough for two rx rings and a tx ring of 8192 entries and the
        // frames in flight between them.
        mbufs: 65535,
        descriptors: 1024,
        link_timeout: Duration::from_secs(args.link_timeout),
        arp_reply: args.arp_reply.clone(),
        vxlan_port: args.vxlan_port,
        progress: !args.quiet,
        live_progress: args.live_progress,
    };
    let mut notes = Vec::new();
    if scenario.frame_size != args.frame_size {
        notes.push(format!(
            "frame size {} raised to {} (the smallest {} frame)",
            args.frame_size, scenario.frame_size, scenario.kind
        ));
    }
    let mut g = Generator::start(&cfg, scenario.clone(), args.dst_mac)?;
    if !args.quiet {
        eprintln!(
            "weir-pktgen: {} | {} | lcore {}, TSC {:.3} GHz, ports {}",
            args.label,
            scenario.label(),
            args.core,
            g.tsc_hz() as f64 / 1e9,
            args.ports.join("  ")
        );
    }

    // Check that frames come back at all, then establish the flows
    // (established-flow scenarios) at whatever pace the device keeps.
    let wait = Duration::from_secs(args.link_timeout);
    if !g.await_path(wait)? {
        return Err(format!(
            "no frame came back within {wait:?}: sent on port {} ({}), none received on port {} ({}); check \
             the DUT, its config and --dst-mac",
            args.tx_port, args.ports[args.tx_port], rx_port, args.ports[rx_port]
        ));
    }
    let count = if scenario.kind.needs_priming() { scenario.flows } else { 256 };
    let primed = g.prime(count, 256, Duration::from_millis(500))?;
    if primed.received == 0 {
        return Err(format!(
            "the path worked, then no frame of {} came back: sent on port {}, none received on port {}",
            primed.sent, args.tx_port, rx_port
        ));
    }
    if !args.quiet {
        eprintln!(
            "weir-pktgen: primed {} flow(s): {} of {} frames came back in {:.2} s",
            primed.flows, primed.received, primed.sent, primed.seconds
        );
    }
    let priming = scenario.kind.needs_priming().then_some(primed);

    let rate = args.rate.map(|r| r * 1e6);
    let secs = args.trial;
    let mut trials: Vec<TrialResult> = Vec::new();
    let (mut ndr, mut max, mut at_load) = (None, None, None);
    match args.mode {
        Mode::Fixed => trials.push(g.trial(rate, secs)?),
        Mode::Sweep => {
            let top = match rate {
                Some(r) => r,
                None => {
                    let first = g.trial(None, secs)?;
                    let top = first.offered_pps();
                    max = Some(RateSummary::of(&first));
                    trials.push(first);
                    top
                }
            };
            trials.extend(search::sweep(top, args.steps, |r| g.trial(r, secs))?);
        }
        Mode::Ndr => {
            let cfg = SearchConfig {
                max_rate_pps: rate,
                loss_threshold: args.loss / 100.0,
                resolution: args.resolution / 100.0,
                max_trials: args.max_trials,
                attempts: args.attempts,
            };
            let res = search::ndr(&cfg, |r| g.trial(r, secs))?;
            max = res.max_trial().map(RateSummary::of);
            ndr = res.ndr_trial().map(RateSummary::of);
            let ndr_pps = res.ndr_trial().map(|t| t.offered_pps());
            trials = res.trials;
            if let Some(n) = ndr_pps.filter(|n| *n > 0.0 && args.latency_load > 0.0) {
                let t = g.trial(Some(n * args.latency_load), secs)?;
                at_load = Some(RateSummary::of(&t));
                trials.push(t);
            }
        }
    }
    if g.flow_wraps > 0 {
        notes.push(format!(
            "the new-flow tuple space ({} tuples) was walked through {} time(s): later frames may hit flows \
             the DUT still holds",
            scenario.flows, g.flow_wraps
        ));
    }
    let late: u64 = trials.iter().map(|t| t.late).sum();
    if late > 0 {
        notes.push(format!("{late} frame(s) of earlier trials came back late (not counted)"));
    }
    let report = RunReport {
        tool: "weir-pktgen",
        label: args.label.clone(),
        scenario_label: scenario.label(),
        scenario,
        mode: format!("{:?}", args.mode).to_lowercase(),
        trial_seconds: secs,
        loss_threshold: args.loss / 100.0,
        tsc_hz: g.tsc_hz(),
        ports: args.ports.clone(),
        tx_port: args.tx_port,
        rx_port,
        priming,
        trials,
        max,
        ndr,
        latency_load: args.latency_load,
        at_load,
        notes,
    };
    drop(g);
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| format!("cannot encode the JSON report: {e}"))?;
        std::fs::write(path, text + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        let title = format!("{}: {}", report.label, report.scenario_label);
        let ndr_mpps = report.ndr.as_ref().map(|n| n.rx_mpps);
        let svg = report::rate_plot(&title, &[Series { name: &report.label, trials: &report.trials, ndr_mpps }]);
        std::fs::write(path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
