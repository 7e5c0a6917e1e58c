//! A worker: one pinned thread, run to completion. Each loop it loads the
//! current tables once, polls its rx queues (rx burst → pipeline → per-port tx
//! buffers), sends one tx burst per port that has packets, reports a quiescent
//! state, and backs off when idle. It never locks, allocates or logs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::ForwardMode;
use crate::dpdk::{RxBurst, TxBuffer};
use crate::pipeline::{self, Action, DropReason};
use crate::snapshot::Reader;
use crate::stats::SharedCounters;
use crate::tables::{Tables, MAX_PORTS};

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

pub fn run(
    cfg: WorkerConfig,
    mut tables: Reader<Tables>,
    counters: SharedCounters,
    stop: Arc<AtomicBool>,
) {
    let txq = cfg.id as u16;
    let mut rx = RxBurst::default();
    let mut tx: Vec<TxBuffer> = (0..MAX_PORTS).map(|_| TxBuffer::default()).collect();
    let mut dirty = [0u16; MAX_PORTS];
    let mut is_dirty = [false; MAX_PORTS];
    let mut backoff = Backoff {
        empty: 0,
        sleep_us: 1,
    };
    let c = &*counters;

    while !stop.load(Ordering::Relaxed) {
        let t = tables.load();
        let mut ndirty = 0usize;
        let mut got = 0usize;
        let plan = t.rx_plan.get(cfg.id).map(Vec::as_slice).unwrap_or(&[]);
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
            for mut m in &mut rx {
                let action = pipeline::process(t, rq.port, &mut m);
                let out = match action {
                    Action::Forward(p) => p,
                    Action::Reply(kind) => {
                        c.reply(kind, 1);
                        rq.port
                    }
                    Action::Drop(reason) => {
                        c.drop_reason(reason, 1);
                        continue; // m is freed here
                    }
                };
                let o = usize::from(out);
                if o >= MAX_PORTS {
                    c.drop_reason(DropReason::PortGone, 1);
                    continue;
                }
                if tx[o].is_full() {
                    flush(&mut tx[o], out, txq, c);
                }
                if tx[o].push(m).is_err() {
                    c.drop_reason(DropReason::TxFull, 1);
                }
                if !is_dirty[o] {
                    is_dirty[o] = true;
                    dirty[ndirty] = out;
                    ndirty += 1;
                }
            }
        }
        for &p in &dirty[..ndirty] {
            flush(&mut tx[usize::from(p)], p, txq, c);
            is_dirty[usize::from(p)] = false;
        }
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
fn flush(buf: &mut TxBuffer, port: u16, queue: u16, c: &crate::stats::WorkerCounters) {
    let f = buf.flush(port, queue);
    let pc = &c.ports[usize::from(port)];
    pc.tx_packets.add(f.sent);
    pc.tx_bytes.add(f.bytes);
    if f.dropped > 0 {
        c.drop_reason(DropReason::TxFull, f.dropped);
    }
}
