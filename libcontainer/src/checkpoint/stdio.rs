//! The init's stdio that CRIU cannot dump by path: a fifo, a file or the
//! null device on a mount outside the container (containerd's shim hands
//! the container its fifos, `keel run -d >log` a host file). Each is
//! dumped as CRIU's external file `file[mnt_id:inode]` and recorded in
//! the image directory, so that a restore hands the restorer's own stdio
//! in its place (`inherit_fd`), as it does for pipes. runc refuses such a
//! container; pipes (runc's only case) stay as they were.

use crate::error::{Error, Result, SysContext};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// keel's file in the image directory: `[[fd, key], ...]`.
const FILE: &str = "keel-external-stdio.json";

/// The init's fds 0-2 that must be external, with their CRIU keys.
pub(super) fn external(pid: i32) -> Result<Vec<(i32, String)>> {
    let mountinfo = format!("/proc/{pid}/mountinfo");
    let mounts = std::fs::read_to_string(&mountinfo).ctx(|| format!("read {mountinfo}"))?;
    let visible: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut out = Vec::new();
    for fd in 0..3 {
        let link = format!("/proc/{pid}/fd/{fd}");
        let Ok(target) = std::fs::read_link(&link) else {
            continue;
        };
        // pipe:[N], socket:[N], anon_inode:...: CRIU knows those.
        if !target.starts_with("/") {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&link) else {
            continue;
        };
        let t = meta.file_type();
        let mem_device = t.is_char_device() && libc::major(meta.rdev()) == 1;
        if !(t.is_file() || t.is_fifo() || mem_device) {
            continue;
        }
        let Some(mnt_id) = mnt_id(pid, fd) else {
            continue;
        };
        if !visible.contains(&mnt_id.to_string().as_str()) {
            out.push((fd, format!("file[{mnt_id:x}:{:x}]", meta.ino())));
        }
    }
    Ok(out)
}

/// `mnt_id` of the init's fd, from its fdinfo.
fn mnt_id(pid: i32, fd: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
}

pub(super) fn save(images: &Path, external: &[(i32, String)]) -> Result<()> {
    let path = images.join(FILE);
    let json = serde_json::to_vec(external).map_err(|e| Error::CriuProtocol(e.to_string()))?;
    std::fs::write(&path, json).ctx(|| format!("write {}", path.display()))
}

/// What `save` recorded; nothing for images of runc's or without any.
pub(super) fn load(images: &Path) -> Result<Vec<(i32, String)>> {
    let path = images.join(FILE);
    match std::fs::read(&path) {
        Ok(data) => serde_json::from_slice(&data).map_err(|e| Error::State {
            path: path.clone(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_absent_file() {
        let dir = std::env::temp_dir().join(format!("keel-ext-stdio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        assert!(load(&dir).expect("load").is_empty());
        let v = vec![(1, "file[2a:1f]".to_string())];
        save(&dir, &v).expect("save");
        assert_eq!(load(&dir).expect("load"), v);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
