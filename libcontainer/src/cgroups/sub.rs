//! `exec --cgroup`: a process placed in an existing sub-cgroup of its
//! container's cgroup rather than in the cgroup itself, with runc's syntax
//! (`[controller[,controller…]:]path`).

use super::path::CgroupPaths;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Parsed `--cgroup` arguments.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubCgroups {
    /// A path for every hierarchy (the argument had no controller prefix).
    all: Option<PathBuf>,
    /// Paths per v1 controller.
    by_controller: BTreeMap<String, PathBuf>,
}

impl SubCgroups {
    /// Parses runc's `--cgroup` arguments: one `path` alone, or any number
    /// of `controllers:path`.
    ///
    /// ```
    /// use libkeel::cgroups::SubCgroups;
    /// // A path cannot leave the container's cgroup: "../x" is "x".
    /// assert!(SubCgroups::parse(&["cpu,memory:../worker".into()]).is_ok());
    /// let e = SubCgroups::parse(&["a".into(), "b".into()]).unwrap_err();
    /// assert!(e.to_string().starts_with("--cgroup: "), "{e}");
    /// ```
    pub fn parse(args: &[String]) -> Result<SubCgroups> {
        let bad = |arg: &str, why: &str| Error::invalid("--cgroup", format!("{arg:?}: {why}"));
        let mut out = SubCgroups::default();
        for arg in args {
            match arg.split_once(':') {
                None if args.len() == 1 => out.all = Some(inside(arg)),
                None => return Err(bad(arg, "missing <controller>: prefix")),
                Some((_, path)) if path.contains(':') => return Err(bad(arg, "more than one ':'")),
                Some((ctrls, path)) => {
                    for c in ctrls.split(',') {
                        if c.is_empty() {
                            return Err(bad(arg, "empty controller name"));
                        }
                        out.by_controller.insert(c.to_string(), inside(path));
                    }
                }
            }
        }
        Ok(out)
    }
}

/// `sub` as a relative path that cannot leave the cgroup it is joined to
/// (runc cleans it against "/" the same way).
fn inside(sub: &str) -> PathBuf {
    crate::rootfs::path::clean(Path::new(sub))
}

impl CgroupPaths {
    /// The container's cgroups with the sub-cgroups of `sub` below them;
    /// each must exist, as runc requires.
    pub(crate) fn descend(&self, sub: &SubCgroups) -> Result<CgroupPaths> {
        if self.is_pure_v2() && !sub.by_controller.is_empty() {
            return Err(Error::invalid(
                "--cgroup",
                "a <controller>: prefix is not allowed on cgroup v2",
            ));
        }
        for c in sub.by_controller.keys() {
            if self.v1_dir(c).is_none() {
                return Err(Error::invalid(
                    "--cgroup",
                    format!("controller {c:?} has no cgroup v1 hierarchy here"),
                ));
            }
        }
        let below = |dir: &Path, rel: &Path| -> Result<PathBuf> {
            let d = dir.join(rel);
            if d.is_dir() {
                Ok(d)
            } else {
                Err(Error::invalid(
                    "--cgroup",
                    format!("sub-cgroup {} does not exist", d.display()),
                ))
            }
        };
        let mut out = self.clone();
        if let (Some(dir), Some(rel)) = (&self.unified, &sub.all) {
            out.unified = Some(below(dir, rel)?);
        }
        for (key, dir) in out.v1.iter_mut() {
            let rel = key
                .split(',')
                .find_map(|c| sub.by_controller.get(c))
                .or(sub.all.as_ref());
            if let Some(rel) = rel {
                *dir = below(dir, rel)?;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parse_runc_forms() {
        let s = SubCgroups::parse(&args(&["a/b"])).expect("one path");
        assert_eq!(s.all, Some(PathBuf::from("a/b")));
        let s = SubCgroups::parse(&args(&["cpu,cpuacct:x", "memory:y"])).expect("ctrls");
        assert_eq!(s.by_controller.get("cpuacct"), Some(&PathBuf::from("x")));
        assert_eq!(s.by_controller.get("memory"), Some(&PathBuf::from("y")));
        assert!(SubCgroups::parse(&args(&["a", "b"])).is_err());
        assert!(SubCgroups::parse(&args(&["a:b:c"])).is_err());
        assert!(SubCgroups::parse(&args(&[":b"])).is_err());
    }

    #[test]
    fn paths_stay_below_the_cgroup() {
        assert_eq!(inside("../../etc"), PathBuf::from("etc"));
        assert_eq!(inside("/a/./b/../c"), PathBuf::from("a/c"));
    }
}
