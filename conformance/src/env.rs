//! Runtimes, per-test environments and running commands.

use crate::bundle::Bundle;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// No single runtime command in this suite should take this long; a command
/// that does is killed (by pid) so a hang fails one test, not the run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A runtime binary under test.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// "keel" or "runc", for messages.
    pub name: &'static str,
    pub bin: PathBuf,
}

impl Runtime {
    /// keel: `$KEEL_RUNTIME`, else the workspace's debug build
    /// (`$CARGO_TARGET_DIR` or target/, then debug/keel).
    pub fn keel() -> Runtime {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let bin = match std::env::var_os("KEEL_RUNTIME") {
            Some(p) => PathBuf::from(p),
            None => std::env::var_os("CARGO_TARGET_DIR")
                .map(|t| workspace.join(t))
                .unwrap_or_else(|| workspace.join("target"))
                .join("debug/keel"),
        };
        assert!(
            bin.is_file(),
            "keel binary {} not found: run `cargo build -p keel` first or set KEEL_RUNTIME",
            bin.display()
        );
        warn_if_stale(&bin, &workspace);
        Runtime { name: "keel", bin }
    }

    /// runc: `$RUNC`, else `runc` on PATH. Err says why it is unavailable.
    pub fn runc() -> std::result::Result<Runtime, String> {
        if let Some(p) = std::env::var_os("RUNC") {
            let bin = PathBuf::from(p);
            if bin.is_file() {
                return Ok(Runtime { name: "runc", bin });
            }
            return Err(format!("RUNC={} does not exist", bin.display()));
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|d| d.join("runc"))
            .find(|p| p.is_file())
            .map(|bin| Runtime { name: "runc", bin })
            .ok_or_else(|| "runc not found on PATH and RUNC is not set".to_string())
    }
}

/// `cargo test -p keel-conformance` does not rebuild the keel binary: say
/// so when a source file is newer than it, or results mislead.
fn warn_if_stale(bin: &Path, workspace: &Path) {
    fn newest(dir: &Path) -> Option<std::time::SystemTime> {
        let mut best = None;
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let t = if e.file_type().ok()?.is_dir() {
                newest(&e.path())
            } else {
                e.metadata().ok()?.modified().ok()
            };
            best = best.max(t);
        }
        best
    }
    let Some(built) = std::fs::metadata(bin).and_then(|m| m.modified()).ok() else {
        return;
    };
    let src = ["libcontainer/src", "runtime/src"]
        .iter()
        .filter_map(|d| newest(&workspace.join(d)))
        .max();
    if src.is_some_and(|s| s > built) {
        eprintln!(
            "WARNING: {} is older than the keel sources; run `cargo build -p keel`",
            bin.display()
        );
    }
}

/// What a finished command did.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code, or 128+N when killed by signal N (as a shell reports it).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.code == 0
    }

    /// Panics with the whole output unless the command exited 0.
    #[track_caller]
    pub fn expect_ok(&self, what: &str) -> &Self {
        assert!(self.ok(), "{what} failed: {self}");
        self
    }

    /// Panics unless the command failed.
    #[track_caller]
    pub fn expect_fail(&self, what: &str) -> &Self {
        assert!(!self.ok(), "{what} unexpectedly succeeded: {self}");
        self
    }

    /// stdout parsed as JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.stdout).with_context(|| format!("stdout is not JSON: {self}"))
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn code_of(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// A runtime command still running (started with [`TestEnv::spawn`]).
pub struct Running {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    /// Reaped by [`Running::wait_rusage`] behind `child`'s back: its pid
    /// may belong to someone else now.
    reaped: bool,
}

impl Running {
    /// The runtime's pid (unshare execs it, so it is the child itself).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// What the command has written to stdout so far.
    pub fn stdout_so_far(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// What the command has written to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Sends `sig` to the runtime process.
    pub fn signal(&self, sig: i32) -> Result<()> {
        // SAFETY: kill(2) on our own child's pid, which we have not reaped.
        if unsafe { libc::kill(self.pid(), sig) } != 0 {
            bail!(
                "kill({}, {sig}): {}",
                self.pid(),
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// [`Running::wait`], also returning the runtime's resource usage from
    /// wait4 (`ru_maxrss`: its peak RSS in KiB, or that of a child it
    /// reaped, whichever is larger).
    pub fn wait_rusage(mut self, timeout: Duration) -> Result<(Output, libc::rusage)> {
        let deadline = Instant::now() + timeout;
        let pid = self.pid();
        loop {
            let mut status = 0;
            // SAFETY: rusage is plain data that wait4 fills.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: wait4 on our own unreaped child, valid out pointers.
            let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
            if r == pid {
                self.reaped = true;
                let out = Output {
                    code: code_of(ExitStatus::from_raw(status)),
                    stdout: std::fs::read_to_string(&self.out).unwrap_or_default(),
                    stderr: std::fs::read_to_string(&self.err).unwrap_or_default(),
                };
                return Ok((out, ru));
            }
            if r < 0 {
                bail!("wait4({pid}): {}", std::io::Error::last_os_error());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.reaped = true;
                bail!(
                    "runtime command timed out after {timeout:?}; stderr: {}",
                    std::fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for the command, killing it after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Result<Output> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().context("wait for runtime")? {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "runtime command timed out after {timeout:?}; stdout: {} stderr: {}",
                    self.stdout_so_far(),
                    std::fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Ok(Output {
            code: code_of(status),
            stdout: std::fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.err).unwrap_or_default(),
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// One test's world: temp dir, state root, cgroup parent, process marker.
pub struct TestEnv {
    pub rt: Runtime,
    /// /tmp/keel-conf-<pid>-<n>; bundles and the state root live here.
    pub dir: PathBuf,
    /// The `--root` given to every command.
    pub root: PathBuf,
    /// Name of the cgroup directory (under each hierarchy's root) that all
    /// this test's containers go under.
    pub cgroup_parent: String,
    /// Unique text carried by every container process (see MARKER_VAR).
    pub marker: String,
    /// The `--propagation` of the mount namespace each command runs in:
    /// "private" (the default), or "unchanged" for a scenario that needs
    /// the runtime's mounts to reach the test's shared mounts.
    pub propagation: &'static str,
    seq: AtomicUsize,
}

impl TestEnv {
    /// An environment for keel.
    pub fn keel() -> TestEnv {
        TestEnv::new(Runtime::keel())
    }

    pub fn new(rt: Runtime) -> TestEnv {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "the conformance tests create containers: run them as root"
        );
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let name = format!("keel-conf-{pid}-{n}-{}", rt.name);
        let dir = std::env::temp_dir().join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("create test dir {}: {e}", dir.display()));
        TestEnv {
            root: dir.join("state"),
            cgroup_parent: format!("keel-conformance-{pid}-{n}-{}", rt.name),
            marker: name,
            dir,
            rt,
            propagation: "private",
            seq: AtomicUsize::new(0),
        }
    }

    /// A new bundle for container `id` (each call gets its own directory).
    pub fn bundle(&self, id: &str) -> Bundle {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let dir = self.dir.join(format!("bundle-{id}-{n}"));
        Bundle::create(&dir, id, &self.cgroup_parent, &self.marker)
            .unwrap_or_else(|e| panic!("create bundle for {id}: {e:#}"))
    }

    /// [`TestEnv::spawn`] with extra environment variables for the runtime.
    pub fn spawn_env(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Running> {
        self.spawn_with(args, |cmd| {
            cmd.envs(env.iter().copied());
        })
    }

    /// [`TestEnv::spawn`] with the command adjusted by `tweak` first (fds
    /// or a CPU mask the runtime inherits, set up in a `pre_exec`).
    pub fn spawn_with(&self, args: &[&str], tweak: impl FnOnce(&mut Command)) -> Result<Running> {
        let (mut cmd, out, err) = self.command(args)?;
        tweak(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn unshare {} {args:?}", self.rt.bin.display()))?;
        Ok(Running {
            child,
            out,
            err,
            reaped: false,
        })
    }

    fn command(&self, args: &[&str]) -> Result<(Command, PathBuf, PathBuf)> {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let out = self.dir.join(format!("cmd-{n}.out"));
        let err = self.dir.join(format!("cmd-{n}.err"));
        let mut cmd = Command::new("unshare");
        // A private mount namespace per invocation: whatever the runtime
        // leaves mounted by mistake dies with it instead of piling up on the
        // host. (unshare execs the runtime, so pids and exit codes are its.)
        cmd.args(["-m", "--propagation", self.propagation])
            .arg(&self.rt.bin)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            // Files, not pipes: a detached container inherits these and
            // would otherwise keep a pipe open forever.
            .stdout(File::create(&out).with_context(|| format!("create {}", out.display()))?)
            .stderr(File::create(&err).with_context(|| format!("create {}", err.display()))?);
        Ok((cmd, out, err))
    }

    /// Starts `<runtime> --root <root> args...` and returns without waiting.
    pub fn spawn(&self, args: &[&str]) -> Result<Running> {
        self.spawn_env(args, &[])
    }

    /// Runs `<runtime> --root <root> args...` to completion.
    pub fn cmd(&self, args: &[&str]) -> Output {
        self.spawn(args)
            .and_then(|r| r.wait(COMMAND_TIMEOUT))
            .unwrap_or_else(|e| panic!("{} {args:?}: {e:#}", self.rt.name))
    }

    fn bundle_arg(b: &Bundle) -> String {
        b.dir.to_string_lossy().into_owned()
    }

    /// Saves the bundle's config and runs `run` in the foreground.
    pub fn run(&self, b: &Bundle) -> Output {
        self.run_with(b, &[])
    }

    /// `run` with extra flags before the id.
    pub fn run_with(&self, b: &Bundle, flags: &[&str]) -> Output {
        b.save().unwrap_or_else(|e| panic!("{e:#}"));
        let bundle = Self::bundle_arg(b);
        let mut args = vec!["run", "--bundle", &bundle];
        args.extend_from_slice(flags);
        args.push(&b.id);
        self.cmd(&args)
    }

    /// Saves the bundle's config and runs `create`.
    pub fn create(&self, b: &Bundle) -> Output {
        b.save().unwrap_or_else(|e| panic!("{e:#}"));
        let bundle = Self::bundle_arg(b);
        self.cmd(&["create", "--bundle", &bundle, &b.id])
    }

    /// `state <id>` parsed, or the failed output as the error.
    pub fn state(&self, id: &str) -> Result<Value> {
        let o = self.cmd(&["state", id]);
        if !o.ok() {
            return Err(anyhow!("state {id}: {o}"));
        }
        o.json()
    }

    /// The status field of `state <id>`, or "" when state fails.
    pub fn status(&self, id: &str) -> String {
        self.state(id)
            .ok()
            .and_then(|s| s["status"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Waits until `state <id>` reports `status`.
    pub fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> bool {
        crate::wait_until(timeout, || self.status(id) == status)
    }

    /// Mountpoints of every cgroup hierarchy mounted in our namespace.
    pub fn cgroup_mounts() -> Vec<PathBuf> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        info.lines()
            .filter_map(|l| {
                let (pre, post) = l.split_once(" - ")?;
                let fstype = post.split(' ').next()?;
                if fstype != "cgroup" && fstype != "cgroup2" {
                    return None;
                }
                pre.split(' ').nth(4).map(PathBuf::from)
            })
            .collect()
    }

    /// The cgroup directories container `id` would have, one per hierarchy.
    pub fn cgroup_dirs(&self, id: &str) -> Vec<PathBuf> {
        Self::cgroup_mounts()
            .into_iter()
            .map(|m| m.join(&self.cgroup_parent).join(id))
            .collect()
    }

    /// Deletes every container of this env, kills any process that still
    /// carries its marker, and removes its cgroups.
    fn cleanup(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let o = self.cmd(&["delete", "--force", &id]);
                if !o.ok() {
                    problems.push(format!("delete --force {id}: {o}"));
                }
            }
        }
        for pid in crate::leaks::marked_processes(self, None) {
            // SAFETY: the pid carries this env's unique marker: it is ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // Processes still in the test's cgroup are its own: killed at once.
        let dirs: Vec<PathBuf> = Self::cgroup_mounts()
            .into_iter()
            .map(|m| m.join(&self.cgroup_parent))
            .collect();
        if let Err(left) = crate::cgroup_tree::remove(&dirs, Duration::ZERO) {
            problems.push(format!("cgroups left:\n{left}"));
        }
        problems
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let problems = self.cleanup();
        let dir = self.dir.to_string_lossy().into_owned();
        let mounted = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(&dir));
        // Removing a tree with something mounted in it would delete through
        // the mount; leave it for a human instead.
        if mounted {
            eprintln!("NOT removing {dir}: something is mounted under it");
        } else if std::env::var_os("KEEL_CONF_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        if !problems.is_empty() && !std::thread::panicking() {
            panic!("cleanup of {dir} failed:\n{}", problems.join("\n"));
        }
    }
}

/// The `msg` of runc-style log lines on stderr (`time=... level=error
/// msg="..."`), unquoted; the whole stderr when it has none.
pub fn log_msgs(stderr: &str) -> String {
    let msgs: Vec<String> = stderr
        .lines()
        .filter_map(|l| l.split_once(" msg=").map(|(_, m)| m))
        .map(|m| serde_json::from_str::<String>(m).unwrap_or_else(|_| m.to_string()))
        .collect();
    if msgs.is_empty() {
        stderr.trim().to_string()
    } else {
        msgs.join("\n")
    }
}
