//! Container-escape classes, each reproduced against real containers:
//! the attack is tried from inside, and the host must come out untouched.

use keel_conformance::{assert_no_leaks, require_runc, wait_until, Bundle, Runtime, TestEnv};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const SEC10: Duration = Duration::from_secs(10);

/// The pid of the container's init, as the host sees it.
fn host_pid(env: &TestEnv, id: &str) -> i64 {
    env.state(id).expect("state")["pid"]
        .as_i64()
        .expect("pid in state")
}

/// The last NSpid entry of a host pid: its pid in its own pid namespace.
fn inner_pid(pid: i64) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|v| v.split_whitespace().last())
        .expect("NSpid")
        .to_string()
}

/// A copy of the runtime's binary for `env`: the attack below overwrites
/// the runtime when it succeeds, and it must not be the real one.
fn env_with_copy(rt: Runtime) -> TestEnv {
    let mut env = TestEnv::new(rt);
    let copy = env.dir.join(format!("{}-copy", env.rt.name));
    std::fs::copy(&env.rt.bin, &copy).expect("copy the runtime binary");
    env.rt.bin = copy;
    env
}

/// CVE-2019-5736, the /proc/<pid>/exe way: container `a` holds a process
/// that shares its pid namespace with container `b`, created but not
/// started (its init is the runtime's code, waiting, with the container's
/// identity). From `a`, open /proc/<b's init>/exe; start `b`, so that the
/// runtime's code is gone from it; then write through the kept fd, as the
/// exploit's payload did. Returns what the script in `a` printed.
fn exe_attack(env: &TestEnv, ptrace: bool) -> String {
    let copy = std::fs::read(&env.rt.bin).expect("read the runtime copy");
    let mut a: Bundle = env.bundle("exea");
    a.set("/process/args", json!(["sleep", "1000"]));
    a.set("/root/readonly", json!(false));
    if ptrace {
        let caps = json!(["CAP_SYS_PTRACE", "CAP_KILL"]);
        for set in ["bounding", "effective", "permitted"] {
            a.set(&format!("/process/capabilities/{set}"), caps.clone());
        }
    }
    env.run_with(&a, &["-d"])
        .expect_ok(&format!("{} run -d a", env.rt.name));
    let a_pid = host_pid(env, "exea");

    let mut b: Bundle = env.bundle("exeb");
    b.set("/process/args", json!(["sleep", "1000"]));
    b.set(
        "/linux/namespaces",
        json!([{"type": "pid", "path": format!("/proc/{a_pid}/ns/pid")},
               {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}]),
    );
    env.create(&b)
        .expect_ok(&format!("{} create b", env.rt.name));
    let b_pid = inner_pid(host_pid(env, "exeb"));

    // Detached, so that no runtime process is left to keep its binary
    // busy (ETXTBSY) when the attacker writes, as in the exploit.
    let (go, out) = (a.rootfs().join("go"), a.rootfs().join("out"));
    let script = format!(
        // A failed `exec` redirection ends the shell: try in a subshell first.
        "(exec 3</proc/{b_pid}/exe) 2>/dev/null || {{ echo open-denied >/out; exit 0; }}; \
         exec 3</proc/{b_pid}/exe; echo opened >/out; \
         while [ ! -e /go ]; do sleep 0.05; done; \
         if echo pwned >/proc/self/fd/3; then echo WROTE >>/out; \
         else echo write-denied >>/out; fi; echo done >>/out"
    );
    env.cmd(&["exec", "-d", "exea", "sh", "-c", &script])
        .expect_ok(&format!("{} exec -d", env.rt.name));
    let read_out = || std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        wait_until(SEC10, || read_out().contains("open")),
        "{}: the attacker never reported: {}",
        env.rt.name,
        read_out()
    );
    env.cmd(&["start", "exeb"])
        .expect_ok(&format!("{} start b", env.rt.name));
    assert!(env.wait_status("exeb", "running", SEC10));
    std::fs::write(&go, "").expect("signal the attacker");
    let finished = wait_until(SEC10, || {
        let o = read_out();
        o.starts_with("open-denied") || o.ends_with("done\n")
    });
    let out = read_out();
    assert!(
        finished,
        "{}: the attacker did not finish: {out}",
        env.rt.name
    );
    assert!(
        std::fs::read(&env.rt.bin).expect("read the runtime copy") == copy,
        "{}: the container overwrote the runtime binary on the host: {out}",
        env.rt.name
    );
    for id in ["exeb", "exea"] {
        env.cmd(&["delete", "--force", id])
            .expect_ok(&format!("{} delete", env.rt.name));
        assert_no_leaks(env, id);
    }
    out.replace("done\n", "")
}

#[test]
fn cve_2019_5736_proc_pid_exe_of_a_waiting_init() {
    let env = env_with_copy(Runtime::keel());
    // Non-dumpable until execve: without CAP_SYS_PTRACE, no open at all.
    assert_eq!(exe_attack(&env, false), "open-denied\n");
    // With it the open works, but on a read-only view of the binary.
    assert_eq!(exe_attack(&env, true), "opened\nwrite-denied\n");
}

#[test]
fn cve_2019_5736_same_as_runc() {
    let Some(runc) = require_runc!() else { return };
    let env = env_with_copy(runc);
    assert_eq!(exe_attack(&env, false), "open-denied\n");
    assert_eq!(exe_attack(&env, true), "opened\nwrite-denied\n");
}

/// What an init waiting for `start` runs from: not the host's keel binary
/// (a `#!/proc/self/exe` program would run it in the container), and
/// nothing that can be opened for writing.
#[test]
fn cve_2019_5736_init_exe_is_read_only() {
    let env = TestEnv::keel();
    let mut b = env.bundle("exero");
    b.set("/process/args", json!(["true"]));
    env.create(&b).expect_ok("create");
    let exe = format!("/proc/{}/exe", host_pid(&env, "exero"));
    let fd = std::fs::File::open(&exe).expect("open the init's exe");
    env.cmd(&["delete", "--force", "exero"]).expect_ok("delete");
    assert_no_leaks(&env, "exero");
    // The init is gone: nothing runs this file any more (no ETXTBSY).
    let reopen = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    let e = std::fs::OpenOptions::new()
        .append(true)
        .open(&reopen)
        .expect_err("opened the init's exe for writing");
    assert!(
        matches!(e.raw_os_error(), Some(libc::EROFS) | Some(libc::EPERM)),
        "{e}"
    );
    assert!(Path::new(&env.rt.bin).is_file());
}
