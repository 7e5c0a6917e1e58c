//! A worker: one pinned thread, run to completion. Each loop it loads the
//! current tables once, polls its rx queues (rx burst → pipeline → per-port tx
//! buffers), sends one tx burst per port that has packets, reports a quiescent
//! state, and backs off when idle. It never locks, allocates or logs.
//!
//! Packets encapsulated for a next hop whose MAC is not known yet wait in a
//! small per-worker queue ([`Pending`]); the management thread is told
//! through a lock-free queue, resolves the neighbour by ARP and publishes it,
//! and the next loop that sees it sends them. They are dropped after
//! [`PENDING_TIMEOUT`] (counted as `neighbour_timeout`).
//!
//! Worker 0 also sends what the management thread wrote into the
//! [`Outbox`] (ARP requests, gratuitous ARPs) on its own tx queue: one
//! empty-queue check per loop, on that worker only.
//!
//! `weirctl trace` and `capture`, and flow logs, reach workers through the
//! [`Tap`]: read once per loop (one atomic load, compiled out with the
//! `trace` feature off); while nothing is armed each burst runs the plain
//! pipeline (`inspect::rx_burst`), and the tx side checks the same value
//! before a burst goes out.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam::queue::ArrayQueue;

use crate::config::ForwardMode;
use crate::dpdk::{self, Mbuf, RxBurst, TxBuffer};
use crate::flow::FlowTable;
use crate::inspect::tap::{capture_tx, CAPTURE_TX};
use crate::inspect::{rx_burst, Burst, Tap, INSPECT};
use crate::neighbour::NeighEvent;
use crate::node::Outbox;
use crate::pipeline::nat::Nat;
use crate::pipeline::{overlay, Action, DropReason, Events};
use crate::snapshot::Reader;
use crate::stats::{SharedCounters, WorkerCounters};
use crate::tables::{PortId, Tables, MAX_PORTS};
use crate::wire::MacAddr;

/// Packets one worker holds while their next hop is resolved.
pub const PENDING_CAPACITY: usize = 64;
/// How long a packet may wait for its next hop (the neighbour state
/// machine's three one-second tries).
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(3);

pub struct WorkerConfig {
    pub id: usize,
    pub burst: usize,
    pub busy_poll: bool,
    pub idle_polls_before_sleep: u32,
    pub idle_sleep_max_us: u64,
}

/// Idle backoff: after `threshold` empty polls in a row, sleep 1 us, then
/// double each time up to `max_us`; any packet resets it.
struct Backoff {
    empty: u32,
    sleep_us: u64,
}

/// Reports neighbour events to the management thread; a full queue loses the
/// event (the next packet reports again), never blocks.
struct QueueEvents<'a>(&'a ArrayQueue<NeighEvent>);

impl Events for QueueEvents<'_> {
    #[inline]
    fn neighbour(&mut self, ip: Ipv4Addr, mac: MacAddr) {
        let _ = self.0.push(NeighEvent::Learned(ip, mac));
    }
}

struct Waiting {
    pkt: Mbuf,
    port: PortId,
    next_hop: Ipv4Addr,
    deadline: u64,
}

/// Packets waiting for a next hop's MAC, at most `PENDING_CAPACITY`.
struct Pending {
    slots: Vec<Waiting>,
    timeout_tsc: u64,
}

impl Pending {
    fn hold(&mut self, w: Waiting, events: &ArrayQueue<NeighEvent>, c: &WorkerCounters) {
        if self.slots.len() >= PENDING_CAPACITY {
            c.drop_reason(DropReason::NeighbourQueueFull, 1);
            return; // w.pkt is freed
        }
        if !self.slots.iter().any(|s| s.next_hop == w.next_hop) {
            let _ = events.push(NeighEvent::Miss(w.next_hop));
        }
        self.slots.push(w);
    }

    /// Sends what can be sent now, drops what waited too long.
    #[allow(clippy::too_many_arguments)]
    fn service(
        &mut self,
        t: &Tables,
        now: u64,
        tx: &mut [TxBuffer],
        dirty: &mut Dirty,
        txq: u16,
        c: &WorkerCounters,
        tt: TxTap,
    ) {
        let mut i = 0;
        while i < self.slots.len() {
            let s = &self.slots[i];
            let mac = t.neighbours.get(&s.next_hop).copied();
            if mac.is_none() && now < s.deadline {
                i += 1;
                continue;
            }
            let mut w = self.slots.swap_remove(i);
            match mac {
                Some(mac) if t.port(w.port).is_some() => {
                    overlay::set_outer_dst(&mut w.pkt, mac);
                    enqueue(tx, dirty, w.port, w.pkt, txq, c, tt);
                }
                Some(_) => c.drop_reason(DropReason::PortGone, 1),
                None => c.drop_reason(DropReason::NeighbourTimeout, 1),
            }
        }
    }
}

/// Ports with packets queued this loop.
struct Dirty {
    ports: [u16; MAX_PORTS],
    is: [bool; MAX_PORTS],
    n: usize,
}

/// The tx side's view of the tap this loop.
#[derive(Clone, Copy)]
struct TxTap<'a> {
    tap: &'a Tap,
    flags: u8,
}

impl TxTap<'_> {
    /// Copies the burst about to go out of `port` when tx capture is armed.
    #[inline(always)]
    fn before_flush(&self, port: PortId, buf: &TxBuffer) {
        if INSPECT && self.flags & CAPTURE_TX != 0 {
            capture_tx(self.tap, port, buf.frames(), dpdk::tsc());
        }
    }
}

#[inline]
fn enqueue(tx: &mut [TxBuffer], dirty: &mut Dirty, out: PortId, m: Mbuf, txq: u16, c: &WorkerCounters, tt: TxTap) {
    let o = usize::from(out);
    if o >= MAX_PORTS {
        c.drop_reason(DropReason::PortGone, 1);
        return;
    }
    if tx[o].is_full() {
        flush(&mut tx[o], out, txq, c, tt);
    }
    if tx[o].push(m).is_err() {
        c.drop_reason(DropReason::TxFull, 1);
    }
    if !dirty.is[o] {
        dirty.is[o] = true;
        dirty.ports[dirty.n] = out;
        dirty.n += 1;
    }
}

/// What a worker shares with the management thread besides its tables.
pub struct Links {
    pub events: Arc<ArrayQueue<NeighEvent>>,
    /// Worker 0's only: the management thread's frames to send.
    pub outbox: Option<Arc<Outbox>>,
    /// The flow table's clock: TSC ticks per millisecond (`Node::tsc_per_ms`).
    pub tsc_per_ms: u64,
}

pub fn run(
    cfg: WorkerConfig,
    mut tables: Reader<Tables>,
    counters: SharedCounters,
    links: Links,
    flows: Arc<FlowTable>,
    tap: Arc<Tap>,
    stop: Arc<AtomicBool>,
) {
    let txq = cfg.id as u16;
    let mut rx = RxBurst::default();
    let mut tx: Vec<TxBuffer> = (0..MAX_PORTS).map(|_| TxBuffer::default()).collect();
    let mut dirty = Dirty { ports: [0; MAX_PORTS], is: [false; MAX_PORTS], n: 0 };
    let mut pending = Pending {
        slots: Vec::with_capacity(PENDING_CAPACITY),
        timeout_tsc: dpdk::tsc_hz().saturating_mul(PENDING_TIMEOUT.as_secs()).max(1),
    };
    let mut backoff = Backoff { empty: 0, sleep_us: 1 };
    let c = &*counters;
    let Links { events, outbox, tsc_per_ms } = links;
    let tsc_per_ms = tsc_per_ms.max(1);
    let mut ev = QueueEvents(&events);

    while !stop.load(Ordering::Relaxed) {
        let t = tables.load();
        let nat = Nat {
            flows: &flows,
            now_ms: dpdk::tsc() / tsc_per_ms,
            worker: cfg.id as u16,
            workers: t.rx_plan.len() as u16,
            dry: None,
        };
        // What weirctl trace / capture armed: one load per loop.
        let flags = if INSPECT { tap.flags() } else { 0 };
        let tt = TxTap { tap: &tap, flags };
        let mut got = 0usize;
        let plan = t.rx_plan.get(cfg.id).map(Vec::as_slice).unwrap_or(&[]);
        if !pending.slots.is_empty() {
            pending.service(t, dpdk::tsc(), &mut tx, &mut dirty, txq, c, tt);
        }
        if let Some(outbox) = &outbox {
            while let Some((port, m)) = outbox.pop() {
                if t.port(port).is_some() {
                    enqueue(&mut tx, &mut dirty, port, m, txq, c, tt);
                } else {
                    c.drop_reason(DropReason::PortGone, 1);
                }
            }
        }
        for rq in plan {
            let n = rx.fill(rq.port, rq.queue, cfg.burst);
            if n == 0 {
                continue;
            }
            got += n;
            let pc = &c.ports[usize::from(rq.port)];
            pc.rx_packets.add(n as u64);
            if t.mode == ForwardMode::Io {
                // Benchmark mode: the burst goes out of the peer port as it
                // came, like testpmd's io forwarding (bytes: see the driver's).
                match t.io_peer.get(usize::from(rq.port)).copied().flatten() {
                    Some(peer) => {
                        let f = rx.send_all(peer, txq);
                        c.ports[usize::from(peer)].tx_packets.add(f.sent);
                        if f.dropped > 0 {
                            c.drop_reason(DropReason::TxFull, f.dropped);
                        }
                    }
                    None => c.drop_reason(DropReason::PortGone, n as u64),
                }
                continue;
            }
            pc.rx_bytes.add(rx.bytes());
            let in_port = rq.port;
            let b = Burst {
                tables: t,
                nat: &nat,
                tap: &tap,
                flags,
                worker: cfg.id as u16,
                port: in_port,
                clock: dpdk::tsc,
            };
            rx_burst::<INSPECT, _, _, _, _>(&b, &mut rx, &mut ev, |m, a| {
                let out = match a {
                    Action::Forward(p) => p,
                    Action::Reply(kind) => {
                        c.reply(kind, 1);
                        in_port
                    }
                    Action::Drop(reason) => {
                        c.drop_reason(reason, 1);
                        return; // m is freed here
                    }
                    Action::Consumed(kind) => {
                        c.consumed[kind as usize].add(1);
                        return;
                    }
                    Action::Resolve { port, next_hop } => {
                        let deadline = dpdk::tsc().saturating_add(pending.timeout_tsc);
                        pending.hold(Waiting { pkt: m, port, next_hop, deadline }, &events, c);
                        return;
                    }
                };
                enqueue(&mut tx, &mut dirty, out, m, txq, c, tt);
            });
        }
        for &p in &dirty.ports[..dirty.n] {
            flush(&mut tx[usize::from(p)], p, txq, c, tt);
            dirty.is[usize::from(p)] = false;
        }
        dirty.n = 0;
        let no_queues = plan.is_empty();
        c.generation.set(t.generation);
        c.polls.add(1);
        // Nothing from this loop's tables is used past this point.
        tables.quiescent();

        if got > 0 {
            c.busy_polls.add(1);
            backoff.empty = 0;
            backoff.sleep_us = 1;
        } else if !cfg.busy_poll {
            backoff.empty = backoff.empty.saturating_add(1);
            if backoff.empty >= cfg.idle_polls_before_sleep || no_queues {
                std::thread::sleep(Duration::from_micros(backoff.sleep_us));
                c.idle_sleeps.add(1);
                backoff.sleep_us = (backoff.sleep_us * 2).min(cfg.idle_sleep_max_us.max(1));
            }
        }
    }
}

#[inline]
fn flush(buf: &mut TxBuffer, port: u16, queue: u16, c: &WorkerCounters, tt: TxTap) {
    tt.before_flush(port, buf);
    let f = buf.flush(port, queue);
    let pc = &c.ports[usize::from(port)];
    pc.tx_packets.add(f.sent);
    pc.tx_bytes.add(f.bytes);
    if f.dropped > 0 {
        c.drop_reason(DropReason::TxFull, f.dropped);
    }
}
