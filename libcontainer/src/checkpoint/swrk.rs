//! A conversation with `criu swrk`: CRIU as keel's child, serving requests
//! on a SOCK_SEQPACKET socket (one protobuf message per packet), as runc
//! and crun drive it.

use super::rpc::{ReqType, Request, Response};
use crate::error::{Error, Result, SysContext};
use nix::sys::socket::{
    recvmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `criu swrk`.
pub(crate) struct Criu {
    child: Child,
    sock: OwnedFd,
}

/// What CRIU tells its caller between request and response.
pub(crate) struct Notice<'a> {
    pub script: &'a str,
    pub pid: i32,
    /// An fd sent along (the pty master of `orphan-pts-master`).
    pub fd: Option<OwnedFd>,
}

/// Fds handed to CRIU above its socket (fd 3): the first is fd 4 in CRIU.
pub(crate) const FIRST_EXTRA_FD: i32 = 4;

impl Criu {
    /// Starts `criu swrk 3`. `stdio` become CRIU's (and so what a restored
    /// process's inherited pipes are rewired to); `extra` are fd 4, 5, …
    pub fn spawn(criu: &Path, stdio: Option<&[OwnedFd; 3]>, extra: &[OwnedFd]) -> Result<Criu> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .ctx(|| "socketpair for criu swrk".into())?;
        // Moved out of the way of the numbers they get in CRIU, so that no
        // dup2 below overwrites a source before it is copied.
        let high = |fd: &OwnedFd| {
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(100))
                // SAFETY: F_DUPFD_CLOEXEC returned a new fd that we own.
                .map(|raw| unsafe { OwnedFd::from_raw_fd(raw) })
                .ctx(|| "dup an fd for criu".into())
        };
        let mut moved = vec![high(&theirs)?];
        for fd in extra {
            moved.push(high(fd)?);
        }
        let sources: Vec<RawFd> = moved.iter().map(|f| f.as_raw_fd()).collect();
        let mut cmd = Command::new(criu);
        cmd.args(["swrk", "3"]);
        if let Some([i, o, e]) = stdio {
            let dup = |fd: &OwnedFd| fd.try_clone().ctx(|| "dup stdio for criu".into());
            cmd.stdin(Stdio::from(dup(i)?))
                .stdout(Stdio::from(dup(o)?))
                .stderr(Stdio::from(dup(e)?));
        }
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                for (n, &src) in sources.iter().enumerate() {
                    if libc::dup2(src, 3 + n as RawFd) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // The caller may block signals to forward them (a
                // foreground restore): CRIU needs its own, and the restored
                // tasks get theirs from the images.
                let mut none: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut none);
                libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
                // Signals the caller ignores stay ignored across execve
                // (a shim ignores SIGTERM and SIGPIPE): CRIU stops its
                // helpers with signals, and would wait for them forever.
                for sig in 1..libc::SIGRTMIN() {
                    if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                        libc::signal(sig, libc::SIG_DFL);
                    }
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("exec {} swrk", criu.display()), e))?;
        Ok(Criu { child, sock: ours })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `req`, acknowledges each notification after `notice` handled
    /// it, and returns CRIU's final response (an error if it failed).
    pub fn call(
        &mut self,
        req: &Request,
        log: &Path,
        mut notice: impl FnMut(Notice<'_>) -> Result<()>,
    ) -> Result<Response> {
        self.send(&req.encode())?;
        loop {
            let (resp, fd) = self.receive()?;
            if !resp.success {
                return Err(Error::Criu {
                    op: resp.typ.unwrap_or(req.typ).to_string(),
                    errno: resp.cr_errno.unwrap_or(0),
                    quote: quote_errors(log),
                });
            }
            if resp.typ != Some(ReqType::Notify) {
                return Ok(resp);
            }
            let (script, pid) = resp.notify.clone().unwrap_or_default();
            notice(Notice {
                script: &script,
                pid,
                fd,
            })?;
            self.send(
                &Request {
                    typ: ReqType::Notify,
                    opts: None,
                    notify_success: true,
                    features: None,
                }
                .encode(),
            )?;
        }
    }

    fn send(&self, msg: &[u8]) -> Result<()> {
        nix::sys::socket::send(self.sock.as_raw_fd(), msg, MsgFlags::MSG_NOSIGNAL)
            .ctx(|| "send a request to criu".into())?;
        Ok(())
    }

    fn receive(&self) -> Result<(Response, Option<OwnedFd>)> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = loop {
            match recvmsg::<()>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => break r.ctx(|| "read criu's response".into())?,
            }
        };
        let mut fds = Vec::new();
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    // SAFETY: the kernel just installed these fds for us.
                    fds.extend(
                        raw.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
        }
        let n = msg.bytes;
        if n == 0 {
            return Err(Error::CriuProtocol("criu exited without answering".into()));
        }
        let resp = Response::decode(&buf[..n])
            .ok_or_else(|| Error::CriuProtocol("undecodable response from criu".into()))?;
        Ok((resp, fds.pop()))
    }

    /// Ends the conversation and waits for CRIU to exit.
    pub fn finish(mut self) -> Result<()> {
        let _ =
            nix::sys::socket::shutdown(self.sock.as_raw_fd(), nix::sys::socket::Shutdown::Write);
        let status = self.child.wait().ctx(|| "wait for criu".into())?;
        if !status.success() {
            return Err(Error::CriuProtocol(format!("criu failed: {status}")));
        }
        Ok(())
    }
}

impl Drop for Criu {
    /// A conversation abandoned on an error: CRIU sees the socket close and
    /// exits (it undoes a half-done restore itself); it is reaped here.
    fn drop(&mut self) {
        let _ = nix::sys::socket::shutdown(self.sock.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        let _ = self.child.wait();
    }
}

/// The lines of CRIU's log that say "Error", with the five before each, as
/// runc quotes them (`logCriuErrors`); empty if the log is unreadable.
pub(crate) fn quote_errors(log: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(log) else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut keep = vec![false; lines.len()];
    for (i, l) in lines.iter().enumerate() {
        if l.contains("Error") {
            keep[i.saturating_sub(5)..=i]
                .iter_mut()
                .for_each(|k| *k = true);
        }
    }
    let mut out = String::new();
    let mut last = None;
    for (i, l) in lines.iter().enumerate().filter(|(i, _)| keep[*i]) {
        if last.is_some_and(|p| p + 1 != i) {
            out.push_str("\n...");
        }
        out.push_str(&format!("\n{}:{l}", i + 1));
        last = Some(i);
    }
    if out.is_empty() {
        return out;
    }
    format!("\n--- Quoting {}{out}\n---", log.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_error_lines_with_context() {
        let dir = std::env::temp_dir().join(format!("keel-criu-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("dump.log");
        let text: String = (1..=20)
            .map(|i| {
                if i == 8 || i == 18 {
                    format!("line {i} Error (x.c:1): bad\n")
                } else {
                    format!("line {i}\n")
                }
            })
            .collect();
        std::fs::write(&log, text).unwrap();
        let q = quote_errors(&log);
        std::fs::remove_dir_all(&dir).unwrap();
        let numbers: Vec<&str> = q
            .lines()
            .filter_map(|l| l.split(':').next())
            .filter(|n| n.parse::<u32>().is_ok())
            .collect();
        assert_eq!(
            numbers,
            ["3", "4", "5", "6", "7", "8", "13", "14", "15", "16", "17", "18"]
        );
        assert!(q.contains("\n...\n"));
        assert!(quote_errors(Path::new("/nonexistent/log")).is_empty());
    }
}
