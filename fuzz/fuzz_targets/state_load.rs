//! Arbitrary bytes as a container's state.json: an error or a state, never
//! a panic; a state that loads saves and loads again unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("/run/keel/fuzz/state.json");
    if let Ok(state) = libkeel::state::parse(data, path) {
        let saved = serde_json::to_vec(&state).expect("a loaded state saves");
        let again = libkeel::state::parse(&saved, path).expect("a saved state loads");
        // As values: maps (cgroup controllers, annotations) save in any order.
        assert_eq!(
            serde_json::to_value(&state).expect("saves"),
            serde_json::to_value(&again).expect("saves")
        );
    }
});
