//! A foreground process without a terminal gets pipes for its stdio, which
//! keel copies to and from its own, as runc's setupProcessPipes: the process
//! never holds the caller's files, and the pipes (owned by the container's
//! root, then by the process's user: the library's fixStdioPermissions) let
//! a non-root program reopen `/dev/stdout`.

use anyhow::{Context, Result};
use nix::poll::PollFlags;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// keel's ends of the three pipes.
pub struct Pipes {
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

impl Pipes {
    /// The pipes, and the process's ends (stdin, stdout, stderr) owned by
    /// `owner` (the container's root on the host).
    pub fn new(owner: (u32, u32)) -> Result<(Pipes, [OwnedFd; 3])> {
        let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe for stdio");
        let (in_r, in_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let theirs = [in_r, out_w, err_w];
        for fd in &theirs {
            match nix::unistd::fchown(
                fd,
                Some(nix::unistd::Uid::from_raw(owner.0)),
                Some(nix::unistd::Gid::from_raw(owner.1)),
            ) {
                // An unprivileged keel may not give its pipes to a subordinate
                // id (runc fails here): the process can still use them, it
                // just cannot reopen them as another user.
                Ok(()) | Err(nix::errno::Errno::EPERM) => {}
                Err(e) => {
                    return Err(e).context("chown a stdio pipe to the container's root");
                }
            }
        }
        let ours = Pipes {
            stdin: in_w,
            stdout: out_r,
            stderr: err_r,
        };
        Ok((ours, theirs))
    }
}

/// The copies, served from the caller's wait loop (no thread: its
/// start-up was most of what relaying cost a `run`): keel's stdin into
/// the process's (closed at EOF), the process's stdout and stderr to
/// keel's. Done when both of those reach EOF, whatever keel's stdin does.
/// The process's stdin pipe is non-blocking and fed only as it drains, so
/// a process that does not read its stdin never stops its stdout and
/// stderr from being relayed.
pub struct Relay {
    keel_stdin: std::io::Stdin,
    to_stdin: Option<std::fs::File>,
    from: [Option<std::fs::File>; 2],
    pending: Vec<u8>,
    stdin_open: bool,
}

/// What a polled fd of the relay is for.
#[derive(Clone, Copy)]
pub enum Role {
    Output(usize),
    KeelStdin,
    ProcessStdin,
}

impl Relay {
    pub fn new(p: Pipes) -> Relay {
        let _ = nix::fcntl::fcntl(
            &p.stdin,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
        Relay {
            keel_stdin: std::io::stdin(),
            to_stdin: Some(std::fs::File::from(p.stdin)),
            from: [
                Some(std::fs::File::from(p.stdout)),
                Some(std::fs::File::from(p.stderr)),
            ],
            pending: Vec::new(),
            stdin_open: true,
        }
    }

    /// Both of the process's outputs reached EOF.
    pub fn done(&self) -> bool {
        self.from.iter().all(Option::is_none)
    }

    /// The fds to poll now, with what each is for.
    pub fn interest(&self) -> Vec<(BorrowedFd<'_>, PollFlags, Role)> {
        let mut out = Vec::with_capacity(3);
        for (i, f) in self.from.iter().enumerate() {
            if let Some(f) = f {
                out.push((f.as_fd(), PollFlags::POLLIN, Role::Output(i)));
            }
        }
        match &self.to_stdin {
            Some(w) if !self.pending.is_empty() => {
                out.push((w.as_fd(), PollFlags::POLLOUT, Role::ProcessStdin));
            }
            // Straight from fd 0: Stdin's buffer would keep bytes that
            // poll cannot see.
            Some(_) if self.stdin_open => {
                out.push((self.keel_stdin.as_fd(), PollFlags::POLLIN, Role::KeelStdin));
            }
            _ => {}
        }
        out
    }

    /// Moves what the ready fds have.
    pub fn serve(&mut self, ready: &[Role]) {
        let mut buf = [0u8; 4096];
        for role in ready {
            match *role {
                Role::Output(i) => {
                    let n = self.from[i]
                        .as_mut()
                        .map_or(0, |f| f.read(&mut buf).unwrap_or(0));
                    let written = if i == 0 {
                        write_flush(&mut std::io::stdout(), &buf[..n])
                    } else {
                        write_flush(&mut std::io::stderr(), &buf[..n])
                    };
                    if n == 0 || !written {
                        self.from[i] = None;
                    }
                }
                Role::KeelStdin => match nix::unistd::read(self.keel_stdin.as_fd(), &mut buf) {
                    Ok(n) if n > 0 => self.pending.extend_from_slice(&buf[..n]),
                    _ => self.stdin_open = false,
                },
                Role::ProcessStdin => {
                    if let Some(w) = self.to_stdin.as_mut() {
                        match w.write(&self.pending) {
                            Ok(n) => drop(self.pending.drain(..n)),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(_) => {
                                self.pending.clear();
                                self.stdin_open = false;
                            }
                        }
                    }
                }
            }
        }
        if !self.stdin_open && self.pending.is_empty() {
            // EOF reaches the process when its stdin pipe closes.
            self.to_stdin = None;
        }
    }
}

/// Writes all of `data` and flushes; false when the caller's end is gone.
fn write_flush(to: &mut impl Write, data: &[u8]) -> bool {
    to.write_all(data).and_then(|()| to.flush()).is_ok()
}
