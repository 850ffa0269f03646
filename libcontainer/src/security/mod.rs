//! What the container's process may do: capabilities and rlimits (the
//! security issue adds seccomp and LSM labels here).

pub mod capabilities;
pub mod rlimits;
pub mod seccomp;
