#!/usr/bin/env bash
# Writes an OCI image layout tar of one rootfs directory (a single layer, no
# registry): `ctr images import` loads it under NAME.
#
# Usage: scripts/oci-image.sh OUT.tar NAME ROOTFS CMD_JSON
#   CMD_JSON is the image config's Cmd, e.g. '["sh"]'.
set -euo pipefail
out="$1" name="$2" root="$3" cmd="$4"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/oci/blobs/sha256"
tar -C "$root" --numeric-owner -cf "$work/layer.tar" .

# put FILE: stores FILE as a blob, prints "digest size".
put() {
	local h
	h=$(sha256sum "$1" | cut -d' ' -f1)
	cp "$1" "$work/oci/blobs/sha256/$h"
	echo "$h $(stat -c %s "$1")"
}
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
read -r lh lsz < <(put "$work/layer.tar")
printf '{"architecture":"%s","os":"linux","config":{"Cmd":%s,"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
	"$arch" "$cmd" "$lh" >"$work/config.json"
read -r ch csz < <(put "$work/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
	"$ch" "$csz" "$lh" "$lsz" >"$work/manifest.json"
read -r mh msz < <(put "$work/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
	"$mh" "$msz" "$name" "${name##*:}" >"$work/oci/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
tar -C "$work/oci" -cf "$out" oci-layout index.json blobs
