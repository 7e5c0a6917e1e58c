//! The management thread's side of flow logs: one session at a time, armed
//! by `flow_log_start`, polled by its client (weir-control) for records
//! with names (Service, rule, port) and wall-clock times, and ended by
//! `flow_log_stop`, by its connection closing, or when not polled for
//! [`LEASE`] — disarmed first, then freed once every worker has passed a
//! quiescent state, on this thread.
//!
//! While a session runs, [`FlowLogs::tick`] drains the workers' records and
//! sweeps part of the meter table for flows that ended by timeout (see the
//! parent module): [`SWEEP_PER_TICK`] slots per tick, so a whole pass of
//! the largest meter (2^20 slots) takes 64 ticks — well under a second at
//! the management loop's 5 ms. A flow's end is therefore reported at most
//! its timeout + [`GRACE_MS`] + one pass after its last packet.
//!
//! Names are resolved with the tables the worker ran when it wrote the
//! record: the node drains the queue when it publishes new tables, after
//! every worker has moved to them and before the old ones go
//! ([`FlowLogs::drain`] with both).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

use super::{Ctx, FlowLogSession, FlowRecord, RecordKind, GRACE_MS, MGMT};
use crate::api::Reply;
use crate::flow::{FlowTable, Probe};
use crate::inspect::explain::port_name;
use crate::inspect::session::{Clock, LEASE};
use crate::inspect::{FlowLogRecord, Tap};
use crate::pipeline::EndReason;
use crate::tables::service::Frontend;
use crate::tables::Tables;

/// Meter slots the sweep looks at per tick.
pub const SWEEP_PER_TICK: usize = 16384;
/// Records held for the client between two polls, at most; more are
/// counted as `queue_full`.
pub const MAX_HELD: usize = 65536;
/// Largest rate and burst a session takes.
pub const MAX_RATE: u32 = 1_000_000;

struct State {
    id: u64,
    session: Arc<FlowLogSession>,
    last_poll: Instant,
    held: Vec<FlowLogRecord>,
    /// Where the sweep goes on.
    cursor: usize,
    done: Option<String>,
}

/// The moment a call runs at: the wall clock against the TSC (records'
/// times), the workers' clock in ms (the sweep), the monotonic clock (the
/// lease).
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub clock: Clock,
    pub ms: u64,
    pub at: Instant,
}

/// The flow log of one node.
pub struct FlowLogs {
    tap: Arc<Tap>,
    next: u64,
    state: Option<State>,
}

impl FlowLogs {
    pub fn new(tap: Arc<Tap>) -> FlowLogs {
        FlowLogs { tap, next: 1, state: None }
    }

    /// Whether a session runs (the management loop then ticks it).
    pub fn active(&self) -> bool {
        self.state.as_ref().is_some_and(|s| s.done.is_none())
    }

    /// Arms a flow log of at most `per_s` records per second (bursts of
    /// `burst`, default `per_s`) for a flow table of `flow_slots` slots.
    pub fn start(&mut self, per_s: u32, burst: Option<u32>, flow_slots: usize, now: Instant) -> Result<u64, String> {
        if let Some(s) = &self.state {
            return Err(format!("a flow log is running already (session {}); one at a time", s.id));
        }
        if per_s == 0 || per_s > MAX_RATE {
            return Err(format!("flow log rate_per_s {per_s}: want 1 to {MAX_RATE}"));
        }
        let burst = burst.unwrap_or(per_s);
        if burst == 0 || burst > MAX_RATE {
            return Err(format!("flow log burst {burst}: want 1 to {MAX_RATE}"));
        }
        let session = Arc::new(FlowLogSession::new(per_s, burst, flow_slots));
        self.tap.arm_flowlog(Arc::clone(&session));
        let id = self.next;
        self.next += 1;
        self.state = Some(State { id, session, last_poll: now, held: Vec::new(), cursor: 0, done: None });
        Ok(id)
    }

    /// Takes the workers' records, resolved with `tables` (those of the
    /// record's generation, else the last).
    pub fn drain(&mut self, tables: &[&Tables], clock: &Clock) {
        let Some(s) = &mut self.state else { return };
        let session = Arc::clone(&s.session);
        drain_into(s, &session, tables, clock);
    }

    /// Drains, sweeps part of the meter for flows that ended, and ends a
    /// session not polled for [`LEASE`]. `now_ms` is the workers' clock.
    pub fn tick(&mut self, t: &Tables, flows: &FlowTable, now: &Now, sync: &mut dyn FnMut()) {
        let Some(s) = &mut self.state else { return };
        if s.done.is_some() {
            return;
        }
        if now.at.duration_since(s.last_poll) > LEASE {
            self.end(t, &now.clock, sync, "not polled: the client is gone");
            self.state = None;
            return;
        }
        let session = Arc::clone(&s.session);
        let ctx = Ctx { worker: MGMT, port: super::NO_PORT, generation: t.generation, now_ms: now.ms };
        s.cursor = sweep(&session, flows, &ctx, s.cursor, SWEEP_PER_TICK);
        drain_into(s, &session, &[t], &now.clock);
    }

    /// What session `id` recorded since the last poll; the last answer of a
    /// session says why it ended (`done`), and forgets it.
    pub fn poll(&mut self, id: u64, t: &Tables, flows: &FlowTable, now: &Now, sync: &mut dyn FnMut()) -> Reply {
        self.tick(t, flows, now, sync);
        let Some(s) = self.state.as_mut().filter(|s| s.id == id) else {
            return Reply::Error { message: format!("no flow log session {id} (ended, or never started)") };
        };
        s.last_poll = now.at;
        let reply = Reply::FlowLogged {
            session: id,
            records: std::mem::take(&mut s.held),
            drops: s.session.drops(),
            metered: s.session.metered() as u64,
            done: s.done.clone(),
        };
        if s.done.is_some() {
            self.state = None;
        }
        reply
    }

    /// Ends session `id` now and answers as a last poll would. Also what
    /// the management socket sends when the connection that started the
    /// session closes.
    pub fn stop(&mut self, id: u64, t: &Tables, flows: &FlowTable, now: &Now, sync: &mut dyn FnMut()) -> Reply {
        if self.state.as_ref().is_some_and(|s| s.id == id && s.done.is_none()) {
            self.end(t, &now.clock, sync, "stopped");
        }
        self.poll(id, t, flows, now, sync)
    }

    /// Disarms, waits until no worker can hold the session, takes what is
    /// left. Flows still live get no end record.
    fn end(&mut self, t: &Tables, clock: &Clock, sync: &mut dyn FnMut(), why: &str) {
        if self.tap.disarm_flowlog().is_some() {
            sync();
        }
        let Some(s) = &mut self.state else { return };
        let session = Arc::clone(&s.session);
        drain_into(s, &session, &[t], clock);
        s.done = Some(why.to_string());
    }
}

/// Sweeps `budget` meter slots from `cursor`: reports the flows whose
/// entry in `flows` has been expired for more than [`GRACE_MS`], or is
/// gone. Returns where to go on.
pub(crate) fn sweep(session: &FlowLogSession, flows: &FlowTable, ctx: &Ctx, cursor: usize, budget: usize) -> usize {
    let n = session.meter_slots();
    let mut i = cursor % n.max(1);
    for _ in 0..budget.min(n) {
        if let Some((key, copy)) = session.metered_at(i, ctx.now_ms) {
            let why = match flows.probe(&key, key.hash(), ctx.now_ms) {
                Probe::Busy => None,
                // Live, or not expired for long enough (timeout 0: removed).
                Probe::Found { entry, idle_ms }
                    if entry.timeout_ms > 0 && idle_ms <= u64::from(entry.timeout_ms) + GRACE_MS =>
                {
                    None
                }
                Probe::Found { entry, .. } => Some(EndReason::of_state(entry.state)),
                // Its slot was taken by another flow: the last state known.
                Probe::Absent => Some(EndReason::of_state(copy.state)),
            };
            if let Some(why) = why {
                session.end(ctx, i, key, copy, why);
            }
        }
        i = if i + 1 == n { 0 } else { i + 1 };
    }
    i
}

fn drain_into(s: &mut State, session: &FlowLogSession, tables: &[&Tables], clock: &Clock) {
    let mut lost = 0;
    while let Some(r) = session.records.pop() {
        if s.held.len() >= MAX_HELD {
            lost += 1;
            continue;
        }
        let t = tables.iter().find(|t| t.generation == r.generation).or(tables.last());
        if let Some(t) = t {
            s.held.push(render(t, &r, clock));
        }
    }
    if lost > 0 {
        session.lost(lost);
    }
}

fn addr(a: Ipv4Addr, p: u16) -> SocketAddrV4 {
    SocketAddrV4::new(a, p)
}

/// A record with names and wall-clock times, resolved with `t`.
pub fn render(t: &Tables, r: &FlowRecord, clock: &Clock) -> FlowLogRecord {
    let k = r.key;
    let mut out = FlowLogRecord {
        event: String::new(),
        time_ns: clock.wall_of_ms(r.at_ms),
        proto: k.proto,
        src: k.src,
        sport: k.src_port,
        dst: k.dst,
        dport: k.dst_port,
        nat_src: None,
        nat_dst: None,
        service: None,
        in_port: (r.port != super::NO_PORT).then(|| port_name(t, r.port)),
        verdict: "allowed".into(),
        rule: None,
        direction: None,
        packets: None,
        bytes: None,
        start_ns: None,
        duration_ms: None,
        reason: None,
    };
    if let Some(e) = r.entry.filter(|e| !e.plain) {
        out.nat_dst = Some(addr(e.nat_addr, e.nat_port));
        out.nat_src = e.other.map(|(a, p)| addr(a, p));
        // The Service by the number the flow was given when the record's
        // tables are those it was given under, else by its frontend.
        let by_id = (r.generation as u32 == e.generation).then(|| t.services.get(e.service)).flatten();
        let frontend = Frontend { vip: k.dst, port: k.dst_port, proto: k.proto };
        out.service = by_id.or_else(|| t.services.lookup(&frontend).map(|(_, _, p)| p)).map(|p| p.name.clone());
    }
    match r.kind {
        RecordKind::Start => out.event = "start".into(),
        RecordKind::End(why) => {
            out.event = "end".into();
            out.packets = Some(r.packets);
            out.bytes = Some(r.bytes);
            out.start_ns = Some(clock.wall_of_ms(r.born_ms));
            out.duration_ms = Some(r.last_ms.saturating_sub(r.born_ms));
            out.reason = Some(why.name().into());
        }
        RecordKind::Denied { dst, dport, decision } => {
            out.event = "denied".into();
            out.verdict = "denied".into();
            if (dst, dport) != (k.dst, k.dst_port) {
                out.nat_dst = Some(addr(dst, dport));
                let frontend = Frontend { vip: k.dst, port: k.dst_port, proto: k.proto };
                out.service = t.services.lookup(&frontend).map(|(_, _, p)| p.name.clone());
            }
            out.rule = Some(match decision.rule.and_then(|i| t.acl.rule(i)) {
                Some(rule) => rule.id.to_string(),
                None => "default".into(),
            });
            out.direction = decision.direction.map(|d| d.to_string());
        }
    }
    out
}

/// The records a session holds, for tests.
#[cfg(test)]
impl FlowLogs {
    pub(crate) fn session(&self) -> Option<Arc<FlowLogSession>> {
        self.state.as_ref().map(|s| Arc::clone(&s.session))
    }
}
