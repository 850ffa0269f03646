//! The systemd cgroup driver (`--systemd-cgroup`): the container in a
//! transient scope unit named and placed from `slice:prefix:name`, its
//! limits as unit properties and in the cgroup files, update, pause, exec,
//! and delete stopping the unit.
//!
//! These need systemd as init (they run in the systemd VM lane,
//! `scripts/cgroup-v2-vm.sh --systemd`); elsewhere they check that the
//! driver fails cleanly without it.

use keel_conformance::{assert_no_leaks, TestEnv};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;

fn systemd_is_init() -> bool {
    std::fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd")
        && std::path::Path::new("/run/systemd/private").exists()
}

/// `systemctl show -p PROP --value UNIT`.
fn unit_prop(unit: &str, prop: &str) -> String {
    let out = Command::new("systemctl")
        .args(["show", "-p", prop, "--value", unit])
        .output()
        .expect("run systemctl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether the memory controller is v1 (a hybrid or v1 host, as systemd
/// set it up with systemd.unified_cgroup_hierarchy=0).
fn memory_v1() -> bool {
    std::path::Path::new("/sys/fs/cgroup/memory").is_dir()
}

/// The names of a limit's file and unit property on this layout.
fn names(
    v2: (&'static str, &'static str),
    v1: (&'static str, &'static str),
) -> (&'static str, &'static str) {
    if memory_v1() {
        v1
    } else {
        v2
    }
}

/// The directories of cgroup `path` in every hierarchy.
fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    TestEnv::cgroup_mounts()
        .into_iter()
        .map(|m| m.join(path.trim_start_matches('/')))
        .collect()
}

/// A cgroup file of `path`, from whichever hierarchy has it.
#[track_caller]
fn read(path: &str, file: &str) -> String {
    let f = cgroup_dirs(path)
        .into_iter()
        .map(|d| d.join(file))
        .find(|f| f.exists())
        .unwrap_or_else(|| panic!("no {file} for {path}"));
    std::fs::read_to_string(&f)
        .unwrap_or_else(|e| panic!("read {}: {e}", f.display()))
        .trim()
        .to_string()
}

#[test]
fn a_transient_scope_holds_the_container() {
    if !systemd_is_init() {
        eprintln!("skipped: systemd is not init here (runs in the systemd VM lane)");
        return;
    }
    let env = TestEnv::keel();
    let id = format!("sd{}", std::process::id());
    let unit = format!("keel-test-{id}.scope");
    let mut b = env.bundle(&id);
    b.sh("sleep 600");
    // CAP_MKNOD to make a device node that the device rules then refuse.
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_MKNOD"]);
    for set in ["bounding", "effective", "permitted"] {
        b.set(&format!("/process/capabilities/{set}"), caps.clone());
    }
    b.set(
        "/linux/cgroupsPath",
        json!(format!("system.slice:keel-test:{id}")),
    );
    b.set(
        "/linux/resources",
        json!({
            "memory": { "limit": 64 << 20 },
            "pids": { "limit": 30 },
            "cpu": { "quota": 50000, "period": 100000, "shares": 1024, "cpus": "0" },
            "devices": [ { "allow": false, "access": "rwm" } ],
        }),
    );
    env.run_with(&b, &["--detach", "--systemd-cgroup"])
        .expect_ok("run -d --systemd-cgroup");
    let pid = env.state(&id).unwrap()["pid"].as_i64().unwrap();
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = format!("/system.slice/{unit}");
    // In the scope in every hierarchy (one line on v2, one per hierarchy
    // on hybrid).
    assert!(cg.lines().all(|l| l.ends_with(&format!(":{path}"))), "{cg}");
    assert_eq!(unit_prop(&unit, "ActiveState"), "active");
    assert_eq!(unit_prop(&unit, "Delegate"), "yes");
    let (mem_file, mem_prop) = names(
        ("memory.max", "MemoryMax"),
        ("memory.limit_in_bytes", "MemoryLimit"),
    );
    assert_eq!(unit_prop(&unit, mem_prop), (64u64 << 20).to_string());
    assert_eq!(unit_prop(&unit, "TasksMax"), "30");
    assert_eq!(unit_prop(&unit, "CPUQuotaPerSecUSec"), "500ms");
    assert_eq!(read(&path, mem_file), (64u64 << 20).to_string());
    assert_eq!(read(&path, "pids.max"), "30");
    if memory_v1() {
        assert_eq!(read(&path, "cpu.cfs_quota_us"), "50000");
        assert_eq!(read(&path, "cpu.shares"), "1024");
    } else {
        assert_eq!(read(&path, "cpu.max"), "50000 100000");
        assert_eq!(read(&path, "cpu.weight"), "100");
    }

    // update: the property and the file.
    env.cmd(&["update", "--memory", "32M", "--pids-limit", "20", &id])
        .expect_ok("update");
    assert_eq!(unit_prop(&unit, mem_prop), (32u64 << 20).to_string());
    assert_eq!(read(&path, mem_file), (32u64 << 20).to_string());
    assert_eq!(unit_prop(&unit, "TasksMax"), "20");
    assert_eq!(read(&path, "pids.max"), "20");

    // The limits are unit properties too: systemd keeps them when it
    // reloads (and writes the cgroup files again from its own view).
    let reload = Command::new("systemctl")
        .arg("daemon-reload")
        .status()
        .expect("systemctl daemon-reload");
    assert!(reload.success());
    assert_eq!(read(&path, "cpuset.cpus"), "0");
    assert_eq!(read(&path, mem_file), (32u64 << 20).to_string());
    assert_eq!(read(&path, "pids.max"), "20");

    // The device rules (v1 controller or keel's eBPF program) hold in the
    // scope: /dev/kmsg is not allowed, /dev/null is.
    let o = env.cmd(&[
        "exec",
        &id,
        "sh",
        "-c",
        "echo x >/dev/null && echo null-ok; mknod /dev/kmsg-t c 1 11 && echo made; echo x >/dev/kmsg-t",
    ]);
    assert!(
        o.stdout.contains("null-ok") && o.stdout.contains("made"),
        "{o}"
    );
    assert!(o.stderr.contains("Operation not permitted"), "{o}");

    // exec joins the scope (the root of the container's cgroup namespace).
    let o = env.cmd(&["exec", &id, "cat", "/proc/self/cgroup"]);
    o.expect_ok("exec");
    assert!(o.stdout.lines().all(|l| l.ends_with(":/")), "{o}");

    env.cmd(&["pause", &id]).expect_ok("pause");
    assert_eq!(env.status(&id), "paused");
    env.cmd(&["resume", &id]).expect_ok("resume");
    assert_eq!(env.status(&id), "running");

    env.cmd(&["delete", "--force", &id])
        .expect_ok("delete --force");
    assert!(
        keel_conformance::wait_until(std::time::Duration::from_secs(5), || {
            let state = unit_prop(&unit, "ActiveState");
            state == "inactive" || state.is_empty()
        }),
        "unit still {}",
        unit_prop(&unit, "ActiveState")
    );
    for d in cgroup_dirs(&path) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    assert_no_leaks(&env, &id);
}

#[test]
fn a_cgroups_path_not_in_slice_prefix_name_form_is_refused() {
    let env = TestEnv::keel();
    let mut b = env.bundle("badpath");
    b.set("/linux/cgroupsPath", json!("/not/a/systemd/path"));
    let o = env.run_with(&b, &["--detach", "--systemd-cgroup"]);
    o.expect_fail("run with a cgroupfs path under --systemd-cgroup");
    assert!(
        o.stderr.contains("linux.cgroupsPath") && o.stderr.contains("slice:prefix:name"),
        "{o}"
    );
    assert_no_leaks(&env, "badpath");
}

#[test]
fn without_systemd_the_driver_fails_cleanly() {
    if systemd_is_init() {
        eprintln!("skipped: systemd is init here");
        return;
    }
    let env = TestEnv::keel();
    let id = format!("nosd{}", std::process::id());
    let mut b = env.bundle(&id);
    b.set(
        "/linux/cgroupsPath",
        json!(format!("system.slice:keel-test:{id}")),
    );
    let o = env.run_with(&b, &["--detach", "--systemd-cgroup"]);
    o.expect_fail("run --systemd-cgroup without systemd");
    assert!(o.stderr.contains("systemd"), "{o}");
    assert_no_leaks(&env, &id);
    for d in cgroup_dirs(&format!("system.slice/keel-test-{id}.scope")) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[test]
fn scopes_come_and_go_repeatedly() {
    // Each command talks to systemd on a new connection: a race there
    // (a message systemd never answered) showed only over many of them.
    if !systemd_is_init() {
        eprintln!("skipped: systemd is not init here (runs in the systemd VM lane)");
        return;
    }
    let env = TestEnv::keel();
    for i in 0..5 {
        let id = format!("rep{i}-{}", std::process::id());
        let unit = format!("keel-test-{id}.scope");
        let mut b = env.bundle(&id);
        b.sh("sleep 600");
        b.set(
            "/linux/cgroupsPath",
            json!(format!("system.slice:keel-test:{id}")),
        );
        b.set("/linux/resources/pids", json!({ "limit": 10 }));
        env.run_with(&b, &["--detach", "--systemd-cgroup"])
            .expect_ok("run -d --systemd-cgroup");
        assert_eq!(unit_prop(&unit, "TasksMax"), "10");
        env.cmd(&["delete", "--force", &id])
            .expect_ok("delete --force");
        assert_no_leaks(&env, &id);
    }
}
