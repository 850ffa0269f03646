//! cgroups: limits from `linux.resources` in the files and in effect (OOM
//! kill, pids.max), `update`, `pause`/`resume`, `ps`, `events --stats`, and
//! the JSON shapes of `ps --format json` and `events --stats` against runc.
//!
//! Written for any layout (the cgroup files are looked up in whichever
//! hierarchy has them), exercised on a hybrid host. Every container lives
//! under the env's own cgroup parent, which the env removes.

use keel_conformance::{assert_no_leaks, require_runc, wait_until, Bundle, Runtime, TestEnv};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const SEC5: Duration = Duration::from_secs(5);

/// The cgroup file `file` of container `id`, in whichever mounted hierarchy
/// has it (v1 controller first, as keel chooses).
fn cg_file(env: &TestEnv, id: &str, file: &str) -> Option<PathBuf> {
    let mut mounts = TestEnv::cgroup_mounts();
    // v1 hierarchies before the unified one.
    mounts.sort_by_key(|m| m.join("cgroup.controllers").exists());
    mounts
        .into_iter()
        .map(|m| m.join(&env.cgroup_parent).join(id).join(file))
        .find(|p| p.exists())
}

#[track_caller]
fn read_cg(env: &TestEnv, id: &str, file: &str) -> String {
    let p = cg_file(env, id, file).unwrap_or_else(|| panic!("no cgroup file {file} for {id}"));
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// `run -d` of the bundle, asserting success.
#[track_caller]
fn run_detached(env: &TestEnv, b: &Bundle) {
    env.run_with(b, &["--detach"]).expect_ok("run -d");
}

/// Runs a runtime command with `input` on its stdin (the harness gives
/// commands /dev/null), the way containerd's shim runs `update -r -`.
fn cmd_with_stdin(env: &TestEnv, args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(&env.rt.bin)
        .arg("--root")
        .arg(&env.root)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn runtime");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait runtime");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn memory_hog_is_oom_killed() {
    let env = TestEnv::keel();
    let mut b = env.bundle("oom");
    // The shell holds the whole substitution in memory: 64 MiB under 16 MiB.
    b.sh("a=$(head -c 67108864 /dev/zero | tr '\\0' x); echo survived ${#a}");
    let limit = 16 << 20;
    b.set(
        "/linux/resources/memory",
        json!({ "limit": limit, "swap": limit }),
    );
    let o = env.run(&b);
    assert_eq!(o.code, 137, "expected an OOM kill (SIGKILL): {o}");
    assert!(!o.stdout.contains("survived"), "{o}");
    assert_no_leaks(&env, "oom");
}

#[test]
fn fork_bomb_stops_at_pids_max() {
    let env = TestEnv::keel();
    let mut b = env.bundle("forks");
    // The loop runs in a subshell: ash gives up on a failed fork, and the
    // container's init has to outlive that to be looked at.
    b.sh("(i=0; while [ $i -lt 40 ]; do sleep 60 & i=$((i+1)); done) 2>/dev/null; exec sleep 60");
    b.set("/linux/resources/pids", json!({ "limit": 8 }));
    run_detached(&env, &b);
    assert_eq!(read_cg(&env, "forks", "pids.max"), "8");
    // The loop is done once the shell got past it (or it keeps failing).
    assert!(wait_until(SEC5, || {
        let ev = cg_file(&env, "forks", "pids.events")
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        ev.lines()
            .any(|l| l.starts_with("max ") && l.trim_start_matches("max ") != "0")
    }));
    let current: u64 = read_cg(&env, "forks", "pids.current").parse().unwrap();
    assert!(current <= 8, "pids.current {current} > pids.max 8");
    let ps = env.cmd(&["ps", "--format", "json", "forks"]);
    ps.expect_ok("ps");
    let pids = ps.json().unwrap();
    assert!(
        pids.as_array()
            .is_some_and(|a| a.len() <= 8 && a.len() >= 2),
        "{pids}"
    );
    env.cmd(&["delete", "--force", "forks"])
        .expect_ok("delete --force");
    assert_no_leaks(&env, "forks");
}

/// runtime-spec 1.3 / runc 1.3+ (opencontainers/cgroups fs/pids.go,
/// PidsGroup.Set): `pids.limit: 0` is a limit, written as 1 (what systemd
/// can express too), so the container's program may not fork; a `pids`
/// without a limit sets nothing. runc 1.1.5 read 0 as "no limit": keel-only.
#[test]
fn pids_limit_zero_is_a_limit() {
    let env = TestEnv::keel();
    let mut b = env.bundle("pids0");
    b.set("/process/args", json!(["sleep", "1000"]));
    b.set("/linux/resources/pids", json!({ "limit": 0 }));
    run_detached(&env, &b);
    assert_eq!(read_cg(&env, "pids0", "pids.max"), "1");
    // The limit holds forks, not joins (cgroups(7)): an exec'd shell gets
    // in, and cannot fork.
    let o = env.cmd(&[
        "exec",
        "pids0",
        "sh",
        "-c",
        "sleep 0 & wait $!; echo forked",
    ]);
    assert!(!o.stdout.contains("forked") || !o.ok(), "{o}");
    assert!(o.stderr.contains("fork"), "{o}");
    env.cmd(&["delete", "--force", "pids0"])
        .expect_ok("delete --force");
    assert_no_leaks(&env, "pids0");

    let mut b = env.bundle("pids-unset");
    b.set("/process/args", json!(["sleep", "1000"]));
    b.set("/linux/resources/pids", json!({}));
    run_detached(&env, &b);
    assert_eq!(read_cg(&env, "pids-unset", "pids.max"), "max");
    env.cmd(&["delete", "--force", "pids-unset"])
        .expect_ok("delete --force");
    assert_no_leaks(&env, "pids-unset");
}

#[test]
fn resources_are_in_the_files() {
    let env = TestEnv::keel();
    let mut b = env.bundle("files");
    b.sh("sleep 60");
    b.set(
        "/linux/resources/memory",
        json!({ "limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20, "swappiness": 10 }),
    );
    b.set(
        "/linux/resources/cpu",
        json!({ "shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0" }),
    );
    b.set("/linux/resources/pids", json!({ "limit": 42 }));
    run_detached(&env, &b);
    let hybrid_or_v1 = cg_file(&env, "files", "memory.limit_in_bytes").is_some();
    if hybrid_or_v1 {
        assert_eq!(
            read_cg(&env, "files", "memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(
            read_cg(&env, "files", "memory.soft_limit_in_bytes"),
            (32u64 << 20).to_string()
        );
        if cg_file(&env, "files", "memory.memsw.limit_in_bytes").is_some() {
            assert_eq!(
                read_cg(&env, "files", "memory.memsw.limit_in_bytes"),
                (128u64 << 20).to_string()
            );
        }
        assert_eq!(read_cg(&env, "files", "memory.swappiness"), "10");
        assert_eq!(read_cg(&env, "files", "cpu.shares"), "512");
        assert_eq!(read_cg(&env, "files", "cpu.cfs_quota_us"), "50000");
        assert_eq!(read_cg(&env, "files", "cpu.cfs_period_us"), "100000");
    } else {
        assert_eq!(
            read_cg(&env, "files", "memory.max"),
            (64u64 << 20).to_string()
        );
        assert_eq!(
            read_cg(&env, "files", "memory.low"),
            (32u64 << 20).to_string()
        );
        assert_eq!(read_cg(&env, "files", "cpu.weight"), "59");
        assert_eq!(read_cg(&env, "files", "cpu.max"), "50000 100000");
    }
    assert_eq!(read_cg(&env, "files", "cpuset.cpus"), "0");
    assert_eq!(read_cg(&env, "files", "pids.max"), "42");

    // An impossible limit fails naming the field, the value and the file
    // (v1 refuses a limit below usage; v2 takes it and reclaims or kills).
    if hybrid_or_v1 {
        let o = env.cmd(&["update", "--memory", "1000", "files"]);
        o.expect_fail("update below usage");
        assert!(
            o.stderr
                .contains("linux.resources.memory.limit: write 1000 to /")
                && o.stderr.contains(": Device or resource busy"),
            "{o}"
        );
    }
    let o = env.cmd(&["update", "--cpuset-cpus", "4095", "files"]);
    o.expect_fail("update with a cpu that does not exist");
    assert!(
        o.stderr
            .contains("linux.resources.cpu.cpus: write 4095 to /")
            && o.stderr.contains("cpuset.cpus: "),
        "{o}"
    );
    env.cmd(&["delete", "--force", "files"])
        .expect_ok("delete --force");
    assert_no_leaks(&env, "files");
}

#[test]
fn unified_is_refused_without_the_controller() {
    let env = TestEnv::keel();
    let mut b = env.bundle("unified");
    b.set("/linux/resources/unified", json!({ "nosuchctrl.max": "1" }));
    let o = env.create(&b);
    o.expect_fail("create with unified for a missing controller");
    assert!(o.stderr.contains("linux.resources.unified"), "{o}");
    assert_no_leaks(&env, "unified");
}

#[test]
fn update_changes_limits_of_a_running_container() {
    let env = TestEnv::keel();
    let mut b = env.bundle("upd");
    b.sh("sleep 60");
    b.set(
        "/linux/resources",
        json!({ "memory": { "limit": 64 << 20 }, "pids": { "limit": 20 },
                "devices": [ { "allow": false, "access": "rwm" } ] }),
    );
    run_detached(&env, &b);
    let mem_file = if cg_file(&env, "upd", "memory.limit_in_bytes").is_some() {
        "memory.limit_in_bytes"
    } else {
        "memory.max"
    };
    assert_eq!(read_cg(&env, "upd", mem_file), (64u64 << 20).to_string());

    env.cmd(&["update", "--memory", "32m", "--pids-limit", "30", "upd"])
        .expect_ok("update flags");
    assert_eq!(read_cg(&env, "upd", mem_file), (32u64 << 20).to_string());
    assert_eq!(read_cg(&env, "upd", "pids.max"), "30");

    // --resources FILE
    let file = env.dir.join("res.json");
    std::fs::write(
        &file,
        json!({ "memory": { "limit": 48 << 20 }, "pids": { "limit": 40 } }).to_string(),
    )
    .unwrap();
    let f = file.to_string_lossy().into_owned();
    env.cmd(&["update", "-r", &f, "upd"])
        .expect_ok("update -r file");
    assert_eq!(read_cg(&env, "upd", mem_file), (48u64 << 20).to_string());
    assert_eq!(read_cg(&env, "upd", "pids.max"), "40");

    // --resources=- as containerd's shim passes it; absent fields stay.
    let (code, out, err) = cmd_with_stdin(
        &env,
        &["update", "--resources=-", "upd"],
        &json!({ "pids": { "limit": 50 } }).to_string(),
    );
    assert_eq!(code, 0, "update -r -: {out}{err}");
    assert_eq!(read_cg(&env, "upd", "pids.max"), "50");
    assert_eq!(read_cg(&env, "upd", mem_file), (48u64 << 20).to_string());

    // -1: unlimited.
    env.cmd(&["update", "--pids-limit", "-1", "upd"])
        .expect_ok("update pids -1");
    assert_eq!(read_cg(&env, "upd", "pids.max"), "max");

    let o = env.cmd(&["update", "--memory", "lots", "upd"]);
    o.expect_fail("bad memory value");
    assert!(
        o.stderr
            .contains("invalid value for memory: invalid size: 'lots'"),
        "{o}"
    );
    env.cmd(&["delete", "--force", "upd"])
        .expect_ok("delete --force");
    let o = env.cmd(&["update", "--memory", "32m", "upd"]);
    o.expect_fail("update of a deleted container");
    assert_no_leaks(&env, "upd");
}

/// The counter the container advances, read from the host side of its
/// (writable) rootfs.
fn counter(b: &Bundle) -> u64 {
    std::fs::read_to_string(b.rootfs().join("tmp/count"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn pause_stops_progress_and_resume_restarts_it() {
    let env = TestEnv::keel();
    let mut b = env.bundle("frz");
    b.set("/root/readonly", json!(false));
    b.sh("i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.02; done");
    run_detached(&env, &b);
    assert!(wait_until(SEC5, || counter(&b) > 3), "counter never moved");

    env.cmd(&["pause", "frz"]).expect_ok("pause");
    assert_eq!(env.status("frz"), "paused");
    if let Some(p) = cg_file(&env, "frz", "freezer.state") {
        assert_eq!(std::fs::read_to_string(p).unwrap().trim(), "FROZEN");
    }
    let frozen_at = counter(&b);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(counter(&b), frozen_at, "the counter moved while paused");

    // runc's errors for the wrong state.
    let o = env.cmd(&["pause", "frz"]);
    o.expect_fail("pause of a paused container");
    assert!(o.stderr.contains("container not running"), "{o}");

    env.cmd(&["resume", "frz"]).expect_ok("resume");
    assert_eq!(env.status("frz"), "running");
    assert!(
        wait_until(SEC5, || counter(&b) > frozen_at + 3),
        "the counter did not move after resume"
    );
    let o = env.cmd(&["resume", "frz"]);
    o.expect_fail("resume of a running container");
    assert!(o.stderr.contains("container not paused"), "{o}");

    // A paused container can be force-deleted.
    env.cmd(&["pause", "frz"]).expect_ok("pause again");
    env.cmd(&["delete", "--force", "frz"])
        .expect_ok("delete --force of a paused container");
    assert_no_leaks(&env, "frz");
}

#[test]
fn pause_of_a_stopped_container_fails() {
    let env = TestEnv::keel();
    let mut b = env.bundle("stp");
    b.sh("true");
    env.create(&b).expect_ok("create");
    env.cmd(&["start", "stp"]).expect_ok("start");
    assert!(env.wait_status("stp", "stopped", SEC5));
    let o = env.cmd(&["pause", "stp"]);
    o.expect_fail("pause of a stopped container");
    assert!(o.stderr.contains("container not running"), "{o}");
    env.cmd(&["delete", "stp"]).expect_ok("delete");
    assert_no_leaks(&env, "stp");
}

#[test]
fn ps_lists_the_containers_processes() {
    let env = TestEnv::keel();
    let mut b = env.bundle("ps");
    b.sh("sleep 61 & sleep 62 & wait");
    run_detached(&env, &b);
    let procs: BTreeSet<i64> = wait_for_procs(&env, "ps", 3);
    let o = env.cmd(&["ps", "--format", "json", "ps"]);
    o.expect_ok("ps json");
    let listed: BTreeSet<i64> = o
        .json()
        .unwrap()
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p.as_i64().expect("pid is a number"))
        .collect();
    assert_eq!(listed, procs, "ps --format json vs cgroup.procs");
    let init = env.state("ps").unwrap()["pid"].as_i64().unwrap();
    assert!(listed.contains(&init));

    let o = env.cmd(&["ps", "ps"]);
    o.expect_ok("ps table");
    let mut lines = o.stdout.lines();
    assert!(lines.next().unwrap_or_default().contains("PID"), "{o}");
    assert_eq!(lines.clone().count(), 3, "{o}");
    assert!(lines.any(|l| l.contains("sleep 61")), "{o}");

    let o = env.cmd(&["ps", "ps", "-o", "pid,comm"]);
    o.expect_ok("ps -o pid,comm");
    // (procps or, in the v2 VM lane, busybox ps: columns padded differently.)
    let header: Vec<&str> = o
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["PID", "COMMAND"], "{o}");
    assert_eq!(o.stdout.lines().filter(|l| l.ends_with("sleep")).count(), 2);

    let o = env.cmd(&["ps", "--format", "xml", "ps"]);
    o.expect_fail("bad format");
    env.cmd(&["delete", "--force", "ps"])
        .expect_ok("delete --force");
    assert_no_leaks(&env, "ps");
}

fn wait_for_procs(env: &TestEnv, id: &str, n: usize) -> BTreeSet<i64> {
    let mut procs = BTreeSet::new();
    let ok = wait_until(SEC5, || {
        procs = cg_file(env, id, "cgroup.procs")
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        procs.len() == n
    });
    assert!(ok, "expected {n} processes, cgroup.procs has {procs:?}");
    procs
}

/// Waits until container `id`'s cgroup has `n` processes in every mounted
/// hierarchy; panics naming those that do not.
#[track_caller]
fn wait_in_every_hierarchy(env: &TestEnv, id: &str, n: usize) {
    let count = |d: &PathBuf| {
        std::fs::read_to_string(d.join("cgroup.procs"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let dirs = env.cgroup_dirs(id);
    let ok = wait_until(SEC5, || dirs.iter().all(|d| count(d) == n));
    let short: Vec<String> = dirs
        .iter()
        .filter(|d| count(d) != n)
        .map(|d| format!("{}: {}", d.display(), count(d)))
        .collect();
    assert!(ok, "expected {n} processes everywhere; {short:?}");
}

#[test]
fn events_stats_reports_usage_and_limits() {
    let env = TestEnv::keel();
    let mut b = env.bundle("ev");
    b.sh("sleep 60");
    b.set(
        "/linux/resources",
        json!({ "memory": { "limit": 64 << 20 }, "pids": { "limit": 20 },
                "devices": [ { "allow": false, "access": "rwm" } ] }),
    );
    run_detached(&env, &b);
    let o = env.cmd(&["events", "--stats", "ev"]);
    o.expect_ok("events --stats");
    let v = o.json().unwrap();
    assert_eq!(v["type"], "stats");
    assert_eq!(v["id"], "ev");
    let d = &v["data"];
    assert_eq!(d["memory"]["usage"]["limit"], 64 << 20, "{d}");
    assert!(
        d["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "{d}"
    );
    assert_eq!(d["pids"]["current"], 1, "{d}");
    assert_eq!(d["pids"]["limit"], 20, "{d}");
    assert!(d["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0, "{d}");

    env.cmd(&["delete", "--force", "ev"])
        .expect_ok("delete --force");
    assert_no_leaks(&env, "ev");
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// Starts the same container under keel and runc and returns their
/// `ps --format json` and `events --stats` outputs.
fn both(envs: &[TestEnv; 2], id: &str) -> Vec<(Value, Value)> {
    envs.iter()
        .map(|env| {
            let mut b = env.bundle(id);
            b.sh("sleep 60");
            b.set(
                "/linux/resources",
                json!({ "memory": { "limit": 64 << 20 }, "pids": { "limit": 20 },
                        "devices": [ { "allow": false, "access": "rwm" } ] }),
            );
            run_detached(env, &b);
            let ps = env.cmd(&["ps", "--format", "json", id]);
            ps.expect_ok(&format!("{} ps", env.rt.name));
            let ev = env.cmd(&["events", "--stats", id]);
            ev.expect_ok(&format!("{} events --stats", env.rt.name));
            let r = (ps.json().unwrap(), ev.json().unwrap());
            env.cmd(&["delete", "--force", id])
                .expect_ok(&format!("{} delete", env.rt.name));
            r
        })
        .collect()
}

#[test]
fn differential_ps_and_stats_shapes() {
    let Some(runc) = require_runc!() else { return };
    let envs = [TestEnv::keel(), TestEnv::new(runc)];
    let r = both(&envs, "shape");
    let ((kps, kev), (rps, rev)) = (&r[0], &r[1]);
    for (name, ps) in [("keel", kps), ("runc", rps)] {
        let a = ps.as_array().unwrap_or_else(|| panic!("{name} ps: {ps}"));
        assert_eq!(a.len(), 1, "{name} ps: {ps}");
        assert!(a[0].is_i64(), "{name} ps: {ps}");
    }
    assert_eq!(keys(kev), keys(rev), "event envelope keys");
    assert_eq!(kev["type"], rev["type"]);
    let (kd, rd) = (&kev["data"], &rev["data"]);
    // Sections and the fields that are always present.
    for path in [
        "",
        "/memory",
        "/memory/usage",
        "/memory/swap",
        "/pids",
        "/cpuset",
    ] {
        let (k, r) = (
            keys(&kd.pointer(path).cloned().unwrap_or_default()),
            keys(&rd.pointer(path).cloned().unwrap_or_default()),
        );
        assert_eq!(
            k, r,
            "events --stats data{path} keys:\nkeel {kd}\nrunc {rd}"
        );
    }
    // cpu.usage: the non-omitempty fields, and every key keel prints must
    // be one runc knows.
    let known: BTreeSet<String> = [
        "total",
        "percpu",
        "percpu_kernel",
        "percpu_user",
        "kernel",
        "user",
    ]
    .map(String::from)
    .into();
    let ku = keys(&kd["cpu"]["usage"]);
    assert!(ku.is_subset(&known), "{ku:?}");
    for k in ["kernel", "user"] {
        assert!(ku.contains(k) && keys(&rd["cpu"]["usage"]).contains(k));
    }
    assert_eq!(
        kd["memory"]["usage"]["limit"],
        rd["memory"]["usage"]["limit"]
    );
    assert_eq!(kd["pids"]["limit"], rd["pids"]["limit"]);
    // memory.raw is the kernel's memory.stat: the same names.
    assert_eq!(keys(&kd["memory"]["raw"]), keys(&rd["memory"]["raw"]));
    let _ = Runtime::keel;
}

/// `sh -c script` with CAP_MKNOD added, so the container can make device
/// nodes (which the default rules allow: `c *:* m`) and try to open them.
fn with_mknod(b: &mut Bundle, script: &str) {
    b.sh(script);
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_MKNOD"]);
    for set in ["bounding", "effective", "permitted"] {
        b.set(&format!("/process/capabilities/{set}"), caps.clone());
    }
}

#[test]
fn device_rules_decide_what_can_be_opened() {
    // /dev/kmsg (c 1:11) opened write-only: no capability needed, so the
    // device rules alone decide. v1: the devices controller; v2: keel's
    // eBPF program. Rules apply in order and the last match wins; runc's
    // default devices (/dev/null...) stay allowed.
    let deny_all = json!({ "allow": false, "access": "rwm" });
    let kmsg = |allow: bool, access: &str| json!({ "allow": allow, "type": "c", "major": 1, "minor": 11, "access": access });
    let cases = [
        ("denied", json!([deny_all]), false),
        ("allowed", json!([deny_all, kmsg(true, "w")]), true),
        ("readonly", json!([deny_all, kmsg(true, "r")]), false),
        (
            "lastwins",
            json!([deny_all, kmsg(true, "rwm"), kmsg(false, "w")]),
            false,
        ),
        (
            "reallowed",
            json!([deny_all, kmsg(false, "w"), kmsg(true, "w")]),
            true,
        ),
        (
            "allowall",
            json!([{ "allow": true, "access": "rwm" }]),
            true,
        ),
    ];
    let env = TestEnv::keel();
    for (id, rules, opens) in cases {
        let mut b = env.bundle(id);
        with_mknod(
            &mut b,
            "mknod /dev/kmsg-test c 1 11 && echo keel-device-test >/dev/kmsg-test && echo opened; \
             echo x >/dev/null && echo null-ok",
        );
        b.set("/linux/resources/devices", rules);
        let o = env.run(&b);
        assert_eq!(o.stdout.contains("opened"), opens, "{id}: {o}");
        if !opens {
            assert!(o.stderr.contains("Operation not permitted"), "{id}: {o}");
        }
        assert!(o.stdout.contains("null-ok"), "{id}: {o}");
        assert_no_leaks(&env, id);
    }
    // Taking a hole out of a wildcard rule would be silently ignored by v1:
    // refused, as runc refuses it.
    let mut b = env.bundle("hole");
    b.set(
        "/linux/resources/devices",
        json!([deny_all, { "allow": true, "type": "c", "major": 1, "access": "rwm" }, kmsg(false, "w")]),
    );
    // (v1 and the eBPF program alike: what the rules mean is emulated
    // first, as runc does.)
    let o = env.create(&b);
    o.expect_fail("create with a hole in a wildcard");
    assert!(
        o.stderr.contains("linux.resources.devices") && o.stderr.contains("cannot punch a hole"),
        "{o}"
    );
    assert_no_leaks(&env, "hole");
}

/// A whole block device of this machine, as "major:minor".
fn some_block_device() -> Option<String> {
    let mut devs: Vec<String> = std::fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("dev")).ok())
        .map(|d| d.trim().to_string())
        .collect();
    devs.sort();
    devs.into_iter().next()
}

#[test]
fn io_limits_are_in_the_files() {
    let Some(dev) = some_block_device() else {
        eprintln!("skipped: no block device in /sys/block to throttle");
        return;
    };
    let (major, minor) = dev.split_once(':').expect("major:minor");
    let (major, minor): (i64, i64) = (major.parse().unwrap(), minor.parse().unwrap());
    let env = TestEnv::keel();
    let mut b = env.bundle("io");
    b.sh("sleep 60");
    let t = |rate: u64| json!([{ "major": major, "minor": minor, "rate": rate }]);
    b.set(
        "/linux/resources/blockIO",
        json!({
            "throttleReadBpsDevice": t(1 << 20),
            "throttleWriteIOPSDevice": t(100),
        }),
    );
    run_detached(&env, &b);
    if cg_file(&env, "io", "blkio.throttle.read_bps_device").is_some() {
        assert_eq!(
            read_cg(&env, "io", "blkio.throttle.read_bps_device"),
            format!("{dev} {}", 1 << 20)
        );
        assert_eq!(
            read_cg(&env, "io", "blkio.throttle.write_iops_device"),
            format!("{dev} 100")
        );
    } else {
        let max = read_cg(&env, "io", "io.max");
        assert!(
            max.contains(&format!(
                "{dev} rbps={} wbps=max riops=max wiops=100",
                1 << 20
            )),
            "io.max: {max}"
        );
    }
    env.cmd(&["delete", "--force", "io"]).expect_ok("delete");
    assert_no_leaks(&env, "io");
}

/// A container whose child is a memory hog, under `events --interval
/// 100ms`: the container outlives the OOM kill and ends when the test lets
/// it (through files in the rootfs). Returns the events, parsed, and the
/// events command's output; `ends_on_death`: keel's stream ends when the
/// container dies, runc's only once the cgroup is gone (after delete).
fn oom_under_events(
    env: &TestEnv,
    id: &str,
    limit: i64,
    ends_on_death: bool,
) -> (Vec<Value>, String) {
    let mut b = env.bundle(id);
    b.sh("while [ ! -e /tmp/go ]; do sleep 0.05; done; \
          (a=$(head -c 67108864 /dev/zero | tr '\\0' x); echo survived ${#a}); \
          while [ ! -e /tmp/stop ]; do sleep 0.05; done");
    b.set(
        "/linux/resources/memory",
        json!({ "limit": limit, "swap": limit }),
    );
    run_detached(env, &b);
    let ev = env
        .spawn(&["events", "--interval", "100ms", id])
        .expect("spawn events");
    // A stats event says the stream (and so the OOM watch) is up.
    let slow = Duration::from_secs(30);
    assert!(
        wait_until(slow, || ev.stdout_so_far().contains(r#""type":"stats""#)),
        "{}: no stats event: {}",
        env.rt.name,
        ev.stdout_so_far()
    );
    std::fs::write(b.rootfs().join("tmp/go"), "").unwrap();
    // The hog fills memory through a shell: slow under emulation (the v2
    // VM lane) on a loaded machine.
    let oom_wait = Duration::from_secs(120);
    assert!(
        wait_until(oom_wait, || ev.stdout_so_far().contains(r#""type":"oom""#)),
        "{}: no oom event: {}",
        env.rt.name,
        ev.stdout_so_far()
    );
    std::fs::write(b.rootfs().join("tmp/stop"), "").unwrap();
    if !ends_on_death {
        assert!(env.wait_status(id, "stopped", slow));
        env.cmd(&["delete", id]).expect_ok("delete");
    }
    let o = ev.wait(slow).expect("events ends");
    assert_eq!(o.code, 0, "{}: {o}", env.rt.name);
    let events = o
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (events, o.to_string())
}

#[test]
fn events_streams_stats_and_oom_kills_until_the_container_dies() {
    let env = TestEnv::keel();
    let o = env.cmd(&["events", "--interval", "0s", "nosuch"]);
    o.expect_fail("events of a container that does not exist");
    let mut b = env.bundle("evoom");
    b.sh("sleep 60");
    run_detached(&env, &b);
    let o = env.cmd(&["events", "--interval", "0s", "evoom"]);
    o.expect_fail("events with a zero interval");
    assert!(
        o.stderr
            .contains("duration interval must be greater than 0"),
        "{o}"
    );
    env.cmd(&["delete", "--force", "evoom"]).expect_ok("delete");

    let limit = 16 << 20;
    let (events, o) = oom_under_events(&env, "evoom", limit, true);
    assert!(
        events.contains(&json!({ "type": "oom", "id": "evoom" })),
        "{o}"
    );
    for e in &events {
        match e["type"].as_str() {
            Some("oom") => assert_eq!(e, &json!({ "type": "oom", "id": "evoom" })),
            Some("stats") => {
                assert_eq!(e["id"], "evoom");
                assert_eq!(e["data"]["memory"]["usage"]["limit"], limit, "{e}");
            }
            _ => panic!("unexpected event {e}"),
        }
    }
    let o = env.cmd(&["events", "evoom"]);
    o.expect_fail("events of a stopped container");
    assert!(o.stderr.contains("is not running"), "{o}");
    env.cmd(&["delete", "evoom"]).expect_ok("delete");
    assert_no_leaks(&env, "evoom");
}

#[test]
fn differential_oom_event_stream() {
    let Some(runc) = require_runc!() else { return };
    let limit = 16 << 20;
    let (keel, ko) = oom_under_events(&TestEnv::keel(), "evdiff", limit, true);
    let (runc, ro) = oom_under_events(&TestEnv::new(runc), "evdiff", limit, false);
    let oom = |events: &[Value]| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e["type"] == "oom")
            .cloned()
            .collect()
    };
    // The same OOM event, exactly (runc's envelope without data).
    assert_eq!(oom(&keel)[..1], oom(&runc)[..1], "keel:\n{ko}\nrunc:\n{ro}");
    let stats = |events: &[Value]| events.iter().find(|e| e["type"] == "stats").cloned();
    let (ks, rs) = (stats(&keel).unwrap(), stats(&runc).unwrap());
    assert_eq!(keys(&ks), keys(&rs));
    assert_eq!(keys(&ks["data"]), keys(&rs["data"]));
}

/// The cgroup directories of container `id` made in every hierarchy before
/// the container is created, as an engine or a leftover would leave them.
fn precreate_cgroups(env: &TestEnv, id: &str) -> Vec<PathBuf> {
    let dirs = env.cgroup_dirs(id);
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
    }
    dirs
}

/// Removes what [`precreate_cgroups`] made (deepest first).
fn remove_precreated(dirs: &[PathBuf]) {
    for d in dirs {
        let _ = std::fs::remove_dir(d);
    }
}

/// Freezes a pre-created, empty cgroup: the v1 freezer where there is one,
/// else cgroup2's cgroup.freeze. Returns the file and its thawed value.
fn freeze(dirs: &[PathBuf]) -> (PathBuf, &'static str) {
    let (file, frozen, thawed) = match dirs.iter().find(|d| d.join("freezer.state").exists()) {
        Some(d) => (d.join("freezer.state"), "FROZEN", "THAWED"),
        None => {
            let d = dirs
                .iter()
                .find(|d| d.join("cgroup.freeze").exists())
                .expect("a freezer or a cgroup2 hierarchy");
            (d.join("cgroup.freeze"), "1", "0")
        }
    };
    std::fs::write(&file, frozen).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    (file, thawed)
}

/// issue 20 item 23: a cgroup frozen before create is refused at once with
/// runc's words (keel used to place the init in it, where it froze, and
/// hang until killed). Differential against runc 1.1.5, which refuses it
/// in libcontainer/factory_linux.go (Create).
#[test]
fn differential_precreated_frozen_cgroup_is_refused() {
    let Some(runc) = require_runc!() else { return };
    let mut codes = Vec::new();
    for env in [TestEnv::keel(), TestEnv::new(runc)] {
        let b = env.bundle("frozen");
        let dirs = precreate_cgroups(&env, "frozen");
        let (file, thawed) = freeze(&dirs);
        let o = env.create(&b);
        let _ = std::fs::write(&file, thawed);
        o.expect_fail(&format!("{} create in a frozen cgroup", env.rt.name));
        assert!(
            o.stderr.contains("container's cgroup unexpectedly frozen"),
            "{}: {o}",
            env.rt.name
        );
        codes.push(o.code);
        remove_precreated(&dirs);
        assert_no_leaks(&env, "frozen");
    }
    assert_eq!(codes[0], codes[1], "exit codes keel, runc");
}

/// issue 20 item 23: a cgroup that already holds processes is refused with
/// runc's words (`container's cgroup is not empty: N process(es) found`).
/// keel-only: runc 1.1.5 only warns here; runc 1.2+ refuses it
/// (libcontainer/create.go, Create: "container's cgroup is not empty").
#[test]
fn precreated_cgroup_with_processes_is_refused() {
    let env = TestEnv::keel();
    let b = env.bundle("busy");
    let dirs = precreate_cgroups(&env, "busy");
    let mut squatter = Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep");
    // (Not into a v1 cpuset: a new one has no cpus to run on.)
    for d in dirs.iter().filter(|d| !d.join("cpuset.cpus").exists()) {
        std::fs::write(d.join("cgroup.procs"), squatter.id().to_string())
            .unwrap_or_else(|e| panic!("move sleep into {}: {e}", d.display()));
    }
    let o = env.create(&b);
    let _ = squatter.kill();
    let _ = squatter.wait();
    o.expect_fail("create in a cgroup with a process in it");
    assert!(
        o.stderr
            .contains("container's cgroup is not empty: 1 process(es) found"),
        "{o}"
    );
    // The squatter was left alone until we killed it.
    remove_precreated(&dirs);
    assert_no_leaks(&env, "busy");
}

/// issue 20 item 24: the config's device rules, then runc's defaults, and
/// nothing else: a `linux.devices` node is not allowed behind the config's
/// back (an explicit deny of it holds), and a config without rules still
/// gets runc's deny-all-but-defaults. Differential against runc 1.1.5
/// (libcontainer/specconv: CreateCgroupConfig appends AllowedDevices only).
#[test]
fn differential_device_rules_are_the_configs_then_runcs_defaults() {
    let Some(runc) = require_runc!() else { return };
    let kmsg = json!({"path": "/dev/conf-kmsg", "type": "c", "major": 1, "minor": 11});
    let deny_kmsg = json!({"allow": false, "type": "c", "major": 1, "minor": 11, "access": "rwm"});
    let allow_all = json!({"allow": true, "access": "rwm"});
    let cases = [
        ("nodedenied", Some(json!([allow_all, deny_kmsg])), true),
        (
            "nodedefault",
            Some(json!([{"allow": false, "access": "rwm"}])),
            true,
        ),
        ("norules", None, true),
        ("nodeallowed", Some(json!([allow_all])), true),
    ];
    let script = "echo keel-device-test >/dev/conf-kmsg && echo opened; \
                  echo x >/dev/null && echo null-ok; test -e /dev/net/tun || echo no-tun";
    let mut outs: Vec<Vec<String>> = Vec::new();
    for env in [TestEnv::keel(), TestEnv::new(runc)] {
        let mut seen = Vec::new();
        for (id, rules, with_node) in &cases {
            let mut b = env.bundle(id);
            b.sh(script);
            if *with_node {
                b.push("/linux/devices", kmsg.clone());
            }
            match rules {
                Some(r) => b.set("/linux/resources/devices", r.clone()),
                None => b.remove("/linux/resources/devices"),
            };
            let o = env.run(&b);
            seen.push(format!("{id}: {}", o.stdout.trim().replace('\n', " ")));
            assert_no_leaks(&env, id);
        }
        outs.push(seen);
    }
    assert_eq!(outs[0], outs[1], "keel, runc");
    assert!(outs[1][0].contains("nodedenied: null-ok"), "{:?}", outs[1]);
}

/// issue 20 item 24: `update` leaves the device rules alone, as runc 1.1.5
/// does (a rule added behind the runtime's back stays; a container with a
/// sub-cgroup, where an `a` rule would fail with EINVAL, updates fine).
/// Differential against runc 1.1.5.
#[test]
fn differential_update_leaves_device_rules_alone() {
    let Some(runc) = require_runc!() else { return };
    if !TestEnv::cgroup_mounts()
        .iter()
        .any(|m| m.join("devices.list").exists())
    {
        eprintln!("skipped: no v1 devices controller (the eBPF program is replaced whole)");
        return;
    }
    let mut lists = Vec::new();
    for env in [TestEnv::keel(), TestEnv::new(runc)] {
        let mut b = env.bundle("devupd");
        b.sh("sleep 60");
        run_detached(&env, &b);
        let list = cg_file(&env, "devupd", "devices.list").expect("devices.list");
        let dir = list.parent().expect("devices cgroup").to_path_buf();
        std::fs::write(dir.join("devices.allow"), "c 1:11 w").expect("allow behind its back");
        std::fs::create_dir(dir.join("sub")).expect("sub-cgroup");
        let o = env.cmd(&["update", "--pids-limit", "50", "devupd"]);
        let _ = std::fs::remove_dir(dir.join("sub"));
        o.expect_ok(&format!("{} update", env.rt.name));
        let mut now: Vec<String> = std::fs::read_to_string(&list)
            .expect("read devices.list")
            .lines()
            .map(String::from)
            .collect();
        now.sort();
        lists.push(now);
        env.cmd(&["delete", "--force", "devupd"])
            .expect_ok("delete");
        assert_no_leaks(&env, "devupd");
    }
    assert!(lists[1].contains(&"c 1:11 w".to_string()), "{:?}", lists[1]);
    assert_eq!(lists[0], lists[1], "devices.list after update: keel, runc");
}

/// issue 20 item 25: `update --cpu-burst` sets the CFS burst. keel-only:
/// runc 1.1.5 has no such flag; runc 1.2+ has (update.go, "cpu-burst").
#[test]
fn update_cpu_burst() {
    let env = TestEnv::keel();
    let mut b = env.bundle("burst");
    b.sh("sleep 60");
    run_detached(&env, &b);
    let Some(file) = ["cpu.cfs_burst_us", "cpu.max.burst"]
        .iter()
        .find_map(|f| cg_file(&env, "burst", f))
    else {
        eprintln!("skipped: this kernel has no CFS burst");
        env.cmd(&["delete", "--force", "burst"]).expect_ok("delete");
        return;
    };
    env.cmd(&[
        "update",
        "--cpu-quota",
        "50000",
        "--cpu-burst",
        "20000",
        "burst",
    ])
    .expect_ok("update --cpu-burst");
    let got = std::fs::read_to_string(&file).expect("read burst");
    env.cmd(&["delete", "--force", "burst"]).expect_ok("delete");
    assert_eq!(got.trim(), "20000");
    assert_no_leaks(&env, "burst");
}

/// issue 20 item 25: shrinking the realtime period with the runtime, whose
/// old value no longer fits the new period, writes them in the order the
/// kernel accepts (the runtime first when the period is refused). keel-only:
/// runc 1.1.5 fails here with EINVAL on cpu.rt_period_us; newer runc retries
/// the period after the runtime (libcontainer/cgroups/fs/cpu.go: SetRtSched).
#[test]
fn update_shrinks_realtime_period_and_runtime() {
    let Some(cpu) = TestEnv::cgroup_mounts()
        .into_iter()
        .find(|m| m.join("cpu.rt_runtime_us").exists())
    else {
        eprintln!("skipped: no realtime group scheduling (cpu.rt_runtime_us) here");
        return;
    };
    let env = TestEnv::keel();
    // The parent gets a tenth of the CPU for realtime: the container may
    // have as much.
    let parent = cpu.join(&env.cgroup_parent);
    std::fs::create_dir_all(&parent).expect("mkdir parent");
    std::fs::write(parent.join("cpu.rt_runtime_us"), "100000").expect("parent rt runtime");
    let mut b = env.bundle("rt");
    b.sh("sleep 60");
    b.set(
        "/linux/resources/cpu",
        json!({"realtimePeriod": 100000, "realtimeRuntime": 10000}),
    );
    run_detached(&env, &b);
    // Period first would make 10000 of 50000: a fifth, over the parent's
    // tenth.
    let o = env.cmd(&[
        "update",
        "--cpu-rt-period",
        "50000",
        "--cpu-rt-runtime",
        "5000",
        "rt",
    ]);
    let files = (
        read_cg(&env, "rt", "cpu.rt_period_us"),
        read_cg(&env, "rt", "cpu.rt_runtime_us"),
    );
    env.cmd(&["delete", "--force", "rt"]).expect_ok("delete");
    o.expect_ok("update of the realtime pair");
    assert_eq!(files, ("50000".into(), "5000".into()));
    assert_no_leaks(&env, "rt");
}

/// issue 20 item 25: `exec` into a paused container is refused in runc's
/// words (exit 255); with `--ignore-paused` it goes ahead and the process
/// runs once the container is resumed. Differential against runc 1.1.5.
#[test]
fn differential_exec_into_a_paused_container() {
    let Some(runc) = require_runc!() else { return };
    let mut seen = Vec::new();
    for env in [TestEnv::keel(), TestEnv::new(runc)] {
        let mut b = env.bundle("pausedexec");
        b.sh("sleep 60");
        run_detached(&env, &b);
        env.cmd(&["pause", "pausedexec"]).expect_ok("pause");
        let refused = env.cmd(&["exec", "pausedexec", "echo", "hi"]);
        let procs = wait_for_procs(&env, "pausedexec", 1).len();
        let ignoring = env
            .spawn(&["exec", "--ignore-paused", "pausedexec", "echo", "hi"])
            .expect("spawn exec --ignore-paused");
        // Resumed once the exec's process is in the (frozen) cgroup, in
        // every hierarchy (one joined after the freezer must not wait for
        // the thaw: the process would be missing from its pids, memory...
        // cgroups while the container is paused).
        wait_in_every_hierarchy(&env, "pausedexec", procs + 1);
        env.cmd(&["resume", "pausedexec"]).expect_ok("resume");
        let ran = ignoring.wait(SEC5 * 6).expect("exec --ignore-paused");
        env.cmd(&["delete", "--force", "pausedexec"])
            .expect_ok("delete");
        assert!(
            refused.stderr.contains(
                "exec failed: cannot exec in a paused container (use --ignore-paused to override)"
            ),
            "{}: {refused}",
            env.rt.name
        );
        seen.push((refused.code, ran.code, ran.stdout));
        assert_no_leaks(&env, "pausedexec");
    }
    assert_eq!(seen[0], (255, 0, "hi\n".to_string()));
    assert_eq!(seen[0], seen[1], "keel, runc");
}

/// issue 20 item 25: `linux.resources.unified` off a pure cgroup v2 host is
/// refused in runc's words, even where a hybrid host's unified hierarchy
/// has the file (runc's configs/validate: cgroupsCheck). Differential
/// against runc 1.1.5.
#[test]
fn differential_unified_is_refused_off_cgroup_v2() {
    let Some(runc) = require_runc!() else { return };
    let mounts = TestEnv::cgroup_mounts();
    if !mounts
        .iter()
        .any(|m| !m.join("cgroup.controllers").exists())
    {
        eprintln!("skipped: a pure cgroup v2 host takes unified");
        return;
    }
    let mut codes = Vec::new();
    for env in [TestEnv::keel(), TestEnv::new(runc)] {
        let mut b = env.bundle("unifiedv1");
        b.set(
            "/linux/resources/unified",
            json!({ "hugetlb.2MB.max": "0" }),
        );
        let o = env.create(&b);
        o.expect_fail(&format!("{} create with unified on v1", env.rt.name));
        assert!(
            o.stderr
                .contains("invalid configuration: cannot use unified on cgroup v1"),
            "{}: {o}",
            env.rt.name
        );
        codes.push(o.code);
        assert_no_leaks(&env, "unifiedv1");
    }
    assert_eq!(codes[0], codes[1], "exit codes keel, runc");
}

/// A device rule with an empty `access` is refused, in runc's specconv
/// words (it names the rule's index), and nothing is left behind.
#[test]
fn device_rule_with_empty_access_is_refused() {
    let Some(runc) = require_runc!() else { return };
    let mut results = Vec::new();
    for env in [TestEnv::keel(), TestEnv::new(runc)] {
        let mut b = env.bundle("emptyaccess");
        b.push(
            "/linux/resources/devices",
            json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": ""}),
        );
        let o = env.run(&b);
        assert_no_leaks(&env, "emptyaccess");
        let words = keel_conformance::log_msgs(&o.stderr).replacen(env.rt.name, "RT", 1);
        results.push((o.code, words));
    }
    assert_eq!(
        results[0], results[1],
        "keel (left) and runc (right) differ"
    );
    assert_eq!(
        results[0],
        (
            1,
            "RT run failed: device access at 1 field cannot be empty".to_string()
        )
    );
}

/// `..` in cgroupsPath is cleaned lexically within the hierarchy's root, as
/// runc's CleanPath does (no refusal, and no climbing out of the root):
/// `/../../P/x/../ID` is `/P/ID`.
#[test]
fn dot_dot_in_cgroups_path_is_cleaned_within_the_root() {
    let Some(runc) = require_runc!() else { return };
    for env in [TestEnv::keel(), TestEnv::new(runc)] {
        let mut b = env.bundle("dotdotcg");
        let path = b.config["linux"]["cgroupsPath"]
            .as_str()
            .expect("cgroupsPath")
            .to_string();
        let (parent, id) = path.rsplit_once('/').expect("parent/id");
        b.set(
            "/linux/cgroupsPath",
            json!(format!("/../..{parent}/x/../{id}")),
        );
        b.namespaces(&["pid", "mount", "ipc", "uts", "network"]);
        b.sh("grep :pids: /proc/self/cgroup | cut -d: -f3");
        let o = env.run(&b);
        assert_no_leaks(&env, "dotdotcg");
        o.expect_ok(&format!("{} run", env.rt.name));
        assert_eq!(o.stdout, format!("{path}\n"), "{}: {o}", env.rt.name);
    }
}

/// Makes every command of `env` run in a mount namespace of its own where
/// `setup` (shell) has run first: a wrapper script around the runtime.
fn in_layout(env: &mut TestEnv, setup: &str) {
    let wrapper = env.dir.join("in-layout.sh");
    let script = format!(
        "#!/bin/sh\nset -e\n{setup}\nexec '{}' \"$@\"\n",
        env.rt.bin.display()
    );
    std::fs::write(&wrapper, script).expect("write wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod wrapper");
    env.rt.bin = wrapper;
}

/// Whether cgroup2 is at /sys/fs/cgroup/unified beside v1 hierarchies.
fn hybrid() -> bool {
    let mounts = TestEnv::cgroup_mounts();
    mounts.contains(&PathBuf::from("/sys/fs/cgroup/unified"))
        && mounts
            .iter()
            .any(|m| !m.join("cgroup.controllers").exists())
}

/// A tmpfs mounted over a hybrid host's /sys/fs/cgroup with the v1
/// hierarchies bound back in and cgroup2 left out: mountinfo still lists
/// the host's mounts beneath. keel took the hidden cgroup2 mount, made the
/// container's "cgroup" on the tmpfs and clone3(CLONE_INTO_CGROUP) failed
/// with EBADF. Differential against runc 1.1.5: both run the container in
/// the v1 cgroups only.
#[test]
fn differential_cgroup2_hidden_by_a_tmpfs_over_the_hierarchies() {
    let Some(runc) = require_runc!() else { return };
    if !hybrid() {
        eprintln!("skipped: needs a hybrid host (cgroup2 at /sys/fs/cgroup/unified)");
        return;
    }
    let mut seen = Vec::new();
    for rt in [Runtime::keel(), runc] {
        let mut env = TestEnv::new(rt);
        let old = env.dir.join("old-cgroup");
        let old = old.display();
        in_layout(
            &mut env,
            &format!(
                "mkdir -p '{old}'
mount --rbind /sys/fs/cgroup '{old}'
mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup
for e in '{old}'/*; do
  n=${{e##*/}}
  if [ -L \"$e\" ]; then ln -s \"$(readlink \"$e\")\" /sys/fs/cgroup/$n
  elif [ $n != unified ] && mountpoint -q \"$e\"; then
    mkdir /sys/fs/cgroup/$n; mount --bind \"$e\" /sys/fs/cgroup/$n
  fi
done
umount -l '{old}'"
            ),
        );
        let mut b = env.bundle("hidden2");
        b.namespaces(&["pid", "mount", "ipc", "uts", "network"]);
        b.sh("cat /proc/self/cgroup");
        let o = env.run(&b);
        assert_no_leaks(&env, "hidden2");
        o.expect_ok(&format!("{} run", env.rt.name));
        let cgroups: BTreeSet<String> = o
            .stdout
            .lines()
            .map(|l| l.replace(&env.cgroup_parent, "P"))
            .collect();
        let placed = cgroups.iter().filter(|l| l.ends_with(":/P/hidden2"));
        assert!(placed.count() > 0, "{}: {o}", env.rt.name);
        assert!(
            cgroups
                .iter()
                .any(|l| l.starts_with("0::") && !l.ends_with("/P/hidden2")),
            "{}: in cgroup2 though it is hidden: {o}",
            env.rt.name
        );
        seen.push(cgroups);
    }
    assert_eq!(seen[0], seen[1], "keel (left) and runc (right) differ");
}

/// A tmpfs mounted over the container's cgroup parent in a hybrid host's
/// cgroup2 hierarchy: the cgroup2 mount is reachable but the container's
/// directory is not on it. keel refuses with the file it could not write
/// (clone3(CLONE_INTO_CGROUP) with that directory failed with EBADF),
/// and leaves nothing. keel-only: runc 1.1.5 ignores any failure to join
/// a hybrid host's cgroup2 (fs.NameGroup with Join) and runs the container
/// outside it.
#[test]
fn cgroup_dir_off_cgroup2_is_refused_naming_cgroup_procs() {
    if !hybrid() {
        eprintln!("skipped: needs a hybrid host (cgroup2 at /sys/fs/cgroup/unified)");
        return;
    }
    let mut env = TestEnv::keel();
    let parent = format!("/sys/fs/cgroup/unified/{}", env.cgroup_parent);
    in_layout(
        &mut env,
        &format!("mkdir -p '{parent}'\nmount -t tmpfs tmpfs '{parent}'"),
    );
    let b = env.bundle("offcg2");
    let o = env.run(&b);
    assert_no_leaks(&env, "offcg2");
    o.expect_fail("keel run");
    assert!(
        o.stderr
            .contains(&format!("write {parent}/offcg2/cgroup.procs: No such file")),
        "{o}"
    );
}
