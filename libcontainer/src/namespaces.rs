//! Which namespaces a container gets: new ones become clone/unshare flags,
//! joined ones are named by [`Namespaces::from_spec`] (pure) and opened, with
//! their type checked, by [`Namespaces::open`] in the parent, so a bad path
//! fails before anything is forked.

use crate::error::{Error, Result};
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

/// A namespace to join.
#[derive(Debug)]
pub struct Joined {
    pub typ: LinuxNamespaceType,
    pub path: PathBuf,
    /// Its index in `linux.namespaces`, for errors.
    index: usize,
    /// Set by [`Namespaces::open`].
    fd: Option<OwnedFd>,
}

impl Joined {
    fn fd(&self) -> Result<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd()).ok_or_else(|| {
            Error::sys(
                format!("{} namespace {}: not opened", self.typ, self.path.display()),
                nix::errno::Errno::EBADF,
            )
        })
    }
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
    /// The config's namespaces; the joined ones are not opened yet.
    pub fn from_spec(spec: &Spec) -> Namespaces {
        let mut out = Namespaces {
            new: CloneFlags::empty(),
            joined: Vec::new(),
        };
        let list = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
        for (index, ns) in list.into_iter().flatten().enumerate() {
            // An empty path asks for a new namespace, as runc reads it.
            match ns.path().as_ref().filter(|p| !p.as_os_str().is_empty()) {
                None => out.new |= flag(ns.typ()),
                Some(path) => out.joined.push(Joined {
                    typ: ns.typ(),
                    path: path.clone(),
                    index,
                    fd: None,
                }),
            }
        }
        out
    }

    /// Opens the namespaces to join and checks that each is of its type.
    pub fn open(&mut self) -> Result<()> {
        for j in &mut self.joined {
            let field = || format!("linux.namespaces[{}]", j.index);
            let fd = nix::fcntl::open(
                &j.path,
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| {
                Error::invalid(field(), format!("path {}: {}", j.path.display(), e.desc()))
            })?;
            // SAFETY: ioctl without argument on an fd we own.
            let kind = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), NS_GET_NSTYPE as _) };
            if kind != j.typ as i32 {
                return Err(Error::invalid(
                    field(),
                    format!("path {} is not a {} namespace", j.path.display(), j.typ),
                ));
            }
            j.fd = Some(fd);
        }
        Ok(())
    }

    pub fn has_new(&self, t: LinuxNamespaceType) -> bool {
        self.new.contains(flag(t))
    }

    /// Whether the container has a mount namespace (new or joined).
    pub fn has_mount_ns(&self) -> bool {
        self.new.contains(CloneFlags::CLONE_NEWNS)
            || self
                .joined
                .iter()
                .any(|j| j.typ == LinuxNamespaceType::Mount)
    }

    /// The user namespace to join, if one is.
    pub fn joined_user(&self) -> Option<&Joined> {
        self.joined
            .iter()
            .find(|j| j.typ == LinuxNamespaceType::User)
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

    /// In the child on the slow path: setns into every joined namespace,
    /// in runc's order (nsexec's join_namespaces): first those the runtime
    /// may join from where it is (a namespace the joined user namespace does
    /// not own, such as the host's network, can only be joined from
    /// outside it), then the user namespace, which gives the capabilities
    /// over the namespaces it owns, then those.
    pub fn join_all(&self) -> Result<()> {
        let join = |j: &Joined| Ok(nix::sched::setns(j.fd()?, flag(j.typ)));
        let fail = |j: &Joined, e| {
            Error::sys(format!("setns {} namespace {}", j.typ, j.path.display()), e)
        };
        let mut later = Vec::new();
        for j in self
            .joined
            .iter()
            .filter(|j| j.typ != LinuxNamespaceType::User)
        {
            match join(j)? {
                Ok(()) => {}
                Err(nix::errno::Errno::EPERM) => later.push(j),
                Err(e) => return Err(fail(j, e)),
            }
        }
        if let Some(u) = self.joined_user() {
            join(u)?.map_err(|e| fail(u, e))?;
        }
        for j in later {
            join(j)?.map_err(|e| fail(j, e))?;
        }
        Ok(())
    }

    /// The uid_map and gid_map of the joined user namespace, read by a
    /// child that enters it (a namespace file names no process to read
    /// them from), as runc's userns.GetUserNamespaceMappings.
    pub fn joined_user_maps(&self) -> Result<Option<(String, String)>> {
        let Some(u) = self.joined_user() else {
            return Ok(None);
        };
        let fd = u.fd()?;
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| Error::sys("pipe for the user namespace reader", e))?;
        // SAFETY: the caller is single-threaded (create's Runtime token);
        // the child reads two files, writes them to the pipe and _exits.
        match unsafe { nix::unistd::fork() }.map_err(|e| Error::sys("fork", e))? {
            nix::unistd::ForkResult::Child => {
                drop(r);
                let ok = nix::sched::setns(fd, CloneFlags::CLONE_NEWUSER).is_ok();
                let maps = ok
                    .then(|| {
                        let read = |f| std::fs::read_to_string(format!("/proc/self/{f}")).ok();
                        Some(format!("{}\0{}", read("uid_map")?, read("gid_map")?))
                    })
                    .flatten();
                if let Some(m) = maps {
                    let _ = nix::unistd::write(&w, m.as_bytes());
                }
                // SAFETY: leave without running the parent's destructors.
                unsafe { libc::_exit(0) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(w);
                let mut text = String::new();
                let read = std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut text);
                let _ = nix::sys::wait::waitpid(child, None);
                let maps = read.ok().and_then(|_| {
                    let (u, g) = text.split_once('\0')?;
                    Some((u.to_string(), g.to_string()))
                });
                maps.map(Some).ok_or_else(|| {
                    Error::invalid(
                        "linux.namespaces",
                        format!("failed to cache mappings for userns: {}", u.path.display()),
                    )
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_path_is_a_new_namespace() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.2.0",
            "linux": {"namespaces": [{"type": "mount"}, {"type": "uts", "path": ""}]}
        }))
        .expect("spec");
        let ns = Namespaces::from_spec(&spec);
        assert!(ns.has_new(LinuxNamespaceType::Uts));
        assert!(ns.joined.is_empty() && ns.joined_user().is_none());
    }
}
