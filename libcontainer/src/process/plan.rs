//! Everything the init will do, computed and checked in the parent from the
//! validated config. The init is forked, not re-executed: it inherits this
//! value and never re-reads the bundle.

use super::{mempolicy, tuning};
use crate::cgroups::CgroupPaths;
use crate::console::Size;
use crate::error::{Error, Result};
use crate::namespaces::Namespaces;
use crate::rootfs::{self, Device, Mount, RootfsPlan};
use crate::security::capabilities::Capabilities;
use crate::security::rlimits::{self, Rlimit};
use crate::security::seccomp::Filter;
use crate::spec::Bundle;
use nix::mount::MsFlags;
use nix::sys::stat::SFlag;
use oci_spec::runtime::{
    LinuxDeviceType, LinuxIdMapping, LinuxMemoryPolicy, LinuxNamespaceType, LinuxPersonality,
    LinuxSeccomp, Process,
};
use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Choices of the caller (CLI flags) rather than of the config.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// Extra fds (from 3 on) the program inherits.
    pub preserve_fds: u32,
    /// Join no new session keyring (`--no-new-keyring`).
    pub no_new_keyring: bool,
}

#[derive(Debug)]
pub struct InitPlan {
    pub ns: Namespaces,
    /// uid_map / gid_map contents, written by the parent.
    pub uid_map: String,
    pub gid_map: String,
    /// /proc/self/timens_offsets contents.
    pub time_offsets: String,
    pub oom_score_adj: Option<i32>,
    pub rootfs: RootfsPlan,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    /// (path under /proc/sys, value)
    pub sysctl: Vec<(PathBuf, String)>,
    /// The container's process.
    pub process: ProcessPlan,
    /// Name of the new session keyring (the container id), unless
    /// `--no-new-keyring`: keys must not be shared between containers.
    pub session_keyring: Option<CString>,
    /// The config's hooks, with what their state JSON needs.
    pub hooks: Hooks,
    /// `linux.netDevices`, moved in by the parent once the init's network
    /// namespace is there.
    pub net_devices: Vec<crate::netdev::NetDevice>,
    /// `linux.intelRdt`: the resctrl group the parent puts the init in.
    pub intel_rdt: Option<crate::intelrdt::Plan>,
}

/// Hooks, and the parts of the container state they are given.
#[derive(Debug, Default)]
pub struct Hooks {
    pub id: String,
    pub bundle: PathBuf,
    pub annotations: std::collections::HashMap<String, String>,
    /// prestart + createRuntime: run by the runtime, before pivot_root.
    pub runtime: Vec<(&'static str, Vec<oci_spec::runtime::Hook>)>,
    /// createContainer: run by the init in the container's namespaces,
    /// before pivot_root.
    pub create_container: Vec<oci_spec::runtime::Hook>,
    /// startContainer: run by the init at start, before the program.
    pub start_container: Vec<oci_spec::runtime::Hook>,
}

impl Hooks {
    pub fn state(&self, status: crate::Status, pid: i32) -> crate::hooks::HookState<'_> {
        crate::hooks::HookState {
            oci_version: crate::SPEC_VERSION,
            id: &self.id,
            status,
            pid,
            bundle: &self.bundle,
            annotations: &self.annotations,
        }
    }
}

/// A container process (the init's, or one `exec` adds), ready to apply.
#[derive(Debug)]
pub struct ProcessPlan {
    pub rlimits: Vec<Rlimit>,
    pub caps: Option<Capabilities>,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
    pub no_new_privs: bool,
    pub cwd: PathBuf,
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    /// fds 3..3+N stay open for the program (`--preserve-fds`).
    pub preserve_fds: u32,
    /// `process.terminal`: where the pty master goes, and its size.
    pub terminal: Option<Terminal>,
    /// The container's `linux.seccomp`, compiled in the parent so the
    /// process only installs it. It binds `exec`'d processes too, as in
    /// runc: a filter only on the init would leave `exec` unconfined.
    pub seccomp: Option<Filter>,
    /// ioprio_set(2) value of `process.ioPriority`.
    pub io_priority: Option<i32>,
    /// `process.scheduler`, for sched_setattr(2).
    pub scheduler: Option<tuning::SchedAttr>,
    /// The container's `linux.personality` (exec'd processes too, as runc).
    pub personality: Option<libc::c_ulong>,
    /// The container's `linux.memoryPolicy` (exec'd processes too, as runc).
    pub memory_policy: Option<mempolicy::Policy>,
    /// `process.execCPUAffinity`: for exec'd processes only (the spec
    /// excludes the init).
    pub affinity: Option<tuning::Affinity>,
    /// AppArmor profile and SELinux label for the program.
    pub labels: crate::security::lsm::Labels,
    /// stdin, stdout, stderr for the program instead of the caller's own.
    pub stdio: Option<[OwnedFd; 3]>,
    /// Leave the owner of non-terminal stdio alone (see
    /// [`crate::ContainerBuilder::keep_stdio_owner`]).
    pub keep_stdio_owner: bool,
    /// What runc would warn about while starting this process.
    pub warnings: Vec<String>,
    /// The embedder's code to run instead of execve.
    pub executor: Option<Box<dyn crate::Executor>>,
}

/// What of the container's `linux` section applies to every process of
/// it, the init's and `exec`'s alike (runc keeps these in its saved config).
#[derive(Debug, Clone, Copy, Default)]
pub struct ContainerWide<'a> {
    pub seccomp: Option<&'a LinuxSeccomp>,
    pub personality: Option<&'a LinuxPersonality>,
    pub memory_policy: Option<&'a LinuxMemoryPolicy>,
}

#[derive(Debug)]
pub struct Terminal {
    pub socket: OwnedFd,
    pub size: Option<Size>,
}

fn cstrings(field: &str, v: &[String]) -> Result<Vec<CString>> {
    v.iter()
        .enumerate()
        .map(|(i, s)| {
            CString::new(s.as_bytes())
                .map_err(|_| Error::invalid(format!("{field}[{i}]"), "contains a NUL byte"))
        })
        .collect()
}

/// One entry per variable, its last value, at its last place (runc's
/// `prepareEnv`): `exec --env` overrides the config's variables this way.
fn last_of_each(env: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<String> = env
        .iter()
        .rev()
        .filter(|kv| seen.insert(kv.split_once('=').map_or(kv.as_str(), |(k, _)| k)))
        .cloned()
        .collect();
    out.reverse();
    out
}

/// The id maps of an idmapped mount (runtime-spec and runc 1.2 rules): the
/// mount's own `uidMappings`/`gidMappings`, or with only `idmap`/`ridmap`
/// the container's; bind mounts only.
fn idmap_of(
    i: usize,
    m: &oci_spec::runtime::Mount,
    options: &rootfs::options::MountOptions,
    is_bind: bool,
    container: &dyn Fn() -> Result<(String, String)>,
) -> Result<Option<rootfs::idmap::IdMaps>> {
    let (uids, gids) = (m.uid_mappings(), m.gid_mappings());
    let own = uids.as_ref().is_some_and(|v| !v.is_empty())
        || gids.as_ref().is_some_and(|v| !v.is_empty());
    if !options.idmap && !own {
        return Ok(None);
    }
    if !is_bind {
        return Err(Error::invalid(
            format!("mounts[{i}]"),
            "idmapped mounts are only supported for bind mounts",
        ));
    }
    let (uid_map, gid_map) = if own {
        (id_map(uids), id_map(gids))
    } else {
        container()?
    };
    if uid_map.is_empty() || gid_map.is_empty() {
        return Err(Error::invalid(
            format!("mounts[{i}]"),
            "an idmapped mount needs both uidMappings and gidMappings (its own, or the \
             container's user namespace's)",
        ));
    }
    Ok(Some(rootfs::idmap::IdMaps {
        uid_map,
        gid_map,
        recursive: options.idmap_recursive,
    }))
}

/// Two uid_map/gid_map texts name the same ranges (the kernel pads its
/// columns; the order of ranges does not matter).
fn same_maps(a: &str, b: &str) -> bool {
    fn ranges(t: &str) -> Vec<Vec<&str>> {
        let mut v: Vec<Vec<&str>> = t
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| !f.is_empty())
            .collect();
        v.sort();
        v
    }
    ranges(a) == ranges(b)
}

fn id_map(maps: &Option<Vec<LinuxIdMapping>>) -> String {
    maps.iter()
        .flatten()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

fn propagation(field: &str, v: &str) -> Result<MsFlags> {
    Ok(match v {
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        other => {
            return Err(Error::invalid(
                field,
                format!("unknown propagation {other:?}"),
            ))
        }
    })
}

pub(crate) fn hooks_of(id: &str, bundle: &Bundle) -> Hooks {
    let h = bundle.spec.hooks().as_ref();
    let list = |l: Option<&Option<Vec<oci_spec::runtime::Hook>>>| {
        l.and_then(|l| l.clone()).unwrap_or_default()
    };
    let runtime = vec![
        ("prestart", list(h.map(|h| h.prestart()))),
        ("createRuntime", list(h.map(|h| h.create_runtime()))),
    ]
    .into_iter()
    .filter(|(_, l)| !l.is_empty())
    .collect();
    Hooks {
        id: id.to_string(),
        bundle: bundle.path.clone(),
        annotations: bundle.spec.annotations().clone().unwrap_or_default(),
        runtime,
        create_container: list(h.map(|h| h.create_container())),
        start_container: list(h.map(|h| h.start_container())),
    }
}

impl InitPlan {
    pub fn new(
        id: &str,
        bundle: &Bundle,
        cgroups: &CgroupPaths,
        opts: &Options,
        console: Option<OwnedFd>,
    ) -> Result<InitPlan> {
        let spec = &bundle.spec;
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| Error::invalid("process", "missing"))?;
        let linux = spec
            .linux()
            .as_ref()
            .ok_or_else(|| Error::invalid("linux", "missing"))?;
        let ns = Namespaces::from_spec(spec)?;
        // Also when keel itself runs in a user namespace (rootless podman
        // runs it as root of one): mknod is denied there too.
        let in_userns = ns.has_new(LinuxNamespaceType::User)
            || ns.joined_user().is_some()
            || crate::rootless::in_user_namespace();
        // The maps of the container's user namespace, for idmapped mounts
        // without their own: the config's, or those of the namespace it
        // joins (runc 1.2+ takes them from there).
        let container_maps = || -> Result<(String, String)> {
            Ok(ns
                .joined_user_maps()?
                .unwrap_or_else(|| (id_map(linux.uid_mappings()), id_map(linux.gid_mappings()))))
        };
        let config_maps = (id_map(linux.uid_mappings()), id_map(linux.gid_mappings()));
        if ns.joined_user().is_some() && !(config_maps.0.is_empty() && config_maps.1.is_empty()) {
            // containerd and CRI-O pass both; runc (specconv
            // setupUserNamespace) accepts them only if they are the
            // namespace's own.
            let joined = container_maps()?;
            if !same_maps(&joined.0, &config_maps.0) || !same_maps(&joined.1, &config_maps.1) {
                return Err(Error::invalid(
                    "linux.uidMappings",
                    "user namespaces enabled, but both namespace path and non-matching \
                     mapping specified -- you may only provide one",
                ));
            }
        }

        let mut mounts = Vec::new();
        let mut binds_dev = false;
        for (i, m) in spec.mounts().iter().flatten().enumerate() {
            let options = rootfs::options::parse(m.options().as_deref().unwrap_or(&[]));
            let typ = m.typ().clone().unwrap_or_else(|| "bind".into());
            let destination = rootfs::path::strip_root(&bundle.rootfs, m.destination());
            let is_bind = options.flags.contains(MsFlags::MS_BIND) || typ == "bind";
            if is_bind && m.source().is_none() {
                return Err(Error::invalid(
                    format!("mounts[{i}].source"),
                    "a bind mount needs a source",
                ));
            }
            // A relative bind source is relative to the bundle, as in runc.
            let source = m.source().as_ref().map(|s| {
                if is_bind {
                    bundle.path.join(s)
                } else {
                    s.clone()
                }
            });
            if is_bind && destination == Path::new("/dev") {
                binds_dev = true;
            }
            let rbind = options.flags.contains(MsFlags::MS_REC);
            let mut idmap_later = None;
            let tree = match idmap_of(i, m, &options, is_bind, &container_maps)? {
                // Not there yet, or in the rootfs, where an earlier mount
                // of the config may make or cover it: the init asks for the
                // tree when it gets there, resolved in its mount namespace
                // (runc 1.2+ asks for every idmapped source then; made here,
                // the others cost no round trip).
                Some(maps)
                    if !source
                        .as_deref()
                        .is_some_and(|s| s.exists() && !s.starts_with(&bundle.rootfs)) =>
                {
                    idmap_later = Some(maps);
                    None
                }
                Some(maps) => {
                    let src = source.as_deref().unwrap_or(Path::new(""));
                    let tree = rootfs::idmap::prepare(src, rbind, &maps).map_err(|e| {
                        e.within(rootfs::mount_failed(source.as_deref(), &destination))
                    })?;
                    Some((tree, true))
                }
                // As runc (mount source fds): in a new user namespace the
                // init may not reach a source only host root can, so the
                // runtime clones it here, for the init to use if it must.
                // One that is not there yet (an earlier mount of the config
                // makes it) is left to the init's lookup.
                None if is_bind && ns.has_new(LinuxNamespaceType::User) => source
                    .as_deref()
                    .and_then(|src| rootfs::idmap::clone_tree(src, rbind).ok())
                    .map(|tree| (tree, false)),
                None => None,
            }
            .map(|(fd, idmapped)| rootfs::Tree {
                fd: std::sync::Arc::new(fd),
                idmapped,
            });
            mounts.push(Mount {
                destination,
                typ,
                source,
                options,
                tree,
                idmap_later,
            });
        }

        let mut devices = rootfs::devices_defaults();
        for (i, d) in linux.devices().iter().flatten().enumerate() {
            let kind = match d.typ() {
                LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
                LinuxDeviceType::B => SFlag::S_IFBLK,
                LinuxDeviceType::P => SFlag::S_IFIFO,
                LinuxDeviceType::A => {
                    return Err(Error::invalid(
                        format!("linux.devices[{i}].type"),
                        "\"a\" is only valid in resources.devices",
                    ))
                }
            };
            let path = Path::new("/").join(d.path());
            if !path.starts_with("/dev") {
                return Err(Error::invalid(
                    format!("linux.devices[{i}].path"),
                    format!("{} is not under /dev", path.display()),
                ));
            }
            devices.retain(|x| x.path != path);
            devices.push(Device {
                path,
                kind,
                major: d.major() as u64,
                minor: d.minor() as u64,
                mode: d.file_mode().unwrap_or(0o666),
                uid: d.uid().unwrap_or(0),
                gid: d.gid().unwrap_or(0),
            });
        }

        let root_propagation = match linux.rootfs_propagation().as_deref() {
            None | Some("") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
            // An unbindable `/` could not give the rootfs bind (EINVAL, runc
            // 1.1 too): private until the new root has it, after the pivot.
            Some(p) => match propagation("linux.rootfsPropagation", p)? {
                f if f.contains(MsFlags::MS_UNBINDABLE) => {
                    (f - MsFlags::MS_UNBINDABLE) | MsFlags::MS_PRIVATE
                }
                f => f,
            },
        };
        let final_propagation = match linux.rootfs_propagation().as_deref() {
            None | Some("") => None,
            Some(p) => Some(propagation("linux.rootfsPropagation", p)?),
        };
        let rootfs = RootfsPlan {
            rootfs: bundle.rootfs.clone(),
            mounts,
            setup_dev: !binds_dev,
            devices,
            masked: linux
                .masked_paths()
                .iter()
                .flatten()
                .map(PathBuf::from)
                .collect(),
            readonly: linux
                .readonly_paths()
                .iter()
                .flatten()
                .map(PathBuf::from)
                .collect(),
            root_propagation,
            final_propagation,
            readonly_root: spec
                .root()
                .as_ref()
                .and_then(|r| r.readonly())
                .unwrap_or(false),
            no_pivot: opts.no_pivot,
            own_mount_ns: ns.has_mount_ns(),
            in_userns,
            cgroups: cgroups.clone(),
            cgroupns: ns.has_new(LinuxNamespaceType::Cgroup),
            // Ignored (with a warning at validation) without SELinux.
            mount_label: linux
                .mount_label()
                .clone()
                .filter(|l| !l.is_empty() && crate::security::lsm::selinux_enabled()),
        };

        let time_offsets = linux
            .time_offsets()
            .iter()
            .flatten()
            .map(|(clock, o)| {
                format!(
                    "{clock} {} {}\n",
                    o.secs().unwrap_or(0),
                    o.nanosecs().unwrap_or(0)
                )
            })
            .collect();
        let sysctl = linux
            .sysctl()
            .iter()
            .flatten()
            .map(|(k, v)| {
                (
                    PathBuf::from("/proc/sys").join(k.replace('.', "/")),
                    v.clone(),
                )
            })
            .collect();
        Ok(InitPlan {
            process: ProcessPlan::new(
                process,
                console,
                opts.preserve_fds,
                ContainerWide {
                    seccomp: linux.seccomp().as_ref(),
                    personality: linux.personality().as_ref(),
                    memory_policy: linux.memory_policy().as_ref(),
                },
            )?,
            uid_map: id_map(linux.uid_mappings()),
            gid_map: id_map(linux.gid_mappings()),
            time_offsets,
            oom_score_adj: process.oom_score_adj(),
            rootfs,
            hostname: spec.hostname().clone(),
            domainname: spec.domainname().clone(),
            sysctl,
            hooks: hooks_of(id, bundle),
            session_keyring: if opts.no_new_keyring {
                None
            } else {
                Some(CString::new(id).map_err(|_| Error::invalid("id", "contains a NUL byte"))?)
            },
            ns,
            net_devices: crate::netdev::from_spec(linux, crate::rootless::unprivileged())?,
            intel_rdt: linux
                .intel_rdt()
                .as_ref()
                .map(|r| crate::intelrdt::plan(r, id, crate::intelrdt::Resctrl::find()))
                .transpose()?,
        })
    }
}

impl ProcessPlan {
    /// From the config's (or `exec`'s) `process` and what of the
    /// container's `linux` binds all its processes; `console` receives the
    /// pty master when the process asks for a terminal.
    pub fn new(
        process: &Process,
        console: Option<OwnedFd>,
        preserve_fds: u32,
        linux: ContainerWide,
    ) -> Result<ProcessPlan> {
        let caps = process
            .capabilities()
            .as_ref()
            .map(Capabilities::from_spec)
            .transpose()?;
        let terminal = match (process.terminal().unwrap_or(false), console) {
            (true, Some(socket)) => Some(Terminal {
                socket,
                size: process.console_size().map(|b| Size {
                    rows: b.height() as u16,
                    cols: b.width() as u16,
                }),
            }),
            (true, None) => {
                return Err(Error::invalid(
                    "process.terminal",
                    "cannot allocate a tty without a console socket (--console-socket)",
                ))
            }
            (false, _) => None,
        };
        let user = process.user();
        let args = cstrings("process.args", process.args().as_deref().unwrap_or(&[]))?;
        let env = cstrings(
            "process.env",
            &last_of_each(process.env().as_deref().unwrap_or(&[])),
        )?;
        Ok(ProcessPlan {
            rlimits: rlimits::from_spec(process.rlimits().as_deref().unwrap_or(&[]))?,
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
            umask: user.umask(),
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            cwd: process.cwd().clone(),
            args,
            env,
            preserve_fds,
            terminal,
            seccomp: linux.seccomp.map(Filter::from_spec).transpose()?,
            io_priority: process
                .io_priority()
                .as_ref()
                .map(tuning::io_priority)
                .transpose()?,
            scheduler: process
                .scheduler()
                .as_ref()
                .map(tuning::sched_attr)
                .transpose()?,
            personality: linux.personality.map(tuning::personality).transpose()?,
            memory_policy: linux.memory_policy.map(mempolicy::from_spec).transpose()?,
            affinity: process
                .exec_cpu_affinity()
                .as_ref()
                .map(tuning::affinity)
                .transpose()?,
            labels: crate::security::lsm::Labels::of(process),
            stdio: None,
            keep_stdio_owner: false,
            executor: None,
            warnings: caps
                .as_ref()
                .map(Capabilities::ambient_warnings)
                .unwrap_or_default(),
            caps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keeps_the_last_value_of_each_variable() {
        let env: Vec<String> = ["PATH=/bin", "A=1", "HOME=", "B=2", "A=3", "ODD"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            last_of_each(&env),
            ["PATH=/bin", "HOME=", "B=2", "A=3", "ODD"]
        );
    }

    #[test]
    fn maps_compare_as_ranges() {
        let kernel = "         0     100000      65536\n      70000     300000         10\n";
        assert!(same_maps(kernel, "70000 300000 10\n0 100000 65536\n"));
        assert!(!same_maps(kernel, "0 100000 65536\n"));
        assert!(!same_maps(kernel, "0 100001 65536\n70000 300000 10\n"));
    }
}
