//! The state directory `<root>/<id>`: state.json (written atomically by the
//! parent only), exec.fifo (the create/start gate) and an flock on the
//! directory itself that serialises commands on one container.

use crate::cgroups::Manager;
use crate::error::{Error, Result, SysContext};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// A container's status as the runtime-spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created; the init has not reached the exec.fifo yet.
    Creating,
    /// The init waits on exec.fifo for `start`.
    Created,
    /// The user program runs.
    Running,
    /// Frozen by the cgroup freezer.
    Paused,
    /// The init has exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What keel records about a container in state.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// The `ociVersion` of the container's config.
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Host pid of the container's init.
    pub pid: i32,
    /// Start time of the init (clock ticks since boot): with the pid, it tells
    /// a live init from a recycled pid.
    pub pid_start: u64,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339 with nanoseconds in UTC.
    pub created: String,
    /// Owner of the container (empty for root, as runc prints it).
    pub owner: String,
    /// The config's annotations.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// The container's cgroup directories.
    pub cgroup: Manager,
    /// The config's process: the base that `exec` starts from, as runc's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<oci_spec::runtime::Process>,
    /// The config's `linux.seccomp`: `exec`'d processes run under it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    /// The config's `linux.personality`: `exec`'d processes get it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personality: Option<oci_spec::runtime::LinuxPersonality>,
    /// The config's `linux.memoryPolicy`: `exec`'d processes get it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_policy: Option<oci_spec::runtime::LinuxMemoryPolicy>,
    /// The resctrl groups of `linux.intelRdt`, for `delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intel_rdt: Option<crate::intelrdt::Groups>,
    /// The config's hooks: poststart and poststop run long after create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// What a checkpoint tells CRIU about the container, as it was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criu: Option<crate::checkpoint::Described>,
}

pub(crate) const STATE_FILE: &str = "state.json";
pub(crate) const EXEC_FIFO: &str = "exec.fifo";
/// Written first by `create` (see [`StateDir::save_creating`]).
const CREATING_FILE: &str = "creating.json";

/// Who is creating a container, and the cgroups it is about to make: what
/// `delete --force` needs to clean up after a create killed midway.
#[derive(Debug, Serialize, Deserialize)]
struct Creating {
    pid: i32,
    pid_start: u64,
    cgroup: Manager,
}

/// Container ids are directory names: runc allows `[A-Za-z0-9_+\-.]+`.
pub fn validate_id(id: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidId {
            id: id.to_string(),
            reason,
        })
    };
    if id.is_empty() {
        return bad("empty");
    }
    if id == "." || id == ".." {
        return bad("not a valid name");
    }
    if id.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b))
    {
        return bad("only letters, digits and _ + - . are allowed");
    }
    Ok(())
}

/// A locked state directory.
pub(crate) struct StateDir {
    pub path: PathBuf,
    // Held for the life of the value; released by close.
    _lock: Flock<File>,
}

impl StateDir {
    /// Makes `<root>/<id>`; an existing one means the id is taken. mkdir is
    /// atomic, so of two concurrent creates exactly one gets here.
    pub fn create(root: &Path, id: &str) -> Result<StateDir> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(root)
            .ctx(|| format!("create state root {}", root.display()))?;
        let path = root.join(id);
        match std::fs::DirBuilder::new().mode(0o711).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(id.to_string()))
            }
            Err(e) => {
                return Err(Error::io(
                    format!("create state directory {}", path.display()),
                    e,
                ))
            }
        }
        Self::lock(path)
    }

    /// Opens and locks the state directory of an existing container.
    pub fn open(root: &Path, id: &str) -> Result<StateDir> {
        validate_id(id)?;
        let path = root.join(id);
        if !path.is_dir() {
            return Err(Error::NotFound(id.to_string()));
        }
        Self::lock(path)
    }

    /// Opens and locks the state directory of the container `state` was
    /// loaded from. The state was read before the lock: by the time it is
    /// held, that container may have been deleted and another created under
    /// the same id, which must not be touched: then `NotFound`. Returns the
    /// state as read under the lock.
    pub fn open_loaded(root: &Path, state: &State) -> Result<(StateDir, State)> {
        use std::os::unix::fs::MetadataExt;
        let dir = Self::open(root, &state.id)?;
        let gone = || Error::NotFound(state.id.clone());
        let locked = dir._lock.metadata().map_err(|_| gone())?;
        match std::fs::metadata(&dir.path) {
            Ok(m) if (m.dev(), m.ino()) == (locked.dev(), locked.ino()) => {}
            _ => return Err(gone()),
        }
        match load(&dir.path) {
            Ok(now) if now.pid_start == state.pid_start && now.created == state.created => {
                Ok((dir, now))
            }
            _ => Err(gone()),
        }
    }

    fn lock(path: PathBuf) -> Result<StateDir> {
        let dir = File::open(&path).ctx(|| format!("open {}", path.display()))?;
        crate::failpoint::failpoint("lock")?;
        let lock = Flock::lock(dir, FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::sys(format!("flock {}", path.display()), e))?;
        Ok(StateDir { path, _lock: lock })
    }

    /// Records the creator and the container's cgroups before they are
    /// made: a create killed midway leaves this instead of a state.json.
    pub fn save_creating(&self, cgroup: &Manager) -> Result<()> {
        let pid = std::process::id() as i32;
        let creating = Creating {
            pid,
            pid_start: crate::sys::process_start_time(pid).map_or(0, |(s, _)| s),
            cgroup: cgroup.clone(),
        };
        let path = self.path.join(CREATING_FILE);
        let data = serde_json::to_vec(&creating).map_err(|e| Error::State {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&path, data).ctx(|| format!("write {}", path.display()))
    }

    pub fn fifo(&self) -> PathBuf {
        self.path.join(EXEC_FIFO)
    }

    /// Writes state.json through a temporary file and rename, so a reader
    /// sees the old or the new state, never half of one.
    pub fn save(&self, state: &State) -> Result<()> {
        let tmp = self.path.join(".state.json.tmp");
        let data = serde_json::to_vec(state).map_err(|e| Error::State {
            path: tmp.clone(),
            reason: e.to_string(),
        })?;
        let mut f = File::create(&tmp).ctx(|| format!("create {}", tmp.display()))?;
        f.write_all(&data)
            .ctx(|| format!("write {}", tmp.display()))?;
        crate::failpoint::failpoint("state-write")?;
        std::fs::rename(&tmp, self.path.join(STATE_FILE))
            .ctx(|| format!("rename {}", tmp.display()))?;
        Ok(())
    }

    pub fn remove(self) -> Result<()> {
        // A restore killed midway leaves the rootfs bound in here
        // (RESTORE_ROOT): removing through that mount would empty the
        // rootfs. It is the only mount keel makes here: one stat otherwise.
        let restore_root = self.path.join(RESTORE_ROOT);
        if restore_root.exists() {
            match nix::mount::umount2(&restore_root, nix::mount::MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
                Err(e) => {
                    return Err(e).ctx(|| format!("unmount {}", restore_root.display()));
                }
            }
        }
        std::fs::remove_dir_all(&self.path).ctx(|| format!("remove {}", self.path.display()))
    }
}

/// Where a restore binds the rootfs for CRIU, in the state directory.
pub(crate) const RESTORE_ROOT: &str = "criu-root";

/// Removes what a create killed midway left (a state directory without
/// state.json): the processes in its cgroups, the cgroups, the directory.
/// `Ok(false)` when `id` is no such leftover (a create still running is
/// waited for: it ends with a state.json or removes everything itself).
pub fn remove_aborted(root: &Path, id: &str) -> Result<bool> {
    validate_id(id)?;
    let path = root.join(id);
    let creating: Option<Creating> = std::fs::read(path.join(CREATING_FILE))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok());
    if let Some(c) = &creating {
        // The init holds a copy of the creator's locked fd (fork copies it)
        // until its last setup steps, so the lock can outlive a killed
        // creator until its processes are gone.
        let alive = crate::sys::process_start_time(c.pid)
            .is_some_and(|(start, zombie)| start == c.pid_start && !zombie);
        if !alive {
            let _ = c.cgroup.paths.kill_all();
        }
    }
    let dir = match StateDir::open(root, id) {
        Err(Error::NotFound(_)) => return Ok(false),
        r => r?,
    };
    // Gone: a create that failed removed it while we waited for the lock.
    if dir.path.join(STATE_FILE).exists() || !dir.path.is_dir() {
        return Ok(false);
    }
    if let Some(c) = &creating {
        let _ = c.cgroup.paths.kill_all();
        c.cgroup.remove()?;
    }
    dir.remove()?;
    Ok(true)
}

/// Reads `<dir>/state.json`.
pub(crate) fn load(dir: &Path) -> Result<State> {
    let path = dir.join(STATE_FILE);
    let data = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound(
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
        _ => Error::io(format!("read {}", path.display()), e),
    })?;
    parse(&data, &path)
}

/// A state.json's content (read from `path`, for errors). Any bytes: the
/// file may have been damaged (a full disk, a human).
pub fn parse(data: &[u8], path: &Path) -> Result<State> {
    serde_json::from_slice(data).map_err(|e| Error::State {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// `t` as RFC 3339 in UTC; with `nanos`, in Go's RFC3339Nano form (the
/// fraction without trailing zeros), which is what runc prints.
pub fn rfc3339_utc(t: std::time::SystemTime, nanos: bool) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    rfc3339(d.as_secs() as i64, if nanos { d.subsec_nanos() } else { 0 })
}

fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let frac = if nanos == 0 {
        String::new()
    } else {
        format!(".{nanos:09}").trim_end_matches('0').to_string()
    };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{frac}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(
            rfc3339(1_795_305_600 + 3661, 120_000_000),
            "2026-11-22T01:01:01.12Z"
        );
    }

    #[test]
    fn ids() {
        assert!(validate_id("abc-1_2.3+x").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "../x"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }
}
