//! Namespace tests: real kernel pods talking through a real weir-dataplane
//! process over af_packet ports. Root and hugepages needed (scripts/test.sh);
//! they busy the CPU, so run them one at a time (`--test-threads=1`).

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use common::*;
use weir_dataplane::api::{Reply, Request};
use weir_dataplane::config::{PodAttachment, PortConfig, PortKind};
use weir_dataplane::wire::{ethernet, icmp, ipv4, tcp, udp, MacAddr};

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

#[test]
fn pods_ping_and_stream_tcp_through_weir() {
    let bed = Bed::new(2);
    let dp = bed.start(&bed.config(&[0, 1]));
    let (a, b) = (&bed.pods[0], &bed.pods[1]);

    assert!(a.ping(&b.ip.to_string(), 3), "pod-a cannot ping pod-b\n{}", dp.logs());
    assert!(b.ping(&a.ip.to_string(), 3), "pod-b cannot ping pod-a");
    assert!(a.ping(GW_IP, 2), "pod-a cannot ping the gateway");

    let (sent, got, len) = tcp_stream(a, b, 10 * 1024 * 1024);
    assert_eq!(len, 10 * 1024 * 1024, "bytes received");
    assert_eq!(sent, got, "the stream arrived changed");

    // The dataplane's counters agree with what the pods' kernels sent and got.
    let s = dp.settled_stats();
    let (pa, pb) = (s.port("pod-0").unwrap(), s.port("pod-1").unwrap());
    let (a_rx, a_tx) = a.eth0_packets();
    let (b_rx, b_tx) = b.eth0_packets();
    assert_eq!(pa.rx_packets, a_tx, "weir rx on pod-0 vs pod-a's eth0 tx\n{s:#?}");
    assert_eq!(pa.tx_packets, a_rx, "weir tx on pod-0 vs pod-a's eth0 rx");
    assert_eq!(pb.rx_packets, b_tx, "weir rx on pod-1 vs pod-b's eth0 tx");
    assert_eq!(pb.tx_packets, b_rx, "weir tx on pod-1 vs pod-b's eth0 rx");
    assert_eq!(s.total_drops(), 0, "drops: {:?}", s.drops);
    // Everything received was forwarded or answered.
    let answered: u64 = s.replies.values().sum();
    assert_eq!(pa.rx_packets + pb.rx_packets, pa.tx_packets + pb.tx_packets);
    assert!(answered >= 2 + 2, "ARP replies and 2 echo replies: {:?}", s.replies);
    assert_eq!(s.replies["icmp_echo_reply"], 2);
    // 10 MiB in ~1448-byte segments: thousands of data packets one way.
    assert!(pa.rx_packets > 7000 && pb.tx_packets > 7000, "{pa:?} {pb:?}");
    assert!(pa.rx_bytes > 10 * 1024 * 1024);
    assert_eq!(pa.nic_rx_packets, pa.rx_packets, "driver and worker counts agree");
    // Every mbuf came back to the pool: nothing leaked on any path.
    assert_eq!(s.mbufs_free, 8191, "mbufs not returned to the pool");

    assert!(dp.shutdown().success());
}

/// Frames from pod-a's eth0 to the gateway MAC.
struct Frames {
    src: MacAddr,
    gw: MacAddr,
}

impl Frames {
    fn eth(&self, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; ethernet::HEADER_LEN + payload.len()];
        let mut e = ethernet::Frame::new_unchecked(&mut f[..]);
        ethernet::Repr { src: self.src, dst: self.gw, ethertype }.emit(&mut e);
        e.payload_mut().copy_from_slice(payload);
        f
    }

    /// A valid UDP/IPv4 frame from pod-a to `dst`.
    fn udp(&self, dst: Ipv4Addr, ttl: u8) -> Vec<u8> {
        let src: Ipv4Addr = "10.1.0.2".parse().unwrap();
        let payload = b"weir malformed-frame test";
        let mut ip = vec![0u8; ipv4::HEADER_LEN + udp::HEADER_LEN + payload.len()];
        let repr = ipv4::Repr {
            src,
            dst,
            protocol: ipv4::protocol::UDP,
            ttl,
            payload_len: udp::HEADER_LEN + payload.len(),
            dscp_ecn: 0,
            ident: 7,
            dont_frag: false,
        };
        repr.emit(&mut ipv4::Packet::new_unchecked(&mut ip[..]));
        let mut u = udp::Packet::new_unchecked(&mut ip[ipv4::HEADER_LEN..]);
        u.set_src_port(4000);
        u.set_dst_port(5000);
        u.set_len((udp::HEADER_LEN + payload.len()) as u16);
        u.payload_mut().copy_from_slice(payload);
        u.fill_checksum(src, dst);
        self.eth(ethernet::ethertype::IPV4, &ip)
    }

    /// `udp` with the IPv4 header edited by `f` (checksum refilled unless `keep_sum`).
    fn edit(&self, ttl: u8, keep_sum: bool, f: impl Fn(&mut [u8])) -> Vec<u8> {
        let mut fr = self.udp("10.1.0.3".parse().unwrap(), ttl);
        f(&mut fr[ethernet::HEADER_LEN..]);
        if !keep_sum {
            let ip = &mut fr[ethernet::HEADER_LEN..];
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ihl >= 20 && ihl <= ip.len() {
                ip[10] = 0;
                ip[11] = 0;
                let c = weir_dataplane::wire::checksum::checksum(&ip[..ihl]);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
            }
        }
        fr
    }
}

#[test]
fn malformed_frames_are_dropped_and_counted() {
    let bed = Bed::new(2);
    let dp = bed.start(&bed.config(&[0, 1]));
    let a = &bed.pods[0];
    let fr = Frames { src: mac(&a.mac), gw: mac(GW_MAC) };
    let b_ip: Ipv4Addr = "10.1.0.3".parse().unwrap();

    // (frame, what weir must count for it)
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("ipv6 ethertype", fr.eth(ethernet::ethertype::IPV6, &[0x60; 40]), "unknown_ethertype"),
        ("lldp ethertype", fr.eth(0x88cc, &[0; 46]), "unknown_ethertype"),
        ("ipv4 header cut at 12 bytes", fr.eth(ethernet::ethertype::IPV4, &fr.udp(b_ip, 64)[14..26]), "ipv4_truncated"),
        ("ip version 6", fr.edit(64, false, |ip| ip[0] = 0x65), "ipv4_bad_version"),
        ("ihl 4", fr.edit(64, true, |ip| ip[0] = 0x44), "ipv4_bad_ihl"),
        ("ihl 15 past the packet", fr.edit(64, true, |ip| ip[0] = 0x4f), "ipv4_bad_ihl"),
        (
            "total length 10",
            fr.edit(64, false, |ip| ip[2..4].copy_from_slice(&10u16.to_be_bytes())),
            "ipv4_bad_total_length",
        ),
        (
            "total length past the frame",
            fr.edit(64, false, |ip| ip[2..4].copy_from_slice(&1400u16.to_be_bytes())),
            "ipv4_bad_total_length",
        ),
        ("bad header checksum", fr.edit(64, true, |ip| ip[10] ^= 0x55), "ipv4_bad_checksum"),
        ("multicast source", fr.edit(64, false, |ip| ip[12..16].copy_from_slice(&[224, 0, 0, 1])), "ipv4_bad_source"),
        ("udp length 4", fr.edit(64, false, |ip| ip[24..26].copy_from_slice(&4u16.to_be_bytes())), "l4_malformed"),
        ("no route", fr.udp("192.0.2.9".parse().unwrap(), 64), "no_route"),
        ("to the gateway, not ping", fr.udp(GW_IP.parse().unwrap(), 64), "local_not_served"),
        ("ttl 1", fr.udp(b_ip, 1), "icmp_time_exceeded"),
        ("ttl 0", fr.udp(b_ip, 0), "icmp_time_exceeded"),
    ];
    // A TCP header cut short: IPv4 says TCP, 10 bytes follow.
    {
        let mut f = fr.edit(64, false, |ip| {
            ip[9] = ipv4::protocol::TCP;
        });
        let ip_len = 20 + 10;
        f.truncate(14 + ip_len);
        let ip = &mut f[14..];
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        ip[10] = 0;
        ip[11] = 0;
        let c = weir_dataplane::wire::checksum::checksum(&ip[..20]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        cases.push(("tcp header cut at 10 bytes", f, "l4_malformed"));
    }
    // A truncated ICMP header.
    {
        let mut f = fr.edit(64, false, |ip| ip[9] = ipv4::protocol::ICMP);
        f.truncate(14 + 24);
        let ip = &mut f[14..];
        ip[2..4].copy_from_slice(&24u16.to_be_bytes());
        ip[10] = 0;
        ip[11] = 0;
        let c = weir_dataplane::wire::checksum::checksum(&ip[..20]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        cases.push(("icmp header cut at 4 bytes", f, "l4_malformed"));
    }
    let _ = (tcp::HEADER_LEN, icmp::HEADER_LEN);

    let before = dp.settled_stats();
    let frames: Vec<Vec<u8>> = cases.iter().map(|(_, f, _)| f.clone()).collect();
    inject(a, &frames);
    let after = dp.settled_stats();

    let mut want: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, _, reason) in &cases {
        *want.entry(reason).or_default() += 1;
    }
    let counted = |name: &str, s: &weir_dataplane::api::Stats| {
        s.drops.get(name).or_else(|| s.replies.get(name)).copied().unwrap_or(0)
    };
    for (reason, n) in &want {
        let got = counted(reason, &after) - counted(reason, &before);
        let names: Vec<&str> = cases.iter().filter(|c| c.2 == *reason).map(|c| c.0).collect();
        assert_eq!(got, *n, "{reason} for {names:?}");
    }
    // Nothing else was dropped, and weir is still forwarding.
    assert_eq!(
        after.total_drops() - before.total_drops(),
        want.iter().filter(|(r, _)| !r.starts_with("icmp")).map(|(_, n)| n).sum::<u64>()
    );
    assert!(a.ping("10.1.0.3", 2), "forwarding after malformed input\n{}", dp.logs());
    assert!(dp.shutdown().success());
}

#[test]
fn ports_hot_plug_while_workers_run() {
    let bed = Bed::new(2);
    let dp = bed.start(&bed.config(&[0]));
    let (a, b) = (&bed.pods[0], &bed.pods[1]);
    assert!(a.ping(GW_IP, 1));
    assert!(!a.ping(&b.ip.to_string(), 1), "pod-b reachable before its port exists");

    let port = PortConfig {
        name: "pod-1".into(),
        kind: PortKind::AfPacket,
        iface: Some(b.host_if.clone()),
        path: None,
        server: None,
        pci: None,
        devargs: None,
        rx_queues: 1,
        pod: Some(PodAttachment { ip: b.ip, mac: mac(&b.mac), network: None }),
        uplink: false,
        host: false,
    };
    let g1 = match dp.call(Request::AddPort { port: port.clone() }) {
        Reply::Applied { generation } => generation,
        other => panic!("add_port: {other:?}\n{}", dp.logs()),
    };
    // pod-a's kernel gave up resolving pod-b a moment ago and would wait out
    // its own retry timers; start it afresh.
    sh(&["ip", "-n", &a.ns.0, "neigh", "flush", "all"]);
    assert!(a.ping(&b.ip.to_string(), 2), "no traffic after hot-plug\n{}\n{:#?}", dp.logs(), dp.stats());
    let s = dp.stats();
    assert!(s.workers.iter().all(|w| w.generation >= g1), "workers run generation {g1}: {:?}", s.workers);

    // A second port with the same name is refused, and nothing changes.
    match dp.call(Request::AddPort { port: port.clone() }) {
        Reply::Error { message } => assert!(message.contains("pod-1"), "{message}"),
        other => panic!("duplicate add_port: {other:?}"),
    }
    match dp.call(Request::RemovePort { name: "pod-1".into() }) {
        Reply::Applied { generation } => assert!(generation > g1),
        other => panic!("remove_port: {other:?}"),
    }
    assert!(dp.stats().port("pod-1").is_none());
    assert!(!a.ping(&b.ip.to_string(), 1), "pod-b reachable after its port was removed");
    match dp.call(Request::RemovePort { name: "pod-1".into() }) {
        Reply::Error { message } => assert!(message.contains("pod-1")),
        other => panic!("second remove_port: {other:?}"),
    }
    // And back again.
    assert!(matches!(dp.call(Request::AddPort { port }), Reply::Applied { .. }));
    sh(&["ip", "-n", &a.ns.0, "neigh", "flush", "all"]);
    assert!(a.ping(&b.ip.to_string(), 2), "no traffic after re-adding the port\n{}", dp.logs());
    assert!(dp.shutdown().success());
}

#[test]
fn bad_config_is_refused_with_the_key() {
    let dir = std::env::temp_dir().join(format!("weir-badcfg-{}", tag()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bad.toml");
    std::fs::write(
        &cfg,
        "[node]\nname = \"n\"\npod_cidr = \"10.1.0.0/24\"\n[gateway]\nip = \"10.2.0.1\"\nmac = \"02:fe:00:00:00:01\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir-dataplane")).arg("-c").arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("gateway.ip = 10.2.0.1"), "{err}");
    std::fs::write(&cfg, "[node]\nname = \"n\"\npod_cidr = \"10.1.0.0/24\"\nmtu = 9000\n[gateway]\nip = \"10.1.0.1\"\nmac = \"02:fe:00:00:00:01\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir-dataplane")).arg("-c").arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("mtu"), "{err}");
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_weir-dataplane")).arg("--help").output().unwrap();
    let h = String::from_utf8_lossy(&help.stdout);
    for flag in ["--config", "--check", "--socket", "--stats-interval"] {
        assert!(h.contains(flag), "--help lacks {flag}: {h}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn port(name: &str, kind: PortKind) -> PortConfig {
    PortConfig {
        name: name.into(),
        kind,
        iface: None,
        path: None,
        server: None,
        pci: None,
        devargs: None,
        rx_queues: 1,
        pod: None,
        uplink: false,
        host: false,
    }
}

fn applied(dp: &Dataplane, req: Request) -> u64 {
    match dp.call(req.clone()) {
        Reply::Applied { generation } => generation,
        other => panic!("{req:?}: {other:?}\n{}", dp.logs()),
    }
}

/// Every virtual port kind attaches while the workers run, with the queues
/// asked for, and detaches cleanly; vhost-user and virtio-user find each other.
#[test]
fn every_port_kind_attaches_and_detaches() {
    let bed = Bed::new(1);
    // Eight ports' rings need more mbufs than the default test config has
    // (add_port refuses a port the pool cannot feed).
    let dp = bed.start(&bed.config(&[0]).replace("mbufs = 8191", "mbufs = 32767"));
    let dir = bed.dir.display().to_string();
    let vhost_sock = format!("{dir}/vhost.sock");

    let mut tap = port("tap", PortKind::Tap);
    tap.iface = Some(format!("wt{}t", bed.tag));
    tap.rx_queues = 2;
    let ring = port("ring", PortKind::Ring);
    let mut null = port("null", PortKind::Null);
    null.rx_queues = 2;
    let mut memif = port("memif", PortKind::Memif);
    memif.path = Some(format!("{dir}/memif.sock"));
    let mut vhost = port("vhost", PortKind::VhostUser);
    vhost.path = Some(vhost_sock.clone());
    vhost.rx_queues = 2;
    let mut virtio = port("virtio", PortKind::VirtioUser);
    virtio.path = Some(vhost_sock);
    virtio.server = Some(false);
    virtio.rx_queues = 2;
    let mut afp = port("afp-2q", PortKind::AfPacket);
    afp.iface = Some(format!("wt{}x", bed.tag));
    afp.rx_queues = 2;
    sh(&[
        "ip",
        "-n",
        &bed.node.0,
        "link",
        "add",
        afp.iface.as_deref().unwrap(),
        "type",
        "veth",
        "peer",
        "name",
        &format!("wt{}y", bed.tag),
    ]);

    let kinds = [tap, ring, null, memif, vhost, virtio, afp];
    let mut last = 0;
    for p in &kinds {
        let g = applied(&dp, Request::AddPort { port: p.clone() });
        assert!(g > last);
        last = g;
    }
    let s = dp.stats();
    for p in &kinds {
        let ps = s.port(&p.name).unwrap_or_else(|| panic!("{} missing: {s:#?}", p.name));
        assert_eq!(ps.kind, p.kind.to_string());
        assert_eq!(ps.rx_queues, p.rx_queues);
        // Each rx queue is polled by exactly one worker.
        let polled = s.workers.iter().flat_map(|w| &w.rx_queues).filter(|(id, _)| *id == ps.id).count();
        assert_eq!(polled, usize::from(p.rx_queues), "{}", p.name);
    }
    // The vhost-user server and the virtio-user client in this one process
    // negotiated: both links are up.
    let link = |n: &str| dp.stats().port(n).unwrap().link_up;
    let t0 = std::time::Instant::now();
    while !(link("vhost") && link("virtio")) && t0.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(link("vhost") && link("virtio"), "vhost/virtio not connected\n{}", dp.logs());

    // A port that cannot come up is refused whole and leaves nothing behind.
    let mut bad = port("bad-tap", PortKind::AfPacket);
    bad.iface = Some("nonexistent0".into());
    match dp.call(Request::AddPort { port: bad }) {
        Reply::Error { message } => assert!(message.contains("bad-tap"), "{message}"),
        other => panic!("af_packet on a missing interface: {other:?}"),
    }
    assert!(dp.stats().port("bad-tap").is_none());

    // Remove in an order that leaves the virtio client last.
    for name in ["vhost", "tap", "ring", "null", "memif", "afp-2q", "virtio"] {
        applied(&dp, Request::RemovePort { name: name.into() });
    }
    let s = dp.stats();
    assert_eq!(s.ports.len(), 1, "{s:#?}");
    // Still forwarding for the pod that was there all along.
    assert!(bed.pods[0].ping(GW_IP, 1), "{}", dp.logs());
    assert!(dp.shutdown().success());
}

/// Two workers, ports with two rx queues: each queue has one owner, tx goes
/// out through each worker's own queue, and counters still add up.
#[test]
fn two_workers_with_two_queue_ports() {
    let bed = Bed::new(2);
    let cfg = bed
        .config(&[0, 1])
        .replace("worker_cores = [1]", "worker_cores = [0, 1]")
        .replace("mbufs = 8191", "mbufs = 16383")
        .replace("pod = {", "rx_queues = 2\npod = {");
    let dp = bed.start(&cfg);
    let (a, b) = (&bed.pods[0], &bed.pods[1]);
    let s = dp.stats();
    assert_eq!(s.workers.len(), 2);
    // af_packet ports have as many rx as tx queues (2 workers + management):
    // all of them polled, spread evenly over the workers.
    let per_worker: Vec<usize> = s.workers.iter().map(|w| w.rx_queues.len()).collect();
    let total: usize = s.ports.iter().map(|p| usize::from(p.rx_queues)).sum();
    assert_eq!(per_worker.iter().sum::<usize>(), total, "{:?}", s.workers);
    assert!(per_worker.iter().max().unwrap() - per_worker.iter().min().unwrap() <= 1, "{:?}", s.workers);
    assert!(s.ports.iter().all(|p| p.rx_queues >= 2));
    assert!(a.ping(&b.ip.to_string(), 3), "{}", dp.logs());
    let (sent, got, len) = tcp_stream(a, b, 4 * 1024 * 1024);
    assert_eq!((sent, len), (got, 4 * 1024 * 1024));
    let (sent, got, len) = tcp_stream(b, a, 4 * 1024 * 1024);
    assert_eq!((sent, len), (got, 4 * 1024 * 1024));
    let s = dp.settled_stats();
    let (pa, pb) = (s.port("pod-0").unwrap(), s.port("pod-1").unwrap());
    assert_eq!(pa.rx_packets, a.eth0_packets().1);
    assert_eq!(pb.rx_packets, b.eth0_packets().1);
    assert_eq!(pa.tx_packets, a.eth0_packets().0);
    assert_eq!(pb.tx_packets, b.eth0_packets().0);
    assert_eq!(s.total_drops(), 0, "{:?}", s.drops);
    assert!(dp.shutdown().success());
}
