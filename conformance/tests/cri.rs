//! Kubernetes' view: containerd 1.6's CRI plugin (a private daemon, see
//! keel_conformance::cri) driven over CRI v1 gRPC, as the kubelet drives
//! it, with three runtime handlers: `runc` (the reference), `keel` (keel's
//! shim) and `keel-cli` (the runc shim running the keel binary). Every
//! scenario runs under each handler, runc first; keel passes only where it
//! sees what runc saw. One daemon serves the whole file (started on first
//! use, stopped at exit); each scenario is its own test and makes its own
//! pods, which it removes and checks for leaks.
//!
//! The client is the `k8s-cri` crate (tonic/prost) on a current-thread
//! tokio runtime per test.

mod cri_client;

use cri_client::{pod_config, Cri, Fixture, Pod, SEQ};
use k8s_cri::v1 as cri;
use keel_conformance::cri::{handlers, unavailable, CriDaemon, BUSYBOX};
use keel_conformance::engines::{Outcome, Report, Step};
use keel_conformance::shared::Shared;
use keel_conformance::wsstream::{connect_in_netns, WsConn};
use keel_conformance::{fail, wait_until, Runtime};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SEC10: Duration = Duration::from_secs(10);

/// The daemon most scenarios share, and the one the fault scenarios kill
/// and restart (one at a time: [`FAULT_LOCK`]); each started on first use
/// and stopped at exit.
static SHARED: Shared<Fixture> = Shared::new();
static FAULTS: Shared<Fixture> = Shared::new();
static FAULT_LOCK: Mutex<()> = Mutex::new(());

/// The daemon of `cell`; None (with the reason printed) when this host
/// cannot run the suite.
fn fixture(cell: &'static Shared<Fixture>, name: &str, test: &str) -> Option<Arc<Fixture>> {
    if let Some(why) = unavailable() {
        eprintln!("SKIPPED cri::{test}: {why}");
        return None;
    }
    Some(cell.get("CRI daemon", || {
        let handlers = handlers()?;
        let daemon = CriDaemon::start(&handlers, name)?;
        Ok(Fixture {
            socket: daemon.socket.clone(),
            daemon: Mutex::new(daemon),
            handlers,
        })
    }))
}

/// Runs `body` as scenario `name` under every handler (see the module doc).
fn scenario(test: &str, body: impl Fn(&Fixture, &Cri, &Runtime) -> Step) {
    let Some(f) = fixture(&SHARED, "shared", test) else {
        return;
    };
    let cri = Cri::connect(&f);
    let mut r = Report::new("cri");
    r.scenario(test, &f.handlers, |rt| body(&f, &cri, rt));
    r.finish();
}

/// Which runtime ran task `id`: the keel shim, or the runc shim with
/// which binary; fails if it is not what `rt` names.
fn check_handler(f: &Fixture, id: &str, rt: &Runtime) -> Result<(), Outcome> {
    let d = f
        .daemon
        .lock()
        .map_err(|_| Outcome::Fail("poisoned".into()))?;
    let opts = std::fs::read_to_string(d.bundle(id).join("options.json")).unwrap_or_default();
    let shim = CriDaemon::pids_with_arg(id)
        .into_iter()
        .filter_map(|p| std::fs::read(format!("/proc/{p}/cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).into_owned())
        .find(|c| c.contains("containerd-shim-"))
        .unwrap_or_default();
    let shim = shim.split('\0').next().unwrap_or_default();
    let bin = rt.bin.to_string_lossy();
    let ok = match rt.name {
        "keel" => shim.ends_with("containerd-shim-keel-v2"),
        _ => shim.ends_with("containerd-shim-runc-v2") && opts.contains(&*bin),
    };
    if !ok {
        fail!(
            "task {id} is not run by {}: shim {shim:?}, options {opts:?}",
            rt.name
        );
    }
    Ok(())
}

#[test]
fn pod_sandbox_lifecycle() {
    scenario("pod_sandbox_lifecycle", |f, cri, rt| {
        // The imported image is the CRI's (ImageService).
        let req = cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: BUSYBOX.into(),
                ..Default::default()
            }),
            verbose: false,
        };
        if cri
            .call("ImageStatus", cri.is.clone().image_status(req))?
            .image
            .is_none()
        {
            fail!("ImageStatus knows no {BUSYBOX}");
        }
        let pod = Pod::run(cri, rt.name, pod_config(f, "life"))?;
        check_handler(f, &pod.id, rt)?;
        let st = pod.status()?;
        let status = st.status.unwrap_or_default();
        let mut seen = vec![format!(
            "{:?}",
            cri::PodSandboxState::try_from(status.state).unwrap_or_default()
        )];
        let ip = status.network.map(|n| n.ip).unwrap_or_default();
        if !ip.starts_with("10.88.7.") {
            fail!("pod IP {ip:?} is not in the CNI subnet");
        }
        if status.runtime_handler != rt.name {
            fail!("runtime_handler {:?}", status.runtime_handler);
        }
        let list = cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                id: pod.id.clone(),
                ..Default::default()
            }),
        };
        let items = cri
            .call("ListPodSandbox", cri.rs().list_pod_sandbox(list))?
            .items;
        seen.push(format!("listed {}", items.len()));
        pod.stop()?;
        let st = pod.status()?.status.unwrap_or_default();
        seen.push(format!(
            "{:?}",
            cri::PodSandboxState::try_from(st.state).unwrap_or_default()
        ));
        let id = pod.id.clone();
        pod.remove()?;
        let gone = cri::PodSandboxStatusRequest {
            pod_sandbox_id: id,
            verbose: false,
        };
        match cri.rt.block_on(cri.rs().pod_sandbox_status(gone)) {
            Err(s) => seen.push(format!("after remove: {:?}", s.code())),
            Ok(r) => fail!("the removed pod still has a status: {:?}", r.into_inner()),
        }
        Ok(seen.join(", "))
    });
}

/// The state, exit code and reason of a container, as the kubelet reads
/// them; fails on timestamps out of order. (containerd stamps `started_at`
/// when the runtime's start returns and `finished_at` when the shim reaps
/// the process: one that exits at once may finish "before" it started.)
fn outcome(s: &cri::ContainerStatus) -> Result<String, Outcome> {
    if s.created_at <= 0 || s.started_at < s.created_at || s.finished_at < s.created_at {
        fail!(
            "timestamps out of order: created {} started {} finished {}",
            s.created_at,
            s.started_at,
            s.finished_at
        );
    }
    let name = s
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    Ok(format!("{name}: exit {} {}", s.exit_code, s.reason))
}

#[test]
fn container_lifecycle() {
    scenario("container_lifecycle", |f, cri, rt| {
        let pod = Pod::run(cri, rt.name, pod_config(f, "ctr"))?;
        let mut seen = Vec::new();
        let done = pod.spawn("done", &["sh", "-c", "echo hi"])?;
        let error = pod.spawn("error", &["sh", "-c", "exit 3"])?;
        // pid 1 of its pid namespace with SIGTERM ignored: killed after
        // the grace period.
        let stubborn = pod.spawn(
            "stubborn",
            &["sh", "-c", "trap '' TERM; while :; do sleep 1; done"],
        )?;
        let graceful = pod.spawn(
            "graceful",
            &["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
        )?;
        check_handler(f, &pod.id, rt)?;
        for id in [&done, &error] {
            seen.push(outcome(&cri.wait_exited(id)?)?);
        }
        let running = cri.status(&stubborn)?;
        if running.state != cri::ContainerState::ContainerRunning as i32 || running.started_at <= 0
        {
            fail!("stubborn is not running: {running:?}");
        }
        // ListContainers: by pod, by state, by label-less id.
        let list = |filter: cri::ContainerFilter| -> Result<Vec<String>, Outcome> {
            let req = cri::ListContainersRequest {
                filter: Some(filter),
            };
            let mut names: Vec<String> = cri
                .call("ListContainers", cri.rs().list_containers(req))?
                .containers
                .into_iter()
                .filter_map(|c| c.metadata.map(|m| m.name))
                .collect();
            names.sort();
            Ok(names)
        };
        let in_pod = list(cri::ContainerFilter {
            pod_sandbox_id: pod.id.clone(),
            ..Default::default()
        })?;
        let exited = list(cri::ContainerFilter {
            pod_sandbox_id: pod.id.clone(),
            state: Some(cri::ContainerStateValue {
                state: cri::ContainerState::ContainerExited as i32,
            }),
            ..Default::default()
        })?;
        let by_id = list(cri::ContainerFilter {
            id: error.clone(),
            ..Default::default()
        })?;
        let by_label = list(cri::ContainerFilter {
            pod_sandbox_id: pod.id.clone(),
            label_selector: [("keel-test/name".to_string(), "graceful".to_string())].into(),
            ..Default::default()
        })?;
        seen.push(format!(
            "pod {in_pod:?} exited {exited:?} id {by_id:?} label {by_label:?}"
        ));
        for (id, grace) in [(&stubborn, 1), (&graceful, 10)] {
            let req = cri::StopContainerRequest {
                container_id: id.to_string(),
                timeout: grace,
            };
            cri.call("StopContainer", cri.rs().stop_container(req))?;
            seen.push(outcome(&cri.wait_exited(id)?)?);
        }
        for id in [&done, &error, &stubborn, &graceful] {
            let req = cri::RemoveContainerRequest {
                container_id: id.to_string(),
            };
            cri.call("RemoveContainer", cri.rs().remove_container(req))?;
            if cri.status(id).is_ok() {
                fail!("container {id} still has a status after RemoveContainer");
            }
        }
        pod.remove()?;
        Ok(seen.join("; "))
    });
}

#[test]
fn exec_sync() {
    scenario("exec_sync", |f, cri, rt| {
        let pod = Pod::run(cri, rt.name, pod_config(f, "exec"))?;
        let id = pod.spawn("sleeper", &["sleep", "1000"])?;
        let r = cri.exec(&id, &["sh", "-c", "echo out; echo err >&2; exit 5"], 10)?;
        let mut seen = vec![format!(
            "exit {} stdout {:?} stderr {:?}",
            r.exit_code,
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        )];
        // The timeout is honoured: the call fails, and the process goes.
        let req = cri::ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["sleep".into(), "77".into()],
            timeout: 1,
        };
        match cri.rt.block_on(cri.rs().exec_sync(req)) {
            Err(s) if s.message().contains("timeout") => seen.push("timed out".into()),
            other => fail!("ExecSync past its timeout: {other:?}"),
        }
        let mut ps = String::new();
        wait_until(SEC10, || {
            ps = cri.sh(&id, "ps -o args").unwrap_or_default();
            !ps.contains("sleep 77")
        });
        if ps.contains("sleep 77") {
            fail!("the timed-out exec still runs:\n{ps}");
        }
        seen.push(cri.sh(&id, "id")?);
        pod.remove()?;
        Ok(seen.join("; "))
    });
}

/// `readlink /proc/self/ns/<ns>` for each of `nss`, one line each.
const NS_SCRIPT: &str =
    "for n in net ipc uts pid mnt; do readlink /proc/self/ns/$n; done; hostname";

/// Namespace links of process `pid` as the host sees them.
fn host_ns(pid: &str, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn pod_shares_namespaces() {
    scenario("pod_shares_namespaces", |f, cri, rt| {
        let pod = Pod::run(cri, rt.name, pod_config(f, "shared"))?;
        let pause = pod.pause_pid()?.to_string();
        let ids: Vec<String> = ["a", "b", "c"]
            .iter()
            .map(|n| pod.spawn(n, &["sleep", "1000"]))
            .collect::<Result<_, _>>()?;
        let views: Vec<Vec<String>> = ids
            .iter()
            .map(|id| {
                cri.sh(id, NS_SCRIPT)
                    .map(|o| o.lines().map(str::to_owned).collect())
            })
            .collect::<Result<_, _>>()?;
        let mut seen = Vec::new();
        for (i, ns) in ["net", "ipc", "uts", "pid", "mnt"].iter().enumerate() {
            let same = views.iter().all(|v| v.get(i) == views[0].get(i));
            let pause_ns = host_ns(&pause, ns);
            let as_pause = views.iter().all(|v| v.get(i) == Some(&pause_ns));
            seen.push(format!("{ns}: shared {same}, the pod's {as_pause}"));
        }
        seen.push(format!(
            "hostname {}",
            views[0].get(5).cloned().unwrap_or_default()
        ));
        let hostname = pod.config.hostname.clone();
        if views.iter().any(|v| v.get(5) != Some(&hostname)) {
            fail!("hostnames {views:?}, want {hostname}");
        }
        // IPC: the pod's /dev/shm is one.
        cri.sh(&ids[0], "echo shm-shared > /dev/shm/x")?;
        seen.push(cri.sh(&ids[2], "cat /dev/shm/x")?);
        pod.remove()?;
        // Hostnames differ by pod name: compare the rest.
        Ok(seen
            .into_iter()
            .filter(|s| !s.starts_with("hostname"))
            .collect::<Vec<_>>()
            .join("; "))
    });
}

/// A pod whose namespace options are `opts`.
fn pod_with_ns(f: &Fixture, name: &str, opts: cri::NamespaceOption) -> cri::PodSandboxConfig {
    let mut c = pod_config(f, name);
    if let Some(l) = c.linux.as_mut() {
        l.security_context = Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(opts),
            ..Default::default()
        });
    }
    c
}

#[test]
fn pid_namespace_modes() {
    scenario("pid_namespace_modes", |f, cri, rt| {
        let mut seen = Vec::new();
        let me = std::process::id().to_string();
        for (mode, label) in [
            (cri::NamespaceMode::Pod, "POD"),
            (cri::NamespaceMode::Container, "CONTAINER"),
            (cri::NamespaceMode::Node, "NODE"),
        ] {
            let opts = cri::NamespaceOption {
                pid: mode as i32,
                ..Default::default()
            };
            let pod = Pod::run(cri, rt.name, pod_with_ns(f, "pid", opts))?;
            let id = pod.spawn("c", &["sleep", "1000"])?;
            let pid1 = cri.sh(&id, "cat /proc/1/cmdline | tr '\\0' ' '")?;
            let ns = cri.sh(&id, "readlink /proc/self/ns/pid")?;
            let host = ns.trim() == host_ns(&me, "pid");
            let pid1 = if host { "(host's)".into() } else { pid1 };
            seen.push(format!(
                "{label}: pid 1 {}, host's pid ns {host}",
                pid1.trim()
            ));
            pod.remove()?;
        }
        Ok(seen.join("; "))
    });
}

#[test]
fn host_network_and_ipc() {
    scenario("host_network_and_ipc", |f, cri, rt| {
        let opts = cri::NamespaceOption {
            network: cri::NamespaceMode::Node as i32,
            ipc: cri::NamespaceMode::Node as i32,
            pid: cri::NamespaceMode::Container as i32,
            ..Default::default()
        };
        let mut config = pod_with_ns(f, "host", opts);
        // As the kubelet: a host-network pod has the node's UTS namespace,
        // where no runtime may set a hostname.
        config.hostname.clear();
        let pod = Pod::run(cri, rt.name, config)?;
        let id = pod.spawn("c", &["sleep", "1000"])?;
        let v: Vec<String> = cri.sh(&id, NS_SCRIPT)?.lines().map(str::to_owned).collect();
        let node = f
            .daemon
            .lock()
            .map(|d| d.pid().to_string())
            .unwrap_or_default();
        let seen = format!(
            "net is the node's {}, ipc is the node's {}",
            v.first() == Some(&host_ns(&node, "net")),
            v.get(1) == Some(&host_ns(&node, "ipc"))
        );
        pod.remove()?;
        Ok(seen)
    });
}

/// The container's Linux security context, made if missing.
fn sc(c: &mut cri::ContainerConfig) -> &mut cri::LinuxContainerSecurityContext {
    c.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}

/// The container's Linux resources, made if missing.
fn resources(c: &mut cri::ContainerConfig) -> &mut cri::LinuxContainerResources {
    c.linux
        .get_or_insert_with(Default::default)
        .resources
        .get_or_insert_with(Default::default)
}

/// (stream, tag, content) of each line of a CRI log, stdout's first (the
/// two streams are separate pipes: their interleaving is not ordered);
/// fails on a line not in the CRI format.
fn cri_log(path: &std::path::Path) -> Result<Vec<(String, String, String)>, Outcome> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = Vec::new();
    for l in text.lines() {
        let mut f = l.splitn(4, ' ');
        let (ts, stream, tag) = (f.next(), f.next(), f.next());
        let content = f.next().unwrap_or_default();
        let ok_ts = ts.is_some_and(|t| t.len() > 20 && t.as_bytes().get(10) == Some(&b'T'));
        let ok_stream = matches!(stream, Some("stdout") | Some("stderr"));
        let ok_tag = matches!(tag, Some("F") | Some("P"));
        if !(ok_ts && ok_stream && ok_tag) {
            fail!("not a CRI log line: {l:?}");
        }
        lines.push((
            stream.unwrap_or_default().to_string(),
            tag.unwrap_or_default().to_string(),
            content.to_string(),
        ));
    }
    lines.sort_by_key(|l| l.0 != "stdout");
    Ok(lines)
}

#[test]
fn logs_in_cri_format() {
    scenario("logs_in_cri_format", |f, cri, rt| {
        let pod = Pod::run(cri, rt.name, pod_config(f, "logs"))?;
        // A line past containerd's 16 KiB limit comes as a partial then a
        // full entry.
        let long = "head -c 20000 /dev/zero | tr '\\0' a; echo";
        let id = pod.spawn(
            "once",
            &[
                "sh",
                "-c",
                &format!("echo out1; echo err1 >&2; {long}; echo out2"),
            ],
        )?;
        cri.wait_exited(&id)?;
        let mut seen: Vec<String> = cri_log(&pod.log_path("once"))?
            .into_iter()
            .map(|(s, t, c)| {
                let c = if c.len() > 40 {
                    format!("{}x{}", &c[..1], c.len())
                } else {
                    c
                };
                format!("{s} {t} {c}")
            })
            .collect();
        // ReopenContainerLog: the kubelet rotated the file; the container
        // writes on into a new one.
        let ticker = pod.spawn(
            "ticker",
            &["sh", "-c", "while :; do echo tick; sleep 0.1; done"],
        )?;
        let path = pod.log_path("ticker");
        if !wait_until(SEC10, || path.metadata().is_ok_and(|m| m.len() > 0)) {
            fail!("nothing logged to {}", path.display());
        }
        std::fs::rename(&path, path.with_extension("log.1"))
            .map_err(|e| Outcome::Fail(format!("rotate: {e}")))?;
        let req = cri::ReopenContainerLogRequest {
            container_id: ticker.clone(),
        };
        cri.call("ReopenContainerLog", cri.rs().reopen_container_log(req))?;
        if !wait_until(SEC10, || path.metadata().is_ok_and(|m| m.len() > 0)) {
            fail!("nothing logged to the reopened {}", path.display());
        }
        let fresh = cri_log(&path)?;
        seen.push(format!("reopened: {:?}", fresh.first()));
        pod.remove()?;
        Ok(seen.join("; "))
    });
}

/// Whether an optional UInt64Value is set and above zero.
fn positive(v: &Option<cri::UInt64Value>) -> bool {
    v.as_ref().is_some_and(|v| v.value > 0)
}

#[test]
fn container_and_pod_stats() {
    scenario("container_and_pod_stats", |f, cri, rt| {
        let pod = Pod::run(cri, rt.name, pod_config(f, "stats"))?;
        let busy = pod.spawn("busy", &["sh", "-c", "yes > /dev/null"])?;
        let idle = pod.spawn("idle", &["sleep", "1000"])?;
        let mut seen = Vec::new();
        let mut st = None;
        // The CPU usage shows once the cgroup has counted some.
        wait_until(SEC10, || {
            let req = cri::ContainerStatsRequest {
                container_id: busy.clone(),
            };
            st = cri
                .call("ContainerStats", cri.rs().container_stats(req))
                .ok()
                .and_then(|r| r.stats);
            st.as_ref()
                .and_then(|s| s.cpu.as_ref())
                .is_some_and(|c| positive(&c.usage_core_nano_seconds))
        });
        let st = st.unwrap_or_default();
        seen.push(format!(
            "cpu {} memory {} id {}",
            st.cpu
                .as_ref()
                .is_some_and(|c| positive(&c.usage_core_nano_seconds)),
            st.memory
                .as_ref()
                .is_some_and(|m| positive(&m.working_set_bytes)),
            st.attributes.as_ref().is_some_and(|a| a.id == busy)
        ));
        let req = cri::ListContainerStatsRequest {
            filter: Some(cri::ContainerStatsFilter {
                pod_sandbox_id: pod.id.clone(),
                ..Default::default()
            }),
        };
        let mut ids: Vec<String> = cri
            .call("ListContainerStats", cri.rs().list_container_stats(req))?
            .stats
            .into_iter()
            .filter_map(|s| s.attributes.and_then(|a| a.metadata).map(|m| m.name))
            .collect();
        ids.sort();
        seen.push(format!("listed {ids:?}"));
        let req = cri::PodSandboxStatsRequest {
            pod_sandbox_id: pod.id.clone(),
        };
        match cri.rt.block_on(cri.rs().pod_sandbox_stats(req)) {
            Ok(r) => {
                let linux = r
                    .into_inner()
                    .stats
                    .and_then(|s| s.linux)
                    .unwrap_or_default();
                seen.push(format!(
                    "pod stats: cpu {} containers {}",
                    linux
                        .cpu
                        .as_ref()
                        .is_some_and(|c| positive(&c.usage_core_nano_seconds)),
                    linux.containers.len()
                ));
            }
            Err(s) => seen.push(format!("pod stats: {:?}", s.code())),
        }
        let _ = idle;
        pod.remove()?;
        Ok(seen.join("; "))
    });
}

/// The first of `files` (paths relative to a hierarchy root) that exists
/// in cgroup `<parent>/<id>`, read.
fn cgroup_read(parent: &str, id: &str, files: &[&str]) -> String {
    let rel = format!("{}/{id}", parent.trim_start_matches('/'));
    for file in files {
        for root in keel_conformance::cgroup_tree::hierarchies() {
            let p = root.join(&rel).join(file);
            if let Ok(s) = std::fs::read_to_string(&p) {
                return s.trim().to_string();
            }
        }
    }
    String::new()
}

#[test]
fn update_container_resources() {
    scenario("update_container_resources", |f, cri, rt| {
        let pod = Pod::run(cri, rt.name, pod_config(f, "update"))?;
        let id = pod.spawn_with("c", &["sleep", "1000"], |c| {
            let r = resources(c);
            r.memory_limit_in_bytes = 256 << 20;
            r.cpu_period = 100_000;
            r.cpu_quota = 100_000;
        })?;
        let parent = pod.cgroup_parent.clone();
        // The v1 file, else the v2 one.
        let read = || {
            (
                cgroup_read(&parent, &id, &["memory.limit_in_bytes", "memory.max"]),
                cgroup_read(&parent, &id, &["cpu.cfs_quota_us", "cpu.max"]),
            )
        };
        let before = read();
        let req = cri::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                cpu_period: 100_000,
                cpu_quota: 50_000,
                ..Default::default()
            }),
            ..Default::default()
        };
        cri.call(
            "UpdateContainerResources",
            cri.rs().update_container_resources(req),
        )?;
        let after = read();
        if after.0.is_empty() || after == before {
            fail!("the cgroup did not change: {before:?} -> {after:?}");
        }
        pod.remove()?;
        Ok(format!("{before:?} -> {after:?}"))
    });
}

#[test]
fn oom_killed() {
    scenario("oom_killed", |f, cri, rt| {
        let pod = Pod::run(cri, rt.name, pod_config(f, "oom"))?;
        // dd's 64 MiB buffer against a 16 MiB limit, once the shim
        // watches for OOM: the runc shim starts watching only after the
        // runtime's start returns, and misses an OOM before (its reason is
        // then "Error"; keel's shim watches from create on).
        let id = pod.spawn_with(
            "hog",
            &[
                "sh",
                "-c",
                "sleep 1; exec dd if=/dev/zero of=/dev/null bs=64M count=1",
            ],
            |c| resources(c).memory_limit_in_bytes = 16 << 20,
        )?;
        let seen = outcome(&cri.wait_exited(&id)?)?;
        pod.remove()?;
        Ok(seen)
    });
}

#[test]
fn two_pods_over_the_cni_bridge() {
    scenario("two_pods_over_the_cni_bridge", |f, cri, rt| {
        let server = Pod::run(cri, rt.name, pod_config(f, "server"))?;
        let client = Pod::run(cri, rt.name, pod_config(f, "client"))?;
        server.spawn("httpd", &["httpd", "-f", "-p", "8080", "-h", "/etc"])?;
        let c = client.spawn("c", &["sleep", "1000"])?;
        let ip = server
            .status()?
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .unwrap_or_default();
        // (Debian's static busybox wget crashes in glibc's resolver: nc.)
        let get =
            format!("printf 'GET /passwd HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 8080 | tail -n 1");
        let mut got = Err(Outcome::Fail("not tried".into()));
        // httpd may not listen yet: a few bounded tries.
        wait_until(SEC10, || {
            got = cri.sh(&c, &get).and_then(|o| {
                if o.trim().is_empty() {
                    fail!("no answer from {ip}:8080");
                }
                Ok(o)
            });
            got.is_ok()
        });
        let body = got?;
        server.remove()?;
        client.remove()?;
        Ok(body)
    });
}

/// A change to a container config.
type Edit = Box<dyn Fn(&mut cri::ContainerConfig)>;

/// Runs one container per `(name, edit)` in one pod, each `script` under
/// `sh -c` to completion, and returns "name: exit N output" lines.
fn run_each(
    cri: &Cri,
    rt: &Runtime,
    pod: cri::PodSandboxConfig,
    cases: Vec<(&str, &str, Edit)>,
) -> Step {
    let pod = Pod::run(cri, rt.name, pod)?;
    let mut seen = Vec::new();
    for (name, script, edit) in cases {
        // Last lines on both streams tell the log is whole: an empty log was seen
        // twice (keel-cli, heavily loaded host) and this tells a log read
        // too early from output that never came.
        let script = format!("{script}; rc=$?; echo END; echo END >&2; exit $rc");
        let id = pod.spawn_with(name, &["sh", "-c", &script], |c| edit(c))?;
        let st = cri.wait_exited(&id)?;
        let mut out = Vec::new();
        let whole = wait_until(SEC10, || {
            out = cri_log(&pod.log_path(name))
                .unwrap_or_default()
                .into_iter()
                .map(|l| l.2)
                .collect();
            out.iter().filter(|l| *l == "END").count() == 2
        });
        if !whole {
            fail!(
                "{name}: exit {}, its log lacks the last line: {out:?}",
                st.exit_code
            );
        }
        out.retain(|l| l != "END");
        seen.push(format!("{name}: exit {} {}", st.exit_code, out.join(" | ")));
    }
    pod.remove()?;
    Ok(seen.join("\n"))
}

#[test]
fn security_run_as_user_and_groups() {
    scenario("security_run_as_user_and_groups", |f, cri, rt| {
        run_each(
            cri,
            rt,
            pod_config(f, "ids"),
            vec![
                (
                    "ids",
                    "id; touch /x 2>&1 || echo cannot-write-root",
                    Box::new(|c| {
                        let s = sc(c);
                        s.run_as_user = Some(cri::Int64Value { value: 1000 });
                        s.run_as_group = Some(cri::Int64Value { value: 2000 });
                        s.supplemental_groups = vec![3000, 4000];
                    }),
                ),
                (
                    "readonly-rootfs",
                    "touch /x 2>&1 || echo read-only; touch /dev/shm/y && echo shm-writable",
                    Box::new(|c| sc(c).readonly_rootfs = true),
                ),
            ],
        )
    });
}

#[test]
fn security_capabilities_and_no_new_privs() {
    scenario("security_capabilities_and_no_new_privs", |f, cri, rt| {
        let caps = "grep -E '^(Cap(Prm|Eff|Bnd|Inh|Amb)|NoNewPrivs)' /proc/self/status";
        run_each(
            cri,
            rt,
            pod_config(f, "caps"),
            vec![
                ("default", caps, Box::new(|_| {})),
                (
                    "add-drop",
                    caps,
                    Box::new(|c| {
                        sc(c).capabilities = Some(cri::Capability {
                            add_capabilities: vec!["NET_ADMIN".into(), "SYS_TIME".into()],
                            drop_capabilities: vec!["CHOWN".into(), "KILL".into()],
                            ..Default::default()
                        })
                    }),
                ),
                (
                    "drop-all",
                    &format!("{caps}; chown 1 /tmp 2>&1 || echo chown-denied"),
                    Box::new(|c| {
                        sc(c).capabilities = Some(cri::Capability {
                            drop_capabilities: vec!["ALL".into()],
                            ..Default::default()
                        })
                    }),
                ),
                (
                    "no-new-privs",
                    caps,
                    Box::new(|c| sc(c).no_new_privs = true),
                ),
            ],
        )
    });
}

#[test]
fn security_seccomp_profiles() {
    scenario("security_seccomp_profiles", |f, cri, rt| {
        // A Localhost profile of the test's own: mkdir denied with EPERM.
        let dir = f.daemon.lock().map(|d| d.dir.clone()).unwrap_or_default();
        let profile = dir.join("deny-mkdir.json");
        let json = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#;
        std::fs::write(&profile, json).map_err(|e| Outcome::Fail(format!("{e}")))?;
        let profile = profile.to_string_lossy().into_owned();
        let script = "grep -E '^Seccomp:' /proc/self/status; mkdir /tmp/d 2>&1 && echo made";
        let with = |t: cri::security_profile::ProfileType,
                    r: String|
         -> Box<dyn Fn(&mut cri::ContainerConfig)> {
            Box::new(move |c| {
                sc(c).seccomp = Some(cri::SecurityProfile {
                    profile_type: t as i32,
                    localhost_ref: r.clone(),
                })
            })
        };
        use cri::security_profile::ProfileType as P;
        run_each(
            cri,
            rt,
            pod_config(f, "seccomp"),
            vec![
                (
                    "runtime-default",
                    script,
                    with(P::RuntimeDefault, String::new()),
                ),
                ("unconfined", script, with(P::Unconfined, String::new())),
                ("localhost", script, with(P::Localhost, profile)),
            ],
        )
    });
}

#[test]
fn security_masked_and_readonly_paths() {
    scenario("security_masked_and_readonly_paths", |f, cri, rt| {
        run_each(
            cri,
            rt,
            pod_config(f, "paths"),
            vec![(
                "paths",
                "wc -c < /proc/keys; ls /proc/acpi | wc -l; \
                 echo x > /proc/sys/kernel/domainname 2>&1 || echo sys-read-only; \
                 cat /etc/hostname > /dev/null && echo hostname-readable",
                Box::new(|c| {
                    let s = sc(c);
                    s.masked_paths = vec!["/proc/keys".into(), "/proc/acpi".into()];
                    s.readonly_paths = vec!["/proc/sys".into()];
                }),
            )],
        )
    });
}

#[test]
fn security_namespaced_sysctls() {
    scenario("security_namespaced_sysctls", |f, cri, rt| {
        let mut pod = pod_config(f, "sysctl");
        if let Some(l) = pod.linux.as_mut() {
            l.sysctls = [
                ("net.ipv4.ip_unprivileged_port_start", "81"),
                ("kernel.shm_rmid_forced", "1"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        }
        run_each(
            cri,
            rt,
            pod,
            vec![(
                "sysctl",
                "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shm_rmid_forced",
                Box::new(|_| {}),
            )],
        )
    });
}

#[test]
fn security_privileged() {
    scenario("security_privileged", |_, _, _| {
        Err(Outcome::Skip(
            "privileged containers need the full bounding set, and this host's lacks \
             CAP_SYS_RESOURCE: no runtime can run one here"
                .into(),
        ))
    });
}

/// [`scenario`] on the faults daemon, one fault scenario at a time.
fn fault_scenario(test: &str, body: impl Fn(&Arc<Fixture>, &Cri, &Runtime) -> Step) {
    let Some(f) = fixture(&FAULTS, "faults", test) else {
        return;
    };
    let _one = FAULT_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let cri = Cri::connect(&f);
    let mut r = Report::new("cri");
    r.scenario(test, &f.handlers, |rt| body(&f, &cri, rt));
    r.finish();
}

fn state_name(s: i32) -> String {
    format!(
        "{:?}",
        cri::ContainerState::try_from(s).unwrap_or(cri::ContainerState::ContainerUnknown)
    )
}

#[test]
fn fault_containerd_restarted() {
    fault_scenario("fault_containerd_restarted", |f, cri, rt| {
        let pod = Pod::run(cri, rt.name, pod_config(f, "restart"))?;
        let id = pod.spawn("c", &["sleep", "1000"])?;
        f.daemon
            .lock()
            .map_err(|_| Outcome::Fail("poisoned".into()))?
            .restart()
            .map_err(|e| Outcome::Fail(format!("restart containerd: {e:#}")))?;
        // The client's channel reconnects once a call has failed, as the
        // kubelet's does.
        let version = || {
            let req = cri::VersionRequest {
                version: "v1".into(),
            };
            cri.call("Version", cri.rs().version(req)).is_ok()
        };
        if !wait_until(SEC10, version) {
            fail!("the CRI does not answer after the restart");
        }
        let mut seen = Vec::new();
        let list = cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                id: pod.id.clone(),
                ..Default::default()
            }),
        };
        let pods = cri.call("ListPodSandbox", cri.rs().list_pod_sandbox(list))?;
        seen.push(format!(
            "pods {:?}",
            pods.items
                .iter()
                .map(|p| cri::PodSandboxState::try_from(p.state).unwrap_or_default())
                .collect::<Vec<_>>()
        ));
        seen.push(format!("container {}", state_name(cri.status(&id)?.state)));
        seen.push(cri.sh(&id, "echo exec-after-restart")?.trim().to_string());
        let req = cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 1,
        };
        cri.call("StopContainer", cri.rs().stop_container(req))?;
        seen.push(outcome(&cri.wait_exited(&id)?)?);
        pod.remove()?;
        Ok(seen.join("; "))
    });
}

#[test]
fn fault_shim_killed() {
    fault_scenario("fault_shim_killed", |f, cri, rt| {
        let pod = Pod::run(cri, rt.name, pod_config(f, "shimkill"))?;
        let id = pod.spawn("c", &["sleep", "1000"])?;
        let shims: Vec<i32> = CriDaemon::pids_with_arg(&pod.id)
            .into_iter()
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("containerd-shim-"))
            })
            .collect();
        if shims.len() != 1 {
            fail!("want one shim for the pod, found {shims:?}");
        }
        // SAFETY: kill(2) of the shim of this test's pod.
        unsafe { libc::kill(shims[0], libc::SIGKILL) };
        let st = cri.wait_exited(&id)?;
        let mut seen = vec![format!(
            "container {} exit {}",
            state_name(st.state),
            st.exit_code
        )];
        // containerd marks the sandbox NOTREADY when it has handled the
        // dead shim's exits, which can come after the container's: wait for
        // it (bounded) so the state compared is where each handler settles.
        let notready = cri::PodSandboxState::SandboxNotready as i32;
        let mut ready = pod.status()?.status.map(|s| s.state).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(10);
        while ready != notready && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            ready = pod.status()?.status.map(|s| s.state).unwrap_or_default();
        }
        seen.push(format!(
            "pod {:?}",
            cri::PodSandboxState::try_from(ready).unwrap_or_default()
        ));
        pod.remove()?;
        Ok(seen.join("; "))
    });
}

#[test]
fn fault_fifty_pods_concurrently() {
    const PODS: usize = 50;
    const THREADS: usize = 10;
    fault_scenario("fault_fifty_pods_concurrently", |f, _, rt| {
        let failures = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let failures = &failures;
                s.spawn(move || {
                    let cri = Cri::connect(f);
                    let mut pods = Vec::new();
                    for _ in 0..PODS / THREADS {
                        let made = Pod::run(&cri, rt.name, pod_config(f, &format!("many{t}")))
                            .and_then(|p| p.spawn("c", &["sleep", "1000"]).map(|_| p));
                        match made {
                            Ok(p) => pods.push(p),
                            Err(Outcome::Fail(e)) => failures.lock().unwrap().push(e),
                            Err(_) => {}
                        }
                    }
                    for p in pods {
                        if let Err(Outcome::Fail(e)) = p.remove() {
                            failures.lock().unwrap().push(e);
                        }
                    }
                });
            }
        });
        let failures = failures.into_inner().unwrap_or_default();
        if !failures.is_empty() {
            fail!(
                "{} of {PODS} pods failed: {}",
                failures.len(),
                failures.join("\n")
            );
        }
        // Nothing of the 50 is left: no netns, sandbox mount, address.
        let d = f
            .daemon
            .lock()
            .map_err(|_| Outcome::Fail("poisoned".into()))?;
        let netns: Vec<String> = std::fs::read_dir(format!("/proc/{}/root/run/netns", d.pid()))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let mounts = d.mounts_mentioning("io.containerd");
        let addrs: Vec<String> = std::fs::read_dir(d.dir.join("ipam/keel-cri"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("10."))
            .collect();
        if !(netns.is_empty() && mounts.is_empty() && addrs.is_empty()) {
            fail!("left behind: netns {netns:?}, mounts {mounts:?}, addresses {addrs:?}");
        }
        Ok(format!("{PODS} pods made and removed, nothing left"))
    });
}

#[test]
fn container_restarted_in_pod() {
    scenario("container_restarted_in_pod", |f, cri, rt| {
        let pod = Pod::run(cri, rt.name, pod_config(f, "again"))?;
        let mut seen = Vec::new();
        // As the kubelet restarts a container: the dead attempt stays (for
        // its logs), the next one gets attempt + 1 and a log of its own.
        for attempt in 0..2 {
            let mut c = pod.container("c", &["sh", "-c", "echo run; exit 1"]);
            if let Some(m) = c.metadata.as_mut() {
                m.attempt = attempt;
            }
            c.log_path = format!("c/{attempt}.log");
            let id = pod.create(c)?;
            pod.start(&id)?;
            let st = cri.wait_exited(&id)?;
            let log = cri_log(&pod.log_path(&format!("c/{attempt}")))?;
            seen.push(format!(
                "attempt {} exit {} log {:?}",
                st.metadata.map(|m| m.attempt).unwrap_or(99),
                st.exit_code,
                log.iter().map(|l| l.2.clone()).collect::<Vec<_>>()
            ));
        }
        let req = cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: pod.id.clone(),
                ..Default::default()
            }),
        };
        let n = cri
            .call("ListContainers", cri.rs().list_containers(req))?
            .containers
            .len();
        seen.push(format!("{n} containers in the pod"));
        pod.remove()?;
        Ok(seen.join("; "))
    });
}

#[test]
fn host_path_propagation() {
    scenario("host_path_propagation", |f, cri, rt| {
        let config = pod_config(f, "vol");
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let (vol, sh) = {
            let d = f
                .daemon
                .lock()
                .map_err(|_| Outcome::Fail("poisoned".into()))?;
            let vol = d.dir.join(format!("vol-{name}"));
            let pid = d.pid();
            (vol, move |script: &str| {
                let mut c = std::process::Command::new("nsenter");
                c.args(["-t", &pid.to_string(), "-m", "--", "sh", "-c", script]);
                keel_conformance::containerd::run(c, SEC10)
            })
        };
        let v = vol.to_string_lossy().into_owned();
        std::fs::create_dir_all(&vol).map_err(|e| Outcome::Fail(format!("mkdir: {e}")))?;
        // The node's side: a shared mount, as the kubelet's pod volumes.
        let o = sh(&format!("mount --bind {v} {v} && mount --make-rshared {v}"));
        if o.code != 0 {
            fail!("share {v}: {o:?}");
        }
        let r = (|| {
            let pod = Pod::run(cri, rt.name, config)?;
            let mut ids = Vec::new();
            for (n, prop) in [
                ("private", cri::MountPropagation::PropagationPrivate),
                (
                    "host-to-container",
                    cri::MountPropagation::PropagationHostToContainer,
                ),
                (
                    "bidirectional",
                    cri::MountPropagation::PropagationBidirectional,
                ),
            ] {
                let id = pod.spawn_with(n, &["sleep", "1000"], |c| {
                    c.mounts.push(cri::Mount {
                        container_path: "/vol".into(),
                        host_path: v.clone(),
                        propagation: prop as i32,
                        ..Default::default()
                    });
                    if n == "bidirectional" {
                        sc(c).capabilities = Some(cri::Capability {
                            add_capabilities: vec!["SYS_ADMIN".into()],
                            ..Default::default()
                        });
                    }
                })?;
                ids.push((n, id));
            }
            let o = sh(&format!(
                "mkdir {v}/fromhost && mount -t tmpfs -o size=1m fromhost {v}/fromhost && echo host > {v}/fromhost/f"
            ));
            if o.code != 0 {
                fail!("mount on the node: {o:?}");
            }
            cri.sh(
                &ids[2].1,
                "mkdir /vol/fromctr && mount -t tmpfs -o size=1m fromctr /vol/fromctr && echo ctr > /vol/fromctr/g",
            )?;
            let mut seen = Vec::new();
            for (n, id) in &ids {
                let o = cri.sh(
                    id,
                    "cat /vol/fromhost/f 2>/dev/null || echo -; cat /vol/fromctr/g 2>/dev/null || echo -",
                )?;
                seen.push(format!(
                    "{n}: {}",
                    o.split_whitespace().collect::<Vec<_>>().join(" ")
                ));
            }
            let o = sh(&format!("cat {v}/fromctr/g 2>/dev/null || echo -"));
            seen.push(format!("node: {}", o.stdout.trim()));
            pod.remove()?;
            Ok(seen.join("; "))
        })();
        let _ = sh(&format!("umount -R {v} || umount -l {v}"));
        let _ = std::fs::remove_dir_all(&vol);
        r
    });
}

#[test]
fn user_namespaced_pod() {
    scenario("user_namespaced_pod", |f, cri, rt| {
        let map = vec![cri::IdMapping {
            host_id: 200_000,
            container_id: 0,
            length: 65536,
        }];
        let opts = cri::NamespaceOption {
            pid: cri::NamespaceMode::Container as i32,
            userns_options: Some(cri::UserNamespace {
                mode: cri::NamespaceMode::Pod as i32,
                uids: map.clone(),
                gids: map,
            }),
            ..Default::default()
        };
        let pod = Pod::run(cri, rt.name, pod_with_ns(f, "userns", opts))?;
        let id = pod.spawn("c", &["sleep", "1000"])?;
        let m = cri.sh(&id, "cat /proc/self/uid_map")?;
        let m = m.split_whitespace().collect::<Vec<_>>().join(" ");
        pod.remove()?;
        // containerd 1.6's CRI predates user namespaces (1.7 reads
        // userns_options): the pod runs in the node's, under any runtime.
        if m != "0 0 4294967295" {
            fail!("uid_map {m:?}: containerd 1.6 was expected to ignore userns_options");
        }
        Err(Outcome::Skip(format!(
            "containerd 1.6's CRI ignores userns_options (uid_map {m}): no user-namespaced pods"
        )))
    });
}

/// A stream session on `url` (from Exec, Attach or PortForward), in the
/// stream server's network namespace.
fn ws(f: &Fixture, url: &str) -> Result<WsConn, Outcome> {
    let pid = f.daemon.lock().map(|d| d.pid()).unwrap_or_default();
    let rest = url.strip_prefix("http://").unwrap_or_default();
    let addr = rest.split('/').next().unwrap_or_default();
    connect_in_netns(pid, addr)
        .and_then(|s| WsConn::handshake(s, url, "v4.channel.k8s.io"))
        .map_err(|e| Outcome::Fail(format!("stream {url}: {e:#}")))
}

/// A streaming Exec of `cmd` in `id`; `stdin` is sent first, if any.
fn stream_exec(
    f: &Fixture,
    cri: &Cri,
    id: &str,
    cmd: &[&str],
    tty: bool,
    stdin: Option<&str>,
) -> Result<String, Outcome> {
    let req = cri::ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin: stdin.is_some(),
        stdout: true,
        stderr: !tty,
    };
    let url = cri.call("Exec", cri.rs().exec(req))?.url;
    let mut conn = ws(f, &url)?;
    if let Some(input) = stdin {
        conn.send(0, input.as_bytes())
            .map_err(|e| Outcome::Fail(format!("{e:#}")))?;
    }
    let s = conn
        .collect()
        .map_err(|e| Outcome::Fail(format!("exec stream: {e:#}")))?;
    let status: serde_json::Value = serde_json::from_str(&s.status).unwrap_or_default();
    let code = status["details"]["causes"][0]["message"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let out = String::from_utf8_lossy(&s.stdout).replace('\r', "");
    Ok(format!(
        "stdout {out:?} stderr {:?} status {} exit {code}",
        String::from_utf8_lossy(&s.stderr),
        status["status"].as_str().unwrap_or("?")
    ))
}

#[test]
fn streaming_exec_and_attach() {
    scenario("streaming_exec_and_attach", |f, cri, rt| {
        let pod = Pod::run(cri, rt.name, pod_config(f, "stream"))?;
        let id = pod.spawn(
            "ticker",
            &["sh", "-c", "while :; do echo tick; sleep 0.2; done"],
        )?;
        let mut seen = vec![
            stream_exec(
                f,
                cri,
                &id,
                &["sh", "-c", "echo out; echo err >&2; exit 3"],
                false,
                None,
            )?,
            stream_exec(
                f,
                cri,
                &id,
                &["head", "-n", "1"],
                false,
                Some("from-stdin\n"),
            )?,
        ];
        // As `kubectl exec -it`: with a tty and no stdin, containerd 1.6
        // drops the output (under runc too).
        let tty = stream_exec(
            f,
            cri,
            &id,
            &["sh", "-c", "tty; [ -t 1 ] && echo is-a-tty"],
            true,
            Some(""),
        )?;
        if !tty.contains("/dev/pts/") || !tty.contains("is-a-tty") {
            fail!("exec -t: {tty}");
        }
        seen.push("tty: is-a-tty".into());
        // Attach: the running program's output reaches the client.
        let req = cri::AttachRequest {
            container_id: id.clone(),
            stdout: true,
            ..Default::default()
        };
        let url = cri.call("Attach", cri.rs().attach(req))?.url;
        let mut conn = ws(f, &url)?;
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains("tick\n") {
            match conn.recv() {
                Ok(Some((1, d))) => got.extend(d),
                Ok(Some(_)) => {}
                other => fail!("attach ended: {other:?}"),
            }
        }
        seen.push("attach: tick".into());
        drop(conn);
        pod.remove()?;
        Ok(seen.join("; "))
    });
}

#[test]
fn port_forward() {
    scenario("port_forward", |f, cri, rt| {
        let pod = Pod::run(cri, rt.name, pod_config(f, "pf"))?;
        let c = pod.spawn("httpd", &["httpd", "-f", "-p", "8080", "-h", "/etc"])?;
        // Serving once the listening socket shows (sockets of the pod's
        // network namespace, port 8080 = 1F90).
        if !wait_until(SEC10, || {
            cri.sh(&c, "cat /proc/net/tcp /proc/net/tcp6")
                .is_ok_and(|t| t.contains(":1F90 "))
        }) {
            fail!("httpd does not listen");
        }
        let req = cri::PortForwardRequest {
            pod_sandbox_id: pod.id.clone(),
            port: vec![8080],
        };
        let url = cri.call("PortForward", cri.rs().port_forward(req))?.url;
        let mut conn = ws(f, &format!("{url}?port=8080"))?;
        conn.send(0, b"GET /passwd HTTP/1.0\r\n\r\n")
            .map_err(|e| Outcome::Fail(format!("{e:#}")))?;
        // Channel 0 carries the data, after the port (2 bytes) it opens with.
        let mut data = Vec::new();
        while !String::from_utf8_lossy(&data).contains("root:x:0:0") {
            match conn.recv() {
                Ok(Some((0, d))) => data.extend(d),
                Ok(Some((1, d))) if d.len() > 2 => {
                    fail!("port-forward error: {}", String::from_utf8_lossy(&d[2..]))
                }
                Ok(Some(_)) => {}
                other => fail!(
                    "port-forward ended: {other:?} after {:?}",
                    String::from_utf8_lossy(&data)
                ),
            }
        }
        drop(conn);
        pod.remove()?;
        Ok("GET /passwd through the forward: root:x:0:0".into())
    });
}

#[test]
fn host_port_through_portmap() {
    scenario("host_port_through_portmap", |f, cri, rt| {
        let mut config = pod_config(f, "hostport");
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        // A node port of this pod's own: handlers run one after another,
        // but another test may map one at the same time.
        let host_port = 20000 + (n % 10000) as i32;
        config.port_mappings = vec![cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: 8080,
            host_port,
            host_ip: String::new(),
        }];
        let pod = Pod::run(cri, rt.name, config)?;
        let c = pod.spawn("httpd", &["httpd", "-f", "-p", "8080", "-h", "/etc"])?;
        if !wait_until(SEC10, || {
            cri.sh(&c, "cat /proc/net/tcp /proc/net/tcp6")
                .is_ok_and(|t| t.contains(":1F90 "))
        }) {
            fail!("httpd does not listen");
        }
        // From the node (containerd's network namespace) to its bridge
        // address: portmap's DNAT for locally made connections.
        let (pid, gw) = {
            let d = f
                .daemon
                .lock()
                .map_err(|_| Outcome::Fail("poisoned".into()))?;
            (
                d.pid(),
                keel_conformance::cri::SUBNET.replace(".0/24", ".1"),
            )
        };
        let mut cmd = std::process::Command::new("nsenter");
        cmd.args(["-t", &pid.to_string(), "-n", "--", "sh", "-c"]).arg(format!(
            "printf 'GET /passwd HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 {gw} {host_port} | tail -n 1"
        ));
        let o = keel_conformance::containerd::run(cmd, SEC10);
        if o.code != 0 || !o.stdout.contains("root:x:0:0") {
            fail!("GET through host port {host_port}: {o:?}");
        }
        pod.remove()?;
        Ok(format!("host port -> 8080: {}", o.stdout.trim()))
    });
}
