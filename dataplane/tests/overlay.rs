//! Overlay namespace tests: two nodes, each a weir-dataplane in its own node
//! namespace with a pod, joined by a veth underlay; and one weir node facing
//! the Linux kernel's own VXLAN device as an independent peer. Root and
//! hugepages needed; one at a time (`--test-threads=1`).

mod common;

use std::process::Command;

use common::*;

#[test]
fn pods_on_two_weir_nodes_talk_over_vxlan() {
    require_root();
    let tag = tag();
    let (n1ns, n2ns) = (Netns::new(format!("wo{tag}-n1")), Netns::new(format!("wo{tag}-n2")));
    let (u1, u2) = (format!("wo{tag}u1"), format!("wo{tag}u2"));
    sh(&["ip", "link", "add", &u1, "netns", &n1ns.0, "type", "veth", "peer", "name", &u2, "netns", &n2ns.0]);
    for (ns, dev) in [(&n1ns.0, &u1), (&n2ns.0, &u2)] {
        in_ns(ns, &["sysctl", "-qw", &format!("net.ipv6.conf.{dev}.disable_ipv6=1")]);
        sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
    }
    // Pod MTU = underlay MTU − 50, as the CNI sets it.
    let n1 = OverlayNode::new(&tag, 1, &n1ns, &u1, "1450");
    let n2 = OverlayNode::new(&tag, 2, &n2ns, &u2, "1450");
    // A second network on both nodes (Contiv's poc-net, VNI 21), one pod each.
    let poc1 = make_pod(&n1ns, &format!("{tag}-q1"), "21.1.1.2", "02:00:00:00:21:02", "21.1.1.1", "1450");
    let poc2 = make_pod(&n2ns, &format!("{tag}-q2"), "21.1.1.3", "02:00:00:00:21:03", "21.1.1.1", "1450");
    let poc = |pod: &Pod, peer_ip: &str, peer_node: &str| {
        format!(
            "[[networks]]\nname = \"poc-net\"\nsubnet = \"21.1.1.0/24\"\ngateway = \"21.1.1.1\"\nvni = 21\n\n\
             [[ports]]\nname = \"poc\"\nkind = \"af_packet\"\niface = \"{}\"\n\
             pod = {{ ip = \"{}\", mac = \"{}\", network = \"poc-net\" }}\n\n\
             [[remote_routes]]\nnetwork = \"poc-net\"\nprefix = \"{peer_ip}/32\"\nnode = \"{peer_node}\"\n",
            pod.host_if, pod.ip, pod.mac
        )
    };
    let extra1 = remote("node2", "192.168.50.2", "10.2.0.0/24", VTEP2_MAC) + &poc(&poc1, "21.1.1.3", "node2");
    let extra2 = remote("node1", "192.168.50.1", "10.1.0.0/24", VTEP1_MAC) + &poc(&poc2, "21.1.1.2", "node1");
    let dp1 = start_dataplane(&n1ns.0, &n1.dir, &n1.config(1, &extra1));
    let dp2 = start_dataplane(&n2ns.0, &n2.dir, &n2.config(2, &extra2));

    assert!(n1.pod.ping("10.2.0.2", 3), "node1's pod cannot ping node2's pod\n{}\n{}", dp1.logs(), dp2.logs());
    assert!(n2.pod.ping("10.1.0.2", 3), "node2's pod cannot ping node1's pod");
    let (sent, got, len) = tcp_stream(&n1.pod, &n2.pod, 4 * 1024 * 1024);
    assert_eq!((sent, len), (got, 4 * 1024 * 1024), "node1 → node2 stream");
    let (sent, got, len) = tcp_stream(&n2.pod, &n1.pod, 4 * 1024 * 1024);
    assert_eq!((sent, len), (got, 4 * 1024 * 1024), "node2 → node1 stream");

    // poc-net across the nodes, over VNI 21; and no way between the networks.
    assert!(poc1.ping("21.1.1.3", 3), "poc-net pod on node1 → poc-net pod on node2\n{}", dp1.logs());
    assert!(poc2.ping("21.1.1.2", 2), "poc-net pod on node2 → poc-net pod on node1");
    let (sent, got, len) = tcp_stream(&poc1, &poc2, 1024 * 1024);
    assert_eq!((sent, len), (got, 1024 * 1024), "poc-net stream");
    for (from, to) in [(&poc1, "10.1.0.2"), (&poc1, "10.2.0.2"), (&n1.pod, "21.1.1.2"), (&n1.pod, "21.1.1.3")] {
        assert!(!from.ping(to, 1), "{} reached {to} across networks", from.ip);
    }

    for (dp, peer) in [(&dp1, "192.168.50.2"), (&dp2, "192.168.50.1")] {
        let s = dp.settled_stats();
        let nb = s.neighbours.iter().find(|n| n.ip.to_string() == peer).unwrap_or_else(|| panic!("{s:#?}"));
        assert!(nb.mac.is_some(), "{peer} resolved: {nb:?}");
        for r in [
            "vxlan_malformed",
            "vxlan_bad_flags",
            "vxlan_unknown_vni",
            "vxlan_unknown_vtep",
            "overlay_loop",
            "neighbour_timeout",
        ] {
            assert_eq!(s.drop_count(r), 0, "{r}: {:?}", s.drops);
        }
        let ov = s.overlay.as_ref().expect("overlay in stats");
        assert_eq!((ov.mtu, ov.pod_mtu, ov.vxlan_port, ov.uplink.as_str()), (1500, 1450, 4789, "uplink"));
        let up = s.port("uplink").unwrap();
        assert!(up.rx_packets > 2000 && up.tx_packets > 2000, "{up:?}");
    }
    assert!(dp1.stats().drop_count("no_route") >= 4, "the cross-network pings were refused by weir");
    drop((dp1, dp2));
    drop((poc1, poc2, n1, n2, n1ns, n2ns));
}

/// weir ↔ the Linux kernel's VXLAN device: a pod behind each, traffic both
/// ways, and the outer packets weir sends decode as VXLAN.
#[test]
fn weir_interoperates_with_the_kernel_vxlan_device() {
    require_root();
    let tag = tag();
    let n1ns = Netns::new(format!("wo{tag}-n1"));
    let k = Netns::new(format!("wo{tag}-k"));
    let kpod = Netns::new(format!("wo{tag}-kp"));
    let (u1, uk) = (format!("wo{tag}u1"), format!("wo{tag}uk"));
    sh(&["ip", "link", "add", &u1, "netns", &n1ns.0, "type", "veth", "peer", "name", &uk, "netns", &k.0]);
    in_ns(&n1ns.0, &["sysctl", "-qw", &format!("net.ipv6.conf.{u1}.disable_ipv6=1")]);
    sh(&["ip", "-n", &n1ns.0, "link", "set", &u1, "up"]);
    // The kernel node: underlay address, a VXLAN device flannel-style (a
    // route to weir's pod CIDR via weir's VTEP address, a static neighbour
    // and FDB entry for weir's VTEP MAC), and a pod routed behind it.
    let kk = k.0.as_str();
    in_ns(kk, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    in_ns(kk, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    sh(&["ip", "-n", kk, "addr", "add", "192.168.50.2/24", "dev", &uk]);
    sh(&["ip", "-n", kk, "link", "set", &uk, "up"]);
    sh(&[
        "ip",
        "-n",
        kk,
        "link",
        "add",
        "vx0",
        "address",
        VTEP2_MAC,
        "type",
        "vxlan",
        "id",
        "1",
        "dstport",
        "4789",
        "local",
        "192.168.50.2",
        "dev",
        &uk,
        "nolearning",
    ]);
    sh(&["ip", "-n", kk, "addr", "add", "10.2.0.0/32", "dev", "vx0"]);
    sh(&["ip", "-n", kk, "link", "set", "vx0", "up"]);
    sh(&["ip", "-n", kk, "neigh", "add", "10.1.0.0", "lladdr", VTEP1_MAC, "dev", "vx0"]);
    sh(&["ip", "-n", kk, "route", "add", "10.1.0.0/24", "via", "10.1.0.0", "dev", "vx0", "onlink"]);
    sh(&["bridge", "-n", kk, "fdb", "append", VTEP1_MAC, "dev", "vx0", "dst", "192.168.50.1"]);
    sh(&["ip", "link", "add", "eth0", "netns", &kpod.0, "type", "veth", "peer", "name", "kp", "netns", kk]);
    sh(&["ip", "-n", kk, "addr", "add", "10.2.0.1/24", "dev", "kp"]);
    sh(&["ip", "-n", kk, "link", "set", "kp", "up"]);
    pod_side(&kpod.0, "10.2.0.2", "02:00:00:00:02:02", "10.2.0.1", "1500");
    let kernel_pod =
        Pod { ns: kpod, ip: "10.2.0.2".parse().unwrap(), mac: "02:00:00:00:02:02".into(), host_if: "kp".into() };

    // weir's pod keeps MTU 1500: weir's ICMP fragmentation-needed has to
    // teach it the tunnel's MTU (path MTU discovery through weir).
    let n1 = OverlayNode::new(&tag, 1, &n1ns, &u1, "1500");
    let dp =
        start_dataplane(&n1ns.0, &n1.dir, &n1.config(1, &remote("kernel", "192.168.50.2", "10.2.0.0/24", VTEP2_MAC)));

    // Capture what arrives at the kernel node's underlay while traffic runs.
    // (To a file, not a pipe: a pipe nobody reads would stall the capture.)
    let cap_file = n1.dir.join("capture.hex");
    let mut capture = Command::new("ip")
        .args(["netns", "exec", kk, "timeout", "30", "python3", "-c", CAPTURE, &uk])
        .stdout(std::fs::File::create(&cap_file).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));

    assert!(n1.pod.ping("10.2.0.2", 3), "weir pod → kernel pod\n{}", dp.logs());
    assert!(kernel_pod.ping("10.1.0.2", 3), "kernel pod → weir pod\n{}", dp.logs());
    // Path MTU discovery through weir: a full-size DF packet gets
    // fragmentation-needed with the tunnel's MTU from the gateway.
    let o = in_ns(&n1.pod.ns.0, &["ping", "-c", "1", "-M", "do", "-s", "1472", "-W", "1", "10.2.0.2"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("From 10.1.0.1") && text.contains("mtu = 1450"), "{text}");
    let r =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tcp_stream(&n1.pod, &kernel_pod, 2 * 1024 * 1024)));
    let (sent, got, len) = r.unwrap_or_else(|e| {
        let s = dp.stats();
        panic!(
            "{:?}\n{:?}\n{:?}\n{:?}",
            e.downcast_ref::<String>(),
            s.replies,
            s.drops.iter().filter(|d| *d.1 > 0).collect::<Vec<_>>(),
            s.ports
        )
    });
    assert_eq!((sent, len), (got, 2 * 1024 * 1024), "weir pod → kernel pod stream");
    let (sent, got, len) = tcp_stream(&kernel_pod, &n1.pod, 2 * 1024 * 1024);
    assert_eq!((sent, len), (got, 2 * 1024 * 1024), "kernel pod → weir pod stream");

    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = Command::new("kill").arg(capture.id().to_string()).status();
    let _ = capture.wait();
    let text = std::fs::read_to_string(&cap_file).unwrap();
    let frames: Vec<Vec<u8>> = text
        .lines()
        .filter_map(|l| (0..l.len()).step_by(2).map(|i| u8::from_str_radix(l.get(i..i + 2)?, 16).ok()).collect())
        .collect();
    let vxlan = frames.iter().filter(|f| decode_vxlan(f).is_some()).count();
    assert!(vxlan > 100, "{vxlan} VXLAN frames of {} captured", frames.len());
    for f in frames.iter().filter_map(|f| decode_vxlan(f)) {
        assert_eq!(f, (1, "192.168.50.1".parse().unwrap()), "VNI and outer source");
    }
    let s = dp.settled_stats();
    assert!(s.replies["icmp_frag_needed"] > 0, "the kernel pod learnt the tunnel MTU from weir: {:?}", s.replies);
    assert_eq!(
        s.drop_count("vxlan_unknown_vni") + s.drop_count("vxlan_bad_flags") + s.drop_count("vxlan_malformed"),
        0
    );
}

/// (VNI, outer source) of a frame that is Ethernet/IPv4/UDP 4789/VXLAN with
/// the I flag and an inner Ethernet frame — decoded by hand, not with weir's
/// own header views.
fn decode_vxlan(f: &[u8]) -> Option<(u32, std::net::Ipv4Addr)> {
    if f.len() < 14 + 20 + 8 + 8 + 14 || f[12..14] != [0x08, 0x00] || f[14] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(f[14] & 0x0f) * 4;
    if f[14 + 9] != 17 {
        return None;
    }
    let src = std::net::Ipv4Addr::new(f[26], f[27], f[28], f[29]);
    let udp = &f[14 + ihl..];
    if u16::from_be_bytes([udp[2], udp[3]]) != 4789 {
        return None;
    }
    let ulen = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    let vx = &udp[8..];
    assert_eq!(vx[0], 0x08, "VXLAN flags");
    assert_eq!([vx[1], vx[2], vx[3], vx[7]], [0, 0, 0, 0], "reserved bytes");
    assert_eq!(ulen, udp.len().min(ulen), "UDP length within the frame");
    Some((u32::from_be_bytes([0, vx[4], vx[5], vx[6]]), src))
}

const CAPTURE: &str = r#"
import socket, sys, signal
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind((sys.argv[1], 0))
out = sys.stdout
try:
    while True:
        data, addr = s.recvfrom(65535)
        if addr[2] != socket.PACKET_OUTGOING:
            out.write(data.hex() + "\n")
            out.flush()
except SystemExit:
    pass
"#;

/// The host path: the node's kernel sits behind a TAP port of weir's with the
/// node IP. A process in the node namespace reaches a pod through weir, and a
/// TCP service of the node is reachable from the underlay through the uplink.
#[test]
fn the_node_kernel_is_reached_through_the_host_port() {
    require_root();
    let tag = tag();
    let n1ns = Netns::new(format!("wo{tag}-n1"));
    let ext = Netns::new(format!("wo{tag}-x"));
    let (u1, ux) = (format!("wo{tag}u1"), format!("wo{tag}ux"));
    sh(&["ip", "link", "add", &u1, "netns", &n1ns.0, "type", "veth", "peer", "name", &ux, "netns", &ext.0]);
    in_ns(&n1ns.0, &["sysctl", "-qw", &format!("net.ipv6.conf.{u1}.disable_ipv6=1")]);
    sh(&["ip", "-n", &n1ns.0, "link", "set", &u1, "up"]);
    // An "external client" on the underlay.
    in_ns(&ext.0, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    sh(&["ip", "-n", &ext.0, "addr", "add", "192.168.50.9/24", "dev", &ux]);
    sh(&["ip", "-n", &ext.0, "link", "set", &ux, "up"]);
    assert!(in_ns(&ext.0, &["ethtool", "-K", &ux, "tx", "off"]).status.success());

    let n1 = OverlayNode::new(&tag, 1, &n1ns, &u1, "1450");
    let tap = format!("wo{tag}h");
    let host_port = format!("[[ports]]\nname = \"host\"\nkind = \"tap\"\niface = \"{tap}\"\nhost = true\n");
    let dp = start_dataplane(&n1ns.0, &n1.dir, &n1.config(1, &host_port));
    // The node's kernel side of the TAP: the node IP, and the pods behind weir.
    let nn = n1ns.0.as_str();
    in_ns(nn, &["sysctl", "-qw", &format!("net.ipv6.conf.{tap}.disable_ipv6=1")]);
    assert!(in_ns(nn, &["ethtool", "-K", &tap, "tx", "off"]).status.success());
    sh(&["ip", "-n", nn, "addr", "add", "192.168.50.1/24", "dev", &tap]);
    sh(&["ip", "-n", nn, "link", "set", &tap, "up"]);
    sh(&["ip", "-n", nn, "route", "add", "10.1.0.0/16", "dev", &tap]);

    // The node reaches its pod (kubelet probes), and the pod the node.
    let ok = in_ns(nn, &["ping", "-c", "3", "-i", "0.2", "-W", "2", "-q", "10.1.0.2"]).status.success();
    assert!(ok, "node → pod\n{}\n{:#?}", dp.logs(), dp.stats());
    assert!(n1.pod.ping("192.168.50.1", 2), "pod → node IP");
    let (sent, got, len) = tcp_stream_ns(nn, &n1.pod.ns.0, "10.1.0.2", 1024 * 1024);
    assert_eq!((sent, len), (got, 1024 * 1024), "node → pod stream");
    // A TCP service of the node, from the underlay, through the uplink.
    let (sent, got, len) = tcp_stream_ns(&ext.0, nn, "192.168.50.1", 1024 * 1024);
    assert_eq!((sent, len), (got, 1024 * 1024), "underlay client → node service");
    let ok = in_ns(&ext.0, &["ping", "-c", "2", "-i", "0.2", "-W", "2", "-q", "192.168.50.1"]).status.success();
    assert!(ok, "underlay → node IP ping");

    let s = dp.settled_stats();
    let host = s.port("host").unwrap();
    assert!(host.rx_packets > 500 && host.tx_packets > 500, "{host:?}");
    assert!(s.consumed["arp_on_host"] > 0 || s.neighbours.iter().any(|n| n.ip.to_string() == "192.168.50.1"));
    assert_eq!(s.drop_count("neighbour_timeout"), 0, "{:?}", s.drops);
    drop(dp);
}

/// The uplink is a vhost-user port whose peer serves one queue pair only
/// (virtio-user, `queues=1`, as a VM's single-queue virtio NIC would): the
/// ARP requests weir's management thread sends for a remote VTEP still
/// reach it, because they go out through worker 0's tx queue, the one the
/// peer reads. The peer is dpdk-testpmd in rxonly mode, printing what it
/// receives.
#[test]
fn a_single_queue_peer_on_the_uplink_gets_the_arp_requests() {
    use std::io::Write;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    require_root();
    let tag = tag();
    let n1ns = Netns::new(format!("wo{tag}-n1"));
    let n1 = OverlayNode::new(&tag, 1, &n1ns, "unused", "1450");
    let sock = n1.dir.join("uplink.sock");
    let config = n1
        .config(1, &remote("node2", "192.168.50.2", "10.2.0.0/24", VTEP2_MAC))
        .replace(
            "kind = \"af_packet\"\niface = \"unused\"",
            &format!("kind = \"vhost_user\"\npath = \"{}\"\nserver = true", sock.display()),
        )
        // The af_packet pod needs its kernel memory; vhost wants hugepages.
        .replace("memory_mb = 256", "memory_mb = 512");
    assert!(config.contains("vhost_user"), "{config}");
    let dp = start_dataplane(&n1ns.0, &n1.dir, &config);

    let log = n1.dir.join("testpmd.log");
    let mut pmd = Command::new("stdbuf")
        .args(["-oL", "dpdk-testpmd", "-l", "0,1", "--main-lcore", "1", "--no-pci", "--in-memory"])
        .args(["--single-file-segments", "-m", "256"])
        .arg(format!("--file-prefix=wo{tag}pmd"))
        .arg(format!("--vdev=net_virtio_user0,path={},queues=1,mac=02:00:00:aa:00:02", sock.display()))
        .args(["--", "-i", "--nb-cores=1", "--rxq=1", "--txq=1", "--total-num-mbufs=4096", "--disable-link-check"])
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::from(std::fs::File::create(log.with_extension("err")).unwrap()))
        .spawn()
        .expect("dpdk-testpmd (dpdk-dev)");
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut stdin = pmd.stdin.take().unwrap();
    stdin.write_all(b"set verbose 1\nset fwd rxonly\nstart\n").unwrap();
    stdin.flush().unwrap();
    let t0 = Instant::now();
    while !read().contains("rxonly packet forwarding") && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }

    // The pod's ping needs node2's VTEP: weir asks for it on the uplink.
    let pinged = n1.pod.ping("10.2.0.2", 2);
    let t0 = Instant::now();
    let arp = |text: &str| text.lines().any(|l| l.contains("type=0x0806") && l.contains("dst=FF:FF:FF:FF:FF:FF"));
    while !arp(&read()) && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let seen = read();
    let _ = stdin.write_all(b"stop\nquit\n");
    drop(stdin);
    let t1 = Instant::now();
    while pmd.try_wait().ok().flatten().is_none() && t1.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = pmd.kill();
    let _ = pmd.wait();
    assert!(!pinged, "nobody answers for node2");
    let err = std::fs::read_to_string(log.with_extension("err")).unwrap_or_default();
    assert!(arp(&seen), "no ARP request reached the single-queue peer\ntestpmd:\n{seen}\n{err}\n{}", dp.logs());
    let s = dp.settled_stats();
    let nb = s.neighbours.iter().find(|n| n.ip.to_string() == "192.168.50.2").unwrap_or_else(|| panic!("{s:#?}"));
    assert!(nb.mac.is_none(), "{nb:?}");
    drop(dp);
    drop((n1, n1ns));
}
