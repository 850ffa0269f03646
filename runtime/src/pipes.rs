//! A foreground process without a terminal gets pipes for its stdio, which
//! keel copies to and from its own, as runc's setupProcessPipes: the process
//! never holds the caller's files, and the pipes (owned by the container's
//! root, then by the process's user: the library's fixStdioPermissions) let
//! a non-root program reopen `/dev/stdout`.

use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::thread::JoinHandle;

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

    /// Starts the copies in one thread (a thread costs ~0.1 ms of every
    /// `run`): keel's stdin into the process's (closed at EOF), the
    /// process's stdout and stderr to keel's. The handle ends when both of
    /// those reach EOF, whatever keel's stdin does.
    pub fn copy(self) -> JoinHandle<()> {
        std::thread::spawn(move || relay(self))
    }
}

/// The copy loop. The process's stdin pipe is non-blocking and fed only as
/// it drains, so a process that does not read its stdin never stops its
/// stdout and stderr from being relayed.
fn relay(p: Pipes) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let _ = nix::fcntl::fcntl(
        &p.stdin,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    let keel_stdin = std::io::stdin();
    let mut to_stdin = Some(std::fs::File::from(p.stdin));
    let mut from = [
        Some(std::fs::File::from(p.stdout)),
        Some(std::fs::File::from(p.stderr)),
    ];
    let mut pending: Vec<u8> = Vec::new();
    let mut stdin_open = true;
    let mut buf = [0u8; 4096];
    while from.iter().any(Option::is_some) {
        let mut fds = Vec::with_capacity(3);
        let mut who = Vec::with_capacity(3);
        for (i, f) in from.iter().enumerate() {
            if let Some(f) = f {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                who.push(i);
            }
        }
        match &to_stdin {
            Some(w) if !pending.is_empty() => {
                fds.push(PollFd::new(w.as_fd(), PollFlags::POLLOUT));
                who.push(3);
            }
            Some(_) if stdin_open => {
                fds.push(PollFd::new(keel_stdin.as_fd(), PollFlags::POLLIN));
                who.push(2);
            }
            _ => {}
        }
        if poll(&mut fds, PollTimeout::NONE).is_err() {
            continue;
        }
        let ready: Vec<usize> = fds
            .iter()
            .zip(&who)
            .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, &i)| i)
            .collect();
        drop(fds);
        for i in ready {
            match i {
                0 | 1 => {
                    let n = from[i]
                        .as_mut()
                        .map_or(0, |f| f.read(&mut buf).unwrap_or(0));
                    let written = if i == 0 {
                        write_flush(&mut std::io::stdout(), &buf[..n])
                    } else {
                        write_flush(&mut std::io::stderr(), &buf[..n])
                    };
                    if n == 0 || !written {
                        from[i] = None;
                    }
                }
                // Straight from fd 0: Stdin's buffer would keep bytes that
                // poll cannot see.
                2 => match nix::unistd::read(keel_stdin.as_fd(), &mut buf) {
                    Ok(n) if n > 0 => pending.extend_from_slice(&buf[..n]),
                    _ => stdin_open = false,
                },
                _ => {
                    if let Some(w) = to_stdin.as_mut() {
                        match w.write(&pending) {
                            Ok(n) => drop(pending.drain(..n)),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(_) => {
                                pending.clear();
                                stdin_open = false;
                            }
                        }
                    }
                }
            }
        }
        if !stdin_open && pending.is_empty() {
            // EOF reaches the process when its stdin pipe closes.
            to_stdin = None;
        }
    }
}

/// Writes all of `data` and flushes; false when the caller's end is gone.
fn write_flush(to: &mut impl Write, data: &[u8]) -> bool {
    to.write_all(data).and_then(|()| to.flush()).is_ok()
}
