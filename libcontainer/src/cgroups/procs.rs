//! Processes in a container's cgroups: placing a new process (an fd for
//! clone3's CLONE_INTO_CGROUP, the caller's visit to the v1 cgroups, or
//! writing its pid to `cgroup.procs`), listing the pids inside, and killing
//! them.

use super::fs::{collect_pids, read};
use super::path::CgroupPaths;
use crate::error::{Error, Result, SysContext};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// The calling thread, moved into a container's v1 cgroups by
/// [`CgroupPaths::enter_v1`]. [`leave`](Self::leave) moves it back to
/// where it was; so does dropping it (ignoring errors).
#[must_use]
pub struct V1Visit {
    /// The `tasks` files of the thread's own cgroups.
    home: Vec<PathBuf>,
}

impl V1Visit {
    pub fn leave(mut self) -> Result<()> {
        self.go_home()
    }

    fn go_home(&mut self) -> Result<()> {
        let mut result = Ok(());
        for tasks in self.home.drain(..) {
            if let Err(e) = std::fs::write(&tasks, "0") {
                result = result.and(Err(Error::io(format!("write {}", tasks.display()), e)));
            }
        }
        result
    }
}

impl Drop for V1Visit {
    fn drop(&mut self) {
        let _ = self.go_home();
    }
}

/// Writes `data` to a cgroup file that must exist: never created, so that
/// a cgroup directory that is not on a cgroup filesystem fails (ENOENT, as
/// runc) instead of taking a file and leaving the process outside.
fn write_existing(file: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)?
        .write_all(data)
}

impl CgroupPaths {
    /// An fd on the cgroup2 directory, for clone3(CLONE_INTO_CGROUP).
    /// None when the directory is not on cgroup2 (a surprise layout: a
    /// filesystem mounted over the hierarchy): clone3 would fail with
    /// EBADF, while [`join`](Self::join) fails naming the file, as runc.
    pub fn open_unified(&self) -> Result<Option<OwnedFd>> {
        let Some(dir) = &self.unified else {
            return Ok(None);
        };
        let fd = nix::fcntl::open(
            dir,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ctx(|| format!("open cgroup {}", dir.display()))?;
        let magic = nix::sys::statfs::fstatfs(&fd)
            .ctx(|| format!("statfs cgroup {}", dir.display()))?
            .filesystem_type();
        Ok((magic == nix::sys::statfs::CGROUP2_SUPER_MAGIC).then_some(fd))
    }

    /// Moves the calling thread into the container's v1 cgroups, so that a
    /// child cloned now is born in them (what CLONE_INTO_CGROUP does for
    /// cgroup2). Moving another process means writing its pid to
    /// `cgroup.procs`, which takes cgroup_threadgroup_rwsem for writing and
    /// so waits for an RCU grace period: milliseconds, the largest single
    /// cost of `create` on a host with v1 controllers. Moving oneself by
    /// writing 0 to `tasks` skips that lock (kernel/cgroup/cgroup.c,
    /// cgroup_procs_write_start). The caller must be single-threaded.
    ///
    /// None, with nothing moved, when there is no v1 hierarchy, when a
    /// cgroup could not hold the caller and its child (a frozen freezer, a
    /// pids limit below 2 more) or when a move fails: the child is then
    /// placed with [`join`](Self::join) as before.
    pub fn enter_v1(&self) -> Option<V1Visit> {
        if self.v1.is_empty() {
            return None;
        }
        let home = Self::own().ok()?;
        let mut visit = V1Visit { home: Vec::new() };
        for (key, dir) in &self.v1 {
            let back = home.v1.get(key)?;
            let has = |c: &str| key.split(',').any(|k| k == c);
            if has("freezer") && read(dir, "freezer.state")? != "THAWED" {
                return None;
            }
            if has("pids") {
                let max = read(dir, "pids.max")?;
                if max != "max" {
                    let current: u64 = read(dir, "pids.current")?.parse().ok()?;
                    if max.parse::<u64>().ok()? < current + 2 {
                        return None;
                    }
                }
            }
            // Dropping `visit` on a failure moves back what was moved.
            std::fs::write(dir.join("tasks"), "0").ok()?;
            visit.home.push(back.join("tasks"));
        }
        Some(visit)
    }

    /// Moves `pid` into every v1 hierarchy unless it was born there (see
    /// [`enter_v1`](Self::enter_v1)), and into cgroup2 unless the clone
    /// already put it there.
    pub fn join(&self, pid: i32, in_unified: bool, in_v1: bool) -> Result<()> {
        let unified = self.unified.iter().filter(|_| !in_unified);
        let v1 = self.v1.values().filter(|_| !in_v1);
        for dir in unified.chain(v1) {
            let procs = dir.join("cgroup.procs");
            write_existing(&procs, pid.to_string().as_bytes())
                .ctx(|| format!("write {}", procs.display()))?;
        }
        Ok(())
    }

    /// Moves the calling process, which must be single-threaded, into
    /// every v1 hierarchy: by writing 0 to `tasks`, which moves the caller
    /// without cgroup_threadgroup_rwsem and so without waiting for an RCU
    /// grace period (see [`enter_v1`](Self::enter_v1)), or where that
    /// fails, by writing 0 to `cgroup.procs`, whose error is reported.
    /// `exec`'s process joins this way before it goes on, and the init
    /// first thing when it is born in keel's user namespace (one write per
    /// hierarchy instead of keel's two, in for the clone and back).
    ///
    /// The freezer last: joining a frozen freezer cgroup (`exec
    /// --ignore-paused`) freezes the caller on its way back from the
    /// write, and the hierarchies after it would wait for the thaw, the
    /// process missing from the paused container's pids, memory, ...
    /// cgroups meanwhile (runc's runtime writes them all).
    pub fn join_v1_self(&self) -> Result<()> {
        let freezer = |k: &String| k.split(',').any(|c| c == "freezer");
        let (last, first): (Vec<_>, Vec<_>) = self.v1.iter().partition(|(k, _)| freezer(k));
        for (_, dir) in first.into_iter().chain(last) {
            if write_existing(&dir.join("tasks"), b"0").is_err() {
                let procs = dir.join("cgroup.procs");
                write_existing(&procs, b"0").ctx(|| format!("write {}", procs.display()))?;
            }
        }
        Ok(())
    }

    /// The hierarchy that lists every process of the container.
    fn procs_dir(&self) -> Option<&PathBuf> {
        self.unified.as_ref().or_else(|| {
            ["pids", "freezer", "devices", "memory"]
                .iter()
                .find_map(|k| {
                    self.v1
                        .iter()
                        .find(|(key, _)| key.split(',').any(|c| c == *k))
                        .map(|(_, p)| p)
                })
                .or_else(|| self.v1.values().next())
        })
    }

    /// Pids of all processes in the container's cgroup (recursively).
    pub fn pids(&self) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        if let Some(dir) = self.procs_dir() {
            collect_pids(dir, &mut out)?;
        }
        Ok(out)
    }

    /// SIGKILLs whatever is in the cgroup until it is empty, for 5 s at
    /// most: what still runs there (a container sharing the host's pid
    /// namespace, a forked daemon, a create killed midway) dies with the
    /// container.
    pub fn kill_all(&self) -> Result<()> {
        use nix::sys::signal::{kill, Signal};
        use std::time::{Duration, Instant};
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = self.pids()?;
            if pids.is_empty() || Instant::now() > deadline {
                return Ok(());
            }
            for pid in pids {
                let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::fs::tests::FakeCgroup;

    #[test]
    fn pids_come_from_the_hierarchy_that_lists_every_process() {
        let cg = FakeCgroup::new(
            "procs",
            &[
                ("memory/cgroup.procs", "7\n"),
                ("pids/cgroup.procs", "1\n2\n"),
                ("pids/sub/cgroup.procs", "3\n"),
            ],
        );
        let mut paths = CgroupPaths::default();
        paths.v1.insert("memory".into(), cg.dir().join("memory"));
        paths.v1.insert("pids".into(), cg.dir().join("pids"));
        // pids before memory; sub-cgroups included.
        let mut pids = paths.pids().unwrap();
        pids.sort_unstable();
        assert_eq!(pids, [1, 2, 3]);
        // cgroup2 lists them all when there is one.
        cg.put("unified/cgroup.procs", "9\n");
        paths.unified = Some(cg.dir().join("unified"));
        assert_eq!(paths.pids().unwrap(), [9]);
    }

    #[test]
    fn join_writes_the_pid_where_it_was_not_born() {
        let cg = FakeCgroup::new(
            "join",
            &[("u/cgroup.procs", ""), ("memory/cgroup.procs", "")],
        );
        let mut paths = CgroupPaths {
            unified: Some(cg.dir().join("u")),
            ..Default::default()
        };
        paths.v1.insert("memory".into(), cg.dir().join("memory"));
        paths.join(42, true, false).unwrap();
        assert_eq!(cg.get("u/cgroup.procs"), "");
        assert_eq!(cg.get("memory/cgroup.procs"), "42");
    }
}
