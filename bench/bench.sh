#!/usr/bin/env bash
# The performance targets of issue #9, keel against crun and runc in the
# same run, in the same wrapper, from one bundle config (busybox, /bin/true):
#   - `run` lifecycle (create, start, wait, delete), N sequential per runtime;
#   - `create`, `start`, `delete` timed separately; `exec` of /bin/true into
#     a running container;
#   - 50 `run`s started at once (total time);
#   - peak RSS of `run`; size of the keel binary, statically linked;
#   - scale (keel): state/start/kill/delete of one container with 1 and
#     1000 others present; `list` with 1, 500, 1000.
# Prints medians (ms), ratios keel/crun and keel/runc, and a PASS/MISS line
# per target (bench/targets.py does the measuring). keel is the release
# artefact, scripts/release.sh's static build. keel-ro, the same binary
# from a read-only bind mount (where keel skips its CVE-2019-5736 re-exec),
# is timed on `run`: keel - keel-ro is the price of that protection.
#
# Usage: bench/bench.sh [N]        (or BENCH_N=N; default 20)
# Environment: BENCH_CONCURRENT (default 50), BENCH_SCALE (default 1000;
# 0 skips the scale test). About 3 minutes with the defaults on 2 cores.
#
# Needs root and the Rust toolchain; installs runc, crun, busybox-static and
# time with apt if missing.
#
# The wrapper: every runtime runs inside one private mount namespace whose
# /sys/fs/cgroup is a fresh tmpfs holding bind mounts of the host's cgroup
# mounts plus a private v1 hugetlb hierarchy. crun 1.8 refuses a hybrid host
# whose cgroup2 still has controllers ("drop all controllers from
# cgroupv2"); binding hugetlb, the only one left there on this layout, to v1
# satisfies it. Only the bench's own cgroups are created (one per container
# under keel-bench/bench-<pid>), and they are removed at the end, as is the
# hugetlb hierarchy; containers are deleted by id.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/common.sh
source "$here/../scripts/common.sh"

cgroup_parent="keel-bench"
# keel-ro: the same keel binary, run from a read-only bind mount. keel
# re-executes itself from a read-only view of its binary before it forks
# container processes (CVE-2019-5736); from a read-only mount it has no need
# to, so keel/keel-ro is the cost of that protection.
runtimes=(keel keel-ro runc crun)

# ---------------------------------------------------------------------------
# Inside the private mount namespace (bench.sh --inner, started below).
# ---------------------------------------------------------------------------

# shellcheck disable=SC2317 # called by the trap
inner_cleanup() {
	local rt
	for rt in "${runtimes[@]}"; do
		"${BIN[$rt]:-true}" --root "$BENCH_TMP/state-$rt" delete --force bench >/dev/null 2>&1 || true
	done
	# Only the hugetlb parent here: the host-side parents are removed by the
	# outer script, which knows which of them existed before.
	if [[ -n "${hugetlb_mounted:-}" ]]; then
		find "/sys/fs/cgroup/hugetlb/$cgroup_parent/$BENCH_CGROUP_LEAF" -mindepth 1 -depth -type d \
			-exec rmdir {} + 2>/dev/null || true
		rmdir "/sys/fs/cgroup/hugetlb/$cgroup_parent/$BENCH_CGROUP_LEAF" 2>/dev/null || true
		rmdir "/sys/fs/cgroup/hugetlb/$cgroup_parent" 2>/dev/null || true
		# A removed cgroup lingers briefly; a hierarchy unmounted while it
		# still has one is kept alive by the kernel.
		sleep 1
		umount /sys/fs/cgroup/hugetlb || true
	fi
}

sandbox_cgroups() {
	local save d name
	mount --make-rprivate /
	save="$(mktemp -d "$BENCH_TMP/cgroup-save.XXXXXX")"
	mount --rbind /sys/fs/cgroup "$save"
	mount -t tmpfs -o mode=755,nosuid,nodev,noexec tmpfs /sys/fs/cgroup
	for d in "$save"/*; do
		name="$(basename "$d")"
		mountpoint -q "$d" || continue
		mkdir "/sys/fs/cgroup/$name"
		mount --bind "$d" "/sys/fs/cgroup/$name"
	done
	umount -l "$save"
	rmdir "$save"
	if grep -Eq ' - cgroup [^ ]+ [^ ]*hugetlb' /proc/self/mountinfo; then
		return 0
	fi
	mkdir /sys/fs/cgroup/hugetlb
	if mount -t cgroup -o hugetlb none /sys/fs/cgroup/hugetlb; then
		hugetlb_mounted=1
	else
		warn "could not mount a v1 hugetlb hierarchy; crun may refuse this host"
		rmdir /sys/fs/cgroup/hugetlb
	fi
}

inner() {
	declare -gA BIN=([keel]="$BENCH_KEEL" [runc]="$(command -v runc)" [crun]="$(command -v crun)")
	trap inner_cleanup EXIT
	sandbox_cgroups
	# In this private mount namespace: gone when it ends.
	mkdir -p "$BENCH_TMP/ro"
	touch "$BENCH_TMP/ro/keel"
	mount --bind "$BENCH_KEEL" "$BENCH_TMP/ro/keel"
	mount -o remount,bind,ro "$BENCH_TMP/ro/keel"
	BIN[keel-ro]="$BENCH_TMP/ro/keel"

	local rt err
	local -a cmd
	for rt in "${runtimes[@]}"; do
		cmd=("${BIN[$rt]}" --root "$BENCH_TMP/state-$rt" run --bundle "$BENCH_TMP/bundle" bench)
		# One run first: a runtime that cannot run here is reported and skipped.
		if ! err="$("${cmd[@]}" 2>&1 </dev/null)"; then
			"${BIN[$rt]}" --root "$BENCH_TMP/state-$rt" delete --force bench >/dev/null 2>&1 || true
			if [[ "$rt" == crun ]]; then
				warn "crun fails in this wrapper, skipped: $err"
				BIN[crun]=""
				continue
			fi
			die "$rt fails in this wrapper: $err"
		fi
	done

	BENCH_KEEL="${BIN[keel]}" BENCH_KEEL_RO="${BIN[keel-ro]}" BENCH_RUNC="${BIN[runc]}" BENCH_CRUN="${BIN[crun]}" \
		BENCH_CGROUP_BASE="/$cgroup_parent/$BENCH_CGROUP_LEAF" python3 "$here/targets.py"
}

if [[ "${1:-}" == "--inner" ]]; then
	inner
	exit 0
fi

# ---------------------------------------------------------------------------
# Outside: build, bundle, run the inner part, report, clean up.
# ---------------------------------------------------------------------------

n="${1:-${BENCH_N:-20}}"
[[ "$n" =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer, not '$n'"

require_root "bench/bench.sh"
require_cargo
ensure_packages runc crun busybox-static time util-linux
command -v python3 >/dev/null || ensure_packages python3

cd "$KEEL_REPO_ROOT"
log "building keel (the release artefact: scripts/release.sh)"
keel="$("$KEEL_REPO_ROOT/scripts/release.sh")"

# Whether hugetlb sits in a v1 hierarchy now (0 = none): restored at the end.
hugetlb_hierarchy() { awk '$1 == "hugetlb" { print $2 }' /proc/cgroups; }
hugetlb_before="$(hugetlb_hierarchy)"

preexisting=()
for d in /sys/fs/cgroup/*/"$cgroup_parent"; do
	if [[ -d "$d" ]]; then
		preexisting+=("$d")
	fi
done

tmp="$(mktemp -d /tmp/keel-bench.XXXXXX)"
leaf="bench-$$"
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	local d p ours i
	for d in /sys/fs/cgroup/*/"$cgroup_parent"; do
		[[ -d "$d" ]] || continue
		# The containers' cgroups (all deleted by then, unless interrupted).
		find "$d/$leaf" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null || true
		rmdir "$d/$leaf" 2>/dev/null || true
		ours=1
		for p in "${preexisting[@]}"; do
			if [[ "$p" == "$d" ]]; then
				ours=0
			fi
		done
		if ((ours)); then
			rmdir "$d" 2>/dev/null || warn "could not remove cgroup $d"
		fi
	done
	# If the private hugetlb hierarchy outlived its mount, mounting and
	# unmounting it once more (now empty) releases it back to cgroup2.
	for i in 1 2 3 4 5; do
		[[ "$(hugetlb_hierarchy)" == "$hugetlb_before" ]] && break
		# shellcheck disable=SC2016 # $1 is the inner shell's argument
		unshare -m -- sh -c 'mount --make-rprivate / && mount -t cgroup -o hugetlb none "$1" && sleep 0.5 && umount "$1"' \
			sh "$tmp" 2>/dev/null || true
		sleep "$i"
	done
	if [[ "$(hugetlb_hierarchy)" != "$hugetlb_before" ]]; then
		warn "the hugetlb controller is still bound to a v1 hierarchy (see /proc/cgroups)"
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

bundle="$tmp/bundle"
mkdir -p "$bundle"
make_busybox_rootfs "$bundle/rootfs"
(cd "$bundle" && "$keel" spec)
# One config for all runtimes. ociVersion 1.0.2: crun 1.8 refuses 1.2.0 with
# "unknown version specified". No network namespace: the bench times the
# runtime, not the kernel's network namespace setup and teardown.
BENCH_CGROUPS_PATH="/$cgroup_parent/$leaf/bench" edit_config "$bundle/config.json" "
c['ociVersion'] = '1.0.2'
c['process']['terminal'] = False
c['process']['args'] = ['/bin/true']
c['linux']['cgroupsPath'] = env['BENCH_CGROUPS_PATH']
c['linux']['namespaces'] = [n for n in c['linux']['namespaces'] if n['type'] != 'network']
"

log "runtimes: keel $("$keel" --version | head -1), $(runc --version | head -1), $(crun --version | head -1)"
BENCH_TMP="$tmp" BENCH_N="$n" BENCH_KEEL="$keel" BENCH_CGROUP_LEAF="$leaf" \
	unshare -m -- bash "$here/bench.sh" --inner
