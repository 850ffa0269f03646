//! Resource limits on cgroup v1 controllers, file for file as runc's fs
//! driver writes them (including its write orders and its treatment of 0
//! as "unset"). Files named alike in v2 are written by `common`.

use super::common::{check_before_update, throttles};
use super::fs::{read_u64, try_write, write_error, write_file};
use crate::error::{Error, Result};
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxInterfacePriority, LinuxMemory,
};
use std::path::Path;

const F: &str = "linux.resources";

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
    // (0 is "unset" for runc.)
    let set = |v: i64| (v != 0).then(|| v.to_string());
    in_order(
        dir,
        (
            "period",
            "cpu.cfs_period_us",
            set(c.period().unwrap_or(0) as i64),
        ),
        ("quota", "cpu.cfs_quota_us", set(c.quota().unwrap_or(0))),
    )?;
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
    in_order(
        dir,
        (
            "realtimePeriod",
            "cpu.rt_period_us",
            set(c.realtime_period().unwrap_or(0) as i64),
        ),
        (
            "realtimeRuntime",
            "cpu.rt_runtime_us",
            set(c.realtime_runtime().unwrap_or(0)),
        ),
    )?;
    Ok(())
}

/// A period and the time allowed in it (CFS or realtime): the kernel
/// refuses, with EINVAL, a step that breaks the pair's constraints (a
/// runtime above its period, more than the parent allows), so a period
/// refused before the other value is written again after it, as runc's
/// fs driver does (cpu.go: SetRtSched, and the CFS pair likewise).
fn in_order(
    dir: &Path,
    period: (&str, &str, Option<String>),
    allowed: (&str, &str, Option<String>),
) -> Result<()> {
    let field = |name: &str| format!("{F}.cpu.{name}");
    let mut period_later = false;
    if let (name, file, Some(v)) = &period {
        match try_write(dir, file, v) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && allowed.2.is_some() => {
                period_later = true
            }
            Err(e) => return Err(write_error(&field(name), &dir.join(file), v, &e)),
        }
    }
    if let (name, file, Some(v)) = &allowed {
        write_file(&field(name), dir, file, v)?;
    }
    if let (true, (name, file, Some(v))) = (period_later, &period) {
        write_file(&field(name), dir, file, v)?;
    }
    Ok(())
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

/// net_cls.classid.
pub(crate) fn net_cls(dir: &Path, id: u32) -> Result<()> {
    write_file(
        &format!("{F}.network.classID"),
        dir,
        "net_cls.classid",
        &id.to_string(),
    )
}

/// net_prio.ifpriomap, one interface per write.
pub(crate) fn net_prio(dir: &Path, prios: &[LinuxInterfacePriority]) -> Result<()> {
    for (i, p) in prios.iter().enumerate() {
        write_file(
            &format!("{F}.network.priorities[{i}]"),
            dir,
            "net_prio.ifpriomap",
            &format!("{} {}", p.name(), p.priority()),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The v1 files and values, written into plain files standing for a
    //! cgroup v1 directory (the conformance tests cover the real thing).

    use super::*;
    use crate::cgroups::fs::tests::{parse, FakeCgroup};

    #[test]
    fn memory_files_and_warnings() {
        let cg = FakeCgroup::new(
            "v1-mem",
            &[
                ("memory.limit_in_bytes", ""),
                ("memory.memsw.limit_in_bytes", ""),
                ("memory.soft_limit_in_bytes", ""),
                ("memory.swappiness", ""),
                ("memory.oom_control", ""),
            ],
        );
        let m: LinuxMemory = parse(
            r#"{"limit":1048576,"swap":2097152,"reservation":524288,"swappiness":10,
                "disableOOMKiller":true,"kernel":4096}"#,
        );
        let mut w = Vec::new();
        memory(cg.dir(), &m, &mut w).unwrap();
        assert_eq!(cg.get("memory.limit_in_bytes"), "1048576");
        assert_eq!(cg.get("memory.memsw.limit_in_bytes"), "2097152");
        assert_eq!(cg.get("memory.soft_limit_in_bytes"), "524288");
        assert_eq!(cg.get("memory.swappiness"), "10");
        assert_eq!(cg.get("memory.oom_control"), "1");
        // No kmem files on this kernel: a warning, not an error.
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("linux.resources.memory.kernel:"), "{w:?}");
        let bad: LinuxMemory = parse(r#"{"swappiness":101}"#);
        let e = memory(cg.dir(), &bad, &mut w).unwrap_err().to_string();
        assert!(e.contains("invalid memory swappiness value: 101"), "{e}");
    }

    #[test]
    fn unlimited_memory_means_unlimited_swap() {
        let cg = FakeCgroup::new(
            "v1-unlimited",
            &[
                ("memory.limit_in_bytes", ""),
                ("memory.memsw.limit_in_bytes", ""),
            ],
        );
        memory(cg.dir(), &parse(r#"{"limit":-1}"#), &mut Vec::new()).unwrap();
        assert_eq!(cg.get("memory.limit_in_bytes"), "-1");
        assert_eq!(cg.get("memory.memsw.limit_in_bytes"), "-1");
    }

    #[test]
    fn check_before_update_refuses_a_limit_below_usage() {
        let cg = FakeCgroup::new(
            "v1-check",
            &[
                ("memory.usage_in_bytes", "2000000"),
                ("memory.limit_in_bytes", ""),
            ],
        );
        let m: LinuxMemory = parse(r#"{"limit":1048576,"checkBeforeUpdate":true}"#);
        let e = memory(cg.dir(), &m, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rejecting memory limit 1048576 below usage 2000000"),
            "{e}"
        );
        assert_eq!(cg.get("memory.limit_in_bytes"), "");
    }

    #[test]
    fn cpu_files() {
        let cg = FakeCgroup::new(
            "v1-cpu",
            &[
                ("cpu.shares", ""),
                ("cpu.cfs_period_us", ""),
                ("cpu.cfs_quota_us", ""),
                ("cpu.cfs_burst_us", ""),
                ("cpu.rt_period_us", ""),
                ("cpu.rt_runtime_us", ""),
            ],
        );
        let c: LinuxCpu = parse(
            r#"{"shares":512,"quota":50000,"period":100000,"burst":1000,
                "realtimePeriod":1000000,"realtimeRuntime":950000}"#,
        );
        cpu(cg.dir(), &c).unwrap();
        for (f, v) in [
            ("cpu.shares", "512"),
            ("cpu.cfs_quota_us", "50000"),
            ("cpu.cfs_period_us", "100000"),
            ("cpu.cfs_burst_us", "1000"),
            ("cpu.rt_period_us", "1000000"),
            ("cpu.rt_runtime_us", "950000"),
        ] {
            assert_eq!(cg.get(f), v, "{f}");
        }
    }

    #[test]
    fn blkio_files_cfq_or_bfq() {
        let b: LinuxBlockIo = parse(
            r#"{"weight":300,"weightDevice":[{"major":8,"minor":0,"weight":200}],
                "throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576}]}"#,
        );
        let bfq = FakeCgroup::new(
            "v1-bfq",
            &[
                ("blkio.bfq.weight", ""),
                ("blkio.bfq.weight_device", ""),
                ("blkio.throttle.read_bps_device", ""),
            ],
        );
        blkio(bfq.dir(), &b).unwrap();
        assert_eq!(bfq.get("blkio.bfq.weight"), "300");
        assert_eq!(bfq.get("blkio.bfq.weight_device"), "8:0 200");
        assert_eq!(bfq.get("blkio.throttle.read_bps_device"), "8:0 1048576");
        let cfq = FakeCgroup::new(
            "v1-cfq",
            &[
                ("blkio.weight", ""),
                ("blkio.weight_device", ""),
                ("blkio.throttle.read_bps_device", ""),
            ],
        );
        blkio(cfq.dir(), &b).unwrap();
        assert_eq!(cfq.get("blkio.weight"), "300");
        assert_eq!(cfq.get("blkio.weight_device"), "8:0 200");
    }

    #[test]
    fn hugetlb_and_network_files() {
        let cg = FakeCgroup::new(
            "v1-misc",
            &[
                ("hugetlb.2MB.limit_in_bytes", ""),
                ("hugetlb.2MB.rsvd.limit_in_bytes", ""),
                ("net_cls.classid", ""),
                ("net_prio.ifpriomap", ""),
            ],
        );
        let h: Vec<LinuxHugepageLimit> = parse(r#"[{"pageSize":"2MB","limit":4194304}]"#);
        hugetlb(cg.dir(), &h).unwrap();
        assert_eq!(cg.get("hugetlb.2MB.limit_in_bytes"), "4194304");
        assert_eq!(cg.get("hugetlb.2MB.rsvd.limit_in_bytes"), "4194304");
        net_cls(cg.dir(), 0x100001).unwrap();
        assert_eq!(cg.get("net_cls.classid"), "1048577");
        let p: Vec<LinuxInterfacePriority> = parse(r#"[{"name":"eth0","priority":5}]"#);
        net_prio(cg.dir(), &p).unwrap();
        assert_eq!(cg.get("net_prio.ifpriomap"), "eth0 5");
        // A page size this kernel lacks: the error names the field.
        let bad: Vec<LinuxHugepageLimit> = parse(r#"[{"pageSize":"1GB","limit":1}]"#);
        let e = hugetlb(cg.dir(), &bad).unwrap_err().to_string();
        assert!(
            e.starts_with("linux.resources.hugepageLimits[0]: write 1 to "),
            "{e}"
        );
    }
}
