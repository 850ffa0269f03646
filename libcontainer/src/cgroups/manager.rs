//! The container's cgroup through its life: made (by keel, or by systemd
//! with the init in it), the init placed, limits set, removed. What differs
//! between the two drivers is decided here, in one `match` per step.

use super::devices::{self, DeviceRule};
use super::fs::{mkdir_all, remove_tree};
use super::path::CgroupPaths;
use super::procs::V1Visit;
use super::resources;
use super::systemd::{self, SystemdUnit};
use crate::error::{Error, Result, SysContext};
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Who makes and removes the cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Option<SystemdUnit>", into = "Option<SystemdUnit>")]
pub enum Driver {
    /// keel, in cgroupfs (runc's default).
    #[default]
    Cgroupfs,
    /// systemd, as a transient scope unit (`--systemd-cgroup`).
    Systemd(SystemdUnit),
}

impl Driver {
    fn is_cgroupfs(&self) -> bool {
        *self == Driver::Cgroupfs
    }
}

// As state.json has always had it: a `systemd` unit, or nothing.
impl From<Option<SystemdUnit>> for Driver {
    fn from(u: Option<SystemdUnit>) -> Driver {
        u.map_or(Driver::Cgroupfs, Driver::Systemd)
    }
}

impl From<Driver> for Option<SystemdUnit> {
    fn from(d: Driver) -> Option<SystemdUnit> {
        match d {
            Driver::Cgroupfs => None,
            Driver::Systemd(u) => Some(u),
        }
    }
}

/// One container's cgroups and the driver that owns them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manager {
    #[serde(flatten)]
    pub paths: CgroupPaths,
    #[serde(
        default,
        rename = "systemd",
        skip_serializing_if = "Driver::is_cgroupfs"
    )]
    pub driver: Driver,
}

impl Manager {
    /// The cgroupfs driver, with runc's `cgroupsPath` semantics (see
    /// [`CgroupPaths::resolve`]).
    pub fn cgroupfs(cgroups_path: Option<&Path>, id: &str) -> Result<Manager> {
        Ok(Manager {
            paths: CgroupPaths::resolve(cgroups_path, id)?,
            driver: Driver::Cgroupfs,
        })
    }

    /// The systemd driver: the scope unit for the config's
    /// `slice:prefix:name` cgroupsPath, in every hierarchy, started with
    /// the config's limits, device rules and `org.systemd.property.*`
    /// annotations; the user's systemd's when not root.
    pub fn systemd(
        cgroups_path: Option<&Path>,
        id: &str,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<Manager> {
        let (unit, path) = systemd::unit_for(cgroups_path, id, spec)?;
        let paths = CgroupPaths::resolve(Some(Path::new(&path)), id)?;
        if unit.user && !paths.is_pure_v2() {
            return Err(Error::invalid(
                "linux.cgroupsPath",
                "rootless: the systemd cgroup driver needs cgroup v2 (a user's systemd cannot delegate v1 controllers)",
            ));
        }
        Ok(Manager {
            paths,
            driver: Driver::Systemd(unit),
        })
    }

    /// Whether the cgroup exists before the init does, so that limits can
    /// be set before the program could run. A systemd scope comes into
    /// being with the init in it: its limits follow while the init waits
    /// for start.
    pub fn exists_before_init(&self) -> bool {
        match self.driver {
            Driver::Cgroupfs => true,
            Driver::Systemd(_) => false,
        }
    }

    /// Creates every directory. On failure what was created is removed
    /// again. Returns whether the container's own directories were made here
    /// (and so are ours to remove if creation fails later).
    ///
    /// A cgroup that exists already must be empty and not frozen, as runc
    /// requires (libcontainer/create.go in runc 1.2+; 1.1 only warned about
    /// processes): a frozen one would freeze the init before it could
    /// report, and processes there would share the container's limits and
    /// die with it.
    pub fn create(&self) -> Result<bool> {
        let pids = self.paths.pids()?;
        if !pids.is_empty() {
            return Err(Error::CgroupInUse(format!(
                "is not empty: {} process(es) found",
                pids.len()
            )));
        }
        if self.paths.is_frozen() {
            return Err(Error::CgroupInUse("unexpectedly frozen".into()));
        }
        match self.driver {
            Driver::Cgroupfs => self.make_dirs(),
            // systemd makes them when the unit starts (see `join_init`);
            // stopping the unit is what removes them.
            Driver::Systemd(_) => Ok(true),
        }
    }

    fn make_dirs(&self) -> Result<bool> {
        let mut made: Vec<PathBuf> = Vec::new();
        let result = self
            .paths
            .all()
            .try_for_each(|dir| mkdir_all(dir, &mut made));
        if result.is_err() {
            for d in made.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
        }
        result?;
        if let Some(cpuset) = self.paths.v1_dir("cpuset") {
            inherit_cpuset(cpuset)?;
        }
        Ok(!made.is_empty())
    }

    /// The cgroup2 directory for the init's clone3(CLONE_INTO_CGROUP);
    /// None when there is none yet.
    pub fn open_unified(&self) -> Result<Option<OwnedFd>> {
        match &self.driver {
            Driver::Systemd(_) if !self.paths.unified.as_ref().is_some_and(|d| d.exists()) => {
                Ok(None) // the unit is started with the init in it
            }
            _ => self.paths.open_unified(),
        }
    }

    /// [`CgroupPaths::enter_v1`] for the init; under systemd the v1
    /// cgroups are made by starting the unit, so there is nothing to enter.
    pub fn enter_v1(&self) -> Option<V1Visit> {
        match self.driver {
            Driver::Cgroupfs => self.paths.enter_v1(),
            Driver::Systemd(_) => None,
        }
    }

    /// The v1 cgroups the init moves itself into
    /// ([`CgroupPaths::join_v1_self`]); None without v1 hierarchies, or
    /// under systemd, where starting the unit places the init.
    pub fn v1_for_self_join(&self) -> Option<&CgroupPaths> {
        match self.driver {
            Driver::Cgroupfs if !self.paths.v1.is_empty() => Some(&self.paths),
            _ => None,
        }
    }

    /// Places the init: with systemd, starts the unit with it inside (and
    /// makes the hierarchies systemd leaves alone); then
    /// [`CgroupPaths::join`].
    pub fn join_init(&self, pid: i32, in_unified: bool, in_v1: bool) -> Result<()> {
        if let Driver::Systemd(unit) = &self.driver {
            if !in_unified && !self.paths.all().any(|d| d.exists()) {
                systemd::start(unit, pid, self.paths.is_pure_v2())?;
                self.make_dirs()?;
            }
        }
        self.paths.join(pid, in_unified, in_v1)
    }

    /// Applies `linux.resources` (all but the device rules); under systemd
    /// as unit properties first, as runc. Returns warnings (see
    /// [`resources::apply`]).
    pub fn apply(&self, r: &LinuxResources) -> Result<Vec<String>> {
        if let Driver::Systemd(unit) = &self.driver {
            systemd::set_resources(unit, r, self.paths.is_pure_v2())?;
        }
        resources::apply(&self.paths, r)
    }

    /// The device rules (see [`devices::apply`]); under systemd as unit
    /// properties first, as runc. False when this host has no cgroup to
    /// filter devices in.
    pub fn apply_device_rules(&self, rules: &[DeviceRule]) -> Result<bool> {
        if let Driver::Systemd(unit) = &self.driver {
            systemd::set_devices(unit, rules)?;
        }
        devices::apply(&self.paths, rules)
    }

    /// Removes every directory (sub-cgroups first), and the systemd unit.
    pub fn remove(&self) -> Result<()> {
        // The directories go even when systemd cannot be asked to stop the
        // unit (as after a failed start).
        let stopped = match &self.driver {
            Driver::Cgroupfs => Ok(()),
            Driver::Systemd(unit) => systemd::stop(unit),
        };
        for dir in self.paths.all() {
            remove_tree(dir)?;
        }
        stopped
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::fs::tests::FakeCgroup;

    #[test]
    fn state_json_keeps_its_shape() {
        let json = r#"{"unified":"/u/c","v1":{"memory":"/m/c"},"systemd":{"unit":"keel-c.scope","slice":"system.slice"}}"#;
        let m: Manager = serde_json::from_str(json).unwrap();
        assert_eq!(m.paths.unified, Some(PathBuf::from("/u/c")));
        assert_eq!(
            m.driver,
            Driver::Systemd(SystemdUnit {
                unit: "keel-c.scope".into(),
                slice: "system.slice".into(),
                ..Default::default()
            })
        );
        assert!(!m.exists_before_init());
        assert_eq!(serde_json::to_string(&m).unwrap(), json);
        let fs: Manager = serde_json::from_str(r#"{"unified":"/u/c"}"#).unwrap();
        assert_eq!(fs.driver, Driver::Cgroupfs);
        assert_eq!(serde_json::to_string(&fs).unwrap(), r#"{"unified":"/u/c"}"#);
    }

    #[test]
    fn cpuset_is_copied_down_from_the_nearest_ancestor() {
        let cg = FakeCgroup::new(
            "cpuset",
            &[
                ("cpuset.cpus", "0-1\n"),
                ("cpuset.mems", "0\n"),
                ("a/cpuset.cpus", ""),
                ("a/cpuset.mems", ""),
                ("a/b/cpuset.cpus", ""),
                ("a/b/cpuset.mems", ""),
            ],
        );
        inherit_cpuset(&cg.dir().join("a/b")).unwrap();
        assert_eq!(cg.get("a/cpuset.cpus"), "0-1");
        assert_eq!(cg.get("a/b/cpuset.cpus"), "0-1");
        assert_eq!(cg.get("a/b/cpuset.mems"), "0");
    }

    #[test]
    fn a_cgroup_with_processes_or_frozen_is_refused() {
        let cg = FakeCgroup::new("in-use", &[("cgroup.procs", "1\n2\n")]);
        let mut m = Manager::default();
        m.paths.unified = Some(cg.dir().to_path_buf());
        let e = m.create().unwrap_err().to_string();
        assert_eq!(e, "container's cgroup is not empty: 2 process(es) found");
        cg.put("cgroup.procs", "");
        cg.put("cgroup.freeze", "1");
        let e = m.create().unwrap_err().to_string();
        assert_eq!(e, "container's cgroup unexpectedly frozen");
        cg.put("cgroup.freeze", "0");
        assert!(!m.create().unwrap());
    }

    #[test]
    fn cgroupfs_create_and_remove_a_fake_tree() {
        let cg = FakeCgroup::new("mgr", &[]);
        let mut m = Manager::default();
        m.paths.unified = Some(cg.dir().join("u/c1"));
        m.paths.v1.insert("pids".into(), cg.dir().join("pids/c1"));
        assert!(m.exists_before_init());
        assert!(m.create().unwrap());
        assert!(cg.dir().join("u/c1").is_dir() && cg.dir().join("pids/c1").is_dir());
        // Made already: nothing of ours to clean up after a failure.
        assert!(!m.create().unwrap());
        m.remove().unwrap();
        assert!(!cg.dir().join("u/c1").exists() && !cg.dir().join("pids/c1").exists());
        assert!(cg.dir().join("u").is_dir());
    }
}
