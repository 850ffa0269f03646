//! cgroupfs file access shared by every part of `cgroups`: reading and
//! writing control files (errors name the config field, the value and the
//! file), and walking, creating and removing cgroup directory trees.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `value` to `dir/file` (no O_CREAT / O_TRUNC: cgroupfs files).
pub(crate) fn try_write(dir: &Path, file: &str, value: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join(file))
        .and_then(|mut f| f.write_all(value.as_bytes()))
}

/// The error for a failed cgroup write, naming the config field, the value
/// and the file: `linux.resources.memory.limit: write 1048576 to
/// /sys/fs/cgroup/memory/x/memory.limit_in_bytes: Device or resource busy`.
pub(crate) fn write_error(field: &str, path: &Path, value: &str, e: &std::io::Error) -> Error {
    let why = match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    };
    Error::invalid(
        field,
        format!("write {} to {}: {why}", value.trim_end(), path.display()),
    )
}

/// [`try_write`] with the error naming the config field.
pub(crate) fn write_file(field: &str, dir: &Path, file: &str, value: &str) -> Result<()> {
    try_write(dir, file, value).map_err(|e| write_error(field, &dir.join(file), value, &e))
}

/// Reads a cgroup file, trimmed; None if it cannot be read.
pub(crate) fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Reads a single-number cgroup file; "max" reads as u64::MAX.
pub(crate) fn read_u64(dir: &Path, file: &str) -> Option<u64> {
    let s = read(dir, file)?;
    if s == "max" {
        return Some(u64::MAX);
    }
    s.parse().ok()
}

/// Creates `dir` and its missing parents, recording each one made. The
/// common case, a new cgroup under an existing parent, is one mkdir; the
/// parents are looked at only when it fails for want of one.
pub(crate) fn mkdir_all(dir: &Path, made: &mut Vec<PathBuf>) -> Result<()> {
    let mut made_parents = false;
    loop {
        match std::fs::create_dir(dir) {
            Ok(()) => {
                made.push(dir.to_path_buf());
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !made_parents => {
                if let Some(parent) = dir.parent() {
                    mkdir_all(parent, made)?;
                }
                made_parents = true;
            }
            Err(e) => return Err(Error::io(format!("create cgroup {}", dir.display()), e)),
        }
    }
}

/// Appends the pids of `dir` and every cgroup below it.
pub(crate) fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    match std::fs::read_to_string(&procs) {
        Ok(text) => out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
        // ENODEV: the cgroup went between open and read (systemd removing an
        // emptied scope): as empty as one that is not there.
        Err(e) if gone(&e) => return Ok(()),
        Err(e) => return Err(Error::io(format!("read {}", procs.display()), e)),
    }
    // (systemd removes a scope's directory as soon as it is empty.)
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if gone(&e) => return Ok(()),
        Err(e) => return Err(Error::io(format!("read {}", dir.display()), e)),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_pids(&entry.path(), out)?;
        }
    }
    Ok(())
}

fn gone(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV)
}

/// Removes `dir` with its sub-cgroups. Waits briefly for exiting tasks to
/// leave, as they do asynchronously after SIGKILL.
pub(crate) fn remove_tree(dir: &Path) -> Result<()> {
    // A cgroup without sub-cgroups or tasks goes with one rmdir (runc's
    // RemovePath tries that first too); the walk is for the rest.
    match std::fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if gone(&e) => return Ok(()),
        Err(_) => {}
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(()); // already gone
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    let mut delay = std::time::Duration::from_millis(1);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if gone(&e) => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && delay < std::time::Duration::from_secs(1) =>
            {
                std::thread::sleep(delay);
                delay *= 2;
            }
            Err(e) => return Err(Error::io(format!("remove cgroup {}", dir.display()), e)),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! A fake cgroup tree: plain files in a temp dir standing for control
    //! files (a plain file is not truncated by a write as a cgroup file
    //! is: tests that write twice empty the file between).

    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A temp directory removed on drop.
    pub(crate) struct FakeCgroup(pub PathBuf);

    impl FakeCgroup {
        /// `files` with their initial content, under a fresh directory.
        pub(crate) fn new(name: &str, files: &[(&str, &str)]) -> FakeCgroup {
            // Tests run in parallel threads of one process: a counter
            // keeps their trees apart.
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "keel-cgroup-test-{}-{}-{name}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create fake cgroup");
            let fake = FakeCgroup(dir);
            for (f, v) in files {
                fake.put(f, v);
            }
            fake
        }

        pub(crate) fn put(&self, file: &str, value: &str) {
            let p = self.0.join(file);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).expect("create fake sub-cgroup");
            }
            std::fs::write(p, value).expect("write fake cgroup file");
        }

        pub(crate) fn get(&self, file: &str) -> String {
            std::fs::read_to_string(self.0.join(file))
                .unwrap_or_else(|e| panic!("{file}: {e}"))
                .trim()
                .to_string()
        }

        pub(crate) fn dir(&self) -> &Path {
            &self.0
        }
    }

    /// A config fragment from its JSON.
    pub(crate) fn parse<T: serde::de::DeserializeOwned>(json: &str) -> T {
        serde_json::from_str(json).expect("test JSON")
    }

    impl Drop for FakeCgroup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn pids_are_collected_from_sub_cgroups() {
        let cg = FakeCgroup::new(
            "pids",
            &[("cgroup.procs", "1\n2\n"), ("sub/cgroup.procs", "3\n")],
        );
        let mut pids = Vec::new();
        super::collect_pids(cg.dir(), &mut pids).unwrap();
        pids.sort_unstable();
        assert_eq!(pids, [1, 2, 3]);
        let mut none = Vec::new();
        super::collect_pids(&cg.dir().join("gone"), &mut none).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn write_errors_name_field_value_and_file() {
        let cg = FakeCgroup::new("werr", &[]);
        let e = super::write_file("linux.resources.pids.limit", cg.dir(), "pids.max", "10\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.pids.limit: write 10 to "),
            "{e}"
        );
        assert!(e.ends_with("pids.max: No such file or directory"), "{e}");
    }
}
