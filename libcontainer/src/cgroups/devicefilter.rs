//! Device rules on cgroup v2: an eBPF program of type
//! BPF_PROG_TYPE_CGROUP_DEVICE attached to the container's cgroup, built as
//! runc's devicefilter builds it.
//!
//! The rules are first run through an emulation of the v1 devices
//! controller (runc's devicesemulator), so that the program means exactly
//! what the same rules mean on v1: an `a` rule resets to allow-all or
//! deny-all, later rules add or take away exceptions (so the last rule that
//! matches wins), and taking a hole out of a wildcard exception is refused.
//! What is left is a default and a set of exceptions that all have the
//! other verdict, so the program is a list of independent checks.
//!
//! The program is written by hand (a few instruction kinds) and loaded with
//! bpf(2) directly: an eBPF crate would bring far more than this needs.

use super::emulator::{DeviceRule, Emulator, ACC_ALL};
use crate::error::{Error, Result};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

const FIELD: &str = "linux.resources.devices";

const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

/// One eBPF instruction (struct bpf_insn).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

// Instruction codes (linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU32_MOV_K: u8 = 0xb4;
const ALU32_MOV_X: u8 = 0xbc;
const JMP_JNE_K: u8 = 0x55;
const JMP_JNE_X: u8 = 0x5d;
const JMP_EXIT: u8 = 0x95;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// The program for the emulated rules. R1 points at struct
/// bpf_cgroup_dev_ctx { u32 access_type (type | access << 16); u32 major;
/// u32 minor; }; R0 = 1 allows.
pub(crate) fn program(e: &Emulator) -> Result<Vec<Insn>> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0), // R2 = type
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0), // R3 = access
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0), // R4 = major
        insn(LDX_MEM_W, 5, 1, 8, 0), // R5 = minor
    ];
    let number = |n: i64, what: &str| {
        i32::try_from(n).map_err(|_| Error::invalid(FIELD, format!("invalid {what} number {n}")))
    };
    for (&(typ, major, minor), &perms) in &e.exceptions {
        let typ = match typ {
            'c' => DEV_CHAR,
            'b' => DEV_BLOCK,
            t => return Err(Error::invalid(FIELD, format!("invalid device type {t:?}"))),
        };
        // Each check jumps past the block's end when it fails; the offsets
        // are filled in once the block's length is known.
        let mut block = vec![insn(JMP_JNE_K, 2, 0, 0, typ)];
        if perms != ACC_ALL {
            // Every requested bit must be among the allowed ones.
            block.push(insn(ALU32_MOV_X, 1, 3, 0, 0));
            block.push(insn(ALU32_AND_K, 1, 0, 0, i32::from(perms)));
            block.push(insn(JMP_JNE_X, 1, 3, 0, 0));
        }
        if let Some(m) = major {
            block.push(insn(JMP_JNE_K, 4, 0, 0, number(m, "major")?));
        }
        if let Some(m) = minor {
            block.push(insn(JMP_JNE_K, 5, 0, 0, number(m, "minor")?));
        }
        block.push(insn(ALU32_MOV_K, 0, 0, 0, i32::from(!e.default_allow)));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        let end = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JMP_JNE_K || ins.code == JMP_JNE_X {
                ins.off = (end - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(insn(ALU32_MOV_K, 0, 0, 0, i32::from(e.default_allow)));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    Ok(p)
}

// bpf(2) commands, types and flags (linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// union bpf_attr, as the words each command reads; the rest stays zero,
/// as the kernel requires.
#[repr(C, align(8))]
struct Attr([u32; 32]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 32])
    }
    fn u32(mut self, at: usize, v: u32) -> Attr {
        self.0[at / 4] = v;
        self
    }
    fn u64(mut self, at: usize, v: u64) -> Attr {
        self.0[at / 4] = v as u32;
        self.0[at / 4 + 1] = (v >> 32) as u32;
        self
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> std::result::Result<i64, nix::errno::Errno> {
    // SAFETY: attr is a zero-padded bpf_attr whose pointers (if any) point
    // at buffers that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut Attr,
            std::mem::size_of::<Attr>(),
        )
    };
    if r < 0 {
        Err(nix::errno::Errno::last())
    } else {
        Ok(r)
    }
}

/// Ids of the device programs attached to the cgroup itself.
fn attached(cgroup: BorrowedFd<'_>) -> Result<Vec<u32>> {
    let mut ids = [0u32; 64];
    let mut attr = Attr::new()
        .u32(0, cgroup.as_raw_fd() as u32)
        .u32(4, BPF_CGROUP_DEVICE)
        .u64(16, ids.as_mut_ptr() as u64)
        .u32(24, ids.len() as u32);
    bpf(BPF_PROG_QUERY, &mut attr)
        .map_err(|e| Error::sys(format!("{FIELD}: bpf(BPF_PROG_QUERY) on the cgroup"), e))?;
    let n = (attr.0[6] as usize).min(ids.len());
    Ok(ids[..n].to_vec())
}

fn load(insns: &[Insn]) -> Result<OwnedFd> {
    let license = c"Apache";
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = Attr::new()
        .u32(0, BPF_PROG_TYPE_CGROUP_DEVICE)
        .u32(4, insns.len() as u32)
        .u64(8, insns.as_ptr() as u64)
        .u64(16, license.as_ptr() as u64)
        .u32(24, 1)
        .u32(28, log.len() as u32)
        .u64(32, log.as_mut_ptr() as u64);
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: a new fd owned by nobody else.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let msg = String::from_utf8_lossy(&log[..end]);
            Err(Error::sys(
                format!(
                    "{FIELD}: load the eBPF device program (bpf(BPF_PROG_LOAD)){}",
                    if msg.trim().is_empty() {
                        String::new()
                    } else {
                        format!(" [verifier: {}]", msg.trim())
                    }
                ),
                e,
            ))
        }
    }
}

/// Loads the program for `rules` and attaches it to the cgroup, replacing
/// the device programs attached there before (the new one goes on first,
/// so there is no moment without a filter), as runc does.
pub(crate) fn apply(cgroup: BorrowedFd<'_>, rules: &[DeviceRule]) -> Result<()> {
    let prog = load(&program(&Emulator::new(rules)?)?)?;
    let old = attached(cgroup)?;
    let mut attr = Attr::new()
        .u32(0, cgroup.as_raw_fd() as u32)
        .u32(4, prog.as_raw_fd() as u32)
        .u32(8, BPF_CGROUP_DEVICE)
        .u32(12, BPF_F_ALLOW_MULTI);
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| {
        Error::sys(
            format!("{FIELD}: attach the eBPF device program (bpf(BPF_PROG_ATTACH))"),
            e,
        )
    })?;
    for id in old {
        let mut attr = Attr::new().u32(0, id);
        let Ok(fd) = bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) else {
            continue; // gone meanwhile
        };
        // SAFETY: a new fd owned by nobody else.
        let old = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let mut attr = Attr::new()
            .u32(0, cgroup.as_raw_fd() as u32)
            .u32(4, old.as_raw_fd() as u32)
            .u32(8, BPF_CGROUP_DEVICE);
        bpf(BPF_PROG_DETACH, &mut attr).map_err(|e| {
            Error::sys(
                format!("{FIELD}: detach the previous eBPF device program {id}"),
                e,
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::emulator::tests::rule;

    #[test]
    fn program_shape() {
        let e = Emulator::new(&[
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', Some(1), Some(3), "rwm"),
            rule(true, 'b', Some(8), None, "r"),
        ])
        .unwrap();
        let p = program(&e).unwrap();
        // 6 loads, b 8:* r (type, 3 access, major, verdict 2), c 1:3 (type,
        // major, minor, verdict 2), default 2.
        assert_eq!(p.len(), 6 + 7 + 5 + 2);
        // The first check of the first block skips to the second block.
        assert_eq!(p[6], insn(JMP_JNE_K, 2, 0, 6, DEV_BLOCK));
        assert_eq!(p[p.len() - 2], insn(ALU32_MOV_K, 0, 0, 0, 0));
    }

    #[test]
    fn a_new_program_replaces_the_attached_one() {
        // On a real cgroup2 directory (this host's unified mount or a pure
        // v2 host); needs root.
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let name = format!("/keel-devicefilter-test-{}", std::process::id());
        let Some(dir) = super::super::CgroupPaths::resolve(Some(std::path::Path::new(&name)), "x")
            .ok()
            .and_then(|p| p.unified)
        else {
            eprintln!("skipped: no cgroup2 hierarchy mounted");
            return;
        };
        std::fs::create_dir(&dir).unwrap();
        let fd = std::fs::File::open(&dir).unwrap();
        let run = || -> Result<Vec<Vec<u32>>> {
            let mut seen = Vec::new();
            for rules in [
                vec![rule(false, 'a', None, None, "rwm")],
                vec![
                    rule(true, 'a', None, None, "rwm"),
                    rule(false, 'b', None, None, "w"),
                ],
            ] {
                apply(std::os::fd::AsFd::as_fd(&fd), &rules)?;
                seen.push(attached(std::os::fd::AsFd::as_fd(&fd))?);
            }
            Ok(seen)
        };
        let seen = run();
        drop(fd);
        std::fs::remove_dir(&dir).unwrap();
        let seen = seen.unwrap();
        assert_eq!(seen[0].len(), 1, "{seen:?}");
        assert_eq!(seen[1].len(), 1, "{seen:?}");
        assert_ne!(seen[0], seen[1]);
    }
}
