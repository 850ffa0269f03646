//! Reading and validating a bundle's config.json, once, in the parent.
//!
//! Parsing is lenient where runc is lenient (any 1.x `ociVersion`,
//! capabilities this kernel lacks are dropped with a warning) and strict
//! where runc is strict (its `configs/validate` rules), so engines see the same verdicts.

use crate::error::{Error, Result};
use oci_spec::runtime::{Capability, LinuxNamespaceType, LinuxResources, Process, Spec};
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A bundle whose config has been parsed and validated.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Absolute path of the bundle directory.
    pub path: PathBuf,
    /// The parsed config.
    pub spec: Spec,
    /// Absolute, canonical path of the root filesystem.
    pub rootfs: PathBuf,
    /// Things runc would warn about (unknown capabilities, …).
    pub warnings: Vec<String>,
}

impl Bundle {
    /// Reads `<dir>/config.json`, parses and validates it.
    pub fn load(dir: &Path) -> Result<Bundle> {
        let path = std::path::absolute(dir)
            .map_err(|e| Error::io(format!("bundle {}", dir.display()), e))?;
        let config = path.join("config.json");
        let text = read_config(dir, &config)?;
        let (spec, warnings) = parse_config(&text).map_err(|reason| Error::Config {
            path: config.clone(),
            reason,
        })?;
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| Error::invalid("root", "root must be set"))?;
        let rootfs = path.join(root.path());
        let rootfs = std::fs::canonicalize(&rootfs).map_err(|e| {
            Error::BundleUnreadable(format!(
                "invalid rootfs: stat {}: {}",
                rootfs.display(),
                crate::error::go_text(&e)
            ))
        })?;
        if !rootfs.is_dir() {
            return Err(Error::invalid(
                "root.path",
                format!("{}: not a directory", rootfs.display()),
            ));
        }
        validate(&spec)?;
        let mut warnings = warnings;
        warn_unusable(&spec, &mut warnings);
        Ok(Bundle {
            path,
            spec,
            rootfs,
            warnings,
        })
    }
}

/// config.json's bytes; failures in runc's words (runc chdirs into the
/// bundle, then loadSpec opens and decodes "config.json").
fn read_config(dir: &Path, config: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let go = crate::error::go_text;
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            let e = std::io::Error::from_raw_os_error(libc::ENOTDIR);
            return Err(Error::BundleUnreadable(format!(
                "chdir {}: {}",
                dir.display(),
                go(&e)
            )));
        }
        Err(e) => {
            return Err(Error::BundleUnreadable(format!(
                "chdir {}: {}",
                dir.display(),
                go(&e)
            )))
        }
    }
    let mut file = std::fs::File::open(config).map_err(|e| {
        Error::BundleUnreadable(match e.kind() {
            std::io::ErrorKind::NotFound => {
                "JSON specification file config.json not found".to_string()
            }
            _ => format!("open config.json: {}", go(&e)),
        })
    })?;
    let mut text = Vec::new();
    file.read_to_end(&mut text)
        .map_err(|e| Error::BundleUnreadable(format!("read config.json: {}", go(&e))))?;
    Ok(text)
}

/// Parses config.json text. Returns the spec and warnings, or a reason naming
/// the offending field.
///
/// ```
/// let (spec, _warnings) = libkeel::spec::parse_config(
///     br#"{"ociVersion": "1.2.0", "root": {"path": "rootfs"},
///          "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}}}"#,
/// )?;
/// assert_eq!(spec.root().as_ref().map(|r| r.path().clone()), Some("rootfs".into()));
/// let bad = libkeel::spec::parse_config(br#"{"ociVersion": "1.2.0", "process": {"args": 1}}"#);
/// assert!(bad.unwrap_err().contains("process.args"));
/// # Ok::<(), String>(())
/// ```
pub fn parse_config(text: &[u8]) -> std::result::Result<(Spec, Vec<String>), String> {
    let mut value: Value =
        serde_json::from_slice(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let mut warnings = Vec::new();
    match value.get("ociVersion").and_then(Value::as_str) {
        Some(v) if v.starts_with("1.") || v == "1" => {}
        Some(v) => {
            return Err(format!(
                "ociVersion: unsupported version {v:?} (keel runs 1.x)"
            ))
        }
        None => return Err("ociVersion: missing".into()),
    }
    if let Some(process) = value.get_mut("process") {
        normalize_process(process, "process", &mut warnings)?;
    }
    if let Some(r) = value.pointer_mut("/linux/resources") {
        without_empty_pids(r);
    }
    crate::security::seccomp::check_names(&value)?;
    crate::process::mempolicy::check_names(&value)?;
    Ok((deserialize(value)?, warnings))
}

/// A process JSON on its own (`exec --process`, the shim's exec spec),
/// read with the same rules as the config's `process`, and as runc decodes
/// it into Go's zero values: a missing `user` is uid 0, gid 0 (a missing
/// `cwd` is refused by [`validate_process`], not here).
pub fn parse_process(text: &[u8]) -> std::result::Result<(Process, Vec<String>), String> {
    let mut value: Value =
        serde_json::from_slice(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let mut warnings = Vec::new();
    normalize_process(&mut value, "process", &mut warnings)?;
    if let Some(p) = value.as_object_mut() {
        p.entry("user")
            .or_insert_with(|| serde_json::json!({"uid": 0, "gid": 0}));
        p.entry("cwd")
            .or_insert_with(|| Value::String(String::new()));
    }
    Ok((deserialize(value)?, warnings))
}

/// A `linux.resources` document (`update --resources`), read as the
/// config's is.
///
/// ```
/// let r = libkeel::spec::parse_resources(r#"{"memory": {"limit": 67108864}}"#)?;
/// assert_eq!(r.memory().as_ref().and_then(|m| m.limit()), Some(64 << 20));
/// # Ok::<(), String>(())
/// ```
pub fn parse_resources(text: &str) -> std::result::Result<LinuxResources, String> {
    let mut value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    without_empty_pids(&mut value);
    deserialize(value)
}

/// runtime-spec 1.3: `pids.limit` is optional and 0 is a limit (runc
/// 1.3+). oci-spec reads a missing limit as 0, so a `pids` without one
/// goes before the typed parse: it sets nothing, as under runc.
fn without_empty_pids(resources: &mut Value) {
    if let Some(r) = resources.as_object_mut() {
        if r.get("pids")
            .is_some_and(|p| p.get("limit").is_none_or(Value::is_null))
        {
            r.remove("pids");
        }
    }
}

/// oci-spec's type from checked JSON; an error names the field.
fn deserialize<T: serde::de::DeserializeOwned>(value: Value) -> std::result::Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        format!("{path}: {}", e.into_inner())
    })
}

/// What oci-spec would read differently from the runtime-spec, fixed in
/// the JSON before it is deserialized: capability names (checked against
/// this kernel) and scheduler flag names.
fn normalize_process(
    process: &mut Value,
    field: &str,
    warnings: &mut Vec<String>,
) -> std::result::Result<(), String> {
    if let Some(caps) = process.get_mut("capabilities") {
        let supported = kernel_capabilities();
        warnings.extend(check_capabilities(
            caps,
            &format!("{field}.capabilities"),
            |c| supported.contains(c),
        )?);
    }
    if let Some(flags) = process.pointer_mut("/scheduler/flags") {
        scheduler_flags(flags, &format!("{field}.scheduler.flags"))?;
    }
    Ok(())
}

/// The capabilities the running kernel has (all keel knows when it cannot
/// tell), read once.
fn kernel_capabilities() -> &'static caps::CapsHashSet {
    static SUPPORTED: std::sync::OnceLock<caps::CapsHashSet> = std::sync::OnceLock::new();
    SUPPORTED
        .get_or_init(|| caps::runtime::procfs_all_supported(None).unwrap_or_else(|_| caps::all()))
}

/// A name that is no capability at all is an error (runtime-spec: a value
/// that cannot be mapped to a kernel interface); a capability this kernel
/// lacks is dropped, with runc's warning (its `capabilities.New`).
fn check_capabilities(
    caps: &mut Value,
    field: &str,
    supported: impl Fn(&caps::Capability) -> bool,
) -> std::result::Result<Option<String>, String> {
    let Some(sets) = caps.as_object_mut() else {
        return Ok(None);
    };
    let mut unavailable = std::collections::BTreeSet::new();
    for (set, names) in sets.iter_mut() {
        let Some(list) = names.as_array_mut() else {
            continue;
        };
        for (i, name) in list.iter().enumerate() {
            let known = serde_json::from_value::<Capability>(name.clone()).is_ok();
            match name.as_str().map(str::parse::<caps::Capability>) {
                Some(Ok(c)) if known => {
                    if !supported(&c) {
                        unavailable.insert(c.to_string());
                    }
                }
                _ => return Err(format!("{field}.{set}[{i}]: unknown capability {name}")),
            }
        }
        list.retain(|n| !n.as_str().is_some_and(|n| unavailable.contains(n)));
    }
    Ok((!unavailable.is_empty()).then(|| {
        let names: Vec<String> = unavailable.into_iter().collect();
        format!(
            "ignoring unknown or unavailable capabilities: [{}]",
            names.join(" ")
        )
    }))
}

/// The runtime-spec's scheduler flag names (`SCHED_FLAG_RESET_ON_FORK`,
/// ...) rewritten to the names oci-spec reads; anything else is refused.
fn scheduler_flags(flags: &mut Value, field: &str) -> std::result::Result<(), String> {
    const NAMES: [(&str, &str); 7] = [
        ("SCHED_FLAG_RESET_ON_FORK", "SCHED_RESET_ON_FORK"),
        ("SCHED_FLAG_RECLAIM", "SCHED_FLAG_RECLAIM"),
        ("SCHED_FLAG_DL_OVERRUN", "SCHED_FLAG_D_L_OVERRUN"),
        ("SCHED_FLAG_KEEP_POLICY", "SCHED_FLAG_KEEP_POLICY"),
        ("SCHED_FLAG_KEEP_PARAMS", "SCHED_FLAG_KEEP_PARAMS"),
        ("SCHED_FLAG_UTIL_CLAMP_MIN", "SCHED_FLAG_UTIL_CLAMP_MIN"),
        ("SCHED_FLAG_UTIL_CLAMP_MAX", "SCHED_FLAG_UTIL_CLAMP_MAX"),
    ];
    let Some(list) = flags.as_array_mut() else {
        return Ok(());
    };
    for (i, flag) in list.iter_mut().enumerate() {
        let ours = flag
            .as_str()
            .and_then(|f| NAMES.iter().find(|(spec, _)| *spec == f))
            .map(|(_, ours)| *ours)
            .ok_or_else(|| format!("{field}[{i}]: unknown scheduler flag {flag}"))?;
        *flag = Value::String(ours.into());
    }
    Ok(())
}

/// The checks on a process (the config's, or one given to `exec`).
pub fn validate_process(process: &oci_spec::runtime::Process) -> Result<()> {
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::invalid("process.args", "args must not be empty"));
    }
    if process.cwd().as_os_str().is_empty() {
        return Err(Error::invalid(
            "process.cwd",
            "Cwd property must not be empty",
        ));
    }
    if !process.cwd().is_absolute() {
        return Err(Error::invalid(
            "process.cwd",
            format!("{:?} is not an absolute path", process.cwd()),
        ));
    }
    crate::security::lsm::check(process)
}

/// The checks of runc's `configs/validate`, with the field they concern.
pub fn validate(spec: &Spec) -> Result<()> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::invalid("process", "process must be set"))?;
    validate_process(process)?;
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::invalid("linux", "linux must be set"))?;

    let mut seen = HashSet::new();
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        if !seen.insert(ns.typ()) {
            return Err(Error::invalid(
                format!("linux.namespaces[{i}]"),
                format!("duplicate namespace type {}", ns.typ()),
            ));
        }
        // An empty path is a new namespace (runc).
        if let Some(p) = ns.path().as_ref().filter(|p| !p.as_os_str().is_empty()) {
            if !p.is_absolute() {
                return Err(Error::invalid(
                    format!("linux.namespaces[{i}].path"),
                    format!("{} is not an absolute path", p.display()),
                ));
            }
        }
    }
    let has = |t| seen.contains(&t);
    let restricts = linux.masked_paths().as_ref().is_some_and(|p| !p.is_empty())
        || linux
            .readonly_paths()
            .as_ref()
            .is_some_and(|p| !p.is_empty());
    if restricts && !has(LinuxNamespaceType::Mount) {
        return Err(Error::invalid(
            "linux.maskedPaths",
            "unable to restrict sys entries without a private MNT namespace",
        ));
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(Error::invalid(
            "hostname",
            "unable to set hostname without a private UTS namespace",
        ));
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(Error::invalid(
            "domainname",
            "unable to set domainname without a private UTS namespace",
        ));
    }
    let new_userns = linux.namespaces().iter().flatten().any(|n| {
        n.typ() == LinuxNamespaceType::User
            && n.path().as_ref().is_none_or(|p| p.as_os_str().is_empty())
    });
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if has_maps && !has(LinuxNamespaceType::User) {
        return Err(Error::invalid(
            "linux.uidMappings",
            "user namespace mappings given, but no user namespace requested",
        ));
    }
    if new_userns
        && (linux.uid_mappings().as_ref().is_none_or(|m| m.is_empty())
            || linux.gid_mappings().as_ref().is_none_or(|m| m.is_empty()))
    {
        return Err(Error::invalid(
            "linux.uidMappings",
            "user namespace enabled, but no uid or gid mappings found",
        ));
    }
    if linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty()) {
        if !has(LinuxNamespaceType::Time) {
            return Err(Error::invalid(
                "linux.timeOffsets",
                "time offsets given, but no time namespace requested",
            ));
        }
        for key in linux.time_offsets().iter().flatten().map(|(k, _)| k) {
            if key != "monotonic" && key != "boottime" {
                return Err(Error::invalid(
                    format!("linux.timeOffsets.{key}"),
                    "only monotonic and boottime clocks can be offset",
                ));
            }
        }
    }
    for key in linux.sysctl().iter().flatten().map(|(k, _)| k) {
        validate_sysctl(key, &seen)?;
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if m.destination().as_os_str().is_empty() {
            return Err(Error::invalid(format!("mounts[{i}].destination"), "empty"));
        }
    }
    Ok(())
}

/// Fields this host cannot honour and that are ignored with a warning.
fn warn_unusable(spec: &Spec, warnings: &mut Vec<String>) {
    if let Some(l) = spec.linux() {
        if l.mount_label().as_ref().is_some_and(|m| !m.is_empty())
            && !crate::security::lsm::selinux_enabled()
        {
            // As crun: nothing to label with, so nothing is labelled (runc
            // passes it on and fails at the first labelled mount; the
            // runtime-spec's validation expects the container to run).
            warnings.push(
                "linux.mountLabel: selinux is disabled or not supported on this host: the \
                 mount label is ignored"
                    .into(),
            );
        }
    }
}

/// runc only lets a container set sysctls that live in one of its own
/// namespaces: anything else would change the host.
fn validate_sysctl(key: &str, ns: &HashSet<LinuxNamespaceType>) -> Result<()> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let field = format!("linux.sysctl.{key}");
    let need = |t: LinuxNamespaceType, what: &str| {
        if ns.contains(&t) {
            Ok(())
        } else {
            Err(Error::invalid(
                field.clone(),
                format!("sysctl {key:?} requires a private {what} namespace"),
            ))
        }
    };
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        return need(LinuxNamespaceType::Ipc, "IPC");
    }
    if key.starts_with("net.") {
        return need(LinuxNamespaceType::Network, "network");
    }
    if key == "kernel.hostname" || key == "kernel.domainname" {
        return need(LinuxNamespaceType::Uts, "UTS");
    }
    if key.starts_with("user.") {
        return need(LinuxNamespaceType::User, "user");
    }
    Err(Error::invalid(
        field,
        format!("sysctl {key:?} is not in a separate kernel namespace"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal(extra: &str) -> String {
        format!(
            r#"{{"ociVersion":"1.2.0","root":{{"path":"rootfs"}},"process":{{"args":["sh"],"cwd":"/","user":{{"uid":0,"gid":0}}}},"linux":{{"namespaces":[{{"type":"pid"}},{{"type":"mount"}}]}}{extra}}}"#
        )
    }

    /// runc reads a process JSON into Go's zero values: no `user` is root.
    #[test]
    fn process_without_user_is_root() {
        let p = parse_process(br#"{"args":["id"],"cwd":"/"}"#).unwrap().0;
        assert_eq!((p.user().uid(), p.user().gid()), (0, 0));
        let p = parse_process(br#"{"args":["id"],"cwd":"/","user":{"uid":7,"gid":8}}"#)
            .unwrap()
            .0;
        assert_eq!((p.user().uid(), p.user().gid()), (7, 8));
        let p = parse_process(br#"{"args":["id"]}"#).unwrap().0;
        let e = validate_process(&p).unwrap_err().to_string();
        assert_eq!(e, "process.cwd: Cwd property must not be empty");
        assert!(parse_process(br#"{"args":"id"}"#)
            .unwrap_err()
            .starts_with("args:"));
    }

    /// oci-spec's check of `process.execCPUAffinity` (done by hand in the
    /// vendored copy, without `regex`): CPU numbers and ranges only.
    #[test]
    fn exec_cpu_affinity_is_a_cpu_list() {
        let with = |list: &str| {
            minimal("").replace(
                r#""cwd":"/""#,
                &format!(r#""cwd":"/","execCPUAffinity":{{"initial":"{list}","final":"1"}}"#),
            )
        };
        for good in ["0", "0-3,7", "10-11,2,4-4"] {
            let (spec, _) = parse_config(with(good).as_bytes()).unwrap();
            let a = spec.process().as_ref().unwrap().exec_cpu_affinity().clone();
            assert_eq!(a.unwrap().initial().as_deref(), Some(good));
        }
        for bad in ["", "-", "0-3,i", ",1,2", "1,", "1-2-3", "0 - 3", "+1"] {
            let e = parse_config(with(bad).as_bytes()).unwrap_err();
            assert_eq!(
                e,
                format!("process.execCPUAffinity.initial: Invalid execCPUAffinity format: {bad}")
            );
        }
    }

    #[test]
    fn accepts_any_1x_version() {
        let text = minimal("").replace("1.2.0", "1.9.7");
        assert!(parse_config(text.as_bytes()).is_ok());
        let text = minimal("").replace("1.2.0", "2.0.0");
        assert!(parse_config(text.as_bytes())
            .unwrap_err()
            .contains("ociVersion"));
    }

    #[test]
    fn unknown_capability_name_is_an_error() {
        let text = minimal("").replace(
            r#""cwd":"/""#,
            r#""cwd":"/","capabilities":{"bounding":["CAP_CHOWN","CAP_NOT_A_CAP"]}"#,
        );
        let err = parse_config(text.as_bytes()).unwrap_err();
        assert_eq!(
            err,
            r#"process.capabilities.bounding[1]: unknown capability "CAP_NOT_A_CAP""#
        );
    }

    #[test]
    fn capability_the_kernel_lacks_is_dropped_with_runcs_warning() {
        let mut caps = serde_json::json!({
            "bounding": ["CAP_CHOWN", "CAP_CHECKPOINT_RESTORE", "CAP_BPF"],
            "effective": ["CAP_BPF"],
        });
        // A kernel whose last capability is CAP_AUDIT_READ (37).
        let old_kernel = |c: &caps::Capability| c.index() <= 37;
        let warning = check_capabilities(&mut caps, "process.capabilities", old_kernel);
        assert_eq!(
            warning,
            Ok(Some(
                "ignoring unknown or unavailable capabilities: [CAP_BPF CAP_CHECKPOINT_RESTORE]"
                    .into()
            ))
        );
        assert_eq!(
            caps,
            serde_json::json!({"bounding": ["CAP_CHOWN"], "effective": []})
        );
        let mut all = serde_json::json!({"ambient": ["CAP_BPF"]});
        assert_eq!(check_capabilities(&mut all, "f", |_| true), Ok(None));
    }

    #[test]
    fn scheduler_flags_use_the_runtime_spec_names() {
        let text = minimal("").replace(
            r#""cwd":"/""#,
            r#""cwd":"/","scheduler":{"policy":"SCHED_OTHER","flags":["SCHED_FLAG_RESET_ON_FORK","SCHED_FLAG_DL_OVERRUN","SCHED_FLAG_UTIL_CLAMP_MAX"]}"#,
        );
        let (spec, _) = parse_config(text.as_bytes()).unwrap();
        use oci_spec::runtime::LinuxSchedulerFlag as F;
        let flags = spec
            .process()
            .as_ref()
            .unwrap()
            .scheduler()
            .as_ref()
            .unwrap()
            .flags();
        assert_eq!(
            flags.as_deref(),
            Some(
                &[
                    F::SchedResetOnFork,
                    F::SchedFlagDLOverrun,
                    F::SchedFlagUtilClampMax
                ][..]
            )
        );
        // oci-spec's own spelling is not the runtime-spec's.
        let text = text.replace("SCHED_FLAG_RESET_ON_FORK", "SCHED_RESET_ON_FORK");
        let err = parse_config(text.as_bytes()).unwrap_err();
        assert_eq!(
            err,
            r#"process.scheduler.flags[0]: unknown scheduler flag "SCHED_RESET_ON_FORK""#
        );
    }

    #[test]
    fn process_json_gets_the_same_rules() {
        let text = r#"{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0},
            "scheduler":{"policy":"SCHED_BATCH","flags":["SCHED_FLAG_KEEP_POLICY"]},
            "capabilities":{"bounding":["CAP_KILL"]}}"#;
        let (p, warnings) = parse_process(text.as_bytes()).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(
            p.scheduler()
                .as_ref()
                .unwrap()
                .flags()
                .as_ref()
                .unwrap()
                .len(),
            1
        );
        let bad = text.replace("CAP_KILL", "CAP_KILLER");
        assert!(parse_process(bad.as_bytes())
            .unwrap_err()
            .starts_with("process.capabilities.bounding[0]"));
    }

    #[test]
    fn unknown_namespace_names_the_field() {
        let text = minimal("").replace(r#"{"type":"mount"}"#, r#"{"type":"bogus"}"#);
        let err = parse_config(text.as_bytes()).unwrap_err();
        assert!(err.contains("linux.namespaces[1].type"), "{err}");
    }

    #[test]
    fn hostname_needs_uts() {
        let (spec, _) = parse_config(minimal(r#","hostname":"x""#).as_bytes()).unwrap();
        assert!(validate(&spec)
            .unwrap_err()
            .to_string()
            .starts_with("hostname:"));
    }

    #[test]
    fn sysctl_rules() {
        let (spec, _) =
            parse_config(minimal(r#","linux":{"sysctl":{"kernel.panic":"1"}}"#).as_bytes())
                .unwrap();
        // `linux` is replaced wholesale here, so only the sysctl rule fires.
        let err = validate(&spec).unwrap_err().to_string();
        assert!(err.contains("kernel.panic"), "{err}");
    }

    #[test]
    fn pids_without_limit_sets_nothing_and_zero_is_a_limit() {
        let limit = |pids: &str| {
            let (spec, _) = parse_config(
                minimal(&format!(r#","linux":{{"resources":{{"pids":{pids}}}}}"#)).as_bytes(),
            )
            .unwrap();
            let r = spec.linux().clone().unwrap().resources().clone().unwrap();
            r.pids().map(|p| p.limit())
        };
        assert_eq!(limit("{}"), None);
        assert_eq!(limit(r#"{"limit":null}"#), None);
        assert_eq!(limit(r#"{"limit":0}"#), Some(0));
        let r = parse_resources(r#"{"pids":{}}"#).unwrap();
        assert!(r.pids().is_none());
        let r = parse_resources(r#"{"pids":{"limit":0}}"#).unwrap();
        assert_eq!(r.pids().map(|p| p.limit()), Some(0));
    }

    #[test]
    fn duplicate_namespace() {
        let text = minimal("").replace(r#"{"type":"mount"}"#, r#"{"type":"pid"}"#);
        let (spec, _) = parse_config(text.as_bytes()).unwrap();
        let err = validate(&spec).unwrap_err().to_string();
        assert!(err.contains("linux.namespaces[1]"), "{err}");
    }
}
