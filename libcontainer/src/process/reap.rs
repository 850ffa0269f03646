//! The guard around a child keel forked that is not yet a container's
//! process.

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use std::os::fd::OwnedFd;

/// A child forked by keel until its setup is complete: dropped before
/// [`HalfMade::release`], it is SIGKILLed and reaped, so a failed create or
/// exec leaves no process behind.
pub(crate) struct HalfMade {
    pid: Pid,
    /// A pidfd of `pid` (none on kernels before 5.3), opened while the
    /// child cannot have been reaped: it is this process whatever happens
    /// to the pid later.
    pidfd: Option<OwnedFd>,
    armed: bool,
}

impl HalfMade {
    /// Guards the child `pid` (ours to reap).
    pub fn new(pid: Pid) -> Self {
        HalfMade {
            pid,
            pidfd: crate::sys::pidfd_open(pid.as_raw()).ok(),
            armed: true,
        }
    }

    /// The process guarded now.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The child forked once more (`InitPid`): it exits on its own, the
    /// grandchild `to` is the one to guard from now on.
    pub fn handed_over(&mut self, to: Pid) {
        // Before its parent, the middle child, is reaped here.
        self.pidfd = crate::sys::pidfd_open(to.as_raw()).ok();
        let _ = waitpid(self.pid, None);
        self.pid = to;
    }

    /// Setup is complete: the process lives on, the caller owns it (and
    /// its pidfd).
    pub fn release(mut self) -> (Pid, Option<OwnedFd>) {
        self.armed = false;
        (self.pid, self.pidfd.take())
    }
}

impl Drop for HalfMade {
    fn drop(&mut self) {
        if self.armed {
            let _ = kill(self.pid, Signal::SIGKILL);
            // A grandchild is ours to reap only if we are a subreaper;
            // otherwise this returns ECHILD at once and its reaper reaps it.
            let _ = waitpid(self.pid, None);
        }
    }
}
