//! sd_notify across the container boundary, as runc proxies it.
//!
//! A service manager (systemd, or podman's `--sdnotify=container`) gives the
//! runtime a `NOTIFY_SOCKET`. The container cannot reach that socket, so the
//! runtime binds its own datagram socket in the state directory, bind-mounts
//! that directory read-only at `/run/notify` and points the container's
//! `NOTIFY_SOCKET` there. Once the program says `READY=…`, the runtime
//! passes the line on, followed by `MAINPID=`, which tells the manager which
//! process to watch. As in runc, only the first `READY` message is relayed.

use crate::error::{Result, SysContext};
use oci_spec::runtime::{Mount, Spec};
use std::io::ErrorKind;
use std::os::fd::{AsFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};

/// The directory, under the container's state directory, that is mounted
/// into the container.
pub(crate) const DIR: &str = "notify";
const SOCKET: &str = "notify.sock";
const IN_CONTAINER: &str = "/run/notify";

/// Where the proxy socket of the container with state directory `state_dir`
/// lives on the host.
fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(DIR).join(SOCKET)
}

/// Adds the mount of the proxy directory and the container's
/// `NOTIFY_SOCKET` to `spec` (runc's `setupSpec`).
pub(crate) fn add_to_spec(spec: &mut Spec, state_dir: &Path) {
    let mut mount = Mount::default();
    mount.set_destination(PathBuf::from(IN_CONTAINER));
    mount.set_typ(Some("bind".into()));
    mount.set_source(Some(state_dir.join(DIR)));
    mount.set_options(Some(
        ["bind", "nosuid", "noexec", "nodev", "ro"]
            .map(String::from)
            .to_vec(),
    ));
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(mount);
    spec.set_mounts(Some(mounts));
    if let Some(process) = spec.process_mut() {
        let mut env = process.env().clone().unwrap_or_default();
        env.retain(|e| !e.starts_with("NOTIFY_SOCKET="));
        env.push(format!("NOTIFY_SOCKET={IN_CONTAINER}/{SOCKET}"));
        process.set_env(Some(env));
    }
}

/// The proxy socket, bound and waiting for the container's `READY`.
#[derive(Debug)]
pub struct NotifyProxy {
    socket: UnixDatagram,
    /// Keeps the proxy from waiting on a container that has exited.
    init: OwnedFd,
}

impl NotifyProxy {
    /// Binds the proxy socket in `state_dir` (made at create).
    pub(crate) fn bind(state_dir: &Path, init: OwnedFd) -> Result<NotifyProxy> {
        let path = socket_path(state_dir);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(crate::Error::io(format!("remove {}", path.display()), e))
            }
            _ => {}
        }
        let socket = UnixDatagram::bind(&path).ctx(|| format!("bind {}", path.display()))?;
        // The container's program may run as any user.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .ctx(|| format!("chmod {}", path.display()))?;
        Ok(NotifyProxy { socket, init })
    }

    /// Waits for the container's first `READY=` message, then sends it and
    /// `MAINPID=<main_pid>` to `host` (a path, or `@name` for an abstract
    /// socket). Returns `Ok(false)` if the container exited first.
    pub fn relay_ready(&self, host: &str, main_pid: i32) -> Result<bool> {
        let Some(ready) = self.wait_ready()? else {
            return Ok(false);
        };
        let addr = match host.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
            None => SocketAddr::from_pathname(host),
        }
        .ctx(|| format!("NOTIFY_SOCKET {host:?}"))?;
        let client = UnixDatagram::unbound().ctx(|| "socket(AF_UNIX, SOCK_DGRAM)".into())?;
        let mut msg = ready;
        msg.push(b'\n');
        client
            .send_to_addr(&msg, &addr)
            .ctx(|| format!("send READY to NOTIFY_SOCKET {host}"))?;
        client
            .send_to_addr(format!("MAINPID={main_pid}\n").as_bytes(), &addr)
            .ctx(|| format!("send MAINPID to NOTIFY_SOCKET {host}"))?;
        Ok(true)
    }

    /// The first `READY=` line the container sends, or None once it exits.
    fn wait_ready(&self) -> Result<Option<Vec<u8>>> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut buf = vec![0u8; 4096];
        loop {
            let mut fds = [
                PollFd::new(self.socket.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.init.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => r.ctx(|| "poll the notify socket".into())?,
            };
            if fds[0].revents().is_some_and(|r| !r.is_empty()) {
                let n = self.socket.recv(&mut buf).ctx(|| "recv notify".into())?;
                if let Some(line) = ready_line(&buf[..n]) {
                    return Ok(Some(line.to_vec()));
                }
                continue;
            }
            if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                return Ok(None);
            }
        }
    }
}

/// A proxy bound in `state_dir` (which must hold a `notify` directory),
/// waiting until `init` polls readable: for the fuzz target only, which
/// plays the container.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn bind_for_fuzzing(state_dir: &Path, init: OwnedFd) -> Result<NotifyProxy> {
    NotifyProxy::bind(state_dir, init)
}

/// systemd's protocol sends one datagram of newline-separated assignments;
/// the relayed line is the `READY=` one.
fn ready_line(msg: &[u8]) -> Option<&[u8]> {
    msg.split(|&b| b == b'\n')
        .find(|line| line.starts_with(b"READY="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_is_found_among_others() {
        assert_eq!(
            ready_line(b"STATUS=up\nREADY=1\nMAINPID=3"),
            Some(&b"READY=1"[..])
        );
        assert_eq!(ready_line(b"READY=1"), Some(&b"READY=1"[..]));
        assert_eq!(ready_line(b"STATUS=starting"), None);
    }

    #[test]
    fn spec_gets_mount_and_env() {
        let mut spec = Spec::default();
        add_to_spec(&mut spec, Path::new("/run/keel/c1"));
        let m = spec.mounts().as_ref().and_then(|m| m.last()).cloned();
        let m = m.expect("a mount");
        assert_eq!(m.destination(), Path::new("/run/notify"));
        assert_eq!(
            m.source().as_deref(),
            Some(Path::new("/run/keel/c1/notify"))
        );
        let env = spec.process().as_ref().and_then(|p| p.env().clone());
        assert!(env
            .unwrap_or_default()
            .contains(&"NOTIFY_SOCKET=/run/notify/notify.sock".to_string()));
    }
}
