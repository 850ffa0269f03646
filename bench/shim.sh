#!/usr/bin/env bash
# containerd shim benchmark: containerd-shim-keel-v2 against the stock
# containerd-shim-runc-v2 with runc, in the same run, under one private
# containerd (Debian's 1.6; own root/state/socket, /run on a tmpfs in its
# own mount namespace: the machine's containerd, if any, is not touched).
#
# Prints:
#   - the shim's RSS and PSS with 1 running container, and with 20
#     containers of one pod (grouped by the io.containerd.runc.v2.group
#     annotation) in one shim; keel's figures include its zygote (the helper
#     process that forks, whose pages are mostly shared with the shim: RSS
#     counts them twice, PSS once);
#   - `ctr run --rm busybox true` latency, N runs per shim, interleaved,
#     with the keel/runc ratio.
#
# Usage: bench/shim.sh [N]     (or BENCH_N=N; default 20)
#        KEEL_SHIM_DIR=DIR: use the containerd-shim-keel-v2 in DIR, no build
# Needs root and the Rust toolchain; installs containerd and busybox-static
# with apt if missing; builds the shim in release mode.
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
	log "building containerd-shim-keel-v2 (profile shim: release, size-optimised)"
	cargo build --profile shim -p keel-shim >&2
	shim_dir="$(keel_target_dir)/shim"
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

# shim_pids BIN: shim servers (not their zygotes) of this containerd.
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

# mem_kb FIELD PID...: summed Rss or Pss (smaps_rollup). Pss shares the
# pages a process shares with others (keel's zygote is a fork of its shim)
# among them; Rss counts them in each.
mem_kb() {
	local f="$1" p total=0 kb
	shift
	for p in "$@"; do
		kb=$(awk -v f="$f:" '$1 == f {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
		total=$((total + ${kb:-0}))
	done
	echo "$total"
}

# shim_mem FIELD BIN: Rss or Pss of the shim server plus its helper
# children of the same binary (keel's zygote).
shim_mem() {
	local f="$1"
	shift
	local pids=() p c
	for p in $(shim_pids "$1"); do
		pids+=("$p")
		for c in $(pgrep -P "$p" || true); do
			grep -q "$1" "/proc/$c/cmdline" 2>/dev/null && pids+=("$c")
		done
	done
	mem_kb "$f" "${pids[@]}"
}

for _ in $(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.1; done
bash "$KEEL_REPO_ROOT/scripts/busybox-oci.sh" "$tmp/image.tar"
ctr images import "$tmp/image.tar" >/dev/null
image=docker.io/library/keel-busybox:latest

declare -A BIN=([keel]=containerd-shim-keel-v2 [runc]=containerd-shim-runc-v2)
declare -A RT=([keel]=io.containerd.keel.v2 [runc]=io.containerd.runc.v2)
declare -A RSS1 RSS20 PSS1 PSS20 LAT

for r in keel runc; do
	ctr run -d --runtime "${RT[$r]}" "$image" "one-$r" sleep 1000 >/dev/null
	sleep 0.5
	RSS1[$r]=$(shim_mem Rss "${BIN[$r]}")
	PSS1[$r]=$(shim_mem Pss "${BIN[$r]}")
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
	RSS20[$r]=$(shim_mem Rss "${BIN[$r]}")
	PSS20[$r]=$(shim_mem Pss "${BIN[$r]}")
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

printf '\n%-34s %12s %12s %8s\n' "" "keel shim" "runc shim" "keel/runc"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
printf '%-34s %9s kB %9s kB %8s\n' "shim RSS, 1 container" "${RSS1[keel]}" "${RSS1[runc]}" "$(ratio "${RSS1[keel]}" "${RSS1[runc]}")"
printf '%-34s %9s kB %9s kB %8s\n' "shim RSS, $PODS containers in one pod" "${RSS20[keel]}" "${RSS20[runc]}" "$(ratio "${RSS20[keel]}" "${RSS20[runc]}")"
printf '%-34s %9s kB %9s kB %8s\n' "shim PSS, 1 container" "${PSS1[keel]}" "${PSS1[runc]}" "$(ratio "${PSS1[keel]}" "${PSS1[runc]}")"
printf '%-34s %9s kB %9s kB %8s\n' "shim PSS, $PODS containers in one pod" "${PSS20[keel]}" "${PSS20[runc]}" "$(ratio "${PSS20[keel]}" "${PSS20[runc]}")"
printf '%-34s %9s ms %9s ms %8s\n' "ctr run --rm true (mean of $N)" "${LAT[keel]}" "${LAT[runc]}" "$(ratio "${LAT[keel]}" "${LAT[runc]}")"
