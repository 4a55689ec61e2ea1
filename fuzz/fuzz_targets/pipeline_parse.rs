//! `Ais-Node-Url` parsing (`pipeline::parse`): never panics; what it accepts is an
//! http(s) entry with an authority, and a rest with no empty entry (its entries are
//! checked by the stage that receives it, as the references do).
#![no_main]

use ais_wasm_fuzz::pipeline::{self, PipelineError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|value: &str| {
    match pipeline::parse(value) {
        Ok(None) => assert!(value.trim().is_empty()),
        Ok(Some(pipeline)) => {
            let next = &pipeline.next;
            assert!(next.scheme == "http" || next.scheme == "https");
            assert!(!next.authority.is_empty());
            assert!(!next.authority.contains(','));
            if let Some(rest) = &pipeline.rest {
                assert!(!rest.is_empty() && rest.trim() == rest);
                // What a later stage receives as its own header.
                assert!(
                    matches!(
                        pipeline::parse(rest),
                        Ok(Some(_)) | Err(PipelineError::BadUrl { .. })
                    ),
                    "{rest:?}"
                );
            }
        }
        Err(PipelineError::EmptyEntry | PipelineError::BadUrl { .. }) => {}
    }
});
