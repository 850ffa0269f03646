//! Soak: many create/start/delete cycles, and many exec into one running
//! container, must leave the host as they found it (mounts, cgroups, the
//! test's fds, state dirs, processes) and keel's peak RSS where it was.
//!
//! `KEEL_SOAK_CYCLES` sets the number of cycles and of execs (default 200,
//! which keeps this under a minute on 2 cores); `bench/soak.sh` runs 1000.

use keel_conformance::{assert_no_leaks, Output, Snapshot, TestEnv, COMMAND_TIMEOUT};
use std::sync::Mutex;
use std::time::Instant;

/// A snapshot sees the whole test process's fds: one soak at a time.
static ALONE: Mutex<()> = Mutex::new(());

fn cycles() -> usize {
    std::env::var("KEEL_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// Runs a keel command; returns its output and peak RSS in KiB.
fn keel(env: &TestEnv, args: &[&str]) -> (Output, i64) {
    let (o, ru) = env
        .spawn(args)
        .and_then(|r| r.wait_rusage(COMMAND_TIMEOUT))
        .unwrap_or_else(|e| panic!("keel {args:?}: {e:#}"));
    (o, ru.ru_maxrss)
}

/// Peak RSS of each command at the start and at the end of the soak.
#[derive(Default)]
struct Rss(Vec<i64>);

impl Rss {
    /// Mean of the first and of the last tenth (at least 5 runs each).
    fn ends(&self) -> (i64, i64) {
        let k = (self.0.len() / 10).max(5).min(self.0.len());
        let mean = |s: &[i64]| s.iter().sum::<i64>() / s.len().max(1) as i64;
        (mean(&self.0[..k]), mean(&self.0[self.0.len() - k..]))
    }

    /// Panics if the end is more than 10% (and 1 MiB) above the start.
    #[track_caller]
    fn assert_flat(&self, what: &str) {
        let (start, end) = self.ends();
        eprintln!("soak: keel {what} peak RSS: start {start} KiB, end {end} KiB");
        assert!(
            end <= start + (start / 10).max(1024),
            "keel {what} grew from {start} KiB to {end} KiB: {:?}",
            self.0
        );
    }
}

#[track_caller]
fn assert_same(before: &Snapshot, after: &Snapshot, what: &str) {
    let diff = before.diff(after);
    eprintln!(
        "soak: {what}: {} leaks; host processes {} -> {}",
        diff.len(),
        before.host_processes,
        after.host_processes
    );
    assert!(diff.is_empty(), "{what} left:\n{}", diff.join("\n"));
}

#[test]
fn create_start_delete_cycles() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let n = cycles();
    let env = TestEnv::keel();
    let mut b = env.bundle("soak");
    b.sh("sleep 1000");
    b.save().expect("save");
    let bundle = b.dir.to_string_lossy().into_owned();
    let cycle = |rss: &mut [Rss; 3]| {
        let (o, r) = keel(&env, &["create", "--bundle", &bundle, "soak"]);
        o.expect_ok("create");
        rss[0].0.push(r);
        let (o, r) = keel(&env, &["start", "soak"]);
        o.expect_ok("start");
        rss[1].0.push(r);
        let (o, r) = keel(&env, &["delete", "--force", "soak"]);
        o.expect_ok("delete --force");
        rss[2].0.push(r);
    };
    // One cycle first, so that the cgroup parent exists in the snapshot
    // (keel, like runc, leaves a parent it made) and caches are warm.
    cycle(&mut Default::default());
    let before = Snapshot::take(&env);
    let mut rss: [Rss; 3] = Default::default();
    let t = Instant::now();
    for _ in 0..n {
        cycle(&mut rss);
    }
    eprintln!("soak: {n} create/start/delete cycles in {:?}", t.elapsed());
    assert_no_leaks(&env, "soak");
    assert_same(&before, &Snapshot::take(&env), "cycles");
    for (r, what) in rss.iter().zip(["create", "start", "delete"]) {
        r.assert_flat(what);
    }
}

#[test]
fn execs_into_one_container() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let n = cycles();
    let env = TestEnv::keel();
    let mut b = env.bundle("soakexec");
    b.sh("sleep 1000");
    env.run_with(&b, &["-d"]).expect_ok("run -d");
    keel(&env, &["exec", "soakexec", "true"])
        .0
        .expect_ok("first exec");
    let before = Snapshot::take(&env);
    let mut rss = Rss::default();
    let t = Instant::now();
    for i in 0..n {
        let msg = format!("exec {i}");
        let (o, r) = keel(&env, &["exec", "soakexec", "echo", &msg]);
        o.expect_ok(&msg);
        assert_eq!(o.stdout.trim(), msg, "{o}");
        rss.0.push(r);
    }
    eprintln!("soak: {n} execs in {:?}", t.elapsed());
    // Every exec'd process is gone: no zombie piles up under the init.
    let procs: Vec<String> = env
        .cgroup_dirs("soakexec")
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .filter(|p| !p.trim().is_empty())
        .collect();
    let pid = env.state("soakexec").expect("state")["pid"].to_string();
    for p in &procs {
        assert_eq!(p.trim(), pid, "the container holds more than its init");
    }
    assert_same(&before, &Snapshot::take(&env), "execs");
    rss.assert_flat("exec");
    env.cmd(&["delete", "--force", "soakexec"])
        .expect_ok("delete --force");
    assert_no_leaks(&env, "soakexec");
}
