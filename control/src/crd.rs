//! weir's own custom resources (group `weir.dev`, version `v1alpha1`,
//! cluster-scoped): for the Contiv model `Network`, `EndpointGroup` and
//! `Policy`; for LoadBalancer Services `LoadBalancerPool` (see `crate::lb`).
//! The schemas in `config/crds/` are generated from these types
//! (`weir-control crds`); a test keeps them in step.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::policy::{ContivModel, ContivNetwork, ContivPolicy, ContivRule, EndpointGroup as GroupModel};

/// A pod network besides the default one: its subnet, gateway and VNI,
/// the same on every node. Pods join it with the label `io.contiv.network`.
#[derive(CustomResource, Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(group = "weir.dev", version = "v1alpha1", kind = "Network", plural = "networks")]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkSpec {
    /// IPv4 prefix, e.g. `21.1.1.0/24`.
    pub subnet: String,
    /// The gateway address pods of the network use, inside `subnet`.
    pub gateway: String,
    /// VXLAN network identifier (1-16777215), unique in the cluster.
    pub vni: u32,
}

/// Pods labelled `io.contiv.net-group: <name>`, in `network`, guarded by
/// `policies`.
#[derive(CustomResource, Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(group = "weir.dev", version = "v1alpha1", kind = "EndpointGroup", plural = "endpointgroups")]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointGroupSpec {
    pub network: String,
    #[serde(default)]
    pub policies: Vec<String>,
}

/// Prioritised allow/deny rules, attached to endpoint groups.
#[derive(CustomResource, Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(group = "weir.dev", version = "v1alpha1", kind = "Policy", plural = "policies")]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicySpec {
    #[serde(default)]
    pub rules: Vec<ContivRule>,
}

/// Addresses weir gives to Services of type LoadBalancer. A Service gets
/// an address of a pool only if the pool is eligible for it: its namespace
/// is among `namespaces` (or that list is empty) and its
/// `spec.loadBalancerClass` is the pool's `loadBalancerClass` (no class on
/// either side means weir's own, `weir.dev/lb`).
#[derive(CustomResource, Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(group = "weir.dev", version = "v1alpha1", kind = "LoadBalancerPool", plural = "loadbalancerpools")]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadBalancerPoolSpec {
    /// IPv4 prefixes (`192.168.50.96/28`: its network and broadcast
    /// addresses are never given out, below /31), inclusive ranges
    /// (`192.168.50.100-192.168.50.110`) or single addresses.
    pub addresses: Vec<String>,
    /// Only Services of these namespaces; empty: every namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Only Services with this `spec.loadBalancerClass`; none: Services
    /// without a class (or with weir's, `weir.dev/lb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_class: Option<String>,
    /// Whether Services that ask for no particular address get one of
    /// these; false: only requested addresses are given from the pool.
    #[serde(default = "auto_assign_default")]
    pub auto_assign: bool,
}

fn auto_assign_default() -> bool {
    true
}

/// The Contiv model of these resources. A Network whose subnet or gateway
/// does not parse is an error naming it.
pub fn contiv_model(
    networks: &[Network],
    groups: &[EndpointGroup],
    policies: &[Policy],
) -> Result<ContivModel, String> {
    let name = |m: &kube::api::ObjectMeta| m.name.clone().unwrap_or_default();
    let mut model = ContivModel::default();
    for n in networks {
        let bad = |what: &str, v: &str| format!("Network {}: {what} {v:?} does not parse", name(&n.metadata));
        model.networks.push(ContivNetwork {
            name: name(&n.metadata),
            subnet: n.spec.subnet.parse().map_err(|_| bad("subnet", &n.spec.subnet))?,
            gateway: n.spec.gateway.parse().map_err(|_| bad("gateway", &n.spec.gateway))?,
            vni: n.spec.vni,
        });
    }
    for g in groups {
        model.groups.push(GroupModel {
            name: name(&g.metadata),
            network: g.spec.network.clone(),
            policies: g.spec.policies.clone(),
        });
    }
    for p in policies {
        model.policies.push(ContivPolicy { name: name(&p.metadata), rules: p.spec.rules.clone() });
    }
    Ok(model)
}

/// The CRD manifests, as YAML documents.
pub fn manifests() -> String {
    use kube::CustomResourceExt;
    [Network::crd(), EndpointGroup::crd(), Policy::crd(), LoadBalancerPool::crd()]
        .iter()
        .map(|c| serde_yaml::to_string(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("---\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checked-in manifests are what the types generate
    /// (`WEIR_BLESS=1` rewrites them).
    #[test]
    fn checked_in_crds_match_the_types() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/crds/weir.dev.yaml");
        let want = manifests();
        if std::env::var_os("WEIR_BLESS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let got = std::fs::read_to_string(path).unwrap_or_default();
        assert!(got == want, "config/crds/weir.dev.yaml is stale: run WEIR_BLESS=1 cargo test -p weir-control crd");
        for kind in ["Network", "EndpointGroup", "Policy", "LoadBalancerPool"] {
            assert!(want.contains(&format!("kind: {kind}")), "{kind}");
        }
    }
}
