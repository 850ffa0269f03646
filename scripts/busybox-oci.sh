#!/usr/bin/env bash
# Writes an OCI image layout tar of a busybox rootfs (Debian's busybox-static,
# no registry): `ctr images import` loads it as
# docker.io/library/keel-busybox:latest.
#
# Usage: scripts/busybox-oci.sh OUT.tar
set -euo pipefail
out="$1"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root"/{bin,etc,proc,sys,dev,tmp} "$work/oci/blobs/sha256"
cp /bin/busybox "$root/bin/"
for a in sh cat ls echo sleep true false id ps kill stty tty wc head printf dd yes grep; do
	ln -s busybox "$root/bin/$a"
done
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
printf '{"architecture":"%s","os":"linux","config":{"Cmd":["sh"],"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
	"$arch" "$lh" >"$work/config.json"
read -r ch csz < <(put "$work/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
	"$ch" "$csz" "$lh" "$lsz" >"$work/manifest.json"
read -r mh msz < <(put "$work/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"docker.io/library/keel-busybox:latest","org.opencontainers.image.ref.name":"latest"}}]}' \
	"$mh" "$msz" >"$work/oci/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
tar -C "$work/oci" -cf "$out" oci-layout index.json blobs
