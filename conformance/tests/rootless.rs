//! Rootless: the runtime run by an unprivileged user (with subuid/subgid
//! ranges), as rootless podman and Kubernetes user namespaces run it. Each
//! scenario runs under keel and runc the same way, and what the container
//! and the host see is compared.
//!
//! The test user is made here (`useradd`, which also gives it subordinate
//! id ranges) and kept for later runs. Commands run through `setpriv` with
//! the user's ids and no mount namespace wrapper: an unprivileged runtime
//! cannot mount anything on the host.

use keel_conformance::rootless::{user, User, USER};
use keel_conformance::{require_runc, wait_until, Bundle, TestEnv};
use serde_json::{json, Value};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// One runtime run by the test user: its own copy of the binary (the
/// build's may sit where the user cannot reach), a state root and
/// $XDG_RUNTIME_DIR in a test dir that the user owns.
struct Rootless {
    env: TestEnv,
    user: User,
    bin: PathBuf,
    xdg: PathBuf,
}

impl Rootless {
    fn new(env: TestEnv, user: User) -> Rootless {
        let bin = env.dir.join(env.rt.name);
        std::fs::copy(&env.rt.bin, &bin).expect("copy runtime binary");
        let xdg = env.dir.join("xdg");
        std::fs::create_dir_all(&xdg).expect("mkdir xdg");
        Rootless {
            env,
            user,
            bin,
            xdg,
        }
    }

    /// A bundle made rootless the way `runc spec --rootless` does it (no
    /// cgroupsPath either), with the user's own ids mapped to root, plus
    /// `subordinate` ids from 1 on mapped to the user's subordinate ranges.
    fn bundle(&self, id: &str, subordinate: u32) -> Bundle {
        let mut b = self.env.bundle(id);
        let map = |own: u32, sub: u32| {
            let mut m = vec![json!({ "containerID": 0, "hostID": own, "size": 1 })];
            if subordinate > 0 {
                m.push(json!({ "containerID": 1, "hostID": sub, "size": subordinate }));
            }
            Value::Array(m)
        };
        b.set("/linux/uidMappings", map(self.user.uid, self.user.sub.0));
        b.set("/linux/gidMappings", map(self.user.gid, self.user.sub.1));
        b.remove("/linux/cgroupsPath");
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
        b
    }

    /// Hands the test dir to the user (after the bundles are written).
    fn chown(&self) {
        let status = Command::new("chown")
            .args(["-R", &format!("{}:{}", self.user.uid, self.user.gid)])
            .arg(&self.env.dir)
            .status()
            .expect("chown");
        assert!(status.success(), "chown {}", self.env.dir.display());
    }

    /// `<runtime> args...` as the user; `root`: pass --root (else the
    /// runtime's default under $XDG_RUNTIME_DIR).
    fn cmd(&self, args: &[&str], root: bool) -> (i32, String, String) {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.user.uid))
            .arg(format!("--regid={}", self.user.gid))
            .arg("--clear-groups")
            .arg(&self.bin);
        if root {
            c.arg("--root").arg(&self.env.root);
        }
        let home = format!("/home/{USER}");
        // Files, not pipes: a created container holds the runtime's stdio.
        let (out, err) = (self.env.dir.join("cmd.out"), self.env.dir.join("cmd.err"));
        let file = |p: &Path| std::fs::File::create(p).expect("create output file");
        let status = c
            .args(args)
            .env("XDG_RUNTIME_DIR", &self.xdg)
            .env("USER", USER)
            .env("HOME", &home)
            .current_dir(&self.env.dir)
            .stdin(Stdio::null())
            .stdout(file(&out))
            .stderr(file(&err))
            .status()
            .expect("run setpriv");
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        (status.code().unwrap_or(-1), read(&out), read(&err))
    }

    fn run(&self, b: &Bundle) -> (i32, String, String) {
        b.save().expect("save");
        self.chown();
        let bundle = b.dir.to_string_lossy().into_owned();
        self.cmd(&["run", "--bundle", &bundle, &b.id], true)
    }
}

/// keel, then runc (when installed), each run by the test user.
fn runtimes() -> Vec<Rootless> {
    let Some(_) = user() else { return Vec::new() };
    let mut v = vec![Rootless::new(TestEnv::keel(), user().expect("user"))];
    if let Some(runc) = require_runc!() {
        v.push(Rootless::new(TestEnv::new(runc), user().expect("user")));
    }
    v
}

fn assert_same(what: &str, results: &[(&str, String)]) {
    if let [(_, k), (_, r)] = results {
        assert_eq!(k, r, "{what}: keel (left) and runc (right) differ");
    }
}

#[test]
fn run_as_mapped_root() {
    let mut results = Vec::new();
    for rl in runtimes() {
        let rt = rl.env.rt.name;
        let mut b = rl.bundle("rl", 0);
        // A host dir of the user's, bound in: what root in the container
        // writes there belongs to the user on the host.
        let shared = rl.env.dir.join("shared");
        std::fs::create_dir_all(&shared).expect("mkdir shared");
        b.push(
            "/mounts",
            json!({ "destination": "/shared", "type": "bind",
                    "source": shared.to_string_lossy(), "options": ["rbind", "rw"] }),
        );
        b.sh(
            "id; cat /proc/self/uid_map /proc/self/gid_map | tr -s ' '; \
              echo hi >/shared/file; hostname; echo $HOME",
        );
        let (code, out, err) = rl.run(&b);
        assert_eq!(code, 0, "{rt}: {out} {err}");
        let owner = std::fs::metadata(shared.join("file")).expect("file written");
        assert_eq!(
            (owner.uid(), owner.gid()),
            (rl.user.uid, rl.user.gid),
            "{rt}"
        );
        let normalized = out
            .replace(&format!(" {} ", rl.user.uid), " UID ")
            .replace(&format!(" {} ", rl.user.gid), " GID ");
        assert!(
            normalized.starts_with("uid=0(root) gid=0(root)")
                || normalized.starts_with("uid=0 gid=0"),
            "{rt}: {out}"
        );
        results.push((rt, normalized));
        assert!(!rl.env.root.join("rl").exists(), "{rt}: state left behind");
    }
    assert_same("rootless run", &results);
}

#[test]
fn lifecycle_with_the_default_root_and_exec() {
    let mut results = Vec::new();
    for rl in runtimes() {
        let rt = rl.env.rt.name;
        let mut b = rl.bundle("rlc", 0);
        b.set("/process/args", json!(["sleep", "1000"]));
        b.save().expect("save");
        rl.chown();
        let bundle = b.dir.to_string_lossy().into_owned();
        let (code, _, err) = rl.cmd(&["create", "--bundle", &bundle, "rlc"], false);
        assert_eq!(code, 0, "{rt} create: {err}");
        // No --root: the state is under $XDG_RUNTIME_DIR/<runtime>.
        let state_dir = rl.xdg.join(rt).join("rlc");
        assert!(state_dir.is_dir(), "{rt}: no {}", state_dir.display());
        let (code, _, err) = rl.cmd(&["start", "rlc"], false);
        assert_eq!(code, 0, "{rt} start: {err}");
        let (code, out, err) = rl.cmd(&["exec", "rlc", "sh", "-c", "id -u; exit 3"], false);
        assert_eq!(code, 3, "{rt} exec: {out} {err}");
        let (code, state, err) = rl.cmd(&["state", "rlc"], false);
        assert_eq!(code, 0, "{rt} state: {err}");
        let state: Value = serde_json::from_str(&state).expect("state JSON");
        assert_eq!(state["status"], "running", "{rt}");
        let (code, _, err) = rl.cmd(&["kill", "rlc", "KILL"], false);
        assert_eq!(code, 0, "{rt} kill: {err}");
        assert!(
            wait_until(Duration::from_secs(5), || {
                let (_, s, _) = rl.cmd(&["state", "rlc"], false);
                s.contains("\"stopped\"")
            }),
            "{rt}: never stopped"
        );
        let (code, _, err) = rl.cmd(&["delete", "rlc"], false);
        assert_eq!(code, 0, "{rt} delete: {err}");
        assert!(!state_dir.exists(), "{rt}: state dir left behind");
        results.push((rt, out));
    }
    assert_same("rootless exec output", &results);
}

#[test]
fn several_id_ranges_through_newuidmap() {
    if !Path::new("/usr/bin/newuidmap").exists() {
        eprintln!("SKIPPED several_id_ranges_through_newuidmap: newuidmap (package uidmap) is not installed");
        return;
    }
    let mut results = Vec::new();
    for rl in runtimes() {
        let rt = rl.env.rt.name;
        let (su, sg) = rl.user.sub;
        let mut b = rl.bundle("rlm", 1000);
        let shared = rl.env.dir.join("shared");
        std::fs::create_dir_all(&shared).expect("mkdir shared");
        b.push(
            "/mounts",
            json!({ "destination": "/shared", "type": "bind",
                    "source": shared.to_string_lossy(), "options": ["rbind", "rw"] }),
        );
        b.set("/root/readonly", json!(false));
        let caps = json!(["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"]);
        for set in ["bounding", "effective", "permitted"] {
            b.set(&format!("/process/capabilities/{set}"), caps.clone());
        }
        b.sh(
            "cat /proc/self/uid_map | wc -l; touch /shared/f; chown 7:9 /shared/f; \
              stat -c '%u:%g' /shared/f",
        );
        let (code, out, err) = rl.run(&b);
        assert_eq!(code, 0, "{rt}: {out} {err}");
        assert_eq!(out, "2\n7:9\n", "{rt}: {err}");
        let m = std::fs::metadata(shared.join("f")).expect("stat");
        assert_eq!(
            (m.uid(), m.gid()),
            (su + 6, sg + 8),
            "{rt}: ids on the host"
        );
        results.push((rt, out));
    }
    assert_same("rootless with subordinate ids", &results);
}

/// Without a cgroup of its own, a rootless container runs in its caller's
/// cgroups; asking for limits or for a cgroupsPath the user may not create
/// is an error, as in runc, and leaves nothing behind.
#[test]
fn cgroups_the_user_may_not_create_are_refused_cleanly() {
    for rl in runtimes() {
        let rt = rl.env.rt.name;
        let mut b = rl.bundle("rll", 0);
        b.set("/linux/resources/pids", json!({ "limit": 10 }));
        let (code, out, err) = rl.run(&b);
        assert_ne!(code, 0, "{rt}: limits cannot be applied: {out}");
        if rt == "keel" {
            assert!(
                err.contains("linux.resources") && err.contains("delegated"),
                "the error says why: {err}"
            );
        }
        assert!(!rl.env.root.join("rll").exists(), "{rt}: state left behind");
        let mut b = rl.bundle("rlp", 0);
        b.set(
            "/linux/cgroupsPath",
            json!(format!("/{}/rlp", rl.env.cgroup_parent)),
        );
        let (code, out, err) = rl.run(&b);
        assert_ne!(code, 0, "{rt}: cgroupsPath cannot be made: {out}");
        assert!(
            err.contains(&rl.env.cgroup_parent),
            "{rt}: the error names the cgroup: {err}"
        );
        assert!(!rl.env.root.join("rlp").exists(), "{rt}: state left behind");
    }
}

/// A caller that owns its cgroup (delegated to the user, as systemd does
/// for a user session on cgroup v2) gets the container's cgroup below it,
/// limits included.
#[test]
fn limits_in_a_delegated_cgroup() {
    for rl in runtimes() {
        let rt = rl.env.rt.name;
        // The test's cgroup parent in every hierarchy, given to the user.
        let dirs: Vec<PathBuf> = TestEnv::cgroup_mounts()
            .into_iter()
            .map(|m| m.join(&rl.env.cgroup_parent))
            .collect();
        for d in &dirs {
            std::fs::create_dir_all(d).expect("mkdir delegated cgroup");
            // cpuset children need cpus and mems; the parent passes them on.
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if let (Ok(v), true) = (
                    std::fs::read_to_string(d.parent().expect("parent").join(f)),
                    d.join(f).exists(),
                ) {
                    let _ = std::fs::write(d.join(f), v.trim());
                }
            }
        }
        let mut b = rl.bundle("rld", 0);
        b.set("/linux/resources/pids", json!({ "limit": 42 }));
        b.sh("cat /proc/self/cgroup | grep -c rld; sleep 1");
        b.save().expect("save");
        rl.chown();
        for d in &dirs {
            let status = Command::new("chown")
                .args(["-R", &format!("{}:{}", rl.user.uid, rl.user.gid)])
                .arg(d)
                .status()
                .expect("chown cgroup");
            assert!(status.success());
        }
        // Root puts the shell in the delegated cgroups, then becomes the
        // user and runs the runtime from there.
        let join: String = dirs
            .iter()
            .map(|d| format!("echo $$ > {}/cgroup.procs; ", d.display()))
            .collect();
        let bundle = b.dir.to_string_lossy().into_owned();
        let script = format!(
            "{join} exec setpriv --reuid={} --regid={} --clear-groups {} --root {} run --bundle {bundle} rld",
            rl.user.uid,
            rl.user.gid,
            rl.bin.display(),
            rl.env.root.display()
        );
        let pids_dir = dirs
            .iter()
            .find(|d| d.to_string_lossy().contains("/pids/"))
            .cloned();
        let child = Command::new("sh")
            .args(["-c", &script])
            .env("XDG_RUNTIME_DIR", &rl.xdg)
            .current_dir(&rl.env.dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run");
        // The limit, read on the host while the container runs.
        let mut limit = String::new();
        if let Some(p) = &pids_dir {
            wait_until(Duration::from_secs(5), || {
                // The file appears (as "max") before the limit is written.
                limit = std::fs::read_to_string(p.join("rld/pids.max")).unwrap_or_default();
                limit.trim() == "42"
            });
            assert_eq!(
                limit.trim(),
                "42",
                "{rt}: pids.max of the container's cgroup"
            );
        }
        let o = child.wait_with_output().expect("wait");
        let out = String::from_utf8_lossy(&o.stdout);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{rt}: {out} {err}");
        assert_ne!(
            out.trim(),
            "0",
            "{rt}: the container is in cgroups named after it"
        );
        if let Some(p) = pids_dir {
            // Deleted with the container: the limit was checked by its
            // effect on the file while it ran, here by the dir being gone.
            assert!(
                !p.join("rld").exists(),
                "{rt}: container cgroup left behind"
            );
        }
    }
}
