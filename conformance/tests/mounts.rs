//! The config's mounts as runc makes them, seen from inside the container:
//! the options of each mount in /proc/self/mountinfo, the files under it,
//! and the words of a mount that fails. Differential against runc where
//! Debian's runc (1.1.5) has the behaviour; keel-only, citing newer runc's
//! code, where only runc 1.2+ has it.

use keel_conformance::{assert_no_leaks, require_runc, Bundle, Output, TestEnv};
use serde_json::{json, Value};

/// Runs `script` in a bundle made by `setup`, under keel and runc; returns
/// both outputs (keel first) after checking nothing was left behind.
fn both(name: &str, setup: impl Fn(&mut Bundle), script: &str) -> Option<[Output; 2]> {
    let runc = require_runc!()?;
    let mut outs = Vec::new();
    for env in [TestEnv::keel(), TestEnv::new(runc)] {
        let mut b = env.bundle(name);
        b.sh(script);
        setup(&mut b);
        let o = env.run(&b);
        eprintln!("--- {} ---\n{o}", env.rt.name);
        assert_no_leaks(&env, name);
        outs.push(o);
    }
    let [k, r]: [Output; 2] = outs.try_into().ok()?;
    Some([k, r])
}

/// keel alone.
fn keel(name: &str, setup: impl Fn(&mut Bundle), script: &str) -> Output {
    let env = TestEnv::keel();
    let mut b = env.bundle(name);
    b.sh(script);
    setup(&mut b);
    let o = env.run(&b);
    eprintln!("--- keel ---\n{o}");
    assert_no_leaks(&env, name);
    o
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Value {
    json!({"destination": dest, "type": typ, "source": source, "options": options})
}

/// The mount options and super options of the mount at `dest`, as
/// mountinfo shows them (fields 6 and 11): the shell line that prints them.
fn opts_of(dest: &str) -> String {
    format!("grep ' {dest} ' /proc/self/mountinfo | awk '{{print $5, $6, $(NF-2), $NF}}'; ")
}

#[test]
fn failed_mount_is_reported_in_runcs_words() {
    let Some([k, r]) = both(
        "mntfail",
        |b| {
            b.push(
                "/mounts",
                mount("/mnt", "bind", "/keel-conf-no-such-dir", &["bind"]),
            );
        },
        "true",
    ) else {
        return;
    };
    // The log line quotes the message: its quotes come escaped.
    let words = r#"error mounting \"/keel-conf-no-such-dir\" to rootfs at \"/mnt\": stat /keel-conf-no-such-dir: "#;
    assert!(!r.ok() && r.stderr.contains(words), "runc: {r}");
    assert!(!k.ok() && k.stderr.contains(words), "keel: {k}");
}

/// runc 1.2+ (libcontainer/rootfs_linux.go, createOpenMountpoint): a tmpfs
/// over an existing directory is mounted with `mode=<that directory's
/// mode>` ahead of the config's options, so an explicit `mode=` wins and the
/// covered directory's mode is the default. (runc 1.1.5 chmods afterwards
/// and loses the explicit mode.)
#[test]
fn tmpfs_mode_explicit_wins_else_the_covered_directorys() {
    use std::os::unix::fs::PermissionsExt;
    let o = keel(
        "tmpfsmode",
        |b| {
            for d in ["m1", "m2"] {
                let dir = b.rootfs().join(d);
                std::fs::create_dir(&dir).expect("mkdir");
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                    .expect("chmod");
            }
            b.push("/mounts", mount("/m1", "tmpfs", "tmpfs", &["nosuid"]));
            b.push("/mounts", mount("/m2", "tmpfs", "tmpfs", &["mode=1777"]));
        },
        &format!("stat -c '%n %a' /m1 /m2; {}", opts_of("/m1")),
    );
    assert_eq!(
        o.stdout, "/m1 700\n/m2 1777\n/m1 rw,nosuid,relatime tmpfs rw,mode=700\n",
        "{o}"
    );
}
