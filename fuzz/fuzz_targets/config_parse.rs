//! Arbitrary bytes as a bundle's config.json: parsing and validation must
//! return an error, never panic, hang or overflow the stack.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((spec, _warnings)) = libkeel::spec::parse_config(data) {
        let _ = libkeel::spec::validate(&spec);
    }
});
