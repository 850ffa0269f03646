//! The library's `Executor` hook: the embedder's code runs in the fully
//! set-up container process instead of execve, for the init and for an
//! exec'd process, under a seccomp profile that denies execve itself and
//! keel's setup system calls.
//!
//! Without the test harness (`harness = false`): `create` and `exec` fork
//! and take the single-threaded process's `libkeel::Runtime`.

use keel_conformance::{assert_no_leaks, Bundle, TestEnv};
use libkeel::{Container, ContainerBuilder, ExecOptions, Executor, Invocation, Runtime};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use serde_json::json;
use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::Path;

/// Reports where it runs on stdout and exits 7.
struct Probe;

impl Executor for Probe {
    fn validate(&self, inv: &Invocation) -> Result<(), String> {
        match inv.args.first().map(|a| a.as_bytes()) {
            Some(b"/no/such/module.wasm") => Err("no module /no/such/module.wasm".into()),
            _ => Ok(()),
        }
    }

    fn run(&self, inv: &Invocation) -> i32 {
        let args: Vec<_> = inv.args.iter().map(|a| a.to_string_lossy()).collect();
        let var = inv
            .env
            .iter()
            .find_map(|e| e.to_str().ok()?.strip_prefix("FOO=").map(str::to_owned));
        let cwd = std::env::current_dir().map(|d| d.display().to_string());
        let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned());
        let image = Path::new("/from-the-image").exists();
        let true_ = CString::new("/bin/true").unwrap_or_default();
        let execve = nix::unistd::execv(&true_, &[&true_]).err();
        println!(
            "args={} var={var:?} uid={} cwd={cwd:?} host={host:?} image={image} execve={execve:?}",
            args.join(","),
            nix::unistd::getuid(),
        );
        7
    }
}

/// Waits for a signal: an init that needs no execve either.
struct Pause;

impl Executor for Pause {
    fn run(&self, _: &Invocation) -> i32 {
        nix::unistd::pause();
        0
    }
}

/// Denies execve and the system calls of keel's setup that a program
/// never needs: none of them may run after the filter.
fn profile() -> serde_json::Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{
            "names": ["execve", "execveat", "chdir", "fchdir", "setgroups", "setresuid",
                      "setresgid", "umask", "personality", "access", "faccessat",
                      "faccessat2", "capget", "keyctl", "close_range", "sethostname",
                      "sendto", "sendmsg", "recvfrom", "recvmsg"],
            "action": "SCMP_ACT_ERRNO"
        }]
    })
}

fn bundle(env: &TestEnv, id: &str, args: serde_json::Value) -> Bundle {
    let mut b = env.bundle(id);
    b.set("/process/args", args);
    b.set("/process/env", json!(["PATH=/bin", "FOO=bar"]));
    b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
    b.set("/process/cwd", json!("/tmp"));
    b.set("/hostname", json!("exechost"));
    b.set("/linux/seccomp", profile());
    std::fs::write(b.rootfs().join("from-the-image"), "").expect("marker");
    b.save().expect("save");
    b
}

/// stdin from /dev/null, stdout and stderr to files of the test's.
fn stdio(env: &TestEnv, name: &str) -> [OwnedFd; 3] {
    let null = std::fs::File::open("/dev/null").expect("/dev/null");
    let out = std::fs::File::create(env.dir.join(format!("{name}.out"))).expect("out");
    let err = std::fs::File::create(env.dir.join(format!("{name}.err"))).expect("err");
    [null.into(), out.into(), err.into()]
}

fn output(env: &TestEnv, name: &str) -> String {
    let read = |ext| std::fs::read_to_string(env.dir.join(format!("{name}.{ext}")));
    format!(
        "{}{}",
        read("out").unwrap_or_default(),
        read("err").unwrap_or_default()
    )
}

const EXPECTED: &str = "args=/app.wasm,arg var=Some(\"bar\") uid=1000 cwd=Ok(\"/tmp\") \
                        host=Ok(\"exechost\") image=true execve=Some(EPERM)\n";

fn exit_status(pid: i32) -> WaitStatus {
    waitpid(Pid::from_raw(pid), None).expect("waitpid")
}

/// The init runs the executor once started: args without a $PATH lookup,
/// the container's env, user, cwd, hostname and root, under the filter.
fn init_runs_the_executor(rt: &Runtime) {
    let env = TestEnv::keel();
    let b = bundle(&env, "execinit", json!(["/app.wasm", "arg"]));
    let [i, o, e] = stdio(&env, "init");
    let c = ContainerBuilder::new("execinit", &b.dir)
        .root(&env.root)
        .stdio(i, o, e)
        .executor(Probe)
        .create(rt)
        .expect("create");
    assert_eq!(output(&env, "init"), "", "ran before start");
    c.start().expect("start");
    assert_eq!(
        exit_status(c.pid()),
        WaitStatus::Exited(Pid::from_raw(c.pid()), 7)
    );
    assert_eq!(output(&env, "init"), EXPECTED);
    c.delete(true).expect("delete");
    assert_no_leaks(&env, "execinit");
    eprintln!("ok    init_runs_the_executor");
}

/// An exec'd process runs its executor right away (in a container whose
/// init, under the same filter, is one too).
fn exec_runs_the_executor(rt: &Runtime) {
    let env = TestEnv::keel();
    let b = bundle(&env, "execexec", json!(["pause"]));
    let c = ContainerBuilder::new("execexec", &b.dir)
        .root(&env.root)
        .executor(Pause)
        .create(rt)
        .expect("create");
    c.start().expect("start");
    let mut process = c.process().cloned().expect("process");
    process.set_args(Some(vec!["/app.wasm".into(), "arg".into()]));
    let mut c = Container::load(&env.root, "execexec").expect("load");
    let started = c
        .exec(
            rt,
            &process,
            ExecOptions {
                stdio: Some(stdio(&env, "exec")),
                executor: Some(Box::new(Probe)),
                ..Default::default()
            },
        )
        .expect("exec");
    assert_eq!(
        exit_status(started.pid),
        WaitStatus::Exited(Pid::from_raw(started.pid), 7)
    );
    assert_eq!(output(&env, "exec"), EXPECTED);
    c.kill(libkeel::Signal::SIGKILL as i32, false)
        .expect("kill");
    let _ = exit_status(c.pid());
    c.delete(true).expect("delete");
    assert_no_leaks(&env, "execexec");
    eprintln!("ok    exec_runs_the_executor");
}

/// A refusal of `validate` fails create with its words, leaving nothing.
fn validate_refusal_fails_create(rt: &Runtime) {
    let env = TestEnv::keel();
    let b = bundle(&env, "execbad", json!(["/no/such/module.wasm"]));
    let err = ContainerBuilder::new("execbad", &b.dir)
        .root(&env.root)
        .executor(Probe)
        .create(rt)
        .expect_err("created with a refused module");
    assert_eq!(
        err.to_string(),
        "unable to start container process: no module /no/such/module.wasm"
    );
    assert_no_leaks(&env, "execbad");
    eprintln!("ok    validate_refusal_fails_create");
}

fn main() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP  library_executor: needs root (it creates containers)");
        return;
    }
    let rt = Runtime::init().expect("libkeel::Runtime::init");
    init_runs_the_executor(&rt);
    exec_runs_the_executor(&rt);
    validate_refusal_fails_create(&rt);
}
