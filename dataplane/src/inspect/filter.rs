//! Which packets `trace` and `capture` take: a [`FilterSpec`] as weirctl
//! sends it (strings, checked here with errors that name the bad value), and
//! the compiled [`Filter`] a worker matches frames against.
//!
//! A frame matches when every given field matches its IPv4 header — or,
//! for VXLAN on the overlay's port, its inner header (so `--dst` of a local
//! pod also catches the tunnelled packets for it). Addresses match by
//! prefix (`10.1.0.0/24`, or a bare address); `host` matches either side;
//! ports match TCP, UDP and SCTP first fragments only. `proto arp` takes
//! ARP frames. No field: every frame. `matches` never allocates or panics.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::packet::parse_proto;
use crate::tables::cidr::Ipv4Cidr;
use crate::tables::{PortId, Tables};
use crate::wire::{ethernet, ipv4, vxlan};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// The port packets come in by (trace) — by name.
    #[serde(default)]
    pub port: Option<String>,
    /// Source or destination address or prefix.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub src: Option<String>,
    #[serde(default)]
    pub dst: Option<String>,
    /// tcp, udp, sctp, icmp, arp or an IP protocol number.
    #[serde(default)]
    pub proto: Option<String>,
    #[serde(default)]
    pub sport: Option<u16>,
    #[serde(default)]
    pub dport: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Ip(u8),
    Arp,
}

/// A compiled filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filter {
    port: Option<PortId>,
    host: Option<Ipv4Cidr>,
    src: Option<Ipv4Cidr>,
    dst: Option<Ipv4Cidr>,
    proto: Option<Proto>,
    sport: Option<u16>,
    dport: Option<u16>,
    /// VXLAN's UDP port, 0 when the node has no overlay.
    vxlan_port: u16,
}

/// `a.b.c.d` or `a.b.c.d/len`.
fn parse_net(field: &str, s: &str) -> Result<Ipv4Cidr, String> {
    if s.contains('/') {
        return s.parse().map_err(|e| format!("filter {field} {s:?}: {e}"));
    }
    s.parse::<Ipv4Addr>()
        .map(Ipv4Cidr::host)
        .map_err(|_| format!("filter {field} {s:?}: not an IPv4 address or prefix"))
}

impl Filter {
    /// Everything.
    pub const ALL: Filter =
        Filter { port: None, host: None, src: None, dst: None, proto: None, sport: None, dport: None, vxlan_port: 0 };

    /// Checks and compiles `spec` against the tables (port names).
    pub fn compile(spec: &FilterSpec, t: &Tables) -> Result<Filter, String> {
        let port = match &spec.port {
            Some(name) => Some(
                t.port_by_name(name)
                    .ok_or_else(|| format!("filter port {name:?}: no port of that name (see weirctl stats)"))?,
            ),
            None => None,
        };
        let net = |field: &str, v: &Option<String>| v.as_deref().map(|s| parse_net(field, s)).transpose();
        let proto = match spec.proto.as_deref() {
            None => None,
            Some(p) if p.eq_ignore_ascii_case("arp") => Some(Proto::Arp),
            Some(p) => Some(Proto::Ip(parse_proto(p).map_err(|e| format!("filter {e}"))?)),
        };
        let f = Filter {
            port,
            host: net("host", &spec.host)?,
            src: net("src", &spec.src)?,
            dst: net("dst", &spec.dst)?,
            proto,
            sport: spec.sport,
            dport: spec.dport,
            vxlan_port: t.overlay.as_ref().map_or(0, |o| o.vxlan_port),
        };
        let ip_fields =
            f.host.is_some() || f.src.is_some() || f.dst.is_some() || f.sport.is_some() || f.dport.is_some();
        if f.proto == Some(Proto::Arp) && ip_fields {
            return Err("filter proto arp: addresses and ports filter IPv4 packets, not ARP".into());
        }
        if let Some(Proto::Ip(p)) = f.proto {
            if (f.sport.is_some() || f.dport.is_some()) && !crate::tables::acl::has_ports(p) {
                return Err(format!("filter sport/dport: protocol {p} has no ports (want tcp, udp or sctp)"));
            }
        }
        Ok(f)
    }

    /// The port the filter names, if any.
    pub fn port(&self) -> Option<PortId> {
        self.port
    }

    fn has_ip_fields(&self) -> bool {
        self.host.is_some()
            || self.src.is_some()
            || self.dst.is_some()
            || self.sport.is_some()
            || self.dport.is_some()
            || matches!(self.proto, Some(Proto::Ip(_)))
    }

    /// Whether a frame that came in (or goes out) on `port` matches.
    pub fn matches(&self, port: PortId, frame: &[u8]) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        self.matches_frame(frame, true)
    }

    fn matches_frame(&self, frame: &[u8], outer: bool) -> bool {
        let Ok(eth) = ethernet::Frame::new_checked(frame) else {
            return !self.has_ip_fields() && self.proto.is_none();
        };
        match eth.ethertype() {
            ethernet::ethertype::IPV4 => {}
            ethernet::ethertype::ARP => {
                return self.proto == Some(Proto::Arp) || (self.proto.is_none() && !self.has_ip_fields())
            }
            _ => return self.proto.is_none() && !self.has_ip_fields(),
        }
        if self.proto == Some(Proto::Arp) {
            return false;
        }
        let Ok(ip) = ipv4::Packet::new_checked(&frame[ethernet::HEADER_LEN..]) else {
            return !self.has_ip_fields();
        };
        if self.matches_ip(&ip) {
            return true;
        }
        // The inner packet of VXLAN.
        let l4 = ip.payload();
        let inner_at = 8 + vxlan::HEADER_LEN;
        outer
            && self.vxlan_port != 0
            && ip.protocol() == ipv4::protocol::UDP
            && !ip.is_fragment()
            && l4.len() > inner_at
            && u16::from_be_bytes([l4[2], l4[3]]) == self.vxlan_port
            && self.matches_frame(&l4[inner_at..], false)
    }

    fn matches_ip(&self, ip: &ipv4::Packet<&[u8]>) -> bool {
        let (src, dst, proto) = (ip.src_addr(), ip.dst_addr(), ip.protocol());
        if self.src.is_some_and(|c| !c.contains(src)) || self.dst.is_some_and(|c| !c.contains(dst)) {
            return false;
        }
        if self.host.is_some_and(|c| !c.contains(src) && !c.contains(dst)) {
            return false;
        }
        if self.proto.is_some_and(|p| p != Proto::Ip(proto)) {
            return false;
        }
        if self.sport.is_none() && self.dport.is_none() {
            return true;
        }
        let l4 = ip.payload();
        if !crate::tables::acl::has_ports(proto) || ip.frag_offset() != 0 || l4.len() < 4 {
            return false;
        }
        let (sp, dp) = (u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]]));
        self.sport.is_none_or(|p| p == sp) && self.dport.is_none_or(|p| p == dp)
    }
}
