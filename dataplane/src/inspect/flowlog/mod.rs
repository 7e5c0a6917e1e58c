//! Flow logs: a record when a tracked flow starts, when it ends (with its
//! packets and bytes each way and why it ended), and when policy denies a
//! flow's first packet — for weir-control to write as JSON lines.
//!
//! The workers' side is this module; the management thread's (arming,
//! draining, the end-of-flow sweep, names) is [`manager`].
//!
//! **Cost.** Workers see a flow log through the same [`Tap`](super::Tap)
//! as trace and capture: one flag bit of the value they load once per
//! loop. Unarmed, the packet path is exactly the plain one (the flag test
//! is the one the tap already has). Armed, bursts take the tap's cold path,
//! which runs the pipeline with a [`Logged`] tracer: its `FLOWS` constant
//! turns on the NAT stage's flow events ([`FlowEvent`]), which every other
//! instantiation compiles away. Nothing here allocates, locks or logs:
//! the session and everything it holds are made by the management thread
//! when it arms the tap.
//!
//! **Records** are fixed-size [`FlowRecord`]s in a bounded lock-free queue.
//! A full queue, the rate limit ([`RateLimit`]) and a full meter each lose
//! the record, never delay the packet, and are counted ([`Drops`]).
//!
//! **Meter.** Packets and bytes are counted only for flows that started
//! while the log was armed, in a table of the session's own (a
//! [`FlowTable`] keyed by the flow's original key, its value a copy of the
//! original direction's entry, and beside each of its slots a [`Slot`] of
//! counters). A packet of either direction finds its flow's meter by the
//! original key, which its flow entry gives (`FlowEvent::Packet::orig`).
//! The flow table itself is not changed: while the log is off, it costs
//! nothing in memory or time.
//!
//! **Ends.** A flow removed by a worker (backend gone, policy revoked, a
//! new SYN on a closed connection's ports) is reported by that worker.
//! Flow entries otherwise just expire (lookups treat them as absent); the
//! management thread's sweep ([`manager`]) walks the meter table while the
//! log is armed and reports a flow whose entry has been expired for more
//! than [`GRACE_MS`] or is gone. A worker that starts a flow with the key
//! of one that ended unseen reports that one first.
//!
//! **Who reports an end — exactly once.** A slot's `born` word is the
//! claim: 0 free, [`ENDING`] being ended, else the flow's start time + 1.
//! Whoever moves it from the value it read to `ENDING` (compare-and-swap)
//! reports the end: it reads the counters (nobody counts into an `ENDING`
//! slot), removes the meter entry, then moves `ENDING` to 0 — again by
//! compare-and-swap, so a new flow that took the slot meanwhile keeps it.
//! A worker that finds a slot `ENDING` when it starts a flow of the same
//! key waits a few spins for it, then gives up metering that flow (counted
//! as `meter_full`): workers never wait for the management thread.
//!
//! **Why a grace.** A worker reads its clock once per loop; the sweep
//! reads its own. A worker whose clock is a little behind could still find
//! (and refresh) an entry the sweep has just seen expire. Reporting only
//! entries expired for more than [`GRACE_MS`] — far longer than any loop —
//! means no worker can find them live any more, so a reported flow does not
//! come back. (A flow that does come back, e.g. from a worker stalled for
//! over a second, is simply no longer metered: its packets pass as always.)

pub mod manager;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam::queue::ArrayQueue;

use crate::flow::{FlowEntry, FlowKey, FlowTable, MAX_TIMEOUT_MS};
use crate::pipeline::{EndReason, FlowEvent, Step, Trace};
use crate::tables::acl::Decision;
use crate::tables::PortId;

pub use manager::{FlowLogs, Now};

/// How long past its timeout an entry must be before the sweep reports
/// its flow's end (see the module doc).
pub const GRACE_MS: u64 = 1000;
/// Records a session's queue holds between two drains (every few ms).
pub const QUEUE: usize = 8192;
/// Slots of the meter table at most (about half as many metered flows at
/// once; 104 bytes each: the table's 56 and the counters' 48).
pub const MAX_METER_SLOTS: usize = 1 << 20;
/// A slot's `born` while its flow's end is being reported.
pub const ENDING: u64 = u64::MAX;
/// The `worker` of records the management thread makes (the sweep).
pub const MGMT: u16 = u16::MAX;
/// The `port` of records that have none (ends).
pub const NO_PORT: PortId = PortId::MAX;

/// What a record reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Start,
    End(EndReason),
    /// Policy denied the first packet of a flow: the destination it was
    /// classified with (a Service's backend) and the decision.
    Denied {
        dst: Ipv4Addr,
        dport: u16,
        decision: Decision,
    },
}

/// One flow-log record, as a worker (or the sweep) writes it: fixed size,
/// no names (the management thread resolves them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowRecord {
    pub kind: RecordKind,
    /// When, on the workers' clock (ms).
    pub at_ms: u64,
    pub worker: u16,
    /// The port the flow's first packet came in by ([`NO_PORT`]: none).
    pub port: PortId,
    /// The tables the worker ran.
    pub generation: u64,
    /// The flow's original direction as its first packet arrived.
    pub key: FlowKey,
    /// The original direction's entry (start, end): the rewrites and the
    /// Service.
    pub entry: Option<FlowEntry>,
    /// The first and the last packet (workers' clock, ms).
    pub born_ms: u64,
    pub last_ms: u64,
    /// Original direction, reply direction.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
}

/// Records lost so far, by cause (never packets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Drops {
    /// Over the rate limit.
    pub rate_limited: u64,
    /// The queue (or the management thread's buffer) was full.
    pub queue_full: u64,
    /// No room in the meter table (the flow is not logged).
    pub meter_full: u64,
}

impl Drops {
    pub fn total(&self) -> u64 {
        self.rate_limited + self.queue_full + self.meter_full
    }
}

/// A token bucket of `burst` records refilled at `per_s` records per
/// second, lock-free: the generic cell rate algorithm, one atomic word
/// (the "theoretical arrival time", µs on the workers' clock) moved by
/// compare-and-swap. [`admit`](Self::admit) takes a token or refuses;
/// [`charge`](Self::charge) takes one whatever the level (ends of flows
/// whose start was admitted: a logged start always gets its end), running
/// into a debt of at most one more burst, which later records wait out.
#[derive(Debug)]
pub struct RateLimit {
    tat_us: AtomicU64,
    interval_us: u64,
    tolerance_us: u64,
}

impl RateLimit {
    /// `per_s` and `burst` at least 1.
    pub fn new(per_s: u32, burst: u32) -> RateLimit {
        let interval_us = (1_000_000 / u64::from(per_s.max(1))).max(1);
        RateLimit { tat_us: AtomicU64::new(0), interval_us, tolerance_us: interval_us * u64::from(burst.max(1) - 1) }
    }

    /// Takes a token at `now_ms`, if there is one.
    pub fn admit(&self, now_ms: u64) -> bool {
        let now = now_ms.saturating_mul(1000);
        let mut tat = self.tat_us.load(Ordering::Relaxed);
        loop {
            if tat > now + self.tolerance_us {
                return false;
            }
            let next = tat.max(now) + self.interval_us;
            match self.tat_us.compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(t) => tat = t,
            }
        }
    }

    /// Takes a token at `now_ms` even if there is none (the debt is capped).
    pub fn charge(&self, now_ms: u64) {
        let now = now_ms.saturating_mul(1000);
        let cap = now + 2 * self.tolerance_us + 2 * self.interval_us;
        let _ = self.tat_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
            Some((tat.max(now) + self.interval_us).min(cap.max(tat)))
        });
    }
}

/// The counters beside one meter-table slot.
#[derive(Debug, Default)]
pub struct Slot {
    /// 0: free; [`ENDING`]: its end is being reported; else born ms + 1.
    born: AtomicU64,
    last: AtomicU64,
    packets: [AtomicU64; 2],
    bytes: [AtomicU64; 2],
}

impl Slot {
    fn live(b: u64) -> bool {
        b != 0 && b != ENDING
    }
}

/// One flow log: what workers write to while it is armed.
pub struct FlowLogSession {
    pub limit: RateLimit,
    pub records: ArrayQueue<FlowRecord>,
    /// Original key → a copy of the original direction's entry (its state
    /// kept current); `slots[i]` counts the flow in slot `i`.
    index: FlowTable,
    slots: Box<[Slot]>,
    rate_limited: AtomicU64,
    queue_full: AtomicU64,
    meter_full: AtomicU64,
}

/// Who writes a record, and when.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub worker: u16,
    pub port: PortId,
    pub generation: u64,
    pub now_ms: u64,
}

impl FlowLogSession {
    /// A session for a flow table of `flow_slots` slots: its meter has half
    /// as many (at most [`MAX_METER_SLOTS`]) — one per flow, the flow table
    /// having two — so it is as full as the flow table at most.
    pub fn new(per_s: u32, burst: u32, flow_slots: usize) -> FlowLogSession {
        let index = FlowTable::new((flow_slots / 2).min(MAX_METER_SLOTS));
        let slots = (0..index.capacity()).map(|_| Slot::default()).collect();
        FlowLogSession {
            limit: RateLimit::new(per_s, burst),
            records: ArrayQueue::new(QUEUE),
            index,
            slots,
            rate_limited: AtomicU64::new(0),
            queue_full: AtomicU64::new(0),
            meter_full: AtomicU64::new(0),
        }
    }

    pub fn drops(&self) -> Drops {
        Drops {
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            queue_full: self.queue_full.load(Ordering::Relaxed),
            meter_full: self.meter_full.load(Ordering::Relaxed),
        }
    }

    /// Counts `n` records lost on the management side (its buffer full).
    pub fn lost(&self, n: u64) {
        self.queue_full.fetch_add(n, Ordering::Relaxed);
    }

    /// Slots of the meter table.
    pub fn meter_slots(&self) -> usize {
        self.slots.len()
    }

    /// Flows metered now.
    pub fn metered(&self) -> usize {
        self.slots.iter().filter(|s| Slot::live(s.born.load(Ordering::Relaxed))).count()
    }

    /// What a worker's [`Logged`] tracer hands over. Out of line: it is
    /// only ever reached on the tap's cold path.
    #[inline(never)]
    pub fn event(&self, ctx: &Ctx, ev: FlowEvent) {
        match ev {
            FlowEvent::Started { orig, hash, entry, len } => self.started(ctx, orig, hash, entry, len),
            FlowEvent::Packet { orig, reply, len } => self.packet(orig, reply, len, ctx.now_ms),
            FlowEvent::State { orig, state } => self.state(orig, state, ctx.now_ms),
            FlowEvent::Ended { orig, why } => {
                if let Some((i, copy)) = self.index.lookup_at(&orig, orig.hash(), ctx.now_ms) {
                    self.end(ctx, i, orig, copy, why);
                }
            }
            FlowEvent::Denied { key, dst, dport, decision } => {
                if !self.limit.admit(ctx.now_ms) {
                    self.rate_limited.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let rec = FlowRecord {
                    kind: RecordKind::Denied { dst, dport, decision },
                    entry: None,
                    born_ms: ctx.now_ms,
                    last_ms: ctx.now_ms,
                    packets: [0; 2],
                    bytes: [0; 2],
                    ..self.record(ctx, key)
                };
                self.push(rec);
            }
        }
    }

    fn record(&self, ctx: &Ctx, key: FlowKey) -> FlowRecord {
        FlowRecord {
            kind: RecordKind::Start,
            at_ms: ctx.now_ms,
            worker: ctx.worker,
            port: ctx.port,
            generation: ctx.generation,
            key,
            entry: None,
            born_ms: 0,
            last_ms: 0,
            packets: [0; 2],
            bytes: [0; 2],
        }
    }

    fn push(&self, rec: FlowRecord) -> bool {
        let ok = self.records.push(rec).is_ok();
        if !ok {
            self.queue_full.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    fn started(&self, ctx: &Ctx, orig: FlowKey, hash: u64, entry: FlowEntry, len: u16) {
        let now = ctx.now_ms;
        if !self.limit.admit(now) {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // The flow table had no live entry for this key, so a metered flow
        // of the same key is over: report it first.
        if let Some((i, copy)) = self.index.lookup_at(&orig, hash, now) {
            let mut b = self.slots[i].born.load(Ordering::Acquire);
            for _ in 0..64 {
                if b != ENDING {
                    break;
                }
                std::hint::spin_loop();
                b = self.slots[i].born.load(Ordering::Acquire);
            }
            if b == ENDING {
                // Someone is reporting it right now and has not finished:
                // do not wait, leave this flow unmetered.
                self.meter_full.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if Slot::live(b) {
                self.end(ctx, i, orig, copy, EndReason::of_state(copy.state));
            }
        }
        let copy = FlowEntry { timeout_ms: MAX_TIMEOUT_MS, ..entry };
        let Ok(i) = self.index.insert_at(&orig, hash, &copy, now) else {
            self.meter_full.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let s = &self.slots[i];
        s.packets[0].store(1, Ordering::Relaxed);
        s.packets[1].store(0, Ordering::Relaxed);
        s.bytes[0].store(u64::from(len), Ordering::Relaxed);
        s.bytes[1].store(0, Ordering::Relaxed);
        s.last.store(now, Ordering::Relaxed);
        // The counters are set before the flow is live (release).
        s.born.store(now + 1, Ordering::Release);
        let rec = FlowRecord {
            entry: Some(entry),
            born_ms: now,
            last_ms: now,
            packets: [1, 0],
            bytes: [u64::from(len), 0],
            ..self.record(ctx, orig)
        };
        if !self.push(rec) {
            // No start record: no end either.
            if s.born.compare_exchange(now + 1, ENDING, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                self.index.remove_hashed(&orig, hash);
                let _ = s.born.compare_exchange(ENDING, 0, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
    }

    #[inline]
    fn packet(&self, orig: FlowKey, reply: bool, len: u16, now: u64) {
        let Some((i, _)) = self.index.lookup_at(&orig, orig.hash(), now) else { return };
        let s = &self.slots[i];
        if !Slot::live(s.born.load(Ordering::Acquire)) {
            return;
        }
        let d = usize::from(reply);
        s.packets[d].fetch_add(1, Ordering::Relaxed);
        s.bytes[d].fetch_add(u64::from(len), Ordering::Relaxed);
        if s.last.load(Ordering::Relaxed) != now {
            s.last.store(now, Ordering::Relaxed);
        }
    }

    fn state(&self, orig: FlowKey, state: u8, now: u64) {
        let hash = orig.hash();
        if let Some((i, copy)) = self.index.lookup_at(&orig, hash, now) {
            if Slot::live(self.slots[i].born.load(Ordering::Acquire)) {
                let _ = self.index.insert_at(&orig, hash, &FlowEntry { state, ..copy }, now);
            }
        }
    }

    /// Reports the end of the flow `orig` metered in slot `i` (its entry
    /// copy `copy`), unless someone else does: see the module doc. The
    /// end is charged to the rate limit, never refused by it.
    pub(crate) fn end(&self, ctx: &Ctx, i: usize, orig: FlowKey, copy: FlowEntry, why: EndReason) -> bool {
        let s = &self.slots[i];
        let b = s.born.load(Ordering::Acquire);
        if !Slot::live(b) || s.born.compare_exchange(b, ENDING, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            return false;
        }
        let packets = [s.packets[0].load(Ordering::Relaxed), s.packets[1].load(Ordering::Relaxed)];
        let bytes = [s.bytes[0].load(Ordering::Relaxed), s.bytes[1].load(Ordering::Relaxed)];
        let last_ms = s.last.load(Ordering::Relaxed);
        self.index.remove_hashed(&orig, orig.hash());
        // A flow that took the slot after the removal keeps it.
        let _ = s.born.compare_exchange(ENDING, 0, Ordering::AcqRel, Ordering::Relaxed);
        self.limit.charge(ctx.now_ms);
        let rec = FlowRecord {
            kind: RecordKind::End(why),
            entry: Some(copy),
            born_ms: b - 1,
            last_ms,
            packets,
            bytes,
            port: NO_PORT,
            ..self.record(ctx, orig)
        };
        self.push(rec)
    }

    /// The metered flow in meter slot `i`, if one is live there: its
    /// original key and its entry copy.
    pub(crate) fn metered_at(&self, i: usize, now_ms: u64) -> Option<(FlowKey, FlowEntry)> {
        if !Slot::live(self.slots.get(i)?.born.load(Ordering::Acquire)) {
            return None;
        }
        match self.index.slot(i, now_ms) {
            Some((key, copy, true)) => Some((key, copy)),
            _ => None,
        }
    }
}

/// The tracer of a packet while a flow log is armed: passes notes on to
/// `inner` (a trace's [`crate::pipeline::Recorder`], or nothing) and flow
/// events to the session.
pub struct Logged<'a, T: Trace> {
    pub inner: T,
    pub log: &'a FlowLogSession,
    pub ctx: Ctx,
}

impl<T: Trace> Trace for Logged<'_, T> {
    const ON: bool = T::ON;
    const FLOWS: bool = true;

    #[inline(always)]
    fn note(&mut self, step: Step) {
        self.inner.note(step)
    }

    #[inline(always)]
    fn flow(&mut self, event: FlowEvent) {
        self.log.event(&self.ctx, event)
    }
}

#[cfg(test)]
mod tests;
