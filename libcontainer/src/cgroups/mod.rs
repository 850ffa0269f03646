//! Placing the container in its cgroup: layout detection (v1, v2, hybrid),
//! runc's `cgroupsPath` semantics, creation, joining and removal (here);
//! resource limits ([`CgroupPaths::apply`], in `v1` and `v2`, with the
//! value conversions in [`convert`]), freezing (`freezer`) and statistics
//! ([`stats`]).
//!
//! On a hybrid host (v1 controllers plus a cgroup2 mount that offers a few
//! controllers), every resource goes to its v1 controller when that is
//! mounted, and to the unified hierarchy only when its cgroup.controllers
//! offers the controller and v1 does not have it.

pub mod convert;
mod devicefilter;
mod freezer;
mod oom;
pub mod stats;
mod sub;
pub mod systemd;
mod v1;
mod v2;
pub use sub::SubCgroups;

pub use oom::OomWatch;
pub use stats::Stats;

use crate::error::{Error, Result, SysContext};
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

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
    /// With the systemd driver, the scope unit that holds the cgroups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd: Option<systemd::SystemdUnit>,
}

struct Hierarchy {
    /// Controllers as in /proc/self/cgroup; empty for cgroup2.
    key: String,
    mountpoint: PathBuf,
    /// The cgroup path that the mount's root stands for (non-"/" inside a
    /// cgroup namespace or a bind of a sub-tree).
    root: String,
}

/// Reads the cgroup mounts of this process's mount namespace.
fn hierarchies() -> Result<Vec<Hierarchy>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .ctx(|| "read /proc/self/mountinfo".into())?;
    let mut out = Vec::new();
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let mut post = post.split(' ');
        let (Some(fstype), Some(_source), Some(superopts)) =
            (post.next(), post.next(), post.next())
        else {
            continue;
        };
        if pre.len() < 5 {
            continue;
        }
        let key = match fstype {
            "cgroup2" => String::new(),
            "cgroup" => {
                let mut ctrls: Vec<&str> = superopts
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
        let mountpoint = PathBuf::from(unescape(pre[4]));
        // A later mount over the same key hides the earlier one.
        out.retain(|h: &Hierarchy| h.key != key || !h.mountpoint.starts_with(&mountpoint));
        if out.iter().any(|h| h.key == key) {
            continue;
        }
        out.push(Hierarchy {
            key,
            mountpoint,
            root: unescape(pre[3]),
        });
    }
    Ok(out)
}

fn unescape(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Some(v) = s
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// This process's own cgroup per hierarchy key ("" for cgroup2).
fn own_cgroups() -> Result<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string("/proc/self/cgroup").ctx(|| "read /proc/self/cgroup".into())?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let mut ctrls: Vec<&str> = parts.next()?.split(',').collect();
            ctrls.sort_unstable();
            Some((ctrls.join(","), parts.next()?.to_string()))
        })
        .collect())
}

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

impl CgroupPaths {
    /// Where a container's cgroups go, with runc's cgroupfs semantics: an
    /// absolute `cgroupsPath` is taken from each hierarchy's root; a relative
    /// one (or the container id, when unset) from keel's own cgroup.
    pub fn resolve(cgroups_path: Option<&Path>, id: &str) -> Result<CgroupPaths> {
        let inner = match cgroups_path {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from(id),
        };
        Self::below_own_or_root(inner)
    }

    /// The cgroups this process is in.
    pub fn own() -> Result<CgroupPaths> {
        Self::below_own_or_root(PathBuf::new())
    }

    /// `inner` under each hierarchy's root when absolute, else under this
    /// process's own cgroup.
    fn below_own_or_root(inner: PathBuf) -> Result<CgroupPaths> {
        if inner
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(Error::invalid(
                "linux.cgroupsPath",
                format!("{}: must not contain \"..\"", inner.display()),
            ));
        }
        let own = if inner.is_absolute() {
            BTreeMap::new()
        } else {
            own_cgroups()?
        };
        let mut paths = CgroupPaths::default();
        for h in hierarchies()? {
            let base = if inner.is_absolute() {
                "/".to_string()
            } else {
                match own.get(&h.key) {
                    Some(p) => p.clone(),
                    None => continue,
                }
            };
            // The mount shows the hierarchy from `h.root` down.
            let rel = Path::new(&base)
                .strip_prefix(&h.root)
                .unwrap_or(Path::new(""));
            let dir = h
                .mountpoint
                .join(rel)
                .join(inner.strip_prefix("/").unwrap_or(&inner));
            if h.key.is_empty() {
                paths.unified = Some(dir);
            } else {
                paths.v1.insert(h.key, dir);
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

    /// Where a container's cgroups go with the systemd driver: the scope
    /// unit for a `slice:prefix:name` cgroupsPath, in every hierarchy.
    pub fn resolve_systemd(cgroups_path: Option<&Path>, id: &str) -> Result<CgroupPaths> {
        let (unit, path) = systemd::parse(cgroups_path, id)?;
        let mut paths = CgroupPaths::resolve(Some(Path::new(&path)), id)?;
        paths.systemd = Some(unit);
        Ok(paths)
    }

    fn all(&self) -> impl Iterator<Item = &PathBuf> {
        self.unified.iter().chain(self.v1.values())
    }

    /// Creates every directory. On failure what was created is removed
    /// again. Returns whether the container's own directories were made here
    /// (and so are ours to remove if creation fails later).
    pub fn create(&self) -> Result<bool> {
        if self.systemd.is_some() {
            // systemd makes them when the unit starts, with the init in it
            // (see `join`); stopping the unit is what removes them.
            return Ok(true);
        }
        self.make_dirs()
    }

    fn make_dirs(&self) -> Result<bool> {
        let mut made: Vec<PathBuf> = Vec::new();
        let result = self.all().try_for_each(|dir| mkdir_all(dir, &mut made));
        if result.is_err() {
            for d in made.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
        }
        result?;
        if let Some((_, cpuset)) = self
            .v1
            .iter()
            .find(|(k, _)| k.split(',').any(|c| c == "cpuset"))
        {
            inherit_cpuset(cpuset)?;
        }
        Ok(!made.is_empty())
    }

    /// Applies `linux.resources.devices` in order: on the v1 devices
    /// controller when there is one, else as an eBPF program on the cgroup2
    /// directory (see `devicefilter`). Both are followed by runc's
    /// always-allowed devices and the config's own device nodes. Returns
    /// false when there is neither (no cgroup to filter devices in).
    pub fn apply_device_rules(&self, rules: &[DeviceRule]) -> Result<bool> {
        let Some(dir) = self.v1_dir("devices") else {
            return match self.open_unified()? {
                Some(fd) => {
                    devicefilter::apply(std::os::fd::AsFd::as_fd(&fd), rules).map(|()| true)
                }
                None => Ok(false),
            };
        };
        // One open per file, one write(2) per rule (the kernel takes one
        // rule per write, whatever the offset).
        let (mut allow, mut deny) = (None, None);
        for rule in rules {
            let (open, name) = if rule.allow {
                (&mut allow, "devices.allow")
            } else {
                (&mut deny, "devices.deny")
            };
            let file = dir.join(name);
            let line = rule.to_string();
            let f = match open {
                Some(f) => f,
                None => open.insert(
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&file)
                        .ctx(|| format!("linux.resources.devices: open {}", file.display()))?,
                ),
            };
            f.write_all(line.as_bytes()).ctx(|| {
                format!(
                    "linux.resources.devices: write {line:?} to {}",
                    file.display()
                )
            })?;
        }
        Ok(true)
    }

    /// An fd on the cgroup2 directory, for clone3(CLONE_INTO_CGROUP).
    pub fn open_unified(&self) -> Result<Option<OwnedFd>> {
        let Some(dir) = &self.unified else {
            return Ok(None);
        };
        if self.systemd.is_some() && !dir.exists() {
            return Ok(None); // the unit is started with the init in it
        }
        nix::fcntl::open(
            dir,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map(Some)
        .ctx(|| format!("open cgroup {}", dir.display()))
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
    /// None, with nothing moved, when there is no v1 hierarchy, under the
    /// systemd driver, when a cgroup could not hold the caller and its
    /// child (a frozen freezer, a pids limit below 2 more) or when a move
    /// fails: the child is then placed with [`join`](Self::join) as before.
    pub fn enter_v1(&self) -> Option<V1Visit> {
        if self.systemd.is_some() || self.v1.is_empty() {
            return None;
        }
        let home = Self::own().ok()?;
        let mut visit = V1Visit { home: Vec::new() };
        for (key, dir) in &self.v1 {
            let back = home.v1.get(key)?;
            let has = |c: &str| key.split(',').any(|k| k == c);
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
            if has("freezer") && read("freezer.state")?.trim() != "THAWED" {
                return None;
            }
            if has("pids") {
                let max = read("pids.max")?;
                if max.trim() != "max" {
                    let current: u64 = read("pids.current")?.trim().parse().ok()?;
                    if max.trim().parse::<u64>().ok()? < current + 2 {
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
        if let Some(unit) = &self.systemd {
            if !in_unified && !self.all().any(|d| d.exists()) {
                // The init: systemd starts the scope with it inside; the
                // hierarchies systemd leaves alone are made here.
                systemd::start(unit, pid, self.is_pure_v2())?;
                self.make_dirs()?;
            }
        }
        let unified = self.unified.iter().filter(|_| !in_unified);
        let v1 = self.v1.values().filter(|_| !in_v1);
        for dir in unified.chain(v1) {
            let procs = dir.join("cgroup.procs");
            std::fs::write(&procs, pid.to_string()).ctx(|| format!("write {}", procs.display()))?;
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

    /// Removes every directory (sub-cgroups first). Waits briefly for exiting
    /// tasks to leave, as they do asynchronously after SIGKILL.
    pub fn remove(&self) -> Result<()> {
        // The directories go even when systemd cannot be asked to stop the
        // unit (as after a failed start).
        let stopped = self.systemd.as_ref().map_or(Ok(()), systemd::stop);
        for dir in self.all() {
            remove_tree(dir)?;
        }
        stopped
    }
}

/// One device cgroup rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    /// 'a', 'c' or 'b'.
    pub typ: char,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub access: String,
}

impl std::fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let num = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
        write!(
            f,
            "{} {}:{} {}",
            self.typ,
            num(self.major),
            num(self.minor),
            self.access
        )
    }
}

impl DeviceRule {
    fn allow(typ: char, major: Option<i64>, minor: Option<i64>, access: &str) -> DeviceRule {
        DeviceRule {
            allow: true,
            typ,
            major,
            minor,
            access: access.into(),
        }
    }

    /// The config's rules, then what runc always allows, then the config's
    /// device nodes (a container may always use the nodes it was given).
    pub fn from_spec(spec: &oci_spec::runtime::Spec) -> Vec<DeviceRule> {
        let linux = spec.linux().as_ref();
        let configured = linux
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.devices().as_ref());
        let Some(configured) = configured.filter(|c| !c.is_empty()) else {
            return Vec::new();
        };
        let type_char = |t: Option<oci_spec::runtime::LinuxDeviceType>| match t {
            Some(oci_spec::runtime::LinuxDeviceType::B) => 'b',
            Some(oci_spec::runtime::LinuxDeviceType::C)
            | Some(oci_spec::runtime::LinuxDeviceType::U) => 'c',
            _ => 'a',
        };
        let mut out: Vec<DeviceRule> = configured
            .iter()
            .map(|d| DeviceRule {
                allow: d.allow(),
                typ: type_char(d.typ()),
                major: d.major(),
                minor: d.minor(),
                access: d
                    .access()
                    .clone()
                    .filter(|a| !a.is_empty())
                    .unwrap_or_else(|| "rwm".into()),
            })
            .collect();
        out.extend([
            DeviceRule::allow('c', None, None, "m"),
            DeviceRule::allow('b', None, None, "m"),
            DeviceRule::allow('c', Some(1), Some(3), "rwm"),
            DeviceRule::allow('c', Some(1), Some(8), "rwm"),
            DeviceRule::allow('c', Some(1), Some(7), "rwm"),
            DeviceRule::allow('c', Some(5), Some(0), "rwm"),
            DeviceRule::allow('c', Some(1), Some(5), "rwm"),
            DeviceRule::allow('c', Some(1), Some(9), "rwm"),
            DeviceRule::allow('c', Some(5), Some(1), "rwm"),
            DeviceRule::allow('c', Some(136), None, "rwm"),
            DeviceRule::allow('c', Some(5), Some(2), "rwm"),
        ]);
        // (Fifos are not the devices controller's business; an `a` rule
        // made of one would allow every device.)
        for d in linux
            .and_then(|l| l.devices().as_ref())
            .into_iter()
            .flatten()
            .filter(|d| type_char(Some(d.typ())) != 'a')
        {
            out.push(DeviceRule::allow(
                type_char(Some(d.typ())),
                Some(d.major()),
                Some(d.minor()),
                "rwm",
            ));
        }
        out
    }
}

fn mkdir_all(dir: &Path, made: &mut Vec<PathBuf>) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        mkdir_all(parent, made)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {
            made.push(dir.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(format!("create cgroup {}", dir.display()), e)),
    }
}

/// A new v1 cpuset starts with no cpus and mems, so no task can join it;
/// copy them down from the nearest ancestor that has them, as runc does.
fn inherit_cpuset(dir: &Path) -> Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let mut chain: Vec<PathBuf> = Vec::new();
        let mut cur = Some(dir);
        while let Some(d) = cur {
            let value = std::fs::read_to_string(d.join(file)).unwrap_or_default();
            if !value.trim().is_empty() {
                for d in chain.iter().rev() {
                    std::fs::write(d.join(file), value.trim())
                        .ctx(|| format!("write {}", d.join(file).display()))?;
                }
                break;
            }
            if !d.join(file).exists() {
                break;
            }
            chain.push(d.to_path_buf());
            cur = d.parent();
        }
    }
    Ok(())
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    match std::fs::read_to_string(&procs) {
        Ok(text) => out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
        // ENODEV: the cgroup went between open and read (systemd removing an
        // emptied scope): as empty as one that is not there.
        Err(e) if gone(&e) => return Ok(()),
        Err(e) => return Err(Error::io(format!("read {}", procs.display()), e)),
    }
    // (systemd removes a scope's directory as soon as it is empty.)
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if gone(&e) => return Ok(()),
        Err(e) => return Err(Error::io(format!("read {}", dir.display()), e)),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_pids(&entry.path(), out)?;
        }
    }
    Ok(())
}

fn gone(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV)
}

fn remove_tree(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(()); // already gone
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    let mut delay = std::time::Duration::from_millis(1);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if gone(&e) => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && delay < std::time::Duration::from_secs(1) =>
            {
                std::thread::sleep(delay);
                delay *= 2;
            }
            Err(e) => return Err(Error::io(format!("remove cgroup {}", dir.display()), e)),
        }
    }
}

/// Where one group of resources is written.
pub(crate) enum Target<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

impl CgroupPaths {
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

    /// Where the resources of v1 controller `v1ctrl` (cgroup v2 controller
    /// `v2ctrl`) go: v1 when mounted, else the unified hierarchy when it
    /// offers the controller (enabled on the way). None when neither.
    pub(crate) fn target(&self, v1ctrl: &str, v2ctrl: &str) -> Result<Option<Target<'_>>> {
        if let Some(d) = self.v1_dir(v1ctrl) {
            return Ok(Some(Target::V1(d)));
        }
        match &self.unified {
            Some(d) if self.unified_offers(v2ctrl) => {
                self.enable_v2(v2ctrl)?;
                Ok(Some(Target::V2(d)))
            }
            _ => Ok(None),
        }
    }

    /// Applies `linux.resources` (all but the device rules, which
    /// [`CgroupPaths::apply_device_rules`] handles) to the container's
    /// cgroups. Fields that are absent (or 0 where runc treats 0 as unset)
    /// are left alone, so the same call serves `create` and `update`.
    /// Returns warnings: settings this kernel no longer has, and settings
    /// cgroup v2 has no file for.
    pub fn apply(&self, r: &LinuxResources) -> Result<Vec<String>> {
        let mut w = Vec::new();
        let missing = |field: &str, ctrl: &str| {
            Error::invalid(
                format!("linux.resources.{field}"),
                format!("cannot set: the {ctrl} cgroup controller is not available on this host"),
            )
        };
        self.set_systemd_properties(r)?;
        if self.is_pure_v2() {
            // As runc: every controller the hierarchy offers is enabled for
            // the container, so that its files exist to read and write.
            self.enable_all_v2()?;
        }
        if let Some(m) = r.memory().as_ref().filter(|m| v1::memory_is_set(m)) {
            match self.target("memory", "memory")? {
                Some(Target::V1(d)) => v1::memory(d, m, &mut w)?,
                Some(Target::V2(d)) => v2::memory(d, m, &mut w)?,
                None => return Err(missing("memory", "memory")),
            }
        }
        if let Some(c) = r.cpu().as_ref() {
            if v1::cpu_is_set(c) {
                match self.target("cpu", "cpu")? {
                    Some(Target::V1(d)) => v1::cpu(d, c)?,
                    Some(Target::V2(d)) => v2::cpu(d, c)?,
                    None => return Err(missing("cpu", "cpu")),
                }
            }
            if c.cpus().as_ref().is_some_and(|s| !s.is_empty())
                || c.mems().as_ref().is_some_and(|s| !s.is_empty())
            {
                match self.target("cpuset", "cpuset")? {
                    Some(Target::V1(d) | Target::V2(d)) => v1::cpuset(d, c)?,
                    None => return Err(missing("cpu.cpus", "cpuset")),
                }
            }
        }
        if let Some(p) = r.pids().as_ref().filter(|p| p.limit() != 0) {
            match self.target("pids", "pids")? {
                Some(Target::V1(d) | Target::V2(d)) => v1::pids(d, p)?,
                None => return Err(missing("pids", "pids")),
            }
        }
        if let Some(b) = r.block_io().as_ref().filter(|b| v1::blkio_is_set(b)) {
            match self.target("blkio", "io")? {
                Some(Target::V1(d)) => v1::blkio(d, b)?,
                Some(Target::V2(d)) => v2::io(d, b, &mut w)?,
                None => return Err(missing("blockIO", "blkio/io")),
            }
        }
        if let Some(h) = r.hugepage_limits().as_ref().filter(|h| !h.is_empty()) {
            match self.target("hugetlb", "hugetlb")? {
                Some(Target::V1(d)) => v1::hugetlb(d, h)?,
                Some(Target::V2(d)) => v2::hugetlb(d, h)?,
                None => return Err(missing("hugepageLimits", "hugetlb")),
            }
        }
        if let Some(n) = r.network().as_ref() {
            if let Some(id) = n.class_id() {
                let d = self
                    .v1_dir("net_cls")
                    .ok_or_else(|| missing("network.classID", "net_cls"))?;
                write_file(
                    "linux.resources.network.classID",
                    d,
                    "net_cls.classid",
                    &id.to_string(),
                )?;
            }
            if let Some(prios) = n.priorities().as_ref().filter(|p| !p.is_empty()) {
                let d = self
                    .v1_dir("net_prio")
                    .ok_or_else(|| missing("network.priorities", "net_prio"))?;
                for (i, p) in prios.iter().enumerate() {
                    write_file(
                        &format!("linux.resources.network.priorities[{i}]"),
                        d,
                        "net_prio.ifpriomap",
                        &format!("{} {}", p.name(), p.priority()),
                    )?;
                }
            }
        }
        if let Some(rdma) = r.rdma().as_ref().filter(|r| !r.is_empty()) {
            let d = match self.target("rdma", "rdma")? {
                Some(Target::V1(d) | Target::V2(d)) => d,
                None => return Err(missing("rdma", "rdma")),
            };
            let mut names: Vec<&String> = rdma.keys().collect();
            names.sort();
            for name in names {
                let l = &rdma[name];
                let mut line = name.clone();
                if let Some(h) = l.hca_handles() {
                    line.push_str(&format!(" hca_handle={h}"));
                }
                if let Some(o) = l.hca_objects() {
                    line.push_str(&format!(" hca_object={o}"));
                }
                write_file(
                    &format!("linux.resources.rdma.{name}"),
                    d,
                    "rdma.max",
                    &line,
                )?;
            }
        }
        if let Some(u) = r.unified().as_ref().filter(|u| !u.is_empty()) {
            v2::unified(self, u)?;
        }
        Ok(w)
    }

    /// Enables every controller the cgroup2 root offers down to the
    /// container's parent (pure v2 only, as runc).
    fn enable_all_v2(&self) -> Result<()> {
        let Some(root) = self.unified_root() else {
            return Ok(());
        };
        let offered = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        for c in offered.split_whitespace() {
            self.enable_v2(c)?;
        }
        Ok(())
    }
}

/// Writes `value` to `dir/file` (no O_CREAT / O_TRUNC: cgroupfs files).
pub(crate) fn try_write(dir: &Path, file: &str, value: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join(file))
        .and_then(|mut f| f.write_all(value.as_bytes()))
}

/// The error for a failed cgroup write, naming the config field, the value
/// and the file: `linux.resources.memory.limit: write 1048576 to
/// /sys/fs/cgroup/memory/x/memory.limit_in_bytes: Device or resource busy`.
pub(crate) fn write_error(field: &str, path: &Path, value: &str, e: &std::io::Error) -> Error {
    let why = match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    };
    Error::invalid(
        field,
        format!("write {} to {}: {why}", value.trim_end(), path.display()),
    )
}

/// [`try_write`] with the error naming the config field.
pub(crate) fn write_file(field: &str, dir: &Path, file: &str, value: &str) -> Result<()> {
    try_write(dir, file, value).map_err(|e| write_error(field, &dir.join(file), value, &e))
}

/// Reads a cgroup file, trimmed; None if it cannot be read.
pub(crate) fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Reads a single-number cgroup file; "max" reads as u64::MAX.
pub(crate) fn read_u64(dir: &Path, file: &str) -> Option<u64> {
    let s = read(dir, file)?;
    if s == "max" {
        return Some(u64::MAX);
    }
    s.parse().ok()
}
