//! Resource limits on cgroup v1 controllers, file for file as runc's fs
//! driver writes them (including its write orders and its treatment of 0
//! as "unset"). pids and cpuset files are named the same in v2 and are
//! shared with it.

use super::{read_u64, try_write, write_error, write_file};
use crate::error::{Error, Result};
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxPids, LinuxThrottleDevice,
};
use std::path::Path;

const F: &str = "linux.resources";

pub(crate) fn memory_is_set(m: &LinuxMemory) -> bool {
    #[allow(deprecated)]
    let kernel = m.kernel();
    m.limit().is_some()
        || m.reservation().is_some()
        || m.swap().is_some()
        || kernel.is_some()
        || m.kernel_tcp().is_some()
        || m.swappiness().is_some()
        || m.disable_oom_killer().is_some()
        || m.use_hierarchy().is_some()
}

/// `memory.checkBeforeUpdate`: refuse a limit below what is in use now
/// (best effort, as runc: an unreadable usage does not fail).
pub(crate) fn check_before_update(m: &LinuxMemory, dir: &Path, usage_file: &str) -> Result<()> {
    let limit = m.limit().unwrap_or(0);
    if m.check_before_update() != Some(true) || limit <= 0 {
        return Ok(());
    }
    match read_u64(dir, usage_file) {
        Some(usage) if usage >= limit as u64 => Err(Error::invalid(
            format!("{F}.memory.limit"),
            format!("rejecting memory limit {limit} below usage {usage}"),
        )),
        _ => Ok(()),
    }
}

/// A failed write that means "this kernel no longer has the setting".
fn removed_from_kernel(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
        || matches!(
            e.raw_os_error(),
            Some(libc::EOPNOTSUPP) | Some(524 /* the kernel's ENOTSUPP */)
        )
}

pub(crate) fn memory(dir: &Path, m: &LinuxMemory, w: &mut Vec<String>) -> Result<()> {
    check_before_update(m, dir, "memory.usage_in_bytes")?;
    const LIMIT: &str = "memory.limit_in_bytes";
    const MEMSW: &str = "memory.memsw.limit_in_bytes";
    let limit = m.limit().unwrap_or(0);
    let mut swap = m.swap().unwrap_or(0);
    // Unlimited memory and no swap given: unlimited swap too (if the
    // kernel accounts swap at all).
    if limit == -1 && swap == 0 && dir.join(MEMSW).exists() {
        swap = -1;
    }
    let set_limit = || -> Result<()> {
        if limit != 0 {
            write_file(&format!("{F}.memory.limit"), dir, LIMIT, &limit.to_string())?;
        }
        Ok(())
    };
    let set_swap = || -> Result<()> {
        if swap != 0 {
            write_file(&format!("{F}.memory.swap"), dir, MEMSW, &swap.to_string())?;
        }
        Ok(())
    };
    // The kernel keeps memsw >= limit at every step: raising both writes
    // swap first, lowering both writes the limit first.
    let current = read_u64(dir, LIMIT).unwrap_or(u64::MAX);
    if limit != 0 && swap != 0 && (swap == -1 || current < swap as u64) {
        set_swap()?;
        set_limit()?;
    } else {
        set_limit()?;
        set_swap()?;
    }
    if let Some(r) = m.reservation().filter(|&r| r != 0) {
        write_file(
            &format!("{F}.memory.reservation"),
            dir,
            "memory.soft_limit_in_bytes",
            &r.to_string(),
        )?;
    }
    #[allow(deprecated)]
    let kernel = m.kernel();
    for (field, file, v) in [
        ("kernel", "memory.kmem.limit_in_bytes", kernel),
        (
            "kernelTCP",
            "memory.kmem.tcp.limit_in_bytes",
            m.kernel_tcp(),
        ),
    ] {
        let Some(v) = v.filter(|&v| v != 0) else {
            continue;
        };
        match try_write(dir, file, &v.to_string()) {
            Ok(()) => {}
            Err(e) if removed_from_kernel(&e) => w.push(format!(
                "{F}.memory.{field}: kernel memory limits are not supported by this kernel; ignored"
            )),
            Err(e) => {
                return Err(write_error(
                    &format!("{F}.memory.{field}"),
                    &dir.join(file),
                    &v.to_string(),
                    &e,
                ))
            }
        }
    }
    if m.disable_oom_killer() == Some(true) {
        write_file(
            &format!("{F}.memory.disableOOMKiller"),
            dir,
            "memory.oom_control",
            "1",
        )?;
    }
    // u64::MAX is Go's uint64(-1): "unset".
    match m.swappiness() {
        None | Some(u64::MAX) => {}
        Some(s) if s <= 100 => write_file(
            &format!("{F}.memory.swappiness"),
            dir,
            "memory.swappiness",
            &s.to_string(),
        )?,
        Some(s) => {
            return Err(Error::invalid(
                format!("{F}.memory.swappiness"),
                format!("invalid memory swappiness value: {s} (valid range is 0-100)"),
            ))
        }
    }
    if let Some(h) = m.use_hierarchy() {
        let v = if h { "1" } else { "0" };
        if read_u64(dir, "memory.use_hierarchy") != Some(u64::from(h)) {
            if let Err(e) = try_write(dir, "memory.use_hierarchy", v) {
                w.push(format!(
                    "{F}.memory.useHierarchy: cannot set to {h} on this kernel ({e}); ignored"
                ));
            }
        }
    }
    Ok(())
}

pub(crate) fn cpu_is_set(c: &LinuxCpu) -> bool {
    c.shares().is_some_and(|v| v != 0)
        || c.quota().is_some_and(|v| v != 0)
        || c.period().is_some_and(|v| v != 0)
        || c.burst().is_some()
        || c.realtime_runtime().is_some_and(|v| v != 0)
        || c.realtime_period().is_some_and(|v| v != 0)
        || c.idle().is_some()
}

pub(crate) fn cpu(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(shares) = c.shares().filter(|&s| s != 0) {
        write_file(
            &format!("{F}.cpu.shares"),
            dir,
            "cpu.shares",
            &shares.to_string(),
        )?;
        // The kernel clamps; say so, as runc does.
        if let Some(got) = read_u64(dir, "cpu.shares") {
            let bound = if shares > got { "maximum" } else { "minimum" };
            if got != shares {
                return Err(Error::invalid(
                    format!("{F}.cpu.shares"),
                    format!("the {bound} allowed cpu-shares is {got}"),
                ));
            }
        }
    }
    let quota = c.quota().unwrap_or(0);
    let period = c.period().unwrap_or(0);
    let mut period_later = false;
    if period != 0 {
        match try_write(dir, "cpu.cfs_period_us", &period.to_string()) {
            Ok(()) => {}
            // A smaller period can exceed the parent's quota with the old
            // quota; retry after the quota is written.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && quota != 0 => period_later = true,
            Err(e) => {
                return Err(write_error(
                    &format!("{F}.cpu.period"),
                    &dir.join("cpu.cfs_period_us"),
                    &period.to_string(),
                    &e,
                ))
            }
        }
    }
    if quota != 0 {
        write_file(
            &format!("{F}.cpu.quota"),
            dir,
            "cpu.cfs_quota_us",
            &quota.to_string(),
        )?;
        if period_later {
            write_file(
                &format!("{F}.cpu.period"),
                dir,
                "cpu.cfs_period_us",
                &period.to_string(),
            )?;
        }
    }
    if let Some(b) = c.burst() {
        write_file(
            &format!("{F}.cpu.burst"),
            dir,
            "cpu.cfs_burst_us",
            &b.to_string(),
        )?;
    }
    if let Some(i) = c.idle() {
        write_file(&format!("{F}.cpu.idle"), dir, "cpu.idle", &i.to_string())?;
    }
    if let Some(p) = c.realtime_period().filter(|&p| p != 0) {
        write_file(
            &format!("{F}.cpu.realtimePeriod"),
            dir,
            "cpu.rt_period_us",
            &p.to_string(),
        )?;
    }
    if let Some(r) = c.realtime_runtime().filter(|&r| r != 0) {
        write_file(
            &format!("{F}.cpu.realtimeRuntime"),
            dir,
            "cpu.rt_runtime_us",
            &r.to_string(),
        )?;
    }
    Ok(())
}

/// cpuset.cpus / cpuset.mems (same names in v1 and v2).
pub(crate) fn cpuset(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(cpus) = c.cpus().as_ref().filter(|s| !s.is_empty()) {
        write_file(&format!("{F}.cpu.cpus"), dir, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = c.mems().as_ref().filter(|s| !s.is_empty()) {
        write_file(&format!("{F}.cpu.mems"), dir, "cpuset.mems", mems)?;
    }
    Ok(())
}

/// pids.max (same name in v1 and v2); negative is unlimited, 0 unset.
pub(crate) fn pids(dir: &Path, p: &LinuxPids) -> Result<()> {
    let v = match p.limit() {
        0 => return Ok(()),
        l if l < 0 => "max".to_string(),
        l => l.to_string(),
    };
    write_file(&format!("{F}.pids.limit"), dir, "pids.max", &v)
}

pub(crate) fn blkio_is_set(b: &LinuxBlockIo) -> bool {
    let any = |v: &Option<Vec<LinuxThrottleDevice>>| v.as_ref().is_some_and(|v| !v.is_empty());
    b.weight().is_some_and(|w| w != 0)
        || b.leaf_weight().is_some_and(|w| w != 0)
        || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
        || any(b.throttle_read_bps_device())
        || any(b.throttle_write_bps_device())
        || any(b.throttle_read_iops_device())
        || any(b.throttle_write_iops_device())
}

/// The throttle lists with their v1 file, v2 io.max key and field name.
pub(crate) fn throttles(
    b: &LinuxBlockIo,
) -> [(
    &'static str,
    &'static str,
    &'static str,
    &[LinuxThrottleDevice],
); 4] {
    fn v(o: &Option<Vec<LinuxThrottleDevice>>) -> &[LinuxThrottleDevice] {
        o.as_deref().unwrap_or(&[])
    }
    [
        (
            "throttleReadBpsDevice",
            "blkio.throttle.read_bps_device",
            "rbps",
            v(b.throttle_read_bps_device()),
        ),
        (
            "throttleWriteBpsDevice",
            "blkio.throttle.write_bps_device",
            "wbps",
            v(b.throttle_write_bps_device()),
        ),
        (
            "throttleReadIOPSDevice",
            "blkio.throttle.read_iops_device",
            "riops",
            v(b.throttle_read_iops_device()),
        ),
        (
            "throttleWriteIOPSDevice",
            "blkio.throttle.write_iops_device",
            "wiops",
            v(b.throttle_write_iops_device()),
        ),
    ]
}

pub(crate) fn blkio(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    // CFQ's files, or BFQ's when CFQ is gone (kernels >= 5.0), as runc.
    let (weight_file, weight_dev_file) = if dir.join("blkio.weight").exists() {
        ("blkio.weight", "blkio.weight_device")
    } else {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    };
    if let Some(wt) = b.weight().filter(|&w| w != 0) {
        write_file(
            &format!("{F}.blockIO.weight"),
            dir,
            weight_file,
            &wt.to_string(),
        )?;
    }
    if let Some(wt) = b.leaf_weight().filter(|&w| w != 0) {
        write_file(
            &format!("{F}.blockIO.leafWeight"),
            dir,
            "blkio.leaf_weight",
            &wt.to_string(),
        )?;
    }
    for (i, d) in b.weight_device().iter().flatten().enumerate() {
        if let Some(wt) = d.weight().filter(|&w| w != 0) {
            write_file(
                &format!("{F}.blockIO.weightDevice[{i}].weight"),
                dir,
                weight_dev_file,
                &format!("{}:{} {wt}", d.major(), d.minor()),
            )?;
        }
        if let Some(wt) = d.leaf_weight().filter(|&w| w != 0) {
            write_file(
                &format!("{F}.blockIO.weightDevice[{i}].leafWeight"),
                dir,
                "blkio.leaf_weight_device",
                &format!("{}:{} {wt}", d.major(), d.minor()),
            )?;
        }
    }
    for (field, file, _, list) in throttles(b) {
        for (i, t) in list.iter().enumerate() {
            write_file(
                &format!("{F}.blockIO.{field}[{i}]"),
                dir,
                file,
                &format!("{}:{} {}", t.major(), t.minor(), t.rate()),
            )?;
        }
    }
    Ok(())
}

pub(crate) fn hugetlb(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<()> {
    for (i, h) in limits.iter().enumerate() {
        let field = format!("{F}.hugepageLimits[{i}]");
        let v = h.limit().to_string();
        write_file(
            &field,
            dir,
            &format!("hugetlb.{}.limit_in_bytes", h.page_size()),
            &v,
        )?;
        let rsvd = format!("hugetlb.{}.rsvd.limit_in_bytes", h.page_size());
        if dir.join(&rsvd).exists() {
            write_file(&field, dir, &rsvd, &v)?;
        }
    }
    Ok(())
}
