//! One module per group of commands; each returns the process exit code.

pub mod cgroups;
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
