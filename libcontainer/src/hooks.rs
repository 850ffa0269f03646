//! OCI hooks: each runs with the container's state JSON on stdin, its own
//! args and env, and is killed when its timeout passes. Which process runs
//! them and when is decided by the callers, at the points the runtime-spec
//! names.

use crate::error::{Error, Result};
use crate::state::Status;
use oci_spec::runtime::Hook;
use serde::Serialize;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
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

/// Runs `hooks` in order; the first failure stops the rest and is returned,
/// naming the hook list (`hooks.createRuntime[1]`) and what went wrong.
pub fn run(kind: &str, hooks: &[Hook], state: &HookState) -> Result<()> {
    if hooks.is_empty() {
        return Ok(());
    }
    let input = serde_json::to_vec(state)
        .map_err(|e| Error::invalid(format!("hooks.{kind}"), e.to_string()))?;
    for (i, hook) in hooks.iter().enumerate() {
        run_one(hook, &input).map_err(|reason| {
            Error::invalid(
                format!("hooks.{kind}[{i}] {}", hook.path().display()),
                reason,
            )
        })?;
    }
    Ok(())
}

fn run_one(hook: &Hook, input: &[u8]) -> std::result::Result<(), String> {
    let mut cmd = Command::new(hook.path());
    let args = hook.args().as_deref().unwrap_or(&[]);
    // args[0] is the program's argv[0], as in execve.
    if let Some((argv0, rest)) = args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("start: {e}"))?;
    // The state is fed without blocking, between the checks below: a hook
    // that does not read a state bigger than the pipe must still time out.
    let mut stdin = child.stdin.take();
    if let Some(s) = &stdin {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let _ = fcntl(s, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    }
    let mut pending = input;
    let deadline = hook
        .timeout()
        .filter(|&t| t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let mut pause = Duration::from_micros(200);
    loop {
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
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("failed: {status}")),
            Ok(None) => {}
            Err(e) => return Err(format!("wait: {e}")),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "timed out after {} s and was killed",
                hook.timeout().unwrap_or(0)
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
