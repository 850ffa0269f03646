//! What a test's keel runs could leave on the host, taken at two moments
//! and compared: mounts, the test's cgroups, the test process's fds, state
//! directories and processes. Where [`crate::find_leaks`] asks about one
//! container, a snapshot catches what no container id names (an fd the
//! harness inherited, a cgroup under a wrong name, a zombie).
//!
//! The fd part sees the whole test process: take snapshots only in a test
//! that no other test of its binary runs beside (hold a lock).

use crate::env::TestEnv;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// /proc/self/mountinfo of a fresh process (in the test's namespace).
    pub mounts: BTreeSet<String>,
    /// Directories under the test's cgroup parent, in every hierarchy.
    pub cgroups: BTreeSet<String>,
    /// The test process's fds and what they point at.
    pub fds: BTreeMap<String, String>,
    /// Entries of the test's state root.
    pub state_dirs: BTreeSet<String>,
    /// The test's processes: children of the test process (zombies too)
    /// and processes carrying the env's marker.
    pub processes: BTreeSet<String>,
    /// Every process on the host (other work runs too: shown, not compared).
    pub host_processes: usize,
}

impl Snapshot {
    pub fn take(env: &TestEnv) -> Snapshot {
        let mounts = std::process::Command::new("cat")
            .arg("/proc/self/mountinfo")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let mut cgroups = BTreeSet::new();
        for m in TestEnv::cgroup_mounts() {
            walk(&m.join(&env.cgroup_parent), &mut cgroups);
        }
        let mut fds = BTreeMap::new();
        for e in std::fs::read_dir("/proc/self/fd")
            .into_iter()
            .flatten()
            .flatten()
        {
            let target = std::fs::read_link(e.path())
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            fds.insert(e.file_name().to_string_lossy().into_owned(), target);
        }
        // The read_dir above had an fd of its own, gone by now.
        fds.retain(|fd, _| Path::new("/proc/self/fd").join(fd).exists());
        let state_dirs = std::fs::read_dir(&env.root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let mut processes: BTreeSet<String> = crate::leaks::marked_processes(env, None)
            .into_iter()
            .map(describe)
            .collect();
        let me = std::process::id().to_string();
        let mut host_processes = 0;
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            host_processes += 1;
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid ...: comm may hold spaces, so after ')'.
            let ppid = stat.rsplit_once(')').and_then(|(_, r)| r.split(' ').nth(2));
            if ppid == Some(me.as_str()) {
                processes.insert(describe(pid));
            }
        }
        Snapshot {
            mounts: mounts.lines().map(str::to_owned).collect(),
            cgroups,
            fds,
            state_dirs,
            processes,
            host_processes,
        }
    }

    /// What `later` has that `self` had not, and what it lost, described.
    pub fn diff(&self, later: &Snapshot) -> Vec<String> {
        fn sets(what: &str, a: &BTreeSet<String>, b: &BTreeSet<String>, out: &mut Vec<String>) {
            out.extend(b.difference(a).map(|x| format!("new {what}: {x}")));
            out.extend(a.difference(b).map(|x| format!("gone {what}: {x}")));
        }
        let mut out = Vec::new();
        sets("mount", &self.mounts, &later.mounts, &mut out);
        sets("cgroup", &self.cgroups, &later.cgroups, &mut out);
        sets("state dir", &self.state_dirs, &later.state_dirs, &mut out);
        sets("process", &self.processes, &later.processes, &mut out);
        let fds = |s: &Snapshot| -> BTreeSet<String> {
            s.fds.iter().map(|(k, v)| format!("{k} -> {v}")).collect()
        };
        sets("fd", &fds(self), &fds(later), &mut out);
        out
    }
}

fn walk(dir: &Path, out: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    out.insert(dir.to_string_lossy().into_owned());
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&e.path(), out);
        }
    }
}

fn describe(pid: i32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.split(' ').nth(1))
        .unwrap_or("?");
    format!(
        "{pid} [{state}] {}",
        String::from_utf8_lossy(&cmdline).replace('\0', " ")
    )
}
