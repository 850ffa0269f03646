//! The command line (the input split at NULs, after `keel`): the
//! runtime's parse (runc-style argument normalisation, then clap's)
//! returns a command or an error, never a panic. The runtime is a binary
//! crate: its cli module is compiled in here as it is.

#![no_main]

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
    let _ = cli::try_parse(args);
});
