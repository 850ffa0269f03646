#!/usr/bin/env bash
# The test command of keel (CI runs it through .ci/run).
#
# Installs what the tests need if it is missing, then runs, in order:
#   cargo fmt --all -- --check
#   cargo clippy --workspace --all-targets -- -D warnings
#   cargo build --workspace
#   cargo test --workspace --no-fail-fast  (unit and conformance tests; needs root)
#   scripts/fuzz.sh 15                       (each fuzz target 15 s, if cargo-fuzz is there)
# Every step runs even when an earlier one failed (except the tests after a
# failed build), a summary follows, and the exit status is non-zero if any
# step failed.
#
# Environment:
#   KEEL_TEST_TIMEOUT   overall time budget in seconds (default 3600 = 60 min,
#                       inside CI's 90); a step still running when it is
#                       spent is killed.
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$KEEL_REPO_ROOT"

require_root "scripts/test.sh"
require_cargo

# Test dependencies from apt: runc for the differential conformance tests,
# busybox-static for the test rootfs, util-linux for unshare, libseccomp-dev
# for the seccomp compiler's differential tests, uidmap (newuidmap) for the
# rootless tests with several id ranges, podman for the podman tests (rootless
# and the engine suite, with catatonit for --init and netavark + iptables for
# a bridge network in the suite's own network namespace), containerd (with ctr
# and the runc shim) for the shim's tests and the containerd engine suite
# against a private containerd 1.6, docker.io (dockerd 20.10 and its client)
# with tini (docker-init, for --init) for the Docker engine suite.
ensure_packages runc busybox-static util-linux libseccomp-dev uidmap podman \
	catatonit netavark iptables containerd docker.io tini

# rustfmt and clippy come with a rustup toolchain as components.
if command -v rustup >/dev/null; then
	for tool in rustfmt clippy; do
		if ! cargo "${tool/rustfmt/fmt}" --version >/dev/null 2>&1; then
			log "adding rustup component $tool"
			rustup component add "$tool"
		fi
	done
fi

# The conformance tests run this keel binary (they default to the workspace's
# target/debug/keel, which is wrong when CARGO_TARGET_DIR points elsewhere).
export KEEL_RUNTIME="${KEEL_RUNTIME:-$(keel_target_dir)/debug/keel}"

budget="${KEEL_TEST_TIMEOUT:-3600}"
deadline=$(($(date +%s) + budget))
failed=()
summary=()

# step NAME CMD...: runs CMD within what is left of the budget, records the
# result and never exits the script.
step() {
	local name="$1" left start rc
	shift
	left=$((deadline - $(date +%s)))
	if ((left <= 0)); then
		summary+=("SKIP  $name (time budget of ${budget}s spent)")
		failed+=("$name")
		return 1
	fi
	printf '\n==> [%s] %s\n' "$name" "$*" >&2
	start=$(date +%s)
	rc=0
	timeout --kill-after=30 "$left" "$@" || rc=$?
	local took=$(($(date +%s) - start))
	if ((rc == 0)); then
		summary+=("ok    $name (${took}s)")
	else
		((rc == 124)) && warn "$name: killed after the time budget ran out"
		summary+=("FAIL  $name (exit $rc, ${took}s)")
		failed+=("$name")
	fi
	return "$rc"
}

log "keel tests on $(uname -sr), $(nproc) cores; $(cargo --version)"
log "time budget ${budget}s"

step fmt cargo fmt --all -- --check || true
step clippy cargo clippy --workspace --all-targets -- -D warnings || true
if step build cargo build --workspace; then
	# In a private mount namespace, so a mount a failing test leaves behind
	# dies with the namespace instead of staying on the host.
	step test unshare -m --propagation private -- cargo test --workspace --no-fail-fast || true
	# The cgroup tests again, on pure cgroup v2, in VMs (this host is hybrid
	# and has no systemd as init): busybox as init, then systemd.
	step cgroup-v2-vm scripts/cgroup-v2-vm.sh || true
	step cgroup-v2-systemd-vm scripts/cgroup-v2-vm.sh --systemd || true
	# systemd on a hybrid layout (as this host's) is slow under TCG: the
	# one test that covers the driver. (Pure v1, `--v1`, takes minutes
	# there: run by hand.)
	step cgroup-hybrid-systemd-vm env KEEL_VM_FILTER=a_transient_scope \
		scripts/cgroup-v2-vm.sh --systemd=hybrid || true
else
	summary+=("SKIP  test (the build failed)")
	failed+=("test")
fi
# The fuzz targets, briefly ($KEEL_FUZZ_SECONDS each, default 15), last: with
# cargo-fuzz installed and 10 minutes of the budget left (building them
# with sanitizers takes minutes on 2 cores); else skipped, said so.
if ! command -v cargo-fuzz >/dev/null; then
	summary+=("SKIP  fuzz (cargo-fuzz not installed: cargo install cargo-fuzz)")
elif ((deadline - $(date +%s) < 600)); then
	summary+=("SKIP  fuzz (less than 10 minutes of the budget left)")
else
	step fuzz scripts/fuzz.sh "${KEEL_FUZZ_SECONDS:-15}" || true
fi

printf '\n==> summary\n' >&2
printf '    %s\n' "${summary[@]}" >&2
if ((${#failed[@]} > 0)); then
	printf '==> FAILED: %s\n' "${failed[*]}" >&2
	exit 1
fi
printf '==> all passed\n' >&2
