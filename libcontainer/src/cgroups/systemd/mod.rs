//! The systemd cgroup driver (`--systemd-cgroup`): the container's cgroup is
//! a transient scope unit that systemd creates (StartTransientUnit, with
//! Delegate=yes and the init's pid), named and placed from a cgroupsPath of
//! the form `slice:prefix:name` as runc does. The limits are set both as
//! unit properties (so that systemd keeps them when it reloads) and in the
//! cgroup files (everything systemd has no property for), as runc does.

mod dbus;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use dbus::read_reply_for_fuzzing;

use super::convert::{blkio_weight_to_io_weight, shares_to_weight, swap_to_v2};
use crate::error::{Error, Result};
use dbus::{Conn, Value};
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};

const FIELD: &str = "linux.cgroupsPath";
const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

/// The unit a container's cgroup belongs to.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SystemdUnit {
    /// `<prefix>-<name>.scope`
    pub unit: String,
    /// The slice it goes in, `system.slice` by default.
    pub slice: String,
}

/// `slice:prefix:name` as runc splits it; an empty cgroupsPath is
/// `system.slice:keel:<id>`.
pub(crate) fn parse(cgroups_path: Option<&Path>, id: &str) -> Result<(SystemdUnit, String)> {
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
    let slice = if slice.is_empty() {
        "system.slice".to_string()
    } else {
        slice
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
    Ok((SystemdUnit { unit, slice }, path))
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

fn manager(conn: &mut Conn, member: &str, args: &[Value]) -> Result<Option<String>> {
    conn.call(DEST, PATH, MANAGER, member, args)
}

/// Starts the transient scope with `pid` in it and waits until systemd
/// has moved it there.
pub(crate) fn start(u: &SystemdUnit, pid: i32, pure_v2: bool) -> Result<()> {
    let mut conn = Conn::system()?;
    // A failed unit of the same name from an earlier container blocks the
    // name; runc resets it too.
    let _ = manager(&mut conn, "ResetFailedUnit", &[Value::Str(u.unit.clone())]);
    let io = if pure_v2 {
        "IOAccounting"
    } else {
        "BlockIOAccounting"
    };
    let props = vec![
        (
            "Description".into(),
            Value::Str(format!("keel container {}", u.unit)),
        ),
        ("Slice".into(), Value::Str(u.slice.clone())),
        ("Delegate".into(), Value::Bool(true)),
        ("PIDs".into(), Value::U32s(vec![pid as u32])),
        ("DefaultDependencies".into(), Value::Bool(false)),
        ("MemoryAccounting".into(), Value::Bool(true)),
        ("CPUAccounting".into(), Value::Bool(true)),
        (io.into(), Value::Bool(true)),
        ("TasksAccounting".into(), Value::Bool(true)),
    ];
    manager(
        &mut conn,
        "StartTransientUnit",
        &[
            Value::Str(u.unit.clone()),
            Value::Str("replace".into()),
            Value::Props(props),
            Value::Aux,
        ],
    )
    .map_err(|e| e.in_field(FIELD))?;
    // The job runs asynchronously; it is done once the pid is in the unit.
    let wanted = format!("/{}", u.unit);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        if cg.lines().any(|l| l.ends_with(&wanted)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::invalid(
                FIELD,
                format!("systemd did not start unit {} with pid {pid}", u.unit),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Stops the unit (which kills what is left in it); a unit that is gone
/// already is not an error.
pub(crate) fn stop(u: &SystemdUnit) -> Result<()> {
    let mut conn = Conn::system()?;
    match manager(
        &mut conn,
        "StopUnit",
        &[Value::Str(u.unit.clone()), Value::Str("replace".into())],
    ) {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("NoSuchUnit") => Ok(()),
        Err(e) => Err(e),
    }
}

/// The limits systemd has properties for, as runc sets them.
fn properties(r: &LinuxResources, pure_v2: bool) -> Result<Vec<(String, Value)>> {
    let mut p: Vec<(String, Value)> = Vec::new();
    let max = |v: i64| {
        if v < 0 {
            u64::MAX
        } else {
            v as u64
        }
    };
    if let Some(m) = r.memory() {
        let limit = m.limit().unwrap_or(0);
        if limit != 0 {
            let key = if pure_v2 { "MemoryMax" } else { "MemoryLimit" };
            p.push((key.into(), Value::U64(max(limit))));
        }
        if pure_v2 {
            if let Some(res) = m.reservation().filter(|&v| v != 0) {
                p.push(("MemoryLow".into(), Value::U64(max(res))));
            }
            let swap = m.swap().unwrap_or(0);
            if swap != 0 {
                let v = swap_to_v2(swap, limit)
                    .map_err(|e| Error::invalid("linux.resources.memory.swap", e))?;
                p.push(("MemorySwapMax".into(), Value::U64(max(v))));
            }
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares().filter(|&s| s != 0) {
            if pure_v2 {
                p.push(("CPUWeight".into(), Value::U64(shares_to_weight(s))));
            } else {
                p.push(("CPUShares".into(), Value::U64(s)));
            }
        }
        let quota = c.quota().unwrap_or(0);
        let period = c.period().unwrap_or(0);
        if period != 0 {
            p.push(("CPUQuotaPeriodUSec".into(), Value::U64(period)));
        }
        if quota != 0 {
            // runc's conversion: per-second quota, rounded up to 10ms
            // (systemd's granularity).
            let per_sec = if quota < 0 {
                u64::MAX
            } else {
                let period = if period == 0 { 100_000 } else { period };
                let v = quota as u64 * 1_000_000 / period;
                v.div_ceil(10_000) * 10_000
            };
            p.push(("CPUQuotaPerSecUSec".into(), Value::U64(per_sec)));
        }
    }
    if let Some(pids) = r.pids() {
        let tasks = super::common::pids_max(pids.limit()).unwrap_or(u64::MAX);
        p.push(("TasksMax".into(), Value::U64(tasks)));
    }
    if let Some(w) = r.block_io().as_ref().and_then(|b| b.weight()) {
        if w != 0 {
            if pure_v2 {
                p.push(("IOWeight".into(), Value::U64(blkio_weight_to_io_weight(w))));
            } else {
                p.push(("BlockIOWeight".into(), Value::U64(u64::from(w))));
            }
        }
    }
    Ok(p)
}

/// Sets the unit properties for `r` (runtime only, as runc), before the
/// same limits go into the cgroup files.
pub(crate) fn set_properties(u: &SystemdUnit, r: &LinuxResources, pure_v2: bool) -> Result<()> {
    let props = properties(r, pure_v2)?;
    if props.is_empty() {
        return Ok(());
    }
    let mut conn = Conn::system()?;
    manager(
        &mut conn,
        "SetUnitProperties",
        &[
            Value::Str(u.unit.clone()),
            Value::Bool(true),
            Value::Props(props),
        ],
    )
    .map(|_| ())
    .map_err(|e| e.in_field("linux.resources"))
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
        let (u, path) = parse(Some(Path::new("machine.slice:docker:abc")), "x").unwrap();
        assert_eq!(u.unit, "docker-abc.scope");
        assert_eq!(u.slice, "machine.slice");
        assert_eq!(path, "/machine.slice/docker-abc.scope");
        let (u, path) = parse(None, "c1").unwrap();
        assert_eq!(
            (u.unit.as_str(), u.slice.as_str()),
            ("keel-c1.scope", "system.slice")
        );
        assert_eq!(path, "/system.slice/keel-c1.scope");
        let (_, path) = parse(Some(Path::new(":p:n")), "x").unwrap();
        assert_eq!(path, "/system.slice/p-n.scope");
        let (_, path) = parse(Some(Path::new("-.slice:p:n")), "x").unwrap();
        assert_eq!(path, "/p-n.scope");
        let e = parse(Some(Path::new("/a/b")), "x").unwrap_err().to_string();
        assert!(e.contains("slice:prefix:name"), "{e}");
    }

    #[test]
    fn cpu_quota_per_second_rounds_up_to_10ms() {
        let r: LinuxResources = serde_json::from_str(
            r#"{"cpu":{"quota":12345,"period":100000,"shares":1024},"pids":{"limit":-1},
                "memory":{"limit":1048576}}"#,
        )
        .unwrap();
        let p = properties(&r, true).unwrap();
        let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("CPUQuotaPerSecUSec"), Some(Value::U64(130_000)));
        assert_eq!(get("CPUWeight"), Some(Value::U64(100)));
        assert_eq!(get("TasksMax"), Some(Value::U64(u64::MAX)));
        assert_eq!(get("MemoryMax"), Some(Value::U64(1 << 20)));
        let p = properties(&r, false).unwrap();
        assert!(p.iter().any(|(n, _)| n == "MemoryLimit"));
        assert!(p.iter().any(|(n, _)| n == "CPUShares"));
    }

    #[test]
    fn v1_and_v2_property_names() {
        let r: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":-1,"reservation":1024,"swap":4096},
                "cpu":{"quota":-1,"period":50000},"blockIO":{"weight":500}}"#,
        )
        .unwrap();
        let names = |p: &[(String, Value)]| p.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        let v1 = properties(&r, false).unwrap();
        assert_eq!(
            names(&v1),
            [
                "MemoryLimit",
                "CPUQuotaPeriodUSec",
                "CPUQuotaPerSecUSec",
                "BlockIOWeight"
            ]
        );
        assert_eq!(v1[0].1, Value::U64(u64::MAX));
        assert_eq!(v1[1].1, Value::U64(50000));
        assert_eq!(v1[2].1, Value::U64(u64::MAX));
        assert_eq!(v1[3].1, Value::U64(500));
        let v2 = properties(&r, true).unwrap();
        assert_eq!(
            names(&v2),
            [
                "MemoryMax",
                "MemoryLow",
                "MemorySwapMax",
                "CPUQuotaPeriodUSec",
                "CPUQuotaPerSecUSec",
                "IOWeight"
            ]
        );
        // blkio weight 500 on io.weight's scale.
        assert_eq!(v2[5].1, Value::U64(blkio_weight_to_io_weight(500)));
    }

    #[test]
    fn nothing_set_means_no_properties() {
        let r: LinuxResources =
            serde_json::from_str(r#"{"memory":{},"cpu":{"shares":0}}"#).unwrap();
        assert!(properties(&r, true).unwrap().is_empty());
        // Swap without a memory limit is refused as runc does.
        let bad: LinuxResources = serde_json::from_str(r#"{"memory":{"swap":4096}}"#).unwrap();
        let e = properties(&bad, true).unwrap_err().to_string();
        assert!(e.starts_with("linux.resources.memory.swap:"), "{e}");
    }
}
