//! The shim server: what containerd's `start` action launches, serving
//! the Task API on the group's socket until Shutdown.

use crate::{events, service, zygote};
use anyhow::{Context as _, Result};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{ExitSignal, Flags};
use std::os::fd::IntoRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;

pub fn serve(flags: &Flags) -> Result<()> {
    if flags.socket.is_empty() {
        anyhow::bail!("-socket is required");
    }
    // First, while this process has a single thread.
    let (zygote, zygote_events) = zygote::fork()?;
    set_signals()?;
    nix::sys::prctl::set_child_subreaper(true).context("become a subreaper")?;
    let path = flags
        .socket
        .strip_prefix("unix://")
        .unwrap_or(&flags.socket)
        .to_string();
    let Some(listener) = listen(&path)? else {
        // The group's shim already serves this socket (pod grouping).
        std::fs::write("address", &flags.socket).context("write address")?;
        server_started();
        return Ok(());
    };
    if let Err(e) = containerd_shim::logger::init(flags.debug, "info", &flags.namespace, &flags.id)
    {
        eprintln!("logger: {e}");
    }
    let ttrpc_address = std::env::var("TTRPC_ADDRESS").context("TTRPC_ADDRESS")?;
    let publisher = RemotePublisher::new(&ttrpc_address)?;
    let exit = Arc::new(ExitSignal::default());
    let events = events::Events::start(publisher, flags.namespace.clone())?;
    let task = service::Service::new(
        flags.namespace.clone(),
        zygote,
        zygote_events,
        events,
        exit.clone(),
    );
    let task: Arc<dyn containerd_shim::Task + Send + Sync> = Arc::new(task);
    // containerd 1.6 and 1.7 call the task API v2; containerd 2 prefers v3.
    // The two differ only in the service's name.
    let mut methods = containerd_shim::protos::shim_sync::create_task(task.clone());
    for (name, handler) in containerd_shim::protos::shim_sync::create_task(task) {
        if let Some(method) = name.strip_prefix("/containerd.task.v3.Task/") {
            methods.insert(format!("/containerd.task.v2.Task/{method}"), handler);
        }
    }
    // Few idle handler threads: each costs memory, and a shim is idle.
    let mut server = containerd_shim::protos::ttrpc::Server::new()
        .set_thread_count_min(1)
        .set_thread_count_default(2)
        .set_thread_count_max(8)
        .add_listener(listener.into_raw_fd())?
        .register_service(methods);
    server.start()?;
    server_started();
    exit.wait();
    server.shutdown();
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Binds the socket; `None` when a live shim already serves it.
fn listen(path: &str) -> Result<Option<UnixListener>> {
    if let Some(dir) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    }
    match UnixListener::bind(path) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if UnixStream::connect(path).is_ok() {
                return Ok(None);
            }
            // A dead shim's socket.
            std::fs::remove_file(path).with_context(|| format!("remove {path}"))?;
            Ok(Some(
                UnixListener::bind(path).with_context(|| format!("bind {path}"))?,
            ))
        }
        Err(e) => Err(e).with_context(|| format!("bind {path}")),
    }
}

/// The `start` action waits for our stdout to close.
fn server_started() {
    // SAFETY: dup2 onto our own stdout.
    unsafe { libc::dup2(2, 1) };
}

/// Exits of the shim's own children (the zygote, logging binaries) need
/// no status: they are reaped by the kernel. SIGTERM and SIGINT do not end
/// the shim; Shutdown does, once its containers are gone.
fn set_signals() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let nowait = SigAction::new(SigHandler::SigDfl, SaFlags::SA_NOCLDWAIT, SigSet::empty());
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: no handler code runs: SIG_DFL and SIG_IGN.
    unsafe {
        sigaction(Signal::SIGCHLD, &nowait)?;
        sigaction(Signal::SIGTERM, &ignore)?;
        sigaction(Signal::SIGINT, &ignore)?;
    }
    Ok(())
}
