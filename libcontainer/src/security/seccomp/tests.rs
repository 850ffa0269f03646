//! The compiler's programs, run in the test interpreter.

use super::arch::{Abi, AUDIT_ARCH_AARCH64, AUDIT_ARCH_ARM, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64};
use super::interp::{run, Data};
use super::*;
use oci_spec::runtime::LinuxSeccomp;
use serde_json::json;

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const KILL: u32 = libc::SECCOMP_RET_KILL_THREAD;
const X32: u32 = arch::X32_SYSCALL_BIT;
fn errno(e: u32) -> u32 {
    libc::SECCOMP_RET_ERRNO | e
}

fn profile(v: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(v).expect("profile JSON")
}

fn filter(v: serde_json::Value) -> Filter {
    Filter::compile_for(&profile(v), Abi::X86_64).expect("compiles")
}

fn call(f: &Filter, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    run(f.instructions(), &Data { nr, arch, args })
}

fn x64(f: &Filter, name: &str, args: [u64; 6]) -> u32 {
    let nr = Abi::X86_64.syscall(name).expect("known syscall");
    call(f, AUDIT_ARCH_X86_64, nr, args)
}

const NO: [u64; 6] = [0; 6];

#[test]
fn allow_list_with_errno_rules() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["getpid", "read", "no_such_call"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42},
        ]
    }));
    assert_eq!(x64(&f, "getpid", NO), ALLOW);
    assert_eq!(x64(&f, "read", NO), ALLOW);
    assert_eq!(x64(&f, "mkdir", NO), errno(1));
    assert_eq!(x64(&f, "uname", NO), errno(42));
    // Not listed, below the highest listed (uname = 63): the default.
    assert_eq!(x64(&f, "write", NO), errno(1));
    // Above it: runc's ENOSYS stub.
    assert_eq!(x64(&f, "clone3", NO), errno(38));
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, 0x3fff_ffff, NO), errno(38));
    // x32 and x86 are not listed: libseccomp's bad-arch action.
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, 39 | X32, NO), KILL);
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, X32 + 1, NO), KILL);
    // Except nr -1, which libseccomp hands to the x86_64 rules.
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, u32::MAX, NO), errno(1));
    assert_eq!(call(&f, AUDIT_ARCH_I386, 20, NO), KILL);
    assert_eq!(call(&f, AUDIT_ARCH_AARCH64, 172, NO), KILL);
    assert_eq!(f.skipped(), ["no_such_call (SCMP_ARCH_X86_64)"]);
}

#[test]
fn every_action() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_KILL_PROCESS",
        "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_KILL"},
            {"names": ["write"], "action": "SCMP_ACT_KILL_THREAD"},
            {"names": ["open"], "action": "SCMP_ACT_TRAP"},
            {"names": ["close"], "action": "SCMP_ACT_ERRNO", "errnoRet": 4095},
            {"names": ["stat"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
            {"names": ["fstat"], "action": "SCMP_ACT_TRACE"},
            {"names": ["lstat"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["poll"], "action": "SCMP_ACT_LOG"},
            {"names": ["lseek"], "action": "SCMP_ACT_KILL_PROCESS"},
        ]
    }));
    assert_eq!(x64(&f, "read", NO), KILL);
    assert_eq!(x64(&f, "write", NO), KILL);
    assert_eq!(x64(&f, "open", NO), libc::SECCOMP_RET_TRAP);
    assert_eq!(x64(&f, "close", NO), errno(4095));
    assert_eq!(x64(&f, "stat", NO), libc::SECCOMP_RET_TRACE | 7);
    assert_eq!(x64(&f, "fstat", NO), libc::SECCOMP_RET_TRACE | 1);
    assert_eq!(x64(&f, "lstat", NO), ALLOW);
    assert_eq!(x64(&f, "poll", NO), libc::SECCOMP_RET_LOG);
    assert_eq!(x64(&f, "lseek", NO), libc::SECCOMP_RET_KILL_PROCESS);
    assert_eq!(x64(&f, "mmap", NO), errno(38));
    assert_eq!(call(&f, AUDIT_ARCH_I386, 3, NO), KILL);
}

#[test]
fn notify_compiles_with_a_listener_and_its_agent() {
    let s = profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    let (p, flags) = check(&s, Abi::X86_64).unwrap();
    assert_eq!(
        flags,
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
            | libc::SECCOMP_FILTER_FLAG_TSYNC
            | libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH
    );
    let f = Filter::from_profile(&p, flags).unwrap();
    assert_eq!(x64(&f, "mkdir", NO), libc::SECCOMP_RET_USER_NOTIF);
    assert_eq!(x64(&f, "rmdir", NO), ALLOW);
    let f = Filter::compile_for(&s, Abi::X86_64).unwrap();
    assert_eq!(
        f.agent(),
        Some(&Agent {
            path: "/run/agent.sock".into(),
            metadata: String::new()
        })
    );
}

#[test]
fn no_stub_when_the_default_allows_or_is_enosys() {
    for (default, errno_ret) in [
        ("SCMP_ACT_ALLOW", None),
        ("SCMP_ACT_LOG", None),
        ("SCMP_ACT_ERRNO", Some(38)),
    ] {
        let f = filter(json!({
            "defaultAction": default,
            "defaultErrnoRet": errno_ret,
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_KILL_PROCESS"}]
        }));
        let d = x64(&f, "getpid", NO);
        assert_eq!(x64(&f, "clone3", NO), d, "{default}");
        assert_eq!(x64(&f, "mkdir", NO), libc::SECCOMP_RET_KILL_PROCESS);
    }
}

#[test]
fn compat_architectures() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_MIPS"],
        "syscalls": [
            {"names": ["getpid", "rt_sigaction", "socketcall"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42},
        ]
    }));
    // x86_64: 39, 13; x86: 20, 174, socketcall 102; x32: 39|bit, 512|bit.
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, 39, NO), ALLOW);
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, 13, NO), ALLOW);
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, 32, NO), errno(1)); // dup
    assert_eq!(call(&f, AUDIT_ARCH_I386, 20, NO), ALLOW);
    assert_eq!(call(&f, AUDIT_ARCH_I386, 174, NO), ALLOW);
    assert_eq!(call(&f, AUDIT_ARCH_I386, 102, NO), ALLOW);
    assert_eq!(call(&f, AUDIT_ARCH_I386, 122, NO), errno(42)); // uname
    assert_eq!(call(&f, AUDIT_ARCH_I386, 175, NO), errno(38)); // above rt_sigaction
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, 39 | X32, NO), ALLOW);
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, 512 | X32, NO), ALLOW);
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, 13 | X32, NO), errno(1));
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, 63 | X32, NO), errno(42));
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, 513 | X32, NO), errno(38));
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, u32::MAX, NO), errno(38));
    // x86_64's stub ends where x32 starts.
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, X32 - 1, NO), errno(38));
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, X32, NO), errno(1));
    assert_eq!(call(&f, AUDIT_ARCH_AARCH64, 172, NO), KILL);
}

#[test]
fn x32_only() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X32"],
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO"}]
    }));
    // The native ABI is always in.
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, 39, NO), errno(1));
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, 39 | X32, NO), errno(1));
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, 40 | X32, NO), ALLOW);
    assert_eq!(call(&f, AUDIT_ARCH_I386, 20, NO), KILL);
}

#[test]
fn aarch64_host() {
    let s = profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_X86"],
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_GT"}]}]
    }));
    let f = Filter::compile_for(&s, Abi::Aarch64).unwrap();
    let c = |arch, nr, a0| call(&f, arch, nr, [a0, 0, 0, 0, 0, 0]);
    assert_eq!(c(AUDIT_ARCH_AARCH64, 172, 6), ALLOW);
    assert_eq!(c(AUDIT_ARCH_AARCH64, 172, 5), errno(1));
    assert_eq!(c(AUDIT_ARCH_AARCH64, 172, 1 << 32), ALLOW);
    assert_eq!(c(AUDIT_ARCH_AARCH64, 173, 0), errno(38));
    assert_eq!(c(AUDIT_ARCH_ARM, 20, 6), ALLOW);
    assert_eq!(c(AUDIT_ARCH_ARM, 20, 5), errno(1));
    // 32-bit ABI: only the low word is compared (libseccomp).
    assert_eq!(c(AUDIT_ARCH_ARM, 20, 1 << 32), errno(1));
    assert_eq!(c(AUDIT_ARCH_I386, 20, 6), KILL);
    assert_eq!(c(AUDIT_ARCH_X86_64, 39, 6), KILL);
}

/// The comparison as libseccomp documents it, on 64-bit values.
fn holds(op: &str, arg: u64, value: u64, value_two: u64) -> bool {
    match op {
        "SCMP_CMP_NE" => arg != value,
        "SCMP_CMP_LT" => arg < value,
        "SCMP_CMP_LE" => arg <= value,
        "SCMP_CMP_EQ" => arg == value,
        "SCMP_CMP_GE" => arg >= value,
        "SCMP_CMP_GT" => arg > value,
        // libseccomp masks the expected value too (found by the
        // generated differential tests).
        "SCMP_CMP_MASKED_EQ" => arg & value == value_two & value,
        _ => unreachable!(),
    }
}

const EDGES: [u64; 12] = [
    0,
    1,
    5,
    0x7fff_ffff,
    0xffff_ffff,
    0x1_0000_0000,
    0x1_0000_0005,
    0x2_0000_0000,
    0x2_ffff_ffff,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
];

#[test]
fn sixty_four_bit_comparisons() {
    for op in OPERATORS {
        for &value in &EDGES {
            for arg_no in [0u64, 5] {
                let f = filter(json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                        "args": [{"index": arg_no, "value": value, "valueTwo": 5, "op": op}]}]
                }));
                for &arg in &EDGES {
                    let mut args = [0xdead_beef_u64; 6];
                    args[arg_no as usize] = arg;
                    let want = if holds(op, arg, value, 5) {
                        errno(1)
                    } else {
                        ALLOW
                    };
                    assert_eq!(
                        x64(&f, "personality", args),
                        want,
                        "{op} args[{arg_no}]={arg:#x} value={value:#x}"
                    );
                }
            }
        }
    }
}

#[test]
fn and_within_a_rule_or_across_rules() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [
                {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 0xf, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97, "args": [
                {"index": 0, "value": 10, "op": "SCMP_CMP_EQ"}]},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [
                {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
        ]
    }));
    let s = |a: u64, b: u64| x64(&f, "socket", [a, b, 0, 0, 0, 0]);
    assert_eq!(s(2, 1), ALLOW);
    assert_eq!(s(2, 0x801), ALLOW);
    assert_eq!(s(2, 2), errno(1));
    assert_eq!(s(3, 1), errno(1));
    assert_eq!(s(10, 1), errno(97));
    assert_eq!(s(1, 99), ALLOW);
}

#[test]
fn repeated_argument_means_or() {
    // runc adds one rule per condition when an argument repeats.
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 131072, "op": "SCMP_CMP_EQ"}]}]
    }));
    let p = |a| x64(&f, "personality", [a, 0, 0, 0, 0, 0]);
    assert_eq!(p(8), errno(1));
    assert_eq!(p(131072), errno(1));
    assert_eq!(p(9), ALLOW);
}

#[test]
fn merge_order_of_libseccomp() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_TRAP", "args": [
                {"index": 0, "value": 3, "op": "SCMP_CMP_EQ"}]},
            // Argument-free: replaces the checked rule above.
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
            // After an argument-free rule: ignored.
            {"names": ["read"], "action": "SCMP_ACT_KILL_PROCESS", "args": [
                {"index": 0, "value": 4, "op": "SCMP_CMP_EQ"}]},
            {"names": ["read"], "action": "SCMP_ACT_LOG"},
            // Same as the default: dropped, so it does not override.
            {"names": ["write"], "action": "SCMP_ACT_ALLOW", "args": [
                {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
            {"names": ["write"], "action": "SCMP_ACT_ERRNO"},
        ]
    }));
    for fd in [3, 4, 5] {
        assert_eq!(x64(&f, "read", [fd, 0, 0, 0, 0, 0]), ALLOW);
    }
    assert_eq!(x64(&f, "write", [1, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(x64(&f, "write", [2, 0, 0, 0, 0, 0]), errno(1));
}

fn docker() -> LinuxSeccomp {
    serde_json::from_str(include_str!(
        "../../../tests/fixtures/seccomp/docker-default.json"
    ))
    .unwrap()
}

#[test]
fn docker_default_profile() {
    let f = Filter::compile_for(&docker(), Abi::X86_64).unwrap();
    assert!(f.instructions().len() < 1000, "{}", f.instructions().len());
    let s = docker();
    for sc in s.syscalls().iter().flatten() {
        if sc.args().is_some() || sc.action() != oci_spec::runtime::LinuxSeccompAction::ScmpActAllow
        {
            continue;
        }
        for n in sc.names() {
            for (abi, arch) in [
                (Abi::X86_64, AUDIT_ARCH_X86_64),
                (Abi::X86, AUDIT_ARCH_I386),
                (Abi::X32, AUDIT_ARCH_X86_64),
            ] {
                if let Some(nr) = abi.syscall(n) {
                    assert_eq!(call(&f, arch, nr, NO), ALLOW, "{n} on {abi:?}");
                }
            }
        }
    }
    assert_eq!(x64(&f, "clone3", NO), errno(38));
    assert_eq!(x64(&f, "mount", NO), errno(1));
    assert_eq!(x64(&f, "unshare", NO), errno(1));
    assert_eq!(x64(&f, "socket", [40, 0, 0, 0, 0, 0]), errno(1));
    assert_eq!(x64(&f, "socket", [2, 1, 0, 0, 0, 0]), ALLOW);
    assert_eq!(x64(&f, "personality", [0xffff_ffff, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(x64(&f, "personality", [1, 0, 0, 0, 0, 0]), errno(1));
    let clone = |flags| x64(&f, "clone", [flags, 0, 0, 0, 0, 0]);
    assert_eq!(clone(libc::SIGCHLD as u64), ALLOW);
    assert_eq!(clone(libc::CLONE_NEWNS as u64 | 17), errno(1));
    assert_eq!(clone(libc::CLONE_NEWUSER as u64), errno(1));
    // Newer than the profile: ENOSYS, on all three ABIs.
    let newest = |abi: Abi| {
        ["file_setattr", "mseal", "listmount"]
            .iter()
            .find_map(|n| abi.syscall(n))
            .unwrap()
    };
    assert_eq!(x64(&f, "file_setattr", NO), errno(38));
    assert_eq!(call(&f, AUDIT_ARCH_I386, newest(Abi::X86), NO), errno(38));
    // x32's highest is pwritev2 (547), above every newer syscall's number.
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, newest(Abi::X32), NO), errno(1));
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, 548 | X32, NO), errno(38));
}

#[test]
fn long_programs_assemble() {
    // Enough checked rules that jumps must go through trampolines.
    let rules: Vec<_> = (0..300)
        .map(|i| {
            json!({"names": ["ioctl"], "action": "SCMP_ACT_ALLOW",
                   "args": [{"index": 1, "value": 0x5400 + i, "op": "SCMP_CMP_EQ"}]})
        })
        .collect();
    let f = filter(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": rules}));
    assert!(f.instructions().len() > 300);
    let io = |req| x64(&f, "ioctl", [0, req, 0, 0, 0, 0]);
    assert_eq!(io(0x5400), ALLOW);
    assert_eq!(io(0x5400 + 299), ALLOW);
    assert_eq!(io(0x5400 + 300), errno(1));
    assert_eq!(io(0x1_0000_5400), errno(1));
    assert_eq!(x64(&f, "read", NO), errno(1));
}

#[test]
fn too_long_is_an_error() {
    let rules: Vec<_> = (0..1500)
        .map(|i| {
            json!({"names": ["ioctl"], "action": "SCMP_ACT_ALLOW",
                   "args": [{"index": 1, "value": i, "op": "SCMP_CMP_EQ"}]})
        })
        .collect();
    let s = profile(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": rules}));
    let e = Filter::compile_for(&s, Abi::X86_64)
        .unwrap_err()
        .to_string();
    assert!(e.contains("4096"), "{e}");
}

#[test]
fn validation_names_the_field() {
    let err = |v| {
        Filter::compile_for(&profile(v), Abi::X86_64)
            .unwrap_err()
            .to_string()
    };
    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["read"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}));
    assert!(
        e.starts_with("linux.seccomp.syscalls[1].args[0].index:"),
        "{e}"
    );
    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}));
    assert!(e.starts_with("linux.seccomp.syscalls[0].errnoRet:"), "{e}");
    let e = err(json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
    assert!(e.starts_with("linux.seccomp.defaultAction:"), "{e}");
    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}));
    assert!(e.starts_with("linux.seccomp.listenerPath:"), "{e}");
    let e = err(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x", "syscalls": [
        {"names": ["write"], "action": "SCMP_ACT_NOTIFY"}]}),
    );
    assert!(e.starts_with("linux.seccomp.syscalls[0].action:"), "{e}");
    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": [], "action": "SCMP_ACT_ERRNO"}]}));
    assert!(e.starts_with("linux.seccomp.syscalls[0].names:"), "{e}");
}

#[test]
fn names_checked_before_parsing() {
    let cfg = |s: serde_json::Value| json!({"linux": {"seccomp": s}});
    assert_eq!(
        check_names(&cfg(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["a"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["a"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["a"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["a"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 1, "op": "X"}]}]})
        )),
        Err(r#"linux.seccomp.syscalls[3].args[0].op: unknown operator "X""#.into())
    );
    assert_eq!(
        check_names(&cfg(json!({"defaultAction": "SCMP_ACT_NOPE"}))),
        Err(r#"linux.seccomp.defaultAction: unknown action "SCMP_ACT_NOPE""#.into())
    );
    assert_eq!(
        check_names(&cfg(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]}))),
        Err(r#"linux.seccomp.architectures[1]: unknown architecture "SCMP_ARCH_Z80""#.into())
    );
    assert_eq!(
        check_names(&cfg(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_BOGUS"]}))),
        Err(r#"linux.seccomp.flags[0]: unknown flag "SECCOMP_FILTER_FLAG_BOGUS""#.into())
    );
    assert!(check_names(&cfg(serde_json::to_value(docker()).unwrap())).is_ok());
    assert!(check_names(&json!({})).is_ok());
}

/// runc (specconv's SetupSeccomp): a profile without `flags` gets
/// SPEC_ALLOW, an explicit empty list gets none.
#[test]
fn spec_allow_unless_flags_are_given() {
    let with = |flags: Option<serde_json::Value>| {
        let mut p = json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]});
        if let Some(f) = flags {
            p["flags"] = f;
        }
        check(&profile(p), Abi::X86_64).unwrap().1
    };
    assert_eq!(with(None), libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW);
    assert_eq!(with(Some(json!([]))), 0);
    assert_eq!(
        with(Some(json!(["SECCOMP_FILTER_FLAG_LOG"]))),
        libc::SECCOMP_FILTER_FLAG_LOG
    );
}
