//! A private Docker daemon for the engine suites (engine_docker.rs,
//! engine_swarm.rs): Debian's dockerd 20.10 with a private data root, exec
//! root, socket, pidfile and config, the runtimes under test added
//! (`--add-runtime`), in the engines' sandbox (own mount and network
//! namespace, so docker0 and its iptables rules stay there; /etc/docker is
//! a private tmpfs). The client is Debian's /usr/bin/docker, matching the
//! daemon. dockerd is stopped by pid on drop.
//!
//! Never the machine's own dockerd: its socket is not used and nothing is
//! read from or written to /var/lib/docker, /run/docker or /etc/docker.

use crate::engines::{
    busybox_tar, expect_code, kill_processes_under, make_volume, ok_out, remove_cgroup_tree,
    Outcome, Sandbox, Step, TempDir,
};
use crate::{wait_until, Output, Runtime};
use std::process::{Child, Stdio};
use std::time::Duration;

pub const IMAGE: &str = "keel-busybox:latest";
pub const DOCKER: &str = "/usr/bin/docker";
pub const T: Duration = Duration::from_secs(60);

/// The runtime's name in dockerd (`runc` is reserved for its default).
pub fn name(rt: &Runtime) -> String {
    format!("{}-test", rt.name)
}

pub struct Docker {
    daemon: Option<Child>,
    pub cgroup: String,
    // Dropped after the daemon is stopped: the sandbox, then the files.
    pub sb: Sandbox,
    pub dir: TempDir,
}

impl Docker {
    /// dockerd with `rts` added as runtimes, and `default` (one of them)
    /// as the default runtime if given.
    pub fn start(rts: &[Runtime], default: Option<&Runtime>) -> anyhow::Result<Docker> {
        let dir = TempDir::new("docker")?;
        let d = dir.0.clone();
        std::fs::write(d.join("daemon.json"), "{}\n")?;
        make_volume(&d)?;
        // A custom seccomp profile: everything but mkdir.
        std::fs::write(
            d.join("seccomp.json"),
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#,
        )?;
        let tar = busybox_tar(&d)?;
        let sb = Sandbox::new(&["/etc/docker"])?;
        let cgroup = format!(
            "keel-engines-docker-{}-{}",
            std::process::id(),
            default.map_or("", |r| r.name)
        );
        let log = std::fs::File::create(d.join("dockerd.log"))?;
        let mut cmd = sb.command("dockerd");
        cmd.arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("-H")
            .arg(format!("unix://{}/docker.sock", d.display()))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .arg("--cgroup-parent")
            .arg(format!("/{cgroup}"))
            .arg("--userland-proxy=false");
        for rt in rts {
            cmd.arg("--add-runtime")
                .arg(format!("{}={}", name(rt), rt.bin.display()));
        }
        if let Some(rt) = default {
            cmd.arg("--default-runtime").arg(name(rt));
        }
        let daemon = cmd
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let dk = Docker {
            daemon: Some(daemon),
            cgroup,
            sb,
            dir,
        };
        let stat = format!("/proc/{}/stat", dk.daemon.as_ref().map_or(0, |d| d.id()));
        let gone = || {
            std::fs::read_to_string(&stat).map_or(true, |s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
        };
        if !wait_until(Duration::from_secs(60), || {
            gone()
                || dk
                    .sh("version >/dev/null 2>&1", Duration::from_secs(10))
                    .ok()
        }) || gone()
        {
            anyhow::bail!(
                "dockerd did not come up: {}",
                std::fs::read_to_string(d.join("dockerd.log")).unwrap_or_default()
            );
        }
        let o = dk.sh(
            &format!("import -c 'CMD [\"sh\"]' {} {IMAGE}", tar.display()),
            T,
        );
        anyhow::ensure!(o.ok(), "docker import: {o}");
        Ok(dk)
    }

    /// `docker <args>` (a shell fragment) against this daemon.
    pub fn sh(&self, args: &str, timeout: Duration) -> Output {
        let d = self.dir.0.display();
        self.sb.sh(
            &format!("DOCKER_CONFIG={d}/client {DOCKER} -H unix://{d}/docker.sock {args}"),
            timeout,
        )
    }

    pub fn dk(&self, args: &str) -> Output {
        self.sh(args, T)
    }

    /// `docker run --runtime <rt> <flags> IMAGE <cmd>`.
    pub fn run(&self, rt: &Runtime, flags: &str, cmd: &str) -> Output {
        self.dk(&format!("run --runtime {} {flags} {IMAGE} {cmd}", name(rt)))
    }

    /// `run --rm --network none`: exit 0 and the stdout.
    pub fn run_out(&self, rt: &Runtime, flags: &str, cmd: &str) -> Step {
        ok_out(
            &self.run(rt, &format!("--rm --network none {flags}"), cmd),
            &format!("run {flags} {cmd}"),
        )
    }

    pub fn inspect(&self, name: &str, fmt: &str) -> Result<String, Outcome> {
        let o = self.dk(&format!("inspect --format '{fmt}' {name}"));
        Ok(ok_out(&o, "inspect")?.trim().to_string())
    }

    /// Runs `body` on a detached `sleep` container `name`, removed
    /// afterwards.
    pub fn with_ctr(
        &self,
        rt: &Runtime,
        name: &str,
        flags: &str,
        body: impl FnOnce(&str) -> Step,
    ) -> Step {
        let o = self.run(
            rt,
            &format!("-d --name {name} --network none {flags}"),
            "sleep 1000",
        );
        expect_code(&o, 0, "run -d")?;
        let r = body(name);
        let _ = self.dk(&format!("rm -f {name}"));
        r
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        let ids = self
            .dk("ps -aq")
            .stdout
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if !ids.is_empty() {
            let _ = self.dk(&format!("rm -f {ids}"));
        }
        if let Some(mut daemon) = self.daemon.take() {
            // SAFETY: kill(2) on our own child (dockerd: nsenter execs it).
            unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while matches!(daemon.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        kill_processes_under(&self.dir.0);
        remove_cgroup_tree(&self.cgroup);
    }
}
