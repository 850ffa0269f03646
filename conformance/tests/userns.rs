//! User namespaces (rootful): several id ranges, unmapped ids, setgroups,
//! devices, sysfs without a network namespace, and the configurations runc
//! refuses. Every scenario runs under keel and runc; what the container
//! sees, or that both fail, is compared.

use keel_conformance::{assert_no_leaks, require_runc, Bundle, TestEnv};
use serde_json::{json, Value};

fn envs() -> Vec<TestEnv> {
    let mut v = vec![TestEnv::keel()];
    if let Some(runc) = require_runc!() {
        v.push(TestEnv::new(runc));
    }
    v
}

/// A bundle with a user namespace of `maps` (for uids and gids alike).
fn userns_bundle(env: &TestEnv, id: &str, maps: Value) -> Bundle {
    let mut b = env.bundle(id);
    b.push("/linux/namespaces", json!({"type": "user"}));
    b.set("/linux/uidMappings", maps.clone());
    b.set("/linux/gidMappings", maps);
    // A v1 cgroupfs cannot be mounted from a user namespace.
    b.remove_mount("/sys/fs/cgroup");
    b
}

/// Runs the scenario under each runtime; asserts both give the same
/// (exit code, stdout) and returns it.
fn same_everywhere(id: &str, build: impl Fn(&TestEnv) -> Bundle) -> (i32, String) {
    let mut results: Vec<(&str, (i32, String))> = Vec::new();
    for env in envs() {
        let b = build(&env);
        let o = env.run(&b);
        let _ = env.cmd(&["delete", "-f", id]);
        assert_no_leaks(&env, id);
        results.push((env.rt.name, (o.code, o.stdout.clone())));
        eprintln!("{}: {o}", env.rt.name);
    }
    if let [(_, k), (_, r)] = results.as_slice() {
        assert_eq!(k, r, "{id}: keel (left) and runc (right) differ");
    }
    results.swap_remove(0).1
}

#[test]
fn several_ranges_and_unmapped_ids() {
    let (code, out) = same_everywhere("ranges", |env| {
        let mut b = userns_bundle(
            env,
            "ranges",
            json!([
                {"containerID": 0, "hostID": 100000, "size": 1000},
                {"containerID": 1000, "hostID": 300000, "size": 1000}
            ]),
        );
        // A tmpfs made in the namespace belongs to its root.
        b.push(
            "/mounts",
            json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]}),
        );
        let caps = json!(["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"]);
        for set in ["bounding", "effective", "permitted"] {
            b.set(&format!("/process/capabilities/{set}"), caps.clone());
        }
        b.sh(
            "cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //'; touch /tmp/a /tmp/b; \
             chown 1500:1500 /tmp/a && echo chown-mapped-ok; \
             chown 5000 /tmp/b 2>/dev/null || echo chown-unmapped-refused; \
             stat -c %u /bin/busybox",
        );
        b
    });
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "0 100000 1000\n1000 300000 1000\nchown-mapped-ok\nchown-unmapped-refused\n65534\n"
    );
}

#[test]
fn additional_groups_in_a_user_namespace() {
    let (code, out) = same_everywhere("groups", |env| {
        let mut b = userns_bundle(
            env,
            "groups",
            json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
        );
        b.set(
            "/process/user",
            json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 20]}),
        );
        b.sh("id -u; id -g; id -G");
        b
    });
    assert_eq!(code, 0);
    assert_eq!(out, "1000\n1000\n1000 10 20\n");
}

#[test]
fn devices_are_bind_mounted() {
    let (code, out) = same_everywhere("devs", |env| {
        let mut b = userns_bundle(
            env,
            "devs",
            json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
        );
        b.push(
            "/linux/devices",
            json!({"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11,
                   "fileMode": 0o600, "uid": 0, "gid": 0}),
        );
        b.sh("for d in null zero full random urandom tty kmsg; do \
               test -c /dev/$d && echo $d; done; echo x >/dev/null && echo writes");
        b
    });
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "null\nzero\nfull\nrandom\nurandom\ntty\nkmsg\nwrites\n"
    );
}

#[test]
fn sysfs_without_a_network_namespace() {
    // sysfs cannot be mounted from a user namespace that does not own the
    // network namespace: both runtimes fail the same way, or both cope.
    let (code, _) = same_everywhere("sysfs", |env| {
        let mut b = userns_bundle(
            env,
            "sysfs",
            json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
        );
        b.namespaces(&["pid", "ipc", "uts", "mount", "user"]);
        b.sh("test -d /sys/kernel && echo sys");
        b
    });
    eprintln!("sysfs without netns: exit {code}");
}

#[test]
fn a_process_user_the_maps_lack_is_refused() {
    let (code, _) = same_everywhere("unmappeduser", |env| {
        let mut b = userns_bundle(
            env,
            "unmappeduser",
            json!([{"containerID": 0, "hostID": 100000, "size": 1000}]),
        );
        b.set("/process/user", json!({"uid": 5000, "gid": 0}));
        b.sh("echo ran");
        b
    });
    assert_ne!(code, 0, "uid 5000 has no mapping");
}

/// Mappings without a user namespace: keel refuses them, as runc's
/// validator does from 1.2 on; Debian's runc 1.1.5 ignores them and runs
/// (printed, not asserted).
#[test]
fn mappings_without_a_user_namespace_are_refused() {
    for env in envs() {
        let mut b = env.bundle("mapsnons");
        let m = json!([{"containerID": 0, "hostID": 100000, "size": 10}]);
        b.set("/linux/uidMappings", m.clone());
        b.set("/linux/gidMappings", m);
        b.sh("echo ran");
        let o = env.run(&b);
        if env.rt.name == "keel" {
            assert!(!o.ok() && o.stderr.contains("linux.uidMappings"), "{o}");
        } else {
            eprintln!("DIFF runc: mappings without a user namespace: {o}");
        }
        let _ = env.cmd(&["delete", "-f", "mapsnons"]);
        assert_no_leaks(&env, "mapsnons");
    }
}
