//! `pause`: the CRI tests' sandbox (pause) container program, as the
//! Kubernetes pause image's: sleeps until SIGINT or SIGTERM, and, as pid 1
//! of a pod that shares its pid namespace, reaps the pod's orphans. Built
//! statically by the conformance harness into the project's pause image.
use std::os::raw::c_int;

extern "C" {
    fn signal(sig: c_int, handler: extern "C" fn(c_int)) -> usize;
    fn pause() -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn _exit(code: c_int) -> !;
}

const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;
const SIGCHLD: c_int = 17;
const WNOHANG: c_int = 1;

extern "C" fn stop(_: c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { _exit(0) }
}

extern "C" fn reap(_: c_int) {
    let mut status = 0;
    // SAFETY: waitpid is async-signal-safe; status is a valid out pointer.
    while unsafe { waitpid(-1, &mut status, WNOHANG) } > 0 {}
}

fn main() {
    // SAFETY: installing handlers that only call async-signal-safe functions.
    unsafe {
        signal(SIGINT, stop);
        signal(SIGTERM, stop);
        signal(SIGCHLD, reap);
    }
    loop {
        // SAFETY: pause has no preconditions.
        unsafe { pause() };
    }
}
