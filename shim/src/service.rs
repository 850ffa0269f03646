//! The Task service: containerd's runtime v2 API over libkeel. Forks go
//! through the zygote; everything else (start, kill, pause, stats, delete)
//! calls the library from the ttrpc threads, as it neither forks nor needs
//! a single thread.
//!
//! Event order is the runtime v2 contract: TaskCreate → TaskStart →
//! TaskExit → TaskDelete, TaskExecAdded → TaskExecStarted → TaskExit. Events
//! are queued under the state lock and sent by one thread in queue order;
//! an exit that arrives before its process is registered (a fast exit races
//! the zygote's reply) is kept until the registration.

use crate::events::Events;
use crate::options::Options;
use crate::stdio;
use crate::zygote::{self, Fds, Request, RootfsMount, Zygote};
use containerd_shim::api;
use containerd_shim::protos::events::task as ev;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::empty::Empty;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::{ExitSignal, Task, TtrpcContext, TtrpcResult};
use libkeel::{Container, Status};
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

fn err(code: Code, msg: impl ToString) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg))
}

fn not_found(what: &str) -> ttrpc::Error {
    err(Code::NOT_FOUND, format!("{what}: not found"))
}

fn lib_err(e: libkeel::Error) -> ttrpc::Error {
    let code = match &e {
        libkeel::Error::NotFound(_) => Code::NOT_FOUND,
        libkeel::Error::WrongStatus { .. } => Code::FAILED_PRECONDITION,
        libkeel::Error::Invalid { .. }
        | libkeel::Error::Config { .. }
        | libkeel::Error::InvalidId { .. } => Code::INVALID_ARGUMENT,
        libkeel::Error::Exists(_) => Code::ALREADY_EXISTS,
        _ => Code::UNKNOWN,
    };
    err(code, e)
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
    /// In the host's (or another container's) pid namespace, the init's
    /// exit does not end its children: kill the cgroup's processes then.
    shared_pidns: bool,
    rootfs_mounted: bool,
}

#[derive(Default)]
struct State {
    tasks: HashMap<String, Task_>,
    /// Forks in flight: exits of unknown pids are kept meanwhile.
    pending: usize,
    early_exits: HashMap<i32, Exit>,
}

pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    namespace: String,
    zygote: Zygote,
    events: Events,
    state: Mutex<State>,
    exited: Condvar,
    exit_signal: Arc<ExitSignal>,
    v2_host: bool,
    oom: Option<crate::oom::OomWatcher>,
}

impl Service {
    pub fn new(
        namespace: String,
        zygote: Zygote,
        zygote_events: zygote::ZygoteEvents,
        events: Events,
        exit_signal: Arc<ExitSignal>,
    ) -> Service {
        let oom = match crate::oom::OomWatcher::start(events.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                log::error!("no OOM events: {e}");
                None
            }
        };
        let inner = Arc::new(Inner {
            namespace,
            zygote,
            oom,
            events,
            state: Mutex::new(State::default()),
            exited: Condvar::new(),
            exit_signal,
            v2_host: crate::metrics::host_is_v2(),
        });
        let weak = Arc::downgrade(&inner);
        let spawned = std::thread::Builder::new()
            .name("zygote-events".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                zygote_events.run(|pid, status| {
                    if let Some(inner) = weak.upgrade() {
                        inner.on_exit(pid, status);
                    }
                })
            });
        if let Err(e) = spawned {
            log::error!("spawn the zygote reader: {e}");
        }
        Service { inner }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An exit reported by the zygote.
    fn on_exit(&self, pid: i32, status: i32) {
        let exit = Exit {
            status: status as u32,
            at: now(),
        };
        let mut st = self.lock();
        if !self.apply_exit(&mut st, pid, exit.clone()) && st.pending > 0 {
            st.early_exits.insert(pid, exit);
        }
    }

    /// Records the exit of `pid` if it is one of ours; publishes TaskExit.
    fn apply_exit(&self, st: &mut State, pid: i32, exit: Exit) -> bool {
        for (id, t) in st.tasks.iter_mut() {
            let (proc, exec_id) = if t.init.pid == pid && t.init.exit.is_none() {
                (&mut t.init, id.clone())
            } else if let Some((eid, e)) = t
                .execs
                .iter_mut()
                .find(|(_, e)| e.proc.pid == pid && e.proc.exit.is_none())
            {
                (&mut e.proc, eid.clone())
            } else {
                continue;
            };
            proc.exit = Some(exit.clone());
            proc.pidfd = None;
            proc.io.close();
            let is_init = exec_id == *id;
            if is_init && t.shared_pidns {
                if let Ok(c) = Container::load(&t.root, id) {
                    let _ = c.kill(libkeel::Signal::SIGKILL, true);
                }
            }
            self.events.publish(ev::TaskExit {
                container_id: id.clone(),
                id: exec_id,
                pid: pid as u32,
                exit_status: exit.status,
                exited_at: MessageField::some(exit.at),
                ..Default::default()
            });
            self.exited.notify_all();
            return true;
        }
        false
    }

    /// After a fork: the exit that may have raced the registration.
    fn finish_pending(&self, st: &mut State, pid: Option<i32>) {
        st.pending -= 1;
        if let Some(exit) = pid.and_then(|p| st.early_exits.remove(&p)) {
            if let Some(p) = pid {
                self.apply_exit(st, p, exit);
            }
        }
        if st.pending == 0 {
            st.early_exits.clear();
        }
    }

    fn task<'a>(&self, st: &'a mut State, id: &str) -> ttrpc::Result<&'a mut Task_> {
        st.tasks
            .get_mut(id)
            .ok_or_else(|| not_found(&format!("container {id}")))
    }

    fn proc<'a>(&self, st: &'a mut State, id: &str, exec_id: &str) -> ttrpc::Result<&'a mut Proc> {
        let t = self.task(st, id)?;
        if exec_id.is_empty() {
            return Ok(&mut t.init);
        }
        t.execs
            .get_mut(exec_id)
            .map(|e| &mut e.proc)
            .ok_or_else(|| not_found(&format!("process {exec_id}")))
    }

    fn create(&self, req: api::CreateTaskRequest) -> ttrpc::Result<api::CreateTaskResponse> {
        if !req.checkpoint.is_empty() {
            return Err(err(Code::UNIMPLEMENTED, "keel cannot restore checkpoints"));
        }
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
        let mut prepared = stdio::prepare(&spec, &req.id, &self.namespace)
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
        let shared_pidns = !pid_namespace_is_new(&req.bundle);
        let request = Request::Create {
            id: req.id.clone(),
            bundle: PathBuf::from(&req.bundle),
            root: root.clone(),
            rootfs: rootfs.clone(),
            no_pivot: opts.no_pivot_root,
            no_new_keyring: opts.no_new_keyring,
            systemd_cgroup: opts.systemd_cgroup,
            fds: Fds {
                stdio: prepared.stdio.is_some(),
                console: prepared.console_socket.is_some(),
            },
        };
        {
            let mut st = self.lock();
            if st.tasks.contains_key(&req.id) {
                return Err(err(
                    Code::ALREADY_EXISTS,
                    format!("container {} exists", req.id),
                ));
            }
            st.pending += 1;
        }
        let mut fds: Vec<&OwnedFd> = prepared.stdio.iter().flatten().collect();
        if let Some((_, theirs)) = &prepared.console_socket {
            fds.push(theirs);
        }
        let spawned = self.zygote.call(&request, &fds);
        drop(fds);
        prepared.stdio = None;
        let mut io = prepared.io;
        let spawned = spawned.and_then(|s| {
            if let Some((ours, _)) = &prepared.console_socket {
                io.attach_console(&spec, ours)?;
            }
            Ok(s)
        });
        let mut st = self.lock();
        let s = match spawned {
            Ok(s) => s,
            Err(e) => {
                self.finish_pending(&mut st, None);
                return Err(err(Code::UNKNOWN, format!("create {}: {e:#}", req.id)));
            }
        };
        let root_for_oom = root.clone();
        let mut init = Proc::new(spec.clone());
        init.pid = s.pid;
        init.pidfd = s.pidfd;
        init.io = io;
        st.tasks.insert(
            req.id.clone(),
            Task_ {
                bundle: req.bundle.clone(),
                root,
                init,
                started: false,
                execs: HashMap::new(),
                shared_pidns,
                rootfs_mounted: !rootfs.is_empty(),
            },
        );
        self.events.publish(ev::TaskCreate {
            container_id: req.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            io: MessageField::some(ev::TaskIO {
                stdin: spec.stdin,
                stdout: spec.stdout,
                stderr: spec.stderr,
                terminal: spec.terminal,
                ..Default::default()
            }),
            pid: s.pid as u32,
            ..Default::default()
        });
        self.finish_pending(&mut st, Some(s.pid));
        drop(st);
        if let Some(oom) = &self.oom {
            match Container::load(&root_for_oom, &req.id).and_then(|c| c.oom_watch()) {
                Ok(Some(w)) => oom.add(req.id.clone(), w),
                Ok(None) => {}
                Err(e) => log::warn!("{}: no OOM events: {e}", req.id),
            }
        }
        Ok(api::CreateTaskResponse {
            pid: s.pid as u32,
            ..Default::default()
        })
    }

    fn start(&self, req: api::StartRequest) -> ttrpc::Result<api::StartResponse> {
        if req.exec_id.is_empty() {
            // Under the lock, so that the init's exit (which needs it) is
            // published after TaskStart.
            let mut st = self.lock();
            let t = self.task(&mut st, &req.id)?;
            if t.started {
                return Err(err(Code::FAILED_PRECONDITION, "already started"));
            }
            let c = Container::load(&t.root, &req.id).map_err(lib_err)?;
            for w in c.start().map_err(lib_err)? {
                log::warn!("{}: {w}", req.id);
            }
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
        let (root, process, spec) = {
            let mut st = self.lock();
            let t = self.task(&mut st, &req.id)?;
            if t.init.exit.is_some() {
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
            let spec = e.proc.stdio.clone();
            st.pending += 1;
            (root, process, spec)
        };
        let result = self.exec(&req.id, root, process, &spec);
        let mut st = self.lock();
        let (s, io) = match result {
            Ok(r) => r,
            Err(e) => {
                self.finish_pending(&mut st, None);
                return Err(e);
            }
        };
        let Some(e) = st
            .tasks
            .get_mut(&req.id)
            .and_then(|t| t.execs.get_mut(&req.exec_id))
        else {
            self.finish_pending(&mut st, None);
            return Err(not_found(&format!("process {}", req.exec_id)));
        };
        e.proc.pid = s.pid;
        e.proc.pidfd = s.pidfd;
        e.proc.io = io;
        self.events.publish(ev::TaskExecStarted {
            container_id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            pid: s.pid as u32,
            ..Default::default()
        });
        self.finish_pending(&mut st, Some(s.pid));
        Ok(api::StartResponse {
            pid: s.pid as u32,
            ..Default::default()
        })
    }

    fn exec(
        &self,
        id: &str,
        root: PathBuf,
        process: Box<libkeel::oci_spec::runtime::Process>,
        spec: &stdio::Spec,
    ) -> ttrpc::Result<(zygote::Spawned, stdio::Io)> {
        let prepared = stdio::prepare(spec, id, &self.namespace)
            .map_err(|e| err(Code::INTERNAL, format!("stdio: {e:#}")))?;
        let request = Request::Exec {
            id: id.to_string(),
            root,
            process,
            fds: Fds {
                stdio: prepared.stdio.is_some(),
                console: prepared.console_socket.is_some(),
            },
        };
        let mut fds: Vec<&OwnedFd> = prepared.stdio.iter().flatten().collect();
        if let Some((_, theirs)) = &prepared.console_socket {
            fds.push(theirs);
        }
        let s = self
            .zygote
            .call(&request, &fds)
            .map_err(|e| err(Code::UNKNOWN, format!("exec in {id}: {e:#}")))?;
        let mut io = prepared.io;
        if let Some((ours, _)) = &prepared.console_socket {
            io.attach_console(spec, ours)
                .map_err(|e| err(Code::INTERNAL, format!("{e:#}")))?;
        }
        Ok((s, io))
    }

    fn delete(&self, req: api::DeleteRequest) -> ttrpc::Result<api::DeleteResponse> {
        let mut st = self.lock();
        let t = self.task(&mut st, &req.id)?;
        if !req.exec_id.is_empty() {
            let e = t
                .execs
                .get(&req.exec_id)
                .ok_or_else(|| not_found(&format!("process {}", req.exec_id)))?;
            if e.proc.pid != 0 && e.proc.exit.is_none() {
                return Err(err(Code::FAILED_PRECONDITION, "process is running"));
            }
            let exit = e.proc.exit.clone();
            let pid = e.proc.pid;
            t.execs.remove(&req.exec_id);
            return Ok(delete_response(pid, exit));
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
        let pid = t.init.pid;
        // A created task deleted before start: its init was killed above.
        let exit = t.init.exit.clone().or_else(|| {
            Some(Exit {
                status: 128 + 9,
                at: now(),
            })
        });
        t.init.io.close();
        st.tasks.remove(&req.id);
        let resp = delete_response(pid, exit);
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

/// Whether config.json gives the container a new pid namespace.
fn pid_namespace_is_new(bundle: &str) -> bool {
    let Ok(spec) =
        libkeel::oci_spec::runtime::Spec::load(PathBuf::from(bundle).join("config.json"))
    else {
        return true;
    };
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter().any(|n| {
                n.typ() == libkeel::oci_spec::runtime::LinuxNamespaceType::Pid && n.path().is_none()
            })
        })
}

/// `Any` carrying JSON (containerd's typeurl for the runtime-spec types).
fn from_json_any<T: serde::de::DeserializeOwned>(any: &Any, what: &str) -> ttrpc::Result<T> {
    serde_json::from_slice(&any.value)
        .map_err(|e| err(Code::INVALID_ARGUMENT, format!("{what}: {e}")))
}

impl Task for Service {
    fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let inner = &self.inner;
        let mut st = inner.lock();
        let t = inner.task(&mut st, &req.id)?;
        let (root, bundle, started) = (t.root.clone(), t.bundle.clone(), t.started);
        let p = inner.proc(&mut st, &req.id, &req.exec_id)?;
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

    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        self.inner.create(req)
    }

    fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        self.inner.start(req)
    }

    fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        self.inner.delete(req)
    }

    fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        let inner = &self.inner;
        let mut st = inner.lock();
        let t = inner.task(&mut st, &req.id)?;
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

    fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<Empty> {
        let inner = &self.inner;
        let mut st = inner.lock();
        let t = inner.task(&mut st, &req.id)?;
        Container::load(&t.root, &req.id)
            .and_then(|c| c.pause())
            .map_err(lib_err)?;
        inner.events.publish(ev::TaskPaused {
            container_id: req.id,
            ..Default::default()
        });
        Ok(Empty::new())
    }

    fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<Empty> {
        let inner = &self.inner;
        let mut st = inner.lock();
        let t = inner.task(&mut st, &req.id)?;
        Container::load(&t.root, &req.id)
            .and_then(|c| c.resume())
            .map_err(lib_err)?;
        inner.events.publish(ev::TaskResumed {
            container_id: req.id,
            ..Default::default()
        });
        Ok(Empty::new())
    }

    fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: api::CheckpointTaskRequest,
    ) -> TtrpcResult<Empty> {
        Err(err(
            Code::UNIMPLEMENTED,
            "keel does not implement checkpoint yet",
        ))
    }

    fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<Empty> {
        let inner = &self.inner;
        let mut st = inner.lock();
        let t = inner.task(&mut st, &req.id)?;
        let signal = libkeel::Signal::try_from(req.signal as i32)
            .map_err(|_| err(Code::INVALID_ARGUMENT, format!("signal {}", req.signal)))?;
        if req.exec_id.is_empty() {
            if t.init.exit.is_some() && !req.all {
                return Err(not_found("process already finished"));
            }
            let c = Container::load(&t.root, &req.id).map_err(lib_err)?;
            return match c.kill(signal, req.all) {
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
            Some(fd) if e.proc.exit.is_none() => zygote::pidfd_kill(fd, signal as i32)
                .map_err(|e| err(Code::UNKNOWN, format!("kill: {e}")))?,
            _ if e.proc.pid == 0 => {
                return Err(err(Code::FAILED_PRECONDITION, "process not started"))
            }
            _ => return Err(not_found("process already finished")),
        }
        Ok(Empty::new())
    }

    fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<Empty> {
        let inner = &self.inner;
        let mut process: libkeel::oci_spec::runtime::Process =
            from_json_any(req.spec.get_or_default(), "exec spec")?;
        process.set_terminal(Some(req.terminal));
        let mut st = inner.lock();
        let t = inner.task(&mut st, &req.id)?;
        if t.execs.contains_key(&req.exec_id) {
            return Err(err(
                Code::ALREADY_EXISTS,
                format!("process {} exists", req.exec_id),
            ));
        }
        if t.init.exit.is_some() {
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
        inner.events.publish(ev::TaskExecAdded {
            container_id: req.id,
            exec_id: req.exec_id,
            ..Default::default()
        });
        Ok(Empty::new())
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: api::ResizePtyRequest) -> TtrpcResult<Empty> {
        let inner = &self.inner;
        let mut st = inner.lock();
        let p = inner.proc(&mut st, &req.id, &req.exec_id)?;
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

    fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<Empty> {
        let inner = &self.inner;
        let mut st = inner.lock();
        let p = inner.proc(&mut st, &req.id, &req.exec_id)?;
        if req.stdin {
            p.io.close_stdin();
        }
        Ok(Empty::new())
    }

    fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<Empty> {
        let inner = &self.inner;
        let resources: libkeel::oci_spec::runtime::LinuxResources =
            from_json_any(req.resources.get_or_default(), "resources")?;
        let mut st = inner.lock();
        let t = inner.task(&mut st, &req.id)?;
        let warnings = Container::load(&t.root, &req.id)
            .and_then(|c| c.update(&resources))
            .map_err(lib_err)?;
        for w in warnings {
            log::warn!("{}: {w}", req.id);
        }
        Ok(Empty::new())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        let inner = &self.inner;
        let mut st = inner.lock();
        loop {
            let p = inner.proc(&mut st, &req.id, &req.exec_id)?;
            if let Some(e) = &p.exit {
                return Ok(api::WaitResponse {
                    exit_status: e.status,
                    exited_at: MessageField::some(e.at.clone()),
                    ..Default::default()
                });
            }
            st = inner.exited.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let inner = &self.inner;
        let root = {
            let mut st = inner.lock();
            inner.task(&mut st, &req.id)?.root.clone()
        };
        let stats = Container::load(&root, &req.id)
            .and_then(|c| c.stats())
            .map_err(lib_err)?;
        let any = crate::metrics::to_any(&stats, inner.v2_host)
            .map_err(|e| err(Code::INTERNAL, format!("encode metrics: {e}")))?;
        Ok(api::StatsResponse {
            stats: MessageField::some(any),
            ..Default::default()
        })
    }

    fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let inner = &self.inner;
        let pid = inner.lock().tasks.get(&req.id).map_or(0, |t| t.init.pid);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: pid as u32,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: api::ShutdownRequest) -> TtrpcResult<Empty> {
        let inner = &self.inner;
        if !inner.lock().tasks.is_empty() {
            return Ok(Empty::new());
        }
        inner.events.flush();
        inner.exit_signal.signal();
        Ok(Empty::new())
    }
}
