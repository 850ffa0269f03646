//! OCI hooks: each runs with the container's state JSON on stdin, its own
//! args and env, and is killed when its timeout passes. Its stdout and
//! stderr are kept for the error, as runc keeps them. Which process runs
//! them, when, and from which directory is decided by the callers, at the
//! points the runtime-spec names.

use crate::error::{Error, Result};
use crate::state::Status;
use oci_spec::runtime::Hook;
use serde::Serialize;
use std::collections::HashMap;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The state a hook reads on stdin (runtime-spec `state`).
#[derive(Debug, Clone, Serialize)]
pub struct HookState<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    pub id: &'a str,
    pub status: Status,
    pub pid: i32,
    pub bundle: &'a PathBuf,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: &'a HashMap<String, String>,
}

/// Where a list of hooks runs, beyond each hook's own fields.
#[derive(Debug, Default, Clone, Copy)]
pub struct Setting<'a> {
    /// The working directory; the caller's when None.
    pub cwd: Option<&'a Path>,
    /// The environment of a hook that names none; empty when None.
    pub env: Option<&'a [CString]>,
}

/// Runs `hooks` in order; the first failure stops the rest and is returned
/// in runc's words (`error running createRuntime hook #1: exit status 1,
/// stdout: ..., stderr: ...`).
pub fn run(kind: &str, hooks: &[Hook], state: &HookState, setting: Setting) -> Result<()> {
    let input = state_json(kind, hooks, state)?;
    for (index, hook) in hooks.iter().enumerate() {
        run_one(hook, &input, setting).map_err(|reason| Error::Hook {
            kind: kind.to_string(),
            index,
            reason,
        })?;
    }
    Ok(())
}

/// Runs every hook of `hooks` whatever the others do; each failure becomes
/// a warning (the runtime-spec's rule for poststop).
pub fn run_all(kind: &str, hooks: &[Hook], state: &HookState, setting: Setting) -> Vec<String> {
    let input = match state_json(kind, hooks, state) {
        Ok(i) => i,
        Err(e) => return vec![e.to_string()],
    };
    hooks
        .iter()
        .enumerate()
        .filter_map(|(index, hook)| {
            let reason = run_one(hook, &input, setting).err()?;
            let kind = kind.to_string();
            Some(
                Error::Hook {
                    kind,
                    index,
                    reason,
                }
                .to_string(),
            )
        })
        .collect()
}

fn state_json(kind: &str, hooks: &[Hook], state: &HookState) -> Result<Vec<u8>> {
    if hooks.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::to_vec(state).map_err(|e| Error::invalid(format!("hooks.{kind}"), e.to_string()))
}

/// How much of a hook's stdout and of its stderr is kept for the error.
const KEPT_OUTPUT: usize = 16 << 10;

/// One output of the hook, read without blocking as it comes.
struct Output {
    pipe: Option<std::fs::File>,
    kept: Vec<u8>,
}

impl Output {
    fn new() -> std::io::Result<(Output, OwnedFd)> {
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        // The hook's end blocks as usual.
        nix::fcntl::fcntl(
            &w,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
        )?;
        let out = Output {
            pipe: Some(std::fs::File::from(r)),
            kept: Vec::new(),
        };
        Ok((out, w))
    }

    /// Reads what is there; past [`KEPT_OUTPUT`] it is read and dropped,
    /// so that a talkative hook never blocks on a full pipe.
    fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        while let Some(p) = self.pipe.as_mut() {
            match p.read(&mut buf) {
                Ok(0) => self.pipe = None,
                Ok(n) => {
                    let room = KEPT_OUTPUT.saturating_sub(self.kept.len());
                    self.kept.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // WouldBlock: nothing more for now. A hook's daemon may
                // hold the pipe open forever: it is never waited for.
                Err(_) => break,
            }
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.kept).into_owned()
    }
}

fn run_one(hook: &Hook, input: &[u8], setting: Setting) -> std::result::Result<(), String> {
    let path = hook.path();
    let mut cmd = Command::new(path);
    let args = hook.args().as_deref().unwrap_or(&[]);
    // args[0] is the program's argv[0], as in execve.
    if let Some((argv0, rest)) = args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    let pairs = |vars: &mut dyn Iterator<Item = &[u8]>, cmd: &mut Command| {
        for kv in vars {
            if let Some(eq) = kv.iter().position(|&b| b == b'=') {
                let name = std::ffi::OsStr::from_bytes(&kv[..eq]);
                cmd.env(name, std::ffi::OsStr::from_bytes(&kv[eq + 1..]));
            }
        }
    };
    match (hook.env(), setting.env) {
        (Some(env), _) => pairs(&mut env.iter().map(|s| s.as_bytes()), &mut cmd),
        (None, Some(env)) => pairs(&mut env.iter().map(|s| s.as_bytes()), &mut cmd),
        (None, None) => {}
    }
    if let Some(dir) = setting.cwd {
        cmd.current_dir(dir);
    }
    let (mut stdout, out_w) = Output::new().map_err(|e| format!("pipe: {e}"))?;
    let (mut stderr, err_w) = Output::new().map_err(|e| format!("pipe: {e}"))?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w));
    let mut child = cmd.spawn().map_err(|e| {
        // Go's words for a failed start, which runc prints.
        format!(
            "fork/exec {}: {}",
            path.display(),
            crate::error::go_text(&e)
        )
    })?;
    // The hook's ends went with it; ours must go, or no EOF ever comes.
    drop(cmd);
    // The state is fed without blocking, between the checks below: a hook
    // that does not read a state bigger than the pipe must still time out.
    let mut stdin = child.stdin.take();
    if let Some(s) = &stdin {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let _ = fcntl(s, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    }
    let mut pending = input;
    let timeout = hook.timeout().filter(|&t| t > 0);
    let deadline = timeout.map(|t| Instant::now() + Duration::from_secs(t as u64));
    let mut pause = Duration::from_micros(200);
    let status = loop {
        while let Some(s) = stdin.as_mut() {
            match s.write(pending) {
                Ok(n) if n < pending.len() => pending = &pending[n..],
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // All written (EOF for the hook), or EPIPE: a hook that does
                // not read its stdin is fine.
                _ => stdin = None,
            }
        }
        stdout.drain();
        stderr.drain();
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(format!("wait: {e}")),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "hook ran past specified timeout of {:.1}s",
                timeout.unwrap_or(0) as f64
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    if status.success() {
        return Ok(());
    }
    stdout.drain();
    stderr.drain();
    Err(format!(
        "{}, stdout: {}, stderr: {}",
        exit_text(status),
        stdout.text(),
        stderr.text()
    ))
}

/// An exit status as Go prints it (`exit status 1`, `signal: killed`).
fn exit_text(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => {
            // SAFETY: strsignal returns a static (or thread-local) string.
            let name = unsafe { std::ffi::CStr::from_ptr(libc::strsignal(sig)) };
            let core = if status.core_dumped() {
                " (core dumped)"
            } else {
                ""
            };
            format!(
                "signal: {}{core}",
                crate::error::lower_first(&name.to_string_lossy())
            )
        }
        (None, None) => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: serde_json::Value) -> Hook {
        serde_json::from_value(json).expect("hook JSON")
    }

    const BUNDLE: &str = "/b";

    fn state<'a>(
        status: Status,
        bundle: &'a PathBuf,
        annotations: &'a HashMap<String, String>,
    ) -> HookState<'a> {
        HookState {
            oci_version: "1.3.0",
            id: "c",
            status,
            pid: 1,
            bundle,
            annotations,
        }
    }

    #[test]
    fn failure_in_runcs_words() {
        let (bundle, ann) = (PathBuf::from(BUNDLE), HashMap::new());
        let st = state(Status::Creating, &bundle, &ann);
        let ok = hook(serde_json::json!({"path": "/bin/true"}));
        let bad = hook(serde_json::json!({"path": "/bin/sh",
            "args": ["sh", "-c", "cat >/dev/null; echo out; echo err >&2; exit 3"]}));
        let err = run("prestart", &[ok, bad], &st, Setting::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "error running prestart hook #1: exit status 3, stdout: out\n, stderr: err\n"
        );
        let missing = hook(serde_json::json!({"path": "/nonexistent/hook"}));
        let err = run("poststart", &[missing], &st, Setting::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "error running poststart hook #0: fork/exec /nonexistent/hook: no such file or directory"
        );
        let killed =
            hook(serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", "kill -9 $$"]}));
        let err = run("createRuntime", &[killed], &st, Setting::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "error running createRuntime hook #0: signal: killed, stdout: , stderr: "
        );
    }

    #[test]
    fn run_all_goes_on_after_a_failure() {
        let (bundle, ann) = (PathBuf::from(BUNDLE), HashMap::new());
        let st = state(Status::Stopped, &bundle, &ann);
        let fail = hook(serde_json::json!({"path": "/bin/false"}));
        let hooks = [
            fail.clone(),
            hook(serde_json::json!({"path": "/bin/true"})),
            fail,
        ];
        assert_eq!(
            run_all("poststop", &hooks, &st, Setting::default()),
            [
                "error running poststop hook #0: exit status 1, stdout: , stderr: ",
                "error running poststop hook #2: exit status 1, stdout: , stderr: ",
            ]
        );
    }

    #[test]
    fn default_env_and_cwd() {
        let (bundle, ann) = (PathBuf::from(BUNDLE), HashMap::new());
        let st = state(Status::Created, &bundle, &ann);
        let dir = std::env::temp_dir().join(format!("keel-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let out = dir.join("out");
        let script = format!("echo \"$PWD $A $B\" > {}", out.display());
        let env = [CString::new("A=process").expect("cstring")];
        let setting = Setting {
            cwd: Some(&dir),
            env: Some(&env),
        };
        let inherit = hook(serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", script]}));
        run("startContainer", &[inherit], &st, setting).expect("hook runs");
        let dir_text = dir.display();
        let read = || std::fs::read_to_string(&out).expect("hook output");
        assert_eq!(read(), format!("{dir_text} process \n"));
        // A hook's own env, even an empty one, replaces the default.
        let own = hook(
            serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", script],
            "env": ["B=own"]}),
        );
        run("startContainer", &[own], &st, setting).expect("hook runs");
        assert_eq!(read(), format!("{dir_text}  own\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
