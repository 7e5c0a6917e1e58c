//! weir-pktgen end to end, against DPDK's `net_ring` loopback (what a port
//! sends comes back on its own rx queue): every frame of every scenario
//! comes back, stamped, in order, with a latency.
//!
//! Needs DPDK at run time (no hugepages, no root: `--no-huge`), so it runs
//! only with `WEIR_PERF_DPDK=1`; without it the test says so and passes.
//! `cargo test --workspace` compiles it either way.

use std::process::Command;

#[test]
fn pktgen_loops_every_scenario_through_a_ring() {
    if std::env::var_os("WEIR_PERF_DPDK").is_none() {
        eprintln!("pktgen_loop: skipped (set WEIR_PERF_DPDK=1 to run weir-pktgen on a net_ring loopback)");
        return;
    }
    // Removed when dropped, whatever happens.
    let tmp = weir_perf::proc::TempDir::new("weir-pktgen-loop").unwrap();
    let dir = tmp.path();
    for (scenario, flows) in [
        ("pod2pod", 1),
        ("vxlan-decap", 100),
        ("clusterip-est", 5000),
        ("clusterip-new", 1),
        ("nodeport", 300),
        ("acl", 300),
        ("acl-new", 1),
        ("full", 300),
        ("full-new", 1),
    ] {
        let json = dir.join(format!("{scenario}.json"));
        let out = Command::new(env!("CARGO_BIN_EXE_weir-pktgen"))
            .args(["--port", "net_ring0", "--no-huge", "--memory-mb", "512", "--quiet"])
            .args(["--scenario", scenario, "--flows", &flows.to_string(), "--frame-size", "128"])
            .args(["--mode", "fixed", "--rate", "0.05", "--trial", "0.3", "--json"])
            .arg(&json)
            .output()
            .expect("weir-pktgen runs");
        assert!(out.status.success(), "{scenario}: {}", String::from_utf8_lossy(&out.stderr));
        let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let t = &r["trials"][0];
        let (offered, received) = (t["offered"].as_u64().unwrap(), t["received"].as_u64().unwrap());
        assert!(offered > 1000, "{scenario}: offered {offered}");
        assert_eq!(received, offered, "{scenario}: a loopback loses nothing");
        assert_eq!(t["tx_refused"], 0, "{scenario}");
        assert_eq!(t["reordered"], 0, "{scenario}");
        assert_eq!(t["latency"]["samples"].as_u64(), Some(received), "{scenario}");
        if ["clusterip-est", "nodeport", "acl", "full"].contains(&scenario) {
            assert_eq!(r["priming"]["received"].as_u64(), Some(flows), "{scenario}: every flow primed");
        }
    }
}
