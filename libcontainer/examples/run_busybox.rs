//! Runs one container with the library API: create it from a bundle, start
//! it, wait for its init to exit, delete it. The program's exit status is
//! the container's.
//!
//! ```sh
//! cargo build --examples
//! sudo target/debug/examples/run_busybox /path/to/bundle demo [/run/keel-example]
//! ```
//!
//! The bundle is an OCI bundle (`config.json` + rootfs), e.g. one made with
//! `keel spec` over a busybox rootfs, with `process.terminal` set to false.

use libkeel::{Container, ContainerBuilder, Runtime, Status};
use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if !(3..=4).contains(&args.len()) {
        eprintln!("usage: {} BUNDLE ID [STATE_ROOT]", args[0]);
        return ExitCode::from(2);
    }
    let root = args.get(3).map_or("/run/keel-example", String::as_str);
    match Runtime::init().and_then(|rt| run(&rt, Path::new(&args[1]), &args[2], Path::new(root))) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("run_busybox: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Creates, starts, waits for and deletes container `id`; returns its exit
/// status (128+N if killed by signal N).
fn run(rt: &Runtime, bundle: &Path, id: &str, root: &Path) -> libkeel::Result<u8> {
    // `create` forks the init from this process (`rt` proves it may); on
    // error it leaves nothing behind.
    let container = ContainerBuilder::new(id, bundle).root(root).create(rt)?;
    for w in container.warnings() {
        eprintln!("warning: {w}");
    }
    let init = Pid::from_raw(container.pid());
    if let Err(e) = container.start() {
        let _ = container.delete(true);
        return Err(e);
    }

    let code = loop {
        match waitpid(init, None) {
            Ok(WaitStatus::Exited(_, code)) => break code as u8,
            Ok(WaitStatus::Signaled(_, sig, _)) => break 128u8.wrapping_add(sig as u8),
            Ok(_) | Err(Errno::EINTR) => continue,
            // The init is not our child when the container joins an
            // existing pid namespace (it is forked once more there): watch
            // its status instead; its exit status is then unknown.
            Err(Errno::ECHILD) => {
                while Container::load(root, id)?.status() != Status::Stopped {
                    std::thread::sleep(Duration::from_millis(10));
                }
                eprintln!("run_busybox: the init was not our child; exit status unknown");
                break 0;
            }
            Err(e) => {
                eprintln!("run_busybox: waitpid {init}: {e}");
                break 1;
            }
        }
    };

    // Removes the cgroups and the state directory (and, with force, would
    // kill whatever still ran in the container's cgroup).
    Container::load(root, id)?.delete(true)?;
    Ok(code)
}
