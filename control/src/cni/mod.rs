//! CNI: the `weir-cni` plugin and weir-control's side of it.
//!
//! - `spec`: CNI 1.0.0 / 1.1.0 as weir speaks it: environment, network
//!   configuration, results, errors and their codes, a result checker;
//! - `plugin`: what the `weir-cni` binary does (VERSION itself; ADD, DEL,
//!   CHECK, STATUS and GC through weir-control); it keeps no state;
//! - `proto`: the JSON-lines protocol between the two over a Unix socket;
//! - `server`: weir-control's CNI server: IPAM (persisted, `crate::ipam`),
//!   pod ports on weir-dataplane (TAP for kernel pods, vhost-user for DPDK
//!   pods), re-adding them after a dataplane restart, GC;
//! - `podside`: the pod's namespace (interface, address, route) and
//!   device-info files.
//!
//! docs/cni.md describes the whole; config/cni/10-weir.conflist is the
//! network configuration a node installs.

pub mod plugin;
pub mod podside;
pub mod proto;
pub mod server;
pub mod spec;

#[cfg(test)]
mod tests;
