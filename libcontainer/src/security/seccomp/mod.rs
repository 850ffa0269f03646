//! `linux.seccomp`: the OCI profile compiled to a classic-BPF filter in the
//! parent, installed by the container's init.
//!
//! Semantics are runc's, which are libseccomp's plus runc's own patches:
//!
//! - the filter first checks `seccomp_data.arch`: the native ABI plus the
//!   listed ones it can meet on this host (on x86_64: x86_64, x86, x32 —
//!   x32 being x86_64's AUDIT_ARCH with bit 30 of the number set; on
//!   aarch64: aarch64, arm). Anything else gets libseccomp's bad-arch
//!   action, KILL_THREAD. Listed architectures this host cannot run are
//!   left out: the kernel can never report them here.
//! - rules whose action is the default action are dropped (runc); an
//!   argument-free rule for a syscall overrides earlier argument-checked
//!   ones and is not overridden by later rules (libseccomp's merge);
//!   argument-checked rules are tried in order, the first that matches
//!   decides. The conditions of one rule are ANDed, except that a rule
//!   naming one argument twice becomes one rule per condition (runc's
//!   fallback for what libseccomp refuses). Known difference: when two
//!   argument-checked rules of one syscall with different actions both
//!   match a call, libseccomp's winner follows the order of its decision
//!   tree (by argument, comparison and value; not the profile's order);
//!   Docker's and podman's profiles have no such pair.
//! - MASKED_EQ compares `arg & mask` with `valueTwo & mask`, as libseccomp
//!   does (bits of valueTwo outside the mask are ignored).
//! - 64-bit arguments are compared on both halves; 32-bit ABIs (x86, x32,
//!   arm) compare the low half only, as libseccomp does.
//! - runc's ENOSYS stub: unless the default action is ALLOW or LOG (or
//!   already ERRNO(ENOSYS)), syscall numbers above the highest one the
//!   profile names for an ABI return ENOSYS, so that libc falls back from
//!   syscalls newer than the profile (clone3 → clone).
//! - names the syscall tables do not know for an ABI are skipped there
//!   (see [`Filter::skipped`]), as runc does with names libseccomp lacks.
//!
//! The program is generated here (see `compile`), not by libseccomp: no C
//! library at run time, and the compile runs once in the parent. The BPF
//! types are libc's `sock_filter`/`sock_fprog`: seccompiler's `BpfProgram`
//! is a `Vec` of its own copy of the same struct, and its installers only
//! know prctl and TSYNC, not the flags (LOG, SPEC_ALLOW, NEW_LISTENER,
//! WAIT_KILLABLE_RECV) a profile can ask for, so it would add a dependency
//! and nothing else.
//!
//! SCMP_ACT_NOTIFY rules make the filter go in with NEW_LISTENER; the
//! runtime hands the listener to the agent at `listenerPath` (see `agent`).

mod agent;
mod arch;
mod bpf;
mod compile;
mod install;
#[cfg(test)]
mod interp;
#[cfg(test)]
mod tests;

pub use agent::Agent;
pub use arch::Abi;
pub use install::supported_flags;

use crate::error::{Error, Result};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction as Action, LinuxSeccompFilterFlag as Flag,
    LinuxSeccompOperator as Op,
};
use std::os::fd::OwnedFd;

/// Actions, operators and flags keel knows, for `features`.
pub const ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];
/// The argument comparison operators keel compiles.
pub const OPERATORS: &[&str] = &[
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];
/// The `linux.seccomp.flags` keel knows.
pub const KNOWN_FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];

/// The architectures a profile may list on this host (others are refused
/// by the config parser already).
pub fn archs() -> Vec<&'static str> {
    let mut v: Vec<&str> = Abi::native()
        .map(|n| Abi::runnable_on(n).iter().map(|a| a.name()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Comparison operators, as libseccomp's SCMP_CMP_*.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    MaskedEq,
}

/// One argument comparison: `args[arg] op value`, or for MaskedEq
/// `args[arg] & mask == value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cond {
    pub arg: u8,
    pub op: CmpOp,
    pub value: u64,
    pub mask: u64,
}

/// One `syscalls[]` entry, checked.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub names: Vec<String>,
    /// SECCOMP_RET_* value.
    pub action: u32,
    /// ORed sets of ANDed conditions: one set, possibly empty, unless the
    /// entry repeats an argument (see the module doc).
    pub alternatives: Vec<Vec<Cond>>,
}

/// A checked profile, ready to compile.
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    pub native: Abi,
    pub default: u32,
    /// Native first, no duplicates, only ABIs this host can run.
    pub abis: Vec<Abi>,
    pub rules: Vec<Rule>,
    pub enosys_stub: bool,
}

/// A compiled filter, ready for the init to install.
pub struct Filter {
    program: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
    /// Flags of `flags` that are runc's default rather than the config's:
    /// dropped where the kernel lacks them.
    defaulted: libc::c_ulong,
    skipped: Vec<String>,
    agent: Option<Agent>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("instructions", &self.program.len())
            .field("flags", &self.flags)
            .finish()
    }
}

impl Filter {
    /// Checks `linux.seccomp` and compiles it for this host.
    ///
    /// ```
    /// use libkeel::oci_spec::runtime::LinuxSeccomp;
    /// use libkeel::seccomp::{Abi, Filter};
    /// let profile: LinuxSeccomp = serde_json::from_str(
    ///     r#"{"defaultAction": "SCMP_ACT_ALLOW",
    ///         "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ERRNO"}]}"#,
    /// )
    /// .expect("profile");
    /// let f = Filter::compile_for(&profile, Abi::X86_64)?;
    /// assert!(!f.instructions().is_empty());
    /// # Ok::<(), libkeel::Error>(())
    /// ```
    pub fn from_spec(s: &LinuxSeccomp) -> Result<Filter> {
        let native = Abi::native().ok_or_else(|| {
            Error::invalid(
                "linux.seccomp",
                "seccomp is not supported on this architecture by keel",
            )
        })?;
        Filter::compile_for(s, native)
    }

    /// As [`Filter::from_spec`], for a host whose native ABI is `native`
    /// (tests compile aarch64 profiles on x86_64 hosts).
    pub fn compile_for(s: &LinuxSeccomp, native: Abi) -> Result<Filter> {
        let (profile, flags) = check(s, native)?;
        let mut f = Filter::from_profile(&profile, flags)?;
        if s.flags().is_none() {
            f.defaulted = DEFAULT_FLAGS;
        }
        if flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
            f.agent = agent::of(s);
        }
        Ok(f)
    }

    pub(crate) fn from_profile(p: &Profile, flags: libc::c_ulong) -> Result<Filter> {
        let program =
            compile::compile(p).map_err(|e| Error::invalid("linux.seccomp", e.to_string()))?;
        let mut skipped = Vec::new();
        for abi in &p.abis {
            for r in &p.rules {
                for n in &r.names {
                    if abi.syscall(n).is_none() {
                        skipped.push(format!("{n} ({})", abi.name()));
                    }
                }
            }
        }
        Ok(Filter {
            program,
            flags,
            defaulted: 0,
            skipped,
            agent: None,
        })
    }

    /// Where the notification listener goes, for SCMP_ACT_NOTIFY rules.
    pub fn agent(&self) -> Option<&Agent> {
        self.agent.as_ref()
    }

    /// The BPF program.
    pub fn instructions(&self) -> &[libc::sock_filter] {
        &self.program
    }

    /// SECCOMP_FILTER_FLAG_* for seccomp(2).
    pub fn flags(&self) -> libc::c_ulong {
        self.flags
    }

    /// Syscall names left out of the filter because an ABI's table does
    /// not know them ("name (SCMP_ARCH_…)"): not an error (runc skips
    /// such names too), worth a debug line.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// Installs the filter on the calling thread (seccomp(2), or prctl
    /// when seccomp(2) is missing and no flag is asked for). Needs
    /// no_new_privs or CAP_SYS_ADMIN. Returns the notification listener
    /// when the filter has SCMP_ACT_NOTIFY rules.
    pub fn install(&self) -> Result<Option<OwnedFd>> {
        install::install(&self.program, self.flags, self.defaulted)
    }
}

/// Nicer messages than serde's for the names in `linux.seccomp`, naming
/// the field: `linux.seccomp.syscalls[3].args[0].op: unknown operator "X"`.
/// Run on the raw JSON before it is deserialized.
pub fn check_names(config: &serde_json::Value) -> std::result::Result<(), String> {
    use serde_json::Value;
    let Some(s) = config.pointer("/linux/seccomp") else {
        return Ok(());
    };
    let known = |v: &Value, field: &str, what: &str, ok: &dyn Fn(&str) -> bool| match v {
        Value::String(n) if ok(n) => Ok(()),
        Value::String(n) => Err(format!("{field}: unknown {what} {n:?}")),
        Value::Null => Ok(()),
        other => Err(format!("{field}: {what} must be a string, not {other}")),
    };
    let action = |n: &str| n.parse::<Action>().is_ok();
    if let Some(v) = s.get("defaultAction") {
        known(v, "linux.seccomp.defaultAction", "action", &action)?;
    }
    for (i, v) in s
        .get("architectures")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        known(
            v,
            &format!("linux.seccomp.architectures[{i}]"),
            "architecture",
            &|n| n.parse::<oci_spec::runtime::Arch>().is_ok(),
        )?;
    }
    for (i, v) in s
        .get("flags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        known(v, &format!("linux.seccomp.flags[{i}]"), "flag", &|n| {
            n.parse::<Flag>().is_ok()
        })?;
    }
    for (i, sc) in s
        .get("syscalls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(v) = sc.get("action") {
            known(
                v,
                &format!("linux.seccomp.syscalls[{i}].action"),
                "action",
                &action,
            )?;
        }
        for (j, a) in sc
            .get("args")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(v) = a.get("op") {
                known(
                    v,
                    &format!("linux.seccomp.syscalls[{i}].args[{j}].op"),
                    "operator",
                    &|n| n.parse::<Op>().is_ok(),
                )?;
            }
        }
    }
    Ok(())
}

/// SECCOMP_RET_* for an action; `errno_ret` is the data of ERRNO and
/// TRACE (EPERM when absent, as in runc) and ignored by the others.
fn ret_value(a: Action, errno_ret: Option<u32>, field: &str) -> Result<u32> {
    let data = match errno_ret {
        None => libc::EPERM as u32,
        Some(e) if e <= 0xffff => e,
        Some(e) => {
            return Err(Error::invalid(
                field,
                format!("{e} does not fit in the 16 bits of SECCOMP_RET_DATA"),
            ))
        }
    };
    Ok(match a {
        Action::ScmpActKill | Action::ScmpActKillThread => libc::SECCOMP_RET_KILL_THREAD,
        Action::ScmpActKillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        Action::ScmpActTrap => libc::SECCOMP_RET_TRAP,
        Action::ScmpActErrno => libc::SECCOMP_RET_ERRNO | data,
        Action::ScmpActTrace => libc::SECCOMP_RET_TRACE | data,
        Action::ScmpActLog => libc::SECCOMP_RET_LOG,
        Action::ScmpActAllow => libc::SECCOMP_RET_ALLOW,
        Action::ScmpActNotify => libc::SECCOMP_RET_USER_NOTIF,
    })
}

fn op_of(op: Op) -> CmpOp {
    match op {
        Op::ScmpCmpNe => CmpOp::Ne,
        Op::ScmpCmpLt => CmpOp::Lt,
        Op::ScmpCmpLe => CmpOp::Le,
        Op::ScmpCmpEq => CmpOp::Eq,
        Op::ScmpCmpGe => CmpOp::Ge,
        Op::ScmpCmpGt => CmpOp::Gt,
        Op::ScmpCmpMaskedEq => CmpOp::MaskedEq,
    }
}

/// Validates the profile (errors name the field) and turns it into a
/// The flags of a profile that names none: the program keeps the
/// speculative-execution mitigations the process had, as under runc.
const DEFAULT_FLAGS: libc::c_ulong = libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW;

/// [`Profile`] plus seccomp(2) flags.
pub(crate) fn check(s: &LinuxSeccomp, native: Abi) -> Result<(Profile, libc::c_ulong)> {
    const F: &str = "linux.seccomp";
    if s.default_action() == Action::ScmpActNotify {
        return Err(Error::invalid(
            format!("{F}.defaultAction"),
            "SCMP_ACT_NOTIFY cannot be the default action",
        ));
    }
    let default = ret_value(
        s.default_action(),
        s.default_errno_ret(),
        &format!("{F}.defaultErrnoRet"),
    )?;

    let mut abis = vec![native];
    for a in s.architectures().iter().flatten() {
        // An architecture this host cannot execute is left out: no
        // syscall of it can ever reach the filter.
        if let Some(abi) = Abi::from_oci(*a, native) {
            if Abi::runnable_on(native).contains(&abi) && !abis.contains(&abi) {
                abis.push(abi);
            }
        }
    }

    // runc's default (specconv's SetupSeccomp): with no `flags` at all,
    // not even an empty list, SPEC_ALLOW (where the kernel has it).
    let mut flags = if s.flags().is_none() {
        DEFAULT_FLAGS
    } else {
        0
    };
    for f in s.flags().iter().flatten() {
        flags |= match f {
            Flag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            Flag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            Flag::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            Flag::SeccompFilterFlagWaitKillableRecv => libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
        };
    }

    let mut rules = Vec::new();
    let mut notify = false;
    for (i, sc) in s.syscalls().iter().flatten().enumerate() {
        let field = format!("{F}.syscalls[{i}]");
        if sc.names().is_empty() {
            return Err(Error::invalid(format!("{field}.names"), "empty"));
        }
        if sc.action() == Action::ScmpActNotify {
            notify = true;
            if sc.names().iter().any(|n| n == "write") {
                // The init writes to its sync channel and exec.fifo after
                // the filter is in: it would wait on itself.
                return Err(Error::invalid(
                    format!("{field}.action"),
                    "SCMP_ACT_NOTIFY cannot be used for the write syscall",
                ));
            }
        }
        let action = ret_value(sc.action(), sc.errno_ret(), &format!("{field}.errnoRet"))?;
        let mut conds = Vec::new();
        let mut seen = [0u8; 6];
        for (j, a) in sc.args().iter().flatten().enumerate() {
            let arg = match u8::try_from(a.index()) {
                Ok(n) if n < 6 => n,
                _ => {
                    return Err(Error::invalid(
                        format!("{field}.args[{j}].index"),
                        format!("{} is not an argument index (0 to 5)", a.index()),
                    ))
                }
            };
            seen[usize::from(arg)] += 1;
            let op = op_of(a.op());
            let (value, mask) = match op {
                // OCI: value is the mask, valueTwo the expected result,
                // compared masked as libseccomp does: bits of valueTwo
                // outside the mask are ignored, not never-matching.
                CmpOp::MaskedEq => (a.value_two().unwrap_or(0) & a.value(), a.value()),
                _ => (a.value(), u64::MAX),
            };
            conds.push(Cond {
                arg,
                op,
                value,
                mask,
            });
        }
        let alternatives = if seen.iter().any(|&n| n > 1) {
            conds.into_iter().map(|c| vec![c]).collect()
        } else {
            vec![conds]
        };
        rules.push(Rule {
            names: sc.names().clone(),
            action,
            alternatives,
        });
    }
    if notify {
        if s.listener_path().is_none() {
            return Err(Error::invalid(
                format!("{F}.listenerPath"),
                "must be set when a rule uses SCMP_ACT_NOTIFY",
            ));
        }
        flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
        // The init is single-threaded, so TSYNC has nothing to do; the
        // kernel refuses it with NEW_LISTENER unless told to return ESRCH
        // instead of a thread id on failure.
        if flags & libc::SECCOMP_FILTER_FLAG_TSYNC != 0 {
            flags |= libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
        }
    } else {
        // It concerns waiting for a listener's answer: without a listener
        // the kernel refuses it, and it has nothing to do.
        flags &= !libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
    }

    let enosys_stub = !matches!(
        s.default_action(),
        Action::ScmpActAllow | Action::ScmpActLog
    ) && s.default_errno_ret() != Some(libc::ENOSYS as u32);
    Ok((
        Profile {
            native,
            default,
            abis,
            rules,
            enosys_stub,
        },
        flags,
    ))
}
