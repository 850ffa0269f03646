//! The five capability sets, applied around the uid switch as runc does:
//! bounding set first, then keep-caps across setuid, then the rest.

use crate::error::{Error, Result};
use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::{Capabilities as OciCaps, LinuxCapabilities};

/// The sets to apply.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub permitted: CapsHashSet,
    pub ambient: CapsHashSet,
}

fn convert(field: &str, set: &Option<OciCaps>) -> Result<CapsHashSet> {
    let mut out = CapsHashSet::new();
    for c in set.iter().flatten() {
        // Names went through spec's check, so both crates know them.
        let name = serde_json::to_value(c)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let cap = name.parse().map_err(|_| {
            Error::invalid(
                format!("process.capabilities.{field}"),
                format!("unknown capability {name}"),
            )
        })?;
        out.insert(cap);
    }
    Ok(out)
}

impl Capabilities {
    pub fn from_spec(c: &LinuxCapabilities) -> Result<Capabilities> {
        Ok(Capabilities {
            bounding: convert("bounding", c.bounding())?,
            effective: convert("effective", c.effective())?,
            inheritable: convert("inheritable", c.inheritable())?,
            permitted: convert("permitted", c.permitted())?,
            ambient: convert("ambient", c.ambient())?,
        })
    }

    /// runc's warnings (its `ApplyCaps`) for the ambient capabilities the
    /// kernel will refuse to raise: those not both permitted and
    /// inheritable. They are skipped, not fatal.
    pub fn ambient_warnings(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .ambient
            .iter()
            .filter(|c| !(self.permitted.contains(c) && self.inheritable.contains(c)))
            .map(|c| c.to_string())
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|n| format!("can't raise ambient capability {n}: operation not permitted"))
            .collect()
    }

    /// Drops from the bounding set what the config does not list. Needs
    /// CAP_SETPCAP, so it runs before the uid switch.
    pub fn apply_bounding(&self) -> Result<()> {
        for cap in caps::all() {
            if !self.bounding.contains(&cap) {
                match caps::drop(None, CapSet::Bounding, cap) {
                    Ok(()) => {}
                    // Newer than the running kernel: nothing to drop.
                    Err(_)
                        if !caps::runtime::procfs_all_supported(None)
                            .map(|s| s.contains(&cap))
                            .unwrap_or(true) => {}
                    Err(e) => {
                        return Err(Error::invalid(
                            "process.capabilities.bounding",
                            format!("drop {cap}: {e}"),
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    /// Sets permitted, inheritable, effective and ambient, after setuid.
    /// With `keep`, that capability stays permitted (and effective) on top
    /// of the config's, until a capset of [`Capabilities::sets`] drops it.
    pub fn apply_rest(&self, keep: Option<Capability>) -> Result<()> {
        let err = |set: &str, e: caps::errors::CapsError| {
            Error::invalid(format!("process.capabilities.{set}"), e.to_string())
        };
        let with_kept = |set: &CapsHashSet| {
            let mut set = set.clone();
            set.extend(keep);
            set
        };
        // Inheritable while CAP_SETPCAP is still effective; effective before
        // permitted, since effective must stay a subset of permitted.
        caps::set(None, CapSet::Inheritable, &self.inheritable)
            .map_err(|e| err("inheritable", e))?;
        caps::set(None, CapSet::Effective, &with_kept(&self.effective))
            .map_err(|e| err("effective", e))?;
        caps::set(None, CapSet::Permitted, &with_kept(&self.permitted))
            .map_err(|e| err("permitted", e))?;
        // Ambient needs each cap in permitted and inheritable; runc skips
        // the ones that are not (see `ambient_warnings`), and so do we.
        caps::clear(None, CapSet::Ambient).map_err(|e| err("ambient", e))?;
        for cap in &self.ambient {
            if self.permitted.contains(cap) && self.inheritable.contains(cap) {
                caps::raise(None, CapSet::Ambient, *cap).map_err(|e| err("ambient", e))?;
            }
        }
        Ok(())
    }
}

impl Capabilities {
    /// The config's effective, permitted and inheritable sets as masks,
    /// for the one capset that ends an `apply_rest` with a kept capability.
    pub fn sets(&self) -> crate::sys::CapSets {
        let mask = |set: &CapsHashSet| set.iter().fold(0u64, |m, c| m | 1 << c.index());
        crate::sys::CapSets {
            effective: mask(&self.effective),
            permitted: mask(&self.permitted),
            inheritable: mask(&self.inheritable),
        }
    }
}

/// Names of every capability keel knows (for `features`).
pub fn known_names() -> Vec<String> {
    caps::all().into_iter().map(|c| c.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use caps::Capability::*;

    #[test]
    fn ambient_outside_permitted_and_inheritable_is_warned_about() {
        let c = Capabilities {
            permitted: [CAP_KILL, CAP_NET_RAW, CAP_SYS_ADMIN].into(),
            inheritable: [CAP_KILL, CAP_SYS_ADMIN, CAP_CHOWN].into(),
            ambient: [CAP_KILL, CAP_NET_RAW, CAP_CHOWN].into(),
            ..Default::default()
        };
        assert_eq!(
            c.ambient_warnings(),
            [
                "can't raise ambient capability CAP_CHOWN: operation not permitted",
                "can't raise ambient capability CAP_NET_RAW: operation not permitted",
            ]
        );
    }
}
