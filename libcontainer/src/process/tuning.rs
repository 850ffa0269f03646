//! How a container process is scheduled and which execution domain it
//! runs in: `process.ioPriority`, `process.scheduler`,
//! `process.execCPUAffinity` and `linux.personality`. Checked and encoded
//! in the parent; applied by the process itself (see program.rs, exec.rs).

use crate::error::{Error, Result, SysContext};
use nix::errno::Errno;
use oci_spec::runtime::{
    ExecCPUAffinity, IOPriorityClass, LinuxIOPriority, LinuxPersonality, LinuxPersonalityDomain,
    LinuxSchedulerFlag, LinuxSchedulerPolicy, Scheduler,
};

/// The ioprio_set(2) value of `process.ioPriority`.
pub fn io_priority(p: &LinuxIOPriority) -> Result<i32> {
    let class = match p.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    let prio = p.priority();
    if !(0..=7).contains(&prio) {
        return Err(Error::invalid(
            "process.ioPriority.priority",
            format!("{prio} is not between 0 (highest) and 7 (lowest)"),
        ));
    }
    Ok(class << 13 | prio as i32)
}

pub fn set_io_priority(value: i32) -> Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    // SAFETY: plain syscall, no pointers.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) };
    Errno::result(r)
        .map(drop)
        .ctx(|| "process.ioPriority: ioprio_set".into())
}

/// `struct sched_attr` (SCHED_ATTR_SIZE_VER1).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

/// The sched_setattr(2) argument of `process.scheduler`.
pub fn sched_attr(s: &Scheduler) -> Result<SchedAttr> {
    let policy = match s.policy() {
        LinuxSchedulerPolicy::SchedOther => 0,
        LinuxSchedulerPolicy::SchedFifo => 1,
        LinuxSchedulerPolicy::SchedRr => 2,
        LinuxSchedulerPolicy::SchedBatch => 3,
        LinuxSchedulerPolicy::SchedIso => 4,
        LinuxSchedulerPolicy::SchedIdle => 5,
        LinuxSchedulerPolicy::SchedDeadline => 6,
    };
    let nice = s.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        return Err(Error::invalid(
            "process.scheduler.nice",
            format!("{nice} is not between -20 and 19"),
        ));
    }
    let priority = u32::try_from(s.priority().unwrap_or(0))
        .map_err(|_| Error::invalid("process.scheduler.priority", "must not be negative"))?;
    let realtime = matches!(
        s.policy(),
        LinuxSchedulerPolicy::SchedFifo | LinuxSchedulerPolicy::SchedRr
    );
    if realtime != (priority != 0) {
        return Err(Error::invalid(
            "process.scheduler.priority",
            "must be 1 to 99 with SCHED_FIFO and SCHED_RR, and 0 (or unset) otherwise",
        ));
    }
    let deadline = s.policy() == &LinuxSchedulerPolicy::SchedDeadline;
    if !deadline && (s.runtime().is_some() || s.deadline().is_some() || s.period().is_some()) {
        return Err(Error::invalid(
            "process.scheduler",
            "runtime, deadline and period are for SCHED_DEADLINE only",
        ));
    }
    let flags = s
        .flags()
        .iter()
        .flatten()
        .map(|f| match f {
            LinuxSchedulerFlag::SchedResetOnFork => 0x01,
            LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
            LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
            LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
            LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
            LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
        })
        .fold(0, |a, f| a | f);
    Ok(SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy,
        flags,
        nice,
        priority,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
        util_min: 0,
        util_max: 0,
    })
}

pub fn set_scheduler(attr: &SchedAttr) -> Result<()> {
    // SAFETY: attr is a valid sched_attr whose size field is its size.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, attr as *const SchedAttr, 0) };
    Errno::result(r)
        .map(drop)
        .ctx(|| "process.scheduler: sched_setattr".into())
}

/// The personality(2) argument of `linux.personality`.
pub fn personality(p: &LinuxPersonality) -> Result<libc::c_ulong> {
    if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(Error::invalid(
            "linux.personality.flags",
            "not supported by this version of keel yet",
        ));
    }
    Ok(match p.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    })
}

pub fn set_personality(value: libc::c_ulong) -> Result<()> {
    // SAFETY: plain syscall, no pointers.
    let r = unsafe { libc::personality(value) };
    Errno::result(r)
        .map(drop)
        .ctx(|| "linux.personality: personality".into())
}

/// `process.execCPUAffinity`: the CPUs before and after the move into the
/// container's cgroup.
#[derive(Debug, Clone, Default)]
pub struct Affinity {
    pub initial: Option<nix::sched::CpuSet>,
    pub last: Option<nix::sched::CpuSet>,
}

pub fn affinity(a: &ExecCPUAffinity) -> Result<Affinity> {
    Ok(Affinity {
        initial: a
            .initial()
            .as_deref()
            .map(|s| cpu_set(s, "process.execCPUAffinity.initial"))
            .transpose()?,
        last: a
            .cpu_affinity_final()
            .as_deref()
            .map(|s| cpu_set(s, "process.execCPUAffinity.final"))
            .transpose()?,
    })
}

/// "0-3,7" → CPUs 0, 1, 2, 3 and 7.
fn cpu_set(list: &str, field: &str) -> Result<nix::sched::CpuSet> {
    let bad = |why: String| Error::invalid(field, format!("{list:?}: {why}"));
    let mut set = nix::sched::CpuSet::new();
    for cpu in id_list(list, "CPU", nix::sched::CpuSet::count()).map_err(bad)? {
        set.set(cpu)
            .map_err(|_| bad(format!("CPU {cpu} is beyond what keel can address")))?;
    }
    Ok(set)
}

/// The ids of a Linux list ("0-3,7", the format of cpuset.cpus and of
/// `linux.memoryPolicy.nodes`), each below `limit`; empty elements are
/// allowed, as runc allows them. The error says why, for the caller to
/// name the field.
pub(crate) fn id_list(
    list: &str,
    noun: &str,
    limit: usize,
) -> std::result::Result<Vec<usize>, String> {
    let num = |s: &str| -> std::result::Result<usize, String> {
        let n = s
            .trim()
            .parse::<usize>()
            .map_err(|_| format!("{s:?} is not a {noun} number"))?;
        if n >= limit {
            return Err(format!("{noun} {n} is beyond what keel can address"));
        }
        Ok(n)
    };
    let mut ids = Vec::new();
    for part in list.split(',').filter(|p| !p.trim().is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        if lo > hi {
            return Err(format!("{part:?} is a reversed range"));
        }
        ids.extend(lo..=hi);
    }
    Ok(ids)
}

/// Lets `pid` run on every CPU its cpuset allows, whatever mask it
/// inherited from the caller (`taskset`, systemd's CPUAffinity=): since
/// Linux 6.2 a mask set with sched_setaffinity survives the move into the
/// container's cpuset. An all-set mask is cut to the cpuset by the kernel;
/// runc 1.2+ does the same (`tryResetCPUAffinity` in
/// libcontainer/process_linux.go). Best effort, as runc's.
pub fn reset_affinity(pid: nix::unistd::Pid) {
    // 8192 CPUs (the kernel's largest NR_CPUS); a longer mask than the
    // kernel's is fine, a shorter one (glibc's cpu_set_t: 1024) would
    // leave CPUs out.
    let all = [u64::MAX; 128];
    // SAFETY: `all` outlives the call and its size is passed with it.
    let _ = unsafe {
        libc::syscall(
            libc::SYS_sched_setaffinity,
            pid.as_raw(),
            std::mem::size_of_val(&all),
            all.as_ptr(),
        )
    };
}

pub fn set_affinity(set: &nix::sched::CpuSet, field: &str) -> Result<()> {
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), set)
        .ctx(|| format!("{field}: sched_setaffinity"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        let s = cpu_set("0-2,5", "f").expect("valid list");
        let got: Vec<usize> = (0..8).filter(|&c| s.is_set(c).unwrap_or(false)).collect();
        assert_eq!(got, [0, 1, 2, 5]);
        for bad in ["x", "3-1", "1-", "-1", "99999"] {
            assert!(cpu_set(bad, "f").is_err(), "{bad}");
        }
    }

    #[test]
    fn io_priority_values() {
        let p: LinuxIOPriority =
            serde_json::from_str(r#"{"class": "IOPRIO_CLASS_IDLE", "priority": 7}"#).unwrap();
        assert_eq!(io_priority(&p).unwrap(), 3 << 13 | 7);
        let p: LinuxIOPriority =
            serde_json::from_str(r#"{"class": "IOPRIO_CLASS_BE", "priority": 8}"#).unwrap();
        assert!(io_priority(&p).is_err());
    }

    #[test]
    fn scheduler_checks() {
        let s = |j: &str| sched_attr(&serde_json::from_str::<Scheduler>(j).unwrap());
        let a = s(r#"{"policy": "SCHED_BATCH", "nice": 5}"#).unwrap();
        assert_eq!((a.policy, a.nice, a.size), (3, 5, 56));
        assert!(s(r#"{"policy": "SCHED_FIFO"}"#).is_err());
        assert!(s(r#"{"policy": "SCHED_OTHER", "priority": 3}"#).is_err());
        assert!(s(r#"{"policy": "SCHED_OTHER", "nice": 20}"#).is_err());
        assert!(s(r#"{"policy": "SCHED_OTHER", "runtime": 1}"#).is_err());
        let rr = s(r#"{"policy": "SCHED_RR", "priority": 10, "flags": ["SCHED_RESET_ON_FORK"]}"#);
        assert_eq!(
            rr.map(|a| (a.policy, a.priority, a.flags)).ok(),
            Some((2, 10, 1))
        );
    }
}
