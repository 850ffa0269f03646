//! The conversions between the OCI (cgroup v1 shaped) resource values and
//! cgroup v2 files, with runc's formulas so that both give the same files.

/// cgroup v1 `cpu.shares` [2, 262144] to cgroup v2 `cpu.weight` [1, 10000],
/// as runc >= 1.3.2 (opencontainers/cgroups `ConvertCPUSharesToCgroupV2Value`,
/// runc PR #4785): a quadratic in log2(shares) that maps the minimum to 1,
/// the default 1024 to 100 and the maximum to 10000. 0 means unset.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    if shares <= 2 {
        return 1;
    }
    if shares >= 262_144 {
        return 10_000;
    }
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    10f64.powf(exponent).ceil() as u64
}

/// cgroup v1 `blkio.weight` [10, 1000] to cgroup v2 `io.weight` [1, 10000],
/// linearly as runc's `ConvertBlkIOToIOWeightValue`. 0 means unset.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    1 + (u64::from(weight).saturating_sub(10)) * 9999 / 990
}

/// The OCI `memory.swap` is memory+swap (v1 `memory.memsw.limit_in_bytes`);
/// cgroup v2's `memory.swap.max` is swap alone. As runc's
/// `ConvertMemorySwapToCgroupV2Value`: -1 is "max", 0 is "unset".
pub fn swap_to_v2(swap: i64, memory: i64) -> Result<i64, String> {
    match (swap, memory) {
        (0, -1) => Ok(-1),
        (-1 | 0, _) => Ok(swap),
        (_, -1) => Ok(swap),
        (_, 0) => Err("unable to set swap limit without memory limit".into()),
        (_, m) if m < 0 => Err(format!("invalid memory value: {m}")),
        (s, m) if s < m => Err("memory+swap limit should be >= memory limit".into()),
        (s, m) => Ok(s - m),
    }
}

/// A v2 limit as its file wants it: 0 is "do not write", negative "max".
pub fn v2_limit(v: i64) -> Option<String> {
    match v {
        0 => None,
        v if v < 0 => Some("max".into()),
        v => Some(v.to_string()),
    }
}

/// A "0-3,5,7-8" list (cpuset.cpus / cpuset.mems) as numbers.
pub fn parse_list(s: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u16>().ok()),
        }
    }
    out
}

/// A hugepage size directory name (`hugepages-2048kB`) as the cgroup files
/// name it (`2MB`), as runc's `HugePageSizes`.
pub fn hugepage_size_name(dir_name: &str) -> Option<String> {
    let kb: u64 = dir_name
        .strip_prefix("hugepages-")?
        .strip_suffix("kB")?
        .parse()
        .ok()?;
    Some(if kb >= 1 << 20 {
        format!("{}GB", kb >> 20)
    } else if kb >= 1 << 10 {
        format!("{}MB", kb >> 10)
    } else {
        format!("{kb}KB")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_to_weight_fits_min_default_max() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1 << 20), 10_000);
        // Computed with the same formula in Go's float64 arithmetic.
        assert_eq!(shares_to_weight(100), 17);
        assert_eq!(shares_to_weight(512), 59);
        assert_eq!(shares_to_weight(2048), 174);
        // Monotonic.
        let mut last = 0;
        for s in 2..=262_144u64 {
            let w = shares_to_weight(s);
            assert!(w >= last, "shares {s}: {w} < {last}");
            last = w;
        }
    }

    #[test]
    fn blkio_weight_linear() {
        assert_eq!(blkio_weight_to_io_weight(0), 0);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 1 + 490 * 9999 / 990);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
    }

    #[test]
    fn swap_conversion_as_runc() {
        assert_eq!(swap_to_v2(0, -1), Ok(-1));
        assert_eq!(swap_to_v2(-1, 100), Ok(-1));
        assert_eq!(swap_to_v2(0, 100), Ok(0));
        assert_eq!(swap_to_v2(300, -1), Ok(300));
        assert_eq!(swap_to_v2(300, 100), Ok(200));
        assert_eq!(swap_to_v2(100, 100), Ok(0));
        assert!(swap_to_v2(300, 0).is_err());
        assert!(swap_to_v2(50, 100).unwrap_err().contains(">= memory limit"));
        assert!(swap_to_v2(50, -5).is_err());
    }

    #[test]
    fn lists_and_names() {
        assert_eq!(parse_list("0-2,5\n"), vec![0, 1, 2, 5]);
        assert_eq!(parse_list(""), Vec::<u16>::new());
        assert_eq!(
            hugepage_size_name("hugepages-2048kB").as_deref(),
            Some("2MB")
        );
        assert_eq!(
            hugepage_size_name("hugepages-1048576kB").as_deref(),
            Some("1GB")
        );
        assert_eq!(v2_limit(-1).as_deref(), Some("max"));
        assert_eq!(v2_limit(0), None);
    }
}
