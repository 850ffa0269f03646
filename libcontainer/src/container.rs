//! Containers as the library's users see them: a builder that creates one
//! from a bundle, and the operations on a container found by id.

use crate::cgroups::{DeviceRule, Manager};
use crate::error::{Error, Result, SysContext};
use crate::executor::Executor;
use crate::process::plan::{InitPlan, Options};
use crate::process::spawn;
use crate::runtime::Runtime;
use crate::spec::Bundle;
use crate::state::{self, State, StateDir, Status};
use crate::sys;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The default state root, as `/run/runc` is runc's.
pub const DEFAULT_ROOT: &str = "/run/keel";

/// runc's complaint about most operations on a stopped container.
const NOT_RUNNING: &str = "container not running";

/// The state of a container in the runtime-spec shape that runc prints for
/// `state` and `list --format json` (same fields, same order).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerState {
    #[serde(rename = "ociVersion")]
    /// The runtime-spec version keel implements ([`SPEC_VERSION`](crate::SPEC_VERSION)).
    pub oci_version: String,
    /// The container's id.
    pub id: String,
    /// The init's pid; 0 once stopped.
    pub pid: i32,
    /// Its status now.
    pub status: Status,
    /// The bundle directory it was created from.
    pub bundle: PathBuf,
    /// Its root filesystem on the host.
    pub rootfs: PathBuf,
    /// When it was created (RFC 3339, UTC, nanoseconds).
    pub created: String,
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    /// The config's annotations.
    pub annotations: HashMap<String, String>,
    /// Always empty, as in runc.
    pub owner: String,
}

/// What `create` made on its way, for the cleanup of a failure, and the
/// cgroup settings it warns about.
#[derive(Default)]
struct Made {
    cgroups: bool,
    warnings: Vec<String>,
}

/// Creates a container from a bundle.
///
/// ```no_run
/// let runtime = libkeel::Runtime::init()?;
/// let c = libkeel::ContainerBuilder::new("demo", "/path/to/bundle")
///     .root("/run/keel")
///     .create(&runtime)?;
/// c.start()?;
/// # Ok::<(), libkeel::Error>(())
/// ```
#[derive(Debug)]
pub struct ContainerBuilder {
    pub(crate) id: String,
    pub(crate) bundle: PathBuf,
    pub(crate) root: PathBuf,
    options: Options,
    pid_file: Option<PathBuf>,
    pub(crate) console_socket: Option<OwnedFd>,
    notify_socket: bool,
    rootless_cgroups: bool,
    systemd_cgroup: bool,
    pub(crate) stdio: Option<[OwnedFd; 3]>,
    keep_stdio_owner: bool,
    executor: Option<Box<dyn Executor>>,
    loaded: Option<Bundle>,
}

impl ContainerBuilder {
    /// A builder for container `id` from the bundle directory `bundle`.
    pub fn new(id: impl Into<String>, bundle: impl Into<PathBuf>) -> Self {
        ContainerBuilder {
            id: id.into(),
            bundle: bundle.into(),
            root: PathBuf::from(DEFAULT_ROOT),
            options: Options::default(),
            pid_file: None,
            console_socket: None,
            notify_socket: false,
            rootless_cgroups: false,
            systemd_cgroup: false,
            stdio: None,
            keep_stdio_owner: false,
            executor: None,
            loaded: None,
        }
    }

    /// The bundle as the caller already loaded it from the builder's
    /// bundle directory (a foreground `run` reads the config first): not
    /// read and parsed again.
    pub fn loaded_bundle(mut self, bundle: Bundle) -> Self {
        self.loaded = Some(bundle);
        self
    }

    /// The systemd cgroup driver (`--systemd-cgroup`): the cgroup is a
    /// transient scope; cgroupsPath is `slice:prefix:name`.
    pub fn systemd_cgroup(mut self, yes: bool) -> Self {
        self.systemd_cgroup = yes;
        self
    }

    /// The state root (default [`DEFAULT_ROOT`]).
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = root.into();
        self
    }

    /// Use MS_MOVE and chroot instead of pivot_root (for a ramfs root).
    pub fn no_pivot(mut self, yes: bool) -> Self {
        self.options.no_pivot = yes;
        self
    }

    /// Keep the caller's session keyring instead of giving the container a
    /// new one named after its id (`--no-new-keyring`).
    pub fn no_new_keyring(mut self, yes: bool) -> Self {
        self.options.no_new_keyring = yes;
        self
    }

    /// Pass fds 3 .. 3+n of the calling process to the container's program.
    pub fn preserve_fds(mut self, n: u32) -> Self {
        self.options.preserve_fds = n;
        self
    }

    /// A connected unix socket that receives the pty master (SCM_RIGHTS)
    /// when the config asks for a terminal; see [`crate::console`].
    pub fn console_socket(mut self, socket: OwnedFd) -> Self {
        self.console_socket = Some(socket);
        self
    }

    /// stdin, stdout and stderr of the container's process (a shim's pipes
    /// or fifos); by default it inherits the caller's.
    pub fn stdio(mut self, stdin: OwnedFd, stdout: OwnedFd, stderr: OwnedFd) -> Self {
        self.stdio = Some([stdin, stdout, stderr]);
        self
    }

    /// Leave the owner of the process's stdio alone (a pty is still given
    /// to the process's user). By default, as runc's fixStdioPermissions,
    /// the stdio fds but `/dev/null` go to the user the process runs as;
    /// a caller passing host files or fifos (rather than pipes of its own)
    /// may not want them chowned.
    pub fn keep_stdio_owner(mut self, yes: bool) -> Self {
        self.keep_stdio_owner = yes;
        self
    }

    /// Run `executor` in the container's init, fully set up, instead of
    /// execve of `process.args` (see [`Executor`] for what it may rely on).
    pub fn executor(mut self, executor: impl Executor + 'static) -> Self {
        self.executor = Some(Box::new(executor));
        self
    }

    /// Write the init's pid to this file once created.
    pub fn pid_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.pid_file = Some(path.into());
        self
    }

    /// Proxy sd_notify for the container (the caller has a
    /// `NOTIFY_SOCKET`): the program gets a `NOTIFY_SOCKET` of its own,
    /// relayed by [`Container::notify_proxy`].
    pub fn notify_socket(mut self, yes: bool) -> Self {
        self.notify_socket = yes;
        self
    }

    /// Tolerate cgroups this process may not create (runc's `--rootless`):
    /// without resource limits the container stays in the hierarchies it
    /// cannot have its own cgroup in; see [`crate::rootless`].
    pub fn rootless_cgroups(mut self, yes: bool) -> Self {
        self.rootless_cgroups = yes;
        self
    }

    /// Creates the container: on return its init waits for [`Container::start`].
    /// On error nothing is left behind: no state, cgroup or process.
    ///
    /// The init is forked from this process: `runtime` proves it may.
    pub fn create(mut self, runtime: &Runtime) -> Result<Container> {
        state::validate_id(&self.id)?;
        let mut bundle = match self.loaded.take() {
            Some(b) => b,
            None => Bundle::load(&self.bundle)?,
        };
        if self.notify_socket {
            crate::notify::add_to_spec(&mut bundle.spec, &self.root.join(&self.id));
        }
        let linux = bundle.spec.linux().as_ref();
        let cgroups_path = linux.and_then(|l| l.cgroups_path().as_deref());
        let mut cgroups = self.resolve_cgroups(&bundle)?;
        // As runc: only a cgroup the config did not name may be done without.
        let tolerant = self.rootless_cgroups
            && !self.systemd_cgroup
            && cgroups_path.is_none_or(|p| p.as_os_str().is_empty());
        let mut seen = None;
        if tolerant {
            let resources = linux.and_then(|l| l.resources().as_ref());
            let (usable, in_fact) = crate::rootless::usable_cgroups(cgroups.paths, resources)?;
            cgroups.paths = usable;
            seen = Some(in_fact);
        }
        let mut plan = InitPlan::new(
            &self.id,
            &bundle,
            &cgroups.paths,
            &self.options,
            self.console_socket.take(),
        )?;
        if let Some(seen) = seen {
            plan.rootfs.cgroups = seen;
        }
        plan.process.stdio = self.stdio.take();
        plan.process.keep_stdio_owner = self.keep_stdio_owner;
        plan.process.executor = self.executor.take();
        if crate::wasm::wanted(&bundle.spec) {
            plan.process.interpreter = Some(crate::wasm::open_executor(runtime.origin())?);
        }
        let dir = StateDir::create(&self.root, &self.id)?;
        let mut made = Made::default();
        let result = self.create_in(runtime, &dir, &bundle, &plan, &cgroups, &mut made);
        match result {
            Ok(state) => Ok(Container {
                root: self.root,
                state,
                warnings: bundle
                    .warnings
                    .into_iter()
                    .chain(plan.process.warnings.iter().cloned())
                    .chain(made.warnings)
                    .collect(),
            }),
            Err(e) => {
                if made.cgroups {
                    let _ = cgroups.remove();
                }
                let _ = dir.remove();
                Err(e)
            }
        }
    }

    fn create_in(
        &self,
        runtime: &Runtime,
        dir: &StateDir,
        bundle: &Bundle,
        plan: &InitPlan,
        cgroups: &Manager,
        made: &mut Made,
    ) -> Result<State> {
        dir.save_creating(cgroups)?;
        let fifo_path = dir.fifo();
        nix::unistd::mkfifo(&fifo_path, Mode::from_bits_truncate(0o622))
            .ctx(|| format!("mkfifo {}", fifo_path.display()))?;
        // mkfifo is subject to umask; the init may run as any user.
        std::fs::set_permissions(
            &fifo_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o622),
        )
        .ctx(|| format!("chmod {}", fifo_path.display()))?;
        let fifo = nix::fcntl::open(
            &fifo_path,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("open {}", fifo_path.display()))?;
        if self.notify_socket {
            let notify = dir.path.join(crate::notify::DIR);
            std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o755)
                .create(&notify)
                .ctx(|| format!("mkdir {}", notify.display()))?;
        }
        made.cgroups = cgroups.create()?;
        // Resource limits are in place before the init exists where the
        // cgroup does, so before the user program can run; otherwise they
        // follow while the init waits for start. Device rules always follow
        // the init's setup, when runc sets them too (procReady): the init
        // makes the config's device nodes whatever the rules say of them.
        if cgroups.exists_before_init() {
            self.limit(bundle, cgroups, &mut made.warnings)?;
        }
        crate::failpoint::failpoint("cgroups")?;
        log::debug!(
            "create {}: starting the init (new namespaces {:?})",
            self.id,
            plan.ns.clone_flags()
        );
        // Until recorded, the init (waiting on the fifo) dies with an error.
        let init = spawn::spawn(runtime, plan, cgroups, &fifo)?;
        log::debug!(
            "create {}: init {} is set up, waiting on exec.fifo",
            self.id,
            init.pid()
        );
        // The init waits on exec.fifo: in its group before the program runs.
        let pid = init.pid().as_raw();
        let groups = plan.intel_rdt.as_ref().map(|p| p.apply(pid)).transpose()?;
        let recorded = (|| {
            if !cgroups.exists_before_init() {
                self.limit(bundle, cgroups, &mut made.warnings)?;
            }
            self.limit_devices(bundle, cgroups)?;
            self.record(dir, bundle, cgroups, pid, groups.clone())
        })();
        match recorded {
            Ok(state) => {
                init.release();
                Ok(state)
            }
            Err(e) => {
                drop(init);
                if let Some(g) = &groups {
                    let _ = g.remove();
                }
                Err(e)
            }
        }
    }

    /// The container's cgroups as the config's cgroupsPath names them.
    pub(crate) fn resolve_cgroups(&self, bundle: &Bundle) -> Result<Manager> {
        let linux = bundle.spec.linux().as_ref();
        let cgroups_path = linux.and_then(|l| l.cgroups_path().as_deref());
        if self.systemd_cgroup {
            Manager::systemd(cgroups_path, &self.id, &bundle.spec)
        } else {
            Manager::cgroupfs(cgroups_path, &self.id)
        }
    }

    /// Restores the container from a CRIU checkpoint instead of creating
    /// it: on return it runs, with the same config and cgroups as the one
    /// checkpointed; see [`crate::checkpoint`]. On error nothing is left
    /// behind.
    pub fn restore(self, opts: &crate::checkpoint::RestoreOptions) -> Result<Container> {
        crate::checkpoint::restore(self, opts)
    }

    /// `linux.resources`, but the device rules, into the container's cgroups.
    pub(crate) fn limit(
        &self,
        bundle: &Bundle,
        cgroups: &Manager,
        warnings: &mut Vec<String>,
    ) -> Result<()> {
        if let Some(r) = bundle
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
        {
            warnings.extend(cgroups.apply(r)?);
        }
        Ok(())
    }

    /// The device rules (see [`DeviceRule::from_spec`]).
    pub(crate) fn limit_devices(&self, bundle: &Bundle, cgroups: &Manager) -> Result<()> {
        // A rootless container cannot make device nodes, and writing device
        // rules needs privilege it lacks: runc skips them too.
        if self.rootless_cgroups {
            return Ok(());
        }
        let rules = DeviceRule::from_spec(&bundle.spec)?;
        let asked = bundle
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.devices().as_ref())
            .is_some_and(|d| !d.is_empty());
        // Without a devices controller or cgroup2 only rules the config
        // asks for are an error; runc's defaults then go unenforced, as
        // under runc.
        if !cgroups.apply_device_rules(&rules)? && asked {
            return Err(Error::invalid(
                "linux.resources.devices",
                "no devices cgroup controller and no cgroup2 hierarchy to filter devices in",
            ));
        }
        Ok(())
    }

    pub(crate) fn record(
        &self,
        dir: &StateDir,
        bundle: &Bundle,
        cgroups: &Manager,
        pid: i32,
        intel_rdt: Option<crate::intelrdt::Groups>,
    ) -> Result<State> {
        let pid_start = match sys::process_start_time(pid) {
            Some((start, false)) => start,
            _ => return Err(Error::InitDied("init exited right after setup".into())),
        };
        let state = State {
            oci_version: crate::SPEC_VERSION.to_string(),
            id: self.id.clone(),
            pid,
            pid_start,
            bundle: bundle.path.clone(),
            rootfs: bundle.rootfs.clone(),
            created: state::rfc3339_utc(std::time::SystemTime::now(), true),
            owner: String::new(),
            annotations: bundle.spec.annotations().clone().unwrap_or_default(),
            cgroup: cgroups.clone(),
            hooks: bundle.spec.hooks().clone(),
            criu: Some(crate::checkpoint::Described::of(bundle)),
            process: bundle.spec.process().clone(),
            seccomp: bundle
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.seccomp().clone()),
            personality: bundle
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.personality().clone()),
            memory_policy: bundle
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.memory_policy().clone()),
            intel_rdt,
        };
        dir.save(&state)?;
        if let Some(p) = &self.pid_file {
            write_pid_file(p, pid)?;
        }
        Ok(state)
    }
}

/// How `exec` runs its process.
#[derive(Debug, Default)]
pub struct ExecOptions {
    /// Receives the pty master when the process asks for a terminal.
    pub console_socket: Option<OwnedFd>,
    /// Pass fds 3 .. 3+n of the caller to the process.
    pub preserve_fds: u32,
    /// Write the process's pid here.
    pub pid_file: Option<PathBuf>,
    /// Exec into a paused container too.
    pub ignore_paused: bool,
    /// Run this in the process, fully set up, instead of execve of its
    /// args (see [`Executor`]).
    pub executor: Option<Box<dyn Executor>>,
    /// Sub-cgroups of the container's to put the process in (`--cgroup`).
    pub sub_cgroups: Option<crate::cgroups::SubCgroups>,
    /// stdin, stdout, stderr of the process; by default the caller's.
    pub stdio: Option<[OwnedFd; 3]>,
    /// See [`ContainerBuilder::keep_stdio_owner`].
    pub keep_stdio_owner: bool,
}

/// A process started by [`Container::exec`].
#[derive(Debug)]
pub struct ExecProcess {
    /// Its host pid.
    pub pid: i32,
    /// A pidfd of it, opened while it could not yet have been reaped (so
    /// it names this process even once the pid is reused); None on kernels
    /// without pidfd_open (before 5.3).
    pub pidfd: Option<OwnedFd>,
}

/// Writes a pid file atomically (temp file + rename), as runc does.
fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let path = std::path::absolute(path).ctx(|| format!("pid file {}", path.display()))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, pid.to_string()).ctx(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).ctx(|| format!("rename to {}", path.display()))
}

/// A container found by id under a state root.
#[derive(Debug)]
pub struct Container {
    pub(crate) root: PathBuf,
    pub(crate) state: State,
    pub(crate) warnings: Vec<String>,
}

impl Container {
    /// Loads container `id` from the state root `root`.
    pub fn load(root: impl AsRef<Path>, id: &str) -> Result<Container> {
        state::validate_id(id)?;
        let dir = root.as_ref().join(id);
        if !dir.is_dir() {
            return Err(Error::NotFound(id.to_string()));
        }
        let state = state::load(&dir)?;
        Ok(Container {
            root: root.as_ref().to_path_buf(),
            state,
            warnings: Vec::new(),
        })
    }

    /// All containers under `root`, sorted by id. A missing root is empty.
    ///
    /// ```
    /// let none = libkeel::Container::list("/nonexistent/keel-root")?;
    /// assert!(none.is_empty());
    /// # Ok::<(), libkeel::Error>(())
    /// ```
    pub fn list(root: impl AsRef<Path>) -> Result<Vec<ContainerState>> {
        let root = root.as_ref();
        let entries = match std::fs::read_dir(root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("read state root {}", root.display()), e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            // A container still being created has no state.json yet.
            if let Ok(c) = Container::load(root, &id) {
                let mut state = c.state();
                // As runc: `list` names the owner of the state directory.
                state.owner = owner_name(&entry.path());
                out.push(state);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// Host pid of the init (meaningful while not stopped).
    pub fn pid(&self) -> i32 {
        self.state.pid
    }

    /// What runc would warn about, found at create or exec (capabilities
    /// this kernel lacks, …).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn dir(&self) -> PathBuf {
        self.root.join(&self.state.id)
    }

    /// The container's status, derived from its init's pid and start time
    /// (a recycled pid never makes a dead container look alive).
    pub fn status(&self) -> Status {
        match sys::process_start_time(self.state.pid) {
            Some((start, false)) if start == self.state.pid_start => self.live_status(),
            _ => Status::Stopped,
        }
    }

    /// The status of a container whose init is known to be alive.
    fn live_status(&self) -> Status {
        if self.dir().join(state::EXEC_FIFO).exists() {
            Status::Created
        } else if self.state.cgroup.paths.is_frozen() {
            Status::Paused
        } else {
            Status::Running
        }
    }

    /// The status, when `allowed` accepts it; else runc's complaint `reason`.
    fn status_in(
        &self,
        allowed: impl FnOnce(Status) -> bool,
        reason: impl Into<String>,
    ) -> Result<Status> {
        let status = self.status();
        if allowed(status) {
            Ok(status)
        } else {
            Err(self.wrong_status(status, reason))
        }
    }

    /// [`Container::pidfd`], or runc's complaint `reason` about a stopped
    /// container.
    fn live_pidfd(&self, reason: &str) -> Result<OwnedFd> {
        self.pidfd()
            .ok_or_else(|| self.wrong_status(Status::Stopped, reason))
    }

    fn wrong_status(&self, status: Status, reason: impl Into<String>) -> Error {
        Error::WrongStatus {
            id: self.state.id.clone(),
            status,
            reason: reason.into(),
        }
    }

    /// The runtime-spec state, as `keel state` prints it.
    pub fn state(&self) -> ContainerState {
        let status = self.status();
        ContainerState {
            oci_version: self.state.oci_version.clone(),
            id: self.state.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.state.pid
            },
            status,
            bundle: self.state.bundle.clone(),
            rootfs: self.state.rootfs.clone(),
            created: self.state.created.clone(),
            annotations: self.state.annotations.clone(),
            owner: self.state.owner.clone(),
        }
    }

    /// An fd pinning the init, checked against its recorded start time;
    /// None when the init is gone. Poll it (readable when the init exits)
    /// to learn that the container died.
    pub fn pidfd(&self) -> Option<OwnedFd> {
        let fd = sys::pidfd_open(self.state.pid).ok()?;
        // Checked after opening: the pidfd now pins this exact process.
        match sys::process_start_time(self.state.pid) {
            Some((start, false)) if start == self.state.pid_start => Some(fd),
            _ => None,
        }
    }

    /// Releases a created container's init to exec the program, then runs
    /// the poststart hooks; one that fails stops the container and is
    /// returned.
    pub fn start(&self) -> Result<()> {
        let (_lock, _) = StateDir::open_loaded(&self.root, &self.state)?;
        // runc's words (libcontainer's Start, by status).
        const STOPPED: &str = "cannot start a container that has stopped";
        // The pidfd's check of the init is the status's too.
        let pidfd = self.pidfd();
        let status = match pidfd {
            Some(_) => self.live_status(),
            None => Status::Stopped,
        };
        match status {
            Status::Created => {}
            Status::Stopped => return Err(self.wrong_status(status, STOPPED)),
            Status::Running => {
                return Err(self.wrong_status(status, "cannot start an already running container"))
            }
            s => {
                let reason = format!("cannot start a container in the {s} state");
                return Err(self.wrong_status(s, reason));
            }
        }
        let pidfd = pidfd.ok_or_else(|| self.wrong_status(Status::Stopped, STOPPED))?;
        let fifo_path = self.dir().join(state::EXEC_FIFO);
        // Non-blocking: if the init died we must not wait on the fifo forever.
        let fifo = nix::fcntl::open(
            &fifo_path,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_NONBLOCK
                | nix::fcntl::OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("open {}", fifo_path.display()))?;
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            let mut fds = [
                PollFd::new(fifo.as_fd(), PollFlags::POLLIN),
                PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => r.ctx(|| "poll exec.fifo".into())?,
            };
            if fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN))
            {
                let mut b = [0u8; 1];
                if matches!(nix::unistd::read(&fifo, &mut b), Ok(1)) {
                    crate::failpoint::failpoint("start")?;
                    log::debug!(
                        "start {}: exec.fifo opened, init {} execs the program",
                        self.state.id,
                        self.state.pid
                    );
                    break;
                }
            }
            if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                return Err(Error::InitDied("the init exited before start".into()));
            }
        }
        std::fs::remove_file(&fifo_path).ctx(|| format!("remove {}", fifo_path.display()))?;
        let Some(poststart) = self.late_hooks(|h| h.poststart()) else {
            return Ok(());
        };
        // runtime-spec 1.3 (runc 1.5, its #5186): poststart runs once the
        // program does, and a failure stops the container.
        wait_exec(&fifo);
        let state = self.hook_state(Status::Running);
        crate::hooks::run("poststart", poststart, &state, Default::default()).inspect_err(|_| {
            kill_and_wait(&pidfd);
        })
    }

    /// The sd_notify proxy of a container created with
    /// [`ContainerBuilder::notify_socket`], bound and ready to relay; None
    /// for a container created without it. Bind it before [`Container::start`]
    /// so that no message of the program is lost.
    pub fn notify_proxy(&self) -> Result<Option<crate::notify::NotifyProxy>> {
        let dir = self.dir();
        if !dir.join(crate::notify::DIR).is_dir() {
            return Ok(None);
        }
        let pidfd = self.live_pidfd("cannot relay sd_notify for a stopped container")?;
        crate::notify::NotifyProxy::bind(&dir, pidfd).map(Some)
    }

    /// The config's hooks of one kind, if any.
    fn late_hooks(
        &self,
        which: impl Fn(&oci_spec::runtime::Hooks) -> &Option<Vec<oci_spec::runtime::Hook>>,
    ) -> Option<&[oci_spec::runtime::Hook]> {
        let hooks = self
            .state
            .hooks
            .as_ref()
            .and_then(|h| which(h).as_deref())?;
        (!hooks.is_empty()).then_some(hooks)
    }

    fn hook_state(&self, status: Status) -> crate::hooks::HookState<'_> {
        crate::hooks::HookState {
            oci_version: crate::SPEC_VERSION,
            id: &self.state.id,
            status,
            pid: self.state.pid,
            bundle: &self.state.bundle,
            annotations: &self.state.annotations,
        }
    }

    /// The config's `process`: what `exec` starts from when it is not given
    /// a whole process of its own (runc's behaviour).
    pub fn process(&self) -> Option<&oci_spec::runtime::Process> {
        self.state.process.as_ref()
    }

    /// The host uid and gid of the container's root, from its init's
    /// mappings (see [`crate::rootless::root_host_ids`]).
    pub fn root_host_ids(&self) -> (u32, u32) {
        let of = |f: &str| {
            std::fs::read_to_string(format!("/proc/{}/{f}", self.state.pid))
                .ok()
                .and_then(|m| crate::rootless::host_id(&m, 0))
                .unwrap_or(0)
        };
        (of("uid_map"), of("gid_map"))
    }

    /// Starts `process` inside the running container and returns its host
    /// pid and a pidfd of it; the caller is its parent and reaps it. What
    /// runc would warn about is added to [`Container::warnings`]. Like
    /// `create`, this forks: `runtime` proves this process may.
    pub fn exec(
        &mut self,
        runtime: &Runtime,
        process: &oci_spec::runtime::Process,
        opts: ExecOptions,
    ) -> Result<ExecProcess> {
        const CANNOT_EXEC: &str = "cannot exec in a stopped container";
        // The pidfd's check of the init is the status's too (as in start).
        let pidfd = self.live_pidfd(CANNOT_EXEC)?;
        let status = self.live_status();
        if status == Status::Paused && !opts.ignore_paused {
            return Err(Error::ExecPaused);
        }
        crate::spec::validate_process(process)?;
        let mut plan = crate::process::plan::ProcessPlan::new(
            process,
            opts.console_socket,
            opts.preserve_fds,
            crate::process::plan::ContainerWide {
                seccomp: self.state.seccomp.as_ref(),
                personality: self.state.personality.as_ref(),
                memory_policy: self.state.memory_policy.as_ref(),
            },
        )?;
        plan.stdio = opts.stdio;
        plan.keep_stdio_owner = opts.keep_stdio_owner;
        plan.executor = opts.executor;
        self.warnings.extend(plan.warnings.iter().cloned());
        let descended;
        let cgroups = match &opts.sub_cgroups {
            Some(sub) => {
                descended = self.state.cgroup.paths.descend(sub)?;
                &descended
            }
            None => &self.state.cgroup.paths,
        };
        let state = self.hook_state(Status::Running);
        let (pid, pidfd) =
            crate::process::exec::exec(runtime, &plan, self.state.pid, &pidfd, cgroups, &state)?;
        log::debug!("exec {}: process {pid} runs the program", self.state.id);
        if let Some(p) = &opts.pid_file {
            write_pid_file(p, pid.as_raw())?;
        }
        Ok(ExecProcess {
            pid: pid.as_raw(),
            pidfd,
        })
    }

    /// Sends signal number `signal` to the init, or with `all` to every
    /// process of the container's cgroup. Any number goes to the kernel, as
    /// runc passes it: 0 probes, one the kernel does not know is EINVAL.
    /// SIGKILL of an init that is not pid 1 of a pid namespace of its own
    /// (the host's is shared, or another's joined) goes to every process of
    /// the cgroup, as runc 1.2+ does (its `Signal`): only a pid 1 takes the
    /// others with it.
    pub fn kill(&self, signal: i32, all: bool) -> Result<()> {
        self.status_in(|s| s != Status::Stopped || all, NOT_RUNNING)?;
        let pidfd = self.pidfd();
        let alone = pidfd.is_some() && signal == libc::SIGKILL && !pid_one(self.state.pid);
        if all || alone {
            for pid in self.state.cgroup.paths.pids()? {
                // SAFETY: kill(2) with plain integers.
                unsafe { libc::kill(pid, signal) };
            }
            return Ok(());
        }
        let pidfd = pidfd.ok_or_else(|| self.wrong_status(Status::Stopped, NOT_RUNNING))?;
        sys::pidfd_send_signal(pidfd.as_fd(), signal)
            .ctx(|| format!("signal {signal} to init {}", self.state.pid))
    }

    /// Deletes the container: its processes (a created container's, or any
    /// with `force`), its cgroups and its state directory; then runs the
    /// poststop hooks, whose failures come back as warnings. What is
    /// removed is what state.json says once the container is locked.
    pub fn delete(self, force: bool) -> Result<Vec<String>> {
        let (dir, state) = StateDir::open_loaded(&self.root, &self.state)?;
        let this = Container { state, ..self };
        this.delete_locked(dir, force)
    }

    fn delete_locked(self, dir: StateDir, force: bool) -> Result<Vec<String>> {
        let status = self.status();
        if !force && !matches!(status, Status::Stopped | Status::Created) {
            let id = &self.state.id;
            let reason = format!("cannot delete container {id} that is not stopped: {status}");
            return Err(self.wrong_status(status, reason));
        }
        if status == Status::Paused {
            let _ = self.state.cgroup.paths.thaw();
        }
        if status != Status::Stopped {
            if let Some(pidfd) = self.pidfd() {
                kill_and_wait(&pidfd);
            }
        }
        self.state.cgroup.paths.kill_all()?;
        crate::failpoint::failpoint("delete")?;
        log::debug!(
            "delete {}: removing its cgroups and state directory",
            self.state.id
        );
        self.state.cgroup.remove()?;
        if let Some(g) = &self.state.intel_rdt {
            g.remove()?;
        }
        crate::failpoint::failpoint("delete-dir")?;
        dir.remove()?;
        // Each failure is a warning; the other hooks still run.
        Ok(self
            .late_hooks(|h| h.poststop())
            .map(|hooks| {
                let state = self.hook_state(Status::Stopped);
                crate::hooks::run_all("poststop", hooks, &state, Default::default())
            })
            .unwrap_or_default())
    }

    /// Changes the resource limits of a created, running or paused
    /// container; absent fields (and 0 where runc reads 0 as unset) keep
    /// their values. Device rules are not changed (as `runc update`).
    /// Returns warnings (settings this host ignores).
    pub fn update(&self, resources: &oci_spec::runtime::LinuxResources) -> Result<Vec<String>> {
        self.status_in(|s| s != Status::Stopped, NOT_RUNNING)?;
        self.state.cgroup.apply(resources)
    }

    /// `update --l3-cache-schema` / `--mem-bw-schema`: the container's
    /// resctrl group gets these schemata lines. A container started without
    /// `linux.intelRdt` is put in a group of its own first (recorded for
    /// `delete`), as runc's update does.
    pub fn update_intel_rdt(&mut self, l3: Option<&str>, mem_bw: Option<&str>) -> Result<()> {
        let resctrl = crate::intelrdt::Resctrl::find();
        crate::intelrdt::check_update(resctrl.as_ref(), l3.is_some(), mem_bw.is_some())?;
        let lines: Vec<&str> = [l3, mem_bw].into_iter().flatten().collect();
        let Some(resctrl) = resctrl.filter(|_| !lines.is_empty()) else {
            return Ok(());
        };
        self.status_in(|s| s != Status::Stopped, NOT_RUNNING)?;
        if self.state.intel_rdt.is_none() {
            let (dir, _) = StateDir::open_loaded(&self.root, &self.state)?;
            let plan = crate::intelrdt::plan(&Default::default(), &self.state.id, Some(resctrl))?;
            let groups = plan.apply(self.state.pid)?;
            self.state.intel_rdt = Some(groups);
            if let Err(e) = dir.save(&self.state) {
                if let Some(g) = self.state.intel_rdt.take() {
                    let _ = g.remove();
                }
                return Err(e);
            }
        }
        match &self.state.intel_rdt {
            Some(g) => g.set_schemata(&lines),
            None => Ok(()),
        }
    }

    /// Freezes every process of a running (or created) container, as
    /// `runc pause`.
    pub fn pause(&self) -> Result<()> {
        self.status_in(
            |s| matches!(s, Status::Running | Status::Created),
            NOT_RUNNING,
        )?;
        self.state.cgroup.paths.freeze()
    }

    /// Thaws a paused container, as `runc resume`.
    pub fn resume(&self) -> Result<()> {
        self.status_in(|s| s == Status::Paused, "container not paused")?;
        self.state.cgroup.paths.thaw()
    }

    /// Host pids of every process in the container's cgroup.
    pub fn processes(&self) -> Result<Vec<i32>> {
        self.state.cgroup.paths.pids()
    }

    /// Resource usage from the container's cgroups, in the shape of runc's
    /// `events --stats` data.
    pub fn stats(&self) -> Result<crate::cgroups::Stats> {
        self.status_in(|s| s != Status::Stopped, NOT_RUNNING)?;
        Ok(self.state.cgroup.paths.stats())
    }

    /// A watch on the container's OOM events (for `events` and the shim);
    /// None when the host has no memory controller for it.
    pub fn oom_watch(&self) -> Result<Option<crate::cgroups::OomWatch>> {
        self.state.cgroup.paths.oom_watch()
    }
}

/// Whether `pid` is pid 1 of its own pid namespace (the last NSpid entry);
/// kernels without NSpid (before 4.1) are taken to say yes.
fn pid_one(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|v| v.split_whitespace().last().map(|p| p == "1"))
        })
        .unwrap_or(true)
}

fn owner_name(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return String::new();
    };
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid())) {
        Ok(Some(u)) => u.name,
        _ => format!("#{}", meta.uid()),
    }
}

/// SIGKILLs the process behind `pidfd` and waits (up to 5 s) until it has
/// exited.
fn kill_and_wait(pidfd: &OwnedFd) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let _ = sys::pidfd_send_signal(pidfd.as_fd(), Signal::SIGKILL as i32);
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let _ = poll(&mut fds, PollTimeout::from(5000u16));
}

/// Blocks until exec.fifo's last writer is gone: the init holds it
/// close-on-exec, so that is when the program runs (or the init died).
fn wait_exec(fifo: &OwnedFd) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut b = [0u8; 16];
    loop {
        match nix::unistd::read(fifo, &mut b) {
            Ok(0) => return,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => {
                let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
                if poll(&mut fds, PollTimeout::NONE).is_err_and(|e| e != nix::errno::Errno::EINTR) {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}
