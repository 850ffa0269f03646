//! create/start/state/kill/delete/list, pid files, and signals sent to a
//! foreground `keel run`.

use keel_conformance::{assert_no_leaks, require_runc, wait_until, TestEnv};
use std::time::Duration;

const SEC5: Duration = Duration::from_secs(5);

#[test]
fn create_start_kill_delete() {
    let env = TestEnv::keel();
    let mut b = env.bundle("life");
    b.sh("sleep 60");
    let pid_file = env.dir.join("life.pid");
    b.save().expect("save config");
    let bundle = b.dir.to_string_lossy().into_owned();
    let pid_arg = pid_file.to_string_lossy().into_owned();
    env.cmd(&[
        "create",
        "--bundle",
        &bundle,
        "--pid-file",
        &pid_arg,
        "life",
    ])
    .expect_ok("create");

    let s = env.state("life").expect("state after create");
    assert_eq!(s["status"], "created", "{s}");
    let pid = s["pid"].as_i64().expect("pid is a number");
    assert!(pid > 0, "{s}");
    let recorded = std::fs::read_to_string(&pid_file).expect("pid file");
    assert_eq!(recorded.trim(), pid.to_string(), "pid file vs state");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());

    env.cmd(&["start", "life"]).expect_ok("start");
    let s = env.state("life").expect("state after start");
    assert_eq!(s["status"], "running", "{s}");
    assert_eq!(s["pid"], pid, "pid changed across start");

    env.cmd(&["kill", "life", "SIGKILL"]).expect_ok("kill");
    assert!(
        env.wait_status("life", "stopped", SEC5),
        "never stopped: {:?}",
        env.state("life")
    );
    let s = env.state("life").expect("state after kill");
    assert_eq!(s["pid"], 0, "stopped container has a pid: {s}");

    env.cmd(&["delete", "life"]).expect_ok("delete");
    let o = env.cmd(&["state", "life"]);
    o.expect_fail("state after delete");
    assert_no_leaks(&env, "life");
}

#[test]
fn delete_of_created_container() {
    let env = TestEnv::keel();
    let b = env.bundle("delcreated");
    env.create(&b).expect_ok("create");
    env.cmd(&["delete", "delcreated"])
        .expect_ok("delete created");
    assert_no_leaks(&env, "delcreated");
}

#[test]
fn list_formats() {
    let env = TestEnv::keel();
    let o = env.cmd(&["list", "--format", "json"]);
    o.expect_ok("list on an empty root");
    // runc prints `null` for no containers; an empty array would do too.
    let v = o.json().expect("empty list json");
    assert!(
        v.is_null() || v.as_array().is_some_and(|a| a.is_empty()),
        "{v}"
    );

    for id in ["lb", "la"] {
        let mut b = env.bundle(id);
        b.sh("sleep 60");
        env.create(&b).expect_ok("create");
    }
    env.cmd(&["start", "la"]).expect_ok("start la");

    let o = env.cmd(&["list", "-q"]);
    o.expect_ok("list -q");
    assert_eq!(o.stdout, "la\nlb\n");

    let o = env.cmd(&["list"]);
    o.expect_ok("list");
    let lines: Vec<&str> = o.stdout.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"],
        "{o}"
    );
    assert!(
        lines[1].starts_with("la ") && lines[1].contains(" running "),
        "{o}"
    );
    assert!(
        lines[2].starts_with("lb ") && lines[2].contains(" created "),
        "{o}"
    );

    let o = env.cmd(&["list", "--format", "json"]);
    o.expect_ok("list json");
    let v = o.json().expect("list json");
    let a = v.as_array().expect("array");
    assert_eq!(a.len(), 2, "{v}");
    assert_eq!(a[0]["id"], "la");
    assert_eq!(a[0]["status"], "running");
    assert_eq!(a[1]["status"], "created");
    for c in a {
        assert_eq!(c["owner"], "root", "{c}");
        assert!(c["pid"].as_i64().is_some_and(|p| p > 0), "{c}");
    }
    for id in ["la", "lb"] {
        env.cmd(&["delete", "--force", id]).expect_ok("delete");
        assert_no_leaks(&env, id);
    }
}

#[test]
fn delete_force_running() {
    let env = TestEnv::keel();
    let mut b = env.bundle("forced");
    b.sh("sleep 60");
    env.run_with(&b, &["-d"]).expect_ok("run -d");
    let o = env.cmd(&["delete", "forced"]);
    o.expect_fail("delete of a running container");
    assert_eq!(env.status("forced"), "running");
    env.cmd(&["delete", "--force", "forced"])
        .expect_ok("delete --force");
    assert_no_leaks(&env, "forced");
    // runc: --force of a missing container is fine.
    env.cmd(&["delete", "--force", "forced"])
        .expect_ok("delete --force of a missing container");
}

#[test]
fn kill_all() {
    let env = TestEnv::keel();
    let mut b = env.bundle("killall");
    // Without a pid namespace killing the init would not take its children
    // with it: --all must.
    b.namespaces(&["network", "ipc", "uts", "mount"]);
    b.sh("sleep 61 & sleep 62 & sleep 63");
    env.run_with(&b, &["-d"]).expect_ok("run -d");
    let procs: Vec<_> = env
        .cgroup_dirs("killall")
        .into_iter()
        .map(|d| d.join("cgroup.procs"))
        .filter(|p| p.exists())
        .collect();
    assert!(!procs.is_empty(), "no cgroup.procs for the container");
    let count = || {
        std::fs::read_to_string(&procs[0])
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    assert!(wait_until(SEC5, || count() == 3), "want 3 processes");
    env.cmd(&["kill", "--all", "killall", "KILL"])
        .expect_ok("kill --all");
    assert!(
        wait_until(SEC5, || count() == 0),
        "processes left: {}",
        count()
    );
    assert!(env.wait_status("killall", "stopped", SEC5));
    // runc: kill of a stopped container fails.
    env.cmd(&["kill", "killall", "KILL"])
        .expect_fail("kill of a stopped container");
    env.cmd(&["delete", "killall"]).expect_ok("delete");
    assert_no_leaks(&env, "killall");
}

/// keel, then runc when installed (else a printed SKIPPED).
fn envs() -> Vec<TestEnv> {
    let mut v = vec![TestEnv::keel()];
    if let Some(runc) = require_runc!() {
        v.push(TestEnv::new(runc));
    }
    v
}

#[test]
fn foreground_signal_forwarding() {
    for env in envs() {
        let rt = env.rt.name;
        let mut b = env.bundle("fwd");
        b.sh("for s in USR1 HUP INT; do trap \"echo got $s\" $s; done; \
             trap 'echo got TERM; exit 3' TERM; \
             echo ready; while true; do sleep 0.05; done");
        b.save().expect("save");
        let bundle = b.dir.to_string_lossy().into_owned();
        let run = env
            .spawn(&["run", "--bundle", &bundle, "fwd"])
            .expect("spawn run");
        assert!(
            wait_until(SEC5, || run.stdout_so_far().contains("ready")),
            "{rt}: container never got ready: {}",
            run.stdout_so_far()
        );
        for (sig, name) in [
            (libc::SIGUSR1, "USR1"),
            (libc::SIGHUP, "HUP"),
            (libc::SIGINT, "INT"),
        ] {
            run.signal(sig).expect("signal");
            assert!(
                wait_until(SEC5, || run
                    .stdout_so_far()
                    .contains(&format!("got {name}"))),
                "{rt}: {name} not forwarded: {}",
                run.stdout_so_far()
            );
        }
        run.signal(libc::SIGTERM).expect("SIGTERM");
        let o = run.wait(SEC5).expect("run exits after TERM");
        assert_eq!(o.code, 3, "{rt}: {o}");
        assert_eq!(
            o.stdout, "ready\ngot USR1\ngot HUP\ngot INT\ngot TERM\n",
            "{rt}"
        );
        assert_no_leaks(&env, "fwd");
    }
}

/// A foreground run is a subreaper: an orphan of a container that shares
/// the host's pid namespace is reparented to the runtime, which must reap
/// it rather than leave a zombie (runc's default; `--no-subreaper` not).
#[test]
fn foreground_run_reaps_orphans() {
    for env in envs() {
        let rt = env.rt.name;
        let mut b = env.bundle("orphan");
        b.namespaces(&["mount", "ipc", "uts", "network"]);
        b.sh("(sleep 0.2 & echo $! >/dev/shm/orphan); sleep 1; \
             cat /proc/$(cat /dev/shm/orphan)/stat 2>/dev/null | cut -d' ' -f3 || true; echo done");
        let o = env.run(&b);
        assert_eq!(o.code, 0, "{rt}: {o}");
        assert_eq!(
            o.stdout, "done\n",
            "{rt}: the orphan must be reaped, not a zombie"
        );
        assert_no_leaks(&env, "orphan");
    }
}

#[test]
fn foreground_run_killed_from_outside() {
    let env = TestEnv::keel();
    let mut b = env.bundle("extkill");
    b.sh("echo ready; sleep 60");
    b.save().expect("save");
    let bundle = b.dir.to_string_lossy().into_owned();
    let run = env
        .spawn(&["run", "--bundle", &bundle, "extkill"])
        .expect("spawn run");
    assert!(wait_until(SEC5, || run.stdout_so_far().contains("ready")));
    env.cmd(&["kill", "extkill", "KILL"]).expect_ok("kill");
    let o = run.wait(SEC5).expect("run exits after KILL");
    assert_eq!(o.code, 137, "{o}");
    assert_no_leaks(&env, "extkill");
}

#[test]
fn run_keep_leaves_stopped_container() {
    let env = TestEnv::keel();
    let mut b = env.bundle("kept");
    b.sh("exit 4");
    let o = env.run_with(&b, &["--keep"]);
    assert_eq!(o.code, 4, "{o}");
    assert_eq!(env.status("kept"), "stopped");
    env.cmd(&["delete", "kept"]).expect_ok("delete kept");
    assert_no_leaks(&env, "kept");
}

#[test]
fn spec_output_runs() {
    let env = TestEnv::keel();
    let b = env.bundle("fromspec");
    std::fs::remove_file(b.dir.join("config.json")).expect("rm config");
    let bundle = b.dir.to_string_lossy().into_owned();
    env.cmd(&["spec", "--bundle", &bundle]).expect_ok("spec");
    let text = std::fs::read_to_string(b.dir.join("config.json")).expect("spec wrote config");
    let mut config: serde_json::Value = serde_json::from_str(&text).expect("spec is JSON");
    assert_eq!(config["process"]["terminal"], true, "runc's default");
    assert_eq!(config["root"]["path"], "rootfs");
    // Only what a non-interactive test run needs differs from the default.
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = serde_json::json!(["sh", "-c", "echo from-spec $$"]);
    config["linux"]["cgroupsPath"] = format!("/{}/fromspec", env.cgroup_parent).into();
    let mut b = b;
    b.config = config;
    let o = env.run(&b);
    o.expect_ok("run of the spec config");
    assert_eq!(o.stdout, "from-spec 1\n");
    assert_no_leaks(&env, "fromspec");
    // runc refuses to overwrite an existing config.json.
    env.cmd(&["spec", "--bundle", &bundle])
        .expect_fail("spec over an existing config");
}
