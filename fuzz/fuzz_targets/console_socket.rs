//! The console socket's receiving end (`libkeel::console::receive_master`,
//! used by the shim and a foreground `keel run -t`): the peer sends
//! arbitrary messages on the stream socket (payload bytes and 0 to 8 fds
//! each), then closes. One fd is taken as the pty master; anything else is
//! refused with an error. Never a panic, and no fd the peer sent stays open
//! once the master is dropped.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

const MAX_MESSAGES: usize = 4;

fuzz_target!(|data: &[u8]| {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    // Every fd the peer passes is a copy of this pipe's write end.
    let (r, w): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
            .expect("pipe");
    // Whether a message that reached the socket carried exactly one fd (a
    // stream socket drops the fds of an empty one, and may hand out the
    // bytes of several messages at once, but never the fds of two).
    let mut one_fd_sent = false;
    let mut rest = data;
    for _ in 0..MAX_MESSAGES {
        let [head, lo, tail @ ..] = rest else { break };
        let nfds = usize::from(head % 9);
        let len = usize::from(*lo).min(tail.len());
        let fds = vec![w.as_raw_fd(); nfds];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let cmsg: &[ControlMessage] = if nfds == 0 { &[] } else { &cmsg };
        let iov = [std::io::IoSlice::new(&tail[..len])];
        if sendmsg::<()>(theirs.as_raw_fd(), &iov, cmsg, MsgFlags::MSG_DONTWAIT, None).is_ok() {
            one_fd_sent |= len > 0 && nfds == 1;
        }
        rest = &tail[len..];
    }
    drop(theirs);
    drop(w);

    match libkeel::console::receive_master(&ours) {
        Ok(master) => {
            assert!(
                one_fd_sent,
                "took a master though no message had exactly one fd"
            );
            drop(master);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    drop(ours);
    assert!(
        matches!(nix::unistd::read(&r, &mut [0u8; 1]), Ok(0)),
        "an fd the peer sent stayed open"
    );
});
