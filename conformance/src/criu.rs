//! The CRIU the checkpoint/restore tests use: `$KEEL_CRIU` (scripts/test.sh
//! sets it from scripts/criu.sh), else whatever scripts/criu.sh prints (it
//! builds one if it must).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The CRIU (>= 4.1) to use, or None after printing why a test skips.
pub fn criu() -> Option<PathBuf> {
    static CRIU: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = CRIU.get_or_init(|| crate::cached_tool("KEEL_CRIU", "criu.sh"));
    match found {
        Ok(p) => Some(p.clone()),
        Err(why) => {
            eprintln!("SKIPPED: no CRIU >= 4.1: {why}");
            None
        }
    }
}

/// A directory holding `criu` (this CRIU) for an engine's PATH: engines
/// and the runtimes they run look `criu` up there. `scratch` is where a
/// link is made when the binary has another name.
pub fn path_dir(criu: &Path, scratch: &Path) -> std::io::Result<PathBuf> {
    if criu.file_name().is_some_and(|n| n == "criu") {
        if let Some(dir) = criu.parent() {
            return Ok(dir.to_path_buf());
        }
    }
    let dir = scratch.join("criu-bin");
    std::fs::create_dir_all(&dir)?;
    let link = dir.join("criu");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(criu, &link)?;
    Ok(dir)
}
