#!/usr/bin/env bash
# The cgroup v2 test lane: boots Debian's kernel under QEMU (TCG) with an
# initramfs holding a static keel, a static build of the conformance
# `cgroups` tests, busybox and nothing else, on a pure cgroup2 hierarchy with
# every controller enabled; runs those tests there and reports over the
# serial console. Exits 0 when they all pass.
#
# The same test file runs on this host's layout (hybrid) in `cargo test`;
# here it runs on pure v2 (devices by eBPF, cgroup.freeze, memory.events).
#
# Environment:
#   KEEL_VM_TIMEOUT   seconds the VM may run (default 600)
#   KEEL_VM_KEEP      keep the work directory (for debugging) when set
#   KEEL_VM_FILTER    only the tests whose names contain this
#   KEEL_VM_PROFILE   cargo profile of the static builds: dev (default; CI
#                     builds that fastest) or release
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$KEEL_REPO_ROOT"

require_root "scripts/cgroup-v2-vm.sh"
require_cargo
ensure_packages qemu-system-x86 linux-image-amd64 busybox-static cpio binutils

kernel="$(find /boot -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n1)"
[[ -n "$kernel" ]] || die "no kernel under /boot (package linux-image-amd64)"
kver="${kernel#/boot/vmlinuz-}"
modules="/lib/modules/$kver"

qemu_works() {
	qemu-system-x86_64 -accel help 2>/dev/null | grep -qx tcg
}
if ! qemu_works; then
	echo "SKIP cgroup v2 lane: qemu-system-x86_64 cannot run with TCG here" >&2
	exit 0
fi

# Static builds (glibc with crt-static), so that the initramfs needs no
# libraries. Their own target triple keeps them apart from the host builds.
triple=x86_64-unknown-linux-gnu
profile="${KEEL_VM_PROFILE:-dev}"
profile_dir=debug
[[ "$profile" == dev ]] || profile_dir="$profile"
export RUSTFLAGS="-C target-feature=+crt-static"
log "building static keel and the static cgroups conformance tests ($profile)"
cargo build --profile "$profile" --target "$triple" -p keel-runtime
test_bin="$(cargo test --profile "$profile" --target "$triple" -p keel-conformance --test cgroups \
	--no-run --message-format=json 2>/dev/null |
	python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "cgroups" and m.get("executable"):
        print(m["executable"])')"
unset RUSTFLAGS
keel_bin="$(keel_target_dir)/$triple/$profile_dir/keel"
[[ -x "$keel_bin" && -x "$test_bin" ]] || die "static builds missing ($keel_bin, $test_bin)"
ldd "$keel_bin" 2>&1 | grep -qE 'not a dynamic|statically linked' || die "$keel_bin is not statically linked"

work="$(mktemp -d /tmp/keel-v2-vm.XXXXXX)"
if [[ -z "${KEEL_VM_KEEP:-}" ]]; then
	trap 'rm -rf "$work"' EXIT
else
	log "work directory: $work"
fi
root="$work/initramfs"
mkdir -p "$root"/{bin,proc,sys,dev,tmp,newroot,modules}
cp "$(busybox_path)" "$root/bin/busybox"
# Without debug info: smaller initramfs, faster boot.
strip -o "$root/keel" "$keel_bin"
strip -o "$root/cgroups-test" "$test_bin"
# brd: a RAM block device, so that io.max has a device to throttle.
for m in brd; do
	f="$(find "$modules" -name "$m.ko*" | head -n1)"
	[[ -n "$f" ]] && cp "$f" "$root/modules/"
done

# Stage 1: the initramfs root cannot be pivot_root'ed (containers need
# that), so copy everything onto a tmpfs and switch_root to it.
cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t tmpfs -o mode=0755 tmpfs /newroot
for d in bin keel cgroups-test modules stage2 filter; do
	[ -e /$d ] && /bin/busybox cp -a /$d /newroot/
done
/bin/busybox mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/tmp
exec /bin/busybox switch_root /newroot /stage2
EOF
cat >"$root/stage2" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
	echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control
done
for m in /modules/*.ko; do [ -e "$m" ] && insmod "$m" rd_nr=1 rd_size=8192; done
echo "KEEL-VM kernel $(uname -r); cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
cd /tmp
KEEL_RUNTIME=/keel RUST_BACKTRACE=1 /cgroups-test --test-threads=1 $(cat /filter 2>/dev/null) 2>&1
echo "KEEL-VM-EXIT $?"
sync
poweroff -f
EOF
chmod +x "$root/init" "$root/stage2"
if [[ -n "${KEEL_VM_FILTER:-}" ]]; then
	printf '%s\n' "$KEEL_VM_FILTER" >"$root/filter"
fi
(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 >"$work/initramfs.cpio.gz"

log "booting $kernel under qemu (tcg)"
console="$work/console.log"
start=$(date +%s)
rc=0
timeout --kill-after=10 "${KEEL_VM_TIMEOUT:-600}" qemu-system-x86_64 \
	-accel tcg -smp 2 -m 1024 -nodefaults -no-reboot -display none \
	-serial "file:$console" \
	-kernel "$kernel" -initrd "$work/initramfs.cpio.gz" \
	-append "console=ttyS0 rdinit=/init panic=-1 quiet loglevel=3 oops=panic" || rc=$?
took=$(($(date +%s) - start))
cat "$console"
log "VM ran ${took}s (qemu exit $rc)"
status="$(sed -n 's/^KEEL-VM-EXIT \([0-9]*\).*/\1/p' "$console" | tr -d '\r' | tail -n1)"
if [[ -z "$status" ]]; then
	die "cgroup v2 lane: the tests did not finish in the VM (see the console above)"
fi
grep -q '^test result: ok' <(tr -d '\r' <"$console") || die "cgroup v2 lane: tests failed (exit $status)"
((status == 0)) || die "cgroup v2 lane: tests failed (exit $status)"
log "cgroup v2 lane: all passed"
