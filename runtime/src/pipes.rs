//! A foreground process without a terminal gets pipes for its stdio, which
//! keel copies to and from its own, as runc's setupProcessPipes: the process
//! never holds the caller's files, and the pipes (owned by the container's
//! root, then by the process's user: the library's fixStdioPermissions) let
//! a non-root program reopen `/dev/stdout`.

use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
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

    /// Starts the copies: keel's stdin into the process's (closed at EOF;
    /// detached, as it may block on keel's stdin forever), the process's
    /// stdout and stderr to keel's. The handle ends when both reach EOF.
    pub fn copy(self) -> JoinHandle<()> {
        let mut to_stdin = std::fs::File::from(self.stdin);
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut to_stdin);
        });
        let out = pump(self.stdout, std::io::stdout);
        let err = pump(self.stderr, std::io::stderr);
        std::thread::spawn(move || {
            let _ = out.join();
            let _ = err.join();
        })
    }
}

/// Copies `from` to `to` as it comes, until EOF or a write fails.
fn pump<W: Write + 'static>(from: OwnedFd, to: fn() -> W) -> JoinHandle<()> {
    let mut from = std::fs::File::from(from);
    std::thread::spawn(move || {
        let mut to = to();
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
            let _ = to.flush();
        }
    })
}
