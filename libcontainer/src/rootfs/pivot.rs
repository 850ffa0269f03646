//! Entering the new root, and the protections applied inside it.

use super::path;
use crate::error::{Error, Result, SysContext};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// pivot_root into `rootfs` and detach the old root; or, with `no_pivot`,
/// move the rootfs over `/` and chroot (for ramfs roots, where pivot fails);
/// without a mount namespace of its own, where the caller's root must stay
/// as it is, chroot only (runc's rootfs_linux.go: chroot()).
pub fn enter(rootfs: &Path, no_pivot: bool, own_mount_ns: bool) -> Result<()> {
    nix::unistd::chdir(rootfs).ctx(|| format!("chdir {}", rootfs.display()))?;
    if !own_mount_ns {
        nix::unistd::chroot(".").ctx(|| "chroot".into())?;
    } else if no_pivot {
        hide_outer_proc_and_sysfs(rootfs)?;
        nix::mount::mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .ctx(|| format!("move {} to /", rootfs.display()))?;
        nix::unistd::chroot(".").ctx(|| "chroot".into())?;
    } else {
        // pivot_root(".", ".") stacks the old root on top of the new one;
        // unmounting "." then leaves just the new root, without needing a
        // directory inside the rootfs to park the old one in.
        let old_root = nix::fcntl::open(
            "/",
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| "open the old root".into())?;
        nix::unistd::pivot_root(".", ".").ctx(|| format!("pivot_root {}", rootfs.display()))?;
        // "." must name the old root, stacked on top: the cwd still names
        // the new root below it (mount(2) does not cross a mount stacked on
        // its starting point), which must keep its propagation (an rshared
        // bind stays a peer of the host's mount).
        nix::unistd::fchdir(&old_root).ctx(|| "fchdir to the old root".into())?;
        drop(old_root);
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

/// Without pivot_root the namespace keeps the caller's mounts beneath the
/// chroot, and the kernel lets a process in a nested user namespace mount
/// proc or sysfs if any full one of them is there uncovered
/// (mount_too_revealing): a host /proc would defeat the container's masked
/// paths. As runc's msMoveRoot, every full proc and sysfs mount outside the
/// rootfs is detached (made a slave first, so that the host keeps it), or
/// covered with a tmpfs where it cannot be.
fn hide_outer_proc_and_sysfs(rootfs: &Path) -> Result<()> {
    let outer = crate::mountinfo::read_self()?.into_iter().filter(|m| {
        m.root == Path::new("/")
            && (m.fstype == "proc" || m.fstype == "sysfs")
            && !m.mount_point.starts_with(rootfs)
    });
    for m in outer {
        let at = &m.mount_point;
        match nix::mount::mount(
            None::<&str>,
            at,
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        ) {
            // A mount beneath one detached already.
            Err(Errno::ENOENT) => continue,
            r => r.ctx(|| format!("--no-pivot: make {} rslave", at.display()))?,
        }
        match nix::mount::umount2(at, MntFlags::MNT_DETACH) {
            Err(Errno::EINVAL | Errno::EPERM) => nix::mount::mount(
                Some("tmpfs"),
                at,
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            )
            .ctx(|| format!("--no-pivot: cover {} with a tmpfs", at.display()))?,
            r => r.ctx(|| format!("--no-pivot: detach {}", at.display()))?,
        }
    }
    Ok(())
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
    super::remount::bind(p, MsFlags::MS_RDONLY | MsFlags::MS_REC, MsFlags::empty())
        .ctx(|| format!("linux.readonlyPaths: remount {} read-only", p.display()))
}

/// The container's root (after the pivot), for [`mask_path`].
pub fn root() -> Result<OwnedFd> {
    nix::fcntl::open("/", OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).ctx(|| "open /".into())
}

/// Masks `p` (resolved in the container's `root`, magic links refused)
/// with a read-only tmpfs if it is a directory, else with a bind of
/// `null`. As runc 1.5 (maskPaths), the directories share one tmpfs: the
/// first one's is kept in `dir_mask` and bound onto the next ones, a fresh
/// tmpfs serving where that bind fails.
pub fn mask_path(
    root: &OwnedFd,
    p: &Path,
    null: &OwnedFd,
    dir_mask: &mut Option<OwnedFd>,
    label: Option<&str>,
) -> Result<()> {
    let target = match path::open_in_root(root.as_fd(), p, OFlag::O_PATH, false) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()), // nothing there to hide
        Err(e) => {
            return Err(Error::sys(
                format!("linux.maskedPaths: open {}", p.display()),
                e,
            ))
        }
    };
    let is_dir = nix::sys::stat::fstat(&target)
        .map(|st| SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) == SFlag::S_IFDIR)
        .ctx(|| format!("linux.maskedPaths: stat {}", p.display()))?;
    let at = path::fd_path(&target);
    let bind = |from: &OwnedFd| {
        nix::mount::mount(
            Some(&path::fd_path(from)),
            &at,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    if !is_dir {
        return bind(null).ctx(|| format!("linux.maskedPaths: mask {}", p.display()));
    }
    if dir_mask.as_ref().is_some_and(|shared| bind(shared).is_ok()) {
        return Ok(());
    }
    let data = crate::security::lsm::mount_data("", "tmpfs", label);
    nix::mount::mount(
        Some("tmpfs"),
        &at,
        Some("tmpfs"),
        MsFlags::MS_RDONLY,
        (!data.is_empty()).then_some(data.as_str()),
    )
    .ctx(|| format!("linux.maskedPaths: mask {}", p.display()))?;
    if dir_mask.is_none() {
        // The fd taken before mounting names the covered directory.
        *dir_mask = path::open_in_root(root.as_fd(), p, OFlag::O_PATH, false).ok();
    }
    Ok(())
}

/// The container's /dev/null, checked to be the null device: a symlink or
/// any other file there must not become the source of the masking binds,
/// which would expose (or make writable) whatever it points to
/// (CVE-2025-31133).
pub fn dev_null() -> Result<OwnedFd> {
    let fd = nix::fcntl::open(
        "/dev/null",
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "linux.maskedPaths: open /dev/null".into())?;
    let st = nix::sys::stat::fstat(&fd).ctx(|| "linux.maskedPaths: stat /dev/null".into())?;
    let is_char = SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) == SFlag::S_IFCHR;
    if !is_char || st.st_rdev != nix::sys::stat::makedev(1, 3) {
        return Err(Error::invalid(
            "linux.maskedPaths",
            "/dev/null in the container is not the null device (char 1:3): refusing to mask paths with it",
        ));
    }
    Ok(fd)
}

pub fn remount_root_readonly() -> Result<()> {
    super::remount::bind(Path::new("/"), MsFlags::MS_RDONLY, MsFlags::empty())
        .ctx(|| "root.readonly: remount / read-only".into())
}
