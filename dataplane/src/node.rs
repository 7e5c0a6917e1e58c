//! The management side of a running node: owns the EAL, the mbuf pool, the
//! live ports and the table snapshot; applies changes (port add/remove) by
//! building new tables and publishing them; answers management requests.
//! Runs on the EAL main thread, never on a worker.

use std::sync::Arc;
use std::time::Duration;

use crate::api::{PortStats, Reply, Request, Stats, WorkerStats, PROTOCOL_VERSION};
use crate::config::{validate_port, ForwardMode, NodeConfig, PortConfig, PortKind, RouteConfig};
use crate::dpdk::{port, Eal, Mempool};
use crate::pipeline::{DropReason, ReplyKind};
use crate::snapshot::Snapshot;
use crate::stats::SharedCounters;
use crate::tables::{PortEntry, PortId, RouteTarget, RxQueue, Tables};

/// How long a change waits for every worker to pass a quiescent state.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

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
    routes: Vec<RouteConfig>,
    generation: u64,
}

impl<'e> Node<'e> {
    pub fn new(
        cfg: NodeConfig,
        eal: &'e Eal,
        counters: Vec<SharedCounters>,
    ) -> Result<Self, String> {
        let pool = Mempool::new(eal, "weir_mbufs", cfg.dpdk.mbufs, cfg.dpdk.mbuf_cache)
            .map_err(|e| e.to_string())?;
        let workers = cfg.dpdk.worker_cores.len();
        let snapshot = Snapshot::new(Tables::new(&cfg, workers), workers);
        let routes = cfg.routes.clone();
        Ok(Node {
            cfg,
            _eal: eal,
            pool,
            snapshot,
            counters,
            ports: Vec::new(),
            routes,
            generation: 0,
        })
    }

    pub fn snapshot(&self) -> &Arc<Snapshot<Tables>> {
        &self.snapshot
    }

    /// Brings up every port of the config, then publishes the first tables.
    pub fn start_ports(&mut self) -> Result<(), String> {
        for p in self.cfg.ports.clone() {
            self.attach(p)?;
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
        // The tap driver wants as many rx as tx queues; every rx queue it
        // gets is polled, so none is left to fill up unseen.
        let (rx_queues, tx_queues) = if p.kind == PortKind::Tap {
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
        let mac = port::mac_addr(id)
            .map(|m| m.to_string())
            .unwrap_or_default();
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
        self.ports.push(LivePort {
            cfg: p,
            id,
            driver: info.driver,
            mac,
            rss,
            rx_owner,
        });
        Ok(())
    }

    /// Builds tables from the live ports and routes, publishes them and waits
    /// until every worker runs them. Returns the new generation.
    fn publish(&mut self) -> u64 {
        self.generation += 1;
        let mut t = Tables::new(&self.cfg, self.workers());
        t.generation = self.generation;
        for lp in &self.ports {
            let pod = lp.cfg.pod.as_ref().map(|p| (p.ip, p.mac));
            t.add_port(
                lp.id,
                PortEntry {
                    name: lp.cfg.name.clone(),
                    pod,
                },
                0,
            );
            for (q, w) in lp.rx_owner.iter().enumerate() {
                t.rx_plan[*w].push(RxQueue {
                    port: lp.id,
                    queue: q as u16,
                });
            }
        }
        for r in &self.routes {
            if let Some(lp) = self.ports.iter().find(|lp| lp.cfg.name == r.port) {
                t.routes.insert(
                    r.prefix,
                    RouteTarget {
                        port: lp.id,
                        next_hop_mac: r.next_hop_mac,
                    },
                );
            }
        }
        if self.cfg.dpdk.forward_mode == ForwardMode::Io {
            for pair in self.ports.chunks(2) {
                if let [a, b] = pair {
                    t.io_peer[usize::from(a.id)] = Some(b.id);
                    t.io_peer[usize::from(b.id)] = Some(a.id);
                }
            }
        }
        self.snapshot.publish(t);
        if !self.snapshot.synchronize(SYNC_TIMEOUT) {
            eprintln!("weir-dataplane: warning: a worker did not pass a quiescent state within {SYNC_TIMEOUT:?}");
        }
        self.generation
    }

    pub fn add_port(&mut self, p: PortConfig) -> Result<u64, String> {
        validate_port(&p, "port").map_err(|e| e.to_string())?;
        if self.ports.iter().any(|lp| lp.cfg.name == p.name) {
            return Err(format!(
                "port.name = {:?}: a port with this name exists",
                p.name
            ));
        }
        if let Some(pod) = &p.pod {
            if !self.cfg.node.pod_cidr.contains(pod.ip) || pod.ip == self.cfg.gateway.ip {
                return Err(format!(
                    "port.pod.ip = {}: not a pod address of {}",
                    pod.ip, self.cfg.node.pod_cidr
                ));
            }
            if self
                .ports
                .iter()
                .any(|lp| lp.cfg.pod.as_ref().is_some_and(|q| q.ip == pod.ip))
            {
                return Err(format!("port.pod.ip = {}: another pod has this IP", pod.ip));
            }
        }
        self.attach(p)?;
        Ok(self.publish())
    }

    pub fn remove_port(&mut self, name: &str) -> Result<u64, String> {
        let i = self
            .ports
            .iter()
            .position(|lp| lp.cfg.name == name)
            .ok_or_else(|| format!("no port named {name:?}"))?;
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
            s.drops.insert(
                r.name().to_string(),
                self.counters
                    .iter()
                    .map(|c| c.drops[*r as usize].get())
                    .sum(),
            );
        }
        for k in ReplyKind::ALL {
            s.replies.insert(
                k.name().to_string(),
                self.counters
                    .iter()
                    .map(|c| c.replies[*k as usize].get())
                    .sum(),
            );
        }
        for lp in &self.ports {
            let i = usize::from(lp.id);
            let sum = |f: fn(&crate::stats::PortCounters) -> u64| {
                self.counters.iter().map(|c| f(&c.ports[i])).sum()
            };
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
            Request::Hello => Reply::Hello {
                version: PROTOCOL_VERSION,
                node: self.cfg.node.name.clone(),
                dpdk: Eal::version(),
            },
            Request::Stats => Reply::Stats(self.stats()),
            Request::AddPort { port } => applied(self.add_port(port)),
            Request::RemovePort { name } => applied(self.remove_port(&name)),
            Request::Shutdown => Reply::Applied {
                generation: self.generation,
            },
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
