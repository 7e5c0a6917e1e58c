#!/usr/bin/env bash
# The weir demo: one node (a network namespace running weir-dataplane), two
# pods (namespaces on veth links driven by DPDK's af_packet driver). The pods
# ping each other and their gateway through weir, stream 10 MB over TCP, and
# weirctl shows the counters. Everything is torn down on exit or Ctrl-C.
#
# Does its own setup (packages, hugepages, build). Run as root.
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
NODE=$TAG-node
WORK=$(mktemp -d /tmp/weir-demo.XXXXXX)
SOCK=$WORK/dataplane.sock
DP_PID=

cleanup() {
    set +e
    if [ -n "$DP_PID" ] && kill -0 "$DP_PID" 2>/dev/null; then
        "$BIN/weirctl" -s "$SOCK" shutdown >/dev/null 2>&1
        for _ in $(seq 50); do kill -0 "$DP_PID" 2>/dev/null || break; sleep 0.1; done
        kill "$DP_PID" 2>/dev/null
    fi
    for ns in "$TAG-a" "$TAG-b" "$NODE"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$WORK" "/var/run/dpdk/$TAG"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "node $NODE and pods $TAG-a (10.1.0.2), $TAG-b (10.1.0.3)"
ip netns add "$NODE"
i=2
for p in a b; do
    ns=$TAG-$p
    ip netns add "$ns"
    ip link add "$TAG$p" netns "$NODE" type veth peer name eth0 netns "$ns"
    ip netns exec "$NODE" sysctl -qw "net.ipv6.conf.$TAG$p.disable_ipv6=1"
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 address "02:00:00:00:00:0$i"
    ip netns exec "$ns" ethtool -K eth0 tx off >/dev/null   # see README: af_packet ports
    ip -n "$ns" addr add "10.1.0.$i/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via 10.1.0.1
    ip -n "$NODE" link set "$TAG$p" up
    i=$((i + 1))
done

cat > "$WORK/node.toml" <<CFG
[node]
name = "$TAG"
pod_cidr = "10.1.0.0/24"

[gateway]
ip = "10.1.0.1"
mac = "02:fe:00:00:00:01"

[dpdk]
main_core = 0
worker_cores = [1]
memory_mb = 256
mbufs = 8191
file_prefix = "$TAG"

[management]
socket = "$SOCK"

[[ports]]
name = "pod-a"
kind = "af_packet"
iface = "${TAG}a"
pod = { ip = "10.1.0.2", mac = "02:00:00:00:00:02" }

[[ports]]
name = "pod-b"
kind = "af_packet"
iface = "${TAG}b"
pod = { ip = "10.1.0.3", mac = "02:00:00:00:00:03" }
CFG

say "weir-dataplane -c node.toml (in $NODE)"
ip netns exec "$NODE" "$BIN/weir-dataplane" -c "$WORK/node.toml" >"$WORK/dataplane.log" 2>&1 &
DP_PID=$!
for _ in $(seq 100); do
    "$BIN/weirctl" -s "$SOCK" hello >/dev/null 2>&1 && break
    kill -0 "$DP_PID" 2>/dev/null || { cat "$WORK/dataplane.log"; exit 1; }
    sleep 0.1
done
"$BIN/weirctl" -s "$SOCK" hello

say "pod-a pings its gateway and pod-b; TTL 1 gets time-exceeded from the gateway"
ip netns exec "$TAG-a" ping -c 2 -i 0.2 -W 2 10.1.0.1
ip netns exec "$TAG-a" ping -c 3 -i 0.2 -W 2 10.1.0.3
ttl1=$(ip netns exec "$TAG-a" ping -c 1 -t 1 -W 2 10.1.0.3 || true)
echo "$ttl1" | grep "Time to live exceeded" || { echo "$ttl1"; echo "demo.sh: no time-exceeded for TTL 1" >&2; exit 1; }

say "pod-a streams 10 MB to pod-b over TCP"
ip netns exec "$TAG-b" timeout 60 python3 -c '
import socket, hashlib
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5001)); s.listen(1)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while True:
    d = c.recv(1 << 16)
    if not d: break
    h.update(d); n += len(d)
print("pod-b received", n, "bytes, sha256", h.hexdigest()[:16])
' &
SRV=$!
for _ in $(seq 50); do ip netns exec "$TAG-b" ss -ltn | grep -q ':5001' && break; sleep 0.1; done
ip netns exec "$TAG-a" timeout 60 python3 -c '
import socket, hashlib, os
d = os.urandom(10 * 1024 * 1024)
s = socket.create_connection(("10.1.0.3", 5001), timeout=10); s.sendall(d); s.close()
print("pod-a sent    ", len(d), "bytes, sha256", hashlib.sha256(d).hexdigest()[:16])
'
wait $SRV

say "weirctl stats"
sleep 0.5
"$BIN/weirctl" -s "$SOCK" stats
[ "$quiet" = 1 ] || { echo; echo "(weir-dataplane log: $WORK/dataplane.log; press Enter to tear down)"; read -r _ || true; }
say "done"
