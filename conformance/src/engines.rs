//! Shared harness of the engine suites (podman, Docker, containerd driving
//! keel and runc): a sandbox of namespaces the engines live in, commands
//! with a time limit, the busybox image, and the scenario report.
//!
//! The sandbox is a holder process in a mount namespace of its own (/run
//! and /dev/shm fresh tmpfs, so engine sockets, locks and netns files stay
//! private) and a network namespace of its own (so bridges and iptables
//! rules an engine makes never reach the host). Every engine command runs
//! in it through nsenter; the holder is killed by pid on drop, and with it
//! the namespaces go away.
//!
//! Each scenario runs with runc first and keel second, in the same test:
//! runc proves the scenario right, and keel must pass it and observe the
//! same thing. The report prints one line per scenario and runtime and a
//! summary per engine.

use crate::cgroup_tree;
use crate::env::Output;
use crate::Runtime;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Programs the busybox image links to busybox.
const APPLETS: &[&str] = &[
    "sh", "cat", "echo", "id", "sleep", "ls", "touch", "grep", "wc", "ps", "hostname", "tty",
    "head", "true", "false", "httpd", "mkdir", "dd", "stat", "kill", "env", "printf", "tail",
    "yes", "tr",
];

/// A temp dir removed on drop (unless KEEL_CONF_KEEP is set).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> Result<TempDir> {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("keel-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KEEL_CONF_KEEP").is_none() {
            // Engines leave overlay and tmpfs mounts only in the sandbox's
            // mount namespace, gone by now; what is left is plain files.
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The namespaces the engines run in (see the module doc).
pub struct Sandbox {
    holder: Child,
}

impl Sandbox {
    /// A sandbox; each existing directory of `private` (e.g. an engine's
    /// config dir where it writes keys) gets a fresh tmpfs too.
    pub fn new(private: &[&str]) -> Result<Sandbox> {
        let mut script = String::from("mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /dev/shm");
        for dir in private.iter().filter(|d| Path::new(d).is_dir()) {
            script += &format!(" && mount -t tmpfs tmpfs {dir}");
        }
        script += " && ip link set lo up && exec sleep 1000000";
        let holder = Command::new("unshare")
            .args(["-m", "-n", "--propagation", "private", "--", "sh", "-c"])
            .arg(script)
            .stdin(Stdio::null())
            .spawn()
            .context("spawn the sandbox holder")?;
        let sb = Sandbox { holder };
        // Ready once the holder has exec'd sleep (after the mounts).
        let comm = format!("/proc/{}/comm", sb.pid());
        if !crate::wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "sleep")
        }) {
            bail!("the sandbox holder did not come up");
        }
        Ok(sb)
    }

    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// `program` inside the sandbox.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.pid().to_string())
            .args(["-m", "-n", "--"])
            .arg(program);
        cmd
    }

    /// `sh -c script` inside the sandbox, killed after `timeout`.
    pub fn sh(&self, script: &str, timeout: Duration) -> Output {
        let mut cmd = self.command("sh");
        cmd.arg("-c").arg(script);
        run(cmd, timeout)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Runs `cmd` (stdin /dev/null unless set), killing it by pid after
/// `timeout` (exit code -2 then).
pub fn run(mut cmd: Command, timeout: Duration) -> Output {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let base = std::env::temp_dir().join(format!("keel-engine-{}-{n}", std::process::id()));
    let (out, err) = (base.with_extension("out"), base.with_extension("err"));
    let files = std::fs::File::create(&out).and_then(|o| Ok((o, std::fs::File::create(&err)?)));
    let (o, e) = match files {
        Ok(f) => f,
        Err(e) => return failed(format!("create output files: {e}")),
    };
    let child = cmd.stdin(Stdio::null()).stdout(o).stderr(e).spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return failed(format!("spawn {cmd:?}: {e}")),
    };
    let code = crate::wait_timeout(&mut child, timeout);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let r = Output {
        code,
        stdout: read(&out),
        stderr: read(&err),
    };
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&err);
    r
}

fn failed(why: String) -> Output {
    Output {
        code: -1,
        stdout: String::new(),
        stderr: why,
    }
}

/// Kills (by pid) every process whose command line mentions `dir`: what
/// an engine started under its private directory and left behind (shims).
pub fn kill_processes_under(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    for (pid, cmdline) in crate::process_cmdlines() {
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            // SAFETY: kill(2) on a process started under our private dir.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// The `*-tty` answer lines of a command run through `script`. What script
/// reads from its /dev/null stdin reaches the pty at times (echoed as ^@),
/// with either runtime, so that and carriage returns go.
pub fn pty_answers(out: &str) -> String {
    out.replace(['\r'], "")
        .replace("^@", "")
        .lines()
        .filter(|l| l.ends_with("-tty"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `bin` is on PATH.
pub fn have(bin: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| d.join(bin).is_file())
}

/// A busybox rootfs tar (Debian's busybox-static, no registry) at
/// `dir/busybox.tar`, for `podman import` / `docker import`.
pub fn busybox_tar(dir: &Path) -> Result<PathBuf> {
    let rootfs = dir.join("busybox-rootfs");
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "www"] {
        std::fs::create_dir_all(rootfs.join(d)).context("mkdir rootfs")?;
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).context("copy /bin/busybox")?;
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).context("symlink")?;
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    )?;
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnobody:x:65534:\n")?;
    std::fs::write(rootfs.join("www/index.html"), "keel-served\n")?;
    let tar = dir.join("busybox.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["--numeric-owner", "-cf"])
        .arg(&tar)
        .arg(".")
        .status()
        .context("tar")?;
    if !st.success() {
        bail!("tar the busybox rootfs: {st}");
    }
    Ok(tar)
}

/// Removes cgroup `name` (relative to each hierarchy's root), an engine
/// fixture's parent of its containers, once what the engine left there
/// (podman's conmon, still running the exit command) has exited or, after
/// [`cgroup_tree::GRACE`], been killed. What is left after that is said on
/// stderr (a fixture's teardown runs at exit, where panicking would abort).
pub fn remove_cgroup_tree(name: &str) {
    if let Err(left) = cgroup_tree::remove_named(name, cgroup_tree::GRACE) {
        say(&format!("LEFT BEHIND: cgroups of {name}:\n{left}"));
    }
}

/// Why a scenario did not give an observation to compare.
pub enum Outcome {
    /// Passed, with what it saw, which differs between runtimes by nature
    /// (e.g. usage numbers) and so is not compared.
    Uncompared(String),
    Fail(String),
    Skip(String),
}

/// `Err(Outcome::Fail(..))` with a formatted reason, for `?` in scenarios.
#[macro_export]
macro_rules! fail {
    ($($t:tt)*) => {
        return Err($crate::engines::Outcome::Fail(format!($($t)*)))
    };
}

/// Makes `<dir>/vol` with a file for [`volume_round_trip`] to read.
pub fn make_volume(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("vol"))?;
    std::fs::write(dir.join("vol/f"), "from-host\n")
}

/// The volume scenario, the same for every engine: `run(flags, cmd)` runs a
/// container that reads the host's `<dir>/vol/f` through a bind volume and
/// writes its runtime's name back, which must reach the host.
pub fn volume_round_trip(dir: &Path, rt: &Runtime, run: impl Fn(&str, &str) -> Step) -> Step {
    let v = dir.join("vol");
    let out = run(
        &format!("-v {}:/vol", v.display()),
        &format!("sh -c 'cat /vol/f; echo {} > /vol/w'", rt.name),
    )?;
    let back = std::fs::read_to_string(v.join("w")).unwrap_or_default();
    if back.trim() != rt.name {
        fail!("the volume write did not reach the host: {back:?}");
    }
    Ok(out)
}

/// A scenario's body: Ok(observation) to compare across runtimes.
pub type Step = std::result::Result<String, Outcome>;

/// Checks a command's exit code, failing the scenario with its output.
pub fn expect_code(o: &Output, code: i32, what: &str) -> std::result::Result<(), Outcome> {
    if o.code == code {
        Ok(())
    } else {
        Err(Outcome::Fail(format!(
            "{what}: exit {} (want {code}); stdout {:?} stderr {:?}",
            o.code,
            o.stdout.trim(),
            o.stderr.trim()
        )))
    }
}

/// Exit code 0 and the stdout.
pub fn ok_out(o: &Output, what: &str) -> std::result::Result<String, Outcome> {
    expect_code(o, 0, what)?;
    Ok(o.stdout.clone())
}

/// The results of one engine's suite.
pub struct Report {
    engine: &'static str,
    /// (scenario, runtime, PASS|FAIL|SKIP, reason)
    rows: Vec<(String, &'static str, &'static str, String)>,
}

impl Report {
    pub fn new(engine: &'static str) -> Report {
        Report {
            engine,
            rows: Vec::new(),
        }
    }

    /// Runs `body` with each runtime (runc first), prints a line each, and
    /// fails keel when it observes something else than runc did.
    pub fn scenario(
        &mut self,
        name: &str,
        runtimes: &[Runtime],
        mut body: impl FnMut(&Runtime) -> Step,
    ) {
        let mut runc_saw = None;
        for rt in runtimes {
            let (verdict, reason) = match body(rt) {
                Ok(seen) => {
                    let verdict = match runc_saw.as_ref().filter(|r| **r != seen) {
                        Some(r) => ("FAIL", format!("saw {seen:?}, runc saw {r:?}")),
                        None => ("PASS", String::new()),
                    };
                    if rt.name == "runc" {
                        runc_saw = Some(seen);
                    }
                    verdict
                }
                Err(Outcome::Uncompared(s)) => ("PASS", s),
                Err(Outcome::Fail(why)) => ("FAIL", why),
                Err(Outcome::Skip(why)) => ("SKIP", why),
            };
            let line = format!(
                "{:<11} {:<24} {:<5} {verdict}{}{reason}",
                self.engine,
                name,
                rt.name,
                if reason.is_empty() { "" } else { ": " }
            );
            say(&line);
            self.rows.push((name.to_string(), rt.name, verdict, reason));
        }
    }

    /// Prints the summary line per runtime and panics if anything failed.
    pub fn finish(self) {
        let mut failed = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for r in &self.rows {
            if !names.contains(&r.1) {
                names.push(r.1);
            }
        }
        for rt in names {
            let count = |v: &str| self.rows.iter().filter(|r| r.1 == rt && r.2 == v).count();
            say(&format!(
                "SUMMARY {} {rt}: {} passed, {} failed, {} skipped",
                self.engine,
                count("PASS"),
                count("FAIL"),
                count("SKIP")
            ));
        }
        for r in &self.rows {
            if r.2 == "FAIL" {
                failed.push(format!("{} with {}: {}", r.0, r.1, r.3));
            }
        }
        assert!(
            failed.is_empty(),
            "{} scenarios failed:\n{}",
            self.engine,
            failed.join("\n")
        );
    }
}

/// A report line on stderr, past the test harness's capture (which takes
/// only the print macros), so CI logs show it for passing tests too.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// runc (when there is one: else the suite runs keel alone and says so),
/// then keel.
pub fn runtimes(engine: &str) -> Vec<Runtime> {
    let mut v = Vec::new();
    match Runtime::runc() {
        Ok(r) => v.push(r),
        Err(why) => eprintln!("{engine}: no runc to compare with ({why}); keel alone"),
    }
    v.push(Runtime::keel());
    v
}
