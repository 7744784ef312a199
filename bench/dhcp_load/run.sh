#!/usr/bin/env bash
# DHCP load benchmark (issue 11): ankanetd (memory and file lease store), dnsmasq and Kea under the
# same workload, from one generator (bench/dhcp_load/dhcp_load.cpp, whose top comment says how it
# paces and counts).
#
#   bench/dhcp_load/run.sh [--out DIR] [--build-dir DIR] [--rates "2000 5000 10000"] [--duration S]
#                          [--clients N] [--servers "ankanetd-memory ankanetd-file dnsmasq kea"]
#                          [--isolate] [--strace] [--keep-temp]
#
# Needs root (network namespaces, raw sockets) on Debian 12; installs the Debian packages it lacks.
# Prints one Markdown table and writes it, with a CSV of every figure, into DIR (default
# bench/dhcp_load/results/) as dhcp_load-<time>.{md,csv}. Takes about two minutes.
#
# Containment. Every frame stays on unix sockets or inside network namespaces this script creates
# (named dl<pid>-*): ankanetd runs in a namespace of its own, in host mode (no route beyond the
# host); dnsmasq and Kea run in a namespace whose only interface besides lo is one end of a veth
# pair, and the generator sits in another namespace at the other end. Nothing is attached to, or
# routed through, the machine's own interfaces. Every wait is bounded, every process runs under
# timeout(1), and an EXIT trap kills what was started (by PID) and deletes the namespaces.
#
# Workload, the same for every server: 1000 clients (1000 MACs 02:64:00:00:xx:xx), each warmed up
# with one exchange (not measured; it gives every client its lease, so the measured exchanges are
# renewals of a bound lease, which every server here answers with the same address), then, for
# each offered load, `--duration` seconds of paced DISCOVER→OFFER→REQUEST→ACK exchanges. One
# generator run per (server, load); the server keeps running across the loads of its row.
#   * ankanetd: every client is a VM of its own, one QEMU -netdev stream connection (ankanetd
#     binds each DHCP message to the port it arrived on: chaddr must be the port's MAC). A
#     --qemu-socket listener takes at most 256 connections, so 4 listeners × 250 clients.
#   * dnsmasq, Kea: one AF_PACKET socket on the generator's veth end, one source MAC per client.
#
# Columns. completed/s: exchanges ACKed within the timeout (1 s after their DISCOVER), per second
# of the measured window. drops: exchanges started and not ACKed in time (timeouts and NAKs), count
# and % of those started. not started: starts that were due while all 1000 clients had an exchange
# in flight (the offered load exceeds what 1000 clients at the current latency can carry; by
# Little's law 10000/s needs the exchange to take under 100 ms). Latency: DISCOVER sent → ACK
# received, mean and 99th percentile. Generator, server and ping share the machine's cores.
#
# Bystander (ankanetd rows): a network namespace attached with --netns, with the static address
# 10.64.15.250 (outside the DHCP range), pings the gateway every 10 ms: once idle before the row's
# loads, and during each measured window. Its avg/max RTT shows what the flood costs other VMs.
#
# Choices, and why:
#   * ankanetd --dhcp-rate 1000/1000: by default a VM may send 10 DHCP messages a second (burst 30),
#     a defence against one guest flooding the server. Each simulated client here sends up to
#     2 × 10 messages a second at 10000 exchanges/s over 1000 clients, so the default would
#     measure the rate limit, not the server; 1000/1000 lifts it well above the workload.
#   * ankanetd as configured by default (VMs not isolated): a client's DHCP broadcast is taken by
#     the gateway before the switch (the DHCP guard), so it is not copied to the 999 other VMs.
#     (Before the guard, that fan-out — 999 copies of each DISCOVER and REQUEST — was what got
#     measured; `--isolate` adds the row "ankanetd-memory-isolated" for comparison.)
#   * ankanetd --mode host, in its own namespace: the DHCP server is the same as in shared mode,
#     and host mode has no route beyond the host at all.
#   * dnsmasq --no-ping: dnsmasq otherwise pings an address before it first offers it; ankanetd and
#     Kea (without its ping-check hook) do not, and the generator answers no ping. With warmed-up
#     leases it would only touch the warm-up anyway. --quiet-dhcp: no log line per message (the
#     others log no per-message line either). --dhcp-lease-max 4096: dnsmasq's default is 1000.
#   * Kea: Debian's 2.2 with its defaults (multi-threading off in 2.2), raw sockets, memfile
#     lease backend with lfc-interval 0 (no lease-file cleanup process during the run).
#   * Lease-file durability, as strace -f -c showed it (run with `--strace` to see the counts again;
#     the servers then run under strace, so that run's table is for the counts, not the speed):
#       - ankanetd --leases: rewrites the whole file — FILE.tmp, fsync, rename over FILE, fsync of
#         the directory (include/ankanet/dhcp/lease_store.hpp). In write_mode::immediate that is
#         once per lease change, every renewal included, on the thread that moves every VM's
#         frames; in write_mode::background a writer thread does one rewrite for all the changes
#         made since its last one (group commit), and each ACK waits for the rewrite holding its
#         lease (ankanetd uses background since the group-commit change, ff07075). Whichever it
#         uses is what the ankanetd-file row measures.
#       - dnsmasq 2.90: rewrites its lease file in place (ftruncate, writes) and fsyncs it, about
#         once per ACK (changes handled in one pass of its loop share one rewrite), on its only
#         thread: while it waits for the disk its UDP socket buffer fills and the kernel drops
#         DISCOVERs — the server_udp_rcvbuf_drops column of the CSV counts them.
#       - Kea 2.2 memfile: appends one CSV line per lease change (one write()), never fsyncs.
#     So ankanetd-file and dnsmasq wait for the disk (the temporary directory is under /tmp: put
#     TMPDIR on another file system to measure that one), ankanetd-memory and Kea do not.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

out_dir=$repo/bench/dhcp_load/results
build_dir=$repo/build-dhcp-load
rates=(2000 5000 10000)
duration=4
clients=1000
servers=(ankanetd-memory ankanetd-file dnsmasq kea)
isolated_row=0
with_strace=0
keep_temp=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out_dir=$(realpath -m "$2"); shift 2 ;;
    --build-dir) build_dir=$(realpath -m "$2"); shift 2 ;;
    --rates) read -r -a rates <<< "$2"; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --servers) read -r -a servers <<< "$2"; shift 2 ;;
    --isolate) isolated_row=1; shift ;;
    --strace) with_strace=1; shift ;;
    --keep-temp) keep_temp=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "run.sh: needs root (network namespaces, raw sockets)" >&2; exit 1; }
[[ "$duration" =~ ^[0-9]+$ ]] && [ "$duration" -ge 1 ] && [ "$duration" -le 30 ] ||
  { echo "run.sh: --duration is whole seconds, 1 to 30" >&2; exit 2; }
[[ "$clients" =~ ^[0-9]+$ ]] && [ "$clients" -ge 1 ] && [ "$clients" -le 1000 ] ||
  { echo "run.sh: --clients is 1 to 1000 (4 ankanetd listeners × 250)" >&2; exit 2; }

# --- Clean-up ------------------------------------------------------------------------------------
work=""
policy_added=0   # whether this script wrote /usr/sbin/policy-rc.d (removed again)
prefix=dl$$
namespaces=()
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do stop_process "$pid"; done
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  if [ "$policy_added" -eq 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
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

# --- Packages and build --------------------------------------------------------------------------
needed=(libbenchmark-dev dnsmasq-base kea-dhcp4-server iproute2 iputils-ping procps ethtool)
if [ "$with_strace" -eq 1 ]; then needed+=(strace); fi
missing=()
for package in "${needed[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$package")
done
scripts/install-deps.sh   # what building needs
if [ ${#missing[@]} -gt 0 ]; then
  echo "run.sh: installing ${missing[*]}"
  # kea-dhcp4-server ships a service; keep apt from starting it (Debian's policy-rc.d convention),
  # unless the machine already has a policy of its own.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy_added=1
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${missing[@]}" ||
    { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; }
  if [ "$policy_added" -eq 1 ]; then rm -f /usr/sbin/policy-rc.d; policy_added=0; fi
fi
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DANKANET_BUILD_TESTS=OFF \
      -DANKANET_BUILD_BENCH=ON -DANKANET_BUILD_EXAMPLES=ON -DANKANET_BUILD_FUZZ=OFF > /dev/null
cmake --build "$build_dir" --target ankanetd dhcp_load
ankanetd=$build_dir/examples/ankanetd
generator=$build_dir/bench/dhcp_load/dhcp_load
dnsmasq=/usr/sbin/dnsmasq
kea=/usr/sbin/kea-dhcp4

work=$(mktemp -d -t dhcp-load.XXXXXX)

rate_option=(--dhcp-rate 1000/1000)
if ! "$ankanetd" --help | grep -q -- '--dhcp-rate'; then
  echo "run.sh: this ankanetd has no --dhcp-rate: its default per-VM limit (10 messages/s) caps every ankanetd row" >&2
  rate_option=()
fi

new_namespace() {
  ip netns add "$1"
  namespaces+=("$1")
  ip netns exec "$1" ip link set lo up
  ip netns exec "$1" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

# descendants PID: the PIDs below PID, deepest first (a server under timeout(1), ip netns exec, and
# strace: strace detaches rather than kills its tracee on SIGTERM, so the server is signalled itself).
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

delete_namespace() {
  local remaining=() ns
  ip netns del "$1" 2>/dev/null || true
  for ns in "${namespaces[@]}"; do [ "$ns" != "$1" ] && remaining+=("$ns"); done
  namespaces=("${remaining[@]}")
}

# wait_for DESCRIPTION COMMAND...: polls COMMAND every 0.1 s, 10 s at most.
wait_for() {
  local what=$1; shift
  for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "run.sh: timed out waiting for $what" >&2
  return 1
}

# --- Measuring -----------------------------------------------------------------------------------
subnet_gateway=10.64.0.1
range_first=10.64.0.10
range_last=10.64.11.255
bystander_address=10.64.15.250
ping_interval=0.01

# ping_stats NS COUNT DEADLINE: "avg max loss%" of COUNT pings of the gateway from NS ("- - -" if none).
ping_stats() {
  local output
  output=$(timeout $(( $3 + 5 )) ip netns exec "$1" ping -q -n -i "$ping_interval" -c "$2" -w "$3" -W 1 "$subnet_gateway" 2>&1 || true)
  local rtt loss
  rtt=$(sed -n 's|^rtt min/avg/max/mdev = \([0-9.]*\)/\([0-9.]*\)/\([0-9.]*\)/.*|\2 \3|p' <<< "$output")
  loss=$(sed -n 's|.* \([0-9.]*\)% packet loss.*|\1|p' <<< "$output")
  echo "${rtt:-- -} ${loss:--}"
}

# cpu_ticks PID: the user + system CPU time of PID so far, in clock ticks.
cpu_ticks() { { sed 's/.*) //' /proc/"$1"/stat | awk '{ print $12 + $13 }'; } 2>/dev/null || true; }
clock_ticks=$(getconf CLK_TCK)

# udp_rcvbuf_errors NS: UDP datagrams the kernel dropped in NS because a socket's buffer was full.
udp_rcvbuf_errors() {
  ip netns exec "$1" awk '/^Udp:/ { if (!seen) { for (i = 1; i <= NF; i++) column[$i] = i; seen = 1 }
                                    else print $column["RcvbufErrors"] }' /proc/net/snmp
}

# The server being measured, set by run_ankanetd and run_peer: its PID (what was started: timeout,
# or ip netns exec), the namespace whose UDP drops count as its own ("-": none, ankanetd reads unix
# sockets), and the bystander's namespace and idle ping ("-": none).
server_pid=""
server_ns=-
bystander=-
idle_ping="- - -"

results=()   # one CSV line per row
csv_header="server,offered_per_s,duration_s,clients,bound,lost_clients,offered,started,not_started,completed,completed_per_s,dropped,dropped_pct,naks,timeouts_no_offer,timeouts_no_ack,send_failed,lat_mean_ms,lat_p50_ms,lat_p99_ms,lat_max_ms,stray_stale,stray_unexpected,server_cpu_pct,generator_cpu_pct,server_udp_rcvbuf_drops,ping_idle_avg_ms,ping_idle_max_ms,ping_flood_avg_ms,ping_flood_max_ms,ping_flood_loss_pct"

# measure ROW RATE WARMUP_LIMIT LAUNCHER... -- GENERATOR_ARGS...: one generator run (started through
# LAUNCHER, e.g. ip netns exec NS) against the current server, with its CPU time, its UDP drops and
# the bystander's ping over the measured window; appends a line to results.
measure() {
  local row=$1 rate=$2 warmup_limit=$3; shift 3
  local launcher=()
  while [ "$1" != "--" ]; do launcher+=("$1"); shift; done
  shift
  local ready=$work/ready-$row-$rate log=$work/generator-$row-$rate.log
  rm -f "$ready"
  local udp_drops_before=""
  if [ "$server_ns" != "-" ]; then udp_drops_before=$(udp_rcvbuf_errors "$server_ns"); fi
  timeout $(( warmup_limit + duration + 15 )) "${launcher[@]}" "$generator" "$@" --clients "$clients" --rate "$rate" \
    --duration "$duration" --timeout-ms 1000 --warmup-limit "$warmup_limit" --ready-file "$ready" > "$log.out" 2> "$log" &
  local generator_pid=$!
  pids+=("$generator_pid")
  for _ in $(seq $(( (warmup_limit + 5) * 10 ))); do [ -e "$ready" ] || ! kill -0 "$generator_pid" 2>/dev/null && break; sleep 0.1; done
  local server_process cpu_before="" wall_before
  server_process=$(descendants "$server_pid")   # deepest first: the server itself, below timeout (and strace)
  server_process=${server_process%%$'\n'*}
  cpu_before=$(cpu_ticks "$server_process")
  wall_before=$(date +%s.%N)
  local flood_ping="- - -"
  if [ "$bystander" != "-" ] && [ -e "$ready" ]; then
    # Pings for 90% of the window, from its start, so none falls after it.
    flood_ping=$(ping_stats "$bystander" $(( duration * 90 )) "$duration")
  fi
  local status=0
  wait "$generator_pid" || status=$?
  local cpu_after wall_after server_cpu="-" udp_drops="-"
  cpu_after=$(cpu_ticks "$server_process")
  wall_after=$(date +%s.%N)
  if [ -n "$cpu_before" ] && [ -n "$cpu_after" ]; then
    server_cpu=$(awk -v t="$(( cpu_after - cpu_before ))" -v hz="$clock_ticks" -v a="$wall_before" -v b="$wall_after" \
                 'BEGIN { printf "%.0f", 100 * t / hz / (b - a) }')
  fi
  if [ -n "$udp_drops_before" ]; then udp_drops=$(( $(udp_rcvbuf_errors "$server_ns") - udp_drops_before )); fi
  local remaining=() p
  for p in "${pids[@]}"; do [ "$p" != "$generator_pid" ] && remaining+=("$p"); done
  pids=("${remaining[@]}")
  local line
  line=$(grep '^dhcp_load ' "$log.out" || true)
  if [ -z "$line" ]; then
    echo "run.sh: $row at $rate/s: the generator gave no result (exit $status):" >&2
    tail -5 "$log" >&2
    return 1
  fi
  sed 's/^/  /' "$log" >&2
  declare -A v
  local pair
  for pair in ${line#dhcp_load }; do v[${pair%%=*}]=${pair#*=}; done
  local ping_idle=($idle_ping) ping_flood=($flood_ping)
  results+=("$row,$rate,${v[duration_s]},${v[clients]},${v[bound]},${v[lost_clients]},${v[offered]},${v[started]},${v[not_started]},${v[completed]},${v[completed_per_s]},${v[dropped]},${v[dropped_pct]},${v[naks]},${v[timeouts_no_offer]},${v[timeouts_no_ack]},${v[send_failed]},${v[lat_mean_ms]},${v[lat_p50_ms]},${v[lat_p99_ms]},${v[lat_max_ms]},${v[stray_stale]},${v[stray_unexpected]},$server_cpu,${v[cpu_pct]},$udp_drops,${ping_idle[0]},${ping_idle[1]},${ping_flood[0]},${ping_flood[1]},${ping_flood[2]}")
  echo "run.sh: $row $rate/s: ${v[completed_per_s]} completed/s, ${v[dropped]} dropped, ${v[not_started]} not started, latency mean ${v[lat_mean_ms]} ms p99 ${v[lat_p99_ms]} ms; server CPU $server_cpu%, generator CPU ${v[cpu_pct]}%, server UDP drops $udp_drops; bystander ping avg/max idle ${ping_idle[0]}/${ping_idle[1]} ms, flood ${ping_flood[0]}/${ping_flood[1]} ms" >&2
}

# strace_summary NAME FILE: the lease-file-relevant lines of an strace -c report, kept for the report.
strace_summary() {
  {
    echo "strace -f -c of $1 (fsync family, writes, renames): calls"
    grep -E ' (fsync|fdatasync|sync_file_range|msync|write|writev|pwrite64|rename|renameat2?|ftruncate)$' "$2" |
      awk '{ printf "    %-16s %s\n", $NF, $4 }' || true   # columns: % time, seconds, usecs/call, calls
  } | tee -a "$work/strace-summary.txt" >&2
}

# --- ankanetd --------------------------------------------------------------------------------------
# run_ankanetd ROW RATES ISOLATE WARMUP_LIMIT [--leases FILE]: one ankanetd, its bystander, its loads.
run_ankanetd() {
  local row=$1 row_rates=($2) isolate=$3 warmup_limit=$4; shift 4
  local ns=$prefix-anka sockets=() socket_args=() generator_args=()
  bystander=$prefix-by
  new_namespace "$ns"
  new_namespace "$bystander"
  mkdir -p "$work/$row"
  local i
  for i in 0 1 2 3; do
    sockets+=("$work/$row/q$i")
    socket_args+=(--qemu-socket "$work/$row/q$i")
    generator_args+=(--qemu-socket "$work/$row/q$i")
  done
  local isolate_option=()
  if [ "$isolate" -eq 1 ]; then isolate_option=(--isolate); fi
  local tracer=()
  if [ "$with_strace" -eq 1 ]; then tracer=(strace -f -c -o "$work/$row/strace.txt"); fi
  ip netns exec "$ns" timeout 600 "${tracer[@]}" "$ankanetd" --mode host --subnet "$subnet_gateway/20" \
    --dhcp-range "$range_first-$range_last" "${isolate_option[@]}" "${rate_option[@]}" "$@" \
    --netns "$bystander,ifname=eth0,mac=02:65:00:00:00:01" "${socket_args[@]}" 2> "$work/$row/ankanetd.log" &
  server_pid=$!
  server_ns=-
  pids+=("$server_pid")
  for i in "${sockets[@]}"; do
    wait_for "ankanetd's socket $i" test -S "$i" || { tail -5 "$work/$row/ankanetd.log" >&2; return 1; }
  done
  wait_for "the bystander's TAP" ip netns exec "$bystander" ip link show eth0
  ip netns exec "$bystander" ip addr add "$bystander_address/20" dev eth0
  ip netns exec "$bystander" ip link set eth0 up
  wait_for "the bystander's first ping" ip netns exec "$bystander" ping -c 1 -W 1 "$subnet_gateway"
  idle_ping=$(ping_stats "$bystander" 200 4)
  local rate
  for rate in "${row_rates[@]}"; do
    measure "$row" "$rate" "$warmup_limit" -- "${generator_args[@]}"
    sleep 1   # ankanetd detaches the last run's 1000 connections (a listener takes 256 at most)
  done
  stop_process "$server_pid"
  if [ "$with_strace" -eq 1 ]; then strace_summary "$row" "$work/$row/strace.txt"; fi
  delete_namespace "$bystander"
  delete_namespace "$ns"
  bystander=-
  idle_ping="- - -"
}

# --- dnsmasq and Kea: a veth pair between two namespaces ------------------------------------------
# run_peer ROW: the server in one namespace, the generator's raw socket in another.
run_peer() {
  local row=$1
  local server_ns_name=$prefix-srv client_ns=$prefix-cli
  new_namespace "$server_ns_name"
  new_namespace "$client_ns"
  ip link add dl-cli netns "$client_ns" type veth peer name dl-srv netns "$server_ns_name"
  ip netns exec "$server_ns_name" ip addr add "$subnet_gateway/20" dev dl-srv
  # dnsmasq replies through a kernel UDP socket, whose checksum a veth leaves for "the NIC" to fill
  # in (CHECKSUM_PARTIAL); the generator's raw socket would see it unfinished and, checking every
  # checksum, refuse every reply. Checksummed in software instead, as for a NIC without offload.
  ip netns exec "$server_ns_name" ethtool -K dl-srv tx off > /dev/null
  ip netns exec "$server_ns_name" ip link set dl-srv up
  ip netns exec "$client_ns" ip link set dl-cli up
  mkdir -p "$work/$row"
  local tracer=()
  if [ "$with_strace" -eq 1 ]; then tracer=(strace -f -c -o "$work/$row/strace.txt"); fi
  case "$row" in
    dnsmasq)
      ip netns exec "$server_ns_name" timeout 600 "${tracer[@]}" "$dnsmasq" --keep-in-foreground --conf-file=/dev/null \
        --port=0 --no-resolv --no-hosts --user=root --interface=dl-srv --bind-interfaces \
        --dhcp-range="$range_first,$range_last,255.255.240.0,1h" --dhcp-authoritative --dhcp-lease-max=4096 \
        --dhcp-leasefile="$work/$row/dnsmasq.leases" --no-ping --quiet-dhcp \
        --pid-file="$work/$row/dnsmasq.pid" --log-facility="$work/$row/dnsmasq.log" 2> "$work/$row/stderr.log" &
      ;;
    kea)
      cat > "$work/$row/kea-dhcp4.json" <<EOF
{
  "Dhcp4": {
    "interfaces-config": { "interfaces": [ "dl-srv" ], "dhcp-socket-type": "raw" },
    "lease-database": { "type": "memfile", "persist": true, "name": "$work/$row/kea-leases4.csv", "lfc-interval": 0 },
    "valid-lifetime": 3600,
    "authoritative": true,
    "subnet4": [ {
      "id": 1,
      "subnet": "10.64.0.0/20",
      "pools": [ { "pool": "$range_first - $range_last" } ],
      "option-data": [ { "name": "routers", "data": "$subnet_gateway" } ]
    } ],
    "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "stdout" } ], "severity": "WARN" } ]
  }
}
EOF
      KEA_PIDFILE_DIR=$work/$row KEA_LOCKFILE_DIR=$work/$row \
        ip netns exec "$server_ns_name" timeout 600 "${tracer[@]}" "$kea" -c "$work/$row/kea-dhcp4.json" \
        > "$work/$row/kea.log" 2>&1 &
      ;;
  esac
  server_pid=$!
  server_ns=$server_ns_name
  pids+=("$server_pid")
  wait_for "$row listening on port 67" sh -c "ip netns exec $server_ns ss -uln | grep -q ':67 '" ||
    { tail -5 "$work/$row"/*.log >&2; return 1; }
  local rate
  for rate in "${rates[@]}"; do
    measure "$row" "$rate" 10 ip netns exec "$client_ns" -- --interface dl-cli
  done
  stop_process "$server_pid"
  if [ "$with_strace" -eq 1 ]; then strace_summary "$row" "$work/$row/strace.txt"; fi
  delete_namespace "$client_ns"
  delete_namespace "$server_ns_name"
  server_ns=-
}

started=$(date +%s)
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
for server in "${servers[@]}"; do
  echo "run.sh: $server" >&2
  case "$server" in
    ankanetd-memory)
      run_ankanetd ankanetd-memory "${rates[*]}" 0 10
      if [ "$isolated_row" -eq 1 ]; then
        echo "run.sh: ankanetd-memory-isolated (--isolate)" >&2
        run_ankanetd ankanetd-memory-isolated "${rates[*]}" 1 10
      fi
      ;;
    ankanetd-file) run_ankanetd ankanetd-file "${rates[*]}" 0 10 --leases "$work/ankanetd-file.leases" ;;
    dnsmasq|kea) run_peer "$server" ;;
    *) echo "run.sh: unknown server $server" >&2; exit 2 ;;
  esac
done

# --- Report --------------------------------------------------------------------------------------
mkdir -p "$out_dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
csv=$out_dir/dhcp_load-$stamp.csv
md=$out_dir/dhcp_load-$stamp.md
{ echo "$csv_header"; printf '%s\n' "${results[@]}"; } > "$csv"
{
  echo "DHCP load, $clients clients, ${duration} s per load, timeout 1 s; $(nproc) cores, load average $load_at_start at the start;" \
       "$(date -u '+%Y-%m-%d %H:%M UTC'); ankanet $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- include examples || echo ' with uncommitted changes');" \
       "dnsmasq $(dpkg-query -W -f='${Version}' dnsmasq-base), Kea $(dpkg-query -W -f='${Version}' kea-dhcp4-server)"
  echo
  echo "| server | offered/s | completed/s | drops | drops % | not started | mean ms | p99 ms | server CPU % | bystander ping avg/max ms: idle → flood |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  for line in "${results[@]}"; do
    IFS=, read -r server rate _ _ bound _ _ _ not_started _ per_s dropped pct _ _ _ _ mean _ p99 _ _ _ server_cpu _ _ \
      idle_avg idle_max flood_avg flood_max flood_loss <<< "$line"
    ping="–"
    [ "$idle_avg" != "-" ] && ping="$idle_avg/$idle_max → $flood_avg/$flood_max (loss $flood_loss%)"
    note=""
    [ "$bound" != "$clients" ] && note=" ($bound of $clients clients bound in warm-up)"
    echo "| $server$note | $rate | $per_s | $dropped | $pct | $not_started | $mean | $p99 | $server_cpu | $ping |"
  done
  if [ "$with_strace" -eq 1 ]; then
    echo
    echo "The servers ran under strace -f -c: these figures are for the system call counts, not the speed."
    echo
    echo '```'
    cat "$work/strace-summary.txt"
    echo '```'
  fi
} > "$md"
cat "$md"
echo
echo "run.sh: $(( $(date +%s) - started )) s; CSV $csv, table $md"
