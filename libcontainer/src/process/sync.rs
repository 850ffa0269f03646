//! The one sync channel between the runtime (the parent) and the child it
//! forks (a container's init, or an `exec`'d process): a SOCK_SEQPACKET
//! socketpair carrying one JSON message per packet, so message boundaries
//! come from the kernel and a dead peer reads as EOF.
//!
//! # The protocol
//!
//! The parent's side is one loop, [`super::driver::drive`]; the child's is
//! [`Channel::wait_continue`] and [`Channel::ask`]. Every exchange the child
//! starts is answered by `Continue` (or by the parent's giving up, which the
//! child reads as EOF); nothing else is ever sent by the parent.
//!
//! | message | from → to | when | the parent's answer |
//! |---|---|---|---|
//! | `Continue` | parent → child | once the child is placed (cgroups joined; for the init, id maps and `oom_score_adj` written), and in answer to `MapIds`, `RunHooks`, `SeccompListener` | — |
//! | `MapIds` | init → parent | the init joined namespaces by path and then unshared its user namespace | writes `gid_map`, `uid_map`; `Continue` |
//! | `IdmappedSource(i)` | init → parent | it reached mount `i`, an idmapped bind whose source did not exist before the init's mounts (`Mount::idmap_later`) | makes the idmapped tree of the source, resolved in the init's mount namespace; `Continue`, then the tree's fd in a packet of its own |
//! | `InitPid(pid)` | middle child → parent | the child forked again to be in a pid namespace it could not be cloned into (init: a pid namespace joined or made after joining others; exec: a rootless runtime); the middle child exits next | reaps the middle child, guards `pid` instead; no reply |
//! | `RunHooks` | init → parent | mounts done, pivot_root next, the config has prestart/createRuntime hooks | moves `linux.netDevices` into the init's network namespace (if not yet), runs the hooks; `Continue` |
//! | `SeccompListener` + an fd | init or exec → parent | a filter with a notification listener is loaded; the fd follows in a packet of its own ([`Channel::send_fd`]) | hands it to the seccomp agent; `Continue` |
//! | `Ready` | init → parent | set up but for its seccomp filter, which it loads next (so that no message runs under it) | moves `linux.netDevices` (if not yet); waits for the EOF |
//! | `Failed { errno, context }` | child → parent | any failure; the child then exits | returns the error; the child is killed and reaped |
//! | EOF | child → parent | exec: execve closed the channel (close-on-exec): the program runs. init after `Ready`: the filter is in and it waits on exec.fifo; before: it died | exec ends; create ends, the parent returns the init's pid; before `Ready`, create fails with how the child ended |
//!
//! Anything else (a message the other kind of child sends, `Continue` from
//! a child, a second `InitPid`) is a protocol error, the same for both.

use crate::error::{Error, Result};
use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// Messages on the sync channel; who sends each, and when, is the table in
/// the module's documentation.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Msg {
    /// parent → child: go on.
    Continue,
    /// init → parent: my user namespace exists; write its id maps.
    MapIds,
    /// init → parent: make the idmapped tree of mount `i`'s source (now
    /// there in my mount namespace) and send it (see `send_fd`).
    IdmappedSource(usize),
    /// child → parent: the process to run the program is this grandchild
    /// (host pid); I exit now.
    InitPid(i32),
    /// init → parent: mounts are done, pivot_root is next: run the
    /// prestart and createRuntime hooks.
    RunHooks,
    /// child → parent: the seccomp filter's notification listener comes
    /// in the next packet (see `send_fd`); hand it to the agent.
    SeccompListener,
    /// init → parent: set up but for the seccomp filter; the channel's
    /// EOF follows once the filter is in.
    Ready,
    /// child → parent: setup failed.
    Failed {
        /// The system call's errno, 0 when it was no system call's failure.
        errno: i32,
        /// What failed.
        context: String,
    },
}

impl Msg {
    /// A child's failure, as it travels to the parent.
    pub fn failed(err: Error) -> Msg {
        let (errno, context) = match err {
            Error::Sys { context, errno } => (errno as i32, context),
            Error::Io { context, error } => (error.raw_os_error().unwrap_or(0), context),
            // Already the child's own words (a program that is not found).
            Error::Init { context, errno } => (errno.map_or(0, |e| e as i32), context),
            other => (0, other.to_string()),
        };
        Msg::Failed {
            errno,
            context: fit(context),
        }
    }
}

impl Msg {
    /// One packet's bytes.
    pub fn encode(&self) -> nix::Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|_| Errno::EINVAL)
    }

    /// A packet from the peer (any bytes: the peer may be confused).
    pub fn decode(packet: &[u8]) -> nix::Result<Msg> {
        serde_json::from_slice(packet).map_err(|_| Errno::EBADMSG)
    }
}

/// The most a message's context may carry: with the JSON around it, a
/// message must fit in one packet of [`Channel::recv`]'s buffer.
const MAX_CONTEXT: usize = 4096;

/// Cuts `context` (which may quote the config: a 100 kB hostname) to
/// [`MAX_CONTEXT`] bytes, at a char boundary, saying so.
fn fit(mut context: String) -> String {
    if context.len() > MAX_CONTEXT {
        let mut end = MAX_CONTEXT;
        while !context.is_char_boundary(end) {
            end -= 1;
        }
        context.truncate(end);
        context.push_str("… (cut)");
    }
    context
}

/// A child's failure, as the parent reports it.
pub fn init_error(errno: i32, context: String) -> Error {
    Error::Init {
        context,
        errno: (errno != 0).then(|| Errno::from_raw(errno)),
    }
}

pub struct Channel(OwnedFd);

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Channel {
    pub fn pair() -> nix::Result<(Channel, Channel)> {
        let (a, b) = socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Channel(a), Channel(b)))
    }

    /// Closes our end (the peer reads EOF) with close(2) alone: a debug
    /// build's drop of an OwnedFd checks the fd with fcntl first, which a
    /// seccomp profile may deny.
    pub fn close(self) {
        use std::os::fd::IntoRawFd;
        let fd = self.0.into_raw_fd();
        // SAFETY: we owned fd, and nothing else refers to it.
        unsafe { libc::close(fd) };
    }

    pub fn send(&self, msg: &Msg) -> nix::Result<()> {
        let data = msg.encode()?;
        loop {
            match socket::send(self.0.as_raw_fd(), &data, MsgFlags::MSG_NOSIGNAL) {
                Err(Errno::EINTR) => continue,
                r => return r.map(drop),
            }
        }
    }

    /// Sends `fd` (SCM_RIGHTS) in a packet of its own.
    pub fn send_fd(&self, fd: &OwnedFd) -> nix::Result<()> {
        use std::os::fd::AsFd;
        crate::sys::send_fd(self.0.as_fd(), b"fd", fd.as_fd())
    }

    /// Receives the fd a peer sent with `send_fd`.
    pub fn recv_fd(&self) -> nix::Result<OwnedFd> {
        crate::sys::recv_one_fd(self.0.as_fd(), &mut [0u8; 8])
    }

    /// Child side: blocks until the parent says `Continue`.
    pub fn wait_continue(&self) -> Result<()> {
        match self.recv() {
            Ok(Some(Msg::Continue)) => Ok(()),
            Ok(_) => Err(Error::sys("sync: runtime went away", Errno::EPIPE)),
            Err(e) => Err(Error::sys("sync: receive", e)),
        }
    }

    /// Child side: sends `msg` (and `fd` after it, for `SeccompListener`),
    /// then waits until the parent has done its part.
    pub fn ask(&self, msg: &Msg, fd: Option<&OwnedFd>) -> Result<()> {
        self.send(msg)
            .and_then(|()| fd.map_or(Ok(()), |fd| self.send_fd(fd)))
            .map_err(|e| Error::sys(format!("sync: send {msg:?}"), e))?;
        self.wait_continue()
    }

    /// Child side: sends `msg` and receives the fd the parent answers with
    /// after its `Continue`.
    pub fn ask_fd(&self, msg: &Msg) -> Result<OwnedFd> {
        self.ask(msg, None)?;
        self.recv_fd()
            .map_err(|e| Error::sys(format!("sync: receive the fd for {msg:?}"), e))
    }

    /// The next message; `None` when the peer closed its end.
    pub fn recv(&self) -> nix::Result<Option<Msg>> {
        let mut buf = [0u8; 8192];
        let n = loop {
            match socket::recv(self.0.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Err(Errno::EINTR) => continue,
                r => break r?,
            }
        };
        if n == 0 {
            return Ok(None);
        }
        Msg::decode(&buf[..n]).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_eof() {
        let (a, b) = Channel::pair().unwrap();
        a.send(&Msg::Failed {
            errno: 2,
            context: "mount /proc".into(),
        })
        .unwrap();
        a.send(&Msg::InitPid(42)).unwrap();
        assert_eq!(
            b.recv().unwrap(),
            Some(Msg::Failed {
                errno: 2,
                context: "mount /proc".into()
            })
        );
        assert_eq!(b.recv().unwrap(), Some(Msg::InitPid(42)));
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
    }

    #[test]
    fn huge_failure_fits_in_a_packet() {
        let (a, b) = Channel::pair().unwrap();
        let context = format!("hostname: sethostname {:?}", "é".repeat(50_000));
        a.send(&Msg::failed(crate::Error::sys(context, Errno::EINVAL)))
            .unwrap();
        match b.recv().unwrap() {
            Some(Msg::Failed { errno, context }) => {
                assert_eq!(errno, libc::EINVAL);
                assert!(context.starts_with("hostname: sethostname"));
                assert!(context.ends_with("(cut)"));
            }
            other => panic!("{other:?}"),
        }
    }
}
