//! The command line as scripts and engines meet it: `spec`, `-v`, process
//! files, exit codes and error words, `kill`, `--pidfd-socket`, `--debug`.
//! Differential against runc where Debian's runc 1.1.5 has the behaviour;
//! keel-only (citing runc's code) where only newer runc has it.

use keel_conformance::{assert_no_leaks, log_msgs, require_runc, wait_until, Bundle, TestEnv};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde_json::{json, Value};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::time::Duration;

const SEC5: Duration = Duration::from_secs(5);

/// keel's env, then runc's when runc is installed (else a printed SKIPPED).
fn envs() -> Vec<TestEnv> {
    let mut v = vec![TestEnv::keel()];
    if let Some(runc) = require_runc!() {
        v.push(TestEnv::new(runc));
    }
    v
}

#[track_caller]
fn assert_same<T: PartialEq + std::fmt::Debug>(what: &str, results: &[(&str, T)]) {
    if let [(_, k), (_, r)] = results {
        assert_eq!(k, r, "{what}: keel (left) and runc (right) differ");
    }
}

/// `run -d` of `sleep 1000` in container `id`, after `tweak`.
fn sleeper(env: &TestEnv, id: &str, tweak: impl FnOnce(&mut Bundle)) -> Bundle {
    let mut b = env.bundle(id);
    b.set("/process/args", json!(["sleep", "1000"]));
    tweak(&mut b);
    env.run_with(&b, &["-d"])
        .expect_ok(&format!("{} run -d", env.rt.name));
    b
}

fn finish(env: &TestEnv, id: &str) {
    env.cmd(&["delete", "--force", id])
        .expect_ok(&format!("{} delete --force", env.rt.name));
    assert_no_leaks(env, id);
}

/// `spec` writes a cgroup namespace only on a pure cgroup v2 host (runc's
/// `spec.go`: `cgroups.IsCgroup2UnifiedMode()`); on this hybrid host none.
#[test]
fn spec_namespaces_follow_the_cgroup_layout() {
    let mut results = Vec::new();
    for env in envs() {
        let dir = env.dir.join("spec");
        std::fs::create_dir_all(&dir).expect("mkdir");
        env.cmd(&["spec", "--bundle", &dir.to_string_lossy()])
            .expect_ok("spec");
        let text = std::fs::read_to_string(dir.join("config.json")).expect("config.json");
        let config: Value = serde_json::from_str(&text).expect("JSON");
        results.push((env.rt.name, config["linux"]["namespaces"].clone()));
    }
    let unified = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    let has_cgroup = results[0]
        .1
        .as_array()
        .is_some_and(|a| a.iter().any(|n| n["type"] == "cgroup"));
    assert_eq!(has_cgroup, unified, "keel: {:?}", results[0].1);
    assert_same("spec namespaces", &results);
}

/// `-v` in runc's layout: `<name> version X`, `commit: ...`, `spec: ...`.
#[test]
fn version_in_runcs_layout() {
    let env = TestEnv::keel();
    for flag in ["-v", "--version"] {
        let o = env.cmd(&[flag]);
        o.expect_ok(flag);
        let lines: Vec<&str> = o.stdout.lines().collect();
        assert!(lines[0].starts_with("keel version "), "{o}");
        assert!(lines[1].starts_with("commit: "), "{o}");
        assert_eq!(lines[2], "spec: 1.3.0", "{o}");
        assert_eq!(lines.len(), 3, "{o}");
    }
    if let Some(runc) = require_runc!() {
        let o = TestEnv::new(runc).cmd(&["-v"]);
        assert!(o.stdout.starts_with("runc version "), "{o}");
    }
}

/// A process JSON without `user` runs as uid 0, gid 0 (runc decodes it into
/// Go's zero values); keel refused it ("missing field `user`").
#[test]
fn exec_process_file_without_user() {
    let mut results = Vec::new();
    for env in envs() {
        let rt = env.rt.name;
        let b = sleeper(&env, "nouser", |_| {});
        let process = json!({
            "args": ["sh", "-c", "id; pwd"],
            "env": b.config["process"]["env"],
            "cwd": "/tmp"
        });
        let path = env.dir.join("process.json");
        std::fs::write(&path, process.to_string()).expect("write process.json");
        let o = env.cmd(&["exec", "--process", &path.to_string_lossy(), "nouser"]);
        o.expect_ok(&format!("{rt} exec --process without user"));
        finish(&env, "nouser");
        results.push((rt, o.stdout));
    }
    assert_eq!(results[0].1, "uid=0 gid=0\n/tmp\n");
    assert_same("process without user", &results);
}

/// `exec` of a program that cannot be found or run: exit 255 (runc's
/// `fatalWithCode(..., 255)`, so a caller tells it from the program's own
/// status) and runc's words, the errno as Go prints it (engines map "no such
/// file or directory" and "executable file not found" to 127, "permission
/// denied" to 126).
#[test]
fn exec_failures_exit_255_in_runcs_words() {
    let mut results = Vec::new();
    for env in envs() {
        let rt = env.rt.name;
        let b = sleeper(&env, "xfail", |_| {});
        std::fs::write(b.rootfs().join("noexec"), "x").expect("write");
        let mut out = Vec::new();
        for cmd in ["/no/such", "no-such-cmd", "/etc", "/noexec"] {
            let o = env.cmd(&["exec", "xfail", cmd]);
            out.push((o.code, log_msgs(&o.stderr)));
        }
        let o = env.cmd(&["exec", "nosuch", "true"]);
        out.push((o.code, log_msgs(&o.stderr)));
        finish(&env, "xfail");
        results.push((rt, out));
    }
    let keel = &results[0].1;
    assert_eq!(
        keel[0],
        (
            255,
            "exec failed: unable to start container process: exec: \"/no/such\": \
             stat /no/such: no such file or directory"
                .to_string()
        )
    );
    assert_same("failed exec", &results);
}

/// The program's execve itself fails (it exists, but is no executable
/// format): exit 255 and the errno in Go's words. runc 1.1.5 lets the
/// process print it and exit 1; runc 1.2+ reports it as keel does
/// (libcontainer/init_linux.go `Init`: exit 255; the error travels back
/// to `runc exec` as "unable to start container process: exec ...").
#[test]
fn exec_of_an_unrunnable_program_exits_255() {
    let env = TestEnv::keel();
    let b = sleeper(&env, "xbad", |_| {});
    let bad = b.rootfs().join("bad");
    std::fs::write(&bad, "garbage\n").expect("write");
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let o = env.cmd(&["exec", "xbad", "/bad"]);
    assert_eq!(o.code, 255, "{o}");
    assert_eq!(
        log_msgs(&o.stderr),
        "exec failed: unable to start container process: exec /bad: exec format error"
    );
    finish(&env, "xbad");
}

/// `create` and `run` of a missing program: exit 1, "<runtime> create
/// failed: unable to start container process: exec: ...", as runc says it.
#[test]
fn create_and_run_of_a_missing_program_in_runcs_words() {
    let mut results = Vec::new();
    for env in envs() {
        let rt = env.rt.name;
        let mut b = env.bundle("nop");
        b.set("/process/args", json!(["/no/such"]));
        let mut out = Vec::new();
        for o in [env.create(&b), env.run(&b), env.run_with(&b, &["-d"])] {
            let msg = log_msgs(&o.stderr);
            out.push((o.code, msg.replacen(&format!("{rt} "), "RUNTIME ", 1)));
        }
        assert_no_leaks(&env, "nop");
        results.push((rt, out));
    }
    assert_eq!(
        results[0].1[0],
        (
            1,
            "RUNTIME create failed: unable to start container process: exec: \"/no/such\": \
             stat /no/such: no such file or directory"
                .to_string()
        )
    );
    assert_same("create/run of a missing program", &results);
}

/// `kill` takes any signal number and lets the kernel judge it: 0 probes
/// (exit 0 while the init lives), an unknown number fails; a missing
/// container is reported before the signal is looked at.
#[test]
fn kill_signal_zero_and_numbers() {
    let mut results = Vec::new();
    for env in envs() {
        let rt = env.rt.name;
        sleeper(&env, "k0", |_| {});
        let mut codes = Vec::new();
        for args in [
            &["kill", "k0", "0"][..],
            &["kill", "k0", "999"],
            &["kill", "k0", "SIGNOPE"],
            &["kill", "nosuch", "0"],
        ] {
            let o = env.cmd(args);
            codes.push(o.code);
        }
        let o = env.cmd(&["kill", "nosuch", "SIGNOPE"]);
        codes.push(o.code);
        assert!(
            log_msgs(&o.stderr).contains("container does not exist"),
            "{rt}: {o}"
        );
        assert_eq!(env.status("k0"), "running", "{rt}");
        finish(&env, "k0");
        results.push((rt, codes));
    }
    assert_eq!(results[0].1, [0, 1, 1, 1, 1]);
    assert_same("kill exit codes", &results);
}

/// `kill KILL` of a container that shares the host's pid namespace kills
/// every process of its cgroup, not only the init: its other processes
/// would survive it (no pid 1 of their own to take them along). runc 1.2+
/// does this (libcontainer/container_linux.go, `Signal`: SIGKILL without a
/// private pid namespace goes through `signalAllProcesses`); 1.1.5 does not.
#[test]
fn kill_of_a_host_pid_namespace_container_kills_all() {
    let env = TestEnv::keel();
    sleeper(&env, "hostpid", |b| {
        b.namespaces(&["mount", "ipc", "uts", "network"]);
        b.sh("sleep 1000 & sleep 1000 & wait");
    });
    let cgroup_pids = || -> usize {
        let state = env.state("hostpid").expect("state");
        let pid = state["pid"].as_i64().expect("pid");
        // The children of the init, found as the host sees them.
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        children.split_whitespace().count()
    };
    assert!(wait_until(SEC5, || cgroup_pids() == 2), "two sleeps");
    let state = env.state("hostpid").expect("state");
    let init = state["pid"].as_i64().expect("pid") as i32;
    let children: Vec<i32> = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
        .expect("children")
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect();
    env.cmd(&["kill", "hostpid", "KILL"]).expect_ok("kill KILL");
    let gone = |pid: i32| {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
    };
    assert!(
        wait_until(SEC5, || children.iter().all(|&p| gone(p))),
        "the init's children outlived kill KILL: {children:?}"
    );
    finish(&env, "hostpid");
}

/// The test's side of `--pidfd-socket`: a listening socket; the first
/// connection's message comes back as (payload, fd).
fn pidfd_listener(
    env: &TestEnv,
    name: &str,
) -> (String, std::sync::mpsc::Receiver<(String, OwnedFd)>) {
    let path = env.dir.join(format!("{name}.sock"));
    let listener = UnixListener::bind(&path).expect("bind pidfd socket");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((s, _)) = listener.accept() else {
            return;
        };
        let mut buf = [0u8; 64];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let Ok(msg) = recvmsg::<()>(
            s.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) else {
            return;
        };
        let n = msg.bytes;
        let fd = msg.cmsgs().ok().and_then(|mut c| {
            c.find_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            })
        });
        if let Some(fd) = fd {
            // SAFETY: the kernel just installed this fd for us.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let _ = tx.send((String::from_utf8_lossy(&buf[..n]).into_owned(), fd));
        }
    });
    (path.to_string_lossy().into_owned(), rx)
}

/// The pid a pidfd refers to, from its fdinfo.
fn pidfd_pid(fd: &OwnedFd) -> i64 {
    let info =
        std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).expect("fdinfo");
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|p| p.trim().parse().ok())
        .expect("a pidfd's fdinfo has Pid:")
}

/// `create --pidfd-socket`: the init's pidfd arrives, with "standard", as
/// runc 1.2+ sends it (libcontainer/init_linux.go `setupPidfd`; the
/// socket is dialled in utils_linux.go `setupPidfdSocket`); a signal through
/// it reaches the init (contrib/cmd/pidfd-kill).
#[test]
fn create_sends_the_inits_pidfd() {
    let env = TestEnv::keel();
    let (sock, rx) = pidfd_listener(&env, "create");
    let mut b = env.bundle("pfd");
    b.set("/process/args", json!(["sleep", "1000"]));
    b.save().expect("save");
    let bundle = b.dir.to_string_lossy().into_owned();
    env.cmd(&[
        "create",
        "--bundle",
        &bundle,
        "--pidfd-socket",
        &sock,
        "pfd",
    ])
    .expect_ok("create --pidfd-socket");
    let (kind, fd) = rx.recv_timeout(SEC5).expect("a pidfd on the socket");
    assert_eq!(kind, "standard");
    let init = env.state("pfd").expect("state")["pid"]
        .as_i64()
        .expect("pid");
    assert_eq!(pidfd_pid(&fd), init);
    env.cmd(&["start", "pfd"]).expect_ok("start");
    libkeel::pidfd_send_signal(fd.as_fd(), libc::SIGKILL).expect("kill through the pidfd");
    assert!(env.wait_status("pfd", "stopped", SEC5), "the init died");
    env.cmd(&["delete", "pfd"]).expect_ok("delete");
    assert_no_leaks(&env, "pfd");
}

/// `exec --pidfd-socket`: the exec'd process's pidfd, with "setns" (runc
/// 1.2+, libcontainer/setns_init_linux.go).
#[test]
fn exec_sends_the_process_pidfd() {
    let env = TestEnv::keel();
    sleeper(&env, "pfx", |_| {});
    let (sock, rx) = pidfd_listener(&env, "exec");
    let pid_file = env.dir.join("exec.pid");
    let pid_arg = pid_file.to_string_lossy().into_owned();
    env.cmd(&[
        "exec",
        "-d",
        "--pid-file",
        &pid_arg,
        "--pidfd-socket",
        &sock,
        "pfx",
        "sleep",
        "1000",
    ])
    .expect_ok("exec --pidfd-socket");
    let (kind, fd) = rx.recv_timeout(SEC5).expect("a pidfd on the socket");
    assert_eq!(kind, "setns");
    let pid: i64 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert_eq!(pidfd_pid(&fd), pid);
    finish(&env, "pfx");
}

/// A socket nobody listens on fails the command before anything is made.
#[test]
fn pidfd_socket_that_cannot_be_reached() {
    let env = TestEnv::keel();
    let mut b = env.bundle("pfn");
    b.set("/process/args", json!(["sleep", "1000"]));
    b.save().expect("save");
    let bundle = b.dir.to_string_lossy().into_owned();
    let missing = env.dir.join("nobody.sock").to_string_lossy().into_owned();
    let o = env.cmd(&[
        "run",
        "-d",
        "--bundle",
        &bundle,
        "--pidfd-socket",
        &missing,
        "pfn",
    ]);
    o.expect_fail("run --pidfd-socket to nowhere");
    assert!(o.stderr.contains("--pidfd-socket: connect"), "{o}");
    assert!(env.state("pfn").is_err(), "nothing is left: {o}");
    assert_no_leaks(&env, "pfn");
}

/// The debug lines of stderr (runc's logrus text format).
fn debug_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains(" level=debug "))
        .collect()
}

/// `--debug exec`: debug lines as runc writes them, among them runc's
/// `process exited` event with its pid and status fields (signals.go);
/// none without `--debug`.
#[test]
fn debug_logs_an_exec() {
    let mut results = Vec::new();
    for env in envs() {
        let rt = env.rt.name;
        sleeper(&env, "dbg", |_| {});
        let o = env.cmd(&["--debug", "exec", "dbg", "sh", "-c", "exit 3"]);
        assert_eq!(o.code, 3, "{rt}: {o}");
        let lines = debug_lines(&o.stderr);
        let exited = lines
            .iter()
            .find(|l| l.contains(r#"msg="process exited""#))
            .unwrap_or_else(|| panic!("{rt}: no process exited line: {o}"));
        assert!(exited.ends_with(" status=3"), "{rt}: {exited}");
        assert!(exited.contains(" pid="), "{rt}: {exited}");
        let quiet = env.cmd(&["exec", "dbg", "true"]);
        assert!(debug_lines(&quiet.stderr).is_empty(), "{rt}: {quiet}");
        finish(&env, "dbg");
        results.push((rt, lines.len() > 1));
    }
    assert_same("several debug lines", &results);
}

/// `--debug run`: the container's setup is logged too (runc: its nsexec
/// stages and "child process in init()"; keel: the init set up and started).
#[test]
fn debug_logs_a_run() {
    let mut results = Vec::new();
    for env in envs() {
        let rt = env.rt.name;
        let mut b = env.bundle("dbgr");
        b.sh("true");
        b.save().expect("save");
        let bundle = b.dir.to_string_lossy().into_owned();
        let o = env.cmd(&["--debug", "run", "--bundle", &bundle, "dbgr"]);
        o.expect_ok(&format!("{rt} --debug run"));
        let lines = debug_lines(&o.stderr);
        assert!(
            lines.iter().any(|l| l.contains(r#"msg="process exited""#)),
            "{rt}: {o}"
        );
        assert_no_leaks(&env, "dbgr");
        results.push((rt, lines.len() > 2));
    }
    assert_same("setup is logged", &results);
}

/// Runs `args` (`{id}` replaced by the container's id) against a container
/// that `setup` leaves in some status, under each runtime; returns the exit
/// code and the error words of each, after checking they are the same.
fn status_refusal(
    id: &str,
    setup: impl Fn(&TestEnv, &str),
    args: &[&str],
) -> Vec<(&'static str, (i32, String))> {
    let mut results = Vec::new();
    for env in envs() {
        setup(&env, id);
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "{id}" { id } else { a })
            .collect();
        let o = env.cmd(&args);
        finish(&env, id);
        results.push((env.rt.name, (o.code, log_msgs(&o.stderr))));
    }
    assert_same(&format!("{args:?}"), &results);
    results
}

/// A container whose program has exited.
fn stopped(env: &TestEnv, id: &str) {
    let mut b = env.bundle(id);
    b.set("/process/args", json!(["true"]));
    env.run_with(&b, &["-d"]).expect_ok("run -d");
    assert!(
        env.wait_status(id, "stopped", SEC5),
        "{} did not stop",
        env.rt.name
    );
}

fn running(env: &TestEnv, id: &str) {
    sleeper(env, id, |_| {});
}

/// `exec` into a stopped container: runc's exec.go words, exit 255.
#[test]
fn exec_into_a_stopped_container_in_runcs_words() {
    let r = status_refusal("execstopped", stopped, &["exec", "{id}", "true"]);
    assert_eq!(
        r[0].1,
        (
            255,
            "exec failed: cannot exec in a stopped container".into()
        )
    );
}

/// `start` of a stopped container: libcontainer's Start words.
#[test]
fn start_of_a_stopped_container_in_runcs_words() {
    let r = status_refusal("startstopped", stopped, &["start", "{id}"]);
    assert_eq!(
        r[0].1,
        (1, "cannot start a container that has stopped".into())
    );
}

/// `start` of a running container.
#[test]
fn start_of_a_running_container_in_runcs_words() {
    let r = status_refusal("startrunning", running, &["start", "{id}"]);
    assert_eq!(
        r[0].1,
        (1, "cannot start an already running container".into())
    );
}

/// `start` of a paused container.
#[test]
fn start_of_a_paused_container_in_runcs_words() {
    let paused = |env: &TestEnv, id: &str| {
        running(env, id);
        env.cmd(&["pause", id]).expect_ok("pause");
    };
    let r = status_refusal("startpaused", paused, &["start", "{id}"]);
    assert_eq!(
        r[0].1,
        (1, "cannot start a container in the paused state".into())
    );
}

/// `delete` of a running container without --force: delete.go's words.
#[test]
fn delete_of_a_running_container_in_runcs_words() {
    let r = status_refusal("delrunning", running, &["delete", "{id}"]);
    assert_eq!(
        r[0].1,
        (
            1,
            "cannot delete container delrunning that is not stopped: running".into()
        )
    );
}

/// `kill`, `pause`, `update` and `events` of a stopped container.
#[test]
fn commands_on_a_stopped_container_in_runcs_words() {
    for (args, words) in [
        (&["kill", "{id}", "KILL"][..], "container not running"),
        (&["pause", "{id}"][..], "container not running"),
        (&["resume", "{id}"][..], "container not paused"),
        (
            &["update", "--pids-limit", "10", "{id}"][..],
            "container not running",
        ),
        (
            &["events", "--stats", "{id}"][..],
            "container with id cmdstopped is not running",
        ),
    ] {
        let r = status_refusal("cmdstopped", stopped, args);
        assert_eq!(r[0].1, (1, words.into()), "{args:?}");
    }
}

/// `create --bundle DIR` of a bundle spoiled by `spoil` (given its
/// directory) under each runtime: the exit code and the error words
/// (without the runtime's name), the same under both; returns keel's.
fn bundle_refusal(id: &str, spoil: impl Fn(&std::path::Path)) -> (i32, String) {
    let mut results = Vec::new();
    for env in envs() {
        let b = env.bundle(id);
        spoil(&b.dir);
        let bundle = b.dir.to_string_lossy().into_owned();
        let o = env.cmd(&["create", "--bundle", &bundle, id]);
        assert_no_leaks(&env, id);
        let words = log_msgs(&o.stderr)
            .replacen(env.rt.name, "RT", 1)
            .replace(&bundle, "BUNDLE");
        results.push((env.rt.name, (o.code, words)));
    }
    assert_same("bundle refusal", &results);
    results.remove(0).1
}

/// A bundle directory that does not exist: runc's chdir into it fails.
#[test]
fn bundle_that_does_not_exist_in_runcs_words() {
    let r = bundle_refusal("nobundle", |dir| {
        std::fs::remove_dir_all(dir).expect("rm bundle");
    });
    assert_eq!(
        r,
        (
            1,
            "RT create failed: chdir BUNDLE: no such file or directory".into()
        )
    );
}

/// A bundle without config.json: runc's loadSpec words.
#[test]
fn bundle_without_config_in_runcs_words() {
    let r = bundle_refusal("noconfigjson", |dir| {
        std::fs::remove_file(dir.join("config.json")).expect("rm config");
    });
    assert_eq!(
        r,
        (
            1,
            "RT create failed: JSON specification file config.json not found".into()
        )
    );
}

/// A config.json that cannot be read (a directory).
#[test]
fn config_that_cannot_be_read_in_runcs_words() {
    let r = bundle_refusal("dirconfig", |dir| {
        std::fs::remove_file(dir.join("config.json")).expect("rm config");
        std::fs::create_dir(dir.join("config.json")).expect("mkdir");
    });
    assert_eq!(
        r,
        (
            1,
            "RT create failed: read config.json: is a directory".into()
        )
    );
}

/// A rootfs that is not there: runc's validator words.
#[test]
fn missing_rootfs_in_runcs_words() {
    let r = bundle_refusal("norootfs", |dir| {
        std::fs::remove_dir_all(dir.join("rootfs")).expect("rm rootfs");
    });
    assert_eq!(
        r,
        (
            1,
            "RT create failed: invalid rootfs: stat BUNDLE/rootfs: no such file or directory"
                .into()
        )
    );
}
