//! checkpoint and restore with CRIU, differential against runc 1.1.5 (which
//! works with the CRIU 4.2.1 that `scripts/criu.sh` provides).
//!
//! The CRIU is `$KEEL_CRIU` (scripts/test.sh sets it from scripts/criu.sh),
//! else whatever scripts/criu.sh prints (it builds one if it must); a test
//! is skipped, saying why, only when neither gives one. Both runtimes get
//! it with `--criu` and first on PATH.
//!
//! A container to checkpoint must not have stdio that is a host file: CRIU
//! cannot dump a file on a mount outside the container (runc's own tests
//! use pipes too). The runtime commands here get pipes, and report errors
//! through `--log`.

use keel_conformance::criu::criu;
use keel_conformance::{assert_no_leaks, read_counter, wait_until, Bundle, Runtime, TestEnv};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

const SEC10: Duration = Duration::from_secs(10);

/// Runs `scenario` under keel, then under runc when it is installed, each
/// in its own environment, with the CRIU (or skips, saying why).
fn each_runtime(scenario: impl Fn(&TestEnv, &Path)) {
    let Some(criu) = criu() else { return };
    let mut rts = vec![Runtime::keel()];
    match Runtime::runc() {
        Ok(r) => rts.push(r),
        Err(why) => eprintln!("runc not compared: {why}"),
    }
    for runtime in rts {
        scenario(&TestEnv::new(runtime), &criu);
    }
}

/// One runtime command's outcome; `stdio` holds our ends of the pipes a
/// detached container inherited (kept open while the test runs).
struct Ran {
    code: i32,
    log: String,
    _stdio: (Option<ChildStdin>, Option<ChildStdout>, Option<ChildStderr>),
}

impl Ran {
    #[track_caller]
    fn ok(self, what: &str) -> Ran {
        assert_eq!(self.code, 0, "{what} failed: {}", self.log);
        self
    }
}

/// `<runtime> --root R --log L --criu C args...` in a private mount
/// namespace, stdio on pipes, CRIU's directory first on PATH; and the log.
fn rt_command(env: &TestEnv, criu: &Path, args: &[&str]) -> (Command, PathBuf) {
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let log = env.dir.join(format!("criu-cmd-{n}.log"));
    let dir = criu.parent().unwrap_or(Path::new("/"));
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private"])
        .arg(&env.rt.bin)
        .arg("--root")
        .arg(&env.root)
        .arg("--log")
        .arg(&log)
        .arg("--criu")
        .arg(criu)
        .args(args)
        .env("PATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    (cmd, log)
}

/// [`rt_command`], run to its end.
fn rt(env: &TestEnv, criu: &Path, args: &[&str]) -> Ran {
    let (mut cmd, log) = rt_command(env, criu, args);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {} {args:?}: {e}", env.rt.name));
    let stdio = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let code = keel_conformance::wait_timeout(&mut child, Duration::from_secs(60));
    Ran {
        code,
        log: std::fs::read_to_string(&log).unwrap_or_default(),
        _stdio: stdio,
    }
}

/// A bundle whose program counts in /data/count (a bind mount of the
/// bundle's `data` directory), 10 times a second; with `limit`, it stops
/// at that count and exits 7.
fn counter(env: &TestEnv, id: &str, limit: Option<u32>) -> (Bundle, PathBuf) {
    let mut b = env.bundle(id);
    let data = b.dir.join("data");
    std::fs::create_dir_all(&data).expect("mkdir data");
    std::fs::create_dir_all(b.rootfs().join("data")).expect("mkdir rootfs/data");
    let cond = limit.map_or("true".to_string(), |l| format!("[ $i -lt {l} ]"));
    b.sh(&format!(
        "i=0; while {cond}; do i=$((i+1)); echo $i > /data/count; sleep 0.1; done; exit 7"
    ));
    b.push(
        "/mounts",
        json!({"destination": "/data", "type": "bind",
               "source": data.to_string_lossy(), "options": ["rbind", "rw"]}),
    );
    b.save().expect("save config");
    (b, data.join("count"))
}

/// The count in `file`; 0 if there is none.
fn count(file: &Path) -> u32 {
    read_counter(|| std::fs::read_to_string(file).ok())
}

/// Starts the counter detached and waits until it has counted to 3.
fn start_counter(env: &TestEnv, criu: &Path, b: &Bundle, file: &Path) -> Ran {
    let bundle = b.dir.to_string_lossy();
    let ran = rt(env, criu, &["run", "-d", "--bundle", &bundle, &b.id]).ok("run -d");
    assert!(
        wait_until(SEC10, || count(file) >= 3),
        "{}: the counter never counted",
        env.rt.name
    );
    ran
}

/// [`counter`] "ctr" without a limit, started: its bundle, its count
/// file and the run's stdio (kept open while the test runs).
fn running_counter(env: &TestEnv, criu: &Path) -> (Bundle, PathBuf, Ran) {
    let (b, file) = counter(env, "ctr", None);
    let run = start_counter(env, criu, &b, &file);
    (b, file, run)
}

/// `delete --force id`, which must work and leave nothing.
fn delete_leaving_nothing(env: &TestEnv, criu: &Path, id: &str) {
    rt(env, criu, &["delete", "--force", id]).ok("delete");
    assert_no_leaks(env, id);
}

fn pid_of(env: &TestEnv, id: &str) -> i64 {
    let s = env.state(id).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(s["status"], "running", "{}: {s}", env.rt.name);
    s["pid"].as_i64().expect("pid")
}

/// `checkpoint [flags] --image-path <dir>/images ctr`, which must work and
/// leave images; their directory.
fn dump(env: &TestEnv, criu: &Path, flags: &[&str]) -> PathBuf {
    let images = env.dir.join("images");
    let images_arg = images.to_string_lossy();
    let mut args = vec!["checkpoint"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--image-path", &images_arg, "ctr"]);
    rt(env, criu, &args).ok(&args.join(" "));
    assert!(
        images.join("inventory.img").is_file(),
        "{}: no images",
        env.rt.name
    );
    images
}

/// `restore --image-path <images> --bundle <b> [flags] <id>`.
fn restore(env: &TestEnv, criu: &Path, b: &Bundle, images: &Path, flags: &[&str], id: &str) -> Ran {
    let images_arg = images.to_string_lossy();
    let bundle = b.dir.to_string_lossy();
    let mut args = vec!["restore", "--image-path", &images_arg, "--bundle", &bundle];
    args.extend_from_slice(flags);
    args.push(id);
    rt(env, criu, &args)
}

/// Checkpoint with `dump_flags` (the container is gone after), then
/// restore under `new_id` with `flags`; the count goes on from where it was.
fn checkpoint_and_restore(
    env: &TestEnv,
    criu: &Path,
    new_id: &str,
    dump_flags: &[&str],
    flags: &[&str],
) {
    let name = env.rt.name;
    let (b, file) = counter(env, "ctr", None);
    let _run = start_counter(env, criu, &b, &file);
    // Read before: the dump may catch the shell between truncating the
    // file and writing it, leaving it empty until the restore.
    let dumped = count(&file);
    let images = dump(env, criu, dump_flags);
    assert!(
        env.state("ctr").is_err(),
        "{name}: the container outlived its checkpoint"
    );
    assert_no_leaks(env, "ctr");

    let _restored = restore(env, criu, &b, &images, flags, new_id).ok("restore");
    let pid = pid_of(env, new_id);
    // It goes on counting from where it was: a fresh start would count 1, 2...
    let first = count(&file);
    assert!(
        first >= dumped,
        "{name}: count {first} after restore, {dumped} before"
    );
    assert!(
        wait_until(SEC10, || count(&file) > dumped + 2),
        "{name}: the restored counter does not count (at {})",
        count(&file)
    );
    // Its cgroups are the container's again: the config's cgroupsPath.
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    assert!(
        cgroup.contains(&format!("/{}/ctr", env.cgroup_parent)),
        "{name}: restored init in {cgroup}"
    );
    if let Some(pid_file) = flags.iter().position(|f| *f == "--pid-file") {
        let recorded = std::fs::read_to_string(flags[pid_file + 1]).expect("pid file");
        assert_eq!(
            recorded.trim(),
            pid.to_string(),
            "{name}: pid file vs state"
        );
    }
    rt(env, criu, &["delete", "--force", new_id]).ok("delete");
    assert_no_leaks(env, new_id);
}

/// The flags no other scenario needs, each passed as runc passes it:
/// `--file-locks` and `--ext-unix-sk` at both ends, `--no-pivot` (CRIU
/// sets up the root either way) and a `--work-path` at restore.
#[test]
fn file_locks_ext_unix_sk_and_no_pivot_are_accepted() {
    each_runtime(|env, criu| {
        let work = env.dir.join("restore-work");
        let work_arg = work.to_string_lossy().into_owned();
        checkpoint_and_restore(
            env,
            criu,
            "ctr",
            &["--file-locks", "--ext-unix-sk"],
            &[
                "--detach",
                "--file-locks",
                "--ext-unix-sk",
                "--no-pivot",
                "--work-path",
                &work_arg,
            ],
        );
        assert!(
            work.join("restore.log").is_file(),
            "{}: no restore.log in the work path",
            env.rt.name
        );
    });
}

#[test]
fn counter_continues_after_restore() {
    each_runtime(|env, criu| {
        checkpoint_and_restore(env, criu, "ctr", &[], &["--detach"]);
    });
}

#[test]
fn restore_under_a_new_id_with_pid_file() {
    each_runtime(|env, criu| {
        let pid_file = env.dir.join("new.pid").to_string_lossy().into_owned();
        checkpoint_and_restore(
            env,
            criu,
            "ctr-new",
            &[],
            &["--detach", "--pid-file", &pid_file],
        );
        assert!(
            env.state("ctr").is_err(),
            "{}: the old id is back",
            env.rt.name
        );
    });
}

/// `--manage-cgroups-mode` at checkpoint and restore: with soft, full and
/// ignore the restored tree is in the container's cgroups (with ignore it
/// stays where CRIU was put: the container's cgroups). strict makes CRIU
/// refuse cgroups that exist, and the runtime has made them (runc too,
/// `criuApplyCgroups`): the restore fails, leaving nothing. That part is
/// keel's only: runc 1.1.5 drops restore's --manage-cgroups-mode (its
/// restore.log shows CRIU in soft mode); runc 1.2+ passes it (`Restore` in
/// libcontainer/criu_linux.go: `ManageCgroupsMode: &cgMode`) as keel does.
#[test]
fn manage_cgroups_modes() {
    each_runtime(|env, criu| {
        // ignore is runc 1.2+'s (checkpoint.go, criuOptions): runc 1.1.5
        // refuses it ("Invalid manage cgroups mode").
        let modes: &[&str] = match env.rt.name {
            "keel" => &["soft", "full", "ignore"],
            _ => &["soft", "full"],
        };
        for &mode in modes {
            let flags = ["--manage-cgroups-mode", mode];
            let id = format!("ctr-{mode}");
            let restore_flags = [&flags[..], &["--detach"]].concat();
            checkpoint_and_restore(env, criu, &id, &flags, &restore_flags);
            std::fs::remove_dir_all(env.dir.join("images")).expect("remove images");
        }
        let name = env.rt.name;
        if name != "keel" {
            return;
        }
        let (b, _file, _run) = running_counter(env, criu);
        let strict = ["--manage-cgroups-mode", "strict"];
        let images = dump(env, criu, &strict);
        let ran = restore(
            env,
            criu,
            &b,
            &images,
            &[&strict[..], &["-d"]].concat(),
            "ctr",
        );
        assert_ne!(
            ran.code, 0,
            "{name}: a strict restore into made cgroups worked"
        );
        assert!(ran.log.contains("criu failed"), "{name}: {}", ran.log);
        assert_no_leaks(env, "ctr");
    });
}

#[test]
fn leave_running_keeps_the_container() {
    each_runtime(|env, criu| {
        let name = env.rt.name;
        let (_b, file, _run) = running_counter(env, criu);
        let pid = pid_of(env, "ctr");
        dump(env, criu, &["--leave-running"]);
        assert_eq!(pid_of(env, "ctr"), pid, "{name}: another init");
        let now = count(&file);
        assert!(
            wait_until(SEC10, || count(&file) > now + 2),
            "{name}: stopped counting after the checkpoint"
        );
        delete_leaving_nothing(env, criu, "ctr");
    });
}

/// A foreground restore waits for the program and exits with its status,
/// then the container is gone (as after a foreground `run`).
#[test]
fn foreground_restore_exits_with_the_programs_status() {
    each_runtime(|env, criu| {
        let name = env.rt.name;
        let (b, file) = counter(env, "ctr", Some(40));
        let _run = start_counter(env, criu, &b, &file);
        let images = dump(env, criu, &[]);
        let ran = restore(env, criu, &b, &images, &[], "ctr");
        assert_eq!(
            ran.code, 7,
            "{name}: restore in the foreground: {}",
            ran.log
        );
        assert_eq!(count(&file), 40, "{name}: the program did not finish");
        assert!(env.state("ctr").is_err(), "{name}: the container is left");
        assert_no_leaks(env, "ctr");
    });
}

/// runc 1.1.5 makes a missing image directory (MkdirAll) and then fails
/// on the descriptors.json it does not hold; keel does not create it and
/// names it. Either way: an error, and nothing left.
#[test]
fn restore_from_a_missing_image_dir_fails_cleanly() {
    each_runtime(|env, criu| {
        let name = env.rt.name;
        let (b, _) = counter(env, "ctr", None);
        let images = env.dir.join("no-such-images");
        let ran = restore(env, criu, &b, &images, &["-d"], "ctr");
        assert_ne!(ran.code, 0, "{name}: restore from nothing succeeded");
        if name == "keel" {
            let missing = images.to_string_lossy();
            assert!(
                ran.log.contains(&*missing) && ran.log.contains("No such file or directory"),
                "keel: the error does not name the missing directory: {}",
                ran.log
            );
            assert!(!images.exists(), "keel made the missing image directory");
        }
        assert_no_leaks(env, "ctr");
    });
}

/// The restore roots (`criu-root`) mounted under the env's state root in
/// this mount namespace.
fn restore_roots(env: &TestEnv) -> Vec<String> {
    let root = std::fs::canonicalize(&env.root).unwrap_or_else(|_| env.root.clone());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&*root.to_string_lossy()) && m.ends_with("/criu-root"))
        .map(str::to_string)
        .collect()
}

/// Restoring under the id of a container that exists fails, and the
/// running container is untouched.
#[test]
fn restore_onto_an_existing_id_fails_cleanly() {
    each_runtime(|env, criu| {
        let name = env.rt.name;
        let (b, _file, _run) = running_counter(env, criu);
        let images = dump(env, criu, &["--leave-running"]);
        let pid = pid_of(env, "ctr");
        let ran = restore(env, criu, &b, &images, &["-d"], "ctr");
        assert_ne!(ran.code, 0, "{name}: restore onto a taken id succeeded");
        assert!(ran.log.contains("exists"), "{name}: {}", ran.log);
        assert_eq!(
            pid_of(env, "ctr"),
            pid,
            "{name}: the running container changed"
        );
        assert!(
            restore_roots(env).is_empty(),
            "{name}: a restore root is left mounted"
        );
        delete_leaving_nothing(env, criu, "ctr");
    });
}

/// A config with `linux.intelRdt` restores as it creates: the restored
/// init goes into the resctrl group as a created one would; where the
/// host has no resctrl (this VM) both fail with the same words and leave
/// nothing, in both runtimes.
#[test]
fn restore_with_intel_rdt_as_create() {
    each_runtime(|env, criu| {
        let name = env.rt.name;
        let (mut b, _file, _run) = running_counter(env, criu);
        let images = dump(env, criu, &[]);
        b.set("/linux/intelRdt", json!({"l3CacheSchema": "L3:0=1"}));
        b.save().expect("save config");
        let bundle = b.dir.to_string_lossy().into_owned();
        let created = rt(env, criu, &["create", "--bundle", &bundle, "probe"]);
        if created.code == 0 {
            // Out of the way of the restore (the same cgroup).
            rt(env, criu, &["delete", "--force", "probe"]).ok("delete probe");
        }
        let restored = restore(env, criu, &b, &images, &["-d"], "ctr");
        assert_eq!(
            restored.code == 0,
            created.code == 0,
            "{name}: create and restore differ: {} / {}",
            created.log,
            restored.log
        );
        if created.code == 0 {
            // A host with resctrl: the restored init is in its group
            // (named after the container, without a closID).
            let pid = pid_of(env, "ctr");
            let tasks = Path::new("/sys/fs/resctrl/ctr/tasks");
            let listed = std::fs::read_to_string(tasks).unwrap_or_default();
            assert!(
                listed.lines().any(|l| l.trim() == pid.to_string()),
                "{name}: the restored init is not in the resctrl group"
            );
            rt(env, criu, &["delete", "--force", "ctr"]).ok("delete");
        } else {
            // Without the "<runtime> create failed: " create's errors carry.
            let why = keel_conformance::log_msgs(&created.log);
            let why = why
                .split_once("create failed: ")
                .map_or(why.as_str(), |(_, w)| w);
            let said = keel_conformance::log_msgs(&restored.log);
            eprintln!("{name}: create and restore: {said}");
            assert!(
                !why.is_empty() && said.contains(why),
                "{name}: create said {why:?}, restore said {said:?}"
            );
        }
        assert_no_leaks(env, "probe");
        assert_no_leaks(env, "ctr");
    });
}

/// The uid and gid maps of `pid`, as the host sees them.
fn id_maps(pid: i64) -> (String, String) {
    let read = |f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap_or_default();
    (read("uid_map"), read("gid_map"))
}

/// A container in a user namespace of its own (uid/gid 0-65535 on host
/// ids from 100000): checkpointed and restored, it goes on counting, its
/// maps are the same, and inside it is still root (`id` written by the
/// restored program), its processes host uid 100000. The image directory
/// is made searchable first: CRIU reads images as the namespace's root.
#[test]
fn user_namespace_survives_restore() {
    each_runtime(|env, criu| {
        let name = env.rt.name;
        let (mut b, file) = counter(env, "ctr", None);
        b.user_namespace();
        b.sh("i=0; while true; do i=$((i+1)); echo $i > /data/count; \
              echo $(id -u):$(id -g) > /data/ids; sleep 0.1; done");
        b.save().expect("save config");
        let data = file.parent().expect("data dir");
        nix::unistd::chown(
            data,
            Some(nix::unistd::Uid::from_raw(100000)),
            Some(nix::unistd::Gid::from_raw(100000)),
        )
        .expect("chown data");
        let _run = start_counter(env, criu, &b, &file);
        let before = id_maps(pid_of(env, "ctr"));
        let dumped = count(&file);
        let images = dump(env, criu, &[]);
        assert_no_leaks(env, "ctr");
        let ids = data.join("ids");
        std::fs::remove_file(&ids).expect("remove ids");
        // CRIU opens images from inside the user namespace too, as its root
        // (host uid 100000): the image directory, made 0700 by both
        // runtimes, must let it in ("Unable to open timens-0.img:
        // Permission denied" otherwise, under runc 1.1.5 too).
        std::fs::set_permissions(&images, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .expect("chmod images");
        let _restored = restore(env, criu, &b, &images, &["-d"], "ctr").ok("restore");
        let pid = pid_of(env, "ctr");
        assert_eq!(id_maps(pid), before, "{name}: other maps after restore");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        assert!(
            status.lines().any(|l| l.starts_with("Uid:\t100000\t")),
            "{name}: the restored init's host uid: {status}"
        );
        assert!(
            wait_until(SEC10, || count(&file) > dumped + 2),
            "{name}: the restored counter does not count on from {dumped}"
        );
        let mut inside = String::new();
        wait_until(SEC10, || {
            inside = std::fs::read_to_string(&ids).unwrap_or_default();
            !inside.trim().is_empty()
        });
        assert_eq!(inside.trim(), "0:0", "{name}: ids inside after restore");
        delete_leaving_nothing(env, criu, "ctr");
    });
}

/// A CRIU that is not there: checkpoint fails naming it and the container
/// runs on; restore fails naming it and leaves nothing (state, cgroups, the
/// restore root's mount). keel only: runc 1.1.5 first runs `criu` from PATH
/// to ask its version (`checkCriuVersion`), so a missing binary fails it
/// there, in other words.
#[test]
fn a_missing_criu_is_named_and_nothing_is_left() {
    let Some(criu) = criu() else { return };
    let env = TestEnv::keel();
    let (b, file) = counter(&env, "ctr", None);
    let _run = start_counter(&env, &criu, &b, &file);
    let pid = pid_of(&env, "ctr");
    let images = dump(&env, &criu, &["--leave-running"]);
    let missing = env.dir.join("no-criu/criu");
    let ran = rt(
        &env,
        &missing,
        &[
            "checkpoint",
            "--image-path",
            &images.to_string_lossy(),
            "ctr",
        ],
    );
    assert_ne!(ran.code, 0, "checkpoint without CRIU succeeded");
    assert!(
        ran.log.contains(&*missing.to_string_lossy()) && ran.log.contains("No such file"),
        "the error does not name the missing CRIU: {}",
        ran.log
    );
    assert_eq!(pid_of(&env, "ctr"), pid, "the container changed");
    rt(&env, &criu, &["delete", "--force", "ctr"]).ok("delete");
    assert_no_leaks(&env, "ctr");

    let ran = restore(&env, &missing, &b, &images, &["-d"], "ctr");
    assert_ne!(ran.code, 0, "restore without CRIU succeeded");
    assert!(
        ran.log.contains(&*missing.to_string_lossy()),
        "the error does not name the missing CRIU: {}",
        ran.log
    );
    assert_no_leaks(&env, "ctr");
}

/// The blocks the pages images in `dir` take on disk (holes excluded).
fn page_blocks(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.blocks())
                .sum()
        })
        .unwrap_or(0)
}

/// CRIU's page figures in the `stats-dump` image of `dir`: (pages
/// written, pages skipped because the parent images hold them). The image
/// is two magic numbers, then one StatsEntry (a 32-bit length, protobuf):
/// its field 1, DumpStatsEntry, holds pages_skipped_parent (6) and
/// pages_written (7) as varints.
fn dump_stats(dir: &Path) -> Option<(u64, u64)> {
    fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*at)?;
            *at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    /// The varint and length-delimited fields of one message.
    fn fields(b: &[u8]) -> Option<Vec<(u64, u64, &[u8])>> {
        let (mut at, mut out) = (0, Vec::new());
        while at < b.len() {
            let key = varint(b, &mut at)?;
            match key & 7 {
                0 => out.push((key >> 3, varint(b, &mut at)?, &b[..0])),
                2 => {
                    let len = usize::try_from(varint(b, &mut at)?).ok()?;
                    out.push((key >> 3, 0, b.get(at..at.checked_add(len)?)?));
                    at += len;
                }
                _ => return None,
            }
        }
        Some(out)
    }
    let img = std::fs::read(dir.join("stats-dump")).ok()?;
    let len = u32::from_le_bytes(img.get(8..12)?.try_into().ok()?) as usize;
    let entry = fields(img.get(12..12 + len)?)?;
    let (_, _, dump) = entry.into_iter().find(|f| f.0 == 1)?;
    let dump = fields(dump)?;
    let get = |n| dump.iter().find(|f| f.0 == n).map_or(0, |f| f.1);
    Some((get(7), get(6)))
}

/// A pre-dump, then a dump onto it with `--parent-path`: the dump links
/// its parent and takes the unchanged pages from there (CRIU's stats say
/// so), and the restored counter goes on. Both need CRIU to track memory
/// changes (the kernel's soft-dirty bits, CONFIG_MEM_SOFT_DIRTY): where
/// the kernel lacks them, both runtimes refuse the pre-dump in runc's
/// words ("CRIU is missing features") and the container runs on untouched;
/// a dump onto a parent fails the same way. With KEEL_EXPECT_SOFT_DIRTY
/// set (the cgroup-v2 VM lane, whose kernel has the bits) a refusal fails.
#[test]
fn pre_dump_then_dump_onto_it() {
    let expect_tracking = std::env::var_os("KEEL_EXPECT_SOFT_DIRTY").is_some();
    each_runtime(|env, criu| {
        let name = env.rt.name;
        let (b, file, _run) = running_counter(env, criu);
        let pid = pid_of(env, "ctr");
        // Beside the dump's images: `--parent-path` is relative to them.
        let parent = env.dir.join("parent");
        let parent_arg = parent.to_string_lossy();
        let pre = rt(
            env,
            criu,
            &[
                "checkpoint",
                "--pre-dump",
                "--image-path",
                &parent_arg,
                "ctr",
            ],
        );
        if pre.code != 0 {
            assert!(
                !expect_tracking,
                "{name}: pre-dump failed where KEEL_EXPECT_SOFT_DIRTY says the kernel tracks memory: {}",
                pre.log
            );
            assert!(
                pre.log.contains("CRIU is missing features"),
                "{name}: pre-dump failed otherwise: {}",
                pre.log
            );
            eprintln!("{name}: no memory tracking here: pre-dump refused as expected");
            assert_eq!(pid_of(env, "ctr"), pid, "{name}: the container changed");
            let now = count(&file);
            assert!(
                wait_until(SEC10, || count(&file) > now + 2),
                "{name}: stopped counting after the refused pre-dump"
            );
            // A dump onto a parent needs the tracking too.
            let full = env.dir.join("images/full");
            let ran = rt(
                env,
                criu,
                &[
                    "checkpoint",
                    "--leave-running",
                    "--image-path",
                    &full.to_string_lossy(),
                    "ctr",
                ],
            )
            .ok("checkpoint --leave-running");
            drop(ran);
            let images = env.dir.join("images/final");
            let ran = rt(
                env,
                criu,
                &[
                    "checkpoint",
                    "--parent-path",
                    "../full",
                    "--image-path",
                    &images.to_string_lossy(),
                    "ctr",
                ],
            );
            assert_ne!(ran.code, 0, "{name}: a dump onto a parent worked untracked");
            assert_eq!(pid_of(env, "ctr"), pid, "{name}: the container changed");
            rt(env, criu, &["delete", "--force", "ctr"]).ok("delete");
            assert_no_leaks(env, "ctr");
            return;
        }
        assert_eq!(pid_of(env, "ctr"), pid, "{name}: pre-dump stopped it");
        assert!(page_blocks(&parent) > 0, "{name}: no pages pre-dumped");
        let dumped = count(&file);
        let images = dump(env, criu, &["--parent-path", "../parent"]);
        assert_eq!(
            std::fs::read_link(images.join("parent")).ok(),
            Some(PathBuf::from("../parent")),
            "{name}: the dump does not link its parent"
        );
        let (pre_written, _) = dump_stats(&parent).expect("the pre-dump's stats-dump");
        let (written, skipped) = dump_stats(&images).expect("the dump's stats-dump");
        eprintln!(
            "{name}: pre-dump wrote {pre_written} pages ({} blocks); the dump onto it \
             wrote {written} ({} blocks) and took {skipped} from the parent",
            page_blocks(&parent),
            page_blocks(&images)
        );
        assert!(
            skipped > 0,
            "{name}: the dump took no pages from its parent"
        );
        let _restored = restore(env, criu, &b, &images, &["-d"], "ctr").ok("restore");
        assert!(
            wait_until(SEC10, || count(&file) > dumped + 2),
            "{name}: the restored counter does not count"
        );
        delete_leaving_nothing(env, criu, "ctr");
    });
}

/// `--parent-path` is relative to the image path and must be a directory
/// there: runc's words otherwise, and the container runs on.
#[test]
fn parent_path_is_checked() {
    each_runtime(|env, criu| {
        let name = env.rt.name;
        let (_b, _file, _run) = running_counter(env, criu);
        let pid = pid_of(env, "ctr");
        let images = env.dir.join("images").to_string_lossy().into_owned();
        let cases = [
            ("/abs/parent", "--parent-path must be relative"),
            ("../no-such-parent", "invalid --parent-path"),
        ];
        for (parent, words) in cases {
            let ran = rt(
                env,
                criu,
                &[
                    "checkpoint",
                    "--parent-path",
                    parent,
                    "--image-path",
                    &images,
                    "ctr",
                ],
            );
            assert_ne!(ran.code, 0, "{name}: --parent-path {parent} accepted");
            assert!(ran.log.contains(words), "{name}: {}", ran.log);
            assert_eq!(pid_of(env, "ctr"), pid, "{name}: the container changed");
        }
        delete_leaving_nothing(env, criu, "ctr");
    });
}

/// `--auto-dedup` at restore punches the restored pages out of the images
/// (they take fewer blocks after); `--empty-ns network` is accepted at
/// both ends (runc never restores the network anyway); another namespace
/// is refused in runc's words.
#[test]
fn auto_dedup_and_empty_ns() {
    each_runtime(|env, criu| {
        let name = env.rt.name;
        let (b, file, _run) = running_counter(env, criu);
        let pid = pid_of(env, "ctr");
        let images = env.dir.join("images").to_string_lossy().into_owned();
        let ran = rt(
            env,
            criu,
            &[
                "checkpoint",
                "--empty-ns",
                "pid",
                "--image-path",
                &images,
                "ctr",
            ],
        );
        assert_ne!(ran.code, 0, "{name}: --empty-ns pid accepted");
        assert!(
            ran.log.contains(r#"namespace \"pid\" is not supported"#)
                || ran.log.contains(r#"namespace "pid" is not supported"#),
            "{name}: {}",
            ran.log
        );
        assert_eq!(pid_of(env, "ctr"), pid, "{name}: the container changed");

        let dumped = count(&file);
        let flags = ["--auto-dedup", "--empty-ns", "network"];
        let images = dump(env, criu, &flags);
        let before = page_blocks(&images);
        assert!(before > 0, "{name}: no pages dumped");
        let restore_flags = [&flags[..], &["-d"]].concat();
        let _restored = restore(env, criu, &b, &images, &restore_flags, "ctr").ok("restore");
        assert!(
            wait_until(SEC10, || count(&file) > dumped + 2),
            "{name}: the restored counter does not count"
        );
        let after = page_blocks(&images);
        assert!(
            after < before,
            "{name}: pages images not deduplicated ({before} blocks, {after} after)"
        );
        delete_leaving_nothing(env, criu, "ctr");
    });
}

/// A free TCP port on the loopback.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    l.local_addr().expect("local address").port()
}

/// `--page-server`: the pages go to a CRIU page server, the rest to the
/// image path; with the pages moved beside the rest, the restore goes on
/// counting. A malformed address is refused in runc's words.
#[test]
fn page_server_receives_the_pages() {
    each_runtime(|env, criu| {
        let name = env.rt.name;
        let (b, file, _run) = running_counter(env, criu);
        let images = env.dir.join("images");
        let images_arg = images.to_string_lossy().into_owned();
        let ran = rt(
            env,
            criu,
            &[
                "checkpoint",
                "--page-server",
                "nohost",
                "--image-path",
                &images_arg,
                "ctr",
            ],
        );
        assert_ne!(ran.code, 0, "{name}: --page-server nohost accepted");
        assert!(
            ran.log
                .contains("Use --page-server ADDRESS:PORT to specify page server"),
            "{name}: {}",
            ran.log
        );

        let served = env.dir.join("served");
        std::fs::create_dir_all(&served).expect("mkdir served");
        let port = free_port();
        let mut server = Command::new(criu)
            .args(["page-server", "--images-dir"])
            .arg(&served)
            .args(["--address", "127.0.0.1", "--port", &port.to_string()])
            .arg("-o")
            .arg(env.dir.join("page-server.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start criu page-server");
        // The server listens once its log says so.
        let log = env.dir.join("page-server.log");
        wait_until(SEC10, || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("Waiting for connection"))
        });
        let dumped = count(&file);
        let address = format!("127.0.0.1:{port}");
        dump(env, criu, &["--page-server", &address]);
        let code = keel_conformance::wait_timeout(&mut server, SEC10);
        assert_eq!(code, 0, "{name}: the page server failed");
        assert_eq!(page_blocks(&images), 0, "{name}: pages written locally");
        assert!(page_blocks(&served) > 0, "{name}: the server got no pages");
        for e in std::fs::read_dir(&served).expect("read served").flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("pages-") || n.starts_with("pagemap-") {
                std::fs::copy(e.path(), images.join(&n)).expect("copy pages");
            }
        }
        let _restored = restore(env, criu, &b, &images, &["-d"], "ctr").ok("restore");
        assert!(
            wait_until(SEC10, || count(&file) > dumped + 2),
            "{name}: the restored counter does not count"
        );
        delete_leaving_nothing(env, criu, "ctr");
    });
}

/// CRIU's lazy page server reads pages through a pipe of 819 pages
/// (its PIPE_MAX_SIZE); a pipe above /proc/sys/fs/pipe-max-size needs
/// CAP_SYS_RESOURCE, which this VM's bounding set lacks. Without either,
/// CRIU's `fcntl(F_SETPIPE_SZ)` fails with EPERM, its sink fd stays -1 and
/// the dump fails at the first page asked ("page-pipe: splice: -1: Bad
/// file descriptor", "Lazy pages transfer FAILED"), under any runtime.
/// The limit is raised for the test where it must be, and put back.
///
/// The machine-wide value must come back however the test binary ends
/// (a SIGKILL or a timeout runs no Drop): a watcher process restores it
/// when its stdin, a pipe only this guard writes, reaches EOF, which is
/// when the guard drops or this process dies. In a process group of its
/// own, a kill of the test's group spares it. Should the watcher die too,
/// the marker file (pid and old value) lets the next run restore the value
/// before anything else.
struct PipeMaxSize(Option<std::process::Child>);

const PIPE_MAX_SIZE: &str = "/proc/sys/fs/pipe-max-size";
/// CRIU's lazy read pipe: 819 pages of 4 KiB.
const LAZY_PIPE: u64 = 819 * 4096;
/// The capability that lets a pipe grow past pipe-max-size.
const CAP_SYS_RESOURCE: u32 = 24;

impl PipeMaxSize {
    fn marker() -> PathBuf {
        std::env::temp_dir().join("keel-conformance-pipe-max-size")
    }

    /// Puts back the value a run that died (its pid gone) left raised.
    fn restore_after_abort() {
        let marker = Self::marker();
        let Ok(text) = std::fs::read_to_string(&marker) else {
            return;
        };
        let mut words = text.split_whitespace();
        let (Some(pid), Some(old)) = (words.next(), words.next()) else {
            let _ = std::fs::remove_file(&marker);
            return;
        };
        if Path::new("/proc").join(pid).exists() {
            return;
        }
        eprintln!("{PIPE_MAX_SIZE}: back to {old}, which an aborted run (pid {pid}) left raised");
        std::fs::write(PIPE_MAX_SIZE, old).expect("restore pipe-max-size");
        let _ = std::fs::remove_file(&marker);
    }

    fn at_least(bytes: u64) -> PipeMaxSize {
        Self::restore_after_abort();
        let old = std::fs::read_to_string(PIPE_MAX_SIZE).unwrap_or_default();
        let old = old.trim();
        let cap_sys_resource = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                let hex = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
                u64::from_str_radix(hex, 16).ok()
            })
            .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0);
        if cap_sys_resource || old.parse::<u64>().is_ok_and(|n| n >= bytes) {
            return PipeMaxSize(None);
        }
        eprintln!(
            "{PIPE_MAX_SIZE}: {old} -> {bytes} for the test (no CAP_SYS_RESOURCE here: CRIU's \
             lazy page server could not size its pipe)"
        );
        assert!(old.parse::<u64>().is_ok(), "{PIPE_MAX_SIZE} reads {old:?}");
        let marker = Self::marker();
        std::fs::write(&marker, format!("{} {old}\n", std::process::id())).expect("marker");
        use std::os::unix::process::CommandExt;
        let watcher = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "cat >/dev/null; echo {old} > {PIPE_MAX_SIZE} && rm -f {}",
                marker.display()
            ))
            .stdin(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn the pipe-max-size watcher");
        let guard = PipeMaxSize(Some(watcher));
        std::fs::write(PIPE_MAX_SIZE, bytes.to_string()).expect("raise pipe-max-size");
        guard
    }
}

impl Drop for PipeMaxSize {
    fn drop(&mut self) {
        if let Some(mut watcher) = self.0.take() {
            drop(watcher.stdin.take());
            let _ = watcher.wait();
        }
    }
}

/// The runtime command with `fd` as its fd 3.
fn with_fd3(cmd: &mut Command, fd: &std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let raw = fd.as_raw_fd();
    // SAFETY: only dup2/fcntl between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let r = if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A process the test started, stopped if the test ends early: its
/// children first (CRIU under a runtime) with SIGTERM, on which CRIU lets
/// the tasks it froze go on.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let pid = self.0.id();
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(c),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Whether this kernel and CRIU can migrate lazily (userfaultfd), or why not.
fn lazy_pages_supported(criu: &Path) -> Result<(), String> {
    let out = Command::new(criu)
        .args(["check", "--feature", "uffd-noncoop"])
        .output()
        .map_err(|e| format!("run {}: {e}", criu.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Lazy migration as runc's own test does it: `checkpoint --lazy-pages
/// --page-server ADDRESS:PORT --status-fd 3` writes the images without the
/// pages, says `\0` on fd 3 once its page server is up, and waits; a `criu
/// lazy-pages` daemon connects to it; `restore --lazy-pages` (its work path
/// where the daemon's socket is) runs the container, whose pages the daemon
/// fills in as they are touched; the checkpoint ends once all were sent,
/// and the counter goes on from where it was.
#[test]
fn lazy_pages_migration_goes_on_counting() {
    let Some(criu) = criu() else { return };
    if let Err(why) = lazy_pages_supported(&criu) {
        eprintln!("SKIPPED: no lazy migration here: {why}");
        return;
    }
    let _pipes = PipeMaxSize::at_least(LAZY_PIPE);
    each_runtime(|env, criu| {
        let name = env.rt.name;
        let (mut b, file, _run) = running_counter(env, criu);
        let images = env.dir.join("images");
        std::fs::create_dir_all(&images).expect("mkdir images");
        let images_arg = images.to_string_lossy().into_owned();
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let (status_r, status_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("status pipe");
        let dumped = count(&file);
        let (mut cmd, log) = rt_command(
            env,
            criu,
            &[
                "checkpoint",
                "--lazy-pages",
                "--page-server",
                &address,
                "--status-fd",
                "3",
                "--image-path",
                &images_arg,
                "ctr",
            ],
        );
        with_fd3(&mut cmd, &status_w);
        let mut dumping = Stopped(cmd.spawn().expect("spawn checkpoint --lazy-pages"));
        drop(status_w);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut byte = [1u8];
            let n = std::fs::File::from(status_r).read(&mut byte).ok();
            let _ = tx.send((n, byte[0]));
        });
        let said = rx.recv_timeout(Duration::from_secs(30));
        let dump_log = || std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(
            said,
            Ok((Some(1), 0)),
            "{name}: no \\0 on --status-fd: {}",
            dump_log()
        );
        assert!(images.join("inventory.img").is_file(), "{name}: no images");
        // The restored container is another one while the first waits
        // for its pages to go: its own cgroup (as runc's test says).
        b.set(
            "/linux/cgroupsPath",
            json!(format!("/{}/ctr2", env.cgroup_parent)),
        );
        b.save().expect("save config");
        let mut daemon = Command::new(criu)
            .args(["lazy-pages", "--page-server", "--address", "127.0.0.1"])
            .args(["--port", &port.to_string(), "--images-dir"])
            .arg(&images)
            .arg("-o")
            .arg(env.dir.join("lazy-pages.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(Stopped)
            .expect("start criu lazy-pages");
        assert!(
            wait_until(SEC10, || images.join("lazy-pages.socket").exists()),
            "{name}: criu lazy-pages made no socket"
        );
        let _restored = restore(
            env,
            criu,
            &b,
            &images,
            &["-d", "--work-path", &images_arg, "--lazy-pages"],
            "ctr2",
        )
        .ok("restore --lazy-pages");
        let code = keel_conformance::wait_timeout(&mut dumping.0, Duration::from_secs(60));
        assert_eq!(code, 0, "{name}: checkpoint --lazy-pages: {}", dump_log());
        let code = keel_conformance::wait_timeout(&mut daemon.0, SEC10);
        assert_eq!(code, 0, "{name}: criu lazy-pages failed");
        assert!(
            env.state("ctr").is_err(),
            "{name}: the container outlived its migration"
        );
        pid_of(env, "ctr2");
        let first = count(&file);
        assert!(first >= dumped, "{name}: counts from {first}, was {dumped}");
        assert!(
            wait_until(SEC10, || count(&file) > first + 2),
            "{name}: the restored counter does not count"
        );
        rt(env, criu, &["delete", "--force", "ctr2"]).ok("delete");
        assert_no_leaks(env, "ctr");
        assert_no_leaks(env, "ctr2");
    });
}

/// `--status-fd` with `--lazy-pages` must be an open, writable fd: runc's
/// checks and words; the container is left running.
#[test]
fn lazy_pages_status_fd_is_checked() {
    let Some(criu) = criu() else { return };
    if let Err(why) = lazy_pages_supported(&criu) {
        eprintln!("SKIPPED: no lazy migration here: {why}");
        return;
    }
    each_runtime(|env, criu| {
        let name = env.rt.name;
        let (_b, _file, _run) = running_counter(env, criu);
        let images = env.dir.join("images").to_string_lossy().into_owned();
        let args = |fd| {
            [
                "checkpoint",
                "--lazy-pages",
                "--status-fd",
                fd,
                "--image-path",
                images.as_str(),
                "ctr",
            ]
        };
        let ran = rt(env, criu, &args("42"));
        assert_ne!(ran.code, 0, "{name}: a closed --status-fd accepted");
        assert!(
            ran.log
                .contains("invalid --status-fd argument 42: bad file descriptor"),
            "{name}: {}",
            ran.log
        );
        let (read_end, _write_end) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        let (mut cmd, log) = rt_command(env, criu, &args("3"));
        with_fd3(&mut cmd, &read_end);
        let code = cmd
            .status()
            .map(|s| s.code().unwrap_or(-1))
            .expect("run checkpoint");
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        assert_ne!(code, 0, "{name}: a read-only --status-fd accepted");
        assert!(
            log.contains("invalid --status-fd argument 3: not writable"),
            "{name}: {log}"
        );
        pid_of(env, "ctr");
        delete_leaving_nothing(env, criu, "ctr");
    });
}

/// `--lsm-profile` and `--lsm-mount-context` go to CRIU as runc passes
/// them. This host has no LSM: an AppArmor profile makes CRIU refuse the
/// restore (nothing left behind); a mount context applies to no mount here
/// and the restore goes on counting.
#[test]
fn restore_with_lsm_options() {
    each_runtime(|env, criu| {
        let name = env.rt.name;
        let (b, file, _run) = running_counter(env, criu);
        let dumped = count(&file);
        let images = dump(env, criu, &[]);
        let ran = restore(
            env,
            criu,
            &b,
            &images,
            &["-d", "--lsm-profile", "apparmor:keel-test"],
            "ctr",
        );
        assert_ne!(ran.code, 0, "{name}: an AppArmor profile without AppArmor");
        assert_no_leaks(env, "ctr");
        let context = "system_u:object_r:container_file_t:s0";
        let _restored = restore(
            env,
            criu,
            &b,
            &images,
            &["-d", "--lsm-mount-context", context],
            "ctr",
        )
        .ok("restore --lsm-mount-context");
        assert!(
            wait_until(SEC10, || count(&file) > dumped + 2),
            "{name}: the restored counter does not count"
        );
        delete_leaving_nothing(env, criu, "ctr");
    });
}

/// prestart and createRuntime hooks run at restore, as runc runs them
/// (when CRIU has made the namespaces), each given the restored init's pid
/// and the container's id; keel's state matches runc's field by field. A
/// failing hook fails the restore and leaves nothing.
#[test]
fn hooks_run_at_restore() {
    let seen = std::cell::RefCell::new(Vec::new());
    each_runtime(|env, criu| {
        let name = env.rt.name;
        let (mut b, _file, _run) = running_counter(env, criu);
        let images = dump(env, criu, &[]);
        let out = env.dir.join("hooks");
        std::fs::create_dir_all(&out).expect("mkdir hooks");
        let hook = |kind: &str| {
            let f = out.join(format!("{kind}.json"));
            json!({"path": "/bin/sh",
                   "args": ["sh", "-c", format!("cat > {}", f.display())]})
        };
        b.set("/hooks/prestart", json!([hook("prestart")]));
        b.set("/hooks/createRuntime", json!([hook("createRuntime")]));
        b.save().expect("save config");
        let _restored = restore(env, criu, &b, &images, &["-d"], "ctr-new").ok("restore");
        let pid = pid_of(env, "ctr-new");
        let mut states = Vec::new();
        for kind in ["prestart", "createRuntime"] {
            let text = std::fs::read_to_string(out.join(format!("{kind}.json")))
                .unwrap_or_else(|e| panic!("{name}: no {kind} hook ran: {e}"));
            let s: serde_json::Value = serde_json::from_str(&text).expect("hook state");
            assert_eq!(s["id"], "ctr-new", "{name} {kind}: {s}");
            assert_eq!(s["pid"], pid, "{name} {kind}: {s}");
            states.push((kind, s["status"].clone()));
        }
        seen.borrow_mut().push((name, states));
        rt(env, criu, &["delete", "--force", "ctr-new"]).ok("delete");
        assert_no_leaks(env, "ctr-new");

        b.set(
            "/hooks/prestart",
            json!([{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]),
        );
        b.save().expect("save config");
        let ran = restore(env, criu, &b, &images, &["-d"], "ctr-new");
        assert_ne!(ran.code, 0, "{name}: restore with a failing hook worked");
        assert!(ran.log.contains("hook #0"), "{name}: {}", ran.log);
        assert_no_leaks(env, "ctr-new");
    });
    let seen = seen.into_inner();
    eprintln!("hook states: {seen:?}");
    if let [(_, keel), (_, runc)] = &seen[..] {
        assert_eq!(keel, runc, "hook states: keel vs runc");
    }
}

/// The file of hierarchy `controller` of container `id` (v1 layout).
fn cgroup_file(env: &TestEnv, id: &str, controller: &str, file: &str) -> Option<String> {
    env.cgroup_dirs(id)
        .into_iter()
        .find(|d| {
            d.parent()
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .is_some_and(|n| n.to_string_lossy().split(',').any(|c| c == controller))
        })
        .and_then(|d| std::fs::read_to_string(d.join(file)).ok())
        .map(|s| s.trim().to_string())
}

/// The config's cgroup limits hold again after a restore (the restored
/// tree is in cgroups that have them), under a new id too.
#[test]
fn cgroup_limits_after_restore() {
    each_runtime(|env, criu| {
        let name = env.rt.name;
        let (mut b, file) = counter(env, "ctr", None);
        b.set("/linux/resources/memory/limit", json!(64 << 20));
        b.set("/linux/resources/pids/limit", json!(50));
        b.set("/linux/resources/cpu/shares", json!(512));
        b.save().expect("save config");
        let _run = start_counter(env, criu, &b, &file);
        let dumped = count(&file);
        let images = dump(env, criu, &[]);
        assert_no_leaks(env, "ctr");
        // The config names its cgroupsPath: the restored id lives there.
        let _restored = restore(env, criu, &b, &images, &["-d"], "ctr").ok("restore");
        assert!(
            wait_until(SEC10, || count(&file) > dumped + 2),
            "{name}: the restored counter does not count"
        );
        let limits = [
            ("memory", "memory.limit_in_bytes", (64u64 << 20).to_string()),
            ("pids", "pids.max", "50".to_string()),
            ("cpu", "cpu.shares", "512".to_string()),
        ];
        for (controller, f, want) in limits {
            assert_eq!(
                cgroup_file(env, "ctr", controller, f).as_deref(),
                Some(want.as_str()),
                "{name}: {f} after restore"
            );
        }
        let pid = pid_of(env, "ctr");
        let procs = cgroup_file(env, "ctr", "pids", "cgroup.procs").unwrap_or_default();
        assert!(
            procs.lines().any(|p| p == pid.to_string()),
            "{name}: the restored init is not in the limited cgroup"
        );
        delete_leaving_nothing(env, criu, "ctr");
    });
}

/// Images that CRIU cannot read (a corrupt process tree image): the
/// restore fails with CRIU's error and leaves nothing.
#[test]
fn restore_from_a_corrupt_image_dir_fails_cleanly() {
    each_runtime(|env, criu| {
        let name = env.rt.name;
        let (b, _file, _run) = running_counter(env, criu);
        let images = dump(env, criu, &[]);
        std::fs::write(images.join("pstree.img"), b"not a CRIU image").expect("corrupt");
        let ran = restore(env, criu, &b, &images, &["-d"], "ctr");
        assert_ne!(ran.code, 0, "{name}: restore from corrupt images worked");
        assert!(ran.log.contains("criu failed"), "{name}: {}", ran.log);
        if name == "keel" {
            // keel quotes CRIU's log, as runc 1.2+ does.
            assert!(
                ran.log.contains("Error"),
                "keel: no CRIU error quoted: {}",
                ran.log
            );
        }
        assert_no_leaks(env, "ctr");
        assert!(
            restore_roots(env).is_empty(),
            "{name}: a restore root is left"
        );
    });
}

/// A container with a bind mount, a tmpfs with a file in it, and masked
/// paths (a file and a directory of the rootfs): after a restore the
/// program sees the tmpfs's file again, the masked file empty and the
/// masked directory empty; the bind mount is the host's directory still.
#[test]
fn mounts_tmpfs_and_masked_paths_survive_restore() {
    each_runtime(|env, criu| {
        let name = env.rt.name;
        let (mut b, file) = counter(env, "ctr", None);
        let rootfs = b.rootfs();
        std::fs::write(rootfs.join("etc/secret"), "secret\n").expect("write secret");
        std::fs::create_dir_all(rootfs.join("secretdir")).expect("mkdir secretdir");
        std::fs::write(rootfs.join("secretdir/f"), "x").expect("write secretdir/f");
        std::fs::create_dir_all(rootfs.join("scratch")).expect("mkdir scratch");
        b.push("/linux/maskedPaths", json!("/etc/secret"));
        b.push("/linux/maskedPaths", json!("/secretdir"));
        b.push(
            "/mounts",
            json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "nodev", "size=1m"]}),
        );
        b.sh(
            "echo tmpfs-data > /scratch/f; i=0; while true; do i=$((i+1)); \
             echo \"$(cat /scratch/f) $(cat /etc/secret | wc -c) $(ls /secretdir | wc -l)\" \
             > /data/view.new; mv /data/view.new /data/view; \
             echo $i > /data/count; sleep 0.1; done",
        );
        b.save().expect("save config");
        let _run = start_counter(env, criu, &b, &file);
        let view = file.with_file_name("view");
        let dumped = count(&file);
        let images = dump(env, criu, &[]);
        std::fs::remove_file(&view).expect("remove view");
        let _restored = restore(env, criu, &b, &images, &["-d"], "ctr").ok("restore");
        assert!(
            wait_until(SEC10, || count(&file) > dumped + 2 && view.exists()),
            "{name}: the restored program does not run"
        );
        let seen = std::fs::read_to_string(&view).unwrap_or_default();
        assert_eq!(
            seen.trim(),
            "tmpfs-data 0 0",
            "{name}: the view after restore"
        );
        delete_leaving_nothing(env, criu, "ctr");
    });
}

/// A bind mount inside another's destination (`/data/inner` under the
/// bind of `data`) whose mount point is gone from the outer source by the
/// restore (a fresh copy of the data on another host, say): the restore
/// makes it in that source, binding it while it makes the mount points
/// (runc's prepareCriuRestoreMounts), and the container counts on with
/// the inner mount in place.
#[test]
fn bind_mount_inside_a_bind_mount() {
    each_runtime(|env, criu| {
        let name = env.rt.name;
        let (mut b, file) = counter(env, "ctr", None);
        let inner = b.dir.join("inner");
        std::fs::create_dir_all(&inner).expect("mkdir inner");
        std::fs::write(inner.join("mark"), "inner\n").expect("write mark");
        b.push(
            "/mounts",
            json!({"destination": "/data/inner", "type": "bind",
                   "source": inner.to_string_lossy(), "options": ["rbind", "rw"]}),
        );
        b.save().expect("save config");
        let _run = start_counter(env, criu, &b, &file);
        let dumped = count(&file);
        let images = dump(env, criu, &[]);
        let point = file.parent().expect("data dir").join("inner");
        std::fs::remove_dir(&point).expect("remove the inner mount point");
        let _restored = restore(env, criu, &b, &images, &["-d"], "ctr").ok("restore");
        let pid = pid_of(env, "ctr");
        assert!(
            wait_until(SEC10, || count(&file) > dumped + 2),
            "{name}: the restored counter does not count"
        );
        let mark = std::fs::read_to_string(format!("/proc/{pid}/root/data/inner/mark"));
        assert_eq!(
            mark.ok().as_deref(),
            Some("inner\n"),
            "{name}: the inner mount after restore"
        );
        assert!(point.is_dir(), "{name}: no mount point in the outer source");
        delete_leaving_nothing(env, criu, "ctr");
    });
}

/// keel killed with SIGKILL in the middle of a restore (a prestart hook
/// holds it there): CRIU gives up with its caller gone, and `delete
/// --force` removes what is left (state, cgroups), leaving nothing.
#[test]
fn killed_during_restore_then_delete_force_cleans_up() {
    each_runtime(|env, criu| {
        let name = env.rt.name;
        let (mut b, _file, _run) = running_counter(env, criu);
        let images = dump(env, criu, &[]);
        let mark = env.dir.join("in-hook");
        b.set(
            "/hooks/prestart",
            json!([{"path": "/bin/sh",
                    "args": ["sh", "-c", format!("touch {}; sleep 5", mark.display())]}]),
        );
        b.save().expect("save config");
        let dir = criu.parent().unwrap_or(Path::new("/"));
        let path = format!(
            "{}:{}",
            dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        // The runtime runs in a mount namespace a shell holds after it is
        // killed, so that `delete` runs where the restore root (the rootfs
        // bound in the state dir) outlives it; the shell prints its pid.
        let mut holder = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("\"$@\" & echo $!; exec sleep 60")
            .arg("sh")
            .arg(&env.rt.bin)
            .arg("--root")
            .arg(&env.root)
            .arg("--criu")
            .arg(criu)
            .args(["restore", "-d", "--image-path"])
            .arg(&images)
            .arg("--bundle")
            .arg(&b.dir)
            .arg("ctr")
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map(Stopped)
            .expect("spawn restore");
        let mut line = String::new();
        if let Some(out) = holder.0.stdout.take() {
            use std::io::BufRead;
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        let runtime: i32 = line.trim().parse().expect("the runtime's pid");
        let reached = wait_until(Duration::from_secs(30), || mark.exists());
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(runtime),
            nix::sys::signal::Signal::SIGKILL,
        );
        assert!(reached, "{name}: the restore never reached its hook");
        let ns = holder.0.id().to_string();
        let _ = Command::new("nsenter")
            .args(["-m", "-t", &ns])
            .arg(&env.rt.bin)
            .arg("--root")
            .arg(&env.root)
            .args(["delete", "--force", "ctr"])
            .output();
        let root = std::fs::canonicalize(&env.root).unwrap_or_else(|_| env.root.clone());
        let left_mounted: Vec<String> = std::fs::read_to_string(format!("/proc/{ns}/mountinfo"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&*root.to_string_lossy()))
            .map(str::to_string)
            .collect();
        drop(holder);
        let rootfs_kept = b.rootfs().join("bin/busybox").exists();
        // The hook's sleep ends on its own; what must not be left is the
        // container's. runc 1.1.5 saves no state before CRIU's
        // post-restore, so its `delete --force` finds nothing to delete
        // and the cgroups it made stay (the env's cleanup removes them).
        // runc 1.1.5's `delete --force` of a state dir without state.json
        // removes it recursively through the restore root still mounted
        // there: the bundle's rootfs is emptied (printed, not asserted).
        if name == "keel" {
            assert!(left_mounted.is_empty(), "{name}: left {left_mounted:?}");
            assert!(
                rootfs_kept,
                "{name}: delete emptied the rootfs through the restore root"
            );
            assert_no_leaks(env, "ctr");
        } else {
            let left = keel_conformance::find_leaks(env, "ctr");
            eprintln!(
                "{name} leaves after a killed restore: {left:?}, mounted {left_mounted:?}, \
                 rootfs kept: {rootfs_kept}"
            );
        }
    });
}

/// A checkpoint describes the container as it was created, not as its
/// bundle's config.json reads by then (here not a config at all), as runc
/// dumps from the config it saved.
#[test]
fn checkpoint_uses_the_config_of_create() {
    each_runtime(|env, criu| {
        let name = env.rt.name;
        let (b, file, _run) = running_counter(env, criu);
        let config = b.dir.join("config.json");
        let original = std::fs::read(&config).expect("read config");
        std::fs::write(&config, b"{}").expect("spoil config");
        let dumped = count(&file);
        let images = dump(env, criu, &[]);
        std::fs::write(&config, original).expect("restore config");
        let _restored = restore(env, criu, &b, &images, &["-d"], "ctr").ok("restore");
        assert!(
            wait_until(SEC10, || count(&file) > dumped + 2),
            "{name}: the restored counter does not count"
        );
        delete_leaving_nothing(env, criu, "ctr");
    });
}

/// A bind mount whose destination goes through a symlink of the rootfs
/// (`/datalink` -> `data`): the mount lies at /data, and the checkpoint
/// names it there to CRIU, as the runtime resolved it when it made it.
/// keel only: runc 1.1.5 names the config's destination (its
/// addCriuDumpMount), which CRIU does not find; keel did the same before
/// ("mnt: ./data doesn't have a proper root mount" at dump).
#[test]
fn bind_mount_through_a_rootfs_symlink() {
    let Some(criu) = criu() else { return };
    let env = TestEnv::keel();
    let (mut b, file) = counter(&env, "ctr", None);
    std::os::unix::fs::symlink("data", b.rootfs().join("datalink")).expect("symlink");
    let last = b.config["mounts"]
        .as_array()
        .map(|a| a.len() - 1)
        .expect("mounts");
    b.set(&format!("/mounts/{last}/destination"), json!("/datalink"));
    b.save().expect("save config");
    let _run = start_counter(&env, &criu, &b, &file);
    let dumped = count(&file);
    let images = dump(&env, &criu, &[]);
    let _restored = restore(&env, &criu, &b, &images, &["-d"], "ctr").ok("restore");
    assert!(
        wait_until(SEC10, || count(&file) > dumped + 2),
        "the restored counter does not count"
    );
    rt(&env, &criu, &["delete", "--force", "ctr"]).ok("delete");
    assert_no_leaks(&env, "ctr");
}

/// A container with a terminal: checkpointed with `--shell-job`, restored
/// with a console socket, which gets a new pty master through which the
/// program answers as before.
#[test]
fn terminal_with_shell_job_and_console_socket() {
    use keel_conformance::console::{ConsoleSocket, PtyReader};
    each_runtime(|env, criu| {
        let name = env.rt.name;
        let mut b = env.bundle("ctr");
        b.set("/process/terminal", json!(true));
        b.sh("while read l; do echo \"echo:$l\"; done");
        b.save().expect("save config");
        let bundle = b.dir.to_string_lossy().into_owned();
        let first = ConsoleSocket::new(env, "first");
        let sock = first.arg();
        let _run = rt(
            env,
            criu,
            &[
                "run",
                "-d",
                "--console-socket",
                &sock,
                "--bundle",
                &bundle,
                "ctr",
            ],
        )
        .ok("run -d --console-socket");
        let master = first.master(|| format!("{name} run"));
        let pty = PtyReader::new(&master);
        pty.write("one\n");
        pty.wait_for("echo:one", name);
        let images = dump(env, criu, &["--shell-job"]);
        drop(pty);
        drop(master);
        let second = ConsoleSocket::new(env, "second");
        let sock = second.arg();
        let _restored = restore(
            env,
            criu,
            &b,
            &images,
            &["-d", "--shell-job", "--console-socket", &sock],
            "ctr",
        )
        .ok("restore --console-socket");
        let master = second.master(|| format!("{name} restore"));
        let pty = PtyReader::new(&master);
        pty.write("two\n");
        pty.wait_for("echo:two", name);
        drop(pty);
        delete_leaving_nothing(env, criu, "ctr");
    });
}

/// A network namespace of the test's own (loopback up), held at a file
/// bind mount; unmounted on drop.
struct TestNetns(PathBuf);

impl TestNetns {
    fn new(env: &TestEnv) -> TestNetns {
        let path = env.dir.join("netns");
        std::fs::write(&path, b"").expect("netns file");
        let ok = Command::new("unshare")
            .arg(format!("--net={}", path.display()))
            .args(["ip", "link", "set", "lo", "up"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "make a network namespace at {}", path.display());
        TestNetns(path)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A TCP connection over the loopback between two processes of the
/// container, in a network namespace the test made (the config joins it
/// by path): checkpointed and restored with `--tcp-established`, the
/// connection carries on (the receiver goes on getting the count). The
/// server's stdin never ends (busybox nc quits at its end), and the nc's
/// stderr is a file (on the container's stderr pipe the client quit after
/// its first line here, not investigated further).
#[test]
fn tcp_established_connection_survives() {
    each_runtime(|env, criu| {
        let name = env.rt.name;
        let netns = TestNetns::new(env);
        let (mut b, file) = counter(env, "ctr", None);
        std::os::unix::fs::symlink("busybox", b.rootfs().join("bin/nc")).expect("nc");
        b.sh(
            "sleep 1000 | nc -l -p 5000 > /data/recv 2>/data/err & sleep 0.5; \
             i=0; while true; do i=$((i+1)); echo $i; echo $i > /data/count; sleep 0.1; done \
             | nc 127.0.0.1 5000 2>>/data/err",
        );
        let namespaces = b.config["linux"]["namespaces"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|n| {
                if n["type"] == "network" {
                    json!({"type": "network", "path": netns.0.to_string_lossy()})
                } else {
                    n
                }
            })
            .collect::<Vec<_>>();
        b.set("/linux/namespaces", json!(namespaces));
        b.save().expect("save config");
        let recv = file.with_file_name("recv");
        let last = |f: &Path| {
            std::fs::read_to_string(f)
                .ok()
                .and_then(|t| t.lines().last().and_then(|l| l.trim().parse::<u32>().ok()))
                .unwrap_or(0)
        };
        let _run = start_counter(env, criu, &b, &file);
        assert!(
            wait_until(SEC10, || last(&recv) >= 3),
            "{name}: nothing received over the connection"
        );
        let images = dump(env, criu, &["--tcp-established"]);
        let dumped = last(&recv);
        let _restored =
            restore(env, criu, &b, &images, &["-d", "--tcp-established"], "ctr").ok("restore");
        assert!(
            wait_until(SEC10, || last(&recv) > dumped + 2),
            "{name}: the connection does not carry on after restore (at {})",
            last(&recv)
        );
        rt(env, criu, &["delete", "--force", "ctr"]).ok("delete");
        drop(netns);
        assert_no_leaks(env, "ctr");
    });
}
