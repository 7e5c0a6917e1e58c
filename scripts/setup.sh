#!/usr/bin/env bash
# Installs what weir needs on a fresh Debian 12 machine and reserves hugepages.
# Idempotent: safe to run again; it only installs what is missing.
set -euo pipefail

PKGS=(dpdk dpdk-dev libdpdk-dev libclang-dev clang pkg-config iproute2 iputils-ping ethtool
      procps psmisc netcat-openbsd python3)

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

# Hugepages: 2 MiB pages, WEIR_HUGEPAGES of them (default 1024 = 2 GiB).
want=${WEIR_HUGEPAGES:-1024}
have=$(cat /proc/sys/vm/nr_hugepages)
if [ "$have" -lt "$want" ]; then
    echo "$want" > /proc/sys/vm/nr_hugepages
fi
mkdir -p /dev/hugepages
mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages
echo "setup.sh: ok ($(cat /proc/sys/vm/nr_hugepages) hugepages, $(pkg-config --modversion libdpdk) libdpdk)"
