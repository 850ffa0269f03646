//! A mount's options list (the input split at commas and NULs) parsed as
//! runc understands them: no panic, and what is not a flag travels whole in
//! the data string (no empty items, no item lost).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let options: Vec<String> = text.split([',', '\0']).map(str::to_owned).collect();
    let parsed = libkeel::rootfs::options::parse(&options);
    assert_eq!(parsed, libkeel::rootfs::options::parse(&options));
    if !parsed.data.is_empty() {
        for item in parsed.data.split(',') {
            assert!(
                options.iter().any(|o| o == item || o.starts_with(item)),
                "data item {item:?} not among the options {options:?}"
            );
        }
    }
});
