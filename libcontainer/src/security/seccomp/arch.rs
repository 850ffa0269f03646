//! The syscall ABIs a filter can meet, and their syscall numbers.
//!
//! Numbers come from the `syscalls` crate's per-architecture tables, which
//! are generated from the kernel's. The one thing it lacks is x32, so that
//! ABI is derived here the way the kernel defines it (syscall_64.tbl): the
//! x86_64 number with bit 30 set, except for the syscalls that take
//! pointers to pointer-sized data, which x32 moved to 512..=547, and a few
//! x86_64-only ones x32 does not have. libseccomp's x32 table is the same
//! (the differential test checks every name against it).

use oci_spec::runtime::Arch;
use std::str::FromStr;

/// seccomp_data.arch values (AUDIT_ARCH_* in <linux/audit.h>).
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
pub const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
pub const AUDIT_ARCH_ARM: u32 = 0x4000_0028;

/// Set in the syscall number of every x32 syscall.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A syscall ABI: an architecture as seccomp sees it (x86_64 and x32 share
/// AUDIT_ARCH_X86_64 and differ by the number's bit 30).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Abi {
    /// `SCMP_ARCH_X86_64`.
    X86_64,
    /// `SCMP_ARCH_X32`.
    X32,
    /// `SCMP_ARCH_X86`.
    X86,
    /// `SCMP_ARCH_AARCH64`.
    Aarch64,
    /// `SCMP_ARCH_ARM`.
    Arm,
}

impl Abi {
    /// The ABI keel itself runs as, if seccomp filters are supported here.
    pub fn native() -> Option<Abi> {
        if cfg!(target_arch = "x86_64") {
            Some(Abi::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Abi::Aarch64)
        } else {
            None
        }
    }

    /// The ABIs a process can use on a host whose native ABI is `native`:
    /// the only ones the kernel can ever hand a filter there.
    pub fn runnable_on(native: Abi) -> &'static [Abi] {
        match native {
            Abi::X86_64 | Abi::X32 | Abi::X86 => &[Abi::X86_64, Abi::X86, Abi::X32],
            Abi::Aarch64 | Abi::Arm => &[Abi::Aarch64, Abi::Arm],
        }
    }

    /// The config's architecture as an ABI (`SCMP_ARCH_NATIVE` is `native`).
    pub fn from_oci(arch: Arch, native: Abi) -> Option<Abi> {
        Some(match arch {
            Arch::ScmpArchNative => native,
            Arch::ScmpArchX86_64 => Abi::X86_64,
            Arch::ScmpArchX32 => Abi::X32,
            Arch::ScmpArchX86 => Abi::X86,
            Arch::ScmpArchAarch64 => Abi::Aarch64,
            Arch::ScmpArchArm => Abi::Arm,
            _ => return None,
        })
    }

    /// The `AUDIT_ARCH_*` value the kernel reports for it in `seccomp_data.arch`.
    pub fn audit_arch(self) -> u32 {
        match self {
            Abi::X86_64 | Abi::X32 => AUDIT_ARCH_X86_64,
            Abi::X86 => AUDIT_ARCH_I386,
            Abi::Aarch64 => AUDIT_ARCH_AARCH64,
            Abi::Arm => AUDIT_ARCH_ARM,
        }
    }

    /// The syscall numbers (as seccomp_data.nr, unsigned) that belong to
    /// this ABI within its AUDIT_ARCH: libseccomp splits x86_64 and x32 at
    /// bit 30 with an unsigned `>=`, and so do we.
    pub fn nr_range(self) -> (u32, u32) {
        match self {
            Abi::X86_64 => (0, X32_SYSCALL_BIT - 1),
            Abi::X32 => (X32_SYSCALL_BIT, u32::MAX),
            _ => (0, u32::MAX),
        }
    }

    /// Whether seccomp_data.args hold 64-bit values. libseccomp compares
    /// only the low 32 bits on 32-bit ABIs, x32 included.
    pub fn args_are_64bit(self) -> bool {
        matches!(self, Abi::X86_64 | Abi::Aarch64)
    }

    /// The syscall number of `name` for this ABI; None when the ABI has no
    /// such syscall (or the table does not know the name).
    pub fn syscall(self, name: &str) -> Option<u32> {
        let id = match self {
            Abi::X86_64 => syscalls::x86_64::Sysno::from_str(name).ok()?.id(),
            Abi::X86 => syscalls::x86::Sysno::from_str(name).ok()?.id(),
            // The crate names 79 after the generic table's fstatat; the
            // kernel, libseccomp and profiles call it newfstatat.
            Abi::Aarch64 if name == "newfstatat" => syscalls::aarch64::Sysno::fstatat.id(),
            Abi::Aarch64 => syscalls::aarch64::Sysno::from_str(name).ok()?.id(),
            Abi::Arm => match syscalls::arm::Sysno::from_str(name) {
                Ok(n) => n.id(),
                Err(()) => return arm_private(name),
            },
            Abi::X32 => return x32_syscall(name),
        };
        u32::try_from(id).ok()
    }

    /// Its name in a profile (`SCMP_ARCH_*`).
    pub fn name(self) -> &'static str {
        match self {
            Abi::X86_64 => "SCMP_ARCH_X86_64",
            Abi::X32 => "SCMP_ARCH_X32",
            Abi::X86 => "SCMP_ARCH_X86",
            Abi::Aarch64 => "SCMP_ARCH_AARCH64",
            Abi::Arm => "SCMP_ARCH_ARM",
        }
    }
}

/// x32's own entries (512..=547 in syscall_64.tbl), in number order: the
/// x86_64 syscalls whose arguments hold pointers or longs in memory got
/// compat versions under new numbers.
const X32_MOVED: [&str; 36] = [
    "rt_sigaction",
    "rt_sigreturn",
    "ioctl",
    "readv",
    "writev",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "execve",
    "ptrace",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigqueueinfo",
    "sigaltstack",
    "timer_create",
    "mq_notify",
    "kexec_load",
    "waitid",
    "set_robust_list",
    "get_robust_list",
    "vmsplice",
    "move_pages",
    "preadv",
    "pwritev",
    "rt_tgsigqueueinfo",
    "recvmmsg",
    "sendmmsg",
    "process_vm_readv",
    "process_vm_writev",
    "setsockopt",
    "getsockopt",
    "io_setup",
    "io_submit",
    "execveat",
    "preadv2",
    "pwritev2",
];

/// The "64"-only entries of syscall_64.tbl that x32 has no version of.
const X86_64_ONLY: [&str; 12] = [
    "map_shadow_stack",
    "uselib",
    "_sysctl",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "nfsservctl",
    "set_thread_area",
    "get_thread_area",
    "epoll_ctl_old",
    "epoll_wait_old",
    "vserver",
];

/// ARM's private syscalls (__ARM_NR_BASE + 1.. in the kernel's
/// arch/arm/include/uapi/asm/unistd.h), missing from the crate's table;
/// 32-bit glibc needs set_tls, and Docker's profile lists them.
fn arm_private(name: &str) -> Option<u32> {
    const ARM_NR_BASE: u32 = 0x0f_0000;
    const NAMES: [&str; 6] = [
        "breakpoint",
        "cacheflush",
        "usr26",
        "usr32",
        "set_tls",
        "get_tls",
    ];
    let i = NAMES.iter().position(|&n| n == name)?;
    // Six entries: the index always fits.
    Some(ARM_NR_BASE + 1 + i as u32)
}

fn x32_syscall(name: &str) -> Option<u32> {
    if let Some(i) = X32_MOVED.iter().position(|&n| n == name) {
        // 36 entries: the index always fits.
        return Some(X32_SYSCALL_BIT | (512 + i as u32));
    }
    if X86_64_ONLY.contains(&name) {
        return None;
    }
    Abi::X86_64.syscall(name).map(|n| n | X32_SYSCALL_BIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables() {
        assert_eq!(Abi::X86_64.syscall("getpid"), Some(39));
        assert_eq!(Abi::X86.syscall("getpid"), Some(20));
        assert_eq!(Abi::Aarch64.syscall("getpid"), Some(172));
        assert_eq!(Abi::Arm.syscall("getpid"), Some(20));
        assert_eq!(Abi::X32.syscall("getpid"), Some(39 | X32_SYSCALL_BIT));
        assert_eq!(
            Abi::X32.syscall("rt_sigaction"),
            Some(512 | X32_SYSCALL_BIT)
        );
        assert_eq!(Abi::X32.syscall("pwritev2"), Some(547 | X32_SYSCALL_BIT));
        assert_eq!(Abi::X32.syscall("uselib"), None);
        assert_eq!(Abi::X86_64.syscall("socketcall"), None);
        assert_eq!(Abi::X86.syscall("socketcall"), Some(102));
        assert_eq!(Abi::X86_64.syscall("no_such_syscall"), None);
        assert_eq!(Abi::Arm.syscall("set_tls"), Some(0x0f_0005));
        assert_eq!(Abi::Aarch64.syscall("newfstatat"), Some(79));
    }
}
