//! The text of `keel -v`, in runc's layout (`<name> version X`, the commit
//! it was built from, the runtime-spec version), written to
//! `$OUT_DIR/version.txt`. The commit is `$KEEL_COMMIT` when set (a build
//! from a tarball), else the checkout's HEAD; the line is left out when
//! neither is known, as runc leaves it out.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_string())
}

/// Watches a git file, if it exists (a missing one would rebuild every time).
fn watch(path: Option<String>) {
    if let Some(p) = path.filter(|p| std::path::Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={p}");
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=KEEL_COMMIT");
    let commit = std::env::var("KEEL_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "HEAD"]));
    // Built again when HEAD moves (a commit, a checkout), not on every edit.
    for name in ["HEAD", "packed-refs"] {
        watch(git(&["rev-parse", "--git-path", name]));
    }
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(git(&["rev-parse", "--git-path", &r]));
    }
    let mut text = format!("version {}\n", env!("CARGO_PKG_VERSION"));
    if let Some(c) = commit {
        text.push_str(&format!("commit: {c}\n"));
    }
    text.push_str("spec: 1.3.0");
    let out = std::path::Path::new(&std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("version.txt");
    std::fs::write(&out, text).expect("write version.txt");
}
