//! weir-dataplane: the packet-processing half of weir.
//!
//! Everything that decides what happens to a packet (`wire`, `pipeline`,
//! `tables`) is plain Rust over byte buffers and builds without DPDK, as do
//! `config`, `api`, `snapshot`, `stats`, `mgmt` (the management protocol) and
//! `inspect` (explain, trace and capture).
//! The `dpdk` feature adds the safe DPDK layer (`dpdk`, the only module with
//! `unsafe`), the workers (`worker`), the node runtime (`node`), the flow
//! table kept in a file across restarts (`flowstate`) and the binary.
#![deny(unsafe_code)]

pub mod api;
pub mod config;
pub mod flow;
pub mod inspect;
pub mod mgmt;
pub mod neighbour;
pub mod pipeline;
pub mod snapshot;
pub mod stats;
pub mod tables;
pub mod wire;

#[cfg(feature = "dpdk")]
pub mod dpdk;
#[cfg(feature = "dpdk")]
pub mod flowstate;
#[cfg(feature = "dpdk")]
pub mod node;
#[cfg(feature = "dpdk")]
pub mod worker;
