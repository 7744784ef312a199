#!/usr/bin/env bash
# Installs, on Debian 12, the packages ankanet needs that are not installed yet; idempotent.
#
#   scripts/install-deps.sh          what building the library and running the examples needs
#   scripts/install-deps.sh --demo   plus what scripts/demo.sh's guest and servers run
#   scripts/install-deps.sh --test   plus what the test suite, fuzzers, benchmarks and the
#                                    end-to-end peers (DHCP clients, QEMU, passt, ...) need
set -euo pipefail

# nlohmann-json3-dev: ankanetd's control socket speaks JSON; libcli11-dev: the command lines of
# ankanetd and ankanet-run (both header-only; the library itself needs neither).
build_packages=(g++ cmake ninja-build pkg-config libboost1.81-dev libfmt-dev nlohmann-json3-dev libcli11-dev
                iproute2 iputils-ping)
# The end-to-end tests boot a real Linux guest in QEMU (TCG) from a busybox initramfs, and run
# real DHCP clients (busybox udhcpc, ISC dhclient, dhcpcd) in network namespaces; the hostile-guest
# tests (tests/e2e/ankanetd_hostile_test.cpp) attack from a namespace with scapy, run by
# /usr/bin/python3, Debian's interpreter. The NAT tests reach servers the test starts on host
# loopback (socat, iperf3, busybox httpd) from guests (curl, dig), with dnsmasq as the upstream
# resolver; the peer benchmark runs passt (pasta) and slirp4netns beside ankanet, and draws its
# chart with gnuplot (gnuplot-nox: no X11). CI builds the API reference with doxygen.
test_packages=(catch2 libbenchmark-dev clang libclang-rt-14-dev tcpdump
               qemu-system-x86 linux-image-amd64 busybox-static cpio
               udhcpc isc-dhcp-client dhcpcd-base python3-scapy
               socat iperf3 curl bind9-dnsutils dnsmasq-base passt slirp4netns ethtool
               gnuplot-nox doxygen)

# scripts/demo.sh: busybox (udhcpc in the guest, httpd on both sides) and curl.
demo_packages=(busybox-static curl)

packages=("${build_packages[@]}")
case "${1:-}" in
  --test) packages+=("${test_packages[@]}") ;;
  --demo) packages+=("${demo_packages[@]}") ;;
  "") ;;
  *) echo "usage: $0 [--test|--demo]" >&2; exit 2 ;;
esac

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${missing[*]}; run as root (or install them) first" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
