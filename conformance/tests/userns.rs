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
    b.user_namespace_mapped(maps);
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

const ONE_RANGE: fn() -> Value = || json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);

/// Starts `holder`, a container with a user namespace of ONE_RANGE, and
/// returns the path of that namespace, for another container to join.
fn userns_holder(env: &TestEnv, holder: &str) -> String {
    let mut a = userns_bundle(env, holder, ONE_RANGE());
    a.set("/process/args", json!(["sleep", "1000"]));
    env.run_with(&a, &["-d"])
        .expect_ok("run -d the namespace holder");
    let pid = env.state(holder).expect("state")["pid"]
        .as_i64()
        .expect("pid");
    format!("/proc/{pid}/ns/user")
}

/// A container joining `userns` with a mount, pid, ... namespace of its own;
/// `maps`: the config's mappings (None: none given).
fn joiner(env: &TestEnv, id: &str, userns: &str, maps: Option<Value>) -> Bundle {
    let mut b = userns_bundle(env, id, ONE_RANGE());
    b.set("/linux/namespaces", {
        let mut list = b.config["linux"]["namespaces"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        list.retain(|n| n["type"] != "user");
        list.push(json!({"type": "user", "path": userns}));
        Value::Array(list)
    });
    match maps {
        Some(m) => {
            b.set("/linux/uidMappings", m.clone());
            b.set("/linux/gidMappings", m);
        }
        None => {
            b.remove("/linux/uidMappings");
            b.remove("/linux/gidMappings");
        }
    }
    // Files made at setup (devpts, /dev nodes) need a mapped owner.
    b.sh("id -u; cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //'; ls /dev/pts");
    b
}

/// Another container's user namespace joined by path, with its mappings in
/// the config as containerd and CRI-O pass them (keel failed with EOVERFLOW
/// on /dev/pts: it stayed host root, unmapped there).
#[test]
fn joining_another_containers_user_namespace() {
    let mut results = Vec::new();
    for env in envs() {
        let userns = userns_holder(&env, "uholder");
        let b = joiner(&env, "ujoin", &userns, Some(ONE_RANGE()));
        let o = env.run(&b);
        eprintln!("{}: {o}", env.rt.name);
        for id in ["ujoin", "uholder"] {
            let _ = env.cmd(&["delete", "-f", id]);
            assert_no_leaks(&env, id);
        }
        results.push((o.code, o.stdout));
    }
    assert_eq!(results[0], (0, "0\n0 100000 65536\nptmx\n".to_string()));
    if let [k, r] = results.as_slice() {
        assert_eq!(k, r, "keel (left) and runc (right) differ");
    }
}

/// Without mappings in the config, those of the joined namespace are used
/// (runc 1.2+, libcontainer/specconv setupUserNamespace: "cache the current
/// userns mappings"); runc 1.1.5 refuses the config, so keel-only. An
/// idmapped mount without mappings of its own takes them too.
#[test]
fn joining_a_user_namespace_without_mappings_takes_its_maps() {
    let env = TestEnv::keel();
    let userns = userns_holder(&env, "uholder2");
    let mut b = joiner(&env, "ujoin2", &userns, None);
    let src = b.dir.join("shared");
    std::fs::create_dir(&src).expect("mkdir");
    // Through the namespace's maps (0 -> 100000), on-disk 7 is the
    // container's 7 (host 100007).
    std::os::unix::fs::chown(&src, Some(7), Some(7)).expect("chown");
    // Container root cannot write the root-owned rootfs: the mount point is there.
    std::fs::create_dir(b.rootfs().join("shared")).expect("mkdir the mount point");
    b.push(
        "/mounts",
        json!({"destination": "/shared", "type": "bind", "source": src, "options": ["bind", "idmap"]}),
    );
    b.sh("id -u; cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //'; stat -c %u /shared");
    let o = env.run(&b);
    for id in ["ujoin2", "uholder2"] {
        let _ = env.cmd(&["delete", "-f", id]);
        assert_no_leaks(&env, id);
    }
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "0\n0 100000 65536\n7\n"),
        "{o}"
    );
}

/// A namespace the joined user namespace does not own (here the test's own
/// network namespace) is joined before the user namespace, as runc 1.2+'s
/// nsexec orders them; joined after it, setns gives EPERM (runc 1.1.5
/// does, so keel-only).
#[test]
fn a_namespace_not_owned_by_the_joined_user_namespace() {
    let env = TestEnv::keel();
    let userns = userns_holder(&env, "uholder3");
    let mut b = joiner(&env, "ujoin3", &userns, None);
    let ours = format!("/proc/{}/ns/net", std::process::id());
    let mut list = b.config["linux"]["namespaces"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    list.retain(|n| n["type"] != "network");
    list.push(json!({"type": "network", "path": ours}));
    b.set("/linux/namespaces", Value::Array(list));
    // sysfs belongs to a network namespace's owner: not mountable here.
    b.remove_mount("/sys");
    b.sh("id -u; readlink /proc/self/ns/net");
    let o = env.run(&b);
    for id in ["ujoin3", "uholder3"] {
        let _ = env.cmd(&["delete", "-f", id]);
        assert_no_leaks(&env, id);
    }
    let host_net = std::fs::read_link(&ours).expect("our netns");
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, format!("0\n{}\n", host_net.display()).as_str()),
        "{o}"
    );
}

/// `"path": ""` asks for a new namespace (runc: an empty path is no path).
#[test]
fn an_empty_namespace_path_means_new() {
    let (code, out) = same_everywhere("emptyns", |env| {
        let mut b = env.bundle("emptyns");
        let mut list = b.config["linux"]["namespaces"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        list.retain(|n| n["type"] != "uts");
        list.push(json!({"type": "uts", "path": ""}));
        b.set("/linux/namespaces", Value::Array(list));
        b.set("/hostname", json!("fresh"));
        b.sh("hostname");
        b
    });
    assert_eq!((code, out.as_str()), (0, "fresh\n"));
}

/// Mappings in the config that are not the joined namespace's are refused
/// in runc 1.2+'s words (libcontainer/specconv setupUserNamespace); runc
/// 1.1.5 ignores them, so keel-only.
#[test]
fn joining_with_other_mappings_is_refused() {
    let env = TestEnv::keel();
    let userns = userns_holder(&env, "uholder4");
    let other = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    let b = joiner(&env, "ujoin4", &userns, Some(other));
    let o = env.run(&b);
    for id in ["ujoin4", "uholder4"] {
        let _ = env.cmd(&["delete", "-f", id]);
        assert_no_leaks(&env, id);
    }
    o.expect_fail("other mappings");
    assert!(
        o.stderr.contains(
            "user namespaces enabled, but both namespace path and non-matching mapping \
             specified -- you may only provide one"
        ),
        "{o}"
    );
}
