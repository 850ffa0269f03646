//! The mount points a restore needs in the rootfs. CRIU mounts the
//! container's mounts again but makes no mount point: a rootfs that never
//! ran (an engine's fresh snapshot, an imported checkpoint) lacks those
//! the first create made (`/run` of containerd's default spec, say). As
//! runc's prepareCriuRestoreMounts: each mount's destination is made
//! inside the rootfs (a file for a bind of a non-directory), but those
//! beneath a tmpfs of the config, whose content CRIU restores itself; a
//! bind whose source is gone fails here, naming it. Each bind source is
//! bound at its destination while the rest are made, so that a mount point
//! inside another bind mount is made in that mount's source, as at create
//! (runc's issue 2748); those binds are undone before CRIU runs.

use super::describe::is_bind;
use crate::error::{Result, SysContext};
use crate::rootfs::path::{make_in_root, open_in_root, strip_root, Kind};
use crate::spec::Bundle;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

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
    let mut bound = Vec::new();
    let made = make_all(bundle, mounts, &tmpfs, root.as_fd(), &mut bound);
    for dest in bound.iter().rev() {
        unbind(root.as_fd(), rootfs, dest);
    }
    made
}

/// Makes the mount points, binding each bind source at its destination
/// (recorded in `bound`, for the caller to undo whatever happens).
fn make_all(
    bundle: &Bundle,
    mounts: &[oci_spec::runtime::Mount],
    tmpfs: &[&Path],
    root: BorrowedFd<'_>,
    bound: &mut Vec<PathBuf>,
) -> Result<()> {
    let rootfs = &bundle.rootfs;
    for m in mounts {
        let dest = m.destination();
        if tmpfs.iter().any(|t| dest != *t && dest.starts_with(t)) {
            continue;
        }
        let mut kind = Kind::Dir;
        let mut bind = None;
        if let Some(source) = m.source().as_ref().filter(|_| is_bind(m)) {
            // As runc, a source that is gone is named before CRIU starts.
            let source = bundle.path.join(source);
            let meta = std::fs::metadata(&source)
                .ctx(|| format!("restore: mount source {}", source.display()))?;
            if !meta.is_dir() {
                kind = Kind::File;
            }
            bind = Some(source);
        }
        let at = make_in_root(root, &strip_root(rootfs, dest), kind)
            .ctx(|| format!("restore: mount point {} in the rootfs", dest.display()))?;
        if let Some(source) = bind {
            mount(
                Some(&source),
                &proc_fd(at.as_raw_fd()),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .ctx(|| {
                format!(
                    "restore: bind {} at {} to make the mount points in it",
                    source.display(),
                    dest.display()
                )
            })?;
            bound.push(dest.to_path_buf());
        }
    }
    Ok(())
}

fn proc_fd(fd: i32) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{fd}"))
}

/// Undoes a bind of [`make_all`]: the destination opened again lands on
/// the mount's root, which is what is unmounted.
fn unbind(root: BorrowedFd<'_>, rootfs: &Path, dest: &Path) {
    if let Ok(at) = open_in_root(root, &strip_root(rootfs, dest), OFlag::O_PATH, false) {
        if let Err(e) = umount2(&proc_fd(at.as_raw_fd()), MntFlags::MNT_DETACH) {
            log::warn!("restore: unbind {}: {e}", dest.display());
        }
    }
}
