//! weir-dataplane: the DPDK primary process of a weir node.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use crossbeam::utils::CachePadded;

use weir_dataplane::api::{Reply, Request};
use weir_dataplane::config::NodeConfig;
use weir_dataplane::dpdk::Eal;
use weir_dataplane::mgmt;
use weir_dataplane::node::Node;
use weir_dataplane::stats::{SharedCounters, WorkerCounters};
use weir_dataplane::worker::{self, WorkerConfig};

/// The weir data plane: DPDK poll-mode workers pinned to cores forwarding
/// between pod ports, configured by a node config file and managed over a
/// Unix socket (weirctl, weir-control).
#[derive(Parser, Debug)]
#[command(version, about, long_about = None, after_help = "\
Exit status: 0 after a clean shutdown (SIGINT, SIGTERM or a shutdown request),
2 when the config is refused (the message names the key and value), 1 when
DPDK or a port cannot be set up.

Every key of the config file is documented in config/node.example.toml.")]
struct Args {
    /// Node config file (TOML).
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Validate the config, print the EAL arguments it gives, and exit.
    #[arg(long)]
    check: bool,
    /// Management socket path; overrides management.socket.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print a counters line to stdout every N seconds (0: never).
    #[arg(long, value_name = "N", default_value_t = 0)]
    stats_interval: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut cfg = match NodeConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("weir-dataplane: config {} refused: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    if let Some(s) = args.socket {
        cfg.management.socket = s;
    }
    let eal_argv = cfg.eal_args("weir-dataplane");
    if args.check {
        println!(
            "config ok: node {}, {} ports, {} workers",
            cfg.node.name,
            cfg.ports.len(),
            cfg.dpdk.worker_cores.len()
        );
        println!("eal: {}", eal_argv[1..].join(" "));
        return ExitCode::SUCCESS;
    }
    let cores: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().iter().map(|c| c.id).collect();
    for c in cfg.dpdk.worker_cores.iter().chain([&cfg.dpdk.main_core]) {
        if !cores.contains(c) {
            eprintln!(
                "weir-dataplane: config {} refused: dpdk core {c} is not available here (cores {cores:?})",
                args.config.display()
            );
            return ExitCode::from(2);
        }
    }
    match run(cfg, eal_argv, args.stats_interval) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir-dataplane: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(cfg: NodeConfig, eal_argv: Vec<String>, stats_interval: u64) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(|e| format!("signal handler: {e}"))?;
    }
    let eal = Eal::init(&eal_argv).map_err(|e| e.to_string())?;
    let counters: Vec<SharedCounters> =
        cfg.dpdk.worker_cores.iter().map(|_| Arc::new(CachePadded::new(WorkerCounters::default()))).collect();
    let worker_cfgs: Vec<WorkerConfig> = (0..cfg.dpdk.worker_cores.len())
        .map(|id| WorkerConfig {
            id,
            burst: cfg.dpdk.burst,
            busy_poll: cfg.dpdk.busy_poll,
            idle_polls_before_sleep: cfg.dpdk.idle_polls_before_sleep,
            idle_sleep_max_us: cfg.dpdk.idle_sleep_max_us,
        })
        .collect();
    let cores = cfg.dpdk.worker_cores.clone();
    let socket = cfg.management.socket.clone();
    let name = cfg.node.name.clone();
    let mut node = Node::new(cfg, &eal, counters.clone())?;
    let calls = mgmt::serve(&socket)?;

    let result = std::thread::scope(|s| -> Result<(), String> {
        let eal = &eal;
        for (wc, (core, c)) in worker_cfgs.into_iter().zip(cores.iter().copied().zip(counters.iter().cloned())) {
            let reader = node.snapshot().reader(wc.id);
            let links = worker::Links {
                events: node.events(),
                outbox: (wc.id == 0).then(|| node.outbox()),
                tsc_per_ms: node.tsc_per_ms(),
            };
            let flows = node.flows();
            let tap = node.tap();
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name(format!("weir-w{}", wc.id))
                .spawn_scoped(s, move || {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                        eprintln!("weir-dataplane: worker {} could not pin to core {core}", wc.id);
                    }
                    if let Err(e) = eal.register_thread() {
                        eprintln!("weir-dataplane: worker {}: {e}", wc.id);
                        stop.store(true, Ordering::SeqCst);
                        return;
                    }
                    worker::run(wc, reader, c, links, flows, tap, stop);
                    eal.unregister_thread();
                })
                .map_err(|e| format!("cannot start a worker: {e}"))?;
        }
        if let Err(e) = node.start_ports() {
            stop.store(true, Ordering::SeqCst);
            return Err(e);
        }
        println!("weir-dataplane: node {name} ready, {} workers, socket {}", cores.len(), socket.display());
        let mut last_stats = std::time::Instant::now();
        while !stop.load(Ordering::SeqCst) {
            if let Ok((req, reply_to)) = calls.recv_timeout(Duration::from_millis(5)) {
                let shutdown = req == Request::Shutdown;
                let _ = reply_to.send(node.handle(req));
                if shutdown {
                    stop.store(true, Ordering::SeqCst);
                }
            }
            node.tick();
            if stats_interval > 0 && last_stats.elapsed() >= Duration::from_secs(stats_interval) {
                last_stats = std::time::Instant::now();
                let s = node.stats();
                let ports: Vec<String> =
                    s.ports.iter().map(|p| format!("{} rx {} tx {}", p.name, p.rx_packets, p.tx_packets)).collect();
                println!("stats: gen {} | {} | drops {}", s.generation, ports.join(" | "), s.total_drops());
            }
        }
        Ok(())
    });
    // Workers have stopped (the scope joined them): ports can go.
    let s = node.stats();
    if let Ok(text) = serde_json::to_string(&Reply::Stats(s)) {
        println!("final {text}");
    }
    node.shutdown();
    let _ = std::fs::remove_file(&socket);
    drop(node);
    let runtime_dir = eal.runtime_dir();
    drop(eal);
    // EAL leaves its runtime directory (config, multi-process socket) behind.
    let _ = std::fs::remove_dir_all(runtime_dir);
    result
}
