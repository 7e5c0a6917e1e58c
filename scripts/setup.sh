#!/usr/bin/env bash
# Installs what weir needs on a fresh Debian 12 machine and reserves hugepages.
# Idempotent: safe to run again; it only installs what is missing.
set -euo pipefail

PKGS=(dpdk dpdk-dev libdpdk-dev libclang-dev clang pkg-config iproute2 iputils-ping ethtool
      procps psmisc netcat-openbsd python3 tshark
      podman containernetworking-plugins busybox-static runc)

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup.sh: must run as root (packages and hugepages)" >&2
        exit 1
    fi
}
need_root

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# nginx-light: the Ingress test (dataplane/tests/loadbalancer.rs) runs it in
# a pod namespace. Installed with service starts refused (policy-rc.d), so
# that no system instance listens on the machine's port 80.
if ! dpkg-query -W -f='${Status}' nginx-light 2>/dev/null | grep -q "install ok installed"; then
    echo "setup.sh: installing nginx-light (not started)"
    guard=no
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        guard=yes
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends nginx-light >/dev/null || {
        apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx-light >/dev/null; }
    if [ "$guard" = yes ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

# podman as a CNI runtime (dataplane/tests/cni.rs): the CNI backend, runc
# (crun refuses these machines' hybrid cgroups) and ulimits under the hard
# open-file limit. Written only if absent: an existing file is left alone.
if [ ! -e /etc/containers/containers.conf ]; then
    mkdir -p /etc/containers
    cat > /etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=20000:20000"]

[network]
network_backend = "cni"
cni_plugin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]

[engine]
runtime = "runc"
CONF
fi

# Hugepages: 2 MiB pages, WEIR_HUGEPAGES of them (default 1024 = 2 GiB).
want=${WEIR_HUGEPAGES:-1024}
have=$(cat /proc/sys/vm/nr_hugepages)
if [ "$have" -lt "$want" ]; then
    echo "$want" > /proc/sys/vm/nr_hugepages
fi
mkdir -p /dev/hugepages
mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages
echo "setup.sh: ok ($(cat /proc/sys/vm/nr_hugepages) hugepages, $(pkg-config --modversion libdpdk) libdpdk)"
