//! The packet-path cost of `weirctl trace` and `capture`, and of flow
//! logs, while nothing is armed, against the same path with the check
//! compiled out (what the `trace` feature turns off): the worker's own
//! burst loop (`inspect::rx_burst`) on bursts of 32 packets, the tap's
//! flags read once per burst as a worker reads them once per loop,
//! alternating the two builds of the loop in every round. Prints ns per
//! packet for both (best and median of the rounds) and their ratio, and
//! instructions per packet under valgrind's callgrind — exact where the
//! clock is noisy (N and N + 32000 packets, the difference over 32000).
//! For scale it also times the loop with a trace armed whose filter
//! matches nothing (every packet then takes the cold path and is matched),
//! and with a flow log armed whose flows started while it was (every
//! ClusterIP packet is then counted in its flow's meter). Never fails on a
//! figure.
//!
//! `cargo bench -p weir-dataplane --bench trace [-- ROUNDS PACKETS] [--no-instructions]`

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use weir_dataplane::config::NodeConfig;
use weir_dataplane::flow::FlowTable;
use weir_dataplane::inspect::flowlog::FlowLogSession;
use weir_dataplane::inspect::tap::TraceSession;
use weir_dataplane::inspect::{rx_burst, Burst, Filter, FilterSpec, Tap};
use weir_dataplane::pipeline::nat::Nat;
use weir_dataplane::pipeline::{Action, NoEvents, TestBuf};
use weir_dataplane::tables::service::ServiceTable;
use weir_dataplane::tables::{PortEntry, Tables};
use weir_dataplane::wire::{ethernet, ipv4, udp, MacAddr};

const BURST: usize = 32;
const A_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const B_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 3]);
const GW_MAC: MacAddr = MacAddr([2, 0xfe, 0, 0, 0, 1]);
const A_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// Distinct flows of the ClusterIP scenario (source ports).
const FLOWS: u16 = 4096;

fn tables() -> Tables {
    let cfg = NodeConfig::from_toml(
        r#"
        [node]
        name = "bench"
        pod_cidr = "10.1.0.0/24"
        [gateway]
        ip = "10.1.0.1"
        mac = "02:fe:00:00:00:01"
        [[services]]
        name = "bench/svc"
        cluster_ips = ["10.96.0.10"]
        ports = [{ port = 8080, protocol = "udp" }]
        backends = [{ ip = "10.1.0.3" }]
        "#,
    )
    .expect("bench config");
    let mut t = Tables::new(&cfg, 1);
    t.add_port(0, PortEntry::pod("pod-a", A_IP, A_MAC, 0), 1);
    t.add_port(1, PortEntry::pod("pod-b", B_IP, B_MAC, 0), 1);
    t.services = ServiceTable::build(&cfg).expect("bench services");
    t
}

/// A minimum-size UDP frame from pod-a to `dst`:8080.
fn frame(dst: Ipv4Addr, sport: u16) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    ethernet::Repr { src: A_MAC, dst: GW_MAC, ethertype: ethernet::ethertype::IPV4 }
        .emit(&mut ethernet::Frame::new_unchecked(&mut f[..]));
    ipv4::Repr {
        src: A_IP,
        dst,
        protocol: ipv4::protocol::UDP,
        ttl: 64,
        payload_len: 26,
        dscp_ecn: 0,
        ident: 1,
        dont_frag: true,
    }
    .emit(&mut ipv4::Packet::new_unchecked(&mut f[14..]));
    let mut u = udp::Packet::new_unchecked(&mut f[34..]);
    u.set_src_port(sport);
    u.set_dst_port(8080);
    u.set_len(26);
    u.fill_checksum(A_IP, dst);
    f
}

struct Scenario {
    name: &'static str,
    frames: Vec<Vec<u8>>,
}

/// Refills the burst's buffers with the next frames (what an rx burst
/// hands the worker); the same code for both builds of the loop.
#[inline(never)]
fn refill(bufs: &mut [TestBuf], frames: &[Vec<u8>], next: &mut usize) {
    for b in bufs.iter_mut() {
        b.reset(&frames[*next]);
        *next = if *next + 1 == frames.len() { 0 } else { *next + 1 };
    }
}

/// One worker loop's rx burst as `worker::run` does it: the tap's flags
/// read (when compiled in), then `rx_burst`; counts packets forwarded to
/// pod-b.
#[inline(never)]
fn one_burst<const INSPECT: bool>(t: &Tables, nat: &Nat, tap: &Tap, bufs: &mut [TestBuf]) -> usize {
    let flags = if INSPECT { tap.flags() } else { 0 };
    let burst = Burst { tables: t, nat, tap, flags, worker: 0, port: 0, clock: || 0 };
    let mut ok = 0;
    rx_burst::<INSPECT, _, _, _, _>(&burst, bufs.iter_mut(), &mut NoEvents, |_, a| {
        ok += usize::from(a == Action::Forward(1));
    });
    ok
}

/// Runs `packets` packets in bursts through the loop built with `INSPECT`;
/// returns (seconds, packets that were forwarded to pod-b).
fn run<const INSPECT: bool>(t: &Tables, nat: &Nat, tap: &Tap, s: &Scenario, packets: usize) -> (f64, usize) {
    let mut bufs: Vec<TestBuf> = (0..BURST).map(|_| TestBuf::new(&s.frames[0])).collect();
    let mut ok = 0usize;
    let mut next = 0usize;
    let t0 = Instant::now();
    for _ in 0..packets / BURST {
        refill(&mut bufs, &s.frames, &mut next);
        ok += one_burst::<INSPECT>(t, nat, tap, &mut bufs);
    }
    (t0.elapsed().as_secs_f64(), ok)
}

/// A tap with a flow log armed (no rate limit to speak of) over a flow
/// table of its own, and that table: the scenario's flows are made with it
/// armed, so that they are metered.
fn armed_flow_log(t: &Tables, s: &Scenario) -> (Tap, FlowTable) {
    let flows = FlowTable::new(1 << 16);
    let tap = Tap::default();
    tap.arm_flowlog(Arc::new(FlowLogSession::new(1_000_000, 1_000_000, flows.capacity())));
    run::<true>(t, &Nat::single(&flows, 1), &tap, s, FLOWS as usize);
    (tap, flows)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::MAX, f64::min)
}

/// Instructions of `--just VARIANT SCENARIO N` under callgrind.
fn instructions(variant: &str, scenario: usize, n: usize) -> Result<u64, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(&me)
        .args(["--just", variant, &scenario.to_string(), &n.to_string()])
        .output()
        .map_err(|e| format!("cannot run valgrind: {e}"))?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("valgrind failed: {err}"));
    }
    err.lines()
        .find_map(|l| l.split("Collected :").nth(1))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no 'Collected' line in valgrind's output: {err}"))
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let t = tables();
    let flows = FlowTable::new(1 << 16);
    let nat = Nat::single(&flows, 1);
    let tap = Tap::default();
    let armed = Tap::default();
    let no_match = Filter::compile(&FilterSpec { src: Some("192.0.2.1".into()), ..Default::default() }, &t).unwrap();
    let scenarios = [
        Scenario { name: "pod to pod", frames: vec![frame(B_IP, 40000)] },
        Scenario { name: "clusterip established", frames: (0..FLOWS).map(|i| frame(VIP, 20000 + i)).collect() },
    ];
    // (internal) what callgrind measures: one variant, one scenario, N packets.
    if let Some(i) = argv.iter().position(|a| a == "--just") {
        let (Some(v), Some(s), Some(n)) = (argv.get(i + 1), argv.get(i + 2), argv.get(i + 3)) else {
            eprintln!("--just VARIANT SCENARIO N");
            std::process::exit(2);
        };
        let s = &scenarios[s.parse::<usize>().unwrap_or(0).min(scenarios.len() - 1)];
        let n: usize = n.parse().unwrap_or(0);
        // The flows are made first, outside what is compared (both counts have it).
        run::<false>(&t, &nat, &tap, s, FLOWS as usize);
        let ok = match v.as_str() {
            "unarmed" => run::<true>(&t, &nat, &tap, s, n).1,
            "flowlog" => {
                let (log_tap, log_flows) = armed_flow_log(&t, s);
                run::<true>(&t, &Nat::single(&log_flows, 1), &log_tap, s, n).1
            }
            _ => run::<false>(&t, &nat, &tap, s, n).1,
        };
        std::process::exit(i32::from(ok != n / BURST * BURST));
    }
    let nums: Vec<usize> = argv.iter().filter_map(|a| a.parse().ok()).collect();
    let rounds = nums.first().copied().unwrap_or(15);
    let packets = nums.get(1).copied().unwrap_or(2_000_000) / BURST * BURST;
    let with_instructions = !argv.iter().any(|a| a == "--no-instructions");
    println!("weir trace bench: {packets} packets per run, bursts of {BURST}, {rounds} rounds, one core");
    println!("unarmed: the tap's check compiled in, nothing armed; off: the check compiled out (feature trace off)");
    for (si, s) in scenarios.iter().enumerate() {
        // Warm up (and establish the flows).
        let warm = packets.min(1 << 16);
        let (_, ok) = run::<false>(&t, &nat, &tap, s, warm);
        assert_eq!(ok, warm, "{}: every packet forwarded to pod-b", s.name);
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            // Alternate which goes first, so drift does not favour one.
            let (a, b) = if r % 2 == 0 {
                let a = run::<true>(&t, &nat, &tap, s, packets);
                (a, run::<false>(&t, &nat, &tap, s, packets))
            } else {
                let b = run::<false>(&t, &nat, &tap, s, packets);
                (run::<true>(&t, &nat, &tap, s, packets), b)
            };
            assert!(a.1 == packets && b.1 == packets, "{}: every packet forwarded", s.name);
            on.push(a.0 * 1e9 / packets as f64);
            off.push(b.0 * 1e9 / packets as f64);
        }
        // For scale: a trace armed whose filter matches nothing, so that
        // every packet takes the cold path and is matched.
        armed.arm_trace(Arc::new(TraceSession::new(no_match, 1)));
        let mut armed_ns: Vec<f64> =
            (0..rounds.min(5)).map(|_| run::<true>(&t, &nat, &armed, s, packets).0 * 1e9 / packets as f64).collect();
        armed.disarm_trace();
        // And a flow log armed, its flows metered.
        let (log_tap, log_flows) = armed_flow_log(&t, s);
        let log_nat = Nat::single(&log_flows, 1);
        let mut log_ns: Vec<f64> = (0..rounds.min(5))
            .map(|_| run::<true>(&t, &log_nat, &log_tap, s, packets).0 * 1e9 / packets as f64)
            .collect();
        let (lo_a, lo_b) = (min(&on), min(&off));
        let (ma, mb) = (median(&mut on), median(&mut off));
        println!("{}:", s.name);
        println!(
            "  time, best of {rounds}:   unarmed {lo_a:7.2} ns/pkt   off {lo_b:7.2} ns/pkt   ratio {:.3}",
            lo_a / lo_b
        );
        println!("  time, median:       unarmed {ma:7.2} ns/pkt   off {mb:7.2} ns/pkt   ratio {:.3}", ma / mb);
        println!("  (armed, a trace filter matching nothing: {:.2} ns/pkt, median)", median(&mut armed_ns));
        println!("  (armed, a flow log counting every flow: {:.2} ns/pkt, median)", median(&mut log_ns));
        if with_instructions {
            // As weir-bench-pipeline does: N and N + 32000 packets, the
            // difference over 32000, so set-up cancels out.
            let per_packet = |v: &str| -> Result<f64, String> {
                let (a, b) = (instructions(v, si, 3200)?, instructions(v, si, 35_200)?);
                Ok(b.saturating_sub(a) as f64 / 32_000.0)
            };
            match (per_packet("unarmed"), per_packet("off"), per_packet("flowlog")) {
                (Ok(a), Ok(b), Ok(c)) => println!(
                    "  instructions:       unarmed {a:7.2} /pkt      off {b:7.2} /pkt      difference {:+.3} /pkt      flow log armed {c:7.2} /pkt",
                    a - b
                ),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => println!("  instructions: not measured ({e})"),
            }
        }
    }
}
