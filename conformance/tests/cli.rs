//! The command line as scripts and engines meet it: `spec`, `-v`, process
//! files, exit codes and error words, `kill`, `--pidfd-socket`, `--debug`.
//! Differential against runc where Debian's runc 1.1.5 has the behaviour;
//! keel-only (citing runc's code) where only newer runc has it.

use keel_conformance::{assert_no_leaks, require_runc, Bundle, TestEnv};
use serde_json::{json, Value};

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
