//! Entering the new root, and the protections applied inside it.

use crate::error::{Result, SysContext};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};
use std::path::Path;

/// pivot_root into `rootfs` and detach the old root; or, with `no_pivot`,
/// move the rootfs over `/` and chroot (for ramfs roots, where pivot fails).
pub fn enter(rootfs: &Path, no_pivot: bool) -> Result<()> {
    nix::unistd::chdir(rootfs).ctx(|| format!("chdir {}", rootfs.display()))?;
    if no_pivot {
        nix::mount::mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .ctx(|| format!("move {} to /", rootfs.display()))?;
        nix::unistd::chroot(".").ctx(|| "chroot".into())?;
    } else {
        // pivot_root(".", ".") stacks the old root on top of the new one;
        // unmounting "." then leaves just the new root, without needing a
        // directory inside the rootfs to park the old one in.
        nix::unistd::pivot_root(".", ".").ctx(|| format!("pivot_root {}", rootfs.display()))?;
        // Keep the unmount from propagating to the host's mounts.
        nix::mount::mount(
            None::<&str>,
            ".",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )
        .ctx(|| "make old root rslave".into())?;
        nix::mount::umount2(".", MntFlags::MNT_DETACH).ctx(|| "detach old root".into())?;
    }
    nix::unistd::chdir("/").ctx(|| "chdir /".into())
}

/// The flags a remount must keep: in a user namespace, clearing nosuid,
/// nodev, noexec or atime flags that the mount already has is refused.
fn locked_flags(path: &Path) -> MsFlags {
    let Ok(st) = statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    out
}

/// Remounts an existing bind mount with `flags`, keeping locked flags.
pub fn remount_bind(path: &Path, flags: MsFlags) -> nix::Result<()> {
    let base = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags;
    match nix::mount::mount(None::<&str>, path, None::<&str>, base, None::<&str>) {
        Err(Errno::EPERM) => nix::mount::mount(
            None::<&str>,
            path,
            None::<&str>,
            base | locked_flags(path),
            None::<&str>,
        ),
        r => r,
    }
}

pub fn readonly_path(p: &Path) -> Result<()> {
    match nix::mount::mount(
        Some(p),
        p,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Err(Errno::ENOENT) => return Ok(()),
        r => r.ctx(|| format!("linux.readonlyPaths: bind {}", p.display()))?,
    }
    remount_bind(p, MsFlags::MS_RDONLY | MsFlags::MS_REC)
        .ctx(|| format!("linux.readonlyPaths: remount {} read-only", p.display()))
}

pub fn mask_path(p: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(_) => return Ok(()), // nothing there to hide
    };
    let r = if meta.is_dir() {
        nix::mount::mount(
            Some("tmpfs"),
            p,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
    } else {
        nix::mount::mount(
            Some("/dev/null"),
            p,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    match r {
        Err(Errno::ENOENT) => Ok(()),
        r => r.ctx(|| format!("linux.maskedPaths: mask {}", p.display())),
    }
}

pub fn remount_root_readonly() -> Result<()> {
    remount_bind(Path::new("/"), MsFlags::MS_RDONLY)
        .ctx(|| "root.readonly: remount / read-only".into())
}
