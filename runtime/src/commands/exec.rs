//! `exec`: a new process in a running container, from `--process FILE` or
//! from the container's own process with the command and flags applied.

use crate::cli::ExecArgs;
use crate::foreground::Foreground;
use crate::logging::{Level, Logger};
use anyhow::{bail, Context, Result};
use libkeel::oci_spec::runtime::{Capability, Process, User};
use libkeel::{Container, ExecOptions};
use nix::unistd::Pid;
use std::path::Path;

pub fn exec(runtime: &libkeel::Runtime, root: &Path, a: &ExecArgs, log: &Logger) -> Result<i32> {
    let mut c = Container::load(root, &a.id)?;
    let (mut process, warnings) = process_for(&c, a)?;
    for w in &warnings {
        log.log(Level::Warning, w);
    }
    let terminal = process.terminal().unwrap_or(false);
    super::check_console_socket(a.console_socket.is_some(), a.detach, terminal)?;
    let mut opts = ExecOptions {
        preserve_fds: a.preserve_fds
            + std::env::var("LISTEN_FDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        pid_file: a.pid_file.clone(),
        ignore_paused: a.ignore_paused,
        sub_cgroups: if a.cgroup.is_empty() {
            None
        } else {
            Some(libkeel::cgroups::SubCgroups::parse(&a.cgroup)?)
        },
        ..Default::default()
    };
    if let Some(path) = &a.console_socket {
        opts.console_socket = Some(super::connect("console-socket", path)?);
    }
    let pidfd_socket = match &a.pidfd_socket {
        Some(path) => Some(super::connect("pidfd-socket", path)?),
        None => None,
    };
    let foreground = if a.detach {
        None
    } else {
        let (fg, for_process) = Foreground::prepare(true, terminal, Some(c.root_host_ids()))?;
        // The pty is sized before the program runs: an exec is not held
        // until keel relays the terminal, so sizing it only then races the
        // program's first look at it (runc's race).
        if let Some(size) = fg.host_size() {
            process.set_console_size(Some(console_box(size)?));
        }
        if opts.console_socket.is_none() {
            opts.console_socket = Some(for_process.console);
        }
        opts.stdio = for_process.stdio;
        Some(fg)
    };
    let started = c.exec(runtime, &process, opts)?;
    warn_all(&c, log);
    if let Some(socket) = &pidfd_socket {
        let sent = super::send_pidfd(socket, libkeel::pidfd::Kind::Exec, started.pidfd.as_ref());
        if let Err(e) = sent {
            // As runc: the process does not outlive a failed exec.
            let _ = nix::sys::signal::kill(Pid::from_raw(started.pid), libkeel::Signal::SIGKILL);
            return Err(e);
        }
    }
    match foreground {
        None => Ok(0),
        Some(fg) => fg.wait(Pid::from_raw(started.pid), log, || Ok(())),
    }
}

fn console_box(size: libkeel::console::Size) -> Result<libkeel::oci_spec::runtime::Box> {
    libkeel::oci_spec::runtime::BoxBuilder::default()
        .height(u64::from(size.rows))
        .width(u64::from(size.cols))
        .build()
        .context("console size")
}

fn warn_all(c: &Container, log: &Logger) {
    for w in c.warnings() {
        log.log(Level::Warning, w);
    }
}

/// runc's rules: `--process` replaces everything; otherwise the container's
/// process is the base, with the command, env, cwd, user, caps and flags
/// of the command line on top. Returns what runc would warn about.
fn process_for(c: &Container, a: &ExecArgs) -> Result<(Process, Vec<String>)> {
    if let Some(path) = &a.process {
        let text = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
        return libkeel::spec::parse_process(&text)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("{}: invalid process JSON", path.display()));
    }
    if a.command.is_empty() {
        bail!("exec: no command given (and no --process)");
    }
    let mut p = c.process().cloned().unwrap_or_default();
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(a.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (
                u.parse().context("--user: uid")?,
                g.parse().context("--user: gid")?,
            ),
            None => (u.parse().context("--user: uid")?, 0),
        };
        let mut user = User::default();
        user.set_uid(uid);
        user.set_gid(gid);
        p.set_user(user);
    }
    if !a.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(a.additional_gids.clone()));
        p.set_user(user);
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(profile) = &a.apparmor {
        p.set_apparmor_profile(Some(profile.clone()));
    }
    if let Some(label) = &a.process_label {
        p.set_selinux_label(Some(label.clone()));
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let add = |set: &Option<libkeel::oci_spec::runtime::Capabilities>, cap: Capability| {
            let mut s = set.clone().unwrap_or_default();
            s.insert(cap);
            Some(s)
        };
        for name in &a.cap {
            let cap: Capability = serde_json::from_value(serde_json::Value::String(name.clone()))
                .with_context(|| format!("--cap: unknown capability {name}"))?;
            caps.set_bounding(add(caps.bounding(), cap));
            caps.set_effective(add(caps.effective(), cap));
            caps.set_permitted(add(caps.permitted(), cap));
            // As runc: ambient too, but only when the process has an
            // inheritable set (without it no ambient raise can work).
            if caps.inheritable().is_some() {
                caps.set_ambient(add(caps.ambient(), cap));
            }
        }
        p.set_capabilities(Some(caps));
    }
    Ok((p, Vec::new()))
}
