//! Reading and validating a bundle's config.json, once, in the parent.
//!
//! Parsing is lenient where runc is lenient (any 1.x `ociVersion`, unknown
//! capability names are dropped with a warning) and strict where runc is
//! strict (its `configs/validate` rules), so engines see the same verdicts.

use crate::error::{Error, Result};
use oci_spec::runtime::{Capability, LinuxNamespaceType, Spec};
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
        let text = std::fs::read(&config).map_err(|e| Error::Config {
            path: config.clone(),
            reason: e.to_string(),
        })?;
        let (spec, warnings) = parse_config(&text).map_err(|reason| Error::Config {
            path: config.clone(),
            reason,
        })?;
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| Error::invalid("root", "root must be set"))?;
        let rootfs = path.join(root.path());
        let rootfs = std::fs::canonicalize(&rootfs)
            .map_err(|e| Error::invalid("root.path", format!("{}: {e}", rootfs.display())))?;
        if !rootfs.is_dir() {
            return Err(Error::invalid(
                "root.path",
                format!("{}: not a directory", rootfs.display()),
            ));
        }
        validate(&spec)?;
        let mut warnings = warnings;
        not_yet_supported(&spec, &mut warnings)?;
        Ok(Bundle {
            path,
            spec,
            rootfs,
            warnings,
        })
    }
}

/// Parses config.json text. Returns the spec and warnings, or a reason naming
/// the offending field.
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
    drop_unknown_capabilities(&mut value, &mut warnings);
    crate::security::seccomp::check_names(&value)?;
    crate::process::mempolicy::check_names(&value)?;
    let spec: Spec = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        format!("{path}: {}", e.into_inner())
    })?;
    Ok((spec, warnings))
}

/// runc ignores capability names it does not know (with a warning) instead of
/// refusing the config; oci-spec would refuse, so unknown names go first.
fn drop_unknown_capabilities(value: &mut Value, warnings: &mut Vec<String>) {
    let Some(caps) = value
        .pointer_mut("/process/capabilities")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for (set, names) in caps.iter_mut() {
        let Some(list) = names.as_array_mut() else {
            continue;
        };
        list.retain(|name| {
            let known = serde_json::from_value::<Capability>(name.clone()).is_ok()
                && name
                    .as_str()
                    .is_some_and(|n| n.parse::<caps::Capability>().is_ok());
            if !known {
                warnings.push(format!(
                    "process.capabilities.{set}: unknown capability {name}, ignored"
                ));
            }
            known
        });
    }
}

/// The checks on a process (the config's, or one given to `exec`).
pub fn validate_process(process: &oci_spec::runtime::Process) -> Result<()> {
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::invalid("process.args", "args must not be empty"));
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
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(Error::invalid(
                    format!("linux.namespaces[{i}].path"),
                    format!("{} is not an absolute path", p.display()),
                ));
            }
        }
    }
    let has = |t| seen.contains(&t);
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
    let new_userns = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
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

/// Fields keel does not honour yet: refused with the reason where ignoring
/// them would weaken the container, warned about otherwise.
fn not_yet_supported(spec: &Spec, _warnings: &mut Vec<String>) -> Result<()> {
    let refuse = |field: &str| {
        Err(Error::invalid(
            field,
            "not supported by this version of keel yet",
        ))
    };
    if let Some(l) = spec.linux() {
        if l.mount_label().as_ref().is_some_and(|m| !m.is_empty())
            && !crate::security::lsm::selinux_enabled()
        {
            // runc passes it on and fails at the first labelled mount.
            return Err(Error::invalid(
                "linux.mountLabel",
                "a mount label is specified in config, but selinux is disabled or not supported",
            ));
        }
        if l.intel_rdt().is_some() {
            return refuse("linux.intelRdt");
        }
        if l.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
            return refuse("linux.netDevices");
        }
    }
    Ok(())
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
    fn unknown_capability_is_dropped_with_warning() {
        let text = minimal("").replace(
            r#""cwd":"/""#,
            r#""cwd":"/","capabilities":{"bounding":["CAP_CHOWN","CAP_NOT_A_CAP"]}"#,
        );
        let (spec, warnings) = parse_config(text.as_bytes()).unwrap();
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 1);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("CAP_NOT_A_CAP"));
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
    fn duplicate_namespace() {
        let text = minimal("").replace(r#"{"type":"mount"}"#, r#"{"type":"pid"}"#);
        let (spec, _) = parse_config(text.as_bytes()).unwrap();
        let err = validate(&spec).unwrap_err().to_string();
        assert!(err.contains("linux.namespaces[1]"), "{err}");
    }
}
