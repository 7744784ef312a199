#!/bin/sh
# Builds the initramfs the QEMU end-to-end tests boot: a static busybox, the virtio-net driver
# with the modules it depends on, tests/e2e/guest/init as /init and /etc/udhcpc.script for it.
#
#   make-initramfs.sh OUTPUT KERNEL_VERSION
#
# OUTPUT is a gzip'ed newc cpio archive. KERNEL_VERSION names /lib/modules/KERNEL_VERSION (the
# modules of the kernel the guest boots, e.g. Debian's linux-image-amd64). Modules the kernel has
# built in are skipped; compressed modules (.ko.xz, .ko.zst, .ko.gz) are unpacked, since busybox's
# insmod may not read them. The guest loads them in the order written to /lib/modules/load-order.
#
# Needs: busybox-static (BUSYBOX overrides its path), cpio, gzip; xz or zstd only for such modules.
set -eu

if [ $# -ne 2 ]; then
  echo "usage: $0 OUTPUT KERNEL_VERSION" >&2
  exit 2
fi
output=$1
kernel_version=$2
here=$(cd "$(dirname "$0")" && pwd)
module_dir=${MODULE_ROOT:-/lib/modules}/$kernel_version
busybox=${BUSYBOX:-/bin/busybox}

fail() { echo "make-initramfs: $*" >&2; exit 1; }

[ -x "$busybox" ] || fail "no busybox at $busybox (apt-get install busybox-static)"
# The guest has no C library: a dynamically linked busybox would not start there.
if command -v readelf >/dev/null 2>&1 && readelf -l "$busybox" 2>/dev/null | grep -q 'program interpreter'; then
  fail "$busybox is dynamically linked (apt-get install busybox-static)"
fi
[ -f "$module_dir/modules.dep" ] || fail "no $module_dir/modules.dep"
command -v cpio >/dev/null 2>&1 || fail "cpio is missing (apt-get install cpio)"

staging=$(mktemp -d)
archive=$(mktemp)
trap 'rm -rf "$staging" "$archive"' EXIT INT TERM
mkdir -p "$staging/bin" "$staging/dev" "$staging/proc" "$staging/sys" "$staging/lib/modules" "$staging/etc"
cp "$busybox" "$staging/bin/busybox"
cp "$here/init" "$staging/init"
# udhcpc's event script (the init's ankanet.dhcp=1): configure eth0 from the lease and report it.
# busybox udhcpc passes the lease in the environment: ip, mask (a prefix length), router (a list),
# serverid, lease (seconds).
cat >"$staging/etc/udhcpc.script" <<'EOF'
#!/bin/sh
case "$1" in
  deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    gateway=${router%% *}
    [ -n "$gateway" ] && ip route replace default via "$gateway" dev "$interface"
    echo "ANKANET-E2E: lease $ip/$mask server $serverid router $gateway time $lease"
    ;;
esac
exit 0
EOF
chmod 755 "$staging/init" "$staging/bin/busybox" "$staging/etc/udhcpc.script"

# modules.dep lines read "kernel/drivers/net/virtio_net.ko: kernel/.../net_failover.ko ...".
module_line() {
  grep -E "(^|/)$1\.ko(\.xz|\.zst|\.gz)?:" "$module_dir/modules.dep" | head -n 1
}
# Prints the modules NAME needs, depth first, then NAME itself (built-in ones are left out). A
# subshell function, so that the recursion has variables of its own.
dependencies() (
  name=$1
  if grep -q "/$name\.ko" "$module_dir/modules.builtin" 2>/dev/null; then
    exit 0
  fi
  line=$(module_line "$name")
  [ -n "$line" ] || fail "module $name is neither built in nor in $module_dir/modules.dep"
  for dependency in ${line#*:}; do
    dependency=$(basename "$dependency")
    dependencies "${dependency%%.ko*}" || exit 1
  done
  echo "$name"
)
# virtio_pci: the transport QEMU's virtio-net-pci sits on; virtio_net: the NIC driver.
transport=$(dependencies virtio_pci)
driver=$(dependencies virtio_net)
order=$(printf '%s\n' "$transport" "$driver" | awk '!seen[$0]++')
for name in $order; do
  file=$(module_line "$name")
  file=${file%%:*}
  case "$file" in
    *.ko.xz) xz -dc "$module_dir/$file" >"$staging/lib/modules/$name.ko" ;;
    *.ko.zst) zstd -qdc "$module_dir/$file" >"$staging/lib/modules/$name.ko" ;;
    *.ko.gz) gzip -dc "$module_dir/$file" >"$staging/lib/modules/$name.ko" ;;
    *) cp "$module_dir/$file" "$staging/lib/modules/$name.ko" ;;
  esac
  echo "$name"
done >"$staging/lib/modules/load-order"

# Through a scratch file, so that a failing cpio fails the script instead of leaving half an archive.
(cd "$staging" && find . | cpio -o -H newc --quiet) >"$archive"
gzip -1 <"$archive" >"$output.partial"
mv "$output.partial" "$output"
