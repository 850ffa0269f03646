//! A foreground `run` with `process.terminal`: keel is the console socket's
//! other end, puts the caller's terminal in raw mode and copies between its
//! stdio and the container's pty.

use anyhow::{Context, Result};
use libkeel::console;
use nix::sys::termios::{self, SetArg, Termios};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::thread::JoinHandle;

/// The caller's terminal, found as runc's initHostConsole finds it: the
/// first of stderr, stdout and stdin that is one (they may be redirected),
/// else the controlling terminal. Without any, a foreground process cannot
/// get a terminal: runc fails before anything is made, in these words.
pub struct HostConsole(OwnedFd);

impl HostConsole {
    pub fn open() -> Result<HostConsole> {
        let std_fds = [
            std::io::stderr().as_fd().try_clone_to_owned(),
            std::io::stdout().as_fd().try_clone_to_owned(),
            std::io::stdin().as_fd().try_clone_to_owned(),
        ];
        for fd in std_fds.into_iter().flatten() {
            if nix::unistd::isatty(&fd).unwrap_or(false) {
                return Ok(HostConsole(fd));
            }
        }
        let tty = nix::fcntl::open(
            "/dev/tty",
            nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| anyhow::anyhow!("open /dev/tty: {}", libkeel::error::go_errno_text(e)))?;
        Ok(HostConsole(tty))
    }
}

/// Restores the terminal mode on drop.
pub struct RawMode<'a>(&'a HostConsole, Option<Termios>);

impl RawMode<'_> {
    pub fn enter(host: &HostConsole) -> RawMode<'_> {
        let Ok(saved) = termios::tcgetattr(&host.0) else {
            return RawMode(host, None);
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        // As runc's console (containerd/console's SetRaw): output processing
        // stays on, so the container's bare "\n" (its pty has no onlcr, see
        // `take_master`) still reaches the screen as a new line.
        raw.output_flags |= termios::OutputFlags::OPOST;
        let _ = termios::tcsetattr(&host.0, SetArg::TCSANOW, &raw);
        RawMode(host, Some(saved))
    }
}

impl Drop for RawMode<'_> {
    fn drop(&mut self) {
        if let Some(saved) = &self.1 {
            let _ = termios::tcsetattr(&self.0 .0, SetArg::TCSANOW, saved);
        }
    }
}

/// The pty master, if the init sent one: it does so before create returns,
/// so a look without waiting is enough (EOF or nothing queued: no terminal).
/// As runc's recvtty, the pty's onlcr is turned off: the program's lines
/// reach keel's stdout ending in "\n" alone, as written, which is what a
/// script reading `keel exec -t` or `keel run` output gets under runc.
pub fn take_master(socket: &OwnedFd) -> Result<Option<OwnedFd>> {
    use nix::sys::socket::{recv, MsgFlags};
    let mut byte = [0u8; 1];
    match recv(
        socket.as_raw_fd(),
        &mut byte,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(0) | Err(nix::errno::Errno::EAGAIN) => Ok(None),
        Ok(_) => {
            let master = console::receive_master(socket)?;
            let mut t = termios::tcgetattr(&master).context("tcgetattr on the pty master")?;
            t.output_flags.remove(termios::OutputFlags::ONLCR);
            termios::tcsetattr(&master, SetArg::TCSANOW, &t).context("clear onlcr of the pty")?;
            Ok(Some(master))
        }
        Err(e) => Err(anyhow::anyhow!("console socket: {e}")),
    }
}

/// Copies stdin → master (detached: it may block on our stdin forever) and
/// master → stdout; the returned handle ends when the pty closes.
pub fn copy(master: OwnedFd) -> Result<JoinHandle<()>> {
    let mut to_pty = std::fs::File::from(master.try_clone().context("dup pty master")?);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || to_pty.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let mut from_pty = std::fs::File::from(master);
    Ok(std::thread::spawn(move || {
        let mut stdout = std::io::stdout();
        let mut buf = [0u8; 4096];
        // EIO once the last slave fd closes: the container is gone.
        while let Ok(n) = from_pty.read(&mut buf) {
            if n == 0 || stdout.write_all(&buf[..n]).is_err() {
                break;
            }
            let _ = stdout.flush();
        }
    }))
}

impl HostConsole {
    /// The caller's window size, if its terminal has one.
    pub fn size(&self) -> Option<console::Size> {
        console::size_of(&self.0).ok()
    }
}

/// SIGWINCH: pass the caller's window size on to the container's terminal.
pub fn resize_from(host: &HostConsole, master: &OwnedFd) {
    if let Some(size) = host.size() {
        let _ = console::resize(master, size);
    }
}
