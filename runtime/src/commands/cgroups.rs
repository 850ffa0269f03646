//! ps, pause, resume, update, events: the commands that work on a
//! container's cgroups.

use crate::cli::{EventsArgs, PsArgs, UpdateArgs};
use crate::logging::{Level, Logger};
use anyhow::{anyhow, bail, Context, Result};
use libkeel::oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};
use libkeel::Container;
use std::io::Write;
use std::path::Path;

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
            println!("{text}");
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
    data: &'a T,
}

/// `events --stats`: one runc event envelope with the container's stats.
pub fn events(root: &Path, a: &EventsArgs) -> Result<i32> {
    if !a.stats {
        bail!("keel events: streaming events (--interval, OOM notifications) is not implemented in this version of keel yet; use --stats for one snapshot");
    }
    let c = Container::load(root, &a.id)?;
    let stats = c.stats()?;
    let event = Event {
        typ: "stats",
        id: &a.id,
        data: &stats,
    };
    println!("{}", serde_json::to_string(&event)?);
    Ok(0)
}

/// `update`: the resources from --resources (a file, or `-` for stdin, as
/// containerd's shim passes them) or from the flags, applied to the
/// container's cgroups. Only what is given changes.
pub fn update(root: &Path, a: &UpdateArgs, log: &Logger) -> Result<i32> {
    let c = Container::load(root, &a.id)?;
    if a.l3_cache_schema.is_some() || a.mem_bw_schema.is_some() {
        bail!("intel RDT is not supported by this version of keel yet");
    }
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
    serde_json::from_str(&text).map_err(|e| anyhow!("--resources: invalid resources JSON: {e}"))
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
