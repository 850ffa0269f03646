//! `linux.resources` and the device rules as systemd unit properties, as
//! runc sets them (libcontainer/cgroups/systemd: genV1/genV2Resources-
//! Properties, generateDeviceProperties): what systemd owns it re-applies
//! from these on `daemon-reload`, so they must say what the cgroup files
//! say. Pure: the systemd version and /proc/devices come in as arguments.

use super::super::common::pids_max;
use super::super::convert::{blkio_weight_to_io_weight, shares_to_weight, swap_to_v2};
use super::super::emulator::{access_string, Emulator};
use super::dbus::Value;
use crate::cgroups::devices::DeviceRule;
use crate::error::{Error, Result};
use oci_spec::runtime::LinuxResources;

pub(crate) type Props = Vec<(String, Value)>;

/// systemd's default CPU quota period (and the kernel's), in µs.
const DEFAULT_PERIOD: u64 = 100_000;
/// The first systemd versions with CPUQuotaPeriodUSec, and with
/// AllowedCPUs / AllowedMemoryNodes: older ones refuse the unit.
const PERIOD_SINCE: u32 = 242;
const CPUSET_SINCE: u32 = 244;

/// Whether building the properties of `r` depends on the systemd version
/// (so that it is asked only then).
pub(crate) fn needs_version(r: &LinuxResources) -> bool {
    let cpu = r.cpu().as_ref().is_some_and(|c| {
        c.period().is_some_and(|p| p != 0)
            || c.cpus().as_ref().is_some_and(|s| !s.is_empty())
            || c.mems().as_ref().is_some_and(|s| !s.is_empty())
    });
    let unified = r
        .unified()
        .as_ref()
        .is_some_and(|u| u.keys().any(|k| k.starts_with("cpu")));
    cpu || unified
}

/// The resource properties of `r` (all but the devices) on this layout
/// for systemd `version`.
pub(crate) fn resources(r: &LinuxResources, pure_v2: bool, version: u32) -> Result<Props> {
    let mut p: Props = Vec::new();
    let max = |v: i64| if v < 0 { u64::MAX } else { v as u64 };
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
        cpu_quota(
            &mut p,
            c.quota().unwrap_or(0),
            c.period().unwrap_or(0),
            version,
        );
        cpuset(&mut p, c.cpus().as_deref(), c.mems().as_deref(), version)?;
    }
    if let Some(pids) = r.pids() {
        let tasks = pids_max(pids.limit()).unwrap_or(u64::MAX);
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
    if let Some(u) = r.unified().as_ref().filter(|_| pure_v2) {
        // Sorted: the same config gives the same call.
        let mut keys: Vec<&String> = u.keys().collect();
        keys.sort();
        for k in keys {
            unified(&mut p, k, u[k].trim(), version)?;
        }
    }
    Ok(p)
}

/// runc's addCpuQuota: the period when systemd has the property; the
/// quota per second of CPU time, rounded up to 10 ms (systemd keeps it as
/// a whole percentage), unlimited when only the period is set.
fn cpu_quota(p: &mut Props, quota: i64, period: u64, version: u32) {
    if period != 0 && version >= PERIOD_SINCE {
        p.push(("CPUQuotaPeriodUSec".into(), Value::U64(period)));
    }
    if quota == 0 && period == 0 {
        return;
    }
    let per_sec = if quota > 0 {
        let period = if period == 0 { DEFAULT_PERIOD } else { period };
        (quota as u64 * 1_000_000 / period).div_ceil(10_000) * 10_000
    } else {
        u64::MAX
    };
    p.push(("CPUQuotaPerSecUSec".into(), Value::U64(per_sec)));
}

fn cpuset(p: &mut Props, cpus: Option<&str>, mems: Option<&str>, version: u32) -> Result<()> {
    if version < CPUSET_SINCE {
        return Ok(());
    }
    for (list, name, field) in [
        (cpus, "AllowedCPUs", "linux.resources.cpu.cpus"),
        (mems, "AllowedMemoryNodes", "linux.resources.cpu.mems"),
    ] {
        if let Some(list) = list.filter(|l| !l.is_empty()) {
            let bits = range_to_bits(list).map_err(|e| Error::invalid(field, e))?;
            p.push((name.into(), bytes(bits)));
        }
    }
    Ok(())
}

fn bytes(b: Vec<u8>) -> Value {
    Value::Array("y".into(), b.into_iter().map(Value::Byte).collect())
}

/// A cpuset list ("0-3,8") as the bitmask systemd takes for AllowedCPUs:
/// bytes in little-endian order, bit n of the mask for cpu n.
pub(crate) fn range_to_bits(list: &str) -> std::result::Result<Vec<u8>, String> {
    let mut bits: Vec<u8> = Vec::new();
    let num = |s: &str| {
        s.trim()
            .parse::<u32>()
            .map_err(|_| format!("invalid number {s:?} in cpuset list {list:?}"))
    };
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (start, end) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        if start > end {
            return Err(format!("invalid range {part:?} in cpuset list {list:?}"));
        }
        // The kernel has no more than 8192 cpus (NR_CPUS) or 1024 nodes.
        if end >= 1 << 16 {
            return Err(format!("{end} is out of range in cpuset list {list:?}"));
        }
        for i in start..=end {
            let (byte, bit) = ((i / 8) as usize, i % 8);
            if bits.len() <= byte {
                bits.resize(byte + 1, 0);
            }
            bits[byte] |= 1 << bit;
        }
    }
    if bits.is_empty() {
        return Err(format!("empty cpuset list {list:?}"));
    }
    Ok(bits)
}

/// runc's unifiedResToSystemdProps: the `linux.resources.unified` keys
/// systemd has a property for; the others go only to the files.
fn unified(p: &mut Props, key: &str, v: &str, version: u32) -> Result<()> {
    let field = format!("linux.resources.unified.{key}");
    let bad = |what: &str| Error::invalid(&field, format!("{what}: {v:?}"));
    let num_or_max = |s: &str| match s {
        "max" => Ok(u64::MAX),
        s => s.parse::<u64>().map_err(|_| bad("invalid value")),
    };
    match key {
        "cpu.max" => {
            let f: Vec<&str> = v.split_whitespace().collect();
            let quota = match f.first() {
                None => return Err(bad("invalid value")),
                Some(&"max") => 0,
                Some(q) => q.parse::<i64>().map_err(|_| bad("invalid quota"))?,
            };
            let period = match f.get(1..) {
                Some([]) | None => DEFAULT_PERIOD,
                Some([p]) => p.parse::<u64>().map_err(|_| bad("invalid period"))?,
                Some(_) => return Err(bad("invalid value")),
            };
            cpu_quota(p, quota, period, version);
        }
        "cpu.weight" => {
            let n = v.parse::<u64>().map_err(|_| bad("invalid value"))?;
            p.push(("CPUWeight".into(), Value::U64(n)));
        }
        "cpuset.cpus" => cpuset(p, Some(v), None, version)?,
        "cpuset.mems" => cpuset(p, None, Some(v), version)?,
        "memory.high" | "memory.low" | "memory.min" | "memory.max" | "memory.swap.max" => {
            let name = match key {
                "memory.high" => "MemoryHigh",
                "memory.low" => "MemoryLow",
                "memory.min" => "MemoryMin",
                "memory.max" => "MemoryMax",
                _ => "MemorySwapMax",
            };
            p.push((name.into(), Value::U64(num_or_max(v)?)));
        }
        "pids.max" => p.push(("TasksMax".into(), Value::U64(num_or_max(v)?))),
        _ => {}
    }
    Ok(())
}

/// The device rules as DevicePolicy + DeviceAllow, as runc's
/// generateDeviceProperties, so that systemd, which rewrites the unit's
/// device access whenever it reloads, rewrites the same rules. Returns the
/// properties and warnings (rules systemd cannot express: keel's own
/// program or v1 rules still enforce them).
///
/// A list that allows by default with exceptions denied cannot be said
/// in DeviceAllow: runc then tells systemd to deny everything, which on
/// cgroup v2 (where systemd's program and the runtime's must both allow)
/// leaves the container no device at all. keel leaves systemd's policy
/// at `auto` (systemd does not manage the unit's devices) and its own
/// rules enforce the denials.
pub(crate) fn devices(rules: &[DeviceRule], proc_devices: &str) -> Result<(Props, Vec<String>)> {
    let e = Emulator::new(rules)?;
    let reset = (
        "DeviceAllow".to_string(),
        Value::Array("(ss)".into(), vec![]),
    );
    if e.default_allow {
        let mut warnings = Vec::new();
        if !e.exceptions.is_empty() {
            warnings.push(
                "systemd cannot express device rules that deny by exception: keel's own device rules enforce them".into(),
            );
        }
        return Ok((
            vec![("DevicePolicy".into(), Value::Str("auto".into())), reset],
            warnings,
        ));
    }
    let mut allow = Vec::new();
    let mut warnings = Vec::new();
    for (&(typ, major, minor), &perms) in &e.exceptions {
        let kind = if typ == 'b' { "block" } else { "char" };
        let path = match (major, minor) {
            (None, None) => format!("{kind}-*"),
            (None, Some(mi)) => {
                warnings.push(format!(
                    "systemd does not support '*:n' device rules: {typ} *:{mi} is left to keel's own rules"
                ));
                continue;
            }
            (Some(ma), None) => match device_group(proc_devices, typ, ma) {
                Some(g) => format!("{kind}-{g}"),
                None => {
                    warnings.push(format!(
                        "no device group for {typ} {ma}:* in /proc/devices: it is left to keel's own rules"
                    ));
                    continue;
                }
            },
            (Some(ma), Some(mi)) => format!("/dev/{kind}/{ma}:{mi}"),
        };
        allow.push(Value::Struct(vec![
            Value::Str(path),
            Value::Str(access_string(perms)),
        ]));
    }
    Ok((
        vec![
            ("DevicePolicy".into(), Value::Str("strict".into())),
            reset,
            ("DeviceAllow".into(), Value::Array("(ss)".into(), allow)),
        ],
        warnings,
    ))
}

/// The name /proc/devices gives major `major` of type `typ` ('c' or 'b').
fn device_group(proc_devices: &str, typ: char, major: i64) -> Option<String> {
    let section = if typ == 'b' {
        "Block devices:"
    } else {
        "Character devices:"
    };
    proc_devices
        .lines()
        .skip_while(|l| l.trim() != section)
        .skip(1)
        .take_while(|l| !l.trim().is_empty() && !l.ends_with(':'))
        .find_map(|l| {
            let (n, name) = l.trim().split_once(char::is_whitespace)?;
            (n.parse::<i64>().ok()? == major).then(|| name.trim().to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    fn get(p: &Props, k: &str) -> Option<Value> {
        p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    fn names(p: &Props) -> Vec<&str> {
        p.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn cpu_quota_per_second_rounds_up_to_10ms() {
        let r = res(
            r#"{"cpu":{"quota":12345,"period":100000,"shares":1024},"pids":{"limit":-1},
                "memory":{"limit":1048576}}"#,
        );
        let p = resources(&r, true, 252).unwrap();
        assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(Value::U64(130_000)));
        assert_eq!(get(&p, "CPUQuotaPeriodUSec"), Some(Value::U64(100_000)));
        assert_eq!(get(&p, "CPUWeight"), Some(Value::U64(100)));
        assert_eq!(get(&p, "TasksMax"), Some(Value::U64(u64::MAX)));
        assert_eq!(get(&p, "MemoryMax"), Some(Value::U64(1 << 20)));
        let p = resources(&r, false, 252).unwrap();
        assert!(get(&p, "MemoryLimit").is_some() && get(&p, "CPUShares").is_some());
        // A period alone: unlimited quota, as runc.
        let p = resources(&res(r#"{"cpu":{"period":50000}}"#), true, 252).unwrap();
        assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(Value::U64(u64::MAX)));
        // systemd before 242 has no CPUQuotaPeriodUSec: not sent.
        let p = resources(&res(r#"{"cpu":{"period":50000}}"#), true, 239).unwrap();
        assert_eq!(names(&p), ["CPUQuotaPerSecUSec"]);
    }

    #[test]
    fn v1_and_v2_property_names() {
        let r = res(r#"{"memory":{"limit":-1,"reservation":1024,"swap":4096},
                "cpu":{"quota":-1,"period":50000},"blockIO":{"weight":500}}"#);
        let v1 = resources(&r, false, 252).unwrap();
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
        let v2 = resources(&r, true, 252).unwrap();
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
        let r = res(r#"{"memory":{},"cpu":{"shares":0}}"#);
        assert!(resources(&r, true, 252).unwrap().is_empty());
        assert!(!needs_version(&r));
        // Swap without a memory limit is refused as runc does.
        let bad = res(r#"{"memory":{"swap":4096}}"#);
        let e = resources(&bad, true, 252).unwrap_err().to_string();
        assert!(e.starts_with("linux.resources.memory.swap:"), "{e}");
    }

    #[test]
    fn cpusets_are_little_endian_bitmasks() {
        assert_eq!(range_to_bits("0"), Ok(vec![1]));
        assert_eq!(range_to_bits("0-3,8"), Ok(vec![0x0f, 0x01]));
        assert_eq!(range_to_bits(" 1 , 9-10,"), Ok(vec![0x02, 0x06]));
        assert_eq!(range_to_bits("63"), Ok(vec![0, 0, 0, 0, 0, 0, 0, 0x80]));
        for bad in ["", ",", "3-1", "a", "1-", "70000"] {
            assert!(range_to_bits(bad).is_err(), "{bad:?}");
        }
        let r = res(r#"{"cpu":{"cpus":"0-1","mems":"0"}}"#);
        assert!(needs_version(&r));
        let p = resources(&r, true, 252).unwrap();
        let bytes =
            |b: &[u8]| Value::Array("y".into(), b.iter().map(|&b| Value::Byte(b)).collect());
        assert_eq!(get(&p, "AllowedCPUs"), Some(bytes(&[3])));
        assert_eq!(get(&p, "AllowedMemoryNodes"), Some(bytes(&[1])));
        // Before systemd 244: only the files.
        assert!(resources(&r, true, 243).unwrap().is_empty());
        let e = resources(&res(r#"{"cpu":{"cpus":"2-1"}}"#), true, 252)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("linux.resources.cpu.cpus:"), "{e}");
    }

    #[test]
    fn unified_keys_systemd_knows() {
        let r = res(
            r#"{"unified":{"memory.high":"max","memory.min":" 4096 ","pids.max":"7",
                "cpu.max":"max 20000","cpu.weight":"50","cpuset.cpus":"1","io.weight":"10"}}"#,
        );
        let p = resources(&r, true, 252).unwrap();
        assert_eq!(
            names(&p),
            [
                "CPUQuotaPeriodUSec",
                "CPUQuotaPerSecUSec",
                "CPUWeight",
                "AllowedCPUs",
                "MemoryHigh",
                "MemoryMin",
                "TasksMax"
            ]
        );
        assert_eq!(get(&p, "MemoryHigh"), Some(Value::U64(u64::MAX)));
        assert_eq!(get(&p, "MemoryMin"), Some(Value::U64(4096)));
        assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(Value::U64(u64::MAX)));
        // Not on v1 (no unified hierarchy for them).
        assert!(resources(&r, false, 252).unwrap().is_empty());
        let e = resources(&res(r#"{"unified":{"memory.max":"lots"}}"#), true, 252)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("linux.resources.unified.memory.max:"), "{e}");
    }

    const PROC_DEVICES: &str =
        "Character devices:\n  1 mem\n  4 tty\n136 pts\n\nBlock devices:\n  7 loop\n259 blkext\n";

    fn allow_list(p: &Props) -> Vec<(String, String)> {
        let Some(Value::Array(_, items)) = p.last().map(|(_, v)| v) else {
            panic!("{p:?}")
        };
        items
            .iter()
            .map(|i| match i {
                Value::Struct(f) => match (&f[0], &f[1]) {
                    (Value::Str(a), Value::Str(b)) => (a.clone(), b.clone()),
                    _ => panic!("{i:?}"),
                },
                _ => panic!("{i:?}"),
            })
            .collect()
    }

    #[test]
    fn device_rules_as_device_allow() {
        let spec: oci_spec::runtime::Spec = serde_json::from_str(
            r#"{"linux":{"resources":{"devices":[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"b","major":7,"access":"r"},
                {"allow":true,"type":"c","minor":3,"access":"r"},
                {"allow":true,"type":"c","major":99,"access":"r"}]}}}"#,
        )
        .unwrap();
        let rules = DeviceRule::from_spec(&spec).unwrap();
        let (p, warnings) = devices(&rules, PROC_DEVICES).unwrap();
        assert_eq!(names(&p), ["DevicePolicy", "DeviceAllow", "DeviceAllow"]);
        assert_eq!(p[0].1, Value::Str("strict".into()));
        assert_eq!(p[1].1, Value::Array("(ss)".into(), vec![]));
        let want: Vec<(String, String)> = [("block-*", "m"), ("block-loop", "r"), ("char-*", "m")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let got = allow_list(&p);
        assert_eq!(got[..3], want);
        // runc's defaults, each device by its /dev/char path; ptys by
        // their group.
        for (path, acc) in [
            ("/dev/char/1:3", "rwm"),
            ("/dev/char/5:0", "rwm"),
            ("/dev/char/10:200", "rwm"),
            ("char-pts", "rwm"),
        ] {
            assert!(
                got.contains(&(path.to_string(), acc.to_string())),
                "{path} {acc} in {got:?}"
            );
        }
        // c *:3 and c 99:* (no group) cannot be said: warned about.
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(!got.iter().any(|(p, _)| p.contains("99")));
    }

    #[test]
    fn allow_all_and_deny_lists_leave_systemd_out() {
        let allow_all = [DeviceRule::allow('a', None, None, "rwm")];
        let (p, w) = devices(&allow_all, PROC_DEVICES).unwrap();
        assert_eq!(names(&p), ["DevicePolicy", "DeviceAllow"]);
        assert_eq!(p[0].1, Value::Str("auto".into()));
        assert!(w.is_empty());
        let mut deny_one = allow_all.to_vec();
        deny_one.push(DeviceRule {
            allow: false,
            ..DeviceRule::allow('c', Some(1), Some(11), "rwm")
        });
        let (p, w) = devices(&deny_one, PROC_DEVICES).unwrap();
        assert_eq!(p[0].1, Value::Str("auto".into()));
        assert_eq!(w.len(), 1);
    }
}
