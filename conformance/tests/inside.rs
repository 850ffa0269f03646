//! What a program sees inside a keel container, checked from inside with
//! busybox and read back from `keel run`'s stdout.

use keel_conformance::{assert_no_leaks, wait_until, Bundle, TestEnv};
use serde_json::json;
use std::time::Duration;

/// Runs `script` in a fresh container (config adjusted by `tweak`), asserts
/// it exited 0 and left nothing behind, and returns its stdout.
fn inside(id: &str, tweak: impl FnOnce(&mut Bundle), script: &str) -> String {
    let env = TestEnv::keel();
    let mut b = env.bundle(id);
    b.sh(script);
    tweak(&mut b);
    let o = env.run(&b);
    o.expect_ok(&format!("run {id}"));
    assert_no_leaks(&env, id);
    o.stdout
}

/// The mountinfo line for mountpoint `dest`, split into (mount options,
/// super options).
fn mount_opts(mountinfo: &str, dest: &str) -> (Vec<String>, Vec<String>) {
    let line = mountinfo
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some(dest))
        .unwrap_or_else(|| panic!("no mount at {dest} in:\n{mountinfo}"));
    let (pre, post) = line.split_once(" - ").expect("mountinfo separator");
    let opts = pre.split(' ').nth(5).expect("mount options");
    let sup = post.split(' ').nth(2).expect("super options");
    let split = |s: &str| s.split(',').map(str::to_owned).collect();
    (split(opts), split(sup))
}

#[test]
fn pid_one_and_hostname() {
    let out = inside(
        "pid1",
        |b| {
            b.set("/hostname", json!("conf-host"));
        },
        "echo $$; hostname",
    );
    assert_eq!(out, "1\nconf-host\n");
}

#[test]
fn sys_and_shm_mount_flags() {
    let out = inside(
        "mflags",
        |_| {},
        "stat -c %a /dev/shm; cat /proc/self/mountinfo",
    );
    assert!(out.starts_with("1777\n"), "/dev/shm mode: {out}");
    let (sys, _) = mount_opts(&out, "/sys");
    for f in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(sys.contains(&f.to_string()), "/sys lacks {f}: {sys:?}");
    }
    let (shm, sup) = mount_opts(&out, "/dev/shm");
    for f in ["rw", "nosuid", "nodev", "noexec"] {
        assert!(shm.contains(&f.to_string()), "/dev/shm lacks {f}: {shm:?}");
    }
    // tmpfs does not list mode=1777: it is its default.
    assert!(
        sup.contains(&"size=65536k".to_string()),
        "/dev/shm super options {sup:?}"
    );
    let (root, _) = mount_opts(&out, "/");
    assert!(root.contains(&"ro".to_string()), "root not ro: {root:?}");
}

#[test]
fn readonly_root() {
    let out = inside(
        "roroot",
        |_| {},
        "touch /x 2>/dev/null && echo wrote || echo refused; touch /tmp/y 2>/dev/null && echo wrote || echo refused",
    );
    assert_eq!(out, "refused\nrefused\n");
    // And the opposite: a writable root really is writable.
    let out = inside(
        "rwroot",
        |b| {
            b.set("/root/readonly", json!(false));
        },
        "touch /x && echo wrote && rm /x",
    );
    assert_eq!(out, "wrote\n");
}

#[test]
fn masked_and_readonly_paths() {
    let out = inside(
        "masked",
        |_| {},
        "echo kcore=$(cat /proc/kcore 2>/dev/null | wc -c); \
         echo keys=$(cat /proc/keys 2>/dev/null | wc -c); \
         echo firmware=$(ls /sys/firmware | wc -l); \
         echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo sys=written || echo sys=refused; \
         echo 1 > /proc/sysrq-trigger 2>/dev/null && echo sysrq=written || echo sysrq=refused; \
         grep ' /proc/sys ' /proc/self/mountinfo | cut -d' ' -f6",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..5],
        &[
            "kcore=0",
            "keys=0",
            "firmware=0",
            "sys=refused",
            "sysrq=refused"
        ],
        "{out}"
    );
    assert!(
        lines[5].split(',').any(|o| o == "ro"),
        "/proc/sys not ro: {out}"
    );
}

#[test]
fn default_devices_and_symlinks() {
    let out = inside(
        "devs",
        |_| {},
        "for d in null zero full random urandom tty; do stat -c '%n %F %a %t %T' /dev/$d; done; \
         for l in fd stdin stdout stderr ptmx; do echo $l=$(readlink /dev/$l); done; \
         test -c /dev/pts/ptmx && echo pts-ok",
    );
    let want = "\
/dev/null character special file 666 1 3
/dev/zero character special file 666 1 5
/dev/full character special file 666 1 7
/dev/random character special file 666 1 8
/dev/urandom character special file 666 1 9
/dev/tty character special file 666 5 0
fd=/proc/self/fd
stdin=/proc/self/fd/0
stdout=/proc/self/fd/1
stderr=/proc/self/fd/2
ptmx=pts/ptmx
pts-ok
";
    assert_eq!(out, want);
}

#[test]
fn config_device_node() {
    let out = inside(
        "cdev",
        |b| {
            b.push(
                "/linux/devices",
                json!({"path": "/dev/conf-null", "type": "c", "major": 1, "minor": 3,
                       "fileMode": 0o640, "uid": 1234, "gid": 5678}),
            );
        },
        "stat -c '%F %a %t %T %u %g' /dev/conf-null",
    );
    assert_eq!(out, "character special file 640 1 3 1234 5678\n");
}

#[test]
fn env_and_cwd() {
    let out = inside(
        "envcwd",
        |b| {
            b.push("/process/env", json!("CONF_FOO=bar baz"));
            b.set("/process/cwd", json!("/tmp/work"));
        },
        "pwd; echo \"$CONF_FOO\"",
    );
    // runc creates a missing cwd; so must keel.
    assert_eq!(out, "/tmp/work\nbar baz\n");
}

#[test]
fn home_from_the_containers_passwd() {
    // runc's rule: without HOME in the env, the uid's home from the
    // container's /etc/passwd, else "/".
    let out = inside(
        "home",
        |b| {
            std::fs::write(
                b.rootfs().join("etc/passwd"),
                "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000::/srv/web:/bin/sh\n",
            )
            .expect("write passwd");
            b.set("/process/user/uid", json!(1000));
        },
        "echo \"$HOME\"",
    );
    assert_eq!(out, "/srv/web\n");
    let out = inside(
        "home2",
        |b| {
            b.set("/process/user/uid", json!(4242));
        },
        "echo \"$HOME\"",
    );
    assert_eq!(out, "/\n");
}

#[test]
fn user_and_groups() {
    let out = inside(
        "user",
        |b| {
            b.set(
                "/process/user",
                json!({"uid": 1000, "gid": 1001, "additionalGids": [10, 20]}),
            );
        },
        "id -u; id -g; id -G",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["1000", "1001"], "{out}");
    let groups: Vec<&str> = lines[2].split(' ').collect();
    for g in ["10", "20"] {
        assert!(groups.contains(&g), "group {g} missing: {out}");
    }
}

#[test]
fn umask() {
    let out = inside(
        "umask",
        |b| {
            b.set("/process/user/umask", json!(0o027));
        },
        "umask",
    );
    assert_eq!(out, "0027\n");
}

#[test]
fn rlimits() {
    let out = inside(
        "rlimit",
        |b| {
            b.set(
                "/process/rlimits",
                json!([{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 768}]),
            );
        },
        "ulimit -n; ulimit -Hn; grep 'Max open files' /proc/self/limits",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["512", "768"], "{out}");
    let words: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(words[3..5], ["512", "768"], "{out}");
}

#[test]
fn capabilities() {
    // AUDIT_WRITE=29, KILL=5, NET_BIND_SERVICE=10.
    let out = inside(
        "caps",
        |_| {},
        "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status",
    );
    let want = 0x2000_0420u64;
    for line in out.lines() {
        let (name, hex) = line.split_once(":\t").expect("status line");
        let v = u64::from_str_radix(hex.trim(), 16).expect("hex caps");
        // Ambient needs inheritable, which this config leaves empty (runc
        // shows 0 there too).
        let expected = if matches!(name, "CapInh" | "CapAmb") {
            0
        } else {
            want
        };
        assert_eq!(v, expected, "{name} = {hex}, want {want:016x}");
    }
    // A different set takes effect too.
    let out = inside(
        "caps2",
        |b| {
            let caps = json!(["CAP_CHOWN", "CAP_SYS_ADMIN"]);
            for set in ["bounding", "effective", "permitted"] {
                b.set(&format!("/process/capabilities/{set}"), caps.clone());
            }
            b.remove("/process/capabilities/ambient");
        },
        "grep CapEff /proc/self/status",
    );
    assert_eq!(out, "CapEff:\t0000000000200001\n");
}

#[test]
fn sysctls() {
    let out = inside(
        "sysctl",
        |b| {
            b.set(
                "/linux/sysctl",
                json!({"kernel.shmmax": "123456789", "net.ipv4.ip_forward": "1"}),
            );
        },
        "cat /proc/sys/kernel/shmmax /proc/sys/net/ipv4/ip_forward",
    );
    assert_eq!(out, "123456789\n1\n");
}

#[test]
fn exit_code_passthrough() {
    let env = TestEnv::keel();
    let mut b = env.bundle("exit7");
    b.sh("exit 7");
    let o = env.run(&b);
    assert_eq!(o.code, 7, "{o}");
    assert_no_leaks(&env, "exit7");
}

#[test]
fn signal_death() {
    // pid 1 of a pid namespace ignores SIGKILL from inside it, so the
    // program runs without one to be able to kill itself.
    let env = TestEnv::keel();
    let mut b = env.bundle("sig9");
    b.namespaces(&["network", "ipc", "uts", "mount"]);
    b.sh("kill -9 $$; echo survived");
    let o = env.run(&b);
    assert_eq!(o.code, 137, "{o}");
    assert_eq!(o.stdout, "");
    assert_no_leaks(&env, "sig9");
}

#[test]
fn bind_mount_readonly() {
    let env = TestEnv::keel();
    let src = env.dir.join("shared");
    std::fs::create_dir_all(&src).expect("mkdir shared");
    std::fs::write(src.join("hello"), "from host\n").expect("write hello");
    let mut b = env.bundle("bindro");
    b.push(
        "/mounts",
        json!({"destination": "/mnt/ro", "type": "bind", "source": src,
               "options": ["bind", "ro"]}),
    );
    b.push(
        "/mounts",
        json!({"destination": "/mnt/rw", "type": "bind", "source": src,
               "options": ["rbind", "rw"]}),
    );
    b.sh(
        "cat /mnt/ro/hello; touch /mnt/ro/x 2>/dev/null && echo ro-written || echo ro-refused; \
         echo new > /mnt/rw/fromc && echo rw-written",
    );
    let o = env.run(&b);
    o.expect_ok("run bindro");
    assert_eq!(o.stdout, "from host\nro-refused\nrw-written\n");
    assert_eq!(
        std::fs::read_to_string(src.join("fromc")).expect("file written by container"),
        "new\n"
    );
    assert_no_leaks(&env, "bindro");
}

#[test]
fn tmpfs_with_options() {
    let out = inside(
        "tmpfs",
        |b| {
            b.push(
                "/mounts",
                json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "nodev", "noexec", "size=1m", "mode=710", "uid=5", "gid=6"]}),
            );
        },
        "stat -c '%a %u %g' /scratch; grep ' /scratch ' /proc/self/mountinfo",
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("710 5 6"), "{out}");
    let (opts, sup) = mount_opts(&out, "/scratch");
    for f in ["nosuid", "nodev", "noexec"] {
        assert!(opts.contains(&f.to_string()), "{f} missing: {out}");
    }
    assert!(sup.contains(&"size=1024k".to_string()), "size: {out}");
}

#[test]
fn recursive_readonly_bind() {
    // /sys/fs/cgroup has sub-mounts (one per hierarchy), so rro must reach
    // beyond the top mount to pass.
    let out = inside(
        "rro",
        |b| {
            b.push(
                "/mounts",
                json!({"destination": "/mnt/cg", "type": "bind", "source": "/sys/fs/cgroup",
                       "options": ["rbind", "rro"]}),
            );
        },
        "grep ' /mnt/cg' /proc/self/mountinfo | cut -d' ' -f5,6; \
         mkdir /mnt/cg/unified/keel-conf-rro 2>/dev/null && echo created || echo refused",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() > 2, "expected sub-mounts: {out}");
    for l in &lines[..lines.len() - 1] {
        let (_, opts) = l.split_once(' ').expect("mountpoint opts");
        assert!(opts.split(',').any(|o| o == "ro"), "not ro: {l}");
    }
    assert_eq!(lines.last(), Some(&"refused"), "{out}");
}

#[test]
fn time_namespace_offsets() {
    const OFFSET: f64 = 1_000_000.0;
    let host = std::fs::read_to_string("/proc/uptime").expect("read /proc/uptime");
    let host: f64 = host
        .split(' ')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("host uptime");
    let out = inside(
        "timens",
        |b| {
            b.push("/linux/namespaces", json!({"type": "time"}));
            b.set(
                "/linux/timeOffsets",
                json!({"boottime": {"secs": OFFSET as i64, "nanosecs": 0}}),
            );
        },
        "cut -d' ' -f1 /proc/uptime",
    );
    let inner: f64 = out.trim().parse().expect("container uptime");
    let diff = inner - host;
    assert!(
        (OFFSET - 1.0..OFFSET + 60.0).contains(&diff),
        "uptime inside {inner}, host {host}: offset {diff}"
    );
}

#[test]
fn join_namespace_by_path() {
    let env = TestEnv::keel();
    let mut a = env.bundle("nsowner");
    a.set("/hostname", json!("owner-host"));
    a.sh("sleep 60");
    env.run_with(&a, &["--detach"]).expect_ok("run -d nsowner");
    let state = env.state("nsowner").expect("state nsowner");
    let pid = state["pid"].as_i64().expect("pid");
    assert!(pid > 0, "{state}");

    let mut b = env.bundle("nsjoiner");
    b.remove("/hostname");
    b.set(
        "/linux/namespaces",
        json!([{"type": "pid"}, {"type": "mount"}, {"type": "ipc"},
               {"type": "uts", "path": format!("/proc/{pid}/ns/uts")},
               {"type": "network", "path": format!("/proc/{pid}/ns/net")}]),
    );
    b.sh("hostname; readlink /proc/self/ns/uts; readlink /proc/self/ns/net");
    let o = env.run(&b);
    o.expect_ok("run nsjoiner");
    let uts = std::fs::read_link(format!("/proc/{pid}/ns/uts")).expect("owner uts");
    let net = std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("owner net");
    assert_eq!(
        o.stdout,
        format!("owner-host\n{}\n{}\n", uts.display(), net.display())
    );
    assert_no_leaks(&env, "nsjoiner");
    env.cmd(&["delete", "--force", "nsowner"])
        .expect_ok("delete nsowner");
    assert_no_leaks(&env, "nsowner");
}

#[test]
fn user_namespace_mappings() {
    let out = inside(
        "userns",
        |b| {
            b.user_namespace();
        },
        "cat /proc/self/uid_map /proc/self/gid_map; id -u; stat -c %u /bin/busybox",
    );
    let words: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(words[0], ["0", "100000", "65536"], "{out}");
    assert_eq!(words[1], ["0", "100000", "65536"], "{out}");
    assert_eq!(words[2], ["0"], "{out}");
    // Host root is unmapped in the namespace: it shows as the overflow uid.
    assert_eq!(words[3], ["65534"], "{out}");
}

#[test]
fn no_pivot() {
    let env = TestEnv::keel();
    let mut b = env.bundle("nopivot");
    b.sh("echo $$; ls /; cat /proc/self/mountinfo | wc -l");
    let o = env.run_with(&b, &["--no-pivot"]);
    o.expect_ok("run --no-pivot");
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines[0], "1");
    let listing: Vec<&str> = lines[1..lines.len() - 1].to_vec();
    assert_eq!(listing, ["bin", "dev", "etc", "proc", "sys", "tmp"]);
    assert_no_leaks(&env, "nopivot");
}

#[test]
fn rootfs_propagation() {
    let fields = |out: &str| -> Vec<String> {
        let line = out
            .lines()
            .find(|l| l.split(' ').nth(4) == Some("/"))
            .unwrap_or_else(|| panic!("no / in {out}"));
        let pre = line.split(" - ").next().unwrap_or_default();
        pre.split(' ').skip(6).map(str::to_owned).collect()
    };
    let shared = inside(
        "propshared",
        |b| {
            b.set("/linux/rootfsPropagation", json!("shared"));
        },
        "cat /proc/self/mountinfo",
    );
    let optional = fields(&shared);
    assert!(
        optional.iter().any(|f| f.starts_with("shared:")),
        "/ not shared: {optional:?}"
    );
    let private = inside(
        "propprivate",
        |b| {
            b.set("/linux/rootfsPropagation", json!("private"));
        },
        "cat /proc/self/mountinfo",
    );
    let optional = fields(&private);
    assert!(optional.is_empty(), "/ not private: {optional:?}");
}

#[test]
fn detached_run_keeps_running_until_killed() {
    let env = TestEnv::keel();
    let mut b = env.bundle("detach");
    b.sh("sleep 60");
    env.run_with(&b, &["-d"]).expect_ok("run -d");
    assert_eq!(env.status("detach"), "running");
    env.cmd(&["kill", "detach", "KILL"]).expect_ok("kill");
    assert!(env.wait_status("detach", "stopped", Duration::from_secs(5)));
    env.cmd(&["delete", "detach"]).expect_ok("delete");
    assert!(wait_until(Duration::from_secs(1), || env
        .state("detach")
        .is_err()));
    assert_no_leaks(&env, "detach");
}

#[test]
fn join_pid_and_ipc_namespace_by_path() {
    let env = TestEnv::keel();
    let mut a = env.bundle("pidowner");
    a.sh("sleep 61");
    env.run_with(&a, &["-d"]).expect_ok("run -d pidowner");
    let pid = env.state("pidowner").expect("state")["pid"]
        .as_i64()
        .expect("pid");

    let mut b = env.bundle("pidjoiner");
    b.set(
        "/linux/namespaces",
        json!([{"type": "mount"}, {"type": "uts"}, {"type": "network"},
               {"type": "pid", "path": format!("/proc/{pid}/ns/pid")},
               {"type": "ipc", "path": format!("/proc/{pid}/ns/ipc")}]),
    );
    // The joiner is not pid 1 and sees the owner's init (pid 1: sh -c execs its one command, sleep 61).
    b.sh("echo $$; cat /proc/1/cmdline | tr '\\0' ' '; echo; exit 5");
    let o = env.run(&b);
    assert_eq!(o.code, 5, "{o}");
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_ne!(lines.first(), Some(&"1"), "{o}");
    assert_eq!(lines.get(1), Some(&"sleep 61 "), "{o}");
    assert_no_leaks(&env, "pidjoiner");
    assert_eq!(env.status("pidowner"), "running", "the owner must survive");
    env.cmd(&["delete", "--force", "pidowner"])
        .expect_ok("delete pidowner");
    assert_no_leaks(&env, "pidowner");
}
