//! Checkpoint and restore with CRIU (`keel checkpoint` / `keel restore`).
//!
//! keel drives `criu swrk` over its RPC socket (`swrk`, messages in
//! `rpc`) and describes the container to it as runc does (`describe`),
//! so images are laid out as runc's: the image directory holds CRIU's
//! images, its log (`dump.log`, `restore.log`, unless a work directory is
//! given) and runc's `descriptors.json` (what the init's stdio was, so a
//! restore can rewire inherited pipes to the restorer's stdio).
//!
//! A restore is a create whose init comes from the images: the container
//! gets a state directory and its cgroups from the bundle's config as at
//! create, CRIU is put in those cgroups and restores the process tree as
//! keel's child (`rst_sibling`), into the container's own root.

mod describe;
mod mountpoints;
mod rpc;
mod stdio;
mod swrk;

pub use describe::Described;
pub use rpc::CgroupMode;

use crate::cgroups::Manager;
use crate::container::{Container, ContainerBuilder};
use crate::error::{Error, Result, SysContext};
use crate::spec::Bundle;
use crate::state::{StateDir, Status};
use rpc::{Features, Opts, ReqType, Request};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use swrk::{Criu, Notice, FIRST_EXTRA_FD};

/// runc's file in the image directory naming the init's fds 0-2.
const DESCRIPTORS: &str = "descriptors.json";
/// CRIU reads this configuration file unless the config's annotation
/// `org.criu.config` names another (or "" for none): runc's, so that a
/// host's CRIU settings for runc apply to keel too.
const CRIU_CONFIG: &str = "/etc/criu/runc.conf";
const CRIU_CONFIG_ANNOTATION: &str = "org.criu.config";
/// The status prestart and createRuntime hooks are given at restore:
/// runc's, whose container has no init yet while CRIU restores it.
const HOOK_STATUS: Status = Status::Stopped;
/// runc never lets CRIU restore network settings: the engine sets them up.
const EMPTY_NS: u32 = libc::CLONE_NEWNET as u32;

/// What checkpoint and restore share (runc's flags of both).
#[derive(Debug, Clone)]
pub struct CriuOptions {
    /// The criu binary (runc's `--criu`; default `criu` from PATH).
    pub criu: PathBuf,
    /// The images: made if missing at checkpoint, must exist at restore.
    pub image_path: PathBuf,
    /// Where CRIU's log and work files go (default: the image directory).
    pub work_path: Option<PathBuf>,
    /// Checkpoint established TCP connections (`--tcp-established`).
    pub tcp_established: bool,
    /// Allow external unix sockets (`--ext-unix-sk`).
    pub ext_unix_sk: bool,
    /// The container was started from a shell job: its session and terminal (`--shell-job`).
    pub shell_job: bool,
    /// Handle file locks (`--file-locks`).
    pub file_locks: bool,
    /// What CRIU does with the container's cgroups (`--manage-cgroups-mode`).
    pub manage_cgroups_mode: CgroupMode,
    /// Deduplicate the pages against the parent images as they are used.
    pub auto_dedup: bool,
    /// Namespaces (`CLONE_NEW*` bits) CRIU makes empty rather than
    /// restoring their contents: the network namespace always, as runc.
    pub empty_ns: u32,
    /// Lazy migration (`--lazy-pages`): the dump serves the pages from
    /// memory to a `criu lazy-pages` daemon (through its page server) and
    /// returns once all were fetched; the restore leaves them to that
    /// daemon, which fills them in through userfaultfd as the tasks touch
    /// them (the daemon's socket is in the restore's work directory).
    pub lazy_pages: bool,
}

impl CriuOptions {
    /// Options with runc's defaults, images in `image_path`.
    pub fn new(image_path: impl Into<PathBuf>) -> Self {
        CriuOptions {
            criu: PathBuf::from("criu"),
            image_path: image_path.into(),
            work_path: None,
            tcp_established: false,
            ext_unix_sk: false,
            shell_job: false,
            file_locks: false,
            manage_cgroups_mode: CgroupMode::Default,
            auto_dedup: false,
            empty_ns: EMPTY_NS,
            lazy_pages: false,
        }
    }

    /// The work directory opened for CRIU (made if missing), and where
    /// CRIU's log `log_file` will be.
    fn work_dir(&self, log_file: &str) -> Result<(Option<OwnedFd>, PathBuf)> {
        let fd = match &self.work_path {
            Some(w) => Some(make_dir(w, "work path")?),
            None => None,
        };
        let dir = self.work_path.as_ref().unwrap_or(&self.image_path);
        Ok((fd, dir.join(log_file)))
    }

    /// The options of rpc.proto every request of keel's carries.
    fn rpc(
        &self,
        images: &OwnedFd,
        work: Option<&OwnedFd>,
        log_file: &str,
        annotations: Option<&HashMap<String, String>>,
    ) -> Opts {
        Opts {
            images_dir_fd: images.as_raw_fd(),
            work_dir_fd: work.map(|w| w.as_raw_fd()),
            log_level: 4,
            log_file: log_file.into(),
            notify_scripts: true,
            manage_cgroups: true,
            manage_cgroups_mode: Some(self.manage_cgroups_mode),
            orphan_pts_master: true,
            empty_ns: self.empty_ns | EMPTY_NS,
            auto_dedup: self.auto_dedup,
            config_file: config_file(annotations),
            tcp_established: self.tcp_established,
            ext_unix_sk: self.ext_unix_sk,
            shell_job: self.shell_job,
            file_locks: self.file_locks,
            lazy_pages: self.lazy_pages,
            ..Opts::default()
        }
    }
}

/// Options of [`Container::checkpoint`].
#[derive(Debug)]
pub struct CheckpointOptions {
    /// What checkpoint and restore share.
    pub common: CriuOptions,
    /// Leave the container running after the dump.
    pub leave_running: bool,
    /// Dump the memory only, tracking its changes, and leave the container
    /// running: a later dump with this as its parent writes what changed.
    pub pre_dump: bool,
    /// The images of an earlier (pre-)dump, relative to the image path:
    /// only the pages changed since are dumped.
    pub parent_path: Option<PathBuf>,
    /// Send the pages to a CRIU page server (address, port) rather than
    /// writing them to the image path.
    pub page_server: Option<(String, i32)>,
    /// With `lazy_pages`: written a `\0` and closed once CRIU's page
    /// server is ready to serve the pages (runc's `--status-fd`).
    pub status_fd: std::sync::Mutex<Option<OwnedFd>>,
}

/// Options of [`ContainerBuilder::restore`].
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// What checkpoint and restore share.
    pub common: CriuOptions,
    /// The LSM profile the restored processes get (`TYPE:NAME`), in place
    /// of the one they were dumped with.
    pub lsm_profile: Option<String>,
    /// The LSM mount context of the restored mounts.
    pub lsm_mount_context: Option<String>,
}

/// Opens a directory for CRIU (it reads it through /proc/<keel>/fd/N).
fn open_dir(path: &Path, what: &str) -> Result<OwnedFd> {
    std::fs::File::open(path)
        .and_then(|f| {
            if f.metadata()?.is_dir() {
                Ok(OwnedFd::from(f))
            } else {
                Err(std::io::Error::from_raw_os_error(libc::ENOTDIR))
            }
        })
        .ctx(|| format!("{what} {}", path.display()))
}

/// Makes (mode 0700, as runc) and opens a directory keel writes to.
fn make_dir(path: &Path, what: &str) -> Result<OwnedFd> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .ctx(|| format!("{what} {}: mkdir", path.display()))?;
    open_dir(path, what)
}

/// The CRIU configuration file for a container with these annotations.
fn config_file(annotations: Option<&HashMap<String, String>>) -> Option<String> {
    match annotations.and_then(|a| a.get(CRIU_CONFIG_ANNOTATION)) {
        Some(f) if f.is_empty() => None,
        Some(f) => Some(f.clone()),
        None => Some(CRIU_CONFIG.into()),
    }
}

impl Container {
    /// Checkpoints the running (or paused) container into
    /// `opts.image_path`. Unless `leave_running`, CRIU kills the
    /// container's processes after the dump; the caller then deletes the
    /// container (as runc does).
    pub fn checkpoint(&self, opts: &CheckpointOptions) -> Result<()> {
        let (_lock, _) = StateDir::open_loaded(&self.root, &self.state)?;
        let status = self.status();
        if !matches!(status, Status::Running | Status::Paused) {
            return Err(Error::WrongStatus {
                id: self.state.id.clone(),
                status,
                // runc's checkpoint.go.
                reason: format!("Container cannot be checkpointed in {status} state"),
            });
        }
        // Older states lack the description: the bundle's config then.
        let described = match &self.state.criu {
            Some(d) => d.clone(),
            None => Described::of(&Bundle::load(&self.state.bundle)?),
        };
        let c = &opts.common;
        if opts.pre_dump || opts.parent_path.is_some() {
            require(
                &c.criu,
                Features {
                    mem_track: true,
                    ..Features::default()
                },
            )?;
        }
        if c.lazy_pages {
            require(
                &c.criu,
                Features {
                    lazy_pages: true,
                    ..Features::default()
                },
            )?;
        }
        let images = make_dir(&c.image_path, "image path")?;
        let (work, log) = c.work_dir("dump.log")?;
        let pid = self.state.pid;
        let mut o = c.rpc(
            &images,
            work.as_ref(),
            "dump.log",
            Some(&self.state.annotations),
        );
        o.pid = Some(pid);
        o.root = Some(self.state.rootfs.to_string_lossy().into_owned());
        o.leave_running = opts.leave_running;
        o.external = describe::external_namespaces(&described)?;
        let cg = &self.state.cgroup.paths;
        o.freeze_cgroup = cg
            .v1_dir("freezer")
            .map(Path::to_path_buf)
            .or_else(|| cg.unified.clone().filter(|_| cg.is_pure_v2()))
            .map(|p| p.to_string_lossy().into_owned());
        o.page_server = opts.page_server.clone();
        if let Some(parent) = &opts.parent_path {
            o.parent_img = Some(parent.to_string_lossy().into_owned());
            o.track_mem = true;
        }
        // A pre-dump is the memory only (runc describes nothing else).
        if !opts.pre_dump {
            // Dumped under their destination; the restore maps that key to
            // whatever the source is then.
            let root = PathBuf::from(format!("/proc/{pid}/root"));
            for m in describe::external_mounts(&described, cg, &root) {
                o.ext_mnt.push((m.destination.clone(), m.destination));
            }
            for f in describe::masked_files(&described, &root) {
                o.ext_mnt.push((f, "/dev/null".into()));
            }
            write_descriptors(pid, &c.image_path.join(DESCRIPTORS))?;
            let external_stdio = stdio::external(pid)?;
            o.external
                .extend(external_stdio.iter().map(|(_, key)| key.clone()));
            stdio::save(&c.image_path, &external_stdio)?;
        }
        let typ = if opts.pre_dump {
            ReqType::PreDump
        } else {
            ReqType::Dump
        };
        let mut criu = Criu::spawn(&c.criu, None, &[])?;
        let req = Request {
            typ,
            opts: Some(o),
            notify_success: false,
            features: None,
        };
        criu.call(&req, &log, |n: Notice<'_>| {
            if n.script == "status-ready" {
                report_ready(&opts.status_fd);
            }
            Ok(())
        })?;
        if opts.pre_dump {
            // After a pre-dump CRIU waits for the next request of a series
            // keel does not send: its exit status says nothing (as runc).
            drop(criu);
            return Ok(());
        }
        criu.finish()
    }
}

/// Fails, in runc's words, unless CRIU has the `wanted` features: memory
/// changes tracking (the kernel's soft-dirty bits), which pre-dumps and
/// dumps onto a parent need; userfaultfd, which lazy migration needs.
fn require(criu: &Path, wanted: Features) -> Result<()> {
    let req = Request {
        typ: ReqType::FeatureCheck,
        opts: None,
        notify_success: false,
        features: Some(wanted),
    };
    let mut c = Criu::spawn(criu, None, &[])?;
    let resp = c.call(&req, Path::new(""), |_| Ok(()))?;
    c.finish()?;
    let Some(has) = resp.features else {
        return Ok(());
    };
    if wanted.mem_track && !has.mem_track {
        return Err(Error::CriuMissingFeatures(
            "MemTrack (memory changes tracking needs a kernel with CONFIG_MEM_SOFT_DIRTY)",
        ));
    }
    if wanted.lazy_pages && !has.lazy_pages {
        return Err(Error::CriuMissingFeatures(
            "LazyPages (lazy migration needs a kernel with userfaultfd)",
        ));
    }
    Ok(())
}

/// CRIU's page server is up (`status-ready`): a `\0` on the status fd, which
/// is then closed, as runc does (a failed write is only logged, as runc).
fn report_ready(status_fd: &std::sync::Mutex<Option<OwnedFd>>) {
    let fd = status_fd.lock().ok().and_then(|mut g| g.take());
    if let Some(fd) = fd {
        if let Err(e) = nix::unistd::write(&fd, &[0]) {
            log::warn!("can't write \\0 to status fd: {e}");
        }
    }
}

/// Records what the init's stdio are (runc's descriptors.json: the targets
/// of /proc/<pid>/fd/0..2, `pipe:[N]` for a pipe).
fn write_descriptors(pid: i32, path: &Path) -> Result<()> {
    let fds: Vec<String> = (0..3)
        .map(|fd| {
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "/dev/null".into())
        })
        .collect();
    let json = serde_json::to_vec(&fds).map_err(|e| Error::CriuProtocol(e.to_string()))?;
    std::fs::write(path, json).ctx(|| format!("write {}", path.display()))
}

/// Reads descriptors.json: the restore hands CRIU its own stdio in place
/// of each pipe the init had (`inherit_fd`).
fn read_descriptors(path: &Path) -> Result<Vec<String>> {
    let data = std::fs::read(path).ctx(|| format!("open {}", path.display()))?;
    serde_json::from_slice(&data).map_err(|e| Error::State {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The rootfs bound at `<state dir>/criu-root` (RESTORE_ROOT) for the restore: CRIU wants
/// its root to be a mount point whose parent is not over-mounted. Unmounted
/// and removed on drop.
struct RestoreRoot(PathBuf);

impl RestoreRoot {
    fn bind(rootfs: &Path, at: PathBuf) -> Result<RestoreRoot> {
        std::fs::create_dir(&at).ctx(|| format!("mkdir {}", at.display()))?;
        let root = RestoreRoot(at);
        nix::mount::mount(
            Some(rootfs),
            &root.0,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REC,
            None::<&str>,
        )
        .ctx(|| format!("bind {} on {}", rootfs.display(), root.0.display()))?;
        Ok(root)
    }
}

impl Drop for RestoreRoot {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// `cg_root` for CRIU: the cgroups it was put in, per hierarchy, so the
/// restored tree lands in the container's new cgroups (`/proc/<pid>/cgroup`
/// lines `N:controllers:path`; cgroup2's has no controllers and stands for
/// every hierarchy not named).
fn cgroup_roots(pid: i32) -> Result<Vec<(Option<String>, String)>> {
    let path = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&path).ctx(|| format!("read {path}"))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, p) = (f.next()?, f.next()?, f.next()?);
            Some(((!ctrl.is_empty()).then(|| ctrl.to_string()), p.to_string()))
        })
        .collect())
}

/// [`ContainerBuilder::restore`].
pub(crate) fn restore(mut b: ContainerBuilder, opts: &RestoreOptions) -> Result<Container> {
    crate::state::validate_id(&b.id)?;
    let bundle = Bundle::load(&b.bundle)?;
    // Checked as at create (runc's rules and words), before anything is made.
    let intel_rdt = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.intel_rdt().as_ref())
        .map(|r| crate::intelrdt::plan(r, &b.id, crate::intelrdt::Resctrl::find()))
        .transpose()?;
    let images = open_dir(&opts.common.image_path, "image path")?;
    let descriptors = read_descriptors(&opts.common.image_path.join(DESCRIPTORS))?;
    let described = Described::of(&bundle);
    let namespaces = describe::restore_namespaces(&described)?;
    let cgroups = b.resolve_cgroups(&bundle)?;
    let dir = StateDir::create(&b.root, &b.id)?;
    let mut made = Made::default();
    let result = restore_in(
        &mut b,
        opts,
        Prepared {
            dir: &dir,
            bundle: &bundle,
            described: &described,
            cgroups: &cgroups,
            intel_rdt: intel_rdt.as_ref(),
            images,
            descriptors,
            namespaces,
        },
        &mut made,
    );
    match result {
        Ok(state) => Ok(Container {
            root: b.root,
            state,
            warnings: bundle.warnings.into_iter().chain(made.warnings).collect(),
        }),
        Err(e) => {
            if let Some(pid) = made.restored {
                let pid = nix::unistd::Pid::from_raw(pid);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
            }
            if let Some(g) = &made.intel_rdt {
                let _ = g.remove();
            }
            if made.cgroups {
                let _ = cgroups.remove();
            }
            let _ = dir.remove();
            Err(e)
        }
    }
}

/// What a restore made, undone if it fails.
#[derive(Default)]
struct Made {
    cgroups: bool,
    /// The restored init.
    restored: Option<i32>,
    /// The resctrl groups the restored init was put in.
    intel_rdt: Option<crate::intelrdt::Groups>,
    warnings: Vec<String>,
}

/// What [`restore`] found and opened before the state directory existed.
struct Prepared<'a> {
    dir: &'a StateDir,
    bundle: &'a Bundle,
    described: &'a Described,
    cgroups: &'a Manager,
    /// `linux.intelRdt`, checked.
    intel_rdt: Option<&'a crate::intelrdt::Plan>,
    images: OwnedFd,
    descriptors: Vec<String>,
    namespaces: describe::RestoreNamespaces,
}

fn restore_in(
    b: &mut ContainerBuilder,
    opts: &RestoreOptions,
    p: Prepared<'_>,
    made: &mut Made,
) -> Result<crate::state::State> {
    let Prepared {
        dir,
        bundle,
        described,
        cgroups,
        intel_rdt,
        images,
        descriptors,
        namespaces,
    } = p;
    dir.save_creating(cgroups)?;
    let c = &opts.common;
    let (work, log) = c.work_dir("restore.log")?;
    made.cgroups = cgroups.create()?;
    mountpoints::prepare(bundle)?;
    let root = RestoreRoot::bind(&bundle.rootfs, dir.path.join(crate::state::RESTORE_ROOT))?;
    let annotations = bundle.spec.annotations().as_ref();
    let mut o = c.rpc(&images, work.as_ref(), "restore.log", annotations);
    o.root = Some(root.0.to_string_lossy().into_owned());
    o.evasive_devices = true;
    o.rst_sibling = true;
    o.lsm_profile = opts.lsm_profile.clone();
    o.lsm_mount_context = opts.lsm_mount_context.clone();
    for m in describe::external_mounts(described, &cgroups.paths, &bundle.rootfs) {
        o.ext_mnt
            .push((m.destination, m.source.to_string_lossy().into_owned()));
    }
    if describe::masks_paths(described) {
        o.ext_mnt.push(("/dev/null".into(), "/dev/null".into()));
    }
    o.join_ns = namespaces.join;
    let mut extra = Vec::new();
    for (key, fd) in namespaces.inherit {
        o.inherit_fd
            .push((key, FIRST_EXTRA_FD + extra.len() as i32));
        extra.push(fd);
    }
    for (i, d) in descriptors.iter().enumerate() {
        if d.contains("pipe:") {
            o.inherit_fd.push((d.clone(), i as i32));
        }
    }
    for (fd, key) in stdio::load(&c.image_path)? {
        o.inherit_fd.push((key, fd));
    }
    let mut criu = Criu::spawn(&c.criu, b.stdio.as_ref(), &extra)?;
    // As runc: CRIU (and so the tree it restores) in the cgroups, then the
    // limits (a systemd unit exists from here on), before the restore.
    cgroups.join_init(criu.pid(), false, false)?;
    b.limit(bundle, cgroups, &mut made.warnings)?;
    b.limit_devices(bundle, cgroups)?;
    o.cg_root = cgroup_roots(criu.pid())?;
    let req = Request {
        typ: ReqType::Restore,
        opts: Some(o),
        notify_success: false,
        features: None,
    };
    let console = b.console_socket.take();
    let hooks = crate::process::plan::hooks_of(&b.id, bundle);
    let resp = criu.call(&req, &log, |n: Notice<'_>| {
        match n.script {
            // As runc: the namespaces exist, the tasks are not restored
            // yet; prestart and createRuntime hooks see the restoring init.
            "setup-namespaces" => {
                // As create puts its init in the resctrl group before the
                // program runs: the restoring init, before it makes the
                // rest of the tree (which inherits the group).
                if let Some(plan) = intel_rdt {
                    made.intel_rdt = Some(plan.apply(n.pid)?);
                }
                let state = hooks.state(HOOK_STATUS, n.pid);
                for (kind, list) in &hooks.runtime {
                    crate::hooks::run(kind, list, &state, Default::default())?;
                }
            }
            "post-restore" => made.restored = Some(n.pid),
            "orphan-pts-master" => {
                if let (Some(socket), Some(master)) = (&console, n.fd) {
                    crate::sys::send_fd(socket.as_fd(), b"/dev/ptmx", master.as_fd())
                        .ctx(|| "--console-socket: send the pty master".into())?;
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    if let Some(pid) = resp.restore_pid {
        made.restored = Some(pid);
    }
    criu.finish()?;
    drop(root);
    let pid = made.restored.ok_or_else(|| {
        Error::CriuProtocol("criu restored nothing: no pid in its response".into())
    })?;
    b.record(dir, bundle, cgroups, pid, made.intel_rdt.clone())
}
