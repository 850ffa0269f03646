//! Fault injection: keel built with the `failpoints` feature fails (or
//! blocks, to be killed with SIGKILL) at each main step of create, start,
//! exec and delete. A failure must be reported clearly and leave nothing
//! behind; after a kill, `keel delete --force` must clean up everything.
//! Each point below gets both:
//!
//! - create: `cgroups` (made and limited, no process yet), `cgroup-enter`
//!   (keel in the container's v1 cgroups to clone an init with a new user
//!   namespace there),
//!   `after-clone`,
//!   `cgroup-join`, `uid-map`, `mount@n` for every mount of the bundle,
//!   `pivot`, `before-exec`, `state-write` (state.json written, not yet
//!   renamed into place);
//! - start (and `run -d`): `start` (the init released, exec.fifo not yet
//!   removed);
//! - exec: `after-clone`, `cgroup-join`, `before-exec`;
//! - delete: `delete` (processes killed, cgroups there), `delete-dir`
//!   (cgroups removed, state dir there).
//!
//! The failpoint build goes to `<target>/failpoints` (built on first use),
//! or `$KEEL_FAILPOINTS_RUNTIME` names it.

use keel_conformance::{assert_no_leaks, wait_until, Output, Runtime, TestEnv, COMMAND_TIMEOUT};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

fn failpoint_keel() -> Runtime {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    let bin = BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("KEEL_FAILPOINTS_RUNTIME") {
            return PathBuf::from(p);
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(|t| workspace.join(t))
            .unwrap_or_else(|| workspace.join("target"))
            .join("failpoints");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "keel-runtime", "--features", "failpoints"])
            .arg("--target-dir")
            .arg(&target)
            .current_dir(&workspace)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building keel with failpoints failed");
        target.join("debug/keel")
    });
    Runtime {
        name: "keel",
        bin: bin.clone(),
    }
}

fn with(point: &str, env: &TestEnv, args: &[&str]) -> Output {
    env.spawn_env(args, &[("KEEL_FAILPOINT", point)])
        .and_then(|r| r.wait(COMMAND_TIMEOUT))
        .unwrap_or_else(|e| panic!("{args:?} at {point}: {e:#}"))
}

#[track_caller]
fn assert_reported(o: &Output, point: &str) {
    let name = point.split(['@', '=']).next().unwrap_or(point);
    assert!(!o.ok(), "succeeded despite failpoint {point}: {o}");
    assert!(!o.stderr.contains("panicked"), "{o}");
    assert!(
        o.stderr.contains(&format!("failpoint {name}")),
        "the error does not name failpoint {name}: {o}"
    );
}

/// Runs `args` blocked at `point`, kills keel there with SIGKILL, and
/// checks that `delete --force` then removes everything of `id`.
fn killed_at(point: &str, env: &TestEnv, id: &str, args: &[&str]) {
    let name = point.split('@').next().unwrap_or(point);
    let r = env
        .spawn_env(args, &[("KEEL_FAILPOINT", &format!("{point}=sleep"))])
        .expect("spawn");
    let reached = wait_until(Duration::from_secs(20), || {
        r.stderr_so_far()
            .contains(&format!("failpoint {name}: sleeping"))
    });
    assert!(
        reached,
        "{args:?} never reached {point}: {}",
        r.stderr_so_far()
    );
    r.signal(libc::SIGKILL).expect("kill -9");
    r.wait(COMMAND_TIMEOUT).expect("reap");
    let o = env.cmd(&["delete", "--force", id]);
    o.expect_ok(&format!("delete --force after kill -9 at {point}"));
    assert_no_leaks(env, id);
}

fn bundle(env: &TestEnv, id: &str, userns: bool) -> String {
    let mut b = env.bundle(id);
    b.sh("sleep 60");
    if userns {
        b.user_namespace();
    }
    b.save().expect("save");
    b.dir.to_string_lossy().into_owned()
}

fn create_point(point: &str, userns: bool) {
    assert!(
        try_create_point(point, userns),
        "create never reached {point}"
    );
}

/// `create_point`, or `false` if the create never reached `point` (and
/// succeeded: the container is removed again).
fn try_create_point(point: &str, userns: bool) -> bool {
    let env = TestEnv::new(failpoint_keel());
    let id = "fp";
    let bundle = bundle(&env, id, userns);
    let args = ["create", "--bundle", &bundle, id];
    let o = with(point, &env, &args);
    if o.ok() {
        env.cmd(&["delete", "--force", id])
            .expect_ok("delete --force");
        assert_no_leaks(&env, id);
        return false;
    }
    assert_reported(&o, point);
    assert_no_leaks(&env, id);
    killed_at(point, &env, id, &args);
    true
}

#[test]
fn create_after_cgroups_made() {
    create_point("cgroups", false);
}

/// keel, visiting the container's v1 cgroups so that an init in a new
/// user namespace is born there, fails or dies before the clone: it must
/// not stay in them (the cgroups would not go), and nothing else stays
/// either. (An init without one moves itself in after the clone.)
#[test]
fn create_in_the_v1_cgroups() {
    create_point("cgroup-enter", true);
}

#[test]
fn create_after_clone() {
    create_point("after-clone", false);
}

#[test]
fn create_after_cgroup_join() {
    create_point("cgroup-join", false);
}

#[test]
fn create_after_uid_map() {
    create_point("uid-map", true);
}

/// After each mount in turn, until the create runs past the last one.
#[test]
fn create_after_each_mount() {
    let mut n = 1;
    while try_create_point(&format!("mount@{n}"), false) {
        n += 1;
    }
    // proc, dev, devpts, shm, mqueue, sysfs, cgroup at least.
    assert!(n > 7, "only {} mounts had a failpoint", n - 1);
}

#[test]
fn create_after_pivot() {
    create_point("pivot", false);
}

#[test]
fn create_before_exec() {
    create_point("before-exec", false);
}

#[test]
fn create_while_writing_state() {
    create_point("state-write", false);
}

/// A running container of `env`'s failpoint keel, for start/exec/delete.
fn running(env: &TestEnv, id: &str) {
    let bundle = bundle(env, id, false);
    env.cmd(&["run", "-d", "--bundle", &bundle, id])
        .expect_ok("run -d");
}

/// The open fds of process `pid`: number and what each refers to.
fn fds_of(pid: &str) -> Vec<(String, PathBuf)> {
    let dir = format!("/proc/{pid}/fd");
    let mut fds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .flatten()
        .map(|e| {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), target)
        })
        .collect();
    fds.sort();
    fds
}

#[test]
fn exec_failpoints() {
    for point in ["after-clone", "cgroup-join", "before-exec"] {
        let env = TestEnv::new(failpoint_keel());
        running(&env, "fpexec");
        let pid = env.state("fpexec").expect("state")["pid"].to_string();
        let fds_before = fds_of(&pid);
        let o = with(point, &env, &["exec", "fpexec", "true"]);
        assert_reported(&o, point);
        // The container runs on as it was: its init has the same fds, and
        // only the init is left in it.
        assert_eq!(env.status("fpexec"), "running");
        assert_eq!(fds_of(&pid), fds_before, "the init's fds changed");
        for d in env.cgroup_dirs("fpexec") {
            if let Ok(p) = std::fs::read_to_string(d.join("cgroup.procs")) {
                assert!(p.trim().is_empty() || p.trim() == pid, "{d:?}: {p}");
            }
        }
        // Detached: a foreground exec relays the process's stderr only once
        // the library returns (as keel must fork single-threaded), so the
        // child's "sleeping" line would wait in the pipe.
        killed_at(point, &env, "fpexec", &["exec", "-d", "fpexec", "true"]);
    }
}

#[test]
fn start_failpoint() {
    let env = TestEnv::new(failpoint_keel());
    let bundle = bundle(&env, "fpstart", false);
    env.cmd(&["create", "--bundle", &bundle, "fpstart"])
        .expect_ok("create");
    let o = with("start", &env, &["start", "fpstart"]);
    assert_reported(&o, "start");
    env.cmd(&["delete", "--force", "fpstart"])
        .expect_ok("delete --force");
    assert_no_leaks(&env, "fpstart");
    env.cmd(&["create", "--bundle", &bundle, "fpstart"])
        .expect_ok("create");
    killed_at("start", &env, "fpstart", &["start", "fpstart"]);
}

/// `run -d` is create and start in one process: a start that fails takes
/// the created container down with it.
#[test]
fn run_detached_start_failpoint() {
    let env = TestEnv::new(failpoint_keel());
    let bundle = bundle(&env, "fprun", false);
    let args = ["run", "-d", "--bundle", &bundle, "fprun"];
    let o = with("start", &env, &args);
    assert_reported(&o, "start");
    assert_no_leaks(&env, "fprun");
    killed_at("start", &env, "fprun", &args);
}

#[test]
fn delete_failpoints() {
    for point in ["delete", "delete-dir"] {
        let env = TestEnv::new(failpoint_keel());
        running(&env, "fpdel");
        let o = with(point, &env, &["delete", "--force", "fpdel"]);
        assert_reported(&o, point);
        // A second delete finishes the job.
        env.cmd(&["delete", "--force", "fpdel"])
            .expect_ok("delete --force again");
        assert_no_leaks(&env, "fpdel");
        running(&env, "fpdel");
        killed_at(point, &env, "fpdel", &["delete", "--force", "fpdel"]);
    }
}

/// A delete that loaded a container's state and then waited for its lock
/// must not act on a new container created meanwhile under the same id.
#[test]
fn delayed_delete_spares_a_new_container_of_the_same_id() {
    let env = TestEnv::new(failpoint_keel());
    running(&env, "fpsame");
    let first = env.state("fpsame").expect("state")["pid"].clone();
    let late = env
        .spawn_env(
            &["delete", "--force", "fpsame"],
            &[("KEEL_FAILPOINT", "lock=delay")],
        )
        .expect("spawn");
    assert!(wait_until(Duration::from_secs(10), || {
        late.stderr_so_far().contains("failpoint lock: delaying")
    }));
    env.cmd(&["delete", "--force", "fpsame"])
        .expect_ok("delete --force");
    running(&env, "fpsame");
    let second = env.state("fpsame").expect("state")["pid"].clone();
    assert_ne!(first, second);
    let o = late.wait(COMMAND_TIMEOUT).expect("late delete");
    o.expect_ok("the late delete --force (its container is gone)");
    assert_eq!(
        env.status("fpsame"),
        "running",
        "the late delete hit the new container"
    );
    assert_eq!(env.state("fpsame").expect("state")["pid"], second);
    env.cmd(&["delete", "--force", "fpsame"])
        .expect_ok("delete --force");
    assert_no_leaks(&env, "fpsame");
}
