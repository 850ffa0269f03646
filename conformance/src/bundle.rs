//! Bundles: a busybox rootfs and a config in the shape `keel spec` writes,
//! adjusted for tests (no terminal, the test's cgroup parent, a marker).

use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Applets linked in every rootfs. Only these exist: a test that needs a
/// program outside the list can rely on it being absent.
const APPLETS: &[&str] = &[
    "sh", "cat", "ls", "id", "grep", "sleep", "true", "false", "echo", "hostname", "mount", "stat",
    "ps", "kill", "test", "[", "wc", "head", "tail", "readlink", "touch", "mkdir", "pwd", "env",
    "cut", "tr", "sed", "awk", "uname", "umount", "printf", "rm", "mknod", "chmod", "date",
    "uptime", "od", "sysctl", "nsenter", "unshare", "xargs", "sort", "tee", "ln",
];

/// The env variable every container process carries, so that a leaked
/// process can be told apart from any other on the machine.
pub const MARKER_VAR: &str = "KEEL_CONF_MARKER";

/// A bundle directory for one container id.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub id: String,
    /// config.json as it will be written by [`Bundle::save`].
    pub config: Value,
}

impl Bundle {
    /// Creates `dir` with a busybox rootfs and a default config whose
    /// cgroupsPath is `/<cgroup_parent>/<id>`.
    pub fn create(dir: &Path, id: &str, cgroup_parent: &str, marker: &str) -> Result<Bundle> {
        let rootfs = dir.join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d))
                .with_context(|| format!("mkdir {}", rootfs.join(d).display()))?;
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .context("copy /bin/busybox into the rootfs (is busybox-static installed?)")?;
        for a in APPLETS {
            let link = rootfs.join("bin").join(a);
            std::os::unix::fs::symlink("busybox", &link)
                .with_context(|| format!("symlink {}", link.display()))?;
        }
        let config = default_config(
            &format!("/{cgroup_parent}/{id}"),
            &format!("{MARKER_VAR}={marker}:{id}"),
        );
        let b = Bundle {
            dir: dir.to_path_buf(),
            id: id.to_string(),
            config,
        };
        b.save()?;
        Ok(b)
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Writes config.json.
    pub fn save(&self) -> Result<()> {
        let path = self.dir.join("config.json");
        let text = serde_json::to_string_pretty(&self.config).context("serialize config")?;
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))
    }

    /// The program: `sh -c script`.
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.config["process"]["args"] = json!(["sh", "-c", script]);
        self
    }

    /// Sets a field by JSON pointer, creating objects on the way (a number
    /// indexes an existing array element).
    pub fn set(&mut self, pointer: &str, value: Value) -> &mut Self {
        let mut cur = &mut self.config;
        for key in pointer.trim_start_matches('/').split('/') {
            let index = key
                .parse::<usize>()
                .ok()
                .filter(|&i| cur.as_array().is_some_and(|a| i < a.len()));
            if let Some(i) = index {
                cur = &mut cur[i];
                continue;
            }
            if !cur.is_object() {
                *cur = json!({});
            }
            cur = cur
                .as_object_mut()
                .map(|o| o.entry(key.to_string()).or_insert(Value::Null))
                .unwrap_or_else(|| unreachable!("made an object above"));
        }
        *cur = value;
        self
    }

    /// Removes a field by JSON pointer (no-op if absent).
    pub fn remove(&mut self, pointer: &str) -> &mut Self {
        let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
        if let Some(o) = self
            .config
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
        {
            o.remove(key);
        }
        self
    }

    /// Appends to a JSON array by pointer (creating it).
    pub fn push(&mut self, pointer: &str, value: Value) -> &mut Self {
        match self
            .config
            .pointer_mut(pointer)
            .and_then(Value::as_array_mut)
        {
            Some(a) => a.push(value),
            None => {
                self.set(pointer, json!([value]));
            }
        }
        self
    }

    /// Keeps only the namespaces of the listed types.
    pub fn namespaces(&mut self, types: &[&str]) -> &mut Self {
        let ns: Vec<Value> = types.iter().map(|t| json!({ "type": t })).collect();
        self.set("/linux/namespaces", Value::Array(ns))
    }

    /// A user namespace of its own, ids 0-65535 on host ids 100000-165535
    /// (uids and gids alike).
    pub fn user_namespace(&mut self) -> &mut Self {
        self.user_namespace_mapped(json!([{"containerID": 0, "hostID": 100000, "size": 65536}]))
    }

    /// A user namespace of its own with `maps` for uids and gids alike;
    /// without the /sys/fs/cgroup mount: a v1 cgroupfs cannot be mounted
    /// from a user namespace.
    pub fn user_namespace_mapped(&mut self, maps: Value) -> &mut Self {
        self.push("/linux/namespaces", json!({"type": "user"}));
        self.set("/linux/uidMappings", maps.clone());
        self.set("/linux/gidMappings", maps);
        self.remove_mount("/sys/fs/cgroup")
    }

    /// Drops the mount whose destination is `dest`.
    pub fn remove_mount(&mut self, dest: &str) -> &mut Self {
        if let Some(m) = self.config["mounts"].as_array_mut() {
            m.retain(|m| m["destination"] != dest);
        }
        self
    }
}

/// What `keel spec` (and runc 1.2+'s `runc spec`) write, with terminal
/// off: no ambient set, which without an inheritable one only draws
/// warnings.
fn default_config(cgroups_path: &str, marker_env: &str) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
                marker_env
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps
            },
            "rlimits": [ { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 } ],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": true },
        "hostname": "keel",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
              "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": { "devices": [ { "allow": false, "access": "rwm" } ] },
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }, { "type": "cgroup" }
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}
