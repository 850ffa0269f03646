//! Placing the container in its cgroups and limiting it. One job a file:
//!
//! - `manager`: the cgroup through the container's life (create, place
//!   the init, set limits, remove), with a `Driver`: cgroupfs or systemd;
//! - `path`: where the cgroups are: the mounted hierarchies, runc's
//!   `cgroupsPath` semantics, which hierarchy a controller is written in;
//! - `procs`: processes in the cgroups (placing a new one, listing pids);
//! - `resources`: `linux.resources` field by field to its controller, with
//!   the writers in `v1`, `v2` and `common` (files named alike in both),
//!   and the value conversions in `convert`;
//! - `devices`: device rules (runc's defaults), on v1 as a transition or as
//!   the eBPF program of `devicefilter` on cgroup v2; `emulator` says what
//!   a list of rules means;
//! - `systemd`: the systemd driver (scope units over D-Bus);
//! - `freezer`, [`stats`], `oom`, `sub` (`exec --cgroup`): pause/resume,
//!   statistics, OOM events, sub-cgroups;
//! - `fs`: cgroupfs file access that all of the above share.
//!
//! On a hybrid host (v1 controllers plus a cgroup2 mount that offers a few
//! controllers), every resource goes to its v1 controller when that is
//! mounted, and to the unified hierarchy only when its cgroup.controllers
//! offers the controller and v1 does not have it.

mod common;
pub(crate) mod convert;
mod devicefilter;
mod devices;
mod emulator;
mod freezer;
mod fs;
pub(crate) mod manager;
mod oom;
mod path;
mod procs;
mod resources;
pub mod stats;
mod sub;
pub(crate) mod systemd;
mod v1;
mod v2;

pub(crate) use devices::DeviceRule;
pub(crate) use manager::Manager;
pub use oom::OomWatch;
pub use path::CgroupPaths;
pub(crate) use procs::V1Visit;
pub use stats::Stats;
pub use sub::SubCgroups;
/// systemd's D-Bus reply reader, for the fuzz target only.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use systemd::read_reply_for_fuzzing;
