#!/usr/bin/env bash
# The performance targets of issues #9 and #18, keel against crun and runc
# in the same run, in the same wrapper, from one base bundle config
# (busybox, /bin/true; `keel spec`'s, as `runc spec`'s):
#   - `run` lifecycle (create, start, wait, delete), N sequential per
#     runtime, in each configuration engines send (targets.py's CONFIGS: no
#     network namespace; a network namespace; `runc spec`'s as is; a user
#     namespace; Docker's capabilities, seccomp profile, masked paths and
#     read-write rootfs), next to the floor: the same namespaces made by
#     util-linux's `unshare` with no runtime at all;
#   - `create`, `start`, `delete` timed separately; `exec` of /bin/true into
#     a running container; 50 `run`s started at once (total time): each
#     without and with a network namespace;
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
# 0 skips the scale test), BENCH_CONFIGS (targets.py's CONFIGS to time `run`
# in; default all), KEEL (a keel binary to measure instead of building the
# release artefact). About 3 minutes with the defaults on 2 cores.
#
# Needs root and the Rust toolchain; installs runc, crun, busybox-static and
# time with apt if missing.
#
# The wrapper: every runtime runs inside one private mount namespace. On a
# host with v1 controllers (hybrid, as this one), its /sys/fs/cgroup holds
# binds of the v1 hierarchies only, without the cgroup2 `unified` mount:
# crun 1.8 refuses a hybrid host whose cgroup2 still has a controller ("drop
# all controllers from cgroupv2"), and binding hugetlb to a private v1
# hierarchy, the way before, fails once anything uses hugetlb on cgroup2
# (containerd's CRI does). All three runtimes see the same v1 host and do
# the same cgroup work (one directory per controller); a pure cgroup2 host
# is left as it is (crun has no complaint there). Only the bench's own
# cgroups are created (one per container under keel-bench/bench-<pid>),
# and they are removed at the end; containers are deleted by id.
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
		"${BIN[$rt]:-true}" --root "$BENCH_TMP/state-$rt" delete --force "$BENCH_CGROUP_LEAF-check" >/dev/null 2>&1 || true
	done
}

# On a host with v1 controllers (/sys/fs/cgroup a tmpfs), this namespace's
# /sys/fs/cgroup becomes a fresh tmpfs holding binds of the v1 hierarchies
# only: a cgroup v1 host as all three runtimes see it. The host's own mounts
# there are unmounted first (in this namespace only), or the runtimes' mount
# tables would still list them beneath.
sandbox_cgroups() {
	local save d name
	mount --make-rprivate /
	[[ "$(stat -f -c %T /sys/fs/cgroup)" == tmpfs ]] || return 0
	save="$(mktemp -d "$BENCH_TMP/cgroup-save.XXXXXX")"
	mount --rbind /sys/fs/cgroup "$save"
	umount -R -l /sys/fs/cgroup
	mount -t tmpfs -o mode=755,nosuid,nodev,noexec tmpfs /sys/fs/cgroup
	for d in "$save"/*; do
		name="$(basename "$d")"
		mountpoint -q "$d" || continue
		[[ "$(stat -f -c %T "$d")" == cgroup2fs ]] && continue
		mkdir "/sys/fs/cgroup/$name"
		mount --bind "$d" "/sys/fs/cgroup/$name"
	done
	umount -R -l "$save"
	rmdir "$save"
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
		cmd=("${BIN[$rt]}" --root "$BENCH_TMP/state-$rt" run --bundle "$BENCH_TMP/bundle" "$BENCH_CGROUP_LEAF-check")
		# One run first: a runtime that cannot run here is reported and skipped.
		if ! err="$("${cmd[@]}" 2>&1 </dev/null)"; then
			"${BIN[$rt]}" --root "$BENCH_TMP/state-$rt" delete --force "$BENCH_CGROUP_LEAF-check" >/dev/null 2>&1 || true
			if [[ "$rt" == crun ]]; then
				warn "crun fails in this wrapper, skipped: $err"
				BIN[crun]=""
				continue
			fi
			die "$rt fails in this wrapper: $err"
		fi
	done

	BENCH_KEEL="${BIN[keel]}" BENCH_KEEL_RO="${BIN[keel-ro]}" BENCH_RUNC="${BIN[runc]}" BENCH_CRUN="${BIN[crun]}" \
		BENCH_CGROUP_BASE="/$cgroup_parent/$BENCH_CGROUP_LEAF" BENCH_ID_PREFIX="$BENCH_CGROUP_LEAF" \
		python3 "$here/targets.py"
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
if [[ -n "${KEEL:-}" ]]; then
	keel="$KEEL"
else
	log "building keel (the release artefact: scripts/release.sh)"
	keel="$("$KEEL_REPO_ROOT/scripts/release.sh")"
fi

preexisting=()
for d in /sys/fs/cgroup/*/"$cgroup_parent"; do
	if [[ -d "$d" ]]; then
		preexisting+=("$d")
	fi
done

tmp="$(mktemp -d /tmp/keel-bench.XXXXXX)"
# Searchable by the user namespace configuration's root (host uid 100000).
chmod 755 "$tmp"
leaf="bench-$$"
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	local d p ours
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
	# The `runc spec` configuration has no cgroupsPath: its containers'
	# cgroups, named after their ids ($leaf-...), are under the runtimes'
	# own (deleted with the containers, unless interrupted).
	find /sys/fs/cgroup -mindepth 2 -maxdepth 8 -type d -name "$leaf-*" -prune \
		-exec sh -c 'find "$1" -depth -type d -exec rmdir {} + 2>/dev/null' sh {} \; 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

bundle="$tmp/bundle"
mkdir -p "$bundle"
make_busybox_rootfs "$bundle/rootfs"
(cd "$bundle" && "$keel" spec)
# The base config for all runtimes, `keel spec`'s (as `runc spec`'s: new
# pid, network, ipc, uts and mount namespaces, a read-only rootfs, masked
# and read-only paths); targets.py derives the configurations it measures
# from it. ociVersion 1.0.2: crun 1.8 refuses 1.2.0 with "unknown version
# specified".
edit_config "$bundle/config.json" "
c['ociVersion'] = '1.0.2'
c['process']['terminal'] = False
c['process']['args'] = ['/bin/true']
"

log "runtimes: keel $("$keel" --version | head -1), $(runc --version | head -1), $(crun --version | head -1)"
BENCH_TMP="$tmp" BENCH_N="$n" BENCH_KEEL="$keel" BENCH_CGROUP_LEAF="$leaf" \
	unshare -m -- bash "$here/bench.sh" --inner
