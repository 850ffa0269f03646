//! OCI hooks: the six kinds at their moments and in their namespaces, the
//! state JSON they read, their env, timeouts and failures; and the parts
//! runc 1.1.5 should agree on.
//!
//! Every recording hook is one shell script that appends a line per call to
//! a log: the kind (args[1]), its mount namespace, its parent's mount
//! namespace, its whole environ and its stdin. The host copy (for the hooks
//! whose path the runtime resolves) writes to the test's dir; the copy in
//! the rootfs (startContainer) writes through a bind mount of that dir.
//!
//! Known differences of runc 1.1.5 (printed by the `differential_*` tests,
//! not asserted):
//! - poststart runs during `runc create` (before startContainer, status
//!   "created"), not during `start`; keel runs it in `start`, once the
//!   program runs, as runtime-spec 1.3 and runc 1.5 (its #5186) do;
//! - createContainer and startContainer get `"pid": 1` (runc's init reads
//!   its own pid, in the container's pid namespace); the spec asks for the
//!   pid as the host sees it, which keel gives;
//! - startContainer runs after runc's `start` has been released (it may
//!   still be running when `start` returns); keel runs it before;
//! - poststop: runc leaves `pid` out; keel gives the init's former pid
//!   (the spec requires pid only for created and running);
//! - a failing poststart fails runc in create, where it runs it; keel's
//!   `start` fails and the container is stopped (runtime-spec 1.3);
//! - a failing poststop fails `runc delete`; runtime-spec 1.3 (and keel)
//!   make it a warning, and the other poststop hooks still run;
//! - a startContainer hook without `env` gets an empty environment from
//!   runc 1.1.5, the program's from runc 1.2+ and keel;
//! - a failing startContainer does not fail `runc start` (it has already
//!   returned): the container just stops; keel's `start` fails.

use keel_conformance::{
    assert_no_leaks, find_leaks, require_runc, wait_until, Bundle, Output, TestEnv,
};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SEC5: Duration = Duration::from_secs(5);
const CMD_TIMEOUT: Duration = Duration::from_secs(20);

/// The kinds, in the order the spec runs them over a container's life.
const KINDS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// The recording hook. No PATH is given to most hooks: every program is
/// named absolutely (/bin/cat etc. exist on the host, usr-merged, and as
/// busybox links in the rootfs). The shell opens its own
/// `/proc/self/environ` (a subshell's would be read after its exec, and
/// `$$` is useless to createContainer: /proc is still the host's there,
/// and the hook is in the container's pid namespace; so is `$PPID`, whose
/// namespace is only checked for the hooks run in the host's).
fn recorder_script(log: &str) -> String {
    format!(
        "#!/bin/sh\n\
         in=$(/bin/cat)\n\
         ns=$(/bin/readlink /proc/self/ns/mnt)\n\
         pns=$(/bin/readlink /proc/$PPID/ns/mnt)\n\
         exec 3< /proc/self/environ\n\
         envs=$(/bin/tr '\\0' ' ' <&3)\n\
         printf '%s\\t%s\\t%s\\t%s\\t%s\\n' \"$1\" \"$ns\" \"$pns\" \"$envs\" \"$in\" >> {log}\n"
    )
}

fn write_exec(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// One call of the recording hook.
#[derive(Debug, Clone)]
struct Call {
    kind: String,
    mnt_ns: String,
    parent_mnt_ns: String,
    /// The hook's environ, entries separated by spaces.
    env: String,
    state: Value,
}

/// Where a bundle's recording hooks log.
struct Recorder {
    dir: PathBuf,
}

impl Recorder {
    fn log(&self) -> PathBuf {
        self.dir.join("calls")
    }

    /// The calls so far (and whether the program wrote its line), in order.
    fn calls(&self) -> (Vec<Call>, Vec<String>) {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let mut calls = Vec::new();
        let mut order = Vec::new();
        for l in text.lines() {
            let f: Vec<&str> = l.split('\t').collect();
            if f.len() != 5 {
                order.push(l.to_string());
                continue;
            }
            let state = serde_json::from_str(f[4])
                .unwrap_or_else(|e| panic!("hook {} stdin is not JSON ({e}): {:?}", f[0], f[4]));
            order.push(f[0].to_string());
            calls.push(Call {
                kind: f[0].to_string(),
                mnt_ns: f[1].to_string(),
                parent_mnt_ns: f[2].to_string(),
                env: f[3].trim_end().to_string(),
                state,
            });
        }
        (calls, order)
    }

    /// Lets the program (see `record_all`) exit.
    fn release(&self) {
        std::fs::write(self.dir.join("go"), "").expect("write go file");
    }
}

/// What a hook of `kind` gets as env in `record_all`.
fn env_of(kind: &str) -> Vec<String> {
    let mut env = vec![format!("HOOK_VAR=v-{kind}")];
    // One hook is given a PATH: it must get exactly that one.
    if kind == "poststart" {
        env.push("PATH=/hook/path".into());
    }
    env
}

/// Configures all six kinds with the recording hook, and a program that
/// logs "program" and then waits for `Recorder::release`.
fn record_all(env: &TestEnv, b: &mut Bundle) -> Recorder {
    let dir = env.dir.join(format!("log-{}", b.id));
    std::fs::create_dir_all(&dir).expect("mkdir log dir");
    let rec = Recorder { dir };
    let host_script = env.dir.join(format!("hook-{}.sh", b.id));
    write_exec(&host_script, &recorder_script(&rec.log().to_string_lossy()));
    write_exec(
        &b.rootfs().join("hook.sh"),
        &recorder_script("/hooklog/calls"),
    );
    std::fs::create_dir_all(b.rootfs().join("hooklog")).expect("mkdir rootfs/hooklog");
    b.push(
        "/mounts",
        json!({ "destination": "/hooklog", "type": "bind", "source": rec.dir,
                "options": ["rbind", "rw"] }),
    );
    for kind in KINDS {
        let path = if kind == "startContainer" {
            "/hook.sh".to_string()
        } else {
            host_script.to_string_lossy().into_owned()
        };
        b.push(
            &format!("/hooks/{kind}"),
            json!({ "path": path, "args": ["recorder", kind], "env": env_of(kind) }),
        );
    }
    b.sh("echo program >> /hooklog/calls; while [ ! -e /hooklog/go ]; do sleep 0.02; done");
    rec
}

/// What a whole recorded lifecycle showed.
struct Lifecycle {
    calls: Vec<Call>,
    /// Kinds, and "program", in the order they logged.
    order: Vec<String>,
    /// The init's host pid (from `state` after create).
    pid: i64,
    /// The container's mount namespace (of that pid).
    container_ns: String,
    /// Where the calls were when `create` returned, and when `start` did.
    after_create: Vec<String>,
    after_start: Vec<String>,
    bundle: Bundle,
}

fn record_lifecycle(env: &TestEnv, id: &str) -> Lifecycle {
    let mut b = env.bundle(id);
    b.set("/annotations", json!({ "org.keel.test": "hooks" }));
    let rec = record_all(env, &mut b);
    let name = env.rt.name;

    let o = env.create(&b);
    o.expect_ok(&format!("{name} create"));
    let after_create = rec.calls().1;
    let s = env.state(id).expect("state after create");
    assert_eq!(s["status"], "created", "{name}: {s}");
    let pid = s["pid"].as_i64().expect("pid");
    let container_ns = std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
        .expect("container's mnt ns")
        .to_string_lossy()
        .into_owned();

    let o = env.cmd(&["start", id]);
    o.expect_ok(&format!("{name} start"));
    let after_start = rec.calls().1;
    // The program logs once it runs; poststart may come before or after.
    assert!(
        wait_until(SEC5, || rec.calls().1.iter().any(|l| l == "program")),
        "{name}: program never ran: {:?}",
        rec.calls().1
    );
    rec.release();
    assert!(
        env.wait_status(id, "stopped", SEC5),
        "{name}: never stopped: {:?}",
        env.state(id)
    );
    let o = env.cmd(&["delete", id]);
    o.expect_ok(&format!("{name} delete"));
    assert_no_leaks(env, id);
    let (calls, order) = rec.calls();
    eprintln!("{name} hook calls:");
    for c in &calls {
        eprintln!(
            "  {} ns={} parent_ns={} env=[{}] state={}",
            c.kind, c.mnt_ns, c.parent_mnt_ns, c.env, c.state
        );
    }
    eprintln!(
        "{name} order: {order:?} (after create {after_create:?}, after start {after_start:?})"
    );
    Lifecycle {
        calls,
        order,
        pid,
        container_ns,
        after_create,
        after_start,
        bundle: b,
    }
}

fn kinds(order: &[String]) -> Vec<&str> {
    order
        .iter()
        .map(String::as_str)
        .filter(|l| *l != "program")
        .collect()
}

fn call<'a>(l: &'a Lifecycle, kind: &str) -> &'a Call {
    let found: Vec<&Call> = l.calls.iter().filter(|c| c.kind == kind).collect();
    assert_eq!(found.len(), 1, "{kind} ran {} times", found.len());
    found[0]
}

#[test]
fn all_kinds_order_state_env_namespaces() {
    let env = TestEnv::keel();
    let l = record_lifecycle(&env, "hk");

    assert_eq!(kinds(&l.order), KINDS, "order of the hook calls");
    assert_eq!(
        kinds(&l.after_create),
        KINDS[..3],
        "create must run prestart, createRuntime, createContainer and no more"
    );
    assert_eq!(
        kinds(&l.after_start),
        KINDS[..5],
        "start must return after startContainer and poststart"
    );
    let pos = |k: &str| l.order.iter().position(|x| x == k).unwrap();
    assert!(
        pos("startContainer") < pos("program"),
        "startContainer runs before the program: {:?}",
        l.order
    );

    let bundle = l.bundle.dir.to_string_lossy().into_owned();
    for (kind, status) in [
        ("prestart", "creating"),
        ("createRuntime", "creating"),
        ("createContainer", "creating"),
        ("startContainer", "created"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ] {
        let c = call(&l, kind);
        let s = &c.state;
        assert_eq!(s["status"], status, "{kind}: {s}");
        assert_eq!(s["id"], "hk", "{kind}: {s}");
        assert_eq!(s["bundle"], bundle.as_str(), "{kind}: {s}");
        assert!(
            s["ociVersion"].as_str().is_some_and(|v| !v.is_empty()),
            "{kind}: {s}"
        );
        assert_eq!(
            s["annotations"],
            json!({ "org.keel.test": "hooks" }),
            "{kind}: {s}"
        );
        if status != "stopped" {
            assert_eq!(s["pid"], l.pid, "{kind}: pid is the init's host pid: {s}");
        }
        // Exactly the hook's env: nothing of the runtime's (PATH, the
        // marker, ...) leaks in.
        assert_eq!(c.env, env_of(kind).join(" "), "{kind}: environ");
    }

    for kind in ["createContainer", "startContainer"] {
        assert_eq!(
            call(&l, kind).mnt_ns,
            l.container_ns,
            "{kind} runs in the container's mount namespace"
        );
    }
    for kind in ["prestart", "createRuntime", "poststart", "poststop"] {
        let c = call(&l, kind);
        // poststop runs after the container is gone, from `delete`'s own
        // (new) mount namespace, which may reuse the freed inode number of
        // the container's: only its parent's namespace tells.
        if kind != "poststop" {
            assert_ne!(
                c.mnt_ns, l.container_ns,
                "{kind} must run in the runtime's mount namespace"
            );
        }
        // The runtime is the hook's parent, in the host pid namespace: the
        // hook shares its mount namespace.
        assert_eq!(
            c.mnt_ns, c.parent_mnt_ns,
            "{kind} runs in its parent's (the runtime's) mount namespace"
        );
    }
    assert_eq!(
        call(&l, "prestart").mnt_ns,
        call(&l, "createRuntime").mnt_ns,
        "prestart and createRuntime: both in the creating runtime's namespace"
    );
}

/// A host script that "sleeps 10" as a shell loop, so that the process the
/// runtime must kill carries the test dir on its command line (the leak
/// checker finds it if it survives).
fn sleeper(env: &TestEnv) -> String {
    let p = env.dir.join("sleeper.sh");
    write_exec(
        &p,
        "#!/bin/sh\ni=0\nwhile [ $i -lt 50 ]; do /bin/sleep 0.2; i=$((i+1)); done\n",
    );
    p.to_string_lossy().into_owned()
}

#[test]
fn create_runtime_timeout() {
    let env = TestEnv::keel();
    let mut b = env.bundle("hto");
    b.sh("sleep 60");
    let path = sleeper(&env);
    b.push(
        "/hooks/createRuntime",
        json!({ "path": path, "args": ["sleeper"], "timeout": 1 }),
    );
    b.save().expect("save");
    let bundle = b.dir.to_string_lossy().into_owned();
    let t = Instant::now();
    let o = env
        .spawn(&["create", "--bundle", &bundle, "hto"])
        .expect("spawn create")
        .wait(CMD_TIMEOUT)
        .expect("create finishes");
    let took = t.elapsed();
    o.expect_fail("create with a hook over its timeout");
    assert!(
        took < Duration::from_secs(5),
        "create took {took:?}: the timeout (1 s) was not applied"
    );
    assert!(
        o.stderr.contains(
            "error running createRuntime hook #0: hook ran past specified timeout of 1.0s"
        ),
        "{o}"
    );
    assert_no_leaks(&env, "hto");
    env.cmd(&["state", "hto"])
        .expect_fail("state of a failed create");
}

/// `exit 1` as a hook; `/bin/sh` is the host's or the rootfs's busybox.
fn failing() -> Value {
    json!({ "path": "/bin/sh", "args": ["sh", "-c", "exit 1"] })
}

#[test]
fn fatal_hook_failures_fail_create() {
    let env = TestEnv::keel();
    for kind in ["prestart", "createRuntime", "createContainer"] {
        let id = format!("hf-{}", kind.to_lowercase());
        let mut b = env.bundle(&id);
        b.sh("sleep 60");
        b.push(&format!("/hooks/{kind}"), failing());
        let o = env.create(&b);
        o.expect_fail(&format!("create with a failing {kind} hook"));
        // runc's words (the hook's output would follow stdout: and stderr:).
        let words = format!("error running {kind} hook #0: exit status 1, stdout: , stderr: ");
        assert!(o.stderr.contains(&words), "{o}");
        assert_no_leaks(&env, &id);
        env.cmd(&["state", &id])
            .expect_fail("state of a failed create");
    }
}

#[test]
fn failing_start_container_fails_start() {
    let env = TestEnv::keel();
    let mut b = env.bundle("hfs");
    b.sh("sleep 60");
    b.push("/hooks/startContainer", failing());
    env.create(&b).expect_ok("create");
    let o = env.cmd(&["start", "hfs"]);
    o.expect_fail("start with a failing startContainer hook");
    assert!(
        env.wait_status("hfs", "stopped", SEC5),
        "container not stopped after a failed start: {:?}",
        env.state("hfs")
    );
    env.cmd(&["delete", "hfs"]).expect_ok("delete");
    assert_no_leaks(&env, "hfs");
}

/// runtime-spec 1.3: a failing poststart hook is an error, and the
/// container is stopped (runc 1.1.5 fails too, but in `create`).
#[test]
fn failing_poststart_stops_the_container() {
    let env = TestEnv::keel();
    let mut b = env.bundle("hps");
    b.sh("sleep 60");
    b.push("/hooks/poststart", failing());
    env.create(&b).expect_ok("create");
    let o = env.cmd(&["start", "hps"]);
    o.expect_fail("start with a failing poststart hook");
    assert!(
        o.stderr
            .contains("error running poststart hook #0: exit status 1, stdout: , stderr: "),
        "{o}"
    );
    assert_eq!(env.status("hps"), "stopped", "the container was stopped");
    env.cmd(&["delete", "hps"]).expect_ok("delete");
    assert_no_leaks(&env, "hps");
}

/// runtime-spec 1.3: a failing poststop hook is a warning; the hooks after
/// it still run and the container is deleted.
#[test]
fn failing_poststop_is_a_warning_and_the_rest_run() {
    let env = TestEnv::keel();
    let mut b = env.bundle("hpw");
    b.sh("true");
    let mark = env.dir.join("second-poststop-ran");
    b.push("/hooks/poststop", failing());
    b.push(
        "/hooks/poststop",
        json!({ "path": "/bin/touch", "args": ["touch", mark] }),
    );
    env.create(&b).expect_ok("create");
    env.cmd(&["start", "hpw"]).expect_ok("start");
    assert!(env.wait_status("hpw", "stopped", SEC5));
    let o = env.cmd(&["delete", "hpw"]);
    o.expect_ok("delete with a failing poststop hook");
    assert!(
        o.stderr.contains(
            r#"level=warning msg="error running poststop hook #0: exit status 1, stdout: , stderr: ""#
        ),
        "{o}"
    );
    assert!(mark.exists(), "the second poststop hook ran");
    env.cmd(&["state", "hpw"])
        .expect_fail("state of a deleted container");
    assert_no_leaks(&env, "hpw");
}

/// poststart runs once the program does (runtime-spec 1.3; runc 1.5, its
/// #5186): the init's pid the hook reads already runs the program, not
/// keel. (The hook's output is kept by the runtime, as runc keeps it: it
/// writes to a file.)
#[test]
fn poststart_sees_the_program() {
    let env = TestEnv::keel();
    let mut b = env.bundle("hpp");
    b.set("/process/args", json!(["sleep", "60"]));
    let out = env.dir.join("poststart-saw");
    b.push(
        "/hooks/poststart",
        json!({ "path": "/bin/sh", "args": ["sh", "-c", format!(
            "pid=$(/bin/sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/'); \
             /bin/tr '\\0' ' ' < /proc/$pid/cmdline > {}", out.display())] }),
    );
    env.create(&b).expect_ok("create");
    env.cmd(&["start", "hpp"]).expect_ok("start");
    let saw = std::fs::read_to_string(&out).expect("the hook's record");
    assert_eq!(saw, "sleep 60 ");
    env.cmd(&["delete", "--force", "hpp"]).expect_ok("delete");
    assert_no_leaks(&env, "hpp");
}

/// A startContainer hook without `env` gets the program's environment, HOME
/// included (runc 1.2+: the hook inherits its init's environment,
/// libcontainer/standard_init_linux.go; runc 1.1.5 gives it none).
#[test]
fn start_container_hook_gets_the_process_env() {
    let env = TestEnv::keel();
    let mut b = env.bundle("hse");
    b.sh("true");
    b.push("/process/env", json!("ONE=two"));
    std::fs::create_dir_all(b.rootfs().join("hooklog")).expect("mkdir");
    b.push(
        "/hooks/startContainer",
        json!({ "path": "/bin/sh", "args": ["sh", "-c", "echo $ONE $HOME > /hooklog/env"] }),
    );
    b.set("/root/readonly", json!(false));
    let o = env.run(&b);
    o.expect_ok("run");
    let seen = std::fs::read_to_string(b.rootfs().join("hooklog/env")).expect("hook's record");
    assert_eq!(seen, "two /\n");
    assert_no_leaks(&env, "hse");
}

/// createContainer hooks run from the rootfs (its host path), as runc's.
#[test]
fn create_container_hook_runs_in_the_rootfs() {
    let mut results = Vec::new();
    let mut envs = vec![TestEnv::keel()];
    if let Some(runc) = require_runc!() {
        envs.push(TestEnv::new(runc));
    }
    for env in &envs {
        let mut b = env.bundle("hcc");
        b.sh("true");
        b.set("/root/readonly", json!(false));
        b.push(
            "/hooks/createContainer",
            json!({ "path": "/bin/sh", "args": ["sh", "-c", "/bin/pwd -P > cwd"] }),
        );
        env.run(&b).expect_ok(&format!("{} run", env.rt.name));
        let rootfs = std::fs::canonicalize(b.rootfs()).expect("rootfs");
        let cwd = std::fs::read_to_string(b.rootfs().join("cwd")).expect("hook's record");
        assert_eq!(cwd.trim_end(), rootfs.to_string_lossy(), "{}", env.rt.name);
        assert_no_leaks(env, "hcc");
        results.push(env.rt.name);
    }
    eprintln!("createContainer ran in the rootfs under {results:?}");
}

#[test]
fn differential_with_runc() {
    let Some(runc) = require_runc!() else { return };
    let keel_env = TestEnv::keel();
    let runc_env = TestEnv::new(runc);
    let k = record_lifecycle(&keel_env, "hd");
    let r = record_lifecycle(&runc_env, "hd");

    // The kinds all ran once, each with the same status; runc 1.1.5 runs
    // poststart during create (see the top of the file), so its order is
    // compared with poststart left out.
    let without_poststart = |l: &Lifecycle| -> Vec<String> {
        kinds(&l.order)
            .into_iter()
            .filter(|k| *k != "poststart")
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(kinds(&k.order), KINDS, "keel order");
    assert_eq!(
        without_poststart(&k),
        without_poststart(&r),
        "order of kinds"
    );
    if kinds(&r.order) != KINDS {
        eprintln!(
            "runc 1.1.5 differs from the spec: hook order {:?}",
            kinds(&r.order)
        );
    }
    for kind in KINDS {
        let (kc, rc) = (call(&k, kind), call(&r, kind));
        let (ks, rs) = (&kc.state["status"], &rc.state["status"]);
        if kind == "poststart" && ks != rs {
            eprintln!("poststart status: keel {ks} runc {rs} (runc runs it in create)");
        } else {
            assert_eq!(ks, rs, "{kind} status");
        }
        assert_eq!(kc.env, rc.env, "{kind} environ");
        assert_eq!(kc.state["id"], rc.state["id"], "{kind} id");
        for (l, c) in [(&k, kc), (&r, rc)] {
            assert_eq!(
                c.state["bundle"],
                json!(l.bundle.dir),
                "{kind} bundle, {c:?}"
            );
        }
        if kind == "prestart" || kind == "createRuntime" {
            assert_eq!(kc.state["pid"], k.pid, "keel {kind} pid");
            assert_eq!(rc.state["pid"], r.pid, "runc {kind} pid");
        }
        // poststop runs once the container is gone, from `delete`'s own new
        // mount namespace, which may reuse the freed inode number of the
        // container's: there, whether it shares its parent's tells.
        let where_ = |l: &Lifecycle, c: &Call| {
            if kind == "poststop" {
                c.mnt_ns == c.parent_mnt_ns
            } else {
                c.mnt_ns == l.container_ns
            }
        };
        let in_container = where_(&k, kc);
        assert_eq!(
            in_container,
            where_(&r, rc),
            "{kind}: in the container's mount namespace (poststop: in its parent's) under keel: {in_container}"
        );
    }

    for kind in ["prestart", "createRuntime", "createContainer"] {
        for env in [&keel_env, &runc_env] {
            let id = format!("hdf-{}", kind.to_lowercase());
            let mut b = env.bundle(&id);
            b.sh("sleep 60");
            b.push(&format!("/hooks/{kind}"), failing());
            let o = env.create(&b);
            o.expect_fail(&format!("{} create with a failing {kind}", env.rt.name));
            assert_no_leaks(env, &id);
        }
    }
}

/// Failures of the hooks that are warnings for the spec (poststart,
/// poststop) and of startContainer: keel's behaviour is asserted (as in the
/// keel-only tests above), runc's printed.
#[test]
fn differential_late_failures() {
    let Some(runc) = require_runc!() else { return };
    let keel_env = TestEnv::keel();
    let runc_env = TestEnv::new(runc);
    for env in [&keel_env, &runc_env] {
        let name = env.rt.name;
        let is_keel = name == "keel";

        let mut b = env.bundle("hdw");
        b.sh("sleep 60");
        b.push("/hooks/poststart", failing());
        let create = env.create(&b);
        let start = if create.ok() {
            Some(env.cmd(&["start", "hdw"]))
        } else {
            None
        };
        let status = env.status("hdw");
        eprintln!(
            "{name} failing poststart: create exit {}, start exit {:?}, status {status:?}",
            create.code,
            start.as_ref().map(|o| o.code)
        );
        if is_keel {
            create.expect_ok("create");
            start
                .expect("start ran")
                .expect_fail("start with a failing poststart");
            assert_eq!(status, "stopped");
        } else if !start.as_ref().is_some_and(Output::ok) {
            // runc 1.1.5 runs poststart in create, and on failure kills
            // the container and fails create; keel fails start.
            eprintln!(
                "runc 1.1.5 fails create on a failing poststart\n{}",
                start.as_ref().unwrap_or(&create)
            );
        }
        let _ = env.cmd(&["delete", "--force", "hdw"]);
        print_or_assert_no_leaks(env, "hdw");

        let mut b = env.bundle("hdp");
        b.sh("true");
        b.push("/hooks/poststop", failing());
        env.create(&b).expect_ok(&format!("{name} create"));
        env.cmd(&["start", "hdp"])
            .expect_ok(&format!("{name} start"));
        assert!(
            env.wait_status("hdp", "stopped", SEC5),
            "{name}: not stopped"
        );
        let delete = env.cmd(&["delete", "hdp"]);
        eprintln!("{name} failing poststop: delete exit {}", delete.code);
        if is_keel {
            delete.expect_ok("delete with a failing poststop");
        } else if !delete.ok() {
            eprintln!(
                "runc 1.1.5 differs from the spec: a failing poststop fails delete\n{delete}"
            );
        }
        print_or_assert_no_leaks(env, "hdp");

        let mut b = env.bundle("hds");
        b.sh("sleep 60");
        b.push("/hooks/startContainer", failing());
        env.create(&b)
            .expect_ok(&format!("{name} create with a failing startContainer"));
        let start = env.cmd(&["start", "hds"]);
        let stopped = env.wait_status("hds", "stopped", SEC5);
        eprintln!(
            "{name} failing startContainer: start exit {}, stopped: {stopped}",
            start.code
        );
        assert!(stopped, "{name}: the container must not run its program");
        if is_keel {
            start.expect_fail("start with a failing startContainer");
        }
        env.cmd(&["delete", "hds"])
            .expect_ok(&format!("{name} delete"));
        print_or_assert_no_leaks(env, "hds");
    }
}

/// keel must leave nothing; runc's leaks are printed (its env cleans up).
fn print_or_assert_no_leaks(env: &TestEnv, id: &str) {
    if env.rt.name == "keel" {
        assert_no_leaks(env, id);
    } else {
        wait_until(SEC5, || find_leaks(env, id).is_empty());
        for l in find_leaks(env, id) {
            eprintln!("runc left behind: {l}");
        }
    }
}

/// A state JSON bigger than a pipe's buffer (large annotations), given to
/// a hook that never reads its stdin: the timeout must still apply.
#[test]
fn timeout_with_unread_large_state() {
    let env = TestEnv::keel();
    let mut b = env.bundle("htbig");
    b.sh("sleep 60");
    b.set("/annotations", json!({ "big": "x".repeat(256 * 1024) }));
    let path = sleeper(&env);
    b.push(
        "/hooks/createRuntime",
        json!({ "path": path, "args": ["sleeper"], "timeout": 1 }),
    );
    b.save().expect("save");
    let bundle = b.dir.to_string_lossy().into_owned();
    let t = Instant::now();
    let o = env
        .spawn(&["create", "--bundle", &bundle, "htbig"])
        .expect("spawn create")
        .wait(CMD_TIMEOUT)
        .expect("create finishes");
    let took = t.elapsed();
    o.expect_fail("create with a hook over its timeout");
    assert!(took < Duration::from_secs(5), "create took {took:?}");
    assert!(
        o.stderr.contains("error running createRuntime hook #0"),
        "{o}"
    );
    assert_no_leaks(&env, "htbig");
}

/// A hook may exit without reading its (large) stdin: not an error, and in
/// particular no SIGPIPE for whoever ran it (the runtime, or the init for
/// createContainer and startContainer).
#[test]
fn hooks_that_ignore_a_large_stdin() {
    let env = TestEnv::keel();
    let mut b = env.bundle("hbig");
    b.sh("echo program-ran");
    b.set("/annotations", json!({ "big": "x".repeat(256 * 1024) }));
    for kind in KINDS {
        b.push(
            &format!("/hooks/{kind}"),
            json!({ "path": "/bin/true", "args": ["true"] }),
        );
    }
    // And one that does read it gets all of it.
    let copy = env.dir.join("big-state.json");
    b.push(
        "/hooks/prestart",
        json!({ "path": "/bin/sh",
                "args": ["sh", "-c", format!("/bin/cat > {}", copy.display())] }),
    );
    let o = env.run(&b);
    o.expect_ok("run with hooks that do not read stdin");
    assert_eq!(o.stdout, "program-ran\n", "{o}");
    let text = std::fs::read_to_string(&copy).expect("the reading hook's copy");
    let state: Value = serde_json::from_str(&text).expect("whole state JSON");
    assert_eq!(
        state["annotations"]["big"].as_str().map(str::len),
        Some(256 * 1024)
    );
    assert_no_leaks(&env, "hbig");
}
