//! The container's init, from fork to exec: namespaces, rootfs, the
//! process's identity and limits, then the wait on exec.fifo. Every failure
//! goes back to the parent over the sync channel; nothing here panics.

use super::plan::InitPlan;
use super::program::{self, Program};
use super::sync::{Channel, Msg};
use crate::cgroups::CgroupPaths;
use crate::error::{Error, Result, SysContext};
use crate::rootfs;
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Gid, Uid};
use oci_spec::runtime::LinuxNamespaceType;
use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Runs in the forked child; never returns. `join_v1`: the v1 cgroups to
/// move into first (see [`CgroupPaths::join_v1_self`]).
pub fn run(plan: &InitPlan, chan: Channel, fifo: &OwnedFd, join_v1: Option<&CgroupPaths>) -> ! {
    let placed = join_v1.map_or(Ok(()), CgroupPaths::join_v1_self);
    let (exe, host_pid) = match placed.and_then(|()| setup(plan, &chan, fifo)) {
        Ok(ready) => ready,
        Err(e) => {
            let _ = chan.send(&Msg::failed(e));
            // SAFETY: leave without running the parent's atexit handlers or destructors.
            unsafe { libc::_exit(1) }
        }
    };
    // The runtime returns at the EOF of this close (after Ready, the
    // filter is in): nobody reads the channel any more, so it goes before
    // the wait (as runc's init pipe), and failures from here on are
    // reported on stderr. close(2) is the only syscall of this step under
    // the filter.
    chan.close();
    start(plan, fifo, &exe, host_pid)
}

/// Everything up to Ready; returns the program to start and the init's
/// host pid (for the startContainer hooks).
fn setup(plan: &InitPlan, chan: &Channel, fifo: &OwnedFd) -> Result<(Program, i32)> {
    program::reset_signals();
    program::install_stdio(&plan.process)?;
    // If the runtime dies mid-setup, so do we: no half-made container.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .ctx(|| "prctl(PR_SET_PDEATHSIG)".into())?;
    chan.wait_continue()?;
    let ns = &plan.ns;
    let new_user = ns.has_new(LinuxNamespaceType::User);
    if ns.clone_flags().is_empty() {
        enter_namespaces_slowly(plan, chan)?;
    }
    // Before the uid change below: until then /proc/self is still ours to
    // write (the kernel hands a process's /proc files to root once its
    // credentials change).
    if ns.has_new(LinuxNamespaceType::Time) {
        enter_time_namespace(&plan.time_offsets)?;
    }
    if new_user || ns.joined_user().is_some() {
        // Become root of the user namespace; host root maps to nobody there
        // (files made under an unmapped uid fail with EOVERFLOW).
        nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .ctx(|| "setresgid(0) in the user namespace".into())?;
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .ctx(|| "setresuid(0) in the user namespace".into())?;
    }
    // As root of the user namespace, if any: it owns the new network one.
    if ns.has_new(LinuxNamespaceType::Network) {
        crate::netdev::loopback_up()?;
    }
    // After the cgroup join, so the namespace's root is the container's cgroup.
    if ns.has_new(LinuxNamespaceType::Cgroup) {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
            .ctx(|| "unshare cgroup namespace".into())?;
    }
    nix::unistd::setsid().ctx(|| "setsid".into())?;
    if let Some(h) = &plan.hostname {
        nix::unistd::sethostname(h).ctx(|| format!("hostname: sethostname {h:?}"))?;
    }
    if let Some(d) = &plan.domainname {
        let c = CString::new(d.as_bytes())
            .map_err(|_| Error::invalid("domainname", "contains a NUL byte"))?;
        // SAFETY: valid pointer and length.
        Errno::result(unsafe { libc::setdomainname(c.as_ptr(), d.len()) })
            .ctx(|| format!("domainname: setdomainname {d:?}"))?;
    }

    if let Some(name) = &plan.session_keyring {
        // The keyring is labelled as the process will be, as in runc.
        let label = plan.process.labels.selinux.as_deref();
        if let Some(l) = label {
            crate::security::lsm::set_keycreate(l)?;
        }
        join_session_keyring(name)?;
        if label.is_some() {
            crate::security::lsm::set_keycreate("")?;
        }
    }
    // Hooks are given the init's pid as the host sees it; /proc is still
    // the host's here.
    let hooks = &plan.hooks;
    let host_pid = if hooks.create_container.is_empty() && hooks.start_container.is_empty() {
        0
    } else {
        host_pid()?
    };
    let idmapped_source = |i| chan.ask_fd(&Msg::IdmappedSource(i));
    let prepared = rootfs::prepare(&plan.rootfs, idmapped_source, || {
        if !hooks.runtime.is_empty() {
            chan.ask(&Msg::RunHooks, None)?;
        }
        // From the rootfs, as runc runs them.
        let setting = crate::hooks::Setting {
            cwd: Some(&plan.rootfs.rootfs),
            env: None,
        };
        crate::hooks::run(
            "createContainer",
            &hooks.create_container,
            &hooks.state(crate::Status::Creating, host_pid),
            setting,
        )
    })?;
    // As runc: a missing cwd is made, inside the new root and before it can
    // turn read-only.
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&plan.process.cwd)
            .ctx(|| format!("process.cwd: mkdir {}", plan.process.cwd.display()))?;
    }
    for (path, value) in &plan.sysctl {
        crate::security::procfs::write(path, value).map_err(|e| e.in_field("linux.sysctl"))?;
    }
    if let Some(t) = &plan.process.terminal {
        crate::console::setup(&t.socket, t.size, true)?;
    }
    rootfs::finalize(&plan.rootfs, prepared)?;
    // The runtime exits once our channel closes, and we must outlive it:
    // drop the death signal first, or that exit can race it and kill us.
    // (Before the filter goes in. Should the runtime die from here on, the
    // sync channel fails instead.)
    nix::sys::prctl::set_pdeathsig(None).ctx(|| "prctl(PR_SET_PDEATHSIG, 0)".into())?;
    // The fifo stays open for `start`; nothing else of the runtime's does.
    let exe = program::prepare(
        &plan.process,
        plan.rootfs.in_userns,
        chan,
        Some(fifo.as_fd()),
    )?;
    // Ready before the filter, so that no message of ours runs under it;
    // the runtime waits for the channel to close (or for Failed).
    chan.send(&Msg::Ready).ctx(|| "sync: send ready".into())?;
    // The filter must allow what follows: closing the sync channel,
    // opening and writing exec.fifo, startContainer hooks, execve.
    program::seal(&plan.process, chan)?;
    Ok((exe, host_pid))
}

/// Waits for `start`, runs the startContainer hooks and execs the program.
fn start(plan: &InitPlan, fifo: &OwnedFd, exe: &Program, host_pid: i32) -> ! {
    let hooks = &plan.hooks;
    let started = wait_for_start(fifo, || {
        // A hook without env of its own gets the program's (runc's).
        let setting = crate::hooks::Setting {
            cwd: None,
            env: Some(&exe.env),
        };
        crate::hooks::run(
            "startContainer",
            &hooks.start_container,
            &hooks.state(crate::Status::Created, host_pid),
            setting,
        )
    });
    match started {
        // Held open until execve closes it: `start` reads EOF once the
        // program runs, and only then runs the poststart hooks.
        Ok(writer) => match &plan.process.executor {
            Some(executor) => {
                // What execve would close (close-on-exec): exec.fifo, both.
                drop(writer);
                // SAFETY: our copy of the runtime's fd, never used again.
                unsafe { libc::close(fifo.as_raw_fd()) };
                program::run_executor(executor.as_ref(), exe, &plan.process)
            }
            None => program::execute(exe, &plan.process),
        },
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "keel: container init: {e}");
            // SAFETY: as in `run`.
            unsafe { libc::_exit(1) }
        }
    }
}

/// With namespaces to join: join them, then create the new ones from inside
/// (so they are owned by the right user namespace), forking once more when
/// the init must be pid 1 of a pid namespace it could not be cloned into.
fn enter_namespaces_slowly(plan: &InitPlan, chan: &Channel) -> Result<()> {
    let ns = &plan.ns;
    ns.join_all()?;
    if ns.has_new(LinuxNamespaceType::User) {
        nix::sched::unshare(CloneFlags::CLONE_NEWUSER).ctx(|| "unshare user namespace".into())?;
        chan.ask(&Msg::MapIds, None)?;
    }
    let rest = ns.new
        - (CloneFlags::CLONE_NEWUSER
            | CloneFlags::CLONE_NEWCGROUP
            | CloneFlags::from_bits_retain(libc::CLONE_NEWTIME));
    nix::sched::unshare(rest).ctx(|| format!("unshare {rest:?}"))?;
    let pid_ns = ns.has_new(LinuxNamespaceType::Pid)
        || ns.joined.iter().any(|j| j.typ == LinuxNamespaceType::Pid);
    if pid_ns {
        // SAFETY: single-threaded (see spawn).
        match unsafe { nix::unistd::fork() }.ctx(|| "fork into the pid namespace".into())? {
            ForkResult::Parent { child } => {
                let _ = chan.send(&Msg::InitPid(child.as_raw()));
                // SAFETY: as in `run`.
                unsafe { libc::_exit(0) }
            }
            // No death signal here: our parent exits right away on purpose.
            // Should the runtime die, the sync channel reads EOF instead.
            ForkResult::Child => {}
        }
    }
    Ok(())
}

/// A fresh session keyring named after the container, so keys are not
/// shared with the host or other containers. Kernels without keyrings (or
/// where a user namespace forbids them) are tolerated, as in runc.
fn join_session_keyring(name: &CString) -> Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_int = 1;
    const KEYCTL_SETPERM: libc::c_int = 5;
    // SAFETY: keyctl with a valid C string.
    let id = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    match Errno::result(id) {
        Ok(id) => {
            // Possessor: all; user: view, read, write, search, link (runc's).
            // SAFETY: plain keyctl on the key we just got.
            let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_SETPERM, id, 0x3f1f_0000u32) };
            Errno::result(r)
                .map(drop)
                .ctx(|| "keyctl(SETPERM) on the session keyring".into())
        }
        Err(Errno::ENOSYS) | Err(Errno::EACCES) => Ok(()),
        Err(e) => Err(Error::sys("keyctl(JOIN_SESSION_KEYRING)", e)),
    }
}

/// A time namespace applies to children only, and its offsets can be set
/// only before anyone enters it: unshare, write the offsets, then enter it
/// ourselves through time_for_children.
fn enter_time_namespace(offsets: &str) -> Result<()> {
    nix::sched::unshare(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
        .ctx(|| "unshare time namespace".into())?;
    if !offsets.is_empty() {
        std::fs::write("/proc/self/timens_offsets", offsets)
            .ctx(|| "linux.timeOffsets: write /proc/self/timens_offsets".into())?;
    }
    let fd = nix::fcntl::open(
        "/proc/self/ns/time_for_children",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| "open /proc/self/ns/time_for_children".into())?;
    nix::sched::setns(
        fd.as_fd(),
        CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    )
    .ctx(|| "setns time namespace".into())
}

/// This process's pid in the host's pid namespace (the first NSpid entry
/// of the host's /proc, before pivot_root).
fn host_pid() -> Result<i32> {
    let status =
        std::fs::read_to_string("/proc/self/status").ctx(|| "read /proc/self/status".into())?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| Error::sys("no NSpid in /proc/self/status", Errno::EINVAL))
}

/// Blocks until `start` opens exec.fifo for reading (reopened through
/// /proc/self/fd: the host path is gone after pivot_root), runs
/// `on_start` (the startContainer hooks), then lets `start` go on.
/// Returns the fifo's (close-on-exec) write end.
fn wait_for_start(fifo: &OwnedFd, on_start: impl FnOnce() -> Result<()>) -> Result<OwnedFd> {
    let path = format!("/proc/self/fd/{}", fifo.as_raw_fd());
    let fd = loop {
        match nix::fcntl::open(
            path.as_str(),
            nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            Err(Errno::EINTR) => continue,
            r => break r.ctx(|| "open exec.fifo".into())?,
        }
    };
    on_start()?;
    nix::unistd::write(&fd, b"0").ctx(|| "write exec.fifo".into())?;
    Ok(fd)
}
