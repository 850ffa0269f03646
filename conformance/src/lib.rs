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
pub mod cgroup_tree;
pub mod console;
pub mod containerd;
pub mod cri;
pub mod criu;
pub mod docker;
pub mod engines;
mod env;
mod leaks;
pub mod rootless;
pub mod shared;
mod snapshot;
pub mod wasm;
pub mod wsstream;

pub use bundle::Bundle;
pub use env::{log_msgs, Output, Runtime, TestEnv, COMMAND_TIMEOUT};
pub use leaks::{assert_no_leaks, find_leaks, marked_processes};
pub use snapshot::Snapshot;

use anyhow::{anyhow, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A helper program from `conformance/helpers/<name>.rs`, built statically
/// (so it runs in a busybox rootfs) on first use and cached by the hash of
/// its source, for what busybox cannot do (e.g. send an sd_notify datagram).
pub fn static_helper(name: &str) -> Result<PathBuf> {
    use std::hash::{Hash, Hasher};
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("helpers")
        .join(format!("{name}.rs"));
    let text = std::fs::read(&src).with_context(|| format!("read {}", src.display()))?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    let dir = std::env::temp_dir().join("keel-conformance-helpers");
    std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
    let bin = dir.join(format!("{name}-{:016x}", h.finish()));
    if bin.exists() {
        return Ok(bin);
    }
    // Tests run in parallel threads of one process: each build gets a
    // directory of its own (rustc puts its intermediate objects next to the
    // output, under names that depend only on the crate), then a rename.
    static BUILDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let work = dir.join(format!("{name}.{}.{n}.tmp", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("mkdir {}", work.display()))?;
    let tmp = work.join(name);
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = std::process::Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "-O",
            "-C",
            "target-feature=+crt-static",
            "-o",
        ])
        .arg(&tmp)
        .arg(&src)
        .output()
        .context("run rustc")?;
    let placed = if out.status.success() {
        std::fs::rename(&tmp, &bin).with_context(|| format!("rename to {}", bin.display()))
    } else {
        Err(anyhow!(
            "rustc {}: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        ))
    };
    let _ = std::fs::remove_dir_all(&work);
    placed.map(|()| bin)
}

/// Every process's pid and raw command line (NUL-separated arguments),
/// skipping those that went away while /proc was read.
pub fn process_cmdlines() -> impl Iterator<Item = (i32, Vec<u8>)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            Some((pid, cmdline))
        })
}

/// Waits for `child` up to `timeout`: its exit code (128+N when killed by
/// signal N), -2 when it ran out of time (it is then killed), -1 when it
/// could not be waited for.
pub fn wait_timeout(child: &mut std::process::Child, timeout: Duration) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return s.code().or(s.signal().map(|s| 128 + s)).unwrap_or(-1),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return -2;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => return -1,
        }
    }
}

/// Whether `pid` runs from a binary on a read-only mount (statvfs of its
/// exe, through the kernel's link): the CVE-2019-5736 protection.
pub fn exe_on_read_only_mount(pid: i32) -> bool {
    let path = std::ffi::CString::new(format!("/proc/{pid}/exe")).expect("path");
    // SAFETY: a plain-data struct, valid all zeroes.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string, and `st` outlives the call.
    let r = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    r == 0 && st.f_flag & libc::ST_RDONLY != 0
}

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

/// A tool built and cached outside the checkout by a script of
/// `scripts/` (CRIU, the WebAssembly executor): `$env` when set (scripts/
/// test.sh sets it from the script), else the path the script prints (it
/// builds the tool if it must). `Err` says why, for a test's SKIPPED line.
pub fn cached_tool(env: &str, script: &str) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(script);
    let out = std::process::Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("run {}: {e}", script.display()))?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || path.is_empty() {
        return Err(format!("{} printed no path", script.display()));
    }
    Ok(PathBuf::from(path))
}

/// The count a test's counter last wrote (`echo $i > FILE` in a loop),
/// as `read` returns the file's text; `None` from `read` means there is no
/// counter (0). The shell truncates the file before each write, so a read
/// can find it empty: such a read is retried, for up to 10 s (then 0).
pub fn read_counter(mut read: impl FnMut() -> Option<String>) -> u32 {
    let mut n = 0;
    wait_until(Duration::from_secs(10), || match read() {
        Some(text) => match text.trim().parse() {
            Ok(v) => {
                n = v;
                true
            }
            Err(_) => false,
        },
        None => true,
    });
    n
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
