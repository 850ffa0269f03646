//! Rootful podman on keel: `podman --runtime <keel>` with a private
//! `--root`/`--runroot`/`--tmpdir` in a temp dir, inside the engines'
//! sandbox (own mount and network namespace). Every scenario is a test
//! that runs with runc and then keel, and keel must observe what runc does.
//! One podman storage serves the whole file (made on first use, removed at
//! exit); scenarios run in parallel, each naming its containers after
//! itself and the runtime.
//!
//! The host's hard nofile limit is below podman's default and the VM lacks
//! CAP_SYS_RESOURCE, so podman's default ulimits are lowered in a private
//! containers.conf (runc fails the same way without). Container cgroups go
//! under a parent of the test's own, removed at the end.

use keel_conformance::engines::{
    busybox_tar, expect_code, have, make_volume, ok_out, pty_answers, remove_cgroup_tree, runtimes,
    volume_round_trip, Outcome, Report, Sandbox, Step, TempDir,
};
use keel_conformance::shared::Shared;
use keel_conformance::{fail, Output, Runtime};
use std::time::Duration;

const IMAGE: &str = "localhost/keel-busybox";
const T: Duration = Duration::from_secs(60);

/// The file's podman: its storage, config and sandbox, shared by the
/// scenarios (podman locks its storage for parallel commands).
struct Podman {
    rts: Vec<Runtime>,
    sb: Sandbox,
    dir: TempDir,
    cgroup: String,
    /// A directory holding `criu` (>= 4.1), first on podman's PATH: podman
    /// checks CRIU's version itself and the runtimes run it from PATH.
    criu_dir: Option<std::path::PathBuf>,
}

impl Podman {
    fn setup() -> anyhow::Result<Podman> {
        let dir = TempDir::new("podman")?;
        std::fs::write(
            dir.0.join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )?;
        make_volume(&dir.0)?;
        let tar = busybox_tar(&dir.0)?;
        let criu_dir = match keel_conformance::criu::criu() {
            Some(c) => Some(keel_conformance::criu::path_dir(&c, &dir.0)?),
            None => None,
        };
        let p = Podman {
            rts: runtimes("podman"),
            sb: Sandbox::new(&[])?,
            cgroup: format!("keel-engines-podman-{}", std::process::id()),
            dir,
            criu_dir,
        };
        let o = p.sb.sh(
            &format!("{} import {} {IMAGE}", p.base(None), tar.display()),
            T,
        );
        anyhow::ensure!(o.ok(), "podman import: {o}");
        Ok(p)
    }

    /// The podman command line up to the subcommand.
    fn base(&self, rt: Option<&Runtime>) -> String {
        let d = self.dir.0.display();
        let path = match &self.criu_dir {
            Some(c) => format!("PATH={}:\"$PATH\" ", c.display()),
            None => String::new(),
        };
        let mut s = format!(
            "{path}CONTAINERS_CONF={d}/containers.conf podman --root {d}/root --runroot {d}/runroot \
             --tmpdir {d}/tmp --network-config-dir {d}/networks"
        );
        if let Some(rt) = rt {
            s += &format!(" --runtime {}", rt.bin.display());
        }
        s
    }

    /// `podman <args>` (a shell fragment) with `rt`.
    fn pm(&self, rt: &Runtime, args: &str) -> Output {
        self.sb.sh(&format!("{} {args}", self.base(Some(rt))), T)
    }

    /// `podman run <flags> IMAGE <cmd>` in the test's cgroup parent.
    fn run(&self, rt: &Runtime, flags: &str, cmd: &str) -> Output {
        self.pm(
            rt,
            &format!(
                "run --pull never --cgroup-parent /{} {flags} {IMAGE} {cmd}",
                self.cgroup
            ),
        )
    }

    /// `run --rm --network none`: exit 0 and the stdout.
    fn run_out(&self, rt: &Runtime, flags: &str, cmd: &str) -> Step {
        ok_out(
            &self.run(rt, &format!("--rm --network none {flags}"), cmd),
            &format!("run {flags} {cmd}"),
        )
    }

    /// A detached `sleep` container `name`.
    fn detached(&self, rt: &Runtime, name: &str, flags: &str) -> Result<(), Outcome> {
        let o = self.run(
            rt,
            &format!("-d --name {name} --network none {flags}"),
            "sleep 1000",
        );
        expect_code(&o, 0, "run -d")
    }

    fn rm(&self, rt: &Runtime, name: &str) {
        let _ = self.pm(rt, &format!("rm -f -t 0 {name}"));
    }

    fn inspect(&self, rt: &Runtime, name: &str, fmt: &str) -> Result<String, Outcome> {
        let o = self.pm(rt, &format!("inspect --format '{fmt}' {name}"));
        Ok(ok_out(&o, "inspect")?.trim().to_string())
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Containers left by a failed scenario, then the storage's mounts
        // (in the sandbox) die with it; the cgroups are ours to remove.
        let _ = self.sb.sh(
            &format!("{} rm -a -f -t 0 >/dev/null 2>&1", self.base(None)),
            T,
        );
        remove_cgroup_tree(&self.cgroup);
    }
}

/// Runs `body` on a detached container and removes it afterwards.
fn with_ctr(
    p: &Podman,
    rt: &Runtime,
    name: &str,
    flags: &str,
    body: impl FnOnce(&str) -> Step,
) -> Step {
    p.detached(rt, name, flags)?;
    let r = body(name);
    p.rm(rt, name);
    r
}

/// A counter in memory, each count written to /tmp/count.
const COUNTER: &str = "sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done'";

/// The counter's count, read in the container (0 while there is none).
fn count(p: &Podman, rt: &Runtime, name: &str) -> u32 {
    keel_conformance::read_counter(|| {
        let o = p.pm(rt, &format!("exec {name} cat /tmp/count"));
        (o.code == 0).then_some(o.stdout)
    })
}

/// A counter checkpointed (stopped) with `dump` flags and brought back
/// with `restore` flags (and its name); with `remove`, the container is
/// removed in between (an exported checkpoint makes it again). It counts
/// on from where the checkpoint took it. What is compared: the restored
/// container runs and counts on.
fn checkpoint_round_trip(
    p: &Podman,
    rt: &Runtime,
    name: &str,
    (dump, remove, restore): (&str, bool, &str),
) -> Step {
    if p.criu_dir.is_none() {
        return Err(Outcome::Skip("no CRIU >= 4.1".into()));
    }
    let r = (|| {
        let o = p.run(rt, &format!("-d --name {name} --network none"), COUNTER);
        expect_code(&o, 0, "run -d")?;
        if !keel_conformance::wait_until(Duration::from_secs(10), || count(p, rt, name) >= 3) {
            fail!("the counter never counted");
        }
        let before = count(p, rt, name);
        let o = p.pm(rt, &format!("container checkpoint {dump} {name}"));
        expect_code(&o, 0, "container checkpoint")?;
        let state = p.inspect(rt, name, "{{.State.Status}}")?;
        if remove {
            expect_code(&p.pm(rt, &format!("rm {name}")), 0, "rm")?;
        }
        let o = p.pm(rt, &format!("container restore {restore} {name}"));
        expect_code(&o, 0, "container restore")?;
        let after = count(p, rt, name);
        if after < before {
            let o = p.pm(rt, &format!("exec {name} cat /tmp/count"));
            fail!(
                "restored at {after}, checkpointed at {before}: not the same counter \
                 (exec now: {} {:?} {:?})",
                o.code,
                o.stdout,
                o.stderr
            );
        }
        if !keel_conformance::wait_until(Duration::from_secs(10), || count(p, rt, name) > after) {
            fail!("the restored counter does not count");
        }
        Ok(format!(
            "{state} after checkpoint; {} after restore, counting on",
            p.inspect(rt, name, "{{.State.Status}}")?
        ))
    })();
    p.rm(rt, name);
    r
}

/// The value of `key` in a cgroup v1 file read in the container.
fn cg(p: &Podman, rt: &Runtime, flags: &str, file: &str) -> Step {
    p.run_out(rt, flags, &format!("cat /sys/fs/cgroup/{file}"))
}

static PODMAN: Shared<Podman> = Shared::new();

/// Runs `body` as scenario `test` with each runtime (runc first), on the
/// file's podman storage; a container the scenario names is
/// `<test>-<runtime>` (`id`), and the runtime that leaves it behind fails.
fn scenario(test: &str, body: impl Fn(&Podman, &Runtime, &str) -> Step) {
    if !have("podman") || !have("conmon") {
        eprintln!(
            "SKIPPED engine_podman::{test}: podman or conmon is not installed \
             (apt-get install podman)"
        );
        return;
    }
    let p = PODMAN.get("podman", Podman::setup);
    let mut r = Report::new("podman");
    r.scenario(test, &p.rts, |rt| {
        let id = format!("{test}-{}", rt.name);
        let seen = body(&p, rt, &id);
        let names = p.pm(rt, "ps -a --format '{{.Names}}'").stdout;
        if names.lines().any(|n| n == id) {
            p.rm(rt, &id);
            if !matches!(seen, Err(Outcome::Fail(_))) {
                fail!("left container {id} behind");
            }
        }
        seen
    });
    r.finish();
}

#[test]
fn run_rm_stdout() {
    scenario("run_rm_stdout", |p, rt, _| p.run_out(rt, "", "echo hello"));
}

#[test]
fn exit_code_7() {
    scenario("exit_code_7", |p, rt, _| {
        let o = p.run(rt, "--rm --network none", "sh -c 'exit 7'");
        expect_code(&o, 7, "sh -c 'exit 7'")?;
        Ok("7".into())
    });
}

#[test]
fn not_found_127() {
    scenario("not_found_127", |p, rt, _| {
        let mut seen = String::new();
        for cmd in ["nosuchcmd", "/nosuch"] {
            let o = p.run(rt, "--rm --network none", cmd);
            expect_code(&o, 127, cmd)?;
            seen += &format!("{cmd}:{} ", o.code);
        }
        Ok(seen)
    });
}

#[test]
fn not_executable_126() {
    scenario("not_executable_126", |p, rt, _| {
        let o = p.run(rt, "--rm --network none", "/etc/passwd");
        expect_code(&o, 126, "/etc/passwd")?;
        Ok("126".into())
    });
}

#[test]
fn run_d_ps_exec_logs() {
    scenario("run_d_ps_exec_logs", |p, rt, id| {
        with_ctr(p, rt, id, "", |name| {
            let ps = ok_out(&p.pm(rt, "ps --format '{{.Names}} {{.Status}}'"), "ps")?;
            if !ps.lines().any(|l| l.starts_with(&format!("{name} Up"))) {
                fail!("ps does not show {name} up: {ps}");
            }
            let ex = ok_out(
                &p.pm(rt, &format!("exec {name} sh -c 'echo in; id -u'")),
                "exec",
            )?;
            let o = p.pm(rt, &format!("exec {name} sh -c 'exit 3'"));
            expect_code(&o, 3, "exec exit 3")?;
            Ok(ex)
        })
    });
}

#[test]
fn exec_it_pty() {
    scenario("exec_it_pty", |p, rt, id| {
        with_ctr(p, rt, id, "", |name| {
            let cmd = format!(
                "{} exec -it {name} sh -c 'tty; [ -t 0 ] && echo stdin-tty; [ -t 1 ] && echo stdout-tty'",
                p.base(Some(rt))
            );
            let o = p.sb.sh(
                &format!("script -qec \"{}\" /dev/null", cmd.replace('"', "\\\"")),
                T,
            );
            let out = ok_out(&o, "script podman exec -it")?.replace('\r', "");
            if !out.contains("/dev/pts/") || !out.contains("stdin-tty") {
                fail!("no pty in exec -it: {out:?}");
            }
            Ok(pty_answers(&out))
        })
    });
}

#[test]
fn run_it_pty() {
    scenario("run_it_pty", |p, rt, _| {
        // The init's terminal: keel's console socket to conmon. The pause
        // lets podman attach first: output of a container that is quicker
        // than the attach can be lost (podman's race, with either runtime).
        let cmd = format!(
            "{} run -it --rm --network none --cgroup-parent /{} {IMAGE} \
             sh -c 'sleep 1; tty; [ -t 0 ] && echo stdin-tty; [ -t 1 ] && echo stdout-tty; exit 5'",
            p.base(Some(rt)),
            p.cgroup
        );
        let o = p.sb.sh(
            &format!("script -qec \"{}\" /dev/null", cmd.replace('"', "\\\"")),
            T,
        );
        expect_code(&o, 5, "script podman run -it")?;
        let out = o.stdout.replace('\r', "");
        if !out.contains("/dev/pts/") || !out.contains("stdin-tty") {
            fail!("no pty in run -it: {out:?}");
        }
        Ok(pty_answers(&out))
    });
}

#[test]
fn logs_stop_sigterm() {
    scenario("logs_stop_sigterm", |p, rt, id| {
        let name = id;
        let o = p.run(
            rt,
            &format!("-d --name {name} --network none"),
            "sh -c 'trap \"echo got-term; exit 3\" TERM; echo started; \
             while :; do sleep 0.1; done'",
        );
        expect_code(&o, 0, "run -d")?;
        let r = (|| {
            std::thread::sleep(Duration::from_millis(500));
            expect_code(&p.pm(rt, &format!("stop -t 10 {name}")), 0, "stop")?;
            let code = p.inspect(rt, name, "{{.State.ExitCode}}")?;
            let logs = ok_out(&p.pm(rt, &format!("logs {name}")), "logs")?;
            Ok(format!("exit {code}; logs {logs}"))
        })();
        p.rm(rt, name);
        let seen = r?;
        if seen != "exit 3; logs started\ngot-term\n" {
            fail!("stop: {seen:?}");
        }
        Ok(seen)
    });
}

#[test]
fn kill() {
    scenario("kill", |p, rt, id| {
        with_ctr(p, rt, id, "", |name| {
            expect_code(&p.pm(rt, &format!("kill -s KILL {name}")), 0, "kill")?;
            let _ = p.pm(rt, &format!("wait {name}"));
            let s = p.inspect(rt, name, "{{.State.Status}} {{.State.ExitCode}}")?;
            if s != "exited 137" {
                fail!("after kill: {s}");
            }
            Ok(s)
        })
    });
}

#[test]
fn pause_unpause() {
    scenario("pause_unpause", |p, rt, id| {
        with_ctr(p, rt, id, "", |name| {
            expect_code(&p.pm(rt, &format!("pause {name}")), 0, "pause")?;
            let paused = p.inspect(rt, name, "{{.State.Status}}")?;
            expect_code(&p.pm(rt, &format!("unpause {name}")), 0, "unpause")?;
            let after = p.inspect(rt, name, "{{.State.Status}}")?;
            let ex = ok_out(&p.pm(rt, &format!("exec {name} echo alive")), "exec")?;
            Ok(format!("{paused} {after} {ex}"))
        })
    });
}

#[test]
fn memory() {
    scenario("memory", |p, rt, _| {
        cg(p, rt, "--memory 64m", "memory/memory.limit_in_bytes")
    });
}

#[test]
fn pids_limit() {
    scenario("pids_limit", |p, rt, _| {
        cg(p, rt, "--pids-limit 42", "pids/pids.max")
    });
}

#[test]
fn cpus() {
    scenario("cpus", |p, rt, _| {
        p.run_out(
            rt,
            "--cpus 0.5",
            "sh -c 'cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us'",
        )
    });
}

#[test]
fn read_only() {
    scenario("read_only", |p, rt, _| {
        p.run_out(
            rt,
            "--read-only",
            "sh -c 'touch /x 2>&1; touch /tmp/x && echo tmp-writable'",
        )
    });
}

#[test]
fn cap_drop_all() {
    scenario("cap_drop_all", |p, rt, _| {
        p.run_out(rt, "--cap-drop ALL", "grep Cap /proc/self/status")
    });
}

#[test]
fn user() {
    scenario("user", |p, rt, _| p.run_out(rt, "--user 1000:1000", "id"));
}

#[test]
fn network_none() {
    scenario("network_none", |p, rt, _| {
        p.run_out(rt, "", "ls /sys/class/net")
    });
}

#[test]
fn volume() {
    scenario("volume", |p, rt, _| {
        volume_round_trip(&p.dir.0, rt, |flags, cmd| p.run_out(rt, flags, cmd))
    });
}

#[test]
fn tmpfs_copied_up() {
    scenario("tmpfs_copied_up", |p, rt, _| {
        // Podman orders mounts of the same depth at random. The tmpfs over
        // the image's /www takes that directory's mode as a `mode=` option
        // (runc 1.2+; keel), where runc 1.1.5 chmods it afterwards.
        let sorted = |s: String| {
            let s = s.replace(",mode=755 ", " ");
            let mut v: Vec<&str> = s.lines().collect();
            v.sort();
            v.join("\n")
        };
        p.run_out(
            rt,
            "--tmpfs /scratch:size=1m,mode=1777 --tmpfs /www",
            "sh -c 'grep -E \" /(scratch|www) \" /proc/mounts; stat -c %a /scratch; \
             cat /www/index.html'",
        )
        .map(sorted)
    });
}

#[test]
fn hostname_env() {
    scenario("hostname_env", |p, rt, _| {
        p.run_out(
            rt,
            "--hostname kh -e FOO=bar",
            "sh -c 'hostname; echo $FOO; cat /etc/hostname'",
        )
    });
}

#[test]
fn init() {
    scenario("init", |p, rt, _| {
        if !have("catatonit") {
            return Err(Outcome::Skip("catatonit is not installed".into()));
        }
        p.run_out(
            rt,
            "--init",
            "sh -c 'cat /proc/1/cmdline | tr \"\\0\" \" \"; echo'",
        )
        .map(|s| s.replace("/dev/init", "init"))
    });
}

#[test]
fn top() {
    scenario("top", |p, rt, id| {
        with_ctr(p, rt, id, "", |name| {
            let o = ok_out(&p.pm(rt, &format!("top {name} pid args")), "top")?;
            if !o.contains("sleep 1000") {
                fail!("top does not show the process: {o}");
            }
            Ok(o.lines().skip(1).collect::<Vec<_>>().join("\n"))
        })
    });
}

#[test]
fn stats_no_stream() {
    scenario("stats_no_stream", |p, rt, id| {
        with_ctr(p, rt, id, "--memory 64m", |name| {
            let o = ok_out(
                &p.pm(
                    rt,
                    &format!("stats --no-stream --format '{{{{.Name}}}} {{{{.MemUsage}}}}' {name}"),
                ),
                "stats",
            )?;
            if !o.starts_with(name) || !o.contains("/ 67.11MB") {
                fail!("stats: {o}");
            }
            Err(Outcome::Uncompared(o.trim().to_string()))
        })
    });
}

#[test]
fn inspect() {
    scenario("inspect", |p, rt, id| {
        with_ctr(p, rt, id, "", |name| {
            let s = p.inspect(
                rt,
                name,
                "{{.State.Status}} {{.State.Running}} {{.OCIRuntime}} {{if gt .State.Pid 0}}pid{{end}}",
            )?;
            Ok(s.replace(&rt.bin.display().to_string(), "RUNTIME"))
        })
    });
}

#[test]
fn update() {
    scenario("update", |p, rt, id| {
        with_ctr(p, rt, id, "--memory 64m", |name| {
            expect_code(
                &p.pm(
                    rt,
                    &format!("update --memory 128m --cpu-quota 30000 {name}"),
                ),
                0,
                "update",
            )?;
            ok_out(
                &p.pm(
                    rt,
                    &format!(
                        "exec {name} cat /sys/fs/cgroup/memory/memory.limit_in_bytes \
                         /sys/fs/cgroup/cpu/cpu.cfs_quota_us"
                    ),
                ),
                "exec cat",
            )
        })
    });
}

#[test]
fn bridge_published_port() {
    scenario("bridge_published_port", bridge);
}

#[test]
fn checkpoint_restore() {
    scenario("checkpoint_restore", |p, rt, id| {
        checkpoint_round_trip(p, rt, id, ("", false, ""))
    });
}

#[test]
fn checkpoint_export_import() {
    scenario("checkpoint_export_import", |p, rt, id| {
        let tar = p.dir.0.join(format!("cp-{}.tar.gz", rt.name));
        let tar = tar.display();
        checkpoint_round_trip(
            p,
            rt,
            id,
            (
                &format!("--export {tar}"),
                true,
                &format!("--import {tar} --name"),
            ),
        )
    });
}

/// A bridge network (netavark, in the sandbox's network namespace) with a
/// port published on 127.0.0.1, fetched from the sandbox.
fn bridge(p: &Podman, rt: &Runtime, name: &str) -> Step {
    if !std::path::Path::new("/usr/lib/podman/netavark").is_file() || !have("iptables") {
        return Err(Outcome::Skip(
            "netavark (/usr/lib/podman/netavark) or iptables is not installed".into(),
        ));
    }
    let port = if rt.name == "runc" { 18081 } else { 18082 };
    let o = p.run(
        rt,
        &format!("-d --name {name} -p 127.0.0.1:{port}:80"),
        "httpd -f -p 80 -h /www",
    );
    expect_code(&o, 0, "run -d -p")?;
    let mut got = String::new();
    for _ in 0..50 {
        let o = p.sb.sh(
            &format!("busybox wget -q -O - http://127.0.0.1:{port}/index.html"),
            Duration::from_secs(5),
        );
        let done = o.ok();
        got = o.stdout;
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    p.rm(rt, name);
    if got != "keel-served\n" {
        fail!("fetching the published port gave {got:?}");
    }
    Ok(got)
}
