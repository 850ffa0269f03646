//! `tmpcopyup` (runc's mount extension, which podman puts on --tmpfs and
//! --read-only's tmpfs mounts): the image's directory is copied into the
//! tmpfs mounted over it — files, directories, symlinks (as links, never
//! followed), owners and modes — and the image's copy stays untouched by
//! what the container writes. Against runc.

use keel_conformance::{require_runc, TestEnv};
use serde_json::json;
use std::os::unix::fs::{symlink, PermissionsExt};

#[test]
fn tmpcopyup_copies_the_image_dir_like_runc() {
    let Some(runc) = require_runc!() else { return };
    let mut outs = Vec::new();
    for env in [TestEnv::keel(), TestEnv::new(runc)] {
        let mut b = env.bundle("copyup");
        let data = b.rootfs().join("data");
        std::fs::create_dir_all(data.join("sub/deeper")).expect("mkdir");
        std::fs::write(data.join("f"), "image-file\n").expect("write");
        std::fs::write(data.join("sub/deeper/g"), "deep\n").expect("write");
        std::fs::set_permissions(data.join("f"), std::fs::Permissions::from_mode(0o640))
            .expect("chmod");
        std::fs::set_permissions(data.join("sub"), std::fs::Permissions::from_mode(0o711))
            .expect("chmod");
        std::os::unix::fs::chown(data.join("sub/deeper/g"), Some(1000), Some(1001)).expect("chown");
        // Links that would lead out of the copy if followed.
        symlink("/etc", data.join("abs")).expect("symlink");
        symlink("../../../../..", data.join("rel")).expect("symlink");
        b.push(
            "/mounts",
            json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "nodev", "mode=755", "tmpcopyup"]}),
        );
        b.sh("grep ' /data ' /proc/mounts | cut -d' ' -f1-3; \
             cd /data && ls -lnR . | grep -v '^total' | \
             sed -E 's/ +[A-Z][a-z]{2} +[0-9]+ +[0-9:]+ / /'; \
             cat f sub/deeper/g; echo changed > f; cat f");
        let o = env.run(&b);
        o.expect_ok(&format!("{} run", env.rt.name));
        assert_eq!(
            std::fs::read_to_string(data.join("f")).expect("read"),
            "image-file\n",
            "{}: the image's file changed",
            env.rt.name
        );
        keel_conformance::assert_no_leaks(&env, "copyup");
        eprintln!("--- {} ---\n{}", env.rt.name, o.stdout);
        outs.push(o.stdout);
    }
    assert!(outs[0].contains("tmpfs /data tmpfs"), "{}", outs[0]);
    assert!(outs[0].contains("image-file\ndeep\nchanged"), "{}", outs[0]);
    assert!(
        outs[0].contains("abs -> /etc") && outs[0].contains("rel -> ../../../../.."),
        "symlinks not copied as links: {}",
        outs[0]
    );
    assert_eq!(outs[0], outs[1], "keel (left) and runc (right) differ");
}
