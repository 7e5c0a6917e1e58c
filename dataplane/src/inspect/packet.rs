//! Frames from a [`PacketSpec`] (what `explain` runs), and one-line
//! descriptions of frames (what explain, trace and capture print).
//!
//! A built frame looks like what the port would really receive: from a pod
//! port, the pod's MAC to the gateway MAC; on the uplink, from the sender's
//! underlay MAC (as far as the tables know it) to the uplink's MAC, and with
//! `vxlan`, encapsulated by the given VTEP with the inner frame from that
//! node's VTEP MAC to the gateway MAC; from the host port, the kernel's MAC.
//! Checksums are valid, so the packet passes the checks a real one passes.

use std::fmt::Write;

use super::{PacketSpec, VxlanSpec};
use crate::tables::{Hop, PortId, Tables, DEFAULT_NETWORK};
use crate::wire::{ethernet, icmp, ipv4, sctp, tcp, udp, vxlan, MacAddr};

/// The MAC a built frame comes from when the tables know no better.
const SOME_MAC: MacAddr = MacAddr([0x02, 0x77, 0x65, 0x69, 0x72, 0x01]);

/// Parses an IP protocol name or number.
pub fn parse_proto(s: &str) -> Result<u8, String> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Ok(ipv4::protocol::TCP),
        "udp" => Ok(ipv4::protocol::UDP),
        "icmp" => Ok(ipv4::protocol::ICMP),
        "sctp" => Ok(ipv4::protocol::SCTP),
        n => n.parse::<u8>().map_err(|_| format!("protocol {s:?}: want tcp, udp, sctp, icmp or a number 0-255")),
    }
}

/// The name of an IP protocol number (its number when unnamed).
pub fn proto_name(p: u8) -> String {
    match p {
        ipv4::protocol::TCP => "tcp".into(),
        ipv4::protocol::UDP => "udp".into(),
        ipv4::protocol::ICMP => "icmp".into(),
        ipv4::protocol::SCTP => "sctp".into(),
        n => format!("proto {n}"),
    }
}

fn parse_flags(s: &str) -> Result<u8, String> {
    let mut f = 0;
    for w in s.split([',', '+', '|']).map(str::trim).filter(|w| !w.is_empty()) {
        f |= match w.to_ascii_lowercase().as_str() {
            "syn" => tcp::flags::SYN,
            "ack" => tcp::flags::ACK,
            "fin" => tcp::flags::FIN,
            "rst" => tcp::flags::RST,
            "psh" => tcp::flags::PSH,
            "urg" => tcp::flags::URG,
            _ => return Err(format!("tcp flag {w:?}: want syn, ack, fin, rst, psh or urg")),
        };
    }
    Ok(f)
}

/// The port a spec names, and the frame it arrives with there.
pub fn build(t: &Tables, spec: &PacketSpec) -> Result<(PortId, Vec<u8>), String> {
    let port = t
        .port_by_name(&spec.in_port)
        .ok_or_else(|| format!("in port {:?}: no port of that name (see weirctl stats)", spec.in_port))?;
    let entry = t.port(port).ok_or_else(|| format!("in port {:?} is gone", spec.in_port))?;
    let overlay = t.overlay.as_ref();
    let on_uplink = overlay.is_some_and(|o| o.uplink == port);
    let on_host = overlay.is_some_and(|o| o.host == Some(port));
    if spec.vxlan.is_some() && !on_uplink {
        return Err(format!("vxlan: packets come encapsulated on the uplink only, not on {:?}", spec.in_port));
    }
    let inner_src_mac = match (&spec.vxlan, entry.pod) {
        (Some(v), _) => match t.node_hops.get(&v.vtep) {
            Some(Hop::Remote { vtep_mac, .. }) => *vtep_mac,
            _ => SOME_MAC,
        },
        (None, Some(pod)) => pod.mac,
        (None, None) if on_host => overlay.and_then(|o| t.neighbours.get(&o.node_ip)).copied().unwrap_or(SOME_MAC),
        (None, None) => t.neighbours.get(&spec.src).copied().unwrap_or(SOME_MAC),
    };
    let inner_dst_mac = match overlay {
        Some(o) if on_uplink && spec.vxlan.is_none() => o.uplink_mac,
        _ => t.gateway_mac,
    };
    let ip = ip_packet(spec)?;
    let mut frame = vec![0u8; ethernet::HEADER_LEN + ip.len()];
    ethernet::Repr { src: inner_src_mac, dst: inner_dst_mac, ethertype: ethernet::ethertype::IPV4 }
        .emit(&mut ethernet::Frame::new_unchecked(&mut frame[..]));
    frame[ethernet::HEADER_LEN..].copy_from_slice(&ip);
    match (&spec.vxlan, overlay) {
        (Some(v), Some(o)) => Ok((port, encapsulated(t, v, o, &frame)?)),
        _ => Ok((port, frame)),
    }
}

/// The IPv4 packet of a spec, checksums filled.
fn ip_packet(spec: &PacketSpec) -> Result<Vec<u8>, String> {
    let proto = parse_proto(&spec.proto)?;
    let sport = spec.sport.unwrap_or(40000);
    let dport = spec.dport.unwrap_or(80);
    if spec.tcp_flags.is_some() && proto != ipv4::protocol::TCP {
        return Err("tcp_flags: only for protocol tcp".into());
    }
    let l4_len = match proto {
        ipv4::protocol::TCP => tcp::HEADER_LEN,
        ipv4::protocol::UDP | ipv4::protocol::ICMP => 8,
        ipv4::protocol::SCTP => sctp::HEADER_LEN,
        _ => 0,
    };
    let min = ipv4::HEADER_LEN + l4_len;
    let total = usize::from(spec.ip_len.unwrap_or(min as u16));
    if total < min {
        return Err(format!("ip_len {total}: the headers alone are {min} bytes"));
    }
    let mut p = vec![0u8; total];
    ipv4::Repr {
        src: spec.src,
        dst: spec.dst,
        protocol: proto,
        ttl: spec.ttl.unwrap_or(64),
        payload_len: total - ipv4::HEADER_LEN,
        dscp_ecn: 0,
        ident: 1,
        dont_frag: true,
    }
    .emit(&mut ipv4::Packet::new_unchecked(&mut p[..]));
    let l4 = &mut p[ipv4::HEADER_LEN..];
    match proto {
        ipv4::protocol::TCP => {
            let flags = parse_flags(spec.tcp_flags.as_deref().unwrap_or("syn"))?;
            let mut s = tcp::Packet::new_unchecked(&mut l4[..]);
            s.set_src_port(sport);
            s.set_dst_port(dport);
            s.set_seq_number(1);
            if flags & tcp::flags::ACK != 0 {
                s.set_ack_number(1);
            }
            s.set_header_len(tcp::HEADER_LEN);
            s.set_flags(flags);
            s.set_window(65535);
            s.fill_checksum(spec.src, spec.dst);
        }
        ipv4::protocol::UDP => {
            let len = l4.len() as u16;
            let mut u = udp::Packet::new_unchecked(&mut l4[..]);
            u.set_src_port(sport);
            u.set_dst_port(dport);
            u.set_len(len);
            u.fill_checksum(spec.src, spec.dst);
        }
        ipv4::protocol::ICMP => {
            let mut m = icmp::Packet::new_unchecked(&mut l4[..]);
            m.set_msg_type(icmp::msg::ECHO_REQUEST);
            m.set_code(0);
            m.set_rest_of_header(u32::from(sport) << 16 | 1);
            m.fill_checksum();
        }
        ipv4::protocol::SCTP => {
            let mut s = sctp::Packet::new_unchecked(&mut l4[..]);
            s.set_src_port(sport);
            s.set_dst_port(dport);
            s.fill_checksum();
        }
        _ => {}
    }
    Ok(p)
}

/// `inner` in VXLAN from the VTEP `v` to this node.
fn encapsulated(t: &Tables, v: &VxlanSpec, o: &crate::tables::Overlay, inner: &[u8]) -> Result<Vec<u8>, String> {
    let vni = match v.vni {
        Some(n) if n > vxlan::MAX_VNI => return Err(format!("vxlan vni {n}: over {}", vxlan::MAX_VNI)),
        Some(n) => n,
        None => t.network(DEFAULT_NETWORK).map_or(1, |n| n.vni),
    };
    let udp_len = udp::HEADER_LEN + vxlan::HEADER_LEN + inner.len();
    let mut f = vec![0u8; ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp_len];
    let src_mac = t.neighbours.get(&v.vtep).copied().unwrap_or(SOME_MAC);
    ethernet::Repr { src: src_mac, dst: o.uplink_mac, ethertype: ethernet::ethertype::IPV4 }
        .emit(&mut ethernet::Frame::new_unchecked(&mut f[..]));
    let ip = &mut f[ethernet::HEADER_LEN..];
    ipv4::Repr {
        src: v.vtep,
        dst: o.node_ip,
        protocol: ipv4::protocol::UDP,
        ttl: 64,
        payload_len: udp_len,
        dscp_ecn: 0,
        ident: 0,
        dont_frag: true,
    }
    .emit(&mut ipv4::Packet::new_unchecked(&mut ip[..]));
    let mut u = udp::Packet::new_unchecked(&mut ip[ipv4::HEADER_LEN..]);
    u.set_src_port(crate::pipeline::overlay::SRC_PORT_MIN);
    u.set_dst_port(o.vxlan_port);
    u.set_len(udp_len as u16);
    u.set_checksum(0);
    let vx = u.payload_mut();
    vxlan::Repr { vni }.emit(&mut vxlan::Packet::new_unchecked(&mut vx[..vxlan::HEADER_LEN]));
    vx[vxlan::HEADER_LEN..].copy_from_slice(inner);
    Ok(f)
}

/// One line for a frame: its addresses, protocol and ports (TCP flags, ICMP
/// type), and for VXLAN (to `vxlan_port`) the outer addresses and VNI
/// around the inner frame's line.
pub fn describe(frame: &[u8], vxlan_port: u16) -> String {
    describe_at(frame, vxlan_port, 0)
}

fn describe_at(frame: &[u8], vxlan_port: u16, depth: u8) -> String {
    let Ok(eth) = ethernet::Frame::new_checked(frame) else {
        return format!("{} bytes, shorter than an Ethernet header", frame.len());
    };
    let body = &frame[ethernet::HEADER_LEN..];
    match eth.ethertype() {
        ethernet::ethertype::ARP => match crate::wire::arp::Packet::new_checked(body) {
            Ok(a) if a.operation() == crate::wire::arp::OP_REQUEST => {
                format!("ARP who-has {} tell {} ({})", a.target_ip(), a.sender_ip(), a.sender_mac())
            }
            Ok(a) => format!("ARP {} is-at {} (to {})", a.sender_ip(), a.sender_mac(), a.target_ip()),
            Err(_) => "ARP, malformed".into(),
        },
        ethernet::ethertype::IPV4 => {
            // The header as far as the bytes go: a traced or captured frame
            // may be cut short of its total length.
            let ihl = body.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
            if body.len() < ipv4::HEADER_LEN || body[0] >> 4 != 4 || ihl < ipv4::HEADER_LEN || body.len() < ihl {
                return format!("IPv4, malformed ({} bytes)", frame.len());
            }
            let ip = ipv4::Packet::new_unchecked(&body[..ihl]);
            let (src, dst, proto) = (ip.src_addr(), ip.dst_addr(), ip.protocol());
            let total = usize::from(ip.total_len()).clamp(ihl, body.len());
            let l4 = &body[ihl..total];
            let ports = |l4: &[u8]| (u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]]));
            let mut s = String::new();
            if ip.frag_offset() != 0 || ip.more_frags() {
                let _ = write!(s, "{src} > {dst} {} fragment, ttl {}", proto_name(proto), ip.ttl());
                return s;
            }
            match proto {
                ipv4::protocol::UDP if l4.len() >= 8 => {
                    let (sp, dp) = ports(l4);
                    if dp == vxlan_port && depth == 0 && l4.len() >= 16 + ethernet::HEADER_LEN {
                        let vni = u32::from_be_bytes([0, l4[12], l4[13], l4[14]]);
                        let inner = describe_at(&l4[16..], vxlan_port, 1);
                        let _ = write!(s, "VXLAN {src} > {dst} vni {vni} [{inner}]");
                    } else {
                        let _ = write!(s, "{src}:{sp} > {dst}:{dp} udp, ttl {}", ip.ttl());
                    }
                }
                ipv4::protocol::TCP if l4.len() >= tcp::HEADER_LEN => {
                    let (sp, dp) = ports(l4);
                    let _ = write!(s, "{src}:{sp} > {dst}:{dp} tcp [{}], ttl {}", flag_names(l4[13]), ip.ttl());
                }
                ipv4::protocol::SCTP if l4.len() >= 4 => {
                    let (sp, dp) = ports(l4);
                    let _ = write!(s, "{src}:{sp} > {dst}:{dp} sctp, ttl {}", ip.ttl());
                }
                ipv4::protocol::ICMP if l4.len() >= 8 => {
                    let what = match l4[0] {
                        icmp::msg::ECHO_REQUEST => {
                            format!(
                                "echo request id {} seq {}",
                                u16::from_be_bytes([l4[4], l4[5]]),
                                u16::from_be_bytes([l4[6], l4[7]])
                            )
                        }
                        icmp::msg::ECHO_REPLY => {
                            format!(
                                "echo reply id {} seq {}",
                                u16::from_be_bytes([l4[4], l4[5]]),
                                u16::from_be_bytes([l4[6], l4[7]])
                            )
                        }
                        icmp::msg::DEST_UNREACHABLE => format!("destination unreachable code {}", l4[1]),
                        icmp::msg::TIME_EXCEEDED => "time exceeded".into(),
                        ty => format!("type {ty} code {}", l4[1]),
                    };
                    let _ = write!(s, "{src} > {dst} icmp {what}, ttl {}", ip.ttl());
                }
                p => {
                    let _ = write!(s, "{src} > {dst} {}, ttl {}", proto_name(p), ip.ttl());
                }
            }
            s
        }
        other => format!("ethertype {other:#06x}, {} bytes", frame.len()),
    }
}

/// TCP flags as `S.` style letters (tcpdump's).
fn flag_names(f: u8) -> String {
    let mut s = String::new();
    for (bit, c) in [
        (tcp::flags::SYN, 'S'),
        (tcp::flags::FIN, 'F'),
        (tcp::flags::RST, 'R'),
        (tcp::flags::PSH, 'P'),
        (tcp::flags::URG, 'U'),
    ] {
        if f & bit != 0 {
            s.push(c);
        }
    }
    if f & tcp::flags::ACK != 0 {
        s.push('.');
    }
    if s.is_empty() {
        s.push_str("none");
    }
    s
}

/// The address a spec's frame starts from, for messages.
pub fn spec_line(spec: &PacketSpec) -> String {
    let ports = match parse_proto(&spec.proto) {
        Ok(ipv4::protocol::ICMP) => " echo request".to_string(),
        Ok(p) if crate::tables::acl::has_ports(p) => {
            format!(" {}:{}", spec.sport.unwrap_or(40000), spec.dport.unwrap_or(80))
        }
        _ => String::new(),
    };
    let via = spec.vxlan.as_ref().map(|v| format!(" in VXLAN from {}", v.vtep)).unwrap_or_default();
    format!("{} > {} {}{ports}{via}", spec.src, spec.dst, spec.proto)
}
