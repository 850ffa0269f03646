//! The process dance: the parent forks the init with clone3 (into its cgroup,
//! with its namespaces), writes id maps, and drives it over one typed sync
//! channel until the init waits on exec.fifo.

pub(crate) mod driver;
pub(crate) mod exec;
pub(crate) mod init;
pub(crate) mod mempolicy;
pub(crate) mod plan;
pub(crate) mod program;
pub(crate) mod reap;
pub(crate) mod spawn;
pub(crate) mod sync;
pub(crate) mod tuning;
