//! What CRIU must be told about a container that it cannot see for itself,
//! described as runc does (`libcontainer/criu_linux.go`): the mounts whose
//! source lies outside the container (binds, the cgroup directories bound
//! at /sys/fs/cgroup, the null device over masked files, device binds) are
//! "external" and named by their destination; namespaces the config joins
//! by path are external too, or joined again at restore.

use crate::cgroups::CgroupPaths;
use crate::error::{Error, Result, SysContext};
use crate::spec::Bundle;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, Mount};
use serde::{Deserialize, Serialize};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// What of a container's config CRIU is told about. Saved in the state at
/// create, so that a checkpoint describes the container as it was made
/// (runc dumps from its saved config too), whatever the bundle's
/// config.json says by then; a restore describes its bundle's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Described {
    /// The bundle directory, which relative bind sources are in.
    pub bundle: PathBuf,
    /// The config's mounts.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// The config's namespaces (those joined by path are external).
    #[serde(default)]
    pub namespaces: Vec<LinuxNamespace>,
    /// The config's masked paths (files get the null device).
    #[serde(default)]
    pub masked_paths: Vec<String>,
    /// The paths of the default devices and the config's.
    #[serde(default)]
    pub devices: Vec<PathBuf>,
}

impl Described {
    pub(crate) fn of(bundle: &Bundle) -> Described {
        let linux = bundle.spec.linux().as_ref();
        Described {
            bundle: bundle.path.clone(),
            mounts: bundle.spec.mounts().clone().unwrap_or_default(),
            namespaces: linux
                .and_then(|l| l.namespaces().clone())
                .unwrap_or_default(),
            masked_paths: linux
                .and_then(|l| l.masked_paths().clone())
                .unwrap_or_default(),
            // runc's default devices too: in a user namespace they are
            // binds of the host's nodes, which CRIU must be told of.
            devices: {
                let mut paths: Vec<PathBuf> = crate::rootfs::devices::defaults()
                    .into_iter()
                    .map(|d| d.path)
                    .collect();
                for d in linux
                    .and_then(|l| l.devices().as_ref())
                    .into_iter()
                    .flatten()
                {
                    if !paths.contains(d.path()) {
                        paths.push(d.path().clone());
                    }
                }
                paths
            },
        }
    }
}

/// An external mount: where it is in the container, and its host source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExternalMount {
    pub destination: String,
    pub source: PathBuf,
}

pub(super) fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
}

/// `dest` where its mount lies: the symlinks of its existing part resolved
/// within `root` (the container's root), as keel resolved them when it made
/// the mount, so that the key names the mount CRIU finds. Unchanged if the
/// root cannot be walked.
fn in_root(root: &Path, dest: &str) -> String {
    use std::os::fd::AsFd;
    let Ok(dir) = std::fs::File::open(root) else {
        return dest.to_string();
    };
    match crate::rootfs::path::resolve_in_root(dir.as_fd(), Path::new(dest)) {
        Ok(parts) => {
            let mut p = PathBuf::from("/");
            p.extend(parts);
            p.to_string_lossy().into_owned()
        }
        Err(_) => dest.to_string(),
    }
}

/// The config's mounts that CRIU must treat as external, by where they lie
/// in `root` (the container's root), with the sources they have now
/// (`cgroups`: the container's cgroups, bound at the cgroup mount when
/// there is no cgroup namespace, as keel's rootfs setup does).
pub(crate) fn external_mounts(
    c: &Described,
    cgroups: &CgroupPaths,
    root: &Path,
) -> Vec<ExternalMount> {
    let mut out = listed_mounts(c, cgroups);
    for m in &mut out {
        m.destination = in_root(root, &m.destination);
    }
    out
}

fn listed_mounts(c: &Described, cgroups: &CgroupPaths) -> Vec<ExternalMount> {
    let cgroupns = namespaces(c)
        .iter()
        .any(|(t, _)| *t == LinuxNamespaceType::Cgroup);
    let mut out = Vec::new();
    for m in &c.mounts {
        let destination = m.destination().to_string_lossy().into_owned();
        if is_bind(m) {
            let source = m.source().clone().unwrap_or_default();
            out.push(ExternalMount {
                destination,
                source: c.bundle.join(source),
            });
        } else if m.typ().as_deref() == Some("cgroup") && !cgroupns && !cgroups.v1.is_empty() {
            // v1 or hybrid: one bind per hierarchy under a tmpfs.
            for (key, dir) in &cgroups.v1 {
                let name = key.strip_prefix("name=").unwrap_or(key);
                out.push(ExternalMount {
                    destination: format!("{destination}/{name}"),
                    source: dir.clone(),
                });
            }
            if let Some(dir) = &cgroups.unified {
                out.push(ExternalMount {
                    destination: format!("{destination}/unified"),
                    source: dir.clone(),
                });
            }
        } else if m.typ().as_deref() == Some("cgroup") && !cgroupns {
            if let Some(dir) = &cgroups.unified {
                out.push(ExternalMount {
                    destination,
                    source: dir.clone(),
                });
            }
        }
    }
    for d in &c.devices {
        out.push(ExternalMount {
            destination: d.to_string_lossy().into_owned(),
            source: d.clone(),
        });
    }
    out
}

/// The masked paths that are files in the running container (`root`: its
/// root as seen from the host, /proc/<pid>/root), by where they lie: each
/// has the null device bound over it, an external mount. Masked
/// directories get a tmpfs, which CRIU restores itself.
pub(crate) fn masked_files(c: &Described, root: &Path) -> Vec<String> {
    c.masked_paths
        .iter()
        .map(|p| in_root(root, p))
        .filter(|p| {
            let inside = root.join(p.trim_start_matches('/'));
            std::fs::metadata(inside).is_ok_and(|m| !m.is_dir())
        })
        .collect()
}

/// Whether the config masks any path (then /dev/null is an external mount
/// at restore).
pub(crate) fn masks_paths(c: &Described) -> bool {
    !c.masked_paths.is_empty()
}

/// The config's namespaces: type and the path it joins, if any.
fn namespaces(c: &Described) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
    c.namespaces
        .iter()
        .map(|n| (n.typ(), n.path().clone()))
        .collect()
}

/// CRIU's (and runc's) name of a namespace type.
fn ns_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Time => "time",
    }
}

/// The key an external namespace is dumped under and found again by at
/// restore (runc's `extRoot<Type>NS`, so images move between runc and keel).
fn ns_key(t: LinuxNamespaceType) -> String {
    let name = ns_name(t);
    let mut c = name.chars();
    let first = c.next().map(|f| f.to_ascii_uppercase()).unwrap_or_default();
    format!("extRoot{first}{}NS", c.as_str())
}

/// `--external` entries for the network and pid namespaces the config
/// joins: CRIU leaves them out of the images and expects them at restore.
pub(crate) fn external_namespaces(c: &Described) -> Result<Vec<String>> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for (t, path) in namespaces(c) {
        let (LinuxNamespaceType::Network | LinuxNamespaceType::Pid, Some(path)) = (t, path) else {
            continue;
        };
        let ino = std::fs::metadata(&path)
            .ctx(|| format!("linux.namespaces: stat {}", path.display()))?
            .ino();
        out.push(format!("{}[{ino}]:{}", ns_name(t), ns_key(t)));
    }
    Ok(out)
}

/// How a restore gets the namespaces the config joins: the network and pid
/// ones as fds CRIU inherits (key, open fd), the others joined by path.
#[derive(Debug, Default)]
pub(crate) struct RestoreNamespaces {
    pub inherit: Vec<(String, OwnedFd)>,
    pub join: Vec<(String, String)>,
}

pub(crate) fn restore_namespaces(c: &Described) -> Result<RestoreNamespaces> {
    let mut out = RestoreNamespaces::default();
    for (t, path) in namespaces(c) {
        let Some(path) = path else { continue };
        match t {
            LinuxNamespaceType::Network | LinuxNamespaceType::Pid => {
                let fd = std::fs::File::open(&path).map_err(|e| {
                    Error::io(
                        format!(
                            "linux.namespaces: the {} namespace to restore into, {}",
                            ns_name(t),
                            path.display()
                        ),
                        e,
                    )
                })?;
                out.inherit.push((ns_key(t), fd.into()));
            }
            // As runc: CRIU cannot put a restored tree into an existing
            // cgroup namespace.
            LinuxNamespaceType::Cgroup => {
                return Err(Error::invalid(
                    "linux.namespaces",
                    "cannot restore into an existing cgroup namespace (CRIU cannot join one)",
                ))
            }
            _ => out
                .join
                .push((ns_name(t).into(), path.to_string_lossy().into_owned())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_keys_are_runcs() {
        assert_eq!(ns_key(LinuxNamespaceType::Network), "extRootNetNS");
        assert_eq!(ns_key(LinuxNamespaceType::Pid), "extRootPidNS");
    }
}
