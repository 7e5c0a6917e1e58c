#!/usr/bin/env bash
# The weir demo: two nodes (network namespaces, each running weir-dataplane)
# joined by a veth "underlay", with pods on veth links driven by DPDK's
# af_packet driver. node1 has pod-a and pod-b, node2 has pod-c. The pods ping
# each other and their gateway through weir, on one node and across nodes
# over VXLAN, stream 10 MB over TCP, and weirctl shows the counters and the
# resolved underlay neighbours. Everything is torn down on exit or Ctrl-C.
#
# Does its own setup (packages, hugepages, build). Run as root.
# WEIR_DEMO_QUIET=1: do not wait for Enter before tearing down.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if [ "$(id -u)" -ne 0 ]; then
    echo "demo.sh: run as root (hugepages, network namespaces)" >&2
    exit 1
fi
quiet=${WEIR_DEMO_QUIET:-0}
say() { printf '\n\033[1m## %s\033[0m\n' "$*"; }

scripts/setup.sh >/dev/null
cargo build -q -p weir-dataplane -p weir-control
BIN=$ROOT/target/debug

TAG=wd$$
WORK=$(mktemp -d /tmp/weir-demo.XXXXXX)
PIDS=()
NSS=()

cleanup() {
    set +e
    for n in 1 2; do "$BIN/weirctl" -s "$WORK/n$n.sock" shutdown >/dev/null 2>&1; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill "$pid" 2>/dev/null
    done
    for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

newns() { ip netns add "$1"; NSS+=("$1"); ip -n "$1" link set lo up; ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1; }

# pod NODE NAME IP MAC GATEWAY: a pod namespace on a veth to its node.
pod() {
    local node=$1 name=$2 ip=$3 mac=$4 gw=$5 ns=$TAG-$2
    newns "$ns"
    ip link add "$TAG$name" netns "$node" type veth peer name eth0 netns "$ns"
    ip netns exec "$node" sysctl -qw "net.ipv6.conf.$TAG$name.disable_ipv6=1"
    ip -n "$ns" link set eth0 address "$mac" mtu 1450   # underlay MTU - VXLAN's 50
    ip netns exec "$ns" ethtool -K eth0 tx off >/dev/null  # see README: af_packet ports
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "$gw"
    ip -n "$node" link set "$TAG$name" up
    cat >> "$WORK/$node.ports" <<CFG

[[ports]]
name = "$name"
kind = "af_packet"
iface = "$TAG$name"
pod = { ip = "$ip", mac = "$mac" }
CFG
}

say "node1 (pods 10.1.0.0/24) and node2 (pods 10.2.0.0/24), underlay 192.168.50.0/24"
newns "$TAG-n1"; newns "$TAG-n2"
ip link add "${TAG}u1" netns "$TAG-n1" type veth peer name "${TAG}u2" netns "$TAG-n2"
ip -n "$TAG-n1" link set "${TAG}u1" up
ip -n "$TAG-n2" link set "${TAG}u2" up
pod "$TAG-n1" a 10.1.0.2 02:00:00:00:01:02 10.1.0.1
pod "$TAG-n1" b 10.1.0.3 02:00:00:00:01:03 10.1.0.1
pod "$TAG-n2" c 10.2.0.2 02:00:00:00:02:02 10.2.0.1

for n in 1 2; do
    other=$((3 - n))
    cat > "$WORK/n$n.toml" <<CFG
[node]
name = "node$n"
pod_cidr = "10.$n.0.0/24"
node_ip = "192.168.50.$n"
underlay_cidr = "192.168.50.0/24"

[gateway]
ip = "10.$n.0.1"
mac = "02:fe:00:00:00:0$n"

[dpdk]
main_core = 0
worker_cores = [1]
memory_mb = 256
mbufs = 8191

[management]
socket = "$WORK/n$n.sock"

[[ports]]
name = "uplink"
kind = "af_packet"
iface = "${TAG}u$n"
uplink = true

[[remote_nodes]]
name = "node$other"
node_ip = "192.168.50.$other"
pod_cidr = "10.$other.0.0/24"
vtep_mac = "02:fe:00:00:00:0$other"
CFG
    cat "$WORK/$TAG-n$n.ports" >> "$WORK/n$n.toml"
    say "weir-dataplane -c n$n.toml (in $TAG-n$n)"
    ip netns exec "$TAG-n$n" "$BIN/weir-dataplane" -c "$WORK/n$n.toml" >"$WORK/n$n.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        "$BIN/weirctl" -s "$WORK/n$n.sock" hello >/dev/null 2>&1 && break
        kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$WORK/n$n.log"; exit 1; }
        sleep 0.1
    done
    "$BIN/weirctl" -s "$WORK/n$n.sock" hello
done

say "pod-a pings its gateway, pod-b on its node, and pod-c on node2 (VXLAN)"
ip netns exec "$TAG-a" ping -c 2 -i 0.2 -W 2 10.1.0.1
ip netns exec "$TAG-a" ping -c 2 -i 0.2 -W 2 10.1.0.3
ip netns exec "$TAG-a" ping -c 3 -i 0.2 -W 2 10.2.0.2

say "TTL 1 gets time-exceeded from the gateway"
ttl1=$(ip netns exec "$TAG-a" ping -c 1 -t 1 -W 2 10.1.0.3 || true)
echo "$ttl1" | grep "Time to live exceeded" || { echo "$ttl1"; echo "demo.sh: no time-exceeded for TTL 1" >&2; exit 1; }

stream() {  # stream FROM-NS TO-NS TO-IP: 10 MB over TCP, checksummed both ends
    ip netns exec "$2" timeout 60 python3 -c '
import socket, hashlib
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5001)); s.listen(1)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while True:
    d = c.recv(1 << 16)
    if not d: break
    h.update(d); n += len(d)
print("  received", n, "bytes, sha256", h.hexdigest()[:16])
' &
    local srv=$!
    for _ in $(seq 50); do ip netns exec "$2" ss -ltn | grep -q ':5001' && break; sleep 0.1; done
    ip netns exec "$1" timeout 60 python3 -c '
import socket, hashlib, os, sys
d = os.urandom(10 * 1024 * 1024)
s = socket.create_connection((sys.argv[1], 5001), timeout=10); s.sendall(d); s.close()
print("  sent    ", len(d), "bytes, sha256", hashlib.sha256(d).hexdigest()[:16])
' "$3"
    wait "$srv"
}
say "pod-a streams 10 MB to pod-b (same node)"
stream "$TAG-a" "$TAG-b" 10.1.0.3
say "pod-c (node2) streams 10 MB to pod-a (node1), over VXLAN"
stream "$TAG-c" "$TAG-a" 10.1.0.2

sleep 0.5
for n in 1 2; do
    say "weirctl stats (node$n)"
    "$BIN/weirctl" -s "$WORK/n$n.sock" stats
done
[ "$quiet" = 1 ] || { echo; echo "(logs: $WORK/n1.log, $WORK/n2.log; press Enter to tear down)"; read -r _ || true; }
say "done"
