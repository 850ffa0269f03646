#!/usr/bin/env bash
# CRI benchmark: pods through containerd 1.6's CRI plugin with keel's shim
# (io.containerd.keel.v2), the stock runc shim with runc, and the runc shim
# running keel, in the same run, under one private containerd (the CRI
# suite's: conformance/src/cri.rs; own root/state/socket, own mount and
# network namespaces: the machine's containerd, if any, is not touched).
#
# Prints, per handler (conformance/examples/cri_bench.rs):
#   - pod start latency: RunPodSandbox + CreateContainer + StartContainer
#     until running, N runs with the handlers interleaved (median, mean,
#     ratio to runc);
#   - pod density: shim processes, threads, summed RSS, PSS and anonymous
#     memory with 50 one-container pods, and per pod;
#   - issue #18's pod targets, PASS or MISS: keel's pod start <= 0.60 x
#     runc's, keel's shim RSS per pod <= 2.5 MB at 50 pods;
#   - the load average before and after.
#
# Usage: bench/cri.sh [N]     (or BENCH_N=N; default 10)
#        KEEL_SHIM_DIR=DIR: use the containerd-shim-keel-v2 in DIR, no build
#        KEEL_CRI_DEBUG=1 KEEL_CONF_KEEP=1: containerd logs at debug level
#        (timestamps of each step, the keel shim's included) and its temp
#        dir, with containerd.log, is kept; bench/cri_phases.py LOG N
#        then says where each handler's pod start time goes
# Needs root and the Rust toolchain; installs what the CRI suite needs with
# apt if missing; builds keel (release) and the shim as deployed (see
# build_deployed_shim in scripts/common.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/common.sh
source "$here/../scripts/common.sh"

N="${1:-${BENCH_N:-10}}"

require_root "bench/cri.sh"
require_cargo
ensure_packages containerd runc busybox-static util-linux iptables \
	containernetworking-plugins protobuf-compiler

cd "$KEEL_REPO_ROOT"
KEEL_SHIM_DIR="${KEEL_SHIM_DIR:-$(build_deployed_shim)}"
log "building keel (release)"
cargo build --release -p keel-runtime >&2
log "building the benchmark (conformance/examples/cri_bench.rs)"
cargo build -p keel-conformance --example cri_bench >&2
KEEL_RUNTIME="$(keel_target_dir)/release/keel"
export KEEL_SHIM_DIR KEEL_RUNTIME
log "keel $KEEL_RUNTIME, shim $KEEL_SHIM_DIR/containerd-shim-keel-v2"
unshare -m --propagation private -- "$(keel_target_dir)/debug/examples/cri_bench" "$N"
