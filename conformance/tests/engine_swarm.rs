//! Docker swarm on keel: a private dockerd 20.10 (keel_conformance::docker)
//! per runtime, with that runtime as its default (`--default-runtime`), made
//! a single-node swarm (advertising its docker0 address, which exists only
//! in its sandbox). A service of the busybox image is created with 3
//! replicas, scaled to 5 and back to 2, a task's process killed and
//! replaced by swarm, rolled with `update --force`, and removed, leaving
//! nothing. The same under runc first; keel must observe what runc does.

use keel_conformance::docker::{name, Docker, IMAGE};
use keel_conformance::engines::{ok_out, runtimes, Outcome, Report};
use keel_conformance::{fail, wait_until, Runtime};
use std::collections::HashMap;
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

#[test]
fn swarm_scenarios() {
    if !Path::new(keel_conformance::docker::DOCKER).is_file()
        || !keel_conformance::engines::have("dockerd")
    {
        eprintln!(
            "SKIPPED engine_swarm: Debian's docker.io is not installed (apt-get install docker.io)"
        );
        return;
    }
    let rts = runtimes("swarm");
    let mut daemons = HashMap::new();
    for rt in &rts {
        let dk = match Docker::start(&rts, Some(rt)) {
            Ok(d) => d,
            Err(e) => panic!("docker setup ({}): {e:#}", rt.name),
        };
        let o = dk.dk("swarm init --advertise-addr 172.17.0.1");
        assert!(o.ok(), "swarm init ({}): {o}", rt.name);
        daemons.insert(rt.name, dk);
    }
    let mut r = Report::new("swarm");
    let s = "svc";
    r.scenario("service create x3", &rts, |rt| {
        let dk = &daemons[rt.name];
        // No restart delay, a short stop grace: scenarios wait less.
        ok_out(
            &dk.dk(&format!(
                "service create --detach --name {s} --replicas 3 --restart-delay 0s \
                 --stop-grace-period 1s {IMAGE} sleep 100000"
            )),
            "service create",
        )?;
        let ids = converge(dk, s, 3)?;
        check_runtime(dk, &ids, rt)?;
        Ok("3 tasks running under the default runtime".into())
    });
    r.scenario("service scale 5, 2", &rts, |rt| {
        let dk = &daemons[rt.name];
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
    r.scenario("killed task replaced", &rts, |rt| {
        let dk = &daemons[rt.name];
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
    r.scenario("service update --force", &rts, |rt| {
        let dk = &daemons[rt.name];
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
    r.scenario("service rm", &rts, |rt| {
        let dk = &daemons[rt.name];
        ok_out(&dk.dk(&format!("service rm {s}")), "service rm")?;
        let mut left = String::new();
        if !wait_until(CONVERGE, || {
            left = dk.dk("ps -aq").stdout;
            left.trim().is_empty()
        }) {
            fail!("containers left after service rm: {left}");
        }
        // Nothing under the daemon's cgroup parent either.
        let cgroups = keel_conformance::cri::CriDaemon::cgroups_below(&dk.cgroup);
        if !wait_until(Duration::from_secs(10), || {
            keel_conformance::cri::CriDaemon::cgroups_below(&dk.cgroup).is_empty()
        }) {
            fail!("cgroups left: {cgroups:?}");
        }
        Ok("nothing left".into())
    });
    for dk in daemons.values() {
        let _ = dk.dk("swarm leave --force");
    }
    drop(daemons);
    r.finish();
}
