//! `create`'s parent side: fork the init into its cgroup and namespaces,
//! then let the driver take it to Ready with the init's handlers (place it,
//! write id maps, run the runtime hooks, pass on a seccomp listener).

use super::driver::{self, End, Handler};
use super::init;
use super::plan::InitPlan;
use super::reap::HalfMade;
use super::sync::Channel;
use crate::cgroups::{Manager, V1Visit};
use crate::error::{Error, Result, SysContext};
use crate::runtime::Runtime;
use crate::sys::{self, Forked};
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use std::os::fd::{AsFd, OwnedFd};

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

/// The init's handlers: what the parent does for it between fork and Ready.
struct Create<'a> {
    plan: &'a InitPlan,
    cgroups: &'a Manager,
    /// clone3 placed the init in its cgroup v2 directory.
    placed: bool,
    /// The init was born in the container's v1 cgroups.
    in_v1: bool,
    /// `linux.netDevices` are in the init's network namespace.
    devices_moved: bool,
}

impl Create<'_> {
    /// The init's namespaces are all there once it is setting up its
    /// rootfs: the devices go in before the runtime hooks (which may
    /// configure them) and before the program can look for them.
    fn move_net_devices(&mut self, pid: Pid) -> Result<()> {
        if !self.devices_moved {
            let netns = format!("/proc/{pid}/ns/net");
            crate::netdev::move_all(&self.plan.net_devices, std::path::Path::new(&netns))?;
            self.devices_moved = true;
        }
        Ok(())
    }
}

impl Handler for Create<'_> {
    const END: End = End::Ready;

    fn place(&mut self, pid: Pid) -> Result<()> {
        crate::failpoint::failpoint("after-clone")?;
        self.cgroups
            .join_init(pid.as_raw(), self.placed, self.in_v1)?;
        // execCPUAffinity does not apply to the init (runtime-spec).
        super::tuning::reset_affinity(pid);
        crate::failpoint::failpoint("cgroup-join")?;
        if self
            .plan
            .ns
            .clone_flags()
            .contains(CloneFlags::CLONE_NEWUSER)
        {
            write_maps(pid, self.plan)?;
        }
        if let Some(adj) = self.plan.oom_score_adj {
            let path = format!("/proc/{pid}/oom_score_adj");
            std::fs::write(&path, adj.to_string())
                .ctx(|| format!("process.oomScoreAdj: write {path}"))?;
        }
        Ok(())
    }

    fn map_ids(&mut self, pid: Pid) -> Result<()> {
        write_maps(pid, self.plan)
    }

    fn idmapped_source(&mut self, pid: Pid, i: usize) -> Result<OwnedFd> {
        let m = self.plan.rootfs.mounts.get(i);
        let Some((m, maps)) = m.and_then(|m| Some((m, m.idmap_later.as_ref()?))) else {
            return Err(Error::InitDied(format!(
                "protocol error: no idmapped source for mount {i}"
            )));
        };
        let src = m.source.as_deref().unwrap_or(std::path::Path::new(""));
        let rbind = m.options.flags.contains(nix::mount::MsFlags::MS_REC);
        crate::rootfs::idmap::prepare_in(pid.as_raw(), src, rbind, maps).map_err(|e| {
            e.within(crate::rootfs::mount_failed(
                m.source.as_deref(),
                &m.destination,
            ))
        })
    }

    fn run_hooks(&mut self, pid: Pid) -> Result<()> {
        self.move_net_devices(pid)?;
        let state = self.plan.hooks.state(crate::Status::Creating, pid.as_raw());
        for (kind, hooks) in &self.plan.hooks.runtime {
            crate::hooks::run(kind, hooks, &state, Default::default())?;
        }
        Ok(())
    }

    fn ready(&mut self, pid: Pid) -> Result<()> {
        self.move_net_devices(pid)
    }

    fn seccomp_listener(&mut self, pid: Pid, listener: OwnedFd) -> Result<()> {
        let agent = self.plan.process.seccomp.as_ref().and_then(|f| f.agent());
        match agent {
            Some(agent) => agent.send(
                &listener,
                pid.as_raw(),
                &self.plan.hooks.state(crate::Status::Creating, pid.as_raw()),
            ),
            None => Ok(()),
        }
    }
}

/// Forks the init and drives it to Ready. Returns it guarded: the caller
/// releases it once the container is recorded.
///
/// `_runtime`: this process is single-threaded (the child runs ordinary
/// Rust code before exec) and its binary protected.
pub fn spawn(
    _runtime: &Runtime,
    plan: &InitPlan,
    cgroups: &Manager,
    fifo: &OwnedFd,
) -> Result<HalfMade> {
    let (ours, theirs) = Channel::pair().ctx(|| "socketpair for the sync channel".into())?;
    let cg = cgroups.open_unified()?;
    let flags = plan.ns.clone_flags();
    // Born in keel's user namespace, the init moves itself into its v1
    // cgroups first thing. Born in a new one, it could not write the
    // host's cgroup files: keel visits them for the clone and the init is
    // born there.
    let self_join = if flags.contains(CloneFlags::CLONE_NEWUSER) {
        None
    } else {
        cgroups.v1_for_self_join()
    };
    let visit = match self_join {
        Some(_) => None,
        None => cgroups.enter_v1(),
    };
    // keel itself may be in the container's v1 cgroups here.
    crate::failpoint::failpoint("cgroup-enter")?;
    // SAFETY: single-threaded (the Runtime token); the child only runs
    // init::run, which ends in exec or _exit.
    let forked = unsafe { sys::fork_with(flags.bits(), cg.as_ref().map(|f| f.as_fd())) }
        .ctx(|| format!("clone3 with flags {flags:?}"));
    // On an error `visit` is dropped: the parent goes back.
    let (child, placed) = match forked? {
        (Forked::Child, _) => {
            // Born in the v1 cgroups: the parent's way back is not the child's.
            std::mem::forget(visit);
            drop(ours);
            init::run(plan, theirs, fifo, self_join)
        }
        (Forked::Parent(pid), placed) => (pid, placed),
    };
    let mut child = HalfMade::new(child);
    let in_v1 = visit.is_some() || self_join.is_some();
    let back = visit.map_or(Ok(()), V1Visit::leave);
    drop(theirs);
    drop(cg);
    back?;
    let mut create = Create {
        plan,
        cgroups,
        placed,
        in_v1,
        devices_moved: false,
    };
    driver::drive(&ours, &mut child, &mut create)?;
    Ok(child)
}
