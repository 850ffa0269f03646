//! The config's mounts as runc makes them, seen from inside the container:
//! the options of each mount in /proc/self/mountinfo, the files under it,
//! and the words of a mount that fails. Differential against runc where
//! Debian's runc (1.1.5) has the behaviour; keel-only, citing newer runc's
//! code, where only runc 1.2+ has it.

use keel_conformance::{assert_no_leaks, require_runc, Bundle, Output, TestEnv};
use nix::mount::MsFlags;
use serde_json::{json, Value};

/// Runs `script` in a bundle made by `setup`, under keel and runc; returns
/// both outputs (keel first) after checking nothing was left behind.
fn both(name: &str, setup: impl Fn(&mut Bundle), script: &str) -> Option<[Output; 2]> {
    both_with(name, &[], setup, script)
}

/// [`both`] with `run` flags.
fn both_with(
    name: &str,
    flags: &[&str],
    setup: impl Fn(&mut Bundle),
    script: &str,
) -> Option<[Output; 2]> {
    let runc = require_runc!()?;
    let mut outs = Vec::new();
    for env in [TestEnv::keel(), TestEnv::new(runc)] {
        let mut b = env.bundle(name);
        b.sh(script);
        setup(&mut b);
        let o = env.run_with(&b, flags);
        eprintln!("--- {} ---\n{o}", env.rt.name);
        assert_no_leaks(&env, name);
        outs.push(o);
    }
    let [k, r]: [Output; 2] = outs.try_into().ok()?;
    Some([k, r])
}

/// Both runtimes fail to run the bundle made by `setup`, saying `words`
/// (as the log line has them: quotes escaped).
fn both_fail_saying(name: &str, setup: impl Fn(&mut Bundle), words: &str) {
    let Some([k, r]) = both(name, setup, "true") else {
        return;
    };
    assert!(!r.ok() && r.stderr.contains(words), "runc: {r}");
    assert!(!k.ok() && k.stderr.contains(words), "keel: {k}");
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

/// A directory of the test's own mount namespace bound onto itself with
/// `flags` (the source of a bind in a scenario), unmounted when dropped.
struct FlaggedDir(std::path::PathBuf);

impl FlaggedDir {
    fn new(env: &TestEnv, name: &str, flags: MsFlags) -> FlaggedDir {
        let dir = env.dir.join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("file"), "data\n").expect("write");
        nix::mount::mount(
            Some(&dir),
            &dir,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .expect("bind the source dir");
        let d = FlaggedDir(dir);
        nix::mount::mount(
            None::<&str>,
            &d.0,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
            None::<&str>,
        )
        .expect("remount the source dir");
        d
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp dir")
    }
}

impl Drop for FlaggedDir {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
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
    both_fail_saying(
        "mntfail",
        |b| {
            b.push(
                "/mounts",
                mount("/mnt", "bind", "/keel-conf-no-such-dir", &["bind"]),
            );
        },
        r#"error mounting \"/keel-conf-no-such-dir\" to rootfs at \"/mnt\": stat /keel-conf-no-such-dir: "#,
    );
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

/// runc 1.2+ (libcontainer/rootfs_linux.go, mountToRootfs): a bind is
/// remounted when its options set a flag *or clear one*, so `rw`, `suid`,
/// `dev`, `exec` and `symfollow` drop what the source mount has. (runc
/// 1.1.5 skips the remount and the source's flags leak in.)
#[test]
fn bind_options_that_only_clear_flags_clear_them() {
    let env = TestEnv::keel();
    let nosymfollow = MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW);
    let locked = MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC
        | nosymfollow;
    let src = FlaggedDir::new(&env, "src", locked);
    let mut b = env.bundle("clearing");
    b.push(
        "/mounts",
        mount(
            "/data",
            "bind",
            src.path(),
            &["bind", "rw", "suid", "dev", "exec", "symfollow"],
        ),
    );
    b.sh(&format!(
        "{} touch /data/new && echo writable",
        opts_of("/data")
    ));
    let o = env.run(&b);
    o.expect_ok("keel run");
    let opts = o.stdout.lines().next().unwrap_or_default().to_string();
    for flag in ["ro", "nosuid", "nodev", "noexec", "nosymfollow"] {
        assert!(
            !opts.split([' ', ',']).any(|f| f == flag),
            "{flag} leaked from the source: {o}"
        );
    }
    assert!(o.stdout.contains("writable"), "{o}");
    drop(src);
    assert_no_leaks(&env, "clearing");
}

/// In a user namespace the source's flags are locked: a remount that does
/// not keep them is refused, so runc retries with them (1.1.5: `ro`; 1.2+:
/// every locked flag not asked to be cleared).
#[test]
fn bind_in_userns_keeps_locked_flags_not_asked_to_be_cleared() {
    let Some(runc) = require_runc!() else { return };
    let mut outs = Vec::new();
    for env in [TestEnv::keel(), TestEnv::new(runc)] {
        let src = FlaggedDir::new(&env, "src", MsFlags::MS_RDONLY);
        let mut b = env.bundle("lockedro");
        b.user_namespace();
        // The container's root may not write to the rootfs.
        std::fs::create_dir(b.rootfs().join("data")).expect("mkdir");
        b.push(
            "/mounts",
            mount("/data", "bind", src.path(), &["bind", "nosuid"]),
        );
        b.sh(&format!("{} cat /data/file", opts_of("/data")));
        let o = env.run(&b);
        eprintln!("--- {} ---\n{o}", env.rt.name);
        o.expect_ok(&format!("{} run", env.rt.name));
        drop(src);
        assert_no_leaks(&env, "lockedro");
        outs.push(
            o.stdout
                .replace(&env.dir.to_string_lossy().into_owned(), "DIR"),
        );
    }
    assert!(outs[0].contains("ro,nosuid"), "{}", outs[0]);
    assert_eq!(outs[0], outs[1], "keel (left) and runc (right) differ");
}

/// A destination through a dangling symlink of the image is followed inside
/// the rootfs and its target made there: an absolute link, one that climbs
/// out with `..` (clamped at the root), and one naming a file for a file
/// bind (runc resolves destinations with filepath-securejoin).
#[test]
fn destination_through_dangling_symlinks_is_made_inside_the_rootfs() {
    let Some(runc) = require_runc!() else { return };
    let mut outs = Vec::new();
    for env in [TestEnv::keel(), TestEnv::new(runc)] {
        let src = env.dir.join("src");
        std::fs::create_dir_all(&src).expect("mkdir");
        std::fs::write(src.join("file"), "through the link\n").expect("write");
        let mut b = env.bundle("dangling");
        let root = b.rootfs();
        std::os::unix::fs::symlink("/t1/sub", root.join("l1")).expect("symlink");
        std::os::unix::fs::symlink("../../../t2", root.join("l2")).expect("symlink");
        std::os::unix::fs::symlink("/t3/file", root.join("l3")).expect("symlink");
        let src = src.to_string_lossy().into_owned();
        b.push("/mounts", mount("/l1", "bind", &src, &["bind"]));
        b.push("/mounts", mount("/l2/in", "tmpfs", "tmpfs", &[]));
        b.push(
            "/mounts",
            mount("/l3", "bind", &format!("{src}/file"), &["bind"]),
        );
        b.sh("awk '{print $5}' /proc/self/mountinfo | grep '^/t'; cat /t1/sub/file /t3/file");
        let o = env.run(&b);
        eprintln!("--- {} ---\n{o}", env.rt.name);
        assert_no_leaks(&env, "dangling");
        for made in ["t1/sub", "t2/in", "t3/file"] {
            assert!(root.join(made).exists(), "{}: {made} not made", env.rt.name);
        }
        outs.push((o.code, o.stdout));
    }
    assert_eq!(
        outs[0].1,
        "/t1/sub\n/t2/in\n/t3/file\nthrough the link\nthrough the link\n"
    );
    assert_eq!(outs[0], outs[1], "keel (left) and runc (right) differ");
}

/// runc 1.3+ (createOpenMountpoint: pathrs.LexicallyStripRoot): a
/// destination written with the rootfs's host path in front names the path
/// after it. (runc 1.1.5 makes the directory at both places and mounts
/// non-bind filesystems nowhere.)
#[test]
fn destination_with_the_rootfs_host_path_in_front() {
    let env = TestEnv::keel();
    let mut b = env.bundle("prefixed");
    let dest = b.rootfs().join("prefixed");
    let dest = dest.to_string_lossy().into_owned();
    b.push("/mounts", mount(&dest, "tmpfs", "tmpfs", &["size=1m"]));
    b.sh("awk '{print $5}' /proc/self/mountinfo | grep prefixed");
    let o = env.run(&b);
    eprintln!("{o}");
    assert_no_leaks(&env, "prefixed");
    assert_eq!((o.code, o.stdout.as_str()), (0, "/prefixed\n"), "{o}");
}

/// runc 1.5 (libcontainer/rootfs_linux.go, maskPaths; #5275): masked
/// directories share one read-only tmpfs instead of one each.
#[test]
fn masked_directories_share_one_read_only_tmpfs() {
    let o = keel(
        "masks",
        |b| {
            for d in ["mask1", "mask2"] {
                std::fs::create_dir(b.rootfs().join(d)).expect("mkdir");
                std::fs::write(b.rootfs().join(d).join("secret"), "x").expect("write");
            }
            b.push("/linux/maskedPaths", json!("/mask1"));
            b.push("/linux/maskedPaths", json!("/mask2"));
        },
        "stat -c %d /mask1 /mask2 | sort -u | wc -l; ls -A /mask1 /mask2 | grep -c secret; \
         touch /mask2/x 2>/dev/null || echo read-only; \
         grep ' /mask2 ' /proc/self/mountinfo | cut -d' ' -f6",
    );
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "1\n0\nread-only\nro,relatime\n"),
        "{o}"
    );
}

/// A /proc that is a symlink in the image is refused with runc's words
/// (libcontainer/rootfs_linux.go, mountToRootfs).
#[test]
fn proc_over_a_symlink_is_refused() {
    both_fail_saying(
        "procsymlink",
        |b| {
            let proc = b.rootfs().join("proc");
            std::fs::remove_dir(&proc).expect("rmdir");
            std::os::unix::fs::symlink("/tmp", &proc).expect("symlink");
        },
        r#"error mounting \"proc\" to rootfs at \"/proc\": filesystem \"proc\" must be mounted on ordinary directory"#,
    );
}

/// A read-only /dev (and any read-only tmpfs) is mounted writable, filled
/// with the devices, the mounts below it and the console, and made
/// read-only (per mount: the filesystem itself stays writable) at the end,
/// as runc's finalizeRootfs does.
#[test]
fn read_only_dev_is_made_read_only_after_its_devices() {
    let Some([k, r]) = both(
        "rodev",
        |b| {
            let opts = json!(["nosuid", "strictatime", "mode=755", "size=65536k", "ro"]);
            b.set("/mounts/1/options", opts);
            b.push(
                "/mounts",
                mount("/rotmp", "tmpfs", "tmpfs", &["ro", "mode=750"]),
            );
        },
        &format!(
            "{}{}ls /dev/null /dev/pts/ptmx; touch /dev/x 2>/dev/null || echo read-only",
            opts_of("/dev"),
            opts_of("/rotmp")
        ),
    ) else {
        return;
    };
    assert!(k.ok(), "keel: {k}");
    assert_eq!(
        k.stdout,
        "/dev ro,nosuid tmpfs rw,size=65536k,mode=755\n\
         /rotmp ro,relatime tmpfs rw,mode=750\n/dev/null\n/dev/pts/ptmx\nread-only\n",
    );
    assert_eq!(
        (k.code, &k.stdout),
        (r.code, &r.stdout),
        "keel (left) and runc (right) differ"
    );
}

/// `linux.mountLabel` on a host without SELinux: ignored with a warning, as
/// crun ignores it (src/libcrun/utils.c, add_selinux_mount_label: no
/// `context=` without SELinux); runc fails at the first labelled mount,
/// and the runtime-spec's validation expects the container to run.
#[test]
fn mount_label_without_selinux_is_ignored_with_a_warning() {
    if std::path::Path::new("/sys/fs/selinux/enforce").exists() {
        eprintln!("SKIPPED mount_label_without_selinux_is_ignored_with_a_warning: SELinux is on");
        return;
    }
    let o = keel(
        "mountlabel",
        |b| {
            b.set(
                "/linux/mountLabel",
                json!("system_u:object_r:container_file_t:s0:c1,c2"),
            );
        },
        &opts_of("/dev"),
    );
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "/dev rw,nosuid tmpfs rw,size=65536k,mode=755\n"),
        "{o}"
    );
    assert!(
        o.stderr.contains("level=warning") && o.stderr.contains("mount label is ignored"),
        "{o}"
    );
}

/// A tmpfs of the test's own mount namespace, made shared (the host side of
/// a propagation scenario), unmounted with what was mounted under it.
struct SharedDir(std::path::PathBuf);

impl SharedDir {
    fn new(env: &TestEnv) -> SharedDir {
        let dir = env.dir.join("shared");
        std::fs::create_dir_all(&dir).expect("mkdir");
        nix::mount::mount(
            Some("tmpfs"),
            &dir,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=1m"),
        )
        .expect("mount the shared tmpfs");
        let d = SharedDir(dir);
        nix::mount::mount(
            None::<&str>,
            &d.0,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .expect("make it shared");
        std::fs::create_dir(d.0.join("sub")).expect("mkdir sub");
        d
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0.join("sub"), nix::mount::MntFlags::MNT_DETACH);
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// `rootfsPropagation: rshared` with an `rshared` bind (what Kubernetes'
/// Bidirectional mount propagation asks for): a mount made in the container
/// under the bind appears on the host side. `options` and `extra` (fields
/// of the mount) make the bind.
fn bidirectional(runtimes: Vec<TestEnv>, options: &[&str], extra: &[(&str, Value)]) {
    for mut env in runtimes {
        env.propagation = "unchanged";
        let shared = SharedDir::new(&env);
        let mut b = env.bundle("bidir");
        b.set("/linux/rootfsPropagation", json!("rshared"));
        for set in ["bounding", "effective", "permitted"] {
            b.push(
                &format!("/process/capabilities/{set}"),
                json!("CAP_SYS_ADMIN"),
            );
        }
        let src = shared.0.to_string_lossy().into_owned();
        let mut bind = mount("/data", "bind", &src, options);
        for (k, v) in extra {
            bind[k] = v.clone();
        }
        b.push("/mounts", bind);
        b.sh("mount -t tmpfs -o size=1m tmpfs /data/sub && echo mounted");
        let o = env.run(&b);
        eprintln!("--- {} ---\n{o}", env.rt.name);
        let sub = format!(" {src}/sub ");
        let seen = std::fs::read_to_string("/proc/self/mountinfo")
            .expect("read mountinfo")
            .lines()
            .any(|l| l.contains(&sub));
        drop(shared);
        assert_no_leaks(&env, "bidir");
        assert_eq!(
            (o.code, o.stdout.as_str()),
            (0, "mounted\n"),
            "{}: {o}",
            env.rt.name
        );
        assert!(
            seen,
            "{}: the container's mount did not reach the host",
            env.rt.name
        );
    }
}

#[test]
fn rshared_bind_propagates_back_to_the_host() {
    let Some(runc) = require_runc!() else { return };
    bidirectional(
        vec![TestEnv::keel(), TestEnv::new(runc)],
        &["rbind", "rshared"],
        &[],
    );
}

/// The same through an idmapped bind (runc 1.2+ has idmapped mounts; the
/// detached tree of a shared source joins its peer group).
#[test]
fn rshared_idmapped_bind_propagates_back_to_the_host() {
    let maps = json!([{"containerID": 0, "hostID": 1000, "size": 10}]);
    bidirectional(
        vec![TestEnv::keel()],
        &["rbind", "rshared"],
        &[("uidMappings", maps.clone()), ("gidMappings", maps)],
    );
}

/// Every `linux.rootfsPropagation` value of the runtime-spec works, and
/// the new root has it: an unbindable `/` is given to the rootfs only after
/// the pivot (runc 1.1.5 fails with EINVAL binding the rootfs).
#[test]
fn every_rootfs_propagation_value_works() {
    let env = TestEnv::keel();
    for (p, seen) in [
        ("shared", "shared:"),
        ("rshared", "shared:"),
        ("slave", ""),
        ("rslave", ""),
        ("private", ""),
        ("rprivate", ""),
        ("unbindable", "unbindable"),
        ("runbindable", "unbindable"),
    ] {
        let mut b = env.bundle("rootprop");
        b.set("/linux/rootfsPropagation", json!(p));
        b.sh("awk '$5 == \"/\" {print $7}' /proc/self/mountinfo");
        let o = env.run(&b);
        assert!(o.ok() && o.stdout.contains(seen), "{p}: {o}");
        assert_no_leaks(&env, "rootprop");
    }
}

/// In a user namespace, a bind source only host root can reach (below a
/// 0700 directory) still works: the runtime opens it on the host side and
/// hands it in, as runc's mount source fds do.
#[test]
fn bind_source_only_host_root_can_reach_works_in_userns() {
    use std::os::unix::fs::PermissionsExt;
    let Some(runc) = require_runc!() else { return };
    let mut outs = Vec::new();
    for env in [TestEnv::keel(), TestEnv::new(runc)] {
        let private = env.dir.join("private");
        std::fs::create_dir_all(private.join("inner")).expect("mkdir");
        std::fs::write(private.join("inner/file"), "reached\n").expect("write");
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let mut b = env.bundle("rootonly");
        b.user_namespace();
        std::fs::create_dir(b.rootfs().join("data")).expect("mkdir");
        let src = private.join("inner").to_string_lossy().into_owned();
        b.push("/mounts", mount("/data", "bind", &src, &["rbind", "ro"]));
        b.sh(&format!("{}cat /data/file", opts_of("/data")));
        let o = env.run(&b);
        eprintln!("--- {} ---\n{o}", env.rt.name);
        assert_no_leaks(&env, "rootonly");
        outs.push((o.code, o.stdout.replace(&src, "SRC")));
    }
    assert_eq!(outs[0].0, 0);
    assert!(outs[0].1.ends_with("reached\n"), "{}", outs[0].1);
    assert_eq!(outs[0], outs[1], "keel (left) and runc (right) differ");
}

/// A bind whose source an earlier mount of the config makes (a directory
/// inside a tmpfs mounted just before) binds that, in a user namespace too:
/// the runtime's clone of the source must not stand in for it. (runc 1.1.5
/// opens userns bind sources before any mount and fails here; runc 1.2+
/// asks for them at mount time.)
#[test]
fn bind_source_made_by_an_earlier_mount() {
    let o = keel(
        "earlier",
        |b| {
            b.user_namespace();
            for d in ["t", "u"] {
                std::fs::create_dir(b.rootfs().join(d)).expect("mkdir");
            }
            let made = b.rootfs().join("t/made").to_string_lossy().into_owned();
            b.push("/mounts", mount("/t", "tmpfs", "tmpfs", &["size=1m"]));
            b.push("/mounts", mount("/t/made", "tmpfs", "tmpfs", &["size=1m"]));
            b.push("/mounts", mount("/u", "bind", &made, &["bind"]));
        },
        "touch /u/x && ls /t/made",
    );
    assert_eq!((o.code, o.stdout.as_str()), (0, "x\n"), "{o}");
}

/// The same for an idmapped bind: its source (a directory of a host bind
/// mounted just before) is there only in the container's mount namespace,
/// so the runtime makes its idmapped tree when the init asks, resolving the
/// source there. (runc 1.1.5 has no idmapped mounts; runc 1.2+ has the init
/// ask for every idmapped source at mount time: rootfs_linux.go
/// mountToRootfs sends procMountPlease, which process_linux.go's mount
/// request handler serves in the container's mount namespace.)
#[test]
fn idmapped_bind_source_made_by_an_earlier_mount() {
    idmapped_source_through_an_earlier_bind("earlieridmap", false);
}

/// The same when the image has the source too, covered by the earlier
/// mount: the container's view of it is bound, as in runc 1.2+.
#[test]
fn idmapped_bind_source_covered_by_an_earlier_mount() {
    idmapped_source_through_an_earlier_bind("coveredidmap", true);
}

/// A host directory bound on /t, then `<rootfs>/t/sub` idmapped on /u
/// (`in_image`: the image has its own, empty, t/sub).
fn idmapped_source_through_an_earlier_bind(name: &str, in_image: bool) {
    let o = keel(
        name,
        |b| {
            b.user_namespace();
            for d in ["t", "u"] {
                std::fs::create_dir(b.rootfs().join(d)).expect("mkdir");
            }
            if in_image {
                std::fs::create_dir(b.rootfs().join("t/sub")).expect("mkdir");
            }
            let host = b.rootfs().parent().expect("bundle dir").join("host");
            std::fs::create_dir_all(host.join("sub")).expect("mkdir");
            std::fs::write(host.join("sub/f"), "").expect("write");
            let host = host.to_string_lossy().into_owned();
            let made = b.rootfs().join("t/sub").to_string_lossy().into_owned();
            b.push("/mounts", mount("/t", "bind", &host, &["bind"]));
            b.push("/mounts", mount("/u", "bind", &made, &["bind", "idmap"]));
        },
        // Root's file: root through the idmapped bind, nobody through the
        // plain one.
        "stat -c %u /u/f /t/sub/f",
    );
    assert_eq!((o.code, o.stdout.as_str()), (0, "0\n65534\n"), "{o}");
}

/// `--no-pivot` leaves the caller's mounts in the container's mount
/// namespace, beneath the chroot; a full proc or sysfs among them would let
/// a process that makes its own user namespace mount a fresh, unmasked one
/// (the kernel's mount_too_revealing only asks for one fully visible
/// mount of the type in the namespace). runc's msMoveRoot detaches them
/// before it moves the rootfs onto `/`, so the only ones left are the
/// container's, whose masks lock them. The container runs as uid 1000
/// (mapping host root into a new user namespace would need CAP_SETFCAP),
/// with its own pid namespace for proc.
#[test]
fn no_pivot_hides_the_hosts_proc_from_a_nested_user_namespace() {
    no_pivot_nested_mount(
        "nopivotproc",
        "unshare -U -r -m -p -f mount -t proc proc /tmp",
    );
}

/// The same for sysfs (which asks for a network namespace of the user
/// namespace's).
#[test]
fn no_pivot_hides_the_hosts_sysfs_from_a_nested_user_namespace() {
    no_pivot_nested_mount(
        "nopivotsysfs",
        "unshare -U -r -m -n mount -o ro -t sysfs sysfs /tmp",
    );
}

/// In a container with its own user namespace, the caller's proc mounts
/// are locked and cannot be detached: they are covered with a tmpfs, as
/// runc does, which a nested user namespace sees locked.
#[test]
fn no_pivot_in_a_user_namespace_covers_the_hosts_proc() {
    no_pivot_nested_mount_with(
        "nopivotuserns",
        |b| {
            b.user_namespace();
        },
        "unshare -U -r -m -p -f mount -t proc proc /tmp",
    );
}

fn no_pivot_nested_mount(name: &str, script: &str) {
    no_pivot_nested_mount_with(name, |_| {}, script);
}

fn no_pivot_nested_mount_with(name: &str, setup: impl Fn(&mut Bundle), script: &str) {
    let Some([k, r]) = both_with(
        name,
        &["--no-pivot"],
        |b| {
            setup(b);
            b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
        },
        &format!("{script} && echo mounted"),
    ) else {
        return;
    };
    let denied = "mount: permission denied (are you root?)\n";
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (1, "", denied),
        "runc: {r}"
    );
    assert_eq!(
        (k.code, k.stdout.as_str(), k.stderr.as_str()),
        (1, "", denied),
        "keel: {k}"
    );
}
