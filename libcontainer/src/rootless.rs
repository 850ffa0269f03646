//! Running without privilege: keel started by an unprivileged user (or by
//! root inside a user namespace that a user made, as rootless podman runs
//! it). The kernel does the isolation; what changes is what keel may touch
//! on the host: its state root, the id maps it may write, and cgroups.

use crate::cgroups::CgroupPaths;
use crate::error::{Error, Result};
use std::path::Path;

/// Whether keel runs inside a user namespace other than the initial one
/// (whose uid_map covers every id). Read once: keel enters other user
/// namespaces only in the processes it forks for a container, after
/// asking.
pub fn in_user_namespace() -> bool {
    static IN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN.get_or_init(|| match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => {
            let fields: Vec<&str> = map.split_whitespace().collect();
            fields != ["0", "0", "4294967295"]
        }
        Err(_) => false,
    })
}

/// The host id that `id` maps to under `map` (uid_map/gid_map text:
/// "inside host count" lines); None when it is not mapped.
pub fn host_id(map: &str, id: u32) -> Option<u32> {
    map.lines().find_map(|line| {
        let f: Vec<u64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<std::result::Result<_, _>>()
            .ok()?;
        let [inside, host, count] = f[..] else {
            return None;
        };
        let offset = u64::from(id).checked_sub(inside).filter(|&o| o < count)?;
        u32::try_from(host + offset).ok()
    })
}

/// The host uid and gid of a container's root under its config's
/// mappings (host root without a user namespace of its own; a joined one's
/// mappings are not looked up): who owns the pipes a runtime makes for
/// the container's stdio, as runc's InitializeIO chowns them.
pub fn root_host_ids(spec: &oci_spec::runtime::Spec) -> (u32, u32) {
    let linux = spec.linux().as_ref();
    let of = |maps: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| {
        let text: String = maps
            .into_iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect();
        if text.is_empty() {
            0
        } else {
            host_id(&text, 0).unwrap_or(0)
        }
    };
    (
        of(linux.and_then(|l| l.uid_mappings().as_ref())),
        of(linux.and_then(|l| l.gid_mappings().as_ref())),
    )
}

/// runc's test for an unprivileged caller: a non-zero euid, or root in a
/// user namespace started by a user other than root (`$USER`).
pub fn unprivileged() -> bool {
    if !nix::unistd::geteuid().is_root() {
        return true;
    }
    in_user_namespace() && std::env::var("USER").map_or(true, |u| u != "root")
}

/// runc's `--rootless auto`: cgroup permission problems are expected when
/// the euid is not root, or root is only root of a user namespace.
pub fn expect_cgroup_denials() -> bool {
    !nix::unistd::geteuid().is_root() || in_user_namespace()
}

/// The hierarchies of `paths` that this process may create the container's
/// cgroup in. A rootless container without resource limits (and without a
/// `cgroupsPath`: the caller checks) runs in its caller's cgroups where it
/// may not make its own, as runc's rootless manager does; limits need a
/// cgroup delegated to the user.
///
/// Also returns the cgroups the container will really be in (its own, or
/// its caller's), which is what its `cgroup` mounts show.
pub(crate) fn usable_cgroups(
    mut paths: CgroupPaths,
    resources: Option<&oci_spec::runtime::LinuxResources>,
) -> Result<(CgroupPaths, CgroupPaths)> {
    let own = CgroupPaths::own()?;
    let mut seen = paths.clone();
    let mut denied = Vec::new();
    if let Some(dir) = &paths.unified {
        if !may_create(dir) {
            denied.push(dir.clone());
            paths.unified = None;
            seen.unified = own.unified.clone();
        }
    }
    paths.v1.retain(|key, dir| {
        let ok = may_create(dir);
        if !ok {
            denied.push(dir.clone());
            match own.v1.get(key) {
                Some(d) => seen.v1.insert(key.clone(), d.clone()),
                None => seen.v1.remove(key),
            };
        }
        ok
    });
    if let Some(first) = denied.first() {
        if asks_for_limits(resources) {
            return Err(Error::invalid(
                "linux.resources",
                format!(
                    "rootless container: no permission to create cgroup {}; resource \
                     limits need a cgroup delegated to the user",
                    first.display()
                ),
            ));
        }
    }
    Ok((paths, seen))
}

/// Whether the nearest existing ancestor of `dir` is writable to us.
fn may_create(dir: &Path) -> bool {
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.exists() {
            return nix::unistd::access(d, nix::unistd::AccessFlags::W_OK).is_ok();
        }
        cur = d.parent();
    }
    false
}

/// Device rules aside (a rootless container cannot make device nodes
/// anyway), does the config set any limit?
fn asks_for_limits(resources: Option<&oci_spec::runtime::LinuxResources>) -> bool {
    let Some(r) = resources else {
        return false;
    };
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(r) else {
        return true;
    };
    fields.iter().any(|(k, v)| {
        k != "devices"
            && match v {
                serde_json::Value::Null => false,
                serde_json::Value::Array(a) => !a.is_empty(),
                serde_json::Value::Object(o) => !o.is_empty(),
                _ => true,
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_id_maps_through_the_ranges() {
        let map = "         0     100000      65536\n     65536          5          1\n";
        assert_eq!(host_id(map, 0), Some(100000));
        assert_eq!(host_id(map, 1000), Some(101000));
        assert_eq!(host_id(map, 65536), Some(5));
        assert_eq!(host_id(map, 65537), None);
        assert_eq!(host_id("0 0 4294967295\n", 7), Some(7));
        assert_eq!(host_id("", 0), None);
    }
    use oci_spec::runtime::LinuxResources;

    #[test]
    fn limits_are_anything_but_device_rules() {
        assert!(!asks_for_limits(None));
        let r: LinuxResources =
            serde_json::from_str(r#"{"devices":[{"allow":false,"access":"rwm"}]}"#).expect("parse");
        assert!(!asks_for_limits(Some(&r)));
        let r: LinuxResources = serde_json::from_str(r#"{"pids":{"limit":10}}"#).expect("parse");
        assert!(asks_for_limits(Some(&r)));
        let r: LinuxResources = serde_json::from_str(r#"{"memory":{}}"#).expect("parse");
        assert!(!asks_for_limits(Some(&r)));
    }
}
