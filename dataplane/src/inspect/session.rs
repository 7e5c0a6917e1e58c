//! The management thread's side of trace and capture: at most one trace
//! and one capture at a time, each a session with a number that weirctl
//! polls for what the workers recorded.
//!
//! A session ends when its count is reached, at its deadline (trace
//! `timeout`, capture `duration`), when weirctl stops it or its connection
//! closes (the management socket tells, see `mgmt`), or when it has not
//! been polled for [`LEASE`] (a client that hangs). Ending disarms the tap
//! first, then waits until no worker can still be using the session (the
//! `sync` callback: a quiescent state of every worker), then drains what is
//! left and frees it — on this thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::explain::{port_name, render_action, render_steps};
use super::packet::describe;
use super::pcap::hex;
use super::tap::{CaptureSession, Tap, TraceSession};
use super::{CaptureDir, CapturedPacket, Filter, FilterSpec, TracedPacket};
use crate::api::Reply;
use crate::pipeline::{Action, DropReason};
use crate::tables::Tables;

/// A session not polled for this long is ended.
pub const LEASE: Duration = Duration::from_secs(10);
/// Most packets one trace may ask for.
pub const MAX_TRACE: u32 = 1000;
/// Default and largest snap length of a capture.
pub const DEFAULT_SNAPLEN: u32 = 2048;
pub const MAX_SNAPLEN: u32 = 65535;
/// Capture buffers (and queue slots) of one session, at most.
pub const CAPTURE_BUFFERS: usize = 4096;
/// Captured packets held for weirctl between two polls, at most; more are
/// counted as lost.
pub const MAX_HELD: usize = 65536;

/// The workers' clock and the wall clock at one instant, to turn worker
/// timestamps (TSC) into wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub tsc: u64,
    pub tsc_hz: u64,
    /// ns since the Unix epoch.
    pub wall_ns: u64,
}

impl Clock {
    /// The wall-clock time (ns) of worker timestamp `tsc`, taken before now.
    pub fn wall_of(&self, tsc: u64) -> u64 {
        let ago = u128::from(self.tsc.saturating_sub(tsc)) * 1_000_000_000 / u128::from(self.tsc_hz.max(1));
        self.wall_ns.saturating_sub(ago as u64)
    }

    /// The wall-clock time (ns) of `ms` on the workers' millisecond clock
    /// (the TSC in ms, what their `Nat` runs on).
    pub fn wall_of_ms(&self, ms: u64) -> u64 {
        let now_ms = self.tsc / (self.tsc_hz / 1000).max(1);
        let ago_ns = i128::from(now_ms) - i128::from(ms);
        (i128::from(self.wall_ns) - ago_ns * 1_000_000).clamp(0, i128::from(u64::MAX)) as u64
    }
}

struct TraceState {
    id: u64,
    session: Option<Arc<TraceSession>>,
    deadline: Instant,
    last_poll: Instant,
    held: Vec<TracedPacket>,
    done: Option<String>,
}

struct CaptureState {
    id: u64,
    session: Option<Arc<CaptureSession>>,
    port: String,
    delivered: u64,
    deadline: Option<Instant>,
    last_poll: Instant,
    held: Vec<CapturedPacket>,
    /// Packets lost here (too many held) and by workers (no free buffer).
    lost: u64,
    done: Option<String>,
}

/// The sessions of one node.
pub struct Sessions {
    tap: Arc<Tap>,
    next: u64,
    trace: Option<TraceState>,
    capture: Option<CaptureState>,
}

impl Sessions {
    pub fn new(tap: Arc<Tap>) -> Sessions {
        Sessions { tap, next: 1, trace: None, capture: None }
    }

    pub fn tap(&self) -> Arc<Tap> {
        Arc::clone(&self.tap)
    }

    /// Whether a session is running (the management loop then ticks often).
    pub fn active(&self) -> bool {
        self.trace.is_some() || self.capture.is_some()
    }

    /// Arms a trace of the next `count` packets `spec` matches, for at most
    /// `timeout`.
    pub fn start_trace(
        &mut self,
        t: &Tables,
        spec: &FilterSpec,
        count: u32,
        timeout: Duration,
        now: Instant,
    ) -> Result<u64, String> {
        if let Some(s) = &self.trace {
            return Err(format!("a trace is running already (session {}); one at a time", s.id));
        }
        if count == 0 || count > MAX_TRACE {
            return Err(format!("trace count {count}: want 1 to {MAX_TRACE}"));
        }
        let filter = Filter::compile(spec, t)?;
        let session = Arc::new(TraceSession::new(filter, count));
        self.tap.arm_trace(Arc::clone(&session));
        let id = self.next_id();
        self.trace = Some(TraceState {
            id,
            session: Some(session),
            deadline: now + timeout,
            last_poll: now,
            held: Vec::new(),
            done: None,
        });
        Ok(id)
    }

    /// Arms a capture of `port` (direction `dir`, packets `spec` matches):
    /// `count` packets at most, for `duration` at most, `snaplen` bytes of each.
    #[allow(clippy::too_many_arguments)]
    pub fn start_capture(
        &mut self,
        t: &Tables,
        port: &str,
        dir: CaptureDir,
        spec: &FilterSpec,
        count: Option<u64>,
        duration: Option<Duration>,
        snaplen: Option<u32>,
        now: Instant,
    ) -> Result<u64, String> {
        if let Some(s) = &self.capture {
            return Err(format!("a capture is running already (session {}); one at a time", s.id));
        }
        let id_port = t
            .port_by_name(port)
            .ok_or_else(|| format!("capture port {port:?}: no port of that name (see weirctl stats)"))?;
        if spec.port.as_deref().is_some_and(|p| p != port) {
            return Err(format!(
                "capture: filter port {:?} is not the captured port {port:?}",
                spec.port.as_deref().unwrap_or("")
            ));
        }
        let snaplen = snaplen.unwrap_or(DEFAULT_SNAPLEN);
        if !(64..=MAX_SNAPLEN).contains(&snaplen) {
            return Err(format!("capture snaplen {snaplen}: want 64 to {MAX_SNAPLEN}"));
        }
        if count == Some(0) {
            return Err("capture count 0: want at least 1 (or none for no limit)".into());
        }
        let filter = Filter::compile(spec, t)?;
        let buffers = count.map_or(CAPTURE_BUFFERS, |c| c.min(CAPTURE_BUFFERS as u64) as usize);
        let session =
            Arc::new(CaptureSession::new(filter, id_port, dir, snaplen as usize, count.unwrap_or(u64::MAX), buffers));
        self.tap.arm_capture(Arc::clone(&session));
        let id = self.next_id();
        self.capture = Some(CaptureState {
            id,
            session: Some(session),
            port: port.to_string(),
            delivered: 0,
            deadline: duration.map(|d| now + d),
            last_poll: now,
            held: Vec::new(),
            lost: 0,
            done: None,
        });
        Ok(id)
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next;
        self.next += 1;
        id
    }

    /// Takes what workers recorded and ends sessions that are over. Called
    /// by the management loop every few milliseconds, and before a poll.
    pub fn tick(&mut self, t: &Tables, clock: &Clock, now: Instant, sync: &mut dyn FnMut()) {
        let tap = Arc::clone(&self.tap);
        if let Some(s) = &mut self.trace {
            if now.duration_since(s.last_poll) > LEASE {
                end_trace(&tap, s, t, clock, sync, "not polled: the client is gone");
                self.trace = None;
            } else {
                drain_trace(s, t, clock);
                if s.done.is_none() {
                    // Every packet claimed: disarming waits for the last
                    // records to be pushed, and takes them.
                    if s.session.as_ref().is_some_and(|x| x.remaining() == 0) {
                        end_trace(&tap, s, t, clock, sync, "count reached");
                    } else if now >= s.deadline {
                        end_trace(&tap, s, t, clock, sync, "timeout");
                    }
                }
            }
        }
        if let Some(s) = &mut self.capture {
            if now.duration_since(s.last_poll) > LEASE {
                end_capture(&tap, s, t, clock, sync, "not polled: the client is gone");
                self.capture = None;
            } else {
                drain_capture(s, t, clock);
                if s.done.is_none() {
                    if s.session.as_ref().is_some_and(|x| x.remaining() == 0) {
                        end_capture(&tap, s, t, clock, sync, "count reached");
                    } else if s.deadline.is_some_and(|d| now >= d) {
                        end_capture(&tap, s, t, clock, sync, "duration over");
                    }
                }
            }
        }
    }

    /// What session `id` has recorded since the last poll; the last answer
    /// of a session says why it ended (`done`), and forgets it.
    pub fn poll(&mut self, id: u64, t: &Tables, clock: &Clock, now: Instant, sync: &mut dyn FnMut()) -> Reply {
        self.tick(t, clock, now, sync);
        if let Some(s) = self.trace.as_mut().filter(|s| s.id == id) {
            s.last_poll = now;
            let reply = Reply::Traced { session: id, packets: std::mem::take(&mut s.held), done: s.done.clone() };
            if s.done.is_some() {
                self.trace = None;
            }
            return reply;
        }
        if let Some(s) = self.capture.as_mut().filter(|s| s.id == id) {
            s.last_poll = now;
            let reply = Reply::Captured {
                session: id,
                packets: std::mem::take(&mut s.held),
                lost: s.lost + s.session.as_ref().map_or(0, |c| c.lost.load(std::sync::atomic::Ordering::Relaxed)),
                done: s.done.clone(),
            };
            if s.done.is_some() {
                self.capture = None;
            }
            return reply;
        }
        Reply::Error { message: format!("no trace or capture session {id} (ended, or never started)") }
    }

    /// Ends session `id` now and forgets it, answering with what it had
    /// left (as a last poll would). Also what the management socket sends
    /// when the connection that started a session closes.
    pub fn stop(&mut self, id: u64, t: &Tables, clock: &Clock, now: Instant, sync: &mut dyn FnMut()) -> Reply {
        let tap = Arc::clone(&self.tap);
        if let Some(s) = self.trace.as_mut().filter(|s| s.id == id && s.done.is_none()) {
            end_trace(&tap, s, t, clock, sync, "stopped");
        }
        if let Some(s) = self.capture.as_mut().filter(|s| s.id == id && s.done.is_none()) {
            end_capture(&tap, s, t, clock, sync, "stopped");
        }
        self.poll(id, t, clock, now, sync)
    }
}

fn drain_trace(s: &mut TraceState, t: &Tables, clock: &Clock) {
    let Some(session) = &s.session else { return };
    while let Some(r) = session.records.pop() {
        let vxlan_port = t.overlay.as_ref().map_or(crate::wire::vxlan::DEFAULT_PORT, |o| o.vxlan_port);
        let action = r.steps.action().unwrap_or(Action::Drop(DropReason::PortGone));
        s.held.push(TracedPacket {
            worker: r.worker,
            port: port_name(t, r.port),
            time_ns: clock.wall_of(r.tsc),
            generation: r.generation,
            packet: describe(&r.head[..usize::from(r.head_len)], vxlan_port),
            steps: render_steps(t, r.steps.steps()),
            action: render_action(t, r.port, action),
            steps_lost: u32::from(r.steps.lost()),
        });
    }
}

fn end_trace(tap: &Tap, s: &mut TraceState, t: &Tables, clock: &Clock, sync: &mut dyn FnMut(), why: &str) {
    if tap.disarm_trace().is_some() {
        sync();
    }
    drain_trace(s, t, clock);
    s.session = None;
    s.done = Some(why.to_string());
}

fn drain_capture(s: &mut CaptureState, t: &Tables, clock: &Clock) {
    let Some(session) = &s.session else { return };
    while let Some(c) = session.full.pop() {
        if s.held.len() >= MAX_HELD {
            s.lost += 1;
        } else {
            s.held.push(CapturedPacket {
                time_ns: clock.wall_of(c.tsc),
                port: port_name(t, c.port),
                dir: if c.tx { "tx" } else { "rx" }.into(),
                orig_len: c.orig_len,
                data: hex(&c.data),
            });
            s.delivered += 1;
        }
        let _ = session.free.push(c.data);
    }
}

fn end_capture(tap: &Tap, s: &mut CaptureState, t: &Tables, clock: &Clock, sync: &mut dyn FnMut(), why: &str) {
    if tap.disarm_capture().is_some() {
        sync();
    }
    drain_capture(s, t, clock);
    if let Some(c) = s.session.take() {
        s.lost += c.lost.load(std::sync::atomic::Ordering::Relaxed);
    }
    s.done = Some(format!("{why} ({} packets of port {})", s.delivered, s.port));
}
