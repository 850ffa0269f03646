//! keel-wasm: keel's WebAssembly executor. keel runs it, in place of the
//! container's program, for a container annotated as a wasm workload
//! (`run.oci.handler=wasm`, see libkeel's `wasm` module): the container is
//! fully set up (namespaces, cgroups, user, capabilities, seccomp) when
//! keel executes this binary through the fd it opened before pivot_root.
//!
//! Usage: `keel-wasm MODULE [ARGS...]`, which is also how to run a module
//! without keel. MODULE is a WASI preview 1 module or a preview 2 (wasi:cli)
//! component, binary or WebAssembly text; the guest's argv is
//! `MODULE ARGS...` (the container's `process.args`), its environment is
//! this process's, its stdio this process's, its preopened directories
//! the current one as `.` and the root as `/`. The exit status is the
//! guest's `proc_exit` (0 when it returns); a trap or a load error is
//! reported on stderr with status 134 for a trap (as `wasmtime run`) and
//! 1 for anything else.

mod run;
mod signals;

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(module) = args.next() else {
        eprintln!("usage: keel-wasm MODULE [ARGS...]");
        return ExitCode::from(2);
    };
    // As pid 1 of its pid namespace (a container's init) the kernel drops
    // signals that have no handler: give the ones that end a program
    // their usual effect, as the guest cannot handle signals itself.
    if std::process::id() == 1 {
        signals::exit_on_termination();
    }
    let guest_args: Vec<String> = std::iter::once(module.clone())
        .chain(args)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match run::run(std::path::Path::new(&module), &guest_args) {
        Ok(code) => ExitCode::from(code),
        Err(run::Failure { status, message }) => {
            eprintln!("keel-wasm: {}: {message}", module.to_string_lossy());
            ExitCode::from(status)
        }
    }
}
