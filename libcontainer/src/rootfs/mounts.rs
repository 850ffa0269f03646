//! One mount of the config, performed inside the rootfs without following a
//! symlink out of it: the destination is resolved in the root, and mount(2)
//! is pointed at the resolved fd through /proc/self/fd.

use super::options::MountOptions;
use super::path::{self, Kind};
use super::remount;
use super::RootfsPlan;
use crate::error::{Error, Result, SysContext};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A mount from the config, with its options parsed.
#[derive(Debug, Clone)]
pub struct Mount {
    /// Absolute path inside the container.
    pub destination: PathBuf,
    /// Filesystem type (`bind` when none is given and the options bind).
    pub typ: String,
    /// Source: a host path for binds, anything for other types.
    pub source: Option<PathBuf>,
    /// Parsed options.
    pub options: MountOptions,
    /// An idmapped bind: the maps the config asks for.
    pub idmap: Option<super::idmap::Idmap>,
    /// A bind whose source the runtime cloned as a detached tree, for the
    /// init to attach (see [`super::idmap`]).
    pub tree: Option<Tree>,
    /// An idmapped bind whose source did not exist when the runtime made
    /// the trees (an earlier mount of the config makes it): its maps, for
    /// the tree the init asks the runtime for when it gets to it.
    pub idmap_later: Option<super::idmap::IdMaps>,
}

/// A detached mount tree the runtime made of a bind's source.
#[derive(Debug, Clone)]
pub struct Tree {
    pub fd: std::sync::Arc<OwnedFd>,
    /// An idmapped bind: always attached. Otherwise (a bind in a new user
    /// namespace) attached only when the init cannot reach the source
    /// itself, one only host root can (runc's mount source fds): a bind
    /// made by the init keeps the propagation ties of its source.
    pub idmapped: bool,
}

/// The runtime's tree, when the init is to use it: `reach` is the init's
/// own attempt at the source.
fn tree_for<'a, T>(tree: Option<&'a Tree>, reach: &nix::Result<T>) -> Option<&'a Tree> {
    tree.filter(|t| t.idmapped || matches!(reach, Err(Errno::EACCES | Errno::EPERM)))
}

impl Mount {
    pub(crate) fn is_bind(&self) -> bool {
        self.options.flags.contains(MsFlags::MS_BIND) || self.typ == "bind"
    }
}

/// Performs `m` (with `late`, the tree the runtime made of its source just
/// now, for [`Mount::idmap_later`]); a mount to be made read-only once the
/// rootfs is complete is added to `read_only_later`.
pub fn mount(
    root: &OwnedFd,
    m: &Mount,
    late: Option<&Tree>,
    plan: &RootfsPlan,
    read_only_later: &mut Vec<(OwnedFd, PathBuf)>,
) -> Result<()> {
    let dest = &m.destination;
    let tree = late.or(m.tree.as_ref());
    if m.typ == "cgroup" || m.typ == "cgroup2" {
        return mount_cgroup(root, m, plan);
    }
    let kind = if m.is_bind() {
        let src = m.source.as_deref().unwrap_or(Path::new(""));
        let st = nix::sys::stat::stat(src);
        let st = match tree_for(tree, &st) {
            Some(tree) => nix::sys::stat::fstat(tree.fd.as_fd()),
            None => st,
        }
        .ctx(|| format!("stat {}", src.display()))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            Kind::Dir
        } else {
            Kind::File
        }
    } else {
        Kind::Dir
    };
    // procfs and sysfs over a symlink are how rootfs tricks redirect
    // later writes (CVE-2025-52565 class): refuse any symlink on the way.
    let strict = m.typ == "proc" || m.typ == "sysfs";
    let covered_mode = if m.typ == "tmpfs" {
        path::open_in_root(
            root.as_fd(),
            dest,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            false,
        )
        .and_then(|fd| nix::sys::stat::fstat(&fd))
        .ok()
        .map(|st| st.st_mode & 0o7777)
    } else {
        None
    };
    let target = if strict {
        match path::open_in_root(root.as_fd(), dest, OFlag::O_PATH | OFlag::O_DIRECTORY, true) {
            Err(Errno::ENOENT) => path::make_in_root(root.as_fd(), dest, kind),
            Err(e @ (Errno::ELOOP | Errno::ENOTDIR)) => {
                if path::is_non_directory(root.as_fd(), dest) {
                    return Err(Error::invalid(
                        "",
                        format!(
                            "filesystem {:?} must be mounted on ordinary directory",
                            m.typ
                        ),
                    ));
                }
                Err(e)
            }
            r => r,
        }
    } else {
        path::make_in_root(root.as_fd(), dest, kind)
    }
    .ctx(|| format!("destination {} in rootfs", dest.display()))?;
    let at = path::fd_path(&target);
    let what = || {
        format!(
            "mount {} {:?} on {}",
            m.typ,
            m.source.as_deref().unwrap_or(Path::new("none")),
            dest.display()
        )
    };
    let o = &m.options;
    if m.is_bind() {
        let bind = MsFlags::MS_BIND | (o.flags & MsFlags::MS_REC);
        let r = match tree.filter(|t| t.idmapped) {
            Some(_) => Err(Errno::EPERM),
            None => nix::mount::mount(m.source.as_deref(), &at, None::<&str>, bind, None::<&str>),
        };
        match tree_for(tree, &r) {
            Some(tree) => super::idmap::attach(tree.fd.as_fd(), target.as_fd()),
            None => r,
        }
        .ctx(what)?;
        // A bind takes its source's flags; the options, set or cleared,
        // only take effect through a remount (as runc 1.2+: an option that
        // only clears, `dev` or `rw`, must clear what the source has).
        let set = o.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !set.is_empty() || !o.cleared.is_empty() {
            let top = reopen(root, dest)?;
            remount::bind(&path::fd_path(&top), set, o.cleared)
                .ctx(|| format!("remount {} with its options", dest.display()))?;
        }
    } else {
        let data = with_covered_mode(covered_mode, &o.data);
        let data = crate::security::lsm::mount_data(&data, &m.typ, plan.mount_label.as_deref());
        let data = (!data.is_empty()).then_some(data.as_str());
        let source = m.source.as_deref().unwrap_or(Path::new(&m.typ));
        // tmpcopyup: the image's directory, still reachable by this fd once
        // the tmpfs covers it.
        let image_dir = if o.copy_up && m.typ == "tmpfs" {
            let dir = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
            Some(
                nix::fcntl::open(&at, dir, Mode::empty())
                    .ctx(|| format!("tmpcopyup: open {}", dest.display()))?,
            )
        } else {
            None
        };
        // As runc: a tmpfs (and /dev) is mounted writable, filled (the
        // copy, /dev's nodes and the mounts below it), and made read-only
        // only in [`super::finalize`].
        let late_ro =
            (m.typ == "tmpfs" || dest == Path::new("/dev")) && o.flags.contains(MsFlags::MS_RDONLY);
        let first = if late_ro {
            o.flags - MsFlags::MS_RDONLY
        } else {
            o.flags
        };
        nix::mount::mount(Some(source), &at, Some(m.typ.as_str()), first, data).ctx(what)?;
        if image_dir.is_some() || late_ro {
            let top = reopen(root, dest)?;
            if let Some(from) = image_dir {
                let to = nix::fcntl::open(
                    &path::fd_path(&top),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .ctx(|| format!("tmpcopyup: open the tmpfs on {}", dest.display()))?;
                super::copyup::copy_dir(from.as_fd(), to.as_fd())?;
            }
            if late_ro {
                read_only_later.push((top, dest.clone()));
            }
        }
    }
    finish(root, dest, o)
}

/// As runc 1.2+ (createOpenMountpoint): a tmpfs over an existing directory
/// gets that directory's mode as a first `mode=`, which an explicit `mode=`
/// of the config, coming later, overrides (the kernel takes the last one).
fn with_covered_mode(covered_mode: Option<u32>, data: &str) -> String {
    match covered_mode {
        Some(mode) if data.is_empty() => format!("mode={mode:04o}"),
        Some(mode) => format!("mode={mode:04o},{data}"),
        None => data.to_string(),
    }
}

/// The mount now on top of `dest`. An fd taken before mounting (and its
/// /proc/self/fd link) still names the covered directory, so resolve again.
fn reopen(root: &OwnedFd, dest: &Path) -> Result<OwnedFd> {
    path::open_in_root(
        root.as_fd(),
        dest,
        OFlag::O_PATH | OFlag::O_DIRECTORY,
        false,
    )
    .or_else(|_| path::open_in_root(root.as_fd(), dest, OFlag::O_PATH, false))
    .ctx(|| format!("open {} after mounting", dest.display()))
}

/// Propagation and recursive attributes, after the mount exists.
fn finish(root: &OwnedFd, dest: &Path, o: &MountOptions) -> Result<()> {
    if o.propagation.is_empty() && o.rec_set == 0 && o.rec_clr == 0 {
        return Ok(());
    }
    let top = reopen(root, dest)?;
    let at = path::fd_path(&top);
    for p in &o.propagation {
        nix::mount::mount(None::<&str>, &at, None::<&str>, *p, None::<&str>)
            .ctx(|| format!("set propagation of {}", dest.display()))?;
    }
    if o.rec_set != 0 || o.rec_clr != 0 {
        crate::sys::mount_setattr(top.as_fd(), true, o.rec_set, o.rec_clr)
            .ctx(|| format!("mount_setattr {} (recursive options)", dest.display()))?;
    }
    Ok(())
}

/// A `cgroup` mount: with a cgroup namespace, real cgroup filesystems (their
/// root is the container's cgroup); without, binds of the container's own
/// cgroup directories, so the host's tree stays out of sight either way.
fn mount_cgroup(root: &OwnedFd, m: &Mount, plan: &RootfsPlan) -> Result<()> {
    let dest = &m.destination;
    let target = path::make_in_root(root.as_fd(), dest, Kind::Dir)
        .ctx(|| format!("destination {} in rootfs", dest.display()))?;
    let at = path::fd_path(&target);
    let flags = m.options.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    let cg = &plan.cgroups;
    if cg.v1.is_empty() {
        // Pure cgroup v2.
        match (&cg.unified, plan.cgroupns) {
            (_, true) => {
                nix::mount::mount(Some("cgroup2"), &at, Some("cgroup2"), flags, None::<&str>)
            }
            (Some(dir), false) => {
                nix::mount::mount(Some(dir), &at, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            }
            (None, false) => Ok(()),
        }
        .ctx(|| format!("mount cgroup2 on {}", dest.display()))?;
        if !plan.cgroupns && !flags.is_empty() {
            let top = reopen(root, dest)?;
            remount::bind(&path::fd_path(&top), flags, MsFlags::empty())
                .ctx(|| format!("remount {}", dest.display()))?;
        }
        return finish(root, dest, &m.options);
    }
    // v1 or hybrid: a tmpfs holding one directory per hierarchy.
    let tmpfs_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    nix::mount::mount(
        Some("tmpfs"),
        &at,
        Some("tmpfs"),
        tmpfs_flags,
        Some("mode=755"),
    )
    .ctx(|| format!("mount tmpfs for cgroups on {}", dest.display()))?;
    let tmp = reopen(root, dest)?;
    let mut subs: Vec<(String, Option<&Path>, String)> = cg
        .v1
        .iter()
        .map(|(key, dir)| {
            (
                key.strip_prefix("name=").unwrap_or(key).to_string(),
                Some(dir.as_path()),
                key.clone(),
            )
        })
        .collect();
    if let Some(dir) = &cg.unified {
        subs.push(("unified".into(), Some(dir.as_path()), String::new()));
    }
    for (name, host_dir, key) in subs {
        // In the tmpfs just mounted in our own mount namespace: nothing is
        // there yet and no symlink can be, so no resolving in the root.
        let sub = sub_dir(&tmp, &name).ctx(|| format!("mkdir {}/{name}", dest.display()))?;
        let sub_at = path::fd_path(&sub);
        let r = if plan.cgroupns {
            if key.is_empty() {
                nix::mount::mount(
                    Some("cgroup2"),
                    &sub_at,
                    Some("cgroup2"),
                    flags,
                    None::<&str>,
                )
            } else {
                nix::mount::mount(
                    Some("cgroup"),
                    &sub_at,
                    Some("cgroup"),
                    flags,
                    Some(key.as_str()),
                )
            }
        } else {
            let dir = host_dir.unwrap_or(Path::new("/"));
            nix::mount::mount(
                Some(dir),
                &sub_at,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .and_then(|()| {
                let top = path::open_in_root(tmp.as_fd(), Path::new(&name), OFlag::O_PATH, false)?;
                remount::bind(&path::fd_path(&top), flags, MsFlags::empty())
            })
        };
        r.ctx(|| format!("mount cgroup {key} on {}/{name}", dest.display()))?;
        // Co-mounted controllers get one symlink each, as runc makes them.
        if key.contains(',') {
            for ctrl in key.split(',') {
                let c = std::ffi::CString::new(ctrl)
                    .map_err(|_| Error::invalid("cgroup", "NUL in controller name"))?;
                let _ = nix::unistd::symlinkat(name.as_str(), tmp.as_fd(), c.as_c_str());
            }
        }
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        let top = reopen(root, dest)?;
        nix::mount::mount(
            None::<&str>,
            &path::fd_path(&top),
            None::<&str>,
            MsFlags::MS_REMOUNT | tmpfs_flags | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .ctx(|| format!("remount {} read-only", dest.display()))?;
    }
    finish(root, dest, &m.options)
}

/// Makes directory `name` in `dir` (one component) and opens it.
fn sub_dir(dir: &OwnedFd, name: &str) -> nix::Result<OwnedFd> {
    match nix::sys::stat::mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(e),
    }
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    nix::fcntl::openat(dir.as_fd(), name, flags, Mode::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_mode_of_the_covered_directory_comes_first() {
        assert_eq!(with_covered_mode(Some(0o700), ""), "mode=0700");
        assert_eq!(
            with_covered_mode(Some(0o1777), "size=1m,mode=755"),
            "mode=1777,size=1m,mode=755"
        );
        assert_eq!(with_covered_mode(None, "size=1m"), "size=1m");
    }
}
