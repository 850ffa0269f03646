//! `exec`: a new process in a running container. The runtime enters the
//! container's pid and time namespaces for its children, clones the process
//! straight into the container's cgroup, and the child joins the other
//! namespaces with one setns on the init's pidfd (per-namespace fds on
//! kernels before 5.8) before the shared last steps.
//!
//! An unprivileged runtime (rootless) may enter a container's pid namespace
//! only from inside its user namespace, which it could not leave again: then
//! the child joins them all and forks once more, as runc's nsexec does.

use super::driver::{self, End, Handler};
use super::plan::ProcessPlan;
use super::program;
use super::reap::HalfMade;
use super::sync::{Channel, Msg};
use crate::cgroups::CgroupPaths;
use crate::error::{Error, Result, SysContext};
use crate::hooks::HookState;
use crate::sys::{self, Forked};
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Every namespace an exec may join, in the order they are joined: the user
/// namespace first, for the capabilities over the others.
const NAMESPACES: [(&str, CloneFlags); 8] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("mnt", CloneFlags::CLONE_NEWNS),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("net", CloneFlags::CLONE_NEWNET),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("time", CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)),
];

/// The namespaces of the init that differ from ours, as clone flags.
/// Compared by their links' text, `type:[inode]` (one nsfs for all): a
/// readlink only formats it, where a stat follows the link and makes an
/// inode and a dentry for the namespace each time.
fn namespaces_of(init: i32) -> Result<CloneFlags> {
    let mut flags = CloneFlags::empty();
    for (name, flag) in NAMESPACES {
        let theirs = std::fs::read_link(format!("/proc/{init}/ns/{name}"));
        let ours = std::fs::read_link(format!("/proc/self/ns/{name}"));
        match (theirs, ours) {
            (Ok(t), Ok(o)) if t != o => flags |= flag,
            (Ok(_), Ok(_)) => {}
            // A namespace type this kernel lacks: nothing to join.
            (Err(e), _) if e.kind() == std::io::ErrorKind::NotFound && name == "time" => {}
            (Err(e), _) | (_, Err(e)) => {
                return Err(Error::io(format!("/proc/{init}/ns/{name}"), e))
            }
        }
    }
    Ok(flags)
}

fn setns_all(pidfd: BorrowedFd, init: i32, flags: CloneFlags) -> Result<()> {
    if flags.is_empty() {
        return Ok(());
    }
    match nix::sched::setns(pidfd, flags) {
        Ok(()) => return Ok(()),
        // Before 5.8 setns takes only namespace fds.
        Err(Errno::EINVAL) => {}
        Err(e) => {
            return Err(Error::sys(
                format!("setns {flags:?} on the init's pidfd"),
                e,
            ))
        }
    }
    for (name, flag) in NAMESPACES.into_iter().filter(|(_, f)| flags.contains(*f)) {
        let path = format!("/proc/{init}/ns/{name}");
        let fd = nix::fcntl::open(
            path.as_str(),
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ctx(|| format!("open {path}"))?;
        nix::sched::setns(fd.as_fd(), flag).ctx(|| format!("setns {path}"))?;
    }
    Ok(())
}

/// Starts `plan` in the container whose init is `pidfd`/`init`; returns the
/// new process's host pid (a child of the caller, who reaps it) and a pidfd
/// of it (none on kernels before 5.3).
/// `state` is the container's, for a seccomp agent; `_runtime` proves
/// this process may fork.
pub fn exec(
    _runtime: &crate::Runtime,
    plan: &ProcessPlan,
    init: i32,
    pidfd: &OwnedFd,
    cgroups: &CgroupPaths,
    state: &HookState,
) -> Result<(Pid, Option<OwnedFd>)> {
    let join = namespaces_of(init)?;
    log::debug!("exec: setns {join:?} into the namespaces of init {init} (/proc/{init}/ns)");
    // pid and time namespaces take effect for children only: enter them
    // here, for the clone below, and leave again after it.
    let for_children =
        join & (CloneFlags::CLONE_NEWPID | CloneFlags::from_bits_retain(libc::CLONE_NEWTIME));
    let own_ns = if for_children.is_empty() {
        None
    } else {
        Some(own_namespaces()?)
    };
    let mut fork_again = false;
    if !for_children.is_empty() {
        let entered = nix::sched::setns(pidfd.as_fd(), for_children)
            .or_else(|_| setns_all(pidfd.as_fd(), init, for_children).map_err(|_| Errno::EPERM));
        match entered {
            Ok(()) => {}
            Err(Errno::EPERM) if join.contains(CloneFlags::CLONE_NEWUSER) => fork_again = true,
            Err(e) => {
                return Err(Error::sys(
                    format!("enter the container's {for_children:?} for the new process"),
                    e,
                ))
            }
        }
    }
    let join = if fork_again {
        join
    } else {
        join - for_children
    };
    let result = fork_into(plan, init, pidfd, cgroups, join, fork_again, state);
    if let (Some(own), false) = (own_ns, fork_again) {
        for (fd, flag) in own {
            let _ = nix::sched::setns(fd.as_fd(), flag);
        }
    }
    result
}

fn own_namespaces() -> Result<Vec<(OwnedFd, CloneFlags)>> {
    [
        ("pid_for_children", CloneFlags::CLONE_NEWPID),
        (
            "time_for_children",
            CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
        ),
    ]
    .into_iter()
    .filter_map(|(n, f)| {
        let path = format!("/proc/self/ns/{n}");
        match nix::fcntl::open(
            path.as_str(),
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            Ok(fd) => Some(Ok((fd, f))),
            // A namespace type this kernel lacks.
            Err(Errno::ENOENT) => None,
            Err(e) => Some(Err(Error::sys(format!("open {path}"), e))),
        }
    })
    .collect()
}

/// An exec'd process's handlers: what the parent does for it between fork
/// and its execve.
struct Exec<'a> {
    plan: &'a ProcessPlan,
    cgroups: &'a CgroupPaths,
    /// clone3 placed the process in its cgroup v2 directory.
    placed: bool,
    state: &'a HookState<'a>,
}

impl Handler for Exec<'_> {
    const END: End = End::Exec;

    fn place(&mut self, pid: Pid) -> Result<()> {
        crate::failpoint::failpoint("after-clone")?;
        // The process joins its v1 cgroups itself (CgroupPaths::join_v1_self).
        self.cgroups.join(pid.as_raw(), self.placed, true)?;
        // execCPUAffinity.final, when given, is set by the process itself
        // once told to go on.
        if self.plan.affinity.as_ref().is_none_or(|a| a.last.is_none()) {
            super::tuning::reset_affinity(pid);
        }
        crate::failpoint::failpoint("cgroup-join")
    }

    fn seccomp_listener(&mut self, pid: Pid, listener: OwnedFd) -> Result<()> {
        match self.plan.seccomp.as_ref().and_then(|f| f.agent()) {
            Some(agent) => agent.send(&listener, pid.as_raw(), self.state),
            None => Ok(()),
        }
    }
}

/// `fork_again`: the child enters pid/time namespaces itself and forks the
/// process that runs the program (reported with `InitPid`).
fn fork_into(
    plan: &ProcessPlan,
    init: i32,
    pidfd: &OwnedFd,
    cgroups: &CgroupPaths,
    join: CloneFlags,
    fork_again: bool,
    state: &HookState,
) -> Result<(Pid, Option<OwnedFd>)> {
    let (ours, theirs) = Channel::pair().ctx(|| "socketpair for the sync channel".into())?;
    let cg = cgroups.open_unified()?;
    // SAFETY: as for the init: single-threaded (the Runtime token `exec`
    // took), and the child ends in execve or _exit.
    let (forked, placed) = unsafe { sys::fork_with(0, cg.as_ref().map(|f| f.as_fd())) }
        .ctx(|| "clone3 for exec".into())?;
    let child = match forked {
        Forked::Child => {
            drop(ours);
            run_child(plan, init, pidfd, cgroups, join, fork_again, theirs)
        }
        Forked::Parent(pid) => pid,
    };
    let mut child = HalfMade::new(child);
    drop(theirs);
    let mut exec = Exec {
        plan,
        cgroups,
        placed,
        state,
    };
    driver::drive(&ours, &mut child, &mut exec)?;
    Ok(child.release())
}

fn run_child(
    plan: &ProcessPlan,
    init: i32,
    pidfd: &OwnedFd,
    cgroups: &CgroupPaths,
    join: CloneFlags,
    fork_again: bool,
    chan: Channel,
) -> ! {
    let err = match enter(plan, init, pidfd, cgroups, join, fork_again, &chan) {
        Ok(exe) => match &plan.executor {
            Some(executor) => {
                // execve would close it (close-on-exec): the runtime's EOF.
                chan.close();
                program::run_executor(executor.as_ref(), &exe, plan)
            }
            None => {
                let (context, err) = program::exec(&exe, plan);
                Error::sys(context, err)
            }
        },
        Err(e) => e,
    };
    let _ = chan.send(&Msg::failed(err));
    // SAFETY: leave without running the parent's destructors.
    unsafe { libc::_exit(127) }
}

/// Everything up to the seccomp filter; returns the program to start.
fn enter(
    plan: &ProcessPlan,
    init: i32,
    pidfd: &OwnedFd,
    cgroups: &CgroupPaths,
    join: CloneFlags,
    fork_again: bool,
    chan: &Channel,
) -> Result<program::Program> {
    program::reset_signals();
    program::install_stdio(plan)?;
    let affinity = plan.affinity.as_ref();
    // Before we join the container's v1 cgroups (on cgroup v2 we are born
    // there and this comes too late to matter).
    if let Some(set) = affinity.and_then(|a| a.initial.as_ref()) {
        super::tuning::set_affinity(set, "process.execCPUAffinity.initial")?;
    }
    chan.wait_continue()?;
    // Not the runtime's write of our pid to cgroup.procs, which waits for
    // an RCU grace period; after Continue, so that a failure here reaches
    // the runtime as this process's error.
    cgroups.join_v1_self()?;
    if let Some(set) = affinity.and_then(|a| a.last.as_ref()) {
        super::tuning::set_affinity(set, "process.execCPUAffinity.final")?;
    }
    setns_all(pidfd.as_fd(), init, join)?;
    if fork_again {
        // SAFETY: this child is single-threaded; both sides go on with
        // plain code and end in execve or _exit.
        match unsafe { nix::unistd::fork() }.ctx(|| "fork into the pid namespace".into())? {
            nix::unistd::ForkResult::Parent { child } => {
                let _ = chan.send(&Msg::InitPid(child.as_raw()));
                // SAFETY: leave without running the parent's destructors.
                unsafe { libc::_exit(0) }
            }
            nix::unistd::ForkResult::Child => {}
        }
    }
    // A new mount namespace leaves the cwd behind in the old one.
    nix::unistd::chdir("/").ctx(|| "chdir /".into())?;
    nix::unistd::setsid().ctx(|| "setsid".into())?;
    if let Some(t) = &plan.terminal {
        crate::console::setup(&t.socket, t.size, false)?;
    }
    let exe = program::prepare(plan, join.contains(CloneFlags::CLONE_NEWUSER), chan, None)?;
    program::seal(plan, chan)?;
    Ok(exe)
}
