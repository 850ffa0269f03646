#!/usr/bin/env bash
# The release artefact: a statically linked, stripped keel. Static, it
# starts without the dynamic loader (no ld.so, libc, libm, libgcc_s to map
# and relocate: part of every `keel run`, twice with the CVE-2019-5736
# re-exec) and keeps fewer pages resident. Prints the binary's path.
#
# Usage: scripts/release.sh
# Environment:
#   KEEL_RELEASE_PROFILE  cargo profile (default release)
#   KEEL_RELEASE_LIBC     musl (default) or gnu (glibc with crt-static).
#                         musl's build is 0.85 MB smaller and keeps ~0.8 MB
#                         fewer pages resident (static glibc alone is ~1 MB),
#                         and with dlmalloc as keel's allocator (musl's
#                         malloc maps and unmaps ~120 times per `run`) it is
#                         no slower. Without the musl Rust target (and
#                         rustup cannot add it), the default falls back to
#                         gnu with a warning. See BENCHMARKS.md.
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$KEEL_REPO_ROOT"
require_cargo

profile="${KEEL_RELEASE_PROFILE:-release}"
triple="$(rustc -vV | awk '$1 == "host:" { print $2 }')"
[[ "$triple" == *-linux-gnu ]] || die "scripts/release.sh builds for *-linux-gnu hosts, not $triple"
case "${KEEL_RELEASE_LIBC:-default}" in
gnu) ;;
musl)
	triple="${triple%-gnu}-musl"
	has_rust_target "$triple" || die "no Rust target $triple, and rustup could not add it"
	;;
default)
	if has_rust_target "${triple%-gnu}-musl"; then
		triple="${triple%-gnu}-musl"
	else
		warn "no Rust target ${triple%-gnu}-musl: building keel with glibc, static (larger, more resident pages)"
	fi
	;;
*) die "KEEL_RELEASE_LIBC must be musl or gnu, not '$KEEL_RELEASE_LIBC'" ;;
esac
# With --target, RUSTFLAGS reach only the target's crates (not build
# scripts or proc macros), and the build has its own directory.
# relocation-model=static: a static non-PIE executable, with nothing to
# relocate at start (static-pie rewrites every pointer in its data, pages
# that then stay resident). No unwind tables where panics abort (the
# release profiles): nothing would read them.
flags="-C target-feature=+crt-static -C relocation-model=static"
[[ "$profile" == dev ]] || flags+=" -C force-unwind-tables=no"
RUSTFLAGS="$flags" cargo build --quiet --profile "$profile" --target "$triple" -p keel-runtime
dir="$profile"
[[ "$profile" == dev ]] && dir=debug
keel="$(keel_target_dir)/$triple/$dir/keel"
# ldd fails (status 1) on a non-PIE static executable: read its output only.
[[ "$(ldd "$keel" 2>&1 || true)" =~ "not a dynamic"|"statically linked" ]] || die "$keel is not statically linked"
echo "$keel"
