//! runc's `--pidfd-socket` protocol (runc 1.2, its `setupPidfd`): a
//! process's pidfd goes to a unix socket in one message whose bytes name
//! the kind of process, "standard" for a container's init and "setns" for
//! an exec'd one (what contrib/cmd/pidfd-kill receives). A pidfd names one
//! process for good, so a supervisor can signal it with no pid-reuse race.

use crate::error::{Result, SysContext};
use std::os::fd::AsFd;

/// The kind of process a pidfd is sent for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A container's init.
    Init,
    /// A process started by `exec`.
    Exec,
}

impl Kind {
    /// The message bytes runc sends with it (its init types).
    fn payload(self) -> &'static [u8] {
        match self {
            Kind::Init => b"standard",
            Kind::Exec => b"setns",
        }
    }
}

/// Sends `pidfd` over `socket` as runc does.
pub fn send(socket: impl AsFd, kind: Kind, pidfd: impl AsFd) -> Result<()> {
    crate::sys::send_fd(socket.as_fd(), kind.payload(), pidfd.as_fd())
        .ctx(|| "--pidfd-socket: send the pidfd".into())
}
