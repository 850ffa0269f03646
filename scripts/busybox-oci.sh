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
mkdir -p "$root"/{bin,etc,proc,sys,dev,tmp}
cp /bin/busybox "$root/bin/"
for a in sh cat ls echo sleep true false id ps kill stty tty wc head printf dd yes grep \
	hostname httpd nc touch mkdir stat env tail tr mount umount; do
	ln -s busybox "$root/bin/$a"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"
"$(dirname "${BASH_SOURCE[0]}")/oci-image.sh" "$out" docker.io/library/keel-busybox:latest "$root" '["sh"]'
