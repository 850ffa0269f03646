//! The command line, flag for flag as runc's.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "keel",
    version = crate::VERSION_TEXT,
    disable_version_flag = true,
    about = "keel: an OCI container runtime (runc-compatible CLI)"
)]
pub struct Cli {
    /// Print the version (runc's `-v`, `--version`)
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    pub version: Option<bool>,
    /// Root directory for storage of container state (default /run/keel, or
    /// $XDG_RUNTIME_DIR/keel for an unprivileged user)
    #[arg(long, global = true)]
    pub root: Option<PathBuf>,
    /// Set the log file to write runtime logs to (default is stderr)
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Set the log format ('text' or 'json')
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Enable debug logging
    #[arg(long, global = true)]
    pub debug: bool,
    /// Enable systemd cgroup support
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Ignore cgroup permission errors ('true', 'false', or 'auto')
    #[arg(long, value_enum, default_value = "auto")]
    pub rootless: Rootless,
    /// Path to the criu binary used for checkpoint and restore
    #[arg(long, global = true, hide = true)]
    pub criu: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Rootless {
    True,
    False,
    Auto,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    /// Path to the root of the bundle directory
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Path to an AF_UNIX socket which will receive the pty master
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Path to an AF_UNIX socket which will receive the pidfd of the init
    #[arg(long = "pidfd-socket")]
    pub pidfd_socket: Option<PathBuf>,
    /// Specify the file to write the process id to
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Do not use pivot root to jail process inside rootfs
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a new session keyring for the container
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass N additional file descriptors to the container (stdio + $LISTEN_FDS + N)
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Container id
    pub id: String,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Detach from the container's process
    #[arg(short, long)]
    pub detach: bool,
    /// Do not delete the container after it exits
    #[arg(long)]
    pub keep: bool,
    /// Disable the use of the subreaper used to reap reparented processes
    #[arg(long = "no-subreaper")]
    pub no_subreaper: bool,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Path to the process.json
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Path to an AF_UNIX socket which will receive the pty master
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Path to an AF_UNIX socket which will receive the pidfd of the process
    #[arg(long = "pidfd-socket")]
    pub pidfd_socket: Option<PathBuf>,
    /// Current working directory in the container
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Set environment variables
    #[arg(short, long)]
    pub env: Vec<String>,
    /// UID (format: <uid>[:<gid>])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional gids
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// Add a capability to the bounding set for the process
    #[arg(short, long)]
    pub cap: Vec<String>,
    /// Set the no new privileges value for the process
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Set the AppArmor profile for the process
    #[arg(long)]
    pub apparmor: Option<String>,
    /// Set the asm process label for the process commonly used with selinux
    #[arg(long = "process-label")]
    pub process_label: Option<String>,
    /// Detach from the container's process
    #[arg(short, long)]
    pub detach: bool,
    /// Specify the file to write the process id to
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Pass N additional file descriptors to the process (stdio + $LISTEN_FDS + N)
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Allow exec in a paused container
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    /// Run the process in an (existing) sub-cgroup
    #[arg(long)]
    pub cgroup: Vec<String>,
    /// Container id
    pub id: String,
    /// Command and arguments (unless --process is given)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Each command's arguments are defined only when it is the one parsed
/// (`defer`): building all of them was ~1.9 M instructions per invocation,
/// most of a `keel state`. (The structs flattened into a command carry no
/// doc comment: deferred, it would replace the command's `about`.)
#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum Command {
    /// Create a container
    Create(CreateArgs),
    /// Executes the user defined process in a created container
    Start { id: String },
    /// Create and run a container
    Run(RunArgs),
    /// Output the state of a container
    State { id: String },
    /// Kill sends the specified signal (default: SIGTERM) to the container's init process
    Kill {
        /// Send the specified signal to all processes inside the container
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete any resources held by the container
    Delete {
        /// Forcibly deletes the container if it is still running (uses SIGKILL)
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Lists containers started by keel with the given root
    List {
        /// Select one of: table or json
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Display only container IDs
        #[arg(short, long)]
        quiet: bool,
    },
    /// Create a new specification file
    Spec {
        /// Path to the root of the bundle directory
        #[arg(short, long)]
        bundle: Option<PathBuf>,
        /// Generate a configuration for a rootless container
        #[arg(id = "spec_rootless", long = "rootless")]
        rootless: bool,
    },
    /// Show the enabled features
    Features,
    /// Execute new process inside the container
    Exec(Box<ExecArgs>),
    /// Displays the processes running inside a container
    Ps(PsArgs),
    /// Pause all processes within the container
    Pause { id: String },
    /// Resume all processes that have been previously paused
    Resume { id: String },
    /// Update container resource constraints
    Update(Box<UpdateArgs>),
    /// Display container events such as OOM notifications, cpu, memory, and IO usage statistics
    Events(EventsArgs),
    /// Checkpoint a running container
    Checkpoint(Box<CheckpointArgs>),
    /// Restore a container from a previous checkpoint
    Restore(Box<RestoreArgs>),
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Select one of: table or json
    #[arg(short, long, default_value = "table")]
    pub format: String,
    /// Container id
    pub id: String,
    /// Options for ps(1) (default -ef)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Set the stats collection interval
    #[arg(long, default_value = "5s")]
    pub interval: String,
    /// Display the container's stats then exit
    #[arg(long)]
    pub stats: bool,
    /// Container id
    pub id: String,
}

// `update`'s flags, runc's names and spellings. Values are strings as in
// runc, parsed (with runc's errors) by the command.
#[derive(Args, Debug, Default)]
pub struct UpdateArgs {
    /// Path to the file containing the resources to update or '-' to read from the standard input
    #[arg(short, long)]
    pub resources: Option<String>,
    /// Specifies per cgroup weight, range is from 10 to 1000
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<String>,
    /// CPU CFS period to be used for hardcapping (in usecs). 0 to use system default
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<String>,
    /// CPU CFS hardcap limit (in usecs). Allowed cpu time in a given period
    #[arg(long = "cpu-quota", allow_negative_numbers = true)]
    pub cpu_quota: Option<String>,
    /// CPU CFS hardcap burst limit (in usecs). Allowed accumulated cpu time additionally for burst a given period
    #[arg(long = "cpu-burst")]
    pub cpu_burst: Option<String>,
    /// CPU shares (relative weight vs. other containers)
    #[arg(long = "cpu-share", visible_alias = "cpu-shares")]
    pub cpu_share: Option<String>,
    /// CPU realtime period to be used for hardcapping (in usecs). 0 to use system default
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<String>,
    /// CPU realtime hardcap limit (in usecs). Allowed cpu time in a given period
    #[arg(long = "cpu-rt-runtime", allow_negative_numbers = true)]
    pub cpu_rt_runtime: Option<String>,
    /// CPU(s) to use
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Memory node(s) to use
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Set cgroup SCHED_IDLE or not, 0: default behavior, 1: SCHED_IDLE
    #[arg(long = "cpu-idle", allow_negative_numbers = true)]
    pub cpu_idle: Option<String>,
    /// (obsoleted; do not use)
    #[arg(long = "kernel-memory", allow_negative_numbers = true)]
    pub kernel_memory: Option<String>,
    /// (obsoleted; do not use)
    #[arg(long = "kernel-memory-tcp", allow_negative_numbers = true)]
    pub kernel_memory_tcp: Option<String>,
    /// Memory limit (in bytes)
    #[arg(long, allow_negative_numbers = true)]
    pub memory: Option<String>,
    /// Memory reservation or soft_limit (in bytes)
    #[arg(long = "memory-reservation", allow_negative_numbers = true)]
    pub memory_reservation: Option<String>,
    /// Total memory usage (memory + swap); set '-1' to enable unlimited swap
    #[arg(long = "memory-swap", allow_negative_numbers = true)]
    pub memory_swap: Option<String>,
    /// Maximum number of pids allowed in the container
    #[arg(long = "pids-limit", allow_negative_numbers = true)]
    pub pids_limit: Option<String>,
    /// The string of Intel RDT/CAT L3 cache schema
    #[arg(long = "l3-cache-schema")]
    pub l3_cache_schema: Option<String>,
    /// The string of Intel RDT/MBA memory bandwidth schema
    #[arg(long = "mem-bw-schema")]
    pub mem_bw_schema: Option<String>,
    /// Container id
    pub id: String,
}

// The CRIU options `checkpoint` and `restore` share (runc's names).
#[derive(Args, Debug, Default)]
pub struct CriuArgs {
    /// Path for saving (checkpoint) or reading (restore) criu image files
    #[arg(long = "image-path")]
    pub image_path: Option<PathBuf>,
    /// Path for saving work files and logs
    #[arg(long = "work-path")]
    pub work_path: Option<PathBuf>,
    /// Allow open tcp connections
    #[arg(long = "tcp-established")]
    pub tcp_established: bool,
    /// Allow external unix sockets
    #[arg(long = "ext-unix-sk")]
    pub ext_unix_sk: bool,
    /// Allow shell jobs
    #[arg(long = "shell-job")]
    pub shell_job: bool,
    /// Handle file locks, for safety
    #[arg(long = "file-locks")]
    pub file_locks: bool,
    /// Cgroups mode: soft|full|strict|ignore (default: soft)
    #[arg(long = "manage-cgroups-mode", default_value = "")]
    pub manage_cgroups_mode: String,
    /// Create a namespace, but don't restore its properties
    #[arg(long = "empty-ns")]
    pub empty_ns: Vec<String>,
    /// Enable auto deduplication of memory images
    #[arg(long = "auto-dedup")]
    pub auto_dedup: bool,
    /// Use userfaultfd to lazily restore memory pages
    #[arg(long = "lazy-pages")]
    pub lazy_pages: bool,
}

#[derive(Args, Debug)]
pub struct CheckpointArgs {
    #[command(flatten)]
    pub criu: CriuArgs,
    /// Path for previous criu image files in pre-dump
    #[arg(long = "parent-path")]
    pub parent_path: Option<PathBuf>,
    /// Leave the process running after checkpointing
    #[arg(long = "leave-running")]
    pub leave_running: bool,
    /// Criu writes \0 to this FD once lazy-pages is ready
    #[arg(long = "status-fd", allow_negative_numbers = true)]
    pub status_fd: Option<i32>,
    /// ADDRESS:PORT of the page server
    #[arg(long = "page-server")]
    pub page_server: Option<String>,
    /// Dump container's memory information only, leave the container running after this
    #[arg(long = "pre-dump")]
    pub pre_dump: bool,
    /// Container id
    pub id: String,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub criu: CriuArgs,
    /// Path to the root of the bundle directory
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Path to an AF_UNIX socket which will receive the pty master
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Detach from the container's process
    #[arg(short, long)]
    pub detach: bool,
    /// Specify the file to write the process id to
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Disable the use of the subreaper used to reap reparented processes
    #[arg(long = "no-subreaper")]
    pub no_subreaper: bool,
    /// Do not use pivot root to jail process inside rootfs (CRIU restores the root itself)
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Specify an LSM profile to be used during restore
    #[arg(long = "lsm-profile")]
    pub lsm_profile: Option<String>,
    /// Specify an LSM mount context to be used during restore
    #[arg(long = "lsm-mount-context")]
    pub lsm_mount_context: Option<String>,
    /// Container id
    pub id: String,
}

/// Parses keel's command line as runc's. Building clap's command tree is
/// most of the cost, so it is built once, for both steps.
pub fn parse(args: Vec<String>) -> Cli {
    try_parse(args).unwrap_or_else(|e| e.exit())
}

/// [`parse`] without the exit: clap's error (help and version included)
/// as it would print it.
pub fn try_parse(args: Vec<String>) -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let mut cmd = Cli::command();
    let args = normalize_args(&cmd, args);
    let mut matches = cmd.try_get_matches_from_mut(args)?;
    // What Parser::parse_from does with the matches.
    Cli::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut Cli::command()))
}

/// runc's flag parser (Go's) takes `-root x` as well as `--root x`; clap
/// does not, so single-dash long flags (those of `cmd`) are rewritten
/// first.
fn normalize_args(cmd: &clap::Command, args: Vec<String>) -> Vec<String> {
    // Gathered at the first argument that may be one: the commands'
    // arguments exist only once built (`defer`), which the usual command
    // line, all `--flag` and `-x`, never needs.
    let mut longs: Option<Vec<String>> = None;
    let mut passthrough = false;
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            if i == 0 || passthrough {
                return a;
            }
            if a == "--" {
                passthrough = true;
                return a;
            }
            if let Some(rest) = a
                .strip_prefix('-')
                .filter(|r| !r.starts_with('-') && r.len() > 1)
            {
                let name = rest.split('=').next().unwrap_or(rest);
                let longs = longs.get_or_insert_with(|| long_names(cmd));
                if longs.iter().any(|l| l == name) {
                    return format!("-{a}");
                }
            }
            a
        })
        .collect()
}

/// The long names of `cmd`'s arguments and of all its commands'.
fn long_names(cmd: &clap::Command) -> Vec<String> {
    let mut cmd = cmd.clone();
    cmd.build();
    let mut longs: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect();
    for sub in cmd.get_subcommands() {
        longs.extend(
            sub.get_arguments()
                .filter_map(|a| a.get_long().map(str::to_owned)),
        );
    }
    longs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalize(args: &[&str]) -> Vec<String> {
        use clap::CommandFactory;
        normalize_args(
            &Cli::command(),
            args.iter().map(|s| s.to_string()).collect(),
        )
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(normalize(args)).unwrap()
    }

    #[test]
    fn runc_flag_spellings() {
        for args in [
            &["keel", "--root", "/r", "create", "-b", "/b", "x"][..],
            &["keel", "--root=/r", "create", "--bundle=/b", "x"],
            &["keel", "-root", "/r", "create", "-bundle", "/b", "x"],
            &["keel", "create", "--bundle", "/b", "x", "--root", "/r"],
        ] {
            let cli = parse(args);
            assert_eq!(cli.root, Some(PathBuf::from("/r")));
            match cli.command {
                Command::Create(c) => {
                    assert_eq!(c.bundle, PathBuf::from("/b"));
                    assert_eq!(c.id, "x");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    /// `keel COMMAND -h` prints help for every command, as runc does.
    #[test]
    fn every_command_has_help() {
        use clap::CommandFactory;
        let names: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        for name in names {
            for flag in ["-h", "--help"] {
                let e = Cli::try_parse_from(["keel", name.as_str(), flag]).unwrap_err();
                assert_eq!(
                    e.kind(),
                    clap::error::ErrorKind::DisplayHelp,
                    "{name} {flag}"
                );
            }
        }
    }

    #[test]
    fn version_flags_like_runc() {
        for args in [
            &["keel", "-v"][..],
            &["keel", "--version"],
            &["keel", "-version"],
        ] {
            let e = Cli::try_parse_from(normalize(args)).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion);
        }
    }

    #[test]
    fn kill_defaults_to_sigterm() {
        match parse(&["keel", "kill", "c1"]).command {
            Command::Kill { signal, all, .. } => {
                assert_eq!(signal, "SIGTERM");
                assert!(!all);
            }
            other => panic!("{other:?}"),
        }
    }
}
