//! The library in a long-lived process (as the shim uses it): creates that
//! fail at different steps, and a whole create/start/delete, leave this
//! process with exactly the fds it had, and nothing else behind.
//!
//! Without the test harness (`harness = false`): `create` forks and must be
//! called from a single-threaded process.

use keel_conformance::{assert_no_leaks, Bundle, TestEnv};
use libkeel::{Container, ContainerBuilder, Runtime, Signal};
use serde_json::json;
use std::path::PathBuf;

/// This process's open fds: number and what each refers to.
fn fds() -> Vec<(String, PathBuf)> {
    let mut fds: Vec<_> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .flatten()
        .filter_map(|e| {
            Some((
                e.file_name().into_string().ok()?,
                std::fs::read_link(e.path()).ok()?,
            ))
        })
        .collect();
    fds.sort();
    fds
}

fn create(rt: &Runtime, env: &TestEnv, b: &Bundle, id: &str) -> libkeel::Result<Container> {
    ContainerBuilder::new(id, &b.dir).root(&env.root).create(rt)
}

/// A create of a bundle spoiled by `spoil` fails naming `needle`, and
/// leaves no fd or anything else.
fn failing(rt: &Runtime, name: &str, needle: &str, spoil: impl Fn(&mut Bundle)) {
    let env = TestEnv::keel();
    let mut b = env.bundle(name);
    b.sh("true");
    spoil(&mut b);
    b.save().expect("save");
    let before = fds();
    let err = create(rt, &env, &b, name)
        .err()
        .unwrap_or_else(|| panic!("{name}: created"));
    assert!(err.to_string().contains(needle), "{name}: {err}");
    assert_eq!(
        fds(),
        before,
        "{name}: fds changed by a failed create ({err})"
    );
    assert_no_leaks(&env, name);
    eprintln!("ok    {name}: {err}");
}

fn main() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP  library_fds: needs root (it creates containers)");
        return;
    }
    // First thing: it may execute this program again, from a read-only view.
    let rt = Runtime::init().expect("libkeel::Runtime::init");
    // At validation, before anything is made.
    failing(&rt, "libnosysctl", "linux.sysctl", |b| {
        b.set("/linux/sysctl", json!({"kernel.keel_no_such_sysctl": "1"}));
    });
    // With the state dir and cgroups made, no process yet.
    let cpuset = std::path::Path::new("/sys/fs/cgroup/cpuset").is_dir()
        || std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "cpuset"));
    if cpuset {
        failing(&rt, "libcpuset", "cpuset", |b| {
            b.set("/linux/resources/cpu", json!({"cpus": "4095"}));
        });
    } else {
        eprintln!("SKIP  libcpuset: no cpuset controller here");
    }
    // In the init, among the mounts.
    failing(
        &rt,
        "libnomount",
        "error mounting \"/keel-conf-no-such-dir\" to rootfs at \"/mnt\"",
        |b| {
            b.push(
            "/mounts",
            json!({"destination": "/mnt", "type": "bind", "source": "/keel-conf-no-such-dir", "options": ["bind"]}),
        );
        },
    );
    // In the init, at the very end.
    failing(&rt, "libnoprog", "/bin/keel-conf-no-such-program", |b| {
        b.set("/process/args", json!(["/bin/keel-conf-no-such-program"]));
    });

    let env = TestEnv::keel();
    let mut b = env.bundle("libcycle");
    b.sh("sleep 60");
    b.save().expect("save");
    let before = fds();
    let c = create(&rt, &env, &b, "libcycle").expect("create");
    c.start().expect("start");
    c.kill(Signal::SIGKILL as i32, true).expect("kill");
    let pid = nix::unistd::Pid::from_raw(c.pid());
    let _ = nix::sys::wait::waitpid(pid, None);
    Container::load(&env.root, "libcycle")
        .expect("load")
        .delete(true)
        .expect("delete --force");
    assert_eq!(fds(), before, "fds changed by create/start/delete");
    assert_no_leaks(&env, "libcycle");
    eprintln!("ok    libcycle: create, start, kill, delete");
}
