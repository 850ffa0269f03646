//! Rootless podman on keel: `podman --runtime keel` run by an unprivileged
//! user with subordinate id ranges. Podman runs the runtime as root of its
//! own user namespace, with configs that have no user namespace of their
//! own, so keel must bind devices rather than make them, stay in the
//! caller's cgroups and show those in /sys/fs/cgroup. The same scenarios run
//! with runc, and the outputs are compared.
//!
//! Needs podman (Debian's package; the test command installs it). The image
//! is busybox, imported from a tarball made here: there is no registry.

use keel_conformance::rootless::{user, USER};
use keel_conformance::{require_runc, Runtime};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const IMAGE: &str = "localhost/keel-conformance-busybox";

/// A directory the test user can use, removed at the end.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `sh -c script` as the test user, in a login environment as podman
/// expects it; (exit code, stdout, stderr).
fn as_user(script: &str) -> (i32, String, String) {
    let o = Command::new("su")
        .args(["-", USER, "-s", "/bin/sh", "-c", script])
        .output()
        .expect("run su");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The scratch dir, the busybox image imported for the user, and a copy
/// of each runtime binary the user may execute.
fn setup(runtimes: &[Runtime]) -> Option<(Scratch, Vec<(String, PathBuf)>)> {
    if Command::new("podman").arg("--version").output().is_err() {
        eprintln!("SKIPPED podman_rootless: podman is not installed");
        return None;
    }
    let u = user()?;
    let dir = std::env::temp_dir().join(format!("keel-podman-{}", std::process::id()));
    let scratch = Scratch(dir.clone());
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir rootfs");
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
    for a in ["sh", "cat", "echo", "id", "sleep", "ls", "stat", "touch"] {
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
    let mut bins = Vec::new();
    for rt in runtimes {
        let bin = dir.join(rt.name);
        std::fs::copy(&rt.bin, &bin).expect("copy runtime");
        bins.push((rt.name.to_string(), bin));
    }
    let vol = dir.join("vol");
    std::fs::create_dir_all(&vol).expect("mkdir vol");
    std::fs::write(vol.join("f"), "hostfile\n").expect("write");
    let chown = Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", u.uid, u.gid))
        .arg(&dir)
        .status()
        .expect("chown");
    assert!(chown.success());
    let (code, out, err) = as_user(&format!("podman import {} {IMAGE}", tar.display()));
    assert_eq!(code, 0, "podman import: {out} {err}");
    Some((scratch, bins))
}

#[test]
fn rootless_podman_run_exec_stop_volumes() {
    let mut runtimes = vec![Runtime::keel()];
    if let Some(runc) = require_runc!() {
        runtimes.push(runc);
    }
    let Some((scratch, bins)) = setup(&runtimes) else {
        return;
    };
    let vol = scratch.0.join("vol");
    let mut results = Vec::new();
    for (name, bin) in &bins {
        let p = format!("podman --runtime {} ", bin.display());
        let ctr = format!("keel-conf-{name}");
        // run --rm: output, ids, the user namespace podman made.
        let (code, out, err) = as_user(&format!(
            "{p} run --rm --network none {IMAGE} sh -c 'id; cat /proc/self/uid_map | wc -l'"
        ));
        assert_eq!(code, 0, "{name} run: {out} {err}");
        assert!(out.starts_with("uid=0"), "{name}: {out}");
        // Exit codes pass through.
        let (code, _, err) = as_user(&format!(
            "{p} run --rm --network none {IMAGE} sh -c 'exit 7'"
        ));
        assert_eq!(code, 7, "{name} exit code: {err}");
        // A volume: the container's root writes files the user owns.
        let g = format!("g-{name}");
        let (code, vout, err) = as_user(&format!(
            "{p} run --rm --network none -v {}:/vol {IMAGE} sh -c 'cat /vol/f; echo new >/vol/{g}'",
            vol.display()
        ));
        assert_eq!(code, 0, "{name} volume: {vout} {err}");
        let m = std::fs::metadata(vol.join(&g)).expect("file written through the volume");
        assert_eq!(
            m.uid(),
            user().expect("user").uid,
            "{name}: owner on the host"
        );
        // Detached, exec, stop, rm.
        let (code, _, err) = as_user(&format!(
            "{p} run -d --name {ctr} --network none {IMAGE} sleep 100"
        ));
        assert_eq!(code, 0, "{name} run -d: {err}");
        let (code, eout, err) = as_user(&format!("{p} exec {ctr} sh -c 'echo in-exec; id -u'"));
        assert_eq!(code, 0, "{name} exec: {err}");
        let (code, _, err) = as_user(&format!("{p} stop -t 1 {ctr}"));
        assert_eq!(code, 0, "{name} stop: {err}");
        let (code, _, err) = as_user(&format!("{p} rm {ctr}"));
        assert_eq!(code, 0, "{name} rm: {err}");
        results.push((name.clone(), format!("{out}{vout}{eout}")));
    }
    if let [(_, k), (_, r)] = results.as_slice() {
        assert_eq!(
            k, r,
            "keel (left) and runc (right) differ under rootless podman"
        );
    }
    let _ = Path::new(&scratch.0);
}
