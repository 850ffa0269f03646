//! A process run in the foreground (`run`, `exec` without `--detach`):
//! keel relays its terminal, forwards every signal to it and exits with its
//! status.

use crate::logging::{Level, Logger};
use crate::pipes::Pipes;
use crate::tty;
use anyhow::{Context, Result};
use libkeel::Signal;
use nix::sys::signal::SigSet;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::OwnedFd;
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
    /// forwards signals until `pid` exits; returns its exit code (128+N when
    /// killed by signal N, as a shell reports it).
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
        let copies = self.pipes.map(Pipes::copy);
        start()?;
        let code = loop {
            let sig = self.forwarded.wait().context("sigwait")?;
            match (sig, &master) {
                (Signal::SIGCHLD, _) => {
                    if let Some(code) = reap(pid, log) {
                        break code;
                    }
                }
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
        };
        drop(master);
        if let Some(h) = output {
            let _ = h.join();
        }
        drop(raw);
        if let Some(h) = copies {
            let _ = h.join();
        }
        Ok(code)
    }
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
