//! Thin wrappers for the system calls nix does not offer: clone3, pidfd,
//! openat2, open_tree, mount_setattr, close_range; and the one way to
//! receive an fd over a socket. Each returns `nix::Result` so callers add
//! their own context.

use nix::errno::Errno;
use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `struct clone_args` from linux/sched.h (first versions; size 88 with cgroup).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// What `fork_with` returned on the calling side.
pub enum Forked {
    Parent(nix::unistd::Pid),
    Child,
}

/// Forks with `flags` (namespace flags), placing the child in the cgroup v2
/// directory `cgroup` atomically when given. Falls back to `clone(2)` on
/// kernels without clone3 or CLONE_INTO_CGROUP, and when the cgroup is at its
/// pids limit; `Ok((_, false))` then tells the caller the child was not
/// placed and must be moved by writing cgroup.procs.
///
/// # Safety
/// Same as fork(2): in the child only async-signal-safe work is sound unless
/// the calling process is single-threaded.
pub unsafe fn fork_with(
    flags: libc::c_int,
    cgroup: Option<BorrowedFd>,
) -> nix::Result<(Forked, bool)> {
    let mut args = CloneArgs {
        flags: flags as u64 & !0xff,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    let ret = libc::syscall(
        libc::SYS_clone3,
        &mut args as *mut CloneArgs,
        std::mem::size_of::<CloneArgs>(),
    );
    match Errno::result(ret) {
        Ok(0) => return Ok((Forked::Child, cgroup.is_some())),
        Ok(pid) => {
            return Ok((
                Forked::Parent(nix::unistd::Pid::from_raw(pid as i32)),
                cgroup.is_some(),
            ))
        }
        // Old kernel (no clone3, or no CLONE_INTO_CGROUP) or a cgroup that
        // cannot take the task directly: fall back to plain clone.
        Err(Errno::ENOSYS) | Err(Errno::E2BIG) | Err(Errno::EINVAL) | Err(Errno::EOPNOTSUPP) => {}
        // A fork into the cgroup counts against its pids.max (EAGAIN at the
        // limit) where moving a process in does not: an exec into a
        // container at its pids limit still gets in, as runc's retry
        // without CLONE_INTO_CGROUP lets it (process_linux.go,
        // startWithCgroupFD).
        Err(Errno::EAGAIN) if cgroup.is_some() => {}
        Err(e) => return Err(e),
    }
    let ret = libc::syscall(
        libc::SYS_clone,
        (flags as libc::c_ulong) | libc::SIGCHLD as libc::c_ulong,
        0usize,
        0usize,
        0usize,
        0usize,
    );
    match Errno::result(ret)? {
        0 => Ok((Forked::Child, false)),
        pid => Ok((
            Forked::Parent(nix::unistd::Pid::from_raw(pid as i32)),
            false,
        )),
    }
}

/// pidfd_open(2).
pub fn pidfd_open(pid: i32) -> nix::Result<OwnedFd> {
    // SAFETY: plain syscall; the returned fd is owned by us on success.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    Errno::result(ret).map(|fd| {
        // SAFETY: a new fd from the kernel, owned by nobody else.
        unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
    })
}

/// pidfd_send_signal(2): signals exactly the process the pidfd refers to, so a
/// recycled pid can never be hit.
pub fn pidfd_send_signal(pidfd: BorrowedFd, signal: i32) -> nix::Result<()> {
    // SAFETY: plain syscall with a valid fd and null siginfo.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(ret).map(drop)
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_IN_ROOT: u64 = 0x10;

/// openat2(2).
pub fn openat2(
    dirfd: BorrowedFd,
    path: &CStr,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> nix::Result<OwnedFd> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: mode as u64,
        resolve,
    };
    loop {
        // SAFETY: `how` and `path` outlive the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd.as_raw_fd(),
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        match Errno::result(ret) {
            // The kernel asks for a retry when a rename raced the lookup.
            Err(Errno::EAGAIN) => continue,
            r => {
                return r.map(|fd| {
                    // SAFETY: a new fd from the kernel, owned by nobody else.
                    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
                });
            }
        }
    }
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(2) on the mount at `fd` itself (AT_EMPTY_PATH), recursively
/// when `recursive`.
pub fn mount_setattr(fd: BorrowedFd, recursive: bool, set: u64, clr: u64) -> nix::Result<()> {
    setattr(fd, recursive, set, clr, 0)
}

/// mount_setattr(2) setting `set`, which names a user namespace
/// (MOUNT_ATTR_IDMAP), to `userns`.
pub fn mount_setattr_userns(
    fd: BorrowedFd,
    recursive: bool,
    set: u64,
    userns: BorrowedFd,
) -> nix::Result<()> {
    setattr(fd, recursive, set, 0, userns.as_raw_fd() as u64)
}

fn setattr(fd: BorrowedFd, recursive: bool, set: u64, clr: u64, userns_fd: u64) -> nix::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd,
    };
    let mut flags = libc::AT_EMPTY_PATH as u32;
    if recursive {
        flags |= libc::AT_RECURSIVE as u32;
    }
    // SAFETY: `attr` outlives the call; the empty path is a valid C string.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(ret).map(drop)
}

/// open_tree(2) with OPEN_TREE_CLONE: a detached bind mount of `path` (a
/// file or a directory; with its submounts when `recursive`), as an O_PATH
/// fd.
pub fn open_tree_clone(path: &CStr, recursive: bool) -> nix::Result<OwnedFd> {
    const OPEN_TREE_CLONE: u32 = 1;
    let rec = if recursive {
        libc::AT_RECURSIVE as u32
    } else {
        0
    };
    // SAFETY: `path` is a valid C string that outlives the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as u32 | rec,
        )
    };
    // SAFETY: the kernel just gave us this fd; nobody else owns it.
    Errno::result(ret).map(|fd| {
        // SAFETY: a new fd from the kernel, owned by nobody else.
        unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
    })
}

/// Sends `fd` over a unix socket (SCM_RIGHTS) in one message whose bytes
/// are `payload`: the console-socket and pidfd-socket protocols.
pub fn send_fd(socket: BorrowedFd, payload: &[u8], fd: BorrowedFd) -> nix::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [std::io::IoSlice::new(payload)];
    loop {
        match sendmsg::<()>(
            socket.as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(Errno::EINTR) => continue,
            r => return r.map(drop),
        }
    }
}

/// Receives one message carrying exactly one fd (SCM_RIGHTS) from a unix
/// socket; its payload goes to `buf`. Every fd the message brings is owned
/// here, so a peer that sends several gets EBADMSG and leaves no fd open in
/// this process; no fd: EBADMSG too.
pub fn recv_one_fd(socket: BorrowedFd, buf: &mut [u8]) -> nix::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut iov = [std::io::IoSliceMut::new(buf)];
    // Room for as many as a message can carry (SCM_MAX_FD): with less, the
    // kernel would install some, flag MSG_CTRUNC, and nix would not let us
    // see (and close) them.
    let mut space = nix::cmsg_space!([RawFd; 253]);
    let msg = loop {
        match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            r => break r?,
        }
    };
    let mut fds = Vec::new();
    for c in msg.cmsgs().map_err(|_| Errno::EBADMSG)? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel just installed these fds for us.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    match (fds.pop(), fds.is_empty()) {
        (Some(fd), true) => Ok(fd),
        _ => Err(Errno::EBADMSG),
    }
}

/// Closes every fd from `first` up but those in `keep`, so nothing of the
/// caller's or the runtime's stays open in a container's process
/// (CVE-2024-21626 class).
pub fn close_from(first: u32, keep: &[RawFd]) -> nix::Result<()> {
    for (low, high) in ranges_but(first, keep) {
        // SAFETY: plain syscall, no pointers; the fds closed are no longer
        // used by anything in this process (the caller's contract).
        let ret = unsafe { libc::syscall(libc::SYS_close_range, low, high, 0u32) };
        match Errno::result(ret) {
            Ok(_) => {}
            // Kernels before 5.9: walk /proc/self/fd instead.
            Err(Errno::ENOSYS) => {
                let dir = std::fs::read_dir("/proc/self/fd").map_err(|_| Errno::EBADF)?;
                let fds: Vec<RawFd> = dir
                    .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .filter(|&fd: &RawFd| (low as i64..=high as i64).contains(&(fd as i64)))
                    .collect();
                for fd in fds {
                    // SAFETY: closing an fd number in the range, as above; the
                    // directory's own fd is gone already (a stale one: EBADF).
                    unsafe { libc::close(fd) };
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The fd ranges from `first` up that leave out every fd in `keep`.
fn ranges_but(first: u32, keep: &[RawFd]) -> Vec<(u32, u32)> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|&fd| u32::try_from(fd).ok())
        .filter(|&fd| fd >= first)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut ranges = Vec::with_capacity(keep.len() + 1);
    let mut low = first;
    for fd in keep {
        if fd > low {
            ranges.push((low, fd - 1));
        }
        // An fd is an i32: no overflow.
        low = fd + 1;
    }
    ranges.push((low, u32::MAX));
    ranges
}

/// Whether this process may execute `path` with its effective ids and
/// capabilities, as execve judges it: faccessat2(AT_EACCESS). access(2)
/// uses the real ids and drops every capability of a non-root uid, so a
/// CAP_DAC_OVERRIDE process would be refused a program it may run. (The C
/// library's faccessat is no help: musl asks the kernel without
/// AT_EACCESS when real and effective ids agree.) Kernels before 5.8 lack
/// faccessat2: access(2) there.
pub fn may_execute(path: &CStr) -> bool {
    // SAFETY: a valid C string that outlives the call; no other pointers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_faccessat2,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    match Errno::result(ret) {
        Ok(_) => true,
        Err(Errno::ENOSYS) => nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok(),
        Err(_) => false,
    }
}

/// The start time of a process in clock ticks since boot (field 22 of
/// /proc/<pid>/stat), and whether it is a zombie. `None` when it is gone.
pub fn process_start_time(pid: i32) -> Option<(u64, bool)> {
    use std::io::Read;
    // Room for any stat line: one read (and the one that finds the end),
    // where read_to_string stats the file and grows from 32 bytes (six).
    let mut stat = Vec::with_capacity(1024);
    std::fs::File::open(format!("/proc/{pid}/stat"))
        .and_then(|mut f| f.read_to_end(&mut stat))
        .ok()?;
    // comm may hold spaces, parens or bytes that are not UTF-8: fields
    // start after the last ')'.
    let after = stat.iter().rposition(|&b| b == b')')? + 2;
    let rest = std::str::from_utf8(stat.get(after..)?).ok()?;
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    // `rest` starts at field 3 (state); start time is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state == "Z" || state == "X"))
}

/// The calling thread's capability sets as bit masks (capget/capset v3:
/// two 32-bit words per set), without the read-modify-write the `caps`
/// crate does: one capset writes all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

pub fn capget() -> nix::Result<CapSets> {
    let mut header = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and two data words, as capget(2) v3 expects.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    Errno::result(r)?;
    let join = |f: fn(&CapData) -> u32| u64::from(f(&data[0])) | u64::from(f(&data[1])) << 32;
    Ok(CapSets {
        effective: join(|d| d.effective),
        permitted: join(|d| d.permitted),
        inheritable: join(|d| d.inheritable),
    })
}

pub fn capset(sets: CapSets) -> nix::Result<()> {
    let mut header = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let word = |v: u64, i: u32| (v >> (32 * i)) as u32;
    let data = [0, 1].map(|i| CapData {
        effective: word(sets.effective, i),
        permitted: word(sets.permitted, i),
        inheritable: word(sets.inheritable, i),
    });
    // SAFETY: header and two data words, as capset(2) v3 expects.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    Errno::result(r).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_start_time_is_field_22_and_none_for_no_process() {
        let me = std::process::id() as i32;
        let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).expect("own stat");
        let after = &stat[stat.rfind(')').expect("comm") + 2..];
        let start: u64 = after
            .split(' ')
            .nth(19)
            .expect("field 22")
            .parse()
            .expect("number");
        assert_eq!(process_start_time(me), Some((start, false)));
        // Above the kernel's PID_MAX_LIMIT (2^22): no such process.
        assert_eq!(process_start_time(i32::MAX), None);
    }

    #[test]
    fn close_ranges_leave_out_what_is_kept() {
        let max = u32::MAX;
        assert_eq!(ranges_but(3, &[]), [(3, max)]);
        assert_eq!(ranges_but(3, &[1, 2]), [(3, max)]);
        assert_eq!(ranges_but(3, &[7, 4, 7]), [(3, 3), (5, 6), (8, max)]);
        assert_eq!(ranges_but(4, &[4, 5]), [(6, max)]);
        assert_eq!(ranges_but(3, &[-1]), [(3, max)]);
    }

    #[test]
    fn may_execute_asks_for_execute_permission() {
        use std::os::unix::fs::PermissionsExt;
        let file = std::env::temp_dir().join(format!("keel-noexec-{}", std::process::id()));
        std::fs::write(&file, "").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let path = std::ffi::CString::new(file.to_string_lossy().into_owned()).expect("path");
        // Not even root (or CAP_DAC_OVERRIDE) may run a file without an x bit.
        assert!(!may_execute(&path));
        let _ = std::fs::remove_file(&file);
        assert!(may_execute(c"/bin/sh"));
        assert!(!may_execute(c"/nonexistent/keel"));
    }
}
