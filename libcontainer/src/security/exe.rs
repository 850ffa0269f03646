//! CVE-2019-5736: a container must not reach the runtime's binary on the
//! host through `/proc/<pid>/exe`.
//!
//! keel forks the init and `exec`'s processes without re-executing itself,
//! so until their final execve their `/proc/<pid>/exe` is the binary the
//! runtime was started from. Two ways in, both closed here:
//!
//! - the program itself: a process whose executable (or `#!` interpreter)
//!   is `/proc/self/exe` makes that final execve run the runtime's binary
//!   inside the container, which can then open `/proc/self/exe`, keep the
//!   fd, and write through it once the runtime has exited (the original
//!   exploit). [`protect`] re-executes keel, before anything is forked,
//!   from a read-only view of its binary: a detached read-only bind mount
//!   of the file (no copy: runc 1.2 does the same with an overlay), or
//!   where that cannot be made (no CAP_SYS_ADMIN, kernels before 5.12) a
//!   sealed memfd copy (crun's way). The container can run that binary,
//!   not change the file on the host.
//! - another process of the container (a shared pid namespace, or one
//!   started by `exec`) opening `/proc/<pid>/exe` of a keel process that
//!   has dropped to the container's identity. `program.rs` makes those
//!   processes non-dumpable until execve, so the kernel refuses such opens
//!   (and of their fds, environ, memory) to anyone without CAP_SYS_PTRACE.

use crate::error::{Error, Result, SysContext};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, SealFlag};
use std::ffi::{CStr, CString, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

const SEALS: SealFlag = SealFlag::from_bits_truncate(
    SealFlag::F_SEAL_SEAL.bits()
        | SealFlag::F_SEAL_SHRINK.bits()
        | SealFlag::F_SEAL_GROW.bits()
        | SealFlag::F_SEAL_WRITE.bits(),
);

/// How the running binary is out of the container's reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// It is a sealed memfd copy.
    Sealed,
    /// It is on a read-only mount: nobody can open it for writing.
    ReadOnlyMount,
}

/// Makes sure this process runs from a binary the container cannot modify:
/// returns how if it already does, and otherwise re-executes the process
/// (same argv and environment) from a read-only bind mount of its binary,
/// or failing that from a sealed memfd copy; it does not return then. Call
/// it first thing in a program that creates containers or runs processes
/// in them, while single-threaded.
pub fn protect(args: Vec<OsString>) -> Result<(Protection, Option<PathBuf>)> {
    // Where the binary was before a re-exec hid it: /proc/self/exe of a
    // detached bind mount or a memfd no longer says.
    let inherited = std::env::var_os(ORIGIN_ENV).map(PathBuf::from);
    std::env::remove_var(ORIGIN_ENV);
    // A program started from a view by another (the shim's server) is told
    // its path by argv[0].
    let argv0 = args.first().map(PathBuf::from).filter(|p| p.is_absolute());
    let exe = open_exe()?;
    if nix::fcntl::fcntl(&exe, FcntlArg::F_GET_SEALS)
        .is_ok_and(|s| SealFlag::from_bits_truncate(s).contains(SEALS))
    {
        return Ok((Protection::Sealed, inherited.or(argv0)));
    }
    let vfs = nix::sys::statvfs::fstatvfs(&exe).ctx(|| "statvfs /proc/self/exe".into())?;
    if vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
        return Ok((
            Protection::ReadOnlyMount,
            inherited.or_else(own_path).or(argv0),
        ));
    }
    reexec(&view_of(&exe)?, args, own_path())
}

/// A read-only view of this process's binary, to execute: a detached
/// read-only bind mount of it, or failing that a sealed memfd copy. A
/// program started from it finds itself protected in [`protect`] and does
/// not execute itself again. The view lives while an fd to it is open or a
/// process runs it.
pub fn view() -> Result<OwnedFd> {
    view_of(&open_exe()?)
}

fn open_exe() -> Result<OwnedFd> {
    nix::fcntl::open(
        "/proc/self/exe",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| "open /proc/self/exe".into())
}

fn view_of(exe: &OwnedFd) -> Result<OwnedFd> {
    match readonly_bind(c"/proc/self/exe") {
        Ok(fd) => Ok(fd),
        Err(_) => sealed_copy(exe),
    }
}

/// Carries the binary's path across the re-exec; removed from the
/// environment at once on the other side.
const ORIGIN_ENV: &str = "_KEEL_ORIGIN";

/// This binary's path as /proc/self/exe says it, unless it is a detached
/// view (`/`) or a memfd.
fn own_path() -> Option<PathBuf> {
    std::fs::read_link("/proc/self/exe")
        .ok()
        .filter(|p| p.is_absolute() && p.as_os_str() != "/" && p.exists())
}

/// A detached, read-only bind mount of a binary (an O_PATH fd to it).
/// Through it, /proc/<pid>/exe gives only EROFS to an open for writing.
fn readonly_bind(binary: &CStr) -> nix::Result<OwnedFd> {
    let tree = crate::sys::open_tree_clone(binary, false)?;
    crate::sys::mount_setattr(tree.as_fd(), false, libc::MOUNT_ATTR_RDONLY, 0)?;
    Ok(tree)
}

/// A close-on-exec fd to execute `binary` from, which nobody can write
/// through (the same views as for keel's own binary): a detached read-only
/// bind mount of it, or a sealed copy where that cannot be made.
pub fn readonly_view(binary: &Path) -> Result<OwnedFd> {
    let c = CString::new(binary.as_os_str().as_bytes()).map_err(|_| {
        Error::sys(
            format!("{}: the path contains a NUL byte", binary.display()),
            Errno::EINVAL,
        )
    })?;
    if let Ok(fd) = readonly_bind(&c) {
        return Ok(fd);
    }
    let file = nix::fcntl::open(
        c.as_c_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("open {}", binary.display()))?;
    sealed_copy(&file)
}

/// A sealed, executable memfd with the contents of `exe`.
fn sealed_copy(exe: &OwnedFd) -> Result<OwnedFd> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let name = c"keel";
    let flags = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
    // Kernels with vm.memfd_noexec (6.3+) want MFD_EXEC said; older ones
    // refuse the flag, and their memfds are executable anyway.
    let mfd = match memfd_create(name, flags | MFdFlags::from_bits_retain(libc::MFD_EXEC)) {
        Err(Errno::EINVAL) => memfd_create(name, flags),
        r => r,
    }
    .ctx(|| "memfd_create for a sealed copy of the keel binary".into())?;
    let size = nix::sys::stat::fstat(exe)
        .ctx(|| "stat /proc/self/exe".into())?
        .st_size;
    let mut left = usize::try_from(size).unwrap_or(0);
    while left > 0 {
        // SAFETY: two valid fds; a NULL offset uses and moves exe's offset.
        let n =
            unsafe { libc::sendfile(mfd.as_raw_fd(), exe.as_raw_fd(), std::ptr::null_mut(), left) };
        match Errno::result(n) {
            Ok(0) => break,
            Ok(n) => left -= n as usize,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::sys("copy the keel binary into a memfd", e)),
        }
    }
    if left != 0 {
        return Err(Error::sys(
            "copy the keel binary into a memfd: short copy",
            Errno::EIO,
        ));
    }
    nix::fcntl::fcntl(&mfd, FcntlArg::F_ADD_SEALS(SEALS)).ctx(|| "seal the memfd".into())?;
    Ok(mfd)
}

fn reexec(
    binary: &OwnedFd,
    args: Vec<OsString>,
    origin: Option<PathBuf>,
) -> Result<(Protection, Option<PathBuf>)> {
    let cstr = |v: Vec<u8>| CString::new(v).map_err(|_| Errno::EINVAL);
    let argv = args
        .into_iter()
        .map(|a| cstr(a.into_vec()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .ctx(|| "re-exec: an argument contains a NUL byte".into())?;
    let origin = origin.map(|p| (OsString::from(ORIGIN_ENV), p.into_os_string()));
    let env = std::env::vars_os()
        .chain(origin)
        .map(|(k, v)| {
            let mut e = k.into_vec();
            e.push(b'=');
            e.extend(v.into_vec());
            cstr(e)
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .ctx(|| "re-exec: an environment variable contains a NUL byte".into())?;
    let Err(e) = nix::unistd::fexecve(binary.as_fd(), &argv, &env);
    Err(Error::sys(
        "re-exec from a read-only view of the keel binary",
        e,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn own_exe() -> OwnedFd {
        nix::fcntl::open(
            "/proc/self/exe",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .expect("open /proc/self/exe")
    }

    fn contents(fd: &OwnedFd) -> Vec<u8> {
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let mut v = Vec::new();
        std::fs::File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut v))
            .unwrap_or_else(|e| panic!("read {path}: {e}"));
        v
    }

    #[test]
    fn sealed_copy_is_identical_and_unwritable() {
        let exe = own_exe();
        let copy = sealed_copy(&exe).expect("sealed copy");
        assert!(contents(&copy) == contents(&own_exe()), "copy differs");
        let seals = nix::fcntl::fcntl(&copy, FcntlArg::F_GET_SEALS).expect("seals");
        assert!(SealFlag::from_bits_truncate(seals).contains(SEALS));
        let path = format!("/proc/self/fd/{}", copy.as_raw_fd());
        let w = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"));
        assert!(w.is_err(), "wrote into the sealed copy");
    }

    #[test]
    fn view_is_an_unwritable_copy_of_the_binary() {
        // Root: a read-only bind mount; otherwise a sealed copy.
        let view = view().expect("view of the binary");
        assert!(contents(&view) == contents(&own_exe()), "view differs");
        let path = format!("/proc/self/fd/{}", view.as_raw_fd());
        let w = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"));
        assert!(w.is_err(), "wrote into the view");
    }

    #[test]
    fn readonly_bind_refuses_writes() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED readonly_bind_refuses_writes: needs root");
            return;
        }
        let view = readonly_bind(c"/proc/self/exe").expect("read-only bind of /proc/self/exe");
        let path = format!("/proc/self/fd/{}", view.as_raw_fd());
        let vfs = nix::sys::statvfs::statvfs(path.as_str()).expect("statvfs");
        assert!(vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
        let e = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect_err("opened the read-only view for writing");
        // The file is also busy (we run it); either way it is refused.
        assert!(
            matches!(e.raw_os_error(), Some(libc::EROFS) | Some(libc::ETXTBSY)),
            "{e}"
        );
    }
}
