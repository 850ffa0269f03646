//! state, list, features.

use anyhow::{bail, Result};
use libkeel::{Container, ContainerState};
use std::path::Path;

pub fn state(root: &Path, id: &str) -> Result<i32> {
    let s = Container::load(root, id)?.state();
    crate::emit(&format!("{}\n", serde_json::to_string_pretty(&s)?));
    Ok(0)
}

pub fn list(root: &Path, format: &str, quiet: bool) -> Result<i32> {
    let all = Container::list(root)?;
    if quiet {
        for c in &all {
            crate::emit(&format!("{}\n", c.id));
        }
        return Ok(0);
    }
    match format {
        "json" => crate::emit(&format!("{}\n", serde_json::to_string(&all)?)),
        "table" => crate::emit(&table(&all)),
        other => bail!("invalid format option {other:?}"),
    }
    Ok(0)
}

/// The table as runc's tabwriter lays it out (min width 12, padding 3).
fn table(all: &[ContainerState]) -> String {
    let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
        .map(String::from)
        .to_vec()];
    for c in all {
        rows.push(vec![
            c.id.clone(),
            c.pid.to_string(),
            c.status.to_string(),
            c.bundle.display().to_string(),
            c.created.clone(),
            if c.owner.is_empty() {
                "root".into()
            } else {
                c.owner.clone()
            },
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len() + 3)
                .max()
                .unwrap_or(0)
                .max(12)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            if i < 5 {
                out.push_str(&format!("{cell:<w$}", w = widths[i]));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

/// The runtime-spec features document: what this keel really honours.
pub fn features() -> Result<i32> {
    let mut caps = libkeel::security::capabilities::known_names();
    caps.sort();
    let doc = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": libkeel::SPEC_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": true, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": libkeel::security::seccomp::ACTIONS,
                "operators": libkeel::security::seccomp::OPERATORS,
                "archs": libkeel::security::seccomp::archs(),
                "knownFlags": libkeel::security::seccomp::KNOWN_FLAGS,
                "supportedFlags": libkeel::security::seccomp::supported_flags(),
            },
            // Whether keel can apply them (runc's meaning), not whether this
            // host has the LSM on.
            "apparmor": {"enabled": true},
            "selinux": {"enabled": true},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": true}}
        },
        "annotations": {
            "io.github.keel.version": env!("CARGO_PKG_VERSION"),
        }
    });
    crate::emit(&format!("{}\n", serde_json::to_string_pretty(&doc)?));
    Ok(0)
}

const MOUNT_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "unbindable",
];
