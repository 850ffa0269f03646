//! From a validated [`Profile`] to cBPF, with libseccomp's semantics.
//!
//! The program:
//!
//! ```text
//!   ld arch; jeq AUDIT_ARCH_a → A; jeq AUDIT_ARCH_b → B; … ; ret BAD_ARCH
//! A:ld nr; binary search over the intervals of nr (below) → a target
//!   target: ret <action> | ret <default> | ret ENOSYS | ret BAD_ARCH
//!         | the argument checks of one syscall, each rule's failure
//!           falling to the next rule and the last one's to the default
//! ```
//!
//! Per AUDIT_ARCH the number line is cut into intervals with one outcome
//! each: a listed syscall is a one-number interval, the gaps get the
//! default action, runc's ENOSYS stub is the interval above the highest
//! syscall the profile names, and on x86_64 the half at and above bit 30
//! belongs to x32 (or is a bad arch when x32 is not listed, as libseccomp
//! does). Adjacent intervals with the same outcome merge, so a Docker-style
//! allow list costs a few hundred instructions and ~9 comparisons a call,
//! where libseccomp's default layout compares one syscall after another.

use super::arch::Abi;
use super::bpf::{Asm, AsmError, Label, BPF_JEQ, BPF_JGE, BPF_JGT};
use super::{CmpOp, Cond, Profile};
use std::collections::{BTreeMap, HashMap};

/// What libseccomp's seccomp_init() uses for an architecture that is not
/// in the filter: SCMP_ACT_KILL_THREAD (runc does not change it).
pub const BAD_ARCH_ACTION: u32 = libc::SECCOMP_RET_KILL_THREAD;

/// ERRNO(ENOSYS), runc's answer to syscalls newer than the profile.
pub const ENOSYS_ACTION: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

/// Offsets in struct seccomp_data.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// Low and high words of args[i]; every ABI keel supports is little-endian.
fn arg_lo(i: u8) -> u32 {
    16 + 8 * u32::from(i)
}
fn arg_hi(i: u8) -> u32 {
    arg_lo(i) + 4
}

/// One syscall's rules for one ABI.
#[derive(Debug, Default)]
struct Syscall<'a> {
    /// An argument-free rule's action: it decides alone.
    always: Option<u32>,
    /// Argument-checked rules, tried in order: (conditions, action).
    checked: Vec<(&'a [Cond], u32)>,
}

/// An interval's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ret(u32),
    /// Checked rules of syscall `nr` of ABI `abi`.
    Checks(Abi, u32),
}

pub fn compile(p: &Profile) -> Result<Vec<libc::sock_filter>, AsmError> {
    // Per ABI: nr → rules, in libseccomp's merge order.
    let mut tables: BTreeMap<Abi, BTreeMap<u32, Syscall>> = BTreeMap::new();
    let mut highest: HashMap<Abi, u32> = HashMap::new();
    for &abi in &p.abis {
        let table = tables.entry(abi).or_default();
        for rule in &p.rules {
            for name in &rule.names {
                let Some(nr) = abi.syscall(name) else {
                    continue;
                };
                // runc's stub counts every name, whatever its action.
                let h = highest.entry(abi).or_insert(nr);
                *h = (*h).max(nr);
                // runc drops rules that repeat the default action.
                if rule.action == p.default {
                    continue;
                }
                let s = table.entry(nr).or_default();
                for conds in &rule.alternatives {
                    if conds.is_empty() {
                        // An argument-free rule wipes out earlier checked
                        // ones; the first argument-free rule stays.
                        if s.always.is_none() {
                            s.always = Some(rule.action);
                            s.checked.clear();
                        }
                    } else if s.always.is_none() {
                        s.checked.push((conds, rule.action));
                    }
                }
            }
        }
    }

    let mut asm = Asm::default();
    let mut rets: HashMap<u32, Label> = HashMap::new();
    let mut ret_label = |asm: &mut Asm, k: u32| *rets.entry(k).or_insert_with(|| asm.label());

    // Architecture dispatch.
    let mut families: Vec<u32> = Vec::new();
    for abi in &p.abis {
        if !families.contains(&abi.audit_arch()) {
            families.push(abi.audit_arch());
        }
    }
    let bad_arch = ret_label(&mut asm, BAD_ARCH_ACTION);
    let family_labels: Vec<Label> = families.iter().map(|_| asm.label()).collect();
    asm.ld(OFF_ARCH);
    for (fam, &l) in families.iter().zip(&family_labels) {
        let next = asm.label();
        asm.jump(BPF_JEQ, *fam, l, next);
        asm.bind(next);
    }
    asm.ja(bad_arch);

    let mut checks: Vec<(Label, Abi, u32)> = Vec::new();
    for (fam, &l) in families.iter().zip(&family_labels) {
        asm.bind(l);
        asm.ld(OFF_NR);
        // Intervals (start, outcome), sorted, covering 0..=u32::MAX.
        let mut iv: Vec<(u32, Outcome)> = Vec::new();
        let push = |iv: &mut Vec<(u32, Outcome)>, start: u32, o: Outcome| match iv.last() {
            Some(&(_, last)) if last == o => {}
            _ => iv.push((start, o)),
        };
        let members: Vec<Abi> = Abi::runnable_on(p.native)
            .iter()
            .copied()
            .filter(|a| a.audit_arch() == *fam)
            .collect();
        let mut spans: Vec<(u32, u32, Option<Abi>)> = members
            .iter()
            .map(|&a| {
                let (lo, hi) = a.nr_range();
                (lo, hi, p.abis.contains(&a).then_some(a))
            })
            .collect();
        spans.sort();
        for (lo, hi, abi) in spans {
            let Some(abi) = abi else {
                push(&mut iv, lo, Outcome::Ret(BAD_ARCH_ACTION));
                if hi == u32::MAX && lo > 0 {
                    // x32 left out: libseccomp still lets nr -1 (what a
                    // tracer sets to skip a syscall) through to the
                    // x86_64 rules, where it can only meet the default.
                    push(&mut iv, u32::MAX, Outcome::Ret(p.default));
                }
                continue;
            };
            let table = &tables[&abi];
            // u64: one past u32::MAX must be representable.
            let mut at = u64::from(lo);
            for (&nr, s) in table.range(lo..=hi) {
                if u64::from(nr) > at {
                    push(&mut iv, at as u32, Outcome::Ret(p.default));
                }
                let o = match s.always {
                    Some(a) => Outcome::Ret(a),
                    None if s.checked.is_empty() => Outcome::Ret(p.default),
                    None => Outcome::Checks(abi, nr),
                };
                push(&mut iv, nr, o);
                at = u64::from(nr) + 1;
            }
            let hi = u64::from(hi);
            if p.enosys_stub {
                if let Some(&h) = highest.get(&abi) {
                    // h >= every nr in the table, so h + 1 >= at.
                    let s = u64::from(h) + 1;
                    if at < s && at <= hi {
                        push(&mut iv, at as u32, Outcome::Ret(p.default));
                    }
                    at = at.max(s);
                    if at <= hi {
                        push(&mut iv, at as u32, Outcome::Ret(ENOSYS_ACTION));
                    }
                    continue;
                }
            }
            if at <= hi {
                push(&mut iv, at as u32, Outcome::Ret(p.default));
            }
        }
        // Resolve outcomes to labels, then emit the search tree.
        let mut targets = Vec::with_capacity(iv.len());
        for &(_, o) in &iv {
            targets.push(match o {
                Outcome::Ret(k) => ret_label(&mut asm, k),
                Outcome::Checks(abi, nr) => {
                    let l = asm.label();
                    checks.push((l, abi, nr));
                    l
                }
            });
        }
        let starts: Vec<u32> = iv.iter().map(|&(s, _)| s).collect();
        search(&mut asm, &starts, &targets);
    }

    // Argument checks.
    for (l, abi, nr) in checks {
        asm.bind(l);
        let s = &tables[&abi][&nr];
        for (conds, action) in &s.checked {
            let next = asm.label();
            let hit = ret_label(&mut asm, *action);
            for (i, c) in conds.iter().enumerate() {
                let pass = if i + 1 == conds.len() {
                    hit
                } else {
                    asm.label()
                };
                cond(&mut asm, abi, c, pass, next);
                if pass != hit {
                    asm.bind(pass);
                }
            }
            asm.bind(next);
        }
        let default = ret_label(&mut asm, p.default);
        asm.ja(default);
    }

    // The shared returns, in a fixed order so output is reproducible.
    let mut rets: Vec<(u32, Label)> = rets.into_iter().collect();
    rets.sort_by_key(|&(k, _)| k);
    for (k, l) in rets {
        asm.bind(l);
        asm.ret(k);
    }
    asm.assemble()
}

/// Binary search over intervals: `starts[i]` opens interval i (starts[0]
/// is the range's low end, already known to hold), `targets[i]` its code.
fn search(asm: &mut Asm, starts: &[u32], targets: &[Label]) {
    if starts.len() == 1 {
        asm.ja(targets[0]);
        return;
    }
    let mid = starts.len() / 2;
    let subtree = |asm: &mut Asm, r: std::ops::Range<usize>| {
        if r.len() == 1 {
            (targets[r.start], None)
        } else {
            let l = asm.label();
            (l, Some(r))
        }
    };
    let (left, lr) = subtree(asm, 0..mid);
    let (right, rr) = subtree(asm, mid..starts.len());
    asm.jump(BPF_JGE, starts[mid], right, left);
    if let Some(r) = lr {
        asm.bind(left);
        search(asm, &starts[r.clone()], &targets[r]);
    }
    if let Some(r) = rr {
        asm.bind(right);
        search(asm, &starts[r.clone()], &targets[r]);
    }
}

/// Code for one comparison: goes to `t` when it holds, `f` otherwise.
/// 64-bit values are compared high word first, as libseccomp does.
fn cond(asm: &mut Asm, abi: Abi, c: &Cond, t: Label, f: Label) {
    let (hi, lo) = ((c.value >> 32) as u32, c.value as u32);
    let (mhi, mlo) = ((c.mask >> 32) as u32, c.mask as u32);
    if !abi.args_are_64bit() {
        // libseccomp: only the low word on 32-bit ABIs.
        asm.ld(arg_lo(c.arg));
        match c.op {
            CmpOp::Eq => asm.jump(BPF_JEQ, lo, t, f),
            CmpOp::Ne => asm.jump(BPF_JEQ, lo, f, t),
            CmpOp::Gt => asm.jump(BPF_JGT, lo, t, f),
            CmpOp::Ge => asm.jump(BPF_JGE, lo, t, f),
            CmpOp::Lt => asm.jump(BPF_JGE, lo, f, t),
            CmpOp::Le => asm.jump(BPF_JGT, lo, f, t),
            CmpOp::MaskedEq => {
                asm.and(mlo);
                asm.jump(BPF_JEQ, lo, t, f);
            }
        }
        return;
    }
    let next = asm.label();
    asm.ld(arg_hi(c.arg));
    match c.op {
        CmpOp::Eq | CmpOp::Ne => {
            let (t, f) = if c.op == CmpOp::Eq { (t, f) } else { (f, t) };
            asm.jump(BPF_JEQ, hi, next, f);
            asm.bind(next);
            asm.ld(arg_lo(c.arg));
            asm.jump(BPF_JEQ, lo, t, f);
        }
        CmpOp::Gt | CmpOp::Ge | CmpOp::Lt | CmpOp::Le => {
            // a > b  ⇔  a.hi > b.hi ∨ (a.hi = b.hi ∧ a.lo > b.lo); LT and LE
            // are the negations of GE and GT.
            let (op, t, f) = match c.op {
                CmpOp::Gt => (BPF_JGT, t, f),
                CmpOp::Ge => (BPF_JGE, t, f),
                CmpOp::Lt => (BPF_JGE, f, t),
                _ => (BPF_JGT, f, t),
            };
            let eq = asm.label();
            asm.jump(BPF_JGT, hi, t, eq);
            asm.bind(eq);
            asm.jump(BPF_JEQ, hi, next, f);
            asm.bind(next);
            asm.ld(arg_lo(c.arg));
            asm.jump(op, lo, t, f);
        }
        CmpOp::MaskedEq => {
            asm.and(mhi);
            asm.jump(BPF_JEQ, hi, next, f);
            asm.bind(next);
            asm.ld(arg_lo(c.arg));
            asm.and(mlo);
            asm.jump(BPF_JEQ, lo, t, f);
        }
    }
}
