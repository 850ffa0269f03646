//! One module per group of commands; each returns the process exit code.

pub mod cgroups;
pub mod checkpoint;
pub mod exec;
pub mod info;
pub mod lifecycle;
pub mod spec;

/// runc's rules for `--console-socket`, checked before anything is made:
/// a detached process with a terminal needs one, and it is refused where
/// it would not be used (no terminal, or keel stays in the foreground).
pub fn check_console_socket(given: bool, detach: bool, terminal: bool) -> anyhow::Result<()> {
    if detach && terminal && !given {
        anyhow::bail!("cannot allocate tty if keel will detach without setting console socket");
    }
    if given && (!detach || !terminal) {
        anyhow::bail!("cannot use console socket if keel will not detach or allocate tty");
    }
    Ok(())
}

/// Whether the bundle's process asks for a terminal.
pub fn bundle_terminal(bundle: &std::path::Path) -> anyhow::Result<bool> {
    Ok(spec_terminal(&libkeel::spec::Bundle::load(bundle)?.spec))
}

/// Whether the config's process asks for a terminal.
pub fn spec_terminal(spec: &libkeel::oci_spec::runtime::Spec) -> bool {
    spec.process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false)
}

/// Connects to the unix socket of a `--console-socket` or `--pidfd-socket`
/// flag, before anything is made (as runc does), so a bad path leaves
/// nothing behind.
pub fn connect(flag: &str, path: &std::path::Path) -> anyhow::Result<std::os::fd::OwnedFd> {
    use anyhow::Context;
    let s = std::os::unix::net::UnixStream::connect(path)
        .with_context(|| format!("--{flag}: connect {}", path.display()))?;
    Ok(s.into())
}

/// Hands a process's pidfd to the `--pidfd-socket` (runc 1.2's protocol).
pub fn send_pidfd(
    socket: &std::os::fd::OwnedFd,
    kind: libkeel::pidfd::Kind,
    pidfd: Option<&std::os::fd::OwnedFd>,
) -> anyhow::Result<()> {
    let Some(pidfd) = pidfd else {
        anyhow::bail!(
            "--pidfd-socket: no pidfd for the process (it exited, or the kernel is older than 5.3)"
        );
    };
    Ok(libkeel::pidfd::send(socket, kind, pidfd)?)
}
