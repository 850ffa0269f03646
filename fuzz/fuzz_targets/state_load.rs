//! Arbitrary bytes as a container's state.json: an error or a state, never
//! a panic; a state that loads saves and loads again unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::path::Path;

/// The state as a JSON value with the order of sets made canonical: maps
/// (cgroup controllers, annotations) and capability sets (hash sets in
/// oci-spec) save in any order.
fn canonical(state: &libkeel::state::State) -> Value {
    fn walk(v: &mut Value, in_caps: bool) {
        match v {
            Value::Object(o) => {
                for (k, x) in o.iter_mut() {
                    walk(x, in_caps || k == "capabilities");
                }
            }
            Value::Array(a) if in_caps => a.sort_by_key(|x| x.to_string()),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(state).expect("a loaded state saves");
    walk(&mut v, false);
    v
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("/run/keel/fuzz/state.json");
    if let Ok(state) = libkeel::state::parse(data, path) {
        let saved = serde_json::to_vec(&state).expect("a loaded state saves");
        let again = libkeel::state::parse(&saved, path).expect("a saved state loads");
        assert_eq!(canonical(&state), canonical(&again));
    }
});
