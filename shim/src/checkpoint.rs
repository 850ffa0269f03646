//! The Task API's checkpoint and restore, as containerd's runc shim does
//! them (containerd 1.6, `pkg/process`), through libkeel's CRIU support.
//!
//! Checkpoint reads `containerd.runc.v1.CheckpointOptions`: `exit` stops
//! the container (CRIU kills it; its exit is then reaped and published as
//! any exit), the other flags are CRIU's. CRIU's work files go to the
//! options' `work_path`, else to `<bundle>/work/criu-work`, removed after
//! the dump; a failed dump leaves its log at `<bundle>/criu-dump.log`,
//! which the error names. `cgroups_mode` and `image_path` are not the
//! shim's business (the runc shim ignores them too: containerd itself
//! turns `image_path` into the request's path).
//!
//! A Create with a checkpoint restores nothing yet: the rootfs is mounted
//! and the stdio opened, and Start restores (CRIU's work files in the
//! runtime options' `criu_work_path`, else `<bundle>/work`), as the runc
//! shim's `runc restore --detach` at Start.

use anyhow::{bail, Context as _, Result};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::oci::CheckpointOptions as RuncCheckpointOptions;
use libkeel::checkpoint::{CheckpointOptions, CriuOptions, RestoreOptions};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// The log of a failed dump, kept in the bundle (the runc shim's name).
const DUMP_LOG: &str = "criu-dump.log";

/// `CheckpointOptions` of the request (defaults when there are none: the
/// container keeps running, as under the runc shim).
pub fn options(any: Option<&Any>, image: &Path, bundle: &Path) -> Result<Checkpoint> {
    let o = match any.filter(|a| !a.type_url.is_empty()) {
        None => RuncCheckpointOptions::default(),
        Some(a) if a.type_url.ends_with("containerd.runc.v1.CheckpointOptions") => {
            RuncCheckpointOptions::parse_from_bytes(&a.value)
                .context("decode checkpoint options")?
        }
        Some(a) => bail!("unsupported checkpoint options type {}", a.type_url),
    };
    // keel always leaves the network namespace to its owner (runc's
    // `--empty-ns network`, the only one runc maps).
    if let Some(ns) = o.empty_namespaces.iter().find(|n| *n != "network") {
        bail!("namespace {ns:?} is not supported");
    }
    let (work, temporary) = if o.work_path.is_empty() {
        (bundle.join("work/criu-work"), true)
    } else {
        (PathBuf::from(&o.work_path), false)
    };
    let mut common = CriuOptions::new(image);
    common.work_path = Some(work);
    common.tcp_established = o.open_tcp;
    common.ext_unix_sk = o.external_unix_sockets;
    common.shell_job = o.terminal;
    common.file_locks = o.file_locks;
    Ok(Checkpoint {
        opts: CheckpointOptions {
            common,
            leave_running: !o.exit,
            pre_dump: false,
            parent_path: None,
            page_server: None,
            status_fd: Default::default(),
        },
        temporary_work: temporary,
        bundle: bundle.to_path_buf(),
    })
}

/// A checkpoint to take.
pub struct Checkpoint {
    pub opts: CheckpointOptions,
    /// The work directory is the shim's own: removed afterwards.
    temporary_work: bool,
    bundle: PathBuf,
}

impl Checkpoint {
    /// Dumps container `id`; a failure keeps CRIU's log in the bundle and
    /// says where.
    pub fn run(&self, root: &Path, id: &str) -> Result<()> {
        let result = libkeel::Container::load(root, id).and_then(|c| c.checkpoint(&self.opts));
        let work = self
            .opts
            .common
            .work_path
            .as_deref()
            .unwrap_or(Path::new(""));
        let outcome = match result {
            Ok(()) => Ok(()),
            Err(e) => {
                let log = self.bundle.join(DUMP_LOG);
                let _ = std::fs::copy(work.join("dump.log"), &log);
                Err(anyhow::Error::new(e)
                    .context(format!("checkpoint {id}: path= {}", log.display())))
            }
        };
        if self.temporary_work {
            let _ = std::fs::remove_dir_all(work);
        }
        outcome
    }
}

/// A restore Create asked for, done at Start.
pub struct PendingRestore {
    pub image: PathBuf,
    pub work: PathBuf,
    pub systemd_cgroup: bool,
    pub stdio: Option<[OwnedFd; 3]>,
    /// The console socket's end for libkeel (CRIU's pty master goes
    /// through it); the shim reads the master from the other.
    pub console_socket: Option<(OwnedFd, OwnedFd)>,
}

impl PendingRestore {
    /// `criu_work_path` from the runtime options, else `<bundle>/work`.
    pub fn work_dir(criu_work_path: &str, bundle: &Path) -> PathBuf {
        if criu_work_path.is_empty() {
            bundle.join("work")
        } else {
            PathBuf::from(criu_work_path)
        }
    }

    /// Restores container `id` from the images (`theirs`: the console
    /// socket's end that libkeel sends the pty master on); returns its
    /// init's pid.
    pub fn run(
        self,
        id: &str,
        bundle: &Path,
        root: PathBuf,
        theirs: Option<OwnedFd>,
    ) -> Result<i32> {
        let mut common = CriuOptions::new(&self.image);
        common.work_path = Some(self.work);
        let mut b = libkeel::ContainerBuilder::new(id, bundle)
            .root(root)
            .systemd_cgroup(self.systemd_cgroup);
        if let Some([i, o, e]) = self.stdio {
            b = b.stdio(i, o, e);
        }
        if let Some(s) = theirs {
            b = b.console_socket(s);
        }
        let c = b
            .restore(&RestoreOptions {
                common,
                lsm_profile: None,
                lsm_mount_context: None,
            })
            .with_context(|| format!("restore {id} from {}", self.image.display()))?;
        for w in c.warnings() {
            log::warn!("{id}: {w}");
        }
        Ok(c.pid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(o: &RuncCheckpointOptions) -> Any {
        Any {
            type_url: "containerd.runc.v1.CheckpointOptions".into(),
            value: o.write_to_bytes().expect("encode"),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_leave_running_with_a_temporary_work_dir() {
        let c = options(None, Path::new("/img"), Path::new("/b")).expect("options");
        assert!(c.opts.leave_running);
        assert!(c.temporary_work);
        assert_eq!(c.opts.common.image_path, Path::new("/img"));
        assert_eq!(
            c.opts.common.work_path.as_deref(),
            Some(Path::new("/b/work/criu-work"))
        );
    }

    #[test]
    fn reads_runc_checkpoint_options() {
        let o = RuncCheckpointOptions {
            exit: true,
            open_tcp: true,
            external_unix_sockets: true,
            terminal: true,
            file_locks: true,
            empty_namespaces: vec!["network".into()],
            work_path: "/w".into(),
            ..Default::default()
        };
        let c = options(Some(&any(&o)), Path::new("/img"), Path::new("/b")).expect("options");
        assert!(!c.opts.leave_running);
        assert!(!c.temporary_work);
        let co = &c.opts.common;
        assert!(co.tcp_established && co.ext_unix_sk && co.shell_job && co.file_locks);
        assert_eq!(co.work_path.as_deref(), Some(Path::new("/w")));
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        let o = RuncCheckpointOptions {
            empty_namespaces: vec!["ipc".into()],
            ..Default::default()
        };
        assert!(options(Some(&any(&o)), Path::new("/i"), Path::new("/b")).is_err());
        let other = Any {
            type_url: "io.containerd.other.v1.Options".into(),
            ..Default::default()
        };
        assert!(options(Some(&other), Path::new("/i"), Path::new("/b")).is_err());
    }

    #[test]
    fn restore_work_dir() {
        assert_eq!(
            PendingRestore::work_dir("", Path::new("/b")),
            Path::new("/b/work")
        );
        assert_eq!(
            PendingRestore::work_dir("/w", Path::new("/b")),
            Path::new("/w")
        );
    }
}
