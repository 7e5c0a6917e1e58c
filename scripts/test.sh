#!/usr/bin/env bash
# Installs what weir needs, builds everything and runs every test:
#   1. unit and property tests of every crate (no root needed),
#   2. the packet logic again with DPDK compiled out (it must not need it),
#   3. the namespace tests: real pods and a real weir-dataplane, with
#      weir-control where a cluster file drives them (root,
#      hugepages; one at a time, they share two cores),
#   4. the demo, end to end.
# Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: run as root (packages, hugepages, network namespaces)" >&2
    exit 1
fi

step() { printf '\n=== %s\n' "$*"; }

step "setup"
scripts/setup.sh

step "build"
cargo build --workspace --all-targets
cargo build --release -p weir-dataplane -p weir-perf

step "unit tests"
cargo test --workspace --lib --bins

step "packet logic without DPDK"
cargo test -p weir-dataplane --no-default-features --lib

step "namespace tests"
cargo test -p weir-dataplane --test netns -- --test-threads=1
cargo test -p weir-dataplane --test overlay -- --test-threads=1
cargo test -p weir-dataplane --test services -- --test-threads=1
cargo test -p weir-dataplane --test inspect -- --test-threads=1
cargo test -p weir-dataplane --test cluster -- --test-threads=1
cargo test -p weir-dataplane --test weirctl -- --test-threads=1
cargo test -p weir-dataplane --test flowlog -- --test-threads=1
cargo test -p weir-dataplane --test loadbalancer -- --test-threads=1
cargo test -p weir-dataplane --test cni -- --test-threads=1

step "demo"
WEIR_DEMO_QUIET=1 scripts/demo.sh

echo
echo "test.sh: all tests passed"
