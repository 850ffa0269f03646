//! A classic-BPF interpreter for the instructions the compiler emits, to
//! run programs over synthetic seccomp_data in tests.

use super::bpf::*;

/// The fields of struct seccomp_data the filter can look at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Data {
    pub nr: u32,
    pub arch: u32,
    pub args: [u64; 6],
}

impl Data {
    fn word(&self, off: u32) -> u32 {
        match off {
            0 => self.nr,
            4 => self.arch,
            16..=63 if off % 4 == 0 => {
                let a = self.args[((off - 16) / 8) as usize];
                if off % 8 == 0 {
                    a as u32
                } else {
                    (a >> 32) as u32
                }
            }
            _ => panic!("load from offset {off}"),
        }
    }
}

/// Runs `prog` and returns its verdict; panics on anything the kernel's
/// checker would refuse (bad jumps, falling off the end, unknown codes).
pub fn run(prog: &[libc::sock_filter], d: &Data) -> u32 {
    assert!(!prog.is_empty() && prog.len() <= MAX_INSNS);
    let mut a: u32 = 0;
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        pc += 1;
        match i.code {
            c if c == BPF_LD | BPF_W | BPF_ABS => a = d.word(i.k),
            c if c == BPF_ALU | BPF_AND | BPF_K => a &= i.k,
            c if c == BPF_RET | BPF_K => return i.k,
            c if c == BPF_JMP | BPF_JA => pc += i.k as usize,
            c => {
                assert_eq!(c & 0x07, BPF_JMP, "unknown code {c:#x}");
                let taken = match c & !(BPF_JMP | BPF_K) {
                    BPF_JEQ => a == i.k,
                    BPF_JGT => a > i.k,
                    BPF_JGE => a >= i.k,
                    _ => panic!("unknown code {c:#x} at {}", pc - 1),
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
        }
        assert!(pc < prog.len(), "fell off the end");
    }
}
