//! The management side of a running node: owns the EAL, the mbuf pool, the
//! live ports and the table snapshot; applies changes (port add/remove) by
//! building new tables and publishing them; answers management requests.
//! Runs on the EAL main thread, never on a worker. It also runs the underlay
//! neighbour state machine: workers report ARP they see and next hops they
//! miss through a lock-free queue; this thread writes ARP requests (and
//! gratuitous ARPs) into the [outbox](Node::outbox), which worker 0 sends on
//! its own tx queue, and publishes what gets resolved.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::queue::ArrayQueue;

use crate::api::{
    Change, ClusterTables, NeighbourStats, OverlayStats, PortStats, Reply, Request, Stats, WorkerStats,
    PROTOCOL_VERSION,
};
use crate::config::{validate_port, ForwardMode, NodeConfig, PortConfig, PortKind};
use crate::dpdk::{port, shm, Eal, Mbuf, Mempool};
use crate::flow::FlowTable;
use crate::flowstate::FlowFile;
use crate::inspect::flowlog::Now;
use crate::inspect::{Clock, FlowLogs, Sessions, Tap};
use crate::neighbour::{Effects, NeighEvent, Neighbours, Timers};
use crate::pipeline::{host, overlay, Consumed, DropReason, PacketBuf, ReplyKind};
use crate::snapshot::Snapshot;
use crate::stats::SharedCounters;
use crate::tables::acl::AclTable;
use crate::tables::cidr::Ipv4Cidr;
use crate::tables::service::ServiceTable;
use crate::tables::{Hop, Overlay, PortEntry, PortId, RxQueue, Tables, DEFAULT_NETWORK};

/// Events workers may queue between two management ticks.
pub const EVENT_QUEUE: usize = 1024;
/// Frames the management thread may have waiting for worker 0 (a tick sends
/// a few ARP frames, not a ring's worth).
pub const OUTBOX_CAPACITY: usize = 256;

/// Frames the management thread sends (ARP requests, gratuitous ARPs), each
/// with its port. Worker 0 sends them on its own tx queue, so no port needs a
/// tx queue for this thread, and a peer that serves only its first queue pair
/// (a single-queue virtio-user or vhost-user peer, a virtio NIC with one
/// queue) still gets them.
pub type Outbox = ArrayQueue<(PortId, Mbuf)>;

/// How long a change waits for every worker to pass a quiescent state.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);
/// Gratuitous ARPs for a LoadBalancer IP taken over: one at once, then
/// `GARP_REPEATS` more this far apart.
const GARP_REPEAT: Duration = Duration::from_secs(1);
const GARP_REPEATS: u8 = 2;

struct LivePort {
    cfg: PortConfig,
    id: PortId,
    driver: String,
    mac: String,
    rss: bool,
    /// Which worker polls each rx queue; fixed for the port's life so a queue
    /// is never polled by two workers during a change.
    rx_owner: Vec<usize>,
}

pub struct Node<'e> {
    cfg: NodeConfig,
    _eal: &'e Eal,
    pool: Mempool,
    snapshot: Arc<Snapshot<Tables>>,
    counters: Vec<SharedCounters>,
    ports: Vec<LivePort>,
    generation: u64,
    neighbours: Neighbours,
    events: Arc<ArrayQueue<NeighEvent>>,
    /// What this thread sends, for worker 0 to put on the wire.
    outbox: Arc<Outbox>,
    /// A gratuitous ARP announced the node on the current uplink.
    announced: Option<PortId>,
    /// The LoadBalancer IPs announced on that uplink, and the gratuitous
    /// ARPs still to repeat for those newly taken over (when, IP, repeats
    /// left).
    announced_vips: BTreeSet<Ipv4Addr>,
    garp_due: Vec<(Instant, Ipv4Addr, u8)>,
    /// Service NAT's flows, shared by every worker.
    flows: Arc<FlowTable>,
    /// The file the flows live in, when they outlive the process.
    flow_file: Option<FlowFile>,
    /// The workers' clock: TSC ticks per millisecond (a kept flow table's own).
    tsc_per_ms: u64,
    /// Different for every start (see `Reply::Hello::instance`).
    instance: u64,
    /// The control generation the cluster tables came from.
    control_generation: Option<u64>,
    /// The Service and ACL tables of the current config, built when it
    /// changes (not at every publication: neighbour changes publish too).
    services: ServiceTable,
    acl: Arc<AclTable>,
    /// weirctl trace and capture sessions, and the tap workers check.
    inspect: Sessions,
    /// The flow log (weir-control's `--flow-log`), on the same tap.
    flowlog: FlowLogs,
}

impl<'e> Node<'e> {
    pub fn new(cfg: NodeConfig, eal: &'e Eal, counters: Vec<SharedCounters>) -> Result<Self, String> {
        let pool = Mempool::new(eal, "weir_mbufs", cfg.dpdk.mbufs, cfg.dpdk.mbuf_cache).map_err(|e| e.to_string())?;
        let workers = cfg.dpdk.worker_cores.len();
        let snapshot = Snapshot::new(Tables::new(&cfg, workers), workers);
        // Two entries per flow, and the table at most half full: probing stays short.
        let slots = cfg.dpdk.max_flows as usize * 4;
        let tap = Arc::new(Tap::default());
        let tsc_per_ms = (crate::dpdk::tsc_hz() / 1000).max(1);
        let (flows, flow_file, tsc_per_ms, generation) = match flow_state_path(&cfg) {
            Ok(Some(path)) => match FlowFile::open(&path, slots, tsc_per_ms) {
                Ok(o) => {
                    match &o.new_because {
                        None => {
                            let live = o.table.live_entries(crate::dpdk::tsc() / o.tsc_per_ms);
                            println!(
                                "weir-dataplane: flows kept in {}: {live} live entries, {} half-written slots emptied",
                                path.display(),
                                o.repaired
                            );
                        }
                        Some(why) => println!("weir-dataplane: flows kept in {} (a new table: {why})", path.display()),
                    }
                    (o.table, Some(o.file), o.tsc_per_ms, o.generation)
                }
                Err(e) => {
                    eprintln!("weir-dataplane: {e}; the flows live in this process only");
                    (FlowTable::new(slots), None, tsc_per_ms, 0)
                }
            },
            Ok(None) => (FlowTable::new(slots), None, tsc_per_ms, 0),
            Err(why) => {
                println!("weir-dataplane: the flows live in this process only: {why}");
                (FlowTable::new(slots), None, tsc_per_ms, 0)
            }
        };
        Ok(Node {
            cfg,
            _eal: eal,
            pool,
            snapshot,
            counters,
            ports: Vec::new(),
            generation,
            neighbours: Neighbours::new(Timers::default()),
            events: Arc::new(ArrayQueue::new(EVENT_QUEUE)),
            outbox: Arc::new(ArrayQueue::new(OUTBOX_CAPACITY)),
            announced: None,
            announced_vips: BTreeSet::new(),
            garp_due: Vec::new(),
            flows: Arc::new(flows),
            flow_file,
            tsc_per_ms,
            instance: instance_id(),
            control_generation: None,
            services: ServiceTable::default(),
            acl: Arc::default(),
            inspect: Sessions::new(Arc::clone(&tap)),
            flowlog: FlowLogs::new(tap),
        })
    }

    /// The flow table workers share.
    pub fn flows(&self) -> Arc<FlowTable> {
        Arc::clone(&self.flows)
    }

    /// Where workers report neighbour events.
    pub fn events(&self) -> Arc<ArrayQueue<NeighEvent>> {
        Arc::clone(&self.events)
    }

    /// The workers' clock: TSC ticks per millisecond.
    pub fn tsc_per_ms(&self) -> u64 {
        self.tsc_per_ms
    }

    /// What this thread sends; worker 0 drains it every loop.
    pub fn outbox(&self) -> Arc<Outbox> {
        Arc::clone(&self.outbox)
    }

    /// What workers check for weirctl trace and capture.
    pub fn tap(&self) -> Arc<Tap> {
        self.inspect.tap()
    }

    pub fn snapshot(&self) -> &Arc<Snapshot<Tables>> {
        &self.snapshot
    }

    /// Brings up every port of the config, then publishes the first tables.
    pub fn start_ports(&mut self) -> Result<(), String> {
        for p in self.cfg.ports.clone() {
            self.attach(p)?;
        }
        // Validated with the config: only an internal error can fail here.
        match ServiceTable::build(&self.cfg) {
            Ok(s) => self.services = s,
            Err(e) => eprintln!("weir-dataplane: services not published: {e}"),
        }
        match AclTable::build(&self.cfg.acl, &node_addrs(&self.cfg)) {
            Ok(a) => self.acl = Arc::new(a),
            Err(e) => eprintln!("weir-dataplane: ACLs not published: {e}"),
        }
        self.publish();
        Ok(())
    }

    fn workers(&self) -> usize {
        self.cfg.dpdk.worker_cores.len()
    }

    fn attach(&mut self, p: PortConfig) -> Result<(), String> {
        let workers = self.workers() as u16;
        let devargs = p.devargs(workers);
        let name = p.dev_name(workers);
        let id = match port::port_by_name(&name) {
            Some(id) => id, // probed at EAL init (PCI allowlist)
            None => port::attach(&devargs, &name).map_err(|e| format!("port {}: {e}", p.name))?,
        };
        let info = port::info(id).map_err(|e| format!("port {}: {e}", p.name))?;
        // One tx queue per worker (the management thread's frames go out
        // through worker 0's). tap and af_packet come in queue pairs
        // (af_packet spreads received packets over all of its sockets): as
        // many rx as tx queues, and every rx queue is polled, so none fills
        // up unseen.
        let (rx_queues, tx_queues) = if matches!(p.kind, PortKind::Tap | PortKind::AfPacket) {
            let n = p.rx_queues.max(workers);
            (n, n)
        } else {
            (p.rx_queues, workers)
        };
        let q = port::QueueConfig {
            rx_queues,
            tx_queues,
            rx_descriptors: self.cfg.dpdk.rx_descriptors,
            tx_descriptors: self.cfg.dpdk.tx_descriptors,
        };
        let rss = match port::setup(id, q, &self.pool) {
            Ok(rss) => rss,
            Err(e) => {
                let _ = port::remove(id);
                return Err(format!("port {}: {e}", p.name));
            }
        };
        let mac = port::mac_addr(id).map(|m| m.to_string()).unwrap_or_default();
        // Give each rx queue to the worker that polls the fewest so far.
        let mut load = vec![0usize; self.workers()];
        for lp in &self.ports {
            for w in &lp.rx_owner {
                load[*w] += 1;
            }
        }
        let mut rx_owner = Vec::new();
        for _ in 0..rx_queues {
            let w = (0..load.len()).min_by_key(|w| load[*w]).unwrap_or(0);
            load[w] += 1;
            rx_owner.push(w);
        }
        self.ports.push(LivePort { cfg: p, id, driver: info.driver, mac, rss, rx_owner });
        Ok(())
    }

    /// Builds tables from the live ports, the config's networks and routes
    /// and the resolved neighbours, publishes them and waits until every
    /// worker runs them. Returns the new generation.
    fn publish(&mut self) -> u64 {
        self.generation += 1;
        if let Some(f) = &self.flow_file {
            // The next process counts on from here (see `flowstate`).
            if let Err(e) = f.set_generation(self.generation) {
                eprintln!("weir-dataplane: flow state {}: {e}", f.path().display());
            }
        }
        let mut t = Tables::new(&self.cfg, self.workers());
        t.generation = self.generation;
        t.services = self.services.clone();
        t.acl = Arc::clone(&self.acl);
        for lp in &self.ports {
            let entry = match &lp.cfg.pod {
                Some(pod) => {
                    let net = pod.network.as_deref().and_then(|n| t.network_by_name(n)).unwrap_or(DEFAULT_NETWORK);
                    PortEntry::pod(&lp.cfg.name, pod.ip, pod.mac, net)
                }
                None => PortEntry { uplink: lp.cfg.uplink, host: lp.cfg.host, ..PortEntry::plain(&lp.cfg.name) },
            };
            t.add_port(lp.id, entry, 0);
            for (q, w) in lp.rx_owner.iter().enumerate() {
                t.rx_plan[*w].push(RxQueue { port: lp.id, queue: q as u16 });
            }
        }
        for r in &self.cfg.routes {
            let net = r.network.as_deref().and_then(|n| t.network_by_name(n)).unwrap_or(DEFAULT_NETWORK);
            if let Some(lp) = self.ports.iter().find(|lp| lp.cfg.name == r.port) {
                t.networks[usize::from(net)].routes.insert(r.prefix, Hop::Local { port: lp.id, mac: r.next_hop_mac });
            }
        }
        t.overlay = self.overlay();
        if let Some(o) = &t.overlay {
            if o.host.is_some() {
                // Pods of every network reach the node IP (kubelet probes and
                // their answers) through the host port.
                for net in &mut t.networks {
                    net.routes.insert(Ipv4Cidr::host(o.node_ip), Hop::Host);
                }
            }
            for r in &self.cfg.remote_nodes {
                let hop = Hop::Remote { vtep: r.node_ip, vtep_mac: r.vtep_mac, net: DEFAULT_NETWORK };
                t.add_remote_route(DEFAULT_NETWORK, r.pod_cidr, hop);
                t.node_hops.insert(r.node_ip, hop);
            }
            for r in &self.cfg.remote_routes {
                let (Some(net), Some(node)) =
                    (t.network_by_name(&r.network), self.cfg.remote_nodes.iter().find(|n| n.name == r.node))
                else {
                    continue; // validated with the config
                };
                let hop = Hop::Remote { vtep: node.node_ip, vtep_mac: node.vtep_mac, net };
                t.add_remote_route(net, r.prefix, hop);
            }
            t.neighbours = self.neighbours.resolved().collect();
        }
        if self.cfg.dpdk.forward_mode == ForwardMode::Io {
            for pair in self.ports.chunks(2) {
                if let [a, b] = pair {
                    t.io_peer[usize::from(a.id)] = Some(b.id);
                    t.io_peer[usize::from(b.id)] = Some(a.id);
                }
            }
        }
        // The old tables are held until every worker has moved on, so the
        // last reference to them is this thread's and they are freed here,
        // not on a worker between two bursts.
        let old = self.snapshot.publish(t);
        wait_for_workers(&self.snapshot);
        if self.flowlog.active() {
            // Every record of the old tables is in the queue now: their
            // names (Services, rules) are resolved with the tables they
            // were written under.
            let new = self.snapshot.get();
            self.flowlog.drain(&[&old, &new], &Self::clock());
        }
        drop(old);
        self.announce();
        self.generation
    }

    /// The overlay, when a live port is the uplink.
    fn overlay(&self) -> Option<Overlay> {
        let up = self.ports.iter().find(|lp| lp.cfg.uplink)?;
        let n = &self.cfg.node;
        Some(Overlay {
            node_ip: n.node_ip?,
            uplink: up.id,
            uplink_mac: port::mac_addr(up.id).ok()?,
            mtu: port::mtu(up.id).unwrap_or(1500),
            vxlan_port: self.cfg.overlay.vxlan_port,
            underlay: n.underlay_cidr?,
            gateway: n.underlay_gateway,
            host: self.ports.iter().find(|lp| lp.cfg.host).map(|lp| lp.id),
            // Only addresses on the underlay's subnet are announced: others
            // must be routed to the nodes (BGP, static routes).
            announced: {
                let underlay = n.underlay_cidr?;
                let mut v: Vec<Ipv4Addr> =
                    self.cfg.announce_ips.iter().copied().filter(|ip| underlay.contains(*ip)).collect();
                v.sort_unstable();
                v.dedup();
                v
            },
        })
    }

    /// A gratuitous ARP for the node IP when an uplink (re)appears, and for
    /// each LoadBalancer IP the node takes over: at once and twice more a
    /// second apart (`tick`), so that a neighbour that missed one still
    /// moves the address to this node's MAC.
    fn announce(&mut self) {
        let o = self.snapshot.get().overlay.clone();
        let Some(o) = o else {
            self.announced = None;
            self.announced_vips.clear();
            self.garp_due.clear();
            return;
        };
        if self.announced != Some(o.uplink) {
            self.send(o.uplink, &overlay::arp_request(&o, o.node_ip));
            self.announced = Some(o.uplink);
            self.announced_vips.clear();
        }
        let now = Instant::now();
        self.announced_vips.retain(|ip| o.announces(*ip));
        self.garp_due.retain(|(_, ip, _)| o.announces(*ip));
        for &vip in &o.announced {
            if self.announced_vips.insert(vip) {
                self.send(o.uplink, &overlay::arp_request_from(o.uplink_mac, vip, vip));
                self.garp_due.push((now + GARP_REPEAT, vip, GARP_REPEATS));
                println!("weir-dataplane: announcing {vip} on the uplink");
            }
        }
    }

    /// Repeats the gratuitous ARPs of newly announced LoadBalancer IPs.
    fn repeat_garps(&mut self, now: Instant) {
        if self.garp_due.iter().all(|(due, _, _)| *due > now) {
            return;
        }
        let Some(o) = self.snapshot.get().overlay.clone() else { return };
        let mut due = std::mem::take(&mut self.garp_due);
        for (when, vip, left) in &mut due {
            if *when <= now {
                self.send(o.uplink, &overlay::arp_request_from(o.uplink_mac, *vip, *vip));
                *left -= 1;
                *when = now + GARP_REPEAT;
            }
        }
        due.retain(|(_, _, left)| *left > 0);
        self.garp_due = due;
    }

    /// Hands one frame to worker 0 to send out of `port` (its next loop, or
    /// when it wakes from its idle back-off). False when no mbuf is free or
    /// the outbox is full: the frame is lost, as a full tx ring would lose
    /// it, and the neighbour machine's retries cover ARP.
    fn send(&mut self, port: PortId, frame: &[u8]) -> bool {
        let Some(mut m) = self.pool.alloc() else { return false };
        if m.set_len(frame.len()).is_err() {
            return false;
        }
        m.data_mut().copy_from_slice(frame);
        self.outbox.push((port, m)).is_ok()
    }

    /// Runs the neighbour machinery: what workers reported, the timers, the
    /// requests to send; publishes when the resolved set changed. Called by
    /// the management loop every few milliseconds.
    pub fn tick(&mut self) {
        let now = Instant::now();
        self.repeat_garps(now);
        let mut fx = Effects::default();
        let underlay = self.cfg.node.underlay_cidr;
        while let Some(ev) = self.events.pop() {
            let (NeighEvent::Learned(ip, _) | NeighEvent::Miss(ip)) = ev;
            if !underlay.is_some_and(|u| u.contains(ip)) {
                continue;
            }
            self.neighbours.on_event(ev, now, &mut fx);
        }
        self.neighbours.tick(now, &mut fx);
        if !fx.ask.is_empty() {
            let t = self.snapshot.get();
            if let Some(o) = &t.overlay {
                for ip in fx.ask {
                    // The node IP is the kernel's, behind the host port.
                    match o.host {
                        Some(host) if ip == o.node_ip => self.send(host, &host::host_arp_request(&t, o)),
                        _ => self.send(o.uplink, &overlay::arp_request(o, ip)),
                    };
                }
            }
        }
        if fx.changed {
            self.publish();
        }
        if self.inspect.active() {
            self.tick_inspect();
        }
        if self.flowlog.active() {
            self.tick_flowlog();
        }
    }

    pub fn add_port(&mut self, p: PortConfig) -> Result<u64, String> {
        validate_port(&p, "port").map_err(|e| e.to_string())?;
        if self.ports.iter().any(|lp| lp.cfg.name == p.name) {
            return Err(format!("port.name = {:?}: a port with this name exists", p.name));
        }
        // The node with this port added must still be a valid config (pod
        // addresses and networks, one uplink, queues and mbufs).
        let mut with = self.cfg.clone();
        with.ports = self.ports.iter().map(|lp| lp.cfg.clone()).chain([p.clone()]).collect();
        with.validate().map_err(|e| format!("port {:?} refused: {e}", p.name))?;
        self.attach(p)?;
        Ok(self.publish())
    }

    /// Replaces the Services; refused whole (nothing changes) if any is bad.
    pub fn set_services(&mut self, services: Vec<crate::config::ServiceConfig>) -> Result<u64, String> {
        let tables = ClusterTables { services, ..self.cluster_tables() };
        self.apply_cluster(tables).map_err(|e| format!("services refused: {e}"))
    }

    /// The cluster part of the running config.
    pub fn cluster_tables(&self) -> ClusterTables {
        ClusterTables {
            services: self.cfg.services.clone(),
            networks: self.cfg.networks.clone(),
            remote_nodes: self.cfg.remote_nodes.clone(),
            remote_routes: self.cfg.remote_routes.clone(),
            acl: self.cfg.acl.clone(),
            node_port_ips: self.cfg.node_port_ips.clone(),
            announce_ips: self.cfg.announce_ips.clone(),
        }
    }

    /// Replaces the cluster tables after checking that the node with them
    /// is a valid config whose tables build; refused whole otherwise, with
    /// the offending object named.
    pub fn apply_cluster(&mut self, t: ClusterTables) -> Result<u64, String> {
        // The config with `t` in place of its cluster tables (not cloned:
        // at 10 000 Services they are most of it).
        let cluster = (
            std::mem::take(&mut self.cfg.services),
            std::mem::take(&mut self.cfg.networks),
            std::mem::take(&mut self.cfg.remote_nodes),
            std::mem::take(&mut self.cfg.remote_routes),
            std::mem::take(&mut self.cfg.acl),
            std::mem::take(&mut self.cfg.node_port_ips),
            std::mem::take(&mut self.cfg.announce_ips),
        );
        let mut with = self.cfg.clone();
        (
            self.cfg.services,
            self.cfg.networks,
            self.cfg.remote_nodes,
            self.cfg.remote_routes,
            self.cfg.acl,
            self.cfg.node_port_ips,
            self.cfg.announce_ips,
        ) = cluster;
        with.ports = self.ports.iter().map(|lp| lp.cfg.clone()).collect();
        with.services = t.services;
        with.networks = t.networks;
        with.remote_nodes = t.remote_nodes;
        with.remote_routes = t.remote_routes;
        with.acl = t.acl;
        with.node_port_ips = t.node_port_ips;
        with.announce_ips = t.announce_ips;
        with.validate().map_err(|e| crate::config::name_object(&e.to_string(), &with))?;
        let services = ServiceTable::build_reusing(&with, Some(&self.services))?;
        let mut acl = AclTable::build(&with.acl, &node_addrs(&with))?;
        acl.carry_counters_from(&self.acl);
        self.services = services;
        self.acl = Arc::new(acl);
        with.ports = std::mem::take(&mut self.cfg.ports);
        self.cfg = with;
        Ok(self.publish())
    }

    /// `Resync` and `Update` from weir-control.
    fn sync(&mut self, generation: u64, t: Result<ClusterTables, String>) -> Reply {
        match t.and_then(|t| self.apply_cluster(t)) {
            Ok(tables_generation) => {
                self.control_generation = Some(generation);
                Reply::Synced { generation, tables_generation }
            }
            Err(e) => Reply::Error { message: format!("generation {generation} refused, nothing applied: {e}") },
        }
    }

    fn update(&mut self, generation: u64, changes: &[Change]) -> Reply {
        let t = self.cluster_tables().with(changes);
        self.sync(generation, t)
    }

    pub fn remove_port(&mut self, name: &str) -> Result<u64, String> {
        let i =
            self.ports.iter().position(|lp| lp.cfg.name == name).ok_or_else(|| format!("no port named {name:?}"))?;
        let lp = self.ports.remove(i);
        // Publish tables without it and wait until no worker can touch it.
        let generation = self.publish();
        port::remove(lp.id).map_err(|e| format!("port {name}: {e}"))?;
        for c in &self.counters {
            c.reset_port(usize::from(lp.id));
        }
        Ok(generation)
    }

    pub fn stats(&self) -> Stats {
        let snap = self.snapshot.get();
        let mut s = Stats {
            node: self.cfg.node.name.clone(),
            generation: snap.generation,
            control_generation: self.control_generation,
            ..Default::default()
        };
        for (id, c) in self.counters.iter().enumerate() {
            s.workers.push(WorkerStats {
                id,
                core: self.cfg.dpdk.worker_cores[id],
                generation: c.generation.get(),
                polls: c.polls.get(),
                busy_polls: c.busy_polls.get(),
                idle_sleeps: c.idle_sleeps.get(),
                rx_queues: snap.rx_plan[id].iter().map(|q| (q.port, q.queue)).collect(),
            });
        }
        for r in DropReason::ALL {
            s.drops.insert(r.name().to_string(), self.counters.iter().map(|c| c.drops[*r as usize].get()).sum());
        }
        for k in ReplyKind::ALL {
            s.replies.insert(k.name().to_string(), self.counters.iter().map(|c| c.replies[*k as usize].get()).sum());
        }
        for lp in &self.ports {
            let i = usize::from(lp.id);
            let sum = |f: fn(&crate::stats::PortCounters) -> u64| self.counters.iter().map(|c| f(&c.ports[i])).sum();
            let nic = port::stats(lp.id).unwrap_or_default();
            s.ports.push(PortStats {
                name: lp.cfg.name.clone(),
                id: lp.id,
                kind: lp.cfg.kind.to_string(),
                driver: lp.driver.clone(),
                mac: lp.mac.clone(),
                link_up: port::link(lp.id).0,
                rss: lp.rss,
                rx_queues: lp.rx_owner.len() as u16,
                rx_packets: sum(|p| p.rx_packets.get()),
                rx_bytes: sum(|p| p.rx_bytes.get()),
                tx_packets: sum(|p| p.tx_packets.get()),
                tx_bytes: sum(|p| p.tx_bytes.get()),
                nic_rx_packets: nic.rx_packets,
                nic_tx_packets: nic.tx_packets,
                nic_rx_missed: nic.rx_missed,
                nic_rx_errors: nic.rx_errors,
                nic_tx_errors: nic.tx_errors,
                nic_rx_nombuf: nic.rx_nombuf,
            });
        }
        for k in Consumed::ALL {
            s.consumed.insert(k.name().to_string(), self.counters.iter().map(|c| c.consumed[*k as usize].get()).sum());
        }
        for (ip, mac, state) in self.neighbours.list() {
            s.neighbours.push(NeighbourStats { ip, mac: mac.map(|m| m.to_string()), state });
        }
        if let Some(o) = &snap.overlay {
            let name = |id: PortId| snap.port(id).map(|p| p.name.clone()).unwrap_or_default();
            s.overlay = Some(OverlayStats {
                node_ip: o.node_ip,
                uplink: name(o.uplink),
                mtu: o.mtu,
                pod_mtu: o.mtu.saturating_sub(crate::tables::VXLAN_OVERHEAD as u16),
                vxlan_port: o.vxlan_port,
                host_port: o.host.map(name),
                announced: o.announced.clone(),
            });
        }
        s.mbufs_free = u64::from(self.pool.available());
        s
    }

    /// Answers one request. `Shutdown` is answered here and acted on by the caller.
    pub fn handle(&mut self, req: Request) -> Reply {
        let applied = |r: Result<u64, String>| match r {
            Ok(generation) => Reply::Applied { generation },
            Err(message) => Reply::Error { message },
        };
        match req {
            Request::Hello => self.hello(),
            Request::Handshake { version, client } if version != PROTOCOL_VERSION => Reply::Error {
                message: format!("{client} speaks protocol {version}; this dataplane speaks {PROTOCOL_VERSION}"),
            },
            Request::Handshake { .. } => self.hello(),
            Request::Resync { generation, tables } => self.sync(generation, Ok(tables)),
            Request::Show { what } => match self.show(&what) {
                Ok(text) => Reply::Text { text },
                Err(message) => Reply::Error { message },
            },
            Request::Update { generation, changes } => self.update(generation, &changes),
            Request::Stats => Reply::Stats(self.stats()),
            Request::AddPort { port } => applied(self.add_port(port)),
            Request::RemovePort { name } => applied(self.remove_port(&name)),
            Request::SetServices { services } => applied(self.set_services(services)),
            Request::Shutdown => Reply::Applied { generation: self.generation },
            r @ (Request::Explain { .. }
            | Request::TraceStart { .. }
            | Request::CaptureStart { .. }
            | Request::InspectPoll { .. }
            | Request::InspectStop { .. }) => self.inspect(r),
            r @ (Request::FlowLogStart { .. } | Request::FlowLogPoll { .. } | Request::FlowLogStop { .. }) => {
                self.flow_log(r)
            }
        }
    }

    /// `weirctl services | rules | flows`.
    fn show(&self, what: &str) -> Result<String, String> {
        let t = self.snapshot.get();
        match what {
            "services" => Ok(t.services.dump()),
            "rules" => Ok(t.acl.dump()),
            "flows" => {
                let now = self.now_ms();
                let mut out = String::new();
                // Only allowed flows have entries (a denied first packet
                // makes none), hence the verdict.
                for f in self.flows.live_flows(now) {
                    let (k, e) = (f.key, f.entry);
                    let rewrite = if e.plain {
                        "tracked (policy only)".to_string()
                    } else {
                        let side = if e.rewrite_dst { "dst" } else { "src" };
                        let other = e.other.map(|(a, p)| format!(", other side {a}:{p}")).unwrap_or_default();
                        format!("{side} → {}:{}{other}", e.nat_addr, e.nat_port)
                    };
                    out.push_str(&format!(
                        "{}:{} → {}:{} proto {}: {rewrite}, state {:#x}, timeout {} ms, generation {}, verdict allowed, age {} ms, idle {} ms\n",
                        k.src, k.src_port, k.dst, k.dst_port, k.proto, e.state, e.timeout_ms, e.generation, f.age_ms, f.idle_ms
                    ));
                }
                Ok(out)
            }
            other => Err(format!("show {other:?}: want services, rules or flows")),
        }
    }

    fn hello(&self) -> Reply {
        Reply::Hello {
            version: PROTOCOL_VERSION,
            node: self.cfg.node.name.clone(),
            dpdk: Eal::version(),
            instance: self.instance,
            control_generation: self.control_generation,
        }
    }

    /// Removes every port (workers must have stopped).
    pub fn shutdown(&mut self) {
        for lp in self.ports.drain(..) {
            if let Err(e) = port::remove(lp.id) {
                eprintln!("weir-dataplane: {e}");
            }
        }
    }
}

/// The node's own addresses, from which ACLs always allow traffic to its
/// pods: the gateways of its networks and its node IP.
fn node_addrs(cfg: &NodeConfig) -> Vec<std::net::Ipv4Addr> {
    let mut a: Vec<std::net::Ipv4Addr> =
        std::iter::once(cfg.gateway.ip).chain(cfg.networks.iter().map(|n| n.gateway)).collect();
    a.extend(cfg.node.node_ip);
    a
}

/// Waits until every worker has passed a quiescent state (it runs the
/// tables published last); says so when one did not within `SYNC_TIMEOUT`.
fn wait_for_workers(snapshot: &Snapshot<Tables>) {
    if !snapshot.synchronize(SYNC_TIMEOUT) {
        eprintln!("weir-dataplane: warning: a worker did not pass a quiescent state within {SYNC_TIMEOUT:?}");
    }
}

/// Where the flow table lives (`dpdk.flow_state`): a file, or this
/// process's memory (`Ok(None)` when switched off, `Err` saying why `auto`
/// found no memory file system next to the management socket).
fn flow_state_path(cfg: &NodeConfig) -> Result<Option<PathBuf>, String> {
    match cfg.dpdk.flow_state.as_str() {
        "off" => Ok(None),
        "auto" => {
            let dir = cfg.management.socket.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            if shm::on_memory_fs(dir) {
                Ok(Some(dir.join(format!("flows-{}", cfg.node.name))))
            } else {
                Err(format!(
                    "{} is not a memory file system (tmpfs); set dpdk.flow_state to a path on one",
                    dir.display()
                ))
            }
        }
        path => Ok(Some(PathBuf::from(path))),
    }
}

/// A start-unique number: the clock and the process id.
fn instance_id() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 48)
}

/// weirctl explain, trace and capture (`crate::inspect`).
impl Node<'_> {
    /// The workers' clock, ms (what their `Nat` runs on).
    fn now_ms(&self) -> u64 {
        crate::dpdk::tsc() / self.tsc_per_ms
    }

    fn clock() -> Clock {
        let wall_ns =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Clock { tsc: crate::dpdk::tsc(), tsc_hz: crate::dpdk::tsc_hz(), wall_ns }
    }

    fn inspect(&mut self, req: Request) -> Reply {
        let t = self.snapshot.get();
        let now = Instant::now();
        let clock = Self::clock();
        let snapshot = &self.snapshot;
        let mut sync = || wait_for_workers(snapshot);
        let off = || Reply::Error {
            message: "this weir-dataplane was built without the trace feature: no trace or capture".into(),
        };
        let started = |r: Result<u64, String>| match r {
            Ok(session) => Reply::InspectStarted { session },
            Err(message) => Reply::Error { message },
        };
        match req {
            Request::Explain { packet } => match crate::inspect::explain(&t, &self.flows, self.now_ms(), &packet) {
                Ok(e) => Reply::Explained(e),
                Err(message) => Reply::Error { message: format!("explain: {message}") },
            },
            Request::TraceStart { .. } | Request::CaptureStart { .. } if !crate::inspect::INSPECT => off(),
            Request::TraceStart { filter, count, timeout_ms } => {
                started(self.inspect.start_trace(&t, &filter, count, Duration::from_millis(timeout_ms), now))
            }
            Request::CaptureStart { port, dir, filter, count, duration_ms, snaplen } => {
                let duration = duration_ms.map(Duration::from_millis);
                started(self.inspect.start_capture(&t, &port, dir, &filter, count, duration, snaplen, now))
            }
            Request::InspectPoll { session } => self.inspect.poll(session, &t, &clock, now, &mut sync),
            Request::InspectStop { session } => self.inspect.stop(session, &t, &clock, now, &mut sync),
            other => Reply::Error { message: format!("not an inspect request: {other:?}") },
        }
    }

    /// `flow_log_start`, `flow_log_poll`, `flow_log_stop`.
    fn flow_log(&mut self, req: Request) -> Reply {
        let t = self.snapshot.get();
        let now = Now { clock: Self::clock(), ms: self.now_ms(), at: Instant::now() };
        let snapshot = &self.snapshot;
        let mut sync = || wait_for_workers(snapshot);
        let flows = &self.flows;
        match req {
            Request::FlowLogStart { .. } if !crate::inspect::INSPECT => {
                Reply::Error { message: "this weir-dataplane was built without the trace feature: no flow logs".into() }
            }
            Request::FlowLogStart { rate_per_s, burst } => {
                match self.flowlog.start(rate_per_s, burst, flows.capacity(), now.at) {
                    Ok(session) => Reply::FlowLogStarted { session },
                    Err(message) => Reply::Error { message },
                }
            }
            Request::FlowLogPoll { session } => self.flowlog.poll(session, &t, flows, &now, &mut sync),
            Request::FlowLogStop { session } => self.flowlog.stop(session, &t, flows, &now, &mut sync),
            other => Reply::Error { message: format!("not a flow log request: {other:?}") },
        }
    }

    /// Drains the flow log, sweeps for flows that ended.
    fn tick_flowlog(&mut self) {
        let t = self.snapshot.get();
        let now = Now { clock: Self::clock(), ms: self.now_ms(), at: Instant::now() };
        let snapshot = &self.snapshot;
        let mut sync = || wait_for_workers(snapshot);
        self.flowlog.tick(&t, &self.flows, &now, &mut sync);
    }

    /// Drains what workers traced and captured; ends sessions that are over.
    fn tick_inspect(&mut self) {
        let t = self.snapshot.get();
        let clock = Self::clock();
        let snapshot = &self.snapshot;
        let mut sync = || wait_for_workers(snapshot);
        self.inspect.tick(&t, &clock, Instant::now(), &mut sync);
    }
}
