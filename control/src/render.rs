//! Human-readable tables of what the dataplane reports.

use std::fmt::Write;

use weir_dataplane::api::Stats;

/// The `weirctl stats` table: ports, then non-zero drops and replies, then workers.
pub fn stats(s: &Stats) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "node {}  tables generation {}  free mbufs {}", s.node, s.generation, s.mbufs_free);
    if let Some(ov) = &s.overlay {
        let _ = writeln!(
            o,
            "overlay: node IP {} on {}, underlay MTU {} (pods {}), VXLAN port {}{}",
            ov.node_ip,
            ov.uplink,
            ov.mtu,
            ov.pod_mtu,
            ov.vxlan_port,
            ov.host_port.as_ref().map(|h| format!(", host port {h}")).unwrap_or_default()
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<14} {:>3} {:<12} {:<5} {:>12} {:>14} {:>12} {:>14} {:>9}",
        "PORT", "ID", "KIND", "LINK", "RX PKTS", "RX BYTES", "TX PKTS", "TX BYTES", "MISSED"
    );
    for p in &s.ports {
        let _ = writeln!(
            o,
            "{:<14} {:>3} {:<12} {:<5} {:>12} {:>14} {:>12} {:>14} {:>9}",
            p.name,
            p.id,
            p.kind,
            if p.link_up { "up" } else { "down" },
            p.rx_packets,
            p.rx_bytes,
            p.tx_packets,
            p.tx_bytes,
            p.nic_rx_missed
        );
    }
    let _ = writeln!(o);
    if !counters(&mut o, "DROP REASON", &s.drops) {
        let _ = writeln!(o, "drops: none");
    }
    for (title, map) in [("ANSWERED BY WEIR", &s.replies), ("USED BY WEIR", &s.consumed)] {
        let mut table = String::new();
        if counters(&mut table, title, map) {
            let _ = writeln!(o);
            o.push_str(&table);
        }
    }
    if !s.neighbours.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "{:<16} {:<18} STATE", "NEIGHBOUR", "MAC");
        for n in &s.neighbours {
            let state =
                serde_json::to_value(n.state).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
            let _ = writeln!(o, "{:<16} {:<18} {state}", n.ip.to_string(), n.mac.as_deref().unwrap_or("-"));
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<7} {:>5} {:>10} {:>14} {:>12} {:>12}  RX QUEUES (port:queue)",
        "WORKER", "CORE", "GENERATION", "POLLS", "BUSY POLLS", "IDLE SLEEPS"
    );
    for w in &s.workers {
        let q: Vec<String> = w.rx_queues.iter().map(|(p, q)| format!("{p}:{q}")).collect();
        let _ = writeln!(
            o,
            "{:<7} {:>5} {:>10} {:>14} {:>12} {:>12}  {}",
            w.id,
            w.core,
            w.generation,
            w.polls,
            w.busy_polls,
            w.idle_sleeps,
            q.join(" ")
        );
    }
    o
}

/// A table of the non-zero counters of `map` under `title`; false (and
/// nothing written) when every counter is zero.
fn counters(o: &mut String, title: &str, map: &std::collections::BTreeMap<String, u64>) -> bool {
    let rows: Vec<_> = map.iter().filter(|(_, n)| **n > 0).collect();
    if rows.is_empty() {
        return false;
    }
    let _ = writeln!(o, "{title:<28} {:>12}", "PACKETS");
    for (r, n) in rows {
        let _ = writeln!(o, "{r:<28} {n:>12}");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_dataplane::api::{PortStats, WorkerStats};

    #[test]
    fn shows_ports_nonzero_drops_and_workers() {
        let mut s = Stats { node: "n1".into(), generation: 3, ..Default::default() };
        s.ports.push(PortStats {
            name: "pod-a".into(),
            kind: "af_packet".into(),
            link_up: true,
            rx_packets: 42,
            ..Default::default()
        });
        s.drops.insert("no_route".into(), 5);
        s.drops.insert("runt_frame".into(), 0);
        s.workers.push(WorkerStats { id: 0, core: 1, generation: 3, rx_queues: vec![(0, 0)], ..Default::default() });
        s.neighbours.push(weir_dataplane::api::NeighbourStats {
            ip: "192.168.50.2".parse().unwrap(),
            mac: Some("02:00:00:aa:00:02".into()),
            state: weir_dataplane::neighbour::State::Reachable,
        });
        let t = stats(&s);
        assert!(t.contains("pod-a") && t.contains("42"), "{t}");
        assert!(t.contains("no_route") && !t.contains("runt_frame"), "{t}");
        assert!(t.contains("0:0"), "{t}");
        assert!(t.contains("192.168.50.2") && t.contains("02:00:00:aa:00:02") && t.contains("reachable"), "{t}");
    }
}
