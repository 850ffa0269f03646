#!/usr/bin/env bash
# Start-up of a hello-world WebAssembly module (conformance/wasm/hello.wat,
# as a binary): the executor alone (`keel-wasm hello.wasm`, what `wasmtime
# run hello.wasm` does), and `keel run` of a container annotated
# run.oci.handler=wasm running it; with `keel run` of a native /bin/true in
# the same container for scale. N runs of each, interleaved; prints the
# median of each (ms) and the container's cost over the executor alone.
#
# Usage: bench/wasm.sh [N]        (default 20)
# keel is the release artefact (scripts/release.sh) unless KEEL names a
# binary; the executor is scripts/wasm.sh's unless KEEL_WASM_EXECUTOR
# names one. KEEL_BASELINE names another keel (say, a release build from
# before a change) whose native run is timed too, interleaved, to show
# that native containers did not get slower.
#
# Needs root. Everything runs in one private mount namespace; the
# containers' cgroups are under keel-bench-wasm/ and removed at the end.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/common.sh
source "$here/../scripts/common.sh"

if [ -z "${KEEL_BENCH_WASM_NS:-}" ]; then
	exec unshare -m --propagation private env KEEL_BENCH_WASM_NS=1 "$0" "$@"
fi

n="${1:-20}"
keel="${KEEL:-}"
if [ -z "$keel" ]; then
	log "building keel (the release artefact: scripts/release.sh)"
	keel="$("$KEEL_REPO_ROOT/scripts/release.sh")"
fi
exe="${KEEL_WASM_EXECUTOR:-$("$KEEL_REPO_ROOT/scripts/wasm.sh")}"
export KEEL_WASM_EXECUTOR="$exe"

work="$(mktemp -d /tmp/keel-bench-wasm.XXXXXX)"
parent="keel-bench-wasm"
cleanup() {
	for d in /sys/fs/cgroup/*/"$parent" /sys/fs/cgroup/unified/"$parent"; do
		[ -d "$d" ] || continue
		find "$d" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null || true
		rmdir "$d" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

# bundle NAME ARGS_JSON ANNOTATIONS_JSON: a busybox bundle at $work/NAME.
bundle() {
	local b="$work/$1"
	mkdir -p "$b/rootfs/bin"
	cp /bin/busybox "$b/rootfs/bin/"
	ln -s busybox "$b/rootfs/bin/true"
	"$(dirname "$exe")/wat2wasm" "$KEEL_REPO_ROOT/conformance/wasm/hello.wat" "$b/rootfs/hello.wasm"
	(cd "$b" && "$keel" spec)
	python3 - "$b/config.json" "$parent/$1" "$2" "$3" <<'EOF'
import json, sys
path, cgroup, args, annotations = sys.argv[1:]
c = json.load(open(path))
c["process"]["terminal"] = False
c["process"]["args"] = json.loads(args)
c["annotations"] = json.loads(annotations)
c["linux"]["cgroupsPath"] = "/" + cgroup
json.dump(c, open(path, "w"), indent=1)
EOF
}
bundle wasm '["/hello.wasm"]' '{"run.oci.handler": "wasm"}'
bundle native '["/bin/true"]' '{}'
"$(dirname "$exe")/wat2wasm" "$KEEL_REPO_ROOT/conformance/wasm/hello.wat" "$work/hello.wasm"

# Microseconds since the epoch.
now() { date +%s%6N; }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# timed NAME CMD...: runs CMD (stdout checked for the module's line where
# it prints one), appends its time (us) to $work/t-NAME.
timed() {
	local name="$1" t0 t1 out
	shift
	t0=$(now)
	out=$("$@" 2>"$work/err") || die "$name: $(cat "$work/err")"
	t1=$(now)
	[[ "$name" == native || "$name" == baseline || "$out" == "hello from wasm" ]] || die "$name printed '$out'"
	echo $((t1 - t0)) >>"$work/t-$name"
}

for _ in $(seq "$n"); do
	timed executor "$exe" "$work/hello.wasm"
	timed keel-wasm "$keel" --root "$work/root" run -b "$work/wasm" c </dev/null
	timed native "$keel" --root "$work/root" run -b "$work/native" c </dev/null
	if [ -n "${KEEL_BASELINE:-}" ]; then
		timed baseline "$KEEL_BASELINE" --root "$work/root" run -b "$work/native" c </dev/null
	fi
done

ms() { median <"$work/t-$1" | awk '{ printf "%.1f", $1 / 1000 }'; }
printf 'wasm start-up, median of %s (ms): executor alone %s, keel run (wasm) %s, keel run (native /bin/true) %s\n' \
	"$n" "$(ms executor)" "$(ms keel-wasm)" "$(ms native)"
if [ -n "${KEEL_BASELINE:-}" ]; then
	printf 'native keel run: %s ms, baseline %s ms (ratio %s)\n' "$(ms native)" "$(ms baseline)" \
		"$(awk -v a="$(ms native)" -v b="$(ms baseline)" 'BEGIN { printf "%.2f", a / b }')"
fi
printf 'keel run (wasm) - executor alone: %s ms\n' \
	"$(awk -v a="$(ms keel-wasm)" -v b="$(ms executor)" 'BEGIN { printf "%.1f", a - b }')"
