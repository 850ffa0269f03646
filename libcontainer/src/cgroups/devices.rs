//! Device cgroup rules: `linux.resources.devices` with runc's defaults
//! ([`DeviceRule::from_spec`]), written to the v1 devices controller or,
//! on cgroup v2, compiled into an eBPF program (`devicefilter`).

use super::devicefilter;
use super::path::CgroupPaths;
use crate::error::{Result, SysContext};
use std::io::Write;

/// One device cgroup rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    /// 'a', 'c' or 'b'.
    pub typ: char,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub access: String,
}

impl std::fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let num = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
        write!(
            f,
            "{} {}:{} {}",
            self.typ,
            num(self.major),
            num(self.minor),
            self.access
        )
    }
}

impl DeviceRule {
    fn allow(typ: char, major: Option<i64>, minor: Option<i64>, access: &str) -> DeviceRule {
        DeviceRule {
            allow: true,
            typ,
            major,
            minor,
            access: access.into(),
        }
    }

    /// The config's rules, then what runc always allows, then the config's
    /// device nodes (a container may always use the nodes it was given).
    pub fn from_spec(spec: &oci_spec::runtime::Spec) -> Vec<DeviceRule> {
        let linux = spec.linux().as_ref();
        let configured = linux
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.devices().as_ref());
        let Some(configured) = configured.filter(|c| !c.is_empty()) else {
            return Vec::new();
        };
        let type_char = |t: Option<oci_spec::runtime::LinuxDeviceType>| match t {
            Some(oci_spec::runtime::LinuxDeviceType::B) => 'b',
            Some(oci_spec::runtime::LinuxDeviceType::C)
            | Some(oci_spec::runtime::LinuxDeviceType::U) => 'c',
            _ => 'a',
        };
        let mut out: Vec<DeviceRule> = configured
            .iter()
            .map(|d| DeviceRule {
                allow: d.allow(),
                typ: type_char(d.typ()),
                major: d.major(),
                minor: d.minor(),
                access: d
                    .access()
                    .clone()
                    .filter(|a| !a.is_empty())
                    .unwrap_or_else(|| "rwm".into()),
            })
            .collect();
        out.extend([
            DeviceRule::allow('c', None, None, "m"),
            DeviceRule::allow('b', None, None, "m"),
            DeviceRule::allow('c', Some(1), Some(3), "rwm"),
            DeviceRule::allow('c', Some(1), Some(8), "rwm"),
            DeviceRule::allow('c', Some(1), Some(7), "rwm"),
            DeviceRule::allow('c', Some(5), Some(0), "rwm"),
            DeviceRule::allow('c', Some(1), Some(5), "rwm"),
            DeviceRule::allow('c', Some(1), Some(9), "rwm"),
            DeviceRule::allow('c', Some(5), Some(1), "rwm"),
            DeviceRule::allow('c', Some(136), None, "rwm"),
            DeviceRule::allow('c', Some(5), Some(2), "rwm"),
        ]);
        // (Fifos are not the devices controller's business; an `a` rule
        // made of one would allow every device.)
        for d in linux
            .and_then(|l| l.devices().as_ref())
            .into_iter()
            .flatten()
            .filter(|d| type_char(Some(d.typ())) != 'a')
        {
            out.push(DeviceRule::allow(
                type_char(Some(d.typ())),
                Some(d.major()),
                Some(d.minor()),
                "rwm",
            ));
        }
        out
    }
}

/// Applies `linux.resources.devices` in order: on the v1 devices
/// controller when there is one, else as an eBPF program on the cgroup2
/// directory (see `devicefilter`). Both are followed by runc's
/// always-allowed devices and the config's own device nodes. Returns
/// false when there is neither (no cgroup to filter devices in).
pub(crate) fn apply(paths: &CgroupPaths, rules: &[DeviceRule]) -> Result<bool> {
    let Some(dir) = paths.v1_dir("devices") else {
        return match paths.open_unified()? {
            Some(fd) => devicefilter::apply(std::os::fd::AsFd::as_fd(&fd), rules).map(|()| true),
            None => Ok(false),
        };
    };
    // One open per file, one write(2) per rule (the kernel takes one
    // rule per write, whatever the offset).
    let (mut allow, mut deny) = (None, None);
    for rule in rules {
        let (open, name) = if rule.allow {
            (&mut allow, "devices.allow")
        } else {
            (&mut deny, "devices.deny")
        };
        let file = dir.join(name);
        let line = rule.to_string();
        let f = match open {
            Some(f) => f,
            None => open.insert(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&file)
                    .ctx(|| format!("linux.resources.devices: open {}", file.display()))?,
            ),
        };
        f.write_all(line.as_bytes()).ctx(|| {
            format!(
                "linux.resources.devices: write {line:?} to {}",
                file.display()
            )
        })?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::fs::tests::FakeCgroup;

    fn spec(linux: &str) -> oci_spec::runtime::Spec {
        serde_json::from_str(&format!(r#"{{"ociVersion":"1.0.2","linux":{linux}}}"#))
            .expect("spec JSON")
    }

    #[test]
    fn no_rules_configured_means_none_written() {
        assert!(DeviceRule::from_spec(&spec("{}")).is_empty());
        assert!(DeviceRule::from_spec(&spec(r#"{"resources":{"devices":[]}}"#)).is_empty());
    }

    #[test]
    fn config_rules_first_then_runc_defaults() {
        let rules = DeviceRule::from_spec(&spec(
            r#"{"resources":{"devices":[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"b","major":8,"minor":0,"access":"r"}]}}"#,
        ));
        let text: Vec<String> = rules.iter().map(|r| r.to_string()).collect();
        assert_eq!(text[0], "a *:* rwm");
        assert!(!rules[0].allow);
        assert_eq!(text[1], "b 8:0 r");
        assert_eq!(text[2], "c *:* m");
        assert!(text.contains(&"c 136:* rwm".to_string()));
        assert!(rules[2..].iter().all(|r| r.allow));
    }

    #[test]
    fn v1_rules_go_to_allow_and_deny_one_write_each() {
        let cg = FakeCgroup::new("devices", &[("devices.allow", ""), ("devices.deny", "")]);
        let mut paths = CgroupPaths::default();
        paths.v1.insert("devices".into(), cg.dir().to_path_buf());
        let rules = [
            DeviceRule {
                allow: false,
                typ: 'a',
                major: None,
                minor: None,
                access: "rwm".into(),
            },
            DeviceRule::allow('c', Some(1), Some(3), "rwm"),
            DeviceRule::allow('c', Some(1), Some(5), "rwm"),
        ];
        assert!(apply(&paths, &rules).unwrap());
        assert_eq!(cg.get("devices.deny"), "a *:* rwm");
        // (A plain file keeps both writes side by side.)
        assert_eq!(cg.get("devices.allow"), "c 1:3 rwmc 1:5 rwm");
        // Neither a devices controller nor cgroup2: nothing to apply to.
        assert!(!apply(&CgroupPaths::default(), &rules).unwrap());
    }
}
