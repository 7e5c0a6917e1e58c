//! Table-driven tests of [`process`]: each case is a frame arriving on a port,
//! the [`Action`] it must get and, for `Forward`/`Reply`, the exact bytes that
//! must leave. Frames are built with the wire `Repr`s and setters; expected
//! outputs are built independently (full checksum recomputation, not the
//! pipeline's incremental updates).
//!
//! The node: pod CIDR 10.1.0.0/24, gateway 10.1.0.1 / 02:fe:00:00:00:01,
//! pod-a 10.1.0.2 on port 0, pod-b 10.1.0.3 on port 1, and 192.168.7.0/24
//! routed out of port 1 to a next hop.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::testkit::*;
use super::*;
use crate::config::NodeConfig;
use crate::tables::{Hop, PortEntry};
use crate::wire::ethernet::ethertype;
use crate::wire::ipv4::protocol;

const B_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);
const B_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x03]);
/// Next hop of the static route 192.168.7.0/24 (out of port 1).
const NH_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x07, 0x01]);
const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 168, 7, 5);

const B: (MacAddr, Ipv4Addr) = (B_MAC, B_IP);

fn tables() -> Tables {
    let cfg = NodeConfig::from_toml(
        r#"
        [node]
        name = "test-node"
        pod_cidr = "10.1.0.0/24"
        [gateway]
        ip = "10.1.0.1"
        mac = "02:fe:00:00:00:01"
        "#,
    )
    .unwrap();
    let mut t = Tables::new(&cfg, 1);
    t.add_port(0, PortEntry::pod("pod-a", A_IP, A_MAC, 0), 1);
    t.add_port(1, PortEntry::pod("pod-b", B_IP, B_MAC, 0), 1);
    t.networks[0].routes.insert("192.168.7.0/24".parse().unwrap(), Hop::Local { port: 1, mac: NH_MAC });
    t
}

// ---------------------------------------------------------------- builders

/// (protocol, bytes) of an L4 segment from `src` to `dst`, checksum filled;
/// UDP goes to port 53.
fn l4_bytes(src: Ipv4Addr, dst: Ipv4Addr, l4: L4) -> (u8, Vec<u8>) {
    l4_bytes_to(53, src, dst, l4)
}

/// A frame from `from` (MAC, IP) to the gateway MAC, IPv4 to `dst`.
fn pkt(from: (MacAddr, Ipv4Addr), dst: Ipv4Addr, ttl: u8, l4: L4) -> Vec<u8> {
    pkt_to(53, from, dst, ttl, l4)
}

/// The reply weir must send to `to`: "`ip` is at the gateway MAC".
fn is_at(to: (MacAddr, Ipv4Addr), ip: Ipv4Addr) -> Vec<u8> {
    let r =
        arp::Repr { operation: arp::OP_REPLY, sender_mac: GW_MAC, sender_ip: ip, target_mac: to.0, target_ip: to.1 };
    arp_frame(to.0, GW_MAC, r)
}

// ------------------------------------------------------- expected outputs

/// `frame` as routed to `next_hop`: MACs rewritten, TTL - 1, header checksum
/// recomputed from scratch, everything else as it was.
fn routed(frame: &[u8], next_hop: MacAddr) -> Vec<u8> {
    let mut out = frame.to_vec();
    let mut e = ethernet::Frame::new_unchecked(&mut out[..]);
    e.set_dst(next_hop);
    e.set_src(GW_MAC);
    edit_ip(out, |ip| ip.set_ttl(ip.ttl() - 1))
}

/// The ICMP time-exceeded weir must send back for `frame` from `client_mac`.
fn time_exceeded_for(frame: &[u8], client_mac: MacAddr) -> Vec<u8> {
    let ip = ipv4::Packet::new_checked(&frame[ethernet::HEADER_LEN..]).unwrap();
    let quote_len = (ip.header_len() + 8).min(usize::from(ip.total_len()));
    let quote = &ip.as_bytes()[..quote_len];
    let (_, msg) = l4_bytes(GW_IP, ip.src_addr(), L4::Icmp(icmp::msg::TIME_EXCEEDED, 0, 0, quote));
    let repr = ipv4::Repr {
        src: GW_IP,
        dst: ip.src_addr(),
        protocol: protocol::ICMP,
        ttl: LOCAL_TTL,
        payload_len: 0,
        dscp_ecn: 0xc0,
        ident: 0,
        dont_frag: false,
    };
    eth(client_mac, GW_MAC, ethertype::IPV4, &ipv4_with(repr, &msg))
}

/// The echo reply weir must send to `to` for `ping(ident, seq, data)`.
fn echo_reply(to: (MacAddr, Ipv4Addr), ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let l4 = L4::Icmp(icmp::msg::ECHO_REPLY, 0, u32::from(ident) << 16 | u32::from(seq), data);
    let mut f = pkt((GW_MAC, GW_IP), to.1, LOCAL_TTL, l4);
    ethernet::Frame::new_unchecked(&mut f[..]).set_dst(to.0);
    f
}

// ------------------------------------------------------------ the runner

struct Case {
    name: &'static str,
    port: PortId,
    frame: Vec<u8>,
    want: Action,
    /// The exact frame that must leave, for `Forward` and `Reply`.
    out: Option<Vec<u8>>,
}

impl Case {
    fn drop(name: &'static str, port: PortId, frame: Vec<u8>, reason: DropReason) -> Case {
        Case { name, port, frame, want: Drop(reason), out: None }
    }
    /// Forwarded out of `out_port` to `next_hop`.
    fn fwd(name: &'static str, port: PortId, frame: Vec<u8>, out_port: PortId, next_hop: MacAddr) -> Case {
        let out = routed(&frame, next_hop);
        Case { name, port, frame, want: Forward(out_port), out: Some(out) }
    }
    fn reply(name: &'static str, port: PortId, frame: Vec<u8>, kind: ReplyKind, out: Vec<u8>) -> Case {
        Case { name, port, frame, want: Reply(kind), out: Some(out) }
    }
}

/// Runs one case: the action must match, and so must the output bytes.
fn run(t: &Tables, c: &Case) -> Action {
    let mut buf = TestBuf::new(&c.frame);
    let got = process(t, c.port, &mut buf);
    assert_eq!(got, c.want, "{}", c.name);
    if let Forward(_) | Reply(_) = got {
        let want = c.out.as_ref().unwrap_or_else(|| panic!("{}: no expected output", c.name));
        assert_bytes(c.name, buf.data(), want);
        check_output(c.name, &c.frame, got, buf.data());
    }
    got
}

/// Properties every answer or forwarded frame has, checked independently of
/// the expected bytes (so a wrong expectation cannot hide a bad checksum).
fn check_output(name: &str, input: &[u8], action: Action, out: &[u8]) {
    let e = ethernet::Frame::new_checked(out).unwrap();
    assert_eq!(e.src(), GW_MAC, "{name}: source MAC");
    if e.ethertype() != ethertype::IPV4 {
        return;
    }
    let ip = ipv4::Packet::new_checked(e.payload()).unwrap();
    assert!(ip.verify_checksum(), "{name}: IPv4 header checksum");
    match action {
        Forward(_) => {
            assert_eq!(out.len(), input.len(), "{name}: length");
            assert_eq!(ip.ttl(), input[ethernet::HEADER_LEN + 8] - 1, "{name}: TTL");
            assert_eq!(&out[12..22], &input[12..22], "{name}: ethertype and IPv4 header up to TTL");
            assert_eq!(&out[23..24], &input[23..24], "{name}: protocol");
            assert_eq!(&out[26..], &input[26..], "{name}: addresses, options, L4 and padding");
        }
        Reply(_) => {
            assert_eq!(ip.src_addr(), GW_IP, "{name}: reply source");
            assert_eq!(ip.ttl(), LOCAL_TTL, "{name}: reply TTL");
            assert_eq!(ip.protocol(), protocol::ICMP);
            assert!(icmp::Packet::new_checked(ip.payload()).unwrap().verify_checksum(), "{name}: ICMP checksum");
        }
        other => unreachable!("{name}: {other:?}"),
    }
}

// ------------------------------------------------------------ the tables

fn forwarding_cases() -> Vec<Case> {
    let udp_ab = pkt(A, B_IP, 64, L4::Udp(b"hello pod-b"));
    vec![
        Case::fwd("udp a->b", 0, udp_ab.clone(), 1, B_MAC),
        Case::fwd("tcp a->b", 0, pkt(A, B_IP, 64, L4::Tcp(b"GET / HTTP/1.1\r\n\r\n")), 1, B_MAC),
        Case::fwd("icmp echo a->b", 0, pkt(A, B_IP, 64, ping(7, 1, b"abcdefgh")), 1, B_MAC),
        Case::fwd("udp b->a", 1, pkt(B, A_IP, 64, L4::Udp(b"hello pod-a")), 0, A_MAC),
        Case::fwd("tcp b->a ttl 2", 1, pkt(B, A_IP, 2, L4::Tcp(b"")), 0, A_MAC),
        Case::fwd("ttl 255", 0, pkt(A, B_IP, 255, L4::Udp(b"x")), 1, B_MAC),
        Case::fwd("udp to static route", 0, pkt(A, REMOTE, 64, L4::Udp(b"far")), 1, NH_MAC),
        Case::fwd("icmp to static route", 0, pkt(A, Ipv4Addr::new(192, 168, 7, 254), 64, ping(1, 2, b"")), 1, NH_MAC),
        Case::drop("frame from a MAC not the pod's", 0, poke(udp_ab.clone(), 6, &OTHER_MAC.0), DropReason::PodSourceSpoofed),
        Case::drop(
            "IPv4 from an address not the pod's",
            0,
            pkt((A_MAC, Ipv4Addr::new(10, 1, 0, 77)), B_IP, 64, L4::Udp(b"spoof")),
            DropReason::PodSourceSpoofed,
        ),
        Case::fwd("unknown protocol, 3 bytes", 0, pkt(A, B_IP, 64, L4::Raw(47, b"gre")), 1, B_MAC),
        Case::fwd("sctp, common header only", 0, pkt(A, B_IP, 64, L4::Raw(protocol::SCTP, &[0; 12])), 1, B_MAC),
        Case::fwd(
            "ip options (IHL 6)",
            0,
            {
                // Rebuild with a 4-byte option (NOP NOP NOP EOL) before the UDP header.
                let mut f = udp_ab.clone();
                f.splice(34..34, [1, 1, 1, 0]);
                edit_ip(f, |ip| {
                    ip.set_version_ihl(4, 24);
                    ip.set_total_len(ip.total_len() + 4);
                })
            },
            1,
            B_MAC,
        ),
        Case::drop("no route", 0, pkt(A, UNROUTED, 64, L4::Udp(b"?")), DropReason::NoRoute),
        Case::drop(
            "no route: pod cidr, no pod",
            0,
            pkt(A, Ipv4Addr::new(10, 1, 0, 99), 64, L4::Udp(b"?")),
            DropReason::NoRoute,
        ),
        Case::drop(
            "multicast dst",
            0,
            pkt(A, Ipv4Addr::new(239, 1, 1, 1), 64, L4::Udp(b"?")),
            DropReason::Ipv4BadDestination,
        ),
    ]
}

fn arp_cases() -> Vec<Case> {
    let req = |op: u16, sender: (MacAddr, Ipv4Addr), target: Ipv4Addr| arp::Repr {
        operation: op,
        sender_mac: sender.0,
        sender_ip: sender.1,
        target_mac: MacAddr::ZERO,
        target_ip: target,
    };
    let gw_req = who_has(A, GW_IP);
    let mut bad_htype = gw_req.clone();
    bad_htype[15] = 6; // htype 6 (IEEE 802)
    let mut bad_ptype = gw_req.clone();
    bad_ptype[16..18].copy_from_slice(&ethertype::IPV6.to_be_bytes());
    let mut bad_hlen = gw_req.clone();
    bad_hlen[18] = 8;
    vec![
        Case::reply("who has gateway (a)", 0, gw_req.clone(), ReplyKind::ArpReply, is_at(A, GW_IP)),
        Case::reply("who has gateway (b)", 1, who_has(B, GW_IP), ReplyKind::ArpReply, is_at(B, GW_IP)),
        Case::reply(
            "who has gateway, unicast to gateway MAC",
            0,
            arp_frame(GW_MAC, A_MAC, req(arp::OP_REQUEST, A, GW_IP)),
            ReplyKind::ArpReply,
            is_at(A, GW_IP),
        ),
        Case::reply(
            "who has gateway, padded to 60 bytes",
            0,
            padded(gw_req.clone(), 60),
            ReplyKind::ArpReply,
            padded(is_at(A, GW_IP), 60),
        ),
        Case::reply(
            "who has gateway, from a DAD probe (sender 0.0.0.0)",
            0,
            who_has((A_MAC, Ipv4Addr::UNSPECIFIED), GW_IP),
            ReplyKind::ArpReply,
            is_at((A_MAC, Ipv4Addr::UNSPECIFIED), GW_IP),
        ),
        Case::reply("proxy: who has pod-b, from port 0", 0, who_has(A, B_IP), ReplyKind::ArpReply, is_at(A, B_IP)),
        Case::reply("proxy: who has pod-a, from port 1", 1, who_has(B, A_IP), ReplyKind::ArpReply, is_at(B, A_IP)),
        Case::reply("proxy: static route, from port 0", 0, who_has(A, REMOTE), ReplyKind::ArpReply, is_at(A, REMOTE)),
        Case::drop(
            "DAD probe for own address",
            0,
            who_has((A_MAC, Ipv4Addr::UNSPECIFIED), A_IP),
            DropReason::ArpNotForUs,
        ),
        Case::drop(
            "DAD probe for own address from b",
            1,
            who_has((B_MAC, Ipv4Addr::UNSPECIFIED), B_IP),
            DropReason::ArpNotForUs,
        ),
        Case::drop("static route back to the asker", 1, who_has(B, REMOTE), DropReason::ArpNotForUs),
        Case::drop("gratuitous, own address", 0, who_has(A, A_IP), DropReason::ArpNotForUs),
        Case::drop(
            "gratuitous for an address routed elsewhere (not the pod's)",
            0,
            who_has((A_MAC, B_IP), B_IP),
            DropReason::PodSourceSpoofed,
        ),
        Case::drop("ARP from the pod's address with another MAC", 0, who_has((OTHER_MAC, A_IP), B_IP), DropReason::PodSourceSpoofed),
        Case::drop(
            "duplicate-address probe (sender 0.0.0.0)",
            0,
            who_has((A_MAC, Ipv4Addr::UNSPECIFIED), A_IP),
            DropReason::ArpNotForUs,
        ),
        Case::drop("no route for target", 0, who_has(A, UNROUTED), DropReason::ArpNotForUs),
        Case::drop("pod cidr address without pod", 0, who_has(A, Ipv4Addr::new(10, 1, 0, 99)), DropReason::ArpNotForUs),
        Case::drop(
            "multicast sender MAC",
            0,
            arp_frame(
                MacAddr::BROADCAST,
                A_MAC,
                arp::Repr { sender_mac: MacAddr([0x01, 0, 0x5e, 0, 0, 1]), ..req(arp::OP_REQUEST, A, GW_IP) },
            ),
            DropReason::PodSourceSpoofed,
        ),
        Case::drop("arp reply", 0, arp_frame(GW_MAC, A_MAC, req(arp::OP_REPLY, A, GW_IP)), DropReason::ArpNotForUs),
        Case::drop(
            "arp op 3 (rarp)",
            0,
            arp_frame(MacAddr::BROADCAST, A_MAC, req(3, A, GW_IP)),
            DropReason::ArpNotForUs,
        ),
        Case::drop("arp body 20 bytes", 0, gw_req[..34].to_vec(), DropReason::ArpMalformed),
        Case::drop("arp body 27 bytes", 0, gw_req[..41].to_vec(), DropReason::ArpMalformed),
        Case::drop("arp body empty", 0, gw_req[..14].to_vec(), DropReason::ArpMalformed),
        Case::drop("arp htype 6", 0, bad_htype, DropReason::ArpMalformed),
        Case::drop("arp ptype ipv6", 0, bad_ptype, DropReason::ArpMalformed),
        Case::drop("arp hlen 8", 0, bad_hlen, DropReason::ArpMalformed),
        Case::drop(
            "arp unicast to another MAC",
            0,
            arp_frame(OTHER_MAC, A_MAC, req(arp::OP_REQUEST, A, GW_IP)),
            DropReason::NotForUs,
        ),
        Case::drop(
            "arp to a multicast MAC",
            0,
            arp_frame(MacAddr([0x01, 0, 0x5e, 0, 0, 1]), A_MAC, req(arp::OP_REQUEST, A, GW_IP)),
            DropReason::NotForUs,
        ),
        Case::drop(
            "truncated arp to another MAC",
            0,
            poke(gw_req[..20].to_vec(), 0, &OTHER_MAC.0),
            DropReason::NotForUs,
        ),
    ]
}

fn gateway_cases() -> Vec<Case> {
    let data = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut bad_icmp_sum = pkt(A, GW_IP, 64, ping(9, 3, data));
    bad_icmp_sum[36] ^= 0x01; // ICMP checksum (14 + 20 + 2)
    vec![
        Case::reply(
            "ping gateway",
            0,
            pkt(A, GW_IP, 64, ping(0x4242, 1, data)),
            ReplyKind::IcmpEchoReply,
            echo_reply(A, 0x4242, 1, data),
        ),
        Case::reply(
            "ping gateway from b",
            1,
            pkt(B, GW_IP, 17, ping(1, 65535, b"")),
            ReplyKind::IcmpEchoReply,
            echo_reply(B, 1, 65535, b""),
        ),
        Case::reply(
            "ping gateway, odd length",
            0,
            pkt(A, GW_IP, 64, ping(3, 4, b"odd")),
            ReplyKind::IcmpEchoReply,
            echo_reply(A, 3, 4, b"odd"),
        ),
        Case::reply(
            "ping gateway with ttl 1",
            0,
            pkt(A, GW_IP, 1, ping(5, 6, data)),
            ReplyKind::IcmpEchoReply,
            echo_reply(A, 5, 6, data),
        ),
        // Everything the checksum covers is zero once the type is 0: the one
        // case where RFC 1624's incremental update gives 0x0000 instead of 0xffff.
        Case::reply(
            "ping gateway, all-zero echo",
            0,
            pkt(A, GW_IP, 64, ping(0, 0, &[0; 16])),
            ReplyKind::IcmpEchoReply,
            echo_reply(A, 0, 0, &[0; 16]),
        ),
        Case::reply(
            "ping gateway, ethernet padding kept",
            0,
            padded(pkt(A, GW_IP, 64, ping(1, 1, b"")), 60),
            ReplyKind::IcmpEchoReply,
            padded(echo_reply(A, 1, 1, b""), 60),
        ),
        Case::drop("udp to gateway", 0, pkt(A, GW_IP, 64, L4::Udp(b"dns?")), DropReason::LocalNotServed),
        Case::drop("tcp to gateway", 0, pkt(A, GW_IP, 64, L4::Tcp(b"")), DropReason::LocalNotServed),
        Case::drop("echo reply to gateway", 0, pkt(A, GW_IP, 64, L4::Icmp(0, 0, 0, b"")), DropReason::LocalNotServed),
        Case::drop("echo request code 1", 0, pkt(A, GW_IP, 64, L4::Icmp(8, 1, 0, b"")), DropReason::LocalNotServed),
        Case::drop(
            "fragmented ping to gateway",
            0,
            edit_ip(pkt(A, GW_IP, 64, ping(1, 1, data)), |ip| ip.set_flags_frag(false, true, 0)),
            DropReason::LocalNotServed,
        ),
        Case::drop("echo with bad icmp checksum", 0, bad_icmp_sum, DropReason::L4Malformed),
        Case::drop(
            "icmp of 4 bytes to gateway",
            0,
            pkt(A, GW_IP, 64, L4::Raw(protocol::ICMP, &[8, 0, 0xf7, 0xff])),
            DropReason::L4Malformed,
        ),
    ]
}

fn ttl_cases() -> Vec<Case> {
    let udp1 = pkt(A, B_IP, 1, L4::Udp(b"expiring datagram"));
    let tcp1 = pkt(A, B_IP, 1, L4::Tcp(b"expiring segment, longer than eight bytes"));
    let udp0 = pkt(A, B_IP, 0, L4::Udp(b"already dead"));
    let ping1 = pkt(A, REMOTE, 1, ping(1, 1, b"traceroute"));
    let from_b = pkt(B, A_IP, 1, L4::Udp(b"b to a"));
    let short = pkt(A, B_IP, 1, L4::Raw(99, b"abc"));
    let padded1 = padded(pkt(A, B_IP, 1, L4::Udp(b"")), 60);
    let unrouted = pkt(A, UNROUTED, 1, L4::Udp(b"traceroute hop"));
    let options = {
        let mut f = udp1.clone();
        f.splice(34..34, [1, 1, 1, 0]);
        edit_ip(f, |ip| {
            ip.set_version_ihl(4, 24);
            ip.set_total_len(ip.total_len() + 4);
        })
    };
    let first_frag = edit_ip(udp1.clone(), |ip| ip.set_flags_frag(false, true, 0));
    // An ICMP error quoting some packet is never answered with another error.
    let unreachable = pkt(A, B_IP, 1, L4::Icmp(icmp::msg::DEST_UNREACHABLE, 3, 0, &udp1[14..42]));
    let time_exceeded = pkt(A, B_IP, 1, L4::Icmp(icmp::msg::TIME_EXCEEDED, 0, 0, &udp1[14..42]));
    let later_frag = edit_ip(udp1.clone(), |ip| ip.set_flags_frag(false, false, 1480));
    let te = |name, port, f: &Vec<u8>, mac| {
        Case::reply(name, port, f.clone(), ReplyKind::IcmpTimeExceeded, time_exceeded_for(f, mac))
    };
    vec![
        te("ttl 1 udp", 0, &udp1, A_MAC),
        te("ttl 1 tcp (quote cut at 8 bytes)", 0, &tcp1, A_MAC),
        te("ttl 0 udp", 0, &udp0, A_MAC),
        te("ttl 1 echo request (not an error)", 0, &ping1, A_MAC),
        te("ttl 1 from b", 1, &from_b, B_MAC),
        te("ttl 1, payload under 8 bytes", 0, &short, A_MAC),
        te("ttl 1, ethernet padding trimmed", 0, &padded1, A_MAC),
        te("ttl 1 with ip options", 0, &options, A_MAC),
        te("ttl 1 first fragment", 0, &first_frag, A_MAC),
        te("ttl 1, no route", 0, &unrouted, A_MAC),
        Case::drop("ttl 1 dest unreachable", 0, unreachable, DropReason::TtlExceeded),
        Case::drop("ttl 1 time exceeded", 0, time_exceeded, DropReason::TtlExceeded),
        Case::drop("ttl 1 non-first fragment", 0, later_frag.clone(), DropReason::TtlExceeded),
        Case::drop("ttl 0 non-first fragment", 0, edit_ip(later_frag, |ip| ip.set_ttl(0)), DropReason::TtlExceeded),
    ]
}

/// Frames that must be dropped for exactly one reason, and a few that look
/// odd but are fine.
fn malformed_cases() -> Vec<Case> {
    use DropReason::*;
    let good = pkt(A, B_IP, 64, L4::Udp(b"payload!"));
    let with_ip = |f: fn(&mut ipv4::Packet<&mut [u8]>)| edit_ip(good.clone(), f);
    let from = |src: Ipv4Addr| pkt((A_MAC, src), B_IP, 64, L4::Udp(b"spoofed"));
    let mut bad_sum = good.clone();
    bad_sum[25] ^= 0x40;
    let tcp_offset = |off: u8| {
        let mut f = pkt(A, B_IP, 64, L4::Tcp(b""));
        f[34 + 12] = off << 4;
        f
    };
    let udp_len = |len: u16| poke(pkt(A, B_IP, 64, L4::Udp(b"payload!")), 34 + 4, &len.to_be_bytes());
    let tiny_tcp_frag =
        edit_ip(pkt(A, B_IP, 64, L4::Raw(protocol::TCP, b"tail")), |ip| ip.set_flags_frag(false, false, 1480));
    // The first fragment of a 3000-byte UDP datagram: the UDP length field
    // covers the whole datagram, not this fragment.
    let big_udp_first =
        edit_ip(poke(good.clone(), 34 + 4, &3000u16.to_be_bytes()), |ip| ip.set_flags_frag(false, true, 0));
    vec![
        Case::drop("empty frame", 0, vec![], RuntFrame),
        Case::drop("1 byte", 0, vec![0xff], RuntFrame),
        Case::drop("13 bytes", 0, good[..13].to_vec(), RuntFrame),
        Case::drop("ipv6", 0, poke(good.clone(), 12, &[0x86, 0xdd]), UnknownEthertype),
        Case::drop("lldp", 0, poke(good.clone(), 12, &[0x88, 0xcc]), UnknownEthertype),
        Case::drop("ethertype 0x1234", 0, poke(good.clone(), 12, &[0x12, 0x34]), UnknownEthertype),
        Case::drop("vlan tagged", 0, poke(good.clone(), 12, &[0x81, 0x00]), UnknownEthertype),
        Case::drop("ethernet header only, unknown type", 1, eth(GW_MAC, B_MAC, 0x1234, &[]), UnknownEthertype),
        Case::drop("ipv4 to another MAC", 0, poke(good.clone(), 0, &OTHER_MAC.0), NotForUs),
        Case::drop("ipv4 to broadcast MAC", 0, poke(good.clone(), 0, &MacAddr::BROADCAST.0), NotForUs),
        Case::drop("ipv4 to pod-b's MAC", 0, poke(good.clone(), 0, &B_MAC.0), NotForUs),
        Case::drop("ipv4 header only ethernet", 0, good[..14].to_vec(), Ipv4Truncated),
        Case::drop("ipv4 19 bytes", 0, good[..33].to_vec(), Ipv4Truncated),
        Case::drop("version 6", 0, with_ip(|ip| ip.set_version_ihl(6, 20)), Ipv4BadVersion),
        Case::drop("version 0", 0, with_ip(|ip| ip.set_version_ihl(0, 20)), Ipv4BadVersion),
        Case::drop("ihl 4", 0, with_ip(|ip| ip.set_version_ihl(4, 16)), Ipv4BadIhl),
        Case::drop("ihl 0", 0, with_ip(|ip| ip.set_version_ihl(4, 0)), Ipv4BadIhl),
        Case::drop("ihl 15, 36-byte packet", 0, with_ip(|ip| ip.set_version_ihl(4, 60)), Ipv4BadIhl),
        Case::drop("total length 19", 0, with_ip(|ip| ip.set_total_len(19)), Ipv4BadTotalLength),
        Case::drop("total length 0", 0, with_ip(|ip| ip.set_total_len(0)), Ipv4BadTotalLength),
        Case::drop("total length past the frame", 0, with_ip(|ip| ip.set_total_len(37)), Ipv4BadTotalLength),
        Case::drop("total length 65535", 0, with_ip(|ip| ip.set_total_len(65535)), Ipv4BadTotalLength),
        Case::drop("bad header checksum", 0, bad_sum, Ipv4BadChecksum),
        Case::drop("checksum zeroed", 0, poke(good.clone(), 24, &[0, 0]), Ipv4BadChecksum),
        Case::drop("source 224.0.0.1", 0, from(Ipv4Addr::new(224, 0, 0, 1)), Ipv4BadSource),
        Case::drop("source 255.255.255.255", 0, from(Ipv4Addr::BROADCAST), Ipv4BadSource),
        Case::drop("source 127.0.0.1", 0, from(Ipv4Addr::LOCALHOST), Ipv4BadSource),
        Case::drop("source 0.0.0.0", 0, from(Ipv4Addr::UNSPECIFIED), Ipv4BadSource),
        Case::drop(
            "to 224.0.0.251",
            0,
            pkt(A, Ipv4Addr::new(224, 0, 0, 251), 64, L4::Udp(b"mdns")),
            Ipv4BadDestination,
        ),
        Case::drop("to 255.255.255.255", 0, pkt(A, Ipv4Addr::BROADCAST, 64, L4::Udp(b"bcast")), Ipv4BadDestination),
        Case::drop(
            "ttl 1 to multicast: no icmp error",
            0,
            pkt(A, Ipv4Addr::new(239, 1, 2, 3), 1, L4::Udp(b"m")),
            Ipv4BadDestination,
        ),
        Case::drop("to 127.0.0.1", 0, pkt(A, Ipv4Addr::LOCALHOST, 64, L4::Udp(b"lo")), Ipv4BadDestination),
        Case::drop("to 0.0.0.0", 0, pkt(A, Ipv4Addr::UNSPECIFIED, 64, L4::Udp(b"zero")), Ipv4BadDestination),
        Case::drop("tcp header 10 bytes", 0, pkt(A, B_IP, 64, L4::Raw(protocol::TCP, &[0; 10])), L4Malformed),
        Case::drop("sctp, empty", 0, pkt(A, B_IP, 64, L4::Raw(protocol::SCTP, b"")), L4Malformed),
        Case::drop("sctp header 11 bytes", 0, pkt(A, B_IP, 64, L4::Raw(protocol::SCTP, &[0; 11])), L4Malformed),
        Case::drop("tcp data offset 3", 0, tcp_offset(3), L4Malformed),
        Case::drop("tcp data offset 15, 20-byte segment", 0, tcp_offset(15), L4Malformed),
        Case::drop("udp header 4 bytes", 0, pkt(A, B_IP, 64, L4::Raw(protocol::UDP, &[0, 1, 0, 2])), L4Malformed),
        Case::drop("udp length 4", 0, udp_len(4), L4Malformed),
        Case::drop("udp length past the payload", 0, udp_len(17), L4Malformed),
        Case::drop("icmp of 4 bytes", 0, pkt(A, B_IP, 64, L4::Raw(protocol::ICMP, &[8, 0, 0, 0])), L4Malformed),
        Case::drop("icmp empty", 0, pkt(A, B_IP, 64, L4::Raw(protocol::ICMP, &[])), L4Malformed),
        Case::drop("malformed l4 beats ttl 1", 0, pkt(A, B_IP, 1, L4::Raw(protocol::UDP, &[0; 4])), L4Malformed),
        Case::drop("malformed l4 to the gateway", 0, pkt(A, GW_IP, 64, L4::Raw(protocol::UDP, &[0; 7])), L4Malformed),
        // Odd, but fine.
        Case::fwd("non-first tcp fragment, 4 bytes", 0, tiny_tcp_frag, 1, B_MAC),
        Case::fwd("first fragment of a big udp datagram", 0, big_udp_first, 1, B_MAC),
        Case::fwd("padded to 60 bytes", 0, padded(pkt(A, B_IP, 64, L4::Udp(b"")), 60), 1, B_MAC),
        Case::fwd("trailing bytes past total length", 0, padded(good.clone(), 200), 1, B_MAC),
        Case::fwd("udp length shorter than the ip payload", 0, udp_len(9), 1, B_MAC),
        Case::fwd("udp checksum 0 (none)", 0, poke(good.clone(), 34 + 6, &[0, 0]), 1, B_MAC),
        Case::fwd("bad udp checksum (not weir's to check)", 0, poke(good.clone(), 34 + 6, &[0xde, 0xad]), 1, B_MAC),
    ]
}

fn all_cases() -> Vec<Case> {
    [forwarding_cases(), arp_cases(), gateway_cases(), ttl_cases(), malformed_cases()].into_iter().flatten().collect()
}

// ------------------------------------------------------------- the tests

#[test]
fn forwarding() {
    let t = tables();
    for c in forwarding_cases() {
        run(&t, &c);
    }
}

#[test]
fn forwarded_frame_fields() {
    let t = tables();
    let input = pkt(A, B_IP, 64, L4::Udp(b"fields"));
    let mut buf = TestBuf::new(&input);
    assert_eq!(process(&t, 0, &mut buf), Forward(1));
    let e = ethernet::Frame::new_checked(buf.data()).unwrap();
    assert_eq!((e.dst(), e.src(), e.ethertype()), (B_MAC, GW_MAC, ethertype::IPV4));
    let ip = ipv4::Packet::new_checked(e.payload()).unwrap();
    assert_eq!(ip.ttl(), 63);
    assert!(ip.verify_checksum());
    assert_eq!((ip.src_addr(), ip.dst_addr()), (A_IP, B_IP));
    assert_eq!(ip.payload(), &input[34..]);
    assert!(udp::Packet::new_checked(ip.payload()).unwrap().verify_checksum(A_IP, B_IP));
}

#[test]
fn arp() {
    let t = tables();
    for c in arp_cases() {
        run(&t, &c);
    }
}

#[test]
fn arp_reply_fields() {
    let t = tables();
    let mut buf = TestBuf::new(&who_has(A, B_IP));
    assert_eq!(process(&t, 0, &mut buf), Reply(ReplyKind::ArpReply));
    let e = ethernet::Frame::new_checked(buf.data()).unwrap();
    assert_eq!((e.dst(), e.src(), e.ethertype()), (A_MAC, GW_MAC, ethertype::ARP));
    let r = arp::Repr::parse(&arp::Packet::new_checked(e.payload()).unwrap());
    let want =
        arp::Repr { operation: arp::OP_REPLY, sender_mac: GW_MAC, sender_ip: B_IP, target_mac: A_MAC, target_ip: A_IP };
    assert_eq!(r, want);
}

#[test]
fn gateway() {
    let t = tables();
    for c in gateway_cases() {
        run(&t, &c);
    }
}

#[test]
fn echo_reply_fields() {
    let t = tables();
    let mut buf = TestBuf::new(&pkt(A, GW_IP, 42, ping(0xbeef, 77, b"payload")));
    assert_eq!(process(&t, 0, &mut buf), Reply(ReplyKind::IcmpEchoReply));
    let e = ethernet::Frame::new_checked(buf.data()).unwrap();
    assert_eq!((e.dst(), e.src()), (A_MAC, GW_MAC));
    let ip = ipv4::Packet::new_checked(e.payload()).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr(), ip.ttl(), ip.protocol()), (GW_IP, A_IP, LOCAL_TTL, protocol::ICMP));
    assert!(ip.verify_checksum());
    let m = icmp::Packet::new_checked(ip.payload()).unwrap();
    assert_eq!((m.msg_type(), m.code()), (icmp::msg::ECHO_REPLY, 0));
    assert!(m.verify_checksum());
    assert_eq!((m.echo_ident(), m.echo_seq(), m.payload()), (0xbeef, 77, &b"payload"[..]));
}

#[test]
fn ttl() {
    let t = tables();
    for c in ttl_cases() {
        run(&t, &c);
    }
}

#[test]
fn time_exceeded_fields() {
    let t = tables();
    let input = pkt(A, B_IP, 1, L4::Udp(b"0123456789"));
    let mut buf = TestBuf::new(&input);
    assert_eq!(process(&t, 0, &mut buf), Reply(ReplyKind::IcmpTimeExceeded));
    let out = buf.data();
    let quoted = &input[14..14 + 20 + 8];
    assert_eq!(out.len(), 14 + 20 + 8 + quoted.len());
    let e = ethernet::Frame::new_checked(out).unwrap();
    assert_eq!((e.dst(), e.src(), e.ethertype()), (A_MAC, GW_MAC, ethertype::IPV4));
    let ip = ipv4::Packet::new_checked(e.payload()).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr(), ip.protocol(), ip.ttl()), (GW_IP, A_IP, protocol::ICMP, LOCAL_TTL));
    assert_eq!(usize::from(ip.total_len()), 20 + 8 + quoted.len());
    assert!(ip.verify_checksum());
    let m = icmp::Packet::new_checked(ip.payload()).unwrap();
    assert_eq!((m.msg_type(), m.code(), m.rest_of_header()), (icmp::msg::TIME_EXCEEDED, 0, 0));
    assert!(m.verify_checksum());
    assert_eq!(m.payload(), quoted);
    let q = ipv4::Packet::new_unchecked(m.payload());
    assert_eq!((q.ttl(), q.src_addr(), q.dst_addr()), (1, A_IP, B_IP));
    assert!(q.verify_checksum(), "the quoted header is the original, checksum included");
}

/// A buffer without headroom: the time-exceeded cannot be built in it.
struct Cramped(Vec<u8>);

impl PacketBuf for Cramped {
    fn data(&self) -> &[u8] {
        &self.0
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
    fn prepend(&mut self, _: usize) -> Result<(), NoRoom> {
        Err(NoRoom)
    }
    fn adj(&mut self, _: usize) -> Result<(), NoRoom> {
        Err(NoRoom)
    }
    fn trim(&mut self, _: usize) -> Result<(), NoRoom> {
        Err(NoRoom)
    }
    fn append(&mut self, _: usize) -> Result<(), NoRoom> {
        Err(NoRoom)
    }
}

fn no_headroom_action() -> Action {
    process(&tables(), 0, &mut Cramped(pkt(A, B_IP, 1, L4::Udp(b"x"))))
}

/// The route still names port 1 but the port is gone (tables mid-update).
fn port_gone_action() -> Action {
    let mut t = tables();
    t.ports[1] = None;
    process(&t, 0, &mut TestBuf::new(&pkt(A, B_IP, 64, L4::Udp(b"x"))))
}

#[test]
fn no_headroom_and_port_gone() {
    assert_eq!(no_headroom_action(), Drop(DropReason::NoBufferRoom));
    assert_eq!(port_gone_action(), Drop(DropReason::PortGone));
    // A removed port takes its pod route with it: no route, no proxy ARP.
    let mut t = tables();
    t.remove_port(1);
    assert_eq!(process(&t, 0, &mut TestBuf::new(&pkt(A, B_IP, 64, L4::Udp(b"x")))), Drop(DropReason::NoRoute));
    assert_eq!(process(&t, 0, &mut TestBuf::new(&who_has(A, B_IP))), Drop(DropReason::ArpNotForUs));
}

#[test]
fn malformed() {
    let t = tables();
    for c in malformed_cases() {
        run(&t, &c);
    }
}

/// Every reason the malformed table names is produced, and every reason
/// `process` can give (all but `TxFull`, which the worker counts) is produced
/// by some case: a reason that stops being produced, or a new one without a
/// case, fails here.
#[test]
fn every_reason_is_produced() {
    let t = tables();
    let mut drops: HashMap<DropReason, usize> = HashMap::new();
    let mut replies: HashMap<ReplyKind, usize> = HashMap::new();
    let malformed = malformed_cases();
    for c in &malformed {
        if let Drop(r) = run(&t, c) {
            *drops.entry(r).or_default() += 1;
        }
    }
    for c in &malformed {
        if let Drop(r) = c.want {
            assert!(drops.get(&r).copied().unwrap_or(0) > 0, "{} listed but never produced", r.name());
        }
    }
    for c in all_cases() {
        match run(&t, &c) {
            Drop(r) => *drops.entry(r).or_default() += 1,
            Reply(k) => *replies.entry(k).or_default() += 1,
            Forward(_) => {}
            other => panic!("{}: {other:?} without an overlay", c.name),
        }
    }
    for a in [no_headroom_action(), port_gone_action()] {
        if let Drop(r) = a {
            *drops.entry(r).or_default() += 1;
        }
    }
    // TxFull and the neighbour-queue reasons are the worker's; the overlay
    // reasons have their own table in overlay/tests.rs.
    use DropReason::*;
    let elsewhere = [
        TxFull,
        NeighbourTimeout,
        NeighbourQueueFull,
        VxlanMalformed,
        VxlanBadFlags,
        VxlanUnknownVni,
        VxlanUnknownVtep,
        OverlayLoop,
        // NAT's: pipeline/nat.rs tests FlowTableFull; ServiceNoBackend is
        // its defensive fallback when no ICMP error may be sent.
        // The Service reasons below have their cases there too.
        FlowTableFull,
        ServiceNoBackend,
        ServiceNoLocalBackend,
        ServiceSourceNotAllowed,
        SnatPortsExhausted,
        // Policy's: pipeline/nat/policy_tests.rs.
        PolicyDeniedEgress,
        PolicyDeniedIngress,
        TooBigForTunnel,
    ];
    for r in DropReason::ALL.iter().filter(|r| !elsewhere.contains(r)) {
        assert!(drops.contains_key(r), "no case produces {}", r.name());
    }
    for k in ReplyKind::ALL
        .iter()
        .filter(|k| !matches!(k, ReplyKind::IcmpFragNeeded | ReplyKind::IcmpPortUnreachable | ReplyKind::TcpReset))
    {
        assert!(replies.contains_key(k), "no case produces {}", k.name());
    }
}

// ------------------------------------------------------------ the sweep

/// Random bytes, mostly addressed to the gateway as IPv4 or ARP so that the
/// checks past Ethernet are reached.
fn random_frame(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(200);
    let mut f: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
    if len >= 14 && rng.below(4) != 0 {
        let dst = [GW_MAC, GW_MAC, MacAddr::BROADCAST][rng.below(3)];
        f[..6].copy_from_slice(&dst.0);
        let ty = [ethertype::IPV4, ethertype::IPV4, ethertype::ARP][rng.below(3)];
        f[12..14].copy_from_slice(&ty.to_be_bytes());
        if ty == ethertype::IPV4 && len >= 34 && rng.below(2) == 0 {
            f[14] = 0x45;
            f[16..18].copy_from_slice(&((len - 14 - rng.below(4)) as u16).to_be_bytes());
            f[23] = [protocol::ICMP, protocol::TCP, protocol::UDP][rng.below(3)];
            if rng.below(2) == 0 {
                f[30..34].copy_from_slice(&[B_IP, GW_IP, REMOTE][rng.below(3)].octets());
            }
            if let Ok(mut ip) = ipv4::Packet::new_checked(&mut f[14..]) {
                ip.fill_checksum();
            }
        }
    }
    f
}

/// A valid frame with a few bytes changed, cut or extended; half the time the
/// IPv4 checksum is refreshed so the mutation gets past it.
fn mutated(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut f = seed.to_vec();
    for _ in 0..1 + rng.below(3) {
        match rng.below(5) {
            0 | 1 if !f.is_empty() => {
                let at = rng.below(f.len());
                f[at] ^= 1 << rng.below(8);
            }
            2 if !f.is_empty() => {
                let at = rng.below(f.len());
                f[at] = rng.byte();
            }
            3 => f.truncate(rng.below(f.len() + 1)),
            _ => f.extend((0..rng.below(16)).map(|_| rng.byte())),
        }
    }
    if f.len() > 14 && f[12..14] == ethertype::IPV4.to_be_bytes() && rng.below(2) == 0 {
        if let Ok(mut ip) = ipv4::Packet::new_checked(&mut f[14..]) {
            ip.fill_checksum();
        }
    }
    f
}

#[test]
fn random_frames_never_panic() {
    let t = tables();
    let seeds: Vec<Vec<u8>> = all_cases().into_iter().map(|c| c.frame).filter(|f| !f.is_empty()).collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for i in 0..50_000 {
        let frame = if i % 2 == 0 {
            random_frame(&mut rng)
        } else {
            let seed = &seeds[rng.below(seeds.len())];
            mutated(&mut rng, seed)
        };
        for port in [0, 1] {
            let mut buf = TestBuf::new(&frame);
            let got = catch_unwind(AssertUnwindSafe(|| process(&t, port, &mut buf)))
                .unwrap_or_else(|_| panic!("process panicked: port {port}, frame {frame:02x?}"));
            match got {
                Forward(p) => {
                    assert!(p <= 1, "forwarded to port {p}: {frame:02x?}");
                    let ip = ipv4::Packet::new_checked(&buf.data()[14..]).unwrap();
                    assert!(ip.verify_checksum(), "forwarded with a bad checksum: {frame:02x?}");
                }
                Reply(k) => {
                    assert!(buf.len() >= 42, "{k:?} of {} bytes: {frame:02x?}", buf.len());
                    if k != ReplyKind::ArpReply {
                        let ip = ipv4::Packet::new_checked(&buf.data()[14..]).unwrap();
                        assert!(ip.verify_checksum(), "{k:?} with a bad IPv4 checksum: {frame:02x?}");
                        let m = icmp::Packet::new_checked(ip.payload()).unwrap();
                        assert!(m.verify_checksum(), "{k:?} with a bad ICMP checksum: {frame:02x?}");
                    }
                }
                Drop(_) => {}
                other => panic!("{other:?} without an overlay: {frame:02x?}"),
            }
            *seen.entry(format!("{got:?}")).or_default() += 1;
        }
    }
    // The sweep must reach every outcome, not stop at the first checks.
    let mut seen: Vec<_> = seen.into_iter().collect();
    seen.sort();
    for want in ["Forward(0)", "Forward(1)", "Reply(ArpReply)", "Reply(IcmpEchoReply)", "Reply(IcmpTimeExceeded)"] {
        let n = seen.iter().find(|(k, _)| k == want).map_or(0, |(_, n)| *n);
        assert!(n >= 50, "sweep too shallow: {want} {n} times; {seen:?}");
    }
    eprintln!("{seen:?}");
}
