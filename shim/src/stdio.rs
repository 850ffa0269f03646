//! A process's stdio as containerd describes it: fifo paths, `file://` and
//! `binary://` log URIs, or a terminal.
//!
//! Without a terminal the container gets the stdout/stderr fifos (or the
//! log file, or the logger's pipes) as its own stdio: no copy goes through
//! the shim, which costs neither threads nor memory. The shim keeps each of
//! those fifos open once more (O_RDWR, which never blocks) so that opening
//! never waits for containerd's end and the container never gets EPIPE
//! while the client reconnects; the holders close when the process exits,
//! which gives the client its EOF.
//!
//! stdin is copied by a thread from the fifo into a pipe, as the runc shim
//! does: the process must see EOF when the client closes its end, and a
//! fifo read before the client opened it would see EOF at once.
//!
//! With a terminal the init sends the pty master over a console socket; two
//! threads copy between the fifos and the master.

use anyhow::{bail, Context as _, Result};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::Arc;

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
    /// The stdin fifo, whose copier CloseIO makes sure to release.
    stdin_fifo: Option<String>,
    /// The stop pipe of the stdin copier with a terminal.
    stdin_stop: Option<OwnedFd>,
    /// stdout/stderr fifo holders, closed when the process exits.
    outputs: Vec<OwnedFd>,
    /// The pty master.
    pub console: Option<Arc<File>>,
}

/// The fds to give the process, and what the shim keeps.
pub struct Prepared {
    pub stdio: Option<[OwnedFd; 3]>,
    /// (the shim's end, the end sent to the init)
    pub console_socket: Option<(OwnedFd, OwnedFd)>,
    pub io: Io,
}

fn open(path: &Path, flags: OFlag) -> Result<OwnedFd> {
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

/// Opens one fifo end for the process (`flags`) plus the shim's holder.
fn fifo(path: &str, flags: OFlag) -> Result<(OwnedFd, OwnedFd)> {
    let holder = open(Path::new(path), OFlag::O_RDWR)?;
    let end = open(Path::new(path), flags)?;
    Ok((end, holder))
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
        let path = spec.stdin.clone();
        spawn_copier(move || copy_fifo_to_pipe(&path, File::from(w)))?;
        io.stdin_fifo = Some(spec.stdin.clone());
        r
    };
    let (stdout, stderr) = if let Some(rest) = spec.stdout.strip_prefix("binary://") {
        logger(rest, id, namespace)?
    } else {
        (
            output(&spec.stdout, &mut io)?,
            output(&spec.stderr, &mut io)?,
        )
    };
    Ok(Prepared {
        stdio: Some([stdin, stdout, stderr]),
        console_socket: None,
        io,
    })
}

fn output(uri: &str, io: &mut Io) -> Result<OwnedFd> {
    if uri.is_empty() {
        return null(OFlag::O_WRONLY);
    }
    if let Some(path) = uri.strip_prefix("file://") {
        let path = Path::new(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
        }
        return open(path, OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT);
    }
    let path = uri.strip_prefix("fifo://").unwrap_or(uri);
    let (end, holder) = fifo(path, OFlag::O_WRONLY)?;
    io.outputs.push(holder);
    Ok(end)
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
            // The shim ignores these and auto-reaps; the logger must not.
            for sig in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT] {
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
    /// starts the copies between it and the fifos.
    pub fn attach_console(&mut self, spec: &Spec, socket: &OwnedFd) -> Result<()> {
        let master = Arc::new(File::from(
            libkeel::console::receive_master(socket).context("receive the pty master")?,
        ));
        if !spec.stdin.is_empty() {
            let src = open(Path::new(&spec.stdin), OFlag::O_RDWR)?;
            let (stop_r, stop_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
            let dst = master.clone();
            spawn_copier(move || copy_stdin(src, stop_r, &dst))?;
            self.stdin_stop = Some(stop_w);
        }
        if !spec.stdout.is_empty() {
            let dst = File::from(open(Path::new(&spec.stdout), OFlag::O_RDWR)?);
            let src = master.clone();
            spawn_copier(move || copy_out(&src, dst))?;
        }
        self.console = Some(master);
        Ok(())
    }

    /// CloseIO: the client closed stdin. The copier then reads EOF, unless
    /// it still waits in open() for a client that never came: a writer
    /// that comes and goes releases it.
    pub fn close_stdin(&mut self) {
        self.stdin_stop = None;
        if let Some(path) = self.stdin_fifo.take() {
            let _ = open(Path::new(&path), OFlag::O_WRONLY | OFlag::O_NONBLOCK);
        }
    }

    /// At exit: the readers of stdout/stderr get EOF once the process's
    /// own descendants let go too.
    pub fn close(&mut self) {
        self.close_stdin();
        self.outputs.clear();
    }
}

fn spawn_copier(f: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name("tty-copy".into())
        .stack_size(64 * 1024)
        .spawn(f)
        .context("spawn a copy thread")?;
    Ok(())
}

/// stdin fifo → the process's stdin pipe, until EOF or the process is gone
/// (EPIPE). Opening waits for the client's end.
fn copy_fifo_to_pipe(path: &str, mut dst: File) {
    let Ok(src) = open(Path::new(path), OFlag::O_RDONLY) else {
        return;
    };
    let mut src = File::from(src);
    let mut buf = [0u8; 8192];
    loop {
        match src.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if dst.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// fifo → pty master, until the stop pipe closes.
fn copy_stdin(src: OwnedFd, stop: OwnedFd, dst: &File) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = [
            PollFd::new(src.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
            Ok(_) => {}
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            return;
        }
        match nix::unistd::read(&src, &mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if (&*dst).write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
            Err(_) => return,
        }
    }
}

/// pty master → fifo, until the slave side is gone (EIO).
fn copy_out(src: &File, mut dst: File) {
    let mut buf = [0u8; 8192];
    loop {
        match (&*src).read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if dst.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
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
