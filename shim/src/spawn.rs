//! Creating a container's init and exec'ing processes through libkeel.
//!
//! libkeel forks a child that runs ordinary Rust code (allocation, mounts,
//! hooks) before execve, which is only sound from a single-threaded
//! process: in a multi-threaded one a lock held by another thread at fork
//! time (malloc's, stdio's, the logger's) stays locked forever in the
//! child. The shim has a single thread (see `server`), so it forks here
//! directly (with the token `main` got from `libkeel::Runtime::init`,
//! which made sure it runs from a read-only view of its binary), and it
//! is the parent (and subreaper) of every container process.

use anyhow::{Context as _, Result};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// One mount of the container's rootfs, as containerd hands it over.
#[derive(Debug, Clone)]
pub struct RootfsMount {
    pub typ: String,
    pub source: String,
    pub options: Vec<String>,
}

pub struct Create<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub root: PathBuf,
    pub rootfs: &'a [RootfsMount],
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub systemd_cgroup: bool,
    pub stdio: Option<[OwnedFd; 3]>,
    pub console_socket: Option<OwnedFd>,
}

/// Mounts the rootfs and creates the container; its init waits for start.
/// Returns the init's pid. On failure nothing is left mounted.
pub fn create(runtime: &libkeel::Runtime, c: Create) -> Result<i32> {
    let target = c.bundle.join("rootfs");
    mount_rootfs(c.rootfs, &target)?;
    let mut b = libkeel::ContainerBuilder::new(c.id, c.bundle)
        .root(c.root)
        .no_pivot(c.no_pivot)
        .no_new_keyring(c.no_new_keyring)
        .systemd_cgroup(c.systemd_cgroup);
    if let Some([i, o, e]) = c.stdio {
        // The shim's pipes (see `stdio`): handed to the process's user.
        b = b.stdio(i, o, e);
    }
    if let Some(s) = c.console_socket {
        b = b.console_socket(s);
    }
    match b.create(runtime) {
        Ok(container) => Ok(container.pid()),
        Err(e) => {
            if !c.rootfs.is_empty() {
                let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
            }
            Err(e.into())
        }
    }
}

/// Starts `process` in container `id`; returns its pid and pidfd.
pub fn exec(
    runtime: &libkeel::Runtime,
    id: &str,
    root: &Path,
    process: &libkeel::oci_spec::runtime::Process,
    stdio: Option<[OwnedFd; 3]>,
    console_socket: Option<OwnedFd>,
) -> Result<libkeel::ExecProcess> {
    let mut c = libkeel::Container::load(root, id)?;
    Ok(c.exec(
        runtime,
        process,
        libkeel::ExecOptions {
            console_socket,
            stdio,
            ..Default::default()
        },
    )?)
}

/// Mounts containerd's rootfs mounts (usually one overlay) on the bundle's
/// rootfs, as the runc shim does.
pub fn mount_rootfs(mounts: &[RootfsMount], target: &Path) -> Result<()> {
    use nix::mount::MsFlags;
    for m in mounts {
        let opts = libkeel::rootfs::options::parse(&m.options);
        let flags = opts.flags & !(MsFlags::MS_SHARED | MsFlags::MS_SLAVE | MsFlags::MS_PRIVATE);
        let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
        nix::mount::mount(
            Some(m.source.as_str()),
            target,
            Some(m.typ.as_str()),
            flags,
            data,
        )
        .with_context(|| format!("mount {} ({}) on {}", m.source, m.typ, target.display()))?;
        for p in &opts.propagation {
            nix::mount::mount(None::<&str>, target, None::<&str>, *p, None::<&str>)
                .with_context(|| format!("propagation of {}", target.display()))?;
        }
    }
    Ok(())
}
