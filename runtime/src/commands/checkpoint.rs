//! checkpoint, restore (with CRIU, through the library).

use crate::cli::{CheckpointArgs, CriuArgs, RestoreArgs};
use crate::foreground::Foreground;
use crate::logging::{Level, Logger};
use anyhow::{bail, Context, Result};
use libkeel::checkpoint::{CheckpointOptions, CriuOptions, RestoreOptions};
use libkeel::{Container, ContainerBuilder};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// The options both commands share; the image path defaults to runc's,
/// `checkpoint` in the current directory.
fn criu_options(a: &CriuArgs, criu: Option<&Path>) -> Result<CriuOptions> {
    let images = match &a.image_path {
        Some(p) => p.clone(),
        None => std::env::current_dir()
            .context("current directory")?
            .join("checkpoint"),
    };
    let mut o = CriuOptions::new(images);
    if let Some(c) = criu {
        o.criu = c.to_path_buf();
    }
    o.work_path = a.work_path.clone();
    o.tcp_established = a.tcp_established;
    o.ext_unix_sk = a.ext_unix_sk;
    o.shell_job = a.shell_job;
    o.file_locks = a.file_locks;
    o.manage_cgroups_mode = a
        .manage_cgroups_mode
        .parse()
        .map_err(|()| anyhow::anyhow!("Invalid manage-cgroups-mode value"))?;
    Ok(o)
}

/// Flags runc has that keel does not implement yet: refused, never ignored.
fn refuse(unsupported: &[(&str, bool)]) -> Result<()> {
    if let Some((flag, _)) = unsupported.iter().find(|(_, given)| *given) {
        bail!("{flag} is not supported by this version of keel yet");
    }
    Ok(())
}

fn refuse_common(a: &CriuArgs) -> Result<()> {
    refuse(&[
        ("--empty-ns", !a.empty_ns.is_empty()),
        ("--auto-dedup", a.auto_dedup),
        ("--lazy-pages", a.lazy_pages),
    ])
}

fn warn_all(log: &Logger, warnings: &[String]) {
    for w in warnings {
        log.log(Level::Warning, w);
    }
}

/// `checkpoint`: dumps the container; unless `--leave-running`, the
/// container is then gone (CRIU killed it; keel deletes what is left).
pub fn checkpoint(
    root: &Path,
    a: &CheckpointArgs,
    criu: Option<&Path>,
    log: &Logger,
) -> Result<i32> {
    refuse_common(&a.criu)?;
    refuse(&[
        ("--parent-path", a.parent_path.is_some()),
        ("--pre-dump", a.pre_dump),
        ("--page-server", a.page_server.is_some()),
        ("--status-fd", a.status_fd.is_some()),
    ])?;
    let opts = CheckpointOptions {
        common: criu_options(&a.criu, criu)?,
        leave_running: a.leave_running,
    };
    let c = Container::load(root, &a.id)?;
    c.checkpoint(&opts)?;
    if !a.leave_running {
        warn_all(log, &c.delete(true)?);
    }
    Ok(0)
}

/// `restore`: the container runs again under `id`; in the foreground keel
/// waits for it, forwarding signals (and its terminal), exits with its
/// status and deletes it, as `run` does.
pub fn restore(
    root: &Path,
    a: &RestoreArgs,
    criu: Option<&Path>,
    log: &Logger,
    systemd: bool,
) -> Result<i32> {
    refuse_common(&a.criu)?;
    refuse(&[
        ("--lsm-profile", a.lsm_profile.is_some()),
        ("--lsm-mount-context", a.lsm_mount_context.is_some()),
    ])?;
    let opts = RestoreOptions {
        common: criu_options(&a.criu, criu)?,
    };
    let terminal = super::bundle_terminal(&a.bundle)?;
    if a.console_socket.is_some() {
        super::check_console_socket(true, a.detach, terminal)?;
    }
    // --no-pivot is accepted as runc accepts it: CRIU sets up the root.
    let mut b = ContainerBuilder::new(&a.id, &a.bundle)
        .root(root)
        .systemd_cgroup(systemd);
    if let Some(p) = &a.pid_file {
        b = b.pid_file(p);
    }
    if a.detach {
        if let Some(path) = &a.console_socket {
            let s = UnixStream::connect(path)
                .with_context(|| format!("--console-socket: connect {}", path.display()))?;
            b = b.console_socket(OwnedFd::from(s));
        }
        let c = b.restore(&opts)?;
        warn_all(log, c.warnings());
        return Ok(0);
    }
    // The restored process keeps the stdio CRIU gives it back.
    let (fg, for_process) = Foreground::prepare(!a.no_subreaper, terminal, None)?;
    let c = b.console_socket(for_process.console).restore(&opts)?;
    warn_all(log, c.warnings());
    let init = nix::unistd::Pid::from_raw(c.pid());
    let code = match fg.wait(init, log, || Ok(())) {
        Ok(code) => code,
        Err(e) => {
            let _ = c.delete(true);
            return Err(e);
        }
    };
    warn_all(log, &Container::load(root, &a.id)?.delete(true)?);
    Ok(code)
}
