//! create, start, run, kill, delete.

use crate::cli::{CreateArgs, RunArgs};
use crate::foreground::{ForProcess, Foreground};
use crate::logging::{Level, Logger};
use anyhow::Result;
use libkeel::spec::Bundle;
use libkeel::{Container, ContainerBuilder, Signal};
use nix::unistd::Pid;
use std::path::Path;

/// `rootless`: tolerate cgroups keel may not create (`--rootless`).
/// `foreground`: what a foreground `run` prepared for the process, and
/// the bundle it loaded for that.
fn create_container(
    runtime: &libkeel::Runtime,
    root: &Path,
    a: &CreateArgs,
    log: &Logger,
    foreground: Option<(ForProcess, Bundle)>,
    rootless: bool,
    systemd: bool,
) -> Result<Container> {
    let (console, stdio, loaded) = match foreground {
        Some((f, bundle)) => (Some(f.console), f.stdio, Some(bundle)),
        None => (None, None, None),
    };
    if a.console_socket.is_some() {
        // The foreground `run` passes its own console; `create` and
        // `run -d` detach.
        let detach = console.is_none();
        let terminal = detach && super::bundle_terminal(&a.bundle)?;
        super::check_console_socket(true, detach, terminal)?;
    }
    let console = match (&a.console_socket, console) {
        (Some(path), _) => Some(super::connect("console-socket", path)?),
        (None, c) => c,
    };
    let pidfd_socket = match &a.pidfd_socket {
        Some(path) => Some(super::connect("pidfd-socket", path)?),
        None => None,
    };
    let mut b = ContainerBuilder::new(&a.id, &a.bundle)
        .root(root)
        .no_pivot(a.no_pivot)
        .no_new_keyring(a.no_new_keyring)
        .preserve_fds(a.preserve_fds + listen_fds())
        .notify_socket(notify_socket().is_some())
        .rootless_cgroups(rootless)
        .systemd_cgroup(systemd);
    if let Some(p) = &a.pid_file {
        b = b.pid_file(p);
    }
    if let Some(c) = console {
        b = b.console_socket(c);
    }
    if let Some([i, o, e]) = stdio {
        b = b.stdio(i, o, e);
    }
    if let Some(bundle) = loaded {
        b = b.loaded_bundle(bundle);
    }
    let c = b.create(runtime)?;
    for w in c.warnings() {
        log.log(Level::Warning, w);
    }
    if let Some(socket) = &pidfd_socket {
        // runc's init sends its pidfd during create, before start.
        let sent = super::send_pidfd(socket, libkeel::pidfd::Kind::Init, c.pidfd().as_ref());
        if let Err(e) = sent {
            let _ = c.delete(true);
            return Err(e);
        }
    }
    Ok(c)
}

/// Sockets handed over by systemd socket activation travel on, as in runc.
fn listen_fds() -> u32 {
    std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The service manager's sd_notify socket, if keel runs under one.
fn notify_socket() -> Option<String> {
    std::env::var("NOTIFY_SOCKET")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Binds the container's sd_notify proxy (before start, so that nothing the
/// program sends is lost) when keel has a `NOTIFY_SOCKET` to relay to.
fn bind_notify(c: &Container) -> Result<Option<(libkeel::notify::NotifyProxy, String)>> {
    let Some(host) = notify_socket() else {
        return Ok(None);
    };
    Ok(c.notify_proxy()?.map(|p| (p, host)))
}

/// `create`; `systemd` is `--systemd-cgroup`.
pub fn create(
    runtime: &libkeel::Runtime,
    root: &Path,
    a: &CreateArgs,
    log: &Logger,
    rootless: bool,
    systemd: bool,
) -> Result<i32> {
    create_container(runtime, root, a, log, None, rootless, systemd)?;
    Ok(0)
}

fn warn_all(log: &Logger, warnings: Vec<String>) {
    for w in warnings {
        log.log(Level::Warning, &w);
    }
}

/// As runc, `start` (and a detached `run`) of a container with an
/// sd_notify proxy returns once the program is ready, or has exited.
pub fn start(root: &Path, id: &str) -> Result<i32> {
    let c = Container::load(root, id)?;
    let notify = bind_notify(&c)?;
    c.start()?;
    if let Some((proxy, host)) = notify {
        proxy.relay_ready(&host, c.pid())?;
    }
    Ok(0)
}

/// `run`: create + start, then (unless detached) forward signals to the
/// init, wait for it, exit with its status and delete the container.
pub fn run(
    runtime: &libkeel::Runtime,
    root: &Path,
    a: &RunArgs,
    log: &Logger,
    rootless: bool,
    systemd: bool,
) -> Result<i32> {
    if a.detach {
        let c = create_container(runtime, root, &a.create, log, None, rootless, systemd)?;
        let notify = match bind_notify(&c) {
            Ok(n) => n,
            Err(e) => {
                let _ = c.delete(true);
                return Err(e);
            }
        };
        let pid = c.pid();
        start_or_destroy(c)?;
        if let Some((proxy, host)) = notify {
            proxy.relay_ready(&host, pid)?;
        }
        return Ok(0);
    }
    let bundle = Bundle::load(&a.create.bundle)?;
    let terminal = super::spec_terminal(&bundle.spec);
    let owner = libkeel::rootless::root_host_ids(&bundle.spec);
    let (fg, for_process) = Foreground::prepare(!a.no_subreaper, terminal, Some(owner))?;
    let c = create_container(
        runtime,
        root,
        &a.create,
        log,
        Some((for_process, bundle)),
        rootless,
        systemd,
    )?;
    let init = Pid::from_raw(c.pid());
    let start = || {
        let notify = bind_notify(&c)?;
        c.start()?;
        // keel stays in the foreground, so keel is the main pid the manager
        // watches; relaying must not hold up signal forwarding.
        if let Some((proxy, host)) = notify {
            std::thread::spawn(move || {
                if let Err(e) = proxy.relay_ready(&host, std::process::id() as i32) {
                    eprintln!("keel: sd_notify: {e}");
                }
            });
        }
        Ok(())
    };
    let code = match fg.wait(init, log, start) {
        Ok(code) => code,
        Err(e) => {
            // Whatever failed after create, the container must not outlive us.
            let _ = c.delete(true);
            return Err(e);
        }
    };
    if !a.keep {
        warn_all(log, c.delete(true)?);
    }
    Ok(code)
}

fn start_or_destroy(c: Container) -> Result<()> {
    if let Err(e) = c.start() {
        let _ = c.delete(true);
        return Err(e.into());
    }
    Ok(())
}

/// runc's signal syntax: any number (the kernel judges it; 0 probes), or a
/// name with or without SIG, any case.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return Ok(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| anyhow::anyhow!("unknown signal {s:?}"))
}

/// As runc: the container first (a missing one is the error), then the signal.
pub fn kill(root: &Path, id: &str, signal: &str, all: bool) -> Result<i32> {
    let c = Container::load(root, id)?;
    c.kill(parse_signal(signal)?, all)?;
    Ok(0)
}

pub fn delete(root: &Path, id: &str, force: bool, log: &Logger) -> Result<i32> {
    match Container::load(root, id) {
        Ok(c) => match c.delete(force) {
            Ok(warnings) => warn_all(log, warnings),
            // Deleted by someone else while we waited for its lock.
            Err(libkeel::Error::NotFound(_)) if force => {}
            Err(e) => return Err(e.into()),
        },
        // runc: deleting a missing container with --force is not an error;
        // what a create killed midway left goes too.
        Err(libkeel::Error::NotFound(_)) if force => {
            libkeel::state::remove_aborted(root, id)?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_like_runc() {
        for s in ["9", "KILL", "kill", "SIGKILL", "sigkill"] {
            assert_eq!(parse_signal(s).unwrap(), libc::SIGKILL, "{s}");
        }
        assert!(parse_signal("SIGNOPE").is_err());
        assert_eq!(parse_signal("0").unwrap(), 0);
        assert_eq!(parse_signal("99").unwrap(), 99);
    }
}
