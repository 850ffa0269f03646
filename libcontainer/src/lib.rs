#![deny(missing_docs)]
//! # libkeel
//!
//! The library behind the `keel` OCI runtime: it turns an OCI bundle
//! (config.json + rootfs) into a running, isolated process, and finds,
//! signals and removes containers by id afterwards.
//!
//! ```no_run
//! use libkeel::{Container, ContainerBuilder, Runtime};
//! let runtime = Runtime::init()?;
//! let c = ContainerBuilder::new("web", "/srv/bundles/web").root("/run/keel").create(&runtime)?;
//! c.start()?;
//! println!("{:?}", Container::load("/run/keel", "web")?.state());
//! # Ok::<(), libkeel::Error>(())
//! ```
//!
//! The modules follow the steps of creating a container: [`spec`] reads and
//! validates the config, [`cgroups`] places the container, the process
//! module forks the init and drives it, whose steps live in `namespaces`,
//! [`rootfs`] and `security`; [`state`] keeps what outlives the command.
//!
//! The crate's README.md is the embedder's guide: the token, the life of a
//! container, errors, and the [`Executor`] hook.
//!
//! `create` and `exec` fork: they take the [`Runtime`] token, which proves
//! the process single-threaded and its binary out of the containers' reach
//! (CVE-2019-5736).

pub mod cgroups;
pub mod checkpoint;
pub mod console;
mod container;
pub mod error;
mod executor;
mod failpoint;
mod features;
pub(crate) mod hooks;
mod intelrdt;
mod mountinfo;
mod namespaces;
mod netdev;
pub mod notify;
pub mod pidfd;
mod process;
pub mod rootfs;
pub mod rootless;
mod runtime;
pub(crate) mod security;
pub mod spec;
pub mod state;
mod sys;
pub mod wasm;
/// pidfds, for embedders that track a container's processes (the shim):
/// a signal through one never hits a recycled pid.
pub use sys::{pidfd_open, pidfd_send_signal};

/// The embedder's guide (README.md): its examples compile as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct EmbeddersGuide;

/// The runtime-spec version keel implements, reported in `state` and as
/// `ociVersionMax` in `features`.
pub const SPEC_VERSION: &str = "1.3.0";

/// The sync channel's messages, for the fuzz target only.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use process::sync::Msg as SyncMsg;

pub use container::{
    Container, ContainerBuilder, ContainerState, ExecOptions, ExecProcess, DEFAULT_ROOT,
};
pub use error::{Error, Result};
pub use executor::{Executor, Invocation};
pub use features::features;
pub use nix::sys::signal::Signal;
pub use oci_spec;
pub use runtime::{Protection, Runtime};
pub use security::seccomp;
pub use state::Status;
