//! The proof that this process may create containers and exec processes
//! into them: [`Runtime::init`] is the one way to get it, and
//! [`ContainerBuilder::create`](crate::ContainerBuilder::create) and
//! [`Container::exec`](crate::Container::exec) take it.
//!
//! Both fork a child that runs ordinary Rust code (allocation, mounts,
//! hooks) until its execve. That is sound only in a single-threaded process:
//! a lock another thread holds at the fork (malloc's, stdio's, the
//! logger's) stays locked forever in the child. And until that execve the
//! child's `/proc/self/exe` is the caller's binary, which a container must
//! not be able to open for writing (CVE-2019-5736, see
//! [`security::exe`](crate::security)).

use crate::error::{Error, Result, SysContext};
pub use crate::security::exe::Protection;
use std::marker::PhantomData;

/// Proof that this process was single-threaded and runs from a binary the
/// containers cannot modify, when [`Runtime::init`] made it.
///
/// Neither `Send` nor `Sync`: it stays on the thread that made it. It
/// cannot prove that no thread was started since: keep the process
/// single-threaded while containers are created or exec'd (or fork a
/// single-threaded helper for that first, and make the token there).
///
/// ```compile_fail
/// fn needs_send<T: Send>(_: T) {}
/// needs_send(libkeel::Runtime::init().unwrap());
/// ```
#[derive(Debug)]
pub struct Runtime {
    protection: Protection,
    /// The path the process's binary was started from, when known.
    origin: Option<std::path::PathBuf>,
    _one_thread: PhantomData<*const ()>,
}

impl Runtime {
    /// Checks that this process has one thread, then makes sure it runs
    /// from a binary the containers cannot modify: when it does not yet,
    /// the process is executed again (same arguments and environment, fds
    /// kept) from a read-only view of its binary, and this call does not
    /// return: the new image calls it again and gets its token. Call it
    /// first thing in `main`, before any thread is started, in every
    /// program that creates containers or execs processes in them.
    ///
    /// Costs one `stat` of `/proc/self/task` and, once protected, the
    /// `open`, `fcntl` and `fstatvfs` of `/proc/self/exe` that find it so.
    ///
    /// ```no_run
    /// fn main() -> libkeel::Result<()> {
    ///     // May re-execute this program: nothing before it should matter.
    ///     let runtime = libkeel::Runtime::init()?;
    ///     let c = libkeel::ContainerBuilder::new("web", "/srv/bundles/web").create(&runtime)?;
    ///     c.start()
    /// }
    /// ```
    ///
    /// Errors: [`Error::MultiThreaded`] when another thread runs; a
    /// [`Error::Sys`] when the binary cannot be protected.
    pub fn init() -> Result<Runtime> {
        let threads = threads()?;
        if threads != 1 {
            return Err(Error::MultiThreaded(threads));
        }
        let (protection, origin) = crate::security::exe::protect(std::env::args_os().collect())?;
        Ok(Runtime {
            protection,
            origin,
            _one_thread: PhantomData,
        })
    }

    /// How this process's binary is out of the containers' reach.
    pub fn protection(&self) -> Protection {
        self.protection
    }

    /// A read-only view of this process's binary (an fd to execute, e.g.
    /// through `/proc/self/fd/<fd>`), for a program that starts another
    /// process of itself which will call [`Runtime::init`]: started from
    /// the view, that process is protected already and does not execute
    /// itself a second time (containerd's shim starting its server does).
    /// Keeping the fd open in the started process keeps the view's
    /// detached mount alive, so that its unmount (an RCU grace period)
    /// comes when that process exits, not on its way up.
    pub fn view_of_this_binary() -> Result<std::os::fd::OwnedFd> {
        crate::security::exe::view()
    }

    /// The path this process's binary was started from (before the
    /// re-execution from a read-only view), when known: the WebAssembly
    /// executor is looked for next to it.
    pub fn origin(&self) -> Option<&std::path::Path> {
        self.origin.as_deref()
    }
}

/// This process's thread count: the links of /proc/self/task are its `.`,
/// the parent's entry, and one per thread (one statx).
fn threads() -> Result<u64> {
    const TASKS: &str = "/proc/self/task";
    let st = nix::sys::stat::stat(TASKS).ctx(|| format!("stat {TASKS}"))?;
    match (st.st_nlink as u64).checked_sub(2) {
        Some(n) if n > 0 => Ok(n),
        // A procfs that does not count them in the links: count entries.
        _ => Ok(std::fs::read_dir(TASKS)
            .map_err(|e| Error::io(format!("read {TASKS}"), e))?
            .count() as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_counts_this_processes_threads() {
        // The harness runs this test on a thread of its own.
        assert!(threads().expect("threads") >= 2);
        // A forked child has one thread (glibc's fork leaves malloc usable).
        // SAFETY: the child only stats a path and _exits.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                let code = match threads() {
                    Ok(1) => 0,
                    _ => 1,
                };
                // SAFETY: leave without running the harness's destructors.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).expect("waitpid");
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }

    #[test]
    fn init_refuses_a_multi_threaded_process() {
        // The harness's threads are enough (a test runs on one of its own).
        let e = Runtime::init().expect_err("init in a multi-threaded process");
        assert!(matches!(e, Error::MultiThreaded(n) if n >= 2), "{e}");
        assert!(e.to_string().contains("single-threaded"), "{e}");
    }
}
