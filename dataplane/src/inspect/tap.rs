//! The workers' side of trace and capture: the [`Tap`] the management
//! thread arms, and [`rx_burst`], the loop a worker runs over each rx burst.
//!
//! Unarmed, the tap costs a worker one relaxed atomic load per loop
//! ([`Tap::flags`]) and one branch per burst; `rx_burst` is then the plain
//! per-packet loop over the `NoTrace` pipeline. Armed, the burst takes the
//! cold path: each packet is matched against the session's filter; a
//! traced packet runs through the recording pipeline and its record goes to
//! a bounded queue; a captured packet is copied into one of the session's
//! preallocated buffers. Nothing on either path allocates, locks or logs:
//! the queues and buffers are made by the management thread when it arms
//! the tap, and a full queue only loses the copy (counted), never the packet.
//!
//! A flow log ([`super::flowlog`]) is one more flag and session: armed,
//! each packet of the burst runs the pipeline with the [`Logged`] tracer
//! (with a trace's recorder inside for a traced packet), which hands the
//! NAT stage's flow events to the session.
//!
//! Sessions reach workers through `ArcSwapOption`s, read only when the flag
//! says so; the management thread stores a session before setting its flag,
//! and to stop clears the flag, swaps the session out and waits for every
//! worker to pass a quiescent state before it drops it, so the last
//! reference (and the freeing) is the management thread's.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use crossbeam::queue::ArrayQueue;

use super::flowlog::{Ctx, FlowLogSession, Logged};
use super::Filter;
use crate::pipeline::nat::Nat;
use crate::pipeline::{self, Action, Events, NoTrace, PacketBuf, Recorder};
use crate::tables::{PortId, Tables};

/// Flag bits of [`Tap::flags`].
pub const TRACE: u8 = 1;
pub const CAPTURE_RX: u8 = 2;
pub const CAPTURE_TX: u8 = 4;
pub const FLOWLOG: u8 = 8;

/// What workers look at to know whether to trace or capture.
#[derive(Default)]
pub struct Tap {
    flags: AtomicU8,
    trace: ArcSwapOption<TraceSession>,
    capture: ArcSwapOption<CaptureSession>,
    flowlog: ArcSwapOption<FlowLogSession>,
}

impl Tap {
    /// What is armed (0: nothing). One relaxed load: the workers' check.
    #[inline(always)]
    pub fn flags(&self) -> u8 {
        self.flags.load(Ordering::Acquire)
    }

    /// Arms tracing with `s` (management thread).
    pub fn arm_trace(&self, s: Arc<TraceSession>) {
        self.trace.store(Some(s));
        self.flags.fetch_or(TRACE, Ordering::Release);
    }

    /// Arms capture with `s` (management thread).
    pub fn arm_capture(&self, s: Arc<CaptureSession>) {
        let bits = if s.rx { CAPTURE_RX } else { 0 } | if s.tx { CAPTURE_TX } else { 0 };
        self.capture.store(Some(s));
        self.flags.fetch_or(bits, Ordering::Release);
    }

    /// Disarms tracing; returns the session, which workers may still hold
    /// until they pass a quiescent state.
    pub fn disarm_trace(&self) -> Option<Arc<TraceSession>> {
        self.flags.fetch_and(!TRACE, Ordering::Release);
        self.trace.swap(None)
    }

    pub fn disarm_capture(&self) -> Option<Arc<CaptureSession>> {
        self.flags.fetch_and(!(CAPTURE_RX | CAPTURE_TX), Ordering::Release);
        self.capture.swap(None)
    }

    /// Arms the flow log `s` (management thread).
    pub fn arm_flowlog(&self, s: Arc<FlowLogSession>) {
        self.flowlog.store(Some(s));
        self.flags.fetch_or(FLOWLOG, Ordering::Release);
    }

    /// Disarms the flow log; workers may hold the session until they pass
    /// a quiescent state.
    pub fn disarm_flowlog(&self) -> Option<Arc<FlowLogSession>> {
        self.flags.fetch_and(!FLOWLOG, Ordering::Release);
        self.flowlog.swap(None)
    }
}

/// One traced packet, as a worker records it.
#[derive(Clone, Copy)]
pub struct TraceRecord {
    pub worker: u16,
    pub port: PortId,
    /// The worker's clock (TSC) when the burst was taken.
    pub tsc: u64,
    pub generation: u64,
    /// The frame as it arrived, for its one-line description: the first
    /// bytes (enough for outer and inner headers).
    pub head: [u8; HEAD],
    pub head_len: u16,
    pub steps: Recorder,
}

/// Bytes of a traced frame kept to describe it.
pub const HEAD: usize = 128;

/// A trace: which packets, how many more, and where the records go.
pub struct TraceSession {
    pub filter: Filter,
    /// Packets still to trace; a worker claims one before recording.
    remaining: AtomicU32,
    pub records: ArrayQueue<TraceRecord>,
}

impl TraceSession {
    pub fn new(filter: Filter, count: u32) -> TraceSession {
        let count = count.max(1);
        TraceSession { filter, remaining: AtomicU32::new(count), records: ArrayQueue::new(count as usize) }
    }

    /// Packets not claimed yet.
    pub fn remaining(&self) -> u32 {
        self.remaining.load(Ordering::Relaxed)
    }

    fn claim(&self) -> bool {
        self.remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
    }
}

/// One captured packet: its buffer comes from the session's free list and
/// goes back there once written out.
pub struct Captured {
    pub tsc: u64,
    pub port: PortId,
    pub tx: bool,
    pub orig_len: u32,
    pub data: Vec<u8>,
}

/// A capture of one port.
pub struct CaptureSession {
    pub filter: Filter,
    pub port: PortId,
    pub rx: bool,
    pub tx: bool,
    pub snaplen: usize,
    /// Packets still to capture.
    remaining: AtomicU64,
    pub full: ArrayQueue<Captured>,
    pub free: ArrayQueue<Vec<u8>>,
    /// Matching packets not captured because every buffer was in use.
    pub lost: AtomicU64,
}

impl CaptureSession {
    /// A session with `buffers` buffers of `snaplen` bytes.
    pub fn new(
        filter: Filter,
        port: PortId,
        dir: super::CaptureDir,
        snaplen: usize,
        count: u64,
        buffers: usize,
    ) -> Self {
        let buffers = buffers.max(1);
        let free = ArrayQueue::new(buffers);
        for _ in 0..buffers {
            let _ = free.push(Vec::with_capacity(snaplen));
        }
        let (rx, tx) = match dir {
            super::CaptureDir::Rx => (true, false),
            super::CaptureDir::Tx => (false, true),
            super::CaptureDir::Both => (true, true),
        };
        CaptureSession {
            filter,
            port,
            rx,
            tx,
            snaplen,
            remaining: AtomicU64::new(count),
            full: ArrayQueue::new(buffers),
            free,
            lost: AtomicU64::new(0),
        }
    }

    /// Packets not taken yet.
    pub fn remaining(&self) -> u64 {
        self.remaining.load(Ordering::Relaxed)
    }

    /// Copies `frame` if it is wanted and a buffer is free.
    #[inline]
    pub fn take(&self, port: PortId, tx: bool, frame: &[u8], tsc: u64) {
        if port != self.port || !self.filter.matches(port, frame) {
            return;
        }
        if self.remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_err() {
            return;
        }
        let Some(mut data) = self.free.pop() else {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return;
        };
        data.clear();
        // Within the capacity reserved at creation: no allocation.
        data.extend_from_slice(&frame[..frame.len().min(self.snaplen)]);
        let c = Captured { tsc, port, tx, orig_len: frame.len() as u32, data };
        if let Err(c) = self.full.push(c) {
            // Cannot happen (as many slots as buffers); keep the buffer.
            let _ = self.free.push(c.data);
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What a worker's rx burst runs with.
pub struct Burst<'a> {
    pub tables: &'a Tables,
    pub nat: &'a Nat<'a>,
    pub tap: &'a Tap,
    /// `tap.flags()` as read once this loop.
    pub flags: u8,
    pub worker: u16,
    pub port: PortId,
    /// The worker's clock, read on the armed path only.
    pub clock: fn() -> u64,
}

/// Runs one rx burst through the pipeline as a worker does, and gives each
/// packet with its action to `sink`. `INSPECT` false compiles the tap check
/// out (the `trace` feature off); true, an unarmed tap costs one branch on
/// `b.flags` per burst.
#[inline(always)]
pub fn rx_burst<const INSPECT: bool, B, I, E, F>(b: &Burst, pkts: I, ev: &mut E, mut sink: F)
where
    B: PacketBuf,
    I: Iterator<Item = B>,
    E: Events,
    F: FnMut(B, Action),
{
    if INSPECT && b.flags & (TRACE | CAPTURE_RX | FLOWLOG) != 0 {
        return inspected_burst(b, pkts, ev, sink);
    }
    for mut m in pkts {
        let a = pipeline::process_full(b.tables, Some(b.nat), b.port, &mut m, ev);
        sink(m, a);
    }
}

/// The armed path of [`rx_burst`].
#[cold]
#[inline(never)]
fn inspected_burst<B, I, E, F>(b: &Burst, pkts: I, ev: &mut E, mut sink: F)
where
    B: PacketBuf,
    I: Iterator<Item = B>,
    E: Events,
    F: FnMut(B, Action),
{
    let tsc = (b.clock)();
    let trace = if b.flags & TRACE != 0 { b.tap.trace.load_full() } else { None };
    let capture = if b.flags & CAPTURE_RX != 0 { b.tap.capture.load_full() } else { None };
    let flowlog = if b.flags & FLOWLOG != 0 { b.tap.flowlog.load_full() } else { None };
    let ctx = Ctx { worker: b.worker, port: b.port, generation: b.tables.generation, now_ms: b.nat.now_ms };
    for mut m in pkts {
        if let Some(c) = capture.as_deref().filter(|c| c.rx) {
            c.take(b.port, false, m.data(), tsc);
        }
        let traced = trace.as_deref().filter(|s| s.filter.matches(b.port, m.data()) && s.claim());
        let a = match traced {
            Some(s) => {
                let mut rec = TraceRecord {
                    worker: b.worker,
                    port: b.port,
                    tsc,
                    generation: b.tables.generation,
                    head: [0; HEAD],
                    head_len: 0,
                    steps: Recorder::default(),
                };
                let n = m.data().len().min(HEAD);
                rec.head[..n].copy_from_slice(&m.data()[..n]);
                rec.head_len = n as u16;
                let a = match flowlog.as_deref() {
                    Some(log) => {
                        let mut tr = Logged { inner: &mut rec.steps, log, ctx };
                        pipeline::process_traced(b.tables, Some(b.nat), b.port, &mut m, ev, &mut tr)
                    }
                    None => pipeline::process_traced(b.tables, Some(b.nat), b.port, &mut m, ev, &mut rec.steps),
                };
                // As many slots as claims: never full.
                let _ = s.records.push(rec);
                a
            }
            None => match flowlog.as_deref() {
                Some(log) => {
                    let mut tr = Logged { inner: NoTrace, log, ctx };
                    pipeline::process_traced(b.tables, Some(b.nat), b.port, &mut m, ev, &mut tr)
                }
                None => pipeline::process_full(b.tables, Some(b.nat), b.port, &mut m, ev),
            },
        };
        sink(m, a);
    }
}

/// Copies what a tx burst of `port` is about to send, when capture of its tx
/// side is armed (`flags` as read this loop).
#[cold]
#[inline(never)]
pub fn capture_tx<'f>(tap: &Tap, port: PortId, frames: impl Iterator<Item = &'f [u8]>, tsc: u64) {
    let Some(c) = tap.capture.load_full() else { return };
    if c.tx && c.port == port {
        for f in frames {
            c.take(port, true, f, tsc);
        }
    }
}
