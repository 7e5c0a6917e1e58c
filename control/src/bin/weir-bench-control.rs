//! weir-bench-control: what table changes cost a running node. Starts a
//! weir-dataplane in a network namespace with two pods, then prints:
//! - full sync: the time a `Resync` of `--services` Services with
//!   `--endpoints` endpoints each takes to be applied (every worker running
//!   it), and the dataplane's resident memory before and after;
//! - change → applied latency (p50, p99, max) of single-endpoint changes
//!   arriving at `--rate` per second for `--seconds` and pushed as they
//!   come (what has arrived while a push was under way goes in the next
//!   one, as weir-control's diffs do), and the rate achieved;
//! - forwarding loss meanwhile: a UDP stream from one pod to the other
//!   through weir, datagrams sent and received.
//!
//! Needs root, hugepages (scripts/setup.sh), iproute2, python3, and
//! weir-dataplane built (next to this binary, or `--dataplane-bin`). A
//! benchmark: it prints figures and judges nothing.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use weir_dataplane::api::{Change, ClusterTables, Reply, Request};
use weir_dataplane::config::{BackendConfig, L4Proto, ServiceConfig, ServicePortConfig};
use weir_dataplane::mgmt;

#[derive(Parser)]
#[command(name = "weir-bench-control", about = "full sync, change latency and loss under changes")]
struct Cli {
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    /// Endpoint updates per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// UDP datagrams per second between the pods meanwhile.
    #[arg(long, default_value_t = 20_000)]
    pps: u64,
    #[arg(long)]
    dataplane_bin: Option<PathBuf>,
}

fn sh(args: &[&str]) -> Result<(), String> {
    let ok = Command::new(args[0]).args(&args[1..]).status().is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(format!("{args:?} failed"))
    }
}

fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

/// Namespaces and processes made here, removed on drop.
struct Bed {
    tag: String,
    dataplane: Option<Child>,
    dir: PathBuf,
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(mut c) = self.dataplane.take() {
            let _ = mgmt::call(&self.dir.join("dp.sock"), &Request::Shutdown);
            std::thread::sleep(Duration::from_millis(500));
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in ["node", "a", "b"] {
            let name = format!("{}-{ns}", self.tag);
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &name]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn service(i: usize, endpoints: usize, shift: usize) -> ServiceConfig {
    let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i as u32);
    let backends = (0..endpoints)
        .map(|e| {
            // Backends elsewhere in the cluster (10.2.0.0/15): not this node's pods.
            let n = (i * endpoints + e + shift) as u32;
            BackendConfig::new(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 2, 0, 0)) + n % (1 << 17)))
        })
        .collect();
    ServiceConfig {
        name: format!("bench/s{i}:80"),
        cluster_ips: vec![vip],
        external_ips: vec![],
        load_balancer_ips: vec![],
        external_traffic_policy: Default::default(),
        internal_traffic_policy: Default::default(),
        load_balancer_source_ranges: vec![],
        ports: vec![ServicePortConfig { port: 80, protocol: L4Proto::Tcp, target_port: Some(8080), node_port: None }],
        backends,
        affinity_timeout_seconds: None,
    }
}

const SENDER: &str = r#"
import socket, sys, time
dst, pps, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n, t0 = 0, time.monotonic()
while True:
    el = time.monotonic() - t0
    if el >= secs: break
    while n < el * pps:
        s.sendto(b"x" * 64, (dst, 9999)); n += 1
    time.sleep(0.0005)
print(n)
"#;

const RECEIVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 9999)); s.settimeout(3)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
print("ready", flush=True)
n = 0
try:
    while True:
        s.recv(2048); n += 1
except socket.timeout:
    pass
print(n)
"#;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Release builds abort on panic (no unwinding, no Drop): every failure
    // after the set-up is an error returned here, so the bed is cleaned up.
    match run(&cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir-bench-control: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

fn run(cli: &Cli) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let dp_bin = cli.dataplane_bin.clone().unwrap_or_else(|| exe.with_file_name("weir-dataplane"));
    ensure!(dp_bin.exists(), "{} missing: build weir-dataplane (cargo build -p weir-dataplane)", dp_bin.display());
    let tag = format!("wbc{}", std::process::id() % 100_000);
    let dir = std::env::temp_dir().join(&tag);
    std::fs::create_dir_all(&dir).map_err(|e| format!("work dir: {e}"))?;
    let mut bed = Bed { tag: tag.clone(), dataplane: None, dir: dir.clone() };
    let (node, a, b) = (format!("{tag}-node"), format!("{tag}-a"), format!("{tag}-b"));
    for ns in [&node, &a, &b] {
        sh(&["ip", "netns", "add", ns])?;
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
    }
    let mut ports = String::new();
    for (pod, ip, mac) in [(&a, "10.1.0.2", "02:00:00:00:00:02"), (&b, "10.1.0.3", "02:00:00:00:00:03")] {
        let host_if = pod.replace('-', "");
        sh(&["ip", "link", "add", &host_if, "netns", &node, "type", "veth", "peer", "name", "eth0", "netns", pod])?;
        sh(&["ip", "-n", pod, "link", "set", "eth0", "address", mac])?;
        let _ = in_ns(pod, &["ethtool", "-K", "eth0", "tx", "off"]).output();
        sh(&["ip", "-n", pod, "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        sh(&["ip", "-n", pod, "link", "set", "eth0", "up"])?;
        sh(&["ip", "-n", pod, "route", "add", "default", "via", "10.1.0.1"])?;
        sh(&["ip", "-n", &node, "link", "set", &host_if, "up"])?;
        ports.push_str(&format!(
            "[[ports]]\nname = \"{host_if}\"\nkind = \"af_packet\"\niface = \"{host_if}\"\npod = {{ ip = \"{ip}\", mac = \"{mac}\" }}\n\n"
        ));
    }
    let sock = dir.join("dp.sock");
    let cfg = dir.join("node.toml");
    std::fs::write(
        &cfg,
        format!(
            "[node]\nname = \"bench\"\npod_cidr = \"10.1.0.0/24\"\n[gateway]\nip = \"10.1.0.1\"\nmac = \"02:fe:00:00:00:01\"\n\
             [dpdk]\nworker_cores = [1]\nmemory_mb = 512\nmbufs = 16383\nmax_flows = 65536\n[management]\nsocket = \"{}\"\n\n{ports}",
            sock.display()
        ),
    )
    .map_err(|e| format!("config: {e}"))?;
    let child = in_ns(&node, &[dp_bin.to_str().unwrap_or_default(), "-c", cfg.to_str().unwrap_or_default()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("dp.err")).map_err(|e| format!("log: {e}"))?)
        .spawn()
        .map_err(|e| format!("start weir-dataplane: {e}"))?;
    let pid = child.id();
    bed.dataplane = Some(child);
    let t0 = Instant::now();
    while !matches!(mgmt::call(&sock, &Request::Hello), Ok(Reply::Hello { .. })) {
        ensure!(t0.elapsed() < Duration::from_secs(30), "weir-dataplane did not come up: see {}", dir.join("dp.err").display());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The dataplane runs inside `ip netns exec`: its own pid is the child's.
    let dp_pid = Command::new("pgrep").args(["-P", &pid.to_string()]).output().ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(pid);
    let rss0 = rss_kib(dp_pid);

    // Full sync.
    let tables = ClusterTables {
        services: (0..cli.services).map(|i| service(i, cli.endpoints, 0)).collect(),
        ..ClusterTables::default()
    };
    let t = Instant::now();
    let r = mgmt::call(&sock, &Request::Resync { generation: 1, tables })?;
    let full = t.elapsed();
    ensure!(matches!(r, Reply::Synced { .. }), "resync: {r:?}");
    let rss1 = rss_kib(dp_pid);

    // Traffic between the pods while endpoints change.
    let mut receiver = in_ns(&b, &["python3", "-c", RECEIVER]).stdout(Stdio::piped()).spawn().map_err(|e| format!("receiver: {e}"))?;
    let mut line = String::new();
    let mut rout = std::io::BufReader::new(receiver.stdout.take().ok_or("receiver stdout")?);
    std::io::BufRead::read_line(&mut rout, &mut line).map_err(|e| format!("receiver ready: {e}"))?;
    let sender = in_ns(&a, &["python3", "-c", SENDER, "10.1.0.3", &cli.pps.to_string(), &cli.seconds.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("sender: {e}"))?;
    // Endpoint changes arrive at `rate` per second (a generator thread);
    // the pusher sends whatever has arrived as one Update, as weir-control
    // does with the diff of its computed tables. A change's latency runs
    // from its arrival to the dataplane's answer that it is applied.
    let mut hist = Histogram::<u64>::new(3).map_err(|e| format!("histogram: {e}"))?;
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Change)>();
    let (rate, seconds, services, endpoints) = (cli.rate.max(1), cli.seconds, cli.services, cli.endpoints);
    let generator = std::thread::spawn(move || {
        let start = Instant::now();
        let every = Duration::from_secs_f64(1.0 / rate as f64);
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs(seconds) {
            let i = (n as usize * 7919) % services;
            let change = Change::UpsertService { service: service(i, endpoints, n as usize + 1) };
            if tx.send((Instant::now(), change)).is_err() {
                break;
            }
            n += 1;
            if let Some(wait) = (start + every * n as u32).checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    });
    let start = Instant::now();
    let mut sent_updates = 0u64;
    let mut pushes = 0u64;
    loop {
        let first = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(c) => c,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let arrived: Vec<Instant> = batch.iter().map(|(t, _)| *t).collect();
        let changes: Vec<Change> = batch.into_iter().map(|(_, c)| c).collect();
        let n = changes.len() as u64;
        let r = mgmt::call(&sock, &Request::Update { generation: 2 + pushes, changes });
        ensure!(matches!(r, Ok(Reply::Synced { .. })), "update: {r:?}");
        let done = Instant::now();
        for t in arrived {
            let _ = hist.record(done.duration_since(t).as_micros() as u64);
        }
        sent_updates += n;
        pushes += 1;
    }
    let _ = generator.join();
    let elapsed = start.elapsed().as_secs_f64();
    let sent: u64 = String::from_utf8_lossy(&sender.wait_with_output().map_err(|e| format!("sender: {e}"))?.stdout).trim().parse().unwrap_or(0);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut rout, &mut rest).map_err(|e| format!("receiver output: {e}"))?;
    let _ = receiver.wait();
    let received: u64 = rest.trim().parse().unwrap_or(0);
    let stats = match mgmt::call(&sock, &Request::Stats) {
        Ok(Reply::Stats(s)) => s,
        other => return Err(format!("stats: {other:?}")),
    };

    println!(
        "weir-bench-control: {} Services x {} endpoints = {} endpoints, 1 worker",
        cli.services,
        cli.endpoints,
        cli.services * cli.endpoints
    );
    println!("  full sync (Resync applied)   {:>10.1} ms", full.as_secs_f64() * 1e3);
    println!("  dataplane RSS before / after {:>10} / {} MiB", rss0 / 1024, rss1 / 1024);
    println!(
        "  updates                      {:>10} in {elapsed:.1} s = {:.0}/s (asked {}/s), in {pushes} pushes",
        sent_updates,
        sent_updates as f64 / elapsed,
        cli.rate
    );
    println!(
        "  change → applied             p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        hist.value_at_quantile(0.5) as f64 / 1e3,
        hist.value_at_quantile(0.99) as f64 / 1e3,
        hist.max() as f64 / 1e3
    );
    println!(
        "  forwarding meanwhile         {sent} UDP datagrams sent, {received} received, {} lost; weir drops {}",
        sent.saturating_sub(received),
        stats.total_drops()
    );
    Ok(())
}
