//! The container's terminal: the init opens a pty in the container's own
//! devpts, sends the master over the console socket (SCM_RIGHTS, the
//! protocol of runc's recvtty and conmon) and makes the slave its
//! controlling terminal, stdio and /dev/console.

use crate::error::{Error, Result, SysContext};
use nix::fcntl::OFlag;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Terminal size, rows × columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Rows (lines).
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

mod ioctl {
    nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, libc::winsize);
    nix::ioctl_read_bad!(get_winsize, libc::TIOCGWINSZ, libc::winsize);
}
use ioctl::{get_winsize, set_winsize};

/// Sets the window size of a terminal fd.
pub fn resize(fd: impl AsFd, size: Size) -> Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ with a valid winsize.
    unsafe { set_winsize(fd.as_fd().as_raw_fd(), &ws) }
        .map(drop)
        .ctx(|| "ioctl(TIOCSWINSZ)".into())
}

/// The window size of a terminal fd.
pub fn size_of(fd: impl AsFd) -> Result<Size> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ into a valid winsize.
    unsafe { get_winsize(fd.as_fd().as_raw_fd(), &mut ws) }.ctx(|| "ioctl(TIOCGWINSZ)".into())?;
    Ok(Size {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// In the init (after pivot_root) or an exec'd process: pty from the
/// container's /dev/ptmx, master to `socket`, slave as controlling terminal
/// and stdio; the init's also becomes /dev/console.
pub(crate) fn setup(socket: &OwnedFd, size: Option<Size>, console: bool) -> Result<()> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .ctx(|| "process.terminal: open /dev/ptmx".into())?;
    nix::pty::grantpt(&master).ctx(|| "process.terminal: grantpt".into())?;
    nix::pty::unlockpt(&master).ctx(|| "process.terminal: unlockpt".into())?;
    let name = nix::pty::ptsname_r(&master).ctx(|| "process.terminal: ptsname".into())?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("process.terminal: open {name}"))?;
    if let Some(size) = size {
        resize(&slave, size).map_err(|e| e.in_field("process.consoleSize"))?;
    }
    if console {
        bind_console(&name)?;
    }
    crate::sys::send_fd(socket.as_fd(), b"/dev/ptmx", master.as_fd())
        .ctx(|| "--console-socket: send the pty master".into())?;
    drop(master);
    // SAFETY: TIOCSCTTY on a terminal fd; we are a session leader.
    let r = unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) };
    nix::errno::Errno::result(r).ctx(|| "process.terminal: ioctl(TIOCSCTTY)".into())?;
    for target in 0..3 {
        // SAFETY: dup2 onto the stdio numbers, which we own.
        let r = unsafe { libc::dup2(slave.as_raw_fd(), target) };
        nix::errno::Errno::result(r).ctx(|| format!("process.terminal: dup2 onto fd {target}"))?;
    }
    Ok(())
}

/// /dev/console is the container's terminal too (bind over an empty file).
/// Never through a symlink: an image's /dev/console pointing elsewhere
/// must not choose where the pty is mounted (CVE-2025-52565).
fn bind_console(name: &str) -> Result<()> {
    use nix::sys::stat::{Mode, SFlag};
    let console = "/dev/console";
    let open = || {
        nix::fcntl::open(
            console,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    };
    let target = match open() {
        Err(nix::errno::Errno::ENOENT) => {
            drop(
                nix::fcntl::open(
                    console,
                    OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY,
                    Mode::from_bits_truncate(0o666),
                )
                .ctx(|| "process.terminal: create /dev/console".into())?,
            );
            open()
        }
        r => r,
    }
    .ctx(|| "process.terminal: open /dev/console".into())?;
    let st = nix::sys::stat::fstat(&target).ctx(|| "process.terminal: stat /dev/console".into())?;
    if SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) == SFlag::S_IFLNK {
        return Err(Error::sys(
            "process.terminal: /dev/console is a symlink",
            nix::errno::Errno::ELOOP,
        ));
    }
    nix::mount::mount(
        Some(name),
        &crate::rootfs::path::fd_path(&target),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .ctx(|| format!("process.terminal: bind {name} on /dev/console"))
}

/// Receives a pty master sent by an init (what a console-socket server
/// such as runc's recvtty does): one message with exactly one fd, as runc's
/// `RecvFile` insists; anything else is refused and its fds closed.
pub fn receive_master(socket: impl AsFd) -> Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    crate::sys::recv_one_fd(socket.as_fd(), &mut buf).map_err(|e| match e {
        nix::errno::Errno::EBADMSG => Error::sys(
            "console socket: not one pty master in the message",
            nix::errno::Errno::EBADMSG,
        ),
        e => Error::sys("console socket: receive", e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::os::unix::net::UnixStream;

    /// Sends `copies` fds (all the write end of one pipe) in one message
    /// and returns the pipe's read end.
    fn send_copies(peer: &UnixStream, copies: usize) -> OwnedFd {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap();
        let fds = vec![w.as_raw_fd(); copies];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let cmsg: &[ControlMessage] = if copies == 0 { &[] } else { &cmsg };
        let iov = [std::io::IoSlice::new(b"/dev/ptmx")];
        sendmsg::<()>(peer.as_raw_fd(), &iov, cmsg, MsgFlags::empty(), None).unwrap();
        r
    }

    /// The read end sees EOF now (a non-blocking read).
    fn eof(r: &OwnedFd) -> bool {
        matches!(nix::unistd::read(r, &mut [0u8; 1]), Ok(0))
    }

    /// Every write end sent is closed again: the read end sees EOF. Other
    /// tests of this binary fork (hooks, helpers), and a child holds every
    /// fd of the process between its fork and its exec: a write end may
    /// stay open elsewhere for a moment, so EOF is waited for (a leak in
    /// the receiver keeps it open for good).
    fn write_ends_closed(r: &OwnedFd) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if eof(r) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            let mut fds = [PollFd::new(r.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(100u16));
        }
    }

    #[test]
    fn one_fd_is_the_master() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let r = send_copies(&theirs, 1);
        let master = receive_master(&ours).expect("one fd");
        assert!(!eof(&r));
        drop(master);
        assert!(write_ends_closed(&r));
    }

    /// Regression: the second of two fds in the message stayed open in the
    /// receiver (the shim, or a foreground `keel run -t`), one fd leaked
    /// per message.
    #[test]
    fn several_fds_are_refused_and_all_closed() {
        for copies in [0, 2, 3, 253] {
            let (ours, theirs) = UnixStream::pair().unwrap();
            let r = send_copies(&theirs, copies);
            let err = receive_master(&ours).expect_err("not one fd");
            assert!(err.to_string().contains("not one pty master"), "{err}");
            assert!(write_ends_closed(&r), "{copies} fds sent: one left open");
        }
    }
}
