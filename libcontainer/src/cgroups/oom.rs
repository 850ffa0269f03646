//! OOM notifications for a container's memory cgroup, without an async
//! runtime: an fd to poll plus a non-blocking [`OomWatch::read`], or the
//! blocking [`Iterator`] for callers that only wait for OOMs.
//!
//! v1 (also on hybrid hosts): an eventfd registered for memory.oom_control
//! through cgroup.event_control; the kernel counts OOM events on it, and
//! signals it once more when the cgroup is removed.
//! v2: inotify on memory.events, whose `oom_kill` count is compared with
//! the last one seen (the file's change notifications are rate-limited by
//! the kernel, so the count, not the number of notifications, decides).

use super::fs::read;
use super::path::CgroupPaths;
use crate::error::{Error, Result, SysContext};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

/// A watch on one container's OOM events.
#[derive(Debug)]
pub struct OomWatch {
    fd: OwnedFd,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// memory.oom_control stays open as long as the registration.
    V1 {
        dir: PathBuf,
        _control: std::fs::File,
    },
    V2 {
        dir: PathBuf,
        seen: u64,
    },
}

fn oom_kills(dir: &std::path::Path) -> Option<u64> {
    read(dir, "memory.events")?
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

impl CgroupPaths {
    /// Starts watching the container's OOM events; None when this host has
    /// no memory controller for it.
    pub fn oom_watch(&self) -> Result<Option<OomWatch>> {
        if let Some(dir) = self.v1_dir("memory") {
            return OomWatch::v1(dir.to_path_buf()).map(Some);
        }
        match &self.unified {
            Some(dir) if dir.join("memory.events").exists() => OomWatch::v2(dir.clone()).map(Some),
            _ => Ok(None),
        }
    }
}

impl OomWatch {
    fn v1(dir: PathBuf) -> Result<OomWatch> {
        let control_path = dir.join("memory.oom_control");
        let control = std::fs::File::open(&control_path)
            .ctx(|| format!("open {}", control_path.display()))?;
        // SAFETY: plain syscall; the fd is ours on success.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(Error::sys("eventfd", nix::errno::Errno::last()));
        }
        // SAFETY: a new fd owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(efd) };
        let line = format!("{} {}", fd.as_raw_fd(), control.as_raw_fd());
        std::fs::write(dir.join("cgroup.event_control"), &line).ctx(|| {
            format!(
                "register for OOM events: write {line:?} to {}",
                dir.join("cgroup.event_control").display()
            )
        })?;
        Ok(OomWatch {
            fd,
            kind: Kind::V1 {
                dir,
                _control: control,
            },
        })
    }

    fn v2(dir: PathBuf) -> Result<OomWatch> {
        // SAFETY: plain syscall; the fd is ours on success.
        let ifd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if ifd < 0 {
            return Err(Error::sys("inotify_init1", nix::errno::Errno::last()));
        }
        // SAFETY: a new fd owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(ifd) };
        let events = dir.join("memory.events");
        let path = std::ffi::CString::new(events.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::invalid("cgroup path", "contains a NUL byte"))?;
        // SAFETY: valid fd and NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(ifd, path.as_ptr(), libc::IN_MODIFY) };
        if wd < 0 {
            return Err(Error::sys(
                format!("inotify_add_watch {}", events.display()),
                nix::errno::Errno::last(),
            ));
        }
        // OOM kills before the watch began are not news.
        let seen = oom_kills(&dir).unwrap_or(0);
        Ok(OomWatch {
            fd,
            kind: Kind::V2 { dir, seen },
        })
    }

    /// Whether the container's memory cgroup is still there.
    fn cgroup_exists(&self) -> bool {
        match &self.kind {
            Kind::V1 { dir, .. } => dir.join("cgroup.event_control").exists(),
            Kind::V2 { dir, .. } => dir.join("memory.events").exists(),
        }
    }

    /// OOM events since the last call (0 if none), without blocking; None
    /// once the cgroup is gone (no more events can come).
    pub fn read(&mut self) -> Result<Option<u64>> {
        // Drain the fd so that poll blocks again until something new.
        let mut buf = [0u8; 4096];
        let mut file = std::fs::File::from(self.fd.try_clone().ctx(|| "dup OOM fd".into())?);
        let mut counted = 0u64;
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let (Kind::V1 { .. }, Ok(b)) = (&self.kind, <[u8; 8]>::try_from(&buf[..n])) {
                        counted += u64::from_ne_bytes(b);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("read OOM notifications", e)),
            }
        }
        let alive = self.cgroup_exists();
        let new = match &mut self.kind {
            // The removal of the cgroup signals the eventfd too.
            Kind::V1 { .. } if !alive => 0,
            Kind::V1 { .. } => counted,
            Kind::V2 { dir, seen } => {
                let now = oom_kills(dir).unwrap_or(*seen);
                let new = now.saturating_sub(*seen);
                *seen = now;
                new
            }
        };
        Ok(if new == 0 && !alive { None } else { Some(new) })
    }
}

impl AsFd for OomWatch {
    /// Readable when there may be new OOM events: poll it, then
    /// [`OomWatch::read`].
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Iterator for OomWatch {
    type Item = Result<u64>;

    /// Blocks until the next OOM event(s) and yields how many; ends when
    /// the cgroup is removed.
    fn next(&mut self) -> Option<Result<u64>> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            match self.read() {
                Ok(Some(0)) => {}
                Ok(Some(n)) => return Some(Ok(n)),
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            }
            // inotify says nothing when the cgroup goes away with the
            // file still watched by nobody else: look again once a second.
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(1000u16)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Some(Err(Error::sys("poll OOM notifications", e))),
            }
        }
    }
}
