//! The test's side of a terminal: `--console-socket` (runc's recvtty
//! protocol: the pty master sent with SCM_RIGHTS) and a reader of what the
//! master gets.

use crate::{wait_until, TestEnv};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

const SEC10: Duration = Duration::from_secs(10);

/// Receives one fd sent with SCM_RIGHTS on a connected stream.
fn recv_fd(s: &UnixStream) -> Result<OwnedFd, String> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        s.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("recvmsg: {e}"))?;
    for c in msg.cmsgs().map_err(|e| format!("cmsgs: {e}"))? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this fd for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err("no fd in the message".into())
}

/// The test's side of `--console-socket`: a listening unix socket; the
/// first connection's fd (the pty master) comes back from `master`.
pub struct ConsoleSocket {
    path: PathBuf,
    rx: mpsc::Receiver<Result<OwnedFd, String>>,
}

impl ConsoleSocket {
    pub fn new(env: &TestEnv, name: &str) -> ConsoleSocket {
        let path = env.dir.join(format!("{name}.sock"));
        let listener = UnixListener::bind(&path).expect("bind console socket");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let r = listener
                .accept()
                .map_err(|e| format!("accept: {e}"))
                .and_then(|(s, _)| recv_fd(&s));
            let _ = tx.send(r);
        });
        ConsoleSocket { path, rx }
    }

    pub fn arg(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// The pty master; `why` describes the sender for the failure message.
    #[track_caller]
    pub fn master(&self, why: impl FnOnce() -> String) -> OwnedFd {
        match self.rx.recv_timeout(SEC10) {
            Ok(Ok(fd)) => fd,
            Ok(Err(e)) => panic!("console socket: {e}; {}", why()),
            Err(_) => panic!("no pty master on the console socket; {}", why()),
        }
    }
}

/// Everything read from a pty master, collected by a thread (which ends on
/// EOF/EIO or when dropped).
pub struct PtyReader {
    buf: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    fd: OwnedFd,
}

impl PtyReader {
    pub fn new(master: &OwnedFd) -> PtyReader {
        let fd = master.try_clone().expect("dup master");
        let read_fd = master.try_clone().expect("dup master");
        let buf = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (buf.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while !s.load(Ordering::SeqCst) {
                let mut pfd = libc::pollfd {
                    fd: read_fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: poll on one valid pollfd.
                if unsafe { libc::poll(&mut pfd, 1, 100) } <= 0 {
                    continue;
                }
                // SAFETY: read into a buffer of the given length.
                let n = unsafe {
                    libc::read(read_fd.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len())
                };
                if n <= 0 {
                    break; // EIO: the last slave fd closed
                }
                b.lock().unwrap().extend_from_slice(&chunk[..n as usize]);
            }
        });
        PtyReader { buf, stop, fd }
    }

    /// The bytes that came so far, as they came.
    pub fn raw(&self) -> Vec<u8> {
        self.buf.lock().unwrap().clone()
    }

    /// What came so far, without carriage returns.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).replace('\r', "")
    }

    #[track_caller]
    pub fn wait_for(&self, what: &str, rt: &str) {
        assert!(
            wait_until(SEC10, || self.text().contains(what)),
            "{rt}: never saw {what:?} on the terminal; got {:?}",
            self.text()
        );
    }

    pub fn write(&self, data: &str) {
        // SAFETY: write from a valid buffer.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
        assert_eq!(n, data.len() as isize, "write to the pty");
    }
}

impl Drop for PtyReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
