#!/usr/bin/env bash
# The run command of keel: builds keel, makes a busybox bundle and runs one
# container that prints its hostname, ids, pid and mounts.
#
# Needs root and the Rust toolchain; installs busybox-static if missing.
# Everything it creates (temp dir, state, cgroups) is removed at the end.
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$KEEL_REPO_ROOT"

require_root "scripts/demo.sh"
require_cargo
ensure_packages busybox-static util-linux
command -v python3 >/dev/null || ensure_packages python3

log "building keel (release)"
cargo build --release --quiet -p keel-runtime
keel="$(keel_target_dir)/release/keel"

id="demo"
cgroup_parent="keel-demo"
cgroups_path="/$cgroup_parent/demo-$$"

# The cgroup parents that exist already are not ours to remove.
preexisting=()
for d in /sys/fs/cgroup/*/"$cgroup_parent" /sys/fs/cgroup/"$cgroup_parent"; do
	if [[ -d "$d" ]]; then
		preexisting+=("$d")
	fi
done

tmp="$(mktemp -d /tmp/keel-demo.XXXXXX)"
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	local d p ours
	# Normally `keel run` has deleted the container; this is for an interrupt.
	"$keel" --root "$tmp/state" delete --force "$id" >/dev/null 2>&1 || true
	for d in /sys/fs/cgroup/*/"$cgroup_parent" /sys/fs/cgroup/"$cgroup_parent"; do
		[[ -d "$d" ]] || continue
		rmdir "$d/demo-$$" 2>/dev/null || true
		ours=1
		for p in "${preexisting[@]}"; do
			if [[ "$p" == "$d" ]]; then
				ours=0
			fi
		done
		if ((ours)); then
			rmdir "$d" 2>/dev/null || warn "could not remove cgroup $d"
		fi
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

bundle="$tmp/bundle"
mkdir -p "$bundle"
make_busybox_rootfs "$bundle/rootfs"
(cd "$bundle" && "$keel" spec)

# What the container runs.
read -r -d '' script <<'EOF' || true
echo "hostname: $(hostname)"
echo "id:       $(id)"
echo "pid:      $$"
echo "mounts:"
cat /proc/self/mounts
EOF
DEMO_SCRIPT="$script" DEMO_CGROUPS_PATH="$cgroups_path" edit_config "$bundle/config.json" "
c['process']['terminal'] = False
c['process']['args'] = ['/bin/sh', '-c', env['DEMO_SCRIPT']]
c['linux']['cgroupsPath'] = env['DEMO_CGROUPS_PATH']
"

log "keel run $id (bundle $bundle, cgroupsPath $cgroups_path)"
printf -- '----- container output -----\n'
rc=0
unshare -m --propagation private -- \
	"$keel" --root "$tmp/state" run --bundle "$bundle" "$id" </dev/null || rc=$?
printf -- '----- end of container output (exit status %d) -----\n' "$rc"
exit "$rc"
