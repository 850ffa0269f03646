//! Freezing and thawing: the v1 freezer controller when it is mounted (also
//! on hybrid hosts), else cgroup2's cgroup.freeze.

use super::fs::{read, try_write, write_error};
use super::path::CgroupPaths;
use crate::error::{Error, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a freeze or thaw may take before it is given up.
const TIMEOUT: Duration = Duration::from_secs(5);

impl CgroupPaths {
    fn freezer_v1(&self) -> Option<&Path> {
        self.v1_dir("freezer")
    }

    /// Whether the container is frozen (v1 freezer, or cgroup2 cgroup.freeze).
    pub fn is_frozen(&self) -> bool {
        let v1 = self
            .freezer_v1()
            .and_then(v1_stable_state)
            .is_some_and(|s| s == "FROZEN" || s == "FREEZING");
        let v2 = self
            .unified
            .as_deref()
            .and_then(|d| read(d, "cgroup.freeze"))
            .is_some_and(|s| s == "1");
        v1 || v2
    }

    /// Freezes every process of the container and waits until the kernel
    /// reports it frozen. On failure the container is thawed again.
    pub fn freeze(&self) -> Result<()> {
        let r = self.set_frozen(true);
        if r.is_err() {
            let _ = self.set_frozen(false);
        }
        r
    }

    /// Thaws a frozen container and waits until it runs again.
    pub fn thaw(&self) -> Result<()> {
        self.set_frozen(false)?;
        // A cgroup2 freeze left over (frozen by another tool) thaws too.
        if self.freezer_v1().is_some() {
            if let Some(d) = self.unified.as_deref() {
                if read(d, "cgroup.freeze").as_deref() == Some("1") {
                    v2_set(d, false)?;
                }
            }
        }
        Ok(())
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        if let Some(d) = self.freezer_v1() {
            return v1_set(d, frozen);
        }
        match self.unified.as_deref() {
            Some(d) => v2_set(d, frozen),
            None if self.v1.is_empty() => Err(Error::invalid(
                "freezer",
                "the container has no cgroup of its own (a rootless container without a \
                 delegated cgroup)",
            )),
            None => Err(Error::invalid(
                "freezer",
                "no freezer cgroup controller on this host",
            )),
        }
    }
}

fn backoff(delay: &mut Duration) {
    std::thread::sleep(*delay);
    *delay = (*delay * 2).min(Duration::from_millis(50));
}

/// v1: freezer.state once it is not FREEZING, as runc's GetState waits
/// for it. A task that joins a frozen cgroup (`exec --ignore-paused`)
/// turns it FREEZING until the kernel has frozen that task too, which
/// under load takes a while: read as "not frozen", a paused container
/// would look running then and `resume` refuse it. Still FREEZING after
/// [`TIMEOUT`] (a task the kernel cannot freeze, in uninterruptible
/// sleep), it is returned as is: a freeze was asked for, and counting
/// that as paused lets `resume` thaw it (runc would wait forever).
fn v1_stable_state(dir: &Path) -> Option<String> {
    let deadline = Instant::now() + TIMEOUT;
    let mut delay = Duration::from_micros(100);
    loop {
        let state = read(dir, "freezer.state")?;
        if state != "FREEZING" || Instant::now() > deadline {
            return Some(state);
        }
        backoff(&mut delay);
    }
}

/// v1: write FROZEN (again, while the state says FREEZING: a task that was
/// forking can make one attempt fail) until freezer.state says FROZEN.
fn v1_set(dir: &Path, frozen: bool) -> Result<()> {
    let want = if frozen { "FROZEN" } else { "THAWED" };
    let deadline = Instant::now() + TIMEOUT;
    let mut delay = Duration::from_micros(100);
    loop {
        try_write(dir, "freezer.state", want)
            .map_err(|e| write_error("freezer", &dir.join("freezer.state"), want, &e))?;
        let state = read(dir, "freezer.state").unwrap_or_default();
        if state == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::invalid(
                "freezer",
                format!(
                    "{}: still {state} after {TIMEOUT:?}, wanted {want}",
                    dir.join("freezer.state").display()
                ),
            ));
        }
        backoff(&mut delay);
    }
}

/// v2: write cgroup.freeze, then wait for cgroup.events to say `frozen 1`
/// (or 0).
fn v2_set(dir: &Path, frozen: bool) -> Result<()> {
    let v = if frozen { "1" } else { "0" };
    try_write(dir, "cgroup.freeze", v)
        .map_err(|e| write_error("freezer", &dir.join("cgroup.freeze"), v, &e))?;
    let want = format!("frozen {v}");
    let deadline = Instant::now() + TIMEOUT;
    let mut delay = Duration::from_micros(100);
    loop {
        let events = read(dir, "cgroup.events").unwrap_or_default();
        if events.lines().any(|l| l.trim() == want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::invalid(
                "freezer",
                format!(
                    "{}: no \"{want}\" after {TIMEOUT:?}",
                    dir.join("cgroup.events").display()
                ),
            ));
        }
        backoff(&mut delay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::fs::tests::FakeCgroup;

    #[test]
    fn frozen_by_the_v1_freezer_or_cgroup2() {
        let cg = FakeCgroup::new(
            "frozen",
            &[
                ("freezer/freezer.state", "THAWED\n"),
                ("u/cgroup.freeze", "0\n"),
            ],
        );
        let mut paths = CgroupPaths {
            unified: Some(cg.dir().join("u")),
            ..Default::default()
        };
        paths.v1.insert("freezer".into(), cg.dir().join("freezer"));
        assert!(!paths.is_frozen());
        cg.put("u/cgroup.freeze", "1\n");
        assert!(paths.is_frozen());
        cg.put("u/cgroup.freeze", "0\n");
        cg.put("freezer/freezer.state", "FROZEN\n");
        assert!(paths.is_frozen());
        // No cgroup of its own: nothing to freeze, said plainly.
        let e = CgroupPaths::default().freeze().unwrap_err().to_string();
        assert!(e.contains("no cgroup of its own"), "{e}");
    }

    /// A task that joined the frozen cgroup (exec --ignore-paused) makes
    /// it FREEZING until the kernel froze that task: still paused, once
    /// the state settles (runc's GetState waits too), not running.
    #[test]
    fn freezing_is_waited_out() {
        let cg = FakeCgroup::new("freezing", &[("freezer/freezer.state", "FREEZING\n")]);
        let mut paths = CgroupPaths::default();
        paths.v1.insert("freezer".into(), cg.dir().join("freezer"));
        let file = cg.dir().join("freezer/freezer.state");
        let settle = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            std::fs::write(file, "FROZEN\n").unwrap();
        });
        let t = Instant::now();
        assert!(paths.is_frozen());
        assert!(
            t.elapsed() >= Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
        settle.join().unwrap();
        cg.put("freezer/freezer.state", "THAWED\n");
        assert!(!paths.is_frozen());
    }
}
