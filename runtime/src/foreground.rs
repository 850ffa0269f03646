//! A process run in the foreground (`run`, `exec` without `--detach`):
//! keel relays its terminal, forwards every signal to it and exits with its
//! status.

use crate::logging::{Level, Logger};
use crate::pipes::{Pipes, Relay, Role};
use crate::tty;
use anyhow::{Context, Result};
use libkeel::Signal;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::SigSet;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

pub struct Foreground {
    forwarded: SigSet,
    console: OwnedFd,
    host: Option<tty::HostConsole>,
    pipes: Option<Pipes>,
}

/// What the library gets for the process: the console socket (used if it
/// has a terminal) and, for one without, the stdio pipes' other ends.
pub struct ForProcess {
    pub console: OwnedFd,
    pub stdio: Option<[OwnedFd; 3]>,
}

impl Foreground {
    /// Call before forking: finds the caller's terminal if the process is
    /// to get one (`terminal`), else makes its stdio pipes owned by
    /// `pipes_owner` (None: it inherits keel's stdio), blocks the signals
    /// to forward (the new process unblocks its own) and makes a console
    /// socket pair.
    pub fn prepare(
        subreaper: bool,
        terminal: bool,
        pipes_owner: Option<(u32, u32)>,
    ) -> Result<(Foreground, ForProcess)> {
        let host = terminal.then(tty::HostConsole::open).transpose()?;
        let (pipes, stdio) = match pipes_owner.filter(|_| !terminal) {
            Some(owner) => {
                let (ours, theirs) = Pipes::new(owner)?;
                (Some(ours), Some(theirs))
            }
            None => (None, None),
        };
        if subreaper {
            // The process may be a grandchild (a joined pid namespace): reap it.
            nix::sys::prctl::set_child_subreaper(true).context("prctl(PR_SET_CHILD_SUBREAPER)")?;
        }
        let mut forwarded = SigSet::all();
        forwarded.remove(Signal::SIGKILL);
        forwarded.remove(Signal::SIGSTOP);
        forwarded.thread_block().context("block signals")?;
        let (ours, theirs) = UnixStream::pair().context("socketpair for the console")?;
        Ok((
            Foreground {
                forwarded,
                console: OwnedFd::from(ours),
                host,
                pipes,
            },
            ForProcess {
                console: OwnedFd::from(theirs),
                stdio,
            },
        ))
    }

    /// The caller's window size, when the process is to share its terminal.
    pub fn host_size(&self) -> Option<libkeel::console::Size> {
        self.host.as_ref().and_then(tty::HostConsole::size)
    }

    /// Relays the terminal (if the process got one), calls `start`, then
    /// forwards signals until `pid` exits, relaying its stdio pipes (if it
    /// got them) in the same loop until they reach EOF; returns its exit
    /// code (128+N when killed by signal N, as a shell reports it).
    /// Every child reaped, and every signal forwarded, is a debug line of
    /// `log` (runc's signals.go events).
    pub fn wait(self, pid: Pid, log: &Logger, start: impl FnOnce() -> Result<()>) -> Result<i32> {
        let master = tty::take_master(&self.console)?;
        let host = self.host.as_ref().filter(|_| master.is_some());
        let raw = host.map(tty::RawMode::enter);
        let output = match &master {
            Some(m) => {
                if let Some(h) = host {
                    tty::resize_from(h, m);
                }
                Some(tty::copy(m.try_clone().context("dup pty master")?)?)
            }
            None => None,
        };
        let mut relay = self.pipes.map(Relay::new);
        start()?;
        // Signals are read from a signalfd, polled with the stdio pipes in
        // this one loop: no thread to start for the relay.
        let signals = SignalFd::with_flags(
            &self.forwarded,
            SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
        )
        .context("signalfd")?;
        let mut code = None;
        let code = loop {
            // After the process's exit, until its stdout and stderr reach EOF.
            if let Some(c) = code {
                if relay.as_ref().is_none_or(Relay::done) {
                    break c;
                }
            }
            let interest = relay.as_ref().map(Relay::interest).unwrap_or_default();
            let mut fds: Vec<PollFd> = interest
                .iter()
                .map(|(fd, flags, _)| PollFd::new(*fd, *flags))
                .collect();
            if code.is_none() {
                fds.push(PollFd::new(signals.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("poll"),
            }
            let ready: Vec<Role> = fds
                .iter()
                .zip(&interest)
                .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
                .map(|(_, (_, _, role))| *role)
                .collect();
            let signalled = code.is_none()
                && fds
                    .last()
                    .and_then(PollFd::revents)
                    .is_some_and(|r| !r.is_empty());
            drop(fds);
            drop(interest);
            if let Some(r) = relay.as_mut() {
                r.serve(&ready);
            }
            if signalled {
                while let Some(info) = signals.read_signal().context("read signalfd")? {
                    let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                        continue;
                    };
                    code = code.or(on_signal(sig, pid, log, master.as_ref(), host));
                }
            }
        };
        drop(master);
        if let Some(h) = output {
            let _ = h.join();
        }
        drop(raw);
        Ok(code)
    }
}

/// One signal for the process: SIGCHLD reaps (Some(exit code) once
/// `pid` is gone), SIGWINCH resizes its terminal, the rest are
/// forwarded to it.
fn on_signal(
    sig: Signal,
    pid: Pid,
    log: &Logger,
    master: Option<&OwnedFd>,
    host: Option<&tty::HostConsole>,
) -> Option<i32> {
    match (sig, master) {
        (Signal::SIGCHLD, _) => return reap(pid, log),
        (Signal::SIGWINCH, Some(m)) => {
            if let Some(h) = host {
                tty::resize_from(h, m);
            }
        }
        _ => {
            log.log(
                Level::Debug,
                &format!("forwarding signal {} ({sig}) to {pid}", sig as i32),
            );
            let _ = nix::sys::signal::kill(pid, sig);
        }
    }
    None
}

/// Reaps every exited child; the exit code of `pid` once it is gone.
fn reap(pid: Pid, log: &Logger) -> Option<i32> {
    let mut result = None;
    loop {
        let (p, status) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) => (p, code),
            Ok(WaitStatus::Signaled(p, sig, _)) => (p, 128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return result,
            Ok(_) => continue,
        };
        log.log_fields(
            Level::Debug,
            "process exited",
            &[("pid", p.as_raw().into()), ("status", status.into())],
        );
        if p == pid {
            result = Some(status);
        }
    }
}
