//! ps, pause, resume, update, events: the commands that work on a
//! container's cgroups.

use crate::cli::{EventsArgs, PsArgs, UpdateArgs};
use crate::logging::{Level, Logger};
use anyhow::{anyhow, bail, Context, Result};
use libkeel::oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};
use libkeel::Container;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

pub fn pause(root: &Path, id: &str) -> Result<i32> {
    Container::load(root, id)?.pause()?;
    Ok(0)
}

pub fn resume(root: &Path, id: &str) -> Result<i32> {
    Container::load(root, id)?.resume()?;
    Ok(0)
}

/// `ps`: the container's pids as a JSON array, or ps(1)'s output filtered
/// to the container's processes (runc's behaviour, header included).
pub fn ps(root: &Path, a: &PsArgs) -> Result<i32> {
    let c = Container::load(root, &a.id)?;
    let pids = c.processes()?;
    match a.format.as_str() {
        "json" => {
            // Go encodes an empty (nil) slice as null; runc prints that.
            let text = if pids.is_empty() {
                "null".to_string()
            } else {
                serde_json::to_string(&pids)?
            };
            crate::emit(&format!("{text}\n"));
            return Ok(0);
        }
        "table" => {}
        _ => bail!("invalid format option"),
    }
    let args: Vec<&str> = if a.ps_args.is_empty() {
        vec!["-ef"]
    } else {
        a.ps_args.iter().map(String::as_str).collect()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("run ps")?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        bail!("{}: {text}", out.status);
    }
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_index = header
        .split_whitespace()
        .position(|t| t == "PID")
        .ok_or_else(|| anyhow!("couldn't find PID field in ps output"))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{header}")?;
    for line in lines.filter(|l| !l.is_empty()) {
        let field = line.split_whitespace().nth(pid_index).unwrap_or_default();
        let pid: i32 = field
            .parse()
            .map_err(|e| anyhow!("unable to parse pid: {e}"))?;
        if pids.contains(&pid) {
            writeln!(stdout, "{line}")?;
        }
    }
    Ok(0)
}

/// runc's event envelope (types.Event), fields in its order.
#[derive(serde::Serialize)]
struct Event<'a, T: serde::Serialize> {
    #[serde(rename = "type")]
    typ: &'static str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a T>,
}

/// `events`: with `--stats`, one runc event envelope with the container's
/// stats; otherwise, as runc, a stream of them: stats every `--interval`,
/// `{"type":"oom","id":…}` at each OOM, until the container dies.
pub fn events(root: &Path, a: &EventsArgs, log: &Logger) -> Result<i32> {
    let c = Container::load(root, &a.id)?;
    if c.status() == libkeel::Status::Stopped {
        // runc's events.go words.
        bail!("container with id {} is not running", a.id);
    }
    if a.stats {
        print_event("stats", &a.id, Some(&c.stats()?))?;
        return Ok(0);
    }
    let interval = go_duration(&a.interval)
        .map_err(|e| anyhow!("invalid value {:?} for flag --interval: {e}", a.interval))?;
    if interval.is_zero() {
        bail!("duration interval must be greater than 0");
    }
    let Some(pidfd) = c.pidfd() else {
        bail!("container with id {} is not running", a.id);
    };
    let mut oom = c.oom_watch()?;
    let report_ooms = |oom: &mut Option<libkeel::cgroups::OomWatch>| -> Result<()> {
        let n = match oom.as_mut().map(|w| w.read()).transpose()? {
            Some(Some(n)) => n,
            Some(None) => {
                *oom = None; // the cgroup is gone
                0
            }
            None => 0,
        };
        for _ in 0..n {
            print_event::<()>("oom", &a.id, None)?;
        }
        Ok(())
    };
    let mut next_stats = Instant::now() + interval;
    loop {
        let wait = next_stats.saturating_duration_since(Instant::now());
        let timeout =
            PollTimeout::try_from(wait.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        if let Some(w) = &oom {
            fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("poll"),
        }
        let died = fds[0].any().unwrap_or(false);
        drop(fds);
        // Also when the init died: its own OOM kill is the last news.
        report_ooms(&mut oom)?;
        if died {
            return Ok(0);
        }
        if Instant::now() >= next_stats {
            // As runc: a failed read is logged and the stream goes on.
            match c.stats() {
                Ok(s) => print_event("stats", &a.id, Some(&s))?,
                Err(e) => log.log(Level::Error, &format!("{e}")),
            }
            next_stats += interval;
        }
    }
}

fn print_event<T: serde::Serialize>(typ: &'static str, id: &str, data: Option<&T>) -> Result<()> {
    let event = Event { typ, id, data };
    crate::emit(&format!("{}\n", serde_json::to_string(&event)?));
    Ok(())
}

/// A duration as Go's time.ParseDuration reads it: `5s`, `100ms`, `1m30s`,
/// `1.5h`.
pub fn go_duration(s: &str) -> std::result::Result<Duration, String> {
    let mut rest = s;
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err("invalid duration \"\"".into());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..n]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("missing unit in duration {s:?}")),
            other => return Err(format!("unknown unit {other:?} in duration {s:?}")),
        };
        rest = &rest[u..];
        total += num * unit;
    }
    Ok(Duration::from_secs_f64(total))
}

/// `update`: the resources from --resources (a file, or `-` for stdin, as
/// containerd's shim passes them) or from the flags, applied to the
/// container's cgroups. Only what is given changes.
pub fn update(root: &Path, a: &UpdateArgs, log: &Logger) -> Result<i32> {
    let mut c = Container::load(root, &a.id)?;
    c.update_intel_rdt(a.l3_cache_schema.as_deref(), a.mem_bw_schema.as_deref())?;
    let r = match &a.resources {
        Some(src) => read_resources(src)?,
        None => resources_from_flags(a)?,
    };
    #[allow(deprecated)]
    let kernel = r.memory().as_ref().and_then(|m| m.kernel());
    if kernel.is_some_and(|k| k != 0)
        || r.memory()
            .as_ref()
            .and_then(|m| m.kernel_tcp())
            .is_some_and(|k| k != 0)
    {
        log.log(
            Level::Warning,
            "Kernel memory settings are ignored and will be removed",
        );
    }
    for w in c.update(&r)? {
        log.log(Level::Warning, &w);
    }
    Ok(0)
}

fn read_resources(src: &str) -> Result<LinuxResources> {
    let text = if src == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("--resources: read stdin")?;
        s
    } else {
        std::fs::read_to_string(src).with_context(|| format!("--resources: read {src}"))?
    };
    libkeel::spec::parse_resources(&text)
        .map_err(|e| anyhow!("--resources: invalid resources JSON: {e}"))
}

fn parse<T: std::str::FromStr>(opt: &str, v: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    v.parse()
        .map_err(|e| anyhow!("invalid value for {opt}: {e}"))
}

/// A memory size as runc takes it (go-units RAMInBytes): a number with an
/// optional binary unit, `512k`, `1.5g`, `64MiB`; `-1` is unlimited.
pub fn ram_in_bytes(opt: &str, v: &str) -> Result<i64> {
    if v == "-1" {
        return Ok(-1);
    }
    let invalid = || anyhow!("invalid value for {opt}: invalid size: '{v}'");
    let s = v.trim();
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(num_end);
    let num: f64 = num.parse().map_err(|_| invalid())?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024f64.powi(2),
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(invalid()),
    };
    Ok((num * mult) as i64)
}

fn resources_from_flags(a: &UpdateArgs) -> Result<LinuxResources> {
    let mut r = LinuxResources::default();
    let mut mem = LinuxMemory::default();
    let mut mem_set = false;
    for (opt, val, set) in [
        (
            "memory",
            &a.memory,
            LinuxMemory::set_limit as fn(&mut LinuxMemory, Option<i64>) -> &mut LinuxMemory,
        ),
        ("memory-swap", &a.memory_swap, LinuxMemory::set_swap),
        (
            "memory-reservation",
            &a.memory_reservation,
            LinuxMemory::set_reservation,
        ),
        (
            "kernel-memory-tcp",
            &a.kernel_memory_tcp,
            LinuxMemory::set_kernel_tcp,
        ),
    ] {
        if let Some(v) = val.as_deref().filter(|v| !v.is_empty()) {
            set(&mut mem, Some(ram_in_bytes(opt, v)?));
            mem_set = true;
        }
    }
    if let Some(v) = a.kernel_memory.as_deref().filter(|v| !v.is_empty()) {
        #[allow(deprecated)]
        mem.set_kernel(Some(ram_in_bytes("kernel-memory", v)?));
        mem_set = true;
    }
    if mem_set {
        r.set_memory(Some(mem));
    }

    let mut cpu = LinuxCpu::default();
    let mut cpu_set = false;
    if let Some(v) = &a.cpu_share {
        cpu.set_shares(Some(parse("cpu-share", v)?));
        cpu_set = true;
    }
    if let Some(v) = &a.cpu_period {
        cpu.set_period(Some(parse("cpu-period", v)?));
        cpu_set = true;
    }
    if let Some(v) = &a.cpu_quota {
        cpu.set_quota(Some(parse("cpu-quota", v)?));
        cpu_set = true;
    }
    if let Some(v) = &a.cpu_burst {
        cpu.set_burst(Some(parse("cpu-burst", v)?));
        cpu_set = true;
    }
    if let Some(v) = &a.cpu_rt_period {
        cpu.set_realtime_period(Some(parse("cpu-rt-period", v)?));
        cpu_set = true;
    }
    if let Some(v) = &a.cpu_rt_runtime {
        cpu.set_realtime_runtime(Some(parse("cpu-rt-runtime", v)?));
        cpu_set = true;
    }
    if let Some(v) = &a.cpu_idle {
        cpu.set_idle(Some(parse("cpu-idle", v)?));
        cpu_set = true;
    }
    if let Some(v) = a.cpuset_cpus.as_ref().filter(|v| !v.is_empty()) {
        cpu.set_cpus(Some(v.clone()));
        cpu_set = true;
    }
    if let Some(v) = a.cpuset_mems.as_ref().filter(|v| !v.is_empty()) {
        cpu.set_mems(Some(v.clone()));
        cpu_set = true;
    }
    if cpu_set {
        r.set_cpu(Some(cpu));
    }
    if let Some(v) = &a.blkio_weight {
        let mut b = LinuxBlockIo::default();
        b.set_weight(Some(parse("blkio-weight", v)?));
        r.set_block_io(Some(b));
    }
    if let Some(v) = &a.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(parse("pids-limit", v)?);
        r.set_pids(Some(p));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_go_parses_them() {
        assert_eq!(go_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(go_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(go_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(go_duration("0").unwrap(), Duration::ZERO);
        assert!(go_duration("5").is_err());
        assert!(go_duration("5x").is_err());
        assert!(go_duration("").is_err());
    }

    #[test]
    fn ram_sizes_as_go_units() {
        assert_eq!(ram_in_bytes("memory", "1024").unwrap(), 1024);
        assert_eq!(ram_in_bytes("memory", "512k").unwrap(), 512 * 1024);
        assert_eq!(ram_in_bytes("memory", "64MiB").unwrap(), 64 << 20);
        assert_eq!(ram_in_bytes("memory", "1.5g").unwrap(), 3 << 29);
        assert_eq!(ram_in_bytes("memory", "-1").unwrap(), -1);
        let e = ram_in_bytes("memory", "lots").unwrap_err().to_string();
        assert_eq!(e, "invalid value for memory: invalid size: 'lots'");
    }
}
