//! Where a container's cgroups are: the cgroup hierarchies mounted here
//! (from mountinfo), runc's `cgroupsPath` semantics for the cgroupfs
//! driver, and which hierarchy a controller's files are written in
//! ([`CgroupPaths::target`]). Resolution is pure given mountinfo and
//! `/proc/self/cgroup` ([`CgroupPaths::under`]); only the targets look at
//! the cgroup2 tree (which controllers it offers) and enable controllers.

use super::fs::write_file;
use crate::error::{Error, Result, SysContext};
use crate::mountinfo::MountInfo;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// The cgroup directories of one container, one per hierarchy it is in.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CgroupPaths {
    /// The cgroup2 directory (pure v2, or the `unified` mount of a hybrid host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unified: Option<PathBuf>,
    /// v1 hierarchies keyed by their controllers as /proc/self/cgroup names
    /// them (`memory`, `cpu,cpuacct`, `name=systemd`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub v1: BTreeMap<String, PathBuf>,
}

/// One cgroup hierarchy mounted in this mount namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hierarchy {
    /// Controllers as in /proc/self/cgroup (sorted, comma-separated);
    /// empty for cgroup2.
    key: String,
    mountpoint: PathBuf,
    /// The cgroup path that the mount's root stands for (not "/" inside a
    /// cgroup namespace or for a bind of a sub-tree).
    root: PathBuf,
}

/// The cgroup hierarchies among `mounts` that can be reached by their
/// mount points ([`MountInfo::is_visible`]: not those beneath a tmpfs
/// mounted over a host's /sys/fs/cgroup); of two mounts of one hierarchy,
/// the first.
pub(crate) fn hierarchies(mounts: &[MountInfo]) -> Vec<Hierarchy> {
    let mut out: Vec<Hierarchy> = Vec::new();
    for m in mounts {
        let key = match m.fstype.as_str() {
            "cgroup2" => String::new(),
            "cgroup" => {
                let mut ctrls: Vec<&str> = m
                    .super_options
                    .split(',')
                    .filter(|o| {
                        !matches!(
                            *o,
                            "rw" | "ro"
                                | "xattr"
                                | "noprefix"
                                | "clone_children"
                                | "cpuset_v2_mode"
                        ) && !o.starts_with("release_agent=")
                    })
                    .collect();
                ctrls.sort_unstable();
                ctrls.join(",")
            }
            _ => continue,
        };
        if out.iter().any(|h| h.key == key) || !m.is_visible(mounts) {
            continue;
        }
        out.push(Hierarchy {
            key,
            mountpoint: m.mount_point.clone(),
            root: m.root.clone(),
        });
    }
    out
}

/// A process's cgroup per hierarchy key ("" for cgroup2), from the text of
/// `/proc/PID/cgroup`.
pub(crate) fn parse_proc_cgroup(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let mut ctrls: Vec<&str> = parts.next()?.split(',').collect();
            ctrls.sort_unstable();
            Some((ctrls.join(","), parts.next()?.to_string()))
        })
        .collect()
}

/// Where the resources of one controller are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

/// runc's CleanPath: `inner` cleaned lexically as if it hung from `/`, so
/// that `..` never climbs above a hierarchy's root (absolute) or the
/// caller's cgroup (relative); a relative path stays relative.
fn clean(inner: &Path) -> PathBuf {
    let mut out: Vec<&std::ffi::OsStr> = Vec::new();
    for c in inner.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let start = if inner.is_absolute() { "/" } else { "" };
    out.iter().fold(PathBuf::from(start), |p, n| p.join(n))
}

impl CgroupPaths {
    /// Where a container's cgroups go, with runc's cgroupfs semantics: an
    /// absolute `cgroupsPath` is taken from each hierarchy's root; a relative
    /// one (or the container id, when unset) from keel's own cgroup.
    pub fn resolve(cgroups_path: Option<&Path>, id: &str) -> Result<CgroupPaths> {
        let inner = match cgroups_path {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new(id),
        };
        Self::here(inner)
    }

    /// The cgroups this process is in.
    pub fn own() -> Result<CgroupPaths> {
        Self::here(Path::new(""))
    }

    /// [`under`](Self::under) this process's mounts and own cgroups.
    fn here(inner: &Path) -> Result<CgroupPaths> {
        let own = if inner.is_absolute() {
            BTreeMap::new()
        } else {
            let text = std::fs::read_to_string("/proc/self/cgroup")
                .ctx(|| "read /proc/self/cgroup".into())?;
            parse_proc_cgroup(&text)
        };
        Self::under(&hierarchies(&crate::mountinfo::read_self()?), &own, inner)
    }

    /// `inner` under each hierarchy's root when absolute, else under the
    /// cgroup `own` names for the hierarchy (hierarchies it names none for
    /// are left out).
    pub(crate) fn under(
        hierarchies: &[Hierarchy],
        own: &BTreeMap<String, String>,
        inner: &Path,
    ) -> Result<CgroupPaths> {
        let inner = &clean(inner);
        let mut paths = CgroupPaths::default();
        for h in hierarchies {
            let base = if inner.is_absolute() {
                Path::new("/")
            } else {
                match own.get(&h.key) {
                    Some(p) => Path::new(p),
                    None => continue,
                }
            };
            // The mount shows the hierarchy from `h.root` down.
            let rel = base.strip_prefix(&h.root).unwrap_or(Path::new(""));
            let dir = h
                .mountpoint
                .join(rel)
                .join(inner.strip_prefix("/").unwrap_or(inner));
            if h.key.is_empty() {
                paths.unified = Some(dir);
            } else {
                paths.v1.insert(h.key.clone(), dir);
            }
        }
        if paths.unified.is_none() && paths.v1.is_empty() {
            return Err(Error::invalid(
                "linux.cgroupsPath",
                "no cgroup hierarchy is mounted",
            ));
        }
        Ok(paths)
    }

    /// Every directory: the cgroup2 one, then the v1 ones.
    pub(crate) fn all(&self) -> impl Iterator<Item = &PathBuf> {
        self.unified.iter().chain(self.v1.values())
    }

    /// The directory of the v1 hierarchy that has controller `ctrl`.
    pub(crate) fn v1_dir(&self, ctrl: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|(k, _)| k.split(',').any(|c| c == ctrl))
            .map(|(_, d)| d.as_path())
    }

    /// True on a pure cgroup v2 host (no v1 controller hierarchy mounted;
    /// a `name=systemd` hierarchy has no controllers).
    pub fn is_pure_v2(&self) -> bool {
        self.unified.is_some() && self.v1.keys().all(|k| k.starts_with("name="))
    }

    /// The root of the cgroup2 mount above the container's directory: the
    /// highest ancestor that is still a cgroup2 directory.
    fn unified_root(&self) -> Option<PathBuf> {
        let dir = self.unified.as_ref()?;
        let mut root = dir.clone();
        let mut cur = dir.parent();
        while let Some(d) = cur {
            if !d.join("cgroup.controllers").exists() {
                break;
            }
            root = d.to_path_buf();
            cur = d.parent();
        }
        Some(root)
    }

    /// Whether the unified hierarchy offers controller `ctrl` (its mount
    /// root's cgroup.controllers lists it).
    pub(crate) fn unified_offers(&self, ctrl: &str) -> bool {
        self.unified_root()
            .and_then(|r| std::fs::read_to_string(r.join("cgroup.controllers")).ok())
            .is_some_and(|c| c.split_whitespace().any(|c| c == ctrl))
    }

    /// Makes controller `ctrl` available in the container's cgroup2
    /// directory: `+ctrl` in the subtree_control of every ancestor from the
    /// mount root down to the container's parent, as runc's fs2 driver does.
    pub(crate) fn enable_v2(&self, ctrl: &str) -> Result<()> {
        let (Some(dir), Some(root)) = (self.unified.as_ref(), self.unified_root()) else {
            return Ok(());
        };
        let own = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        if own.split_whitespace().any(|c| c == ctrl) {
            return Ok(());
        }
        let rel = dir.strip_prefix(&root).unwrap_or(Path::new(""));
        let mut cur = root.clone();
        let mut chain = vec![cur.clone()];
        for c in rel.components() {
            cur = cur.join(c);
            chain.push(cur.clone());
        }
        chain.pop(); // the container's own directory
        for d in chain {
            let on = std::fs::read_to_string(d.join("cgroup.subtree_control")).unwrap_or_default();
            if on.split_whitespace().any(|c| c == ctrl) {
                continue;
            }
            write_file(
                "linux.cgroupsPath",
                &d,
                "cgroup.subtree_control",
                &format!("+{ctrl}"),
            )?;
        }
        Ok(())
    }

    /// Enables every controller the cgroup2 root offers down to the
    /// container's parent (pure v2 only, as runc). Best effort, as runc's
    /// fs2: a controller that cannot be enabled (one a user's systemd was
    /// not delegated, rootless) is an error only where a limit needs it
    /// ([`CgroupPaths::target`]).
    pub(crate) fn enable_all_v2(&self) {
        let Some(root) = self.unified_root() else {
            return;
        };
        let offered = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        for c in offered.split_whitespace() {
            let _ = self.enable_v2(c);
        }
    }

    /// Where the files of v1 controller `v1ctrl` (cgroup v2 controller
    /// `v2ctrl`, None when v2 has no such controller) go: v1 when mounted,
    /// else the unified hierarchy when it offers the controller (enabled
    /// on the way). None when neither.
    pub(crate) fn target(&self, v1ctrl: &str, v2ctrl: Option<&str>) -> Result<Option<Target<'_>>> {
        if let Some(d) = self.v1_dir(v1ctrl) {
            return Ok(Some(Target::V1(d)));
        }
        match (&self.unified, v2ctrl) {
            (Some(d), Some(c)) if self.unified_offers(c) => {
                self.enable_v2(c)?;
                Ok(Some(Target::V2(d)))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::fs::tests::FakeCgroup;

    /// This machine's layout: v1 controllers, cgroup2 at `unified`.
    const HYBRID: &str = "\
22 1 8:1 / / rw - ext4 /dev/sda1 rw
25 22 0:22 / /sys/fs/cgroup ro shared:4 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw shared:5 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw shared:6 - cgroup cgroup rw,xattr,name=systemd
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw shared:7 - cgroup cgroup rw,cpuacct,cpu
29 25 0:26 / /sys/fs/cgroup/memory rw shared:8 - cgroup cgroup rw,memory
";
    const OWN: &str = "\
12:memory:/user.slice
11:cpu,cpuacct:/user.slice
1:name=systemd:/user.slice/session-1.scope
0::/user.slice/session-1.scope
";

    fn layout(mountinfo: &str) -> Vec<Hierarchy> {
        hierarchies(&crate::mountinfo::parse(mountinfo))
    }

    #[test]
    fn a_tmpfs_mounted_over_the_hierarchies_hides_them() {
        // A fresh tmpfs over /sys/fs/cgroup with a bind of memory only:
        // the host's mounts beneath stay listed but cannot be reached.
        let over = format!(
            "{HYBRID}\
40 25 0:40 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
41 40 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
"
        );
        let h = layout(&over);
        let keys: Vec<&str> = h.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(keys, ["memory"]);
        let p = CgroupPaths::under(&h, &BTreeMap::new(), Path::new("/a")).unwrap();
        assert_eq!(p.unified, None);
        assert_eq!(p.v1["memory"], PathBuf::from("/sys/fs/cgroup/memory/a"));
    }

    #[test]
    fn hierarchies_are_keyed_as_proc_cgroup_names_them() {
        let h = layout(HYBRID);
        let keys: Vec<&str> = h.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(keys, ["", "name=systemd", "cpu,cpuacct", "memory"]);
        assert_eq!(
            parse_proc_cgroup(OWN).keys().collect::<Vec<_>>(),
            ["", "cpu,cpuacct", "memory", "name=systemd"]
        );
    }

    #[test]
    fn absolute_path_is_taken_from_each_root() {
        let p = CgroupPaths::under(&layout(HYBRID), &BTreeMap::new(), Path::new("/a/b")).unwrap();
        assert_eq!(p.unified, Some(PathBuf::from("/sys/fs/cgroup/unified/a/b")));
        assert_eq!(p.v1["memory"], PathBuf::from("/sys/fs/cgroup/memory/a/b"));
        assert_eq!(
            p.v1_dir("cpuacct"),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct/a/b"))
        );
        assert_eq!(
            p.v1["name=systemd"],
            PathBuf::from("/sys/fs/cgroup/systemd/a/b")
        );
        assert!(!p.is_pure_v2());
    }

    #[test]
    fn relative_path_is_below_own_cgroup() {
        let own = parse_proc_cgroup(OWN);
        let p = CgroupPaths::under(&layout(HYBRID), &own, Path::new("c1")).unwrap();
        assert_eq!(
            p.unified,
            Some(PathBuf::from(
                "/sys/fs/cgroup/unified/user.slice/session-1.scope/c1"
            ))
        );
        assert_eq!(
            p.v1["memory"],
            PathBuf::from("/sys/fs/cgroup/memory/user.slice/c1")
        );
        // Own cgroups: the empty inner path.
        let me = CgroupPaths::under(&layout(HYBRID), &own, Path::new("")).unwrap();
        assert_eq!(
            me.v1["cpu,cpuacct"],
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/user.slice")
        );
    }

    #[test]
    fn mount_root_inside_a_cgroup_namespace() {
        // In a cgroup namespace (or a bind of a sub-tree) the mount shows
        // the hierarchy from its root down.
        let ns = "30 1 0:30 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let own = parse_proc_cgroup("0::/kubepods/pod1/ctr\n");
        let p = CgroupPaths::under(&layout(ns), &own, Path::new("sub")).unwrap();
        assert_eq!(p.unified, Some(PathBuf::from("/sys/fs/cgroup/ctr/sub")));
        assert!(p.is_pure_v2());
    }

    #[test]
    fn later_mount_hides_earlier_and_escapes_are_undone() {
        let twice = "\
30 1 0:30 / /a\\040b/unified rw - cgroup2 cgroup2 rw
31 1 0:31 / /a\\040b rw - cgroup2 cgroup2 rw
32 1 0:32 / /elsewhere rw - cgroup2 cgroup2 rw
";
        let p = CgroupPaths::under(&layout(twice), &BTreeMap::new(), Path::new("/x")).unwrap();
        assert_eq!(p.unified, Some(PathBuf::from("/a b/x")));
    }

    #[test]
    fn dot_dot_is_cleaned_within_the_root_as_runc() {
        for (given, cleaned) in [
            ("/a/../b", "/b"),
            ("/../../a/./b/..", "/a"),
            ("/..", "/"),
            ("../x/../../y", "y"),
            ("a/b/../c", "a/c"),
            ("..", ""),
        ] {
            assert_eq!(clean(Path::new(given)), PathBuf::from(cleaned), "{given}");
        }
        let p =
            CgroupPaths::under(&layout(HYBRID), &BTreeMap::new(), Path::new("/../a/../b")).unwrap();
        let p2 = CgroupPaths::under(&layout(HYBRID), &BTreeMap::new(), Path::new("/b")).unwrap();
        assert_eq!(p, p2);
    }

    #[test]
    fn no_hierarchy_is_refused() {
        let e = CgroupPaths::under(
            &layout("22 1 8:1 / / rw - ext4 x rw\n"),
            &BTreeMap::new(),
            Path::new("/a"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no cgroup hierarchy is mounted"), "{e}");
    }

    #[test]
    fn v1_wins_then_v2_when_offered_and_enabled() {
        let root = FakeCgroup::new(
            "target",
            &[
                ("cgroup.controllers", "pids hugetlb"),
                ("cgroup.subtree_control", ""),
                ("a/cgroup.controllers", ""),
                ("a/cgroup.subtree_control", ""),
                ("a/c1/cgroup.controllers", ""),
            ],
        );
        let dir = root.dir().join("a/c1");
        let mut p = CgroupPaths {
            unified: Some(dir.clone()),
            v1: BTreeMap::new(),
        };
        p.v1.insert("memory".into(), PathBuf::from("/v1/memory/c1"));
        assert_eq!(
            p.target("memory", Some("memory")).unwrap(),
            Some(Target::V1(Path::new("/v1/memory/c1")))
        );
        assert_eq!(p.target("cpu", Some("cpu")).unwrap(), None);
        assert_eq!(p.target("net_cls", None).unwrap(), None);
        assert_eq!(
            p.target("hugetlb", Some("hugetlb")).unwrap(),
            Some(Target::V2(&dir))
        );
        // Enabled from the root down to the container's parent.
        assert_eq!(root.get("cgroup.subtree_control"), "+hugetlb");
        assert_eq!(root.get("a/cgroup.subtree_control"), "+hugetlb");
    }
}
