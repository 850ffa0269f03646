//! AppArmor profiles and SELinux labels, as runc applies them: the
//! process's profile or label is written to its own procfs exec attribute
//! just before it runs the program (the kernel applies it at execve), the
//! session keyring gets the label too, and `linux.mountLabel` becomes a
//! `context=` option of the container's mounts. Asking for a profile or a
//! label on a host without that LSM is an error, with runc's words.

use crate::error::{Error, Result};
use oci_spec::runtime::Process;
use std::path::{Path, PathBuf};

/// `process.apparmorProfile` and `process.selinuxLabel`, empty strings
/// meaning none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    pub apparmor: Option<String>,
    pub selinux: Option<String>,
}

impl Labels {
    pub fn of(p: &Process) -> Labels {
        let set = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        Labels {
            apparmor: set(p.apparmor_profile()),
            selinux: set(p.selinux_label()),
        }
    }
}

/// Whether AppArmor is on, read as runc reads it.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// Whether SELinux is on: selinuxfs is mounted at its usual place.
pub fn selinux_enabled() -> bool {
    const SELINUX_MAGIC: nix::sys::statfs::FsType = nix::sys::statfs::FsType(0xf97c_ff8c_u32 as _);
    nix::sys::statfs::statfs("/sys/fs/selinux")
        .is_ok_and(|fs| fs.filesystem_type() == SELINUX_MAGIC)
}

/// A profile or label this host cannot apply is refused before anything
/// is created.
pub fn check(p: &Process) -> Result<()> {
    let l = Labels::of(p);
    if let Some(profile) = &l.apparmor {
        if !apparmor_enabled() {
            return Err(Error::invalid(
                "process.apparmorProfile",
                format!(
                    "apparmor profile {profile:?} specified but AppArmor is not enabled on this system"
                ),
            ));
        }
    }
    if l.selinux.is_some() && !selinux_enabled() {
        return Err(Error::invalid(
            "process.selinuxLabel",
            "selinux label is specified in config, but selinux is disabled or not supported",
        ));
    }
    Ok(())
}

/// What to write where so that the next execve takes on `l`: AppArmor's
/// "exec <profile>" (to its own attribute directory when the kernel has
/// one, `apparmor_dir`), SELinux's label to attr/exec.
pub fn exec_attrs(l: &Labels, apparmor_dir: bool) -> Vec<(PathBuf, String)> {
    let attr = Path::new("/proc/thread-self/attr");
    let mut v = Vec::new();
    if let Some(profile) = &l.apparmor {
        let path = if apparmor_dir {
            attr.join("apparmor/exec")
        } else {
            attr.join("exec")
        };
        v.push((path, format!("exec {profile}")));
    }
    if let Some(label) = &l.selinux {
        v.push((attr.join("exec"), label.clone()));
    }
    v
}

/// Writes the exec attributes of `l` (procfs-checked writes).
pub fn apply_exec(l: &Labels) -> Result<()> {
    let apparmor_dir = Path::new("/proc/thread-self/attr/apparmor").is_dir();
    for (path, value) in exec_attrs(l, apparmor_dir) {
        super::procfs::write(&path, &value).map_err(|e| {
            e.in_field(if l.apparmor.is_some() && value.starts_with("exec ") {
                "process.apparmorProfile"
            } else {
                "process.selinuxLabel"
            })
        })?;
    }
    Ok(())
}

/// The label new keys (the session keyring) get, as runc sets it.
pub fn set_keycreate(label: &str) -> Result<()> {
    super::procfs::write(Path::new("/proc/thread-self/attr/keycreate"), label)
        .map_err(|e| e.in_field("process.selinuxLabel"))
}

/// Mount data with `linux.mountLabel` as go-selinux's FormatMountLabel
/// writes it, for the filesystem types runc labels this way (not proc,
/// sysfs, mqueue, cgroup or binds, which take no `context=` or are
/// labelled otherwise).
pub fn mount_data(data: &str, fstype: &str, label: Option<&str>) -> String {
    let unlabelled = ["proc", "sysfs", "mqueue", "cgroup", "cgroup2", "bind"];
    match label.filter(|l| !l.is_empty()) {
        Some(l) if !unlabelled.contains(&fstype) => {
            let ctx = format!("context={l:?}");
            if data.is_empty() {
                ctx
            } else {
                format!("{data},{ctx}")
            }
        }
        _ => data.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_attribute_writes() {
        let l = Labels {
            apparmor: Some("docker-default".into()),
            selinux: Some("system_u:system_r:container_t:s0:c1,c2".into()),
        };
        assert_eq!(
            exec_attrs(&l, true),
            [
                (
                    PathBuf::from("/proc/thread-self/attr/apparmor/exec"),
                    "exec docker-default".to_string()
                ),
                (
                    PathBuf::from("/proc/thread-self/attr/exec"),
                    "system_u:system_r:container_t:s0:c1,c2".to_string()
                ),
            ]
        );
        assert_eq!(
            exec_attrs(&l, false)[0].0,
            PathBuf::from("/proc/thread-self/attr/exec")
        );
        assert!(exec_attrs(&Labels::default(), true).is_empty());
    }

    #[test]
    fn mount_label_options() {
        let l = Some("system_u:object_r:container_file_t:s0");
        assert_eq!(
            mount_data("mode=755,size=65536k", "tmpfs", l),
            r#"mode=755,size=65536k,context="system_u:object_r:container_file_t:s0""#
        );
        assert_eq!(
            mount_data("", "devpts", l),
            r#"context="system_u:object_r:container_file_t:s0""#
        );
        for t in ["proc", "sysfs", "mqueue", "cgroup"] {
            assert_eq!(mount_data("x=1", t, l), "x=1", "{t}");
        }
        assert_eq!(mount_data("x=1", "tmpfs", None), "x=1");
        assert_eq!(mount_data("x=1", "tmpfs", Some("")), "x=1");
    }

    #[test]
    fn empty_profile_and_label_mean_none() {
        let p: Process = serde_json::from_str(
            r#"{"cwd": "/", "user": {"uid": 0, "gid": 0}, "apparmorProfile": "", "selinuxLabel": ""}"#,
        )
        .unwrap();
        assert_eq!(Labels::of(&p), Labels::default());
        assert!(check(&p).is_ok());
    }
}
