//! Invalid bundles and commands: each must fail, say what is wrong, and
//! leave no state, cgroup, mount or process behind.

use keel_conformance::{assert_no_leaks, Bundle, Output, TestEnv};
use serde_json::json;

/// Asserts `o` failed and that stderr mentions every one of `needles`.
#[track_caller]
fn assert_error(o: &Output, needles: &[&str]) {
    o.expect_fail("bad input");
    for n in needles {
        assert!(o.stderr.contains(n), "stderr does not name {n:?}:\n{o}");
    }
}

/// Creates a container from a bundle spoiled by `spoil`; expects failure
/// naming `needles` and no leaks. Runs both `create` and `run`.
fn refused(id: &str, spoil: impl Fn(&mut Bundle), needles: &[&str]) {
    let env = TestEnv::keel();
    let mut b = env.bundle(id);
    spoil(&mut b);
    let o = env.create(&b);
    assert_error(&o, needles);
    assert_no_leaks(&env, id);
    let o = env.run(&b);
    assert_error(&o, needles);
    assert_no_leaks(&env, id);
}

#[test]
fn missing_config() {
    let env = TestEnv::keel();
    let b = env.bundle("noconfig");
    std::fs::remove_file(b.dir.join("config.json")).expect("rm config");
    let bundle = b.dir.to_string_lossy().into_owned();
    let o = env.cmd(&["create", "--bundle", &bundle, "noconfig"]);
    assert_error(&o, &["config.json"]);
    assert_no_leaks(&env, "noconfig");
}

#[test]
fn invalid_json() {
    let env = TestEnv::keel();
    let b = env.bundle("badjson");
    std::fs::write(b.dir.join("config.json"), "{\"ociVersion\": \"1.2.0\",").expect("write");
    let bundle = b.dir.to_string_lossy().into_owned();
    let o = env.cmd(&["create", "--bundle", &bundle, "badjson"]);
    assert_error(&o, &["config.json", "JSON"]);
    assert_no_leaks(&env, "badjson");
}

#[test]
fn unknown_namespace_type() {
    refused(
        "badns",
        |b| {
            b.push("/linux/namespaces", json!({"type": "bogus"}));
        },
        &["linux.namespaces[6].type"],
    );
}

#[test]
fn missing_rootfs() {
    refused(
        "norootfs",
        |b| {
            b.set("/root/path", json!("no-such-rootfs"));
        },
        &["root.path", "no-such-rootfs"],
    );
}

#[test]
fn namespace_path_does_not_exist() {
    refused(
        "nsgone",
        |b| {
            b.set(
                "/linux/namespaces",
                json!([{"type": "pid"}, {"type": "mount"}, {"type": "uts"},
                       {"type": "network", "path": "/run/keel-conf-no-such-netns"}]),
            );
        },
        &["/run/keel-conf-no-such-netns"],
    );
}

#[test]
fn hostname_without_uts_namespace() {
    refused(
        "nouts",
        |b| {
            b.namespaces(&["pid", "mount", "ipc", "network"]);
        },
        &["hostname"],
    );
}

#[test]
fn program_not_in_rootfs() {
    refused(
        "noprog",
        |b| {
            b.set("/process/args", json!(["/bin/keel-conf-no-such-program"]));
        },
        &["/bin/keel-conf-no-such-program"],
    );
}

#[test]
fn sysctl_outside_namespace() {
    refused(
        "badsysctl",
        |b| {
            b.set("/linux/sysctl", json!({"kernel.panic": "1"}));
        },
        &["kernel.panic"],
    );
}

#[test]
fn duplicate_id() {
    let env = TestEnv::keel();
    let mut b = env.bundle("dup");
    b.sh("sleep 60");
    env.create(&b).expect_ok("first create");
    let other = env.bundle("dup");
    let o = env.create(&other);
    assert_error(&o, &["dup", "already exists"]);
    // The first container is untouched.
    assert_eq!(env.status("dup"), "created");
    env.cmd(&["delete", "dup"]).expect_ok("delete");
    assert_no_leaks(&env, "dup");
}

#[test]
fn start_of_non_created_container() {
    let env = TestEnv::keel();
    let mut b = env.bundle("restart");
    b.sh("sleep 60");
    env.run_with(&b, &["-d"]).expect_ok("run -d");
    let o = env.cmd(&["start", "restart"]);
    assert_error(&o, &["not created"]);
    assert_eq!(env.status("restart"), "running");
    env.cmd(&["kill", "restart", "KILL"]).expect_ok("kill");
    assert!(env.wait_status("restart", "stopped", std::time::Duration::from_secs(5)));
    let o = env.cmd(&["start", "restart"]);
    assert_error(&o, &["not created"]);
    env.cmd(&["delete", "restart"]).expect_ok("delete");
    assert_no_leaks(&env, "restart");
    let o = env.cmd(&["start", "restart"]);
    assert_error(&o, &["restart"]);
}

#[test]
fn delete_running_without_force() {
    let env = TestEnv::keel();
    let mut b = env.bundle("delrun");
    b.sh("sleep 60");
    env.run_with(&b, &["-d"]).expect_ok("run -d");
    let o = env.cmd(&["delete", "delrun"]);
    assert_error(&o, &["delrun", "running"]);
    assert_eq!(env.status("delrun"), "running");
    env.cmd(&["delete", "-f", "delrun"]).expect_ok("delete -f");
    assert_no_leaks(&env, "delrun");
}

#[test]
fn missing_container() {
    let env = TestEnv::keel();
    for args in [
        &["state", "ghost"][..],
        &["start", "ghost"],
        &["kill", "ghost"],
        &["delete", "ghost"],
    ] {
        let o = env.cmd(args);
        assert_error(&o, &["ghost"]);
    }
}

#[test]
fn invalid_id() {
    let env = TestEnv::keel();
    let b = env.bundle("okid");
    let bundle = b.dir.to_string_lossy().into_owned();
    for id in ["../escape", "a/b", ".."] {
        let o = env.cmd(&["create", "--bundle", &bundle, id]);
        assert_error(&o, &[]);
    }
    assert!(
        !env.dir.join("escape").exists(),
        "an id escaped the state root"
    );
    assert_no_leaks(&env, "okid");
}
