//! `linux.memoryPolicy` (runtime-spec 1.3): the NUMA policy every process
//! of the container starts with, set with set_mempolicy(2) by the process
//! itself (the init and each `exec`'d one; children inherit it), as runc
//! 1.4 does (`libcontainer/configs/memorypolicy.go`, its specconv and
//! validator). Checked in the parent with runc's words.

use crate::error::{Error, Result};
use nix::errno::Errno;
use oci_spec::runtime::{LinuxMemoryPolicy, MemoryPolicyFlagType, MemoryPolicyModeType};
use serde_json::Value;

/// Nodes a policy can name: runc's node set is a 1024-bit CPUSet, the
/// kernel's MAX_NUMNODES on distribution kernels.
const MAX_NODES: usize = 1024;
const WORDS: usize = MAX_NODES / 64;

/// The modes: their spec name and their value in <linux/mempolicy.h>.
const MODES: &[(MemoryPolicyModeType, &str, i32)] = &[
    (MemoryPolicyModeType::MpolDefault, "MPOL_DEFAULT", 0),
    (MemoryPolicyModeType::MpolPreferred, "MPOL_PREFERRED", 1),
    (MemoryPolicyModeType::MpolBind, "MPOL_BIND", 2),
    (MemoryPolicyModeType::MpolInterleave, "MPOL_INTERLEAVE", 3),
    (MemoryPolicyModeType::MpolLocal, "MPOL_LOCAL", 4),
    (
        MemoryPolicyModeType::MpolPreferredMany,
        "MPOL_PREFERRED_MANY",
        5,
    ),
    (
        MemoryPolicyModeType::MpolWeightedInterleave,
        "MPOL_WEIGHTED_INTERLEAVE",
        6,
    ),
];

const FLAGS: &[(MemoryPolicyFlagType, &str, i32)] = &[
    (
        MemoryPolicyFlagType::MpolFNumaBalancing,
        "MPOL_F_NUMA_BALANCING",
        1 << 13,
    ),
    (
        MemoryPolicyFlagType::MpolFRelativeNodes,
        "MPOL_F_RELATIVE_NODES",
        1 << 14,
    ),
    (
        MemoryPolicyFlagType::MpolFStaticNodes,
        "MPOL_F_STATIC_NODES",
        1 << 15,
    ),
];

/// The mode names, sorted, for `keel features`.
pub fn known_modes() -> Vec<&'static str> {
    let mut v: Vec<_> = MODES.iter().map(|m| m.1).collect();
    v.sort_unstable();
    v
}

/// The flag names, sorted, for `keel features`.
pub fn known_flags() -> Vec<&'static str> {
    FLAGS.iter().map(|f| f.1).collect()
}

/// runc's verdict on names it does not know, given before the typed parse
/// (which would only say "unknown variant"): `invalid memory policy mode
/// "X"` (a missing mode reads as ""), `invalid memory policy flag "X"`.
pub fn check_names(config: &Value) -> std::result::Result<(), String> {
    let Some(mp) = config.pointer("/linux/memoryPolicy") else {
        return Ok(());
    };
    if mp.is_null() {
        return Ok(());
    }
    let mode = mp.get("mode").and_then(Value::as_str).unwrap_or("");
    if !MODES.iter().any(|m| m.1 == mode) {
        return Err(format!(
            "linux.memoryPolicy.mode: invalid memory policy mode {mode:?}"
        ));
    }
    for flag in mp
        .get("flags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = flag.as_str().unwrap_or("");
        if !FLAGS.iter().any(|f| f.1 == name) {
            return Err(format!(
                "linux.memoryPolicy.flags: invalid memory policy flag {name:?}"
            ));
        }
    }
    Ok(())
}

/// The arguments of set_mempolicy(2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The mode with its flags or'ed in.
    mode: i32,
    /// None: no node mask (a NULL pointer).
    nodes: Option<[u64; WORDS]>,
}

/// Checks a policy as runc's specconv and validator do and encodes it.
pub fn from_spec(p: &LinuxMemoryPolicy) -> Result<Policy> {
    let (_, mode_name, mode) = MODES
        .iter()
        .find(|m| m.0 == p.mode())
        .copied()
        .unwrap_or(MODES[0]);
    let flags = FLAGS
        .iter()
        .filter(|f| p.flags().iter().flatten().any(|g| *g == f.0))
        .fold(0, |a, f| a | f.2);
    let list = p.nodes().as_deref().unwrap_or("");
    let ids = super::tuning::id_list(list, "node", MAX_NODES).map_err(|why| {
        Error::invalid(
            "linux.memoryPolicy.nodes",
            format!("invalid memory policy nodes {list:?}: {why}"),
        )
    })?;
    let mut mask = [0u64; WORDS];
    for id in &ids {
        mask[id / 64] |= 1 << (id % 64);
    }
    let count: u32 = mask.iter().map(|w| w.count_ones()).sum();
    // The kernel's rules per mode, checked before the container is made.
    let wanted = match p.mode() {
        MemoryPolicyModeType::MpolDefault | MemoryPolicyModeType::MpolLocal => {
            (count != 0).then_some("0 nodes")
        }
        MemoryPolicyModeType::MpolPreferred => None,
        _ => (count == 0).then_some("at least 1 node"),
    };
    if let Some(wanted) = wanted {
        return Err(Error::invalid(
            "linux.memoryPolicy",
            format!("{mode_name} mode requires {wanted} but got {count}"),
        ));
    }
    Ok(Policy {
        mode: mode | flags,
        nodes: (count != 0).then_some(mask),
    })
}

/// Sets the calling thread's policy; its children and the program inherit it.
pub fn apply(p: &Policy) -> Result<()> {
    let (ptr, maxnode) = match &p.nodes {
        Some(mask) => (mask.as_ptr(), MAX_NODES + 1),
        None => (std::ptr::null(), 0),
    };
    // SAFETY: ptr is null or points at WORDS words, and maxnode - 1 bits
    // is what the kernel reads of it.
    let r = unsafe { libc::syscall(libc::SYS_set_mempolicy, p.mode, ptr, maxnode) };
    Errno::result(r)
        .map(drop)
        .map_err(|e| Error::sys("linux.memoryPolicy: set_mempolicy", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(v: Value) -> Result<Policy> {
        from_spec(&serde_json::from_value(v).expect("typed policy"))
    }

    #[test]
    fn names_use_runcs_words() {
        let c = |mp: Value| check_names(&json!({"linux": {"memoryPolicy": mp}}));
        assert!(
            c(json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]})).is_ok()
        );
        assert!(c(json!({}))
            .unwrap_err()
            .ends_with(r#"invalid memory policy mode """#));
        assert!(c(json!({"mode": "INTERLEAVE"}))
            .unwrap_err()
            .ends_with(r#"invalid memory policy mode "INTERLEAVE""#));
        assert!(
            c(json!({"mode": "MPOL_BIND", "flags": ["MPOL_F_RELATIVE_NODES", "badflag"]}))
                .unwrap_err()
                .ends_with(r#"invalid memory policy flag "badflag""#)
        );
        assert!(check_names(&json!({"linux": {}})).is_ok());
    }

    #[test]
    fn encodes_mode_flags_and_mask() {
        let p = policy(
            json!({"mode": "MPOL_BIND", "nodes": "0,2-3,64", "flags": ["MPOL_F_STATIC_NODES"]}),
        )
        .expect("valid");
        assert_eq!(p.mode, 2 | 1 << 15);
        let mask = p.nodes.expect("a mask");
        assert_eq!((mask[0], mask[1]), (0b1101, 1));
        let p = policy(json!({"mode": "MPOL_DEFAULT"})).expect("valid");
        assert_eq!((p.mode, p.nodes), (0, None));
        // An empty list where the mode allows it: local allocation.
        let p = policy(json!({"mode": "MPOL_PREFERRED", "nodes": ""})).expect("valid");
        assert_eq!((p.mode, p.nodes), (1, None));
    }

    #[test]
    fn node_counts_per_mode() {
        let err = |v| policy(v).unwrap_err().to_string();
        assert!(err(json!({"mode": "MPOL_DEFAULT", "nodes": "0-7"}))
            .contains("mode requires 0 nodes but got 8"));
        assert!(err(json!({"mode": "MPOL_LOCAL", "nodes": "1"})).contains("requires 0 nodes"));
        assert!(err(json!({"mode": "MPOL_BIND"})).contains("requires at least 1 node"));
        assert!(err(json!({"mode": "MPOL_INTERLEAVE", "nodes": ","}))
            .contains("requires at least 1 node"));
        assert!(err(json!({"mode": "MPOL_BIND", "nodes": "0-9876543210"}))
            .contains("invalid memory policy nodes"));
        assert!(err(json!({"mode": "MPOL_BIND", "nodes": "3-1"})).contains("reversed"));
    }
}
