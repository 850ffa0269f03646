//! One module per group of commands; each returns the process exit code.

pub mod cgroups;
pub mod exec;
pub mod info;
pub mod lifecycle;
pub mod spec;
