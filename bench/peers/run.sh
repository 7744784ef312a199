#!/usr/bin/env bash
# NAT throughput side by side: a guest in a network namespace behind ankanetd (--netns), the same
# with ankanetd's TAP offloads off (--no-offload), pasta, slirp4netns, and a veth with kernel routing
# (the reference a user-space NAT cannot beat), reaching servers on the host; and VM→VM through one
# ankanetd beside a kernel bridge.
#
#   bench/peers/run.sh [--out DIR] [--build-dir DIR] [--mtus "1500 65520"] [--reps N]
#                      [--iperf-seconds S] [--rr-seconds S]
#                      [--peers "ankanet ankanet-plain pasta slirp4netns veth"] [--keep-temp]
#
# Needs root (network namespaces, TAP, veth, bridge) on Debian 12; installs what it lacks with
# scripts/install-deps.sh --test (passt, slirp4netns, iperf3, socat, gnuplot-nox). Prints one
# Markdown table and writes it, with a CSV of every run and a chart of the throughput cells, into DIR
# (default bench/peers/results/) as peers-<time>.{md,csv,png}. Takes about six and a half minutes
# with the defaults on a busy 2-core machine (391 s and 394 s at load averages 3.3 and 2.1; iperf3
# 2 s, RR/CRR 1 s, 3 repetitions, two MTUs: 46 iperf3 and 16 RR/CRR runs per repetition; the build
# not counted). The chart's title names the commit, with "+" when include/ or examples/ have
# uncommitted changes.
#
# Peers: ankanet, ankanet-plain (ankanetd --no-offload: its TAPs without the virtio-net header, so
# no TSO and no checksum offload: the lever's worth, side by side; skipped with a message when the
# daemon's --help lacks --no-offload), pasta, slirp4netns, veth. The ratio column is ankanet ÷ the
# best of pasta and slirp4netns (VM→VM: ankanet ÷ the kernel bridge).
#
# Cells, for each peer and each MTU:
#   * TCP throughput, iperf3 -t S: guest→host (the guest's iperf3 client sends) and host→guest (-R).
#   * fwd: TCP throughput host→guest through the peer's port forward, iperf3 -t S: the iperf3 server
#     runs in the guest namespace (port 5201, all its addresses), the client on the host sends to
#     127.0.0.1:P, which the peer forwards to the guest's port 5201. veth has no forward: its client
#     sends straight to the guest's address (the reference). pasta splices a forwarded connection
#     from the host's loopback to the namespace's loopback (socket to socket, no frames), which is
#     what a host client on 127.0.0.1 gets from it. A peer whose forward fails gives "–", not an abort.
#   * UDP guest→host, iperf3 -u -t S at a fixed offered load of 1 Gbit/s (-b 1G): the throughput the
#     host's server received and the loss %. Datagrams of 1400 bytes at MTU 1500 (MTU - 100 below
#     MTU 8028: one frame each, with room for IP options or a tunnel), 8000 bytes from MTU 8028 up
#     (65520 too): one frame each that would still cross a 9000-byte jumbo-frame LAN unfragmented,
#     so the cell keeps the per-datagram cost a user-space path pays instead of hiding it in rare
#     64 KB datagrams. --pacing-timer 100 (µs, iperf3's default is 1000) and -w 2M: the host's
#     iperf3 server is a user-space receiver on a 2-core machine, and with the default 208 KiB
#     socket buffer (about 150 datagrams of 1400 bytes) it overflowed while a peer was delivering
#     every datagram: the host's UdpRcvbufErrors equalled iperf3's lost count exactly, 0.6-14 % per
#     run, and -w 2M took it to 0 in the same hand runs. The buffer is asked for by the client for
#     both ends (iperf3 passes it on); the kernel caps it at net.core.rmem_max, which the script
#     raises to 4 MiB for the run when it is lower and puts back on exit. Loss is then the peer's.
#   * VM→VM TCP, iperf3 -t S from one guest (192.168.64.2) to another (192.168.64.3), both attached
#     to ONE ankanetd (two --netns, a TAP each, its switch between them) for ankanet and
#     ankanet-plain, and for veth a kernel bridge (two veth pairs into the same kind of namespaces);
#     in the table's row "VM→VM TCP" the veth (kernel) column is that bridge and the ratio is ankanet
#     ÷ kernel bridge. pasta and slirp4netns connect one namespace each (no switch): "–".
#   * RR: one TCP connection, 1-byte request, 1-byte response, for S seconds (bench/peers/tcp_rr.cpp):
#     transactions per second and the mean round trip. Not for ankanet-plain (1-byte segments use
#     no offload; the run stays short).
#   * CRR: connect, 1-byte request, 1-byte response, close, for S seconds: connections per second.
#     The server closes first (tcp_rr.cpp says why). Not for ankanet-plain either.
#   * CPU: user + system CPU seconds of the peer's process (/proc/PID/stat) over each iperf3 run
#     (fwd, UDP and VM→VM included), per GB (10^9 bytes) received. veth: none (the kernel's work).
# Every cell is run --reps times; the table shows the median, the CSV every run. The repetitions
# are interleaved (repetition 1: ankanet, ankanet-plain, pasta, slirp4netns, veth, then VM→VM for
# ankanet, ankanet-plain, the bridge; repetition 2: ...), so drift in a noisy machine's load hits
# every peer alike. All peers are set up once per MTU, idle while another is measured. The chart
# (bench/peers/plot.gp, gnuplot) draws the medians of the throughput cells, one panel per MTU.
#
# Containment. The servers (iperf3 -s, tcp_rr server) listen on the host's 127.0.0.1, or for the
# veth on the host end's address (10.211.47.1/30, a pair created here); the fwd and VM→VM cells'
# servers listen inside guest namespaces. Each guest is a namespace this script creates (pr<pid>-*),
# and reaches the host only through its peer's gateway address; the host reaches a guest only
# through a forward bound to the host's 127.0.0.1 (one port per peer, checked free), or the veth:
#   * ankanet: ankanetd --netns NS --mtu N --egress 127.0.0.0/8 --dns-upstream 127.0.0.1:9 (a dummy
#     resolver: nothing queries the machine's) --forward tcp:127.0.0.1:P:5201 (only when the
#     daemon's --help lists --forward; otherwise its fwd cell is "–"); static guest
#     192.168.64.2/24, gateway 192.168.64.1, which ankanetd maps to the host's 127.0.0.1.
#   * ankanet-plain: the same, its own namespace and daemon, plus --no-offload.
#   * pasta: pasta --config-net --netns NS with made-up addresses (-a 10.0.2.15 -n 24 -g 10.0.2.2,
#     -D none), one TCP forward host→namespace (-t 127.0.0.1/P:5201, bound to the host's loopback
#     only), none the other way and no inbound UDP forward (-u/-T/-U none), IPv4 only; its gateway
#     address is mapped to the host's loopback (the default, i.e. without --no-map-gw), for UDP as
#     for TCP, which the UDP cell uses. --runas 0: pasta otherwise drops to nobody before joining the
#     namespace and fails.
#   * slirp4netns: slirp4netns --configure --mtu N --netns-type=path --disable-dns --api-socket S
#     (S in the run's temporary directory); the guest is 10.0.2.100 and reaches the host's
#     loopback at 10.0.2.2 (host loopback left allowed, TCP and UDP); one forward is added through S
#     with add_hostfwd (tcp, host_addr 127.0.0.1, host_port P, guest_port 5201), sent with socat.
#   * veth: guest 10.211.47.2/30, host end 10.211.47.1/30, both ends at the MTU.
#   * VM→VM: namespaces pr<pid>-vm-PEER-a (192.168.64.2/24) and -b (192.168.64.3/24), no route
#     beyond their subnet. ankanet, ankanet-plain: one more ankanetd each (--netns A --netns B, the
#     same options as above, no forward). The kernel bridge (br0) and the host ends of its two veth
#     pairs live in a namespace of their own (pr<pid>-vm-bridge), not in the host's, so the host's
#     firewall and bridge settings neither see nor touch that traffic; no address on the bridge.
# Nothing is addressed to the machine's own networks or resolvers. Every process runs under
# timeout(1), every wait is bounded, and an EXIT trap kills what was started (by PID) and deletes
# the namespaces (the bridge with its own) and the veth.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

out_dir=$repo/bench/peers/results
build_dir=$repo/build-peers
mtus=(1500 65520)
reps=3
iperf_seconds=2
rr_seconds=1
peers=(ankanet ankanet-plain pasta slirp4netns veth)
keep_temp=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out_dir=$(realpath -m "$2"); shift 2 ;;
    --build-dir) build_dir=$(realpath -m "$2"); shift 2 ;;
    --mtus) read -r -a mtus <<< "$2"; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --iperf-seconds) iperf_seconds=$2; shift 2 ;;
    --rr-seconds) rr_seconds=$2; shift 2 ;;
    --peers) read -r -a peers <<< "$2"; shift 2 ;;
    --keep-temp) keep_temp=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "run.sh: needs root (network namespaces, TAP, veth)" >&2; exit 1; }
for n in "$reps" "$iperf_seconds" "$rr_seconds"; do
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 30 ] ||
    { echo "run.sh: --reps, --iperf-seconds and --rr-seconds are whole numbers, 1 to 30" >&2; exit 2; }
done
for mtu in "${mtus[@]}"; do
  [[ "$mtu" =~ ^[0-9]+$ ]] && [ "$mtu" -ge 576 ] && [ "$mtu" -le 65520 ] ||
    { echo "run.sh: MTUs are 576 to 65520" >&2; exit 2; }
done
for peer in "${peers[@]}"; do
  case "$peer" in ankanet|ankanet-plain|pasta|slirp4netns|veth) ;; *) echo "run.sh: unknown peer $peer" >&2; exit 2 ;; esac
done

# --- Clean-up ------------------------------------------------------------------------------------
work=""
prefix=pr$$
veth_host=prv$$h
namespaces=()
pids=()
saved_rmem_max="" # net.core.rmem_max before the run, when the UDP cell had to raise it
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do stop_process "$pid"; done
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  ip link del "$veth_host" 2>/dev/null || true
  if [ -n "$saved_rmem_max" ]; then sysctl -q -w net.core.rmem_max="$saved_rmem_max" || true; fi
  if [ -n "$work" ]; then
    if [ "$keep_temp" -eq 1 ] || [ "$status" -ne 0 ]; then
      echo "run.sh: logs kept in $work" >&2
    else
      rm -rf "$work"
    fi
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# descendants PID: the PIDs below PID, deepest first.
descendants() {
  local child
  for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    descendants "$child"
    echo "$child"
  done
}

# stop_process PID: SIGTERM to it and what it started, at most 3 s, then SIGKILL.
stop_process() {
  local pid=$1 tree remaining=() p
  tree=$(descendants "$pid")
  for p in $tree "$pid"; do
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
  for p in $tree "$pid"; do kill -KILL "$p" 2>/dev/null || true; done
  wait "$pid" 2>/dev/null || true
  for p in "${pids[@]}"; do [ "$p" != "$pid" ] && remaining+=("$p"); done
  pids=("${remaining[@]}")
}

# wait_for DESCRIPTION COMMAND...: polls COMMAND every 0.1 s, 10 s at most.
wait_for() {
  local what=$1; shift
  for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "run.sh: timed out waiting for $what" >&2
  return 1
}

# --- Packages and build --------------------------------------------------------------------------
needed=(passt slirp4netns iperf3 socat iproute2 procps python3 gnuplot-nox)
missing=()
for package in "${needed[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "run.sh: missing ${missing[*]}; running scripts/install-deps.sh --test" >&2
  scripts/install-deps.sh --test
fi
scripts/install-deps.sh > /dev/null   # what building needs
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DANKANET_BUILD_TESTS=OFF \
      -DANKANET_BUILD_BENCH=ON -DANKANET_BUILD_EXAMPLES=ON -DANKANET_BUILD_FUZZ=OFF > /dev/null
cmake --build "$build_dir" --target ankanetd tcp_rr flow_bytes
ankanetd=$build_dir/examples/ankanetd
tcp_rr=$build_dir/bench/peers/tcp_rr
flow_bytes=$build_dir/bench/peers/flow_bytes

work=$(mktemp -d -t peers.XXXXXX)
clock_ticks=$(getconf CLK_TCK)

# Ports on the host: one per peer for iperf3 (TCP and UDP: base + the peer's index), one per peer
# for its forward (the fwd cell; base + 10 + the index), one for tcp_rr (base + 19); checked free.
# In each guest the fwd and VM→VM cells' server is on 5201. The block lies outside the kernel's
# ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by default), above it where there is
# room: an ephemeral port a NAT's (or anyone's) outgoing connection took, and its TIME_WAIT, would
# otherwise make a forward's bind fail for the next MTU (it did, at 45430, with the CRR cell's
# thousands of connections a second).
read -r ephemeral_low ephemeral_high < /proc/sys/net/ipv4/ip_local_port_range
if [ $(( 65535 - ephemeral_high )) -ge 400 ]; then
  base_port=$(( ephemeral_high + 1 + ($$ % ((65535 - ephemeral_high) / 20 - 1)) * 20 ))
elif [ $(( ephemeral_low - 1024 )) -ge 400 ]; then
  base_port=$(( 1024 + ($$ % ((ephemeral_low - 1024) / 20 - 1)) * 20 ))
else
  base_port=$(( 40000 + ($$ % 1000) * 20 ))   # no room outside it: checked free below, as ever
fi
for port in $(seq "$base_port" $(( base_port + 19 ))); do
  if [ -n "$(ss -Htuan "sport = :$port")" ]; then echo "run.sh: port $port is in use; run again" >&2; exit 1; fi
done
rr_port=$(( base_port + 19 ))
guest_fwd_port=5201
# What this ankanetd offers, from its --help, read whole first: `ankanetd --help | grep -q` fails
# under pipefail whenever grep's early exit kills ankanetd with SIGPIPE mid-text (it did: a run
# lost both ankanet fwd cells, "no --forward").
ankanetd_help=$("$ankanetd" --help 2>&1 || true)
ankanetd_forward=0
if grep -q -- '--forward' <<< "$ankanetd_help"; then ankanetd_forward=1; fi
# ankanet-plain needs --no-offload; an ankanetd without it has no such peer (the column stays "–").
ankanetd_no_offload=0
if grep -q -- '--no-offload' <<< "$ankanetd_help"; then ankanetd_no_offload=1; fi
plain_note=""
if [ "$ankanetd_no_offload" -eq 0 ] && [[ " ${peers[*]} " == *" ankanet-plain "* ]]; then
  echo "run.sh: this ankanetd has no --no-offload: skipping the peer ankanet-plain" >&2
  plain_note="ankanet-plain skipped: this ankanetd has no --no-offload"
  kept=()
  for peer in "${peers[@]}"; do [ "$peer" != ankanet-plain ] && kept+=("$peer"); done
  peers=("${kept[@]}")
fi
# UDP cell: offered load, and the datagram size for an MTU (the header says why these).
udp_rate=1G
udp_buffer=2M
if [ "$(sysctl -n net.core.rmem_max)" -lt 4194304 ]; then
  saved_rmem_max=$(sysctl -n net.core.rmem_max)
  sysctl -q -w net.core.rmem_max=4194304
fi
udp_length() { if [ "$1" -ge 8028 ]; then echo 8000; else echo $(( $1 - 100 )); fi; }
# VM→VM cell: the two guests' addresses (inside the script's own namespaces only).
vm_address_a=192.168.64.2
vm_address_b=192.168.64.3
veth_host_address=10.211.47.1
veth_guest_address=10.211.47.2
if grep -q ' 10\.211\.47\.' <<< "$(ip -4 -o addr show)"; then echo "run.sh: 10.211.47.0/30 is in use on this machine" >&2; exit 1; fi

new_namespace() {
  ip netns add "$1"
  namespaces+=("$1")
  ip netns exec "$1" ip link set lo up
  ip netns exec "$1" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

delete_namespace() {
  local remaining=() ns
  ip netns del "$1" 2>/dev/null || true
  for ns in "${namespaces[@]}"; do [ "$ns" != "$1" ] && remaining+=("$ns"); done
  namespaces=("${remaining[@]}")
}

# The peers' state for the current MTU: namespace, the address the guest connects to, the host
# address the servers bind, the PID of the process doing the work (empty for veth), the iperf3 port,
# and the address and port the fwd cell's client on the host sends to (the peer's forward).
declare -A peer_ns peer_target peer_server peer_pid peer_launcher peer_port peer_fwd_address peer_fwd_port

# main_pid PID: the deepest process below PID (the peer itself, below timeout), or PID.
main_pid() {
  local tree
  tree=$(descendants "$1")
  tree=${tree%%$'\n'*}
  echo "${tree:-$1}"
}

# start_peer PEER MTU INDEX: creates its namespace and attaches it.
start_peer() {
  local peer=$1 mtu=$2 index=$3 ns=$prefix-$1 log=$work/$1-$2.log
  new_namespace "$ns"
  peer_ns[$peer]=$ns
  peer_port[$peer]=$(( base_port + index ))
  peer_server[$peer]=127.0.0.1
  peer_pid[$peer]=""
  peer_fwd_address[$peer]=127.0.0.1
  peer_fwd_port[$peer]=$(( base_port + 10 + index ))
  local fwd_spec=${peer_fwd_port[$peer]}:$guest_fwd_port forward=() offload=()
  case "$peer" in
    ankanet|ankanet-plain)
      if [ "$ankanetd_forward" -eq 1 ]; then
        forward=(--forward "tcp:127.0.0.1:$fwd_spec")
      else
        echo "run.sh: this ankanetd has no --forward: $peer's fwd cell will be empty" >&2
      fi
      [ "$peer" = ankanet-plain ] && offload=(--no-offload)
      timeout 1200 "$ankanetd" --netns "$ns,ifname=eth0" --mtu "$mtu" --egress 127.0.0.0/8 \
        --dns-upstream 127.0.0.1:9 "${forward[@]}" "${offload[@]}" > "$log" 2>&1 &
      peer_launcher[$peer]=$!
      pids+=("$!")
      wait_for "ankanetd's TAP in $ns" ip netns exec "$ns" ip link show eth0 || { tail -5 "$log" >&2; return 1; }
      ip netns exec "$ns" ip link set eth0 mtu "$mtu"
      ip netns exec "$ns" ip addr add 192.168.64.2/24 dev eth0
      ip netns exec "$ns" ip link set eth0 up
      ip netns exec "$ns" ip route add default via 192.168.64.1
      # A static guest's address is known to the gateway once it ARPs (the forward follows it).
      ip netns exec "$ns" ping -c 1 -W 2 192.168.64.1 > /dev/null || true
      peer_target[$peer]=192.168.64.1
      ;;
    pasta)
      timeout 1200 pasta --foreground --quiet --runas 0 --config-net --netns "$ns" -I eth0 -m "$mtu" -4 \
        -a 10.0.2.15 -n 24 -g 10.0.2.2 -D none -t "127.0.0.1/$fwd_spec" -u none -T none -U none \
        --no-dhcp --no-dhcpv6 --no-ra > "$log" 2>&1 &
      peer_launcher[$peer]=$!
      pids+=("$!")
      wait_for "pasta's address in $ns" sh -c "ip netns exec $ns ip -4 addr show eth0 | grep -q 10.0.2.15" ||
        { tail -5 "$log" >&2; return 1; }
      ip netns exec "$ns" ip link set eth0 mtu "$mtu"
      peer_target[$peer]=10.0.2.2
      ;;
    slirp4netns)
      local api=$work/slirp4netns-$mtu.sock reply
      timeout 1200 slirp4netns --configure --mtu="$mtu" --netns-type=path --disable-dns --api-socket "$api" \
        "/run/netns/$ns" eth0 > "$log" 2>&1 &
      peer_launcher[$peer]=$!
      pids+=("$!")
      wait_for "slirp4netns's address in $ns" sh -c "ip netns exec $ns ip -4 addr show eth0 | grep -q 10.0.2.100" ||
        { tail -5 "$log" >&2; return 1; }
      peer_target[$peer]=10.0.2.2
      wait_for "slirp4netns's API socket $api" test -S "$api" || true
      reply=$(printf '{"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_addr": "127.0.0.1", "host_port": %d, "guest_port": %d}}' \
                "${peer_fwd_port[$peer]}" "$guest_fwd_port" | timeout 5 socat -t 5 - "UNIX-CONNECT:$api" 2>&1 || true)
      if [[ "$reply" != *'"return"'* ]]; then
        echo "run.sh: slirp4netns add_hostfwd failed (${reply:-no reply}): its fwd cell will be empty" >&2
      fi
      ;;
    veth)
      ip link add "$veth_host" mtu "$mtu" type veth peer name eth0 mtu "$mtu" netns "$ns"
      ip addr add "$veth_host_address/30" dev "$veth_host"
      ip link set "$veth_host" up
      ip netns exec "$ns" ip addr add "$veth_guest_address/30" dev eth0
      ip netns exec "$ns" ip link set eth0 up
      peer_target[$peer]=$veth_host_address
      peer_server[$peer]=$veth_host_address
      peer_fwd_address[$peer]=$veth_guest_address   # no forward: straight to the guest
      peer_fwd_port[$peer]=$guest_fwd_port
      peer_launcher[$peer]=""
      ;;
  esac
  if [ -n "${peer_launcher[$peer]}" ]; then
    sleep 0.3   # slirp4netns's helper child (it hands the TAP over, then exits)
    peer_pid[$peer]=$(main_pid "${peer_launcher[$peer]}")
    echo "run.sh: $peer at MTU $mtu: PID ${peer_pid[$peer]} ($(cat /proc/"${peer_pid[$peer]}"/comm 2>/dev/null))" >&2
  fi
}

stop_peer() {
  local peer=$1
  if [ -n "${peer_launcher[$peer]:-}" ]; then stop_process "${peer_launcher[$peer]}"; fi
  if [ "$peer" = veth ]; then ip link del "$veth_host" 2>/dev/null || true; fi
  delete_namespace "${peer_ns[$peer]}"
}

# The VM→VM pairs' state for the current MTU: the two namespaces (the client's, the server's), the
# bridge's namespace (veth only), and the PID of the ankanetd between them (empty for the bridge).
declare -A vm_ns_a vm_ns_b vm_ns_bridge vm_pid vm_launcher

# start_vm_pair PEER MTU: two guest namespaces, 192.168.64.2 and .3, joined by one ankanetd
# (ankanet, ankanet-plain) or by a kernel bridge in a third namespace (veth).
start_vm_pair() {
  local peer=$1 mtu=$2 a=$prefix-vm-$1-a b=$prefix-vm-$1-b log=$work/vm-$1-$2.log ns
  new_namespace "$a"
  new_namespace "$b"
  vm_ns_a[$peer]=$a
  vm_ns_b[$peer]=$b
  vm_ns_bridge[$peer]=""
  vm_pid[$peer]=""
  vm_launcher[$peer]=""
  case "$peer" in
    ankanet|ankanet-plain)
      local offload=()
      [ "$peer" = ankanet-plain ] && offload=(--no-offload)
      timeout 1200 "$ankanetd" --netns "$a,ifname=eth0" --netns "$b,ifname=eth0" --mtu "$mtu" \
        --egress 127.0.0.0/8 --dns-upstream 127.0.0.1:9 "${offload[@]}" > "$log" 2>&1 &
      vm_launcher[$peer]=$!
      pids+=("$!")
      for ns in "$a" "$b"; do
        wait_for "ankanetd's TAP in $ns" ip netns exec "$ns" ip link show eth0 || { tail -5 "$log" >&2; return 1; }
      done
      ;;
    veth)
      # The bridge and the host ends of the pairs in a namespace of their own, not the host's.
      local br=$prefix-vm-bridge
      new_namespace "$br"
      vm_ns_bridge[$peer]=$br
      ip -n "$br" link add br0 type bridge   # STP off (the default): ports forward at once
      for ns in "$a" "$b"; do
        ip -n "$br" link add "v${ns: -1}" mtu "$mtu" type veth peer name eth0 mtu "$mtu" netns "$ns"
        ip -n "$br" link set "v${ns: -1}" master br0
        ip -n "$br" link set "v${ns: -1}" up
      done
      ip -n "$br" link set br0 up
      ;;
  esac
  ip netns exec "$a" ip link set eth0 mtu "$mtu"
  ip netns exec "$b" ip link set eth0 mtu "$mtu"
  ip netns exec "$a" ip addr add "$vm_address_a/24" dev eth0
  ip netns exec "$b" ip addr add "$vm_address_b/24" dev eth0
  ip netns exec "$a" ip link set eth0 up
  ip netns exec "$b" ip link set eth0 up
  wait_for "$vm_address_b from $a ($peer)" ip netns exec "$a" ping -c 1 -W 1 "$vm_address_b" || { tail -5 "$log" >&2 2>/dev/null; return 1; }
  if [ -n "${vm_launcher[$peer]}" ]; then
    vm_pid[$peer]=$(main_pid "${vm_launcher[$peer]}")
    echo "run.sh: VM→VM $peer at MTU $mtu: PID ${vm_pid[$peer]} ($(cat /proc/"${vm_pid[$peer]}"/comm 2>/dev/null))" >&2
  fi
}

stop_vm_pair() {
  local peer=$1
  if [ -n "${vm_launcher[$peer]:-}" ]; then stop_process "${vm_launcher[$peer]}"; fi
  delete_namespace "${vm_ns_a[$peer]}"
  delete_namespace "${vm_ns_b[$peer]}"
  if [ -n "${vm_ns_bridge[$peer]:-}" ]; then delete_namespace "${vm_ns_bridge[$peer]}"; fi
}

# cpu_ticks PID: user + system CPU time of PID so far, in clock ticks ("" for no PID).
cpu_ticks() {
  [ -n "$1" ] || return 0
  { sed 's/.*) //' /proc/"$1"/stat | awk '{ print $12 + $13 }'; } 2>/dev/null || true
}

results=()   # mtu,rep,peer,metric,value
record() { results+=("$1,$2,$3,$4,$5"); }

# iperf PEER MTU REP DIRECTION(g2h|h2g|fwd|udp|vm): one iperf3 run, its throughput (and for udp its
# loss) and the peer's CPU per GB. g2h, h2g, udp: the server on the host, the client in the guest.
# fwd: the server in the guest (all its addresses), the client on the host, sending to the peer's
# forward. vm: the server in the pair's second guest, the client in its first.
iperf() {
  local peer=$1 mtu=$2 rep=$3 direction=$4 extra=() metric
  local json=$work/iperf-$peer-$mtu-$rep-$direction.json pid=${peer_pid[$1]:-}
  local server_side=() client_side=(ip netns exec "${peer_ns[$peer]:-}") bind=(-B "${peer_server[$peer]:-}")
  local port=${peer_port[$peer]:-} server_port=${peer_port[$peer]:-} target=${peer_target[$peer]:-}
  case "$direction" in
    g2h) metric=tcp_g2h ;;
    h2g) metric=tcp_h2g extra=(-R) ;;
    udp) metric=udp_g2h extra=(-u -b "$udp_rate" -l "$(udp_length "$mtu")" --pacing-timer 100 -w "$udp_buffer") ;;
    fwd)
      metric=tcp_fwd
      server_side=(ip netns exec "${peer_ns[$peer]}") client_side=() bind=()
      server_port=$guest_fwd_port port=${peer_fwd_port[$peer]} target=${peer_fwd_address[$peer]}
      ;;
    vm)
      metric=vm_tcp
      server_side=(ip netns exec "${vm_ns_b[$peer]}") client_side=(ip netns exec "${vm_ns_a[$peer]}")
      bind=(-B "$vm_address_b") server_port=$guest_fwd_port port=$guest_fwd_port target=$vm_address_b
      pid=${vm_pid[$peer]}
      ;;
  esac
  timeout $(( iperf_seconds + 20 )) "${server_side[@]}" iperf3 -s -1 "${bind[@]}" -p "$server_port" > "$json.server" 2>&1 &
  local server=$!
  pids+=("$server")
  if ! wait_for "iperf3 -s on $server_port" sh -c "${server_side[*]} ss -Htln 'sport = :$server_port' | grep -q ."; then
    stop_process "$server"; return 0
  fi
  local before after
  before=$(cpu_ticks "$pid")
  timeout $(( iperf_seconds + 15 )) "${client_side[@]}" iperf3 -c "$target" -p "$port" \
    -t "$iperf_seconds" --connect-timeout 3000 "${extra[@]}" -J > "$json" 2> "$json.err" || true
  after=$(cpu_ticks "$pid")
  stop_process "$server"
  # The receiver's view (end.sum_received): for UDP the bytes that arrived, and the loss % it counted.
  # Read with awk from iperf3's JSON (cJSON prints one key a line, and sum_received holds no nested
  # object): starting python3 to parse it took half a second a run here, a minute of a default run.
  local bytes bps loss
  read -r bytes bps loss <<< "$(awk '
    /"sum_received":/ { inside = 1; next }
    inside && /}/ { exit }
    inside { gsub(/[",\t ]/, ""); split($0, kv, ":"); v[kv[1]] = kv[2] }
    END { if (v["bytes"] == "") print "- - -"; else print v["bytes"], v["bits_per_second"], (v["lost_percent"] == "" ? "-" : v["lost_percent"]) }
  ' "$json" 2>/dev/null || echo "- - -")"
  if [ "${bytes:--}" = "-" ] || [ "$bytes" -eq 0 ]; then
    echo "run.sh: $peer mtu $mtu rep $rep $direction: iperf3 failed ($(tail -c 200 "$json" "$json.err" 2>/dev/null | tr '\n' ' '))" >&2
    return 0
  fi
  record "$mtu" "$rep" "$peer" "${metric}_gbps" "$(awk -v b="$bps" 'BEGIN { printf "%.3f", b / 1e9 }')"
  local loss_note=""
  if [ "$direction" = udp ] && [ "$loss" != "-" ]; then
    loss=$(awk -v l="$loss" 'BEGIN { printf "%.3f", l }')
    record "$mtu" "$rep" "$peer" udp_g2h_loss_pct "$loss"
    loss_note=", $loss % lost"
  fi
  local cpu_note=""
  if [ -n "$before" ] && [ -n "$after" ]; then
    local cpu_per_gb
    cpu_per_gb=$(awk -v t=$(( after - before )) -v hz="$clock_ticks" -v b="$bytes" 'BEGIN { printf "%.3f", t / hz / (b / 1e9) }')
    record "$mtu" "$rep" "$peer" "cpu_${direction}_s_per_gb" "$cpu_per_gb"
    cpu_note=", $cpu_per_gb CPU s/GB"
  fi
  echo "run.sh: $peer mtu $mtu rep $rep $direction: $(awk -v b="$bps" 'BEGIN { printf "%.2f", b / 1e9 }') Gbit/s$loss_note$cpu_note" >&2
}

# rr PEER MTU REP MODE(rr|crr)
rr() {
  local peer=$1 mtu=$2 rep=$3 mode=$4 line
  line=$(timeout $(( rr_seconds + 10 )) ip netns exec "${peer_ns[$peer]}" "$tcp_rr" "$mode" "${peer_target[$peer]}" \
         "$rr_port" "$rr_seconds" 2> "$work/$mode-$peer-$mtu-$rep.err" || true)
  local per_s mean
  per_s=$(sed -n 's/.* per_s=\([0-9.]*\).*/\1/p' <<< "$line")
  mean=$(sed -n 's/.* mean[a-z_]*_us=\([0-9.]*\).*/\1/p' <<< "$line")
  if [ -z "$per_s" ] || [ "$per_s" = "0.0" ]; then
    echo "run.sh: $peer mtu $mtu rep $rep $mode failed: $line $(tail -c 200 "$work/$mode-$peer-$mtu-$rep.err")" >&2
    return 0
  fi
  record "$mtu" "$rep" "$peer" "${mode}_per_s" "$per_s"
  [ "$mode" = rr ] && record "$mtu" "$rep" "$peer" rr_mean_us "$mean"
  echo "run.sh: $peer mtu $mtu rep $rep $mode: $per_s/s, mean $mean µs ($(sed -n 's/.*errors=\([0-9]*\).*/\1/p' <<< "$line") errors)" >&2
}

started=$(date +%s)
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)

# tcp_rr servers: on the host's loopback for the NAT peers (the whole run), on the veth's host end
# (per MTU, while the veth exists).
timeout 1200 "$tcp_rr" server 127.0.0.1 "$rr_port" 1100 2> "$work/tcp_rr-loopback.log" &
pids+=("$!")
wait_for "tcp_rr server on 127.0.0.1:$rr_port" sh -c "ss -Htln 'sport = :$rr_port' | grep -q ."

for mtu in "${mtus[@]}"; do
  echo "run.sh: MTU $mtu: setting up ${peers[*]}" >&2
  active=()
  index=0
  for peer in "${peers[@]}"; do
    if start_peer "$peer" "$mtu" "$index"; then active+=("$peer"); else echo "run.sh: $peer not attached at MTU $mtu" >&2; fi
    index=$(( index + 1 ))
  done
  veth_server=""
  if [ -n "${peer_ns[veth]:-}" ] && [[ " ${active[*]} " == *" veth "* ]]; then
    timeout 1200 "$tcp_rr" server "$veth_host_address" "$rr_port" 1100 2> "$work/tcp_rr-veth-$mtu.log" &
    veth_server=$!
    pids+=("$veth_server")
    wait_for "tcp_rr server on $veth_host_address:$rr_port" sh -c "ss -Htln 'sport = :$rr_port' | grep -qF '$veth_host_address:'"
  fi
  # Warm-up and readiness: one second of RR through each peer (not recorded).
  ready=()
  for peer in "${active[@]}"; do
    ok=0
    for _ in 1 2 3; do
      if timeout 8 ip netns exec "${peer_ns[$peer]}" "$tcp_rr" rr "${peer_target[$peer]}" "$rr_port" 1 > /dev/null 2>&1; then ok=1; break; fi
      sleep 0.5
    done
    if [ "$ok" -eq 1 ]; then ready+=("$peer"); else echo "run.sh: $peer does not reach the host at MTU $mtu" >&2; fi
  done
  # VM→VM: a pair for ankanet, ankanet-plain (one daemon each) and veth (the kernel bridge).
  vm_started=()
  vm_ready=()
  for peer in "${peers[@]}"; do
    case "$peer" in
      ankanet|ankanet-plain|veth)
        vm_started+=("$peer")
        if start_vm_pair "$peer" "$mtu"; then vm_ready+=("$peer"); else echo "run.sh: VM→VM $peer not set up at MTU $mtu" >&2; fi
        ;;
    esac
  done
  for rep in $(seq "$reps"); do
    for peer in "${ready[@]}"; do
      iperf "$peer" "$mtu" "$rep" g2h
      iperf "$peer" "$mtu" "$rep" h2g
      iperf "$peer" "$mtu" "$rep" fwd
      iperf "$peer" "$mtu" "$rep" udp
      # ankanet-plain differs from ankanet only in offloads, which 1-byte segments do not use.
      if [ "$peer" != ankanet-plain ]; then
        rr "$peer" "$mtu" "$rep" rr
        rr "$peer" "$mtu" "$rep" crr
      fi
    done
    for peer in "${vm_ready[@]}"; do iperf "$peer" "$mtu" "$rep" vm; done
  done
  if [ -n "$veth_server" ]; then stop_process "$veth_server"; fi
  for peer in "${active[@]}"; do stop_peer "$peer"; done
  for peer in "${vm_started[@]}"; do stop_vm_pair "$peer"; done
done

# --- Report --------------------------------------------------------------------------------------
flow_line=$("$flow_bytes" || true)
bytes_per_flow=$(sed -n 's/.*bytes_per_flow=\([0-9.]*\).*/\1/p' <<< "$flow_line")
mkdir -p "$out_dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
csv=$out_dir/peers-$stamp.csv
md=$out_dir/peers-$stamp.md
{ echo "mtu,rep,peer,metric,value"; printf '%s\n' "${results[@]}"; } > "$csv"
png=$out_dir/peers-$stamp.png
commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- include examples || echo '+')
header="NAT throughput side by side; median of $reps runs (iperf3 ${iperf_seconds} s, RR/CRR ${rr_seconds} s), interleaved;\
 $(nproc) cores, load average $load_at_start at the start; $(date -u '+%Y-%m-%d %H:%M UTC');\
 ankanet $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- include examples || echo ' with uncommitted changes');\
 pasta (passt) $(dpkg-query -W -f='${Version}' passt), slirp4netns $(dpkg-query -W -f='${Version}' slirp4netns),\
 iperf3 $(dpkg-query -W -f='${Version}' iperf3); kernel $(uname -r).\
 UDP: iperf3 -u -b $udp_rate -w $udp_buffer, datagrams of$(for mtu in "${mtus[@]}"; do printf ' %s (MTU %s)' "$(udp_length "$mtu")" "$mtu"; done).\
 ankanet-plain: ankanetd --no-offload${plain_note:+ ($plain_note)}.\
 VM→VM: two guests on one ankanetd; the veth (kernel) column is a kernel bridge between the same namespaces."
# The table, and for the chart one data file per MTU (rows: throughput cells; columns: peers).
python3 - "$csv" "$header" "${bytes_per_flow:--}" "$work/chart" > "$md" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
header, bytes_per_flow, chart_prefix = sys.argv[2], sys.argv[3], sys.argv[4]
peers = ["ankanet", "ankanet-plain", "pasta", "slirp4netns", "veth"]
nat, bridge = ("pasta", "slirp4netns"), ("veth",)
metrics = [  # key, label, higher is better, format, ratio against (None: no ratio), chart label
    ("tcp_g2h_gbps", "TCP guest→host, Gbit/s", True, "{:.2f}", nat, "TCP guest→host"),
    ("tcp_h2g_gbps", "TCP host→guest, Gbit/s", True, "{:.2f}", nat, "TCP host→guest"),
    ("tcp_fwd_gbps", "TCP host→guest through the port forward (veth: direct), Gbit/s", True, "{:.2f}", nat, "TCP fwd"),
    ("udp_g2h_gbps", "UDP guest→host at 1 Gbit/s offered, received Gbit/s", True, "{:.2f}", nat, "UDP guest→host"),
    ("udp_g2h_loss_pct", "UDP guest→host at 1 Gbit/s offered, loss %", False, "{:.2f}", None, None),
    ("vm_tcp_gbps", "VM→VM TCP (veth: kernel bridge; ratio: ÷ kernel bridge, target 0.80), Gbit/s", True, "{:.2f}", bridge, "VM→VM TCP"),
    ("rr_per_s", "RR, transactions/s", True, "{:.0f}", nat, None),
    ("rr_mean_us", "RR, mean round trip, µs", False, "{:.0f}", nat, None),
    ("crr_per_s", "CRR, connections/s", True, "{:.0f}", nat, None),
    ("cpu_g2h_s_per_gb", "peer CPU, guest→host, s/GB", False, "{:.2f}", nat, None),
    ("cpu_h2g_s_per_gb", "peer CPU, host→guest, s/GB", False, "{:.2f}", nat, None),
    ("cpu_fwd_s_per_gb", "peer CPU, host→guest through the port forward, s/GB", False, "{:.2f}", nat, None),
    ("cpu_udp_s_per_gb", "peer CPU, UDP guest→host, s/GB", False, "{:.2f}", nat, None),
    ("cpu_vm_s_per_gb", "peer CPU, VM→VM, s/GB", False, "{:.2f}", None, None),
]
mtus = sorted({int(r["mtu"]) for r in rows})
def values(mtu, peer, key):
    return [float(r["value"]) for r in rows if int(r["mtu"]) == mtu and r["peer"] == peer and r["metric"] == key]
print(header)
print()
print("| cell | MTU | ankanet | ankanet-plain (--no-offload) | pasta | slirp4netns | veth (kernel) | ankanet ÷ best of pasta, slirp4netns (VM→VM: ÷ kernel bridge) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
spreads = []
chart = {mtu: [] for mtu in mtus}
for key, label, higher, fmt, against, chart_label in metrics:
    for mtu in mtus:
        cells, med = [], {}
        for peer in peers:
            v = values(mtu, peer, key)
            if v:
                med[peer] = statistics.median(v)
                cells.append(fmt.format(med[peer]))
                spreads.append(f"{peer} {label} MTU {mtu}: " + ", ".join(fmt.format(x) for x in v))
            else:
                cells.append("–")
        others = [med[p] for p in (against or ()) if p in med]
        ratio = "–"
        if "ankanet" in med and others:
            best = max(others) if higher else min(others)
            if best > 0:
                ratio = "{:.2f}".format(med["ankanet"] / best)
        print(f"| {label} ({'higher' if higher else 'lower'} is better) | {mtu} | " + " | ".join(cells) + f" | {ratio} |")
        if chart_label:
            chart[mtu].append([chart_label] + [("%.4f" % med[p]) if p in med else "-" for p in peers])
print()
print(f"ankanet's TCP translator reserves {bytes_per_flow} bytes per flow (nat::tcp_translator::bytes_per_flow(), "
      "engine state + host-socket slot, bench/peers/flow_bytes.cpp); it holds no data buffers of its own: "
      "unacknowledged data stays in the host socket's buffers (MSG_PEEK).")
print()
print("Every run (the CSV has them too):")
print()
for line in spreads:
    print(f"- {line}")
for mtu in mtus:
    with open(f"{chart_prefix}-{mtu}.dat", "w") as f:
        f.write('cell ankanet "ankanet-plain (--no-offload)" pasta slirp4netns "veth (VM→VM: kernel bridge)"\n')
        for row in chart[mtu]:
            f.write('"' + row[0] + '" ' + " ".join(row[1:]) + "\n")
EOF
cat "$md"
echo
# The chart: grouped bars of the throughput cells' medians, one panel per MTU (bench/peers/plot.gp).
chart_files=""
for mtu in "${mtus[@]}"; do chart_files+="$work/chart-$mtu.dat:$mtu "; done
chart_title="ankanet peer benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, Linux $(uname -r), ankanet $commit; median of $reps (iperf3 ${iperf_seconds} s)"
if timeout 60 gnuplot -e "files='${chart_files% }'; out='$png'; heading='$chart_title'" \
     "$repo/bench/peers/plot.gp" 2> "$work/gnuplot.log"; then
  echo "run.sh: chart $png" >&2
else
  echo "run.sh: gnuplot failed, no chart: $(tail -c 300 "$work/gnuplot.log")" >&2
  png=""
fi
echo "run.sh: $(( $(date +%s) - started )) s; CSV $csv, table $md${png:+, chart $png}"
