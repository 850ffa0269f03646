//! Idmapped bind mounts (`idmap`/`ridmap`, a mount's `uidMappings` and
//! `gidMappings`): the ids of files under the source are seen through a user
//! namespace of their own.
//!
//! Setting MOUNT_ATTR_IDMAP needs CAP_SYS_ADMIN in the user namespace the
//! source filesystem was mounted in, which the init (inside the container's
//! user namespace) lacks. So the runtime makes the detached, idmapped mount
//! tree before forking the init, and the init only attaches it with
//! move_mount(2) in its own mount namespace. A source that is not there yet
//! (an earlier mount of the config makes it) is made when the init gets to
//! it, as runc 1.2+ does (the init's `procMountPlease`): the runtime clones
//! it in the init's mount namespace ([`clone_tree_in`]), then idmaps it.

use crate::error::{Result, SysContext};
use crate::sys::{self, Forked};
use nix::errno::Errno;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The id maps of one idmapped mount, as uid_map/gid_map file contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMaps {
    pub uid_map: String,
    pub gid_map: String,
    /// `ridmap`: every mount of an rbind tree, not only its top.
    pub recursive: bool,
}

/// An idmapped bind as the config asks for it, before the maps of the
/// container's user namespace are known (a joined one's are read from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idmap {
    /// The mount's own `uidMappings` and `gidMappings`.
    Own(IdMaps),
    /// `idmap`/`ridmap` alone: the container's user namespace's maps.
    Container {
        /// `ridmap`.
        recursive: bool,
    },
}

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// A detached clone of `source` (with its submounts when `rbind`) whose
/// ids are mapped through `maps`, ready for [`attach`].
pub fn prepare(source: &Path, rbind: bool, maps: &IdMaps) -> Result<OwnedFd> {
    let what = || format!("idmapped mount of {}", source.display());
    let userns = userns_with(maps).map_err(|e| e.in_field("idmap"))?;
    let tree = clone_tree(source, rbind).ctx(what)?;
    idmap_tree(tree, source, maps, userns)
}

/// [`prepare`] for a source that exists only in the mount namespace of
/// `pid` (the init, part-way through its mounts).
pub fn prepare_in(pid: i32, source: &Path, rbind: bool, maps: &IdMaps) -> Result<OwnedFd> {
    let userns = userns_with(maps).map_err(|e| e.in_field("idmap"))?;
    let tree = clone_tree_in(pid, source, rbind)
        .ctx(|| format!("idmapped mount of {}", source.display()))?;
    idmap_tree(tree, source, maps, userns)
}

fn idmap_tree(tree: OwnedFd, source: &Path, maps: &IdMaps, userns: OwnedFd) -> Result<OwnedFd> {
    let what = || format!("idmapped mount of {}", source.display());
    sys::mount_setattr_userns(
        tree.as_fd(),
        maps.recursive,
        MOUNT_ATTR_IDMAP,
        userns.as_fd(),
    )
    .ctx(|| format!("{}: mount_setattr(MOUNT_ATTR_IDMAP)", what()))?;
    Ok(tree)
}

/// A detached clone of the mount at `source` (with its submounts when
/// `rbind`), opened with the runtime's privileges, for [`attach`].
pub fn clone_tree(source: &Path, rbind: bool) -> nix::Result<OwnedFd> {
    let path = CString::new(source.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    sys::open_tree_clone(&path, rbind)
}

/// [`clone_tree`] resolved in the mount namespace of `pid`: a child joins
/// it (the runtime's own namespace, root and cwd stay as they are) and
/// passes the tree back.
fn clone_tree_in(pid: i32, source: &Path, rbind: bool) -> nix::Result<OwnedFd> {
    let path = CString::new(source.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let ns = nix::fcntl::open(
        format!("/proc/{pid}/ns/mnt").as_str(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let (ours, theirs) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )?;
    // SAFETY: the runtime is single-threaded while it creates (see
    // `process::spawn`); the child makes syscalls and _exits.
    let (forked, _) = unsafe { sys::fork_with(0, None) }?;
    let child = match forked {
        Forked::Child => {
            drop(ours);
            let r = nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNS)
                .and_then(|()| sys::open_tree_clone(&path, rbind));
            let code = match r {
                Ok(tree) => sys::send_fd(theirs.as_fd(), b"fd", tree.as_fd()).map_or(1, |()| 0),
                Err(e) => {
                    let _ = nix::sys::socket::send(
                        theirs.as_raw_fd(),
                        &(e as i32).to_ne_bytes(),
                        nix::sys::socket::MsgFlags::empty(),
                    );
                    1
                }
            };
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        Forked::Parent(pid) => pid,
    };
    drop(theirs);
    let mut buf = [0u8; 8];
    let r = sys::recv_one_fd(ours.as_fd(), &mut buf).map_err(|e| {
        // No fd: the packet carries the child's errno.
        match i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) {
            0 => e,
            errno => Errno::from_raw(errno),
        }
    });
    let _ = nix::sys::wait::waitpid(child, None);
    r
}

/// Puts the prepared tree on `target` (an O_PATH fd inside the rootfs).
pub fn attach(tree: BorrowedFd, target: BorrowedFd) -> nix::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
    const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;
    // SAFETY: plain syscall on two fds and empty, valid C strings.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    Errno::result(ret).map(drop)
}

/// A user namespace with `maps`, held by an fd: a child is cloned into a
/// new user namespace, its maps written, its namespace opened, and the child
/// let go.
fn userns_with(maps: &IdMaps) -> Result<OwnedFd> {
    let (hold_r, hold_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .ctx(|| "pipe for the idmap helper".into())?;
    // SAFETY: the child only blocks in read(2) and _exits: async-signal-safe.
    let (forked, _) = unsafe { sys::fork_with(libc::CLONE_NEWUSER, None) }
        .ctx(|| "clone a process in a new user namespace".into())?;
    let child = match forked {
        Forked::Child => {
            drop(hold_w);
            let mut b = [0u8; 1];
            // SAFETY: read into a local buffer, then leave.
            unsafe {
                libc::read(hold_r.as_raw_fd(), b.as_mut_ptr().cast(), 1);
                libc::_exit(0)
            }
        }
        Forked::Parent(pid) => pid,
    };
    drop(hold_r);
    let result = (|| {
        for (file, map) in [("uid_map", &maps.uid_map), ("gid_map", &maps.gid_map)] {
            let path = format!("/proc/{child}/{file}");
            std::fs::write(&path, map).ctx(|| format!("write {path}"))?;
        }
        let path = format!("/proc/{child}/ns/user");
        let fd = nix::fcntl::open(
            path.as_str(),
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ctx(|| format!("open {path}"))?;
        Ok(fd)
    })();
    drop(hold_w);
    let _ = nix::sys::wait::waitpid(child, None);
    result
}
