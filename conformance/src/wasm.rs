//! WebAssembly containers: keel's executor (`keel-wasm`) and the test
//! modules, kept as WebAssembly text in `conformance/wasm/` and turned into
//! binaries with the `wat2wasm` built beside the executor.

use crate::Bundle;
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The executor to give keel (`KEEL_WASM_EXECUTOR`): `$KEEL_WASM_EXECUTOR`
/// (scripts/test.sh sets it from scripts/wasm.sh), else what
/// scripts/wasm.sh prints (it builds one if it must). None after printing
/// why a test skips.
pub fn executor() -> Option<PathBuf> {
    static EXECUTOR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = EXECUTOR.get_or_init(|| crate::cached_tool("KEEL_WASM_EXECUTOR", "wasm.sh"));
    match found {
        Ok(p) => Some(p.clone()),
        Err(why) => {
            eprintln!("SKIPPED: no WebAssembly executor: {why}");
            None
        }
    }
}

/// The text of test module `name` (`conformance/wasm/<name>.wat`).
pub fn module_text(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("wasm")
        .join(format!("{name}.wat"))
}

/// Puts test module `name` at `dest` (a path inside the rootfs): as text
/// when `dest` ends in `.wat`, else as a binary made by the `wat2wasm`
/// beside `executor`.
pub fn install(b: &Bundle, executor: &Path, name: &str, dest: &str) -> Result<()> {
    let target = b.rootfs().join(dest.trim_start_matches('/'));
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    }
    let text = module_text(name);
    if dest.ends_with(".wat") {
        std::fs::copy(&text, &target)
            .with_context(|| format!("copy {} to {}", text.display(), target.display()))?;
        return Ok(());
    }
    let wat2wasm = executor.with_file_name("wat2wasm");
    let out = Command::new(&wat2wasm)
        .arg(&text)
        .arg(&target)
        .output()
        .with_context(|| format!("run {}", wat2wasm.display()))?;
    if !out.status.success() {
        bail!(
            "{} {}: {}",
            wat2wasm.display(),
            text.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A bundle whose program is test module `name` at `dest`, annotated for
/// the wasm handler (`run.oci.handler=wasm`).
pub fn bundle(b: &mut Bundle, executor: &Path, name: &str, dest: &str) {
    install(b, executor, name, dest).unwrap_or_else(|e| panic!("{e:#}"));
    b.set("/process/args", json!([dest]));
    b.set("/annotations", json!({"run.oci.handler": "wasm"}));
}

/// `bin` (keel or the shim) as installed with the executor: hard-linked
/// (or copied) into `dir`, so that its own path is there, `keel-wasm`
/// beside it.
/// Returns the link's path.
pub fn install_beside(bin: &Path, executor: &Path, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    let name = bin.file_name().context("a binary's file name")?;
    let linked = dir.join(name);
    // A copy where a link cannot be made (another filesystem).
    if std::fs::hard_link(bin, &linked).is_err() {
        std::fs::copy(bin, &linked)
            .with_context(|| format!("copy {} to {}", bin.display(), linked.display()))?;
    }
    let beside = dir.join("keel-wasm");
    if !beside.exists() {
        std::os::unix::fs::symlink(executor, &beside)
            .with_context(|| format!("symlink {}", beside.display()))?;
    }
    Ok(linked)
}
