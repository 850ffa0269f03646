//! Commands racing on one container id and on many, and the harness's own
//! leak checker (which the other tests trust to report leaks).

use keel_conformance::{assert_no_leaks, find_leaks, Output, TestEnv};
use std::sync::atomic::{AtomicBool, Ordering};
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

/// A small deterministic generator, so a failing mix can be replayed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// A command that may lose a race fails cleanly: runc's exit code for a
/// failure (255 for exec, 1 for the others) with a message, never a panic,
/// a signal or a hang (the harness kills a command after 30 s and the test
/// fails).
#[track_caller]
fn clean(o: &Output, args: &[&str]) {
    let what = args.join(" ");
    let failed = if args[0] == "exec" { 255 } else { 1 };
    assert!(!o.stderr.contains("panicked"), "{what} panicked: {o}");
    assert!(
        o.ok() || (o.code == failed && !o.stderr.trim().is_empty()),
        "{what} did not fail cleanly: {o}"
    );
}

/// Every state.json under the root that can be read is whole JSON.
fn state_files_whole(env: &TestEnv) -> Result<usize, String> {
    let mut n = 0;
    for e in std::fs::read_dir(&env.root).into_iter().flatten().flatten() {
        if let Ok(text) = std::fs::read_to_string(e.path().join("state.json")) {
            serde_json::from_str::<serde_json::Value>(&text)
                .map_err(|err| format!("{}: {err}: {text:?}", e.path().display()))?;
            n += 1;
        }
    }
    Ok(n)
}

#[test]
fn mixed_commands_on_shared_ids() {
    const IDS: [&str; 3] = ["mixa", "mixb", "mixc"];
    const THREADS: u64 = 6;
    const STEPS: usize = 30;
    let env = TestEnv::keel();
    let bundles: Vec<String> = IDS
        .iter()
        .map(|id| {
            let mut b = env.bundle(id);
            b.sh("sleep 1000");
            b.save().expect("save");
            b.dir.to_string_lossy().into_owned()
        })
        .collect();
    let done = AtomicBool::new(false);
    let seed = std::env::var("KEEL_MIX_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    eprintln!("mixed commands: seed {seed} (KEEL_MIX_SEED replays a mix)");
    /// Stops the reader however the scope ends: a worker's panic must fail
    /// the test, not leave the reader spinning forever.
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        let stop = Stop(&done);
        // Readers race the writers: a state.json is never seen half-written.
        let reader = s.spawn(|| {
            let mut reads = 0;
            while !done.load(Ordering::Relaxed) {
                reads += state_files_whole(&env).unwrap_or_else(|e| panic!("torn state: {e}"));
            }
            reads
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (env, bundles) = (&env, &bundles);
                s.spawn(move || {
                    let mut rng = Lcg(seed * 1000 + t);
                    let mut tally = [0usize; 2];
                    for _ in 0..STEPS {
                        let i = rng.below(IDS.len());
                        let (id, bundle) = (IDS[i], bundles[i].as_str());
                        let args: Vec<&str> = match rng.below(10) {
                            0 => vec!["create", "--bundle", bundle, id],
                            1 => vec!["run", "-d", "--bundle", bundle, id],
                            2 => vec!["start", id],
                            3 => vec!["kill", id, "KILL"],
                            4 => vec!["kill", id, "TERM"],
                            5 => vec!["delete", id],
                            6 => vec!["delete", "--force", id],
                            7 => vec!["state", id],
                            8 => vec!["exec", id, "true"],
                            _ => vec!["list", "--format", "json"],
                        };
                        let o = env.cmd(&args);
                        // An exec'd process dies with its pid namespace
                        // when a concurrent kill ends the init: exec then
                        // reports SIGKILL's status, as runc exec does.
                        if !(args[0] == "exec" && o.code == 137) {
                            clean(&o, &args);
                        }
                        if o.ok() && matches!(args[0], "state" | "list") {
                            o.json().unwrap_or_else(|e| panic!("{args:?}: {e:#}"));
                        }
                        tally[usize::from(o.ok())] += 1;
                    }
                    tally
                })
            })
            .collect();
        let mut tally = [0usize; 2];
        for w in workers {
            let t = w.join().expect("worker");
            tally[0] += t[0];
            tally[1] += t[1];
        }
        drop(stop);
        let reads = reader.join().expect("reader");
        eprintln!(
            "mixed commands: {} succeeded, {} failed cleanly; {reads} state.json reads whole",
            tally[1], tally[0]
        );
    });
    // Whatever the mix left is consistent: each remaining container has a
    // state the runtime can read, and deletes cleanly.
    for id in IDS {
        if env.root.join(id).exists() {
            env.state(id).expect("a remaining container has a state");
            env.cmd(&["delete", "--force", id])
                .expect_ok("delete --force");
        }
        assert_no_leaks(&env, id);
    }
    assert!(
        keel_conformance::marked_processes(&env, None).is_empty(),
        "processes left"
    );
}

#[test]
fn lifecycles_on_different_ids_at_once() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 5;
    let env = TestEnv::keel();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let env = &env;
            s.spawn(move || {
                let id = format!("par{t}");
                let mut b = env.bundle(&id);
                b.sh("sleep 1000");
                b.save().expect("save");
                let bundle = b.dir.to_string_lossy().into_owned();
                for r in 0..ROUNDS {
                    let what = |c: &str| format!("{c} {id} (round {r})");
                    env.cmd(&["create", "--bundle", &bundle, &id])
                        .expect_ok(&what("create"));
                    assert_eq!(env.status(&id), "created");
                    env.cmd(&["start", &id]).expect_ok(&what("start"));
                    let o = env.cmd(&["exec", &id, "cat", "/proc/1/cmdline"]);
                    o.expect_ok(&what("exec"));
                    assert_eq!(o.stdout, "sleep\x001000\x00", "{}", what("exec"));
                    assert_eq!(env.status(&id), "running");
                    env.cmd(&["kill", &id, "KILL"]).expect_ok(&what("kill"));
                    assert!(env.wait_status(&id, "stopped", Duration::from_secs(10)));
                    env.cmd(&["delete", &id]).expect_ok(&what("delete"));
                    assert_no_leaks(env, &id);
                }
            });
        }
    });
}
