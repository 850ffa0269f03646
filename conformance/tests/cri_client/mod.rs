//! The CRI client side of the CRI suite, shared by tests/cri.rs and
//! examples/cri_bench.rs: a kubelet-like client of one CRI daemon
//! (keel_conformance::cri) and the pods it makes.

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use keel_conformance::cri::{CriDaemon, BUSYBOX};
use keel_conformance::engines::Outcome;
use keel_conformance::{fail, wait_until, Runtime};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

const SEC10: Duration = Duration::from_secs(10);

/// The daemon of this file and its handlers, or why there is none.
pub struct Fixture {
    pub daemon: Mutex<CriDaemon>,
    pub socket: std::path::PathBuf,
    pub handlers: Vec<Runtime>,
}

/// A CRI client on its own runtime.
pub struct Cri {
    pub f: Arc<Fixture>,
    pub rt: tokio::runtime::Runtime,
    pub rs: RuntimeServiceClient<Channel>,
    pub is: ImageServiceClient<Channel>,
}

impl Cri {
    pub fn connect(f: &Arc<Fixture>) -> Cri {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let socket = f.socket.clone();
        let channel = rt
            .block_on(async {
                Endpoint::try_from("http://[::]:50051")?
                    .timeout(Duration::from_secs(60))
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let socket = socket.clone();
                        async move {
                            let s = tokio::net::UnixStream::connect(socket).await?;
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                        }
                    }))
                    .await
            })
            .expect("connect to the CRI socket");
        Cri {
            f: Arc::clone(f),
            rt,
            rs: RuntimeServiceClient::new(channel.clone()),
            is: ImageServiceClient::new(channel),
        }
    }

    pub fn rs(&self) -> RuntimeServiceClient<Channel> {
        self.rs.clone()
    }

    /// Runs one call to completion.
    pub fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, Outcome> {
        self.rt
            .block_on(fut)
            .map(tonic::Response::into_inner)
            .map_err(|s| Outcome::Fail(format!("{what}: {:?}: {}", s.code(), s.message())))
    }

    pub fn status(&self, id: &str) -> Result<cri::ContainerStatus, Outcome> {
        let req = cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        self.call("ContainerStatus", self.rs().container_status(req))?
            .status
            .ok_or_else(|| Outcome::Fail("ContainerStatus without a status".into()))
    }

    pub fn exec(
        &self,
        id: &str,
        cmd: &[&str],
        timeout: i64,
    ) -> Result<cri::ExecSyncResponse, Outcome> {
        let req = cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout,
        };
        self.call("ExecSync", self.rs().exec_sync(req))
    }

    /// ExecSync of `sh -c script`: its stdout, failing unless it exits 0.
    pub fn sh(&self, id: &str, script: &str) -> Result<String, Outcome> {
        let r = self.exec(id, &["sh", "-c", script], 30)?;
        if r.exit_code != 0 {
            fail!(
                "exec {script:?}: exit {}: {}",
                r.exit_code,
                String::from_utf8_lossy(&r.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&r.stdout).into_owned())
    }

    /// Waits until container `id` has exited; its status then.
    pub fn wait_exited(&self, id: &str) -> Result<cri::ContainerStatus, Outcome> {
        let mut last = None;
        wait_until(SEC10, || {
            last = self.status(id).ok();
            last.as_ref()
                .is_some_and(|s| s.state == cri::ContainerState::ContainerExited as i32)
        });
        match last {
            Some(s) if s.state == cri::ContainerState::ContainerExited as i32 => Ok(s),
            s => fail!("container {id} did not exit: {s:?}"),
        }
    }
}

pub static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A running pod sandbox, stopped and removed on drop.
pub struct Pod<'a> {
    pub cri: &'a Cri,
    pub id: String,
    pub config: cri::PodSandboxConfig,
    /// Its cgroup parent, relative to each hierarchy.
    pub cgroup_parent: String,
}

/// A pod config as the kubelet writes one: unique name, a log directory,
/// a cgroup parent under the suite's, the container pid namespace mode.
pub fn pod_config(f: &Fixture, name: &str) -> cri::PodSandboxConfig {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let name = format!("{name}-{n}");
    let cgroup_parent = format!(
        "/{}/{name}",
        f.daemon
            .lock()
            .map(|d| d.cgroup_root.clone())
            .unwrap_or_default()
    );
    let logs = f
        .daemon
        .lock()
        .map(|d| d.logs.join(&name))
        .unwrap_or_default();
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.clone(),
            uid: format!("uid-{name}"),
            namespace: "keel-test".into(),
            attempt: 0,
        }),
        hostname: name,
        log_directory: logs.to_string_lossy().into_owned(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent,
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    pid: cri::NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl<'a> Pod<'a> {
    pub fn run(
        cri: &'a Cri,
        handler: &str,
        config: cri::PodSandboxConfig,
    ) -> Result<Pod<'a>, Outcome> {
        let req = cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        };
        let id = cri
            .call("RunPodSandbox", cri.rs().run_pod_sandbox(req))?
            .pod_sandbox_id;
        let cgroup_parent = config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default();
        Ok(Pod {
            cri,
            id,
            config,
            cgroup_parent,
        })
    }

    /// A container config running `cmd` in busybox, logging to <name>.log.
    pub fn container(&self, name: &str, cmd: &[&str]) -> cri::ContainerConfig {
        let pid = self
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone());
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: BUSYBOX.into(),
                ..Default::default()
            }),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            labels: [("keel-test/name".to_string(), name.to_string())].into(),
            log_path: format!("{name}.log"),
            linux: Some(cri::LinuxContainerConfig {
                resources: None,
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: pid,
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    pub fn create(&self, config: cri::ContainerConfig) -> Result<String, Outcome> {
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: self.id.clone(),
            config: Some(config),
            sandbox_config: Some(self.config.clone()),
        };
        Ok(self
            .cri
            .call("CreateContainer", self.cri.rs().create_container(req))?
            .container_id)
    }

    pub fn start(&self, id: &str) -> Result<(), Outcome> {
        let req = cri::StartContainerRequest {
            container_id: id.into(),
        };
        self.cri
            .call("StartContainer", self.cri.rs().start_container(req))
            .map(drop)
    }

    /// Creates and starts a container of `cmd`; its id.
    pub fn spawn(&self, name: &str, cmd: &[&str]) -> Result<String, Outcome> {
        self.spawn_with(name, cmd, |_| {})
    }

    /// [`Pod::spawn`] of a config `edit` changes first.
    pub fn spawn_with(
        &self,
        name: &str,
        cmd: &[&str],
        edit: impl FnOnce(&mut cri::ContainerConfig),
    ) -> Result<String, Outcome> {
        let mut config = self.container(name, cmd);
        edit(&mut config);
        let id = self.create(config)?;
        self.start(&id)?;
        Ok(id)
    }

    /// Where container `name`'s CRI log goes.
    pub fn log_path(&self, name: &str) -> std::path::PathBuf {
        std::path::Path::new(&self.config.log_directory).join(format!("{name}.log"))
    }

    pub fn status(&self) -> Result<cri::PodSandboxStatusResponse, Outcome> {
        let req = cri::PodSandboxStatusRequest {
            pod_sandbox_id: self.id.clone(),
            verbose: true,
        };
        self.cri
            .call("PodSandboxStatus", self.cri.rs().pod_sandbox_status(req))
    }

    /// The sandbox (pause) process's pid, from the verbose status.
    pub fn pause_pid(&self) -> Result<i32, Outcome> {
        let info = self.status()?.info.remove("info").unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&info)
            .map_err(|e| Outcome::Fail(format!("PodSandboxStatus info: {e}: {info}")))?;
        match v["pid"].as_i64() {
            Some(p) if p > 0 => Ok(p as i32),
            _ => fail!("no pid in the sandbox's info: {info}"),
        }
    }

    pub fn stop(&self) -> Result<(), Outcome> {
        let req = cri::StopPodSandboxRequest {
            pod_sandbox_id: self.id.clone(),
        };
        self.cri
            .call("StopPodSandbox", self.cri.rs().stop_pod_sandbox(req))
            .map(drop)
    }

    /// Stops and removes the pod, then checks it left nothing: no shim,
    /// no mount in containerd's namespace, no cgroup under its parent.
    pub fn remove(mut self) -> Result<(), Outcome> {
        let id = std::mem::take(&mut self.id);
        remove_pod(self.cri, &id)?;
        let mut leaks = Vec::new();
        wait_until(Duration::from_secs(5), || {
            leaks = Vec::new();
            for pid in CriDaemon::pids_with_arg(&id) {
                leaks.push(format!("process {pid} names the sandbox"));
            }
            if let Ok(d) = self.cri.f.daemon.lock() {
                leaks.extend(d.mounts_mentioning(&id));
            }
            for c in CriDaemon::cgroups_below(&self.cgroup_parent) {
                leaks.push(format!("cgroup {}", c.display()));
            }
            leaks.is_empty()
        });
        if !leaks.is_empty() {
            fail!("pod {id} leaked:\n{}", leaks.join("\n"));
        }
        Ok(())
    }
}

pub fn remove_pod(cri: &Cri, id: &str) -> Result<(), Outcome> {
    let stop = cri::StopPodSandboxRequest {
        pod_sandbox_id: id.into(),
    };
    cri.call("StopPodSandbox", cri.rs().stop_pod_sandbox(stop))?;
    let rm = cri::RemovePodSandboxRequest {
        pod_sandbox_id: id.into(),
    };
    cri.call("RemovePodSandbox", cri.rs().remove_pod_sandbox(rm))
        .map(drop)
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        if !self.id.is_empty() {
            let _ = remove_pod(self.cri, &self.id);
        }
    }
}
