//! Removing a cgroup tree a test made (its containers' parent), in every
//! hierarchy, when the test is done with it.
//!
//! What an engine started there may still be exiting when the fixture
//! tears down: podman's `conmon` (in `<parent>/conmon` of every v1
//! hierarchy under cgroupfs) outlives `podman rm` for a moment, running
//! the container's exit command; a shim killed a moment ago still has its
//! container's processes. A single pass of rmdir then fails with EBUSY and
//! leaves the tree behind for good, so the removal waits for the tree to
//! empty, for a grace period, then SIGKILLs what is still in it (thawed
//! first: a frozen task dies only once thawed; again on every round, for
//! what forked meanwhile) until it is gone, for a bounded time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long what is left may take to exit by itself before it is killed.
pub const GRACE: Duration = Duration::from_secs(10);
/// How long killed processes may take to leave, and rmdir to succeed.
const AFTER_KILL: Duration = Duration::from_secs(10);

/// The cgroup hierarchies of the host (cgroup2 alone, or every v1 one and
/// the hybrid `unified`).
pub fn hierarchies() -> Vec<PathBuf> {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        return vec![PathBuf::from("/sys/fs/cgroup")];
    }
    std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.is_symlink())
        .collect()
}

/// Removes cgroup `name` (relative to each hierarchy's root) with
/// everything under it; see the module doc. Err lists what is left.
pub fn remove_named(name: &str, grace: Duration) -> Result<(), String> {
    let name = name.trim_start_matches('/');
    let dirs: Vec<PathBuf> = hierarchies().iter().map(|h| h.join(name)).collect();
    remove(&dirs, grace)
}

/// Removes each of `dirs` (the same cgroup in several hierarchies) with
/// its descendants; see the module doc. Err lists what is left, with the
/// processes still in it.
pub fn remove(dirs: &[PathBuf], grace: Duration) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let mut left = Vec::new();
        for d in dirs {
            rmdir_tree(d, &mut left);
        }
        if left.is_empty() {
            return Ok(());
        }
        let waited = start.elapsed();
        if waited > grace + AFTER_KILL {
            return Err(describe(&left));
        }
        if waited >= grace {
            for d in &left {
                thaw(d);
                for pid in procs(d) {
                    // SAFETY: kill(2) of a process in a cgroup this test
                    // made and named after itself: its own.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// rmdir of `dir`'s descendants, deepest first, then of `dir`; what
/// would not go is pushed on `left`.
fn rmdir_tree(dir: &Path, left: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            rmdir_tree(&e.path(), left);
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => left.push(dir.to_path_buf()),
        _ => {}
    }
}

fn procs(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Lets a frozen cgroup's tasks run (and so die): the v1 freezer's state,
/// or cgroup2's cgroup.freeze.
fn thaw(dir: &Path) {
    if dir.join("freezer.state").exists() {
        let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
    }
    if dir.join("cgroup.freeze").exists() {
        let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
    }
}

/// Each directory left, with the pids and commands still in it.
fn describe(left: &[PathBuf]) -> String {
    left.iter()
        .map(|d| {
            let ps: Vec<String> = procs(d)
                .into_iter()
                .map(|pid| {
                    let comm =
                        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                    format!("{pid} {}", comm.trim())
                })
                .collect();
            format!("{} (processes: {})", d.display(), ps.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The podman leftover: a tree whose child cgroup still holds a
    /// process when the fixture tears down, which exits a moment later;
    /// the removal waits for it and the whole tree goes. And a process
    /// that does not exit by itself is killed after the grace period.
    #[test]
    fn waits_for_the_tree_to_empty_then_kills() {
        // SAFETY: geteuid(2) cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED cgroup_tree: needs root to make cgroups");
            return;
        }
        let name = format!("keel-conformance-cgtree-{}", std::process::id());
        let dirs: Vec<PathBuf> = hierarchies().iter().map(|h| h.join(&name)).collect();
        // Gone however the test ends (a failed setup step panics).
        struct Cleanup(Vec<PathBuf>);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let _ = remove(&self.0, Duration::ZERO);
            }
        }
        let _cleanup = Cleanup(dirs.clone());
        let child = |what: &str, secs: &str| {
            let mut dirs_made = Vec::new();
            for d in &dirs {
                let sub = d.join(what);
                std::fs::create_dir_all(&sub).expect("mkdir cgroup");
                // A v1 cpuset takes tasks only with CPUs and nodes.
                for dir in [d, &sub] {
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        if let Some(parent) = dir.parent().filter(|_| dir.join(f).exists()) {
                            let v = std::fs::read_to_string(parent.join(f)).expect("read cpuset");
                            std::fs::write(dir.join(f), v.trim()).expect("write cpuset");
                        }
                    }
                }
                dirs_made.push(sub);
            }
            let mut c = std::process::Command::new("sleep")
                .arg(secs)
                .spawn()
                .expect("spawn sleep");
            for sub in &dirs_made {
                std::fs::write(sub.join("cgroup.procs"), c.id().to_string())
                    .expect("move sleep into the cgroup");
            }
            // Reaped by a thread, as an engine's process would be by its
            // parent, so that it leaves the cgroup once it exits.
            std::thread::spawn(move || c.wait())
        };
        let exiting = child("conmon", "0.5");
        let t = Instant::now();
        remove(&dirs, GRACE).expect("the tree goes once conmon exits");
        assert!(t.elapsed() < GRACE, "waited {:?}", t.elapsed());
        assert!(dirs.iter().all(|d| !d.exists()));
        let _ = exiting.join();
        let stuck = child("stuck", "1000");
        let t = Instant::now();
        remove(&dirs, Duration::from_millis(200)).expect("killed after the grace");
        assert!(t.elapsed() >= Duration::from_millis(200));
        assert!(dirs.iter().all(|d| !d.exists()));
        let _ = stuck.join();
    }
}
