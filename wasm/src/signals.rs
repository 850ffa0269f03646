//! Termination signals for an executor that is pid 1 of its namespace.

/// SIGTERM, SIGINT and SIGHUP end the process with 128 + the signal, as
/// a shell reports a program they killed: without a handler the kernel
/// would drop them for a namespace's pid 1, and `keel kill` (SIGTERM)
/// would not stop a guest that loops.
pub fn exit_on_termination() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        let handler: extern "C" fn(libc::c_int) = on_signal;
        // SAFETY: the handler only calls _exit, which is async-signal-safe.
        unsafe { libc::signal(sig, handler as libc::sighandler_t) };
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY: _exit is async-signal-safe and ends the process at once.
    unsafe { libc::_exit(128 + sig) }
}
