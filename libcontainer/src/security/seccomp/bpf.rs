//! A small classic-BPF assembler with forward labels.
//!
//! cBPF conditional jumps reach at most 255 instructions ahead; a jump
//! that ends up further is rewritten as `jcond 0,1; ja T; ja F` (`ja` has
//! a 32-bit offset). Rewriting only lengthens the program, so repeating
//! the layout until nothing changes terminates.

use libc::sock_filter;

pub const BPF_LD: u16 = 0x00;
pub const BPF_ALU: u16 = 0x04;
pub const BPF_JMP: u16 = 0x05;
pub const BPF_RET: u16 = 0x06;
pub const BPF_W: u16 = 0x00;
pub const BPF_ABS: u16 = 0x20;
pub const BPF_AND: u16 = 0x50;
pub const BPF_JA: u16 = 0x00;
pub const BPF_JEQ: u16 = 0x10;
pub const BPF_JGT: u16 = 0x20;
pub const BPF_JGE: u16 = 0x30;
pub const BPF_K: u16 = 0x00;

/// The kernel's limit on a filter's length (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;

/// A position in the program, bound once with [`Asm::bind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Label(usize);

#[derive(Debug, Clone, Copy)]
enum Op {
    Stmt(sock_filter),
    /// `code` is BPF_JMP|cond|BPF_K.
    Jump {
        code: u16,
        k: u32,
        jt: Label,
        jf: Label,
    },
    Ja(Label),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AsmError {
    #[error("the program needs {0} instructions, more than the kernel's limit of 4096")]
    TooLong(usize),
    /// A bug of the compiler, not of the config.
    #[error("internal error: label {0} used but never bound, or bound before its jump")]
    BadLabel(usize),
}

#[derive(Debug, Default)]
pub struct Asm {
    ops: Vec<Op>,
    /// Op index each label is bound to.
    labels: Vec<Option<usize>>,
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

impl Asm {
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Binds `l` to the next instruction emitted.
    pub fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.ops.len());
    }

    /// A = the 32-bit word at `off` in seccomp_data.
    pub fn ld(&mut self, off: u32) {
        self.ops.push(Op::Stmt(stmt(BPF_LD | BPF_W | BPF_ABS, off)));
    }

    /// A &= k.
    pub fn and(&mut self, k: u32) {
        self.ops.push(Op::Stmt(stmt(BPF_ALU | BPF_AND | BPF_K, k)));
    }

    pub fn ret(&mut self, k: u32) {
        self.ops.push(Op::Stmt(stmt(BPF_RET | BPF_K, k)));
    }

    /// if A <cond> k goto jt else goto jf; `cond` is BPF_JEQ, BPF_JGT,
    /// BPF_JGE or BPF_JSET.
    pub fn jump(&mut self, cond: u16, k: u32, jt: Label, jf: Label) {
        if jt == jf {
            self.ja(jt);
        } else {
            self.ops.push(Op::Jump {
                code: BPF_JMP | cond | BPF_K,
                k,
                jt,
                jf,
            });
        }
    }

    pub fn ja(&mut self, l: Label) {
        self.ops.push(Op::Ja(l));
    }

    /// Lays the program out and resolves every jump.
    pub fn assemble(self) -> Result<Vec<sock_filter>, AsmError> {
        let mut long = vec![false; self.ops.len()];
        loop {
            // pos[i]: where op i starts; pos[len]: the end.
            let mut pos = Vec::with_capacity(self.ops.len() + 1);
            let mut at = 0usize;
            for (i, op) in self.ops.iter().enumerate() {
                pos.push(at);
                at += match op {
                    Op::Jump { .. } if long[i] => 3,
                    _ => 1,
                };
            }
            pos.push(at);
            if at > MAX_INSNS {
                return Err(AsmError::TooLong(at));
            }
            let target = |l: Label| -> Result<usize, AsmError> {
                self.labels[l.0]
                    .map(|i| pos[i])
                    .ok_or(AsmError::BadLabel(l.0))
            };
            // Offset of `to` from the instruction after the one at `from`.
            let offset = |from: usize, to: Label| -> Result<usize, AsmError> {
                target(to)?
                    .checked_sub(from + 1)
                    .ok_or(AsmError::BadLabel(to.0))
            };
            let mut changed = false;
            let mut out = Vec::with_capacity(at);
            for (i, op) in self.ops.iter().enumerate() {
                let p = pos[i];
                match *op {
                    Op::Stmt(s) => out.push(s),
                    Op::Ja(l) => out.push(stmt(BPF_JMP | BPF_JA, offset(p, l)? as u32)),
                    Op::Jump { code, k, jt, jf } if long[i] => {
                        out.push(sock_filter {
                            code,
                            jt: 0,
                            jf: 1,
                            k,
                        });
                        out.push(stmt(BPF_JMP | BPF_JA, offset(p + 1, jt)? as u32));
                        out.push(stmt(BPF_JMP | BPF_JA, offset(p + 2, jf)? as u32));
                    }
                    Op::Jump { code, k, jt, jf } => {
                        let (t, f) = (offset(p, jt)?, offset(p, jf)?);
                        match (u8::try_from(t), u8::try_from(f)) {
                            (Ok(jt), Ok(jf)) => out.push(sock_filter { code, jt, jf, k }),
                            _ => {
                                long[i] = true;
                                changed = true;
                            }
                        }
                    }
                }
            }
            if !changed {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_jumps_are_rewritten() {
        let mut a = Asm::default();
        let (far, near) = (a.label(), a.label());
        a.ld(0);
        a.jump(BPF_JEQ, 7, far, near);
        a.bind(near);
        for _ in 0..300 {
            a.ret(1);
        }
        a.bind(far);
        a.ret(2);
        let p = a.assemble().unwrap();
        assert_eq!(p.len(), 1 + 3 + 300 + 1);
        assert_eq!((p[1].jt, p[1].jf), (0, 1));
        assert_eq!(p[2].code, BPF_JMP | BPF_JA);
        assert_eq!(p[2].k as usize, 304 - 3);
        assert_eq!(p[3].k, 0);
    }

    #[test]
    fn unbound_label_is_an_error() {
        let mut a = Asm::default();
        let l = a.label();
        a.ja(l);
        assert!(a.assemble().is_err());
    }
}
