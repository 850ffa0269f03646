//! The command line (the input split at NULs, after `keel`): runc-style
//! argument normalisation and clap's parse return a command or an error,
//! never a panic. The runtime is a binary crate: its cli module is
//! compiled in here as it is.

#![no_main]

use clap::Parser;
use libfuzzer_sys::fuzz_target;

/// What `crate::VERSION_TEXT` is in the runtime.
const VERSION_TEXT: &str = "fuzz";

#[allow(dead_code)]
#[path = "../../runtime/src/cli.rs"]
mod cli;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let args: Vec<String> = std::iter::once("keel".to_string())
        .chain(text.split('\0').map(str::to_owned))
        .collect();
    let normalized = cli::normalize_args(args);
    assert_eq!(normalized[0], "keel");
    let _ = cli::Cli::try_parse_from(normalized);
});
