//! A private containerd for the shim tests: its own root, state, socket
//! and config under a temp dir, started in a mount namespace of its own
//! whose /run is a fresh tmpfs (so the shims' sockets, fifos and runtime
//! state never touch the host's /run/containerd), with the busybox image
//! imported. The machine's own containerd, if any, is never involved.
//!
//! `ctr` runs in the same mount namespace (nsenter), with a containerd
//! namespace unique to the test, so container cgroups (`/<ns>/<id>`) are
//! the test's own; they are removed on drop.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The shim runtime under test and the stock one.
pub const KEEL_SHIM: &str = "io.containerd.keel.v2";
pub const RUNC_SHIM: &str = "io.containerd.runc.v2";
/// What scripts/busybox-oci.sh imports.
pub const IMAGE: &str = "docker.io/library/keel-busybox:latest";

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// The result of a ctr command.
#[derive(Debug)]
pub struct CtrOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CtrOutput {
    pub fn expect_ok(&self, what: &str) -> &Self {
        assert_eq!(self.code, 0, "{what} failed: {self:?}");
        self
    }
}

pub struct Containerd {
    pub dir: PathBuf,
    /// containerd's gRPC socket.
    pub socket: PathBuf,
    /// The containerd namespace (and cgroup parent) of this test.
    pub namespace: String,
    daemon: Child,
}

/// Why the containerd tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    for bin in ["containerd", "ctr", "containerd-shim-runc-v2", "nsenter"] {
        if which(bin).is_none() {
            return Some(format!(
                "{bin} not found on PATH (apt-get install containerd)"
            ));
        }
    }
    None
}

fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

/// The directory holding containerd-shim-keel-v2: `$KEEL_SHIM_DIR`, else
/// the one of the keel binary under test.
pub fn shim_dir() -> PathBuf {
    let dir = match std::env::var_os("KEEL_SHIM_DIR") {
        Some(d) => PathBuf::from(d),
        None => crate::Runtime::keel()
            .bin
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    assert!(
        dir.join("containerd-shim-keel-v2").is_file(),
        "containerd-shim-keel-v2 not found in {}: run `cargo build --workspace` first or set KEEL_SHIM_DIR",
        dir.display()
    );
    dir
}

impl Containerd {
    /// Starts containerd and imports the busybox image.
    pub fn start() -> Result<Containerd> {
        Containerd::start_with_path(&[])
    }

    /// `start`, with `first` ahead of the shim's directory on containerd's
    /// PATH (which its shims and runc inherit: where they find `criu`).
    pub fn start_with_path(first: &[PathBuf]) -> Result<Containerd> {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}-{n}", std::process::id());
        let dir = PathBuf::from(format!("/tmp/keel-ctrd-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        let socket = dir.join("containerd.sock");
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{s}\"\n",
            d = dir.display(),
            s = socket.display()
        );
        std::fs::write(dir.join("config.toml"), config).context("write config.toml")?;
        let mut dirs = first.to_vec();
        dirs.push(shim_dir());
        let path = std::env::join_paths(
            dirs.iter().chain(
                std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                    .collect::<Vec<_>>()
                    .iter(),
            ),
        )
        .context("PATH for containerd")?;
        let log = std::fs::File::create(dir.join("containerd.log")).context("containerd.log")?;
        // systemd's sockets (/run/systemd) are bound back over the fresh
        // /run: the systemd cgroup driver (SystemdCgroup) reaches systemd
        // there.
        let keep = dir.join("run-systemd");
        let daemon = Command::new("unshare")
            .args(["-m", "--propagation", "private", "--", "sh", "-c"])
            .arg(
                "if [ -d /run/systemd ]; then mkdir -p \"$2\" && mount --bind /run/systemd \"$2\"; fi; \
                 mount -t tmpfs tmpfs /run || exit 1; \
                 if [ -d \"$2\" ]; then mkdir /run/systemd && mount --bind \"$2\" /run/systemd; fi; \
                 exec containerd -c \"$1\"",
            )
            .arg("sh")
            .arg(dir.join("config.toml"))
            .arg(&keep)
            .env("PATH", &path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn containerd")?;
        let c = Containerd {
            socket,
            namespace: format!("keel-{}", id),
            dir,
            daemon,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while c.ctr(&["version"]).code != 0 {
            if Instant::now() > deadline {
                bail!("containerd did not come up: {}", c.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // One made beforehand where the script cannot run (the VM lanes).
        let image = match std::env::var_os("KEEL_BUSYBOX_OCI") {
            Some(tar) => PathBuf::from(tar),
            None => {
                let image = c.dir.join("image.tar");
                let script =
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/busybox-oci.sh");
                let out = Command::new("bash")
                    .arg(&script)
                    .arg(&image)
                    .output()
                    .context("run scripts/busybox-oci.sh")?;
                if !out.status.success() {
                    bail!("busybox-oci.sh: {}", String::from_utf8_lossy(&out.stderr));
                }
                image
            }
        };
        let imported = c.ctr(&["images", "import", &image.to_string_lossy()]);
        if imported.code != 0 {
            bail!("ctr images import: {imported:?}");
        }
        Ok(c)
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// containerd's pid (unshare execs sh, which execs containerd).
    pub fn pid(&self) -> u32 {
        self.daemon.id()
    }

    /// A command in containerd's mount namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.pid().to_string())
            .args(["-m", "--"])
            .arg(program);
        cmd
    }

    /// `ctr` with this containerd's socket and namespace.
    pub fn ctr_command(&self, args: &[&str]) -> Command {
        let mut cmd = self.command("ctr");
        cmd.arg("-a")
            .arg(&self.socket)
            .arg("-n")
            .arg(&self.namespace)
            .args(args);
        cmd
    }

    /// Runs ctr (stdin /dev/null), killing it after 30 s.
    pub fn ctr(&self, args: &[&str]) -> CtrOutput {
        let mut cmd = self.ctr_command(args);
        cmd.stdin(Stdio::null());
        run(cmd, Duration::from_secs(30))
    }

    /// `ctr run --rm` of `args` under `runtime`, in the foreground.
    pub fn run_rm(&self, runtime: &str, id: &str, extra: &[&str], args: &[&str]) -> CtrOutput {
        let mut v = vec!["run", "--rm", "--runtime", runtime];
        v.extend_from_slice(extra);
        v.extend_from_slice(&[IMAGE, id]);
        v.extend_from_slice(args);
        self.ctr(&v)
    }

    /// `ctr run -d` of `args` under `runtime`.
    pub fn run_detached(&self, runtime: &str, id: &str, extra: &[&str], args: &[&str]) {
        let mut v = vec!["run", "-d", "--runtime", runtime];
        v.extend_from_slice(extra);
        v.extend_from_slice(&[IMAGE, id]);
        v.extend_from_slice(args);
        self.ctr(&v).expect_ok("ctr run -d");
    }

    /// The task's status as `ctr task ls` shows it ("" when absent).
    pub fn task_status(&self, id: &str) -> String {
        let out = self.ctr(&["task", "ls"]);
        out.stdout
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&id)).then(|| f.get(2).unwrap_or(&"").to_string())
            })
            .next()
            .unwrap_or_default()
    }

    /// How many processes `ctr task ps` lists for task `id`.
    pub fn task_process_count(&self, id: &str) -> usize {
        self.ctr(&["task", "ps", id]).stdout.lines().skip(1).count()
    }

    /// Waits until the task shows `status`.
    pub fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> bool {
        crate::wait_until(timeout, || self.task_status(id) == status)
    }

    /// The task's bundle in containerd's state dir (address, config.json).
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.dir
            .join("state/io.containerd.runtime.v2.task")
            .join(&self.namespace)
            .join(id)
    }

    /// Pids of shim server processes of this containerd (matched on their
    /// `-address` argument), for `runtime`'s binary.
    pub fn shim_pids(&self, runtime: &str) -> Vec<i32> {
        let bin = match runtime {
            KEEL_SHIM => "containerd-shim-keel-v2",
            _ => "containerd-shim-runc-v2",
        };
        let address = self.socket.to_string_lossy().to_string();
        let mut out = Vec::new();
        for (pid, cmdline) in crate::process_cmdlines() {
            let args: Vec<String> = cmdline
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let is_bin = args.first().is_some_and(|a| a.ends_with(bin));
            let ours = args
                .windows(2)
                .any(|w| w[0] == "-address" && w[1] == address);
            let server = !args.iter().any(|a| a == "start" || a == "delete");
            // A container process the keel shim forked has the shim's
            // cmdline until it execs: tell them apart by the parent.
            let ppid_is_shim = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit(')')
                        .next()
                        .and_then(|r| r.split_whitespace().nth(1).map(str::to_owned))
                })
                .and_then(|p| std::fs::read(format!("/proc/{p}/cmdline")).ok())
                .is_some_and(|c| String::from_utf8_lossy(&c).contains(bin));
            if is_bin && ours && server && !ppid_is_shim {
                out.push(pid);
            }
        }
        out.sort();
        out
    }

    /// Cgroup directories of container `id` that exist.
    pub fn cgroup_dirs(&self, id: &str) -> Vec<PathBuf> {
        crate::cgroup_tree::hierarchies()
            .into_iter()
            .map(|r| r.join(&self.namespace).join(id))
            .filter(|d| d.is_dir())
            .collect()
    }

    /// Kills and deletes every task and container of the namespace.
    pub fn clean_all(&self) {
        let tasks = self.ctr(&["task", "ls", "-q"]).stdout;
        for id in tasks.lines().filter(|l| !l.is_empty()) {
            let _ = self.ctr(&["task", "kill", "-a", "-s", "SIGKILL", id]);
            self.wait_status(id, "STOPPED", Duration::from_secs(5));
            let _ = self.ctr(&["task", "delete", "-f", id]);
        }
        let containers = self.ctr(&["containers", "ls", "-q"]).stdout;
        for id in containers.lines().filter(|l| !l.is_empty()) {
            let _ = self.ctr(&["containers", "delete", id]);
        }
    }
}

/// Runs `cmd`, killing it (by pid) after `timeout`.
/// Topics (`/tasks/...`) of the events about container `id` in a `ctr events`
/// log, in order.
pub fn event_topics(log: &str, id: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(&format!("\"container_id\":\"{id}\"")))
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("/tasks/"))
                .map(str::to_owned)
        })
        .collect()
}

pub fn run(mut cmd: Command, timeout: Duration) -> CtrOutput {
    let out = tempfile("out");
    let err = tempfile("err");
    let child = cmd
        .stdout(out.1.try_clone().expect("dup"))
        .stderr(err.1.try_clone().expect("dup"))
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return CtrOutput {
                code: -1,
                stdout: String::new(),
                stderr: format!("spawn: {e}"),
            }
        }
    };
    let code = crate::wait_timeout(&mut child, timeout);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let r = CtrOutput {
        code,
        stdout: read(&out.0),
        stderr: read(&err.0),
    };
    let _ = std::fs::remove_file(&out.0);
    let _ = std::fs::remove_file(&err.0);
    r
}

fn tempfile(what: &str) -> (PathBuf, std::fs::File) {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let p = std::env::temp_dir().join(format!("keel-ctr-{}-{n}.{what}", std::process::id()));
    let f = std::fs::File::create(&p).expect("create temp file");
    (p, f)
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.clean_all();
        // Shims outlive containerd; kill this containerd's by pid.
        let shims: Vec<i32> = [KEEL_SHIM, RUNC_SHIM]
            .iter()
            .flat_map(|r| self.shim_pids(r))
            .collect();
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        for pid in shims {
            // SAFETY: kill(2) on a shim this test's containerd started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // The namespace is the test's own cgroup parent: what a killed
        // shim's containers left there is killed with it.
        if let Err(left) = crate::cgroup_tree::remove_named(&self.namespace, Duration::ZERO) {
            eprintln!(
                "LEFT BEHIND: cgroups of containerd namespace {}:\n{left}",
                self.namespace
            );
        }
        if std::env::var_os("KEEL_CONF_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
