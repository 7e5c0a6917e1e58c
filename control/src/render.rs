//! What weirctl prints: human tables of what the dataplane and
//! weir-control report, and the views they are made from. Each view is a
//! plain struct built from one answer (a dataplane `Stats`, a query
//! reply); `-o json` prints the view, the table is rendered from it, so
//! both always show the same figures.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;
use weir_dataplane::api::{PortStats, Stats, WorkerStats};

use crate::query::{ControlStatus, GroupView, NetworkView, PolicyView};

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

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table whose columns are as wide as their widest cell, two spaces
/// apart; no trailing blanks.
#[derive(Debug, Clone)]
pub struct Table {
    head: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
    /// A line of dashes under each title (netctl's look).
    underline: bool,
    /// Print the titles (a list of name / value lines has none).
    titles: bool,
}

impl Table {
    pub fn new(head: &[(&'static str, Align)]) -> Table {
        Table { head: head.to_vec(), rows: Vec::new(), underline: false, titles: true }
    }

    /// Columns without a title line.
    pub fn untitled(aligns: &[Align]) -> Table {
        Table { head: aligns.iter().map(|a| ("", *a)).collect(), rows: Vec::new(), underline: false, titles: false }
    }

    /// netctl's look: every column left-aligned, dashes under the titles.
    pub fn netctl(titles: &[&'static str]) -> Table {
        Table {
            head: titles.iter().map(|t| (*t, Align::Left)).collect(),
            rows: Vec::new(),
            underline: true,
            titles: true,
        }
    }

    /// Adds a row; missing cells are blank, extra ones are dropped.
    pub fn row(&mut self, mut cells: Vec<String>) {
        cells.resize(self.head.len(), String::new());
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.head.iter().map(|(t, _)| width(t)).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(width(c));
            }
        }
        let mut o = String::new();
        let mut line = |cells: &mut dyn Iterator<Item = (String, Align)>| {
            let mut l = String::new();
            for (i, (c, align)) in cells.enumerate() {
                if i > 0 {
                    l.push_str("  ");
                }
                let pad = " ".repeat(widths[i].saturating_sub(width(&c)));
                match align {
                    Align::Left => {
                        l.push_str(&c);
                        l.push_str(&pad);
                    }
                    Align::Right => {
                        l.push_str(&pad);
                        l.push_str(&c);
                    }
                }
            }
            o.push_str(l.trim_end());
            o.push('\n');
        };
        if self.titles {
            line(&mut self.head.iter().map(|(t, a)| (t.to_string(), *a)));
        }
        if self.titles && self.underline {
            line(&mut self.head.iter().map(|(t, a)| ("-".repeat(width(t)), *a)));
        }
        for r in &self.rows {
            line(&mut r.iter().zip(&self.head).map(|(c, (_, a))| (c.clone(), *a)));
        }
        o
    }
}

// ------------------------------------------------------------ dataplane views

/// `weirctl ports`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortsView {
    pub node: String,
    pub ports: Vec<PortStats>,
}

pub fn ports_view(s: &Stats) -> PortsView {
    PortsView { node: s.node.clone(), ports: s.ports.clone() }
}

/// Ports with their link and counters: weir's workers' (RX/TX) and the
/// driver's (missed, errors, no mbuf).
pub fn ports(v: &PortsView) -> String {
    use Align::{Left as L, Right as R};
    let mut t = Table::new(&[
        ("PORT", L),
        ("ID", R),
        ("KIND", L),
        ("DRIVER", L),
        ("MAC", L),
        ("LINK", L),
        ("RX PKTS", R),
        ("RX BYTES", R),
        ("TX PKTS", R),
        ("TX BYTES", R),
        ("MISSED", R),
        ("RX ERRORS", R),
        ("TX ERRORS", R),
        ("NO MBUF", R),
    ]);
    for p in &v.ports {
        t.row(vec![
            p.name.clone(),
            p.id.to_string(),
            p.kind.clone(),
            p.driver.clone(),
            p.mac.clone(),
            if p.link_up { "up" } else { "down" }.to_string(),
            p.rx_packets.to_string(),
            p.rx_bytes.to_string(),
            p.tx_packets.to_string(),
            p.tx_bytes.to_string(),
            p.nic_rx_missed.to_string(),
            p.nic_rx_errors.to_string(),
            p.nic_tx_errors.to_string(),
            p.nic_rx_nombuf.to_string(),
        ]);
    }
    if v.ports.is_empty() {
        return format!("node {}: no ports\n", v.node);
    }
    t.render()
}

/// `weirctl drops`: packets dropped by reason, summed over workers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DropsView {
    pub node: String,
    /// Every drop, whichever reasons are shown.
    pub total: u64,
    /// Every reason (`--all`), or only those with drops.
    pub all: bool,
    pub drops: BTreeMap<String, u64>,
}

pub fn drops_view(s: &Stats, all: bool) -> DropsView {
    let drops = s.drops.iter().filter(|(_, n)| all || **n > 0).map(|(r, n)| (r.clone(), *n)).collect();
    DropsView { node: s.node.clone(), total: s.total_drops(), all, drops }
}

/// The reasons, most drops first, and the total.
pub fn drops(v: &DropsView) -> String {
    if v.drops.is_empty() {
        return format!("node {}: no drops\n", v.node);
    }
    let mut rows: Vec<(&String, &u64)> = v.drops.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut t = Table::new(&[("DROP REASON", Align::Left), ("PACKETS", Align::Right)]);
    for (r, n) in rows {
        t.row(vec![r.clone(), n.to_string()]);
    }
    t.row(vec!["total".into(), v.total.to_string()]);
    t.render()
}

/// `weirctl workers`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkersView {
    pub node: String,
    /// The generation of the published tables.
    pub generation: u64,
    pub workers: Vec<WorkerStats>,
}

pub fn workers_view(s: &Stats) -> WorkersView {
    WorkersView { node: s.node.clone(), generation: s.generation, workers: s.workers.clone() }
}

/// Busy polls as a share of polls, in percent with one decimal.
fn busy_percent(w: &WorkerStats) -> String {
    if w.polls == 0 {
        return "-".into();
    }
    format!("{:.1}", w.busy_polls as f64 * 100.0 / w.polls as f64)
}

/// Per worker: its core, the tables generation it runs, polls (busy ones
/// found packets), idle sleeps and its rx queues.
pub fn workers(v: &WorkersView) -> String {
    use Align::{Left as L, Right as R};
    let mut t = Table::new(&[
        ("WORKER", L),
        ("CORE", R),
        ("GENERATION", R),
        ("POLLS", R),
        ("BUSY POLLS", R),
        ("BUSY %", R),
        ("IDLE SLEEPS", R),
        ("RX QUEUES (port:queue)", L),
    ]);
    for w in &v.workers {
        let q: Vec<String> = w.rx_queues.iter().map(|(p, q)| format!("{p}:{q}")).collect();
        t.row(vec![
            w.id.to_string(),
            w.core.to_string(),
            w.generation.to_string(),
            w.polls.to_string(),
            w.busy_polls.to_string(),
            busy_percent(w),
            w.idle_sleeps.to_string(),
            q.join(" "),
        ]);
    }
    t.render()
}

/// `weirctl generation`: the tables the workers run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenerationView {
    pub node: String,
    /// The generation of the published tables.
    pub generation: u64,
    /// The weir-control generation they were built from (none: not synced).
    pub control_generation: Option<u64>,
    pub workers: Vec<WorkerGeneration>,
    /// Every worker runs `generation`.
    pub current: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerGeneration {
    pub id: usize,
    pub core: usize,
    pub generation: u64,
}

pub fn generation_view(s: &Stats) -> GenerationView {
    let workers: Vec<WorkerGeneration> =
        s.workers.iter().map(|w| WorkerGeneration { id: w.id, core: w.core, generation: w.generation }).collect();
    let current = workers.iter().all(|w| w.generation == s.generation);
    GenerationView {
        node: s.node.clone(),
        generation: s.generation,
        control_generation: s.control_generation,
        workers,
        current,
    }
}

pub fn generation(v: &GenerationView) -> String {
    let mut o = String::new();
    let from =
        v.control_generation.map_or("not synced by weir-control".to_string(), |g| format!("control generation {g}"));
    let _ = writeln!(o, "node {}: tables generation {} ({from})", v.node, v.generation);
    let mut t = Table::new(&[("WORKER", Align::Left), ("CORE", Align::Right), ("GENERATION", Align::Right)]);
    for w in &v.workers {
        t.row(vec![w.id.to_string(), w.core.to_string(), w.generation.to_string()]);
    }
    o.push_str(&t.render());
    if v.current {
        let _ = writeln!(o, "every worker runs generation {}", v.generation);
    } else {
        let behind: Vec<String> = v
            .workers
            .iter()
            .filter(|w| w.generation != v.generation)
            .map(|w| format!("worker {} runs {}", w.id, w.generation))
            .collect();
        let _ = writeln!(o, "not every worker runs generation {} yet: {}", v.generation, behind.join(", "));
    }
    o
}

/// A dataplane table weirctl only has as text (`services`, `rules`,
/// `flows`); `-o json` prints it as `{"text": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TextView {
    pub text: String,
}

// ---------------------------------------------------------- weir-control views

/// `weirctl net list`: netctl's `net ls` columns.
pub fn networks(nets: &[NetworkView]) -> String {
    let mut t = Table::netctl(&["Tenant", "Network", "Nw-Type", "Encap type", "Packet tag", "Subnet", "Gateway"]);
    for n in nets {
        t.row(vec![
            n.tenant.clone(),
            n.name.clone(),
            n.nw_type.clone(),
            n.encap.clone(),
            n.vni.to_string(),
            n.subnet.clone(),
            n.gateway.clone(),
        ]);
    }
    t.render()
}

/// `weirctl group list`: netctl's `group ls` columns.
pub fn groups(groups: &[GroupView]) -> String {
    let mut t = Table::netctl(&["Tenant", "Group", "Network", "Policies"]);
    for g in groups {
        t.row(vec![g.tenant.clone(), g.name.clone(), g.network.clone(), g.policies.join(",")]);
    }
    t.render()
}

/// `weirctl rule list`: netctl's `policy rule-ls` columns after the
/// policy's name, each policy's rules in the order weir tries them; an
/// empty cell is "any" (port 0 too, as netctl shows it).
pub fn rules(policies: &[PolicyView]) -> String {
    let mut t = Table::netctl(&[
        "Policy",
        "Rule",
        "Direction",
        "Priority",
        "EndpointGroup",
        "Network",
        "IpAddress",
        "Protocol",
        "Port",
        "Action",
    ]);
    for p in policies {
        for r in &p.rules {
            let direction = match r.direction {
                crate::policy::RuleDirection::In => "in",
                crate::policy::RuleDirection::Out => "out",
            };
            t.row(vec![
                p.name.clone(),
                r.id.to_string(),
                direction.to_string(),
                r.priority.to_string(),
                r.group.clone().unwrap_or_default(),
                r.network.clone().unwrap_or_default(),
                r.ip.clone().unwrap_or_default(),
                r.protocol.clone().unwrap_or_default(),
                r.port.to_string(),
                r.action.to_string(),
            ]);
        }
    }
    t.render()
}

/// `weirctl control-status`.
pub fn control_status(s: &ControlStatus) -> String {
    let mut t = Table::untitled(&[Align::Left, Align::Left]);
    t.row(vec!["source".into(), s.source.clone()]);
    t.row(vec![
        "objects".into(),
        if s.ready {
            let counts: Vec<String> = s.objects.iter().map(|(k, n)| format!("{n} {k}")).collect();
            format!("version {}: {}", s.objects_version, counts.join(", "))
        } else {
            "not ready: not every kind listed yet (nothing is pushed)".into()
        },
    ]);
    if s.ready {
        let contiv = match &s.contiv_error {
            None => "valid".to_string(),
            Some(e) => format!("refused, nothing is pushed: {e}"),
        };
        t.row(vec!["contiv model".into(), contiv]);
    }
    t.row(vec!["node".into(), s.node.clone().unwrap_or_else(|| "unknown (no --node, no dataplane)".into())]);
    let d = &s.dataplane;
    let dp = if d.reachable {
        let synced = d.control_generation.map_or("not synced".to_string(), |g| format!("control generation {g}"));
        format!("{}: node {}, {synced}", d.socket, d.node.as_deref().unwrap_or("?"))
    } else {
        format!("{}: unreachable: {}", d.socket, d.error.as_deref().unwrap_or("no answer"))
    };
    t.row(vec!["dataplane".into(), dp]);
    if let Some(p) = &s.pushes {
        t.row(vec![
            "pushes".into(),
            format!("{} resyncs, {} updates ({} changes), {} errors", p.resyncs, p.updates, p.changes, p.errors),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn bed_stats() -> Stats {
        let mut s = Stats { node: "node1".into(), generation: 7, control_generation: Some(1700), ..Default::default() };
        for (i, (name, up, rx)) in [("client-1", true, 12u64), ("uplink", false, 3)].into_iter().enumerate() {
            s.ports.push(PortStats {
                name: name.into(),
                id: i as u16,
                kind: "af_packet".into(),
                driver: "net_af_packet".into(),
                mac: format!("02:00:00:00:01:0{i}"),
                link_up: up,
                rx_packets: rx,
                rx_bytes: rx * 100,
                tx_packets: 4,
                tx_bytes: 400,
                nic_rx_missed: 1,
                nic_rx_nombuf: 2,
                ..Default::default()
            });
        }
        s.drops.insert("no_route".into(), 5);
        s.drops.insert("policy_denied_ingress".into(), 9);
        s.drops.insert("runt_frame".into(), 0);
        s.workers.push(WorkerStats {
            id: 0,
            core: 1,
            generation: 7,
            polls: 200,
            busy_polls: 50,
            idle_sleeps: 3,
            rx_queues: vec![(0, 0), (1, 0)],
        });
        s.workers.push(WorkerStats { id: 1, core: 2, generation: 6, ..Default::default() });
        s
    }

    #[test]
    fn tables_size_columns_to_their_cells() {
        let mut t = Table::new(&[("NAME", Align::Left), ("N", Align::Right), ("NOTE", Align::Left)]);
        t.row(vec!["a".into(), "1000".into(), "x".into()]);
        t.row(vec!["longer".into(), "2".into()]);
        assert_eq!(t.render(), "NAME       N  NOTE\na       1000  x\nlonger     2\n");
        let mut t = Table::netctl(&["Tenant", "Group"]);
        t.row(vec!["default".into(), "g".into()]);
        assert_eq!(t.render(), "Tenant   Group\n------   -----\ndefault  g\n");
        let mut t = Table::untitled(&[Align::Left, Align::Left]);
        t.row(vec!["k".into(), "v".into()]);
        assert_eq!(t.render(), "k  v\n");
    }

    #[test]
    fn ports_show_link_and_both_kinds_of_counters() {
        let v = ports_view(&bed_stats());
        assert_eq!(
            ports(&v),
            "\
PORT      ID  KIND       DRIVER         MAC                LINK  RX PKTS  RX BYTES  TX PKTS  TX BYTES  MISSED  RX ERRORS  TX ERRORS  NO MBUF
client-1   0  af_packet  net_af_packet  02:00:00:00:01:00  up         12      1200        4       400       1          0          0        2
uplink     1  af_packet  net_af_packet  02:00:00:00:01:01  down        3       300        4       400       1          0          0        2
"
        );
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["ports"][0]["rx_packets"], 12);
        assert_eq!(json["ports"][1]["link_up"], false);
        assert_eq!(ports(&PortsView { node: "n".into(), ports: vec![] }), "node n: no ports\n");
    }

    #[test]
    fn drops_nonzero_by_default_most_first_with_the_total() {
        let s = bed_stats();
        let v = drops_view(&s, false);
        assert_eq!(drops(&v), "DROP REASON            PACKETS\npolicy_denied_ingress        9\nno_route                     5\ntotal                       14\n");
        assert_eq!(v.drops.len(), 2);
        let all = drops_view(&s, true);
        assert!(drops(&all).contains("runt_frame                   0"), "{}", drops(&all));
        let json = serde_json::to_value(&all).unwrap();
        assert_eq!(
            (json["total"].as_u64(), json["drops"]["runt_frame"].as_u64(), json["all"].as_bool()),
            (Some(14), Some(0), Some(true))
        );
        let none = drops_view(&Stats { node: "n".into(), ..Default::default() }, false);
        assert_eq!(drops(&none), "node n: no drops\n");
    }

    #[test]
    fn workers_show_their_busy_share_and_queues() {
        let v = workers_view(&bed_stats());
        assert_eq!(
            workers(&v),
            "\
WORKER  CORE  GENERATION  POLLS  BUSY POLLS  BUSY %  IDLE SLEEPS  RX QUEUES (port:queue)
0          1           7    200          50    25.0            3  0:0 1:0
1          2           6      0           0       -            0
"
        );
        assert_eq!(serde_json::to_value(&v).unwrap()["workers"][0]["busy_polls"], 50);
    }

    #[test]
    fn generation_says_which_workers_are_behind() {
        let mut s = bed_stats();
        let v = generation_view(&s);
        assert!(!v.current);
        assert_eq!(
            generation(&v),
            "node node1: tables generation 7 (control generation 1700)\nWORKER  CORE  GENERATION\n0          1           7\n1          2           6\nnot every worker runs generation 7 yet: worker 1 runs 6\n"
        );
        s.workers[1].generation = 7;
        s.control_generation = None;
        let v = generation_view(&s);
        let t = generation(&v);
        assert!(
            v.current && t.ends_with("every worker runs generation 7\n") && t.contains("not synced by weir-control"),
            "{t}"
        );
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!((json["generation"].as_u64(), json["workers"][1]["generation"].as_u64()), (Some(7), Some(7)));
        assert!(json["control_generation"].is_null());
    }

    fn demo_objects() -> crate::model::ClusterObjects {
        let extra = "---\napiVersion: weir.dev/v1alpha1\nkind: Policy\nmetadata: {name: webPol}\nspec:\n  rules:\n  \
                     - {id: 1, direction: in, priority: 1, action: deny}\n  \
                     - {id: 2, direction: in, priority: 10, protocol: tcp, port: 8080, fromIp: 10.1.0.0/16, action: allow}\n  \
                     - {id: 3, direction: out, priority: 5, toGroup: poc-epg, action: allow}\n";
        crate::model::ClusterObjects::from_yaml(&format!("{}{extra}", crate::source::DEMO_CLUSTER)).unwrap()
    }

    #[test]
    fn contiv_views_look_like_netctl() {
        let o = demo_objects();
        assert_eq!(
            networks(&crate::query::networks(&o)),
            "\
Tenant   Network  Nw-Type  Encap type  Packet tag  Subnet       Gateway
------   -------  -------  ----------  ----------  ------       -------
default  poc-net  data     vxlan       21          21.1.1.0/24  21.1.1.1
"
        );
        assert_eq!(
            groups(&crate::query::groups(&o)),
            "\
Tenant   Group       Network  Policies
------   -----       -------  --------
default  noping-epg  poc-net  icmpPol
default  poc-epg     poc-net
"
        );
        assert_eq!(
            rules(&crate::query::policies(&o)),
            "\
Policy   Rule  Direction  Priority  EndpointGroup  Network  IpAddress    Protocol  Port  Action
------   ----  ---------  --------  -------------  -------  ---------    --------  ----  ------
icmpPol  1     in         1                                              icmp      0     deny
webPol   2     in         10                                10.1.0.0/16  tcp       8080  allow
webPol   3     out        5         poc-epg                                        0     allow
webPol   1     in         1                                                        0     deny
"
        );
    }

    #[test]
    fn control_status_says_what_is_wrong() {
        use crate::query::{ControlStatus, DataplaneStatus, PushCounts};
        let mut s = ControlStatus {
            source: "cluster file /x.yaml".into(),
            ready: true,
            objects_version: 3,
            objects: [("networks".to_string(), 1), ("pods".to_string(), 6)].into_iter().collect(),
            contiv_error: None,
            node: Some("node1".into()),
            dataplane: DataplaneStatus {
                socket: "/run/weir/dataplane.sock".into(),
                reachable: true,
                node: Some("node1".into()),
                instance: Some(9),
                control_generation: Some(1700),
                error: None,
            },
            pushes: Some(PushCounts { resyncs: 1, updates: 2, changes: 5, errors: 0 }),
        };
        assert_eq!(
            control_status(&s),
            "\
source        cluster file /x.yaml
objects       version 3: 1 networks, 6 pods
contiv model  valid
node          node1
dataplane     /run/weir/dataplane.sock: node node1, control generation 1700
pushes        1 resyncs, 2 updates (5 changes), 0 errors
"
        );
        s.ready = false;
        s.dataplane.reachable = false;
        s.dataplane.error = Some("cannot connect to /run/weir/dataplane.sock: No such file".into());
        let t = control_status(&s);
        assert!(t.contains("objects    not ready") && !t.contains("contiv model"), "{t}");
        assert!(t.contains("unreachable: cannot connect"), "{t}");
    }
}
