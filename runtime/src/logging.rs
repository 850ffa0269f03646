//! runc's log lines: logrus text (`time="…" level=error msg="…"`) or JSON
//! (`{"level":"error","msg":"…","time":"…"}`, which containerd parses), to
//! `--log` or stderr.

use crate::cli::LogFormat;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

pub struct Logger {
    format: LogFormat,
    file: Option<File>,
    debug: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Warning,
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

impl Logger {
    pub fn new(format: LogFormat, path: Option<&Path>, debug: bool) -> Logger {
        // An unopenable log file must not hide the real error: fall back to stderr.
        let file = path.and_then(|p| OpenOptions::new().create(true).append(true).open(p).ok());
        Logger {
            format,
            file,
            debug,
        }
    }

    /// True when log lines already go to stderr.
    pub fn to_stderr(&self) -> bool {
        self.file.is_none()
    }

    pub fn log(&self, level: Level, msg: &str) {
        self.log_fields(level, msg, &[]);
    }

    /// A line with logrus fields after the message (`pid=12 status=0`), as
    /// runc logs with `WithFields`.
    pub fn log_fields(&self, level: Level, msg: &str, fields: &[(&str, i64)]) {
        if level == Level::Debug && !self.debug {
            return;
        }
        let time = now();
        let line = match self.format {
            LogFormat::Json => {
                let mut o = serde_json::Map::new();
                for (k, v) in fields {
                    o.insert(k.to_string(), (*v).into());
                }
                o.insert("level".into(), level.name().into());
                o.insert("msg".into(), msg.into());
                o.insert("time".into(), time.into());
                serde_json::Value::Object(o).to_string() + "\n"
            }
            LogFormat::Text => {
                let fields: String = fields.iter().map(|(k, v)| format!(" {k}={v}")).collect();
                format!("time={time:?} level={} msg={msg:?}{fields}\n", level.name())
            }
        };
        match &self.file {
            Some(f) => {
                let mut f: &File = f;
                let _ = f.write_all(line.as_bytes());
            }
            None => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }
}

impl Logger {
    /// Makes the library's events (libkeel's `log::debug!`: namespaces
    /// joined, init set up, program started) lines of this log, shown with
    /// `--debug` as runc shows its own.
    pub fn install(&self) {
        let global = Logger {
            format: self.format,
            file: self.file.as_ref().and_then(|f| f.try_clone().ok()),
            debug: self.debug,
        };
        if log::set_boxed_logger(Box::new(global)).is_ok() {
            log::set_max_level(if self.debug {
                log::LevelFilter::Debug
            } else {
                log::LevelFilter::Warn
            });
        }
    }
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Warn || (self.debug && m.level() <= log::Level::Debug)
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Error => Level::Error,
            log::Level::Warn => Level::Warning,
            _ => Level::Debug,
        };
        self.log_fields(level, &record.args().to_string(), &[]);
    }

    fn flush(&self) {}
}

/// RFC 3339 UTC to the second, as logrus prints by default.
fn now() -> String {
    libkeel::state::rfc3339_utc(std::time::SystemTime::now(), false)
}
