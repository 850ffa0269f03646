#!/usr/bin/env bash
# Checkpoint and restore time of a small container (busybox `sleep`), keel
# against runc in the same run, with the same CRIU (scripts/criu.sh's):
# N times per runtime, the runtimes interleaved: `run -d`, then `checkpoint`
# (timed: the container is gone after), then `restore -d` (timed) from
# those images, then `delete --force`. Prints the median of each (ms) and
# keel/runc.
#
# Usage: bench/criu.sh [N]        (default 10)
# keel is the release artefact (scripts/release.sh) unless KEEL names a
# binary; runc is /usr/sbin/runc unless RUNC names one.
#
# Needs root. Everything runs in one private mount namespace; the
# containers' cgroups are under keel-bench-criu/ and removed at the end.
# The program reopens its stdio on the container's /dev/null: CRIU cannot
# dump a host file the runtime handed it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/common.sh
source "$here/../scripts/common.sh"

if [ -z "${KEEL_BENCH_CRIU_NS:-}" ]; then
	exec unshare -m --propagation private env KEEL_BENCH_CRIU_NS=1 "$0" "$@"
fi

n="${1:-10}"
runc="${RUNC:-/usr/sbin/runc}"
keel="${KEEL:-}"
if [ -z "$keel" ]; then
	log "building keel (the release artefact: scripts/release.sh)"
	keel="$("$KEEL_REPO_ROOT/scripts/release.sh")"
fi
criu="$("$KEEL_REPO_ROOT/scripts/criu.sh")"
export PATH="$(dirname "$criu"):$PATH"

work="$(mktemp -d /tmp/keel-bench-criu.XXXXXX)"
parent="keel-bench-criu"
cleanup() {
	for d in /sys/fs/cgroup/*/"$parent" /sys/fs/cgroup/unified/"$parent"; do
		[ -d "$d" ] || continue
		find "$d" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null || true
		rmdir "$d" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

bundle="$work/bundle"
mkdir -p "$bundle/rootfs/bin"
cp /bin/busybox "$bundle/rootfs/bin/"
for a in sh sleep; do ln -s busybox "$bundle/rootfs/bin/$a"; done
(cd "$bundle" && "$runc" spec)
python3 - "$bundle/config.json" "$parent" <<'EOF'
import json, sys
path, parent = sys.argv[1], sys.argv[2]
c = json.load(open(path))
c["process"]["terminal"] = False
c["process"]["args"] = ["sh", "-c", "exec </dev/null >/dev/null 2>&1; exec sleep 3600"]
c["linux"]["cgroupsPath"] = "/" + parent + "/ctr"
# runc 1.1.5's restore of a read-only root fails (CRIU: "mnt: Can't create
# a temporary directory: Read-only file system").
c["root"]["readonly"] = False
json.dump(c, open(path, "w"), indent=1)
EOF

# Microseconds since the epoch.
now() { date +%s%6N; }

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# sample NAME BINARY: one run -d, checkpoint (timed), restore -d (timed),
# delete; the times (us) are appended to $work/NAME.checkpoint, .restore.
# Warnings (runc's about cgroups still busy after the checkpoint's
# destroy) go to a file, shown only when a command fails.
sample() {
	local name="$1" bin="$2" root="$work/root-$1" err="$work/err" t0 t1 t2
	rm -rf "$work/images"
	"$bin" --root "$root" run -d -b "$bundle" ctr </dev/null >/dev/null 2>"$err" ||
		die "$name run: $(cat "$err")"
	t0=$(now)
	"$bin" --root "$root" --criu "$criu" checkpoint --image-path "$work/images" ctr 2>"$err" ||
		die "$name checkpoint: $(cat "$err")"
	t1=$(now)
	"$bin" --root "$root" --criu "$criu" restore -d --image-path "$work/images" -b "$bundle" ctr \
		</dev/null >/dev/null 2>"$err" || die "$name restore: $(cat "$err")"
	t2=$(now)
	"$bin" --root "$root" delete --force ctr 2>"$err" || die "$name delete: $(cat "$err")"
	echo "$((t1 - t0))" >>"$work/$name.checkpoint"
	echo "$((t2 - t1))" >>"$work/$name.restore"
}

log "$n checkpoints and restores each, CRIU $("$criu" --version | sed -n 's/^Version: *//p')"
# Interleaved, so that a change of the machine's load hits both alike.
for ((i = 0; i < n; i++)); do
	sample runc "$runc"
	sample keel "$keel"
done
r="runc $(median <"$work/runc.checkpoint") $(median <"$work/runc.restore")"
k="keel $(median <"$work/keel.checkpoint") $(median <"$work/keel.restore")"
awk -v r="$r" -v k="$k" 'BEGIN {
	split(r, a, " "); split(k, b, " ")
	printf "%-8s %14s %14s\n", "", "checkpoint ms", "restore ms"
	printf "%-8s %14.1f %14.1f\n", "runc", a[2] / 1000, a[3] / 1000
	printf "%-8s %14.1f %14.1f\n", "keel", b[2] / 1000, b[3] / 1000
	printf "%-8s %14.2f %14.2f\n", "keel/runc", b[2] / a[2], b[3] / a[3]
}'
