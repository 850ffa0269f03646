//! WebAssembly containers, as crun and youki run them: a container whose
//! annotations ask for the wasm handler has its `process.args[0]` (a
//! module or component inside the container) run by keel's executor,
//! `keel-wasm`, instead of being executed itself.
//!
//! The engine stays out of keel: the executor is a separate binary that
//! the runtime opens before the container exists (a read-only view of it,
//! see [`open_executor`]) and that the container's process executes
//! through that fd (`execveat(fd, "", AT_EMPTY_PATH)`) as its very last
//! step, after every mount, namespace, cgroup, identity change and the
//! seccomp filter, exactly where execve of a native program happens.

use crate::error::{Error, Result};
use oci_spec::runtime::Spec;
use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// The executor's file name, looked for next to the runtime's binary.
pub const EXECUTOR: &str = "keel-wasm";
/// Overrides where the executor is (an absolute path).
pub const EXECUTOR_ENV: &str = "KEEL_WASM_EXECUTOR";

/// The annotation that selects a handler, as crun reads it.
pub const HANDLER_ANNOTATION: &str = "run.oci.handler";
/// The image variant annotation (crun's alternative to the handler's).
pub const VARIANT_ANNOTATION: &str = "module.wasm.image/variant";
/// A Kubernetes sandbox (pause) container always runs natively (crun's
/// rule: its handler would otherwise apply to the pod's pause process).
const CONTAINER_TYPE_ANNOTATION: &str = "io.kubernetes.cri.container-type";

/// Whether `spec` asks for the wasm handler, by crun's rules:
/// `run.oci.handler` is `wasm` (or crun's handler name `wasmtime`), or
/// `wasm-smart` with an entrypoint ending in `.wasm` or `.wat`; without it,
/// `module.wasm.image/variant` is `compat`, or `compat-smart` with such an
/// entrypoint. Any other value of `run.oci.handler` runs natively and
/// makes the variant annotation irrelevant, as in crun.
pub fn wanted(spec: &Spec) -> bool {
    let Some(annotations) = spec.annotations().as_ref() else {
        return false;
    };
    if annotations
        .get(CONTAINER_TYPE_ANNOTATION)
        .is_some_and(|t| t == "sandbox")
    {
        return false;
    }
    let entrypoint = spec
        .process()
        .as_ref()
        .and_then(|p| p.args().as_ref())
        .and_then(|a| a.first());
    let Some(entrypoint) = entrypoint else {
        return false;
    };
    let wasm_named = || {
        let lower = entrypoint.to_ascii_lowercase();
        lower.ends_with(".wasm") || lower.ends_with(".wat")
    };
    if let Some(handler) = annotations.get(HANDLER_ANNOTATION) {
        return match handler.as_str() {
            "wasm" | "wasmtime" => true,
            "wasm-smart" => wasm_named(),
            _ => false,
        };
    }
    match annotations.get(VARIANT_ANNOTATION).map(String::as_str) {
        Some("compat") => true,
        Some("compat-smart") => wasm_named(),
        _ => false,
    }
}

/// The executor a container process runs its module with: an `O_PATH`,
/// close-on-exec fd to a view of the binary that nobody can write through,
/// and its path for messages.
#[derive(Debug)]
pub struct Interpreter {
    /// Close-on-exec; executed with `execveat(fd, "", AT_EMPTY_PATH)`.
    pub fd: OwnedFd,
    /// Where it was found on the host.
    pub path: PathBuf,
}

impl Interpreter {
    /// The executor's argv: its name, then the container's args (the
    /// module first).
    pub fn argv(&self, args: &[CString]) -> Vec<CString> {
        let name = CString::new(EXECUTOR).unwrap_or_default();
        std::iter::once(name).chain(args.iter().cloned()).collect()
    }
}

/// Where the executor is: `$KEEL_WASM_EXECUTOR`, else next to the binary
/// the runtime was started from (`origin`).
pub fn executor_path(origin: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(EXECUTOR_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    Some(origin?.parent()?.join(EXECUTOR))
}

/// Opens the executor for a container that asks for the handler: a read-only
/// view of it (a detached read-only bind mount, or a sealed copy), so that
/// through `/proc/<pid>/exe` of the running executor the container cannot
/// write the host's binary (CVE-2019-5736, as for keel's own).
pub fn open_executor(origin: Option<&Path>) -> Result<Interpreter> {
    let missing = |what: String| {
        Error::Invalid {
        field: "annotations (the wasm handler)".into(),
        reason: format!(
            "{what} (the WebAssembly executor: install {EXECUTOR} next to the runtime's binary, or set {EXECUTOR_ENV})"
        ),
    }
    };
    let Some(path) = executor_path(origin) else {
        return Err(missing(format!(
            "cannot find {EXECUTOR}: the runtime's own path is unknown"
        )));
    };
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(missing(format!("{} is not a file", path.display()))),
        Err(e) => {
            return Err(missing(format!(
                "{}: {}",
                path.display(),
                crate::error::go_text(&e)
            )))
        }
    }
    let fd = crate::security::exe::readonly_view(&path)?;
    Ok(Interpreter { fd, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(annotations: &[(&str, &str)], arg0: &str) -> Spec {
        let mut s = Spec::default();
        s.set_annotations(Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
        if let Some(p) = s.process_mut() {
            p.set_args(Some(vec![arg0.to_string(), "x".into()]));
        }
        s
    }

    #[test]
    fn annotations_as_crun_reads_them() {
        let h = HANDLER_ANNOTATION;
        let v = VARIANT_ANNOTATION;
        assert!(wanted(&spec(&[(h, "wasm")], "/bin/app")));
        assert!(wanted(&spec(&[(h, "wasmtime")], "/bin/app")));
        assert!(!wanted(&spec(&[(h, "krun")], "/app.wasm")));
        assert!(wanted(&spec(&[(h, "wasm-smart")], "/app.WASM")));
        assert!(wanted(&spec(&[(h, "wasm-smart")], "app.wat")));
        assert!(!wanted(&spec(&[(h, "wasm-smart")], "/bin/sh")));
        assert!(wanted(&spec(&[(v, "compat")], "/bin/app")));
        assert!(wanted(&spec(&[(v, "compat-smart")], "/m.wasm")));
        assert!(!wanted(&spec(&[(v, "compat-smart")], "/bin/envoy")));
        assert!(!wanted(&spec(&[(v, "other")], "/m.wasm")));
        // run.oci.handler decides alone when present.
        assert!(!wanted(&spec(&[(h, "other"), (v, "compat")], "/m.wasm")));
        // A pod's sandbox runs its pause natively.
        let sandbox = (CONTAINER_TYPE_ANNOTATION, "sandbox");
        assert!(!wanted(&spec(&[(h, "wasm"), sandbox], "/pause")));
        let app = (CONTAINER_TYPE_ANNOTATION, "container");
        assert!(wanted(&spec(&[(h, "wasm"), app], "/m.wasm")));
        assert!(!wanted(&spec(&[], "/m.wasm")));
    }

    #[test]
    fn argv_is_the_executor_then_the_args() {
        let i = Interpreter {
            fd: nix::fcntl::open(
                "/",
                nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .expect("open /"),
            path: PathBuf::from("/x/keel-wasm"),
        };
        let args = [c"/m.wasm".to_owned(), c"a".to_owned()];
        assert_eq!(
            i.argv(&args),
            [
                c"keel-wasm".to_owned(),
                c"/m.wasm".to_owned(),
                c"a".to_owned()
            ]
        );
    }
}
