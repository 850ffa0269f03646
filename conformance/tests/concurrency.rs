//! Commands racing on one container id, and the harness's own leak checker
//! (which the other tests trust to report leaks).

use keel_conformance::{assert_no_leaks, find_leaks, TestEnv};
use std::time::Duration;

#[test]
fn concurrent_creates_same_id() {
    const N: usize = 8;
    let env = TestEnv::keel();
    let mut b = env.bundle("race");
    b.sh("sleep 60");
    b.save().expect("save");
    let bundle = b.dir.to_string_lossy().into_owned();
    let running: Vec<_> = (0..N)
        .map(|_| {
            env.spawn(&["create", "--bundle", &bundle, "race"])
                .expect("spawn create")
        })
        .collect();
    let outs: Vec<_> = running
        .into_iter()
        .map(|r| r.wait(Duration::from_secs(30)).expect("create finishes"))
        .collect();
    let winners = outs.iter().filter(|o| o.ok()).count();
    assert_eq!(winners, 1, "exactly one create must win: {outs:#?}");
    for o in outs.iter().filter(|o| !o.ok()) {
        assert!(o.stderr.contains("already exists"), "loser said: {o}");
    }
    let text = std::fs::read_to_string(env.root.join("race/state.json")).expect("state.json");
    serde_json::from_str::<serde_json::Value>(&text)
        .unwrap_or_else(|e| panic!("state.json is not JSON ({e}): {text}"));
    let s = env.state("race").expect("state");
    assert_eq!(s["status"], "created", "{s}");
    // Exactly one init: the winner's.
    let procs: Vec<String> = env
        .cgroup_dirs("race")
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .collect();
    assert!(!procs.is_empty());
    for p in &procs {
        assert_eq!(p.trim(), s["pid"].to_string(), "cgroup.procs {p:?}");
    }
    env.cmd(&["delete", "race"]).expect_ok("delete");
    assert_no_leaks(&env, "race");
}

#[test]
fn concurrent_deletes() {
    let env = TestEnv::keel();
    let mut b = env.bundle("delrace");
    b.sh("sleep 60");
    env.run_with(&b, &["-d"]).expect_ok("run -d");
    let running: Vec<_> = (0..4)
        .map(|_| {
            env.spawn(&["delete", "--force", "delrace"])
                .expect("spawn delete")
        })
        .collect();
    for r in running {
        let o = r.wait(Duration::from_secs(30)).expect("delete finishes");
        // Losers may see the container gone; --force makes that success.
        assert!(o.ok() || o.stderr.contains("delrace"), "{o}");
    }
    assert_no_leaks(&env, "delrace");
}

#[test]
fn leak_checker_sees_a_live_container() {
    let env = TestEnv::keel();
    let mut b = env.bundle("leaky");
    b.sh("sleep 60");
    env.run_with(&b, &["-d"]).expect_ok("run -d");
    let leaks = find_leaks(&env, "leaky");
    let has = |what: &str| leaks.iter().any(|l| l.starts_with(what));
    assert!(has("state dir"), "{leaks:#?}");
    assert!(has("cgroup"), "{leaks:#?}");
    assert!(has("process"), "{leaks:#?}");
    env.cmd(&["delete", "--force", "leaky"])
        .expect_ok("delete --force");
    assert_no_leaks(&env, "leaky");
}
