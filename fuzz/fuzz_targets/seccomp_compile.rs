//! Random `linux.seccomp` profiles through keel's compiler, for the native
//! x86_64 ABI set and for aarch64: compiling must return an error or a
//! program, never panic; a program must be well formed (every jump lands
//! inside it, it ends in a return) and, run on random syscalls from any
//! architecture, must end in one of the actions the profile can produce.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use libkeel::oci_spec::runtime::LinuxSeccomp;
use libkeel::seccomp::{Abi, Filter};
use serde_json::{json, Value};

const NAMES: &[&str] = &[
    "read", "write", "openat", "mkdir", "mkdirat", "uname", "clone", "clone3", "socket",
    "ioctl", "personality", "chmod", "fchmodat2", "bogus_syscall", "arm_fadvise64_64",
    "newfstatat", "map_shadow_stack", "_llseek", "time",
];
const ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ACT_TRACE", "SCMP_ACT_LOG",
];
const OPS: &[&str] = &[
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];
const ARCHES: &[&str] = &[
    "SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM",
];
/// AUDIT_ARCH_* values the kernel may report.
const AUDIT_ARCHES: &[u32] = &[0xc000_003e, 0x4000_0003, 0xc000_00b7, 0x4000_0028, 0x1234];

fn pick<'a>(u: &mut Unstructured, from: &[&'a str]) -> Result<&'a str> {
    u.choose(from).copied()
}

fn value(u: &mut Unstructured) -> Result<u64> {
    // Edge values more often than uniform ones.
    Ok(match u.int_in_range(0..=3)? {
        0 => *u.choose(&[0, 1, u32::MAX as u64, 1 << 32, u64::MAX, 0x8000_0000])?,
        _ => u.arbitrary()?,
    })
}

fn profile(u: &mut Unstructured) -> Result<Value> {
    let mut syscalls = Vec::new();
    for _ in 0..u.int_in_range(0..=12)? {
        let mut names = Vec::new();
        for _ in 0..u.int_in_range(1..=3)? {
            names.push(pick(u, NAMES)?);
        }
        let mut args = Vec::new();
        for _ in 0..u.int_in_range(0..=3)? {
            args.push(json!({"index": u.int_in_range(0..=6)?, "value": value(u)?,
                             "valueTwo": value(u)?, "op": pick(u, OPS)?}));
        }
        let mut rule = json!({"names": names, "action": pick(u, ACTIONS)?, "args": args});
        if u.arbitrary()? {
            rule["errnoRet"] = json!(u.int_in_range(0..=70000u32)?);
        }
        syscalls.push(rule);
    }
    let mut arches = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        arches.push(pick(u, ARCHES)?);
    }
    let mut p = json!({"defaultAction": pick(u, ACTIONS)?, "architectures": arches,
                       "syscalls": syscalls});
    if u.arbitrary()? {
        p["defaultErrnoRet"] = json!(u.int_in_range(0..=4096u32)?);
    }
    Ok(p)
}

/// seccomp_data: nr, arch, instruction pointer, six arguments.
fn data(u: &mut Unstructured) -> Result<[u32; 16]> {
    let mut d = [0u32; 16];
    d[0] = if u.arbitrary()? { u.int_in_range(0..=480)? } else { u.arbitrary()? };
    d[1] = *u.choose(AUDIT_ARCHES)?;
    for w in d.iter_mut().skip(4) {
        *w = value(u)? as u32;
    }
    Ok(d)
}

/// Runs a classic-BPF program forward only (seccomp programs cannot jump
/// back); None when it reads outside seccomp_data or runs off the end.
fn run(prog: &[libc::sock_filter], d: &[u32; 16]) -> Option<u32> {
    let (mut a, mut x, mut mem, mut pc) = (0u32, 0u32, [0u32; 16], 0usize);
    loop {
        let i = prog.get(pc)?;
        let k = i.k;
        pc += 1;
        match i.code {
            0x20 => a = *d.get(k as usize / 4).filter(|_| k % 4 == 0)?, // ld [k]
            0x00 => a = k,                                                // ld #k
            0x01 => x = k,                                                // ldx #k
            0x02 => *mem.get_mut(k as usize)? = a,                        // st M[k]
            0x60 => a = *mem.get(k as usize)?,                            // ld M[k]
            0x61 => x = *mem.get(k as usize)?,                            // ldx M[k]
            0x07 => x = a,                                                // tax
            0x87 => a = x,                                                // txa
            0x54 => a &= k,                                               // and #k
            0x05 => pc += k as usize,                                     // ja
            0x15 | 0x25 | 0x35 | 0x45 | 0x1d | 0x2d | 0x3d | 0x4d => {
                let v = if i.code & 0x08 != 0 { x } else { k };
                let t = match i.code & 0xf0 {
                    0x10 => a == v,
                    0x20 => a > v,
                    0x30 => a >= v,
                    _ => a & v != 0,
                };
                pc += usize::from(if t { i.jt } else { i.jf });
            }
            0x06 => return Some(k), // ret #k
            0x16 => return Some(a), // ret a
            _ => return None,
        }
    }
}

fn check(p: &Value, filter: &Filter, u: &mut Unstructured) -> Result<()> {
    let prog = filter.instructions();
    assert!(!prog.is_empty(), "empty program for {p}");
    assert!(prog.len() <= 4096, "{} instructions for {p}", prog.len());
    for (pc, i) in prog.iter().enumerate() {
        let jumps = i.code & 0x07 == 0x05;
        let reach = if i.code == 0x05 {
            pc + 1 + i.k as usize
        } else if jumps {
            pc + 1 + usize::from(i.jt.max(i.jf))
        } else {
            pc
        };
        assert!(reach < prog.len(), "jump out of the program at {pc} for {p}");
    }
    assert!(matches!(prog[prog.len() - 1].code, 0x06 | 0x16), "no final ret for {p}");
    for _ in 0..8 {
        let d = data(u)?;
        let ret = run(prog, &d).unwrap_or_else(|| panic!("program failed on {d:?} for {p}"));
        let action = ret & 0xffff_0000;
        assert!(
            [0x7fff_0000, 0x7ffc_0000, 0x7ff0_0000, 0x0005_0000, 0x0003_0000, 0, 0x8000_0000]
                .contains(&action),
            "unknown action {ret:#x} on {d:?} for {p}"
        );
    }
    Ok(())
}

fuzz_target!(|bytes: &[u8]| {
    let mut u = Unstructured::new(bytes);
    let Ok(p) = profile(&mut u) else { return };
    let Ok(s) = serde_json::from_value::<LinuxSeccomp>(p.clone()) else { return };
    for native in [Abi::X86_64, Abi::Aarch64] {
        if let Ok(f) = Filter::compile_for(&s, native) {
            let _ = check(&p, &f, &mut u);
        }
    }
});
