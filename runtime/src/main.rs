//! keel: an OCI container runtime with runc's command line.

mod cli;
mod commands;
mod foreground;
mod logging;
mod pipes;
mod tty;

use cli::{Cli, Command};
use commands::{cgroups, checkpoint, exec, info, lifecycle, spec};
use logging::{Level, Logger};

/// What `keel -v` prints after "keel " (see build.rs).
pub const VERSION_TEXT: &str = include_str!(concat!(env!("OUT_DIR"), "/version.txt"));

/// musl's malloc unmaps freed memory at once (~120 mmap/munmap pairs per
/// `run`); dlmalloc keeps it for reuse and gives back only a free top over
/// 2 MB, so a long-running `run` or `events` stays at its peak use.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() {
    // SAFETY: first thing in main, while this process has one thread: the
    // fork handlers it registers hold dlmalloc's lock across fork(2), so a
    // child never inherits it held by another thread (musl's fork does the
    // same for its own malloc).
    #[cfg(target_env = "musl")]
    unsafe {
        dlmalloc::enable_alloc_after_fork()
    };
    let protected = protect_first();
    let cli = cli::parse(std::env::args().collect());
    let log = Logger::new(cli.log_format, cli.log.as_deref(), cli.debug);
    log.install();
    let code = match dispatch(&cli, &log, protected) {
        Ok(code) => code,
        Err(e) => {
            let (prefix, code) = failure_of(&cli.command);
            let msg = format!("{prefix}{e:#}");
            log.log(Level::Error, &msg);
            // runc prints the error to stderr too when logs go to a file.
            if !log.to_stderr() {
                eprintln!("{msg}");
            }
            code
        }
    };
    std::process::exit(code);
}

/// How a failed command is reported, as runc reports it: `exec` exits 255
/// (so a caller tells its failure from the program's own exit status 1)
/// with "exec failed: "; `create` and `run` say "<name> create failed: ".
fn failure_of(command: &Command) -> (&'static str, i32) {
    match command {
        Command::Exec(_) => ("exec failed: ", 255),
        Command::Create(_) => ("keel create failed: ", 1),
        Command::Run(_) => ("keel run failed: ", 1),
        _ => ("", 1),
    }
}

/// Writes `text` to stdout. A reader that went away (`keel list | head`)
/// ends keel quietly, as SIGPIPE ends runc; keel itself ignores SIGPIPE
/// (Rust's default), which hooks and sync sockets need.
pub fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("keel: write to stdout: {e}");
        std::process::exit(1);
    }
}

/// runc's default: /run/keel, or $XDG_RUNTIME_DIR/keel for an unprivileged
/// user (and for root inside a user namespace that a user made, as rootless
/// podman runs it), where such a user can write.
fn default_root() -> std::path::PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(xdg) if !xdg.is_empty() && libkeel::rootless::unprivileged() => {
            std::path::Path::new(&xdg).join("keel")
        }
        _ => std::path::PathBuf::from(libkeel::DEFAULT_ROOT),
    }
}

/// The token of the commands that fork processes into a container
/// (`libkeel::Runtime::init`: this process is single-threaded and runs from
/// a read-only view of its binary, CVE-2019-5736, after a re-exec if need
/// be), made before anything else so that the image a re-exec replaces
/// does no more than it must (clap's parsing, twice, was most of that).
/// Any argument spelled like one of those commands triggers it, at worst a
/// needless re-exec (a container named "run"); clap decides afterwards
/// which command it is. None: not attempted.
fn protect_first() -> Option<libkeel::Result<libkeel::Runtime>> {
    std::env::args_os()
        .skip(1)
        .any(|a| ["create", "run", "exec"].iter().any(|c| a == *c))
        .then(libkeel::Runtime::init)
}

fn dispatch(
    cli: &Cli,
    log: &Logger,
    protected: Option<libkeel::Result<libkeel::Runtime>>,
) -> anyhow::Result<i32> {
    let root = cli.root.clone().unwrap_or_else(default_root);
    let root = root.as_path();
    let rootless = match cli.rootless {
        cli::Rootless::True => true,
        cli::Rootless::False => false,
        cli::Rootless::Auto => libkeel::rootless::expect_cgroup_denials(),
    };
    // The commands that fork processes into a container need the token.
    let runtime = || protected.unwrap_or_else(libkeel::Runtime::init);
    match &cli.command {
        Command::Create(a) => {
            lifecycle::create(&runtime()?, root, a, log, rootless, cli.systemd_cgroup)
        }
        Command::Start { id } => lifecycle::start(root, id),
        Command::Run(a) => lifecycle::run(&runtime()?, root, a, log, rootless, cli.systemd_cgroup),
        Command::State { id } => info::state(root, id),
        Command::Kill { id, signal, all } => lifecycle::kill(root, id, signal, *all),
        Command::Delete { id, force } => lifecycle::delete(root, id, *force, log),
        Command::List { format, quiet } => info::list(root, format, *quiet),
        Command::Spec { bundle, rootless } => spec::spec(bundle.as_deref(), *rootless),
        Command::Features => info::features(),
        Command::Exec(a) => exec::exec(&runtime()?, root, a, log),
        Command::Ps(a) => cgroups::ps(root, a),
        Command::Pause { id } => cgroups::pause(root, id),
        Command::Resume { id } => cgroups::resume(root, id),
        Command::Update(a) => cgroups::update(root, a, log),
        Command::Events(a) => cgroups::events(root, a, log),
        Command::Checkpoint(a) => checkpoint::checkpoint(root, a, cli.criu.as_deref(), log),
        Command::Restore(a) => {
            checkpoint::restore(root, a, cli.criu.as_deref(), log, cli.systemd_cgroup)
        }
    }
}
