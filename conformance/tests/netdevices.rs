//! `linux.netDevices` (runtime-spec 1.3): host interfaces moved into the
//! container's network namespace. runc 1.1 (Debian's) predates the field,
//! so these are keel-only tests of runc 1.3+'s behaviour
//! (libcontainer/network_linux.go devChangeNetNamespace, and
//! tests/integration/netdev.bats): renamed, down while moved, permanent
//! global addresses and the MTU kept, set up inside; the namespace's owner
//! keeps the device afterwards.
//!
//! Each test works in a network namespace of its own thread (this kernel
//! has no `dummy` links: a veth pair stands in), which the thread's end
//! releases with whatever is left in it.

use keel_conformance::{assert_no_leaks, Bundle, TestEnv};
use serde_json::json;
use std::process::Command;

/// Moves this test's thread (and the commands it starts) into a new
/// network namespace holding the veth pair `a`/`b`; `a` gets `addr`.
fn own_netns_with_veth(a: &str, b: &str, addr: &str) {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .expect("unshare the network namespace");
    for args in [
        vec![
            "link", "add", a, "mtu", "1400", "type", "veth", "peer", "name", b,
        ],
        vec!["address", "add", addr, "dev", a],
    ] {
        let o = Command::new("ip").args(&args).output().expect("run ip");
        assert!(
            o.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

fn host_has_link(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn with_ip(env: &TestEnv, id: &str) -> Bundle {
    let b = env.bundle(id);
    std::os::unix::fs::symlink("busybox", b.rootfs().join("bin/ip")).expect("link ip");
    b
}

const SHOW: &str = "ip -o link show ctr0; ip -o -4 address show dev ctr0";

#[test]
fn moved_renamed_with_address_and_mtu() {
    own_netns_with_veth("kdev0", "kdev1", "10.77.0.1/24");
    let env = TestEnv::keel();
    let mut b = with_ip(&env, "netdev");
    b.set("/linux/netDevices", json!({"kdev0": {"name": "ctr0"}}));
    b.set("/process/args", json!(["sh", "-c", SHOW]));
    let o = env.run(&b);
    o.expect_ok("run");
    let link = o.stdout.lines().next().unwrap_or("");
    assert!(link.contains(": ctr0@"), "{o}");
    assert!(link.contains("mtu 1400"), "{o}");
    assert!(
        link.contains(",UP") || link.contains("<UP"),
        "set up inside: {o}"
    );
    assert!(o.stdout.contains("inet 10.77.0.1/24"), "{o}");
    // Gone with the container's namespace (a veth dies with it), as under
    // runc: nothing moves it back.
    assert!(!host_has_link("kdev0"));
    assert_no_leaks(&env, "netdev");
}

/// runc's netdev.bats "move network device to precreated container network
/// namespace": the device stays in a namespace the container joined.
#[test]
fn stays_in_a_joined_namespace_after_delete() {
    own_netns_with_veth("kdev2", "kdev3", "10.78.0.1/24");
    let holder = Command::new("unshare")
        .args(["--net", "sleep", "1000"])
        .spawn()
        .expect("start a namespace holder");
    let netns = format!("/proc/{}/ns/net", holder.id());
    // unshare has made its namespace once its pid's link differs from ours.
    assert!(keel_conformance::wait_until(
        std::time::Duration::from_secs(10),
        || std::fs::read_link(&netns).ok() != std::fs::read_link("/proc/thread-self/ns/net").ok()
    ));
    let env = TestEnv::keel();
    let mut b = with_ip(&env, "netdev-join");
    b.set("/linux/netDevices", json!({"kdev2": {"name": "ctr0"}}));
    b.set(
        "/linux/namespaces",
        json!([{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "network", "path": netns}]),
    );
    b.set("/process/args", json!(["sh", "-c", SHOW]));
    let o = env.run(&b);
    o.expect_ok("run");
    assert!(o.stdout.contains("inet 10.78.0.1/24"), "{o}");
    let inside = Command::new("nsenter")
        .args([
            "--net=".to_string() + &netns,
            "ip".into(),
            "-o".into(),
            "link".into(),
            "show".into(),
            "ctr0".into(),
        ])
        .output()
        .expect("nsenter");
    let mut holder = holder;
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        inside.status.success(),
        "{}",
        String::from_utf8_lossy(&inside.stderr)
    );
    assert_no_leaks(&env, "netdev-join");
}

/// A device that is not there fails the create with runc's words, and
/// leaves nothing behind.
#[test]
fn missing_device_is_refused() {
    own_netns_with_veth("kdev4", "kdev5", "10.79.0.1/24");
    let env = TestEnv::keel();
    let mut b = env.bundle("netdev-missing");
    b.set("/linux/netDevices", json!({"nosuchdev": {}}));
    let o = env.run(&b);
    o.expect_fail("missing device");
    assert!(
        o.stderr
            .contains("link not found for interface nosuchdev on runtime namespace"),
        "{o}"
    );
    assert_no_leaks(&env, "netdev-missing");
}

/// runc's validator: no private network namespace, no device.
#[test]
fn needs_a_private_network_namespace() {
    let env = TestEnv::keel();
    let mut b = env.bundle("netdev-nons");
    b.set("/linux/netDevices", json!({"kdev0": {}}));
    b.set(
        "/linux/namespaces",
        json!([{"type": "pid"}, {"type": "mount"}, {"type": "uts"}]),
    );
    let o = env.run(&b);
    o.expect_fail("no netns");
    assert!(
        o.stderr
            .contains("unable to move network devices without a private NET namespace"),
        "{o}"
    );
    assert_no_leaks(&env, "netdev-nons");
}
