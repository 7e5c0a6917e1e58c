//! Per-worker counters: one writer (the worker), any number of readers.
//!
//! A [`Counter`] is an `AtomicU64` written with a plain load + store (no
//! locked read-modify-write: the worker is its only writer), read with a
//! relaxed load. Workers add once per burst, not once per packet where they
//! can. Readers sum over workers.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam::utils::CachePadded;

use crate::pipeline::{Consumed, DropReason, ReplyKind};
use crate::tables::MAX_PORTS;

#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker may call this.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Overwrites the value. Only the owning worker may call this.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default, Debug)]
pub struct PortCounters {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
}

#[derive(Debug)]
pub struct WorkerCounters {
    pub ports: Vec<PortCounters>,
    pub drops: Vec<Counter>,
    pub replies: Vec<Counter>,
    pub consumed: Vec<Counter>,
    /// Loop iterations that polled at least one queue.
    pub polls: Counter,
    /// Polls that received something.
    pub busy_polls: Counter,
    pub idle_sleeps: Counter,
    /// The table generation this worker last ran.
    pub generation: Counter,
}

impl Default for WorkerCounters {
    fn default() -> Self {
        WorkerCounters {
            ports: (0..MAX_PORTS).map(|_| PortCounters::default()).collect(),
            drops: (0..DropReason::COUNT).map(|_| Counter::default()).collect(),
            replies: (0..ReplyKind::COUNT).map(|_| Counter::default()).collect(),
            consumed: (0..Consumed::COUNT).map(|_| Counter::default()).collect(),
            polls: Counter::default(),
            busy_polls: Counter::default(),
            idle_sleeps: Counter::default(),
            generation: Counter::default(),
        }
    }
}

pub type SharedCounters = std::sync::Arc<CachePadded<WorkerCounters>>;

impl WorkerCounters {
    #[inline]
    pub fn drop_reason(&self, r: DropReason, n: u64) {
        self.drops[r as usize].add(n);
    }

    #[inline]
    pub fn reply(&self, k: ReplyKind, n: u64) {
        self.replies[k as usize].add(n);
    }

    /// Forgets a port's counters (its id may be reused by the next port).
    /// Called by the management thread after the port is gone from every
    /// worker's plan; the owning worker does not write them any more.
    pub fn reset_port(&self, port: usize) {
        if let Some(p) = self.ports.get(port) {
            for c in [&p.rx_packets, &p.rx_bytes, &p.tx_packets, &p.tx_bytes] {
                c.0.store(0, Ordering::Relaxed);
            }
        }
    }
}
