//! What the pipeline stages tell a tracer about one packet: the one
//! mechanism behind `weirctl explain` and `weirctl trace`.
//!
//! Every stage function is generic over a [`Trace`] and reports what it did
//! as a [`Step`] (a small `Copy` value: no allocation, no formatting on the
//! packet path). Workers run the [`NoTrace`] instantiation: its `ON` is
//! `false` and its `note` is empty, so after monomorphisation every note —
//! and every `if T::ON { ... }` that computes what to note — is gone, and
//! the code is the plain pipeline's. A [`Recorder`] keeps the steps of one
//! packet in a fixed array (no allocation either, so a worker can record a
//! traced packet and hand the record over through a lock-free queue); the
//! management thread turns them into text with the tables (`crate::inspect`).
//!
//! The same generic parameter carries flow logs: a tracer whose `FLOWS` is
//! true (`crate::inspect::flowlog::Logged`) is told of flows starting,
//! ending, their packets and policy denies ([`FlowEvent`]); for every other
//! tracer those reports compile away like the notes.

use std::net::Ipv4Addr;

use super::Action;
use crate::flow::{FlowEntry, FlowKey};
use crate::tables::acl::Decision;
use crate::tables::service::{Frontend, FrontendKind};
use crate::tables::{Hop, PortId};

/// What one stage did to a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The frame came in on `port`: `len` bytes of `ethertype`.
    Input { port: PortId, len: usize, ethertype: u16 },
    /// The (inner) IPv4 header passed every check.
    Ipv4 { src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ttl: u8 },
    /// VXLAN from the VTEP `vtep` with `vni` (a network of this node),
    /// decapsulated.
    Decap { vtep: Ipv4Addr, vni: u32 },
    /// The flow table has an entry for `key`.
    FlowHit { key: FlowKey, entry: FlowEntry },
    /// No flow has `key` yet: a new one.
    FlowMiss { key: FlowKey },
    /// The live flow of `key` ends here, for the reason given.
    FlowEnded { key: FlowKey, why: &'static str },
    /// The destination is a Service frontend (port number `id`).
    Service { frontend: Frontend, kind: FrontendKind, id: u32 },
    /// The backend a new flow of Service port `id` goes to: `index` in its
    /// pick set, by Maglev over the flow hash or by ClientIP affinity.
    Backend { id: u32, index: u16, addr: Ipv4Addr, port: u16, sticky: bool },
    /// A policy decision for the flow `src` → `dst` (protocol, destination port).
    Acl { src: Ipv4Addr, dst: Ipv4Addr, proto: u8, dport: u16, decision: Decision },
    /// NAT rewrote the packet: its tuple before and after.
    Nat { before: FlowKey, after: FlowKey },
    /// The route lookup for `dst` in the network of VNI `vni` (`None`: no
    /// route there).
    Route { vni: u32, dst: Ipv4Addr, hop: Option<Hop> },
    /// Encapsulated for the VTEP `vtep` with `vni`; the outer packet goes
    /// to `next_hop` on the underlay, UDP source port `sport`.
    Encap { vtep: Ipv4Addr, vni: u32, next_hop: Ipv4Addr, sport: u16 },
    /// Out of the uplink to `next_hop` on the underlay, unencapsulated.
    Underlay { next_hop: Ipv4Addr },
    /// Anything else a stage has to say.
    Note(&'static str),
    /// What the pipeline decided (the last step).
    Done(Action),
}

/// Why a flow ended (flow logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// No packet for the flow's timeout.
    Timeout,
    /// FIN both ways (then no packet for the closing timeout, or a new SYN
    /// on its ports).
    Fin,
    /// A TCP reset (likewise).
    Rst,
    /// Its backend left the Service (TCP: the client was reset; UDP and
    /// SCTP: moved to a live backend as a new flow).
    BackendGone,
    /// The policy that allowed it is gone.
    PolicyRevoked,
}

impl EndReason {
    pub fn name(self) -> &'static str {
        match self {
            EndReason::Timeout => "timeout",
            EndReason::Fin => "fin",
            EndReason::Rst => "rst",
            EndReason::BackendGone => "backend_gone",
            EndReason::PolicyRevoked => "policy_revoked",
        }
    }

    /// How a flow in state `s` ends when it is not seen any more: a closing
    /// TCP connection was closed (FIN both ways, or reset), anything else
    /// timed out.
    pub fn of_state(s: u8) -> EndReason {
        use crate::flow::state::{CLOSING, FIN_ORIG, FIN_REPLY};
        if s & CLOSING == 0 {
            EndReason::Timeout
        } else if s & (FIN_ORIG | FIN_REPLY) == FIN_ORIG | FIN_REPLY {
            EndReason::Fin
        } else {
            EndReason::Rst
        }
    }
}

/// What the NAT stage tells a flow logger (`crate::inspect::flowlog`):
/// flows that start and end, the packets of live flows, and policy denies.
/// `orig` is always the key of the flow's original direction (as its first
/// packet arrived), which names the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowEvent {
    /// Both entries of a new flow are in the table. `entry` is the original
    /// direction's: its destination rewrite (`nat_addr:nat_port`, the
    /// packet's own destination for a flow policy only tracks) and, double
    /// NAT, the source rewrite in `other`. `len`: the first packet's IPv4
    /// length.
    Started { orig: FlowKey, hash: u64, entry: FlowEntry, len: u16 },
    /// A packet of a live flow, of its reply direction or not.
    Packet { orig: FlowKey, reply: bool, len: u16 },
    /// The flow moved to state `state` ([`crate::flow::state`]).
    State { orig: FlowKey, state: u8 },
    /// The flow's entries are removed here.
    Ended { orig: FlowKey, why: EndReason },
    /// Policy denied the first packet of a flow: `key` as it arrived, and
    /// the destination it was classified with (a Service's backend).
    Denied { key: FlowKey, dst: Ipv4Addr, dport: u16, decision: Decision },
}

/// Where a stage reports what it did.
pub trait Trace {
    /// Whether notes are kept at all: stages skip computing what to note
    /// when this is false (it is a constant, so the skipping compiles away).
    const ON: bool;
    /// Whether flow events are wanted (flow logging armed). Like `ON`, a
    /// constant: with it false (workers' [`NoTrace`], explain's and
    /// trace's [`Recorder`]) every `if T::FLOWS { ... }` compiles away.
    const FLOWS: bool = false;
    fn note(&mut self, step: Step);
    /// A flow event; only called when `FLOWS`.
    #[inline(always)]
    fn flow(&mut self, _event: FlowEvent) {}
}

/// A tracer borrowed: what a wrapper (the flow logger) passes on to.
impl<T: Trace> Trace for &mut T {
    const ON: bool = T::ON;
    const FLOWS: bool = T::FLOWS;
    #[inline(always)]
    fn note(&mut self, step: Step) {
        (**self).note(step)
    }
    #[inline(always)]
    fn flow(&mut self, event: FlowEvent) {
        (**self).flow(event)
    }
}

/// Keeps nothing: the workers' instantiation of the pipeline.
pub struct NoTrace;

impl Trace for NoTrace {
    const ON: bool = false;
    #[inline(always)]
    fn note(&mut self, _: Step) {}
}

/// Steps one packet may record; more are counted as `lost`.
pub const MAX_STEPS: usize = 24;

/// Records the steps of one packet in place.
#[derive(Debug, Clone, Copy)]
pub struct Recorder {
    steps: [Step; MAX_STEPS],
    len: u8,
    lost: u8,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder { steps: [Step::Note(""); MAX_STEPS], len: 0, lost: 0 }
    }
}

impl Recorder {
    pub fn steps(&self) -> &[Step] {
        &self.steps[..usize::from(self.len)]
    }

    /// Steps that did not fit.
    pub fn lost(&self) -> u8 {
        self.lost
    }

    /// The action of the last `Done` step.
    pub fn action(&self) -> Option<Action> {
        self.steps().iter().rev().find_map(|s| match s {
            Step::Done(a) => Some(*a),
            _ => None,
        })
    }
}

impl Trace for Recorder {
    const ON: bool = true;
    #[inline]
    fn note(&mut self, step: Step) {
        match self.steps.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = step;
                self.len += 1;
            }
            None => self.lost = self.lost.saturating_add(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::DropReason;

    #[test]
    fn a_recorder_keeps_steps_in_order_and_counts_what_does_not_fit() {
        let mut r = Recorder::default();
        assert_eq!(r.action(), None);
        r.note(Step::Note("a"));
        r.note(Step::Done(Action::Drop(DropReason::NoRoute)));
        assert_eq!(r.steps(), &[Step::Note("a"), Step::Done(Action::Drop(DropReason::NoRoute))]);
        assert_eq!(r.action(), Some(Action::Drop(DropReason::NoRoute)));
        for _ in 0..MAX_STEPS {
            r.note(Step::Note("b"));
        }
        assert_eq!(r.steps().len(), MAX_STEPS);
        assert_eq!(r.lost(), 2);
    }
}
