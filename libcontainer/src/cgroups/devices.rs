//! Device cgroup rules: `linux.resources.devices` followed by runc's
//! defaults ([`DeviceRule::from_spec`]), written to the v1 devices
//! controller as a transition or, on cgroup v2, compiled into an eBPF
//! program (`devicefilter`); what the rules mean is `emulator`'s.

use super::devicefilter;
pub use super::emulator::DeviceRule;
use super::emulator::Emulator;
use super::path::CgroupPaths;
use crate::error::{Error, Result, SysContext};
use std::io::Write;

const FIELD: &str = "linux.resources.devices";

/// A default rule: the node's path (if it has one), type, major, minor,
/// access.
type DefaultRule = (
    Option<&'static str>,
    char,
    Option<i64>,
    Option<i64>,
    &'static str,
);

/// What runc always allows after the config's rules (specconv's
/// AllowedDevices): mknod of any node, the standard nodes (with the path a
/// `linux.devices` entry may take over), ptys and /dev/net/tun.
const DEFAULTS: [DefaultRule; 11] = [
    (None, 'c', None, None, "m"),
    (None, 'b', None, None, "m"),
    (Some("/dev/null"), 'c', Some(1), Some(3), "rwm"),
    (Some("/dev/random"), 'c', Some(1), Some(8), "rwm"),
    (Some("/dev/full"), 'c', Some(1), Some(7), "rwm"),
    (Some("/dev/tty"), 'c', Some(5), Some(0), "rwm"),
    (Some("/dev/zero"), 'c', Some(1), Some(5), "rwm"),
    (Some("/dev/urandom"), 'c', Some(1), Some(9), "rwm"),
    (None, 'c', Some(136), None, "rwm"),
    (None, 'c', Some(5), Some(2), "rwm"),
    (None, 'c', Some(10), Some(200), "rwm"),
];

impl DeviceRule {
    /// The config's rules in order, then runc's defaults ([`DEFAULTS`],
    /// less those whose path a `linux.devices` entry names), as runc's
    /// specconv builds them. The `linux.devices` nodes get no rule of their
    /// own: a config that denies one keeps it denied.
    pub fn from_spec(spec: &oci_spec::runtime::Spec) -> Result<Vec<DeviceRule>> {
        use oci_spec::runtime::LinuxDeviceType as T;
        let linux = spec.linux().as_ref();
        let configured = linux
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.devices().as_ref());
        let mut out = Vec::new();
        for (i, d) in configured.into_iter().flatten().enumerate() {
            let typ = match d.typ() {
                None | Some(T::A) => 'a',
                Some(T::B) => 'b',
                Some(T::C) | Some(T::U) => 'c',
                Some(t) => {
                    return Err(Error::invalid(
                        format!("linux.resources.devices[{i}]"),
                        format!("invalid cgroup device type {:?}", t.as_str()),
                    ))
                }
            };
            out.push(DeviceRule {
                allow: d.allow(),
                typ,
                major: d.major(),
                minor: d.minor(),
                // runc's specconv refuses an empty (or missing) access.
                access: d
                    .access()
                    .clone()
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| {
                        Error::ConfigRefused(format!("device access at {i} field cannot be empty"))
                    })?,
            });
        }
        let nodes: Vec<&std::path::Path> = linux
            .and_then(|l| l.devices().as_ref())
            .into_iter()
            .flatten()
            .map(|d| d.path().as_path())
            .collect();
        for (path, typ, major, minor, access) in DEFAULTS {
            if path.is_some_and(|p| nodes.contains(&std::path::Path::new(p))) {
                continue;
            }
            out.push(DeviceRule::allow(typ, major, minor, access));
        }
        Ok(out)
    }
}

/// Applies the rules: on the v1 devices controller when there is one, as
/// the fewest writes that take it from what it holds now to what the rules
/// mean (runc's transition), else as an eBPF program on the cgroup2
/// directory (see `devicefilter`). Returns false when there is neither (no
/// cgroup to filter devices in).
pub(crate) fn apply(paths: &CgroupPaths, rules: &[DeviceRule]) -> Result<bool> {
    let Some(dir) = paths.v1_dir("devices") else {
        return match paths.open_unified()? {
            Some(fd) => devicefilter::apply(std::os::fd::AsFd::as_fd(&fd), rules).map(|()| true),
            None => Ok(false),
        };
    };
    let target = Emulator::new(rules)?;
    let list = dir.join("devices.list");
    let current = Emulator::from_list(
        &std::fs::read_to_string(&list).ctx(|| format!("{FIELD}: read {}", list.display()))?,
    )?;
    // One open per file, one write(2) per rule (the kernel takes one
    // rule per write, whatever the offset).
    let (mut allow, mut deny) = (None, None);
    for rule in current.transition(&target) {
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
                    .ctx(|| format!("{FIELD}: open {}", file.display()))?,
            ),
        };
        f.write_all(line.as_bytes())
            .ctx(|| format!("{FIELD}: write {line:?} to {}", file.display()))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::fs::tests::{parse, FakeCgroup};

    fn spec(linux: &str) -> oci_spec::runtime::Spec {
        parse(&format!(r#"{{"ociVersion":"1.0.2","linux":{linux}}}"#))
    }

    fn text(rules: &[DeviceRule]) -> Vec<String> {
        rules
            .iter()
            .map(|r| format!("{} {r}", if r.allow { "allow" } else { "deny" }))
            .collect()
    }

    #[test]
    fn runc_defaults_even_without_config_rules() {
        let rules = DeviceRule::from_spec(&spec("{}")).unwrap();
        assert_eq!(rules.len(), DEFAULTS.len());
        assert_eq!(text(&rules)[0], "allow c *:* m");
        assert_eq!(text(&rules)[10], "allow c 10:200 rwm");
        // What it means: deny-all with these exceptions.
        let e = Emulator::new(&rules).unwrap();
        assert!(!e.default_allow);
    }

    #[test]
    fn config_rules_first_and_device_nodes_get_no_rule() {
        let rules = DeviceRule::from_spec(&spec(
            r#"{"resources":{"devices":[{"allow":false,"access":"rwm"},
                {"allow":false,"type":"c","major":10,"minor":229,"access":"rwm"},
                {"allow":true,"type":"b","major":8,"minor":0,"access":"r"}]},
                "devices":[{"path":"/dev/fuse","type":"c","major":10,"minor":229},
                           {"path":"/dev/null","type":"c","major":1,"minor":3}]}"#,
        ))
        .unwrap();
        let t = text(&rules);
        assert_eq!(
            t[..3],
            ["deny a *:* rwm", "deny c 10:229 rwm", "allow b 8:0 r"]
        );
        // /dev/fuse stays denied; /dev/null's default is the config's
        // device's now, which gets no rule either (as runc).
        assert!(!t
            .iter()
            .any(|r| r.contains("10:229") && r.starts_with("allow")));
        assert!(!t.contains(&"allow c 1:3 rwm".to_string()));
        assert_eq!(rules.len(), 3 + DEFAULTS.len() - 1);
    }

    #[test]
    fn a_fifo_rule_is_refused() {
        let e = DeviceRule::from_spec(&spec(
            r#"{"resources":{"devices":[{"allow":true,"type":"p","access":"rwm"}]}}"#,
        ))
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "linux.resources.devices[0]: invalid cgroup device type \"p\""
        );
    }

    #[test]
    fn v1_gets_the_transition_one_write_each() {
        let cg = FakeCgroup::new(
            "devices",
            &[
                ("devices.allow", ""),
                ("devices.deny", ""),
                ("devices.list", "a *:* rwm\n"),
            ],
        );
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
        // Once the cgroup holds them, the same rules write nothing.
        cg.put("devices.list", "c 1:3 rwm\nc 1:5 rwm\n");
        cg.put("devices.allow", "");
        cg.put("devices.deny", "");
        assert!(apply(&paths, &rules).unwrap());
        assert_eq!(cg.get("devices.allow"), "");
        assert_eq!(cg.get("devices.deny"), "");
        // Neither a devices controller nor cgroup2: nothing to apply to.
        assert!(!apply(&CgroupPaths::default(), &rules).unwrap());
    }
}
