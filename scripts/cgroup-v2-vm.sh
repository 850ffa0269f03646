#!/usr/bin/env bash
# The cgroup VM test lanes: boot Debian's kernel under QEMU (TCG) with an
# initramfs holding a static keel, static builds of conformance tests and
# busybox, on pure cgroup v2 (or, under systemd, also hybrid); run the tests
# there and report over the serial console. Exits 0 when they all pass.
#
#   scripts/cgroup-v2-vm.sh            busybox as init, cgroup2 with every
#                                      controller enabled: the `cgroups`
#                                      tests (run on this host's own layout
#                                      by `cargo test`) on pure v2; and the
#                                      CRIU pre-dump chain (checkpoint.rs
#                                      pre_dump_then_dump_onto_it, keel and
#                                      runc) on a kernel with soft-dirty
#   scripts/cgroup-v2-vm.sh --systemd  systemd (this host's, with the
#                                      libraries it needs) as init: the
#                                      `systemd` tests (--systemd-cgroup),
#                                      with this host's runc to compare,
#                                      the user's systemd and D-Bus
#                                      session bus, rootless podman and
#                                      containerd (when installed)
#   ... --systemd=hybrid               the same with systemd's hybrid layout
#                                      (v1 controllers, cgroup2 `unified`)
#   ... --systemd=v1                   the same on pure v1 (systemd's
#                                      legacy layout; run by hand, ~45 s
#                                      in the VM)
#   ... --v1                           busybox as init, every v1 controller
#                                      and no cgroup2: the `cgroups` tests on
#                                      pure v1
#
# Environment:
#   KEEL_VM_TIMEOUT   seconds the VM may run (default 600)
#   KEEL_VM_KEEP      keep the work directory (for debugging) when set
#   KEEL_VM_FILTER    only the tests whose names contain one of these
#                     (space-separated)
#   KEEL_VM_PROFILE   cargo profile of the static builds: dev (default; CI
#                     builds that fastest) or release
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$KEEL_REPO_ROOT"

mode=busybox
layout=unified
case "${1:-}" in
"") ;;
--v1) layout=v1 ;;
--systemd) mode=systemd ;;
--systemd=hybrid) mode=systemd layout=hybrid ;;
--systemd=v1) mode=systemd layout=v1 ;;
*) die "usage: $0 [--v1|--systemd|--systemd=hybrid|--systemd=v1]" ;;
esac
tests=cgroups
[[ $mode == systemd ]] && tests=systemd
# The busybox v2 lane also runs the CRIU pre-dump chain of the checkpoint
# tests, with keel and runc: Debian's kernel has the soft-dirty memory
# tracking `criu pre-dump` needs (CONFIG_MEM_SOFT_DIRTY), which a CI
# host's may lack. (Unless KEEL_VM_FILTER leaves it out.)
chain="" chain_test=pre_dump_then_dump_onto_it
if [[ $mode == busybox && $layout == unified ]]; then
	chain=checkpoint
	if [[ -n "${KEEL_VM_FILTER:-}" ]]; then
		chain=""
		for w in $KEEL_VM_FILTER; do
			[[ $chain_test == *"$w"* ]] && chain=checkpoint
		done
	fi
fi
if [[ -n "$chain" ]]; then
	criu_bin="${KEEL_CRIU:-$(scripts/criu.sh || true)}"
	if [[ ! -x "$criu_bin" || ! -x /usr/sbin/runc || ! -x /usr/sbin/xtables-legacy-multi ]]; then
		warn "no CRIU >= 4.1, runc or iptables (legacy): the VM lane skips $chain_test"
		chain=""
	fi
fi

require_root "scripts/cgroup-v2-vm.sh"
require_cargo
packages=(qemu-system-x86 linux-image-amd64 busybox-static cpio binutils)
[[ $mode == systemd ]] && packages+=(systemd dbus-user-session)
ensure_packages "${packages[@]}"

kernel="$(find /boot -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n1)"
[[ -n "$kernel" ]] || die "no kernel under /boot (package linux-image-amd64)"
kver="${kernel#/boot/vmlinuz-}"
modules="/lib/modules/$kver"

if ! qemu-system-x86_64 -accel help 2>/dev/null | grep -qx tcg; then
	echo "SKIP cgroup VM lane ($mode, $layout): qemu-system-x86_64 cannot run with TCG here" >&2
	exit 0
fi

# Static builds, so that the initramfs needs no libraries for them: keel
# as released (scripts/release.sh: musl, or glibc with crt-static when the
# musl target is missing), the tests with glibc and crt-static. Their own
# target triples keep them apart from the host builds.
triple=x86_64-unknown-linux-gnu
profile="${KEEL_VM_PROFILE:-dev}"
export RUSTFLAGS="-C target-feature=+crt-static"
log "building static keel and the static $tests ${chain:+and $chain }conformance tests ($profile)"
# keel as released (scripts/release.sh: the same static build).
keel_bin="$(KEEL_RELEASE_PROFILE="$profile" "$KEEL_REPO_ROOT/scripts/release.sh")"
# "name path" of each test binary built.
built="$(cargo test --profile "$profile" --target "$triple" -p keel-conformance --test "$tests" \
	${chain:+--test "$chain"} --no-run --message-format=json 2>/dev/null |
	python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["name"], m["executable"])')"
unset RUSTFLAGS
test_bin="$(awk -v t="$tests" '$1 == t {print $2}' <<<"$built")"
chain_bin="$(awk -v t="$chain" '$1 == t {print $2}' <<<"$built")"
[[ -z "$chain" || -x "$chain_bin" ]] || die "static build of the $chain tests missing"
shim_bin=""
if [[ $mode == systemd ]]; then
	# keel's containerd shim: the workspace's build (`cargo build
	# --workspace` made it already in CI), with its libraries copied below.
	cargo build --quiet -p keel-shim
	shim_bin="$(keel_target_dir)/debug/containerd-shim-keel-v2"
	[[ -x "$shim_bin" ]] || die "build missing ($shim_bin)"
fi
[[ -x "$keel_bin" && -x "$test_bin" ]] || die "static builds missing ($keel_bin, $test_bin)"
[[ "$(ldd "$keel_bin" 2>&1 || true)" =~ "not a dynamic"|"statically linked" ]] || die "$keel_bin is not statically linked"

work="$(mktemp -d /tmp/keel-v2-vm.XXXXXX)"
if [[ -z "${KEEL_VM_KEEP:-}" ]]; then
	trap 'rm -rf "$work"' EXIT
else
	log "work directory: $work"
fi
root="$work/initramfs"
mkdir -p "$root"/{bin,proc,sys,dev,tmp,run,newroot,modules,etc}
cp "$(busybox_path)" "$root/bin/busybox"
# Without debug info: smaller initramfs, faster boot.
strip -o "$root/keel" "$keel_bin"
strip -o "$root/tests" "$test_bin"
# Beside keel, where the containerd tests look for it.
[[ -n "$shim_bin" ]] && strip -o "$root/containerd-shim-keel-v2" "$shim_bin"
# brd: a RAM block device, so that io.max has a device to throttle.
f="$(find "$modules" -name 'brd.ko*' | head -n1)"
[[ -n "$f" ]] && cp "$f" "$root/modules/"
# overlay: containerd's default snapshotter (the systemd lanes run it).
f="$(find "$modules" -name 'overlay.ko*' | head -n1)"
[[ $mode == systemd && -n "$f" ]] && cp "$f" "$root/modules/"
# copy_libraries FILE...: the shared libraries the FILEs load (and the
# dynamic loader), at their paths in the image.
copy_libraries() {
	local f
	for f in "$@"; do
		# (Some are scripts: ldd fails on those.)
		ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}' || true
	done | sort -u | while read -r lib; do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
}
if [[ -n "$chain" ]]; then
	# CRIU in a directory of its own, which the tests put first on PATH,
	# with what it runs: GNU tar (it archives the container's tmpfs mounts
	# with options busybox's tar lacks) and legacy iptables-restore (it
	# locks the container's network with it). runc there too: where the
	# cgroups tests look for it (/usr/sbin), they would compare with it,
	# which this lane has not done.
	xt=/usr/lib/x86_64-linux-gnu/xtables
	mkdir -p "$root/criu" "$root$xt"
	strip -o "$root/chain-tests" "$chain_bin"
	printf '%s\n' "$chain_test" >"$root/chain-test"
	strip -o "$root/criu/criu" "$criu_bin"
	cp /usr/bin/tar /usr/sbin/xtables-legacy-multi "$root/criu/"
	ln -s xtables-legacy-multi "$root/criu/iptables-restore"
	ln -s xtables-legacy-multi "$root/criu/ip6tables-restore"
	# The lock's rules: the standard targets and the mark match.
	cp "$xt/libxt_standard.so" "$xt/libxt_mark.so" "$root$xt/"
	cp /usr/sbin/runc "$root/criu/runc"
	copy_libraries "$criu_bin" /usr/bin/tar /usr/sbin/xtables-legacy-multi "$xt/libxt_mark.so" \
		/usr/sbin/runc
	# Loaded in this order by run-tests (the VM has no modprobe to load
	# them on demand): the filter tables and the mark match for the lock,
	# conntrack's netlink (CRIU dumps the connection tracking table;
	# nfnetlink says EINVAL for a subsystem that is not loaded) and the
	# socket diagnostics CRIU collects sockets with.
	mkdir -p "$root/modules/chain"
	n=0
	for m in x_tables ip_tables iptable_filter ip6_tables ip6table_filter xt_mark \
		crc32c_generic libcrc32c nf_defrag_ipv4 nf_defrag_ipv6 nf_conntrack nfnetlink \
		nf_conntrack_netlink unix_diag inet_diag tcp_diag udp_diag raw_diag netlink_diag \
		af_packet_diag; do
		f="$(find "$modules" -name "$m.ko*" | head -n1)"
		[[ -n "$f" ]] || die "kernel module $m missing under $modules"
		n=$((n + 1))
		cp "$f" "$root/modules/chain/$(printf %02d "$n")-$(basename "$f")"
	done
fi
if [[ -n "${KEEL_VM_FILTER:-}" ]]; then
	printf '%s\n' "$KEEL_VM_FILTER" >"$root/filter"
fi
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"

# The tests, as either init runs them; the exit status goes to the console.
cat >"$root/run-tests" <<'EOF'
#!/bin/busybox sh
export PATH=/bin:/usr/bin
[ -e /modules/brd.ko ] && insmod /modules/brd.ko rd_nr=1 rd_size=8192
[ -e /modules/overlay.ko ] && insmod /modules/overlay.ko
if [ -e /chain-test ]; then
	for m in /modules/chain/*.ko*; do insmod "$m"; done
	# Each CRIU run takes a run id from libuuid, which asks
	# getrandom(GRND_NONBLOCK) up to 8 times 125 ms apart while the
	# kernel's random pool is not ready (early in a VM without RDRAND):
	# 3 s of every CRIU call. A blocking read makes the kernel seed it now.
	head -c 1 /dev/random >/dev/null
	# CRIU's kernel checks use the loopback and pseudo-terminals.
	ip link set lo up
	mkdir -p /dev/pts
	mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
fi
echo "KEEL-VM kernel $(uname -r), init $(cat /proc/1/comm); cgroups: $(grep cgroup /proc/self/mounts | cut -d' ' -f2 | tr '\n' ' ')"
cd /tmp
[ -x /usr/sbin/runc ] && export RUNC=/usr/sbin/runc
[ -f /images/busybox-oci.tar ] && export KEEL_BUSYBOX_OCI=/images/busybox-oci.tar
rc=0
KEEL_RUNTIME=/keel RUST_BACKTRACE=1 /tests --test-threads=1 $(cat /filter 2>/dev/null) 2>&1 || rc=$?
if [ -e /chain-test ]; then
	# A refused pre-dump fails here: this kernel tracks memory.
	KEEL_EXPECT_SOFT_DIRTY=1 KEEL_CRIU=/criu/criu RUNC=/criu/runc KEEL_RUNTIME=/keel RUST_BACKTRACE=1 \
		/chain-tests --nocapture --exact "$(cat /chain-test)" 2>&1 || rc=$?
fi
echo "KEEL-VM-EXIT $rc"
sync
poweroff -f
EOF

# Stage 1: the initramfs root cannot be pivot_root'ed (containers need
# that), so everything is copied onto a tmpfs and switch_root'ed to.
if [[ $mode == busybox ]]; then
	next=/stage2
	cat >"$root/stage2" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=1777 tmpfs /tmp
if [ -e /v1 ]; then
	mount -t tmpfs -o mode=0755 cgroup /sys/fs/cgroup
	for c in $(awk 'NR > 1 && $4 == 1 {print $1}' /proc/cgroups); do
		mkdir /sys/fs/cgroup/$c
		mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c
	done
else
	mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
	for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
		echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control
	done
fi
exec /run-tests
EOF
	# Pure v1: each controller on its own v1 mount, no cgroup2 at all.
	[[ $layout == v1 ]] && : >"$root/v1"
	chmod +x "$root/stage2"
	append=""
else
	next=/lib/systemd/systemd
	# systemd and what it loads, from this host's packages.
	mkdir -p "$root"/{usr/bin,usr/lib/x86_64-linux-gnu,lib64,etc/systemd/system,var/tmp}
	chmod 1777 "$root/var/tmp"
	ln -s usr/lib "$root/lib"
	cp -a /usr/lib/systemd "$root/usr/lib/"
	cp -a /usr/lib/x86_64-linux-gnu/systemd "$root/usr/lib/x86_64-linux-gnu/"
	cp /usr/bin/systemctl "$root/usr/bin/"
	# The user's D-Bus session bus (dbus-user-session: the user manager's
	# dbus.socket at $XDG_RUNTIME_DIR/bus): runc reaches a user's systemd
	# only over it, and asks `busctl --user` for the uid inside a user
	# namespace.
	cp /usr/bin/dbus-daemon /usr/bin/busctl "$root/usr/bin/"
	mkdir -p "$root/usr/share" "$root/etc"
	cp -a /usr/share/dbus-1 "$root/usr/share/"
	cp -a /etc/dbus-1 "$root/etc/"
	# runc too (when installed), for the tests that compare with it.
	runc_bin=""
	if [[ -x /usr/sbin/runc ]]; then
		runc_bin=/usr/sbin/runc
		mkdir -p "$root/usr/sbin"
		cp /usr/sbin/runc "$root/usr/sbin/"
	fi
	# The engines the driver is tested under, when installed (scripts/test.sh
	# installs them): rootless podman 4.3 with conmon, catatonit and
	# newuidmap/newgidmap (setuid, as installed), its configs; containerd
	# 1.6 with ctr and the runc shim (keel's shim is built above). The
	# containers run with `--network none`: no network backend is copied.
	engines=()
	for f in /usr/bin/podman /usr/bin/conmon /usr/bin/catatonit /usr/bin/newuidmap \
		/usr/bin/newgidmap /usr/bin/containerd /usr/bin/containerd-shim-runc-v2 /usr/bin/ctr; do
		[[ -x $f ]] && engines+=("$f") && cp -a "$f" "$root/usr/bin/"
	done
	if [[ -x /usr/bin/podman ]]; then
		mkdir -p "$root/usr/libexec/podman"
		ln -s ../../bin/catatonit "$root/usr/libexec/podman/catatonit"
		cp -a /etc/containers "$root/etc/"
		cp -a /usr/share/containers "$root/usr/share/"
	fi
	mkdir -p "$root/images"
	"$KEEL_REPO_ROOT/scripts/busybox-oci.sh" "$root/images/busybox-oci.tar"
	copy_libraries /usr/lib/systemd/systemd /usr/lib/systemd/systemd-* /usr/bin/systemctl \
		/usr/bin/dbus-daemon /usr/bin/busctl "${engines[@]}" "$shim_bin" \
		/usr/lib/x86_64-linux-gnu/systemd/*.so $runc_bin
	cp /usr/lib/os-release "$root/etc/os-release"
	: >"$root/etc/machine-id"
	# Boot straight into a target that runs the tests and nothing else.
	cat >"$root/etc/systemd/system/keel-test.target" <<'EOF'
[Unit]
Description=keel tests
AllowIsolate=yes
Requires=keel-test.service
After=keel-test.service
EOF
	cat >"$root/etc/systemd/system/keel-test.service" <<'EOF'
[Unit]
DefaultDependencies=no
[Service]
Type=oneshot
ExecStartPre=/bin/busybox --install -s /bin
ExecStart=/run-tests
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
EOF
	ln -s keel-test.target "$root/etc/systemd/system/default.target"
	# A unit whose start fails: a scope that requires it (and is ordered
	# after it) gets a start job that ends `dependency` (the failed-job test).
	printf '[Unit]\nDefaultDependencies=no\n[Service]\nType=oneshot\nExecStart=/bin/false\n' \
		>"$root/etc/systemd/system/keel-fails.service"
	# The rootless tests' user, whose systemd (user@1000.service, started
	# by the tests as lingering does) gets every controller delegated; no
	# PAM, and no system bus for systemd-user-runtime-dir to ask logind on,
	# in this image: its runtime directory is a plain one.
	printf 'keel-rootless:x:1000:1000::/home/keel-rootless:/bin/sh\n' >>"$root/etc/passwd"
	printf 'keel-rootless:x:1000:\n' >>"$root/etc/group"
	printf 'keel-rootless:100000:65536\n' | tee "$root/etc/subuid" >"$root/etc/subgid"
	mkdir -p "$root/home/keel-rootless" "$root/etc/systemd/system/user@.service.d"
	chown 1000:1000 "$root/home/keel-rootless"
	printf '[Service]\nPAMName=\nDelegate=yes\nEnvironment=XDG_RUNTIME_DIR=/run/user/%%i\n' >"$root/etc/systemd/system/user@.service.d/keel.conf"
	mkdir -p "$root/etc/systemd/system/user-runtime-dir@.service.d"
	cat >"$root/etc/systemd/system/user-runtime-dir@.service.d/keel.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=/bin/busybox sh -c 'mkdir -p /run/user/%i && chown %i:%i /run/user/%i && chmod 0700 /run/user/%i'
ExecStop=
ExecStop=/bin/busybox rm -rf /run/user/%i
EOF
	append="systemd.show_status=0 systemd.unified_cgroup_hierarchy=1"
	# Hybrid as this host: v1 controllers, cgroup2 at /sys/fs/cgroup/unified.
	[[ $layout == hybrid ]] && append="systemd.show_status=0 systemd.unified_cgroup_hierarchy=0"
	# Pure v1: no cgroup2 at all, not even systemd's own hierarchy.
	[[ $layout == v1 ]] && append="systemd.show_status=0 systemd.unified_cgroup_hierarchy=0 systemd.legacy_systemd_cgroup_controller=1"
fi
cat >"$root/init" <<EOF
#!/bin/busybox sh
/bin/busybox mount -t tmpfs -o mode=0755 tmpfs /newroot
for d in /*; do
	case "\$d" in /proc|/sys|/dev|/newroot|/init) continue ;; esac
	/bin/busybox cp -a "\$d" /newroot/
done
for d in proc sys dev tmp run; do /bin/busybox mkdir -p /newroot/\$d; done
exec /bin/busybox switch_root /newroot $next
EOF
chmod +x "$root/init" "$root/run-tests"
(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 >"$work/initramfs.cpio.gz"

# no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer
# check can fail ("IO-APIC + timer doesn't work!", a panic at boot).
log "booting $kernel under qemu (tcg), init: $mode"
console="$work/console.log"
start=$(date +%s)
rc=0
timeout --kill-after=10 "${KEEL_VM_TIMEOUT:-600}" qemu-system-x86_64 \
	-accel tcg -smp 2 -m 1024 -nodefaults -no-reboot -display none \
	-serial "file:$console" \
	-kernel "$kernel" -initrd "$work/initramfs.cpio.gz" \
	-append "console=ttyS0 rdinit=/init panic=-1 quiet loglevel=3 oops=panic no_timer_check $append" || rc=$?
took=$(($(date +%s) - start))
cat "$console"
log "VM ran ${took}s (qemu exit $rc)"
status="$(tr -d '\r' <"$console" | sed -n 's/^KEEL-VM-EXIT \([0-9]*\).*/\1/p' | tail -n1)"
if [[ -z "$status" ]]; then
	die "cgroup VM lane ($mode, $layout): the tests did not finish in the VM (see the console above)"
fi
grep -q '^test result: ok' <(tr -d '\r' <"$console") || die "cgroup VM lane ($mode, $layout): tests failed (exit $status)"
((status == 0)) || die "cgroup VM lane ($mode, $layout): tests failed (exit $status)"
log "cgroup VM lane ($mode, $layout): all passed"
