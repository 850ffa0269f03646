#!/usr/bin/env bash
# Runs each cargo-fuzz target of fuzz/ for a bounded time, starting from the
# committed seeds (fuzz/seeds/<target>; the working corpus grows in
# fuzz/corpus/<target>, which git ignores). Prints the executions per target;
# exits non-zero on a crash (the input is in fuzz/artifacts/<target>/: turn
# it into a regression test).
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#        (SECONDS per target, default 60 or $KEEL_FUZZ_SECONDS; default
#        targets: all of fuzz/Cargo.toml)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain for
# its sanitizer flags; without one, stable runs with RUSTC_BOOTSTRAP=1.
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$KEEL_REPO_ROOT/fuzz"
require_cargo

secs="${1:-${KEEL_FUZZ_SECONDS:-60}}"
[[ "$secs" =~ ^[0-9]+$ ]] || die "seconds must be a number, not '$secs'"
shift || true
command -v cargo-fuzz >/dev/null || die "cargo-fuzz not found: cargo install cargo-fuzz"

toolchain=()
if command -v rustup >/dev/null && rustup toolchain list | grep -q '^nightly'; then
	toolchain=(+nightly)
else
	export RUSTC_BOOTSTRAP=1
	log "no nightly toolchain: stable with RUSTC_BOOTSTRAP=1"
fi

targets=("$@")
if ((${#targets[@]} == 0)); then
	mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
fi

# One build of every target first (sanitizers, release): its time is then
# not taken from the first target's run, and a build error says so.
log "build the fuzz targets"
start=$(date +%s)
cargo "${toolchain[@]}" fuzz build -O || die "the fuzz targets do not build"
log "built in $(($(date +%s) - start))s"

failed=()
summary=()
for t in "${targets[@]}"; do
	mkdir -p "corpus/$t"
	[[ -d "seeds/$t" ]] && cp -n "seeds/$t"/* "corpus/$t"/ 2>/dev/null || true
	log "fuzz $t for ${secs}s"
	out="$(mktemp)"
	rc=0
	cargo "${toolchain[@]}" fuzz run -O "$t" "corpus/$t" -- \
		-max_total_time="$secs" -print_final_stats=1 >"$out" 2>&1 || rc=$?
	runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -1)"
	if ((rc == 0)); then
		summary+=("ok    $t: ${runs:-?} runs in ${secs}s")
	else
		tail -40 "$out" >&2
		summary+=("FAIL  $t: exit $rc after ${runs:-?} runs (see fuzz/artifacts/$t)")
		failed+=("$t")
	fi
	rm -f "$out"
done
printf '\n==> fuzz summary\n' >&2
printf '    %s\n' "${summary[@]}" >&2
((${#failed[@]} == 0)) || die "fuzz targets failed: ${failed[*]}"
