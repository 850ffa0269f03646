//! The container's terminal: the init opens a pty in the container's own
//! devpts, sends the master over the console socket (SCM_RIGHTS, the
//! protocol of runc's recvtty and conmon) and makes the slave its
//! controlling terminal, stdio and /dev/console.

use crate::error::{Error, Result, SysContext};
use nix::fcntl::OFlag;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// Terminal size, rows × columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub rows: u16,
    pub cols: u16,
}

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, libc::winsize);
nix::ioctl_read_bad!(get_winsize, libc::TIOCGWINSZ, libc::winsize);

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
    send_fd(socket, "/dev/ptmx", master.as_raw_fd())?;
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

fn send_fd(socket: &OwnedFd, name: &str, fd: impl AsRawFd) -> Result<()> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [std::io::IoSlice::new(name.as_bytes())];
    sendmsg::<()>(socket.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .ctx(|| "--console-socket: send the pty master".into())?;
    Ok(())
}

/// Receives a pty master sent by an init (what a console-socket server
/// such as runc's recvtty does).
pub fn receive_master(socket: impl AsFd) -> Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        socket.as_fd().as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ctx(|| "console socket: receive".into())?;
    for c in msg
        .cmsgs()
        .map_err(|e| Error::sys("console socket: control message", e))?
    {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this fd for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(Error::sys(
        "console socket: no pty master in the message",
        nix::errno::Errno::EBADMSG,
    ))
}
