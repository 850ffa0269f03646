//! Invalid bundles and commands: each must fail, say what is wrong, and
//! leave no state, cgroup, mount or process behind.

use keel_conformance::{assert_no_leaks, Bundle, Output, TestEnv};
use serde_json::json;

/// Asserts `o` failed and that stderr mentions every one of `needles`.
#[track_caller]
fn assert_error(o: &Output, needles: &[&str]) {
    o.expect_fail("bad input");
    assert!(!o.stderr.contains("panicked"), "keel panicked:\n{o}");
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
        &["invalid rootfs", "no-such-rootfs"],
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
    assert_error(&o, &["cannot start an already running container"]);
    assert_eq!(env.status("restart"), "running");
    env.cmd(&["kill", "restart", "KILL"]).expect_ok("kill");
    assert!(env.wait_status("restart", "stopped", std::time::Duration::from_secs(5)));
    let o = env.cmd(&["start", "restart"]);
    assert_error(&o, &["cannot start a container that has stopped"]);
    env.cmd(&["delete", "restart"]).expect_ok("delete");
    assert_no_leaks(&env, "restart");
    // runc's words, without the id.
    let o = env.cmd(&["start", "restart"]);
    assert_error(&o, &["container does not exist"]);
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
        // runc's words, which go-runc and scripts match: no id in them.
        assert_error(&o, &["container does not exist"]);
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

#[test]
fn wrong_types() {
    for (id, pointer, value, field) in [
        ("tyargs", "/process/args", json!("sh"), "process.args"),
        (
            "tyuid",
            "/process/user/uid",
            json!("root"),
            "process.user.uid",
        ),
        (
            "tyterm",
            "/process/terminal",
            json!("yes"),
            "process.terminal",
        ),
        (
            "tymem",
            "/linux/resources/memory/limit",
            json!("lots"),
            "linux.resources.memory.limit",
        ),
        (
            "tymounts",
            "/mounts",
            json!({"destination": "/x"}),
            "mounts",
        ),
        (
            "tyns",
            "/linux/namespaces/0",
            json!("pid"),
            "linux.namespaces[0]",
        ),
    ] {
        refused(
            id,
            |b| {
                b.set(pointer, value.clone());
            },
            &[field],
        );
    }
}

#[test]
fn huge_values() {
    for (id, pointer, value, field) in [
        // Beyond u32: not a uid.
        (
            "hugeuid",
            "/process/user/uid",
            json!(1u64 << 40),
            "process.user.uid",
        ),
        // Beyond i64.
        (
            "hugemem",
            "/linux/resources/memory/limit",
            json!(1e30),
            "linux.resources.memory.limit",
        ),
        (
            "hugehost",
            "/hostname",
            json!("h".repeat(100_000)),
            "hostname",
        ),
        (
            "hugeenv",
            "/process/env/0",
            json!(format!("BIG={}", "x".repeat(4 << 20))),
            "process",
        ),
    ] {
        refused(
            id,
            |b| {
                b.set(pointer, value.clone());
            },
            &[field],
        );
    }
}

#[test]
fn negative_sizes() {
    for (id, pointer, value, field) in [
        (
            "negcons",
            "/process/consoleSize",
            json!({"height": -1, "width": 80}),
            "process.consoleSize.height",
        ),
        (
            "negrlim",
            "/process/rlimits/0/soft",
            json!(-1),
            "process.rlimits[0].soft",
        ),
        ("neggid", "/process/user/gid", json!(-5), "process.user.gid"),
        (
            "negshares",
            "/linux/resources/cpu/shares",
            json!(-2),
            "linux.resources.cpu.shares",
        ),
    ] {
        refused(
            id,
            |b| {
                b.set(pointer, value.clone());
            },
            &[field],
        );
    }
    // A negative size in a mount's options reaches the kernel, which
    // refuses it: the error names the mount.
    refused(
        "negtmpfs",
        |b| {
            b.push(
                "/mounts",
                json!({"destination": "/neg", "type": "tmpfs", "source": "tmpfs",
                       "options": ["size=-1"]}),
            );
        },
        &["/neg"],
    );
}

#[test]
fn unknown_fields_are_accepted() {
    // As runc (Go's encoding/json): unknown fields are ignored.
    let env = TestEnv::keel();
    let mut b = env.bundle("unknown");
    b.set("/keelNoSuchField", json!({"a": 1}))
        .set("/process/noSuchField", json!(true))
        .set("/linux/noSuchField", json!([1, 2]));
    b.sh("echo fine");
    let o = env.run(&b);
    o.expect_ok("run with unknown fields");
    assert_eq!(o.stdout.trim(), "fine", "{o}");
    assert_no_leaks(&env, "unknown");
}

/// A directory on the host that the container must not touch, with a
/// canary in it; returns its path.
fn host_target(env: &TestEnv) -> std::path::PathBuf {
    let host = env.dir.join("host-target");
    std::fs::create_dir_all(&host).expect("mkdir host target");
    std::fs::write(host.join("canary"), "untouched").expect("canary");
    host
}

#[track_caller]
fn assert_untouched(host: &std::path::Path) {
    let names: Vec<_> = std::fs::read_dir(host)
        .expect("read host target")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["canary"], "the container wrote into {host:?}");
    assert_eq!(
        std::fs::read_to_string(host.join("canary")).expect("canary"),
        "untouched"
    );
}

#[test]
fn mount_destination_with_dotdot_stays_in_rootfs() {
    let env = TestEnv::keel();
    let host = host_target(&env);
    let rel = format!("/../../../../../../..{}/escape", host.to_string_lossy());
    let mut b = env.bundle("dotdot");
    b.push(
        "/mounts",
        json!({"destination": rel, "type": "tmpfs", "source": "tmpfs"}),
    );
    b.sh("echo ran");
    let o = env.run(&b);
    // Either refused naming the destination, or the mount lands inside the
    // rootfs (runc resolves `..` at the rootfs's root): never on the host.
    assert!(!o.stderr.contains("panicked"), "{o}");
    if !o.ok() {
        assert_error(&o, &["escape"]);
    }
    assert_untouched(&host);
    assert_no_leaks(&env, "dotdot");
}

#[test]
fn symlinks_out_of_the_rootfs_are_not_followed() {
    let env = TestEnv::keel();
    let host = host_target(&env);
    let mut b = env.bundle("symout");
    let rootfs = b.rootfs();
    let depth = "../".repeat(20);
    std::os::unix::fs::symlink(&host, rootfs.join("abs")).expect("symlink");
    std::os::unix::fs::symlink(
        format!("{depth}{}", host.to_string_lossy().trim_start_matches('/')),
        rootfs.join("rel"),
    )
    .expect("symlink");
    for dest in ["/abs", "/rel", "/abs/sub", "/rel/sub"] {
        b.push(
            "/mounts",
            json!({"destination": dest, "type": "tmpfs", "source": "tmpfs"}),
        );
    }
    b.set("/linux/maskedPaths", json!(["/abs/canary", "/rel/canary"]));
    b.set("/linux/readonlyPaths", json!(["/abs", "/rel"]));
    b.set("/process/cwd", json!("/abs"));
    b.sh("touch /abs/new /rel/new /abs/sub/new; echo ran");
    let o = env.run(&b);
    assert!(!o.stderr.contains("panicked"), "{o}");
    assert_untouched(&host);
    assert_no_leaks(&env, "symout");
}

#[test]
fn program_not_executable_or_a_directory() {
    refused(
        "noexec",
        |b| {
            let p = b.rootfs().join("bin/notexec");
            std::fs::write(&p, "#!/bin/sh\necho no\n").expect("write");
            b.set("/process/args", json!(["/bin/notexec"]));
        },
        &["/bin/notexec"],
    );
    refused(
        "progdir",
        |b| {
            b.set("/process/args", json!(["/bin"]));
        },
        &["/bin"],
    );
    refused(
        "nohook",
        |b| {
            b.set(
                "/hooks/createRuntime",
                json!([{"path": "/keel-conf-no-such-hook"}]),
            );
        },
        &["/keel-conf-no-such-hook"],
    );
}

/// Runs keel in a mount namespace of its own where `script` (sh, with the
/// state root as $root) ran first: there a tiny tmpfs can be the state root
/// without the host seeing it.
fn wrapped(env: &TestEnv, script: &str, args: &[&str]) -> Output {
    let rt = env.rt.bin.to_string_lossy().into_owned();
    let root = env.root.to_string_lossy().into_owned();
    std::fs::create_dir_all(&env.root).expect("mkdir root");
    let full = format!("root=\"$1\"; shift\n{script}\nexec \"$0\" --root \"$root\" \"$@\"");
    let o = std::process::Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            &full,
            &rt,
            &root,
        ])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run unshare");
    let code = o.status.code().unwrap_or(-1);
    Output {
        code,
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn unwritable_root() {
    let env = TestEnv::keel();
    let mut b = env.bundle("rofs");
    b.sh("sleep 60");
    b.save().expect("save");
    let bundle = b.dir.to_string_lossy().into_owned();
    // A read-only state root.
    let o = wrapped(
        &env,
        "mount -t tmpfs -o ro,size=64k tmpfs \"$root\" || exit 99",
        &["create", "--bundle", &bundle, "rofs"],
    );
    assert_error(&o, &["rofs", "Read-only file system"]);
    assert_no_leaks(&env, "rofs");
    // A state root beneath a regular file.
    let file = env.dir.join("a-file");
    std::fs::write(&file, "").expect("write");
    let root = file.join("state").to_string_lossy().into_owned();
    let o = wrapped(
        &env,
        &format!("root='{root}'"),
        &["create", "--bundle", &bundle, "rofs"],
    );
    assert_error(&o, &[&root]);
    assert_no_leaks(&env, "rofs");
}

#[test]
fn full_disk_on_the_state_dir() {
    let env = TestEnv::keel();
    let mut b = env.bundle("full");
    b.sh("sleep 60");
    b.save().expect("save");
    let bundle = b.dir.to_string_lossy().into_owned();
    let mount = "mount -t tmpfs -o size=8k,nr_inodes=64 tmpfs \"$root\" || exit 99";
    // No space for the files of the state directory.
    let o = wrapped(
        &env,
        &format!("{mount}\nhead -c 1M /dev/zero > \"$root/fill\" 2>/dev/null"),
        &["create", "--bundle", &bundle, "full"],
    );
    assert_error(&o, &["state/full/", "No space left on device"]);
    assert_no_leaks(&env, "full");
    // No inode for the state directory.
    let o = wrapped(
        &env,
        &format!("{mount}\ni=0; while touch \"$root/f$i\" 2>/dev/null; do i=$((i+1)); done"),
        &["create", "--bundle", &bundle, "full"],
    );
    assert_error(&o, &["full", "No space left on device"]);
    assert_no_leaks(&env, "full");
}
