//! containerd-shim-keel-v2: containerd's runtime v2 shim for keel, driving
//! libkeel in-process (no runtime binary per operation). Runtime type
//! `io.containerd.keel.v2`.
//!
//! Built on the `containerd-shim` crate (flags, `start`'s spawn, logger)
//! and `containerd-shim-protos` (the Task API, events and ttrpc messages),
//! but with a ttrpc loop of its own on a single thread (see `server`): the
//! crate's server and publisher run threads, and a multi-threaded shim
//! cannot fork safely, which libkeel's create and exec do. The crate's
//! bootstrap is not used either: it serves only the task API v3 of
//! containerd 2, and answers `start` in a form containerd 1.6 cannot
//! read; `server` serves both v2 and v3.

mod bundle;
mod checkpoint;
mod events;
mod metrics;
mod options;
mod server;
mod service;
mod spawn;
mod stdio;
mod wire;

use anyhow::{Context as _, Result};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::types::introspection::{RuntimeInfo, RuntimeVersion};
use containerd_shim::{api, Flags, StartOpts};
use std::io::Write;
use std::path::PathBuf;

const RUNTIME_ID: &str = "io.containerd.keel.v2";

/// Annotations that put containers in one shim, as the runc shim groups
/// a pod's containers.
const GROUP_LABELS: [&str; 2] = [
    "io.containerd.runc.v2.group",
    "io.kubernetes.cri.sandbox-id",
];

/// The shim that serves container `id`: its pod's (by the grouping
/// annotations of the bundle's config.json, in the current directory), or
/// its own.
fn grouping(id: &str) -> String {
    let config = bundle::Config::load(std::path::Path::new(".")).unwrap_or_default();
    GROUP_LABELS
        .iter()
        .find_map(|k| config.annotation(k).filter(|v| !v.is_empty()))
        .map_or_else(|| id.to_string(), str::to_string)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flags = match containerd_shim::parse(&args[1..]) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{RUNTIME_ID}: {e}");
            std::process::exit(1);
        }
    };
    let result = if flags.info {
        info()
    } else if flags.namespace.is_empty() {
        Err(anyhow::anyhow!("-namespace is required"))
    } else {
        match flags.action.as_str() {
            "start" => start(&flags),
            "delete" => delete(&flags),
            "" => serve(&flags),
            other => Err(anyhow::anyhow!("unknown action {other:?}")),
        }
    };
    if let Err(e) = result {
        eprintln!("{RUNTIME_ID}: {e:#}");
        std::process::exit(1);
    }
}

/// The server: libkeel's token first (CVE-2019-5736: the processes the
/// server forks into containers carry its binary as their exe until they
/// execve, and it must be a read-only view of it: `start` runs the server
/// from one, and this checks it, or re-executes the server from one when
/// it was started otherwise), before any thread could be started.
fn serve(flags: &Flags) -> Result<()> {
    cloexec_inherited_fds();
    let runtime = libkeel::Runtime::init().context("protect the shim's binary")?;
    server::serve(flags, runtime)
}

/// What the server inherited past stdio (from `start`: the binary's view,
/// see `spawn_server`) stays open but goes to no process it starts.
fn cloexec_inherited_fds() {
    // SAFETY: plain system call, no pointers; it only flags this process's
    // own fds.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return;
    }
    // Kernels before 5.11: one by one.
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: fcntl on an fd number; a stale one (the directory's own)
        // gives EBADF, ignored.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// `start`: runs the server for this container's group, or finds the
/// running one, and prints its address. containerd 1.6 reads a bare
/// address (later ones accept it too).
fn start(flags: &Flags) -> Result<()> {
    let opts = StartOpts {
        id: flags.id.clone(),
        publish_binary: flags.publish_binary.clone(),
        address: flags.address.clone(),
        ttrpc_address: std::env::var("TTRPC_ADDRESS").unwrap_or_default(),
        namespace: flags.namespace.clone(),
        debug: flags.debug,
        ..Default::default()
    };
    let options = options::Options::from_stdin()?;
    let grouping = grouping(&flags.id);
    let existing = opts.socket_address(&grouping);
    let path = existing.strip_prefix("unix://").unwrap_or(&existing);
    let address = if std::os::unix::net::UnixStream::connect(path).is_ok() {
        // The pod's shim runs already (and sits in its cgroup).
        existing
    } else {
        let (pid, address) = spawn_server(&opts, &grouping)?;
        if !options.shim_cgroup.is_empty() {
            join_cgroup(&options.shim_cgroup, pid)?;
        }
        address
    };
    std::fs::write("address", &address).context("write address")?;
    let mut out = std::io::stdout().lock();
    out.write_all(address.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Starts the server for `grouping` and waits until it listens (its
/// stdout closes); its pid and address. As `containerd_shim::spawn`, but
/// the server is executed from a read-only view of this binary, so that
/// its `Runtime::init` finds it protected and does not execute it a second
/// time; the server inherits the view's fd and keeps it (see `serve`), so
/// the view's unmount does not hold up this process's exit, which
/// containerd waits for.
fn spawn_server(opts: &StartOpts, grouping: &str) -> Result<(u32, String)> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("the shim's path")?;
    let view = libkeel::Runtime::view_of_this_binary().context("protect the shim's binary")?;
    // This process is single-threaded and starts no other: the fd goes to
    // the server only.
    nix::fcntl::fcntl(
        &view,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .context("hand the binary's view to the server")?;
    let address = opts.socket_address(grouping);
    let mut cmd = std::process::Command::new(format!("/proc/self/fd/{}", view.as_raw_fd()));
    cmd.arg0(&exe)
        .args(["-namespace", &opts.namespace, "-id", &opts.id])
        .args(["-address", &opts.address, "-socket", &address])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    if opts.debug {
        cmd.arg("-debug");
    }
    let mut child = cmd.spawn().context("spawn the shim server")?;
    if let Some(mut out) = child.stdout.take() {
        std::io::copy(&mut out, &mut std::io::stderr()).context("wait for the shim server")?;
    }
    Ok((child.id(), address))
}

/// Moves the shim server into `ShimCgroup`, as the runc shim does: the
/// path is taken from each hierarchy's root, and the server joins the
/// hierarchies where it exists (on a hybrid host the cgroup2 one may lack
/// it).
fn join_cgroup(cgroup: &str, pid: u32) -> Result<()> {
    let path = std::path::Path::new("/").join(cgroup.trim_start_matches('/'));
    let paths = libkeel::cgroups::CgroupPaths::resolve(Some(&path), "")
        .with_context(|| format!("ShimCgroup {cgroup}"))?;
    let mut joined = false;
    for dir in paths.unified.iter().chain(paths.v1.values()) {
        if dir.is_dir() {
            let procs = dir.join("cgroup.procs");
            std::fs::write(&procs, pid.to_string())
                .with_context(|| format!("ShimCgroup: write {}", procs.display()))?;
            joined = true;
        }
    }
    if !joined {
        anyhow::bail!("ShimCgroup {cgroup}: no such cgroup");
    }
    Ok(())
}

/// `delete`, after a shim died: removes the container, its cgroup and its
/// rootfs mount (containerd runs it in the bundle).
fn delete(flags: &Flags) -> Result<()> {
    let bundle = if flags.bundle.is_empty() {
        std::env::current_dir()?
    } else {
        PathBuf::from(&flags.bundle)
    };
    let root = options::load(&bundle).root(&flags.namespace);
    match libkeel::Container::load(&root, &flags.id) {
        Ok(c) => {
            if let Err(e) = c.delete(true) {
                eprintln!("{RUNTIME_ID}: delete {}: {e}", flags.id);
            }
        }
        Err(libkeel::Error::NotFound(_)) => {}
        Err(e) => eprintln!("{RUNTIME_ID}: load {}: {e}", flags.id),
    }
    let _ = nix::mount::umount2(&bundle.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
    let resp = api::DeleteResponse {
        exit_status: 128 + 9,
        exited_at: MessageField::some(containerd_shim::util::timestamp()?),
        ..Default::default()
    };
    let mut out = std::io::stdout().lock();
    resp.write_to_writer(&mut out)?;
    out.flush()?;
    Ok(())
}

/// `-info`: the RuntimeInfo containerd 2 asks for, with keel's features.
fn info() -> Result<()> {
    let features = Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/features/Features".into(),
        value: serde_json::to_vec(&libkeel::features())?,
        ..Default::default()
    };
    let info = RuntimeInfo {
        name: RUNTIME_ID.to_string(),
        version: MessageField::some(RuntimeVersion {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        }),
        features: MessageField::some(features),
        ..Default::default()
    };
    let mut out = std::io::stdout().lock();
    info.write_to_writer(&mut out)?;
    out.flush()?;
    Ok(())
}
