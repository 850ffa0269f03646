//! A message from systemd's D-Bus socket (or the system bus), as keel's
//! minimal D-Bus client reads it to drive the systemd cgroup driver
//! (`libkeel::cgroups::systemd`, reached through the `fuzzing` feature):
//! an error or a message, never a panic, and nothing allocated that the
//! bytes do not carry.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = libkeel::cgroups::read_reply_for_fuzzing(data);
});
