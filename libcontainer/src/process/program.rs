//! The last steps of every container process before its program, shared by
//! the init and by `exec`: limits, fds, identity, capabilities, the
//! executable, and execve itself.

use super::plan::ProcessPlan;
use super::sync::{Channel, Msg};
use super::tuning;
use crate::error::{Error, Result, SysContext};
use crate::executor::{Executor, Invocation};
use nix::errno::Errno;
use nix::unistd::{Gid, Uid};
use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What to execve: the executable's path and the final environment.
pub struct Program {
    pub path: CString,
    pub env: Vec<CString>,
}

/// Everything up to the executable's lookup, in runc's order.
/// `keep`: an fd of the runtime's that the child still needs after this
/// (besides the sync channel): the init's exec.fifo.
pub fn prepare(
    plan: &ProcessPlan,
    in_userns: bool,
    chan: &Channel,
    keep: Option<BorrowedFd>,
) -> Result<Program> {
    // Inherited by the program and whatever it forks.
    if let Some(p) = &plan.memory_policy {
        super::mempolicy::apply(p)?;
    }
    crate::security::rlimits::apply(&plan.rlimits)?;
    // Nothing of the caller's or the runtime's may reach the program
    // (CVE-2024-21626), nor stay open in a created container's init: every
    // fd past stdio and --preserve-fds is closed but the sync channel and
    // `keep` (close-on-exec both), as runc's init, a new exec of runc, holds
    // only those. Nothing opened before this is used after it.
    let keep = [
        Some(chan.as_fd().as_raw_fd()),
        keep.map(|k| k.as_raw_fd()),
        plan.interpreter.as_ref().map(|i| i.fd.as_raw_fd()),
    ];
    crate::sys::close_from(
        3 + plan.preserve_fds,
        &keep.into_iter().flatten().collect::<Vec<_>>(),
    )
    .ctx(|| "close_range".into())?;
    // With all capabilities still (a real-time class needs CAP_SYS_NICE
    // or CAP_SYS_ADMIN), as runc does before its finalizeNamespace.
    if let Some(v) = plan.io_priority {
        tuning::set_io_priority(v)?;
    }
    if let Some(attr) = &plan.scheduler {
        tuning::set_scheduler(attr)?;
    }
    // Taken on at execve; written before a filter can forbid the writes.
    crate::security::lsm::apply_exec(&plan.labels)?;
    // Read as root, before the switch to the user, as runc does.
    let env = with_home(&plan.env, plan.uid);
    // The seccomp filter goes in after every step of ours that a profile
    // could deny (getcwd, setgroups, chdir, ...), in `seal`. Without
    // no_new_privs loading needs CAP_SYS_ADMIN, which is kept through the
    // identity change for it.
    let keep = privileged_filter(plan).then_some(caps::Capability::CAP_SYS_ADMIN);
    set_user(plan, in_userns, keep)?;
    if let Some(mask) = plan.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    if plan.no_new_privs {
        nix::sys::prctl::set_no_new_privs().ctx(|| "process.noNewPrivileges: prctl".into())?;
    }
    if let Some(p) = plan.personality {
        tuning::set_personality(p)?;
    }
    let path = match (&plan.executor, &plan.interpreter) {
        (_, Some(_)) => find_module(plan)?,
        (Some(executor), None) => {
            let invocation = Invocation {
                args: &plan.args,
                env: &env,
            };
            executor
                .validate(&invocation)
                .map_err(|context| Error::Init {
                    context,
                    errno: None,
                })?;
            plan.args.first().cloned().unwrap_or_default()
        }
        (None, None) => find_executable(plan)?,
    };
    Ok(Program { path, env })
}

/// A filter loaded without no_new_privs: CAP_SYS_ADMIN is raised in the
/// effective set for the load, then one capset leaves the process with
/// the config's sets (or, without any in the config, the ones it had):
/// the only syscall of this step under the filter.
fn install_privileged(plan: &ProcessPlan, chan: &Channel) -> Result<()> {
    let had = crate::sys::capget().ctx(|| "capget".into())?;
    let admin = 1u64 << caps::Capability::CAP_SYS_ADMIN.index();
    let raised = crate::sys::CapSets {
        effective: had.effective | admin,
        ..had
    };
    if raised != had {
        crate::sys::capset(raised)
            .ctx(|| "linux.seccomp: raise CAP_SYS_ADMIN to load the filter".into())?;
    }
    install_seccomp(plan, chan)?;
    let last = plan.caps.as_ref().map_or(had, |c| c.sets());
    if last == raised {
        return Ok(());
    }
    crate::sys::capset(last).ctx(|| "process.capabilities: capset".into())
}

/// runc's rule: a process without HOME, or with an empty one, gets the
/// home directory of its uid from the container's /etc/passwd, or "/".
fn with_home(env: &[CString], uid: u32) -> Vec<CString> {
    let mut env = env.to_vec();
    let home = |e: &CString| e.as_bytes().starts_with(b"HOME=");
    if !env.iter().any(|e| home(e) && e.as_bytes().len() > 5) {
        env.retain(|e| !home(e));
        let home = passwd_home(Path::new("/etc/passwd"), uid).unwrap_or_else(|| b"/".to_vec());
        if let Ok(var) = CString::new([&b"HOME="[..], &home].concat()) {
            env.push(var);
        }
    }
    env
}

/// The home field of `uid`'s entry in a passwd file. Only a regular file
/// is read: the image controls /etc/passwd, and a fifo there must not
/// block the container's start.
fn passwd_home(path: &Path, uid: u32) -> Option<Vec<u8>> {
    if !std::fs::symlink_metadata(path).ok()?.is_file() {
        return None;
    }
    let text = std::fs::read(path).ok()?;
    let uid = uid.to_string();
    text.split(|&b| b == b'\n').find_map(|line| {
        let f: Vec<&[u8]> = line.split(|&b| b == b':').collect();
        (f.len() >= 7 && f[2] == uid.as_bytes() && !f[5].is_empty()).then(|| f[5].to_vec())
    })
}

/// Loading a filter without no_new_privs takes CAP_SYS_ADMIN.
fn privileged_filter(plan: &ProcessPlan) -> bool {
    !plan.no_new_privs && plan.seccomp.is_some()
}

/// The very last step before the program is started: the seccomp filter.
pub fn seal(plan: &ProcessPlan, chan: &Channel) -> Result<()> {
    crate::failpoint::failpoint("before-exec")?;
    if privileged_filter(plan) {
        install_privileged(plan, chan)
    } else {
        install_seccomp(plan, chan)
    }
}

/// Installs the filter; a notification listener goes to the runtime, which
/// hands it to the seccomp agent before letting us go on (as runc waits:
/// the agent must be there before the first notified syscall).
fn install_seccomp(plan: &ProcessPlan, chan: &Channel) -> Result<()> {
    let Some(listener) = plan
        .seccomp
        .as_ref()
        .map(|f| f.install())
        .transpose()?
        .flatten()
    else {
        return Ok(());
    };
    chan.ask(&Msg::SeccompListener, Some(&listener))
}

/// execve, or a message on stderr and exit 255: by now nobody listens on
/// the sync channel. runc's words and status for an init whose program
/// cannot be run after all (its `libcontainer.Init`: the error on stderr,
/// exit 255, runc 1.2+; the program may have gone since create).
pub fn execute(program: &Program, plan: &ProcessPlan) -> ! {
    let (context, err) = exec(program, plan);
    // Not eprintln!: it panics when stderr is gone.
    let _ = writeln!(
        std::io::stderr(),
        "{context}: {}",
        crate::error::go_errno_text(err)
    );
    // SAFETY: leave without running destructors or atexit handlers.
    unsafe { libc::_exit(255) }
}

/// execve of the program, or of the WebAssembly executor (through the fd
/// opened before the container existed) with the module and its args;
/// returns only on failure: what failed (runc's words for a native
/// program) and why.
pub fn exec(program: &Program, plan: &ProcessPlan) -> (String, Errno) {
    let Some(interp) = &plan.interpreter else {
        let Err(err) = nix::unistd::execve(&program.path, &plan.args, &program.env);
        return (format!("exec {}", program.path.to_string_lossy()), err);
    };
    let argv = interp.argv(&plan.args);
    let Err(err) = nix::unistd::execveat(
        interp.fd.as_fd(),
        c"",
        &argv,
        &program.env,
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    );
    let hint = match err {
        Errno::EPERM | Errno::EACCES if plan.seccomp.is_some() => {
            " (the seccomp profile must allow execveat)"
        }
        _ => "",
    };
    let context = format!(
        "exec the WebAssembly executor {} for {}{hint}",
        interp.path.display(),
        program.path.to_string_lossy()
    );
    (context, err)
}

/// The embedder's executor instead of execve (see [`crate::Executor`]):
/// its return value is the exit status, a panic exits 255. The caller has
/// closed what execve would have (close-on-exec) before.
pub fn run_executor(executor: &dyn Executor, program: &Program, plan: &ProcessPlan) -> ! {
    let invocation = Invocation {
        args: &plan.args,
        env: &program.env,
    };
    let run = std::panic::AssertUnwindSafe(|| executor.run(&invocation));
    let code = std::panic::catch_unwind(run).unwrap_or(255);
    let _ = std::io::stdout().flush();
    // SAFETY: leave without running the embedder's destructors or atexit
    // handlers (this is a fork of its process).
    unsafe { libc::_exit(code) }
}

/// Puts the caller-given stdio on fds 0-2 (without close-on-exec). First
/// moved above 2, as a given fd may itself sit on 0-2.
pub fn install_stdio(plan: &ProcessPlan) -> Result<()> {
    let Some(stdio) = &plan.stdio else {
        return Ok(());
    };
    let mut high = Vec::with_capacity(3);
    for fd in stdio {
        let dup = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
            .ctx(|| "stdio: dup".into())?;
        high.push(dup);
    }
    for (target, fd) in high.iter().enumerate() {
        // SAFETY: dup2 onto the stdio numbers, which this process owns.
        let r = unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(fd), target as i32) };
        Errno::result(r).ctx(|| format!("stdio: dup2 onto fd {target}"))?;
    }
    Ok(())
}

/// The program must start with default signal handling: Rust ignores
/// SIGPIPE, and a foreground `run` blocks the signals it forwards.
pub fn reset_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: installing SIG_DFL has no handler code to be unsafe.
            let _ = unsafe { sigaction(sig, &dfl) };
        }
    }
    let _ = SigSet::empty().thread_set_mask();
}

/// runc's order: bounding set, keep-caps, ids, cwd, then the other sets
/// (with `keep` still permitted, see `install_privileged`).
fn set_user(plan: &ProcessPlan, in_userns: bool, keep: Option<caps::Capability>) -> Result<()> {
    // As runc (`finalizeNamespace`): the cwd is entered with the runtime's
    // privileges first, so a directory only root may enter works for any
    // user; only a permission error is tried again as the user (a
    // directory only the user may enter, as on a root-squashed volume).
    let entered = match nix::unistd::chdir(&plan.cwd) {
        Ok(()) => true,
        Err(Errno::EACCES | Errno::EPERM) => false,
        Err(e) => return Err(cwd_error(plan, e)),
    };
    if let Some(c) = &plan.caps {
        c.apply_bounding()?;
    }
    nix::sys::prctl::set_keepcaps(true).ctx(|| "prctl(PR_SET_KEEPCAPS)".into())?;
    if plan.terminal.is_some() || !plan.keep_stdio_owner {
        fix_stdio_permissions(plan.uid)?;
    }
    let gids: Vec<Gid> = plan
        .additional_gids
        .iter()
        .map(|&g| Gid::from_raw(g))
        .collect();
    match nix::unistd::setgroups(&gids) {
        // Denied in a user namespace whose setgroups is "deny": runc skips.
        Err(Errno::EPERM) if in_userns && gids.is_empty() => {}
        r => r.ctx(|| {
            format!(
                "process.user.additionalGids: setgroups {:?}",
                plan.additional_gids
            )
        })?,
    }
    let gid = Gid::from_raw(plan.gid);
    nix::unistd::setresgid(gid, gid, gid)
        .ctx(|| format!("process.user.gid: setresgid {}", plan.gid))?;
    let uid = Uid::from_raw(plan.uid);
    nix::unistd::setresuid(uid, uid, uid)
        .ctx(|| format!("process.user.uid: setresuid {}", plan.uid))?;
    if !entered {
        nix::unistd::chdir(&plan.cwd).map_err(|e| cwd_error(plan, e))?;
    }
    // The cwd must be inside the container (CVE-2024-21626: a leaked fd as cwd).
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => {}
        _ => {
            return Err(Error::sys(
                "process.cwd: current directory is outside the container",
                Errno::EPERM,
            ))
        }
    }
    nix::sys::prctl::set_keepcaps(false).ctx(|| "prctl(PR_SET_KEEPCAPS, 0)".into())?;
    // From here on the container's own processes pass the kernel's ptrace
    // checks on us (same ids, no more capabilities than theirs), which
    // would let them open our /proc/<pid>/exe (keel's binary: CVE-2019-5736)
    // and fds. Non-dumpable until execve, which resets it, they cannot.
    // After the id change: with fs.suid_dumpable=1 it sets dumpable again.
    nix::sys::prctl::set_dumpable(false).ctx(|| "prctl(PR_SET_DUMPABLE, 0)".into())?;
    if let Some(c) = &plan.caps {
        c.apply_rest(keep)?;
    }
    Ok(())
}

/// runc's fixStdioPermissions: the process's stdio (its pty, the pipes a
/// foreground `keel run` relays, or what a detached caller passed) goes to
/// the user it runs as, so that a non-root program can reopen
/// `/dev/stdout`. The null device is left alone. Only the owner changes
/// (the devpts `gid=` option or the caller chose the group); an fd whose
/// owner or group this user namespace cannot map (EINVAL, EPERM) or on a
/// read-only filesystem (EROFS, runc 1.2+) is left alone, as runc leaves it.
fn fix_stdio_permissions(uid: u32) -> Result<()> {
    use std::os::fd::BorrowedFd;
    let null = nix::sys::stat::stat("/dev/null").ctx(|| "stat /dev/null".into())?;
    for fd in 0..3 {
        // SAFETY: fds 0-2 stay open for the life of this process.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let st = match nix::sys::stat::fstat(fd) {
            Ok(st) => st,
            // A caller may start us with a stdio fd closed.
            Err(Errno::EBADF) => continue,
            Err(e) => return Err(Error::sys(format!("stdio: fstat fd {fd:?}"), e)),
        };
        if st.st_uid == uid || st.st_rdev == null.st_rdev {
            continue;
        }
        match nix::unistd::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(st.st_gid))) {
            Ok(()) | Err(Errno::EINVAL | Errno::EPERM | Errno::EROFS) => {}
            Err(e) => return Err(Error::sys(format!("stdio: fchown fd {fd:?} to {uid}"), e)),
        }
    }
    Ok(())
}

fn cwd_error(plan: &ProcessPlan, errno: Errno) -> Error {
    Error::sys(format!("process.cwd: chdir {}", plan.cwd.display()), errno)
}

/// The module a WebAssembly container runs: `args[0]`, a file inside the
/// container (relative to the cwd, as the executor opens it), checked as
/// runc checks a program before waiting for start.
fn find_module(plan: &ProcessPlan) -> Result<CString> {
    let Some(arg0) = plan.args.first() else {
        return Err(Error::invalid("process.args", "args must not be empty"));
    };
    let name = Path::new(std::ffi::OsStr::from_bytes(arg0.as_bytes()));
    match std::fs::metadata(name) {
        Ok(m) if m.is_file() => Ok(arg0.clone()),
        Ok(_) => Err(Error::Init {
            context: format!("wasm module {name:?}: not a regular file"),
            errno: None,
        }),
        Err(e) => Err(Error::sys(
            format!("wasm module {name:?}: stat {}", name.display()),
            e.raw_os_error().map_or(Errno::ENOENT, Errno::from_raw),
        )),
    }
}

/// args[0] looked up in the container's $PATH, as runc does before waiting
/// for start, so `create` already fails on a missing program.
fn find_executable(plan: &ProcessPlan) -> Result<CString> {
    let Some(arg0) = plan.args.first() else {
        return Err(Error::invalid("process.args", "args must not be empty"));
    };
    let name = Path::new(std::ffi::OsStr::from_bytes(arg0.as_bytes()));
    // Go's exec.ErrNotFound is no errno: the message is complete as it is.
    let not_found = |what: &str| Error::Init {
        context: format!("exec: {name:?}: {what}"),
        errno: None,
    };
    // With the process's effective ids and capabilities, as execve will
    // judge it (a CAP_DAC_OVERRIDE process may run a mode 0700 program).
    let runnable = |p: &Path| {
        CString::new(p.as_os_str().as_bytes()).is_ok_and(|c| crate::sys::may_execute(&c))
            && std::fs::metadata(p).is_ok_and(|m| m.is_file())
    };
    // In runc's words (Go's exec.LookPath; the errno follows in Go's words,
    // see `Error::Init`), which engines match to tell "not found" (exit
    // 127) from "cannot run" (126).
    if arg0.as_bytes().contains(&b'/') {
        return match std::fs::metadata(name) {
            Err(e) => Err(Error::sys(
                format!("exec: {name:?}: stat {}", name.display()),
                e.raw_os_error().map_or(Errno::ENOENT, Errno::from_raw),
            )),
            Ok(_) if runnable(name) => Ok(arg0.clone()),
            Ok(_) => Err(Error::sys(format!("exec: {name:?}"), Errno::EACCES)),
        };
    }
    let path = plan
        .env
        .iter()
        .find_map(|e| e.as_bytes().strip_prefix(b"PATH="))
        .unwrap_or(b"");
    for dir in path.split(|&b| b == b':') {
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(std::ffi::OsStr::from_bytes(dir))
        };
        let candidate: PathBuf = dir.join(name);
        if runnable(&candidate) {
            return CString::new(candidate.as_os_str().as_bytes())
                .map_err(|_| not_found("bad path"));
        }
    }
    Err(not_found("executable file not found in $PATH"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_from_passwd_or_slash() {
        let dir = std::env::temp_dir().join(format!("keel-passwd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let passwd = dir.join("passwd");
        std::fs::write(
            &passwd,
            "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000::/srv/web:/bin/sh\nnohome:x:7:7:::\n",
        )
        .expect("write");
        assert_eq!(passwd_home(&passwd, 1000), Some(b"/srv/web".to_vec()));
        assert_eq!(passwd_home(&passwd, 0), Some(b"/root".to_vec()));
        assert_eq!(passwd_home(&passwd, 7), None);
        assert_eq!(passwd_home(&passwd, 42), None);
        assert_eq!(passwd_home(&dir, 0), None);
        let _ = std::fs::remove_dir_all(&dir);
        let env = vec![CString::new("HOME=/x").expect("cstring")];
        assert_eq!(with_home(&env, 0), env);
        let empty = ["HOME=", "A=1"].map(|v| CString::new(v).expect("cstring"));
        let root_home = passwd_home(Path::new("/etc/passwd"), 0).unwrap_or_else(|| b"/".to_vec());
        let want = [b"A=1".to_vec(), [&b"HOME="[..], &root_home].concat()];
        let got: Vec<Vec<u8>> = with_home(&empty, 0)
            .into_iter()
            .map(CString::into_bytes)
            .collect();
        assert_eq!(got, want);
    }
}
