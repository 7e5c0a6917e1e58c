//! Why a packet left the pipeline: a numbered [`DropReason`] for drops and a
//! [`ReplyKind`] for packets weir answered itself. Numbers are part of the
//! management API and of counters users graph: a number is never reused; a
//! retired reason keeps its number and its row.

use serde::Serialize;

macro_rules! numbered {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $num:literal, $text:literal;)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[repr(u8)]
        pub enum $name { $($(#[$vmeta])* $variant = $num,)+ }

        impl $name {
            /// Every value, in number order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
            /// One more than the largest number: the size of a counter array.
            pub const COUNT: usize = {
                let mut max = 0u8;
                $(if $num > max { max = $num; })+
                max as usize + 1
            };

            /// The stable snake_case name used in counters and the API.
            pub const fn name(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            pub fn from_number(n: u8) -> Option<Self> {
                match n { $($num => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

numbered! {
    /// Why a packet was dropped.
    DropReason {
        /// Shorter than an Ethernet header.
        RuntFrame = 1, "runt_frame";
        /// Unicast to a MAC that is not weir's, or IPv4 to a broadcast/multicast MAC.
        NotForUs = 2, "not_for_us";
        /// An ethertype weir does not handle (IPv6 for now, LLDP, ...).
        UnknownEthertype = 3, "unknown_ethertype";
        /// ARP too short or not Ethernet/IPv4.
        ArpMalformed = 4, "arp_malformed";
        /// ARP that weir does not answer (replies, requests for addresses it does not own).
        ArpNotForUs = 5, "arp_not_for_us";
        /// Shorter than an IPv4 header.
        Ipv4Truncated = 6, "ipv4_truncated";
        /// Version field is not 4.
        Ipv4BadVersion = 7, "ipv4_bad_version";
        /// IHL below 5 or past the frame.
        Ipv4BadIhl = 8, "ipv4_bad_ihl";
        /// Total length below the header or past the frame.
        Ipv4BadTotalLength = 9, "ipv4_bad_total_length";
        /// Header checksum does not verify.
        Ipv4BadChecksum = 10, "ipv4_bad_checksum";
        /// Source is multicast, broadcast, loopback or unspecified.
        Ipv4BadSource = 11, "ipv4_bad_source";
        /// TCP/UDP/ICMP header missing or inconsistent.
        L4Malformed = 12, "l4_malformed";
        /// TTL ran out and no ICMP error may be sent about this packet.
        TtlExceeded = 13, "ttl_exceeded";
        /// No route to the destination.
        NoRoute = 14, "no_route";
        /// For the gateway itself, and not something it answers (only ping is).
        LocalNotServed = 15, "local_not_served";
        /// The route's port is gone (removed while the packet was in flight).
        PortGone = 16, "port_gone";
        /// The port's tx ring was full.
        TxFull = 17, "tx_full";
        /// Not enough headroom/tailroom to build the answer.
        NoBufferRoom = 18, "no_buffer_room";
        /// Destination is multicast, broadcast, loopback or unspecified (weir
        /// routes unicast only, and never answers such packets with an error).
        Ipv4BadDestination = 19, "ipv4_bad_destination";
        /// VXLAN on the uplink shorter than its headers, or its inner frame.
        VxlanMalformed = 20, "vxlan_malformed";
        /// VXLAN without the I flag (no valid VNI).
        VxlanBadFlags = 21, "vxlan_bad_flags";
        /// VXLAN with a VNI no network of this node has.
        VxlanUnknownVni = 22, "vxlan_unknown_vni";
        /// A decapsulated packet whose route leads back into the overlay.
        OverlayLoop = 23, "overlay_loop";
        /// Too big for the tunnel and not allowed to say so (no DF: VXLAN
        /// packets are never fragmented, RFC 7348).
        TooBigForTunnel = 24, "too_big_for_tunnel";
        /// The next hop on the underlay did not answer ARP in time.
        NeighbourTimeout = 25, "neighbour_timeout";
        /// Too many packets already wait for neighbours on this worker.
        NeighbourQueueFull = 26, "neighbour_queue_full";
        /// VXLAN from an address that is not one of the cluster's VTEPs.
        VxlanUnknownVtep = 27, "vxlan_unknown_vtep";
        /// A Service port with no backend, and no ICMP error may be sent.
        ServiceNoBackend = 28, "service_no_backend";
        /// The flow table had no free slot for a new flow.
        FlowTableFull = 29, "flow_table_full";
        /// externalTrafficPolicy / internalTrafficPolicy Local, and no
        /// endpoint of the Service on this node (kube-proxy drops these too).
        ServiceNoLocalBackend = 30, "service_no_local_backend";
        /// A LoadBalancer IP reached from an address outside the Service's
        /// loadBalancerSourceRanges.
        ServiceSourceNotAllowed = 31, "service_source_not_allowed";
        /// No free node-IP source port for an external client's flow (see
        /// `nat.snat_port_min`/`max`).
        SnatPortsExhausted = 32, "snat_ports_exhausted";
        /// The source pod's egress policy denies the flow.
        PolicyDeniedEgress = 33, "policy_denied_egress";
        /// The destination pod's ingress policy denies the flow.
        PolicyDeniedIngress = 34, "policy_denied_ingress";
        /// From a pod port, with an Ethernet source, IPv4 source or ARP
        /// sender that is not the pod's own (anti-spoofing).
        PodSourceSpoofed = 35, "pod_source_spoofed";
    }
}

numbered! {
    /// Packets weir answered itself, sent back out of the port they came in by.
    ReplyKind {
        ArpReply = 1, "arp_reply";
        IcmpEchoReply = 2, "icmp_echo_reply";
        IcmpTimeExceeded = 3, "icmp_time_exceeded";
        /// ICMP fragmentation-needed to a pod whose packet would not fit the tunnel.
        IcmpFragNeeded = 4, "icmp_frag_needed";
        /// ICMP port unreachable for a Service port with no backend.
        IcmpPortUnreachable = 5, "icmp_port_unreachable";
        /// TCP reset for a flow whose Service backend is gone.
        TcpReset = 6, "tcp_reset";
    }
}

numbered! {
    /// Packets weir used up itself, sending nothing.
    Consumed {
        /// An ARP reply (or gratuitous ARP) on the uplink: a neighbour learned.
        ArpOnUplink = 1, "arp_on_uplink";
        /// ARP from the node's kernel on the host port: its MAC learned.
        ArpOnHost = 2, "arp_on_host";
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn numbers_and_names_are_unique() {
        let nums: HashSet<u8> = DropReason::ALL.iter().map(|r| *r as u8).collect();
        assert_eq!(nums.len(), DropReason::ALL.len());
        let names: HashSet<&str> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::ALL.len());
        for r in DropReason::ALL {
            assert_eq!(DropReason::from_number(*r as u8), Some(*r));
            assert!((*r as usize) < DropReason::COUNT);
        }
        assert_eq!(DropReason::from_number(0), None);
    }
}
