//! The runc shim's options (`containerd.runc.v1.Options`, from the
//! runtime's `options` in containerd's config), as keel reads them.

use anyhow::{bail, Context as _, Result};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::oci::Options as RuncOptions;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// keel's state root under containerd, as `/run/containerd/runc` is runc's.
pub const DEFAULT_ROOT: &str = "/run/containerd/keel";

/// Saved in the bundle at create: the `delete` action (after a shim crash)
/// gets no options but must find the container.
const FILE: &str = "keel-options.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Options {
    /// State root; the namespace is appended, as the runc shim does.
    pub root: String,
    pub no_pivot_root: bool,
    pub no_new_keyring: bool,
    /// cgroupsPath is systemd's `slice:prefix:name` (libkeel's driver).
    pub systemd_cgroup: bool,
    /// The cgroup (from each hierarchy's root) the shim itself goes in.
    pub shim_cgroup: String,
    /// CRIU's work files at a restore (see `checkpoint`).
    pub criu_work_path: String,
}

impl Options {
    /// From the Any containerd sends with Create (and on `start`'s stdin).
    /// `BinaryName` is ignored (keel runs in-process), and so is the IO
    /// owner.
    pub fn from_any(any: Option<&Any>) -> Result<Options> {
        let Some(any) = any.filter(|a| !a.type_url.is_empty()) else {
            return Ok(Options::default());
        };
        if !any.type_url.ends_with("containerd.runc.v1.Options") {
            bail!("unsupported runtime options type {}", any.type_url);
        }
        let o = RuncOptions::parse_from_bytes(&any.value).context("decode runtime options")?;
        Ok(Options {
            root: o.root,
            no_pivot_root: o.no_pivot_root,
            no_new_keyring: o.no_new_keyring,
            systemd_cgroup: o.systemd_cgroup,
            shim_cgroup: o.shim_cgroup,
            criu_work_path: o.criu_work_path,
        })
    }

    /// What containerd writes on `start`'s stdin: the options as an Any
    /// (nothing when the runtime has none).
    pub fn from_stdin() -> Result<Options> {
        use std::io::Read;
        let mut data = Vec::new();
        std::io::stdin()
            .read_to_end(&mut data)
            .context("read the options on stdin")?;
        if data.is_empty() {
            return Ok(Options::default());
        }
        let any = Any::parse_from_bytes(&data).context("decode the options on stdin")?;
        Options::from_any(Some(&any))
    }

    pub fn root(&self, namespace: &str) -> PathBuf {
        let root = if self.root.is_empty() {
            DEFAULT_ROOT
        } else {
            &self.root
        };
        Path::new(root).join(namespace)
    }
}

pub fn save(bundle: impl AsRef<Path>, o: &Options) -> Result<()> {
    let path = bundle.as_ref().join(FILE);
    std::fs::write(&path, serde_json::to_vec(o)?)
        .with_context(|| format!("write {}", path.display()))
}

/// What `save` wrote, or the defaults.
pub fn load(bundle: impl AsRef<Path>) -> Options {
    std::fs::read(bundle.as_ref().join(FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(o: &RuncOptions) -> Any {
        Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: o.write_to_bytes().expect("encode"),
            ..Default::default()
        }
    }

    #[test]
    fn reads_runc_options() {
        let o = RuncOptions {
            root: "/run/x".into(),
            no_pivot_root: true,
            binary_name: "runc".into(),
            ..Default::default()
        };
        let got = Options::from_any(Some(&any(&o))).expect("options");
        assert!(got.no_pivot_root);
        assert!(got.shim_cgroup.is_empty());
        assert_eq!(got.root("k8s.io"), Path::new("/run/x/k8s.io"));
        assert_eq!(
            Options::default().root("default"),
            Path::new("/run/containerd/keel/default")
        );
    }

    #[test]
    fn refuses_other_option_types() {
        let a = Any {
            type_url: "io.containerd.other.v1.Options".into(),
            ..Default::default()
        };
        assert!(Options::from_any(Some(&a)).is_err());
        let o = RuncOptions {
            systemd_cgroup: true,
            ..Default::default()
        };
        assert!(
            Options::from_any(Some(&any(&o)))
                .expect("options")
                .systemd_cgroup
        );
    }
}
