//! The library's error type. Every variant says what failed, on which path or
//! config field, and why, so that the CLI can print it as it stands.

use std::path::PathBuf;

/// Errors returned by libkeel.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bundle's config.json could not be parsed.
    #[error("{path}: {reason}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The bundle, its config.json or its rootfs could not be reached, in
    /// runc's words (`JSON specification file config.json not found`,
    /// `read config.json: is a directory`, `chdir DIR: ...`, `invalid
    /// rootfs: stat PATH: ...`), which scripts match.
    #[error("{0}")]
    BundleUnreadable(String),

    /// The config asks for something runc refuses, worded as runc words it
    /// (scripts match the words): `device access at 1 field cannot be
    /// empty`.
    #[error("{0}")]
    ConfigRefused(String),

    /// The config parsed but asks for something that cannot be honoured.
    #[error("{field}: {reason}")]
    Invalid {
        /// The config field, as a path (`linux.resources.memory.limit`).
        field: String,
        /// Why it cannot be honoured.
        reason: String,
    },

    /// A container id that is not acceptable as a directory name.
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId {
        /// The id given.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// `create` of an id that is already in use.
    #[error("container with id {0} already exists")]
    Exists(String),

    /// No container with that id under the state root (runc's words,
    /// which scripts and go-runc match: the id is not part of them).
    #[error("container does not exist")]
    NotFound(String),

    /// The operation does not fit the container's current status; `reason`
    /// is runc's words for it ("container not running", "cannot exec in a
    /// stopped container", ...), which scripts match.
    #[error("{reason}")]
    WrongStatus {
        /// The container.
        id: String,
        /// Its status.
        status: crate::Status,
        /// runc's words for why the operation cannot be done in it.
        reason: String,
    },

    /// The container's cgroup exists and cannot take a new container; the
    /// words are runc's (`container's cgroup is not empty: 2 process(es)
    /// found`, `container's cgroup unexpectedly frozen`).
    #[error("container's cgroup {0}")]
    CgroupInUse(String),

    /// `exec` into a paused container without `ignore_paused` (runc's words).
    #[error("cannot exec in a paused container (use --ignore-paused to override)")]
    ExecPaused,

    /// A system call failed; `context` names the call and the path or field.
    #[error("{context}: {errno}")]
    Sys {
        /// The call and its path or field.
        context: String,
        /// The kernel's answer.
        errno: nix::errno::Errno,
    },

    /// File I/O on a runtime-owned path failed. (The io error is part of
    /// the message rather than a `source`, so that a report of the chain
    /// does not print it twice.)
    #[error("{context}: {error}")]
    Io {
        /// The operation and its path.
        context: String,
        /// The error.
        error: std::io::Error,
    },

    /// The container's init process reported a failure while setting up;
    /// `errno` is absent when the failure was not a system call's. In
    /// runc's words, which engines read: Docker and podman tell a missing
    /// program (127) from one that cannot run (126) by "no such file or
    /// directory", "executable file not found" and "permission denied".
    #[error("unable to start container process: {context}{}", errno.map(|e| format!(": {}", go_errno_text(e))).unwrap_or_default())]
    Init {
        /// The step that failed, in runc's words.
        context: String,
        /// The system call's error, when it was one.
        errno: Option<nix::errno::Errno>,
    },

    /// The init process went away without reporting why.
    #[error("container init exited unexpectedly during setup ({0})")]
    InitDied(String),

    /// A hook failed, in runc's words (`reason`: `exit status 1, stdout:
    /// ..., stderr: ...`, or why it did not run or finish).
    #[error("error running {kind} hook #{index}: {reason}")]
    Hook {
        /// The hook's kind (`prestart`, `createRuntime`, ...).
        kind: String,
        /// Its index among the hooks of that kind.
        index: usize,
        /// How it failed.
        reason: String,
    },

    /// The seccomp agent at `linux.seccomp.listenerPath` could not be
    /// reached, in runc's words.
    #[error(
        "failed to connect with seccomp agent specified in the seccomp profile: \
         dial unix {}: connect: {reason}",
        path.display()
    )]
    SeccompAgent {
        /// `listenerPath`.
        path: PathBuf,
        /// Why connecting failed.
        reason: String,
    },

    /// CRIU failed a checkpoint or restore (runc's words); `quote` holds
    /// the error lines of CRIU's log, as runc quotes them.
    #[error("criu failed: type {op} errno {errno}{quote}")]
    Criu {
        /// The operation CRIU answered (`DUMP`, `RESTORE`, ...).
        op: String,
        /// CRIU's errno.
        errno: i32,
        /// The error lines of CRIU's log.
        quote: String,
    },

    /// CRIU (or the kernel under it) lacks what a request needs; runc's
    /// words, then which feature and what it needs.
    #[error("CRIU is missing features: {0}")]
    CriuMissingFeatures(&'static str),

    /// `update` asks for an Intel RDT feature this machine lacks, in runc's
    /// words ("Intel RDT/CAT: l3 cache schema is not enabled").
    #[error("Intel RDT/{0} is not enabled")]
    RdtFeature(&'static str),

    /// CRIU went away or answered something keel cannot read.
    #[error("{0}")]
    CriuProtocol(String),

    /// [`Runtime::init`](crate::Runtime::init) in a process with other
    /// threads (how many threads it has).
    #[error(
        "this process has {0} threads: containers are created and exec'd \
         only from a single-threaded process (libkeel::Runtime::init)"
    )]
    MultiThreaded(u64),

    /// state.json is unreadable or corrupt.
    #[error("{path}: corrupt state: {reason}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// An errno as Go prints it (so as runc words it): the C library's text
/// with a lower-case first letter, "no such file or directory".
pub fn go_errno_text(errno: nix::errno::Errno) -> String {
    let text = errno.desc();
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        // An acronym ("RFS specific error") keeps its case, as in Go.
        (Some(first), Some(second)) if !second.is_uppercase() => first
            .to_lowercase()
            .chain(text[first.len_utf8()..].chars())
            .collect(),
        _ => text.to_string(),
    }
}

/// Result alias for libkeel.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn sys(context: impl Into<String>, errno: nix::errno::Errno) -> Self {
        Error::Sys {
            context: context.into(),
            errno,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            error: source,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// An io error's text as Go prints it (which engines and scripts match):
/// the errno's description, lower-case first, no " (os error N)".
pub(crate) fn go_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => go_errno_text(nix::errno::Errno::from_raw(n)),
        None => lower_first(&e.to_string()),
    }
}

pub(crate) fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

/// Adds context to a nix result, naming what was being done.
pub(crate) trait SysContext<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> SysContext<T> for nix::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::sys(f(), e))
    }
}

impl<T> SysContext<T> for std::io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::io(f(), e))
    }
}

impl Error {
    /// Prefixes the error's context with the config field it concerns.
    pub(crate) fn in_field(self, field: impl std::fmt::Display) -> Self {
        match self {
            Error::Sys { context, errno } => Error::Sys {
                context: format!("{field}: {context}"),
                errno,
            },
            Error::Io { context, error } => Error::Io {
                context: format!("{field}: {context}"),
                error,
            },
            Error::Invalid { field: f, reason } => Error::Invalid {
                field: format!("{field}.{f}"),
                reason,
            },
            other => other,
        }
    }

    /// Puts `what` in front of the error's words, as runc wraps an error
    /// ("error mounting \"SRC\" to rootfs at \"DST\": ...").
    pub(crate) fn within(self, what: impl std::fmt::Display) -> Self {
        match self {
            Error::Invalid { field, reason } if field.is_empty() => Error::Invalid {
                field: what.to_string(),
                reason,
            },
            Error::Invalid { field, reason } => Error::Invalid {
                field: format!("{what}: {field}"),
                reason,
            },
            other => other.in_field(what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;

    #[test]
    fn errno_in_gos_words() {
        assert_eq!(go_errno_text(Errno::ENOENT), "no such file or directory");
        assert_eq!(go_errno_text(Errno::EACCES), "permission denied");
        assert_eq!(go_errno_text(Errno::ENOEXEC), "exec format error");
        let e = Error::Init {
            context: "exec /x".into(),
            errno: Some(Errno::ENOENT),
        };
        assert_eq!(
            e.to_string(),
            "unable to start container process: exec /x: no such file or directory"
        );
    }
}
