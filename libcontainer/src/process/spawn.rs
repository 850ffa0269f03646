//! Parent side of the dance: fork the init, place it, map its ids, and wait
//! until it reports Ready (or an error, which is returned with its context).

use super::init;
use super::plan::InitPlan;
use super::sync::{Channel, Msg};
use crate::cgroups::{Manager, V1Visit};
use crate::error::{Error, Result, SysContext};
use crate::sys::{self, Forked};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::{AsFd, OwnedFd};

/// Kills and reaps the init if setup does not complete, so a failed create
/// leaves no process behind.
struct Reaper {
    child: Pid,
    init: Pid,
    armed: bool,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if self.armed {
            let _ = nix::sys::signal::kill(self.init, Signal::SIGKILL);
            let _ = nix::sys::signal::kill(self.child, Signal::SIGKILL);
            let _ = waitpid(self.child, None);
            if self.init != self.child {
                // Reparented to us only if we are a subreaper; otherwise
                // whoever is reaps it.
                let _ = waitpid(self.init, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
            }
        }
    }
}

fn write_maps(pid: Pid, plan: &InitPlan) -> Result<()> {
    // gid_map before uid_map, as the kernel checks gid writes against the
    // writer's credentials in the parent namespace.
    write_map(pid, "gid_map", &plan.gid_map, "gidMappings")?;
    write_map(pid, "uid_map", &plan.uid_map, "uidMappings")?;
    crate::failpoint::failpoint("uid-map")
}

/// Writes one id map. A privileged writer writes any map; an unprivileged
/// one (rootless) only a map of its own id, and for gids only after
/// `setgroups` is denied; other maps go through the setuid helpers
/// newuidmap/newgidmap, which check them against /etc/subuid and
/// /etc/subgid, as in runc.
fn write_map(pid: Pid, file: &str, map: &str, field: &str) -> Result<()> {
    let path = format!("/proc/{pid}/{file}");
    let err = match std::fs::write(&path, map) {
        Ok(()) => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => e,
        Err(e) => return Err(Error::io(format!("linux.{field}: write {path}"), e)),
    };
    let own = if file == "gid_map" {
        nix::unistd::getegid().as_raw()
    } else {
        nix::unistd::geteuid().as_raw()
    };
    let lines: Vec<Vec<&str>> = map
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    if let [only] = lines.as_slice() {
        if only.len() == 3 && only[1] == own.to_string() && only[2] == "1" {
            if file == "gid_map" {
                let setgroups = format!("/proc/{pid}/setgroups");
                std::fs::write(&setgroups, "deny")
                    .ctx(|| format!("linux.{field}: write {setgroups}"))?;
            }
            return std::fs::write(&path, map).ctx(|| format!("linux.{field}: write {path}"));
        }
    }
    let helper = if file == "gid_map" {
        "newgidmap"
    } else {
        "newuidmap"
    };
    let out = std::process::Command::new(helper)
        .arg(pid.to_string())
        .args(lines.iter().flatten())
        .output();
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(Error::invalid(
            format!("linux.{field}"),
            format!(
                "{helper} {pid}: {}",
                String::from_utf8_lossy(&o.stderr).trim_end()
            ),
        )),
        Err(e) => Err(Error::invalid(
            format!("linux.{field}"),
            format!(
                "write {path}: {err}; and {helper} (package uidmap), needed to map ids \
                 other than one's own without privilege, cannot run: {e}"
            ),
        )),
    }
}

fn describe_exit(pid: Pid) -> String {
    match waitpid(pid, None) {
        Ok(WaitStatus::Exited(_, code)) => format!("exit status {code}"),
        Ok(WaitStatus::Signaled(_, sig, _)) => format!("killed by {sig}"),
        Ok(other) => format!("{other:?}"),
        Err(e) => format!("wait: {e}"),
    }
}

/// Forks the init and drives it to Ready. Returns its host pid.
///
/// The calling process must be single-threaded (the child runs ordinary
/// Rust code before exec); the shim forks from a single-threaded helper.
pub fn spawn(plan: &InitPlan, cgroups: &Manager, fifo: &OwnedFd) -> Result<Pid> {
    let (ours, theirs) = Channel::pair().ctx(|| "socketpair for the sync channel".into())?;
    let cg = cgroups.open_unified()?;
    let flags = plan.ns.clone_flags();
    let visit = cgroups.enter_v1();
    // keel itself is in the container's v1 cgroups here.
    crate::failpoint::failpoint("cgroup-enter")?;
    // SAFETY: the library documents that create runs single-threaded; the
    // child only runs init::run, which ends in exec or _exit.
    let forked = unsafe { sys::fork_with(flags.bits(), cg.as_ref().map(|f| f.as_fd())) }
        .ctx(|| format!("clone3 with flags {flags:?}"));
    // On an error `visit` is dropped: the parent goes back.
    let (child, placed) = match forked? {
        (Forked::Child, _) => {
            // Born in the v1 cgroups: the parent's way back is not the child's.
            std::mem::forget(visit);
            drop(ours);
            init::run(plan, theirs, fifo)
        }
        (Forked::Parent(pid), placed) => (pid, placed),
    };
    let in_v1 = visit.is_some();
    let back = visit.map_or(Ok(()), V1Visit::leave);
    drop(theirs);
    drop(cg);
    let mut reaper = Reaper {
        child,
        init: child,
        armed: true,
    };
    back?;
    crate::failpoint::failpoint("after-clone")?;
    cgroups.join_init(child.as_raw(), placed, in_v1)?;
    crate::failpoint::failpoint("cgroup-join")?;
    if flags.contains(CloneFlags::CLONE_NEWUSER) {
        write_maps(child, plan)?;
    }
    if let Some(adj) = plan.oom_score_adj {
        let path = format!("/proc/{child}/oom_score_adj");
        std::fs::write(&path, adj.to_string())
            .ctx(|| format!("process.oomScoreAdj: write {path}"))?;
    }
    ours.send(&Msg::Continue)
        .ctx(|| "sync: send continue".into())?;
    let mut devices_moved = false;
    loop {
        let msg = ours.recv().ctx(|| "sync: receive".into())?;
        // The init's namespaces are all there once it is setting up its
        // rootfs: the devices go in before the runtime hooks (which may
        // configure them) and before the program can look for them.
        if matches!(msg, Some(Msg::RunHooks | Msg::Ready)) && !devices_moved {
            let netns = format!("/proc/{}/ns/net", reaper.init);
            crate::netdev::move_all(&plan.net_devices, std::path::Path::new(&netns))?;
            devices_moved = true;
        }
        match msg {
            Some(Msg::MapIds) => {
                write_maps(reaper.init, plan)?;
                ours.send(&Msg::Continue)
                    .ctx(|| "sync: send continue".into())?;
            }
            Some(Msg::InitPid(pid)) => {
                reaper.init = Pid::from_raw(pid);
                // The intermediate exits once it has reported.
                let _ = waitpid(child, None);
                reaper.child = reaper.init;
            }
            Some(Msg::RunHooks) => {
                let state = plan
                    .hooks
                    .state(crate::Status::Creating, reaper.init.as_raw());
                for (kind, hooks) in &plan.hooks.runtime {
                    crate::hooks::run(kind, hooks, &state, Default::default())?;
                }
                ours.send(&Msg::Continue)
                    .ctx(|| "sync: send continue".into())?;
            }
            Some(Msg::SeccompListener) => {
                let listener = ours
                    .recv_fd()
                    .ctx(|| "sync: receive the seccomp listener".into())?;
                if let Some(agent) = plan.process.seccomp.as_ref().and_then(|f| f.agent()) {
                    let pid = reaper.init.as_raw();
                    agent.send(
                        &listener,
                        pid,
                        &plan.hooks.state(crate::Status::Creating, pid),
                    )?;
                }
                ours.send(&Msg::Continue)
                    .ctx(|| "sync: send continue".into())?;
            }
            Some(Msg::Ready) => break,
            Some(Msg::Failed { errno, context }) => {
                return Err(super::sync::init_error(errno, context))
            }
            Some(Msg::Continue) => {
                return Err(Error::InitDied("protocol error: unexpected message".into()))
            }
            None => return Err(Error::InitDied(describe_exit(reaper.child))),
        }
    }
    reaper.armed = false;
    Ok(reaper.init)
}
