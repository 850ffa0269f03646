//! Writes to procfs files (sysctls, LSM attributes) that cannot be
//! redirected: the file is opened beneath the root of a real procfs with
//! openat2, refusing magic links, mount crossings and symlinks that leave
//! it (procfs's own, like `self`, stay beneath), so a bind mount placed
//! over the path (CVE-2025-52565/-52881 class) makes the write fail
//! instead of landing somewhere else.

use crate::error::{Error, Result, SysContext};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

const RESOLVE_NO_XDEV: u64 = 0x01;
const RESOLVE_BENEATH: u64 = 0x08;
/// The inode number of every procfs root.
const PROC_ROOT_INO: u64 = 1;

/// Writes `value` to `path`, which must be under /proc.
pub(crate) fn write(path: &Path, value: &str) -> Result<()> {
    let fd = open(path, OFlag::O_WRONLY)?;
    nix::unistd::write(&fd, value.as_bytes())
        .ctx(|| format!("write {:?} to {}", value, path.display()))?;
    Ok(())
}

/// Opens `path` (under /proc) with `flags`, refusing anything that is not
/// the procfs file of that name.
pub(crate) fn open(path: &Path, flags: OFlag) -> Result<OwnedFd> {
    let rel = path.strip_prefix("/proc").map_err(|_| {
        Error::sys(
            format!("{} is not under /proc", path.display()),
            Errno::EINVAL,
        )
    })?;
    let proc = proc_root()?;
    let c = std::ffi::CString::new(rel.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::sys(format!("open {}", path.display()), Errno::EINVAL))?;
    let resolve = RESOLVE_BENEATH | RESOLVE_NO_XDEV | crate::sys::RESOLVE_NO_MAGICLINKS;
    let fd = match crate::sys::openat2(proc.as_fd(), &c, flags.bits(), 0, resolve) {
        // Kernels before 5.6: no openat2. The final component at least
        // must not be a symlink, and the file must be on procfs.
        Err(Errno::ENOSYS) => nix::fcntl::open(
            path,
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ),
        r => r,
    }
    .ctx(|| format!("open {}", path.display()))?;
    check_procfs(&fd, path)?;
    Ok(fd)
}

/// /proc, checked to be the root of a procfs.
fn proc_root() -> Result<OwnedFd> {
    let fd = nix::fcntl::open(
        "/proc",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| "open /proc".into())?;
    check_procfs(&fd, Path::new("/proc"))?;
    let st = nix::sys::stat::fstat(&fd).ctx(|| "stat /proc".into())?;
    if st.st_ino != PROC_ROOT_INO {
        return Err(Error::sys(
            "/proc is not the root of a procfs",
            Errno::EXDEV,
        ));
    }
    Ok(fd)
}

fn check_procfs(fd: &OwnedFd, path: &Path) -> Result<()> {
    let fs = nix::sys::statfs::fstatfs(fd).ctx(|| format!("statfs {}", path.display()))?;
    if fs.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        return Err(Error::sys(
            format!("{} is not on procfs", path.display()),
            Errno::EXDEV,
        ));
    }
    Ok(())
}
