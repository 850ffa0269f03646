//! `linux.personality`, `process.ioPriority`, `process.scheduler`,
//! `process.execCPUAffinity` and `linux.memoryPolicy`, observed from inside
//! the container, for the init and for `exec`. runc 1.1 (Debian's) predates
//! all five: it ignores them (uname -m x86_64, ionice "none: prio 0", nice
//! and policy 0, numa_maps "default"), so there is no runc behaviour to
//! compare with here.

use keel_conformance::{assert_no_leaks, Bundle, TestEnv};
use serde_json::{json, Value};

/// Links busybox applets the default bundle lacks.
fn applets(b: &Bundle, names: &[&str]) {
    for n in names {
        let link = b.rootfs().join("bin").join(n);
        std::os::unix::fs::symlink("busybox", &link).expect("symlink applet");
    }
}

/// `run -d` of `sleep` with `process` fields merged in; the output of
/// `script` run by the init (through a file it writes) and by `exec`.
fn init_and_exec(env: &TestEnv, id: &str, set: &[(&str, Value)], script: &str) -> (String, String) {
    let mut b = env.bundle(id);
    applets(&b, &["ionice", "taskset"]);
    b.set("/root/readonly", json!(false));
    b.sh(&format!("({script}) >/init.out 2>&1; exec sleep 1000"));
    for (ptr, v) in set {
        b.set(ptr, v.clone());
    }
    env.run_with(&b, &["-d"]).expect_ok("run -d");
    let out = b.rootfs().join("init.out");
    assert!(keel_conformance::wait_until(
        std::time::Duration::from_secs(10),
        || std::fs::metadata(&out).is_ok_and(|m| m.len() > 0)
    ));
    let init = std::fs::read_to_string(&out).expect("init output");
    let exec = env.cmd(&["exec", id, "sh", "-c", script]);
    exec.expect_ok("exec");
    env.cmd(&["delete", "--force", id]).expect_ok("delete");
    assert_no_leaks(env, id);
    (init, exec.stdout)
}

#[test]
fn personality_linux32() {
    let env = TestEnv::keel();
    let (init, exec) = init_and_exec(
        &env,
        "pers",
        &[("/linux/personality", json!({"domain": "LINUX32"}))],
        "uname -m",
    );
    assert_eq!((init.as_str(), exec.as_str()), ("i686\n", "i686\n"));
}

#[test]
fn io_priority() {
    let env = TestEnv::keel();
    let (init, exec) = init_and_exec(
        &env,
        "ioprio",
        &[(
            "/process/ioPriority",
            json!({"class": "IOPRIO_CLASS_BE", "priority": 6}),
        )],
        "ionice",
    );
    assert_eq!(init, "best-effort: prio 6\n");
    assert_eq!(exec, init);
}

#[test]
fn scheduler_batch_with_nice() {
    let env = TestEnv::keel();
    // Fields 19 and 41 of /proc/<pid>/stat: nice and policy (3 = BATCH).
    let (init, exec) = init_and_exec(
        &env,
        "sched",
        &[(
            "/process/scheduler",
            json!({"policy": "SCHED_BATCH", "nice": 5}),
        )],
        "cut -d ' ' -f 19,41 /proc/self/stat",
    );
    assert_eq!(init, "5 3\n");
    assert_eq!(exec, init);
}

/// Scheduler flags in the runtime-spec's spelling (`SCHED_FLAG_*`, as
/// runc's and every engine's specs-go writes them) reach sched_setattr:
/// with SCHED_FLAG_RESET_ON_FORK the shell keeps nice -5 (field 19 of
/// /proc/<pid>/stat) and its children start at 0.
#[test]
fn scheduler_flags_runtime_spec_names() {
    let env = TestEnv::keel();
    let (init, exec) = init_and_exec(
        &env,
        "schedflags",
        &[(
            "/process/scheduler",
            json!({"policy": "SCHED_OTHER", "nice": -5, "flags": ["SCHED_FLAG_RESET_ON_FORK"]}),
        )],
        "cut -d ' ' -f 19 /proc/$$/stat /proc/self/stat; true",
    );
    assert_eq!(init, "-5\n0\n");
    assert_eq!(exec, init);
}

#[test]
fn bad_scheduler_and_io_priority_name_the_field() {
    let env = TestEnv::keel();
    for (ptr, v, field) in [
        (
            "/process/scheduler",
            json!({"policy": "SCHED_FIFO"}),
            "process.scheduler.priority",
        ),
        (
            "/process/ioPriority",
            json!({"class": "IOPRIO_CLASS_BE", "priority": 9}),
            "process.ioPriority.priority",
        ),
    ] {
        let mut b = env.bundle("badtune");
        b.set(ptr, v);
        let o = env.run(&b);
        o.expect_fail(field);
        assert!(o.stderr.contains(field), "{o}");
        assert_no_leaks(&env, "badtune");
    }
}

/// execCPUAffinity.final pins an exec'd process; the init, which the spec
/// leaves out, keeps the container's CPUs.
#[test]
fn exec_cpu_affinity_final() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        eprintln!("SKIPPED exec_cpu_affinity_final: needs 2 CPUs, have {cpus}");
        return;
    }
    let env = TestEnv::keel();
    let mut b = env.bundle("affinity");
    b.set("/process/args", json!(["sleep", "1000"]));
    b.set(
        "/process/execCPUAffinity",
        json!({"initial": "0", "final": "1"}),
    );
    env.run_with(&b, &["-d"]).expect_ok("run -d");
    let all = std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|l| {
            l.strip_prefix("Cpus_allowed_list:")
                .map(|v| v.trim().to_string())
        })
        .expect("Cpus_allowed_list");
    let list = "grep Cpus_allowed_list /proc/self/status | cut -f 2";
    let o = env.cmd(&["exec", "affinity", "sh", "-c", list]);
    assert_eq!(o.stdout, "1\n", "{o}");
    let init = env.cmd(&["exec", "affinity", "cat", "/proc/1/status"]);
    let init_list = init
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(str::trim);
    assert_eq!(init_list, Some(all.as_str()), "{init}");
    env.cmd(&["delete", "--force", "affinity"])
        .expect_ok("delete");
    assert_no_leaks(&env, "affinity");
}

/// The policy field of the first line of numa_maps: "interleave:0",
/// "bind=static:0", "local", ... (the kernel's mpol_to_str).
const NUMA_POLICY: &str = "head -n 1 /proc/self/numa_maps | cut -d ' ' -f 2";

/// runc 1.4 `tests/integration/memorypolicy.bats`: "interleave without flags".
#[test]
fn memory_policy_interleave() {
    let env = TestEnv::keel();
    let (init, exec) = init_and_exec(
        &env,
        "mpol-il",
        &[(
            "/linux/memoryPolicy",
            json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"}),
        )],
        NUMA_POLICY,
    );
    assert_eq!(
        (init.as_str(), exec.as_str()),
        ("interleave:0\n", "interleave:0\n")
    );
}

/// runc 1.4 memorypolicy.bats: "bind static" (a flag is part of the mode).
#[test]
fn memory_policy_bind_static() {
    let env = TestEnv::keel();
    let (init, exec) = init_and_exec(
        &env,
        "mpol-bind",
        &[(
            "/linux/memoryPolicy",
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}),
        )],
        NUMA_POLICY,
    );
    assert_eq!(
        (init.as_str(), exec.as_str()),
        ("bind=static:0\n", "bind=static:0\n")
    );
}

/// MPOL_PREFERRED with an empty node list is the kernel's local allocation
/// (set_mempolicy(2)); runc 1.4 passes it through (its validator lets
/// MPOL_PREFERRED have zero nodes).
#[test]
fn memory_policy_preferred_without_nodes() {
    let env = TestEnv::keel();
    let (init, exec) = init_and_exec(
        &env,
        "mpol-pref",
        &[(
            "/linux/memoryPolicy",
            json!({"mode": "MPOL_PREFERRED", "nodes": ""}),
        )],
        NUMA_POLICY,
    );
    assert_eq!((init.as_str(), exec.as_str()), ("local\n", "local\n"));
}

/// Bad policies are refused before anything is made, with runc 1.4's words
/// (libcontainer/specconv/spec_linux.go and its validator).
#[test]
fn memory_policy_refused_with_runcs_words() {
    let env = TestEnv::keel();
    for (mp, words) in [
        (json!({"nodes": "0-7"}), r#"invalid memory policy mode """#),
        (
            json!({"mode": "INTERLEAVE", "nodes": "0"}),
            r#"invalid memory policy mode "INTERLEAVE""#,
        ),
        (
            json!({"mode": "MPOL_PREFERRED", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES", "badflag"]}),
            r#"invalid memory policy flag "badflag""#,
        ),
        (
            json!({"mode": "MPOL_DEFAULT", "nodes": "0-7"}),
            "mode requires 0 nodes but got 8",
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0-9876543210"}),
            "invalid memory policy nodes",
        ),
    ] {
        let mut b = env.bundle("badmpol");
        b.set("/linux/memoryPolicy", mp);
        let o = env.run(&b);
        o.expect_fail(words);
        // The log line quotes the message, escaping its quotes.
        assert!(o.stderr.contains(&words.replace('"', "\\\"")), "{o}");
        assert_no_leaks(&env, "badmpol");
    }
}
