//! Finding what a failed (or finished) container left behind: state,
//! cgroups, mounts and processes.

use crate::bundle::MARKER_VAR;
use crate::env::TestEnv;

/// Pids that belong to `env` (to container `id`, if given): processes
/// carrying the env's marker variable (container programs), or whose
/// command line names the env's directory (runtime commands, and an init
/// that has not exec'd yet, which still has the runtime's command line).
pub fn marked_processes(env: &TestEnv, id: Option<&str>) -> Vec<i32> {
    let me = std::process::id() as i32;
    let marker = match id {
        Some(id) => format!("{MARKER_VAR}={}:{id}\0", env.marker),
        None => format!("{MARKER_VAR}={}:", env.marker),
    };
    let dir = env.dir.to_string_lossy().into_owned();
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let environ = String::from_utf8_lossy(&environ);
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        let args: Vec<&str> = cmdline.split('\0').collect();
        let by_env = environ.contains(&marker);
        let by_cmdline = cmdline.contains(&dir) && id.is_none_or(|id| args.contains(&id));
        if by_env || by_cmdline {
            out.push(pid);
        }
    }
    out
}

/// Everything container `id` of `env` left behind, described.
pub fn find_leaks(env: &TestEnv, id: &str) -> Vec<String> {
    let mut leaks = Vec::new();
    let state = env.root.join(id);
    if state.exists() {
        leaks.push(format!("state dir {} exists", state.display()));
    }
    for d in env.cgroup_dirs(id) {
        if d.exists() {
            leaks.push(format!("cgroup {} exists", d.display()));
        }
    }
    let dir = env.dir.to_string_lossy().into_owned();
    for l in std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&dir))
    {
        leaks.push(format!("mount: {l}"));
    }
    for pid in marked_processes(env, Some(id)) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        leaks.push(format!(
            "process {pid}: {}",
            String::from_utf8_lossy(&cmdline).replace('\0', " ")
        ));
    }
    leaks
}

/// Panics listing the leaks of container `id`, if any.
#[track_caller]
pub fn assert_no_leaks(env: &TestEnv, id: &str) {
    // A process killed a moment ago may still be exiting: give it a moment.
    let mut leaks = find_leaks(env, id);
    if !leaks.is_empty() {
        crate::wait_until(std::time::Duration::from_secs(2), || {
            leaks = find_leaks(env, id);
            leaks.is_empty()
        });
    }
    assert!(
        leaks.is_empty(),
        "container {id} of {} leaked:\n{}",
        env.rt.name,
        leaks.join("\n")
    );
}
