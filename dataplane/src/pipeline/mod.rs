//! The per-packet pipeline of one node, plain Rust over [`PacketBuf`].
//!
//! `process` looks at one frame that arrived on `in_port` and says what to do
//! with it ([`Action`]); when it says `Forward` or `Reply` the frame has already
//! been rewritten in place (MACs, TTL and checksum, or the whole answer). It
//! never allocates, locks or logs, and no input bytes make it panic: every
//! header is checked once (`new_checked`, or for IPv4 `check_ipv4`'s one
//! pass, whose `Ipv4Meta` later stages read instead of parsing the header
//! again) before it is read.
//!
//! Stages: Ethernet → ARP (on pod ports: answer for the network's gateway and,
//! as proxy, for every address routed elsewhere; on the uplink: answer for the
//! node IP and learn neighbours) or IPv4 (header checks, ping to the gateway,
//! TTL with ICMP time-exceeded, longest-prefix route in the port's network,
//! MAC rewrite). A route to another node encapsulates in VXLAN for the uplink
//! (`overlay`); VXLAN arriving on the uplink is checked, decapsulated and
//! routed to a local pod. Services and policy slot in between route lookup and
//! rewrite in later stages.

pub mod buf;
pub mod host;
pub mod nat;
pub mod overlay;
pub mod reason;
pub mod trace;

use std::net::Ipv4Addr;

pub use buf::{NoRoom, PacketBuf, TestBuf};
pub use reason::{Consumed, DropReason, ReplyKind};
pub use trace::{EndReason, FlowEvent, NoTrace, Recorder, Step, Trace};

use crate::tables::{Hop, NetId, Network, PortId, Tables};
use crate::wire::{arp, checksum, ethernet, icmp, ipv4, sctp, tcp, udp, MacAddr};

/// What the worker does with a packet once `process` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send out of this port.
    Forward(PortId),
    /// Send back out of the port it came in by (weir answered it).
    Reply(ReplyKind),
    /// Free it and count the reason.
    Drop(DropReason),
    /// Used up by weir itself (e.g. an ARP reply it asked for); free it.
    Consumed(Consumed),
    /// Encapsulated for `port` (the uplink), but the MAC of `next_hop` is not
    /// known yet: hold it until the neighbour is resolved
    /// ([`overlay::set_outer_dst`]), or drop it when that times out.
    Resolve { port: PortId, next_hop: Ipv4Addr },
}

use Action::{Drop, Forward, Reply};

/// Side effects the pipeline reports to the worker.
pub trait Events {
    /// ARP on the uplink showed `ip` at `mac`, and the tables do not say so yet.
    fn neighbour(&mut self, ip: Ipv4Addr, mac: MacAddr);
}

/// Ignores events.
pub struct NoEvents;

impl Events for NoEvents {
    fn neighbour(&mut self, _: Ipv4Addr, _: MacAddr) {}
}

/// Records events (tests).
impl Events for Vec<(Ipv4Addr, MacAddr)> {
    fn neighbour(&mut self, ip: Ipv4Addr, mac: MacAddr) {
        self.push((ip, mac));
    }
}

/// TTL of packets weir originates.
pub const LOCAL_TTL: u8 = 64;

/// Runs the pipeline on one frame, ignoring events.
#[inline]
pub fn process<B: PacketBuf>(t: &Tables, in_port: PortId, pkt: &mut B) -> Action {
    process_events(t, in_port, pkt, &mut NoEvents)
}

/// Runs the pipeline on one frame, without Service NAT.
#[inline]
pub fn process_events<B: PacketBuf, E: Events>(t: &Tables, in_port: PortId, pkt: &mut B, ev: &mut E) -> Action {
    process_full(t, None, in_port, pkt, ev)
}

/// Runs the pipeline on one frame, with Service NAT when `nat` is given.
#[inline(always)]
pub fn process_full<B: PacketBuf, E: Events>(
    t: &Tables,
    nat: Option<&nat::Nat>,
    in_port: PortId,
    pkt: &mut B,
    ev: &mut E,
) -> Action {
    process_traced(t, nat, in_port, pkt, ev, &mut NoTrace)
}

/// [`process_full`], telling `tr` what each stage did ([`trace`]); the last
/// step is always [`Step::Done`] with the action returned.
#[inline(always)]
pub fn process_traced<B: PacketBuf, E: Events, T: Trace>(
    t: &Tables,
    nat: Option<&nat::Nat>,
    in_port: PortId,
    pkt: &mut B,
    ev: &mut E,
    tr: &mut T,
) -> Action {
    let a = dispatch(t, nat, in_port, pkt, ev, tr);
    tr.note(Step::Done(a));
    a
}

#[inline(always)]
fn dispatch<B: PacketBuf, E: Events, T: Trace>(
    t: &Tables,
    nat: Option<&nat::Nat>,
    in_port: PortId,
    pkt: &mut B,
    ev: &mut E,
    tr: &mut T,
) -> Action {
    let ethertype = ethernet::Frame::new_checked(pkt.data()).map(|f| f.ethertype());
    if T::ON {
        tr.note(Step::Input { port: in_port, len: pkt.len(), ethertype: ethertype.unwrap_or(0) });
    }
    let Ok(ethertype) = ethertype else {
        return Drop(DropReason::RuntFrame);
    };
    use ethernet::ethertype::{ARP, IPV4};
    match (ethertype, t.overlay.as_ref()) {
        (IPV4, Some(o)) if o.uplink == in_port => overlay::uplink_ipv4_input(t, o, pkt, nat, tr),
        (ARP, Some(o)) if o.uplink == in_port => {
            tr.note(Step::Note("ARP on the uplink: answered for the node's addresses, neighbours learnt"));
            overlay::uplink_arp_input(t, o, pkt.data_mut(), ev)
        }
        (IPV4, Some(o)) if o.host == Some(in_port) => host::host_ipv4_input(t, o, pkt, nat, tr),
        (ARP, Some(o)) if o.host == Some(in_port) => {
            tr.note(Step::Note("ARP from the node's kernel: answered for every address but the node IP"));
            host::host_arp_input(t, o, pkt.data_mut(), ev)
        }
        (IPV4, _) => pod_ipv4_input(t, nat, in_port, pkt, tr),
        (ARP, _) => {
            tr.note(Step::Note("ARP from a pod port: answered for the gateway and addresses routed elsewhere"));
            arp_input(t, in_port, pkt.data_mut())
        }
        _ => Drop(DropReason::UnknownEthertype),
    }
}

fn arp_input(t: &Tables, in_port: PortId, frame: &mut [u8]) -> Action {
    let (eth, body) = frame.split_at_mut(ethernet::HEADER_LEN);
    let mut eth = ethernet::Frame::new_unchecked(eth);
    let dst = eth.dst();
    if !(dst.is_broadcast() || dst == t.gateway_mac) {
        return Drop(DropReason::NotForUs);
    }
    let Ok(mut req) = arp::Packet::new_checked(body) else {
        return Drop(DropReason::ArpMalformed);
    };
    if req.operation() != arp::OP_REQUEST {
        return Drop(DropReason::ArpNotForUs);
    }
    let Some(net) = t.network(t.port_network(in_port)) else {
        return Drop(DropReason::PortGone);
    };
    let (target, sender_ip, sender_mac) = (req.target_ip(), req.sender_ip(), req.sender_mac());
    // Anti-spoofing: a pod's ARP speaks for its own MAC and address (or
    // for none: 0.0.0.0 in a duplicate-address probe).
    if let Some(pod) = t.port(in_port).and_then(|p| p.pod) {
        if sender_mac != pod.mac || eth.src() != pod.mac || !(sender_ip == pod.ip || sender_ip.is_unspecified()) {
            return Drop(DropReason::PodSourceSpoofed);
        }
    }
    // Answer for the gateway, and as a proxy for every address of this
    // network routed elsewhere (another port, another node), so pods on one
    // subnet still reach each other through weir. Never for an address routed
    // back to the asker: that is a pod probing its own address (duplicate-
    // address detection) or a gratuitous ARP.
    let back_to_asker = |h: &Hop| matches!(h, Hop::Local { port, .. } if *port == in_port);
    let ours = target == net.gateway_ip
        || (target != sender_ip && net.routes.lookup(target).is_some_and(|h| !back_to_asker(h)));
    if !ours || !sender_mac.is_unicast() {
        return Drop(DropReason::ArpNotForUs);
    }
    arp_answer(&mut eth, &mut req, t.gateway_mac, target)
}

/// Turns an ARP request, in place, into the answer "`ip` is at `mac`" to
/// its sender.
pub(crate) fn arp_answer<E, A>(
    eth: &mut ethernet::Frame<E>,
    req: &mut arp::Packet<A>,
    mac: MacAddr,
    ip: Ipv4Addr,
) -> Action
where
    E: AsRef<[u8]> + AsMut<[u8]>,
    A: AsRef<[u8]> + AsMut<[u8]>,
{
    let (asker_mac, asker_ip) = (req.sender_mac(), req.sender_ip());
    arp::Repr { operation: arp::OP_REPLY, sender_mac: mac, sender_ip: ip, target_mac: asker_mac, target_ip: asker_ip }
        .emit(req);
    let src = eth.src();
    eth.set_dst(src);
    eth.set_src(mac);
    Reply(ReplyKind::ArpReply)
}

fn bad_source(a: Ipv4Addr) -> bool {
    a.is_multicast() || a.is_broadcast() || a.is_loopback() || a.is_unspecified()
}

/// Checks that the L4 header the protocol promises is there and consistent.
/// `whole` is false for a first fragment (more fragments follow): its UDP
/// length field covers the whole datagram, so only the header is checked.
#[inline(always)]
fn l4_ok(protocol: u8, payload: &[u8], whole: bool) -> bool {
    match protocol {
        ipv4::protocol::TCP => tcp::Packet::new_checked(payload).is_ok(),
        ipv4::protocol::UDP if !whole => payload.len() >= udp::HEADER_LEN,
        ipv4::protocol::UDP => udp::Packet::new_checked(payload).is_ok(),
        ipv4::protocol::ICMP => icmp::Packet::new_checked(payload).is_ok(),
        ipv4::protocol::SCTP => payload.len() >= sctp::HEADER_LEN,
        _ => true,
    }
}

/// [`check_ipv4`], noting the header that passed.
#[inline(always)]
pub(crate) fn checked<T: Trace>(frame: &[u8], mac: MacAddr, tr: &mut T) -> Result<Ipv4Meta, DropReason> {
    let m = check_ipv4(frame, mac)?;
    if T::ON {
        tr.note(Step::Ipv4 { src: m.src, dst: m.dst, proto: m.proto, ttl: m.ttl });
    }
    Ok(m)
}

/// What the checks of an IPv4 frame found: the header fields the later
/// stages read, parsed once so that they need not read the header again.
/// Describes the frame as it was checked: a stage that rewrites the header
/// (NAT) reads what it changed from the frame.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ipv4Meta {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub proto: u8,
    /// Header length in bytes (IHL * 4): 20..=60.
    pub header_len: u8,
    /// Total length: `header_len <= total_len <= ` the bytes after Ethernet.
    pub total_len: u16,
    /// The flags and fragment offset word.
    pub flags_frag: u16,
}

impl Ipv4Meta {
    /// More-fragments set or a non-zero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_frag & (IPV4_MF | IPV4_FRAG_MASK) != 0
    }

    /// The frame's L4 bytes (`header_len..total_len` of the IPv4 packet);
    /// empty if `frame` is not the frame that was checked.
    #[inline]
    pub fn l4<'f>(&self, frame: &'f [u8]) -> &'f [u8] {
        let at = ethernet::HEADER_LEN + usize::from(self.header_len);
        frame.get(at..ethernet::HEADER_LEN + usize::from(self.total_len)).unwrap_or(&[])
    }
}

const IPV4_MF: u16 = 0x2000;
const IPV4_FRAG_MASK: u16 = 0x1fff;

/// The checks every IPv4 packet passes before it is routed: destination MAC
/// `mac`, header lengths, checksum, addresses, and the L4 header of first
/// fragments. One pass over the fixed header (a 20-byte array: no bounds
/// checks, the checksum unrolled); the same checks, in the same order, as
/// `ipv4::Packet::new_checked` and `verify_checksum` make.
pub(crate) fn check_ipv4(frame: &[u8], mac: MacAddr) -> Result<Ipv4Meta, DropReason> {
    let Some((eth, body)) = frame.split_first_chunk::<{ ethernet::HEADER_LEN }>() else {
        return Err(DropReason::RuntFrame);
    };
    if eth[..6] != mac.0 {
        return Err(DropReason::NotForUs);
    }
    let Some(h) = body.first_chunk::<{ ipv4::HEADER_LEN }>() else {
        return Err(DropReason::Ipv4Truncated);
    };
    if h[0] >> 4 != 4 {
        return Err(DropReason::Ipv4BadVersion);
    }
    let hl = usize::from(h[0] & 0x0f) * 4;
    if hl < ipv4::HEADER_LEN || hl > body.len() {
        return Err(DropReason::Ipv4BadIhl);
    }
    let total_len = u16::from_be_bytes([h[2], h[3]]);
    let tl = usize::from(total_len);
    if tl < hl || tl > body.len() {
        return Err(DropReason::Ipv4BadTotalLength);
    }
    let sum_ok = if hl == ipv4::HEADER_LEN {
        checksum::fold(checksum::sum_array(h)) == 0xffff
    } else {
        checksum::checksum(&body[..hl]) == 0
    };
    if !sum_ok {
        return Err(DropReason::Ipv4BadChecksum);
    }
    let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
    let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
    if bad_source(src) {
        return Err(DropReason::Ipv4BadSource);
    }
    if dst.is_multicast() || dst.is_broadcast() || dst.is_loopback() || dst.is_unspecified() {
        return Err(DropReason::Ipv4BadDestination);
    }
    let flags_frag = u16::from_be_bytes([h[6], h[7]]);
    let proto = h[9];
    if flags_frag & IPV4_FRAG_MASK == 0 && !l4_ok(proto, &body[hl..tl], flags_frag & IPV4_MF == 0) {
        return Err(DropReason::L4Malformed);
    }
    Ok(Ipv4Meta { src, dst, ttl: h[8], proto, header_len: hl as u8, total_len, flags_frag })
}

fn pod_ipv4_input<B: PacketBuf, T: Trace>(
    t: &Tables,
    nat: Option<&nat::Nat>,
    in_port: PortId,
    pkt: &mut B,
    tr: &mut T,
) -> Action {
    let mut m = match checked(pkt.data(), t.gateway_mac, tr) {
        Ok(m) => m,
        Err(r) => return Drop(r),
    };
    // Anti-spoofing: a pod sends from its own MAC and address only.
    if let Some(pod) = t.port(in_port).and_then(|p| p.pod) {
        let src_mac = ethernet::Frame::new_unchecked(pkt.data()).src();
        if src_mac != pod.mac || m.src != pod.ip {
            return Drop(DropReason::PodSourceSpoofed);
        }
    }
    let Some(net) = t.network(t.port_network(in_port)) else {
        return Drop(DropReason::PortGone);
    };
    if let Some(n) = nat {
        match nat::nat_stage(t, n, net, nat::Origin::Pod, pkt, &m, tr) {
            nat::NatResult::Done(a) => return a,
            nat::NatResult::Translated => {
                m.dst = current_dst(pkt.data());
                let a = route_pod_packet(t, net, pkt, m, tr);
                return nat::own_error_back(t, nat, pkt, a);
            }
            nat::NatResult::Untouched => {}
        }
    }
    route_pod_packet(t, net, pkt, m, tr)
}

/// Routes a checked packet of network `net` from a pod.
fn route_pod_packet<B: PacketBuf, T: Trace>(t: &Tables, net: &Network, pkt: &mut B, m: Ipv4Meta, tr: &mut T) -> Action {
    if m.dst == net.gateway_ip {
        tr.note(Step::Note("for the network's gateway: weir answers ping only"));
        return local_input(t, net, pkt);
    }
    if m.ttl <= 1 {
        tr.note(Step::Note("TTL runs out here: ICMP time exceeded to the sender"));
        return time_exceeded(t, net, pkt);
    }
    let hop = net.routes.lookup(m.dst);
    if T::ON {
        tr.note(Step::Route { vni: net.vni, dst: m.dst, hop: hop.copied() });
    }
    let Some(hop) = hop else {
        return beyond_pod_networks(t, net, pkt, m.dst, tr);
    };
    route_to_hop(t, net, pkt, *hop, tr)
}

/// Sends a routed packet of network `net` to its hop.
#[inline]
pub(crate) fn route_to_hop<B: PacketBuf, T: Trace>(
    t: &Tables,
    net: &Network,
    pkt: &mut B,
    hop: Hop,
    tr: &mut T,
) -> Action {
    match hop {
        Hop::Local { port, mac } => forward_local(t, pkt.data_mut(), port, mac),
        Hop::Remote { vtep, vtep_mac, net: to } => {
            let Some(vni) = t.network(to).map(|n| n.vni) else {
                return Drop(DropReason::NoRoute);
            };
            overlay::encap(t, net, pkt, vtep, vtep_mac, vni, tr)
        }
        Hop::Host => host::forward_to_host(t, pkt, tr),
    }
}

/// A destination outside every pod network (TTL checked): another node's
/// IP goes through the tunnel to that node; the answers of Services reached
/// from outside (their source is now a frontend address) go out of the
/// uplink to the underlay. Anything else has no route.
pub(crate) fn beyond_pod_networks<B: PacketBuf, T: Trace>(
    t: &Tables,
    net: &Network,
    pkt: &mut B,
    dst: Ipv4Addr,
    tr: &mut T,
) -> Action {
    if let Some(hop) = t.node_hops.get(&dst) {
        tr.note(Step::Note("another node's IP: through the tunnel to that node"));
        return route_to_hop(t, net, pkt, *hop, tr);
    }
    let Some(o) = &t.overlay else {
        tr.note(Step::Note("outside every pod network, and no overlay"));
        return Drop(DropReason::NoRoute);
    };
    let src = ipv4::Packet::new_unchecked(&pkt.data()[ethernet::HEADER_LEN..]).src_addr();
    if !t.services.is_frontend_addr(src) {
        tr.note(Step::Note("outside every pod network, and not the answer of a Service reached from outside"));
        return Drop(DropReason::NoRoute);
    }
    let Some(next_hop) = o.next_hop(dst) else {
        tr.note(Step::Note("a Service's answer to the outside, but no underlay gateway"));
        return Drop(DropReason::NoRoute);
    };
    ipv4::Packet::new_unchecked(&mut pkt.data_mut()[ethernet::HEADER_LEN..]).decrement_ttl();
    overlay::to_underlay(t, o, pkt, next_hop, tr)
}

/// The destination address of a checked IPv4 frame (after NAT).
#[inline]
pub(crate) fn current_dst(frame: &[u8]) -> Ipv4Addr {
    ipv4::Packet::new_unchecked(&frame[ethernet::HEADER_LEN..]).dst_addr()
}

/// Routes a checked IPv4 frame out of a local port: TTL down by one, MACs
/// rewritten.
pub(crate) fn forward_local(t: &Tables, frame: &mut [u8], port: PortId, mac: MacAddr) -> Action {
    if t.port(port).is_none() {
        return Drop(DropReason::PortGone);
    }
    // A checked frame: at least an Ethernet and an IPv4 header.
    if let Some((eth, body)) = frame.split_first_chunk_mut::<{ ethernet::HEADER_LEN }>() {
        ipv4::Packet::new_unchecked(body).decrement_ttl();
        eth[..6].copy_from_slice(&mac.0);
        eth[6..12].copy_from_slice(&t.gateway_mac.0);
    }
    Forward(port)
}

/// Packets for a gateway address: weir answers ping, nothing else.
fn local_input<B: PacketBuf>(t: &Tables, net: &Network, pkt: &mut B) -> Action {
    let frame = pkt.data_mut();
    let (eth, body) = frame.split_at_mut(ethernet::HEADER_LEN);
    let mut ip = ipv4::Packet::new_unchecked(body);
    if ip.protocol() != ipv4::protocol::ICMP || ip.frag_offset() != 0 || ip.more_frags() {
        return Drop(DropReason::LocalNotServed);
    }
    let src = ip.src_addr();
    {
        let Ok(mut echo) = icmp::Packet::new_checked(ip.payload_mut()) else {
            return Drop(DropReason::L4Malformed);
        };
        if echo.msg_type() != icmp::msg::ECHO_REQUEST || echo.code() != 0 {
            return Drop(DropReason::LocalNotServed);
        }
        if !echo.verify_checksum() {
            return Drop(DropReason::L4Malformed);
        }
        echo.set_msg_type(icmp::msg::ECHO_REPLY);
        // Recomputed, not updated: RFC 1624's update gives 0x0000 (invalid)
        // when ident, seq and data are all zero; the sum is as cheap as the
        // verification above.
        echo.fill_checksum();
    }
    ip.set_dst_addr(src);
    ip.set_src_addr(net.gateway_ip);
    ip.set_ttl(LOCAL_TTL);
    ip.fill_checksum();
    let mut eth = ethernet::Frame::new_unchecked(eth);
    let client = eth.src();
    eth.set_dst(client);
    eth.set_src(t.gateway_mac);
    Reply(ReplyKind::IcmpEchoReply)
}

pub(crate) fn is_icmp_error(msg_type: u8) -> bool {
    // destination unreachable, source quench, redirect, time exceeded, parameter problem
    matches!(msg_type, 3 | 4 | 5 | 11 | 12)
}

/// Turns the packet, in place, into an ICMP time-exceeded for its sender
/// (RFC 792/1812: the IP header and the first 8 bytes of its payload are quoted).
fn time_exceeded<B: PacketBuf>(t: &Tables, net: &Network, pkt: &mut B) -> Action {
    icmp_error(t, net, pkt, icmp::msg::TIME_EXCEEDED, icmp::code::TTL_EXCEEDED_IN_TRANSIT, 0)
        .unwrap_or(Drop(DropReason::TtlExceeded))
}

/// Turns the packet, in place, into an ICMP error from the network's gateway
/// to its sender, quoting its IP header and 8 bytes. `None` when no error may
/// be sent about it (an ICMP error itself, a non-first fragment): the caller
/// drops it with its own reason.
pub(crate) fn icmp_error<B: PacketBuf>(
    t: &Tables,
    net: &Network,
    pkt: &mut B,
    msg_type: u8,
    code: u8,
    rest_of_header: u32,
) -> Option<Action> {
    icmp_error_from(pkt, t.gateway_mac, net.gateway_ip, msg_type, code, rest_of_header)
}

/// `icmp_error` from any address and MAC (the uplink's, for the outside).
pub(crate) fn icmp_error_from<B: PacketBuf>(
    pkt: &mut B,
    src_mac: MacAddr,
    src_ip: Ipv4Addr,
    msg_type: u8,
    code: u8,
    rest_of_header: u32,
) -> Option<Action> {
    let (client_mac, client_ip, quote) = {
        let frame = pkt.data();
        let eth = ethernet::Frame::new_unchecked(frame);
        let ip = ipv4::Packet::new_unchecked(&frame[ethernet::HEADER_LEN..]);
        let about_icmp_error =
            ip.protocol() == ipv4::protocol::ICMP && ip.payload().first().is_some_and(|ty| is_icmp_error(*ty));
        if ip.frag_offset() != 0 || about_icmp_error {
            return None;
        }
        let quote = (ip.header_len() + 8).min(usize::from(ip.total_len()));
        (eth.src(), ip.src_addr(), quote)
    };
    const NEW: usize = ipv4::HEADER_LEN + icmp::HEADER_LEN;
    let want = ethernet::HEADER_LEN + NEW + quote;
    if pkt.prepend(NEW).is_err() {
        return Some(Drop(DropReason::NoBufferRoom));
    }
    // The original IP header now starts right after the new ICMP header.
    let extra = pkt.len() - want;
    if pkt.trim(extra).is_err() {
        return Some(Drop(DropReason::NoBufferRoom));
    }
    let frame = pkt.data_mut();
    let (eth, rest) = frame.split_at_mut(ethernet::HEADER_LEN);
    ethernet::Repr { src: src_mac, dst: client_mac, ethertype: ethernet::ethertype::IPV4 }
        .emit(&mut ethernet::Frame::new_unchecked(eth));
    let icmp_len = rest.len() - ipv4::HEADER_LEN;
    let (ip_hdr, icmp_bytes) = rest.split_at_mut(ipv4::HEADER_LEN);
    ipv4::Repr {
        src: src_ip,
        dst: client_ip,
        protocol: ipv4::protocol::ICMP,
        ttl: LOCAL_TTL,
        payload_len: icmp_len,
        dscp_ecn: 0xc0, // network control, as routers send their errors
        ident: 0,
        dont_frag: false,
    }
    .emit(&mut ipv4::Packet::new_unchecked(ip_hdr));
    let mut m = icmp::Packet::new_unchecked(icmp_bytes);
    m.set_msg_type(msg_type);
    m.set_code(code);
    m.set_rest_of_header(rest_of_header);
    m.fill_checksum();
    Some(Reply(match (msg_type, code) {
        (icmp::msg::TIME_EXCEEDED, _) => ReplyKind::IcmpTimeExceeded,
        (_, icmp::code::PORT_UNREACHABLE) => ReplyKind::IcmpPortUnreachable,
        _ => ReplyKind::IcmpFragNeeded,
    }))
}

/// The network a decapsulated packet belongs to, for callers outside.
pub fn network_of_vni(t: &Tables, vni: u32) -> Option<NetId> {
    t.vni_index.get(&vni).copied()
}

#[cfg(test)]
mod check_tests;
#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;
