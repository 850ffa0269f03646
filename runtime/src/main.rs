//! keel: an OCI container runtime with runc's command line.

mod cli;
mod commands;
mod foreground;
mod logging;
mod tty;

use clap::Parser;
use cli::{Cli, Command};
use commands::{cgroups, exec, info, lifecycle, spec};
use logging::{Level, Logger};

pub const VERSION_TEXT: &str = concat!(env!("CARGO_PKG_VERSION"), "\nspec: 1.3.0");

fn main() {
    let args = cli::normalize_args(std::env::args().collect());
    let cli = Cli::parse_from(args);
    let log = Logger::new(cli.log_format, cli.log.as_deref(), cli.debug);
    let code = match dispatch(&cli, &log) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}");
            log.log(Level::Error, &msg);
            // runc prints the error to stderr too when logs go to a file.
            if !log.to_stderr() {
                eprintln!("{msg}");
            }
            1
        }
    };
    std::process::exit(code);
}

fn dispatch(cli: &Cli, log: &Logger) -> anyhow::Result<i32> {
    let root = cli.root.as_path();
    if cli.systemd_cgroup {
        anyhow::bail!("--systemd-cgroup is not supported by this version of keel yet");
    }
    if matches!(
        cli.command,
        Command::Create(_) | Command::Run(_) | Command::Exec(_)
    ) {
        // Before anything is forked: the processes that enter the container
        // must not carry the host's keel binary as their exe.
        libkeel::security::exe::protect(std::env::args_os().collect())?;
    }
    match &cli.command {
        Command::Create(a) => lifecycle::create(root, a, log),
        Command::Start { id } => lifecycle::start(root, id, log),
        Command::Run(a) => lifecycle::run(root, a, log),
        Command::State { id } => info::state(root, id),
        Command::Kill { id, signal, all } => lifecycle::kill(root, id, signal, *all),
        Command::Delete { id, force } => lifecycle::delete(root, id, *force, log),
        Command::List { format, quiet } => info::list(root, format, *quiet),
        Command::Spec { bundle, rootless } => spec::spec(bundle.as_deref(), *rootless),
        Command::Features => info::features(),
        Command::Exec(a) => exec::exec(root, a),
        Command::Ps(a) => cgroups::ps(root, a),
        Command::Pause { id } => cgroups::pause(root, id),
        Command::Resume { id } => cgroups::resume(root, id),
        Command::Update(a) => cgroups::update(root, a, log),
        Command::Events(a) => cgroups::events(root, a, log),
        Command::Checkpoint(_) | Command::Restore(_) => {
            let name = std::env::args()
                .find(|a| ["checkpoint", "restore"].contains(&a.as_str()))
                .unwrap_or_default();
            anyhow::bail!("keel {name}: not implemented in this version of keel yet")
        }
    }
}
