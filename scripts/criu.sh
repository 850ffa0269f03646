#!/usr/bin/env bash
# Makes sure a CRIU >= 4.1 is available and prints its path on stdout.
#
# keel's checkpoint/restore (and runc's) drive CRIU. Debian 12's criu 3.17
# cannot dump anything on kernels >= 6.13 (they split the vvar mapping,
# which CRIU handles from 4.1 on: "vdso: Unexpected rt vDSO area bounds"
# before that). In order, this script uses:
#   1. the `criu` on PATH, if it is 4.1 or newer;
#   2. a CRIU it built before, cached in $KEEL_CRIU_CACHE/criu-<version>/criu
#      (default /var/cache/keel), so a rerun does not rebuild;
#   3. otherwise it builds one: the source of Debian sid's `criu` package
#      (fetched with `apt-get source --download-only` through a private apt
#      configuration whose only source is sid's deb-src line: the system's
#      apt sources are not changed), the build dependencies from the
#      system's own release (bookworm has them all), `make criu`, and caches
#      the binary. About 2.5 minutes on 2 cores.
# Needs root for the apt installs and the cache directory.
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

MIN_MAJOR=4
MIN_MINOR=1
cache="${KEEL_CRIU_CACHE:-/var/cache/keel}"

# criu_ok BIN: whether BIN runs and says it is CRIU >= 4.1.
criu_ok() {
	local v major minor
	v=$("$1" --version 2>/dev/null | sed -n 's/^Version: *//p') || return 1
	[[ "$v" =~ ^([0-9]+)\.([0-9]+) ]] || return 1
	major=${BASH_REMATCH[1]}
	minor=${BASH_REMATCH[2]}
	((major > MIN_MAJOR || (major == MIN_MAJOR && minor >= MIN_MINOR)))
}

if bin=$(command -v criu) && criu_ok "$bin"; then
	echo "$bin"
	exit 0
fi
shopt -s nullglob
for bin in "$cache"/criu-*/criu; do
	if criu_ok "$bin"; then
		echo "$bin"
		exit 0
	fi
done
shopt -u nullglob

require_root "scripts/criu.sh (building CRIU)"
log "no CRIU >= $MIN_MAJOR.$MIN_MINOR: building one from Debian sid's source package"
ensure_packages gcc make xz-utils pkg-config libprotobuf-c-dev protobuf-c-compiler \
	libprotobuf-dev protobuf-compiler python3-protobuf libnl-3-dev libnl-route-3-dev \
	libnet1-dev libcap-dev libaio-dev libbsd-dev libgnutls28-dev uuid-dev libdrm-dev

work=$(mktemp -d /tmp/keel-criu-build.XXXXXX)
# apt downloads as the _apt user: it must reach the private lists.
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/src"
echo 'deb-src http://deb.debian.org/debian sid main' >"$work/apt/sources.list"
apt_private=(
	-o "Dir::Etc::SourceList=$work/apt/sources.list"
	-o "Dir::Etc::SourceParts=/dev/null"
	-o "Dir::State::Lists=$work/apt/lists"
	-o "Dir::Cache=$work/apt/cache"
)
apt-get "${apt_private[@]}" -qq update
# Only the upstream tarball is needed; apt may fail on the Debian part
# (it is replaced as sid moves on), so the tarball itself is checked.
(cd "$work/src" && apt-get "${apt_private[@]}" -qq source --download-only criu >/dev/null 2>&1) || true
tarballs=("$work"/src/criu_*.orig.tar.*)
[[ -f "${tarballs[0]}" ]] || die "could not download the criu source from Debian sid (apt-get source criu)"
version=$(basename "${tarballs[0]}")
version=${version#criu_}
version=${version%.orig.tar.*}
log "building CRIU $version (make criu; the log is kept on failure)"
tar -xf "${tarballs[0]}" -C "$work/src"
tree="$work/src/criu-$version"
if ! make -C "$tree" -j"$(nproc)" criu >"$work/make.log" 2>&1; then
	tail -n 30 "$work/make.log" >&2
	trap - EXIT
	die "building CRIU $version failed (tree and log in $work)"
fi
criu_ok "$tree/criu/criu" || die "the CRIU built from $version is not >= $MIN_MAJOR.$MIN_MINOR"
dest="$cache/criu-$version"
mkdir -p "$dest"
install -m 0755 "$tree/criu/criu" "$dest/criu.tmp"
mv "$dest/criu.tmp" "$dest/criu"
log "CRIU $version cached at $dest/criu"
echo "$dest/criu"
