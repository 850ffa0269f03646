//! The embedder's hook at the very end of a container process's setup: its
//! own code instead of execve (a wasm runtime, a test harness), as youki's
//! libcontainer offers.

use std::ffi::CString;

/// Runs in a container's process, fully set up, instead of execve of
/// `process.args`: given to [`ContainerBuilder::executor`] for the init,
/// or in [`ExecOptions::executor`] for a process `exec` adds.
///
/// [`ContainerBuilder::executor`]: crate::ContainerBuilder::executor
/// [`ExecOptions::executor`]: crate::ExecOptions::executor
///
/// The process is a fork of the embedder's (the caller of `create` or
/// `exec`), in the container's namespaces, cgroups, root filesystem,
/// user, capabilities, rlimits and LSM label, with its cwd, stdio, pty
/// and preserved fds, and no other fd of the runtime's. What differs from
/// a program started by execve, and what the executor must mind:
///
/// - **seccomp**: the container's filter is in force when
///   [`run`](Executor::run) is called, as it would be for the program.
///   Every system call the executor makes is judged by it (a profile
///   may deny even `execve`: the executor does not need it). keel itself
///   makes none after the filter but `close` (of the fd that tells the
///   runtime the program runs) and `exit_group`, plus a `write` when
///   Rust's stdout buffer holds something.
/// - **memory**: the embedder's whole address space was copied by the
///   fork (heap, secrets, caches) and is the executor's to use; the
///   process is non-dumpable (so the container's other processes cannot
///   read it or open its `/proc/<pid>/exe`, the embedder's binary, which
///   [`Runtime::init`](crate::Runtime::init) put out of their reach
///   anyway), and `/proc/self` files belong to root.
/// - **environment**: `std::env` still holds the embedder's environment;
///   the container's (`process.env`, HOME added as runc does) is
///   [`Invocation::env`].
/// - **signals**: every disposition is the default and the mask empty
///   (SIGPIPE kills, as for any program).
/// - **exit**: the value `run` returns is the process's exit status (the
///   low 8 bits); a panic exits 255 after printing on stderr. The process
///   ends with `_exit`: no destructor or `atexit` handler of the
///   embedder's runs, Rust's stdout is flushed.
/// - The executor may start threads and fork: the process is its own.
///
/// ```no_run
/// use libkeel::{ContainerBuilder, Executor, Invocation, Runtime};
///
/// struct Hello;
///
/// impl Executor for Hello {
///     fn validate(&self, inv: &Invocation) -> Result<(), String> {
///         match inv.args.first() {
///             Some(_) => Ok(()),
///             None => Err("no module to run".into()),
///         }
///     }
///
///     fn run(&self, inv: &Invocation) -> i32 {
///         println!("hello from {:?}", inv.args[0]);
///         0
///     }
/// }
///
/// let runtime = Runtime::init()?;
/// let c = ContainerBuilder::new("hello", "/srv/bundles/hello")
///     .executor(Hello)
///     .create(&runtime)?;
/// c.start()?;
/// # Ok::<(), libkeel::Error>(())
/// ```
pub trait Executor {
    /// Called in the container's process during `create` (or `exec`), as
    /// the process's final user and before the seccomp filter, where
    /// keel otherwise looks `args[0]` up in the container's `$PATH`
    /// (which it does not with an executor): an `Err` fails `create` (or
    /// `exec`) with its text. By default everything is accepted.
    fn validate(&self, invocation: &Invocation) -> Result<(), String> {
        let _ = invocation;
        Ok(())
    }

    /// Runs the container's workload once it is started (for the init,
    /// when [`Container::start`](crate::Container::start) is called;
    /// for `exec`, right away); returns its exit status. See the trait's
    /// documentation for the constraints.
    fn run(&self, invocation: &Invocation) -> i32;
}

impl std::fmt::Debug for dyn Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn Executor")
    }
}

/// What the process would have been started with.
#[derive(Debug)]
pub struct Invocation<'a> {
    /// `process.args`, as execve would have received them.
    pub args: &'a [CString],
    /// The process's environment: `process.env`, with HOME as runc sets it.
    pub env: &'a [CString],
}
