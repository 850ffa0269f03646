//! Arbitrary packets on the runtime/init sync channel: decoded into a
//! message or refused, never a panic; a decoded message encodes and
//! decodes back to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use libkeel::SyncMsg;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = SyncMsg::decode(data) {
        let packet = msg.encode().expect("a decoded message encodes");
        assert_eq!(SyncMsg::decode(&packet).expect("decodes again"), msg);
    }
});
