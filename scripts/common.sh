# shellcheck shell=bash
# Helpers shared by scripts/*.sh and bench/bench.sh. Source it; do not run it.

# The repository root (this file lives in <root>/scripts).
KEEL_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export KEEL_REPO_ROOT

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# require_root WHAT: containers, cgroups and mounts need root.
require_root() {
	[[ "$(id -u)" -eq 0 ]] || die "$1 needs root (it creates containers, cgroups and mounts)"
}

# pkg_installed PKG: whether the Debian package PKG is installed.
pkg_installed() {
	# shellcheck disable=SC2016 # ${Status} is dpkg-query's field, not ours.
	[[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

# ensure_packages PKG...: installs with apt whatever of PKG... is missing;
# does nothing (no apt-get update either) when all are already installed.
ensure_packages() {
	local missing=() p
	for p in "$@"; do
		pkg_installed "$p" || missing+=("$p")
	done
	if ((${#missing[@]} == 0)); then
		return 0
	fi
	command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get to install them"
	log "installing missing packages with apt: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# require_cargo: cargo on PATH (rustup's default location included).
require_cargo() {
	if ! command -v cargo >/dev/null && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
		PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
		export PATH
	fi
	command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (rustup) first"
}

# has_rust_target TRIPLE: whether the toolchain can build for TRIPLE; adds
# it with rustup (a download) when it can. Returns 1 when it cannot.
has_rust_target() {
	local libdir
	libdir=$(rustc --print target-libdir --target "$1" 2>/dev/null || true)
	[[ -d "$libdir" ]] && return 0
	command -v rustup >/dev/null || return 1
	log "adding the Rust target $1 (rustup target add)"
	rustup target add "$1" >&2 || return 1
}

# keel_target_dir: where cargo puts the build (honours CARGO_TARGET_DIR).
keel_target_dir() {
	echo "${CARGO_TARGET_DIR:-$KEEL_REPO_ROOT/target}"
}

# busybox_path: the static busybox binary from busybox-static.
busybox_path() {
	local b
	for b in /bin/busybox /usr/bin/busybox; do
		if [[ -x "$b" ]]; then
			echo "$b"
			return 0
		fi
	done
	die "busybox not found (package busybox-static)"
}

# make_busybox_rootfs DIR: a minimal rootfs in DIR: busybox, applet links,
# and the empty directories the runtime mounts over.
make_busybox_rootfs() {
	local rootfs="$1" bb applet
	bb="$(busybox_path)"
	mkdir -p "$rootfs"/{bin,proc,sys,dev,etc,tmp}
	cp "$bb" "$rootfs/bin/busybox"
	for applet in sh ls cat echo true false id hostname mount ps sleep env uname; do
		ln -sf busybox "$rootfs/bin/$applet"
	done
	echo 'root:x:0:0:root:/:/bin/sh' >"$rootfs/etc/passwd"
	echo 'root:x:0:' >"$rootfs/etc/group"
}

# edit_config CONFIG PYTHON_CODE: edits CONFIG (JSON) in place; the code sees
# the parsed document as `c` and the environment as `env` (pass values that
# way rather than pasting them into the code).
edit_config() {
	local config="$1" code="$2"
	python3 - "$config" "$code" <<'EOF'
import json, os, sys
path, code = sys.argv[1], sys.argv[2]
with open(path) as f:
    c = json.load(f)
exec(code, {"c": c, "env": os.environ})
with open(path, "w") as f:
    json.dump(c, f, indent=2)
    f.write("\n")
EOF
}

# build_deployed_shim: builds containerd-shim-keel-v2 as deployed and
# prints its directory. Profile shim (size-optimised release), static and
# not position-independent (as Debian's runc shim), so that no shared
# library nor relocation is paged in by a long-lived idle process. musl
# (its Rust target added with rustup if missing): its libc and malloc are
# a fraction of glibc's; else glibc, static. --target keeps the flags off
# build scripts and proc macros.
build_deployed_shim() {
	local arch target flags
	arch=$(uname -m)
	target="$arch-unknown-linux-musl"
	flags="-C relocation-model=static"
	if ! has_rust_target "$target"; then
		warn "no Rust target $target: building the shim with glibc, static"
		target="$arch-unknown-linux-gnu"
		flags="$flags -C target-feature=+crt-static"
	fi
	log "building containerd-shim-keel-v2 (profile shim, static, $target)"
	RUSTFLAGS="$flags" cargo build --profile shim -p keel-shim --target "$target" >&2
	echo "$(keel_target_dir)/$target/shim"
}
