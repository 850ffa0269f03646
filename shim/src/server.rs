//! The shim server: what containerd's `start` action launches, serving
//! the Task API on the group's socket until Shutdown.
//!
//! One thread, one poll loop: containerd's connections (ttrpc framing in
//! `wire`), the event connection to containerd, SIGCHLD (a signalfd), the
//! OOM watches and the stdio copies. Requests are served one at a time.
//! With no other thread, libkeel can fork from the shim itself (see
//! `spawn`), and a pod's shim costs no thread stack per container or per
//! connection (the `containerd-shim` crate's ttrpc server runs five threads
//! per connection, and containerd opens one per container of the pod).

use crate::events::Events;
use crate::service::{Reply, Service};
use crate::wire::{self, Conn};
use anyhow::{Context as _, Result};
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::ttrpc;
use containerd_shim::Flags;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

/// How often the OOM watches are read without being woken: a removed v2
/// cgroup does not wake inotify.
const OOM_RECHECK: Duration = Duration::from_secs(1);

pub fn serve(flags: &Flags, runtime: libkeel::Runtime) -> Result<()> {
    if flags.socket.is_empty() {
        anyhow::bail!("-socket is required");
    }
    let sigchld = set_signals()?;
    nix::sys::prctl::set_child_subreaper(true).context("become a subreaper")?;
    let path = flags
        .socket
        .strip_prefix("unix://")
        .unwrap_or(&flags.socket)
        .to_string();
    let Some(listener) = listen(&path)? else {
        // The group's shim already serves this socket (pod grouping).
        std::fs::write("address", &flags.socket).context("write address")?;
        server_started();
        return Ok(());
    };
    listener.set_nonblocking(true).context("listener")?;
    if let Err(e) = containerd_shim::logger::init(flags.debug, "info", &flags.namespace, &flags.id)
    {
        eprintln!("logger: {e}");
    }
    let ttrpc_address = std::env::var("TTRPC_ADDRESS").context("TTRPC_ADDRESS")?;
    let events = Events::new(&ttrpc_address, flags.namespace.clone());
    let mut service = Service::new(runtime, flags.namespace.clone(), events);
    server_started();
    let mut conns: BTreeMap<u64, Conn> = BTreeMap::new();
    let mut next_conn = 0u64;
    let mut last_oom_check = Instant::now();
    loop {
        let ready = wait(&listener, &sigchld, &conns, &service);
        let mut ready = ready.into_iter();
        let mut next = || ready.next().unwrap_or_default();
        let (accept, reap, events) = (next(), next(), next());
        // OOMs first: an OOM kill's TaskOOM goes before the TaskExit.
        let oom_woke = service.ooms.iter().fold(false, |any, _| next() || any);
        if oom_woke || last_oom_check.elapsed() >= OOM_RECHECK {
            service.check_ooms();
            last_oom_check = Instant::now();
        }
        let conn_ready: Vec<(u64, bool)> = conns.keys().map(|&id| (id, next())).collect();
        let pumps_ready: Vec<bool> = service.pumps().map(|_| next()).collect();
        // Pumps before exits: an exit closes the process's pumps, and
        // `pumps_ready` is by index.
        service.run_pumps(&pumps_ready);
        if reap {
            while let Ok(Some(_)) = sigchld.read_signal() {}
            reap_children(&mut service);
        }
        if events {
            service.events.ready();
        }
        let mut served = false;
        if conn_ready.iter().any(|&(_, r)| r) {
            // What libkeel starts while serving (a container's processes,
            // hooks) and the logging binaries must not inherit a blocked
            // SIGCHLD. Exits meanwhile are not lost: their zombies wait
            // for the reaping below.
            let _ = sigchld_mask(SigmaskHow::SIG_UNBLOCK);
            for (id, ready) in conn_ready {
                if ready {
                    served |= serve_conn(id, &mut conns, &mut service);
                }
            }
            let _ = sigchld_mask(SigmaskHow::SIG_BLOCK);
            reap_children(&mut service);
        }
        if accept {
            accept_all(&listener, &mut conns, &mut next_conn);
        }
        for Reply { to, body } in std::mem::take(&mut service.replies) {
            if let Some(c) = conns.get_mut(&to.0) {
                let _ = c.send(to.1, wire::RESPONSE, &body);
            }
        }
        if served {
            release_heap();
            release_stack();
        }
        if service.done() {
            break;
        }
    }
    for c in conns.values_mut() {
        finish_writes(c);
    }
    service.events.flush();
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Creating a container parses and allocates much; glibc keeps the freed
/// heap resident unless asked (musl's malloc returns it by itself).
fn release_heap() {
    // SAFETY: plain libc call.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Serving a Create runs deep (the config's parse, libkeel's setup), and
/// the stack pages it touched stay resident for the shim's life, where the
/// heap's are given back: most of an idle shim's own memory. The pages
/// below the loop's frame (less a margin for the calls it makes) hold
/// nothing live between requests; they are dropped, and the next deep
/// call gets zeroed ones.
fn release_stack() {
    const MARGIN: usize = 32 * 1024;
    const PAGE: usize = 4096;
    let here = 0u8;
    let top = (std::ptr::addr_of!(here) as usize).saturating_sub(MARGIN) & !(PAGE - 1);
    // Only within the main thread's stack mapping.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let Some(bottom) = maps
        .lines()
        .find(|l| l.ends_with("[stack]"))
        .and_then(|l| l.split('-').next())
        .and_then(|a| usize::from_str_radix(a, 16).ok())
    else {
        return;
    };
    if bottom >= top {
        return;
    }
    // SAFETY: the range is inside the stack mapping of this, the only,
    // thread, MARGIN below the frame of the loop, which calls this between
    // requests: nothing there is live (a signal's frame is written there,
    // if at all, after the call).
    unsafe {
        libc::madvise(
            bottom as *mut libc::c_void,
            top - bottom,
            libc::MADV_DONTNEED,
        )
    };
}

/// Polls everything the loop serves; readiness in this order: listener,
/// SIGCHLD, event connection, OOM watches, connections, pumps.
fn wait(
    listener: &UnixListener,
    sigchld: &SignalFd,
    conns: &BTreeMap<u64, Conn>,
    service: &Service,
) -> Vec<bool> {
    let mut fds = vec![
        PollFd::new(listener.as_fd(), PollFlags::POLLIN),
        PollFd::new(sigchld.as_fd(), PollFlags::POLLIN),
    ];
    // Without an event connection, a placeholder that never fires.
    fds.push(match service.events.poll_fd() {
        Some((fd, out)) => PollFd::new(fd, in_out(out)),
        None => PollFd::new(sigchld.as_fd(), PollFlags::empty()),
    });
    fds.extend(
        service
            .ooms
            .iter()
            .map(|(_, w)| PollFd::new(w.as_fd(), PollFlags::POLLIN)),
    );
    fds.extend(
        conns
            .values()
            .map(|c| PollFd::new(c.sock.as_fd(), in_out(c.pending()))),
    );
    fds.extend(service.pumps().map(|p| {
        let (fd, ev) = p.interest();
        PollFd::new(fd, ev)
    }));
    let timeout = if service.ooms.is_empty() {
        PollTimeout::NONE
    } else {
        PollTimeout::from(OOM_RECHECK.as_millis() as u16)
    };
    match poll(&mut fds, timeout) {
        Ok(_) => {}
        Err(nix::errno::Errno::EINTR) => return vec![false; fds.len()],
        Err(e) => {
            // Only EFAULT/EINVAL/ENOMEM: nothing to retry differently.
            log::error!("poll: {e}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    fds.iter()
        .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
        .collect()
}

fn in_out(out: bool) -> PollFlags {
    if out {
        PollFlags::POLLIN | PollFlags::POLLOUT
    } else {
        PollFlags::POLLIN
    }
}

fn accept_all(listener: &UnixListener, conns: &mut BTreeMap<u64, Conn>, next: &mut u64) {
    loop {
        match listener.accept() {
            Ok((sock, _)) => match Conn::new(sock) {
                Ok(c) => {
                    conns.insert(*next, c);
                    *next += 1;
                }
                Err(e) => log::warn!("new connection: {e}"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) => {
                log::warn!("accept: {e}");
                return;
            }
        }
    }
}

/// Serves the requests read from connection `id`; true if any came.
fn serve_conn(id: u64, conns: &mut BTreeMap<u64, Conn>, service: &mut Service) -> bool {
    let Some(conn) = conns.get_mut(&id) else {
        return false;
    };
    let mut open = conn.flush().is_ok();
    let mut frames = Vec::new();
    open &= conn.read(&mut frames);
    let served = !frames.is_empty();
    for f in frames.into_iter().filter(|f| f.kind == wire::REQUEST) {
        let body = match ttrpc::Request::parse_from_bytes(&f.body) {
            Ok(req) => service.call((id, f.stream), &req.service, &req.method, &req.payload),
            Err(e) => Some(
                ttrpc::Response {
                    status: containerd_shim::protos::protobuf::MessageField::some(
                        ttrpc::get_status(ttrpc::Code::INVALID_ARGUMENT, e),
                    ),
                    ..Default::default()
                }
                .write_to_bytes()
                .unwrap_or_default(),
            ),
        };
        if let Some(body) = body {
            open &= conn.send(f.stream, wire::RESPONSE, &body).is_ok();
        }
    }
    if !open {
        conns.remove(&id);
        service.forget(id);
    }
    served
}

/// Before exiting: the last replies (Shutdown's) go out, within a second.
fn finish_writes(c: &mut Conn) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while c.pending() && Instant::now() < deadline {
        let mut fds = [PollFd::new(c.sock.as_fd(), PollFlags::POLLOUT)];
        let _ = poll(&mut fds, PollTimeout::from(100u16));
        if c.flush().is_err() {
            return;
        }
    }
}

/// Reaps every exited child; the service knows which are containers'.
fn reap_children(service: &mut Service) {
    loop {
        let (pid, status) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, code),
            Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                log::error!("waitpid: {e}");
                return;
            }
        };
        service.on_exit(pid.as_raw(), status);
    }
}

/// Binds the socket; `None` when a live shim already serves it.
fn listen(path: &str) -> Result<Option<UnixListener>> {
    if let Some(dir) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    }
    match UnixListener::bind(path) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if UnixStream::connect(path).is_ok() {
                return Ok(None);
            }
            // A dead shim's socket.
            std::fs::remove_file(path).with_context(|| format!("remove {path}"))?;
            Ok(Some(
                UnixListener::bind(path).with_context(|| format!("bind {path}"))?,
            ))
        }
        Err(e) => Err(e).with_context(|| format!("bind {path}")),
    }
}

/// The `start` action waits for our stdout to close.
fn server_started() {
    // SAFETY: dup2 onto our own stdout.
    unsafe { libc::dup2(2, 1) };
}

fn sigchld_mask(how: SigmaskHow) -> nix::Result<()> {
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    nix::sys::signal::sigprocmask(how, Some(&chld), None)
}

/// SIGCHLD comes through the returned signalfd. SIGTERM and SIGINT do not
/// end the shim; Shutdown does, once its containers are gone. (libkeel
/// resets every signal in the processes it starts.)
fn set_signals() -> Result<SignalFd> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler};
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: no handler code runs: SIG_IGN.
    unsafe {
        sigaction(Signal::SIGTERM, &ignore)?;
        sigaction(Signal::SIGINT, &ignore)?;
    }
    sigchld_mask(SigmaskHow::SIG_BLOCK)?;
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    Ok(SignalFd::with_flags(
        &chld,
        SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
    )?)
}
