//! The sd_notify proxy (`libkeel::notify`) fed by an untrusted container:
//! the input is a series of datagrams (each: 2-byte length, bytes, and a
//! flag byte saying whether an fd rides along), sent to a real proxy socket
//! before the "init" exits. The proxy relays to the host exactly the first
//! `READY=` line of the first datagram that has one (as the proxy's 4096-
//! byte buffer sees it), as one line, followed by `MAINPID=`; nothing if
//! no datagram has one. Nothing else the container says reaches the host,
//! no fd the container sends stays open, and nothing panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::OnceLock;

/// What the proxy reads of one datagram (its receive buffer).
const PROXY_BUF: usize = 4096;
/// Enough to queue on a unix datagram socket without blocking.
const MAX_DATAGRAMS: usize = 8;
const MAIN_PID: i32 = 4242;

struct Datagram<'a> {
    bytes: &'a [u8],
    with_fd: bool,
}

fn datagrams(mut data: &[u8]) -> Vec<Datagram<'_>> {
    let mut out = Vec::new();
    while data.len() >= 3 && out.len() < MAX_DATAGRAMS {
        let len = usize::from(u16::from_le_bytes([data[0], data[1]])) % 6000;
        let with_fd = data[2] & 1 == 1;
        data = &data[3..];
        let len = len.min(data.len());
        out.push(Datagram {
            bytes: &data[..len],
            with_fd,
        });
        data = &data[len..];
    }
    out
}

/// The line the proxy must relay, by the protocol's rules.
fn expected(sent: &[&[u8]]) -> Option<Vec<u8>> {
    sent.iter().find_map(|d| {
        let seen = &d[..d.len().min(PROXY_BUF)];
        seen.split(|&b| b == b'\n')
            .find(|l| l.starts_with(b"READY="))
            .map(<[u8]>::to_vec)
    })
}

/// A state directory of our own, on tmpfs when there is one (the proxy's
/// socket file is made anew each run: on a disk it costs 8 runs in 9),
/// removed when the fuzzer exits.
fn state_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    extern "C" fn remove() {
        if let Some(dir) = DIR.get() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    DIR.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("keel-fuzz-notify-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("notify")).expect("mkdir the state dir");
        // SAFETY: registers a plain function.
        unsafe { libc::atexit(remove) };
        dir
    })
}

/// The service manager's socket (abstract: nothing on disk), read empty
/// after each run.
fn host() -> &'static (UnixDatagram, String) {
    static HOST: OnceLock<(UnixDatagram, String)> = OnceLock::new();
    HOST.get_or_init(|| {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("keel-fuzz-notify-host-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).expect("address");
        let host = UnixDatagram::bind_addr(&addr).expect("bind the host socket");
        host.set_nonblocking(true).expect("nonblocking");
        (host, format!("@{name}"))
    })
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe")
}

fuzz_target!(|data: &[u8]| {
    let dir = state_dir();
    let (host, host_name) = host();
    // The init: its "exit" is the write end closing.
    let (init, init_alive) = pipe();
    let proxy = libkeel::notify::bind_for_fuzzing(dir, init).expect("bind the proxy");

    // The fds the container sends are write ends of this pipe.
    let (passed_r, passed_w) = pipe();
    let container = UnixDatagram::unbound().expect("socket");
    let to = UnixAddr::new(&dir.join("notify/notify.sock")).expect("address");
    let mut sent = Vec::new();
    for d in datagrams(data) {
        let fds = [passed_w.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let cmsg: &[ControlMessage] = if d.with_fd { &cmsg } else { &[] };
        let iov = [std::io::IoSlice::new(d.bytes)];
        if sendmsg(
            container.as_raw_fd(),
            &iov,
            cmsg,
            MsgFlags::MSG_DONTWAIT,
            Some(&to),
        )
        .is_ok()
        {
            sent.push(d.bytes);
        }
    }
    drop(passed_w);
    drop(init_alive);

    let relayed = proxy.relay_ready(host_name, MAIN_PID).expect("relay");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 2 * PROXY_BUF];
    while let Ok(n) = host.recv(&mut buf) {
        got.push(buf[..n].to_vec());
    }
    match expected(&sent) {
        Some(line) => {
            assert!(relayed, "READY sent but not relayed");
            let mut ready = line;
            ready.push(b'\n');
            assert_eq!(got, [ready, format!("MAINPID={MAIN_PID}\n").into_bytes()]);
            // One assignment only: the container cannot add MAINPID= or
            // others to what the manager reads from the runtime.
            assert_eq!(got[0].iter().filter(|&&b| b == b'\n').count(), 1);
        }
        None => {
            assert!(!relayed, "relayed without READY");
            assert!(got.is_empty(), "sent to the host without READY: {got:?}");
        }
    }

    // Everything queued or read is released with the proxy's socket: no
    // fd the container passed is left open (the pipe reads EOF).
    drop(proxy);
    drop(container);
    assert!(
        matches!(nix::unistd::read(&passed_r, &mut [0u8; 1]), Ok(0)),
        "an fd sent by the container stayed open"
    );
});
