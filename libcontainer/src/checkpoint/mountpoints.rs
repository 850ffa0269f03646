//! The mount points a restore needs in the rootfs. CRIU mounts the
//! container's mounts again but makes no mount point: a rootfs that never
//! ran (an engine's fresh snapshot, an imported checkpoint) lacks those
//! the first create made (`/run` of containerd's default spec, say). As
//! runc's prepareCriuRestoreMounts: each mount's destination is made
//! inside the rootfs (a file for a bind of a non-directory), but those
//! beneath a tmpfs of the config, whose content CRIU restores itself; a
//! bind whose source is gone fails here, naming it.

use super::describe::is_bind;
use crate::error::{Result, SysContext};
use crate::rootfs::path::{make_in_root, strip_root, Kind};
use crate::spec::Bundle;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use std::path::Path;

pub(super) fn prepare(bundle: &Bundle) -> Result<()> {
    let mounts = bundle.spec.mounts().as_deref().unwrap_or_default();
    let tmpfs: Vec<&Path> = mounts
        .iter()
        .filter(|m| m.typ().as_deref() == Some("tmpfs"))
        .map(|m| m.destination().as_path())
        .collect();
    let rootfs = &bundle.rootfs;
    let root = open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("open rootfs {}", rootfs.display()))?;
    for m in mounts {
        let dest = m.destination();
        if tmpfs.iter().any(|t| dest != *t && dest.starts_with(t)) {
            continue;
        }
        let mut kind = Kind::Dir;
        if let Some(source) = m.source().as_ref().filter(|_| is_bind(m)) {
            // As runc, a source that is gone is named before CRIU starts.
            let source = bundle.path.join(source);
            let meta = std::fs::metadata(&source)
                .ctx(|| format!("restore: mount source {}", source.display()))?;
            if !meta.is_dir() {
                kind = Kind::File;
            }
        }
        make_in_root(
            std::os::fd::AsFd::as_fd(&root),
            &strip_root(rootfs, dest),
            kind,
        )
        .ctx(|| format!("restore: mount point {} in the rootfs", dest.display()))?;
    }
    Ok(())
}
