#!/usr/bin/env bash
# Builds keel's WebAssembly executor (wasm/, the `keel-wasm` binary, and the
# `wat2wasm` the tests convert their modules with) and prints the
# executor's path on stdout. The build is also the crate's clippy check
# (-D warnings): clippy-driver compiles keel-wasm's own targets, so the
# engine's dependencies are compiled once, not a second time for a
# separate `cargo clippy` (on 2 cores that pass cost ~250 CPU-seconds).
# With --lint, checks the crate's formatting instead (prints nothing).
#
# wasm/ is outside the cargo workspace: wasmtime is a long build (minutes
# on 2 cores) that `cargo build --workspace` must not pay, and keel's own
# binary does not contain it. The build is cached: its target directory is
# $KEEL_WASM_CACHE/keel-wasm-target (default /var/cache/keel), and each
# result is kept under a key made of the crate's sources, its Cargo.lock
# and the rustc version, so a rerun with nothing changed only hashes files.
# The executor is linked statically: it runs inside containers whose root
# filesystem need not have a C library (keel executes it by fd).
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
require_cargo

cache="${KEEL_WASM_CACHE:-/var/cache/keel}"
crate="$KEEL_REPO_ROOT/wasm"
if [[ "${1:-}" == "--lint" ]]; then
	cd "$crate"
	exec cargo fmt -- --check
fi

key=$(
	cd "$crate"
	{
		rustc -vV
		find Cargo.toml Cargo.lock src examples -type f | LC_ALL=C sort | xargs sha256sum
	} | sha256sum | cut -c1-16
)
out="$cache/keel-wasm-$key"
if [[ -f "$out/done" ]]; then
	echo "$out/keel-wasm"
	exit 0
fi

mkdir -p "$out"
host=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR="$cache/keel-wasm-target"
# Static (the container may have no libc); --target keeps the flag off the
# build scripts and proc macros, which must stay dynamic.
export RUSTFLAGS="-C target-feature=+crt-static"
# What `cargo clippy -- -D warnings` sets up: clippy-driver for the
# crate's own targets only, the dependencies compiled by rustc.
export RUSTC_WORKSPACE_WRAPPER
RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver"
[[ -x "$RUSTC_WORKSPACE_WRAPPER" ]] ||
	die "no $RUSTC_WORKSPACE_WRAPPER: keel-wasm is built with clippy's lints (rustup component add clippy)"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
cd "$crate"
log "building keel-wasm (wasmtime; minutes on a cold cache) with clippy"
cargo build --locked --release --target "$host" --bins --examples --tests
cp "$CARGO_TARGET_DIR/$host/release/keel-wasm" "$out/keel-wasm"
cp "$CARGO_TARGET_DIR/$host/release/examples/wat2wasm" "$out/wat2wasm"
touch "$out/done"
echo "$out/keel-wasm"
