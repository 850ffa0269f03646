//! Fault injection for the robustness tests (cargo feature `failpoints`,
//! off by default; without it [`failpoint`] is an empty inline function).
//!
//! `KEEL_FAILPOINT=<name>` makes the step `<name>` fail with an error
//! naming it; `<name>=sleep` blocks there instead, so that a test can kill
//! keel at that step; `<name>=delay` waits 2 s there and goes on (to let
//! a test act in between); `<name>@<n>` picks the n-th time the step is reached
//! (e.g. the third mount). Read once per process.

#[cfg(feature = "failpoints")]
pub(crate) fn failpoint(name: &str) -> crate::Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;
    static SPEC: OnceLock<Option<String>> = OnceLock::new();
    static HITS: AtomicUsize = AtomicUsize::new(0);
    let Some(spec) = SPEC.get_or_init(|| std::env::var("KEEL_FAILPOINT").ok()) else {
        return Ok(());
    };
    let (point, action) = spec.split_once('=').unwrap_or((spec, "error"));
    let (point, nth) = match point.split_once('@') {
        Some((p, n)) => (p, n.parse().unwrap_or(1)),
        None => (point, 1),
    };
    if point != name || HITS.fetch_add(1, Ordering::SeqCst) + 1 != nth {
        return Ok(());
    }
    if action == "delay" {
        eprintln!("keel: failpoint {name}: delaying");
        std::thread::sleep(std::time::Duration::from_secs(2));
        return Ok(());
    }
    if action == "sleep" {
        // The test waits for this line, then kills keel.
        eprintln!("keel: failpoint {name}: sleeping");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    Err(crate::Error::sys(
        format!("failpoint {name}"),
        nix::errno::Errno::EIO,
    ))
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn failpoint(_name: &str) -> crate::Result<()> {
    Ok(())
}
