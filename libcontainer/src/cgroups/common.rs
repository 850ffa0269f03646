//! Resource writers for what cgroup v1 and v2 name alike (cpuset, pids,
//! rdma files) and what the v1 and v2 writers share (memory's
//! checkBeforeUpdate, the blockIO throttle lists).

use super::fs::{read_u64, write_file};
use crate::error::{Error, Result};
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxRdma, LinuxThrottleDevice,
};
use std::collections::HashMap;
use std::path::Path;

const F: &str = "linux.resources";

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

/// `pids.limit` as runc 1.3+ (opencontainers/cgroups, PidsGroup.Set)
/// reads it: negative is no limit (None); 0 is a limit, written as 1
/// because systemd cannot express 0 (TasksMax=0 means "no limit" there),
/// so both drivers give the same container. (An absent limit never gets
/// here: spec::without_empty_pids drops it.)
pub(crate) fn pids_max(limit: i64) -> Option<u64> {
    match limit {
        l if l < 0 => None,
        0 => Some(1),
        l => Some(l as u64),
    }
}

/// pids.max (same name in v1 and v2).
pub(crate) fn pids(dir: &Path, p: &LinuxPids) -> Result<()> {
    let v = pids_max(p.limit()).map_or_else(|| "max".to_string(), |n| n.to_string());
    write_file(&format!("{F}.pids.limit"), dir, "pids.max", &v)
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

/// rdma.max, one device per line, in name order.
pub(crate) fn rdma(dir: &Path, rdma: &HashMap<String, LinuxRdma>) -> Result<()> {
    let mut names: Vec<&String> = rdma.keys().collect();
    names.sort();
    for name in names {
        let l = &rdma[name];
        let mut line = name.clone();
        if let Some(h) = l.hca_handles() {
            line.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = l.hca_objects() {
            line.push_str(&format!(" hca_object={o}"));
        }
        write_file(&format!("{F}.rdma.{name}"), dir, "rdma.max", &line)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::fs::tests::{parse, FakeCgroup};

    #[test]
    fn pids_limit_negative_is_max() {
        let cg = FakeCgroup::new("pids-max", &[("pids.max", "")]);
        pids(cg.dir(), &parse(r#"{"limit":-1}"#)).unwrap();
        assert_eq!(cg.get("pids.max"), "max");
        let cg = FakeCgroup::new("pids-n", &[("pids.max", "")]);
        pids(cg.dir(), &parse(r#"{"limit":42}"#)).unwrap();
        assert_eq!(cg.get("pids.max"), "42");
        let cg = FakeCgroup::new("pids-0", &[("pids.max", "")]);
        pids(cg.dir(), &parse(r#"{"limit":0}"#)).unwrap();
        assert_eq!(cg.get("pids.max"), "1");
    }

    #[test]
    fn cpuset_and_rdma_files() {
        let cg = FakeCgroup::new(
            "cpuset-rdma",
            &[("cpuset.cpus", ""), ("cpuset.mems", ""), ("rdma.max", "")],
        );
        cpuset(cg.dir(), &parse(r#"{"cpus":"0-1","mems":"0"}"#)).unwrap();
        assert_eq!(cg.get("cpuset.cpus"), "0-1");
        assert_eq!(cg.get("cpuset.mems"), "0");
        let r: HashMap<String, LinuxRdma> =
            parse(r#"{"mlx4_0":{"hcaHandles":2,"hcaObjects":2000}}"#);
        rdma(cg.dir(), &r).unwrap();
        assert_eq!(cg.get("rdma.max"), "mlx4_0 hca_handle=2 hca_object=2000");
    }
}
