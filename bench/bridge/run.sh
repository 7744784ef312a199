#!/usr/bin/env bash
# Bridge throughput side by side: a guest namespace on a "LAN" through ankanetd's bridge mode (MAC
# translation, and --direct-mac), and through a kernel bridge (`ip link add type bridge`) between
# the same kind of namespaces — the reference a user-space bridge is measured against.
#
#   bench/bridge/run.sh [--out DIR] [--build-dir DIR] [--mtus "1500 9000"] [--reps N] [--seconds S]
#                       [--peers "translate direct kernel"]
#
# Needs root. For each peer: a LAN namespace holding the far end of a veth (10.213.0.1/24, iperf3
# -s), the near end in this namespace as the uplink, and a guest namespace (10.213.0.10/24): for
# ankanet a TAP ankanetd creates (--mode bridge --bridge-interface NEAR [--direct-mac] --netns G),
# for the kernel a second veth whose host end joins a bridge with the near end. Every peer has its
# own namespaces and veths, all set up at once and idle while another is measured; repetitions are
# interleaved (rep 1: translate, direct, kernel; rep 2: ...) so a noisy machine's drift hits each
# alike. Cells: iperf3 TCP guest→LAN and LAN→guest (-R), -t S, the median of --reps runs; and for
# ankanetd its user + system CPU seconds per GB moved (/proc/PID/stat). The veths keep their default
# offloads (TSO, checksum), as a real LAN NIC would. Prints a Markdown table and writes it, with a
# CSV of every run, into DIR (default bench/bridge/results/) as bridge-<time>.{md,csv}.
#
# Containment: the only addresses are 10.213.0.0/24 inside the script's own namespaces; the near
# ends in this namespace carry no address. Every wait is bounded, every process runs under
# timeout(1), and an EXIT trap removes what was made.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

out_dir=$repo/bench/bridge/results
build_dir=$repo/build-peers
mtus=(1500 9000)
reps=3
seconds=3
peers=(translate direct kernel)
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out_dir=$(realpath -m "$2"); shift 2 ;;
    --build-dir) build_dir=$(realpath -m "$2"); shift 2 ;;
    --mtus) read -r -a mtus <<< "$2"; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --peers) read -r -a peers <<< "$2"; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "run.sh: needs root (namespaces, veth, TAP, AF_PACKET)" >&2; exit 1; }
for n in "$reps" "$seconds"; do
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 30 ] || { echo "run.sh: --reps and --seconds are 1 to 30" >&2; exit 2; }
done
for mtu in "${mtus[@]}"; do
  [[ "$mtu" =~ ^[0-9]+$ ]] && [ "$mtu" -ge 576 ] && [ "$mtu" -le 65520 ] || { echo "run.sh: MTUs are 576 to 65520" >&2; exit 2; }
done
for peer in "${peers[@]}"; do
  case "$peer" in translate|direct|kernel) ;; *) echo "run.sh: unknown peer $peer" >&2; exit 2 ;; esac
done

tag=bb$$
namespaces=()
links=()
pids=()
work=""
cleanup() {
  local status=$? pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do timeout 5 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; done
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  for link in "${links[@]}"; do ip link del "$link" 2>/dev/null || true; done
  [ -n "$work" ] && rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() {
  local what=$1; shift
  for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "run.sh: timed out waiting for $what" >&2
  return 1
}

if ! command -v iperf3 >/dev/null; then scripts/install-deps.sh --test; fi
scripts/install-deps.sh > /dev/null
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DANKANET_BUILD_TESTS=OFF \
      -DANKANET_BUILD_BENCH=ON -DANKANET_BUILD_EXAMPLES=ON -DANKANET_BUILD_FUZZ=OFF > /dev/null
cmake --build "$build_dir" --target ankanetd
ankanetd=$build_dir/examples/ankanetd
work=$(mktemp -d -t bridge.XXXXXX)
clock_ticks=$(getconf CLK_TCK)

# setup PEER MTU: the LAN, the guest and the path between them; sets daemon_pid[PEER].
declare -A daemon_pid
setup() {
  local peer=$1 mtu=$2 lan=$tag-$1-lan guest=$tag-$1-g near=$tag${1:0:1}n
  ip netns add "$lan"; namespaces+=("$lan")
  ip netns add "$guest"; namespaces+=("$guest")
  ip link add name "$near" mtu "$mtu" type veth peer name lan0 mtu "$mtu" netns "$lan"; links+=("$near")
  ip -n "$lan" link set lo up
  ip -n "$lan" link set lan0 up
  ip -n "$lan" addr add 10.213.0.1/24 dev lan0
  ip link set "$near" up
  timeout 900 ip netns exec "$lan" iperf3 -s -B 10.213.0.1 > "$work/$peer-iperf.log" 2>&1 &
  pids+=($!)
  if [ "$peer" = kernel ]; then
    local bridge=$tag-br guest_end=${tag}kg
    ip link add name "$bridge" type bridge; links+=("$bridge")
    ip link add name "$guest_end" mtu "$mtu" type veth peer name eth0 mtu "$mtu" netns "$guest"; links+=("$guest_end")
    ip link set "$near" master "$bridge"
    ip link set "$guest_end" master "$bridge"
    ip link set "$guest_end" up
    ip link set "$bridge" up
  else
    local direct=()
    [ "$peer" = direct ] && direct=(--direct-mac)
    timeout 900 "$ankanetd" --mode bridge --bridge-interface "$near" "${direct[@]}" --netns "$guest" \
      > "$work/$peer-ankanetd.log" 2>&1 &
    pids+=($!)
    wait_for "ankanetd's TAP in $guest" ip -n "$guest" link show eth0
    daemon_pid[$peer]=$(pgrep -P "$!" -x ankanetd) # timeout(1)'s child: whose CPU time is counted
  fi
  ip -n "$guest" link set lo up
  ip -n "$guest" link set eth0 up
  ip -n "$guest" addr add 10.213.0.10/24 dev eth0
  wait_for "the LAN from $guest" ip netns exec "$guest" ping -c 1 -W 1 10.213.0.1
  wait_for "iperf3 in $lan" ip netns exec "$lan" sh -c 'ss -Htln "sport = :5201" | grep -q .'
}

teardown() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do timeout 5 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; done
  pids=()
  # What each daemon's uplink and network counted (frames per system call is the batching question).
  for log in "$work"/*-ankanetd.log; do
    [ -e "$log" ] && grep -h -e "closed" -e "stopped:" "$log" | sed "s|^|$(basename "$log" .log) MTU $mtu: |" >&2
    rm -f "$log"
  done
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  for link in "${links[@]}"; do ip link del "$link" 2>/dev/null || true; done
  namespaces=(); links=()
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# measure PEER DIRECTION: one iperf3 run; prints "Gbit/s bytes cpu_seconds".
measure() {
  local peer=$1 direction=$2 reverse=() before=0 after=0 pid=${daemon_pid[$1]:-}
  [ "$direction" = lan-to-guest ] && reverse=(-R)
  [ -n "$pid" ] && before=$(cpu_ticks "$pid")
  local json
  json=$(timeout $((seconds + 20)) ip netns exec "$tag-$peer-g" iperf3 -c 10.213.0.1 -t "$seconds" -J "${reverse[@]}")
  [ -n "$pid" ] && after=$(cpu_ticks "$pid")
  python3 -c '
import json, sys
r = json.loads(sys.argv[1])["end"]["sum_received"]
print("%.2f %d %.3f" % (r["bits_per_second"] / 1e9, r["bytes"], (int(sys.argv[2]) - int(sys.argv[3])) / int(sys.argv[4])))
' "$json" "$after" "$before" "$clock_ticks"
}

mkdir -p "$out_dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
csv=$out_dir/bridge-$stamp.csv
md=$out_dir/bridge-$stamp.md
echo "mtu,peer,direction,rep,gbit_per_s,bytes,cpu_seconds" > "$csv"
for mtu in "${mtus[@]}"; do
  for peer in "${peers[@]}"; do setup "$peer" "$mtu"; done
  for rep in $(seq "$reps"); do
    for peer in "${peers[@]}"; do
      for direction in guest-to-lan lan-to-guest; do
        read -r gbits bytes cpu < <(measure "$peer" "$direction")
        echo "$mtu,$peer,$direction,$rep,$gbits,$bytes,$cpu" >> "$csv"
        echo "MTU $mtu $peer $direction rep $rep: $gbits Gbit/s (ankanetd CPU ${cpu} s)" >&2
      done
    done
  done
  teardown
done

# The table: medians per cell; CPU seconds per GB for ankanetd.
python3 - "$csv" "$stamp" > "$md" <<'EOF'
import csv, statistics, sys, os, platform
rows = list(csv.DictReader(open(sys.argv[1])))
cells = {}
for r in rows:
    cells.setdefault((int(r["mtu"]), r["peer"], r["direction"]), []).append(r)
print(f"Bridge throughput, {sys.argv[2]}, {os.cpu_count()} CPUs, Linux {platform.release()}: median Gbit/s (ankanetd CPU s/GB)\n")
print("| MTU | path | guest→LAN | LAN→guest |")
print("| --- | --- | --- | --- |")
names = {"translate": "ankanet, MAC translation", "direct": "ankanet, direct MACs", "kernel": "kernel bridge"}
for mtu in sorted({k[0] for k in cells}):
    for peer in ["translate", "direct", "kernel"]:
        out = []
        for d in ["guest-to-lan", "lan-to-guest"]:
            runs = cells.get((mtu, peer, d))
            if not runs:
                out.append("–"); continue
            g = statistics.median(float(r["gbit_per_s"]) for r in runs)
            cpu = sum(float(r["cpu_seconds"]) for r in runs) / (sum(int(r["bytes"]) for r in runs) / 1e9)
            out.append(f"{g:.2f}" + (f" ({cpu:.2f})" if peer != "kernel" else ""))
        if any(o != "–" for o in out):
            print(f"| {mtu} | {names[peer]} | {out[0]} | {out[1]} |")
EOF
cat "$md"
echo "run.sh: wrote $md and $csv" >&2
