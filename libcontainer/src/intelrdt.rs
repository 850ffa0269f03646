//! `linux.intelRdt`: the container's resctrl group (Intel RDT / AMD PQoS:
//! cache allocation, memory bandwidth, monitoring), as runc 1.3+ does it
//! (`libcontainer/intelrdt/intelrdt.go`, its validator's intelrdtCheck):
//!
//! - the group is `<resctrl>/<closID>`, or `<resctrl>/<container id>`
//!   without a closID; a closID is a single path component;
//! - a closID with nothing to write (no l3CacheSchema, memBwSchema or
//!   schemata) names a group that must exist already: it was configured
//!   by someone else, and is shared;
//! - the schemata lines (l3CacheSchema, memBwSchema, then `schemata`) are
//!   written in one write, the init's pid goes into `tasks`;
//! - `enableMonitoring` makes `mon_groups/<container id>` in the group;
//! - delete removes what the container owns: its monitoring group, and
//!   the group itself unless it was named by closID.
//!
//! The resctrl root is found in mountinfo, or given ([`Resctrl::at`]), so
//! the rules can be tested on an ordinary directory.

use crate::error::{Error, Result, SysContext};
use oci_spec::runtime::LinuxIntelRdt;
use std::path::{Path, PathBuf};

/// A mounted resctrl filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resctrl {
    root: PathBuf,
}

impl Resctrl {
    /// The resctrl mount of this process's mount namespace, if any.
    pub fn find() -> Option<Resctrl> {
        crate::mountinfo::read_self()
            .ok()?
            .into_iter()
            .find(|m| m.fstype == "resctrl")
            .map(|m| Resctrl::at(m.mount_point))
    }

    pub fn at(root: impl Into<PathBuf>) -> Resctrl {
        Resctrl { root: root.into() }
    }

    /// A feature is there when the kernel lists its info directory.
    fn has(&self, info: &str) -> bool {
        self.root.join("info").join(info).is_dir()
    }

    fn cat(&self) -> bool {
        self.has("L3") || self.has("L3CODE")
    }
}

/// What the container will do with resctrl, checked in the parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    resctrl: Resctrl,
    /// The group's directory name.
    clos: String,
    /// Named by closID: maybe shared, never removed by keel.
    named: bool,
    /// Lines for the group's `schemata` file, in order.
    schemata: Vec<String>,
    /// The container id, for its monitoring group.
    monitor: Option<String>,
}

/// Checks the config with runc's rules and words. `resctrl` is where the
/// filesystem is mounted (None: not mounted, or no RDT on this machine).
#[allow(deprecated)] // enableCMT/enableMBM: runtime-spec 1.3 names them enableMonitoring
pub fn plan(rdt: &LinuxIntelRdt, id: &str, resctrl: Option<Resctrl>) -> Result<Plan> {
    let field = "linux.intelRdt";
    let clos_id = rdt.clos_id().clone().unwrap_or_default();
    if clos_id == "." || clos_id == ".." || clos_id.contains('/') {
        return Err(Error::invalid(
            format!("{field}.closID"),
            format!("invalid intelRdt.ClosID {clos_id:?}"),
        ));
    }
    let Some(resctrl) = resctrl else {
        return Err(Error::invalid(
            field,
            "intelRdt is specified in config, but Intel RDT is not supported or enabled",
        ));
    };
    let l3 = rdt.l3_cache_schema().clone().unwrap_or_default();
    let mb = rdt.mem_bw_schema().clone().unwrap_or_default();
    if !l3.is_empty() && !resctrl.cat() {
        return Err(Error::invalid(
            format!("{field}.l3CacheSchema"),
            "intelRdt.l3CacheSchema is specified in config, but Intel RDT/CAT is not enabled",
        ));
    }
    if !mb.is_empty() && !resctrl.has("MB") {
        return Err(Error::invalid(
            format!("{field}.memBwSchema"),
            "intelRdt.memBwSchema is specified in config, but Intel RDT/MBA is not enabled",
        ));
    }
    let monitor = rdt.enable_monitoring().unwrap_or(false)
        || rdt.enable_cmt().unwrap_or(false)
        || rdt.enable_mbm().unwrap_or(false);
    if monitor && !resctrl.has("L3_MON") {
        return Err(Error::invalid(
            format!("{field}.enableMonitoring"),
            "intelRdt.enableMonitoring is specified in config, but Intel RDT monitoring is not enabled",
        ));
    }
    let schemata: Vec<String> = [l3, mb]
        .into_iter()
        .chain(rdt.schemata().iter().flatten().cloned())
        .flat_map(|s| s.lines().map(str::to_string).collect::<Vec<_>>())
        .filter(|l| !l.trim().is_empty())
        .collect();
    let named = !clos_id.is_empty();
    Ok(Plan {
        resctrl,
        clos: if named { clos_id } else { id.to_string() },
        named,
        schemata,
        monitor: monitor.then(|| id.to_string()),
    })
}

/// `update --l3-cache-schema` / `--mem-bw-schema` need their feature on
/// this machine, checked as runc's update does (update.go), before anything
/// changes.
pub fn check_update(resctrl: Option<&Resctrl>, l3: bool, mem_bw: bool) -> Result<()> {
    if l3 && !resctrl.is_some_and(Resctrl::cat) {
        return Err(Error::RdtFeature("CAT: l3 cache schema"));
    }
    if mem_bw && !resctrl.is_some_and(|r| r.has("MB")) {
        return Err(Error::RdtFeature("MBA: memory bandwidth schema"));
    }
    Ok(())
}

/// The groups a container is in, kept in its state for `delete`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Groups {
    /// The group's directory.
    pub clos: PathBuf,
    /// Whether the container owns it (no closID): delete removes it.
    pub owned: bool,
    /// The container's monitoring group, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<PathBuf>,
}

impl Plan {
    /// Puts `pid` (the init) into the container's group, made or joined as
    /// the config says. On an error, nothing this made is left.
    pub fn apply(&self, pid: i32) -> Result<Groups> {
        let clos = self.resctrl.root.join(&self.clos);
        if self.named && self.schemata.is_empty() && !clos.is_dir() {
            return Err(Error::invalid(
                "linux.intelRdt.closID",
                format!(
                    "clos dir not accessible (must be pre-created when l3CacheSchema and \
                     memBwSchema are empty): {}: no such directory",
                    clos.display()
                ),
            ));
        }
        let made = match std::fs::create_dir(&clos) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => {
                return Err(self.with_status(Error::io(format!("mkdir {}", clos.display()), e)))
            }
        };
        let mut groups = Groups {
            clos,
            owned: !self.named,
            monitor: None,
        };
        let result = self.fill(pid, &mut groups);
        if result.is_err() {
            let _ = groups.remove_monitor();
            if made {
                let _ = remove_group(&groups.clos);
            }
        }
        result.map(|()| groups)
    }

    fn fill(&self, pid: i32, groups: &mut Groups) -> Result<()> {
        if !self.schemata.is_empty() {
            let text = self.schemata.join("\n") + "\n";
            write(&groups.clos, "schemata", &text).map_err(|e| self.with_status(e))?;
        }
        write(&groups.clos, "tasks", &pid.to_string()).map_err(|e| {
            self.with_status(Error::invalid(
                "linux.intelRdt",
                format!("intelrdt: unable to add pid {pid}: {e}"),
            ))
        })?;
        if let Some(id) = &self.monitor {
            let mon = groups.clos.join("mon_groups").join(id);
            std::fs::create_dir(&mon)
                .ctx(|| format!("linux.intelRdt.enableMonitoring: mkdir {}", mon.display()))?;
            groups.monitor = Some(mon.clone());
            write(&mon, "tasks", &pid.to_string()).map_err(|e| self.with_status(e))?;
        }
        Ok(())
    }

    /// The kernel explains a refused write in info/last_cmd_status; runc
    /// appends it to the error.
    fn with_status(&self, e: Error) -> Error {
        match std::fs::read_to_string(self.resctrl.root.join("info/last_cmd_status")) {
            Ok(s) if !s.trim().is_empty() && s.trim() != "ok" => Error::invalid(
                "linux.intelRdt",
                format!("{e}, last_cmd_status: {}", s.trim()),
            ),
            _ => e,
        }
    }
}

fn write(dir: &Path, file: &str, text: &str) -> Result<()> {
    let path = dir.join(file);
    std::fs::write(&path, text).ctx(|| format!("write {}", path.display()))
}

/// Removes a resctrl group: rmdir on resctrl (its files are the kernel's);
/// an ordinary directory (a test's tree) with its files.
fn remove_group(dir: &Path) -> Result<()> {
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {
            std::fs::remove_dir_all(dir).ctx(|| format!("remove {}", dir.display()))
        }
        Err(e) => Err(Error::io(format!("rmdir {}", dir.display()), e)),
    }
}

impl Groups {
    /// New schemata lines for the group (`update`); the kernel keeps the
    /// lines of resources not named.
    pub fn set_schemata(&self, lines: &[&str]) -> Result<()> {
        write(&self.clos, "schemata", &(lines.join("\n") + "\n"))
    }

    fn remove_monitor(&self) -> Result<()> {
        self.monitor.as_deref().map_or(Ok(()), remove_group)
    }

    /// What the container owns goes; a group named by closID stays (other
    /// containers or its maker may use it), as in runc.
    pub fn remove(&self) -> Result<()> {
        self.remove_monitor()?;
        if self.owned {
            remove_group(&self.clos)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A resctrl tree in a temp dir: the info directories of `features`.
    fn fake(features: &[&str]) -> (PathBuf, Resctrl) {
        let root = std::env::temp_dir().join(format!(
            "keel-resctrl-{}-{}",
            std::process::id(),
            features.join("-") + &format!("{:?}", std::thread::current().id())
        ));
        let _ = std::fs::remove_dir_all(&root);
        for f in features {
            std::fs::create_dir_all(root.join("info").join(f)).expect("mkdir info");
        }
        (root.clone(), Resctrl::at(root))
    }

    fn rdt(v: serde_json::Value) -> LinuxIntelRdt {
        serde_json::from_value(v).expect("typed intelRdt")
    }

    fn err(v: serde_json::Value, r: Option<Resctrl>) -> String {
        plan(&rdt(v), "c1", r).unwrap_err().to_string()
    }

    #[test]
    fn clos_id_rules_come_first() {
        let (root, r) = fake(&["L3"]);
        for bad in [".", "..", "a/b", "/x"] {
            assert!(
                err(json!({"closID": bad}), Some(r.clone()))
                    .contains(&format!("invalid intelRdt.ClosID {bad:?}")),
                "{bad}"
            );
            // As runc 1.1: the closID verdict even without resctrl.
            assert!(err(json!({"closID": bad}), None).contains("invalid intelRdt.ClosID"));
        }
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn refused_without_resctrl_or_the_feature() {
        assert!(err(json!({}), None).contains(
            "intelRdt is specified in config, but Intel RDT is not supported or enabled"
        ));
        let (root, r) = fake(&["L3"]);
        assert!(err(json!({"memBwSchema": "MB:0=20"}), Some(r.clone()))
            .contains("Intel RDT/MBA is not enabled"));
        assert!(err(json!({"enableMonitoring": true}), Some(r.clone()))
            .contains("monitoring is not enabled"));
        let (root2, mb) = fake(&["MB"]);
        assert!(err(json!({"l3CacheSchema": "L3:0=f"}), Some(mb))
            .contains("Intel RDT/CAT is not enabled"));
        let _ = std::fs::remove_dir_all(root);
        let _ = std::fs::remove_dir_all(root2);
    }

    #[test]
    fn own_group_gets_schemata_tasks_and_monitoring_and_goes_on_delete() {
        let (root, r) = fake(&["L3", "MB", "L3_MON"]);
        let p = plan(
            &rdt(json!({"l3CacheSchema": "L3:0=f0", "memBwSchema": "MB:0=50",
                "schemata": ["L2:0=3"], "enableMonitoring": true})),
            "c1",
            Some(r),
        )
        .expect("valid");
        std::fs::create_dir_all(root.join("c1/mon_groups")).expect("the kernel's mon_groups");
        let g = p.apply(42).expect("applied");
        assert_eq!(g.clos, root.join("c1"));
        let read = |f: &str| std::fs::read_to_string(root.join(f)).expect(f);
        assert_eq!(read("c1/schemata"), "L3:0=f0\nMB:0=50\nL2:0=3\n");
        assert_eq!(read("c1/tasks"), "42");
        assert_eq!(read("c1/mon_groups/c1/tasks"), "42");
        g.remove().expect("removed");
        assert!(!root.join("c1").exists());
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn a_named_group_without_schemata_must_exist_and_stays() {
        let (root, r) = fake(&["L3"]);
        let p = plan(&rdt(json!({"closID": "shared"})), "c1", Some(r.clone())).expect("valid");
        assert!(p
            .apply(7)
            .unwrap_err()
            .to_string()
            .contains("clos dir not accessible (must be pre-created"));
        assert!(!root.join("shared").exists(), "nothing made");
        std::fs::create_dir(root.join("shared")).expect("pre-made group");
        std::fs::write(root.join("shared/schemata"), "L3:0=ff\n").expect("its schemata");
        let g = p.apply(7).expect("joined");
        assert_eq!(
            std::fs::read_to_string(root.join("shared/tasks")).unwrap(),
            "7"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("shared/schemata")).unwrap(),
            "L3:0=ff\n"
        );
        g.remove().expect("delete");
        assert!(
            root.join("shared").is_dir(),
            "a closID group is not the container's"
        );
        // With schemata, a named group is made when missing, and still kept.
        let p = plan(
            &rdt(json!({"closID": "new", "schemata": ["L3:0=3"]})),
            "c1",
            Some(r),
        )
        .expect("valid");
        let g = p.apply(8).expect("made");
        assert!(!g.owned);
        g.remove().expect("delete");
        assert!(root.join("new").is_dir());
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn a_failed_apply_leaves_nothing() {
        let (root, r) = fake(&["L3", "L3_MON"]);
        // No mon_groups in the fake tree: the monitoring group cannot be made.
        let p = plan(&rdt(json!({"enableMonitoring": true})), "c2", Some(r)).expect("valid");
        assert!(p.apply(9).is_err());
        assert!(!root.join("c2").exists());
        let _ = std::fs::remove_dir_all(root);
    }

    /// update's checks, in runc's words: each schema needs its feature.
    #[test]
    fn update_needs_the_feature() {
        let cat = "Intel RDT/CAT: l3 cache schema is not enabled";
        let mba = "Intel RDT/MBA: memory bandwidth schema is not enabled";
        let e = |r: Option<&Resctrl>, l3, mb| check_update(r, l3, mb).unwrap_err().to_string();
        assert_eq!(e(None, true, false), cat);
        assert_eq!(e(None, false, true), mba);
        let (root, l3_only) = fake(&["L3"]);
        assert!(check_update(Some(&l3_only), true, false).is_ok());
        assert_eq!(e(Some(&l3_only), true, true), mba);
        assert!(check_update(None, false, false).is_ok());
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn update_writes_the_lines_to_the_group() {
        let (root, r) = fake(&["L3", "MB"]);
        let g = plan(&rdt(json!({})), "c3", Some(r))
            .expect("valid")
            .apply(10)
            .expect("made");
        g.set_schemata(&["L3:0=3", "MB:0=50"]).expect("update");
        assert_eq!(
            std::fs::read_to_string(root.join("c3/schemata")).expect("schemata"),
            "L3:0=3\nMB:0=50\n"
        );
        g.remove().expect("delete");
        assert!(!root.join("c3").exists());
        let _ = std::fs::remove_dir_all(root);
    }
}
