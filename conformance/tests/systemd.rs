//! The systemd cgroup driver (`--systemd-cgroup`): the container in a
//! transient scope unit named and placed from `slice:prefix:name`, its
//! limits (and device rules, cpuset, annotations) as unit properties and
//! in the cgroup files, update re-applying them, pause, exec, and delete
//! stopping the unit; the same properties as runc's.
//!
//! These need systemd as init (they run in the systemd VM lanes,
//! `scripts/cgroup-v2-vm.sh --systemd[=hybrid]`); elsewhere they check that
//! the driver fails cleanly without it.

use keel_conformance::{assert_no_leaks, require_runc, TestEnv};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

fn systemd_is_init() -> bool {
    std::fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd")
        && std::path::Path::new("/run/systemd/private").exists()
}

/// `systemctl ARGS`: its stdout. One that does not return within a minute
/// fails the test naming it (a stuck systemd would otherwise run into the
/// lane's timeout with nothing said).
#[track_caller]
fn systemctl(args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("60")
        .arg("systemctl")
        .args(args)
        .output()
        .expect("run systemctl");
    assert!(
        out.status.success(),
        "systemctl {args:?}: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `systemctl show -p PROP --value UNIT`.
#[track_caller]
fn unit_prop(unit: &str, prop: &str) -> String {
    systemctl(&["show", "-p", prop, "--value", unit])
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

/// The limits the scope tests set (a cpuset of cpu 0: the VM has two).
fn resources() -> serde_json::Value {
    json!({
        "memory": { "limit": 64 << 20 },
        "pids": { "limit": 30 },
        "cpu": { "quota": 50000, "period": 100000, "shares": 1024, "cpus": "0" },
        "devices": [ { "allow": false, "access": "rwm" } ],
    })
}

/// A bundle running `sleep 600` in scope `keel-test-<id>.scope`.
fn scoped_bundle(env: &TestEnv, id: &str) -> keel_conformance::Bundle {
    let mut b = env.bundle(id);
    b.sh("sleep 600");
    b.set(
        "/linux/cgroupsPath",
        json!(format!("system.slice:keel-test:{id}")),
    );
    b
}

/// Deletes the container and checks that its unit went with it.
fn delete_and_check(env: &TestEnv, id: &str, unit: &str) {
    env.cmd(&["delete", "--force", id])
        .expect_ok("delete --force");
    assert!(
        keel_conformance::wait_until(std::time::Duration::from_secs(5), || {
            let state = unit_prop(unit, "ActiveState");
            state == "inactive" || state.is_empty()
        }),
        "unit still {}",
        unit_prop(unit, "ActiveState")
    );
    assert_no_leaks(env, id);
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
    b.set(
        "/linux/cgroupsPath",
        json!(format!("system.slice:keel-test:{id}")),
    );
    b.set("/linux/resources", resources());
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
    assert_eq!(unit_prop(&unit, "CPUQuotaPeriodUSec"), "100ms");
    assert_eq!(unit_prop(&unit, "AllowedCPUs"), "0");
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
    env.cmd(&[
        "update",
        "--memory",
        "32M",
        "--pids-limit",
        "20",
        "--cpuset-cpus",
        "1",
        &id,
    ])
    .expect_ok("update");
    assert_eq!(unit_prop(&unit, mem_prop), (32u64 << 20).to_string());
    assert_eq!(read(&path, mem_file), (32u64 << 20).to_string());
    assert_eq!(unit_prop(&unit, "TasksMax"), "20");
    assert_eq!(read(&path, "pids.max"), "20");
    assert_eq!(unit_prop(&unit, "AllowedCPUs"), "1");
    assert_eq!(read(&path, "cpuset.cpus"), "1");

    // The limits are unit properties too: systemd keeps them when it
    // reloads (and writes the cgroup files again from its own view: an
    // update that changed only the files would be undone here).
    systemctl(&["daemon-reload"]);
    assert_eq!(read(&path, "cpuset.cpus"), "1");
    assert_eq!(read(&path, mem_file), (32u64 << 20).to_string());
    assert_eq!(read(&path, "pids.max"), "20");

    // exec joins the scope (the root of the container's cgroup namespace).
    let o = env.cmd(&["exec", &id, "cat", "/proc/self/cgroup"]);
    o.expect_ok("exec");
    assert!(o.stdout.lines().all(|l| l.ends_with(":/")), "{o}");

    env.cmd(&["pause", &id]).expect_ok("pause");
    assert_eq!(env.status(&id), "paused");
    env.cmd(&["resume", &id]).expect_ok("resume");
    assert_eq!(env.status(&id), "running");

    delete_and_check(&env, &id, &unit);
    for d in cgroup_dirs(&path) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
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

#[test]
fn a_device_deny_rule_survives_daemon_reload() {
    if !systemd_is_init() {
        eprintln!("skipped: systemd is not init here (runs in the systemd VM lane)");
        return;
    }
    let env = TestEnv::keel();
    let id = format!("dev{}", std::process::id());
    let unit = format!("keel-test-{id}.scope");
    let mut b = scoped_bundle(&env, &id);
    // CAP_MKNOD to make a device node that the device rules then refuse.
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_MKNOD"]);
    for set in ["bounding", "effective", "permitted"] {
        b.set(&format!("/process/capabilities/{set}"), caps.clone());
    }
    b.set(
        "/linux/resources/devices",
        json!([{ "allow": false, "access": "rwm" }]),
    );
    env.run_with(&b, &["--detach", "--systemd-cgroup"])
        .expect_ok("run -d --systemd-cgroup");
    // systemd holds the same rules (it rewrites the unit's device access
    // from these whenever it reloads).
    assert_eq!(unit_prop(&unit, "DevicePolicy"), "strict");
    let allow = unit_prop(&unit, "DeviceAllow");
    for rule in ["/dev/char/1:3 rwm", "char-pts rwm", "char-* m", "block-* m"] {
        assert!(allow.contains(rule), "{rule} in {allow}");
    }
    assert!(!allow.contains("1:11"), "{allow}");
    systemctl(&["daemon-reload"]);
    // /dev/kmsg (c 1:11) is still refused, /dev/null still allowed.
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
    delete_and_check(&env, &id, &unit);
}

#[test]
fn annotations_are_unit_properties() {
    if !systemd_is_init() {
        eprintln!("skipped: systemd is not init here (runs in the systemd VM lane)");
        return;
    }
    let env = TestEnv::keel();
    let id = format!("ann{}", std::process::id());
    let unit = format!("keel-test-{id}.scope");
    let mut b = scoped_bundle(&env, &id);
    b.set(
        "/annotations",
        json!({
            // "Sec" is passed as "USec", in µs, as runc does.
            "org.systemd.property.TimeoutStopSec": "uint64 7",
            "org.systemd.property.CollectMode": "'inactive-or-failed'",
        }),
    );
    env.run_with(&b, &["--detach", "--systemd-cgroup"])
        .expect_ok("run -d --systemd-cgroup");
    assert_eq!(unit_prop(&unit, "TimeoutStopUSec"), "7s");
    assert_eq!(unit_prop(&unit, "CollectMode"), "inactive-or-failed");
    delete_and_check(&env, &id, &unit);
}

/// A property annotation that runc refuses is refused with runc's words,
/// before anything is made (no systemd needed to see it).
#[test]
fn a_bad_property_annotation_is_refused_as_runc_refuses_it() {
    let env = TestEnv::keel();
    for (k, v, want) in [
        (
            "org.systemd.property.Ab",
            "1",
            "annotation org.systemd.property.Ab name incorrect: too short",
        ),
        (
            "org.systemd.property.TimeoutSec",
            "'x'",
            "annotation org.systemd.property.TimeoutSec='x' value parse error: not a number",
        ),
    ] {
        let id = format!("badann{}", std::process::id());
        let mut b = env.bundle(&id);
        b.set("/annotations", json!({ k: v }));
        b.set(
            "/linux/cgroupsPath",
            json!(format!("system.slice:keel-test:{id}")),
        );
        let o = env.run_with(&b, &["--detach", "--systemd-cgroup"]);
        o.expect_fail("run with a bad property annotation");
        assert!(o.stderr.contains(want), "{o}");
        assert_no_leaks(&env, &id);
    }
}

/// The unit properties keel sets are runc's, for the same config.
#[test]
fn differential_unit_properties_match_runc() {
    if !systemd_is_init() {
        eprintln!("skipped: systemd is not init here (runs in the systemd VM lane)");
        return;
    }
    let Some(runc) = require_runc!() else { return };
    const PROPS: [&str; 12] = [
        "Delegate",
        "Slice",
        "DefaultDependencies",
        "TasksMax",
        "CPUQuotaPerSecUSec",
        "CPUQuotaPeriodUSec",
        "AllowedCPUs",
        "DevicePolicy",
        "DeviceAllow",
        "MemoryAccounting",
        "TasksAccounting",
        "TimeoutStopUSec",
    ];
    let mut seen = Vec::new();
    for env in [TestEnv::keel(), TestEnv::new(runc)] {
        let id = format!("{}cmp{}", env.rt.name, std::process::id());
        let unit = format!("keel-test-{id}.scope");
        let mut b = scoped_bundle(&env, &id);
        b.set("/linux/resources", resources());
        b.set(
            "/annotations",
            json!({ "org.systemd.property.TimeoutStopSec": "uint64 9" }),
        );
        // runc takes --systemd-cgroup only before the command.
        b.save().expect("save config.json");
        let dir = b.dir.to_string_lossy().into_owned();
        env.cmd(&["--systemd-cgroup", "run", "--bundle", &dir, "--detach", &id])
            .expect_ok(&format!("{} --systemd-cgroup run -d", env.rt.name));
        let mem = if memory_v1() {
            "MemoryLimit"
        } else {
            "MemoryMax"
        };
        // A list property is shown one entry a line, in the order set:
        // compared as sets.
        let props: Vec<String> = PROPS
            .iter()
            .chain([&mem])
            .map(|p| {
                // runc leaves out a device this host does not have (no
                // /sys/dev/char/M:m: the tun module not loaded, here);
                // keel gives systemd the rule anyway (systemd reads the
                // numbers from the path), so that a device that appears
                // later is allowed as the config says.
                let mut v: Vec<String> = unit_prop(&unit, p)
                    .lines()
                    .filter(|l| {
                        let dev = l.split(' ').next().unwrap_or_default();
                        !dev.starts_with("/dev/") || Path::new(&format!("/sys{dev}")).exists()
                    })
                    .map(String::from)
                    .collect();
                v.sort();
                format!("{p}={}", v.join(", "))
            })
            .collect();
        seen.push(props);
        delete_and_check(&env, &id, &unit);
    }
    assert_eq!(seen[0], seen[1], "unit properties: keel, runc");
}

/// The rootless test user's uid (the VM lane makes it; see
/// scripts/cgroup-v2-vm.sh).
const USER_UID: u32 = 1000;

/// A command run as the rootless test user, with its session's
/// $XDG_RUNTIME_DIR, from a cgroup of the user's own (its systemd's
/// init.scope), as from a user session: the user's systemd moves the
/// container's init out of there, which it may only do from a cgroup the
/// user owns (else it asks PID 1 over the system bus, which this VM has
/// not).
fn as_user(prog: &str, args: &[&str], dir: &Path) -> std::io::Result<(bool, String, String)> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let procs = std::fs::OpenOptions::new().write(true).open(format!(
        "/sys/fs/cgroup/user.slice/user-{USER_UID}.slice/user@{USER_UID}.service/init.scope/cgroup.procs"
    ))?;
    let fd = procs.as_raw_fd();
    let mut c = Command::new(prog);
    c.args(args)
        .env("XDG_RUNTIME_DIR", format!("/run/user/{USER_UID}"))
        .env("HOME", "/home/keel-rootless")
        .env("USER", "keel-rootless")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stdin(std::process::Stdio::null())
        // Files, not pipes: a detached container holds the runtime's stdio.
        .stdout(std::fs::File::create(dir.join("user.out"))?)
        .stderr(std::fs::File::create(dir.join("user.err"))?);
    // SAFETY: between fork and exec only async-signal-safe calls: write(2)
    // of a static buffer to an fd opened before the fork ("0": the writer
    // itself moves), then setgroups/setgid/setuid.
    unsafe {
        c.pre_exec(move || {
            let check = |r: libc::c_int| {
                if r < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            };
            check(libc::write(fd, b"0".as_ptr().cast(), 1) as libc::c_int)?;
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setgid(USER_UID))?;
            check(libc::setuid(USER_UID))
        });
    }
    let status = c.status();
    drop(procs);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    Ok((status?.success(), read("user.out"), read("user.err")))
}

/// Starts the user's systemd (`user@UID.service`, as a lingering user
/// has it); false (the reason printed) where there is none to start.
fn user_manager() -> bool {
    let ok = Command::new("timeout")
        .args([
            "60",
            "systemctl",
            "start",
            &format!("user@{USER_UID}.service"),
        ])
        .status()
        .is_ok_and(|s| s.success());
    let private = format!("/run/user/{USER_UID}/systemd/private");
    if !ok || !Path::new(&private).exists() {
        let status = Command::new("systemctl")
            .args([
                "status",
                "--no-pager",
                "-l",
                &format!("user@{USER_UID}.service"),
                &format!("user-runtime-dir@{USER_UID}.service"),
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        eprintln!(
            "skipped: no user manager for uid {USER_UID} (started: {ok}, {private}): {status}"
        );
        return false;
    }
    true
}

/// keel run by an unprivileged user with --systemd-cgroup: the container in
/// a transient scope of the user's own systemd (under its user.slice), with
/// Delegate=yes and the limits as unit properties and in the files, exec
/// joining it, delete stopping it; the same under runc (which reaches the
/// user's systemd over the user's D-Bus session bus).
#[test]
fn rootless_keel_gets_a_scope_from_the_users_systemd() {
    rootless_scope(false);
}

/// The same with keel as root of a user namespace the user made, with a
/// mount namespace of its own (`unshare -U -m -r`), as rootless podman runs
/// its runtime: still the user's systemd, authenticated as the user's uid
/// outside (runc asks `busctl --user` for it). (Without the mount
/// namespace runc 1.1.5 fails: "failed to setns to host mntns: Operation
/// not permitted", its bind-mount sources are opened from the caller's.)
#[test]
fn rootless_keel_in_the_users_namespace_gets_a_scope_too() {
    rootless_scope(true);
}

fn rootless_scope(in_userns: bool) {
    if !systemd_is_init() {
        eprintln!("skipped: systemd is not init here (runs in the systemd VM lane)");
        return;
    }
    if memory_v1() {
        eprintln!("skipped: a user's systemd delegates only on cgroup v2");
        return;
    }
    if !user_manager() {
        return;
    }
    let mut runtimes = vec![TestEnv::keel()];
    if let Some(runc) = require_runc!() {
        runtimes.push(TestEnv::new(runc));
    }
    let seen: Vec<Vec<String>> = runtimes
        .iter()
        .map(|env| rootless_scope_with(env, in_userns))
        .collect();
    for (env, s) in runtimes.iter().zip(&seen).skip(1) {
        assert_eq!(&seen[0], s, "what the user sees: keel, {}", env.rt.name);
    }
}

/// One runtime's run: asserts as it goes and returns what it saw, to
/// compare with the other runtime's.
fn rootless_scope_with(env: &TestEnv, in_userns: bool) -> Vec<String> {
    let name = env.rt.name;
    let id = format!("{name}rl{}{}", u8::from(in_userns), std::process::id());
    let unit = format!("keel-test-{id}.scope");
    let mut b = env.bundle(&id);
    b.sh("sleep 600");
    // Rootless as `runc spec --rootless` makes it: the user's own ids as
    // root of a user namespace, no cgroup mount, /sys bound read-only.
    // (In the user's namespace those ids are 0.)
    let host = if in_userns { 0 } else { USER_UID };
    let own = json!([{ "containerID": 0, "hostID": host, "size": 1 }]);
    b.set("/linux/uidMappings", own.clone());
    b.set("/linux/gidMappings", own);
    b.namespaces(&["pid", "ipc", "uts", "mount", "user"]);
    b.remove_mount("/sys/fs/cgroup");
    b.remove_mount("/sys");
    b.push(
        "/mounts",
        json!({ "destination": "/sys", "type": "none", "source": "/sys",
                "options": ["rbind", "nosuid", "noexec", "nodev", "ro"] }),
    );
    if let Some(mounts) = b.config["mounts"].as_array_mut() {
        for m in mounts.iter_mut().filter(|m| m["type"] == "devpts") {
            if let Some(o) = m["options"].as_array_mut() {
                o.retain(|o| o != "gid=5");
            }
        }
    }
    b.set(
        "/linux/cgroupsPath",
        json!(format!("user.slice:keel-test:{id}")),
    );
    b.set(
        "/linux/resources",
        json!({ "memory": { "limit": 48 << 20 }, "pids": { "limit": 25 } }),
    );
    b.save().expect("save config.json");
    let chown = Command::new("chown")
        .args(["-R", &format!("{USER_UID}:{USER_UID}")])
        .arg(&env.dir)
        .status()
        .expect("chown");
    assert!(chown.success());
    let root = env.root.to_string_lossy().into_owned();
    let bin = env.rt.bin.to_string_lossy().into_owned();
    let run = |args: &[&str]| {
        let mut all = if in_userns {
            vec!["-U", "-m", "-r", bin.as_str()]
        } else {
            Vec::new()
        };
        all.extend_from_slice(&["--root", &root]);
        all.extend_from_slice(args);
        let prog = if in_userns { "unshare" } else { bin.as_str() };
        as_user(prog, &all, &env.dir).expect("run the runtime as the user")
    };
    let user_prop = |prop: &str| {
        let (_, out, _) = as_user(
            "systemctl",
            &["--user", "show", "-p", prop, "--value", &unit],
            &env.dir,
        )
        .expect("systemctl --user");
        out.trim().to_string()
    };
    let mut seen = Vec::new();
    let dir = b.dir.to_string_lossy().into_owned();
    let (ok, out, err) = run(&["--systemd-cgroup", "run", "--bundle", &dir, "--detach", &id]);
    assert!(ok, "rootless {name} --systemd-cgroup run: {out} {err}");
    let (ok, state, err) = run(&["state", &id]);
    assert!(ok, "{name} state: {err}");
    let state: serde_json::Value = serde_json::from_str(&state).expect("state json");
    let pid = state["pid"].as_i64().expect("pid");
    let path =
        format!("/user.slice/user-{USER_UID}.slice/user@{USER_UID}.service/user.slice/{unit}");
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    assert_eq!(cg.trim(), format!("0::{path}"), "{name}");
    for prop in ["ActiveState", "Delegate", "MemoryMax", "TasksMax"] {
        seen.push(format!("{prop}={}", user_prop(prop)));
    }
    assert_eq!(user_prop("ActiveState"), "active", "{name}");
    assert_eq!(user_prop("Delegate"), "yes", "{name}");
    assert_eq!(user_prop("MemoryMax"), (48u64 << 20).to_string(), "{name}");
    assert_eq!(user_prop("TasksMax"), "25", "{name}");
    assert_eq!(read(&path, "memory.max"), (48u64 << 20).to_string());
    assert_eq!(read(&path, "pids.max"), "25");
    let (ok, _, err) = run(&["update", "--pids-limit", "15", &id]);
    assert!(ok, "{name} update: {err}");
    assert_eq!(user_prop("TasksMax"), "15", "{name}");
    assert_eq!(read(&path, "pids.max"), "15");
    seen.push(format!(
        "after update: pids.max={}",
        read(&path, "pids.max")
    ));
    // (Each command here gets a user namespace of its own, where podman
    // keeps one: exec's setns into the container's would be refused.)
    if !in_userns {
        let (ok, out, err) = run(&["exec", &id, "cat", "/proc/self/cgroup"]);
        assert!(ok && out.contains(&unit), "{name} exec: {out} {err}");
        seen.push(format!("exec: {}", out.trim()));
    }
    let (ok, _, err) = run(&["delete", "--force", &id]);
    assert!(ok, "{name} delete: {err}");
    assert!(
        keel_conformance::wait_until(std::time::Duration::from_secs(5), || {
            let state = user_prop("ActiveState");
            state == "inactive" || state.is_empty()
        }),
        "{name}: unit still {}",
        user_prop("ActiveState")
    );
    assert!(
        !Path::new(&format!("/sys/fs/cgroup{path}")).exists(),
        "{name}"
    );
    // The names differ by the runtime's: compare without them.
    seen.iter().map(|s| s.replace(&id, "ID")).collect()
}

/// A scope whose start job fails (it requires, and is ordered after, a
/// unit that fails: `keel-fails.service` in the VM image) is an error
/// naming the unit and the job's result, in runc's words; a unit systemd
/// refuses (a property it does not know) fails with systemd's words, as
/// under runc. Either way nothing is left behind: no state, no cgroup, no
/// unit.
#[test]
fn a_failed_start_job_is_refused_as_runc_refuses_it() {
    if !systemd_is_init() {
        eprintln!("skipped: systemd is not init here (runs in the systemd VM lane)");
        return;
    }
    if systemctl(&["show", "-p", "LoadState", "--value", "keel-fails.service"]) != "loaded" {
        eprintln!("skipped: no keel-fails.service here (the VM image has it)");
        return;
    }
    let mut runtimes = vec![TestEnv::keel()];
    if let Some(runc) = require_runc!() {
        runtimes.push(TestEnv::new(runc));
    }
    let failing = json!({
        "org.systemd.property.Requires": "['keel-fails.service']",
        "org.systemd.property.After": "['keel-fails.service']",
    });
    let refused = json!({ "org.systemd.property.NoSuchProperty": "true" });
    for env in &runtimes {
        for (n, annotations) in [&failing, &refused].into_iter().enumerate() {
            let id = format!("{}fail{n}-{}", env.rt.name, std::process::id());
            let unit = format!("keel-test-{id}.scope");
            let mut b = scoped_bundle(env, &id);
            b.set("/annotations", annotations.clone());
            b.save().expect("save config.json");
            let dir = b.dir.to_string_lossy().into_owned();
            let o = env.cmd(&["--systemd-cgroup", "run", "--bundle", &dir, "--detach", &id]);
            o.expect_fail(&format!("{} run with a failing unit", env.rt.name));
            let want = if n == 0 {
                format!("error creating systemd unit `{unit}`: got `dependency`")
            } else {
                "Cannot set property NoSuchProperty, or unknown property.".to_string()
            };
            assert!(o.stderr.contains(&want), "{}: {o}", env.rt.name);
            let state = unit_prop(&unit, "ActiveState");
            assert!(state == "inactive" || state.is_empty(), "{unit} {state}");
            assert_no_leaks(env, &id);
            for d in cgroup_dirs(&format!("system.slice/{unit}")) {
                assert!(!d.exists(), "{} left behind", d.display());
            }
        }
        systemctl(&["reset-failed", "keel-fails.service"]);
    }
}

/// What a user sees of a task containerd 1.6 ran with `SystemdCgroup`:
/// its cgroup (the scope from `--cgroup slice:prefix:name`), the unit's
/// properties and files, an exec's cgroup; after kill and delete no unit
/// and no cgroup. Asserts as it goes, returns the observations.
fn containerd_task(
    c: &keel_conformance::containerd::Containerd,
    label: &str,
    opts: &[&str],
) -> Vec<String> {
    use keel_conformance::containerd::{IMAGE, RUNC_SHIM};
    let id = format!("{label}{}", std::process::id());
    let unit = format!("keel-ctr-{id}.scope");
    let path = format!("/system.slice/{unit}");
    let cgroup = format!("system.slice:keel-ctr:{id}");
    let mut args = vec!["run", "-d", "--runtime", RUNC_SHIM];
    args.extend_from_slice(opts);
    args.extend_from_slice(&[
        "--cgroup",
        &cgroup,
        "--memory-limit",
        "67108864",
        "--cpu-quota",
        "50000",
        "--cpu-period",
        "100000",
        IMAGE,
        &id,
        "sleep",
        "600",
    ]);
    c.ctr(&args).expect_ok(&format!("{label}: ctr run -d"));
    let ls = c.ctr(&["task", "ls"]).stdout;
    let pid = ls
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first() == Some(&id.as_str()))
        .and_then(|f| f.get(1).and_then(|p| p.parse::<u32>().ok()))
        .unwrap_or_else(|| panic!("{label}: no pid for {id} in {ls}"));
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    // In the scope in the hierarchies systemd manages (runc 1.1.5 leaves
    // a v1 hierarchy it does not know, misc, at the root; keel joins every
    // mounted one).
    let managed = |l: &&str| {
        let ctrls = l.split(':').nth(1).unwrap_or_default();
        ctrls.is_empty()
            || ctrls
                .split(',')
                .any(|c| ["memory", "pids", "cpu", "name=systemd"].contains(&c))
    };
    assert!(
        cg.lines()
            .filter(managed)
            .all(|l| l.ends_with(&format!(":{path}"))),
        "{label}: {cg}"
    );
    let (mem_file, mem_prop) = names(
        ("memory.max", "MemoryMax"),
        ("memory.limit_in_bytes", "MemoryLimit"),
    );
    let mut seen = Vec::new();
    for prop in ["ActiveState", "Delegate", mem_prop, "CPUQuotaPerSecUSec"] {
        seen.push(format!("{prop}={}", unit_prop(&unit, prop)));
    }
    assert_eq!(unit_prop(&unit, "ActiveState"), "active", "{label}");
    assert_eq!(unit_prop(&unit, "Delegate"), "yes", "{label}");
    assert_eq!(unit_prop(&unit, mem_prop), "67108864", "{label}");
    assert_eq!(read(&path, mem_file), "67108864", "{label}");
    seen.push(format!("{mem_file}={}", read(&path, mem_file)));
    let o = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "cat",
        "/proc/self/cgroup",
    ]);
    o.expect_ok(&format!("{label}: ctr task exec"));
    let exec_cg: Vec<&str> = o.stdout.lines().filter(managed).collect();
    seen.push(format!("exec: {}", exec_cg.join("\n")));
    c.ctr(&["task", "kill", "-s", "SIGKILL", &id])
        .expect_ok(&format!("{label}: ctr task kill"));
    assert!(
        c.wait_status(&id, "STOPPED", std::time::Duration::from_secs(10)),
        "{label}: task {}",
        c.task_status(&id)
    );
    c.ctr(&["task", "delete", &id])
        .expect_ok(&format!("{label}: ctr task delete"));
    c.ctr(&["containers", "delete", &id])
        .expect_ok(&format!("{label}: ctr containers delete"));
    assert!(
        keel_conformance::wait_until(std::time::Duration::from_secs(5), || {
            let state = unit_prop(&unit, "ActiveState");
            state == "inactive" || state.is_empty()
        }),
        "{label}: unit still {}",
        unit_prop(&unit, "ActiveState")
    );
    for d in cgroup_dirs(&path) {
        assert!(!d.exists(), "{label}: {} left behind", d.display());
    }
    seen.iter().map(|s| s.replace(&id, "ID")).collect()
}

/// containerd 1.6 with `SystemdCgroup = true` (ctr's
/// `--runc-systemd-cgroup`, the runc shim's option): the runc shim running
/// keel (`BinaryName`) and keel's own shim each give the task what the
/// runc shim with runc gives it: a systemd scope with the limits, exec
/// inside, nothing left after kill and delete.
///
/// ctr hands the runc shim's options only to the runtime named
/// `io.containerd.runc.v2`: for keel's shim, a second containerd finds
/// keel's shim under that name (first on its PATH), so that keel's shim
/// gets `SystemdCgroup` in the same options message the CRI plugin sends
/// it (`runtime_type = "io.containerd.keel.v2"` with `SystemdCgroup =
/// true`).
#[test]
fn containerd_systemd_cgroup_tasks_sit_in_scopes() {
    use keel_conformance::containerd::{shim_dir, unavailable, Containerd};
    if !systemd_is_init() {
        eprintln!("skipped: systemd is not init here (runs in the systemd VM lane)");
        return;
    }
    if let Some(why) = unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let Some(runc) = require_runc!() else { return };
    let keel = keel_conformance::Runtime::keel().bin;
    let keel = keel.to_string_lossy();
    let runc = runc.bin.to_string_lossy();
    let mut seen = Vec::new();
    {
        let c = Containerd::start().expect("start containerd");
        for (label, bin) in [("runc", &runc), ("keelcli", &keel)] {
            seen.push((
                label,
                containerd_task(&c, label, &["--runc-systemd-cgroup", "--runc-binary", bin]),
            ));
        }
    }
    let links = std::env::temp_dir().join(format!("keel-sd-shim-{}", std::process::id()));
    std::fs::create_dir_all(&links).expect("mkdir");
    let link = links.join("containerd-shim-runc-v2");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(shim_dir().join("containerd-shim-keel-v2"), &link)
        .expect("symlink the shim");
    {
        let c = Containerd::start_with_path(std::slice::from_ref(&links))
            .expect("start containerd (keel's shim)");
        seen.push((
            "keelshim",
            containerd_task(&c, "keelshim", &["--runc-systemd-cgroup"]),
        ));
    }
    let _ = std::fs::remove_dir_all(&links);
    for (label, s) in &seen[1..] {
        assert_eq!(&seen[0].1, s, "runc shim + runc, then {label}");
    }
}

/// The rootless podman tests' image (imported from a busybox rootfs).
const PODMAN_IMAGE: &str = "localhost/keel-sd-busybox";

/// `podman ARGS` as the test user, with the session bus a login session
/// has: (ok, stdout, stderr).
fn podman(args: &[&str], dir: &Path) -> (bool, String, String) {
    let bus = format!("DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/{USER_UID}/bus");
    let mut all = vec![bus.as_str(), "podman"];
    all.extend_from_slice(args);
    as_user("env", &all, dir).expect("run podman as the user")
}

/// One runtime under rootless podman with `cgroup_manager = "systemd"`:
/// run with memory and pids limits, the container in a scope of the
/// user's systemd with them, exec, stop, rm, nothing left. Returns what
/// was seen.
fn podman_systemd_with(rt: &keel_conformance::Runtime, dir: &Path) -> Vec<String> {
    let name = format!("sd-{}", rt.name);
    let bin = rt.bin.to_string_lossy();
    let (ok, out, err) = podman(
        &[
            "run",
            "-d",
            "--runtime",
            &bin,
            "--network",
            "none",
            "--memory",
            "64m",
            "--pids-limit",
            "40",
            "--name",
            &name,
            PODMAN_IMAGE,
            "sleep",
            "600",
        ],
        dir,
    );
    assert!(ok, "{}: podman run -d: {out} {err}", rt.name);
    let (ok, out, err) = podman(&["inspect", "-f", "{{.State.Pid}} {{.Id}}", &name], dir);
    assert!(ok, "{}: podman inspect: {out} {err}", rt.name);
    let (pid, id) = out.trim().split_once(' ').expect("pid and id");
    let unit = format!("libpod-{id}.scope");
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let path = cg.trim().trim_start_matches("0::").to_string();
    let manager = format!("/user.slice/user-{USER_UID}.slice/user@{USER_UID}.service/");
    assert!(
        path.starts_with(&manager) && path.ends_with(&format!("/{unit}")),
        "{}: {cg}",
        rt.name
    );
    let user_prop = |prop: &str| {
        let (_, out, _) = as_user(
            "systemctl",
            &["--user", "show", "-p", prop, "--value", &unit],
            dir,
        )
        .expect("systemctl --user");
        out.trim().to_string()
    };
    let mut seen = vec![format!("cgroup: {}", path.replace(id, "ID"))];
    for prop in ["ActiveState", "Delegate", "MemoryMax", "TasksMax"] {
        seen.push(format!("{prop}={}", user_prop(prop)));
    }
    assert_eq!(
        user_prop("MemoryMax"),
        (64u64 << 20).to_string(),
        "{}",
        rt.name
    );
    assert_eq!(user_prop("TasksMax"), "40", "{}", rt.name);
    for file in ["memory.max", "pids.max"] {
        seen.push(format!("{file}={}", read(&path, file)));
    }
    assert_eq!(read(&path, "memory.max"), (64u64 << 20).to_string());
    assert_eq!(read(&path, "pids.max"), "40");
    let (ok, out, err) = podman(&["exec", &name, "cat", "/proc/self/cgroup"], dir);
    assert!(ok, "{}: podman exec: {out} {err}", rt.name);
    seen.push(format!("exec: {}", out.trim()));
    let (ok, out, err) = podman(&["stop", "-t", "2", &name], dir);
    assert!(ok, "{}: podman stop: {out} {err}", rt.name);
    let (ok, out, err) = podman(&["rm", &name], dir);
    assert!(ok, "{}: podman rm: {out} {err}", rt.name);
    assert!(
        keel_conformance::wait_until(std::time::Duration::from_secs(5), || {
            let state = user_prop("ActiveState");
            state == "inactive" || state.is_empty()
        }),
        "{}: unit still {}",
        rt.name,
        user_prop("ActiveState")
    );
    assert!(
        !Path::new(&format!("/sys/fs/cgroup{path}")).exists(),
        "{}: {path} left behind",
        rt.name
    );
    seen
}

/// Rootless podman 4.3 with `cgroup_manager = "systemd"` and the user's
/// systemd running (`user@UID.service`, as lingering starts it) with its
/// D-Bus session bus: `--runtime keel` gives what `--runtime runc` gives.
/// (`--network none`: rootless networking needs slirp4netns, not what is
/// tested here.)
#[test]
fn rootless_podman_with_the_systemd_cgroup_manager() {
    if !systemd_is_init() {
        eprintln!("skipped: systemd is not init here (runs in the systemd VM lane)");
        return;
    }
    if memory_v1() {
        eprintln!("skipped: rootless podman has cgroups only on cgroup v2");
        return;
    }
    if !Path::new("/usr/bin/podman").exists() {
        eprintln!("skipped: no podman here");
        return;
    }
    if !user_manager() {
        return;
    }
    let Some(runc) = require_runc!() else { return };
    let dir = std::env::temp_dir().join(format!("keel-sd-podman-{}", std::process::id()));
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir rootfs");
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
    for a in ["sh", "cat", "sleep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).expect("symlink");
    }
    let tar = dir.join("busybox.tar");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar");
    assert!(ok.success(), "tar the rootfs");
    let conf = Path::new("/home/keel-rootless/.config/containers");
    std::fs::create_dir_all(conf).expect("mkdir ~/.config/containers");
    std::fs::write(
        conf.join("containers.conf"),
        "[engine]\ncgroup_manager = \"systemd\"\nevents_logger = \"file\"\n",
    )
    .expect("containers.conf");
    std::fs::write(conf.join("storage.conf"), "[storage]\ndriver = \"vfs\"\n")
        .expect("storage.conf");
    for d in [&dir, &PathBuf::from("/home/keel-rootless")] {
        let chown = Command::new("chown")
            .args(["-R", &format!("{USER_UID}:{USER_UID}")])
            .arg(d)
            .status()
            .expect("chown");
        assert!(chown.success());
    }
    let (ok, out, err) = podman(&["info", "--format", "{{.Host.CgroupManager}}"], &dir);
    assert!(ok && out.trim() == "systemd", "podman info: {out} {err}");
    let (ok, out, err) = podman(&["import", &tar.to_string_lossy(), PODMAN_IMAGE], &dir);
    assert!(ok, "podman import: {out} {err}");
    let seen: Vec<(&str, Vec<String>)> = [keel_conformance::Runtime::keel(), runc]
        .iter()
        .map(|rt| (rt.name, podman_systemd_with(rt, &dir)))
        .collect();
    let _ = podman(&["rm", "-a", "-f"], &dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(seen[0].1, seen[1].1, "what the user sees: keel, runc");
}
