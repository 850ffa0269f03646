//! checkpoint, restore (with CRIU, through the library).

use crate::cli::{CheckpointArgs, CriuArgs, RestoreArgs};
use crate::foreground::Foreground;
use crate::logging::{Level, Logger};
use anyhow::{bail, Context, Result};
use libkeel::checkpoint::{CheckpointOptions, CriuOptions, RestoreOptions};
use libkeel::{Container, ContainerBuilder};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Component, Path, PathBuf};

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
    o.auto_dedup = a.auto_dedup;
    o.lazy_pages = a.lazy_pages;
    for ns in &a.empty_ns {
        // runc maps only this one (the network is never restored anyway).
        match ns.as_str() {
            "network" => o.empty_ns |= libc::CLONE_NEWNET as u32,
            _ => bail!("namespace {ns:?} is not supported"),
        }
    }
    Ok(o)
}

/// `--parent-path`, as runc checks it: relative to the image path, and a
/// directory there. Joined lexically as runc's filepath.Join does: the
/// image directory of a dump does not exist yet, so `images/../parent`
/// would not resolve.
fn parent_path(images: &Path, parent: Option<&Path>) -> Result<Option<PathBuf>> {
    let Some(parent) = parent else {
        return Ok(None);
    };
    if parent.is_absolute() {
        bail!("--parent-path must be relative");
    }
    let mut real = images.to_path_buf();
    for c in parent.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if real.file_name().is_some() => {
                real.pop();
            }
            c => real.push(c),
        }
    }
    match std::fs::metadata(&real) {
        Ok(m) if m.is_dir() => Ok(Some(parent.to_path_buf())),
        Ok(_) => bail!(
            "invalid --parent-path: stat {}: not a directory",
            real.display()
        ),
        Err(e) => bail!("invalid --parent-path: stat {}: {e}", real.display()),
    }
}

/// `--page-server ADDRESS:PORT`, in runc's words when it is not one.
fn page_server(arg: &str) -> Result<(String, i32)> {
    let (address, port) = arg
        .rsplit_once(':')
        .map(|(a, p)| (a.trim_start_matches('[').trim_end_matches(']'), p))
        .filter(|(a, p)| !a.is_empty() && !p.is_empty())
        .ok_or_else(|| anyhow::anyhow!("Use --page-server ADDRESS:PORT to specify page server"))?;
    let port = port
        .parse()
        .map_err(|_| anyhow::anyhow!("Invalid port number"))?;
    Ok((address.to_string(), port))
}

/// `--status-fd N` with `--lazy-pages` (runc ignores it otherwise): an
/// open, writable fd of keel's, taken over (written and closed when CRIU's
/// page server is ready); runc's checks and words.
fn status_fd(fd: Option<i32>, lazy_pages: bool) -> Result<Option<OwnedFd>> {
    let Some(fd) = fd.filter(|&fd| lazy_pages && fd != -1) else {
        return Ok(None);
    };
    // SAFETY: F_GETFL only reads the flags of whatever fd number it gets.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        // Go's words for the errno, as runc prints them.
        let e = std::io::Error::last_os_error().to_string();
        let e = e.split(" (os error").next().unwrap_or(&e).to_lowercase();
        bail!("invalid --status-fd argument {fd}: {e}");
    }
    if flags & (libc::O_WRONLY | libc::O_RDWR) == 0 {
        bail!("invalid --status-fd argument {fd}: not writable");
    }
    // SAFETY: the fd is open (F_GETFL worked) and was handed to keel for
    // this: nothing else in keel owns it.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
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
    let common = criu_options(&a.criu, criu)?;
    let opts = CheckpointOptions {
        status_fd: std::sync::Mutex::new(status_fd(a.status_fd, a.criu.lazy_pages)?),
        parent_path: parent_path(&common.image_path, a.parent_path.as_deref())?,
        page_server: a.page_server.as_deref().map(page_server).transpose()?,
        common,
        leave_running: a.leave_running,
        pre_dump: a.pre_dump,
    };
    let c = Container::load(root, &a.id)?;
    c.checkpoint(&opts)?;
    if !(a.leave_running || a.pre_dump) {
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
    let opts = RestoreOptions {
        common: criu_options(&a.criu, criu)?,
        lsm_profile: a.lsm_profile.clone(),
        lsm_mount_context: a.lsm_mount_context.clone(),
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
