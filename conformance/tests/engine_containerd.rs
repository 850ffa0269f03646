//! containerd on keel: Debian's containerd 1.6 (the shim tests' private
//! containerd: own root, state, socket and config, /run a tmpfs in its
//! mount namespace) with the stock `containerd-shim-runc-v2` pointed at the
//! runtime through the runc option BinaryName (`ctr run --runc-binary`).
//! Each scenario runs with runc and then keel; keel must observe what runc
//! does.

use keel_conformance::containerd::{event_topics, unavailable, Containerd, IMAGE, RUNC_SHIM};
use keel_conformance::engines::{pty_answers, runtimes, Report, Step};
use keel_conformance::{fail, wait_until, Runtime};
use std::time::Duration;

const SEC10: Duration = Duration::from_secs(10);

/// `ctr` output as a scenario step: exit 0 and the stdout.
fn ok(o: &keel_conformance::containerd::CtrOutput, what: &str) -> Step {
    if o.code != 0 {
        fail!(
            "{what}: exit {}: {} {}",
            o.code,
            o.stdout.trim(),
            o.stderr.trim()
        );
    }
    Ok(o.stdout.clone())
}

/// `ctr run` flags choosing the stock runc shim and the runtime binary.
fn flags<'a>(rt: &'a Runtime, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--runc-binary", rt.bin.to_str().unwrap_or_default()];
    v.extend_from_slice(extra);
    v
}

#[test]
fn containerd_scenarios() {
    if let Some(why) = unavailable() {
        eprintln!("SKIPPED engine_containerd: {why}");
        return;
    }
    let rts = runtimes("containerd");
    let c = match Containerd::start() {
        Ok(c) => c,
        Err(e) => panic!("containerd setup: {e:#}"),
    };
    // Events of the whole suite, read by the events scenarios.
    let events_log = c.dir.join("events.txt");
    let mut events = c
        .ctr_command(&["events"])
        .stdout(std::fs::File::create(&events_log).expect("events log"))
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("ctr events");
    let events_of = |id: &str| {
        event_topics(
            &std::fs::read_to_string(&events_log).unwrap_or_default(),
            id,
        )
    };
    let mut r = Report::new("containerd");

    r.scenario("ctr image import", &rts, |_| {
        let ls = ok(&c.ctr(&["images", "ls", "-q"]), "images ls")?;
        if !ls.lines().any(|l| l == IMAGE) {
            fail!("{IMAGE} not among the images: {ls}");
        }
        Ok(IMAGE.into())
    });
    r.scenario("run --rm stdout", &rts, |rt| {
        let id = format!("rm-{}", rt.name);
        ok(
            &c.run_rm(
                RUNC_SHIM,
                &id,
                &flags(rt, &[]),
                &["sh", "-c", "echo hello; id"],
            ),
            "ctr run --rm",
        )
    });
    r.scenario("exit status 7", &rts, |rt| {
        let id = format!("exit-{}", rt.name);
        let o = c.run_rm(RUNC_SHIM, &id, &flags(rt, &[]), &["sh", "-c", "exit 7"]);
        if o.code != 7 {
            fail!("exit {} (want 7): {}", o.code, o.stderr.trim());
        }
        Ok("7".into())
    });
    r.scenario("detached lifecycle", &rts, |rt| {
        let id = format!("d-{}", rt.name);
        let run = c.ctr(
            &[
                &["run", "-d", "--runtime", RUNC_SHIM][..],
                &flags(rt, &[]),
                &[IMAGE, &id, "sleep", "1000"],
            ]
            .concat(),
        );
        ok(&run, "ctr run -d")?;
        let r = (|| {
            // The shim was told to run this runtime's binary.
            let opts =
                std::fs::read_to_string(c.bundle(&id).join("options.json")).unwrap_or_default();
            if !opts.contains(&*rt.bin.to_string_lossy()) {
                fail!(
                    "the shim's options do not name {}: {opts}",
                    rt.bin.display()
                );
            }
            let mut seen = Vec::new();
            let ex = ok(
                &c.ctr(&[
                    "task",
                    "exec",
                    "--exec-id",
                    "e1",
                    &id,
                    "sh",
                    "-c",
                    "echo in-exec",
                ]),
                "task exec",
            )?;
            seen.push(ex);
            let ps = ok(&c.ctr(&["task", "ps", &id]), "task ps")?;
            if ps.lines().count() != 2 {
                fail!("task ps: {ps}");
            }
            ok(&c.ctr(&["task", "pause", &id]), "pause")?;
            seen.push(c.task_status(&id));
            ok(&c.ctr(&["task", "resume", &id]), "resume")?;
            seen.push(c.task_status(&id));
            let m = ok(&c.ctr(&["task", "metrics", &id]), "metrics")?;
            if !m.contains("memory.usage_in_bytes") && !m.contains("memory.usage") {
                fail!("metrics show no memory usage: {m}");
            }
            ok(&c.ctr(&["task", "kill", "-s", "SIGKILL", &id]), "kill")?;
            if !c.wait_status(&id, "STOPPED", SEC10) {
                fail!("not STOPPED after kill: {}", c.task_status(&id));
            }
            ok(&c.ctr(&["task", "delete", &id]), "task delete")?;
            ok(&c.ctr(&["containers", "delete", &id]), "containers delete")?;
            if !c.cgroup_dirs(&id).is_empty() {
                fail!("cgroup left after delete");
            }
            Ok(seen.join(" "))
        })();
        if r.is_err() {
            let _ = c.ctr(&["task", "delete", "-f", &id]);
            let _ = c.ctr(&["containers", "delete", &id]);
        }
        r
    });
    r.scenario("events: task exit", &rts, |rt| {
        let id = format!("ev-{}", rt.name);
        let o = c.run_rm(RUNC_SHIM, &id, &flags(rt, &[]), &["sh", "-c", "exit 3"]);
        if o.code != 3 {
            fail!("exit {}: {}", o.code, o.stderr.trim());
        }
        let mut seen = Vec::new();
        wait_until(SEC10, || {
            seen = events_of(&id);
            seen.iter().any(|t| t == "/tasks/exit")
        });
        if !seen.iter().any(|t| t == "/tasks/exit") {
            fail!("no /tasks/exit among {seen:?}");
        }
        Ok(seen.join(" "))
    });
    r.scenario("events: OOM", &rts, |rt| {
        let id = format!("oom-{}", rt.name);
        let limit = (16u64 << 20).to_string();
        // dd's 64 MiB buffer against a 16 MiB limit.
        let o = c.run_rm(
            RUNC_SHIM,
            &id,
            &flags(rt, &["--memory-limit", &limit]),
            &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
        );
        if o.code != 137 {
            fail!("exit {} (want 137): {}", o.code, o.stderr.trim());
        }
        if !wait_until(SEC10, || events_of(&id).iter().any(|t| t == "/tasks/oom")) {
            fail!("no /tasks/oom among {:?}", events_of(&id));
        }
        Ok("137 /tasks/oom".into())
    });
    r.scenario("--tty", &rts, |rt| {
        let id = format!("tty-{}", rt.name);
        let ctr = c.ctr_command(
            &[
                &["run", "--rm", "-t", "--runtime", RUNC_SHIM][..],
                &flags(rt, &[]),
                &[IMAGE, &id, "sh", "-c", "tty; [ -t 0 ] && echo stdin-tty"],
            ]
            .concat(),
        );
        let line = std::iter::once(ctr.get_program())
            .chain(ctr.get_args())
            .map(|a| format!("'{}'", a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ");
        let mut script = std::process::Command::new("script");
        script.args(["-qec", &line, "/dev/null"]);
        let o = keel_conformance::containerd::run(script, Duration::from_secs(30));
        let out = ok(&o, "script ctr run -t")?.replace('\r', "");
        if !out.contains("/dev/pts/") || !out.contains("stdin-tty") {
            fail!("no pty: {out:?}");
        }
        Ok(pty_answers(&out))
    });
    let _ = events.kill();
    let _ = events.wait();
    r.finish();
}
