//! Resource usage of a container, in the shape of runc's `types.Stats`
//! (what `runc events --stats` prints as the event's `data`): the same JSON
//! field names, and the same omitted-when-zero fields.

use super::convert::{hugepage_size_name, parse_list};
use super::fs::{read, read_u64};
use super::path::CgroupPaths;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

fn zero(v: &u64) -> bool {
    *v == 0
}

/// All of a container's statistics (runc `types.Stats`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    /// CPU usage and throttling.
    pub cpu: Cpu,
    /// The cpuset controller's settings.
    pub cpuset: CpuSet,
    /// Memory usage.
    pub memory: Memory,
    /// Process count.
    pub pids: Pids,
    /// Block I/O.
    pub blkio: Blkio,
    /// Huge page usage by page size (`2MB`, `1GB`).
    pub hugetlb: BTreeMap<String, Hugetlb>,
    /// Intel RDT is not supported: always `{}`.
    pub intel_rdt: BTreeMap<String, serde_json::Value>,
    /// Network statistics are not collected: always `null` (as runc, which
    /// fills them only for its own network setups).
    pub network_interfaces: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
/// CPU statistics (cpu, cpuacct).
pub struct Cpu {
    /// CPU time used.
    pub usage: CpuUsage,
    /// CFS throttling.
    pub throttling: Throttling,
}

/// CPU time in nanoseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CpuUsage {
    #[serde(default, skip_serializing_if = "zero")]
    /// In total.
    pub total: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    /// By CPU.
    pub percpu: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    /// By CPU, in the kernel.
    pub percpu_kernel: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    /// By CPU, in user space.
    pub percpu_user: Vec<u64>,
    /// In the kernel.
    pub kernel: u64,
    /// In user space.
    pub user: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
/// CFS bandwidth throttling (`cpu.stat`).
pub struct Throttling {
    #[serde(default, skip_serializing_if = "zero")]
    /// Enforcement periods elapsed.
    pub periods: u64,
    #[serde(default, rename = "throttledPeriods", skip_serializing_if = "zero")]
    /// Periods in which the group was throttled.
    pub throttled_periods: u64,
    /// Nanoseconds.
    #[serde(default, rename = "throttledTime", skip_serializing_if = "zero")]
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
/// The cpuset controller's settings.
pub struct CpuSet {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    /// `cpuset.cpus`, as a list.
    pub cpus: Vec<u16>,
    /// `cpuset.cpu_exclusive` (v1).
    pub cpu_exclusive: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    /// `cpuset.mems`, as a list.
    pub mems: Vec<u16>,
    /// `cpuset.mem_hardwall` (v1).
    pub mem_hardwall: u64,
    /// `cpuset.mem_exclusive` (v1).
    pub mem_exclusive: u64,
    /// `cpuset.memory_migrate` (v1).
    pub memory_migrate: u64,
    /// `cpuset.memory_spread_page` (v1).
    pub memory_spread_page: u64,
    /// `cpuset.memory_spread_slab` (v1).
    pub memory_spread_slab: u64,
    /// `cpuset.memory_pressure` (v1).
    pub memory_pressure: u64,
    /// `cpuset.sched_load_balance` (v1).
    pub sched_load_balance: u64,
    /// `cpuset.sched_relax_domain_level` (v1).
    pub sched_relax_domain_level: i64,
}

/// One memory counter set; `limit` is u64::MAX-ish when unlimited, as the
/// kernel reports it (v2 "max" reads as u64::MAX, as runc).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MemoryEntry {
    /// The limit, in bytes.
    pub limit: u64,
    #[serde(default, skip_serializing_if = "zero")]
    /// Bytes in use.
    pub usage: u64,
    #[serde(default, skip_serializing_if = "zero")]
    /// The most ever in use.
    pub max: u64,
    /// How often the limit was hit.
    pub failcnt: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
/// Memory statistics.
pub struct Memory {
    /// Page cache (v1 `cache`, v2 `file` of memory.stat).
    #[serde(default, skip_serializing_if = "zero")]
    pub cache: u64,
    /// Memory.
    pub usage: MemoryEntry,
    /// Memory+swap, as v1 reports it (v2: swap plus memory, as runc).
    pub swap: MemoryEntry,
    /// Kernel memory (v1).
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    /// Kernel TCP buffers (v1).
    pub kernel_tcp: MemoryEntry,
    /// memory.stat as it stands (rss, cache, swap, anon, file, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
/// The pids controller's counters.
pub struct Pids {
    #[serde(default, skip_serializing_if = "zero")]
    /// Processes in the cgroup.
    pub current: u64,
    /// 0 when unlimited.
    #[serde(default, skip_serializing_if = "zero")]
    pub limit: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
/// One block I/O counter, per device and operation.
pub struct BlkioEntry {
    #[serde(default, skip_serializing_if = "zero")]
    /// The device's major number.
    pub major: u64,
    #[serde(default, skip_serializing_if = "zero")]
    /// The device's minor number.
    pub minor: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    /// The operation (`Read`, `Write`, `Sync`, `Async`, `Discard`, `Total`), or empty.
    pub op: String,
    #[serde(default, skip_serializing_if = "zero")]
    /// The counter's value.
    pub value: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
/// Block I/O statistics (blkio on v1, io on v2).
pub struct Blkio {
    #[serde(
        default,
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    /// Bytes transferred (v1 `io_service_bytes_recursive`, v2 `io.stat` rbytes/wbytes).
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(
        default,
        rename = "ioServicedRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    /// I/O operations (v1 `io_serviced_recursive`, v2 `io.stat` rios/wios).
    pub io_serviced_recursive: Vec<BlkioEntry>,
    #[serde(
        default,
        rename = "ioQueueRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    /// Requests queued (v1 CFQ).
    pub io_queued_recursive: Vec<BlkioEntry>,
    #[serde(
        default,
        rename = "ioServiceTimeRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    /// Time spent servicing requests (v1 CFQ).
    pub io_service_time_recursive: Vec<BlkioEntry>,
    #[serde(
        default,
        rename = "ioWaitTimeRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    /// Time requests waited (v1 CFQ).
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    #[serde(
        default,
        rename = "ioMergedRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    /// Requests merged (v1 CFQ).
    pub io_merged_recursive: Vec<BlkioEntry>,
    #[serde(
        default,
        rename = "ioTimeRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    /// Disk time allocated (v1 CFQ).
    pub io_time_recursive: Vec<BlkioEntry>,
    #[serde(
        default,
        rename = "sectorsRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    /// Sectors transferred (v1 CFQ).
    pub sectors_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
/// Huge pages of one size.
pub struct Hugetlb {
    #[serde(default, skip_serializing_if = "zero")]
    /// Bytes in use.
    pub usage: u64,
    #[serde(default, skip_serializing_if = "zero")]
    /// The most ever in use.
    pub max: u64,
    /// How often the limit was hit.
    pub failcnt: u64,
}

/// "key value" lines (cpu.stat, memory.stat, cpuacct.stat).
fn kv(dir: &Path, file: &str) -> BTreeMap<String, u64> {
    read(dir, file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn numbers(dir: &Path, file: &str) -> Vec<u64> {
    read(dir, file)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect()
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

impl CgroupPaths {
    /// Reads the container's statistics from whichever hierarchy has each
    /// controller (v1 first, as for limits). Missing files read as zero.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        let v2 = self.unified.as_deref();
        match self.v1_dir("cpuacct") {
            Some(d) => cpu_v1(d, self.v1_dir("cpu"), &mut s.cpu),
            None => {
                if let Some(d) = v2 {
                    cpu_v2(d, &mut s.cpu)
                }
            }
        }
        if let Some(d) = self.v1_dir("cpuset").or(v2) {
            cpuset(d, self.v1_dir("cpuset").is_some(), &mut s.cpuset);
        }
        match (self.v1_dir("memory"), v2) {
            (Some(d), _) => memory_v1(d, &mut s.memory),
            (None, Some(d)) if d.join("memory.current").exists() => memory_v2(d, &mut s.memory),
            _ => {}
        }
        if let Some(d) = self
            .v1_dir("pids")
            .or(v2.filter(|d| d.join("pids.current").exists()))
        {
            s.pids.current = read_u64(d, "pids.current").unwrap_or(0);
            s.pids.limit = read_u64(d, "pids.max")
                .filter(|&m| m != u64::MAX)
                .unwrap_or(0);
        }
        match (self.v1_dir("blkio"), v2) {
            (Some(d), _) => blkio_v1(d, &mut s.blkio),
            (None, Some(d)) => io_v2(d, &mut s.blkio),
            _ => {}
        }
        let huge = self
            .v1_dir("hugetlb")
            .map(|d| (d, true))
            .or(v2.map(|d| (d, false)));
        if let Some((d, is_v1)) = huge {
            hugetlb(d, is_v1, &mut s.hugetlb);
        }
        s
    }
}

fn cpu_v1(acct: &Path, cpu: Option<&Path>, out: &mut Cpu) {
    let u = &mut out.usage;
    u.total = read_u64(acct, "cpuacct.usage").unwrap_or(0);
    u.percpu = numbers(acct, "cpuacct.usage_percpu");
    // cpuacct.usage_all: "cpu user system" then one row per cpu.
    for line in read(acct, "cpuacct.usage_all")
        .unwrap_or_default()
        .lines()
        .skip(1)
    {
        let f: Vec<u64> = line
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        if f.len() == 3 {
            u.percpu_user.push(f[1]);
            u.percpu_kernel.push(f[2]);
        }
    }
    let stat = kv(acct, "cpuacct.stat");
    let ns = |ticks: u64| ticks.saturating_mul(1_000_000_000) / clock_ticks();
    u.user = stat.get("user").copied().map(ns).unwrap_or(0);
    u.kernel = stat.get("system").copied().map(ns).unwrap_or(0);
    if let Some(cpu) = cpu {
        let st = kv(cpu, "cpu.stat");
        out.throttling = Throttling {
            periods: st.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: st.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: st.get("throttled_time").copied().unwrap_or(0),
        };
    }
}

fn cpu_v2(dir: &Path, out: &mut Cpu) {
    let st = kv(dir, "cpu.stat");
    let us = |k: &str| st.get(k).copied().unwrap_or(0).saturating_mul(1000);
    out.usage.total = us("usage_usec");
    out.usage.user = us("user_usec");
    out.usage.kernel = us("system_usec");
    out.throttling = Throttling {
        periods: st.get("nr_periods").copied().unwrap_or(0),
        throttled_periods: st.get("nr_throttled").copied().unwrap_or(0),
        throttled_time: us("throttled_usec"),
    };
}

fn cpuset(dir: &Path, is_v1: bool, out: &mut CpuSet) {
    let (cpus, mems) = if is_v1 {
        ("cpuset.cpus", "cpuset.mems")
    } else {
        ("cpuset.cpus.effective", "cpuset.mems.effective")
    };
    out.cpus = parse_list(&read(dir, cpus).unwrap_or_default());
    out.mems = parse_list(&read(dir, mems).unwrap_or_default());
    if !is_v1 {
        return;
    }
    let n = |f: &str| read_u64(dir, f).unwrap_or(0);
    out.cpu_exclusive = n("cpuset.cpu_exclusive");
    out.mem_hardwall = n("cpuset.mem_hardwall");
    out.mem_exclusive = n("cpuset.mem_exclusive");
    out.memory_migrate = n("cpuset.memory_migrate");
    out.memory_spread_page = n("cpuset.memory_spread_page");
    out.memory_spread_slab = n("cpuset.memory_spread_slab");
    out.memory_pressure = n("cpuset.memory_pressure");
    out.sched_load_balance = n("cpuset.sched_load_balance");
    out.sched_relax_domain_level = read(dir, "cpuset.sched_relax_domain_level")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
}

fn memory_entry_v1(dir: &Path, prefix: &str) -> MemoryEntry {
    let n = |f: &str| read_u64(dir, &format!("{prefix}{f}")).unwrap_or(0);
    MemoryEntry {
        limit: n("limit_in_bytes"),
        usage: n("usage_in_bytes"),
        max: n("max_usage_in_bytes"),
        failcnt: n("failcnt"),
    }
}

fn memory_v1(dir: &Path, out: &mut Memory) {
    out.raw = kv(dir, "memory.stat");
    out.cache = out.raw.get("cache").copied().unwrap_or(0);
    out.usage = memory_entry_v1(dir, "memory.");
    out.swap = memory_entry_v1(dir, "memory.memsw.");
    out.kernel = memory_entry_v1(dir, "memory.kmem.");
    out.kernel_tcp = memory_entry_v1(dir, "memory.kmem.tcp.");
}

fn memory_v2(dir: &Path, out: &mut Memory) {
    out.raw = kv(dir, "memory.stat");
    out.cache = out.raw.get("file").copied().unwrap_or(0);
    let events = kv(dir, "memory.events");
    out.usage = MemoryEntry {
        limit: read_u64(dir, "memory.max").unwrap_or(u64::MAX),
        usage: read_u64(dir, "memory.current").unwrap_or(0),
        max: read_u64(dir, "memory.peak").unwrap_or(0),
        failcnt: events.get("max").copied().unwrap_or(0),
    };
    // v1 reports memory+swap; do the same (as runc) for compatibility.
    let swap_limit = read_u64(dir, "memory.swap.max").unwrap_or(u64::MAX);
    out.swap = MemoryEntry {
        limit: if swap_limit == u64::MAX || out.usage.limit == u64::MAX {
            u64::MAX
        } else {
            swap_limit + out.usage.limit
        },
        usage: read_u64(dir, "memory.swap.current").unwrap_or(0) + out.usage.usage,
        max: read_u64(dir, "memory.swap.peak").unwrap_or(0),
        failcnt: kv(dir, "memory.swap.events")
            .get("fail")
            .copied()
            .unwrap_or(0),
    };
}

/// "8:0 Read 4096" lines; the trailing "Total N" line has no device.
fn blkio_entries(dir: &Path, file: &str) -> Vec<BlkioEntry> {
    read(dir, file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (major, minor) = f.first()?.split_once(':')?;
            let (op, value) = match f.len() {
                3 => (f[1].to_string(), f[2]),
                2 => (String::new(), f[1]),
                _ => return None,
            };
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op,
                value: value.parse().ok()?,
            })
        })
        .collect()
}

fn blkio_v1(dir: &Path, out: &mut Blkio) {
    // As runc: CFQ's files, else BFQ's, else the throttle counters.
    let cfq = dir.join("blkio.io_serviced_recursive").exists();
    let bfq = dir.join("blkio.bfq.io_serviced_recursive").exists();
    if cfq || bfq {
        let p = if cfq { "blkio." } else { "blkio.bfq." };
        let e = |f: &str| blkio_entries(dir, &format!("{p}{f}"));
        out.io_service_bytes_recursive = e("io_service_bytes_recursive");
        out.io_serviced_recursive = e("io_serviced_recursive");
        out.io_queued_recursive = e("io_queued_recursive");
        out.io_service_time_recursive = e("io_service_time_recursive");
        out.io_wait_time_recursive = e("io_wait_time_recursive");
        out.io_merged_recursive = e("io_merged_recursive");
        out.io_time_recursive = e("time_recursive");
        out.sectors_recursive = e("sectors_recursive");
    } else {
        out.io_service_bytes_recursive =
            blkio_entries(dir, "blkio.throttle.io_service_bytes_recursive");
        out.io_serviced_recursive = blkio_entries(dir, "blkio.throttle.io_serviced_recursive");
    }
}

fn io_v2(dir: &Path, out: &mut Blkio) {
    for line in read(dir, "io.stat").unwrap_or_default().lines() {
        let mut f = line.split_whitespace();
        let Some((major, minor)) = f.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut out.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut out.io_service_bytes_recursive, "Write"),
                "dbytes" => (&mut out.io_service_bytes_recursive, "Discard"),
                "rios" => (&mut out.io_serviced_recursive, "Read"),
                "wios" => (&mut out.io_serviced_recursive, "Write"),
                "dios" => (&mut out.io_serviced_recursive, "Discard"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            });
        }
    }
}

fn hugetlb(dir: &Path, is_v1: bool, out: &mut BTreeMap<String, Hugetlb>) {
    let Ok(sizes) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return;
    };
    for e in sizes.flatten() {
        let Some(size) = hugepage_size_name(&e.file_name().to_string_lossy()) else {
            continue;
        };
        let h = if is_v1 {
            let n = |f: &str| read_u64(dir, &format!("hugetlb.{size}.{f}"));
            let Some(usage) = n("usage_in_bytes") else {
                continue;
            };
            Hugetlb {
                usage,
                max: n("max_usage_in_bytes").unwrap_or(0),
                failcnt: n("failcnt").unwrap_or(0),
            }
        } else {
            let Some(usage) = read_u64(dir, &format!("hugetlb.{size}.current")) else {
                continue;
            };
            Hugetlb {
                usage,
                max: 0,
                failcnt: kv(dir, &format!("hugetlb.{size}.events"))
                    .get("max")
                    .copied()
                    .unwrap_or(0),
            }
        };
        out.insert(size, h);
    }
}
