//! The service table: (address, port, protocol) → the Service port's
//! backends and their Maglev lookup tables. Built whole by the management
//! thread from the Service model and published with the other tables; a
//! worker only reads it, on the first packet of a flow.
//!
//! Every Service port has up to four kinds of frontends: its ClusterIPs,
//! its NodePort on the node IP, its externalIPs and its LoadBalancer IPs.
//! Each port has two candidate sets, each with its own Maglev table: every
//! usable endpoint of the cluster, and this node's usable endpoints (for
//! the Local traffic policies). "Usable" follows KEP-1669: the ready
//! endpoints; when none is ready, the serving endpoints that are
//! terminating. Endpoints that are listed but not usable still keep the
//! flows they have (`is_member`).

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::cidr::Ipv4Cidr;
use super::maglev::{self, Backend, MaglevTable};
use super::{FastMap, FastSet};
use crate::config::{BackendConfig, NodeConfig, TrafficPolicy};

/// Backends per Service port (Maglev indices are u16; the table size list
/// keeps M ≥ 100·N up to 1310 backends).
pub const MAX_BACKENDS: usize = 4096;

/// What a packet is matched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Frontend {
    pub vip: Ipv4Addr,
    pub port: u16,
    pub proto: u8,
}

/// How a packet reached the Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrontendKind {
    ClusterIp,
    NodePort,
    ExternalIp,
    LoadBalancer,
}

impl FrontendKind {
    /// Frontends reached from outside the cluster (externalTrafficPolicy).
    pub fn is_external(self) -> bool {
        !matches!(self, FrontendKind::ClusterIp)
    }

    pub fn name(self) -> &'static str {
        match self {
            FrontendKind::ClusterIp => "ClusterIP",
            FrontendKind::NodePort => "NodePort",
            FrontendKind::ExternalIp => "ExternalIP",
            FrontendKind::LoadBalancer => "LoadBalancer",
        }
    }
}

/// A set of backends new flows may go to, and its Maglev table (whose
/// indices are positions in `backends`).
#[derive(Debug, Clone, Default)]
pub struct Pick {
    pub backends: Vec<Ipv4Addr>,
    pub maglev: MaglevTable,
}

/// What a [`Pick`] is built from: its backends and weights, in order.
type PickKey = Vec<(Ipv4Addr, u32)>;

impl Pick {
    /// The pick for `from`: the one `cache` (the previous table's) has for
    /// the same backends and weights, else a new one — so a change to one
    /// Service of many rebuilds one Maglev table, not all of them.
    fn get(
        name: &str,
        from: &[&BackendConfig],
        cache: Option<&FastMap<PickKey, Arc<Pick>>>,
        out: &mut FastMap<PickKey, Arc<Pick>>,
    ) -> Result<Arc<Pick>, String> {
        let key: PickKey = from.iter().map(|b| (b.ip, b.weight)).collect();
        if let Some(p) = out.get(&key).or_else(|| cache.and_then(|c| c.get(&key))) {
            let p = Arc::clone(p);
            out.insert(key, Arc::clone(&p));
            return Ok(p);
        }
        let keys: Vec<String> = from.iter().map(|b| b.ip.to_string()).collect();
        let backends: Vec<Backend> =
            from.iter().zip(&keys).map(|(b, k)| Backend { key: k.as_bytes(), weight: b.weight }).collect();
        let maglev =
            maglev::build(&backends, maglev::table_size(backends.len())).map_err(|e| format!("service {name}: {e}"))?;
        let p = Arc::new(Pick { backends: from.iter().map(|b| b.ip).collect(), maglev });
        out.insert(key, Arc::clone(&p));
        Ok(p)
    }

    /// The backend for a flow hash (`None`: no backend).
    #[inline]
    pub fn pick(&self, hash: u32) -> Option<(u16, Ipv4Addr)> {
        let i = self.maglev.lookup(hash)?;
        self.backends.get(usize::from(i)).map(|b| (i, *b))
    }

    pub fn position(&self, ip: Ipv4Addr) -> Option<u16> {
        self.backends.iter().position(|b| *b == ip).map(|i| i as u16)
    }
}

/// One port of one Service.
#[derive(Debug, Clone)]
pub struct ServicePort {
    pub name: String,
    pub port: u16,
    pub node_port: Option<u16>,
    pub target_port: u16,
    pub proto: u8,
    /// Every usable endpoint.
    pub cluster: Arc<Pick>,
    /// This node's usable endpoints.
    pub local: Arc<Pick>,
    /// Every listed endpoint, usable or not: flows to them live on.
    pub members: Vec<Ipv4Addr>,
    /// ClientIP session affinity: how long a client keeps its backend, ms.
    pub affinity_ms: Option<u32>,
    pub external_local: bool,
    pub internal_local: bool,
    /// Clients allowed on LoadBalancer frontends (empty: all).
    pub source_ranges: Vec<Ipv4Cidr>,
}

impl ServicePort {
    /// Whether `ip:port` is still one of this port's endpoints.
    pub fn is_member(&self, ip: Ipv4Addr, port: u16) -> bool {
        port == self.target_port && self.members.contains(&ip)
    }

    /// The set new flows from `kind` pick from; `from_outside`: the packet
    /// came in on the uplink.
    pub fn pick_set(&self, kind: FrontendKind, from_outside: bool) -> &Pick {
        let local = if kind.is_external() && from_outside { self.external_local } else { self.internal_local };
        let local = local && (kind == FrontendKind::ClusterIp || from_outside);
        if local {
            &self.local
        } else {
            &self.cluster
        }
    }

    /// Whether the Local policy restricted this pick (a miss is then a drop,
    /// not a reject).
    pub fn is_local(&self, pick: &Pick) -> bool {
        std::ptr::eq(pick, &*self.local)
    }

    pub fn source_allowed(&self, src: Ipv4Addr) -> bool {
        self.source_ranges.is_empty() || self.source_ranges.iter().any(|c| c.contains(src))
    }
}

/// Ports of this node the SNAT of external clients uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnatPorts {
    pub min: u16,
    pub max: u16,
}

/// The Service table. Cheap to clone (one `Arc`): the management thread
/// keeps the last one built and every publication of other tables shares it.
#[derive(Debug, Clone, Default)]
pub struct ServiceTable {
    inner: Arc<Inner>,
    /// The node IP NodePorts and SNAT use.
    pub node_ip: Option<Ipv4Addr>,
    pub snat_ports: Option<SnatPorts>,
}

#[derive(Debug, Default)]
struct Inner {
    frontends: FastMap<Frontend, (u32, FrontendKind)>,
    ports: Vec<ServicePort>,
    /// Every frontend address and every backend address: a packet that has
    /// neither as its destination or source has no flow to look up.
    vips: FastSet<Ipv4Addr>,
    backend_ips: FastSet<Ipv4Addr>,
    /// The Maglev picks by backends and weights, for the next build.
    picks: FastMap<PickKey, Arc<Pick>>,
}

impl ServiceTable {
    /// Compiles a validated node config's Services (see `config::NodeConfig`).
    pub fn build(cfg: &NodeConfig) -> Result<ServiceTable, String> {
        Self::build_reusing(cfg, None)
    }

    /// `build`, taking the Maglev tables of Services whose backends did not
    /// change from `prev`.
    pub fn build_reusing(cfg: &NodeConfig, prev: Option<&ServiceTable>) -> Result<ServiceTable, String> {
        let node_ip = cfg.node.node_ip;
        let cache = prev.map(|p| &p.inner.picks);
        let mut t = Inner::default();
        let is_local = |b: &BackendConfig| {
            b.local.unwrap_or_else(|| cfg.node.pod_cidr.contains(b.ip) || Some(b.ip) == node_ip)
        };
        for svc in &cfg.services {
            let ready: Vec<&BackendConfig> = svc.backends.iter().filter(|b| b.ready).collect();
            let usable: Vec<&BackendConfig> = if ready.is_empty() {
                svc.backends.iter().filter(|b| b.serving() && b.terminating).collect()
            } else {
                ready
            };
            let local: Vec<&BackendConfig> = usable.iter().copied().filter(|b| is_local(b)).collect();
            let cluster = Pick::get(&svc.name, &usable, cache, &mut t.picks)?;
            let local = Pick::get(&svc.name, &local, cache, &mut t.picks)?;
            t.backend_ips.extend(svc.backends.iter().map(|b| b.ip));
            for p in &svc.ports {
                let id = t.ports.len() as u32;
                let proto = p.protocol.number();
                t.ports.push(ServicePort {
                    name: svc.name.clone(),
                    port: p.port,
                    node_port: p.node_port,
                    target_port: p.target_port.unwrap_or(p.port),
                    proto,
                    cluster: Arc::clone(&cluster),
                    local: Arc::clone(&local),
                    members: svc.backends.iter().map(|b| b.ip).collect(),
                    affinity_ms: svc.affinity_timeout_seconds.map(|s| s.saturating_mul(1000)),
                    external_local: svc.external_traffic_policy == TrafficPolicy::Local,
                    internal_local: svc.internal_traffic_policy == TrafficPolicy::Local,
                    source_ranges: svc.load_balancer_source_ranges.clone(),
                });
                let kinds = [
                    (&svc.cluster_ips, FrontendKind::ClusterIp),
                    (&svc.external_ips, FrontendKind::ExternalIp),
                    (&svc.load_balancer_ips, FrontendKind::LoadBalancer),
                ];
                for (ips, kind) in kinds {
                    for ip in ips {
                        t.frontends.insert(Frontend { vip: *ip, port: p.port, proto }, (id, kind));
                        t.vips.insert(*ip);
                    }
                }
                // NodePorts on the node IP, and on the node's other
                // addresses (only with a node IP: SNAT needs it).
                let node_ips = node_ip.iter().chain(if node_ip.is_some() { &cfg.node_port_ips[..] } else { &[] });
                for ip in node_ips.filter(|_| p.node_port.is_some()) {
                    let np = p.node_port.unwrap_or_default();
                    t.frontends.insert(Frontend { vip: *ip, port: np, proto }, (id, FrontendKind::NodePort));
                    t.vips.insert(*ip);
                }
            }
        }
        Ok(ServiceTable {
            inner: Arc::new(t),
            node_ip,
            snat_ports: Some(SnatPorts { min: cfg.nat.snat_port_min, max: cfg.nat.snat_port_max }),
        })
    }

    /// Whether a packet from `src` to `dst` can belong to a translated flow:
    /// to a Service address (the original direction) or from a backend (the
    /// reply). Everything else skips NAT: two set lookups, no flow probe.
    #[inline]
    pub fn may_translate(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        !self.inner.ports.is_empty() && (self.inner.vips.contains(&dst) || self.inner.backend_ips.contains(&src))
    }

    /// Whether `a` is a frontend address (a ClusterIP, the node IP with
    /// NodePorts, an externalIP or a LoadBalancer IP).
    #[inline]
    pub fn is_frontend_addr(&self, a: Ipv4Addr) -> bool {
        self.inner.vips.contains(&a)
    }

    /// The Service port a packet to (vip, port, proto) belongs to.
    #[inline]
    pub fn lookup(&self, f: &Frontend) -> Option<(u32, FrontendKind, &ServicePort)> {
        let (id, kind) = *self.inner.frontends.get(f)?;
        self.inner.ports.get(id as usize).map(|p| (id, kind, p))
    }

    pub fn get(&self, id: u32) -> Option<&ServicePort> {
        self.inner.ports.get(id as usize)
    }

    pub fn len(&self) -> usize {
        self.inner.ports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.ports.is_empty()
    }

    /// A stable text dump (`weirctl`, golden tests): one line per frontend
    /// with each usable backend's Maglev slot count, and the local set.
    pub fn dump(&self) -> String {
        let mut fronts: Vec<(&Frontend, &(u32, FrontendKind))> = self.inner.frontends.iter().collect();
        fronts.sort_by_key(|(f, _)| (u32::from(f.vip), f.port, f.proto));
        let mut out = String::new();
        for (f, (id, kind)) in fronts {
            let p = &self.inner.ports[*id as usize];
            let show = |pick: &Pick| {
                let counts = pick.maglev.slot_counts(pick.backends.len());
                let bs: Vec<String> =
                    pick.backends.iter().zip(counts).map(|(b, c)| format!("{b}:{}({c})", p.target_port)).collect();
                format!("M={} [{}]", pick.maglev.size(), bs.join(", "))
            };
            out.push_str(&format!("SERVICE {} {}:{}/{} {} {}", p.name, f.vip, f.port, f.proto, kind.name(), show(&p.cluster)));
            if p.local.backends != p.cluster.backends {
                out.push_str(&format!(" local {}", show(&p.local)));
            }
            out.push('\n');
        }
        out
    }
}
