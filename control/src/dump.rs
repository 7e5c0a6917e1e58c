//! A stable text form of one node's cluster tables, for golden tests and
//! `weir-control dump`: networks, other nodes and their routes, every
//! Service frontend with its backends' Maglev slot counts, and every ACL
//! rule — built with the dataplane's own table builders, so what is shown
//! is what the workers would run.

use std::fmt::Write;

use weir_dataplane::api::ClusterTables;
use weir_dataplane::config::NodeConfig;
use weir_dataplane::tables::acl::AclTable;
use weir_dataplane::tables::service::ServiceTable;

use crate::model::ClusterObjects;

/// The node facts the builders need, from its Node object (pod CIDR, IP).
fn node_config(objs: &ClusterObjects, node: &str) -> Result<NodeConfig, String> {
    let n = objs.nodes.iter().find(|n| n.metadata.name.as_deref() == Some(node));
    let spec = n.and_then(|n| n.spec.as_ref());
    let cidr: weir_dataplane::tables::cidr::Ipv4Cidr = spec
        .and_then(|s| s.pod_cidr.as_deref())
        .unwrap_or("10.255.255.0/24")
        .parse()
        .map_err(|e| format!("node {node}: podCIDR: {e}"))?;
    let gw = std::net::Ipv4Addr::from(u32::from(cidr.addr()) + 1);
    let ip = n
        .and_then(|n| n.status.as_ref())
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| format!("node_ip = \"{}\"\n", a.address))
        .unwrap_or_default();
    NodeConfig::from_toml(&format!(
        "[node]\nname = \"{node}\"\npod_cidr = \"{cidr}\"\n{ip}[gateway]\nip = \"{gw}\"\nmac = \"02:fe:00:00:00:01\"\n"
    ))
    .map_err(|e| e.to_string())
}

/// The dump of `t`, the tables of `node`.
pub fn dump(objs: &ClusterObjects, node: &str, t: &ClusterTables) -> Result<String, String> {
    let mut cfg = node_config(objs, node)?;
    cfg.services = t.services.clone();
    let mut out = format!("NODE {node}\n");
    for n in &t.networks {
        let _ = writeln!(out, "NETWORK {} {} gateway {} vni {}", n.name, n.subnet, n.gateway, n.vni);
    }
    for r in &t.remote_nodes {
        let _ = writeln!(out, "NODE-ROUTE {} via {} ({}), vtep mac {}", r.pod_cidr, r.node_ip, r.name, r.vtep_mac);
    }
    for r in &t.remote_routes {
        let _ = writeln!(out, "ROUTE {} {} via {}", r.network, r.prefix, r.node);
    }
    for ip in &t.announce_ips {
        let _ = writeln!(out, "ANNOUNCE {ip}");
    }
    let services = ServiceTable::build(&cfg)?;
    out.push_str(&services.dump());
    let mut addrs = vec![cfg.gateway.ip];
    addrs.extend(t.networks.iter().map(|n| n.gateway));
    addrs.extend(cfg.node.node_ip);
    let acl = AclTable::build(&t.acl, &addrs)?;
    out.push_str(&acl.dump());
    Ok(out)
}
