//! What the container's process may do (capabilities, rlimits, seccomp)
//! and what it must not reach (the runtime's binary).

pub mod capabilities;
pub(crate) mod exe;
pub mod lsm;
pub(crate) mod procfs;
pub mod rlimits;
pub mod seccomp;
