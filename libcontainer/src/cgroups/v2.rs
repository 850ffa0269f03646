//! Resource limits on cgroup v2, as runc's fs2 driver writes them, with the
//! OCI (v1-shaped) values converted by [`super::convert`].

use super::common::{check_before_update, throttles};
use super::convert::{blkio_weight_to_io_weight, shares_to_weight, swap_to_v2, v2_limit};
use super::fs::{read, try_write, write_error, write_file};
use super::path::CgroupPaths;
use crate::error::{Error, Result};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory};
use std::collections::HashMap;
use std::path::Path;

const F: &str = "linux.resources";

pub(crate) fn memory(dir: &Path, m: &LinuxMemory, w: &mut Vec<String>) -> Result<()> {
    check_before_update(m, dir, "memory.current")?;
    let limit = m.limit().unwrap_or(0);
    let swap_in = m.swap().unwrap_or(0);
    let swap =
        swap_to_v2(swap_in, limit).map_err(|e| Error::invalid(format!("{F}.memory.swap"), e))?;
    let mut swap_str = v2_limit(swap);
    if swap_str.is_none() && swap == 0 && swap_in > 0 {
        // memory == memory+swap: no swap at all.
        swap_str = Some("0".into());
    }
    if let Some(s) = swap_str {
        match try_write(dir, "memory.swap.max", &s) {
            Ok(()) => {}
            // No swap accounting: "max" and "0" are what there is anyway.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && (s == "max" || s == "0") => {}
            Err(e) => {
                return Err(write_error(
                    &format!("{F}.memory.swap"),
                    &dir.join("memory.swap.max"),
                    &s,
                    &e,
                ))
            }
        }
    }
    if let Some(v) = v2_limit(limit) {
        write_file(&format!("{F}.memory.limit"), dir, "memory.max", &v)?;
    }
    if let Some(v) = m.reservation().and_then(v2_limit) {
        write_file(&format!("{F}.memory.reservation"), dir, "memory.low", &v)?;
    }
    #[allow(deprecated)]
    let kernel = m.kernel();
    if kernel.is_some_and(|k| k != 0) || m.kernel_tcp().is_some_and(|k| k != 0) {
        w.push(format!(
            "{F}.memory.kernel/kernelTCP: cgroup v2 has no kernel memory limits; ignored"
        ));
    }
    if m.swappiness().is_some_and(|s| s != u64::MAX) {
        w.push(format!(
            "{F}.memory.swappiness: cgroup v2 has no per-cgroup swappiness; ignored"
        ));
    }
    if m.disable_oom_killer() == Some(true) {
        w.push(format!(
            "{F}.memory.disableOOMKiller: cgroup v2 cannot disable the OOM killer; ignored"
        ));
    }
    Ok(())
}

pub(crate) fn cpu(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if c.realtime_runtime().is_some_and(|v| v != 0) || c.realtime_period().is_some_and(|v| v != 0) {
        return Err(Error::invalid(
            format!("{F}.cpu.realtimeRuntime"),
            "realtime group scheduling is not supported on cgroup v2",
        ));
    }
    if let Some(i) = c.idle() {
        write_file(&format!("{F}.cpu.idle"), dir, "cpu.idle", &i.to_string())?;
    }
    if let Some(s) = c.shares().filter(|&s| s != 0) {
        write_file(
            &format!("{F}.cpu.shares"),
            dir,
            "cpu.weight",
            &shares_to_weight(s).to_string(),
        )?;
    }
    if let Some(b) = c.burst() {
        write_file(
            &format!("{F}.cpu.burst"),
            dir,
            "cpu.max.burst",
            &b.to_string(),
        )?;
    }
    let quota = c.quota().unwrap_or(0);
    let period = c.period().unwrap_or(0);
    if quota != 0 || period != 0 {
        // One of the two alone keeps the other's current value (runc's
        // update keeps it in its config for the same effect).
        let current = read(dir, "cpu.max").unwrap_or_default();
        let mut cur = current.split_whitespace();
        let (cur_q, cur_p) = (
            cur.next().unwrap_or("max").to_string(),
            cur.next().unwrap_or("100000").to_string(),
        );
        let q = match quota {
            0 => cur_q,
            q if q < 0 => "max".into(),
            q => q.to_string(),
        };
        let p = if period != 0 {
            period.to_string()
        } else {
            cur_p
        };
        let field = if quota != 0 { "quota" } else { "period" };
        write_file(
            &format!("{F}.cpu.{field}"),
            dir,
            "cpu.max",
            &format!("{q} {p}"),
        )?;
    }
    Ok(())
}

pub(crate) fn io(dir: &Path, b: &LinuxBlockIo, w: &mut Vec<String>) -> Result<()> {
    let bfq = dir.join("io.bfq.weight").exists();
    if let Some(wt) = b.weight().filter(|&w| w != 0) {
        if bfq {
            write_file(
                &format!("{F}.blockIO.weight"),
                dir,
                "io.bfq.weight",
                &wt.to_string(),
            )?;
        } else {
            write_file(
                &format!("{F}.blockIO.weight"),
                dir,
                "io.weight",
                &blkio_weight_to_io_weight(wt).to_string(),
            )?;
        }
    }
    if b.leaf_weight().is_some_and(|w| w != 0) {
        w.push(format!(
            "{F}.blockIO.leafWeight: cgroup v2 has no leaf weights; ignored"
        ));
    }
    for (i, d) in b.weight_device().iter().flatten().enumerate() {
        let Some(wt) = d.weight().filter(|&w| w != 0) else {
            continue;
        };
        if !bfq {
            w.push(format!(
                "{F}.blockIO.weightDevice[{i}]: per-device weights need the BFQ scheduler (io.bfq.weight); ignored"
            ));
            continue;
        }
        write_file(
            &format!("{F}.blockIO.weightDevice[{i}]"),
            dir,
            "io.bfq.weight",
            &format!("{}:{} {wt}", d.major(), d.minor()),
        )?;
    }
    for (field, _, key, list) in throttles(b) {
        for (i, t) in list.iter().enumerate() {
            write_file(
                &format!("{F}.blockIO.{field}[{i}]"),
                dir,
                "io.max",
                &format!("{}:{} {key}={}", t.major(), t.minor(), t.rate()),
            )?;
        }
    }
    Ok(())
}

pub(crate) fn hugetlb(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<()> {
    for (i, h) in limits.iter().enumerate() {
        let field = format!("{F}.hugepageLimits[{i}]");
        let v = h.limit().to_string();
        write_file(&field, dir, &format!("hugetlb.{}.max", h.page_size()), &v)?;
        let rsvd = format!("hugetlb.{}.rsvd.max", h.page_size());
        if dir.join(&rsvd).exists() {
            write_file(&field, dir, &rsvd, &v)?;
        }
    }
    Ok(())
}

/// `linux.resources.unified`: file name to value, written line by line into
/// the cgroup2 directory. Refused where the host is not pure cgroup v2 (as
/// runc), and for controllers the unified hierarchy does not offer.
pub(crate) fn unified(paths: &CgroupPaths, u: &HashMap<String, String>) -> Result<()> {
    // As runc (configs/validate, cgroupsCheck): only on a pure cgroup v2
    // host, not in a hybrid host's unified hierarchy either.
    let Some(dir) = paths.unified.as_deref().filter(|_| paths.is_pure_v2()) else {
        return Err(Error::invalid(
            format!("{F}.unified"),
            "invalid configuration: cannot use unified on cgroup v1",
        ));
    };
    let mut keys: Vec<&String> = u.keys().collect();
    keys.sort();
    for k in keys {
        let field = format!("{F}.unified.{k}");
        if k.contains('/') || k.starts_with('.') {
            return Err(Error::invalid(
                field,
                format!("unified resource {k:?} must be a file name (no slashes)"),
            ));
        }
        let Some((ctrl, _)) = k.split_once('.') else {
            return Err(Error::invalid(
                field,
                format!("unified resource {k:?} must be in the form CONTROLLER.PARAMETER"),
            ));
        };
        if ctrl != "cgroup" {
            if !paths.unified_offers(ctrl) {
                return Err(Error::invalid(
                    field,
                    format!(
                        "unified resource {k:?} can't be set: controller {ctrl:?} not available"
                    ),
                ));
            }
            paths.enable_v2(ctrl)?;
        }
        for line in u[k].split('\n').filter(|l| !l.is_empty()) {
            write_file(&field, dir, k, line)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The v2 files and values, written into a plain directory standing in
    //! for a cgroup2 directory (this host's real cgroup2 tree may lack the
    //! controllers; the conformance tests cover the real thing).

    use super::*;
    use crate::cgroups::fs::tests::FakeCgroup;
    use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxThrottleDevice};

    #[test]
    fn memory_files() {
        let cg = FakeCgroup::new(
            "mem",
            &[
                ("memory.swap.max", ""),
                ("memory.max", ""),
                ("memory.low", ""),
            ],
        );
        let mut m = LinuxMemory::default();
        m.set_limit(Some(100 << 20));
        m.set_swap(Some(300 << 20));
        m.set_reservation(Some(50 << 20));
        m.set_swappiness(Some(10));
        let mut w = Vec::new();
        memory(cg.dir(), &m, &mut w).unwrap();
        assert_eq!(cg.get("memory.max"), (100u64 << 20).to_string());
        assert_eq!(cg.get("memory.swap.max"), (200u64 << 20).to_string());
        assert_eq!(cg.get("memory.low"), (50u64 << 20).to_string());
        assert_eq!(w.len(), 1, "{w:?}");
        // memory == memory+swap: no swap.
        m.set_swap(Some(100 << 20));
        // (A plain file is not truncated by a write as a cgroup file is.)
        cg.put("memory.swap.max", "");
        memory(cg.dir(), &m, &mut w).unwrap();
        assert_eq!(cg.get("memory.swap.max"), "0");
        // Swap without a memory limit is refused as runc does.
        let mut bad = LinuxMemory::default();
        bad.set_swap(Some(1 << 20));
        let e = memory(cg.dir(), &bad, &mut w).unwrap_err().to_string();
        assert!(
            e.starts_with("linux.resources.memory.swap: unable to set swap"),
            "{e}"
        );
    }

    #[test]
    fn cpu_files() {
        let cg = FakeCgroup::new(
            "cpu",
            &[
                ("cpu.weight", ""),
                ("cpu.max", "max 100000"),
                ("cpu.idle", ""),
            ],
        );
        let mut c = LinuxCpu::default();
        c.set_shares(Some(1024));
        c.set_quota(Some(50000));
        cpu(cg.dir(), &c).unwrap();
        assert_eq!(cg.get("cpu.weight"), "100");
        // Quota alone keeps the period.
        assert_eq!(cg.get("cpu.max"), "50000 100000");
        let mut p = LinuxCpu::default();
        p.set_period(Some(200000));
        cpu(cg.dir(), &p).unwrap();
        assert_eq!(cg.get("cpu.max"), "50000 200000");
        let mut rt = LinuxCpu::default();
        rt.set_realtime_runtime(Some(1000));
        assert!(cpu(cg.dir(), &rt).is_err());
    }

    #[test]
    fn io_files() {
        let cg = FakeCgroup::new("io", &[("io.weight", ""), ("io.max", "")]);
        let mut b = LinuxBlockIo::default();
        b.set_weight(Some(500));
        let t: LinuxThrottleDevice =
            serde_json::from_str(r#"{"major":8,"minor":0,"rate":1048576}"#).unwrap();
        b.set_throttle_write_iops_device(Some(vec![t]));
        let mut w = Vec::new();
        io(cg.dir(), &b, &mut w).unwrap();
        assert_eq!(cg.get("io.weight"), "4950");
        assert_eq!(cg.get("io.max"), "8:0 wiops=1048576");
        // With BFQ the v1 weight goes there unconverted.
        cg.put("io.bfq.weight", "");
        io(cg.dir(), &b, &mut w).unwrap();
        assert_eq!(cg.get("io.bfq.weight"), "500");
    }
}
