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
        if level == Level::Debug && !self.debug {
            return;
        }
        let time = now();
        let line = match self.format {
            LogFormat::Json => {
                serde_json::json!({"level": level.name(), "msg": msg, "time": time}).to_string()
                    + "\n"
            }
            LogFormat::Text => format!("time={:?} level={} msg={:?}\n", time, level.name(), msg),
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

/// RFC 3339 UTC to the second, as logrus prints by default.
fn now() -> String {
    libkeel::state::rfc3339_utc(std::time::SystemTime::now(), false)
}
