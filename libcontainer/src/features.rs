//! The runtime-spec features document, shared by `keel features` and the
//! shim's `-info`.

/// The runtime-spec features document: what this keel really honours.
pub fn features() -> serde_json::Value {
    let mut caps = crate::security::capabilities::known_names();
    caps.sort();
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": crate::SPEC_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": true, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": crate::security::seccomp::ACTIONS,
                "operators": crate::security::seccomp::OPERATORS,
                "archs": crate::security::seccomp::archs(),
                "knownFlags": crate::security::seccomp::KNOWN_FLAGS,
                "supportedFlags": crate::security::seccomp::supported_flags(),
            },
            // Whether keel can apply them (runc's meaning), not whether this
            // host has the LSM on.
            "apparmor": {"enabled": true},
            "selinux": {"enabled": true},
            "intelRdt": {"enabled": true, "schemata": true},
            "netDevices": {"enabled": true},
            "memoryPolicy": {
                "modes": crate::process::mempolicy::known_modes(),
                "flags": crate::process::mempolicy::known_flags(),
            },
            "mountExtensions": {"idmap": {"enabled": true}}
        },
        "annotations": {
            "io.github.keel.version": env!("CARGO_PKG_VERSION"),
            // crun's `run.oci.crun.wasm`: whether the wasm handler can run
            // here (keel's executor is where a container would look for it).
            "run.oci.keel.wasm": wasm_executor_found().to_string(),
        },
        // Config annotations that change how keel runs the container.
        "potentiallyUnsafeConfigAnnotations": [
            crate::wasm::HANDLER_ANNOTATION,
            crate::wasm::VARIANT_ANNOTATION,
        ],
    })
}

/// `features` runs before any re-execution, so its own binary's path says
/// where the executor would be looked for.
fn wasm_executor_found() -> bool {
    let own = std::env::current_exe().ok();
    crate::wasm::executor_path(own.as_deref()).is_some_and(|p| p.is_file())
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
    "idmap",
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
    "ridmap",
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
    "tmpcopyup",
    "unbindable",
];
