//! `sd_notify MESSAGE`: sends MESSAGE to $NOTIFY_SOCKET as one datagram, as
//! systemd-notify does (busybox has no such applet). Built statically by the
//! conformance harness and copied into test rootfs.
use std::os::unix::net::UnixDatagram;

fn main() {
    let msg = std::env::args().nth(1).unwrap_or_else(|| "READY=1".into());
    let path = std::env::var("NOTIFY_SOCKET").expect("NOTIFY_SOCKET is not set");
    let sock = UnixDatagram::unbound().expect("socket");
    sock.send_to(msg.as_bytes(), &path)
        .unwrap_or_else(|e| panic!("send to {path}: {e}"));
}
