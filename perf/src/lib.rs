//! weir-perf: benchmarks of the weir data plane, run side by side with
//! DPDK's own `dpdk-testpmd` (and OVS-DPDK) on the same machine and port type.
//!
//! The benchmarks that compare processes (weir-bench-fwd, weir-bench-harness)
//! never link DPDK: they start `weir-dataplane`, `dpdk-testpmd`,
//! `ovs-vswitchd` and `weir-pktgen` as child processes, drive them
//! (management socket, testpmd's prompt, ovs-vsctl) and read their counters
//! and reports. Everything they start is killed by PID and every file they
//! leave (temp dir, DPDK runtime dir, hugepage files of their own
//! `--file-prefix`es) is removed when the owning guard goes out of scope.
//! weir-pktgen, the traffic generator, is the one DPDK program here (the
//! `pktgen` feature); it reaches DPDK only through `weir_dataplane::dpdk`.
//!
//! - [`proc`]: child-process, temp-dir and DPDK-prefix guards, interruptible sleep.
//! - [`weir`]: one io-forwarding measurement of `weir-dataplane`.
//! - [`testpmd`]: one io-forwarding measurement of `dpdk-testpmd`.
//! - [`scenario`]: tables and template frames for the pure-pipeline benchmark.
//! - [`traffic`]: weir-pktgen's scenarios, template frames, flows and stamps.
//! - [`policy`]: the scenarios' ACL rule sets, as weir config and as OpenFlow.
//! - [`pcap`]: classic pcap files of any scenario.
//! - [`search`]: trial results, the no-drop-rate search, rate sweeps.
//! - [`report`]: tables, JSON reports and SVG plots.
//! - [`gen`] (feature `pktgen`): the DPDK generator and receiver loop.
//! - [`harness`]: the devices under test (weir, testpmd, OVS-DPDK) set up for
//!   each scenario, and the runs that compare them.
#![deny(unsafe_code)]

#[cfg(feature = "pktgen")]
pub mod gen;
pub mod harness;
pub mod pcap;
pub mod policy;
pub mod proc;
pub mod report;
pub mod scenario;
pub mod search;
pub mod testpmd;
pub mod traffic;
pub mod weir;

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// The ports both forwarders run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PortType {
    /// Two `net_null` vdevs: rx hands out preallocated-pool mbufs, tx frees
    /// them. Measures only the forwarding framework.
    Null,
}

impl PortType {
    pub fn as_str(&self) -> &'static str {
        match self {
            PortType::Null => "null",
        }
    }

    /// The DPDK driver name (`net_null`).
    pub fn driver(&self) -> &'static str {
        match self {
            PortType::Null => "net_null",
        }
    }
}

impl fmt::Display for PortType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One measurement window: packets sent (sum of every port's tx counter
/// delta) over the wall time between the two counter reads.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Measurement {
    pub tx_packets: u64,
    #[serde(rename = "elapsed_s", serialize_with = "ser_secs")]
    pub elapsed: Duration,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Measurement {
    pub fn mpps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        self.tx_packets as f64 / secs / 1e6
    }
}

/// Median of the values (mean of the two middle ones for an even count);
/// `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// What one forwarder's run needs to know.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub port_type: PortType,
    /// Packets per rx burst.
    pub burst: usize,
    /// Time between start of forwarding and the first counter read.
    pub warmup: Duration,
    /// Time between the two counter reads.
    pub seconds: Duration,
    /// EAL main lcore (management / prompt) and the one forwarding lcore.
    pub main_core: usize,
    pub fwd_core: usize,
    /// DPDK memory, MiB.
    pub memory_mb: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn mpps() {
        let m = Measurement { tx_packets: 50_000_000, elapsed: Duration::from_millis(500) };
        assert!((m.mpps() - 100.0).abs() < 1e-9);
        assert_eq!(Measurement { tx_packets: 1, elapsed: Duration::ZERO }.mpps(), 0.0);
    }
}
