//! The zygote: a single-threaded helper forked by the shim before it starts
//! any thread (ttrpc, signals, events). libkeel's create and exec fork a
//! child that runs ordinary Rust code (allocation, mounts, hooks) before
//! execve, which is only sound from a single-threaded process: in a
//! multi-threaded one a lock held by another thread at fork time (malloc's,
//! stdio's, the logger's) stays locked forever in the child. So every fork
//! happens here, and the shim's threads only talk to the zygote over a
//! SOCK_SEQPACKET pair (JSON requests, stdio fds by SCM_RIGHTS).
//!
//! The zygote is also the parent and subreaper of every container process:
//! it reaps them and reports each exit (pid, status) on the same socket, in
//! order with its replies, so the shim never loses an exit.

use anyhow::{anyhow, bail, Context as _, Result};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use serde::{Deserialize, Serialize};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};

/// Requests fit in a datagram; a process spec with a huge environment is
/// the largest thing sent.
const MAX_MSG: usize = 1 << 20;

/// One mount of the container's rootfs, as containerd hands it over.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootfsMount {
    pub typ: String,
    pub source: String,
    pub options: Vec<String>,
}

/// Which fds travel with a request, in this order: stdin, stdout, stderr
/// (all three or none), then the console socket.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Fds {
    pub stdio: bool,
    pub console: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Create {
        id: String,
        bundle: PathBuf,
        root: PathBuf,
        rootfs: Vec<RootfsMount>,
        no_pivot: bool,
        no_new_keyring: bool,
        systemd_cgroup: bool,
        fds: Fds,
    },
    Exec {
        id: String,
        root: PathBuf,
        process: Box<libkeel::oci_spec::runtime::Process>,
        fds: Fds,
    },
}

#[derive(Debug, Serialize, Deserialize)]
enum Message {
    /// The process runs (created init or exec'd process); a pidfd follows.
    Done {
        pid: i32,
    },
    Failed {
        error: String,
    },
    /// A child of the zygote was reaped; `status` as containerd wants it
    /// (exit code, or 128 + signal).
    Exited {
        pid: i32,
        status: i32,
    },
}

/// A created process: its host pid and a pidfd pinning it.
pub struct Spawned {
    pub pid: i32,
    pub pidfd: Option<OwnedFd>,
}

/// The shim's end.
pub struct Zygote {
    sock: OwnedFd,
    /// One request at a time; replies come in order.
    request: Mutex<Option<mpsc::Receiver<Result<Spawned>>>>,
}

/// Forks the zygote. Must be called while the process is single-threaded.
pub fn fork() -> Result<(Zygote, ZygoteEvents)> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("socketpair for the zygote")?;
    let shim = nix::unistd::getpid();
    // SAFETY: the caller guarantees a single thread; the child never
    // returns into the shim's code.
    match unsafe { nix::unistd::fork() }.context("fork the zygote")? {
        nix::unistd::ForkResult::Child => {
            drop(ours);
            let code = match serve(theirs, shim) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            // SAFETY: leave without the shim's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { .. } => {}
    }
    drop(theirs);
    let (tx, rx) = mpsc::channel();
    let reader = ours.try_clone().context("dup the zygote socket")?;
    Ok((
        Zygote {
            sock: ours,
            request: Mutex::new(Some(rx)),
        },
        ZygoteEvents { sock: reader, tx },
    ))
}

impl Zygote {
    /// Sends `req` with its fds and waits for the process to run.
    pub fn call(&self, req: &Request, fds: &[&OwnedFd]) -> Result<Spawned> {
        let mut guard = self
            .request
            .lock()
            .map_err(|_| anyhow!("zygote lock poisoned"))?;
        let rx = guard
            .as_mut()
            .ok_or_else(|| anyhow!("the zygote is gone"))?;
        let body = serde_json::to_vec(req)?;
        send(&self.sock, &body, fds).context("send to the zygote")?;
        match rx.recv() {
            Ok(r) => r,
            Err(_) => {
                *guard = None;
                bail!("the zygote exited")
            }
        }
    }
}

/// Reads the zygote's messages: replies go to the waiting caller, exits to
/// `on_exit`. Runs on a thread of its own.
pub struct ZygoteEvents {
    sock: OwnedFd,
    tx: mpsc::Sender<Result<Spawned>>,
}

impl ZygoteEvents {
    pub fn run(self, on_exit: impl Fn(i32, i32)) {
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, mut fds) = match recv(&self.sock, &mut buf) {
                Ok(r) => r,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    log::error!("zygote socket: {e}");
                    return;
                }
            };
            if n == 0 {
                log::error!("the zygote exited");
                return;
            }
            match serde_json::from_slice::<Message>(&buf[..n]) {
                Ok(Message::Exited { pid, status }) => on_exit(pid, status),
                Ok(Message::Done { pid }) => {
                    let _ = self.tx.send(Ok(Spawned {
                        pid,
                        pidfd: fds.pop(),
                    }));
                }
                Ok(Message::Failed { error }) => {
                    let _ = self.tx.send(Err(anyhow!(error)));
                }
                Err(e) => log::error!("zygote message: {e}"),
            }
        }
    }
}

fn send(sock: &OwnedFd, body: &[u8], fds: &[&OwnedFd]) -> nix::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsg };
    let iov = [IoSlice::new(body)];
    sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None).map(drop)
}

fn recv(sock: &OwnedFd, buf: &mut [u8]) -> nix::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 8]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(list) = c {
            // SAFETY: the kernel installed these fds for us.
            fds.extend(
                list.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    Ok((msg.bytes, fds))
}

/// The zygote's life: requests and reaping until the shim goes away.
fn serve(sock: OwnedFd, shim: nix::unistd::Pid) -> Result<()> {
    // Dies with the shim; the check closes the race with an early death.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    if nix::unistd::getppid() != shim {
        return Ok(());
    }
    // Orphans of the containers (double-forked inits, daemons of a
    // container in the host pid namespace) come to us to be reaped.
    nix::sys::prctl::set_child_subreaper(true)?;
    detach_fds(&sock)?;
    // The shim's signal handlers write to its self-pipe, closed here.
    let dfl = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::SigDfl,
        nix::sys::signal::SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGPIPE] {
        // SAFETY: installing SIG_DFL.
        unsafe { nix::sys::signal::sigaction(sig, &dfl) }?;
    }
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    chld.thread_block()?;
    let sfd = nix::sys::signalfd::SignalFd::with_flags(
        &chld,
        nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
    )?;
    let mut buf = vec![0u8; MAX_MSG];
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    loop {
        let (sock_ready, chld_ready) = {
            let mut fds = [
                PollFd::new(sock.as_fd(), PollFlags::POLLIN),
                PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => r?,
            };
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if chld_ready {
            while let Ok(Some(_)) = sfd.read_signal() {}
            reap(&sock)?;
        }
        if sock_ready {
            let (n, fds) = match recv(&sock, &mut buf) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => r?,
            };
            if n == 0 {
                return Ok(());
            }
            let reply = match serde_json::from_slice::<Request>(&buf[..n]) {
                Ok(req) => handle(req, fds),
                Err(e) => Err(anyhow!("bad request: {e}")),
            };
            match reply {
                Ok((pid, pidfd)) => {
                    let body = serde_json::to_vec(&Message::Done { pid })?;
                    let fds: Vec<&OwnedFd> = pidfd.iter().collect();
                    send(&sock, &body, &fds)?;
                }
                Err(e) => {
                    let body = serde_json::to_vec(&Message::Failed {
                        error: format!("{e:#}"),
                    })?;
                    send(&sock, &body, &[])?;
                }
            }
        }
    }
}

/// stdio on /dev/null (the shim's stdout is the pipe `start` waits on to
/// close) and every other inherited fd closed but the socket.
fn detach_fds(sock: &OwnedFd) -> Result<()> {
    let null = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDWR,
        nix::sys::stat::Mode::empty(),
    )?;
    for target in 0..3 {
        // SAFETY: dup2 onto our own stdio numbers.
        nix::errno::Errno::result(unsafe { libc::dup2(null.as_raw_fd(), target) })?;
    }
    drop(null);
    let keep = sock.as_raw_fd();
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    for fd in open.into_iter().filter(|&fd| fd > 2 && fd != keep) {
        // SAFETY: closing fds nothing in this process uses any more (the
        // read_dir handle is already closed, and EBADF is harmless).
        unsafe { libc::close(fd) };
    }
    Ok(())
}

fn reap(sock: &OwnedFd) -> Result<()> {
    loop {
        let (pid, status) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, code),
            Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return Ok(()),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let body = serde_json::to_vec(&Message::Exited {
            pid: pid.as_raw(),
            status,
        })?;
        send(sock, &body, &[])?;
    }
}

fn handle(req: Request, fds: Vec<OwnedFd>) -> Result<(i32, Option<OwnedFd>)> {
    let pid = match req {
        Request::Create {
            id,
            bundle,
            root,
            rootfs,
            no_pivot,
            no_new_keyring,
            systemd_cgroup,
            fds: which,
        } => {
            let (stdio, console) = split_fds(fds, which)?;
            let target = bundle.join("rootfs");
            mount_rootfs(&rootfs, &target)?;
            let mut b = libkeel::ContainerBuilder::new(id, &bundle)
                .root(root)
                .no_pivot(no_pivot)
                .no_new_keyring(no_new_keyring)
                .systemd_cgroup(systemd_cgroup);
            if let Some([i, o, e]) = stdio {
                b = b.stdio(i, o, e);
            }
            if let Some(c) = console {
                b = b.console_socket(c);
            }
            match b.create() {
                Ok(c) => c.pid(),
                Err(e) => {
                    if !rootfs.is_empty() {
                        let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
                    }
                    return Err(e.into());
                }
            }
        }
        Request::Exec {
            id,
            root,
            process,
            fds: which,
        } => {
            let (stdio, console) = split_fds(fds, which)?;
            let c = libkeel::Container::load(&root, &id)?;
            c.exec(
                &process,
                libkeel::ExecOptions {
                    console_socket: console,
                    stdio,
                    ..Default::default()
                },
            )?
        }
    };
    let pidfd = pidfd_open(pid).ok();
    Ok((pid, pidfd))
}

type SplitFds = (Option<[OwnedFd; 3]>, Option<OwnedFd>);

fn split_fds(fds: Vec<OwnedFd>, which: Fds) -> Result<SplitFds> {
    let want = if which.stdio { 3 } else { 0 } + usize::from(which.console);
    if fds.len() != want {
        bail!("expected {want} fds, got {}", fds.len());
    }
    let mut it = fds.into_iter();
    let stdio = if which.stdio {
        match (it.next(), it.next(), it.next()) {
            (Some(i), Some(o), Some(e)) => Some([i, o, e]),
            _ => bail!("missing stdio fds"),
        }
    } else {
        None
    };
    Ok((stdio, it.next()))
}

/// Mounts containerd's rootfs mounts (usually one overlay) on the bundle's
/// rootfs, as the runc shim does.
fn mount_rootfs(mounts: &[RootfsMount], target: &Path) -> Result<()> {
    use nix::mount::MsFlags;
    for m in mounts {
        let opts = libkeel::rootfs::options::parse(&m.options);
        let flags = opts.flags & !(MsFlags::MS_SHARED | MsFlags::MS_SLAVE | MsFlags::MS_PRIVATE);
        let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
        nix::mount::mount(
            Some(m.source.as_str()),
            target,
            Some(m.typ.as_str()),
            flags,
            data,
        )
        .with_context(|| format!("mount {} ({}) on {}", m.source, m.typ, target.display()))?;
        for p in &opts.propagation {
            nix::mount::mount(None::<&str>, target, None::<&str>, *p, None::<&str>)
                .with_context(|| format!("propagation of {}", target.display()))?;
        }
    }
    Ok(())
}

/// pidfd_open(2).
pub fn pidfd_open(pid: i32) -> nix::Result<OwnedFd> {
    // SAFETY: plain syscall; on success the fd is ours.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    nix::errno::Errno::result(r).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// pidfd_send_signal(2): signals exactly the pinned process.
pub fn pidfd_kill(pidfd: &OwnedFd, signal: i32) -> nix::Result<()> {
    // SAFETY: plain syscall with a valid fd and no siginfo.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    nix::errno::Errno::result(r).map(drop)
}
