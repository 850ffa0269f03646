//! Checkpoint and restore through the engines: containerd 1.6 with keel's
//! shim (`io.containerd.keel.v2`) and, as the reference, with the runc
//! shim and runc, each restoring a counter that must go on counting. The
//! CRIU is `keel_conformance::criu::criu()`'s, first on the engine's PATH;
//! without one, each test says SKIPPED.
//!
//! The counter counts in memory and writes each count to /dev/shm/count:
//! /dev/shm is the container's own tmpfs, whose files CRIU dumps, so a
//! restore gets the file back whatever instant the dump took.

use keel_conformance::containerd::{self, Containerd, KEEL_SHIM, RUNC_SHIM};
use keel_conformance::criu;
use keel_conformance::{read_counter, wait_until};
use std::time::Duration;

const SEC10: Duration = Duration::from_secs(10);
const COUNTER: &str = "i=0; while :; do i=$((i+1)); echo $i > /dev/shm/count; sleep 0.1; done";

/// A containerd whose PATH finds the CRIU, or None (saying why).
fn containerd() -> Option<Containerd> {
    if let Some(why) = containerd::unavailable() {
        eprintln!("SKIPPED {}: {why}", module_path!());
        return None;
    }
    let criu = criu::criu()?;
    let scratch = std::env::temp_dir().join(format!("keel-cp-{}", std::process::id()));
    let dir = criu::path_dir(&criu, &scratch).expect("a PATH directory for criu");
    Some(Containerd::start_with_path(&[dir]).expect("start containerd"))
}

/// The counter's count, read in the task (0 while there is none).
fn ctr_count(c: &Containerd, id: &str) -> u32 {
    read_counter(|| {
        let o = c.ctr(&[
            "task",
            "exec",
            "--exec-id",
            "count",
            id,
            "cat",
            "/dev/shm/count",
        ]);
        (o.code == 0).then_some(o.stdout)
    })
}

/// `ctr c checkpoint --task` of a running counter, then `ctr c restore
/// --live` of it (the original deleted first): the count goes on from
/// where the checkpoint took it.
fn containerd_round_trip(runtime: &str) {
    let Some(c) = containerd() else { return };
    let id = "counter";
    let reference = "keel.test/checkpoint:counter";
    c.run_detached(runtime, id, &[], &["sh", "-c", COUNTER]);
    assert!(
        wait_until(SEC10, || ctr_count(&c, id) >= 3),
        "{runtime}: the counter never counted"
    );
    let before = ctr_count(&c, id);
    let out = c.ctr(&["containers", "checkpoint", "--task", id, reference]);
    assert_eq!(out.code, 0, "{runtime}: checkpoint: {out:?}\n{}", c.log());
    // `ctr c checkpoint` leaves the task running (paused for the dump).
    assert_eq!(c.task_status(id), "RUNNING", "{runtime}");
    c.ctr(&["task", "kill", "-s", "SIGKILL", id])
        .expect_ok("task kill");
    assert!(
        c.wait_status(id, "STOPPED", SEC10),
        "{runtime}: not stopped"
    );
    c.ctr(&["task", "delete", id]).expect_ok("task delete");
    c.ctr(&["containers", "delete", id])
        .expect_ok("containers delete");
    let out = c.ctr(&["containers", "restore", "--live", id, reference]);
    assert_eq!(out.code, 0, "{runtime}: restore: {out:?}\n{}", c.log());
    assert_eq!(c.task_status(id), "RUNNING", "{runtime}");
    let after = ctr_count(&c, id);
    assert!(
        after >= before,
        "{runtime}: restored at {after}, checkpointed at {before}: not the same counter"
    );
    assert!(
        wait_until(SEC10, || ctr_count(&c, id) > after),
        "{runtime}: the restored counter does not count"
    );
    c.ctr(&["task", "kill", "-s", "SIGKILL", id])
        .expect_ok("task kill");
    assert!(
        c.wait_status(id, "STOPPED", SEC10),
        "{runtime}: not stopped"
    );
    c.ctr(&["task", "delete", id]).expect_ok("task delete");
    c.ctr(&["containers", "delete", id])
        .expect_ok("containers delete");
    assert!(c.cgroup_dirs(id).is_empty(), "{runtime}: cgroup left");
}

#[test]
fn containerd_keel_shim_checkpoint_restore() {
    containerd_round_trip(KEEL_SHIM);
}

#[test]
fn containerd_runc_shim_checkpoint_restore() {
    containerd_round_trip(RUNC_SHIM);
}

/// A restore that CRIU cannot do (the source of a bind mount is gone):
/// `ctr c restore --live` fails naming the cause, and deleting the task
/// and container leaves nothing (no cgroup, no runtime state, no process).
fn containerd_failed_restore(runtime: &str) {
    let Some(c) = containerd() else { return };
    let id = "badrestore";
    let reference = "keel.test/checkpoint:bad";
    let src = c.dir.join(format!("bind-{}", runtime.replace('.', "-")));
    std::fs::create_dir_all(&src).expect("mkdir bind source");
    let mount = format!("type=bind,src={},dst=/data,options=rbind:rw", src.display());
    c.run_detached(runtime, id, &["--mount", &mount], &["sh", "-c", COUNTER]);
    assert!(
        wait_until(SEC10, || ctr_count(&c, id) >= 1),
        "{runtime}: the counter never counted"
    );
    c.ctr(&["containers", "checkpoint", "--task", id, reference])
        .expect_ok("checkpoint");
    c.ctr(&["task", "kill", "-s", "SIGKILL", id])
        .expect_ok("task kill");
    assert!(
        c.wait_status(id, "STOPPED", SEC10),
        "{runtime}: not stopped"
    );
    c.ctr(&["task", "delete", id]).expect_ok("task delete");
    c.ctr(&["containers", "delete", id])
        .expect_ok("containers delete");
    std::fs::remove_dir(&src).expect("remove the bind source");
    let out = c.ctr(&["containers", "restore", "--live", id, reference]);
    assert_ne!(
        out.code, 0,
        "{runtime}: restore without its bind source: {out:?}"
    );
    assert!(
        out.stderr.contains(&*src.to_string_lossy()),
        "{runtime}: the error does not name the missing source: {out:?}"
    );
    // Created, pid 0: deleted as it is (`-f` would wait for an exit that
    // never comes, under either shim).
    c.ctr(&["task", "delete", id]).expect_ok("task delete");
    c.ctr(&["containers", "delete", id])
        .expect_ok("containers delete");
    assert!(c.cgroup_dirs(id).is_empty(), "{runtime}: cgroup left");
    let state = format!(
        "/proc/{}/root/run/containerd/{}/{}/{id}",
        c.pid(),
        if runtime == KEEL_SHIM { "keel" } else { "runc" },
        c.namespace
    );
    assert!(
        !std::path::Path::new(&state).exists(),
        "{runtime}: runtime state left at {state}"
    );
    let mounts =
        std::fs::read_to_string(format!("/proc/{}/mountinfo", c.pid())).unwrap_or_default();
    assert!(
        !mounts.contains(&format!("/{id}/rootfs ")),
        "{runtime}: rootfs left mounted"
    );
}

#[test]
fn containerd_keel_shim_failed_restore_leaves_nothing() {
    containerd_failed_restore(KEEL_SHIM);
}

#[test]
fn containerd_runc_shim_failed_restore_leaves_nothing() {
    containerd_failed_restore(RUNC_SHIM);
}

/// `ctr` (with `args`) under `script`, which gives it the terminal that
/// `-t` and a terminal container's restore attach to; spawned, its output
/// in `out`.
fn ctr_on_a_pty(c: &Containerd, args: &[&str], out: &std::path::Path) -> std::process::Child {
    let ctr = c.ctr_command(args);
    let line = std::iter::once(ctr.get_program())
        .chain(ctr.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    std::process::Command::new("script")
        .args(["-qec", &line])
        .arg(out)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn script")
}

/// A counter on a terminal (`ctr run -d -t`), checkpointed and restored:
/// the shim gets the new pty master over the console socket at Start, the
/// restored init's stdio is a pty and it counts on. The runc shim of
/// containerd 1.6 does not restore it (its failure is printed, not
/// compared).
fn containerd_terminal_round_trip(runtime: &str) -> Result<(), String> {
    let Some(c) = containerd() else {
        return Ok(());
    };
    let id = "tty";
    let reference = "keel.test/checkpoint:tty";
    let mut run = ctr_on_a_pty(
        &c,
        &[
            "run",
            "-d",
            "-t",
            "--runtime",
            runtime,
            containerd::IMAGE,
            id,
            "sh",
            "-c",
            COUNTER,
        ],
        &c.dir.join("run.out"),
    );
    let _ = keel_conformance::wait_timeout(&mut run, Duration::from_secs(30));
    assert!(
        wait_until(SEC10, || ctr_count(&c, id) >= 3),
        "{runtime}: the counter never counted"
    );
    c.ctr(&["containers", "checkpoint", "--task", id, reference])
        .expect_ok("checkpoint");
    let before = ctr_count(&c, id);
    c.ctr(&["task", "kill", "-s", "SIGKILL", id])
        .expect_ok("task kill");
    assert!(
        c.wait_status(id, "STOPPED", SEC10),
        "{runtime}: not stopped"
    );
    c.ctr(&["task", "delete", id]).expect_ok("task delete");
    c.ctr(&["containers", "delete", id])
        .expect_ok("containers delete");
    // Attached to the restored task's terminal until it ends.
    let out = c.dir.join("restore.out");
    let mut restore = ctr_on_a_pty(
        &c,
        &["containers", "restore", "--live", id, reference],
        &out,
    );
    let mut failed = false;
    wait_until(SEC10, || {
        failed = matches!(restore.try_wait(), Ok(Some(_)));
        failed || c.task_status(id) == "RUNNING"
    });
    let counting = !failed && wait_until(SEC10, || ctr_count(&c, id) > before);
    // An exec named as its container (`tty`): its own exit ends it.
    let tty = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        id,
        id,
        "ls",
        "-l",
        "/proc/1/fd/0",
    ]);
    let status = c.task_status(id);
    if status == "RUNNING" {
        let _ = c.ctr(&["task", "kill", "-s", "SIGKILL", id]);
        c.wait_status(id, "STOPPED", SEC10);
    }
    let _ = keel_conformance::wait_timeout(&mut restore, SEC10);
    let _ = c.ctr(&["task", "delete", id]);
    let _ = c.ctr(&["containers", "delete", id]);
    assert!(c.cgroup_dirs(id).is_empty(), "{runtime}: cgroup left");
    if !counting || status != "RUNNING" || !tty.stdout.contains("-> /dev/pts/") {
        return Err(format!(
            "status {status}, counting {counting}, stdin {:?}; ctr: {}",
            tty.stdout.trim(),
            std::fs::read_to_string(&out).unwrap_or_default().trim()
        ));
    }
    Ok(())
}

#[test]
fn containerd_keel_shim_terminal_checkpoint_restore() {
    if let Err(e) = containerd_terminal_round_trip(KEEL_SHIM) {
        panic!("{KEEL_SHIM}: {e}");
    }
}

#[test]
fn containerd_runc_shim_terminal_checkpoint_restore() {
    if let Err(e) = containerd_terminal_round_trip(RUNC_SHIM) {
        eprintln!("{RUNC_SHIM} does not restore a terminal task (not compared): {e}");
    }
}
