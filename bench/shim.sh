#!/usr/bin/env bash
# containerd shim benchmark: containerd-shim-keel-v2 against the stock
# containerd-shim-runc-v2 with runc, in the same run, under one private
# containerd (Debian's 1.6; own root/state/socket, /run on a tmpfs in its
# own mount namespace: the machine's containerd, if any, is not touched).
#
# Prints, for each shim:
#   - RSS, PSS and USS (private pages) with 1 running container, and with
#     20 containers of one pod (grouped by the io.containerd.runc.v2.group
#     annotation) in one shim; summed over every process of the shim's
#     binary that serves this containerd (keel's shim is one process with
#     one thread: the process count is printed to show it), with the
#     keel/runc ratio. RSS counts the shared pages of the binary and libc
#     in full, PSS divides them among their users, USS leaves them out;
#   - `ctr run --rm busybox true` latency, N runs per shim, interleaved,
#     with the keel/runc ratio.
#
# Usage: bench/shim.sh [N]     (or BENCH_N=N; default 20)
#        KEEL_SHIM_DIR=DIR: use the containerd-shim-keel-v2 in DIR, no build
# Needs root and the Rust toolchain; installs containerd and busybox-static
# with apt if missing; builds the shim (profile shim, static; musl, whose
# Rust target it adds with rustup if missing, else glibc).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/common.sh
source "$here/../scripts/common.sh"

N="${1:-${BENCH_N:-20}}"
PODS=20

require_root "bench/shim.sh"
require_cargo
ensure_packages containerd busybox-static util-linux

cd "$KEEL_REPO_ROOT"
if [[ -n "${KEEL_SHIM_DIR:-}" ]]; then
	shim_dir="$KEEL_SHIM_DIR"
else
	shim_dir="$(build_deployed_shim)"
fi

tmp=$(mktemp -d /tmp/keel-shim-bench.XXXXXX)
ns="bench$$"
sock="$tmp/containerd.sock"
cat >"$tmp/config.toml" <<EOF
version = 2
root = "$tmp/root"
state = "$tmp/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$sock"
EOF

PATH="$shim_dir:$PATH" unshare -m --propagation private -- \
	sh -c 'mount -t tmpfs tmpfs /run && exec containerd -c "$1"' sh "$tmp/config.toml" \
	>"$tmp/containerd.log" 2>&1 &
daemon=$!

ctr() { nsenter -t "$daemon" -m -- ctr -a "$sock" -n "$ns" "$@"; }

# shellcheck disable=SC2317 # called by the trap
cleanup() {
	local id pid d
	for id in $(ctr task ls -q 2>/dev/null); do
		ctr task kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
	done
	sleep 0.5
	for id in $(ctr task ls -q 2>/dev/null); do ctr task delete -f "$id" >/dev/null 2>&1 || true; done
	for id in $(ctr c ls -q 2>/dev/null); do ctr c delete "$id" >/dev/null 2>&1 || true; done
	for pid in $(shim_pids containerd-shim-keel-v2) $(shim_pids containerd-shim-runc-v2); do
		kill -9 "$pid" 2>/dev/null || true
	done
	kill "$daemon" 2>/dev/null || true
	wait "$daemon" 2>/dev/null || true
	for d in /sys/fs/cgroup/*/"$ns"; do
		[[ -d "$d" ]] && rmdir "$d"/* "$d" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

# shim_pids BIN: the shim processes of this containerd (not the short
# `start`/`delete` actions, nor a container process the keel shim forked
# that has not exec'd yet: same cmdline, the shim as parent).
shim_pids() {
	local p cmd ppid
	for p in $(pgrep -f "^[^ ]*$1 .*-address $sock" || true); do
		cmd=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) || continue
		[[ "$cmd" == *" start"* || "$cmd" == *" delete"* ]] && continue
		ppid=$(awk '{print $4}' "/proc/$p/stat" 2>/dev/null) || continue
		grep -q "$1" "/proc/$ppid/cmdline" 2>/dev/null && continue
		echo "$p"
	done
}

# shim_mem BIN: "procs threads rss pss uss" (kB) summed over BIN's shim
# processes (smaps_rollup).
shim_mem() {
	local p procs=0 threads=0 rss=0 pss=0 uss=0 r a b c
	for p in $(shim_pids "$1"); do
		r=$(awk '$1 == "Rss:" {r=$2} $1 == "Pss:" {p=$2}
			$1 == "Private_Clean:" || $1 == "Private_Dirty:" {u+=$2}
			END {print r+0, p+0, u+0}' "/proc/$p/smaps_rollup" 2>/dev/null) || continue
		read -r a b c <<<"$r"
		procs=$((procs + 1))
		threads=$((threads + $(find "/proc/$p/task" -mindepth 1 -maxdepth 1 | wc -l)))
		rss=$((rss + a)) pss=$((pss + b)) uss=$((uss + c))
	done
	echo "$procs $threads $rss $pss $uss"
}

for _ in $(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.1; done
bash "$KEEL_REPO_ROOT/scripts/busybox-oci.sh" "$tmp/image.tar"
ctr images import "$tmp/image.tar" >/dev/null
image=docker.io/library/keel-busybox:latest

declare -A BIN=([keel]=containerd-shim-keel-v2 [runc]=containerd-shim-runc-v2)
declare -A RT=([keel]=io.containerd.keel.v2 [runc]=io.containerd.runc.v2)
declare -A MEM1 MEM20 LAT

for r in keel runc; do
	ctr run -d --runtime "${RT[$r]}" "$image" "one-$r" sleep 1000 >/dev/null
	sleep 0.5
	MEM1[$r]=$(shim_mem "${BIN[$r]}")
	ctr task kill -s SIGKILL "one-$r" >/dev/null
	for _ in $(seq 50); do [[ "$(ctr task ls | awk -v i="one-$r" '$1==i {print $3}')" == STOPPED ]] && break; sleep 0.1; done
	ctr task delete "one-$r" >/dev/null
	ctr c delete "one-$r" >/dev/null
	sleep 0.5

	for i in $(seq "$PODS"); do
		ctr run -d --runtime "${RT[$r]}" --annotation "io.containerd.runc.v2.group=pod-$r" \
			"$image" "pod-$r-$i" sleep 1000 >/dev/null
	done
	sleep 0.5
	[[ "$(shim_pids "${BIN[$r]}" | wc -l)" -eq 1 ]] || warn "$r: expected one shim for the pod"
	MEM20[$r]=$(shim_mem "${BIN[$r]}")
	for i in $(seq "$PODS"); do ctr task kill -s SIGKILL "pod-$r-$i" >/dev/null; done
	sleep 1
	for i in $(seq "$PODS"); do
		ctr task delete "pod-$r-$i" >/dev/null 2>&1 || true
		ctr c delete "pod-$r-$i" >/dev/null 2>&1 || true
	done
done

# Latency: interleaved, so both see the same machine load.
declare -A TOTAL=([keel]=0 [runc]=0)
for r in keel runc; do ctr run --rm --runtime "${RT[$r]}" "$image" "warm-$r" true >/dev/null; done
for i in $(seq "$N"); do
	for r in keel runc; do
		s=$(date +%s%N)
		ctr run --rm --runtime "${RT[$r]}" "$image" "lat-$r-$i" true >/dev/null
		e=$(date +%s%N)
		TOTAL[$r]=$((TOTAL[$r] + (e - s) / 1000))
	done
done
for r in keel runc; do LAT[$r]=$((TOTAL[$r] / N / 1000)); done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
# row LABEL N UNIT FIELD: field FIELD (1-based) of MEM<N> for both shims.
row() {
	local -n m="MEM$2"
	local k r
	k=$(echo "${m[keel]}" | cut -d' ' -f"$4")
	r=$(echo "${m[runc]}" | cut -d' ' -f"$4")
	printf '%-40s %9s %2s %9s %2s %8s\n' "$1" "$k" "$3" "$r" "$3" "$(ratio "$k" "$r")"
}
printf '\n%-40s %12s %12s %8s\n' "" "keel shim" "runc shim" "keel/runc"
for n in 1 20; do
	what="1 container"
	[[ $n == 20 ]] && what="$PODS containers in one pod"
	row "shim processes, $what" "$n" "" 1
	row "shim threads, $what" "$n" "" 2
	row "shim RSS, $what" "$n" kB 3
	row "shim PSS, $what" "$n" kB 4
	row "shim USS, $what" "$n" kB 5
done
printf '%-40s %9s ms %9s ms %8s\n' "ctr run --rm true (mean of $N)" "${LAT[keel]}" "${LAT[runc]}" "$(ratio "${LAT[keel]}" "${LAT[runc]}")"
