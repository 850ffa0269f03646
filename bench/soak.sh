#!/usr/bin/env bash
# Soak: N create/start/delete cycles and N exec into one running container
# (default 1000 each), then a check that the host has the same mounts,
# cgroups, test fds, state dirs and processes as before, and that keel's
# peak RSS did not grow. CI runs the same test with 200
# (conformance/tests/soak.rs); this is the full run. Prints the figures.
#
# Usage: bench/soak.sh [N]         (or KEEL_SOAK_CYCLES=N; default 1000)
#
# Needs root and the Rust toolchain. Uses $KEEL_RUNTIME, else the
# workspace's debug build (built first).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/common.sh
source "$here/../scripts/common.sh"
cd "$KEEL_REPO_ROOT"
require_root "bench/soak.sh"
require_cargo
ensure_packages busybox-static util-linux

n="${1:-${KEEL_SOAK_CYCLES:-1000}}"
[[ "$n" =~ ^[0-9]+$ ]] || die "cycles must be a number, not '$n'"
if [[ -z "${KEEL_RUNTIME:-}" ]]; then
	cargo build -p keel-runtime
	KEEL_RUNTIME="$(keel_target_dir)/debug/keel"
fi
export KEEL_RUNTIME KEEL_SOAK_CYCLES="$n"
log "soak: $n cycles and $n execs with $KEEL_RUNTIME"
# The test's own mount namespace, as in scripts/test.sh; the figures are the
# lines the test prints starting with "soak:".
unshare -m --propagation private -- \
	cargo test -p keel-conformance --test soak -- --nocapture --test-threads=1 2>&1 |
	grep -E '^(soak:|test |test result)'
