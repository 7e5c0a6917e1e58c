//! weir-control: the control-plane side of weir (no DPDK).
//!
//! For now it holds the client side of the dataplane's management protocol
//! and the human rendering weirctl prints. The Kubernetes watch, the cluster
//! file, IPAM and the CNI server come with the control and CNI issues.

pub mod policy;
pub mod render;
