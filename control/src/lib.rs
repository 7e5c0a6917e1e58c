//! weir-control: the control-plane side of weir (no DPDK).
//!
//! - `model`: the cluster's objects (from a cluster file or the Kubernetes
//!   watch) and what they mean for one node's tables;
//! - `policy`: NetworkPolicy and the Contiv model compiled into ACLs;
//! - `crd`: weir's own resources (Network, EndpointGroup, Policy);
//! - `sync`: keeping a dataplane's tables equal to the computed ones;
//! - `dump`: the stable text form of a node's tables (golden tests);
//! - `render`: what weirctl prints.

pub mod announce;
pub mod cni;
pub mod crd;
pub mod dump;
pub mod flowlog;
pub mod ipam;
pub mod fake_api;
pub mod health;
pub mod kube_source;
pub mod lb;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod query;
pub mod render;
pub mod source;
pub mod sync;
