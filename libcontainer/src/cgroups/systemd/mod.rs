//! The systemd cgroup driver (`--systemd-cgroup`): the container's cgroup is
//! a transient scope unit that systemd creates (StartTransientUnit, with
//! Delegate=yes and the init's pid), named and placed from a cgroupsPath of
//! the form `slice:prefix:name` as runc does. The limits are set both as
//! unit properties (so that systemd keeps them when it reloads; see
//! `properties`) and in the cgroup files (everything systemd has no
//! property for), as runc does. A job (starting, stopping the unit) is
//! done when systemd says so in a `JobRemoved` signal.
//!
//! Rootless (keel not root), the unit is asked of the user's own systemd
//! (`systemd --user`) and goes under its slices, as runc's rootless
//! systemd driver does.

mod annotations;
mod dbus;
mod properties;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use dbus::read_reply_for_fuzzing;

use crate::cgroups::devices::DeviceRule;
use crate::error::{Error, Result};
use dbus::{Arg, Bus, Conn, Value};
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const FIELD: &str = "linux.cgroupsPath";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

/// The unit a container's cgroup belongs to.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SystemdUnit {
    /// `<prefix>-<name>.scope`
    pub unit: String,
    /// The slice it goes in, `system.slice` by default (`user.slice` for
    /// the user's systemd).
    pub slice: String,
    /// Whether the unit is the user's systemd's (rootless), not PID 1's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub user: bool,
    /// What the unit starts with besides the init, as runc passes it to
    /// StartTransientUnit: the config's limits, device rules and
    /// `org.systemd.property.*` annotations. (Properties set only after
    /// the start change the unit's controllers under a running scope: on
    /// v1 systemd then leaves the init in the slice's devices cgroup.)
    #[serde(skip)]
    pub(crate) start_with: StartWith,
}

/// See [`SystemdUnit::start_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StartWith {
    resources: Option<Box<LinuxResources>>,
    devices: Vec<DeviceRule>,
    annotations: BTreeMap<String, String>,
}

impl SystemdUnit {
    fn bus(&self) -> Bus {
        if self.user {
            Bus::User
        } else {
            Bus::System
        }
    }
}

/// The unit and its cgroup path for a container's config: the caller's
/// systemd (the user's when unprivileged: not root, or root of a user's
/// user namespace as under rootless podman; runc's test), what the unit
/// starts with (the annotations are checked here, before anything is
/// made).
pub(crate) fn unit_for(
    cgroups_path: Option<&Path>,
    id: &str,
    spec: &oci_spec::runtime::Spec,
) -> Result<(SystemdUnit, String)> {
    let user = crate::rootless::unprivileged();
    let (mut unit, path) = parse(cgroups_path, id, user)?;
    let annotations = annotations::select(spec.annotations().iter().flatten());
    annotations::properties(&annotations)?;
    unit.start_with = StartWith {
        resources: spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone())
            .map(Box::new),
        // The user's systemd cannot filter devices (and a rootless
        // container gets no device rules, as under runc).
        devices: if user {
            Vec::new()
        } else {
            DeviceRule::from_spec(spec)?
        },
        annotations,
    };
    let path = if user {
        // Under the user's manager: typically
        // /user.slice/user-1000.slice/user@1000.service.
        let mut conn = Conn::open(Bus::User)?;
        let cg = manager_property(&mut conn, "ControlGroup")?;
        format!("{}{path}", cg.trim_end_matches('/'))
    } else {
        path
    };
    unit.user = user;
    Ok((unit, path))
}

/// `slice:prefix:name` as runc splits it; an empty cgroupsPath is
/// `system.slice:keel:<id>` (`user.slice` for the user's systemd). The
/// path is relative to the manager's own cgroup.
pub(crate) fn parse(
    cgroups_path: Option<&Path>,
    id: &str,
    user: bool,
) -> Result<(SystemdUnit, String)> {
    let text = cgroups_path
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (slice, prefix, name) = if text.is_empty() {
        (String::new(), "keel".to_string(), id.to_string())
    } else {
        let parts: Vec<&str> = text.split(':').collect();
        let [slice, prefix, name] = parts[..] else {
            return Err(Error::invalid(
                FIELD,
                format!("expected cgroupsPath to be of format \"slice:prefix:name\" for systemd cgroups, got {text:?} instead"),
            ));
        };
        (slice.to_string(), prefix.to_string(), name.to_string())
    };
    let slice = match slice.as_str() {
        "" if user => "user.slice".to_string(),
        "" => "system.slice".to_string(),
        _ => slice,
    };
    if name.ends_with(".slice") {
        return Err(Error::invalid(
            FIELD,
            format!("{name}: a slice as the container's own unit is not supported; use a scope"),
        ));
    }
    let unit = format!("{prefix}-{name}.scope");
    if unit.contains('/') || name.is_empty() {
        return Err(Error::invalid(FIELD, format!("invalid unit name {unit:?}")));
    }
    let path = format!("{}/{unit}", expand_slice(&slice)?.trim_end_matches('/'));
    Ok((
        SystemdUnit {
            unit,
            slice,
            ..Default::default()
        },
        path,
    ))
}

/// The cgroup path of a slice, as systemd nests them:
/// `a-b.slice` is /a.slice/a-b.slice; `-.slice` is the root.
pub(crate) fn expand_slice(slice: &str) -> Result<String> {
    let invalid = || Error::invalid(FIELD, format!("invalid slice name: {slice}"));
    let base = slice.strip_suffix(".slice").ok_or_else(invalid)?;
    if base.is_empty() || slice.contains('/') {
        return Err(invalid());
    }
    if base == "-" {
        return Ok("/".into());
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in base.split('-') {
        if part.is_empty() {
            return Err(invalid());
        }
        path.push_str(&format!("/{prefix}{part}.slice"));
        prefix.push_str(part);
        prefix.push('-');
    }
    Ok(path)
}

/// A property of systemd's manager object (a string).
fn manager_property(conn: &mut Conn, name: &str) -> Result<String> {
    let reply = conn.call(
        "org.freedesktop.DBus.Properties",
        "Get",
        &[Value::Str(MANAGER.into()), Value::Str(name.into())],
    )?;
    reply
        .first()
        .and_then(Arg::as_str)
        .map(str::to_owned)
        .ok_or_else(|| Error::invalid("systemd", format!("D-Bus: no {name} in the reply")))
}

/// systemd's version (the leading number of "252.22-1~deb12u1"); 0 when
/// it cannot be told, so that no property newer than systemd 240 is set.
fn version(conn: &mut Conn) -> u32 {
    let v = manager_property(conn, "Version").unwrap_or_default();
    let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(0)
}

/// Waits for `job` (the object path a call returned) to end; its result.
fn wait_job(conn: &mut Conn, reply: &[Arg], deadline: Instant) -> Result<String> {
    let job = reply
        .first()
        .and_then(Arg::as_str)
        .ok_or_else(|| Error::invalid("systemd", "D-Bus: no job in the reply"))?;
    conn.wait_job(job, deadline)
}

/// Starts the transient scope with `pid` in it and waits until systemd
/// says the job is done.
pub(crate) fn start(u: &SystemdUnit, pid: i32, pure_v2: bool) -> Result<()> {
    let mut conn = Conn::open(u.bus())?;
    // A failed unit of the same name from an earlier container blocks the
    // name; runc resets it too.
    let _ = conn.call(MANAGER, "ResetFailedUnit", &[Value::Str(u.unit.clone())]);
    let io = if pure_v2 {
        "IOAccounting"
    } else {
        "BlockIOAccounting"
    };
    let mut props = vec![
        (
            "Description".into(),
            Value::Str(format!("keel container {}", u.unit)),
        ),
        ("Slice".into(), Value::Str(u.slice.clone())),
        ("Delegate".into(), Value::Bool(true)),
        (
            "PIDs".into(),
            Value::Array("u".into(), vec![Value::U32(pid as u32)]),
        ),
        ("DefaultDependencies".into(), Value::Bool(false)),
        ("MemoryAccounting".into(), Value::Bool(true)),
        ("CPUAccounting".into(), Value::Bool(true)),
        (io.into(), Value::Bool(true)),
        ("TasksAccounting".into(), Value::Bool(true)),
    ];
    let w = &u.start_with;
    if let Some(r) = &w.resources {
        let v = if properties::needs_version(r) {
            version(&mut conn)
        } else {
            u32::MAX
        };
        props.extend(properties::resources(r, pure_v2, v)?);
    }
    if !w.devices.is_empty() {
        props.extend(device_properties(&w.devices)?);
    }
    // Last: an annotation has the last word, as under runc.
    props.extend(annotations::properties(&w.annotations)?);
    conn.watch_jobs()?;
    let deadline = Instant::now() + dbus::TIMEOUT;
    let reply = conn
        .call(
            MANAGER,
            "StartTransientUnit",
            &[
                Value::Str(u.unit.clone()),
                Value::Str("replace".into()),
                Value::props(props),
                Value::Array("(sa(sv))".into(), vec![]),
            ],
        )
        .map_err(|e| e.in_field(FIELD))?;
    let result = wait_job(&mut conn, &reply, deadline).map_err(|e| {
        if Instant::now() >= deadline {
            Error::invalid(
                FIELD,
                format!("Timeout waiting for systemd to create {}", u.unit),
            )
        } else {
            e
        }
    })?;
    if result != "done" {
        let _ = conn.call(MANAGER, "ResetFailedUnit", &[Value::Str(u.unit.clone())]);
        return Err(Error::invalid(
            FIELD,
            format!("error creating systemd unit `{}`: got `{result}`", u.unit),
        ));
    }
    Ok(())
}

/// How long `stop` waits for the unit to be gone: what is left in it was
/// killed already (delete kills first), so this is systemd's own time.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// Stops the unit (which kills what is left in it) and waits for it to be
/// gone; a unit that is gone already is not an error.
pub(crate) fn stop(u: &SystemdUnit) -> Result<()> {
    let mut conn = Conn::open(u.bus())?;
    conn.watch_jobs()?;
    let deadline = Instant::now() + STOP_WAIT;
    let reply = match conn.call(
        MANAGER,
        "StopUnit",
        &[Value::Str(u.unit.clone()), Value::Str("replace".into())],
    ) {
        Ok(r) => r,
        Err(e) if e.to_string().contains("NoSuchUnit") => return Ok(()),
        Err(e) => return Err(e),
    };
    // As runc: a stop that does not finish is not the caller's failure.
    match wait_job(&mut conn, &reply, deadline) {
        Ok(r) if r == "done" => {}
        Ok(r) => log::warn!("error removing unit `{}`: got `{r}`. Continuing...", u.unit),
        Err(e) => log::warn!("waiting for systemd to stop {}: {e}. Continuing...", u.unit),
    }
    Ok(())
}

/// Sets `props` on the unit (runtime only, as runc).
fn set(conn: &mut Conn, u: &SystemdUnit, props: properties::Props) -> Result<()> {
    if props.is_empty() {
        return Ok(());
    }
    conn.call(
        MANAGER,
        "SetUnitProperties",
        &[
            Value::Str(u.unit.clone()),
            Value::Bool(true),
            Value::props(props),
        ],
    )
    .map(|_| ())
}

/// Sets the unit properties for `r` (see `properties::resources`), before
/// the same limits go into the cgroup files; on `update` too.
pub(crate) fn set_resources(u: &SystemdUnit, r: &LinuxResources, pure_v2: bool) -> Result<()> {
    let mut conn = None;
    let open = || Conn::open(u.bus());
    let version = if properties::needs_version(r) {
        let c = conn.insert(open()?);
        version(c)
    } else {
        // Nothing that depends on it.
        u32::MAX
    };
    let props = properties::resources(r, pure_v2, version)?;
    if props.is_empty() {
        return Ok(());
    }
    let c = match conn.as_mut() {
        Some(c) => c,
        None => conn.insert(open()?),
    };
    set(c, u, props).map_err(|e| e.in_field("linux.resources"))
}

/// Sets DevicePolicy and DeviceAllow from the device rules (see
/// `properties::devices`), before keel's own rules are written.
pub(crate) fn set_devices(u: &SystemdUnit, rules: &[DeviceRule]) -> Result<()> {
    let props = device_properties(rules)?;
    let mut conn = Conn::open(u.bus())?;
    set(&mut conn, u, props).map_err(|e| e.in_field("linux.resources.devices"))
}

fn device_properties(rules: &[DeviceRule]) -> Result<properties::Props> {
    let proc_devices = std::fs::read_to_string("/proc/devices").unwrap_or_default();
    let (props, warnings) = properties::devices(rules, &proc_devices)?;
    for w in warnings {
        log::warn!("{w}");
    }
    Ok(props)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_expand_as_systemd_nests_them() {
        assert_eq!(expand_slice("system.slice").unwrap(), "/system.slice");
        assert_eq!(
            expand_slice("a-b-c.slice").unwrap(),
            "/a.slice/a-b.slice/a-b-c.slice"
        );
        assert_eq!(expand_slice("-.slice").unwrap(), "/");
        for bad in ["a--b.slice", "-a.slice", "a/b.slice", "a.scope", ".slice"] {
            assert!(expand_slice(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cgroups_path_as_runc_reads_it() {
        let (u, path) = parse(Some(Path::new("machine.slice:docker:abc")), "x", false).unwrap();
        assert_eq!(u.unit, "docker-abc.scope");
        assert_eq!(u.slice, "machine.slice");
        assert_eq!(path, "/machine.slice/docker-abc.scope");
        let (u, path) = parse(None, "c1", false).unwrap();
        assert_eq!(
            (u.unit.as_str(), u.slice.as_str()),
            ("keel-c1.scope", "system.slice")
        );
        assert_eq!(path, "/system.slice/keel-c1.scope");
        let (_, path) = parse(Some(Path::new(":p:n")), "x", false).unwrap();
        assert_eq!(path, "/system.slice/p-n.scope");
        let (_, path) = parse(Some(Path::new("-.slice:p:n")), "x", false).unwrap();
        assert_eq!(path, "/p-n.scope");
        let (u, path) = parse(None, "c1", true).unwrap();
        assert_eq!(
            (u.slice.as_str(), path.as_str()),
            ("user.slice", "/user.slice/keel-c1.scope")
        );
        let e = parse(Some(Path::new("/a/b")), "x", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("slice:prefix:name"), "{e}");
    }
}
