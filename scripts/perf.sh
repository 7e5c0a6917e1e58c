#!/usr/bin/env bash
# Runs weir's benchmarks on this machine and keeps what they print. They are
# benchmarks, not tests: they print figures and judge nothing (scripts/test.sh
# does not run this).
#
#   1. weir-bench-fwd: bare rx->tx io forwarding on net_null ports, weir vs
#      dpdk-testpmd (skip with WEIR_PERF_FWD=0);
#   2. weir-bench-harness: every scenario (pod2pod, VXLAN decap, ClusterIP
#      established and new flows, NodePort, ACL with N rules established and
#      new, the full decap -> flow -> ACL -> DNAT -> encap path established
#      and new) against dpdk-testpmd, weir
#      and OVS-DPDK over vhost-user/virtio-user, with weir-pktgen as the
#      generator; it also prints weir-bench-pipeline's instructions per
#      packet (callgrind).
#
# Installs what it needs (scripts/setup.sh: DPDK, hugepages; here:
# openvswitch-switch-dpdk, valgrind), builds release, and writes everything
# to $WEIR_PERF_OUT (default target/perf): machine.txt, fwd.txt/fwd.json,
# harness.txt, results.json, summary.txt, one SVG per scenario.
#
# Usage (as root, nothing else busy on the two cores):
#   scripts/perf.sh                                   # everything (11 scenarios: 20 minutes or more)
#   scripts/perf.sh --scenarios pod2pod --duts testpmd,weir-io,weir,ovs
#   scripts/perf.sh --link memif                      # memif instead of vhost-user
# Arguments go to weir-bench-harness (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "perf.sh: run as root (packages, hugepages, DPDK processes)" >&2
    exit 1
fi

scripts/setup.sh

PKGS=(openvswitch-switch-dpdk valgrind util-linux)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "perf.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # OVS is run privately by the harness (own database, sockets, DPDK
    # prefix, network namespace); the package's service is not used.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo build --release -p weir-dataplane -p weir-perf

out=${WEIR_PERF_OUT:-target/perf}
mkdir -p "$out"
{
    echo "# $(date -u +%Y-%m-%dT%H:%MZ)"
    lscpu | head -20
    echo
    uname -a
    echo "DPDK $(pkg-config --modversion libdpdk)"
} > "$out/machine.txt"
cat "$out/machine.txt"

if [ "${WEIR_PERF_FWD:-1}" != 0 ]; then
    echo
    echo "=== weir-bench-fwd"
    target/release/weir-bench-fwd --json "$out/fwd.json" | tee "$out/fwd.txt"
fi

echo
echo "=== weir-bench-harness $*"
target/release/weir-bench-harness --out "$out" "$@" | tee "$out/harness.txt"
