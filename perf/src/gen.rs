//! The DPDK half of weir-pktgen: EAL, a pool, the ports, and one loop on
//! one lcore that offers frames at a rate (a token bucket on the TSC) and
//! receives what comes back: counts, sequence order, and latency from the
//! TSC stamp in each frame into an HDR histogram.
//!
//! Everything goes through `weir_dataplane::dpdk` (the safe layer): this
//! module has no `unsafe`. The loop allocates nothing: buffers come from
//! the pool in bulk, received bursts are read in place and freed in bulk.

use std::io::{IsTerminal, Write};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use weir_dataplane::config::MAX_BURST;
use weir_dataplane::dpdk::port::{self, PortId, QueueConfig};
use weir_dataplane::dpdk::{self, Eal, Mbuf, Mempool, RxBurst, TxBuffer};
use weir_dataplane::pipeline::PacketBuf;
use weir_dataplane::wire::MacAddr;

use crate::report::Priming;
use crate::search::{Latency, TrialResult};
use crate::traffic::{self, Scenario, Stamp, Template};

/// How the generator is set up.
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// EAL arguments, the program name first.
    pub eal_args: Vec<String>,
    /// Each port's devargs (`net_virtio_user0,path=...`), probed in order.
    pub ports: Vec<String>,
    /// Indexes into `ports`: where frames go out and where they come back.
    pub tx_port: usize,
    pub rx_port: usize,
    /// Frames per tx and rx burst (1..=64).
    pub burst: usize,
    /// Queue pairs per port: frames leave by queue 0, and every rx queue
    /// is polled (a DUT may answer on another queue than 0: OVS sends from
    /// its PMD thread's tx queue).
    pub queues: u16,
    pub mbufs: u32,
    pub descriptors: u16,
    /// How long to wait for every port's link (a vhost peer to connect).
    pub link_timeout: Duration,
    /// Addresses whose ARP requests the generator answers with its port's MAC.
    pub arp_reply: Vec<Ipv4Addr>,
    /// UDP port of VXLAN, to find the stamp inside returning VXLAN frames.
    pub vxlan_port: u16,
    /// Print a progress line on stderr.
    pub progress: bool,
    /// Redraw it in place (`\r`) even when stderr is not a terminal (a
    /// harness that relays it to one).
    pub live_progress: bool,
}

/// The generator: owns EAL, its pool and ports. Dropping it removes the
/// ports and cleans up EAL.
pub struct Generator {
    scenario: Scenario,
    template: Template,
    ports: Vec<PortId>,
    macs: Vec<MacAddr>,
    tx: PortId,
    rx: PortId,
    queues: u16,
    burst: usize,
    hz: u64,
    arp_reply: Vec<Ipv4Addr>,
    vxlan_port: u16,
    progress: bool,
    tty: bool,
    /// The next flow of a new-flow scenario (runs on over the whole run).
    next_flow: u64,
    /// Times the new-flow counter went past the scenario's tuple space.
    pub flow_wraps: u64,
    trial_id: u16,
    hist: Histogram<u64>,
    fresh: Vec<Mbuf>,
    txbuf: TxBuffer,
    rxb: RxBurst,
    replies: Vec<(PortId, Vec<u8>)>,
    pool: Mempool,
    // Last: dropped (rte_eal_cleanup) after everything above.
    _eal: Eal,
}

/// Counters of one receive pass.
#[derive(Debug, Default, Clone, Copy)]
struct RxCount {
    received: u64,
    late: u64,
    reordered: u64,
    other: u64,
    max_seq: Option<u32>,
    last_tsc: u64,
}

impl Generator {
    /// Starts EAL, probes and starts the ports, waits for their links.
    pub fn start(cfg: &GenConfig, scenario: Scenario, dst_mac: Option<MacAddr>) -> Result<Generator, String> {
        if cfg.ports.is_empty() || cfg.tx_port >= cfg.ports.len() || cfg.rx_port >= cfg.ports.len() {
            return Err(format!(
                "tx port {} / rx port {}: want indexes into the {} --port(s) given",
                cfg.tx_port,
                cfg.rx_port,
                cfg.ports.len()
            ));
        }
        let burst = cfg.burst.clamp(1, MAX_BURST);
        let eal = Eal::init(&cfg.eal_args).map_err(|e| e.to_string())?;
        let hz = dpdk::tsc_hz();
        if hz == 0 {
            return Err("EAL reports a TSC frequency of 0".into());
        }
        let pool = Mempool::new(&eal, "pktgen", cfg.mbufs, 256).map_err(|e| e.to_string())?;
        let mut ports = Vec::new();
        let mut macs = Vec::new();
        for devargs in &cfg.ports {
            let name = devargs.split(',').next().unwrap_or_default();
            let id = port::attach(devargs, name).map_err(|e| e.to_string())?;
            let q = QueueConfig {
                rx_queues: cfg.queues.max(1),
                tx_queues: cfg.queues.max(1),
                rx_descriptors: cfg.descriptors,
                tx_descriptors: cfg.descriptors,
            };
            port::setup(id, q, &pool).map_err(|e| e.to_string())?;
            macs.push(port::mac_addr(id).map_err(|e| e.to_string())?);
            ports.push(id);
        }
        let template = scenario.template(dst_mac);
        let hist = Histogram::new_with_bounds(1, hz.saturating_mul(60).max(2), 3)
            .map_err(|e| format!("latency histogram: {e}"))?;
        let g = Generator {
            template,
            scenario,
            tx: ports[cfg.tx_port],
            rx: ports[cfg.rx_port],
            ports,
            macs,
            queues: cfg.queues.max(1),
            burst,
            hz,
            arp_reply: cfg.arp_reply.clone(),
            vxlan_port: cfg.vxlan_port,
            progress: cfg.progress,
            tty: cfg.live_progress || std::io::stderr().is_terminal(),
            next_flow: 0,
            flow_wraps: 0,
            trial_id: 0,
            hist,
            fresh: Vec::with_capacity(MAX_BURST),
            txbuf: TxBuffer::default(),
            rxb: RxBurst::default(),
            replies: Vec::new(),
            pool,
            _eal: eal,
        };
        g.wait_links(cfg)?;
        Ok(g)
    }

    fn wait_links(&self, cfg: &GenConfig) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let down: Vec<&str> = self
                .ports
                .iter()
                .zip(&cfg.ports)
                .filter(|(p, _)| !port::link(**p).0)
                .map(|(_, d)| d.as_str())
                .collect();
            if down.is_empty() {
                return Ok(());
            }
            crate::proc::check_interrupted()?;
            if start.elapsed() >= cfg.link_timeout {
                return Err(format!("link still down after {:?}: {}", cfg.link_timeout, down.join("; ")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn tsc_hz(&self) -> u64 {
        self.hz
    }

    pub fn port_macs(&self) -> &[MacAddr] {
        &self.macs
    }

    /// Frames left in the pool (a leak check for the caller).
    pub fn mbufs_free(&self) -> u32 {
        self.pool.available()
    }

    fn cycles(&self, secs: f64) -> u64 {
        (secs * self.hz as f64) as u64
    }

    /// The flow of the `seq`-th frame of a trial.
    #[inline]
    fn flow(&mut self, seq: u32) -> u32 {
        if self.scenario.kind.new_flows() {
            let f = self.next_flow;
            self.next_flow += 1;
            if f > 0 && f.is_multiple_of(u64::from(self.scenario.flows)) {
                self.flow_wraps += 1;
            }
            (f % u64::from(self.scenario.flows)) as u32
        } else {
            self.scenario.flow_of(u64::from(seq))
        }
    }

    /// Builds and sends up to `n` frames of trial `id` from `*seq` on.
    /// Returns (offered, refused by the tx queue, whether the pool was empty).
    #[inline]
    fn send(&mut self, n: usize, id: u16, seq: &mut u32) -> (u64, u64, bool) {
        if !self.pool.alloc_bulk(&mut self.fresh, n) {
            return (0, 0, true);
        }
        let now = dpdk::tsc();
        let len = self.template.len();
        let mut fresh = std::mem::take(&mut self.fresh);
        for mut m in fresh.drain(..) {
            if m.set_len(len).is_err() {
                continue; // a frame longer than a buffer: refused at start-up
            }
            let flow = self.flow(*seq);
            self.template.write(m.data_mut(), flow, &Stamp { trial: id, seq: *seq, tsc: now });
            *seq = seq.wrapping_add(1);
            let _ = self.txbuf.push(m);
        }
        self.fresh = fresh;
        let f = self.txbuf.flush(self.tx, 0);
        if self.scenario.kind.new_flows() {
            // The refused frames are the burst's last ones: their tuples
            // never reached the device, so the next frames take them.
            self.next_flow = self.next_flow.saturating_sub(f.dropped);
        }
        (f.sent + f.dropped, f.dropped, false)
    }

    /// Polls every rx queue of `port` once; counts and times what belongs
    /// to trial `id`.
    #[inline]
    fn receive(&mut self, port: PortId, id: u16, c: &mut RxCount) -> usize {
        let mut n = 0;
        for q in 0..self.queues {
            n += self.receive_queue(port, q, id, c);
        }
        n
    }

    #[inline]
    fn receive_queue(&mut self, port: PortId, queue: u16, id: u16, c: &mut RxCount) -> usize {
        let n = self.rxb.fill(port, queue, self.burst);
        if n == 0 {
            return 0;
        }
        let now = dpdk::tsc();
        let mac = self.ports.iter().position(|p| *p == port).map(|i| self.macs[i]).unwrap_or(MacAddr::ZERO);
        for f in self.rxb.frames() {
            match Stamp::find(f, self.vxlan_port) {
                Some(s) if s.trial == id => {
                    c.received += 1;
                    c.last_tsc = now;
                    let _ = self.hist.record(now.saturating_sub(s.tsc).max(1));
                    match c.max_seq {
                        Some(m) if s.seq < m => c.reordered += 1,
                        _ => c.max_seq = Some(s.seq),
                    }
                }
                Some(_) => c.late += 1,
                None => match traffic::arp_answer(f, &self.arp_reply, mac) {
                    Some(a) => self.replies.push((port, a)),
                    None => c.other += 1,
                },
            }
        }
        self.rxb.free_all();
        if !self.replies.is_empty() {
            self.send_replies();
        }
        n
    }

    fn send_replies(&mut self) {
        for (port, frame) in std::mem::take(&mut self.replies) {
            let Some(mut m) = self.pool.alloc() else { continue };
            if m.set_len(frame.len()).is_ok() {
                m.data_mut().copy_from_slice(&frame);
                let mut b = TxBuffer::default();
                let _ = b.push(m);
                b.flush(port, 0);
            }
        }
    }

    /// Polls every port that is not the rx port (frames the DUT sends back
    /// that way, ARP) so their rings never fill.
    fn poll_others(&mut self, id: u16, c: &mut RxCount) {
        for i in 0..self.ports.len() {
            let p = self.ports[i];
            if p != self.rx {
                self.receive(p, id, c);
            }
        }
    }

    fn latency(&self) -> Option<Latency> {
        let h = &self.hist;
        if h.is_empty() {
            return None;
        }
        let ns = |cycles: u64| (cycles as u128 * 1_000_000_000 / u128::from(self.hz)) as u64;
        Some(Latency {
            samples: h.len(),
            min_ns: ns(h.min()),
            p50_ns: ns(h.value_at_quantile(0.50)),
            p99_ns: ns(h.value_at_quantile(0.99)),
            p999_ns: ns(h.value_at_quantile(0.999)),
            max_ns: ns(h.max()),
            mean_ns: h.mean() * 1e9 / self.hz as f64,
        })
    }

    /// Receives until nothing of trial `id` came for `quiet`, at most `max`.
    fn drain(&mut self, id: u16, c: &mut RxCount, quiet: Duration, max: Duration) {
        let start = dpdk::tsc();
        let (quiet, max) = (self.cycles(quiet.as_secs_f64()), self.cycles(max.as_secs_f64()));
        loop {
            let rx = self.rx;
            self.receive(rx, id, c);
            self.poll_others(id, c);
            let now = dpdk::tsc();
            if now.saturating_sub(start) >= max || now.saturating_sub(c.last_tsc.max(start)) >= quiet {
                return;
            }
        }
    }

    /// Offers frames at `rate` (packets per second; `None`: as fast as the
    /// generator goes) for `secs`, then waits for the stragglers.
    pub fn trial(&mut self, rate: Option<f64>, secs: f64) -> Result<TrialResult, String> {
        crate::proc::check_interrupted()?;
        self.trial_id = self.trial_id.wrapping_add(1).max(1);
        let id = self.trial_id;
        self.hist.reset();
        let burst = self.burst;
        // The bucket holds a few bursts: a generator that was held up for
        // a moment catches up a little, never by a flood.
        let depth = (4 * burst) as f64;
        let per_cycle = rate.map(|r| r / self.hz as f64);
        let (mut offered, mut refused, mut nombuf) = (0u64, 0u64, 0u64);
        let mut c = RxCount::default();
        let mut seq = 0u32;
        let mut tokens = 0.0f64;
        let start = dpdk::tsc();
        let end = start + self.cycles(secs);
        let tick = self.cycles(0.5);
        let mut next_report = start + tick;
        let mut last = start;
        let mut iter = 0u32;
        let (mut prev, mut stalled, stall_gap) = (start, 0u64, self.cycles(100e-6));
        loop {
            let now = dpdk::tsc();
            if now >= end {
                break;
            }
            let gap = now.saturating_sub(prev);
            if gap > stall_gap {
                stalled += gap;
            }
            prev = now;
            let n = match per_cycle {
                None => burst,
                Some(pc) => {
                    tokens = (tokens + now.saturating_sub(last) as f64 * pc).min(depth);
                    last = now;
                    (tokens as usize).min(burst)
                }
            };
            if n > 0 {
                let (o, r, empty) = self.send(n, id, &mut seq);
                offered += o;
                refused += r;
                nombuf += u64::from(empty);
                tokens -= o as f64;
            }
            let rx = self.rx;
            self.receive(rx, id, &mut c);
            iter = iter.wrapping_add(1);
            if iter.is_multiple_of(64) {
                self.poll_others(id, &mut c);
            }
            if self.progress && now >= next_report {
                next_report += tick;
                if crate::proc::interrupted() {
                    return Err("interrupted".into());
                }
                let el = (now - start) as f64 / self.hz as f64;
                self.show(id, rate, offered as f64 / el, c.received as f64 / el, offered, c.received, false);
            }
        }
        let seconds = (dpdk::tsc() - start) as f64 / self.hz as f64;
        self.drain(id, &mut c, Duration::from_millis(20), Duration::from_millis(500));
        let t = TrialResult {
            trial: id,
            target_pps: rate,
            seconds,
            offered,
            tx_refused: refused,
            tx_nombuf: nombuf,
            received: c.received,
            late: c.late,
            reordered: c.reordered,
            other: c.other,
            frame_size: self.scenario.frame_size,
            latency: self.latency(),
            gen_stall_ms: stalled as f64 * 1e3 / self.hz as f64,
        };
        if self.progress {
            self.show(id, rate, t.offered_pps(), t.rx_pps(), offered, c.received, true);
        }
        Ok(t)
    }

    #[allow(clippy::too_many_arguments)]
    fn show(&self, id: u16, rate: Option<f64>, off: f64, rx: f64, offered: u64, received: u64, done: bool) {
        let loss = if offered > 0 { offered.saturating_sub(received) as f64 * 100.0 / offered as f64 } else { 0.0 };
        let target = rate.map_or("max".to_string(), |r| format!("{:.3}", r / 1e6));
        let p99 = if done {
            self.latency().map_or(String::new(), |l| format!("  p99 {:.2} us", l.p99_ns as f64 / 1000.0))
        } else {
            String::new()
        };
        let line = format!(
            "  trial {id:>3}  target {target:>7} Mpps  offered {:>7.3}  rx {:>7.3} Mpps  loss {loss:>7.3} %{p99}",
            off / 1e6,
            rx / 1e6
        );
        let mut e = std::io::stderr().lock();
        if self.tty {
            let _ = write!(e, "\r\x1b[2K{line}{}", if done { "\n" } else { "" });
        } else if done {
            let _ = writeln!(e, "{line}");
        }
        let _ = e.flush();
    }

    /// Sends a burst of frames every 100 ms until one comes back (true) or
    /// `timeout` passes (false): a DUT that has just connected may need a
    /// moment before it forwards (a vhost queue enabled late).
    pub fn await_path(&mut self, timeout: Duration) -> Result<bool, String> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            crate::proc::check_interrupted()?;
            self.trial_id = self.trial_id.wrapping_add(1).max(1);
            let id = self.trial_id;
            let mut c = RxCount::default();
            let mut seq = 0;
            self.send(self.burst, id, &mut seq);
            let sent = Instant::now();
            while sent.elapsed() < Duration::from_millis(100) {
                let rx = self.rx;
                self.receive(rx, id, &mut c);
                self.poll_others(id, &mut c);
                if c.received > 0 {
                    self.drain(id, &mut c, Duration::from_millis(20), Duration::from_millis(100));
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Sends `count` frames (flows `0..count` of the scenario, or the next
    /// new flows) keeping at most `window` in flight, so the device sets up
    /// each flow without being overrun whatever its speed. Frames that do
    /// not come back within `stall` are given up on. Used to establish the
    /// flows before the trials and to check that the path works at all.
    pub fn prime(&mut self, count: u32, window: u32, stall: Duration) -> Result<Priming, String> {
        crate::proc::check_interrupted()?;
        self.trial_id = self.trial_id.wrapping_add(1).max(1);
        let id = self.trial_id;
        self.hist.reset();
        let t0 = Instant::now();
        let mut c = RxCount::default();
        let (mut seq, mut sent, mut given_up) = (0u32, 0u64, 0u64);
        let mut last_progress = Instant::now();
        let mut last_seen = 0u64;
        let mut idle_stalls = 0u32;
        while u64::from(seq) < u64::from(count) {
            let in_flight = sent.saturating_sub(c.received + given_up);
            if in_flight < u64::from(window) {
                let n = (u64::from(window) - in_flight).min(self.burst as u64).min(u64::from(count - seq)) as usize;
                // Frames the tx queue refused go again (their flows too).
                let (o, refused, _) = self.send(n, id, &mut seq);
                seq = seq.wrapping_sub(refused as u32);
                sent += o - refused;
            }
            let rx = self.rx;
            self.receive(rx, id, &mut c);
            self.poll_others(id, &mut c);
            if c.received != last_seen {
                last_seen = c.received;
                last_progress = Instant::now();
                idle_stalls = 0;
            } else if last_progress.elapsed() >= stall {
                // Whatever is still out is lost; move on.
                given_up = sent.saturating_sub(c.received);
                last_progress = Instant::now();
                idle_stalls += 1;
                crate::proc::check_interrupted()?;
                if idle_stalls >= 20 {
                    return Err(format!(
                        "priming stalled: nothing came back for {:?} ({} of {count} flows sent, {} back)",
                        stall * 20,
                        seq,
                        c.received
                    ));
                }
            }
        }
        self.drain(id, &mut c, Duration::from_millis(50), stall);
        Ok(Priming { flows: count, sent, received: c.received, seconds: t0.elapsed().as_secs_f64() })
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.txbuf.discard();
        self.fresh.clear();
        for p in &self.ports {
            let _ = port::remove(*p);
        }
    }
}
