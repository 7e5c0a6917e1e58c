#!/usr/bin/env python3
"""Byte fixtures for the Service NAT tests (nat/fixtures.rs).

Builds every input frame and the frame a correct NAT must emit for it, from
scratch, with every checksum computed in full (IPv4 header sum, TCP/UDP
pseudo-header sums, ICMP sum, SCTP CRC32c bit by bit, RFC 4960 appendix B):
nothing here is an incremental update, and nothing comes from weir's code.

Prints the generated block of fixtures.rs (Rust `Fx` constants: name, port
the frame arrives on, input hex, expected action, expected output hex).
Regenerate with

    python3 dataplane/src/pipeline/nat/gen_fixtures.py

and paste the output between the GENERATED markers of fixtures.rs.

The node (as fixtures.rs configures it): pods 10.1.0.0/24 behind the gateway
10.1.0.1 / 02:fe:00:00:00:01; pod A 10.1.0.2 on port 0, B 10.1.0.3 on port 1,
C 10.1.0.4 on port 2; the uplink on port 3 (node IP 192.168.50.1, MAC
02:00:00:aa:00:01, underlay 192.168.50.0/24); the client 192.168.50.9 is a
known neighbour. SNAT ports: 61000 only.

Choices that no RFC fixes, taken as weir documents them: frames weir
originates (ICMP errors, resets) have TTL 64; its ICMP errors have DSCP 0xc0
(precedence 6, RFC 1812 4.3.2.5), ident 0, DF clear, and quote the IP header
and 8 bytes (RFC 792); a reset is the segment turned around in place, so it
keeps the segment's IP ident, DSCP and DF.
"""

import struct

# --------------------------------------------------------------- the node

GW_MAC = "02:fe:00:00:00:01"
GW = "10.1.0.1"
A = ("10.1.0.2", "02:00:00:00:00:02")
B = ("10.1.0.3", "02:00:00:00:00:03")
C = ("10.1.0.4", "02:00:00:00:00:04")
NODE_IP = "192.168.50.1"
UPLINK_MAC = "02:00:00:aa:00:01"
CLIENT = ("192.168.50.9", "02:00:00:cc:00:09")
UPLINK = 3

WEB_VIP = "10.96.0.10"  # tcp 80 -> 8080, udp 53 -> 5353; backend B
SELF_VIP = "10.96.0.12"  # tcp 80 -> 8080; backend A only
NP_VIP = "10.96.0.23"  # NodePort 30080 (Cluster policy), tcp 80 -> 8080; backend B
LOCAL_VIP = "10.96.0.20"  # NodePort 30081 (Local policy); backends B and 10.2.0.5 (remote)
NOBODY_VIP = "10.96.0.22"  # tcp 80, NodePort 30083; no endpoints
SCTP_VIP = "10.96.0.50"  # sctp 3868 -> 3869; backend B
MOVING_VIP = "10.96.0.30"  # tcp 80 -> 8080; backend B, later C only
SNAT_PORT = 61000

TCP, UDP, SCTP, ICMP = 6, 17, 132, 1
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def mac(s):
    return bytes(int(x, 16) for x in s.split(":"))


def ip(s):
    return bytes(int(x) for x in s.split("."))


# --------------------------------------------------------------- checksums


def inet_sum(data):
    """RFC 1071: one's complement of the one's complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\0"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def crc32c(data):
    """CRC32c (Castagnoli), bit by bit, reflected polynomial 0x82F63B78."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def sctp_checksum_bytes(packet):
    """The 4 checksum bytes of an SCTP packet whose checksum field is zero
    (RFC 4960 appendix B: the reflected CRC's low byte goes first)."""
    crc = crc32c(packet)
    return bytes([crc & 0xFF, (crc >> 8) & 0xFF, (crc >> 16) & 0xFF, crc >> 24])


# Self-checks against published values.
assert crc32c(b"123456789") == 0xE3069283
assert inet_sum(bytes.fromhex("450000730000400040110000c0a80001c0a800c7")) == 0xB861

# ---------------------------------------------------------------- builders


def eth(dst_mac, src_mac, payload):
    return mac(dst_mac) + mac(src_mac) + b"\x08\x00" + payload


def ipv4(src, dst, proto, payload, ttl=64, ident=0, df=True, tos=0):
    hdr = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            tos,
            20 + len(payload),
            ident,
            0x4000 if df else 0,
            ttl,
            proto,
            0,
            ip(src),
            ip(dst),
        )
    )
    hdr[10:12] = struct.pack("!H", inet_sum(bytes(hdr)))
    return bytes(hdr) + payload


def pseudo(src, dst, proto, length):
    return ip(src) + ip(dst) + struct.pack("!BBH", 0, proto, length)


def tcp(src, dst, sport, dport, seq, ack, flags, window, options=b"", payload=b"", urgent=0):
    assert len(options) % 4 == 0
    doff = (20 + len(options)) // 4
    seg = bytearray(struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, window, 0, urgent))
    seg += options + payload
    seg[16:18] = struct.pack("!H", inet_sum(pseudo(src, dst, TCP, len(seg)) + bytes(seg)))
    return bytes(seg)


def udp(src, dst, sport, dport, payload, with_sum=True):
    seg = bytearray(struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)
    if with_sum:
        s = inet_sum(pseudo(src, dst, UDP, len(seg)) + bytes(seg))
        seg[6:8] = struct.pack("!H", s or 0xFFFF)  # RFC 768: a computed 0 is sent as all ones
    return bytes(seg)


def sctp(sport, dport, vtag, chunks):
    pkt = struct.pack("!HHII", sport, dport, vtag, 0) + chunks
    return pkt[:8] + sctp_checksum_bytes(pkt) + pkt[12:]


def icmp(msg_type, code, rest, data):
    m = bytearray(struct.pack("!BBHI", msg_type, code, 0, rest) + data)
    m[2:4] = struct.pack("!H", inet_sum(bytes(m)))
    return bytes(m)


def tcp_frame(dst_mac, src_mac, src, dst, sport, dport, seq, ack, flags, ttl=64, ident=0, options=b"", payload=b"",
              window=64240):
    seg = tcp(src, dst, sport, dport, seq, ack, flags, window, options, payload)
    return eth(dst_mac, src_mac, ipv4(src, dst, TCP, seg, ttl=ttl, ident=ident))


def udp_frame(dst_mac, src_mac, src, dst, sport, dport, payload, ttl=64, ident=0, with_sum=True):
    seg = udp(src, dst, sport, dport, payload, with_sum)
    return eth(dst_mac, src_mac, ipv4(src, dst, UDP, seg, ttl=ttl, ident=ident))


# TCP options of a SYN: MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
SYN_OPTS = bytes.fromhex("020405b4" "0402" "080a0001e24000000000" "01" "030307")
assert len(SYN_OPTS) == 20
SYNACK_OPTS = bytes.fromhex("020405b40402080a00abcdef0001e24001030307")
assert len(SYNACK_OPTS) == 20


def icmp_error_frame(dst_mac, src_mac, src, dst, code, quoted, ttl=64, ident=0, tos=0xC0, df=False):
    m = icmp(3, code, 0, quoted)
    return eth(dst_mac, src_mac, ipv4(src, dst, ICMP, m, ttl=ttl, ident=ident, df=df, tos=tos))


# ------------------------------------------------------------------- cases

FIXTURES = []


def fx(name, doc, port, action, frame_in, frame_out):
    FIXTURES.append((name, doc, port, action, frame_in, frame_out))


FWD = "Action::Forward({})".format
UNREACH = "Action::Reply(ReplyKind::IcmpPortUnreachable)"
RESET = "Action::Reply(ReplyKind::TcpReset)"

# 1. ClusterIP TCP: A's SYN to the VIP:80 goes to B:8080 (a router hop:
#    MACs, TTL 64 -> 63); B's SYN-ACK comes back from VIP:80.
fx(
    "C1_SYN",
    "A 10.1.0.2:40000 -> ClusterIP 10.96.0.10:80 SYN; DNAT to B 10.1.0.3:8080.",
    0,
    FWD(1),
    tcp_frame(GW_MAC, A[1], A[0], WEB_VIP, 40000, 80, 0x11223344, 0, SYN, ident=0x1C46, options=SYN_OPTS),
    tcp_frame(B[1], GW_MAC, A[0], B[0], 40000, 8080, 0x11223344, 0, SYN, ttl=63, ident=0x1C46, options=SYN_OPTS),
)
fx(
    "C1_SYN_ACK",
    "B 10.1.0.3:8080 -> A:40000 SYN-ACK; source back to 10.96.0.10:80.",
    1,
    FWD(0),
    tcp_frame(GW_MAC, B[1], B[0], A[0], 8080, 40000, 0x55667788, 0x11223345, SYN | ACK, ident=0, options=SYNACK_OPTS,
              window=65160),
    tcp_frame(A[1], GW_MAC, WEB_VIP, A[0], 80, 40000, 0x55667788, 0x11223345, SYN | ACK, ttl=63, ident=0,
              options=SYNACK_OPTS, window=65160),
)

def word_for_zero_sum(build):
    """The 16-bit word w for which the bytes `build(w)` sum to the Internet
    checksum 0x0000 (their folded one's complement sum is 0xffff)."""
    s = ~inet_sum(build(0)) & 0xFFFF
    w = 0xFFFF - s
    assert inet_sum(build(w)) == 0
    return w


def tcp_unsummed(src, dst, sport, dport, seq, flags, window):
    """Pseudo-header and option-less TCP header with the checksum field 0."""
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, window, 0, 0)
    return pseudo(src, dst, TCP, len(seg)) + seg


def ip_unsummed(src, dst, proto, total_len, ttl, ident):
    """An IPv4 header (DF, no options) with the checksum field 0."""
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, total_len, ident, 0x4000, ttl, proto, 0, ip(src), ip(dst))


# Checksum edges: after DNAT (and the TTL decrement) the TCP checksum and the
# IPv4 header checksum compute to 0x0000; and an input whose two checksums
# are 0x0000.
seq = 0x7E570000 | word_for_zero_sum(lambda w: tcp_unsummed(A[0], B[0], 40001, 8080, 0x7E570000 | w, SYN, 1024))
ident = word_for_zero_sum(lambda w: ip_unsummed(A[0], B[0], TCP, 40, 63, w))
edge_out = tcp_frame(B[1], GW_MAC, A[0], B[0], 40001, 8080, seq, 0, SYN, ttl=63, ident=ident, window=1024)
assert edge_out[14 + 10:14 + 12] == b"\0\0" and edge_out[34 + 16:34 + 18] == b"\0\0"
fx(
    "C1_SUMS_BECOME_ZERO",
    "A:40001 -> 10.96.0.10:80 SYN whose TCP and IPv4 checksums compute to 0x0000 after DNAT.",
    0,
    FWD(1),
    tcp_frame(GW_MAC, A[1], A[0], WEB_VIP, 40001, 80, seq, 0, SYN, ident=ident, window=1024),
    edge_out,
)
seq = 0x7E580000 | word_for_zero_sum(lambda w: tcp_unsummed(A[0], WEB_VIP, 40002, 80, 0x7E580000 | w, SYN, 1024))
ident = word_for_zero_sum(lambda w: ip_unsummed(A[0], WEB_VIP, TCP, 40, 64, w))
edge_in = tcp_frame(GW_MAC, A[1], A[0], WEB_VIP, 40002, 80, seq, 0, SYN, ident=ident, window=1024)
assert edge_in[14 + 10:14 + 12] == b"\0\0" and edge_in[34 + 16:34 + 18] == b"\0\0"
fx(
    "C1_SUMS_WERE_ZERO",
    "A:40002 -> 10.96.0.10:80 SYN whose TCP and IPv4 checksums are 0x0000; DNAT to B:8080.",
    0,
    FWD(1),
    edge_in,
    tcp_frame(B[1], GW_MAC, A[0], B[0], 40002, 8080, seq, 0, SYN, ttl=63, ident=ident, window=1024),
)


# 2. ClusterIP UDP 53 -> 5353, with a checksum and without (0 stays 0).
Q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03web\x07default\x00\x00\x01\x00\x01"
R = b"\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + b"\x0a\x01\x00\x03"
fx(
    "C2_UDP",
    "A:5300 -> 10.96.0.10:53 UDP with a checksum; DNAT to B:5353.",
    0,
    FWD(1),
    udp_frame(GW_MAC, A[1], A[0], WEB_VIP, 5300, 53, Q, ident=0x0101),
    udp_frame(B[1], GW_MAC, A[0], B[0], 5300, 5353, Q, ttl=63, ident=0x0101),
)
fx(
    "C2_UDP_REPLY",
    "B:5353 -> A:5300 UDP with a checksum; source back to 10.96.0.10:53.",
    1,
    FWD(0),
    udp_frame(GW_MAC, B[1], B[0], A[0], 5353, 5300, R, ident=0x0202),
    udp_frame(A[1], GW_MAC, WEB_VIP, A[0], 53, 5300, R, ttl=63, ident=0x0202),
)
fx(
    "C2_UDP_NO_SUM",
    "A:5301 -> 10.96.0.10:53 UDP, checksum 0: DNAT to B:5353, checksum still 0.",
    0,
    FWD(1),
    udp_frame(GW_MAC, A[1], A[0], WEB_VIP, 5301, 53, Q, ident=0x0103, with_sum=False),
    udp_frame(B[1], GW_MAC, A[0], B[0], 5301, 5353, Q, ttl=63, ident=0x0103, with_sum=False),
)
fx(
    "C2_UDP_NO_SUM_REPLY",
    "B:5353 -> A:5301 UDP, checksum 0: from 10.96.0.10:53, checksum still 0.",
    1,
    FWD(0),
    udp_frame(GW_MAC, B[1], B[0], A[0], 5353, 5301, R, ident=0x0204, with_sum=False),
    udp_frame(A[1], GW_MAC, WEB_VIP, A[0], 53, 5301, R, ttl=63, ident=0x0204, with_sum=False),
)


def payload_summing_to_zero_after_dnat():
    """A payload whose UDP checksum, once translated to B:5353, computes to
    0x0000 (so it must be sent as 0xffff), while it is non-zero before."""
    base = b"zero-sum"
    seg = udp(A[0], B[0], 5302, 5353, base + b"\0\0", with_sum=False)
    s = ~inet_sum(pseudo(A[0], B[0], UDP, len(seg)) + seg) & 0xFFFF  # folded sum
    w = 0xFFFF - s  # brings the folded sum to 0xffff: checksum 0
    p = base + struct.pack("!H", w)
    assert inet_sum(pseudo(A[0], B[0], UDP, len(seg)) + udp(A[0], B[0], 5302, 5353, p, with_sum=False)) == 0
    assert udp(A[0], WEB_VIP, 5302, 53, p)[6:8] not in (b"\0\0", b"\xff\xff")
    return p


Z = payload_summing_to_zero_after_dnat()
fx(
    "C2_UDP_SUM_FFFF",
    "A:5302 -> 10.96.0.10:53 UDP whose checksum computes to 0 after DNAT: sent as 0xffff (RFC 768).",
    0,
    FWD(1),
    udp_frame(GW_MAC, A[1], A[0], WEB_VIP, 5302, 53, Z, ident=0x0105),
    udp_frame(B[1], GW_MAC, A[0], B[0], 5302, 5353, Z, ttl=63, ident=0x0105),
)

# 3. SCTP INIT to 10.96.0.50:3868 -> B:3869 (the CRC covers the ports).
# INIT: length 26 (20 + a 6-byte Supported Address Types parameter: IPv4), padded to 28.
INIT = struct.pack("!BBHIIHHI", 1, 0, 26, 0x11223344, 0x0001A000, 10, 0xFFFF, 0x01020304) + struct.pack(
    "!HHHH", 12, 6, 5, 0
)
COOKIE = bytes(range(0x40, 0x50))
INIT_ACK = struct.pack("!BBHIIHHI", 2, 0, 20 + 20, 0x55667788, 0x0001A000, 10, 10, 0x0A0B0C0D) + struct.pack(
    "!HH", 7, 20
) + COOKIE
fx(
    "C3_INIT",
    "A:5000 -> 10.96.0.50:3868 SCTP INIT; DNAT to B:3869, CRC32c recomputed.",
    0,
    FWD(1),
    eth(GW_MAC, A[1], ipv4(A[0], SCTP_VIP, SCTP, sctp(5000, 3868, 0, INIT), ident=0x0301)),
    eth(B[1], GW_MAC, ipv4(A[0], B[0], SCTP, sctp(5000, 3869, 0, INIT), ttl=63, ident=0x0301)),
)
fx(
    "C3_INIT_ACK",
    "B:3869 -> A:5000 SCTP INIT-ACK; from 10.96.0.50:3868, CRC32c recomputed.",
    1,
    FWD(0),
    eth(GW_MAC, B[1], ipv4(B[0], A[0], SCTP, sctp(3869, 5000, 0x11223344, INIT_ACK), ident=0x0302)),
    eth(A[1], GW_MAC, ipv4(SCTP_VIP, A[0], SCTP, sctp(3868, 5000, 0x11223344, INIT_ACK), ttl=63, ident=0x0302)),
)

# 4. Hairpin: A reaches itself through 10.96.0.12 (only backend A).
fx(
    "C4_HAIRPIN_SYN",
    "A:41000 -> 10.96.0.12:80 SYN, A the only backend: 10.1.0.1:41000 -> A:8080.",
    0,
    FWD(0),
    tcp_frame(GW_MAC, A[1], A[0], SELF_VIP, 41000, 80, 0x0A000001, 0, SYN, ident=0x0401, options=SYN_OPTS),
    tcp_frame(A[1], GW_MAC, GW, A[0], 41000, 8080, 0x0A000001, 0, SYN, ttl=63, ident=0x0401, options=SYN_OPTS),
)
fx(
    "C4_HAIRPIN_SYN_ACK",
    "A:8080 -> 10.1.0.1:41000 SYN-ACK: 10.96.0.12:80 -> A:41000.",
    0,
    FWD(0),
    tcp_frame(GW_MAC, A[1], A[0], GW, 8080, 41000, 0x0B000001, 0x0A000002, SYN | ACK, ident=0, options=SYNACK_OPTS),
    tcp_frame(A[1], GW_MAC, SELF_VIP, A[0], 80, 41000, 0x0B000001, 0x0A000002, SYN | ACK, ttl=63, ident=0,
              options=SYNACK_OPTS),
)

# 5. NodePort, externalTrafficPolicy Cluster: SNAT to the node IP and the
#    single SNAT port, DNAT to B; the answer leaves by the uplink.
fx(
    "C5_NODE_PORT_SYN",
    "client 192.168.50.9:50000 -> 192.168.50.1:30080 SYN on the uplink: 192.168.50.1:61000 -> B:8080.",
    UPLINK,
    FWD(1),
    tcp_frame(UPLINK_MAC, CLIENT[1], CLIENT[0], NODE_IP, 50000, 30080, 0x0C000001, 0, SYN, ident=0x0501,
              options=SYN_OPTS),
    tcp_frame(B[1], GW_MAC, NODE_IP, B[0], SNAT_PORT, 8080, 0x0C000001, 0, SYN, ttl=63, ident=0x0501,
              options=SYN_OPTS),
)
fx(
    "C5_NODE_PORT_SYN_ACK",
    "B:8080 -> 192.168.50.1:61000 SYN-ACK: 192.168.50.1:30080 -> client:50000 out of the uplink.",
    1,
    FWD(UPLINK),
    tcp_frame(GW_MAC, B[1], B[0], NODE_IP, 8080, SNAT_PORT, 0x0D000001, 0x0C000002, SYN | ACK, ident=0,
              options=SYNACK_OPTS),
    tcp_frame(CLIENT[1], UPLINK_MAC, NODE_IP, CLIENT[0], 30080, 50000, 0x0D000001, 0x0C000002, SYN | ACK, ttl=63,
              ident=0, options=SYNACK_OPTS),
)

# 6. NodePort, externalTrafficPolicy Local: the client address is kept.
fx(
    "C6_LOCAL_SYN",
    "client:50001 -> 192.168.50.1:30081 SYN (Local policy): client:50001 -> B:8080.",
    UPLINK,
    FWD(1),
    tcp_frame(UPLINK_MAC, CLIENT[1], CLIENT[0], NODE_IP, 50001, 30081, 0x0E000001, 0, SYN, ident=0x0601,
              options=SYN_OPTS),
    tcp_frame(B[1], GW_MAC, CLIENT[0], B[0], 50001, 8080, 0x0E000001, 0, SYN, ttl=63, ident=0x0601,
              options=SYN_OPTS),
)
fx(
    "C6_LOCAL_SYN_ACK",
    "B:8080 -> client:50001 SYN-ACK: 192.168.50.1:30081 -> client:50001 out of the uplink.",
    1,
    FWD(UPLINK),
    tcp_frame(GW_MAC, B[1], B[0], CLIENT[0], 8080, 50001, 0x0F000001, 0x0E000002, SYN | ACK, ident=0,
              options=SYNACK_OPTS),
    tcp_frame(CLIENT[1], UPLINK_MAC, NODE_IP, CLIENT[0], 30081, 50001, 0x0F000001, 0x0E000002, SYN | ACK, ttl=63,
              ident=0, options=SYNACK_OPTS),
)

# 7. No endpoint: ICMP port unreachable, quoting the IP header and 8 bytes.
syn7 = tcp_frame(GW_MAC, A[1], A[0], NOBODY_VIP, 40500, 80, 0x10000001, 0, SYN, ident=0x0701, options=SYN_OPTS)
fx(
    "C7_REJECT_POD",
    "A:40500 -> 10.96.0.22:80 SYN, no endpoint: port unreachable from the gateway 10.1.0.1.",
    0,
    UNREACH,
    syn7,
    icmp_error_frame(A[1], GW_MAC, GW, A[0], 3, syn7[14:14 + 28]),
)
syn7u = tcp_frame(UPLINK_MAC, CLIENT[1], CLIENT[0], NODE_IP, 50002, 30083, 0x10000002, 0, SYN, ident=0x0702,
                  options=SYN_OPTS)
fx(
    "C7_REJECT_UPLINK",
    "client:50002 -> 192.168.50.1:30083 SYN, no endpoint: port unreachable from the node IP, uplink MAC.",
    UPLINK,
    UNREACH,
    syn7u,
    icmp_error_frame(CLIENT[1], UPLINK_MAC, NODE_IP, CLIENT[0], 3, syn7u[14:14 + 28]),
)

# 8. B's ICMP port unreachable about case 2's datagrams, translated back:
#    outer source -> the VIP, quoted destination -> VIP:53, quoted IPv4 and
#    UDP checksums and the ICMP checksum right for the new bytes.
def output_of(name):
    """The expected output IPv4 packet of fixture `name`."""
    return next(f[5] for f in FIXTURES if f[0] == name)[14:]


got_by_b = output_of("C2_UDP")  # as B received it
as_a_knows = ipv4(A[0], WEB_VIP, UDP, udp(A[0], WEB_VIP, 5300, 53, Q), ttl=63, ident=0x0101)
fx(
    "C8_ICMP_FULL_QUOTE",
    "B -> A port unreachable quoting all of C2_UDP as B got it: from 10.96.0.10, quote A:5300 -> 10.96.0.10:53.",
    1,
    FWD(0),
    icmp_error_frame(GW_MAC, B[1], B[0], A[0], 3, got_by_b, ident=0x0801),
    icmp_error_frame(A[1], GW_MAC, WEB_VIP, A[0], 3, as_a_knows, ttl=63, ident=0x0801),
)
got_by_b = output_of("C2_UDP_NO_SUM")
as_a_knows = ipv4(A[0], WEB_VIP, UDP, udp(A[0], WEB_VIP, 5301, 53, Q, with_sum=False), ttl=63, ident=0x0103)
fx(
    "C8_ICMP_SHORT_QUOTE_NO_SUM",
    "B -> A port unreachable quoting 28 bytes of C2_UDP_NO_SUM: quoted UDP checksum stays 0.",
    1,
    FWD(0),
    icmp_error_frame(GW_MAC, B[1], B[0], A[0], 3, got_by_b[:28], ident=0x0802),
    icmp_error_frame(A[1], GW_MAC, WEB_VIP, A[0], 3, as_a_knows[:28], ttl=63, ident=0x0802),
)
# The short quote of a datagram with a checksum: the quoted checksum covers
# bytes not quoted; it must still be the one A sent.
got_by_b = output_of("C2_UDP")
as_a_knows = ipv4(A[0], WEB_VIP, UDP, udp(A[0], WEB_VIP, 5300, 53, Q), ttl=63, ident=0x0101)
fx(
    "C8_ICMP_SHORT_QUOTE",
    "B -> A port unreachable quoting 28 bytes of C2_UDP: quoted UDP checksum the one A sent.",
    1,
    FWD(0),
    icmp_error_frame(GW_MAC, B[1], B[0], A[0], 3, got_by_b[:28], ident=0x0803),
    icmp_error_frame(A[1], GW_MAC, WEB_VIP, A[0], 3, as_a_knows[:28], ttl=63, ident=0x0803),
)

# 9. The flow's backend is removed (new tables: 10.96.0.30's only backend is
#    C): the client's next segment is answered with a reset from VIP:80
#    (RFC 793 "Reset Generation": with ACK, <SEQ=SEG.ACK><CTL=RST>; without,
#    <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>, SYN counting one).
syn9 = tcp_frame(GW_MAC, A[1], A[0], MOVING_VIP, 42000, 80, 0x20000001, 0, SYN, ident=0x0901, options=SYN_OPTS)
fx(
    "C9_SYN",
    "A:42000 -> 10.96.0.30:80 SYN; DNAT to B:8080 (first tables).",
    0,
    FWD(1),
    syn9,
    tcp_frame(B[1], GW_MAC, A[0], B[0], 42000, 8080, 0x20000001, 0, SYN, ttl=63, ident=0x0901, options=SYN_OPTS),
)
syn9b = tcp_frame(GW_MAC, A[1], A[0], MOVING_VIP, 42001, 80, 0x21000001, 0, SYN, ident=0x0902, options=SYN_OPTS)
fx(
    "C9_SYN_2",
    "A:42001 -> 10.96.0.30:80 SYN; DNAT to B:8080 (first tables).",
    0,
    FWD(1),
    syn9b,
    tcp_frame(B[1], GW_MAC, A[0], B[0], 42001, 8080, 0x21000001, 0, SYN, ttl=63, ident=0x0902, options=SYN_OPTS),
)
fx(
    "C9_SYN_RESET",
    "A:42000's retransmitted SYN after B is removed: RST+ACK, ack = seq + 1, from 10.96.0.30:80.",
    0,
    RESET,
    syn9,
    eth(A[1], GW_MAC, ipv4(MOVING_VIP, A[0], TCP, tcp(MOVING_VIP, A[0], 80, 42000, 0, 0x20000002, RST | ACK, 0),
                           ident=0x0901)),
)
data9 = b"GET / HTTP/1.1\r\nHost: moving\r\n\r\n"
ts_opts = bytes.fromhex("0101080a0001e2410012d687")
fx(
    "C9_DATA_RESET",
    "A:42001's data segment (ACK) after B is removed: RST, seq = its ack, no ACK, options and data dropped.",
    0,
    RESET,
    tcp_frame(GW_MAC, A[1], A[0], MOVING_VIP, 42001, 80, 0x21000002, 0x31000002, PSH | ACK, ident=0x0903,
              options=ts_opts, payload=data9, window=502),
    eth(A[1], GW_MAC, ipv4(MOVING_VIP, A[0], TCP, tcp(MOVING_VIP, A[0], 80, 42001, 0x31000002, 0, RST, 0),
                           ident=0x0903)),
)

# ------------------------------------------------------------------ output


def layers(frame):
    """Splits a frame at its header boundaries, for readable hex."""
    parts = [frame[:14]]
    ipb = frame[14:]
    ihl = (ipb[0] & 15) * 4
    parts.append(ipb[:ihl])
    l4 = ipb[ihl:]
    proto = ipb[9]
    if proto == TCP:
        h = (l4[12] >> 4) * 4
    elif proto == UDP:
        h = 8
    elif proto == SCTP:
        h = 12
    else:
        h = 8
    parts.append(l4[:h])
    rest = l4[h:]
    if proto == ICMP and rest:
        qihl = (rest[0] & 15) * 4
        parts.append(rest[:qihl])
        rest = rest[qihl:]
    while rest:
        parts.append(rest[:32])
        rest = rest[32:]
    return parts


def rust_hex(frame, indent):
    lines = [p.hex() for p in layers(frame)]
    pad = " " * indent
    return '"\\\n' + "".join(pad + ln + " \\\n" for ln in lines[:-1]) + pad + lines[-1] + '"'


def main():
    print("// BEGIN GENERATED by gen_fixtures.py: do not edit by hand.")
    print("// Regenerate with `python3 dataplane/src/pipeline/nat/gen_fixtures.py`.")
    for name, doc, port, action, fin, fout in FIXTURES:
        print()
        print("/// " + doc)
        print("const {}: Fx = Fx {{".format(name))
        print('    name: "{}",'.format(name))
        print("    port: {},".format(port))
        print("    input: {},".format(rust_hex(fin, 8)))
        print("    action: {},".format(action))
        print("    output: {},".format(rust_hex(fout, 8)))
        print("};")
    print("// END GENERATED")


if __name__ == "__main__":
    main()
