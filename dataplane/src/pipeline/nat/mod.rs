//! Service NAT: the flow-table lookup every TCP/UDP/SCTP packet that may
//! belong to a Service gets, and, on a miss, the service lookup that picks a
//! backend with the Service port's Maglev table and creates the flow (both
//! directions).
//!
//! The original direction has its destination rewritten (frontend → backend
//! and target port), the reply direction its source (backend → frontend),
//! with incremental checksum updates (IPv4 header, and the TCP/UDP checksum
//! through its pseudo-header; a UDP checksum of 0 stays 0; SCTP's CRC32c,
//! which covers no addresses, is recomputed when a port changes).
//!
//! Frontends: ClusterIPs (from pods, the node and other nodes), and NodePort
//! on the node IP, externalIPs and LoadBalancer IPs (from outside through
//! the uplink too). Traffic from outside follows `externalTrafficPolicy`:
//! Local picks among this node's endpoints and keeps the client's address
//! (none: dropped); Cluster picks among all and translates the client to the
//! node IP and a source port of this worker's slice of `nat.snat_port_*`, so
//! the answer comes back through this node. ClusterIP traffic follows
//! `internalTrafficPolicy`. A Service port with no usable endpoint at all
//! rejects (ICMP port unreachable, which TCP clients see as "connection
//! refused" at once). loadBalancerSourceRanges are checked on LoadBalancer
//! frontends.
//!
//! When tables with other backends are published, established flows keep
//! their backend while it is still listed; if it is gone, a TCP flow's next
//! packet is answered with a reset, and a UDP or SCTP flow's next packet
//! picks a live backend (no stale UDP flows, no table flush; a moved SCTP
//! association is aborted by its new backend).
//!
//! Entries time out by protocol and state (see [`timeout_ms`]): TCP flows
//! with no answer yet, established, closing (RST, or FIN both ways); UDP
//! and SCTP unanswered or answered. A SYN on a closing flow starts a new one.
//!
//! ClientIP session affinity keeps a client's new flows on the backend its
//! last flow got, while the client's affinity entry lives (timeout from its
//! last new flow).
//!
//! ICMP errors about a translated packet (port unreachable, fragmentation
//! needed, time exceeded) are translated back: the outer addresses, and the
//! quoted header with its checksums, as the other side knows the flow.
//!
//! Fragments pass untranslated.

use std::net::Ipv4Addr;

use super::{
    icmp_error, icmp_error_from, is_icmp_error, Action, DropReason, EndReason, FlowEvent, Ipv4Meta, NoTrace, PacketBuf,
    ReplyKind, Step, Trace,
};
use crate::flow::{state, FlowEntry, FlowKey, FlowTable, InsertError};
use crate::tables::acl::{AclTable, Decision, Direction, Verdict};
use crate::tables::service::{Frontend, FrontendKind};
use crate::tables::{Network, Tables};
use crate::wire::{checksum, ethernet, icmp, ipv4, sctp, tcp};

/// The protocol number of ClientIP-affinity entries in the flow table (no
/// packet is looked up with it).
const AFFINITY_PROTO: u8 = 0;

/// Timeouts of flows without packets, ms.
pub const TCP_SYN_TIMEOUT_MS: u32 = 60 * 1000;
pub const TCP_ESTABLISHED_TIMEOUT_MS: u32 = 2 * 3600 * 1000;
pub const TCP_CLOSING_TIMEOUT_MS: u32 = 10 * 1000;
pub const UDP_TIMEOUT_MS: u32 = 30 * 1000;
pub const UDP_STREAM_TIMEOUT_MS: u32 = 120 * 1000;
pub const SCTP_TIMEOUT_MS: u32 = 60 * 1000;
pub const SCTP_ESTABLISHED_TIMEOUT_MS: u32 = 2 * 3600 * 1000;

/// Source ports tried for one SNAT flow before giving up.
const SNAT_TRIES: u32 = 64;

/// How long an entry of protocol `proto` in state `s` lives without packets.
pub fn timeout_ms(proto: u8, s: u8) -> u32 {
    let replied = s & state::REPLIED != 0;
    match proto {
        ipv4::protocol::TCP if s & state::CLOSING != 0 => TCP_CLOSING_TIMEOUT_MS,
        ipv4::protocol::TCP if replied => TCP_ESTABLISHED_TIMEOUT_MS,
        ipv4::protocol::TCP => TCP_SYN_TIMEOUT_MS,
        ipv4::protocol::SCTP if replied => SCTP_ESTABLISHED_TIMEOUT_MS,
        ipv4::protocol::SCTP => SCTP_TIMEOUT_MS,
        _ if replied => UDP_STREAM_TIMEOUT_MS,
        _ => UDP_TIMEOUT_MS,
    }
}

/// The state after a packet with TCP `flags` (0 for other protocols) in the
/// original (`orig`) or reply direction.
fn next_state(proto: u8, s: u8, orig: bool, flags: u8) -> u8 {
    let mut n = s;
    if !orig {
        n |= state::REPLIED;
    }
    if proto == ipv4::protocol::TCP {
        if flags & tcp::flags::RST != 0 {
            n |= state::CLOSING;
        }
        if flags & tcp::flags::FIN != 0 {
            n |= if orig { state::FIN_ORIG } else { state::FIN_REPLY };
        }
        if n & (state::FIN_ORIG | state::FIN_REPLY) == state::FIN_ORIG | state::FIN_REPLY {
            n |= state::CLOSING;
        }
    }
    n
}

/// The shared flow table, the worker's clock for this burst, and which
/// worker this is (its slice of the SNAT ports).
///
/// Every flow-table access of this stage goes through `Nat`'s methods, so
/// that one `Nat` can be a dry run (`dry`): `weirctl explain` runs the
/// real stage on a packet it built, against the live flow table, without
/// changing anything — lookups read the live table without marking entries
/// seen, inserts and removals go to a [`DryRun`] of the explain's own
/// (consulted first by later lookups of the same packet), and policy is
/// evaluated without counting hits. So explain follows exactly the
/// worker's code, and a new flow picks the backend (Maglev over the same
/// flow hash) a worker would pick for the same tuple. A worker's `Nat` has
/// `dry: None`: one predictable branch per flow-table access.
pub struct Nat<'a> {
    pub flows: &'a FlowTable,
    pub now_ms: u64,
    pub worker: u16,
    pub workers: u16,
    /// Where a dry run writes; `None` for workers.
    pub dry: Option<&'a DryRun>,
}

impl<'a> Nat<'a> {
    /// One worker's view (tests, benchmarks).
    pub fn single(flows: &'a FlowTable, now_ms: u64) -> Self {
        Nat { flows, now_ms, worker: 0, workers: 1, dry: None }
    }

    /// A dry run over the live table `flows`, writing to `dry` only; it
    /// claims SNAT ports as worker 0 of 1 would.
    pub fn dry_run(flows: &'a FlowTable, dry: &'a DryRun, now_ms: u64) -> Self {
        Nat { flows, now_ms, worker: 0, workers: 1, dry: Some(dry) }
    }

    #[inline(always)]
    fn lookup(&self, key: &FlowKey, hash: u64) -> Option<FlowEntry> {
        match self.dry {
            None => self.flows.lookup_hashed(key, hash, self.now_ms),
            Some(d) => d.lookup(self.flows, key, hash, self.now_ms),
        }
    }

    #[inline]
    fn insert(&self, key: &FlowKey, hash: u64, entry: &FlowEntry) -> Result<(), InsertError> {
        match self.dry {
            None => self.flows.insert_hashed(key, hash, entry, self.now_ms),
            Some(d) => d.insert(key, hash, entry, self.now_ms),
        }
    }

    /// Inserts unless `key` has a live entry (`InsertError::Exists`).
    #[inline]
    fn insert_new(&self, key: &FlowKey, entry: &FlowEntry) -> Result<(), InsertError> {
        match self.dry {
            None => self.flows.insert_new(key, entry, self.now_ms),
            Some(d) if d.lookup(self.flows, key, key.hash(), self.now_ms).is_some() => Err(InsertError::Exists),
            Some(d) => d.insert(key, key.hash(), entry, self.now_ms),
        }
    }

    #[inline]
    fn remove(&self, key: &FlowKey, hash: u64) {
        match self.dry {
            None => {
                self.flows.remove_hashed(key, hash);
            }
            Some(d) => d.remove(key, hash, self.now_ms),
        }
    }

    /// The policy decision, counted in the rules' hits (not in a dry run).
    #[inline]
    fn classify(&self, acl: &AclTable, k: (Ipv4Addr, Ipv4Addr, u8, u16, u16)) -> Decision {
        let (src, dst, proto, sport, dport) = k;
        match self.dry {
            None => acl.classify(src, dst, proto, sport, dport),
            Some(_) => acl.evaluate(src, dst, proto, sport, dport),
        }
    }
}

/// The flow-table writes of a dry run ([`Nat::dry_run`]): what one packet
/// would insert, and the keys it would remove.
pub struct DryRun {
    written: FlowTable,
    removed: FlowTable,
}

impl Default for DryRun {
    fn default() -> Self {
        // A packet writes at most four entries (two directions, affinity,
        // a restamp); the smallest table is plenty.
        DryRun { written: FlowTable::new(0), removed: FlowTable::new(0) }
    }
}

/// What a removal leaves in `DryRun::removed` (only its key matters).
const TOMBSTONE: FlowEntry = FlowEntry {
    nat_addr: Ipv4Addr::UNSPECIFIED,
    nat_port: 0,
    rewrite_dst: false,
    service: u32::MAX,
    backend: 0,
    generation: 0,
    timeout_ms: u32::MAX,
    other: None,
    state: 0,
    plain: true,
};

impl DryRun {
    fn lookup(&self, live: &FlowTable, key: &FlowKey, hash: u64, now_ms: u64) -> Option<FlowEntry> {
        if let Some(e) = self.written.lookup_hashed(key, hash, now_ms) {
            return Some(e);
        }
        if self.removed.peek_hashed(key, hash, now_ms).is_some() {
            return None;
        }
        live.peek_hashed(key, hash, now_ms)
    }

    fn insert(&self, key: &FlowKey, hash: u64, entry: &FlowEntry, now_ms: u64) -> Result<(), InsertError> {
        self.removed.remove_hashed(key, hash);
        self.written.insert_hashed(key, hash, entry, now_ms)
    }

    fn remove(&self, key: &FlowKey, hash: u64, now_ms: u64) {
        self.written.remove_hashed(key, hash);
        let _ = self.removed.insert_hashed(key, hash, &TOMBSTONE, now_ms);
    }

    /// The entries the packet would have written, live at `now_ms`.
    pub fn written(&self, now_ms: u64) -> Vec<(FlowKey, FlowEntry)> {
        self.written.entries(now_ms)
    }

    /// The keys the packet would have removed.
    pub fn removed(&self, now_ms: u64) -> Vec<FlowKey> {
        self.removed.entries(now_ms).into_iter().map(|(k, _)| k).collect()
    }
}

/// Where a packet entered the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A pod port.
    Pod,
    /// The node's kernel, through the host port.
    Host,
    /// Decapsulated from another node.
    Tunnel,
    /// The underlay, not VXLAN: clients outside the cluster.
    Uplink,
}

/// What the NAT stage did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NatResult {
    /// Nothing: not a Service's packet.
    Untouched,
    /// Rewritten; route it by its new destination.
    Translated,
    /// Answered or dropped here.
    Done(Action),
}

/// [`flow_of`] for the frame `m` describes (as checked, not rewritten
/// since): the header fields come from `m`, the L4 bytes from fixed-size
/// views, so nothing is parsed twice.
#[inline(always)]
fn flow_at(frame: &[u8], m: &Ipv4Meta) -> Option<(FlowKey, u8)> {
    if m.is_fragment() {
        return None;
    }
    let l4 = m.l4(frame);
    let proto = m.proto;
    let flags = match proto {
        // Headers present: checked by check_ipv4.
        ipv4::protocol::TCP => *l4.get(13)?,
        ipv4::protocol::UDP | ipv4::protocol::SCTP => 0,
        ipv4::protocol::ICMP => {
            let h = l4.first_chunk::<6>()?;
            if !matches!(h[0], icmp::msg::ECHO_REQUEST | icmp::msg::ECHO_REPLY) {
                return None;
            }
            // As `flow_of`: the request as (id, 0), the reply as (0, id).
            let id = u16::from_be_bytes([h[4], h[5]]);
            let (src_port, dst_port) = if h[0] == icmp::msg::ECHO_REQUEST { (id, 0) } else { (0, id) };
            return Some((FlowKey { src: m.src, dst: m.dst, src_port, dst_port, proto }, 0));
        }
        _ => return None,
    };
    let p = l4.first_chunk::<4>()?;
    let key = FlowKey {
        src: m.src,
        dst: m.dst,
        src_port: u16::from_be_bytes([p[0], p[1]]),
        dst_port: u16::from_be_bytes([p[2], p[3]]),
        proto,
    };
    Some((key, flags))
}

/// The 5-tuple of a checked, unfragmented TCP/UDP/SCTP frame, and its TCP flags.
fn flow_of(frame: &[u8]) -> Option<(FlowKey, u8)> {
    let ip = ipv4::Packet::new_unchecked(&frame[ethernet::HEADER_LEN..]);
    let proto = ip.protocol();
    if ip.is_fragment() {
        return None;
    }
    let l4 = ip.payload();
    let flags = match proto {
        // Headers present: checked by check_ipv4.
        ipv4::protocol::TCP => l4[13],
        ipv4::protocol::UDP | ipv4::protocol::SCTP => 0,
        // Echo request and reply, keyed by their identifier: the request
        // as (id, 0), the reply as (0, id), so one is the other reversed.
        ipv4::protocol::ICMP if matches!(l4[0], icmp::msg::ECHO_REQUEST | icmp::msg::ECHO_REPLY) => {
            let id = u16::from_be_bytes([l4[4], l4[5]]);
            let (src_port, dst_port) = if l4[0] == icmp::msg::ECHO_REQUEST { (id, 0) } else { (0, id) };
            let key = FlowKey { src: ip.src_addr(), dst: ip.dst_addr(), src_port, dst_port, proto };
            return Some((key, 0));
        }
        _ => return None,
    };
    let key = FlowKey {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        src_port: u16::from_be_bytes([l4[0], l4[1]]),
        dst_port: u16::from_be_bytes([l4[2], l4[3]]),
        proto,
    };
    Some((key, flags))
}

/// The key of the other direction of the flow `e` translates `k` in.
fn other_key(k: &FlowKey, e: &FlowEntry) -> FlowKey {
    if e.plain {
        // Nothing rewritten (`nat_addr` is the packet's own destination in
        // both directions): the other direction is the key reversed.
        return k.reversed();
    }
    let (mut src, mut dst) = ((k.src, k.src_port), (k.dst, k.dst_port));
    if e.rewrite_dst {
        dst = (e.nat_addr, e.nat_port);
        src = e.other.unwrap_or(src);
    } else {
        src = (e.nat_addr, e.nat_port);
        dst = e.other.unwrap_or(dst);
    }
    FlowKey { src: dst.0, dst: src.0, src_port: dst.1, dst_port: src.1, proto: k.proto }
}

/// The flow's original tuple as policy sees it: the client's own address
/// (before any SNAT) and the backend (after DNAT), from entry `e` of key `k`.
fn policy_tuple(k: &FlowKey, e: &FlowEntry) -> (Ipv4Addr, Ipv4Addr, u16, u16) {
    if e.rewrite_dst {
        (k.src, e.nat_addr, k.src_port, e.nat_port)
    } else {
        let (client, port) = e.other.unwrap_or((k.dst, k.dst_port));
        (client, k.src, port, k.src_port)
    }
}

/// The key of the original direction of the flow `e` (an entry of `k`)
/// belongs to: what names the flow in flow logs.
#[inline(always)]
fn orig_key(k: &FlowKey, e: &FlowEntry) -> FlowKey {
    if e.rewrite_dst {
        *k
    } else {
        other_key(k, e)
    }
}

/// The IPv4 total length of a checked frame (flow logs' byte counts).
#[inline(always)]
fn ip_len(frame: &[u8]) -> u16 {
    ipv4::Packet::new_unchecked(&frame[ethernet::HEADER_LEN..]).total_len()
}

/// Tells a flow logger that policy denied the first packet of a flow.
#[inline(always)]
fn log_denied<T: Trace>(tr: &mut T, key: FlowKey, dst: Ipv4Addr, dport: u16, decision: Decision) {
    if T::FLOWS {
        tr.flow(FlowEvent::Denied { key, dst, dport, decision });
    }
}

/// The drop for a policy deny.
fn denied(d: Decision) -> NatResult {
    NatResult::Done(Action::Drop(match d.direction {
        Some(Direction::Egress) => DropReason::PolicyDeniedEgress,
        _ => DropReason::PolicyDeniedIngress,
    }))
}

/// Connection tracking of a checked IPv4 frame of network `net` that
/// entered at `origin`: Service NAT, and the policy verdict of flows that
/// pods' ACLs apply to (classified on their first packet, and again once
/// after each publication of new tables; replies of allowed flows pass).
pub(crate) fn nat_stage<B: PacketBuf, T: Trace>(
    t: &Tables,
    nat: &Nat,
    net: &Network,
    origin: Origin,
    pkt: &mut B,
    m: &Ipv4Meta,
    tr: &mut T,
) -> NatResult {
    let Some((key, flags)) = flow_at(pkt.data(), m) else {
        return match icmp_error_stage(t, nat, pkt, tr) {
            Some(r) => r,
            None => icmp_policy(t, nat, pkt, tr),
        };
    };
    let service = t.services.may_translate(key.src, key.dst);
    // Whether policy tracks the flow matters only when no Service may
    // translate it, or on a miss (asked again there).
    let tracked = !service && t.acl.tracks(key.src, key.dst);
    if !service && !tracked {
        tr.note(Step::Note("no Service and no policy on these addresses: not tracked"));
        return NatResult::Untouched;
    }
    let frontend = Frontend { vip: key.dst, port: key.dst_port, proto: key.proto };
    // Hashed once: the flow table and the Maglev pick both use it.
    let hash = key.hash();
    let Some(mut e) = nat.lookup(&key, hash) else {
        tr.note(Step::FlowMiss { key });
        // The frontend is looked up once, in `new_flow`; no Service's: a
        // flow policy alone tracks, or nobody's.
        let served = if service { new_flow(t, nat, net, origin, pkt, key, hash, frontend, tr) } else { None };
        return served.unwrap_or_else(|| {
            // `tracked` was left false where a Service may translate: asked now.
            if tracked || (service && t.acl.tracks(key.src, key.dst)) {
                plain_flow(t, nat, pkt, key, hash, tr)
            } else {
                tr.note(Step::Note("no Service frontend matches, and no policy applies: untranslated"));
                NatResult::Untouched
            }
        });
    };
    tr.note(Step::FlowHit { key, entry: e });
    // Tables published since the flow was decided: is its backend still one
    // of the Service's, and does policy still allow it? (Checked once per
    // flow per publication: a flow that passes is stamped with the
    // generation.)
    if e.generation != t.generation as u32 {
        let nat_orig = e.rewrite_dst && !e.plain;
        let alive =
            !nat_orig || t.services.lookup(&frontend).is_some_and(|(_, _, p)| p.is_member(e.nat_addr, e.nat_port));
        if !alive {
            tr.note(Step::FlowEnded { key, why: "its backend is no longer one of the Service's" });
            if T::FLOWS {
                tr.flow(FlowEvent::Ended { orig: key, why: EndReason::BackendGone });
            }
            nat.remove(&key, hash);
            let other = other_key(&key, &e);
            nat.remove(&other, other.hash());
            if key.proto == ipv4::protocol::TCP {
                // Its backend is gone: the client learns at once.
                tr.note(Step::Note("TCP: the client is answered with a reset"));
                return NatResult::Done(tcp_reset(pkt));
            }
            // UDP and SCTP move to a live backend with this packet.
            return new_flow(t, nat, net, origin, pkt, key, hash, frontend, tr).unwrap_or(NatResult::Untouched);
        }
        let (src, dst, sport, dport) = policy_tuple(&key, &e);
        let d = t.acl.evaluate(src, dst, key.proto, sport, dport);
        if T::ON {
            tr.note(Step::Acl { src, dst, proto: key.proto, dport, decision: d });
        }
        if d.verdict == Verdict::Deny {
            // A policy that allowed it is gone: the flow is cut.
            tr.note(Step::FlowEnded { key, why: "the policy that allowed it is gone" });
            if T::FLOWS {
                tr.flow(FlowEvent::Ended { orig: orig_key(&key, &e), why: EndReason::PolicyRevoked });
            }
            nat.remove(&key, hash);
            let other = other_key(&key, &e);
            nat.remove(&other, other.hash());
            return denied(d);
        }
        e.generation = t.generation as u32;
        let _ = nat.insert(&key, hash, &e);
    }
    // A new connection on the ports of one that is closing (TIME-WAIT reuse).
    let syn_only = flags & (tcp::flags::SYN | tcp::flags::ACK) == tcp::flags::SYN;
    if syn_only && e.rewrite_dst && e.state & state::CLOSING != 0 && key.proto == ipv4::protocol::TCP {
        tr.note(Step::FlowEnded { key, why: "a SYN on the ports of a closing connection starts a new one" });
        if T::FLOWS {
            tr.flow(FlowEvent::Ended { orig: key, why: EndReason::of_state(e.state) });
        }
        nat.remove(&key, hash);
        let other = other_key(&key, &e);
        nat.remove(&other, other.hash());
        return new_flow(t, nat, net, origin, pkt, key, hash, frontend, tr).unwrap_or(NatResult::Untouched);
    }
    let s = next_state(key.proto, e.state, e.rewrite_dst, flags);
    if s != e.state {
        set_state(nat, &key, hash, &e, s);
    }
    if T::FLOWS {
        let orig = orig_key(&key, &e);
        tr.flow(FlowEvent::Packet { orig, reply: !e.rewrite_dst, len: ip_len(pkt.data()) });
        if s != e.state {
            tr.flow(FlowEvent::State { orig, state: s });
        }
    }
    if e.plain {
        tr.note(Step::Note("a flow tracked for policy: passes untranslated"));
        return NatResult::Untouched;
    }
    rewrite(pkt.data_mut(), &e);
    note_rewrite(pkt.data(), key, tr);
    NatResult::Translated
}

/// Notes the tuple a rewrite left (`before` it was `key`).
#[inline(always)]
fn note_rewrite<T: Trace>(frame: &[u8], key: FlowKey, tr: &mut T) {
    if T::ON {
        if let Some((after, _)) = flow_of(frame) {
            tr.note(Step::Nat { before: key, after });
        }
    }
}

/// The first packet of a flow that policy applies to and no Service
/// translates: classified; if allowed, both directions are tracked so that
/// the replies pass.
fn plain_flow<B: PacketBuf, T: Trace>(
    t: &Tables,
    nat: &Nat,
    pkt: &B,
    key: FlowKey,
    hash: u64,
    tr: &mut T,
) -> NatResult {
    let d = nat.classify(&t.acl, (key.src, key.dst, key.proto, key.src_port, key.dst_port));
    if T::ON {
        tr.note(Step::Acl { src: key.src, dst: key.dst, proto: key.proto, dport: key.dst_port, decision: d });
    }
    if d.verdict == Verdict::Deny {
        log_denied(tr, key, key.dst, key.dst_port, d);
        return denied(d);
    }
    let s = next_state(key.proto, 0, true, 0);
    let orig = FlowEntry {
        nat_addr: key.dst,
        nat_port: key.dst_port,
        rewrite_dst: true,
        service: u32::MAX,
        backend: 0,
        generation: t.generation as u32,
        timeout_ms: timeout_ms(key.proto, s),
        other: None,
        state: s,
        plain: true,
    };
    let reply = FlowEntry { nat_addr: key.src, nat_port: key.src_port, rewrite_dst: false, ..orig };
    let reply_key = key.reversed();
    let reply_hash = reply_key.hash();
    if nat.insert(&reply_key, reply_hash, &reply).is_err() {
        return NatResult::Done(Action::Drop(DropReason::FlowTableFull));
    }
    if nat.insert(&key, hash, &orig).is_err() {
        nat.remove(&reply_key, reply_hash);
        return NatResult::Done(Action::Drop(DropReason::FlowTableFull));
    }
    tr.note(Step::Note("allowed: both directions tracked for policy, nothing rewritten"));
    if T::FLOWS {
        tr.flow(FlowEvent::Started { orig: key, hash, entry: orig, len: ip_len(pkt.data()) });
    }
    NatResult::Untouched
}

/// ICMP that is neither an echo nor an error about a known flow, between
/// addresses policy applies to: classified as protocol ICMP.
fn icmp_policy<B: PacketBuf, T: Trace>(t: &Tables, nat: &Nat, pkt: &B, tr: &mut T) -> NatResult {
    let ip = ipv4::Packet::new_unchecked(&pkt.data()[ethernet::HEADER_LEN..]);
    let (src, dst, proto) = (ip.src_addr(), ip.dst_addr(), ip.protocol());
    if !t.acl.tracks(src, dst) {
        return NatResult::Untouched;
    }
    let d = nat.classify(&t.acl, (src, dst, proto, 0, 0));
    if T::ON {
        tr.note(Step::Acl { src, dst, proto, dport: 0, decision: d });
    }
    if d.verdict == Verdict::Deny {
        log_denied(tr, FlowKey { src, dst, src_port: 0, dst_port: 0, proto }, dst, 0, d);
        return denied(d);
    }
    NatResult::Untouched
}

/// Moves both entries of a flow to state `s` (and its timeout): a few times
/// per connection, never per packet.
#[cold]
fn set_state(nat: &Nat, key: &FlowKey, hash: u64, e: &FlowEntry, s: u8) {
    let timeout_ms = timeout_ms(key.proto, s);
    let _ = nat.insert(key, hash, &FlowEntry { state: s, timeout_ms, ..*e });
    let other = other_key(key, e);
    let other_hash = other.hash();
    if let Some(o) = nat.lookup(&other, other_hash) {
        let _ = nat.insert(&other, other_hash, &FlowEntry { state: s, timeout_ms, ..o });
    }
}

/// A packet of no known flow to a Service frontend; `None` when `frontend`
/// is no Service's.
#[allow(clippy::too_many_arguments)]
fn new_flow<B: PacketBuf, T: Trace>(
    t: &Tables,
    nat: &Nat,
    net: &Network,
    origin: Origin,
    pkt: &mut B,
    key: FlowKey,
    hash: u64,
    frontend: Frontend,
    tr: &mut T,
) -> Option<NatResult> {
    let (id, kind, svc) = t.services.lookup(&frontend)?;
    tr.note(Step::Service { frontend, kind, id });
    Some(service_flow(t, nat, net, origin, pkt, key, hash, (id, kind, svc), tr))
}

/// The first packet of a flow to Service port `svc` (number `id`),
/// reached by a frontend of `kind`.
#[allow(clippy::too_many_arguments)]
fn service_flow<B: PacketBuf, T: Trace>(
    t: &Tables,
    nat: &Nat,
    net: &Network,
    origin: Origin,
    pkt: &mut B,
    key: FlowKey,
    hash: u64,
    (id, kind, svc): (u32, FrontendKind, &crate::tables::service::ServicePort),
    tr: &mut T,
) -> NatResult {
    let outside = origin == Origin::Uplink;
    if outside && !kind.is_external() {
        tr.note(Step::Note("a ClusterIP is not served to the outside"));
        return NatResult::Untouched; // ClusterIPs are the cluster's own
    }
    if kind == FrontendKind::LoadBalancer && !svc.source_allowed(key.src) {
        tr.note(Step::Note("the client is outside the Service's loadBalancerSourceRanges"));
        return NatResult::Done(Action::Drop(DropReason::ServiceSourceNotAllowed));
    }
    let pick = svc.pick_set(kind, outside);
    // ClientIP affinity: the client's entry (in the flow table, under a key
    // no packet has: protocol 0) names its backend while it is live.
    let affinity_key =
        FlowKey { src: key.src, dst: key.dst, src_port: 0, dst_port: key.dst_port, proto: AFFINITY_PROTO };
    let sticky = svc
        .affinity_ms
        .and_then(|_| nat.lookup(&affinity_key, affinity_key.hash()))
        .and_then(|e| pick.position(e.nat_addr).map(|i| (i, e.nat_addr)));
    let Some((b, backend)) = sticky.or_else(|| pick.pick(hash as u32)) else {
        if svc.is_local(pick) && !svc.cluster.backends.is_empty() {
            // Local policy, endpoints elsewhere only: kube-proxy drops too.
            tr.note(Step::Note("traffic policy Local, and no endpoint of the Service on this node"));
            return NatResult::Done(Action::Drop(DropReason::ServiceNoLocalBackend));
        }
        tr.note(Step::Note("no usable endpoint: rejected (ICMP port unreachable)"));
        return NatResult::Done(reject(t, net, origin, pkt, key.dst));
    };
    if T::ON {
        let sticky = sticky.is_some();
        tr.note(Step::Backend { id, index: b, addr: backend, port: svc.target_port, sticky });
    }
    // Policy sees the client as it is and the backend it goes to.
    let d = nat.classify(&t.acl, (key.src, backend, key.proto, key.src_port, svc.target_port));
    if T::ON {
        tr.note(Step::Acl { src: key.src, dst: backend, proto: key.proto, dport: svc.target_port, decision: d });
    }
    if d.verdict == Verdict::Deny {
        log_denied(tr, key, backend, svc.target_port, d);
        return denied(d);
    }
    let s = next_state(key.proto, 0, true, 0);
    let timeout_ms = timeout_ms(key.proto, s);
    let generation = t.generation as u32;
    let mut orig = FlowEntry {
        nat_addr: backend,
        nat_port: svc.target_port,
        rewrite_dst: true,
        service: id,
        backend: b,
        generation,
        timeout_ms,
        other: None,
        state: s,
        plain: false,
    };
    let reply = FlowEntry { nat_addr: key.dst, nat_port: key.dst_port, rewrite_dst: false, other: None, ..orig };
    let mut reply_key =
        FlowKey { src: backend, dst: key.src, src_port: svc.target_port, dst_port: key.src_port, proto: key.proto };
    // The client becomes the node when the answer would otherwise miss
    // this node: from outside under Cluster policy, and a pod of another
    // node reaching this node's NodePort, externalIP or LoadBalancer IP
    // through the tunnel (its backend may sit on a third node, or on the
    // client's own, and would answer the pod directly), as kube-proxy
    // masquerades both.
    let snat_node = match origin {
        Origin::Uplink => !svc.external_local,
        Origin::Tunnel => kind.is_external(),
        Origin::Pod | Origin::Host => false,
    };
    if backend == key.src && origin != Origin::Uplink {
        // Hairpin: a pod that reaches itself through its Service would see
        // a packet from its own address, which its kernel drops; its source
        // is translated to the network's gateway address, keeping the port
        // (the pod's own ports tell its flows apart).
        reply_key.dst = net.gateway_ip;
        orig.other = Some((net.gateway_ip, key.src_port));
        tr.note(Step::Note("hairpin: the pod reaches itself, its source becomes the gateway"));
    }
    let reply = FlowEntry { other: orig.other.map(|_| (key.src, key.src_port)), ..reply };
    if snat_node {
        // From outside, Cluster policy: the client becomes the node IP and a
        // free port of this worker's slice, so the answer comes back here.
        let reply = FlowEntry { other: Some((key.src, key.src_port)), ..reply };
        match claim_snat_port(t, nat, &mut reply_key, &reply, hash) {
            Ok((ip, port)) => orig.other = Some((ip, port)),
            Err(a) => return NatResult::Done(a),
        }
        if nat.dry.is_some() {
            tr.note(Step::Note("client translated to the node IP; the source port depends on the worker"));
        }
    } else if nat.insert(&reply_key, reply_key.hash(), &reply).is_err() {
        return NatResult::Done(Action::Drop(DropReason::FlowTableFull));
    }
    if nat.insert(&key, hash, &orig).is_err() {
        nat.remove(&reply_key, reply_key.hash());
        return NatResult::Done(Action::Drop(DropReason::FlowTableFull));
    }
    if let Some(ms) = svc.affinity_ms {
        // (Re)started by every new flow of the client; a full table only
        // loses the stickiness, never the packet.
        let sticky = FlowEntry { timeout_ms: ms, other: None, ..orig };
        let _ = nat.insert(&affinity_key, affinity_key.hash(), &sticky);
    }
    if T::FLOWS {
        tr.flow(FlowEvent::Started { orig: key, hash, entry: orig, len: ip_len(pkt.data()) });
    }
    rewrite(pkt.data_mut(), &orig);
    note_rewrite(pkt.data(), key, tr);
    NatResult::Translated
}

/// Claims the reply key of an SNAT flow: destination the node IP and a port
/// of this worker's slice of the SNAT range (workers never share a port, so
/// a claim never races another worker's). Returns the node IP and port.
fn claim_snat_port(
    t: &Tables,
    nat: &Nat,
    reply_key: &mut FlowKey,
    reply: &FlowEntry,
    hash: u64,
) -> Result<(Ipv4Addr, u16), Action> {
    let (Some(node_ip), Some(r)) = (t.services.node_ip, t.services.snat_ports) else {
        return Err(Action::Drop(DropReason::SnatPortsExhausted));
    };
    let workers = u32::from(nat.workers.max(1));
    let me = u32::from(nat.worker) % workers;
    let span = u32::from(r.max) - u32::from(r.min) + 1;
    // Ports min + me, min + me + workers, ...: this worker's slice.
    let mine = span.saturating_sub(me).div_ceil(workers);
    if mine == 0 {
        return Err(Action::Drop(DropReason::SnatPortsExhausted));
    }
    reply_key.dst = node_ip;
    let start = (hash >> 32) as u32;
    for j in 0..SNAT_TRIES.min(mine) {
        let port = u32::from(r.min) + ((start.wrapping_add(j)) % mine) * workers + me;
        reply_key.dst_port = port as u16;
        match nat.insert_new(reply_key, reply) {
            Ok(()) => return Ok((node_ip, port as u16)),
            Err(InsertError::Exists) => continue,
            Err(InsertError::Full) => return Err(Action::Drop(DropReason::FlowTableFull)),
        }
    }
    Err(Action::Drop(DropReason::SnatPortsExhausted))
}

/// The answer for a Service port with no endpoint: ICMP port unreachable,
/// from the gateway to pods, from the address the client used to the
/// outside.
fn reject<B: PacketBuf>(t: &Tables, net: &Network, origin: Origin, pkt: &mut B, frontend: Ipv4Addr) -> Action {
    let (unreachable, port) = (icmp::msg::DEST_UNREACHABLE, icmp::code::PORT_UNREACHABLE);
    let sent = match (origin, &t.overlay) {
        (Origin::Uplink, Some(o)) => icmp_error_from(pkt, o.uplink_mac, frontend, unreachable, port, 0),
        _ => icmp_error(t, net, pkt, unreachable, port, 0),
    };
    sent.unwrap_or(Action::Drop(DropReason::ServiceNoBackend))
}

/// Translates an ICMP error about a packet of a translated flow, in place:
/// the error travels against the quoted packet, so it belongs to the flow
/// direction whose key is the quoted tuple reversed; that entry's rewrite
/// is applied to the outer addresses (where they are the flow's endpoints)
/// and, mirrored, to the quoted header.
/// `None`: not an ICMP error about a known flow.
fn icmp_error_stage<B: PacketBuf, T: Trace>(t: &Tables, nat: &Nat, pkt: &mut B, tr: &mut T) -> Option<NatResult> {
    let frame = pkt.data_mut();
    let ip_at = ethernet::HEADER_LEN;
    let (ihl, outer_src, outer_dst) = {
        let ip = ipv4::Packet::new_unchecked(&frame[ip_at..]);
        if ip.protocol() != ipv4::protocol::ICMP || ip.is_fragment() {
            return None;
        }
        (ip.header_len(), ip.src_addr(), ip.dst_addr())
    };
    let ip_end = ip_at + usize::from(ipv4::Packet::new_unchecked(&frame[ip_at..]).total_len());
    let icmp_at = ip_at + ihl;
    let q_at = icmp_at + icmp::HEADER_LEN;
    // The quoted IPv4 header and 4 bytes of ports, at least.
    if ip_end < q_at + ipv4::HEADER_LEN || !is_icmp_error(frame[icmp_at]) {
        return None;
    }
    let q = &frame[q_at..ip_end];
    let qihl = usize::from(q[0] & 0x0f) * 4;
    if q[0] >> 4 != 4 || qihl < ipv4::HEADER_LEN || q.len() < qihl + 4 {
        return None;
    }
    let qproto = q[9];
    if !matches!(qproto, ipv4::protocol::TCP | ipv4::protocol::UDP | ipv4::protocol::SCTP) {
        return None;
    }
    let addr = |at: usize| Ipv4Addr::new(q[at], q[at + 1], q[at + 2], q[at + 3]);
    let port = |at: usize| u16::from_be_bytes([q[at], q[at + 1]]);
    let (qsrc, qdst, qsport, qdport) = (addr(12), addr(16), port(qihl), port(qihl + 2));
    let k = FlowKey { src: qdst, dst: qsrc, src_port: qdport, dst_port: qsport, proto: qproto };
    if !t.services.may_translate(k.src, k.dst) && !t.acl.tracks(k.src, k.dst) {
        return None;
    }
    let e = nat.lookup(&k, k.hash())?;
    if e.plain {
        tr.note(Step::Note("an ICMP error about a flow policy allowed: passes"));
        return Some(NatResult::Untouched); // about an allowed flow: passes
    }
    tr.note(Step::Note("an ICMP error about a translated flow: translated back, quote included"));
    let nat_side = Some((e.nat_addr, e.nat_port));
    let (dst_rw, src_rw) = if e.rewrite_dst { (nat_side, e.other) } else { (e.other, nat_side) };
    {
        let mut ip = ipv4::Packet::new_unchecked(&mut frame[ip_at..]);
        if let Some((a, _)) = dst_rw.filter(|_| outer_dst == k.dst) {
            ip.set_dst_addr(a);
        }
        if let Some((a, _)) = src_rw.filter(|_| outer_src == k.src) {
            ip.set_src_addr(a);
        }
        ip.fill_checksum();
    }
    // The quoted packet went from k.dst to k.src: its source takes the
    // destination rewrite, its destination the source rewrite.
    let q = &mut frame[q_at..ip_end];
    let l4_sum_at = match qproto {
        ipv4::protocol::TCP => Some(qihl + 16),
        ipv4::protocol::UDP => Some(qihl + 6),
        _ => None, // SCTP's CRC covers the whole packet, which is not quoted
    };
    for (rw, addr_at, port_at) in [(dst_rw, 12, qihl), (src_rw, 16, qihl + 2)] {
        let Some((a, p)) = rw else { continue };
        let old_a = u32::from(Ipv4Addr::new(q[addr_at], q[addr_at + 1], q[addr_at + 2], q[addr_at + 3]));
        let old_p = u16::from_be_bytes([q[port_at], q[port_at + 1]]);
        q[addr_at..addr_at + 4].copy_from_slice(&a.octets());
        q[port_at..port_at + 2].copy_from_slice(&p.to_be_bytes());
        if let Some(at) = l4_sum_at.filter(|at| q.len() >= at + 2) {
            let sum = u16::from_be_bytes([q[at], q[at + 1]]);
            if !(qproto == ipv4::protocol::UDP && sum == 0) {
                let sum = checksum::update16(checksum::update32(sum, old_a, u32::from(a)), old_p, p);
                q[at..at + 2].copy_from_slice(&sum.to_be_bytes());
            }
        }
    }
    ipv4::Packet::new_unchecked(&mut q[..qihl]).fill_checksum();
    icmp::Packet::new_unchecked(&mut frame[icmp_at..ip_end]).fill_checksum();
    Some(NatResult::Translated)
}

/// An ICMP error weir built itself (fragmentation needed, time exceeded)
/// about a packet it had translated: the quote is put back as the sender
/// knows its flow.
pub(crate) fn own_error_back<B: PacketBuf>(t: &Tables, nat: Option<&Nat>, pkt: &mut B, a: Action) -> Action {
    if let (Some(n), Action::Reply(ReplyKind::IcmpFragNeeded | ReplyKind::IcmpTimeExceeded)) = (nat, a) {
        let _ = icmp_error_stage(t, n, pkt, &mut NoTrace);
    }
    a
}

/// Turns a client's TCP segment, in place, into the reset the Service
/// answers with when the flow's backend is gone (RFC 793: seq = the
/// segment's ACK if it had one, else ACK of everything it carried).
fn tcp_reset<B: PacketBuf>(pkt: &mut B) -> Action {
    let (ihl, payload_len) = {
        let ip = ipv4::Packet::new_unchecked(&pkt.data()[ethernet::HEADER_LEN..]);
        let t = tcp::Packet::new_unchecked(ip.payload());
        (ip.header_len(), ip.payload().len().saturating_sub(t.header_len()))
    };
    let want = ethernet::HEADER_LEN + ihl + tcp::HEADER_LEN;
    let extra = pkt.len().saturating_sub(want);
    if pkt.trim(extra).is_err() {
        return Action::Drop(DropReason::NoBufferRoom);
    }
    let frame = pkt.data_mut();
    let (eth, rest) = frame.split_at_mut(ethernet::HEADER_LEN);
    let mut eth = ethernet::Frame::new_unchecked(eth);
    let (src_mac, dst_mac) = (eth.src(), eth.dst());
    eth.set_src(dst_mac);
    eth.set_dst(src_mac);
    let mut ip = ipv4::Packet::new_unchecked(rest);
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    ip.set_src_addr(dst);
    ip.set_dst_addr(src);
    ip.set_ttl(super::LOCAL_TTL);
    ip.set_total_len((ihl + tcp::HEADER_LEN) as u16);
    ip.fill_checksum();
    let mut t = tcp::Packet::new_unchecked(ip.payload_mut());
    let (sport, dport, seq, ack, flags) = (t.src_port(), t.dst_port(), t.seq_number(), t.ack_number(), t.flags());
    t.set_src_port(dport);
    t.set_dst_port(sport);
    t.set_header_len(tcp::HEADER_LEN);
    t.set_window(0);
    t.set_urgent(0);
    if flags & tcp::flags::ACK != 0 {
        t.set_seq_number(ack);
        t.set_ack_number(0);
        t.set_flags(tcp::flags::RST);
    } else {
        let len = payload_len as u32 + u32::from(flags & (tcp::flags::SYN | tcp::flags::FIN) != 0);
        t.set_seq_number(0);
        t.set_ack_number(seq.wrapping_add(len));
        t.set_flags(tcp::flags::RST | tcp::flags::ACK);
    }
    t.fill_checksum(dst, src);
    Action::Reply(ReplyKind::TcpReset)
}

/// Applies an entry's rewrites to a TCP/UDP/SCTP frame, with checksums.
fn rewrite(frame: &mut [u8], e: &FlowEntry) {
    let Some((h, l4)) = ip_parts(frame) else { return };
    let proto = h[9];
    let mut ports_changed = rewrite_side(h, l4, proto, e.rewrite_dst, e.nat_addr, e.nat_port);
    if let Some((addr, port)) = e.other {
        ports_changed |= rewrite_side(h, l4, proto, !e.rewrite_dst, addr, port);
    }
    if ports_changed && proto == ipv4::protocol::SCTP {
        sctp::Packet::new_unchecked(l4).fill_checksum();
    }
}

/// The fixed 20 bytes of the IPv4 header of a checked frame, and its L4
/// bytes (`header_len..total_len`, as `ipv4::Packet::payload_mut`).
/// `None` only for a frame that would not pass `check_ipv4`.
#[inline(always)]
fn ip_parts(frame: &mut [u8]) -> Option<(&mut [u8; ipv4::HEADER_LEN], &mut [u8])> {
    let ip = frame.get_mut(ethernet::HEADER_LEN..)?;
    let fixed = ip.first_chunk::<{ ipv4::HEADER_LEN }>()?;
    let hl = usize::from(fixed[0] & 0x0f) * 4;
    let tl = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
    let (hdr, l4) = ip.get_mut(..tl)?.split_at_mut_checked(hl)?;
    Some((hdr.first_chunk_mut::<{ ipv4::HEADER_LEN }>()?, l4))
}

/// Rewrites the destination (`dst`) or the source address and port of the
/// packet with header `h` and L4 bytes `l4`; true when the port changed.
/// The IPv4 checksum and the TCP/UDP one (through the pseudo header) are
/// updated incrementally (RFC 1624).
#[inline(always)]
fn rewrite_side(
    h: &mut [u8; ipv4::HEADER_LEN],
    l4: &mut [u8],
    proto: u8,
    dst: bool,
    new_addr: Ipv4Addr,
    new_port: u16,
) -> bool {
    let at = if dst { 16 } else { 12 };
    let old = u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let new = u32::from(new_addr);
    h[at..at + 4].copy_from_slice(&new.to_be_bytes());
    let ip_sum = checksum::update32(u16::from_be_bytes([h[10], h[11]]), old, new);
    h[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let port_at = if dst { 2 } else { 0 };
    let Some(p) = l4.get_mut(port_at..port_at + 2) else {
        return false; // no ports: not a packet `check_ipv4` passed
    };
    let old_port = u16::from_be_bytes([p[0], p[1]]);
    p.copy_from_slice(&new_port.to_be_bytes());
    let sum_at = match proto {
        ipv4::protocol::TCP => 16,
        ipv4::protocol::UDP => 6,
        _ => return old_port != new_port, // SCTP: see `rewrite`
    };
    let Some(f) = l4.get_mut(sum_at..sum_at + 2) else {
        return old_port != new_port;
    };
    let sum = u16::from_be_bytes([f[0], f[1]]);
    if proto == ipv4::protocol::UDP && sum == 0 {
        return old_port != new_port; // no checksum: stays none
    }
    let mut sum = checksum::update32(sum, old, new);
    sum = checksum::update16(sum, old_port, new_port);
    if proto == ipv4::protocol::UDP && sum == 0 {
        sum = 0xffff;
    }
    f.copy_from_slice(&sum.to_be_bytes());
    old_port != new_port
}

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod outside_tests;
#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod tests;
