//! `exec`: a new process in a running container, with runc's flags. Every
//! scenario runs under keel and (when installed) runc, each with its own
//! bundle and --root; what the processes observe is compared.
//!
//! Known, accepted differences (printed, not asserted):
//! - the wording of error messages (both must name the cause);
//! - `keel pause` is not implemented yet: the paused scenario runs only
//!   under runc (and under keel once `keel pause --help` succeeds).

use keel_conformance::{assert_no_leaks, require_runc, wait_until, Bundle, Output, TestEnv};
use serde_json::{json, Value};
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SEC5: Duration = Duration::from_secs(5);
const SEC30: Duration = Duration::from_secs(30);

/// keel's env, then runc's when runc is installed (else a printed SKIPPED).
fn envs() -> Vec<TestEnv> {
    let mut v = vec![TestEnv::keel()];
    if let Some(runc) = require_runc!() {
        v.push(TestEnv::new(runc));
    }
    v
}

/// `run -d` of `sleep 1000` in container `id`, after `tweak`.
fn sleeper(env: &TestEnv, id: &str, tweak: impl FnOnce(&mut Bundle)) -> Bundle {
    let mut b = env.bundle(id);
    b.set("/process/args", json!(["sleep", "1000"]));
    tweak(&mut b);
    env.run_with(&b, &["-d"])
        .expect_ok(&format!("{} run -d", env.rt.name));
    assert_eq!(env.status(id), "running", "{}", env.rt.name);
    b
}

/// `exec <flags> <id> <cmd...>`.
fn exec(env: &TestEnv, id: &str, flags: &[&str], cmd: &[&str]) -> Output {
    let mut args = vec!["exec"];
    args.extend_from_slice(flags);
    args.push(id);
    args.extend_from_slice(cmd);
    env.cmd(&args)
}

/// `exec` that must succeed; its stdout.
#[track_caller]
fn exec_ok(env: &TestEnv, id: &str, flags: &[&str], cmd: &[&str]) -> String {
    let o = exec(env, id, flags, cmd);
    o.expect_ok(&format!("{} exec {flags:?} {cmd:?}", env.rt.name));
    o.stdout
}

fn init_pid(env: &TestEnv, id: &str) -> i64 {
    let s = env.state(id).expect("state");
    s["pid"].as_i64().expect("pid in state")
}

/// Deletes the container and checks that nothing of it is left.
fn finish(env: &TestEnv, id: &str) {
    env.cmd(&["delete", "--force", id])
        .expect_ok(&format!("{} delete --force", env.rt.name));
    assert_no_leaks(env, id);
}

/// The marker entry of the bundle's env (for processes given in full).
fn marker_env(b: &Bundle) -> String {
    b.config["process"]["env"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .find(|e| e.starts_with("KEEL_CONF_MARKER="))
        })
        .expect("bundle env has the marker")
        .to_string()
}

/// Runs `<runtime> --root <root> args...` like the harness does, but with
/// `fds` (source, target) installed in the runtime process as extra open
/// descriptors. Waits at most 30 s.
fn cmd_with_fds(env: &TestEnv, args: &[&str], fds: &[(RawFd, RawFd)], tag: &str) -> Output {
    let out = env.dir.join(format!("{tag}.out"));
    let err = env.dir.join(format!("{tag}.err"));
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private"])
        .arg(&env.rt.bin)
        .arg("--root")
        .arg(&env.root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&out).expect("stdout file"))
        .stderr(File::create(&err).expect("stderr file"));
    let fds = fds.to_vec();
    // SAFETY: only dup2 (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Out of the way first (a source may be another's target, or
            // its own: dup2 onto itself would keep its close-on-exec).
            let mut high = Vec::with_capacity(fds.len());
            for &(src, _) in &fds {
                let fd = libc::fcntl(src, libc::F_DUPFD, 100);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                high.push(fd);
            }
            for (&fd, &(_, target)) in high.iter().zip(&fds) {
                if libc::dup2(fd, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for fd in high {
                libc::close(fd);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn runtime");
    let deadline = Instant::now() + SEC30;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} {args:?} timed out", env.rt.name);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    }
}

/// Asserts keel's and runc's observations are equal (when both ran).
#[track_caller]
fn assert_same<T: PartialEq + std::fmt::Debug>(what: &str, results: &[(&str, T)]) {
    if let [(_, k), (_, r)] = results {
        assert_eq!(k, r, "{what}: keel (left) and runc (right) differ");
    }
}

#[test]
fn stdout_exit_code_env_cwd() {
    let mut results = Vec::new();
    for env in envs() {
        let rt = env.rt.name;
        sleeper(&env, "basic", |_| {});
        let hello = exec_ok(&env, "basic", &[], &["echo", "hello"]);
        assert_eq!(hello, "hello\n", "{rt}");

        let o = exec(&env, "basic", &[], &["sh", "-c", "exit 7"]);
        assert_eq!(o.code, 7, "{rt}: exit code passthrough: {o}");

        let o = exec(&env, "basic", &[], &["sh", "-c", "echo out; echo err >&2"]);
        assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("out\n", "err\n"));

        let envout = exec_ok(
            &env,
            "basic",
            &["--env", "FOO=bar", "--env", "X=1"],
            &["env"],
        );
        let mut vars: Vec<&str> = envout
            .lines()
            .filter(|l| !l.starts_with("KEEL_CONF_MARKER="))
            .collect();
        vars.sort();
        // HOME: the env lacks it, and the rootfs has no /etc/passwd: "/".
        for want in ["FOO=bar", "X=1", "TERM=xterm", "HOME=/"] {
            assert!(vars.contains(&want), "{rt}: {want} missing from {vars:?}");
        }
        assert!(
            vars.iter().any(|v| v.starts_with("PATH=")),
            "{rt}: container PATH kept: {vars:?}"
        );
        // --env overrides a variable of the container's process.
        let term = exec_ok(
            &env,
            "basic",
            &["-e", "TERM=dumb"],
            &["sh", "-c", "echo $TERM"],
        );
        assert_eq!(term, "dumb\n", "{rt}");

        let cwd = exec_ok(&env, "basic", &["--cwd", "/tmp"], &["pwd"]);
        assert_eq!(cwd, "/tmp\n", "{rt}");
        let cwd = exec_ok(&env, "basic", &[], &["pwd"]);
        assert_eq!(cwd, "/\n", "{rt}: default cwd is the container's");
        finish(&env, "basic");
        results.push((rt, (vars.join(" "), o.code)));
    }
    assert_same("env of exec'd process", &results);
}

#[test]
fn user_groups_caps_no_new_privs() {
    let mut results = Vec::new();
    for env in envs() {
        let rt = env.rt.name;
        sleeper(&env, "ids", |b| {
            b.set("/process/noNewPrivileges", json!(false));
        });
        let id = exec_ok(&env, "ids", &["--user", "1000:1000"], &["id"]);
        let idg = exec_ok(
            &env,
            "ids",
            // runc refuses -g and --additional-gids together.
            &["-u", "1000:1000", "-g", "10", "-g", "20"],
            &["id"],
        );
        let uid_only = exec_ok(&env, "ids", &["-u", "1001"], &["id"]);
        let long = exec_ok(
            &env,
            "ids",
            &["-u", "1000:1000", "--additional-gids", "30"],
            &["id"],
        );
        assert!(long.contains("groups=30"), "{rt}: {long}");
        assert!(id.starts_with("uid=1000 gid=1000"), "{rt}: {id}");
        assert!(
            idg.starts_with("uid=1000 gid=1000") && idg.contains("groups=10,20"),
            "{rt}: {idg}"
        );
        assert!(uid_only.starts_with("uid=1001 gid=0"), "{rt}: {uid_only}");

        let status = |flags: &[&str]| -> Vec<String> {
            exec_ok(&env, "ids", flags, &["cat", "/proc/self/status"])
                .lines()
                .filter(|l| l.starts_with("Cap") || l.starts_with("NoNewPrivs"))
                .map(str::to_owned)
                .collect()
        };
        let field = |lines: &[String], name: &str| -> u64 {
            let l = lines
                .iter()
                .find(|l| l.starts_with(&format!("{name}:")))
                .unwrap_or_else(|| panic!("{rt}: no {name} in {lines:?}"));
            let v = l.split_whitespace().nth(1).unwrap_or_default();
            u64::from_str_radix(v, 16).unwrap_or_else(|_| v.parse().unwrap_or(u64::MAX))
        };
        const SYS_ADMIN: u64 = 1 << 21;
        let plain = status(&[]);
        let with_cap = status(&["--cap", "CAP_SYS_ADMIN"]);
        assert_eq!(field(&plain, "CapEff") & SYS_ADMIN, 0, "{rt}: {plain:?}");
        assert_eq!(field(&plain, "CapBnd") & SYS_ADMIN, 0, "{rt}: {plain:?}");
        assert_ne!(
            field(&with_cap, "CapEff") & SYS_ADMIN,
            0,
            "{rt}: {with_cap:?}"
        );
        assert_ne!(
            field(&with_cap, "CapBnd") & SYS_ADMIN,
            0,
            "{rt}: {with_cap:?}"
        );
        // The container's own capabilities stay.
        let kill = 1 << 5;
        assert_ne!(field(&with_cap, "CapEff") & kill, 0, "{rt}: {with_cap:?}");

        let nnp = status(&["--no-new-privs"]);
        assert_eq!(field(&plain, "NoNewPrivs"), 0, "{rt}: {plain:?}");
        assert_eq!(field(&nnp, "NoNewPrivs"), 1, "{rt}: {nnp:?}");
        finish(&env, "ids");
        eprintln!("{rt}: id {id}{idg}{uid_only}caps {plain:?}\n+SYS_ADMIN {with_cap:?}");
        let sets = |l: &[String]| (field(l, "CapEff"), field(l, "CapBnd"), field(l, "CapPrm"));
        results.push((rt, (id, idg, uid_only, sets(&plain), sets(&with_cap))));
    }
    assert_same("ids and capabilities", &results);
}

#[test]
fn pid_and_namespaces() {
    let mut results = Vec::new();
    for env in envs() {
        let rt = env.rt.name;
        sleeper(&env, "ns", |_| {});
        let init = init_pid(&env, "ns");
        let pid = exec_ok(&env, "ns", &[], &["sh", "-c", "echo $$"]);
        let pid: i32 = pid.trim().parse().expect("pid");
        assert!(pid > 1, "{rt}: exec'd pid {pid} in the container's pid ns");
        let names = ["mnt", "net", "uts", "ipc", "pid", "cgroup"];
        let mut script = String::new();
        for n in names {
            script.push_str(&format!(
                "echo {n} $(readlink /proc/1/ns/{n}) $(readlink /proc/self/ns/{n});"
            ));
        }
        let out = exec_ok(&env, "ns", &[], &["sh", "-c", &script]);
        for (line, n) in out.lines().zip(names) {
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f.len(), 3, "{rt}: {line}");
            assert_eq!(f[1], f[2], "{rt}: exec'd process not in the init's {n} ns");
            let host = std::fs::read_link(format!("/proc/{init}/ns/{n}")).expect("ns link");
            assert_eq!(
                f[1],
                host.to_string_lossy(),
                "{rt}: /proc/1 is not the init"
            );
            let ours = std::fs::read_link(format!("/proc/self/ns/{n}")).expect("own ns");
            if n != "cgroup" {
                assert_ne!(f[2], ours.to_string_lossy(), "{rt}: {n} ns is the host's");
            }
        }
        assert_eq!(out.lines().count(), names.len(), "{rt}: {out}");
        // The hostname is the container's (uts).
        let h = exec_ok(&env, "ns", &[], &["hostname"]);
        assert_eq!(h, "keel\n", "{rt}");
        finish(&env, "ns");
        results.push((rt, (pid > 1, h)));
    }
    assert_same("pid and hostname", &results);
}

/// NSpid of a host pid: its pid in each namespace, outermost first.
fn nspid(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn pid_file_and_detach() {
    let mut results = Vec::new();
    for env in envs() {
        let rt = env.rt.name;
        sleeper(&env, "det", |_| {});
        let init = init_pid(&env, "det");
        let pid_ns = std::fs::read_link(format!("/proc/{init}/ns/pid")).expect("init pid ns");

        // -d returns at once; the process keeps running.
        let pf = env.dir.join("det.pid");
        let pf_arg = pf.to_string_lossy().into_owned();
        let t = Instant::now();
        exec_ok(
            &env,
            "det",
            &["-d", "--pid-file", &pf_arg],
            &["sleep", "1002"],
        );
        assert!(t.elapsed() < SEC5, "{rt}: exec -d took {:?}", t.elapsed());
        let text = std::fs::read_to_string(&pf).expect("pid file written");
        let pid: i32 = text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{rt}: {text:?}"));
        // runc may write the pid file a moment before the process execs.
        let cmdline = || std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        wait_until(SEC5, || cmdline() == b"sleep\x001002\x00");
        assert_eq!(
            cmdline(),
            b"sleep\x001002\x00",
            "{rt}: pid file {pid} is the process"
        );
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok(),
            Some(pid_ns.clone()),
            "{rt}: detached process is in the container's pid ns"
        );
        let ps = exec_ok(&env, "det", &[], &["ps"]);
        assert!(ps.contains("sleep 1002"), "{rt}: ps shows it: {ps}");
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{rt}: detached process died"
        );

        // A foreground exec writes its pid file too.
        let pf2 = env.dir.join("fg.pid");
        let pf2_arg = pf2.to_string_lossy().into_owned();
        let run = env
            .spawn(&[
                "exec",
                "--pid-file",
                &pf2_arg,
                "det",
                "sh",
                "-c",
                "echo $$; sleep 1003",
            ])
            .expect("spawn exec");
        assert!(
            wait_until(SEC5, || run.stdout_so_far().ends_with('\n') && pf2.exists()),
            "{rt}: foreground exec never started: {}",
            run.stdout_so_far()
        );
        let inner: i32 = run.stdout_so_far().trim().parse().expect("inner pid");
        let text = std::fs::read_to_string(&pf2).expect("pid file");
        let host: i32 = text.trim().parse().expect("host pid in pid file");
        let ns = nspid(host);
        assert_eq!(ns.first(), Some(&host), "{rt}: NSpid {ns:?}");
        assert_eq!(
            ns.last(),
            Some(&inner),
            "{rt}: host pid {host} is not {inner} inside"
        );
        // SAFETY: the pid was just checked to be our exec'd process.
        unsafe { libc::kill(host, libc::SIGKILL) };
        let o = run.wait(SEC5).expect("foreground exec ends");
        assert_eq!(o.code, 137, "{rt}: {o}");
        finish(&env, "det");
        results.push((rt, (cmdline(), ns.len())));
    }
    assert_same("detached and pid file", &results);
}

#[test]
fn process_file() {
    let mut results = Vec::new();
    for env in envs() {
        let rt = env.rt.name;
        let b = sleeper(&env, "pfile", |_| {});
        let caps = json!(["CAP_KILL", "CAP_CHOWN"]);
        let process = json!({
            "terminal": false,
            "user": { "uid": 1000, "gid": 1000, "additionalGids": [5, 6] },
            "args": ["sh", "-c", "echo $FOO; pwd; id; grep -E 'CapEff|NoNewPrivs' /proc/self/status; umask"],
            "env": ["PATH=/bin", "FOO=from-file", marker_env(&b)],
            "cwd": "/dev",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps
            },
            "noNewPrivileges": true
        });
        let path = env.dir.join("process.json");
        std::fs::write(&path, process.to_string()).expect("write process.json");
        let p = path.to_string_lossy().into_owned();
        let out = exec_ok(&env, "pfile", &["--process", &p], &[]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.first(), Some(&"from-file"), "{rt}: {out}");
        assert_eq!(lines.get(1), Some(&"/dev"), "{rt}: {out}");
        assert!(
            lines
                .get(2)
                .is_some_and(|l| l.starts_with("uid=1000 gid=1000") && l.contains("groups=5,6")),
            "{rt}: {out}"
        );
        // The process JSON replaces the container's process: only its
        // capabilities (KILL=5, CHOWN=0), no FOO unless given.
        assert!(out.contains("NoNewPrivs:\t1"), "{rt}: {out}");
        // uid 1000 without ambient caps: effective set is empty.
        assert!(out.contains("CapEff:\t0000000000000000"), "{rt}: {out}");
        // A missing or invalid file is an error.
        let bad = env.dir.join("bad.json");
        std::fs::write(&bad, "{not json").expect("write");
        let bad_arg = bad.to_string_lossy().into_owned();
        exec(&env, "pfile", &["--process", &bad_arg], &[]).expect_fail("invalid process JSON");
        exec(&env, "pfile", &["--process", "/nonexistent/p.json"], &[])
            .expect_fail("missing process file");
        finish(&env, "pfile");
        results.push((rt, out));
    }
    assert_same("--process output", &results);
}

#[test]
fn missing_binary_and_stopped_container() {
    let mut results = Vec::new();
    for env in envs() {
        let rt = env.rt.name;
        sleeper(&env, "miss", |_| {});
        let mut codes = Vec::new();
        for cmd in ["/no/such-binary-xyz", "no-such-cmd-xyz"] {
            let o = exec(&env, "miss", &[], &[cmd]);
            o.expect_fail(&format!("{rt}: exec of {cmd}"));
            let name = cmd.trim_start_matches("/no/");
            assert!(
                o.stderr.contains(name),
                "{rt}: error does not name {name}: {o}"
            );
            eprintln!("{rt} exec {cmd}: exit {} {}", o.code, o.stderr.trim());
            codes.push(o.code != 0);
        }
        // The container is unaffected.
        assert_eq!(env.status("miss"), "running", "{rt}");
        finish(&env, "miss");

        let mut b = env.bundle("gone");
        b.set("/process/args", json!(["true"]));
        env.run_with(&b, &["-d"]).expect_ok("run -d true");
        assert!(
            env.wait_status("gone", "stopped", SEC5),
            "{rt}: never stopped"
        );
        let o = exec(&env, "gone", &[], &["true"]);
        o.expect_fail(&format!("{rt}: exec into a stopped container"));
        eprintln!(
            "{rt} exec into stopped: exit {} {}",
            o.code,
            o.stderr.trim()
        );
        assert!(
            o.stderr.contains("stopped") || o.stderr.contains("not running"),
            "{rt}: error says why: {o}"
        );
        // ...and into a missing one.
        exec(&env, "nosuch", &[], &["true"]).expect_fail("exec into a missing container");
        finish(&env, "gone");
        results.push((rt, codes));
    }
    assert_same("failed exec", &results);
}

#[test]
fn paused_container() {
    for env in envs() {
        let rt = env.rt.name;
        if !env.cmd(&["pause", "--help"]).ok() {
            eprintln!("SKIPPED paused_container for {rt}: `{rt} pause` is not implemented");
            continue;
        }
        sleeper(&env, "paused", |_| {});
        env.cmd(&["pause", "paused"]).expect_ok("pause");
        assert_eq!(env.status("paused"), "paused", "{rt}");
        let o = exec(&env, "paused", &[], &["true"]);
        o.expect_fail(&format!("{rt}: exec into a paused container"));
        assert!(o.stderr.contains("paused"), "{rt}: error says why: {o}");
        // --ignore-paused: accepted; the process is frozen with the rest
        // until resume (the runtime may wait for it to start).
        let run = env
            .spawn(&["exec", "-d", "--ignore-paused", "paused", "sleep", "1004"])
            .expect("spawn exec --ignore-paused");
        std::thread::sleep(Duration::from_millis(500));
        env.cmd(&["resume", "paused"]).expect_ok("resume");
        let o = run.wait(SEC5).expect("exec --ignore-paused ends");
        o.expect_ok(&format!("{rt}: exec --ignore-paused"));
        let ps = exec_ok(&env, "paused", &[], &["ps"]);
        assert!(ps.contains("sleep 1004"), "{rt}: {ps}");
        finish(&env, "paused");
    }
}

#[test]
fn preserve_fds_and_no_fd_leaks() {
    let mut results = Vec::new();
    for env in envs() {
        let rt = env.rt.name;
        sleeper(&env, "fds", |_| {});
        let data = env.dir.join("fd3.txt");
        std::fs::write(&data, "preserved-content\n").expect("write");
        let f = File::open(&data).expect("open");
        let leak = File::open("/etc/hostname").expect("open");
        let (f, leak) = (f.as_raw_fd(), leak.as_raw_fd());

        // fd 3 passed with --preserve-fds 1; fd 7 is not.
        let o = cmd_with_fds(
            &env,
            &[
                "exec",
                "--preserve-fds",
                "1",
                "fds",
                "sh",
                "-c",
                "cat <&3; ls /proc/self/fd | tr '\\n' ' '",
            ],
            &[(f, 3), (leak, 7)],
            "preserve",
        );
        o.expect_ok(&format!("{rt}: exec --preserve-fds 1"));
        assert_eq!(
            o.stdout, "preserved-content\n0 1 2 3 4 ",
            "{rt}: fd 3 passed (4 is ls's own)"
        );

        // Without it, none of the runtime's extra fds reach the process.
        let o = cmd_with_fds(
            &env,
            &["exec", "fds", "ls", "/proc/self/fd"],
            &[(f, 3), (leak, 7), (leak, 12)],
            "leaks",
        );
        o.expect_ok(&format!("{rt}: exec ls"));
        assert_eq!(o.stdout, "0\n1\n2\n3\n", "{rt}: only stdio and ls's dir fd");
        let plain = exec_ok(&env, "fds", &[], &["ls", "/proc/self/fd"]);
        assert_eq!(plain, "0\n1\n2\n3\n", "{rt}");
        finish(&env, "fds");
        results.push((rt, o.stdout));
    }
    assert_same("fds", &results);
}

#[test]
fn foreground_exec_signal_forwarding() {
    let mut results = Vec::new();
    for env in envs() {
        let rt = env.rt.name;
        sleeper(&env, "sig", |_| {});
        let run = env
            .spawn(&[
                "exec",
                "sig",
                "sh",
                "-c",
                "trap 'echo got USR1' USR1; trap 'echo got TERM; exit 3' TERM; \
                 echo ready; while true; do sleep 0.05; done",
            ])
            .expect("spawn exec");
        assert!(
            wait_until(SEC5, || run.stdout_so_far().contains("ready")),
            "{rt}: exec never got ready: {}",
            run.stdout_so_far()
        );
        run.signal(libc::SIGUSR1).expect("USR1");
        assert!(
            wait_until(SEC5, || run.stdout_so_far().contains("got USR1")),
            "{rt}: USR1 not forwarded: {}",
            run.stdout_so_far()
        );
        run.signal(libc::SIGTERM).expect("TERM");
        let o = run.wait(SEC5).expect("exec exits after TERM");
        assert_eq!(o.code, 3, "{rt}: {o}");
        assert_eq!(o.stdout, "ready\ngot USR1\ngot TERM\n", "{rt}");
        // The container itself is untouched.
        assert_eq!(env.status("sig"), "running", "{rt}");
        finish(&env, "sig");
        results.push((rt, (o.code, o.stdout)));
    }
    assert_same("signal forwarding", &results);
}

#[test]
fn refused_flags() {
    let env = TestEnv::keel();
    sleeper(&env, "refused", |_| {});
    for (flags, name) in [
        (&["--apparmor", "unconfined"][..], "apparmor"),
        (&["--cgroup", "sub"][..], "cgroup"),
    ] {
        let o = exec(&env, "refused", flags, &["true"]);
        o.expect_fail(&format!("exec {flags:?}"));
        assert!(o.stderr.contains(name), "error names --{name}: {o}");
    }
    // -t -d without a console socket cannot work (runc refuses it too).
    exec(&env, "refused", &["-t", "-d"], &["true"]).expect_fail("exec -t -d");
    finish(&env, "refused");
}

/// The process is in every cgroup of the container, v1 hierarchies and
/// cgroup2 alike, as its init (keel's process moves itself into the v1
/// ones; runc writes its pid to cgroup.procs).
#[test]
fn process_is_in_the_inits_cgroups() {
    for env in envs() {
        let rt = env.rt.name;
        sleeper(&env, "excgall", |_| {});
        let show = [
            "sh",
            "-c",
            "cat /proc/1/cgroup; echo --; cat /proc/self/cgroup",
        ];
        let out = exec_ok(&env, "excgall", &[], &show);
        let (init, process) = out.split_once("--\n").expect("two lists");
        assert!(init.lines().count() > 0, "{rt}: {out}");
        assert_eq!(init, process, "{rt}: init's cgroups, then the process's");
        finish(&env, "excgall");
    }
}

/// `--cgroup controller:path` puts the process in an existing sub-cgroup of
/// the container's (here: of the v1 memory hierarchy); a missing one, or a
/// malformed argument, is an error.
#[test]
fn sub_cgroup() {
    for env in envs() {
        let rt = env.rt.name;
        sleeper(&env, "excg", |_| {});
        let Some(memory) = env
            .cgroup_dirs("excg")
            .into_iter()
            .find(|d| d.to_string_lossy().contains("/memory/"))
        else {
            eprintln!("SKIPPED sub_cgroup: no cgroup v1 memory hierarchy here");
            finish(&env, "excg");
            return;
        };
        std::fs::create_dir(memory.join("sub")).expect("mkdir sub-cgroup");
        let show = ["sh", "-c", "grep -E ':memory:' /proc/self/cgroup"];
        let line = exec_ok(&env, "excg", &["--cgroup", "memory:sub"], &show);
        assert!(line.trim_end().ends_with("/sub"), "{rt}: {line}");
        let line = exec_ok(&env, "excg", &[], &show);
        assert!(!line.trim_end().ends_with("/sub"), "{rt}: {line}");
        for bad in ["memory:nonexistent", "a:b:c", "pids:x"] {
            let o = exec(&env, "excg", &["--cgroup", bad], &["true"]);
            assert!(!o.ok(), "{rt} --cgroup {bad} must fail: {o}");
        }
        finish(&env, "excg");
    }
}

/// `exec --env` naming a variable of the container's process: the program
/// sees it once, with the new value (runc: `prepareEnv`, and Go's
/// environment before it).
#[test]
fn env_flag_overrides_once() {
    let mut results = Vec::new();
    for env in envs() {
        let rt = env.rt.name;
        sleeper(&env, "envonce", |_| {});
        let out = exec_ok(
            &env,
            "envonce",
            &["-e", "TERM=dumb", "-e", "X=1", "-e", "X=2"],
            &["env"],
        );
        finish(&env, "envonce");
        let mut vars: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("TERM=") || l.starts_with("X="))
            .collect();
        vars.sort();
        assert_eq!(vars, ["TERM=dumb", "X=2"], "{rt}: {out}");
        results.push((rt, vars.join(" ")));
    }
    assert_same("env of exec --env", &results);
}

/// `exec --cap` of a process with an inheritable set also raises the
/// capability in the ambient set where the kernel lets it (CAP_SYS_ADMIN,
/// inheritable here), as runc 1.1.5 does. One it cannot raise (CAP_NET_RAW,
/// not inheritable) is skipped with runc 1.2+'s warning (`ApplyCaps` in
/// libcontainer/capabilities/capabilities.go; runc 1.1.5 is silent).
#[test]
fn cap_flag_raises_ambient() {
    let mut results = Vec::new();
    for env in envs() {
        let rt = env.rt.name;
        sleeper(&env, "capamb", |b| {
            b.push("/process/capabilities/bounding", json!("CAP_SYS_ADMIN"));
            b.set(
                "/process/capabilities/inheritable",
                json!(["CAP_KILL", "CAP_SYS_ADMIN"]),
            );
            b.set("/process/capabilities/ambient", json!(["CAP_KILL"]));
        });
        let o = exec(
            &env,
            "capamb",
            &["--cap", "CAP_SYS_ADMIN", "--cap", "CAP_NET_RAW"],
            &["grep", "CapAmb", "/proc/self/status"],
        );
        o.expect_ok(&format!("{rt} exec --cap"));
        finish(&env, "capamb");
        const KILL_AND_SYS_ADMIN: &str = "CapAmb:\t0000000000200020\n";
        assert_eq!(o.stdout, KILL_AND_SYS_ADMIN, "{rt}: {o}");
        if rt == "keel" {
            assert!(
                o.stderr.contains(
                    r#"level=warning msg="can't raise ambient capability CAP_NET_RAW: operation not permitted""#
                ),
                "{o}"
            );
            assert!(!o.stderr.contains("CAP_SYS_ADMIN"), "{o}");
        }
        results.push((rt, o.stdout));
    }
    assert_same("ambient set of exec --cap", &results);
}
