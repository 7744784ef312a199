#!/usr/bin/env bash
# Installs what is missing, builds ankanet's examples and runs the main demo: ankanetd serving two
# guests — network namespaces with their own kernels — on one shared network. Each guest gets its
# address from ankanetd's DHCP server with busybox udhcpc, then pings the gateway and the other
# guest. Everything stays inside the two namespaces; they and the daemon are gone when it ends.
# Without root (no namespaces), it runs ankanet-demo's in-memory exchange instead.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# Only the examples: the test suite's packages (Catch2, ...) need not be installed for the demo.
build=build-demo
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DANKANET_BUILD_TESTS=OFF -DANKANET_BUILD_BENCH=OFF -DANKANET_BUILD_FUZZ=OFF -DANKANET_BUILD_EXAMPLES=ON
cmake --build "$build" --target ankanet-demo ankanetd

if [ "$(id -u)" -ne 0 ] || [ ! -w /dev/net/tun ] || ! command -v udhcpc >/dev/null; then
  echo "demo: not root, or no /dev/net/tun or udhcpc: showing the in-memory exchange instead"
  exec "$build"/examples/ankanet-demo
fi

work=$(mktemp -d)
guests=("ankanet-demo-a-$$" "ankanet-demo-b-$$")
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  for ns in "${guests[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# udhcpc's hook: configure the address and route it was given (never resolv.conf: this is a demo).
cat > "$work/udhcpc.sh" <<'EOF'
#!/bin/sh
case "$1" in
  deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew) ip addr add "$ip/${mask:-24}" dev "$interface"
               ip route replace default via "${router%% *}" dev "$interface"
               echo "  $interface: $ip/$mask, server $serverid, router $router, dns $dns, lease $lease s" ;;
esac
EOF
chmod +x "$work/udhcpc.sh"

args=(--mode shared --leases "$work/leases")
for ns in "${guests[@]}"; do
  ip netns add "$ns"
  args+=(--netns "$ns")
done
"$build"/examples/ankanetd "${args[@]}" 2> "$work/ankanetd.log" &
daemon_pid=$!
for ns in "${guests[@]}"; do
  for _ in $(seq 50); do ip netns exec "$ns" ip link show eth0 >/dev/null 2>&1 && break; sleep 0.1; done
done

declare -A address
for ns in "${guests[@]}"; do
  echo "guest $ns asks for an address (udhcpc):"
  ip netns exec "$ns" ip link set lo up
  ip netns exec "$ns" udhcpc -i eth0 -n -q -f -t 5 -s "$work/udhcpc.sh" 2>/dev/null | grep -E '^  eth0' || true
  address[$ns]=$(ip netns exec "$ns" ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)
done
a=${guests[0]} b=${guests[1]}
echo
echo "guest $a pings the gateway and guest $b (${address[$b]}):"
ip netns exec "$a" ping -c 2 -i 0.2 -W 2 192.168.64.1 | tail -2
ip netns exec "$a" ping -c 2 -i 0.2 -W 2 "${address[$b]}" | tail -2
echo
echo "the lease file ankanetd keeps:"
sed 's/^/  /' "$work/leases"
kill -TERM "$daemon_pid"
wait "$daemon_pid" || true
daemon_pid=""
echo
echo "ankanetd's log:"
sed 's/^/  /' "$work/ankanetd.log"
