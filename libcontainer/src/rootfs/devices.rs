//! /dev inside the container: device nodes (bind-mounted from the host in a
//! user namespace, where mknod is not allowed) and runc's symlinks.

use super::path::{self, Kind};
use crate::error::{Error, Result, SysContext};
use nix::sys::stat::{Mode, SFlag};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Absolute path inside the container.
    pub path: PathBuf,
    /// S_IFCHR, S_IFBLK or S_IFIFO.
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    /// Permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The devices every container gets (runc's defaults).
pub fn defaults() -> Vec<Device> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .map(|(name, major, minor)| Device {
        path: PathBuf::from("/dev").join(name),
        kind: SFlag::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

pub fn create(root: &OwnedFd, devices: &[Device], in_userns: bool) -> Result<()> {
    for (i, d) in devices.iter().enumerate() {
        create_one(root, d, in_userns)
            .map_err(|e| e.in_field(format!("linux.devices[{i}] {}", d.path.display())))?;
    }
    Ok(())
}

fn create_one(root: &OwnedFd, d: &Device, in_userns: bool) -> Result<()> {
    if in_userns {
        let target = path::make_in_root(root.as_fd(), &d.path, Kind::File)
            .ctx(|| "create bind target".into())?;
        return nix::mount::mount(
            Some(&d.path),
            &path::fd_path(&target),
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .ctx(|| "bind host device".into());
    }
    let (dir, name) =
        path::parent_in_root(root.as_fd(), &d.path).ctx(|| "parent directory".into())?;
    let dev = nix::sys::stat::makedev(d.major, d.minor);
    let mode = Mode::from_bits_truncate(d.mode & 0o7777);
    // Replace what the image has there (a regular file, a stale node): the
    // node must be exactly what the config says.
    let _ = nix::unistd::unlinkat(
        dir.as_fd(),
        name.as_c_str(),
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    );
    nix::sys::stat::mknodat(dir.as_fd(), name.as_c_str(), d.kind, mode, dev)
        .ctx(|| "mknod".into())?;
    nix::unistd::fchownat(
        dir.as_fd(),
        name.as_c_str(),
        Some(nix::unistd::Uid::from_raw(d.uid)),
        Some(nix::unistd::Gid::from_raw(d.gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .ctx(|| "chown".into())
}

/// /dev/fd, stdin, stdout, stderr, /dev/core and /dev/ptmx → pts/ptmx.
pub fn symlinks(root: &OwnedFd) -> Result<()> {
    let mut links = vec![
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "/dev/core"));
    }
    for (target, link) in links {
        let (dir, name) = path::parent_in_root(root.as_fd(), Path::new(link))
            .ctx(|| format!("parent of {link}"))?;
        match nix::unistd::symlinkat(target, dir.as_fd(), name.as_c_str()) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(Error::sys(format!("symlink {link} -> {target}"), e)),
        }
    }
    // /dev/ptmx must lead to this container's devpts instance.
    path::unlink_in_root(root.as_fd(), Path::new("/dev/ptmx")).ctx(|| "remove /dev/ptmx".into())?;
    let (dir, name) = path::parent_in_root(root.as_fd(), Path::new("/dev/ptmx"))
        .ctx(|| "parent of /dev/ptmx".into())?;
    nix::unistd::symlinkat("pts/ptmx", dir.as_fd(), name.as_c_str())
        .ctx(|| "symlink /dev/ptmx -> pts/ptmx".into())
}
