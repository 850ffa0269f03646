//! Everything the init will do, computed and checked in the parent from the
//! validated config. The init is forked, not re-executed: it inherits this
//! value and never re-reads the bundle.

use super::{mempolicy, tuning};
use crate::cgroups::CgroupPaths;
use crate::console::Size;
use crate::error::{Error, Result};
use crate::namespaces::Namespaces;
use crate::rootfs::idmap::{IdMaps, Idmap};
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
    /// The WebAssembly executor that runs `args[0]` (a module) in place of
    /// execve of it (see [`crate::wasm`]).
    pub interpreter: Option<crate::wasm::Interpreter>,
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

/// The id maps an idmapped mount asks for (runtime-spec and runc 1.2
/// rules): the mount's own `uidMappings`/`gidMappings`, or with only
/// `idmap`/`ridmap` the container's; bind mounts only.
fn idmap_of(
    i: usize,
    m: &oci_spec::runtime::Mount,
    options: &rootfs::options::MountOptions,
    is_bind: bool,
) -> Result<Option<Idmap>> {
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
    let recursive = options.idmap_recursive;
    if !own {
        return Ok(Some(Idmap::Container { recursive }));
    }
    let maps = (id_map(uids), id_map(gids));
    Ok(Some(Idmap::Own(complete(i, maps, recursive)?)))
}

/// Both maps of an idmapped mount, or the error that one is missing.
fn complete(i: usize, (uid_map, gid_map): (String, String), recursive: bool) -> Result<IdMaps> {
    if uid_map.is_empty() || gid_map.is_empty() {
        return Err(Error::invalid(
            format!("mounts[{i}]"),
            "an idmapped mount needs both uidMappings and gidMappings (its own, or the \
             container's user namespace's)",
        ));
    }
    Ok(IdMaps {
        uid_map,
        gid_map,
        recursive,
    })
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

/// What the translation of a config needs to know of the host it runs on.
/// [`ThisHost`] reads it when asked (most configs need none of it); tests
/// make it up.
pub trait Host {
    /// keel runs in a user namespace (rootless podman runs it as root of one).
    fn in_user_namespace(&self) -> bool;
    /// keel runs without privilege over the host (see `rootless`).
    fn unprivileged(&self) -> bool;
    /// SELinux is enabled (a `linux.mountLabel` applies).
    fn selinux(&self) -> bool;
    /// The resctrl mount, for `linux.intelRdt`.
    fn resctrl(&self) -> Option<crate::intelrdt::Resctrl>;
}

/// The host keel runs on.
pub struct ThisHost;

impl Host for ThisHost {
    fn in_user_namespace(&self) -> bool {
        crate::rootless::in_user_namespace()
    }
    fn unprivileged(&self) -> bool {
        crate::rootless::unprivileged()
    }
    fn selinux(&self) -> bool {
        crate::security::lsm::selinux_enabled()
    }
    fn resctrl(&self) -> Option<crate::intelrdt::Resctrl> {
        crate::intelrdt::Resctrl::find()
    }
}

impl InitPlan {
    /// The plan of container `id`, with what it needs of the host acquired:
    /// [`InitPlan::translate`], then [`InitPlan::acquire`].
    pub fn new(
        id: &str,
        bundle: &Bundle,
        cgroups: &CgroupPaths,
        opts: &Options,
        console: Option<OwnedFd>,
    ) -> Result<InitPlan> {
        let mut plan = InitPlan::translate(id, bundle, cgroups, opts, console, &ThisHost)?;
        plan.acquire()?;
        Ok(plan)
    }

    /// The spec → plan translation, a pure function of its arguments (the
    /// host's facts come from `host`): every check of the config but the
    /// joined namespaces and the sources of binds, which
    /// [`InitPlan::acquire`] opens.
    pub fn translate(
        id: &str,
        bundle: &Bundle,
        cgroups: &CgroupPaths,
        opts: &Options,
        console: Option<OwnedFd>,
        host: &dyn Host,
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
        let ns = Namespaces::from_spec(spec);
        // Also when keel itself runs in a user namespace (rootless podman
        // runs it as root of one): mknod is denied there too.
        let in_userns = ns.has_new(LinuxNamespaceType::User)
            || ns.joined_user().is_some()
            || host.in_user_namespace();

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
            mounts.push(Mount {
                idmap: idmap_of(i, m, &options, is_bind)?,
                destination,
                typ,
                source,
                options,
                tree: None,
                idmap_later: None,
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
                .filter(|l| !l.is_empty() && host.selinux()),
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
            net_devices: crate::netdev::from_spec(linux, host.unprivileged())?,
            intel_rdt: linux
                .intel_rdt()
                .as_ref()
                .map(|r| crate::intelrdt::plan(r, id, host.resctrl()))
                .transpose()?,
        })
    }

    /// What the plan needs of the host, before the fork: the namespaces
    /// to join, opened (and the maps of a joined user namespace checked
    /// against the config's, as runc's specconv does), and the detached
    /// trees of the bind sources (idmapped, or for a new user namespace).
    pub fn acquire(&mut self) -> Result<()> {
        self.ns.open()?;
        let config_maps = (self.uid_map.clone(), self.gid_map.clone());
        let configured = !(config_maps.0.is_empty() && config_maps.1.is_empty());
        let mounts = &mut self.rootfs.mounts;
        let for_mounts = mounts
            .iter()
            .any(|m| matches!(m.idmap, Some(Idmap::Container { .. })));
        // The maps of the container's user namespace, for idmapped mounts
        // without their own: the config's, or those of the namespace it
        // joins (runc 1.2+ takes them from there; read once, by a fork).
        let container_maps = match self.ns.joined_user() {
            Some(_) if configured || for_mounts => {
                let joined = self.ns.joined_user_maps()?.unwrap_or_default();
                // containerd and CRI-O pass both; runc (specconv
                // setupUserNamespace) accepts them only if they are the
                // namespace's own.
                if configured
                    && (!same_maps(&joined.0, &config_maps.0)
                        || !same_maps(&joined.1, &config_maps.1))
                {
                    return Err(Error::invalid(
                        "linux.uidMappings",
                        "user namespaces enabled, but both namespace path and non-matching \
                         mapping specified -- you may only provide one",
                    ));
                }
                joined
            }
            _ => config_maps,
        };
        let new_user = self.ns.has_new(LinuxNamespaceType::User);
        let rootfs = &self.rootfs.rootfs;
        for (i, m) in mounts.iter_mut().enumerate() {
            let maps = match &m.idmap {
                Some(Idmap::Own(maps)) => Some(maps.clone()),
                Some(Idmap::Container { recursive }) => {
                    Some(complete(i, container_maps.clone(), *recursive)?)
                }
                None => None,
            };
            let rbind = m.options.flags.contains(MsFlags::MS_REC);
            let source = m.source.as_deref();
            let tree = match maps {
                // Not there yet, or in the rootfs, where an earlier mount
                // of the config may make or cover it: the init asks for the
                // tree when it gets there, resolved in its mount namespace
                // (runc 1.2+ asks for every idmapped source then; made here,
                // the others cost no round trip).
                Some(maps) if !source.is_some_and(|s| s.exists() && !s.starts_with(rootfs)) => {
                    m.idmap_later = Some(maps);
                    None
                }
                Some(maps) => {
                    let src = source.unwrap_or(Path::new(""));
                    let tree = rootfs::idmap::prepare(src, rbind, &maps)
                        .map_err(|e| e.within(rootfs::mount_failed(source, &m.destination)))?;
                    Some((tree, true))
                }
                // As runc (mount source fds): in a new user namespace the
                // init may not reach a source only host root can, so the
                // runtime clones it here, for the init to use if it must.
                // One that is not there yet (an earlier mount of the config
                // makes it) is left to the init's lookup.
                None if m.is_bind() && new_user => source
                    .and_then(|src| rootfs::idmap::clone_tree(src, rbind).ok())
                    .map(|tree| (tree, false)),
                None => None,
            };
            m.tree = tree.map(|(fd, idmapped)| rootfs::Tree {
                fd: std::sync::Arc::new(fd),
                idmapped,
            });
        }
        Ok(())
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
            interpreter: None,
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

    /// A host made up for the translation.
    #[derive(Default)]
    struct Fake {
        in_userns: bool,
        selinux: bool,
    }

    impl Host for Fake {
        fn in_user_namespace(&self) -> bool {
            self.in_userns
        }
        fn unprivileged(&self) -> bool {
            false
        }
        fn selinux(&self) -> bool {
            self.selinux
        }
        fn resctrl(&self) -> Option<crate::intelrdt::Resctrl> {
            None
        }
    }

    /// A bundle at /b (rootfs /b/rootfs) of `config` over a minimal one.
    fn bundle(config: serde_json::Value) -> Bundle {
        let mut base = serde_json::json!({
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {}
        });
        for (k, v) in config.as_object().into_iter().flatten() {
            base[k] = v.clone();
        }
        Bundle {
            path: PathBuf::from("/b"),
            spec: serde_json::from_value(base).expect("spec"),
            rootfs: PathBuf::from("/b/rootfs"),
            warnings: Vec::new(),
        }
    }

    fn translate(config: serde_json::Value, host: &Fake) -> Result<InitPlan> {
        let opts = Options::default();
        InitPlan::translate(
            "c1",
            &bundle(config),
            &CgroupPaths::default(),
            &opts,
            None,
            host,
        )
    }

    fn plan(config: serde_json::Value) -> InitPlan {
        translate(config, &Fake::default()).expect("translate")
    }

    fn error(config: serde_json::Value) -> String {
        match translate(config, &Fake::default()) {
            Ok(_) => panic!("translated"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn mounts_translate_without_touching_the_host() {
        let p = plan(serde_json::json!({"mounts": [
            {"destination": "/data", "type": "bind", "source": "vol", "options": ["rbind", "ro"]},
            {"destination": "/b/rootfs/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "size=64k"]},
            {"destination": "/own", "source": "/nonexistent", "options": ["bind"],
             "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 10}],
             "gidMappings": [{"containerID": 0, "hostID": 2000, "size": 10}]},
            {"destination": "/ctr", "source": "/nonexistent", "options": ["rbind", "ridmap"]},
            {"destination": "/dev", "source": "/dev", "options": ["rbind"]}
        ]}));
        let m = &p.rootfs.mounts;
        // A relative bind source is the bundle's; a destination under the
        // rootfs path is taken as inside the container.
        assert_eq!(m[0].source.as_deref(), Some(Path::new("/b/vol")));
        assert!(m[0]
            .options
            .flags
            .contains(MsFlags::MS_RDONLY | MsFlags::MS_REC));
        assert_eq!(
            (m[1].typ.as_str(), m[1].destination.as_path()),
            ("tmpfs", Path::new("/tmp"))
        );
        assert_eq!(m[1].options.data, "size=64k");
        assert_eq!(
            m[2].idmap,
            Some(Idmap::Own(IdMaps {
                uid_map: "0 1000 10\n".into(),
                gid_map: "0 2000 10\n".into(),
                recursive: false
            }))
        );
        assert_eq!(m[3].idmap, Some(Idmap::Container { recursive: true }));
        // Nothing acquired yet, and /dev is the config's own bind.
        assert!(m
            .iter()
            .all(|m| m.tree.is_none() && m.idmap_later.is_none()));
        assert!(!p.rootfs.setup_dev);
        assert!(p.ns.joined.is_empty());
    }

    #[test]
    fn bad_mounts_name_their_field() {
        let e = error(serde_json::json!({"mounts": [
            {"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["idmap"]}]}));
        assert_eq!(
            e,
            "mounts[0]: idmapped mounts are only supported for bind mounts"
        );
        let e = error(serde_json::json!({"mounts": [{"destination": "/x", "type": "bind"}]}));
        assert_eq!(e, "mounts[0].source: a bind mount needs a source");
        let e = error(
            serde_json::json!({"mounts": [{"destination": "/x", "source": "/s",
            "options": ["bind"], "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}]}),
        );
        assert!(
            e.starts_with("mounts[0]: an idmapped mount needs both"),
            "{e}"
        );
    }

    #[test]
    fn devices_and_propagation() {
        let p = plan(serde_json::json!({"linux": {
            "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229},
                        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3,
                         "fileMode": 438, "uid": 5}],
            "rootfsPropagation": "runbindable"
        }}));
        let d = &p.rootfs.devices;
        let fuse = d
            .iter()
            .find(|d| d.path == Path::new("/dev/fuse"))
            .expect("fuse");
        assert_eq!((fuse.major, fuse.minor, fuse.mode), (10, 229, 0o666));
        // The config's replaces the default of the same path.
        let null: Vec<_> = d
            .iter()
            .filter(|d| d.path == Path::new("/dev/null"))
            .collect();
        assert_eq!((null.len(), null[0].uid), (1, 5));
        // An unbindable / could not give the rootfs bind: private until after the pivot.
        assert_eq!(
            p.rootfs.root_propagation,
            MsFlags::MS_PRIVATE | MsFlags::MS_REC
        );
        assert_eq!(
            p.rootfs.final_propagation,
            Some(MsFlags::MS_UNBINDABLE | MsFlags::MS_REC)
        );
        assert_eq!(
            plan(serde_json::json!({})).rootfs.root_propagation,
            MsFlags::MS_SLAVE | MsFlags::MS_REC
        );
        let e = error(serde_json::json!({"linux": {"devices": [
            {"path": "/dev/x", "type": "a", "major": 1, "minor": 1}]}}));
        assert_eq!(
            e,
            "linux.devices[0].type: \"a\" is only valid in resources.devices"
        );
        let e = error(serde_json::json!({"linux": {"devices": [
            {"path": "/etc/x", "type": "c", "major": 1, "minor": 1}]}}));
        assert_eq!(e, "linux.devices[0].path: /etc/x is not under /dev");
        let e = error(serde_json::json!({"linux": {"rootfsPropagation": "sideways"}}));
        assert_eq!(
            e,
            "linux.rootfsPropagation: unknown propagation \"sideways\""
        );
    }

    #[test]
    fn the_rest_of_the_config() {
        let p = plan(serde_json::json!({
            "hostname": "h1",
            "hooks": {"prestart": [{"path": "/p"}], "createContainer": [{"path": "/c"}]},
            "annotations": {"a": "b"},
            "linux": {
                "namespaces": [{"type": "user"}, {"type": "mount"},
                               {"type": "network", "path": "/nonexistent/ns/net"}],
                "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
                "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
                "sysctl": {"net.ipv4.ip_forward": "1"},
                "timeOffsets": {"monotonic": {"secs": 10, "nanosecs": 5}},
                "mountLabel": "system_u:object_r:container_file_t:s0"
            }
        }));
        assert_eq!(p.uid_map, "0 100000 65536\n");
        assert_eq!(p.time_offsets, "monotonic 10 5\n");
        assert_eq!(
            p.sysctl,
            [(
                PathBuf::from("/proc/sys/net/ipv4/ip_forward"),
                "1".to_string()
            )]
        );
        assert_eq!(p.hostname.as_deref(), Some("h1"));
        assert_eq!(p.session_keyring.as_deref(), Some(c"c1"));
        let runtime: Vec<&str> = p.hooks.runtime.iter().map(|(k, _)| *k).collect();
        assert_eq!(runtime, ["prestart"]);
        assert_eq!(
            (p.hooks.create_container.len(), p.hooks.bundle.as_path()),
            (1, Path::new("/b"))
        );
        // The joined namespace is named, not opened: that is `acquire`'s.
        assert_eq!(p.ns.joined[0].path, Path::new("/nonexistent/ns/net"));
        assert!(p.ns.clone_flags().is_empty(), "a join takes the slow path");
        assert!(p.rootfs.in_userns && p.rootfs.own_mount_ns);
        // Without SELinux the mount label is ignored.
        assert_eq!(p.rootfs.mount_label, None);
    }

    #[test]
    fn the_host_facts_come_from_the_host() {
        let label = serde_json::json!({"linux": {"mountLabel": "l"}});
        let selinux = Fake {
            selinux: true,
            ..Fake::default()
        };
        let p = translate(label, &selinux).expect("translate");
        assert_eq!(p.rootfs.mount_label.as_deref(), Some("l"));
        // keel in a user namespace: mknod is denied there too.
        let userns = Fake {
            in_userns: true,
            ..Fake::default()
        };
        let p = translate(serde_json::json!({}), &userns).expect("translate");
        assert!(p.rootfs.in_userns);
        assert!(!plan(serde_json::json!({})).rootfs.in_userns);
    }

    #[test]
    fn acquire_opens_the_joined_namespaces() {
        let mut p = plan(serde_json::json!({"linux": {"namespaces": [
            {"type": "mount"}, {"type": "network", "path": "/nonexistent/ns/net"}]}}));
        let e = p.acquire().err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            e,
            "linux.namespaces[1]: path /nonexistent/ns/net: No such file or directory"
        );
        let mut p = plan(serde_json::json!({"linux": {"namespaces": [
            {"type": "network", "path": "/proc/self/ns/uts"}]}}));
        let e = p.acquire().err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            e,
            "linux.namespaces[0]: path /proc/self/ns/uts is not a net namespace"
        );
        let mut p = plan(serde_json::json!({"linux": {"namespaces": [
            {"type": "network", "path": "/proc/self/ns/net"}]}}));
        p.acquire().expect("acquire");
    }

    #[test]
    fn maps_compare_as_ranges() {
        let kernel = "         0     100000      65536\n      70000     300000         10\n";
        assert!(same_maps(kernel, "70000 300000 10\n0 100000 65536\n"));
        assert!(!same_maps(kernel, "0 100000 65536\n"));
        assert!(!same_maps(kernel, "0 100001 65536\n70000 300000 10\n"));
    }
}
