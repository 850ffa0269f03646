//! Test support for the keel conformance suite.
//!
//! Every test gets a [`TestEnv`]: a fresh temp dir holding its bundles and
//! its `--root`, a cgroup parent of its own, and a marker that lets the leak
//! checker find any process it left behind. Dropping the env deletes what
//! the test created (and only that).
//!
//! Running: as root, after building keel (`cargo build`), with
//! `cargo test -p keel-conformance`. Environment:
//! - `KEEL_RUNTIME`: the keel binary (default: the workspace's debug build);
//! - `RUNC`: the runc binary for the differential tests (default: `runc` on
//!   PATH; without one those tests print SKIPPED and return);
//! - `KEEL_CONF_KEEP`: keep each test's temp dir for inspection.
//!
//! Every runtime command runs as `unshare -m --propagation private <runtime>
//! --root <test dir>/state ...`, so a mount the runtime leaks by mistake dies
//! with that namespace instead of piling up on the host.

mod bundle;
mod env;
mod leaks;

pub use bundle::Bundle;
pub use env::{Output, Runtime, TestEnv};
pub use leaks::{assert_no_leaks, find_leaks};

use std::time::{Duration, Instant};

/// Polls `f` every 10 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Skips the calling test (with the reason on stderr) when runc is missing:
/// `let Some(runc) = require_runc!() else { return };`
#[macro_export]
macro_rules! require_runc {
    () => {
        match $crate::Runtime::runc() {
            Ok(r) => Some(r),
            Err(why) => {
                eprintln!("SKIPPED {}: {why}", module_path!());
                None
            }
        }
    };
}
