#!/usr/bin/env bash
# The README's first command: installs what is missing, builds ankanetd and shows, step by step, what a
# VM on ankanet's shared network gets. The guest is a network namespace with its own kernel stack,
# behind a TAP that ankanetd attaches (--netns):
#   1. it asks for an address with a real DHCP client (busybox udhcpc) and shows the lease, with the
#      server identifier (192.168.64.1, the gateway);
#   2. it fetches a page from a web server on the host's 127.0.0.1, through the NAT, at the gateway
#      address (which ankanetd maps to the host's loopback);
#   3. it serves a page of its own, which the host fetches from 127.0.0.1 through a port forward;
#   4. it measures throughput both ways (a 512 MiB download each way, curl's own rate);
#   5. ankanetd's control socket lists the VM, and its log and lease file are shown.
# Nothing leaves the machine: ankanetd runs with --egress 127.0.0.0/8 (guests reach the host only)
# and a DNS upstream on 127.0.0.1:9 that nobody answers; the namespace, the servers and the daemon are
# gone when the script ends. Without root (no namespaces) it runs ankanet-demo's in-memory exchange.
#
#   scripts/demo.sh [--build-dir DIR] [--bin-dir DIR] [--transfer-mib N]
#     --build-dir DIR    where to build (default build-demo); the build is not counted in the demo's
#                        own time, which it prints at the end
#     --bin-dir DIR      use the ankanetd and ankanet-demo already built in DIR: install and build
#                        nothing (tests/e2e/examples_test.cpp runs the demo so)
#     --transfer-mib N   the size of each throughput download (default 512)
set -euo pipefail
build=build-demo
bin=""
transfer_mib=512
usage() { echo "usage: $0 [--build-dir DIR] [--bin-dir DIR] [--transfer-mib N]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build=${2:?--build-dir needs a directory}; shift 2 ;;
    --bin-dir) bin=${2:?--bin-dir needs a directory}; shift 2 ;;
    --transfer-mib) transfer_mib=${2:?--transfer-mib needs a size}; shift 2 ;;
    *) usage ;;
  esac
done
case "$transfer_mib" in ''|*[!0-9]*|0) echo "demo: --transfer-mib: a positive number of MiB" >&2; exit 2 ;; esac
if [ -n "$bin" ]; then bin=$(realpath -e "$bin") || { echo "demo: --bin-dir: no such directory" >&2; exit 2; }; fi
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ -z "$bin" ]; then
  scripts/install-deps.sh --demo
  # Only the examples: the test suite's packages (Catch2, ...) need not be installed for the demo.
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DANKANET_BUILD_TESTS=OFF -DANKANET_BUILD_BENCH=OFF -DANKANET_BUILD_FUZZ=OFF -DANKANET_BUILD_EXAMPLES=ON >/dev/null
  cmake --build "$build" --target ankanet-demo ankanetd
  bin=$build/examples
fi

if [ "$(id -u)" -ne 0 ] || [ ! -w /dev/net/tun ]; then
  echo "demo: not root or no /dev/net/tun: showing ankanet-demo's in-memory exchange instead"
  exec "$bin"/ankanet-demo
fi

started=$(date +%s.%N)
work=$(mktemp -d)
chmod 755 "$work"
guest="ankanet-demo-$$"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  ip netns del "$guest" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free TCP port on the host's loopback, from a range no well-known service uses.
free_port() {
  local port
  for _ in $(seq 50); do
    port=$(( 20000 + RANDOM % 10000 ))
    ss -Htln "sport = :$port" | grep -q . || { echo "$port"; return; }
  done
  echo "demo: no free port found" >&2; return 1
}
# wait_for WHAT COMMAND...: retries COMMAND for up to 5 s.
wait_for() {
  local what=$1; shift
  for _ in $(seq 50); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "demo: timed out waiting for $what" >&2; return 1
}
in_guest() { ip netns exec "$guest" "$@"; }
# rate BYTES SECONDS: Gbit/s.
rate() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.2f Gbit/s (%d MiB in %.2f s)", b * 8 / s / 1e9, b / 1048576, s }'; }

host_port=$(free_port)
forward_port=$(free_port)
mkdir -p "$work/host-www" "$work/guest-www"
echo "hello from the host's web server on 127.0.0.1:$host_port" > "$work/host-www/index.html"
echo "hello from the guest's web server, through ankanetd's port forward" > "$work/guest-www/index.html"
# Sparse files, one download each way, read from the page cache without using the disk.
truncate -s "${transfer_mib}M" "$work/host-www/big" "$work/guest-www/big"

step "ankanetd serves one guest (network namespace $guest) on the shared network"
ip netns add "$guest"
in_guest ip link set lo up
daemon_args=(--mode shared --netns "$guest" --leases "$work/leases" --control "$work/control"
             --egress 127.0.0.0/8 --dns-upstream 127.0.0.1:9 --forward "127.0.0.1:$forward_port:80")
echo "ankanetd ${daemon_args[*]}"
"$bin"/ankanetd "${daemon_args[@]}" 2> "$work/ankanetd.log" &
pids+=($!)
wait_for "the guest's NIC" in_guest ip link show eth0

step "1. the guest asks for an address (busybox udhcpc)"
# udhcpc's hook: configures what it was given and prints the lease (never resolv.conf: a demo).
cat > "$work/udhcpc.sh" <<'EOF'
#!/bin/sh
case "$1" in
  deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew) ip addr add "$ip/${mask:-24}" dev "$interface"
               ip route replace default via "${router%% *}" dev "$interface"
               echo "lease: $ip/$mask from server $serverid; router $router, dns $dns, for $lease s" ;;
esac
EOF
chmod +x "$work/udhcpc.sh"
in_guest busybox udhcpc -i eth0 -n -q -f -t 5 -s "$work/udhcpc.sh" 2>/dev/null | grep '^lease:'
address=$(in_guest ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)
[ -n "$address" ] || { echo "demo: the guest got no address" >&2; exit 1; }

step "2. the guest fetches a page from the host's 127.0.0.1:$host_port, at the gateway 192.168.64.1"
busybox httpd -f -p "127.0.0.1:$host_port" -h "$work/host-www" &
pids+=($!)
wait_for "the host's web server" sh -c "ss -Htln 'sport = :$host_port' | grep -q ."
echo "guest\$ curl http://192.168.64.1:$host_port/"
in_guest curl -sS --max-time 5 "http://192.168.64.1:$host_port/"

step "3. the host fetches a page the guest serves, through the forward 127.0.0.1:$forward_port -> $address:80"
# Started directly (not through in_guest, a function whose subshell would stand between): the PID
# is the server's own, so the EXIT trap stops it.
ip netns exec "$guest" busybox httpd -f -p 80 -h "$work/guest-www" &
pids+=($!)
wait_for "the guest's web server" in_guest sh -c "ss -Htln 'sport = :80' | grep -q ."
echo "host\$ curl http://127.0.0.1:$forward_port/"
curl -sS --max-time 5 "http://127.0.0.1:$forward_port/"

step "4. throughput, one $transfer_mib MiB download each way (curl, busybox httpd)"
read -r bytes seconds < <(in_guest curl -sS --max-time 30 -o /dev/null -w '%{size_download} %{time_total}\n' \
                            "http://192.168.64.1:$host_port/big")
echo "host -> guest through the NAT:     $(rate "$bytes" "$seconds")"
read -r bytes seconds < <(curl -sS --max-time 30 -o /dev/null -w '%{size_download} %{time_total}\n' \
                            "http://127.0.0.1:$forward_port/big")
echo "guest -> host through the forward: $(rate "$bytes" "$seconds")"

step "5. what ankanetd knows: its VMs (ankanetd ctl), its lease file, its log"
"$bin"/ankanetd ctl "$work/control" vms || true
echo "lease file:"
sed 's/^/  /' "$work/leases"
kill -TERM "${pids[0]}"
wait "${pids[0]}" || true
echo "ankanetd's log:"
sed 's/^/  /' "$work/ankanetd.log"
awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "\ndemo: done in %.1f s (the build before it not counted)\n", b - a }'
