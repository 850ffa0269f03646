//! Container-escape classes, each reproduced against real containers:
//! the attack is tried from inside, and the host must come out untouched.

use keel_conformance::{
    assert_no_leaks, exe_on_read_only_mount, require_runc, wait_until, Bundle, Runtime, TestEnv,
};
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
    // A copy of its own: keel processes of tests running alongside execute
    // the shared binary, which makes any open for writing ETXTBSY.
    let env = env_with_copy(Runtime::keel());
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

/// Runs `<runtime> --root <root> args...` with `fds` open (not
/// close-on-exec) in the runtime process, as a careless caller would.
fn cmd_with_fds(env: &TestEnv, args: &[&str], fds: &[i32]) -> keel_conformance::Output {
    use std::os::unix::process::CommandExt;
    let source = std::fs::File::open("/etc/hostname").expect("open a host file");
    let src = std::os::fd::AsRawFd::as_raw_fd(&source);
    let out = env.dir.join("fds.out");
    let err = env.dir.join("fds.err");
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-m", "--propagation", "private"])
        .arg(&env.rt.bin)
        .arg("--root")
        .arg(&env.root)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"));
    let fds = fds.to_vec();
    // SAFETY: only dup2 (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                if libc::dup2(src, fd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let status = cmd.status().expect("run the runtime");
    keel_conformance::Output {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    }
}

/// CVE-2024-21626: no fd of the runtime (its own, or leaked to it by its
/// caller) reaches the container's init.
#[test]
fn cve_2024_21626_no_host_fds_in_run() {
    let mut envs = vec![TestEnv::keel()];
    if let Some(runc) = require_runc!() {
        envs.push(TestEnv::new(runc));
    }
    for env in envs {
        let mut b = env.bundle("fdrun");
        b.set("/process/args", json!(["ls", "/proc/self/fd"]));
        b.save().expect("save");
        let bundle = b.dir.to_string_lossy().into_owned();
        let o = cmd_with_fds(&env, &["run", "--bundle", &bundle, "fdrun"], &[3, 7, 12]);
        o.expect_ok(&format!("{} run", env.rt.name));
        // 3 is ls's own directory fd.
        assert_eq!(o.stdout, "0\n1\n2\n3\n", "{}: {o}", env.rt.name);
        assert_no_leaks(&env, "fdrun");
    }
}

/// What a process whose cwd is `/proc/self/fd/<n>` sees: "inside" when
/// its cwd is the directory of that name in the container, "outside"
/// when it is somewhere else (a runtime fd's directory on the host).
const CWD_SCRIPT: &str = "c=$(readlink /proc/self/cwd); \
    if [ \"$(stat -c %d:%i .)\" = \"$(stat -c %d:%i \"$c\" 2>/dev/null)\" ]; \
    then echo inside; else echo outside $c; fi";

/// CVE-2024-21626: a cwd naming one of the runtime's fds must not put
/// the process in a host directory. Either the runtime refuses it, or the
/// process ends up inside the container.
#[test]
fn cve_2024_21626_cwd_through_proc_self_fd() {
    let env = TestEnv::keel();
    for n in 3..=12 {
        let id = format!("cwd{n}");
        let mut b = env.bundle(&id);
        b.sh(CWD_SCRIPT);
        b.set("/process/cwd", json!(format!("/proc/self/fd/{n}")));
        let o = env.run(&b);
        assert!(
            !o.ok() || o.stdout == "inside\n",
            "cwd /proc/self/fd/{n}: {o}"
        );
        assert_no_leaks(&env, &id);
    }
    // The same through exec --cwd.
    let mut b = env.bundle("cwdexec");
    b.set("/process/args", json!(["sleep", "1000"]));
    env.run_with(&b, &["-d"]).expect_ok("run -d");
    for n in 3..=12 {
        let cwd = format!("/proc/self/fd/{n}");
        let o = env.cmd(&["exec", "--cwd", &cwd, "cwdexec", "sh", "-c", CWD_SCRIPT]);
        assert!(!o.ok() || o.stdout == "inside\n", "exec --cwd {cwd}: {o}");
    }
    env.cmd(&["delete", "--force", "cwdexec"])
        .expect_ok("delete");
    assert_no_leaks(&env, "cwdexec");
}

/// CVE-2025-31133: maskedPaths are masked with a bind of /dev/null. A
/// /dev/null that is a symlink (here to a host file the container has
/// read-only) must not become the source of that bind, or the masked
/// path turns into a writable view of the symlink's target.
fn dev_null_symlink(env: &TestEnv) -> keel_conformance::Output {
    let host = env.dir.join("host-file");
    std::fs::write(&host, "host\n").expect("write the host file");
    let mut b = env.bundle("devnull");
    let dev = b.dir.join("dev");
    std::fs::create_dir_all(&dev).expect("mkdir dev");
    std::os::unix::fs::symlink("/hostfile", dev.join("null")).expect("symlink");
    std::fs::write(b.rootfs().join("hostfile"), "").expect("bind target");
    b.remove_mount("/dev/pts")
        .remove_mount("/dev/shm")
        .remove_mount("/dev/mqueue")
        .remove_mount("/dev");
    b.push(
        "/mounts",
        json!({"destination": "/dev", "type": "bind", "source": dev, "options": ["rbind"]}),
    );
    b.push(
        "/mounts",
        json!({"destination": "/hostfile", "type": "bind", "source": host,
               "options": ["bind", "ro"]}),
    );
    b.set("/linux/maskedPaths", json!(["/proc/keys"]));
    b.sh("echo pwned >/proc/keys; head -c 5 /proc/keys | wc -c");
    let o = env.run(&b);
    assert_no_leaks(env, "devnull");
    let after = std::fs::read_to_string(&host).expect("read the host file");
    assert_eq!(
        after, "host\n",
        "{}: the host file was written: {o}",
        env.rt.name
    );
    o
}

#[test]
fn cve_2025_31133_dev_null_symlink() {
    let env = TestEnv::keel();
    let o = dev_null_symlink(&env);
    // keel refuses a /dev/null that is not the null device.
    o.expect_fail("run with /dev/null a symlink");
    assert!(o.stderr.contains("/dev/null"), "{o}");
}

#[test]
fn cve_2025_31133_dev_null_symlink_runc() {
    let Some(runc) = require_runc!() else { return };
    let env = TestEnv::new(runc);
    let o = dev_null_symlink(&env);
    eprintln!("runc {}: {o}", env_version(&env));
}

fn env_version(env: &TestEnv) -> String {
    env.cmd(&["--version"])
        .stdout
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// The image's /dev/null a symlink to a host path, /dev a tmpfs: keel
/// makes its own nodes there, and writes nothing through the symlink.
#[test]
fn rootfs_dev_symlinks_do_not_reach_the_host() {
    let env = TestEnv::keel();
    let host = env.dir.join("host-null");
    std::fs::write(&host, "host\n").expect("write");
    let mut b = env.bundle("devlinks");
    b.remove_mount("/dev/pts")
        .remove_mount("/dev/shm")
        .remove_mount("/dev/mqueue")
        .remove_mount("/dev");
    let dev = b.rootfs().join("dev");
    for name in ["null", "zero", "console", "tty", "ptmx"] {
        std::os::unix::fs::symlink(&host, dev.join(name)).expect("symlink");
    }
    b.sh("stat -c '%n %F %t:%T' /dev/null /dev/zero; echo x >/dev/null; echo ok");
    let o = env.run(&b);
    o.expect_ok("run");
    assert_eq!(
        o.stdout,
        "/dev/null character special file 1:3\n/dev/zero character special file 1:5\nok\n",
        "{o}"
    );
    assert_eq!(std::fs::read_to_string(&host).expect("read"), "host\n");
    assert_no_leaks(&env, "devlinks");
}

/// The image's /proc a symlink to a host path: keel refuses to mount (and
/// so to write sysctls) through it, and makes nothing on the host.
#[test]
fn rootfs_proc_symlink_is_refused() {
    let env = TestEnv::keel();
    let host = env.dir.join("hostproc");
    let mut b = env.bundle("proclink");
    let proc_dir = b.rootfs().join("proc");
    std::fs::remove_dir(&proc_dir).expect("rmdir proc");
    std::os::unix::fs::symlink(&host, &proc_dir).expect("symlink");
    b.set("/linux/sysctl", json!({"net.ipv4.ip_forward": "1"}));
    b.sh("cat /proc/sys/net/ipv4/ip_forward");
    let o = env.run(&b);
    o.expect_fail("run with /proc a symlink");
    assert!(
        o.stderr.contains("must be mounted on ordinary directory"),
        "{o}"
    );
    assert!(!host.exists(), "keel made {} on the host", host.display());
    assert_no_leaks(&env, "proclink");
}

/// `keel spec`'s masked and read-only paths, checked from inside: masked
/// files read empty, masked directories list empty, /proc/sys and
/// /proc/sysrq-trigger are read-only mounts (checked in mountinfo rather
/// than by writing: a failed protection would reach the host).
#[test]
fn default_spec_masks_and_protects_proc() {
    let env = TestEnv::keel();
    let mut b = env.bundle("masked");
    std::fs::remove_file(b.dir.join("config.json")).expect("rm config.json");
    let spec = env.cmd(&["spec", "--bundle", &b.dir.to_string_lossy()]);
    spec.expect_ok("keel spec");
    let generated: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(b.dir.join("config.json")).expect("read the spec"),
    )
    .expect("spec JSON");
    for key in ["maskedPaths", "readonlyPaths"] {
        b.set(&format!("/linux/{key}"), generated["linux"][key].clone());
    }
    b.sh("for f in /proc/kcore /proc/keys /proc/timer_list; do \
            if [ -e $f ]; then echo $f $(cat $f | wc -c); else echo $f absent; fi; done; \
          echo /sys/firmware $(ls -A /sys/firmware | wc -l); \
          for m in /proc/sys /proc/sysrq-trigger; do \
            awk -v m=$m '$5 == m { print m, ($6 ~ /(^|,)ro(,|$)/) ? \"ro\" : \"rw\" }' \
              /proc/self/mountinfo | tail -n 1; done; \
          echo 1 2>&1 >/proc/sys/net/ipv4/ip_forward | grep -o 'Read-only file system'");
    let o = env.run(&b);
    o.expect_ok("run with keel spec's paths");
    // Not every kernel has /proc/kcore or /proc/sysrq-trigger.
    let kcore = if Path::new("/proc/kcore").exists() {
        "0"
    } else {
        "absent"
    };
    let sysrq = if Path::new("/proc/sysrq-trigger").exists() {
        "/proc/sysrq-trigger ro\n"
    } else {
        ""
    };
    assert_eq!(
        o.stdout,
        format!(
            "/proc/kcore {kcore}\n/proc/keys 0\n/proc/timer_list 0\n/sys/firmware 0\n\
             /proc/sys ro\n{sysrq}Read-only file system\n"
        ),
        "{o}"
    );
    assert_no_leaks(&env, "masked");
}

/// A sysctl whose /proc/sys file has another procfs file mounted over it
/// (here the container's own ip_default_ttl over ip_forward, both of its
/// network namespace): the write must fail, not land in the other file.
#[test]
fn sysctl_write_is_not_redirected_by_a_mount() {
    let env = TestEnv::keel();
    let mut b = env.bundle("sysctlredir");
    let ttl = b.rootfs().join("proc/sys/net/ipv4/ip_default_ttl");
    b.push(
        "/mounts",
        json!({"destination": "/proc/sys/net/ipv4/ip_forward", "type": "bind",
               "source": ttl, "options": ["bind"]}),
    );
    b.set("/linux/sysctl", json!({"net.ipv4.ip_forward": "1"}));
    b.sh("cat /proc/sys/net/ipv4/ip_default_ttl");
    let o = env.run(&b);
    o.expect_fail("run with a mount over a sysctl file");
    assert!(o.stderr.contains("linux.sysctl"), "{o}");
    assert_no_leaks(&env, "sysctlredir");
}

/// AppArmor and SELinux are off on the hosts this suite runs on: a
/// profile or label is an error naming the field (runc fails too), for
/// run and for exec, and nothing is left behind.
#[test]
fn lsm_profiles_without_the_lsm_are_refused() {
    let lsm_on = Path::new("/sys/fs/selinux/enforce").exists()
        || std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|s| s.trim() == "Y");
    if lsm_on {
        eprintln!("SKIPPED lsm_profiles_without_the_lsm_are_refused: an LSM is on here");
        return;
    }
    let mut envs = vec![TestEnv::keel()];
    if let Some(runc) = require_runc!() {
        envs.push(TestEnv::new(runc));
    }
    let cases = [
        ("/process/apparmorProfile", "AppArmor is not enabled"),
        (
            "/process/selinuxLabel",
            "selinux label is specified in config, but selinux is disabled or not supported",
        ),
    ];
    for env in &envs {
        for (ptr, msg) in cases {
            let mut b = env.bundle("lsm");
            b.set(ptr, json!("system_u:system_r:container_t:s0"));
            let o = env.run(&b);
            o.expect_fail(&format!("{} run with {ptr}", env.rt.name));
            if env.rt.name == "keel" {
                assert!(o.stderr.contains(msg), "{ptr}: {o}");
            }
            assert_no_leaks(env, "lsm");
        }
        let mut b = env.bundle("lsmexec");
        b.set("/process/args", json!(["sleep", "1000"]));
        env.run_with(&b, &["-d"]).expect_ok("run -d");
        for flag in ["--apparmor", "--process-label"] {
            let o = env.cmd(&["exec", flag, "x", "lsmexec", "true"]);
            o.expect_fail(&format!("{} exec {flag}", env.rt.name));
        }
        env.cmd(&["delete", "--force", "lsmexec"])
            .expect_ok("delete");
        assert_no_leaks(env, "lsmexec");
    }
}

/// CVE-2019-5736 during run and exec: the runtime processes that fork the
/// container's processes (which inherit their exe until execve) run from a
/// read-only view of keel's binary, not from the writable file.
#[test]
fn cve_2019_5736_run_and_exec_run_from_a_read_only_view() {
    let env = TestEnv::keel();
    assert!(
        !exe_on_read_only_mount(std::process::id() as i32),
        "this check needs the test binary on a writable mount"
    );
    let mut b = env.bundle("exeview");
    b.set("/process/args", json!(["sleep", "1000"]));
    b.save().expect("save");
    let bundle = b.dir.to_string_lossy().into_owned();
    let run = env
        .spawn(&["run", "--bundle", &bundle, "exeview"])
        .expect("spawn run");
    assert!(env.wait_status("exeview", "running", SEC10));
    assert!(exe_on_read_only_mount(run.pid()), "keel run");
    let exec = env
        .spawn(&["exec", "exeview", "sleep", "1000"])
        .expect("spawn exec");
    assert!(
        wait_until(SEC10, || exe_on_read_only_mount(exec.pid())),
        "keel exec"
    );
    env.cmd(&["delete", "--force", "exeview"])
        .expect_ok("delete");
    drop((run, exec));
    assert_no_leaks(&env, "exeview");
}

/// CVE-2025-52565: the pty is bound over /dev/console; an image whose
/// /dev/console is a symlink must not choose where that bind lands.
#[test]
fn dev_console_symlink_is_refused() {
    let env = TestEnv::keel();
    let host = env.dir.join("host-console");
    std::fs::write(&host, "host\n").expect("write");
    let mut b = env.bundle("console");
    b.remove_mount("/dev/pts")
        .remove_mount("/dev/shm")
        .remove_mount("/dev/mqueue")
        .remove_mount("/dev");
    b.push(
        "/mounts",
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
    );
    std::os::unix::fs::symlink("/hostfile", b.rootfs().join("dev/console")).expect("symlink");
    b.push(
        "/mounts",
        json!({"destination": "/hostfile", "type": "bind", "source": host,
               "options": ["bind", "ro"]}),
    );
    b.set("/process/terminal", json!(true));
    // Connecting is all keel does with it before the refusal.
    let sock = env.dir.join("console.sock");
    let _server = std::os::unix::net::UnixListener::bind(&sock).expect("bind console socket");
    b.save().expect("save");
    let bundle = b.dir.to_string_lossy().into_owned();
    let o = env.cmd(&[
        "create",
        "--bundle",
        &bundle,
        "--console-socket",
        &sock.to_string_lossy(),
        "console",
    ]);
    o.expect_fail("create with /dev/console a symlink");
    assert!(o.stderr.contains("/dev/console is a symlink"), "{o}");
    assert_eq!(std::fs::read_to_string(&host).expect("read"), "host\n");
    assert_no_leaks(&env, "console");
}

/// A capability name that is none of the kernel's is refused, naming the
/// field (runtime-spec config.md: a value that cannot be mapped to a
/// kernel interface). runc warns `ignoring unknown or unavailable
/// capabilities` and goes on: keel keeps that only for real capabilities
/// this kernel lacks (unit-tested in spec.rs: this kernel has them all).
#[test]
fn unknown_capability_name_is_refused() {
    let env = TestEnv::keel();
    let mut b = env.bundle("badcap");
    b.push("/process/capabilities/effective", json!("CAP_NOT_A_CAP"));
    let o = env.run(&b);
    o.expect_fail("run with an unknown capability");
    assert!(
        o.stderr
            .contains(r#"process.capabilities.effective[3]: unknown capability \"CAP_NOT_A_CAP\""#),
        "{o}"
    );
    assert_no_leaks(&env, "badcap");
}
