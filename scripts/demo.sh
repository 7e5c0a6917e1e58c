#!/usr/bin/env bash
# The weir demo, from the cluster file config/demo-cluster.yaml (embedded in
# weir-control): two nodes (network namespaces, each running weir-dataplane
# and weir-control) on a bridged "underlay" with an outside client, and the
# file's six pods on veth links driven by DPDK's af_packet driver. It shows
# pods reaching each other over VXLAN, the ClusterIP Service spreading over
# backends on both nodes, the NodePort reached from outside, a LoadBalancer
# IP from a pool announced by ARP (and its healthCheckNodePort), the
# NetworkPolicy letting only the client reach the database, the Contiv demo
# (icmpPol: no ping into noping-epg, TCP still fine), a connection living
# on across kill -9 of a dataplane, and what weirctl shows. Every step
# checks its result. Torn down on exit or Ctrl-C.
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
CONTROL_PIDS=()
NSS=()

cleanup() {
    set +e
    for pid in "${CONTROL_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
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

# pod NODE NAME IP MAC GATEWAY NETWORK: a pod namespace on a veth to its node.
pod() {
    local node=$1 name=$2 ip=$3 mac=$4 gw=$5 net=$6 ns=$TAG-$2
    newns "$ns"
    local host_if=$TAG${name//-/}
    ip link add "$host_if" netns "$node" type veth peer name eth0 netns "$ns"
    ip netns exec "$node" sysctl -qw "net.ipv6.conf.$host_if.disable_ipv6=1"
    ip -n "$ns" link set eth0 address "$mac" mtu 1450   # underlay MTU - VXLAN's 50
    ip netns exec "$ns" ethtool -K eth0 tx off >/dev/null  # see README: af_packet ports
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "$gw"
    ip -n "$node" link set "$host_if" up
    cat >> "$WORK/$node.ports" <<CFG

[[ports]]
name = "$name"
kind = "af_packet"
iface = "$host_if"
pod = { ip = "$ip", mac = "$mac", network = "$net" }
CFG
}

say "underlay 192.168.50.0/24 (a bridge): node1 .1, node2 .2, an outside client .9"
newns "$TAG-u"; newns "$TAG-n1"; newns "$TAG-n2"; newns "$TAG-x"
ip -n "$TAG-u" link add br0 type bridge
ip -n "$TAG-u" link set br0 up
for end in n1 n2 x; do
    ip link add "${TAG}$end" netns "$TAG-$end" type veth peer name "${TAG}b$end" netns "$TAG-u"
    ip -n "$TAG-u" link set "${TAG}b$end" master br0 up
    ip -n "$TAG-$end" link set "${TAG}$end" up
done
ip -n "$TAG-x" addr add 192.168.50.9/24 dev "${TAG}x"
ip netns exec "$TAG-x" ethtool -K "${TAG}x" tx off >/dev/null

say "the pods of the cluster file: node1 web-1 client-1 poc-1, node2 web-2 db-1 noping-1"
pod "$TAG-n1" web-1 10.1.0.2 02:00:00:00:01:02 10.1.0.1 default
pod "$TAG-n1" client-1 10.1.0.3 02:00:00:00:01:03 10.1.0.1 default
pod "$TAG-n1" poc-1 21.1.1.2 02:00:00:00:21:02 21.1.1.1 poc-net
pod "$TAG-n2" web-2 10.2.0.2 02:00:00:00:02:02 10.2.0.1 default
pod "$TAG-n2" db-1 10.2.0.3 02:00:00:00:02:03 10.2.0.1 default
pod "$TAG-n2" noping-1 21.1.1.3 02:00:00:00:21:03 21.1.1.1 poc-net

# start_dataplane N LOG: weir-dataplane of node N, up and answering.
declare -A DP_PID
start_dataplane() {
    ip netns exec "$TAG-n$1" "$BIN/weir-dataplane" -c "$WORK/n$1.toml" >"$2" 2>&1 &
    PIDS+=($!)
    DP_PID[$1]=$!
    for _ in $(seq 100); do
        "$BIN/weirctl" -s "$WORK/n$1.sock" hello >/dev/null 2>&1 && return
        kill -0 "${DP_PID[$1]}" 2>/dev/null || { cat "$2"; exit 1; }
        sleep 0.1
    done
    echo "demo.sh: weir-dataplane of node$1 did not come up" >&2; exit 1
}
for n in 1 2; do
    cat > "$WORK/n$n.toml" <<CFG
# The node's own facts and ports; Services, policy and the other node's
# routes come from weir-control.
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
mbufs = 16383
# The flow table in a file that a restarted dataplane takes over (by
# default next to the socket when that is on tmpfs, as /run/weir is).
flow_state = "$WORK/flows-node$n"

[management]
socket = "$WORK/n$n.sock"

# poc-net's pods are ports from the start, so their network is too.
[[networks]]
name = "poc-net"
subnet = "21.1.1.0/24"
gateway = "21.1.1.1"
vni = 21

[[ports]]
name = "uplink"
kind = "af_packet"
iface = "${TAG}n$n"
uplink = true
CFG
    cat "$WORK/$TAG-n$n.ports" >> "$WORK/n$n.toml"
    say "weir-dataplane -c n$n.toml (in $TAG-n$n)"
    start_dataplane "$n" "$WORK/n$n.log"
    say "weir-control -s n$n.sock (the embedded demo cluster)"
    # (Both agents run in this namespace here: each serves its health
    # checks on its own loopback address instead of the node IP.)
    "$BIN/weir-control" -s "$WORK/n$n.sock" --metrics "127.0.0.1:931$n" --control-socket "$WORK/control$n.sock" \
        --health-check-address "127.0.0.$n" >"$WORK/control$n.log" 2>&1 &
    CONTROL_PIDS+=($!)
    for _ in $(seq 100); do
        "$BIN/weirctl" -s "$WORK/n$n.sock" hello 2>/dev/null | grep -q "control generation" && break
        sleep 0.1
    done
    "$BIN/weirctl" -s "$WORK/n$n.sock" hello
    cat "$WORK/control$n.log"
done

inpod() { local pod=$1; shift; ip netns exec "$TAG-$pod" "$@"; }
# serve POD NAME PORT: answers every TCP connection with NAME and the peer's
# address, then echoes what it is sent.
serve() {
    inpod "$1" timeout 600 python3 -c '
import socket, sys, threading
name, port = sys.argv[1], int(sys.argv[2])
def one(c, a):
    try:
        c.sendall((name + " " + a[0]).encode())
        while True:
            d = c.recv(64)
            if not d: break
            c.sendall(d)
    except OSError:
        pass
    c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port)); s.listen(64)
while True:
    c, a = s.accept(); threading.Thread(target=one, args=(c, a), daemon=True).start()
' "$2" "$3" &
    PIDS+=($!)
    for _ in $(seq 50); do inpod "$1" ss -ltn | grep -q ":$3 " && return; sleep 0.1; done
}
# ask FROM ADDR PORT: who answers (or "refused"/"timeout").
ask() {
    local from=$1; shift
    if [ "$from" = outside ]; then from=x; fi
    ip netns exec "$TAG-$from" timeout 10 python3 -c '
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2); print(s.recv(64).decode())
except ConnectionRefusedError: print("refused")
except OSError: print("timeout")
' "$@"
}
expect() {  # expect WHAT GOT PATTERN
    if [[ "$2" =~ $3 ]]; then echo "  ok: $1: $2"; else echo "demo.sh: $1: got '$2', wanted $3" >&2; exit 1; fi
}
serve web-1 web-1 8080; serve web-2 web-2 8080; serve db-1 db-1 6379; serve noping-1 noping-1 6379

say "pods across nodes over VXLAN; TTL 1 gets time-exceeded from the gateway"
inpod client-1 ping -c 3 -i 0.2 -W 2 10.2.0.2
ttl1=$(inpod client-1 ping -c 1 -t 1 -W 2 10.1.0.2 || true)
echo "$ttl1" | grep "Time to live exceeded" || { echo "$ttl1"; echo "demo.sh: no time-exceeded for TTL 1" >&2; exit 1; }

say "ClusterIP web 10.96.0.10:80 → web-1 (node1) and web-2 (node2), picked by Maglev per connection"
seen=""
for i in $(seq 12); do seen+="$(ask client-1 10.96.0.10 80 | cut -d' ' -f1) "; done
echo "  $seen"
expect "both backends answered" "$seen" "web-1.*web-2|web-2.*web-1"

say "NodePort web-external :30080 from outside the cluster (externalTrafficPolicy Cluster: the backend sees node1)"
got=$(ask outside 192.168.50.1 30080); expect "outside → node1:30080" "$got" "^web-[12] 192.168.50.1$"

say "LoadBalancer web-lb: 192.168.50.100 from demo-pool, announced by ARP by one node with a ready endpoint (Local)"
for n in 1 2; do
    announced=$("$BIN/weirctl" -s "$WORK/n$n.sock" -o json stats |
        python3 -c 'import json, sys; print(" ".join((json.load(sys.stdin).get("overlay") or {}).get("announced", [])))')
    if [ "$announced" = 192.168.50.100 ]; then
        echo "  node$n announces 192.168.50.100"; speaker=$n
    fi
done
[ -n "${speaker:-}" ] || { echo "demo.sh: nobody announces 192.168.50.100" >&2; exit 1; }
got=$(ask outside 192.168.50.100 80); expect "outside → 192.168.50.100:80 (client address kept)" "$got" "^web-$speaker 192.168.50.9$"
ip -n "$TAG-x" neigh show 192.168.50.100 | sed 's/^/  client ARP: /'
got=$(curl -s -m 5 "http://127.0.0.$speaker:32100/"); expect "healthCheckNodePort 32100 on node$speaker" "$got" '"localEndpoints":1'

say "NetworkPolicy db-from-client: only app=client reaches the database (TCP 6379)"
expect "client-1 → db 10.96.0.20:6379" "$(ask client-1 10.96.0.20 6379)" "^db-1 "
expect "web-1 → db (no policy allows it)" "$(ask web-1 10.96.0.20 6379)" "^timeout$"

say "Contiv demo: noping-epg's icmpPol denies ping in; TCP to it still works; poc-epg can be pinged"
if inpod poc-1 ping -c 2 -i 0.2 -W 1 -q 21.1.1.3 >/dev/null; then echo "demo.sh: ping into noping-epg went through" >&2; exit 1; fi
echo "  ok: poc-1 → noping-1 ping: no answer"
expect "poc-1 → noping-1 TCP 6379" "$(ask poc-1 21.1.1.3 6379)" "^noping-1 "
inpod noping-1 ping -c 2 -i 0.2 -W 2 -q 21.1.1.2

stream() {  # stream FROM TO TO-IP: 10 MB over TCP, checksummed both ends
    inpod "$2" timeout 60 python3 -c '
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
    for _ in $(seq 50); do inpod "$2" ss -ltn | grep -q ':5001' && break; sleep 0.1; done
    inpod "$1" timeout 60 python3 -c '
import socket, hashlib, os, sys
d = os.urandom(10 * 1024 * 1024)
s = socket.create_connection((sys.argv[1], 5001), timeout=10); s.sendall(d); s.close()
print("  sent    ", len(d), "bytes, sha256", hashlib.sha256(d).hexdigest()[:16])
' "$3"
    wait "$srv"
}
say "web-2 (node2) streams 10 MB to client-1 (node1), over VXLAN"
stream web-2 client-1 10.1.0.3

say "a connection from outside through NodePort :30080 lives on across kill -9 of node1's dataplane"
rm -f "$WORK/go"
ip netns exec "$TAG-x" timeout 120 python3 -u -c '
import os, socket, sys, time
s = socket.create_connection(("192.168.50.1", 30080), timeout=5)
print("  answered by:", s.recv(64).decode())
s.sendall(b"before"); print("  echo:", s.recv(64).decode())
while not os.path.exists(sys.argv[1]): time.sleep(0.05)
try:
    s.sendall(b"after-restart"); print("  echo:", s.recv(64).decode())
except OSError as e:
    print("  lost:", e)
' "$WORK/go" >"$WORK/held.out" 2>&1 &
held=$!
for _ in $(seq 100); do grep -q "echo: before" "$WORK/held.out" && break; sleep 0.1; done
cat "$WORK/held.out"
grep -q "echo: before" "$WORK/held.out" || { echo "demo.sh: the connection did not open" >&2; exit 1; }
kill -9 "${DP_PID[1]}"; wait "${DP_PID[1]}" 2>/dev/null || true
echo "  node1's weir-dataplane killed (SIGKILL); started again"
start_dataplane 1 "$WORK/n1-restarted.log"
grep "flows kept" "$WORK/n1-restarted.log" | sed 's/^/  /'
touch "$WORK/go"; wait "$held" || true
got=$(tail -n 1 "$WORK/held.out"); expect "the connection after the restart" "$got" "echo: after-restart$"
for _ in $(seq 100); do "$BIN/weirctl" -s "$WORK/n1.sock" hello 2>/dev/null | grep -q "control generation" && break; sleep 0.1; done
expect "weir-control resynced node1; outside → node1:30080 again" "$(ask outside 192.168.50.1 30080)" "^web-[12] 192.168.50.1$"

sleep 0.5
for n in 1 2; do
    say "weirctl stats (node$n)"
    "$BIN/weirctl" -s "$WORK/n$n.sock" stats
done
say "weirctl's views of node2: ports, the Contiv model (netctl style), Services, flows, rule hits"
ctl2() { "$BIN/weirctl" -s "$WORK/n2.sock" --control-socket "$WORK/control2.sock" "$@"; }
ctl2 ports
ctl2 net list
ctl2 group list
ctl2 rule list
ctl2 services
ctl2 rules
ctl2 drops
say "a few of node2's metrics (http://127.0.0.1:9312/metrics)"
python3 -c '
import urllib.request
for l in urllib.request.urlopen("http://127.0.0.1:9312/metrics", timeout=5).read().decode().splitlines():
    if l.startswith(("weir_control_resyncs", "weir_control_table_entries", "weir_dataplane_up")) or "policy_denied" in l:
        print("  " + l)
'
say "the tables weir-control computed for node2"
"$BIN/weir-control" dump --node node2
[ "$quiet" = 1 ] || { echo; echo "(logs in $WORK; press Enter to tear down)"; read -r _ || true; }
say "done"
