//! WebSocket control messages (`Control::parse`) and what is done with their fields:
//! never panics, and the object's name survives the escaping a stage hop's URL
//! gives it.
#![no_main]

use ais_wasm_fuzz::control::Control;
use ais_wasm_fuzz::{fqn, pipeline};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|message: &[u8]| {
    let control = match Control::parse(message) {
        Ok(control) => control,
        Err(error) => {
            // Only a message naming a non-empty fqn says no data follows.
            assert!(error.data_follows || message.windows(5).any(|w| w == b"\"fqn\""));
            return;
        }
    };
    let _ = pipeline::parse(&control.pipeline);
    if !control.expects_data() {
        assert!(fqn::decode(&control.fqn).has_root());
    }
    let escaped = pipeline::escape_path(&control.path);
    let decoded = percent_encoding::percent_decode_str(&escaped[1..]).collect::<Vec<u8>>();
    assert_eq!(decoded, control.path);
});
