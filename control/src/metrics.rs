//! The Prometheus endpoint of weir-control (`--metrics ADDR`, loopback by
//! default): the dataplane's counters, read from its management socket at
//! each scrape, and weir-control's own — syncs, their latency, resyncs,
//! errors and the sizes of the tables it computed. Names follow
//! Prometheus' conventions (`weir_` prefix, `_total` counters, base units).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weir_dataplane::api::{Reply, Request, Stats};

/// Upper bounds (seconds) of the sync latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// weir-control's own figures, updated by its loop.
#[derive(Default)]
pub struct Metrics {
    pub resyncs: AtomicU64,
    pub updates: AtomicU64,
    pub changes: AtomicU64,
    pub errors: AtomicU64,
    /// Counts per bucket of `LATENCY_BUCKETS`, and above the last.
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Sum of latencies, microseconds.
    latency_sum_us: AtomicU64,
    pub services: AtomicU64,
    pub acl_pods: AtomicU64,
    pub remote_nodes: AtomicU64,
    pub networks: AtomicU64,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// A push that was applied, and how long it took.
    pub fn observe_sync(&self, took: Duration) {
        let s = took.as_secs_f64();
        let i = LATENCY_BUCKETS.iter().position(|b| s <= *b).unwrap_or(LATENCY_BUCKETS.len());
        self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// The sizes of the tables last computed.
    pub fn set_tables(&self, t: &weir_dataplane::api::ClusterTables) {
        self.services.store(t.services.len() as u64, Ordering::Relaxed);
        self.acl_pods.store(t.acl.pods.len() as u64, Ordering::Relaxed);
        self.remote_nodes.store(t.remote_nodes.len() as u64, Ordering::Relaxed);
        self.networks.store(t.networks.len() as u64, Ordering::Relaxed);
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value, escaped as the text format wants.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The exposition text: weir-control's figures, and the dataplane's when
/// `stats` is there (`weir_dataplane_up` says whether it was).
pub fn render(m: &Metrics, stats: Option<&Stats>) -> String {
    let mut o = String::new();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    for (name, help, v) in [
        ("weir_control_resyncs_total", "Full resyncs applied (first contact, dataplane restarts).", load(&m.resyncs)),
        ("weir_control_updates_total", "Incremental updates applied.", load(&m.updates)),
        ("weir_control_changes_total", "Changes carried by the updates.", load(&m.changes)),
        ("weir_control_sync_errors_total", "Pushes refused or failed.", load(&m.errors)),
    ] {
        family(&mut o, name, "counter", help);
        let _ = writeln!(o, "{name} {v}");
    }
    family(&mut o, "weir_control_sync_duration_seconds", "histogram", "Time from a push to the dataplane applying it.");
    let mut cum = 0;
    for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
        cum += load(&m.latency_buckets[i]);
        let _ = writeln!(o, "weir_control_sync_duration_seconds_bucket{{le=\"{b}\"}} {cum}");
    }
    cum += load(&m.latency_buckets[LATENCY_BUCKETS.len()]);
    let _ = writeln!(o, "weir_control_sync_duration_seconds_bucket{{le=\"+Inf\"}} {cum}");
    let _ = writeln!(o, "weir_control_sync_duration_seconds_sum {}", load(&m.latency_sum_us) as f64 / 1e6);
    let _ = writeln!(o, "weir_control_sync_duration_seconds_count {cum}");
    family(&mut o, "weir_control_table_entries", "gauge", "Sizes of the tables last computed for the node.");
    for (table, v) in [
        ("services", load(&m.services)),
        ("acl_pods", load(&m.acl_pods)),
        ("remote_nodes", load(&m.remote_nodes)),
        ("networks", load(&m.networks)),
    ] {
        let _ = writeln!(o, "weir_control_table_entries{{table=\"{table}\"}} {v}");
    }
    family(&mut o, "weir_dataplane_up", "gauge", "Whether the dataplane answered this scrape.");
    let _ = writeln!(o, "weir_dataplane_up {}", u8::from(stats.is_some()));
    let Some(s) = stats else { return o };
    let node = esc(&s.node);
    family(&mut o, "weir_dataplane_tables_generation", "gauge", "Generation of the tables the workers run.");
    let _ = writeln!(o, "weir_dataplane_tables_generation{{node=\"{node}\"}} {}", s.generation);
    family(&mut o, "weir_dataplane_control_generation", "gauge", "Control generation the tables were built from.");
    let _ = writeln!(o, "weir_dataplane_control_generation{{node=\"{node}\"}} {}", s.control_generation.unwrap_or(0));
    family(&mut o, "weir_dataplane_drops_total", "counter", "Packets dropped, by reason.");
    for (r, v) in &s.drops {
        let _ = writeln!(o, "weir_dataplane_drops_total{{node=\"{node}\",reason=\"{}\"}} {v}", esc(r));
    }
    family(&mut o, "weir_dataplane_replies_total", "counter", "Packets weir answered itself, by kind.");
    for (k, v) in &s.replies {
        let _ = writeln!(o, "weir_dataplane_replies_total{{node=\"{node}\",kind=\"{}\"}} {v}", esc(k));
    }
    type Field = fn(&weir_dataplane::api::PortStats) -> u64;
    let port_fields: [(&str, &str, Field); 4] = [
        ("weir_dataplane_port_receive_packets_total", "Packets received on a port.", |p| p.rx_packets),
        ("weir_dataplane_port_receive_bytes_total", "Bytes received on a port.", |p| p.rx_bytes),
        ("weir_dataplane_port_transmit_packets_total", "Packets sent on a port.", |p| p.tx_packets),
        ("weir_dataplane_port_transmit_bytes_total", "Bytes sent on a port.", |p| p.tx_bytes),
    ];
    for (name, help, f) in port_fields {
        family(&mut o, name, "counter", help);
        for p in &s.ports {
            let _ = writeln!(o, "{name}{{node=\"{node}\",port=\"{}\"}} {}", esc(&p.name), f(p));
        }
    }
    family(&mut o, "weir_dataplane_port_up", "gauge", "Link state of a port.");
    for p in &s.ports {
        let _ = writeln!(o, "weir_dataplane_port_up{{node=\"{node}\",port=\"{}\"}} {}", esc(&p.name), u8::from(p.link_up));
    }
    family(&mut o, "weir_dataplane_worker_polls_total", "counter", "Rx polls of a worker.");
    for w in &s.workers {
        let _ = writeln!(o, "weir_dataplane_worker_polls_total{{node=\"{node}\",worker=\"{}\"}} {}", w.id, w.polls);
    }
    family(&mut o, "weir_dataplane_mbufs_free", "gauge", "Free mbufs in the pool.");
    let _ = writeln!(o, "weir_dataplane_mbufs_free{{node=\"{node}\"}} {}", s.mbufs_free);
    o
}

/// Serves `GET /metrics` on `addr` from a thread; returns the bound address.
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>, dataplane: PathBuf) -> Result<SocketAddr, String> {
    let l = TcpListener::bind(addr).map_err(|e| format!("metrics on {addr}: {e}"))?;
    let bound = l.local_addr().map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = BufReader::new(&conn);
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            // The rest of the request head.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let (status, body) = if first.starts_with("GET /metrics ") || first.starts_with("GET /metrics?") {
                let stats = match weir_dataplane::mgmt::call(&dataplane, &Request::Stats) {
                    Ok(Reply::Stats(s)) => Some(s),
                    _ => None,
                };
                ("200 OK", render(&metrics, stats.as_ref()))
            } else {
                ("404 Not Found", "try /metrics\n".to_string())
            };
            let mut w = &conn;
            let _ = write!(
                w,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(bound)
}

/// One sample: name, labels, value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// A minimal parser of the exposition text (tests): every sample, after
/// checking every sample's family has a TYPE.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut typed = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap_or("").to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (head, value) = line.rsplit_once(' ').ok_or(format!("no value: {line}"))?;
        let value: f64 = value.parse().map_err(|_| format!("bad value: {line}"))?;
        let (name, labels) = match head.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').ok_or(format!("unclosed labels: {line}"))?),
            None => (head, ""),
        };
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            return Err(format!("bad name: {line}"));
        }
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).filter(|f| typed.contains(*f));
        if !typed.contains(name) && family.is_none() {
            return Err(format!("no TYPE for {name}"));
        }
        let mut ls = Vec::new();
        for kv in labels.split("\",").filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once("=\"").ok_or(format!("bad label: {line}"))?;
            ls.push((k.to_string(), v.trim_end_matches('"').to_string()));
        }
        out.push((name.to_string(), ls, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn exposition_parses_and_carries_the_figures() {
        let m = Metrics::new();
        m.resyncs.fetch_add(2, Ordering::Relaxed);
        m.observe_sync(Duration::from_millis(3));
        m.observe_sync(Duration::from_secs(2));
        let mut s = Stats { node: "n\"1".into(), generation: 7, ..Default::default() };
        s.drops = BTreeMap::from([("policy_denied_ingress".to_string(), 5)]);
        s.ports.push(weir_dataplane::api::PortStats { name: "uplink".into(), rx_packets: 9, ..Default::default() });
        let text = render(&m, Some(&s));
        let samples = parse(&text).unwrap();
        let get = |name: &str, label: Option<(&str, &str)>| {
            samples
                .iter()
                .find(|(n, ls, _)| n == name && label.is_none_or(|(k, v)| ls.iter().any(|(a, b)| a == k && b == v)))
                .map(|(_, _, v)| *v)
        };
        assert_eq!(get("weir_control_resyncs_total", None), Some(2.0));
        assert_eq!(get("weir_control_sync_duration_seconds_bucket", Some(("le", "0.005"))), Some(1.0));
        assert_eq!(get("weir_control_sync_duration_seconds_bucket", Some(("le", "+Inf"))), Some(2.0));
        assert_eq!(get("weir_dataplane_drops_total", Some(("reason", "policy_denied_ingress"))), Some(5.0));
        assert_eq!(get("weir_dataplane_port_receive_packets_total", Some(("port", "uplink"))), Some(9.0));
        assert_eq!(get("weir_dataplane_up", None), Some(1.0));
        assert!(text.contains("node=\"n\\\"1\""), "label escaped");
        // Without a dataplane: up 0, no dataplane series.
        let text = render(&m, None);
        assert_eq!(parse(&text).unwrap().iter().filter(|(n, _, _)| n.starts_with("weir_dataplane_")).count(), 1);
        assert!(parse("weir_x 1").is_err(), "a sample without TYPE");
    }
}
