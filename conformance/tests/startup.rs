//! What a container's process starts with, beyond its config: the working
//! directory it can enter, the executable it may run, the CPUs it may use,
//! the fds it holds. Differential against runc where runc 1.1.5 has the
//! behaviour.

use keel_conformance::{assert_no_leaks, require_runc, Bundle, TestEnv};
use serde_json::json;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

const SEC30: Duration = Duration::from_secs(30);

/// keel's env, then runc's when runc is installed (else a printed SKIPPED).
fn envs() -> Vec<TestEnv> {
    let mut v = vec![TestEnv::keel()];
    if let Some(runc) = require_runc!() {
        v.push(TestEnv::new(runc));
    }
    v
}

/// Runs `b` in the foreground as uid/gid 1000 and returns what it printed,
/// failing the test with the output when it does not exit 0.
fn run_as_user(env: &TestEnv, b: &mut Bundle) -> String {
    b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
    let o = env.run(b);
    o.expect_ok(&format!("{} run", env.rt.name));
    assert_no_leaks(env, &b.id);
    o.stdout
}

/// A cwd only root can enter works for a non-root process: runc enters it
/// before it drops privileges (`finalizeNamespace` in
/// libcontainer/init_linux.go tries the chdir first and again after the
/// user switch only on EPERM/EACCES).
#[test]
fn cwd_only_root_can_enter() {
    for env in envs() {
        let mut b = env.bundle("rootcwd");
        let dir = b.rootfs().join("secret");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        b.set("/process/cwd", json!("/secret"));
        b.set("/process/args", json!(["pwd"]));
        assert_eq!(run_as_user(&env, &mut b), "/secret\n", "{}", env.rt.name);
    }
}

/// A non-root process with CAP_DAC_OVERRIDE may run a program only root
/// may execute (mode 0700): the lookup before the start asks with the
/// process's effective capabilities, as the kernel's execve does (runc:
/// Go's exec.LookPath; keel used access(2), which ignores them).
#[test]
fn executable_lookup_honours_cap_dac_override() {
    for env in envs() {
        let mut b = env.bundle("dacexec");
        let opt = b.rootfs().join("opt");
        std::fs::create_dir(&opt).expect("mkdir");
        let prog = opt.join("echo");
        std::fs::copy("/bin/busybox", &prog).expect("copy busybox");
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let caps = json!(["CAP_DAC_OVERRIDE"]);
        for set in ["bounding", "effective", "permitted"] {
            b.set(&format!("/process/capabilities/{set}"), caps.clone());
        }
        b.set("/process/args", json!(["/opt/echo", "ran"]));
        assert_eq!(run_as_user(&env, &mut b), "ran\n", "{}", env.rt.name);
    }
}

/// The CPUs a process may use, as /proc/<pid>/status lists them.
fn cpus_allowed(status: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// With no execCPUAffinity, the init and an exec'd process may use the
/// CPUs of the container's cpuset (here every online CPU), not only the
/// caller's: runc 1.2+ resets the mask after the cgroup join
/// (`tryResetCPUAffinity` in libcontainer/process_linux.go, runc PR #4858),
/// as Linux 6.2+ keeps a mask set with sched_setaffinity across the move.
/// runc 1.1.5 does not: keel only.
#[test]
fn affinity_is_the_cpusets_not_the_callers() {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .expect("online CPUs")
        .trim()
        .to_string();
    if !online.contains(['-', ',']) {
        eprintln!("SKIPPED: one CPU ({online}): no narrower mask to inherit");
        return;
    }
    let env = TestEnv::keel();
    let mut b = env.bundle("affinity");
    b.set("/process/args", json!(["sleep", "1000"]));
    b.save().expect("save");
    let bundle = b.dir.to_string_lossy().into_owned();
    // The runtime runs as `taskset -c 0` would start it.
    let on_cpu0 = |cmd: &mut Command| {
        let mut cpu0 = nix::sched::CpuSet::new();
        cpu0.set(0).expect("CPU 0");
        // SAFETY: only sched_setaffinity (async-signal-safe) on the child
        // itself, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpu0)
                    .map_err(std::io::Error::from)
            })
        };
    };
    let run = env
        .spawn_with(&["run", "-d", "--bundle", &bundle, "affinity"], on_cpu0)
        .and_then(|r| r.wait(SEC30))
        .expect("keel run -d");
    run.expect_ok("keel run -d");
    let state = env.state("affinity").expect("state");
    let pid = state["pid"].as_i64().expect("pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert_eq!(cpus_allowed(&status), online, "the init's CPUs");
    let exec = env
        .spawn_with(&["exec", "affinity", "cat", "/proc/self/status"], on_cpu0)
        .and_then(|r| r.wait(SEC30))
        .expect("keel exec");
    exec.expect_ok("keel exec");
    assert_eq!(
        cpus_allowed(&exec.stdout),
        online,
        "an exec'd process's CPUs"
    );
    env.cmd(&["delete", "--force", "affinity"])
        .expect_ok("keel delete --force");
    assert_no_leaks(&env, "affinity");
}

/// A created container's init, waiting on exec.fifo, holds stdio, the
/// `--preserve-fds` fds and exec.fifo: no other fd of the caller's, and
/// none of the runtime's own (state directory, cgroup directories, sync
/// socket). runc's init is a new exec of runc that is given only those
/// (it adds its Go runtime's epoll and pipe).
#[test]
fn created_init_holds_no_fd_but_stdio_preserved_and_fifo() {
    for env in envs() {
        let name = env.rt.name;
        let mut b = env.bundle("initfds");
        b.set("/process/args", json!(["true"]));
        b.save().expect("save");
        let bundle = b.dir.to_string_lossy().into_owned();
        let kept = env.dir.join("kept");
        let leaked = env.dir.join("leaked");
        // Above the numbers the runtime is given them as, so the dup2s in
        // the child cannot overwrite one another.
        let high = |path: &std::path::Path| {
            std::fs::write(path, "x").expect("write");
            let f = std::fs::File::open(path).expect("open");
            let fd =
                nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(100)).expect("dup");
            // SAFETY: a new fd from the kernel, owned by nobody else.
            unsafe { OwnedFd::from_raw_fd(fd) }
        };
        let (kept_fd, leaked_fd) = (high(&kept), high(&leaked));
        let (k, l) = (kept_fd.as_raw_fd(), leaked_fd.as_raw_fd());
        let with_fds = |cmd: &mut Command| {
            // SAFETY: only dup2, async-signal-safe, between fork and exec,
            // on fds this process holds open.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::dup2(k, 3) < 0 || libc::dup2(l, 7) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                })
            };
        };
        let args = [
            "create",
            "--preserve-fds",
            "1",
            "--bundle",
            &bundle,
            "initfds",
        ];
        let o = env
            .spawn_with(&args, with_fds)
            .and_then(|r| r.wait(SEC30))
            .unwrap_or_else(|e| panic!("{name} create: {e:#}"));
        o.expect_ok(&format!("{name} create"));
        let pid = env.state("initfds").expect("state")["pid"]
            .as_i64()
            .expect("pid");
        let mut fds: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("the init's fds")
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_str()?.parse().ok()?;
                Some((n, std::fs::read_link(e.path()).ok()?.display().to_string()))
            })
            .collect();
        fds.sort();
        assert!(
            fds.contains(&(3, kept.display().to_string())),
            "{name}: the preserved fd 3 is missing: {fds:?}"
        );
        for (n, target) in fds.iter().filter(|(n, _)| *n > 3) {
            let allowed = target.ends_with("/exec.fifo")
                || (name == "runc"
                    && (target.starts_with("anon_inode:") || target.starts_with("pipe:")));
            assert!(
                allowed,
                "{name}: the created init holds fd {n} -> {target}: {fds:?}"
            );
        }
        env.cmd(&["delete", "--force", "initfds"])
            .expect_ok(&format!("{name} delete --force"));
        assert_no_leaks(&env, "initfds");
    }
}
