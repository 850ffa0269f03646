//! sd_notify: with `NOTIFY_SOCKET` in the runtime's environment, the
//! container gets a socket of its own at /run/notify/notify.sock and its
//! `READY=` reaches the host socket, followed by `MAINPID=`. The foreground
//! scenario runs under keel and runc and what the host socket receives is
//! compared; the others are keel-only, because Debian's runc 1.1.5 does not
//! return from them (seen here: it relays READY and MAINPID, then `run -d`
//! and `start` stay until killed), and in two it misses READY altogether:
//! - a datagram with several assignments (`STATUS=up\nREADY=1`, which
//!   systemd accepts): runc looks for `READY=` at the start of the datagram
//!   only;
//! - a container that exits before READY: runc polls `/proc/<init>`, which
//!   stays while the init is its unreaped zombie.

use keel_conformance::{assert_no_leaks, require_runc, static_helper, Bundle, TestEnv};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

const SEC10: Duration = Duration::from_secs(10);

fn envs() -> Vec<TestEnv> {
    let mut v = vec![TestEnv::keel()];
    if let Some(runc) = require_runc!() {
        v.push(TestEnv::new(runc));
    }
    v
}

/// The host side: a datagram socket in the test dir, as systemd's.
fn host_socket(env: &TestEnv) -> (UnixDatagram, String) {
    let path = env.dir.join("host-notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind host notify socket");
    sock.set_read_timeout(Some(SEC10)).expect("timeout");
    (sock, path.to_string_lossy().into_owned())
}

/// The messages the host socket received, until none comes for `quiet`.
fn received(sock: &UnixDatagram, quiet: Duration) -> Vec<String> {
    sock.set_read_timeout(Some(quiet)).expect("timeout");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

/// A bundle whose program reports its NOTIFY_SOCKET, then sends
/// `STATUS=starting` and, after a delay, `ready` (one datagram), then sleeps.
fn notifier(env: &TestEnv, id: &str, ready: &str) -> Bundle {
    let helper = static_helper("sd_notify").expect("build the sd_notify helper");
    let mut b = env.bundle(id);
    std::fs::copy(&helper, b.rootfs().join("sd_notify")).expect("copy helper");
    b.sh(&format!(
        "echo \"socket=$NOTIFY_SOCKET\"; /sd_notify STATUS=starting; sleep 0.3; \
         /sd_notify \"$(printf '{ready}')\"; sleep 1000"
    ));
    b
}

fn check_ready(env: &TestEnv, msgs: &[String], main_pid: i32) {
    assert_eq!(
        msgs,
        &["READY=1\n".to_string(), format!("MAINPID={main_pid}\n")],
        "{}: host socket got {msgs:?}",
        env.rt.name
    );
}

#[test]
fn detached_run_returns_once_ready() {
    detached_run(&TestEnv::keel(), "READY=1");
}

#[test]
fn ready_among_other_assignments_is_relayed() {
    detached_run(&TestEnv::keel(), "STATUS=up\\nREADY=1");
}

/// `run -d` of a notifier sending `ready`: returns once READY is relayed.
fn detached_run(env: &TestEnv, ready: &str) {
    {
        let (sock, host) = host_socket(env);
        let b = notifier(env, "ready", ready);
        b.save().expect("save");
        let bundle = b.dir.to_string_lossy().into_owned();
        let o = env
            .spawn_env(
                &["run", "-d", "--bundle", &bundle, "ready"],
                &[("NOTIFY_SOCKET", &host)],
            )
            .expect("spawn")
            .wait(SEC10)
            .unwrap_or_else(|e| panic!("{} run -d: {e:#}", env.rt.name));
        assert!(o.ok(), "{}: {o}", env.rt.name);
        // run -d waited for READY: the message is there already.
        let state = env.state("ready").expect("state");
        let pid = state["pid"].as_i64().unwrap_or_default() as i32;
        check_ready(env, &received(&sock, Duration::from_millis(200)), pid);
        env.cmd(&["delete", "-f", "ready"]).expect_ok("delete");
        assert_no_leaks(env, "ready");
    }
}

#[test]
fn start_relays_ready_and_the_container_sees_its_socket() {
    {
        let env = TestEnv::keel();
        let (sock, host) = host_socket(&env);
        let mut b = notifier(&env, "cs", "READY=1");
        let script = b.config["process"]["args"][2]
            .as_str()
            .unwrap_or_default()
            .replace(
                "echo \"socket=$NOTIFY_SOCKET\"",
                "echo \"socket=$NOTIFY_SOCKET\" >/tmp/env",
            );
        b.sh(&script);
        b.set("/root/readonly", serde_json::Value::Bool(false));
        b.save().expect("save");
        let bundle = b.dir.to_string_lossy().into_owned();
        let notify = [("NOTIFY_SOCKET", host.as_str())];
        let o = env
            .spawn_env(&["create", "--bundle", &bundle, "cs"], &notify)
            .expect("spawn create")
            .wait(SEC10)
            .expect("create");
        assert!(o.ok(), "{}: {o}", env.rt.name);
        let o = env
            .spawn_env(&["start", "cs"], &notify)
            .expect("spawn start")
            .wait(SEC10)
            .expect("start");
        assert!(o.ok(), "{}: {o}", env.rt.name);
        let state = env.state("cs").expect("state");
        let pid = state["pid"].as_i64().unwrap_or_default() as i32;
        check_ready(&env, &received(&sock, Duration::from_millis(200)), pid);
        let seen =
            std::fs::read_to_string(Path::new(&b.rootfs()).join("tmp/env")).unwrap_or_default();
        assert_eq!(seen, "socket=/run/notify/notify.sock\n", "{}", env.rt.name);
        env.cmd(&["delete", "-f", "cs"]).expect_ok("delete");
        assert_no_leaks(&env, "cs");
    }
}

#[test]
fn container_that_exits_before_ready_does_not_hang_start() {
    {
        let env = TestEnv::keel();
        let (sock, host) = host_socket(&env);
        let mut b = env.bundle("quits");
        b.sh("exit 0");
        b.save().expect("save");
        let bundle = b.dir.to_string_lossy().into_owned();
        let o = env
            .spawn_env(
                &["run", "-d", "--bundle", &bundle, "quits"],
                &[("NOTIFY_SOCKET", &host)],
            )
            .expect("spawn")
            .wait(SEC10)
            .unwrap_or_else(|e| panic!("{} run -d without READY: {e:#}", env.rt.name));
        assert!(o.ok(), "{}: {o}", env.rt.name);
        assert!(received(&sock, Duration::from_millis(100)).is_empty());
        env.cmd(&["delete", "-f", "quits"]).expect_ok("delete");
        assert_no_leaks(&env, "quits");
    }
}

#[test]
fn foreground_run_names_the_runtime_as_main_pid() {
    for env in envs() {
        let (sock, host) = host_socket(&env);
        let helper = static_helper("sd_notify").expect("build the sd_notify helper");
        let mut b = env.bundle("fg");
        std::fs::copy(&helper, b.rootfs().join("sd_notify")).expect("copy helper");
        b.sh("/sd_notify READY=1; sleep 0.5; exit 7");
        b.save().expect("save");
        let bundle = b.dir.to_string_lossy().into_owned();
        let run = env
            .spawn_env(
                &["run", "--bundle", &bundle, "fg"],
                &[("NOTIFY_SOCKET", &host)],
            )
            .expect("spawn");
        // unshare execs the runtime: the child's pid is the runtime's.
        let runtime_pid = run.pid();
        let o = run.wait(SEC10).expect("run exits");
        assert_eq!(o.code, 7, "{}: {o}", env.rt.name);
        check_ready(
            &env,
            &received(&sock, Duration::from_millis(200)),
            runtime_pid,
        );
        assert_no_leaks(&env, "fg");
    }
}
