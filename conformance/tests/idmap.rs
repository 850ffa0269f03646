//! Idmapped bind mounts: `idmap`/`ridmap` with the container's user
//! namespace maps or the mount's own `uidMappings`/`gidMappings`. What the
//! container sees of a host directory's owners, and what the host sees of
//! the files the container writes, is checked; refused configurations fail
//! cleanly. (Debian's runc 1.1.5 predates the `idmap` options: keel only.)

use keel_conformance::{assert_no_leaks, TestEnv};
use serde_json::json;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// A host directory with a file owned by 1000:1000 and one by root.
fn host_dir(env: &TestEnv) -> PathBuf {
    let d = env.dir.join("data");
    std::fs::create_dir_all(&d).expect("mkdir data");
    std::fs::write(d.join("user"), "u").expect("write");
    std::fs::write(d.join("root"), "r").expect("write");
    std::os::unix::fs::chown(d.join("user"), Some(1000), Some(1000)).expect("chown");
    d
}

#[test]
fn idmap_with_the_containers_maps() {
    let env = TestEnv::keel();
    let data = host_dir(&env);
    let mut b = env.bundle("idm");
    b.user_namespace();
    // The container's root may not create it in a root-owned rootfs.
    std::fs::create_dir(b.rootfs().join("data")).expect("mkdir /data");
    b.push(
        "/mounts",
        json!({ "destination": "/data", "type": "bind", "source": data.to_string_lossy(),
                "options": ["rbind", "rw", "idmap"] }),
    );
    b.sh("stat -c '%n %u:%g' /data/user /data/root; touch /data/new");
    let o = env.run(&b);
    o.expect_ok("run");
    // Through the mount, host ids show as the same ids in the container,
    // although the container's root is host uid 100000.
    assert_eq!(o.stdout, "/data/user 1000:1000\n/data/root 0:0\n", "{o}");
    // And the container's root writes files that root owns on the host.
    let m = std::fs::metadata(data.join("new")).expect("new file");
    assert_eq!((m.uid(), m.gid()), (0, 0));
    assert_no_leaks(&env, "idm");
}

#[test]
fn idmap_with_the_mounts_own_maps() {
    let env = TestEnv::keel();
    let data = host_dir(&env);
    let mut b = env.bundle("idown");
    // No user namespace: the mount alone maps host root to 4242.
    let map = json!([{"containerID": 0, "hostID": 4242, "size": 1}]);
    b.push(
        "/mounts",
        json!({ "destination": "/data", "type": "bind", "source": data.to_string_lossy(),
                "options": ["rbind", "ro"], "uidMappings": map, "gidMappings": map }),
    );
    b.sh("stat -c '%n %u:%g' /data/user /data/root; grep ' /data ' /proc/self/mountinfo | cut -d' ' -f6");
    let o = env.run(&b);
    o.expect_ok("run");
    assert_eq!(
        o.stdout, "/data/user 65534:65534\n/data/root 4242:4242\nro,relatime,idmapped\n",
        "{o}"
    );
    assert_no_leaks(&env, "idown");
}

#[test]
fn refused_idmap_mounts() {
    let env = TestEnv::keel();
    let data = host_dir(&env);
    // Not a bind mount.
    let mut b = env.bundle("idtmp");
    b.user_namespace();
    b.push(
        "/mounts",
        json!({ "destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["idmap"] }),
    );
    let o = env.run(&b);
    assert!(
        !o.ok() && o.stderr.contains("only supported for bind mounts"),
        "{o}"
    );
    assert_no_leaks(&env, "idtmp");
    // `idmap` without mappings of its own nor a user namespace.
    let mut b = env.bundle("idnomap");
    b.push(
        "/mounts",
        json!({ "destination": "/data", "type": "bind", "source": data.to_string_lossy(),
                "options": ["rbind", "idmap"] }),
    );
    let o = env.run(&b);
    assert!(!o.ok() && o.stderr.contains("mounts["), "{o}");
    assert_no_leaks(&env, "idnomap");
}

#[test]
fn features_advertise_idmap() {
    let env = TestEnv::keel();
    let o = env.cmd(&["features"]);
    let f = o.json().expect("features JSON");
    assert_eq!(f["linux"]["mountExtensions"]["idmap"]["enabled"], true);
}
