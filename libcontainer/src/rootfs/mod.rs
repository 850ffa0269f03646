//! Building the container's filesystem view, in runc's order: propagation
//! of `/`, the rootfs bind, the config's mounts, /dev, pivot_root, then
//! read-only and masked paths. Runs in the init, in its mount namespace.

mod copyup;
pub(crate) mod devices;
pub(crate) mod idmap;
mod mounts;
pub mod options;
pub(crate) mod path;
mod pivot;
mod remount;

pub(crate) use devices::{defaults as devices_defaults, Device};
pub(crate) use mounts::{Mount, Tree};

use crate::cgroups::CgroupPaths;
use crate::error::{Result, SysContext};
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Everything the init needs to build the filesystem, computed in the parent.
#[derive(Debug, Clone)]
pub(crate) struct RootfsPlan {
    /// Absolute host path of the rootfs.
    pub rootfs: PathBuf,
    /// The config's mounts, in order.
    pub mounts: Vec<Mount>,
    /// Whether keel populates /dev (false when the config binds /dev).
    pub setup_dev: bool,
    /// Default devices plus `linux.devices`.
    pub devices: Vec<Device>,
    /// `linux.maskedPaths`.
    pub masked: Vec<PathBuf>,
    /// `linux.readonlyPaths`.
    pub readonly: Vec<PathBuf>,
    /// Propagation of `/` before anything is mounted (default rslave).
    pub root_propagation: MsFlags,
    /// `linux.rootfsPropagation` to set on the new root after pivot.
    pub final_propagation: Option<MsFlags>,
    /// `root.readonly`.
    pub readonly_root: bool,
    /// `--no-pivot`: MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// The container has a mount namespace. Without one (runc, crun and
    /// youki run such configs) the rootfs is prepared in the caller's
    /// mount namespace and entered with chroot; the caller's `/` keeps its
    /// propagation.
    pub own_mount_ns: bool,
    /// In a new user namespace: devices are bind-mounted, not created.
    pub in_userns: bool,
    /// The container's cgroups, for `cgroup` mounts.
    pub cgroups: CgroupPaths,
    /// Whether the container has its own cgroup namespace.
    pub cgroupns: bool,
    /// `linux.mountLabel`: a `context=` option on the mounts runc labels.
    pub mount_label: Option<String>,
}

/// Performs the plan up to and including the pivot into the new root;
/// `idmapped_source(i)` gets the runtime's tree for mount `i`'s
/// [`Mount::idmap_later`]; `before_pivot` runs when everything is mounted
/// (the hooks' moment).
pub(crate) fn prepare(
    plan: &RootfsPlan,
    idmapped_source: impl Fn(usize) -> Result<OwnedFd>,
    before_pivot: impl FnOnce() -> Result<()>,
) -> Result<Prepared> {
    if plan.own_mount_ns {
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            plan.root_propagation,
            None::<&str>,
        )
        .ctx(|| "make / private to the container (rootfsPropagation)".into())?;
        // Only a shared `/` leaves the rootfs's parent mount shared: spare
        // the mountinfo read otherwise.
        if plan.root_propagation.contains(MsFlags::MS_SHARED) {
            parent_mount_private(&plan.rootfs)?;
        }
    }
    // The new root must be a mount point for pivot_root.
    nix::mount::mount(
        Some(&plan.rootfs),
        &plan.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| format!("bind mount rootfs {}", plan.rootfs.display()))?;
    let root = nix::fcntl::open(
        &plan.rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("open rootfs {}", plan.rootfs.display()))?;
    // Nodes are created with exactly the modes asked for.
    let old_umask = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let mut read_only_later = Vec::new();
    for (i, m) in plan.mounts.iter().enumerate() {
        let late = match m.idmap_later {
            Some(_) => Some(Tree {
                fd: std::sync::Arc::new(idmapped_source(i)?),
                idmapped: true,
            }),
            None => None,
        };
        mounts::mount(&root, m, late.as_ref(), plan, &mut read_only_later)
            .map_err(|e| e.within(mount_failed(m.source.as_deref(), &m.destination)))?;
        crate::failpoint::failpoint("mount")?;
    }
    if plan.setup_dev {
        devices::create(&root, &plan.devices, plan.in_userns)?;
        devices::symlinks(&root)?;
    }
    nix::sys::stat::umask(old_umask);
    before_pivot()?;
    pivot::enter(&plan.rootfs, plan.no_pivot, plan.own_mount_ns)?;
    crate::failpoint::failpoint("pivot")?;
    Ok(Prepared { read_only_later })
}

/// What [`prepare`] leaves for [`finalize`].
pub(crate) struct Prepared {
    /// Mounts made writable so that they could be filled (tmpfs, /dev),
    /// to be made read-only as the config asks: fds on them, and where.
    read_only_later: Vec<(std::os::fd::OwnedFd, PathBuf)>,
}

/// runc's words for a mount that failed (engines and scripts read them).
pub(crate) fn mount_failed(source: Option<&Path>, destination: &Path) -> String {
    format!(
        "error mounting {:?} to rootfs at {:?}",
        source.unwrap_or(Path::new("")),
        destination
    )
}

/// As runc: pivot_root refuses a new root whose parent mount is shared (as
/// `rootfsPropagation: shared` leaves `/`), so that one mount goes private.
fn parent_mount_private(rootfs: &std::path::Path) -> Result<()> {
    // The longest mount point that holds the rootfs; of equal ones, the
    // last (it hides the others).
    let parent = crate::mountinfo::read_self()?
        .into_iter()
        .filter(|m| rootfs.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len());
    if let Some(m) = parent.filter(|m| m.is_shared()) {
        nix::mount::mount(
            None::<&str>,
            &m.mount_point,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .ctx(|| format!("make {} private", m.mount_point.display()))?;
    }
    Ok(())
}

/// After the pivot and after sysctls: read-only and masked paths, the
/// read-only root and the final propagation.
pub(crate) fn finalize(plan: &RootfsPlan, prepared: Prepared) -> Result<()> {
    // As runc's finalizeRootfs: a per-mount read-only flag, the filesystem
    // itself staying writable underneath.
    for (fd, dest) in prepared.read_only_later {
        crate::sys::mount_setattr(fd.as_fd(), false, remount::MOUNT_ATTR_RDONLY, 0)
            .or_else(|_| remount::bind(&path::fd_path(&fd), MsFlags::MS_RDONLY, MsFlags::empty()))
            .ctx(|| format!("remount {} read-only", dest.display()))?;
    }
    for p in &plan.readonly {
        pivot::readonly_path(p)?;
    }
    if !plan.masked.is_empty() {
        let null = pivot::dev_null()?;
        // Lookups from it cross the masks mounted meanwhile, as from "/".
        let root = pivot::root()?;
        let mut dir_mask = None;
        for p in &plan.masked {
            pivot::mask_path(&root, p, &null, &mut dir_mask, plan.mount_label.as_deref())?;
        }
    }
    if plan.readonly_root {
        pivot::remount_root_readonly()?;
    }
    if let Some(flags) = plan.final_propagation.filter(|_| plan.own_mount_ns) {
        nix::mount::mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
            .ctx(|| "set linux.rootfsPropagation on /".into())?;
    }
    Ok(())
}
