//! Docker swarm on keel: a private dockerd 20.10 (keel_conformance::docker)
//! per runtime, with that runtime as its default (`--default-runtime`), made
//! a single-node swarm (advertising its docker0 address, which exists only
//! in its sandbox). A service of the busybox image is created with 3
//! replicas, scaled to 5 and back to 2, a task's process killed and
//! replaced by swarm, rolled with `update --force`, and removed, leaving
//! nothing. Each of these is a test with a service of its own (named after
//! it), made and removed under runc first, then keel; keel must observe
//! what runc does. The two daemons serve the whole file (started on first
//! use, stopped at exit).

use keel_conformance::cri::CriDaemon;
use keel_conformance::docker::{name, Docker, IMAGE};
use keel_conformance::engines::{ok_out, runtimes, Outcome, Report, Step};
use keel_conformance::shared::Shared;
use keel_conformance::{fail, wait_until, Runtime};
use std::path::Path;
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(60);

/// The ids of the running task containers of service `s`, sorted.
fn tasks(dk: &Docker, s: &str) -> Vec<String> {
    let o = dk.dk(&format!(
        "ps -q --filter label=com.docker.swarm.service.name={s}"
    ));
    let mut v: Vec<String> = o.stdout.split_whitespace().map(str::to_owned).collect();
    v.sort();
    v
}

/// Waits until service `s` runs `n` tasks; their ids.
fn converge(dk: &Docker, s: &str, n: usize) -> Result<Vec<String>, Outcome> {
    let mut got = Vec::new();
    if !wait_until(CONVERGE, || {
        got = tasks(dk, s);
        got.len() == n
    }) {
        fail!(
            "service {s}: {} tasks running, want {n}: {}",
            got.len(),
            dk.dk(&format!("service ps --no-trunc {s}")).stdout
        );
    }
    Ok(got)
}

/// The runtime the task containers run under, checked to be `rt`'s.
fn check_runtime(dk: &Docker, ids: &[String], rt: &Runtime) -> Result<(), Outcome> {
    for id in ids {
        let r = ok_out(
            &dk.dk(&format!("inspect -f '{{{{.HostConfig.Runtime}}}}' {id}")),
            "inspect",
        )?;
        if r.trim() != name(rt) {
            fail!("task {id} runs under {:?}, not {}", r.trim(), name(rt));
        }
    }
    Ok(())
}

/// A single-node swarm per runtime, that runtime its default.
struct Fixture {
    rts: Vec<Runtime>,
    /// In the order of `rts`.
    daemons: Vec<Docker>,
}

impl Fixture {
    fn start() -> anyhow::Result<Fixture> {
        let rts = runtimes("swarm");
        let mut daemons = Vec::new();
        for rt in &rts {
            let dk = Docker::start(&rts, Some(rt))?;
            let o = dk.dk("swarm init --advertise-addr 172.17.0.1");
            anyhow::ensure!(o.ok(), "swarm init ({}): {o}", rt.name);
            daemons.push(dk);
        }
        Ok(Fixture { rts, daemons })
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for dk in &self.daemons {
            let _ = dk.dk("swarm leave --force");
        }
    }
}

static SWARMS: Shared<Fixture> = Shared::new();

/// Runs `body` as scenario `test` with each runtime (runc first), on that
/// runtime's swarm, with service `test` of `replicas` tasks made before
/// and removed after (see [`remove`]).
fn scenario(test: &str, replicas: usize, body: impl Fn(&Docker, &Runtime, &str) -> Step) {
    if !Path::new(keel_conformance::docker::DOCKER).is_file()
        || !keel_conformance::engines::have("dockerd")
    {
        eprintln!(
            "SKIPPED engine_swarm::{test}: Debian's docker.io is not installed \
             (apt-get install docker.io)"
        );
        return;
    }
    let f = SWARMS.get("swarm", Fixture::start);
    let mut r = Report::new("swarm");
    r.scenario(test, &f.rts, |rt| {
        let i = f.rts.iter().position(|r| r.name == rt.name).unwrap_or(0);
        let dk = &f.daemons[i];
        // No restart delay, a short stop grace: scenarios wait less.
        ok_out(
            &dk.dk(&format!(
                "service create --detach --name {test} --replicas {replicas} \
                 --restart-delay 0s --stop-grace-period 1s {IMAGE} sleep 100000"
            )),
            "service create",
        )?;
        let seen = converge(dk, test, replicas).and_then(|ids| {
            check_runtime(dk, &ids, rt)?;
            body(dk, rt, test)
        });
        let removed = remove(dk, test);
        let seen = seen?;
        removed?;
        Ok(seen)
    });
    r.finish();
}

/// Removes service `s` and waits until nothing of it is left: no task
/// container, no cgroup of one under the daemon's cgroup parent.
fn remove(dk: &Docker, s: &str) -> Result<(), Outcome> {
    let filter = format!("--filter label=com.docker.swarm.service.name={s}");
    let ids = dk.dk(&format!("ps -aq --no-trunc {filter}")).stdout;
    ok_out(&dk.dk(&format!("service rm {s}")), "service rm")?;
    let mut left = String::new();
    if !wait_until(CONVERGE, || {
        left = dk.dk(&format!("ps -aq {filter}")).stdout;
        left.trim().is_empty()
    }) {
        fail!("containers left after service rm: {left}");
    }
    let cgroups = || {
        CriDaemon::cgroups_below(&dk.cgroup)
            .into_iter()
            .filter(|d| {
                d.file_name()
                    .is_some_and(|n| ids.split_whitespace().any(|id| id == n))
            })
            .collect::<Vec<_>>()
    };
    if !wait_until(Duration::from_secs(10), || cgroups().is_empty()) {
        fail!("cgroups left: {:?}", cgroups());
    }
    Ok(())
}

#[test]
fn service_create() {
    scenario("service_create", 3, |_, _, _| {
        Ok("3 tasks running under the default runtime".into())
    });
}

#[test]
fn service_scale() {
    scenario("service_scale", 3, |dk, rt, s| {
        let mut seen = Vec::new();
        for n in [5, 2] {
            ok_out(
                &dk.dk(&format!("service scale --detach {s}={n}")),
                "service scale",
            )?;
            let ids = converge(dk, s, n)?;
            check_runtime(dk, &ids, rt)?;
            seen.push(format!("{n} running"));
        }
        Ok(seen.join(", "))
    });
}

#[test]
fn killed_task_replaced() {
    scenario("killed_task_replaced", 2, |dk, rt, s| {
        let before = converge(dk, s, 2)?;
        let pid = ok_out(
            &dk.dk(&format!("inspect -f '{{{{.State.Pid}}}}' {}", before[0])),
            "inspect pid",
        )?;
        let pid: i32 = pid.trim().parse().unwrap_or(0);
        if pid <= 0 {
            fail!("no pid for task {}", before[0]);
        }
        // SAFETY: kill(2) of a task process of this test's own dockerd.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let mut after = Vec::new();
        if !wait_until(CONVERGE, || {
            after = tasks(dk, s);
            after.len() == 2 && !after.contains(&before[0])
        }) {
            fail!("the killed task was not replaced: {before:?} -> {after:?}");
        }
        check_runtime(dk, &after, rt)?;
        Ok("replaced".into())
    });
}

#[test]
fn service_update_force() {
    scenario("service_update_force", 2, |dk, rt, s| {
        let before = converge(dk, s, 2)?;
        ok_out(
            &dk.dk(&format!("service update --detach --force {s}")),
            "service update",
        )?;
        let mut after = Vec::new();
        if !wait_until(CONVERGE, || {
            after = tasks(dk, s);
            after.len() == 2 && after.iter().all(|id| !before.contains(id))
        }) {
            fail!("tasks not rolled: {before:?} -> {after:?}");
        }
        check_runtime(dk, &after, rt)?;
        Ok("2 tasks rolled".into())
    });
}

#[test]
fn service_rm() {
    // The removal (and that it leaves nothing) is every scenario's end;
    // here right after the tasks came up.
    scenario("service_rm", 2, |_, _, _| Ok("nothing left".into()));
}
