//! The service table: (VIP, port, protocol) → the Service port's backends and
//! their Maglev lookup table. Built whole by the management thread from the
//! Service model and published with the other tables; a worker only reads it,
//! on the first packet of a flow.

use std::net::Ipv4Addr;

use super::maglev::{self, Backend, MaglevTable};
use super::{FastMap, FastSet};
use crate::config::ServiceConfig;

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

/// One port of one Service.
#[derive(Debug, Clone)]
pub struct ServicePort {
    pub name: String,
    pub frontend_port: u16,
    pub target_port: u16,
    pub proto: u8,
    pub backends: Vec<Ipv4Addr>,
    pub maglev: MaglevTable,
    /// ClientIP session affinity: how long a client keeps its backend, ms.
    pub affinity_ms: Option<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct ServiceTable {
    frontends: FastMap<Frontend, u32>,
    ports: Vec<ServicePort>,
    /// Every frontend address and every backend address: a packet that has
    /// neither as its destination or source has no flow to look up.
    vips: FastSet<Ipv4Addr>,
    backend_ips: FastSet<Ipv4Addr>,
}

impl ServiceTable {
    /// Compiles validated Service configs (see `config::NodeConfig`).
    pub fn build(services: &[ServiceConfig]) -> Result<ServiceTable, String> {
        let mut t = ServiceTable::default();
        for svc in services {
            let keys: Vec<String> = svc.backends.iter().map(|b| b.ip.to_string()).collect();
            let backends: Vec<Backend> =
                svc.backends.iter().zip(&keys).map(|(b, k)| Backend { key: k.as_bytes(), weight: b.weight }).collect();
            t.backend_ips.extend(svc.backends.iter().map(|b| b.ip));
            let m = maglev::table_size(backends.len());
            let table = maglev::build(&backends, m).map_err(|e| format!("service {}: {e}", svc.name))?;
            for p in &svc.ports {
                let id = t.ports.len() as u32;
                t.ports.push(ServicePort {
                    name: svc.name.clone(),
                    frontend_port: p.port,
                    target_port: p.target_port.unwrap_or(p.port),
                    proto: p.protocol.number(),
                    backends: svc.backends.iter().map(|b| b.ip).collect(),
                    maglev: table.clone(),
                    affinity_ms: svc.affinity_timeout_seconds.map(|s| s.saturating_mul(1000)),
                });
                for ip in &svc.cluster_ips {
                    t.frontends.insert(Frontend { vip: *ip, port: p.port, proto: p.protocol.number() }, id);
                    t.vips.insert(*ip);
                }
            }
        }
        Ok(t)
    }

    /// Whether a packet from `src` to `dst` can belong to a translated flow:
    /// to a Service address (the original direction) or from a backend (the
    /// reply). Everything else skips NAT: two set lookups, no flow probe.
    #[inline]
    pub fn may_translate(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        !self.ports.is_empty() && (self.vips.contains(&dst) || self.backend_ips.contains(&src))
    }

    /// The Service port a packet to (vip, port, proto) belongs to.
    #[inline]
    pub fn lookup(&self, f: &Frontend) -> Option<(u32, &ServicePort)> {
        let id = *self.frontends.get(f)?;
        self.ports.get(id as usize).map(|p| (id, p))
    }

    pub fn get(&self, id: u32) -> Option<&ServicePort> {
        self.ports.get(id as usize)
    }

    pub fn len(&self) -> usize {
        self.ports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// A stable text dump (`weirctl`, golden tests): one line per frontend
    /// with each backend's Maglev slot count.
    pub fn dump(&self) -> String {
        let mut fronts: Vec<(&Frontend, &u32)> = self.frontends.iter().collect();
        fronts.sort_by_key(|(f, _)| (u32::from(f.vip), f.port, f.proto));
        let mut out = String::new();
        for (f, id) in fronts {
            let p = &self.ports[*id as usize];
            let counts = p.maglev.slot_counts(p.backends.len());
            let bs: Vec<String> =
                p.backends.iter().zip(counts).map(|(b, c)| format!("{b}:{}({c})", p.target_port)).collect();
            out.push_str(&format!(
                "SERVICE {} {}:{}/{} M={} [{}]\n",
                p.name,
                f.vip,
                f.port,
                f.proto,
                p.maglev.size(),
                bs.join(", ")
            ));
        }
        out
    }
}
