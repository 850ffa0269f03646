//! `linux.resources` into the container's cgroup files: one table,
//! [`CONTROLLERS`], says for each field which controller takes it and which
//! writer (in `v1`, `v2` or `common`) writes it; [`apply`] walks it. The
//! device rules are `devices`' business, `unified` is cgroup v2's own.

use super::path::{CgroupPaths, Target};
use super::{common, v1, v2};
use crate::error::{Error, Result};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources, LinuxThrottleDevice};

/// Warnings collected while writing (settings this host ignores).
type Warnings = Vec<String>;

/// One field of `linux.resources` and where it goes.
struct Controller {
    /// The field under `linux.resources`, for errors.
    field: &'static str,
    /// The v1 controller that takes it.
    v1: &'static str,
    /// The cgroup v2 controller, None when v2 has none.
    v2: Option<&'static str>,
    /// Whether the config sets anything here (absent fields, and 0 where
    /// runc reads 0 as unset, leave the cgroup alone: the same call serves
    /// `create` and `update`).
    is_set: fn(&LinuxResources) -> bool,
    /// Writes the field's files into the directory `apply` chose.
    write: fn(Target<'_>, &LinuxResources, &mut Warnings) -> Result<()>,
}

/// Every controller, in runc's order of writing.
const CONTROLLERS: &[Controller] = &[
    Controller {
        field: "memory",
        v1: "memory",
        v2: Some("memory"),
        is_set: |r| r.memory().as_ref().is_some_and(memory_is_set),
        write: |t, r, w| match (t, r.memory()) {
            (Target::V1(d), Some(m)) => v1::memory(d, m, w),
            (Target::V2(d), Some(m)) => v2::memory(d, m, w),
            _ => Ok(()),
        },
    },
    Controller {
        field: "cpu",
        v1: "cpu",
        v2: Some("cpu"),
        is_set: |r| r.cpu().as_ref().is_some_and(cpu_is_set),
        write: |t, r, _| match (t, r.cpu()) {
            (Target::V1(d), Some(c)) => v1::cpu(d, c),
            (Target::V2(d), Some(c)) => v2::cpu(d, c),
            _ => Ok(()),
        },
    },
    Controller {
        field: "cpu.cpus",
        v1: "cpuset",
        v2: Some("cpuset"),
        is_set: |r| {
            r.cpu().as_ref().is_some_and(|c| {
                c.cpus().as_ref().is_some_and(|s| !s.is_empty())
                    || c.mems().as_ref().is_some_and(|s| !s.is_empty())
            })
        },
        write: |t, r, _| match (t, r.cpu()) {
            (Target::V1(d) | Target::V2(d), Some(c)) => common::cpuset(d, c),
            _ => Ok(()),
        },
    },
    Controller {
        field: "pids",
        v1: "pids",
        v2: Some("pids"),
        is_set: |r| r.pids().is_some(),
        write: |t, r, _| match (t, r.pids()) {
            (Target::V1(d) | Target::V2(d), Some(p)) => common::pids(d, p),
            _ => Ok(()),
        },
    },
    Controller {
        field: "blockIO",
        v1: "blkio",
        v2: Some("io"),
        is_set: |r| r.block_io().as_ref().is_some_and(blkio_is_set),
        write: |t, r, w| match (t, r.block_io()) {
            (Target::V1(d), Some(b)) => v1::blkio(d, b),
            (Target::V2(d), Some(b)) => v2::io(d, b, w),
            _ => Ok(()),
        },
    },
    Controller {
        field: "hugepageLimits",
        v1: "hugetlb",
        v2: Some("hugetlb"),
        is_set: |r| r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()),
        write: |t, r, _| match (t, r.hugepage_limits()) {
            (Target::V1(d), Some(h)) => v1::hugetlb(d, h),
            (Target::V2(d), Some(h)) => v2::hugetlb(d, h),
            _ => Ok(()),
        },
    },
    Controller {
        field: "network.classID",
        v1: "net_cls",
        v2: None,
        is_set: |r| r.network().as_ref().is_some_and(|n| n.class_id().is_some()),
        write: |t, r, _| match (t, r.network().as_ref().and_then(|n| n.class_id())) {
            (Target::V1(d), Some(id)) => v1::net_cls(d, id),
            _ => Ok(()),
        },
    },
    Controller {
        field: "network.priorities",
        v1: "net_prio",
        v2: None,
        is_set: |r| {
            r.network()
                .as_ref()
                .and_then(|n| n.priorities().as_ref())
                .is_some_and(|p| !p.is_empty())
        },
        write: |t, r, _| match (
            t,
            r.network().as_ref().and_then(|n| n.priorities().as_ref()),
        ) {
            (Target::V1(d), Some(p)) => v1::net_prio(d, p),
            _ => Ok(()),
        },
    },
    Controller {
        field: "rdma",
        v1: "rdma",
        v2: Some("rdma"),
        is_set: |r| r.rdma().as_ref().is_some_and(|r| !r.is_empty()),
        write: |t, r, _| match (t, r.rdma()) {
            (Target::V1(d) | Target::V2(d), Some(rdma)) => common::rdma(d, rdma),
            _ => Ok(()),
        },
    },
];

/// Applies `linux.resources` (all but the device rules) to the container's
/// cgroups: each field set goes to its v1 controller when that is mounted,
/// else to the unified hierarchy when it offers the controller; a field no
/// hierarchy here can take is an error. Returns warnings: settings this
/// kernel no longer has, and settings cgroup v2 has no file for.
pub(crate) fn apply(paths: &CgroupPaths, r: &LinuxResources) -> Result<Warnings> {
    let mut w = Vec::new();
    if paths.is_pure_v2() {
        // As runc: every controller the hierarchy offers is enabled for
        // the container, so that its files exist to read and write.
        paths.enable_all_v2();
    }
    for c in CONTROLLERS.iter().filter(|c| (c.is_set)(r)) {
        let Some(target) = paths.target(c.v1, c.v2)? else {
            let ctrl = match c.v2 {
                Some(v2) if v2 != c.v1 => format!("{}/{v2}", c.v1),
                _ => c.v1.to_string(),
            };
            return Err(Error::invalid(
                format!("linux.resources.{}", c.field),
                format!("cannot set: the {ctrl} cgroup controller is not available on this host"),
            ));
        };
        (c.write)(target, r, &mut w)?;
    }
    // (An empty map too is refused off cgroup v2, as runc refuses it.)
    if let Some(u) = r.unified().as_ref() {
        v2::unified(paths, u)?;
    }
    Ok(w)
}

fn memory_is_set(m: &LinuxMemory) -> bool {
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

fn cpu_is_set(c: &LinuxCpu) -> bool {
    c.shares().is_some_and(|v| v != 0)
        || c.quota().is_some_and(|v| v != 0)
        || c.period().is_some_and(|v| v != 0)
        || c.burst().is_some()
        || c.realtime_runtime().is_some_and(|v| v != 0)
        || c.realtime_period().is_some_and(|v| v != 0)
        || c.idle().is_some()
}

fn blkio_is_set(b: &LinuxBlockIo) -> bool {
    let any = |v: &Option<Vec<LinuxThrottleDevice>>| v.as_ref().is_some_and(|v| !v.is_empty());
    b.weight().is_some_and(|w| w != 0)
        || b.leaf_weight().is_some_and(|w| w != 0)
        || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
        || any(b.throttle_read_bps_device())
        || any(b.throttle_write_bps_device())
        || any(b.throttle_read_iops_device())
        || any(b.throttle_write_iops_device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::fs::tests::{parse, FakeCgroup};
    use std::collections::BTreeMap;

    fn resources(json: &str) -> LinuxResources {
        parse(json)
    }

    /// A hybrid layout of fake directories: v1 `memory` and `pids`, and a
    /// cgroup2 root offering `hugetlb` with the container below it.
    fn hybrid(cg: &FakeCgroup) -> CgroupPaths {
        for (f, v) in [
            ("memory/memory.limit_in_bytes", ""),
            ("memory/memory.soft_limit_in_bytes", ""),
            ("pids/pids.max", ""),
            ("unified/cgroup.controllers", "hugetlb"),
            ("unified/cgroup.subtree_control", ""),
            ("unified/c/cgroup.controllers", ""),
            ("unified/c/hugetlb.2MB.max", ""),
        ] {
            cg.put(f, v);
        }
        let mut v1 = BTreeMap::new();
        v1.insert("memory".to_string(), cg.dir().join("memory"));
        v1.insert("pids".to_string(), cg.dir().join("pids"));
        CgroupPaths {
            unified: Some(cg.dir().join("unified/c")),
            v1,
        }
    }

    #[test]
    fn each_field_goes_to_its_hierarchy() {
        let cg = FakeCgroup::new("dispatch", &[]);
        let paths = hybrid(&cg);
        let r = resources(
            r#"{"memory":{"limit":1048576,"reservation":524288},"pids":{"limit":-1},
                "hugepageLimits":[{"pageSize":"2MB","limit":4194304}]}"#,
        );
        let w = apply(&paths, &r).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(cg.get("memory/memory.limit_in_bytes"), "1048576");
        assert_eq!(cg.get("memory/memory.soft_limit_in_bytes"), "524288");
        assert_eq!(cg.get("pids/pids.max"), "max");
        assert_eq!(cg.get("unified/c/hugetlb.2MB.max"), "4194304");
        assert_eq!(cg.get("unified/cgroup.subtree_control"), "+hugetlb");
    }

    #[test]
    fn unset_fields_touch_nothing() {
        let cg = FakeCgroup::new("unset", &[]);
        let paths = hybrid(&cg);
        // 0 is "unset" for runc's shares; cpu has no hierarchy here, and is
        // not asked for. (A `pids` without a limit is dropped when the
        // config is read: spec::without_empty_pids.)
        let r = resources(r#"{"cpu":{"shares":0},"memory":{}}"#);
        apply(&paths, &r).unwrap();
        assert_eq!(cg.get("pids/pids.max"), "");
    }

    #[test]
    fn a_field_without_a_controller_is_an_error() {
        let cg = FakeCgroup::new("missing", &[]);
        let paths = hybrid(&cg);
        for (json, want) in [
            (
                r#"{"cpu":{"shares":512}}"#,
                "linux.resources.cpu: cannot set: the cpu cgroup controller is not available on this host",
            ),
            (
                r#"{"blockIO":{"weight":100}}"#,
                "linux.resources.blockIO: cannot set: the blkio/io cgroup controller",
            ),
            (
                r#"{"network":{"classID":1}}"#,
                "linux.resources.network.classID: cannot set: the net_cls cgroup controller",
            ),
        ] {
            let e = apply(&paths, &resources(json)).unwrap_err().to_string();
            assert!(e.starts_with(want), "{e}");
        }
    }

    #[test]
    fn unified_is_refused_on_a_hybrid_host() {
        let cg = FakeCgroup::new("unified-hybrid", &[]);
        let paths = hybrid(&cg);
        let e = apply(&paths, &resources(r#"{"unified":{}}"#))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "linux.resources.unified: invalid configuration: cannot use unified on cgroup v1"
        );
    }

    #[test]
    fn unified_needs_cgroup2() {
        let cg = FakeCgroup::new("unified-v1", &[]);
        let mut paths = hybrid(&cg);
        paths.unified = None;
        let e = apply(&paths, &resources(r#"{"unified":{"pids.max":"10"}}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot use unified on cgroup v1"), "{e}");
    }
}
