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

/// Where a stage reports what it did.
pub trait Trace {
    /// Whether notes are kept at all: stages skip computing what to note
    /// when this is false (it is a constant, so the skipping compiles away).
    const ON: bool;
    fn note(&mut self, step: Step);
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
