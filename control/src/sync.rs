//! Keeping a weir-dataplane's cluster tables equal to what the control
//! computed: a versioned handshake, a full `Resync` when the dataplane is
//! new to this control (first contact, or it restarted: its `instance`
//! changed), and otherwise an `Update` with what changed since the last
//! applied push. Every push carries a generation; the dataplane answers
//! with the generation it applied, or refuses the push whole.

use std::collections::BTreeMap;
use std::path::PathBuf;

use weir_dataplane::api::{Change, ClusterTables, Reply, Request, PROTOCOL_VERSION};
use weir_dataplane::mgmt;

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Nothing had changed.
    Nothing,
    /// A full resync was applied (first contact or a restarted dataplane).
    Resync { generation: u64, tables_generation: u64 },
    /// These many changes were applied.
    Update { generation: u64, tables_generation: u64, changes: usize },
}

/// One dataplane, as this control last left it.
pub struct Link {
    socket: PathBuf,
    /// The dataplane start the last push went to.
    instance: Option<u64>,
    /// What it runs, as far as this control knows.
    applied: Option<ClusterTables>,
    generation: u64,
    /// Node name, from the handshake.
    pub node: Option<String>,
    /// Full resyncs done (metrics).
    pub resyncs: u64,
}

impl Link {
    pub fn new(socket: PathBuf) -> Link {
        Link { socket, instance: None, applied: None, generation: 0, node: None, resyncs: 0 }
    }

    /// Handshake: the dataplane's node name and start instance.
    pub fn hello(&mut self) -> Result<(String, u64), String> {
        let req = Request::Handshake { version: PROTOCOL_VERSION, client: "weir-control".into() };
        match mgmt::call(&self.socket, &req)? {
            Reply::Hello { node, instance, .. } => {
                self.node = Some(node.clone());
                Ok((node, instance))
            }
            Reply::Error { message } => Err(message),
            other => Err(format!("unexpected answer to the handshake: {other:?}")),
        }
    }

    /// Brings the dataplane to `tables`.
    pub fn push(&mut self, tables: &ClusterTables) -> Result<Pushed, String> {
        let (_, instance) = self.hello()?;
        let fresh = self.instance != Some(instance) || self.applied.is_none();
        // Generations grow across control restarts too: the wall clock in
        // ms, or one more than the last.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let generation = now.max(self.generation + 1);
        let (req, changes) = if fresh {
            (Request::Resync { generation, tables: tables.clone() }, 0)
        } else {
            let changes = diff(self.applied.as_ref().unwrap_or(&ClusterTables::default()), tables);
            if changes.is_empty() {
                return Ok(Pushed::Nothing);
            }
            let n = changes.len();
            (Request::Update { generation, changes }, n)
        };
        match mgmt::call(&self.socket, &req)? {
            Reply::Synced { generation: g, tables_generation } if g == generation => {
                self.generation = generation;
                self.instance = Some(instance);
                self.applied = Some(tables.clone());
                if fresh {
                    self.resyncs += 1;
                    Ok(Pushed::Resync { generation, tables_generation })
                } else {
                    Ok(Pushed::Update { generation, tables_generation, changes })
                }
            }
            Reply::Error { message } => Err(message),
            other => Err(format!("unexpected answer to generation {generation}: {other:?}")),
        }
    }
}

/// The changes that turn `old` into `new`.
pub fn diff(old: &ClusterTables, new: &ClusterTables) -> Vec<Change> {
    fn by<T, K: Ord>(v: &[T], key: impl Fn(&T) -> K) -> BTreeMap<K, &T> {
        v.iter().map(|x| (key(x), x)).collect()
    }
    let mut out = Vec::new();
    let (o, n) = (by(&old.networks, |x| x.name.clone()), by(&new.networks, |x| x.name.clone()));
    for (k, v) in &n {
        if o.get(k) != Some(v) {
            out.push(Change::UpsertNetwork { network: (*v).clone() });
        }
    }
    let (o_nodes, n_nodes) = (by(&old.remote_nodes, |x| x.name.clone()), by(&new.remote_nodes, |x| x.name.clone()));
    for (k, v) in &n_nodes {
        if o_nodes.get(k) != Some(v) {
            out.push(Change::UpsertNode { node: (*v).clone() });
        }
    }
    if old.remote_routes != new.remote_routes {
        out.push(Change::SetRemoteRoutes { routes: new.remote_routes.clone() });
    }
    if old.node_port_ips != new.node_port_ips {
        out.push(Change::SetNodePortIps { ips: new.node_port_ips.clone() });
    }
    if old.announce_ips != new.announce_ips {
        out.push(Change::SetAnnounceIps { ips: new.announce_ips.clone() });
    }
    let (o_svc, n_svc) = (by(&old.services, |x| x.name.clone()), by(&new.services, |x| x.name.clone()));
    for (k, v) in &n_svc {
        if o_svc.get(k) != Some(v) {
            out.push(Change::UpsertService { service: (*v).clone() });
        }
    }
    for k in o_svc.keys().filter(|k| !n_svc.contains_key(*k)) {
        out.push(Change::DeleteService { name: k.clone() });
    }
    let (o_acl, n_acl) = (by(&old.acl.pods, |x| x.ip), by(&new.acl.pods, |x| x.ip));
    for (k, v) in &n_acl {
        if o_acl.get(k) != Some(v) {
            out.push(Change::UpsertPodAcl { pod: (*v).clone() });
        }
    }
    for k in o_acl.keys().filter(|k| !n_acl.contains_key(*k)) {
        out.push(Change::DeletePodAcl { ip: *k });
    }
    for k in o_nodes.keys().filter(|k| !n_nodes.contains_key(*k)) {
        out.push(Change::DeleteNode { name: k.clone() });
    }
    for k in o.keys().filter(|k| !n.contains_key(*k)) {
        out.push(Change::DeleteNetwork { name: k.clone() });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{compute, ClusterObjects, Settings};

    fn tables(text: &str, node: &str) -> ClusterTables {
        compute(&ClusterObjects::from_yaml(text).unwrap(), node, &Settings::default()).unwrap().0
    }

    /// Applying the diff of any two states of the demo cluster to the first
    /// gives the second.
    #[test]
    fn diff_then_apply_is_the_new_state() {
        let demo = include_str!("../../config/demo-cluster.yaml");
        let a = tables(demo, "node1");
        let empty = ClusterTables::default();
        for (from, to) in [(&empty, &a), (&a, &empty), (&a, &a)] {
            let d = diff(from, to);
            let got = from.clone().with(&d).unwrap();
            let norm = |t: &ClusterTables| {
                let mut t = t.clone();
                t.services.sort_by(|a, b| a.name.cmp(&b.name));
                t.acl.pods.sort_by_key(|p| p.ip);
                t.networks.sort_by(|a, b| a.name.cmp(&b.name));
                t.remote_nodes.sort_by(|a, b| a.name.cmp(&b.name));
                t
            };
            assert_eq!(norm(&got), norm(to));
        }
        assert!(diff(&a, &a).is_empty());
        // One Service changed: one change.
        let mut b = a.clone();
        b.services[0].backends.pop();
        assert_eq!(diff(&a, &b).len(), 1);
        // A LoadBalancer IP taken over: one change, and applying it gives b.
        let mut c = a.clone();
        c.announce_ips = vec!["192.168.50.100".parse().unwrap()];
        assert_eq!(diff(&a, &c), vec![Change::SetAnnounceIps { ips: c.announce_ips.clone() }]);
        assert_eq!(a.clone().with(&diff(&a, &c)).unwrap(), c);
    }
}
