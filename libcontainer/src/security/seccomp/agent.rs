//! SCMP_ACT_NOTIFY: the filter's listener fd goes to the seccomp agent at
//! `listenerPath`, with the container process state, as runc sends it: one
//! message on a new connection to that unix socket, the state JSON as its
//! data and the fd as SCM_RIGHTS.

use crate::error::{Error, Result, SysContext};
use crate::hooks::HookState;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use serde::Serialize;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Where the listener goes, from `linux.seccomp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// `listenerPath`: the agent's unix socket.
    pub path: PathBuf,
    /// `listenerMetadata`, passed on to the agent.
    pub metadata: String,
}

/// The runtime-spec's "container process state".
#[derive(Serialize)]
struct ProcessState<'a> {
    #[serde(rename = "ociVersion")]
    oci_version: &'a str,
    fds: [&'static str; 1],
    pid: i32,
    #[serde(skip_serializing_if = "str::is_empty")]
    metadata: &'a str,
    state: &'a HookState<'a>,
}

impl Agent {
    /// Hands `listener`, the filter of process `pid` (host pid), over to
    /// the agent.
    pub fn send(&self, listener: &OwnedFd, pid: i32, state: &HookState) -> Result<()> {
        let field = "linux.seccomp.listenerPath";
        let msg = serde_json::to_vec(&ProcessState {
            oci_version: crate::SPEC_VERSION,
            fds: ["seccompFd"],
            pid,
            metadata: &self.metadata,
            state,
        })
        .map_err(|e| Error::invalid(field, e.to_string()))?;
        let conn = std::os::unix::net::UnixStream::connect(&self.path).map_err(|e| {
            Error::SeccompAgent {
                path: self.path.clone(),
                reason: crate::error::go_text(&e),
            }
        })?;
        let fds = [listener.as_raw_fd()];
        let iov = [std::io::IoSlice::new(&msg)];
        sendmsg::<()>(
            conn.as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .ctx(|| format!("{field}: send the listener to {}", self.path.display()))?;
        Ok(())
    }
}

/// `linux.seccomp`'s agent, if it has one.
pub fn of(s: &oci_spec::runtime::LinuxSeccomp) -> Option<Agent> {
    s.listener_path().as_deref().map(|p: &Path| Agent {
        path: p.to_path_buf(),
        metadata: s.listener_metadata().clone().unwrap_or_default(),
    })
}
