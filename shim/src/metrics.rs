//! libkeel's cgroup statistics as containerd's metrics protobufs: the v1
//! `io.containerd.cgroups.v1.Metrics`, or the v2 one on a cgroup v2 host
//! (what the runc shim reports on each).

use containerd_shim::protos::cgroups::metrics as v1;
use containerd_shim::protos::cgroups_v2::metrics as v2;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};
use libkeel::cgroups::stats::{BlkioEntry, Stats};

/// True on a pure cgroup v2 host.
pub fn host_is_v2() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The metrics for `stats`, packed as containerd's typeurl expects.
pub fn to_any(
    stats: &Stats,
    v2_host: bool,
) -> Result<Any, containerd_shim::protos::protobuf::Error> {
    let (type_url, value) = if v2_host {
        (
            "io.containerd.cgroups.v2.Metrics",
            to_v2(stats).write_to_bytes()?,
        )
    } else {
        (
            "io.containerd.cgroups.v1.Metrics",
            to_v1(stats).write_to_bytes()?,
        )
    };
    Ok(Any {
        type_url: type_url.to_string(),
        value,
        ..Default::default()
    })
}

fn raw(stats: &Stats, key: &str) -> u64 {
    stats.memory.raw.get(key).copied().unwrap_or(0)
}

fn entry(e: &libkeel::cgroups::stats::MemoryEntry) -> MessageField<v1::MemoryEntry> {
    MessageField::some(v1::MemoryEntry {
        limit: e.limit,
        usage: e.usage,
        max: e.max,
        failcnt: e.failcnt,
        ..Default::default()
    })
}

fn blkio(list: &[BlkioEntry]) -> Vec<v1::BlkIOEntry> {
    list.iter()
        .map(|e| v1::BlkIOEntry {
            op: e.op.clone(),
            major: e.major,
            minor: e.minor,
            value: e.value,
            ..Default::default()
        })
        .collect()
}

pub fn to_v1(s: &Stats) -> v1::Metrics {
    let r = |k: &str| raw(s, k);
    v1::Metrics {
        hugetlb: s
            .hugetlb
            .iter()
            .map(|(size, h)| v1::HugetlbStat {
                usage: h.usage,
                max: h.max,
                failcnt: h.failcnt,
                pagesize: size.clone(),
                ..Default::default()
            })
            .collect(),
        pids: MessageField::some(v1::PidsStat {
            current: s.pids.current,
            limit: s.pids.limit,
            ..Default::default()
        }),
        cpu: MessageField::some(v1::CPUStat {
            usage: MessageField::some(v1::CPUUsage {
                total: s.cpu.usage.total,
                kernel: s.cpu.usage.kernel,
                user: s.cpu.usage.user,
                per_cpu: s.cpu.usage.percpu.clone(),
                ..Default::default()
            }),
            throttling: MessageField::some(v1::Throttle {
                periods: s.cpu.throttling.periods,
                throttled_periods: s.cpu.throttling.throttled_periods,
                throttled_time: s.cpu.throttling.throttled_time,
                ..Default::default()
            }),
            ..Default::default()
        }),
        memory: MessageField::some(v1::MemoryStat {
            cache: s.memory.cache,
            rss: r("rss"),
            rss_huge: r("rss_huge"),
            mapped_file: r("mapped_file"),
            dirty: r("dirty"),
            writeback: r("writeback"),
            pg_pg_in: r("pgpgin"),
            pg_pg_out: r("pgpgout"),
            pg_fault: r("pgfault"),
            pg_maj_fault: r("pgmajfault"),
            inactive_anon: r("inactive_anon"),
            active_anon: r("active_anon"),
            inactive_file: r("inactive_file"),
            active_file: r("active_file"),
            unevictable: r("unevictable"),
            hierarchical_memory_limit: r("hierarchical_memory_limit"),
            hierarchical_swap_limit: r("hierarchical_memsw_limit"),
            total_cache: r("total_cache"),
            total_rss: r("total_rss"),
            total_rss_huge: r("total_rss_huge"),
            total_mapped_file: r("total_mapped_file"),
            total_dirty: r("total_dirty"),
            total_writeback: r("total_writeback"),
            total_pg_pg_in: r("total_pgpgin"),
            total_pg_pg_out: r("total_pgpgout"),
            total_pg_fault: r("total_pgfault"),
            total_pg_maj_fault: r("total_pgmajfault"),
            total_inactive_anon: r("total_inactive_anon"),
            total_active_anon: r("total_active_anon"),
            total_inactive_file: r("total_inactive_file"),
            total_active_file: r("total_active_file"),
            total_unevictable: r("total_unevictable"),
            usage: entry(&s.memory.usage),
            swap: entry(&s.memory.swap),
            kernel: entry(&s.memory.kernel),
            kernel_tcp: entry(&s.memory.kernel_tcp),
            ..Default::default()
        }),
        blkio: MessageField::some(v1::BlkIOStat {
            io_service_bytes_recursive: blkio(&s.blkio.io_service_bytes_recursive),
            io_serviced_recursive: blkio(&s.blkio.io_serviced_recursive),
            io_queued_recursive: blkio(&s.blkio.io_queued_recursive),
            io_service_time_recursive: blkio(&s.blkio.io_service_time_recursive),
            io_wait_time_recursive: blkio(&s.blkio.io_wait_time_recursive),
            io_merged_recursive: blkio(&s.blkio.io_merged_recursive),
            io_time_recursive: blkio(&s.blkio.io_time_recursive),
            sectors_recursive: blkio(&s.blkio.sectors_recursive),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn to_v2(s: &Stats) -> v2::Metrics {
    let r = |k: &str| raw(s, k);
    v2::Metrics {
        pids: MessageField::some(v2::PidsStat {
            current: s.pids.current,
            limit: s.pids.limit,
            ..Default::default()
        }),
        cpu: MessageField::some(v2::CPUStat {
            // libkeel reports nanoseconds, as runc's stats.
            usage_usec: s.cpu.usage.total / 1000,
            user_usec: s.cpu.usage.user / 1000,
            system_usec: s.cpu.usage.kernel / 1000,
            nr_periods: s.cpu.throttling.periods,
            nr_throttled: s.cpu.throttling.throttled_periods,
            throttled_usec: s.cpu.throttling.throttled_time / 1000,
            ..Default::default()
        }),
        memory: MessageField::some(v2::MemoryStat {
            anon: r("anon"),
            file: r("file"),
            kernel_stack: r("kernel_stack"),
            slab: r("slab"),
            sock: r("sock"),
            shmem: r("shmem"),
            file_mapped: r("file_mapped"),
            file_dirty: r("file_dirty"),
            file_writeback: r("file_writeback"),
            anon_thp: r("anon_thp"),
            inactive_anon: r("inactive_anon"),
            active_anon: r("active_anon"),
            inactive_file: r("inactive_file"),
            active_file: r("active_file"),
            unevictable: r("unevictable"),
            slab_reclaimable: r("slab_reclaimable"),
            slab_unreclaimable: r("slab_unreclaimable"),
            pgfault: r("pgfault"),
            pgmajfault: r("pgmajfault"),
            usage: s.memory.usage.usage,
            usage_limit: s.memory.usage.limit,
            swap_usage: s.memory.swap.usage.saturating_sub(s.memory.usage.usage),
            swap_limit: s.memory.swap.limit,
            ..Default::default()
        }),
        hugetlb: s
            .hugetlb
            .iter()
            .map(|(size, h)| v2::HugeTlbStat {
                current: h.usage,
                max: h.max,
                pagesize: size.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_carries_the_numbers() {
        let mut s = Stats::default();
        s.pids.current = 3;
        s.cpu.usage.total = 5_000;
        s.memory.usage.usage = 4096;
        s.memory.raw.insert("total_rss".into(), 8192);
        let m = to_v1(&s);
        assert_eq!(m.pids.current, 3);
        assert_eq!(m.cpu.usage.total, 5_000);
        assert_eq!(m.memory.usage.usage, 4096);
        assert_eq!(m.memory.total_rss, 8192);
        let any = to_any(&s, false).expect("encode");
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
        assert_eq!(
            v1::Metrics::parse_from_bytes(&any.value).expect("decode"),
            m
        );
    }

    #[test]
    fn v2_converts_to_microseconds() {
        let mut s = Stats::default();
        s.cpu.usage.total = 7_000;
        s.memory.usage.usage = 100;
        s.memory.swap.usage = 150;
        let m = to_v2(&s);
        assert_eq!(m.cpu.usage_usec, 7);
        assert_eq!(m.memory.swap_usage, 50);
    }
}
