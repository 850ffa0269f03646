//! A private containerd with its CRI plugin, for the CRI suite
//! (tests/cri.rs): Debian's containerd 1.6 with its own root, state,
//! socket and config under a temp dir, in the engine suites' sandbox
//! (engines::Sandbox: a mount namespace whose /run and /var/lib/cni are
//! fresh tmpfs, so netns files, shim sockets and CNI's cache stay private,
//! and a network namespace of its own, so the CNI bridge, its iptables
//! rules and the pods' addresses never reach the host). The sandbox's
//! holder keeps the namespaces while containerd is killed and restarted.
//!
//! Three runtime handlers: `runc` (the stock runc shim with runc, the
//! reference), `keel` (keel's shim, io.containerd.keel.v2) and `keel-cli`
//! (the stock runc shim with `BinaryName` = keel). Pod networking is
//! Debian's containernetworking-plugins (bridge, host-local, portmap,
//! loopback) with a private conf dir; the images (busybox, and a pause
//! image built from conformance/helpers/pause.rs) are imported with
//! `ctr -n k8s.io images import`: no registry.
//!
//! Pods put their containers' cgroups under [`CriDaemon::cgroup_root`],
//! which [`CriDaemon::stop`] empties and removes.

use crate::cgroup_tree::{self, hierarchies};
use crate::containerd::{run, shim_dir, CtrOutput};
use crate::engines::{kill_processes_under, Sandbox};
use crate::Runtime;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The busybox image (scripts/busybox-oci.sh) and the pause image.
pub const BUSYBOX: &str = "docker.io/library/keel-busybox:latest";
pub const PAUSE: &str = "keel.test/pause:1";
/// The CNI network's subnet (inside the daemon's network namespace only).
pub const SUBNET: &str = "10.88.7.0/24";
/// The containerd namespace the CRI plugin works in.
const K8S_NS: &str = "k8s.io";
const CNI_BIN: &str = "/usr/lib/cni";

/// Why the CRI suite cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    if let Some(why) = crate::containerd::unavailable() {
        return Some(why);
    }
    for plugin in ["bridge", "host-local", "loopback", "portmap"] {
        if !Path::new(CNI_BIN).join(plugin).is_file() {
            return Some(format!(
                "{CNI_BIN}/{plugin} not found (apt-get install containernetworking-plugins)"
            ));
        }
    }
    if !crate::engines::have("iptables") {
        return Some("iptables not found (the portmap CNI plugin needs it)".into());
    }
    None
}

/// The handlers the daemon knows, runc's first: each a [`Runtime`] whose
/// name is the CRI `runtime_handler`.
pub fn handlers() -> Result<Vec<Runtime>> {
    let runc = Runtime::runc().map_err(anyhow::Error::msg)?;
    let keel = Runtime::keel();
    Ok(vec![
        runc,
        Runtime {
            name: "keel",
            bin: keel.bin.clone(),
        },
        Runtime {
            name: "keel-cli",
            bin: keel.bin,
        },
    ])
}

pub struct CriDaemon {
    pub dir: PathBuf,
    /// The CRI (and containerd) gRPC socket.
    pub socket: PathBuf,
    /// Pods' log directories go under here.
    pub logs: PathBuf,
    /// The cgroup (relative to each hierarchy) pods' parents go under.
    pub cgroup_root: String,
    /// Holds the namespaces, so containerd can be restarted in them.
    sandbox: Option<Sandbox>,
    daemon: Child,
    path: String,
}

impl CriDaemon {
    /// Writes the config, starts containerd and imports the images;
    /// `name` tells this daemon's temp dir and cgroup from others'.
    pub fn start(handlers: &[Runtime], name: &str) -> Result<CriDaemon> {
        let id = format!("{name}-{}", std::process::id());
        let dir = PathBuf::from(format!("/tmp/keel-cri-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["net.d", "ipam", "logs"] {
            std::fs::create_dir_all(dir.join(d)).with_context(|| format!("mkdir {d}"))?;
        }
        let socket = dir.join("containerd.sock");
        std::fs::write(dir.join("config.toml"), config(&dir, &socket, handlers))
            .context("write config.toml")?;
        std::fs::write(dir.join("net.d/10-keel.conflist"), cni_conf(&dir))
            .context("write the CNI conf")?;
        let path = format!(
            "{}:{}",
            shim_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        // /var/lib/cni is where libcni caches results: made (empty) on the
        // host if missing, then covered by a tmpfs in the sandbox.
        std::fs::create_dir_all("/var/lib/cni").context("mkdir /var/lib/cni")?;
        let sandbox = Sandbox::new(&["/var/lib/cni"])?;
        let daemon = spawn_containerd(&sandbox, &dir, &path)?;
        let mut d = CriDaemon {
            logs: dir.join("logs"),
            cgroup_root: format!("keel-cri-{id}"),
            socket,
            dir,
            sandbox: Some(sandbox),
            daemon,
            path,
        };
        d.wait_ready()?;
        d.import_images()?;
        Ok(d)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.ctr(&["version"]).code != 0 {
            if Instant::now() > deadline || self.daemon.try_wait().ok().flatten().is_some() {
                bail!("containerd did not come up: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Kills containerd (SIGKILL, as a crash) and starts it again in the
    /// same namespaces, with the same state: its shims live on.
    pub fn restart(&mut self) -> Result<()> {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let sandbox = self.sandbox.as_ref().context("the daemon was stopped")?;
        self.daemon = spawn_containerd(sandbox, &self.dir, &self.path)?;
        self.wait_ready()
    }

    fn import_images(&self) -> Result<()> {
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
        let busybox = self.dir.join("busybox.tar");
        let pause = self.dir.join("pause.tar");
        let rootfs = self.dir.join("pause-rootfs");
        std::fs::create_dir_all(&rootfs).context("mkdir pause-rootfs")?;
        std::fs::copy(crate::static_helper("pause")?, rootfs.join("pause"))
            .context("copy pause")?;
        let mut bb = Command::new("bash");
        bb.arg(scripts.join("busybox-oci.sh")).arg(&busybox);
        let mut pa = Command::new("bash");
        pa.arg(scripts.join("oci-image.sh"))
            .arg(&pause)
            .arg(PAUSE)
            .arg(&rootfs)
            .arg(r#"["/pause"]"#);
        for (what, cmd) in [("busybox-oci.sh", bb), ("oci-image.sh", pa)] {
            let o = run(cmd, Duration::from_secs(60));
            if o.code != 0 {
                bail!("{what}: {o:?}");
            }
        }
        for tar in [&busybox, &pause] {
            let o = self.ctr(&["images", "import", &tar.to_string_lossy()]);
            if o.code != 0 {
                bail!("ctr images import {}: {o:?}", tar.display());
            }
        }
        Ok(())
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// containerd's pid (nsenter execs containerd).
    pub fn pid(&self) -> u32 {
        self.daemon.id()
    }

    /// `program` in containerd's mount and network namespaces.
    pub fn command(&self, program: &str) -> Command {
        match &self.sandbox {
            Some(s) => s.command(program),
            None => Command::new("false"),
        }
    }

    /// `ctr -n k8s.io` on this containerd, killed after 60 s.
    pub fn ctr(&self, args: &[&str]) -> CtrOutput {
        let mut cmd = self.command("ctr");
        cmd.arg("-a")
            .arg(&self.socket)
            .args(["-n", K8S_NS])
            .args(args)
            .stdin(Stdio::null());
        run(cmd, Duration::from_secs(60))
    }

    /// The runtime v2 bundle of task `id` (options.json, config.json).
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.dir
            .join("state/io.containerd.runtime.v2.task")
            .join(K8S_NS)
            .join(id)
    }

    /// Pids of processes whose command line has `needle` as one argument
    /// (shims name their container with `-id <id>`).
    pub fn pids_with_arg(needle: &str) -> Vec<i32> {
        crate::process_cmdlines()
            .filter(|(_, cmdline)| cmdline.split(|&b| b == 0).any(|a| a == needle.as_bytes()))
            .map(|(pid, _)| pid)
            .collect()
    }

    /// Lines of containerd's mountinfo that mention `needle`.
    pub fn mounts_mentioning(&self, needle: &str) -> Vec<String> {
        std::fs::read_to_string(format!("/proc/{}/mountinfo", self.pid()))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// Cgroup directories below `parent` (relative to each hierarchy).
    pub fn cgroups_below(parent: &str) -> Vec<PathBuf> {
        hierarchies()
            .into_iter()
            .map(|r| r.join(parent.trim_start_matches('/')))
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect()
    }

    /// Kills containerd, its shims and every process in the pods'
    /// cgroups (by pid), removes the cgroups and the temp dir. The
    /// namespaces, with the mounts, go with the last of their processes.
    /// Done on drop too (a daemon that failed to set up); twice is harmless.
    pub fn stop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        kill_processes_under(&self.dir);
        self.sandbox = None;
        if let Err(left) = cgroup_tree::remove_named(&self.cgroup_root, Duration::ZERO) {
            eprintln!("LEFT BEHIND: the pods' cgroups:\n{left}");
        }
        if std::env::var_os("KEEL_CONF_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for CriDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// containerd in the sandbox's namespaces, its output appended to the log.
fn spawn_containerd(sandbox: &Sandbox, dir: &Path, path: &str) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("containerd.log"))
        .context("containerd.log")?;
    sandbox
        .command("containerd")
        .arg("-c")
        .arg(dir.join("config.toml"))
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("spawn containerd")
}

/// containerd's config: the CRI plugin with the three handlers, cgroupfs,
/// and `restrict_oom_score_adj` (this host's bounding set lacks
/// CAP_SYS_RESOURCE: without it every pause container fails to start).
fn config(dir: &Path, socket: &Path, handlers: &[Runtime]) -> String {
    let cri = "[plugins.\"io.containerd.grpc.v1.cri\"";
    let mut s = format!(
        "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
         [grpc]\n  address = \"{sock}\"\n\
         {cri}]\n  sandbox_image = \"{PAUSE}\"\n  restrict_oom_score_adj = true\n  \
         disable_apparmor = true\n  stream_server_address = \"127.0.0.1\"\n  \
         stream_server_port = \"0\"\n\
         {cri}.cni]\n  bin_dir = \"{CNI_BIN}\"\n  conf_dir = \"{d}/net.d\"\n\
         {cri}.containerd]\n  snapshotter = \"overlayfs\"\n  default_runtime_name = \"runc\"\n",
        d = dir.display(),
        sock = socket.display(),
    );
    // For profiling (bench/cri.sh): containerd's debug log, with the
    // shims' (keel's logs its create and start steps), timestamped.
    if std::env::var_os("KEEL_CRI_DEBUG").is_some() {
        s += "[debug]\n  level = \"debug\"\n";
    }
    for h in handlers {
        let table = format!("{cri}.containerd.runtimes.{}", h.name);
        match h.name {
            "keel" => s += &format!("{table}]\n  runtime_type = \"io.containerd.keel.v2\"\n"),
            _ => {
                s += &format!(
                    "{table}]\n  runtime_type = \"io.containerd.runc.v2\"\n\
                     {table}.options]\n  BinaryName = \"{}\"\n  SystemdCgroup = false\n",
                    h.bin.display()
                )
            }
        }
    }
    s
}

/// The pod network: a bridge with host-local addresses (its state in the
/// temp dir) and portmap, in containerd's network namespace.
fn cni_conf(dir: &Path) -> String {
    format!(
        r#"{{"cniVersion":"0.4.0","name":"keel-cri","plugins":[
{{"type":"bridge","bridge":"keelcri0","isGateway":true,"ipMasq":false,"hairpinMode":true,
 "ipam":{{"type":"host-local","ranges":[[{{"subnet":"{SUBNET}"}}]],"routes":[{{"dst":"0.0.0.0/0"}}],
 "dataDir":"{}/ipam"}}}},
{{"type":"portmap","capabilities":{{"portMappings":true}}}}]}}
"#,
        dir.display()
    )
}
