//! `linux.seccomp`: real busybox containers under Docker's default profile
//! and under small deny profiles, observed from inside; the same scripts
//! under runc when it is installed.

use keel_conformance::{assert_no_leaks, require_runc, Bundle, Output, Runtime, TestEnv};
use serde_json::{json, Value};

/// Docker's default profile for amd64 (see the fixture's README).
fn docker_profile() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../libcontainer/tests/fixtures/seccomp/docker-default.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("fixture JSON")
}

/// mkdir (both syscalls libc may use) denied with EPERM, uname and chmod
/// with errno 42 (ENOMSG), everything else allowed. busybox's uname prints
/// an empty line without the errno when uname(2) fails; chmod shows it.
fn deny_profile() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42},
            {"names": ["chmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}
        ]
    })
}

fn run_in(env: &TestEnv, id: &str, profile: Value, nnp: bool, script: &str) -> Output {
    let mut b: Bundle = env.bundle(id);
    b.sh(script);
    b.set("/linux/seccomp", profile);
    b.set("/process/noNewPrivileges", json!(nnp));
    // Writable /tmp for mkdir.
    b.push(
        "/mounts",
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}),
    );
    let o = env.run(&b);
    assert_no_leaks(env, id);
    o
}

const DENY_SCRIPT: &str = "mkdir /tmp/d; echo mkdir=$?; uname -s; echo uname=$?; \
                           chmod 700 /tmp; echo chmod=$?; \
                           grep -E '^Seccomp(_filters)?:' /proc/self/status | tr '\\t' ' '";

fn check_deny(o: &Output, rt: &str) {
    assert_eq!(
        o.stdout, "mkdir=1\n\nuname=0\nchmod=1\nSeccomp: 2\nSeccomp_filters: 1\n",
        "{rt}: {o}"
    );
    assert!(
        o.stderr.contains("Operation not permitted"),
        "{rt}: mkdir error: {o}"
    );
    assert!(
        o.stderr.contains("No message of desired type"),
        "{rt}: chmod's errno 42: {o}"
    );
}

#[test]
fn deny_profile_with_errno_values() {
    let env = TestEnv::keel();
    for nnp in [true, false] {
        let o = run_in(&env, "scdeny", deny_profile(), nnp, DENY_SCRIPT);
        o.expect_ok("run under the deny profile");
        check_deny(&o, &format!("keel nnp={nnp}"));
    }
}

#[test]
fn deny_profile_same_as_runc() {
    let Some(runc) = require_runc!() else { return };
    let env = TestEnv::new(runc);
    let o = run_in(&env, "scdenyr", deny_profile(), true, DENY_SCRIPT);
    check_deny(&o, "runc");
}

const DOCKER_SCRIPT: &str = "uname -s; mkdir /tmp/d && echo mkdir-ok; \
    unshare -m true 2>/dev/null && echo unshare-ok || echo unshare-denied; \
    ls / >/dev/null && echo ls-ok; \
    grep -E '^Seccomp:' /proc/self/status | tr '\\t' ' '";

const DOCKER_EXPECTED: &str = "Linux\nmkdir-ok\nunshare-denied\nls-ok\nSeccomp: 2\n";

#[test]
fn docker_default_profile() {
    let env = TestEnv::keel();
    for nnp in [true, false] {
        let o = run_in(&env, "scdocker", docker_profile(), nnp, DOCKER_SCRIPT);
        o.expect_ok("run under Docker's profile");
        assert_eq!(o.stdout, DOCKER_EXPECTED, "nnp={nnp}: {o}");
    }
}

#[test]
fn docker_default_profile_same_as_runc() {
    let Some(runc) = require_runc!() else { return };
    let env = TestEnv::new(runc);
    let o = run_in(&env, "scdockerr", docker_profile(), true, DOCKER_SCRIPT);
    assert_eq!(o.stdout, DOCKER_EXPECTED, "runc: {o}");
}

/// containers/common's profile, as podman passes it on amd64.
fn podman_profile() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../libcontainer/tests/fixtures/seccomp/podman-default.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("fixture JSON")
}

/// The same script under podman's profile, keel and runc, with and
/// without no_new_privs: the same output.
#[test]
fn podman_default_profile_same_as_runc() {
    let script = "uname -s; mkdir /tmp/d && echo mkdir-ok; \
        unshare -m true 2>/dev/null && echo unshare-ok || echo unshare-denied; \
        ls / >/dev/null && echo ls-ok; grep -E '^Seccomp:' /proc/self/status | tr '\\t' ' '";
    let keel = TestEnv::keel();
    let mut outputs = Vec::new();
    for nnp in [true, false] {
        let o = run_in(&keel, "scpodman", podman_profile(), nnp, script);
        o.expect_ok("run under podman's profile");
        outputs.push(o.stdout);
    }
    assert_eq!(outputs[0], outputs[1], "nnp true vs false");
    assert_eq!(
        outputs[0],
        "Linux\nmkdir-ok\nunshare-denied\nls-ok\nSeccomp: 2\n"
    );
    let Some(runc) = require_runc!() else { return };
    let env = TestEnv::new(runc);
    let o = run_in(&env, "scpodmanr", podman_profile(), true, script);
    assert_eq!(o.stdout, outputs[0], "runc: {o}");
}

#[test]
fn bad_operator_names_the_field() {
    let env = TestEnv::keel();
    let mut p = deny_profile();
    p["syscalls"][1]["args"] = json!([{"index": 0, "value": 1, "op": "X"}]);
    let mut b = env.bundle("scbadop");
    b.set("/linux/seccomp", p);
    let o = env.run(&b);
    o.expect_fail("run with an unknown operator");
    assert!(
        o.stderr
            .contains(r#"linux.seccomp.syscalls[1].args[0].op: unknown operator \"X\""#),
        "{o}"
    );
}

#[test]
fn features_report_seccomp() {
    let env = TestEnv::new(Runtime::keel());
    let f = env.cmd(&["features"]).json().expect("features JSON");
    let s = &f["linux"]["seccomp"];
    assert_eq!(s["enabled"], json!(true), "{s}");
    assert!(
        s["actions"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("SCMP_ACT_NOTIFY"))),
        "{s}"
    );
    for lsm in ["apparmor", "selinux"] {
        assert_eq!(f["linux"][lsm]["enabled"], json!(true), "{lsm}: {f}");
    }
    for key in [
        "actions",
        "operators",
        "archs",
        "knownFlags",
        "supportedFlags",
    ] {
        assert!(
            s[key].as_array().is_some_and(|a| !a.is_empty()),
            "{key}: {s}"
        );
    }
}

/// `exec` runs under the container's filter, as in runc: the processes
/// it adds must not escape the profile the container was created with.
fn exec_under_deny(env: &TestEnv, id: &str, nnp: bool) -> Output {
    let mut b: Bundle = env.bundle(id);
    b.set("/process/args", json!(["sleep", "1000"]));
    b.set("/linux/seccomp", deny_profile());
    b.set("/process/noNewPrivileges", json!(nnp));
    b.push(
        "/mounts",
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}),
    );
    env.run_with(&b, &["-d"])
        .expect_ok(&format!("{} run -d", env.rt.name));
    let o = env.cmd(&["exec", id, "sh", "-c", DENY_SCRIPT]);
    env.cmd(&["delete", "--force", id])
        .expect_ok(&format!("{} delete --force", env.rt.name));
    assert_no_leaks(env, id);
    o
}

#[test]
fn exec_runs_under_the_container_filter() {
    let env = TestEnv::keel();
    for nnp in [true, false] {
        let o = exec_under_deny(&env, "scexec", nnp);
        o.expect_ok("exec under the deny profile");
        check_deny(&o, &format!("keel exec nnp={nnp}"));
    }
}

#[test]
fn exec_runs_under_the_container_filter_as_in_runc() {
    let Some(runc) = require_runc!() else { return };
    let env = TestEnv::new(runc);
    for nnp in [true, false] {
        let o = exec_under_deny(&env, "scexecr", nnp);
        check_deny(&o, &format!("runc exec nnp={nnp}"));
    }
}

/// A seccomp agent: for each connection, receives the listener and the
/// process state, then answers every notification with `errno` until the
/// listener closes. A connection without data stops it; it returns the
/// states it got, in order.
fn agent(path: &std::path::Path, errno: i32) -> std::thread::JoinHandle<Vec<Value>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let server = std::os::unix::net::UnixListener::bind(path).expect("bind the agent socket");
    std::thread::spawn(move || {
        let mut states = Vec::new();
        loop {
            let (conn, _) = server.accept().expect("accept");
            let mut buf = vec![0u8; 65536];
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
            let msg = recvmsg::<()>(
                conn.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::empty(),
            )
            .expect("recvmsg");
            let mut listener = None;
            for c in msg.cmsgs().expect("cmsgs") {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    // SAFETY: the kernel just gave us this fd.
                    listener = fds.first().map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
            let len = msg.bytes;
            if len == 0 {
                return states;
            }
            states.push(serde_json::from_slice(&buf[..len]).expect("state JSON"));
            let listener = listener.expect("a listener fd");
            std::thread::spawn(move || loop {
                // SAFETY: a plain-data struct, valid all zeroes.
                let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
                // SAFETY: the listener is open; `req` is the struct this
                // ioctl fills and outlives the call.
                let r = unsafe {
                    libc::ioctl(
                        listener.as_raw_fd(),
                        libc::SECCOMP_IOCTL_NOTIF_RECV,
                        &mut req,
                    )
                };
                if r != 0 {
                    break; // the filtered processes are gone
                }
                // SAFETY: a plain-data struct, valid all zeroes.
                let mut resp: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
                resp.id = req.id;
                resp.error = -errno;
                // SAFETY: the listener is open; `resp` is the struct this
                // ioctl reads and outlives the call.
                unsafe {
                    libc::ioctl(
                        listener.as_raw_fd(),
                        libc::SECCOMP_IOCTL_NOTIF_SEND,
                        &mut resp,
                    )
                };
            });
        }
    })
}

/// SCMP_ACT_NOTIFY under `env`'s runtime: the init's mkdir and an exec'd
/// mkdir are notified to an agent that answers ENOMSG (42). Returns the
/// exec's output, the container process states the agent got, and the
/// init's pid.
fn notify_scenario(env: &TestEnv, id: &str) -> (Output, Vec<Value>, Value) {
    let sock = env.dir.join("agent.sock");
    let mut b: Bundle = env.bundle(id);
    b.sh("mkdir /tmp/d 2>/tmp/init.err; exec sleep 1000");
    b.set(
        "/linux/seccomp",
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock,
            "listenerMetadata": "meta-1",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
        }),
    );
    b.push(
        "/mounts",
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}),
    );
    let agent = agent(&sock, 42);
    env.run_with(&b, &["-d"])
        .expect_ok(&format!("{} run -d with a NOTIFY rule", env.rt.name));
    let pid = env.state(id).expect("state")["pid"].clone();
    let o = env.cmd(&["exec", id, "sh", "-c", "cat /tmp/init.err; mkdir /tmp/e"]);
    env.cmd(&["delete", "--force", id])
        .expect_ok(&format!("{} delete", env.rt.name));
    assert_no_leaks(env, id);
    drop(std::os::unix::net::UnixStream::connect(&sock).expect("stop the agent"));
    (o, agent.join().expect("agent"), pid)
}

/// The listener and the container process state reach the agent at
/// listenerPath (for the init at create, for each exec'd process), and
/// the agent's answer is what mkdir gets.
#[test]
fn notify_goes_to_the_agent() {
    let env = TestEnv::keel();
    let (o, states, pid) = notify_scenario(&env, "scnotify");
    assert_eq!(o.code, 1, "{o}");
    assert!(
        o.stdout.contains("No message of desired type"),
        "init's mkdir: {o}"
    );
    assert!(
        o.stderr.contains("No message of desired type"),
        "exec's mkdir: {o}"
    );
    assert_eq!(states.len(), 2, "{states:?}");
    for (s, status) in states.iter().zip(["creating", "running"]) {
        assert_eq!(s["fds"], json!(["seccompFd"]), "{s}");
        assert_eq!(s["metadata"], json!("meta-1"), "{s}");
        assert_eq!(s["state"]["id"], json!("scnotify"), "{s}");
        assert_eq!(s["state"]["status"], json!(status), "{s}");
        assert_eq!(s["state"]["pid"], pid, "{s}");
        assert!(s["pid"].as_i64().is_some_and(|p| p > 0), "{s}");
    }
    assert_eq!(states[0]["pid"], pid);
    assert_ne!(states[1]["pid"], pid);
}

/// The same under runc: the same answers reach the processes, and the
/// agent gets messages of the same shape (keys, fds, metadata, statuses).
#[test]
fn notify_same_as_runc() {
    let Some(runc) = require_runc!() else { return };
    let env = TestEnv::new(runc);
    let (o, states, pid) = notify_scenario(&env, "scnotifyr");
    assert_eq!(o.code, 1, "{o}");
    assert!(o.stdout.contains("No message of desired type"), "{o}");
    assert!(o.stderr.contains("No message of desired type"), "{o}");
    let keys = |v: &Value| {
        let mut k: Vec<String> = v
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        k.sort();
        k
    };
    assert_eq!(states.len(), 2, "{states:?}");
    for (s, status) in states.iter().zip(["creating", "running"]) {
        assert_eq!(
            keys(s),
            ["fds", "metadata", "ociVersion", "pid", "state"],
            "{s}"
        );
        assert_eq!(s["fds"], json!(["seccompFd"]), "{s}");
        assert_eq!(s["metadata"], json!("meta-1"), "{s}");
        assert_eq!(s["state"]["status"], json!(status), "{s}");
        assert_eq!(s["state"]["pid"], pid, "{s}");
    }
}

/// Syscalls keel makes while it sets a process up (identity, cwd and its
/// CVE-2024-21626 check, lookup of the program, limits), none of which
/// busybox's `echo` needs, and its sync messages: a profile that denies
/// them must still start the program. keel loads the filter after all of
/// them (without no_new_privs with CAP_SYS_ADMIN kept for the load); under
/// it run only capset, the close of the sync channel, exec.fifo's open and
/// write, and execve. (Debian's runc 1.1.5 fails here: its `getcwd` check
/// runs under the filter.)
fn denies_setup_syscalls() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{
            "names": ["getcwd", "chdir", "fchdir", "setgroups", "setresuid", "setresgid",
                      "umask", "personality", "access", "faccessat", "faccessat2",
                      "capget", "keyctl", "close_range", "sethostname",
                      "sendto", "sendmsg", "recvfrom", "recvmsg"],
            "action": "SCMP_ACT_ERRNO"
        }]
    })
}

fn setup_user(b: &mut Bundle) {
    b.set(
        "/process/user",
        json!({"uid": 1000, "gid": 1000, "additionalGids": [10]}),
    );
    b.set("/process/cwd", json!("/tmp"));
    b.set("/process/noNewPrivileges", json!(false));
}

#[test]
fn init_starts_under_a_profile_denying_setup_syscalls() {
    let env = TestEnv::keel();
    let mut b: Bundle = env.bundle("scsetup");
    b.set("/process/args", json!(["echo", "started"]));
    setup_user(&mut b);
    b.set("/linux/seccomp", denies_setup_syscalls());
    let o = env.run(&b);
    o.expect_ok("run under a profile denying keel's setup syscalls");
    assert_eq!(o.stdout, "started\n", "{o}");
    assert_no_leaks(&env, "scsetup");
}

#[test]
fn exec_starts_under_a_profile_denying_setup_syscalls() {
    let env = TestEnv::keel();
    let mut b: Bundle = env.bundle("scsetupx");
    b.set("/process/args", json!(["sleep", "1000"]));
    setup_user(&mut b);
    b.set("/linux/seccomp", denies_setup_syscalls());
    env.run_with(&b, &["-d"]).expect_ok("run -d");
    let o = env.cmd(&["exec", "scsetupx", "echo", "started"]);
    env.cmd(&["delete", "--force", "scsetupx"])
        .expect_ok("delete --force");
    o.expect_ok("exec under a profile denying keel's setup syscalls");
    assert_eq!(o.stdout, "started\n", "{o}");
    assert_no_leaks(&env, "scsetupx");
}

/// The flags keel hands seccomp(2) for `profile`, seen by strace; None
/// (with a printed SKIPPED) without strace.
fn traced_flags(env: &TestEnv, id: &str, profile: Value) -> Option<String> {
    if !keel_conformance::engines::have("strace") {
        eprintln!("SKIPPED: strace is not installed");
        return None;
    }
    let mut b: Bundle = env.bundle(id);
    b.set("/process/args", json!(["true"]));
    b.set("/linux/seccomp", profile);
    b.save().expect("save");
    let trace = env.dir.join(format!("{id}.trace"));
    let bundle = b.dir.to_string_lossy().into_owned();
    let o = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "strace", "-f", "-qq"])
        .args(["-e", "trace=seccomp", "-o"])
        .arg(&trace)
        .arg(&env.rt.bin)
        .arg("--root")
        .arg(&env.root)
        .args(["run", "--bundle", &bundle, id])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("strace keel run");
    assert!(o.status.success(), "{o:?}");
    assert_no_leaks(env, id);
    let text = std::fs::read_to_string(&trace).expect("trace");
    // The load itself: the probes pass a NULL program.
    let load = text
        .lines()
        .find(|l| l.contains("seccomp(SECCOMP_SET_MODE_FILTER") && !l.contains("NULL"))
        .unwrap_or_else(|| panic!("no filter load in the trace:\n{text}"));
    Some(load.split(", ").nth(1).unwrap_or_default().to_string())
}

/// runc's default (libcontainer/specconv/spec_linux.go, SetupSeccomp): a
/// profile without `flags` is loaded with SECCOMP_FILTER_FLAG_SPEC_ALLOW;
/// one with `"flags": []` with none. (Debian's runc 1.1.5 loads through
/// prctl without flags.)
#[test]
fn no_flags_means_spec_allow() {
    let env = TestEnv::keel();
    let deny = json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]});
    let Some(flags) = traced_flags(&env, "scflags", deny.clone()) else {
        return;
    };
    assert_eq!(flags, "SECCOMP_FILTER_FLAG_SPEC_ALLOW");
    let mut none = deny;
    none["flags"] = json!([]);
    assert_eq!(traced_flags(&env, "scflags0", none).as_deref(), Some("0"));
}

/// A NOTIFY rule whose agent is not listening: create fails in runc's
/// words (process_linux.go, sendContainerProcessState) and leaves nothing.
#[test]
fn missing_notify_agent_in_runcs_words() {
    let mut results = Vec::new();
    let mut envs = vec![TestEnv::keel()];
    if let Some(runc) = require_runc!() {
        envs.push(TestEnv::new(runc));
    }
    for env in &envs {
        let sock = env.dir.join("no-agent.sock");
        let mut b: Bundle = env.bundle("scnoagent");
        b.set("/process/args", json!(["true"]));
        b.set(
            "/linux/seccomp",
            json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "listenerPath": sock,
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
            }),
        );
        let o = env.create(&b);
        o.expect_fail(&format!("{} create without the agent", env.rt.name));
        let words = format!(
            "failed to connect with seccomp agent specified in the seccomp profile: \
             dial unix {}: connect: no such file or directory",
            sock.display()
        );
        assert!(o.stderr.contains(&words), "{}: {o}", env.rt.name);
        assert_no_leaks(env, "scnoagent");
        results.push(env.rt.name);
    }
    eprintln!("same words from {results:?}");
}
