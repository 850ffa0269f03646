//! The Task service: containerd's runtime v2 API over libkeel, called by
//! the shim's loop one request at a time (see `server`).
//!
//! Event order is the runtime v2 contract: TaskCreate → TaskStart →
//! TaskExit → TaskDelete, TaskExecAdded → TaskExecStarted → TaskExit, and
//! an init's TaskExit after those of its execs (as the runc shim holds it).
//! Exits are handled by the same loop between requests, so an exit can
//! never overtake the reply that registers its process. Wait answers when
//! the exit comes, without holding anything meanwhile.

use crate::events::Events;
use crate::options::Options;
use crate::spawn::{self, RootfsMount};
use crate::stdio;
use containerd_shim::api;
use containerd_shim::protos::events::task as ev;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::empty::Empty;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::ttrpc::{self, Code, Status as RpcStatus};
use libkeel::cgroups::OomWatch;
use libkeel::{Container, Status};
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

type Result<T> = std::result::Result<T, RpcStatus>;

fn err(code: Code, msg: impl ToString) -> RpcStatus {
    ttrpc::get_status(code, msg)
}

fn not_found(what: &str) -> RpcStatus {
    err(Code::NOT_FOUND, format!("{what}: not found"))
}

fn lib_err(e: libkeel::Error) -> RpcStatus {
    err(code_of(&e), e)
}

/// A failed create or exec is Unknown, as the runc shim answers it, unless
/// the library refused it for the container's state (see [`code_of`]).
fn spawn_code(e: &anyhow::Error) -> Code {
    let lib = e.chain().find_map(|c| c.downcast_ref::<libkeel::Error>());
    match lib.map(code_of) {
        Some(Code::FAILED_PRECONDITION) => Code::FAILED_PRECONDITION,
        _ => Code::UNKNOWN,
    }
}

/// The ttrpc code containerd maps to its errdefs: a request that does not
/// fit the container's state (wrong status, exec into a paused container,
/// a cgroup already in use) is a failed precondition, not Unknown.
fn code_of(e: &libkeel::Error) -> Code {
    match e {
        libkeel::Error::NotFound(_) => Code::NOT_FOUND,
        libkeel::Error::WrongStatus { .. }
        | libkeel::Error::ExecPaused
        | libkeel::Error::CgroupInUse(_) => Code::FAILED_PRECONDITION,
        libkeel::Error::Invalid { .. }
        | libkeel::Error::Config { .. }
        | libkeel::Error::BundleUnreadable(_)
        | libkeel::Error::ConfigRefused(_)
        | libkeel::Error::InvalidId { .. } => Code::INVALID_ARGUMENT,
        libkeel::Error::Exists(_) => Code::ALREADY_EXISTS,
        _ => Code::UNKNOWN,
    }
}

fn now() -> Timestamp {
    containerd_shim::util::timestamp().unwrap_or_default()
}

#[derive(Clone)]
struct Exit {
    status: u32,
    at: Timestamp,
}

/// A process the shim runs: a container's init or an exec'd one.
struct Proc {
    /// 0 until it runs.
    pid: i32,
    pidfd: Option<OwnedFd>,
    exit: Option<Exit>,
    stdio: stdio::Spec,
    io: stdio::Io,
}

impl Proc {
    fn new(stdio: stdio::Spec) -> Proc {
        Proc {
            pid: 0,
            pidfd: None,
            exit: None,
            stdio,
            io: stdio::Io::default(),
        }
    }

    fn running(&self) -> bool {
        self.pid != 0 && self.exit.is_none()
    }
}

struct ExecProc {
    proc: Proc,
    /// The process to start, until Start.
    spec: Option<Box<libkeel::oci_spec::runtime::Process>>,
}

struct Task_ {
    bundle: String,
    root: PathBuf,
    init: Proc,
    started: bool,
    execs: HashMap<String, ExecProc>,
    /// The init's exit while execs still run: published after theirs.
    init_exit: Option<Exit>,
    /// In the host's (or another container's) pid namespace, the init's
    /// exit does not end its children: kill the cgroup's processes then.
    shared_pidns: bool,
    rootfs_mounted: bool,
    /// Created from a checkpoint: Start restores it.
    restore: Option<crate::checkpoint::PendingRestore>,
}

impl Task_ {
    fn new(
        bundle: &str,
        root: PathBuf,
        init: Proc,
        rootfs_mounted: bool,
        restore: Option<crate::checkpoint::PendingRestore>,
    ) -> Task_ {
        Task_ {
            bundle: bundle.to_string(),
            root,
            init,
            started: false,
            execs: HashMap::new(),
            init_exit: None,
            shared_pidns: shared_pidns(bundle),
            rootfs_mounted,
            restore,
        }
    }

    /// The init first, then the execs: a stable order while the task is
    /// not changed (the loop polls pumps by index).
    fn procs(&self) -> impl Iterator<Item = &Proc> {
        std::iter::once(&self.init).chain(self.execs.values().map(|e| &e.proc))
    }

    fn procs_mut(&mut self) -> impl Iterator<Item = &mut Proc> {
        std::iter::once(&mut self.init).chain(self.execs.values_mut().map(|e| &mut e.proc))
    }
}

/// A Wait to answer on exit: (connection, stream).
pub type Caller = (u64, u32);

/// A reply the loop owes a caller.
pub struct Reply {
    pub to: Caller,
    pub body: Vec<u8>,
}

pub struct Service {
    /// libkeel's proof that the shim may fork container processes.
    runtime: libkeel::Runtime,
    namespace: String,
    tasks: HashMap<String, Task_>,
    pub events: Events,
    /// Pending Waits by (container, exec id; empty for the init).
    waiters: Vec<(String, String, Caller)>,
    /// Wait replies ready to go.
    pub replies: Vec<Reply>,
    pub ooms: Vec<(String, OomWatch)>,
    v2_host: bool,
    shutdown: bool,
}

fn task_in<'a>(tasks: &'a mut HashMap<String, Task_>, id: &str) -> Result<&'a mut Task_> {
    tasks
        .get_mut(id)
        .ok_or_else(|| not_found(&format!("container {id}")))
}

/// A ttrpc Response: payload or status.
fn response(r: Result<Vec<u8>>) -> Vec<u8> {
    let resp = match r {
        Ok(payload) => ttrpc::Response {
            payload,
            ..Default::default()
        },
        Err(status) => ttrpc::Response {
            status: MessageField::some(status),
            ..Default::default()
        },
    };
    resp.write_to_bytes().unwrap_or_default()
}

fn decode<M: Message>(payload: &[u8]) -> Result<M> {
    M::parse_from_bytes(payload).map_err(|e| err(Code::INVALID_ARGUMENT, e))
}

fn encode<M: Message>(m: M) -> Result<Vec<u8>> {
    m.write_to_bytes().map_err(|e| err(Code::INTERNAL, e))
}

impl Service {
    pub fn new(runtime: libkeel::Runtime, namespace: String, events: Events) -> Service {
        Service {
            runtime,
            namespace,
            tasks: HashMap::new(),
            events,
            waiters: Vec::new(),
            replies: Vec::new(),
            ooms: Vec::new(),
            v2_host: crate::metrics::host_is_v2(),
            shutdown: false,
        }
    }

    /// Shutdown was asked with no container left.
    pub fn done(&self) -> bool {
        self.shutdown && self.tasks.is_empty()
    }

    /// Serves one call of the Task API (v2 or v3: they differ only in the
    /// service's name). The encoded Response, or None for a Wait that
    /// answers later (through `replies`).
    pub fn call(
        &mut self,
        from: Caller,
        service: &str,
        method: &str,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        if service != "containerd.task.v2.Task" && service != "containerd.task.v3.Task" {
            return Some(response(Err(err(
                Code::UNIMPLEMENTED,
                format!("/{service}/{method} is not served"),
            ))));
        }
        macro_rules! call {
            ($f:ident) => {
                decode(payload).and_then(|r| self.$f(r)).and_then(encode)
            };
        }
        let r = match method {
            "State" => call!(state),
            "Create" => call!(create),
            "Start" => call!(start),
            "Delete" => call!(delete),
            "Pids" => call!(pids),
            "Pause" => call!(pause),
            "Resume" => call!(resume),
            "Checkpoint" => call!(checkpoint),
            "Kill" => call!(kill),
            "Exec" => call!(exec),
            "ResizePty" => call!(resize_pty),
            "CloseIO" => call!(close_io),
            "Update" => call!(update),
            "Stats" => call!(stats),
            "Connect" => call!(connect),
            "Shutdown" => call!(shutdown),
            "Wait" => match decode(payload).and_then(|r| self.wait(r, from)) {
                Ok(Some(r)) => encode(r),
                Ok(None) => return None,
                Err(e) => Err(e),
            },
            _ => Err(err(
                Code::UNIMPLEMENTED,
                format!("/{service}/{method} is not served"),
            )),
        };
        Some(response(r))
    }

    /// A child of the shim was reaped; `status` as containerd wants it
    /// (exit code, or 128 + signal).
    pub fn on_exit(&mut self, pid: i32, status: i32) {
        let exit = Exit {
            status: status as u32,
            at: now(),
        };
        let found = self.tasks.iter_mut().find_map(|(id, t)| {
            if t.init.running() && t.init_exit.is_none() && t.init.pid == pid {
                return Some((id.clone(), None));
            }
            t.execs
                .iter()
                .find(|(_, e)| e.proc.running() && e.proc.pid == pid)
                .map(|(eid, _)| (id.clone(), Some(eid.clone())))
        });
        // Not ours: a logging binary, or a process a container left.
        let Some((id, exec_id)) = found else { return };
        let Some(t) = self.tasks.get_mut(&id) else {
            return;
        };
        match exec_id {
            None => {
                if t.shared_pidns {
                    if let Ok(c) = Container::load(&t.root, &id) {
                        let _ = c.kill(libc::SIGKILL, true);
                    }
                }
                if t.execs.values().any(|e| e.proc.running()) {
                    t.init_exit = Some(exit);
                } else {
                    self.exited(&id, None, exit);
                }
            }
            Some(eid) => {
                self.exited(&id, Some(&eid), exit);
                let t = self.tasks.get_mut(&id);
                if let Some(t) = t.filter(|t| !t.execs.values().any(|e| e.proc.running())) {
                    if let Some(init_exit) = t.init_exit.take() {
                        self.exited(&id, None, init_exit);
                    }
                }
            }
        }
    }

    /// Records an exit, publishes TaskExit and answers the Waits.
    fn exited(&mut self, id: &str, exec_id: Option<&str>, exit: Exit) {
        let Some(t) = self.tasks.get_mut(id) else {
            return;
        };
        let proc = match exec_id {
            None => &mut t.init,
            Some(eid) => match t.execs.get_mut(eid) {
                Some(e) => &mut e.proc,
                None => return,
            },
        };
        proc.exit = Some(exit.clone());
        proc.pidfd = None;
        proc.io.exited();
        let pid = proc.pid;
        // An exec may be named as its container: the init's Waits are
        // those without an exec id.
        let wait_id = exec_id.unwrap_or("");
        let exec_id = exec_id.unwrap_or(id);
        self.events.publish(ev::TaskExit {
            container_id: id.to_string(),
            id: exec_id.to_string(),
            pid: pid as u32,
            exit_status: exit.status,
            exited_at: MessageField::some(exit.at.clone()),
            ..Default::default()
        });
        self.answer_waits(id, Some(wait_id), &exit);
    }

    /// Answers the Waits on container `id` (all of them if `exec_id` is
    /// None).
    fn answer_waits(&mut self, id: &str, exec_id: Option<&str>, exit: &Exit) {
        let resp = api::WaitResponse {
            exit_status: exit.status,
            exited_at: MessageField::some(exit.at.clone()),
            ..Default::default()
        };
        let body = response(encode(resp));
        let replies = &mut self.replies;
        self.waiters.retain(|(wid, weid, to)| {
            let hit = wid == id && exec_id.is_none_or(|e| e == weid);
            if hit {
                replies.push(Reply {
                    to: *to,
                    body: body.clone(),
                });
            }
            !hit
        });
    }

    /// A connection closed: its Waits go.
    pub fn forget(&mut self, conn: u64) {
        self.waiters.retain(|(_, _, to)| to.0 != conn);
    }

    /// The pumps of every process, in a stable order.
    pub fn pumps(&self) -> impl Iterator<Item = &stdio::Pump> {
        self.tasks
            .values()
            .flat_map(|t| t.procs())
            .flat_map(|p| p.io.pumps())
    }

    /// Runs the ready pumps (`ready`, in `pumps()` order).
    pub fn run_pumps(&mut self, ready: &[bool]) {
        let mut it = ready.iter().copied();
        for t in self.tasks.values_mut() {
            for p in t.procs_mut() {
                p.io.run_pumps(&mut it);
            }
        }
    }

    /// TaskOOM for the watches that fired; drops those whose cgroup is
    /// gone.
    pub fn check_ooms(&mut self) {
        let events = &mut self.events;
        self.ooms.retain_mut(|(id, w)| match w.read() {
            Ok(Some(0)) => true,
            Ok(Some(_)) => {
                events.publish(ev::TaskOOM {
                    container_id: id.clone(),
                    ..Default::default()
                });
                true
            }
            Ok(None) => false,
            Err(e) => {
                log::warn!("OOM watch of {id}: {e}");
                false
            }
        });
    }

    fn task(&mut self, id: &str) -> Result<&mut Task_> {
        task_in(&mut self.tasks, id)
    }

    fn proc(&mut self, id: &str, exec_id: &str) -> Result<&mut Proc> {
        let t = self.task(id)?;
        if exec_id.is_empty() {
            return Ok(&mut t.init);
        }
        t.execs
            .get_mut(exec_id)
            .map(|e| &mut e.proc)
            .ok_or_else(|| not_found(&format!("process {exec_id}")))
    }

    fn create(&mut self, req: api::CreateTaskRequest) -> Result<api::CreateTaskResponse> {
        if !req.parent_checkpoint.is_empty() {
            // runc restore has no --parent-path either: CRIU follows the
            // images' own link to their parent.
            return Err(err(
                Code::INVALID_ARGUMENT,
                "a parent checkpoint cannot be restored from",
            ));
        }
        if self.tasks.contains_key(&req.id) {
            return Err(err(
                Code::ALREADY_EXISTS,
                format!("container {} exists", req.id),
            ));
        }
        // A Shutdown that came before this container (of the same pod)
        // no longer holds.
        self.shutdown = false;
        let opts = Options::from_any(req.options.as_ref())
            .map_err(|e| err(Code::INVALID_ARGUMENT, format!("{e:#}")))?;
        let root = opts.root(&self.namespace);
        crate::options::save(&req.bundle, &opts)
            .map_err(|e| err(Code::INTERNAL, format!("{e:#}")))?;
        let spec = stdio::Spec {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let prepared = stdio::prepare(&spec, &req.id, &self.namespace)
            .map_err(|e| err(Code::INTERNAL, format!("stdio: {e:#}")))?;
        let rootfs: Vec<RootfsMount> = req
            .rootfs
            .iter()
            .map(|m| RootfsMount {
                typ: m.type_.clone(),
                source: m.source.clone(),
                options: m.options.clone(),
            })
            .collect();
        if !req.checkpoint.is_empty() {
            return self.create_restored(req, opts, root, spec, prepared, &rootfs);
        }
        let (ours, theirs) = prepared.console_socket.unzip();
        let pid = spawn::create(
            &self.runtime,
            spawn::Create {
                id: &req.id,
                bundle: Path::new(&req.bundle),
                root: root.clone(),
                rootfs: &rootfs,
                no_pivot: opts.no_pivot_root,
                no_new_keyring: opts.no_new_keyring,
                systemd_cgroup: opts.systemd_cgroup,
                stdio: prepared.stdio,
                console_socket: theirs,
            },
        )
        .map_err(|e| err(spawn_code(&e), format!("create {}: {e:#}", req.id)))?;
        let mut io = prepared.io;
        let container = Container::load(&root, &req.id);
        if let Some(ours) = &ours {
            if let Err(e) = io.attach_console(&spec, ours) {
                if let Ok(c) = container {
                    let _ = c.delete(true);
                }
                if !rootfs.is_empty() {
                    let target = Path::new(&req.bundle).join("rootfs");
                    let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
                }
                return Err(err(Code::INTERNAL, format!("{e:#}")));
            }
        }
        let mut init = Proc::new(spec.clone());
        init.pid = pid;
        init.pidfd = libkeel::pidfd_open(pid).ok();
        init.io = io;
        match container.and_then(|c| c.oom_watch()) {
            Ok(Some(w)) => self.ooms.push((req.id.clone(), w)),
            Ok(None) => {}
            Err(e) => log::warn!("{}: no OOM events: {e}", req.id),
        }
        self.tasks.insert(
            req.id.clone(),
            Task_::new(&req.bundle, root, init, !rootfs.is_empty(), None),
        );
        self.publish_create(&req, &spec, pid);
        Ok(api::CreateTaskResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    /// Create with a checkpoint: the rootfs mounted and the stdio opened,
    /// the restore itself at Start (as the runc shim), pid 0 until then.
    fn create_restored(
        &mut self,
        req: api::CreateTaskRequest,
        opts: Options,
        root: PathBuf,
        spec: stdio::Spec,
        prepared: stdio::Prepared,
        rootfs: &[RootfsMount],
    ) -> Result<api::CreateTaskResponse> {
        let bundle = Path::new(&req.bundle);
        spawn::mount_rootfs(rootfs, &bundle.join("rootfs"))
            .map_err(|e| err(Code::UNKNOWN, format!("create {}: {e:#}", req.id)))?;
        let mut init = Proc::new(spec.clone());
        init.io = prepared.io;
        self.tasks.insert(
            req.id.clone(),
            Task_::new(
                &req.bundle,
                root,
                init,
                !rootfs.is_empty(),
                Some(crate::checkpoint::PendingRestore {
                    image: PathBuf::from(&req.checkpoint),
                    work: crate::checkpoint::PendingRestore::work_dir(&opts.criu_work_path, bundle),
                    systemd_cgroup: opts.systemd_cgroup,
                    stdio: prepared.stdio,
                    console_socket: prepared.console_socket,
                }),
            ),
        );
        self.publish_create(&req, &spec, 0);
        Ok(api::CreateTaskResponse::default())
    }

    fn publish_create(&mut self, req: &api::CreateTaskRequest, spec: &stdio::Spec, pid: i32) {
        self.events.publish(ev::TaskCreate {
            container_id: req.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            io: MessageField::some(ev::TaskIO {
                stdin: spec.stdin.clone(),
                stdout: spec.stdout.clone(),
                stderr: spec.stderr.clone(),
                terminal: spec.terminal,
                ..Default::default()
            }),
            pid: pid as u32,
            ..Default::default()
        });
    }

    fn start(&mut self, req: api::StartRequest) -> Result<api::StartResponse> {
        let namespace = self.namespace.clone();
        // Not self.task(): an exec borrows the runtime token alongside.
        let t = task_in(&mut self.tasks, &req.id)?;
        if req.exec_id.is_empty() {
            if t.started {
                return Err(err(Code::FAILED_PRECONDITION, "already started"));
            }
            match t.restore.take() {
                Some(r) => self.restore(&req.id, r)?,
                None => Container::load(&t.root, &req.id)
                    .and_then(|c| c.start())
                    .map_err(lib_err)?,
            }
            let t = task_in(&mut self.tasks, &req.id)?;
            t.started = true;
            let pid = t.init.pid;
            self.events.publish(ev::TaskStart {
                container_id: req.id.clone(),
                pid: pid as u32,
                ..Default::default()
            });
            return Ok(api::StartResponse {
                pid: pid as u32,
                ..Default::default()
            });
        }
        if t.init.exit.is_some() || t.init_exit.is_some() {
            return Err(err(Code::FAILED_PRECONDITION, "container is stopped"));
        }
        let root = t.root.clone();
        let e = t
            .execs
            .get_mut(&req.exec_id)
            .ok_or_else(|| not_found(&format!("process {}", req.exec_id)))?;
        let process = e
            .spec
            .take()
            .ok_or_else(|| err(Code::FAILED_PRECONDITION, "process already started"))?;
        let prepared = stdio::prepare(&e.proc.stdio, &req.id, &namespace)
            .map_err(|e| err(Code::INTERNAL, format!("stdio: {e:#}")))?;
        let (ours, theirs) = prepared.console_socket.unzip();
        let started = spawn::exec(
            &self.runtime,
            &req.id,
            &root,
            &process,
            prepared.stdio,
            theirs,
        )
        .map_err(|e| err(spawn_code(&e), format!("exec in {}: {e:#}", req.id)))?;
        let pid = started.pid;
        e.proc.pid = pid;
        e.proc.pidfd = started.pidfd;
        e.proc.io = prepared.io;
        if let Some(ours) = &ours {
            let spec = e.proc.stdio.clone();
            if let Err(err_) = e.proc.io.attach_console(&spec, ours) {
                if let Some(fd) = &e.proc.pidfd {
                    let _ = libkeel::pidfd_send_signal(std::os::fd::AsFd::as_fd(fd), libc::SIGKILL);
                }
                return Err(err(Code::INTERNAL, format!("{err_:#}")));
            }
        }
        self.events.publish(ev::TaskExecStarted {
            container_id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            pid: pid as u32,
            ..Default::default()
        });
        Ok(api::StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn delete(&mut self, req: api::DeleteRequest) -> Result<api::DeleteResponse> {
        let t = self.task(&req.id)?;
        if !req.exec_id.is_empty() {
            let e = t
                .execs
                .get(&req.exec_id)
                .ok_or_else(|| not_found(&format!("process {}", req.exec_id)))?;
            if e.proc.running() {
                return Err(err(Code::FAILED_PRECONDITION, "process is running"));
            }
            let resp = delete_response(e.proc.pid, e.proc.exit.clone());
            t.execs.remove(&req.exec_id);
            return Ok(resp);
        }
        if t.started && t.init.exit.is_none() {
            return Err(err(Code::FAILED_PRECONDITION, "container is running"));
        }
        match Container::load(&t.root, &req.id) {
            Ok(c) => {
                for w in c.delete(true).map_err(lib_err)? {
                    log::warn!("{}: {w}", req.id);
                }
            }
            Err(libkeel::Error::NotFound(_)) => {}
            Err(e) => return Err(lib_err(e)),
        }
        if t.rootfs_mounted {
            let target = PathBuf::from(&t.bundle).join("rootfs");
            let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
        }
        // A created task deleted before start: its init was killed above.
        let exit = t.init.exit.clone().unwrap_or(Exit {
            status: 128 + 9,
            at: now(),
        });
        let resp = delete_response(t.init.pid, Some(exit.clone()));
        for p in t.procs_mut() {
            p.io.close();
        }
        self.tasks.remove(&req.id);
        // An OOM kill that ended the task is reported before its watch goes.
        self.check_ooms();
        self.ooms.retain(|(id, _)| *id != req.id);
        self.answer_waits(&req.id, None, &exit);
        self.events.publish(ev::TaskDelete {
            container_id: req.id.clone(),
            pid: resp.pid,
            exit_status: resp.exit_status,
            exited_at: resp.exited_at.clone(),
            id: req.id.clone(),
            ..Default::default()
        });
        Ok(resp)
    }

    fn state(&mut self, req: api::StateRequest) -> Result<api::StateResponse> {
        let t = self.task(&req.id)?;
        let (root, bundle, started) = (t.root.clone(), t.bundle.clone(), t.started);
        let p = self.proc(&req.id, &req.exec_id)?;
        let status = match (&p.exit, req.exec_id.is_empty()) {
            (Some(_), _) => api::Status::STOPPED,
            (None, false) if p.pid == 0 => api::Status::CREATED,
            (None, false) => api::Status::RUNNING,
            (None, true) if !started => api::Status::CREATED,
            (None, true) => match Container::load(&root, &req.id).map(|c| c.status()) {
                Ok(Status::Paused) => api::Status::PAUSED,
                Ok(Status::Stopped) => api::Status::STOPPED,
                _ => api::Status::RUNNING,
            },
        };
        let exit = p.exit.clone();
        Ok(api::StateResponse {
            id: req.id.clone(),
            bundle,
            pid: p.pid as u32,
            status: status.into(),
            stdin: p.stdio.stdin.clone(),
            stdout: p.stdio.stdout.clone(),
            stderr: p.stdio.stderr.clone(),
            terminal: p.stdio.terminal,
            exit_status: exit.as_ref().map_or(0, |e| e.status),
            exited_at: exit.map(|e| e.at).into(),
            exec_id: req.exec_id,
            ..Default::default()
        })
    }

    fn pids(&mut self, req: api::PidsRequest) -> Result<api::PidsResponse> {
        let t = self.task(&req.id)?;
        let pids = Container::load(&t.root, &req.id)
            .and_then(|c| c.processes())
            .map_err(lib_err)?;
        let processes = pids
            .into_iter()
            .map(|pid| {
                let exec = t
                    .execs
                    .iter()
                    .find(|(_, e)| e.proc.pid == pid && e.proc.exit.is_none());
                let info = exec.and_then(|(eid, _)| {
                    let d = containerd_shim::protos::shim::oci::ProcessDetails {
                        exec_id: eid.clone(),
                        ..Default::default()
                    };
                    Some(Any {
                        type_url: "containerd.runc.v1.ProcessDetails".into(),
                        value: d.write_to_bytes().ok()?,
                        ..Default::default()
                    })
                });
                containerd_shim::protos::types::task::ProcessInfo {
                    pid: pid as u32,
                    info: info.into(),
                    ..Default::default()
                }
            })
            .collect();
        Ok(api::PidsResponse {
            processes,
            ..Default::default()
        })
    }

    fn pause(&mut self, req: api::PauseRequest) -> Result<Empty> {
        let t = self.task(&req.id)?;
        Container::load(&t.root, &req.id)
            .and_then(|c| c.pause())
            .map_err(lib_err)?;
        self.events.publish(ev::TaskPaused {
            container_id: req.id,
            ..Default::default()
        });
        Ok(Empty::new())
    }

    fn resume(&mut self, req: api::ResumeRequest) -> Result<Empty> {
        let t = self.task(&req.id)?;
        Container::load(&t.root, &req.id)
            .and_then(|c| c.resume())
            .map_err(lib_err)?;
        self.events.publish(ev::TaskResumed {
            container_id: req.id,
            ..Default::default()
        });
        Ok(Empty::new())
    }

    fn checkpoint(&mut self, req: api::CheckpointTaskRequest) -> Result<Empty> {
        let t = self.task(&req.id)?;
        if !t.started || t.init.exit.is_some() {
            return Err(err(
                Code::FAILED_PRECONDITION,
                "only a running or paused task can be checkpointed",
            ));
        }
        let bundle = Path::new(&t.bundle);
        let c = crate::checkpoint::options(req.options.as_ref(), Path::new(&req.path), bundle)
            .map_err(|e| err(Code::INVALID_ARGUMENT, format!("{e:#}")))?;
        c.run(&t.root, &req.id)
            .map_err(|e| err(Code::UNKNOWN, format!("{e:#}")))?;
        Ok(Empty::new())
    }

    /// Start of a task created from a checkpoint: CRIU restores its init
    /// as the shim's child, with the stdio Create opened.
    fn restore(&mut self, id: &str, mut r: crate::checkpoint::PendingRestore) -> Result<()> {
        let t = self.task(id)?;
        let (ours, theirs) = r.console_socket.take().unzip();
        let (bundle, root) = (PathBuf::from(&t.bundle), t.root.clone());
        let pid = r
            .run(id, &bundle, root.clone(), theirs)
            .map_err(|e| err(Code::UNKNOWN, format!("{e:#}")))?;
        let t = self.task(id)?;
        t.init.pid = pid;
        t.init.pidfd = libkeel::pidfd_open(pid).ok();
        if let Some(ours) = &ours {
            let spec = t.init.stdio.clone();
            if let Err(e) = t.init.io.attach_console(&spec, ours) {
                if let Ok(c) = Container::load(&root, id) {
                    let _ = c.delete(true);
                }
                return Err(err(Code::INTERNAL, format!("{e:#}")));
            }
        }
        match Container::load(&root, id).and_then(|c| c.oom_watch()) {
            Ok(Some(w)) => self.ooms.push((id.to_string(), w)),
            Ok(None) => {}
            Err(e) => log::warn!("{id}: no OOM events: {e}"),
        }
        Ok(())
    }

    fn kill(&mut self, req: api::KillRequest) -> Result<Empty> {
        let t = self.task(&req.id)?;
        let signal = libkeel::Signal::try_from(req.signal as i32)
            .map_err(|_| err(Code::INVALID_ARGUMENT, format!("signal {}", req.signal)))?;
        if req.exec_id.is_empty() {
            if t.init.exit.is_some() && !req.all {
                return Err(not_found("process already finished"));
            }
            let c = Container::load(&t.root, &req.id).map_err(lib_err)?;
            return match c.kill(signal as i32, req.all) {
                Ok(()) => Ok(Empty::new()),
                Err(libkeel::Error::WrongStatus { .. }) => {
                    Err(not_found("process already finished"))
                }
                Err(e) => Err(lib_err(e)),
            };
        }
        let e = t
            .execs
            .get(&req.exec_id)
            .ok_or_else(|| not_found(&format!("process {}", req.exec_id)))?;
        match &e.proc.pidfd {
            Some(fd) if e.proc.exit.is_none() => {
                libkeel::pidfd_send_signal(std::os::fd::AsFd::as_fd(fd), signal as i32)
                    .map_err(|e| err(Code::UNKNOWN, format!("kill: {e}")))?
            }
            _ if e.proc.pid == 0 => {
                return Err(err(Code::FAILED_PRECONDITION, "process not started"))
            }
            _ => return Err(not_found("process already finished")),
        }
        Ok(Empty::new())
    }

    fn exec(&mut self, req: api::ExecProcessRequest) -> Result<Empty> {
        // The runtime-spec's names (scheduler flags), as config.json's.
        let (mut process, _warnings) =
            libkeel::spec::parse_process(&req.spec.get_or_default().value)
                .map_err(|e| err(Code::INVALID_ARGUMENT, format!("exec spec: {e}")))?;
        process.set_terminal(Some(req.terminal));
        let t = self.task(&req.id)?;
        if t.execs.contains_key(&req.exec_id) {
            return Err(err(
                Code::ALREADY_EXISTS,
                format!("process {} exists", req.exec_id),
            ));
        }
        if t.init.exit.is_some() || t.init_exit.is_some() {
            return Err(err(Code::FAILED_PRECONDITION, "container is stopped"));
        }
        t.execs.insert(
            req.exec_id.clone(),
            ExecProc {
                proc: Proc::new(stdio::Spec {
                    stdin: req.stdin,
                    stdout: req.stdout,
                    stderr: req.stderr,
                    terminal: req.terminal,
                }),
                spec: Some(Box::new(process)),
            },
        );
        self.events.publish(ev::TaskExecAdded {
            container_id: req.id,
            exec_id: req.exec_id,
            ..Default::default()
        });
        Ok(Empty::new())
    }

    fn resize_pty(&mut self, req: api::ResizePtyRequest) -> Result<Empty> {
        let p = self.proc(&req.id, &req.exec_id)?;
        let Some(master) = &p.io.console else {
            return Err(err(Code::FAILED_PRECONDITION, "process has no terminal"));
        };
        libkeel::console::resize(
            master.as_ref(),
            libkeel::console::Size {
                rows: req.height as u16,
                cols: req.width as u16,
            },
        )
        .map_err(lib_err)?;
        Ok(Empty::new())
    }

    fn close_io(&mut self, req: api::CloseIORequest) -> Result<Empty> {
        let p = self.proc(&req.id, &req.exec_id)?;
        if req.stdin {
            p.io.close_stdin();
        }
        Ok(Empty::new())
    }

    fn update(&mut self, req: api::UpdateTaskRequest) -> Result<Empty> {
        let resources: libkeel::oci_spec::runtime::LinuxResources =
            from_json_any(req.resources.get_or_default(), "resources")?;
        let t = self.task(&req.id)?;
        let warnings = Container::load(&t.root, &req.id)
            .and_then(|c| c.update(&resources))
            .map_err(lib_err)?;
        for w in warnings {
            log::warn!("{}: {w}", req.id);
        }
        Ok(Empty::new())
    }

    /// The exit if the process has one; else the caller is answered on
    /// exit.
    fn wait(&mut self, req: api::WaitRequest, from: Caller) -> Result<Option<api::WaitResponse>> {
        let p = self.proc(&req.id, &req.exec_id)?;
        if let Some(e) = &p.exit {
            return Ok(Some(api::WaitResponse {
                exit_status: e.status,
                exited_at: MessageField::some(e.at.clone()),
                ..Default::default()
            }));
        }
        self.waiters.push((req.id, req.exec_id, from));
        Ok(None)
    }

    fn stats(&mut self, req: api::StatsRequest) -> Result<api::StatsResponse> {
        let v2_host = self.v2_host;
        let t = self.task(&req.id)?;
        let stats = Container::load(&t.root, &req.id)
            .and_then(|c| c.stats())
            .map_err(lib_err)?;
        let any = crate::metrics::to_any(&stats, v2_host)
            .map_err(|e| err(Code::INTERNAL, format!("encode metrics: {e}")))?;
        Ok(api::StatsResponse {
            stats: MessageField::some(any),
            ..Default::default()
        })
    }

    fn connect(&mut self, req: api::ConnectRequest) -> Result<api::ConnectResponse> {
        let pid = self.tasks.get(&req.id).map_or(0, |t| t.init.pid);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: pid as u32,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    /// Ends the shim once its containers are gone (containerd asks after
    /// each delete).
    fn shutdown(&mut self, _req: api::ShutdownRequest) -> Result<Empty> {
        if self.tasks.is_empty() {
            self.shutdown = true;
        }
        Ok(Empty::new())
    }
}

/// Whether the bundle's container shares a pid namespace (without a
/// readable config.json, create fails anyway).
fn shared_pidns(bundle: &str) -> bool {
    !crate::bundle::Config::load(Path::new(bundle)).is_none_or(|c| c.new_pid_namespace())
}

fn delete_response(pid: i32, exit: Option<Exit>) -> api::DeleteResponse {
    let exit = exit.unwrap_or(Exit {
        status: 0,
        at: now(),
    });
    api::DeleteResponse {
        pid: pid as u32,
        exit_status: exit.status,
        exited_at: MessageField::some(exit.at),
        ..Default::default()
    }
}

/// `Any` carrying JSON (containerd's typeurl for the runtime-spec types).
fn from_json_any<T: serde::de::DeserializeOwned>(any: &Any, what: &str) -> Result<T> {
    serde_json::from_slice(&any.value)
        .map_err(|e| err(Code::INVALID_ARGUMENT, format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_conflicts_are_failed_preconditions() {
        for e in [
            libkeel::Error::ExecPaused,
            libkeel::Error::CgroupInUse("is not empty: 1 process(es) found".into()),
            libkeel::Error::WrongStatus {
                id: "c".into(),
                status: Status::Stopped,
                reason: "container not running".into(),
            },
        ] {
            assert_eq!(code_of(&e), Code::FAILED_PRECONDITION, "{e}");
        }
        assert_eq!(
            code_of(&libkeel::Error::NotFound("c".into())),
            Code::NOT_FOUND
        );
        let paused = anyhow::Error::from(libkeel::Error::ExecPaused).context("exec");
        assert_eq!(spawn_code(&paused), Code::FAILED_PRECONDITION);
        let invalid = anyhow::Error::from(libkeel::Error::BundleUnreadable("x".into()));
        assert_eq!(spawn_code(&invalid), Code::UNKNOWN);
    }
}
