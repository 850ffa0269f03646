//! A process's stdio as containerd describes it: fifo paths, `file://` and
//! `binary://` log URIs, or a terminal.
//!
//! Without a terminal the process gets pipes of the shim's, as the runc
//! shim gives runc: stdin copied from its fifo into a pipe, stdout and
//! stderr copied from pipes into their fifos (or the log file). Being the
//! shim's, libkeel hands them to the process's user (runc's
//! fixStdioPermissions), so that a program running as another user than
//! root can open `/dev/stdout` again; containerd's fifos (root's, 0700)
//! and log files it could not. A `binary://` logger's pipes are the
//! shim's too; the process writes into them directly.
//!
//! stdin: the process must see EOF when the client closes its end, and a
//! fifo read before the client opened it would see EOF at once. stdout and
//! stderr: each fifo is opened O_RDWR (which never blocks) so that the
//! copy never waits for containerd's end nor gets EPIPE while the client
//! reconnects; it is closed at the pipe's EOF (the process and whatever
//! it started that kept its stdio are gone), which gives the client its
//! EOF after everything written.
//!
//! With a terminal the init sends the pty master over a console socket, and
//! the shim copies between the fifos and the master.
//!
//! Copies are `Pump`s driven by the shim's loop (non-blocking fds, no
//! thread): the shim has a single thread.

use anyhow::{bail, Context as _, Result};
use nix::fcntl::OFlag;
use nix::poll::PollFlags;
use nix::sys::stat::Mode;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::rc::Rc;

/// What containerd asked for.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// What the shim keeps for a process's IO.
#[derive(Default)]
pub struct Io {
    /// stdin fifo → the process's stdin pipe, or the pty master.
    pub stdin: Option<Pump>,
    /// pty master → stdout fifo.
    pub tty_out: Option<Pump>,
    /// The process's stdout and stderr pipes → their fifos or log file,
    /// until EOF.
    out: Option<Pump>,
    err: Option<Pump>,
    /// The pty master.
    pub console: Option<Rc<OwnedFd>>,
}

/// The fds to give the process, and what the shim keeps.
pub struct Prepared {
    pub stdio: Option<[OwnedFd; 3]>,
    /// (the shim's end, the end sent to the init)
    pub console_socket: Option<(OwnedFd, OwnedFd)>,
    pub io: Io,
}

pub fn open(path: &Path, flags: OFlag) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        flags | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .with_context(|| format!("open {}", path.display()))
}

fn null(flags: OFlag) -> Result<OwnedFd> {
    open(Path::new("/dev/null"), flags)
}

/// Sets up stdio for a process of container `id` in `namespace`.
pub fn prepare(spec: &Spec, id: &str, namespace: &str) -> Result<Prepared> {
    let mut io = Io::default();
    if spec.terminal {
        let (ours, theirs) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .context("console socketpair")?;
        return Ok(Prepared {
            stdio: None,
            console_socket: Some((ours, theirs)),
            io,
        });
    }
    let stdin = if spec.stdin.is_empty() {
        null(OFlag::O_RDONLY)?
    } else {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
        set_nonblocking(&w)?;
        // Non-blocking: opens at once; no POLLIN (nor EOF) before a
        // client has opened its end.
        let fifo = open(Path::new(&spec.stdin), OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
        io.stdin = Some(Pump::new(Rc::new(fifo), Rc::new(w)));
        r
    };
    let (stdout, stderr) = if let Some(rest) = spec.stdout.strip_prefix("binary://") {
        logger(rest, id, namespace)?
    } else {
        let (stdout, out) = output(&spec.stdout)?;
        let (stderr, err) = output(&spec.stderr)?;
        (io.out, io.err) = (out, err);
        (stdout, stderr)
    };
    Ok(Prepared {
        stdio: Some([stdin, stdout, stderr]),
        console_socket: None,
        io,
    })
}

/// The process's end for output `uri` and the copy to it (none for
/// /dev/null).
fn output(uri: &str) -> Result<(OwnedFd, Option<Pump>)> {
    if uri.is_empty() {
        return Ok((null(OFlag::O_WRONLY)?, None));
    }
    let dst = if let Some(path) = uri.strip_prefix("file://") {
        let path = Path::new(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
        }
        open(path, OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT)?
    } else {
        let path = uri.strip_prefix("fifo://").unwrap_or(uri);
        open(Path::new(path), OFlag::O_RDWR | OFlag::O_NONBLOCK)?
    };
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    set_nonblocking(&r)?;
    Ok((w, Some(Pump::new(Rc::new(r), Rc::new(dst)))))
}

/// `binary:///path?k=v`: containerd's logging-binary protocol. The binary
/// reads the process's stdout on fd 3 and stderr on fd 4, and closes (or
/// writes to) fd 5 once ready; the process writes into the pipes directly.
fn logger(rest: &str, id: &str, namespace: &str) -> Result<(OwnedFd, OwnedFd)> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() {
        bail!("binary:// log URI without a path");
    }
    let mut args = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        args.push(format!("-{}", unescape(k)));
        if !v.is_empty() {
            args.push(unescape(v));
        }
    }
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    let (ready_r, ready_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    let fds = [out_r.as_raw_fd(), err_r.as_raw_fd(), ready_w.as_raw_fd()];
    let mut cmd = std::process::Command::new(path);
    cmd.args(&args)
        .env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", namespace)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: signal, dup2 and fcntl are async-signal-safe. A source
    // already on its target keeps its close-on-exec flag through dup2, so
    // that flag is cleared instead.
    unsafe {
        cmd.pre_exec(move || {
            // The shim ignores these; the logger must not.
            for sig in [libc::SIGTERM, libc::SIGINT] {
                libc::signal(sig, libc::SIG_DFL);
            }
            for (target, fd) in fds.iter().enumerate() {
                let target = 3 + target as i32;
                if *fd == target {
                    if libc::fcntl(target, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(*fd, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    // The pipe fds must not sit on 3..5 where dup2 would clobber one
    // another; they were created after stdio and the shim's own fds, so
    // they are higher in practice; make sure of it.
    if fds.iter().any(|&fd| fd <= 5) {
        bail!("logging binary: pipe fds unexpectedly low");
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("start logging binary {path}"))?;
    drop((out_r, err_r, ready_w));
    // Ready when the binary writes a byte or closes fd 5.
    let mut b = [0u8; 1];
    let _ = File::from(ready_r).read(&mut b);
    // The shim's SIGCHLD reaper collects it when it exits.
    drop(child);
    Ok((out_w, err_w))
}

/// Percent-decoding of URI query parts.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Io {
    /// With a terminal: takes the pty master from the console socket and
    /// copies between it and the fifos.
    pub fn attach_console(&mut self, spec: &Spec, socket: &OwnedFd) -> Result<()> {
        let master = libkeel::console::receive_master(socket).context("receive the pty master")?;
        set_nonblocking(&master)?;
        let master = Rc::new(master);
        if !spec.stdin.is_empty() {
            // O_RDWR: a terminal's stdin outlives a client that detaches;
            // CloseIO ends it.
            let src = open(Path::new(&spec.stdin), OFlag::O_RDWR | OFlag::O_NONBLOCK)?;
            self.stdin = Some(Pump::new(Rc::new(src), master.clone()));
        }
        if !spec.stdout.is_empty() {
            // O_RDWR: never waits for the client, never EPIPE.
            let dst = open(Path::new(&spec.stdout), OFlag::O_RDWR | OFlag::O_NONBLOCK)?;
            self.tty_out = Some(Pump::new(master.clone(), Rc::new(dst)));
        }
        self.console = Some(master);
        Ok(())
    }

    /// CloseIO: the client closed stdin. What it wrote still goes to the
    /// process, then the process's stdin closes (EOF).
    pub fn close_stdin(&mut self) {
        if let Some(mut p) = self.stdin.take() {
            if p.drain() {
                self.stdin = Some(p);
            }
        }
    }

    /// At exit: stdin goes; stdout and stderr are copied on until their
    /// pipes' EOF, once the process's own descendants let go too.
    pub fn exited(&mut self) {
        self.stdin = None;
    }

    /// At delete: what the output pipes hold now is copied, then
    /// everything goes (the runc shim too gives up on output still held
    /// open by a process that outlived its exec).
    pub fn close(&mut self) {
        for p in [&mut self.out, &mut self.err].into_iter().flatten() {
            p.drain();
        }
        (self.stdin, self.out, self.err) = (None, None, None);
    }

    /// The pumps, in a stable order (the loop polls them by index).
    pub fn pumps(&self) -> impl Iterator<Item = &Pump> {
        self.stdin
            .iter()
            .chain(self.tty_out.iter())
            .chain(self.out.iter())
            .chain(self.err.iter())
    }

    /// Runs the pumps whose fds are ready (`ready`, in `pumps()` order,
    /// consumed from the front).
    pub fn run_pumps(&mut self, ready: &mut impl Iterator<Item = bool>) {
        for slot in [
            &mut self.stdin,
            &mut self.tty_out,
            &mut self.out,
            &mut self.err,
        ] {
            if slot.is_some() && ready.next().unwrap_or(false) {
                let alive = slot.as_mut().is_some_and(Pump::ready);
                if !alive {
                    *slot = None;
                }
            }
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).context("F_GETFL")?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).context("F_SETFL")?;
    Ok(())
}

/// A copy from `src` to `dst` (both non-blocking), a chunk at a time as
/// the loop finds them ready. What `dst` does not take yet waits in
/// `pending`, and `src` is not read meanwhile.
pub struct Pump {
    src: Rc<OwnedFd>,
    dst: Rc<OwnedFd>,
    pending: Vec<u8>,
    /// Ends once `src` has nothing more to give right now (CloseIO).
    draining: bool,
}

const CHUNK: usize = 16 * 1024;

impl Pump {
    fn new(src: Rc<OwnedFd>, dst: Rc<OwnedFd>) -> Pump {
        Pump {
            src,
            dst,
            pending: Vec::new(),
            draining: false,
        }
    }

    /// The fd to poll and the event awaited.
    pub fn interest(&self) -> (BorrowedFd<'_>, PollFlags) {
        if self.pending.is_empty() {
            (self.src.as_fd(), PollFlags::POLLIN)
        } else {
            (self.dst.as_fd(), PollFlags::POLLOUT)
        }
    }

    /// Copies what it can without blocking; false once done (EOF on
    /// `src`, `dst` gone, or drained).
    pub fn ready(&mut self) -> bool {
        use nix::errno::Errno;
        let mut buf = [0u8; CHUNK];
        // A few chunks per turn, so that one busy stream does not starve
        // the loop.
        for _ in 0..8 {
            while !self.pending.is_empty() {
                match nix::unistd::write(&*self.dst, &self.pending) {
                    Ok(n) => {
                        self.pending.drain(..n);
                    }
                    Err(Errno::EAGAIN) => return true,
                    Err(Errno::EINTR) => {}
                    Err(_) => return false,
                }
            }
            self.pending = Vec::new();
            let n = match nix::unistd::read(&*self.src, &mut buf) {
                Ok(0) => return false,
                Ok(n) => n,
                Err(Errno::EAGAIN) => return !self.draining,
                Err(Errno::EINTR) => continue,
                // EIO: the pty's slave side is closed.
                Err(_) => return false,
            };
            self.pending.extend_from_slice(&buf[..n]);
        }
        true
    }

    /// Takes what `src` holds now, then ends; false if done already.
    fn drain(&mut self) -> bool {
        self.draining = true;
        self.ready()
    }
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn unescapes_query_parts() {
        assert_eq!(unescape("a%20b+c"), "a b c");
        assert_eq!(unescape("100%"), "100%");
        assert_eq!(unescape("%2Fvar%2flog"), "/var/log");
    }
}
