//! Which namespaces a container gets: new ones become clone/unshare flags,
//! joined ones are opened (and their type checked) in the parent, so a bad
//! path fails before anything is forked.

use crate::error::{Error, Result};
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

/// A namespace to join.
#[derive(Debug)]
pub struct Joined {
    pub typ: LinuxNamespaceType,
    pub fd: OwnedFd,
    pub path: PathBuf,
}

/// The namespace part of a container's plan.
#[derive(Debug)]
pub struct Namespaces {
    /// Namespaces to create.
    pub new: CloneFlags,
    /// Namespaces to join, the user namespace first.
    pub joined: Vec<Joined>,
}

const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

pub fn flag(t: LinuxNamespaceType) -> CloneFlags {
    CloneFlags::from_bits_retain(t as i32)
}

impl Namespaces {
    pub fn from_spec(spec: &Spec) -> Result<Namespaces> {
        let mut out = Namespaces {
            new: CloneFlags::empty(),
            joined: Vec::new(),
        };
        let list = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
        for (i, ns) in list.into_iter().flatten().enumerate() {
            let field = || format!("linux.namespaces[{i}]");
            match ns.path() {
                None => out.new |= flag(ns.typ()),
                Some(path) => {
                    let fd = nix::fcntl::open(
                        path,
                        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                        nix::sys::stat::Mode::empty(),
                    )
                    .map_err(|e| {
                        Error::invalid(field(), format!("path {}: {}", path.display(), e.desc()))
                    })?;
                    // SAFETY: ioctl without argument on an fd we own.
                    let kind = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), NS_GET_NSTYPE as _) };
                    if kind != ns.typ() as i32 {
                        return Err(Error::invalid(
                            field(),
                            format!("path {} is not a {} namespace", path.display(), ns.typ()),
                        ));
                    }
                    out.joined.push(Joined {
                        typ: ns.typ(),
                        fd,
                        path: path.clone(),
                    });
                }
            }
        }
        if !out.new.contains(CloneFlags::CLONE_NEWNS)
            && !out
                .joined
                .iter()
                .any(|j| j.typ == LinuxNamespaceType::Mount)
        {
            return Err(Error::invalid(
                "linux.namespaces",
                "a mount namespace is required to set up the rootfs",
            ));
        }
        // Joining the user namespace first gives us capabilities over the
        // namespaces it owns before we join them.
        out.joined
            .sort_by_key(|j| j.typ != LinuxNamespaceType::User);
        Ok(out)
    }

    pub fn has_new(&self, t: LinuxNamespaceType) -> bool {
        self.new.contains(flag(t))
    }

    /// The fast path: with nothing to join, one clone creates every namespace
    /// (the kernel makes the user namespace first and the others owned by
    /// it). cgroup and time are unshared later, once the cgroup is joined
    /// and the clock offsets are written.
    pub fn clone_flags(&self) -> CloneFlags {
        if self.joined.is_empty() {
            self.new
                - (CloneFlags::CLONE_NEWCGROUP | CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
        } else {
            CloneFlags::empty()
        }
    }

    /// In the child on the slow path: setns into every joined namespace.
    pub fn join_all(&self) -> Result<()> {
        for j in &self.joined {
            nix::sched::setns(j.fd.as_fd(), flag(j.typ)).map_err(|e| {
                Error::sys(format!("setns {} namespace {}", j.typ, j.path.display()), e)
            })?;
        }
        Ok(())
    }
}
