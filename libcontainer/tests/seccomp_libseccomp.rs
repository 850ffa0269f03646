//! Differential tests of keel's seccomp compiler against libseccomp (the
//! `libseccomp` crate, a dev-dependency only; needs libseccomp-dev).
//!
//! Each profile is compiled by keel and, the way runc feeds it to
//! libseccomp, by libseccomp; a forked child installs one program and
//! makes one syscall with chosen, harmless arguments; the outcomes
//! (return value or errno, or the signal that killed it) must agree.
//! libseccomp alone has no ENOSYS stub (runc patches it in), so numbers
//! above a profile's highest are expected to give ENOSYS in keel only.
//!
//! Also measures compiling and loading Docker's profile with both.

#![cfg(target_arch = "x86_64")]

use libkeel::oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as Action, LinuxSeccompOperator as Op,
};
use libkeel::seccomp::{Abi, Filter};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use serde_json::json;
use std::io::{Read, Seek};
use std::time::Instant;

fn docker() -> LinuxSeccomp {
    serde_json::from_str(include_str!("fixtures/seccomp/docker-default.json")).unwrap()
}

fn action(a: Action, errno: Option<u32>) -> ScmpAction {
    let e = errno.unwrap_or(libc::EPERM as u32);
    match a {
        Action::ScmpActKill | Action::ScmpActKillThread => ScmpAction::KillThread,
        Action::ScmpActKillProcess => ScmpAction::KillProcess,
        Action::ScmpActTrap => ScmpAction::Trap,
        Action::ScmpActErrno => ScmpAction::Errno(e as i32),
        Action::ScmpActTrace => ScmpAction::Trace(e as u16),
        Action::ScmpActLog => ScmpAction::Log,
        Action::ScmpActAllow => ScmpAction::Allow,
        Action::ScmpActNotify => ScmpAction::Notify,
    }
}

/// runc's libcontainer/seccomp.InitSeccomp, minus patchbpf.
fn libseccomp_filter(s: &LinuxSeccomp) -> ScmpFilterContext {
    try_libseccomp_filter(s).unwrap()
}

/// As runc feeds a profile to libseccomp; Err when libseccomp refuses it.
fn try_libseccomp_filter(s: &LinuxSeccomp) -> Result<ScmpFilterContext, String> {
    let e = |e: libseccomp::error::SeccompError| e.to_string();
    let default = action(s.default_action(), s.default_errno_ret());
    let mut ctx = ScmpFilterContext::new(default).map_err(e)?;
    for a in s.architectures().iter().flatten() {
        let arch = match a {
            Arch::ScmpArchX86 => ScmpArch::X86,
            Arch::ScmpArchX32 => ScmpArch::X32,
            Arch::ScmpArchX86_64 | Arch::ScmpArchNative => continue,
            other => panic!("test only knows x86 arches, not {other:?}"),
        };
        ctx.add_arch(arch).map_err(e)?;
    }
    ctx.set_ctl_nnp(false).map_err(e)?;
    for sc in s.syscalls().iter().flatten() {
        let act = action(sc.action(), sc.errno_ret());
        if act == default {
            continue;
        }
        let conds: Vec<ScmpArgCompare> = sc
            .args()
            .iter()
            .flatten()
            .map(|a| {
                let op = match a.op() {
                    Op::ScmpCmpNe => ScmpCompareOp::NotEqual,
                    Op::ScmpCmpLt => ScmpCompareOp::Less,
                    Op::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
                    Op::ScmpCmpEq => ScmpCompareOp::Equal,
                    Op::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
                    Op::ScmpCmpGt => ScmpCompareOp::Greater,
                    Op::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(a.value()),
                };
                let datum = match a.op() {
                    Op::ScmpCmpMaskedEq => a.value_two().unwrap_or(0),
                    _ => a.value(),
                };
                ScmpArgCompare::new(a.index() as u32, op, datum)
            })
            .collect();
        let mut seen = [0; 6];
        for a in sc.args().iter().flatten() {
            seen[a.index()] += 1;
        }
        for name in sc.names() {
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                continue;
            };
            if conds.is_empty() {
                ctx.add_rule(act, nr).map_err(e)?;
            } else if seen.iter().any(|&n| n > 1) {
                for c in &conds {
                    ctx.add_rule_conditional(act, nr, &[*c]).map_err(e)?;
                }
            } else {
                ctx.add_rule_conditional(act, nr, &conds).map_err(e)?;
            }
        }
    }
    Ok(ctx)
}

fn libseccomp_program(ctx: &ScmpFilterContext) -> Vec<libc::sock_filter> {
    let mut f = tempfile();
    ctx.export_bpf(&f).unwrap();
    let mut bytes = Vec::new();
    f.rewind().unwrap();
    f.read_to_end(&mut bytes).unwrap();
    bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect()
}

fn tempfile() -> std::fs::File {
    // SAFETY: memfd_create with a valid name.
    let fd = unsafe { libc::memfd_create(c"bpf".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: a fresh fd we own.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }
}

/// What one syscall did: Ok(return value), Err(errno), or killed by signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ret(i64),
    Errno(i32),
    Killed(i32),
}

/// Forks; the child installs `prog` and makes syscall `nr` with `args`.
/// Nothing in the child allocates (the parent may have threads).
fn outcome(prog: &[libc::sock_filter], nr: i64, args: [u64; 6]) -> Outcome {
    let mut p = [0; 2];
    // SAFETY: plain pipe/fork/syscall/_exit; the child only makes syscalls.
    unsafe {
        assert_eq!(libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC), 0);
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_ptr().cast_mut(),
            };
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            if libc::syscall(libc::SYS_seccomp, 1, 0, &fprog) != 0 {
                libc::_exit(99);
            }
            let r = libc::syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]);
            let v: i64 = if r < 0 {
                -(*libc::__errno_location() as i64)
            } else {
                r
            };
            libc::write(p[1], (&v as *const i64).cast(), 8);
            libc::_exit(0);
        }
        libc::close(p[1]);
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        let mut v = 0i64;
        let n = libc::read(p[0], (&mut v as *mut i64).cast(), 8);
        libc::close(p[0]);
        if libc::WIFSIGNALED(status) {
            return Outcome::Killed(libc::WTERMSIG(status));
        }
        assert_eq!(libc::WEXITSTATUS(status), 0, "child could not install");
        assert_eq!(n, 8);
        if v < 0 {
            Outcome::Errno(-v as i32)
        } else {
            Outcome::Ret(v)
        }
    }
}

/// The battery: (label, nr, args). Every call is harmless when allowed.
fn battery() -> Vec<(String, i64, [u64; 6])> {
    let missing = c"/nonexistent-keel-test/dir".as_ptr() as u64;
    let sys = |n: &str| Abi::X86_64.syscall(n).unwrap() as i64;
    let mut v: Vec<(String, i64, [u64; 6])> = vec![
        ("getppid".into(), sys("getppid"), [0; 6]),
        ("uname(NULL)".into(), sys("uname"), [0; 6]),
        (
            "mkdirat(missing)".into(),
            sys("mkdirat"),
            [libc::AT_FDCWD as u64, missing, 0o755, 0, 0, 0],
        ),
        (
            "mkdir(missing)".into(),
            sys("mkdir"),
            [missing, 0o755, 0, 0, 0, 0],
        ),
        (
            "personality(query)".into(),
            sys("personality"),
            [0xffff_ffff, 0, 0, 0, 0, 0],
        ),
        (
            "personality(7)".into(),
            sys("personality"),
            [7, 0, 0, 0, 0, 0],
        ),
        ("unshare(0)".into(), sys("unshare"), [0; 6]),
        ("clone3(NULL)".into(), sys("clone3"), [0; 6]),
        ("mount(NULL)".into(), sys("mount"), [0; 6]),
        (
            "ptrace(-1)".into(),
            sys("ptrace"),
            [u64::MAX, 0, 0, 0, 0, 0],
        ),
        ("syscall(-1)".into(), -1, [0; 6]),
    ];
    for (fam, ty) in [
        (libc::AF_UNIX, libc::SOCK_STREAM),
        (libc::AF_INET, libc::SOCK_DGRAM),
        (40, libc::SOCK_STREAM), // AF_VSOCK
        (libc::AF_NETLINK, 0x7fff),
    ] {
        v.push((
            format!("socket({fam}, {ty})"),
            sys("socket"),
            [fam as u64, ty as u64, 0, 0, 0, 0],
        ));
    }
    // clone with flags the kernel refuses anyway (EINVAL when allowed).
    for flags in [
        libc::CLONE_SIGHAND as u64,
        (libc::CLONE_NEWUSER | libc::CLONE_FS) as u64,
        (libc::CLONE_NEWNS | libc::CLONE_FS) as u64,
        1 << 32 | libc::CLONE_SIGHAND as u64,
    ] {
        v.push((
            format!("clone({flags:#x})"),
            sys("clone"),
            [flags, 0, 0, 0, 0, 0],
        ));
    }
    // getpgid: harmless with any argument; for the comparison profile.
    for a in [
        0u64,
        1,
        5,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0005,
        0x2_0000_0000,
        u64::MAX,
    ] {
        v.push((
            format!("getpgid({a:#x})"),
            sys("getpgid"),
            [a, 0, 0, 0, 0, 0],
        ));
    }
    v
}

fn differential(name: &str, s: &LinuxSeccomp, above_max: &[&str]) {
    let keel = Filter::from_spec(s).unwrap();
    let lib = libseccomp_program(&libseccomp_filter(s));
    compare(name, keel.instructions(), &lib, above_max, &[]);
}

/// Runs the battery under both programs; `above_max` are the labels that
/// keel's ENOSYS stub answers (libseccomp alone has no stub), `skip` those
/// not compared.
fn compare(
    name: &str,
    keel: &[libc::sock_filter],
    lib: &[libc::sock_filter],
    above_max: &[&str],
    skip: &[&str],
) {
    let mut diffs = Vec::new();
    // A new fd's number depends on what the test process has open.
    let norm = |label: &str, o| match o {
        Outcome::Ret(_) if label.starts_with("socket") => Outcome::Ret(0),
        o => o,
    };
    for (label, nr, args) in battery() {
        if skip.contains(&label.as_str()) {
            continue;
        }
        let k = norm(&label, outcome(keel, nr, args));
        let l = norm(&label, outcome(lib, nr, args));
        if above_max.contains(&label.as_str()) {
            assert_eq!(
                k,
                Outcome::Errno(libc::ENOSYS),
                "{name}: {label}: ENOSYS stub"
            );
        } else if k != l {
            diffs.push(format!("{label}: keel {k:?}, libseccomp {l:?}"));
        }
    }
    assert!(diffs.is_empty(), "{name}:\n{}", diffs.join("\n"));
    println!(
        "{name}: {} syscalls, same outcome under both filters",
        battery().len()
    );
}

#[test]
fn docker_profile() {
    differential("docker", &docker(), &["syscall(-1)"]);
}

/// containers/common's profile as podman passes it (see the fixture's
/// README): default ERRNO(ENOSYS), so no ENOSYS stub.
#[test]
fn podman_profile() {
    let s = serde_json::from_str(include_str!("fixtures/seccomp/podman-default.json")).unwrap();
    differential("podman", &s, &[]);
}

#[test]
fn deny_profile() {
    let s = serde_json::from_value(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42},
            {"names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
             "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
            {"names": ["socket"], "action": "SCMP_ACT_TRAP",
             "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"},
                      {"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 201,
             "args": [{"index": 0, "value": 7, "op": "SCMP_CMP_EQ"},
                      {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        ]
    }))
    .unwrap();
    differential("deny", &s, &[]);
}

/// A small deterministic generator (xorshift64*), so that a failure names
/// a seed to replay: `KEEL_SECCOMP_SEED=<n>`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }
}

/// A random profile over the battery's syscalls: 1 to 5 rules with random
/// actions (no NOTIFY, which needs an agent), errno values, and up to two
/// argument comparisons with values near the battery's arguments. Each
/// syscall is named by one rule at most: where two argument-checked rules
/// with different actions both match a call, libseccomp's winner follows
/// its internal tree order (argument, comparison, value) and keel's is the
/// first rule listed, a known difference that real profiles avoid.
fn random_profile(r: &mut Rng) -> serde_json::Value {
    let mut names = vec![
        "getppid",
        "uname",
        "mkdirat",
        "mkdir",
        "personality",
        "unshare",
        "clone3",
        "mount",
        "socket",
        "clone",
        "getpgid",
    ];
    let actions = [
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_LOG",
        "SCMP_ACT_ERRNO",
    ];
    let ops = [
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    ];
    let values = [
        0u64,
        1,
        2,
        5,
        7,
        8,
        40,
        0xffff_ffff,
        1 << 32,
        0x1_0000_0005,
        u64::MAX,
    ];
    // What the test's child needs to report and leave.
    let mut rules =
        vec![json!({"names": ["write", "exit_group", "exit"], "action": "SCMP_ACT_ALLOW"})];
    for _ in 0..1 + r.next() % 5 {
        let mut take = || names.swap_remove((r.next() % names.len() as u64) as usize);
        let rule_names = [take(), take()];
        let mut rule = json!({
            "names": rule_names,
            "action": r.pick(&actions),
            "errnoRet": 1 + r.next() % 200,
        });
        let args: Vec<_> = (0..r.next() % 3)
            .map(|_| {
                json!({"index": r.next() % 3, "value": r.pick(&values),
                       "valueTwo": r.pick(&values), "op": r.pick(&ops)})
            })
            .collect();
        rule["args"] = json!(args);
        rules.push(rule);
    }
    json!({
        "defaultAction": r.pick(&["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_LOG"]),
        "defaultErrnoRet": 1 + r.next() % 100,
        "syscalls": rules,
    })
}

/// Generated profiles: keel and libseccomp agree on every call of the
/// battery, keel's ENOSYS stub aside (numbers above the profile's highest,
/// when the default neither allows nor is ENOSYS already).
#[test]
fn generated_profiles() {
    let seed = std::env::var("KEEL_SECCOMP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6b65_656c_u64);
    let mut r = Rng(seed);
    let (mut compared, mut refused) = (0, 0);
    for i in 0..30 {
        let v = random_profile(&mut r);
        let s: LinuxSeccomp = serde_json::from_value(v.clone()).unwrap();
        let Ok(ctx) = try_libseccomp_filter(&s) else {
            refused += 1;
            continue;
        };
        let keel = Filter::from_spec(&s).unwrap_or_else(|e| panic!("{v}: {e}"));
        let stub = !matches!(
            s.default_action(),
            Action::ScmpActAllow | Action::ScmpActLog
        ) && s.default_errno_ret() != Some(libc::ENOSYS as u32);
        let max = s
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|sc| sc.names())
            .filter_map(|n| Abi::X86_64.syscall(n))
            .max()
            .unwrap_or(0);
        let above: Vec<String> = battery()
            .into_iter()
            .filter(|(_, nr, _)| stub && *nr >= 0 && *nr as u32 > max)
            .map(|(l, _, _)| l)
            .collect();
        let above: Vec<&str> = above.iter().map(String::as_str).collect();
        // nr -1 under the stub: keel follows runc's patched filter, whose
        // answer depends on the architecture list (see the docker test).
        let skip: &[&str] = if stub { &["syscall(-1)"] } else { &[] };
        compare(
            &format!("seed {seed:#x} profile {i}: {v}"),
            keel.instructions(),
            &libseccomp_program(&ctx),
            &above,
            skip,
        );
        compared += 1;
    }
    println!("generated: {compared} profiles compared, {refused} refused by libseccomp");
    assert!(compared >= 20, "too few profiles compared: {compared}");
}

/// One profile per operator and constant, on getpgid's argument.
#[test]
fn comparisons() {
    let ops = [
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    ];
    for op in ops {
        for value in [5u64, 0xffff_ffff, 0x1_0000_0000, 0x1_0000_0005] {
            let s = serde_json::from_value(json!({
                "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
                "syscalls": [
                    {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 222,
                     "args": [{"index": 0, "value": value, "valueTwo": 5, "op": op}]},
                    {"names": ["getpgid"], "action": "SCMP_ACT_ALLOW"},
                ]
            }))
            .unwrap();
            differential(&format!("{op} {value:#x}"), &s, &[]);
        }
    }
}

/// keel's x32 and x86 numbers against libseccomp's, for every name keel's
/// tables know that libseccomp also knows.
#[test]
fn syscall_tables_match_libseccomp() {
    let mut names: Vec<String> = Vec::new();
    for arch in [
        ScmpArch::X8664,
        ScmpArch::X86,
        ScmpArch::Aarch64,
        ScmpArch::Arm,
    ] {
        for n in (0..1000).chain(0x0f_0000..0x0f_0010) {
            if let Ok(name) = ScmpSyscall::from(n).get_name_by_arch(arch) {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }
    let mut diffs = Vec::new();
    for (abi, arch) in [
        (Abi::X86_64, ScmpArch::X8664),
        (Abi::X32, ScmpArch::X32),
        (Abi::X86, ScmpArch::X86),
        (Abi::Aarch64, ScmpArch::Aarch64),
        (Abi::Arm, ScmpArch::Arm),
    ] {
        for name in &names {
            let theirs = ScmpSyscall::from_name_by_arch(name, arch)
                .ok()
                .map(|s| s.as_raw_syscall())
                .filter(|&n| n >= 0)
                .map(|n| n as u32);
            let ours = abi.syscall(name);
            // Never implemented by Linux, absent from the crate's table.
            if abi == Abi::X86 && name == "break" {
                continue;
            }
            // libseccomp 2.5 predates some syscalls: only its names count.
            if theirs.is_some() && ours != theirs
                || theirs.is_none() && ours.is_some() && abi == Abi::X32
            {
                diffs.push(format!(
                    "{name} on {abi:?}: keel {ours:?}, libseccomp {theirs:?}"
                ));
            }
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// Compile + load time of Docker's profile, keel vs libseccomp (printed;
/// run with --nocapture). Loading happens in forked children.
#[test]
fn docker_profile_timing() {
    const N: u32 = 200;
    let s = docker();
    let t = Instant::now();
    for _ in 0..N {
        std::hint::black_box(Filter::from_spec(&s).unwrap());
    }
    let keel_compile = t.elapsed() / N;
    let t = Instant::now();
    let mut lib = Vec::new();
    for _ in 0..N {
        lib = libseccomp_program(&libseccomp_filter(&s));
    }
    let lib_compile = t.elapsed() / N;
    let keel = Filter::from_spec(&s).unwrap();
    let load = |prog: &[libc::sock_filter]| {
        let t = Instant::now();
        for _ in 0..20 {
            assert_eq!(
                outcome(prog, Abi::X86_64.syscall("getppid").unwrap() as i64, [0; 6]),
                outcome(prog, Abi::X86_64.syscall("getppid").unwrap() as i64, [0; 6])
            );
        }
        t.elapsed() / 40
    };
    let (kl, ll) = (load(keel.instructions()), load(&lib));
    println!(
        "Docker profile: keel {} insns, compile {:?}; libseccomp {} insns, compile+export {:?}; \
         fork+load+getpid: keel {kl:?}, libseccomp {ll:?}",
        keel.instructions().len(),
        keel_compile,
        lib.len(),
        lib_compile
    );
}
